//! One line of `stats.jsonl`: a statistics snapshot, written by the supervisor every
//! `stats_interval`, handed to the watchers (dashboard, web page, `/metrics`) and read back
//! by `status` and the tests.
//!
//! The fields of each struct are in alphabetical order: serialized, a line has the bytes the
//! untyped `json!` object it replaced had (serde_json orders an object's keys by name).
//! Reading is lenient (`#[serde(default)]`): a field missing from an older line is zero.

use super::ReaderBooks;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One buffer in a snapshot (see `Supervisor::write_stats`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct BufferStats {
    /// No more events will come.
    pub closed: bool,
    /// Fraction of time the writer was blocked since the previous snapshot.
    pub deadtime: f64,
    /// Seconds the writer was blocked in total.
    pub deadtime_total_s: f64,
    /// Events published into the buffer.
    pub events_in: u64,
    /// Events released by each reading worker.
    pub events_out: BTreeMap<String, u64>,
    /// Fill level 0…1 (the fullest ring).
    pub fill: f64,
    /// Events lost (`policy: drop`).
    pub lost: u64,
    /// Events its writers produced: published plus lost.
    pub produced: u64,
    /// Events per second since the previous snapshot.
    pub rate_hz: f64,
    /// Per reading worker: delivered, lost and pending, which add up to `produced`.
    pub readers: BTreeMap<String, ReaderBooks>,
}

/// One worker in a snapshot.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct WorkerStats {
    /// The core each live process last ran on.
    pub cores: Vec<u32>,
    /// CPU seconds used by all its processes.
    pub cpu_s: f64,
    /// For a device importer: its connection state.
    pub device: Option<DeviceState>,
    /// Events it produced (importers) or took from its first source; 0 for an observer.
    pub events: u64,
    /// An observer (`observes:`): it looks at the newest event of a buffer now and then and
    /// takes none, so `events` does not apply (shown as `-`). Absent for other workers.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observer: bool,
    /// For `export.kafka`: what became of its events (delivered, spooled, replayed,
    /// dropped, lost); absent for other workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<super::KafkaCounts>,
    /// The cores its processes are pinned to; empty when they may run anywhere.
    pub pinned: Vec<u32>,
    /// Processes alive.
    pub processes: u64,
    /// Times a process was started again.
    pub restarts: u32,
    /// `running`, `finished`, `failed` or `not started`.
    pub state: String,
}

/// A device importer's connection and data health, from its notes.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct DeviceState {
    /// Bad records (lines, replies, frames) skipped so far.
    pub bad_records: u64,
    /// The device answers now.
    pub connected: bool,
    /// Disconnects it came back from.
    pub gaps: u64,
    /// No good event for longer than its `expect_data_within`, now.
    pub silent: bool,
}

impl WorkerStats {
    /// Its events as the tables show them: `-` for an observer, which takes none.
    pub fn events_text(&self) -> String {
        if self.observer {
            "-".into()
        } else {
            self.events.to_string()
        }
    }

    /// Where its processes run, e.g. `1` or `0,1`, with `pinned` noted; `-` when none runs.
    pub fn cores_text(&self) -> String {
        if self.cores.is_empty() {
            return "-".into();
        }
        let list: Vec<String> = self.cores.iter().map(|c| c.to_string()).collect();
        if self.pinned.is_empty() {
            list.join(",")
        } else {
            format!("{} (pinned)", list.join(","))
        }
    }
}

/// One statistics snapshot, as the supervisor hands it to a watcher.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Snapshot {
    /// Buffers by name.
    pub buffers: BTreeMap<String, BufferStats>,
    /// The run is over: this is its last snapshot, and its rates and dead time are the
    /// run's means.
    pub ended: bool,
    /// Events per importer after which the run stops.
    pub max_events: Option<u64>,
    /// Seconds after which the run stops.
    pub max_seconds: Option<f64>,
    /// Importers are paused.
    pub paused: bool,
    /// Seconds the importers have been paused since the run started, this pause included.
    pub paused_s: f64,
    /// Why the run stops or stopped: on the lines of a stopping run and on its last line.
    /// Absent while it runs (and on lines of versions before it); a cause this version does
    /// not know reads as absent, not as a line of zeros.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_cause"
    )]
    pub stopped_by: Option<StopCause>,
    /// Nothing new comes in and the buffers drain: the importers were told to stop, or
    /// every one ended by itself (`stopped_by` says which).
    pub stopping: bool,
    /// Seconds since the run started.
    pub t: f64,
    /// UTC time of the snapshot.
    pub time: String,
    /// While a clean stop goes on: what it waits for besides draining (e.g.
    /// `compressing raw.h5 (157.9 MB, 37%)`).
    pub waiting_for: Vec<String>,
    /// Workers by name.
    pub workers: BTreeMap<String, WorkerStats>,
}

/// Why a run stopped (`stopped_by` in summary.json and on the last stats line): what a
/// physicist back from a week away asks first. The first cause wins; an abort overrides it
/// (the run did not drain).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// The importers ended by themselves: their sources had no more events.
    SourcesEnded,
    /// Every importer took `max_events`.
    MaxEvents,
    /// A device sent no good event for longer than its `expect_data_within`, and its
    /// importer ended for it (`on_silence: stop`).
    DeviceSilent,
    /// `max_seconds` passed.
    MaxSeconds,
    /// Ctrl-C (SIGINT): a person at the run's terminal.
    Signal,
    /// A stop sent by the service manager or another process: SIGTERM (`kill`, a shutdown),
    /// or the SIGINT systemd sends for `systemctl stop` (the unit's `KillSignal`).
    Terminated,
    /// SIGHUP: the terminal or ssh session the run was started from went away.
    HungUp,
    /// A stop asked for on the live page, the dashboard or through the Python package.
    Monitor,
    /// The free space on the run's disk reached `disk_reserve_mb`.
    DiskFull,
    /// The run directory was deleted (its files with it), moved or renamed while the run
    /// went on.
    RunDirGone,
    /// A worker failed for good (see `failures`).
    WorkerFailed,
    /// The workers were killed before they drained: a second stop signal, or workers that
    /// did not drain within 30 s of a failure.
    Aborted,
    /// Its supervisor ended without a summary (killed, or the machine stopped); only the
    /// summary `recover` writes says this.
    Killed,
}

/// `stopped_by` as far as this version knows the cause: one a later version adds is `None`.
fn known_cause<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<StopCause>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

impl StopCause {
    /// What it was, in words after "stopped by", for the last lines of a run and `status`.
    pub fn text(self) -> &'static str {
        match self {
            StopCause::SourcesEnded => "its sources running out of events",
            StopCause::MaxEvents => "reaching max_events",
            StopCause::DeviceSilent => {
                "a device silent for longer than its expect_data_within (on_silence: stop)"
            }
            StopCause::MaxSeconds => "reaching max_seconds",
            StopCause::Signal => "Ctrl-C (SIGINT)",
            StopCause::Terminated => {
                "the service manager or another process (systemctl stop, a \
                 shutdown, SIGTERM)"
            }
            StopCause::HungUp => {
                "SIGHUP: the terminal or ssh session the run was started from went away"
            }
            StopCause::Monitor => "a stop from the live page, the dashboard or Python",
            StopCause::DiskFull => "the disk reaching its reserve (disk_reserve_mb)",
            StopCause::RunDirGone => {
                "its run directory going from its name while it ran (deleted, moved or renamed)"
            }
            StopCause::WorkerFailed => "a worker that failed",
            StopCause::Aborted => "an abort: the workers were killed before they drained",
            StopCause::Killed => "the end of its supervisor (killed, or the machine stopped)",
        }
    }
}

impl Snapshot {
    /// A snapshot from a parsed line of `stats.jsonl`, leniently: what does not fit (a line
    /// of another version, a hand-edited file) reads as zeros rather than an error.
    pub fn from_json(line: &serde_json::Value) -> Snapshot {
        Snapshot::deserialize(line).unwrap_or_default()
    }

    /// `paused 12.5 s in all` once the run has been paused, for the dashboard and `status`
    /// (the page writes the same from `paused_s`).
    pub fn paused_text(&self) -> Option<String> {
        (self.paused_s > 0.0).then(|| format!("paused {:.1} s in all", self.paused_s))
    }
}

/// How far a run with `max_events` has come, 0…1, from what each importer took so far
/// (published plus lost in its first sink; `None` for one that ended, which holds nothing
/// up): each importer takes `max_events` on its own and the run ends with the slowest, so
/// this is the least of theirs. `None` without importers. One rule for the dashboard, the
/// page, `/metrics` and the terminal's progress line.
pub fn events_fraction(
    max_events: u64,
    taken: impl IntoIterator<Item = Option<u64>>,
) -> Option<f64> {
    let max = max_events.max(1) as f64;
    taken
        .into_iter()
        .map(|t| t.map_or(1.0, |t| (t as f64 / max).clamp(0.0, 1.0)))
        .reduce(f64::min)
}

/// Seconds left for a run `fraction` of the way to its limit after `live_s` seconds not
/// paused, at its mean rate so far; `None` before it has come any way.
pub fn seconds_left(fraction: f64, live_s: f64) -> Option<f64> {
    (fraction > 0.0 && live_s > 0.0).then(|| (live_s / fraction - live_s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A line as the untyped `json!` of the supervisor wrote it before the type existed.
    fn untyped() -> serde_json::Value {
        json!({
            "t": 2.5,
            "time": "2026-12-05T08:00:00.000Z",
            "stopping": false,
            "waiting_for": ["compressing raw.h5 (1.0 MB, 50%)"],
            "ended": false,
            "paused": false,
            // Added after the type (issue 18's session 13): an older line without it reads
            // as 0 (`missing_fields_read_as_zero`).
            "paused_s": 0.0,
            "max_events": 1000,
            "max_seconds": null,
            "buffers": {"raw": {
                "events_in": 10, "produced": 12,
                "events_out": {"hdf5": 9},
                "readers": {"hdf5": {"delivered": 9, "lost": 2, "pending": 1}},
                "rate_hz": 4.0, "fill": 0.25, "deadtime": 0.01,
                "deadtime_total_s": 0.02, "lost": 2, "closed": false,
            }},
            "workers": {
                "sim": {"processes": 1, "events": 10, "cpu_s": 0.5, "state": "running",
                        "restarts": 0, "cores": [1], "pinned": [], "device": null},
                "scope": {"processes": 1, "events": 3, "cpu_s": 0.1, "state": "running",
                          "restarts": 1, "cores": [0], "pinned": [0],
                          "device": {"connected": false, "gaps": 1, "bad_records": 2,
                                     "silent": true}},
            },
        })
    }

    /// The typed line has the bytes of the untyped one, and reads back as itself.
    #[test]
    fn a_snapshot_line_round_trips_with_the_bytes_of_the_untyped_line() {
        let v = untyped();
        let s: Snapshot = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(s.buffers["raw"].readers["hdf5"].lost, 2);
        assert_eq!(s.workers["scope"].device.unwrap().gaps, 1);
        assert_eq!(s.workers["sim"].device, None);
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(line, v.to_string());
        let back: Snapshot = serde_json::from_str(&line).unwrap();
        assert_eq!(back, s);
    }

    /// A line missing fields (an older engine's) reads with zeros.
    #[test]
    fn missing_fields_read_as_zero() {
        let s: Snapshot = serde_json::from_str(r#"{"t": 1.0, "buffers": {"b": {}}}"#).unwrap();
        assert_eq!(s.t, 1.0);
        assert_eq!(s.buffers["b"], BufferStats::default());
        assert!(s.workers.is_empty());
    }

    /// A stop cause of a later version: the line still reads, without it.
    #[test]
    fn an_unknown_stop_cause_reads_as_none_and_the_line_as_itself() {
        let line = r#"{"t": 7.5, "ended": true, "stopped_by": "meteor_strike"}"#;
        let s = Snapshot::from_json(&serde_json::from_str(line).unwrap());
        assert_eq!((s.t, s.ended, s.stopped_by), (7.5, true, None));
        let line = r#"{"t": 7.5, "stopped_by": "disk_full"}"#;
        let s = Snapshot::from_json(&serde_json::from_str(line).unwrap());
        assert_eq!(s.stopped_by, Some(StopCause::DiskFull));
    }
}
