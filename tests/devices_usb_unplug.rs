//! The USB waveform sources unplugged in the middle of a run, end to end through the real
//! `daq-engine` binary with `--simulate`: `sim_unplug_at` / `sim_unplug_for` pull the plug of
//! the simulated Hantek 6022 (it comes back cold and gets its firmware again), of the fake
//! PicoScope library's unit (it answers PICO_NOT_RESPONDING / PICO_NOT_FOUND) and of the
//! simulated DRS4 board (power-cycled, back at a new address). Each run reports the
//! disconnect, waits, logs the gap, goes on to exactly its N events and exits 0; every event
//! is stamped either before the gap or after it, and none is torn by it.

use std::path::{Path, PathBuf};

mod runs;
use runs::{code_and_stderr, shipped_setup as setup, simulated, summary_events, Dir};

/// `name` from setups/ with `keys` (YAML lines, worker-config indented) inserted after the
/// line `after`, written into `dir`.
fn with_keys(dir: &Dir, name: &str, after: &str, keys: &str) -> PathBuf {
    let text = std::fs::read_to_string(setup(name)).unwrap();
    assert_eq!(text.matches(after).count(), 1, "{after:?} in {name}");
    let file = dir.0.join(name);
    std::fs::write(&file, text.replace(after, &format!("{after}{keys}"))).unwrap();
    file
}

/// Runs [`with_keys`] of `name`, `after` and `keys` in `dir` with `--simulate --max-events
/// n`; returns (exit code, stderr, run dir). The setups' own `max_seconds: 5` is lifted (to
/// 10 minutes): on a loaded machine the simulated scopes make fewer events in 5 s, and the
/// run must end by its event count, not by time.
fn run(dir: &Dir, name: &str, after: &str, keys: &str, n: u64) -> (i32, String, PathBuf) {
    let file = with_keys(dir, name, after, keys);
    let runs = dir.0.join("runs");
    let (code, err) = code_and_stderr(simulated(&file, n, &runs).args(["--max-seconds", "600"]));
    let run_dir = std::fs::read_dir(&runs)
        .ok()
        .and_then(|mut d| d.next())
        .map(|e| e.unwrap().path())
        .unwrap_or_default();
    (code, err, run_dir)
}

/// The pulse rows: (event counter, host timestamp, channel, pulse time in the event).
fn pulses(run_dir: &Path) -> Vec<(u64, f64, i64, f64)> {
    let text = std::fs::read_to_string(run_dir.join("pulses.csv")).unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("counter,timestamp,deadtime,channel,time,height"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

/// What the device notes and the log say about the one gap.
struct Gap {
    notes: String,
    /// Host time the device was found gone, and seconds until it was back.
    lost_at: f64,
    seconds: f64,
    events_before: u64,
}

/// Checks the log and the notes name exactly one disconnect of `worker` and its gap.
fn one_gap(run_dir: &Path, worker: &str, simulator: &str) -> Gap {
    let log = std::fs::read_to_string(run_dir.join("daq-engine.log")).unwrap();
    let line = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        line(&format!("simulator: pulling the plug of {simulator}")),
        1,
        "{log}"
    );
    assert_eq!(line(&format!("simulator: plugged {simulator}")), 1, "{log}");
    assert_eq!(line(&format!("WARN {worker}: ")), 2, "{log}");
    assert_eq!(line("disconnected"), 1, "{log}");
    assert_eq!(line("is back after a gap of"), 1, "{log}");
    let notes = std::fs::read_to_string(run_dir.join(format!("device_{worker}.txt"))).unwrap();
    assert!(notes.contains("device.gaps = 1\n"), "{notes}");
    let gap = notes
        .lines()
        .find_map(|l| l.strip_prefix("device.gap.0 = lost at unix "))
        .unwrap_or_else(|| panic!("{notes}"));
    // "<t>, back after <s> s, <n> events before; <detail>"
    let (t, rest) = gap.split_once(", back after ").unwrap();
    let (s, rest) = rest.split_once(" s, ").unwrap();
    let (n, _) = rest.split_once(" events before").unwrap();
    Gap {
        lost_at: t.parse().unwrap(),
        seconds: s.parse().unwrap(),
        events_before: n.parse().unwrap(),
        notes: notes.clone(),
    }
}

/// Every event (one row per event in `rows`) is stamped before the gap or after it: exactly
/// `events_before` of them before, the rest after, none inside.
fn split_by_gap(rows: &[(u64, f64, i64, f64)], gap: &Gap, n: u64) {
    let inside = |t: f64| t > gap.lost_at + 0.002 && t < gap.lost_at + gap.seconds - 0.002;
    assert!(!rows.iter().any(|r| inside(r.1)), "an event inside the gap");
    let middle = gap.lost_at + gap.seconds / 2.0;
    let before = rows.iter().filter(|r| r.1 < middle).count() as u64;
    assert_eq!(before, gap.events_before);
    assert_eq!(rows.len() as u64 - before, n - gap.events_before);
    assert!(
        gap.events_before > 0 && gap.events_before < n,
        "{}",
        gap.notes
    );
}

/// A simulated device pulled out mid-run: the shipped setup (`tag` names its scratch
/// directory), the line of its config the unplug `keys` go after, its worker and how the
/// simulator names it in the log.
struct Unplug {
    tag: &'static str,
    setup: &'static str,
    after: &'static str,
    keys: &'static str,
    worker: &'static str,
    simulator: &'static str,
}

/// Runs the setup of `u` for `n` events through its one unplug: exit 0, `n` events of
/// `raw`, exactly one gap, and device notes that say each of `notes_say`. The scratch
/// directory, the run directory and the gap.
fn run_through_gap(u: &Unplug, n: u64, notes_say: &[&str]) -> (Dir, PathBuf, Gap) {
    let d = Dir::new(u.tag);
    let (code, err, rd) = run(&d, u.setup, u.after, u.keys, n);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary_events(&rd, "raw"), n);
    let gap = one_gap(&rd, u.worker, u.simulator);
    for said in notes_say {
        assert!(gap.notes.contains(said), "{}", gap.notes);
    }
    (d, rd, gap)
}

/// One row per event in `rows`, events 0..n each once, split by the gap (see
/// [`split_by_gap`]).
fn every_event_once_around(rows: &[(u64, f64, i64, f64)], gap: &Gap, n: u64) {
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    split_by_gap(rows, gap, n);
}

#[test]
fn unplugged_hantek_comes_back_cold_gets_its_firmware_and_the_run_goes_on() {
    let hantek = Unplug {
        tag: "hantek",
        setup: "hantek6022.yaml",
        after: "      sim_amplitude: 1.0\n",
        keys: "      sim_unplug_at: 0.5\n      sim_unplug_for: 0.4\n",
        worker: "scope",
        simulator: "the simulated Hantek 6022",
    };
    let n = 300;
    // Opened at address 5; replugged cold at 6; after the firmware upload it re-enumerated
    // at 7 with the running firmware's id.
    let (_d, rd, gap) = run_through_gap(
        &hantek,
        n,
        &[
            "device.port = usb:001:007\n",
            "device.usb_id = 04b5:6022\n",
            "hantek6022.reconnects = 1\n",
        ],
    );
    // One pulse per event, before and after the gap: every event 0..n, each triggered with
    // its crossing 100 samples (100 µs) in. A torn event would hold no pulse, two, or one
    // elsewhere.
    let rows = pulses(&rd);
    for r in &rows {
        assert!((99e-6..101e-6).contains(&r.3), "{r:?}");
    }
    every_event_once_around(&rows, &gap, n);
}

#[test]
fn unplugged_picoscope_answers_not_found_then_comes_back_and_the_run_goes_on() {
    let picoscope = Unplug {
        tag: "picoscope",
        setup: "picoscope_muon.yaml",
        after: "      trigger_direction: falling\n",
        keys: "      sim_unplug_at: 0.75\n      sim_unplug_for: 0.4\n",
        worker: "scope",
        simulator: "the fake PicoScope",
    };
    let n = 600;
    let (_d, rd, gap) = run_through_gap(
        &picoscope,
        n,
        &["PICO_NOT_RESPONDING", "picoscope.reconnects = 1\n"],
    );
    // 200 captures/s in runs of 100: the unplug kills the second run in flight; a rapid
    // block run is handed out whole or not at all.
    assert_eq!(gap.events_before % 100, 0, "{}", gap.notes);
    // Every capture triggered on A with the crossing 100 samples (800 ns) in.
    let on_a: Vec<_> = pulses(&rd).into_iter().filter(|r| r.2 == 0).collect();
    for r in &on_a {
        assert!((7.5e-7..8.5e-7).contains(&r.3), "{r:?}");
    }
    every_event_once_around(&on_a, &gap, n);
}

#[test]
fn unplugged_drs4_is_power_cycled_found_again_and_the_run_goes_on() {
    let drs4 = Unplug {
        tag: "drs4",
        setup: "drs4_sipm.yaml",
        after: "      trigger_edge: falling\n",
        keys: "      sim_unplug_at: 0.3\n      sim_unplug_for: 0.3\n",
        worker: "digitizer",
        simulator: "the simulated DRS4 board",
    };
    let n = 1500;
    let (_d, rd, gap) = run_through_gap(
        &drs4,
        n,
        &["drs4.reconnects = 1\n", "device.serial = 2989\n"],
    );
    // Every event holds the CH1 pulse it triggered on; one row per event for the split.
    let mut rows = pulses(&rd);
    rows.dedup_by_key(|r| r.0);
    every_event_once_around(&rows, &gap, n);
}

#[test]
fn unplugged_hantek_with_reconnect_off_stops_the_run_with_the_disconnect() {
    let d = Dir::new("hantek-noreconnect");
    let (code, err, _) = run(
        &d,
        "hantek6022.yaml",
        "      sim_amplitude: 1.0\n",
        "      sim_unplug_at: 0.3\n      sim_unplug_for: 0.2\n      reconnect: false\n",
        100_000,
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("disconnected"), "{err}");
    assert!(
        err.contains("device vanished while streaming samples"),
        "{err}"
    );
}

#[test]
fn unplug_keys_are_checked_like_the_serial_ones() {
    let d = Dir::new("bad-keys");
    for (name, after, keys, problem) in [
        (
            "picoscope_muon.yaml",
            "      trigger_direction: falling\n",
            "      sim_unplug_at: -1\n",
            "must be 0 … 86400 (s)",
        ),
        (
            "drs4_sipm.yaml",
            "      trigger_edge: falling\n",
            "      sim_unplug_at: 1\n      sim_unplug_for: 4000\n",
            "must be 0 … 3600 (s)",
        ),
    ] {
        let (code, err, _) = run(&d, name, after, keys, 3);
        assert!(code == 1 || code == 2, "{name}: exit {code}: {err}");
        assert!(
            err.contains("sim_unplug_") && err.contains(problem),
            "{name}: {err}"
        );
    }
}
