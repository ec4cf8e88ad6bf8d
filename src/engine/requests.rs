//! Control requests through the run directory: another process (the `daq_engine` Python
//! package, a script) asks the supervisor of a live run to pause, resume or stop, by putting
//! a file into `RUN_DIR/control/`; the supervisor takes the files in name order every loop
//! (50 ms), carries each out as the web monitor's buttons are (`Supervisor::control`), and
//! removes it. The removal is the answer: a requester waits for its file to go.
//!
//! Why files and not signals: a signal needs the supervisor's pid, which can be reused once
//! the run ended, and says nothing back; a file names the run it belongs to, works for any
//! process that may write the run directory, and its removal tells the requester that the
//! supervisor (not some other process) carried it out. Signalling the importers
//! directly would also bypass the supervisor's `paused` state (stats, dashboard).
//!
//! Must never: carry out a request twice, leave a half-written request to be read (a request
//! is written under a dot name and renamed), or make a requester wait for ever for a run
//! that has ended (it gives up when `summary.json` appears or its time runs out, and removes
//! its file).

use super::supervisor::Control;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The folder of pending requests inside a run directory.
pub const CONTROL_DIR: &str = "control";

/// The name a request file ends with for `c`.
fn action(c: Control) -> &'static str {
    match c {
        Control::Pause => "pause",
        Control::Resume => "resume",
        Control::Stop => "stop",
    }
}

fn parse(name: &str) -> Option<Control> {
    match name.rsplit_once('.')?.1 {
        "pause" => Some(Control::Pause),
        "resume" => Some(Control::Resume),
        "stop" => Some(Control::Stop),
        _ => None,
    }
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The run has ended (its `summary.json` exists).
    #[error("the run in {0} has ended")]
    Ended(PathBuf),
    /// No supervisor took the request in time.
    #[error(
        "no supervisor took the request within {1:?} (is the run in {0} still going?); \
         request withdrawn"
    )]
    NotTaken(PathBuf, Duration),
    /// The request file could not be written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Asks the supervisor of the run in `run_dir` for `c` and waits (at most `timeout`) until
/// it has carried it out.
pub fn request(run_dir: &Path, c: Control, timeout: Duration) -> Result<(), RequestError> {
    if run_dir.join("summary.json").exists() {
        return Err(RequestError::Ended(run_dir.to_path_buf()));
    }
    let dir = run_dir.join(CONTROL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| RequestError::Io(dir.clone(), e))?;
    // Name order is the order of asking: nanoseconds since the epoch, then pid and a counter
    // for requests in the same nanosecond.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stem = format!("{ns:020}-{}-{seq}", std::process::id());
    let name = format!("{stem}.{}", action(c));
    let tmp = dir.join(format!(".{name}"));
    let path = dir.join(&name);
    std::fs::write(&tmp, action(c)).map_err(|e| RequestError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| RequestError::Io(path.clone(), e))?;
    let start = Instant::now();
    loop {
        if !path.exists() {
            return Ok(());
        }
        let ended = run_dir.join("summary.json").exists();
        if ended || start.elapsed() >= timeout {
            // Withdrawn; if the supervisor took it meanwhile, it was carried out after all.
            if std::fs::remove_file(&path).is_err() && !path.exists() {
                return Ok(());
            }
            return Err(if ended {
                RequestError::Ended(run_dir.to_path_buf())
            } else {
                RequestError::NotTaken(run_dir.to_path_buf(), timeout)
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The requests waiting in `run_dir`, oldest first, each removed as it is taken (the
/// supervisor's side). A file whose name says no action is removed and reported in the log.
pub fn take(run_dir: &Path) -> Vec<Control> {
    let dir = run_dir.join(CONTROL_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let path = dir.join(&n);
        // Whoever removes the file owns the request: a requester that gave up and removed
        // it first is not answered by a late pause.
        if std::fs::remove_file(&path).is_err() {
            continue;
        }
        match parse(&n) {
            Some(c) => {
                tracing::info!("control request {n} from {}", dir.display());
                out.push(c);
            }
            None => tracing::warn!("{}: not a control request (ignored)", path.display()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once_in_order_and_answered() {
        let d = crate::fsio::test_dir("requests-order");
        let run = d.clone();
        let taker = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 3 {
                seen.extend(take(&run));
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        for c in [Control::Pause, Control::Resume, Control::Stop] {
            request(&d, c, Duration::from_secs(30)).unwrap();
        }
        assert_eq!(
            taker.join().unwrap(),
            vec![Control::Pause, Control::Resume, Control::Stop]
        );
        assert!(take(&d).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_untaken_request_is_withdrawn_and_an_ended_run_refused() {
        let d = crate::fsio::test_dir("requests-untaken");
        let e = request(&d, Control::Pause, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, RequestError::NotTaken(..)), "{e}");
        // Withdrawn: a supervisor looking later finds nothing to carry out.
        assert!(take(&d).is_empty());
        std::fs::write(d.join("summary.json"), "{}").unwrap();
        let e = request(&d, Control::Stop, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, RequestError::Ended(_)), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn half_written_and_foreign_files_are_not_requests() {
        let d = crate::fsio::test_dir("requests-foreign");
        let c = d.join(CONTROL_DIR);
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join(".1-2-3.pause"), "pause").unwrap();
        std::fs::write(c.join("notes.txt"), "x").unwrap();
        assert!(take(&d).is_empty());
        assert!(
            c.join(".1-2-3.pause").exists(),
            "a file being written is left alone"
        );
        assert!(!c.join("notes.txt").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
