//! The device setups run end-to-end through the real `daq-engine` binary with `--simulate`:
//! each simulator is opened through its driver's real path (pty + serialport, the fake
//! PicoScope library through libloading, the simulated USB transfers), the run stops after
//! exactly N events and the CSV holds them. A sink that does not match the driver's layout
//! fails before the run with a message naming the fields to declare.

use std::path::{Path, PathBuf};
use std::process::Command;

mod runs;
use runs::{code_and_stderr, shipped_setup as setup, simulated, summary_events, Dir, EXE};

/// Runs `file` with `--simulate --max-events n`; returns (exit code, stderr, run dir).
fn run(dir: &Dir, file: &Path, n: u64) -> (i32, String, PathBuf) {
    let (code, err) = code_and_stderr(&mut simulated(file, n, &dir.0));
    (code, err, dir.only_dir())
}

/// Runs setups/`name` with `--simulate --max-events n` in a scratch directory named `tag` and
/// expects exit 0 and `n` events of `buffer` in the summary: the directory (removed on drop)
/// and the run directory.
fn ran(tag: &str, name: &str, n: u64, buffer: &str) -> (Dir, PathBuf) {
    let d = Dir::new(tag);
    let (code, err, rd) = run(&d, &setup(name), n);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary_events(&rd, buffer), n);
    (d, rd)
}

/// Field `name` of every record of `buffer` in the HDF5 file `path`, as numbers.
fn h5_column(path: &Path, buffer: &str, name: &str) -> Vec<f64> {
    let b = daq_engine::export::read_buffer(path, buffer).unwrap();
    let shape = daq_engine::worker::BufferShape {
        name: buffer.into(),
        dtype: b.dtype.clone(),
        data_length: b.events * b.data_length,
    };
    let f = daq_engine::analysis::trace::FieldAccess::new(&shape, name).unwrap();
    (0..shape.data_length)
        .map(|i| f.get(&b.data, i).unwrap())
        .collect()
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn geiger_gmc_counts_are_the_simulators_exact_poisson_draws() {
    let (_d, rd) = ran("gmc", "geiger_gmc.yaml", 12, "counts");
    let rows = csv_rows(&rd.join("counts.csv"));
    assert_eq!(rows.len(), 12);
    // The setup's simulator: seed 7, 5 counts per device second. The simulated counter
    // counts from power-up; heartbeat frames start after the connect sequence, so the run
    // holds a contiguous stretch of its seconds: no second lost, repeated or altered.
    let all = daq_drivers::gmc::counts_for_seed(7, 5.0, 200);
    let got: Vec<u32> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    let at = all.windows(12).position(|w| w == got.as_slice());
    assert!(
        at.is_some_and(|i| i < 100),
        "{got:?} is not a stretch of the seed-7 counts {all:?}"
    );
    let counters: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(counters, (0..12).collect::<Vec<_>>());
    let notes = std::fs::read_to_string(rd.join("device_counter.txt")).unwrap();
    assert!(notes.contains("device.simulated = true"), "{notes}");
    assert!(notes.contains("gmc_version = GMC-320Re 4.26"), "{notes}");
    let hist = std::fs::read_to_string(rd.join("histogram_spectrum_cps.csv")).unwrap();
    assert!(hist.contains("entries: 12"), "{hist}");
    // The rate per 10 device seconds: heartbeat 0 starts the clock, every later one is
    // counted once, and the windows cover heartbeats 1-10 and 11.
    let counts = h5_column(&rd.join("rates.h5"), "rates", "counts");
    let want = [got[1..11].iter().sum::<u32>(), got[11]];
    assert_eq!(counts, want.map(f64::from));
    // The counter's facts travel with the data as root attributes.
    let facts = daq_engine::export::inspect(rd.join("rates.h5")).unwrap();
    assert!(
        facts.contains("@counter.gmc_version = GMC-320Re 4.26"),
        "{facts}"
    );
    assert!(
        facts.contains("@counter.device.simulated = true"),
        "{facts}"
    );
}

#[test]
fn mightyohm_runs_and_writes_every_line() {
    let (_d, rd) = ran("mightyohm", "mightyohm.yaml", 8, "readings");
    let rows = csv_rows(&rd.join("readings.csv"));
    assert_eq!(rows.len(), 8);
    for r in &rows {
        // counter, timestamp, deadtime, cps, cpm, usv_per_hr, mode
        assert_eq!(r.len(), 7, "{r:?}");
        let cps: u32 = r[3].parse().unwrap();
        let cpm: u32 = r[4].parse().unwrap();
        assert!(cps <= cpm || cpm == 0 || cps < 1000, "{r:?}");
    }
}

#[test]
fn cosmicwatch_every_field_into_the_feature_buffer() {
    let (_d, rd) = ran("cosmicwatch", "cosmicwatch.yaml", 15, "events");
    let text = std::fs::read_to_string(rd.join("events.csv")).unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(
        header,
        "counter,timestamp,deadtime,event,time_ms,adc,sipm_mv,deadtime_ms,temp_c"
    );
    let rows = csv_rows(&rd.join("events.csv"));
    assert_eq!(rows.len(), 15);
    // The detector's own event numbers and clock run on without gaps or reversals.
    let events: Vec<u64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert_eq!(events, (events[0]..events[0] + 15).collect::<Vec<_>>());
    let times: Vec<u64> = rows.iter().map(|r| r[4].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The dead-time corrected rate, in HDF5: windows of 1 s of detector time that tile the
    // run from the first event on, hold every later event once, and take off exactly the
    // dead time the detector reported.
    let col = |name: &str| h5_column(&rd.join("rates.h5"), "rates", name);
    let (start, duration, counts, live) = (
        col("time"),
        col("duration"),
        col("counts"),
        col("live_time"),
    );
    assert!(!start.is_empty());
    assert_eq!(counts.iter().sum::<f64>(), 14.0, "{counts:?}");
    assert_eq!(start[0], times[0] as f64 / 1000.0);
    for i in 1..start.len() {
        assert!(
            (start[i] - start[i - 1] - duration[i - 1]).abs() < 1e-9,
            "{start:?}"
        );
    }
    let dead: Vec<u64> = rows.iter().map(|r| r[7].parse().unwrap()).collect();
    let reported = (dead[14] - dead[0]) as f64 / 1000.0;
    let taken: f64 = duration.iter().zip(&live).map(|(d, l)| d - l).sum();
    assert!((taken - reported).abs() < 1e-9, "{taken} vs {reported}");
}

#[test]
fn picoscope_muon_through_the_fake_library() {
    let (_d, rd) = ran("picoscope", "picoscope_muon.yaml", 20, "raw");
    // Every triggered capture has a pulse on the trigger channel A (channel 0).
    let rows = csv_rows(&rd.join("pulses.csv"));
    let on_a = rows.iter().filter(|r| r[3] == "0").count();
    assert!(on_a >= 20, "{on_a} pulses on A in 20 captures");
    let notes = std::fs::read_to_string(rd.join("device_scope.txt")).unwrap();
    assert!(notes.contains("picoscope.family = ps5000a"), "{notes}");
}

#[test]
fn hantek6022_triggered_events_from_the_simulated_scope() {
    let (_d, rd) = ran("hantek", "hantek6022.yaml", 10, "raw");
    // One simulated pulse per 5000 samples and 1000-sample events: each event triggered on
    // exactly one pulse.
    let rows = csv_rows(&rd.join("pulses.csv"));
    assert_eq!(rows.len(), 10, "{rows:?}");
}

#[test]
fn drs4_sipm_calibrated_waveforms() {
    let (_d, rd) = ran("drs4", "drs4_sipm.yaml", 10, "raw");
    let rows = csv_rows(&rd.join("pulses.csv"));
    assert!(rows.len() >= 10, "{} pulses in 10 events", rows.len());
}

#[test]
fn wrong_sink_dtype_names_the_fields_to_declare() {
    let d = Dir::new("wrong");
    let text = std::fs::read_to_string(setup("geiger_gmc.yaml"))
        .unwrap()
        .replace("data_dtype: {cps: uint32}", "data_dtype: {cps: uint16}");
    let file = d.0.join("wrong.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, err) = code_and_stderr(&mut simulated(&file, 3, &d.0.join("runs")));
    assert!(code == 1 || code == 2, "exit {code}: {err}");
    assert!(
        err.contains("cps is uint16 but must be uint32")
            && err.contains("data_dtype: {cps: uint32}"),
        "{err}"
    );
}

/// A device importer with `number_of_processes: 2` (as a mimoCoRB2 user writes for a slow
/// stage) passed `check`; at the run each process opened the same device: two simulators
/// whose events interleaved under the same numbers, and on hardware a second open of the
/// same port, USB device or board. `check` and the run refuse it now, naming the worker.
#[test]
fn a_device_importer_in_two_processes_is_refused_before_the_run() {
    let d = Dir::new("two-procs");
    for (name, function) in [
        ("cosmicwatch.yaml", "device.cosmicwatch"),
        ("geiger_gmc.yaml", "device.gmc"),
        ("hantek6022.yaml", "device.hantek6022"),
        ("picoscope_muon.yaml", "device.picoscope"),
        ("redpitaya_scpi.yaml", "device.redpitaya"),
    ] {
        let line = format!("    function: {function}\n");
        let text = std::fs::read_to_string(setup(name)).unwrap().replacen(
            &line,
            &format!("{line}    number_of_processes: 2\n"),
            1,
        );
        let file = d.write(name, &text);
        let out = runs::check(&["--simulate"], &file);
        let err = runs::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "{function} in 2 processes would open its device 2 times; set \
                 number_of_processes: 1 (a second device gets a worker of its own)"
            )),
            "{name}: {err}"
        );
        let target = d.0.join(format!("runs-{name}"));
        let (code, err) = code_and_stderr(&mut simulated(&file, 3, &target));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(!target.exists(), "{name}: a run directory was made");
    }
}

/// A serial detector unplugged in the middle of a run: the simulator pulls its plug 0.6 s
/// in and is back 0.5 s later; the run goes on to its N events, the log names the
/// disconnect and the gap, and the device notes hold the gap.
#[test]
fn unplugged_gmc_mid_run_the_run_goes_on_and_the_gap_is_logged() {
    let d = Dir::new("unplug");
    let text = std::fs::read_to_string(setup("geiger_gmc.yaml"))
        .unwrap()
        .replace(
            "      seed: 7\n",
            "      seed: 7\n      sim_unplug_at: 0.6\n      sim_unplug_for: 0.5\n",
        );
    assert!(text.contains("sim_unplug_at"));
    let file = d.0.join("unplug.yaml");
    std::fs::write(&file, text).unwrap();
    let runs = Dir::new("unplug-runs");
    let (code, err, rd) = run(&runs, &file, 15);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary_events(&rd, "counts"), 15);
    assert_eq!(csv_rows(&rd.join("counts.csv")).len(), 15);
    let log = std::fs::read_to_string(rd.join("daq-engine.log")).unwrap();
    assert!(log.contains("disconnected"), "{log}");
    assert!(log.contains("is back after a gap of"), "{log}");
    let notes = std::fs::read_to_string(rd.join("device_counter.txt")).unwrap();
    assert!(notes.contains("device.gaps = 1"), "{notes}");
    assert!(notes.contains("reconnects = 1"), "{notes}");
    // The HDF5 file keeps the gap with the device facts as root attributes.
    let facts = daq_engine::export::inspect(rd.join("rates.h5")).unwrap();
    assert!(facts.contains("@counter.device.gaps = 1"), "{facts}");
    assert!(
        facts.contains("@counter.device.gap.0 = lost at unix"),
        "{facts}"
    );
    // The monitor's snapshots: the core the counter ran on, and the gap once it is over.
    let stats = std::fs::read_to_string(rd.join("stats.jsonl")).unwrap();
    let snaps: Vec<serde_json::Value> = stats
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counter = |s: &serde_json::Value| s["workers"]["counter"].clone();
    assert!(
        snaps.iter().any(|s| counter(s)["cores"]
            .as_array()
            .is_some_and(|c| !c.is_empty())),
        "{stats}"
    );
    let last = counter(snaps.last().unwrap());
    assert_eq!(last["device"]["gaps"], 1, "{stats}");
    assert_eq!(last["device"]["connected"], true, "{stats}");
    // `daq-engine status` on the finished run: mean rates and the gap as a warning.
    let out = Command::new(EXE).arg("status").arg(&rd).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("mean Hz"), "{text}");
    assert!(
        text.contains("warning: worker 'counter': the device was disconnected 1 time(s)"),
        "{text}"
    );
}
