//! What the command line does with a setup file: validate it, make the run directory, plan
//! the rings, supervise the run, and report.

use super::registry::Registry;
use std::path::{Path, PathBuf};

/// Makes `target/run_<UTC time>/` (with `_2`, `_3`… when two runs start in the same
/// second) and returns it with the run id used in ring names.
pub fn make_run_dir(target: &Path) -> std::io::Result<(PathBuf, String)> {
    std::fs::create_dir_all(target)?;
    let stamp = super::utc_now()
        .replace([':', '.'], "-")
        .trim_end_matches('Z')
        .to_string();
    let stamp = &stamp[..19.min(stamp.len())];
    for n in 1..1000 {
        let name = if n == 1 {
            format!("run_{stamp}")
        } else {
            format!("run_{stamp}_{n}")
        };
        let dir = target.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                // Unique among live runs: the pid, a per-process sequence and the time, so
                // two runs started by one process in one second (into different target
                // directories) get different ring names.
                static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let id = format!("{}-{seq}-{nanos:x}", std::process::id());
                return Ok((dir, id));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "a thousand runs started in one second",
    ))
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
                "daq-engine: no benchmark '{other}'; choose pipeline, ring, analysis, hdf5 or drivers"
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
    let registry =
        match registry.with_libraries(setup.workers.iter().filter_map(|w| w.file.as_deref())) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("daq-engine: {e}");
                return 2;
            }
        };
    let registry = &registry;
    let mut bad = false;
    for w in setup.workers.iter().filter(|w| w.file.is_some()) {
        match registry.get(&w.function) {
            None => {
                bad = true;
                eprintln!(
                    "daq-engine: worker '{}': {} has no function '{}' (it has: {})",
                    w.name,
                    w.file.as_deref().unwrap_or(Path::new("")).display(),
                    w.function,
                    registry.names_from(w.file.as_deref())
                );
            }
            Some(f) => {
                let s = &f.spec;
                let sides = [
                    ("sources", s.sources, w.sources.len()),
                    ("sinks", s.sinks, w.sinks.len()),
                    ("observes", s.observes, w.observes.len()),
                ];
                for (side, arity, n) in sides {
                    if !arity.allows(n) {
                        bad = true;
                        eprintln!(
                            "daq-engine: worker '{}': {} '{}' takes {arity} {side}, the setup gives {n}",
                            w.name, s.template, s.name
                        );
                    }
                }
            }
        }
    }
    if bad {
        return 2;
    }
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
    let (run_dir, run_id) = match make_run_dir(&target) {
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
    let summary = match sup.run_watched(watcher) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("daq-engine: {e}");
            return 1;
        }
    };
    let _ = std::fs::write(
        run_dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    eprintln!(
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
        eprintln!(
            "  {b}: {n} events{}",
            if lost > 0 {
                format!(", {lost} lost (ring full under `policy: drop`)")
            } else {
                String::new()
            }
        );
    }
    for f in &summary.failures {
        eprintln!("  failure: {f}");
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
                    eprintln!("  {line}");
                }
            }
        }
    }
    tracing::info!("run ended with exit code {}", summary.exit_code);
    summary.exit_code
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
    if !checked.python_workers.is_empty() {
        eprintln!("Python workers (not runnable here; port them or use a built-in function):");
        for p in &checked.python_workers {
            eprintln!("  {} (file {}, function {})", p.worker, p.file, p.function);
        }
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
