//! The terminal dashboard in a real terminal: tmux runs this test binary's `tui_host` (a
//! real run, worker processes from the real binary, supervised in-process with the
//! dashboard as its watcher); the test reads the screen with capture-pane, presses `p` and
//! sees the run paused, presses `s` and sees the run end with exit 0 and the terminal given
//! back (the main screen with the test harness's result line, not the dashboard).

use daq_engine::monitor::Tui;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod monitor_common;
mod runs;

/// The demo pipeline, smaller ([`monitor_common::demo_setup`]): raw waveforms of 512
/// samples, stats and monitors every 0.25 s, at most a minute. With `chatty` (a venv with
/// numpy), a Python worker that prints every pulse, [`CHATTY`], reads the pulses too.
fn setup(chatty: Option<&str>) -> String {
    let options = match chatty {
        Some(venv) => format!("{{stats_interval: 0.25, max_seconds: 60, python: '{venv}'}}"),
        None => "{stats_interval: 0.25, max_seconds: 60}".into(),
    };
    let text = monitor_common::demo_setup(
        &options,
        "    data_length: 512\n    data_dtype: {chA: float32, chB: float32}\n",
        (300, 7),
        0.25,
        "",
        ", sample_interval: 4.0e-9",
    );
    match chatty {
        Some(_) => format!(
            "{text}  chatty:\n    file: chatty.py\n    function: chatty\n    sources: [pulses]\n"
        ),
        None => text,
    }
}

/// A worker that prints a line for every pulse, as mimoCoRB2's workers print as they please.
const CHATTY: &str = r#"
import mimocorb2 as mi2

def chatty(buffer_io):
    exporter = mi2.Exporter(buffer_io)
    n = 0
    for data, metadata in exporter:
        n += 1
        print("chatty saw pulse", n)
"#;

/// The run with the dashboard, inside tmux. Does nothing unless started by `tui_in_tmux`.
#[test]
#[ignore = "started inside tmux by tui_in_tmux"]
fn tui_host() {
    let Some(dir) = std::env::var_os("DAQ_MONITOR_TUI_DIR").map(PathBuf::from) else {
        return;
    };
    let setup_path = dir.join("setup.yaml");
    let chatty = std::env::var("DAQ_MONITOR_TUI_CHATTY").ok();
    if chatty.is_some() {
        std::fs::write(dir.join("chatty.py"), CHATTY).unwrap();
    }
    std::fs::write(&setup_path, setup(chatty.as_deref())).unwrap();
    let (sup, run_dir) = monitor_common::prepare(&setup_path, &dir.join("runs"));
    let mut tui = Tui::new(&run_dir).unwrap();
    let summary = sup.run_watched(Some(&mut tui)).unwrap();
    drop(tui);
    // Before `exit`, which the tests wait for.
    let cause = serde_json::to_string(&summary.stopped_by).unwrap();
    std::fs::write(dir.join("stopped_by"), cause).unwrap();
    std::fs::write(dir.join("exit"), summary.exit_code.to_string()).unwrap();
    std::fs::write(dir.join("run_dir"), run_dir.to_string_lossy().as_bytes()).unwrap();
}

struct Tmux {
    socket: String,
    /// Where `tui_host` runs (removed last).
    dir: runs::Dir,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "run"])
    }
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The number in the `events in` column of `buffer`'s row.
fn events_in(screen: &str, buffer: &str) -> Option<u64> {
    let line = screen.lines().find(|l| {
        l.trim_start_matches(['│', ' '])
            .starts_with(&format!("{buffer} "))
    })?;
    line.trim_start_matches(['│', ' '])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts `tui_host` in a fresh tmux server; `None` (with the reason printed) without tmux.
fn start_host(tag: &str) -> Option<Tmux> {
    start_host_with(tag, "")
}

/// As [`start_host`], with more `NAME=value` words for `env`.
fn start_host_with(tag: &str, env: &str) -> Option<Tmux> {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return None;
    }
    let dir = runs::Dir::new(&format!("tui-{tag}"));
    let tmux = Tmux {
        socket: format!("daq-monitor-test-{tag}-{}", std::process::id()),
        dir,
    };
    let me = std::env::current_exe().unwrap();
    let cmd = format!(
        // As if under a service manager (INVOCATION_ID): a Ctrl-C at the dashboard is still
        // a person's.
        "env INVOCATION_ID=0123 {env} DAQ_MONITOR_TUI_DIR={} {} --ignored --exact tui_host \
         --nocapture --test-threads=1",
        tmux.dir.0.display(),
        me.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "run",
        "-x",
        "150",
        "-y",
        "48",
        &cmd,
    ]);
    tmux.run(&["set-option", "-t", "run", "remain-on-exit", "on"]);
    Some(tmux)
}

/// The exit code `tui_host` wrote, waiting up to 10 s.
fn exit_code(tmux: &Tmux) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(e) = std::fs::read_to_string(tmux.dir.0.join("exit")) {
            return e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the run did not end; screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run `tag` under the dashboard, ended with `tmux_command` once the dashboard shows
/// events and waited for until it exited 0: the host, the run directory and the run's log.
#[track_caller]
fn run_ended_by(tag: &str, tmux_command: &[&str]) -> Option<(Tmux, PathBuf, String)> {
    let tmux = start_host(tag)?;
    tmux.wait_for("the dashboard with events", |s| {
        s.contains("RUNNING") && events_in(s, "raw").is_some_and(|n| n > 0)
    });
    tmux.run(tmux_command);
    assert_eq!(exit_code(&tmux), "0");
    let run_dir = PathBuf::from(std::fs::read_to_string(tmux.dir.0.join("run_dir")).unwrap());
    let log = std::fs::read_to_string(run_dir.join("daq-engine.log")).unwrap();
    Some((tmux, run_dir, log))
}

#[test]
fn tui_in_tmux() {
    let Some(tmux) = start_host("keys") else {
        return;
    };
    let dir = tmux.dir.0.clone();
    // The dashboard: buffers and workers by name, with counts that grow.
    let s = tmux.wait_for("the dashboard with events", |s| {
        s.contains("RUNNING") && events_in(s, "raw").is_some_and(|n| n > 0)
    });
    for name in [
        "buffers",
        "raw",
        "triggered",
        "pulses",
        "digitizer",
        "pulse_finder",
        "spectra",
    ] {
        assert!(s.contains(name), "{name} not on screen:\n{s}");
    }
    assert!(
        s.contains("% of 60 s"),
        "no progress against max_seconds:\n{s}"
    );
    let first = events_in(&s, "raw").unwrap();
    tmux.wait_for("growing counts", |s| {
        events_in(s, "raw").is_some_and(|n| n > first)
    });
    tmux.wait_for("the oscilloscope and histogram", |s| {
        s.contains("oscilloscope scope: event") && s.contains("histogram spectra/height")
    });
    // The oscilloscope observes and takes no events: `-` in its events column (it said 0).
    let s = tmux.screen();
    let scope = s
        .lines()
        .map(|l| l.trim_start_matches(['│', ' ']))
        .find(|l| l.starts_with("scope "))
        .unwrap_or_else(|| panic!("no row of the worker scope:\n{s}"));
    assert_eq!(scope.split_whitespace().nth(3), Some("-"), "{s}");

    // p: paused, and the importer's buffer stops growing.
    tmux.run(&["send-keys", "-t", "run", "p"]);
    let s = tmux.wait_for("PAUSED", |s| s.contains("PAUSED"));
    let at_pause = events_in(&s, "raw").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let s = tmux.screen();
    let later = events_in(&s, "raw").unwrap();
    assert!(
        later <= at_pause + 5,
        "events kept coming while paused: {at_pause} → {later}\n{s}"
    );

    // r: running again.
    tmux.run(&["send-keys", "-t", "run", "r"]);
    tmux.wait_for("RUNNING again with new events", |s| {
        s.contains("RUNNING") && events_in(s, "raw").is_some_and(|n| n > later)
    });

    // s: the run drains and ends with exit 0; the terminal is back on the main screen.
    tmux.run(&["send-keys", "-t", "run", "s"]);
    let exit = exit_code(&tmux);
    assert_eq!(exit, "0");
    let s = tmux.wait_for("the test harness's result on the main screen", |s| {
        s.contains("test result: ok")
    });
    assert!(
        !s.contains("p pause  r resume"),
        "dashboard still shown:\n{s}"
    );
    // The supervisor's own message went to console.log, and was replayed afterwards.
    assert!(s.contains("stop requested from the monitor"), "{s}");
    let run_dir = PathBuf::from(std::fs::read_to_string(dir.join("run_dir")).unwrap());
    let console = std::fs::read_to_string(Path::new(&run_dir).join("console.log")).unwrap();
    assert!(
        console.contains("stop requested from the monitor"),
        "{console}"
    );
}

/// The terminal goes away (tmux kills the pane: SIGHUP): the run stops cleanly, exit 0.
#[test]
fn hangup_stops_the_run_cleanly() {
    let Some((tmux, run_dir, log)) = run_ended_by("hangup", &["kill-session", "-t", "run"]) else {
        return;
    };
    // SIGHUP, the failed read or the failed draw, whichever the dashboard noticed first (a
    // loaded machine drew a frame between the hang-up and the read: the draw failed first).
    assert!(
        log.contains("the terminal hung up: stopping the run")
            || log.contains("cannot read the terminal any more: stopping the run")
            || log.contains("cannot draw on the terminal any more: stopping the run"),
        "{log}"
    );
    let stats = std::fs::read_to_string(run_dir.join("stats.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    assert_eq!(last["buffers"]["raw"]["closed"], true);
    assert_eq!(
        last["buffers"]["raw"]["events_in"],
        last["buffers"]["raw"]["events_out"]["trigger"]
    );
    // Whichever was noticed first, the run says its terminal went away (not "a stop from
    // the dashboard").
    let cause = std::fs::read_to_string(tmux.dir.0.join("stopped_by")).unwrap();
    assert_eq!(cause, r#""hung_up""#);
}

/// Ctrl-C in the dashboard (raw mode: a key, not a signal) still drains the run: exit 0.
#[test]
fn ctrl_c_drains_as_without_the_dashboard() {
    let Some((tmux, _, log)) = run_ended_by("ctrlc", &["send-keys", "-t", "run", "C-c"]) else {
        return;
    };
    assert!(
        log.contains("stop requested: importers stop, buffers drain"),
        "{log}"
    );
    // A person's Ctrl-C, even under a service manager (`start_host` says it is one): the key
    // is passed on from this very process.
    let cause = std::fs::read_to_string(tmux.dir.0.join("stopped_by")).unwrap();
    assert_eq!(cause, r#""signal""#);
}

/// A worker printing every pulse under the dashboard: its prints go to console.log with its
/// messages (the latest few in the dashboard's message lines), not over the screen. Before,
/// its stdout was the terminal the dashboard draws on, and the prints ran across it.
#[test]
fn a_workers_prints_stay_off_the_dashboard() {
    let Some(venv) = std::env::var_os("DAQ_PYVENV") else {
        eprintln!("SKIPPED: DAQ_PYVENV names no venv with numpy (scripts/test.sh makes one)");
        return;
    };
    let env = format!("DAQ_MONITOR_TUI_CHATTY={}", venv.to_string_lossy());
    let Some(tmux) = start_host_with("chatty", &env) else {
        return;
    };
    let dir = tmux.dir.0.clone();
    tmux.wait_for("the dashboard with pulses", |s| {
        s.contains("RUNNING") && events_in(s, "pulses").is_some_and(|n| n > 200)
    });
    std::thread::sleep(Duration::from_millis(1000));
    let s = tmux.screen();
    let printed = s.lines().filter(|l| l.contains("chatty saw pulse")).count();
    assert!(
        printed <= 5,
        "{printed} lines of prints on the screen:\n{s}"
    );
    assert!(
        s.lines().next().is_some_and(|l| l.contains("daq-engine")),
        "{s}"
    );
    tmux.run(&["send-keys", "-t", "run", "s"]);
    assert_eq!(exit_code(&tmux), "0");
    let run_dir = PathBuf::from(std::fs::read_to_string(dir.join("run_dir")).unwrap());
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap();
    assert!(console.contains("chatty saw pulse 200\n"), "{console}");
}
