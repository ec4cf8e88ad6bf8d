//! A worker process: attaches to its rings, builds its function and runs its template's
//! loop until its sources end (or, for an Importer, until it is told to stop or its source
//! is exhausted).
//!
//! Guarantees: every event taken from a source is released exactly once; every event a
//! Filter or Processor emits is published or, under `drop`, counted lost; every ring this
//! process produces is closed when it ends, so downstream workers drain and finish. Nothing
//! in the loops allocates. A SIGTERM or SIGINT asks an Importer to stop; other workers keep
//! going until their sources end. If the supervisor dies, the kernel sends SIGTERM
//! (PR_SET_PDEATHSIG), the pipeline drains on its own, and the last worker out removes the
//! ring files.

mod parent;
pub mod realtime;

pub use parent::{child_ends_with_parent, signal_on_parent_death};

use crate::dtype::{Dtype, Metadata};
use crate::ring::{wait_any, Next, Policy, Producer, Reader, Ring, RingObserver};
use crate::run_dir::plan::{BufferPlan, Plan, WorkerPlan};
use crate::worker::{Build, Registry};
use crate::worker::{BuildContext, Emit, EventMut, EventRef, Produced, SinkMask, WorkerError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
/// The latest pause state the supervisor sent: `(sequence << 1) | paused`. Requests carry
/// their sequence number, so whichever order their signals are handled in (Linux runs the
/// handlers of signals that were pending together in reverse), the latest one wins.
static PAUSE: AtomicU64 = AtomicU64::new(0);

/// The supervisor's pid, in a worker process (0 until known).
static SUPERVISOR: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    let supervisor = SUPERVISOR.load(Ordering::SeqCst);
    // SAFETY: getppid, open, dup2 and close are async-signal-safe; the path is a constant
    // C string. A worker's stdout and stderr are a pipe the supervisor reads
    // (`engine::terminal::Prints`); once the supervisor is gone nothing reads it, and what
    // the worker prints while it drains would fail (a Python `print` raising
    // BrokenPipeError) or, in a pipe a leftover process still holds, wait for ever. The
    // kernel sends this signal again each time the worker is handed to a new parent, the
    // last time when the supervisor's last thread has gone and `getppid` names another.
    unsafe {
        if supervisor > 0 && libc::getppid() != supervisor {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null >= 0 {
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    }
}

extern "C" fn on_pause_state(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo; `si_value` reads the
    // value sigqueue sent (the supervisor always sends one).
    let v = unsafe { (*info).si_value().sival_ptr } as u64;
    PAUSE.fetch_max(v, Ordering::SeqCst);
}

/// The signal that carries a pause state to an importer (a real-time signal: they queue,
/// so a pause and a resume sent close together both arrive, each with its value).
pub fn pause_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// The value of pause request number `sequence` (counted from 1 by the supervisor).
pub fn pause_state(sequence: u64, paused: bool) -> u64 {
    (sequence << 1) | u64::from(paused)
}

/// True while the supervisor has paused this (importer) process: it keeps taking data from
/// its source, so the device does not stall, but publishes nothing (mimoCoRB2's "pause").
pub fn paused() -> bool {
    PAUSE.load(Ordering::Relaxed) & 1 == 1
}

/// True once this process was asked to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// In the environment of a worker process started while the run is paused: the pause state
/// ([`pause_state`]) it starts in.
pub const PAUSED_VAR: &str = "DAQ_PAUSED";

pub(crate) const POLL: Duration = Duration::from_millis(100);

/// How a worker process ended.
#[derive(Debug)]
pub enum Outcome {
    /// Ran to the end.
    Finished,
    /// Failed; the message says why.
    Failed(String),
}

/// Why one worker process could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The plan lacks a buffer the worker names (a plan edited or from another version).
    #[error("{role} '{buffer}' is not in the plan")]
    NotInPlan {
        /// "sink", "source", "buffer" or "observed buffer".
        role: &'static str,
        /// The buffer.
        buffer: String,
    },
    /// The plan has fewer rings for a sink than the worker has processes.
    #[error("sink '{sink}' has no ring for process {process}")]
    NoRing {
        /// The sink.
        sink: String,
        /// The process.
        process: usize,
    },
    /// The plan does not list the worker among a buffer's readers.
    #[error("'{worker}' is not a reader of '{buffer}'")]
    NotAReader {
        /// The worker.
        worker: String,
        /// The buffer.
        buffer: String,
    },
    /// The worker has no buffer of the kind its template needs.
    #[error("{0}")]
    Missing(&'static str),
    /// The plan names a function this binary does not have.
    #[error("unknown function '{0}'")]
    UnknownFunction(String),
    /// A ring could not be attached.
    #[error(transparent)]
    Attach(#[from] crate::ring::AttachError),
    /// A ring refused the role (reader, producer) the plan gives this process.
    #[error(transparent)]
    Role(#[from] crate::ring::RoleError),
    /// An observer's copy buffer does not fit the ring's events.
    #[error(transparent)]
    Observe(#[from] crate::ring::WrongSize),
    /// The worker's function failed.
    #[error(transparent)]
    Worker(Box<WorkerError>),
    /// An importer's function failed while writing an event into its sink.
    #[error("writing '{sink}': {source}")]
    Writing {
        /// The sink.
        sink: String,
        /// What failed.
        #[source]
        source: Box<WorkerError>,
    },
}

impl From<WorkerError> for ProcessError {
    fn from(e: WorkerError) -> Self {
        ProcessError::Worker(Box::new(e))
    }
}

fn install_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: `on_stop` only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
    // SAFETY: a zeroed sigaction is a valid starting value; the handler only reads its
    // siginfo and does an atomic fetch_max, which is async-signal-safe.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_pause_state as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(pause_signal(), &act, std::ptr::null_mut());
    }
    // A process started while the run is paused (a restarted importer) starts paused: the
    // supervisor puts the state in its environment. Set before the signal is unblocked; a
    // later request has a higher sequence number and wins.
    if let Some(v) = std::env::var(PAUSED_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        PAUSE.fetch_max(v, Ordering::SeqCst);
    }
    // The supervisor starts workers with the signal blocked (see its `spawn`): requests
    // sent before the handler was in place are delivered now.
    // SAFETY: sigemptyset/sigaddset on a local set and pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, pause_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Set (to "1") by the supervisor for a worker process pinned to a core no other process
/// of the run is pinned to.
pub const CPU_ALONE_ENV: &str = "DAQ_CPU_ALONE";

/// This process runs pinned on a core of its own: its readers spin before they sleep
/// ([`crate::ring::Reader::spin_on_own_core`]).
static SPIN_ON_OWN_CORE: AtomicBool = AtomicBool::new(false);

/// Runs a worker whose `file:` is a Python file (the embedded interpreter sits above this
/// module, so it is handed in: `crate::python::run_worker`).
pub type PythonWorker = fn(&Plan, &WorkerPlan, usize) -> Outcome;

/// Entry point of a worker process (`daq-engine __worker PLAN WORKER PROCESS`).
pub fn run(
    plan_path: &Path,
    worker: &str,
    process: usize,
    registry: &Registry,
    python: PythonWorker,
) -> i32 {
    let supervisor = std::env::var("DAQ_SUPERVISOR_PID")
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    if let Some(pid) = supervisor {
        SUPERVISOR.store(pid, Ordering::SeqCst);
    }
    install_signals();
    // Only fails for an invalid signal number.
    let _ = signal_on_parent_death(libc::SIGTERM);
    if let Some(pid) = supervisor {
        if orphaned(pid, nix::unistd::getppid().as_raw()) {
            STOP.store(true, Ordering::SeqCst);
        }
    }
    let mut refusals = Vec::new();
    if let Some(core) = std::env::var("DAQ_CPU").ok().and_then(|s| s.parse().ok()) {
        match realtime::pin(core) {
            Ok(()) => {
                let alone = std::env::var(CPU_ALONE_ENV).is_ok_and(|v| v == "1");
                SPIN_ON_OWN_CORE.store(alone, Ordering::SeqCst);
            }
            Err(e) => refusals.push(e),
        }
    }
    if let Some(p) = std::env::var("DAQ_PRIORITY")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        refusals.extend(realtime::fifo(p).err());
    }
    refusals.extend(realtime::lock_memory().err());
    for r in refusals {
        tracing::warn!("worker '{worker}' process {process}: {r}");
    }
    let plan = match Plan::load(plan_path) {
        Ok(p) => p,
        Err(e) => {
            say(format_args!(
                "daq-engine worker {worker}: cannot read {}: {e}",
                plan_path.display()
            ));
            return 1;
        }
    };
    // Also when the worker panics (the unwinding drops it): the last worker out of an
    // orphaned run leaves no ring files behind, whatever ended it.
    let _cleanup = OrphanCleanup {
        plan: &plan,
        supervisor,
    };
    let outcome = match plan.worker(worker) {
        Some(w) if crate::worker::is_python(w.file.as_deref()) => python(&plan, w, process),
        Some(w) => match registry.with_libraries(w.file.as_deref()) {
            Ok(r) => run_worker(&plan, w, process, &r),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        None => Outcome::Failed(format!("no worker '{worker}' in the plan")),
    };
    match outcome {
        Outcome::Finished => 0,
        Outcome::Failed(msg) => {
            tracing::error!("worker '{worker}' process {process}: {msg}");
            say(format_args!(
                "daq-engine: worker '{worker}' process {process}: {msg}"
            ));
            1
        }
    }
}

/// Writes `line` to stderr; unlike `eprintln!`, never panics when it cannot (the
/// supervisor that read it is gone).
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// True when `supervisor` will not clean up after this worker, whose parent is `parent`: it is
/// no longer the parent, or it is exiting. The kernel sends a worker the parent-death signal
/// when the supervisor's *thread* that started it ends, but reparents it only once the last
/// of the supervisor's threads is gone; in between, `getppid` still names the dying
/// supervisor. A supervisor killed on a loaded machine can take that long to die that its
/// workers drain and exit first: each then thought the supervisor alive and left the ring
/// files (`engine_run::workers_exit_and_clean_up_when_the_supervisor_is_killed`, a few
/// loaded runs in many). An exiting main thread (`PF_EXITING`, or a zombie leader) tells.
fn orphaned(supervisor: i32, parent: i32) -> bool {
    parent != supervisor || exiting(supervisor)
}

/// True when process `pid` is gone (or a zombie, as for [`crate::shm::pid_alive`]) or its
/// main thread is exiting.
fn exiting(pid: i32) -> bool {
    use crate::procfs::Stat;
    let Ok(pid) = u32::try_from(pid) else {
        return true;
    };
    // Gone, a zombie, or its flags cut off: as gone.
    Stat::read(pid).is_none_or(|s| s.ended() || s.flags.is_none_or(|f| f & Stat::PF_EXITING != 0))
}

/// Removes the run's ring files when it is dropped in a worker whose supervisor is gone:
/// whoever ends last leaves none behind (a live supervisor removes them itself).
struct OrphanCleanup<'a> {
    plan: &'a Plan,
    supervisor: Option<i32>,
}

impl Drop for OrphanCleanup<'_> {
    fn drop(&mut self) {
        let orphaned = self
            .supervisor
            .is_some_and(|pid| orphaned(pid, nix::unistd::getppid().as_raw()));
        if orphaned {
            for b in &self.plan.buffers {
                for r in &b.rings {
                    let _ = std::fs::remove_file(r);
                }
            }
        }
    }
}

pub(crate) struct Source {
    pub(crate) readers: Vec<Reader>,
    /// The consumer group this worker is in each of the rings.
    group: usize,
    ended: Vec<bool>,
    next: usize,
    pub(crate) dtype: Dtype,
}

enum Step {
    Did,
    Idle,
    End,
}

/// What [`Source::take`] found.
pub(crate) enum Taken {
    /// An event of ring `.0`, kept until it goes back through that ring's reader.
    Event(usize, crate::ring::Kept),
    /// Nothing within the timeout.
    Idle,
    /// Every ring ended.
    End,
}

impl Source {
    /// Events this worker's group has read from every ring so far (in all its processes'
    /// lives): released, less those released unread.
    fn delivered(&self) -> u64 {
        self.readers
            .iter()
            .filter_map(|r| r.ring().stats().groups.get(self.group).map(|g| g.read()))
            .sum()
    }

    /// Counts `n` events this group was delivered as lost (released unread), spread over
    /// its rings as far as each delivered them.
    fn count_unused(&mut self, mut n: u64) {
        for r in &mut self.readers {
            n -= r.count_unused(n);
        }
    }

    pub(crate) fn attach(
        buffer: &BufferPlan,
        group: usize,
        member: usize,
    ) -> Result<Source, ProcessError> {
        let dtype = buffer.dtype();
        let mut readers = Vec::new();
        for path in &buffer.rings {
            let ring = Ring::attach(path, Some(&dtype), Some(buffer.data_length))?;
            let mut reader = ring.reader(group, member)?;
            // Learn of events from the slots' words and, as the group's only member,
            // release them in ranges: 1.6× the events/s of `tiny_direct` (BENCHMARKS.md).
            reader.set_small_events(buffer.policy == crate::ring::Policy::Block);
            if SPIN_ON_OWN_CORE.load(Ordering::SeqCst) {
                reader.spin_on_own_core(crate::ring::OWN_CORE_SPIN_MAX);
            }
            readers.push(reader);
        }
        Ok(Source {
            ended: vec![false; readers.len()],
            group,
            readers,
            next: 0,
            dtype,
        })
    }

    /// Hands the next event of any ring to `f`, waiting at most `timeout`.
    fn step(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&EventRef<'_>) -> Result<(), WorkerError>,
    ) -> Result<Step, WorkerError> {
        match self.take(timeout) {
            Taken::Event(i, k) => {
                let r = &self.readers[i];
                let ev = EventRef {
                    data: r.kept_data(&k),
                    meta: r.kept_meta(&k),
                    dtype: &self.dtype,
                };
                let done = f(&ev);
                self.readers[i].release_kept(k);
                done.map(|()| Step::Did)
            }
            Taken::Idle => Ok(Step::Idle),
            Taken::End => Ok(Step::End),
        }
    }

    /// The next event of any ring (round robin), waiting at most `timeout`; the caller
    /// gives it back with `self.readers[i].release_kept`.
    pub(crate) fn take(&mut self, timeout: Duration) -> Taken {
        let n = self.readers.len();
        if n == 1 {
            if self.ended[0] {
                return Taken::End;
            }
            return match self.readers[0].next(timeout) {
                Next::Event(slot) => Taken::Event(0, slot.keep()),
                Next::Idle => Taken::Idle,
                Next::End => {
                    self.ended[0] = true;
                    Taken::End
                }
            };
        }
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.ended[i] {
                continue;
            }
            match self.readers[i].try_next() {
                Next::Event(slot) => {
                    self.next = (i + 1) % n;
                    return Taken::Event(i, slot.keep());
                }
                Next::End => self.ended[i] = true,
                Next::Idle => {}
            }
        }
        if self.ended.iter().all(|&e| e) {
            return Taken::End;
        }
        if timeout.is_zero() {
            return Taken::Idle;
        }
        if !sleep_on(self.tokens(), || self.ready(), timeout) {
            return Taken::End;
        }
        Taken::Idle
    }

    /// True when a claim on any of its live rings would find something.
    fn ready(&self) -> bool {
        self.readers
            .iter()
            .zip(&self.ended)
            .any(|(r, &e)| !e && r.ready())
    }

    /// Wait tokens of its live rings (before looking at [`Source::ready`]).
    fn tokens(&self) -> impl Iterator<Item = crate::ring::WaitToken<'_>> {
        self.readers
            .iter()
            .zip(&self.ended)
            .filter(|(_, &e)| !e)
            .map(|(r, _)| r.wait_token())
    }

    /// After a stop, rings whose producer died without closing are closed here, so the
    /// pipeline can drain even when the supervisor is gone too.
    pub(crate) fn close_orphans(&self) {
        for (r, &ended) in self.readers.iter().zip(&self.ended) {
            if !ended {
                let ring = r.ring();
                if ring
                    .producer_pid()
                    .is_none_or(|p| !crate::shm::pid_alive(p))
                {
                    ring.close();
                }
            }
        }
    }
}

/// Sleeps on the rings of `tokens` (taken before anything was looked at) until one has
/// news or `timeout` passes, unless `ready` finds one already has. The tokens go on the
/// stack (no allocation even when idle): at most 64 rings, as many as `wait_any` sleeps on.
/// False when there was no ring to sleep on.
fn sleep_on<'a>(
    mut tokens: impl Iterator<Item = crate::ring::WaitToken<'a>>,
    ready: impl FnOnce() -> bool,
    timeout: Duration,
) -> bool {
    let Some(first) = tokens.next() else {
        return false;
    };
    let mut all = [first; 64];
    let mut k = 1;
    for (slot, t) in all[1..].iter_mut().zip(tokens) {
        *slot = t;
        k += 1;
    }
    if !ready() {
        wait_any(&all[..k], timeout);
    }
    true
}

pub(crate) struct Sinks {
    pub(crate) producers: Vec<Producer>,
    pub(crate) dtypes: Vec<Dtype>,
    pub(crate) input_meta: Metadata,
}

impl Sinks {
    pub(crate) fn attach(
        plan: &Plan,
        w: &WorkerPlan,
        process: usize,
    ) -> Result<Sinks, ProcessError> {
        let mut producers = Vec::new();
        let mut dtypes = Vec::new();
        for name in &w.sinks {
            let b = plan.buffer(name).ok_or_else(|| ProcessError::NotInPlan {
                role: "sink",
                buffer: name.clone(),
            })?;
            let dtype = b.dtype();
            let path = b.rings.get(process).ok_or_else(|| ProcessError::NoRing {
                sink: name.clone(),
                process,
            })?;
            let ring = Ring::attach(path, Some(&dtype), Some(b.data_length))?;
            producers.push(ring.producer()?);
            dtypes.push(dtype);
        }
        Ok(Sinks {
            producers,
            dtypes,
            input_meta: Metadata::default(),
        })
    }

    /// Copies `ev` into every sink in `mask`.
    pub(crate) fn copy(&mut self, ev: &EventRef<'_>, mask: SinkMask) -> Result<(), WorkerError> {
        for (i, p) in self.producers.iter_mut().enumerate() {
            if !mask.contains(i) {
                continue;
            }
            if let Some(mut slot) = claim(p)? {
                let (data, meta) = slot.parts();
                data.copy_from_slice(ev.data);
                *meta = ev.meta;
                slot.publish();
            }
        }
        Ok(())
    }

    /// Ends the streams this process writes when it finished. After a failure they stay
    /// open: the supervisor either starts the process again, which goes on writing them, or
    /// closes them itself.
    pub(crate) fn end<T, E>(self, result: &Result<T, E>) {
        if result.is_ok() {
            for p in self.producers {
                p.close();
            }
        }
    }
}

/// Claims a slot, waiting in short steps. `None` under `drop` when full (counted lost).
pub(crate) fn claim(p: &mut Producer) -> Result<Option<crate::ring::SlotMut<'_>>, WorkerError> {
    let mut waited = Duration::ZERO;
    if p.ring().policy() == Policy::Block {
        while !p.wait_room(POLL) {
            waited += POLL;
            if waited >= Duration::from_secs(3600) {
                return Err(WorkerError::Stalled {
                    ring: p.ring().name().to_string(),
                });
            }
        }
    }
    // After wait_room said yes only this producer could take the room, so a timeout here
    // would be a broken ring protocol.
    match p.claim(Duration::ZERO) {
        Ok(slot) => Ok(Some(slot)),
        Err(crate::ring::ClaimError::Full) => Ok(None),
        Err(crate::ring::ClaimError::Timeout) => Err(WorkerError::LostRoom),
    }
}

impl Emit for Sinks {
    fn emit(
        &mut self,
        sink: usize,
        fill: &mut dyn FnMut(&mut EventMut<'_>) -> Result<(), WorkerError>,
    ) -> Result<(), WorkerError> {
        let input = self.input_meta;
        let dtype = self.dtypes.get(sink).ok_or(WorkerError::NoSink(sink))?;
        let p = &mut self.producers[sink];
        if let Some(mut slot) = claim(p)? {
            let (data, meta) = slot.parts();
            *meta = input;
            let mut ev = EventMut { data, meta, dtype };
            fill(&mut ev)?;
            slot.publish();
        }
        Ok(())
    }
}

fn context(plan: &Plan, w: &WorkerPlan, process: usize) -> Result<BuildContext, ProcessError> {
    let shapes = |names: &[String]| -> Result<Vec<_>, ProcessError> {
        names
            .iter()
            .map(|n| {
                plan.buffer(n)
                    .map(|b| b.shape())
                    .ok_or_else(|| ProcessError::NotInPlan {
                        role: "buffer",
                        buffer: n.clone(),
                    })
            })
            .collect()
    };
    Ok(BuildContext {
        worker: w.name.clone(),
        process: (process, w.processes),
        config: w.config(),
        sources: shapes(&w.sources)?,
        sinks: shapes(&w.sinks)?,
        observes: shapes(&w.observes)?,
        run_dir: plan.run_dir.clone(),
        setup_dir: plan.setup_dir.clone(),
    })
}

/// Runs one process of worker `w`.
pub fn run_worker(plan: &Plan, w: &WorkerPlan, process: usize, registry: &Registry) -> Outcome {
    let ctx = match context(plan, w, process) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let Some(function) = registry.get(&w.function) else {
        return Outcome::Failed(ProcessError::UnknownFunction(w.function.clone()).to_string());
    };
    let fail = |e: WorkerError| Outcome::Failed(e.to_string());
    let result = match function.build {
        Build::Importer(b) => match b(&ctx) {
            Ok(f) => importer_loop(plan, w, process, f),
            Err(e) => return fail(e),
        },
        Build::Filter(b) => match b(&ctx) {
            Ok(mut f) => through_loop(
                plan,
                w,
                process,
                &mut |_, ev, sinks| {
                    let mask = f.select(ev)?;
                    sinks.copy(ev, mask)
                },
                &|_| true,
                &mut |_| Ok(()),
            ),
            Err(e) => return fail(e),
        },
        Build::Processor(b) => match b(&ctx) {
            Ok(f) => {
                let f = std::cell::RefCell::new(f);
                through_loop(
                    plan,
                    w,
                    process,
                    &mut |i, ev, sinks| {
                        sinks.input_meta = ev.meta;
                        f.borrow_mut().process_from(i, ev, sinks)
                    },
                    &|i| f.borrow().accepts(i),
                    &mut |sinks| f.borrow_mut().finish(sinks),
                )
            }
            Err(e) => return fail(e),
        },
        Build::Exporter(b) => match b(&ctx) {
            Ok(f) => exporter_loop(plan, w, process, f),
            Err(e) => return fail(e),
        },
        Build::Observer(b) => match b(&ctx) {
            Ok(f) => observer_loop(plan, w, f),
            Err(e) => return fail(e),
        },
    };
    match result {
        Ok(()) => Outcome::Finished,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

use crate::clock::wall_clock;

pub(crate) fn importer_loop(
    plan: &Plan,
    w: &WorkerPlan,
    process: usize,
    mut f: Box<dyn crate::worker::Importer>,
) -> Result<(), ProcessError> {
    let mut sinks = Sinks::attach(plan, w, process)?;
    let sink_name = &w.sinks[0];
    let dtype = sinks.dtypes[0].clone();
    let data_bytes = sinks.producers[0].ring().event_bytes();
    let mut scratch = vec![0u8; data_bytes];
    let mut scratch_meta = Metadata::default();
    let step = w.processes as i64;
    // A restarted importer rejoins where its previous life stopped: the ring keeps what was
    // published and counted lost, so counters go on without a repeat and the run limit
    // counts both lives.
    let resumed = {
        let p = &sinks.producers[0];
        p.published() + p.ring().stats().lost
    };
    if resumed > 0 {
        tracing::info!(
            "worker '{}' process {process}: resuming after {resumed} events in '{sink_name}'",
            w.name
        );
        f.restarted(resumed);
    }
    let mut counter = process as i64 + resumed as i64 * step;
    let limit = plan.max_events.map(|n| {
        let n_proc = w.processes as u64;
        n / n_proc + u64::from((process as u64) < n % n_proc)
    });
    let mut taken = resumed;
    // Wall time of the previous event, for the dead-time fraction of the next one: one
    // clock read per event (none when the importer stamped the event itself).
    let mut last_time = wall_clock();
    // Of the current slot's wait for room, what the importer has been told already.
    let mut handed_ns = 0u64;
    let p = &mut sinks.producers[0];
    // The pause state the source was last told of (it starts running).
    let mut source_paused = false;
    // Events a live source gave during the current pause, discarded (said at the resume).
    let mut discarded = 0u64;
    let result = loop {
        if stop_requested() || limit.is_some_and(|l| taken >= l) {
            break Ok(());
        }
        let paused_now = paused();
        if paused_now != source_paused {
            source_paused = paused_now;
            let holds = f.pause(paused_now);
            if paused_now {
                tracing::info!(
                    "worker '{}' process {process}: paused; {}",
                    w.name,
                    if holds {
                        "its source holds its data until the resume"
                    } else {
                        "what its source gives is discarded until the resume"
                    }
                );
            } else if !holds {
                tracing::info!(
                    "worker '{}' process {process}: resumed; {discarded} events its source \
                     gave while paused were discarded",
                    w.name
                );
                discarded = 0;
            }
        }
        if paused_now || (p.ring().policy() == Policy::Drop && !p.has_room()) {
            // Paused, or full under `drop`: take the event anyway (keeps the device
            // flowing); under `drop` count it lost if there was one, when paused discard it.
            scratch_meta.counter = counter;
            let mut ev = EventMut {
                data: &mut scratch,
                meta: &mut scratch_meta,
                dtype: &dtype,
            };
            match f.next(&mut ev) {
                Ok(Produced::Event) if paused_now => discarded += 1,
                Ok(Produced::Event) => {
                    p.count_lost(1);
                    counter += step;
                    taken += 1;
                }
                Ok(Produced::Idle) => {}
                Ok(Produced::End) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
            continue;
        }
        let mut slot = match p.claim(POLL) {
            Ok(s) => s,
            Err(_) => continue,
        };
        let blocked = slot.blocked_ns();
        // A slot given back unpublished (Idle) keeps its wait for the next one: the importer
        // is told each wait once.
        let fresh = blocked.saturating_sub(handed_ns);
        handed_ns = blocked;
        let (data, meta) = slot.parts();
        // On entry an importer finds in `deadtime` the seconds the engine waited for room
        // since the previous call (see `EventMut::meta`); it is replaced by the fraction below.
        *meta = Metadata {
            counter,
            timestamp: 0.0,
            deadtime: fresh as f64 * 1e-9,
        };
        let mut ev = EventMut {
            data,
            meta,
            dtype: &dtype,
        };
        match f.next(&mut ev) {
            Ok(Produced::Event) => {
                if ev.meta.timestamp == 0.0 {
                    ev.meta.timestamp = wall_clock();
                }
                let now = ev.meta.timestamp;
                let cycle = ((now - last_time) * 1e9).max(1.0);
                last_time = now;
                ev.meta.deadtime = (blocked as f64 / cycle).clamp(0.0, 1.0);
                slot.publish();
                handed_ns = 0;
                counter += step;
                taken += 1;
            }
            Ok(Produced::Idle) => {} // the slot goes to the next claim unpublished
            Ok(Produced::End) => break Ok(()),
            Err(e) => {
                break Err(ProcessError::Writing {
                    sink: sink_name.clone(),
                    source: Box::new(e),
                })
            }
        }
    };
    if discarded > 0 {
        tracing::info!(
            "worker '{}' process {process}: ended paused; {discarded} events its source gave \
             while paused were discarded",
            w.name
        );
    }
    // The importer ends before its sinks close: a device's stop and its last notes come
    // before the exporters see the end and write the notes into their files.
    drop(f);
    sinks.end(&result);
    result
}

type Through<'a> = dyn FnMut(usize, &EventRef<'_>, &mut Sinks) -> Result<(), WorkerError> + 'a;

pub(crate) fn sources_of(
    plan: &Plan,
    w: &WorkerPlan,
    process: usize,
) -> Result<Vec<Source>, ProcessError> {
    w.sources
        .iter()
        .map(|name| {
            let b = plan.buffer(name).ok_or_else(|| ProcessError::NotInPlan {
                role: "source",
                buffer: name.clone(),
            })?;
            let g = b
                .group_of(&w.name)
                .ok_or_else(|| ProcessError::NotAReader {
                    worker: w.name.clone(),
                    buffer: name.clone(),
                })?;
            Source::attach(b, g, process)
        })
        .collect()
}

fn through_loop(
    plan: &Plan,
    w: &WorkerPlan,
    process: usize,
    f: &mut Through<'_>,
    accepts: &dyn Fn(usize) -> bool,
    finish: &mut dyn FnMut(&mut Sinks) -> Result<(), WorkerError>,
) -> Result<(), ProcessError> {
    let mut sources = sources_of(plan, w, process)?;
    let mut sinks = Sinks::attach(plan, w, process)?;
    let mut done = vec![false; sources.len()];
    let mut result = Ok(());
    if let [src] = sources.as_mut_slice() {
        // One source: sleep in its rings until an event comes.
        while !done[0] && result.is_ok() {
            match src.step(POLL, &mut |ev| f(0, ev, &mut sinks)) {
                Ok(Step::Did) => {}
                Ok(Step::Idle) => {
                    if stop_requested() {
                        src.close_orphans();
                    }
                }
                Ok(Step::End) => done[0] = true,
                Err(e) => result = Err(e.into()),
            }
        }
    } else {
        result = merge_sources(
            &mut sources,
            &mut done,
            &mut |i, ev| f(i, ev, &mut sinks),
            accepts,
        );
    }
    if result.is_ok() {
        result = finish(&mut sinks).map_err(ProcessError::from);
    }
    sinks.end(&result);
    result
}

/// Several sources: takes whatever is there from each source the function `accepts` (without
/// waiting on any one of them), and sleeps on all their rings at once when none had an
/// event, so a quiet source never delays a busy one.
fn merge_sources(
    sources: &mut [Source],
    done: &mut [bool],
    f: &mut dyn FnMut(usize, &EventRef<'_>) -> Result<(), WorkerError>,
    accepts: &dyn Fn(usize) -> bool,
) -> Result<(), ProcessError> {
    while done.iter().any(|d| !d) {
        // When the function holds back every source still going (it waits for a source that
        // has ended), it gets events anyway: it must cope (a pairing function gives up on the
        // oldest) rather than the run hang.
        let force = (0..sources.len()).all(|i| done[i] || !accepts(i));
        let mut took = false;
        for (i, src) in sources.iter_mut().enumerate() {
            if done[i] || !(force || accepts(i)) {
                continue;
            }
            match src.step(Duration::ZERO, &mut |ev| f(i, ev)) {
                Ok(Step::Did) => took = true,
                Ok(Step::Idle) => {}
                Ok(Step::End) => done[i] = true,
                Err(e) => return Err(e.into()),
            }
        }
        if took {
            continue;
        }
        if stop_requested() {
            for s in sources.iter() {
                s.close_orphans();
            }
        }
        // Nothing was there: sleep until any ring the function takes from has news (a held
        // source is not waited on: its events are there already).
        let taken = |&(i, _): &(usize, &Source)| !done[i] && (force || accepts(i));
        let live = sources.iter().enumerate().filter(taken);
        sleep_on(
            live.clone().flat_map(|(_, s)| s.tokens()),
            || live.clone().any(|(_, s)| s.ready()),
            POLL,
        );
    }
    Ok(())
}

fn exporter_loop(
    plan: &Plan,
    w: &WorkerPlan,
    process: usize,
    mut f: Box<dyn crate::worker::Exporter>,
) -> Result<(), ProcessError> {
    let mut sources = sources_of(plan, w, process)?;
    let mut sinks = Sinks::attach(plan, w, process)?;
    let mut last_flush = Instant::now();
    let mut steps = 0u64;
    let mut result: Result<(), ProcessError> = Ok(());
    let src = sources
        .first_mut()
        .ok_or(ProcessError::Missing("an exporter needs a source"))?;
    let pass_on = !sinks.producers.is_empty();
    let mut booked_dropped = 0u64;
    if let Some(kept) = f.kept_from_earlier() {
        book_unwritten(w, src, kept);
    }
    loop {
        let step = src.step(POLL, &mut |ev| {
            if pass_on {
                sinks.copy(ev, SinkMask::ALL)?;
            }
            f.consume(ev)
        });
        match step {
            Ok(Step::Did) => {}
            Ok(Step::Idle) => {
                if stop_requested() {
                    src.close_orphans();
                }
            }
            Ok(Step::End) => break,
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
        // The clock is read every 64 steps (and whenever idle), not per event.
        steps += 1;
        if (steps.is_multiple_of(64) || matches!(step, Ok(Step::Idle)))
            && last_flush.elapsed() >= Duration::from_secs(1)
        {
            last_flush = Instant::now();
            if let Err(e) = f.flush() {
                result = Err(e.into());
                break;
            }
            booked_dropped = book_dropped(src, f.as_ref(), booked_dropped);
        }
    }
    // A failed output (a full disk) keeps fewer events than the group was delivered: the
    // rest is counted lost, as for a process that died before its flush.
    let kept_at_failure = if result.is_err() {
        f.events_kept()
    } else {
        None
    };
    f.run_lost(events_lost(plan));
    let fin = f.finish().map_err(ProcessError::from);
    book_dropped(src, f.as_ref(), booked_dropped);
    let kept = kept_at_failure.or_else(|| if fin.is_err() { f.events_kept() } else { None });
    if let Some(kept) = kept {
        book_unwritten(w, src, kept);
    }
    let lines = f.summary();
    if !lines.is_empty() {
        // The supervisor prints these after the run (see launch::run).
        let path = plan
            .run_dir
            .join(format!("results_{}_{process}.txt", w.name));
        let _ = std::fs::write(&path, lines.join("\n") + "\n");
        for l in &lines {
            tracing::info!("{l}");
        }
    }
    let result = result.and(fin);
    sinks.end(&result);
    result
}

/// An exporter's books after a restart or a failed output: its group was delivered events
/// in all, its output keeps `kept` of them; the rest died with an earlier process (what it
/// had not flushed yet) or could not be written. Those are counted in the ring as released
/// unread, so every reader of the books (stats, summary, page) shows them lost. Shared
/// memory, not a file: the output may have failed because the disk is full.
fn book_unwritten(w: &WorkerPlan, src: &mut Source, kept: u64) {
    // What the readers finished but release only at the end of their claimed range counts
    // as delivered: release it now, before the counters are read.
    for r in &mut src.readers {
        r.release_finished();
    }
    let delivered = src.delivered();
    if delivered <= kept {
        return;
    }
    if w.processes > 1 {
        // The group's count covers every process, the output only this one's.
        tracing::warn!(
            "worker '{}': an earlier process died; what it had not written yet cannot be \
             counted with number_of_processes > 1",
            w.name
        );
        return;
    }
    let unwritten = delivered - kept;
    tracing::warn!(
        "worker '{}': {unwritten} events it was delivered are not in its output (an earlier \
         process died before its flush, or the output failed); counted lost",
        w.name
    );
    src.count_unused(unwritten);
}

/// Counts what the exporter's output dropped since `booked` as lost in its source ring
/// (see [`crate::worker::Exporter::events_dropped`]); returns the new total booked.
fn book_dropped(src: &mut Source, f: &dyn crate::worker::Exporter, booked: u64) -> u64 {
    let dropped = f.events_dropped();
    if dropped > booked {
        src.count_unused(dropped - booked);
    }
    dropped.max(booked)
}

/// Events lost so far in every ring of the run (read from the ring headers).
fn events_lost(plan: &Plan) -> u64 {
    plan.buffers
        .iter()
        .flat_map(|b| &b.rings)
        .filter_map(|path| Ring::attach(path, None, None).ok())
        .map(|r| r.stats().lost)
        .sum()
}

fn observer_loop(
    plan: &Plan,
    w: &WorkerPlan,
    mut f: Box<dyn crate::worker::Observer>,
) -> Result<(), ProcessError> {
    let name = w.observes.first().ok_or(ProcessError::Missing(
        "an observer needs a buffer to observe",
    ))?;
    let b = plan.buffer(name).ok_or_else(|| ProcessError::NotInPlan {
        role: "observed buffer",
        buffer: name.clone(),
    })?;
    let dtype = b.dtype();
    let mut observers: Vec<RingObserver> = Vec::new();
    for path in &b.rings {
        let ring = Ring::attach(path, Some(&dtype), Some(b.data_length))?;
        observers.push(ring.observer());
    }
    let interval = f
        .interval()
        .clamp(Duration::from_millis(1), Duration::from_millis(200));
    let mut data = vec![0u8; b.data_length * dtype.record_size()];
    let mut meta = Metadata::default();
    loop {
        let mut fresh = false;
        for o in observers.iter_mut() {
            if o.latest(&mut data, &mut meta)?.is_some() {
                fresh = true;
                let ev = EventRef {
                    data: &data,
                    meta,
                    dtype: &dtype,
                };
                f.observe(&ev)?;
            }
        }
        let all_closed = observers.iter().all(|o| o.ring().stats().closed);
        if all_closed && !fresh {
            break;
        }
        std::thread::sleep(interval);
    }
    Ok(f.finish()?)
}

/// The ring file for process `k` of the writer of `buffer` in run `run_id`.
pub fn ring_name(run_id: &str, buffer: &str, k: usize) -> String {
    format!("daq-{run_id}-{buffer}-{k}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pause and then a resume that both reach a worker while it still holds the signal
    /// (it is starting; the supervisor started it with it blocked): it must end up running.
    /// With a pause signal and a resume signal, Linux delivered both at the unblock, the
    /// resume's handler frame on top of the pause's, so the pause's handler ran last and
    /// the importer stayed paused while the supervisor said resumed (a clean-clone CI run
    /// under load: 0 events for a minute).
    #[test]
    fn a_resume_sent_after_a_pause_wins_when_both_wait_for_the_worker() {
        install_signals();
        let send = |v: u64| {
            let value = libc::sigval {
                sival_ptr: v as *mut libc::c_void,
            };
            // SAFETY: queues the signal to this thread, which blocks it until the unblock.
            unsafe { libc::pthread_sigqueue(libc::pthread_self(), pause_signal(), value) };
        };
        // SAFETY: sigset calls on a local set; pthread_sigmask on this thread.
        let mask = |how| unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, pause_signal());
            libc::pthread_sigmask(how, &set, std::ptr::null_mut());
        };
        // Queues `first` then `last` while the signal is blocked: both arrive together.
        let queue_two = |seq: &mut u64, first: bool, last: bool| {
            mask(libc::SIG_BLOCK);
            send(pause_state(*seq + 1, first));
            send(pause_state(*seq + 2, last));
            *seq += 2;
            mask(libc::SIG_UNBLOCK);
        };
        let mut seq = 0;
        for _ in 0..10 {
            queue_two(&mut seq, true, false);
            assert!(
                !paused(),
                "a resume sent after a pause left the worker paused"
            );
            // And the other way round.
            queue_two(&mut seq, false, true);
            assert!(
                paused(),
                "a pause sent after a resume left the worker running"
            );
            send(pause_state(seq + 1, false));
            seq += 1;
            assert!(!paused());
        }
    }

    /// The supervisor's log and the run's summary show these texts; they stay as they were
    /// when they were plain strings.
    #[test]
    fn process_errors_say_what_the_strings_said() {
        let e = ProcessError::NotInPlan {
            role: "sink",
            buffer: "raw".into(),
        };
        assert_eq!(e.to_string(), "sink 'raw' is not in the plan");
        let e = ProcessError::NoRing {
            sink: "raw".into(),
            process: 2,
        };
        assert_eq!(e.to_string(), "sink 'raw' has no ring for process 2");
        let e = ProcessError::Writing {
            sink: "raw".into(),
            source: Box::new(WorkerError::Other("the device is gone".into())),
        };
        assert_eq!(e.to_string(), "writing 'raw': the device is gone");
        let e: ProcessError = WorkerError::Other("bad".into()).into();
        assert!(matches!(e, ProcessError::Worker(_)));
        assert_eq!(e.to_string(), "bad");
    }

    /// A supervisor whose main thread has ended while another of its threads still runs
    /// (as when a SIGKILL takes a loaded supervisor's threads down one by one) is still the
    /// workers' parent, yet will clean up nothing: it counts as gone. Before, only a changed
    /// parent did, and the workers of a killed supervisor left their ring files.
    #[test]
    fn a_supervisor_whose_main_thread_ended_counts_as_gone() {
        let script = "import ctypes, threading, time\n\
                      threading.Thread(target=time.sleep, args=(5,)).start()\n\
                      ctypes.CDLL(None).pthread_exit(None)\n";
        let Ok(mut child) = std::process::Command::new("python3")
            .args(["-c", script])
            .spawn()
        else {
            eprintln!("SKIPPED: no python3 to stand for a dying supervisor");
            return;
        };
        let pid = child.id() as i32;
        let t = std::time::Instant::now();
        while !exiting(pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Its other thread keeps the process: the kernel would not have reparented us yet.
        let alive = std::path::Path::new(&format!("/proc/{pid}/task")).exists();
        let gone = orphaned(pid, pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            alive,
            "the stand-in supervisor ended before it was looked at"
        );
        assert!(
            gone,
            "a supervisor with an ended main thread counted as alive"
        );
        // A live one that is still the parent is not gone; one that is not the parent is.
        let me = std::process::id() as i32;
        assert!(!orphaned(me, me));
        assert!(orphaned(me, 1));
    }
}
