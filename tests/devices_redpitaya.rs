//! The Red Pitaya end to end through the real `daq-engine` binary with `--simulate`: the
//! simulated MCPHA board listens on a loopback port inside the importer process and the
//! driver connects to it over TCP, as to a board. Traces in the HDF5 file are those the
//! seeded simulator generated; the spectrum made from them agrees with the board's own
//! hardware histogram; the board vanishing mid-run is waited out and recorded as a gap;
//! garbage is counted and never becomes an event; mimoCoRB2's importer name and keys run;
//! `check` refuses a bad config (exit 2) before anything is opened.

use daq_drivers::redpitaya::protocol::{self, Input, Slope, TriggerMode};
use daq_drivers::redpitaya::simulator::{expected_traces, McphaSimConfig, ScopeSettings};
use std::path::{Path, PathBuf};
use std::process::Command;

mod runs;
use runs::{
    books_balance, check, code_and_stderr, h5_files, shipped_setup as setup_file, stderr, summary,
    Dir, EXE,
};

/// setups/`name` with `lines` (worker-config YAML, 6 spaces) set in worker rp's config
/// (replacing the setup's own line of a key) and `target_directory` pointing into `dir`.
fn variant(dir: &Dir, name: &str, lines: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(setup_file(name)).unwrap();
    let keys: Vec<&str> = lines.iter().filter_map(|l| l.split(':').next()).collect();
    let mut out = String::new();
    for l in text.lines() {
        let t = l.trim_start();
        if l.starts_with("      ") && keys.iter().any(|k| t.starts_with(&format!("{k}:"))) {
            continue;
        }
        if l.starts_with("target_directory:") {
            out.push_str(&format!("target_directory: {}\n", dir.0.display()));
            continue;
        }
        out.push_str(l);
        out.push('\n');
        if l.trim_start() == "address: rp-f0c38f.local" {
            for x in lines {
                out.push_str("      ");
                out.push_str(x);
                out.push('\n');
            }
        }
    }
    let p = dir.0.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// Runs `file` with `--simulate` and `args`; (exit code, stderr).
fn run(file: &Path, args: &[&str]) -> (i32, String) {
    code_and_stderr(
        Command::new(EXE)
            .arg(file)
            .args(["--simulate", "--no-tui", "--quiet"])
            .args(args),
    )
}

/// Runs `file` in `d` as [`run`] does, expecting exit 0 and books that balance: the run
/// directory and its summary.
fn ran(d: &Dir, file: &Path, args: &[&str]) -> (PathBuf, serde_json::Value) {
    let (code, err) = run(file, args);
    assert_eq!(code, 0, "{err}");
    let rd = d.only_dir();
    let s = books_balance(&rd);
    (rd, s)
}

/// [`variant`] of setups/`name` with `lines` in a fresh [`Dir`] `tag`, [`ran`] with `args`:
/// the directory, the run directory and its summary.
fn ran_variant(
    tag: &str,
    name: &str,
    lines: &[&str],
    args: &[&str],
) -> (Dir, PathBuf, serde_json::Value) {
    let d = Dir::new(tag);
    let file = variant(&d, name, lines);
    let (rd, s) = ran(&d, &file, args);
    (d, rd, s)
}

/// `daq-engine devices --probe <addr>`: (exit code, stdout).
fn probe(addr: std::net::SocketAddr) -> (Option<i32>, String) {
    let out = Command::new(EXE)
        .args(["devices", "--probe"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn notes(run_dir: &Path, worker: &str) -> Vec<(String, String)> {
    daq_engine::run_dir::read_notes(&run_dir.join(format!("device_{worker}.txt")))
}

fn note<'a>(n: &'a [(String, String)], key: &str) -> &'a str {
    n.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {n:?}"))
}

/// The traces of buffer `oscilloscope` in the run's HDF5 file, as wire bytes.
fn h5_traces(run_dir: &Path) -> Vec<Vec<u8>> {
    let file = h5_files(run_dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("oscilloscope"))
        })
        .unwrap_or_else(|| panic!("no .h5 in {}", run_dir.display()));
    let b = daq_engine::export::read_buffer(&file, "oscilloscope").unwrap();
    assert_eq!(b.data_length, 1000);
    let size = b.data.len() / b.events;
    b.data.chunks_exact(size).map(|c| c.to_vec()).collect()
}

/// The simulators' seed in the runs whose traces are compared with theirs.
const SEED: u64 = 11;

/// [`ran_variant`] of setups/`name` unpaced with [`SEED`] for `n` events: all `n` in the
/// summary and in the file. The directory, the run directory and the file's traces.
fn seeded_run(tag: &str, name: &str, n: u64) -> (Dir, PathBuf, Vec<Vec<u8>>) {
    let seed = format!("seed: {SEED}");
    let (d, rd, s) = ran_variant(
        tag,
        name,
        &["sim_paced: false", &seed],
        &["--max-events", &n.to_string()],
    );
    assert_eq!(s["events"]["oscilloscope"].as_u64(), Some(n), "{s}");
    let got = h5_traces(&rd);
    assert_eq!(got.len() as u64, n);
    (d, rd, got)
}

#[test]
fn simulated_run_writes_the_seeded_traces_to_hdf5() {
    let (_d, rd, got) = seeded_run("rp-traces", "redpitaya_spectroscopy.yaml", 300);
    // Not paced, every triggering pulse becomes a trace, in order: the file holds exactly
    // the simulator's first 300 (1000 samples each; the 100 stale-tail samples dropped).
    // The setup's scope settings are the simulator's defaults: decimation 4, no negator,
    // rising edge of IN1 in normal mode at level 100, 100 of 1100 samples before it.
    let scope = ScopeSettings::default();
    let set = &scope;
    assert_eq!(
        (set.decimation, set.negator, set.source, set.slope, set.mode),
        (
            4,
            [false; 2],
            Input::In1,
            Slope::Rising,
            TriggerMode::Normal
        )
    );
    assert_eq!((set.level, set.pre, set.total), (100, 100, 1100));
    let sim = McphaSimConfig {
        seed: SEED,
        ..McphaSimConfig::default()
    };
    let want = expected_traces(&sim, &scope, 300);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g[..] == w[..4000], "trace {i} differs");
    }
    let n = notes(&rd, "rp");
    assert_eq!(note(&n, "device.events"), "300");
    assert_eq!(note(&n, "device.bad_records"), "0");
    assert_eq!(note(&n, "redpitaya.volts_per_count"), "1.220703125e-4");
    assert_eq!(note(&n, "redpitaya.sample_interval_ns"), "32");
}

/// Counts of `path`'s CSV rows: (bin_low, count) from ours, (bin, IN1) from the board's.
fn csv_counts(path: &Path, col: usize) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("bin"))
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (v[0], v[col])
        })
        .collect()
}

#[test]
fn our_spectrum_agrees_with_the_boards_hardware_histogram() {
    let (_d, rd, _) = ran_variant(
        "rp-spectra",
        "redpitaya_spectroscopy.yaml",
        // Not paced: every pulse above the level becomes a trace (a loaded machine cannot
        // stretch the board's dead time), and the board counts the same pulses (pha_min =
        // trigger level): the spectra differ by how the pulse finder reads the traces.
        &[
            "sim_paced: false",
            "hardware_histogram_every: 0.2",
            "set_size: 50",
        ],
        &["--max-events", "3000", "--max-seconds", "120"],
    );
    let ours = csv_counts(&rd.join("histogram_spectrum_height.csv"), 2);
    let board = csv_counts(&rd.join("hardware_histogram_rp.csv"), 1);
    assert_eq!((ours.len(), board.len()), (512, 4096));
    // The board's bins of one count, summed 8 at a time as ours.
    let hw: Vec<f64> = board
        .chunks(8)
        .map(|c| c.iter().map(|x| x.1).sum())
        .collect();
    let ours: Vec<f64> = ours.iter().map(|x| x.1).collect();
    let (n1, n2) = (ours.iter().sum::<f64>(), hw.iter().sum::<f64>());
    // The board's are read between sets, so they lag behind ours by the last sets.
    assert!(n1 > 2900.0 && n2 > 1000.0, "{n1} {n2}");
    // Two-sample χ² over the bins with counts, each spectrum normalised by its total.
    let (k1, k2) = ((n2 / n1).sqrt(), (n1 / n2).sqrt());
    let mut chi2 = 0.0;
    let mut ndf = 0;
    for (a, b) in ours.iter().zip(&hw) {
        if a + b > 0.0 {
            chi2 += (k1 * a - k2 * b).powi(2) / (a + b);
            ndf += 1;
        }
    }
    let per = chi2 / f64::from(ndf - 1);
    assert!(per < 1.5, "χ²/ndf = {chi2:.1}/{} = {per:.2}", ndf - 1);
    // And the line at 1000 counts sits where the board puts it.
    let fit = std::fs::read_to_string(rd.join("fit_line_1000.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&fit).unwrap();
    let mean = v["result"]["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("{fit}"));
    assert!((mean - 1000.0).abs() < 5.0, "{fit}");
}

/// What a run of `setup` whose simulated board vanishes 2 s in for 1 s left: the gap's
/// length (s), the events before it and in all; every check both transports share done.
fn vanishing_run(tag: &str, setup: &str) -> (f64, u64, u64) {
    let (_d, rd, s) = ran_variant(
        tag,
        setup,
        &[
            "sim_unplug_at: 2.0",
            "sim_unplug_for: 1.0",
            "connect_timeout: 0.3",
        ],
        &["--max-seconds", "9"],
    );
    let n = notes(&rd, "rp");
    assert_eq!(note(&n, "device.gaps"), "1", "{n:?}");
    assert_eq!(note(&n, "device.connected"), "true");
    assert_eq!(note(&n, "redpitaya.reconnects"), "1");
    let gap = note(&n, "device.gap.0");
    assert!(gap.contains("back after"), "{gap}");
    // The first word of the `i`th piece of the gap note split at `sep`.
    let word = |sep: &str, i: usize| {
        gap.split(sep)
            .nth(i)
            .and_then(|x| x.split(' ').next())
            .unwrap_or_else(|| panic!("{gap}"))
    };
    let secs: f64 = word("back after ", 1).parse().unwrap();
    let before: u64 = word(", ", 2).parse().unwrap();
    // Every trace in the file is a whole trace.
    for t in h5_traces(&rd) {
        protocol::check_trace(&t).unwrap();
    }
    (secs, before, s["events"]["oscilloscope"].as_u64().unwrap())
}

#[test]
fn the_board_vanishing_mid_run_is_a_gap_and_the_run_goes_on() {
    let (secs, before, events) = vanishing_run("rp-unplug", "redpitaya_spectroscopy.yaml");
    // From when the importer saw the reset (it may be late: the pipeline starts while the
    // simulated board already runs) until the board answered again, 1 s after it vanished.
    assert!((0.05..4.0).contains(&secs), "{secs}");
    // Events before and after the gap (1000 pulses/s, most of them triggering).
    assert!(
        before > 0 && events > before + 200,
        "{before} then {events}"
    );
}

#[test]
fn garbage_is_counted_and_never_an_event() {
    let (_d, rd, _) = ran_variant(
        "rp-garbage",
        "redpitaya_spectroscopy.yaml",
        &["sim_paced: false", "sim_garbage_every: 10"],
        &["--max-events", "450"],
    );
    let n = notes(&rd, "rp");
    let bad: u64 = note(&n, "device.bad_records").parse().unwrap();
    // 450 good traces with every 10th sent replaced: 50 refused (49 or 50 by the end).
    assert!((49..=50).contains(&bad), "{bad}");
    assert!(note(&n, "device.bad_last").contains("outside the 14-bit"));
    let traces = h5_traces(&rd);
    assert_eq!(traces.len(), 450);
    for t in &traces {
        protocol::check_trace(t).unwrap();
    }
}

#[test]
fn mimocorb2s_importer_name_and_keys_run() {
    let d = Dir::new("rp-m2");
    let setup = format!(
        "target_directory: {}\n\
         Buffers:\n  oscilloscope:\n    slot_count: 64\n    data_length: 500\n    \
         data_dtype: {{'IN1': 'int16', 'IN2': 'int16'}}\n\
         Workers:\n  rp_to_mimo:\n    function: importers.redpitaya.waveform\n    \
         sinks: [oscilloscope]\n    config:\n      ip: rp-f0c38f.local\n      \
         sample_rate: 4\n      negator_IN1: false\n      negator_IN2: false\n      \
         trigger_slope: rising\n      trigger_mode: normal\n      trigger_level: 100\n      \
         trigger_source: IN1\n      number_of_samples_before_trigger: 100\n      \
         set_size: 100\n  drain:\n    function: exporters.drain\n    \
         sources: [oscilloscope]\n",
        d.0.display()
    );
    let file = d.write("m2.yaml", &setup);
    let (code, text) = check_setup(&["--simulate"], &file);
    assert_eq!(code, Some(0), "{text}");
    let (code, err) = run(&file, &["--max-events", "50"]);
    assert_eq!(code, 0, "{err}");
    let rd = d.only_dir();
    assert_eq!(summary(&rd)["events"]["oscilloscope"].as_u64(), Some(50));
    let n = notes(&rd, "rp_to_mimo");
    assert_eq!(note(&n, "device.function"), "device.redpitaya");
    assert_eq!(note(&n, "redpitaya.pretrigger"), "100");
    assert_eq!(note(&n, "redpitaya.samples"), "500");
    // Both names of one key: refused, naming them.
    let both = std::fs::read_to_string(&file).unwrap().replace(
        "ip: rp-f0c38f.local",
        "ip: rp-f0c38f.local\n      address: 10.0.0.2",
    );
    std::fs::write(&file, both).unwrap();
    let (code, text) = check_setup(&[], &file);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("mimoCoRB2's name for 'address'"), "{text}");
}

#[test]
fn devices_probe_finds_the_mcpha_server_at_an_address() {
    let sim = daq_drivers::redpitaya::SimMcpha::start(McphaSimConfig::default()).unwrap();
    let (code, text) = probe(sim.addr());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Red Pitaya MCPHA server"), "{text}");
    assert!(text.contains("device.redpitaya"), "{text}");
    // It asked exactly once for the status, and nothing else.
    assert_eq!(
        sim.transcript(),
        vec![daq_drivers::redpitaya::protocol::Command::ReadStatus.encode()]
    );
    // A port where nothing listens: said so, exit 1.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = l.local_addr().unwrap();
    drop(l);
    let (code, text) = probe(free);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no Red Pitaya MCPHA server found"), "{text}");
}

/// `daq-engine check <args…> <file>`: (exit code, stdout followed by stderr).
fn check_setup(args: &[&str], file: &Path) -> (Option<i32>, String) {
    let out = check(args, file);
    (out.status.code(), runs::stdout_and_stderr(&out))
}

/// `daq-engine check` on the setup with `lines` set in worker rp: (exit code, stdout
/// followed by stderr).
fn check_variant(d: &Dir, lines: &[&str], simulate: bool) -> (Option<i32>, String) {
    let file = variant(d, "redpitaya_spectroscopy.yaml", lines);
    check_setup(if simulate { &["--simulate"] } else { &[] }, &file)
}

#[test]
fn check_refuses_bad_configs_with_exit_2_and_makes_no_run_dir() {
    let d = Dir::new("rp-check");
    let (code, text) = check_variant(&d, &[], true);
    assert_eq!(code, Some(0), "{text}");
    for (lines, says) in [
        (&["trigger_level: 9000"][..], "9000 is outside -8192 … 8191"),
        (&["trigger_source: IN3"][..], "'IN3': IN1 or IN2"),
        (&["trigger_slope: up"][..], "'up': rising or falling"),
        (
            &["decimation: four"][..],
            "config key 'decimation': expected a whole number",
        ),
        (
            &["pretrigger: 1000"][..],
            "pretrigger must be 1 … samples − 1 = 999",
        ),
        (&["mode: spectra"][..], "'spectra': traces or histogram"),
        (&["acquisition: push"][..], "'push': stream or poll"),
        (&["set_size: 0"][..], "0 is outside 1 … 1000000"),
        (
            &["sample_rate: 8"][..],
            "is mimoCoRB2's name for 'decimation'",
        ),
        (
            &["generator: true", "generator_spectrum: [[5000, 1]]"][..],
            "[bin, weight] pairs, bins 0 … 4095",
        ),
        // Histogram mode writes 4096 records of four fields: the trace buffer is refused.
        (&["mode: histogram"][..], "does not match the device"),
        (&["sim_unplug_at: -1"][..], "must be 0 … 86400"),
    ] {
        let (code, text) = check_variant(&d, lines, true);
        assert_eq!(code, Some(2), "{lines:?}: {text}");
        assert!(text.contains(says), "{lines:?}: wanted '{says}' in {text}");
        // It names where in the file.
        assert!(
            text.contains("redpitaya_spectroscopy.yaml:"),
            "{lines:?}: {text}"
        );
    }
    // A board is required without --simulate: the shipped address is there, so drop it.
    let file = variant(&d, "redpitaya_spectroscopy.yaml", &[]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("      address: rp-f0c38f.local\n", "");
    std::fs::write(&file, text).unwrap();
    let out = check(&[], &file);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("config key 'address': is required"), "{text}");
    // Nothing ran: no run directory in the target directory.
    let dirs = std::fs::read_dir(&d.0)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, 0);
}

// ---- transport: scpi (the board's official SCPI server, port 5000) ----

#[test]
fn scpi_simulated_run_writes_the_seeded_traces_to_hdf5() {
    use daq_drivers::redpitaya::scpi::simulator::{expected_traces, AcqSettings, TriggerWord};
    use daq_drivers::redpitaya::scpi::ScpiSimConfig;
    let (_d, rd, got) = seeded_run("rp-scpi-traces", "redpitaya_scpi.yaml", 150);
    // Each trace is one acquisition of the seeded signal, read from where the trigger
    // fell in the wrapping buffer: the file holds exactly the simulator's first 150.
    let want = expected_traces(
        &ScpiSimConfig {
            seed: SEED,
            ..ScpiSimConfig::default()
        },
        &AcqSettings {
            decimation: 4,
            level: 100,
            delay: 1000 - 100 - 8192,
            source: Some(TriggerWord::Edge(0, true)),
        },
        100,
        1000,
        150,
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "trace {i} differs");
    }
    let n = notes(&rd, "rp");
    assert_eq!(note(&n, "redpitaya.transport"), "scpi");
    assert_eq!(note(&n, "device.events"), "150");
    assert_eq!(note(&n, "device.bad_records"), "0");
    assert_eq!(
        note(&n, "redpitaya.trigger"),
        "CH1_PE (board: Rising level 100 counts)"
    );
}

#[test]
fn scpi_board_vanishing_mid_run_is_a_gap_and_the_run_goes_on() {
    let (secs, before, events) = vanishing_run("rp-scpi-unplug", "redpitaya_scpi.yaml");
    assert!((0.05..4.0).contains(&secs), "{secs}");
    assert!(before > 0 && events > before, "{before} then {events}");
}

#[test]
fn scpi_check_refuses_what_the_scpi_server_cannot_do() {
    let d = Dir::new("rp-scpi-check");
    for (lines, says) in [
        (&["decimation: 3"][..], "must be a power of two"),
        (
            &["set_size: 10"][..],
            "config key 'set_size': is for transport mcpha only",
        ),
        (&["generator: true"][..], "is for transport mcpha only"),
        (&["mode: histogram"][..], "reads traces only"),
        (&["samples: 20000"][..], "must be 1 … 16384"),
        (&["transport: usb"][..], "'usb': mcpha or scpi"),
    ] {
        let file = variant(&d, "redpitaya_scpi.yaml", lines);
        let out = check(&["--simulate"], &file);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{lines:?}: {text}");
        assert!(text.contains(says), "{lines:?}: wanted '{says}' in {text}");
    }
}

#[test]
fn devices_probe_finds_a_scpi_server_at_an_address() {
    use daq_drivers::redpitaya::scpi::{ScpiSimConfig, SimScpi};
    let sim = SimScpi::start(ScpiSimConfig::default()).unwrap();
    let (code, text) = probe(sim.addr());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Red Pitaya SCPI server"), "{text}");
    assert!(text.contains("*IDN? REDPITAYA,"), "{text}");
    // It asked *IDN? and nothing else of the SCPI server.
    assert_eq!(
        sim.transcript()
            .iter()
            .filter(|l| l.starts_with('*') || l.starts_with("ACQ"))
            .collect::<Vec<_>>(),
        ["*IDN?"]
    );
}

/// `mode: histogram`: one event per readout of the board's 4096-bin spectra with the live
/// times, into a buffer and so into HDF5.
#[test]
fn hardware_histogram_mode_writes_growing_spectra_with_live_times() {
    let d = Dir::new("rp-hist");
    let setup = format!(
        "target_directory: {}\n\
         Buffers:\n  spectra:\n    slot_count: 8\n    data_length: 4096\n    \
         data_dtype: {{IN1: uint32, IN2: uint32, live_IN1: float64, live_IN2: float64}}\n\
         Workers:\n  rp:\n    function: device.redpitaya\n    sinks: [spectra]\n    \
         config:\n      address: rp-f0c38f.local\n      mode: histogram\n      \
         histogram_interval: 0.2\n      pha_min: 100\n  keep:\n    \
         function: export.hdf5\n    sources: [spectra]\n",
        d.0.display()
    );
    let file = d.write("hist.yaml", &setup);
    let (rd, _) = ran(&d, &file, &["--max-events", "6", "--max-seconds", "60"]);
    let h5 = h5_files(&rd).pop().unwrap();
    let b = daq_engine::export::read_buffer(&h5, "spectra").unwrap();
    assert_eq!((b.events, b.data_length), (6, 4096));
    // Records of 4 + 4 + 8 + 8 bytes: counts IN1, IN2, live IN1, IN2 (s).
    let rec = |e: usize, i: usize| {
        let r = &b.data[(e * 4096 + i) * 24..][..24];
        (
            u32::from_le_bytes(r[0..4].try_into().unwrap()),
            f64::from_le_bytes(r[8..16].try_into().unwrap()),
        )
    };
    let mut last_total = 0u64;
    let mut last_live = 0.0;
    for e in 0..6 {
        let total: u64 = (0..4096).map(|i| u64::from(rec(e, i).0)).sum();
        let below: u64 = (0..100).map(|i| u64::from(rec(e, i).0)).sum();
        let live = rec(e, 0).1;
        assert!((0..4096).all(|i| rec(e, i).1 == live), "event {e}");
        // The board accumulates: counts and live time never go back (reset at the start).
        assert!(total >= last_total && live >= last_live, "event {e}");
        assert_eq!(below, 0, "event {e}: counts below pha_min");
        (last_total, last_live) = (total, live);
    }
    assert!(
        last_total > 0 && last_live > 0.0,
        "{last_total} {last_live}"
    );
}
