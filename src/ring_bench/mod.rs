//! The ring benchmark behind `daq-engine bench ring`: how fast and how promptly daq-engine's
//! shared-memory rings move events between processes, beside two baselines measured in the
//! same run on the same machine.
//!
//! What it measures, for each event size and each number of consumer groups:
//! - **ours**: a producer process pinned to one CPU copies each event from a source buffer
//!   into a claimed slot, writes the event number into 64-bit word 1 and its
//!   `CLOCK_MONOTONIC` publish time into word 0 (at full speed only every 64th event's and
//!   the last's, [`FULL_SPEED_STAMP_EVERY`]), and publishes it (at full speed in batches
//!   of up to 32 events and 8 KiB, one store of the shared cursor per batch); one reader process per
//!   consumer group, all pinned to a second CPU (with two groups both readers share that
//!   CPU), reads every 64-bit word of every event (a checksum, so the bandwidth is real),
//!   checks the event number, and records publish→read latency of every stamped event in
//!   an HDR histogram.
//!   Throughput is taken at full speed (`block` policy, the producer waits for room);
//!   latency both at full speed (where it is mostly time spent queued in a full ring) and
//!   at a paced rate (default 10 kHz, what a detector at a realistic trigger rate sees).
//! - **memcpy**: one process on the producer's CPU copies the same bytes, event by event,
//!   from a source of the same size into a destination the size of the ring's data area.
//! - **iceoryx2**: the `ring-peer` program (the bench-only crate `benches/peer/`, built
//!   apart so that daq-engine never compiles iceoryx2) moves the same events the same way
//!   through iceoryx2 publish-subscribe, one subscriber process per group.
//!
//! The source events are copied from is 512 MiB (larger than any last-level cache, so the
//! copy reads memory) for events of 64 KiB and more, and 1 MiB (cache resident) for smaller
//! ones. Each case runs [`RingBenchOptions::repeats`] times; the report gives the run with
//! the median figure.
//!
//! It never reports a figure it did not measure: a run whose reader saw a wrong event
//! number or a missing event is an error, and a baseline that could not run is shown as
//! absent with the reason. Child processes are made with `fork`, so [`run`] must be called
//! from a process whose other threads (if any) hold no lock the children need; the CLI's
//! main thread and the test harness qualify. Every child is killed and reaped if the run
//! fails half-way, and every ring file is removed.

mod child;
pub mod isolate;

use crate::dtype::{Dtype, Scalar};
use crate::ring::{Next, Policy, Ring, RingSpec};
use crate::runtime::realtime::NoIdle;
use crate::shm::{places, Backing, HugePages};
use child::{now_ns, Child};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pause before each run under [`RingBenchOptions::realtime`], so that it starts in a
/// real-time accounting period of its own and is not stalled for its predecessor's use.
pub const RT_GAP: Duration = Duration::from_millis(1_050);

/// Environment variable naming the `ring-peer` program, when it is not at its default place.
pub const PEER_ENV: &str = "DAQ_RING_PEER";

/// How to build the iceoryx2 baseline program, shown when it is missing.
pub const PEER_BUILD_HINT: &str = "build it with `cargo build --release --manifest-path benches/peer/Cargo.toml --target-dir target/peer` (or name it in DAQ_RING_PEER)";

/// What to run.
#[derive(Clone, Debug)]
pub struct RingBenchOptions {
    /// Event sizes in bytes: multiples of 8, at least 16.
    pub sizes: Vec<usize>,
    /// Numbers of consumer groups (one reader process each), 1 ..= 16.
    pub groups: Vec<usize>,
    /// Runs of each case; the median is reported.
    pub repeats: usize,
    /// Bytes each full-speed run moves (events = this / size, within
    /// `min_events ..= max_events`).
    pub full_bytes: u64,
    /// Fewest events of a full-speed run.
    pub min_events: u64,
    /// Most events of a full-speed run.
    pub max_events: u64,
    /// Event rate of the paced latency runs, Hz; 0 skips them.
    pub paced_rate_hz: f64,
    /// Events of each paced run.
    pub paced_events: u64,
    /// Also run the paced case with readers that poll instead of sleeping (as iceoryx2's
    /// subscribers do here), to separate the ring's own latency from the futex wake-up.
    pub paced_poll: bool,
    /// Target size of the ring's data area; slots = this / event size, rounded down to a
    /// power of two within 16 ..= 1024. iceoryx2's subscriber queue gets the same depth.
    pub ring_bytes: usize,
    /// CPU of the producer (and of the memcpy baseline).
    pub producer_cpu: usize,
    /// CPU every reader shares.
    pub consumer_cpu: usize,
    /// Run every benchmark process (ours, memcpy, iceoryx2) under SCHED_FIFO, so that other
    /// work on the machine cannot preempt it (needs root or CAP_SYS_NICE). The kernel still
    /// keeps `sched_rt_runtime_us` (usually 5%) of every second for other work and stalls
    /// real-time processes that used up the rest; so each run starts in a fresh second
    /// ([`RT_GAP`] after the previous one) and runs are kept well under 0.95 s by default.
    pub realtime: bool,
    /// Which pages the ring may use.
    pub huge: HugePages,
    /// The `ring-peer` program; `None`: [`PEER_ENV`], else `target/peer/release/ring-peer`
    /// in the source tree this library was built from.
    pub peer: Option<PathBuf>,
    /// Skip the iceoryx2 baseline.
    pub no_peer: bool,
}

impl Default for RingBenchOptions {
    fn default() -> Self {
        RingBenchOptions {
            sizes: vec![64, 4096, 65536],
            groups: vec![1, 2],
            repeats: 3,
            full_bytes: 2 << 30,
            min_events: 20_000,
            max_events: 600_000,
            paced_rate_hz: 10_000.0,
            paced_events: 4_000,
            paced_poll: true,
            ring_bytes: 4 << 20,
            producer_cpu: 0,
            consumer_cpu: 1,
            realtime: false,
            huge: HugePages::Auto,
            peer: None,
            no_peer: false,
        }
    }
}

impl RingBenchOptions {
    /// Events of a full-speed run with events of `bytes`.
    pub fn full_events(&self, bytes: usize) -> u64 {
        (self.full_bytes / bytes.max(1) as u64)
            .clamp(self.min_events, self.max_events.max(self.min_events))
    }

    /// Slots of the ring (and depth of iceoryx2's queue) for events of `bytes`.
    pub fn slots(&self, bytes: usize) -> usize {
        let n = (self.ring_bytes / bytes.max(1)).clamp(16, 1024);
        1 << n.ilog2()
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum RingBenchError {
    /// The options are not usable.
    #[error("ring benchmark options: {0}")]
    Options(String),
    /// The ring could not be created.
    #[error("creating the benchmark ring: {0}")]
    Ring(#[from] crate::ring::CreateError),
    /// A child process could not be started or talked to.
    #[error("{what}: {source}")]
    Process {
        /// What was being done.
        what: &'static str,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A child process reported a failure or an impossible result.
    #[error("{role} process: {message}")]
    Child {
        /// producer, reader, memcpy.
        role: &'static str,
        /// What it said.
        message: String,
    },
}

/// Latency percentiles, nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest seen.
    pub max_ns: u64,
}

/// One measured run through a ring or through iceoryx2.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Transfer {
    /// Events every group received.
    pub events: u64,
    /// From the first publish to the last read of the slowest reader.
    pub elapsed_ns: u64,
    /// Latency of the worst reader (highest p99).
    pub latency: Latency,
}

impl Transfer {
    /// Events per second delivered to each group.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 * 1e9 / self.elapsed_ns.max(1) as f64
    }
}

/// Figures of one event size and number of groups.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RingRow {
    /// Event size, bytes.
    pub bytes: usize,
    /// Consumer groups.
    pub groups: usize,
    /// Ring slots (and iceoryx2 queue depth).
    pub slots: usize,
    /// Ours at full speed (median run by events/s).
    pub ours: Transfer,
    /// Ours at the paced rate, readers sleeping on the futex when idle (the engine's way;
    /// median run by p99), if run.
    pub ours_paced: Option<Transfer>,
    /// Ours at the paced rate, readers polling (spin, then `sched_yield`), if run.
    pub ours_paced_poll: Option<Transfer>,
    /// memcpy of the same bytes: events per second (median run).
    pub memcpy_events_per_s: f64,
    /// iceoryx2 at full speed, if it ran.
    pub peer: Option<Transfer>,
    /// iceoryx2 at the paced rate, if it ran.
    pub peer_paced: Option<Transfer>,
}

impl RingRow {
    /// Ours, GB/s (10⁹ bytes) of event data delivered to each group.
    pub fn gb_per_s(&self) -> f64 {
        self.ours.events_per_s() * self.bytes as f64 / 1e9
    }
    /// memcpy, GB/s.
    pub fn memcpy_gb_per_s(&self) -> f64 {
        self.memcpy_events_per_s * self.bytes as f64 / 1e9
    }
}

/// Whether the iceoryx2 baseline ran.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PeerStatus {
    /// It ran; the program used.
    Ran(PathBuf),
    /// Not asked for.
    Skipped,
    /// The program is not there (with how to build it).
    Missing(String),
    /// It failed (its message); the rows have no iceoryx2 figures after the failure.
    Failed(String),
}

/// The machine and its load while the benchmark ran.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MachineInfo {
    /// CPUs available.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// /proc/loadavg when the run started.
    pub load_before: String,
    /// /proc/loadavg when it ended.
    pub load_after: String,
}

/// Everything one benchmark run measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RingReport {
    /// The machine.
    pub machine: MachineInfo,
    /// What pages the rings got.
    pub backing: String,
    /// Whether the ring mappings were locked in memory.
    pub locked: bool,
    /// CPU of the producer.
    pub producer_cpu: usize,
    /// CPU of the readers.
    pub consumer_cpu: usize,
    /// Runs per case.
    pub repeats: usize,
    /// Whether the benchmark processes ran under SCHED_FIFO.
    pub realtime: bool,
    /// Whether idle CPUs polled instead of sleeping ([`NoIdle`], which the engine holds for
    /// a run with a real-time worker on a core of its own), or why not.
    pub idle: String,
    /// Paced rate, Hz (0: not run).
    pub paced_rate_hz: f64,
    /// The iceoryx2 baseline.
    pub peer: PeerStatus,
    /// One row per event size and number of groups.
    pub rows: Vec<RingRow>,
}

fn validate(opts: &RingBenchOptions) -> Result<(), RingBenchError> {
    let bad = |m: String| Err(RingBenchError::Options(m));
    if opts.sizes.is_empty() || opts.groups.is_empty() {
        return bad("give at least one event size and one number of groups".into());
    }
    if let Some(s) = opts.sizes.iter().find(|&&s| s < 16 || !s.is_multiple_of(8)) {
        return bad(format!(
            "event size {s} B: sizes must be multiples of 8 bytes, at least 16"
        ));
    }
    if let Some(g) = opts
        .groups
        .iter()
        .find(|&&g| g == 0 || g > crate::ring::MAX_GROUPS)
    {
        return bad(format!(
            "{g} consumer groups: 1 to {} allowed",
            crate::ring::MAX_GROUPS
        ));
    }
    if opts.repeats == 0 || opts.min_events == 0 {
        return bad("repeats and min_events must be at least 1".into());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for cpu in [opts.producer_cpu, opts.consumer_cpu] {
        if cpu >= cpus {
            return bad(format!(
                "CPU {cpu} does not exist here ({cpus} CPUs); choose producer and consumer CPUs below {cpus}"
            ));
        }
    }
    Ok(())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("({path}: {e})"))
}

fn machine_info() -> MachineInfo {
    let cpu_model = crate::procfs::cpu_model().unwrap_or_else(|| "unknown".into());
    MachineInfo {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        load_before: read_trimmed("/proc/loadavg"),
        load_after: String::new(),
    }
}

/// Finds the `ring-peer` program: the option, then [`PEER_ENV`], then the default build place.
pub fn peer_program(opts: &RingBenchOptions) -> Result<PathBuf, String> {
    let path = opts
        .peer
        .clone()
        .or_else(|| std::env::var_os(PEER_ENV).map(PathBuf::from))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peer/release/ring-peer")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "iceoryx2 baseline: {} not found; {PEER_BUILD_HINT}",
            path.display()
        ))
    }
}

/// Runs the whole benchmark. Takes minutes with the default options.
pub fn run(opts: &RingBenchOptions) -> Result<RingReport, RingBenchError> {
    validate(opts)?;
    let mut machine = machine_info();
    // Real-time, the readers are what the engine's real-time worker on a core of its own
    // is, and the engine keeps idle CPUs from sleeping for such a run: so does the bench.
    let no_idle = opts.realtime.then(NoIdle::hold);
    let idle = match &no_idle {
        Some(Ok(_)) => "idle CPUs poll (/dev/cpu_dma_latency held at 0 µs, as the engine does \
                        for a real-time worker on a core of its own)"
            .to_string(),
        Some(Err(e)) => format!("idle CPUs may sleep: {e}"),
        None => "idle CPUs may sleep (not real-time)".to_string(),
    };
    let mut peer_status = if opts.no_peer {
        PeerStatus::Skipped
    } else {
        match peer_program(opts) {
            Ok(p) => PeerStatus::Ran(p),
            Err(m) => PeerStatus::Missing(m),
        }
    };
    let places = places(opts.huge, None);
    let mut backing = None;
    let mut rows = Vec::new();
    for &bytes in &opts.sizes {
        let events = opts.full_events(bytes);
        let slots = opts.slots(bytes);
        let mut copies = Vec::new();
        for _ in 0..opts.repeats {
            copies.push(memcpy_once(opts, bytes, slots, events)?);
        }
        let memcpy_events_per_s = median_by(copies, |x| *x);
        for &groups in &opts.groups {
            let case = Case {
                bytes,
                groups,
                slots,
            };
            let mut ours = Vec::new();
            let mut peer = Vec::new();
            for _ in 0..opts.repeats {
                let (t, b) = ours_once(opts, &places, &case, events, 0.0, false)?;
                backing.get_or_insert(b);
                ours.push(t);
                if let Some(t) = peer_once(&mut peer_status, opts, &case, events, 0.0) {
                    peer.push(t);
                }
            }
            let (mut ours_paced, mut ours_paced_poll, mut peer_paced) =
                (Vec::new(), Vec::new(), Vec::new());
            if opts.paced_rate_hz > 0.0 && opts.paced_events > 0 {
                for _ in 0..opts.repeats {
                    let (rate, n) = (opts.paced_rate_hz, opts.paced_events);
                    ours_paced.push(ours_once(opts, &places, &case, n, rate, false)?.0);
                    if opts.paced_poll {
                        ours_paced_poll.push(ours_once(opts, &places, &case, n, rate, true)?.0);
                    }
                    if let Some(t) =
                        peer_once(&mut peer_status, opts, &case, opts.paced_events, rate)
                    {
                        peer_paced.push(t);
                    }
                }
            }
            let by_rate = |t: &Transfer| t.events_per_s();
            let by_p99 = |t: &Transfer| t.latency.p99_ns as f64;
            let complete = |v: Vec<Transfer>, key: &dyn Fn(&Transfer) -> f64| {
                (v.len() == opts.repeats).then(|| median_by(v, key))
            };
            rows.push(RingRow {
                bytes,
                groups,
                slots,
                ours: median_by(ours, by_rate),
                ours_paced: (!ours_paced.is_empty()).then(|| median_by(ours_paced, by_p99)),
                ours_paced_poll: (!ours_paced_poll.is_empty())
                    .then(|| median_by(ours_paced_poll, by_p99)),
                memcpy_events_per_s,
                peer: complete(peer, &by_rate),
                peer_paced: complete(peer_paced, &by_p99),
            });
        }
    }
    machine.load_after = read_trimmed("/proc/loadavg");
    let (backing, locked) = backing.unwrap_or((Backing::Normal, false));
    Ok(RingReport {
        machine,
        backing: backing.to_string(),
        locked,
        producer_cpu: opts.producer_cpu,
        consumer_cpu: opts.consumer_cpu,
        repeats: opts.repeats,
        realtime: opts.realtime,
        idle,
        paced_rate_hz: opts.paced_rate_hz,
        peer: peer_status,
        rows,
    })
}

/// The latency case with the machine busy (`daq-engine bench ring-loaded`): what a reader
/// placed as the engine places a hot one sees when everything else is busy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LoadedReport {
    /// The machine.
    pub machine: MachineInfo,
    /// Event size, bytes.
    pub bytes: usize,
    /// Events measured.
    pub events: u64,
    /// Publish rate, Hz.
    pub rate_hz: f64,
    /// Publish → read latency of every event.
    pub latency: Latency,
    /// The reader ran SCHED_FIFO with its memory locked.
    pub realtime: bool,
    /// `/proc/sys/kernel/sched_rt_runtime_us` as found (and restored).
    pub rt_runtime_us: String,
    /// Real-time throttling was lifted (-1) for the run.
    pub unthrottled: bool,
    /// Kernel release.
    pub kernel: String,
    /// CPU of the busy loop and the producer; CPU of the reader.
    pub cpus: (usize, usize),
    /// How the reader's CPU was kept free of other tasks ([`isolate::Shield`]), or why not.
    pub shield: String,
    /// Whether idle CPUs polled instead of halting ([`NoIdle`]), or why not.
    pub no_idle: String,
}

const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

/// Lifts real-time throttling for as long as it lives (as root), putting the value found
/// back when dropped, also when the run fails half-way.
struct Unthrottled {
    before: String,
}

impl Unthrottled {
    fn lift() -> Option<Unthrottled> {
        let before = read_trimmed(RT_RUNTIME);
        if before.is_empty() || before == "-1" {
            return None;
        }
        std::fs::write(RT_RUNTIME, "-1")
            .ok()
            .map(|()| Unthrottled { before })
    }
}

impl Drop for Unthrottled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(RT_RUNTIME, &self.before) {
            eprintln!(
                "daq-engine: bench: could not restore {RT_RUNTIME} to {}: {e}; restore it by hand",
                self.before
            );
        }
    }
}

/// Publish → read latency of `events` events of `bytes` at `rate` Hz through one ring with
/// one reader, while a busy loop the bench starts keeps the producer's CPU busy. The reader
/// is pinned to [`RingBenchOptions::consumer_cpu`] alone and waits as the engine's reader on a
/// core of its own does; with [`RingBenchOptions::realtime`] it runs SCHED_FIFO with its
/// memory locked, and real-time throttling (which would stop a spinning real-time reader for
/// 50 ms of every second) is lifted for the run and restored after. The producer shares
/// CPU 0 with the busy loop; with `realtime` it too runs SCHED_FIFO (as a hot importer
/// does), so the busy loop cannot preempt it between the time stamp it takes just before
/// it publishes and the publish, and it sleeps until each due time rather than spinning (so
/// the busy loop, and the machine, keep most of CPU 0). With `realtime` every other task is
/// also kept off the reader's CPU and idle CPUs poll, as on an isolated core ([`isolate`]);
/// both are put back after the run.
pub fn loaded(
    opts: &RingBenchOptions,
    bytes: usize,
    events: u64,
    rate: f64,
) -> Result<LoadedReport, RingBenchError> {
    let opts = RingBenchOptions {
        sizes: vec![bytes],
        groups: vec![1],
        ..opts.clone()
    };
    validate(&opts)?;
    let mut machine = machine_info();
    let rt_runtime_us = read_trimmed(RT_RUNTIME);
    // As root: the reader's CPU to itself and no CPU halting, for the run (see `isolate`).
    let (shield, no_idle) = if opts.realtime {
        (
            Some(isolate::Shield::raise(opts.consumer_cpu)),
            Some(NoIdle::hold()),
        )
    } else {
        (None, None)
    };
    let shield_note = match &shield {
        Some(Ok(s)) => format!(
            "every other task moved off CPU {} ({} threads; per-CPU kernel threads stay)",
            opts.consumer_cpu,
            s.moved()
        ),
        Some(Err(e)) => format!("not shielded: {e}"),
        None => "not shielded (not real-time)".into(),
    };
    let no_idle_note = match &no_idle {
        Some(Ok(_)) => "idle CPUs poll (/dev/cpu_dma_latency held at 0 µs)".into(),
        Some(Err(e)) => format!("idle CPUs may halt: {e}"),
        None => "idle CPUs may halt (not real-time)".into(),
    };
    let hog = Child::spawn("busy loop", opts.producer_cpu, false, |_| loop {
        std::hint::spin_loop();
    })?;
    let lifted = if opts.realtime {
        Unthrottled::lift()
    } else {
        None
    };
    let unthrottled = lifted.is_some();
    let case = Case {
        bytes,
        groups: 1,
        slots: opts.slots(bytes),
    };
    let places = places(opts.huge, None);
    // The producer runs SCHED_FIFO too (as the engine runs a hot importer), so the busy loop
    // cannot preempt it between its time stamp and its publish; it sleeps until each due
    // time instead of spinning up to it, which leaves the busy loop most of CPU 0.
    let producer = ProducerMode {
        realtime: opts.realtime,
        spin_ns: 0,
    };
    let run = ours_run(&opts, &places, &case, (events, rate), false, producer);
    drop(lifted);
    drop(hog);
    drop(no_idle);
    drop(shield);
    let (t, _) = run?;
    machine.load_after = read_trimmed("/proc/loadavg");
    Ok(LoadedReport {
        machine,
        bytes,
        events: t.events,
        rate_hz: rate,
        latency: t.latency,
        realtime: opts.realtime,
        rt_runtime_us,
        unthrottled,
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        cpus: (opts.producer_cpu, opts.consumer_cpu),
        shield: shield_note,
        no_idle: no_idle_note,
    })
}

impl fmt::Display for LoadedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "Ring latency with the other CPU busy: {} CPUs, {}, kernel {}",
            m.cpus, m.cpu_model, self.kernel
        )?;
        writeln!(
            f,
            "load average before: {}   after: {}",
            m.load_before, m.load_after
        )?;
        writeln!(
            f,
            "busy loop (normal priority) and producer{} on CPU {}; reader alone on CPU {}{}",
            if self.realtime {
                " (SCHED_FIFO, sleeping between events)"
            } else {
                " (normal priority)"
            },
            self.cpus.0,
            self.cpus.1,
            if self.realtime {
                ", SCHED_FIFO, memory locked"
            } else {
                ", normal priority (not root: no SCHED_FIFO)"
            }
        )?;
        writeln!(
            f,
            "real-time throttling: sched_rt_runtime_us {}{}",
            self.rt_runtime_us,
            if self.unthrottled {
                ", lifted (-1) for the run and restored"
            } else {
                ", left as it is"
            }
        )?;
        writeln!(f, "reader's CPU: {}; {}", self.shield, self.no_idle)?;
        let l = &self.latency;
        writeln!(
            f,
            "{} events of {} at {} Hz, publish -> read µs: p50 {}  p99 {}  p99.9 {}  max {}",
            self.events,
            size_name(self.bytes),
            self.rate_hz,
            us(l.p50_ns),
            us(l.p99_ns),
            us(l.p999_ns),
            us(l.max_ns)
        )
    }
}

/// The element with the median key (the lower one of an even count). `v` is not empty.
fn median_by<T: Clone + Default>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.get(v.len().saturating_sub(1) / 2)
        .cloned()
        .unwrap_or_default()
}

struct Case {
    bytes: usize,
    groups: usize,
    slots: usize,
}

/// Bytes of the source events are copied from (see the module comment).
pub fn source_bytes(event_bytes: usize) -> usize {
    if event_bytes >= 64 * 1024 {
        512 << 20
    } else {
        1 << 20
    }
}

/// A source of whole events, every page written.
fn make_source(event_bytes: usize) -> (Vec<u8>, usize) {
    let n = (source_bytes(event_bytes) / event_bytes).max(1);
    let mut v = vec![0u8; n * event_bytes];
    for (i, w) in v.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    }
    (v, n)
}

/// How long a paced producer spins before each due time (after sleeping until then), so that
/// it publishes on time although a wake-up from sleep takes tens of µs in a VM.
const SPIN_BEFORE_DUE_NS: u64 = 30_000;

/// Spins of a polling reader before it yields its CPU (as the iceoryx2 subscribers do).
const POLL_SPINS: u32 = 2_000;

static RING_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One run through a daq-engine ring; `rate` 0 is full speed; `poll`: readers poll.
/// Sleeps [`RT_GAP`] when real-time runs are throttled by the kernel (the usual case).
fn rt_gap(opts: &RingBenchOptions) {
    if opts.realtime && read_trimmed("/proc/sys/kernel/sched_rt_runtime_us") != "-1" {
        std::thread::sleep(RT_GAP);
    }
}

fn ours_once(
    opts: &RingBenchOptions,
    places: &[crate::shm::ShmPlace],
    case: &Case,
    events: u64,
    rate: f64,
    poll: bool,
) -> Result<(Transfer, (Backing, bool)), RingBenchError> {
    let producer = ProducerMode {
        realtime: opts.realtime,
        spin_ns: SPIN_BEFORE_DUE_NS,
    };
    ours_run(opts, places, case, (events, rate), poll, producer)
}

/// How a run's producer is scheduled.
#[derive(Clone, Copy)]
struct ProducerMode {
    /// SCHED_FIFO (the readers run SCHED_FIFO whenever [`RingBenchOptions::realtime`] is set,
    /// and then also lock their memory).
    realtime: bool,
    /// Paced: spin this long before each due time ([`crate::clock::wait_until`]).
    spin_ns: u64,
}

/// As [`ours_once`], with the producer scheduled as `producer` says.
fn ours_run(
    opts: &RingBenchOptions,
    places: &[crate::shm::ShmPlace],
    case: &Case,
    (events, rate): (u64, f64),
    poll: bool,
    producer_mode: ProducerMode,
) -> Result<(Transfer, (Backing, bool)), RingBenchError> {
    rt_gap(opts);
    let serial = RING_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let words = case.bytes / 8;
    let spec = RingSpec {
        name: format!("daq-ring-bench-{}-{serial}", std::process::id()),
        dtype: Dtype::new([("word", Scalar::U64)])
            .map_err(|e| RingBenchError::Options(e.to_string()))?,
        data_length: words,
        slot_count: case.slots,
        policy: Policy::Block,
        groups: vec![1; case.groups],
    };
    let ring = Ring::create(places, &spec)?;
    let path = ring.path().to_path_buf();
    let mut readers = Vec::new();
    for g in 0..case.groups {
        let path = path.clone();
        // One group: its reader has the consumer CPU to itself, as a reader the engine
        // places on a core of its own; with more, they share it.
        let own_core = case.groups == 1;
        let lock = opts.realtime;
        let mut c = Child::spawn("reader", opts.consumer_cpu, opts.realtime, move |out| {
            if lock {
                // SAFETY: mlockall only changes this process's paging; no memory is touched.
                if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
                    return Err(format!("mlockall: {}", std::io::Error::last_os_error()));
                }
            }
            read_events(&path, words, g, poll, own_core, out)
        })?;
        let hello = c.line()?;
        if hello != "READY" {
            return Err(c.failure(hello));
        }
        readers.push(c);
    }
    let bytes = case.bytes;
    let spin_ns = producer_mode.spin_ns;
    let rt = producer_mode.realtime;
    let mut producer = Child::spawn("producer", opts.producer_cpu, rt, move |out| {
        write_events(&path, bytes, (events, rate), spin_ns, out)
    })?;
    let done = producer.line()?;
    if !done.starts_with("done") {
        return Err(producer.failure(done));
    }
    producer.wait()?;
    let mut first = u64::MAX;
    let mut last = 0;
    let mut worst: Option<Latency> = None;
    for mut r in readers {
        let line = r.line()?;
        let got = |k: &str| field(&line, k);
        let (Some(f), Some(l), Some(n), Some(errors)) =
            (got("first"), got("last"), got("events"), got("errors"))
        else {
            return Err(r.failure(line));
        };
        if n != events || errors != 0 {
            return Err(r.failure(format!(
                "read {n} of {events} events, {errors} with a wrong event number"
            )));
        }
        let lat = latency_of(&line).ok_or_else(|| r.failure(line.clone()))?;
        r.wait()?;
        first = first.min(f);
        last = last.max(l);
        if worst.is_none_or(|w| lat.p99_ns > w.p99_ns) {
            worst = Some(lat);
        }
    }
    Ok((
        Transfer {
            events,
            elapsed_ns: last.saturating_sub(first),
            latency: worst.unwrap_or_default(),
        },
        (ring.backing(), ring.locked()),
    ))
}

/// Most events the producer writes and publishes at once at full speed (`Producer::claim_batch`):
/// as the engine's importers of small events do. Each event's time stamp is taken when it is
/// written, so its publish→read latency includes the wait for the rest of its batch.
const FULL_SPEED_BATCH: usize = 32;

/// At full speed only every this many events (and the last) carry a publish time, and only
/// those are timed by the reader: a clock read costs ~20 ns here, as much as a 64-byte
/// event's whole trip through the ring, so timing every event measured the clock as much as
/// the ring. The latency figures at full speed are those of this sample; paced runs time
/// every event. The iceoryx2 peer (`benches/peer`) samples alike.
pub const FULL_SPEED_STAMP_EVERY: u64 = 64;

/// At most this many bytes of events per batch: a batch of large events would keep the
/// readers waiting for the whole batch's copy.
const FULL_SPEED_BATCH_BYTES: usize = 8 << 10;

/// Producer process: attaches by path and publishes `events` events.
fn write_events(
    path: &Path,
    bytes: usize,
    (events, rate): (u64, f64),
    spin_ns: u64,
    out: &mut std::fs::File,
) -> Result<(), String> {
    let ring = Ring::attach(path, None, Some(bytes / 8)).map_err(|e| e.to_string())?;
    let mut producer = ring.producer().map_err(|e| e.to_string())?;
    let (source, in_source) = make_source(bytes);
    let period = if rate > 0.0 { 1e9 / rate } else { 0.0 };
    // Paced: one event per claim, published as soon as it is written. Full speed: as many
    // as there is room for, up to FULL_SPEED_BATCH, published at once.
    let batch = if period > 0.0 {
        1
    } else {
        (FULL_SPEED_BATCH_BYTES / bytes).clamp(1, FULL_SPEED_BATCH)
    };
    let t0 = now_ns();
    let mut i = 0;
    while i < events {
        if period > 0.0 {
            let due = t0 + (i as f64 * period) as u64;
            crate::clock::wait_until(due, spin_ns);
        }
        let want = batch.min((events - i) as usize);
        let mut slots = producer
            .claim_batch(want, Duration::from_secs(10))
            .map_err(|e| format!("event {i}: {e} (did a reader die?)"))?;
        for k in 0..slots.len() {
            let n = i + k as u64;
            let off = (n as usize % in_source) * bytes;
            let (data, meta) = slots.parts(k);
            data.copy_from_slice(&source[off..off + bytes]);
            meta.counter = n as i64;
            data[8..16].copy_from_slice(&n.to_le_bytes());
            let stamped =
                period > 0.0 || n.is_multiple_of(FULL_SPEED_STAMP_EVERY) || n + 1 == events;
            let stamp = if stamped { now_ns() } else { 0 };
            data[..8].copy_from_slice(&stamp.to_le_bytes());
        }
        i += slots.len() as u64;
        slots.publish();
    }
    let blocked = ring.stats().blocked_ns;
    producer.close();
    writeln!(out, "done blocked_ns={blocked}").map_err(|e| e.to_string())
}

/// Reader process: attaches by path as the sole member of group `g`, reads every word of
/// every event, checks event numbers and records latency. `poll`: instead of sleeping on
/// the ring's futex when idle, spin and then `sched_yield` until an event is there.
/// `own_core`: the reader has its CPU to itself and waits as the engine's reader on a core
/// of its own does ([`Reader::spin_on_own_core`](crate::ring::Reader::spin_on_own_core)).
fn read_events(
    path: &Path,
    words: usize,
    g: usize,
    poll: bool,
    own_core: bool,
    out: &mut std::fs::File,
) -> Result<(), String> {
    let ring = Ring::attach(path, None, Some(words)).map_err(|e| e.to_string())?;
    let mut reader = ring.reader(g, 0).map_err(|e| e.to_string())?;
    if own_core {
        reader.spin_on_own_core(crate::ring::OWN_CORE_SPIN_MAX);
    }
    reader.set_small_events(true);
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| e.to_string())?;
    writeln!(out, "READY").map_err(|e| e.to_string())?;
    let (mut n, mut errors, mut sum, mut first, mut last) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let patience = Duration::from_secs(10);
    loop {
        if poll {
            let since = now_ns();
            let mut idle = 0u32;
            while !reader.ready() {
                idle += 1;
                if idle < POLL_SPINS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                    if now_ns() - since > patience.as_nanos() as u64 {
                        return Err(format!("no event for 10 s after {n} events"));
                    }
                }
            }
        }
        match reader.next(patience) {
            Next::Event(ev) => {
                let (w, _) = ev.data().as_chunks::<8>();
                let stamp = w.first().map_or(0, |x| u64::from_le_bytes(*x));
                let number = w.get(1).map_or(u64::MAX, |x| u64::from_le_bytes(*x));
                if number != n || ev.index() != n {
                    errors += 1;
                }
                sum = w
                    .iter()
                    .fold(sum, |s, x| s.wrapping_add(u64::from_le_bytes(*x)));
                if n == 0 {
                    first = stamp;
                }
                // Unstamped (0): a full-speed event between samples (FULL_SPEED_STAMP_EVERY).
                if stamp != 0 {
                    let t = now_ns();
                    hist.saturating_record(t.saturating_sub(stamp).max(1));
                    last = t;
                }
                n += 1;
            }
            Next::Idle => return Err(format!("no event for 10 s after {n} events")),
            Next::End => break,
        }
    }
    std::hint::black_box(sum);
    writeln!(
        out,
        "first={first} last={last} events={n} errors={errors} p50={} p99={} p999={} max={} sum={sum}",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    )
    .map_err(|e| e.to_string())
}

/// The memcpy baseline: events per second copying the same bytes on the producer's CPU.
fn memcpy_once(
    opts: &RingBenchOptions,
    bytes: usize,
    slots: usize,
    events: u64,
) -> Result<f64, RingBenchError> {
    let mut c = Child::spawn("memcpy", opts.producer_cpu, opts.realtime, move |out| {
        let (source, in_source) = make_source(bytes);
        let mut dest = vec![1u8; slots * bytes];
        let t0 = now_ns();
        for i in 0..events as usize {
            let s = (i % in_source) * bytes;
            let d = (i % slots) * bytes;
            dest[d..d + bytes].copy_from_slice(&source[s..s + bytes]);
            std::hint::black_box(&mut dest);
        }
        let dt = now_ns() - t0;
        writeln!(out, "elapsed_ns={dt}").map_err(|e| e.to_string())
    })?;
    let line = c.line()?;
    let dt = field(&line, "elapsed_ns").ok_or_else(|| c.failure(line.clone()))?;
    c.wait()?;
    Ok(events as f64 * 1e9 / dt.max(1) as f64)
}

/// One iceoryx2 run, if the baseline is still usable; a failure marks it failed for good.
fn peer_once(
    status: &mut PeerStatus,
    opts: &RingBenchOptions,
    case: &Case,
    events: u64,
    rate: f64,
) -> Option<Transfer> {
    let PeerStatus::Ran(program) = &*status else {
        return None;
    };
    rt_gap(opts);
    let out = std::process::Command::new(program)
        .args(["--bytes", &case.bytes.to_string()])
        .args(["--events", &events.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--subscribers", &case.groups.to_string()])
        .args(["--depth", &case.slots.to_string()])
        .args(["--producer-cpu", &opts.producer_cpu.to_string()])
        .args(["--consumer-cpu", &opts.consumer_cpu.to_string()])
        .args(["--realtime", if opts.realtime { "1" } else { "0" }])
        .output();
    let result = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            parse_peer_line(&text, events).map_err(|m| format!("{m}: {}", text.trim()))
        }
        Ok(o) => Err(format!(
            "{} exited with {}: {}",
            program.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("running {}: {e}", program.display())),
    };
    match result {
        Ok(t) => Some(t),
        Err(m) => {
            *status = PeerStatus::Failed(m);
            None
        }
    }
}

/// Parses the `peer ...` line of `ring-peer`; `events` is how many every subscriber must
/// have received.
pub fn parse_peer_line(text: &str, events: u64) -> Result<Transfer, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("peer "))
        .ok_or("no result line from ring-peer")?;
    let get = |k: &str| field(line, k).ok_or_else(|| format!("ring-peer result lacks {k}"));
    if get("events")? != events {
        return Err(format!(
            "ring-peer moved {} events, asked {events}",
            get("events")?
        ));
    }
    if get("errors")? != 0 {
        return Err(format!(
            "ring-peer saw {} wrong event numbers",
            get("errors")?
        ));
    }
    Ok(Transfer {
        events,
        elapsed_ns: get("elapsed_ns")?,
        latency: Latency {
            p50_ns: get("p50_ns")?,
            p99_ns: get("p99_ns")?,
            p999_ns: get("p999_ns")?,
            max_ns: get("max_ns")?,
        },
    })
}

/// The value of `key=value` in a line of space-separated pairs.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn latency_of(line: &str) -> Option<Latency> {
    Some(Latency {
        p50_ns: field(line, "p50")?,
        p99_ns: field(line, "p99")?,
        p999_ns: field(line, "p999")?,
        max_ns: field(line, "max")?,
    })
}

fn size_name(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn rate_text(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn lat_cells(t: Option<&Transfer>) -> String {
    match t {
        Some(t) => format!(
            "{:>8} {:>8} {:>8} {:>9}",
            us(t.latency.p50_ns),
            us(t.latency.p99_ns),
            us(t.latency.p999_ns),
            us(t.latency.max_ns)
        ),
        None => format!("{:>8} {:>8} {:>8} {:>9}", "-", "-", "-", "-"),
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

impl fmt::Display for RingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(f, "Ring benchmark: {} CPUs, {}", m.cpus, m.cpu_model)?;
        writeln!(
            f,
            "load average before: {}   after: {}",
            m.load_before, m.load_after
        )?;
        writeln!(
            f,
            "ring pages: {}{}; producer on CPU {}, every reader on CPU {} (with 2 groups both readers share that CPU); {}; median of {} runs",
            self.backing,
            if self.locked { ", locked" } else { ", NOT locked" },
            self.producer_cpu,
            self.consumer_cpu,
            if self.realtime {
                "SCHED_FIFO"
            } else {
                "normal scheduling (other work may preempt)"
            },
            self.repeats
        )?;
        writeln!(f, "{}", self.idle)?;
        match &self.peer {
            PeerStatus::Ran(p) => writeln!(f, "iceoryx2 baseline: {}", p.display())?,
            PeerStatus::Skipped => writeln!(f, "iceoryx2 baseline: skipped")?,
            PeerStatus::Missing(m) | PeerStatus::Failed(m) => {
                writeln!(f, "iceoryx2 baseline: {m}")?
            }
        }
        writeln!(f)?;
        writeln!(f, "Throughput (full speed, block policy; GB/s = 10^9 B/s of event data delivered to each group)")?;
        writeln!(
            f,
            "{:>7} {:>6} {:>6} | {:>10} {:>7} | {:>7} {:>6} | {:>10} {:>8}",
            "event", "groups", "slots", "ours ev/s", "GB/s", "memcpy", "ratio", "iceoryx2", "ratio"
        )?;
        for r in &self.rows {
            let peer_rate = r.peer.map(|p| p.events_per_s());
            writeln!(
                f,
                "{:>7} {:>6} {:>6} | {:>10} {:>7.2} | {:>7.2} {:>6} | {:>10} {:>8}",
                size_name(r.bytes),
                r.groups,
                r.slots,
                rate_text(r.ours.events_per_s()),
                r.gb_per_s(),
                r.memcpy_gb_per_s(),
                ratio(r.ours.events_per_s(), Some(r.memcpy_events_per_s)),
                peer_rate.map_or("-".into(), rate_text),
                ratio(r.ours.events_per_s(), peer_rate),
            )?;
        }
        writeln!(
            f,
            "(memcpy: GB/s of one core copying the same events; ratio: ours / baseline)"
        )?;
        type Pick = fn(&RingRow) -> (Option<&Transfer>, Option<&Transfer>);
        let paced = format!("paced at {} Hz", self.paced_rate_hz);
        let tables: [(String, Pick); 3] = [
            (
                "at full speed (mostly time queued in a full ring)".into(),
                |r| (Some(&r.ours), r.peer.as_ref()),
            ),
            (
                format!("{paced}, our readers sleep on the futex when idle (the engine's way)"),
                |r| (r.ours_paced.as_ref(), r.peer_paced.as_ref()),
            ),
            (
                format!("{paced}, our readers poll like the iceoryx2 subscribers"),
                |r| (r.ours_paced_poll.as_ref(), r.peer_paced.as_ref()),
            ),
        ];
        for (title, pick) in tables {
            if self.rows.iter().all(|r| pick(r).0.is_none()) {
                continue;
            }
            writeln!(f)?;
            writeln!(f, "Latency publish -> read, µs, {title}")?;
            writeln!(
                f,
                "{:>7} {:>6} | {:>8} {:>8} {:>8} {:>9} | {:>8} {:>8} {:>8} {:>9} | {:>9}",
                "event",
                "groups",
                "ours p50",
                "p99",
                "p99.9",
                "max",
                "ice p50",
                "p99",
                "p99.9",
                "max",
                "p99 ratio"
            )?;
            for r in &self.rows {
                let (ours, peer) = pick(r);
                let p99 = |t: Option<&Transfer>| t.map(|t| t.latency.p99_ns as f64);
                writeln!(
                    f,
                    "{:>7} {:>6} | {} | {} | {:>9}",
                    size_name(r.bytes),
                    r.groups,
                    lat_cells(ours),
                    lat_cells(peer),
                    match p99(ours) {
                        Some(o) => ratio(o, p99(peer)),
                        None => "-".into(),
                    }
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
