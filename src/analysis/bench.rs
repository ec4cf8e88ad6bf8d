//! Throughput of the hot analysis functions on the reference event: 4 channels × 4096
//! float32 samples (64 KiB), the size a 4-channel digitiser delivers. `daq-engine bench
//! analysis` prints [`run`]'s report; `benches/analysis.rs` measures the same with criterion.
//!
//! Each figure is events per second on one core, measured by calling the function directly
//! on prepared events (no rings): the cost of the analysis alone, to compare with the rings'
//! throughput and with the 1 kHz goal.
//!
//! Guarantees: deterministic inputs (fixed seed); the measured calls allocate nothing.

use super::pulses::PulseFinder;
use super::simulate::SimulatePulses;
use super::trigger::Threshold;
use crate::dtype::{Dtype, Metadata, Scalar};
use crate::worker::{
    BufferShape, BuildContext, Emit, EventMut, EventRef, Filter, Importer, Processor, WorkerError,
};
use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Channels of the reference event.
pub const CHANNELS: usize = 4;
/// Samples per channel of the reference event.
pub const SAMPLES: usize = 4096;
/// The event rate the analysis must sustain with room to spare (Hz).
pub const GOAL_RATE: f64 = 1000.0;

/// One measured function.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Events per second on one core.
    pub events_per_s: f64,
    /// Samples (all channels) per second.
    pub samples_per_s: f64,
    /// How many times the 1 kHz goal this is.
    pub margin: f64,
}

/// What `daq-engine bench analysis` prints.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// Channels per event.
    pub channels: usize,
    /// Samples per channel.
    pub samples: usize,
    /// Bytes per event.
    pub event_bytes: usize,
    /// The figures, one per function.
    pub figures: Vec<Figure>,
}

impl Report {
    /// The figure called `name`.
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "analysis on {} × {} float32 samples ({} KiB per event), one core:",
            self.channels,
            self.samples,
            self.event_bytes / 1024
        )?;
        for x in &self.figures {
            writeln!(
                f,
                "  {:<42} {:>10.0} events/s  {:>8.1} Msamples/s  {:>7.1} × the 1 kHz goal",
                x.name,
                x.events_per_s,
                x.samples_per_s / 1e6,
                x.margin
            )?;
        }
        Ok(())
    }
}

/// An [`Emit`] writing into one reused slot: what a ring does, minus the ring.
pub struct SlotEmit {
    data: Vec<u8>,
    meta: Metadata,
    dtype: Dtype,
    /// Events emitted.
    pub emitted: u64,
}

impl SlotEmit {
    /// A slot for `shape`.
    pub fn new(shape: &BufferShape) -> SlotEmit {
        SlotEmit {
            data: vec![0; shape.data_length * shape.dtype.record_size()],
            meta: Metadata::default(),
            dtype: shape.dtype.clone(),
            emitted: 0,
        }
    }
}

impl Emit for SlotEmit {
    fn emit(
        &mut self,
        _sink: usize,
        fill: &mut dyn FnMut(&mut EventMut<'_>) -> Result<(), WorkerError>,
    ) -> Result<(), WorkerError> {
        let mut ev = EventMut {
            data: &mut self.data,
            meta: &mut self.meta,
            dtype: &self.dtype,
        };
        fill(&mut ev)?;
        self.emitted += 1;
        Ok(())
    }
}

/// The reference waveform buffer: `ch0`…`ch3` float32, 4096 samples.
pub fn waveform_shape() -> BufferShape {
    let names = ["ch0", "ch1", "ch2", "ch3"];
    BufferShape {
        name: "waveforms".into(),
        dtype: Dtype::new(names.iter().map(|n| (*n, Scalar::F32))).expect("valid dtype"),
        data_length: SAMPLES,
    }
}

/// The simulator on [`waveform_shape`] the measurements use, with this noise generator
/// (`table` or `ziggurat`) and seed.
pub fn simulator(noise_generator: &str, seed: i64) -> Result<SimulatePulses, WorkerError> {
    SimulatePulses::build(&BuildContext::for_test(
        "bench_source",
        serde_json::json!({
            "sample_interval": 4e-9, "pretrigger_samples": 400, "noise": 0.002,
            "noise_generator": noise_generator, "decay_fraction": 0.5, "seed": seed,
        }),
        vec![],
        vec![waveform_shape()],
    ))
}

/// 64 events of the simulator (`table` noise, this seed) with pulses, half of them with a
/// second pulse: the input the trigger and pulse-finder measurements cycle through.
pub fn prepared_events(seed: i64) -> Result<Vec<Vec<u8>>, WorkerError> {
    let shape = waveform_shape();
    let bytes = shape.data_length * shape.dtype.record_size();
    let mut sim = simulator("table", seed)?;
    let mut meta = Metadata::default();
    (0..64)
        .map(|_| {
            let mut data = vec![0u8; bytes];
            let mut ev = EventMut {
                data: &mut data,
                meta: &mut meta,
                dtype: &shape.dtype,
            };
            sim.next(&mut ev).map(|_| data)
        })
        .collect()
}

/// The feature buffer `process.pulses` writes in the measurements: one record per pulse.
pub fn pulse_features() -> BufferShape {
    BufferShape::parse(
        "pulses",
        [
            ("channel", "u1"),
            ("time", "f8"),
            ("height", "f4"),
            ("area", "f4"),
            ("width", "f4"),
        ],
        1,
    )
    .expect("valid dtype")
}

/// `process.pulses` from [`waveform_shape`] into [`pulse_features`], as measured.
pub fn pulse_finder() -> Result<PulseFinder, WorkerError> {
    PulseFinder::build(&BuildContext::for_test(
        "bench_pulses",
        serde_json::json!({"threshold": 0.05, "sample_interval": 4e-9}),
        vec![waveform_shape()],
        vec![pulse_features()],
    ))
}

/// `filter.threshold` on [`waveform_shape`] with `config` (its `level`, …), as measured.
pub fn threshold(config: serde_json::Value) -> Result<Threshold, WorkerError> {
    Threshold::build(&BuildContext::for_test(
        "bench_trigger",
        config,
        vec![waveform_shape()],
        vec![waveform_shape()],
    ))
}

/// Calls `step` until `min_time` has passed (at least 10 times); returns calls per second.
fn rate(
    min_time: Duration,
    mut step: impl FnMut(usize) -> Result<(), WorkerError>,
) -> Result<f64, WorkerError> {
    let start = Instant::now();
    let mut n = 0usize;
    while n < 10 || start.elapsed() < min_time {
        for _ in 0..10 {
            step(n)?;
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Measures the simulator, the threshold trigger and the pulse finder, each for about
/// `min_time`.
pub fn run(min_time: Duration) -> Result<Report, WorkerError> {
    let shape = waveform_shape();
    let bytes = shape.data_length * shape.dtype.record_size();
    let samples = (CHANNELS * SAMPLES) as f64;
    let mut figures = Vec::new();
    let mut push = |name: &str, eps: f64| {
        figures.push(Figure {
            name: name.to_string(),
            events_per_s: eps,
            samples_per_s: eps * samples,
            margin: eps / GOAL_RATE,
        })
    };

    let mut slot = vec![0u8; bytes];
    let mut meta = Metadata::default();
    for (name, gen) in [
        ("simulate.pulses (noise table)", "table"),
        ("simulate.pulses (ziggurat noise)", "ziggurat"),
    ] {
        let mut sim = simulator(gen, 7)?;
        let eps = rate(min_time, |_| {
            let mut ev = EventMut {
                data: &mut slot,
                meta: &mut meta,
                dtype: &shape.dtype,
            };
            black_box(sim.next(&mut ev)?);
            Ok(())
        })?;
        push(name, eps);
    }

    let events = prepared_events(11)?;
    let ev = |i: usize| EventRef {
        data: &events[i % events.len()],
        meta: Metadata::default(),
        dtype: &shape.dtype,
    };

    let mut never = threshold(serde_json::json!({"level": 100.0}))?;
    let eps = rate(min_time, |i| {
        black_box(never.select(&ev(i))?);
        Ok(())
    })?;
    push("filter.threshold (no crossing: every sample)", eps);

    let mut trig = threshold(serde_json::json!({"level": 0.05, "channels": ["ch3"]}))?;
    let eps = rate(min_time, |i| {
        black_box(trig.select(&ev(i))?);
        Ok(())
    })?;
    push("filter.threshold (pulse on the last channel)", eps);

    let mut finder = pulse_finder()?;
    let mut out = SlotEmit::new(&pulse_features());
    let eps = rate(min_time, |i| finder.process(&ev(i), &mut out))?;
    push("process.pulses (4 channels, 1–2 pulses each)", eps);

    // mimoCoRB2's analyzers.pha on one of the channels, every find_peaks condition that
    // needs the prominence walk, one record per peak.
    let peaks = BufferShape::parse(
        "peaks",
        [
            ("position", "i4"),
            ("peak_heights", "f8"),
            ("prominences", "f8"),
            ("widths", "f8"),
        ],
        1,
    )
    .map_err(|e| WorkerError::failed("bench pha: the peaks dtype", e))?;
    let mut pha = super::peaks::Pha::build(&BuildContext::for_test(
        "bench_pha",
        serde_json::json!({"height": 0.05, "prominence": 0.02, "width": 1, "distance": 5,
                           "all_peaks": true}),
        vec![shape.clone()],
        vec![peaks.clone()],
    ))?;
    let mut out = SlotEmit::new(&peaks);
    let eps = rate(min_time, |i| pha.process(&ev(i), &mut out))?;
    push("analyzers.pha (find_peaks on 1 channel of 4)", eps);

    Ok(Report {
        channels: CHANNELS,
        samples: SAMPLES,
        event_bytes: bytes,
        figures,
    })
}
