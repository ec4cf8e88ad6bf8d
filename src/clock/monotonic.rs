//! The monotonic clock of the ring and the benchmarks, and the paced wait on it. Depends on
//! nothing but `libc`: the ring benchmark's iceoryx2 peer (`benches/peer`) compiles this file
//! as a module of its own, so both sides of that comparison read and pace time alike.

/// Current `CLOCK_MONOTONIC` time in nanoseconds (vDSO, no syscall); the same clock in every
/// process of the machine.
#[inline]
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Clock `id` (vDSO) in nanoseconds from its zero (0 for a time before it).
#[inline]
pub(crate) fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// `ns` nanoseconds as a `timespec`: a timeout, or a `CLOCK_MONOTONIC` time of [`now_ns`].
#[inline]
pub fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Waits until `due` (a [`now_ns`] time): sleeps until `spin_ns` before it, then spins, so a
/// paced producer keeps its CPU mostly free (and within the real-time budget) yet is on time
/// although a wake-up from sleep takes tens of µs in a VM. Used by the ring benchmark and its
/// iceoryx2 peer (`benches/peer`, which compiles this file as a module of its own).
pub fn wait_until(due: u64, spin_ns: u64) {
    let now = now_ns();
    if due > now + spin_ns {
        let ts = timespec(due - spin_ns);
        // SAFETY: `ts` is a valid absolute CLOCK_MONOTONIC time; the remainder pointer may be
        // null with TIMER_ABSTIME. An early return (signal) is fine: the spin below finishes.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
    while now_ns() < due {
        std::hint::spin_loop();
    }
}
