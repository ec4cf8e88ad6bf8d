//! Real-time set-up of a process: core pinning, SCHED_FIFO, locked memory.
//!
//! Each step is tried; where the OS refuses (no privilege, a core that does not exist) the
//! process goes on and the refusal is returned as a message saying how to fix it, so the
//! caller can warn once.

/// Parses a kernel CPU list like `0-2,5`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Whether `core` exists and is online here.
pub fn pin_possible(core: usize) -> bool {
    core < std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread (and so a single-threaded process) to `core`.
pub fn pin(core: usize) -> Result<(), String> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(format!(
            "could not pin to core {core} (does it exist? `nproc` says {})",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ))
    }
}

/// Raises the calling process to SCHED_FIFO at `priority` (1..99).
pub fn fifo(priority: i32) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling process.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "SCHED_FIFO priority {priority} refused ({}); run as root, or give the user \
             `rtprio 99` in /etc/security/limits.conf, or grant CAP_SYS_NICE",
            std::io::Error::last_os_error()
        ))
    }
}

/// Locks all current and future memory of the process.
pub fn lock_memory() -> Result<(), String> {
    // SAFETY: mlockall has no memory-safety preconditions.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "mlockall refused ({}); raise the locked-memory limit (`ulimit -l unlimited`, or \
             `memlock` in /etc/security/limits.conf) or run as root",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(super::parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(super::parse_cpu_list("3"), vec![3]);
    }
}
