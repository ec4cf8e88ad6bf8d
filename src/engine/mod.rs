//! The engine: the supervisor that creates the rings and runs every worker as its own
//! process, and the worker-process side of that contract.

pub mod alert;
pub mod notify;
pub mod placement;
pub mod requests;
pub mod stall;
pub mod start;

pub mod supervisor;
pub mod terminal;

pub use start::{make_locked_run_dir, make_run_dir, plan_of};
pub use supervisor::{
    hung_up, signals_received, terminal_gone, Control, EngineError, Progress, RunOptions,
    RunSummary, Supervisor, Watcher,
};

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
