//! What the command line does with a setup file: validate it, make the run directory, plan
//! the rings, supervise the run, and report.

use super::registry::Registry;
use crate::export::recover::RunDirLock;
use std::path::{Path, PathBuf};

/// Makes `target/run_<UTC time>/` (with `_2`, `_3`… when two runs start in the same
/// second) and returns it with the run id used in ring names.
pub fn make_run_dir(target: &Path) -> std::io::Result<(PathBuf, String)> {
    make_locked_run_dir(target).map(|(dir, id, _)| (dir, id))
}

/// As [`make_run_dir`], and holds the run directory's lock: the directory appears under its
/// name with the lock already held (it is made under a staging name and renamed), so a
/// starting run never takes a live run's directory for one to recover.
pub fn make_locked_run_dir(target: &Path) -> std::io::Result<(PathBuf, String, RunDirLock)> {
    std::fs::create_dir_all(target)?;
    let stamp = super::utc_now()
        .replace([':', '.'], "-")
        .trim_end_matches('Z')
        .to_string();
    let stamp = &stamp[..19.min(stamp.len())];
    // Unique among live runs: the pid, a per-process sequence and the time, so two runs
    // started by one process in one second (into different target directories) get
    // different ring names.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!("{}-{seq}-{nanos:x}", std::process::id());
    let staging = target.join(format!(".staging_{id}"));
    std::fs::create_dir(&staging)?;
    let lock = match RunDirLock::try_lock(&staging) {
        Ok(Some(l)) => l,
        Ok(None) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(std::io::Error::other("a fresh run directory is locked"));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    for n in 1..1000 {
        let name = if n == 1 {
            format!("run_{stamp}")
        } else {
            format!("run_{stamp}_{n}")
        };
        let dir = target.join(&name);
        let cwd = std::fs::File::open(target)?;
        match nix::fcntl::renameat2(
            &cwd,
            staging.file_name().unwrap_or_default(),
            &cwd,
            name.as_str(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok((dir, id, lock)),
            Err(nix::errno::Errno::EEXIST) => continue,
            // A file system without RENAME_NOREPLACE (some network ones): a plain rename to a
            // name that is free now (it would replace an empty directory made this instant).
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
                if dir.exists() {
                    continue;
                }
                return match std::fs::rename(&staging, &dir) {
                    Ok(()) => Ok((dir, id, lock)),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging);
                        Err(e)
                    }
                };
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e.into());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    Err(std::io::Error::other(
        "a thousand runs started in one second",
    ))
}

/// Recovers the runs in `target` that did not finish (see [`crate::export::recover`]),
/// saying what it does on stderr and in the log. Their files are readable and summarised
/// when it returns; compressing them (minutes for a large file) goes on in the returned
/// thread, at the lowest priority, while the new run starts.
pub fn recover_unfinished(target: &Path) -> Option<std::thread::JoinHandle<()>> {
    crate::export::recover::remove_stale_staging(target);
    let mut later = Vec::new();
    for dir in crate::export::recover::unfinished_runs(target) {
        eprintln!(
            "daq-engine: {} did not finish (no readable summary.json): recovering its files",
            dir.display()
        );
        match crate::export::recover::recover_run_dir_then_compress(&dir) {
            Ok((rec, c)) => {
                report_recovery(&dir, Ok(rec));
                for (f, bytes) in c.files() {
                    eprintln!(
                        "  {}: compressing it in the background ({:.1} MB)",
                        f.display(),
                        bytes as f64 / 1e6
                    );
                }
                later.push(c);
            }
            Err(e) => {
                report_recovery(&dir, Err(e));
            }
        }
    }
    if later.iter().all(|c| c.files().is_empty()) {
        return None;
    }
    Some(std::thread::spawn(move || {
        for c in later {
            c.run();
        }
    }))
}

/// Prints what recovering `dir` did; returns the exit code of `daq-engine recover`.
fn report_recovery(
    dir: &Path,
    r: Result<crate::export::recover::RunRecovery, crate::export::ExportError>,
) -> i32 {
    match r {
        Ok(rec) => {
            for f in &rec.files {
                for ((b, n), cut) in f.buffers.iter().zip(&f.rows_cut) {
                    eprintln!(
                        "  {}: {b}: {n} events{}{}",
                        f.path.display(),
                        if *cut > 0 {
                            format!(" ({cut} incomplete rows cut)")
                        } else {
                            String::new()
                        },
                        if f.compressed { ", compressed" } else { "" }
                    );
                }
            }
            for e in rec.files.iter().filter_map(|f| f.compress_error.as_ref()) {
                eprintln!("  {e}");
            }
            for (p, why) in &rec.failed {
                eprintln!("  {}: {why}", p.display());
            }
            tracing::info!(
                "recovered {}: {} events in {} file(s)",
                dir.display(),
                rec.events(),
                rec.files.len()
            );
            i32::from(!rec.failed.is_empty())
        }
        Err(e) => {
            eprintln!("daq-engine: {e}");
            tracing::warn!("recovering {}: {e}", dir.display());
            1
        }
    }
}

/// `daq-engine recover RUN_DIR`.
pub fn recover(run_dir: &Path) -> i32 {
    if !run_dir.is_dir() {
        eprintln!("daq-engine: {} is not a run directory", run_dir.display());
        return 2;
    }
    if crate::export::recover::finished(run_dir) {
        eprintln!(
            "daq-engine: {} finished (its summary.json was written by the run): nothing to \
             recover",
            run_dir.display()
        );
        return 0;
    }
    let r = crate::export::recover::recover_run_dir(run_dir);
    let code = report_recovery(run_dir, r);
    if code == 0 {
        eprintln!(
            "daq-engine: {} recovered; summary.json says what it holds",
            run_dir.display()
        );
    }
    code
}

/// `daq-engine bench WHAT`.
pub fn bench(
    what: &str,
    events: Option<u64>,
    reference: Option<&Path>,
    registry: &Registry,
) -> i32 {
    let machine = format!(
        "machine: nproc {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        super::bench::cpu_model()
    );
    match what {
        "pipeline" => super::bench::pipeline(events, reference, registry),
        "python" => super::bench_python::python(events, reference),
        "ring" => {
            println!("daq-engine bench ring; {machine}");
            let opts = crate::ring_bench::RingBenchOptions {
                realtime: nix::unistd::geteuid().is_root(),
                ..Default::default()
            };
            match crate::ring_bench::run(&opts) {
                Ok(report) => {
                    println!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("daq-engine: bench ring: {e}");
                    1
                }
            }
        }
        "analysis" => {
            println!("daq-engine bench analysis; {machine}");
            match crate::analysis::bench::run(std::time::Duration::from_secs(2)) {
                Ok(report) => {
                    println!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("daq-engine: bench analysis: {e}");
                    1
                }
            }
        }
        "hdf5" => {
            println!("daq-engine bench hdf5; {machine}");
            let dir = std::env::temp_dir().join(format!("daq-bench-hdf5-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let r = crate::export::bench::run(&dir, events.unwrap_or(4000));
            let _ = std::fs::remove_dir_all(&dir);
            match r {
                Ok(report) => {
                    println!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("daq-engine: bench hdf5: {e}");
                    1
                }
            }
        }
        other => {
            eprintln!(
                "daq-engine: no benchmark '{other}'; choose pipeline, python, ring, analysis, hdf5 or drivers"
            );
            2
        }
    }
}

/// A readable report of one stats.jsonl line.
pub fn format_status(v: &serde_json::Value, run_dir: &Path) -> String {
    use std::fmt::Write;
    let mut view = crate::monitor::RunView::new(Vec::new());
    view.update(v);
    let snap = view.snapshot();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {}: {:.1} s at {}{}",
        run_dir.display(),
        snap.t,
        if snap.time.is_empty() {
            "?"
        } else {
            &snap.time
        },
        if snap.ended {
            " (ended)"
        } else if snap.stopping {
            " (stopping)"
        } else {
            ""
        }
    );
    // An ended run shows its means (its last snapshot carries them).
    let ended = snap.ended;
    let _ = writeln!(
        s,
        "{:<20} {:>12} {:>10} {:>6} {:>9} {:>8}",
        "buffer",
        "events",
        if ended { "mean Hz" } else { "rate Hz" },
        "fill",
        "deadtime",
        "lost"
    );
    for (name, b) in &snap.buffers {
        let rate = b.rate_hz;
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>10.1} {:>5.0}% {:>8.2}% {:>8}",
            name,
            b.events_in,
            rate,
            b.fill * 100.0,
            b.deadtime * 100.0,
            b.lost
        );
    }
    let _ = writeln!(
        s,
        "{:<20} {:>12} {:>10} {:>9} {:>10} {:>12}",
        "worker", "events", "state", "processes", "cpu s", "core"
    );
    for (name, w) in &snap.workers {
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>10} {:>9} {:>10.2} {:>12}",
            name,
            w.events,
            w.state,
            w.processes,
            w.cpu_s,
            w.cores_text()
        );
    }
    for w in view.warnings() {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

use super::plan::{BufferPlan, Plan, Restart, WorkerPlan};
use super::supervisor::{Progress, RunOptions, Supervisor};
use crate::cli::RunArgs;
use crate::setup::{self, Setup};
use std::io::IsTerminal;

/// The run plan for a validated setup (ring paths are filled in by the supervisor).
pub fn plan_of(setup: &Setup, run_dir: &Path, run_id: &str) -> Plan {
    let buffers = setup
        .buffers
        .iter()
        .map(|b| BufferPlan {
            name: b.name.clone(),
            fields: b
                .dtype
                .fields()
                .iter()
                .map(|f| (f.name.clone(), f.scalar.name().to_string()))
                .collect(),
            data_length: b.data_length,
            slot_count: b.slot_count,
            policy: b.policy.name().to_string(),
            writer: setup.writer_of(&b.name).map(|w| w.name.clone()),
            readers: setup
                .readers_of(&b.name)
                .iter()
                .map(|w| w.name.clone())
                .collect(),
            observers: setup
                .observers_of(&b.name)
                .iter()
                .map(|w| w.name.clone())
                .collect(),
            rings: vec![],
        })
        .collect();
    let workers = setup
        .workers
        .iter()
        .map(|w| WorkerPlan {
            name: w.name.clone(),
            function: w.function.clone(),
            file: w.file.clone(),
            processes: w.number_of_processes,
            sources: w.sources.clone(),
            sinks: w.sinks.clone(),
            observes: w.observes.clone(),
            config: w.config.clone(),
            cpu: w.cpu.clone(),
            priority: w.priority.map(i32::from),
            restart: match w.restart {
                setup::Restart::Never => Restart::Never,
                setup::Restart::OnFailure => Restart::OnFailure,
            },
            python: w.python.clone(),
        })
        .collect();
    Plan {
        run_id: run_id.to_string(),
        run_dir: run_dir.to_path_buf(),
        setup_dir: setup.setup_dir.clone(),
        buffers,
        workers,
        max_events: setup.options.max_events,
        max_seconds: setup.options.max_seconds,
        stats_interval: setup.options.stats_interval,
        huge_pages: setup.options.huge_pages == setup::HugePages::Auto,
        disk_reserve_mb: setup.options.disk_reserve_mb,
        alert_command: setup.options.alert_command.clone(),
    }
}

/// The registry as a run with `--simulate` sees it: each function with a `simulate` key is
/// checked as simulated (no port needs to exist).
struct Simulated<'a>(&'a Registry);

impl crate::worker::Catalog for Simulated<'_> {
    fn function(&self, name: &str) -> Option<&crate::worker::FunctionSpec> {
        self.0.function(name)
    }

    fn names(&self) -> Vec<&'static str> {
        self.0.names()
    }

    fn check_worker(
        &self,
        function: &str,
        ctx: &crate::worker::BuildContext,
    ) -> Result<(), crate::worker::WorkerError> {
        if self
            .function(function)
            .is_some_and(|f| f.key("simulate").is_some())
        {
            let mut ctx = ctx.clone();
            ctx.config.values.insert("simulate".into(), true.into());
            return self.0.check(function, &ctx);
        }
        self.0.check(function, ctx)
    }
}

fn load(path: &Path, registry: &Registry, simulate: bool) -> Option<Setup> {
    let simulated = Simulated(registry);
    let catalog: &dyn crate::worker::Catalog = if simulate { &simulated } else { registry };
    match Setup::load(path, catalog, setup::online_cpus()) {
        Ok((s, warnings)) => {
            // The broadcast note is for setups carried over from mimoCoRB2; `check` shows it,
            // a run does not repeat it every time.
            for w in warnings
                .iter()
                .filter(|w| !w.message.contains("(broadcast)"))
            {
                eprintln!("{w}");
            }
            Some(s)
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// `daq-engine SETUP`: runs it. Returns the exit code.
pub fn run(path: &Path, args: &RunArgs, registry: &Registry) -> i32 {
    let Some(mut setup) = load(path, registry, args.simulate) else {
        return 2;
    };
    if let Err(e) = setup.apply_limits(args.max_events, args.max_seconds) {
        eprintln!("daq-engine: {e}");
        return 2;
    }
    let registry = match user_libraries(&setup, registry) {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                eprintln!("daq-engine: {e}");
            }
            return 2;
        }
    };
    let registry = &registry;
    if args.simulate {
        for w in &mut setup.workers {
            let takes = registry
                .get(&w.function)
                .is_some_and(|f| f.spec.key("simulate").is_some());
            if takes {
                w.config.insert("simulate".into(), true.into());
            }
        }
    }
    let target = args
        .target_directory
        .clone()
        .unwrap_or_else(|| setup.target_directory.clone());
    let recovering = recover_unfinished(&target);
    let (run_dir, run_id, _run_lock) = match make_locked_run_dir(&target) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "daq-engine: cannot make a run directory in {}: {e}",
                target.display()
            );
            return 1;
        }
    };
    super::init_log(&super::process::log_path(&run_dir));
    if let Err(e) = _run_lock.share_with_children() {
        tracing::warn!("the run directory's lock stays with the supervisor only: {e}");
    }
    tracing::info!(
        "daq-engine {} run of {}",
        env!("CARGO_PKG_VERSION"),
        path.display()
    );
    let writes = [
        ("setup.yaml", setup.to_yaml()),
        ("pipeline.txt", setup::graph::text(&setup)),
        ("pipeline.dot", setup::graph::dot(&setup)),
    ];
    for (name, text) in writes {
        if let Err(e) = std::fs::write(run_dir.join(name), text) {
            eprintln!("daq-engine: {}: {e}", run_dir.join(name).display());
            return 1;
        }
    }
    let mut watchers = crate::monitor::Watchers::new();
    if let Some(addr) = &args.http {
        let token = crate::monitor::web::token_from(
            args.token_file.as_deref(),
            std::env::var(crate::monitor::web::TOKEN_VAR).ok(),
        );
        match token.and_then(|t| crate::monitor::Web::bind(addr, t, args.http_any, &run_dir)) {
            Ok(w) => {
                eprintln!("daq-engine: live page at http://{}/", w.local_addr());
                tracing::info!("live page at http://{}/", w.local_addr());
                watchers.push(Box::new(w));
            }
            Err(e) => {
                eprintln!("daq-engine: --http {addr}: {e}");
                let _ = std::fs::remove_dir_all(&run_dir);
                return 2;
            }
        }
    }
    // The dashboard when a person is watching a terminal; it takes over stderr.
    let wants_tui = !args.quiet
        && !args.no_tui
        && std::io::stderr().is_terminal()
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal();
    let tui = if wants_tui {
        match crate::monitor::Tui::new(&run_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("daq-engine: no dashboard ({e}); showing progress lines");
                None
            }
        }
    } else {
        None
    };
    let progress = if args.quiet || tui.is_some() {
        Progress::Quiet
    } else if std::io::stderr().is_terminal() && !args.no_tui {
        Progress::Live
    } else {
        Progress::Lines(std::time::Duration::from_secs_f64(args.progress_every))
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("daq-engine: cannot find my own executable to start workers: {e}");
            return 1;
        }
    };
    let plan = plan_of(&setup, &run_dir, &run_id);
    let sup = match Supervisor::prepare(
        plan,
        RunOptions {
            worker_exe: exe,
            worker_args: vec![],
            progress,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("daq-engine: {e}");
            return 1;
        }
    };
    if !args.quiet {
        eprintln!("daq-engine: run directory {}", run_dir.display());
        for (b, backing) in sup.backings() {
            eprintln!("  buffer {b}: {backing}");
        }
    }
    for w in sup.realtime_warnings() {
        tracing::warn!("{w}");
        eprintln!("daq-engine: warning: {w}");
    }
    if let Some(t) = tui {
        watchers.push(Box::new(t));
    }
    let watcher: Option<&mut dyn super::Watcher> = if watchers.is_empty() {
        None
    } else {
        Some(&mut watchers)
    };
    let summary = sup.run_watched(watcher);
    // Every worker has ended (and with it any h5repack it ran): what an aborted compression
    // left is partial, the file it compressed is complete.
    let partial = crate::export::hdf5::remove_partial_compressions(&run_dir);
    if partial > 0 {
        tracing::info!("removed {partial} partial compressed file(s); the originals are kept");
    }
    // An aborted run's exporters were killed with their files open: make those files whole
    // now (writer flags cleared, data and metadata cut to equal lengths), so plain h5py opens
    // them; a finished run's summary stops any later recovery.
    crate::export::recover::make_whole_after_abort(&run_dir);
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("daq-engine: {e}");
            return 1;
        }
    };
    // The last lines go through the terminal thread too: a terminal nobody reads must not
    // keep the process from ending (they are given a few seconds, then the process exits).
    macro_rules! say {
        ($($t:tt)*) => { super::terminal::say(format!($($t)*) + "\n") };
    }
    let summary_path = run_dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    if let Err(e) = crate::export::files::write_atomic(&summary_path, text.as_bytes()) {
        say!(
            "daq-engine: could not write {}: {e}; the next run in {} recovers this one",
            summary_path.display(),
            target.display()
        );
        tracing::warn!("could not write {}: {e}", summary_path.display());
    }
    say!(
        "daq-engine: {} after {:.1} s; run directory {}",
        if summary.exit_code == 0 {
            "finished"
        } else {
            "FAILED"
        },
        summary.seconds,
        run_dir.display()
    );
    for (b, n) in &summary.events {
        let lost = summary.lost.get(b).copied().unwrap_or(0);
        say!(
            "  {b}: {n} events{}",
            if lost > 0 {
                format!(", {lost} lost (ring full under `policy: drop`)")
            } else {
                String::new()
            }
        );
    }
    for f in &summary.failures {
        say!("  failure: {f}");
    }
    // What exporters had to say at the end (fit results), in worker order.
    if let Ok(entries) = std::fs::read_dir(&run_dir) {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("results_") && n.ends_with(".txt"))
            })
            .collect();
        files.sort();
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                for line in text.lines() {
                    say!("  {line}");
                }
            }
        }
    }
    if let Some(t) = recovering.filter(|t| !t.is_finished()) {
        say!("daq-engine: waiting for the compression of a recovered run's files");
        let _ = t.join();
    }
    let dropped = super::terminal::dropped();
    if dropped > 0 {
        tracing::warn!("{dropped} lines for the terminal were dropped: nothing read it");
    }
    super::terminal::drain(std::time::Duration::from_secs(5));
    tracing::info!("run ended with exit code {}", summary.exit_code);
    summary.exit_code
}

/// Longest a user library may take to load in the probe process.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Loads `library` in a child process first (`daq-engine __plugin-probe`), so that one that
/// crashes or hangs while loading costs that process, not this one.
fn probe_library(library: &Path) -> Result<(), String> {
    probe(library, &["__plugin-probe", "--"], &[])
}

/// Imports the Python worker file `file` in a child process (`daq-engine __python-probe`),
/// as a worker process would, and checks that it has `function` taking one argument.
fn probe_python(file: &Path, function: &str, venv: Option<&Path>) -> Result<(), String> {
    let mut tail = vec![std::ffi::OsStr::new(function)];
    tail.extend(venv.map(Path::as_os_str));
    probe(file, &["__python-probe", "--"], &tail)
}

/// Runs `daq-engine ARGS FILE TAIL` and returns what it printed when it failed.
fn probe(library: &Path, args: &[&str], tail: &[&std::ffi::OsStr]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find daq-engine itself: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .arg(library)
        .args(tail)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the library probe: {e}"))?;
    let t0 = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t0.elapsed() < PROBE_LIMIT => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{}: loading it did not finish within {} s",
                    library.display(),
                    PROBE_LIMIT.as_secs()
                ));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut text);
    }
    Err(match status.code() {
        Some(_) if !text.trim().is_empty() => text.trim().to_string(),
        _ => format!(
            "{}: the library crashed while loading ({})",
            library.display(),
            super::supervisor::describe(status)
        ),
    })
}

/// The registry with the user libraries the setup names (each probed in a child process
/// first), after checking that each such worker's function is there and takes the setup's
/// buffers; or every error found.
fn user_libraries(setup: &Setup, registry: &Registry) -> Result<Registry, Vec<String>> {
    let mut seen: Vec<&Path> = Vec::new();
    let mut errors = Vec::new();
    for w in &setup.workers {
        let Some(f) = w.file.as_deref() else { continue };
        if crate::python::is_python(Some(f)) {
            if let Err(e) = probe_python(f, &w.function, w.python.as_deref()) {
                errors.push(format!("worker '{}': {e}", w.name));
            }
            continue;
        }
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        if let Err(e) = probe_library(f) {
            errors.push(format!("worker '{}': {e}", w.name));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let registry = registry
        .with_libraries(seen.iter().copied())
        .map_err(|e| vec![e.to_string()])?;
    for w in setup
        .workers
        .iter()
        .filter(|w| w.file.is_some() && !crate::python::is_python(w.file.as_deref()))
    {
        match registry.get(&w.function) {
            None => errors.push(format!(
                "worker '{}': {} has no function '{}' (it has: {})",
                w.name,
                w.file.as_deref().unwrap_or(Path::new("")).display(),
                w.function,
                registry.names_from(w.file.as_deref())
            )),
            Some(f) => {
                let s = &f.spec;
                let sides = [
                    ("sources", s.sources, w.sources.len()),
                    ("sinks", s.sinks, w.sinks.len()),
                    ("observes", s.observes, w.observes.len()),
                ];
                for (side, arity, n) in sides {
                    if !arity.allows(n) {
                        errors.push(format!(
                            "worker '{}': {} '{}' takes {arity} {side}, the setup gives {n}",
                            w.name, s.template, s.name
                        ));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(errors)
    }
}

/// `daq-engine check SETUP`: validates and prints the pipeline; with `simulate`, as a run
/// with `--simulate` would start.
pub fn check(path: &Path, dot: Option<&Path>, simulate: bool, registry: &Registry) -> i32 {
    let simulated = Simulated(registry);
    let catalog: &dyn crate::worker::Catalog = if simulate { &simulated } else { registry };
    let checked = Setup::check_file(path, catalog, setup::online_cpus());
    for d in checked.errors.iter().chain(&checked.warnings) {
        eprintln!("{d}");
    }
    if !checked.errors.is_empty() {
        eprintln!(
            "{}: {} error(s), {} warning(s)",
            path.display(),
            checked.errors.len(),
            checked.warnings.len()
        );
        return 2;
    }
    // User libraries are loaded as the run would (each in a probe process first).
    if let Err(errors) = user_libraries(&checked.setup, registry) {
        for e in &errors {
            eprintln!("{}: {e}", path.display());
        }
        eprintln!("{}: {} error(s)", path.display(), errors.len());
        return 2;
    }
    print!("{}", setup::graph::text(&checked.setup));
    if let Some(d) = dot {
        if let Err(e) = std::fs::write(d, setup::graph::dot(&checked.setup)) {
            eprintln!("daq-engine: {}: {e}", d.display());
            return 1;
        }
    }
    println!("{}: OK", path.display());
    0
}
