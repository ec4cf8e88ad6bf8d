//! A run with a real-time worker (`priority:`) on a core of its own keeps idle CPUs from
//! sleeping deeply while it lasts — the PM QoS request `/dev/cpu_dma_latency` held at 0 µs —
//! and lets go when it ends; a run without one never asks; `check` says so beforehand. A
//! test binary of its own, since the request is machine-wide and nothing else may hold it
//! meanwhile. The runs need root and two CPUs and print SKIPPED otherwise.

mod runs;

use daq_engine::runtime::realtime::cpu_latency_limit_us;
use runs::{engine_in, finish_within, wait_until, Dir};
use std::process::Command;
use std::time::Duration;

/// A slow simulated digitizer into `bench.sink`, whose worker lines are `sink_extra`.
fn setup(sink_extra: &str) -> String {
    format!(
        "target_directory: runs
options: {{stats_interval: 0.1}}
Buffers:
  raw: {{slot_count: 16, data_length: 64, data_dtype: {{chA: float32}}}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: 1000000, rate: 100, realtime: true, pretrigger_samples: 20}}
  sink:
    function: bench.sink
    sources: [raw]
{sink_extra}"
    )
}

/// What `/dev/cpu_dma_latency` says while a run of `text` has events flowing (the run is
/// then stopped), and the run's log.
fn limit_during_run(tag: &str, text: &str) -> (Option<i32>, String) {
    let dir = Dir::new(tag);
    let s = dir.write("setup.yaml", text);
    let mut child = engine_in(&dir.0, &[s.as_os_str()])
        .args(["--no-tui", "--quiet"])
        .spawn()
        .unwrap();
    wait_until("events flowing", Duration::from_secs(120), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before events flowed");
        }
        dir.0.join("runs").is_dir()
            && runs::run_dirs_in(&dir.0.join("runs"))
                .first()
                .is_some_and(|r| runs::last_stats(r, "raw").1 > 0)
    });
    let during = cpu_latency_limit_us();
    let run = dir.run_dir();
    runs::interrupt(&child).unwrap();
    let (code, out) = finish_within(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    let log = std::fs::read_to_string(daq_engine::run_dir::log_path(&run)).unwrap_or_default();
    (during, log)
}

#[test]
fn a_real_time_worker_on_a_core_of_its_own_keeps_idle_cpus_awake_for_the_run_only() {
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let before = cpu_latency_limit_us();
    if !(two && nix::unistd::geteuid().is_root() && before.is_some()) {
        eprintln!("SKIPPED: needs root, two CPUs and a readable /dev/cpu_dma_latency");
        return;
    }
    if before == Some(0) {
        eprintln!("SKIPPED: something else holds /dev/cpu_dma_latency at 0 already");
        return;
    }
    let (during, log) = limit_during_run("idle-hold", &setup("    cpu: [1]\n    priority: 10\n"));
    assert_eq!(during, Some(0), "held at 0 µs while the run lasts: {log}");
    assert!(
        log.contains("worker 'sink' runs real-time on a core of its own: idle CPUs poll"),
        "the log says why: {log}"
    );
    assert_eq!(cpu_latency_limit_us(), before, "let go when the run ended");
    // Pinned but not real-time: no request.
    let (during, log) = limit_during_run("idle-no-hold", &setup("    cpu: [1]\n"));
    assert_eq!(during, before, "{log}");
    assert!(!log.contains("idle CPUs poll"), "{log}");
}

/// `check` names the worker for which a run will keep idle CPUs awake, and says nothing of
/// it for a pinned worker without a priority (no root needed: nothing is held).
#[test]
fn check_says_when_a_run_will_keep_idle_cpus_awake() {
    if !std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        eprintln!("SKIPPED: needs two CPUs");
        return;
    }
    let dir = Dir::new("idle-check");
    let check = |name: &str, extra: &str| {
        let s = dir.write(name, &setup(extra));
        let out = Command::new(env!("CARGO_BIN_EXE_daq-engine"))
            .arg("check")
            .arg(&s)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text
    };
    let text = check("rt.yaml", "    cpu: [1]\n    priority: 10\n");
    assert!(
        text.contains(
            "idle CPUs: kept from sleeping while the run lasts, for the real-time worker \
             'sink' on a core of its own (/dev/cpu_dma_latency at 0 µs; needs root)"
        ),
        "{text}"
    );
    let text = check("pinned.yaml", "    cpu: [1]\n");
    assert!(!text.contains("idle CPUs"), "{text}");
}
