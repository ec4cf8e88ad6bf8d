//! PicoScope MSO digital ports end to end through the real `daq-engine` binary and the fake
//! PicoSDK library: a simulated MSO of every family records its digital ports as `D0_7` /
//! `D8_15` fields whose HDF5 bytes are exactly the pattern the fake generates (the unit's
//! 16-bit sample counter); `check` refuses digital ports a model lacks, logic levels out of
//! range, unknown ports and sinks that cannot hold them, each at its file:line:column; a
//! non-MSO scope asked for ports fails at open naming the device; the shipped
//! `setups/picoscope_mso.yaml` checks and runs.

use std::path::Path;
use std::process::Output;

mod runs;
use runs::{check, exited_0, h5_files, simulated, stderr, summary_events, value_at, Dir};

/// A rapid-block setup with channels A and B in counts and `scope_extra` added to the
/// scope's config (one key per line, already indented) and the sink's dtype `dtype`.
fn setup_text(family: &str, dtype: &str, scope_extra: &str) -> String {
    format!(
        "options: {{max_seconds: 60, stats_interval: 1}}
Buffers:
  raw:
    slot_count: 128
    data_length: 500
    data_dtype: {{{dtype}}}
Workers:
  scope:
    function: device.picoscope
    sinks: [raw]
    config:
      family: {family}
      channels: [A, B]
      ranges: 0.5
      sample_interval: 16.0e-9
      mode: rapid_block
      pre_trigger: 100
      post_trigger: 400
      captures_per_run: 20
      trigger_channel: A
      trigger_level: -0.05
      trigger_direction: falling
      format: counts
      sim_rate: 500
{scope_extra}  file:
    function: export.hdf5
    sources: [raw]
"
    )
}

const MSO_DTYPE: &str = "chA: int16, chB: int16, D0_7: uint8, D8_15: uint8";

fn run(dir: &Dir, file: &Path, n: u64) -> Output {
    simulated(file, n, &dir.0).output().expect("run daq-engine")
}

/// One simulated MSO per family, both ports: N events in the HDF5 file, each record's
/// digital bytes the fake's counter of the unit's digital samples (capture n, sample i:
/// n × 500 + i, D8_15 = bits 8..15, D0_7 = bits 0..7), the analogue counts beside them,
/// the ports in the run notes. Before, `digital_ports` and `model` were unknown keys.
#[test]
fn mso_runs_in_every_family_record_exactly_the_fakes_digital_pattern() {
    const N: usize = 25;
    for (family, model) in [
        ("ps2000a", "2205A MSO"),
        ("ps3000a", "3406D MSO"),
        ("ps5000a", "5444D MSO"),
    ] {
        let d = Dir::new(&format!("mso-{family}"));
        let extra = format!(
            "      model: {model}\n      digital_ports: [D0_7, D8_15]\n      logic_level: [1.5, 2.5]\n"
        );
        let file = d.write("mso.yaml", &setup_text(family, MSO_DTYPE, &extra));
        let out = run(&d, &file, N as u64);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{family}: {err}");
        let rd = d.only_dir();
        let notes = std::fs::read_to_string(rd.join("device_scope.txt")).unwrap();
        assert!(
            notes.contains(&format!("picoscope.variant = {model}"))
                && notes.contains("picoscope.digital.D0_7 = PORT0 (D0..D7) logic level 1.5 V")
                && notes.contains("picoscope.digital.D8_15 = PORT1 (D8..D15) logic level 2.5 V"),
            "{family}: {notes}"
        );
        let h5 = h5_files(&rd);
        assert_eq!(h5.len(), 1, "{h5:?}");
        let b = daq_engine::export::read_buffer(&h5[0], "raw").unwrap();
        assert_eq!((b.events, b.data_length), (N, 500), "{family}");
        let names: Vec<&str> = b.dtype.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["chA", "chB", "D0_7", "D8_15"]);
        let rec = 6;
        assert_eq!(b.data.len(), N * 500 * rec);
        let mut nonzero_analogue = 0;
        for (k, r) in b.data.chunks_exact(rec).enumerate() {
            let want = k as u64 & 0xFFFF;
            let got = u64::from(r[5]) << 8 | u64::from(r[4]);
            assert_eq!(got, want, "{family}: record {k} of the file");
            if r[0] != 0 || r[1] != 0 {
                nonzero_analogue += 1;
            }
        }
        assert!(nonzero_analogue > 0, "{family}: channel A holds the pulses");
    }
}

/// `check` refuses, before any run (exit 2), what a digital-port setup gets wrong, each
/// at the value of the key to change: ports on a model without them, ports or levels that
/// do not exist, the wrong type, a model of another family or with fewer channels, and a
/// sink that lacks a port's field, declares it as something else than one byte, or has
/// one for a port not recorded.
#[test]
fn check_refuses_digital_ports_a_setup_cannot_have_at_their_position() {
    let d = Dir::new("mso-check");
    let ports = "      digital_ports: [D0_7, D8_15]\n";
    let cases: [(&str, &str, String, &str, &str); 10] = [
        (
            "ps3000a",
            MSO_DTYPE,
            format!("      model: 3406D\n{ports}"),
            "digital_ports",
            "the 3406D has no digital inputs (D0_7 asked for); only MSO models have them",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            format!("{ports}      logic_level: 7.0\n"),
            "logic_level",
            "7 V is outside the digital inputs' range -5 … 5 V",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            "      digital_ports: [D0_7, D16]\n".into(),
            "digital_ports",
            "'D16' is not a digital port: D0_7 (port0) or D8_15 (port1)",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            format!("{ports}      logic_level: high\n"),
            "logic_level",
            "expected a number or a list of numbers",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            format!("{ports}      logic_level: [1.5]\n"),
            "logic_level",
            "gives 1 values for 2 digital port(s)",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            format!("      model: 5444D MSO\n{ports}"),
            "model",
            "the 5444D MSO is not a ps3000a model",
        ),
        (
            "ps2000a",
            "chA: int16, chB: int16, chC: int16, D0_7: uint8, D8_15: uint8",
            format!("      model: 2205A MSO\n{ports}"),
            "channels",
            "channel C enabled, but the 2205A MSO has 2 channels",
        ),
        (
            "ps3000a",
            "chA: int16, chB: int16, D0_7: uint8",
            ports.to_string(),
            "digital_ports",
            "port PORT1 is recorded as field 'D8_15', which sink buffer 'raw' does not declare: add `D8_15: uint8`",
        ),
        (
            "ps3000a",
            "chA: int16, chB: int16, D0_7: int16, D8_15: uint8",
            ports.to_string(),
            "digital_ports",
            "field 'D0_7' of sink buffer 'raw' is int16, but a digital port is one byte",
        ),
        (
            "ps3000a",
            MSO_DTYPE,
            "      digital_ports: [D0_7]\n".into(),
            "digital_ports",
            "sink buffer 'raw' declares field 'D8_15', but port PORT1 is not recorded",
        ),
    ];
    for (i, (family, dtype, extra, key, fragment)) in cases.iter().enumerate() {
        let mut text = setup_text(family, dtype, extra);
        if *key == "channels" {
            text = text.replace("channels: [A, B]", "channels: [A, B, C]");
        }
        let file = d.write(&format!("bad{i}.yaml"), &text);
        let out = check(&[], &file);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(fragment),
            "case {i}: expected '{fragment}' in {err}"
        );
        let (line, column) = value_at(&text, key);
        let at = format!("{}:{line}:{column}: error:", file.display());
        assert!(err.contains(&at), "case {i}: expected '{at}' in {err}");
    }
    assert!(!d.0.join("target").exists(), "no run was started");
    // The same setup with an MSO model passes.
    let ok = d.write(
        "ok.yaml",
        &setup_text(
            "ps3000a",
            MSO_DTYPE,
            &format!("      model: 3406D MSO\n{ports}"),
        ),
    );
    exited_0(check(&[], &ok));
}

/// Without `model`, check cannot know the unit: the simulated scope is a 3406D (no digital
/// inputs), and the run fails at open with the device named and what to do.
#[test]
fn digital_ports_on_a_scope_without_them_fail_at_open_naming_it() {
    let d = Dir::new("mso-open");
    let text = setup_text("ps3000a", MSO_DTYPE, "      digital_ports: [D0_7, D8_15]\n");
    let file = d.write("nomso.yaml", &text);
    let out = check(&[], &file);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&d, &file, 5);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("PicoScope 3406D FAKE3000/001")
            && err.contains(
                "digital port D0_7 (PORT0) asked for, but the 3406D has no digital inputs"
            ),
        "{err}"
    );
}

/// The shipped MSO setup passes `check --simulate` and runs with `--simulate`.
#[test]
fn the_mso_setup_checks_and_runs_simulated() {
    let file = runs::shipped_setup("picoscope_mso.yaml");
    exited_0(check(&["--simulate"], &file));
    let d = Dir::new("mso-setup");
    let out = run(&d, &file, 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(summary_events(&d.only_dir(), "raw"), 20);
}
