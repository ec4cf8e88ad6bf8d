//! Recovery of runs that did not finish (the engine was killed, the machine lost power): the
//! run directory has no `summary.json`, its HDF5 files still carry the "open for SWMR
//! writing" flags, and `data` may hold more rows than `metadata` counts.
//!
//! Guarantees:
//! - A run directory that a live run holds (its `.lock` is locked by that run's supervisor)
//!   is never touched; [`RunDirLock`] is what a run holds for its whole life.
//! - After [`recover_run_dir`] every `.h5` file opens with any HDF5 reader, `data` and
//!   `metadata` of every buffer have the same length, that length (the events whose data and
//!   metadata were both flushed) is the file's `events_written` attribute with `recovered`
//!   = 1, the file is compressed as a cleanly closed one would be, no `.packing` file is
//!   left, and `summary.json` says `"recovered": true` with the events of every file.
//! - Every `.csv` file ends with a whole line (a line cut by the kill is removed); the file
//!   of an `export.csv` worker holds whole events (the rows of one cut short are removed)
//!   and is in `summary.json` with its events, as an HDF5 file is.
//! - Files and summaries are replaced atomically ([`write_atomic`]): a crash during recovery
//!   leaves the old file or the new one, never half of one.
//!
//! Must never: change an event that was flushed, touch a file a live run writes, or leave a
//! 0-byte summary.

use std::path::{Path, PathBuf};

use hdf5_metno as h5;

use super::error::{ExportError, NotRecoverable};
use super::hdf5::{
    compress, remove_partial_compressions, repack_filters, Compression, MetaRow, HISTOGRAM_GROUP,
};
use super::raw;
use crate::fsio::write_atomic;

/// The file in a run directory that the run's supervisor holds locked while it lives.
pub const LOCK_FILE: &str = ".lock";

/// Whether `dir` is a run directory: its lock file (every run directory has it from the
/// moment it appears) or, for one of an engine before the lock file, its plan.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(LOCK_FILE).is_file() || dir.join(crate::run_dir::PLAN).is_file()
}

/// The lock a live run holds on its run directory (released when dropped or when the
/// process dies, also by SIGKILL or a power cut).
#[derive(Debug)]
pub struct RunDirLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl RunDirLock {
    /// Locks `run_dir/.lock` (created if missing); `Ok(None)` when another process holds it
    /// (the run is live).
    pub fn try_lock(run_dir: &Path) -> std::io::Result<Option<RunDirLock>> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(run_dir.join(LOCK_FILE))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(RunDirLock(l))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(std::io::Error::from(e)),
        }
    }

    /// Whether a live run holds `run_dir`, asked without taking the directory from it:
    /// `Some(true)` while a supervisor or one of its workers lives, `Some(false)` when none
    /// does, `None` when the directory has no lock file (not a run directory of this engine).
    /// A shared lock, let go at once: a run or `recover` trying for the lock in that instant
    /// sees the directory as live and leaves it alone, which is safe.
    pub fn held_by_a_live_run(run_dir: &Path) -> Option<bool> {
        let f = std::fs::File::open(run_dir.join(LOCK_FILE)).ok()?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => Some(false),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Some(true),
            Err(_) => None,
        }
    }

    /// Lets the processes this one starts from now on (the run's workers) hold the lock too:
    /// the run directory stays locked until the last of them has ended, also when the
    /// supervisor was killed and its workers drain on.
    pub fn share_with_children(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        nix::fcntl::fcntl(
            &*self.0,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("lock file descriptor {fd}: {e}")))
    }
}

/// What recovery found in one file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRecovery {
    /// The file.
    pub path: PathBuf,
    /// Events kept per buffer (group name, events), in the file's group order.
    pub buffers: Vec<(String, u64)>,
    /// Rows cut from `data` (flushed data whose metadata never reached the file, or rows past
    /// the last flush), per buffer, in the same order.
    pub rows_cut: Vec<u64>,
    /// Whether the file was compressed now.
    pub compressed: bool,
    /// Why compressing it failed (the file stays uncompressed, complete and readable).
    pub compress_error: Option<String>,
}

impl FileRecovery {
    /// Nothing found in `path` yet.
    fn of(path: &Path) -> FileRecovery {
        FileRecovery {
            path: path.to_path_buf(),
            buffers: Vec::new(),
            rows_cut: Vec::new(),
            compressed: false,
            compress_error: None,
        }
    }
}

/// What recovery did to a run directory.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecovery {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Every `.h5` file, in name order, then each `export.csv` file the plan names.
    pub files: Vec<FileRecovery>,
    /// Files that could not be recovered, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

impl RunRecovery {
    /// Events kept, over all buffers: each buffer's once (see [`RunRecovery::buffer_events`]).
    pub fn events(&self) -> u64 {
        self.buffer_events().values().sum()
    }

    /// Events kept per buffer. The files of one writer (as the run's plan names them: its
    /// processes' files, each rotation and life of an HDF5 writer's) hold events that follow
    /// each other, so they add up; two writers of the same buffer (HDF5 and CSV, or two HDF5
    /// exporters) hold the same events again, so the buffer counts as the writer that holds
    /// more. Files no writer of the plan names (no plan) count as one writer's per kind
    /// (HDF5, CSV).
    pub fn buffer_events(&self) -> std::collections::BTreeMap<String, u64> {
        let plan = crate::run_dir::plan::Plan::load(&self.run_dir.join(crate::run_dir::PLAN));
        let firsts: Vec<(usize, &str)> = plan
            .iter()
            .flat_map(|p| p.workers.iter().enumerate())
            .flat_map(|(i, w)| w.files.iter().map(move |f| (i, f.as_str())))
            .collect();
        let writer_of = |f: &FileRecovery| {
            let name = crate::fsio::file_name(&f.path);
            let holds = |first: &str| match first.ends_with(".h5") {
                true => super::hdf5::RUN_FILES.holds(first, &name),
                false => first == name,
            };
            let kind = f.path.extension().map(|e| e.to_string_lossy().into_owned());
            let planned = firsts.iter().find(|(_, first)| holds(first));
            planned.map(|(i, _)| *i).ok_or(kind)
        };
        let mut per_writer =
            std::collections::BTreeMap::<(&str, Result<usize, Option<String>>), u64>::new();
        for f in &self.files {
            let writer = writer_of(f);
            for (b, n) in &f.buffers {
                *per_writer.entry((b.as_str(), writer.clone())).or_default() += n;
            }
        }
        let mut events = std::collections::BTreeMap::<String, u64>::new();
        for ((b, _), n) in per_writer {
            let e = events.entry(b.to_string()).or_default();
            *e = (*e).max(n);
        }
        events
    }
}

/// Events of one buffer that are whole in the file: leading metadata rows that were written
/// (not the fill value -1, not zeros past the end of what reached the disk), at most as many
/// as `data` has rows.
fn events_in(group: &h5::Group) -> Result<(u64, u64, u64), raw::H5Error> {
    let library = |e| raw::H5Error::Library(raw::describe(e));
    let data = group.dataset("data").map_err(library)?;
    let meta = group.dataset("metadata").map_err(library)?;
    let data_rows = data.shape().first().copied().unwrap_or(0);
    let meta_rows = meta.shape().first().copied().unwrap_or(0);
    let step = 1 << 16;
    let mut valid = 0usize;
    // A writer that leaves metadata zero (a Python worker writing its own events, as
    // mimoCoRB2 lets it) makes zero rows of every event: then only the fill value marks
    // rows that never reached the disk.
    let zeros_mark_the_end = meta
        .read_slice_1d::<MetaRow, _>(0..meta_rows.min(1))
        .ok()
        .and_then(|first| first.first().copied())
        .is_none_or(|m| !(m.counter == 0 && m.timestamp == 0.0 && m.deadtime == 0.0));
    'rows: while valid < meta_rows {
        let end = (valid + step).min(meta_rows);
        let Ok(part) = meta.read_slice_1d::<MetaRow, _>(valid..end) else {
            break;
        };
        for (k, m) in part.iter().enumerate() {
            let i = valid + k;
            let zero = m.counter == 0 && m.timestamp == 0.0 && m.deadtime == 0.0;
            if m.counter < 0 || (i > 0 && zero && zeros_mark_the_end) {
                valid = i;
                break 'rows;
            }
        }
        valid = end;
    }
    Ok((
        valid.min(data_rows) as u64,
        data_rows as u64,
        meta_rows as u64,
    ))
}

fn compression_of(group: &h5::Group) -> Compression {
    let text = group
        .attr("compression")
        .and_then(|a| a.read_scalar::<h5::types::VarLenUnicode>())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    match text.strip_prefix("shuffle+deflate level ") {
        Some(level) => Compression::Deflate {
            level: level.trim().parse().unwrap_or(1),
        },
        None => Compression::None,
    }
}

/// The `paused_seconds` and `pauses` its writer would have written at the close, for a run
/// file recovered in its run directory: the run's pauses (`pauses.jsonl`) within the file's
/// span, from its `start_time` to the run's last stats line (the latest time the run is
/// known to have lived; a pause still open then ends there), on the wall clock. Nothing
/// when either end is unknown (no stats line, a file without `start_time`).
fn put_pauses(file: &h5::File, path: &Path) -> h5::Result<()> {
    use crate::run_dir::pauses::Pauses;
    use h5::types::VarLenUnicode;
    let Some(run_dir) = path.parent() else {
        return Ok(());
    };
    let from = file
        .attr("start_time")
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .ok()
        .and_then(|t| crate::clock::parse_iso(t.as_str()));
    let to = crate::run_dir::last_snapshot(run_dir).and_then(|s| crate::clock::parse_iso(&s.time));
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(());
    };
    let paused = Pauses::read(run_dir)
        .on_the_wall_clock()
        .within(Pauses::wall_moment(from), Pauses::wall_moment(to));
    super::hdf5::write_paused(file, &paused)
}

/// Recovers one run file that no process writes any more: clears the writer's flags (as
/// `h5clear -s` does), cuts `data` and `metadata` of every buffer to the events both hold,
/// records that count (`events_written`, `recovered` = 1), and compresses the file as its
/// writer would have on closing, unless it is compressed already (a file closed cleanly
/// before the run was killed). Running it twice changes nothing more.
pub fn recover_file(path: &Path) -> Result<FileRecovery, ExportError> {
    let (mut out, filters) = cut_to_whole_events(path, true)?;
    if !filters.is_empty() {
        match compress(path, &filters) {
            Ok(()) => out.compressed = true,
            Err(e) => {
                tracing::warn!("{e}");
                out.compress_error = Some(e);
            }
        }
    }
    Ok(out)
}

/// How many events of `buffer` the files a worker names (`files`, as its plan has them)
/// hold whole in `run_dir`, once made whole: every life and rotation of an HDF5 writer's
/// file, a CSV file of `data_length` rows an event. For the books of an exporter whose
/// processes are gone without a clean end (what it was delivered beyond this is lost).
/// `None` when a file is of a kind not counted here or could not be read (said in the log).
pub fn events_in_files(
    run_dir: &Path,
    files: &[String],
    buffer: &str,
    data_length: usize,
) -> Option<u64> {
    let mut events = 0;
    for name in files {
        let path = run_dir.join(name);
        match path.extension().and_then(|e| e.to_str()) {
            Some("h5") => {
                for life in super::hdf5::earlier_lives(&path) {
                    match cut_to_whole_events(&life, !super::hdf5::closed_cleanly(&life)) {
                        Ok((r, _)) => {
                            events += r
                                .buffers
                                .iter()
                                .filter(|(b, _)| b == buffer)
                                .map(|(_, n)| n)
                                .sum::<u64>();
                        }
                        Err(e) => {
                            tracing::warn!("{}: cannot count its events: {e}", life.display());
                            return None;
                        }
                    }
                }
            }
            Some("csv") if path.exists() => {
                let counted = super::csv::cut_to_whole_lines(&path)
                    .and_then(|_| super::csv::cut_to_whole_events(&path, data_length as u64));
                match counted {
                    Ok((n, _)) => events += n,
                    Err(e) => {
                        tracing::warn!("{}: cannot count its events: {e}", path.display());
                        return None;
                    }
                }
            }
            Some("csv") => {}
            _ => return None,
        }
    }
    Some(events)
}

/// After a run whose workers are all gone (an abort killed them): every `.h5` file in
/// `run_dir` that was not closed cleanly is made whole (cut to whole events, marked
/// recovered); it stays uncompressed. Failures are logged.
pub fn make_whole_after_abort(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "h5") {
            continue;
        }
        // Left open for write (it does not even open), or a run file not closed cleanly;
        // files without the attribute (not a run file) are left alone.
        let needs = match h5::File::open(&path) {
            Err(_) => true,
            Ok(f) => f
                .attr("closed_cleanly")
                .ok()
                .and_then(|a| a.read_scalar::<u8>().ok())
                .is_some_and(|c| c == 0),
        };
        if !needs {
            continue;
        }
        match cut_to_whole_events(&path, true) {
            Ok((r, _)) => tracing::warn!(
                "{}: its writer ended without closing it (killed, or it failed); made whole \
                 with {} events (left uncompressed)",
                path.display(),
                r.buffers.iter().map(|b| b.1).sum::<u64>()
            ),
            Err(e) => tracing::warn!("{}: cannot make it whole: {e}", path.display()),
        }
    }
}

/// What [`cut_to_whole_events`] would return for a file that has nothing left to make
/// whole, found without writing to it: it opens without the writer's flags, every buffer's
/// `data` and `metadata` hold the same whole events, `events_written` counts them, and it
/// says it was recovered, or (when not to be marked recovered) that it was closed cleanly.
/// `None` when any of that is not so. Such a file is left as it is, not even opened for
/// writing: a cleanly closed or already recovered file keeps its bytes and its mtime.
fn whole_already(path: &Path, mark_recovered: bool) -> Option<(FileRecovery, Vec<String>)> {
    let file = h5::File::open(path).ok()?;
    let flag = |name: &str| {
        file.attr(name)
            .and_then(|a| a.read_scalar::<u8>())
            .is_ok_and(|v| v == 1)
    };
    if !(flag("recovered") || (!mark_recovered && flag("closed_cleanly"))) {
        return None;
    }
    let mut out = FileRecovery::of(path);
    let mut filters = Vec::new();
    for name in file.member_names().ok()? {
        if name == HISTOGRAM_GROUP {
            continue;
        }
        let Ok(group) = file.group(&name) else {
            continue;
        };
        let Ok(data) = group.dataset("data") else {
            continue;
        };
        if group.dataset("metadata").is_err() {
            continue;
        }
        let (n, data_rows, meta_rows) = events_in(&group).ok()?;
        if data_rows != n || meta_rows != n {
            return None;
        }
        if !deflated(&data) {
            filters.extend(repack_filters(&name, compression_of(&group)));
        }
        out.rows_cut.push(0);
        out.buffers.push((name, n));
    }
    let total: u64 = out.buffers.iter().map(|(_, n)| n).sum();
    let written = file
        .attr("events_written")
        .and_then(|a| a.read_scalar::<u64>());
    (written.ok()? == total).then_some((out, filters))
}

/// Whether `data` is stored compressed (its chunks deflated).
fn deflated(data: &h5::Dataset) -> bool {
    data.filters()
        .iter()
        .any(|f| matches!(f, h5::filters::Filter::Deflate(_)))
}

/// The part of [`recover_file`] that makes the file consistent: flags cleared, `data` and
/// `metadata` cut to the events both hold, `events_written` set (and `recovered` = 1 when
/// `mark_recovered`). Also returns the `h5repack` filters the file still needs.
pub(crate) fn cut_to_whole_events(
    path: &Path,
    mark_recovered: bool,
) -> Result<(FileRecovery, Vec<String>), ExportError> {
    let err = |reason: String| ExportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(whole) = whole_already(path, mark_recovered) {
        return Ok(whole);
    }
    raw::clear_status_flags(path)
        .map_err(|r| err(format!("could not clear the writer's flags: {r}")))?;
    let mut out = FileRecovery::of(path);
    let mut filters = Vec::new();
    {
        let file = h5::File::open_rw(path).map_err(|e| err(raw::describe(e)))?;
        let names = file.member_names().map_err(|e| err(raw::describe(e)))?;
        for name in names.iter().filter(|n| n.as_str() != HISTOGRAM_GROUP) {
            let Ok(group) = file.group(name) else {
                continue;
            };
            let (Ok(data), Ok(meta)) = (group.dataset("data"), group.dataset("metadata")) else {
                continue;
            };
            let (n, data_rows, meta_rows) =
                events_in(&group).map_err(|r| err(format!("buffer '{name}': {r}")))?;
            if data_rows != n || meta_rows != n {
                let cols = data.shape().get(1).copied().unwrap_or(1);
                data.resize((n as usize, cols))
                    .and_then(|_| meta.resize(n as usize))
                    .map_err(|e| {
                        err(format!(
                            "buffer '{name}': could not cut to {n} events: {}",
                            raw::describe(e)
                        ))
                    })?;
            }
            if !deflated(&data) {
                filters.extend(repack_filters(name, compression_of(&group)));
            }
            out.rows_cut.push(data_rows.saturating_sub(n));
            out.buffers.push((name.clone(), n));
        }
        {
            let total: u64 = out.buffers.iter().map(|(_, n)| n).sum();
            let put = || -> h5::Result<()> {
                match file.attr("events_written") {
                    Ok(a) => a.write_scalar(&total)?,
                    Err(_) => file
                        .new_attr::<u64>()
                        .create("events_written")?
                        .write_scalar(&total)?,
                }
                if mark_recovered {
                    match file.attr("recovered") {
                        Ok(a) => a.write_scalar(&1u8)?,
                        Err(_) => file
                            .new_attr::<u8>()
                            .create("recovered")?
                            .write_scalar(&1u8)?,
                    }
                    if file.attr("paused_seconds").is_err() {
                        put_pauses(&file, path)?;
                    }
                }
                file.flush()
            };
            put().map_err(|e| err(format!("could not record the events: {}", raw::describe(e))))?;
        }
    }
    Ok((out, filters))
}

/// The run's `summary.json`, if there is one that reads as JSON (a 0-byte or cut one, as a
/// full disk used to leave, counts as none).
pub fn summary_of(run_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join(crate::run_dir::SUMMARY)).ok()?;
    serde_json::from_str(&text).ok()
}

/// True when the run in `run_dir` ended (its last stats line says so) but wrote no summary
/// (no room for it on a full disk): it was not killed.
pub fn ended_without_summary(run_dir: &Path) -> bool {
    crate::run_dir::last_snapshot(run_dir).is_some_and(|l| l.ended)
        && summary_of(run_dir)
            .is_none_or(|v| v.get("recovered") == Some(&serde_json::Value::Bool(true)))
}

/// True when `run_dir` has a summary its run wrote (one a recovery wrote may be redone).
pub fn finished(run_dir: &Path) -> bool {
    summary_of(run_dir).is_some_and(|v| v.get("recovered") != Some(&serde_json::Value::Bool(true)))
}

/// When `run_dir` was recovered already, and whole: the line of its summary that says when
/// (`None`: not recovered, or a file of it was not recovered then or came after, so that
/// recovering again has something to do).
pub fn recovered_already(run_dir: &Path) -> Option<String> {
    let summary = summary_of(run_dir)?;
    if summary.get("recovered") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let files = summary.get("files")?.as_object()?;
    let every_file_in_it = std::fs::read_dir(run_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .all(|p| files.contains_key(&crate::fsio::file_name(&p)));
    if !every_file_in_it {
        return None;
    }
    let failures = summary.get("failures")?.as_array()?;
    let when = failures.iter().filter_map(|f| f.as_str()).find_map(|f| {
        f.split_once("; recovered at ")
            .map(|(_, at)| at.to_string())
    });
    Some(when.unwrap_or_default())
}

/// True when another process holds the lock libhdf5 takes on a file it has open (writers
/// exclusive, readers shared).
fn writer_holds(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    matches!(
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// How a recovery cuts one file to its whole events: [`cut_here`], or the same work done
/// where a libhdf5 that never returns can be stopped (the command line runs it in a child
/// process).
pub type Cut<'a> = &'a dyn Fn(&Path) -> CutOutcome;

/// One file cut: its recovery and the filters to compress it with, or why it failed.
pub type CutOutcome = Result<(FileRecovery, Vec<String>), String>;

/// Cuts `path` to its whole events in this process: clears the writer's flags, cuts `data`
/// and `metadata` to the events both hold and records that count (see [`recover_file`]);
/// returns the filters it is to be compressed with (none: it is compressed already).
pub fn cut_here(path: &Path) -> CutOutcome {
    cut_to_whole_events(path, true).map_err(|e| e.to_string())
}

/// Recovers every `.h5` file of a run directory that did not finish (each cut by `cut`),
/// removes `.packing` files a killed compression left, and writes `summary.json` with
/// `"recovered": true`. Refuses a directory a live run holds.
pub fn recover_run_dir(run_dir: &Path, cut: Cut<'_>) -> Result<RunRecovery, ExportError> {
    let (mut rec, later) = recover_run_dir_then_compress(run_dir, cut)?;
    for (path, result) in later.run() {
        if let Some(f) = rec.files.iter_mut().find(|f| f.path == path) {
            match result {
                Ok(()) => f.compressed = true,
                Err(e) => f.compress_error = Some(e),
            }
        }
    }
    Ok(rec)
}

/// The compressions a recovery left to do, with the run directory's lock held until they
/// are done (a run starting meanwhile leaves the directory alone).
#[derive(Debug)]
pub struct Compressions {
    _lock: RunDirLock,
    files: Vec<(PathBuf, Vec<String>)>,
}

impl Compressions {
    /// Files still to compress, with their sizes in bytes.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        self.files
            .iter()
            .map(|(p, _)| (p.clone(), std::fs::metadata(p).map_or(0, |m| m.len())))
            .collect()
    }

    /// Compresses them one after the other (as a closing writer does: `h5repack` at the
    /// lowest priority, renamed over the file; a failure leaves the file as it is) and
    /// releases the lock.
    pub fn run(self) -> Vec<(PathBuf, Result<(), String>)> {
        self.files
            .iter()
            .map(|(p, filters)| {
                let r = compress(p, filters);
                if let Err(e) = &r {
                    tracing::warn!("{e}");
                }
                (p.clone(), r)
            })
            .collect()
    }
}

/// [`recover_run_dir`] without the compression, which can take minutes for a large file:
/// the files are readable and `summary.json` is written when this returns; the compressions
/// are returned to be run (e.g. in the background while a new run starts).
pub fn recover_run_dir_then_compress(
    run_dir: &Path,
    cut: Cut<'_>,
) -> Result<(RunRecovery, Compressions), ExportError> {
    let io = |source: std::io::Error| ExportError::Io {
        path: run_dir.to_path_buf(),
        source,
    };
    if finished(run_dir) {
        return Err(ExportError::NotRecovered {
            path: run_dir.join("summary.json"),
            why: NotRecoverable::Finished,
        });
    }
    let Some(lock) = RunDirLock::try_lock(run_dir).map_err(io)? else {
        return Err(ExportError::NotRecovered {
            path: run_dir.to_path_buf(),
            why: NotRecoverable::Running,
        });
    };
    // Nothing writes here any more: what a killed rewrite left goes.
    for name in crate::fsio::remove_interrupted_rewrites(run_dir) {
        tracing::info!(
            "{}: removed {name}, left by a rewrite cut short",
            run_dir.display()
        );
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut rec = RunRecovery {
        run_dir: run_dir.to_path_buf(),
        files: Vec::new(),
        failed: Vec::new(),
    };
    let (h5_files, not_files): (Vec<&PathBuf>, Vec<&PathBuf>) = names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .partition(|p| p.is_file());
    // A FIFO or a device named like a run file: opening it would wait for a writer.
    for p in not_files {
        rec.failed.push((
            p.clone(),
            "not a regular file (a FIFO, a device or a directory): left alone".into(),
        ));
    }
    // A writer that holds no run-directory lock (a daq-engine from before the lock, a
    // worker started by hand) still holds libhdf5's lock on its file, and so does a reader
    // (h5py) that has it open: touch nothing then.
    for p in &h5_files {
        if writer_holds(p) {
            return Err(ExportError::NotRecovered {
                path: p.to_path_buf(),
                why: NotRecoverable::FileOpen,
            });
        }
    }
    // Compressions killed with their run: the originals next to them are complete.
    remove_partial_compressions(run_dir);
    let mut later = Compressions {
        _lock: lock,
        files: Vec::new(),
    };
    for p in h5_files {
        match cut(p) {
            Ok((f, filters)) => {
                if !filters.is_empty() {
                    later.files.push((p.clone(), filters));
                }
                for ((b, n), cut) in f.buffers.iter().zip(&f.rows_cut) {
                    tracing::info!(
                        "{}: buffer '{b}': {n} events kept{}",
                        p.display(),
                        if *cut > 0 {
                            format!(", {cut} incomplete rows cut")
                        } else {
                            String::new()
                        }
                    );
                }
                rec.files.push(f);
            }
            Err(e) => rec.failed.push((p.clone(), e)),
        }
    }
    // A CSV file (`export.csv`) may end in a line cut by the kill or a full disk, its last
    // number cut short and still reading as a number: cut back to its last whole line.
    for p in names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv") && p.is_file())
    {
        match super::csv::cut_to_whole_lines(p) {
            Ok(0) => {}
            Ok(cut) => tracing::info!("{}: a cut last line removed ({cut} bytes)", p.display()),
            Err(e) => rec
                .failed
                .push((p.clone(), format!("could not cut it to whole lines: {e}"))),
        }
    }
    for (p, got) in csv_events(run_dir) {
        match got {
            Ok(f) => rec.files.push(f),
            Err(e) => rec
                .failed
                .push((p, format!("could not count its events: {e}"))),
        }
    }
    let files: serde_json::Map<String, serde_json::Value> = rec
        .files
        .iter()
        .map(|f| {
            let name = crate::fsio::file_name(&f.path);
            let b: serde_json::Map<String, serde_json::Value> = f
                .buffers
                .iter()
                .map(|(b, n)| (b.clone(), (*n).into()))
                .collect();
            (name, b.into())
        })
        .collect();
    let events = rec.buffer_events();
    let last = crate::run_dir::last_snapshot(run_dir);
    // A run that ended but found no room for its summary (a full disk): its last line has
    // its end and its books.
    let ended = last.as_ref().filter(|l| l.ended);
    let mut failures = vec![match ended {
        Some(_) => format!(
            "the run ended (its last stats line says so) but could not write its summary (a \
             full disk?); recovered at {}",
            crate::clock::utc_now()
        ),
        None => format!(
            "the run ended without a summary (killed, or the machine stopped); recovered at {}",
            crate::clock::utc_now()
        ),
    }];
    failures.extend(
        rec.failed
            .iter()
            .map(|(p, why)| format!("{}: not recovered: {why}", p.display())),
    );
    let mut summary = serde_json::json!({
        "recovered": true,
        "exit_code": 1,
        "run_dir": run_dir,
        "events_written": events.values().sum::<u64>(),
        "events": events,
        "files": files,
        "stopped_by": crate::run_dir::StopCause::Killed,
        "failures": failures,
    });
    if let Some(line) = ended {
        summary["stopped_by"] =
            serde_json::json!(line.stopped_by.unwrap_or(crate::run_dir::StopCause::Killed));
        let per_buffer = |f: &dyn Fn(&crate::run_dir::BufferStats) -> serde_json::Value| {
            line.buffers
                .iter()
                .map(|(b, s)| (b.clone(), f(s)))
                .collect::<serde_json::Map<_, _>>()
        };
        summary["events"] = per_buffer(&|s| s.events_in.into()).into();
        summary["lost"] = per_buffer(&|s| s.lost.into()).into();
        summary["readers"] = per_buffer(&|s| serde_json::json!(s.readers)).into();
    }
    // How long it ran and was paused, as of the supervisor's last stats line (at most a
    // stats interval before it ended, unless it hung): the live time a week-long run that
    // was killed still needs.
    if let Some(last) = last {
        summary["seconds"] = last.t.into();
        if last.paused_s > 0.0 {
            summary["paused_seconds"] = last.paused_s.into();
        }
        summary["seconds_as_of"] = last.time.into();
    }
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write_atomic(&run_dir.join("summary.json"), text.as_bytes()).map_err(|source| {
        ExportError::Io {
            path: run_dir.join("summary.json"),
            source,
        }
    })?;
    Ok((rec, later))
}

/// The CSV files the run's plan names (an `export.csv` worker's file: one line of header,
/// then a line a record, `data_length` records an event) with the events each holds whole;
/// rows of an event cut short (a kill between its lines) are cut from the file. None
/// without a plan.
fn csv_events(run_dir: &Path) -> Vec<(PathBuf, Result<FileRecovery, std::io::Error>)> {
    let Ok(plan) = crate::run_dir::plan::Plan::load(&run_dir.join(crate::run_dir::PLAN)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in &plan.workers {
        let [source] = w.sources.as_slice() else {
            continue;
        };
        let Some(buffer) = plan.buffer(source) else {
            continue;
        };
        for name in w.files.iter().filter(|f| f.ends_with(".csv")) {
            let path = run_dir.join(name);
            if !path.is_file() {
                continue;
            }
            let got = super::csv::cut_to_whole_events(&path, buffer.data_length as u64).map(
                |(events, cut)| {
                    if cut > 0 {
                        tracing::info!(
                            "{}: {cut} rows of an event cut short removed",
                            path.display()
                        );
                    }
                    FileRecovery {
                        buffers: vec![(source.clone(), events)],
                        rows_cut: vec![cut],
                        ..FileRecovery::of(&path)
                    }
                },
            );
            out.push((path, got));
        }
    }
    out
}

/// Removes the staging directories (`.staging_*`, see `engine::launch::make_locked_run_dir`)
/// in `target` that a starting run left when it died before renaming it (none is locked).
pub fn remove_stale_staging(target: &Path) {
    let Ok(entries) = std::fs::read_dir(target) else {
        return;
    };
    for p in entries.flatten().map(|e| e.path()) {
        let staging = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".staging_"));
        if staging && p.is_dir() && matches!(RunDirLock::try_lock(&p), Ok(Some(_))) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// The run directories (`run_*`) in `target` that did not finish: no readable
/// `summary.json` and no live run holding them. Sorted by name (start time).
pub fn unfinished_runs(target: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("run_"))
                && summary_of(p).is_none()
                && matches!(RunDirLock::try_lock(p), Ok(Some(_)))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_run_directory_is_not_unfinished_and_is_refused() {
        let target = std::env::temp_dir().join(format!("daq-recover-lock-{}", std::process::id()));
        let run = target.join("run_2026-01-01T00-00-00");
        std::fs::create_dir_all(&run).unwrap();
        let lock = RunDirLock::try_lock(&run)
            .unwrap()
            .expect("a fresh directory locks");
        // flock belongs to the open file: a second open, even in this process, is refused.
        assert!(RunDirLock::try_lock(&run).unwrap().is_none());
        assert!(unfinished_runs(&target).is_empty());
        assert!(matches!(
            recover_run_dir(&run, &cut_here),
            Err(ExportError::NotRecovered {
                why: NotRecoverable::Running,
                ..
            })
        ));
        assert!(!run.join("summary.json").exists());
        drop(lock);
        // A 0-byte summary (what a full disk used to leave) is no summary.
        std::fs::write(run.join("summary.json"), "").unwrap();
        assert_eq!(unfinished_runs(&target), vec![run.clone()]);
        // A device notes file whose rewrite was cut short by the kill.
        std::fs::write(run.join("device_x.txt"), "connected: true\n").unwrap();
        std::fs::write(run.join("device_x.txt.tmp"), "conn").unwrap();
        let rec = recover_run_dir(&run, &cut_here).unwrap();
        assert!(!run.join("device_x.txt.tmp").exists());
        assert!(run.join("device_x.txt").exists());
        assert_eq!(rec.events(), 0);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["recovered"], true);
        assert_eq!(summary["stopped_by"], "killed");
        // No stats line: nothing to say of its time.
        assert!(summary.get("seconds").is_none(), "{summary}");
        assert!(unfinished_runs(&target).is_empty());
        // A staging directory of a start that died is removed; a locked one stays.
        let dead = target.join(".staging_1-0-0");
        let live = target.join(".staging_2-0-0");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        let held = RunDirLock::try_lock(&live).unwrap().unwrap();
        remove_stale_staging(&target);
        assert!(!dead.exists() && live.exists());
        drop(held);
        std::fs::remove_dir_all(&target).unwrap();
    }

    /// A run killed while paused: its recovered summary has the time and the pause of its
    /// last stats line (before, it said nothing of either).
    #[test]
    fn a_killed_runs_time_and_pause_come_from_its_last_stats_line() {
        let run = crate::fsio::test_dir("recover-time");
        let line = |t: f64, paused_s: f64| {
            serde_json::to_string(&crate::run_dir::Snapshot {
                t,
                paused: paused_s > 0.0,
                paused_s,
                time: format!("2026-12-06T10:00:{:02}.000Z", t as u32),
                ..Default::default()
            })
            .unwrap()
        };
        let stats = format!("{}\n{}\n{{\"t\": 9", line(5.0, 0.0), line(8.0, 2.5));
        std::fs::write(run.join(crate::run_dir::STATS), stats).unwrap();
        recover_run_dir(&run, &cut_here).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["seconds"], 8.0, "{summary}");
        assert_eq!(summary["paused_seconds"], 2.5, "{summary}");
        assert_eq!(summary["seconds_as_of"], "2026-12-06T10:00:08.000Z");
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A run that ended (its last stats line says so, stopped by a full disk) but could not
    /// write its summary (the disk was full) was recovered as killed: `stopped_by: killed`,
    /// "ended without a summary", no books, the files' 975 events as the buffer's. The
    /// recovered summary says how it ended and carries the books of that line.
    #[test]
    fn a_run_that_ended_without_room_for_its_summary_is_not_called_killed() {
        use crate::run_dir::{snapshot::BufferStats, ReaderBooks, Snapshot, StopCause};
        let run = crate::fsio::test_dir("recover-ended");
        let books = ReaderBooks {
            delivered: 975,
            lost: 945,
            pending: 0,
        };
        let line = Snapshot {
            t: 12.0,
            ended: true,
            stopped_by: Some(StopCause::DiskFull),
            time: "2026-12-08T03:16:45.000Z".into(),
            buffers: [(
                "raw".to_string(),
                BufferStats {
                    events_in: 1920,
                    produced: 1920,
                    readers: [("wave".to_string(), books)].into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&line).unwrap();
        std::fs::write(run.join(crate::run_dir::STATS), format!("{text}\n")).unwrap();
        recover_run_dir(&run, &cut_here).unwrap();
        let summary = summary_of(&run).unwrap();
        assert_eq!(summary["stopped_by"], "disk_full", "{summary}");
        assert_eq!(summary["events"]["raw"], 1920, "{summary}");
        assert_eq!(summary["readers"]["raw"]["wave"]["lost"], 945, "{summary}");
        let why = summary["failures"][0].as_str().unwrap();
        assert!(why.contains("could not write its summary"), "{why}");
        assert!(ended_without_summary(&run));
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A Python worker that writes its events itself (`with io.write[0] as (metadata,
    /// data)`) may leave their metadata all zero, as mimoCoRB2 does not fill it in: a
    /// recovery took every zero row after the first for one that never reached the disk
    /// and cut a tester's 243 events to 1. Zero rows mark the end only in a file whose
    /// writer filled its metadata in (its first row is not zero).
    #[test]
    fn events_whose_writer_left_their_metadata_zero_are_kept() {
        let dir = crate::fsio::test_dir("recover-zero-meta");
        let path = dir.join("raw.h5");
        let dtype = crate::dtype::Dtype::parse([("x", "f4")]).unwrap();
        let mut w = crate::export::hdf5::RunFileWriter::create(
            &path,
            crate::export::hdf5::RunInfo::new("test"),
            Default::default(),
        )
        .unwrap();
        let b = w.add_buffer("raw", &dtype, 2, Default::default()).unwrap();
        for _ in 0..5 {
            w.append(b, &[0u8; 8], &crate::dtype::Metadata::default())
                .unwrap();
        }
        drop(w);
        let f = h5::File::open(&path).unwrap();
        let (events, data_rows, _) = events_in(&f.group("raw").unwrap()).unwrap();
        assert_eq!((events, data_rows), (5, 5));
        drop(f);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A FIFO named `*.h5` in a run directory made `recover` wait for a writer for ever. It
    /// is left alone now and named among the files not recovered.
    #[test]
    fn a_fifo_named_like_a_run_file_is_left_alone() {
        let run = crate::fsio::test_dir("recover-fifo");
        let fifo = run.join("raw.h5");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = run.clone();
        std::thread::spawn(move || {
            let _ = tx.send(recover_run_dir(&dir, &cut_here).map(|r| r.failed));
        });
        let failed = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("recover of a directory with a FIFO never returned")
            .unwrap();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].1.contains("not a regular file"), "{failed:?}");
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A CSV file whose last line a full disk cut (`…,100.` of `100.375`, still a number):
    /// recovery used to leave the cut line. Now it is cut back to the last whole line, and a
    /// whole file is left as it is.
    #[test]
    fn a_csv_file_is_cut_back_to_its_last_whole_line() {
        let run = crate::fsio::test_dir("recover-csv");
        let whole = "counter,timestamp,deadtime,height\n0,1.5,0,0.25\n1,1.75,0,0.5\n";
        std::fs::write(run.join("feat.csv"), format!("{whole}2,2,0,100.")).unwrap();
        std::fs::write(run.join("other.csv"), whole).unwrap();
        let rec = recover_run_dir(&run, &cut_here).unwrap();
        assert!(rec.failed.is_empty(), "{:?}", rec.failed);
        assert_eq!(
            std::fs::read_to_string(run.join("feat.csv")).unwrap(),
            whole
        );
        assert_eq!(
            std::fs::read_to_string(run.join("other.csv")).unwrap(),
            whole
        );
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// A killed run whose buffer went both to HDF5 (rotated: two files) and to CSV: the
    /// recovered summary's `events_written` added every file up, twice the events taken
    /// (the tester's: events raw 1557, events_written 3114). Each buffer counts once.
    #[test]
    fn a_buffer_in_hdf5_and_csv_counts_once() {
        let file = |name: &str, n: u64| FileRecovery {
            buffers: vec![("raw".into(), n)],
            rows_cut: vec![0],
            ..FileRecovery::of(Path::new(name))
        };
        let rec = RunRecovery {
            run_dir: PathBuf::from("run"),
            files: vec![
                file("raw.h5", 10),
                file("raw_0001.h5", 5),
                file("raw.csv", 15),
            ],
            failed: Vec::new(),
        };
        assert_eq!(rec.events(), 15);
    }

    /// Two HDF5 exporters of one buffer, one rotating (`a.h5`, `a_0001.h5`), one not
    /// (`b.h5`): each holds the buffer's events, so the buffer counts as the one that holds
    /// more, not as every file added up (it said 30 for 15 events).
    #[test]
    fn a_buffer_two_hdf5_writers_hold_counts_once() {
        let run = crate::fsio::test_dir("recover-two-writers");
        let mut plan = crate::run_dir::plan::Plan::example();
        plan.run_dir = run.clone();
        let writer = |name: &str, file: &str| crate::run_dir::plan::WorkerPlan {
            name: name.into(),
            function: "export.hdf5".into(),
            sources: vec!["raw".into()],
            sinks: vec![],
            files: vec![file.into()],
            ..plan.workers[0].clone()
        };
        plan.workers = vec![writer("h5a", "a.h5"), writer("h5b", "b.h5")];
        plan.save().unwrap();
        let file = |name: &str, n: u64| FileRecovery {
            buffers: vec![("raw".into(), n)],
            rows_cut: vec![0],
            ..FileRecovery::of(&run.join(name))
        };
        let rec = RunRecovery {
            run_dir: run.clone(),
            files: vec![file("a.h5", 10), file("a_0001.h5", 5), file("b.h5", 15)],
            failed: Vec::new(),
        };
        assert_eq!(rec.events(), 15);
        assert_eq!(rec.buffer_events()["raw"], 15);
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn a_finished_run_is_left_as_it_is() {
        let run = crate::fsio::test_dir("recover-done");
        let summary = r#"{"exit_code": 0, "events": {"raw": 12}}"#;
        std::fs::write(run.join("summary.json"), summary).unwrap();
        let e = recover_run_dir(&run, &cut_here).unwrap_err();
        assert!(e.to_string().contains("nothing to recover"), "{e}");
        assert!(matches!(
            e,
            ExportError::NotRecovered {
                why: NotRecoverable::Finished,
                ..
            }
        ));
        assert_eq!(
            std::fs::read_to_string(run.join("summary.json")).unwrap(),
            summary
        );
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn a_file_open_in_a_writer_stops_the_recovery_of_its_directory() {
        let run = crate::fsio::test_dir("recover-open");
        let path = run.join("raw.h5");
        let w = crate::export::hdf5::RunFileWriter::create(
            &path,
            crate::export::hdf5::RunInfo::new("test"),
            Default::default(),
        )
        .unwrap();
        let e = recover_run_dir(&run, &cut_here).unwrap_err();
        assert!(e.to_string().contains("has this file open"), "{e}");
        assert!(matches!(
            e,
            ExportError::NotRecovered {
                why: NotRecoverable::FileOpen,
                ..
            }
        ));
        assert!(!run.join("summary.json").exists());
        drop(w);
        std::fs::remove_dir_all(&run).unwrap();
    }
}
