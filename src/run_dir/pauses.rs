//! `pauses.jsonl`: when the importers of a run were paused and resumed. The supervisor
//! appends a line as it sends each pause or resume that changes the state; the HDF5 exporter
//! reads the file when it closes a run file, to say how long that file's span was paused.
//! Intervals are measured on `CLOCK_MONOTONIC` (the same clock in every process of the
//! machine, never stepped), so the summary's `paused_seconds` and a file's that spans the
//! whole run are the same sum of the same nanoseconds.

use crate::clock::Moment;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The pause marks of the run (`pauses.jsonl`), one JSON object a line.
pub const PAUSES: &str = "pauses.jsonl";

/// The pause file of the run in `run_dir`.
pub fn pauses_path(run_dir: &Path) -> PathBuf {
    run_dir.join(PAUSES)
}

/// One line of `pauses.jsonl`: the importers were paused (or resumed) at this moment.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PauseMark {
    /// True: paused here; false: resumed here.
    pub paused: bool,
    /// When, on both clocks.
    #[serde(flatten)]
    pub at: Moment,
    /// The same moment for people: UTC ISO 8601.
    pub time: String,
}

impl PauseMark {
    /// A mark at `at`.
    pub fn new(paused: bool, at: Moment) -> PauseMark {
        PauseMark {
            paused,
            at,
            time: at.iso(),
        }
    }

    /// Appends this mark to the pause file of `run_dir` as one whole line (a full disk leaves
    /// the file as it was).
    pub fn append(&self, run_dir: &Path) -> std::io::Result<()> {
        let path = pauses_path(run_dir);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // `append_line` cuts a failed write back to where the file ended: its position is
        // the end, not 0 as for a freshly opened append-only file.
        f.seek(SeekFrom::End(0))?;
        let line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        if crate::fsio::append_line(&mut f, &line) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "could not append a line to {}",
                path.display()
            )))
        }
    }
}

/// The pauses of a run: intervals from a pause to the resume after it, the last one open
/// while the run is paused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pauses(pub Vec<(Moment, Option<Moment>)>);

/// What of the pauses falls within a span of time (a file's, from its opening to its close).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PausedWithin {
    /// Nanoseconds paused within the span.
    pub ns: u64,
    /// Each pause within it, cut to the span, as an ISO 8601 interval `START/END` (UTC).
    pub intervals: Vec<String>,
}

impl PausedWithin {
    /// Seconds paused within the span.
    pub fn seconds(&self) -> f64 {
        self.ns as f64 / 1e9
    }
}

impl Pauses {
    /// The pauses in the run directory `run_dir`; none when it has no pause file. A line that
    /// does not parse (one being written) is passed over; a pause while paused or a resume
    /// while running (which the supervisor never writes) changes nothing.
    pub fn read(run_dir: &Path) -> Pauses {
        let text = std::fs::read_to_string(pauses_path(run_dir)).unwrap_or_default();
        let mut out: Vec<(Moment, Option<Moment>)> = Vec::new();
        for mark in text
            .lines()
            .filter_map(|l| serde_json::from_str::<PauseMark>(l).ok())
        {
            let open = out.last_mut().filter(|(_, end)| end.is_none());
            match (mark.paused, open) {
                (true, None) => out.push((mark.at, None)),
                (false, Some((_, end))) => *end = Some(mark.at),
                _ => {}
            }
        }
        Pauses(out)
    }

    /// The same pauses measured on the wall clock: for a recovery, after the run's processes
    /// (and maybe the boot whose monotonic clock they used) are gone, where a file's span is
    /// known only as wall-clock times. Pass [`Moment`]s made by [`Pauses::wall_moment`].
    pub fn on_the_wall_clock(&self) -> Pauses {
        let wall = |m: &Moment| Pauses::wall_moment(m.unix_s);
        Pauses(
            self.0
                .iter()
                .map(|(a, b)| (wall(a), b.as_ref().map(wall)))
                .collect(),
        )
    }

    /// A moment known only by its wall-clock time, for [`Pauses::on_the_wall_clock`].
    pub fn wall_moment(unix_s: f64) -> Moment {
        Moment {
            monotonic_ns: (unix_s.max(0.0) * 1e9) as u64,
            unix_s,
        }
    }

    /// What of the pauses lies between `from` and `to`; a pause still open ends at `to`.
    pub fn within(&self, from: Moment, to: Moment) -> PausedWithin {
        let mut out = PausedWithin::default();
        for (start, end) in &self.0 {
            let end = end
                .filter(|e| e.monotonic_ns < to.monotonic_ns)
                .unwrap_or(to);
            let start = if start.monotonic_ns > from.monotonic_ns {
                *start
            } else {
                from
            };
            if end.monotonic_ns > start.monotonic_ns {
                out.ns += end.monotonic_ns - start.monotonic_ns;
                out.intervals.push(format!("{}/{}", start.iso(), end.iso()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Moment {
        Moment {
            monotonic_ns: s * 1_000_000_000,
            unix_s: 1_700_000_000.0 + s as f64,
        }
    }

    #[test]
    fn marks_round_trip_into_intervals_cut_to_a_span() {
        let dir = crate::fsio::test_dir("run-dir-pauses");
        assert_eq!(Pauses::read(&dir), Pauses::default());
        for (paused, s) in [(true, 10), (false, 15), (true, 20), (false, 30), (true, 40)] {
            PauseMark::new(paused, at(s)).append(&dir).unwrap();
        }
        // A line being written when the file is read is passed over.
        std::fs::write(
            pauses_path(&dir),
            std::fs::read_to_string(pauses_path(&dir)).unwrap() + "{\"paused\": fal",
        )
        .unwrap();
        let p = Pauses::read(&dir);
        assert_eq!(
            p.0,
            vec![
                (at(10), Some(at(15))),
                (at(20), Some(at(30))),
                (at(40), None)
            ]
        );
        // The whole run: 5 + 10 s closed, the open pause to the end.
        let all = p.within(at(0), at(45));
        assert_eq!(all.ns, 20_000_000_000);
        assert_eq!(all.seconds(), 20.0);
        assert_eq!(
            all.intervals,
            [
                "2023-11-14T22:13:30.000Z/2023-11-14T22:13:35.000Z",
                "2023-11-14T22:13:40.000Z/2023-11-14T22:13:50.000Z",
                "2023-11-14T22:14:00.000Z/2023-11-14T22:14:05.000Z",
            ]
        );
        // A file from 12 s to 25 s: the first pause's end and the second's start.
        let file = p.within(at(12), at(25));
        assert_eq!(file.ns, 8_000_000_000);
        assert_eq!(
            file.intervals,
            [
                "2023-11-14T22:13:32.000Z/2023-11-14T22:13:35.000Z",
                "2023-11-14T22:13:40.000Z/2023-11-14T22:13:45.000Z",
            ]
        );
        // A file between pauses holds none.
        assert_eq!(p.within(at(16), at(19)), PausedWithin::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_repeated_mark_changes_nothing() {
        let dir = crate::fsio::test_dir("run-dir-pauses-repeated");
        for (paused, s) in [(false, 1), (true, 2), (true, 3), (false, 4), (false, 5)] {
            PauseMark::new(paused, at(s)).append(&dir).unwrap();
        }
        assert_eq!(Pauses::read(&dir).0, vec![(at(2), Some(at(4)))]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
