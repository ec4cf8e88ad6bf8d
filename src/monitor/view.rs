//! What both faces of the monitor show, derived from the supervisor's statistics snapshots:
//! the snapshot itself (typed), CPU use per worker, progress against the run's limits with
//! the time left, and warnings a physicist should act on.
//!
//! Guarantees: built only from snapshots (and `plan.json` for which workers are importers);
//! a snapshot with missing or odd fields gives zeros and empty lists, never a panic.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::run_dir::Snapshot;
use crate::run_dir::{FULL_LEVEL, FULL_WARNING_S};
/// Seconds a warning about lost events stays up after the count last rose.
pub const LOST_WARNING_S: f64 = 10.0;

/// How far a run with a limit has come.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Progress {
    /// 0…1.
    pub fraction: f64,
    /// Estimated seconds left, if it can be estimated.
    pub seconds_left: Option<f64>,
    /// What the fraction is of, e.g. "5000 events" or "20 s".
    pub of: String,
}

/// Everything the dashboard and the page show, kept up to date from snapshots.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    importers: Vec<String>,
    snapshot: Snapshot,
    previous: Option<Snapshot>,
    full_since: BTreeMap<String, f64>,
    lost_rose_at: BTreeMap<String, (f64, u64)>,
    updates: u64,
    finished: bool,
}

impl RunView {
    /// A view for a run whose importers (workers that only write) are `importers`.
    pub fn new(importers: Vec<String>) -> RunView {
        RunView {
            importers,
            ..RunView::default()
        }
    }

    /// A view for the run in `run_dir`, with its importers read from `plan.json` (none when
    /// it cannot be read: progress against `max_events` is then not shown).
    pub fn for_run(run_dir: &Path) -> RunView {
        let importers = crate::run_dir::plan::Plan::load(&run_dir.join(crate::run_dir::PLAN))
            .map(|p| {
                p.workers
                    .iter()
                    .filter(|w| w.is_importer())
                    .map(|w| w.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        RunView::new(importers)
    }

    /// Takes a new snapshot (the JSON object the supervisor passes to `Watcher::update`).
    pub fn update(&mut self, snap: &Snapshot) {
        let snap = snap.clone();
        let t = snap.t;
        for (name, b) in &snap.buffers {
            if b.fill >= FULL_LEVEL && !b.closed {
                self.full_since.entry(name.clone()).or_insert(t);
            } else {
                self.full_since.remove(name);
            }
            let before = self
                .snapshot
                .buffers
                .get(name)
                .map_or(0, |p| p.lost)
                .max(self.lost_rose_at.get(name).map_or(0, |x| x.1));
            if b.lost > before {
                self.lost_rose_at.insert(name.clone(), (t, b.lost));
            }
        }
        if self.updates > 0 {
            self.previous = Some(std::mem::take(&mut self.snapshot));
        }
        self.snapshot = snap;
        self.updates += 1;
    }

    /// As [`RunView::update`], from a line as `stats.jsonl` holds it.
    #[cfg(test)]
    pub(crate) fn update_json(&mut self, line: &serde_json::Value) {
        self.update(&Snapshot::from_json(line));
    }

    /// The run ended.
    pub fn set_finished(&mut self) {
        self.finished = true;
    }

    /// Whether the run ended.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Snapshots taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The importers' names.
    pub fn importers(&self) -> &[String] {
        &self.importers
    }

    /// CPU use of `worker` since the previous snapshot, in percent of one core; once the
    /// run ended, its mean over the run.
    pub fn cpu_percent(&self, worker: &str) -> f64 {
        if self.snapshot.ended {
            return self
                .snapshot
                .workers
                .get(worker)
                .map_or(0.0, |w| w.cpu_s / self.snapshot.t.max(1e-9) * 100.0);
        }
        let Some(prev) = &self.previous else {
            return 0.0;
        };
        let dt = self.snapshot.t - prev.t;
        match (self.snapshot.workers.get(worker), prev.workers.get(worker)) {
            (Some(now), Some(before)) if dt > 1e-6 => {
                ((now.cpu_s - before.cpu_s) / dt * 100.0).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// A word for the run's state: `running`, `paused`, `stopping` or `finished`.
    pub fn state(&self) -> &'static str {
        if self.finished || self.snapshot.ended {
            "finished"
        } else if self.snapshot.stopping {
            "stopping"
        } else if self.snapshot.paused {
            "paused"
        } else {
            "running"
        }
    }

    /// Progress against the run's limits (the one nearer its end), or `None` without one.
    pub fn progress(&self) -> Option<Progress> {
        let s = &self.snapshot;
        let by_time = s.max_seconds.filter(|m| *m > 0.0).map(|max| Progress {
            fraction: (s.t / max).clamp(0.0, 1.0),
            seconds_left: Some((max - s.t).max(0.0)),
            of: format!("{max} s"),
        });
        let by_events = s.max_events.filter(|n| *n > 0).and_then(|max| {
            let done = self
                .importers
                .iter()
                .filter_map(|w| s.workers.get(w))
                .map(|w| w.events)
                .min()?;
            let fraction = (done as f64 / max as f64).clamp(0.0, 1.0);
            let seconds_left = (fraction > 0.0 && s.t > 0.0).then(|| s.t / fraction - s.t);
            Some(Progress {
                fraction,
                seconds_left,
                of: format!("{max} events"),
            })
        });
        match (by_time, by_events) {
            (Some(a), Some(b)) => Some(if a.fraction >= b.fraction { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// What needs attention now: buffers full for long, events being lost, failed or
    /// restarted workers, devices gone or back after a gap.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.snapshot;
        let mut out: Vec<String> = s
            .waiting_for
            .iter()
            .map(|w| format!("stopping: waiting for {w}"))
            .collect();
        for (name, since) in &self.full_since {
            let long = s.t - since;
            if long >= FULL_WARNING_S {
                out.push(format!(
                    "buffer '{name}' full for {long:.0} s: its readers do not keep up \
                     (the writer waits: dead time)"
                ));
            }
        }
        for (name, (at, lost)) in &self.lost_rose_at {
            if s.t - at <= LOST_WARNING_S {
                out.push(format!(
                    "buffer '{name}' is losing events ({lost} lost so far, ring full under \
                     policy drop)"
                ));
            }
        }
        for (name, w) in &s.workers {
            if w.state == "failed" {
                out.push(format!("worker '{name}' failed (see the run log)"));
            }
            if w.restarts > 0 {
                out.push(format!(
                    "worker '{name}' was started again {} time(s)",
                    w.restarts
                ));
            }
            match w.device {
                Some(d) if !d.connected && w.state == "running" => out.push(format!(
                    "worker '{name}': the device is disconnected; waiting for it to come back \
                     (the run goes on)"
                )),
                Some(d) if d.gaps > 0 => out.push(format!(
                    "worker '{name}': the device was disconnected {} time(s); the gaps are in \
                     device_{name}.txt, the log and the HDF5 attributes",
                    d.gaps
                )),
                _ => {}
            }
            if let Some(d) = w.device {
                if d.silent && w.state == "running" {
                    out.push(format!(
                        "worker '{name}': the device sent no good event for longer than its \
                         expect_data_within (see the run log)"
                    ));
                }
                if d.bad_records > 0 {
                    out.push(format!(
                        "worker '{name}': {} bad record(s) from the device were skipped (the \
                         first bytes are in the run log)",
                        d.bad_records
                    ));
                }
            }
        }
        out
    }

    /// The snapshot with what is derived from it, as sent to the web page: the snapshot's
    /// fields plus `state`, `progress`, `warnings`, and `cpu_percent` and `cores_text` per
    /// worker.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.snapshot).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("state".into(), self.state().into());
            o.insert(
                "progress".into(),
                serde_json::to_value(self.progress()).unwrap_or_default(),
            );
            o.insert("warnings".into(), self.warnings().into());
            let cpu: serde_json::Map<String, serde_json::Value> = self
                .snapshot
                .workers
                .keys()
                .map(|w| (w.clone(), self.cpu_percent(w).into()))
                .collect();
            o.insert("cpu_percent".into(), cpu.into());
            let cores: serde_json::Map<String, serde_json::Value> = self
                .snapshot
                .workers
                .iter()
                .map(|(name, w)| (name.clone(), w.cores_text().into()))
                .collect();
            o.insert("cores_text".into(), cores.into());
            o.insert("updates".into(), self.updates.into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(t: f64, fill: f64, lost: u64, cpu: f64, events: u64) -> serde_json::Value {
        json!({
            "t": t, "time": "x", "stopping": false, "paused": false,
            "max_events": 1000, "max_seconds": null,
            "buffers": {"raw": {"events_in": events, "events_out": {"sink": events},
                "rate_hz": 10.0, "fill": fill, "deadtime": 0.0, "deadtime_total_s": 0.0,
                "lost": lost, "closed": false}},
            "workers": {"source": {"processes": 1, "events": events, "cpu_s": cpu,
                "state": "running", "restarts": 0}}
        })
    }

    #[test]
    fn full_buffer_warned_only_after_three_seconds() {
        let mut v = RunView::new(vec!["source".into()]);
        v.update_json(&snap(1.0, 1.0, 0, 0.0, 10));
        v.update_json(&snap(3.9, 1.0, 0, 0.0, 10));
        assert!(v.warnings().is_empty(), "{:?}", v.warnings());
        v.update_json(&snap(4.0, 1.0, 0, 0.0, 10));
        assert_eq!(v.warnings().len(), 1);
        assert!(v.warnings()[0].contains("'raw' full for 3 s"));
        v.update_json(&snap(5.0, 0.5, 0, 0.0, 10));
        assert!(v.warnings().is_empty());
    }

    #[test]
    fn rising_lost_count_warned_then_forgotten() {
        let mut v = RunView::new(vec![]);
        v.update_json(&snap(1.0, 0.0, 0, 0.0, 0));
        v.update_json(&snap(2.0, 0.0, 5, 0.0, 0));
        assert_eq!(v.warnings().len(), 1);
        assert!(v.warnings()[0].contains("5 lost"));
        v.update_json(&snap(2.0 + LOST_WARNING_S + 0.1, 0.0, 5, 0.0, 0));
        assert!(v.warnings().is_empty());
    }

    #[test]
    fn a_stop_says_what_it_waits_for() {
        let mut v = RunView::new(vec![]);
        v.update_json(&serde_json::json!({"t": 3.0, "stopping": true,
            "waiting_for": ["compressing raw.h5 (157.9 MB, 37%)"]}));
        assert_eq!(v.state(), "stopping");
        assert_eq!(
            v.warnings(),
            vec!["stopping: waiting for compressing raw.h5 (157.9 MB, 37%)".to_string()]
        );
    }

    #[test]
    fn cpu_percent_and_progress_from_two_snapshots() {
        let mut v = RunView::new(vec!["source".into()]);
        v.update_json(&snap(1.0, 0.0, 0, 0.5, 100));
        v.update_json(&snap(3.0, 0.0, 0, 1.5, 250));
        assert!((v.cpu_percent("source") - 50.0).abs() < 1e-9);
        let p = v.progress().unwrap();
        assert!((p.fraction - 0.25).abs() < 1e-12);
        assert!((p.seconds_left.unwrap() - 9.0).abs() < 1e-9);
        assert_eq!(p.of, "1000 events");
        let j = v.to_json();
        assert_eq!(j["state"], "running");
        assert_eq!(j["workers"]["source"]["events"], 250);
    }

    #[test]
    fn device_gone_and_back_is_warned_and_cores_are_shown() {
        let mut v = RunView::new(vec!["source".into()]);
        let mut s = snap(1.0, 0.0, 0, 0.0, 10);
        s["workers"]["source"]["device"] = json!({"connected": false, "gaps": 0});
        s["workers"]["source"]["cores"] = json!([1]);
        s["workers"]["source"]["pinned"] = json!([1]);
        v.update_json(&s);
        assert_eq!(v.warnings().len(), 1, "{:?}", v.warnings());
        assert!(v.warnings()[0].contains("disconnected; waiting"));
        assert_eq!(v.snapshot().workers["source"].cores_text(), "1 (pinned)");
        s["workers"]["source"]["device"] = json!({"connected": true, "gaps": 1});
        s["workers"]["source"]["pinned"] = json!([]);
        v.update_json(&s);
        assert!(
            v.warnings()[0].contains("disconnected 1 time(s)"),
            "{:?}",
            v.warnings()
        );
        assert_eq!(v.snapshot().workers["source"].cores_text(), "1");
        s["workers"]["source"]["device"] = json!(null);
        v.update_json(&s);
        assert!(v.warnings().is_empty());
    }

    #[test]
    fn bad_device_data_and_silence_are_warned() {
        let mut v = RunView::new(vec!["source".into()]);
        let mut s = snap(1.0, 0.0, 0, 0.0, 10);
        s["workers"]["source"]["device"] =
            json!({"connected": true, "gaps": 0, "bad_records": 3, "silent": true});
        v.update_json(&s);
        let w = v.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("no good event"), "{w:?}");
        assert!(w[1].contains("3 bad record(s)"), "{w:?}");
    }

    #[test]
    fn odd_snapshot_gives_zeros() {
        let mut v = RunView::new(vec!["source".into()]);
        v.update_json(&json!({"t": "no", "buffers": 3}));
        assert_eq!(v.snapshot().t, 0.0);
        assert!(v.snapshot().buffers.is_empty());
        assert!(v.progress().is_none());
    }
}
