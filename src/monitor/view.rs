//! What both faces of the monitor show, derived from the supervisor's statistics snapshots:
//! the snapshot itself (typed), CPU use per worker, progress against the run's limits with
//! the time left, and warnings a physicist should act on.
//!
//! Guarantees: built only from snapshots (and `plan.json` for which workers are importers);
//! a snapshot with missing or odd fields gives zeros and empty lists, never a panic.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// A worker that only writes, and the buffer it writes first (what `max_events` counts).
#[derive(Clone, Debug, Default)]
struct Importer {
    name: String,
    /// Its first sink; `None` when not known (its own `events` count then).
    sink: Option<String>,
}

/// Everything the dashboard and the page show, kept up to date from snapshots.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    importers: Vec<Importer>,
    /// The run directory whose `plan.json` is still to be read: the page and the dashboard
    /// start before the supervisor writes it, so it is read at the first snapshot that finds
    /// it (before, progress against `max_events` was never shown).
    plan_from: Option<PathBuf>,
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
            importers: importers
                .into_iter()
                .map(|name| Importer { name, sink: None })
                .collect(),
            ..RunView::default()
        }
    }

    /// A view for the run in `run_dir`, with its importers read from `plan.json`; while that
    /// cannot be read (the supervisor has not written it yet), it is tried again at each
    /// snapshot, and progress against `max_events` is not shown.
    pub fn for_run(run_dir: &Path) -> RunView {
        let mut view = RunView {
            plan_from: Some(run_dir.to_path_buf()),
            ..RunView::default()
        };
        view.read_plan();
        view
    }

    /// The importers and their first sinks from `plan.json` of `plan_from`, once it reads.
    fn read_plan(&mut self) {
        let Some(dir) = &self.plan_from else { return };
        let Ok(plan) = crate::run_dir::plan::Plan::load(&dir.join(crate::run_dir::PLAN)) else {
            return;
        };
        self.importers = plan
            .workers
            .iter()
            .filter(|w| w.is_importer())
            .map(|w| Importer {
                name: w.name.clone(),
                sink: w.sinks.first().cloned(),
            })
            .collect();
        self.plan_from = None;
    }

    /// Takes a new snapshot (the JSON object the supervisor passes to `Watcher::update`).
    pub fn update(&mut self, snap: &Snapshot) {
        self.read_plan();
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
    pub fn importers(&self) -> Vec<&str> {
        self.importers.iter().map(|i| i.name.as_str()).collect()
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

    /// Events per second into `buffer`: since the previous snapshot while the run goes on;
    /// once it ended, the run's mean over the time it was not paused (the last line's own
    /// mean is over the whole run, pauses included, so a run paused a third of its time
    /// showed a third less than its live rate).
    pub fn rate_hz(&self, buffer: &str) -> f64 {
        let s = &self.snapshot;
        let Some(b) = s.buffers.get(buffer) else {
            return 0.0;
        };
        let live = s.t - s.paused_s;
        if s.ended && live > 0.0 {
            b.events_in as f64 / live
        } else {
            b.rate_hz
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
    ///
    /// `max_events` is a limit per importer (each takes that many, see `runtime`), so the
    /// run ends with the slowest: the fraction is the least of the importers' (one that
    /// ended by itself holds nothing up and counts as done), and the time left is that
    /// importer's at its mean rate over the time not paused.
    pub fn progress(&self) -> Option<Progress> {
        let s = &self.snapshot;
        let by_time = s.max_seconds.filter(|m| *m > 0.0).map(|max| Progress {
            fraction: (s.t / max).clamp(0.0, 1.0),
            seconds_left: Some((max - s.t).max(0.0)),
            of: format!("{max} s"),
        });
        let by_events = s.max_events.filter(|n| *n > 0).and_then(|max| {
            let taken = self.importers.iter().filter_map(|i| {
                let w = s.workers.get(&i.name)?;
                // What the importer's limit counts: its events published plus lost.
                let took = i
                    .sink
                    .as_ref()
                    .and_then(|b| s.buffers.get(b))
                    .map_or(w.events, |b| b.produced.max(b.events_in));
                Some((w.state != "finished").then_some(took))
            });
            let fraction = crate::run_dir::snapshot::events_fraction(max, taken)?;
            Some(Progress {
                fraction,
                seconds_left: crate::run_dir::snapshot::seconds_left(fraction, s.t - s.paused_s),
                of: format!("{max} events"),
            })
        });
        match (by_time, by_events) {
            (Some(a), Some(b)) => Some(if a.fraction >= b.fraction { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Events each reading worker lost of its own, by buffer and reader: what its books say
    /// it will never read beyond the buffer's own losses under `policy: drop` (its worker
    /// died or was restarted holding them, left early with `leave_after`, or ended first),
    /// as the run's last lines and summary.json count them. Only readers that lost some.
    pub fn reader_losses(&self) -> Vec<(&str, &str, u64)> {
        let mut out = Vec::new();
        for (buffer, b) in &self.snapshot.buffers {
            for (reader, books) in &b.readers {
                let own = books.lost.saturating_sub(b.lost);
                if own > 0 {
                    out.push((buffer.as_str(), reader.as_str(), own));
                }
            }
        }
        out
    }

    /// Events `worker` lost of its own as a reader, over the buffers it reads (see
    /// [`RunView::reader_losses`]); 0 for a worker that reads none.
    pub fn reader_lost(&self, worker: &str) -> u64 {
        self.reader_losses()
            .iter()
            .filter(|(_, r, _)| *r == worker)
            .map(|(_, _, n)| n)
            .sum()
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
        for (buffer, reader, lost) in self.reader_losses() {
            out.push(format!(
                "reader '{reader}' lost {lost} event(s) of buffer '{buffer}' (its worker died, \
                 was restarted or left before reading them: the run log says which)"
            ));
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
    /// fields plus `state`, `progress`, `warnings`, `rate_hz` per buffer
    /// ([`RunView::rate_hz`]), and `cpu_percent`, `cores_text` and `reader_lost` (its own
    /// losses as a reader, [`RunView::reader_lost`]) per worker.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.snapshot).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("state".into(), self.state().into());
            o.insert(
                "progress".into(),
                serde_json::to_value(self.progress()).unwrap_or_default(),
            );
            o.insert("warnings".into(), self.warnings().into());
            let workers = || self.snapshot.workers.iter();
            let cpu = per_name(workers(), |w, _| self.cpu_percent(w).into());
            o.insert("cpu_percent".into(), cpu);
            o.insert(
                "cores_text".into(),
                per_name(workers(), |_, w| w.cores_text().into()),
            );
            let lost = per_name(workers(), |w, _| self.reader_lost(w).into());
            o.insert("reader_lost".into(), lost);
            let rates = per_name(self.snapshot.buffers.iter(), |b, _| self.rate_hz(b).into());
            o.insert("rate_hz".into(), rates);
            o.insert("updates".into(), self.updates.into());
        }
        v
    }
}

/// `{name: f(name, item)}` for each of `items`, for the objects per worker or buffer that
/// [`RunView::to_json`] adds.
fn per_name<'a, T: 'a>(
    items: impl Iterator<Item = (&'a String, &'a T)>,
    f: impl Fn(&str, &T) -> serde_json::Value,
) -> serde_json::Value {
    serde_json::Value::Object(items.map(|(n, x)| (n.clone(), f(n, x))).collect())
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

    /// Losses of one reader (its worker killed and restarted, or leaving with
    /// `leave_after`) were shown nowhere: the warnings and the lost column knew only the
    /// buffer's drops under `policy: drop`, while summary.json said "161 of them lost for
    /// reader 'h5'". They are warned, naming reader, buffer and count, and listed per worker
    /// as summary.json counts them (the reader's lost beyond the buffer's own).
    #[test]
    fn a_reader_that_lost_events_is_warned_and_its_losses_listed() {
        let mut v = RunView::new(vec![]);
        v.update_json(&json!({"t": 11.0, "ended": true,
            "buffers": {
                "raw": {"events_in": 5852, "produced": 5852, "lost": 0, "readers": {
                    "h5": {"delivered": 5691, "lost": 161, "pending": 0},
                    "quitter": {"delivered": 1000, "lost": 4852, "pending": 0},
                    "csv": {"delivered": 5852, "lost": 0, "pending": 0}}},
                "dropping": {"events_in": 95, "produced": 100, "lost": 5, "readers": {
                    "csv": {"delivered": 95, "lost": 5, "pending": 0}}}},
            "workers": {"h5": {"events": 5691, "state": "finished", "restarts": 1},
                        "quitter": {"events": 1002, "state": "finished"},
                        "csv": {"events": 5947, "state": "finished"}}}));
        let w = v.warnings();
        let said = |reader: &str| w.iter().filter(|x| x.contains(reader)).count();
        assert!(
            w.contains(
                &"reader 'h5' lost 161 event(s) of buffer 'raw' (its worker died, was \
                  restarted or left before reading them: the run log says which)"
                    .to_string()
            ),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|x| x.starts_with("reader 'quitter' lost 4852 event(s)")),
            "{w:?}"
        );
        // csv lost only what the buffer dropped: that is the buffer's loss, not its own.
        assert_eq!(said("reader 'csv'"), 0, "{w:?}");
        assert_eq!(
            v.to_json()["reader_lost"],
            json!({"h5": 161, "quitter": 4852, "csv": 0})
        );
    }

    /// A plan of importers `src` (writing `raw`) and `src2` (writing `b2`), and a reader.
    fn two_importers_plan(run_dir: &Path) -> crate::run_dir::plan::Plan {
        let buffer = |name: &str, writer: &str| {
            json!({"name": name, "fields": [["x", "float32"]], "data_length": 1,
                "slot_count": 4, "policy": "block", "writer": writer, "readers": ["h5"],
                "observers": [], "rings": []})
        };
        let worker = |name: &str, sources: &[&str], sinks: &[&str]| {
            json!({"name": name, "function": "f", "file": null, "processes": 1,
                "sources": sources, "sinks": sinks, "observes": [], "config": {}, "cpu": [],
                "priority": null, "restart": "never"})
        };
        serde_json::from_value(json!({
            "run_id": "r", "run_dir": run_dir, "setup_dir": "/", "max_events": 1001,
            "max_seconds": null, "stats_interval": 1.0, "huge_pages": "auto",
            "buffers": [buffer("raw", "src"), buffer("b2", "src2")],
            "workers": [worker("src", &[], &["raw"]), worker("src2", &[], &["b2"]),
                        worker("h5", &["raw", "b2"], &[])],
        }))
        .unwrap()
    }

    /// A snapshot `t` s in (`paused_s` of them paused) of that plan's run: `src` ended after
    /// its 1001 events, `src2` took `took` events, `lost` of them lost.
    fn two_importers_at(t: f64, paused_s: f64, took: u64, lost: u64) -> Snapshot {
        Snapshot::from_json(&json!({"t": t, "paused_s": paused_s, "max_events": 1001,
            "buffers": {"raw": {"events_in": 1001, "produced": 1001},
                        "b2": {"events_in": took - lost, "produced": took, "lost": lost}},
            "workers": {"src": {"events": 1001, "state": "finished"},
                        "src2": {"events": took - lost, "state": "running"},
                        "h5": {"events": 1001, "state": "running"}}}))
    }

    /// The page and the dashboard start before the supervisor writes plan.json: their view
    /// read no importers, and `/state` said `"progress": null` for a whole `max_events`
    /// run. The plan is read at the first snapshot that finds it.
    #[test]
    fn progress_is_shown_when_plan_json_comes_after_the_view() {
        let dir = crate::fsio::test_dir("view-late-plan");
        let mut v = RunView::for_run(&dir);
        v.update(&two_importers_at(0.2, 0.0, 20, 0));
        assert_eq!(
            v.progress(),
            None,
            "no plan yet: which workers are importers is unknown"
        );
        two_importers_plan(&dir).save().unwrap();
        v.update(&two_importers_at(0.4, 0.0, 40, 0));
        let p = v.progress().expect("progress once plan.json is there");
        assert!((p.fraction - 40.0 / 1001.0).abs() < 1e-12, "{p:?}");
        assert_eq!(v.to_json()["progress"]["of"], "1001 events");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `max_events` is per importer and the run ends with the slowest: the progress is that
    /// importer's (what its limit counts: published plus lost), one that ended holds nothing
    /// up, and the time left is at its rate over the time not paused.
    #[test]
    fn progress_follows_the_slowest_importer_over_the_time_not_paused() {
        let dir = crate::fsio::test_dir("view-slowest");
        two_importers_plan(&dir).save().unwrap();
        let mut v = RunView::for_run(&dir);
        v.update(&two_importers_at(20.0, 10.0, 500, 50));
        let p = v.progress().unwrap();
        assert!((p.fraction - 500.0 / 1001.0).abs() < 1e-12, "{p:?}");
        let left = 10.0 / (500.0 / 1001.0) - 10.0;
        assert!((p.seconds_left.unwrap() - left).abs() < 1e-9, "{p:?}");
        std::fs::remove_dir_all(&dir).unwrap();
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
