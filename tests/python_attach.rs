//! The `daq_engine` Python package (python/daq_engine) against a real run of the binary: a
//! script attaches to the run directory, reads the buffers, takes the latest event several
//! times, reads the statistics, pauses, resumes and stops the run — and the run ends
//! cleanly with its books balanced, so looking and steering took nothing from it.
//!
//! The package is built with maturin and installed into a venv by
//! scripts/python_package.sh, once per test binary: `DAQ_PYATTACH_VENV` names a venv where
//! scripts/test.sh already did that; without it this test runs the script itself (into
//! target/pyattach; incremental after the first time).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

mod runs;
use runs::{books_balance, engine_in, finish_within, succeeded, Dir};

fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = match std::env::var_os("DAQ_PYATTACH_VENV") {
            Some(v) => PathBuf::from(v),
            None => {
                let venv = root.join("target/pyattach");
                succeeded(
                    Command::new(root.join("scripts/python_package.sh"))
                        .arg(&venv)
                        .output()
                        .unwrap(),
                    "building the Python package failed:\n",
                );
                venv
            }
        };
        venv.join("bin/python")
    })
}

/// Runs `script` with the venv's Python and `args`; returns its exit code and output.
fn py(dir: &Dir, script: &str, args: &[&str]) -> (i32, String) {
    let path = dir.write("attach_test.py", script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Starts the binary on `setup` (in `dir`); returns it and its run directory, once that
/// has its plan.json (written before any worker starts; looked for every 5 ms, for a minute).
fn start(dir: &Dir, setup: &Path) -> (std::process::Child, PathBuf) {
    // The package first: built here (minutes on a busy machine after a change to it), it
    // took longer than the run's 120 s and the script found the run ended.
    python();
    let child = engine_in(&dir.0, &[setup.as_os_str(), "--quiet".as_ref()])
        .spawn()
        .unwrap();
    let runs = dir.0.join("runs");
    for _ in 0..12_000 {
        if let Some(d) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut r| r.next())
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("plan.json").exists())
        {
            return (child, d);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, out) = finish_within(child, Duration::from_secs(60));
    panic!("the run made no run directory with a plan.json: {out}");
}

/// A paced simulated detector (200 events/s) → a copy filter → a drain; the run would go on
/// for two minutes unless stopped.
const SETUP: &str = "\
target_directory: runs
options: {max_seconds: 120, stats_interval: 0.1}
Buffers:
  raw: {slot_count: 32, data_length: 256, data_dtype: {chA: float32, chB: int16}}
  kept: {slot_count: 16, data_length: 256, data_dtype: {chA: float32, chB: int16}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {rate: 200, realtime: true, pretrigger_samples: 20, seed: 7}
  copy: {function: misc.copy, sources: [raw], sinks: [kept]}
  out: {function: export.drain, sources: [kept]}
";

/// What the script does to the live run; every check is an assert, so a failure exits
/// non-zero with the line.
const SCRIPT: &str = r#"
import sys, time
import numpy as np
import daq_engine

def until(what, limit=30.0, poll=0.02):
    t = time.monotonic()
    while time.monotonic() - t < limit:
        got = what()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"not within {limit} s: {what.__doc__ or what}")

def newest():
    "an event in raw"
    return run.latest("raw")

run = daq_engine.attach(sys.argv[1])
assert list(run.buffers) == ["raw", "kept"], run.buffers
raw = run.buffers["raw"]
assert raw.dtype == np.dtype([("chA", "<f4"), ("chB", "<i2")]), raw.dtype
assert (raw.data_length, raw.slot_count, raw.policy) == (256, 32, "block"), raw
assert raw.writer == "digitizer" and raw.readers == ["copy"], raw
assert "live" in repr(run) and not run.ended

# The latest event, several times: a copy of the right shape, counters going up.
counters = []
for _ in range(5):
    ev = until(lambda: run.latest("raw", new_only=True))
    assert ev.data.dtype == raw.dtype and ev.data.shape == (256,), ev.data
    assert ev.data.flags.writeable  # a copy of its own, not a view of the ring
    assert ev.metadata.dtype == daq_engine.METADATA_DTYPE
    assert ev.metadata["timestamp"][0] > 1e9, ev.metadata
    counters.append(int(ev.metadata["counter"][0]))
assert counters == sorted(set(counters)), counters
# The simulated pulses are in the samples (not a zeroed buffer).
assert np.abs(ev.data["chA"]).max() > 0, ev.data["chA"][:10]
kept = until(lambda: run.latest("kept"))
assert kept.data.dtype == run.buffers["kept"].dtype

# Statistics: the last stats.jsonl line.
s = until(lambda: (run.stats() or {}).get("buffers", {}).get("raw", {}).get("events_in"))
assert s > 0, s
assert run.stats()["paused"] is False

def quiet():
    "the newest counter unchanged for 0.5 s"
    a = newest().metadata["counter"][0]
    time.sleep(0.5)
    return newest().metadata["counter"][0] == a

# Pause: nothing more is published.
run.pause()
until(lambda: run.stats()["paused"] is True)
until(quiet)
c_paused = int(newest().metadata["counter"][0])
n_paused = run.stats()["buffers"]["raw"]["events_in"]
time.sleep(1.0)
assert int(newest().metadata["counter"][0]) == c_paused
assert run.stats()["buffers"]["raw"]["events_in"] == n_paused, (n_paused, run.stats())
run.latest("raw", new_only=True)  # the last event before the pause, if not yet taken
assert run.latest("raw", new_only=True) is None

# Resume: events flow again.
run.resume()
until(lambda: run.stats()["paused"] is False)
until(lambda: int(newest().metadata["counter"][0]) > c_paused)

# Stop: the run drains and ends.
run.stop()
summary = run.wait(timeout=60)
assert run.ended and summary["exit_code"] == 0, summary
assert summary["events"]["raw"] > n_paused, summary
try:
    run.pause(timeout=2)
except RuntimeError as e:
    assert "ended" in str(e), e
else:
    raise AssertionError("pausing an ended run did not raise")
print("events", summary["events"]["raw"])
"#;

#[test]
fn a_script_attaches_looks_pauses_resumes_and_stops_a_live_run() {
    let dir = Dir::new("pyattach");
    let setup = dir.write("attach.yaml", SETUP);
    let (child, run_dir) = start(&dir, &setup);
    let (code, out) = py(&dir, SCRIPT, &[run_dir.to_str().unwrap()]);
    let (run_code, run_out) = finish_within(child, Duration::from_secs(120));
    assert_eq!(
        code, 0,
        "the script failed:\n{out}\nthe run said:\n{run_out}"
    );
    assert_eq!(run_code, 0, "{run_out}");
    // Looking and steering took nothing: every event reached every reader.
    let summary = books_balance(&run_dir);
    assert_eq!(summary["lost"]["raw"], 0, "{summary}");
    let log = std::fs::read_to_string(run_dir.join("daq-engine.log")).unwrap();
    for action in ["pause", "resume", "stop"] {
        assert!(
            log.contains(&format!(".{action} from")),
            "the supervisor logged no {action} request: {log}"
        );
    }
    let events = summary["events"]["raw"].as_u64().unwrap();
    assert!(out.contains(&format!("events {events}")), "{out}");
}

#[test]
fn an_ended_run_still_shows_its_buffers_and_stats_and_says_why_latest_cannot() {
    let dir = Dir::new("pyattach-ended");
    let setup = dir.write(
        "short.yaml",
        &SETUP.replace("max_seconds: 120", "max_events: 50"),
    );
    let (child, run_dir) = start(&dir, &setup);
    let (code, out) = finish_within(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    let script = r#"
import sys, daq_engine
run = daq_engine.attach(sys.argv[1])
assert run.ended and "ended" in repr(run)
assert run.summary()["events"]["raw"] == 50, run.summary()
assert run.stats()["buffers"]["raw"]["events_in"] == 50, run.stats()
assert run.buffers["kept"].slot_count == 16
for call, exc, words in [
    (lambda: run.latest("raw"), RuntimeError, "has ended"),
    (lambda: run.latest("nope"), KeyError, "raw, kept"),
    (lambda: run.stop(), RuntimeError, "has ended"),
    (lambda: daq_engine.attach(sys.argv[2]), ValueError, "run directory"),
]:
    try:
        call()
    except exc as e:
        assert words in str(e), (words, str(e))
    else:
        raise AssertionError(f"no {exc.__name__} ({words})")
print("ok")
"#;
    let (code, out) = py(
        &dir,
        script,
        &[run_dir.to_str().unwrap(), dir.0.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");
}

/// The last statistics line of a run, once there is one.
fn last_stats(run_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("stats.jsonl")).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Waits (at most a minute) until `what` holds of the run's last statistics line.
fn until_stats(run_dir: &Path, what: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..1200 {
        if let Some(s) = last_stats(run_dir).filter(|s| what(s)) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not within a minute; last stats: {:?}", last_stats(run_dir));
}

/// A pause asked for before the importer has its signal handlers (the request is there
/// when the supervisor first looks, right after starting the workers) waits for the
/// importer to be ready instead of killing it; resume and stop then end the run cleanly.
#[test]
fn a_pause_asked_for_while_the_workers_start_does_not_kill_them() {
    use daq_engine::engine::requests;
    use daq_engine::engine::Control;
    let dir = Dir::new("pyattach-early");
    let setup = dir.write("early.yaml", SETUP);
    let (child, run_dir) = start(&dir, &setup);
    let asked = requests::request(&run_dir, Control::Pause, Duration::from_secs(60));
    let paused = asked
        .is_ok()
        .then(|| until_stats(&run_dir, |s| s["paused"] == true));
    let resumed = requests::request(&run_dir, Control::Resume, Duration::from_secs(60));
    if resumed.is_ok() {
        until_stats(&run_dir, |s| {
            s["buffers"]["raw"]["events_in"].as_u64().unwrap_or(0) > 0
        });
    }
    let stopped = requests::request(&run_dir, Control::Stop, Duration::from_secs(60));
    let (code, out) = finish_within(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    asked.unwrap();
    assert!(paused.is_some());
    resumed.unwrap();
    stopped.unwrap();
    let summary = books_balance(&run_dir);
    assert!(summary["events"]["raw"].as_u64().unwrap() > 0, "{summary}");
}
