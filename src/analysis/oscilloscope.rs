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
use crate::key;
use crate::worker::{
    Arity, BuildContext, EventRef, FunctionSpec, Key, MaybeKey, Observer, Strings, Template,
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
        UPDATE_INTERVAL.spec(),
        CHANNELS.spec(),
        SAMPLE_INTERVAL.spec(),
        SCALE.spec(),
        OFFSET.spec(),
    ],
};

const UPDATE_INTERVAL: Key<f64> = key!(
    "update_interval",
    1.0,
    "least time between two kept traces (s)"
);
const CHANNELS: MaybeKey<Strings> = key!("channels", absent: "all fields", "channels to show");
const SAMPLE_INTERVAL: Key<f64> = key!(
    "sample_interval",
    1.0,
    "time between samples (s); 1 gives the axis in samples"
);
const SCALE: Key<f64> = key!(
    "scale",
    1.0,
    "volts per unit of the field (e.g. per ADC count)"
);
const OFFSET: Key<f64> = key!("offset", 0.0, "volts added after scaling");

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
        let fields = channels(ctx, CHANNELS, buf)?;
        let scale = ctx.config.get(SCALE)?;
        let offset = ctx.config.get(OFFSET)?;
        if !scale.is_finite() || !offset.is_finite() {
            return Err(ctx
                .config
                .error(SCALE.name, "scale and offset must be finite")
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
            interval: Duration::from_secs_f64(positive(ctx, UPDATE_INTERVAL)?),
            last: None,
            meta: Metadata::default(),
            sample_interval: positive(ctx, SAMPLE_INTERVAL)?,
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
