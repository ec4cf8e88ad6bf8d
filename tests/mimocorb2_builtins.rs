//! mimoCoRB2's built-in functions by their own names, in a setup written the mimoCoRB2 way
//! (`tests/setups/mimocorb2_builtins/`), run by the real `daq-engine` binary: every event
//! counted through analyzers.pha, misc.copy, exporters.csv/histogram/drain with pass-through
//! sinks, export.hdf5 with one, the observers and visualizers; the peaks compared with
//! scipy's `find_peaks` on the recorded traces; and the books of a pass-through sink under
//! `policy: drop`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

mod runs;
use runs::{
    books_balance, engine_in, finish, finish_within, interrupt, processes_with, run_python, Dir,
};

fn setups() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/setups/mimocorb2_builtins")
}

/// Copies the mimoCoRB2 setup and its config file into a scratch directory.
fn scratch(tag: &str) -> Dir {
    let dir = Dir::new(tag);
    for f in ["spectrum.yaml", "spectrum_config.yaml"] {
        std::fs::copy(setups().join(f), dir.0.join(f)).unwrap();
    }
    dir
}

fn daq(dir: &Dir, args: &[&str]) -> std::process::Child {
    engine_in(&dir.0, args).spawn().expect("start daq-engine")
}

/// Counts of a NumPy int64 .npy file as `np.save` writes it.
fn npy_counts(path: &Path) -> Vec<u64> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<i8'"), "{header}");
    assert_eq!((10 + header_len) % 64, 0);
    b[10 + header_len..]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u64)
        .collect()
}

/// Our histogram CSV of one field: (counts, underflow + overflow + invalid).
fn histogram_csv(path: &Path) -> (Vec<u64>, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut outside = 0;
    let mut counts = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# entries: ") {
            outside = rest
                .split(", ")
                .skip(1)
                .map(|kv| kv.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum();
        } else if !line.starts_with('#') && !line.starts_with("bin_low") {
            counts.push(line.rsplit(',').next().unwrap().parse().unwrap());
        }
    }
    (counts, outside)
}

/// scipy's find_peaks with the setup's analyzers.pha config on every recorded trace; prints
/// the first peak of each event that has one, by counter, as JSON.
const SCIPY: &str = r#"
import json, sys, h5py, numpy as np
from scipy.signal import find_peaks
with h5py.File(sys.argv[1], "r") as f:
    data = f["raw"]["data"]["ch0"][:]
    counters = f["raw"]["metadata"]["counter"][:]
out = {}
for c, x in zip(counters, data):
    p, props = find_peaks(x.astype(np.float64), height=0.05, prominence=(0.02, None),
                          distance=5, width=1.5, wlen=120, rel_height=0.5)
    if len(p):
        row = {"position": int(p[0])}
        row.update({k: float(v[0]) for k, v in props.items()})
        out[str(int(c))] = row
print(json.dumps(out))
"#;

#[test]
fn a_mimocorb2_style_spectrum_runs_with_its_builtins_and_counts_every_event() {
    let dir = scratch("m2spectrum");
    // check: exit 0; the visualizers and the oscilloscope say what they do instead.
    let (code, text) = finish(daq(&dir, &["check", "spectrum.yaml"]));
    assert_eq!(code, 0, "{text}");
    for needle in [
        "worker 'oscilloscope', observers.oscilloscope: no matplotlib window opens",
        "worker 'show_histograms', visualizers.histogram: no matplotlib window opens",
        "worker 'show_csv', visualizers.csv: no matplotlib window opens",
        "config key 'colors' of mimoCoRB2's observers.oscilloscope is ignored",
        "config key 'bins' of mimoCoRB2's exporters.csv is ignored",
        "config key 'filename' of mimoCoRB2's exporters.histogram is ignored",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // Its scalings, ylim and trigger_level are taken (before, all were "ignored").
    for key in ["ylim", "t_scaling", "y_scaling", "trigger_level"] {
        assert!(
            !text.contains(&format!("config key '{key}'")),
            "{key}: {text}"
        );
    }

    let (code, text) = finish_within(
        daq(&dir, &["spectrum.yaml", "--no-tui"]),
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{text}");
    let run = dir.run_dir();
    let summary = books_balance(&run);
    let events = &summary["events"];
    for b in ["raw", "recorded", "copied"] {
        assert_eq!(events[b], 3000, "{b}: {summary}");
    }
    // analyzers.pha writes one record per event with a peak (mimoCoRB2's first peak); the
    // exporters pass every one of them on.
    let peaks = events["peaks"].as_u64().unwrap();
    assert!(peaks > 1000 && peaks < 3000, "{summary}");
    for b in ["peaks_csv", "peaks_hist"] {
        assert_eq!(events[b], peaks, "{b}: {summary}");
    }
    let drain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("drain_drain_0.json")).unwrap())
            .unwrap();
    assert_eq!(drain["events"], peaks);
    // exporters.csv: `filename: peaks`, a header and one row per peak record.
    let csv = std::fs::read_to_string(run.join("peaks.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "counter,timestamp,deadtime,position,peak_heights,prominences,left_bases,right_bases,widths,width_heights,left_ips,right_ips"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, peaks);
    // exporters.histogram: every record in each field's histogram, and mimoCoRB2's files
    // (Histograms_<buffer>/info.csv and <field>.npy) with the same counts.
    // (NBins = n + 1: np.linspace(Min, Max, NBins) are the edges of the n bins; the fields
    // in name order.)
    let info = std::fs::read_to_string(run.join("Histograms_peaks_csv/info.csv")).unwrap();
    assert_eq!(
        info,
        "Channel,Min,Max,NBins\npeak_heights,0.0,1.0,51\nprominences,0.0,1.0,51\nwidths,0,30,31\n"
    );
    for (field, bins) in [("peak_heights", 50), ("widths", 30), ("prominences", 50)] {
        let (counts, outside) =
            histogram_csv(&run.join(format!("histogram_histogram_{field}.csv")));
        assert_eq!(counts.len(), bins, "{field}");
        assert_eq!(counts.iter().sum::<u64>() + outside, peaks, "{field}");
        let npy = npy_counts(&run.join(format!("Histograms_peaks_csv/{field}.npy")));
        assert_eq!(npy, counts, "{field}");
    }
    // The observers and visualizers put their latest record where the dashboard reads it.
    for w in ["oscilloscope", "show_histograms", "show_csv"] {
        assert!(run.join(format!("oscilloscope_{w}.json")).exists(), "{w}");
    }
    // t_scaling [4, 0, 'ns']: sample i at 4·i ns, the axis named as the setup says.
    let osc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("oscilloscope_oscilloscope.json")).unwrap())
            .unwrap();
    assert_eq!(osc["time"][3], 12.0);
    assert_eq!(
        (&osc["time_unit"], &osc["value_unit"]),
        (&"ns".into(), &"V".into())
    );
    assert_eq!(osc["trigger_level"], 0.05);
    assert!(processes_with(&run.to_string_lossy()).is_empty());

    // The same peaks as scipy's find_peaks on the traces export.hdf5 recorded (pass-through).
    let Ok(py) = std::env::var("DAQ_PYTHON") else {
        println!("SKIPPED the scipy comparison: set DAQ_PYTHON to a Python with h5py and scipy");
        return;
    };
    let o = run_python(&py, SCIPY, &[run.join("raw.h5").as_os_str()], "");
    let scipy: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scipy.len() as u64, peaks, "events with a peak");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for row in &rows {
        let want = &scipy[row[0]];
        for (name, value) in header.iter().zip(row).skip(3) {
            let (got, want) = (value.parse::<f64>().unwrap(), want[*name].as_f64().unwrap());
            assert!(
                (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
                "event {}: {name} {got}, scipy {want}",
                row[0]
            );
        }
    }
}

/// An exporter with a sink passes every event on; a full `drop` sink loses events, counted,
/// and the books balance for the sink's buffer too. Before, check refused any sink: "takes
/// exactly 0 buffers in sinks".
#[test]
fn an_exporters_pass_through_sink_gets_every_event_or_counts_it_lost() {
    let dir = Dir::new("m2passdrop");
    let setup = "target_directory: runs
options: {stats_interval: 0.2}
Buffers:
  raw: {slot_count: 64, data_length: 16, data_dtype: {ch0: f4, ch1: f4}}
  passed: {slot_count: 8, data_length: 16, data_dtype: {ch0: f4, ch1: f4}, policy: drop}
Workers:
  source: {function: bench.source, sinks: [raw], config: {n_events: 1000000000}}
  pass: {function: export.drain, sources: [raw], sinks: [passed]}
  late: {function: bench.sink, sources: [passed]}
";
    let s = dir.write("setup.yaml", setup);
    let child = daq(&dir, &[s.to_str().unwrap(), "--no-tui"]);
    let t = std::time::Instant::now();
    let run = loop {
        assert!(t.elapsed() < Duration::from_secs(90), "no run started");
        if let Ok(mut d) = dir.0.join("runs").read_dir() {
            if let Some(Ok(e)) = d.next() {
                if e.path().join("stats.jsonl").exists() {
                    break e.path();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let needle = format!("{} late 0", run.join("plan.json").display());
    let pids = loop {
        let p = processes_with(&needle);
        if !p.is_empty() || t.elapsed() > Duration::from_secs(90) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = nix::unistd::Pid::from_raw(pids[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child).unwrap();
    let (code, text) = finish_within(child, Duration::from_secs(120));
    assert_eq!(code, 0, "{text}");
    let summary = books_balance(&run);
    let raw = summary["events"]["raw"].as_u64().unwrap();
    let lost = summary["lost"]["passed"].as_u64().unwrap();
    // The exporter consumed every event and offered each to its sink: published or lost.
    let drain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("drain_pass_0.json")).unwrap())
            .unwrap();
    assert_eq!(drain["events"], raw);
    assert_eq!(summary["events"]["passed"].as_u64().unwrap() + lost, raw);
    assert!(
        lost > 0,
        "the stopped reader made the drop sink lose: {summary}"
    );
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("bench_late_0.json")).unwrap())
            .unwrap();
    assert_eq!(bench["events"], summary["events"]["passed"]);
    assert_eq!(bench["corrupt"], 0);
}

/// A pass-through sink must hold the source's records; a mistyped key in a config file
/// shared by mimoCoRB2 built-ins is still an error with "did you mean".
#[test]
fn check_refuses_a_pass_through_sink_of_another_shape_and_a_mistyped_shared_key() {
    let dir = scratch("m2refuse");
    // What `check` says of `setup`, which it refuses.
    let refused = |setup: &str| {
        let (code, out) = finish(daq(&dir, &["check", setup]));
        assert_eq!(code, 2, "{out}");
        out
    };
    let text = std::fs::read_to_string(dir.0.join("spectrum.yaml")).unwrap();
    let other = text.replace(
        "  peaks_hist: *peaks\n",
        "  peaks_hist: {slot_count: 8, data_length: 1, data_dtype: {position: int64}}\n",
    );
    dir.write("other.yaml", &other);
    let out = refused("other.yaml");
    assert!(
        out.contains("worker 'histogram' is an exporter: it passes every event of 'peaks_csv'")
            && out.contains("but sink 'peaks_hist' holds 1 records of {position: int64}"),
        "{out}"
    );
    let config = std::fs::read_to_string(dir.0.join("spectrum_config.yaml")).unwrap();
    dir.write(
        "spectrum_config.yaml",
        &config.replace("save_interval:", "save_intervall:"),
    );
    let out = refused("spectrum.yaml");
    assert!(
        out.contains("spectrum_config.yaml:3:1: error: worker 'csv': function exporters.csv has no config key 'save_intervall'")
            && out.contains("did you mean `save_interval`"),
        "{out}"
    );
    assert!(!dir.0.join("runs").exists());
}

/// Events each worker's drain files say it consumed, summed over its processes.
fn drained(run: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(run).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("drain_") else {
            continue;
        };
        let worker = rest.rsplit_once('_').unwrap().0.to_string();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(&name)).unwrap()).unwrap();
        *out.entry(worker).or_default() += v["events"].as_u64().unwrap();
    }
    out
}

/// `daq-engine migrate FILE` in `dir`, run to its end.
fn migrate(dir: &Path, file: &str) -> std::process::Output {
    Command::new(EXE)
        .args(["migrate", file])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `daq-engine migrate` ports what is read differently here and says so line by line; the
/// port shares the events among the alike drains as mimoCoRB2 did, where the original run
/// here gives each of them every event.
#[test]
fn migrate_ports_a_mimocorb2_setup_and_the_port_shares_events_as_mimocorb2_did() {
    let dir = Dir::new("migrate");
    std::fs::copy(
        setups().join("split_readers.yaml"),
        dir.0.join("split_readers.yaml"),
    )
    .unwrap();
    let out = migrate(&dir.0, "split_readers.yaml");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "split_readers.yaml:3: changed: `Options: output_directory: runs` became `target_directory: runs`",
        "split_readers.yaml:3: changed: removed the `Options:` block",
        "split_readers.yaml:12: changed: removed `overwrite: true`",
        "split_readers.yaml:13: changed: removed `overwrite: false`",
        "split_readers.yaml:20: changed: worker 'sink_a' now has number_of_processes: 3 (was 1), in place of sink_b, sink_c",
        "split_readers.yaml:23: changed: removed worker 'sink_b'",
        "split_readers.yaml:27: changed: removed worker 'sink_c'",
        "split_readers.yaml:28: note: left as it is: worker 'table' reads buffer 'raw' beside worker 'sink_a'",
        "wrote split_readers_daq-engine.yaml",
    ] {
        assert!(said.contains(line), "missing {line:?} in:\n{said}");
    }
    let ported = std::fs::read_to_string(dir.0.join("split_readers_daq-engine.yaml")).unwrap();
    assert_eq!(
        ported,
        "# Written the mimoCoRB2 way: an Options block, overwrite keys, and three alike drains that in
# mimoCoRB2 share the events of 'raw' (each event to one of them), beside a CSV exporter.
target_directory: runs

Buffers:
  raw: &wave
    slot_count: 100
    data_length: 8
    data_dtype: {ch: float32}
  spare: {slot_count: 100, data_length: 8, data_dtype: {ch: float32}}

Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {n_events: 1000, pretrigger_samples: 1, noise: 0.0}
  sink_a:
    number_of_processes: 3
    function: exporters.drain
    sources: [raw]

  table:
    function: exporters.csv
    sources: [raw]
"
    );
    // A second migrate does not overwrite the port.
    let again = migrate(&dir.0, "split_readers.yaml");
    assert_eq!(again.status.code(), Some(2));
    // The port of a port has nothing left to port.
    let done = migrate(&dir.0, "split_readers_daq-engine.yaml");
    assert_eq!(done.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&done.stdout).contains("nothing to port"));

    for (setup, each) in [
        ("split_readers.yaml", 1000),
        ("split_readers_daq-engine.yaml", 0),
    ] {
        let _ = std::fs::remove_dir_all(dir.0.join("runs"));
        // The original's Options block is ignored here: its runs go where we say.
        let (code, err) = finish(daq(&dir, &[setup, "--quiet", "--target-directory", "runs"]));
        assert_eq!(code, 0, "{setup}: {err}");
        let d = drained(&dir.run_dir());
        if each > 0 {
            // Here every reader gets every event.
            let want: Vec<(String, u64)> = ["sink_a", "sink_b", "sink_c"]
                .iter()
                .map(|w| (w.to_string(), each))
                .collect();
            assert_eq!(d.into_iter().collect::<Vec<_>>(), want, "{setup}");
        } else {
            // The port: the three processes of sink_a share the 1000 events.
            assert_eq!(d.keys().collect::<Vec<_>>(), ["sink_a"], "{setup}");
            assert_eq!(d["sink_a"], 1000, "{setup}");
        }
    }
}

/// migrate's "OK for `daq-engine check`" means what check will say: it also loads the port's
/// Python workers (check does, in a probe process). A worker file that does not load was
/// ported and called OK, and check then refused the port.
#[test]
fn migrate_does_not_call_a_port_ok_whose_python_worker_does_not_load() {
    let dir = Dir::new("migrate-python");
    // `daq-engine migrate NAME` of `text` written as NAME: exit code, stdout, stderr.
    let port = |name: &str, text: &str| {
        std::fs::write(dir.0.join(name), text).unwrap();
        let out = migrate(&dir.0, name);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), said, err)
    };
    let source = "  source: {function: simulate.pulses, sinks: [raw], config: {n_events: 10, pretrigger_samples: 1}}\n";
    let buffers = "Buffers:\n  raw: {slot_count: 8, data_length: 4, data_dtype: {ch: float32}}\n";
    std::fs::write(dir.0.join("broken.py"), "def sink(:\n").unwrap();
    let (code, said, err) = port(
        "two.yaml",
        &format!("{buffers}Workers:\n{source}  a: {{file: broken.py, function: sink, sources: [raw]}}\n  b: {{file: broken.py, function: sink, sources: [raw]}}\n"),
    );
    assert_eq!(code, Some(2), "{said}{err}");
    assert!(said.contains("wrote two_daq-engine.yaml"), "{said}");
    assert!(!said.contains("OK for"), "{said}");
    assert!(
        err.contains("two_daq-engine.yaml: worker 'a'") && err.contains("left to fix by hand"),
        "{err}"
    );

    // Nor one whose target directory a run could not make its run directory in; and a
    // setup with nothing to port was said to "run here as it is" after the setup check alone.
    std::fs::write(dir.0.join("afile"), "").unwrap();
    let (code, said, err) = port(
        "target.yaml",
        &format!("target_directory: afile/runs\n{buffers}Workers:\n{source}"),
    );
    assert_eq!(code, Some(2), "{said}{err}");
    assert!(!said.contains("runs here"), "{said}");
    assert!(err.contains("afile is a file, not a directory"), "{err}");
}
