//! The lab-course measurement through the real binary: setups/muon_lifetime.yaml with a small
//! event count; the fitted lifetime agrees with the injected 2.197 µs within 3σ and the fit is
//! printed at the end of the run and written to the run directory.

use std::process::Command;

mod runs;
use runs::Dir;

#[test]
fn muon_lifetime_setup_fits_the_injected_lifetime() {
    let dir = std::env::temp_dir().join(format!("daq-physics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let setup = concat!(env!("CARGO_MANIFEST_DIR"), "/setups/muon_lifetime.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_daq-engine"))
        .args([
            setup,
            "--max-events",
            "4000",
            "--quiet",
            "--target-directory",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("exponential fit: lifetime ="),
        "the fit is printed: {text}"
    );
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("fit_muon_lifetime.json")).unwrap())
            .unwrap();
    let tau = fit["result"]["lifetime"].as_f64().unwrap();
    let sigma = fit["result"]["sigma"].as_f64().unwrap();
    assert!(sigma > 0.0 && sigma < 0.3e-6, "sigma {sigma}");
    let pull = (tau - 2.197e-6) / sigma;
    assert!(pull.abs() < 3.0, "tau {tau} ± {sigma}: pull {pull}");
    // The histograms are also in HDF5, with the number of bins the setup asks for.
    let h5 = run.join("histograms_lifetime.h5");
    let file = hdf5_metno::File::open(&h5).unwrap_or_else(|e| panic!("{}: {e}", h5.display()));
    let counts: Vec<u64> = file
        .dataset("histograms/delay/counts")
        .unwrap()
        .read_raw()
        .unwrap();
    let edges: Vec<f64> = file
        .dataset("histograms/delay/edges")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_eq!((edges.len(), counts.len()), (161, 160));
    let csv = std::fs::read_to_string(run.join("histogram_lifetime_delay.csv")).unwrap();
    let csv_total: u64 = csv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .filter_map(|l| l.split(',').nth(2)?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(counts.iter().sum::<u64>(), csv_total, "HDF5 and CSV agree");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `setup` (YAML text) with the real binary in a scratch directory; returns it (removed
/// when dropped) and the run directory.
fn run_setup(tag: &str, setup: &str) -> (Dir, std::path::PathBuf) {
    let dir = Dir::new(&format!("physics-{tag}"));
    let file = dir.write("setup.yaml", setup);
    let out = Command::new(env!("CARGO_BIN_EXE_daq-engine"))
        .arg(&file)
        .args(["--quiet", "--target-directory"])
        .arg(dir.0.join("runs"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let run = dir.run_dir();
    (dir, run)
}

/// The two sources of `process.coincidence` and its sink, and a counter of the pairs.
fn coincidence_setup(importers: &str, window: f64) -> String {
    format!(
        "Buffers:\n\
         \x20 raw: &tiny {{slot_count: 256, data_length: 4, data_dtype: {{ch: float32}}}}\n\
         \x20 a: *tiny\n\
         \x20 b: *tiny\n\
         \x20 pairs: {{slot_count: 256, data_length: 1,\n\
         \x20         data_dtype: {{time: float64, dt: float64, counter_a: int64, counter_b: int64}}}}\n\
         Workers:\n\
         {importers}\
         \x20 pair:\n\
         \x20   function: process.coincidence\n\
         \x20   sources: [a, b]\n\
         \x20   sinks: [pairs]\n\
         \x20   config: {{window: {window:e}}}\n\
         \x20 keep:\n\
         \x20   function: export.csv\n\
         \x20   sources: [pairs]\n"
    )
}

fn pulses(name: &str, sink: &str, n: u64, seed: u64) -> String {
    format!(
        "  {name}:\n    function: simulate.pulses\n    sinks: [{sink}]\n    config: {{n_events: {n}, \
         rate: 1000.0, pretrigger_samples: 1, noise: 0.0, seed: {seed}}}\n"
    )
}

/// One detector's events copied into both sources: every event is its own partner, so the
/// pairs are exactly the events, each with dt 0 and the same counter on both sides — however
/// the two streams interleave in the worker.
#[test]
fn coincidence_pairs_every_event_with_its_own_copy() {
    let n = 20_000u64;
    let importers = pulses("detector", "raw", n, 7)
        + "  split:\n    function: misc.copy\n    sources: [raw]\n    sinks: [a, b]\n";
    let (_dir, run) = run_setup("coinc-copy", &coincidence_setup(&importers, 1e-6));
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("coincidence_pair.json")).unwrap())
            .unwrap();
    assert_eq!(counts["pairs"], n, "{counts}");
    assert_eq!(counts["unpaired"], serde_json::json!([0, 0]), "{counts}");
    assert_eq!(counts["events"], serde_json::json!([n, n]), "{counts}");
    let csv = std::fs::read_to_string(run.join("pairs.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| l.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len() as u64, n);
    let header: Vec<&str> = csv
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name).unwrap();
    for r in &rows {
        assert_eq!(r[col("dt")], 0.0);
        assert_eq!(r[col("counter_a")], r[col("counter_b")]);
    }
}

/// Two independent Poisson sources of rate R₁, R₂ give accidental coincidences at
/// 2τR₁R₂ for a window ±τ (τR ≪ 1): 100 s of simulated time at 1 kHz each, τ = 2 µs,
/// expects 400 ± 20.
#[test]
fn coincidence_of_independent_sources_counts_the_accidental_rate() {
    let (n, rate, tau) = (100_000u64, 1000.0, 2e-6);
    let importers = pulses("paddle_a", "a", n, 11) + &pulses("paddle_b", "b", n, 12);
    let (_dir, run) = run_setup("coinc-acc", &coincidence_setup(&importers, tau));
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("coincidence_pair.json")).unwrap())
            .unwrap();
    let pairs = counts["pairs"].as_u64().unwrap() as f64;
    let expected = 2.0 * tau * rate * rate * (n as f64 / rate);
    let sigma = expected.sqrt();
    assert!(
        (pairs - expected).abs() < 5.0 * sigma,
        "{pairs} accidental pairs, expected {expected} ± {sigma}: {counts}"
    );
    assert_eq!(counts["events"], serde_json::json!([n, n]), "{counts}");
    for s in 0..2 {
        assert_eq!(
            counts["pairs"].as_u64().unwrap() + counts["unpaired"][s].as_u64().unwrap(),
            n,
            "every event of source {s} is paired or counted: {counts}"
        );
    }
}

/// `check` builds process.coincidence with the setup's buffers: a sink field it does not
/// produce is refused before anything runs (exit 2). Before, `check` skipped its build.
#[test]
fn check_refuses_a_coincidence_sink_field_it_does_not_fill() {
    let dir = Dir::new("physics-coinc-check");
    let importers = pulses("a_det", "a", 10, 1) + &pulses("b_det", "b", 10, 2);
    let setup = coincidence_setup(&importers, 1e-6).replace("counter_b: int64", "bogus: int64");
    let file = dir.write("setup.yaml", &setup);
    let out = runs::check(&[], &file);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("'bogus'"), "{text}");
}
