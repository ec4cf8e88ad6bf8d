//! Reading a setup: the top-level sections, buffer and worker specs (inline or from their own
//! files), config layers and includes, with every key checked against the keys it may have.
//!
//! Guarantees: every problem is recorded as a positioned diagnostic and reading goes on, so
//! one pass reports all errors; nothing here panics on any input. Must never read a file
//! outside what the setup names (the setup, its includes), never write anything.

use super::diag::{unknown_name_hint, Diagnostic, DiagnosticKind, Severity};
use super::yaml::{self, Kind, Loc, Value};
use super::{HugePages, Place, Restart, RunOptions};
use crate::dtype::{Dtype, DtypeError, FieldType};
use crate::ring::Policy;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(crate) const TOP_KEYS: [&str; 5] = [
    "target_directory",
    "base_config",
    "Buffers",
    "Workers",
    "options",
];
pub(crate) const BUFFER_KEYS: [&str; 4] = ["slot_count", "data_length", "data_dtype", "policy"];
/// Buffer keys mimoCoRB2 setups carry that neither it (0.0.4 reads only slot_count,
/// data_length and data_dtype) nor we act on: a warning with the note, not an error.
const BUFFER_KEYS_IGNORED: [(&str, &str); 1] = [(
    "overwrite",
    "a ring never overwrites unread events: under `policy: drop` a full ring refuses the new event (counted as lost), under `block` the writer waits",
)];
pub(crate) const WORKER_KEYS: [&str; 11] = [
    "function",
    "file",
    "number_of_processes",
    "sources",
    "sinks",
    "observes",
    "config",
    "cpu",
    "priority",
    "restart",
    "python",
];
pub(crate) const OPTION_KEYS: [&str; 9] = [
    "max_events",
    "max_seconds",
    "stats_interval",
    "huge_pages",
    "disk_reserve_mb",
    "drain_stall_seconds",
    "worker_stall_seconds",
    "python",
    "alert_command",
];

/// A buffer as read, with the positions later checks point at.
pub(crate) struct BufferDraft {
    pub name: String,
    pub name_at: Loc,
    pub slot_count: usize,
    pub data_length: usize,
    pub dtype: Dtype,
    pub policy: Policy,
}

/// One config key after merging, with where its value was written.
pub(crate) struct ConfigItem {
    pub key: String,
    pub key_at: Loc,
    pub value: Value,
    /// True when the key came from `base_config` and no worker layer overrode it.
    pub from_base: bool,
}

/// A worker as read.
pub(crate) struct WorkerDraft {
    pub name: String,
    pub function: Option<(String, Loc)>,
    pub file: Option<(String, Loc)>,
    pub number_of_processes: usize,
    pub sources: Vec<(String, Loc)>,
    pub sinks: Vec<(String, Loc)>,
    pub observes: Vec<(String, Loc)>,
    /// Where `sources:`, `sinks:`, `observes:` were written (the worker's name if absent).
    pub side_at: [Loc; 3],
    pub config: Vec<ConfigItem>,
    pub config_at: Loc,
    /// False when a config file could not be read (required keys are then not checked).
    pub config_complete: bool,
    pub cpu: Vec<usize>,
    pub priority: Option<u8>,
    pub restart: Restart,
    /// The venv of a Python worker (`python:`), as written.
    pub python: Option<String>,
    /// Where its `python:` was written, if it was.
    pub python_at: Option<Loc>,
}

/// Everything read from a setup and its includes.
pub(crate) struct Draft {
    pub target_directory: PathBuf,
    /// Where `target_directory:` was written, if it was.
    pub target_directory_at: Option<Loc>,
    pub options: RunOptions,
    /// Every buffer name declared, valid or not (so a bad buffer is not also "missing").
    pub declared_buffers: Vec<String>,
    pub buffers: Vec<BufferDraft>,
    pub workers: Vec<WorkerDraft>,
}

impl Draft {
    /// Nothing read yet: runs go to `target` beside the setup, with the default options.
    pub fn empty(setup_dir: &Path) -> Draft {
        Draft {
            target_directory: setup_dir.join("target"),
            target_directory_at: None,
            options: RunOptions::default(),
            declared_buffers: Vec::new(),
            buffers: Vec::new(),
            workers: Vec::new(),
        }
    }
}

/// Reads a setup and collects diagnostics.
pub(crate) struct Loader {
    /// Files by id: 0 is the setup file.
    pub files: Vec<PathBuf>,
    pub setup_dir: PathBuf,
    pub online_cpus: usize,
    pub diags: Vec<(Loc, Diagnostic)>,
    alias_targets: Vec<Loc>,
    includes: HashMap<PathBuf, Option<Value>>,
    /// False when a base_config file could not be read.
    base_complete: bool,
    /// Cleared when an include of the config being read fails.
    layers_complete: bool,
    /// Where `options: python:` was written, if it was.
    pub options_python_at: Option<Loc>,
}

/// The most a setup file or an included file may hold.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads a whole regular file of at most [`MAX_FILE_BYTES`]. Anything else is refused
/// instead of waiting or filling memory: a FIFO (opening it would wait for a writer
/// forever), a device such as `/dev/zero`, a directory, a wrong, huge file.
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking; the
    // type is then taken from the open file itself, so it cannot change in between.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(std::io::Error::other(format!(
            "it is {what}, not a regular file: give the path of a YAML file"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "the file is larger than {} MiB, which no setup needs",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// `~` and `~/x` expanded with `$HOME`.
pub(crate) fn expand_home(p: &str) -> PathBuf {
    if p == "~" || p.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    PathBuf::from(p)
}

/// A path a setup names (`~` expanded), taken relative to the setup's directory unless it is
/// absolute.
pub(crate) fn beside_setup(setup_dir: &Path, p: &str) -> PathBuf {
    under(setup_dir, expand_home(p))
}

/// `p`, or `dir/p` when `p` is relative, with each `name/..` folded where `name` is a
/// directory and not a link (`make demo` said `run directory setups/../target/demo-runs/…`).
pub(crate) fn under(dir: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        fold_parents(&dir.join(p))
    }
}

/// `path` with `name/..` taken out where `name` is a directory on disk and not a symbolic
/// link: there both name the same place. Through a link, `..` is the parent of the link's
/// target, so those stay, as do names that do not exist (yet).
fn fold_parents(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        let folds = c == Component::ParentDir
            && matches!(out.components().next_back(), Some(Component::Normal(_)))
            && std::fs::symlink_metadata(&out).is_ok_and(|m| m.is_dir());
        if folds {
            out.pop();
        } else {
            out.push(c);
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

impl Loader {
    pub fn new(file: &Path, online_cpus: usize) -> Loader {
        let setup_dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Loader {
            files: vec![file.to_path_buf()],
            setup_dir,
            online_cpus,
            diags: Vec::new(),
            alias_targets: Vec::new(),
            includes: HashMap::new(),
            base_complete: true,
            layers_complete: true,
            options_python_at: None,
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        kind: DiagnosticKind,
        at: Loc,
        message: String,
        hint: Option<String>,
    ) {
        let d = self.place(at).diagnostic(severity, kind, message, hint);
        self.diags.push((at, d));
    }

    /// The file, line and column `at` stands for.
    pub fn place(&self, at: Loc) -> Place {
        Place {
            file: self
                .files
                .get(at.file as usize)
                .cloned()
                .unwrap_or_default(),
            line: at.line.max(1),
            column: at.column.max(1),
        }
    }

    /// Records an error.
    pub fn error(&mut self, at: Loc, message: impl Into<String>, hint: Option<String>) {
        self.push(
            Severity::Error,
            DiagnosticKind::General,
            at,
            message.into(),
            hint,
        );
    }

    /// The text of mapping key `k`; a key that is not text is an error `{problem}, found …`.
    fn key_text(&mut self, k: &Value, problem: impl std::fmt::Display) -> Option<String> {
        let text = k.key_text();
        if text.is_none() {
            self.error(k.at, format!("{problem}, found {}", k.describe()), None);
        }
        text
    }

    /// Errors recorded so far.
    pub fn error_count(&self) -> usize {
        self.diags.iter().filter(|(_, d)| d.is_error()).count()
    }

    /// Records a warning.
    pub fn warn(&mut self, at: Loc, message: impl Into<String>, hint: Option<String>) {
        self.push(
            Severity::Warning,
            DiagnosticKind::General,
            at,
            message.into(),
            hint,
        );
    }

    /// What can be known of `options.alert_command` now: `sh` must parse it (an error), and
    /// each program it starts should exist here (a warning: see `setup::shell`). Whether it
    /// parses: one that does not is not kept, so a rejected setup never runs it.
    fn alert_command(&mut self, at: Loc, command: &str) -> bool {
        if let Some(why) = super::shell::syntax_error(command) {
            self.error(
                at,
                format!("options.alert_command: sh cannot parse it: {why}"),
                Some("it is run as `sh -c COMMAND`; try it in a shell with the DAQ_ALERT_* variables set".into()),
            );
            return false;
        }
        for program in super::shell::missing_programs(command) {
            self.warn(
                at,
                format!(
                    "options.alert_command: `{program}` is neither a program on PATH nor a shell \
                     builtin here: every alert would fail"
                ),
                Some(format!(
                    "install it{}, or give its full path (a service's PATH may differ: \
                     `systemctl show-environment`)",
                    match program.as_str() {
                        "mail" | "mailx" => " (Debian: mailutils, or bsd-mailx)",
                        "curl" => " (Debian: curl)",
                        "jq" => " (Debian: jq)",
                        _ => "",
                    }
                )),
            );
        }
        true
    }

    /// Records a warning or a note of a kind callers treat apart.
    pub fn diagnose(
        &mut self,
        severity: Severity,
        kind: DiagnosticKind,
        at: Loc,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(severity, kind, at, message.into(), hint);
    }

    /// Parses the text of file `id`; a syntax error is recorded.
    fn parse(&mut self, bytes: &[u8], id: u32) -> Option<Value> {
        match yaml::parse(bytes, id) {
            Ok(p) => {
                self.alias_targets.extend(p.alias_targets);
                Some(p.root)
            }
            Err(e) => {
                let at = Loc {
                    file: id,
                    line: e.line,
                    column: e.column,
                };
                self.error(at, e.message, None);
                None
            }
        }
    }

    /// Reads the file a string value names (relative to the setup's directory); `what` says
    /// what it should hold. Each file is read once.
    fn include(&mut self, path: &str, at: Loc, what: &str) -> Option<Value> {
        let full = beside_setup(&self.setup_dir, path);
        if let Some(done) = self.includes.get(&full) {
            return done.clone();
        }
        let result = match read_limited(&full) {
            Ok(bytes) => {
                let id = self.files.len() as u32;
                self.files.push(full.clone());
                self.parse(&bytes, id)
            }
            Err(e) => {
                self.error(
                    at,
                    format!(
                        "cannot read the {what} file '{path}' ({}): {e}",
                        full.display()
                    ),
                    Some("paths are relative to the directory of the setup file".into()),
                );
                None
            }
        };
        self.includes.insert(full, result.clone());
        result
    }

    /// Known entries of a mapping; unknown keys are errors with a "did you mean".
    fn entries<'v>(
        &mut self,
        v: &'v Value,
        context: &str,
        valid: &[&str],
    ) -> Vec<(String, &'v Value, &'v Value)> {
        self.entries_noting(v, context, valid, &[])
    }

    /// [`Loader::entries`], with keys in `ignored` (key, note) warned about and left out.
    fn entries_noting<'v>(
        &mut self,
        v: &'v Value,
        context: &str,
        valid: &[&str],
        ignored: &[(&str, &str)],
    ) -> Vec<(String, &'v Value, &'v Value)> {
        let Kind::Map(map) = &v.kind else {
            self.error(
                v.at,
                format!(
                    "{context}: expected a mapping with keys {}, found {}",
                    valid.join(", "),
                    v.describe()
                ),
                None,
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, val) in map {
            let Some(key) = self.key_text(k, format_args!("{context}: a key must be a name"))
            else {
                continue;
            };
            if valid.contains(&key.as_str()) {
                out.push((key, k, val));
            } else if let Some((_, note)) = ignored.iter().find(|(name, _)| *name == key) {
                self.warn(
                    k.at,
                    format!("{context}: `{key}:` is ignored (mimoCoRB2 ignores it too)"),
                    Some((*note).to_string()),
                );
            } else {
                self.error(
                    k.at,
                    format!("{context}: unknown key `{key}`"),
                    Some(unknown_name_hint(&key, "keys", valid)),
                );
            }
        }
        out
    }

    /// The whole number `v`, or an error saying it must be one of at least `least` (which
    /// the caller checks; the message said "≥ 0" of a count that must be 1 or more).
    fn uint(&mut self, v: &Value, what: &str, least: u64) -> Option<u64> {
        match v.kind {
            Kind::UInt(u) => Some(u),
            Kind::Int(i) if i >= 0 => Some(i as u64),
            _ => {
                self.error(
                    v.at,
                    format!(
                        "{what}: expected a whole number ≥ {least}, found {}",
                        v.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    /// The number `v` if it is at least `min`; else the error `what: problem`.
    fn at_least(&mut self, v: &Value, what: &str, min: f64, problem: &str) -> Option<f64> {
        let x = self.number(v, what)?;
        if x < min {
            self.error(v.at, format!("{what}: {problem}"), None);
            return None;
        }
        Some(x)
    }

    fn number(&mut self, v: &Value, what: &str) -> Option<f64> {
        match v.kind {
            Kind::UInt(u) => Some(u as f64),
            Kind::Int(i) => Some(i as f64),
            Kind::Float(x) if x.is_finite() => Some(x),
            _ => {
                self.error(
                    v.at,
                    format!("{what}: expected a number, found {}", v.describe()),
                    None,
                );
                None
            }
        }
    }

    fn text<'v>(&mut self, v: &'v Value, what: &str) -> Option<&'v str> {
        match &v.kind {
            Kind::Str(s) => Some(s),
            _ => {
                self.error(
                    v.at,
                    format!("{what}: expected text, found {}", v.describe()),
                    None,
                );
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, v: &Value, what: &str, options: &[(&str, T)]) -> Option<T> {
        let s = self.text(v, what)?;
        if let Some((_, t)) = options.iter().find(|(n, _)| *n == s) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.error(
            v.at,
            format!("{what}: '{s}' is not one of {}", names.join(", ")),
            Some(unknown_name_hint(s, "values", &names)),
        );
        None
    }

    /// A list of names (`sources`, `sinks`, `observes`); nothing (null) is an empty list.
    fn names(&mut self, v: &Value, what: &str) -> Vec<(String, Loc)> {
        match &v.kind {
            Kind::Null => Vec::new(),
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| self.text(i, what).map(|s| (s.to_string(), i.at)))
                .collect(),
            _ => {
                self.error(
                    v.at,
                    format!(
                        "{what}: expected a list of buffer names such as [raw], found {}",
                        v.describe()
                    ),
                    None,
                );
                Vec::new()
            }
        }
    }

    /// Reads the whole setup from the root of file 0.
    pub fn read(&mut self, bytes: &[u8]) -> Draft {
        let mut draft = Draft::empty(&self.setup_dir);
        let Some(root) = self.parse(bytes, 0) else {
            return draft;
        };
        let top = Loc::SETUP_START;
        let Kind::Map(map) = &root.kind else {
            self.error(
                root.at,
                format!(
                    "expected a mapping with `Buffers:` and `Workers:` at the top of the setup, found {}",
                    root.describe()
                ),
                None,
            );
            return draft;
        };
        let mut base_config: Vec<ConfigItem> = Vec::new();
        let mut buffers_node = None;
        let mut workers_node = None;
        let top_lines: Vec<u64> = map.iter().map(|(k, _)| k.at.line).collect();
        for (i, (k, v)) in map.iter().enumerate() {
            let Some(key) = self.key_text(k, "a top-level key must be a name") else {
                continue;
            };
            match key.as_str() {
                "target_directory" => {
                    if let Some(s) = self.text(v, "target_directory") {
                        draft.target_directory = beside_setup(&self.setup_dir, s);
                        draft.target_directory_at = Some(v.at);
                    }
                }
                "base_config" => {
                    base_config = self.config_layers(v, "base_config", true);
                    self.base_complete = self.layers_complete;
                }
                "Buffers" => buffers_node = Some((k, v)),
                "Workers" => workers_node = Some((k, v)),
                "options" => draft.options = self.options(v),
                "Options" => self.warn(
                    k.at,
                    "`Options:` is a mimoCoRB2 section (output_directory, debug_workers) and is ignored here",
                    Some("run limits and run settings go under `options:` (max_events, max_seconds, stats_interval, huge_pages, disk_reserve_mb, drain_stall_seconds, worker_stall_seconds, alert_command); every run writes to target_directory/run_<UTC time>/".into()),
                ),
                "overwrite" => self.warn(
                    k.at,
                    "`overwrite:` is ignored (mimoCoRB2 ignores it too)",
                    Some("every run gets its own new run directory, nothing is overwritten".into()),
                ),
                _ => {
                    // A block that only serves as an anchor for aliases elsewhere (a
                    // template, as mimoCoRB2 users write them) is accepted silently.
                    let end = top_lines.get(i + 1).copied().unwrap_or(u64::MAX);
                    let used = self
                        .alias_targets
                        .iter()
                        .any(|t| t.file == 0 && t.line >= k.at.line && t.line < end);
                    if !used {
                        self.error(
                            k.at,
                            format!("unknown top-level key `{key}`"),
                            Some(format!(
                                "{} (a block kept only as an anchor template is accepted when an alias uses it)",
                                unknown_name_hint(&key, "keys", &TOP_KEYS)
                            )),
                        );
                    }
                }
            }
        }
        match buffers_node {
            Some((_, v)) => self.buffers(v, &mut draft),
            None => self.error(
                top,
                "the setup has no `Buffers:` section",
                Some(
                    "add `Buffers:` with at least one buffer (slot_count, data_length, data_dtype)"
                        .into(),
                ),
            ),
        }
        match workers_node {
            Some((_, v)) => self.workers(v, &base_config, &mut draft),
            None => self.error(
                top,
                "the setup has no `Workers:` section",
                Some("add `Workers:` with at least one worker (function, sources, sinks)".into()),
            ),
        }
        draft
    }

    fn options(&mut self, v: &Value) -> RunOptions {
        let mut o = RunOptions::default();
        if matches!(v.kind, Kind::Null) {
            return o;
        }
        for (key, _, val) in self.entries(v, "options", &OPTION_KEYS) {
            match key.as_str() {
                "max_events" => {
                    if !matches!(val.kind, Kind::Null) {
                        match self.uint(val, "options.max_events", 1) {
                            Some(0) => self.error(val.at, "options.max_events: must be at least 1 (leave it out for no limit)", None),
                            Some(n) => o.max_events = Some(n),
                            None => {}
                        }
                    }
                }
                "max_seconds" => {
                    if !matches!(val.kind, Kind::Null) {
                        match self.number(val, "options.max_seconds") {
                            Some(x) if x > 0.0 => o.max_seconds = Some(x),
                            Some(_) => self.error(val.at, "options.max_seconds: must be more than 0 (leave it out for no limit)", None),
                            None => {}
                        }
                    }
                }
                "alert_command" => {
                    if !matches!(val.kind, Kind::Null) {
                        match self.text(val, "options.alert_command") {
                            Some(c) if c.trim().is_empty() => self.error(
                                val.at,
                                "options.alert_command: is empty (leave it out for no alerts)",
                                None,
                            ),
                            Some(c) => {
                                o.alert_command =
                                    self.alert_command(val.at, c).then(|| c.to_string());
                            }
                            None => {}
                        }
                    }
                }
                "python" => {
                    if !matches!(val.kind, Kind::Null) {
                        self.options_python_at = Some(val.at);
                        o.python = self
                            .text(val, "options.python")
                            .map(super::load::expand_home);
                    }
                }
                "stats_interval" => {
                    // At most an hour: the dashboard, the page, the service's status and a
                    // recovered run's length are only as fresh as the last line.
                    let why = "must be at least 0.01 seconds";
                    if let Some(x) = self.at_least(val, "options.stats_interval", 0.01, why) {
                        if x > 3600.0 {
                            let why = "must be at most 3600 seconds (an hour): the dashboard, \
                                       the page and the service's status are only as fresh as \
                                       the last stats line";
                            self.error(val.at, format!("options.stats_interval: {why}"), None);
                        } else {
                            o.stats_interval = x;
                        }
                    }
                }
                "drain_stall_seconds" => {
                    // The drain is looked at once a second: less would act as a second.
                    let why = "must be at least 1 second (the drain is looked at once a second)";
                    if let Some(x) = self.at_least(val, "options.drain_stall_seconds", 1.0, why) {
                        o.drain_stall_seconds = x;
                    }
                }
                "worker_stall_seconds" => {
                    // The watch looks once a second and a device importer's heartbeat comes
                    // once a second: a shorter stall would be a false alarm.
                    let why = "must be at least 3 seconds (the watch looks once a second), or 0 \
                               for never";
                    match self.at_least(val, "options.worker_stall_seconds", 0.0, why) {
                        Some(x) if x > 0.0 && x < 3.0 => {
                            self.error(val.at, format!("options.worker_stall_seconds: {why}"), None)
                        }
                        Some(x) => o.worker_stall_seconds = x,
                        None => {}
                    }
                }
                "disk_reserve_mb" => {
                    let why = "must be 0 or more (MB kept free on the run's disk)";
                    if let Some(x) = self.at_least(val, "options.disk_reserve_mb", 0.0, why) {
                        o.disk_reserve_mb = x;
                    }
                }
                // YAML 1.1 readers take a bare `off`/`on` for false/true.
                _ if matches!(val.kind, Kind::Bool(false)) => o.huge_pages = HugePages::Off,
                _ if matches!(val.kind, Kind::Bool(true)) => o.huge_pages = HugePages::Auto,
                _ => {
                    if let Some(h) = self.choice(
                        val,
                        "options.huge_pages",
                        &[("auto", HugePages::Auto), ("off", HugePages::Off)],
                    ) {
                        o.huge_pages = h;
                    }
                }
            }
        }
        o
    }

    /// A buffer or worker spec given inline or as the path of a YAML file holding it.
    fn spec_node(&mut self, v: &Value, what: &str) -> Option<Value> {
        match &v.kind {
            Kind::Str(path) => self.include(path, v.at, what),
            _ => Some(v.clone()),
        }
    }

    /// Calls `each` with the name, the name's position and the spec of every entry of the
    /// section `v` (`Buffers`, `Workers`): a mapping of `what` names to `what` specs, not
    /// empty. A section or a name that is not one is reported and skipped; names are checked.
    fn each_named(
        &mut self,
        v: &Value,
        section: &str,
        what: &str,
        mut each: impl FnMut(&mut Self, String, Loc, &Value),
    ) {
        let Kind::Map(map) = &v.kind else {
            self.error(
                v.at,
                format!(
                    "{section}: expected a mapping of {what} names to {what} specs, found {}",
                    v.describe()
                ),
                None,
            );
            return;
        };
        if map.is_empty() {
            self.error(v.at, format!("{section}: no {what} is declared"), None);
        }
        for (k, spec) in map {
            let Some(name) = self.key_text(k, format_args!("a {what} name must be a name")) else {
                continue;
            };
            self.check_name(&name, k.at, what);
            each(self, name, k.at, spec);
        }
    }

    fn buffers(&mut self, v: &Value, draft: &mut Draft) {
        self.each_named(v, "Buffers", "buffer", |s, name, at, spec| {
            draft.declared_buffers.push(name.clone());
            let Some(spec) = s.spec_node(spec, "buffer spec") else {
                return;
            };
            if let Some(b) = s.buffer(&name, at, &spec) {
                draft.buffers.push(b);
            }
        });
    }

    fn check_name(&mut self, name: &str, at: Loc, what: &str) {
        if name.is_empty()
            || name.len() > 64
            || name
                .chars()
                .any(|c| c == '/' || c.is_control() || c.is_whitespace())
        {
            self.error(
                at,
                format!("{what} name '{name}' cannot be used: it names shared-memory files and processes"),
                Some("use 1 to 64 characters without '/', spaces or control characters, e.g. raw_pulses".into()),
            );
        }
    }

    fn buffer(&mut self, name: &str, name_at: Loc, spec: &Value) -> Option<BufferDraft> {
        let ctx = format!("buffer '{name}'");
        let entries = self.entries_noting(spec, &ctx, &BUFFER_KEYS, &BUFFER_KEYS_IGNORED);
        let (mut slots, mut length, mut dtype, mut policy) =
            (None, None, None, Some(Policy::Block));
        let mut ok = matches!(spec.kind, Kind::Map(_));
        for (key, _, val) in &entries {
            match key.as_str() {
                "slot_count" => {
                    if let Some(n) = self.uint(val, &format!("{ctx}, slot_count"), 1) {
                        if (1..=1 << 30).contains(&n) {
                            slots = usize::try_from(n).ok();
                        } else {
                            self.error(
                                val.at,
                                format!("{ctx}: slot_count {n} is out of range: slot_count must be at least 1 (events in flight) and at most 2^30"),
                                Some("any count works; the ring rounds up to a power of two inside but holds at most this many events".into()),
                            );
                            ok = false;
                        }
                    } else {
                        ok = false;
                    }
                }
                "data_length" => match self.uint(val, &format!("{ctx}, data_length"), 1) {
                    Some(0) => {
                        self.error(
                            val.at,
                            format!("{ctx}: data_length must be at least 1 (records per event)"),
                            None,
                        );
                        ok = false;
                    }
                    Some(n) => length = usize::try_from(n).ok(),
                    None => ok = false,
                },
                "data_dtype" => {
                    dtype = self.dtype(val, &ctx);
                    ok &= dtype.is_some();
                }
                _ => {
                    policy = self.choice(
                        val,
                        &format!("{ctx}, policy"),
                        &[("block", Policy::Block), ("drop", Policy::Drop)],
                    );
                    ok &= policy.is_some();
                }
            }
        }
        if ok {
            let present: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
            for required in ["slot_count", "data_length", "data_dtype"] {
                if !present.contains(&required) {
                    self.error(
                        spec.at,
                        format!("{ctx} has no `{required}`"),
                        Some("a buffer needs slot_count, data_length and data_dtype".into()),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        Some(BufferDraft {
            name: name.to_string(),
            name_at,
            slot_count: slots?,
            data_length: length?,
            dtype: dtype?,
            policy: policy?,
        })
    }

    fn dtype(&mut self, v: &Value, ctx: &str) -> Option<Dtype> {
        let Kind::Map(fields) = &v.kind else {
            self.error(v.at, format!("{ctx}, data_dtype: expected a mapping of field names to numpy types such as {{ch0: float32}}, found {}", v.describe()), None);
            return None;
        };
        if fields.is_empty() {
            self.error(
                v.at,
                format!("{ctx}, data_dtype: {}", DtypeError::Empty),
                None,
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (k, t) in fields {
            let Some(name) = self.key_text(
                k,
                format_args!("{ctx}, data_dtype: a field name must be text"),
            ) else {
                ok = false;
                continue;
            };
            let Some(tname) = self.text(t, &format!("{ctx}, field '{name}'")) else {
                ok = false;
                continue;
            };
            match FieldType::parse(tname) {
                Ok(s) => {
                    // Check the name alone, so the error points at this field.
                    if let Err(e) = Dtype::new([(name.as_str(), s)]) {
                        self.error(k.at, format!("{ctx}, data_dtype: {e}"), None);
                        ok = false;
                    }
                    out.push((name, s));
                }
                Err(e) => {
                    self.error(t.at, format!("{ctx}, field '{name}': {e}"), None);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match Dtype::new(out) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(v.at, format!("{ctx}, data_dtype: {e}"), None);
                None
            }
        }
    }

    /// The layers of a `config` or `base_config`: a mapping, a file path, or a list of both,
    /// merged in order (later keys win).
    fn config_layers(&mut self, v: &Value, what: &str, from_base: bool) -> Vec<ConfigItem> {
        let mut out: Vec<ConfigItem> = Vec::new();
        self.layers_complete = true;
        let layer = |this: &mut Loader, node: &Value, out: &mut Vec<ConfigItem>| {
            let node = match &node.kind {
                Kind::Str(path) => match this.include(path, node.at, what) {
                    Some(n) => n,
                    None => {
                        this.layers_complete = false;
                        return;
                    }
                },
                _ => node.clone(),
            };
            match &node.kind {
                Kind::Null => {}
                Kind::Map(entries) => {
                    for (k, val) in entries {
                        let Some(key) = this.key_text(k, format_args!("{what}: a key must be a name")) else {
                            continue;
                        };
                        let item = ConfigItem { key, key_at: k.at, value: val.clone(), from_base };
                        match out.iter_mut().find(|i| i.key == item.key) {
                            Some(old) => *old = item,
                            None => out.push(item),
                        }
                    }
                }
                _ => this.error(node.at, format!("{what}: expected a mapping of keys to values, found {}", node.describe()), Some("config is a mapping, the path of a YAML file holding one, or a list of both".into())),
            }
        };
        match &v.kind {
            Kind::Seq(items) => {
                for item in items {
                    if matches!(item.kind, Kind::Seq(_)) {
                        self.error(
                            item.at,
                            format!("{what}: a list inside the list of config layers"),
                            Some("list mappings and file paths, merged in order".into()),
                        );
                    } else {
                        layer(self, item, &mut out);
                    }
                }
            }
            _ => layer(self, v, &mut out),
        }
        out
    }

    fn workers(&mut self, v: &Value, base: &[ConfigItem], draft: &mut Draft) {
        self.each_named(v, "Workers", "worker", |s, name, at, spec| {
            let Some(spec) = s.spec_node(spec, "worker spec") else {
                return;
            };
            if let Some(w) = s.worker(&name, at, &spec, base) {
                draft.workers.push(w);
            }
        });
    }

    fn worker(
        &mut self,
        name: &str,
        name_at: Loc,
        spec: &Value,
        base: &[ConfigItem],
    ) -> Option<WorkerDraft> {
        let ctx = format!("worker '{name}'");
        if !matches!(spec.kind, Kind::Map(_)) {
            self.entries(spec, &ctx, &WORKER_KEYS);
            return None;
        }
        let mut w = WorkerDraft {
            name: name.to_string(),
            function: None,
            file: None,
            number_of_processes: 1,
            sources: Vec::new(),
            sinks: Vec::new(),
            observes: Vec::new(),
            side_at: [name_at; 3],
            config: base
                .iter()
                .map(|i| ConfigItem {
                    key: i.key.clone(),
                    key_at: i.key_at,
                    value: i.value.clone(),
                    from_base: true,
                })
                .collect(),
            config_at: name_at,
            config_complete: self.base_complete,
            cpu: Vec::new(),
            priority: None,
            restart: Restart::Never,
            python: None,
            python_at: None,
        };
        for (key, k, val) in self.entries(spec, &ctx, &WORKER_KEYS) {
            let what = format!("{ctx}, {key}");
            match key.as_str() {
                "function" => {
                    if let Some(s) = self.text(val, &what) {
                        w.function = Some((s.to_string(), val.at));
                    }
                }
                "file" => match &val.kind {
                    Kind::Null => {}
                    Kind::Str(s) if s.is_empty() => {}
                    _ => {
                        if let Some(s) = self.text(val, &what) {
                            w.file = Some((s.to_string(), val.at));
                        }
                    }
                },
                "number_of_processes" => match self.uint(val, &what, 1) {
                    Some(n) if (1..=256).contains(&n) => w.number_of_processes = n as usize,
                    Some(n) => self.error(
                        val.at,
                        format!("{what}: {n} is not between 1 and 256"),
                        None,
                    ),
                    None => {}
                },
                "sources" => {
                    w.sources = self.names(val, &what);
                    w.side_at[0] = k.at;
                }
                "sinks" => {
                    w.sinks = self.names(val, &what);
                    w.side_at[1] = k.at;
                }
                "observes" => {
                    w.observes = self.names(val, &what);
                    w.side_at[2] = k.at;
                }
                "config" => {
                    w.config_at = k.at;
                    let layers = self.config_layers(val, &what, false);
                    w.config_complete &= self.layers_complete;
                    for item in layers {
                        match w.config.iter_mut().find(|i| i.key == item.key) {
                            Some(old) => *old = item,
                            None => w.config.push(item),
                        }
                    }
                }
                "cpu" => w.cpu = self.cpus(val, &what),
                "python" => {
                    if !matches!(val.kind, Kind::Null) {
                        w.python_at = Some(val.at);
                        w.python = self.text(val, &what).map(str::to_string);
                    }
                }
                "priority" => {
                    if !matches!(val.kind, Kind::Null) {
                        match self.uint(val, &what, 1) {
                            Some(p) if (1..=99).contains(&p) => w.priority = Some(p as u8),
                            Some(p) => self.error(val.at, format!("{what}: {p} is not a SCHED_FIFO priority (1 to 99)"), Some("1 is the lowest real-time priority, 99 the highest; leave it out for normal scheduling".into())),
                            None => {}
                        }
                    }
                }
                _ => {
                    if let Some(r) = self.choice(
                        val,
                        &what,
                        &[
                            ("never", Restart::Never),
                            ("on-failure", Restart::OnFailure),
                        ],
                    ) {
                        w.restart = r;
                    }
                }
            }
        }
        if w.function.is_none() {
            self.error(name_at, format!("{ctx} has no `function:`"), Some("name a built-in function (e.g. `function: filter.threshold`), or a user library with `file:` and `function:`".into()));
        }
        Some(w)
    }

    fn cpus(&mut self, v: &Value, what: &str) -> Vec<usize> {
        let items: Vec<&Value> = match &v.kind {
            Kind::Null => return Vec::new(),
            Kind::Seq(items) => items.iter().collect(),
            Kind::Int(_) | Kind::UInt(_) => vec![v],
            _ => {
                self.error(
                    v.at,
                    format!(
                        "{what}: expected a list of core numbers such as [1] or [2, 3], found {}",
                        v.describe()
                    ),
                    None,
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for i in items {
            if let Some(c) = self.uint(i, what, 0) {
                if c as usize >= self.online_cpus || c > u32::MAX as u64 {
                    self.error(
                        i.at,
                        format!("{what}: core {c} does not exist: this machine has {} online CPUs (0 to {})", self.online_cpus, self.online_cpus.saturating_sub(1)),
                        None,
                    );
                } else {
                    out.push(c as usize);
                }
            }
        }
        out
    }
}

/// A config value as JSON (what `worker::Config` holds); non-finite numbers and non-name keys
/// are refused with the position.
pub(crate) fn to_json(v: &Value) -> Result<serde_json::Value, (Loc, String)> {
    use serde_json::Value as J;
    Ok(match &v.kind {
        Kind::Null => J::Null,
        Kind::Bool(b) => J::Bool(*b),
        Kind::Int(i) => J::from(*i),
        Kind::UInt(u) => J::from(*u),
        Kind::Float(x) => match serde_json::Number::from_f64(*x) {
            Some(n) => J::Number(n),
            None => return Err((v.at, format!("{x} is not a finite number"))),
        },
        Kind::Str(s) => J::String(s.clone()),
        Kind::Seq(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Kind::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, val) in entries {
                let key = k.key_text().ok_or_else(|| {
                    (
                        k.at,
                        format!("a key must be a name, found {}", k.describe()),
                    )
                })?;
                m.insert(key, to_json(val)?);
            }
            J::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dir/..` is folded only where `dir` is a real directory: through a link or a name not
    /// there yet, `..` is left for the system to resolve.
    #[test]
    fn parents_are_folded_only_through_real_directories() {
        let base = crate::fsio::test_dir("fold-parents");
        std::fs::create_dir_all(base.join("setups/sub")).unwrap();
        std::os::unix::fs::symlink(base.join("setups/sub"), base.join("link")).unwrap();
        let folded = |p: &str| under(&base.join("setups"), PathBuf::from(p));
        assert_eq!(folded("../target/runs"), base.join("target/runs"));
        assert_eq!(folded("sub/../../x"), base.join("x"));
        assert_eq!(folded("../link/../y"), base.join("link/../y"));
        assert_eq!(folded("new/../z"), base.join("setups/new/../z"));
        assert_eq!(
            under(Path::new("."), "runs".into()),
            PathBuf::from("./runs")
        );
        assert_eq!(
            under(Path::new("."), "/abs/../x".into()),
            PathBuf::from("/abs/../x")
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
