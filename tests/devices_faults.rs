//! Device faults in whole runs of the real `daq-engine` binary, with the device simulators
//! running in this test process on real ptys (the engine opens them by path, as it would
//! open `/dev/ttyUSB0`): a line of noise is counted and skipped and the run goes on; the
//! driver's stop reaches the device on every ending; a silent device is reported (or stops
//! the run when asked); the device notes stay current while the run goes on.

mod runs;

use daq_drivers::cosmicwatch::{CosmicWatchGen, CosmicWatchSimConfig, SimVersion};
use daq_drivers::gmc::{self, GmcSimConfig};
use daq_drivers::linecounter::{LineCounterSim, LineSimConfig, SimFormat};
use daq_drivers::serial::{ScriptedDevice, SimulatorHandle};
use runs::Dir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

const COSMICWATCH_V2_DTYPE: &str = "{event: uint64, time_ms: uint64, adc: uint16, \
                                    sipm_mv: float32, deadtime_ms: uint64, temp_c: float32}";

/// A setup with one device importer `detector` (function, sink dtype, config lines) whose
/// events go to `events.csv` and `events.h5`; written into `dir`.
fn setup(dir: &Dir, function: &str, dtype: &str, config: &[String]) -> PathBuf {
    let mut text = format!(
        "Buffers:\n  events:\n    slot_count: 64\n    data_length: 1\n    data_dtype: {dtype}\n\
         Workers:\n  detector:\n    function: {function}\n    sinks: [events]\n    config:\n"
    );
    for line in config {
        text.push_str(&format!("      {line}\n"));
    }
    text.push_str("  all_events:\n    function: export.csv\n    sources: [events]\n");
    text.push_str("  events_h5:\n    function: export.hdf5\n    sources: [events]\n");
    let path = dir.0.join("setup.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the run of `setup` with `args` (stderr piped).
fn start(dir: &Dir, setup: &Path, args: &[&str]) -> Child {
    Command::new(EXE)
        .arg(setup)
        .args(["--no-tui", "--quiet", "--target-directory"])
        .arg(dir.0.join("runs"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daq-engine")
}

/// Waits (at most `limit`, then kills it and fails) for the run to end; returns its exit
/// code, its stderr and its run directory.
fn finish(dir: &Dir, mut child: Child, limit: Duration) -> (i32, String, PathBuf) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let run_dir = dir.run_dir();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        run_dir,
    )
}

/// Stops the run with SIGTERM (as `systemctl stop` would, but for the signal) and waits
/// for it to end cleanly (exit 0); returns its stderr and its run directory.
fn terminate(dir: &Dir, child: Child) -> (String, PathBuf) {
    signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let (code, err, rd) = finish(dir, child, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    (err, rd)
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

fn run(dir: &Dir, setup: &Path, args: &[&str]) -> (i32, String, PathBuf) {
    let child = start(dir, setup, args);
    finish(dir, child, Duration::from_secs(120))
}

/// A value of the device notes of worker `detector`.
fn note(run_dir: &Path, key: &str) -> Option<String> {
    daq_engine::run_dir::read_notes(&run_dir.join("device_detector.txt"))
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn log(run_dir: &Path) -> String {
    std::fs::read_to_string(run_dir.join("daq-engine.log")).unwrap_or_default()
}

/// Column `name` of `events.csv`.
fn csv_column(run_dir: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("events.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    lines
        .map(|l| l.split(',').nth(i).unwrap().to_string())
        .collect()
}

fn scripted(script: Vec<u8>) -> SimulatorHandle {
    SimulatorHandle::start("script", move |_| {
        Box::new(ScriptedDevice::new(script.clone()))
    })
    .unwrap()
}

fn cosmicwatch_v2() -> CosmicWatchSimConfig {
    CosmicWatchSimConfig {
        version: SimVersion::V2,
        ..CosmicWatchSimConfig::default()
    }
}

/// A booting CosmicWatch v2: header and name line.
fn cosmicwatch_header() -> String {
    let mut header = String::new();
    CosmicWatchGen::new(&cosmicwatch_v2()).header(&mut header);
    header
}

fn port(sim: &SimulatorHandle) -> String {
    format!("port: {}", sim.path().display())
}

/// The setup in `d` of a CosmicWatch v2 (`device.cosmicwatch`) on the simulated device `sim`,
/// with `config` lines besides its port.
fn scripted_cosmicwatch(d: &Dir, sim: &SimulatorHandle, config: &[&str]) -> PathBuf {
    let mut lines = vec![port(sim)];
    lines.extend(config.iter().map(|l| l.to_string()));
    setup(d, "device.cosmicwatch", COSMICWATCH_V2_DTYPE, &lines)
}

#[test]
fn a_noise_line_from_a_cosmicwatch_is_counted_and_skipped_and_the_run_goes_on() {
    let lines = CosmicWatchGen::event_lines(&cosmicwatch_v2(), 10);
    let mut script = cosmicwatch_header();
    for (i, l) in lines.iter().enumerate() {
        if i == 5 {
            // Line noise: three columns where six belong, with a control byte.
            script.push_str("\u{7}12 xx 3\r\n");
        }
        if i == 7 {
            // A burst of three noise lines in a row: each one counted.
            script.push_str("\u{7}noise 12 xx\r\n\u{7}noise 12 xx\r\n\u{7}noise 12 xx\r\n");
        }
        script.push_str(l);
    }
    let sim = scripted(script.into_bytes());
    let d = Dir::new("cw-noise");
    let s = scripted_cosmicwatch(&d, &sim, &["version: v2"]);
    let (code, err, rd) = run(&d, &s, &["--max-events", "10"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    let events: Vec<String> = csv_column(&rd, "event");
    let want: Vec<String> = (1..=10).map(|n| n.to_string()).collect();
    assert_eq!(events, want, "every good event, in order");
    assert_eq!(note(&rd, "device.bad_records").as_deref(), Some("4"));
    assert_eq!(note(&rd, "device.events").as_deref(), Some("10"));
    let log = log(&rd);
    assert!(
        log.contains("bad data skipped at byte") && log.contains(r#"first bytes "\x0712 xx 3""#),
        "{log}"
    );
    assert!(log.contains("expected 6 columns, found 3"), "{log}");
    // The count travels with the data: the notes are final before the file closes.
    let facts = daq_engine::export::inspect(rd.join("events.h5")).unwrap();
    assert!(
        facts.contains("@detector.device.bad_records = 4"),
        "{facts}"
    );
    assert!(facts.contains("@detector.device.events = 10"), "{facts}");
    // And with the run's summary, in summary.json and its last lines (they said nothing of
    // the device's bad data).
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["devices"]["detector"]["bad_records"], 4,
        "{summary}"
    );
    assert!(
        err.contains("worker 'detector': its device sent 4 bad records"),
        "{err}"
    );
}

#[test]
fn a_noise_line_from_a_line_counter_is_counted_and_skipped_and_the_run_goes_on() {
    let cfg = LineSimConfig {
        format: SimFormat::Gc10,
        cps: 5.0,
        seed: 4,
        second: Duration::from_millis(10),
    };
    let lines = LineCounterSim::lines(&cfg, 8);
    let mut script = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == 3 {
            script.extend_from_slice(b"\xff\xfe\x00junk\r\n");
        }
        script.extend_from_slice(l.as_bytes());
    }
    let sim = scripted(script);
    let d = Dir::new("lc-noise");
    let s = setup(&d, "device.gc10", "{cpm: uint32}", &[port(&sim)]);
    let (code, err, rd) = run(&d, &s, &["--max-events", "8"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    let want: Vec<String> = lines.iter().map(|l| l.trim().to_string()).collect();
    assert_eq!(csv_column(&rd, "cpm"), want);
    assert_eq!(note(&rd, "device.bad_records").as_deref(), Some("1"));
    assert!(
        log(&rd).contains(r#"first bytes "\xff\xfe\x00junk""#),
        "{}",
        log(&rd)
    );
}

/// The tester's CosmicWatch v2 reset mid-run: header and name line `Alice` again, events
/// from 1 again. Every event is in the file, nothing is bad data, the notes say it restarted.
#[test]
fn a_cosmicwatch_reset_mid_run_keeps_every_event_and_is_noted() {
    let mut header = String::new();
    CosmicWatchGen::new(&CosmicWatchSimConfig {
        name: "Alice".into(),
        ..cosmicwatch_v2()
    })
    .header(&mut header);
    let event = |n: u64| format!("{n} {} 312 87.25 {} 23.41\r\n", 1000 * n, 10 * n);
    let mut script = header.clone();
    (1..=5).for_each(|n| script.push_str(&event(n)));
    script.push_str(&header);
    (1..=3).for_each(|n| script.push_str(&event(n)));
    let sim = scripted(script.into_bytes());
    let d = Dir::new("cw-reset");
    let s = scripted_cosmicwatch(&d, &sim, &["version: v2"]);
    // All 8 are sent at once; the time limit only ends a run that lost some.
    let (code, err, rd) = run(&d, &s, &["--max-events", "8", "--max-seconds", "5"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    assert_eq!(
        csv_column(&rd, "event"),
        ["1", "2", "3", "4", "5", "1", "2", "3"]
    );
    assert_eq!(note(&rd, "device.bad_records").as_deref(), Some("0"));
    assert_eq!(note(&rd, "cosmicwatch_name").as_deref(), Some("Alice"));
    assert_eq!(note(&rd, "cosmicwatch_restarts").as_deref(), Some("1"));
}

/// A MightyOhm whose last line lost its CR LF (the run stopped, or the cable went, while
/// it was printing): the three whole lines are events, the cut one is a bad record, counted
/// at the stop and logged with the device, its offset and how many bytes were dropped.
#[test]
fn a_line_cut_off_at_the_stop_is_a_bad_record_in_the_notes_and_the_log() {
    let sim = scripted(
        b"CPS, 1, CPM, 19, uSv/hr, 0.10, SLOW\r\nCPS, 2, CPM, 21, uSv/hr, 0.11, SLOW\r\n\
          CPS, 3, CPM, 24, uSv/hr, 0.13, SLOW\r\nCPS, 2, CPM, 20, uSv/hr, 0.11, SLOW"
            .to_vec(),
    );
    let d = Dir::new("lc-cut");
    let dtype = "{cps: uint32, cpm: uint32, usv_per_hr: float32, mode: uint8}";
    let s = setup(&d, "device.mightyohm", dtype, &[port(&sim)]);
    let (code, err, rd) = run(&d, &s, &["--max-events", "3"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    assert_eq!(csv_column(&rd, "cpm"), ["19", "21", "24"]);
    assert_eq!(note(&rd, "device.events").as_deref(), Some("3"));
    assert_eq!(note(&rd, "device.bad_records").as_deref(), Some("1"));
    let log = log(&rd);
    assert!(
        log.contains(
            "bad data skipped at byte 111: 35 byte(s) without a line end discarded at the stop"
        ) && log.contains(&format!("{}: bad data", sim.path().display())),
        "{log}"
    );
}

/// The GMC simulator for a run: 50 device seconds a host second.
fn gmc_sim() -> SimulatorHandle {
    gmc::simulate(GmcSimConfig {
        cps: 5.0,
        seed: 3,
        second: Duration::from_millis(20),
        ..GmcSimConfig::default()
    })
    .unwrap()
    .0
}

/// Panics unless the host switched the heartbeat on and, after that, off again.
fn assert_heartbeat_switched_off(sim: &SimulatorHandle) {
    let sent = String::from_utf8_lossy(&sim.wire().host_sent()).into_owned();
    let on = sent
        .rfind("<HEARTBEAT1>>")
        .unwrap_or_else(|| panic!("never switched on: {sent}"));
    assert!(
        sent[on..].contains("<HEARTBEAT0>>"),
        "the heartbeat was left running: {sent}"
    );
}

#[test]
fn the_gmc_heartbeat_is_switched_off_when_the_run_reaches_its_limit() {
    let sim = gmc_sim();
    let d = Dir::new("gmc-limit");
    let s = setup(&d, "device.gmc", "{cps: uint32}", &[port(&sim)]);
    let (code, err, rd) = run(&d, &s, &["--max-events", "5"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    assert_heartbeat_switched_off(&sim);
}

#[test]
fn on_sigterm_the_gmc_heartbeat_is_switched_off_and_the_notes_were_current_all_along() {
    let sim = gmc_sim();
    let d = Dir::new("gmc-term");
    let s = setup(&d, "device.gmc", "{cps: uint32}", &[port(&sim)]);
    let child = start(&d, &s, &["--max-seconds", "100"]);
    // While the run goes on, the notes count the events (once written only at open).
    let deadline = Instant::now() + Duration::from_secs(60);
    let notes = loop {
        assert!(
            Instant::now() < deadline,
            "the notes never counted 3 events"
        );
        let found = std::fs::read_dir(d.0.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("device_detector.txt"))
            .find(|p| p.exists());
        if let Some(p) = found {
            let events = daq_engine::run_dir::read_notes(&p)
                .into_iter()
                .find(|(k, _)| k == "device.events")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            if events.is_some_and(|n| n >= 3) {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(notes.exists());
    let (_, rd) = terminate(&d, child);
    assert_heartbeat_switched_off(&sim);
    let rows = csv_column(&rd, "cps").len().to_string();
    assert_eq!(note(&rd, "device.events"), Some(rows), "final notes");
}

#[test]
fn a_cosmicwatch_sending_only_garbage_is_reported_silent_and_the_run_goes_on() {
    let mut script = cosmicwatch_header();
    script.push_str("1 2 3\r\nzz\r\n4 5 6 7\r\n");
    let sim = scripted(script.into_bytes());
    let d = Dir::new("cw-silent");
    let s = scripted_cosmicwatch(&d, &sim, &["expect_data_within: 0.5"]);
    let (code, err, rd) = run(&d, &s, &["--max-seconds", "3"]);
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    let log = log(&rd);
    assert!(
        log.contains("sent no good event for") && log.contains("The run goes on"),
        "{log}"
    );
    assert_eq!(note(&rd, "device.silent").as_deref(), Some("true"));
    assert_eq!(note(&rd, "device.silences").as_deref(), Some("1"));
    assert_eq!(note(&rd, "device.bad_records").as_deref(), Some("3"));
    assert_eq!(note(&rd, "device.events").as_deref(), Some("0"));
    // What `status` and the page read: the supervisor's last statistics line.
    let stats = std::fs::read_to_string(rd.join("stats.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    let device = &last["workers"]["detector"]["device"];
    assert_eq!(device["bad_records"], 3, "{last}");
    assert_eq!(device["silent"], true, "{last}");
}

#[test]
fn a_silent_cosmicwatch_stops_the_run_with_on_silence_stop() {
    let sim = scripted(cosmicwatch_header().into_bytes());
    let d = Dir::new("cw-stop");
    let s = scripted_cosmicwatch(&d, &sim, &["expect_data_within: 0.5", "on_silence: stop"]);
    // Without the stop the run would last until max_seconds, and `finish` fails first.
    let child = start(&d, &s, &["--max-seconds", "600"]);
    let (code, err, rd) = finish(&d, child, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}\n{}", log(&rd));
    assert!(
        log(&rd).contains("Stopping the run (on_silence: stop)"),
        "{}",
        log(&rd)
    );
    assert_eq!(note(&rd, "device.silent").as_deref(), Some("true"));
    // Why it stopped, in the summary: not "its sources ended".
    let summary = runs::summary(&rd);
    assert_eq!(summary["stopped_by"], "device_silent", "{summary}");
    assert!(err.contains("stopped by a device silent"), "{err}");
}

#[test]
fn check_knows_expect_data_within_and_on_silence() {
    let d = Dir::new("cw-check");
    let check = |config: &[&str]| {
        let mut lines = vec!["port: /dev/null".to_string()];
        lines.extend(config.iter().map(|l| l.to_string()));
        let s = setup(&d, "device.cosmicwatch", COSMICWATCH_V2_DTYPE, &lines);
        let out = Command::new(EXE).arg("check").arg(&s).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let (code, err) = check(&["expect_data_within: soon"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("expect_data_within"), "{err}");
    let (code, err) = check(&["expect_data_within: 30", "on_silence: stop"]);
    assert_eq!(code, Some(0), "{err}");
    // Values, not only types: refused by check, not after the run started.
    let (code, err) = check(&["on_silence: halt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'halt': warn or stop"), "{err}");
    let (code, err) = check(&["expect_data_within: -5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("up to a week"), "{err}");
}

/// Kills a process when dropped: a stopped one must not outlive a failing test.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A device importer stuck in a call that never returns (a vendor library that hangs; here
/// its process is stopped with SIGSTOP) took no data, rewrote no notes and raised no
/// warning: its last notes said all was well, so the run looked healthy for as long as it
/// went on. Its notes are its heartbeat now: under `restart: on-failure` it is killed after
/// `worker_stall_seconds` and started again, and it reads its device on, counting on.
#[test]
fn a_device_importer_that_stops_coming_round_its_loop_is_started_again() {
    let d = Dir::new("cw-wedged");
    let config = ["simulate: true".to_string(), "sim_rate: 50".into()];
    let s = setup(&d, "device.cosmicwatch", COSMICWATCH_V2_DTYPE, &config);
    let text = std::fs::read_to_string(&s).unwrap().replacen(
        "    config:\n",
        "    restart: on-failure\n    config:\n",
        1,
    );
    std::fs::write(&s, text + "options: {worker_stall_seconds: 3}\n").unwrap();
    // On the code before, the wait below fails and the run ends at its limit.
    let child = start(&d, &s, &["--max-seconds", "60"]);
    let events = |rd: &Path| {
        note(rd, "device.events")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut found = None;
    runs::wait_until(
        "the importer counting events",
        Duration::from_secs(60),
        || {
            let runs = d.0.join("runs");
            let Some(rd) = runs
                .exists()
                .then(|| runs::run_dirs_in(&runs).pop())
                .flatten()
            else {
                return false;
            };
            let pid = log(&rd)
                .split("started worker 'detector' process 0 (pid ")
                .nth(1)
                .and_then(|t| t.split(')').next()?.parse::<i32>().ok());
            found = pid.map(|p| (rd.clone(), p));
            found.is_some() && events(&rd) >= 3
        },
    );
    let (rd, pid) = found.unwrap();
    let stopped = KillOnDrop(pid);
    // Half a second after a rewrite of its notes, as a hang would come at any moment (it
    // reads on meanwhile: the notes trail what it published until the next rewrite).
    std::thread::sleep(Duration::from_millis(500));
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let before = events(&rd);
    runs::wait_until(
        "the importer started again",
        Duration::from_secs(60),
        || log(&rd).contains("starting it again") && events(&rd) >= before + 5,
    );
    // The supervisor killed and reaped it: its pid may be another process's by now.
    std::mem::forget(stopped);
    let (err, rd) = terminate(&d, child);
    assert!(
        err.contains("worker 'detector' has not come round its loop for 3 s")
            && err.contains("killing it to start it again"),
        "{err}"
    );
    runs::books_balance(&rd);
    let last = daq_engine::run_dir::last_snapshot(&rd).unwrap();
    assert_eq!(last.workers["detector"].restarts, 1, "{last:?}");
    // It counted on over its restart from what its first process had published, not from
    // its notes of up to a second before the stop: the notes' events are the file's rows
    // (one more when the stop came between reading an event and publishing it).
    let rows = csv_column(&rd, "event").len() as u64;
    let counted: u64 = note(&rd, "device.events").unwrap().parse().unwrap();
    assert!(
        (rows..=rows + 1).contains(&counted),
        "{counted} counted, {rows} rows"
    );
}
