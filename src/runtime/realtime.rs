//! Real-time set-up of a process: core pinning, SCHED_FIFO, locked memory.
//!
//! Each step is tried; where the OS refuses (no privilege, a core that does not exist) the
//! process goes on and the refusal is returned as a [`Refused`] whose message says how to fix
//! it, so the caller can warn once.

/// A real-time step the OS refused; the message says how to allow it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Pinning to a core failed (the core does not exist or is offline).
    #[error("could not pin to core {core} (does it exist? `nproc` says {online})")]
    Pin {
        /// The core asked for.
        core: usize,
        /// Cores online here.
        online: usize,
    },
    /// SCHED_FIFO was refused (no privilege).
    #[error(
        "SCHED_FIFO priority {priority} refused ({source}); run as root, or give the user \
         `rtprio 99` in /etc/security/limits.conf, or grant CAP_SYS_NICE"
    )]
    Fifo {
        /// The priority asked for.
        priority: i32,
        /// The system's error.
        source: std::io::Error,
    },
    /// The PM QoS request that keeps idle CPUs from halting was refused.
    #[error(
        "could not keep idle CPUs from sleeping deeply ({path}: {source}); real-time workers \
         may wake late from an idle CPU (milliseconds in a VM that halts); run as root"
    )]
    NoIdle {
        /// The request file.
        path: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// Locking the memory was refused (the locked-memory limit).
    #[error(
        "mlockall refused ({source}); raise the locked-memory limit (`ulimit -l unlimited`, or \
         `memlock` in /etc/security/limits.conf) or run as root"
    )]
    LockMemory {
        /// The system's error.
        source: std::io::Error,
    },
}

/// Cores a Linux kernel can have at most (`NR_CPUS` of the largest configuration).
const MAX_CPUS: usize = 8192;

/// Parses a kernel CPU list like `0-2,5`; cores from 8192 (the largest `NR_CPUS`) on are
/// left out.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b.min(MAX_CPUS - 1));
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    if a < MAX_CPUS {
                        out.push(a);
                    }
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
pub fn pin(core: usize) -> Result<(), Refused> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(Refused::Pin {
            core,
            online: std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    }
}

/// Raises the calling process to SCHED_FIFO at `priority` (1..99).
pub fn fifo(priority: i32) -> Result<(), Refused> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling process.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(Refused::Fifo {
            priority,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Locks all current and future memory of the process.
pub fn lock_memory() -> Result<(), Refused> {
    // SAFETY: mlockall has no memory-safety preconditions.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if r == 0 {
        Ok(())
    } else {
        Err(Refused::LockMemory {
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The PM QoS request file for CPU wake-up latency.
pub const CPU_LATENCY_QOS: &str = "/dev/cpu_dma_latency";

/// Idle CPUs poll instead of entering sleep states while this lives: the PM QoS request
/// [`CPU_LATENCY_QOS`] held at 0 µs, as `cyclictest` and tuned's real-time profiles do.
/// A sleeping CPU takes from a few µs (C1) to over 100 µs (deep C-states of a server) to
/// wake, and in a virtual machine whose CPUs halt, the host wakes it, which took
/// milliseconds under load here. The kernel withdraws the request when the file is closed,
/// also when the process dies, so nothing is left behind.
pub struct NoIdle(#[allow(dead_code)] std::fs::File);

impl NoIdle {
    /// Makes the request (needs root).
    pub fn hold() -> Result<NoIdle, Refused> {
        use std::io::Write;
        let refused = |source| Refused::NoIdle {
            path: CPU_LATENCY_QOS,
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(CPU_LATENCY_QOS)
            .map_err(refused)?;
        f.write_all(&0i32.to_ne_bytes()).map_err(refused)?;
        Ok(NoIdle(f))
    }
}

/// The CPU wake-up latency the system allows now, µs (every request's least; 2 000 000 000
/// when none was made), if it can be read.
pub fn cpu_latency_limit_us() -> Option<i32> {
    let b = std::fs::read(CPU_LATENCY_QOS).ok()?;
    Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(super::parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(super::parse_cpu_list("3"), vec![3]);
    }

    /// A list from the environment (`DAQ_ISOLATED_CPUS`) with a range no machine has, as a
    /// slip of the finger makes it: the cores past any kernel's limit are left out, instead
    /// of a list of 10^19 cores that takes all memory.
    #[test]
    fn a_range_past_any_machine_is_cut_to_the_cores_a_kernel_can_have() {
        let cores = super::parse_cpu_list("2-18446744073709551615,7");
        assert_eq!(cores.len(), super::MAX_CPUS - 2 + 1);
        assert_eq!(cores.last(), Some(&7));
    }

    #[test]
    fn a_refusal_says_how_to_allow_it() {
        let e = super::Refused::Fifo {
            priority: 80,
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("SCHED_FIFO priority 80 refused (Operation not permitted"),
            "{text}"
        );
        assert!(text.ends_with("or grant CAP_SYS_NICE"), "{text}");
        let e = super::Refused::Pin { core: 9, online: 2 };
        assert_eq!(
            e.to_string(),
            "could not pin to core 9 (does it exist? `nproc` says 2)"
        );
    }
}
