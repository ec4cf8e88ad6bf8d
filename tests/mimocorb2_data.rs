//! mimoCoRB2's `data.*` built-ins run by the real binary: `data.export` writes mimoCoRB2's
//! own file format (read back by mimoCoRB2's reading code under Python), and
//! `data.simulate_importer` / `data.clocked_importer` replay such files — ours and one
//! written by Python's pickle the way mimoCoRB2 writes it — into a pipeline, every event's
//! data unchanged.

use daq_engine::export::mimo::MimoReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod runs;
use runs::{books_balance, engine, engine_in, finish_within, run_python, Dir};

const DTYPE: &str = "{ch0: float32, ch1: int16, flag: uint8}";

/// Runs `tests/setups/mimocorb2_builtins/data_<name>.yaml` in `dir`; (exit code, output,
/// run directory).
fn run(dir: &Dir, name: &str) -> (i32, String, Option<PathBuf>) {
    let (child, target) = start(dir, name);
    let (code, out) = finish_within(child, Duration::from_secs(120));
    let run = std::fs::read_dir(target)
        .ok()
        .and_then(|mut d| d.next())
        .map(|e| e.unwrap().path());
    (code, out, run)
}

/// Starts `tests/setups/mimocorb2_builtins/data_<name>.yaml` in `dir`: the engine, and the
/// target directory its run directory goes into.
fn start(dir: &Dir, name: &str) -> (std::process::Child, PathBuf) {
    let file = format!("data_{name}.yaml");
    let setup = dir.0.join(&file);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/setups/mimocorb2_builtins")
            .join(&file),
        &setup,
    )
    .unwrap();
    let child = engine_in(&dir.0, &[setup.as_os_str(), "--no-tui".as_ref()])
        .spawn()
        .unwrap();
    (child, dir.0.join(format!("runs_{name}")))
}

/// Every event of a mimo file: (data bytes, counter, timestamp).
fn events(path: &Path) -> Vec<(Vec<u8>, i64, f64)> {
    let mut r = MimoReader::open(path).unwrap();
    let size = r.header.data_length * r.header.data_dtype.record_size();
    let mut out = Vec::new();
    loop {
        let mut data = vec![0u8; size];
        match r.next_into(&mut data).unwrap() {
            Some(m) => out.push((data, m.counter, m.timestamp)),
            None => return out,
        }
    }
}

/// mimoCoRB2 0.0.4's `mimoFile.from_file` and `read_data`, as it reads a file.
const MIMOCORB2_READ: &str = r#"
import pickle, sys, numpy as np
with open(sys.argv[1], "rb") as f:
    info = pickle.load(f)
    assert info["header"] == "This is a mimoCoRB file" and info["version"] == 1, info
    dt, n, md = info["data_dtype"], info["data_length"], info["metadata_dtype"]
    assert dt == np.dtype([("ch0", "<f4"), ("ch1", "<i2"), ("flag", "u1")]), dt
    assert md == np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")]), md
    assert info["metadata_length"] == 1
    count = 0
    while True:
        d, m = f.read(dt.itemsize * n), f.read(md.itemsize)
        if not d or not m:
            break
        assert np.frombuffer(m, dtype=md)["counter"][0] == count
        count += 1
print(count)
"#;

/// mimoCoRB2 0.0.4's `mimoFile.from_buffer_object` and `write_data` as a Python function:
/// `write(path, dt, length, n, fill, protocol)` pickles the header (with `protocol`, None for
/// pickle's default), then appends `n` events, each `length` records of `dt` filled by
/// `fill(d, i)` and its metadata: counter `i`, timestamp 1000 s + `i` ms.
const MIMOCORB2_WRITER: &str = r#"
import pickle, sys, numpy as np
md = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])
def write(path, dt, length, n, fill, protocol=None):
    info = {"version": 1, "header": "This is a mimoCoRB file", "data_dtype": dt,
            "data_length": length, "metadata_dtype": md, "metadata_length": 1}
    with open(path, "wb") as f:
        pickle.dump(info, f, protocol=protocol)
    with open(path, "ab") as f:
        for i in range(n):
            d = np.zeros(length, dt)
            fill(d, i)
            m = np.zeros(1, md)
            m["counter"] = i
            m["timestamp"] = 1000 + i * 0.001
            f.write(d.tobytes())
            f.write(m.tobytes())
"#;

/// Runs `script` with `args` after [`MIMOCORB2_WRITER`], whose `write` it calls.
fn write_like_mimocorb2(py: &str, script: &str, args: &[&std::ffi::OsStr]) {
    run_python(py, &format!("{MIMOCORB2_WRITER}{script}"), args, "");
}

/// mimoCoRB2 writing 300 events of 32 records.
const MIMOCORB2_WRITE: &str = r#"
rng = np.random.default_rng(3)
def fill(d, i):
    d["ch0"] = rng.normal(size=32)
    d["ch1"] = i
    d["flag"] = i % 7
write(sys.argv[1], np.dtype([("ch0", "<f4"), ("ch1", "<i2"), ("flag", "u1")]), 32, 300, fill)
"#;

#[test]
fn data_export_writes_mimocorb2_files_and_the_importers_replay_them() {
    let dir = Dir::new("m2data");
    // Record: data.export with a pass-through sink.
    let (code, out, rec) = run(&dir, "record");
    assert_eq!(code, 0, "{out}");
    let rec = rec.unwrap();
    let summary = books_balance(&rec);
    assert_eq!(summary["events"]["passed"], 500);
    let recorded = events(&rec.join("raw.mimo"));
    assert_eq!(recorded.len(), 500);
    assert!(recorded.iter().enumerate().all(|(i, e)| e.1 == i as i64));
    std::fs::copy(rec.join("raw.mimo"), dir.0.join("recorded.mimo")).unwrap();

    // Replay it paced by its timestamps, and record the replay the same way.
    let (code, out, rep) = run(&dir, "replay");
    assert_eq!(code, 0, "{out}");
    let replayed = events(&rep.unwrap().join("raw.mimo"));
    assert_eq!(replayed.len(), recorded.len());
    for (i, (a, b)) in recorded.iter().zip(&replayed).enumerate() {
        assert_eq!(a.0, b.0, "event {i}: the data changed");
        assert_eq!(b.1, i as i64, "a new counter, as mimoCoRB2's Importer sets");
    }
    // Paced: the replay took at least the recorded span (a lower bound: load only adds).
    let span = |e: &[(Vec<u8>, i64, f64)]| e[e.len() - 1].2 - e[0].2;
    assert!(span(&recorded) > 0.2, "{}", span(&recorded));
    assert!(
        span(&replayed) >= 0.95 * span(&recorded),
        "replayed in {} s, recorded over {} s",
        span(&replayed),
        span(&recorded)
    );

    let Ok(py) = std::env::var("DAQ_PYTHON") else {
        println!("SKIPPED the Python part: set DAQ_PYTHON to a Python with numpy");
        return;
    };
    // mimoCoRB2's reader takes our file.
    let o = run_python(&py, MIMOCORB2_READ, &[rec.join("raw.mimo").as_os_str()], "");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "500");
    // A file mimoCoRB2 wrote (pickle protocol 4 or 5) replays at a fixed rate.
    let written = dir.0.join("python.mimo");
    write_like_mimocorb2(&py, MIMOCORB2_WRITE, &[written.as_os_str()]);
    let (code, out, clocked) = run(&dir, "clocked");
    assert_eq!(code, 0, "{out}");
    let original = events(&written);
    let replayed = events(&clocked.unwrap().join("raw.mimo"));
    assert_eq!(original.len(), 300);
    assert_eq!(replayed.len(), 300);
    assert!(original.iter().zip(&replayed).all(|(a, b)| a.0 == b.0));
    assert!(span(&replayed) >= 0.95 * 0.299, "{}", span(&replayed));
}

/// A pause in the middle of a mimo file's replay discarded what the file gave meanwhile
/// (as for a live device), and the counters, numbered again, showed no gap. The file now
/// keeps its events for after the resume, as `replay.hdf5`'s do.
#[test]
fn a_paused_mimo_replay_keeps_every_event_for_after_the_resume() {
    let dir = Dir::new("m2paused");
    let (code, out, rec) = run(&dir, "record");
    assert_eq!(code, 0, "{out}");
    let rec = rec.unwrap();
    let recorded = events(&rec.join("raw.mimo"));
    std::fs::copy(rec.join("raw.mimo"), dir.0.join("recorded.mimo")).unwrap();
    let (child, target) = start(&dir, "paused");
    let mut run = None;
    runs::wait_until("the replay under way", Duration::from_secs(60), || {
        run = std::fs::read_dir(&target)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path());
        run.as_ref().is_some_and(|r| r.join("stats.jsonl").exists())
    });
    let run = run.unwrap();
    runs::pause_a_while(&run, || {});
    let (code, out) = finish_within(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    let replayed = events(&run.join("raw.mimo"));
    assert_eq!(replayed.len(), recorded.len(), "{out}");
    assert!(recorded.iter().zip(&replayed).all(|(a, b)| a.0 == b.0));
}

#[test]
fn a_mimo_file_of_other_records_is_refused_before_the_run() {
    let dir = Dir::new("m2datamismatch");
    let (code, out, rec) = run(&dir, "record");
    assert_eq!(code, 0, "{out}");
    std::fs::copy(rec.unwrap().join("raw.mimo"), dir.0.join("recorded.mimo")).unwrap();
    let text = format!(
        "target_directory: other\nBuffers:\n  raw: {{slot_count: 8, data_length: 16, data_dtype: {DTYPE}}}\nWorkers:\n  replay: {{function: data.simulate_importer, sinks: [raw], config: {{filename: recorded.mimo}}}}\n  drain: {{function: exporters.drain, sources: [raw]}}\n"
    );
    let setup = dir.write("other.yaml", &text);
    let (code, out) = engine(&dir.0, &["check", setup.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("other.yaml:5:79: error:")
            && out.contains("holds 32 records of {ch0: float32, ch1: int16, flag: uint8} per event, but sink 'raw' holds 16"),
        "{out}"
    );
    assert!(
        !dir.0.join("other").exists(),
        "no run directory for a refused setup"
    );
}

/// Every kind of field a mimoCoRB2 buffer can hold, as numpy writes it.
const ALL_KINDS_NUMPY: &str = r#"[("b", "?"), ("s", "S5"), ("u", "<U3"), ("c", "<c8"), ("z", ">c16"), ("be", ">f4"), ("sub", "<i2", (2, 3)), ("us", "<U2", (2,))]"#;

/// mimoCoRB2 writing a file of every kind of field (pickle protocol `argv[2]`), 40 events of 4
/// records; prints nothing.
const MIMOCORB2_WRITE_ALL_KINDS: &str = r#"
rng = np.random.default_rng(5)
def fill(d, i):
    d["b"] = rng.random(4) < 0.5
    d["s"] = [bytes([65 + (i + k) % 26]) * (1 + k) for k in range(4)]
    d["u"] = ["µ", "αβ", "x", "ñ"][i % 4]
    d["c"] = rng.normal(size=4) + 1j * rng.normal(size=4)
    d["z"] = rng.normal(size=4) - 2j
    d["be"] = rng.normal(size=4)
    d["sub"] = rng.integers(-999, 999, size=(4, 2, 3))
    d["us"] = [["a", "ßü"]] * 4
write(sys.argv[1], np.dtype(KINDS), 4, 40, fill, protocol=int(sys.argv[2]))
"#;

/// mimoCoRB2's reader on our file: the dtype is numpy's own, and the data bytes equal those
/// of the file Python wrote (argv[2]).
const MIMOCORB2_COMPARE: &str = r#"
import pickle, sys, numpy as np
def read(path):
    with open(path, "rb") as f:
        info = pickle.load(f)
        dt, n, md = info["data_dtype"], info["data_length"], info["metadata_dtype"]
        data = []
        while True:
            d, m = f.read(dt.itemsize * n), f.read(md.itemsize)
            if len(d) < dt.itemsize * n or len(m) < md.itemsize:
                break
            data.append(d)
        return dt, n, data
ours, theirs = read(sys.argv[1]), read(sys.argv[2])
assert ours[0] == np.dtype(KINDS) == theirs[0], (ours[0], theirs[0])
assert ours[0].descr == theirs[0].descr, (ours[0].descr, theirs[0].descr)
assert ours[1] == theirs[1] == 4
assert len(ours[2]) == len(theirs[2]) == 40, (len(ours[2]), len(theirs[2]))
assert ours[2] == theirs[2]
print(np.frombuffer(ours[2][7], dtype=ours[0])[1])
"#;

/// data.export writes every kind of field mimoCoRB2's buffers hold — bool, bytes and unicode
/// text, complex, big-endian numbers, subarrays — with numpy's own pickled dtype: a file
/// Python wrote the mimoCoRB2 way (pickle protocols 2 and 5) replays through
/// data.clocked_importer into data.export, and mimoCoRB2's reader finds the same dtype and
/// the same bytes in ours. Before, `check` refused such a field ("plain little-endian
/// numbers only").
#[test]
fn data_export_writes_every_kind_of_field_numpy_reads_back() {
    let Ok(py) = std::env::var("DAQ_PYTHON") else {
        println!("SKIPPED: set DAQ_PYTHON to a Python with numpy");
        return;
    };
    for protocol in ["2", "5"] {
        let dir = Dir::new(&format!("m2datakinds{protocol}"));
        let written = dir.0.join("kinds.mimo");
        write_like_mimocorb2(
            &py,
            &MIMOCORB2_WRITE_ALL_KINDS.replace("KINDS", ALL_KINDS_NUMPY),
            &[written.as_os_str(), protocol.as_ref()],
        );
        // Our reader takes numpy's pickles of every kind.
        let header = MimoReader::open(&written).unwrap().header;
        let want = daq_engine::dtype::Dtype::parse([
            ("b", "bool"),
            ("s", "S5"),
            ("u", "U3"),
            ("c", "complex64"),
            ("z", ">c16"),
            ("be", ">f4"),
            ("sub", "(2,3)i2"),
            ("us", "(2,)U2"),
        ])
        .unwrap();
        assert_eq!(header.data_dtype, want, "protocol {protocol}");
        let text = "target_directory: runs\nBuffers:\n  raw:\n    slot_count: 8\n    data_length: 4\n    data_dtype: {b: bool, s: S5, u: U3, c: complex64, z: '>c16', be: '>f4', sub: '(2,3)i2', us: '(2,)U2'}\nWorkers:\n  replay: {function: data.clocked_importer, sinks: [raw], config: {filename: kinds.mimo, rate: 2000}}\n  export: {function: data.export, sources: [raw]}\n";
        let setup = dir.write("kinds.yaml", text);
        let child = engine_in(&dir.0, &[setup.as_os_str()])
            .args(["--no-tui", "--quiet"])
            .spawn()
            .unwrap();
        let (code, out) = finish_within(child, Duration::from_secs(120));
        assert_eq!(code, 0, "{out}");
        let run = dir.run_dir();
        run_python(
            &py,
            &MIMOCORB2_COMPARE.replace("KINDS", ALL_KINDS_NUMPY),
            &[run.join("raw.mimo").as_os_str(), written.as_os_str()],
            &format!("protocol {protocol}: "),
        );
    }
}
