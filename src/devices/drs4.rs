//! `device.drs4`: the PSI DRS4 evaluation board through libusb (or its transfer-level
//! simulator) as an Importer function: spec, keys, the config check and the build.
//!
//! Guarantees: every key maps onto the driver's [`Drs4Config`] and is checked before the
//! board is touched; with `simulate: true` the same driver code runs against the simulated
//! board, which comes back power-cycled at a new address from an unplug. Must never: fall
//! back to the simulator when real hardware was asked for.

use super::plug::{keep_simulated, unplug_window, SimulatedPlug};
use super::usb::{check_scope, libusb, scope_importer};
use super::{importer_spec, open_error, pick, within, DeviceImporter, SEED, SIMULATE};
use crate::worker::{BuildContext, Config, FunctionSpec, WorkerError};
use daq_drivers::drs4::{Drs4, Drs4Config, Drs4TriggerSource, SimDrs4, SimDrs4Config};
use std::path::PathBuf;

impl SimulatedPlug for SimDrs4 {
    fn name(&self) -> String {
        "the simulated DRS4 board".into()
    }
    fn unplug(&mut self) {
        SimDrs4::unplug(self);
    }
    /// Comes back power-cycled, at a new address.
    fn replug(&mut self) -> Result<(), super::plug::ReplugError> {
        SimDrs4::plug(self);
        Ok(())
    }
}

/// `device.drs4`'s own keys.
mod drs4_keys {
    use crate::keys;
    use crate::worker::{Key, MaybeKey};
    keys! {
        list pub OWN;
        pub const SAMPLING_GHZ: Key<f64> = ("sampling_ghz", 5.0, "sampling frequency (GHz), 0.1 … 6");
        pub const RANGE_CENTRE: Key<f64> = ("range_centre", 0.0, "centre of the 1 Vpp input range (V), 0 … 0.5");
        pub const TRIGGER: Key<str> = ("trigger", "ch1", "trigger source: ch1 … ch4, any (any input), external or software");
        pub const TRIGGER_LEVEL: Key<f64> = ("trigger_level", -0.05, "trigger level (V)");
        pub const TRIGGER_EDGE: Key<str> = ("trigger_edge", "falling", "falling (negative pulses) or rising");
        pub const CALIBRATION_FILE: MaybeKey<str> = ("calibration_file", absent: "eeprom", "per-cell calibration file (daq-engine text format); when absent, the calibration stored in the board's EEPROM (nominal, with a warning, if the board was never calibrated)");
        pub const TIME_AXIS: Key<bool> = ("time_axis", false, "also write the calibrated sample times as field t (ns)");
        pub const FORMAT: Key<str> = ("format", "volts", "counts (int16: the calibrated sample in 1/32768 V, 0 at range_centre, half the bytes of volts; volts = counts × volts_per_count + offset_volts, stored with the data) or volts (float32)");
    }
}

/// `device.drs4`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.drs4",
    summary: "PSI DRS4 evaluation board (SiPM/PMT waveform digitizer) through libusb: 4 × 1024 \
              cells per event with the per-cell calibration applied. Sink fields ch1..ch4 \
              int16 counts of 1/32768 V (format counts) or float32 volts (and t: float32 ns \
              with time_axis); data_length 1024.",
    keys: [drs4_keys::OWN],
    simulator: [],
    then: scope,
);

/// Checks the config of `device.drs4` as [`build`] does, opening nothing, and the sink
/// against the records it describes.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    let c = drs4_config(&ctx.config)?;
    check_scope(ctx, SPEC.name, &c.layout(), drs4_keys::FORMAT)
}

/// The DRS4 configuration `cfg` describes.
pub fn drs4_config(cfg: &Config) -> Result<Drs4Config, WorkerError> {
    let ghz = within(
        cfg,
        drs4_keys::SAMPLING_GHZ,
        0.1..=6.0,
        "must be 0.1 … 6 (GHz)",
    )?;
    let centre = within(
        cfg,
        drs4_keys::RANGE_CENTRE,
        0.0..=0.5,
        "must be 0 … 0.5 (V)",
    )?;
    let trigger = pick(
        cfg,
        drs4_keys::TRIGGER,
        &[
            ("ch1", Drs4TriggerSource::Inputs(1)),
            ("ch2", Drs4TriggerSource::Inputs(2)),
            ("ch3", Drs4TriggerSource::Inputs(4)),
            ("ch4", Drs4TriggerSource::Inputs(8)),
            ("any", Drs4TriggerSource::Inputs(15)),
            ("external", Drs4TriggerSource::External),
            ("software", Drs4TriggerSource::Software),
        ],
    )?;
    let falling = pick(
        cfg,
        drs4_keys::TRIGGER_EDGE,
        &[("falling", true), ("rising", false)],
    )?;
    Ok(Drs4Config {
        sampling_ghz: ghz,
        range_centre: centre,
        trigger,
        trigger_level: cfg.get(drs4_keys::TRIGGER_LEVEL)?,
        trigger_falling: falling,
        calibration_file: cfg.get(drs4_keys::CALIBRATION_FILE)?.map(PathBuf::from),
        time_axis: cfg.get(drs4_keys::TIME_AXIS)?,
        counts: pick(
            cfg,
            drs4_keys::FORMAT,
            &[("counts", true), ("volts", false)],
        )?,
    })
}

/// The driver never prints: its calibration warnings (blank EEPROM, another range centre)
/// go to the run log here.
fn say_calibration_warnings<B: daq_drivers::usb::UsbTransport>(
    ctx: &BuildContext,
    board: &Drs4<B>,
) {
    for w in board.calibration_warnings() {
        tracing::warn!("{}: {w}", ctx.worker);
    }
}

/// Builds `device.drs4`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let config = drs4_config(cfg)?;
    if cfg.get(SIMULATE)? {
        let unplug = unplug_window(cfg)?;
        let sim = SimDrs4::new(SimDrs4Config {
            seed: cfg.get(SEED)? as u64,
            log_transfers: false,
            ..SimDrs4Config::default()
        });
        let board = Drs4::open(&mut sim.bus(), config)?;
        say_calibration_warnings(ctx, &board);
        scope_importer(
            SPEC.name,
            ctx,
            Box::new(board),
            Some(keep_simulated(sim, unplug)),
        )
    } else {
        let mut bus = libusb("drs4")?;
        let board = Drs4::open(&mut bus, config).map_err(open_error)?;
        say_calibration_warnings(ctx, &board);
        scope_importer(SPEC.name, ctx, Box::new(board), None)
    }
}

/// The DRS4 family: `device.drs4`.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::drs4::FAMILY,
    functions: &[super::importer!(SPEC, build, check)],
    suggest: |_| ("device.drs4", "setups/drs4_sipm.yaml"),
    bench,
};

/// `bench drivers`: the simulated board, 4 × 1024 calibrated volts.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    let n = super::tools::wave_events(events).min(5_000);
    vec![super::tools::figures_row(
        "drs4 sim, 4x1024 f4 calibrated",
        daq_drivers::drs4::bench_simulated(n, false),
    )]
}
