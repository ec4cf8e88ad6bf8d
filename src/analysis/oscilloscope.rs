//! `observe.oscilloscope`: keeps the latest observed event's channels, converted to volts
//! (`scale`, `offset`) on a time axis (`sample_interval`), for the monitoring view.
//!
//! What it does with them: at most once per `update_interval` it copies the event into its
//! own trace buffers (allocated in `build`) and replaces `run_dir/oscilloscope_<worker>.json`
//! atomically (temporary file + rename), so a viewer polling the file never sees half a trace.
//! The same trace is available in-process through [`Oscilloscope::latest`].
//!
//! JSON: `{"worker", "counter", "timestamp", "sample_interval", "time": [s…],
//! "channels": {"<name>": [V…]}}`.
//!
//! Guarantees: never holds the writer back (it only sees copies the engine hands it); events
//! arriving faster than `update_interval` are ignored without work. Writing the JSON (at most
//! once per `update_interval`) allocates and does file I/O: an Observer runs beside the data
//! path, not on it.

use super::trace::{channels, one_source_or_observed, positive, FieldAccess};
use crate::dtype::Metadata;
use crate::worker::{
    Arity, BuildContext, ConfigKey, EventRef, FunctionSpec, KeyType, Observer, Template,
    WorkerError,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The declaration of `observe.oscilloscope`.
pub const SPEC: FunctionSpec = FunctionSpec {
    name: "observe.oscilloscope",
    template: Template::Observer,
    summary: "Keeps the latest event's channels in volts with a time axis, at most once per \
              update_interval, and writes them to oscilloscope_<worker>.json in the run directory.",
    sources: Arity::NONE,
    sinks: Arity::NONE,
    observes: Arity::ONE,
    keys: &[
        ConfigKey {
            name: "update_interval",
            ty: KeyType::Float,
            required: false,
            default: Some("1.0"),
            doc: "least time between two kept traces (s)",
        },
        ConfigKey {
            name: "channels",
            ty: KeyType::List,
            required: false,
            default: Some("all fields"),
            doc: "channels to show",
        },
        ConfigKey {
            name: "sample_interval",
            ty: KeyType::Float,
            required: false,
            default: Some("1.0"),
            doc: "time between samples (s); 1 gives the axis in samples",
        },
        ConfigKey {
            name: "scale",
            ty: KeyType::Float,
            required: false,
            default: Some("1.0"),
            doc: "volts per unit of the field (e.g. per ADC count)",
        },
        ConfigKey {
            name: "offset",
            ty: KeyType::Float,
            required: false,
            default: Some("0.0"),
            doc: "volts added after scaling",
        },
    ],
};

/// The latest kept trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceView<'a> {
    /// The event's metadata.
    pub meta: Metadata,
    /// Seconds per sample.
    pub sample_interval: f64,
    /// Channel names and values in volts.
    pub channels: &'a [(String, Vec<f32>)],
}

impl TraceView<'_> {
    /// Time of sample `i` (s).
    pub fn time(&self, i: usize) -> f64 {
        i as f64 * self.sample_interval
    }
}

/// `observe.oscilloscope`.
pub struct Oscilloscope {
    worker: String,
    path: PathBuf,
    fields: Vec<FieldAccess>,
    traces: Vec<(String, Vec<f32>)>,
    interval: Duration,
    last: Option<Instant>,
    meta: Metadata,
    sample_interval: f64,
    scale: f32,
    offset: f32,
    json: Vec<u8>,
    kept: u64,
}

impl Oscilloscope {
    /// Builds it for the observed buffer.
    pub fn build(ctx: &BuildContext) -> Result<Oscilloscope, WorkerError> {
        let buf = one_source_or_observed(ctx)?;
        let fields = channels(ctx, "channels", buf)?;
        let scale = ctx.config.f64_or("scale", 1.0)?;
        let offset = ctx.config.f64_or("offset", 0.0)?;
        if !scale.is_finite() || !offset.is_finite() {
            return Err(ctx
                .config
                .error("scale", "scale and offset must be finite")
                .into());
        }
        Ok(Oscilloscope {
            worker: ctx.worker.clone(),
            path: ctx
                .run_dir
                .join(format!("oscilloscope_{}.json", ctx.worker)),
            traces: fields
                .iter()
                .map(|f| (f.name.clone(), vec![0f32; buf.data_length]))
                .collect(),
            fields,
            interval: Duration::from_secs_f64(positive(ctx, "update_interval", 1.0)?),
            last: None,
            meta: Metadata::default(),
            sample_interval: positive(ctx, "sample_interval", 1.0)?,
            scale: scale as f32,
            offset: offset as f32,
            json: Vec::with_capacity(64 * 1024),
            kept: 0,
        })
    }

    /// The latest kept trace, or `None` before the first.
    pub fn latest(&self) -> Option<TraceView<'_>> {
        (self.kept > 0).then_some(TraceView {
            meta: self.meta,
            sample_interval: self.sample_interval,
            channels: &self.traces,
        })
    }

    /// Traces kept so far.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// The file the trace is written to.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn write(&mut self) -> Result<(), WorkerError> {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            worker: &'a str,
            counter: i64,
            timestamp: f64,
            sample_interval: f64,
            time: Vec<f64>,
            channels: serde_json::Map<String, serde_json::Value>,
        }
        let n = self.traces.first().map_or(0, |t| t.1.len());
        let out = Out {
            worker: &self.worker,
            counter: self.meta.counter,
            timestamp: self.meta.timestamp,
            sample_interval: self.sample_interval,
            time: (0..n).map(|i| i as f64 * self.sample_interval).collect(),
            channels: self
                .traces
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect(),
        };
        self.json.clear();
        serde_json::to_writer(&mut self.json, &out)
            .map_err(|e| WorkerError::Other(e.to_string()))?;
        crate::worker::write_atomically(&self.path, &self.json)
    }
}

impl Observer for Oscilloscope {
    fn observe(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return Ok(());
        }
        self.last = Some(now);
        for (f, (_, t)) in self.fields.iter().zip(self.traces.iter_mut()) {
            let n = f.load(event.data, t);
            for v in &mut t[..n] {
                *v = *v * self.scale + self.offset;
            }
        }
        self.meta = event.meta;
        self.kept += 1;
        self.write()
    }
}
