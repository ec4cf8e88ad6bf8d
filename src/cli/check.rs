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
fn probe_library(library: &Path) -> anyhow::Result<()> {
    probe(library, &["__plugin-probe", "--"], &[])
}

/// Imports the Python worker file `file` in a child process (`daq-engine __python-probe`),
/// as a worker process would, and checks that it has `function` taking one argument.
fn probe_python(file: &Path, function: &str, venv: Option<&Path>) -> anyhow::Result<()> {
    let mut tail = vec![std::ffi::OsStr::new(function)];
    tail.extend(venv.map(Path::as_os_str));
    probe(file, &["__python-probe", "--"], &tail)
}

/// Runs `daq-engine ARGS FILE TAIL` and returns what it printed when it failed.
fn probe(library: &Path, args: &[&str], tail: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find daq-engine itself")?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .arg(library)
        .args(tail)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the library probe")?;
    // Read as it comes: a file that writes more than a pipe holds while it loads (a
    // package's warnings) would otherwise wait on the full pipe until the limit.
    let said = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
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
                anyhow::bail!(
                    "{}: loading it did not finish within {} s",
                    library.display(),
                    PROBE_LIMIT.as_secs()
                );
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = said.and_then(|t| t.join().ok()).unwrap_or_default();
    Err(match status.code() {
        Some(_) if !text.trim().is_empty() => anyhow::Error::msg(text.trim().to_string()),
        _ => anyhow::anyhow!(
            "{}: the library crashed while loading ({})",
            library.display(),
            crate::engine::supervisor::describe(status)
        ),
    })
}

/// The registry with the user libraries the setup names (each probed in a child process
/// first), after checking that each such worker's function is there and takes the setup's
/// buffers; or every error found.
pub(super) fn user_libraries(setup: &Setup, registry: &Registry) -> Result<Registry, Vec<String>> {
    let mut seen: Vec<&Path> = Vec::new();
    let mut errors = Vec::new();
    // Python workers failing alike (no numpy without a venv, one broken file for several
    // workers) are told once, naming them all: each message with its workers.
    let mut python: Vec<(String, Vec<&str>)> = Vec::new();
    for w in &setup.workers {
        let Some(f) = w.file.as_deref() else { continue };
        if crate::worker::is_python(Some(f)) {
            if let Err(e) = probe_python(f, &w.function, w.python.as_deref()) {
                let text = format!("{e:#}");
                match python.iter_mut().find(|(t, _)| *t == text) {
                    Some((_, names)) => names.push(&w.name),
                    None => python.push((text, vec![&w.name])),
                }
            }
            continue;
        }
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        if let Err(e) = probe_library(f) {
            errors.push(format!("worker '{}': {e:#}", w.name));
        }
    }
    for (text, names) in python {
        let names: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        let workers = if names.len() == 1 {
            "worker"
        } else {
            "workers"
        };
        errors.push(format!("{workers} {}: {text}", names.join(", ")));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let registry = registry
        .with_libraries(seen.iter().copied())
        .map_err(|e| vec![e.to_string()])?;
    for w in setup
        .workers
        .iter()
        .filter(|w| w.file.is_some() && !crate::worker::is_python(w.file.as_deref()))
    {
        match registry.get(&w.function) {
            None => errors.push(format!(
                "worker '{}': {} has no function '{}' (it has: {})",
                w.name,
                w.file.as_deref().unwrap_or(Path::new("")).display(),
                w.function,
                registry.names_from(w.file.as_deref())
            )),
            Some(f) => {
                let s = &f.spec;
                let sides = [
                    ("sources", s.sources, w.sources.len()),
                    ("sinks", s.sinks, w.sinks.len()),
                    ("observes", s.observes, w.observes.len()),
                ];
                for (side, arity, n) in sides {
                    if !arity.allows(n) {
                        errors.push(format!(
                            "worker '{}': {} '{}' takes {arity} {side}, the setup gives {n}",
                            w.name, s.template, s.name
                        ));
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
/// write into. `None` when it can.
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
    match access(p, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => None,
        Err(e) => Some(format!("{} is not writable: {}", p.display(), e.desc())),
    }
}

/// Why a run into `target` would stop as soon as it started: its disk has no more free
/// space than the `disk_reserve_mb` the run keeps free. `None` when it has more, or when
/// the disk cannot be read (the run's disk watch never stops a run for that either).
pub(super) fn disk_problem(target: &Path, reserve_mb: f64) -> Option<String> {
    let (p, _) = nearest_existing(target).ok()??;
    let free = crate::export::disk::free_bytes(p)?;
    let reserve = (reserve_mb * 1e6) as u64;
    let mb = crate::export::disk::mb;
    (free <= reserve).then(|| {
        format!(
            "error: target_directory {}: {} free on its disk, no more than the {} a run keeps \
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
    let mut errors = user_libraries(setup, registry).err().unwrap_or_default();
    if let Some(why) = target_problem(&setup.target_directory) {
        errors.push(format!(
            "error: target_directory {}: a run cannot make its run directory there: {why} \
             (or give the run another with --target-directory)",
            setup.target_directory.display()
        ));
    } else if let Some(why) = disk_problem(&setup.target_directory, setup.options.disk_reserve_mb) {
        errors.push(why);
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
    let errors = beyond_the_setup(&checked.setup, registry);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{}: {e}", path.display());
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
