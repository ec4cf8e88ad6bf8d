//! `daq-engine status RUN_DIR`: the last line of the run's statistics, readable.

use super::exit;
use std::path::Path;

/// A readable report of one stats.jsonl line; `gone`: the run's processes ended before
/// the run did (no progress is shown, it will make none).
pub fn format_status(v: &serde_json::Value, run_dir: &Path, gone: bool) -> String {
    use std::fmt::Write;
    let mut view = crate::monitor::RunView::for_run(run_dir);
    view.update(&crate::run_dir::Snapshot::from_json(v));
    let snap = view.snapshot();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {}: {:.1} s at {}{}{}",
        run_dir.display(),
        snap.t,
        if snap.time.is_empty() {
            "?"
        } else {
            &snap.time
        },
        snap.paused_text()
            .map_or(String::new(), |p| format!(", {p}")),
        if snap.ended {
            " (ended)"
        } else if snap.stopping {
            " (stopping)"
        } else if snap.paused {
            " (paused)"
        } else {
            ""
        }
    );
    if let Some(c) = snap.stopped_by {
        let _ = writeln!(s, "stopped by {}", c.text());
    }
    if let Some(p) = view.progress().filter(|_| !snap.ended && !gone) {
        let _ = writeln!(
            s,
            "progress: {:.0}% of {}{}",
            (p.fraction * 100.0).floor(),
            p.of,
            p.seconds_left
                .map_or(String::new(), |l| format!(", {l:.0} s left"))
        );
    }
    // An ended run shows its means over the time it was not paused (a line under the table
    // says so when it was paused).
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
        let rate = view.rate_hz(name);
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
    if ended && snap.paused_s > 0.0 {
        let _ = writeln!(
            s,
            "mean Hz: over the {:.1} s not paused ({:.1} s of the run's {:.1} s were paused)",
            snap.t - snap.paused_s,
            snap.paused_s,
            snap.t
        );
    }
    // `lost`: events the worker will never read of the buffers it reads, beyond what they
    // dropped themselves (it died, was restarted or left holding them), as summary.json.
    let _ = writeln!(
        s,
        "{:<20} {:>12} {:>10} {:>9} {:>10} {:>12} {:>8}",
        "worker", "events", "state", "processes", "cpu s", "core", "lost"
    );
    for (name, w) in &snap.workers {
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>10} {:>9} {:>10.2} {:>12} {:>8}",
            name,
            w.events_text(),
            w.state,
            w.processes,
            w.cpu_s,
            w.cores_text(),
            view.reader_lost(name)
        );
    }
    let kafka: Vec<(&String, &crate::run_dir::KafkaCounts)> = snap
        .workers
        .iter()
        .filter_map(|(n, w)| w.kafka.as_ref().map(|k| (n, k)))
        .collect();
    if !kafka.is_empty() {
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>10} {:>9} {:>10} {:>9} {:>8}  topic",
            "kafka", "events", "delivered", "spooled", "replayed", "dropped", "lost"
        );
        for (name, k) in kafka {
            let _ = writeln!(
                s,
                "{:<20} {:>12} {:>10} {:>9} {:>10} {:>9} {:>8}  {}{}",
                name,
                k.events,
                k.delivered,
                k.spooled,
                k.replayed,
                k.dropped_spool_full,
                k.lost,
                k.topic,
                if k.spool_pending > 0 {
                    format!(" ({} in the spool)", k.spool_pending)
                } else {
                    String::new()
                }
            );
        }
    }
    for w in view.warnings() {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// Prints the state of a run from its `stats.jsonl`.
pub fn status(run_dir: &Path) -> i32 {
    let path = run_dir.join(crate::run_dir::STATS);
    // A target directory (what `--target-directory` and `target_directory` name): its
    // newest run.
    if !path.exists() && !crate::export::recover::is_run_dir(run_dir) {
        if let Some(newest) = newest_run(run_dir) {
            println!(
                "{} holds runs; the newest is {}:",
                run_dir.display(),
                newest.display()
            );
            return status(&newest);
        }
    }
    if let Err(e) = std::fs::File::open(&path) {
        eprintln!(
            "daq-engine: {}: {e} (is this a run directory?)",
            path.display()
        );
        return exit::BAD_INPUT;
    }
    // The last whole line, read from the file's end: a week's file is a gigabyte, and the
    // line being written is not one yet.
    let Some(last) = crate::run_dir::last_stats_line(&path) else {
        eprintln!("daq-engine: {}: no statistics written yet", path.display());
        return exit::FAILED;
    };
    let v: serde_json::Value = match serde_json::from_str(&last) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("daq-engine: {}: last line unreadable: {e}", path.display());
            return exit::FAILED;
        }
    };
    let now = crate::clock::parse_iso(&crate::clock::utc_now()).unwrap_or(0.0);
    let stale = stale(run_dir, &v, now);
    let (text, early) = shown(run_dir, v);
    print!("{text}");
    if let Some(note) = no_summary(run_dir) {
        println!("{note}");
    }
    match early.or(stale) {
        Some(why) => {
            println!("{why}");
            exit::FAILED
        }
        None => exit::OK,
    }
}

/// For a run that ended (its last line says so) but wrote no summary.json (no room on a
/// full disk), and was not recovered since: what to do. `status` showed it "(ended)" and
/// said nothing of the missing summary.
fn no_summary(run_dir: &Path) -> Option<String> {
    use crate::export::recover::{summary_of, RunDirLock};
    let ended = crate::export::recover::ended_without_summary(run_dir)
        && summary_of(run_dir).is_none()
        && RunDirLock::held_by_a_live_run(run_dir) == Some(false);
    ended.then(|| {
        format!(
            "it ended but could not write its summary.json (a full disk?): `daq-engine \
             recover {}` writes one from this line (a run started into the same target \
             directory does it by itself)",
            run_dir.display()
        )
    })
}

/// For a live run whose last stats line (`v`) is much older than its stats interval at
/// `now` (seconds since the epoch): its supervisor is stopped (SIGSTOP) or hung, which the
/// line alone does not show (it was shown as if current, exit 0).
fn stale(run_dir: &Path, v: &serde_json::Value, now: f64) -> Option<String> {
    use crate::export::recover::RunDirLock;
    if v.get("ended").and_then(serde_json::Value::as_bool) == Some(true)
        || RunDirLock::held_by_a_live_run(run_dir) != Some(true)
    {
        return None;
    }
    let at = crate::clock::parse_iso(v.get("time")?.as_str()?)?;
    let interval = crate::run_dir::plan::Plan::load(&run_dir.join(crate::run_dir::PLAN))
        .map_or(1.0, |p| p.stats_interval);
    let age = now - at;
    (age > 3.0 * interval + 10.0).then(|| {
        format!(
            "not answering: its last statistics line is {age:.0} s old (one every {interval} s \
             normally) while its processes are alive: the supervisor is stopped (SIGSTOP) or \
             hung"
        )
    })
}

/// What `status` prints of the run in `run_dir` whose last stats line is `v`, and why it
/// did not finish when it did not. The workers of a run whose processes are all gone are
/// shown `gone`, not in the state of that line (a killed run's table said `running`).
fn shown(run_dir: &Path, mut v: serde_json::Value) -> (String, Option<String>) {
    let ended = v.get("ended").and_then(serde_json::Value::as_bool) == Some(true);
    let early = ended_early(run_dir, ended);
    if early.is_some() {
        if let Some(workers) = v.get_mut("workers").and_then(|w| w.as_object_mut()) {
            for w in workers.values_mut() {
                if w.get("state").and_then(|s| s.as_str()) != Some("finished") {
                    w["state"] = "gone".into();
                }
            }
        }
    }
    (format_status(&v, run_dir, early.is_some()), early)
}

/// The newest run directory in `target` (run directories are named by their start time,
/// `run_<UTC>` and `run_<UTC>_<n>` for a second one in the same second).
pub(super) fn newest_run(target: &Path) -> Option<std::path::PathBuf> {
    let key = |p: &Path| {
        let name = p.file_name()?.to_str()?.strip_prefix("run_")?.to_string();
        let (stamp, n) = match name.split_once('_') {
            Some((stamp, n)) => (stamp.to_string(), n.parse::<u32>().ok()?),
            None => (name, 1),
        };
        Some((stamp, n))
    };
    std::fs::read_dir(target)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| crate::export::recover::is_run_dir(p))
        .filter_map(|p| key(&p).map(|k| (k, p)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, p)| p)
}

/// Why a run whose last line is not its end will not write one (`None` while it lives, and
/// for a run that ended or finished): none of its processes holds the run directory's lock
/// any more, so it was killed or the machine stopped.
fn ended_early(run_dir: &Path, ended: bool) -> Option<String> {
    use crate::export::recover::{finished, summary_of, RunDirLock};
    if ended || finished(run_dir) || RunDirLock::held_by_a_live_run(run_dir) != Some(false) {
        return None;
    }
    let dir = run_dir.display();
    Some(if let Some(summary) = summary_of(run_dir) {
        // The events its files hold, which the last stats line (up to a stats interval
        // before the end) does not know.
        let held: Vec<String> = summary
            .get("events")
            .and_then(|e| e.as_object())
            .into_iter()
            .flatten()
            .map(|(b, n)| format!("{b} {n} events"))
            .collect();
        format!(
            "did not finish: its processes ended before the run did (killed, or the machine \
             stopped); it was recovered: its files hold {} (summary.json)",
            if held.is_empty() {
                "no events".to_string()
            } else {
                held.join(", ")
            }
        )
    } else {
        format!(
            "did not finish: none of its processes is alive (killed, or the machine stopped) \
             and it wrote no summary; `daq-engine recover {dir}` makes its files readable \
             everywhere (a run started into the same target directory does it by itself)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stats line of a run 3 s in, not ended, written now (a line of a live run that is
    /// much older says its supervisor answers no more, see [`stale`]).
    fn a_live_line() -> String {
        serde_json::to_string(&crate::run_dir::Snapshot {
            t: 3.0,
            time: crate::clock::utc_now(),
            ..Default::default()
        })
        .unwrap()
    }

    /// `status` of a live run reads the last whole line: the supervisor may be writing the
    /// next one (it said "last line unreadable" and exited 1 while a line was half written).
    #[test]
    fn status_shows_the_last_whole_line_while_the_next_is_being_written() {
        let run = crate::fsio::test_dir("status-partial");
        let line = a_live_line();
        let path = run.join(crate::run_dir::STATS);
        std::fs::write(&path, format!("{line}\n{{\"t\": 4.0, \"buff")).unwrap();
        assert_eq!(status(&run), exit::OK);
        std::fs::write(&path, "{\"t\": 1.0, \"buff").unwrap();
        assert_eq!(status(&run), exit::FAILED, "no whole line yet");
        std::fs::remove_dir_all(&run).unwrap();
        assert_eq!(status(&run), exit::BAD_INPUT, "not a run directory");
    }

    /// An observer takes no events: its row says `-`, not 0.
    #[test]
    fn an_observer_shows_no_events_count() {
        let mut snap = crate::run_dir::Snapshot::default();
        for (name, observer) in [("scope", true), ("digitizer", false)] {
            snap.workers.insert(
                name.into(),
                crate::run_dir::WorkerStats {
                    state: "running".into(),
                    observer,
                    ..Default::default()
                },
            );
        }
        let v = serde_json::to_value(&snap).unwrap();
        assert!(v["workers"]["digitizer"].get("observer").is_none(), "{v}");
        let text = format_status(&v, Path::new("run"), false);
        let row = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().to_string()
        };
        assert_eq!(row("scope"), "-", "{text}");
        assert_eq!(row("digitizer"), "0", "{text}");
    }

    /// The column of a row of `text` starting with `name` (0 is the name).
    fn column(text: &str, name: &str, n: usize) -> String {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(n).unwrap().to_string()
    }

    /// A finished run whose reader 'h5' lost 161 events (summary.json: "161 of them lost for
    /// reader 'h5'") showed `raw 5852 … lost 0` and no warning: the worker's row has its own
    /// losses and a warning names it.
    #[test]
    fn a_reader_that_lost_events_is_shown_with_its_losses() {
        let v = serde_json::json!({"t": 14.6, "ended": true,
            "buffers": {"raw": {"events_in": 5852, "produced": 5852, "lost": 0,
                "events_out": {"h5": 5691},
                "readers": {"h5": {"delivered": 5691, "lost": 161, "pending": 0}}}},
            "workers": {"h5": {"events": 5691, "state": "finished", "restarts": 1},
                        "dig": {"events": 5852, "state": "finished"}}});
        let text = format_status(&v, Path::new("run"), false);
        assert_eq!(column(&text, "worker", 7), "lost", "{text}"); // `cpu s` is two words
        assert_eq!(column(&text, "h5 ", 6), "161", "{text}");
        assert_eq!(column(&text, "dig ", 6), "0", "{text}");
        assert!(
            text.contains("warning: reader 'h5' lost 161 event(s) of buffer 'raw'"),
            "{text}"
        );
    }

    /// A run paused 10.1 s of its 30.1 s showed a mean of 332.9 Hz where it took ~500 Hz
    /// while it ran: the mean is over the time not paused, and says so.
    #[test]
    fn the_mean_rate_of_a_paused_run_is_over_the_time_it_ran() {
        let v = serde_json::json!({"t": 30.1, "paused_s": 10.1, "ended": true,
            "buffers": {"raw": {"events_in": 10020, "rate_hz": 332.9}}});
        let text = format_status(&v, Path::new("run"), false);
        assert_eq!(column(&text, "raw ", 2), "501.0", "{text}");
        assert!(
            text.contains("mean Hz: over the 20.0 s not paused (10.1 s of the run's 30.1 s"),
            "{text}"
        );
    }

    /// `status` of a target directory said "stats.jsonl: No such file or directory (is this
    /// a run directory?)": it shows the newest run in it (by its name's time, the second
    /// run of one second after the first).
    #[test]
    fn status_of_a_target_directory_shows_its_newest_run() {
        let target = crate::fsio::test_dir("status-target");
        assert_eq!(status(&target), exit::BAD_INPUT, "no runs in it");
        for name in [
            "run_2026-12-06T10-00-00",
            "run_2026-12-06T11-00-00",
            "run_2026-12-06T11-00-00_2",
            "run_2026-12-06T09-00-00_3",
        ] {
            let run = target.join(name);
            std::fs::create_dir(&run).unwrap();
            std::fs::write(run.join(crate::export::recover::LOCK_FILE), "").unwrap();
        }
        std::fs::create_dir(target.join("run_2027-01-01T00-00-00")).unwrap(); // no lock file
        let newest = target.join("run_2026-12-06T11-00-00_2");
        assert_eq!(newest_run(&target), Some(newest.clone()));
        std::fs::write(newest.join(crate::run_dir::STATS), "").unwrap();
        assert_eq!(status(&target), exit::FAILED, "no statistics written yet");
        let line = a_live_line();
        std::fs::write(newest.join(crate::run_dir::STATS), format!("{line}\n")).unwrap();
        let lock = crate::export::recover::RunDirLock::try_lock(&newest).unwrap();
        assert_eq!(status(&target), exit::OK);
        drop(lock);
        std::fs::remove_dir_all(&target).unwrap();
    }

    /// A run whose processes are gone (kill -9, power cut) was shown as running, exit 0, for
    /// ever: its last line is not its end. `status` now asks the run directory's lock.
    #[test]
    fn a_run_whose_processes_are_gone_is_not_shown_as_running() {
        use crate::export::recover::RunDirLock;
        let run = crate::fsio::test_dir("status-gone");
        let line = a_live_line();
        std::fs::write(run.join(crate::run_dir::STATS), format!("{line}\n")).unwrap();
        // Without a lock file (not made by a run of this engine) nothing can be said.
        assert_eq!(status(&run), exit::OK);
        assert_eq!(ended_early(&run, false), None);
        // Live: the supervisor holds the lock.
        let lock = RunDirLock::try_lock(&run).unwrap().expect("free");
        assert_eq!(status(&run), exit::OK);
        assert_eq!(ended_early(&run, false), None);
        assert!(
            RunDirLock::try_lock(&run).unwrap().is_none(),
            "asking did not take the lock from the run"
        );
        // Gone: nobody holds it and there is no summary.
        drop(lock);
        let why = ended_early(&run, false).expect("a dead run");
        assert!(
            why.contains("did not finish") && why.contains("daq-engine recover"),
            "{why}"
        );
        assert_eq!(status(&run), exit::FAILED);
        // Its workers are not shown in the state of its last line (the tester's killed run
        // showed them `running`).
        let v = serde_json::json!({"t": 3.0, "buffers": {},
            "workers": {"digitizer": {"events": 10, "state": "running", "processes": 1}}});
        let (text, _) = shown(&run, v);
        assert!(
            column(&text, "digitizer ", 2) == "gone" && !text.contains("running"),
            "{text}"
        );
        // A run that ended says nothing more.
        assert_eq!(ended_early(&run, true), None);
        // Recovered.
        std::fs::write(run.join("summary.json"), "{\"recovered\": true}").unwrap();
        let why = ended_early(&run, false).expect("recovered");
        assert!(why.contains("recovered"), "{why}");
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A run that ended without room for its summary was shown "(ended)" and nothing more.
    #[test]
    fn a_run_that_ended_without_its_summary_says_how_to_get_one() {
        let run = crate::fsio::test_dir("status-no-summary");
        let line = serde_json::json!({"t": 2.0, "ended": true, "time": crate::clock::utc_now()});
        std::fs::write(run.join(crate::run_dir::STATS), format!("{line}\n")).unwrap();
        std::fs::write(run.join(crate::export::recover::LOCK_FILE), "").unwrap();
        let note = no_summary(&run).expect("said");
        assert!(note.contains("daq-engine recover"), "{note}");
        std::fs::write(run.join(crate::run_dir::SUMMARY), "{\"events\": {}}").unwrap();
        assert_eq!(no_summary(&run), None);
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A live run whose supervisor was stopped (SIGSTOP) was shown from its last line as if
    /// current ("progress: 5% of 50 s, 47 s left"), exit 0: a monitoring script could not
    /// tell. A line much older than the stats interval is said so now.
    #[test]
    fn a_live_run_whose_last_line_is_old_is_said_to_answer_no_more() {
        use crate::export::recover::RunDirLock;
        let run = crate::fsio::test_dir("status-stale");
        let line = serde_json::json!({"t": 2.6, "time": "2026-12-08T03:00:00.000Z"});
        std::fs::write(run.join(crate::run_dir::STATS), format!("{line}\n")).unwrap();
        let at = crate::clock::parse_iso("2026-12-08T03:00:00.000Z").unwrap();
        let _live = RunDirLock::try_lock(&run).unwrap().expect("free");
        assert_eq!(stale(&run, &line, at + 2.0), None);
        let why = stale(&run, &line, at + 60.0).expect("60 s without a line");
        assert!(why.contains("60 s old"), "{why}");
        assert_eq!(status(&run), exit::FAILED);
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A killed run of 60 s was shown "progress: 10% of 60 s, 54 s left" as if it went on,
    /// and, recovered, only the events of its last stats line (1818), not the 2044 its files
    /// hold. Now no progress, and the recovered summary's events.
    #[test]
    fn a_gone_run_shows_no_progress_and_a_recovered_one_what_its_files_hold() {
        use crate::export::recover::RunDirLock;
        let run = crate::fsio::test_dir("status-gone-progress");
        drop(RunDirLock::try_lock(&run).unwrap().expect("free"));
        let v = serde_json::json!({"t": 6.0, "time": "2026-12-08T02:51:40.535Z", "max_seconds": 60.0,
            "buffers": {"raw": {"events_in": 1818}},
            "workers": {"sim": {"events": 1818, "state": "running", "processes": 1}}});
        let (text, why) = shown(&run, v.clone());
        assert!(why.is_some());
        assert!(
            !text.contains("progress:") && !text.contains("left"),
            "{text}"
        );
        std::fs::write(
            run.join("summary.json"),
            r#"{"recovered": true, "events": {"raw": 2044}, "events_written": 2044}"#,
        )
        .unwrap();
        let (text, why) = shown(&run, v);
        let why = why.expect("recovered");
        assert!(why.contains("raw 2044 events"), "{text}{why}");
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn a_finished_summary_is_its_own() {
        let run = crate::fsio::test_dir("status-finished");
        // Finished: its summary is its own.
        std::fs::write(run.join("summary.json"), "{\"events\": 1}").unwrap();
        assert_eq!(ended_early(&run, false), None);
        std::fs::remove_dir_all(&run).unwrap();
    }
}
