//! Python workers through the real binary: worker files written exactly as mimoCoRB2's users
//! write them (the 0.0.4 `buffer_io` style and the manual's `*mimo_args` style) run
//! unchanged in a venv with numpy, and every event is counted.
//!
//! The venv is `DAQ_PYVENV` (scripts/test.sh makes it) or `target/pyvenv`, made here from
//! /usr/bin/python3 when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

mod runs;
use runs::EXE;

fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let v = std::env::var_os("DAQ_PYVENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv"));
        let ok = |v: &Path| {
            Command::new(v.join("bin/python"))
                .args(["-c", "import numpy"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&v) {
            let made = Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&v)
                .status()
                .unwrap();
            assert!(made.success(), "making the venv {}", v.display());
            let pip = Command::new(v.join("bin/pip"))
                .args(["install", "-q", "numpy"])
                .status()
                .unwrap();
            assert!(pip.success(), "installing numpy into {}", v.display());
        }
        v
    })
}

struct Ran {
    code: i32,
    stderr: String,
    run_dir: PathBuf,
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python_workers/{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn daq(d: &Path, args: &[&str]) -> (i32, String) {
    daq_with(d, args, Some(venv()))
}

/// `daq-engine ARGS` in `d` with `VIRTUAL_ENV` set to `venv`, or unset.
fn daq_with(d: &Path, args: &[&str], venv: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(EXE);
    match venv {
        Some(v) => cmd.env("VIRTUAL_ENV", v),
        None => cmd.env_remove("VIRTUAL_ENV"),
    };
    let out = cmd.args(args).current_dir(d).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(d: &Path, setup: &str) -> Ran {
    let (code, stderr) = daq(d, &[setup, "--quiet"]);
    Ran {
        code,
        stderr,
        run_dir: run_in(&d.join("runs")),
    }
}

/// The run directory in the target directory `target` (empty when there is none).
fn run_in(target: &Path) -> PathBuf {
    if !target.is_dir() {
        return PathBuf::new();
    }
    runs::run_dirs_in(target)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Runs the setup `setup` with the Python workers `file` (name and text) in a fresh directory
/// `tag`: the directory and the run.
fn run_workers(tag: &str, (name, workers): (&str, &str), setup: &str) -> (PathBuf, Ran) {
    let d = dir(tag);
    std::fs::write(d.join(name), workers).unwrap();
    std::fs::write(d.join("setup.yaml"), setup).unwrap();
    let r = run(&d, "setup.yaml");
    (d, r)
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The JSON file the worker wrote whose name starts with `prefix`.
fn report(run_dir: &Path, prefix: &str) -> serde_json::Value {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{prefix} in {}", run_dir.display());
    json(&found.pop().unwrap())
}

/// mimoCoRB2 0.0.4 style: each function takes the BufferIO. The importer writes a ramp
/// whose first sample is the event number; the filter checks the bytes it sees against what
/// the importer wrote, tries to write into its source view, and keeps events by a mask.
const BUFFER_IO_WORKERS: &str = r#"
import json
import zlib

import numpy as np

import mimocorb2 as mi2


def event_of(example, i):
    e = example.copy()
    e["ch0"] = np.arange(e.size, dtype=np.float32) + i
    return e


def source(buffer_io):
    importer = mi2.Importer(buffer_io)
    n = int(buffer_io["n_events"])
    example = importer.data_example

    def ufunc():
        for i in range(n):
            yield event_of(example, i)
        yield None

    importer(ufunc)


def select(buffer_io):
    flt = mi2.Filter(buffer_io)
    example = flt.data_example
    seen = {"events": 0, "bad_bytes": 0, "readonly": 0, "wrote": 0}

    def ufunc(data):
        i = int(data["ch0"][0])
        if zlib.crc32(data.tobytes()) != zlib.crc32(event_of(example, i).tobytes()):
            seen["bad_bytes"] += 1
        if seen["events"] == 0:
            try:
                data["ch0"][0] = -1.0
                seen["wrote"] += 1
            except ValueError:
                seen["readonly"] += 1
        seen["events"] += 1
        return [i % 3 == 0, i % 2 == 0]

    flt(ufunc)
    with open(buffer_io.run_dir / f"report_select.json", "w") as f:
        json.dump(seen, f)


def sink(buffer_io):
    exporter = mi2.Exporter(buffer_io)
    count = 0
    counters = 0
    for data, metadata in exporter:
        count += 1
        counters += int(metadata["counter"][0])
        assert int(data["ch0"][0]) == int(metadata["counter"][0])
    with open(buffer_io.run_dir / f"report_{buffer_io.name}.json", "w") as f:
        json.dump({"count": count, "counters": counters}, f)
"#;

fn buffer_io_setup(n: u64, select_extra: &str) -> String {
    format!(
        "target_directory: runs
base_config: {{n_events: {n}}}
Buffers:
  raw: &b
    slot_count: 16
    data_length: 32
    data_dtype: {{ch0: 'f4'}}
  thirds: *b
  halves: *b
Workers:
  source:
    file: workers.py
    function: source
    sinks: [raw]
  select:
    file: workers.py
    function: select
    sources: [raw]
    sinks: [thirds, halves]
{select_extra}
  sink_thirds:
    file: workers.py
    function: sink
    sources: [thirds]
  sink_halves:
    file: workers.py
    function: sink
    sources: [halves]
"
    )
}

#[test]
fn buffer_io_style_workers_run_unchanged_and_count_every_event() {
    let (_, r) = run_workers(
        "buffer_io",
        ("workers.py", BUFFER_IO_WORKERS),
        &buffer_io_setup(3000, ""),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sel = report(&r.run_dir, "report_select");
    assert_eq!(sel["events"], 3000);
    // Exactly the bytes the importer wrote, and the source view refused the write.
    assert_eq!(sel["bad_bytes"], 0);
    assert_eq!(sel["readonly"], 1);
    assert_eq!(sel["wrote"], 0);
    let thirds = report(&r.run_dir, "report_sink_thirds");
    let halves = report(&r.run_dir, "report_sink_halves");
    assert_eq!(thirds["count"], 1000);
    assert_eq!(halves["count"], 1500);
    // Sum of 0, 3, 6, … 2997 and of 0, 2, … 2998: every selected event once.
    assert_eq!(thirds["counters"], (0..3000u64).step_by(3).sum::<u64>());
    assert_eq!(halves["counters"], (0..3000u64).step_by(2).sum::<u64>());
    let summary = json(&r.run_dir.join("summary.json"));
    assert_eq!(summary["events"]["raw"], 3000, "{summary}");
    assert_eq!(summary["events"]["thirds"], 1000, "{summary}");
    assert_eq!(summary["events"]["halves"], 1500, "{summary}");
}

/// The manual's style: `def worker(*mimo_args)` and `Template(mimo_args)`, with
/// `config`, `writer.data_example`, `reader.name` and a Processor with two sinks.
const MIMO_ARGS_WORKERS: &str = r#"
import json

import numpy as np

from mimocorb2.worker_templates import Exporter, Importer, Processor


def make(*mimo_args):
    importer = Importer(mimo_args)
    config = importer.config
    data_example = importer.writer.data_example

    def ufunc():
        for i in range(config["n_events"]):
            data = np.full(data_example.shape, float(i))
            yield data
        yield None

    importer(ufunc)


def split(*mimo_args):
    processor = Processor(mimo_args)

    def ufunc(data):
        i = int(data["x"][0])
        if i % 5 == 4:
            return None
        return [data, None if i % 2 else data]

    processor(ufunc)


def save(*mimo_args):
    exporter = Exporter(mimo_args)
    name = exporter.reader.name
    total = 0
    count = 0
    for data, metadata in exporter:
        count += 1
        total += int(data["x"][0])
    with open(exporter.run_dir / f"report_{name}.json", "w") as f:
        json.dump({"count": count, "total": total}, f)
"#;

const MIMO_ARGS_SETUP: &str = "target_directory: runs
Buffers:
  raw: &b
    slot_count: 8
    data_length: 4
    data_dtype: {x: 'i4', y: 'f8'}
  all: *b
  even: *b
Workers:
  make:
    file: workers.py
    function: make
    sinks: [raw]
    config: {n_events: 1000}
  split:
    file: workers.py
    function: split
    sources: [raw]
    sinks: [all, even]
  save_all:
    file: workers.py
    function: save
    sources: [all]
  save_even:
    file: workers.py
    function: save
    sources: [even]
";

#[test]
fn mimo_args_style_workers_run_unchanged_and_count_every_event() {
    let (_, r) = run_workers(
        "mimo_args",
        ("workers.py", MIMO_ARGS_WORKERS),
        MIMO_ARGS_SETUP,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kept: Vec<u64> = (0..1000).filter(|i| i % 5 != 4).collect();
    let even: Vec<u64> = kept.iter().copied().filter(|i| i % 2 == 0).collect();
    let all = report(&r.run_dir, "report_all");
    let ev = report(&r.run_dir, "report_even");
    assert_eq!(all["count"], kept.len() as u64);
    assert_eq!(all["total"], kept.iter().sum::<u64>());
    assert_eq!(ev["count"], even.len() as u64);
    assert_eq!(ev["total"], even.iter().sum::<u64>());
}

/// Issue 14's field types reach Python as numpy does them: a Python Importer fills every
/// kind (bool, bytes, unicode, complex, big-endian, subarrays) and a Python Exporter reading
/// the buffer sees exactly `numpy.dtype` of the setup's data_dtype and the values written.
const TYPED_WORKERS: &str = r#"
import json

import numpy as np

import mimocorb2 as mi2

SETUP = [("a", "bool"), ("b", "S10"), ("c", ">f4"), ("d", "c8"), ("e", "U4"),
         ("f", "(2,)f4"), ("g", "c16"), ("h", "<i2"), ("m", "(2,3)>i2")]


def event_of(example, i):
    e = example.copy()
    e["a"] = [(i + k) % 2 == 0 for k in range(e.size)]
    e["b"] = [f"ev{i},{k}".encode() for k in range(e.size)]
    e["c"] = np.arange(e.size) * 0.5 + i
    e["d"] = np.arange(e.size) + 1j * i
    e["e"] = [f"é{i % 10}😀" for k in range(e.size)]
    e["f"] = [[i, -k] for k in range(e.size)]
    e["g"] = -1j * i
    e["h"] = i
    e["m"] = np.arange(6).reshape(2, 3) * i
    return e


def source(buffer_io):
    importer = mi2.Importer(buffer_io)
    example = importer.data_example
    assert example.dtype == np.dtype(SETUP), (example.dtype, np.dtype(SETUP))

    def ufunc():
        for i in range(int(buffer_io["n_events"])):
            yield event_of(example, i)
        yield None

    importer(ufunc)


def sink(buffer_io):
    exporter = mi2.Exporter(buffer_io)
    seen = {"count": 0, "same_dtype": 0, "same_values": 0}
    for data, metadata in exporter:
        i = int(metadata["counter"][0])
        seen["count"] += 1
        seen["same_dtype"] += int(data.dtype == np.dtype(SETUP))
        seen["same_values"] += int(data.tobytes() == event_of(data, i).tobytes())
    with open(buffer_io.run_dir / "report_typed.json", "w") as f:
        json.dump(seen, f)
"#;

const TYPED_SETUP: &str = "target_directory: runs
base_config: {n_events: 50}
Buffers:
  raw:
    slot_count: 500
    data_length: 4
    data_dtype: {a: bool, b: S10, c: '>f4', d: c8, e: U4, f: '(2,)f4', g: c16, h: '<i2', m: '(2,3)>i2'}
Workers:
  source:
    file: typed.py
    function: source
    sinks: [raw]
  sink:
    file: typed.py
    function: sink
    sources: [raw]
";

#[test]
fn python_workers_get_every_field_type_as_numpy_makes_it() {
    let (_, r) = run_workers("typed", ("typed.py", TYPED_WORKERS), TYPED_SETUP);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = report(&r.run_dir, "report_typed");
    assert_eq!(rep["count"], 50, "{rep}");
    assert_eq!(rep["same_dtype"], 50, "{rep}");
    assert_eq!(rep["same_values"], 50, "{rep}");
}

const FAILING: &str = r#"
import mimocorb2 as mi2


def source(buffer_io):
    importer = mi2.Importer(buffer_io)
    example = importer.data_example

    def ufunc():
        for i in range(int(buffer_io["n_events"])):
            yield example
        yield None

    importer(ufunc)


def fragile(buffer_io):
    flt = mi2.Filter(buffer_io)
    marker = buffer_io.run_dir / "failed_once"
    seen = [0]

    def ufunc(data):
        seen[0] += 1
        if seen[0] == 10 and (buffer_io["always"] or not marker.exists()):
            marker.touch()
            raise RuntimeError("event ten is too much")
        return True

    flt(ufunc)
"#;

fn failing_setup(always: bool, restart: &str) -> String {
    format!(
        "target_directory: runs
base_config: {{n_events: 200, always: {always}}}
Buffers:
  raw: &b
    slot_count: 4
    data_length: 8
    data_dtype: {{ch0: 'f4'}}
  kept: *b
Workers:
  source:
    file: failing.py
    function: source
    sinks: [raw]
  filter:
    file: failing.py
    function: fragile
    sources: [raw]
    sinks: [kept]
    restart: {restart}
  sink:
    function: bench.sink
    sources: [kept]
"
    )
}

/// Runs [`failing_setup`] (`always`, `restart`) with [`FAILING`] in a fresh directory `tag`:
/// the directory and the run.
fn run_failing(tag: &str, always: bool, restart: &str) -> (PathBuf, Ran) {
    run_workers(
        tag,
        ("failing.py", FAILING),
        &failing_setup(always, restart),
    )
}

#[test]
fn an_exception_fails_the_worker_with_its_traceback_in_the_log_and_on_the_terminal() {
    let (d, r) = run_failing("exception", true, "never");
    assert_ne!(r.code, 0, "{}", r.stderr);
    let file = d.join("failing.py");
    let line = FAILING
        .lines()
        .position(|l| l.contains("raise RuntimeError"))
        .unwrap()
        + 1;
    let frame = format!("File \"{}\", line {line}, in ufunc", file.display());
    for (what, text) in [
        ("terminal", r.stderr.clone()),
        (
            "log",
            std::fs::read_to_string(r.run_dir.join("daq-engine.log")).unwrap(),
        ),
    ] {
        assert!(text.contains(&frame), "{what} lacks {frame}:\n{text}");
        assert!(text.contains("worker 'filter'"), "{what}:\n{text}");
        assert!(
            text.contains("RuntimeError: event ten is too much"),
            "{what}:\n{text}"
        );
    }
}

const PRINTING: &str = r#"
import os
import mimocorb2 as mi2

def chatty(buffer_io):
    flt = mi2.Filter(buffer_io)
    seen = [0]

    def ufunc(data):
        seen[0] += 1
        print("chatty saw event", seen[0])
        if seen[0] == 5:
            print("chatty leaves without a flush")
            os._exit(3)
        return True

    flt(ufunc)
"#;

/// A worker's prints (mimoCoRB2's workers print as they please) go where its messages go,
/// never onto stdout: under the dashboard stdout is the screen it draws, and the prints
/// scribbled over it (only stderr went to console.log). Each line as it is printed: held in
/// Python's 8 KiB block, the prints of a worker that dies were lost.
#[test]
fn a_workers_prints_go_with_its_messages_a_line_at_a_time() {
    let d = dir("prints");
    std::fs::write(d.join("failing.py"), FAILING).unwrap();
    std::fs::write(d.join("printing.py"), PRINTING).unwrap();
    let setup = failing_setup(false, "never").replace(
        "    file: failing.py\n    function: fragile",
        "    file: printing.py\n    function: chatty",
    );
    assert!(setup.contains("chatty"), "{setup}");
    std::fs::write(d.join("setup.yaml"), setup).unwrap();
    // As on a lab machine (this one may set it for its own tools).
    let out = Command::new(EXE)
        .env("VIRTUAL_ENV", venv())
        .env_remove("PYTHONUNBUFFERED")
        .args(["setup.yaml", "--no-tui"])
        .current_dir(&d)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("chatty"), "on stdout:\n{stdout}");
    for n in 1..=5 {
        assert!(
            stderr.contains(&format!("chatty saw event {n}\n")),
            "{n}:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("chatty leaves without a flush\n"),
        "{stderr}"
    );
}

#[test]
fn a_failed_python_worker_restarts_and_the_run_finishes() {
    let (_, r) = run_failing("restart", false, "on-failure");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.run_dir.join("failed_once").exists());
    let log = std::fs::read_to_string(r.run_dir.join("daq-engine.log")).unwrap();
    assert!(log.contains("starting it again"), "{log}");
    let summary = json(&r.run_dir.join("summary.json"));
    assert_eq!(summary["events"]["raw"], 200, "{summary}");
    // Each event of raw reached kept once, except the one the failed process held when it
    // raised (released by the engine, not passed on): none twice.
    let kept = summary["events"]["kept"].as_u64().unwrap();
    let sink = json(&r.run_dir.join("bench_sink_0.json"));
    assert_eq!(sink["events"].as_u64().unwrap(), kept);
    assert_eq!(kept, 199, "{summary}");
}

/// issue 12: a worker that fails again and again is started again after a growing pause
/// (at once, then 0.5, 1, 2, 4 s), not five times within milliseconds, and the run gives up
/// once the budget of restarts per minute is spent.
#[test]
fn a_worker_that_keeps_failing_is_restarted_after_growing_pauses_then_given_up() {
    let (_, r) = run_failing("backoff", true, "on-failure");
    assert_ne!(r.code, 0, "{}", r.stderr);
    let log = std::fs::read_to_string(r.run_dir.join("daq-engine.log")).unwrap();
    let pauses: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("; starting it again").nth(1))
        .collect();
    assert_eq!(
        pauses,
        ["", " in 0.5 s", " in 1.0 s", " in 2.0 s", " in 4.0 s"],
        "{log}"
    );
    assert!(log.contains("giving up"), "{log}");
}

/// A setup whose worker 'source' runs `function` of the Python file `file` (its `file:` at
/// line 6, column 11; its `function:` at line 7, column 15), read by a `bench.sink`.
fn python_source_setup(file: &str, function: &str) -> String {
    format!(
        "target_directory: runs
Buffers:
  raw: {{slot_count: 4, data_length: 8, data_dtype: {{ch0: 'f4'}}}}
Workers:
  source:
    file: {file}
    function: {function}
    sinks: [raw]
  sink:
    function: bench.sink
    sources: [raw]
"
    )
}

#[test]
fn check_imports_the_file_and_reports_errors_with_file_and_line() {
    let d = dir("check");
    let setup = python_source_setup;
    std::fs::write(
        d.join("broken.py"),
        "import mimocorb2\n\ndef source(buffer_io)\n    pass\n",
    )
    .unwrap();
    std::fs::write(
        d.join("missing_import.py"),
        "import numpy\nimport no_such_package_here\n\ndef source(buffer_io):\n    pass\n",
    )
    .unwrap();
    std::fs::write(d.join("good.py"), "def source(buffer_io):\n    pass\n").unwrap();
    let cases = [
        (
            "broken.py",
            "source",
            format!(
                "{}:3:22: error: SyntaxError: expected ':'",
                d.join("broken.py").display()
            ),
        ),
        (
            "missing_import.py",
            "source",
            format!("File \"{}\", line 2", d.join("missing_import.py").display()),
        ),
        (
            "good.py",
            "sauce",
            "has no function 'sauce' (it has: source)".into(),
        ),
    ];
    for (file, function, expected) in cases {
        std::fs::write(d.join("setup.yaml"), setup(file, function)).unwrap();
        let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{file}: expected {expected} in:\n{stderr}"
        );
        assert!(stderr.contains("worker 'source'"), "{file}:\n{stderr}");
        // A run refuses it the same way, before making a run directory.
        let (code, stderr) = daq(&d, &["setup.yaml", "--quiet"]);
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(!d.join("runs").exists(), "{file}: a run directory was made");
    }
    std::fs::write(d.join("setup.yaml"), setup("good.py", "source")).unwrap();
    let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    // A file that writes more than a pipe holds to stderr as it is imported (a package's
    // warnings) imports at once: check read that stderr only once the import had ended,
    // so the import waited on the full pipe, and after 20 s check said "loading it did not
    // finish".
    std::fs::write(
        d.join("loud.py"),
        "import sys\nfor i in range(2000):\n    print('warning', i, 'x' * 40, file=sys.stderr)\n\n\
         def source(buffer_io):\n    pass\n",
    )
    .unwrap();
    std::fs::write(d.join("setup.yaml"), setup("loud.py", "source")).unwrap();
    let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    // Workers failing alike are told once, naming them all (a setup of four Python
    // workers without numpy printed the same traceback four times).
    let twice = setup("broken.py", "source").replace(
        "  sink:\n    function: bench.sink\n    sources: [raw]\n",
        "  sink:\n    file: broken.py\n    function: sink\n    sources: [raw]\n",
    );
    assert!(twice.contains("function: sink"), "{twice}");
    std::fs::write(d.join("setup.yaml"), twice).unwrap();
    let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.matches("SyntaxError").count(), 1, "{stderr}");
    assert!(stderr.contains("workers 'source', 'sink': "), "{stderr}");
}

/// `check` points at the place of each error of a Python worker file, as at any other
/// error: a syntax error at its line and column, with its text and a mark under it; an
/// import that fails at the import, in the file that has it, with the user's frames only
/// (not importlib's or daq-engine's); a function the file does not have at the setup's
/// `function:`. Before, each was "setup.yaml: worker 'source': " and Python's traceback
/// (a syntax error with its line only).
#[test]
fn check_points_at_the_place_of_each_python_worker_error() {
    let d = dir("check-places");
    let files = [
        ("broken.py", "def source(buffer_io)\n    pass\n"),
        (
            "missing_import.py",
            "x = 1\nimport no_such_package_here\n\ndef source(buffer_io):\n    pass\n",
        ),
        ("helper.py", "x = 1\nimport no_such_thing\n"),
        (
            "indirect.py",
            "import helper\n\ndef source(buffer_io):\n    pass\n",
        ),
        ("good.py", "def source(buffer_io):\n    pass\n"),
    ];
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    let note = "  = note: worker 'source': found while importing its `file:` (setup.yaml:6:11)";
    let at = |f: &str| d.join(f).display().to_string();
    let cases = [
        (
            "broken.py",
            "source",
            format!(
                "{}:1:22: error: SyntaxError: expected ':'\n    def source(buffer_io)\n    \
                 {}^\n{note}",
                at("broken.py"),
                " ".repeat(21)
            ),
        ),
        (
            "missing_import.py",
            "source",
            format!(
                "{0}:2:1: error: ModuleNotFoundError: No module named 'no_such_package_here'\n  \
                 Traceback (most recent call last):\n    File \"{0}\", line 2, in <module>\n      \
                 import no_such_package_here\n{note}",
                at("missing_import.py")
            ),
        ),
        (
            "indirect.py",
            "source",
            format!(
                "{}:2:1: error: ModuleNotFoundError: No module named 'no_such_thing'\n  \
                 Traceback (most recent call last):\n    File \"{}\", line 1, in <module>\n      \
                 import helper\n    File \"{}\", line 2, in <module>\n      import \
                 no_such_thing\n{note}",
                at("helper.py"),
                at("indirect.py"),
                at("helper.py")
            ),
        ),
        (
            "good.py",
            "sauce",
            "setup.yaml:7:15: error: worker 'source': good.py has no function 'sauce' (it \
             has: source)"
                .to_string(),
        ),
    ];
    for (file, function, expected) in cases {
        std::fs::write(d.join("setup.yaml"), python_source_setup(file, function)).unwrap();
        let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{file}: expected\n{expected}\nin:\n{stderr}"
        );
        assert!(
            !stderr.contains("<frozen") && !stderr.contains("<daq-engine>"),
            "{file}: {stderr}"
        );
    }
}

/// Without numpy (no venv selected, and the system Python has none) every Python worker
/// fails alike: said once, naming the workers, without the traceback into daq-engine's own
/// module it printed once per worker.
#[test]
fn python_workers_without_numpy_are_told_once_naming_them_all() {
    let system_numpy = Command::new("/usr/bin/python3")
        .args(["-c", "import numpy"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if system_numpy {
        println!("SKIPPED: the system Python has numpy, so it is never missing");
        return;
    }
    let d = dir("no-numpy");
    std::fs::write(
        d.join("w.py"),
        "def source(buffer_io):\n    pass\n\ndef sink(buffer_io):\n    pass\n",
    )
    .unwrap();
    let workers = "  source: {file: w.py, function: source, sinks: [raw]}\n  \
                   sink: {file: w.py, function: sink, sources: [raw]}\n";
    let buffers = "  raw: {slot_count: 4, data_length: 8, data_dtype: {ch0: 'f4'}}\n";
    std::fs::write(
        d.join("setup.yaml"),
        format!("target_directory: runs\nBuffers:\n{buffers}Workers:\n{workers}"),
    )
    .unwrap();
    let (code, stderr) = daq_with(&d, &["check", "setup.yaml"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "workers 'source', 'sink': starting Python: ModuleNotFoundError: No module named \
             'numpy' (no venv is selected"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
}

/// A `python:` that is no venv at all (the tester's `/usr`) was told "the venv /usr has no
/// lib/python3.11/site-packages … make the venv with that Python (`/usr/bin/python3 -m venv
/// /usr`)": a venv made over /usr, at the worker's `file:` line. It is said to be no venv
/// now, with how to make one, at the `python:` line.
#[test]
fn a_python_that_is_no_venv_is_said_so() {
    let d = dir("not-a-venv");
    std::fs::write(d.join("w.py"), "def sink(buffer_io):\n    pass\n").unwrap();
    std::fs::create_dir_all(d.join("project")).unwrap();
    std::fs::write(
        d.join("setup.yaml"),
        "target_directory: runs\nBuffers:\n  raw: {slot_count: 4, data_length: 8, data_dtype: {ch0: 'f4'}}\n\
         Workers:\n  src: {function: bench.source, sinks: [raw]}\n  \
         sink:\n    file: w.py\n    function: sink\n    sources: [raw]\n    python: project\n",
    )
    .unwrap();
    let (code, stderr) = daq_with(&d, &["check", "setup.yaml"], None);
    assert_eq!(code, 2, "{stderr}");
    // At the `python:` line (line 10), not the worker's `file:` (line 7).
    assert!(
        stderr.starts_with("setup.yaml:10:13: error: worker 'sink': ")
            && stderr.contains("project is not a venv (it has no pyvenv.cfg")
            && stderr.contains("`/usr/bin/python3 -m venv DIR`")
            && !stderr.contains("-m venv /"),
        "{stderr}"
    );
}

/// The reference setups of mimoCoRB2's benchmark (tests/setups/mimocorb2, with the
/// unmodified bench_workers.py) pass check and run.
#[test]
fn mimocorb2_reference_setups_run() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/setups/mimocorb2");
    let d = dir("reference");
    for f in [
        "bench_workers.py",
        "tiny_filter.yaml",
        "probe_filter_mask.yaml",
    ] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    for setup in ["tiny_filter.yaml", "probe_filter_mask.yaml"] {
        let (code, stderr) = daq(&d, &["check", setup]);
        assert_eq!(code, 0, "{setup}: {stderr}");
    }
    let (code, stderr) = daq(&d, &["tiny_filter.yaml", "--quiet", "--max-events", "5000"]);
    assert_eq!(code, 0, "{stderr}");
    let run_dir = std::fs::read_dir(d.join("runs/tiny_filter"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sink = report(&run_dir, "bench_sink_sink_");
    assert_eq!(sink["count"], 5000);
    assert_eq!(sink["out_of_order"], 0);
    // mimoCoRB2's Filter commits a slot for a False in the mask; here sink b gets nothing.
    let (code, stderr) = daq(&d, &["probe_filter_mask.yaml", "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let run_dir = std::fs::read_dir(d.join("runs/probe_filter_mask"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(report(&run_dir, "bench_sink_sink_a_")["count"], 20000);
    assert_eq!(report(&run_dir, "bench_sink_sink_b_")["count"], 0);
}

/// setups/python_demo.yaml runs the examples in examples/python: an importer, a filter, a
/// processor with two sinks and an exporter, each event accounted for.
#[test]
fn the_python_examples_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = dir("examples");
    let (code, stderr) = daq(
        repo,
        &[
            "setups/python_demo.yaml",
            "--quiet",
            "--target-directory",
            d.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let run_dir = run_in(&d);
    let summary = json(&run_dir.join("summary.json"));
    let events = |b: &str| summary["events"][b].as_u64().unwrap();
    assert_eq!(events("raw"), 2000, "{summary}");
    assert_eq!(events("heights"), events("pulses"), "{summary}");
    assert!(
        events("pulses") < 2000 && events("large") < events("pulses"),
        "{summary}"
    );
    let csv = std::fs::read_to_string(run_dir.join("save_heights.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, events("heights") + 1);
}

/// An exporter that stops taking events for good (here a call that never returns, as a
/// network write to a dead host or a deadlock in a worker's own code would).
const STUCK: &str = r#"
import time
import mimocorb2 as mi2

def stuck(buffer_io):
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        if n == 20:
            time.sleep(1e6)
"#;

/// [`STUCK`] stuck at its first event: stuck before a stop at `max_seconds: 1` however late
/// Python starts (stuck at the 20th, a worker started late on a loaded machine had fewer
/// than 20 events before the stop, read them all and ended, and the drain never stalled).
fn stuck_at_once() -> String {
    STUCK.replace("n == 20", "n == 1")
}

/// Writes `setup.yaml` in `d`: `simulate.pulses` (with `source` config) into a `block`
/// buffer of `slots` slots read by the Python worker `script` (name, code) with `restart`.
fn stuck_setup(
    d: &Path,
    (name, code): (&str, &str),
    restart: &str,
    options: &str,
    slots: u32,
    source: &str,
) {
    std::fs::write(d.join(format!("{name}.py")), code).unwrap();
    std::fs::write(
        d.join("setup.yaml"),
        format!(
            "target_directory: runs
options: {{{options}}}
Buffers:
  raw: {{slot_count: {slots}, data_length: 16, data_dtype: {{ch0: float32}}}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{{source}, pretrigger_samples: 4}}
  sink:
    file: {name}.py
    function: {name}
    sources: [raw]
    restart: {restart}
"
        ),
    )
    .unwrap();
}

/// Runs `setup.yaml` in `d`, whose Python worker gets stuck, with a guard against the hang
/// these tests are about (not a measure of time): its exit code and stderr.
fn run_stuck(d: &Path) -> (i32, String) {
    let child = runs::engine_in(d, &["setup.yaml", "--quiet"])
        .env("VIRTUAL_ENV", venv())
        .spawn()
        .unwrap();
    runs::finish_within(child, Duration::from_secs(120))
}

/// A stop (here `max_seconds`) waited for ever on a worker that takes no more events: the
/// drain never ended, so a service run never ended either and a script waiting for it hung.
/// Now, once no event has moved through any buffer for `drain_stall_seconds` while some are
/// still waiting, the workers are killed, the run ends failed saying which reader held the
/// drain up, and the events it never took are counted lost for it.
#[test]
fn a_worker_stuck_while_the_run_drains_is_killed_once_nothing_moves() {
    let d = dir("stuck");
    stuck_setup(
        &d,
        ("stuck", &stuck_at_once()),
        "never",
        "max_seconds: 1, drain_stall_seconds: 2",
        8,
        "rate: 500, realtime: true",
    );
    // The run ends a few seconds after its stop.
    let (code, stderr) = run_stuck(&d);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no event has moved for 2 s")
            && stderr.contains("events wait for reader 'sink'")
            && stderr.contains("drain_stall_seconds"),
        "{stderr}"
    );
    let summary = json(&run_in(&d.join("runs")).join("summary.json"));
    let events = summary["events"]["raw"].as_u64().unwrap();
    let books = &summary["readers"]["raw"]["sink"];
    let delivered = books["delivered"].as_u64().unwrap();
    let lost = books["lost"].as_u64().unwrap();
    // The worker read its first event (unreleased when it was killed, with any its reader
    // had claimed with it); the rest of the buffer waited for it.
    assert!(delivered < 20 && lost > 0, "{summary}");
    assert_eq!(delivered + lost, events, "{summary}");
    assert_eq!(books["pending"], 0, "{summary}");
    assert!(
        summary["failures"][0]
            .as_str()
            .is_some_and(|f| f.contains("no event has moved")),
        "{summary}"
    );
}

/// Runs 50 events into the Python worker `script` (name, code), which gets stuck, with
/// `drain_stall_seconds: 2`; asserts the run ended failed: its stderr and summary.
fn stuck_at_the_end(tag: &str, script: (&str, &str)) -> (String, serde_json::Value) {
    let d = dir(tag);
    let options = "drain_stall_seconds: 2";
    stuck_setup(&d, script, "never", options, 64, "n_events: 50");
    let (code, stderr) = run_stuck(&d);
    assert_eq!(code, 1, "{stderr}");
    let summary = json(&run_in(&d.join("runs")).join("summary.json"));
    (stderr, summary)
}

/// The drain at the natural end of a run (its importer's events ran out, as a replay's do at
/// the end of its file) waited for ever on a worker that takes no more events: only a stop
/// was watched for a stalled drain, so the run never ended. It ends the same way now.
#[test]
fn a_worker_stuck_after_the_importers_ran_out_does_not_hold_the_end() {
    let (stderr, summary) = stuck_at_the_end("stuck-end", ("stuck", STUCK));
    assert!(
        stderr.contains("the run drains but no event has moved for 2 s")
            && stderr.contains("events wait for reader 'sink'"),
        "{stderr}"
    );
    assert_eq!(summary["events"]["raw"], 50, "{summary}");
    let books = &summary["readers"]["raw"]["sink"];
    let (delivered, lost) = (books["delivered"].as_u64(), books["lost"].as_u64());
    assert_eq!(delivered.unwrap() + lost.unwrap(), 50, "{summary}");
    assert!(lost.unwrap() > 0, "{summary}");
}

/// An exporter that hangs after its last event (an upload at the end that never returns):
/// nothing waited to be read, so the drain's watch let it hold the end for ever, and a
/// service's `systemctl stop` until systemd killed everything. Now a drain in which nothing
/// has moved for `drain_stall_seconds` also ends when none waits, naming who did not end.
#[test]
fn a_worker_stuck_after_its_last_event_does_not_hold_the_end() {
    let code = r#"
import time
import mimocorb2 as mi2

def stuck_after(buffer_io):
    for _ in mi2.Exporter(buffer_io):
        pass
    time.sleep(1e6)
"#;
    let (stderr, summary) = stuck_at_the_end("stuck-after", ("stuck_after", code));
    assert!(
        stderr.contains("no event has moved for 2 s and none waits")
            && stderr.contains("worker 'sink' process 0"),
        "{stderr}"
    );
    let books = &summary["readers"]["raw"]["sink"];
    assert_eq!(books["delivered"], 50, "{summary}");
    assert_eq!(books["lost"], 0, "{summary}");
}

/// A reader whose worker ends before the run does (here it returns after 20 events) loses
/// every later event of its buffer. The log said so once, when it ended; no `events_lost`
/// alert followed, and the run's last lines showed the buffer whole. Now the losses as they
/// go on are warned and alerted (rate-limited), and the end says how many it lost.
#[test]
fn events_lost_for_a_reader_that_ended_are_warned_and_said_at_the_end() {
    let d = dir("reader-lost");
    let code = r#"
import mimocorb2 as mi2

def leaves(buffer_io):
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        if n == 20:
            return
"#;
    let source = "n_events: 3000, rate: 1000, realtime: true";
    stuck_setup(&d, ("leaves", code), "never", "", 16, source);
    let (_, stderr) = run_stuck(&d);
    let run = run_in(&d.join("runs"));
    let summary = json(&run.join("summary.json"));
    let lost = summary["readers"]["raw"]["sink"]["lost"].as_u64().unwrap();
    assert!(lost > 2000, "{summary}");
    assert!(
        stderr.contains(&format!("{lost} of them lost for reader 'sink'")),
        "{stderr}"
    );
    let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap();
    assert!(log.contains("events lost for reader 'sink' ("), "{log}");
}

/// The source of the stall tests: more events than a stuck reader's buffer holds.
const STALL_SOURCE: &str = "n_events: 300, rate: 500, realtime: true";

/// Sleeps for good in its 20th event the first time it runs (the marker file says it has);
/// started again, it reads on.
const STUCK_ONCE: &str = r#"
import os, time
import mimocorb2 as mi2

def stuck_once(buffer_io):
    first = not os.path.exists("stuck.marker")
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        if first and n == 20:
            open("stuck.marker", "w").close()
            time.sleep(1e6)
"#;

/// A worker stuck for good in the middle of a run (its own code deadlocked, a call that
/// never returns) held its source, and with it the whole run, for ever: the buffer filled,
/// the importer waited, and the only sign was a `buffer_full` warning. A worker that says
/// `restart: on-failure` has asked to be started again when it goes wrong: once it has taken
/// no event for `options.worker_stall_seconds` while events wait for it, it is killed and
/// started again, and the run goes on to its end with the books balanced.
#[test]
fn a_worker_stuck_mid_run_is_killed_and_started_again() {
    let d = dir("stall-restart");
    let options = "worker_stall_seconds: 3";
    let script = ("stuck_once", STUCK_ONCE);
    stuck_setup(&d, script, "on-failure", options, 8, STALL_SOURCE);
    let (code, stderr) = run_stuck(&d);
    assert_eq!(code, 0, "{stderr}");
    assert!(d.join("stuck.marker").exists(), "{stderr}");
    assert!(
        stderr.contains("worker 'sink' has taken no event for 3 s")
            && stderr.contains("events wait in 'raw'")
            && stderr.contains("killing it to start it again"),
        "{stderr}"
    );
    let run = run_in(&d.join("runs"));
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["events"]["raw"], 300, "{summary}");
    let books = &summary["readers"]["raw"]["sink"];
    let delivered = books["delivered"].as_u64().unwrap();
    let lost = books["lost"].as_u64().unwrap();
    // What it held when it was killed is lost for it; the rest it read after its restart.
    assert!(lost >= 1 && delivered >= 300 - 8, "{summary}");
    assert_eq!(delivered + lost, 300, "{summary}");
    let last = daq_engine::run_dir::last_snapshot(&run).unwrap();
    assert_eq!(last.workers["sink"].restarts, 1, "{last:?}");
}

/// A worker that was not asked to be started again (`restart: never`, the default) is left
/// running, but the log names it once as the one that holds the run up.
#[test]
fn a_worker_stuck_mid_run_without_restart_is_named_once() {
    let d = dir("stall-named");
    let options = "worker_stall_seconds: 3, drain_stall_seconds: 1, max_seconds: 8";
    let script = ("stuck_once", STUCK_ONCE);
    stuck_setup(&d, script, "never", options, 8, STALL_SOURCE);
    let (code, stderr) = run_stuck(&d);
    // The stop's drain stall ends it (`a_worker_stuck_while_the_run_drains_…`).
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr
            .matches("worker 'sink' has taken no event for 3 s")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("it is left running (with `restart: on-failure` it would be"),
        "{stderr}"
    );
}

/// A worker's prints stalled the run when nobody read the run's stderr: a `| tee` that
/// stalled, a pipe to a program that had ended its reading, a terminal paused with Ctrl-S.
/// Each worker's stdout and stderr were the supervisor's stderr itself, so once that pipe
/// was full a worker that printed waited in its `print` for ever, its buffer filled and the
/// importer lost events (only the supervisor's own lines went through its bounded queue).
/// Here the test holds the pipe and reads it only after the run: every event still reaches
/// the worker, and the lines the terminal could not take are counted in the log.
#[test]
fn a_worker_that_prints_does_not_wait_for_a_terminal_nobody_reads() {
    let d = dir("prints-unread");
    let code = r#"
import mimocorb2 as mi2

def loud(buffer_io):
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        print("loud took event", n, "x" * 200)
"#;
    // 2000 lines of 220 bytes: some six times what a pipe holds.
    stuck_setup(&d, ("loud", code), "never", "", 64, "n_events: 2000");
    let (code, stderr) = run_stuck(&d);
    assert_eq!(code, 0, "{stderr}");
    let run = run_in(&d.join("runs"));
    let summary = json(&run.join("summary.json"));
    let books = &summary["readers"]["raw"]["sink"];
    assert_eq!(summary["events"]["raw"], 2000, "{summary}");
    assert_eq!(books["delivered"], 2000, "{summary}");
    assert_eq!(books["lost"], 0, "{summary}");
    // What the pipe took: the lines as printed, whole.
    assert!(
        stderr.contains(&format!("loud took event 1 {}\n", "x".repeat(200))),
        "{stderr}"
    );
    let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap();
    assert!(log.contains("lines for the terminal were dropped"), "{log}");
}

/// The other side of the pipe above: once the supervisor is gone (killed outright, the OOM
/// killer) nothing reads what its workers print. A worker that prints while it drains goes
/// on to its end, its prints going nowhere, instead of failing in its `print` on the closed
/// pipe (Python's BrokenPipeError).
#[test]
fn a_worker_that_prints_ends_its_drain_when_the_supervisor_is_killed() {
    let d = dir("prints-orphaned");
    let code = r#"
import mimocorb2 as mi2

def loud(buffer_io):
    n = 0
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        print("loud took event", n)
        if n == 50:
            open("running", "w").close()
    print("loud is done after", n)
    with open("done", "w") as f:
        f.write(str(n))
"#;
    let source = "n_events: 1000000000, rate: 1000, realtime: true";
    stuck_setup(&d, ("loud", code), "never", "", 64, source);
    let mut child = runs::engine_in(&d, &["setup.yaml", "--quiet"])
        .env("VIRTUAL_ENV", venv())
        .spawn()
        .unwrap();
    let long = Duration::from_secs(60);
    runs::wait_until("the worker to take 50 events", long, || {
        d.join("running").exists()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    runs::wait_until("the worker to end its drain", long, || {
        d.join("done").exists()
    });
    let took: u64 = std::fs::read_to_string(d.join("done"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(took >= 50, "{took}");
}

/// `sys.exit(0)` is how a Python program says it is done: a worker that called it mid-run
/// failed the run ("exited with status 1"), while one that returned (or called
/// `os._exit(0)`) ended as finished. It ends as a return does now; any other exit code,
/// or a message, still fails the worker.
#[test]
fn a_worker_that_calls_sys_exit_0_ends_as_one_that_returns() {
    let code = r#"
import sys
import mimocorb2 as mi2

def leaves(buffer_io):
    for n, _ in enumerate(mi2.Exporter(buffer_io), 1):
        if n == 20:
            sys.exit(buffer_io["code"])
"#;
    for (exit, fails) in [
        ("0", false),
        ("null", false),
        ("3", true),
        ("'enough'", true),
    ] {
        let d = dir(&format!("sys-exit-{}", exit.trim_matches('\'')));
        stuck_setup(&d, ("leaves", code), "never", "", 16, "n_events: 200");
        let setup = std::fs::read_to_string(d.join("setup.yaml")).unwrap();
        let config = format!("restart: never\n    config: {{code: {exit}}}");
        std::fs::write(
            d.join("setup.yaml"),
            setup.replace("restart: never", &config),
        )
        .unwrap();
        let (status, stderr) = run_stuck(&d);
        let summary = json(&run_in(&d.join("runs")).join("summary.json"));
        let books = &summary["readers"]["raw"]["sink"];
        assert_eq!(books["delivered"], 20, "sys.exit({exit}): {summary}");
        assert_eq!(
            books["delivered"].as_u64().unwrap() + books["lost"].as_u64().unwrap(),
            summary["events"]["raw"].as_u64().unwrap(),
            "sys.exit({exit}): {summary}"
        );
        if fails {
            assert_eq!(status, 1, "sys.exit({exit}): {stderr}");
            assert!(stderr.contains("SystemExit"), "sys.exit({exit}): {stderr}");
        } else {
            assert_eq!(status, 0, "sys.exit({exit}): {stderr}");
            assert_eq!(summary["failures"], serde_json::json!([]), "{summary}");
            let log = std::fs::read_to_string(run_in(&d.join("runs")).join("daq-engine.log"));
            let code = if exit == "null" { "None" } else { exit };
            let said = format!("called sys.exit({code}): it ended as a return ends it");
            assert!(
                log.as_ref().is_ok_and(|l| l.contains(&said)),
                "{said}: {log:?}"
            );
        }
    }
}

/// A Ctrl-C while the run was already stopping (here `max_seconds`, its drain held up by a
/// stuck worker) was neither acted on nor said: the one who pressed it saw nothing happen.
/// It changes nothing still (the next one aborts), and says so.
#[test]
fn a_stop_signal_while_the_run_stops_is_answered() {
    let d = dir("stop-while-stopping");
    let options = "max_seconds: 1, drain_stall_seconds: 3";
    stuck_setup(
        &d,
        ("stuck", &stuck_at_once()),
        "never",
        options,
        8,
        "rate: 500, realtime: true",
    );
    let child = runs::engine_in(&d, &["setup.yaml", "--quiet"])
        .env("VIRTUAL_ENV", venv())
        .spawn()
        .unwrap();
    runs::wait_until("the stop at max_seconds", Duration::from_secs(60), || {
        let log = std::fs::read_to_string(run_in(&d.join("runs")).join("daq-engine.log"));
        log.is_ok_and(|l| l.contains("max_seconds 1 reached"))
    });
    runs::interrupt(&child).unwrap();
    let (code, stderr) = runs::finish_within(child, Duration::from_secs(120));
    assert!(
        stderr.contains(
            "stop signal: the run is already stopping (stopped by reaching max_seconds); its \
             buffers drain (Ctrl-C again to abort)"
        ),
        "{stderr}"
    );
    // The drain stalled on the stuck worker and ended as it would have without the signal.
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no event has moved for 3 s"), "{stderr}");
}

/// One exception in one process of a two-process Python filter held the whole run for good:
/// the event the raising process held never went back (its reader gave its member up as it
/// was dropped, so the supervisor reclaimed nothing of it), its group could not move past
/// that slot, the buffer filled and the importer waited. The process is started again and
/// the books balance: the raising event counted as taken, what the process had claimed and
/// not yet handed out counted lost.
#[test]
fn an_exception_in_one_process_of_a_filter_does_not_hold_the_run() {
    let d = dir("raise-two-processes");
    let code = r#"
import os
from mimocorb2.worker_templates import Filter

def crash_once(*mimo_args):
    flt = Filter(mimo_args)
    n = [0]

    def ufunc(data):
        n[0] += 1
        if n[0] == 200 and not os.path.exists("crashed"):
            open("crashed", "w").close()
            raise RuntimeError("one bad event")
        return True

    flt(ufunc)
"#;
    std::fs::write(d.join("once.py"), code).unwrap();
    std::fs::write(
        d.join("setup.yaml"),
        "target_directory: runs
Buffers:
  raw: {slot_count: 32, data_length: 16, data_dtype: {ch0: float32}}
  out: {slot_count: 32, data_length: 16, data_dtype: {ch0: float32}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {n_events: 3000, pretrigger_samples: 4}
  f:
    file: once.py
    function: crash_once
    number_of_processes: 2
    restart: on-failure
    sources: [raw]
    sinks: [out]
  sink:
    function: bench.sink
    sources: [out]
",
    )
    .unwrap();
    let (status, stderr) = run_stuck(&d);
    assert!(d.join("crashed").exists(), "{stderr}");
    assert_eq!(status, 0, "{stderr}");
    let summary = json(&run_in(&d.join("runs")).join("summary.json"));
    assert_eq!(summary["events"]["raw"], 3000, "{summary}");
    let books = &summary["readers"]["raw"]["f"];
    let (delivered, lost) = (
        books["delivered"].as_u64().unwrap(),
        books["lost"].as_u64().unwrap(),
    );
    assert_eq!(delivered + lost, 3000, "{summary}");
    // Lost: the event it raised on (it was never used: the books said it was delivered,
    // and it vanished, a tester found), and what the raising process had claimed and not
    // yet handed to Python.
    assert!((1..=33).contains(&lost), "{summary}");
    // Every event delivered passed.
    assert_eq!(summary["events"]["out"], delivered, "{summary}");
}

/// A setup with `options`: simulated pulses at 100 Hz into `raw`, observed by the Python
/// function `function` of obs.py (worker `o`) and drained by `drain`.
fn observed_setup(options: &str, function: &str) -> String {
    format!(
        "target_directory: runs
options: {options}
Buffers:
  raw: {{slot_count: 16, data_length: 16, data_dtype: {{ch0: float32}}}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: 100, realtime: true, pretrigger_samples: 4}}
  o:
    file: obs.py
    function: {function}
    observes: [raw]
  drain:
    function: export.drain
    sources: [raw]
"
    )
}

/// An observer (a display) that fails with the default `restart: never` ended a tester's
/// whole acquisition (worker_failed, exit 1): it holds no events and the data taking does
/// not need it. The run goes on without it, says so and alerts it, and ends as it would
/// have (here at max_seconds, exit 0, every event drained).
#[test]
fn a_failing_observer_does_not_end_the_run() {
    let d = dir("failing-observer");
    std::fs::write(
        d.join("obs.py"),
        "import mimocorb2 as mi2\n\n\
         def bad_obs(buffer_io):\n    o = mi2.Observer(buffer_io)\n    \
         raise RuntimeError('no display here')\n",
    )
    .unwrap();
    std::fs::write(
        d.join("setup.yaml"),
        observed_setup("{max_seconds: 1.5}", "bad_obs"),
    )
    .unwrap();
    let (code, stderr) = run_stuck(&d);
    let run_dir = run_in(&d.join("runs"));
    let summary = json(&run_dir.join("summary.json"));
    assert_eq!(code, 0, "{stderr}\n{summary}");
    assert_eq!(summary["stopped_by"], "max_seconds", "{summary}");
    let events = summary["events"]["raw"].as_u64().unwrap();
    assert_eq!(summary["readers"]["raw"]["drain"]["delivered"], events);
    assert!(
        stderr.contains("no display here") && stderr.contains("the run goes on without it"),
        "{stderr}"
    );
}

/// An observer that never looks for the end of its buffer's stream (mimoCoRB2's observers
/// often loop on a plot until their process is ended): it holds no events, yet the drain
/// waited for it until `drain_stall_seconds` killed every worker and the good run ended
/// FAILED ("stopped by an abort"). Now, once every other worker has ended, the supervisor
/// ends the observers that remain (SIGTERM, then SIGKILL for one that ignores it), says so
/// in the log as a note, and the run keeps its cause and its exit 0.
#[test]
fn an_observer_that_never_ends_is_ended_once_the_drain_is_done() {
    let ignores = "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n";
    for (tag, deaf, ended) in [
        (
            "forever-observer",
            "",
            "ended as told (exited with status 0)",
        ),
        (
            "deaf-observer",
            ignores,
            "ended as told (was killed by SIGKILL)",
        ),
    ] {
        let d = dir(tag);
        std::fs::write(
            d.join("obs.py"),
            format!(
                "import signal\nimport time\nimport mimocorb2 as mi2\n\n\
                 def forever_obs(buffer_io):\n{deaf}    o = mi2.Observer(buffer_io)\n    \
                 while True:\n        time.sleep(0.5)\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("setup.yaml"),
            observed_setup("{max_seconds: 1, drain_stall_seconds: 2}", "forever_obs"),
        )
        .unwrap();
        let (code, stderr) = run_stuck(&d);
        let run_dir = run_in(&d.join("runs"));
        let log = std::fs::read_to_string(run_dir.join("daq-engine.log")).unwrap();
        assert_eq!(code, 0, "{tag}: {stderr}\n{log}");
        let summary = json(&run_dir.join("summary.json"));
        assert_eq!(summary["stopped_by"], "max_seconds", "{tag}: {summary}");
        assert_eq!(
            summary["failures"].as_array().map(Vec::len),
            Some(0),
            "{summary}"
        );
        let events = summary["events"]["raw"].as_u64().unwrap();
        assert!(events > 0, "{tag}: {summary}");
        assert_eq!(
            summary["readers"]["raw"]["drain"]["delivered"], events,
            "{summary}"
        );
        assert!(
            log.contains("observer 'o' process 0")
                && log.contains("every other worker has ended")
                && log.contains(&format!("observer 'o' process 0 {ended}")),
            "{tag}: {log}"
        );
    }
}

/// What a mimoCoRB2 worker says through `io.logger` (mimoCoRB2 logged INFO and up to a
/// file) reaches the run log naming the worker: `info` was dropped (Python's logger stood
/// at WARNING with no handler) and `warning` reached only the terminal.
#[test]
fn a_workers_logger_messages_reach_the_run_log_naming_it() {
    let code = r#"
import mimocorb2 as mi2

def talker(buffer_io):
    buffer_io.logger.info("talker starts")
    n = 0
    for _ in mi2.Exporter(buffer_io):
        n += 1
    buffer_io.logger.warning(f"talker saw {n} events")
    buffer_io.logger.debug("talker whispers")
"#;
    let d = dir("logger");
    stuck_setup(&d, ("talker", code), "never", "", 16, "n_events: 5");
    let (code, stderr) = run_stuck(&d);
    assert_eq!(code, 0, "{stderr}");
    let log = std::fs::read_to_string(run_in(&d.join("runs")).join("daq-engine.log")).unwrap();
    let line = |text: &str| log.lines().find(|l| l.contains(text)).unwrap_or_default();
    let info = line("talker starts");
    assert!(
        info.contains("INFO") && info.contains("worker 'sink'"),
        "{log}"
    );
    let warning = line("talker saw 5 events");
    assert!(
        warning.contains("WARN") && warning.contains("worker 'sink'"),
        "{log}"
    );
    assert!(!log.contains("talker whispers"), "{log}");
    // A warning is still shown on the terminal too.
    assert!(stderr.contains("talker saw 5 events"), "{stderr}");
}

/// `check` refuses a worker file whose import ends the process with status 0
/// (`os._exit(0)`): it said OK, and the run "finished" with no event. One that ends it with
/// another status is said to end while Python imports it, not to be a crashed library.
#[test]
fn check_refuses_a_python_file_that_ends_its_process_while_imported() {
    let d = dir("check-exit");
    for (status, said) in [("0", "exited with status 0"), ("1", "exited with status 1")] {
        std::fs::write(
            d.join("osexit.py"),
            format!("import os\nos._exit({status})\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("setup.yaml"),
            python_source_setup("osexit.py", "gen"),
        )
        .unwrap();
        let (code, stderr) = daq(&d, &["check", "setup.yaml"]);
        assert_eq!(code, 2, "os._exit({status}): {stderr}");
        assert!(
            stderr.contains("osexit.py")
                && stderr.contains("worker 'source'")
                && stderr.contains("ended while Python imported it")
                && stderr.contains("function 'gen'")
                && stderr.contains(said)
                && !stderr.contains("library"),
            "os._exit({status}): {stderr}"
        );
    }
}

/// Each line a Python worker prints stays whole however many workers print at once (the
/// README promises a line at a time): all workers shared one pipe, and Python writes a
/// `print`'s text and its "\n" in two writes, so the lines of three workers came cut and
/// glued ("worker raw event 17 endworker raw event 13 end", then an empty line).
#[test]
fn the_prints_of_several_workers_stay_whole_lines() {
    let code = r#"
import mimocorb2 as mi2

def pr(buffer_io):
    e = mi2.Exporter(buffer_io)
    for n, _ in enumerate(e):
        print(f"worker {e.reader.name} event {n} end")
"#;
    let d = dir("prints-whole");
    std::fs::write(d.join("pr.py"), code).unwrap();
    let readers: String = ["a", "b", "c"]
        .iter()
        .map(|w| format!("  {w}:\n    file: pr.py\n    function: pr\n    sources: [raw]\n"))
        .collect();
    std::fs::write(
        d.join("setup.yaml"),
        format!(
            "target_directory: runs
Buffers:
  raw: {{slot_count: 64, data_length: 200, data_dtype: {{ch0: float32}}}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: 5000, realtime: true, n_events: 2000, pretrigger_samples: 4}}
{readers}"
        ),
    )
    .unwrap();
    // Read as the run goes (`output`): a pipe nobody reads would drop lines at the terminal.
    let (code, stderr) = daq(&d, &["setup.yaml", "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("worker raw"))
        .collect();
    let whole = printed
        .iter()
        .filter(|l| {
            let n = l
                .strip_prefix("worker raw event ")
                .and_then(|l| l.strip_suffix(" end"));
            n.is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n < 2000))
        })
        .count();
    // Every line printed comes whole, and none is lost: all 6000 are shown unless the
    // terminal fell behind (its queue is bounded), and then the log counts the ones dropped.
    let log = std::fs::read_to_string(run_in(&d.join("runs")).join("daq-engine.log")).unwrap();
    let dropped: usize = log
        .lines()
        .find_map(|l| l.split_once(" lines for the terminal were dropped"))
        .map_or(0, |(head, _)| {
            head.rsplit(' ').next().unwrap().parse().unwrap()
        });
    assert_eq!(whole, printed.len(), "{stderr}");
    assert_eq!(whole + dropped, 6000, "{dropped} dropped:\n{stderr}");
}
