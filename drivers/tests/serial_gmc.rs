//! GMC driver and simulator on a real pty, through `serialport`: byte-exact transcripts per
//! model, the connect sequence on the wire, Poisson counts through the heartbeat and polled
//! CPM, unplug and reconnect.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use daq_drivers::gmc::{self, protocol::CountWidth, GmcConfig, GmcMode, GmcModel, GmcSimConfig};
use daq_drivers::serial::Backoff;
use daq_drivers::{DriverError, ReadOutcome, Source};

/// A device second long enough that no tick happens during a transcript.
const FROZEN: Duration = Duration::from_secs(3600);

/// A simulated `model` counting `cps` per device second (Poisson, `seed`), its seconds
/// 10 ms long.
fn counting(model: GmcModel, cps: f64, seed: u64) -> GmcSimConfig {
    GmcSimConfig {
        model,
        cps,
        seed,
        second: Duration::from_millis(10),
        ..Default::default()
    }
}

fn client(path: &std::path::Path) -> Box<dyn serialport::SerialPort> {
    serialport::new(path.to_string_lossy(), 115200)
        .timeout(Duration::from_millis(300))
        .open()
        .unwrap()
}

/// Sends `command` and returns what arrives: waits (up to 2 s) for `expect` bytes, then for
/// 20 ms more to catch any extra byte; when nothing is expected, listens for 100 ms.
fn exchange_n(
    port: &mut Box<dyn serialport::SerialPort>,
    command: &[u8],
    expect: usize,
) -> Vec<u8> {
    port.write_all(command).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got.len() < expect && std::time::Instant::now() < deadline {
        port.set_timeout(Duration::from_millis(100)).unwrap();
        if let Ok(n) = port.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    port.set_timeout(Duration::from_millis(if expect == 0 { 100 } else { 20 }))
        .unwrap();
    while let Ok(n) = port.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

macro_rules! check {
    ($port:expr, $cmd:expr, $want:expr, $name:expr) => {{
        let want: &[u8] = $want;
        assert_eq!(
            exchange_n(&mut $port, $cmd, want.len()),
            want,
            "{} {}",
            $name,
            String::from_utf8_lossy($cmd)
        );
    }};
}

#[test]
fn gmc_transcripts_are_byte_exact_per_model() {
    for model in GmcModel::ALL {
        let cfg = GmcSimConfig {
            model,
            second: FROZEN,
            cps: 5.0,
            ..Default::default()
        };
        let profile = model.profile();
        let four = profile.class.count_width() == CountWidth::Four;
        let (sim, path) = gmc::simulate(cfg).unwrap();
        let mut port = client(&path);
        let name = profile.version;

        check!(port, b"<HEARTBEAT0>>", b"", name);
        check!(port, b"<GETVER>>", profile.version.as_bytes(), name);
        let zero: &[u8] = if four { &[0, 0, 0, 0] } else { &[0, 0] };
        check!(port, b"<GETCPM>>", zero, name);
        check!(port, b"<GETCPS>>", if four { zero } else { b"" }, name);
        let volts: &[u8] = if four { b"3.97v" } else { &[39] };
        check!(port, b"<GETVOLT>>", volts, name);
        check!(
            port,
            b"<GETSERIAL>>",
            &[0xF4, 0x88, 0x00, 0x45, 0x1A, 0x9B, 0x0E],
            name
        );
        check!(port, b"<GETDATETIME>>", &[26, 1, 2, 3, 4, 5, 0xAA], name);
        check!(
            port,
            b"<SETDATETIME\x18\x06\x1e\x17\x3b\x3a>>",
            &[0xAA],
            name
        );
        check!(
            port,
            b"<GETDATETIME>>",
            &[24, 6, 30, 23, 59, 58, 0xAA],
            name
        );
        let cfg_len = if four { 512 } else { 256 };
        assert_eq!(
            exchange_n(&mut port, b"<GETCFG>>", cfg_len).len(),
            cfg_len,
            "{name}"
        );
        check!(port, b"<ECFG>>", &[0xAA], name);
        let temp: &[u8] = if model == GmcModel::Gmc320 {
            &[22, 5, 0, 0xAA]
        } else {
            b""
        };
        check!(port, b"<GETTEMP>>", temp, name);
        check!(port, b"<KEY0>>", b"", name);
        check!(port, b"<NOSUCHCOMMAND>>", b"", name);
        // Garbage before a frame is skipped; the frame still answers.
        check!(port, b"xx>>\x00<GETVER>>", profile.version.as_bytes(), name);
        drop(port);
        let sent = sim.wire().host_sent();
        assert!(
            sent.starts_with(b"<HEARTBEAT0>><GETVER>><GETCPM>>"),
            "{name}"
        );
    }
}

#[test]
fn gmc_driver_connect_sequence_and_metadata() {
    for model in [GmcModel::Gmc300V3, GmcModel::Gmc600Plus] {
        let (sim, mut dev) = common::open_gmc(
            GmcSimConfig {
                model,
                second: FROZEN,
                ..Default::default()
            },
            GmcConfig::default(),
        );
        // A version reply that comes late (a loaded machine) makes the driver start the
        // sequence again: any number of `<HEARTBEAT0>><GETVER>>` attempts, then the rest once.
        let sent = sim.wire().host_sent();
        let mut rest: &[u8] = &sent;
        let attempt: &[u8] = b"<HEARTBEAT0>><GETVER>>";
        let mut attempts = 0;
        while rest.starts_with(attempt) {
            rest = &rest[attempt.len()..];
            attempts += 1;
        }
        assert!(attempts >= 1, "{:?}", String::from_utf8_lossy(&sent));
        assert_eq!(
            rest,
            b"<GETSERIAL>><GETVOLT>><GETDATETIME>>",
            "{:?}",
            String::from_utf8_lossy(&sent)
        );
        assert_eq!(dev.info().model, model.profile().version);
        assert_eq!(dev.info().serial.as_deref(), Some("F48800451A9B0E"));
        let meta = dev.run_metadata();
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("gmc_device_clock"), "2026-01-02T03:04:05");
        let volts = if model == GmcModel::Gmc300V3 {
            "3.90"
        } else {
            "3.97"
        };
        assert_eq!(get("gmc_battery_volts"), volts);
        assert_eq!(dev.layout().fields[0].name, "cps");
        assert_eq!(dev.layout().event_size(), 4);
        dev.start().unwrap();
        dev.stop().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(sim
            .wire()
            .host_sent()
            .ends_with(b"<GETDATETIME>><HEARTBEAT1>><HEARTBEAT0>>"));
    }
}

fn collect(dev: &mut gmc::Gmc, n: usize) -> Vec<u32> {
    let mut out = [0u8; 4];
    let mut got = Vec::with_capacity(n);
    let mut idle = 0;
    while got.len() < n {
        match dev
            .read_event(&mut out, Duration::from_millis(200))
            .unwrap()
        {
            ReadOutcome::Event(_) => got.push(u32::from_le_bytes(out)),
            ReadOutcome::Idle => {
                idle += 1;
                assert!(idle < 50, "simulator stopped sending");
            }
            ReadOutcome::End => panic!("a counter does not end"),
        }
    }
    got
}

/// Position of `window` inside `all`, if it is a contiguous run of it.
fn find_window(all: &[u32], window: &[u32]) -> Option<usize> {
    all.windows(window.len()).position(|w| w == window)
}

#[test]
fn gmc_heartbeat_delivers_the_simulated_poisson_counts() {
    // 50 counts per device second, device second = 10 ms; 150 heartbeats ≈ 1.5 s.
    for (model, reserved) in [(GmcModel::Gmc320, 0xC000u16), (GmcModel::Gmc500Plus, 0)] {
        let seed = 7;
        let cfg = GmcSimConfig {
            reserved_bits: reserved,
            ..counting(model, 50.0, seed)
        };
        let (_sim, mut dev) = common::open_gmc(cfg, GmcConfig::default());
        dev.start().unwrap();
        let got = collect(&mut dev, 150);
        dev.stop().unwrap();
        // Exact: what arrived is a contiguous run of what the simulator generated (the
        // reserved bits 15–14 are masked away).
        let all = gmc::counts_for_seed(seed, 50.0, 2000);
        assert!(
            find_window(&all, &got).is_some(),
            "{model:?}: received counts are not the generated ones"
        );
        // Statistics: mean 50, sd of the mean sqrt(50/150) = 0.58 → ±3 is > 5 sigma;
        // variance of Poisson = mean: sample variance within [30, 75] (> 4 sigma for n=150).
        let mean = got.iter().map(|&c| c as f64).sum::<f64>() / got.len() as f64;
        let var =
            got.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / (got.len() - 1) as f64;
        assert!((47.0..53.0).contains(&mean), "{model:?}: mean {mean}");
        assert!((30.0..75.0).contains(&var), "{model:?}: variance {var}");
    }
}

#[test]
fn gmc_polled_cpm_is_a_sixty_second_sum_of_the_counts() {
    let seed = 11;
    let (_sim, mut dev) = common::open_gmc(
        counting(GmcModel::Gmc300V4, 20.0, seed),
        GmcConfig {
            mode: GmcMode::PollCpm {
                interval: Duration::from_millis(40),
            },
            ..Default::default()
        },
    );
    assert_eq!(dev.layout().fields[0].name, "cpm");
    dev.start().unwrap();
    // 8 polls × 40 ms ≈ 32 device seconds. Each CPM must be the device's 60-second sum at
    // some second t: sum(counts[t-60..t]) (the running sum before the first minute). The
    // check does not depend on how fast the host polls.
    let got = collect(&mut dev, 8);
    let all = gmc::counts_for_seed(seed, 20.0, 3000);
    let window_sums: std::collections::BTreeSet<u32> = (0..=all.len())
        .map(|t| all[t.saturating_sub(60)..t].iter().sum())
        .collect();
    for cpm in &got {
        assert!(
            window_sums.contains(cpm),
            "cpm {cpm} is no 60-second sum of the counts"
        );
    }
    assert!(*got.last().unwrap() > 0);
}

#[test]
fn gmc_unplug_is_reported_and_reconnect_resumes_with_backoff() {
    let cfg = counting(GmcModel::Gmc600Plus, 10.0, 1);
    let backoff = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(40),
    };
    let (mut sim, mut dev) = common::open_gmc(
        cfg,
        GmcConfig {
            backoff,
            ..Default::default()
        },
    );
    dev.start().unwrap();
    collect(&mut dev, 5);
    sim.unplug();
    let mut out = [0u8; 4];
    let err = loop {
        match dev.read_event(&mut out, Duration::from_millis(100)) {
            Ok(ReadOutcome::Event(_)) | Ok(ReadOutcome::Idle) => continue,
            Ok(ReadOutcome::End) => panic!("end"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    // While unplugged, attempts fail and the wait between them grows.
    assert!(!dev.reconnect().unwrap());
    assert!(!dev.reconnect().unwrap());
    assert!(!dev.reconnect().unwrap());
    assert!(dev.link().stats().failed_attempts >= 3);
    sim.replug().unwrap();
    let mut back = false;
    for _ in 0..20 {
        if dev.reconnect().unwrap() {
            back = true;
            break;
        }
    }
    assert!(back, "did not come back after replug");
    let got = collect(&mut dev, 5);
    assert_eq!(got.len(), 5);
    let stats = dev.link().stats();
    assert_eq!((stats.disconnects, stats.reconnects), (1, 1));
    assert!(stats.gap_seconds > 0.0);
    let meta = dev.run_metadata();
    assert!(meta.contains(&("disconnects".to_string(), "1".to_string())));
    // The new device saw the full connect sequence again, then the heartbeat restart.
    let sent = sim.wire().host_sent();
    assert!(
        sent.ends_with(b"<HEARTBEAT0>><GETVER>><HEARTBEAT1>>"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
}

#[test]
fn gmc_width_override_and_silent_first_getver() {
    // A GMC-500+ whose firmware answers 2-byte counts and ignores the first GETVER.
    let seed = 5;
    let cfg = GmcSimConfig {
        width: Some(CountWidth::Two),
        mute_first_getver: true,
        ..counting(GmcModel::Gmc500Plus, 30.0, seed)
    };
    let (sim, mut dev) = common::open_gmc(
        cfg,
        GmcConfig {
            baud: Some(115200),
            width: Some(CountWidth::Two),
            ..Default::default()
        },
    );
    assert_eq!(dev.width(), CountWidth::Two);
    let sent = sim.wire().host_sent();
    assert!(
        sent.starts_with(b"<HEARTBEAT0>><GETVER>><HEARTBEAT0>><GETVER>><GETSERIAL>>"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    dev.start().unwrap();
    let got = collect(&mut dev, 40);
    assert!(find_window(&gmc::counts_for_seed(seed, 30.0, 2000), &got).is_some());
}

#[test]
fn a_mute_counter_is_no_reply_naming_the_baud_rates_tried() {
    use daq_drivers::serial::{ScriptedDevice, SimulatorHandle};
    let sim =
        SimulatorHandle::start("mute", |_| Box::new(ScriptedDevice::new(Vec::new()))).unwrap();
    let err = match gmc::open(GmcConfig {
        path: sim.path().to_path_buf(),
        reply_timeout: Duration::from_millis(100),
        ..GmcConfig::default()
    }) {
        Ok(_) => panic!("a mute counter was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("no reply to <GETVER>>"), "{err}");
    assert!(err.contains("115200 and 57600 baud"), "{err}");
    assert!(!err.contains("expected 7 bytes"), "{err}");
}

/// A GMC-320 whose answer to the second `<GETCPM>>` breaks off after one byte; it keeps
/// every whole reply it sent.
struct ShortSecondReply {
    inner: gmc::simulator::GmcDevice,
    polls: u32,
    replies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl daq_drivers::serial::SimulatedDevice for ShortSecondReply {
    fn receive(&mut self, bytes: &[u8], now: Duration, out: &mut Vec<u8>) {
        let from = out.len();
        self.inner.receive(bytes, now, out);
        if bytes.windows(9).any(|w| w == b"<GETCPM>>") {
            self.polls += 1;
            if self.polls == 2 {
                out.truncate(from + 1);
            } else {
                self.replies.lock().unwrap().push(out[from..].to_vec());
            }
        }
    }
    fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
        self.inner.advance(now, out);
    }
    fn next_wakeup(&self) -> Option<Duration> {
        self.inner.next_wakeup()
    }
}

#[test]
fn after_a_short_poll_reply_the_next_polls_are_in_step() {
    use daq_drivers::serial::SimulatorHandle;
    let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = replies.clone();
    let sim = SimulatorHandle::start("short", move |_| {
        Box::new(ShortSecondReply {
            inner: gmc::simulator::GmcDevice::new(GmcSimConfig {
                cps: 20.0,
                second: Duration::from_millis(5),
                ..GmcSimConfig::default()
            }),
            polls: 0,
            replies: kept.clone(),
        })
    })
    .unwrap();
    let mut dev = gmc::open(GmcConfig {
        path: sim.path().to_path_buf(),
        mode: GmcMode::PollCpm {
            interval: Duration::from_millis(40),
        },
        reply_timeout: Duration::from_millis(100),
        ..GmcConfig::default()
    })
    .unwrap();
    dev.start().unwrap();
    let mut out = [0u8; 4];
    let mut got = Vec::new();
    let mut refused = 0;
    while got.len() < 4 {
        match dev.read_event(&mut out, Duration::from_millis(200)) {
            Ok(ReadOutcome::Event(_)) => got.push(u32::from_le_bytes(out)),
            Ok(_) => {}
            Err(DriverError::Protocol { detail, .. }) => {
                refused += 1;
                assert!(detail.contains("1 byte(s) instead of"), "{detail}");
                assert_eq!(dev.rejected_bytes().len(), 1);
            }
            Err(e) => panic!("{e}"),
        }
        assert!(refused <= 1, "more than the one short reply refused");
    }
    assert_eq!(refused, 1);
    let want: Vec<u32> = replies.lock().unwrap()[..4]
        .iter()
        .map(|r| gmc::protocol::decode_count(r, dev.width(), false).unwrap())
        .collect();
    assert_eq!(
        got, want,
        "every whole reply, none shifted by the stale byte"
    );
}

/// A GMC-320 that, once its heartbeat runs, writes one stray byte 0x55 right after its
/// second frame (line noise, as the tester's fake device did).
struct StrayAfterSecondFrame {
    inner: gmc::simulator::GmcDevice,
    beating: bool,
    /// Heartbeat bytes sent so far (the stray one not counted).
    sent: usize,
    stray_sent: bool,
}

impl daq_drivers::serial::SimulatedDevice for StrayAfterSecondFrame {
    fn receive(&mut self, bytes: &[u8], now: Duration, out: &mut Vec<u8>) {
        self.inner.receive(bytes, now, out);
        if bytes.windows(13).any(|w| w == b"<HEARTBEAT1>>") {
            self.beating = true;
        }
    }
    fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
        let from = out.len();
        self.inner.advance(now, out);
        if !self.beating {
            return;
        }
        let new = out.len() - from;
        if !self.stray_sent && self.sent + new >= 4 {
            out.insert(from + (4 - self.sent), 0x55);
            self.stray_sent = true;
        }
        self.sent += new;
    }
    fn next_wakeup(&self) -> Option<Duration> {
        self.inner.next_wakeup()
    }
}

/// One stray byte in the heartbeat stream: the frame it would shift straddles the pause
/// before the next heartbeat, so that byte is refused once (at its offset, as rejected
/// bytes) and every count before and after it is the one the device sent. The reserved
/// bits 15–14 are set on every frame, so they cannot be what re-synchronises.
#[test]
fn a_stray_heartbeat_byte_is_refused_once_and_the_counts_stay_in_step() {
    use daq_drivers::serial::SimulatorHandle;
    let (seed, cps) = (11, 5.0);
    let sim_cfg = GmcSimConfig {
        model: GmcModel::Gmc320,
        cps,
        seed,
        // Heartbeats 400 ms apart, against a 150 ms gap rule: the test takes ~3 s.
        second: Duration::from_millis(400),
        reserved_bits: 0xC000,
        ..Default::default()
    };
    let sim = SimulatorHandle::start("stray", move |_| {
        Box::new(StrayAfterSecondFrame {
            inner: gmc::simulator::GmcDevice::new(sim_cfg.clone()),
            beating: false,
            sent: 0,
            stray_sent: false,
        })
    })
    .unwrap();
    let mut dev = gmc::open(GmcConfig {
        path: sim.path().to_path_buf(),
        baud: Some(115200),
        heartbeat_gap: Duration::from_millis(150),
        ..GmcConfig::default()
    })
    .unwrap();
    let first_frame = dev.link().offset();
    dev.start().unwrap();
    let mut out = [0u8; 4];
    let (mut got, mut refused) = (Vec::new(), Vec::new());
    let mut idle = 0;
    while got.len() < 6 {
        match dev.read_event(&mut out, Duration::from_millis(500)) {
            Ok(ReadOutcome::Event(_)) => got.push(u32::from_le_bytes(out)),
            Ok(_) => {
                idle += 1;
                assert!(idle < 10, "simulator stopped sending");
            }
            Err(DriverError::Protocol { offset, detail, .. }) => {
                refused.push((offset, detail, dev.rejected_bytes().to_vec()))
            }
            Err(e) => panic!("{e}"),
        }
    }
    dev.stop().unwrap();
    let all = gmc::counts_for_seed(seed, cps, 400);
    assert!(
        find_window(&all, &got).is_some(),
        "received counts {got:?} are not a run of the generated ones {:?}",
        &all[..12]
    );
    assert_eq!(refused.len(), 1, "{refused:?}");
    let (offset, detail, bytes) = &refused[0];
    assert_eq!(*offset, first_frame + 4, "{detail}");
    assert_eq!(bytes, &[0x55]);
    assert!(
        detail.contains("heartbeat out of step: 1 byte(s)"),
        "{detail}"
    );
}
