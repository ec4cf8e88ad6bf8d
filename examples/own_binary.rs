//! A user's own `daq-engine` binary: the built-in functions plus one of their own, compiled
//! in. Every worker process is this same binary, so the function is there in all of them.
//!
//! `cargo run --example own_binary -- setup.yaml` behaves exactly like `daq-engine setup.yaml`
//! and additionally knows `user.every_nth`.

use daq_engine::key;
use daq_engine::worker::{Build, Function, Registry};
use daq_engine::worker::{
    BuildContext, EventRef, Filter, FunctionSpec, Key, SinkMask, Template, WorkerError,
};

/// The config key, declared once with its type and doc: the spec lists it, `daq-engine
/// check` types the setup's value against it, and the build reads it through it.
const NTH: Key<u64> = key!("nth", required, "keep one event in n");

/// Passes every n-th event by its counter.
struct EveryNth(i64);

/// A filter: one source, one or more sinks (as every filter; `with_sources`/`with_sinks`
/// would say otherwise).
const SPEC: FunctionSpec = FunctionSpec::new(
    "user.every_nth",
    Template::Filter,
    "Passes events whose counter is a multiple of nth (an example of a compiled-in user function).",
    &[NTH.spec()],
);

impl Filter for EveryNth {
    fn select(&mut self, event: &EventRef<'_>) -> Result<SinkMask, WorkerError> {
        Ok(SinkMask::from(event.meta.counter % self.0 == 0))
    }
}

fn build(ctx: &BuildContext) -> Result<Box<dyn Filter>, WorkerError> {
    let n = ctx.config.get(NTH)?;
    if n == 0 {
        return Err(ctx.config.error(NTH.name, "must be at least 1").into());
    }
    Ok(Box::new(EveryNth(n as i64)))
}

fn main() {
    let mut registry = Registry::builtin();
    registry.add(Function {
        spec: SPEC,
        build: Build::Filter(build),
    });
    std::process::exit(daq_engine::cli::run_main(registry));
}
