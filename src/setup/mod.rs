//! Setup files: parse, resolve and validate a mimoCoRB2-shaped YAML setup into a [`Setup`].
//!
//! Guarantees: nothing starts from a setup that has not validated as a whole. Every problem
//! found is reported (not just the first), sorted by position, each as
//! `file:line:col: error: message` with a hint, pointing at the text to change — in the setup
//! file or in a file it includes. Never panics on any input. Must never create, map or start
//! anything, and never read files other than the setup and the files it names.
//!
//! # The file
//! mimoCoRB2's top level: `target_directory` (default `target`, relative to the setup file's
//! directory, `~` expanded), `base_config`, `Buffers`, `Workers`; plus `options:`
//! (`max_events`, `max_seconds`, `stats_interval` (s, default 1), `huge_pages: auto|off`,
//! `disk_reserve_mb` (MB kept free on the run's disk: the run stops cleanly there; default 100),
//! `drain_stall_seconds` (a drain, after a stop or once the importers ran out, that moves no
//! event for this long while some wait ends with the workers killed; default 300, at least 1),
//! `worker_stall_seconds` (while the importers run, a reader that takes no event for this
//! long while events wait for it, or a device importer whose loop does not come round for
//! as long, is stuck: killed and started again under
//! `restart: on-failure`, else named in the log; default 300, at least 3, 0 never),
//! `alert_command` (a shell command run when a warning starts; see `engine::alert`)).
//! A buffer or worker spec may be given inline or as the path of a YAML file holding it.
//! `config` and `base_config` are a mapping, a file path, or a list of both, merged in order;
//! a worker's keys win over `base_config`. Paths are relative to the setup file. Anchors,
//! aliases and `<<` merge keys work. Additions for real-time work: buffer
//! `policy: block|drop` (default block); worker `cpu: [cores]`, `priority: 1..99`
//! (SCHED_FIFO), `restart: never|on-failure` (default never).
//!
//! Decisions:
//! - mimoCoRB2's ignored keys `Options:` and `overwrite:` (top level or in a buffer) give a
//!   warning naming the key; a mistyped key of ours stays an error with a "did you mean".
//! - Another unknown top-level key is accepted silently when an alias in the file uses
//!   something defined in its block (an anchor template, as mimoCoRB2 users write them);
//!   otherwise it is an error with a "did you mean".
//! - `slot_count` is any count from 1 to 2^30, as in mimoCoRB2. The ring lays out the next
//!   power of two inside but holds at most `slot_count` events in flight, so back-pressure
//!   and dead time behave as the setup says.
//! - A `base_config` key that a built-in function does not read is left out of that
//!   worker's config (base_config is shared by all workers, as in mimoCoRB2), so the resolved
//!   setup holds each config as its function reads it and reads back unchanged; an unknown
//!   key in a worker's own `config` is an error with a "did you mean". Workers from a user
//!   library (`file:`) get every key.
//! - A worker with `file: x.py` runs in an embedded Python ([`crate::python`]): the file must
//!   exist; `daq-engine check` then imports it in a child process. [`Checked`] lists every
//!   such worker by name. `python:` (per worker, or under `options:`) names the venv whose
//!   packages it imports.
//!
//! # Choosing the YAML library
//! Both `yaml_serde` 0.10.7 and `serde-saphyr` 2.2.0 were run on the same broken setups
//! (deserialising into a struct with `deny_unknown_fields`):
//!
//! | broken input | yaml_serde | serde-saphyr |
//! |---|---|---|
//! | `data_dtype: {ch0: 'f4', ch1: 'f4'` (line 5, never closed) | `did not find expected ',' or '}' at line 6 column 1, while parsing a flow mapping at line 5 column 17` | `line 5 column 17: unclosed bracket '{'` |
//! | a tab before `slot_count` (line 3) | `found character that cannot start any token at line 3 column 1, while scanning for the next token` | `line 3 column 2: tabs disallowed within this context (block indentation)` |
//! | `slot_count: many` | `Buffers.raw.slot_count: invalid type: string "many", expected u64 at line 3 column 17` | `line 3 column 17: invalid u64` |
//! | `slot_cont: 128` | `Buffers.raw: unknown field `slot_cont`, expected one of ... at line 3 column 5` | `line 3 column 5: unknown field `slot_cont`, expected one of ...` |
//! | `acc: *wavee` | `unknown anchor at line 6 column 8` | `line 6 column 8: alias references unknown anchor` |
//! | `slot_count` twice (lines 3, 4) | `duplicate field `slot_count` at line 3 column 5` (the first, valid one) | `line 4 column 5: duplicate mapping key: slot_count` (the duplicate) |
//!
//! (A repeated key is now reported by `yaml.rs` itself, naming both places: the library's
//! full message went on to name its own `DuplicateKeyPolicy` option.)
//!
//! serde-saphyr's syntax messages say what is wrong in the user's words and point at the
//! offending character (the unclosed bracket, the tab, the duplicate), and — the deciding
//! point — it has `Spanned<T>`, which gives a line and column for every key and value, also
//! through aliases and merge keys. yaml_serde has no spans, so semantic errors (a sink naming
//! a missing buffer) could not point at the list item. Chosen: serde-saphyr; the
//! `yaml_serde` dependency was removed. Type and unknown-key errors are not left to serde at
//! all: the file is read into a positioned value tree (`yaml.rs`) and checked here, so every
//! message says what was expected and lists valid keys.

pub mod diag;
pub mod graph;

mod check;
pub use check::key_declaration_problems;
mod load;
pub mod migrate;
mod shell;
mod yaml;

pub use diag::{Diagnostic, DiagnosticKind, SetupError, Severity};

use crate::dtype::Dtype;
use crate::ring::Policy;
use crate::worker::{BufferShape, BuildContext, Catalog, Template};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub use crate::run_dir::plan::{Restart, WorkerPlan};

pub use crate::shm::HugePages;

/// The `options:` section: run limits and run settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Stop after this many events from the importers (all together), if set.
    pub max_events: Option<u64>,
    /// Stop after this many seconds, if set.
    pub max_seconds: Option<f64>,
    /// Seconds between two lines of statistics.
    pub stats_interval: f64,
    /// Huge pages for the rings.
    pub huge_pages: HugePages,
    /// Stop the run cleanly when less than this many MB are free on the run's disk.
    pub disk_reserve_mb: f64,
    /// After a stop or once the importers ran out, seconds the drain may go without any
    /// event moving through any buffer while some still wait, before the workers holding it
    /// up are killed.
    pub drain_stall_seconds: f64,
    /// While the importers run, seconds a reader may take no event while events wait for it,
    /// or a device importer's loop may not come round, before it counts as stuck; 0: never.
    pub worker_stall_seconds: f64,
    /// The venv of the setup's Python workers (`options: python:`), as written (`~`
    /// expanded; relative to the setup file's directory).
    pub python: Option<PathBuf>,
    /// A shell command run (`sh -c`) when a warning starts, with the warning in
    /// `DAQ_ALERT_*` variables (see `engine::alert`).
    pub alert_command: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_events: None,
            max_seconds: None,
            stats_interval: 1.0,
            huge_pages: HugePages::Auto,
            disk_reserve_mb: 100.0,
            drain_stall_seconds: crate::run_dir::plan::DRAIN_STALL_SECONDS,
            worker_stall_seconds: crate::run_dir::plan::WORKER_STALL_SECONDS,
            python: None,
            alert_command: None,
        }
    }
}

/// One buffer: a ring per writing process, of `slot_count` events of `data_length` records.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferSetup {
    /// Its name.
    pub name: String,
    /// Events it holds in flight at most (1 ..= 2^30, any count).
    pub slot_count: usize,
    /// Records per event (≥ 1).
    pub data_length: usize,
    /// The record type.
    pub dtype: Dtype,
    /// What a full ring does to its writer.
    pub policy: Policy,
}

/// A resolved setup: includes read, configs merged, spans dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// The setup file, as given.
    pub file: PathBuf,
    /// Its directory (relative paths in the setup are relative to it).
    pub setup_dir: PathBuf,
    /// Where run directories are made.
    pub target_directory: PathBuf,
    /// Run limits and settings.
    pub options: RunOptions,
    /// Buffers in file order.
    pub buffers: Vec<BufferSetup>,
    /// Workers in file order.
    pub workers: Vec<WorkerPlan>,
}

/// A worker written in Python (mimoCoRB2's templates), run by the embedded interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonWorker {
    /// The worker's name.
    pub worker: String,
    /// Its `file:` as written.
    pub file: String,
    /// Its `function:`.
    pub function: String,
    /// The template it plays, guessed from its buffers.
    pub template: Option<Template>,
}

/// Where a value was written: a file (the setup or one it includes), a 1-based line and
/// column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl Place {
    /// An error about what is written here.
    pub fn error(&self, message: impl Into<String>, hint: Option<String>) -> Diagnostic {
        self.clone().diagnostic(
            Severity::Error,
            DiagnosticKind::General,
            message.into(),
            hint,
        )
    }

    /// A diagnostic about what is written here.
    pub(crate) fn diagnostic(
        self,
        severity: Severity,
        kind: DiagnosticKind,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            kind,
            file: self.file,
            line: self.line,
            column: self.column,
            message,
            hint,
        }
    }
}

/// Where a worker's `file:` and `function:` were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPlaces {
    /// The worker's name.
    pub worker: String,
    /// Its `file:`, if it has one.
    pub file: Option<Place>,
    /// Its `function:`, if it has one.
    pub function: Option<Place>,
    /// Its venv: its own `python:`, else `options: python:`, if either is written.
    pub python: Option<Place>,
}

/// Where the setup wrote what `check` looks at beyond the file itself (the target
/// directory; the user libraries and Python files, loaded in probe processes), so that what
/// it finds there points at the line to change like any other error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Places {
    /// `target_directory:`; the setup file's first line when it gives none.
    pub target_directory: Place,
    /// Each worker's, in file order.
    pub workers: Vec<WorkerPlaces>,
}

impl Places {
    /// Where worker `name`'s `file:` was written.
    pub fn file_of(&self, name: &str) -> Option<&Place> {
        self.worker(name).and_then(|w| w.file.as_ref())
    }

    /// Where worker `name`'s `function:` was written.
    pub fn function_of(&self, name: &str) -> Option<&Place> {
        self.worker(name).and_then(|w| w.function.as_ref())
    }

    /// Where worker `name`'s venv was given (its `python:`, else `options: python:`).
    pub fn python_of(&self, name: &str) -> Option<&Place> {
        self.worker(name).and_then(|w| w.python.as_ref())
    }

    fn worker(&self, name: &str) -> Option<&WorkerPlaces> {
        self.workers.iter().find(|w| w.worker == name)
    }
}

/// The full outcome of checking a setup, for `daq-engine check`: the setup as far as it
/// could be read, all errors and warnings, and the Python workers by name.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Everything that could be read. Complete and runnable only when `errors` is empty.
    pub setup: Setup,
    /// Errors, sorted by position.
    pub errors: Vec<Diagnostic>,
    /// Warnings, sorted by position.
    pub warnings: Vec<Diagnostic>,
    /// Workers with a Python `file:`.
    pub python_workers: Vec<PythonWorker>,
    /// Every file read: the setup first, then its includes in the order they were read.
    pub files: Vec<PathBuf>,
    /// Where the setup wrote its target directory and its workers' files and functions.
    pub places: Places,
}

impl Checked {
    /// Everything `daq-engine check` prints about the setup: each error and warning in file
    /// order (compiler style), the Python workers by name, and a summary line.
    pub fn report(&self) -> String {
        let rank = |d: &Diagnostic| {
            self.files
                .iter()
                .position(|f| *f == d.file)
                .unwrap_or(usize::MAX)
        };
        let mut all: Vec<&Diagnostic> = self.errors.iter().chain(&self.warnings).collect();
        all.sort_by_key(|d| (rank(d), d.line, d.column, d.severity));
        let mut out = String::new();
        for d in all {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "{}: {}, {}\n",
            self.setup.file.display(),
            plural(self.errors.len(), "error"),
            plural(self.warnings.len(), "warning")
        ));
        out
    }

    /// The setup and its warnings, or every error (with the warnings) when there is one.
    pub fn into_result(self) -> Result<(Setup, Vec<Diagnostic>), SetupError> {
        if self.errors.is_empty() {
            return Ok((self.setup, self.warnings));
        }
        let files = self.files;
        let rank = |d: &Diagnostic| {
            files
                .iter()
                .position(|f| *f == d.file)
                .unwrap_or(usize::MAX)
        };
        let mut all = self.errors;
        all.extend(self.warnings);
        all.sort_by_key(|d| (rank(d), d.line, d.column, d.severity));
        Err(SetupError { diagnostics: all })
    }
}

/// A command-line limit that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// `--max-events 0`.
    #[error("--max-events must be at least 1 (leave it out for no limit)")]
    ZeroEvents,
    /// A negative, zero or non-finite `--max-seconds`.
    #[error("--max-seconds {0} must be a number of seconds above 0")]
    BadSeconds(f64),
}

/// CPUs online on this machine (what `cpu:` lists are checked against).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system constant; it has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

impl Setup {
    /// Reads, resolves and validates the setup file at `path`. `online_cpus` is what `cpu:`
    /// lists are checked against (see [`online_cpus`]). On success, the warnings come along.
    pub fn load(
        path: &Path,
        catalog: &dyn Catalog,
        online_cpus: usize,
    ) -> Result<(Setup, Vec<Diagnostic>), SetupError> {
        Setup::check_file(path, catalog, online_cpus).into_result()
    }

    /// As [`Setup::load`], from text; `path_for_messages` names it in messages and anchors
    /// relative paths (includes, `target_directory`).
    pub fn from_str(
        text: &str,
        path_for_messages: &Path,
        catalog: &dyn Catalog,
        online_cpus: usize,
    ) -> Result<(Setup, Vec<Diagnostic>), SetupError> {
        Setup::check_bytes(text.as_bytes(), path_for_messages, catalog, online_cpus).into_result()
    }

    /// Checks the setup file at `path` and returns everything found (for `check`).
    pub fn check_file(path: &Path, catalog: &dyn Catalog, online_cpus: usize) -> Checked {
        match load::read_limited(path) {
            Ok(bytes) => Setup::check_bytes(&bytes, path, catalog, online_cpus),
            Err(e) => {
                let mut l = load::Loader::new(path, online_cpus);
                l.error(
                    yaml::Loc::SETUP_START,
                    format!("cannot read the setup file: {e}"),
                    None,
                );
                let draft = load::Draft::empty(&l.setup_dir);
                finish(l, draft, catalog)
            }
        }
    }

    /// Checks setup text (bytes, which need not be UTF-8) and returns everything found.
    pub fn check_bytes(
        bytes: &[u8],
        path_for_messages: &Path,
        catalog: &dyn Catalog,
        online_cpus: usize,
    ) -> Checked {
        let mut l = load::Loader::new(path_for_messages, online_cpus);
        let draft = l.read(bytes);
        finish(l, draft, catalog)
    }

    /// Command-line limits over the setup's `options:` (a given value wins).
    pub fn apply_limits(
        &mut self,
        max_events: Option<u64>,
        max_seconds: Option<f64>,
    ) -> Result<(), LimitError> {
        if max_events == Some(0) {
            return Err(LimitError::ZeroEvents);
        }
        if let Some(s) = max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(LimitError::BadSeconds(s));
            }
        }
        if max_events.is_some() {
            self.options.max_events = max_events;
        }
        if max_seconds.is_some() {
            self.options.max_seconds = max_seconds;
        }
        Ok(())
    }

    /// The buffer with this name.
    pub fn buffer(&self, name: &str) -> Option<&BufferSetup> {
        self.buffers.iter().find(|b| b.name == name)
    }

    /// The worker with this name.
    pub fn worker(&self, name: &str) -> Option<&WorkerPlan> {
        self.workers.iter().find(|w| w.name == name)
    }

    /// The context worker `w` is checked in (see [`Catalog::check_worker`]) when it runs in
    /// `processes` processes; `None` when it names a buffer the setup lacks. A check writes
    /// nothing: there is no run directory, output names are checked as names.
    pub fn check_context(&self, w: &WorkerPlan, processes: usize) -> Option<BuildContext> {
        let shapes = |names: &[String]| -> Option<Vec<BufferShape>> {
            names
                .iter()
                .map(|n| {
                    self.buffer(n).map(|b| BufferShape {
                        name: b.name.clone(),
                        dtype: b.dtype.clone(),
                        data_length: b.data_length,
                    })
                })
                .collect()
        };
        Some(BuildContext {
            worker: w.name.clone(),
            process: (0, processes.max(1)),
            config: w.config(),
            sources: shapes(&w.sources)?,
            sinks: shapes(&w.sinks)?,
            observes: shapes(&w.observes)?,
            run_dir: PathBuf::new(),
            setup_dir: self.setup_dir.clone(),
        })
    }

    /// The worker writing `buffer` (the first, should a broken setup have several).
    pub fn writer_of(&self, buffer: &str) -> Option<&WorkerPlan> {
        self.workers
            .iter()
            .find(|w| w.sinks.iter().any(|s| s == buffer))
    }

    /// Workers reading `buffer`, in file order (each one a consumer group).
    pub fn readers_of(&self, buffer: &str) -> Vec<&WorkerPlan> {
        self.workers
            .iter()
            .filter(|w| w.sources.iter().any(|s| s == buffer))
            .collect()
    }

    /// Workers observing `buffer`, in file order.
    pub fn observers_of(&self, buffer: &str) -> Vec<&WorkerPlan> {
        self.workers
            .iter()
            .filter(|w| w.observes.iter().any(|s| s == buffer))
            .collect()
    }

    /// Root buffers: the sinks of workers with neither sources nor observes (importers).
    pub fn root_buffers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for w in &self.workers {
            if w.is_importer() {
                for s in &w.sinks {
                    if !out.contains(&s.as_str()) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// The resolved setup as YAML (mimoCoRB2's shape, every worker's config merged in), as
    /// written into the run directory. Reading it back gives the same setup.
    pub fn to_yaml(&self) -> String {
        match serde_saphyr::to_string(self) {
            Ok(s) => s,
            // Serialising plain maps, lists and strings cannot fail; say so if it ever does.
            Err(e) => format!("# the resolved setup could not be written: {e}\n"),
        }
    }
}

fn finish(mut l: load::Loader, draft: load::Draft, catalog: &dyn Catalog) -> Checked {
    let places = Places {
        target_directory: l.place(draft.target_directory_at.unwrap_or(yaml::Loc::SETUP_START)),
        workers: draft
            .workers
            .iter()
            .map(|w| WorkerPlaces {
                worker: w.name.clone(),
                file: w.file.as_ref().map(|(_, at)| l.place(*at)),
                function: w.function.as_ref().map(|(_, at)| l.place(*at)),
                python: w.python_at.or(l.options_python_at).map(|at| l.place(at)),
            })
            .collect(),
    };
    let (setup, python_workers) = check::check(&mut l, draft, catalog);
    let mut diags = std::mem::take(&mut l.diags);
    diags.sort_by(|(a, da), (b, db)| (a, da.severity).cmp(&(b, db.severity)));
    diags.dedup_by(|(_, a), (_, b)| a == b);
    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .map(|(_, d)| d)
        .partition(Diagnostic::is_error);
    Checked {
        setup,
        errors,
        warnings,
        python_workers,
        files: l.files,
        places,
    }
}

struct DtypeYaml<'a>(&'a Dtype);

impl Serialize for DtypeYaml<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.fields().len()))?;
        for f in self.0.fields() {
            m.serialize_entry(&f.name, &f.ty.to_string())?;
        }
        m.end()
    }
}

struct BufferYaml<'a>(&'a BufferSetup);

impl Serialize for BufferYaml<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("slot_count", &b.slot_count)?;
        m.serialize_entry("data_length", &b.data_length)?;
        m.serialize_entry("data_dtype", &DtypeYaml(&b.dtype))?;
        let policy = match b.policy {
            Policy::Block => "block",
            Policy::Drop => "drop",
        };
        m.serialize_entry("policy", policy)?;
        m.end()
    }
}

struct WorkerYaml<'a>(&'a WorkerPlan);

impl Serialize for WorkerYaml<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("function", &w.function)?;
        if let Some(f) = &w.file {
            m.serialize_entry("file", &f.to_string_lossy())?;
        }
        m.serialize_entry("number_of_processes", &w.processes)?;
        m.serialize_entry("sources", &w.sources)?;
        m.serialize_entry("sinks", &w.sinks)?;
        m.serialize_entry("observes", &w.observes)?;
        m.serialize_entry("config", &w.config)?;
        if !w.cpu.is_empty() {
            m.serialize_entry("cpu", &w.cpu)?;
        }
        if let Some(p) = w.priority {
            m.serialize_entry("priority", &p)?;
        }
        m.serialize_entry("restart", w.restart.name())?;
        if let Some(p) = &w.python {
            m.serialize_entry("python", &p.to_string_lossy())?;
        }
        m.end()
    }
}

struct OptionsYaml<'a>(&'a RunOptions);

impl Serialize for OptionsYaml<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(n) = o.max_events {
            m.serialize_entry("max_events", &n)?;
        }
        if let Some(x) = o.max_seconds {
            m.serialize_entry("max_seconds", &x)?;
        }
        m.serialize_entry("stats_interval", &o.stats_interval)?;
        m.serialize_entry("huge_pages", o.huge_pages.name())?;
        if let Some(p) = &o.python {
            m.serialize_entry("python", &p.to_string_lossy())?;
        }
        if let Some(c) = &o.alert_command {
            m.serialize_entry("alert_command", c)?;
        }
        m.end()
    }
}

impl Serialize for Setup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("target_directory", &self.target_directory.to_string_lossy())?;
        m.serialize_entry("options", &OptionsYaml(&self.options))?;
        m.serialize_entry(
            "Buffers",
            &Ordered(&self.buffers, |b| (&b.name, BufferYaml(b))),
        )?;
        m.serialize_entry(
            "Workers",
            &Ordered(&self.workers, |w| (&w.name, WorkerYaml(w))),
        )?;
        m.end()
    }
}

/// A name → spec mapping in list order.
struct Ordered<'a, T, V: Serialize>(&'a [T], fn(&'a T) -> (&'a String, V));

impl<'a, T, V: Serialize> Serialize for Ordered<'a, T, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for item in self.0 {
            let (name, value) = (self.1)(item);
            m.serialize_entry(name, &value)?;
        }
        m.end()
    }
}
