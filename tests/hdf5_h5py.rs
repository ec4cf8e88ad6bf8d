//! The real client: h5py reads run files written by the writer (rotated over several files)
//! and checks that the compound fields and dtypes equal numpy's for the setup's dtype, that
//! counters 0..N appear exactly once across the files, and that the structured arrays are
//! byte for byte what was appended. `h5dump -H` must run clean on every file.
//!
//! Needs a Python with h5py and numpy: `$DAQ_PYTHON`, else `python3`. Without one the test
//! says why and checks only h5dump (CI provides the venv).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::export::hdf5::{
    BufferOptions, Compression, Rotation, RunFileWriter, RunInfo, RunStats, WriterOptions,
};

const CHECK: &str = r#"
import sys, json, h5py, numpy as np
files, descr, data_length, n, raw_path = sys.argv[1].split(","), json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
want_dtype = np.dtype([tuple(f) for f in descr])
want = np.fromfile(raw_path, dtype=want_dtype).reshape(n, data_length)
counters, rows = [], []
for name in files:
    with h5py.File(name, "r") as f:
        d, m = f["pulses/data"], f["pulses/metadata"]
        assert d.dtype == want_dtype, (d.dtype, want_dtype)
        assert d.dtype.names == want_dtype.names
        assert [d.dtype[k].str for k in d.dtype.names] == [want_dtype[k].str for k in want_dtype.names]
        assert m.dtype == np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")]), m.dtype
        assert d.shape[1] == data_length and d.shape[0] == m.shape[0]
        assert d.chunks is not None and d.maxshape[0] is None
        assert f.attrs["setup"] == "Buffers:\n  pulses: {slot_count: 8}\n", f.attrs["setup"]
        assert f.attrs["closed_cleanly"] == 1
        assert f.attrs["stop_time"].endswith("Z") and f.attrs["start_time"] <= f.attrs["stop_time"]
        c = m["counter"][:]
        counters.extend(c.tolist())
        arr = d[:]
        assert (arr == want[c]).all(), name
        assert arr.tobytes() == want[c].tobytes(), name
        rows.append(len(c))
assert sorted(counters) == list(range(n)), "counters are not 0..N once"
assert counters == list(range(n)), "counters out of order"
print("h5py ok", len(files), "files", rows)
"#;

fn h5py_python() -> Result<String, String> {
    let py = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".to_string());
    match Command::new(&py)
        .args(["-c", "import h5py, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(py),
        Ok(o) => Err(format!(
            "{py} cannot import h5py/numpy: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("{py} not runnable: {e}")),
    }
}

fn h5dump_clean(path: &Path) {
    match Command::new("h5dump").arg("-H").arg(path).output() {
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !err.contains("error"),
                "h5dump -H {} failed: {}\n{}",
                path.display(),
                out.status,
                err
            );
        }
        Err(e) => println!("SKIPPED h5dump check: h5dump not runnable ({e}); install hdf5-tools"),
    }
}

/// A seeded source of pulse records: every field gets values of its own type.
fn simulated_event(state: &mut u64, dtype: &Dtype, data_length: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(dtype.record_size() * data_length);
    for _ in 0..data_length {
        for f in dtype.fields() {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let x = *state;
            let bytes: Vec<u8> = match f.scalar.name() {
                "float32" => ((x % 100_000) as f32 * 0.013 - 40.0).to_le_bytes().to_vec(),
                "float64" => ((x % 1_000_000) as f64 * 1e-3).to_le_bytes().to_vec(),
                _ => x.to_le_bytes()[..f.scalar.size()].to_vec(),
            };
            out.extend_from_slice(&bytes);
        }
    }
    out
}

#[test]
fn h5py_reads_rotated_files_exactly() {
    let dir = std::env::temp_dir().join(format!("daq-hdf5-h5py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dtype = Dtype::parse([
        ("height", "f4"),
        ("time", "f8"),
        ("channel", "u1"),
        ("adc", "i2"),
        ("flags", "u4"),
        ("id", "i8"),
    ])
    .unwrap();
    let data_length = 50;
    let n = 300i64;
    let options = WriterOptions {
        flush_interval: Duration::from_millis(1),
        rotation: Rotation {
            max_bytes: Some(150_000),
            max_duration: None,
        },
    };
    let setup = "Buffers:\n  pulses: {slot_count: 8}\n";
    let mut w = RunFileWriter::create(dir.join("run.h5"), RunInfo::new(setup), options).unwrap();
    let b = w
        .add_buffer(
            "pulses",
            &dtype,
            data_length,
            BufferOptions {
                compression: Compression::Deflate { level: 6 },
                chunk_bytes: 16 * 1024,
            },
        )
        .unwrap();
    let mut state = 0x5EED_u64;
    let mut raw = Vec::new();
    for c in 0..n {
        let ev = simulated_event(&mut state, &dtype, data_length);
        let meta = Metadata {
            counter: c,
            timestamp: 1.7e9 + c as f64 * 1e-3,
            deadtime: 0.01,
        };
        w.append(b, &ev, &meta).unwrap();
        raw.extend_from_slice(&ev);
    }
    let summary = w.finish(RunStats::default()).unwrap();
    assert!(summary.files.len() >= 3, "{:?}", summary.files);
    for f in &summary.files {
        h5dump_clean(f);
    }
    let raw_path = dir.join("expected.bin");
    std::fs::write(&raw_path, &raw).unwrap();
    let descr: Vec<String> = dtype
        .fields()
        .iter()
        .map(|f| format!("[\"{}\", \"{}\"]", f.name, f.scalar.numpy_str()))
        .collect();
    let files: Vec<String> = summary
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match h5py_python() {
        Ok(py) => {
            let out = Command::new(&py)
                .args(["-c", CHECK])
                .arg(files.join(","))
                .arg(format!("[{}]", descr.join(", ")))
                .arg(data_length.to_string())
                .arg(n.to_string())
                .arg(&raw_path)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "h5py check failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("h5py ok"), "{stdout}");
            println!("{}", stdout.trim());
        }
        Err(why) => println!(
            "SKIPPED h5py part: {why}. Set DAQ_PYTHON to a Python with h5py and numpy \
             (python3 -m venv target/venv && target/venv/bin/pip install h5py numpy)"
        ),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
