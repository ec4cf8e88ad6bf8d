//! What the web monitor's tests share: a temporary directory, a run supervised in the
//! test's process with a web monitor, and a small HTTP/1.1 client.

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

/// A directory under the system's temporary one, removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("daq-monitor-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
        let registry = Registry::builtin();
        let (setup, _) = Setup::load(&setup_path, &registry, online_cpus()).unwrap();
        let (run_dir, run_id) = make_run_dir(&runs).unwrap();
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
