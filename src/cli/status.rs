//! `daq-engine status RUN_DIR`: the last line of the run's statistics, readable.

use super::exit;
use std::path::Path;

/// A readable report of one stats.jsonl line.
pub fn format_status(v: &serde_json::Value, run_dir: &Path) -> String {
    use std::fmt::Write;
    let mut view = crate::monitor::RunView::new(Vec::new());
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
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "daq-engine: {}: {e} (is this a run directory?)",
                path.display()
            );
            return exit::BAD_INPUT;
        }
    };
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        eprintln!("daq-engine: {}: no statistics written yet", path.display());
        return exit::FAILED;
    };
    let v: serde_json::Value = match serde_json::from_str(last) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("daq-engine: {}: last line unreadable: {e}", path.display());
            return exit::FAILED;
        }
    };
    print!("{}", format_status(&v, run_dir));
    exit::OK
}
