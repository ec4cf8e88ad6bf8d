//! A user's own worker function, loaded by daq-engine from a shared library.
//!
//! Build it with `cargo build --release -p user-filter` and name it in a setup:
//!
//! ```yaml
//!   big_pulses:
//!     file: ../target/release/libuser_filter.so
//!     function: user.peak_above
//!     sources: [raw]
//!     sinks: [big]
//!     config: {channel: ch0, level: 0.5}
//! ```

use daq_engine::worker::{Build, Function};
use daq_engine::worker::{
    BuildContext, ConfigKey, EventRef, Filter, FunctionSpec, KeyType, SinkMask, Template,
    WorkerError,
};

/// Passes events whose `channel` reaches `level` anywhere in the trace.
pub struct PeakAbove {
    channel: String,
    level: f32,
}

/// The function's declaration: what `daq-engine check` validates a setup against.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "user.peak_above",
    Template::Filter,
    "Passes events whose channel reaches `level` (an example of a user library).",
    &[
        ConfigKey {
            name: "channel",
            ty: KeyType::Str,
            required: true,
            default: None,
            doc: "float32 field to look at",
        },
        ConfigKey {
            name: "level",
            ty: KeyType::Float,
            required: true,
            default: None,
            doc: "pass when any sample is at or above this",
        },
    ],
);

impl PeakAbove {
    fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let channel = ctx.config.str_or("channel", "")?.to_string();
        let level = ctx.config.f64("level")? as f32;
        let src = &ctx.sources[0];
        // Check the field now, so a wrong setup fails before the run, not at the first event.
        let probe = vec![0u8; src.dtype.record_size()];
        daq_engine::dtype::Column::<f32>::new(&src.dtype, &probe, &channel).map_err(|e| {
            WorkerError::Column {
                buffer: src.name.clone(),
                source: e,
            }
        })?;
        Ok(PeakAbove { channel, level })
    }
}

impl Filter for PeakAbove {
    fn select(&mut self, event: &EventRef<'_>) -> Result<SinkMask, WorkerError> {
        let col = event
            .column::<f32>(&self.channel)
            .map_err(|e| WorkerError::Other(e.to_string()))?;
        let hit = col.iter().any(|v| v >= self.level);
        Ok(SinkMask::from(hit))
    }
}

/// The function with its constructor.
pub const FUNCTION: Function = Function {
    spec: SPEC,
    build: Build::Filter(|c| Ok(Box::new(PeakAbove::build(c)?))),
};

daq_engine::export_functions![FUNCTION];
