//! The engine: the supervisor that creates the rings and runs every worker as its own
//! process, and the worker-process side of that contract.

pub mod alert;
pub mod bench;
pub mod bench_python;
pub mod builtin;
pub mod launch;
pub mod notify;
pub mod plan;
pub mod plugin;
pub mod process;
pub mod registry;
pub mod requests;

pub use plan::{BufferPlan, Plan, Restart, WorkerPlan};
pub use registry::{Build, Check, Function, Registry};
pub mod realtime;
pub mod supervisor;
pub mod terminal;

pub use supervisor::{Control, EngineError, Progress, RunOptions, RunSummary, Supervisor, Watcher};

/// A Unix time as UTC ISO 8601 with milliseconds, e.g. `2026-11-25T10:31:07.123Z` (the one
/// formatter, shared with the HDF5 run files).
pub fn utc_iso(unix_seconds: f64) -> String {
    let ms = (unix_seconds * 1000.0).floor() as i64;
    crate::export::hdf5::iso8601(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
}

/// Now, as [`utc_iso`].
pub fn utc_now() -> String {
    crate::export::hdf5::utc_now_iso8601()
}

/// The current wall-clock time in seconds since the Unix epoch.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The file the log currently goes to; `init_log` replaces it, so a process that supervises
/// several runs one after another (a user's program, the tests) logs each into its own run
/// directory.
static LOG_FILE: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// A writer to [`LOG_FILE`].
struct CurrentLog;

impl std::io::Write for CurrentLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE
            .lock()
            .map(|mut g| g.as_mut().map(|f| f.write(buf)))
        {
            Ok(Some(r)) => r,
            _ => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.lock().map(|mut g| g.as_mut().map(|f| f.flush())) {
            Ok(Some(r)) => r,
            _ => Ok(()),
        }
    }
}

/// Sends this process's log (tracing) to `path`, appending; every process of a run writes
/// the same file, one whole line per write.
pub fn init_log(path: &std::path::Path) {
    use std::io::Write;
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        if let Ok(mut g) = LOG_FILE.lock() {
            if let Some(old) = g.as_mut() {
                let _ = old.flush();
            }
            *g = Some(file);
        }
        let _ = tracing_subscriber::fmt()
            .with_writer(|| CurrentLog)
            .with_ansi(false)
            .with_target(false)
            .with_thread_names(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("DAQ_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init();
        tracing::debug!(
            "process {} logging to {}",
            std::process::id(),
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::utc_iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc_iso(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(super::utc_iso(1_795_000_000.0), "2026-11-18T11:06:40.000Z");
    }
}
