//! Python workers: a worker whose `file:` is a `.py` file runs its `function` in its own
//! worker process, in one embedded CPython (PyO3) per process, with mimoCoRB2's templates
//! (`daq_engine`, and the same objects as `mimocorb2` / `mimocorb2.worker_templates`).
//!
//! Guarantees: the ring protocol (claim, publish, release) stays here in Rust, with the same
//! accounting as a Rust worker (an Importer runs `process::importer_loop` itself); an event
//! from a source reaches Python as a numpy view of its slot, never copied and never
//! writable; a sink's event is copied once from the array Python returns; nothing is
//! pickled. A Python exception fails the worker with its traceback (file, line) in the
//! message, which the engine logs and prints like any worker failure. Must never let a view
//! outlive the mapping it points into: every ring a view was made of stays mapped until the
//! process exits.
//!
//! The interpreter is the libpython this binary was built against (Debian's 3.11 by
//! `.cargo/config.toml`); a venv made from the same Python (setup `python:` or
//! `VIRTUAL_ENV`) adds its site-packages, so numpy and the user's own packages import.

mod native;

use crate::run_dir::plan::{Plan, WorkerPlan};
use crate::runtime::Outcome;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::ffi::CString;
use std::path::{Path, PathBuf};

const TEMPLATES: &str = include_str!("daq_engine.py");
const MIMOCORB2: &str = include_str!("mimocorb2.py");

/// The venv a Python worker uses: the setup's `python:` when given, else `VIRTUAL_ENV`.
pub fn venv(configured: Option<&Path>) -> Option<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}

/// The Python version this binary embeds, as `3.11`.
fn embedded_version(py: Python<'_>) -> String {
    let v = py.version_info();
    format!("{}.{}", v.major, v.minor)
}

/// Why this process's interpreter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The venv was made with another Python than the one this binary embeds.
    #[error(
        "the venv {} has no lib/python{version}/site-packages: daq-engine embeds Python \
         {version}; make the venv with that Python (`/usr/bin/python3 -m venv {}`) and \
         install numpy into it",
        venv.display(),
        venv.display()
    )]
    WrongVenv {
        /// The venv.
        venv: PathBuf,
        /// The embedded Python's version, as `3.11`.
        version: String,
    },
    /// The directory given as the venv is none (no `pyvenv.cfg`, no site-packages of the
    /// embedded Python): `/usr`, a project directory, a mistyped path.
    #[error(
        "{} is not a venv (it has no pyvenv.cfg and no lib/python{version}/site-packages): \
         make one with the Python daq-engine embeds (`/usr/bin/python3 -m venv DIR`, Python \
         {version}), install numpy into it (`DIR/bin/pip install numpy`) and give DIR as \
         `python:`",
        venv.display()
    )]
    NotAVenv {
        /// The directory given.
        venv: PathBuf,
        /// The embedded Python's version, as `3.11`.
        version: String,
    },
    /// Python raised while starting; `doing` says what was being done, `python` what it
    /// said (a traceback, with a hint where one helps).
    #[error("{doing}{python}")]
    Raised {
        /// E.g. "adding PATH to sys.path: " or "starting Python: "; may be empty.
        doing: String,
        /// What Python said.
        python: String,
    },
}

impl StartError {
    fn raised(doing: impl Into<String>, python: impl std::fmt::Display) -> StartError {
        StartError::Raised {
            doing: doing.into(),
            python: python.to_string(),
        }
    }
}

/// Starts this process's interpreter with the venv's packages and the template modules.
fn start(venv: Option<&Path>) -> Result<(), StartError> {
    pyo3::append_to_inittab!(_daq_engine);
    Python::initialize();
    Python::attach(|py| -> Result<(), StartError> {
        let sys = py.import("sys").map_err(|e| StartError::raised("", e))?;
        if let Some(v) = venv {
            let version = embedded_version(py);
            let site = v.join(format!("lib/python{version}/site-packages"));
            if !site.is_dir() && !v.join("pyvenv.cfg").is_file() {
                return Err(StartError::NotAVenv {
                    venv: v.to_path_buf(),
                    version,
                });
            }
            if !site.is_dir() {
                return Err(StartError::WrongVenv {
                    venv: v.to_path_buf(),
                    version,
                });
            }
            py.import("site")
                .and_then(|s| s.call_method1("addsitedir", (site.to_string_lossy(),)))
                .map_err(|e| {
                    StartError::raised(format!("adding {} to sys.path: ", site.display()), e)
                })?;
        }
        let _ = sys.setattr("argv", PyList::new(py, ["daq-engine"]).ok());
        // stdout is a file or the journal, not a terminal: Python would hold a worker's
        // prints in blocks of 8 KiB (and lose them when the worker dies). A line at a time.
        let kwargs = pyo3::types::PyDict::new(py);
        let _ = kwargs.set_item("line_buffering", true);
        let _ = sys
            .getattr("stdout")
            .and_then(|o| o.call_method("reconfigure", (), Some(&kwargs)));
        for (name, code) in [("daq_engine", TEMPLATES), ("mimocorb2", MIMOCORB2)] {
            let m = module_from(py, name, code).map_err(|e| {
                // A package missing for daq-engine's own modules (numpy): the traceback
                // would point into them, not at anything of the user's; the error says it.
                let said = if e.is_instance_of::<pyo3::exceptions::PyImportError>(py) {
                    let hint = match venv {
                        Some(v) => format!(
                            " (install numpy into the venv: {}/bin/pip install numpy)",
                            v.display()
                        ),
                        None => " (no venv is selected: set `python: PATH_TO_VENV` in the \
                                 setup's options or activate one, VIRTUAL_ENV)"
                            .into(),
                    };
                    format!("{e}{hint}")
                } else {
                    traceback(py, &e)
                };
                StartError::raised("starting Python: ", said)
            })?;
            if name == "mimocorb2" {
                let modules = sys
                    .getattr("modules")
                    .map_err(|e| StartError::raised("", e))?;
                for sub in ["worker_templates", "mimo_worker"] {
                    let _ = m.setattr(sub, &m);
                    let _ = modules.set_item(format!("mimocorb2.{sub}"), &m);
                }
            }
        }
        Ok(())
    })
}

fn module_from<'py>(py: Python<'py>, name: &str, code: &str) -> PyResult<Bound<'py, PyModule>> {
    let cstr = |s: &str| CString::new(s).expect("embedded module text has no NUL");
    PyModule::from_code(
        py,
        &cstr(code),
        &cstr(&format!("<daq-engine>/{name}.py")),
        &cstr(name),
    )
}

/// The whole traceback of `e`, as Python prints it.
fn traceback(py: Python<'_>, e: &PyErr) -> String {
    py.import("traceback")
        .and_then(|t| t.call_method1("format_exception", (e.clone_ref(py),)))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|l| l.concat().trim_end().to_string())
        .unwrap_or_else(|_| e.to_string())
}

/// A buffer as `_buffer_io` takes it: name, fields, records per event, slots.
type BufferSpec = (String, Vec<(String, String)>, usize, usize);

fn buffers(plan: &Plan, names: &[String]) -> Vec<BufferSpec> {
    names
        .iter()
        .filter_map(|n| plan.buffer(n))
        .map(|b| {
            (
                b.name.clone(),
                b.fields
                    .iter()
                    .map(|(n, t)| (n.clone(), t.numpy_spec()))
                    .collect(),
                b.data_length,
                b.slot_count,
            )
        })
        .collect()
}

/// Runs process `process` of the Python worker `w` (`daq-engine __worker`).
pub fn run_worker(plan: &Plan, w: &WorkerPlan, process: usize) -> Outcome {
    let Some(file) = w.file.as_deref() else {
        return Outcome::Failed("a Python worker needs `file:`".into());
    };
    if let Err(e) = start(venv(w.python.as_deref()).as_deref()) {
        return Outcome::Failed(e.to_string());
    }
    Python::attach(|py| {
        let run = || -> PyResult<()> {
            let templates = py.import("daq_engine")?;
            let function =
                templates.call_method1("_load", (file.to_string_lossy(), &w.function))?;
            let native = Py::new(py, native::Io::new(plan.clone(), w.clone(), process))?;
            let config = pyo3::types::PyDict::new(py);
            let json = py.import("json")?;
            for (k, v) in &w.config {
                config.set_item(k, json.call_method1("loads", (v.to_string(),))?)?;
            }
            let io = templates.call_method1(
                "_buffer_io",
                (
                    native.clone_ref(py),
                    &w.name,
                    config,
                    plan.setup_dir.to_string_lossy(),
                    plan.run_dir.to_string_lossy(),
                    buffers(plan, &w.sources),
                    buffers(plan, &w.sinks),
                    buffers(plan, &w.observes),
                ),
            )?;
            // An observer still running once every other worker has ended is ended by the
            // supervisor with SIGTERM: its function ends as a return would.
            if w.only_observes() {
                templates.call_method0("_end_on_sigterm")?;
            }
            match function.call1((io,)) {
                Ok(_) => {}
                Err(e) if ended(py, &e) => tracing::info!(
                    "worker '{}' process {process}: Python function '{}' ended on SIGTERM, \
                     as an observer is told to once every other worker has ended",
                    w.name,
                    w.function
                ),
                Err(e) if done(py, &e) => tracing::info!(
                    "worker '{}' process {process}: Python function '{}' called sys.exit({}): \
                     it ended as a return ends it",
                    w.name,
                    w.function,
                    e.value(py)
                        .getattr("code")
                        .map_or_else(|_| "None".into(), |c| c.to_string())
                ),
                Err(e) => return Err(e),
            }
            // The function returned: streams it did not end itself end now, as a Rust
            // worker's do when it finishes.
            native.borrow_mut(py).finish();
            Ok(())
        };
        match run() {
            Ok(()) => Outcome::Finished,
            Err(e) => Outcome::Failed(format!(
                "Python function '{}' of {} raised:\n{}",
                w.function,
                file.display(),
                traceback(py, &e)
            )),
        }
    })
}

/// True when `e` is `daq_engine._Ended`: the SIGTERM that ends an observer.
fn ended(py: Python<'_>, e: &PyErr) -> bool {
    py.import("daq_engine")
        .and_then(|t| t.getattr("_Ended"))
        .is_ok_and(|c| e.matches(py, c).unwrap_or(false))
}

/// True when `e` is `SystemExit` with the code 0 or None: `sys.exit()` or `sys.exit(0)`,
/// how a Python program says it is done (and mimoCoRB2's worker process ended as done).
fn done(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        && e.value(py)
            .getattr("code")
            .is_ok_and(|c| c.is_none() || c.extract::<i64>().is_ok_and(|c| c == 0))
}

/// How `daq-engine __python-probe` ends when the file does not do: its message (on stderr)
/// starts with the place in a Python file, `FILE:LINE:COLUMN: error: ` (a syntax error, an
/// import that fails, an exception while the file runs).
pub const PROBE_FAILED_IN_FILE: i32 = 3;

/// How `daq-engine __python-probe` ends when the file imports but has no `function`, or one
/// that cannot be called with the one argument a worker function takes: the setup's
/// `function:` is the place to point at. Any other failure ends with 1 (Python could not
/// start, an error with no place in a file).
pub const PROBE_NO_FUNCTION: i32 = 4;

/// What `daq-engine __python-probe` prints on stdout, last, once it imported the file and
/// found the function: a file whose import ends the process (`os._exit(0)`) exits with
/// status 0 all the same, but without it.
pub const PROBE_FOUND: &str = "daq-engine: the worker function was found";

/// How `daq-engine __python-probe` ends when the venv it was given is none, or one of
/// another Python: the setup's `python:` is the place to point at.
pub const PROBE_BAD_VENV: i32 = 5;

/// `daq-engine __python-probe FILE FUNCTION [VENV]`: imports the worker file as a worker
/// process would and checks that `function` is there and takes one argument. Prints what is
/// wrong (a syntax or import error with its file, line and column) and returns
/// [`PROBE_FAILED_IN_FILE`], [`PROBE_NO_FUNCTION`] or 1; or 0.
pub fn probe(file: &Path, function: &str, venv: Option<&Path>) -> i32 {
    let venv = self::venv(venv);
    if let Err(e) = start(venv.as_deref()) {
        eprintln!("{e}");
        return match e {
            StartError::NotAVenv { .. } | StartError::WrongVenv { .. } => PROBE_BAD_VENV,
            StartError::Raised { .. } => 1,
        };
    }
    Python::attach(|py| {
        let loaded = py
            .import("daq_engine")
            .and_then(|t| t.call_method1("_load", (file.to_string_lossy(), function)));
        match loaded {
            Ok(_) => {
                use std::io::Write;
                let mut out = std::io::stdout();
                let said = writeln!(out, "{PROBE_FOUND}").and_then(|()| out.flush());
                i32::from(said.is_err())
            }
            Err(e) => {
                let (code, message) = probe_message(py, &e);
                eprintln!("{message}");
                code
            }
        }
    })
}

/// One frame of a traceback, as `traceback.extract_tb` gives it.
struct Frame {
    file: String,
    line: Option<u64>,
    /// 1-based.
    column: Option<u64>,
    function: String,
    text: String,
}

/// The frames of `e`'s traceback, outermost first.
fn frames(py: Python<'_>, e: &PyErr) -> Vec<Frame> {
    let Some(tb) = e.traceback(py) else {
        return Vec::new();
    };
    let Ok(list) = py
        .import("traceback")
        .and_then(|t| t.call_method1("extract_tb", (tb,)))
        .and_then(|l| l.extract::<Vec<Bound<'_, PyAny>>>())
    else {
        return Vec::new();
    };
    list.iter()
        .map(|f| Frame {
            file: text_attr(f, "filename").unwrap_or_default(),
            line: count_attr(f, "lineno"),
            // Python counts these columns from 0.
            column: count_attr(f, "colno").map(|c| c + 1),
            function: text_attr(f, "name").unwrap_or_default(),
            text: text_attr(f, "line").unwrap_or_default(),
        })
        .collect()
}

/// Attribute `k` of `o`, when it is text.
fn text_attr(o: &Bound<'_, PyAny>, k: &str) -> Option<String> {
    o.getattr(k).ok().and_then(|x| x.extract::<String>().ok())
}

/// Attribute `k` of `o`, when it is a count (not None, not negative).
fn count_attr(o: &Bound<'_, PyAny>, k: &str) -> Option<u64> {
    o.getattr(k)
        .ok()
        .and_then(|x| x.extract::<Option<u64>>().ok())
        .flatten()
}

/// `FILE:LINE:COLUMN: error: TYPE: MESSAGE`, or without the column when it is not known.
fn headline(file: &str, line: u64, column: Option<u64>, kind: &str, message: &str) -> String {
    match column {
        Some(c) => format!("{file}:{line}:{c}: error: {kind}: {message}"),
        None => format!("{file}:{line}: error: {kind}: {message}"),
    }
}

/// What `check` says of the error `e` that importing a worker file gave, and how the probe
/// ends ([`PROBE_FAILED_IN_FILE`], [`PROBE_NO_FUNCTION`] or 1): at the place in the Python
/// file where the error is (a syntax error's own; else the innermost frame of the user's
/// files, with those frames below it), or, for a file without a usable `function`, its
/// message alone (`check` points at the setup's `function:`).
fn probe_message(py: Python<'_>, e: &PyErr) -> (i32, String) {
    let kind = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Error".into());
    let v = e.value(py);
    let said = |k: &str| text_attr(v, k);
    let number = |k: &str| count_attr(v, k);
    if e.is_instance_of::<pyo3::exceptions::PySyntaxError>(py) {
        let file = said("filename").unwrap_or_default();
        let msg = said("msg").unwrap_or_else(|| e.to_string());
        let Some(line) = number("lineno") else {
            return (1, format!("{file}: error: {kind}: {msg}"));
        };
        let column = number("offset").filter(|c| *c >= 1);
        let mut out = headline(&file, line, column, &kind, &msg);
        if let Some(text) = said("text").filter(|t| !t.trim().is_empty()) {
            let text = text.trim_end();
            out.push_str(&format!("\n    {text}"));
            if let Some(c) = column {
                // The mark under the offending text (`^^^` over its extent on this line).
                let same_line = number("end_lineno") == Some(line);
                let width = number("end_offset")
                    .filter(|end| same_line && *end > c)
                    .map_or(1, |end| end - c);
                let indent: String = text
                    .chars()
                    .take(usize::try_from(c - 1).unwrap_or(0))
                    .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&format!(
                    "\n    {indent}{}",
                    "^".repeat(usize::try_from(width).unwrap_or(1))
                ));
            }
        }
        return (PROBE_FAILED_IN_FILE, out);
    }
    let frames = frames(py, e);
    // Raised by `_load` itself, once the file had run: the function is missing or unusable.
    if frames
        .last()
        .is_some_and(|f| f.file.starts_with("<daq-engine>/") && f.function == "_load")
    {
        return (PROBE_NO_FUNCTION, v.to_string());
    }
    // The user's own frames: not Python's import machinery (`<frozen …>`), not ours.
    let own: Vec<&Frame> = frames
        .iter()
        .filter(|f| !f.file.starts_with('<') && f.line.is_some())
        .collect();
    let Some(inner) = own.last() else {
        return (1, traceback(py, e));
    };
    let mut out = headline(
        &inner.file,
        inner.line.unwrap_or(1),
        inner.column,
        &kind,
        &v.to_string(),
    );
    out.push_str("\n  Traceback (most recent call last):");
    for f in &own {
        out.push_str(&format!(
            "\n    File \"{}\", line {}, in {}",
            f.file,
            f.line.unwrap_or(0),
            f.function
        ));
        if !f.text.trim().is_empty() {
            out.push_str(&format!("\n      {}", f.text.trim()));
        }
    }
    (PROBE_FAILED_IN_FILE, out)
}

#[pymodule]
fn _daq_engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<native::Io>()?;
    m.add_function(pyo3::wrap_pyfunction!(native::log, m)?)
}
