//! `stats.jsonl` as the supervisor writes it: a line every `stats_interval`, thinned as the
//! run ages so that a week-long run does not fill its disk with statistics.
//!
//! A line is about 1.5 KB for five workers: at the default 1 s that was 0.9 GB a week, where
//! a Geiger counter's data is a megabyte. Once the file passes [`COMPACT_AT`], it is
//! rewritten (atomically: a new file renamed over it) keeping every line of the last
//! [`FULL_FOR`] seconds of the run and one line a [`HISTORY_STEP`] before that. Each line
//! holds the run's totals (events, lost, dead time) as of its time, so thinning loses time
//! resolution of the history only; the newest line, which `status`, `recover` and the
//! monitor read, is always kept. A week at 1 s is then about 15 MB of history and at most
//! [`COMPACT_AT`] of recent lines.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// The size at which the file is thinned.
pub const COMPACT_AT: u64 = 32 << 20;
/// Seconds of the run, counted back from its newest line, whose lines are all kept.
pub const FULL_FOR: f64 = 3600.0;
/// Seconds between the lines kept before that.
pub const HISTORY_STEP: f64 = 60.0;

/// The run's time of a line (its `t`), `None` for a line without one.
fn time_of(line: &str) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct T {
        t: f64,
    }
    serde_json::from_str::<T>(line).ok().map(|x| x.t)
}

/// The lines of `text` to keep: all of the last `full_for` seconds (of the newest line's
/// `t`), and before that the first line of each `step` seconds. A line without a time is
/// kept (nothing is dropped that is not understood).
pub fn thin(text: &str, full_for: f64, step: f64) -> String {
    let lines: Vec<(&str, Option<f64>)> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| (l, time_of(l)))
        .collect();
    let Some(newest) = lines.iter().rev().find_map(|(_, t)| *t) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() / 8);
    let mut last_step = None;
    for (l, t) in lines {
        let keep = match t {
            None => true,
            Some(t) if t > newest - full_for => true,
            Some(t) => {
                let s = (t / step).floor() as i64;
                let new = last_step != Some(s);
                last_step = Some(s);
                new
            }
        };
        if keep {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The statistics file of a live run.
#[derive(Debug)]
pub struct StatsFile {
    path: PathBuf,
    file: std::fs::File,
    /// The size at which it is thinned next: [`COMPACT_AT`], or twice what the last thinning
    /// left when that was more (lines far apart leave little to thin; not again at once).
    compact_at: u64,
    full_for: f64,
    step: f64,
    compactions: u32,
}

impl StatsFile {
    /// Creates (empties) the file at `path`.
    pub fn create(path: &Path) -> std::io::Result<StatsFile> {
        Self::with_limits(path, COMPACT_AT, FULL_FOR, HISTORY_STEP)
    }

    /// As [`StatsFile::create`], thinned at `compact_at` bytes, keeping `full_for` seconds
    /// whole and one line a `step` before.
    pub fn with_limits(
        path: &Path,
        compact_at: u64,
        full_for: f64,
        step: f64,
    ) -> std::io::Result<StatsFile> {
        Ok(StatsFile {
            path: path.to_path_buf(),
            file: std::fs::File::create(path)?,
            compact_at,
            full_for,
            step,
            compactions: 0,
        })
    }

    /// Appends `line` (whole, or not at all: see [`crate::fsio::append_line`]) and thins the
    /// file when it has grown past its limit. Returns whether the line was written.
    pub fn append(&mut self, line: &str) -> bool {
        let written = crate::fsio::append_line(&mut self.file, line);
        if written
            && self
                .file
                .stream_position()
                .is_ok_and(|n| n > self.compact_at)
        {
            if let Err(e) = self.compact() {
                // The file goes on growing; the next line tries again only after as much
                // again was written.
                self.compact_at = self.compact_at.saturating_mul(2);
                tracing::warn!("thinning {}: {e}", self.path.display());
            }
        }
        written
    }

    /// How many times the file was thinned.
    pub fn compactions(&self) -> u32 {
        self.compactions
    }

    fn compact(&mut self) -> std::io::Result<()> {
        let text = std::fs::read_to_string(&self.path)?;
        let kept = thin(&text, self.full_for, self.step);
        crate::fsio::write_atomic(&self.path, kept.as_bytes())?;
        // Appends go on at the end of the new file. Not O_APPEND: append_line cuts a failed
        // write back to the position it started from.
        let mut file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        let len = file.seek(std::io::SeekFrom::End(0))?;
        file.flush()?;
        self.file = file;
        self.compact_at = self.compact_at.max(len.saturating_mul(2));
        self.compactions += 1;
        tracing::info!(
            "{}: thinned from {} to {} bytes (the last {:.0} s whole, one line a {:.0} s before)",
            self.path.display(),
            text.len(),
            len,
            self.full_for,
            self.step
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: f64) -> String {
        format!(
            "{{\"t\":{t},\"buffers\":{{\"raw\":{{\"events_in\":{}}}}}}}",
            t as u64 * 10
        )
    }

    #[test]
    fn thinning_keeps_the_last_stretch_whole_and_one_line_a_step_before() {
        let text: String = (0..=600).map(|i| line(f64::from(i)) + "\n").collect();
        let kept = thin(&text, 100.0, 60.0);
        let times: Vec<f64> = kept.lines().map(|l| time_of(l).unwrap()).collect();
        // One a minute up to 500 (0, 60, …, 480), then every line after 500.
        let mut want: Vec<f64> = (0..=8).map(|m| f64::from(m * 60)).collect();
        want.extend((501..=600).map(f64::from));
        assert_eq!(times, want);
        // Idempotent, and a line it cannot read is kept.
        assert_eq!(thin(&kept, 100.0, 60.0), kept);
        let odd = format!("not json\n{}\n", line(1000.0));
        assert_eq!(thin(&odd, 100.0, 60.0), odd);
    }

    /// A week at 1 s grew stats.jsonl to about 0.9 GB. Thinned, the file stays bounded by the
    /// limit and the history, holds whole lines only, and its last line is the newest.
    #[test]
    fn a_long_run_at_one_line_a_second_stays_small() {
        let dir = crate::fsio::test_dir("stats-thin");
        let path = dir.join(crate::run_dir::STATS);
        let mut f = StatsFile::with_limits(&path, 64 << 10, 600.0, 60.0).unwrap();
        let mut largest = 0;
        let mut bytes = 0;
        // 24 hours at one line a second.
        for i in 0..86_400u32 {
            let l = line(f64::from(i));
            bytes += l.len() + 1;
            assert!(f.append(&l));
            largest = largest.max(std::fs::metadata(&path).unwrap().len());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&(line(86_399.0) + "\n")));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.iter().all(|l| time_of(l).is_some()),
            "whole lines only"
        );
        // Thinning leaves the last 600 s whole and one line a minute of the 23.8 h before
        // (about 2030 lines); the file grows to twice that before it is thinned again.
        assert!(lines.len() < 2 * (600 + 1440), "{} lines", lines.len());
        assert!(
            largest < 256 << 10,
            "{largest} bytes at the most, {bytes} written"
        );
        assert!(f.compactions() > 1);
        assert_eq!(
            crate::run_dir::last_stats_line(&path).unwrap(),
            line(86_399.0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Lines further apart than the step leave nothing to thin: the file is not rewritten
    /// at every line once it is past the limit.
    #[test]
    fn lines_that_cannot_be_thinned_are_not_rewritten_at_every_line() {
        let dir = crate::fsio::test_dir("stats-sparse");
        let path = dir.join(crate::run_dir::STATS);
        let mut f = StatsFile::with_limits(&path, 4 << 10, 600.0, 60.0).unwrap();
        for i in 0..2000u32 {
            assert!(f.append(&line(f64::from(i) * 120.0)));
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            2000
        );
        assert!(f.compactions() < 12, "{} rewrites", f.compactions());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
