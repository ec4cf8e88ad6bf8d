//! `replay.hdf5`: an Importer that reads events back from run files [`super::hdf5`] wrote,
//! into its sink, so recorded data is re-analysed with the same chain of workers.
//!
//! Each event keeps its recorded counter and timestamp (the dead time is the replay's own:
//! the engine measures it). `files` lists run files, or run directories: from a directory,
//! every `.h5` file with a group of the buffer's name is read, in the order of its first
//! event counter, so rotated parts (`raw_0001.h5`, …) and the files of a restarted exporter
//! (`raw_r1.h5`) come in the order they were written. Flat out by default, or paced by the
//! recorded timestamps (`pace: true`, `speed`).
//!
//! Guarantees: `check` opens every file and refuses one whose buffer's dtype or data_length differs
//! from the sink's, naming the file; a directory's `.h5` file that cannot be read (cut short, 0
//! bytes) is refused by name, never passed over. Events are read a batch at a time into buffers
//! made once; the per-event step copies bytes and allocates nothing. A file written by a writer
//! that was killed is read up to its last whole event (data and metadata both). A replay started
//! again after a failure goes on after the events its earlier processes replayed (counted over the
//! files in order), so none comes twice; it runs as one process.

use super::raw;
use super::read::{dtype_of, open_run_file};
use crate::dtype::{metadata_dtype, Metadata};
use crate::keys;
use crate::worker::{
    BuildContext, EventMut, FunctionSpec, Importer, Key, Produced, Strings, Template, WorkerError,
};
use hdf5_metno as h5;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The declaration.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "replay.hdf5",
    Template::Importer,
    "Reads the events of a buffer back from HDF5 run files (export.hdf5's) into its \
     sink, with their recorded counters and timestamps, flat out or paced by the \
     recorded time: recorded data through the same analysis chain again.",
    KEYS,
);

keys! {
    list KEYS;
    const FILES: Key<Strings> = ("files", required, "run files or run directories, relative to the setup file; a directory gives every .h5 file holding the buffer, in the order they were written");
    const BUFFER: Key<str> = ("buffer", "", "the buffer (group) to read from the files; empty = the sink's name");
    const PACE: Key<bool> = ("pace", false, "true: events come at the recorded time intervals (divided by `speed`); false: flat out");
    const SPEED: Key<f64> = ("speed", 1.0, "with `pace`: how many times faster than recorded");
}

/// Events read from a file at once.
const BATCH: usize = 256;

/// What the config asks for, with the files found and checked.
struct Settings {
    files: Vec<PathBuf>,
    buffer: String,
    pace: Option<f64>,
}

impl Settings {
    fn read(ctx: &BuildContext) -> Result<Settings, WorkerError> {
        // Each process would replay every file: every event twice.
        ctx.one_opener(
            "replay.hdf5",
            "its files",
            " (one process replays them in order)",
        )?;
        let c = &ctx.config;
        let sink = &ctx.sinks[0];
        let buffer = match c.get(BUFFER)? {
            "" => sink.name.clone(),
            b => b.to_string(),
        };
        let speed = c.get(SPEED)?;
        if !(speed > 0.0 && speed.is_finite()) {
            return Err(c
                .error(SPEED.name, format!("{speed}: must be a number above 0"))
                .into());
        }
        let pace = c.get(PACE)?.then_some(speed);
        let mut files = Vec::new();
        for given in c.get(FILES)? {
            let path = ctx.setup_dir.join(&given);
            if path.is_dir() {
                let found = files_in(&path, &buffer).map_err(|why| c.error(FILES.name, why))?;
                if found.is_empty() {
                    return Err(c
                        .error(
                            FILES.name,
                            format!(
                                "{}: no .h5 file there holds a buffer '{buffer}'",
                                path.display()
                            ),
                        )
                        .into());
                }
                files.extend(found);
            } else {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(c.error(FILES.name, "no file given").into());
        }
        for f in &files {
            let (rows, dtype, data_length) =
                shape_of(f, &buffer).map_err(|why| c.error(FILES.name, why))?;
            if dtype != sink.dtype || data_length != sink.data_length {
                return Err(c
                    .error(
                        FILES.name,
                        format!(
                            "{}: buffer '{buffer}' holds {data_length} × {} per event, the sink \
                             '{}' takes {} × {}",
                            f.display(),
                            dtype,
                            sink.name,
                            sink.data_length,
                            sink.dtype
                        ),
                    )
                    .into());
            }
            tracing::debug!("replay: {} holds {rows} events", f.display());
        }
        Ok(Settings {
            files,
            buffer,
            pace,
        })
    }
}

/// The `.h5` files in `dir` with a group `buffer`, in the order of their first event counter.
/// A file that holds another buffer is passed over; one that cannot be read (cut short, 0
/// bytes, not HDF5) is an error naming it, never passed over: its events would be missing
/// from the replay without a word.
fn files_in(dir: &Path, buffer: &str) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list it: {e}", dir.display()))?;
    let mut found: Vec<(i64, PathBuf)> = Vec::new();
    for p in entries.flatten().map(|e| e.path()) {
        if p.extension().is_none_or(|e| e != "h5") {
            continue;
        }
        if std::fs::metadata(&p).is_ok_and(|m| m.len() == 0) {
            return Err(format!(
                "{}: 0 bytes, not a run file (a writer that could not write it, as on a full \
                 disk, leaves one): remove it, or list the files to replay in `files`",
                p.display()
            ));
        }
        let (file, _) = open_run_file(&p).map_err(|e| {
            format!(
                "{e} (a damaged file in the directory; remove it, or list the files to replay \
                 in `files`)"
            )
        })?;
        let Ok(group) = file.group(buffer) else {
            continue;
        };
        let meta = group
            .dataset("metadata")
            .map_err(|_| format!("{}: buffer '{buffer}' has no metadata", p.display()))?;
        found.push((first_counter(&meta).unwrap_or(i64::MAX), p));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The counter of a metadata dataset's first row.
fn first_counter(meta: &h5::Dataset) -> Option<i64> {
    if meta.shape().first().copied().unwrap_or(0) == 0 {
        return None;
    }
    let mem = raw::compound_type(&metadata_dtype()).ok()?;
    let mut row = [0u8; 24];
    raw::read_rows(meta, &mem, 0, 1, None, &mut row).ok()?;
    Some(i64::from_le_bytes(row[..8].try_into().ok()?))
}

/// Events, record dtype and data_length of buffer `buffer` in run file `path`.
fn shape_of(path: &Path, buffer: &str) -> Result<(u64, crate::dtype::Dtype, usize), String> {
    let (file, _) = open_run_file(path).map_err(|e| e.to_string())?;
    let group = file.group(buffer).map_err(|_| {
        format!(
            "{}: no buffer '{buffer}' in this file (set `buffer` to the group to read)",
            path.display()
        )
    })?;
    let data = group
        .dataset("data")
        .map_err(|_| format!("{}: buffer '{buffer}' has no data", path.display()))?;
    let dtype = dtype_of(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    let shape = data.shape();
    if shape.len() != 2 {
        return Err(format!(
            "{}: buffer '{buffer}': data has shape {shape:?}, expected (events, data_length)",
            path.display()
        ));
    }
    Ok((shape[0] as u64, dtype, shape[1]))
}

/// Checks the config of `replay.hdf5` as [`Replay::build`] does: the files exist, hold the
/// buffer, and its layout is the sink's.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    Settings::read(ctx).map(drop)
}

/// One file being read.
struct Open {
    path: PathBuf,
    data: h5::Dataset,
    meta: h5::Dataset,
    /// Events in the file that are whole (data and metadata rows both there).
    events: u64,
    /// Next event of the file to read into the batch.
    next: u64,
}

/// `replay.hdf5`.
pub struct Replay {
    files: Vec<PathBuf>,
    buffer: String,
    /// Index of the next file to open.
    next_file: usize,
    open: Option<Open>,
    data_type: h5::Datatype,
    meta_type: h5::Datatype,
    event_bytes: usize,
    data_length: u64,
    /// The batch: `batch_len` events' bytes and metadata rows, `at` the next to hand out.
    batch: Vec<u8>,
    batch_meta: Vec<u8>,
    batch_len: usize,
    at: usize,
    /// With pacing: the speed, and the first event's recorded time with the wall time it
    /// was handed out.
    pace: Option<f64>,
    start: Option<(f64, Instant)>,
    events: u64,
    /// The files keep their events while the run is paused.
    hold: Hold,
    /// Events of the files still to pass over: what an earlier process of this worker
    /// replayed before it ended (see [`Importer::restarted`]).
    skip: u64,
}

impl Replay {
    /// Finds and checks the files (as `check` does); opens nothing yet.
    pub fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let Settings {
            files,
            buffer,
            pace,
        } = Settings::read(ctx)?;
        let sink = &ctx.sinks[0];
        let event_bytes = sink.data_length * sink.dtype.record_size();
        Ok(Replay {
            files,
            buffer,
            next_file: 0,
            open: None,
            data_type: raw::compound_type(&sink.dtype)
                .map_err(|e| WorkerError::failed("replay: the HDF5 type of the sink", e))?,
            meta_type: raw::compound_type(&metadata_dtype())
                .map_err(|e| WorkerError::failed("replay: the HDF5 type of the metadata", e))?,
            event_bytes,
            data_length: sink.data_length as u64,
            batch: vec![0u8; BATCH * event_bytes],
            batch_meta: vec![0u8; BATCH * 24],
            batch_len: 0,
            at: 0,
            pace,
            start: None,
            events: 0,
            hold: Hold::default(),
            skip: 0,
        })
    }

    /// Opens the next file; false when there is none.
    fn open_next(&mut self) -> Result<bool, WorkerError> {
        let Some(path) = self.files.get(self.next_file).cloned() else {
            return Ok(false);
        };
        self.next_file += 1;
        let fail = |why: String| WorkerError::failed(path.display().to_string(), why);
        let (file, _) = open_run_file(&path).map_err(WorkerError::output)?;
        let group = file
            .group(&self.buffer)
            .map_err(|e| fail(raw::describe(e)))?;
        let data = group.dataset("data").map_err(|e| fail(raw::describe(e)))?;
        let meta = group
            .dataset("metadata")
            .map_err(|e| fail(raw::describe(e)))?;
        let rows = |d: &h5::Dataset| d.shape().first().copied().unwrap_or(0) as u64;
        let events = rows(&data).min(rows(&meta));
        tracing::info!("replay: {} ({events} events)", path.display());
        let next = self.skip.min(events);
        if next > 0 {
            self.skip -= next;
            tracing::info!(
                "replay: {}: going on after its first {next} events, replayed before the restart",
                path.display()
            );
        }
        self.open = Some(Open {
            path,
            data,
            meta,
            events,
            next,
        });
        Ok(true)
    }

    /// Reads the next batch; false when every file is read.
    fn fill_batch(&mut self) -> Result<bool, WorkerError> {
        loop {
            if let Some(o) = &mut self.open {
                if o.next < o.events {
                    let n = (o.events - o.next).min(BATCH as u64);
                    let bytes = n as usize * self.event_bytes;
                    let read = raw::read_rows(
                        &o.data,
                        &self.data_type,
                        o.next,
                        n,
                        Some(self.data_length),
                        &mut self.batch[..bytes],
                    )
                    .and_then(|_| {
                        raw::read_rows(
                            &o.meta,
                            &self.meta_type,
                            o.next,
                            n,
                            None,
                            &mut self.batch_meta[..n as usize * 24],
                        )
                    });
                    match read {
                        Ok(()) => {
                            o.next += n;
                            self.batch_len = n as usize;
                            self.at = 0;
                            return Ok(true);
                        }
                        Err(why) => {
                            // A writer killed between flushes leaves the rows after its last
                            // flush unreadable: the file ends at the last whole event.
                            tracing::warn!(
                                "replay: {}: events from {} on cannot be read ({why}); going \
                                 on with the next file",
                                o.path.display(),
                                o.next
                            );
                            self.open = None;
                        }
                    }
                    continue;
                }
                self.open = None;
            }
            if !self.open_next()? {
                return Ok(false);
            }
        }
    }
}

/// A recording's pause: its events wait in the files until the resume (nothing of them is
/// discarded, as a live device's are), and a paced replay's clock goes on from where the
/// pause stopped it.
#[derive(Default)]
pub(crate) struct Hold {
    /// Since when the run is paused.
    since: Option<Instant>,
}

impl Hold {
    /// The run was paused or resumed; on the resume, `clock` (the wall time the replay's
    /// time line started at) moves on by the pause. Returns true, as
    /// [`Importer::pause`] of a source that holds its data does.
    pub(crate) fn pause(&mut self, paused: bool, clock: Option<&mut Instant>) -> bool {
        if paused {
            self.since = Some(Instant::now());
        } else if let (Some(at), Some(clock)) = (self.since.take(), clock) {
            *clock += at.elapsed();
        }
        true
    }

    /// True while paused, after a short sleep (the importer's `next` gives Idle and comes
    /// back within a while, so a stop is seen).
    pub(crate) fn waits(&self) -> bool {
        if self.since.is_some() {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.since.is_some()
    }
}

impl Importer for Replay {
    fn pause(&mut self, paused: bool) -> bool {
        // Paced: the recorded time line goes on from where the pause stopped it.
        self.hold
            .pause(paused, self.start.as_mut().map(|(_, wall0)| wall0))
    }

    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        if self.hold.waits() {
            return Ok(Produced::Idle);
        }
        if self.at == self.batch_len && !self.fill_batch()? {
            tracing::info!("replay: all {} events read", self.events);
            return Ok(Produced::End);
        }
        let m = &self.batch_meta[self.at * 24..(self.at + 1) * 24];
        let field = |i: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b.copy_from_slice(&m[i * 8..i * 8 + 8]);
            b
        };
        let recorded = Metadata {
            counter: i64::from_le_bytes(field(0)),
            timestamp: f64::from_le_bytes(field(1)),
            deadtime: f64::from_le_bytes(field(2)),
        };
        if let Some(speed) = self.pace {
            let (t0, wall0) = *self
                .start
                .get_or_insert((recorded.timestamp, Instant::now()));
            // A recorded time that is no time (infinite, or more than 2^64 s on: a damaged
            // row) is not waited for.
            let due = Duration::try_from_secs_f64(((recorded.timestamp - t0) / speed).max(0.0))
                .unwrap_or(Duration::ZERO);
            let waited = wall0.elapsed();
            if waited < due {
                // Back within a short while, so a stop is seen.
                std::thread::sleep((due - waited).min(Duration::from_millis(100)));
                if wall0.elapsed() < due {
                    return Ok(Produced::Idle);
                }
            }
        }
        let bytes = &self.batch[self.at * self.event_bytes..(self.at + 1) * self.event_bytes];
        out.data.copy_from_slice(bytes);
        out.meta.counter = recorded.counter;
        out.meta.timestamp = recorded.timestamp;
        self.at += 1;
        self.events += 1;
        Ok(Produced::Event)
    }

    /// Goes on after the events the earlier processes replayed (counted over the files in
    /// their order), so none comes twice.
    fn restarted(&mut self, taken: u64) {
        self.skip = taken;
        self.events = taken;
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        vec![(
            "replay.files".to_string(),
            self.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )]
    }
}
