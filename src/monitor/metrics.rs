//! `/metrics`: a statistics snapshot in Prometheus' text exposition format (version 0.0.4),
//! for a Prometheus server and the Grafana boards drawn from it.
//!
//! Names follow Prometheus' conventions: all start with `daq_engine_`, counters end in
//! `_total`, quantities are in base units (seconds, bytes, ratios 0…1), and what a series is
//! about is a label (`buffer`, `reader`, `worker`, `state`, `path`), e.g.
//! `daq_engine_buffer_events_total{buffer="raw"} 1234`. Counters are the run's (a new run is
//! a new process: Prometheus sees a counter reset).
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `daq_engine_buffer_events_total` | counter | buffer | events published |
//! | `daq_engine_buffer_produced_total` | counter | buffer | events its writers produced (published + lost) |
//! | `daq_engine_buffer_lost_total` | counter | buffer | events lost to a full ring (`policy: drop`) |
//! | `daq_engine_buffer_events_per_second` | gauge | buffer | rate over the last interval (the run's mean once it ended) |
//! | `daq_engine_buffer_fill_ratio` | gauge | buffer | fill level of the fullest ring |
//! | `daq_engine_buffer_deadtime_seconds_total` | counter | buffer | time its writers waited for room |
//! | `daq_engine_buffer_deadtime_ratio` | gauge | buffer | share of the last interval spent waiting |
//! | `daq_engine_buffer_closed` | gauge | buffer | 1 once no more events will come |
//! | `daq_engine_reader_delivered_total` | counter | buffer, reader | events the reading worker took |
//! | `daq_engine_reader_lost_total` | counter | buffer, reader | events it will never read |
//! | `daq_engine_reader_pending_events` | gauge | buffer, reader | events published it has yet to read |
//! | `daq_engine_worker_state` | gauge | worker, state | 1 for the worker's state, 0 for the others |
//! | `daq_engine_worker_processes` | gauge | worker | processes alive |
//! | `daq_engine_worker_events_total` | counter | worker | events produced (importers) or taken from its first source |
//! | `daq_engine_worker_cpu_seconds_total` | counter | worker | CPU time of its processes |
//! | `daq_engine_worker_restarts_total` | counter | worker | processes started again |
//! | `daq_engine_device_connected` | gauge | worker | 1 while a device importer's device answers |
//! | `daq_engine_device_disconnects_total` | counter | worker | disconnects it came back from |
//! | `daq_engine_device_bad_records_total` | counter | worker | records the driver rejected (when the device reports them) |
//! | `daq_engine_run_elapsed_seconds` | gauge | | time since the run started |
//! | `daq_engine_run_progress_ratio` | gauge | | progress against `max_events`/`max_seconds` |
//! | `daq_engine_run_remaining_seconds` | gauge | | estimated time left, when it can be estimated |
//! | `daq_engine_run_paused`, `_stopping`, `_finished` | gauge | | 1 when so |
//! | `daq_engine_disk_free_bytes`, `daq_engine_disk_size_bytes` | gauge | path | the run directory's file system (space for unprivileged users) |
//!
//! Guarantees: rendered from the typed [`Snapshot`]; reads only the device notes and one
//! statvfs(2); a missing value is left out, never written as a made-up zero.

use super::view::{Progress, Snapshot};
use std::fmt::Write;
use std::path::Path;

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The worker states `daq_engine_worker_state` has a series for.
const WORKER_STATES: [&str; 4] = ["running", "finished", "failed", "not started"];

/// The exposition text being written: one family (HELP, TYPE, samples) after another.
struct Text(String);

/// A sample's value: a count, or a float (left out unless finite); `None` leaves the
/// sample out.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
    None,
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Count(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<Option<u64>> for Value {
    fn from(v: Option<u64>) -> Value {
        v.map_or(Value::None, Value::Count)
    }
}

/// The family whose HELP and TYPE lines were just written: its samples come next.
struct Family<'t> {
    text: &'t mut Text,
    name: &'static str,
}

impl Text {
    fn family(&mut self, name: &'static str, kind: &str, help: &str) -> Family<'_> {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { text: self, name }
    }

    fn counter(&mut self, name: &'static str, help: &str) -> Family<'_> {
        self.family(name, "counter", help)
    }

    fn gauge(&mut self, name: &'static str, help: &str) -> Family<'_> {
        self.family(name, "gauge", help)
    }
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        let value = match value.into() {
            Value::Count(n) => n.to_string(),
            Value::Real(x) if x.is_finite() => x.to_string(),
            Value::Real(_) | Value::None => return,
        };
        let out = &mut self.text.0;
        out.push_str(self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }

    /// The family's one sample.
    fn one(mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.sample(labels, value);
    }

    /// A sample for each of `rows` (labels, item), its value read from the item.
    fn each<'l, L, R, V>(mut self, rows: impl Iterator<Item = (L, R)>, value: impl Fn(R) -> V)
    where
        L: AsRef<[(&'l str, &'l str)]>,
        V: Into<Value>,
    {
        for (labels, row) in rows {
            self.sample(labels.as_ref(), value(row));
        }
    }
}

/// The snapshot as exposition text. `progress` is the view's progress against the run's
/// limits; `finished` whether the run ended; `run_dir` where files are written.
pub fn render(s: &Snapshot, progress: Option<&Progress>, finished: bool, run_dir: &Path) -> String {
    let mut t = Text(String::with_capacity(4096));
    let buffers = || s.buffers.iter().map(|(n, b)| ([("buffer", n.as_str())], b));

    t.counter(
        "daq_engine_buffer_events_total",
        "Events published into the buffer.",
    )
    .each(buffers(), |b| b.events_in);
    t.counter(
        "daq_engine_buffer_produced_total",
        "Events the buffer's writers produced: published plus lost.",
    )
    .each(buffers(), |b| b.produced.max(b.events_in + b.lost));
    t.counter(
        "daq_engine_buffer_lost_total",
        "Events lost because the ring was full (policy drop).",
    )
    .each(buffers(), |b| b.lost);
    t.gauge(
        "daq_engine_buffer_events_per_second",
        "Events published per second over the last statistics interval (the run's mean once it ended).",
    )
    .each(buffers(), |b| b.rate_hz);
    t.gauge(
        "daq_engine_buffer_fill_ratio",
        "Fill level of the buffer's fullest ring, 0 to 1.",
    )
    .each(buffers(), |b| b.fill);
    t.counter(
        "daq_engine_buffer_deadtime_seconds_total",
        "Time the buffer's writers waited for a free slot (policy block).",
    )
    .each(buffers(), |b| b.deadtime_total_s);
    t.gauge(
        "daq_engine_buffer_deadtime_ratio",
        "Share of the last statistics interval the writers waited for a free slot.",
    )
    .each(buffers(), |b| b.deadtime);
    t.gauge(
        "daq_engine_buffer_closed",
        "1 once no more events will come into the buffer.",
    )
    .each(buffers(), |b| u64::from(b.closed));

    let readers = || {
        s.buffers.iter().flat_map(|(n, b)| {
            b.readers
                .iter()
                .map(move |(r, books)| ([("buffer", n.as_str()), ("reader", r.as_str())], books))
        })
    };
    t.counter(
        "daq_engine_reader_delivered_total",
        "Events of the buffer the reading worker took.",
    )
    .each(readers(), |r| r.delivered);
    t.counter(
        "daq_engine_reader_lost_total",
        "Events of the buffer the reading worker will never read.",
    )
    .each(readers(), |r| r.lost);
    t.gauge(
        "daq_engine_reader_pending_events",
        "Events published into the buffer that the reading worker has yet to read.",
    )
    .each(readers(), |r| r.pending);

    let workers = || s.workers.iter().map(|(n, w)| ([("worker", n.as_str())], w));
    let states = s.workers.iter().flat_map(|(name, w)| {
        let state = |s: &&'static str| ([("worker", name.as_str()), ("state", *s)], w.state == *s);
        WORKER_STATES.iter().map(state)
    });
    t.gauge(
        "daq_engine_worker_state",
        "1 for the worker's state (running, finished, failed, not started), 0 for the others.",
    )
    .each(states, u64::from);
    t.gauge(
        "daq_engine_worker_processes",
        "Processes of the worker alive.",
    )
    .each(workers(), |w| w.processes);
    t.counter(
        "daq_engine_worker_events_total",
        "Events the worker produced (importers) or took from its first source.",
    )
    .each(workers(), |w| w.events);
    t.counter(
        "daq_engine_worker_cpu_seconds_total",
        "CPU time used by the worker's processes.",
    )
    .each(workers(), |w| w.cpu_s);
    t.counter(
        "daq_engine_worker_restarts_total",
        "Times a process of the worker was started again.",
    )
    .each(workers(), |w| u64::from(w.restarts));

    let devices = || workers().filter_map(|(l, w)| Some((l, w.device?)));
    t.gauge(
        "daq_engine_device_connected",
        "1 while the device importer's device answers.",
    )
    .each(devices(), |d| u64::from(d.connected));
    t.counter(
        "daq_engine_device_disconnects_total",
        "Disconnects of the device that the importer came back from.",
    )
    .each(devices(), |d| d.gaps);
    let notes = devices().map(|(l, _)| (l, l[0].1));
    t.counter(
        "daq_engine_device_bad_records_total",
        "Records from the device that the driver rejected.",
    )
    .each(notes, |worker| {
        let notes = crate::run_dir::read_notes(&crate::run_dir::device_notes_path(run_dir, worker));
        notes
            .iter()
            .find(|(k, _)| k == "device.bad_records")
            .and_then(|(_, v)| v.parse::<u64>().ok())
    });

    t.gauge(
        "daq_engine_run_elapsed_seconds",
        "Time since the run started.",
    )
    .one(&[], s.t);
    t.counter(
        "daq_engine_run_paused_seconds_total",
        "Time the importers were paused (they take no events then): elapsed minus this is \
         the live time.",
    )
    .one(&[], s.paused_s);
    if let Some(p) = progress {
        t.gauge(
            "daq_engine_run_progress_ratio",
            "Progress of the run against its limit (max_events or max_seconds), 0 to 1.",
        )
        .one(&[], p.fraction);
        if let Some(left) = p.seconds_left {
            t.gauge(
                "daq_engine_run_remaining_seconds",
                "Estimated time until the run reaches its limit.",
            )
            .one(&[], left);
        }
    }
    let flags = [
        (
            "daq_engine_run_paused",
            "1 while the importers are paused.",
            s.paused,
        ),
        (
            "daq_engine_run_stopping",
            "1 while the run stops and its buffers drain.",
            s.stopping,
        ),
        (
            "daq_engine_run_finished",
            "1 once the run has ended.",
            finished || s.ended,
        ),
    ];
    for (name, help, on) in flags {
        t.gauge(name, help).one(&[], u64::from(on));
    }

    if let Ok(fs) = nix::sys::statvfs::statvfs(run_dir) {
        let path = run_dir.display().to_string();
        let block = fs.fragment_size();
        let disk = [
            (
                "daq_engine_disk_free_bytes",
                "Space free for unprivileged users on the run directory's file system.",
                fs.blocks_available() * block,
            ),
            (
                "daq_engine_disk_size_bytes",
                "Size of the run directory's file system.",
                fs.blocks() * block,
            ),
        ];
        for (name, help, v) in disk {
            t.gauge(name, help).one(&[("path", &path)], v);
        }
    }
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::RunView;
    use serde_json::json;

    #[test]
    fn counters_gauges_and_labels_from_a_snapshot() {
        let mut v = RunView::new(vec!["digitizer".into()]);
        v.update_json(&json!({
            "t": 2.5, "max_events": 1000, "paused_s": 0.75,
            "buffers": {"ra\"w": {"events_in": 500, "produced": 510, "lost": 10,
                "events_out": {"trigger": 490}, "rate_hz": 200.0, "fill": 0.25,
                "deadtime": 0.01, "deadtime_total_s": 0.125, "closed": false,
                "readers": {"trigger": {"delivered": 490, "lost": 10, "pending": 10}}}},
            "workers": {"digitizer": {"processes": 1, "events": 500, "cpu_s": 1.5,
                "state": "running", "restarts": 2,
                "device": {"connected": false, "gaps": 3}}}
        }));
        let dir = std::env::temp_dir();
        let text = render(v.snapshot(), v.progress().as_ref(), false, &dir);
        for line in [
            "# TYPE daq_engine_buffer_events_total counter",
            "daq_engine_buffer_events_total{buffer=\"ra\\\"w\"} 500",
            "daq_engine_buffer_produced_total{buffer=\"ra\\\"w\"} 510",
            "daq_engine_buffer_lost_total{buffer=\"ra\\\"w\"} 10",
            "daq_engine_buffer_events_per_second{buffer=\"ra\\\"w\"} 200",
            "daq_engine_buffer_fill_ratio{buffer=\"ra\\\"w\"} 0.25",
            "daq_engine_buffer_deadtime_seconds_total{buffer=\"ra\\\"w\"} 0.125",
            "daq_engine_buffer_closed{buffer=\"ra\\\"w\"} 0",
            "daq_engine_reader_delivered_total{buffer=\"ra\\\"w\",reader=\"trigger\"} 490",
            "daq_engine_reader_pending_events{buffer=\"ra\\\"w\",reader=\"trigger\"} 10",
            "daq_engine_worker_state{worker=\"digitizer\",state=\"running\"} 1",
            "daq_engine_worker_state{worker=\"digitizer\",state=\"failed\"} 0",
            "daq_engine_worker_cpu_seconds_total{worker=\"digitizer\"} 1.5",
            "daq_engine_worker_restarts_total{worker=\"digitizer\"} 2",
            "daq_engine_device_connected{worker=\"digitizer\"} 0",
            "daq_engine_device_disconnects_total{worker=\"digitizer\"} 3",
            "daq_engine_run_elapsed_seconds 2.5",
            "# TYPE daq_engine_run_paused_seconds_total counter",
            "daq_engine_run_paused_seconds_total 0.75",
            "daq_engine_run_progress_ratio 0.5",
            // At the rate over the 1.75 s not paused (2.5 s was over the whole 2.5 s).
            "daq_engine_run_remaining_seconds 1.75",
            "daq_engine_run_finished 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(text.contains("daq_engine_disk_free_bytes{path="), "{text}");
        // Every sample belongs to the family declared last (the format wants them together).
        let mut family = "";
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(family), "{l} outside its family {family}");
            }
        }
    }
}
