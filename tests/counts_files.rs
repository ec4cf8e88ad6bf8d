//! Files physicists can afford: a digitizer stores the ADC counts it gives (int8/int16) and
//! the file says how they become volts. Each simulated source runs twice through the real
//! binary with the same seed, once writing volts and once writing counts, into
//! `export.hdf5`; h5py then applies the documented recipe
//! `volts = counts * d.attrs["<field>.volts_per_count"] + d.attrs["<field>.offset_volts"]`
//! to the counts file and must find the volts file within one count, sample by sample.
//! A sink whose dtype does not fit the chosen format is refused by `check` (exit 2) at the
//! `format` line.
//!
//! Needs a Python with h5py and numpy (`$DAQ_PYTHON`); without one the h5py part prints
//! SKIPPED and the test checks the attributes with the crate's own reader.

use std::path::PathBuf;
use std::process::Command;

mod runs;
use runs::{exited_0, simulated, stderr, Dir};

/// The documented recipe, applied to every field with a scale: the largest difference from
/// the volts file in counts, per field, as `field max_counts` lines.
const RECIPE: &str = r#"
import sys, h5py, numpy as np
counts_file, volts_file, buffer = sys.argv[1:4]
with h5py.File(counts_file, "r") as fc, h5py.File(volts_file, "r") as fv:
    c, v = fc[buffer]["data"], fv[buffer]["data"]
    assert c.shape == v.shape, (c.shape, v.shape)
    for name in c.dtype.names:
        if name + ".volts_per_count" not in c.attrs:
            continue
        assert c.dtype[name].kind in "iu", c.dtype[name]
        per_count = c.attrs[name + ".volts_per_count"]
        volts = c[name] * per_count + c.attrs[name + ".offset_volts"]
        assert np.isfinite(per_count) and per_count > 0, per_count
        print(name, float(np.max(np.abs(volts - v[name]))) / per_count)
"#;

/// Runs `setup` (with `{FORMAT}` and `{DTYPE}` filled in) with `--simulate --max-events n`
/// in a scratch directory of its own; that directory (removed on drop) and the HDF5 file of
/// buffer `raw`.
fn run(tag: &str, setup: &str, format: &str, dtype: &str, n: u64) -> (Dir, PathBuf) {
    let dir = Dir::new(&format!("{tag}-{format}"));
    let file = dir.0.join(format!("{format}.yaml"));
    std::fs::write(
        &file,
        setup.replace("{FORMAT}", format).replace("{DTYPE}", dtype),
    )
    .unwrap();
    let out = simulated(&file, n, &dir.0)
        .output()
        .expect("run daq-engine");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{format}: {err}");
    let h5 = dir.only_dir().join("raw.h5");
    (dir, h5)
}

/// Runs [`RECIPE`] with `py` on buffer `buffer` of the two files, expecting success (the
/// message starts with `tag`): its output, one `field max_counts` line per scaled field.
fn recipe(
    py: &str,
    counted: &std::path::Path,
    volts: &std::path::Path,
    buffer: &str,
    tag: &str,
) -> String {
    let out = Command::new(py)
        .args(["-c", RECIPE])
        .arg(counted)
        .arg(volts)
        .arg(buffer)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tag}{text}{}", stderr(&out));
    text
}

/// Runs the pair and checks the counts file against the volts file: the scale attributes of
/// every field in `fields`, and with h5py, the recipe within one count.
fn counts_match_volts(tag: &str, setup: &str, counts: &str, fields: &[&str], n: u64) {
    let dtype_of = |t: &str| {
        fields
            .iter()
            .map(|f| format!("{f}: {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (_v, volts) = run(tag, setup, "volts", &dtype_of("float32"), n);
    let (_c, counted) = run(tag, setup, "counts", &dtype_of(counts), n);
    let facts = daq_engine::export::inspect(&counted).unwrap();
    for f in fields {
        assert!(
            facts.contains(&format!("{f}.volts_per_count")),
            "{tag}: no scale for {f} in\n{facts}"
        );
    }
    let py = match daq_engine::export::bench::h5py_python() {
        Ok(py) => py,
        Err(why) => {
            println!("SKIPPED h5py part of {tag}: {why}");
            return;
        }
    };
    let text = recipe(&py, &counted, &volts, "raw", &format!("{tag}: "));
    let mut seen = Vec::new();
    for line in text.lines() {
        let (field, off) = line.split_once(' ').unwrap();
        let off: f64 = off.parse().unwrap();
        assert!(
            off <= 1.0,
            "{tag}: {field} is {off} counts away from the volts"
        );
        seen.push(field.to_string());
    }
    assert_eq!(seen, fields, "{tag}: {text}");
}

const PICOSCOPE: &str = r#"
Buffers:
  raw:
    slot_count: 16
    data_length: 200
    data_dtype: {{DTYPE}}
Workers:
  scope:
    function: device.picoscope
    sinks: [raw]
    config:
      family: ps5000a
      channels: [A, B]
      ranges: [0.5, 0.2]
      analog_offset: 0.05
      pre_trigger: 50
      post_trigger: 150
      captures_per_run: 10
      trigger_level: -0.05
      format: {FORMAT}
      sim_rate: 0
      seed: 5
  waveforms:
    function: export.hdf5
    sources: [raw]
"#;

/// PicoScope through the fake-picosdk library: int16 counts, with the analogue offset taken
/// off as the volts path does.
#[test]
fn picoscope_counts_give_the_volts_with_the_recipe() {
    if let Err(e) = daq_engine::devices::usb::fake_picosdk() {
        println!("SKIPPED: {e}");
        return;
    }
    counts_match_volts("pico", PICOSCOPE, "int16", &["chA", "chB"], 30);
}

const HANTEK: &str = r#"
Buffers:
  raw:
    slot_count: 16
    data_length: 500
    data_dtype: {{DTYPE}}
Workers:
  scope:
    function: device.hantek6022
    sinks: [raw]
    config:
      channels: 2
      ranges: [2.5, 5.0]
      samples_per_event: 500
      trigger_channel: 1
      trigger_level: 0.3
      pre_trigger: 50
      format: {FORMAT}
      sim_rate: 2000
      seed: 3
  waveforms:
    function: export.hdf5
    sources: [raw]
"#;

/// Hantek 6022 through its simulated USB device: int8 counts (0 ≈ 0 V).
#[test]
fn hantek_counts_give_the_volts_with_the_recipe() {
    counts_match_volts("hantek", HANTEK, "int8", &["ch1", "ch2"], 10);
}

const DRS4: &str = r#"
Buffers:
  raw:
    slot_count: 16
    data_length: 1024
    data_dtype: {{DTYPE}}
Workers:
  digitizer:
    function: device.drs4
    sinks: [raw]
    config:
      range_centre: 0.2
      trigger: ch1
      trigger_level: -0.05
      format: {FORMAT}
      seed: 9
  waveforms:
    function: export.hdf5
    sources: [raw]
"#;

/// DRS4 through its simulated board: int16 calibrated counts of 1/32768 V around the range
/// centre.
#[test]
fn drs4_counts_give_the_volts_with_the_recipe() {
    counts_match_volts("drs4", DRS4, "int16", &["ch1", "ch2", "ch3", "ch4"], 8);
}

const SIMULATOR: &str = r#"
Buffers:
  raw: &w
    slot_count: 16
    data_length: 300
    data_dtype: {{DTYPE}}
  triggered: *w
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {adc_bits: 12, adc_range: 0.5, noise: 0.004, amplitude_mean: 0.3, seed: 4, n_events: 50}
  trigger:
    function: filter.threshold
    sources: [raw]
    sinks: [triggered]
    config: {level: {LEVEL}, channels: [chA]}
  waveforms:
    function: export.hdf5
    sources: [triggered]
    config: {filename: raw}
"#;

/// `simulate.pulses` into int16 fields, exported behind a filter (which passes the scales
/// on): the recipe gives the volts of the float32 run with the same ADC.
#[test]
fn simulator_counts_behind_a_filter_give_the_volts_with_the_recipe() {
    // The trigger level is in each run's own units: 0.1 V is 409.6 counts of 0.5 V / 2048.
    let (_v, volts) = run(
        "sim",
        &SIMULATOR.replace("{LEVEL}", "0.1"),
        "volts",
        "chA: float32, chB: float32",
        50,
    );
    let (_c, counted) = run(
        "sim",
        &SIMULATOR.replace("{LEVEL}", "409.6"),
        "counts",
        "chA: int16, chB: int16",
        50,
    );
    let facts = daq_engine::export::inspect(&counted).unwrap();
    assert!(facts.contains("chA.volts_per_count"), "{facts}");
    match daq_engine::export::bench::h5py_python() {
        Ok(py) => {
            let text = recipe(&py, &counted, &volts, "triggered", "");
            assert_eq!(text.lines().count(), 2, "{text}");
            for line in text.lines() {
                let off: f64 = line.split_once(' ').unwrap().1.parse().unwrap();
                assert!(off <= 1.0, "{line}");
            }
        }
        Err(why) => println!("SKIPPED h5py part: {why}"),
    }
}

/// Runs `daq-engine check` on `setup` with `format` and `dtype` filled in: it must exit 2
/// with an error at the `format` line saying `why`.
fn check_refuses(setup: &str, format: &str, dtype: &str, why: &str) {
    let d = Dir::new(&format!("check-{format}"));
    let file = d.0.join("wrong.yaml");
    let text = setup.replace("{FORMAT}", format).replace("{DTYPE}", dtype);
    std::fs::write(&file, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("format:"))
        .unwrap()
        + 1;
    let out = runs::check(&[], &file);
    let err = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = format!("{}:{line}:", file.display());
    assert!(err.contains(&at), "no {at} in:\n{err}");
    assert!(
        err.contains(why) && err.contains(&format!("'{format}' writes")),
        "{err}"
    );
}

/// A sink whose dtype does not fit the sample format is refused by `check` before anything
/// runs, at the `format` line, saying what to declare. (The PicoScope's counts into float32
/// fields passed `check` before and failed only when the run started.)
#[test]
fn check_refuses_a_dtype_that_does_not_fit_the_format() {
    check_refuses(
        HANTEK,
        "counts",
        "ch1: float32, ch2: float32",
        "ch1 is float32 but must be int8",
    );
    check_refuses(
        PICOSCOPE,
        "counts",
        "chA: float32, chB: float32",
        "chA is float32 but must be int16",
    );
    check_refuses(
        DRS4,
        "volts",
        "ch1: int16, ch2: int16, ch3: int16, ch4: int16",
        "ch1 is int16 but must be float32",
    );
}

/// The importer writes its scales after the exporter created its file (they start at the
/// same time): the attributes are added at the next flush, in SWMR mode, not only at close,
/// so a file whose writer is killed has them; a float field gets none.
#[test]
fn scales_written_after_the_file_was_created_are_in_it_at_the_next_flush() {
    use daq_engine::dtype::{Dtype, Metadata};
    use daq_engine::export::hdf5::{BufferOptions, RunFileWriter, RunInfo, WriterOptions};
    use daq_engine::run_dir::scales::{scales_path, FieldScale, SampleScales};
    let d = Dir::new("late-scales");
    let dtype = Dtype::parse([("chA", "i2"), ("t", "f4")]).unwrap();
    let mut w = RunFileWriter::create(
        d.0.join("raw.h5"),
        RunInfo::new("buffers: {}\n"),
        WriterOptions::default(),
    )
    .unwrap();
    let raw = w
        .add_buffer("raw", &dtype, 4, BufferOptions::default())
        .unwrap();
    w.keep_scales(raw, scales_path(&d.0, "adc")).unwrap();
    let event = vec![1u8; dtype.record_size() * 4];
    let meta = |counter| Metadata {
        counter,
        timestamp: 1.0,
        deadtime: 0.0,
    };
    w.append(raw, &event, &meta(0)).unwrap();
    w.flush().unwrap();
    let facts = daq_engine::export::inspect(d.0.join("raw.h5")).unwrap();
    assert!(!facts.contains("volts_per_count"), "{facts}");
    SampleScales {
        buffer: "raw".into(),
        fields: vec![FieldScale {
            field: "chA".into(),
            volts_per_count: 0.25,
            offset_volts: -1.5,
        }],
    }
    .write(&d.0, "adc")
    .unwrap();
    w.append(raw, &event, &meta(1)).unwrap();
    w.flush().unwrap();
    // Still open for writing (as after a crash): the values are there.
    let facts = daq_engine::export::inspect(d.0.join("raw.h5")).unwrap();
    assert!(
        facts.contains("@chA.volts_per_count = 0.25") && facts.contains("@chA.offset_volts = -1.5"),
        "{facts}"
    );
    assert!(!facts.contains("@t.volts_per_count"), "{facts}");
    drop(w);
}

/// The Red Pitaya's traces were int16 counts already; now the file says what they are worth,
/// negative for an input the negator inverts (SCPI transport, simulated server).
#[test]
fn redpitaya_counts_carry_their_scale_and_the_negators_sign() {
    let setup = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/setups/redpitaya_scpi.yaml"
    ))
    .unwrap();
    let text = setup.replacen("negator_IN1: false", "negator_IN1: true", 1);
    assert!(text.contains("negator_IN1: true"), "no negator_IN1 line");
    let d = Dir::new("redpitaya");
    let file = d.0.join("rp.yaml");
    std::fs::write(&file, text).unwrap();
    exited_0(simulated(&file, 20, &d.0).output().unwrap());
    let facts = daq_engine::export::inspect(d.only_dir().join("oscilloscope.h5")).unwrap();
    assert!(
        facts.contains("@IN1.volts_per_count = -0.0001220703125")
            && facts.contains("@IN2.volts_per_count = 0.0001220703125")
            && facts.contains("@IN1.offset_volts = 0"),
        "{facts}"
    );
}
