//! Fault-injection soak (issue 12): the demo's pipeline, a CosmicWatch on a real pty and a
//! simulated USB scope run while this harness kills workers with SIGKILL (they restart),
//! stops them with SIGSTOP/SIGCONT, injects garbage lines into the detector's stream and
//! unplugs it. Beside it, runs of their own fill a small tmpfs one after another: in turn
//! by themselves up to the disk reserve, and suddenly, by a file of the harness that takes
//! all the space for a moment. At the end, after a clean stop: the books balance for every buffer and
//! reader (nothing silently lost), every HDF5 file opens with plain h5py with equal data and
//! metadata lengths, the detector's file holds exactly what its exporter was delivered, the
//! bad lines are counted, and no ring file, process or mount of the run is left.
//!
//! `DAQ_SOAK_SECONDS` sets the length (default 120, as CI runs it); the figures go to
//! stderr (`DAQ_SOAK_SECONDS=3600 cargo test --test soak -- --nocapture`) and to
//! RELIABILITY.md.

mod runs;

use daq_drivers::cosmicwatch::{CosmicWatchGen, CosmicWatchSimConfig, SimVersion};
use daq_drivers::serial::{SimulatedDevice, SimulatorHandle};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use runs::{
    books_balance, disk_filling_setup, engine_in, fill_with_ballast, finish_within, h5py_rows,
    interrupt, processes_with, SmallDisk,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

/// A CosmicWatch v2 at 50 events per host second that sends, on request, lines of noise
/// between its events.
struct NoisyCosmicWatch {
    gen: CosmicWatchGen,
    second: Duration,
    booted: bool,
    text: String,
    /// Noise lines asked for and not yet sent.
    pending: Arc<AtomicU64>,
    /// Noise lines sent.
    sent: Arc<AtomicU64>,
    now: Duration,
}

const NOISE: &[u8] = b"\x07noise 12 xx\r\n";

impl SimulatedDevice for NoisyCosmicWatch {
    fn receive(&mut self, _: &[u8], now: Duration, out: &mut Vec<u8>) {
        self.advance(now, out);
    }

    fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
        self.now = now;
        self.text.clear();
        if !self.booted {
            self.gen.header(&mut self.text);
            self.booted = true;
        }
        let t = now.as_secs_f64() / self.second.as_secs_f64();
        while self.gen.next_due() <= t {
            self.gen.next_line(&mut self.text);
        }
        out.extend_from_slice(self.text.as_bytes());
        while self.pending.load(Ordering::SeqCst) > 0 {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            out.extend_from_slice(NOISE);
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let due = self.second.mul_f64(self.gen.next_due().max(0.0));
        // Noise requests are looked at every 50 ms.
        Some(due.min(self.now + Duration::from_millis(50)))
    }
}

fn setup(port: &Path, unplug_at: f64) -> String {
    format!(
        "target_directory: runs
options: {{stats_interval: 1}}
Buffers:
  raw: &wave
    slot_count: 64
    data_length: 512
    data_dtype: {{chA: float32, chB: float32}}
    policy: block
  triggered: *wave
  pulses:
    slot_count: 1024
    data_length: 1
    data_dtype: {{channel: int16, time: float64, height: float32, area: float32, width: float32}}
  muons:
    slot_count: 64
    data_length: 1
    data_dtype: {{event: uint64, time_ms: uint64, adc: uint16, sipm_mv: float32, deadtime_ms: uint64, temp_c: float32}}
  scope:
    slot_count: 32
    data_length: 1000
    data_dtype: {{ch1: float32, ch2: float32}}
    policy: drop
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    restart: on-failure
    config: {{rate: 1000, realtime: true, sample_interval: 4.0e-9, pretrigger_samples: 100, noise: 0.003, seed: 5}}
  trigger:
    function: filter.threshold
    sources: [raw]
    sinks: [triggered]
    restart: on-failure
    config: {{level: 0.1, edge: rising, channels: [chA]}}
  pulse_finder:
    function: process.pulses
    number_of_processes: 2
    sources: [triggered]
    sinks: [pulses]
    restart: on-failure
    config: {{threshold: 0.05, sample_interval: 4.0e-9}}
  features:
    function: export.csv
    sources: [pulses]
    restart: on-failure
  waveforms:
    function: export.hdf5
    sources: [triggered]
    restart: on-failure
    # About 4 MB/s, 15 GB an hour, compressed as it is written (the exporter's own threads,
    # direct chunk writes): SIGKILLs land in the middle of compressed chunks too.
    config: {{flush_interval: 1.0}}
  detector:
    function: device.cosmicwatch
    sinks: [muons]
    restart: on-failure
    config: {{port: {port}, version: v2}}
  muons_h5:
    function: export.hdf5
    sources: [muons]
    restart: on-failure
    config: {{flush_interval: 1.0}}
  usb_scope:
    function: device.hantek6022
    sinks: [scope]
    restart: on-failure
    config: {{simulate: true, sample_rate: 1000000, channels: 2, samples_per_event: 1000, trigger_level: 0.3, pre_trigger: 100, sim_rate: 100, sim_unplug_at: {unplug_at}, sim_unplug_for: 2.0}}
  scope_sink:
    function: bench.sink
    sources: [scope]
    restart: on-failure
",
        port = port.display()
    )
}

/// Workers the harness may kill with SIGKILL: every one that restarts.
const KILLABLE: &[&str] = &[
    "digitizer",
    "trigger",
    "pulse_finder",
    "detector",
    "usb_scope",
    "scope_sink",
    "features",
    "waveforms",
    "muons_h5",
];

/// (worker, pid) of every live worker process of the run whose plan is `plan`.
fn workers(plan: &Path) -> Vec<(String, u32)> {
    let marker = format!("{} ", plan.display());
    processes_with(&marker.to_string())
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmd
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let at = args.iter().position(|a| Path::new(a) == plan)?;
            Some((args.get(at + 1)?.clone(), pid))
        })
        .collect()
}

fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

#[derive(Default, Debug)]
struct Faults {
    killed: u64,
    stopped: u64,
    noise_bursts: u64,
    unplugged: u64,
}

/// Ends a run the harness started if the harness fails first (a panic): left running, a soak's
/// engine writes on (4 MB/s) until the disk is full. Its workers end with it.
struct StopOnPanic(u32);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            signal(self.0, Signal::SIGKILL);
        }
    }
}

/// What the small disk's runs did.
#[derive(Default, Debug)]
struct SmallDiskRuns {
    /// Runs stopped by the disk reserve as the files grew.
    by_reserve: u64,
    /// Runs whose disk a file of the harness filled to the last byte for 1.5 s.
    by_ballast: u64,
    /// Of these, runs that the exporter's write failure ended (exit 1) before the disk watch
    /// stopped them.
    ended_by_the_exporter: u64,
    /// Events produced over all of them.
    events: u64,
    /// Of these, lost and counted.
    lost: u64,
}

/// Runs of their own on a 24 MiB tmpfs under `dir`, one after another until `stop`: every
/// second one is filled suddenly by a ballast file (the exporter meets ENOSPC) which goes
/// away 1.5 s later; the others run until the disk reserve stops them. Each run is checked
/// as it ends: summary.json written, the books balance, the file opens with plain h5py
/// with equal data and metadata holding what the exporter was delivered, nothing left.
fn small_disk_runs(dir: &Path, stop: &AtomicBool) -> Option<SmallDiskRuns> {
    let mount = dir.join("small-disk");
    let _unmount = SmallDisk::mount(&mount, 24)?;
    let setup_path = dir.join("small-disk.yaml");
    std::fs::write(
        &setup_path,
        disk_filling_setup(&mount, 6, "flush_interval: 0.2"),
    )
    .unwrap();
    let mut done = SmallDiskRuns::default();
    for cycle in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        for e in std::fs::read_dir(&mount).unwrap().flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
        let ballast = cycle % 2 == 1;
        let child = engine_in(dir, &[setup_path.as_os_str()])
            .args(["--no-tui", "--quiet"])
            .spawn()
            .unwrap();
        let _guard = StopOnPanic(child.id());
        let t0 = Instant::now();
        let run = loop {
            let found = std::fs::read_dir(&mount)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("raw.h5").exists());
            if let Some(run) = found {
                break run;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "small disk: no run file"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if ballast {
            std::thread::sleep(Duration::from_millis(1000));
            let path = mount.join("ballast");
            fill_with_ballast(&path, 32 << 20, child.id(), &run);
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_file(&path).unwrap();
        }
        let (code, text) = finish_within(child, Duration::from_secs(120));
        let summary = books_balance(&run);
        if ballast {
            // The exporter that met the full disk ends the run (exit 1) unless the disk
            // watch stopped it first (exit 0); either way the summary is there.
            assert!(code == 0 || code == 1, "small disk: exit {code}\n{text}");
            done.by_ballast += 1;
            done.ended_by_the_exporter += u64::from(code == 1);
        } else {
            assert_eq!(code, 0, "small disk: {text}");
            assert!(text.contains("disk almost full"), "{text}");
            done.by_reserve += 1;
        }
        done.events += summary["events"]["raw"].as_u64().unwrap();
        done.lost += summary["lost"]["raw"].as_u64().unwrap()
            + summary["readers"]["raw"]["writer"]["lost"]
                .as_u64()
                .unwrap();
        if let Some(files) = h5py_rows(&run) {
            let (d, m) = files["raw.h5"]["raw"];
            assert_eq!(d, m, "small disk: data and metadata lengths");
            assert_eq!(
                d,
                summary["readers"]["raw"]["writer"]["delivered"]
                    .as_u64()
                    .unwrap(),
                "small disk: the file holds what the writer was delivered\n{text}"
            );
        }
        assert!(
            processes_with(&run.to_string_lossy()).is_empty(),
            "small disk: processes of the run are left"
        );
    }
    Some(done)
}

#[test]
fn faults_keep_the_books_and_the_files_whole() {
    let seconds: u64 = std::env::var("DAQ_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = std::env::temp_dir().join(format!("daq-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pending = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let mut sim = {
        let (pending, sent) = (pending.clone(), sent.clone());
        SimulatorHandle::start("cosmicwatch", move |n| {
            let cfg = CosmicWatchSimConfig {
                version: SimVersion::V2,
                seed: 11 + u64::from(n),
                second: Duration::from_millis(20),
                ..CosmicWatchSimConfig::default()
            };
            Box::new(NoisyCosmicWatch {
                gen: CosmicWatchGen::new(&cfg),
                second: cfg.second,
                booted: false,
                text: String::new(),
                pending: pending.clone(),
                sent: sent.clone(),
                now: Duration::ZERO,
            })
        })
        .unwrap()
    };
    let setup_path = dir.join("setup.yaml");
    std::fs::write(&setup_path, setup(sim.path(), seconds as f64 / 3.0)).unwrap();
    let child = Command::new(EXE)
        .arg(&setup_path)
        .args(["--no-tui", "--progress-every", "10"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        // Not read while the run goes on: a pipe would fill within the hour (the run log
        // has everything).
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let supervisor = child.id();
    let _guard = StopOnPanic(supervisor);
    let runs = dir.join("runs");
    let t0 = Instant::now();
    let run = loop {
        if let Some(d) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
        {
            if d.join("plan.json").exists() {
                break d;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no run directory");
        std::thread::sleep(Duration::from_millis(50));
    };
    let plan = run.join("plan.json");
    let small_stop = Arc::new(AtomicBool::new(false));
    let small_disk = {
        let (dir, stop) = (dir.clone(), small_stop.clone());
        std::thread::spawn(move || small_disk_runs(&dir, &stop))
    };
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let mut faults = Faults::default();
    let mut killed = std::collections::BTreeMap::new();
    let mut recent_kills: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    let start = Instant::now();
    // Let the pipeline settle before the first fault.
    std::thread::sleep(Duration::from_secs(3));
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4000)));
        let live = workers(&plan);
        match rng.random_range(0..10) {
            0..=3 => {
                // The engine gives up on a worker that fails RESTART_BURST (5) times within
                // a minute, as it should for a broken one: the harness kills each at most
                // three times a minute, so the run is tested, not its restart budget.
                let now = Instant::now();
                let killable: Vec<&(String, u32)> = live
                    .iter()
                    .filter(|(w, _)| KILLABLE.contains(&w.as_str()))
                    .filter(|(w, _)| {
                        recent_kills.get(w).map_or(0, |ts: &Vec<Instant>| {
                            ts.iter()
                                .filter(|t| now.duration_since(**t) < Duration::from_secs(60))
                                .count()
                        }) < 3
                    })
                    .collect();
                if let Some((w, pid)) = killable.get(rng.random_range(0..killable.len().max(1))) {
                    signal(*pid, Signal::SIGKILL);
                    eprintln!(
                        "{:6.1} s: SIGKILL {w} (pid {pid})",
                        start.elapsed().as_secs_f64()
                    );
                    faults.killed += 1;
                    *killed.entry(w.clone()).or_insert(0u64) += 1;
                    recent_kills.entry(w.clone()).or_default().push(now);
                }
            }
            4..=6 => {
                if let Some((w, pid)) = live.get(rng.random_range(0..live.len().max(1))) {
                    eprintln!(
                        "{:6.1} s: SIGSTOP {w} (pid {pid})",
                        start.elapsed().as_secs_f64()
                    );
                    signal(*pid, Signal::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
                    signal(*pid, Signal::SIGCONT);
                    faults.stopped += 1;
                }
            }
            7..=8 => {
                let n = rng.random_range(1..6);
                eprintln!("{:6.1} s: {n} noise lines", start.elapsed().as_secs_f64());
                pending.fetch_add(n, Ordering::SeqCst);
                faults.noise_bursts += 1;
            }
            _ => {
                eprintln!(
                    "{:6.1} s: unplug the detector",
                    start.elapsed().as_secs_f64()
                );
                sim.unplug();
                std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
                sim.replug().unwrap();
                faults.unplugged += 1;
            }
        }
    }
    small_stop.store(true, Ordering::SeqCst);
    let small = small_disk.join().expect("the small disk's checks failed");
    // A quiet tail: an unplugged detector is found again (the driver's backoff) and what
    // the devices sent is read before the stop.
    std::thread::sleep(Duration::from_secs(10));
    let _ = interrupt(&child);
    let (code, text) = finish_within(child, Duration::from_secs(180));
    let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap_or_default();
    assert_eq!(code, 0, "{text}\n{log}");

    // The books: for every buffer and reader, produced = delivered + lost (+ pending while
    // the run goes on), in every stats line and in the summary.
    let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
    for (i, line) in stats.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for (buffer, b) in v["buffers"].as_object().unwrap() {
            for (reader, r) in b["readers"].as_object().unwrap() {
                let sum = r["delivered"].as_u64().unwrap()
                    + r["lost"].as_u64().unwrap()
                    + r["pending"].as_u64().unwrap();
                assert_eq!(
                    sum,
                    b["produced"].as_u64().unwrap(),
                    "line {i}: {buffer}/{reader}"
                );
            }
        }
    }
    let summary = books_balance(&run);
    let mut produced_all = 0u64;
    let mut lost_all = 0u64;
    for (buffer, readers) in summary["readers"].as_object().unwrap() {
        let produced =
            summary["events"][buffer].as_u64().unwrap() + summary["lost"][buffer].as_u64().unwrap();
        produced_all += produced;
        for (_, b) in readers.as_object().unwrap() {
            lost_all += b["lost"].as_u64().unwrap();
        }
    }
    assert!(
        summary["events"]["muons"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary["events"]["raw"].as_u64().unwrap() > 0, "{summary}");

    // Bad lines are counted, never fatal: at least every noise line (a line cut by an unplug
    // may be counted too).
    let notes = daq_engine::run_dir::read_notes(&run.join("device_detector.txt"));
    let bad: u64 = notes
        .iter()
        .find(|(k, _)| k == "device.bad_records")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let noise = sent.load(Ordering::SeqCst);
    if killed.contains_key("detector") {
        // A killed importer loses what it counted after its last notes (≤ 1 s).
        assert!(
            noise == 0 || bad > 0,
            "{noise} noise lines sent, none counted"
        );
    } else {
        assert!(
            bad >= noise,
            "{noise} noise lines sent, {bad} bad records counted"
        );
    }

    // Every file opens with plain h5py, data and metadata of equal length; the detector's
    // file holds exactly what its exporter was delivered.
    if let Some(files) = h5py_rows(&run) {
        assert!(!files.is_empty(), "no HDF5 files in {}", run.display());
        for (file, groups) in &files {
            for (group, (d, m)) in groups {
                assert_eq!(d, m, "{file}/{group}: data and metadata lengths");
            }
        }
        // What each exporter's files hold is what the books say it was delivered: what a
        // killed exporter had not written yet is counted lost for it, not delivered.
        for (buffer, exporter) in [("muons", "muons_h5"), ("triggered", "waveforms")] {
            let rows: u64 = files
                .iter()
                .filter(|(f, _)| f.starts_with(buffer))
                .flat_map(|(_, g)| g.values().map(|x| x.0))
                .sum();
            let delivered = summary["readers"][buffer][exporter]["delivered"]
                .as_u64()
                .unwrap();
            assert_eq!(rows, delivered, "{exporter}: {files:?}");
        }
    }
    // What killed exporters had been delivered but not yet written, as their restarted
    // processes booked it (counted lost in the rings; the log says how many).
    let unflushed: u64 = log
        .lines()
        .filter(|l| l.contains("events it was delivered are not in its output"))
        .filter_map(|l| {
            l.split("': ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();

    // Nothing of the run is left: ring files, processes, the engine's huge-page mount.
    let plan_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    for b in plan_json["buffers"].as_array().unwrap() {
        for r in b["rings"].as_array().unwrap() {
            let p = PathBuf::from(r.as_str().unwrap());
            assert!(!p.exists(), "ring file left: {}", p.display());
        }
    }
    assert!(
        processes_with(&run.to_string_lossy()).is_empty(),
        "processes of the run are left"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&format!("huge-{supervisor}")),
        "the run's huge-page mount is left"
    );
    let restarts = log.matches("starting it again").count();
    eprintln!(
        "soak: {seconds} s; faults: {} SIGKILL ({restarts} restarts), {} SIGSTOP/SIGCONT, \
         {} noise bursts ({noise} lines, {bad} bad records counted), {} unplugs of the \
         detector, 1 of the USB scope; events produced in all buffers: {produced_all}; lost \
         and counted (over all readers): {lost_all}; of these, taken by exporters that \
         were killed before they wrote them: {unflushed}; kills per worker: {killed:?}; \
         the small disk: {small:?}",
        faults.killed, faults.stopped, faults.noise_bursts, faults.unplugged
    );
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
