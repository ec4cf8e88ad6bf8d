//! The Hantek 6022 unplugged and plugged in again, through the simulated scope at the
//! transfer level: the replugged scope comes back cold, gets its firmware again, is
//! configured as before and streams on; no event mixes samples from before and after a gap.

use std::time::{Duration, Instant};

use super::firmware::FirmwareImage;
use super::protocol::*;
use super::{
    Edge, Gain, Hantek6022, HantekConfig, SampleFormat, SimHantek, SimHantekConfig, Trigger,
};
use crate::driver::{DriverError, ReadOutcome, Source};
use crate::serial::Backoff;
use crate::usb::RetryPacing;

const T: Duration = Duration::from_secs(2);

fn out_transfer(request: u8, value: u16, data: &[u8]) -> ControlTransfer {
    ControlTransfer {
        setup: Setup::vendor_out(request).with_value(value),
        data: data.to_vec(),
    }
}

fn quick_pacing() -> RetryPacing {
    RetryPacing::new(Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
    })
}

/// Frame number a two-channel counter sample carries: CH1 = n mod 256, CH2 = n / 256.
fn frames(event: &[u8]) -> Vec<u32> {
    event
        .chunks_exact(2)
        .map(|f| u32::from(f[0]) | u32::from(f[1]) << 8)
        .collect()
}

fn contiguous(frames: &[u32]) -> bool {
    frames.windows(2).all(|w| w[1] == (w[0] + 1) & 0xffff)
}

/// Reads until the scope reports the unplug; returns the events read before it.
fn read_until_gone(
    scope: &mut Hantek6022<super::simulator::SimHantekHandle>,
    out: &mut [u8],
) -> (Vec<Vec<u32>>, DriverError) {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the unplug was never reported");
        match scope.read_event(out, T) {
            Ok(ReadOutcome::Event(_)) => events.push(frames(out)),
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::End) => panic!("a scope does not end"),
            Err(e) => return (events, e),
        }
    }
}

#[test]
fn replugged_scope_comes_back_cold_gets_its_firmware_again_and_streams_on() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: None,
        ..SimHantekConfig::default()
    });
    let image: Vec<u8> = (0..600u32).map(|i| (i * 7) as u8).collect();
    let path = std::env::temp_dir().join(format!("hantek-replug-{}.bin", std::process::id()));
    std::fs::write(&path, &image).unwrap();
    let config = HantekConfig {
        firmware_path: Some(path.clone()),
        sample_rate: 8_000_000,
        gains: [Gain::X2, Gain::X10],
        format: SampleFormat::Raw,
        samples_per_event: 1000,
        rescan_interval: Duration::from_millis(1),
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open_reconnectable(sim.bus(), config).unwrap();
    scope.set_reconnect_pacing(quick_pacing());
    // The image read at open is kept: the file may be gone when the scope comes back.
    std::fs::remove_file(&path).unwrap();
    let first_port = scope.info().port.clone();
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    for _ in 0..3 {
        assert!(matches!(
            scope.read_event(&mut out, T),
            Ok(ReadOutcome::Event(_))
        ));
        assert!(contiguous(&frames(&out)));
    }
    sim.unplug();
    let (before, err) = read_until_gone(&mut scope, &mut out);
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    assert!(
        before.iter().all(|f| contiguous(f)),
        "events before the gap are whole"
    );
    let sent_before = sim.state().log.len();
    // Absent: no transfer reaches anything, the answer is "not yet".
    assert!(!scope.reconnect().unwrap());
    assert!(!scope.reconnect().unwrap());
    assert_eq!(sim.state().log.len(), sent_before);
    sim.replug();
    assert_eq!(sim.state().usb_id, (0x04b4, 0x6022), "replugged cold");
    assert!(scope.reconnect().unwrap());
    assert_eq!(scope.reconnects(), 1);
    {
        let s = sim.state();
        let log = &s.log[sent_before..];
        // Firmware again (CPU held, one 600-byte write, CPU released), then the same
        // configuration as at open, then the start request: nothing else.
        let expected = [
            out_transfer(REQ_FIRMWARE_RAM, CPUCS_ADDRESS, &[1]),
            out_transfer(REQ_FIRMWARE_RAM, 0, &image),
            out_transfer(REQ_FIRMWARE_RAM, CPUCS_ADDRESS, &[0]),
            out_transfer(REQ_CHANNELS, 0, &[2]),
            out_transfer(
                REQ_SAMPLE_RATE,
                0,
                &[rate_code(FirmwareFlavour::Custom, 8_000_000).unwrap()],
            ),
            out_transfer(REQ_CH1_GAIN, 0, &[Gain::X2.code()]),
            out_transfer(REQ_CH2_GAIN, 0, &[Gain::X10.code()]),
            out_transfer(REQ_START_STOP, 0, &[1]),
        ];
        assert_eq!(log, &expected[..]);
        assert_eq!(s.ram_bytes_written, 600);
        assert_eq!(s.usb_id, (0x04b5, 0x6022));
        assert_eq!(s.gain, [Gain::X2.code(), Gain::X10.code()]);
        assert!(s.running);
    }
    assert_ne!(
        scope.info().port,
        first_port,
        "new address after the replug"
    );
    // The stream starts anew: its settling bytes (2600 = 1300 frames) are dropped again and
    // the events run on gaplessly from there.
    let mut expect = 1300u32;
    for _ in 0..5 {
        assert!(matches!(
            scope.read_event(&mut out, T),
            Ok(ReadOutcome::Event(_))
        ));
        let f = frames(&out);
        assert_eq!(f[0], expect & 0xffff);
        assert!(contiguous(&f));
        expect += 1000;
    }
    assert!(scope
        .run_metadata()
        .contains(&("hantek6022.reconnects".to_string(), "1".to_string())));
    scope.stop().unwrap();
}

#[test]
fn no_triggered_event_spans_a_gap() {
    // Raw counter codes on CH1 rise through the trigger level once every 256 frames (at
    // frame 133 of each 256); with 10 samples before the crossing and 200 in all, every
    // event is still being collected at the next multiple of 256 frames, which is where
    // every bulk transfer (3 × 256 frames) ends: the scope always vanishes mid-event.
    let sim = SimHantek::new(SimHantekConfig::default());
    let config = HantekConfig {
        format: SampleFormat::Raw,
        samples_per_event: 200,
        transfer_size: 1536,
        pool_buffers: 4,
        trigger: Some(Trigger {
            channel: 0,
            level_volts: 0.2,
            edge: Edge::Rising,
            pre_trigger: 10,
        }),
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open_reconnectable(sim.bus(), config).unwrap();
    scope.set_reconnect_pacing(quick_pacing());
    scope.set_firmware_image(FirmwareImage::from_binary(&[0x02, 0, 0], "stand-in").unwrap());
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    let mut events = Vec::new();
    for _round in 0..3 {
        for _ in 0..4 {
            assert!(matches!(
                scope.read_event(&mut out, T),
                Ok(ReadOutcome::Event(_))
            ));
            events.push(frames(&out));
        }
        sim.unplug();
        let (before, err) = read_until_gone(&mut scope, &mut out);
        assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
        events.extend(before);
        sim.replug();
        let deadline = Instant::now() + T;
        while !scope.reconnect().unwrap() {
            assert!(Instant::now() < deadline, "never back");
        }
    }
    for _ in 0..4 {
        assert!(matches!(
            scope.read_event(&mut out, T),
            Ok(ReadOutcome::Event(_))
        ));
        events.push(frames(&out));
    }
    assert_eq!(scope.reconnects(), 3);
    for f in &events {
        assert!(contiguous(f), "an event mixes samples across a gap: {f:?}");
        // The crossing sits at sample 10: CH1 below the level before it, at or above it there.
        let volts = volts_table(Gain::X1, Calibration::default());
        let ch1 = |k: usize| volts[(f[k] & 0xff) as usize];
        assert!(ch1(9) < 0.2 && ch1(10) >= 0.2, "{:?}", &f[8..12]);
    }
}

#[test]
fn scope_back_cold_without_any_firmware_says_what_to_set() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut scope = Hantek6022::open_reconnectable(sim.bus(), HantekConfig::default()).unwrap();
    scope.set_reconnect_pacing(quick_pacing());
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    sim.unplug();
    read_until_gone(&mut scope, &mut out);
    sim.replug();
    let err = scope.reconnect().unwrap_err();
    assert!(matches!(err, DriverError::Config { .. }), "{err}");
    assert!(err.to_string().contains("set firmware"), "{err}");
    assert_eq!(sim.state().ram_bytes_written, 0, "nothing uploaded");
}

#[test]
fn scope_opened_on_a_borrowed_bus_cannot_be_looked_for() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut scope = Hantek6022::open(&mut sim.bus(), HantekConfig::default()).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    sim.unplug();
    read_until_gone(&mut scope, &mut out);
    let err = scope.reconnect().unwrap_err();
    assert!(err.to_string().contains("open_reconnectable"), "{err}");
}
