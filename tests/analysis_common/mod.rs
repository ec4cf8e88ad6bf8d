//! What the tests of the analysis functions share: buffer shapes and build contexts made as
//! the engine makes them, the simulator and the pulse finder built from a config, and one
//! event asked of a source.

#![allow(dead_code)]

use daq_engine::analysis::pulses::PulseFinder;
use daq_engine::analysis::simulate::SimulatePulses;
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{BufferShape, BuildContext, EventMut, Importer, Produced};
use serde_json::Value;
use std::path::Path;

/// Buffer `name` of events of `len` records with `fields`.
pub fn shape(name: &str, fields: &[(&str, &str)], len: usize) -> BufferShape {
    BufferShape::parse(name, fields.iter().copied(), len).unwrap()
}

/// What the engine gives the build of `worker` with config `cfg`, sources `src` and sinks
/// `sink`.
pub fn ctx(worker: &str, cfg: Value, src: &[&BufferShape], sink: &[&BufferShape]) -> BuildContext {
    BuildContext::for_test(
        worker,
        cfg,
        src.iter().map(|s| (*s).clone()).collect(),
        sink.iter().map(|s| (*s).clone()).collect(),
    )
}

/// As [`ctx`] for the exporter or observer `worker` reading `src`, its run directory `dir`
/// (where it writes its files).
pub fn ctx_in(dir: &Path, worker: &str, cfg: Value, src: &[&BufferShape]) -> BuildContext {
    let mut c = ctx(worker, cfg, src, &[]);
    c.run_dir = dir.to_path_buf();
    c
}

/// `simulate.pulses` as worker `worker` with config `cfg`, into `raw`.
pub fn simulator(worker: &str, cfg: Value, raw: &BufferShape) -> SimulatePulses {
    SimulatePulses::build(&ctx(worker, cfg, &[], &[raw])).unwrap()
}

/// `process.pulses` as worker `worker` with config `cfg`, from `raw` into `feat`.
pub fn pulse_finder(
    worker: &str,
    cfg: Value,
    raw: &BufferShape,
    feat: &BufferShape,
) -> PulseFinder {
    PulseFinder::build(&ctx(worker, cfg, &[raw], &[feat])).unwrap()
}

/// Asks `source` for its next event into `data` and `meta`: what it produced.
pub fn next_of(
    source: &mut impl Importer,
    data: &mut [u8],
    meta: &mut Metadata,
    dtype: &Dtype,
) -> Produced {
    source.next(&mut EventMut { data, meta, dtype }).unwrap()
}
