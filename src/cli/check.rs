//! `daq-engine check SETUP`, and the loading of a setup and its user libraries that a run
//! shares with it.

use super::exit;
use crate::setup::{self, Setup};
use crate::worker::Registry;
use std::path::Path;

/// The registry as a run with `--simulate` sees it: each function with a `simulate` key is
/// checked as simulated (no port needs to exist).
struct Simulated<'a>(&'a Registry);

impl crate::worker::Catalog for Simulated<'_> {
    fn function(&self, name: &str) -> Option<&crate::worker::FunctionSpec> {
        self.0.function(name)
    }

    fn names(&self) -> Vec<&'static str> {
        self.0.names()
    }

    fn check_worker(
        &self,
        function: &str,
        ctx: &crate::worker::BuildContext,
    ) -> Result<(), crate::worker::WorkerError> {
        if self
            .function(function)
            .is_some_and(|f| f.key("simulate").is_some())
        {
            let mut ctx = ctx.clone();
            ctx.config.values.insert("simulate".into(), true.into());
            return self.0.check(function, &ctx);
        }
        self.0.check(function, ctx)
    }

    fn ignored_keys(&self, function: &str) -> &[(&'static str, &'static str)] {
        self.0.ignored_keys(function)
    }

    fn note(&self, function: &str) -> Option<&'static str> {
        self.0.note(function)
    }
}

pub(super) fn load(path: &Path, registry: &Registry, simulate: bool) -> Result<Setup, Rejected> {
    let simulated = Simulated(registry);
    let catalog: &dyn crate::worker::Catalog = if simulate { &simulated } else { registry };
    let checked = Setup::check_file(path, catalog, setup::online_cpus());
    let alert_command = checked.setup.options.alert_command.clone();
    let target_directory = checked.setup.target_directory.clone();
    match checked.into_result() {
        Ok((s, warnings)) => {
            // The broadcast note is for setups carried over from mimoCoRB2; `check` shows it,
            // a run does not repeat it every time.
            for w in warnings
                .iter()
                .filter(|w| w.kind != setup::DiagnosticKind::Broadcast)
            {
                eprintln!("{w}");
            }
            Ok(s)
        }
        Err(e) => {
            eprintln!("{e}");
            let errors = e
                .diagnostics
                .iter()
                .filter(|d| d.severity == setup::Severity::Error)
                .map(|d| d.to_string().lines().next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n");
            Err(Rejected {
                alert_command,
                target_directory,
                errors,
            })
        }
    }
}

/// A setup [`load`] refused (already said on stderr), with what its refusal's alert needs
/// of what could be read of it.
pub(super) struct Rejected {
    /// `options.alert_command` (kept only when `sh` parses it).
    pub alert_command: Option<String>,
    /// `target_directory`.
    pub target_directory: std::path::PathBuf,
    /// Its errors, one line each.
    pub errors: String,
}

/// Longest a user library may take to load in the probe process.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Loads `library` in a child process first (`daq-engine __plugin-probe`), so that one that
/// crashes or hangs while loading costs that process, not this one.
fn probe_library(library: &Path) -> Result<(), Failed> {
    probe(library, Probing::Library, &["__plugin-probe", "--"], &[])
}

/// Imports the Python worker file `file` in a child process (`daq-engine __python-probe`),
/// as a worker process would, and checks that it has `function` taking one argument. What
/// it found is about a place in the Python file, or the setup's `function:`, or neither
/// (see [`crate::python::PROBE_FAILED_IN_FILE`]).
fn probe_python(file: &Path, function: &str, venv: Option<&Path>) -> Result<(), Failed> {
    let mut tail = vec![std::ffi::OsStr::new(function)];
    tail.extend(venv.map(Path::as_os_str));
    probe(
        file,
        Probing::Python(function),
        &["__python-probe", "--"],
        &tail,
    )
}

/// What a probe process loads.
#[derive(Clone, Copy)]
enum Probing<'a> {
    /// A user library (`__plugin-probe`).
    Library,
    /// A Python worker file, for this function (`__python-probe`). It succeeded only when it
    /// said [`crate::python::PROBE_FOUND`]: a file whose import ends the process with status
    /// 0 (`os._exit(0)`) was taken as good, and its run "finished" with no event.
    Python(&'a str),
}

/// A probe process that failed: how it exited, and what it printed (or why it did not end).
struct Failed {
    /// Its exit status; `None` when it crashed, did not finish or could not start.
    code: Option<i32>,
    /// What it said.
    text: String,
}

/// Runs `daq-engine ARGS FILE TAIL`, which loads `library` as `kind` says, and returns
/// what it printed when it failed.
fn probe(
    library: &Path,
    kind: Probing<'_>,
    args: &[&str],
    tail: &[&std::ffi::OsStr],
) -> Result<(), Failed> {
    let failed = |text: String| Failed { code: None, text };
    let exe = std::env::current_exe()
        .map_err(|e| failed(format!("cannot find daq-engine itself: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .arg(library)
        .args(tail)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start the library probe: {e}")))?;
    // Read as it comes: a file that writes more than a pipe holds while it loads (a
    // package's warnings) would otherwise wait on the full pipe until the limit.
    fn read_all(
        from: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut from) = from {
                let _ = from.read_to_string(&mut text);
            }
            text
        })
    }
    let said = read_all(child.stderr.take());
    let printed = read_all(child.stdout.take());
    let t0 = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t0.elapsed() < PROBE_LIMIT => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "{}: loading it did not finish within {} s",
                    library.display(),
                    PROBE_LIMIT.as_secs()
                )));
            }
        }
    };
    let text = said.join().unwrap_or_default();
    let printed = printed.join().unwrap_or_default();
    let how = crate::engine::supervisor::describe(status);
    match kind {
        Probing::Library if status.success() => return Ok(()),
        Probing::Python(_)
            if status.success() && printed.lines().any(|l| l == crate::python::PROBE_FOUND) =>
        {
            return Ok(())
        }
        _ => {}
    }
    Err(match (status.code(), kind) {
        (Some(code), _) if code != 0 && !text.trim().is_empty() => Failed {
            code: Some(code),
            text: text.trim().to_string(),
        },
        (_, Probing::Library) => failed(format!(
            "{}: the library crashed while loading ({how})",
            library.display()
        )),
        (_, Probing::Python(function)) => {
            let said = match text.trim() {
                "" => String::new(),
                t => format!("; it printed:\n{t}"),
            };
            failed(format!(
                "{}: the process ended while Python imported it ({how}), before daq-engine \
                 could look for function '{function}' in it: a worker file must not end its \
                 process when imported (`os._exit`, a crash in a package it imports){said}",
                library.display()
            ))
        }
    })
}

/// What a problem found beyond the setup file is about: the place `check` points at.
enum About {
    /// The setup's `target_directory`.
    TargetDirectory,
    /// The `file:` of these workers (a library or Python file that does not load).
    File(Vec<String>),
    /// The `function:` of these workers (not in their file, or taking other buffers).
    Function(Vec<String>),
    /// The venv of these Python workers (their `python:`, else `options: python:`; their
    /// `file:` when neither is written and `VIRTUAL_ENV` gave it).
    Venv(Vec<String>),
    /// A place in a Python file these workers import, which the message starts with
    /// (`FILE:LINE:COLUMN: error: `).
    InPython(Vec<String>),
    /// The user libraries together (loading them into the registry failed).
    Libraries,
}

/// A problem found beyond the setup file.
struct Finding {
    about: About,
    message: String,
}

/// `worker 'a'` or `workers 'a', 'b'`.
fn workers(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let noun = if names.len() == 1 {
        "worker"
    } else {
        "workers"
    };
    format!("{noun} {}", quoted.join(", "))
}

impl Finding {
    /// As a run and `migrate` say it: the workers it is about first.
    fn plain(&self) -> String {
        match &self.about {
            About::TargetDirectory => format!("error: {}", self.message),
            About::File(names)
            | About::Function(names)
            | About::Venv(names)
            | About::InPython(names) => {
                format!("{}: {}", workers(names), self.message)
            }
            About::Libraries => self.message.clone(),
        }
    }

    /// As `check` says it: `FILE:LINE:COLUMN: error: …` at the place to change, in the
    /// setup (`setup` names it where no place is known) or in the Python file.
    fn at(&self, places: &setup::Places, setup: &Path) -> String {
        let place = match &self.about {
            About::TargetDirectory => Some(&places.target_directory),
            About::File(names) => names.first().and_then(|n| places.file_of(n)),
            About::Function(names) => names.first().and_then(|n| places.function_of(n)),
            About::Venv(names) => names
                .first()
                .and_then(|n| places.python_of(n).or_else(|| places.file_of(n))),
            About::InPython(names) => {
                let from = names
                    .first()
                    .and_then(|n| places.file_of(n))
                    .map(|p| format!(" ({}:{}:{})", p.file.display(), p.line, p.column))
                    .unwrap_or_default();
                let whose = if names.len() == 1 { "its" } else { "their" };
                return format!(
                    "{}\n  = note: {}: found while importing {whose} `file:`{from}",
                    self.message,
                    workers(names)
                );
            }
            About::Libraries => None,
        };
        let message = match &self.about {
            About::File(names) | About::Function(names) | About::Venv(names) => {
                format!("{}: {}", workers(names), self.message)
            }
            _ => self.message.clone(),
        };
        match place {
            Some(p) => p.error(message, None).to_string(),
            None => format!("{}: error: {message}", setup.display()),
        }
    }
}

/// The registry with the user libraries the setup names (each probed in a child process
/// first), after checking that each such worker's function is there and takes the setup's
/// buffers; or every error found.
pub(super) fn user_libraries(setup: &Setup, registry: &Registry) -> Result<Registry, Vec<String>> {
    library_findings(setup, registry).map_err(|found| found.iter().map(Finding::plain).collect())
}

/// As [`user_libraries`], each error with what it is about.
fn library_findings(setup: &Setup, registry: &Registry) -> Result<Registry, Vec<Finding>> {
    use crate::python::{PROBE_BAD_VENV, PROBE_FAILED_IN_FILE, PROBE_NO_FUNCTION};
    let mut seen: Vec<&Path> = Vec::new();
    let mut errors = Vec::new();
    // Python workers failing alike (no numpy without a venv, one broken file for several
    // workers) are told once, naming them all: each message with its workers.
    let mut python: Vec<(Option<i32>, String, Vec<String>)> = Vec::new();
    for w in &setup.workers {
        let Some(f) = w.file.as_deref() else { continue };
        if crate::worker::is_python(Some(f)) {
            if let Err(e) = probe_python(f, &w.function, w.python.as_deref()) {
                match python.iter_mut().find(|(_, t, _)| *t == e.text) {
                    Some((_, _, names)) => names.push(w.name.clone()),
                    None => python.push((e.code, e.text, vec![w.name.clone()])),
                }
            }
            continue;
        }
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        if let Err(e) = probe_library(f) {
            errors.push(Finding {
                about: About::File(vec![w.name.clone()]),
                message: e.text,
            });
        }
    }
    for (code, text, names) in python {
        let (about, message) = match code {
            Some(PROBE_FAILED_IN_FILE) => (About::InPython(names), text),
            Some(PROBE_BAD_VENV) => (About::Venv(names), text),
            // The message is its last line: what the file printed while it ran comes before.
            Some(PROBE_NO_FUNCTION) => (
                About::Function(names),
                text.lines().last().unwrap_or_default().to_string(),
            ),
            _ => (About::File(names), text),
        };
        errors.push(Finding { about, message });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let registry = registry.with_libraries(seen.iter().copied()).map_err(|e| {
        vec![Finding {
            about: About::Libraries,
            message: e.to_string(),
        }]
    })?;
    for w in setup
        .workers
        .iter()
        .filter(|w| w.file.is_some() && !crate::worker::is_python(w.file.as_deref()))
    {
        let about = || About::Function(vec![w.name.clone()]);
        match registry.get(&w.function) {
            None => errors.push(Finding {
                about: about(),
                message: format!(
                    "{} has no function '{}' (it has: {})",
                    w.file.as_deref().unwrap_or(Path::new("")).display(),
                    w.function,
                    registry.names_from(w.file.as_deref())
                ),
            }),
            Some(f) => {
                let s = &f.spec;
                let sides = [
                    ("sources", s.sources, w.sources.len()),
                    ("sinks", s.sinks, w.sinks.len()),
                    ("observes", s.observes, w.observes.len()),
                ];
                for (side, arity, n) in sides {
                    if !arity.allows(n) {
                        errors.push(Finding {
                            about: about(),
                            message: format!(
                                "{} '{}' takes {arity} {side}, the setup gives {n}",
                                s.template, s.name
                            ),
                        });
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(errors)
    }
}

/// The nearest part of `target` that exists (the run makes the rest with its parents),
/// with its metadata; `Err` with why when it cannot be looked at, `Ok(None)` when no part
/// of a relative path exists.
fn nearest_existing(target: &Path) -> Result<Option<(&Path, std::fs::Metadata)>, String> {
    let mut p = target;
    loop {
        match std::fs::metadata(p) {
            Ok(m) => return Ok(Some((p, m))),
            // Missing, or below a file (ENOTDIR): look at the part above.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match p.parent() {
                    Some(up) if !up.as_os_str().is_empty() => p = up,
                    _ => return Ok(None),
                }
            }
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
}

/// Why a run could not make its run directory in `target` (made with its parents when
/// missing): the nearest part of the path that exists must be a directory this user may
/// write into, and one that takes a new directory. `None` when it can.
fn target_problem(target: &Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    let (p, meta) = match nearest_existing(target) {
        Ok(Some(x)) => x,
        Ok(None) => return None,
        Err(why) => return Some(why),
    };
    if !meta.is_dir() {
        return Some(format!("{} is a file, not a directory", p.display()));
    }
    if let Err(e) = access(p, AccessFlags::W_OK | AccessFlags::X_OK) {
        return Some(format!("{} is not writable: {}", p.display(), e.desc()));
    }
    // Permission bits are not all (root passes them everywhere): a read-only mount, or a
    // file system of the kernel's (/proc, /sys), takes no new directory. One is made and
    // removed at once to know.
    let probe = p.join(format!(".daq-engine-check-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            None
        }
        Err(e) => Some(format!("{} takes no new directory: {e}", p.display())),
    }
}

/// Why a run into `target` would stop as soon as it started: its disk has no more free
/// space than the `disk_reserve_mb` the run keeps free. `None` when it has more, or when
/// the disk cannot be read (the run's disk watch never stops a run for that either).
pub(super) fn disk_problem(target: &Path, reserve_mb: f64) -> Option<String> {
    disk_shortfall(target, reserve_mb).map(|why| format!("error: {why}"))
}

/// [`disk_problem`]'s message, without the `error: ` in front.
fn disk_shortfall(target: &Path, reserve_mb: f64) -> Option<String> {
    let (p, _) = nearest_existing(target).ok()??;
    let free = crate::export::disk::free_bytes(p)?;
    let reserve = (reserve_mb * 1e6) as u64;
    let mb = crate::export::disk::mb;
    (free <= reserve).then(|| {
        format!(
            "target_directory {}: {} free on its disk, no more than the {} a run keeps \
             free there (options.disk_reserve_mb): the run would stop as soon as it started. \
             Free some space, give the run another directory with --target-directory, or \
             lower disk_reserve_mb",
            target.display(),
            mb(free as f64),
            mb(reserve as f64)
        )
    })
}

/// What `check` refuses beyond the setup file itself (`migrate` asks the same before it
/// calls a port OK): user libraries and Python workers that do not load (each tried in a
/// probe process, as the run would), and a target directory a run given no
/// `--target-directory` could not make its run directory in, or whose disk has no room
/// above the reserve.
pub(super) fn beyond_the_setup(setup: &Setup, registry: &Registry) -> Vec<String> {
    findings(setup, registry)
        .iter()
        .map(Finding::plain)
        .collect()
}

/// As [`beyond_the_setup`], each error with what it is about.
fn findings(setup: &Setup, registry: &Registry) -> Vec<Finding> {
    let mut errors = library_findings(setup, registry).err().unwrap_or_default();
    let target = &setup.target_directory;
    let why = target_problem(target)
        .map(|why| {
            format!(
                "target_directory {}: a run cannot make its run directory there: {why} \
                 (or give the run another with --target-directory)",
                target.display()
            )
        })
        .or_else(|| disk_shortfall(target, setup.options.disk_reserve_mb));
    if let Some(message) = why {
        errors.push(Finding {
            about: About::TargetDirectory,
            message,
        });
    }
    errors
}

/// `daq-engine check SETUP`: validates and prints the pipeline; with `simulate`, as a run
/// with `--simulate` would start; with `test_alert`, then runs its alert command once.
pub fn check(
    path: &Path,
    dot: Option<&Path>,
    simulate: bool,
    test_alert: bool,
    registry: &Registry,
) -> i32 {
    let simulated = Simulated(registry);
    let catalog: &dyn crate::worker::Catalog = if simulate { &simulated } else { registry };
    let checked = Setup::check_file(path, catalog, setup::online_cpus());
    for d in checked.errors.iter().chain(&checked.warnings) {
        eprintln!("{d}");
    }
    if !checked.errors.is_empty() {
        let warnings = checked
            .warnings
            .iter()
            .filter(|w| w.severity == setup::Severity::Warning)
            .count();
        eprintln!(
            "{}: {} error(s), {warnings} warning(s)",
            path.display(),
            checked.errors.len(),
        );
        return exit::BAD_INPUT;
    }
    let errors = findings(&checked.setup, registry);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{}", e.at(&checked.places, path));
        }
        eprintln!("{}: {} error(s)", path.display(), errors.len());
        return exit::BAD_INPUT;
    }
    print!("{}", setup::graph::text(&checked.setup));
    let seats = crate::engine::placement::seats_of(&checked.setup.workers);
    let placement =
        crate::engine::placement::place(&seats, &crate::engine::placement::isolated_cores());
    for line in placement.describe(&seats) {
        println!("{line}");
    }
    if let Some(d) = dot {
        if let Err(e) = std::fs::write(d, setup::graph::dot(&checked.setup)) {
            eprintln!("daq-engine: {}: {e}", d.display());
            return exit::FAILED;
        }
    }
    println!("{}: OK", path.display());
    if test_alert {
        return test_alert_command(path, &checked.setup);
    }
    exit::OK
}

/// `daq-engine check --test-alert SETUP`, after a check that passed: runs the setup's
/// `alert_command` once as an alert of kind `test` and says what came of it.
fn test_alert_command(path: &Path, setup: &Setup) -> i32 {
    let Some(command) = &setup.options.alert_command else {
        eprintln!(
            "{}: no options.alert_command to test (alerts go to the run's log only)",
            path.display()
        );
        return exit::BAD_INPUT;
    };
    let subject = path.display().to_string();
    eprintln!("daq-engine: running options.alert_command as a `test` alert…");
    match crate::engine::alert::test(command, &subject, &setup.target_directory) {
        Ok(said) => {
            for line in said.lines() {
                eprintln!("  {line}");
            }
            eprintln!("daq-engine: alert_command ran and exited 0; see that its message arrived");
            exit::OK
        }
        Err(why) => {
            eprintln!("daq-engine: the test alert failed: {why}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Catalog;

    /// `check --simulate` and `--simulate` refused mimoCoRB2's keys a plain check takes
    /// (`visualizers.histogram`'s `bins`: "has no config key 'bins'") and dropped the
    /// functions' notes: the wrapper that turns devices into simulators said nothing of
    /// either. It says what the registry says now.
    #[test]
    fn simulated_devices_take_the_keys_and_notes_of_the_registry() {
        let registry = Registry::builtin();
        let simulated = Simulated(&registry);
        for name in registry.names() {
            assert_eq!(
                simulated.ignored_keys(name),
                registry.ignored_keys(name),
                "{name}"
            );
            assert_eq!(simulated.note(name), registry.note(name), "{name}");
        }
        assert!(!registry.ignored_keys("visualizers.histogram").is_empty());
        let dir = crate::fsio::test_dir("check-simulated-keys");
        let setup = dir.join("vis.yaml");
        std::fs::write(
            &setup,
            "Buffers:\n  raw: {slot_count: 16, data_length: 1, data_dtype: {h: float32}}\n\
             Workers:\n  src: {function: bench.source, sinks: [raw]}\n  \
             hist: {function: exporters.histogram, sources: [raw], config: {bins: {h: [0, 1, 10]}}}\n  \
             show: {function: visualizers.histogram, observes: [raw], config: {bins: {h: [0, 1, 10]}}}\n",
        )
        .unwrap();
        for simulate in [false, true] {
            let loaded = load(&setup, &registry, simulate);
            assert!(
                loaded.is_ok(),
                "simulate {simulate}: {}",
                loaded.err().map(|r| r.errors).unwrap_or_default()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
