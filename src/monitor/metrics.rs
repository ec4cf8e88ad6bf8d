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
use std::fmt::{Display, Write};
use std::path::Path;

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The worker states `daq_engine_worker_state` has a series for.
const WORKER_STATES: [&str; 4] = ["running", "finished", "failed", "not started"];

/// The exposition text being written: one family (HELP, TYPE, samples) after another.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A float sample; a non-finite value is left out.
    fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if value.is_finite() {
            self.sample(name, labels, value);
        }
    }
}

/// The snapshot as exposition text. `progress` is the view's progress against the run's
/// limits; `finished` whether the run ended; `run_dir` where files are written.
pub fn render(s: &Snapshot, progress: Option<&Progress>, finished: bool, run_dir: &Path) -> String {
    let mut t = Text(String::with_capacity(4096));
    let buffers = || s.buffers.iter().map(|(n, b)| ([("buffer", n.as_str())], b));

    t.family(
        "daq_engine_buffer_events_total",
        "counter",
        "Events published into the buffer.",
    );
    for (l, b) in buffers() {
        t.sample("daq_engine_buffer_events_total", &l, b.events_in);
    }
    t.family(
        "daq_engine_buffer_produced_total",
        "counter",
        "Events the buffer's writers produced: published plus lost.",
    );
    for (l, b) in buffers() {
        t.sample(
            "daq_engine_buffer_produced_total",
            &l,
            b.produced.max(b.events_in + b.lost),
        );
    }
    t.family(
        "daq_engine_buffer_lost_total",
        "counter",
        "Events lost because the ring was full (policy drop).",
    );
    for (l, b) in buffers() {
        t.sample("daq_engine_buffer_lost_total", &l, b.lost);
    }
    t.family(
        "daq_engine_buffer_events_per_second",
        "gauge",
        "Events published per second over the last statistics interval (the run's mean once it ended).",
    );
    for (l, b) in buffers() {
        t.float("daq_engine_buffer_events_per_second", &l, b.rate_hz);
    }
    t.family(
        "daq_engine_buffer_fill_ratio",
        "gauge",
        "Fill level of the buffer's fullest ring, 0 to 1.",
    );
    for (l, b) in buffers() {
        t.float("daq_engine_buffer_fill_ratio", &l, b.fill);
    }
    t.family(
        "daq_engine_buffer_deadtime_seconds_total",
        "counter",
        "Time the buffer's writers waited for a free slot (policy block).",
    );
    for (l, b) in buffers() {
        t.float(
            "daq_engine_buffer_deadtime_seconds_total",
            &l,
            b.deadtime_total_s,
        );
    }
    t.family(
        "daq_engine_buffer_deadtime_ratio",
        "gauge",
        "Share of the last statistics interval the writers waited for a free slot.",
    );
    for (l, b) in buffers() {
        t.float("daq_engine_buffer_deadtime_ratio", &l, b.deadtime);
    }
    t.family(
        "daq_engine_buffer_closed",
        "gauge",
        "1 once no more events will come into the buffer.",
    );
    for (l, b) in buffers() {
        t.sample("daq_engine_buffer_closed", &l, u8::from(b.closed));
    }

    let readers = || {
        s.buffers.iter().flat_map(|(n, b)| {
            b.readers
                .iter()
                .map(move |(r, books)| ([("buffer", n.as_str()), ("reader", r.as_str())], books))
        })
    };
    t.family(
        "daq_engine_reader_delivered_total",
        "counter",
        "Events of the buffer the reading worker took.",
    );
    for (l, r) in readers() {
        t.sample("daq_engine_reader_delivered_total", &l, r.delivered);
    }
    t.family(
        "daq_engine_reader_lost_total",
        "counter",
        "Events of the buffer the reading worker will never read.",
    );
    for (l, r) in readers() {
        t.sample("daq_engine_reader_lost_total", &l, r.lost);
    }
    t.family(
        "daq_engine_reader_pending_events",
        "gauge",
        "Events published into the buffer that the reading worker has yet to read.",
    );
    for (l, r) in readers() {
        t.sample("daq_engine_reader_pending_events", &l, r.pending);
    }

    let workers = || s.workers.iter().map(|(n, w)| ([("worker", n.as_str())], w));
    t.family(
        "daq_engine_worker_state",
        "gauge",
        "1 for the worker's state (running, finished, failed, not started), 0 for the others.",
    );
    for (name, w) in &s.workers {
        for state in WORKER_STATES {
            let l = [("worker", name.as_str()), ("state", state)];
            t.sample("daq_engine_worker_state", &l, u8::from(w.state == state));
        }
    }
    t.family(
        "daq_engine_worker_processes",
        "gauge",
        "Processes of the worker alive.",
    );
    for (l, w) in workers() {
        t.sample("daq_engine_worker_processes", &l, w.processes);
    }
    t.family(
        "daq_engine_worker_events_total",
        "counter",
        "Events the worker produced (importers) or took from its first source.",
    );
    for (l, w) in workers() {
        t.sample("daq_engine_worker_events_total", &l, w.events);
    }
    t.family(
        "daq_engine_worker_cpu_seconds_total",
        "counter",
        "CPU time used by the worker's processes.",
    );
    for (l, w) in workers() {
        t.float("daq_engine_worker_cpu_seconds_total", &l, w.cpu_s);
    }
    t.family(
        "daq_engine_worker_restarts_total",
        "counter",
        "Times a process of the worker was started again.",
    );
    for (l, w) in workers() {
        t.sample("daq_engine_worker_restarts_total", &l, w.restarts);
    }

    let devices = || workers().filter_map(|(l, w)| Some((l, w.device?)));
    t.family(
        "daq_engine_device_connected",
        "gauge",
        "1 while the device importer's device answers.",
    );
    for (l, d) in devices() {
        t.sample("daq_engine_device_connected", &l, u8::from(d.connected));
    }
    t.family(
        "daq_engine_device_disconnects_total",
        "counter",
        "Disconnects of the device that the importer came back from.",
    );
    for (l, d) in devices() {
        t.sample("daq_engine_device_disconnects_total", &l, d.gaps);
    }
    t.family(
        "daq_engine_device_bad_records_total",
        "counter",
        "Records from the device that the driver rejected.",
    );
    for (l, _) in devices() {
        let notes = crate::run_dir::read_notes(&crate::run_dir::device_notes_path(run_dir, l[0].1));
        let bad = notes
            .iter()
            .find(|(k, _)| k == "device.bad_records")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if let Some(bad) = bad {
            t.sample("daq_engine_device_bad_records_total", &l, bad);
        }
    }

    t.family(
        "daq_engine_run_elapsed_seconds",
        "gauge",
        "Time since the run started.",
    );
    t.float("daq_engine_run_elapsed_seconds", &[], s.t);
    t.family(
        "daq_engine_run_paused_seconds_total",
        "counter",
        "Time the importers were paused (they take no events then): elapsed minus this is \
         the live time.",
    );
    t.float("daq_engine_run_paused_seconds_total", &[], s.paused_s);
    if let Some(p) = progress {
        t.family(
            "daq_engine_run_progress_ratio",
            "gauge",
            "Progress of the run against its limit (max_events or max_seconds), 0 to 1.",
        );
        t.float("daq_engine_run_progress_ratio", &[], p.fraction);
        if let Some(left) = p.seconds_left {
            t.family(
                "daq_engine_run_remaining_seconds",
                "gauge",
                "Estimated time until the run reaches its limit.",
            );
            t.float("daq_engine_run_remaining_seconds", &[], left);
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
        t.family(name, "gauge", help);
        t.sample(name, &[], u8::from(on));
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
            t.family(name, "gauge", help);
            t.sample(name, &[("path", &path)], v);
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
            "daq_engine_run_remaining_seconds 2.5",
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
