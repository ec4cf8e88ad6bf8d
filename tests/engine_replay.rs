//! `replay.hdf5` in whole runs of the real binary (issue 14, Replay): a recorded run's
//! waveforms, written in rotated parts, are read back through the same analysis chain, and
//! the histograms come out bit for bit; the events keep their recorded counters and
//! timestamps; `check` refuses files that do not fit the sink.

mod runs;

use runs::{engine_in, finish, h5_files, Dir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BUFFER: &str = "  raw:
    slot_count: 64
    data_length: 256
    data_dtype: {chA: float32, chB: float32}
  pulses:
    slot_count: 256
    data_length: 1
    data_dtype: {channel: int16, time: float64, height: float32, area: float32, width: float32}
";

/// The analysis both runs share: pulses found in `raw`, their heights and widths histogrammed.
const CHAIN: &str = "  pulse_finder:
    function: process.pulses
    sources: [raw]
    sinks: [pulses]
    config: {threshold: 0.05, sample_interval: 4.0e-9}
  spectra:
    function: export.histogram
    sources: [pulses]
    config:
      bins:
        height: [0.0, 1.5, 150]
        width: [0.0, 2.0e-7, 100]
";

fn run(dir: &Dir, name: &str, text: &str) -> PathBuf {
    let setup = dir.write(name, text);
    let (code, err) = finish(
        engine_in(&dir.0, &[setup.as_os_str()])
            .args(["--quiet", "--no-tui"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.0.join(name.trim_end_matches(".yaml")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

/// A small buffer `raw`: 16 slots of `length` records of `dtype`.
fn small_raw(dtype: &str, length: u32) -> String {
    format!(
        "  raw:
    slot_count: 16
    data_length: {length}
    data_dtype: {dtype}
"
    )
}

/// Runs `simulate.pulses` with `digitizer` (its config's keys) into `buffers` (their lines,
/// one of them `raw`), recorded by `export.hdf5` under `recorded`; `rest` follows: more lines
/// of the recorder (its config) and further workers. The run directory.
fn record(dir: &Dir, buffers: &str, digitizer: &str, rest: &str) -> PathBuf {
    run(
        dir,
        "recorded.yaml",
        &format!(
            "target_directory: recorded
Buffers:
{buffers}Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{{digitizer}}}
  waveforms:
    function: export.hdf5
    sources: [raw]
{rest}"
        ),
    )
}

/// [`record`] into a [`small_raw`] of 64 float32 samples.
fn record_small(dir: &Dir, digitizer: &str) -> PathBuf {
    record(dir, &small_raw("{chA: float32}", 64), digitizer, "")
}

/// Replays with `replay.hdf5` (its config `player`) into `buffers` (their lines, one of them
/// `raw`) and records `raw` again with `export.hdf5` under `replayed`; `rest` follows: more
/// lines of the recorder (its config) and further workers. The run directory.
fn replay(dir: &Dir, buffers: &str, player: &str, rest: &str) -> PathBuf {
    run(dir, "replayed.yaml", &replay_setup(buffers, player, rest))
}

/// The setup [`replay`] runs.
fn replay_setup(buffers: &str, player: &str, rest: &str) -> String {
    format!(
        "target_directory: replayed
Buffers:
{buffers}Workers:
  player:
    function: replay.hdf5
    sinks: [raw]
    config: {{{player}}}
  waveforms:
    function: export.hdf5
    sources: [raw]
{rest}"
    )
}

fn histograms(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("histogram_"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// (counter, timestamp) of every event of `raw` in the run's files, in counter order.
fn recorded(run: &Path) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    for p in h5_files(run) {
        // The histogram exporter's file has no `raw`.
        if let Ok(b) = daq_engine::export::read_buffer(&p, "raw") {
            out.extend(b.metadata.iter().map(|m| (m.counter, m.timestamp)));
        }
    }
    out.sort_by_key(|x| x.0);
    out
}

#[test]
fn a_replayed_run_gives_the_same_histograms_bit_for_bit() {
    let dir = Dir::new("replay");
    // Recorded: 3000 simulated waveforms (2 KiB each, 6 MB), written in parts of 1 MB.
    let first = record(
        &dir,
        BUFFER,
        "n_events: 3000, sample_interval: 4.0e-9, pretrigger_samples: 100, noise: 0.003, seed: 9",
        &format!("    config: {{compression: none, rotate_mb: 1, flush_interval: 0.2}}\n{CHAIN}"),
    );
    let parts = h5_files(&first).len();
    assert!(
        parts >= 4,
        "{parts} files: the recording should come in parts"
    );
    // Replayed from the run directory (every part, in the order written), with the same
    // chain, and written again.
    let second = replay(
        &dir,
        BUFFER,
        &format!("files: [{}]", first.display()),
        &format!("    config: {{compression: none}}\n{CHAIN}"),
    );
    let (a, b) = (histograms(&first), histograms(&second));
    assert_eq!(
        a.len(),
        2,
        "{:?}",
        a.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let text = String::from_utf8_lossy(x);
        let entries: u64 = text
            .split("# entries: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(entries > 1000, "{name}: {entries} entries\n{text}");
        assert!(x == y, "{name} differs after the replay");
    }
    // Every event once, with its recorded counter and timestamp.
    let (r1, r2) = (recorded(&first), recorded(&second));
    assert_eq!(r1.len(), 3000);
    assert_eq!(r1, r2);
    let summary = runs::summary(&second);
    assert_eq!(summary["events"]["raw"], 3000, "{summary}");
}

/// Replays the small buffer of run `first` at the recorded pace, four times faster.
fn replay_paced(dir: &Dir, first: &Path) -> PathBuf {
    replay(
        dir,
        &small_raw("{chA: float32}", 64),
        &format!("files: [{}/raw.h5], pace: true, speed: 4", first.display()),
        "",
    )
}

#[test]
fn paced_replay_delivers_every_event_in_order() {
    let dir = Dir::new("replay-paced");
    let first = record_small(
        &dir,
        "n_events: 200, rate: 200, realtime: true, pretrigger_samples: 20, seed: 2",
    );
    let second = replay_paced(&dir, &first);
    assert_eq!(recorded(&first), recorded(&second));
}

/// A paced replay of a file with damaged times (an infinite one, one 10^300 s away) waits
/// for none of them and delivers every event; before, the worker panicked converting the
/// wait to a Duration and the run failed.
#[test]
fn paced_replay_of_damaged_times_delivers_every_event() {
    let dir = Dir::new("replay-damaged");
    let first = record_small(&dir, "n_events: 20, pretrigger_samples: 20, seed: 2");
    runs::run_python(
        &runs::python(),
        r#"
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    m = f["raw"]["metadata"]
    for row, t in ((7, float("inf")), (12, 1e300)):
        r = m[row]
        r["timestamp"] = t
        m[row] = r
"#,
        &[first.join("raw.h5").as_os_str()],
        "damaging two recorded times with h5py: ",
    );
    let second = replay_paced(&dir, &first);
    let times = recorded(&second);
    assert_eq!(recorded(&first), times);
    assert_eq!(times.len(), 20);
    assert!(
        times[7].1.is_infinite() && times[12].1 == 1e300,
        "{times:?}"
    );
}

/// A run paused in the middle of a replay loses none of the files' events: they wait in
/// the files until the resume. Before, the engine went on taking them while paused and
/// discarded them, as it does a live device's (what a pause means for a detector, not for
/// a recording).
#[test]
fn a_paused_replay_keeps_every_event_for_after_the_resume() {
    let dir = Dir::new("replay-paused");
    let (first, child, second) = slow_replay(&dir, "");
    runs::pause_a_while(&second, || {});
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    let (before, after) = (recorded(&first), recorded(&second));
    assert_eq!(
        before.len(),
        after.len(),
        "events recorded, and replayed with a pause in the middle"
    );
    assert_eq!(before, after);
}

/// A replay started again after a failure (here SIGKILL; as the stall watch does to one
/// stuck on a hung network disk) read its files from the start once more: the events it had
/// replayed came twice, under the same counters. It goes on after them now.
#[test]
fn a_restarted_replay_goes_on_after_what_it_replayed() {
    let dir = Dir::new("replay-restarted");
    let (first, child, second) = slow_replay(&dir, "    restart: on-failure\n");
    let player = runs::the_process(&second, "player 0");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(player as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("starting it again"), "{err}");
    let (before, after) = (recorded(&first), recorded(&second));
    assert_eq!(before.len(), after.len(), "events recorded and replayed");
    assert_eq!(before, after);
}

/// Records 100 events in one second and starts their replay at a fifth of that speed (20
/// events a second, for 5 s), `player` lines added to the player's: the recording, the
/// replaying engine, and its run directory once events arrive.
fn slow_replay(dir: &Dir, player: &str) -> (PathBuf, std::process::Child, PathBuf) {
    let first = record_small(
        dir,
        "n_events: 100, rate: 100, realtime: true, pretrigger_samples: 20, seed: 3",
    );
    let text = replay_setup(
        &small_raw("{chA: float32}", 64),
        &format!(
            "files: [{}/raw.h5], pace: true, speed: 0.2",
            first.display()
        ),
        "",
    )
    .replace(
        "    function: replay.hdf5\n",
        &format!("    function: replay.hdf5\n{player}"),
    );
    let setup = dir.write("replayed.yaml", &text);
    let child = engine_in(&dir.0, &[setup.as_os_str()])
        .args(["--quiet", "--no-tui"])
        .spawn()
        .unwrap();
    let target = dir.0.join("replayed");
    runs::wait_until("the replay under way", Duration::from_secs(120), || {
        target.is_dir()
            && runs::run_dirs_in(&target)
                .first()
                .is_some_and(|r| runs::last_stats(r, "raw").1 > 0)
    });
    let second = runs::run_dirs_in(&target).pop().unwrap();
    (first, child, second)
}

/// A setup replaying `files` (a list's items) into a [`small_raw`] of `length` records of
/// `dtype`, drained.
fn drained_replay(dtype: &str, length: u32, files: String) -> String {
    format!(
        "target_directory: bad
Buffers:
{}Workers:
  player:
    function: replay.hdf5
    sinks: [raw]
    config: {{files: [{files}]}}
  sink:
    function: export.drain
    sources: [raw]
",
        small_raw(dtype, length)
    )
}

#[test]
fn check_refuses_files_that_do_not_fit_the_sink() {
    let dir = Dir::new("replay-check");
    let first = record_small(&dir, "n_events: 20, pretrigger_samples: 20, seed: 2");
    let check = |text: String| {
        let out = runs::check(&[], &dir.write("bad.yaml", &text));
        (out.status.code(), runs::stderr(&out))
    };
    let setup = drained_replay;
    let file = first.join("raw.h5").display().to_string();
    let (code, err) = check(setup("{chA: float64}", 64, file.clone()));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&file) && err.contains("files"), "{err}");
    let (code, err) = check(setup("{chA: float32}", 32, file.clone()));
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = check(setup("{chA: float32}", 64, "no/such.h5".into()));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no/such.h5"), "{err}");
    let (code, err) = check(setup("{chA: float32}", 64, dir.0.display().to_string()));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no .h5 file there"), "{err}");
    // Two processes each replayed every file: every event twice (it passed before).
    let two = setup("{chA: float32}", 64, file.clone()).replace(
        "    function: replay.hdf5\n",
        "    function: replay.hdf5\n    number_of_processes: 2\n",
    );
    let (code, err) = check(two);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "replay.hdf5 in 2 processes would open its files 2 times; set number_of_processes: 1"
        ),
        "{err}"
    );
    let (code, err) = check(setup("{chA: float32}", 64, file));
    assert_eq!(code, Some(0), "{err}");
    assert!(!dir.0.join("bad").exists(), "check made a run directory");
}

/// A run directory holding a file cut short (a copy that stopped, a disk that failed) is
/// refused by `check`, which names the file and says why, as for the file named directly:
/// before, the directory's listing passed over every file that did not open, so `check`
/// said OK and the replay silently left that file's events out (or, with the cut file
/// alone there, said no file held the buffer). A 0-byte file (a writer that could not
/// write its file on a full disk) is refused too, naming it: it holds no events, but
/// whether events are missing is the user's to judge, not the replay's to hide.
#[test]
fn check_refuses_a_directory_with_a_damaged_file_naming_it() {
    let dir = Dir::new("replay-damaged-dir");
    let first = record_small(&dir, "n_events: 20, pretrigger_samples: 20, seed: 2");
    let whole = std::fs::read(first.join("raw.h5")).unwrap();
    let parts = dir.0.join("parts");
    std::fs::create_dir(&parts).unwrap();
    let setup = drained_replay("{chA: float32}", 64, format!("{}/", parts.display()));
    let check = || {
        let out = runs::check(&[], &dir.write("dir.yaml", &setup));
        (out.status.code(), runs::stderr(&out))
    };
    // The cut file alone: named, with why, not "no .h5 file there holds a buffer".
    std::fs::write(parts.join("raw_0002.h5"), &whole[..whole.len() / 2]).unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("raw_0002.h5"), "{err}");
    assert!(!err.contains("no .h5 file there"), "{err}");
    // Beside a whole file: still refused, naming the cut one.
    std::fs::write(parts.join("raw_0001.h5"), &whole).unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("raw_0002.h5"), "{err}");
    // An empty file beside a whole one: refused, named, said to be empty.
    std::fs::remove_file(parts.join("raw_0002.h5")).unwrap();
    std::fs::write(parts.join("raw_0003.h5"), b"").unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("raw_0003.h5") && err.contains("0 bytes"),
        "{err}"
    );
    // The whole file alone: OK.
    std::fs::remove_file(parts.join("raw_0003.h5")).unwrap();
    let (code, err) = check();
    assert_eq!(code, Some(0), "{err}");
}
