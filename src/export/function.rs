//! `export.hdf5`: the Exporter that writes its source buffer into an HDF5 run file.
//!
//! One file per exporter process (`<filename>.h5`, or `<filename>_p<k>.h5` when the worker
//! has several processes), rotated by size or time when asked. The file carries the resolved
//! setup and run facts as attributes; it is flushed at `flush_interval` in SWMR mode, so h5py
//! can read it while the run goes on and a crash loses at most that interval. A failing
//! write (full disk) stops this exporter with an error that names the file; what was written
//! stays readable.

use super::hdf5::{
    BufferHandle, BufferOptions, Compression, Rotation, RunFileWriter, RunInfo, RunStats,
    WriterOptions, RUN_FILES,
};
use crate::keys;
use crate::worker::{
    BuildContext, EventRef, Exporter, FunctionSpec, Key, MaybeKey, Template, WorkerError,
};
use std::time::Duration;

/// The declaration.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "export.hdf5",
    Template::Exporter,
    "Writes every event of its source into an HDF5 file in the run directory: group \
     /<buffer> with `data` (events × data_length, compound type exactly the buffer's \
     dtype) and `metadata` (counter, timestamp, deadtime), chunked and compressed, \
     flushed in SWMR mode so h5py can read it during the run and after a crash.",
    KEYS,
)
.writing(WRITES);

/// `export.hdf5`'s file: `<filename>.h5`, by default the source's name; one a process; the
/// later files numbered after it as the run file writer numbers them ([`RUN_FILES`]).
const WRITES: crate::worker::Writes = crate::worker::Writes {
    name_key: Some(FILENAME.name),
    per_process: true,
    ..RUN_FILES
};

keys! {
    list KEYS;
    const FILENAME: MaybeKey<str> = ("filename", absent: "the source buffer's name", "file name in the run directory; .h5 is added when it does not end so");
    const COMPRESSION: Key<str> = ("compression", "deflate", "deflate (shuffle + zlib, every reader can open it) or none (fastest)");
    const LEVEL: Key<usize> = ("level", 1, "deflate level 1 (fast) .. 9 (small)");
    const FLUSH_INTERVAL: Key<f64> = ("flush_interval", 1.0, "seconds between flushes: a crash loses at most this much");
    const ROTATE_MB: MaybeKey<f64> = ("rotate_mb", absent: "none", "start a new file (name_0001.h5, …) after this many MB of events, counted before compression (a compressed file is smaller); at least 1 (data is written in chunks of up to 1 MiB)");
    const ROTATE_MINUTES: MaybeKey<f64> = ("rotate_minutes", absent: "none", "start a new file with the first event after this many minutes (a pause, which brings no events, stays in the file); at least 0.1 (6 s, several flushes)");
}

/// The least `rotate_mb`. Data is written in chunks of up to 1 MiB (`chunk_bytes`): a smaller
/// file holds less than one, and opening and closing it (its layout, the setup text, the
/// closing attributes) costs more than its events. At 1e-20 every event got a file of its
/// own (86 files in 2 s) and the writer fell behind its source.
const LEAST_ROTATE_MB: f64 = 1.0;

/// The least `rotate_minutes`: 6 s, several flushes at the default `flush_interval` (1 s),
/// so that a file's opening and closing stay a small part of its time. At 1e-20 every event
/// got a file of its own, as with `rotate_mb`.
const LEAST_ROTATE_MINUTES: f64 = 0.1;

/// `export.hdf5`.
pub struct Hdf5Export {
    writer: Option<RunFileWriter>,
    buffer: BufferHandle,
    deadtime_sum: f64,
    events: u64,
    events_lost: u64,
    /// Set when closing the files failed: how many events of this worker they keep.
    kept_at_finish: Option<u64>,
}

/// What the config of `export.hdf5` asks for, read and checked without opening anything.
struct Settings {
    compression: Compression,
    flush: Duration,
    rotation: Rotation,
    stem: String,
}

impl Settings {
    fn read(ctx: &BuildContext) -> Result<Settings, WorkerError> {
        let c = &ctx.config;
        let src = &ctx.sources[0];
        let compression = match c.get(COMPRESSION)? {
            "deflate" | "gzip" => {
                let level = c.get(LEVEL)?;
                if !(1..=9).contains(&level) {
                    return Err(c
                        .error(
                            LEVEL.name,
                            format!("{level}: the deflate level must be 1 to 9"),
                        )
                        .into());
                }
                Compression::Deflate { level: level as u8 }
            }
            "none" => Compression::None,
            other => {
                return Err(c
                    .error(
                        COMPRESSION.name,
                        format!(
                            "'{other}' is not supported: use deflate (alias gzip, level 1 to 9; \
                             every HDF5 reader opens it) or none"
                        ),
                    )
                    .into())
            }
        };
        let above_zero = |key: &str, v: f64| -> Result<f64, WorkerError> {
            if v > 0.0 && v.is_finite() {
                Ok(v)
            } else {
                Err(c
                    .error(key, format!("{v}: must be a number above 0"))
                    .into())
            }
        };
        let given = |key: MaybeKey<f64>| -> Result<Option<f64>, WorkerError> {
            c.get(key)?.map(|v| above_zero(key.name, v)).transpose()
        };
        let at_least = |key: MaybeKey<f64>, least: f64, unit: &str, why: &str| match given(key)? {
            Some(v) if v < least => Err(WorkerError::from(c.error(
                key.name,
                format!("{v:?}: must be at least {least} {unit} ({why})"),
            ))),
            v => Ok(v),
        };
        let chunks = "data is written in chunks of up to 1 MiB: a smaller file costs more to \
                      open and close than to fill";
        let flushes = "6 s, several flushes: a shorter file costs more to open and close than \
                       to fill";
        Ok(Settings {
            compression,
            flush: c.duration(
                FLUSH_INTERVAL.name,
                above_zero(FLUSH_INTERVAL.name, c.get(FLUSH_INTERVAL)?)?,
            )?,
            rotation: Rotation {
                max_bytes: at_least(ROTATE_MB, LEAST_ROTATE_MB, "MB", chunks)?
                    .map(|mb| (mb * 1e6) as u64),
                max_duration: at_least(ROTATE_MINUTES, LEAST_ROTATE_MINUTES, "minutes", flushes)?
                    .map(|m| c.duration(ROTATE_MINUTES.name, m * 60.0))
                    .transpose()?,
            },
            stem: WRITES.stem(c.file_name(FILENAME, &src.name)?).to_string(),
        })
    }
}

/// Checks the config of `export.hdf5` as [`Hdf5Export::build`] does, opening no file.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    Settings::read(ctx).map(drop)
}

impl Hdf5Export {
    /// Opens the file and declares the buffer; checks the config.
    pub fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let src = &ctx.sources[0];
        let Settings {
            compression,
            flush,
            rotation,
            stem,
        } = Settings::read(ctx)?;
        let (me, n) = ctx.process;
        let name = WRITES.file(&stem, me, n);
        let path = ctx.run_dir.join(name);
        let setup_text =
            std::fs::read_to_string(ctx.run_dir.join("setup.yaml")).unwrap_or_default();
        let io = WorkerError::output;
        // An earlier process of this worker (which failed and was started again) may have
        // left its files: the writer goes on after them.
        let mut writer = RunFileWriter::create_after_earlier(
            &path,
            RunInfo::new(setup_text),
            WriterOptions {
                flush_interval: flush,
                rotation,
            },
        )
        .map_err(io)?;
        writer.keep_run_facts(&ctx.run_dir);
        let buffer = writer
            .add_buffer(
                &src.name,
                &src.dtype,
                src.data_length,
                BufferOptions {
                    compression,
                    ..BufferOptions::default()
                },
            )
            .map_err(io)?;
        // Counts: the scales of the importer the buffer comes from (it writes them when it
        // starts) go onto `data` as soon as they are there.
        let plan = crate::run_dir::plan::Plan::load(&ctx.run_dir.join(crate::run_dir::PLAN));
        if let Some(origin) = plan
            .ok()
            .and_then(|p| crate::run_dir::scales::origin_of(&p, &src.name))
        {
            writer
                .keep_scales(
                    buffer,
                    crate::run_dir::scales::scales_path(&ctx.run_dir, &origin),
                )
                .map_err(io)?;
        }
        Ok(Hdf5Export {
            writer: Some(writer),
            buffer,
            deadtime_sum: 0.0,
            events: 0,
            events_lost: 0,
            kept_at_finish: None,
        })
    }

    fn writer(&mut self) -> Result<&mut RunFileWriter, WorkerError> {
        self.writer
            .as_mut()
            .ok_or_else(|| WorkerError::output(super::ExportError::Closed))
    }
}

impl Exporter for Hdf5Export {
    fn kept_from_earlier(&self) -> Option<u64> {
        self.writer.as_ref().map(|w| w.earlier_events())
    }

    fn events_kept(&self) -> Option<u64> {
        self.kept_at_finish
            .or_else(|| self.writer.as_ref().map(|w| w.events_kept()))
    }

    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        self.deadtime_sum += event.meta.deadtime;
        self.events += 1;
        let b = self.buffer;
        self.writer()?
            .append(b, event.data, &event.meta)
            .map_err(WorkerError::output)
    }

    fn flush(&mut self) -> Result<(), WorkerError> {
        self.writer()?
            .flush_if_due()
            .map(|_| ())
            .map_err(WorkerError::output)
    }

    fn run_lost(&mut self, events_lost: u64) {
        self.events_lost = events_lost;
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        let stats = RunStats {
            events_lost: self.events_lost,
            dead_time_fraction: if self.events > 0 {
                self.deadtime_sum / self.events as f64
            } else {
                0.0
            },
        };
        // What the files keep if the last flush or close fails (the writer is gone then):
        // the files already closed and the last one's events flushed before.
        let closed = w.events_kept() - w.flushed_in_open_file();
        w.finish(stats).map(|_| ()).map_err(|e| {
            if let super::ExportError::DiskFull { events_safe, .. }
            | super::ExportError::Write { events_safe, .. } = &e
            {
                self.kept_at_finish = Some(closed + events_safe);
            }
            WorkerError::output(e)
        })
    }
}
