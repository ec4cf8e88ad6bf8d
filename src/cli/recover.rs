//! `daq-engine recover RUN_DIR`, and the recovery of unfinished runs before a new run
//! starts in the same target directory.

use super::exit;
use crate::export::recover::CutOutcome;
use std::path::Path;

/// Cuts run file `path` to its whole events (as [`crate::export::recover::cut_here`]) in a
/// child process, `daq-engine __recover-file`, which is stopped when libhdf5 loops in it
/// ([`Spin`](crate::export::spin::Spin)): the file is then kept as it left it, and the recovery of the other
/// files, and the run starting after them, go on.
fn cut_apart(path: &Path) -> CutOutcome {
    use std::process::{Command, Stdio};
    let failed = |why: String| format!("cannot read {}: {why}", path.display());
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find daq-engine: {e}")))?;
    let mut child = Command::new(exe)
        .args(["__recover-file", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start its recovery: {e}")))?;
    let pid = child.id();
    let cpu = || crate::procfs::Stat::read(pid).and_then(|s| s.cpu_seconds());
    let mut spin =
        crate::export::spin::Spin::new(crate::procfs::io_bytes(pid), cpu().unwrap_or(0.0));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(failed(format!("waiting for its recovery: {e}"))),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Some(spent) = cpu() else { continue };
        if spin.spinning(crate::procfs::io_bytes(pid), spent) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "cannot read {}; the file is kept as its recovery left it",
                crate::export::spin::Spin::said(path)
            ));
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut out);
    }
    match serde_json::from_str::<CutOutcome>(&out) {
        Ok(r) => r,
        Err(_) => Err(failed(format!(
            "its recovery ended ({status}) without an answer"
        ))),
    }
}

/// `daq-engine __recover-file FILE`: the child process a recovery cuts each file in. Cuts
/// it and prints the outcome as JSON; exit 0 when it printed one.
pub fn cut_file(path: &Path) -> i32 {
    let outcome = crate::export::recover::cut_here(path);
    match serde_json::to_string(&outcome) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(_) => exit::FAILED,
    }
}

/// What recovering the unfinished runs of a target directory left for the new run.
pub struct Unfinished {
    /// Compressing the recovered files, going on at the lowest priority.
    pub compressing: Option<std::thread::JoinHandle<()>>,
    /// Each recovered run's directory and what happened to it, in words, for the new run's
    /// `run_killed` alert.
    pub killed: Vec<(std::path::PathBuf, String)>,
}

impl Unfinished {
    /// Waits for the compression of the recovered files if it still goes on, saying so with
    /// `say` first: cut short by the exit, it would leave a partial file beside the recovered
    /// one for good.
    pub fn wait_for_compression(
        compressing: Option<std::thread::JoinHandle<()>>,
        say: impl FnOnce(),
    ) {
        if let Some(t) = compressing.filter(|t| !t.is_finished()) {
            say();
            let _ = t.join();
        }
    }
}

/// Recovers the runs in `target` that did not finish (see [`crate::export::recover`]),
/// saying what it does on stderr and in the log. Their files are readable and summarised
/// when it returns; compressing them (minutes for a large file) goes on in the returned
/// thread, at the lowest priority, while the new run starts.
pub fn recover_unfinished(target: &Path) -> Unfinished {
    crate::export::recover::remove_stale_staging(target);
    let mut later = Vec::new();
    let mut killed = Vec::new();
    for dir in crate::export::recover::unfinished_runs(target) {
        say_recovering(&dir);
        // A run that ended, its summary not written for a full disk, alerted its own end.
        let ended = crate::export::recover::ended_without_summary(&dir);
        match crate::export::recover::recover_run_dir_then_compress(&dir, &cut_apart) {
            Ok((rec, c)) => {
                if !ended {
                    killed.push((dir.clone(), killed_text(&dir, Some(&rec))));
                }
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
                if !ended {
                    killed.push((dir.clone(), killed_text(&dir, None)));
                }
                report_recovery(&dir, Err(e));
            }
        }
    }
    let compressing = (!later.iter().all(|c| c.files().is_empty())).then(|| {
        std::thread::spawn(move || {
            for c in later {
                c.run();
            }
        })
    });
    Unfinished {
        compressing,
        killed,
    }
}

/// What became of the unfinished run in `dir`, for its alert: how long it ran as of its
/// last stats line, and what its recovery kept (`None`: the recovery failed).
fn killed_text(dir: &Path, rec: Option<&crate::export::recover::RunRecovery>) -> String {
    let mut text = "the run ended without its summary (its supervisor was killed or ran out \
                    of memory, or the machine stopped)"
        .to_string();
    if let Some(last) = crate::run_dir::last_snapshot(dir) {
        text.push_str(&format!(
            " after {:.0} s, its last sign of life at {}",
            last.t, last.time
        ));
    }
    match rec {
        Some(r) => {
            text.push_str(&format!(
                "; recovered at the next run's start: {} events in {} file(s)",
                r.events(),
                r.files.len()
            ));
            if !r.failed.is_empty() {
                text.push_str(&format!(", {} file(s) not recovered", r.failed.len()));
            }
        }
        None => text.push_str("; its recovery failed (see the next run's log)"),
    }
    text
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
            exit::FAILED
        }
    }
}

/// `daq-engine recover RUN_DIR`; also `daq-engine recover TARGET_DIR`, which recovers each
/// run in it that did not finish.
pub fn recover(run_dir: &Path) -> i32 {
    if !run_dir.is_dir() {
        eprintln!("daq-engine: {} is not a run directory", run_dir.display());
        return exit::BAD_INPUT;
    }
    // A directory that is not a run's got a summary.json and a lock file of its own (a
    // target directory, a home).
    if !crate::export::recover::is_run_dir(run_dir) {
        return recover_target(run_dir);
    }
    if crate::export::recover::finished(run_dir) {
        eprintln!(
            "daq-engine: {} finished (its summary.json was written by the run): nothing to \
             recover",
            run_dir.display()
        );
        return exit::OK;
    }
    // Its files hold what they held when it was recovered: recovering again would only write
    // a new "recovered at" into the summary.
    if let Some(at) = crate::export::recover::recovered_already(run_dir) {
        eprintln!(
            "daq-engine: {} was recovered already{}: nothing to recover, its files and \
             summary.json are left as they are",
            run_dir.display(),
            if at.is_empty() {
                String::new()
            } else {
                format!(" (at {at})")
            }
        );
        return exit::OK;
    }
    let r = crate::export::recover::recover_run_dir(run_dir, &cut_apart);
    let code = report_recovery(run_dir, r);
    if code == 0 {
        eprintln!(
            "daq-engine: {} recovered; summary.json says what it holds",
            run_dir.display()
        );
    }
    code
}

/// `daq-engine recover` of a directory that is not a run directory: the runs in it (a
/// target directory) that did not finish, each recovered; nothing written when it holds
/// none.
fn recover_target(target: &Path) -> i32 {
    let runs = crate::export::recover::unfinished_runs(target);
    if runs.is_empty() {
        if super::status::newest_run(target).is_some() {
            eprintln!(
                "daq-engine: {}: every run in it finished or is running: nothing to recover",
                target.display()
            );
            return exit::OK;
        }
        eprintln!(
            "daq-engine: {} is not a run directory (it has no .lock file, which every run \
             directory has from its start, nor a plan.json) and holds none: give a run \
             directory (TARGET/run_…)",
            target.display()
        );
        return exit::BAD_INPUT;
    }
    let mut code = exit::OK;
    for dir in runs {
        say_recovering(&dir);
        code = code.max(recover(&dir));
    }
    code
}

/// The line that says a run is being recovered, before its files are.
fn say_recovering(dir: &Path) {
    let why = if crate::export::recover::ended_without_summary(dir) {
        "ended but wrote no summary.json (a full disk?)"
    } else {
        "did not finish (no readable summary.json)"
    };
    eprintln!("daq-engine: {} {why}: recovering its files", dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that ended but had no room for its summary was recovered by the next run as
    /// killed, with a `run_killed` alert ("its supervisor was killed or ran out of memory"):
    /// it alerted its own end. A killed run beside it still is.
    #[test]
    fn a_run_that_ended_without_room_for_its_summary_raises_no_killed_alert() {
        let target = crate::fsio::test_dir("recover-ended-alert");
        let line = |ended: bool| {
            serde_json::to_string(&crate::run_dir::Snapshot {
                t: 5.0,
                ended,
                ..Default::default()
            })
            .unwrap()
        };
        for (name, ended) in [
            ("run_2026-12-08T03-00-00", true),
            ("run_2026-12-08T04-00-00", false),
        ] {
            let run = target.join(name);
            std::fs::create_dir(&run).unwrap();
            std::fs::write(run.join(crate::export::recover::LOCK_FILE), "").unwrap();
            std::fs::write(
                run.join(crate::run_dir::STATS),
                format!("{}\n", line(ended)),
            )
            .unwrap();
        }
        let u = recover_unfinished(&target);
        let killed: Vec<_> = u.killed.iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(killed, [target.join("run_2026-12-08T04-00-00")]);
        std::fs::remove_dir_all(&target).unwrap();
    }

    /// `recover` of a directory that is not a run directory wrote a summary.json ("recovered",
    /// no files) and a lock file into it and said it was recovered. Now it refuses one that
    /// holds no runs, writing nothing, and recovers the unfinished runs of a target directory.
    #[test]
    fn recover_of_a_directory_that_is_not_a_run_writes_nothing_there() {
        let home = crate::fsio::test_dir("recover-not-a-run");
        std::fs::write(home.join("notes.txt"), "mine").unwrap();
        assert_eq!(recover(&home), exit::BAD_INPUT);
        let mut left: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt"], "nothing written into it");

        // A target directory with one killed run (lock file, stats, no summary) and one
        // finished run: the killed one is recovered, the target itself gets nothing.
        let killed = home.join("run_2026-12-06T10-00-00");
        let done = home.join("run_2026-12-06T11-00-00");
        for run in [&killed, &done] {
            std::fs::create_dir(run).unwrap();
            std::fs::write(run.join(crate::export::recover::LOCK_FILE), "").unwrap();
        }
        std::fs::write(done.join("summary.json"), "{\"events\": {}}").unwrap();
        assert_eq!(recover(&home), exit::OK);
        assert!(!home.join("summary.json").exists());
        assert!(!home.join(crate::export::recover::LOCK_FILE).exists());
        let summary = std::fs::read_to_string(killed.join("summary.json")).unwrap();
        assert!(summary.contains("\"recovered\": true"), "{summary}");
        // Again: every run in it has its summary now.
        assert_eq!(recover(&home), exit::OK);
        std::fs::remove_dir_all(&home).unwrap();

        // A run of an engine before the lock file: its plan says it is one.
        let old = crate::fsio::test_dir("recover-old-run");
        std::fs::write(old.join(crate::run_dir::PLAN), "{}").unwrap();
        assert_eq!(recover(&old), exit::OK);
        assert!(old.join("summary.json").exists());
        std::fs::remove_dir_all(&old).unwrap();
    }
}
