//! The SCPI driver against the simulated server over loopback TCP: the same code path as
//! against a board.

use super::protocol::{window_start, BUFFER_SAMPLES};
use super::simulator::{expected_traces, AcqSettings, Acquisition, TriggerWord};
use super::{open_scpi, probe_scpi, ScpiConfig, ScpiSimConfig, SimScpi};
use crate::redpitaya::protocol::{Input, Slope};
use crate::redpitaya::ScopeConfig;
use crate::{DriverError, ReadOutcome, Source};
use std::time::{Duration, Instant};

fn sim(cfg: ScpiSimConfig) -> SimScpi {
    SimScpi::start(cfg).unwrap()
}

fn unpaced(seed: u64) -> ScpiSimConfig {
    ScpiSimConfig {
        seed,
        paced: false,
        ..ScpiSimConfig::default()
    }
}

fn config(sim: &SimScpi) -> ScpiConfig {
    ScpiConfig {
        scope: ScopeConfig {
            address: sim.addr().to_string(),
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(5),
            ..ScopeConfig::default()
        },
        ..ScpiConfig::default()
    }
}

/// The default config with `f` applied to its scope.
fn scoped(f: impl FnOnce(&mut ScopeConfig)) -> ScpiConfig {
    let mut c = ScpiConfig::default();
    f(&mut c.scope);
    c
}

/// The settings the simulator sees for `c` (level sent in volts, read back in counts).
fn settings(c: &ScpiConfig, source: TriggerWord, level: i16) -> AcqSettings {
    AcqSettings {
        decimation: c.decimation,
        level,
        delay: i64::from(c.scope.samples) - i64::from(c.scope.pre) - 8192,
        source: Some(source),
    }
}

/// Reads `n` events (or errors) with a generous timeout.
fn read(d: &mut dyn Source, n: usize) -> Vec<Result<Vec<u8>, DriverError>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; d.layout().event_size()];
    let t0 = Instant::now();
    while out.len() < n {
        assert!(t0.elapsed() < Duration::from_secs(60), "no events");
        match d.read_event(&mut buf, Duration::from_millis(100)) {
            Ok(ReadOutcome::Event(_)) => out.push(Ok(buf.clone())),
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::End) => panic!("end"),
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

#[test]
fn the_driver_sends_the_documented_cycle_and_reads_the_seeded_traces() {
    let s = sim(unpaced(5));
    let c = config(&s);
    let mut d = open_scpi(c.clone()).unwrap();
    d.start().unwrap();
    let got: Vec<Vec<u8>> = read(&mut d, 40).into_iter().map(Result::unwrap).collect();
    let want = expected_traces(
        &unpaced(5),
        &settings(&c, TriggerWord::Edge(0, true), 100),
        c.scope.pre,
        c.scope.samples,
        40,
    );
    assert_eq!(got.len(), 40);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "trace {i} differs");
        // The trigger sample is the first at or above the level on IN1, at index pre.
        let at = |k: usize| i16::from_le_bytes([g[4 * k], g[4 * k + 1]]);
        assert!(
            at(c.scope.pre as usize - 1) < 100 && at(c.scope.pre as usize) >= 100,
            "trace {i}"
        );
    }
    // Some windows wrap around the buffer's end: the reads wrap with them.
    let mut a = Acquisition::new(&unpaced(5));
    let st = settings(&c, TriggerWord::Edge(0, true), 100);
    let wrapped = (0..40)
        .filter(|_| {
            a.start();
            while !a.advance(&st, u64::MAX) {}
            window_start(a.tpos, c.scope.pre) + c.scope.samples > BUFFER_SAMPLES
        })
        .count();
    assert!(wrapped > 0, "no window wrapped: the test does not cover it");
    // The transcript: *IDN?, the setup, then per trace arm, poll, position, two blocks.
    let t = s.transcript();
    assert_eq!(
        t[..8],
        [
            "*IDN?",
            "ACQ:RST",
            "ACQ:DEC 4",
            "ACQ:DATA:Units RAW",
            "ACQ:DATA:FORMAT BIN",
            "ACQ:DATA:BYTE:ORDER LEND",
            "ACQ:TRig:LEV 0.01220703125",
            "ACQ:TRig:DLY -7292",
        ]
    );
    assert_eq!(t[8..11], ["ACQ:START", "ACQ:TRig CH1_PE", "ACQ:TRig:STAT?"]);
    let first_read = t.iter().position(|l| l == "ACQ:TPOS?").unwrap();
    assert_eq!(t[first_read - 1], "ACQ:TRig:FILL?");
    assert!(t[first_read + 1].starts_with("ACQ:SOUR1:DATA:STArt:N? "));
    assert!(t[first_read + 1].ends_with(",1000"));
    assert_eq!(
        t[first_read + 2].replace("SOUR2", "SOUR1"),
        t[first_read + 1]
    );
    assert_eq!(d.stats().events, 40);
    assert!(
        probe_scpi(s.addr(), Duration::from_secs(1)).is_err(),
        "one client at a time: the probe must not be served while the driver is connected"
    );
    drop(d);
    assert!(probe_scpi(s.addr(), Duration::from_secs(5))
        .unwrap()
        .starts_with("REDPITAYA"));
}

#[test]
fn negated_input_triggers_on_the_flipped_edge_and_stores_positive_pulses() {
    let sc = ScpiSimConfig {
        negative: true,
        ..unpaced(9)
    };
    let s = sim(sc.clone());
    let c = ScpiConfig {
        scope: ScopeConfig {
            negator: [true, false],
            trigger_slope: Slope::Rising,
            trigger_source: Input::In1,
            ..config(&s).scope
        },
        ..config(&s)
    };
    assert_eq!(c.trigger_word(), "CH1_NE");
    let mut d = open_scpi(c.clone()).unwrap();
    d.start().unwrap();
    let got: Vec<Vec<u8>> = read(&mut d, 10).into_iter().map(Result::unwrap).collect();
    let want = expected_traces(
        &sc,
        &settings(&c, TriggerWord::Edge(0, false), -100),
        c.scope.pre,
        c.scope.samples,
        10,
    );
    for (g, w) in got.iter().zip(&want) {
        for (gs, ws) in g.chunks_exact(4).zip(w.chunks_exact(4)) {
            let (g1, w1) = (
                i16::from_le_bytes([gs[0], gs[1]]),
                i16::from_le_bytes([ws[0], ws[1]]),
            );
            assert_eq!(g1, w1.wrapping_neg());
            assert_eq!(gs[2..], ws[2..]);
        }
        let at = |k: usize| i16::from_le_bytes([g[4 * k], g[4 * k + 1]]);
        assert!(at(c.scope.pre as usize) >= 100);
    }
    assert!(s
        .transcript()
        .iter()
        .any(|l| l == "ACQ:TRig:LEV -0.01220703125"));
}

#[test]
fn garbage_is_refused_in_step_and_the_next_traces_are_the_right_ones() {
    let sc = ScpiSimConfig {
        garbage_every: 3,
        ..unpaced(3)
    };
    let s = sim(sc.clone());
    let c = config(&s);
    let mut d = open_scpi(c.clone()).unwrap();
    d.start().unwrap();
    let got = read(&mut d, 12);
    let want = expected_traces(
        &sc,
        &settings(&c, TriggerWord::Edge(0, true), 100),
        c.scope.pre,
        c.scope.samples,
        12,
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i % 3 == 2 {
            match g {
                Err(DriverError::Protocol { detail, .. }) => {
                    assert!(detail.contains("outside the 14-bit range"), "{detail}")
                }
                other => panic!("trace {i}: {other:?}"),
            }
        } else {
            assert!(g.as_ref().unwrap() == w, "trace {i} differs");
        }
    }
    assert_eq!(d.stats().refused, 4);
    // One connection throughout: a refused block does not cost the connection.
    assert_eq!(s.clients(), 1);
}

#[test]
fn the_board_vanishing_is_a_disconnect_then_a_reconnect_with_the_setup_again() {
    let s = sim(ScpiSimConfig {
        paced: true,
        ..ScpiSimConfig::default()
    });
    let c = ScpiConfig {
        scope: ScopeConfig {
            connect_timeout: Duration::from_millis(300),
            stall_timeout: Duration::from_millis(500),
            ..config(&s).scope
        },
        ..config(&s)
    };
    let mut d = open_scpi(c).unwrap();
    d.start().unwrap();
    assert!(read(&mut d, 3).iter().all(Result::is_ok));
    s.vanish();
    let t0 = Instant::now();
    let mut buf = vec![0u8; d.layout().event_size()];
    let e = loop {
        assert!(t0.elapsed() < Duration::from_secs(30));
        if let Err(e) = d.read_event(&mut buf, Duration::from_millis(100)) {
            break e;
        }
    };
    assert!(matches!(e, DriverError::Disconnected { .. }), "{e:?}");
    assert!(!d.reconnect().unwrap());
    s.reappear();
    let t0 = Instant::now();
    while !d.reconnect().unwrap() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never back");
    }
    assert!(read(&mut d, 3).iter().all(Result::is_ok));
    assert_eq!((d.stats().disconnects, d.stats().reconnects), (1, 1));
    let idns = s.transcript().iter().filter(|l| *l == "*IDN?").count();
    let resets = s.transcript().iter().filter(|l| *l == "ACQ:RST").count();
    // While gone, a connect lands in the backlog and *IDN? goes unanswered: an attempt
    // that failed. The setup is sent once per connection that answered.
    assert!(idns >= 2, "{idns}");
    assert_eq!(resets, 2);
}

#[test]
fn bad_settings_are_refused_before_connecting() {
    for (c, says) in [
        (
            ScpiConfig {
                decimation: 3,
                ..ScpiConfig::default()
            },
            "power of two",
        ),
        (scoped(|s| s.samples = 20000), "1 … 16384"),
        (scoped(|s| s.pre = 1000), "pretrigger"),
    ] {
        let e = open_scpi(c).err().unwrap().to_string();
        assert!(e.contains(says), "{e}");
    }
}
