//! `export.csv` (feature records as CSV) and `export.drain` (consume and count).
//!
//! CSV: `run_dir/<filename>.csv`, header `counter,timestamp,deadtime,<fields…>`, one line per
//! record (feature buffers have one record per event). Integer fields are written as
//! integers, floats in the shortest form that reads back exactly (mimoCoRB2 cast everything
//! to one type and printed `51.0`). Any dtype is taken: bool as `True`/`False`, complex as
//! `a+bj`, bytes and unicode as (quoted when needed) text, a subarray field as one column per
//! element `name[0]`, … (see [`crate::dtype::Dtype::write_csv_cells`]). A field named
//! `counter`, `timestamp` or `deadtime` is a second column of that name, as in mimoCoRB2's
//! file (pandas reads it as `timestamp.1`): renaming either would break the readers of
//! files mimoCoRB2 wrote.
//!
//! Guarantees: `consume` formats into a text buffer reserved in `build` (1 MiB) and does no
//! I/O until the buffer is nearly full; `flush` appends it to the file every `save_interval`,
//! `finish` appends the rest and syncs the file. A write error names the file. A failed
//! write (a full disk) never leaves part of a line or of an event: the file is cut back to
//! the end of the last event it holds whole, and [`Exporter::events_kept`] says how many
//! events that is, so what it was delivered beyond them is counted lost.

use super::trace::{one_source, positive_seconds};
use crate::dtype::{Base, Dtype};
use crate::keys;
use crate::worker::{
    BuildContext, EventRef, Exporter, FunctionSpec, Key, MaybeKey, Template, WorkerError,
};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bytes of CSV text kept before it must be written.
const TEXT_CAPACITY: usize = 1 << 20;

/// The declaration of `export.csv`.
pub const CSV_SPEC: FunctionSpec = FunctionSpec::new(
    "export.csv",
    Template::Exporter,
    "Writes every record of its source (small feature records) as a CSV line: \
     counter, timestamp, deadtime, then the fields; integers as integers.",
    KEYS,
)
.writing(WRITES);

/// The file it writes: `<filename>.csv`.
const WRITES: crate::worker::Writes = crate::worker::Writes {
    name_key: Some(FILENAME.name),
    extension: "csv",
    per_process: false,
    numbered: false,
};

keys! {
    list KEYS;
    /// `export.csv`: the file's name.
    const FILENAME: MaybeKey<str> = ("filename", absent: "the source buffer's name", "file name in the run directory; .csv is added when it does not end so");
    /// `export.csv`: how often the text is appended.
    const SAVE_INTERVAL: Key<f64> = ("save_interval", 1.0, "seconds between appends to the file");
}

/// The declaration of `export.drain`.
pub const DRAIN_SPEC: FunctionSpec = FunctionSpec::new(
    "export.drain",
    Template::Exporter,
    "Consumes and counts every event (for benchmarks and tests); writes \
     drain_<worker>_<process>.json with the counts at the end.",
    &[],
);

/// `export.csv`.
pub struct CsvExport {
    path: PathBuf,
    file: std::fs::File,
    dtype: Dtype,
    /// Most bytes one line can take (metadata and every cell, escaped and quoted).
    max_line: usize,
    text: String,
    interval: Duration,
    last_write: Instant,
    rows: u64,
    /// Rows the file held when this process took it over (written by earlier processes of
    /// this worker in this run).
    earlier_rows: u64,
    /// Rows one event makes (the source's data_length).
    rows_per_event: u64,
    /// Bytes in the file: the header or what an earlier process left, and every write since.
    written: u64,
    /// Where the last event consumed ends, counting the file and then `text`.
    end: Mark,
    /// Where the last event the file holds whole ends (at most `written`): a failed write
    /// cuts the file back to it.
    kept: Mark,
}

/// The end of an event in the CSV text: its byte offset in the file, the rows up to it
/// (earlier processes' included) and the events of this process up to it.
#[derive(Clone, Copy, Debug)]
struct Mark {
    bytes: u64,
    rows: u64,
    events: u64,
}

/// What the config of `export.csv` asks for: the file name (without .csv, taken off when
/// given), the record type, the save interval; read and checked without opening anything.
/// Any dtype is written.
fn settings(ctx: &BuildContext) -> Result<(&str, Dtype, Duration), WorkerError> {
    // One file, written in order: a second process wrote over the first's rows.
    ctx.one_process("export.csv", "")?;
    let src = one_source(ctx)?;
    let name = WRITES.stem(ctx.config.file_name(FILENAME, &src.name)?);
    Ok((
        name,
        src.dtype.clone(),
        positive_seconds(ctx, SAVE_INTERVAL)?,
    ))
}

/// Most bytes one CSV line of `dtype` can take: the metadata, and per element its longest
/// text (a text field escapes each byte to at most 4 and may double its quotes).
fn max_line(dtype: &Dtype) -> usize {
    let cells: usize = dtype
        .fields()
        .iter()
        .map(|f| {
            let each = match f.ty.base {
                Base::Num(_) => 32,
                Base::Bool => 6,
                Base::Complex64 | Base::Complex128 => 64,
                Base::Bytes(n) | Base::Unicode(n) => 8 * n as usize + 3,
            };
            f.ty.count().saturating_mul(each)
        })
        .fold(0usize, usize::saturating_add);
    cells.saturating_add(3 * 32 + 1)
}

/// Checks the config of `export.csv` as [`CsvExport::build`] does, creating no file.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    settings(ctx).map(drop)
}

impl CsvExport {
    /// Builds it and creates the file with its header.
    pub fn build(ctx: &BuildContext) -> Result<CsvExport, WorkerError> {
        let (name, dtype, interval) = settings(ctx)?;
        let path = ctx.run_dir.join(format!("{name}.csv"));
        let mut header = String::from("counter,timestamp,deadtime");
        for c in dtype.csv_columns() {
            header.push(',');
            header.push_str(&c);
        }
        header.push('\n');
        let io = |source| WorkerError::Io {
            what: format!("creating {}", path.display()),
            source,
        };
        // The file exists when an earlier process of this worker wrote it in this run (it
        // failed and was started again): go on after its last whole event, never truncate.
        let rows_per_event = one_source(ctx)?.data_length as u64;
        let (file, rows) = match resume(&path, &header, rows_per_event) {
            Ok(Some(resumed)) => resumed,
            Ok(None) => {
                let mut file = std::fs::File::create(&path).map_err(io)?;
                file.write_all(header.as_bytes()).map_err(io)?;
                (file, 0)
            }
            Err(source) => {
                return Err(WorkerError::Io {
                    what: format!("resuming {}", path.display()),
                    source,
                })
            }
        };
        let written = file
            .metadata()
            .map_err(|source| WorkerError::Io {
                what: format!("reading the length of {}", path.display()),
                source,
            })?
            .len();
        let start = Mark {
            bytes: written,
            rows,
            events: 0,
        };
        Ok(CsvExport {
            interval,
            path,
            file,
            max_line: max_line(&dtype),
            text: String::with_capacity(TEXT_CAPACITY.max(2 * max_line(&dtype))),
            dtype,
            last_write: Instant::now(),
            rows,
            earlier_rows: rows,
            rows_per_event,
            written,
            end: start,
            kept: start,
        })
    }

    /// Lines written or buffered so far (header not counted).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file being written.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn write_out(&mut self) -> Result<(), WorkerError> {
        if !self.text.is_empty() {
            if let Err(source) = self.file.write_all(self.text.as_bytes()) {
                self.cut_back();
                return Err(WorkerError::Io {
                    what: format!("appending to {}", self.path.display()),
                    source,
                });
            }
            self.written += self.text.len() as u64;
            self.text.clear();
            // The text ended with the last event consumed, or inside the one after it.
            self.kept = self.end;
        }
        self.last_write = Instant::now();
        Ok(())
    }

    /// After a failed write, which may have written part of the text (as much as a full
    /// disk took): cuts the file back to the end of the last event it holds whole, and
    /// drops the text, so no cut line or event is left and the counts are the file's. A
    /// cut that fails too is said in the log; the events counted kept stay the whole ones.
    fn cut_back(&mut self) {
        use std::io::Seek as _;
        let kept = self.kept;
        let cut = self
            .file
            .set_len(kept.bytes)
            .and_then(|()| self.file.seek(std::io::SeekFrom::Start(kept.bytes)));
        match cut {
            Ok(_) => tracing::warn!(
                "{}: the write failed; the file is cut back to its last whole event ({} \
                 rows), the events after it are counted lost",
                self.path.display(),
                kept.rows
            ),
            Err(e) => tracing::warn!(
                "{}: the write failed, and cutting the file back to its last whole event \
                 ({} bytes) failed too ({e}): its last line may be cut",
                self.path.display(),
                kept.bytes
            ),
        }
        self.text.clear();
        self.written = kept.bytes;
        self.rows = kept.rows;
        self.end = kept;
    }
}

impl Exporter for CsvExport {
    fn kept_from_earlier(&self) -> Option<u64> {
        Some(self.earlier_rows / self.rows_per_event.max(1))
    }

    fn events_kept(&self) -> Option<u64> {
        self.kept_from_earlier()
            .map(|earlier| earlier + self.kept.events)
    }

    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        let record = self.dtype.record_size();
        for rec in event.data.chunks_exact(record) {
            // Write out before the reserved capacity could be exceeded, so the buffer never
            // reallocates.
            if self.text.len() + self.max_line > self.text.capacity() {
                self.write_out()?;
            }
            let m = event.meta;
            let _ = write!(self.text, "{},{},{}", m.counter, m.timestamp, m.deadtime);
            self.dtype.write_csv_cells(rec, &mut self.text);
            self.text.push('\n');
            self.rows += 1;
        }
        self.end = Mark {
            bytes: self.written + self.text.len() as u64,
            rows: self.rows,
            events: self.end.events + 1,
        };
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WorkerError> {
        if self.last_write.elapsed() >= self.interval {
            self.write_out()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        self.write_out()?;
        self.file.sync_all().map_err(|source| WorkerError::Io {
            what: format!("syncing {}", self.path.display()),
            source,
        })
    }
}

/// Opens an existing CSV file of this run for appending after its last whole event (a line
/// cut by a crash, and the rows of an event whose other rows never came, are removed and
/// said in the log); returns it with the rows it holds, `None` when there is no file yet. A
/// file with another header is refused: it is not this worker's. Reads the file once, in
/// pieces (a week's file is not taken into memory).
fn resume(
    path: &std::path::Path,
    header: &str,
    rows_per_event: u64,
) -> std::io::Result<Option<(std::fs::File, u64)>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(header.len());
    match std::fs::File::open(path) {
        Ok(f) => f.take(header.len() as u64).read_to_end(&mut head)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if head.len() < header.len() && header.as_bytes().starts_with(&head) {
        // Cut inside the header: nothing was written yet; start the file again.
        return Ok(None);
    }
    if head != header.as_bytes() {
        return Err(std::io::Error::other(
            "the file exists with another header (not written by this worker)",
        ));
    }
    let cut = crate::export::csv::cut_to_whole_lines(path)?;
    if cut > 0 {
        tracing::warn!(
            "{}: removing a line cut by the previous process's crash ({cut} bytes)",
            path.display()
        );
    }
    let (events, cut_rows) = crate::export::csv::cut_to_whole_events(path, rows_per_event)?;
    if cut_rows > 0 {
        tracing::warn!(
            "{}: removing {cut_rows} rows of an event the previous process did not finish \
             writing ({rows_per_event} rows an event)",
            path.display()
        );
    }
    let rows = events * rows_per_event;
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0))?;
    tracing::info!(
        "{}: resuming after {rows} rows written by an earlier process of this worker",
        path.display()
    );
    Ok(Some((file, rows)))
}

/// `export.drain`.
pub struct Drain {
    path: PathBuf,
    events: u64,
    bytes: u64,
}

impl Drain {
    /// Builds it.
    pub fn build(ctx: &BuildContext) -> Result<Drain, WorkerError> {
        one_source(ctx)?;
        Ok(Drain {
            path: ctx
                .run_dir
                .join(format!("drain_{}_{}.json", ctx.worker, ctx.process.0)),
            events: 0,
            bytes: 0,
        })
    }

    /// Events consumed.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Record bytes consumed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Exporter for Drain {
    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        self.events += 1;
        self.bytes += event.data.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        let body = format!(
            "{{\"events\": {}, \"bytes\": {}}}\n",
            self.events, self.bytes
        );
        crate::worker::write_atomically(&self.path, body.as_bytes())
    }
}
