//! The run directory's file contract, in one place: the names of the files a run writes,
//! the plan every worker process reads ([`plan`]), the books of the statistics lines and
//! the summary, and the device notes. Writers (supervisor, workers) and readers (monitor,
//! `status`, export, tests) use these names and types rather than their own.
//!
//! | file | written by | read by |
//! |---|---|---|
//! | [`PLAN`] `plan.json` | supervisor, before any worker starts | every worker process, the monitor |
//! | [`STATS`] `stats.jsonl` | supervisor, a line every `stats_interval` | monitor, `status`, tests |
//! | [`SUMMARY`] `summary.json` | `run`, atomically at the end; `recover` | `recover`, tests |
//! | [`LOG`] `daq-engine.log` | every process of the run | people |
//! | `device_<worker>.txt` ([`device_notes_path`]) | device importers, once a second | HDF5 export, supervisor, monitor |
//! | `scales_<worker>.txt` ([`scales::scales_path`]) | importers storing ADC counts, once at start | HDF5 export |
//!
//! Workers write result files of their own (HDF5 run files, `histogram_*.csv`,
//! `fit_*.json`, `oscilloscope_<worker>.json`, `drain_<worker>_<process>.json`, CSV);
//! their names are in the function reference (`daq-engine functions`).

pub mod plan;
pub mod scales;
pub mod snapshot;

pub use snapshot::{BufferStats, DeviceState, Snapshot, WorkerStats};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_notes_round_trip_and_give_the_state() {
        let dir = std::env::temp_dir().join(format!("daq-run-dir-notes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
