//! Run files in HDF5: one group per exported buffer holding a `data` dataset of shape
//! `(events, data_length)` whose compound type is exactly the buffer's dtype, and a `metadata`
//! dataset (`counter`, `timestamp`, `deadtime`); histograms under `/histograms`; the setup and
//! run information as root attributes.
//!
//! Guarantees:
//! - Events are copied into preallocated, chunk-aligned batches and written as whole chunks;
//!   [`RunFileWriter::append`] allocates nothing and makes no system call except when a
//!   batch is full, the flush interval has passed (checked with the vDSO clock) or the file
//!   is rotated (or, once, when the first file's layout is made).
//! - Files are written in SWMR mode (HDF5 ≥ 1.10, `libver` latest): h5py can read them while
//!   the run goes on (`swmr=True`; the first file from its first flush with events on, when
//!   its layout is made), and after a `kill -9` a file opens and holds every event
//!   appended before the last flush. Rows past the last flush may be present too; their
//!   metadata `counter` is then either a real counter or the fill value -1, never a
//!   duplicate (data rows reach the file before the metadata rows that count them).
//!   SWMR readers open such a file as it is; [`recover`] clears the writer's flags so that
//!   every other reader (h5dump, h5py without `swmr=True`, MATLAB) opens it too.
//! - Rotation (by size or time) starts a new numbered file between two events: an event is
//!   never split or written twice, and each file carries every group and attribute.
//! - Compression happens while the file is written, with nothing left to do at its close:
//!   a full chunk of `data` is shuffled and deflated by the writer's own threads
//!   (`deflate.rs`, the byte format of HDF5's shuffle and deflate filters) and stored with a
//!   direct chunk write into a dataset whose filter pipeline is `[shuffle, deflate]`, so every
//!   reader decodes it. A stored compressed chunk is never written again. The chunk still
//!   growing when a flush comes is stored raw (filter mask skipping both filters, which
//!   readers honour) at its full size, so later flushes rewrite it in place. SWMR writers
//!   never free file space (a chunk that changes size moves and leaves its old copy), so a
//!   chunk once stored raw stays raw when it fills: compressing it then would leave its raw
//!   copy behind and make the file larger than not compressing it. So chunks are sized by
//!   the run's pace: the first file's groups and datasets are made at its first flush with
//!   events (the events until then are held in memory, at most one full chunk per buffer),
//!   and a compressed buffer that brought less than a full chunk (`chunk_bytes`) by then
//!   gets chunks of about a [`CHUNKS_PER_FLUSH`]th of what it brought, at least
//!   `min_chunk_bytes`, so that several fill between two flushes and about one in
//!   [`CHUNKS_PER_FLUSH`] stays raw. A buffer that brought a full chunk before the first
//!   flush (a fast run), or whose file closes before one, keeps `chunk_bytes`; later files
//!   of a rotated run keep the first file's sizes. A run slower than `min_chunk_bytes` per
//!   flush interval is stored raw. The last, partly filled chunk of a closing file is
//!   compressed unless a flush stored it already. `metadata` is never compressed.
//! - After a failed write (full disk, I/O error) the writer stops, reports the file, the
//!   buffer and the events kept, and leaves what was flushed readable.
//!
//! Must never: overwrite an existing file, write an event partly, or panic on bad input.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdf5_metno as h5;
use hdf5_metno::types::VarLenUnicode;

use super::deflate::{ChunkJob, Pool, STORED_RAW};
use super::error::ExportError;
use super::raw::{self, H5Error};
use crate::dtype::{metadata_dtype, Dtype, Metadata};
use crate::run_dir::pauses::Pauses;
use crate::worker::Writes;

/// Size of the metadata record in bytes.
const META_BYTES: usize = 24;
/// Group holding histograms (a buffer may not use this name).
pub const HISTOGRAM_GROUP: &str = "histograms";

/// Compression of a buffer's datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as written: fastest, largest.
    None,
    /// Deflate (gzip) after byte shuffling; every HDF5 reader can decompress it.
    /// `level` is 1 (fast) … 9 (small).
    Deflate {
        /// zlib level, 1..=9 (0 is taken as 1).
        level: u8,
    },
}

impl Default for Compression {
    /// Deflate level 1 with shuffle: most of the size gain at a fraction of the CPU cost.
    fn default() -> Self {
        Compression::Deflate { level: 1 }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Deflate { level } => write!(f, "shuffle+deflate level {level}"),
        }
    }
}

/// How one buffer is stored.
#[derive(Clone, Copy, Debug)]
pub struct BufferOptions {
    /// Compression of `data`, done by the writer's threads while it writes (`metadata` is
    /// always stored uncompressed, see `create_buffer_group`).
    pub compression: Compression,
    /// Target bytes per `data` chunk; a chunk holds at least one event. Default 1 MiB.
    pub chunk_bytes: usize,
    /// Smallest `data` chunk a compressed buffer gets in a slow run (see
    /// [`RunFileWriter`]'s notes on compression): its chunks are sized at the first flush so
    /// that about [`CHUNKS_PER_FLUSH`] fill between two flushes, between this and
    /// `chunk_bytes`. When it is `chunk_bytes` or more, every chunk is `chunk_bytes`. Default
    /// 64 KiB.
    pub min_chunk_bytes: usize,
}

impl Default for BufferOptions {
    fn default() -> Self {
        BufferOptions {
            compression: Compression::default(),
            chunk_bytes: 1 << 20,
            min_chunk_bytes: 64 << 10,
        }
    }
}

/// Chunks of a slow compressed buffer's `data` that are to fill between two flushes. A flush
/// stores the chunk still growing raw, and it stays raw (see the module notes), so about one
/// chunk in this many is stored raw.
pub const CHUNKS_PER_FLUSH: usize = 8;

/// When to start a new file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rotation {
    /// Start a new file once this many event bytes (data + metadata) are in the current one.
    pub max_bytes: Option<u64>,
    /// Start a new file once the current one has been open this long.
    pub max_duration: Option<Duration>,
}

impl Rotation {
    /// True when files are rotated at all (they are then numbered `_0001`, `_0002`, …).
    pub fn enabled(&self) -> bool {
        self.max_bytes.is_some() || self.max_duration.is_some()
    }
}

/// How the writer flushes and rotates.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Longest time between flushes (a crash loses at most this much). Default 1 s.
    pub flush_interval: Duration,
    /// File rotation; default: one file per run.
    pub rotation: Rotation,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_interval: Duration::from_secs(1),
            rotation: Rotation::default(),
        }
    }
}

/// What the run file says about the run that wrote it.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The setup file's text, stored verbatim.
    pub setup_text: String,
    /// The engine version.
    pub engine_version: String,
    /// The host name.
    pub host: String,
}

impl RunInfo {
    /// Run information with this crate's version and this machine's host name.
    pub fn new(setup_text: impl Into<String>) -> Self {
        RunInfo {
            setup_text: setup_text.into(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_name(),
        }
    }
}

/// Run statistics stored as root attributes when a file is closed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunStats {
    /// Events the sources could not take or the rings dropped.
    pub events_lost: u64,
    /// Fraction (0…1) of the run in which the sources could not take data.
    pub dead_time_fraction: f64,
}

/// What a finished run wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// The files, in order.
    pub files: Vec<PathBuf>,
    /// Events written per buffer over all files, in `add_buffer` order.
    pub events: Vec<u64>,
}

/// The handle of a buffer in a run file, returned by [`RunFileWriter::add_buffer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferHandle(usize);

/// A value of a histogram attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// A text.
    Text(String),
    /// A floating-point number.
    Float(f64),
    /// An integer.
    Int(i64),
}

/// A histogram kept until the file closes.
struct Histogram {
    name: String,
    edges: Vec<f64>,
    counts: Vec<u64>,
    attrs: Vec<(String, AttrValue)>,
}

/// The metadata record as h5py sees it (also the fill value of unwritten rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, h5::H5Type)]
#[repr(C)]
pub(crate) struct MetaRow {
    pub counter: i64,
    pub timestamp: f64,
    pub deadtime: f64,
}

struct BufferSpec {
    name: String,
    dtype: Dtype,
    data_length: usize,
    options: BufferOptions,
    record_type: h5::Datatype,
    event_bytes: usize,
    /// Events a `data` chunk holds: at most `options.chunk_bytes` worth, set for good when
    /// the first file's layout is made (smaller for a slow compressed buffer).
    chunk_events: usize,
    /// Events a `metadata` chunk holds: a multiple of `chunk_events`.
    meta_chunk_events: usize,
    events_total: u64,
    /// The importer's sample scales file (`scales_<worker>.txt`), whose fields get their
    /// `<field>.volts_per_count` and `<field>.offset_volts` attributes on `data`.
    scales: Option<PathBuf>,
    /// The open file's scale attributes hold the values (not NaN): nothing more to do.
    scales_in_file: bool,
}

/// Events of a `metadata` chunk for `chunk_events` events a `data` chunk: a multiple of it,
/// about 64 KiB.
fn meta_chunk_events(chunk_events: usize) -> usize {
    chunk_events * (65_536 / (META_BYTES * chunk_events)).max(1)
}

/// Events a `data` chunk of `spec` holds in a run that gave it `rows` events in `elapsed`,
/// flushed every `interval`: about a [`CHUNKS_PER_FLUSH`]th of what a flush interval brings,
/// between `min_chunk_bytes` and `chunk_bytes`, at least one event. An uncompressed buffer
/// keeps its full chunks (a flush rewrites its growing chunk in place).
fn slow_run_chunk_events(
    spec: &BufferSpec,
    rows: usize,
    elapsed: Duration,
    interval: Duration,
) -> usize {
    if matches!(spec.options.compression, Compression::None) {
        return spec.chunk_events;
    }
    // A first flush that came early (asked for) says too little: take it as one interval,
    // which makes chunks smaller, never larger, than the run needs.
    let seconds = elapsed.max(interval).as_secs_f64();
    let per_interval = rows as f64 * spec.event_bytes as f64 * interval.as_secs_f64() / seconds;
    let max = spec.options.chunk_bytes;
    let target = ((per_interval / CHUNKS_PER_FLUSH as f64) as usize)
        .clamp(spec.options.min_chunk_bytes.min(max), max);
    (target / spec.event_bytes).clamp(1, spec.chunk_events)
}

/// Events appended to a buffer before the file's layout was made, in the rows' byte format.
/// Room for one full chunk of each is made when the buffer is added: holding them allocates
/// nothing.
struct EarlyRows {
    data: Vec<u8>,
    meta: Vec<u8>,
}

/// Rows collected for one dataset, aligned to its chunks: `buf` holds rows
/// `start..start + len`, `start` is a multiple of the chunk size, and rows up to
/// `start + written` are already in the file.
struct RowBatch {
    ds: h5::Dataset,
    cols: Option<u64>,
    row_bytes: usize,
    chunk_rows: usize,
    buf: Vec<u8>,
    start: u64,
    len: usize,
    written: usize,
    /// Rows the dataset's extent covers.
    extent: u64,
}

impl RowBatch {
    fn new(ds: h5::Dataset, cols: Option<u64>, row_bytes: usize, chunk_rows: usize) -> Self {
        RowBatch {
            ds,
            cols,
            row_bytes,
            chunk_rows,
            buf: vec![0u8; row_bytes * chunk_rows],
            start: 0,
            len: 0,
            written: 0,
            extent: 0,
        }
    }

    /// Extends the dataset to `rows` rows when it is shorter.
    fn extend_to(&mut self, rows: u64) -> Result<(), WriteError> {
        if rows > self.extent {
            let shape: Vec<usize> = match self.cols {
                Some(c) => vec![rows as usize, c as usize],
                None => vec![rows as usize],
            };
            self.ds
                .resize(shape)
                .map_err(|e| H5Error::call("could not extend the dataset", e))?;
            self.extent = rows;
        }
        Ok(())
    }

    /// For a compressed `data` dataset: stores the chunk being filled as it is (filters
    /// skipped), whole, so that every later store of it lands in the same place. Rows past
    /// `len` are zeros and lie beyond the extent.
    fn store_raw(&mut self) -> Result<(), WriteError> {
        if self.len > self.written {
            self.extend_to(self.start + self.len as u64)?;
            self.buf[self.len * self.row_bytes..].fill(0);
            raw::write_chunk(&self.ds, self.start, STORED_RAW, &self.buf)?;
            self.written = self.len;
        }
        Ok(())
    }

    /// Starts the next chunk after a full one.
    fn next_chunk(&mut self) {
        self.start += self.chunk_rows as u64;
        self.len = 0;
        self.written = 0;
    }

    /// Copies one row in; true when the batch is full.
    #[inline]
    fn push(&mut self, row: &[u8]) -> bool {
        let at = self.len * self.row_bytes;
        self.buf[at..at + self.row_bytes].copy_from_slice(row);
        self.len += 1;
        self.len == self.chunk_rows
    }

    /// Writes every row not yet in the file (as one write from the chunk's start, so chunks
    /// are always written whole or as a prefix) and starts the next chunk when full.
    fn write_pending(&mut self, mem_type: &h5::Datatype) -> Result<(), WriteError> {
        if self.len > self.written {
            self.extend_to(self.start + self.len as u64)?;
            raw::write_rows(
                &self.ds,
                mem_type,
                self.start,
                self.len as u64,
                self.cols,
                &self.buf[..self.len * self.row_bytes],
            )?;
            self.written = self.len;
        }
        if self.len == self.chunk_rows {
            self.next_chunk();
        }
        Ok(())
    }
}

/// The writer's compression threads and the chunk jobs of every buffer, recycled.
struct Deflater {
    pool: Pool,
    /// Jobs not in flight, per buffer.
    free: Vec<Vec<ChunkJob>>,
    /// Jobs made per buffer (at most one more than the pool has threads).
    made: Vec<usize>,
}

impl Deflater {
    fn start(buffers: usize) -> Deflater {
        let threads = Pool::default_threads();
        // Every job of every buffer may be in one lane at once: no send ever waits on a
        // full channel while the results it waits for sit in another.
        let depth = buffers * (threads + 1);
        Deflater {
            pool: Pool::start(threads, depth),
            free: (0..buffers).map(|_| Vec::new()).collect(),
            made: vec![0; buffers],
        }
    }

    /// Stores every compressed chunk in flight, in order.
    fn drain(&mut self, bufs: &mut [FileBuffer]) -> Result<(), WriteError> {
        while let Some(job) = self.pool.next_done()? {
            store_job(bufs, &job)?;
            self.free[job.buffer].push(job);
        }
        Ok(())
    }

    /// Hands the chunk of buffer `b` to the threads (its batch goes on in the job's old
    /// buffer), or stores it raw in place when a flush already stored part of it. The chunk
    /// is full, or the last one of a closing file (its unused rows are zeroed here).
    fn complete(
        &mut self,
        bufs: &mut [FileBuffer],
        b: usize,
        spec: &BufferSpec,
        level: u8,
    ) -> Result<(), WriteError> {
        if bufs[b].data.written > 0 {
            // Stored raw before it was full: compressing it now would move it and leave
            // the raw copy behind (SWMR frees nothing), so it stays raw, in place.
            let batch = &mut bufs[b].data;
            batch.store_raw()?;
            batch.next_chunk();
            return Ok(());
        }
        {
            let batch = &mut bufs[b].data;
            batch.buf[batch.len * batch.row_bytes..].fill(0);
        }
        let mut job = loop {
            if let Some(job) = self.free[b].pop() {
                break job;
            }
            if self.made[b] <= self.pool.threads() {
                self.made[b] += 1;
                break ChunkJob::new(
                    b,
                    spec.event_bytes * spec.chunk_events,
                    spec.dtype.record_size(),
                    level,
                );
            }
            // Every job of this buffer is in flight: store the oldest finished chunk.
            match self.pool.next_done()? {
                Some(done) => {
                    store_job(bufs, &done)?;
                    self.free[done.buffer].push(done);
                }
                None => return Err(WriteError::NoJob),
            }
        };
        let batch = &mut bufs[b].data;
        std::mem::swap(&mut job.raw, &mut batch.buf);
        job.row = batch.start;
        job.rows = batch.len as u64;
        batch.next_chunk();
        Ok(self.pool.submit(job)?)
    }
}

/// Stores a chunk the threads compressed (or found incompressible) with a direct write.
fn store_job(bufs: &mut [FileBuffer], job: &ChunkJob) -> Result<(), WriteError> {
    let batch = &mut bufs[job.buffer].data;
    batch.extend_to(job.row + job.rows)?;
    let (mask, bytes) = job.stored();
    Ok(raw::write_chunk(&batch.ds, job.row, mask, bytes)?)
}

struct FileBuffer {
    data: RowBatch,
    meta: RowBatch,
}

struct OpenFile {
    file: h5::File,
    opened: Instant,
    /// When it opened (its `start_time`), for the pauses within its span.
    opened_at: crate::clock::Moment,
    /// The buffers' groups and datasets are in the file (the first file's are made at its
    /// first flush with events, a later file's when it opens).
    layout: bool,
    /// Per buffer, the events held until the layout is made (the first file only).
    early: Vec<EarlyRows>,
    buffers: Vec<FileBuffer>,
    bytes: u64,
    events: u64,
    events_flushed: u64,
    swmr: bool,
}

/// How a [`RunFileWriter`] names its files: the first `<stem>.h5`, the later ones numbered
/// after it (`<stem>_0001.h5` when it rotates, `<stem>_r1.h5` and `<stem>_r1_0001.h5` when a
/// writer goes on after an earlier process's files). Started again, it takes every file of
/// those names for one of its earlier processes' ([`RunFileWriter::create_after_earlier`]);
/// `check` refuses another worker's file of such a name by the same rule
/// ([`Writes::holds`]).
pub const RUN_FILES: Writes = Writes {
    name_key: None,
    extension: "h5",
    per_process: false,
    numbered: true,
};

/// Writes the events of one run into one HDF5 file, or a numbered series of files when
/// rotation is on.
///
/// Order of use: [`create`](Self::create), [`add_buffer`](Self::add_buffer) for every
/// buffer, then [`append`](Self::append) events (and [`flush`](Self::flush) when the caller
/// wants), finally [`finish`](Self::finish). Dropping the writer without `finish` flushes
/// what it holds and closes the file, which is then marked as not closed cleanly.
pub struct RunFileWriter {
    base: PathBuf,
    info: RunInfo,
    run_start: String,
    options: WriterOptions,
    specs: Vec<BufferSpec>,
    meta_type: h5::Datatype,
    current: Option<OpenFile>,
    files: Vec<PathBuf>,
    file_index: u32,
    last_flush: Instant,
    stats: RunStats,
    histograms: Vec<Histogram>,
    failed: Option<String>,
    events_run: u64,
    /// The run directory, when the files keep the run's facts (device notes, pauses).
    run_dir: Option<PathBuf>,
    /// Compresses full chunks of `data` (started with the first one).
    deflater: Option<Deflater>,
    /// Events the files of this writer's earlier processes in this run hold.
    earlier_events: u64,
    /// Events the files this process closed hold (rotated, or cut after a failure).
    kept_closed: u64,
}

/// Writes a run file's `paused_seconds` and, when it was paused, `pauses` (one ISO 8601
/// interval `START/END` a pause): at its close, and when a file whose writer was killed is
/// recovered.
pub(crate) fn write_paused(
    f: &h5::File,
    paused: &crate::run_dir::pauses::PausedWithin,
) -> h5::Result<()> {
    f.new_attr::<f64>()
        .create("paused_seconds")?
        .write_scalar(&paused.seconds())?;
    if !paused.intervals.is_empty() {
        let texts: Vec<VarLenUnicode> = paused.intervals.iter().map(|t| to_str(t)).collect();
        f.new_attr::<VarLenUnicode>()
            .shape(texts.len())
            .create("pauses")?
            .write(&texts)?;
    }
    Ok(())
}

fn to_str(s: &str) -> VarLenUnicode {
    // A str without NUL bytes always converts; NULs (which HDF5 strings cannot hold) are
    // replaced.
    s.replace('\0', "\u{FFFD}")
        .parse()
        .unwrap_or_else(|_| VarLenUnicode::new())
}

fn hdf(e: h5::Error) -> String {
    raw::describe(e)
}

/// Why a step of the writer failed; [`RunFileWriter::fail`] makes it an
/// [`ExportError::DiskFull`] or [`ExportError::Write`].
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// An HDF5 call.
    #[error(transparent)]
    H5(#[from] H5Error),
    /// The compression threads are gone.
    #[error(transparent)]
    Deflate(#[from] super::deflate::PoolError),
    /// Every chunk job of a buffer is in flight and none is done (a defect).
    #[error("internal: no chunk job in flight nor free")]
    NoJob,
}

impl WriteError {
    /// The system said the disk is full.
    fn disk_full(&self) -> bool {
        matches!(self, WriteError::H5(e) if e.disk_full())
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn free_bytes(path: &Path) -> u64 {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::disk::free_bytes(dir).unwrap_or(0)
}

fn check_name(name: &str) -> Result<(), ExportError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('/') || name.contains('\0') {
        Some("it contains '/' or a NUL byte")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not group names")
    } else {
        None
    };
    match why {
        Some(w) => Err(ExportError::BadName {
            name: name.to_string(),
            why: w.to_string(),
        }),
        None => Ok(()),
    }
}

impl RunFileWriter {
    /// Creates the run file at `path` (or `<stem>_0001.h5` next to it when rotation is on)
    /// with the root attributes of `info`. Refuses to overwrite an existing file.
    pub fn create(
        path: impl AsRef<Path>,
        info: RunInfo,
        options: WriterOptions,
    ) -> Result<Self, ExportError> {
        Self::open(path.as_ref(), info, options, false)
    }

    /// As [`create`](Self::create), for a writer whose earlier process in this run wrote
    /// files at `path` and died (a worker started again after a failure): those files are
    /// made whole as `recover` makes them (their chunks were compressed as they were
    /// written), and this writer goes on in new files `<stem>_r<N>.h5`, so nothing the
    /// earlier one wrote is overwritten.
    /// The earlier process must be gone: no writer may have those files open.
    pub fn create_after_earlier(
        path: impl AsRef<Path>,
        info: RunInfo,
        options: WriterOptions,
    ) -> Result<Self, ExportError> {
        Self::open(path.as_ref(), info, options, true)
    }

    fn open(
        path: &Path,
        info: RunInfo,
        options: WriterOptions,
        after_earlier: bool,
    ) -> Result<Self, ExportError> {
        let mut base = path.to_path_buf();
        let earlier = if after_earlier {
            earlier_lives(&base)
        } else {
            Vec::new()
        };
        let mut to_pack = Vec::new();
        let mut earlier_events = 0u64;
        if !earlier.is_empty() {
            for f in &earlier {
                let clean = closed_cleanly(f);
                let _ = std::fs::remove_file(packing_path(f));
                // The earlier process (or an older version's h5repack) may still hold the
                // file for a moment after it died: wait for it a little before giving up.
                let t0 = Instant::now();
                let made = loop {
                    match super::recover::cut_to_whole_events(f, !clean) {
                        Err(_) if t0.elapsed() < Duration::from_secs(15) => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        other => break other,
                    }
                };
                match made {
                    Ok((r, filters)) => {
                        earlier_events += r.buffers.iter().map(|b| b.1).sum::<u64>();
                        tracing::info!(
                            "{}: {} events kept from an earlier process of this worker{}",
                            f.display(),
                            r.buffers.iter().map(|b| b.1).sum::<u64>(),
                            if clean {
                                ""
                            } else {
                                " (made whole after its crash)"
                            }
                        );
                        if !filters.is_empty() {
                            to_pack.push((f.clone(), filters));
                        }
                    }
                    // Open elsewhere (another writer of the same name, a live process)
                    // or unreadable: never write beside it.
                    Err(e) => {
                        return Err(ExportError::Create {
                            path: f.clone(),
                            reason: format!(
                                "it exists and cannot be taken over from an earlier process \
                                 of this worker: {e}"
                            ),
                        })
                    }
                }
            }
            base = next_life(&base);
        }
        let meta_type = raw::compound_type(&metadata_dtype()).map_err(|e| ExportError::Create {
            path: base.clone(),
            reason: e.to_string(),
        })?;
        let mut w = RunFileWriter {
            base,
            info,
            run_start: crate::clock::utc_now(),
            options,
            specs: Vec::new(),
            meta_type,
            current: None,
            files: Vec::new(),
            file_index: 0,
            last_flush: Instant::now(),
            stats: RunStats::default(),
            histograms: Vec::new(),
            failed: None,
            run_dir: None,
            deflater: None,
            events_run: 0,
            earlier_events,
            kept_closed: 0,
        };
        if !earlier.is_empty() {
            // The name of the first new file: with rotation on, `<stem>_r<N>_0001.h5`.
            tracing::info!(
                "an earlier process of this worker wrote {} file(s); going on in {}{}",
                earlier.len(),
                w.numbered_path(1).display(),
                if w.options.rotation.enabled() {
                    " and the files after it"
                } else {
                    ""
                }
            );
        }
        if !to_pack.is_empty() {
            // Files of a version that compressed at close: complete, left uncompressed
            // (`daq-engine recover` on the run directory compresses them).
            for (f, _) in &to_pack {
                tracing::info!("{}: left uncompressed (written uncompressed)", f.display());
            }
        }
        w.open_next()?;
        Ok(w)
    }

    /// Events the files of earlier processes of this writer in this run hold (it was
    /// started again after a failure); 0 for a first process.
    pub fn earlier_events(&self) -> u64 {
        self.earlier_events
    }

    /// Events the open file has flushed (0 when none is open).
    pub fn flushed_in_open_file(&self) -> u64 {
        self.current.as_ref().map_or(0, |f| f.events_flushed)
    }

    /// Events this writer's files in this run hold for good: those of earlier processes, of
    /// the files this one closed (or cut to whole events after a failure) and what the open
    /// file has flushed. After a failure, what it was given beyond this is lost.
    pub fn events_kept(&self) -> u64 {
        self.earlier_events + self.kept_closed + self.flushed_in_open_file()
    }

    /// The path of file number `index` (1-based) of this run.
    fn numbered_path(&self, index: u32) -> PathBuf {
        if !self.options.rotation.enabled() {
            return self.base.clone();
        }
        let stem = self
            .base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".to_string());
        let ext = self
            .base
            .extension()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "h5".to_string());
        self.base
            .with_file_name(format!("{}.{ext}", Writes::rotated(&stem, index)))
    }

    fn open_next(&mut self) -> Result<(), ExportError> {
        let index = self.file_index + 1;
        let path = self.numbered_path(index);
        let create_err = |reason: String| ExportError::Create {
            path: path.clone(),
            reason,
        };
        let file = h5::File::with_options()
            .with_fapl(|p| p.libver_latest())
            .create_excl(&path)
            .map_err(|e| create_err(hdf(e)))?;
        let opened_at = crate::clock::Moment::now();
        let start = opened_at.iso();
        let put_str = |name: &str, value: &str| -> Result<(), H5Error> {
            file.new_attr::<VarLenUnicode>()
                .create(name)
                .and_then(|a| a.write_scalar(&to_str(value)))
                .map_err(|e| H5Error::call(format!("attribute '{name}'"), e))
        };
        (|| -> Result<(), H5Error> {
            put_str("setup", &self.info.setup_text)?;
            put_str("engine_version", &self.info.engine_version)?;
            put_str("host", &self.info.host)?;
            put_str("run_start_time", &self.run_start)?;
            put_str("start_time", &start)?;
            put_str("stop_time", "")?;
            let put = |name: &str, r: h5::Result<()>| {
                r.map_err(|e| H5Error::call(format!("attribute '{name}'"), e))
            };
            put(
                "file_index",
                file.new_attr::<u32>()
                    .create("file_index")
                    .and_then(|a| a.write_scalar(&index)),
            )?;
            for name in ["events_written", "run_events_written", "events_lost"] {
                put(
                    name,
                    file.new_attr::<u64>()
                        .create(name)
                        .and_then(|a| a.write_scalar(&0u64)),
                )?;
            }
            put(
                "dead_time_fraction",
                file.new_attr::<f64>()
                    .create("dead_time_fraction")
                    .and_then(|a| a.write_scalar(&0.0f64)),
            )?;
            put(
                "closed_cleanly",
                file.new_attr::<u8>()
                    .create("closed_cleanly")
                    .and_then(|a| a.write_scalar(&0u8)),
            )?;
            Ok(())
        })()
        .map_err(|e| create_err(e.to_string()))?;
        // Flushed with its attributes alone: a writer killed before the layout is made
        // leaves a file that opens (and holds no events, as none were flushed).
        file.flush().map_err(|e| create_err(hdf(e)))?;
        let rotating = self.file_index > 0;
        let of = OpenFile {
            file,
            opened: Instant::now(),
            opened_at,
            layout: rotating,
            early: Vec::new(),
            buffers: Vec::with_capacity(self.specs.len()),
            bytes: 0,
            events: 0,
            events_flushed: 0,
            swmr: false,
        };
        if rotating {
            // The chunk sizes were settled in the first file.
            for spec in &mut self.specs {
                create_buffer_group(&of.file, spec, &self.meta_type)
                    .map_err(|e| create_err(e.to_string()))?;
                spec.scales_in_file =
                    write_scales(&of.file, spec).map_err(|e| create_err(e.to_string()))?;
            }
        }
        self.file_index = index;
        self.files.push(path);
        self.current = Some(of);
        if rotating {
            // Later files have their whole layout already: start SWMR at once.
            self.start_swmr(false)?;
        }
        Ok(())
    }

    /// Adds buffer `name` with records of `dtype`, `data_length` records per event. Must be
    /// called before the first [`append`](Self::append) or [`flush`](Self::flush).
    pub fn add_buffer(
        &mut self,
        name: &str,
        dtype: &Dtype,
        data_length: usize,
        options: BufferOptions,
    ) -> Result<BufferHandle, ExportError> {
        check_name(name)?;
        if name == HISTOGRAM_GROUP {
            return Err(ExportError::BadName {
                name: name.to_string(),
                why: format!("'{HISTOGRAM_GROUP}' holds the histograms"),
            });
        }
        if self.specs.iter().any(|s| s.name == name) {
            return Err(ExportError::BadName {
                name: name.to_string(),
                why: "a buffer of that name is already in the file".to_string(),
            });
        }
        if data_length == 0 {
            return Err(ExportError::BadName {
                name: name.to_string(),
                why: "data_length is 0: an event needs at least one record".to_string(),
            });
        }
        let path = self.current_path();
        let of = self.current.as_mut().ok_or_else(|| ExportError::Stopped {
            path: path.clone(),
            first_error: "no file is open".to_string(),
        })?;
        if of.layout || of.events > 0 {
            return Err(ExportError::LayoutFrozen(name.to_string()));
        }
        let record_type = raw::compound_type(dtype).map_err(|e| ExportError::Create {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let event_bytes = dtype.record_size() * data_length;
        let chunk_events = (options.chunk_bytes / event_bytes).max(1);
        let spec = BufferSpec {
            name: name.to_string(),
            dtype: dtype.clone(),
            data_length,
            options,
            record_type,
            event_bytes,
            chunk_events,
            meta_chunk_events: meta_chunk_events(chunk_events),
            events_total: 0,
            scales: None,
            scales_in_file: false,
        };
        // The group is made with the file's layout (at the first flush with events, see
        // `make_layout`); until then the events wait here, at most a full chunk of them.
        of.early.push(EarlyRows {
            data: Vec::with_capacity(chunk_events * event_bytes),
            meta: Vec::with_capacity(chunk_events * META_BYTES),
        });
        self.specs.push(spec);
        Ok(BufferHandle(self.specs.len() - 1))
    }

    fn current_path(&self) -> PathBuf {
        self.files
            .last()
            .cloned()
            .unwrap_or_else(|| self.base.clone())
    }

    fn stopped(&self) -> Result<(), ExportError> {
        match &self.failed {
            Some(first_error) => Err(ExportError::Stopped {
                path: self.current_path(),
                first_error: first_error.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes the first file's layout if not made yet (see [`make_layout`](Self::make_layout);
    /// `at_flush` as there), starts SWMR writing, and stores the events held until then.
    fn start_swmr(&mut self, at_flush: bool) -> Result<(), ExportError> {
        let Some(of) = self.current.as_ref() else {
            return Ok(());
        };
        if of.swmr {
            return Ok(());
        }
        if !of.layout {
            if at_flush && of.events == 0 {
                // Nothing to size the chunks by yet, and nothing to flush.
                return Ok(());
            }
            self.make_layout(at_flush)?;
        }
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        // HDF5 1.10's H5Fstart_swmr_write closes and reopens every open dataset and group,
        // which crashes when another file is open in the process: start it with none open
        // (the groups were closed after creation) and open the datasets afterwards.
        let r = of
            .file
            .flush()
            .and_then(|_| of.file.start_swmr())
            .map_err(|e| H5Error::call("could not start SWMR writing", e))
            .and_then(|_| {
                self.specs
                    .iter()
                    .map(|spec| open_buffer(&of.file, spec))
                    .collect::<Result<Vec<_>, _>>()
            });
        match r {
            Ok(buffers) => {
                of.buffers = buffers;
                of.swmr = true;
            }
            Err(reason) => return Err(self.fail(String::new(), reason.into())),
        }
        // The events held until now go into their batches as if appended now.
        let early = std::mem::take(&mut of.early);
        for (b, rows) in early.iter().enumerate() {
            let event_bytes = self.specs[b].event_bytes.max(1);
            for (data, meta) in rows
                .data
                .chunks_exact(event_bytes)
                .zip(rows.meta.chunks_exact(META_BYTES))
            {
                self.push_rows(b, data, meta)?;
            }
        }
        Ok(())
    }

    /// Makes the groups and datasets of the first file, with the chunk size of each buffer's
    /// `data` settled for the run: when a flush makes it (`at_flush`), a compressed buffer's
    /// chunks are sized by the events that arrived since the file opened, so that a slow run
    /// fills several between two flushes ([`slow_run_chunk_events`]); when a full chunk of
    /// events arrived first (a fast run) or the file closes before its first flush, every
    /// chunk has its full size.
    fn make_layout(&mut self, at_flush: bool) -> Result<(), ExportError> {
        let interval = self.options.flush_interval;
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        let elapsed = of.opened.elapsed();
        let mut r = Ok(());
        for (spec, early) in self.specs.iter_mut().zip(&of.early) {
            if at_flush {
                let rows = early.meta.len() / META_BYTES;
                spec.chunk_events = slow_run_chunk_events(spec, rows, elapsed, interval);
                spec.meta_chunk_events = meta_chunk_events(spec.chunk_events);
            }
            r = create_buffer_group(&of.file, spec, &self.meta_type)
                .and_then(|_| write_scales(&of.file, spec))
                .map(|known| spec.scales_in_file = known);
            if r.is_err() {
                break;
            }
        }
        of.layout = true;
        r.map_err(|reason| self.fail(String::new(), reason.into()))
    }

    /// Copies one event's rows (`data`, and `meta` in the file's record format) into the
    /// batches of buffer `b` and stores every batch that is full.
    #[inline]
    fn push_rows(&mut self, b: usize, data: &[u8], meta: &[u8]) -> Result<(), ExportError> {
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        let fb = &mut of.buffers[b];
        let data_full = fb.data.push(data);
        let meta_full = fb.meta.push(meta);
        if !(data_full || meta_full) {
            return Ok(());
        }
        let r = (|| {
            let spec = &self.specs[b];
            // Data rows reach the file before the metadata rows that count them (see
            // `flush`); the metadata chunk is a multiple of the data chunk, so a full
            // metadata batch always comes with a full data batch.
            if data_full {
                match spec.options.compression {
                    Compression::Deflate { level } => {
                        self.deflater
                            .get_or_insert_with(|| Deflater::start(self.specs.len()))
                            .complete(&mut of.buffers, b, spec, level)?;
                    }
                    Compression::None => of.buffers[b].data.write_pending(&spec.record_type)?,
                }
            }
            if meta_full {
                if let Some(d) = self.deflater.as_mut() {
                    d.drain(&mut of.buffers)?;
                }
                let fb = &mut of.buffers[b];
                raw::flush_dataset(&fb.data.ds)?;
                fb.meta.write_pending(&self.meta_type)?;
            }
            Ok::<(), WriteError>(())
        })();
        r.map_err(|reason| {
            let name = self.specs[b].name.clone();
            self.fail(name, reason)
        })
    }

    /// Turns a write failure into the typed error and stops the writer.
    fn fail(&mut self, buffer: String, error: WriteError) -> ExportError {
        let path = self.current_path();
        let events_safe = self.current.as_ref().map_or(0, |f| f.events_flushed);
        let available_bytes = free_bytes(&path);
        let full = error.disk_full() || available_bytes < 64 * 1024;
        let reason = error.to_string();
        let err = if full {
            // The whole stack goes to the log; the message keeps what the system said.
            tracing::debug!("{}: {reason}", path.display());
            ExportError::DiskFull {
                path,
                buffer,
                available_bytes,
                events_safe,
                reason: super::error::system_reason(&reason),
            }
        } else {
            ExportError::Write {
                path,
                buffer,
                events_safe,
                reason,
            }
        };
        if self.failed.is_some() {
            return err;
        }
        self.failed = Some(err.to_string());
        // Leave the file consistent: closed, its flags cleared, `data` and `metadata` cut to
        // the events both hold (a failed flush can leave data rows whose metadata never
        // reached the file), and `events_written` saying how many that is.
        drop(self.current.take());
        let path = self.current_path();
        match super::recover::cut_to_whole_events(&path, false) {
            Ok((done, _)) => {
                let kept: u64 = done.buffers.iter().map(|(_, n)| n).sum();
                self.kept_closed += kept;
                tracing::warn!(
                    "{}: after the failure the file holds {kept} whole events",
                    path.display()
                );
                match err {
                    ExportError::DiskFull {
                        path,
                        buffer,
                        available_bytes,
                        reason,
                        ..
                    } => ExportError::DiskFull {
                        path,
                        buffer,
                        available_bytes,
                        events_safe: kept,
                        reason,
                    },
                    ExportError::Write {
                        path,
                        buffer,
                        reason,
                        ..
                    } => ExportError::Write {
                        path,
                        buffer,
                        events_safe: kept,
                        reason,
                    },
                    other => other,
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                if let ExportError::DiskFull { events_safe, .. }
                | ExportError::Write { events_safe, .. } = &err
                {
                    self.kept_closed += events_safe;
                }
                err
            }
        }
    }

    /// Appends one event to `buffer`: `data` holds `data_length` records of the buffer's
    /// dtype, `meta` its metadata. Copies into the batch; writes when a chunk is full, flushes
    /// when the flush interval has passed, rotates when the file is big or old enough.
    #[inline]
    pub fn append(
        &mut self,
        buffer: BufferHandle,
        data: &[u8],
        meta: &Metadata,
    ) -> Result<(), ExportError> {
        self.stopped()?;
        let Some(spec) = self.specs.get(buffer.0) else {
            return Err(ExportError::UnknownBuffer(buffer.0));
        };
        if data.len() != spec.event_bytes {
            return Err(ExportError::EventSize {
                buffer: spec.name.clone(),
                got: data.len(),
                expected: spec.event_bytes,
                data_length: spec.data_length,
                record_size: spec.dtype.record_size(),
            });
        }
        let event_bytes = spec.event_bytes;
        let chunk_events = spec.chunk_events;
        let now = Instant::now();
        // Rotation happens before an event, never after one: no file is opened that might
        // stay empty, and an event always lands whole in exactly one file.
        let (max_bytes, max_age) = (
            self.options.rotation.max_bytes,
            self.options.rotation.max_duration,
        );
        let rotate = self.current.as_ref().is_some_and(|f| {
            f.events > 0
                && (max_bytes.is_some_and(|m| f.bytes >= m)
                    || max_age.is_some_and(|m| now.duration_since(f.opened) >= m))
        });
        if rotate {
            self.rotate()?;
        }
        let Some(of) = self.current.as_mut() else {
            return Err(ExportError::Stopped {
                path: self.base.clone(),
                first_error: "no file is open".to_string(),
            });
        };
        let mut meta_bytes = [0u8; META_BYTES];
        meta_bytes[0..8].copy_from_slice(&meta.counter.to_le_bytes());
        meta_bytes[8..16].copy_from_slice(&meta.timestamp.to_le_bytes());
        meta_bytes[16..24].copy_from_slice(&meta.deadtime.to_le_bytes());
        of.events += 1;
        of.bytes += (event_bytes + META_BYTES) as u64;
        self.events_run += 1;
        self.specs[buffer.0].events_total += 1;
        if of.swmr {
            self.push_rows(buffer.0, data, &meta_bytes)?;
        } else {
            // Before the first flush: held (within the room made for one chunk).
            let early = &mut of.early[buffer.0];
            early.data.extend_from_slice(data);
            early.meta.extend_from_slice(&meta_bytes);
            if early.data.len() >= chunk_events * event_bytes {
                // A chunk's worth before the first flush: a fast run, full-size chunks.
                self.start_swmr(false)?;
            }
        }
        if now.duration_since(self.last_flush) >= self.options.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every event appended so far and flushes the file, so that readers (and the
    /// file after a crash) see them. Starts SWMR mode if not started yet.
    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.stopped()?;
        self.start_swmr(true)?;
        self.last_flush = Instant::now();
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        if !of.swmr {
            // No event yet: the layout waits for the first (see `make_layout`).
            if let Err(e) = of.file.flush() {
                let reason = H5Error::call("could not flush the file", e);
                return Err(self.fail(String::new(), reason.into()));
            }
            return Ok(());
        }
        // Data first, flushed to the file, then the metadata that makes those rows count
        // as events: a failure (or a crash) in between leaves rows whose counter is the
        // fill value -1, never a counter pointing at unwritten data.
        let mut failure = None;
        if let Some(d) = self.deflater.as_mut() {
            if let Err(reason) = d.drain(&mut of.buffers) {
                failure = Some((String::new(), reason));
            }
        }
        for (i, fb) in of.buffers.iter_mut().enumerate() {
            if failure.is_some() {
                break;
            }
            let spec = &self.specs[i];
            let data = match spec.options.compression {
                Compression::Deflate { .. } => fb.data.store_raw(),
                Compression::None => fb.data.write_pending(&spec.record_type),
            };
            let r = data
                .and_then(|_| Ok(raw::flush_dataset(&fb.data.ds)?))
                .and_then(|_| fb.meta.write_pending(&self.meta_type));
            if let Err(reason) = r {
                failure = Some((spec.name.clone(), reason));
            }
        }
        // Scales that were not known when the file was created: in at the first flush after
        // the importer wrote them, so a file cut short by a crash has them too.
        for spec in self.specs.iter_mut().filter(|s| !s.scales_in_file) {
            if failure.is_some() {
                break;
            }
            match write_scales(&of.file, spec) {
                Ok(known) => spec.scales_in_file = known,
                Err(reason) => failure = Some((spec.name.clone(), reason.into())),
            }
        }
        if let Some((name, reason)) = failure {
            return Err(self.fail(name, reason));
        }
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        if let Err(e) = of.file.flush() {
            let reason = H5Error::call("could not flush the file", e);
            return Err(self.fail(String::new(), reason.into()));
        }
        if let Some(of) = self.current.as_mut() {
            of.events_flushed = of.events;
        }
        Ok(())
    }

    /// Flushes if the flush interval has passed since the last flush; returns whether it
    /// flushed. For an exporter loop that is idle (no `append` to trigger the flush).
    pub fn flush_if_due(&mut self) -> Result<bool, ExportError> {
        if self.last_flush.elapsed() >= self.options.flush_interval {
            self.flush()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Keeps the facts of the run in `run_dir` with every file, when the file closes: each
    /// device importer's `device_<worker>.txt` (lines `key = value`: model, serial number,
    /// firmware, voltage, clock, disconnect gaps) becomes root attributes `<worker>.<key>`,
    /// and the pauses within the file's span (`pauses.jsonl`) its `paused_seconds` and
    /// `pauses` (one ISO 8601 interval `START/END` per pause).
    pub fn keep_run_facts(&mut self, run_dir: impl Into<PathBuf>) {
        self.run_dir = Some(run_dir.into());
    }

    /// Takes the sample scales in `path` (see [`crate::run_dir::scales`]) for `buffer`:
    /// every integer field they name gets the attributes `<field>.volts_per_count` and
    /// `<field>.offset_volts` on the buffer's `data` (volts = counts × volts_per_count +
    /// offset_volts), in every file, as soon as the file exists when it is there already,
    /// else at the first flush after it appears (so a file cut short by a crash has them
    /// too), at the latest at close.
    pub fn keep_scales(
        &mut self,
        buffer: BufferHandle,
        path: impl Into<PathBuf>,
    ) -> Result<(), ExportError> {
        let file_path = self.current_path();
        let Some(spec) = self.specs.get_mut(buffer.0) else {
            return Ok(());
        };
        spec.scales = Some(path.into());
        let Some(of) = self.current.as_ref().filter(|of| of.layout) else {
            // Written with the layout.
            return Ok(());
        };
        spec.scales_in_file = write_scales(&of.file, spec).map_err(|e| ExportError::Create {
            path: file_path,
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// Records the run statistics written as root attributes when a file closes.
    pub fn update_stats(&mut self, stats: RunStats) {
        self.stats = stats;
    }

    /// Stores histogram `name` (bin `edges`, `edges.len() - 1` `counts`, attributes); it is
    /// written as `/histograms/<name>/{edges,counts}` into every file when that file closes,
    /// with the values last given. Calling it again replaces the values.
    pub fn write_histogram(
        &mut self,
        name: &str,
        edges: &[f64],
        counts: &[u64],
        attrs: &[(&str, AttrValue)],
    ) -> Result<(), ExportError> {
        check_name(name)?;
        if edges.len() < 2 || counts.len() + 1 != edges.len() {
            return Err(ExportError::HistogramShape {
                name: name.to_string(),
                edges: edges.len(),
                counts: counts.len(),
            });
        }
        for (a, _) in attrs {
            check_name(a)?;
        }
        let entry = Histogram {
            name: name.to_string(),
            edges: edges.to_vec(),
            counts: counts.to_vec(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        match self.histograms.iter_mut().find(|h| h.name == name) {
            Some(h) => *h = entry,
            None => self.histograms.push(entry),
        }
        Ok(())
    }

    /// The files written so far, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Events appended to `buffer` over all files.
    pub fn events(&self, buffer: BufferHandle) -> u64 {
        self.specs.get(buffer.0).map_or(0, |s| s.events_total)
    }

    fn rotate(&mut self) -> Result<(), ExportError> {
        self.close_current(true)?;
        self.open_next()
    }

    /// Writes what is pending, the closing attributes and the histograms, and closes the file.
    fn close_current(&mut self, clean: bool) -> Result<(), ExportError> {
        if self.current.is_none() {
            return Ok(());
        }
        self.compress_last_chunks()?;
        self.flush()?;
        let Some(of) = self.current.take() else {
            return Ok(());
        };
        self.kept_closed += of.events;
        let r = (|| -> Result<(), H5Error> {
            let f = &of.file;
            let set = |name: &str, r: h5::Result<()>| {
                r.map_err(|e| H5Error::call(format!("attribute '{name}'"), e))
            };
            let closed_at = crate::clock::Moment::now();
            set(
                "stop_time",
                f.attr("stop_time")
                    .and_then(|a| a.write_scalar(&to_str(&closed_at.iso()))),
            )?;
            set(
                "events_written",
                f.attr("events_written")
                    .and_then(|a| a.write_scalar(&of.events)),
            )?;
            set(
                "run_events_written",
                f.attr("run_events_written")
                    .and_then(|a| a.write_scalar(&self.events_run)),
            )?;
            set(
                "events_lost",
                f.attr("events_lost")
                    .and_then(|a| a.write_scalar(&self.stats.events_lost)),
            )?;
            set(
                "dead_time_fraction",
                f.attr("dead_time_fraction")
                    .and_then(|a| a.write_scalar(&self.stats.dead_time_fraction)),
            )?;
            if !self.histograms.is_empty() {
                write_histograms(f, &self.histograms)?;
            }
            for spec in self.specs.iter().filter(|s| !s.scales_in_file) {
                write_scales(f, spec)?;
            }
            if let Some(dir) = &self.run_dir {
                // Made at the close only: a file whose writer was killed has none, rather
                // than a 0 that would be wrong had the run been paused.
                let paused = Pauses::read(dir).within(of.opened_at, closed_at);
                set("paused_seconds", write_paused(f, &paused))?;
                for (name, text) in device_notes(dir) {
                    let put = || -> h5::Result<()> {
                        if f.attr(&name).is_err() {
                            f.new_attr::<VarLenUnicode>().create(name.as_str())?;
                        }
                        f.attr(&name)?.write_scalar(&to_str(&text))
                    };
                    set(&name, put())?;
                }
            }
            set(
                "closed_cleanly",
                f.attr("closed_cleanly")
                    .and_then(|a| a.write_scalar(&u8::from(clean))),
            )?;
            f.flush()
                .map_err(|e| H5Error::call("could not flush the file", e))?;
            Ok(())
        })();
        drop(of);
        // `fail` names the file just closed (the last one) and counts its whole events.
        r.map_err(|reason| self.fail(String::new(), reason.into()))
    }

    /// Before a file closes: the partly filled last chunk of each compressed buffer that no
    /// flush has stored yet goes compressed into the file like a full one (one that a flush
    /// stored stays raw, in place: see the module notes).
    fn compress_last_chunks(&mut self) -> Result<(), ExportError> {
        self.stopped()?;
        self.start_swmr(false)?;
        let Some(of) = self.current.as_mut() else {
            return Ok(());
        };
        let mut r = Ok(());
        for (i, spec) in self.specs.iter().enumerate() {
            let Compression::Deflate { level } = spec.options.compression else {
                continue;
            };
            let batch = &of.buffers[i].data;
            if batch.len == 0 || batch.written > 0 {
                continue;
            }
            let d = self
                .deflater
                .get_or_insert_with(|| Deflater::start(self.specs.len()));
            if let Err(e) = d.complete(&mut of.buffers, i, spec, level) {
                r = Err((spec.name.clone(), e));
                break;
            }
        }
        r.map_err(|(name, reason)| self.fail(name, reason))
    }

    /// Writes everything, stores `stats`, stop time and histograms, and closes the file.
    pub fn finish(mut self, stats: RunStats) -> Result<RunSummary, ExportError> {
        self.stopped()?;
        self.stats = stats;
        self.close_current(true)?;
        Ok(RunSummary {
            files: self.files.clone(),
            events: self.specs.iter().map(|s| s.events_total).collect(),
        })
    }
}

impl Drop for RunFileWriter {
    fn drop(&mut self) {
        if self.current.is_some() && self.failed.is_none() {
            // Best effort: keep what was appended; the file says it was not closed cleanly.
            let _ = self.close_current(false);
        }
    }
}

/// Keeps the files this process has open out of a child started with `cmd`.
///
/// libhdf5 opens files without close-on-exec; a child started while one is open would hold
/// a copy of its descriptor for as long as it lives (the file stays open underneath, and a
/// lock that is not explicitly released stays held). Every descriptor above stderr is marked
/// close-on-exec in the child (Linux ≥ 5.11; on older kernels nothing changes).
pub fn no_inherited_files(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; one async-signal-safe system call that
    // only changes descriptor flags of the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// The `h5repack` filters that compress buffer `name`'s `data` as `compression` says
/// (`None` for no compression).
pub(crate) fn repack_filters(name: &str, compression: Compression) -> Option<String> {
    match compression {
        Compression::Deflate { level } => Some(format!(
            "/{name}/data:SHUF,/{name}/data:GZIP={}",
            level.clamp(1, 9)
        )),
        Compression::None => None,
    }
}

/// `<path>.packing`: where h5repack writes the compressed copy of `path`.
fn packing_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".packing");
    PathBuf::from(tmp)
}

/// Whether the run file at `path` says its writer closed it cleanly (false for one that
/// does not open or has no such attribute).
pub(crate) fn closed_cleanly(path: &Path) -> bool {
    h5::File::open(path)
        .ok()
        .and_then(|h| h.attr("closed_cleanly").ok()?.read_scalar::<u8>().ok())
        == Some(1)
}

/// The files a writer whose first file is `base` (`<stem>.h5`) has made in its directory,
/// in all its processes' lives: `<stem>.h5`, `<stem>_0001.h5` (rotation), `<stem>_r1.h5`,
/// `<stem>_r1_0001.h5`, … ([`RUN_FILES`]). Sorted by name.
pub(crate) fn earlier_lives(base: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(first)) = (base.parent(), base.file_name().and_then(|s| s.to_str()))
    else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|name| RUN_FILES.holds(first, name))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The base of the first life of a writer whose first file is `base` that has written no
/// file yet: `<stem>_r1.h5`, `<stem>_r2.h5`, …
fn next_life(base: &Path) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let ext = base
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "h5".into());
    (1..)
        .map(|n| base.with_file_name(format!("{}.{ext}", Writes::life(&stem, n))))
        .find(|b| earlier_lives(b).is_empty())
        .expect("an unused life number")
}

/// Compresses the closed file `path` with `h5repack` and these per-dataset `filters`
/// (`/buf/data:SHUF,/buf/data:GZIP=1`, …) into `<path>.packing`, then renames it over
/// `path`. On any failure the original stays as it is (uncompressed, complete). Only for
/// the files of older versions, which compressed at close: recovery finishes their job.
pub(crate) fn compress(path: &Path, filters: &[String]) -> Result<(), String> {
    let tmp = packing_path(path);
    let mut cmd = std::process::Command::new("h5repack");
    // The format the writer uses (HDF5 1.10, checksummed metadata), not the oldest one.
    cmd.args(["--low=2", "--high=2"]);
    // Compression must never take CPU from the acquisition: normal (not real-time, which a
    // worker's `priority` would pass on) scheduling, at the lowest niceness. And it ends
    // with the process that started it: an aborted run (SIGKILL to its workers) leaves no
    // h5repack behind writing into the run directory.
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (sched_setscheduler, setpriority); it touches no
        // memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
                libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                Ok(())
            });
        }
        crate::runtime::child_ends_with_parent(&mut cmd, libc::SIGKILL);
    }
    no_inherited_files(&mut cmd);
    for f in filters {
        for part in f.split(',') {
            cmd.arg("-f").arg(part);
        }
    }
    let out = run_logging_progress(cmd.arg(path).arg(&tmp), path);
    let failed = |why: String| {
        let _ = std::fs::remove_file(&tmp);
        Err(format!(
            "{}: left uncompressed (complete and readable): {why}",
            path.display()
        ))
    };
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => failed(
            "h5repack was not found; install Debian's hdf5-tools for compressed files".into(),
        ),
        Err(e) => failed(format!("could not run h5repack: {e}")),
        Ok(o) if !o.status.success() => failed(format!(
            "h5repack failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => std::fs::rename(&tmp, path).or_else(|e| failed(format!("rename: {e}"))),
    }
}

/// Runs `h5repack` (stderr captured) and, while it runs, says in the log every few seconds
/// which file it compresses, how large it is and how far it got.
fn run_logging_progress(
    cmd: &mut std::process::Command,
    input: &Path,
) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read stderr aside, so that a talkative h5repack never blocks on a full pipe.
    let mut pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(p) = pipe.as_mut() {
            let _ = p.read_to_end(&mut text);
        }
        text
    });
    let mut said = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            if let Some(c) = Compressing::of(child.id(), input) {
                tracing::info!("{c}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: reader.join().unwrap_or_default(),
    })
}

/// A closed run file being compressed by `h5repack`: what a clean stop waits for.
#[derive(Clone, Debug, PartialEq)]
pub struct Compressing {
    /// The file (uncompressed, complete).
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// How much of it h5repack has read, 0..=99 (100 only when done).
    pub percent: u8,
}

impl std::fmt::Display for Compressing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compressing {} ({:.1} MB, {}%)",
            self.file.file_name().map_or_else(
                || self.file.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            self.bytes as f64 / 1e6,
            self.percent
        )
    }
}

impl Compressing {
    /// The progress of h5repack process `pid` compressing `input`, from the bytes it has
    /// read (`/proc/<pid>/io`) against the file's size; None when it is gone.
    fn of(pid: u32, input: &Path) -> Option<Compressing> {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let read: u64 = io
            .lines()
            .find_map(|l| l.strip_prefix("rchar:"))
            .and_then(|v| v.trim().parse().ok())?;
        let bytes = std::fs::metadata(input).ok()?.len();
        let percent = (read.saturating_mul(100) / bytes.max(1)).min(99) as u8;
        Some(Compressing {
            file: input.to_path_buf(),
            bytes,
            percent,
        })
    }

    /// The compressions of files in `run_dir` running now (h5repack processes of this
    /// machine whose input lies there). Reads `/proc`; for a progress line, not a hot path.
    pub fn in_dir(run_dir: &Path) -> Vec<Compressing> {
        let Ok(dir) = run_dir.canonicalize() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "h5repack" {
                continue;
            }
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            // h5repack … INPUT OUTPUT: the input is the argument before the last.
            let Some(input) = args.len().checked_sub(2).map(|i| args[i]) else {
                continue;
            };
            let input = Path::new(std::ffi::OsStr::from_bytes(input));
            let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
                continue;
            };
            let full = cwd.join(input);
            if full.canonicalize().is_ok_and(|f| f.starts_with(&dir)) {
                out.extend(Compressing::of(pid, &full));
            }
        }
        out
    }
}

/// Removes the partial outputs (`*.h5.packing`) of compressions that were killed (an
/// aborted run, a crash); the uncompressed file next to each is complete. Returns how many
/// were removed.
pub fn remove_partial_compressions(run_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".h5.packing"))
        })
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

/// Makes a run file whose writer was killed (or lost power) openable by every HDF5 reader:
/// clears the "open for SWMR writing" flags in its superblock, as `h5clear -s` does. The
/// events flushed before the crash stay as they are; rows the writer never completed keep
/// the metadata `counter` -1. Run it on a file that no process is writing any more.
pub fn recover(path: impl AsRef<Path>) -> Result<(), ExportError> {
    let path = path.as_ref();
    raw::clear_status_flags(path).map_err(|reason| ExportError::Read {
        path: path.to_path_buf(),
        reason: format!("could not clear the writer's flags: {reason}"),
    })
}

/// Creates group `/<name>` with its `data` and `metadata` datasets and attributes; every
/// handle is closed again before returning (SWMR starts with no object open).
fn create_buffer_group(
    file: &h5::File,
    spec: &BufferSpec,
    meta_type: &h5::Datatype,
) -> Result<(), H5Error> {
    let ctx =
        |what: &str, e: h5::Error| H5Error::call(format!("buffer '{}': {what}", spec.name), e);
    let group = file
        .create_group(&spec.name)
        .map_err(|e| ctx("create group", e))?;
    // Compressed chunks come from the writer's threads (direct chunk writes); the pipeline
    // is declared so that every reader decodes them (see the module notes).
    // Attributes in dense storage from the first: a SWMR writer can add them later (the
    // counts' scales, known once the importer runs) without growing the object header,
    // which SWMR does not allow.
    let mut b = group
        .new_dataset_builder()
        .attr_phase_change(0, 0)
        .chunk((spec.chunk_events, spec.data_length));
    if let Compression::Deflate { level } = spec.options.compression {
        b = b.shuffle().deflate(level.clamp(1, 9));
    }
    b.empty_as(&spec.record_type)
        .shape((0.., spec.data_length))
        .create("data")
        .map_err(|e| ctx("create dataset data", e))?;
    let mut m = group.new_dataset_builder();
    m = m.chunk(spec.meta_chunk_events).fill_value(MetaRow {
        counter: -1,
        timestamp: f64::NAN,
        deadtime: f64::NAN,
    });
    // Metadata stays uncompressed whatever the data use: its last chunk is rewritten at
    // every flush, and a compressed chunk changes size and moves in the file on each
    // rewrite, so a writer killed mid-rewrite could leave every counter of that chunk
    // unreadable. Uncompressed, the chunk keeps its place (24 bytes an event: nothing to gain).
    m.empty_as(meta_type)
        .shape(0..)
        .create("metadata")
        .map_err(|e| ctx("create dataset metadata", e))?;
    let attrs = || -> h5::Result<()> {
        group
            .new_attr::<VarLenUnicode>()
            .create("dtype")?
            .write_scalar(&to_str(&spec.dtype.numpy_descr()))?;
        group
            .new_attr::<u64>()
            .create("data_length")?
            .write_scalar(&(spec.data_length as u64))?;
        group
            .new_attr::<VarLenUnicode>()
            .create("compression")?
            .write_scalar(&to_str(&spec.options.compression.to_string()))?;
        Ok(())
    };
    attrs().map_err(|e| ctx("write attributes", e))?;
    Ok(())
}

/// Opens the datasets of a buffer group for writing (after SWMR has started).
fn open_buffer(file: &h5::File, spec: &BufferSpec) -> Result<FileBuffer, H5Error> {
    // Chunks are written whole, straight from the batch (or the compressor) to the file,
    // with no chunk cache.
    let data_cache = 0;
    let open = |what: &str, cache: usize| {
        raw::open_dataset(file, &format!("{}/{what}", spec.name), cache).map_err(|e| H5Error::In {
            context: format!("buffer '{}': open {what}", spec.name),
            source: Box::new(e),
        })
    };
    Ok(FileBuffer {
        data: RowBatch::new(
            open("data", data_cache)?,
            Some(spec.data_length as u64),
            spec.event_bytes,
            spec.chunk_events,
        ),
        meta: RowBatch::new(
            open("metadata", 1 << 20)?,
            None,
            META_BYTES,
            spec.meta_chunk_events,
        ),
    })
}

/// The attributes `<field>.volts_per_count` and `<field>.offset_volts` on `/<buffer>/data`
/// for the integer fields its scales file names, once that file is there. True when they are
/// in the file (or the buffer takes no scales): nothing more to do.
fn write_scales(file: &h5::File, spec: &BufferSpec) -> Result<bool, H5Error> {
    use crate::run_dir::scales::{SampleScales, OFFSET_VOLTS, VOLTS_PER_COUNT};
    let Some(path) = spec.scales.as_deref() else {
        return Ok(true);
    };
    let Some(scales) = SampleScales::read(path) else {
        return Ok(false);
    };
    let counted = |name: &str| {
        spec.dtype.fields().iter().any(|f| {
            f.name == name
                && f.ty.scalar().is_some_and(|s| {
                    !matches!(s, crate::dtype::Scalar::F32 | crate::dtype::Scalar::F64)
                })
        })
    };
    let put = || -> h5::Result<()> {
        let ds = file.dataset(&format!("{}/data", spec.name))?;
        for f in scales.fields.iter().filter(|f| counted(&f.field)) {
            for (what, v) in [
                (VOLTS_PER_COUNT, f.volts_per_count),
                (OFFSET_VOLTS, f.offset_volts),
            ] {
                let name = format!("{}.{what}", f.field);
                match ds.attr(&name) {
                    Ok(a) => a.write_scalar(&v)?,
                    Err(_) => ds
                        .new_attr::<f64>()
                        .create(name.as_str())?
                        .write_scalar(&v)?,
                }
            }
        }
        Ok(())
    };
    put().map_err(|e| H5Error::call(format!("buffer '{}': sample scales", spec.name), e))?;
    Ok(true)
}

/// The device facts in `dir`: `(<worker>.<key>, value)` from every `device_<worker>.txt`.
fn device_notes(dir: &Path) -> Vec<(String, String)> {
    crate::run_dir::run_notes(dir)
        .into_iter()
        .flat_map(|(worker, notes)| {
            notes
                .into_iter()
                .map(move |(k, v)| (format!("{worker}.{k}"), v))
        })
        .collect()
}

fn write_histograms(file: &h5::File, histograms: &[Histogram]) -> Result<(), H5Error> {
    let ctx = |name: &str, e: h5::Error| H5Error::call(format!("histogram '{name}'"), e);
    let top = match file.group(HISTOGRAM_GROUP) {
        Ok(g) => g,
        Err(_) => file
            .create_group(HISTOGRAM_GROUP)
            .map_err(|e| ctx(HISTOGRAM_GROUP, e))?,
    };
    for Histogram {
        name,
        edges,
        counts,
        attrs,
    } in histograms
    {
        let g = match top.group(name) {
            Ok(g) => g,
            Err(_) => top.create_group(name).map_err(|e| ctx(name, e))?,
        };
        let write = || -> h5::Result<()> {
            match g.dataset("edges") {
                Ok(ds) if ds.size() == edges.len() => ds.write_raw(edges.as_slice())?,
                _ => {
                    g.new_dataset_builder()
                        .with_data(edges.as_slice())
                        .create("edges")?;
                }
            }
            match g.dataset("counts") {
                Ok(ds) if ds.size() == counts.len() => ds.write_raw(counts.as_slice())?,
                _ => {
                    g.new_dataset_builder()
                        .with_data(counts.as_slice())
                        .create("counts")?;
                }
            }
            for (k, v) in attrs {
                if g.attr(k).is_err() {
                    match v {
                        AttrValue::Text(_) => g.new_attr::<VarLenUnicode>().create(k.as_str())?,
                        AttrValue::Float(_) => g.new_attr::<f64>().create(k.as_str())?,
                        AttrValue::Int(_) => g.new_attr::<i64>().create(k.as_str())?,
                    };
                }
                let a = g.attr(k)?;
                match v {
                    AttrValue::Text(s) => a.write_scalar(&to_str(s))?,
                    AttrValue::Float(x) => a.write_scalar(x)?,
                    AttrValue::Int(x) => a.write_scalar(x)?,
                }
            }
            Ok(())
        };
        write().map_err(|e| ctx(name, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of a writer's earlier lives are found by name, and no other writer's.
    #[test]
    fn earlier_lives_are_this_writers_files_only() {
        let dir = crate::fsio::test_dir("lives");
        let ours = [
            "raw.h5",
            "raw_0001.h5",
            "raw_r1.h5",
            "raw_r1_0002.h5",
            "raw_r12.h5",
            "raw_10000.h5",
        ];
        let others = [
            "raw_big.h5",
            "raw_01.h5",
            "raw.h5.packing",
            "rawx.h5",
            "raw_r.h5",
            "raw_r1_01.h5",
            "raw_r0.h5",
            "raw_0000.h5",
            "pulses.h5",
        ];
        for f in ours.iter().chain(&others) {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let found: Vec<String> = earlier_lives(&dir.join("raw.h5"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut want: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(found, want);
        assert_eq!(next_life(&dir.join("raw.h5")), dir.join("raw_r2.h5"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
