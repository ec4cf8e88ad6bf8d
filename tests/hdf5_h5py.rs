//! The real client: h5py reads run files written by the writer (rotated over several files)
//! and checks that the compound fields and dtypes equal numpy's for the setup's dtype, that
//! counters 0..N appear exactly once across the files, and that the structured arrays are
//! byte for byte what was appended. `h5dump -H` must run clean on every file.
//!
//! Needs a Python with h5py and numpy: `$DAQ_PYTHON`, else `python3`. Without one the test
//! says why and checks only h5dump (CI provides the venv).

use std::process::Command;
use std::time::Duration;

use daq_engine::dtype::{Base, ByteOrder, Dtype, FieldType, Metadata, Scalar};
use daq_engine::export::hdf5::{
    BufferOptions, Compression, Rotation, RunFileWriter, RunInfo, RunStats, WriterOptions,
};

mod hdf5_files;
use hdf5_files::h5dump_clean;

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

/// The bytes of one element of `t` made from the random number `x`: a valid value of its
/// type (bool 0/1, text of printable and non-ASCII characters, NUL-padded) in its byte order.
fn element(t: &FieldType, x: u64) -> Vec<u8> {
    let big = t.order == ByteOrder::Big;
    let f32b = |v: f32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let f64b = |v: f64| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    match t.base {
        Base::Num(Scalar::F32) => f32b((x % 100_000) as f32 * 0.013 - 40.0).to_vec(),
        Base::Num(Scalar::F64) => f64b((x % 1_000_000) as f64 * 1e-3).to_vec(),
        Base::Num(s) => {
            let b = if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            };
            if big {
                b[8 - s.size()..].to_vec()
            } else {
                b[..s.size()].to_vec()
            }
        }
        Base::Bool => vec![(x & 1) as u8],
        Base::Complex64 => [
            f32b((x % 1000) as f32 * 0.5),
            f32b(-(((x >> 20) % 999) as f32)),
        ]
        .concat(),
        Base::Complex128 => [
            f64b((x % 1000) as f64 * 0.25),
            f64b(-(((x >> 20) % 997) as f64)),
        ]
        .concat(),
        Base::Bytes(n) => {
            let len = (x % (u64::from(n) + 1)) as usize;
            let mut b: Vec<u8> = (0..n as usize)
                .map(|i| {
                    if i < len {
                        b"ab,\"x "[(x as usize + i) % 6]
                    } else {
                        0
                    }
                })
                .collect();
            if len > 0 {
                b[0] = b'A' + (x % 26) as u8
            }
            b
        }
        Base::Unicode(n) => {
            let chars = ['a', 'Z', 'é', 'λ', '€', '😀', ','];
            let len = (x % (u64::from(n) + 1)) as usize;
            (0..n as usize)
                .flat_map(|i| {
                    let c = if i < len {
                        chars[(x as usize + i) % chars.len()] as u32
                    } else {
                        0
                    };
                    if big {
                        c.to_be_bytes()
                    } else {
                        c.to_le_bytes()
                    }
                })
                .collect()
        }
    }
}

/// A seeded source of records: every field (every element of a subarray) gets values of
/// its own type.
fn simulated_event(state: &mut u64, dtype: &Dtype, data_length: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(dtype.record_size() * data_length);
    for _ in 0..data_length {
        for f in dtype.fields() {
            for _ in 0..f.ty.count() {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                out.extend_from_slice(&element(&f.ty, *state));
            }
        }
    }
    out
}

#[test]
fn h5py_reads_rotated_files_exactly() {
    let dtype = Dtype::parse([
        ("height", "f4"),
        ("time", "f8"),
        ("channel", "u1"),
        ("adc", "i2"),
        ("flags", "u4"),
        ("id", "i8"),
    ])
    .unwrap();
    let files = write_and_check("rotated", &dtype, 50, 300, Some(150_000));
    assert!(files >= 3, "{files} files");
}

/// Every kind of field a mimoCoRB2 buffer can hold (issue 14): h5py reads the run file back
/// with exactly the setup's numpy dtype (bool as h5py's enum, S as a fixed ASCII string, U
/// as an opaque type tagged `NUMPY:<U4`, complex as {r, i}, big-endian members, subarrays as
/// HDF5 arrays) and the very bytes that were written.
#[test]
fn h5py_reads_every_field_type_back_as_the_setup_dtype() {
    let dtype = Dtype::parse([
        ("a", "bool"),
        ("b", "S10"),
        ("c", ">f4"),
        ("d", "c8"),
        ("e", "U4"),
        ("f", "(2,)f4"),
        ("g", "c16"),
        ("h", "<i2"),
        ("k", ">i8"),
        ("m", "(2,3)>u2"),
        ("n", ">c16"),
        ("p", ">U3"),
        ("q", "(3,)?"),
        ("r", "(2,)S3"),
        ("s", "2u1"),
        ("t", ">f8"),
    ])
    .unwrap();
    write_and_check("types", &dtype, 16, 40, None);
}

/// Writes `n` simulated events of `dtype` (rotating at `max_bytes`), checks every file with
/// h5dump and, where h5py is present, the dtype and every byte; returns the number of files.
fn write_and_check(
    tag: &str,
    dtype: &Dtype,
    data_length: usize,
    n: i64,
    max_bytes: Option<u64>,
) -> usize {
    let dir = hdf5_files::temp_dir(&format!("h5py-{tag}"));
    let options = WriterOptions {
        flush_interval: Duration::from_millis(1),
        rotation: Rotation {
            max_bytes,
            max_duration: None,
        },
    };
    let setup = "Buffers:\n  pulses: {slot_count: 8}\n";
    let mut w = RunFileWriter::create(dir.join("run.h5"), RunInfo::new(setup), options).unwrap();
    let b = w
        .add_buffer(
            "pulses",
            dtype,
            data_length,
            BufferOptions {
                compression: Compression::Deflate { level: 6 },
                chunk_bytes: 16 * 1024,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    let mut state = 0x5EED_u64;
    let mut raw = Vec::new();
    for c in 0..n {
        let ev = simulated_event(&mut state, dtype, data_length);
        let meta = Metadata {
            counter: c,
            timestamp: 1.7e9 + c as f64 * 1e-3,
            deadtime: 0.01,
        };
        w.append(b, &ev, &meta).unwrap();
        raw.extend_from_slice(&ev);
    }
    let summary = w.finish(RunStats::default()).unwrap();
    for f in &summary.files {
        h5dump_clean(f);
    }
    let raw_path = dir.join("expected.bin");
    std::fs::write(&raw_path, &raw).unwrap();
    let descr: Vec<String> = dtype
        .fields()
        .iter()
        .map(|f| format!("[\"{}\", \"{}\"]", f.name, f.ty.numpy_spec()))
        .collect();
    let files: Vec<String> = summary
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match daq_engine::export::bench::h5py_python() {
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
    summary.files.len()
}
