//! What can go wrong writing or reading a run file, each error saying what happened, to
//! which file (and buffer), how much is safe on disk, and what to do.
//!
//! Guarantees: every variant names the file; write failures say how many events of that
//! file are kept (flushed and readable). Never holds HDF5 handles (errors may cross threads).

use std::path::PathBuf;

/// " (buffer 'name')", or nothing when the whole file was being flushed.
fn of_buffer(buffer: &str) -> String {
    if buffer.is_empty() {
        String::new()
    } else {
        format!(" (buffer '{buffer}')")
    }
}

/// What the operating system said, out of an HDF5 error stack (which repeats the failed
/// write once per level of its caches, several lines each): its `error message = '…'`
/// with the errno, or the stack's first line.
pub fn system_reason(stack: &str) -> String {
    let quoted = |key: &str| {
        let at = stack.find(key)? + key.len();
        let rest = &stack[at..];
        Some(rest[..rest.find('\'')?].to_string())
    };
    let errno = stack
        .find("errno = ")
        .map(|i| &stack[i + 8..])
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|n| !n.is_empty());
    match (quoted("error message = '"), errno) {
        (Some(m), Some(n)) => format!("{m}, errno {n}"),
        (Some(m), None) => m,
        _ => stack.lines().next().unwrap_or(stack).to_string(),
    }
}

/// Why `recover` leaves a run directory as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRecoverable {
    /// Its `summary.json` was written by the run itself.
    #[error("the run finished (its summary was written by the run, not by a recovery): nothing to recover")]
    Finished,
    /// A running daq-engine holds the run directory's lock.
    #[error("a running daq-engine holds this run directory; stop it first")]
    Running,
    /// Another process (its writer, or a reader such as h5py) has one of its files open.
    #[error("another process has this file open (its writer, or a reader such as h5py); close it, then run `daq-engine recover` on the run directory")]
    FileOpen,
}

/// A run-file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run file could not be created or set up.
    #[error("cannot create run file {path}: {reason}. Check that the directory exists, is writable, has free space and holds no file of that name.")]
    Create {
        /// The file.
        path: PathBuf,
        /// What HDF5 or the system said.
        reason: String,
    },
    /// The file system holding the run file is full.
    #[error("disk full writing {path}{}: {available_bytes} bytes free there. The file is kept with the {events_safe} events flushed before; nothing more is written. Free space or point the run directory at a larger disk. ({reason})", of_buffer(buffer))]
    DiskFull {
        /// The file.
        path: PathBuf,
        /// The buffer being written ("" when flushing the whole file).
        buffer: String,
        /// Free bytes on that file system when the write failed.
        available_bytes: u64,
        /// Events of this file written and flushed before the failure (readable).
        events_safe: u64,
        /// What HDF5 said.
        reason: String,
    },
    /// A write or flush failed for another reason than a full disk.
    #[error("writing {path}{} failed: {reason}. The file is kept with the {events_safe} events flushed before; nothing more is written. Check the disk and the system log.", of_buffer(buffer))]
    Write {
        /// The file.
        path: PathBuf,
        /// The buffer being written ("" when flushing the whole file).
        buffer: String,
        /// Events of this file written and flushed before the failure (readable).
        events_safe: u64,
        /// What HDF5 said.
        reason: String,
    },
    /// An event's bytes do not match the buffer's layout.
    #[error("event for buffer '{buffer}' has {got} bytes, expected {expected} (data_length {data_length} x {record_size}-byte records)")]
    EventSize {
        /// The buffer.
        buffer: String,
        /// Bytes given.
        got: usize,
        /// Bytes one event has.
        expected: usize,
        /// Records per event.
        data_length: usize,
        /// Bytes per record.
        record_size: usize,
    },
    /// A buffer handle that this writer did not hand out.
    #[error("no buffer #{0} in this run file: use the handle add_buffer returned")]
    UnknownBuffer(usize),
    /// A buffer was added after events were written.
    #[error("buffer '{0}' added after writing started: add every buffer before the first append or flush")]
    LayoutFrozen(String),
    /// A buffer or histogram name HDF5 cannot hold or that is taken.
    #[error("name '{name}' cannot be used: {why}")]
    BadName {
        /// The name.
        name: String,
        /// Why not.
        why: String,
    },
    /// Histogram edges and counts do not fit together.
    #[error("histogram '{name}': {edges} bin edges need {} counts, got {counts}", edges.saturating_sub(1))]
    HistogramShape {
        /// The histogram.
        name: String,
        /// Bin edges given.
        edges: usize,
        /// Counts given.
        counts: usize,
    },
    /// The writer stopped at an earlier error and writes nothing more.
    #[error("the writer for {path} stopped after an earlier error and writes nothing more: {first_error}")]
    Stopped {
        /// The file.
        path: PathBuf,
        /// The error that stopped it.
        first_error: String,
    },
    /// A run file could not be opened or read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `recover` left a run directory (or file) alone: recovering it now would be wrong.
    #[error("{path}: {why}")]
    NotRecovered {
        /// The run directory, or the file that stopped its recovery.
        path: PathBuf,
        /// Why it was left alone, and what to do.
        why: NotRecoverable,
    },
    /// The writer was asked for after it closed its file.
    #[error("the HDF5 file is already closed")]
    Closed,
    /// A plain file (CSV, benchmark) could not be written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// issue 12, the soak's small disk: a full disk's message carried HDF5's whole error
    /// stack twice (1 800 characters) and "(buffer '')" for a flush of the whole file.
    #[test]
    fn a_full_disk_says_what_the_system_said_once() {
        let stack = "could not flush the file: unable to flush file's cached information: \
                     file write failed: time = Sat Dec  5 11:18:36 2026\n, filename = '/x/raw.h5', \
                     file descriptor = 5, errno = 28, error message = 'No space left on device', \
                     buf = 0x55, total write size = 1292: unable to flush metadata cache: file \
                     write failed: errno = 28, error message = 'No space left on device'";
        assert_eq!(system_reason(stack), "No space left on device, errno 28");
        assert_eq!(system_reason("short\nsecond"), "short");
        let e = ExportError::DiskFull {
            path: "/x/raw.h5".into(),
            buffer: String::new(),
            available_bytes: 0,
            events_safe: 1057,
            reason: system_reason(stack),
        };
        let text = e.to_string();
        assert!(!text.contains("buffer ''"), "{text}");
        assert!(
            text.starts_with("disk full writing /x/raw.h5: 0 bytes free"),
            "{text}"
        );
        assert!(
            text.ends_with("(No space left on device, errno 28)"),
            "{text}"
        );
        let e = ExportError::Write {
            path: "/x/raw.h5".into(),
            buffer: "raw".into(),
            events_safe: 3,
            reason: "bad".into(),
        };
        assert!(e
            .to_string()
            .starts_with("writing /x/raw.h5 (buffer 'raw') failed: bad."));
    }

    /// A worker's output error keeps its kind through `WorkerError::Output`: the runtime
    /// and the tests can still ask how many events a full disk left safe.
    #[test]
    fn an_export_error_keeps_its_kind_inside_a_worker_error() {
        use crate::worker::WorkerError;
        let full = ExportError::DiskFull {
            path: "/x/raw.h5".into(),
            buffer: "raw".into(),
            available_bytes: 0,
            events_safe: 7,
            reason: "No space left on device".into(),
        };
        let text = full.to_string();
        let e = WorkerError::output(full);
        assert_eq!(e.to_string(), text);
        let WorkerError::Output(inner) = &e else {
            panic!("{e:?}");
        };
        assert!(matches!(
            inner.downcast_ref::<ExportError>(),
            Some(ExportError::DiskFull { events_safe: 7, .. })
        ));
    }
}
