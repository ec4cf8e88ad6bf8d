//! `daq-engine devices` and `daq-engine udev install` through the real binary. The rules are
//! only ever written to a temporary directory (`--rules-dir` / `DAQ_UDEV_RULES_DIR`), so the
//! machine's udev configuration is never touched.

use std::process::Command;

mod runs;
use runs::EXE;

fn rules_in_tree() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("udev/70-daq-engine.rules"),
    )
    .unwrap()
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daq-udev-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The stdout of `daq-engine <args…>`, which must exit 0, on a machine with nothing
/// connected; None, with a line that the test (`skipped` more closely) is skipped, where a
/// serial port or a USB device is present.
#[track_caller]
fn with_nothing_connected(args: &[&str], skipped: &str) -> Option<String> {
    let scan = daq_drivers::serial::scan();
    if !scan.is_empty() {
        eprintln!("serial ports present ({scan:?}); skipping{skipped}");
        return None;
    }
    let out = Command::new(EXE).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("usb:") {
        eprintln!("USB devices present; skipping{skipped}");
        return None;
    }
    assert_eq!(out.status.code(), Some(0), "{text}");
    Some(text)
}

/// This machine has no USB bus and no serial detector: the command says so and succeeds.
/// (On a machine with a detector plugged in the test is skipped, not failed.)
#[test]
fn devices_says_clearly_when_none_are_found() {
    let Some(text) = with_nothing_connected(&["devices"], " the none-found check") else {
        return;
    };
    assert!(text.contains("No supported devices found"), "{text}");
    assert!(
        text.contains("04b4:1175") && text.contains("0ce9"),
        "{text}"
    );
    assert!(text.contains("--simulate"), "{text}");
}

#[test]
fn udev_install_dry_run_prints_the_copy_and_reload_commands() {
    let out = Command::new(EXE)
        .args(["udev", "install", "--dry-run"])
        .env_remove("DAQ_UDEV_RULES_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let n = rules_in_tree().len();
    assert!(
        text.contains(&format!(
            "would write {n} bytes of udev rules to /etc/udev/rules.d/70-daq-engine.rules"
        )),
        "{text}"
    );
    assert!(
        text.contains("would run: udevadm control --reload-rules"),
        "{text}"
    );
    assert!(text.contains("would run: udevadm trigger"), "{text}");
}

#[test]
fn udev_install_dry_run_into_a_redirected_dir_writes_nothing() {
    let dir = temp("dry");
    let out = Command::new(EXE)
        .args(["udev", "install", "--dry-run"])
        .env("DAQ_UDEV_RULES_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&dir.join("70-daq-engine.rules").display().to_string()),
        "{text}"
    );
    assert!(!dir.exists());
}

#[test]
fn udev_install_into_a_redirected_dir_writes_the_embedded_rules_exactly() {
    let dir = temp("real");
    let out = Command::new(EXE)
        .args(["udev", "install", "--rules-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("not reloading udev"), "{text}");
    let written = std::fs::read_to_string(dir.join("70-daq-engine.rules")).unwrap();
    assert_eq!(written, rules_in_tree());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every device function takes `simulate` (so `--simulate` swaps it for its simulator) and
/// every device setup passes `daq-engine check`.
#[test]
fn every_device_function_takes_simulate_and_every_setup_checks() {
    let functions = daq_engine::devices::functions();
    assert!(functions.len() >= 9, "every family's importers");
    for f in functions.iter().map(|(f, _)| f.spec.name) {
        let out = Command::new(EXE).args(["functions", f]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{f}: {text}");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("simulate ")),
            "{f}: {text}"
        );
    }
    for s in [
        "geiger_gmc",
        "mightyohm",
        "cosmicwatch",
        "picoscope_muon",
        "hantek6022",
        "drs4_sipm",
        "redpitaya_spectroscopy",
        "redpitaya_scpi",
    ] {
        let path = runs::shipped_setup(&format!("{s}.yaml"));
        // The shipped setups name real ports; without the detectors, check as --simulate.
        let out = runs::check(&["--simulate"], &path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{s}: {}",
            runs::stdout_and_stderr(&out)
        );
    }
}

/// `udev check` with nothing connected: says so, reports the rules' state, succeeds.
#[test]
fn udev_check_with_nothing_connected() {
    let Some(text) = with_nothing_connected(&["udev", "check"], "") else {
        return;
    };
    assert!(text.starts_with("udev rules: "), "{text}");
    assert!(text.contains("no supported devices connected"), "{text}");
}

/// Every PicoScope family the driver supports has its product ids in the shipped rules,
/// named with its family (HARDWARE.md A.1, P), and the binary carries the same file.
#[test]
fn udev_rules_name_every_picoscope_family_by_product_id() {
    let rules = rules_in_tree();
    assert_eq!(rules, daq_engine::devices::tools::UDEV_RULES);
    for f in daq_drivers::picoscope::family::FAMILIES {
        let tag = format!("ENV{{DAQ_PICOSCOPE_FAMILY}}=\"{}\"", f.name);
        let line = rules
            .lines()
            .find(|l| !l.starts_with('#') && l.contains(&tag))
            .unwrap_or_else(|| panic!("no rule line names {}", f.name));
        assert!(line.contains("ATTR{idVendor}==\"0ce9\""), "{line}");
        let pids = line
            .split("ATTR{idProduct}==\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no product ids in {line}"));
        let mut got: Vec<&str> = pids.split('|').collect();
        got.sort_unstable();
        let mut want: Vec<String> = f.usb_pids.iter().map(|p| format!("{p:04x}")).collect();
        want.sort_unstable();
        assert_eq!(got, want, "{}", f.name);
    }
}

/// `daq-engine devices --probe PORT` on a simulated MightyOhm: the line `devices` would
/// print for it, with the function and setup, and the line that gave it away; a port that
/// does not exist is exit 1 naming it.
#[test]
fn devices_probe_tells_which_counter_is_behind_a_serial_port() {
    use daq_drivers::linecounter::{self, LineSimConfig, SimFormat};
    // `daq-engine devices ARGS… --probe PORT`: its exit code and what it printed.
    let probe = |args: &[&str], port: &std::path::Path| {
        let out = Command::new(EXE)
            .arg("devices")
            .args(args)
            .arg("--probe")
            .arg(port)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    };
    let (_sim, path) = linecounter::simulate(LineSimConfig {
        format: SimFormat::MightyOhm,
        cps: 5.0,
        seed: 1,
        second: std::time::Duration::from_millis(20),
    })
    .unwrap();
    let (code, text) = probe(&["--listen", "10"], &path);
    assert_eq!(code, Some(0), "{text}");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(&path.display().to_string()), "{text}");
    for want in ["MightyOhm kit", "device.mightyohm", "setups/mightyohm.yaml"] {
        assert!(first.contains(want), "{want} missing: {text}");
    }
    assert!(
        text.contains("  printed at 9600 baud: \"mightyohm.com Geiger Counter"),
        "{text}"
    );

    let missing = std::path::Path::new("/dev/daq-no-such-port");
    let (code, text) = probe(&[], missing);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.starts_with("/dev/daq-no-such-port: cannot open: No such file or directory"),
        "{text}"
    );

    // A port where nothing answers: what each rate heard and each question got, and the
    // question to the user once (it was asked twice, the second time by the command).
    let mute = daq_drivers::serial::SimulatorHandle::start("mute", |_| {
        Box::new(daq_drivers::serial::ScriptedDevice::new(Vec::new()))
    })
    .unwrap();
    let (code, text) = probe(&["--listen", "0.1"], mute.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("no supported serial device recognised"),
        "{text}"
    );
    assert_eq!(text.matches("this its port?").count(), 1, "{text}");

    // A listening time that is no time is bad input, said before any port is opened.
    let (code, text) = probe(&["--listen=-1"], missing);
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(text, "--listen -1: give seconds, at least 0\n");
}
