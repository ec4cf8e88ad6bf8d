//! libhdf5 (1.10) loops for ever over some damaged files: a global heap whose object a power
//! cut zeroed sends it round without reading or writing a byte. What reads such a file tells
//! the loop by its CPU time going on while its I/O stands still ([`Spin`]): `recover` reads
//! each file in a child process it stops; `inspect` watches its own reading thread
//! ([`SpinGuard`]) and ends with a message naming the file instead of spinning until Ctrl-C.
//!
//! Guarantees: only reads `/proc`; a guard's watch ends when it is dropped.

use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;

/// CPU time a reader of an HDF5 file may spend without reading or writing one byte before
/// it is taken for one of libhdf5's endless loops. Reading reads all the time: a pass over
/// 65536 metadata rows is 1.5 MB of reads and milliseconds of CPU.
pub const SPIN_LIMIT_S: f64 = 5.0;

/// How often a watch looks.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Tells a task that spins, from its I/O bytes and CPU seconds taken now and then.
pub struct Spin {
    /// The I/O bytes when they last changed, and the CPU seconds then.
    last: (Option<u64>, f64),
}

impl Spin {
    /// A watch that starts from the task's I/O bytes and CPU seconds now.
    pub fn new(io: Option<u64>, cpu: f64) -> Spin {
        Spin { last: (io, cpu) }
    }

    /// With the task's I/O bytes and CPU seconds now: true once it has spent more than
    /// [`SPIN_LIMIT_S`] of CPU since it last read or wrote.
    pub fn spinning(&mut self, io: Option<u64>, cpu: f64) -> bool {
        if io != self.last.0 {
            self.last = (io, cpu);
            return false;
        }
        cpu - self.last.1 > SPIN_LIMIT_S
    }

    /// What to say of file `path` when it spun.
    pub fn said(path: &Path) -> String {
        format!(
            "{}: libhdf5 spent {SPIN_LIMIT_S} s of CPU without reading or writing a byte of \
             it, a loop over a damaged part (a power cut leaves zeros where the disk had not \
             written yet)",
            path.display()
        )
    }
}

/// While it lives, watches the thread that made it, which reads HDF5 file `path`: when
/// that thread spins ([`Spin`]), says so on stderr, naming the file, and ends the process
/// with exit code `code` at once (`_exit`: libhdf5's exit handlers would loop over the same
/// file).
pub struct SpinGuard {
    stop: Option<Sender<()>>,
    watch: Option<std::thread::JoinHandle<()>>,
}

impl SpinGuard {
    /// Starts the watch of this thread reading `path`.
    pub fn watch(path: &Path, code: i32) -> SpinGuard {
        use crate::procfs::{thread_io_bytes, Stat};
        let pid = std::process::id();
        let tid = nix::unistd::gettid().as_raw() as u32;
        let look = move || {
            let cpu = Stat::read_thread(pid, tid).and_then(|s| s.cpu_seconds());
            (thread_io_bytes(pid, tid), cpu)
        };
        let said = format!("daq-engine: {}; stopped here\n", Spin::said(path));
        let (stop, stopped) = channel::<()>();
        let watch = std::thread::Builder::new()
            .name("daq-spin-watch".into())
            .spawn(move || {
                let (io, cpu) = look();
                let mut spin = Spin::new(io, cpu.unwrap_or(0.0));
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(LOOK_EVERY) {
                    let (io, cpu) = look();
                    let Some(cpu) = cpu else { return };
                    if spin.spinning(io, cpu) {
                        use std::io::Write;
                        let _ = std::io::stdout().flush();
                        let _ = std::io::stderr().write_all(said.as_bytes());
                        // SAFETY: _exit ends the process at once; nothing of this process
                        // is used after it.
                        unsafe { libc::_exit(code) };
                    }
                }
            })
            .ok();
        SpinGuard {
            stop: Some(stop),
            watch,
        }
    }
}

impl Drop for SpinGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.watch.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_without_io_is_a_spin_and_io_starts_the_count_again() {
        let mut s = Spin::new(Some(10), 1.0);
        assert!(!s.spinning(Some(10), 1.0 + SPIN_LIMIT_S));
        assert!(!s.spinning(Some(11), 2.0 + SPIN_LIMIT_S));
        assert!(!s.spinning(Some(11), 2.0 + 2.0 * SPIN_LIMIT_S));
        assert!(s.spinning(Some(11), 2.1 + 2.0 * SPIN_LIMIT_S));
    }
}
