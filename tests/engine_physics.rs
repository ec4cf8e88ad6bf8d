//! The lab-course measurement through the real binary: setups/muon_lifetime.yaml with a small
//! event count; the fitted lifetime agrees with the injected 2.197 µs within 3σ and the fit is
//! printed at the end of the run and written to the run directory.

use std::process::Command;

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
