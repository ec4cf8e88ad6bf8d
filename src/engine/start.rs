//! Starting a run from a validated setup: its run directory (made under a staging name and
//! renamed with its lock held) and its plan. Used by the CLI and by programs that run the
//! supervisor themselves.

use crate::export::recover::RunDirLock;
use crate::run_dir::plan::{BufferPlan, Plan};
use crate::setup::Setup;
use std::path::{Path, PathBuf};

/// Makes `target/run_<UTC time>/` (with `_2`, `_3`… when two runs start in the same
/// second) and returns it with the run id used in ring names.
pub fn make_run_dir(target: &Path) -> std::io::Result<(PathBuf, String)> {
    make_locked_run_dir(target).map(|(dir, id, _)| (dir, id))
}

/// As [`make_run_dir`], and holds the run directory's lock: the directory appears under its
/// name with the lock already held (it is made under a staging name and renamed), so a
/// starting run never takes a live run's directory for one to recover.
pub fn make_locked_run_dir(target: &Path) -> std::io::Result<(PathBuf, String, RunDirLock)> {
    std::fs::create_dir_all(target)?;
    let stamp = crate::clock::utc_now()
        .replace([':', '.'], "-")
        .trim_end_matches('Z')
        .to_string();
    let stamp = &stamp[..19.min(stamp.len())];
    // Unique among live runs: the pid, a per-process sequence and the time, so two runs
    // started by one process in one second (into different target directories) get
    // different ring names.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!("{}-{seq}-{nanos:x}", std::process::id());
    let staging = target.join(format!(".staging_{id}"));
    std::fs::create_dir(&staging)?;
    let lock = match RunDirLock::try_lock(&staging) {
        Ok(Some(l)) => l,
        Ok(None) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(std::io::Error::other("a fresh run directory is locked"));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    for n in 1..1000 {
        let name = if n == 1 {
            format!("run_{stamp}")
        } else {
            format!("run_{stamp}_{n}")
        };
        let dir = target.join(&name);
        let cwd = std::fs::File::open(target)?;
        match nix::fcntl::renameat2(
            &cwd,
            staging.file_name().unwrap_or_default(),
            &cwd,
            name.as_str(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok((dir, id, lock)),
            Err(nix::errno::Errno::EEXIST) => continue,
            // A file system without RENAME_NOREPLACE (some network ones): a plain rename to a
            // name that is free now (it would replace an empty directory made this instant).
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
                if dir.exists() {
                    continue;
                }
                return match std::fs::rename(&staging, &dir) {
                    Ok(()) => Ok((dir, id, lock)),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging);
                        Err(e)
                    }
                };
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e.into());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    Err(std::io::Error::other(
        "a thousand runs started in one second",
    ))
}

/// The run plan for a validated setup (ring paths are filled in by the supervisor).
pub fn plan_of(setup: &Setup, run_dir: &Path, run_id: &str) -> Plan {
    let buffers = setup
        .buffers
        .iter()
        .map(|b| BufferPlan {
            name: b.name.clone(),
            fields: b
                .dtype
                .fields()
                .iter()
                .map(|f| (f.name.clone(), f.ty))
                .collect(),
            data_length: b.data_length,
            slot_count: b.slot_count,
            policy: b.policy,
            writer: setup.writer_of(&b.name).map(|w| w.name.clone()),
            readers: setup
                .readers_of(&b.name)
                .iter()
                .map(|w| w.name.clone())
                .collect(),
            observers: setup
                .observers_of(&b.name)
                .iter()
                .map(|w| w.name.clone())
                .collect(),
            rings: vec![],
        })
        .collect();
    let workers = setup.workers.clone();
    Plan {
        run_id: run_id.to_string(),
        run_dir: run_dir.to_path_buf(),
        // Absolute: a worker's `buffer_io.setup_dir` (and anything it opens beside the
        // setup) must not depend on where the run was started from (it was `.`).
        setup_dir: std::path::absolute(&setup.setup_dir).unwrap_or(setup.setup_dir.clone()),
        buffers,
        workers,
        max_events: setup.options.max_events,
        max_seconds: setup.options.max_seconds,
        stats_interval: setup.options.stats_interval,
        huge_pages: setup.options.huge_pages,
        disk_reserve_mb: setup.options.disk_reserve_mb,
        drain_stall_seconds: setup.options.drain_stall_seconds,
        worker_stall_seconds: setup.options.worker_stall_seconds,
        alert_command: setup.options.alert_command.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A setup given as `setup.yaml` (no directory) gave its workers `setup_dir` `.`
    /// (`buffer_io.setup_dir` was `PosixPath('.')`, a tester found): absolute now.
    #[test]
    fn the_plan_names_the_setup_directory_in_full() {
        let text = "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {x: f4}}\n\
                    Workers:\n  src: {function: bench.source, sinks: [raw]}\n  \
                    out: {function: export.drain, sources: [raw]}\n";
        let registry = crate::worker::Registry::builtin();
        let c = Setup::check_bytes(text.as_bytes(), Path::new("setup.yaml"), &registry, 2);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let plan = plan_of(&c.setup, Path::new("/tmp/run"), "r1");
        assert!(plan.setup_dir.is_absolute(), "{}", plan.setup_dir.display());
        assert_eq!(plan.setup_dir, std::env::current_dir().unwrap());
    }
}
