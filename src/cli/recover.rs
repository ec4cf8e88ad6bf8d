//! `daq-engine recover RUN_DIR`, and the recovery of unfinished runs before a new run
//! starts in the same target directory.

use super::exit;
use std::path::Path;

/// Recovers the runs in `target` that did not finish (see [`crate::export::recover`]),
/// saying what it does on stderr and in the log. Their files are readable and summarised
/// when it returns; compressing them (minutes for a large file) goes on in the returned
/// thread, at the lowest priority, while the new run starts.
pub fn recover_unfinished(target: &Path) -> Option<std::thread::JoinHandle<()>> {
    crate::export::recover::remove_stale_staging(target);
    let mut later = Vec::new();
    for dir in crate::export::recover::unfinished_runs(target) {
        eprintln!(
            "daq-engine: {} did not finish (no readable summary.json): recovering its files",
            dir.display()
        );
        match crate::export::recover::recover_run_dir_then_compress(&dir) {
            Ok((rec, c)) => {
                report_recovery(&dir, Ok(rec));
                for (f, bytes) in c.files() {
                    eprintln!(
                        "  {}: compressing it in the background ({:.1} MB)",
                        f.display(),
                        bytes as f64 / 1e6
                    );
                }
                later.push(c);
            }
            Err(e) => {
                report_recovery(&dir, Err(e));
            }
        }
    }
    if later.iter().all(|c| c.files().is_empty()) {
        return None;
    }
    Some(std::thread::spawn(move || {
        for c in later {
            c.run();
        }
    }))
}

/// Prints what recovering `dir` did; returns the exit code of `daq-engine recover`.
fn report_recovery(
    dir: &Path,
    r: Result<crate::export::recover::RunRecovery, crate::export::ExportError>,
) -> i32 {
    match r {
        Ok(rec) => {
            for f in &rec.files {
                for ((b, n), cut) in f.buffers.iter().zip(&f.rows_cut) {
                    eprintln!(
                        "  {}: {b}: {n} events{}{}",
                        f.path.display(),
                        if *cut > 0 {
                            format!(" ({cut} incomplete rows cut)")
                        } else {
                            String::new()
                        },
                        if f.compressed { ", compressed" } else { "" }
                    );
                }
            }
            for e in rec.files.iter().filter_map(|f| f.compress_error.as_ref()) {
                eprintln!("  {e}");
            }
            for (p, why) in &rec.failed {
                eprintln!("  {}: {why}", p.display());
            }
            tracing::info!(
                "recovered {}: {} events in {} file(s)",
                dir.display(),
                rec.events(),
                rec.files.len()
            );
            i32::from(!rec.failed.is_empty())
        }
        Err(e) => {
            eprintln!("daq-engine: {e}");
            tracing::warn!("recovering {}: {e}", dir.display());
            exit::FAILED
        }
    }
}

/// `daq-engine recover RUN_DIR`.
pub fn recover(run_dir: &Path) -> i32 {
    if !run_dir.is_dir() {
        eprintln!("daq-engine: {} is not a run directory", run_dir.display());
        return exit::BAD_INPUT;
    }
    if crate::export::recover::finished(run_dir) {
        eprintln!(
            "daq-engine: {} finished (its summary.json was written by the run): nothing to \
             recover",
            run_dir.display()
        );
        return exit::OK;
    }
    let r = crate::export::recover::recover_run_dir(run_dir);
    let code = report_recovery(run_dir, r);
    if code == 0 {
        eprintln!(
            "daq-engine: {} recovered; summary.json says what it holds",
            run_dir.display()
        );
    }
    code
}
