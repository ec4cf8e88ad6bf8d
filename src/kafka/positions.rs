//! Where a `source.kafka` process stands in each partition of its topic, kept in a file of
//! the run directory mapped into memory (`kafka_source_<worker>_<process>.positions`), so
//! that a process of the worker started again in the same run (after one failed or was
//! killed) goes on after the records the earlier one took instead of where the setup says
//! to start: with `from: beginning` that was the whole topic again, every record taken
//! before the restart written into the run twice. The group's committed offsets are no
//! substitute: they trail what was taken by up to the commit interval, and in a run that
//! assigns its partitions they may be another run's.
//!
//! A record's position is set before its event is published (while the record is being
//! written into its claimed slot): a process killed in between leaves a claimed slot that
//! the books count lost, never a record taken twice. Setting it is two stores into the
//! mapping: no syscall on the way of an event. The file is written whole when it is
//! made, so a full disk can never fault a store into it.
//!
//! Layout: [`PARTITIONS`] entries of 16 bytes, one per partition id: the offset after the
//! last record handed on or passed over (little-endian i64, 0: none yet), and whether the
//! partition has reached `from_time` (i64, 0 or 1). Partitions past [`PARTITIONS`] are not
//! kept (said once in the log).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Partitions a positions file keeps.
pub const PARTITIONS: usize = 1024;

/// Bytes of one partition's entry.
const ENTRY: usize = 16;

/// The positions file of process `process` of `source.kafka` worker `worker`.
pub fn path(run_dir: &Path, worker: &str, process: usize) -> PathBuf {
    run_dir.join(format!("kafka_source_{worker}_{process}.positions"))
}

/// Where an earlier process of the worker stood in one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The partition id.
    pub partition: i32,
    /// The offset after the last record it handed on or passed over.
    pub next: i64,
    /// The partition had reached `from_time`.
    pub reached: bool,
}

/// The mapped positions file of this process.
pub struct Positions {
    map: memmap2::MmapMut,
    /// A partition past [`PARTITIONS`] was said in the log.
    said_too_many: bool,
}

impl Positions {
    /// Opens the file at `path`, making it when there is none, with the positions an
    /// earlier process of this worker left in it (none for the first process of the run).
    pub fn open(path: &Path) -> std::io::Result<(Positions, Vec<Position>)> {
        let size = PARTITIONS * ENTRY;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len != size as u64 {
            if len != 0 {
                tracing::warn!(
                    "{}: {len} bytes, not the {size} of a positions file: started anew",
                    path.display()
                );
                file.set_len(0)?;
            }
            // Every block written now: a store into the mapping can never need one later.
            file.write_all(&vec![0u8; size])?;
        }
        // SAFETY: the file is this worker process's own (named after the worker and process
        // in the run directory, which only this run writes), so nothing truncates it while
        // it is mapped; its length is `size`, checked or written just above.
        let map = unsafe { memmap2::MmapOptions::new().len(size).map_mut(&file)? };
        let at = |i: usize, field: usize| {
            let o = i * ENTRY + field * 8;
            i64::from_le_bytes(map[o..o + 8].try_into().unwrap_or_default())
        };
        let earlier = (0..PARTITIONS)
            .filter(|&i| at(i, 0) > 0)
            .map(|i| Position {
                partition: i as i32,
                next: at(i, 0),
                reached: at(i, 1) != 0,
            })
            .collect();
        Ok((
            Positions {
                map,
                said_too_many: false,
            },
            earlier,
        ))
    }

    /// The entry of `partition`, if the file keeps it.
    fn entry(&mut self, partition: usize) -> Option<&mut [u8]> {
        if partition >= PARTITIONS {
            if !self.said_too_many {
                self.said_too_many = true;
                tracing::warn!(
                    "partition {partition}: positions are kept for the first {PARTITIONS} \
                     partitions only; a process started again reads this one from the start"
                );
            }
            return None;
        }
        Some(&mut self.map[partition * ENTRY..(partition + 1) * ENTRY])
    }

    /// `partition` is done up to `next` (the offset after its last record handled).
    pub fn set(&mut self, partition: usize, next: i64) {
        if let Some(e) = self.entry(partition) {
            e[..8].copy_from_slice(&next.to_le_bytes());
        }
    }

    /// `partition` has reached `from_time`.
    pub fn reached(&mut self, partition: usize) {
        if let Some(e) = self.entry(partition) {
            e[8..].copy_from_slice(&1i64.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_come_back_in_a_second_opening() {
        let dir = crate::fsio::test_dir("kafka-positions");
        let path = path(&dir, "from_kafka", 0);
        let (mut p, earlier) = Positions::open(&path).unwrap();
        assert!(earlier.is_empty());
        p.set(0, 100);
        p.set(3, 7);
        p.reached(3);
        p.set(PARTITIONS, 5);
        drop(p);
        let (_, earlier) = Positions::open(&path).unwrap();
        assert_eq!(
            earlier,
            vec![
                Position {
                    partition: 0,
                    next: 100,
                    reached: false
                },
                Position {
                    partition: 3,
                    next: 7,
                    reached: true
                },
            ]
        );
        // A file of another length (not one of ours) starts anew.
        std::fs::write(&path, b"junk").unwrap();
        let (_, earlier) = Positions::open(&path).unwrap();
        assert!(earlier.is_empty());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (PARTITIONS * ENTRY) as u64
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
