//! `bench ring-loaded`'s shield (`ring_bench::isolate::Shield`): while it is up no other
//! task may run on the reader's CPU, and when it goes every task has its CPU affinity back —
//! including a task that was pinned to the shielded CPU, and the tasks a killed bench left
//! shielded. It moves every task of the machine, so it is a test binary of its own (cargo
//! runs test binaries one after another). Needs root and a cgroup v1 cpuset hierarchy
//! (`/sys/fs/cgroup/cpuset`) with two CPUs; prints SKIPPED otherwise.

use daq_engine::ring_bench::isolate::Shield;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup/cpuset";

fn allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

fn cpuset(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cpuset"))
        .unwrap()
        .trim()
        .to_string()
}

/// `sleep 60`, pinned to `cpus` (a taskset list) once it runs.
fn sleeper(cpus: &str) -> Child {
    let c = Command::new("taskset")
        .args(["-c", cpus, "sleep", "60"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while allowed(c.id()) != cpus
        || std::fs::read_to_string(format!("/proc/{}/comm", c.id()))
            .unwrap()
            .trim()
            != "sleep"
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "taskset did not start sleep"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

fn usable() -> bool {
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    // SAFETY: geteuid only reads this process's user id.
    let root = unsafe { libc::geteuid() } == 0;
    if !(two && root && Path::new(ROOT).join("cpuset.cpus").is_file()) {
        eprintln!(
            "SKIPPED the shield tests: they need root, two CPUs and a cgroup v1 cpuset \
             hierarchy at {ROOT}"
        );
        return false;
    }
    true
}

#[test]
fn the_shield_keeps_every_other_task_off_the_cpu_and_gives_each_its_affinity_back() {
    if !usable() {
        return;
    }
    let free = sleeper("0-1");
    let pinned = sleeper("1");
    // What a bench that was killed with its shield up leaves: a cpuset of the other CPUs
    // named for a process that is gone, with a task in it.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let leftover = Path::new(ROOT).join(format!("daq-bench-others-{dead}"));
    std::fs::create_dir(&leftover).unwrap();
    let mems = std::fs::read_to_string(Path::new(ROOT).join("cpuset.mems")).unwrap();
    std::fs::write(leftover.join("cpuset.mems"), mems.trim()).unwrap();
    std::fs::write(leftover.join("cpuset.cpus"), "0").unwrap();
    let stranded = sleeper("0-1");
    std::fs::write(leftover.join("tasks"), stranded.id().to_string()).unwrap();
    assert_eq!(allowed(stranded.id()), "0");

    let shield = Shield::raise(1).unwrap();
    let others = format!("/daq-bench-others-{}", std::process::id());
    assert!(
        !leftover.exists(),
        "the killed bench's cpuset is given back"
    );
    for c in [&free, &pinned, &stranded] {
        assert_eq!(allowed(c.id()), "0", "nothing else may run on CPU 1");
        assert_eq!(cpuset(c.id()), others);
    }
    assert!(shield.moved() >= 3, "{} threads moved", shield.moved());
    // This process and what it starts now stay free to use CPU 1 (the bench's reader).
    assert_eq!(cpuset(std::process::id()), "/");
    let later = sleeper("1");
    assert_eq!(cpuset(later.id()), "/");

    drop(shield);
    assert_eq!(allowed(free.id()), "0-1", "back to both CPUs");
    assert_eq!(
        allowed(pinned.id()),
        "1",
        "pinned to CPU 1 again, as before"
    );
    assert_eq!(allowed(stranded.id()), "0-1");
    for c in [&free, &pinned, &stranded] {
        assert_eq!(cpuset(c.id()), "/");
    }
    assert!(
        !Path::new(ROOT).join(&others[1..]).exists(),
        "the cpuset is removed"
    );
    for mut c in [free, pinned, stranded, later] {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Not ours only: no task of the machine is left outside the root cpuset by the shield.
    let left: Vec<_> = std::fs::read_dir(ROOT)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("daq-bench-others-")
        })
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
