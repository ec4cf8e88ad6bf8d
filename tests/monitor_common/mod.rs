//! What the monitor tests share: a run supervised in the test's process (with a web
//! monitor), the demo pipeline's setup, and a small HTTP/1.1 client.

#![allow(dead_code)]

use daq_engine::engine::{make_run_dir, plan_of};
use daq_engine::engine::{Progress, RunOptions, RunSummary, Supervisor};
use daq_engine::monitor::Web;
use daq_engine::setup::{online_cpus, Setup};
use daq_engine::worker::Registry;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

pub const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

/// The run of the setup file `setup_path` prepared in a new run directory under `runs`
/// (logging to its log), with workers from the real binary: the supervisor and the run
/// directory.
pub fn prepare(setup_path: &Path, runs: &Path) -> (Supervisor, PathBuf) {
    let registry = Registry::builtin();
    let (setup, _) = Setup::load(setup_path, &registry, online_cpus()).unwrap();
    let (run_dir, run_id) = make_run_dir(runs).unwrap();
    // Two runs of this process in one second would share ring names: tell them apart.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let run_id = format!("{run_id}-t{n}");
    daq_engine::engine::init_log(&daq_engine::run_dir::log_path(&run_dir));
    let sup = Supervisor::prepare(
        plan_of(&setup, &run_dir, &run_id),
        RunOptions {
            worker_exe: EXE.into(),
            worker_args: vec![],
            progress: Progress::Quiet,
        },
    )
    .unwrap();
    (sup, run_dir)
}

/// The demo pipeline, smaller: simulate.pulses → threshold → pulses → histogram, with an
/// oscilloscope observing the raw waveforms, into `runs`. What the tests choose: the
/// `options` mapping, the raw buffer's lines after its `slot_count`, the digitizer's
/// `rate` and `seed`, the monitors' update interval, the histogram's bins beyond `height`
/// and the scope's config beyond its update interval.
pub fn demo_setup(
    options: &str,
    raw: &str,
    (rate, seed): (u32, u32),
    interval: f64,
    more_bins: &str,
    scope: &str,
) -> String {
    format!(
        "target_directory: runs
options: {options}
Buffers:
  raw: &waveforms
    slot_count: 32
{raw}  triggered: *waveforms
  pulses:
    slot_count: 512
    data_length: 1
    data_dtype: {{channel: int16, time: float64, height: float32, area: float32, width: float32}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: {rate}, realtime: true, sample_interval: 4.0e-9, pretrigger_samples: 100,
             amplitude: landau, amplitude_mean: 0.3, amplitude_sigma: 0.05, noise: 0.003,
             decay_fraction: 0.1, seed: {seed}}}
  trigger:
    function: filter.threshold
    sources: [raw]
    sinks: [triggered]
    config: {{level: 0.1, edge: rising, channels: [chA]}}
  pulse_finder:
    function: process.pulses
    sources: [triggered]
    sinks: [pulses]
    config: {{threshold: 0.05, sample_interval: 4.0e-9}}
  spectra:
    function: export.histogram
    sources: [pulses]
    config:
      update_interval: {interval}
      bins:
        height: [0.0, 1.5, 150]
{more_bins}  scope:
    function: observe.oscilloscope
    observes: [raw]
    config: {{update_interval: {interval}{scope}}}
"
    )
}

/// Starts the run of `setup` in its own thread with the web monitor `bind` makes for its run
/// directory; returns the server address, the run directory and the thread that yields the
/// summary and the monitor (still serving).
pub fn start_run_with(
    dir: &Path,
    setup: &str,
    bind: impl FnOnce(&Path) -> Web + Send + 'static,
) -> (
    SocketAddr,
    PathBuf,
    std::thread::JoinHandle<(RunSummary, Web)>,
) {
    let setup_path = dir.join("setup.yaml");
    std::fs::write(&setup_path, setup).unwrap();
    let (tx, rx) = mpsc::channel();
    let runs = dir.join("runs");
    let h = std::thread::spawn(move || {
        let (sup, run_dir) = prepare(&setup_path, &runs);
        let mut web = bind(&run_dir);
        tx.send((web.local_addr(), run_dir)).unwrap();
        let summary = sup.run_watched(Some(&mut web)).unwrap();
        (summary, web)
    });
    let (addr, run_dir) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (addr, run_dir, h)
}

/// One HTTP/1.1 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    exchange(addr, &req).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Sends `head` (request line and headers, without the blank line; `Connection: close` and
/// `Content-Length: 0` are added) and reads the answer within 5 s: (status, body).
pub fn exchange(addr: SocketAddr, head: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{head}Connection: close\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
    // Headers, then Content-Length bytes (or to the end): some servers keep the connection.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    let mut length: Option<usize> = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
        head.push_str(&line);
    }
    let mut out = Vec::new();
    match length {
        Some(n) => {
            out.resize(n, 0);
            r.read_exact(&mut out)?;
        }
        None => {
            r.read_to_end(&mut out)?;
        }
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {head:?}")))?;
    let body = String::from_utf8_lossy(&out).into_owned();
    Ok((status, body))
}

/// Waits (at most 8 s) until `f` holds.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_up_to(Duration::from_secs(8), what, f)
}

/// Waits (at most `limit`) until `f` holds.
pub fn wait_up_to(limit: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(holds_within(limit, f), "timed out waiting for {what}");
}

/// Whether `f` comes to hold within `limit` (asked every 50 ms).
pub fn holds_within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while !f() {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A free port on 127.0.0.1: bound, noted, let go.
pub fn free_loopback_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits (at most `limit`, asking every `poll`) for `child` to exit; kills it and fails with
/// `late` when it does not.
pub fn exit_status_within(
    child: &mut std::process::Child,
    limit: Duration,
    poll: Duration,
    late: &str,
) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{late}");
        }
        std::thread::sleep(poll);
    }
}
