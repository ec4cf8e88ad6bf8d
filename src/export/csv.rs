//! CSV files for small feature records (pulse heights, rates): one line per event,
//! `counter,timestamp,deadtime,<fields>`, integers printed as integers and floats with the
//! shortest text that reads back to the same value (full precision); every other field type
//! as [`Dtype::write_csv_cells`] writes it (bool, complex, text, subarray columns).
//!
//! Guarantees: lines are formatted into a reused buffer and written through a buffered
//! writer, flushed when the flush interval has passed (checked with the vDSO clock) and at
//! `finish`; after warm-up `append` allocates nothing. Must never write a partial line
//! through its own fault or print a float rounded. [`cut_to_whole_lines`] takes back a line
//! a crash or a full disk cut (for `recover`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::ExportError;
use crate::dtype::{Dtype, Metadata};

/// A CSV file of feature records.
pub struct CsvWriter {
    out: BufWriter<File>,
    path: PathBuf,
    dtype: Dtype,
    data_length: usize,
    flush_interval: Duration,
    last_flush: Instant,
    line: String,
    rows: u64,
}

impl CsvWriter {
    /// Creates `path` (refusing to overwrite) and writes the header. Columns are
    /// `counter,timestamp,deadtime` and then the dtype's fields; with `data_length > 1` every
    /// record of the event gets its own columns `<field>_<index>`.
    pub fn create(
        path: impl AsRef<Path>,
        dtype: &Dtype,
        data_length: usize,
        flush_interval: Duration,
    ) -> Result<Self, ExportError> {
        let path = path.as_ref().to_path_buf();
        let io = |source: std::io::Error| ExportError::Io {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let mut w = CsvWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.clone(),
            dtype: dtype.clone(),
            data_length,
            flush_interval,
            last_flush: Instant::now(),
            line: String::with_capacity(256),
            rows: 0,
        };
        let mut header = String::from("counter,timestamp,deadtime");
        let columns = dtype.csv_columns();
        for i in 0..data_length {
            for c in &columns {
                header.push(',');
                header.push_str(c);
                if data_length > 1 {
                    let _ = write!(header, "_{i}");
                }
            }
        }
        header.push('\n');
        w.out.write_all(header.as_bytes()).map_err(io)?;
        Ok(w)
    }

    /// Appends one event: `data` holds `data_length` records of the dtype.
    pub fn append(&mut self, data: &[u8], meta: &Metadata) -> Result<(), ExportError> {
        let record = self.dtype.record_size();
        if data.len() != record * self.data_length {
            return Err(ExportError::EventSize {
                buffer: self.path.display().to_string(),
                got: data.len(),
                expected: record * self.data_length,
                data_length: self.data_length,
                record_size: record,
            });
        }
        self.line.clear();
        let _ = write!(
            self.line,
            "{},{},{}",
            meta.counter, meta.timestamp, meta.deadtime
        );
        for rec in data.chunks_exact(record) {
            self.dtype.write_csv_cells(rec, &mut self.line);
        }
        self.line.push('\n');
        let path = &self.path;
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|source| ExportError::Io {
                path: path.clone(),
                source,
            })?;
        self.rows += 1;
        if self.last_flush.elapsed() >= self.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.last_flush = Instant::now();
        let path = &self.path;
        self.out.flush().map_err(|source| ExportError::Io {
            path: path.clone(),
            source,
        })
    }

    /// Flushes and closes the file; returns the number of lines after the header.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        self.flush()?;
        Ok(self.rows)
    }
}

/// Cuts the CSV file at `path` back to its last whole line (a line cut by a crash or a full
/// disk, whose last number may still read as a number); returns the bytes cut. Reads only
/// the file's tail, back to its last newline. A file without any newline is left alone.
pub fn cut_to_whole_lines(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(std::io::SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole < len {
                file.set_len(whole)?;
                file.sync_all()?;
            }
            return Ok(len - whole);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_ints_and_full_precision_floats() {
        let dir = crate::fsio::test_dir("csv");
        let path = dir.join("features.csv");
        let d =
            Dtype::parse([("height", "f4"), ("n", "i2"), ("area", "f8"), ("id", "u8")]).unwrap();
        let mut w = CsvWriter::create(&path, &d, 1, Duration::from_secs(3600)).unwrap();
        let mut rec = Vec::new();
        rec.extend_from_slice(&0.1f32.to_le_bytes());
        rec.extend_from_slice(&(-7i16).to_le_bytes());
        rec.extend_from_slice(&(1.0f64 / 3.0).to_le_bytes());
        rec.extend_from_slice(&u64::MAX.to_le_bytes());
        let meta = Metadata {
            counter: 42,
            timestamp: 1_700_000_000.123_456_7,
            deadtime: 0.0,
        };
        w.append(&rec, &meta).unwrap();
        assert!(matches!(
            w.append(&rec[1..], &meta),
            Err(ExportError::EventSize { .. })
        ));
        assert_eq!(w.finish().unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "counter,timestamp,deadtime,height,n,area,id");
        let cols: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(cols[0], "42");
        assert_eq!(cols[1].parse::<f64>().unwrap(), meta.timestamp);
        assert_eq!(cols[3], "0.1");
        assert_eq!(cols[3].parse::<f32>().unwrap(), 0.1f32);
        assert_eq!(cols[4], "-7");
        assert_eq!(cols[5].parse::<f64>().unwrap(), 1.0 / 3.0);
        assert_eq!(cols[6], u64::MAX.to_string());
        assert_eq!(lines.len(), 2);
        assert!(CsvWriter::create(&path, &d, 1, Duration::from_secs(1)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn several_records_get_indexed_columns_and_interval_flush_reaches_the_file() {
        let dir = crate::fsio::test_dir("csv2");
        let path = dir.join("f.csv");
        let d = Dtype::parse([("x", "u1")]).unwrap();
        let mut w = CsvWriter::create(&path, &d, 3, Duration::ZERO).unwrap();
        w.append(&[1, 2, 3], &Metadata::default()).unwrap();
        // Interval zero: the line is in the file before finish.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "counter,timestamp,deadtime,x_0,x_1,x_2\n0,0,0,1,2,3\n"
        );
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
