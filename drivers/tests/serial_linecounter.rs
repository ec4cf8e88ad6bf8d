//! Line counters (MightyOhm, GC10, Arduino grammar) against their simulators on a pty:
//! every line the simulator printed arrives as exactly one event with the printed values;
//! bad lines are errors at their byte offset; Poisson rates come out right.

mod common;

use std::time::Duration;

use common::{read_n, refused_at, scripted, u32_at};
use daq_drivers::linecounter::protocol::{parse_mightyohm, MightyOhmLine};
use daq_drivers::linecounter::{
    self, LineCounterConfig, LineCounterSim, LineFormat, LineGrammar, LineSimConfig, SimFormat,
};
use daq_drivers::serial::{ScriptedDevice, SimulatorHandle};
use daq_drivers::{DriverError, ReadOutcome, Source};

#[test]
fn mightyohm_lines_arrive_as_events_in_order_with_mode_rules() {
    // 30 cps → the 5-s sum ×12 passes 1000: FAST; 400 cps overflows the 8-bit counter: INST.
    for (cps, want_mode) in [(0.8, 0u8), (30.0, 1), (400.0, 2)] {
        let cfg = LineSimConfig {
            format: SimFormat::MightyOhm,
            cps,
            seed: 3,
            second: Duration::from_millis(10),
        };
        let (_sim, path) = linecounter::simulate(cfg.clone()).unwrap();
        let mut dev = linecounter::open(LineCounterConfig {
            path,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(dev.layout().event_size(), 13);
        dev.start().unwrap();
        let got = read_n(&mut dev, 80);
        let lines = LineCounterSim::lines(&cfg, 80);
        for (i, ((rec, _), line)) in got.iter().zip(&lines).enumerate() {
            let MightyOhmLine::Reading(r) = parse_mightyohm(line.trim_end().as_bytes()).unwrap()
            else {
                panic!()
            };
            assert_eq!(u32_at(rec, 0), r.cps, "line {i}");
            assert_eq!(u32_at(rec, 4), r.cpm, "line {i}");
            assert_eq!(
                f32::from_le_bytes(rec[8..12].try_into().unwrap()),
                r.usv_centi as f32 / 100.0
            );
            assert_eq!(rec[12], r.mode as u8);
        }
        // After the first 5 seconds the mode settles to the one the rate implies.
        assert!(
            got[10..].iter().all(|(rec, _)| rec[12] == want_mode),
            "cps {cps}"
        );
        assert!(dev
            .run_metadata()
            .contains(&("mightyohm_banner_seen".into(), "true".into())));
    }
}

#[test]
fn gc10_cpm_lines_are_exact() {
    let cfg = LineSimConfig {
        format: SimFormat::Gc10,
        cps: 5.0,
        seed: 9,
        second: Duration::from_millis(10),
    };
    let (_sim, path) = linecounter::simulate(cfg.clone()).unwrap();
    let mut dev = linecounter::open(LineCounterConfig {
        path,
        format: LineFormat::Gc10,
        ..Default::default()
    })
    .unwrap();
    let got = read_n(&mut dev, 100);
    let lines = LineCounterSim::lines(&cfg, 100);
    for ((rec, _), line) in got.iter().zip(&lines) {
        assert_eq!(u32_at(rec, 0).to_string(), line.trim_end());
    }
    // In the first minute the CPM is the running sum: mean 5 per second → ~ 5 × 60 at line 60.
    let at60 = u32_at(&got[59].0, 0);
    assert!(
        (200..400).contains(&at60),
        "cpm after 60 s: {at60} (mean 300, sd 17)"
    );
}

#[test]
fn arduino_per_pulse_grammar_keeps_device_time_and_rate() {
    let grammar = LineGrammar::pulse_ms_interval_count();
    let rate = 200.0;
    let cfg = LineSimConfig {
        format: SimFormat::Grammar(grammar.clone()),
        cps: rate,
        seed: 5,
        second: Duration::from_millis(10),
    };
    let (_sim, path) = linecounter::simulate(cfg.clone()).unwrap();
    let mut dev = linecounter::open(LineCounterConfig {
        path,
        format: LineFormat::Grammar(grammar.clone()),
        ..Default::default()
    })
    .unwrap();
    let names: Vec<_> = dev.layout().names().collect();
    assert_eq!(names, ["device_time", "pulse"]);
    let n = 400;
    let got = read_n(&mut dev, n);
    let lines = LineCounterSim::lines(&cfg, n);
    for (i, ((rec, t), line)) in got.iter().zip(&lines).enumerate() {
        let parsed = grammar.parse(line.trim_end().as_bytes()).unwrap().unwrap();
        assert_eq!(t.device_time, parsed.time_s);
        assert_eq!(
            f64::from_le_bytes(rec[0..8].try_into().unwrap()),
            parsed.time_s.unwrap()
        );
        assert_eq!(
            u64::from_le_bytes(rec[8..16].try_into().unwrap()),
            i as u64 + 1
        );
    }
    // n pulses in device time T: rate estimate n/T has sd rate/sqrt(n) = 5 %; allow ±20 %.
    let t_last = got.last().unwrap().1.device_time.unwrap();
    let est = n as f64 / t_last;
    assert!((160.0..240.0).contains(&est), "rate {est}");
}

#[test]
fn garbage_line_is_an_error_at_its_offset_and_the_stream_goes_on() {
    const SCRIPT: &[u8] = b"CPS, 1, CPM, 19, uSv/hr, 0.10, SLOW\r\nCPS, 1, CPM, 1\x00\xff9\r\nCPS, 2, CPM, 21, uSv/hr, 0.11, SLOW\r\nCPS, 3, CPM, 24, uSv/hr, 0.13, SLO";
    let sim = scripted(SCRIPT);
    let mut dev = linecounter::open(LineCounterConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    let mut out = [0u8; 13];
    let t = Duration::from_millis(500);
    common::expect_event(&mut dev, &mut out, t);
    assert_eq!(u32_at(&out, 4), 19);
    assert_eq!(refused_at(dev.read_event(&mut out, t)), 37);
    common::expect_event(&mut dev, &mut out, t);
    assert_eq!(u32_at(&out, 4), 21);
    // The truncated last line (no CRLF) is not an event.
    assert_eq!(
        dev.read_event(&mut out, Duration::from_millis(100))
            .unwrap(),
        ReadOutcome::Idle
    );
}

/// Three whole MightyOhm lines, then one without its CR LF: a last line that parses, but
/// could be cut short (`0.1` of `0.11`).
const CUT_LAST_LINE: &[u8] = b"CPS, 1, CPM, 19, uSv/hr, 0.10, SLOW\r\nCPS, 2, CPM, 21, uSv/hr, 0.11, SLOW\r\nCPS, 3, CPM, 24, uSv/hr, 0.13, SLOW\r\nCPS, 2, CPM, 20, uSv/hr, 0.11, SLOW";

/// The three whole lines as events, then the read that finds only the cut line.
fn three_events_then_the_cut_line(dev: &mut linecounter::LineCounter) {
    let mut out = [0u8; 13];
    for cpm in [19, 21, 24] {
        common::expect_event(dev, &mut out, Duration::from_millis(500));
        assert_eq!(u32_at(&out, 4), cpm);
    }
    assert_eq!(
        dev.read_event(&mut out, Duration::from_millis(100))
            .unwrap(),
        ReadOutcome::Idle
    );
}

/// The bad data a call reported: its offset and message; panics on anything else.
fn bad_data(r: Result<(), DriverError>) -> (u64, String) {
    match r {
        Err(DriverError::Protocol { offset, detail, .. }) => (offset, detail),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_last_line_without_its_line_end_is_bad_data_at_the_stop() {
    let sim = scripted(CUT_LAST_LINE);
    let mut dev = linecounter::open(LineCounterConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    dev.start().unwrap();
    three_events_then_the_cut_line(&mut dev);
    let (offset, detail) = bad_data(dev.stop());
    assert_eq!(offset, 3 * 37);
    assert!(
        detail.contains("35 byte(s) without a line end discarded at the stop"),
        "{detail}"
    );
    // Its first 32 bytes, for the log.
    assert_eq!(
        dev.rejected_bytes().escape_ascii().to_string(),
        "CPS, 2, CPM, 20, uSv/hr, 0.11, S"
    );
    // Counted once: a second stop finds nothing.
    dev.stop().unwrap();
}

/// A MightyOhm sending its fourth line as the run stops: the line's first half has come,
/// its rest comes 250 ms after the device's start. The stop waits for the line to end: it
/// is no bad data (the first version counted every line in progress at the stop as one,
/// so a run of a streaming device ended with a bad record nearly every time).
#[test]
fn a_line_in_progress_at_the_stop_is_let_end_and_is_no_bad_data() {
    struct Slow {
        sent: u8,
    }
    impl daq_drivers::serial::SimulatedDevice for Slow {
        fn receive(&mut self, _: &[u8], _: Duration, _: &mut Vec<u8>) {}
        fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
            let (first, rest) = CUT_LAST_LINE.split_at(CUT_LAST_LINE.len() - 10);
            if self.sent == 0 {
                out.extend_from_slice(first);
                self.sent = 1;
            } else if self.sent == 1 && now >= Duration::from_millis(250) {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                self.sent = 2;
            }
        }
        fn next_wakeup(&self) -> Option<Duration> {
            (self.sent < 2).then_some(Duration::from_millis(250))
        }
    }
    let sim = SimulatorHandle::start("slow", |_| Box::new(Slow { sent: 0 })).unwrap();
    let mut dev = linecounter::open(LineCounterConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    dev.start().unwrap();
    let mut out = [0u8; 13];
    for cpm in [19, 21, 24] {
        common::expect_event(&mut dev, &mut out, Duration::from_millis(500));
        assert_eq!(u32_at(&out, 4), cpm);
    }
    dev.stop().unwrap();
}

#[test]
fn a_line_cut_off_by_a_disconnect_is_bad_data_then_the_disconnect() {
    let mut sim = scripted(CUT_LAST_LINE);
    let mut dev = linecounter::open(LineCounterConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    three_events_then_the_cut_line(&mut dev);
    sim.unplug();
    let mut out = [0u8; 13];
    let read = dev.read_event(&mut out, Duration::from_millis(500));
    let (offset, detail) = bad_data(read.map(|_| ()));
    assert_eq!(offset, 3 * 37);
    assert!(
        detail.contains("35 byte(s) without a line end discarded at the disconnect"),
        "{detail}"
    );
    match dev.read_event(&mut out, Duration::from_millis(100)) {
        Err(DriverError::Disconnected { detail, .. }) => {
            assert!(detail.contains("at byte 146"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

mod wire_fuzz {
    use super::*;
    use proptest::prelude::*;

    fn item() -> impl Strategy<Value = Result<(u32, u32), Vec<u8>>> {
        prop_oneof![
            (0u32..=255, 0u32..=15300).prop_map(Ok),
            // Garbage without line ends, sometimes longer than the 4 KiB read buffer.
            proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40)
                .prop_map(Err),
            proptest::collection::vec(Just(b'x'), 4090..5000).prop_map(Err),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6675_7a7a),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Valid MightyOhm lines mixed with garbage lines on the wire: every valid line is
        /// exactly one event with its values, every garbage line exactly one error.
        #[test]
        fn garbage_on_the_wire_is_never_a_reading(items in proptest::collection::vec(item(), 1..12)) {
            let mut script = Vec::new();
            let mut valid = Vec::new();
            let mut garbage = 0;
            for it in &items {
                match it {
                    Ok((cps, cpm)) => {
                        let u = daq_drivers::linecounter::protocol::mightyohm_usv_centi(*cpm);
                        script.extend_from_slice(format!("CPS, {cps}, CPM, {cpm}, uSv/hr, {}.{:02}, SLOW\r\n", u / 100, u % 100).as_bytes());
                        valid.push((*cps, *cpm));
                    }
                    Err(g) => {
                        script.extend_from_slice(g);
                        script.extend_from_slice(b"\r\n");
                        garbage += 1;
                    }
                }
            }
            let sim = SimulatorHandle::start("fuzz", move |_| Box::new(ScriptedDevice::new(script.clone()))).unwrap();
            let mut dev = linecounter::open(LineCounterConfig { path: sim.path().into(), ..Default::default() }).unwrap();
            let mut out = [0u8; 13];
            let (mut events, mut errors) = (Vec::new(), 0);
            let mut idle = 0;
            while events.len() + errors < items.len() && idle < 10 {
                match dev.read_event(&mut out, Duration::from_millis(200)) {
                    Ok(ReadOutcome::Event(_)) => events.push((u32_at(&out, 0), u32_at(&out, 4))),
                    Ok(_) => idle += 1,
                    Err(DriverError::Protocol { .. }) => errors += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            prop_assert_eq!(events, valid);
            prop_assert_eq!(errors, garbage);
        }
    }
}

#[test]
fn line_counter_unplug_reports_and_reconnects_to_the_relinked_port() {
    let cfg = LineSimConfig {
        format: SimFormat::Gc10,
        cps: 5.0,
        seed: 2,
        second: Duration::from_millis(10),
    };
    let (mut sim, path) = linecounter::simulate(cfg).unwrap();
    let mut dev = linecounter::open(LineCounterConfig {
        path,
        format: LineFormat::Gc10,
        ..Default::default()
    })
    .unwrap();
    read_n(&mut dev, 3);
    sim.unplug();
    let mut out = [0u8; 4];
    let err = loop {
        match dev.read_event(&mut out, Duration::from_millis(100)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    // Later calls keep saying so until a reconnect succeeds.
    assert!(matches!(
        dev.read_event(&mut out, Duration::from_millis(10)),
        Err(DriverError::Disconnected { .. })
    ));
    assert!(
        !dev.reconnect().unwrap(),
        "nothing at the link while unplugged"
    );
    sim.replug().unwrap();
    assert!((0..20).any(|_| dev.reconnect().unwrap()));
    assert_eq!(read_n(&mut dev, 3).len(), 3);
    let meta = dev.run_metadata();
    assert!(
        meta.contains(&("reconnects".to_string(), "1".to_string())),
        "{meta:?}"
    );
}
