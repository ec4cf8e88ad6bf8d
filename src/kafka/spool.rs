//! The bounded local file that keeps messages while the broker is away: appended in order,
//! read back in the same order, emptied (truncated) once everything was read back.
//!
//! Record: `u32` payload length, `i64` record timestamp (ms since the epoch), the payload;
//! little-endian. Guarantees: [`Spool::append`] refuses (returns `false`) instead of growing
//! the file beyond its bound; records come back exactly once, in the order they went in.
//! Each append and read is one `pwrite`/`pread`: the spool is the exceptional path (a broker
//! away), not the per-event path of a healthy run.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: usize = 12;

/// A spool file.
pub struct Spool {
    file: File,
    path: PathBuf,
    /// Bytes written so far (the end of the last record), ≤ `bound` unless a single record
    /// is larger than the bound (then nothing fits).
    write: u64,
    /// Start of the next record to read back, ≤ `write`.
    read: u64,
    /// Largest file size.
    bound: u64,
    /// Records written and not yet read back.
    pending: u64,
    header: [u8; HEADER],
}

impl Spool {
    /// Creates (or empties) the spool file `path`, at most `bound` bytes.
    pub fn create(path: &Path, bound: u64) -> std::io::Result<Spool> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Spool {
            file,
            path: path.to_path_buf(),
            write: 0,
            read: 0,
            bound,
            pending: 0,
            header: [0; HEADER],
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records waiting to be read back.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Appends one record; `Ok(false)` when it would grow the file beyond its bound.
    pub fn append(&mut self, timestamp_ms: i64, payload: &[u8]) -> std::io::Result<bool> {
        let len = HEADER as u64 + payload.len() as u64;
        if self.write + len > self.bound || payload.len() > u32::MAX as usize {
            return Ok(false);
        }
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[4..].copy_from_slice(&timestamp_ms.to_le_bytes());
        self.file.write_all_at(&h, self.write)?;
        self.file
            .write_all_at(payload, self.write + HEADER as u64)?;
        self.write += len;
        self.pending += 1;
        Ok(true)
    }

    /// The oldest record still waiting, read into `buf`: its timestamp, or `None` when
    /// nothing waits. It stays the oldest until [`Spool::advance`].
    pub fn peek(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<i64>> {
        if self.pending == 0 {
            return Ok(None);
        }
        self.file.read_exact_at(&mut self.header, self.read)?;
        let len = u32::from_le_bytes(self.header[..4].try_into().expect("4 bytes")) as usize;
        let ts = i64::from_le_bytes(self.header[4..].try_into().expect("8 bytes"));
        buf.resize(len, 0);
        self.file.read_exact_at(buf, self.read + HEADER as u64)?;
        Ok(Some(ts))
    }

    /// Drops the oldest record (the one [`Spool::peek`] returned, `len` bytes of payload);
    /// when that was the last, the file is emptied so the whole bound is free again.
    pub fn advance(&mut self, len: usize) -> std::io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        self.read += (HEADER + len) as u64;
        self.pending -= 1;
        if self.pending == 0 {
            self.read = 0;
            self.write = 0;
            self.file.set_len(0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_once_in_order_and_the_bound_refuses() {
        let dir = crate::fsio::test_dir("spool");
        let path = dir.join("spool.bin");
        // Room for exactly three records of 8 bytes.
        let mut s = Spool::create(&path, 3 * (HEADER as u64 + 8)).unwrap();
        for i in 0..3u64 {
            assert!(s.append(i as i64 * 10, &i.to_le_bytes()).unwrap());
        }
        assert!(!s.append(99, &[0; 8]).unwrap(), "beyond the bound");
        assert_eq!(s.pending(), 3);
        let mut buf = Vec::new();
        assert_eq!(s.peek(&mut buf).unwrap(), Some(0));
        assert_eq!(s.peek(&mut buf).unwrap(), Some(0), "peek does not advance");
        s.advance(buf.len()).unwrap();
        // Room is only made when the spool is empty: still full.
        assert!(!s.append(99, &[0; 8]).unwrap());
        let mut got = Vec::new();
        while let Some(ts) = s.peek(&mut buf).unwrap() {
            got.push((ts, u64::from_le_bytes(buf[..8].try_into().unwrap())));
            s.advance(buf.len()).unwrap();
        }
        assert_eq!(got, vec![(10, 1), (20, 2)]);
        assert!(s.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(
            s.append(7, &[1; 8]).unwrap(),
            "emptied: the bound is free again"
        );
        assert_eq!(s.peek(&mut buf).unwrap(), Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
