//! Atomics and the futex, switchable to loom's models under `--cfg daq_loom` (with the
//! `loom-models` feature, which brings loom in).
//!
//! Under loom the shared-memory types are built on the heap with loom's atomics so the model
//! checker explores every interleaving of the cursor protocol; a futex wait becomes a yield.

#[cfg(daq_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(daq_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;

/// Sleeps while `*word == expected`, at most `timeout_ns` (0 = a short default). Spurious
/// wake-ups are allowed: callers re-check their condition. The word lives in memory shared
/// between processes, so the non-private futex operations are used.
#[cfg(not(daq_loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = crate::clock::timespec(timeout_ns);
    // SAFETY: `word` is a live, 4-byte aligned AtomicU32 (in a mapping that outlives this call);
    // FUTEX_WAIT only reads it and compares with `expected`; `ts` is a valid timespec on the stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
#[cfg(not(daq_loom))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live AtomicU32; FUTEX_WAKE does not touch memory beyond looking it up.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Sleeps until any of `words[i] != expected[i]` may hold, at most `timeout_ns`
/// (Linux `futex_waitv`, 5.16+). Falls back to a wait on the first word where the kernel
/// lacks it.
#[cfg(not(daq_loom))]
pub(crate) fn futex_wait_any(words: &[(Option<&AtomicU32>, u32)], timeout_ns: u64) {
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    const FUTEX2_SIZE_U32: u32 = 2;
    const MAX: usize = 128;
    let Some(first) = words.first().and_then(|w| w.0) else {
        return;
    };
    if words.len() == 1 || words.len() > MAX {
        futex_wait(first, words[0].1, timeout_ns);
        return;
    }
    let mut waiters: [FutexWaitv; MAX] = std::array::from_fn(|_| FutexWaitv {
        val: 0,
        uaddr: 0,
        flags: 0,
        reserved: 0,
    });
    for (w, (word, expected)) in waiters.iter_mut().zip(words) {
        w.val = u64::from(*expected);
        w.uaddr = word.map_or(0, |x| x.as_ptr() as u64);
        w.flags = FUTEX2_SIZE_U32;
    }
    let deadline = crate::clock::timespec(crate::clock::now_ns().saturating_add(timeout_ns));
    // SAFETY: `waiters[..n]` are initialised futex_waitv entries pointing at live AtomicU32s;
    // the kernel only reads them. `deadline` is a valid absolute CLOCK_MONOTONIC timespec.
    let r = unsafe {
        libc::syscall(
            449, // SYS_futex_waitv
            waiters.as_ptr(),
            words.len() as u32,
            0u32,
            &deadline as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        futex_wait(first, words[0].1, timeout_ns.min(1_000_000));
    }
}

// Under loom the futex is one mutex and condition variable for every word: a waiter looks at
// its word under the mutex and sleeps only if it still holds `expected`, a waker takes the
// mutex and wakes everyone. That is the kernel's contract (compare and sleep are one step
// under the futex lock; wake-ups may be spurious), minus the timeout: a sleeper nobody wakes
// stays asleep, so loom reports a lost wake-up as a deadlock.
#[cfg(daq_loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

#[cfg(daq_loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout_ns: u64) {
    let guard = FUTEX.0.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

#[cfg(daq_loom)]
pub(crate) fn futex_wait_any(words: &[(Option<&AtomicU32>, u32)], _timeout_ns: u64) {
    let guard = FUTEX.0.lock().unwrap();
    let unchanged = words
        .iter()
        .all(|(w, expected)| w.is_none_or(|w| w.load(Ordering::SeqCst) == *expected));
    if unchanged {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

#[cfg(daq_loom)]
pub(crate) fn futex_wake(_word: &AtomicU32) {
    let _guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
}

/// Between the store and the load of each side of a Dekker pair around the futex sleep (see
/// the memory-ordering section of core.rs). In a real build nothing: there the `SeqCst`
/// store (or read-modify-write) and the `SeqCst` load already sit in one total order, so one
/// side sees the other. loom gives `SeqCst` loads and stores only acquire/release strength
/// (tokio-rs/loom#180: both sides of a store-buffering pair may read the old value) but
/// models `SeqCst` fences, so under loom a fence stands in for that total order, and the
/// models check the rest of the sleep protocol.
#[inline]
pub(crate) fn seqcst_order() {
    #[cfg(daq_loom)]
    fence(Ordering::SeqCst);
}

/// Spins politely for one iteration of a busy wait.
#[inline]
pub(crate) fn spin() {
    #[cfg(daq_loom)]
    loom::thread::yield_now();
    #[cfg(not(daq_loom))]
    std::hint::spin_loop();
}

/// Current monotonic time in nanoseconds (vDSO, no syscall).
#[cfg(not(daq_loom))]
pub(crate) use crate::clock::now_ns;

#[cfg(daq_loom)]
pub(crate) fn now_ns() -> u64 {
    0
}
