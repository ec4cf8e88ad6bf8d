//! What the supervisor says on its terminal while a run goes on (progress lines, warnings),
//! written by a thread of its own, so that a terminal or pipe nobody reads (a full pipe, a
//! `| tee` that stalls, a suspended terminal) never holds the run up: lines that do not fit
//! the bounded queue are dropped and counted; the run log has them all. What the workers
//! print ([`Prints`]) takes the same way.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
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

/// The longest piece of a line without an end that is passed on at once (a worker that
/// prints megabytes without a newline is shown in pieces, not held in memory).
const LONGEST_LINE: usize = 64 * 1024;

/// Where the workers' prints and messages go (a Python worker's `print`, a traceback, a
/// failing worker's last words): a pipe per worker process, whose write end is its stdout
/// and stderr, read by a thread of the supervisor that passes each line on through [`say`].
/// So a worker never waits for a terminal or pipe that nobody reads: before, each worker
/// wrote to the supervisor's stderr itself and, once a pipe nobody read was full, waited in
/// its `print` for ever while its buffer filled. A pipe of its own per process keeps each
/// line whole: in one pipe shared by all, Python's two writes of a `print` (its text, then
/// its "\n") were cut apart by other workers' ("…event 17 endworker raw event 13 end").
pub struct Prints {
    /// Each reading thread says here when it has passed on everything (its pipe's write
    /// ends are closed).
    ended: Sender<()>,
    done: Receiver<()>,
    /// Reading threads started so far.
    opened: AtomicU64,
}

impl Prints {
    /// No pipe yet: each worker process gets one from [`Prints::for_worker`].
    pub fn new() -> Prints {
        let (ended, done) = channel();
        Prints {
            ended,
            done,
            opened: AtomicU64::new(0),
        }
    }

    /// A worker process's stdout and stderr: the write end, twice, of a pipe of its own,
    /// whose thread passes each line on.
    pub fn for_worker(&self) -> std::io::Result<(OwnedFd, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let out = write.try_clone()?;
        let ended = self.ended.clone();
        std::thread::Builder::new()
            .name("daq-prints".into())
            .spawn(move || {
                pass_on(std::fs::File::from(read), say);
                let _ = ended.send(());
            })?;
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok((out, write))
    }

    /// Waits at most `limit` for the lines still in the pipes to be passed on: a pipe's
    /// thread ends once its worker has ended (a process a worker left behind may hold it
    /// longer; then what it prints later is not waited for).
    pub fn close(self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for _ in 0..self.opened.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

impl Default for Prints {
    fn default() -> Prints {
        Prints::new()
    }
}

/// Reads `from` to its end and gives `say` each line (and each [`LONGEST_LINE`] of a line
/// without an end) as it comes.
fn pass_on(mut from: impl Read, mut say: impl FnMut(String)) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    // Every piece ends its line: the last of a worker that printed no line end, or a piece
    // of an over-long line, was glued to what came next (another worker's line, the run's
    // last lines).
    let mut say_line = |line: &mut Vec<u8>| {
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        say(String::from_utf8_lossy(line).into_owned());
        line.clear();
    };
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let room = &rest[..rest.len().min(LONGEST_LINE - line.len())];
            let take = room
                .iter()
                .position(|&b| b == b'\n')
                .map_or(room.len(), |end| end + 1);
            line.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if line.ends_with(b"\n") || line.len() == LONGEST_LINE {
                say_line(&mut line);
            }
        }
    }
    if !line.is_empty() {
        say_line(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines come whole, however the reads cut them; a line with no end is said in pieces
    /// of [`LONGEST_LINE`]; bytes that are not UTF-8 do not lose the line; the last piece
    /// without an end is said when the pipe ends. Each piece ends its line (a tester saw a
    /// worker's last `sys.stdout.write` without one glued to the next worker's line).
    #[test]
    fn prints_are_passed_on_a_line_at_a_time() {
        let long = "y".repeat(LONGEST_LINE + 10);
        let mut bytes = b"first\nsec\xffond\n".to_vec();
        bytes.extend_from_slice(long.as_bytes());
        bytes.extend_from_slice(b"\nlast");
        let mut said = Vec::new();
        // A reader that hands out 7 bytes at a time, as a pipe may.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        pass_on(Trickle(&bytes), |l| said.push(l));
        assert_eq!(said[0], "first\n");
        assert_eq!(said[1], "sec\u{fffd}ond\n");
        assert_eq!(said[2], "y".repeat(LONGEST_LINE) + "\n");
        assert_eq!(said[3], "y".repeat(10) + "\n");
        assert_eq!(said[4], "last\n");
        assert_eq!(said.len(), 5);
    }
}
