//! `daq-engine SETUP`: validate it, make the run directory, plan the rings, recover
//! unfinished runs, start the dashboard or web page, supervise the run, and report.

use super::check::{load, user_libraries};
use super::exit;
use super::recover::{recover_unfinished, Unfinished};
use super::RunArgs;
use crate::engine::{make_locked_run_dir, plan_of, terminal, Progress, RunOptions, Supervisor};
use crate::setup;
use crate::worker::Registry;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `daq-engine SETUP`: runs it. Returns the exit code.
pub fn run(path: &Path, args: &RunArgs, registry: &Registry) -> i32 {
    let mut setup = match load(path, registry, args.simulate) {
        Ok(s) => s,
        Err(rejected) => {
            // A detector not plugged in when the service starts (after a power cut) is
            // refused here: that is alerted too.
            let target = args
                .target_directory
                .clone()
                .unwrap_or(rejected.target_directory);
            let command = rejected.alert_command.as_deref();
            alert_refusal(command, path, &target, &rejected.errors, &[]);
            return exit::BAD_INPUT;
        }
    };
    if let Err(e) = setup.apply_limits(args.max_events, args.max_seconds) {
        eprintln!("daq-engine: {e}");
        return exit::BAD_INPUT;
    }
    let target = args
        .target_directory
        .clone()
        .unwrap_or_else(|| setup.target_directory.clone());
    // From here on a run that cannot start is alerted: under a service manager nobody sees
    // the start being tried again and given up.
    let alert_command = setup.options.alert_command.clone();
    let refuse = |why: &str, recovered: Option<Unfinished>, made: Option<&Path>, code: i32| {
        if let Some(dir) = made {
            // Nothing ran in it: left, the next start would take it for a killed run.
            let _ = std::fs::remove_dir_all(dir);
        }
        refused(
            alert_command.as_deref(),
            path,
            &target,
            why,
            recovered,
            code,
        )
    };
    let registry = match user_libraries(&setup, registry) {
        Ok(r) => r,
        Err(errors) => {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return refuse(&why.join("\n"), None, None, exit::BAD_INPUT);
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
    if let Some(mut why) = super::check::disk_problem(&target, setup.options.disk_reserve_mb) {
        // Not recovered on a disk this full: said, so that a killed run is not forgotten.
        let unfinished = crate::export::recover::unfinished_runs(&target);
        if !unfinished.is_empty() {
            why.push_str(&format!(
                "; {} earlier run(s) here ended without a summary and are recovered by the \
                 next run that starts: {}",
                unfinished.len(),
                unfinished
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return refuse(&why, None, None, exit::BAD_INPUT);
    }
    let recovering = recover_unfinished(&target);
    let (run_dir, run_id, _run_lock) = match make_locked_run_dir(&target) {
        Ok(x) => x,
        Err(e) => {
            let why = format!("cannot make a run directory in {}: {e}", target.display());
            return refuse(&why, Some(recovering), None, exit::FAILED);
        }
    };
    crate::engine::init_log(&crate::run_dir::log_path(&run_dir));
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
            let why = format!("{}: {e}", run_dir.join(name).display());
            return refuse(&why, Some(recovering), Some(&run_dir), exit::FAILED);
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
                let why = e.to_string();
                return refuse(&why, Some(recovering), Some(&run_dir), exit::BAD_INPUT);
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
            let why = format!("cannot find my own executable to start workers: {e}");
            // The terminal back first: the dashboard sends stderr into the run directory.
            drop(tui);
            return refuse(&why, Some(recovering), Some(&run_dir), exit::FAILED);
        }
    };
    let plan = plan_of(&setup, &run_dir, &run_id);
    let mut sup = match Supervisor::prepare(
        plan,
        RunOptions {
            worker_exe: exe,
            worker_args: vec![],
            progress,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            drop(tui);
            return refuse(
                &e.to_string(),
                Some(recovering),
                Some(&run_dir),
                exit::FAILED,
            );
        }
    };
    // An earlier run here that was killed could not alert its own end: this run does.
    for (dir, text) in &recovering.killed {
        sup.alert(
            crate::engine::alert::Kind::RunKilled,
            &dir.display().to_string(),
            text,
        );
    }
    if !args.quiet {
        eprintln!("daq-engine: run directory {}", run_dir.display());
        // One line for the buffers of each kind of memory (usually all of them alike): on
        // the dashboard these lines stay in view.
        let mut kinds: Vec<(String, Vec<String>)> = Vec::new();
        for (b, backing) in sup.backings() {
            match kinds.iter_mut().find(|(k, _)| *k == backing) {
                Some((_, names)) => names.push(b),
                None => kinds.push((backing, vec![b])),
            }
        }
        for (backing, names) in kinds {
            let noun = if names.len() == 1 {
                "buffer"
            } else {
                "buffers"
            };
            eprintln!("  {noun} {}: {backing}", names.join(", "));
        }
    }
    for w in sup.realtime_warnings() {
        tracing::warn!("{w}");
        eprintln!("daq-engine: warning: {w}");
    }
    if let Some(t) = tui {
        watchers.push(Box::new(t));
    }
    let watcher: Option<&mut dyn crate::engine::Watcher> = if watchers.is_empty() {
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
    // Likewise the temporary files of rewrites its killed workers did not finish.
    for name in crate::fsio::remove_interrupted_rewrites(&run_dir) {
        tracing::info!("removed {name}, left by a rewrite cut short");
    }
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("daq-engine: {e}");
            return exit::FAILED;
        }
    };
    // The last lines go through the terminal thread too: a terminal nobody reads must not
    // keep the process from ending (they are given a few seconds, then the process exits).
    macro_rules! say {
        ($($t:tt)*) => { terminal::say(format!($($t)*) + "\n") };
    }
    let summary_path = run_dir.join(crate::run_dir::SUMMARY);
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    if let Err(e) = write_summary(
        &summary_path,
        text.as_bytes(),
        crate::run_dir::FULL_DISK_WAIT,
        &mut |line| say!("{line}"),
    ) {
        if run_dir.is_dir() {
            say!(
                "daq-engine: could not write {}: {e}; the next run in {} recovers this one",
                summary_path.display(),
                target.display()
            );
        } else {
            say!(
                "daq-engine: no summary: the run directory is gone ({}: deleted, moved or \
                 renamed; see the failure below)",
                run_dir.display()
            );
        }
        tracing::warn!("could not write {}: {e}", summary_path.display());
    }
    say!(
        "daq-engine: {} after {:.1} s{}; run directory {}",
        if summary.exit_code == 0 {
            "finished"
        } else {
            "FAILED"
        },
        summary.seconds,
        summary
            .stop_seconds
            .map(|s| format!(" ({s:.2} s from the stop to the end)"))
            .unwrap_or_default(),
        run_dir.display()
    );
    say!("  stopped by {}", summary.stopped_by.text());
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
        // A reader that lost events of its own (its worker ended or died before reading
        // them, or could not write or deliver them): said here, or a run whose filter read
        // 1 event in 10 looked whole.
        for (reader, books) in summary.readers.get(b).into_iter().flatten() {
            let own = books.lost.saturating_sub(lost);
            if own > 0 {
                say!(
                    "    {own} of them lost for reader '{reader}' (it ended before reading \
                     them, or could not write or deliver them: the log says which)"
                );
            }
        }
    }
    for f in &summary.failures {
        say!("  failure: {f}");
    }
    for (worker, d) in &summary.devices {
        if d.bad_records > 0 || d.gaps > 0 {
            say!(
                "  worker '{worker}': its device sent {} bad records (skipped, the log says \
                 where) and came back from {} disconnect(s)",
                d.bad_records,
                d.gaps
            );
        }
    }
    for (worker, n) in &summary.restarts {
        say!(
            "  worker '{worker}' was started again {n} time(s) after a failure (the log says why)"
        );
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
    Unfinished::wait_for_compression(recovering.compressing, || say!("{WAITING_FOR_COMPRESSION}"));
    let dropped = terminal::dropped();
    if dropped > 0 {
        tracing::warn!("{dropped} lines for the terminal were dropped: nothing read it");
    }
    terminal::drain(std::time::Duration::from_secs(5));
    tracing::info!("run ended with exit code {}", summary.exit_code);
    summary.exit_code
}

/// What a run's end or a refusal says while a recovered run's files are still compressed.
const WAITING_FOR_COMPRESSION: &str =
    "daq-engine: waiting for the compression of a recovered run's files";

/// The run of `path` cannot start: says `why` on stderr, alerts it with the killed runs
/// `recovered` for it ([`alert_refusal`]), and waits for the compression of the recovered
/// files. Under a service manager a refused start is tried again a few times and then given
/// up: without the alert nobody away would know. Returns `code`.
fn refused(
    alert_command: Option<&str>,
    path: &Path,
    target: &Path,
    why: &str,
    recovered: Option<Unfinished>,
    code: i32,
) -> i32 {
    for line in why.lines() {
        eprintln!("daq-engine: {line}");
    }
    let (killed, compressing) = recovered
        .map(|r| (r.killed, r.compressing))
        .unwrap_or_default();
    alert_refusal(alert_command, path, target, why, &killed);
    Unfinished::wait_for_compression(compressing, || eprintln!("{WAITING_FOR_COMPRESSION}"));
    code
}

/// With `alert_command`, and nobody at a terminal to see the refusal (stdin is not one: a
/// service, cron, a script), alerts that the run of `path` could not start (`run_refused`,
/// `DAQ_RUN_DIR` the `target` directory) after the `killed` runs its start recovered
/// (`run_killed`), and waits for the commands (at most
/// [`alert::TIMEOUT`](crate::engine::alert::TIMEOUT)).
fn alert_refusal(
    alert_command: Option<&str>,
    path: &Path,
    target: &Path,
    why: &str,
    killed: &[(PathBuf, String)],
) {
    use crate::engine::alert::{Alerts, Kind, TIMEOUT};
    if alert_command.is_none() || std::io::stdin().is_terminal() {
        return;
    }
    let mut alerts = Alerts::before_run(alert_command.map(str::to_string), target);
    for (dir, text) in killed {
        alerts.raise(Kind::RunKilled, &dir.display().to_string(), text);
    }
    let reason = why.strip_prefix("error: ").unwrap_or(why);
    let text = format!("the run of {} could not start: {reason}", path.display());
    alerts.raise(Kind::RunRefused, &path.display().to_string(), &text);
    alerts.finish(TIMEOUT);
}

/// Writes summary.json. A disk that is full may be full for a moment only, as when another
/// program's temporary file filled it: the write is tried again for up to `wait`, said once,
/// unless Ctrl-C, SIGTERM or SIGHUP comes.
fn write_summary(
    path: &Path,
    text: &[u8],
    wait: Duration,
    say: &mut dyn FnMut(String),
) -> std::io::Result<()> {
    let signals = crate::engine::signals_received();
    crate::fsio::retry_while_full(
        wait,
        &|| crate::engine::signals_received() != signals,
        &mut || {
            say(format!(
                "daq-engine: the disk is full: waiting up to {} s for space to write {} \
                 (Ctrl-C to give up)",
                wait.as_secs(),
                path.display()
            ))
        },
        &mut || crate::fsio::write_atomic(path, text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs of `kib` KiB at `dir`, unmounted when dropped; None when not root.
    struct Tmpfs(PathBuf);
    impl Tmpfs {
        fn mount(dir: &Path, kib: u32) -> Option<Tmpfs> {
            std::fs::create_dir_all(dir).unwrap();
            let opts = format!("size={kib}k");
            match nix::mount::mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            ) {
                Ok(()) => Some(Tmpfs(dir.to_path_buf())),
                Err(e) => {
                    println!("SKIPPED: cannot mount a tmpfs ({e}); run as root");
                    None
                }
            }
        }
        /// Fills the disk with `ballast` until it is full.
        fn fill(&self) -> PathBuf {
            use std::io::Write;
            let p = self.0.join("ballast");
            let mut f = std::fs::File::create(&p).unwrap();
            // At most twice the disk, should the tmpfs not be there.
            for _ in 0..128 {
                if f.write_all(&[0u8; 4096]).is_err() {
                    break;
                }
            }
            p
        }
    }
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    /// issue 12, the soak's small disk: a disk that was full for a moment (another
    /// program's file) left the run without summary.json ("could not write … No space left
    /// on device"); it is written once space is back.
    #[test]
    fn summary_waits_for_a_disk_full_for_a_moment() {
        let dir = std::env::temp_dir().join(format!("daq-summary-wait-{}", std::process::id()));
        let Some(disk) = Tmpfs::mount(&dir, 256) else {
            return;
        };
        let ballast = disk.fill();
        let path = dir.join("summary.json");
        // Full for good within the wait: given up, said once.
        let mut lines = Vec::new();
        let r = write_summary(&path, b"{}", Duration::from_millis(600), &mut |l| {
            lines.push(l)
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("disk is full"), "{lines:?}");
        // Space comes back while it waits: written.
        let freeing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            std::fs::remove_file(ballast).unwrap();
        });
        let text = vec![b'x'; 20_000];
        write_summary(&path, &text, Duration::from_secs(120), &mut |_| {}).unwrap();
        freeing.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), text);
        drop(disk);
    }
}
