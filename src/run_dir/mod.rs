//! The run directory's file contract, in one place: the names of the files a run writes,
//! the plan every worker process reads ([`plan`]), the books of the statistics lines and
//! the summary, and the device notes. Writers (supervisor, workers) and readers (monitor,
//! `status`, export, tests) use these names and types rather than their own.
//!
//! | file | written by | read by |
//! |---|---|---|
//! | [`PLAN`] `plan.json` | supervisor, before any worker starts | every worker process, the monitor |
//! | [`STATS`] `stats.jsonl` | supervisor, a line every `stats_interval`, thinned past 32 MiB ([`stats_file`]) | monitor, `status`, tests |
//! | [`SUMMARY`] `summary.json` | `run`, atomically at the end; `recover` | `recover`, tests |
//! | [`LOG`] `daq-engine.log` | every process of the run | people |
//! | `device_<worker>.txt` ([`device_notes_path`]) | device importers, once a second | HDF5 export, supervisor, monitor |
//! | `scales_<worker>.txt` ([`scales::scales_path`]) | importers storing ADC counts, once at start | HDF5 export |
//! | [`pauses::PAUSES`] `pauses.jsonl` | supervisor, at each pause and resume | HDF5 export (at each file's close) |
//! | `kafka_<worker>_<process>.json` ([`kafka_counts_path`], [`KafkaCounts`]) | `export.kafka`, once a second and at the end | supervisor (stats, summary), `status`, tests |
//!
//! Workers write result files of their own (HDF5 run files, `histogram_*.csv`,
//! `fit_*.json`, `oscilloscope_<worker>.json`, `drain_<worker>_<process>.json`, CSV);
//! their names are in the function reference (`daq-engine functions`).

pub mod pauses;
pub mod plan;
pub mod scales;
pub mod snapshot;
pub mod stats_file;

pub use snapshot::{BufferStats, DeviceState, Snapshot, StopCause, WorkerStats};

use std::path::{Path, PathBuf};

/// The run plan (`plan.json`).
pub const PLAN: &str = "plan.json";
/// The statistics, one JSON object a line (`stats.jsonl`).
pub const STATS: &str = "stats.jsonl";
/// How the run ended (`summary.json`); its presence marks a finished run.
pub const SUMMARY: &str = "summary.json";
/// The log of every process of the run (`daq-engine.log`).
pub const LOG: &str = "daq-engine.log";

/// The log file of the run in `run_dir`.
pub fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join(LOG)
}

/// The device notes of device importer `worker` (`device_<worker>.txt`).
pub fn device_notes_path(run_dir: &Path, worker: &str) -> PathBuf {
    run_dir.join(format!("device_{worker}.txt"))
}

/// How long summary.json waits for space when it meets a full disk before it is given up
/// (see [`crate::fsio::retry_while_full`]).
pub const FULL_DISK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds a buffer may stay full before the log and the monitor warn about it.
pub const FULL_WARNING_S: f64 = 3.0;
/// A buffer counts as full at or above this fill level.
pub const FULL_LEVEL: f64 = 0.95;

/// The books of one consumer group of a buffer, summed over its rings. For every group,
/// always: `produced == delivered + lost + pending`, where `produced` is what the buffer's
/// writers made (published, plus lost under `policy: drop` because the ring was full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderBooks {
    /// Events the group read.
    pub delivered: u64,
    /// Events the group will never read, each counted once: lost before publishing
    /// (`drop`), released unread by a member that died or left, and everything published
    /// for it after its worker ended.
    pub lost: u64,
    /// Events published that the group has yet to read (0 once the run has drained).
    pub pending: u64,
}

/// The `key = value` lines of a device notes file (`device_<worker>.txt`), in file order;
/// empty when it cannot be read. Lines without ` = ` are skipped.
pub fn read_notes(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The notes of every device importer of the run in `run_dir`: (worker, notes), by worker.
pub fn run_notes(run_dir: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let worker = name
                .to_str()?
                .strip_prefix("device_")?
                .strip_suffix(".txt")?
                .to_string();
            Some((worker, read_notes(&e.path())))
        })
        .collect();
    out.sort();
    out
}

/// A device importer's notes (`device_<worker>.txt`): `key = value` lines, in the order
/// written (model, serial number, firmware, the `device.*` counters; the HDF5 exporter
/// copies them into its run metadata). The keys the engine itself reads have constants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceNotes {
    /// The lines, as (key, value).
    pub entries: Vec<(String, String)>,
}

impl DeviceNotes {
    /// `false` while the device is disconnected.
    pub const CONNECTED: &'static str = "device.connected";
    /// Good events read so far.
    pub const EVENTS: &'static str = "device.events";
    /// Bad records skipped so far.
    pub const BAD_RECORDS: &'static str = "device.bad_records";
    /// Disconnects it came back from.
    pub const GAPS: &'static str = "device.gaps";
    /// Seconds it was gone in all, over those disconnects.
    pub const GAP_SECONDS: &'static str = "device.gap_seconds";
    /// `true` while no good event came for longer than `expect_data_within`.
    pub const SILENT: &'static str = "device.silent";
    /// Silent spells so far.
    pub const SILENCES: &'static str = "device.silences";

    /// The notes in `path`; none when it cannot be read.
    pub fn read(path: &Path) -> DeviceNotes {
        DeviceNotes {
            entries: read_notes(path),
        }
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (k, v) in &self.entries {
            text.push_str(k);
            text.push_str(" = ");
            text.push_str(v);
            text.push('\n');
        }
        text
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The count `key`; 0 when absent or not a number.
    pub fn count(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The device's state as a statistics snapshot shows it; `None` without notes.
    pub fn state(&self) -> Option<DeviceState> {
        if self.entries.is_empty() {
            return None;
        }
        Some(DeviceState {
            connected: self.get(Self::CONNECTED) != Some("false"),
            gaps: self.count(Self::GAPS),
            bad_records: self.count(Self::BAD_RECORDS),
            silent: self.get(Self::SILENT) == Some("true"),
        })
    }
}

/// The counts of one `export.kafka` process (`kafka_<worker>_<process>.json`).
pub fn kafka_counts_path(run_dir: &Path, worker: &str, process: usize) -> PathBuf {
    run_dir.join(format!("kafka_{worker}_{process}.json"))
}

/// What one `export.kafka` process did with its events, written about once a second while
/// the run goes on and once more at the end. Always: `events = delivered + lost + in
/// flight`, and at the end nothing is in flight. Lenient to read (a missing field is 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KafkaCounts {
    /// The topic of the events.
    pub topic: String,
    /// The messages' source name (and record key).
    pub source_name: String,
    /// `da00` or `ev44`.
    pub format: String,
    /// Events taken from the source buffer.
    pub events: u64,
    /// Events the broker acknowledged.
    pub delivered: u64,
    /// Events lost: `failed + dropped_spool_full + refused + undelivered_at_end`.
    pub lost: u64,
    /// Deliveries the client reported failed.
    pub failed: u64,
    /// Events dropped because the client's queue and the spool were both full.
    pub dropped_spool_full: u64,
    /// Events the client refused (e.g. larger than the broker takes).
    pub refused: u64,
    /// Events still waiting when the end-of-run drain gave up.
    pub undelivered_at_end: u64,
    /// Events that went into the spool while the client's queue was full.
    pub spooled: u64,
    /// Events handed from the spool to the client again.
    pub replayed: u64,
    /// Events in the spool now.
    pub spool_pending: u64,
    /// Most events in the spool at once.
    pub spool_peak: u64,
    /// Status messages (f144, al00, x5f2) that could not be queued (not events; not lost).
    pub status_dropped: u64,
    /// Sends that waited for room because the client held `hold_kb` (its source buffer held
    /// the events meanwhile; nothing lost).
    pub waits_for_room: u64,
    /// Of those, waits that ran out (no delivery for 20 ms, or 50 ms in all): the broker
    /// paused and the client's queue took the events.
    pub waits_ran_out: u64,
    /// While the broker does not have the topic: that, named with the broker (its events
    /// wait in the spool meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_topic: Option<String>,
    /// The run ended for this process: the counts are final.
    pub done: bool,
}

/// The counts of the `export.kafka` worker `worker` (its `processes` processes summed;
/// `done` only when every one is), or `None` when none has written its file yet.
pub fn worker_kafka_counts(run_dir: &Path, worker: &str, processes: usize) -> Option<KafkaCounts> {
    let mut sum: Option<KafkaCounts> = None;
    for p in 0..processes.max(1) {
        let read = std::fs::read(kafka_counts_path(run_dir, worker, p))
            .ok()
            .and_then(|b| serde_json::from_slice::<KafkaCounts>(&b).ok());
        let Some(c) = read else {
            if let Some(s) = &mut sum {
                s.done = false;
            }
            continue;
        };
        let s = sum.get_or_insert_with(|| KafkaCounts {
            topic: c.topic.clone(),
            source_name: c.source_name.clone(),
            format: c.format.clone(),
            done: p == 0,
            ..KafkaCounts::default()
        });
        s.add(&c);
    }
    sum
}

impl KafkaCounts {
    /// Adds another process's counts (the names stay).
    pub fn add(&mut self, c: &KafkaCounts) {
        self.events += c.events;
        self.delivered += c.delivered;
        self.lost += c.lost;
        self.failed += c.failed;
        self.dropped_spool_full += c.dropped_spool_full;
        self.refused += c.refused;
        self.undelivered_at_end += c.undelivered_at_end;
        self.spooled += c.spooled;
        self.replayed += c.replayed;
        self.spool_pending += c.spool_pending;
        self.spool_peak += c.spool_peak;
        self.status_dropped += c.status_dropped;
        self.waits_for_room += c.waits_for_room;
        self.waits_ran_out += c.waits_ran_out;
        if self.no_topic.is_none() {
            self.no_topic.clone_from(&c.no_topic);
        }
        self.done &= c.done;
    }
}

/// The last complete line of the statistics file `path` (`stats.jsonl`) that is a JSON
/// object, read from its end (at most the last 1 MiB); `None` when there is none yet. Lines
/// after it that are not one are passed over: after a power cut the file may end in zeros
/// or in bytes that never were a line, and the run's last statistics are still the ones
/// before them.
pub fn last_stats_line(path: &Path) -> Option<String> {
    let (buf, cut) = crate::fsio::tail(path, 1 << 20)?;
    // Only whole lines: the file's last byte is a newline unless a line is being written.
    let end = buf.iter().rposition(|&b| b == b'\n')?;
    let body = &buf[..end];
    let mut stop = body.len();
    loop {
        let from = body[..stop]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if from == 0 && cut {
            // The start of the tail is the end of a line read only in part.
            return None;
        }
        let object = std::str::from_utf8(&body[from..stop]).ok().filter(|t| {
            t.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
        });
        if let Some(line) = object {
            return Some(line.to_string());
        }
        if from == 0 {
            return None;
        }
        stop = from - 1;
    }
}

/// The supervisor's latest statistics of the run in `run_dir`: the last complete line of its
/// `stats.jsonl` ([`last_stats_line`]); `None` when there is none or it does not parse.
pub fn last_snapshot(run_dir: &Path) -> Option<Snapshot> {
    last_stats_line(&run_dir.join(STATS)).and_then(|l| serde_json::from_str(&l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_notes_round_trip_and_give_the_state() {
        let dir = crate::fsio::test_dir("run-dir-notes");
        let notes = DeviceNotes {
            entries: vec![
                ("device.model".into(), "DS1054Z".into()),
                (DeviceNotes::CONNECTED.into(), "false".into()),
                (DeviceNotes::GAPS.into(), "2".into()),
                (DeviceNotes::BAD_RECORDS.into(), "x".into()),
            ],
        };
        let path = device_notes_path(&dir, "scope");
        std::fs::write(&path, notes.text()).unwrap();
        let back = DeviceNotes::read(&path);
        assert_eq!(back, notes);
        let s = back.state().unwrap();
        assert!(!s.connected && !s.silent);
        assert_eq!((s.gaps, s.bad_records), (2, 0));
        assert_eq!(run_notes(&dir), vec![("scope".to_string(), notes.entries)]);
        assert_eq!(DeviceNotes::read(&dir.join("none")).state(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    #[test]
    fn the_last_whole_stats_line_and_a_kafka_workers_counts_summed_over_its_processes() {
        let dir = crate::fsio::test_dir("run-dir-last");
        let stats = dir.join(STATS);
        assert_eq!(last_stats_line(&stats), None, "no file");
        std::fs::write(&stats, "{\"t\": 1}\n{\"t\": 2}\n{\"t\": 3").unwrap();
        // The third line is still being written: the second is the last whole one.
        assert_eq!(last_stats_line(&stats).as_deref(), Some("{\"t\": 2}"));
        std::fs::write(&stats, "{\"t\": 1}\n").unwrap();
        assert_eq!(last_stats_line(&stats).as_deref(), Some("{\"t\": 1}"));
        // A power cut: the file's size was written, its last blocks were not (zeros), or
        // they hold bytes that never were a line; the last good line is still the run's.
        let mut cut = b"{\"t\": 1}\n{\"t\": 2}\n".to_vec();
        cut.extend_from_slice(&[0; 40]);
        cut.extend_from_slice(b"\n\xff\xfe{\"t\n{\"t\": 9, \"buf\n");
        std::fs::write(&stats, &cut).unwrap();
        assert_eq!(last_stats_line(&stats).as_deref(), Some("{\"t\": 2}"));
        assert_eq!(last_snapshot(&dir).map(|s| s.t), Some(2.0));
        for (p, delivered, done) in [(0, 5, true), (1, 7, false)] {
            let c = KafkaCounts {
                topic: "raw".into(),
                delivered,
                done,
                ..Default::default()
            };
            std::fs::write(
                kafka_counts_path(&dir, "to_kafka", p),
                serde_json::to_string(&c).unwrap(),
            )
            .unwrap();
        }
        let c = worker_kafka_counts(&dir, "to_kafka", 2).unwrap();
        assert_eq!((c.topic.as_str(), c.delivered, c.done), ("raw", 12, false));
        assert_eq!(
            worker_kafka_counts(&dir, "to_kafka", 1).unwrap().delivered,
            5
        );
        assert!(worker_kafka_counts(&dir, "to_kafka", 1).unwrap().done);
        // A process that has written nothing yet: not done.
        assert!(!worker_kafka_counts(&dir, "to_kafka", 3).unwrap().done);
        assert_eq!(worker_kafka_counts(&dir, "other", 1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
