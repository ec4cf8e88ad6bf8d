//! PicoScope 3000A (`family: ps3000a`) end to end through the real `daq-engine` binary and
//! the fake PicoSDK library under the name `libps3000a.so`: a whole run whose HDF5 file
//! holds exactly the seeded captures the fake generates, opened on a unit that asks about
//! its power source (no DC adapter), the same in Pico's block mode (`mode: block`), and
//! `check` refusing a family the driver lacks and a range the setup's model lacks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use daq_drivers::picoscope::{Acquisition, PicoScope, PicoScopeConfig, PS3000A};
use daq_drivers::{ReadOutcome, Source};

mod runs;
use runs::{check, h5_files, simulated, stderr, summary_events, value_at, Dir};

const SEED: u64 = 11;

fn setup(dir: &Dir, family: &str) -> PathBuf {
    let text = format!(
        "options: {{max_seconds: 60, stats_interval: 1}}
Buffers:
  raw:
    slot_count: 128
    data_length: 500
    data_dtype: {{chA: float32, chB: float32, chC: float32, chD: float32}}
Workers:
  scope:
    function: device.picoscope
    sinks: [raw]
    config:
      family: {family}
      channels: [A, B, C, D]
      ranges: 0.5
      sample_interval: 8.0e-9
      mode: rapid_block
      pre_trigger: 100
      post_trigger: 400
      captures_per_run: 100
      trigger_channel: A
      trigger_level: -0.05
      trigger_direction: falling
      format: volts
      sim_rate: 500
      seed: {SEED}
  file:
    function: export.hdf5
    sources: [raw]
"
    );
    let path = dir.0.join(format!("{family}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The first `n` events the fake's ps3000a unit gives the driver for the setup above,
/// read in this process from a private copy of the fake with the same seed; `block`: in
/// Pico's block mode (one capture per RunBlock, GetValues) instead of rapid block.
fn expected_events(n: usize, block: bool) -> Vec<u8> {
    let fake = daq_engine::devices::usb::FakePico::load(PS3000A.soname).unwrap();
    fake.set(0.0, SEED).unwrap();
    let mut config = PicoScopeConfig::muon_telescope(&PS3000A);
    if let (
        true,
        Acquisition::RapidBlock {
            pre_trigger,
            post_trigger,
            trigger,
            ..
        },
    ) = (block, config.acquisition)
    {
        config.acquisition = Acquisition::Block {
            pre_trigger,
            post_trigger,
            trigger,
        };
    }
    config.library = Some(fake.path.clone());
    let mut scope = PicoScope::open(config).unwrap();
    let size = scope.layout().event_size();
    let mut all = vec![0u8; n * size];
    scope.start_capture().unwrap();
    for ev in all.chunks_exact_mut(size) {
        match scope.read_capture(ev, Duration::from_secs(10)) {
            Ok(ReadOutcome::Event(_)) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
    drop(scope);
    all
}

/// Runs `file` simulated for `n` events (with `env` for the fake) and expects exit 0: the run
/// directory, the notes of device worker `worker` and the buffer `raw` of its one HDF5 file,
/// after checking that the summary counts `n` events of `raw`.
fn whole_run(
    d: &Dir,
    file: &Path,
    n: usize,
    env: &[(&str, &str)],
    worker: &str,
) -> (String, daq_engine::export::BufferContents) {
    let out = simulated(file, n as u64, &d.0)
        .envs(env.iter().copied())
        .output()
        .expect("run daq-engine");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let rd = &d.only_dir();
    assert_eq!(summary_events(rd, "raw"), n as u64);
    let notes = std::fs::read_to_string(rd.join(format!("device_{worker}.txt"))).unwrap();
    let h5 = h5_files(rd);
    assert_eq!(h5.len(), 1, "one HDF5 file: {h5:?}");
    let b = daq_engine::export::read_buffer(&h5[0], "raw").unwrap();
    assert_eq!(b.events, n);
    (notes, b)
}

/// The unit answers OpenUnit with POWER_SUPPLY_NOT_CONNECTED (a 3406D without its
/// adapter); the run accepts USB power, records exactly N events, and the HDF5 file holds
/// the fake's seeded captures bit for bit.
#[test]
fn ps3000a_whole_run_on_usb_power_writes_the_seeded_captures() {
    const N: usize = 25;
    let d = Dir::new("ps3000a-run");
    let file = setup(&d, "ps3000a");
    let (notes, b) = whole_run(&d, &file, N, &[("FAKEPICO_OPEN_POWER", "0x11A")], "scope");
    assert!(notes.contains("picoscope.family = ps3000a"), "{notes}");
    assert!(notes.contains("picoscope.variant = 3406D"), "{notes}");
    assert!(
        notes.contains("POWER_SUPPLY_NOT_CONNECTED accepted")
            && notes.contains("plug in the scope's DC adapter"),
        "{notes}"
    );
    assert_eq!(b.data_length, 500);
    let want = expected_events(N, false);
    assert_eq!(b.data.len(), want.len());
    let first_diff = b.data.iter().zip(&want).position(|(a, w)| a != w);
    assert_eq!(first_diff, None, "HDF5 differs from the seeded captures");
}

/// `check` knows the families the driver has: ps3000a passes, one it lacks is refused
/// before any run (exit 2, no run directory) with the supported ones named.
#[test]
fn check_accepts_ps3000a_and_refuses_an_unsupported_family() {
    let d = Dir::new("ps3000a-check");
    let out = check(&[], &setup(&d, "ps3000a"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let bad = setup(&d, "ps4000a");
    let out = check(&[], &bad);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "'ps4000a' is not a PicoScope family this driver supports: ps2000a, ps3000a, ps5000a"
        ),
        "{err}"
    );
    assert!(err.contains("ps4000a.yaml:"), "names the file: {err}");
    // The default target directory is `target` beside the setup file: nothing was made.
    assert!(!d.0.join("target").exists());
}

/// mimoCoRB2's own PicoScope importer by its name and keys (`importers.picoscope.source`),
/// as its muon setups write it, runs on the ps3000a through the same driver path: the same
/// seeded captures as device.picoscope's, in mV as mimoCoRB2 gives them; its timebase is
/// used as it is. Before, the name was unknown (check: exit 2).
#[test]
fn mimocorb2s_picoscope_importer_runs_with_its_keys_and_gives_millivolts() {
    const N: usize = 25;
    let d = Dir::new("ps3000a-mimo");
    let file = d.0.join("mimo.yaml");
    std::fs::write(
        &file,
        format!(
            "Buffers:
  raw:
    slot_count: 128
    data_length: 500
    data_dtype: {{chA: 'f4', chB: 'f4', chC: 'f4', chD: 'f4'}}
Workers:
  input:
    function: importers.picoscope.source
    sinks: [raw]
    config:
      channel_coupling: DC
      channel_range: 500MV
      trigger_channel: A
      trigger_threshold: -50
      trigger_direction: FALLING
      pre_trigger_samples: 100
      post_trigger_samples: 400
      timebase: 3
      number_of_memory_segments: 100
      sim_rate: 500
      seed: {SEED}
  file:
    function: export.hdf5
    sources: [raw]
"
        ),
    )
    .unwrap();
    let (notes, b) = whole_run(&d, &file, N, &[], "input");
    assert!(notes.contains("picoscope.family = ps3000a"), "{notes}");
    let volts = expected_events(N, false);
    let f32s = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (mv, v) = (f32s(&b.data), f32s(&volts));
    assert_eq!(mv.len(), v.len());
    for (i, (m, v)) in mv.iter().zip(&v).enumerate() {
        assert!(
            (m - 1000.0 * v).abs() <= 1e-3 * (1.0 + m.abs()),
            "sample {i}: {m} mV, the driver's volts {v}"
        );
    }
    // check refuses what the driver cannot do, naming mimoCoRB2's key.
    for (from, to, says) in [
        (
            "trigger_channel: A",
            "trigger_channel: EXT",
            "external trigger",
        ),
        (
            "channel_range: 500MV",
            "channel_range: 3V",
            "not a PicoScope 3000A range",
        ),
        (
            "pre_trigger_samples: 100",
            "pre_trigger_samples: 99",
            "data_length 500",
        ),
    ] {
        let text = std::fs::read_to_string(&file).unwrap().replace(from, to);
        let bad = d.0.join("bad.yaml");
        std::fs::write(&bad, text).unwrap();
        let out = check(&[], &bad);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains(says), "{to}: {err}");
    }
}

/// `mode: block` runs Pico's block mode through the binary: N events in the HDF5 file,
/// bit for bit the captures the fake generates for that mode (read in this process from
/// a copy with the same seed), and the run notes say block. Before, `block` was refused
/// ("rapid_block or streaming").
#[test]
fn ps3000a_block_mode_whole_run_writes_the_seeded_captures() {
    const N: usize = 15;
    let d = Dir::new("ps3000a-block");
    let text = std::fs::read_to_string(setup(&d, "ps3000a"))
        .unwrap()
        .replace("mode: rapid_block", "mode: block");
    let file = d.0.join("block.yaml");
    std::fs::write(&file, text).unwrap();
    let (notes, b) = whole_run(&d, &file, N, &[], "scope");
    assert!(notes.contains("picoscope.mode = block"), "{notes}");
    let want = expected_events(N, true);
    assert_eq!(b.data.len(), want.len());
    let first_diff = b.data.iter().zip(&want).position(|(a, w)| a != w);
    assert_eq!(
        first_diff, None,
        "HDF5 differs from the seeded block captures"
    );
}

/// With `model` given, `check` refuses a range the model lacks at the value of `ranges`
/// (HARDWARE.md P: 3000A A/B models from ±50 mV, D models from ±20 mV), exit 2 and no run;
/// the D model passes. Before, only the family's ranges were checked and the unit's
/// SetChannel refused ±20 mV at open.
#[test]
fn check_refuses_a_range_the_model_lacks_at_its_position() {
    let d = Dir::new("ps3000a-ranges");
    let base = std::fs::read_to_string(setup(&d, "ps3000a")).unwrap();
    for (model, ok) in [("3404A", false), ("3405B", false), ("3404D", true)] {
        let text = base.replace(
            "      ranges: 0.5\n",
            &format!("      ranges: [0.5, 0.02, 0.5, 0.5]\n      model: {model}\n"),
        );
        let file = d.0.join(format!("{model}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let out = check(&[], &file);
        let err = stderr(&out);
        if ok {
            assert_eq!(out.status.code(), Some(0), "{model}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{model}: {err}");
        assert!(
            err.contains(&format!(
                "channel B: ±0.02 V is not a range of the {model}, which offers ±0.05 … ±20 V"
            )),
            "{model}: {err}"
        );
        let (line, column) = value_at(&text, "ranges");
        let at = format!("{}:{line}:{column}: error:", file.display());
        assert!(err.contains(&at), "{model}: expected '{at}' in {err}");
    }
    assert!(!d.0.join("target").exists(), "no run was started");
}
