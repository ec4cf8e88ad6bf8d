//! The event cutter on hand-made streams: chunking, one-channel mode, edges, pre-trigger,
//! overlap rules, and a property test that the way a stream is split into transfers never
//! changes the events cut from it.

use daq_drivers::hantek6022::{Edge, EventCutter, HantekConfig, SampleFormat, Trigger};
use proptest::prelude::*;

fn cutter(channels: u8, samples: usize, trigger: Option<Trigger>, discard: usize) -> EventCutter {
    EventCutter::new(&HantekConfig {
        channels,
        samples_per_event: samples,
        trigger,
        format: SampleFormat::Raw,
        discard_initial_bytes: discard,
        ..HantekConfig::default()
    })
}

/// Feeds `stream` in pieces of the given sizes; returns (trigger frame, event bytes).
fn cut(c: &mut EventCutter, stream: &[u8], pieces: &[usize]) -> Vec<(u64, Vec<u8>)> {
    let mut out = vec![0u8; c.event_size()];
    let mut events = Vec::new();
    let mut rest = stream;
    let mut k = 0;
    while !rest.is_empty() {
        let n = pieces
            .get(k % pieces.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        k += 1;
        let mut piece = &rest[..n];
        rest = &rest[n..];
        while !piece.is_empty() {
            let (used, event) = c.feed(piece, &mut out);
            assert!(used <= piece.len());
            piece = &piece[used..];
            if let Some(e) = event {
                events.push((e.trigger_frame, out.clone()));
            }
        }
    }
    events
}

fn rising(level_code: u8, pre: usize) -> Option<Trigger> {
    // Raw code c is (c − 128) × 5/128 V at gain ×1.
    Some(Trigger {
        channel: 0,
        level_volts: (level_code as f32 - 128.0) * 5.0 / 128.0,
        edge: Edge::Rising,
        pre_trigger: pre,
    })
}

#[test]
fn one_channel_free_running_blocks_after_discard() {
    let stream: Vec<u8> = (0..100u8).collect();
    let mut c = cutter(1, 10, None, 5);
    let events = cut(&mut c, &stream, &[7]);
    assert_eq!(events.len(), 9, "95 kept bytes make 9 whole events");
    for (k, (frame, bytes)) in events.iter().enumerate() {
        assert_eq!(*frame, 5 + 10 * k as u64);
        assert_eq!(bytes[..], stream[5 + 10 * k..15 + 10 * k]);
    }
}

#[test]
fn two_channel_frames_split_across_odd_pieces() {
    let stream: Vec<u8> = (0..200u8).collect();
    let mut c = cutter(2, 5, None, 0);
    let events = cut(&mut c, &stream, &[3, 1, 5]);
    assert_eq!(events.len(), 20);
    assert_eq!(events[3].1[..], stream[30..40]);
}

#[test]
fn rising_edge_with_pre_trigger_and_no_overlap() {
    // Baseline 128, steps to 200 at frames 50, 55 (inside the first event) and 120.
    let mut stream = vec![128u8; 200];
    for start in [50usize, 55, 120] {
        for s in stream.iter_mut().skip(start).take(3) {
            *s = 200;
        }
    }
    let mut c = cutter(1, 20, rising(160, 4), 0);
    let events = cut(&mut c, &stream, &[64]);
    let frames: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        frames,
        vec![50, 120],
        "the pulse at 55 falls inside the first event"
    );
    assert_eq!(events[0].1[3], 128);
    assert_eq!(
        events[0].1[4], 200,
        "crossing sample sits at index pre_trigger"
    );
}

#[test]
fn falling_edge_and_pre_trigger_needs_history() {
    let mut stream = vec![128u8; 100];
    stream[2] = 10; // too early: fewer than 5 samples before it
    stream[60] = 10;
    let trigger = Some(Trigger {
        channel: 0,
        level_volts: -2.0,
        edge: Edge::Falling,
        pre_trigger: 5,
    });
    let mut c = cutter(1, 10, trigger, 0);
    let frames: Vec<u64> = cut(&mut c, &stream, &[100]).iter().map(|e| e.0).collect();
    assert_eq!(frames, vec![60]);
}

#[test]
fn volts_output_interleaves_channels() {
    let mut c = EventCutter::new(&HantekConfig {
        samples_per_event: 2,
        discard_initial_bytes: 0,
        ..HantekConfig::default()
    });
    let mut out = vec![0u8; c.event_size()];
    let (used, event) = c.feed(&[0x80, 0x00, 0xC0, 0x80], &mut out);
    assert_eq!((used, event.map(|e| e.trigger_frame)), (4, Some(0)));
    let v: Vec<f32> = out
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(v, vec![0.0, -5.0, 2.5, 0.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However a stream is cut into transfers, the same events come out.
    #[test]
    fn chunking_never_changes_events(
        stream in proptest::collection::vec(any::<u8>(), 0..3000),
        pieces in proptest::collection::vec(1usize..700, 1..8),
        channels in 1u8..=2,
        triggered in any::<bool>(),
    ) {
        let trigger = if triggered { rising(200, 3) } else { None };
        let whole = cut(&mut cutter(channels, 16, trigger, 10), &stream, &[stream.len().max(1)]);
        let split = cut(&mut cutter(channels, 16, trigger, 10), &stream, &pieces);
        prop_assert_eq!(&whole, &split);
        // Events never overlap and every event is exactly the bytes of its frames.
        let ch = channels as usize;
        let mut last_end = 0u64;
        for (frame, bytes) in &whole {
            let start = if triggered { frame - 3 } else { *frame };
            prop_assert!(start >= last_end);
            last_end = start + 16;
            let at = start as usize * ch;
            prop_assert_eq!(&bytes[..], &stream[at..at + 16 * ch]);
        }
    }
}
