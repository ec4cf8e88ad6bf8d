//! The supervisor: creates the rings, starts every worker process, watches them, writes the
//! run statistics, and ends the run cleanly.
//!
//! Guarantees:
//! - Nothing starts until every ring exists; ring files are removed when the run ends, also
//!   after a failure or an abort.
//! - The first SIGINT/SIGTERM (or a run limit) stops the Importers only; every buffer then
//!   drains through the pipeline and every exporter closes its files; exit 0.
//!   A second SIGINT aborts at once (SIGKILL to every worker; exit 1).
//! - Observers hold no events: those still running once every other worker has ended are
//!   ended (SIGTERM, SIGKILL after a grace), which is no failure.
//! - A worker process that exits non-zero or is killed is named with its status; its held
//!   slots are released, the producer stops waiting for it and what it wrote is closed, so
//!   the rest drains; then the run ends with exit 1 — or the process is started again when
//!   its worker says `restart: on-failure`.
//! - No worker outlives the supervisor: workers are in their own process group (a terminal
//!   Ctrl-C reaches only the supervisor) and get SIGTERM from the kernel if it dies.

use super::alert::Kind;
use crate::ring::{Policy, Ring, RingSpec, RingStats};
use crate::run_dir::pauses::PauseMark;
use crate::run_dir::plan::{Plan, Restart};
use crate::run_dir::{
    BufferStats, DeviceState, ReaderBooks, Snapshot, StopCause, WorkerStats, FULL_LEVEL,
    FULL_WARNING_S,
};
use crate::runtime::ring_name;
use crate::shm::{places, ShmPlace};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SIGNALS: AtomicU32 = AtomicU32::new(0);
/// The number of the latest stop signal (0 until one came): it names why the run stopped.
/// Stored before the count goes up, so whoever sees the count sees its signal.
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The process that sent the latest stop signal; 0 for the kernel (Ctrl-C at the terminal,
/// a hang-up) or when it is not known.
static LAST_SENDER: AtomicI32 = AtomicI32::new(0);
/// The run's terminal hung up (SIGHUP, or the dashboard found it gone).
static HUNG_UP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A terminal hangs up once: a second SIGHUP (the shell passing its own on to its jobs)
    // is no request to abort.
    if sig == libc::SIGHUP && HUNG_UP.swap(true, Ordering::SeqCst) {
        return;
    }
    let sender = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; si_pid is
        // the sender's pid for a signal sent by kill(2) and 0 for one the kernel raises.
        unsafe { (*info).si_pid() }
    };
    LAST_SENDER.store(sender, Ordering::SeqCst);
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Whether the terminal the run was started from hung up, so that the dashboard stops
/// drawing on it.
pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
}

/// The dashboard cannot read or draw on its terminal any more: the run stops as for a
/// SIGHUP (once, whichever of the two is noticed first).
pub fn terminal_gone() {
    on_signal(libc::SIGHUP, std::ptr::null_mut(), std::ptr::null_mut());
}

/// The stop signal that just came, as the cause of the stop. Ctrl-C at a terminal comes from
/// the kernel (or from the dashboard, which passes the key on); under a service manager a
/// SIGINT sent by a process is its stop (systemd sends the unit's `KillSignal=SIGINT`), not
/// a person's Ctrl-C.
fn signal_cause(service: bool) -> StopCause {
    let sender = LAST_SENDER.load(Ordering::SeqCst);
    let from_terminal = sender == 0 || sender == std::process::id() as i32;
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        libc::SIGHUP => StopCause::HungUp,
        libc::SIGINT if from_terminal || !service => StopCause::Signal,
        _ => StopCause::Terminated,
    }
}

/// Which signal came and from whom, for the log: `SIGTERM from process 812 (systemd)`.
fn signal_origin() -> String {
    let sig = LAST_SIGNAL.load(Ordering::SeqCst);
    let name = nix::sys::signal::Signal::try_from(sig).map_or("a signal", |s| s.as_str());
    match LAST_SENDER.load(Ordering::SeqCst) {
        0 => name.to_string(),
        pid => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            match comm.trim() {
                "" => format!("{name} from process {pid}"),
                comm => format!("{name} from process {pid} ({comm})"),
            }
        }
    }
}

/// Whether this process runs as a service (systemd sets `INVOCATION_ID` for every unit,
/// and `NOTIFY_SOCKET` for ours).
fn under_service_manager() -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
        || std::env::var_os(super::notify::SOCKET_VAR).is_some()
}

/// How many Ctrl-C, SIGTERM and SIGHUP this process received since its run started
/// (each of them is a request to stop; the second an abort).
pub fn signals_received() -> u32 {
    SIGNALS.load(Ordering::SeqCst)
}

/// How progress is shown while the run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A line rewritten in place (stderr is a terminal).
    Live,
    /// A plain line every `interval` (stderr is a file or pipe).
    Lines(Duration),
    /// Nothing but the start and the summary.
    Quiet,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The program to start workers from (normally this executable).
    pub worker_exe: PathBuf,
    /// Extra arguments placed before the hidden worker command (e.g. a user binary's own).
    pub worker_args: Vec<String>,
    /// Progress display.
    pub progress: Progress,
}

/// What a watcher (terminal dashboard, web page) may ask of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Importers keep reading their devices but publish nothing (mimoCoRB2's pause).
    Pause,
    /// Importers publish again.
    Resume,
    /// Stop the importers and let every buffer drain, as the first Ctrl-C does.
    Stop,
}

/// Something that shows the run while it goes on and may steer it. The supervisor calls it
/// from its loop: `update` with every statistics snapshot (the same JSON object as a line of
/// stats.jsonl, plus `"paused"`), `poll` a few times a second, `finish` once at the end.
pub trait Watcher {
    /// A new statistics snapshot.
    fn update(&mut self, stats: &Snapshot);
    /// A control action, if one was asked for since the last call.
    fn poll(&mut self) -> Option<Control>;
    /// The run ended with this summary.
    fn finish(&mut self, _summary: &RunSummary) {}
}

/// How the run ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSummary {
    /// Process exit code: 0 finished, 1 failed.
    pub exit_code: i32,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Seconds the run took.
    pub seconds: f64,
    /// Of those, seconds the importers were paused (they took no events then): the live
    /// time of the measurement is `seconds - paused_seconds`. Absent when never paused.
    #[serde(skip_serializing_if = "is_zero")]
    pub paused_seconds: f64,
    /// Seconds from the stop (a signal, the monitor, `max_seconds`, a full disk) to the end
    /// of the last worker: the draining and the closing of every file. `None` when the run
    /// ended by itself (its sources were exhausted) or was aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_seconds: Option<f64>,
    /// Events published per buffer.
    pub events: BTreeMap<String, u64>,
    /// Events lost per buffer (`drop` policy).
    pub lost: BTreeMap<String, u64>,
    /// Per buffer and reader: delivered and lost, which add up to what the buffer's writers
    /// produced (`events` + `lost`). Whatever a reader had not read when the run ended is
    /// lost for it.
    pub readers: BTreeMap<String, BTreeMap<String, ReaderBooks>>,
    /// Why the run stopped.
    pub stopped_by: StopCause,
    /// What went wrong, if anything.
    pub failures: Vec<String>,
    /// Per `export.kafka` worker: what became of its events (the counts its processes
    /// wrote at the end, as the last stats line and `status` show them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka: BTreeMap<String, crate::run_dir::KafkaCounts>,
    /// Per worker that was started again after a failure (`restart: on-failure`): how many
    /// times, over its processes. Absent when none was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restarts: BTreeMap<String, u32>,
    /// Per device importer: its device's health at the end (bad records skipped,
    /// disconnects it came back from), as its notes and the last stats line say. Absent
    /// without device importers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, DeviceState>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The dead-time fraction of a span of `seconds`: `blocked_ns` of waiting for room, booked
/// by `rings` producers, at most 1. A producer books a wait when it ends (each a claim's
/// timeout at most), so a span may be booked part of the wait of the one before: 0.6 s in a
/// span of 0.5 s was shown as 119 %. The run's total (`deadtime_total_s`) is exact.
fn dead_fraction(blocked_ns: u64, seconds: f64, rings: usize) -> f64 {
    (blocked_ns as f64 / 1e9 / seconds.max(1e-9) / rings.max(1) as f64).min(1.0)
}

/// The function whose workers write Kafka counts (`kafka_<worker>_<process>.json`).
const KAFKA_EXPORT: &str = "export.kafka";

/// Errors before the run could start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A ring could not be created.
    #[error("creating the ring for buffer '{buffer}': {source}")]
    Ring {
        /// The buffer.
        buffer: String,
        /// Why.
        #[source]
        source: crate::ring::CreateError,
    },
    /// A file in the run directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A worker process could not be started.
    #[error("starting worker '{worker}': {source}")]
    Spawn {
        /// The worker.
        worker: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

struct Proc {
    worker: usize,
    index: usize,
    child: Option<Child>,
    pid: u32,
    is_importer: bool,
    status: Option<ExitStatus>,
    restarts: u32,
    /// When it was started again lately (see [`restart_allowed`]).
    recent_restarts: Vec<Instant>,
    /// It failed and is to be started again at this time (see [`restart_delay`]).
    restart_at: Option<Instant>,
    cpu_s: f64,
    /// The core it last ran on.
    core: Option<u32>,
    /// An observer the supervisor told to end (SIGTERM) once every other worker had ended,
    /// when; and whether it was killed after [`OBSERVER_GRACE`]. How it ends is no failure.
    told_to_end: Option<(Instant, bool)>,
}

/// How long an observer told to end (see [`Supervisor::end_observers`]) has before it is
/// killed: enough for a built-in observer to notice its buffer's end, which it looks for
/// at least every 200 ms.
const OBSERVER_GRACE: Duration = Duration::from_secs(2);

struct BufferRings {
    name: String,
    rings: Vec<Ring>,
}

fn install_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SIGHUP: the terminal the run was started from went away; stop cleanly, as for Ctrl-C.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `on_signal` only reads its siginfo and stores to atomics, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// CPU seconds (user + system) of process `pid` and the core it last ran on, from /proc.
/// The seconds come from the process's CPU-time clock (nanoseconds, all its threads, the
/// ended ones too); /proc's utime and stime count in clock ticks (10 ms), too coarse for a
/// per-event figure over a short run. The ticks are the fallback when the clock cannot be
/// read.
fn cpu_and_core(pid: u32) -> Option<(f64, Option<u32>)> {
    let stat = crate::procfs::Stat::read(pid)?;
    let core = stat.processor;
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32))
        .and_then(|id| id.now())
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9);
    if let Ok(seconds) = clock {
        return Some((seconds, core));
    }
    Some((stat.cpu_seconds()?, core))
}

/// A device importer's heartbeat: its notes file as last rewritten (inode and modification
/// time, which change with every rewrite); `None` without notes (not a device importer, or
/// not yet opened).
fn notes_heartbeat(notes: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(notes).ok()?;
    let mtime = (m.mtime() as u64).wrapping_mul(1_000_000_000) ^ m.mtime_nsec() as u64;
    Some(mtime ^ m.ino().rotate_left(32))
}

/// A device importer's state from its notes (`device_<worker>.txt`): whether the device is
/// connected now, how many disconnect gaps it had, how many bad records were skipped and
/// whether it is silent; null for other workers.
fn device_state(run_dir: &Path, worker: &str) -> Option<DeviceState> {
    crate::run_dir::DeviceNotes::read(&crate::run_dir::device_notes_path(run_dir, worker)).state()
}

/// The cores process `pid` may run on, when that is fewer than all online cores (it is
/// pinned); empty when it may run anywhere or cannot be asked.
fn pinned_cores(pid: u32) -> Vec<u32> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid as i32)) else {
        return Vec::new();
    };
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores: Vec<u32> = (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .map(|c| c as u32)
        .collect();
    if cores.len() >= online {
        Vec::new()
    } else {
        cores
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|x| x.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {s}"));
            format!("was killed by {name}")
        }
        _ => "ended".to_string(),
    }
}

/// Per buffer: (events published, nanoseconds blocked).
type Counts = BTreeMap<String, (u64, u64)>;

/// A worker with `restart: on-failure` is started again at most this many times within
/// [`RESTART_WINDOW`]; one that fails faster is broken, not unlucky, and the run stops. A
/// worker that fails now and then over a week-long run is restarted every time.
pub const RESTART_BURST: usize = 5;
/// See [`RESTART_BURST`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Free bytes above the reserve that still count as a full disk for a failed writer (less
/// than one chunk of a run file).
const FULL_MARGIN: u64 = 1 << 20;

/// How long to wait before starting a failed process again, given how many times it was
/// started again within [`RESTART_WINDOW`]: the first time at once (a glitch), then 0.5 s,
/// 1 s, 2 s, 4 s. A worker that fails because something outside it is briefly wrong (a
/// device re-enumerating, a full disk being cleared) gets time for that to pass instead of
/// spending its whole budget in a few milliseconds.
fn restart_delay(recent: usize) -> Duration {
    match recent {
        0 => Duration::ZERO,
        n => Duration::from_millis(500 << (n - 1).min(4)),
    }
}

/// Whether a process whose recent restarts were at `recent` may be started again `now`;
/// forgets restarts older than the window.
fn restart_allowed(recent: &mut Vec<Instant>, now: Instant) -> bool {
    recent.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
    recent.len() < RESTART_BURST
}

/// What the log was told about one buffer.
#[derive(Default)]
struct Alarm {
    /// Since when it has been full, and whether that was logged.
    full_since: Option<(Instant, bool)>,
    /// Lost events already logged, and when.
    lost_logged: u64,
    lost_logged_at: Option<Instant>,
    /// Per reader: its own lost events (beyond the ring's) already logged, and when.
    reader_lost_logged: BTreeMap<String, (u64, Option<Instant>)>,
}

/// Seconds between two log lines about events being lost in one buffer.
const LOST_LOG_INTERVAL_S: f64 = 10.0;

/// The supervisor of one run.
pub struct Supervisor {
    plan: Plan,
    plan_path: PathBuf,
    buffers: Vec<BufferRings>,
    procs: Vec<Proc>,
    opts: RunOptions,
    start: Instant,
    stats_file: crate::run_dir::stats_file::StatsFile,
    /// When stats were last written, with each buffer's (published, blocked ns) then.
    last_stats: Option<(Instant, Counts)>,
    /// When the progress line was last made, with each buffer's events published then.
    last_progress: Option<(Instant, BTreeMap<String, u64>)>,
    /// Per buffer: what the log has been told about it being full or losing events.
    alarms: BTreeMap<String, Alarm>,
    stopping: bool,
    /// When the importers were told to stop.
    stopped_at: Option<Instant>,
    /// While the run drains: the events moved through every buffer so far (published,
    /// claimed and released, summed), and when that sum last changed.
    drain_moved: Option<(u64, Instant)>,
    /// While the importers run: since when each reader or device importer has not moved
    /// (see `watch_stalls`).
    stalls: super::stall::StallWatch,
    /// Why: the first stop's cause (an abort overrides it), or, once every importer has
    /// ended by itself, why they did (`note_importers_ended`); `None` while the run takes
    /// data.
    stop_cause: Option<StopCause>,
    /// The workers were killed (an abort): the run did not drain.
    aborted: bool,
    /// Since when the importers are paused; `None` while they run.
    paused_since: Option<crate::clock::Moment>,
    /// How long earlier pauses lasted, in all, in `CLOCK_MONOTONIC` nanoseconds (the clock
    /// of `pauses.jsonl`, so that a file spanning the run says the same).
    paused_before_ns: u64,
    /// Pause and resume requests so far (each carries its number to the importers).
    pause_requests: u64,
    failures: Vec<String>,
    /// The core of each worker process (see `placement`).
    placement: super::placement::Placement,
    /// Held for the run when a real-time worker has a core of its own ([`hold_cpus_awake`]).
    _idle_hold: Option<crate::runtime::realtime::NoIdle>,
    _places: Vec<ShmPlace>,
    /// Free space under the run directory: warns when low, stops the run at the reserve.
    disk: crate::export::disk::DiskWatch,
    /// The service manager (systemd), when it started the run.
    notify: super::notify::Notify,
    /// `options.alert_command`, run when a warning starts.
    alerts: super::alert::Alerts,
    /// What the workers print, on its way to the terminal (a worker for which no pipe
    /// could be made prints onto the supervisor's stderr itself); taken at the end.
    prints: Option<super::terminal::Prints>,
}

/// A run with a real-time worker (`priority:`) on a core of its own keeps every idle CPU
/// from sleeping deeply for as long as it lasts ([`NoIdle`](crate::runtime::realtime::NoIdle)):
/// such a worker spins a while before it sleeps (`ring::Reader::spin_on_own_core`), and
/// when it sleeps all the same its CPU must wake in microseconds, not the 100 µs of a deep
/// C-state or the milliseconds of a halted virtual CPU (measured: `bench ring`'s paced p99
/// of a sleeping reader went from 1.3 µs to 21.8 µs as the machine went quiet and its CPUs
/// halted). Costs power while the run lasts; runs without `priority:` never ask.
fn hold_cpus_awake(
    placement: &super::placement::Placement,
    seats: &[super::placement::Seat<'_>],
) -> Option<crate::runtime::realtime::NoIdle> {
    let name = placement.real_time_alone(seats)?;
    match crate::runtime::realtime::NoIdle::hold() {
        Ok(hold) => {
            tracing::info!(
                "worker '{name}' runs real-time on a core of its own: idle CPUs poll instead \
                 of sleeping for this run ({} held at 0 µs)",
                crate::runtime::realtime::CPU_LATENCY_QOS
            );
            Some(hold)
        }
        Err(e) => {
            tracing::warn!("worker '{name}': {e}");
            None
        }
    }
}

/// What the rings of one buffer (one per writing process) add up to.
struct Totals {
    /// Events published.
    published: u64,
    /// Events lost (dropped on a full ring).
    lost: u64,
    /// The fullest ring's fill, 0 to 1.
    fill: f64,
}

impl Totals {
    fn of(rings: &[RingStats]) -> Totals {
        Totals {
            published: rings.iter().map(|s| s.published).sum(),
            lost: rings.iter().map(|s| s.lost).sum(),
            fill: rings
                .iter()
                .map(|s| s.filled as f64 / s.slot_count.max(1) as f64)
                .fold(0.0, f64::max),
        }
    }
}

impl Supervisor {
    /// Creates every ring of `plan` (its `rings` lists are filled in), writes `plan.json`,
    /// and opens `stats.jsonl`, all in the run directory, which must exist.
    pub fn prepare(mut plan: Plan, opts: RunOptions) -> Result<Supervisor, EngineError> {
        let huge = plan.huge_pages;
        let state = Path::new("/run/daq-engine");
        let _ = std::fs::create_dir_all(state);
        let places = places(huge, Some(state));
        let mut buffers = Vec::new();
        for b in &mut plan.buffers {
            let mut rings = Vec::new();
            b.rings.clear();
            if let Some(writer) = &b.writer {
                let n = plan
                    .workers
                    .iter()
                    .find(|w| &w.name == writer)
                    .map_or(1, |w| w.processes);
                for k in 0..n {
                    let spec = RingSpec {
                        name: ring_name(&plan.run_id, &b.name, k),
                        dtype: b.dtype(),
                        data_length: b.data_length,
                        slot_count: b.slot_count,
                        policy: b.policy,
                        groups: b
                            .readers
                            .iter()
                            .map(|r| {
                                plan.workers
                                    .iter()
                                    .find(|w| &w.name == r)
                                    .map_or(1, |w| w.processes)
                            })
                            .collect(),
                    };
                    let ring =
                        Ring::create(&places, &spec).map_err(|source| EngineError::Ring {
                            buffer: b.name.clone(),
                            source,
                        })?;
                    tracing::info!(
                        "buffer '{}' ring {k}: {} slots × {} B, {}, {}{}",
                        b.name,
                        b.slot_count,
                        ring.event_bytes(),
                        b.policy.name(),
                        ring.backing(),
                        if ring.locked() {
                            ", locked in memory"
                        } else {
                            ", NOT locked in memory (mlock refused; raise `ulimit -l`)"
                        }
                    );
                    b.rings.push(ring.path().to_path_buf());
                    rings.push(ring);
                }
            }
            buffers.push(BufferRings {
                name: b.name.clone(),
                rings,
            });
        }
        let plan_path = plan.save().map_err(|source| EngineError::Io {
            path: plan.run_dir.join(crate::run_dir::PLAN),
            source,
        })?;
        let stats_path = plan.run_dir.join(crate::run_dir::STATS);
        let stats_file =
            crate::run_dir::stats_file::StatsFile::create(&stats_path).map_err(|source| {
                EngineError::Io {
                    path: stats_path,
                    source,
                }
            })?;
        let (plan_run_dir, disk_reserve_mb) = (plan.run_dir.clone(), plan.disk_reserve_mb);
        let alerts = super::alert::Alerts::new(plan.alert_command.clone(), &plan.run_dir);
        let seats = super::placement::seats_of(&plan.workers);
        let placement = super::placement::place(&seats, &super::placement::isolated_cores());
        let idle_hold = hold_cpus_awake(&placement, &seats);
        drop(seats);
        Ok(Supervisor {
            plan,
            plan_path,
            buffers,
            procs: Vec::new(),
            opts,
            start: Instant::now(),
            stats_file,
            last_stats: None,
            last_progress: None,
            alarms: BTreeMap::new(),
            stopping: false,
            drain_moved: None,
            stalls: super::stall::StallWatch::default(),
            stopped_at: None,
            stop_cause: None,
            aborted: false,
            paused_since: None,
            paused_before_ns: 0,
            pause_requests: 0,
            failures: Vec::new(),
            placement,
            _idle_hold: idle_hold,
            _places: places,
            disk: crate::export::disk::DiskWatch::new(plan_run_dir, (disk_reserve_mb * 1e6) as u64),
            notify: super::notify::Notify::from_env(),
            alerts,
            prints: Some(super::terminal::Prints::new()),
        })
    }

    /// The plan with ring paths filled in.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// What the operating system will refuse of the real-time set-up, each with its fix:
    /// said once at the start of a run (the workers go on without it).
    pub fn realtime_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let root = nix::unistd::geteuid().is_root();
        let limit = |r: libc::__rlimit_resource_t| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `l` is a valid rlimit to write into.
            unsafe { libc::getrlimit(r, &mut l) };
            l.rlim_cur
        };
        if !root {
            let rt = limit(libc::RLIMIT_RTPRIO);
            for w in &self.plan.workers {
                if let Some(p) = w.priority {
                    if (p as u64) > rt {
                        out.push(format!(
                            "worker '{}' asks for SCHED_FIFO priority {p}, but this user may use at most {rt}: it runs at normal priority. Fix: run as root, or add `{} - rtprio 99` to /etc/security/limits.conf",
                            w.name,
                            std::env::var("USER").unwrap_or_else(|_| "<user>".into())
                        ));
                    }
                }
            }
            let mem = limit(libc::RLIMIT_MEMLOCK);
            if mem != libc::RLIM_INFINITY {
                out.push(format!(
                    "locked memory is limited to {} KiB: worker memory may be paged out under pressure. Fix: `ulimit -l unlimited`, or `memlock unlimited` in /etc/security/limits.conf",
                    mem / 1024
                ));
            }
        }
        for b in &self.buffers {
            if b.rings.iter().any(|r| !r.locked()) {
                out.push(format!(
                    "buffer '{}' could not be locked in memory (mlock refused): raise the locked-memory limit",
                    b.name
                ));
            }
        }
        for w in &self.plan.workers {
            for c in &w.cpu {
                if !crate::runtime::realtime::pin_possible(*c) {
                    out.push(format!(
                        "worker '{}' asks for core {c}, which this machine does not have; it runs unpinned",
                        w.name
                    ));
                }
            }
        }
        out
    }

    /// Something from before the run that nobody may have seen: logged as a warning, and
    /// `alert_command` run for it (beside the run, as for any alert).
    pub fn alert(&mut self, kind: super::alert::Kind, subject: &str, text: &str) {
        tracing::warn!("{subject}: {text}");
        self.alerts.raise(kind, subject, text);
    }

    /// The pages each buffer's rings got, for the start-up report.
    pub fn backings(&self) -> Vec<(String, String)> {
        self.buffers
            .iter()
            .filter_map(|b| {
                b.rings
                    .first()
                    .map(|r| (b.name.clone(), r.backing().to_string()))
            })
            .collect()
    }

    fn spawn(&self, worker: usize, index: usize) -> Result<Child, EngineError> {
        let w = &self.plan.workers[worker];
        let mut cmd = Command::new(&self.opts.worker_exe);
        cmd.args(&self.opts.worker_args)
            .arg("__worker")
            // Everything after `--` is positional: a worker named `--help` or `-rf` is a name.
            .arg("--")
            .arg(&self.plan_path)
            .arg(&w.name)
            .arg(index.to_string())
            .env("DAQ_SUPERVISOR_PID", std::process::id().to_string())
            // Only the supervisor speaks for the run to systemd.
            .env_remove(super::notify::SOCKET_VAR)
            .stdin(Stdio::null())
            .process_group(0);
        // What a worker prints (a Python worker's `print`) goes where the supervisor's
        // messages go: under the dashboard into console.log, not over the screen the
        // dashboard draws on stdout; otherwise the terminal or the journal. Through the
        // pipe of `prints`, so that a terminal nobody reads never holds a worker up.
        match self.prints.as_ref().map(|p| p.for_worker()) {
            Some(Ok((out, err))) => {
                cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
            }
            found => {
                if let Some(Err(e)) = found {
                    tracing::warn!(
                        "no pipe for the prints of worker '{}' process {index}: {e}; it \
                         prints onto the terminal itself",
                        w.name
                    );
                }
                if let Ok(err) = std::io::stderr().as_fd().try_clone_to_owned() {
                    cmd.stdout(Stdio::from(err));
                }
            }
        }
        // A worker starts with the pause signal blocked and unblocks it once its handler is
        // in place (`runtime::install_signals`): a pause sent while it is still starting
        // waits for it instead of killing it (the default action of a real-time signal).
        let pause_signal = crate::runtime::pause_signal();
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // sigemptyset/sigaddset/sigprocmask on a local set: async-signal-safe, no allocation,
        // no lock.
        unsafe {
            cmd.pre_exec(move || {
                let mut set = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, pause_signal);
                if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(cpu) = self.placement.core(worker, index) {
            cmd.env("DAQ_CPU", cpu.to_string());
            if self.placement.alone(worker, index) {
                cmd.env(crate::runtime::CPU_ALONE_ENV, "1");
            }
        }
        if let Some(p) = w.priority {
            cmd.env("DAQ_PRIORITY", p.to_string());
        }
        // An importer started again while the run is paused starts paused (a later resume
        // reaches it as a signal, held until its handlers are in place).
        if self.paused_since.is_some() {
            let state = crate::runtime::pause_state(self.pause_requests, true);
            cmd.env(crate::runtime::PAUSED_VAR, state.to_string());
        }
        cmd.spawn().map_err(|source| EngineError::Spawn {
            worker: w.name.clone(),
            source,
        })
    }

    /// Starts every worker process and supervises the run until it ends.
    pub fn run(self) -> Result<RunSummary, EngineError> {
        self.run_watched(None)
    }

    /// As [`Supervisor::run`], shown by and steered from `watcher`.
    pub fn run_watched(
        mut self,
        mut watcher: Option<&mut dyn Watcher>,
    ) -> Result<RunSummary, EngineError> {
        install_signals();
        // Readers first, importers last: nothing is produced before its consumers exist.
        let mut order: Vec<usize> = (0..self.plan.workers.len()).collect();
        order.sort_by_key(|&i| self.plan.workers[i].sources.is_empty());
        for &wi in &order {
            let w = &self.plan.workers[wi];
            let is_importer = w.is_importer();
            for k in 0..w.processes {
                let child = self.spawn(wi, k)?;
                tracing::info!(
                    "started worker '{}' process {k} (pid {})",
                    w.name,
                    child.id()
                );
                self.procs.push(Proc {
                    worker: wi,
                    index: k,
                    pid: child.id(),
                    child: Some(child),
                    is_importer,
                    status: None,
                    restarts: 0,
                    recent_restarts: Vec::new(),
                    restart_at: None,
                    cpu_s: 0.0,
                    core: None,
                    told_to_end: None,
                });
            }
        }
        self.start = Instant::now();
        let mut last_progress = Instant::now() - Duration::from_secs(3600);
        let mut last_watch = Instant::now();
        let mut stop_deadline: Option<Instant> = None;
        let mut seen_signals = 0;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if let Some(w) = watcher.as_deref_mut() {
                while let Some(c) = w.poll() {
                    self.control(c);
                }
            }
            // Requests from other processes (the Python package): `control/` in the run dir.
            for c in super::requests::take(&self.plan.run_dir) {
                self.control(c);
            }
            let signals = SIGNALS.load(Ordering::SeqCst);
            if signals > seen_signals {
                seen_signals = signals;
                if signals == 1 && !self.stopping {
                    self.log_and_say(
                        "stop requested: importers stop, buffers drain (Ctrl-C again to abort)",
                    );
                    // Who stopped the run, for the one who finds it stopped.
                    tracing::info!("the stop came by {}", signal_origin());
                    self.stop_importers(signal_cause(under_service_manager()));
                } else if signals == 1 {
                    // The run was stopping already (a run limit, a failure, the page): the
                    // signal changes nothing, which the person who sent it should hear.
                    let why = self
                        .stop_cause
                        .map(|c| format!(" (stopped by {})", c.text()))
                        .unwrap_or_default();
                    self.log_and_say(&format!(
                        "stop signal: the run is already stopping{why}; its buffers drain \
                         (Ctrl-C again to abort)"
                    ));
                    tracing::info!("the signal came by {}", signal_origin());
                } else if signals >= 2 {
                    self.log_and_say("second stop signal: aborting");
                    self.failures.push("aborted by a second stop signal".into());
                    self.kill_all();
                    break;
                }
            }
            if let Some(max) = self.plan.max_seconds {
                if !self.stopping && self.start.elapsed().as_secs_f64() >= max {
                    tracing::info!("max_seconds {max} reached: stopping importers");
                    self.stop_importers(StopCause::MaxSeconds);
                }
            }
            self.reap();
            self.note_importers_ended();
            self.end_observers();
            if self.procs.iter().all(|p| p.status.is_none()) {
                self.notify.ready();
            }
            self.notify.tick(Instant::now());
            self.alerts.reap();
            self.watch_disk();
            for b in &self.buffers {
                for r in &b.rings {
                    let n = r.reclaim_dead();
                    if n > 0 {
                        tracing::warn!(
                            "buffer '{}': released {n} events held by a dead reader",
                            b.name
                        );
                    }
                }
            }
            if !self.failures.is_empty() && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + Duration::from_secs(30));
            }
            if stop_deadline.is_some_and(|d| Instant::now() > d) {
                self.log_and_say("workers did not drain within 30 s after a failure: killing them");
                self.kill_all();
                break;
            }
            let stats_due = self
                .last_stats
                .as_ref()
                .is_none_or(|(t, _)| t.elapsed().as_secs_f64() >= self.plan.stats_interval);
            if stats_due {
                let line = self.write_stats(false);
                self.notify.status(&super::notify::status_of(&line));
                if let Some(w) = watcher.as_deref_mut() {
                    w.update(&line);
                }
            }
            if self
                .procs
                .iter()
                .all(|p| p.status.is_some() && p.restart_at.is_none())
            {
                break;
            }
            if last_watch.elapsed() >= Duration::from_secs(1) {
                last_watch = Instant::now();
                // One read of the rings' counters for both.
                let stats = self.ring_stats();
                self.watch_buffers(&stats);
                self.watch_stalls(&stats);
                if let Some(stalled) = self.drain_stalled(&stats) {
                    self.log_and_say(&stalled);
                    self.failures.push(stalled);
                    self.kill_all();
                    break;
                }
            }
            match self.opts.progress {
                Progress::Live if last_progress.elapsed() >= Duration::from_millis(500) => {
                    last_progress = Instant::now();
                    super::terminal::say(format!("\r\x1b[2K{}", self.progress_line()));
                }
                Progress::Lines(every) if last_progress.elapsed() >= every => {
                    last_progress = Instant::now();
                    super::terminal::say(format!("{}\n", self.progress_line()));
                }
                _ => {}
            }
        }
        self.notify.stopping();
        if self.opts.progress == Progress::Live {
            super::terminal::say("\r\x1b[2K".into());
        }
        // The cause is final now, for the last stats line and the summary alike (already set
        // by a stop or by the importers' end; worked out here should the loop end otherwise).
        self.stop_cause = Some(self.stopped_by());
        let line = self.write_stats(true);
        let summary = self.summary();
        self.alert_the_end(&summary);
        if let Some(w) = watcher {
            w.update(&line);
            w.finish(&summary);
        }
        Ok(summary)
    }

    /// Samples the run directory's disk: warns when it runs low, stops the run at its
    /// reserve or when the directory is gone.
    fn watch_disk(&mut self) {
        let disk = self.plan.run_dir.display().to_string();
        match self.disk.check() {
            Some(crate::export::disk::DiskNews::Low(m)) => {
                self.log_and_say(&m);
                self.alerts.raise(Kind::DiskLow, &disk, &m);
            }
            Some(crate::export::disk::DiskNews::Stop(m)) if !self.stopping => {
                self.log_and_say(&m);
                self.alerts.raise(Kind::DiskFull, &disk, &m);
                self.stop_importers(StopCause::DiskFull);
            }
            Some(crate::export::disk::DiskNews::Gone { failure, message }) => {
                self.log_and_say(&message);
                self.alerts.raise(Kind::RunDirGone, &disk, &message);
                self.failures.push(failure);
                self.stop_importers(StopCause::RunDirGone);
            }
            _ => {}
        }
    }

    /// Whether the run stops for a full disk that is full still (nothing above the reserve
    /// free): a worker writing into the run directory that fails now is not started again,
    /// its new process would fail on the same disk (or hang creating its file) until the
    /// drain watch gave up on it. What it held is counted lost.
    fn stopping_on_a_full_disk(&mut self) -> bool {
        // The disk watch may not have seen it yet: the writer's failure came first.
        self.watch_disk();
        self.stop_cause == Some(StopCause::DiskFull)
            && crate::export::disk::free_bytes(&self.plan.run_dir)
                .is_none_or(|free| free <= self.disk.reserve().saturating_add(FULL_MARGIN))
    }

    /// Carries out a watcher's request; logged in the run log.
    pub fn control(&mut self, c: Control) {
        match c {
            Control::Stop => {
                if !self.stopping {
                    self.log_and_say(
                        "stop requested from the monitor: importers stop, buffers drain",
                    );
                    self.stop_importers(StopCause::Monitor);
                }
                return;
            }
            // The importers are stopping (a pause going on ended at the stop): a pause now
            // would book the drain as paused time.
            Control::Pause | Control::Resume if self.stopping => {
                tracing::info!("{c:?} requested while the run is stopping: nothing to do");
                return;
            }
            Control::Pause | Control::Resume => {}
        }
        let paused = c == Control::Pause;
        self.book_pause(paused);
        self.pause_requests += 1;
        tracing::info!(
            "{} requested from the monitor",
            if paused { "pause" } else { "resume" }
        );
        // Each request carries its number: the importer keeps the latest, whatever order
        // its handlers run in (see `runtime::PAUSE`).
        let value = libc::sigval {
            sival_ptr: crate::runtime::pause_state(self.pause_requests, paused) as usize
                as *mut libc::c_void,
        };
        for p in &self.procs {
            if p.is_importer && p.status.is_none() {
                // SAFETY: sigqueue sends a signal with a plain integer payload; no memory is
                // shared through the pointer-sized value.
                unsafe {
                    libc::sigqueue(p.pid as libc::pid_t, crate::runtime::pause_signal(), value)
                };
            }
        }
    }

    /// Starts (`paused`) or ends a pause in the books: the time paused so far, and the pause
    /// file the HDF5 files read at their close (see `run_dir::pauses`). Nothing when the run
    /// already is so.
    fn book_pause(&mut self, paused: bool) {
        let now = crate::clock::Moment::now();
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(now),
            (false, Some(since)) => {
                self.paused_before_ns += now.monotonic_ns.saturating_sub(since.monotonic_ns);
                self.paused_since = None;
            }
            _ => return,
        }
        // Without the mark the run goes on, and the summary still has the total.
        if let Err(e) = PauseMark::new(paused, now).append(&self.plan.run_dir) {
            tracing::warn!("the pause is not recorded for the HDF5 files: {e}");
        }
    }

    fn log_and_say(&self, msg: &str) {
        tracing::warn!("{msg}");
        // Never waits for the terminal (see `terminal`): the log has every line.
        let clear = if self.opts.progress == Progress::Live {
            "\r\x1b[2K"
        } else {
            ""
        };
        super::terminal::say(format!("{clear}daq-engine: {msg}\n"));
    }

    fn stop_importers(&mut self, cause: StopCause) {
        // A pause going on ends here: from the stop on the importers take nothing either way,
        // and the drain is not paused time (it was counted as such to the run's end, in the
        // summary, and to each file's close, in the files). Importers are not started again
        // while the run stops, so none starts unpaused.
        self.book_pause(false);
        self.stopping = true;
        self.stopped_at.get_or_insert_with(Instant::now);
        self.stop_cause.get_or_insert(cause);
        self.notify.stopping();
        for p in &self.procs {
            if p.is_importer && p.status.is_none() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }

    /// Whether the run drains: it was told to stop, or every importer has ended by itself
    /// (its events ran out: a replay at the end of its file) and none waits to be started
    /// again. Nothing new comes in; what is in the buffers goes through and the run ends.
    fn draining(&self) -> bool {
        self.stopping
            || self
                .procs
                .iter()
                .filter(|p| p.is_importer)
                .all(|p| p.status.is_some() && p.restart_at.is_none())
    }

    /// Once every importer has ended by itself (its events ran out, `max_events`, a silent
    /// device under `on_silence: stop`) the run drains as after a stop, and says so: its
    /// stats lines say `stopping` with the cause (status and the page showed "running" at
    /// 0/s until the end), the service manager hears `STOPPING=1`, and the cause is fixed
    /// now, so a stop that comes while the run drains does not take its place (the first
    /// cause wins).
    fn note_importers_ended(&mut self) {
        if self.stop_cause.is_some() || !self.draining() {
            return;
        }
        let cause = self.stopped_by();
        self.stop_cause = Some(cause);
        self.notify.stopping();
        tracing::info!(
            "the importers ended, stopped by {}: buffers drain",
            cause.text()
        );
    }

    /// Once the run drains and every worker but the observers has ended (the drain is
    /// done), ends the observers still running: an observer holds no events, and one that
    /// never looks for the end of its buffer's stream (mimoCoRB2's often loop until their
    /// process is ended) would otherwise hold the run until `drain_stall_seconds` killed
    /// it as stuck and the run ended failed. SIGTERM first (a Python observer ends its
    /// function on it; a built-in one ends by itself at its buffer's end), SIGKILL after
    /// [`OBSERVER_GRACE`]. Either is a note in the log, not a failure.
    fn end_observers(&mut self) {
        if !self.draining() {
            return;
        }
        let workers = &self.plan.workers;
        let others_live = self.procs.iter().any(|p| {
            (p.status.is_none() || p.restart_at.is_some()) && !workers[p.worker].only_observes()
        });
        if others_live {
            return;
        }
        let now = Instant::now();
        for p in &mut self.procs {
            if p.status.is_some() || !workers[p.worker].only_observes() {
                continue;
            }
            let who = format!(
                "observer '{}' process {} (pid {})",
                workers[p.worker].name, p.index, p.pid
            );
            let pid = nix::unistd::Pid::from_raw(p.pid as i32);
            match p.told_to_end {
                None => {
                    tracing::info!(
                        "{who} still runs though every other worker has ended (the drain is \
                         done; an observer holds no events): ending it"
                    );
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    p.told_to_end = Some((now, false));
                }
                Some((since, false)) if now.duration_since(since) >= OBSERVER_GRACE => {
                    tracing::info!(
                        "{who} did not end within {} s of being told to: killing it",
                        OBSERVER_GRACE.as_secs()
                    );
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    p.told_to_end = Some((since, true));
                }
                Some(_) => {}
            }
        }
    }

    /// While the run drains: the reason to kill the workers when no event has moved through
    /// any buffer for `drain_stall_seconds` while some wait to be read (a worker stuck for
    /// good would hold the stop, and so a service's run, for ever); `None` while events
    /// move, none wait (the workers close their files), or the run is not draining.
    fn drain_stalled(&mut self, stats: &[(String, Vec<RingStats>)]) -> Option<String> {
        if !self.draining() {
            return None;
        }
        let moved: u64 = stats
            .iter()
            .flat_map(|(_, rings)| rings)
            .map(|s| {
                let taken: u64 = s.groups.iter().map(|g| g.claimed + g.released).sum();
                s.published + taken
            })
            .sum();
        let now = Instant::now();
        let quiet = match self.drain_moved {
            Some((m, since)) if m == moved => now.duration_since(since).as_secs_f64(),
            _ => {
                self.drain_moved = Some((moved, now));
                return None;
            }
        };
        if quiet < self.plan.drain_stall_seconds {
            return None;
        }
        let mut holding = Vec::new();
        for (name, rings) in stats {
            let Some(pb) = self.plan.buffer(name) else {
                continue;
            };
            for (reader, books) in reader_books(&pb.readers, rings) {
                if books.pending > 0 {
                    holding.push(format!(
                        "buffer '{name}': {} events wait for reader '{reader}'",
                        books.pending
                    ));
                }
            }
        }
        if holding.is_empty() {
            return self.stuck_at_the_end(quiet);
        }
        Some(format!(
            "the run drains but no event has moved for {} s ({}; \
             options.drain_stall_seconds): killing the workers; the unread events count as lost",
            self.plan.drain_stall_seconds,
            holding.join(", ")
        ))
    }

    /// While the run drains and no event waits to be read, yet nothing has moved for `quiet`
    /// seconds: the processes that have not ended by then are stuck after their last event
    /// (an importer in a read that never returns, an exporter in an upload at its end), and
    /// the reason to kill them. A worker that delivers its last events for a set time after
    /// the stop (`export.kafka`'s `drain_seconds`, given or not; see
    /// [`crate::run_dir::plan::WorkerPlan::delivery_seconds`]) is given that time on top.
    fn stuck_at_the_end(&self, quiet: f64) -> Option<String> {
        let delivering = self
            .plan
            .workers
            .iter()
            .map(|w| w.delivery_seconds)
            .fold(0.0, f64::max);
        if quiet < self.plan.drain_stall_seconds + delivering {
            return None;
        }
        // An observer being ended (`end_observers`) is not stuck: it has its grace.
        let live =
            |p: &&Proc| p.status.is_none() && p.restart_at.is_none() && p.told_to_end.is_none();
        // Readers wait for a live importer to end its buffers: it is the one stuck.
        let importer_lives = self.procs.iter().filter(live).any(|p| p.is_importer);
        let alive: Vec<String> = self
            .procs
            .iter()
            .filter(live)
            .filter(|p| p.is_importer || !importer_lives)
            .map(|p| {
                format!(
                    "worker '{}' process {} (pid {})",
                    self.plan.workers[p.worker].name, p.index, p.pid
                )
            })
            .collect();
        if alive.is_empty() {
            return None;
        }
        Some(format!(
            "the run drains but no event has moved for {} s and none waits to be read, while \
             {} did not end (stuck after its last event, in its own code or in a call that \
             never returns; options.drain_stall_seconds): killing the workers",
            self.plan.drain_stall_seconds,
            alive.join(", ")
        ))
    }

    /// While the run takes data: a reader that has taken no event for `worker_stall_seconds`
    /// while events wait for it, or a device importer whose loop has not come round for as
    /// long (see `stall`), is stuck for good in its own code or in a call that never returns.
    /// Under `restart: on-failure` its processes are killed, so that it is started again as
    /// after any failure; otherwise it is left running and named once in the log (an
    /// importer is alerted as its device gone: nothing else would tell).
    fn watch_stalls(&mut self, stats: &[(String, Vec<RingStats>)]) {
        use super::stall::Stuck;
        let limit = self.plan.worker_stall_seconds;
        // A drain has its own watch: `drain_stalled`.
        if self.draining() || limit <= 0.0 {
            return;
        }
        let procs = &self.procs;
        let running = |wi: usize| {
            let mine: Vec<&Proc> = procs.iter().filter(|p| p.worker == wi).collect();
            let all = !mine.is_empty()
                && mine
                    .iter()
                    .all(|p| p.status.is_none() && p.restart_at.is_none());
            all.then(|| mine.iter().map(|p| p.restarts).sum())
        };
        let (plan, run_dir) = (&self.plan, &self.plan.run_dir);
        let heartbeat = |wi: usize| {
            let notes = crate::run_dir::device_notes_path(run_dir, &plan.workers[wi].name);
            notes_heartbeat(&notes)
        };
        let looks = super::stall::looks(&self.plan, stats, running, heartbeat);
        for (wi, how) in self.stalls.check(Instant::now(), limit, &looks) {
            let w = &self.plan.workers[wi];
            let stuck = match &how {
                Stuck::Reading(waiting) => format!(
                    "worker '{}' has taken no event for {limit} s while {waiting} \
                     (options.worker_stall_seconds)",
                    w.name
                ),
                Stuck::Looping => format!(
                    "worker '{}' has not come round its loop for {limit} s: its device notes \
                     stay as they were, a call into its driver or the device's library does \
                     not return (options.worker_stall_seconds)",
                    w.name
                ),
            };
            if w.restart == Restart::OnFailure {
                self.log_and_say(&format!("{stuck}: killing it to start it again"));
                for p in self.procs.iter().filter(|p| p.worker == wi) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p.pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            } else {
                let msg = format!(
                    "{stuck}: it is left running (with `restart: on-failure` it would be \
                     killed and started again)"
                );
                self.log_and_say(&msg);
                if how == Stuck::Looping {
                    let name = w.name.clone();
                    self.alerts.raise(Kind::DeviceGone, &name, &msg);
                }
            }
        }
    }

    fn kill_all(&mut self) {
        self.aborted = true;
        self.stop_cause = Some(StopCause::Aborted);
        let mut killed = std::collections::BTreeSet::new();
        for p in &mut self.procs {
            p.restart_at = None;
            if let Some(c) = p.child.as_mut() {
                if p.status.is_none() {
                    let _ = c.kill();
                    p.status = c.wait().ok();
                    killed.insert(p.worker);
                }
            }
        }
        for wi in killed {
            self.book_output_of_the_gone(wi);
        }
    }

    /// Collects ended processes; handles failures and restarts.
    fn reap(&mut self) {
        self.start_due();
        let mut failed = Vec::new();
        let mut finished = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if p.status.is_some() {
                continue;
            }
            if let Some(c) = p.child.as_mut() {
                if let Some((cpu, core)) = cpu_and_core(p.pid) {
                    p.cpu_s = cpu;
                    p.core = core;
                }
                if let Ok(Some(st)) = c.try_wait() {
                    p.status = Some(st);
                    if p.told_to_end.is_some() {
                        tracing::info!(
                            "observer '{}' process {} ended as told ({})",
                            self.plan.workers[p.worker].name,
                            p.index,
                            describe(st)
                        );
                        finished.push(i);
                    } else if !st.success() {
                        failed.push(i);
                    } else {
                        tracing::info!(
                            "worker '{}' process {} finished",
                            self.plan.workers[p.worker].name,
                            p.index
                        );
                        finished.push(i);
                    }
                }
            }
        }
        for i in failed {
            let (wi, k, pid, st) = {
                let p = &self.procs[i];
                (p.worker, p.index, p.pid, p.status.expect("set above"))
            };
            let w = self.plan.workers[wi].clone();
            let what = format!(
                "worker '{}' process {k} (pid {pid}) {}",
                w.name,
                describe(st)
            );
            for b in &self.buffers {
                for r in &b.rings {
                    r.reclaim_dead();
                }
            }
            let now = Instant::now();
            let importer = self.procs[i].is_importer;
            if w.restart == Restart::OnFailure && importer && self.stopping {
                // It was told to stop anyway: what it published drains, nothing is restarted
                // and, since the setup accepts its failures, the run has not failed.
                self.log_and_say(&format!(
                    "{what} while the run was stopping; its events so far drain"
                ));
                self.let_go(wi, k);
                continue;
            }
            // A writer failing on a full disk would only fail again.
            let disk_full = !w.files.is_empty()
                && w.restart == Restart::OnFailure
                && self.stopping_on_a_full_disk();
            // Readers are started again while the run drains too: they finish the draining.
            let restartable =
                w.restart == Restart::OnFailure && !(importer && self.stopping) && !disk_full;
            if restartable && !restart_allowed(&mut self.procs[i].recent_restarts, now) {
                self.log_and_say(&format!(
                    "{what}; it was started again {RESTART_BURST} times within {} s: giving up",
                    RESTART_WINDOW.as_secs()
                ));
            } else if restartable {
                let delay = restart_delay(self.procs[i].recent_restarts.len());
                self.procs[i].recent_restarts.push(now + delay);
                let msg = if delay.is_zero() {
                    format!("{what}; starting it again")
                } else {
                    format!("{what}; starting it again in {:.1} s", delay.as_secs_f64())
                };
                self.log_and_say(&msg);
                self.alerts.raise(Kind::WorkerRestarted, &w.name, &msg);
                self.procs[i].restart_at = Some(now + delay);
                if !delay.is_zero() || self.start_again(i) {
                    continue;
                }
            }
            if w.only_observes() {
                // An observer (a display) holds no events and the data taking does not need
                // it: a week's acquisition does not end for it.
                let msg = format!(
                    "{what}; it only observes (it holds no events): the run goes on without \
                     it{}",
                    if w.restart == Restart::Never {
                        " (with `restart: on-failure` it would be started again)"
                    } else {
                        ""
                    }
                );
                self.log_and_say(&msg);
                self.alerts.raise(Kind::WorkerFailed, &w.name, &msg);
                self.let_go(wi, k);
                continue;
            }
            let msg = if disk_full {
                format!(
                    "{what}; not started again: the run stops for a full disk, and its new \
                     process could not write there either"
                )
            } else if w.restart == Restart::Never {
                format!(
                    "{what}; stopping the run (with `restart: on-failure`, worker '{}' would be \
                     started again instead)",
                    w.name
                )
            } else {
                format!("{what}; stopping the run")
            };
            self.log_and_say(&msg);
            self.alerts.raise(Kind::WorkerFailed, &w.name, &msg);
            self.failures.push(what);
            // Its readers no longer hold anyone up, what it wrote is closed, and the
            // importers stop so everything else drains.
            self.let_go(wi, k);
            self.stop_importers(StopCause::WorkerFailed);
        }
        // A process that ended well normally drained its sources and closed its sinks. One
        // that returned early (its source still had events) must neither hold its producer
        // up nor leave its readers waiting: the same release as after a failure, and what
        // it left unread is counted lost for its group.
        for i in finished {
            let (wi, k) = (self.procs[i].worker, self.procs[i].index);
            self.let_go(wi, k);
        }
    }

    /// Starts the failed process `i` again now. False when it could not be started; then it
    /// has failed for good (logged).
    fn start_again(&mut self, i: usize) -> bool {
        let (wi, k) = (self.procs[i].worker, self.procs[i].index);
        self.procs[i].restart_at = None;
        match self.spawn(wi, k) {
            Ok(child) => {
                let p = &mut self.procs[i];
                p.pid = child.id();
                p.child = Some(child);
                p.status = None;
                p.restarts += 1;
                true
            }
            Err(e) => {
                self.log_and_say(&format!("cannot restart: {e}"));
                false
            }
        }
    }

    /// Starts the failed processes whose back-off has passed. An importer waiting for its
    /// restart when the run is told to stop is not started again: what it published drains.
    fn start_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let Some(at) = self.procs[i].restart_at else {
                continue;
            };
            let (wi, k) = (self.procs[i].worker, self.procs[i].index);
            if self.procs[i].is_importer && self.stopping {
                self.procs[i].restart_at = None;
                self.let_go(wi, k);
                continue;
            }
            if now < at || self.start_again(i) {
                continue;
            }
            let name = self.plan.workers[wi].name.clone();
            let what = format!("worker '{name}' process {k}");
            let msg = format!("{what} could not be started again; stopping the run");
            self.log_and_say(&msg);
            self.alerts.raise(Kind::WorkerFailed, &name, &msg);
            self.failures.push(what);
            self.let_go(wi, k);
            self.stop_importers(StopCause::WorkerFailed);
        }
    }

    /// Buffer `buffer`'s plan and rings, and the consumer group of worker `worker` in it.
    fn group_in(
        &self,
        buffer: &str,
        worker: &str,
    ) -> Option<(&crate::run_dir::plan::BufferPlan, &BufferRings, usize)> {
        let b = self.plan.buffer(buffer)?;
        let br = self.buffers.iter().find(|x| x.name == buffer)?;
        Some((b, br, b.group_of(worker)?))
    }

    /// The exporter `wi`, all of whose processes are gone without a clean end (killed, failed
    /// for good, or by an abort): what its group was delivered beyond what its files hold
    /// whole (made whole now) is counted lost, so the books match the files. A worker whose
    /// process died and comes back does this itself (`Exporter::kept_from_earlier`); one
    /// that ended well wrote all it was delivered.
    fn book_output_of_the_gone(&mut self, wi: usize) {
        let w = &self.plan.workers[wi];
        let ([src], false) = (w.sources.as_slice(), w.files.is_empty()) else {
            return;
        };
        let Some((b, br, g)) = self.group_in(src, &w.name) else {
            return;
        };
        let delivered: u64 = br
            .rings
            .iter()
            .filter_map(|r| r.stats().groups.get(g).map(|x| x.read()))
            .sum();
        let Some(kept) = crate::export::recover::events_in_files(
            &self.plan.run_dir,
            &w.files,
            src,
            b.data_length,
        ) else {
            return;
        };
        if delivered <= kept {
            return;
        }
        let mut unwritten = delivered - kept;
        tracing::warn!(
            "worker '{}': {unwritten} events it was delivered are not in its files ({}: {kept} \
             events; it ended before writing them); counted lost",
            w.name,
            w.files.join(", ")
        );
        for r in &br.rings {
            unwritten -= r.count_unused(g, unwritten);
        }
    }

    /// Process `k` of worker `wi` is gone for good: when it was the worker's last, its
    /// consumer groups are detached (the producers stop waiting for them and what they did
    /// not read is counted lost), and the ring it wrote is closed so its readers drain.
    fn let_go(&mut self, wi: usize, k: usize) {
        let alive_siblings = self
            .procs
            .iter()
            .any(|p| p.worker == wi && (p.status.is_none() || p.restart_at.is_some()));
        let failed = self
            .procs
            .iter()
            .any(|p| p.worker == wi && p.status.is_some_and(|s| !s.success()));
        if !alive_siblings && failed {
            self.book_output_of_the_gone(wi);
        }
        let w = &self.plan.workers[wi];
        if !alive_siblings {
            for src in w.sources.iter() {
                let Some((_, br, g)) = self.group_in(src, &w.name) else {
                    continue;
                };
                let mut unread = 0;
                for r in &br.rings {
                    r.detach_group(g);
                    let st = r.stats();
                    unread += st.published - st.groups.get(g).map_or(0, |x| x.released);
                }
                if unread > 0 || !br.rings.iter().all(|r| r.stats().closed) {
                    tracing::warn!(
                        "worker '{}' ended before the end of '{src}': {unread} events it \
                         did not read so far are counted lost for it, and so is every later \
                         one; the producer no longer waits for it",
                        w.name
                    );
                }
            }
        }
        for sink in &w.sinks {
            if let Some(br) = self.buffers.iter().find(|x| &x.name == sink) {
                if let Some(r) = br.rings.get(k) {
                    r.close();
                }
            }
        }
    }

    fn ring_stats(&self) -> Vec<(String, Vec<RingStats>)> {
        self.buffers
            .iter()
            .map(|b| (b.name.clone(), b.rings.iter().map(|r| r.stats()).collect()))
            .collect()
    }

    /// Appends one line to stats.jsonl and returns it. The last line of a run (`ended`)
    /// carries the run's means (rate, dead time) instead of those of its last interval, and
    /// says `"ended": true`.
    fn write_stats(&mut self, ended: bool) -> Snapshot {
        let snapshot = self.snapshot(ended);
        let line = serde_json::to_string(&snapshot).unwrap_or_default();
        self.stats_file.append(&line);
        snapshot
    }

    /// The statistics snapshot now (a line of stats.jsonl); the last one of a run (`ended`)
    /// carries the run's mean rates and dead time.
    fn snapshot(&mut self, ended: bool) -> Snapshot {
        let now = Instant::now();
        let t = self.start.elapsed().as_secs_f64();
        let stats = self.ring_stats();
        let mut cur = BTreeMap::new();
        let mut buffers = BTreeMap::new();
        for (name, rings) in &stats {
            let Totals {
                published,
                lost,
                fill,
            } = Totals::of(rings);
            let blocked: u64 = rings.iter().map(|s| s.blocked_ns).sum();
            let (rate, dead) = match &self.last_stats {
                _ if ended => (
                    published as f64 / t.max(1e-9),
                    dead_fraction(blocked, t, rings.len()),
                ),
                Some((t0, prev)) => {
                    let dt = now.duration_since(*t0).as_secs_f64().max(1e-9);
                    let (p0, b0) = prev.get(name).copied().unwrap_or((0, 0));
                    (
                        published.saturating_sub(p0) as f64 / dt,
                        dead_fraction(blocked.saturating_sub(b0), dt, rings.len()),
                    )
                }
                None => (0.0, 0.0),
            };
            cur.insert(name.clone(), (published, blocked));
            let books = self
                .plan
                .buffer(name)
                .map(|pb| reader_books(&pb.readers, rings))
                .unwrap_or_default();
            let events_out = books
                .iter()
                .map(|(r, b)| (r.clone(), b.delivered))
                .collect();
            buffers.insert(
                name.clone(),
                BufferStats {
                    events_in: published,
                    produced: published + lost,
                    events_out,
                    readers: books,
                    rate_hz: rate,
                    fill,
                    deadtime: dead,
                    deadtime_total_s: blocked as f64 / 1e9,
                    lost,
                    closed: rings.iter().all(|s| s.closed),
                },
            );
        }
        let mut workers = BTreeMap::new();
        // What turned on or off, for the terminal once the loop is done.
        let mut said = Vec::new();
        for (wi, w) in self.plan.workers.iter().enumerate() {
            let ps: Vec<&Proc> = self.procs.iter().filter(|p| p.worker == wi).collect();
            let live: Vec<&&Proc> = ps.iter().filter(|p| p.status.is_none()).collect();
            let alive = live.len();
            let waiting = ps.iter().any(|p| p.restart_at.is_some());
            let failed = ps
                .iter()
                .any(|p| p.restart_at.is_none() && p.status.is_some_and(|s| !s.success()));
            let state = if failed {
                "failed"
            } else if waiting {
                "restarting"
            } else if alive > 0 {
                "running"
            } else if ps.is_empty() {
                "not started"
            } else {
                "finished"
            };
            let events: u64 = if w.sources.is_empty() {
                w.sinks
                    .first()
                    .and_then(|s| stats.iter().find(|(n, _)| n == s))
                    .map_or(0, |(_, r)| r.iter().map(|x| x.published).sum())
            } else {
                let src = &w.sources[0];
                let g = self.plan.buffer(src).and_then(|b| b.group_of(&w.name));
                stats.iter().find(|(n, _)| n == src).map_or(0, |(_, r)| {
                    r.iter()
                        .map(|x| g.and_then(|g| x.groups.get(g)).map_or(0, |x| x.released))
                        .sum()
                })
            };
            // Only importers write device notes: no file lookups for the others.
            let device = if ps.iter().any(|p| p.is_importer) {
                device_state(&self.plan.run_dir, &w.name)
            } else {
                None
            };
            let kafka = (w.function == KAFKA_EXPORT)
                .then(|| {
                    crate::run_dir::worker_kafka_counts(&self.plan.run_dir, &w.name, w.processes)
                })
                .flatten();
            self.alerts.condition(
                Kind::DeviceGone,
                &w.name,
                device.is_some_and(|d| !d.connected),
                &format!("worker '{}': its device is disconnected", w.name),
            );
            let no_topic = kafka.as_ref().and_then(|k| k.no_topic.as_deref());
            let text = match no_topic {
                Some(t) => format!(
                    "worker '{}': {t}: create it; its events wait in its spool meanwhile",
                    w.name
                ),
                None => format!("worker '{}': its Kafka topic exists now", w.name),
            };
            if self
                .alerts
                .condition(Kind::KafkaTopicMissing, &w.name, no_topic.is_some(), &text)
            {
                said.push(text);
            }
            workers.insert(
                w.name.clone(),
                WorkerStats {
                    processes: alive as u64,
                    events,
                    cpu_s: ps.iter().map(|p| p.cpu_s).sum::<f64>(),
                    state: state.to_string(),
                    restarts: ps.iter().map(|p| p.restarts).sum::<u32>(),
                    cores: live.iter().filter_map(|p| p.core).collect(),
                    pinned: live
                        .iter()
                        .flat_map(|p| pinned_cores(p.pid))
                        .collect::<std::collections::BTreeSet<u32>>()
                        .into_iter()
                        .collect(),
                    device,
                    kafka,
                    observer: !w.observes.is_empty(),
                },
            );
        }
        for text in said {
            self.log_and_say(&text);
        }
        self.last_stats = Some((now, cur));
        Snapshot {
            t,
            time: crate::clock::utc_now(),
            stopping: self.draining() && !ended,
            stopped_by: self.stop_cause,
            // What a clean stop waits for besides draining: files being compressed.
            waiting_for: if self.draining() && !ended {
                crate::export::hdf5::Compressing::in_dir(&self.plan.run_dir)
                    .iter()
                    .map(|c| c.to_string())
                    .collect()
            } else {
                Vec::new()
            },
            ended,
            paused: self.paused_since.is_some(),
            paused_s: self.paused_seconds(),
            max_events: self.plan.max_events,
            max_seconds: self.plan.max_seconds,
            buffers,
            workers,
        }
    }

    fn progress_line(&mut self) -> String {
        let t = self.start.elapsed().as_secs_f64();
        let mut parts = vec![format!("{t:7.1} s")];
        // The rate is taken against the previous progress line, not against the stats
        // snapshot (which may have been written a moment ago).
        let prev = self.last_progress.take();
        let mut now_counts = BTreeMap::new();
        for (name, rings) in self.ring_stats() {
            let Totals {
                published,
                lost,
                fill,
            } = Totals::of(&rings);
            let rate = prev
                .as_ref()
                .and_then(|(t0, m)| {
                    m.get(&name).map(|p0| {
                        published.saturating_sub(*p0) as f64 / t0.elapsed().as_secs_f64().max(1e-3)
                    })
                })
                .unwrap_or(0.0);
            now_counts.insert(name.clone(), published);
            let mut s = format!(
                "{name}: {} ev ({}/s) fill {:.0}%",
                human(published as f64),
                human(rate),
                fill * 100.0
            );
            if lost > 0 {
                s.push_str(&format!(" LOST {lost}"));
            }
            parts.push(s);
        }
        if let Some(max) = self.plan.max_seconds {
            parts.push(format!("{:.0}% of {max} s", (t / max * 100.0).min(100.0)));
        }
        if let Some(n) = self.plan.max_events {
            // Per importer: what its limit counts (published plus lost in its first sink),
            // and whether all its processes ended.
            let taken: Vec<(u64, bool)> = (self.plan.workers.iter().enumerate())
                .filter(|(_, w)| w.is_importer())
                .map(|(wi, w)| {
                    let took = (w.sinks.first())
                        .and_then(|s| self.buffers.iter().find(|b| &b.name == s))
                        .map_or(0, |b| {
                            b.rings
                                .iter()
                                .map(|r| r.stats())
                                .map(|s| s.published + s.lost)
                                .sum()
                        });
                    // Not before it started: a worker without processes yet holds the run.
                    let mut procs = self.procs.iter().filter(|p| p.worker == wi).peekable();
                    let ended = procs.peek().is_some()
                        && procs.all(|p| p.status.is_some() && p.restart_at.is_none());
                    (took, ended)
                })
                .collect();
            parts.push(events_progress_text(n, t, self.paused_seconds(), &taken));
        }
        if self.draining() {
            // What a clean stop waits for: the buffers, then the compression of closed files.
            let packing = crate::export::hdf5::Compressing::in_dir(&self.plan.run_dir);
            parts.extend(packing.iter().map(|c| format!("draining: {c}")));
            if packing.is_empty() {
                parts.push("draining".into());
            }
        }
        self.last_progress = Some((Instant::now(), now_counts));
        parts.join(" | ")
    }

    /// Tells the log when a buffer has been full for a while, when it has room again, and
    /// (at most every 10 s per buffer) how many events it lost.
    fn watch_buffers(&mut self, stats: &[(String, Vec<RingStats>)]) {
        for (name, rings) in stats {
            let alarm = self.alarms.entry(name.clone()).or_default();
            let closed = rings.iter().all(|s| s.closed);
            let full = rings
                .iter()
                .any(|s| s.filled as f64 >= s.slot_count as f64 * FULL_LEVEL);
            let slowest = self.plan.buffer(name).and_then(|pb| {
                reader_books(&pb.readers, rings)
                    .into_iter()
                    .filter(|(_, b)| b.pending > 0)
                    .max_by_key(|(_, b)| b.pending)
                    .map(|(r, _)| r)
            });
            // Said at the end of both warnings below.
            let slowest = slowest
                .map(|r| format!("; the slowest reader is '{r}'"))
                .unwrap_or_default();
            let policy = self
                .buffers
                .iter()
                .find(|b| b.name == *name)
                .and_then(|b| b.rings.first())
                .map(|r| r.policy());
            match (&mut alarm.full_since, full && !closed) {
                (None, true) => alarm.full_since = Some((Instant::now(), false)),
                (Some((since, told)), true) => {
                    if !*told && since.elapsed().as_secs_f64() >= FULL_WARNING_S {
                        *told = true;
                        let msg = format!(
                            "buffer '{name}' has been full for {:.0} s: {}{}",
                            since.elapsed().as_secs_f64(),
                            if policy == Some(Policy::Drop) {
                                "new events are lost (policy: drop)"
                            } else {
                                "its writer waits (policy: block; booked as dead time)"
                            },
                            slowest
                        );
                        tracing::warn!("{msg}");
                        self.alerts.raise(Kind::BufferFull, name, &msg);
                    }
                }
                (Some((since, told)), false) => {
                    if *told {
                        tracing::info!(
                            "buffer '{name}' has room again after {:.1} s full",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    alarm.full_since = None;
                }
                (None, false) => {}
            }
            let lost: u64 = rings.iter().map(|s| s.lost).sum();
            let due = alarm
                .lost_logged_at
                .is_none_or(|t| t.elapsed().as_secs_f64() >= LOST_LOG_INTERVAL_S);
            if lost > alarm.lost_logged && due {
                let msg = format!(
                    "buffer '{name}': {} events lost {} ({lost} in all): the ring was full \
                     under policy: drop{}",
                    lost - alarm.lost_logged,
                    alarm
                        .lost_logged_at
                        .map_or("so far".to_string(), |t| format!(
                            "in the last {:.0} s",
                            t.elapsed().as_secs_f64()
                        )),
                    slowest
                );
                tracing::warn!("{msg}");
                self.alerts.raise(Kind::EventsLost, name, &msg);
                alarm.lost_logged = lost;
                alarm.lost_logged_at = Some(Instant::now());
            }
            // Lost for one reader alone: its worker ended, a process of it died, or an
            // exporter could not write or deliver them (a full disk, a Kafka topic missing
            // at the end) (the ring's own losses are told above).
            let Some(pb) = self.plan.buffer(name) else {
                continue;
            };
            for (reader, books) in reader_books(&pb.readers, rings) {
                let own = books.lost.saturating_sub(lost);
                let (told, at) = alarm.reader_lost_logged.entry(reader.clone()).or_default();
                let due = at.is_none_or(|t| t.elapsed().as_secs_f64() >= LOST_LOG_INTERVAL_S);
                if own > *told && due {
                    let msg = format!(
                        "buffer '{name}': {} events lost for reader '{reader}' ({own} in all): \
                         its worker ended or a process of it died before reading them, or it \
                         could not write or deliver them (the log says which)",
                        own - *told
                    );
                    tracing::warn!("{msg}");
                    self.alerts.raise(Kind::EventsLost, name, &msg);
                    (*told, *at) = (own, Some(Instant::now()));
                }
            }
        }
    }

    /// Seconds the importers have been paused in all, a pause going on included.
    fn paused_seconds(&self) -> f64 {
        let now = crate::clock::now_ns();
        let going_on = self
            .paused_since
            .map_or(0, |t| now.saturating_sub(t.monotonic_ns));
        (self.paused_before_ns + going_on) as f64 / 1e9
    }

    /// Runs the alert command for the run's end (`run_ended`) unless a person stopped it,
    /// then lets every command still running finish within its grace.
    fn alert_the_end(&mut self, summary: &RunSummary) {
        use super::alert::{END_ALERT_GRACE, END_GRACE};
        // Ctrl-C and the stop buttons are a person watching; SIGTERM (a shutdown, a service
        // stop) and SIGHUP (a dropped ssh session) are alerted: nobody may have seen them.
        let by_a_person = matches!(summary.stopped_by, StopCause::Signal | StopCause::Monitor);
        let mut grace = END_GRACE;
        if !by_a_person {
            let events: Vec<String> = summary
                .events
                .iter()
                .map(|(b, n)| match summary.lost.get(b).copied().unwrap_or(0) {
                    0 => format!("{b} {n}"),
                    lost => format!("{b} {n} ({lost} lost)"),
                })
                .collect();
            let mut text = format!(
                "the run {} after {:.1} s, stopped by {}; events: {}",
                if summary.exit_code == 0 {
                    "finished"
                } else {
                    "FAILED"
                },
                summary.seconds,
                summary.stopped_by.text(),
                events.join(", ")
            );
            if !summary.failures.is_empty() {
                text.push_str(&format!("; failures: {}", summary.failures.join("; ")));
            }
            let dir = self.plan.run_dir.display().to_string();
            if self.alerts.raise(Kind::RunEnded, &dir, &text) {
                grace = END_ALERT_GRACE;
            }
        }
        self.alerts.finish(grace);
    }

    /// Why the run stops or stopped: the first stop's cause, or else (the importers ended by
    /// themselves) a silent device when an importer's notes say its device is silent (it
    /// ended for that: `on_silence: stop`), `max_events` when every importer took that many,
    /// its sources otherwise.
    fn stopped_by(&self) -> StopCause {
        if let Some(c) = self.stop_cause {
            return c;
        }
        let importers = || self.plan.workers.iter().filter(|w| w.is_importer());
        let silent = |w: &crate::run_dir::plan::WorkerPlan| {
            device_state(&self.plan.run_dir, &w.name).is_some_and(|d| d.silent)
        };
        if importers().any(silent) {
            return StopCause::DeviceSilent;
        }
        let took = |w: &crate::run_dir::plan::WorkerPlan| {
            let sink = w.sinks.first()?;
            let b = self.buffers.iter().find(|b| &b.name == sink)?;
            Some(
                b.rings
                    .iter()
                    .map(|r| r.stats())
                    .map(|s| s.published + s.lost)
                    .sum::<u64>(),
            )
        };
        match self.plan.max_events {
            Some(n) if importers().all(|w| took(w).is_some_and(|t| t >= n)) => StopCause::MaxEvents,
            _ => StopCause::SourcesEnded,
        }
    }

    fn summary(&self) -> RunSummary {
        let mut events = BTreeMap::new();
        let mut lost = BTreeMap::new();
        let mut readers = BTreeMap::new();
        for (name, rings) in self.ring_stats() {
            events.insert(name.clone(), rings.iter().map(|s| s.published).sum());
            lost.insert(name.clone(), rings.iter().map(|s| s.lost).sum());
            let Some(pb) = self.plan.buffer(&name) else {
                continue;
            };
            let mut books = reader_books(&pb.readers, &rings);
            for (reader, b) in books.iter_mut() {
                if b.pending > 0 {
                    tracing::warn!(
                        "buffer '{name}': {} events were never read by '{reader}' (the run \
                         ended first); counted lost",
                        b.pending
                    );
                    b.lost += std::mem::take(&mut b.pending);
                }
            }
            readers.insert(name, books);
        }
        RunSummary {
            exit_code: i32::from(!self.failures.is_empty()),
            run_dir: self.plan.run_dir.clone(),
            seconds: self.start.elapsed().as_secs_f64(),
            paused_seconds: self.paused_seconds(),
            stop_seconds: self
                .stopped_at
                .filter(|_| !self.aborted)
                .map(|t| t.elapsed().as_secs_f64()),
            events,
            lost,
            readers,
            stopped_by: self.stopped_by(),
            failures: self.failures.clone(),
            restarts: self.plan.workers.iter().enumerate().fold(
                BTreeMap::new(),
                |mut m, (wi, w)| {
                    let n: u32 = self
                        .procs
                        .iter()
                        .filter(|p| p.worker == wi)
                        .map(|p| p.restarts)
                        .sum();
                    if n > 0 {
                        m.insert(w.name.clone(), n);
                    }
                    m
                },
            ),
            kafka: self
                .plan
                .workers
                .iter()
                .filter(|w| w.function == KAFKA_EXPORT)
                .filter_map(|w| {
                    crate::run_dir::worker_kafka_counts(&self.plan.run_dir, &w.name, w.processes)
                        .map(|c| (w.name.clone(), c))
                })
                .collect(),
            devices: self
                .plan
                .workers
                .iter()
                .filter(|w| w.is_importer())
                .filter_map(|w| {
                    device_state(&self.plan.run_dir, &w.name).map(|d| (w.name.clone(), d))
                })
                .collect(),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Never leave a worker behind.
        for p in &mut self.procs {
            if p.status.is_none() {
                if let Some(c) = p.child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        // Every worker has ended: what they printed last reaches the terminal's queue
        // before the run's last lines.
        if let Some(prints) = self.prints.take() {
            prints.close(Duration::from_secs(2));
        }
    }
}

/// The books of each reader (consumer group, in plan order) of a buffer with these rings.
pub fn reader_books(readers: &[String], rings: &[RingStats]) -> BTreeMap<String, ReaderBooks> {
    readers
        .iter()
        .enumerate()
        .map(|(g, reader)| {
            let mut b = ReaderBooks::default();
            for s in rings {
                let Some(gs) = s.groups.get(g) else { continue };
                let unread = s.published.saturating_sub(gs.released);
                b.delivered += gs.read();
                b.lost += s.lost + gs.abandoned;
                if gs.active {
                    b.pending += unread;
                } else {
                    b.lost += unread;
                }
            }
            (reader.clone(), b)
        })
        .collect()
}

/// The progress line's part for `max_events` = `n` after `t` s, `paused_s` of them paused,
/// from what each importer took and whether it ended.
fn events_progress_text(n: u64, t: f64, paused_s: f64, taken: &[(u64, bool)]) -> String {
    use crate::run_dir::snapshot::{events_fraction, seconds_left};
    let taken = taken.iter().map(|&(took, ended)| (!ended).then_some(took));
    let frac = events_fraction(n, taken).unwrap_or(0.0);
    format!(
        "{:.0}% of {} events, {} s left",
        (frac * 100.0).floor(),
        human(n as f64),
        seconds_left(frac, t - paused_s).map_or("?".into(), |s| format!("{s:.0}"))
    )
}

/// 1234567 → "1.23 M".
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tester's stats line of a run whose consumer was stopped (SIGSTOP): dead time
    /// 1.192, 0.602 s booked in 0.506 s. A fraction is at most 1; a half is a half.
    #[test]
    fn dead_time_is_at_most_the_whole_span() {
        assert_eq!(dead_fraction(602_000_000, 0.506, 1), 1.0);
        assert_eq!(dead_fraction(500_000_000, 2.0, 2), 0.125);
        assert_eq!(dead_fraction(0, 0.0, 0), 0.0);
    }

    /// `max_events` is per importer and the run ends with the slowest: with a fast importer
    /// done and one at 100 Hz 20 events in, the line said "50% of 1001 events, 0 s left"
    /// (the mean over importers) while the run needed 10 s more.
    #[test]
    fn events_progress_follows_the_slowest_importer() {
        let text = |t, paused, taken: &[(u64, bool)]| events_progress_text(1001, t, paused, taken);
        assert_eq!(
            text(0.2, 0.0, &[(1001, true), (20, false)]),
            "1% of 1001 events, 10 s left"
        );
        assert_eq!(
            text(5.0, 0.0, &[(1001, true), (501, false)]),
            "50% of 1001 events, 5 s left"
        );
        // Paused for 10 of 20 s: the rate is over the 10 s it ran.
        assert_eq!(
            text(20.0, 10.0, &[(1001, true), (501, false)]),
            "50% of 1001 events, 10 s left"
        );
        assert_eq!(text(1.0, 0.0, &[(0, false)]), "0% of 1001 events, ? s left");
    }

    /// A worker's CPU time is read finer than /proc's clock ticks (10 ms), so a per-event
    /// CPU figure over a short run (`bench python`) is not a multiple of a tick.
    #[test]
    fn cpu_time_is_finer_than_a_clock_tick() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (cpu, _) = cpu_and_core(child.id()).unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        let ticks = cpu * 100.0;
        assert!(cpu > 0.0, "{cpu}");
        assert!(
            (ticks - ticks.round()).abs() > 1e-9,
            "{cpu} s is whole ticks"
        );
    }

    /// Restarts are limited by their rate, not counted over the whole run: a worker that
    /// fails once an hour for a week is always started again.
    #[test]
    fn restarts_are_limited_per_window_not_per_run() {
        let t0 = Instant::now();
        let mut recent = Vec::new();
        for k in 0..RESTART_BURST {
            let now = t0 + Duration::from_secs(k as u64);
            assert!(restart_allowed(&mut recent, now));
            recent.push(now);
        }
        assert!(!restart_allowed(&mut recent, t0 + Duration::from_secs(10)));
        // An hour apart, a thousand failures are all restarted.
        let mut recent = Vec::new();
        for k in 0..1000u64 {
            let now = t0 + Duration::from_secs(3600 * k);
            assert!(restart_allowed(&mut recent, now), "restart {k}");
            recent.push(now);
        }
        assert!(recent.len() <= 1);
    }

    /// A worker that keeps failing waits longer each time, so a passing cause outside it
    /// gets time to pass; a first failure is restarted at once.
    #[test]
    fn restart_back_off_grows_and_is_capped() {
        let d: Vec<u64> = (0..8)
            .map(|n| restart_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(d, [0, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        let budget: Duration = (0..RESTART_BURST).map(restart_delay).sum();
        assert!(
            budget < RESTART_WINDOW,
            "the budget is spent within one window"
        );
    }
}
