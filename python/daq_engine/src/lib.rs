//! `daq_engine._native`: the Rust half of the `daq_engine` Python package. A notebook or
//! script attaches to a run directory; this reads its `plan.json`, attaches the buffers'
//! rings only as observers, and hands control requests to the supervisor.
//!
//! Guarantees: looking never holds the run back — the rings are attached without a role
//! (no reader group, no producer), and the latest event is copied with the ring's observer
//! protocol (a copy torn by the producer is retried, never returned; the producer never
//! waits); pause/resume/stop go through the supervisor (`engine::requests`), as the web
//! monitor's buttons do, and return once it has carried them out.

use daq_engine::dtype::Metadata;
use daq_engine::engine::requests::{self, RequestError};
use daq_engine::engine::Control;
use daq_engine::ring::{Ring, RingObserver};
use daq_engine::run_dir::plan::Plan;
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The rings of one buffer (one per writing process), attached as an observer.
struct Observed {
    /// One per ring: remembers what `latest(new_only=True)` handed out last.
    observers: Vec<RingObserver>,
    /// One event's bytes per ring, so the newest of several rings can be chosen.
    scratch: Vec<Vec<u8>>,
}

/// One buffer as Python sees it: name, fields as (name, numpy type), records per event,
/// slots, policy, writer, readers.
type BufferInfo = (
    String,
    Vec<(String, String)>,
    usize,
    usize,
    String,
    Option<String>,
    Vec<String>,
);

/// The newest event: its bytes, then counter, timestamp and dead time.
type Latest<'py> = (Bound<'py, PyByteArray>, i64, f64, f64);

/// A run directory, attached.
#[pyclass(module = "daq_engine._native")]
struct Run {
    run_dir: PathBuf,
    plan: Plan,
    observed: BTreeMap<String, Observed>,
}

#[pymethods]
impl Run {
    #[new]
    fn new(run_dir: PathBuf) -> PyResult<Run> {
        let path = run_dir.join("plan.json");
        let plan = Plan::load(&path).map_err(|e| {
            PyValueError::new_err(format!(
                "{}: {e} (is {} a daq-engine run directory?)",
                path.display(),
                run_dir.display()
            ))
        })?;
        Ok(Run {
            run_dir,
            plan,
            observed: BTreeMap::new(),
        })
    }

    /// The run's buffers, in setup order.
    fn buffers(&self) -> Vec<BufferInfo> {
        self.plan
            .buffers
            .iter()
            .map(|b| {
                let fields = b
                    .dtype()
                    .fields()
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.numpy_spec()))
                    .collect();
                (
                    b.name.clone(),
                    fields,
                    b.data_length,
                    b.slot_count,
                    match b.policy {
                        daq_engine::ring::Policy::Block => "block".to_string(),
                        daq_engine::ring::Policy::Drop => "drop".to_string(),
                    },
                    b.writer.clone(),
                    b.readers.clone(),
                )
            })
            .collect()
    }

    /// The run's id (also in its ring file names).
    #[getter]
    fn run_id(&self) -> &str {
        &self.plan.run_id
    }

    /// The newest event published in `buffer` (across its rings, by timestamp), copied;
    /// `None` when none was published yet — or, with `new_only`, none since the last call
    /// with `new_only`.
    fn latest<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &str,
        new_only: bool,
    ) -> PyResult<Option<Latest<'py>>> {
        let observed = self.observe(buffer)?;
        let newest = py.detach(|| newest(observed, new_only))?;
        Ok(newest.map(|(i, m)| {
            (
                PyByteArray::new(py, &observed.scratch[i]),
                m.counter,
                m.timestamp,
                m.deadtime,
            )
        }))
    }

    /// Asks the supervisor for `action` (`pause`, `resume` or `stop`) and waits until it
    /// has carried it out, at most `timeout` seconds.
    fn request(&self, py: Python<'_>, action: &str, timeout: f64) -> PyResult<()> {
        let c = match action {
            "pause" => Control::Pause,
            "resume" => Control::Resume,
            "stop" => Control::Stop,
            other => {
                return Err(PyValueError::new_err(format!(
                    "no control action '{other}' (pause, resume, stop)"
                )))
            }
        };
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "timeout {timeout} is not a number of seconds"
            )));
        }
        let run_dir = self.run_dir.clone();
        py.detach(move || requests::request(&run_dir, c, Duration::from_secs_f64(timeout)))
            .map_err(|e: RequestError| PyRuntimeError::new_err(e.to_string()))
    }
}

impl Run {
    /// The observers of `buffer`, attached the first time it is asked for.
    fn observe(&mut self, buffer: &str) -> PyResult<&mut Observed> {
        if !self.observed.contains_key(buffer) {
            let b = self.plan.buffer(buffer).ok_or_else(|| {
                let names: Vec<&str> = self.plan.buffers.iter().map(|b| b.name.as_str()).collect();
                PyKeyError::new_err(format!(
                    "no buffer '{buffer}' in this run (it has {})",
                    names.join(", ")
                ))
            })?;
            let dtype = b.dtype();
            let mut observers = Vec::new();
            for path in &b.rings {
                let ring = Ring::attach(path, Some(&dtype), Some(b.data_length)).map_err(|e| {
                    let hint = if self.run_dir.join("summary.json").exists() {
                        " (the run has ended; its rings were removed with it)"
                    } else {
                        ""
                    };
                    PyRuntimeError::new_err(format!("buffer '{buffer}': {e}{hint}"))
                })?;
                observers.push(ring.observer());
            }
            let bytes = b.data_length * dtype.record_size();
            let scratch = vec![vec![0u8; bytes]; observers.len()];
            self.observed
                .insert(buffer.to_string(), Observed { observers, scratch });
        }
        Ok(self
            .observed
            .get_mut(buffer)
            .expect("inserted above when missing"))
    }
}

/// Copies the newest event of each ring into its scratch; returns the ring whose event is
/// the newest of all (latest timestamp, then highest counter) and its metadata.
fn newest(o: &mut Observed, new_only: bool) -> PyResult<Option<(usize, Metadata)>> {
    let mut best: Option<(usize, Metadata)> = None;
    for (i, (obs, data)) in o.observers.iter_mut().zip(o.scratch.iter_mut()).enumerate() {
        let mut meta = Metadata::default();
        let got = if new_only {
            obs.latest(data, &mut meta)
        } else {
            // A fresh observer has seen nothing, so it hands out the newest event.
            obs.ring().observer().latest(data, &mut meta)
        }
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        if got.is_some() {
            let newer =
                best.is_none_or(|(_, m)| (meta.timestamp, meta.counter) > (m.timestamp, m.counter));
            if newer {
                best = Some((i, meta));
            }
        }
    }
    Ok(best)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Run>()
}
