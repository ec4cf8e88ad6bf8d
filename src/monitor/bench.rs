//! `daq-engine bench web`: does watching a run slow it down?
//!
//! One run of a pipeline (`bench.source` flat out → `bench.sink`) with the web monitor on
//! loopback. The bench takes phases of equal length in turn: nobody watches; then 50 clients
//! each fetch `/state` and `/metrics` ten times a second (1000 requests/s) and 20 clients
//! hold `/events` streams open, as the lab of many open pages and a Prometheus
//! would, first at normal priority, then at idle priority (below). Each phase's events/s is
//! read from the run's own `stats.jsonl` (events into the buffer between the phase's first
//! and last stats line), so every kind of phase is measured the same way in the same run,
//! and load that drifts over the run (a page cache filling, another program) falls on all
//! alike.
//!
//! The clients run in this process, on the same cores the pipeline uses, in two kinds of
//! watched phase: **here**, at the pipeline's own priority, so that what the clients cost is
//! counted with the server (a Prometheus and browsers on the DAQ machine itself); and
//! **elsewhere**, with the client threads at `SCHED_IDLE`, so that they run only on CPU time
//! the run leaves idle, standing in for pages and scrapers on other machines: then what slows
//! the run is the server alone. The responses per second of each kind are reported, so a
//! starved client load cannot pass for a cheap one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::procfs::{thread_usage, Usage};

/// Clients polling `/state` and `/metrics`.
pub const POLLERS: usize = 50;
/// Polls per second per client (each poll fetches both).
pub const POLL_HZ: u64 = 10;
/// Clients holding `/events` open.
pub const STREAMS: usize = 20;

/// How the bench runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `daq-engine` binary to run.
    pub exe: PathBuf,
    /// Length of one phase.
    pub phase: Duration,
    /// Phase pairs (one without clients, one with).
    pub pairs: usize,
    /// Bytes per event (`float32` samples × 4).
    pub event_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            exe: std::env::current_exe().unwrap_or_else(|_| "daq-engine".into()),
            phase: Duration::from_secs(4),
            pairs: 4,
            event_bytes: 1024,
        }
    }
}

/// Who watches during a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clients {
    /// Nobody.
    Off = 0,
    /// The clients, at normal priority: their own CPU time counts against the run.
    Here = 1,
    /// The clients at `SCHED_IDLE`: they get only what the run leaves idle, as clients on
    /// another machine would cost it nothing.
    Elsewhere = 2,
}

impl Clients {
    const ALL: [Clients; 3] = [Clients::Off, Clients::Here, Clients::Elsewhere];

    fn name(self) -> &'static str {
        match self {
            Clients::Off => "unwatched",
            Clients::Here => "watched (clients here)",
            Clients::Elsewhere => "watched (clients elsewhere)",
        }
    }
}

/// One phase's result.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Who watched.
    pub clients: Clients,
    /// Events per second into the buffer.
    pub rate: f64,
    /// Poll responses per second the clients got.
    pub responses_per_s: f64,
    /// CPU time of the server's threads, as a share of one core.
    pub server_cpu: f64,
    /// Context switches of the server's threads per second: how often it woke.
    pub server_switches_per_s: f64,
}

/// What the bench measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every phase, in order.
    pub phases: Vec<Phase>,
    /// HTTP responses the pollers got (all with status 200).
    pub responses: u64,
    /// Responses other than 200, and failed requests.
    pub errors: u64,
    /// `data:` lines the streams received.
    pub stream_updates: u64,
    /// Seconds the clients were on.
    pub watched_s: f64,
}

impl Report {
    fn mean(&self, clients: Clients, of: impl Fn(&Phase) -> f64) -> f64 {
        let r: Vec<f64> = self
            .phases
            .iter()
            .filter(|p| p.clients == clients)
            .map(of)
            .collect();
        r.iter().sum::<f64>() / r.len().max(1) as f64
    }

    /// Events/s with `clients` watching over events/s without (1.0 = no effect).
    pub fn ratio(&self, clients: Clients) -> f64 {
        self.mean(clients, |p| p.rate) / self.mean(Clients::Off, |p| p.rate)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.phases.iter().enumerate() {
            writeln!(
                f,
                "  phase {i}: {:<27} {:>12.0} events/s {:>6.0} responses/s, server {:>5.2} % CPU {:>6.0} switches/s",
                p.clients.name(),
                p.rate,
                p.responses_per_s,
                p.server_cpu * 100.0,
                p.server_switches_per_s
            )?;
        }
        writeln!(
            f,
            "  clients: {} responses ({:.0}/s while on), {} errors, {} stream updates",
            self.responses,
            self.responses as f64 / self.watched_s.max(1e-9),
            self.errors,
            self.stream_updates
        )?;
        writeln!(
            f,
            "  unwatched {:.0} events/s",
            self.mean(Clients::Off, |p| p.rate)
        )?;
        for c in [Clients::Here, Clients::Elsewhere] {
            let responses = self.mean(c, |p| p.responses_per_s);
            writeln!(
                f,
                "  {}: {:.0} events/s, {:.0} responses/s, server {:.2} % of a core and {:.2} switches per response: ratio to unwatched {:.3}{}",
                c.name(),
                self.mean(c, |p| p.rate),
                responses,
                self.mean(c, |p| p.server_cpu) * 100.0,
                self.mean(c, |p| p.server_switches_per_s) / responses.max(1e-9),
                self.ratio(c),
                if c == Clients::Elsewhere {
                    " (goal ≥ 0.95)"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

/// Runs the bench in a scratch directory under `work`.
pub fn run(opts: &Options, work: &Path) -> Result<Report, String> {
    let port = free_port()?;
    let setup = work.join("bench_web.yaml");
    let samples = (opts.event_bytes / 4).max(1);
    std::fs::write(
        &setup,
        format!(
            "target_directory: {runs}
options: {{stats_interval: 0.1}}
Buffers:
  raw: {{slot_count: 256, data_length: {samples}, data_dtype: {{ch0: float32}}}}
Workers:
  source:
    function: bench.source
    sinks: [raw]
    config: {{n_events: 1000000000000000}}
  sink:
    function: bench.sink
    sources: [raw]
",
            runs = work.join("runs").display()
        ),
    )
    .map_err(|e| format!("writing {}: {e}", setup.display()))?;
    let warmup = Duration::from_secs(2);
    let phases = Clients::ALL.len() * opts.pairs;
    let total = warmup + opts.phase * phases as u32 + Duration::from_secs(1);
    let child = Command::new(&opts.exe)
        .arg(&setup)
        .args(["--no-tui", "--quiet", "--http"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--max-seconds")
        .arg(format!("{}", total.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", opts.exe.display()))?;
    let mut child = KillOnDrop(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_server(addr, &mut child.0)?;
    let stats = find_stats(&work.join("runs"))?;

    let on = Arc::new(AtomicU8::new(Clients::Off as u8));
    let done = Arc::new(AtomicBool::new(false));
    let responses = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let updates = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for k in 0..POLLERS {
        let (on, done, responses, errors) =
            (on.clone(), done.clone(), responses.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            poller(addr, k, &on, &done, &responses, &errors)
        }));
    }
    for _ in 0..STREAMS {
        let (on, done, updates) = (on.clone(), done.clone(), updates.clone());
        threads.push(std::thread::spawn(move || {
            stream(addr, &on, &done, &updates)
        }));
    }

    std::thread::sleep(warmup);
    let mut measured = Vec::new();
    let mut watched_s = 0.0;
    for i in 0..phases {
        let clients = Clients::ALL[i % Clients::ALL.len()];
        on.store(clients as u8, Ordering::Relaxed);
        // Let the clients connect (or go) before the phase is measured.
        let settle = Duration::from_millis(300);
        std::thread::sleep(settle);
        let a = last_stats(&stats)?;
        let r0 = responses.load(Ordering::Relaxed);
        let u0 = server_usage(child.0.id());
        let t0 = Instant::now();
        std::thread::sleep(opts.phase - settle);
        let b = last_stats(&stats)?;
        let seconds = t0.elapsed().as_secs_f64();
        let u1 = server_usage(child.0.id());
        let answered = responses.load(Ordering::Relaxed) - r0;
        if clients != Clients::Off {
            watched_s += seconds;
        }
        if b.0 <= a.0 {
            return Err(format!("{} did not grow during phase {i}", stats.display()));
        }
        measured.push(Phase {
            clients,
            rate: (b.1 - a.1) as f64 / (b.0 - a.0),
            responses_per_s: answered as f64 / seconds,
            server_cpu: (u1.cpu_ns - u0.cpu_ns) as f64 / 1e9 / seconds,
            server_switches_per_s: (u1.switches() - u0.switches()) as f64 / seconds,
        });
    }
    on.store(Clients::Off as u8, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = child.0.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("the benchmarked run failed ({status}): {err}"));
    }
    Ok(Report {
        phases: measured,
        responses: responses.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        stream_updates: updates.load(Ordering::Relaxed),
        watched_s,
    })
}

/// What the web server's threads (named `monitor-http…`) of process `pid` used so far.
fn server_usage(pid: u32) -> Usage {
    thread_usage(pid, |name| name.starts_with("monitor-http"))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_for_server(addr: SocketAddr, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("the benchmarked run ended ({st}): {err}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the monitor did not listen on {addr} within 30 s"))
}

fn find_stats(runs: &Path) -> Result<PathBuf, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(rd) = std::fs::read_dir(runs) {
            for e in rd.flatten() {
                let p = e.path().join("stats.jsonl");
                if p.exists() {
                    return Ok(p);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no stats.jsonl under {}", runs.display()))
}

/// The newest stats line's time and events into `raw`.
fn last_stats(path: &Path) -> Result<(f64, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.ends_with('}'))
        .ok_or_else(|| format!("{} has no complete line", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = v["t"].as_f64().ok_or("a stats line without 't'")?;
    let n = v["buffers"]["raw"]["events_in"]
        .as_u64()
        .ok_or("a stats line without buffers.raw.events_in")?;
    Ok((t, n))
}

/// Fetches `/state` and `/metrics` `POLL_HZ` times a second while `on`, over one kept-alive
/// connection (opened again when the server closes it).
fn poller(
    addr: SocketAddr,
    k: usize,
    on: &AtomicU8,
    done: &AtomicBool,
    responses: &AtomicU64,
    errors: &AtomicU64,
) {
    let period = Duration::from_millis(1000 / POLL_HZ);
    // Spread the clients over the period, as independent pages would be.
    std::thread::sleep(period * k as u32 / POLLERS as u32);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut next = Instant::now();
    let mut policy = Policy::default();
    while !done.load(Ordering::Relaxed) {
        next += period;
        let mode = on.load(Ordering::Relaxed);
        policy.follow(mode);
        if mode != Clients::Off as u8 {
            for path in ["/state", "/metrics"] {
                if conn.is_none() {
                    conn = connect(addr).ok();
                }
                let ok = match conn.as_mut() {
                    Some((w, r)) => get(w, r, addr, path).is_ok_and(|s| s == 200),
                    None => false,
                };
                if ok {
                    responses.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
        } else {
            conn = None;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// The calling client thread's scheduling policy, following the phase: `SCHED_IDLE` while
/// the clients stand for machines elsewhere, `SCHED_OTHER` otherwise.
#[derive(Default)]
struct Policy {
    idle: bool,
}

impl Policy {
    fn follow(&mut self, mode: u8) {
        let idle = mode == Clients::Elsewhere as u8;
        if idle == self.idle {
            return;
        }
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler with pid 0 changes only the calling thread's policy; the
        // parameter is a valid sched_param on the stack.
        if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
            self.idle = idle;
        }
    }
}

/// A kept-alive client connection to `addr`: the writing half and a reader of the replies.
pub fn connect(addr: SocketAddr) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    let r = BufReader::new(s.try_clone()?);
    Ok((s, r))
}

/// One GET on a kept-alive connection; reads the whole response, returns its status.
pub fn get(
    w: &mut TcpStream,
    r: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<u16> {
    // One write, as a browser sends its request: `write!` on a socket would make a syscall,
    // and with TCP_NODELAY a segment that wakes the server, for each piece of the format.
    w.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let (status, length, chunked) = head(r)?;
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut body = vec![0; n + 2];
            r.read_exact(&mut body)?;
            if n == 0 {
                break;
            }
        }
    } else {
        std::io::copy(&mut r.by_ref().take(length as u64), &mut std::io::sink())?;
    }
    Ok(status)
}

/// Reads a response's status line and headers: status, content length, chunked.
fn head(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, usize, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked) = (0, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((status, length, chunked));
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
}

/// Holds an `/events` stream open while `on`, counting its `data:` lines.
fn stream(addr: SocketAddr, on: &AtomicU8, done: &AtomicBool, updates: &AtomicU64) {
    let mut policy = Policy::default();
    while !done.load(Ordering::Relaxed) {
        let mode = on.load(Ordering::Relaxed);
        policy.follow(mode);
        if mode == Clients::Off as u8 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let Ok((mut w, mut r)) = connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = w.set_read_timeout(Some(Duration::from_millis(100)));
        let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        if w.write_all(request.as_bytes()).is_err() {
            continue;
        }
        let mut line = String::new();
        while on.load(Ordering::Relaxed) == mode && !done.load(Ordering::Relaxed) {
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.starts_with("data:") {
                        updates.fetch_add(1, Ordering::Relaxed);
                    }
                    line.clear();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}
