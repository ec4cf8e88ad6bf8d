//! What the supervisor says on its terminal while a run goes on (progress lines, warnings),
//! written by a thread of its own, so that a terminal or pipe nobody reads (a full pipe, a
//! `| tee` that stalls, a suspended terminal) never holds the run up: lines that do not fit
//! the bounded queue are dropped and counted; the run log has them all.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines waiting for the terminal at the most.
const QUEUE: usize = 256;

struct Terminal {
    tx: SyncSender<String>,
    /// Lines queued and not yet written.
    waiting: AtomicU64,
}

static TERMINAL: OnceLock<Terminal> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn terminal() -> &'static Terminal {
    TERMINAL.get_or_init(|| {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("daq-terminal".into())
            .spawn(move || {
                let mut err = std::io::stderr();
                for text in rx {
                    let _ = err.write_all(text.as_bytes());
                    let _ = err.flush();
                    if let Some(t) = TERMINAL.get() {
                        t.waiting.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
            .expect("a thread for the terminal");
        Terminal {
            tx,
            waiting: AtomicU64::new(0),
        }
    })
}

/// Writes `text` (as is: add the line end) to stderr without ever waiting for it; dropped
/// (and counted) when the terminal is that far behind.
pub fn say(text: String) {
    let t = terminal();
    t.waiting.fetch_add(1, Ordering::SeqCst);
    match t.tx.try_send(text) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            t.waiting.fetch_sub(1, Ordering::SeqCst);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lines the terminal could not take so far.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits at most `limit` for what was said to reach the terminal (before the process ends).
pub fn drain(limit: Duration) {
    let Some(t) = TERMINAL.get() else { return };
    let t0 = Instant::now();
    while t.waiting.load(Ordering::SeqCst) > 0 && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
}
