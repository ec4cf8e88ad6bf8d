//! `_daq_engine.Io`: one worker process's rings as the Python templates use them.
//!
//! Sources hand out one kept event at a time per source (the previous one goes back on the
//! next `take` or on `release`), as numpy views made once per slot and cached; sinks take a
//! slot, copy the returned array's bytes into it and publish it in one call. Nothing here
//! allocates per event once every slot's views exist.

use crate::dtype::Metadata;
use crate::ring::{Kept, Ring, RingObserver};
use crate::run_dir::plan::{Plan, WorkerPlan};
use crate::runtime::{self as process, Sinks, Source, Taken, POLL};
use crate::worker::{EventMut, EventRef, Importer, Produced, SinkMask, WorkerError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::sync::{Arc, Mutex};

/// Rings that Python views were made of. They stay mapped until the process exits, so a
/// view a user keeps past its event (or past the run) never points at unmapped memory.
static MAPPED: Mutex<Vec<Ring>> = Mutex::new(Vec::new());

/// The (metadata, data) and (data, metadata) views of one slot.
type Views = (Py<PyTuple>, Py<PyTuple>);

struct SourceState {
    source: Source,
    kept: Option<(usize, Kept)>,
    /// Per ring, per slot: the slot's views, made the first time an event lands there.
    views: Vec<Vec<Option<Views>>>,
}

/// A worker that raised ends without `finish`: the event it held goes back with its source
/// all the same. Its reader, dropped next, gives its member up (pid 0), after which the
/// supervisor reclaims nothing of it: an event kept past that held its group, and with it
/// the whole run, for good.
impl Drop for SourceState {
    fn drop(&mut self) {
        if let Some((r, k)) = self.kept.take() {
            self.source.readers[r].release_kept(k);
        }
    }
}

/// The rings of one worker process, for the Python templates.
#[pyclass(unsendable, module = "_daq_engine")]
pub struct Io {
    plan: Plan,
    worker: WorkerPlan,
    process: usize,
    sources: Option<Vec<SourceState>>,
    sinks: Option<Sinks>,
    /// Sinks whose stream this process ended.
    closed: Vec<bool>,
    observers: Option<Vec<Vec<RingObserver>>>,
    /// The numpy dtype of each source, for its views.
    dtypes: Vec<Py<PyAny>>,
    make_views: Option<Py<PyAny>>,
    scratch: (Vec<u8>, Metadata),
    importer_ran: bool,
}

impl Io {
    /// The rings of process `process` of worker `worker`, attached when first used.
    pub fn new(plan: Plan, worker: WorkerPlan, process: usize) -> Io {
        let closed = vec![false; worker.sinks.len()];
        Io {
            plan,
            worker,
            process,
            sources: None,
            sinks: None,
            closed,
            observers: None,
            dtypes: Vec::new(),
            make_views: None,
            scratch: (Vec::new(), Metadata::default()),
            importer_ran: false,
        }
    }

    fn sources(&mut self) -> PyResult<&mut Vec<SourceState>> {
        if self.sources.is_none() {
            let attached = process::sources_of(&self.plan, &self.worker, self.process)
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
            let states = attached
                .into_iter()
                .map(|source| {
                    mapped.extend(source.readers.iter().map(|r| r.ring().clone()));
                    let views = source
                        .readers
                        .iter()
                        .map(|r| (0..r.ring().slots()).map(|_| None).collect())
                        .collect();
                    SourceState {
                        source,
                        kept: None,
                        views,
                    }
                })
                .collect();
            self.sources = Some(states);
        }
        Ok(self.sources.as_mut().expect("attached above"))
    }

    fn sinks(&mut self) -> PyResult<&mut Sinks> {
        if self.sinks.is_none() {
            if self.importer_ran {
                return Err(PyRuntimeError::new_err(
                    "the Importer already ended this worker's sinks",
                ));
            }
            let s = Sinks::attach(&self.plan, &self.worker, self.process)
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            self.sinks = Some(s);
        }
        Ok(self.sinks.as_mut().expect("attached above"))
    }

    fn source(&mut self, i: usize) -> PyResult<&mut SourceState> {
        self.sources()?
            .get_mut(i)
            .ok_or_else(|| PyValueError::new_err(format!("no source number {i}")))
    }

    /// Ends the streams not ended yet (the function returned normally).
    pub fn finish(&mut self) {
        if let Some(sources) = &mut self.sources {
            for s in sources {
                if let Some((r, k)) = s.kept.take() {
                    s.source.readers[r].release_kept(k);
                }
            }
        }
        if let Some(s) = &self.sinks {
            for (p, closed) in s.producers.iter().zip(&mut self.closed) {
                if !*closed {
                    p.ring().close();
                    *closed = true;
                }
            }
        }
    }
}

/// Calls `f` with the bytes of `obj` (a C-contiguous buffer, such as a numpy array).
fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::zeroed();
    // SAFETY: `view` is writable memory for one Py_buffer; on success Python filled it and
    // holds the exporter's buffer until PyBuffer_Release below.
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) } != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    // SAFETY: filled by the successful PyObject_GetBuffer.
    let mut view = unsafe { view.assume_init() };
    // SAFETY: a PyBUF_SIMPLE buffer is `len` contiguous bytes at `buf`, valid until released.
    let bytes = unsafe { std::slice::from_raw_parts(view.buf as *const u8, view.len as usize) };
    let r = f(bytes);
    // SAFETY: releases exactly the buffer acquired above; `bytes` is not used after this.
    unsafe { ffi::PyBuffer_Release(&mut view) };
    Ok(r)
}

/// A read-only memoryview of `len` bytes at `ptr`.
fn memory<'py>(py: Python<'py>, ptr: *mut u8, len: usize) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `ptr..ptr+len` lies inside a ring mapping kept in MAPPED until the process
    // exits, so the memory outlives every view; PyBUF_READ makes the view (and every numpy
    // array made from it) read-only.
    unsafe {
        let mv = ffi::PyMemoryView_FromMemory(ptr.cast(), len as ffi::Py_ssize_t, ffi::PyBUF_READ);
        Bound::from_owned_ptr_or_err(py, mv)
    }
}

#[pymethods]
impl Io {
    /// Tells the numpy dtype of each source (`_buffer_io` does, once).
    fn set_dtypes(&mut self, py: Python<'_>, dtypes: Vec<Py<PyAny>>) -> PyResult<()> {
        self.dtypes = dtypes;
        self.make_views = Some(py.import("daq_engine")?.getattr("_make_views")?.unbind());
        Ok(())
    }

    /// The next event of source `i` as views `(metadata, data)` — `(data, metadata)` when
    /// `dm` — or None once every ring of it ended. The event taken before goes back first.
    fn take(&mut self, py: Python<'_>, i: usize, dm: bool) -> PyResult<Option<Py<PyTuple>>> {
        let make = self.make_views.as_ref().map(|m| m.clone_ref(py));
        let dtype = self.dtypes.get(i).map(|d| d.clone_ref(py));
        let s = self.source(i)?;
        if let Some((r, k)) = s.kept.take() {
            s.source.readers[r].release_kept(k);
        }
        let (r, k) = loop {
            match s.source.take(POLL) {
                Taken::Event(r, k) => break (r, k),
                Taken::Idle => {
                    if process::stop_requested() {
                        s.source.close_orphans();
                    }
                }
                Taken::End => return Ok(None),
            }
        };
        let ring = s.source.readers[r].ring();
        let slot = (k.index() as usize) & (ring.slots() - 1);
        if s.views[r][slot].is_none() {
            let (Some(make), Some(dtype)) = (make, dtype) else {
                s.source.readers[r].release_kept(k);
                return Err(PyRuntimeError::new_err("set_dtypes was not called"));
            };
            let (data, meta) = ring.slot_places(k.index());
            let made = make.call1(
                py,
                (
                    memory(py, meta, std::mem::size_of::<Metadata>())?,
                    memory(py, data, ring.event_bytes())?,
                    dtype,
                ),
            );
            let made = match made.and_then(|m| m.extract::<(Py<PyTuple>, Py<PyTuple>)>(py)) {
                Ok(m) => m,
                Err(e) => {
                    s.source.readers[r].release_kept(k);
                    return Err(e);
                }
            };
            s.views[r][slot] = Some(made);
        }
        let (md, dmv) = s.views[r][slot].as_ref().expect("made above");
        let out = if dm {
            dmv.clone_ref(py)
        } else {
            md.clone_ref(py)
        };
        s.kept = Some((r, k));
        Ok(Some(out))
    }

    /// Gives back the event of source `i` taken last (the end of a `with reader` block).
    fn release(&mut self, i: usize) -> PyResult<()> {
        let s = self.source(i)?;
        if let Some((r, k)) = s.kept.take() {
            s.source.readers[r].release_kept(k);
        }
        Ok(())
    }

    /// Gives back the event of source `i` taken last, unused: the worker's function raised
    /// on it. It is counted lost for this reader (it was read, but nothing came of it),
    /// not delivered.
    fn unused(&mut self, i: usize) -> PyResult<()> {
        let s = self.source(i)?;
        if let Some((r, k)) = s.kept.take() {
            let reader = &mut s.source.readers[r];
            reader.release_kept(k);
            reader.count_unused(1);
        }
        Ok(())
    }

    /// Copies the event of source `i` taken last, metadata included, into each sink whose
    /// bit is set in `mask`.
    fn copy(&mut self, i: usize, mask: u64) -> PyResult<()> {
        self.sinks()?;
        let sources = self.sources.as_mut().expect("taken from before copying");
        let s = sources
            .get(i)
            .ok_or_else(|| PyValueError::new_err(format!("no source number {i}")))?;
        let Some((r, k)) = &s.kept else {
            return Err(PyRuntimeError::new_err(
                "copy: no event taken from this source",
            ));
        };
        let reader = &s.source.readers[*r];
        let ev = EventRef {
            data: reader.kept_data(k),
            meta: reader.kept_meta(k),
            dtype: &s.source.dtype,
        };
        let sinks = self.sinks.as_mut().expect("attached above");
        sinks
            .copy(&ev, SinkMask(mask))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Publishes `data` (an array of exactly the sink's bytes) in sink `sink`, with the
    /// metadata of the event last taken from source `meta_from`, or the record `meta`.
    fn write(
        &mut self,
        sink: usize,
        data: &Bound<'_, PyAny>,
        meta_from: Option<usize>,
        meta: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut m = Metadata::default();
        if let Some(i) = meta_from {
            let s = self.source(i)?;
            if let Some((r, k)) = &s.kept {
                m = s.source.readers[*r].kept_meta(k);
            }
        } else if let Some(rec) = meta {
            with_bytes(rec, |b| {
                if b.len() == std::mem::size_of::<Metadata>() {
                    let f = |o: usize| <[u8; 8]>::try_from(&b[o..o + 8]).expect("8 bytes");
                    m = Metadata {
                        counter: i64::from_le_bytes(f(0)),
                        timestamp: f64::from_le_bytes(f(8)),
                        deadtime: f64::from_le_bytes(f(16)),
                    };
                }
            })?;
        }
        let name = self.worker.sinks.get(sink).cloned().unwrap_or_default();
        let sinks = self.sinks()?;
        let p = sinks
            .producers
            .get_mut(sink)
            .ok_or_else(|| PyValueError::new_err(format!("no sink number {sink}")))?;
        let want = p.ring().event_bytes();
        let mut wrong = None;
        with_bytes(data, |bytes| -> Result<(), WorkerError> {
            if bytes.len() != want {
                wrong = Some(bytes.len());
                return Ok(());
            }
            if let Some(mut slot) = process::claim(p)? {
                let (d, meta) = slot.parts();
                d.copy_from_slice(bytes);
                *meta = m;
                slot.publish();
            }
            Ok(())
        })?
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        if let Some(n) = wrong {
            return Err(PyValueError::new_err(format!(
                "sink '{name}' takes events of {want} bytes, this one has {n}"
            )));
        }
        Ok(())
    }

    /// Ends sink `i`'s stream.
    fn close_sink(&mut self, i: usize) -> PyResult<()> {
        if self.closed.get(i).copied().unwrap_or(true) {
            return Ok(());
        }
        self.sinks()?.producers[i].ring().close();
        self.closed[i] = true;
        Ok(())
    }

    /// True once the stream of source (side 0), sink (1) or observed buffer (2) `i` ended.
    fn is_closed(&self, side: u8, i: usize) -> bool {
        match side {
            1 => self.closed.get(i).copied().unwrap_or(true),
            _ => {
                let names = if side == 0 {
                    &self.worker.sources
                } else {
                    &self.worker.observes
                };
                let Some(b) = names.get(i).and_then(|n| self.plan.buffer(n)) else {
                    return true;
                };
                b.rings
                    .iter()
                    .all(|path| Ring::attach(path, None, None).map_or(true, |r| r.stats().closed))
            }
        }
    }

    /// A copy of the newest event of observed buffer `i` not seen yet, as
    /// `(metadata bytes, data bytes)`, waiting for one; None once its stream ended.
    fn observe(
        &mut self,
        py: Python<'_>,
        i: usize,
    ) -> PyResult<Option<(Py<PyBytes>, Py<PyBytes>)>> {
        if self.observers.is_none() {
            let mut all = Vec::new();
            for name in &self.worker.observes {
                let b = self
                    .plan
                    .buffer(name)
                    .ok_or_else(|| PyRuntimeError::new_err(format!("no buffer '{name}'")))?;
                let dtype = b.dtype();
                let mut rings = Vec::new();
                for path in &b.rings {
                    let ring = Ring::attach(path, Some(&dtype), Some(b.data_length))
                        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                    rings.push(ring.observer());
                }
                all.push(rings);
            }
            self.observers = Some(all);
        }
        let observers = self.observers.as_mut().expect("attached above");
        let rings = observers
            .get_mut(i)
            .ok_or_else(|| PyValueError::new_err(format!("no observed buffer number {i}")))?;
        let (data, meta) = &mut self.scratch;
        loop {
            for o in rings.iter_mut() {
                data.resize(o.ring().event_bytes(), 0);
                let got = o
                    .latest(data, meta)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                if got.is_some() {
                    let mut mb = [0u8; 24];
                    mb[..8].copy_from_slice(&meta.counter.to_le_bytes());
                    mb[8..16].copy_from_slice(&meta.timestamp.to_le_bytes());
                    mb[16..].copy_from_slice(&meta.deadtime.to_le_bytes());
                    return Ok(Some((
                        PyBytes::new(py, &mb).unbind(),
                        PyBytes::new(py, data).unbind(),
                    )));
                }
            }
            if rings.iter().all(|o| o.ring().stats().closed) {
                return Ok(None);
            }
            // A SIGTERM (an observer told to end, see `_end_on_sigterm`) ends the wait.
            py.check_signals()?;
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
        }
    }

    /// `worker 'NAME' process K`, how the run log names this process (see `log`).
    fn who(&self) -> String {
        format!("worker '{}' process {}", self.worker.name, self.process)
    }

    /// Runs the Importer: `next_event()` returns the next event as an array of exactly the
    /// sink's bytes, or None at the end. The engine's importer loop does the rest (counter,
    /// timestamp, dead time, run limits, pause, `drop`), as for a Rust Importer.
    fn run_importer(&mut self, next_event: Py<PyAny>) -> PyResult<()> {
        if self.sinks.is_some() || self.importer_ran {
            return Err(PyRuntimeError::new_err(
                "an Importer must be the only writer of its worker's sink",
            ));
        }
        self.importer_ran = true;
        let error = Arc::new(Mutex::new(None));
        let f = Box::new(PyImporter {
            next_event,
            error: error.clone(),
        });
        let result = process::importer_loop(&self.plan, &self.worker, self.process, f);
        self.closed.iter_mut().for_each(|c| *c = result.is_ok());
        if let Some(e) = error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        result.map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

/// An Importer whose events come from a Python callable.
struct PyImporter {
    next_event: Py<PyAny>,
    /// The Python exception that ended the loop, raised again in the worker function.
    error: Arc<Mutex<Option<PyErr>>>,
}

impl Importer for PyImporter {
    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        Python::attach(|py| {
            let got = self.next_event.call0(py).and_then(|v| {
                if v.is_none(py) {
                    return Ok(None);
                }
                let want = out.data.len();
                let copied = with_bytes(v.bind(py), |b| {
                    if b.len() == want {
                        out.data.copy_from_slice(b);
                        true
                    } else {
                        false
                    }
                })?;
                if copied {
                    Ok(Some(()))
                } else {
                    Err(PyValueError::new_err(format!(
                        "the importer's event does not have the sink's {want} bytes"
                    )))
                }
            });
            match got {
                Ok(Some(())) => Ok(Produced::Event),
                Ok(None) => Ok(Produced::End),
                Err(e) => {
                    *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    Err(WorkerError::Other("the Python generator raised".into()))
                }
            }
        })
    }
}

/// Writes `text` to the run log at Python's logging level `level`: what a worker's `logger`
/// says (`daq_engine._RunLog`, which names the worker in `text`). A function of the module,
/// not of [`Io`]: a handler holding the `Io` would keep it, and the event it holds, alive
/// after the worker function raised.
#[pyfunction]
pub fn log(level: i32, text: &str) {
    // Python's levels: DEBUG 10, INFO 20, WARNING 30, ERROR 40, CRITICAL 50.
    match level {
        l if l >= 40 => tracing::error!("{text}"),
        l if l >= 30 => tracing::warn!("{text}"),
        l if l >= 20 => tracing::info!("{text}"),
        _ => tracing::debug!("{text}"),
    }
}
