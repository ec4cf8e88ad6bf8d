//! The built-in worker functions a physicist selects by name in a setup, and the physics
//! checks behind them.
//!
//! | name | template | module |
//! |---|---|---|
//! | `simulate.pulses` | Importer | [`simulate`] |
//! | `filter.threshold`, `filter.coincidence`, `filter.prescale` | Filter | [`trigger`] |
//! | `process.baseline`, `process.pulses`, `process.pulse_pairs`, `process.downsample` | Processor | [`pulses`] |
//! | `analyzers.pha` (mimoCoRB2's name: scipy's `find_peaks`) | Processor | [`peaks`] |
//! | `process.rate` | Processor | [`rate`] |
//! | `process.coincidence` (two sources) | Processor | [`coincidence`] |
//! | `export.histogram` (and `exporters.histogram`), `export.csv`, `export.drain` | Exporter | [`histogram`], [`csv`] |
//! | `observe.oscilloscope` | Observer | [`oscilloscope`] |
//!
//! Every function is a struct implementing one template trait of [`crate::worker`], a
//! `SPEC` constant declaring its config keys, and a `build` constructor that checks the
//! config *and* the shapes of its buffers, so a wrong setup fails before the run starts.
//!
//! Guarantees: after `build`, the per-event methods (`next`, `select`, `process`, `consume`)
//! allocate nothing and never panic on data; every scratch buffer is sized in `build`.
//! Must never: hold a lock, block (other than `simulate.pulses` in real-time mode sleeping
//! to its rate), or write files per event (files are written in `flush`/`finish`).
//!
//! [`fit`] holds the maximum-likelihood fits (exponential lifetime, gaussian peaks) that
//! `export.histogram` can run at the end of a run; [`mod@bench`] measures the hot functions.

pub mod bench;
pub mod coincidence;
pub mod csv;
pub mod fit;
pub mod histogram;
pub mod oscilloscope;
pub mod peaks;
pub mod plumbing;
pub mod pulses;
pub mod rate;
pub mod simulate;
pub mod trace;
pub mod trigger;

use crate::dtype::Metadata;
use crate::worker::{Build, Emit, EventMut, Function, WorkerError};

/// Every function of this module with its constructor, ready for the engine's registry.
pub fn functions() -> Vec<Function> {
    vec![
        Function {
            spec: simulate::SPEC,
            build: Build::Importer(|c| Ok(Box::new(simulate::SimulatePulses::build(c)?))),
        },
        Function {
            spec: trigger::THRESHOLD_SPEC,
            build: Build::Filter(|c| Ok(Box::new(trigger::Threshold::build(c)?))),
        },
        Function {
            spec: trigger::COINCIDENCE_SPEC,
            build: Build::Filter(|c| Ok(Box::new(trigger::Coincidence::build(c)?))),
        },
        Function {
            spec: trigger::PRESCALE_SPEC,
            build: Build::Filter(|c| Ok(Box::new(trigger::Prescale::build(c)?))),
        },
        Function {
            spec: pulses::BASELINE_SPEC,
            build: Build::Processor(|c| Ok(Box::new(pulses::Baseline::build(c)?))),
        },
        Function {
            spec: pulses::PULSES_SPEC,
            build: Build::Processor(|c| Ok(Box::new(pulses::PulseFinder::build(c)?))),
        },
        Function {
            spec: pulses::PULSE_PAIRS_SPEC,
            build: Build::Processor(|c| Ok(Box::new(pulses::PulsePairs::build(c)?))),
        },
        Function {
            spec: pulses::DOWNSAMPLE_SPEC,
            build: Build::Processor(|c| Ok(Box::new(pulses::Downsample::build(c)?))),
        },
        Function {
            spec: peaks::PHA_SPEC,
            build: Build::Processor(|c| Ok(Box::new(peaks::Pha::build(c)?))),
        },
        Function {
            spec: coincidence::SPEC,
            build: Build::Processor(|c| Ok(Box::new(coincidence::CoincidenceWorker::build(c)?))),
        },
        Function {
            spec: rate::RATE_SPEC,
            build: Build::Processor(|c| Ok(Box::new(rate::Rate::build(c)?))),
        },
        Function {
            spec: histogram::SPEC,
            build: Build::Exporter(|c| Ok(Box::new(histogram::HistogramExport::build(c)?))),
        },
        Function {
            spec: histogram::MIMOCORB2_SPEC,
            build: Build::Exporter(|c| {
                Ok(Box::new(histogram::HistogramExport::build_mimocorb2(c)?))
            }),
        },
        Function {
            spec: csv::CSV_SPEC,
            build: Build::Exporter(|c| Ok(Box::new(csv::CsvExport::build(c)?))),
        },
        Function {
            spec: csv::DRAIN_SPEC,
            build: Build::Exporter(|c| Ok(Box::new(csv::Drain::build(c)?))),
        },
        Function {
            spec: oscilloscope::SPEC,
            build: Build::Observer(|c| Ok(Box::new(oscilloscope::Oscilloscope::build(c)?))),
        },
    ]
}

/// An [`Emit`] that keeps every emitted event in memory, for in-process chains in tests,
/// benchmarks and examples. It allocates per event, so it is never used by the engine.
pub struct EventCollector {
    /// Record bytes per sink (`data_length × record_size`).
    sizes: Vec<usize>,
    /// The buffers' record types, per sink.
    dtypes: Vec<crate::dtype::Dtype>,
    /// What was emitted, per sink: metadata and record bytes.
    pub events: Vec<Vec<(Metadata, Vec<u8>)>>,
    /// The metadata each new slot starts with (the input event's, as the engine does).
    pub input_meta: Metadata,
}

impl EventCollector {
    /// A collector for these sinks.
    pub fn new(sinks: &[crate::worker::BufferShape]) -> EventCollector {
        EventCollector {
            sizes: sinks
                .iter()
                .map(|s| s.data_length * s.dtype.record_size())
                .collect(),
            dtypes: sinks.iter().map(|s| s.dtype.clone()).collect(),
            events: sinks.iter().map(|_| Vec::new()).collect(),
            input_meta: Metadata::default(),
        }
    }

    /// Forgets what was collected.
    pub fn clear(&mut self) {
        for e in &mut self.events {
            e.clear();
        }
    }
}

impl Emit for EventCollector {
    fn emit(
        &mut self,
        sink: usize,
        fill: &mut dyn FnMut(&mut EventMut<'_>) -> Result<(), WorkerError>,
    ) -> Result<(), WorkerError> {
        let size = *self.sizes.get(sink).ok_or(WorkerError::NoSink(sink))?;
        let mut data = vec![0u8; size];
        let mut meta = self.input_meta;
        {
            let mut ev = EventMut {
                data: &mut data,
                meta: &mut meta,
                dtype: &self.dtypes[sink],
            };
            fill(&mut ev)?;
        }
        self.events[sink].push((meta, data));
        Ok(())
    }
}
