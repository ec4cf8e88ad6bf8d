//! `observe.oscilloscope`: keeps the latest observed event's channels, converted to volts
//! (`scale`, `offset`) on a time axis (`sample_interval`), for the monitoring view.
//!
//! What it does with them: at most once per `update_interval` it copies the event into its
//! own trace buffers (allocated in `build`) and replaces `run_dir/oscilloscope_<worker>.json`
//! atomically (temporary file + rename), so a viewer polling the file never sees half a trace.
//! The same trace is available in-process through [`Oscilloscope::latest`].
//!
//! JSON: `{"worker", "counter", "timestamp", "sample_interval", "time": [s…],
//! "channels": {"<name>": [V…]}, "time_unit", "value_unit", "ylim", "trigger_level"}` (the
//! last four `null` when not set).
//!
//! mimoCoRB2's keys (its `observers.oscilloscope`, read in mimocorb2 0.0.4's source):
//! `t_scaling: [scale, offset, unit]` gives the time of sample i as `i·scale + offset` in
//! `unit`; `y_scaling: [scale, offset, unit]` the same for the values (mimoCoRB2 only puts the
//! unit on the axis and plots the stored values; its docstring says it scales them, which is
//! what a user writing it expects, so here it does); `ylim: [min, max]` fixes the value axis
//! and `trigger_level` is drawn as a line — both on the web page.
//!
//! Guarantees: never holds the writer back (it only sees copies the engine hands it); events
//! arriving faster than `update_interval` are ignored without work. Writing the JSON (at most
//! once per `update_interval`) allocates and does file I/O: an Observer runs beside the data
//! path, not on it.

use super::trace::{channels, one_source_or_observed, positive, positive_seconds, FieldAccess};
use crate::dtype::Metadata;
use crate::keys;
use crate::worker::{
    BuildContext, EventRef, FunctionSpec, Items, Key, MaybeKey, Numbers, Observer, Strings,
    Template, WorkerError,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The declaration of `observe.oscilloscope`.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "observe.oscilloscope",
    Template::Observer,
    "Keeps the latest event's channels in volts with a time axis, at most once per \
     update_interval, and writes them to oscilloscope_<worker>.json in the run directory.",
    KEYS,
);

keys! {
    list KEYS;
    const UPDATE_INTERVAL: Key<f64> = ("update_interval", 1.0, "least time between two kept traces (s)");
    const CHANNELS: MaybeKey<Strings> = ("channels", absent: "all fields", "channels to show");
    const SAMPLE_INTERVAL: Key<f64> = ("sample_interval", 1.0, "time between samples (s); 1 gives the axis in samples");
    const SCALE: Key<f64> = ("scale", 1.0, "volts per unit of the field (e.g. per ADC count)");
    const OFFSET: Key<f64> = ("offset", 0.0, "volts added after scaling");
    const T_SCALING: MaybeKey<Items> = ("t_scaling", absent: "sample_interval", "mimoCoRB2's [scale, offset, unit]: sample i is at i·scale + offset, in unit (instead of sample_interval)");
    const Y_SCALING: MaybeKey<Items> = ("y_scaling", absent: "scale, offset", "mimoCoRB2's [scale, offset, unit]: values shown as stored·scale + offset, in unit (instead of scale and offset)");
    const YLIM: MaybeKey<Numbers> = ("ylim", absent: "autoscale", "[min, max] of the value axis on the web page");
    const TRIGGER_LEVEL: MaybeKey<f64> = ("trigger_level", absent: "none", "drawn as a dotted line on the web page (in the shown units)");
}

/// A mimoCoRB2 `[scale, offset, unit]` triple (`unit` may be left out).
fn scaling(
    ctx: &BuildContext,
    key: MaybeKey<Items>,
) -> Result<Option<(f64, f64, Option<String>)>, WorkerError> {
    let Some(items) = ctx.config.get(key)? else {
        return Ok(None);
    };
    let bad = || {
        WorkerError::from(ctx.config.error(
            key.name,
            "expected [scale, offset, unit], e.g. [4.0e-9, 0, 's'], with finite numbers",
        ))
    };
    let (scale, offset, unit) = match items {
        [s, o] => (s.as_f64(), o.as_f64(), None),
        [s, o, u] => (
            s.as_f64(),
            o.as_f64(),
            Some(u.as_str().ok_or_else(bad)?.to_string()),
        ),
        _ => return Err(bad()),
    };
    match (scale, offset) {
        (Some(s), Some(o)) if s.is_finite() && o.is_finite() && s != 0.0 => Ok(Some((s, o, unit))),
        _ => Err(bad()),
    }
}

/// The latest kept trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceView<'a> {
    /// The event's metadata.
    pub meta: Metadata,
    /// Seconds (or `t_scaling`'s unit) per sample.
    pub sample_interval: f64,
    /// Time of sample 0.
    pub time_offset: f64,
    /// Channel names and values in volts.
    pub channels: &'a [(String, Vec<f32>)],
}

impl TraceView<'_> {
    /// Time of sample `i` (s).
    pub fn time(&self, i: usize) -> f64 {
        i as f64 * self.sample_interval + self.time_offset
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
    time_offset: f64,
    scale: f32,
    offset: f32,
    time_unit: Option<String>,
    value_unit: Option<String>,
    ylim: Option<[f64; 2]>,
    trigger_level: Option<f64>,
    json: Vec<u8>,
    kept: u64,
}

impl Oscilloscope {
    /// Builds it for the observed buffer.
    pub fn build(ctx: &BuildContext) -> Result<Oscilloscope, WorkerError> {
        let buf = one_source_or_observed(ctx)?;
        let fields = channels(ctx, CHANNELS, buf)?;
        let c = &ctx.config;
        let t_scaling = scaling(ctx, T_SCALING)?;
        let y_scaling = scaling(ctx, Y_SCALING)?;
        let both = |a: &str, b: &str| {
            WorkerError::from(c.error(a, format!("give either {a} or {b}, not both")))
        };
        if t_scaling.is_some() && c.given(SAMPLE_INTERVAL)?.is_some() {
            return Err(both(T_SCALING.name, SAMPLE_INTERVAL.name));
        }
        if y_scaling.is_some() && (c.given(SCALE)?.is_some() || c.given(OFFSET)?.is_some()) {
            return Err(both(Y_SCALING.name, "scale/offset"));
        }
        let (scale, offset, value_unit) = match y_scaling {
            Some(y) => y,
            None => (c.get(SCALE)?, c.get(OFFSET)?, None),
        };
        if !scale.is_finite() || !offset.is_finite() {
            return Err(c
                .error(SCALE.name, "scale and offset must be finite")
                .into());
        }
        let (sample_interval, time_offset, time_unit) = match t_scaling {
            Some(t) => t,
            None => (positive(ctx, SAMPLE_INTERVAL)?, 0.0, None),
        };
        let ylim = match c.get(YLIM)? {
            None => None,
            Some(l) => match l.as_slice() {
                &[lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi => Some([lo, hi]),
                _ => {
                    return Err(c
                        .error(YLIM.name, "expected [min, max] with min < max")
                        .into())
                }
            },
        };
        let trigger_level = c.get(TRIGGER_LEVEL)?;
        if trigger_level.is_some_and(|l| !l.is_finite()) {
            return Err(c
                .error(TRIGGER_LEVEL.name, "must be a finite number")
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
            interval: positive_seconds(ctx, UPDATE_INTERVAL)?,
            last: None,
            meta: Metadata::default(),
            sample_interval,
            time_offset,
            scale: scale as f32,
            offset: offset as f32,
            time_unit,
            value_unit,
            ylim,
            trigger_level,
            json: Vec::with_capacity(64 * 1024),
            kept: 0,
        })
    }

    /// The latest kept trace, or `None` before the first.
    pub fn latest(&self) -> Option<TraceView<'_>> {
        (self.kept > 0).then_some(TraceView {
            meta: self.meta,
            sample_interval: self.sample_interval,
            time_offset: self.time_offset,
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
            time_unit: Option<&'a str>,
            value_unit: Option<&'a str>,
            ylim: Option<[f64; 2]>,
            trigger_level: Option<f64>,
        }
        let n = self.traces.first().map_or(0, |t| t.1.len());
        let out = Out {
            worker: &self.worker,
            counter: self.meta.counter,
            timestamp: self.meta.timestamp,
            sample_interval: self.sample_interval,
            time: (0..n)
                .map(|i| i as f64 * self.sample_interval + self.time_offset)
                .collect(),
            channels: self
                .traces
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect(),
            time_unit: self.time_unit.as_deref(),
            value_unit: self.value_unit.as_deref(),
            ylim: self.ylim,
            trigger_level: self.trigger_level,
        };
        self.json.clear();
        serde_json::to_writer(&mut self.json, &out)?;
        crate::worker::write_atomically(&self.path, &self.json)
    }
}

impl Observer for Oscilloscope {
    fn interval(&self) -> Duration {
        self.interval
    }

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
