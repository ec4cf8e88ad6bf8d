//! The plots' data, read from the files the analysis functions keep in the run directory:
//! `oscilloscope_<worker>.json` (latest trace) and `histogram_<worker>_<field>.csv`.
//!
//! Guarantees: the monitor never touches a ring for its plots; files are read at most once
//! per [`RunFiles::min_interval`] and only when their modification time changed; a file
//! that is half-written, garbage or too large is skipped (the last good copy is kept),
//! never a panic. Temporary files (`*.tmp`) are ignored.

pub use crate::analysis::histogram::{parse_histogram_csv, HistogramCsvError, HistogramFile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Files larger than this are not read (a trace of 4 × 64 k samples is about 5 MB).
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// The latest oscilloscope trace of one `observe.oscilloscope` worker.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Trace {
    /// The worker that wrote it.
    #[serde(default)]
    pub worker: String,
    /// The event's counter.
    #[serde(default)]
    pub counter: i64,
    /// The event's timestamp (s).
    #[serde(default)]
    pub timestamp: f64,
    /// Seconds per sample.
    #[serde(default)]
    pub sample_interval: f64,
    /// Time of each sample (s).
    pub time: Vec<f64>,
    /// Channel name → volts per sample.
    pub channels: BTreeMap<String, Vec<f64>>,
    /// The time axis' unit when the oscilloscope names one (mimoCoRB2's `t_scaling`).
    #[serde(default)]
    pub time_unit: Option<String>,
    /// The value axis' unit when the oscilloscope names one (`y_scaling`).
    #[serde(default)]
    pub value_unit: Option<String>,
    /// Fixed value-axis limits.
    #[serde(default)]
    pub ylim: Option<[f64; 2]>,
    /// A level to draw as a line.
    #[serde(default)]
    pub trigger_level: Option<f64>,
}

/// Parses an `oscilloscope_<worker>.json`; `None` unless every channel has one value per
/// time and every number is finite.
pub fn parse_trace(bytes: &[u8]) -> Option<Trace> {
    let t: Trace = serde_json::from_slice(bytes).ok()?;
    let n = t.time.len();
    let ok = t.time.iter().all(|x| x.is_finite())
        && t.channels
            .values()
            .all(|c| c.len() == n && c.iter().all(|x| x.is_finite()));
    ok.then_some(t)
}

struct Seen {
    modified: SystemTime,
    len: u64,
}

/// The plot files of one run directory, re-read when they change.
pub struct RunFiles {
    run_dir: PathBuf,
    min_interval: Duration,
    last: Option<Instant>,
    seen: BTreeMap<PathBuf, Seen>,
    traces: BTreeMap<String, Trace>,
    histograms: BTreeMap<(String, String), HistogramFile>,
}

impl RunFiles {
    /// Watches `run_dir`, reading at most every `min_interval`.
    pub fn new(run_dir: &Path, min_interval: Duration) -> RunFiles {
        RunFiles {
            run_dir: run_dir.to_path_buf(),
            min_interval,
            last: None,
            seen: BTreeMap::new(),
            traces: BTreeMap::new(),
            histograms: BTreeMap::new(),
        }
    }

    /// The least time between two looks at the directory.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Looks for new or changed files, unless it looked less than `min_interval` ago.
    pub fn refresh(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return;
        }
        self.last = Some(Instant::now());
        let Ok(dir) = std::fs::read_dir(&self.run_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_trace = name.starts_with("oscilloscope_") && name.ends_with(".json");
            let is_hist = name.starts_with("histogram_") && name.ends_with(".csv");
            if !is_trace && !is_hist {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if meta.len() > MAX_FILE_BYTES
                || self
                    .seen
                    .get(&path)
                    .is_some_and(|s| s.modified == modified && s.len == meta.len())
            {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let good = if is_trace {
                let worker = name["oscilloscope_".len()..name.len() - ".json".len()].to_string();
                parse_trace(&bytes).map(|mut t| {
                    if t.worker.is_empty() {
                        t.worker = worker.clone();
                    }
                    self.traces.insert(worker, t);
                })
            } else {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| parse_histogram_csv(s).ok())
                    .map(|mut h| {
                        let stem = &name["histogram_".len()..name.len() - ".csv".len()];
                        let suffix = format!("_{}", h.field);
                        h.worker = match stem.strip_suffix(&suffix) {
                            Some(w) if !h.field.is_empty() => w.to_string(),
                            _ => {
                                h.field = stem.to_string();
                                String::new()
                            }
                        };
                        self.histograms
                            .insert((h.worker.clone(), h.field.clone()), h);
                    })
            };
            if good.is_some() {
                self.seen.insert(
                    path,
                    Seen {
                        modified,
                        len: meta.len(),
                    },
                );
            }
        }
    }

    /// The latest trace of every oscilloscope, by worker.
    pub fn traces(&self) -> &BTreeMap<String, Trace> {
        &self.traces
    }

    /// Every histogram, by (worker, field).
    pub fn histograms(&self) -> &BTreeMap<(String, String), HistogramFile> {
        &self.histograms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CSV: &str = "# field: height\n# entries: 3, underflow: 1, overflow: 2, invalid: 0\n\
                       bin_low,bin_high,count\n0,0.5,1\n0.5,1,2\n";

    #[test]
    fn reads_what_export_histogram_writes() {
        let mut h = crate::analysis::histogram::Histogram::new(0.0, 1.5, 3).unwrap();
        for x in [0.1, 0.2, 0.7, 1.4, 2.0, -1.0, f64::NAN] {
            h.fill(x);
        }
        let f = parse_histogram_csv(&h.to_csv("height", Some(7))).unwrap();
        assert_eq!(f.field, "height");
        assert_eq!(f.counts, vec![2, 1, 1]);
        assert_eq!(f.edges, vec![0.0, 0.5, 1.0, 1.5]);
        assert_eq!(
            (f.entries, f.underflow, f.overflow, f.invalid, f.events),
            (4, 1, 1, 1, Some(7))
        );
    }

    #[test]
    fn names_worker_and_field_from_the_file() {
        let dir = crate::fsio::test_dir("monitor-files");
        std::fs::write(dir.join("histogram_my_spectra_height.csv"), CSV).unwrap();
        std::fs::write(dir.join("histogram_x_y.csv.tmp"), "garbage").unwrap();
        std::fs::write(
            dir.join("oscilloscope_scope.json"),
            r#"{"worker":"scope","counter":7,"timestamp":1.0,"sample_interval":0.5,
               "time":[0,0.5],"channels":{"chA":[0.1,0.2]}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("oscilloscope_bad.json"),
            r#"{"time":[0],"channels":{"a":[]}}"#,
        )
        .unwrap();
        let mut f = RunFiles::new(&dir, Duration::ZERO);
        f.refresh();
        let h = &f.histograms()[&("my_spectra".to_string(), "height".to_string())];
        assert_eq!(h.counts, vec![1, 2]);
        assert_eq!(f.histograms().len(), 1);
        assert_eq!(f.traces().len(), 1);
        assert_eq!(f.traces()["scope"].counter, 7);
        assert_eq!(f.traces()["scope"].channels["chA"], vec![0.1, 0.2]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_gaps_and_bad_lines() {
        let gap = "bin_low,bin_high,count\n0,1,1\n2,3,1\n";
        assert_eq!(
            parse_histogram_csv(gap),
            Err(HistogramCsvError::BadEdges { line: 3 })
        );
        let bad = "bin_low,bin_high,count\n0,1,x\n";
        assert!(matches!(
            parse_histogram_csv(bad),
            Err(HistogramCsvError::BadLine { line: 2, .. })
        ));
        assert_eq!(parse_histogram_csv(""), Err(HistogramCsvError::NoBins));
        assert_eq!(
            parse_histogram_csv("bin_low,bin_high,count\n"),
            Err(HistogramCsvError::NoBins)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_truncation_is_refused_or_consistent(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..200,
        ) {
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(h) = parse_histogram_csv(&text) {
                prop_assert_eq!(h.edges.len(), h.counts.len() + 1);
            }
            let cut = cut.min(CSV.len());
            if let Ok(h) = parse_histogram_csv(&CSV[..cut]) {
                prop_assert_eq!(h.edges.len(), h.counts.len() + 1);
                prop_assert!(h.edges.windows(2).all(|w| w[1] > w[0]));
                prop_assert!(h.counts.len() <= 2);
            }
            let _ = parse_trace(&bytes);
        }
    }
}
