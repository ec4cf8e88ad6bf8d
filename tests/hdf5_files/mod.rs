//! What the HDF5 run-file tests share: a scratch directory per test, the deterministic event
//! bytes they write and read back, and `h5dump -H` as an outside check of every file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty directory for the test `name` (left there for a look after a failure).
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daq-hdf5-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `len` deterministic event bytes: every byte depends on the counter and its position (the
/// formula the Python readers use too).
pub fn event_bytes_of_len(len: usize, counter: i64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as i64 * 31 + counter * 7 + (i as i64 >> 8)) as u8)
        .collect()
}

/// Runs `h5dump -H` and asserts it exits 0 with no error output; says SKIPPED without it.
pub fn h5dump_clean(path: &Path) {
    let mut cmd = Command::new("h5dump");
    daq_engine::export::hdf5::no_inherited_files(&mut cmd);
    match cmd.arg("-H").arg(path).output() {
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !err.contains("error"),
                "h5dump -H {} failed: {}\n{}",
                path.display(),
                out.status,
                err
            );
        }
        Err(e) => println!("SKIPPED h5dump check: h5dump not runnable ({e}); install hdf5-tools"),
    }
}

/// The filter mask of every chunk of `/raw/data` in the file at `path`, in chunk order: 0 for
/// a chunk stored through every filter (deflated), 3 for one stored raw (both skipped).
pub fn chunk_filter_masks(path: &Path) -> Vec<u32> {
    let f = hdf5_metno::File::open(path).unwrap();
    let ds = f.dataset("raw/data").unwrap();
    (0..ds.num_chunks().unwrap())
        .map(|i| ds.chunk_info(i).unwrap().filter_mask)
        .collect()
}

/// A run file at `path` for the setup text `setup`, flushed every `flush_interval` (and
/// never otherwise by time).
pub fn writer_flushing_every(
    path: &Path,
    setup: &str,
    flush_interval: std::time::Duration,
) -> daq_engine::export::hdf5::RunFileWriter {
    daq_engine::export::hdf5::RunFileWriter::create(
        path,
        daq_engine::export::hdf5::RunInfo::new(setup),
        daq_engine::export::hdf5::WriterOptions {
            flush_interval,
            ..Default::default()
        },
    )
    .unwrap()
}
