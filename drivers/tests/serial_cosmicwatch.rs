//! CosmicWatch v2 and v3X against their simulators on a pty: every printed field arrives in
//! the record, detector time and dead time are preserved, Poisson timing and coincidence
//! fraction come out right, unplug/replug restarts the numbering without an error.

mod common;

use std::time::Duration;

use common::{read_n, refused_at, scripted, u64_at};
use daq_drivers::cosmicwatch::protocol::{parse_v2, parse_v3, V2Line, V3Line};
use daq_drivers::cosmicwatch::CosmicWatch;
use daq_drivers::cosmicwatch::{
    self, CosmicWatchConfig, CosmicWatchGen, CosmicWatchSimConfig, CosmicWatchVersion, SimVersion,
    V3Columns,
};
use daq_drivers::serial::SimulatorHandle;
use daq_drivers::{DriverError, ReadOutcome, Source};

fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn cosmicwatch_v2_every_field_and_poisson_timing() {
    let rate = 50.0;
    let cfg = CosmicWatchSimConfig {
        rate,
        seed: 21,
        second: Duration::from_millis(10),
        ..Default::default()
    };
    let (_sim, mut dev) = common::open_cosmicwatch(cfg.clone(), CosmicWatchConfig::default());
    assert_eq!(dev.layout().event_size(), 34);
    let n = 300;
    let got = read_n(&mut dev, n);
    assert_eq!(dev.name(), Some("Axel"));
    let lines = CosmicWatchGen::event_lines(&cfg, n);
    let mut dead_sum = 0.0;
    for ((rec, info), line) in got.iter().zip(&lines) {
        let V2Line::Event(e) = parse_v2(line.trim_end().as_bytes()).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(u64_at(rec, 0), e.event);
        assert_eq!(u64_at(rec, 8), e.time_ms);
        assert_eq!(u16::from_le_bytes([rec[16], rec[17]]), e.adc);
        assert_eq!(f32_at(rec, 18), e.sipm_mv);
        assert_eq!(u64_at(rec, 22), e.deadtime_ms);
        assert_eq!(f32_at(rec, 30), e.temp_c);
        assert_eq!(info.device_time, Some(e.time_ms as f64 / 1e3));
        assert_eq!(info.device_lost, 0);
        dead_sum += info.device_deadtime.unwrap();
    }
    let last = &got[n - 1].0;
    // Dead-time increments add up to the detector's cumulative dead time.
    assert!((dead_sum - u64_at(last, 22) as f64 / 1e3).abs() < 1e-9);
    // Numbering 1..=n, no gaps.
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, (r, _))| u64_at(r, 0) == i as u64 + 1));
    // Rate: n / T has sd rate/sqrt(n) ≈ 5.8 %; allow ±20 %. Intervals are exponential:
    // their coefficient of variation is 1 (sd of the estimate ≈ 0.06 for n = 300; ±0.3).
    let t: Vec<f64> = got.iter().map(|(_, i)| i.device_time.unwrap()).collect();
    let est = n as f64 / t[n - 1];
    assert!((40.0..60.0).contains(&est), "rate {est}");
    let d: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (d.len() - 1) as f64).sqrt();
    assert!((0.7..1.3).contains(&(sd / mean)), "cv {}", sd / mean);
}

#[test]
fn cosmicwatch_v3x_all_columns_flags_and_housekeeping() {
    let cols = V3Columns::ALL;
    let cfg = CosmicWatchSimConfig {
        version: SimVersion::V3X(cols),
        rate: 5.0,
        coincidence: 0.3,
        seed: 4,
        second: Duration::from_millis(5),
        ..Default::default()
    };
    let (_sim, mut dev) = common::open_cosmicwatch(
        cfg.clone(),
        CosmicWatchConfig {
            version: CosmicWatchVersion::V3X(cols),
            ..Default::default()
        },
    );
    let names: Vec<_> = dev.layout().fields.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names.len(), 14, "the name column is kept out of the record");
    assert_eq!(dev.layout().event_size(), 8 + 8 + 1 + 2 + 4 + 8 + 8 + 24);
    let n = 400; // ≈ 80 device seconds: one housekeeping line at t = 60.
    let got = read_n(&mut dev, n);
    let lines = CosmicWatchGen::event_lines(&cfg, n);
    let mut flagged = 0;
    for ((rec, info), line) in got.iter().zip(&lines) {
        let V3Line::Event(e) = parse_v3(line.trim_end().as_bytes(), cols).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(u64_at(rec, 0), e.event);
        assert_eq!(f64_at(rec, 8), e.time_s);
        assert_eq!(rec[16], e.flag);
        assert_eq!(u16::from_le_bytes([rec[17], rec[18]]), e.adc);
        assert_eq!(f32_at(rec, 19), e.sipm_mv);
        assert_eq!(f64_at(rec, 23), e.deadtime_s);
        assert_eq!(
            (f32_at(rec, 31), f32_at(rec, 35)),
            (e.temp_c, e.pressure_pa)
        );
        assert_eq!([f32_at(rec, 39), f32_at(rec, 43), f32_at(rec, 47)], e.accel);
        assert_eq!([f32_at(rec, 51), f32_at(rec, 55), f32_at(rec, 59)], e.gyro);
        assert_eq!(info.device_time, Some(e.time_s));
        flagged += usize::from(e.flag);
    }
    // Coincidence fraction 0.3, sd sqrt(0.21/400) = 0.023; allow ±0.1.
    let frac = flagged as f64 / n as f64;
    assert!((0.2..0.4).contains(&frac), "flag fraction {frac}");
    assert!(
        dev.housekeeping().starts_with("t=60 "),
        "{:?}",
        dev.housekeeping()
    );
}

#[test]
fn cosmicwatch_replug_restarts_numbering_without_error() {
    let cfg = CosmicWatchSimConfig {
        rate: 20.0,
        second: Duration::from_millis(10),
        ..Default::default()
    };
    let (mut sim, mut dev) = common::open_cosmicwatch(cfg, CosmicWatchConfig::default());
    read_n(&mut dev, 10);
    sim.unplug();
    let mut out = vec![0u8; dev.layout().event_size()];
    let err = loop {
        match dev.read_event(&mut out, Duration::from_millis(100)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    sim.replug().unwrap();
    assert!((0..20).any(|_| dev.reconnect().unwrap()));
    let after = read_n(&mut dev, 5);
    assert_eq!(
        u64_at(&after[0].0, 0),
        1,
        "a rebooted detector counts from 1"
    );
    assert_eq!(dev.link().stats().reconnects, 1);
}

/// A v2 driver on a device that sends `script` once (the handle keeps it plugged in).
fn v2_on_script(script: &'static [u8]) -> (SimulatorHandle, CosmicWatch) {
    let sim = scripted(script);
    let dev = cosmicwatch::open(CosmicWatchConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    (sim, dev)
}

#[test]
fn cosmicwatch_bad_lines_and_backward_numbers_are_errors_at_their_offset() {
    const SCRIPT: &[u8] = b"### header\r\nAxel\r\n1 100 60 21.00 3 22.10\r\n2 2\xff0 61 21.00 6 22.10\r\n4 300 70 25.00 9 22.10\r\n3 400 70 25.00 12 22.10\r\n";
    let (_sim, mut dev) = v2_on_script(SCRIPT);
    let mut out = [0u8; 34];
    let t = Duration::from_millis(500);
    common::expect_event(&mut dev, &mut out, t);
    assert_eq!(dev.name(), Some("Axel"));
    assert_eq!(refused_at(dev.read_event(&mut out, t)), 42);
    match dev.read_event(&mut out, t).unwrap() {
        ReadOutcome::Event(info) => assert_eq!(info.device_lost, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(refused_at(dev.read_event(&mut out, t)), 90);
    // The log shows the refused line, not the one refused before it.
    assert_eq!(
        dev.rejected_bytes().escape_ascii().to_string(),
        "3 400 70 25.00 12 22.10"
    );
}

/// A v2 detector reset mid-run (a brown-out): it prints its header and name line again and
/// numbers its events from 1 again. That is a restart, said in the run metadata: the name
/// line is the name, every event is kept, nothing is bad data.
#[test]
fn a_v2_detector_that_restarts_mid_run_keeps_its_name_and_every_event() {
    let gen = CosmicWatchGen::new(&CosmicWatchSimConfig {
        name: "Alice".into(),
        ..Default::default()
    });
    let mut script = String::new();
    gen.header(&mut script);
    let event = |n: u64| format!("{n} {} 312 87.25 {} 23.41\r\n", 1000 * n, 10 * n);
    (1..=5).for_each(|n| script.push_str(&event(n)));
    let restart_at = script.len();
    gen.header(&mut script);
    let first_after = script.len() as u64;
    (1..=3).for_each(|n| script.push_str(&event(n)));
    let sim = SimulatorHandle::start("restart", move |_| {
        Box::new(daq_drivers::serial::ScriptedDevice::new(script.clone()))
    })
    .unwrap();
    let mut dev = cosmicwatch::open(CosmicWatchConfig {
        path: sim.path().into(),
        ..Default::default()
    })
    .unwrap();
    let mut out = [0u8; 34];
    let mut numbers = Vec::new();
    let mut idle = 0;
    while numbers.len() < 8 {
        match dev.read_event(&mut out, Duration::from_millis(500)) {
            Ok(ReadOutcome::Event(info)) => {
                assert_eq!(info.device_lost, 0);
                numbers.push(u64_at(&out, 0));
            }
            Ok(_) => {
                idle += 1;
                assert!(idle < 4, "only {numbers:?} arrived");
            }
            Err(e) => panic!(
                "{e}; first bytes {:?}",
                String::from_utf8_lossy(dev.rejected_bytes())
            ),
        }
    }
    assert_eq!(numbers, [1, 2, 3, 4, 5, 1, 2, 3]);
    assert_eq!(dev.name(), Some("Alice"));
    let meta = dev.run_metadata();
    assert!(
        meta.contains(&("cosmicwatch_restarts".into(), "1".into())),
        "{meta:?}"
    );
    let said = &meta
        .iter()
        .find(|(k, _)| k == "cosmicwatch_last_restart")
        .unwrap_or_else(|| panic!("no restart in {meta:?} (header at byte {restart_at})"))
        .1;
    assert!(
        said.starts_with(&format!("at byte {first_after}: ")) && said.contains("after event 5"),
        "{said}"
    );
}

/// Throughput through the pty (measurement, not a check): run with
/// `cargo test -p daq-drivers --release --test serial_cosmicwatch -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run in release with --ignored --nocapture"]
fn cosmicwatch_v3x_throughput_measurement() {
    let cols = V3Columns::ALL;
    let cfg = CosmicWatchSimConfig {
        version: SimVersion::V3X(cols),
        rate: 100_000.0,
        second: Duration::from_secs(1),
        ..Default::default()
    };
    let (_sim, mut dev) = common::open_cosmicwatch(
        cfg,
        CosmicWatchConfig {
            version: CosmicWatchVersion::V3X(cols),
            ..Default::default()
        },
    );
    let n = 200_000;
    let t0 = std::time::Instant::now();
    let got = read_n(&mut dev, n);
    let s = t0.elapsed().as_secs_f64();
    assert_eq!(got.len(), n);
    println!(
        "cosmicwatch v3X: {n} events in {s:.3} s = {:.0} events/s",
        n as f64 / s
    );
}

/// An event line the stop cut off (no CR LF) is bad data at the stop, not a lost line and
/// not an event: it may be cut short.
#[test]
fn a_cosmicwatch_line_cut_off_by_the_stop_is_bad_data() {
    const SCRIPT: &[u8] = b"### header\r\nAxel\r\n1 100 60 21.00 3 22.10\r\n2 300 70 25.00 9 22.1";
    let (_sim, mut dev) = v2_on_script(SCRIPT);
    let mut out = [0u8; 34];
    common::expect_event(&mut dev, &mut out, Duration::from_millis(500));
    assert_eq!(
        dev.read_event(&mut out, Duration::from_millis(100))
            .unwrap(),
        ReadOutcome::Idle
    );
    match dev.stop() {
        Err(DriverError::Protocol { offset, detail, .. }) => {
            assert_eq!(offset, 42);
            assert!(
                detail.contains("21 byte(s) without a line end discarded at the stop"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
}
