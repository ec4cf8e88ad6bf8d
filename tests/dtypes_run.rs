//! Every numpy type a mimoCoRB2 buffer can hold (issue 14), in whole runs of the real binary:
//! bool, fixed-length bytes and unicode, complex, explicit byte order and subarray fields pass
//! `daq-engine check` and run from `bench.source` through the pass-through functions
//! (`misc.copy`, `export.hdf5`, `export.csv`, `export.drain`, `bench.sink`); h5py reads the
//! run file back with exactly the setup's numpy dtype and the very bytes the source made, and
//! the CSV file holds the same values as text. A numeric built-in given such a field is
//! refused by `check` (exit 2), naming the field and its type.
//!
//! The h5py part needs `$DAQ_PYTHON` (else `python3`) with h5py and numpy; without one it
//! says SKIPPED and the rest still runs.

use std::path::{Path, PathBuf};

use daq_engine::analysis::plumbing::{bench_checksum, bench_template};
use daq_engine::dtype::Dtype;

mod runs;
use runs::{command, engine, only_run, script_says};

/// A fresh directory for the test `tag`.
fn fresh(tag: &str) -> PathBuf {
    runs::fresh(&format!("dtypes-{tag}"))
}

/// The dtype of the issue, exactly as a mimoCoRB2 user wrote it.
const ISSUE_DTYPE: &str =
    "{a: bool, b: S10, c: '>f4', d: c8, e: U4, f: '(2,)f4', g: c16, h: '<i2'}";

/// Every kind once more, with an int64 first and a uint64 last: `bench.source` stamps the
/// counter and a checksum into the first and last 8 bytes of each event, which then land in
/// number fields and every other value stays a valid one of its type (for the CSV check).
const ALL_DTYPE: &str = "{n: i8, a: '?', b: S10, c: '>f4', d: complex64, e: U4, f: '(2,)f4', \
     g: c16, h: '<i2', k: '>i4', m: '(2,3)>u2', p: '>U3', q: '(3,)b1', r: 'a3', s: '>c8', \
     t: '2,2f8', z: u8}";

/// The dtype of a `{name: type, …}` flow mapping as written above (`name: type` pairs,
/// quotes removed), the way the setup reader makes it.
fn dtype_of(flow: &str) -> Dtype {
    let inner = flow.trim().trim_start_matches('{').trim_end_matches('}');
    // Split at the commas between fields, not those inside a shape: `'2,2f8'`, `'(2,)f4'`.
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut depth = false;
    let mut cur = String::new();
    for ch in inner.chars().chain([',']) {
        match ch {
            '\'' => depth = !depth,
            ',' if !depth => {
                if let Some((k, t)) = cur.split_once(':') {
                    fields.push((k.trim().to_string(), t.trim().to_string()));
                }
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    Dtype::parse(fields.iter().map(|(k, t)| (k.as_str(), t.as_str()))).unwrap()
}

/// The bytes `bench.source` makes for events 0..n.
fn expected_events(dtype: &Dtype, data_length: usize, n: i64) -> Vec<u8> {
    let template = bench_template(dtype, data_length);
    let mut out = Vec::new();
    for c in 0..n {
        let mut ev = template.clone();
        let len = ev.len();
        ev[..8].copy_from_slice(&c.to_le_bytes());
        ev[len - 8..].copy_from_slice(&bench_checksum(c).to_le_bytes());
        out.extend_from_slice(&ev);
    }
    out
}

fn pipeline(dtype: &str, n: i64) -> String {
    format!(
        "target_directory: runs
Buffers:
  raw:
    slot_count: 500
    data_length: 16
    data_dtype: {dtype}
  copied:
    slot_count: 64
    data_length: 16
    data_dtype: {dtype}
Workers:
  source:
    function: bench.source
    sinks: [raw]
    config: {{n_events: {n}}}
  copy:
    function: misc.copy
    sources: [raw]
    sinks: [copied]
  h5:
    function: export.hdf5
    sources: [copied]
  csv:
    function: export.csv
    sources: [raw]
  drain:
    function: export.drain
    sources: [raw]
  sink:
    function: bench.sink
    sources: [raw]
"
    )
}

/// h5py: the dtype equals numpy's for the setup's types, the bytes equal `expected`, the
/// counters are 0..n; and the CSV cells are the same values. argv: h5 file, csv file, JSON
/// list of [name, numpy type], expected bytes file, n, data_length.
const CHECK: &str = r#"
import sys, json, csv, math, re, h5py, numpy as np
h5, csvfile, fields, expected, n, length = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
want = np.dtype([tuple(f) for f in fields])
with h5py.File(h5, "r") as f:
    d = f["copied"]["data"]
    assert d.dtype == want, (d.dtype, want)
    data = d[...]
    assert (f["copied"]["metadata"]["counter"][:] == np.arange(n)).all()
raw = np.fromfile(expected, dtype=want).reshape(n, length)
assert data.shape == (n, length), data.shape
assert data.tobytes() == raw.tobytes(), "the bytes differ"
assert data.dtype == raw.dtype
ok_values = 0
if csvfile:
    def unescape(s):
        out, i = [], 0
        while i < len(s):
            if s[i] == "\\" and s[i + 1] == "\\":
                out.append("\\"); i += 2
            elif s[i] == "\\" and s[i + 1] == "x":
                out.append(chr(int(s[i + 2:i + 4], 16))); i += 4
            else:
                out.append(s[i]); i += 1
        return "".join(out)
    def same(cell, v):
        if isinstance(v, np.bool_):
            return cell == str(bool(v))
        if isinstance(v, np.integer):
            return int(cell) == int(v)
        if isinstance(v, np.floating):
            x = type(v)(float(cell))
            return (math.isnan(x) and math.isnan(v)) or x == v
        if isinstance(v, np.complexfloating):
            z = complex(cell)
            parts = [(type(v.real)(a), b) for a, b in ((z.real, v.real), (z.imag, v.imag))]
            return all((math.isnan(a) and math.isnan(b)) or a == b for a, b in parts)
        if isinstance(v, bytes):
            return unescape(cell).encode("latin-1") == v
        if isinstance(v, str):
            return unescape(cell) == v
        raise AssertionError(f"unexpected {type(v)}")
    rows = list(csv.reader(open(csvfile, newline="")))
    names = ["counter", "timestamp", "deadtime"]
    for name in want.names:
        sub = want[name]
        if sub.shape:
            for idx in np.ndindex(sub.shape):
                names.append(name + "".join(f"[{i}]" for i in idx))
        else:
            names.append(name)
    assert rows[0] == names, (rows[0], names)
    body = rows[1:]
    assert len(body) == n * length, len(body)
    flat = data.reshape(-1)
    for r, (row, rec) in enumerate(zip(body, flat)):
        assert int(row[0]) == r // length, (r, row[0])
        cells = iter(row[3:])
        for name in want.names:
            v = rec[name]
            for x in (np.asarray(v).reshape(-1) if want[name].shape else [v]):
                if isinstance(x, np.bytes_): x = bytes(x)
                if isinstance(x, np.str_): x = str(x)
                cell = next(cells)
                assert same(cell, x), (r, name, cell, x)
                ok_values += 1
print("h5py ok", data.shape, "csv values", ok_values)
"#;

fn python() -> Option<String> {
    let py = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".into());
    match command(&py).args(["-c", "import h5py, numpy"]).output() {
        Ok(o) if o.status.success() => Some(py),
        _ => {
            println!(
                "SKIPPED h5py check: {py} has no h5py/numpy (scripts/test.sh makes a venv with it)"
            );
            None
        }
    }
}

fn h5py_check(dir: &Path, run: &Path, dtype: &Dtype, csv: bool, n: i64) {
    let Some(py) = python() else { return };
    let expected = dir.join("expected.bin");
    std::fs::write(&expected, expected_events(dtype, 16, n)).unwrap();
    let fields: Vec<String> = dtype
        .fields()
        .iter()
        .map(|f| format!("[{:?}, {:?}]", f.name, f.ty.numpy_spec()))
        .collect();
    let csvfile = if csv {
        run.join("raw.csv").display().to_string()
    } else {
        String::new()
    };
    script_says(
        command(&py)
            .args(["-c", CHECK])
            .arg(run.join("copied.h5"))
            .arg(csvfile)
            .arg(format!("[{}]", fields.join(", ")))
            .arg(&expected)
            .arg(n.to_string())
            .arg("16"),
        "h5py ok",
        "h5py check failed:\n",
    );
}

/// Runs the setup `file` in `dir` to its end; asserts exit 0 and returns the run directory.
fn run_to_the_end(dir: &Path, file: &str) -> PathBuf {
    let (code, text) = engine(dir, &[file, "--quiet"]);
    assert_eq!(code, 0, "{text}");
    only_run(dir)
}

/// The setup of the issue, as written: `check` passes, the run goes through every
/// pass-through function, h5py returns the setup's dtype and the bytes `bench.source` made.
#[test]
fn the_issue_setup_checks_runs_and_reads_back_in_h5py() {
    let dir = fresh("issue");
    let n = 300;
    std::fs::write(dir.join("s.yaml"), pipeline(ISSUE_DTYPE, n)).unwrap();
    let (code, text) = engine(&dir, &["check", "s.yaml"]);
    assert_eq!(code, 0, "{text}");
    let run = run_to_the_end(&dir, "s.yaml");
    let sink: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench_sink_0.json")).unwrap())
            .unwrap();
    assert_eq!(sink["events"], n, "{sink}");
    assert_eq!(sink["corrupt"], 0, "{sink}");
    assert_eq!(sink["out_of_order"], 0, "{sink}");
    let drain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("drain_drain_0.json")).unwrap())
            .unwrap();
    assert_eq!(drain["events"], n, "{drain}");
    let dtype = dtype_of(ISSUE_DTYPE);
    assert_eq!(dtype.record_size(), 1 + 10 + 4 + 8 + 16 + 8 + 16 + 2);
    let lines = std::fs::read_to_string(run.join("raw.csv")).unwrap();
    assert_eq!(lines.lines().count(), 1 + 16 * n as usize);
    assert!(
        lines.starts_with("counter,timestamp,deadtime,a,b,c,d,e,f[0],f[1],g,h\n"),
        "{}",
        &lines[..100]
    );
    // Our own reader (recover, inspect) rebuilds the same dtype from the file's types.
    let back = daq_engine::export::read_buffer(run.join("copied.h5"), "copied").unwrap();
    assert_eq!(back.dtype, dtype);
    assert_eq!(back.data, expected_events(&dtype, 16, n));
    h5py_check(&dir, &run, &dtype, false, n);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every kind, with values valid for their types: the h5py dtype and bytes, and every CSV
/// cell read back (Python's csv module) equal to the value h5py returns.
#[test]
fn every_kind_round_trips_through_hdf5_and_csv() {
    let dir = fresh("all");
    let n = 120;
    std::fs::write(dir.join("s.yaml"), pipeline(ALL_DTYPE, n)).unwrap();
    let run = run_to_the_end(&dir, "s.yaml");
    let dtype = dtype_of(ALL_DTYPE);
    h5py_check(&dir, &run, &dtype, true, n);
    // Replayed through the same kind of chain (replay.hdf5 → export.hdf5), every field
    // keeps its type and bytes, and the events their counters and timestamps (dead time is
    // the replay's own).
    let replay = dir.join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    let setup = format!(
        "target_directory: runs
Buffers:
  copied:
    slot_count: 64
    data_length: 16
    data_dtype: {ALL_DTYPE}
Workers:
  source:
    function: replay.hdf5
    sinks: [copied]
    config: {{files: [{}]}}
  h5:
    function: export.hdf5
    sources: [copied]
",
        run.join("copied.h5").display()
    );
    std::fs::write(replay.join("r.yaml"), setup).unwrap();
    let replayed = run_to_the_end(&replay, "r.yaml");
    let first = daq_engine::export::read_buffer(run.join("copied.h5"), "copied").unwrap();
    let again = daq_engine::export::read_buffer(replayed.join("copied.h5"), "copied").unwrap();
    assert_eq!(again.dtype, dtype);
    assert_eq!(again.data, expected_events(&dtype, 16, n));
    let stamps = |b: &daq_engine::export::BufferContents| -> Vec<(i64, f64)> {
        b.metadata
            .iter()
            .map(|m| (m.counter, m.timestamp))
            .collect()
    };
    assert_eq!(stamps(&again), stamps(&first));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A built-in that reads numbers is refused at `check` for a field it cannot read, with the
/// field and its type named, rather than misreading the bytes.
#[test]
fn numeric_builtins_refuse_fields_they_cannot_read() {
    let dir = fresh("refuse");
    for (function, config, field, kind) in [
        ("filter.threshold", "{level: 0.5}", "'a'", "bool"),
        (
            "filter.threshold",
            "{level: 0.5, channels: [c]}",
            "'c'",
            "big-endian",
        ),
        (
            "process.baseline",
            "{channels: [f], baseline_samples: 4}",
            "'f'",
            "subarray of shape (2,)",
        ),
        (
            "filter.threshold",
            "{level: 0.5, channels: [d]}",
            "'d'",
            "complex64",
        ),
        (
            "filter.threshold",
            "{level: 0.5, channels: [b]}",
            "'b'",
            "S10",
        ),
    ] {
        let setup = format!(
            "Buffers:
  raw:
    slot_count: 500
    data_length: 16
    data_dtype: {ISSUE_DTYPE}
  out:
    slot_count: 8
    data_length: 16
    data_dtype: {ISSUE_DTYPE}
Workers:
  source:
    function: bench.source
    sinks: [raw]
  work:
    function: {function}
    sources: [raw]
    sinks: [out]
    config: {config}
  drain:
    function: export.drain
    sources: [out]
"
        );
        std::fs::write(dir.join("s.yaml"), setup).unwrap();
        let (code, text) = engine(&dir, &["check", "s.yaml"]);
        assert_eq!(code, 2, "{function} {config}: {text}");
        assert!(
            text.contains(&format!("field {field}")) && text.contains(kind),
            "{function} {config}: {text}"
        );
        assert!(!dir.join("runs").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
