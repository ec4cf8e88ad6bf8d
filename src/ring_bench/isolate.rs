//! Keeping a latency bench's reader CPU to itself on a machine that has no isolated cores:
//! what `isolcpus=` and a real-time kernel set-up give a production machine, for the
//! length of one bench run, put back after.
//!
//! Two things stand between a SCHED_FIFO reader spinning on its own CPU and microsecond
//! latency on a busy machine, both measured here (kernel 6.18, a nested VM, 2026-12-05):
//! - **The fair server.** Since Linux 6.12 a CPU whose real-time tasks keep its normal
//!   tasks from running gives those tasks 50 ms of every second all the same (the
//!   deadline "fair server", which replaced real-time throttling as the guard against a
//!   runaway SCHED_FIFO task; lifting `sched_rt_runtime_us` does not switch it off). A
//!   FIFO loop on a CPU shared with one normal busy loop stopped for 50–54 ms once a second.
//!   [`Shield`] moves every other task off the reader's CPU (a cpuset, as `cset shield`
//!   does), so no normal task waits there.
//! - **Idle states.** A reader that sleeps between bursts lets its CPU halt; in a VM a
//!   halted virtual CPU is woken by the host, which took milliseconds under load.
//!   [`NoIdle`](crate::runtime::realtime::NoIdle) holds the PM QoS request
//!   `/dev/cpu_dma_latency` at 0 µs (as `cyclictest` does, and the engine for a run with a
//!   real-time worker on a core of its own), so idle CPUs poll instead of halting.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The cgroup v1 cpuset hierarchy's root.
const CPUSET_ROOT: &str = "/sys/fs/cgroup/cpuset";
/// Prefix of the cpusets a shield makes (one per bench process).
const SHIELD_PREFIX: &str = "daq-bench-others-";

/// Every task but this process's own runs off one CPU for as long as the shield lives:
/// moved into a cpuset of the other CPUs, each thread's own CPU affinity noted first and
/// put back when dropped (also when the run fails half-way). Processes this one starts
/// later stay in the root cpuset, so they can be pinned anywhere.
pub struct Shield {
    root: PathBuf,
    others: PathBuf,
    /// Thread id and the affinity it had.
    moved: Vec<(libc::pid_t, libc::cpu_set_t)>,
}

impl Shield {
    /// Raises the shield around `cpu` (needs root and a cgroup v1 cpuset hierarchy), first
    /// dissolving what a killed bench left behind. `Err` says why there is none.
    pub fn raise(cpu: usize) -> Result<Shield, String> {
        let root = Path::new(CPUSET_ROOT);
        let mems = std::fs::read_to_string(root.join("cpuset.mems")).map_err(|e| {
            format!(
                "no cgroup v1 cpuset hierarchy at {} ({e}); on cgroup v2 use isolcpus=",
                root.display()
            )
        })?;
        // SAFETY: sysconf only reads a system value.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        // CPUs 0..online but `cpu` (an offline one among them makes the write below fail).
        let rest: Vec<String> = (0..online)
            .filter(|&c| c != cpu)
            .map(|c| c.to_string())
            .collect();
        if rest.is_empty() {
            return Err(format!("CPU {cpu} is the only CPU online"));
        }
        dissolve_leftovers(root);
        let others = root.join(format!("{SHIELD_PREFIX}{}", std::process::id()));
        std::fs::create_dir(&others).map_err(|e| format!("{}: {e}", others.display()))?;
        let mut shield = Shield {
            root: root.to_path_buf(),
            others,
            moved: Vec::new(),
        };
        shield.write("cpuset.mems", mems.trim())?;
        shield.write("cpuset.cpus", &rest.join(","))?;
        let own: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // A task may fork while the list is read: a few passes catch its children.
        for _ in 0..3 {
            let tasks = std::fs::read_to_string(root.join("tasks")).unwrap_or_default();
            for tid in tasks.lines().filter_map(|l| l.trim().parse().ok()) {
                if own.contains(&tid) || shield.moved.iter().any(|(t, _)| *t == tid) {
                    continue;
                }
                // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity
                // writes at most size_of::<cpu_set_t>() bytes into it.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                let size = std::mem::size_of::<libc::cpu_set_t>();
                // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes.
                if unsafe { libc::sched_getaffinity(tid, size, &mut set) } != 0 {
                    continue; // gone already
                }
                // Per-CPU kernel threads refuse to move (EINVAL): they stay, as with isolcpus.
                if shield.write("tasks", &tid.to_string()).is_ok() {
                    shield.moved.push((tid, set));
                }
            }
        }
        Ok(shield)
    }

    /// Threads moved off the CPU.
    pub fn moved(&self) -> usize {
        self.moved.len()
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.others.join(file);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        let left = give_back(&self.root, &self.others);
        for (tid, set) in &self.moved {
            // SAFETY: `set` is a valid cpu_set_t; a thread that has ended makes this fail,
            // which is fine.
            unsafe { libc::sched_setaffinity(*tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
        if let Some(e) = left {
            eprintln!(
                "daq-engine: bench: could not remove the cpuset {} ({e}); move its tasks to {} \
                 and rmdir it by hand",
                self.others.display(),
                self.root.join("tasks").display()
            );
        }
    }
}

/// Moves every task of cpuset `set` back to `root` and removes `set`; `Some(why)` if it
/// could not be removed.
fn give_back(root: &Path, set: &Path) -> Option<String> {
    let mut last = None;
    for _ in 0..20 {
        let tasks = std::fs::read_to_string(set.join("tasks")).unwrap_or_default();
        for tid in tasks.lines() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(root.join("tasks"))
                .and_then(|mut f| f.write_all(tid.trim().as_bytes()));
        }
        match std::fs::remove_dir(set) {
            Ok(()) => return None,
            Err(e) => last = Some(e.to_string()),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    last
}

/// Gives back the CPUs of a bench that was killed with its shield up (its tasks keep the
/// affinity of the root cpuset: all CPUs).
fn dissolve_leftovers(root: &Path) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SHIELD_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok_and(crate::shm::pid_alive) {
            continue; // another bench's, running
        }
        eprintln!(
            "daq-engine: bench: giving back the CPUs of a killed bench's shield {}",
            e.path().display()
        );
        give_back(root, &e.path());
    }
}
