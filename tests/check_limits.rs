//! Numbers past what a key can mean are refused by `check` (exit 2, the file, line and
//! column of the value, the worker and the key), never taken on to panic or to throttle the
//! run; and a command-line time past a year is refused before a run directory is made.

mod runs;
use runs::{check, engine_in, shipped_setup, stdout_and_stderr, value_at, Dir};

/// `daq-engine check` of the shipped demo with `from` replaced by `to`: its exit code, what
/// it said, and the edited setup's text.
fn check_demo_with(dir: &Dir, from: &str, to: &str) -> (Option<i32>, String, String) {
    let demo = std::fs::read_to_string(shipped_setup("demo.yaml")).unwrap();
    assert!(demo.contains(from), "{from}");
    let text = demo.replacen(from, to, 1);
    let setup = dir.write("edit.yaml", &text);
    let out = check(&[], &setup);
    (out.status.code(), stdout_and_stderr(&out), text)
}

/// Asserts that `check` refuses the demo with `from` replaced by `to` at the value of `key`
/// of `worker`, saying `why`.
#[track_caller]
fn refused(dir: &Dir, from: &str, to: &str, worker: &str, key: &str, why: &str) {
    let (code, said, text) = check_demo_with(dir, from, to);
    let (line, column) = value_at(&text, key);
    let at = format!("edit.yaml:{line}:{column}: error: worker '{worker}', config key '{key}'");
    assert_eq!(code, Some(2), "{to}: {said}");
    assert!(said.contains(&at) && said.contains(why), "{to}: {said}");
}

/// Asserts that `check` takes the demo with `from` replaced by `to`.
#[track_caller]
fn accepted(dir: &Dir, from: &str, to: &str) {
    let (code, said, _) = check_demo_with(dir, from, to);
    assert_eq!(code, Some(0), "{to}: {said}");
}

/// `simulate.pulses` refuses a sample interval below a picosecond or above a year, time
/// constants above a year and a rate below one event a year. Before, `check` panicked on
/// `sample_interval: 1e-300` and `decay_time: 1e300` (a pulse shape of more samples than a
/// machine word counts), and passed `rate: 1e-20`, whose worker then panicked in the run
/// adding its first arrival time to the clock.
#[test]
fn simulate_pulses_times_and_rates_past_their_bounds_are_refused_by_check() {
    let dir = Dir::new("limits-simulate");
    let w = "digitizer";
    let si = "sample_interval: 4.0e-9";
    let shortest = "from 1e-12 s (a picosecond";
    refused(
        &dir,
        si,
        "sample_interval: 1.0e-300",
        w,
        "sample_interval",
        shortest,
    );
    refused(
        &dir,
        si,
        "sample_interval: 1.0e-13",
        w,
        "sample_interval",
        shortest,
    );
    refused(
        &dir,
        si,
        "sample_interval: 1.0e300",
        w,
        "sample_interval",
        "a year",
    );
    accepted(&dir, si, "sample_interval: 1.0e-12");
    let after = "decay_fraction: 0.1\n";
    for key in ["decay_time", "lifetime"] {
        let long = format!("{after}      {key}: 1.0e300\n");
        refused(&dir, after, &long, w, key, "a year");
        accepted(&dir, after, &format!("{after}      {key}: 31536000\n"));
    }
    let both = format!("{after}      decay_time: 1.0e300\n      rise_time: 1.0e300\n");
    refused(&dir, after, &both, w, "rise_time", "a year");
    let rate = "rate: 100 ";
    let least = "at least one event a year";
    refused(&dir, rate, "rate: 1.0e-20 ", w, "rate", least);
    refused(&dir, rate, "rate: 3.1e-8 ", w, "rate", least);
    accepted(&dir, rate, "rate: 3.2e-8 ");
}

/// `export.hdf5` refuses `rotate_mb` below 1 and `rotate_minutes` below 0.1. Before, both
/// took 1e-20: a file for every event, the writer throttled by opening and closing them.
#[test]
fn hdf5_rotation_below_its_least_is_refused_by_check() {
    let dir = Dir::new("limits-rotate");
    let config = "config: {compression: deflate, level: 1, flush_interval: 1.0}";
    let w = "waveforms";
    for (key, small, least, why) in [
        ("rotate_mb", "1.0e-20", "1", "at least 1 MB"),
        ("rotate_mb", "0.99", "1", "at least 1 MB"),
        ("rotate_minutes", "1.0e-20", "0.1", "at least 0.1 minutes"),
        ("rotate_minutes", "0.09", "0.1", "at least 0.1 minutes"),
    ] {
        refused(
            &dir,
            config,
            &format!("config:\n      {key}: {small}"),
            w,
            key,
            why,
        );
        accepted(&dir, config, &format!("config:\n      {key}: {least}"));
    }
}

/// `--progress-every` longer than a year is refused with the command line's usage error
/// (exit 2) before anything is made. Before, 1e20 passed: the run directory was made and the
/// engine panicked turning it into a Duration (exit 101), and the next run "recovered" that
/// directory and alerted `run_killed`.
#[test]
fn progress_every_past_a_year_is_refused_before_a_run_directory_is_made() {
    let dir = Dir::new("limits-progress");
    let demo = shipped_setup("demo.yaml");
    for every in ["1e20", "31536001", "inf"] {
        let out = engine_in(
            &dir.0,
            &[
                demo.as_os_str(),
                "--no-tui".as_ref(),
                "--max-events".as_ref(),
                "1".as_ref(),
                "--target-directory".as_ref(),
                dir.0.join("runs").as_os_str(),
                "--progress-every".as_ref(),
                every.as_ref(),
            ],
        )
        .output()
        .unwrap();
        let said = stdout_and_stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{every}: {said}");
        assert!(
            said.contains("--progress-every") && said.contains("a year"),
            "{said}"
        );
        assert!(
            !dir.0.join("runs").exists(),
            "{every}: a run directory was made: {said}"
        );
    }
}
