//! A process that ends with the one that started it (`PR_SET_PDEATHSIG`): a worker with its
//! supervisor, a helper program (h5repack, a test's broker or engine) with the thread that
//! started it. The kernel sends the signal when the parent *thread* ends, so a run or a test
//! killed by a signal (no destructor runs) leaves nothing behind.

use std::process::Command;

/// Has the kernel send `signal` to this process when its parent thread ends.
///
/// Async-signal-safe (one system call, no allocation): [`child_ends_with_parent`] calls it
/// between fork and exec.
pub fn signal_on_parent_death(signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets an attribute of the calling process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the process `cmd` starts receive `signal` when the thread calling `spawn` ends, and
/// end at once (exit status 1) when this process is already gone by the time the child asks
/// (the kernel would never send the signal then).
///
/// Further `pre_exec` steps of `cmd` added before this one run first.
pub fn child_ends_with_parent(cmd: &mut Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit); it touches no memory of the
    // parent but the copied `parent` and `signal` integers.
    unsafe {
        cmd.pre_exec(move || {
            signal_on_parent_death(signal)?;
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The child of a thread that ends is killed with the signal asked for, not left running.
    #[test]
    fn a_child_ends_with_the_thread_that_started_it() {
        let child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("600");
            child_ends_with_parent(&mut cmd, libc::SIGKILL);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let mut child = child;
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}
