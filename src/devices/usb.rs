//! What the USB waveform sources' Importer functions share: the scopes' `expect_data_within`,
//! per-channel numbers, and the check of a scope's sink and common keys. Each family's
//! spec, keys, check and build are in a file of its own (`picoscope.rs`, `hantek6022.rs`,
//! `drs4.rs`). The Red Pitaya, a scope on the network (`redpitaya.rs`), shares the scopes'
//! common keys, their check and the importer.
//!
//! Guarantees: with `simulate: true` the same driver code runs against the simulated device
//! (for PicoScope: a private copy of `libfake_picosdk.so` loaded through the very
//! `libloading` path used for Pico's library). `sim_unplug_at` / `sim_unplug_for` pull the
//! simulated device's plug for a while, so the importer's reconnect runs end to end. Must
//! never: fall back to a simulator when real hardware was asked for, or load the fake
//! library when not simulating.

use super::plug::unplug_window;
use super::{bad, expect_data_key, DeviceImporter};
use crate::worker::{BuildContext, Config, Key, PerChannel, PerChannelValue, WorkerError};
use std::any::Any;

/// The fake PicoScope library's loader, where the tools and the engine tests reach it.
pub use super::picoscope::{fake_picosdk, fake_picosdk_candidates, FakePico, FakePicoError};

/// A scope's importer: `function` reading `source`, keeping `simulated` (what
/// [`keep_simulated`](super::plug::keep_simulated) kept of its simulated device; `None` for
/// hardware), with the scopes' `expect_data_within`.
pub(super) fn scope_importer(
    function: &'static str,
    ctx: &BuildContext,
    source: Box<dyn daq_drivers::Source>,
    simulated: Option<Box<dyn Any + Send>>,
) -> Result<DeviceImporter, WorkerError> {
    let simulate = simulated.is_some();
    DeviceImporter::build(
        function,
        ctx,
        source,
        simulated.into_iter().collect(),
        simulate,
        ctx.config.get(SCOPE_EXPECT_DATA)?,
    )
}

/// libusb, for the build of USB `family` on hardware (its error says to try --simulate).
pub(super) fn libusb(family: &str) -> Result<daq_drivers::usb::RusbBus, WorkerError> {
    daq_drivers::usb::RusbBus::new()
        .map_err(|e| super::open_error(e.into_driver_error(family, "starting libusb")))
}

/// `expect_data_within` of the scopes (s): a trigger on noise fires often; a high threshold
/// may wait longer, then raise it.
pub(super) const SCOPE_EXPECT_DATA: Key<f64> = expect_data_key!(60.0);

/// A number or a list of numbers, one per channel.
pub(super) fn per_channel(
    cfg: &Config,
    key: Key<PerChannel>,
    n: usize,
) -> Result<Vec<f64>, WorkerError> {
    match cfg.get(key)? {
        PerChannelValue::All(v) => Ok(vec![v; n]),
        PerChannelValue::Each(v) if v.len() != n => Err(bad(
            cfg,
            key.name,
            format!("gives {} values for {n} enabled channel(s)", v.len()),
        )),
        PerChannelValue::Each(v) => Ok(v),
    }
}

/// The checks every scope's `check` ends with, as its build makes them: the sink against
/// the `layout` its config describes (see [`check_sink`]), `expect_data_within` and
/// `on_silence`, and the simulated unplug window.
pub(super) fn check_scope(
    ctx: &BuildContext,
    function: &str,
    layout: &daq_drivers::EventLayout,
    format: Key<str>,
) -> Result<(), WorkerError> {
    check_sink(ctx, function, layout, format)?;
    check_scope_keys(ctx)
}

/// The checks of the keys `then: scope` adds to a scope's spec, as its build makes them:
/// `expect_data_within` and `on_silence`, and the simulated unplug window.
pub(super) fn check_scope_keys(ctx: &BuildContext) -> Result<(), WorkerError> {
    super::check_silence(ctx, SCOPE_EXPECT_DATA)?;
    unplug_window(&ctx.config).map(drop)
}

/// The sink of `ctx` against the `layout` its config describes, before the run. A sink with
/// the right fields whose types do not fit the sample format is an error at `format` (the
/// key to change, or the dtype: the message says both).
fn check_sink(
    ctx: &BuildContext,
    function: &str,
    layout: &daq_drivers::EventLayout,
    format: Key<str>,
) -> Result<(), WorkerError> {
    let Some(sink) = ctx.sinks.first() else {
        return Ok(());
    };
    let Err(mismatch) = super::check_layout(function, &ctx.worker, layout, sink) else {
        return Ok(());
    };
    let only_types = mismatch.only_types;
    let e = WorkerError::from(mismatch);
    if !only_types {
        return Err(e);
    }
    let value = ctx.config.get(format)?;
    Err(bad(
        &ctx.config,
        format.name,
        format!(
            "'{value}' writes {} samples, which sink buffer '{}' does not declare ({e}); \
             change the format or the buffer's data_dtype",
            layout
                .fields
                .first()
                .and_then(|f| crate::dtype::Scalar::parse(f.numpy_type).ok())
                .map_or("?", |s| s.name()),
            sink.name
        ),
    ))
}
