//! Free space on the disk a run writes to, watched while the run goes on.
//!
//! Guarantees: [`DiskWatch::check`] makes one `fstat`, one `stat` and one `statvfs` call
//! and no allocation unless it has something to say; below twice the reserve, or when the
//! reserve would be reached within ten minutes at the sustained rate (the free space's fall
//! averaged over about the last minute) or within a minute at the rate of the last second, it
//! warns with the time left (at most every 30 s), so a few seconds' burst by another program
//! on a roomy disk does not warn; when the reserve would be reached within a second at the
//! rate of the last second (or is reached) it asks once for the run to stop, so the buffers
//! drain and the files close while there is room.
//! The run directory is held open: when it is deleted while the run goes on (its link count
//! drops to 0) the files in it went with it and everything written from then on would go
//! nowhere; when it is moved or renamed (its name no longer names it) the workers, which
//! write their files by its name, fail one after another. Either way it asks once for the
//! run to stop, saying which and, for a move, where the directory is now. Must never stop
//! a run for a disk it cannot read: a name that cannot be looked up for any other reason
//! than its absence (an NFS server away) is not a move.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Free bytes for an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir).ok().map(available)
}

/// Free bytes for an unprivileged writer that `s` says.
fn available(s: nix::sys::statvfs::Statvfs) -> u64 {
    s.blocks_available().saturating_mul(s.fragment_size())
}

/// The link count of the open file or directory `f` (one `fstat`).
fn links(f: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().ok().map(|m| m.nlink())
}

/// What became of the held run directory `held`, whose name was `dir`: `None` while `dir`
/// names it (or cannot be looked up for a reason other than its absence); else
/// [`DiskNews::Gone`]: deleted, or moved or renamed and where it is now.
fn vanished(held: &std::fs::File, dir: &Path) -> Option<DiskNews> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let it = held.metadata().ok()?;
    let dir_text = dir.display();
    if it.nlink() == 0 {
        let failure = format!("the run directory {dir_text} was deleted");
        return Some(DiskNews::Gone {
            message: format!(
                "{failure} while the run went on: the files in it went with it, and what \
                 comes now would be written nowhere; stopping the run"
            ),
            failure,
        });
    }
    let named = match std::fs::metadata(dir) {
        Ok(m) => Some(id(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => None,
        Err(_) => return None,
    };
    if named == Some(id(&it)) {
        return None;
    }
    use std::os::fd::AsRawFd;
    let failure = format!("the run directory {dir_text} was moved or renamed");
    let said = "while the run went on: the workers write their files by its old name and \
                would fail one after another; stopping the run";
    // Where it is now, as the kernel names the open directory.
    let Ok(now) = std::fs::read_link(format!("/proc/self/fd/{}", held.as_raw_fd())) else {
        return Some(DiskNews::Gone {
            message: format!("{failure} {said}"),
            failure,
        });
    };
    let now = now.display();
    Some(DiskNews::Gone {
        message: format!(
            "{failure} {said}; it is now {now} (`daq-engine recover {now}` writes its summary \
             there)"
        ),
        failure: format!("{failure} to {now}"),
    })
}

/// What the disk watch has to say.
#[derive(Clone, Debug, PartialEq)]
pub enum DiskNews {
    /// Space runs low: the message gives the free space and the time left.
    Low(String),
    /// The reserve is reached: stop the run now (said once).
    Stop(String),
    /// The run directory was deleted, moved or renamed: stop the run now, it failed (said
    /// once). `failure`: what happened, in a few words; `message`: that, and what it means.
    Gone {
        /// "the run directory … was deleted".
        failure: String,
        /// The whole message.
        message: String,
    },
}

/// Watches the free space under a run directory.
#[derive(Debug)]
pub struct DiskWatch {
    dir: PathBuf,
    reserve: u64,
    /// The last sample: when, and the free bytes then.
    last: Option<(Instant, u64)>,
    /// Bytes per second the free space shrank over the last window of a second or more (0
    /// when it did not shrink, or before the first second).
    rate: f64,
    /// `rate` averaged over about the last [`SUSTAINED_OVER`], each window weighted by
    /// `1 - e^(-its length / SUSTAINED_OVER)`; 0 before the first second, and never more
    /// than the largest `rate` so far.
    sustained: f64,
    warned: Option<Instant>,
    stopped: bool,
    /// The run directory held open (see the module documentation), until it was found
    /// deleted, moved or renamed.
    held: Option<std::fs::File>,
}

/// Warn when the reserve is this near at the sustained rate.
const WARN_AHEAD: Duration = Duration::from_secs(600);
/// How long a change in the rate takes to show in the sustained rate, and so how near the
/// reserve must be at the rate of the last second to warn without waiting for it.
///
/// The sustained rate is an exponential average rather than the fall over a minute of
/// kept samples: one number, nothing kept or allocated, and the same bound. A burst of `B`
/// bytes written by someone else raises it by at most `B / SUSTAINED_OVER`, so it warns
/// only when what is free above the reserve is under `WARN_AHEAD / SUSTAINED_OVER` (ten)
/// times the burst: the tester's 4 GB on a disk with 67 GB free does not warn. A run that
/// fills the disk from its start is warned with four fifths or more of its time left, or of
/// ten minutes if it has more: the average starts at 0 and follows within about a minute;
/// with less than a minute left no average is waited for.
const SUSTAINED_OVER: Duration = Duration::from_secs(60);
/// About how long a run takes to stop (importers end, buffers drain); the run is stopped
/// when the reserve would be reached within this time.
const STOP_TAKES: Duration = Duration::from_secs(1);
/// At most one warning this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Bytes as the disk's messages say them: `15.7 MB`.
pub fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

impl DiskWatch {
    /// Watches the disk of `dir`, asking for a stop when less than `reserve_bytes` are free.
    pub fn new(dir: impl Into<PathBuf>, reserve_bytes: u64) -> Self {
        let dir = dir.into();
        // A file system that gives directories no link count is not watched for it.
        let held = std::fs::File::open(&dir)
            .ok()
            .filter(|f| links(f).is_some_and(|n| n > 0));
        DiskWatch {
            dir,
            reserve: reserve_bytes,
            last: None,
            rate: 0.0,
            sustained: 0.0,
            warned: None,
            stopped: false,
            held,
        }
    }

    /// The reserve, in bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Samples the free space now; see [`DiskNews`].
    pub fn check(&mut self) -> Option<DiskNews> {
        if let Some(held) = &self.held {
            if let Some(gone) = vanished(held, &self.dir) {
                self.held = None;
                return Some(gone);
            }
        }
        // Through the open directory while there is one.
        let free = match &self.held {
            Some(dir) => nix::sys::statvfs::fstatvfs(dir).ok().map(available),
            None => free_bytes(&self.dir),
        }?;
        self.check_at(Instant::now(), free)
    }

    /// As [`check`](Self::check) with a given sample (for tests).
    pub fn check_at(&mut self, now: Instant, free: u64) -> Option<DiskNews> {
        // The rate over the last second or more: chunks are written whole (a MiB at a
        // time), so shorter windows would see bursts, not the rate.
        match self.last {
            Some((t0, f0)) => {
                let dt = now.duration_since(t0).as_secs_f64();
                if dt >= 1.0 {
                    self.rate = ((f0 as f64 - free as f64) / dt).max(0.0);
                    let weight = 1.0 - (-dt / SUSTAINED_OVER.as_secs_f64()).exp();
                    self.sustained += weight * (self.rate - self.sustained);
                    self.last = Some((now, free));
                }
            }
            None => self.last = Some((now, free)),
        }
        if self.stopped {
            return None;
        }
        let dir = self.dir.display();
        // What the run writes while its importers stop and the buffers drain.
        let stopping = (self.rate * STOP_TAKES.as_secs_f64()) as u64;
        if free <= self.reserve.saturating_add(stopping) {
            self.stopped = true;
            return Some(DiskNews::Stop(format!(
                "disk almost full: {} free under {dir}, written at {}/s, the reserve \
                 (disk_reserve_mb) is {}: stopping the run so the buffers drain and the files \
                 close cleanly",
                mb(free as f64),
                mb(self.rate),
                mb(self.reserve as f64)
            )));
        }
        // Seconds until the reserve at `rate`.
        let above = (free - self.reserve) as f64;
        let until = |rate: f64| {
            if rate > 0.0 {
                above / rate
            } else {
                f64::INFINITY
            }
        };
        // The rate of the last second only when it leaves no time to wait for the sustained
        // one (see SUSTAINED_OVER).
        let (rate, left) = match until(self.rate) {
            soon if soon < SUSTAINED_OVER.as_secs_f64() => (self.rate, soon),
            _ => (self.sustained, until(self.sustained)),
        };
        let low = free < self.reserve.saturating_mul(2) || left < WARN_AHEAD.as_secs_f64();
        if low
            && self
                .warned
                .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.warned = Some(now);
            let when = if left.is_finite() {
                format!(
                    "at {}/s the run stops in about {:.0} s",
                    mb(rate),
                    left.max(0.0)
                )
            } else {
                "it is not shrinking now".to_string()
            };
            return Some(DiskNews::Low(format!(
                "disk space low: {} free under {dir}, reserve {}; {when}",
                mb(free as f64),
                mb(self.reserve as f64)
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_with_time_left_then_stops_once_at_the_reserve() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut w = DiskWatch::new("/", 100_000_000);
        assert_eq!(w.check_at(t, 10_000_000_000), None);
        // 10 MB/s with 9.8 GB above the reserve: 980 s away, no warning yet.
        assert_eq!(w.check_at(t + s(1), 9_990_000_000), None);
        let mut w = DiskWatch::new("/", 100_000_000);
        assert_eq!(w.check_at(t, 700_000_000), None);
        // 10 MB/s with 590 MB above the reserve: 59 s left.
        let n = w.check_at(t + s(1), 690_000_000);
        let Some(DiskNews::Low(m)) = n else {
            panic!("{n:?}")
        };
        assert!(
            m.contains("690.0 MB free") && m.contains("stops in about 59 s"),
            "{m}"
        );
        // No second warning within 30 s.
        assert_eq!(w.check_at(t + s(2), 680_000_000), None);
        let n = w.check_at(t + s(3), 99_000_000);
        assert!(matches!(n, Some(DiskNews::Stop(_))), "{n:?}");
        assert_eq!(w.check_at(t + s(4), 98_000_000), None);
    }

    #[test]
    fn a_fast_writer_is_stopped_a_second_before_the_reserve() {
        let mut w = DiskWatch::new("/", 5_000_000);
        let t = Instant::now();
        assert_eq!(w.check_at(t, 200_000_000), None);
        // Within the first second the rate is not known yet.
        assert_eq!(
            w.check_at(t + Duration::from_millis(500), 150_000_000),
            None
        );
        // 100 MB/s: 95 MB above the reserve is less than a second away.
        let n = w.check_at(t + Duration::from_secs(1), 100_000_000);
        assert!(matches!(n, Some(DiskNews::Stop(_))), "{n:?}");
    }

    /// A tester's run with 67 GB free warned "at … /s the run stops in about 123 s" and
    /// raised the low-disk alert while another program wrote 4 GB to the disk within a few
    /// seconds: the rate of the last second saw the burst, not the run. Neither at the start
    /// of a run nor two minutes in does such a burst warn.
    #[test]
    fn a_burst_by_another_program_does_not_warn() {
        for burst_at in [1, 121] {
            let t = Instant::now();
            let mut w = DiskWatch::new("/", 100_000_000);
            let mut free = 67_000_000_000u64;
            assert_eq!(w.check_at(t, free), None);
            // The run writes 1 MB/s for ten minutes; the other program 500 MB/s for 8 s.
            for i in 1..=600 {
                free -= 1_000_000;
                if (burst_at..burst_at + 8).contains(&i) {
                    free -= 500_000_000;
                }
                let n = w.check_at(t + Duration::from_secs(i), free);
                assert_eq!(n, None, "burst at {burst_at} s, {i} s in");
            }
        }
    }

    /// A run that fills the disk at a steady rate from its start is warned while minutes are
    /// left, and stopped a second before the reserve as before.
    #[test]
    fn a_run_filling_the_disk_is_warned_minutes_ahead() {
        let t = Instant::now();
        let reserve = 100_000_000;
        let mut w = DiskWatch::new("/", reserve);
        // 20 MB/s with 10 GB above the reserve: 500 s.
        let mut free = reserve + 10_000_000_000;
        assert_eq!(w.check_at(t, free), None);
        let mut warned = None;
        for i in 1..=500 {
            free -= 20_000_000;
            match w.check_at(t + Duration::from_secs(i), free) {
                None => {}
                Some(DiskNews::Low(m)) => {
                    warned.get_or_insert((i, m));
                }
                Some(DiskNews::Stop(_)) => {
                    // With one second of writing left, no later.
                    assert_eq!(free, reserve + 20_000_000, "stopped at {i} s");
                    let (at, m) = warned.expect("a warning before the stop");
                    // Five minutes or more were left when it warned.
                    assert!(
                        at <= 200 && m.contains("the run stops in about"),
                        "{at} s: {m}"
                    );
                    return;
                }
                n => panic!("{n:?}"),
            }
        }
        panic!("no stop; warned: {warned:?}");
    }

    /// A scratch directory holding `run`, and a watch of `run` that has nothing to say yet.
    fn watched_run_dir(tag: &str) -> (PathBuf, PathBuf, DiskWatch) {
        let base = crate::fsio::test_dir(tag);
        let dir = base.join("run");
        std::fs::create_dir(&dir).unwrap();
        let mut w = DiskWatch::new(&dir, 0);
        assert_eq!(w.check(), None);
        (base, dir, w)
    }

    #[test]
    fn a_deleted_run_directory_stops_the_run_once() {
        let (base, dir, mut w) = watched_run_dir("disk-gone");
        // A reserve no disk has: any reading of the free space asks for a stop.
        let mut full = DiskWatch::new(&dir, u64::MAX);
        assert!(matches!(full.check(), Some(DiskNews::Stop(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        let n = w.check();
        let Some(DiskNews::Gone { message: m, .. }) = n else {
            panic!("{n:?}")
        };
        assert!(
            m.contains("run directory") && m.contains("was deleted"),
            "{m}"
        );
        assert_eq!(w.check(), None);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A run directory renamed under a run: its workers, writing by its old name, failed one
    /// by one and the run ended saying its directory was gone; nothing said where it was.
    #[test]
    fn a_moved_run_directory_stops_the_run_once_saying_where_it_is() {
        let (base, dir, mut w) = watched_run_dir("disk-moved");
        let moved = base.join("week_1");
        std::fs::rename(&dir, &moved).unwrap();
        let n = w.check();
        let Some(DiskNews::Gone { message: m, .. }) = n else {
            panic!("{n:?}")
        };
        let (was, now) = (dir.display(), moved.display());
        assert!(
            m.contains(&format!("{was} was moved or renamed while the run went on"))
                && m.contains(&format!("it is now {now} (`daq-engine recover {now}`")),
            "{m}"
        );
        assert_eq!(w.check(), None);
        // Another directory made under the old name is not the run's either.
        let mut w = DiskWatch::new(&moved, 0);
        std::fs::rename(&moved, &dir).unwrap();
        std::fs::create_dir(&moved).unwrap();
        assert!(matches!(w.check(), Some(DiskNews::Gone { .. })));
        let _ = std::fs::remove_dir_all(&base);
    }
}
