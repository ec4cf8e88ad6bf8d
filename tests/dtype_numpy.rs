//! The record layout of every field type against numpy itself: for a table of type texts,
//! `numpy.dtype` of a structured dtype has our itemsize, our field offsets, and equals the
//! dtype numpy builds from our canonical text for each field (what Python workers and the
//! HDF5 check hand to numpy); a text we refuse, numpy refuses or makes a 0-byte field of.
//!
//! Needs `$DAQ_PYTHON` (else `python3`) with numpy; without it the test says SKIPPED.

use daq_engine::dtype::{Dtype, FieldType};
use std::process::Command;

mod runs;

/// Type texts as a setup may write them (every spelling `FieldType::parse` documents).
const TYPES: &[&str] = &[
    "int8",
    "i1",
    "b",
    "int16",
    "i2",
    "<i2",
    ">i2",
    "=i2",
    "int32",
    ">i4",
    "int64",
    "int",
    ">i8",
    "uint8",
    "u1",
    "B",
    "|u1",
    ">u1",
    "uint16",
    ">u2",
    "uint32",
    "u4",
    "uint64",
    ">u8",
    "float32",
    "f4",
    "<f4",
    ">f4",
    "|f4",
    "single",
    "float64",
    "f8",
    ">f8",
    "double",
    "float",
    "bool",
    "?",
    "b1",
    "bool_",
    "S1",
    "S10",
    "a5",
    "|S7",
    "U1",
    "U4",
    "<U4",
    ">U4",
    "c8",
    "complex64",
    ">c8",
    "c16",
    "complex128",
    "complex",
    ">c16",
    "(2,)f4",
    "(2,3)i2",
    "(2, 3)>i2",
    ">(2,)f4",
    "(3,)?",
    "(2,)S3",
    "(2,)U2",
    "(1,)u1",
    "()f4",
    "2f4",
    "2,3f4",
    "(2,2,2,2)u1",
    "(4,)>c8",
];

/// Texts we refuse: numpy either refuses them, makes them 0 bytes, or they are kinds a
/// buffer here does not hold (half floats, long doubles, datetimes, objects, voids).
const REFUSED: &[&str] = &[
    "S",
    "U",
    "S0",
    "U0",
    "a",
    "str",
    "bytes",
    "(0,)f4",
    "f2",
    "float16",
    "f16",
    "longdouble",
    "c32",
    "M8[ns]",
    "m8",
    "O",
    "V4",
    "(2,2,2,2,2)u1",
];

const CHECK: &str = r#"
import sys, json, numpy as np
import warnings
warnings.simplefilter("ignore")
cases, refused = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for text, size, spec in cases:
    d = np.dtype([("x", text)])
    assert d.itemsize == size, (text, d.itemsize, size)
    assert np.dtype([("x", spec)]) == d, (text, spec, d.descr)
# Structured dtypes of them all (in groups, as a dtype has at most 64 fields): offsets and
# itemsize as numpy computes them.
for group, (offsets, size) in zip(range(0, len(cases), 32), json.loads(sys.argv[3])):
    part = cases[group:group + 32]
    names = [f"f{i}" for i in range(len(part))]
    whole = np.dtype([(n, c[0]) for n, c in zip(names, part)])
    assert [whole.fields[n][1] for n in names] == offsets, ("offsets differ", group)
    assert whole.itemsize == size, (whole.itemsize, size)
for text in refused:
    try:
        d = np.dtype([("x", text)])["x"]
    except Exception:
        continue
    base = d.base
    why = (d.itemsize == 0 or base.kind in "MmOV" or (base.kind == "f" and base.itemsize in (2, 16))
           or (base.kind == "c" and base.itemsize == 32) or len(d.shape) > 4)
    assert why, (text, d)
print("numpy ok", len(cases), "types,", len(refused), "refused")
"#;

#[test]
fn sizes_and_offsets_equal_numpys() {
    let cases: Vec<String> = TYPES
        .iter()
        .map(|t| {
            let ft = FieldType::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            format!("[{t:?}, {}, {:?}]", ft.size(), ft.numpy_spec())
        })
        .collect();
    for t in REFUSED {
        assert!(FieldType::parse(t).is_err(), "{t} was taken");
    }
    let groups: Vec<String> = TYPES
        .chunks(32)
        .map(|part| {
            let names: Vec<String> = (0..part.len()).map(|i| format!("f{i}")).collect();
            let whole =
                Dtype::parse(names.iter().map(String::as_str).zip(part.iter().copied())).unwrap();
            let offsets: Vec<String> = whole
                .fields()
                .iter()
                .map(|f| f.offset.to_string())
                .collect();
            format!("[[{}], {}]", offsets.join(", "), whole.record_size())
        })
        .collect();
    let py = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).args(["-c", "import numpy"]).output() {
        Ok(o) if o.status.success() => {}
        _ => {
            println!("SKIPPED numpy comparison: {py} has no numpy");
            return;
        }
    }
    let refused: Vec<String> = REFUSED.iter().map(|t| format!("{t:?}")).collect();
    runs::script_says(
        Command::new(&py)
            .args(["-c", CHECK])
            .arg(format!("[{}]", cases.join(", ")))
            .arg(format!("[{}]", refused.join(", ")))
            .arg(format!("[{}]", groups.join(", "))),
        "numpy ok",
        "",
    );
}
