//! The MCPHA driver against the simulated board, through real loopback TCP sockets.

use super::protocol::{self, Command, Distribution, Input, Slope, TriggerMode};
use super::simulator::{expected_traces, McphaSimConfig, ScopeSettings, SimMcpha};
use super::*;
use crate::{DriverError, ReadOutcome, Source};
use std::time::{Duration, Instant};

fn config(sim: &SimMcpha) -> McphaConfig {
    McphaConfig {
        scope: ScopeConfig {
            address: sim.addr().to_string(),
            connect_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_millis(300),
            trigger_level: 100,
            pre: 100,
            samples: 1000,
            backoff: crate::serial::Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(100),
            },
            ..ScopeConfig::default()
        },
        decimation: 4,
        discard_tail: 100,
        ..McphaConfig::default()
    }
}

/// A simulated board whose detector pulses `rate` times a second in real time.
fn paced(rate: f64) -> SimMcpha {
    SimMcpha::start(McphaSimConfig {
        paced: true,
        rate,
        ..McphaSimConfig::default()
    })
    .unwrap()
}

/// The default config with `f` applied to its scope.
fn scoped(f: impl FnOnce(&mut ScopeConfig)) -> McphaConfig {
    let mut c = McphaConfig::default();
    f(&mut c.scope);
    c
}

fn scope_of(c: &McphaConfig) -> ScopeSettings {
    ScopeSettings {
        decimation: c.decimation,
        negator: c.scope.negator,
        source: c.scope.trigger_source,
        slope: c.scope.trigger_slope,
        mode: c.scope.trigger_mode,
        level: c.scope.trigger_level,
        pre: c.scope.pre,
        total: c.scope.samples + c.discard_tail,
    }
}

/// mimoCoRB2's `command()` bytes.
fn m2(code: u64, number: u64, value: i64) -> [u8; 8] {
    (code << 56 | number << 52 | (value as u64 & 0xFFFFFFFFFFFFF)).to_le_bytes()
}

/// `base` with its traces streamed (the fork's code 31) in sets of `set_size`.
fn streamed_in_sets_of(set_size: u32, base: McphaConfig) -> McphaConfig {
    McphaConfig {
        mode: McphaMode::Traces(TraceAcquisition::Stream { set_size }),
        ..base
    }
}

/// The driver opened with `cfg` and started, and the first `n` traces the simulator of
/// `simcfg` sends it.
fn started_with_expected_traces(
    simcfg: &McphaSimConfig,
    cfg: McphaConfig,
    n: usize,
) -> (Mcpha, Vec<Vec<u8>>) {
    let want = expected_traces(simcfg, &scope_of(&cfg), n);
    let mut m = open(cfg).unwrap();
    m.start().unwrap();
    (m, want)
}

fn next_event(m: &mut Mcpha, out: &mut [u8]) -> Result<(), DriverError> {
    let t0 = Instant::now();
    loop {
        match m.read_event(out, Duration::from_millis(100))? {
            ReadOutcome::Event(_) => return Ok(()),
            ReadOutcome::Idle if t0.elapsed() < Duration::from_secs(10) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Waits out a disconnect the way the engine does: `reconnect` until it is back.
fn come_back(m: &mut Mcpha) {
    let t0 = Instant::now();
    while !m.reconnect().unwrap() {
        assert!(t0.elapsed() < Duration::from_secs(10), "never came back");
    }
}

#[test]
fn the_connect_sequence_is_mimocorb2s_byte_for_byte() {
    let sim = SimMcpha::start(McphaSimConfig::default()).unwrap();
    let mut m = open(config(&sim)).unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    next_event(&mut m, &mut out).unwrap();
    let t = sim.transcript();
    let want = [
        m2(11, 0, 0), // our probe: is an MCPHA server answering?
        m2(4, 0, 4),
        m2(5, 0, 0),
        m2(5, 1, 0),
        m2(14, 0, 0),
        m2(15, 0, 0),
        m2(16, 0, 100),
        m2(17, 0, 100),
        m2(13, 0, 0),
        m2(18, 0, 1100),
        m2(2, 0, 0),
        m2(19, 0, 0),
        m2(31, 0, 100),
    ];
    assert_eq!(t, want);
}

/// [`config`] with 400-sample traces, 50 of them before a trigger at 300 counts.
fn traces_400(sim: &SimMcpha) -> McphaConfig {
    let c = config(sim);
    McphaConfig {
        scope: ScopeConfig {
            trigger_level: 300,
            pre: 50,
            samples: 400,
            ..c.scope
        },
        ..c
    }
}

#[test]
fn streamed_traces_are_the_simulators_and_the_stale_tail_is_dropped() {
    let simcfg = McphaSimConfig {
        seed: 42,
        ..McphaSimConfig::default()
    };
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let cfg = streamed_in_sets_of(7, traces_400(&sim));
    let (mut m, want) = started_with_expected_traces(&simcfg, cfg, 30);
    let mut out = vec![0u8; 1600];
    for (i, w) in want.iter().enumerate() {
        next_event(&mut m, &mut out).unwrap();
        assert_eq!(&out[..], &w[..1600], "trace {i}");
        // IN2 carries the coincident half-height pulse.
        let (h1, h2) = protocol::sample(&out, 55).unwrap();
        assert!((h2 - h1 / 2).abs() <= 4, "{h1} {h2}");
        assert!(
            protocol::sample(&out, 49).unwrap().0 < 300
                && protocol::sample(&out, 50).unwrap().0 >= 300
        );
    }
    // 30 traces in sets of 7: five requests.
    let daq = sim
        .transcript()
        .iter()
        .filter(|w| **w == Command::StartDaq(7).encode())
        .count();
    assert_eq!(daq, 5);
    assert_eq!(m.stats().events, 30);

    // Without dropping the tail, the stale samples of R.6 reach the events.
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let cfg = McphaConfig {
        discard_tail: 0,
        ..traces_400(&sim)
    };
    let (mut m, want) = started_with_expected_traces(&simcfg, cfg, 20);
    let mut differ = 0;
    for w in &want {
        next_event(&mut m, &mut out).unwrap();
        assert_eq!(&out[..(400 - 63) * 4], &w[..(400 - 63) * 4]);
        differ += usize::from(out != *w);
    }
    assert!(differ > 10, "{differ}");
}

#[test]
fn polled_traces_arm_poll_read_and_rearm() {
    let simcfg = McphaSimConfig::default();
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let cfg = McphaConfig {
        scope: ScopeConfig {
            negator: [true, true],
            trigger_slope: Slope::Falling,
            trigger_level: -500,
            samples: 300,
            pre: 30,
            ..config(&sim).scope
        },
        mode: McphaMode::Traces(TraceAcquisition::Poll {
            poll: Duration::from_millis(1),
        }),
        discard_tail: 64,
        ..config(&sim)
    };
    let (mut m, want) = started_with_expected_traces(&simcfg, cfg, 5);
    let mut out = vec![0u8; 1200];
    for w in &want {
        next_event(&mut m, &mut out).unwrap();
        assert_eq!(&out[..], &w[..1200]);
        assert!(protocol::sample(&out, 30).unwrap().0 <= -500);
    }
    let t = sim.transcript();
    // After the setup (probe + 11 words): status, read, reset, arm, per trace.
    let per = [m2(11, 0, 0), m2(20, 0, 0), m2(2, 0, 0), m2(19, 0, 0)];
    // (The last reset and arm may still be on their way to the simulator.)
    assert!(t.len() >= 12 + 4 * 5 - 2, "{}", t.len());
    for (i, c) in t[12..].chunks(4).enumerate() {
        assert_eq!(c, &per[..c.len()], "trace {i}");
    }
    assert!(!t.contains(&m2(31, 0, 100)));
}

#[test]
fn no_trigger_is_idle_not_an_error() {
    let sim = paced(100.0);
    let mut m = open(McphaConfig {
        scope: ScopeConfig {
            trigger_level: 8000,
            ..config(&sim).scope
        },
        ..config(&sim)
    })
    .unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    let t0 = Instant::now();
    assert_eq!(
        m.read_event(&mut out, Duration::from_millis(50)).unwrap(),
        ReadOutcome::Idle
    );
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[test]
fn histogram_mode_reads_spectra_and_live_time() {
    let sim = paced(50_000.0);
    let cfg = McphaConfig {
        mode: McphaMode::Histogram {
            interval: Duration::from_millis(100),
        },
        ..config(&sim)
    };
    let mut m = open(cfg).unwrap();
    assert_eq!(m.layout().records, 4096);
    assert_eq!(m.layout().record_size(), 24);
    m.start().unwrap();
    let mut out = vec![0u8; 4096 * 24];
    let mut last = (0u64, 0.0f64);
    for _ in 0..5 {
        next_event(&mut m, &mut out).unwrap();
        let bins: Vec<u32> = out
            .chunks_exact(24)
            .map(|r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]))
            .collect();
        let in2: u64 = out
            .chunks_exact(24)
            .map(|r| u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]])))
            .sum();
        let live = f64::from_le_bytes(out[8..16].try_into().unwrap());
        let sum: u64 = bins.iter().map(|&b| u64::from(b)).sum();
        assert!(
            sum >= last.0 && live >= last.1,
            "{sum} {live} after {last:?}"
        );
        assert_eq!(in2, sum, "every pulse has its IN2 partner in range");
        // The 1000-count line holds about 60 % of the pulses.
        let line: u64 = bins[880..1120].iter().map(|&b| u64::from(b)).sum();
        if sum > 1000 {
            assert!(
                (0.5..0.7).contains(&(line as f64 / sum as f64)),
                "{line}/{sum}"
            );
        }
        last = (sum, live);
    }
    assert!(last.0 > 5_000, "{last:?}");
    // Live time of the board's timer, not of the host: within a few ms of wall time.
    assert!(last.1 > 0.25 && last.1 < 2.0, "{last:?}");
}

#[test]
fn a_reset_mid_trace_is_a_disconnect_and_the_stream_goes_on() {
    let simcfg = McphaSimConfig::default();
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let mut m = open(streamed_in_sets_of(5, config(&sim))).unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    for _ in 0..3 {
        next_event(&mut m, &mut out).unwrap();
    }
    // The simulator streams ahead of the reader (at most one set of 5): the reset lands in
    // one of the next traces, 1000 bytes into it.
    sim.reset_after(4400 + 1000);
    let mut before = 3;
    let detail = loop {
        match m.read_event(&mut out, Duration::from_millis(100)) {
            Ok(ReadOutcome::Event(_)) => before += 1,
            Ok(_) => {}
            Err(DriverError::Disconnected { detail, .. }) => break detail,
            Err(e) => panic!("{e}"),
        }
        assert!(before < 3 + 12, "no reset");
    };
    assert!(
        detail.contains("reset") || detail.contains("closed"),
        "{detail}"
    );
    come_back(&mut m);
    for _ in 0..10 {
        next_event(&mut m, &mut out).unwrap();
        protocol::check_trace(&out).unwrap();
    }
    let s = m.stats();
    assert_eq!((s.disconnects, s.reconnects), (1, 1));
    assert_eq!(s.events, before + 10);
    assert_eq!(sim.clients(), 2);
}

#[test]
fn a_stall_mid_trace_is_a_bad_record_then_a_reconnect() {
    let sim = SimMcpha::start(McphaSimConfig::default()).unwrap();
    let mut m = open(streamed_in_sets_of(3, config(&sim))).unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    next_event(&mut m, &mut out).unwrap();
    // The simulator may be ahead by a set: the stall lands 2000 bytes into a later trace.
    sim.stall(2000);
    let detail = loop {
        match m.read_event(&mut out, Duration::from_millis(100)) {
            Ok(_) => assert!(m.stats().events < 8),
            Err(DriverError::Protocol { detail, .. }) => break detail,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(detail.contains("short trace: 2000 of 4400"), "{detail}");
    let before = m.stats().events;
    assert!(matches!(
        m.read_event(&mut out, Duration::from_millis(100)),
        Err(DriverError::Disconnected { .. })
    ));
    // While the board hangs, connecting works (the backlog) but it does not answer: the
    // driver must not take that for a board that is back.
    for _ in 0..3 {
        assert!(!m.reconnect().unwrap(), "a hung board counted as back");
    }
    assert_eq!(m.stats().reconnects, 0);
    sim.release();
    come_back(&mut m);
    for _ in 0..5 {
        next_event(&mut m, &mut out).unwrap();
    }
    let s = m.stats();
    assert_eq!((s.short, s.events, s.reconnects), (1, before + 5, 1));
}

#[test]
fn garbage_traces_are_refused_and_the_next_ones_are_exact() {
    let simcfg = McphaSimConfig::default();
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let cfg = streamed_in_sets_of(4, config(&sim));
    let (mut m, want) = started_with_expected_traces(&simcfg, cfg, 20);
    let mut out = vec![0u8; 4000];
    for w in &want[..3] {
        next_event(&mut m, &mut out).unwrap();
        assert_eq!(&out[..], &w[..4000]);
    }
    sim.garbage(2);
    // Every trace the simulator sent has its number: garbage replaces what the scope had
    // recorded, and a garbage trace of a trace's length keeps the stream in step, so the
    // traces after it come whole and in order.
    let mut index = 3;
    let mut refused = Vec::new();
    while index < 14 {
        match m.read_event(&mut out, Duration::from_millis(100)) {
            Ok(ReadOutcome::Event(_)) => {
                assert_eq!(&out[..], &want[index][..4000], "trace {index}");
                index += 1;
            }
            Ok(_) => {}
            Err(DriverError::Protocol { detail, .. }) => {
                assert!(detail.contains("outside the 14-bit"), "{detail}");
                refused.push(index);
                index += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[1], refused[0] + 1);
    assert_eq!(m.stats().garbage, 2);
    assert_eq!(m.stats().events, 12);
    assert_eq!(m.stats().reconnects, 0);
}

#[test]
fn the_generator_is_configured_and_its_pulses_are_the_traces() {
    let sim = SimMcpha::start(McphaSimConfig::default()).unwrap();
    let cfg = McphaConfig {
        generator: Some(GeneratorConfig {
            fall_us: 2,
            rise_ns: 50,
            lower: -8192,
            upper: 8191,
            rate: 10_000,
            distribution: Distribution::Poisson,
            spectrum: vec![(1500, 1), (3000, 1)],
            keep_pulsing: false,
        }),
        ..config(&sim)
    };
    let mut m = open(cfg).unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    let mut seen = [0; 2];
    for _ in 0..40 {
        next_event(&mut m, &mut out).unwrap();
        let h = (0..1000)
            .map(|i| protocol::sample(&out, i).unwrap().0)
            .max()
            .unwrap();
        // The highest sample of a pulse rising over several samples: within 1 % of its peak.
        let i = [1500, 3000].iter().position(|&x| (h - x).abs() <= x / 100);
        seen[i.unwrap_or_else(|| panic!("height {h}"))] += 1;
    }
    assert!(seen[0] > 5 && seen[1] > 5, "{seen:?}");
    let t = sim.transcript();
    let gen = [
        m2(30, 0, 0),
        m2(21, 0, 2),
        m2(22, 0, 50),
        m2(23, 0, -8192),
        m2(24, 0, 8191),
        m2(25, 0, 10_000),
        m2(26, 0, 1),
        m2(27, 0, 0),
        m2(28, 0, (1500 << 32) | 1),
        m2(28, 0, (3000 << 32) | 1),
        m2(29, 0, 0),
        m2(2, 0, 0),
        m2(19, 0, 0),
    ];
    assert_eq!(&t[10..23], &gen);
}

#[test]
fn configs_that_cannot_work_are_refused_before_connecting() {
    for (c, what) in [
        (scoped(|s| s.pre = 0), "pretrigger"),
        (scoped(|s| s.samples = 8_388_600), "exceeds"),
        (
            McphaConfig {
                generator: Some(GeneratorConfig {
                    fall_us: 1,
                    rise_ns: 1,
                    lower: 0,
                    upper: 1,
                    rate: 1,
                    distribution: Distribution::Uniform,
                    spectrum: vec![],
                    keep_pulsing: false,
                }),
                ..McphaConfig::default()
            },
            "empty",
        ),
    ] {
        let e = c.validate().unwrap_err();
        assert!(e.contains(what), "{e}");
    }
    let _ = (Input::In1, TriggerMode::Auto);
}

#[test]
fn nothing_listening_is_an_open_error_and_resolve_adds_the_port() {
    assert_eq!(
        resolve("127.0.0.1", 1001).unwrap().to_string(),
        "127.0.0.1:1001"
    );
    assert_eq!(
        resolve("127.0.0.1:5000", 1001).unwrap().to_string(),
        "127.0.0.1:5000"
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    match open(scoped(|s| s.address = addr.to_string())) {
        Err(DriverError::Open { detail, .. }) => assert!(detail.contains("MCPHA"), "{detail}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened nothing"),
    }
}

#[test]
fn traces_and_the_hardware_histogram_from_one_connection() {
    let simcfg = McphaSimConfig::default();
    let sim = SimMcpha::start(simcfg.clone()).unwrap();
    let cfg = McphaConfig {
        mode: McphaMode::Traces(TraceAcquisition::Stream { set_size: 10 }),
        histogram_every: Some(Duration::ZERO),
        pha: [PhaConfig {
            delay: 100,
            min: 100,
            max: 4095,
        }; 2],
        ..config(&sim)
    };
    let (mut m, want) = started_with_expected_traces(&simcfg, cfg, 30);
    let mut out = vec![0u8; 4000];
    let mut readouts = Vec::new();
    for w in &want {
        next_event(&mut m, &mut out).unwrap();
        assert_eq!(&out[..], &w[..4000]);
        if let Some((h1, _, st)) = m.take_histogram() {
            readouts.push((h1.iter().map(|&c| u64::from(c)).sum::<u64>(), st.timers[0]));
        }
    }
    // Read before each of the three sets: the pulses of 0, 10 and 20 traces (not paced,
    // every pulse above the trigger level, which is the PHA threshold, is a trace), and
    // the one waiting in the armed scope.
    assert_eq!(readouts.len(), 3, "{readouts:?}");
    assert_eq!(readouts[0].0, 1);
    assert_eq!(readouts[1].0, 11);
    assert_eq!(readouts[2].0, 21);
    assert!(readouts[2].1 > readouts[1].1);
}

#[test]
fn a_board_that_vanishes_is_waited_for_with_backoff() {
    let sim = SimMcpha::start(McphaSimConfig::default()).unwrap();
    let mut m = open(McphaConfig {
        scope: ScopeConfig {
            connect_timeout: Duration::from_millis(100),
            ..config(&sim).scope
        },
        ..config(&sim)
    })
    .unwrap();
    m.start().unwrap();
    let mut out = vec![0u8; 4000];
    next_event(&mut m, &mut out).unwrap();
    sim.vanish();
    let e = loop {
        if let Err(e) = m.read_event(&mut out, Duration::from_millis(100)) {
            break e;
        }
    };
    assert!(matches!(e, DriverError::Disconnected { .. }), "{e}");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        // Connecting works (the backlog), the probe gets no answer.
        assert!(!m.reconnect().unwrap());
    }
    sim.reappear();
    come_back(&mut m);
    next_event(&mut m, &mut out).unwrap();
    protocol::check_trace(&out).unwrap();
    let s = m.stats();
    assert_eq!((s.disconnects, s.reconnects), (1, 1));
}
