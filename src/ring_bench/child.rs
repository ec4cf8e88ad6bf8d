//! Benchmark child processes: forked, pinned to one CPU, talking back over a pipe in lines.
//!
//! A child never returns into its parent's code: whatever its body does (even a panic), it
//! ends with `_exit`, so it runs none of the parent's destructors (which would, for one,
//! remove the parent's ring file). A child the parent stops caring about (an error half-way)
//! is killed and reaped when its handle is dropped.

use super::RingBenchError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};

pub(crate) use crate::clock::now_ns;

/// Real-time priority (SCHED_FIFO) of benchmark children that ask for it: above ordinary
/// work, below the kernel's own real-time threads.
pub(crate) const FIFO_PRIORITY: i32 = 50;

/// Pins the calling process to `cpu` and, when `realtime`, makes it SCHED_FIFO.
pub(crate) fn place(cpu: usize, realtime: bool) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
    if realtime {
        let param = libc::sched_param {
            sched_priority: FIFO_PRIORITY,
        };
        // SAFETY: `param` is a valid sched_param; pid 0 is the calling process.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            return Err(format!(
                "SCHED_FIFO priority {FIFO_PRIORITY}: {} (run as root or with CAP_SYS_NICE, or without the real-time option)",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// A running child and the read end of its pipe.
pub(crate) struct Child {
    role: &'static str,
    pid: Option<Pid>,
    out: BufReader<File>,
}

impl Child {
    /// Forks a child that pins itself to `cpu` (SCHED_FIFO when `realtime`) and runs `body`
    /// with the pipe's write end.
    /// A body that fails writes `error <message>` as its last line and exits with status 1.
    pub(crate) fn spawn(
        role: &'static str,
        cpu: usize,
        realtime: bool,
        body: impl FnOnce(&mut File) -> Result<(), String>,
    ) -> Result<Child, RingBenchError> {
        let io = |what| {
            move |e: nix::Error| RingBenchError::Process {
                what,
                source: std::io::Error::from(e),
            }
        };
        let (read_end, write_end) = pipe().map_err(io("making a pipe to a benchmark child"))?;
        // SAFETY: the child only runs `body` and then `_exit`s. The callers are single
        // threaded or, in tests, have no thread holding a lock the child needs (glibc's malloc
        // re-initialises its locks in the child).
        match unsafe { fork() }.map_err(io("forking a benchmark child"))? {
            ForkResult::Child => {
                drop(read_end);
                let mut out = File::from(write_end);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    place(cpu, realtime).and_then(|()| body(&mut out))
                }));
                let code = match result {
                    Ok(Ok(())) => 0,
                    Ok(Err(m)) => {
                        let _ = writeln!(out, "error {m}");
                        1
                    }
                    Err(_) => {
                        let _ = writeln!(out, "error panicked (see stderr)");
                        101
                    }
                };
                let _ = out.flush();
                // SAFETY: ends this forked child at once, without unwinding into or running
                // destructors of state that belongs to the parent.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                Ok(Child {
                    role,
                    pid: Some(child),
                    out: BufReader::new(File::from(read_end)),
                })
            }
        }
    }

    /// The next line the child wrote, without its newline; an error if it ended first.
    pub(crate) fn line(&mut self) -> Result<String, RingBenchError> {
        let mut s = String::new();
        let n = self
            .out
            .read_line(&mut s)
            .map_err(|source| RingBenchError::Process {
                what: "reading from a benchmark child",
                source,
            })?;
        if n == 0 {
            return Err(RingBenchError::Child {
                role: self.role,
                message: "ended without a result (crashed? see stderr)".into(),
            });
        }
        Ok(s.trim_end().to_string())
    }

    /// The error for an unexpected line `got` from this child.
    pub(crate) fn failure(&self, got: String) -> RingBenchError {
        RingBenchError::Child {
            role: self.role,
            message: got
                .strip_prefix("error ")
                .map(str::to_string)
                .unwrap_or(got),
        }
    }

    /// Waits for the child to end; an error unless it ended with status 0.
    pub(crate) fn wait(mut self) -> Result<(), RingBenchError> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(other) => Err(RingBenchError::Child {
                role: self.role,
                message: format!("ended with {other:?}"),
            }),
            Err(e) => Err(RingBenchError::Process {
                what: "waiting for a benchmark child",
                source: e.into(),
            }),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}
