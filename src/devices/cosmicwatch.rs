//! `device.cosmicwatch`: the CosmicWatch desktop muon detector (v2, v3X) as an Importer
//! function (spec, keys, check, build). The serial settings every serial detector shares are
//! in `serial.rs`.
//!
//! Guarantees: each config key maps onto one field of the driver's [`CosmicWatchConfig`];
//! with `simulate: true` the CosmicWatch simulator runs on a pseudo-terminal and the driver
//! opens its slave path. Must never: open a real port when simulating, or guess a port when
//! none is configured.

use super::serial::{baud, check_common, common, path_of, rate};
use super::{expect_data_key, importer_spec, open_error, sim_error, within, DeviceImporter};
use crate::worker::{BuildContext, FunctionSpec, WorkerError};
use daq_drivers::cosmicwatch::{
    self, CosmicWatchConfig, CosmicWatchSimConfig, CosmicWatchVersion, SimVersion, V3Columns,
};
use std::any::Any;

/// `device.cosmicwatch`'s own keys: the device's (`OWN`), then its simulator's (`SIM`).
mod cosmicwatch_keys {
    use crate::keys;
    use crate::worker::Key;
    keys! {
        list pub OWN;
        pub const VERSION: Key<str> = ("version", "v2", "detector version: v2 (Arduino Nano, space-separated) or v3x (RP2040, tab-separated)");
        pub const BAUD: Key<usize> = ("baud", 0, "baud rate; 0 = 9600 for v2, 115200 for v3x (ignored by USB CDC)");
        pub const ENVIRONMENT: Key<bool> = ("environment", false, "v3x: the BMP280 columns Temp[C] and Press[Pa] are printed");
        pub const MOTION: Key<bool> = ("motion", false, "v3x: the MPU-6050 accelerometer and gyroscope columns are printed");
        pub const NAME_COLUMN: Key<bool> = ("name_column", false, "v3x: the detector name is printed as the last column");
    }
    keys! {
        list pub SIM;
        pub const SIM_RATE: Key<f64> = ("sim_rate", 1.0, "simulator only: mean events per device second");
        pub const SIM_COINCIDENCE: Key<f64> = ("sim_coincidence", 0.0, "simulator only (v3x): probability that an event is flagged coincident");
    }
    /// Muons come at ~1/s.
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(60.0);
}

/// `device.cosmicwatch`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.cosmicwatch",
    summary: "CosmicWatch desktop muon detector, every field of each event line into a feature \
              buffer (data_length 1). v2: event: uint64, time_ms: uint64, adc: uint16, \
              sipm_mv: float32, deadtime_ms: uint64, temp_c: float32. v3x: event: uint64, \
              time_s: float64, flag: uint8, adc: uint16, sipm_mv: float32, deadtime_s: float64, \
              then temp_c, pressure_pa (environment) and accel_x/y/z, gyro_x/y/z (motion), all \
              float32. The detector's own time and cumulative dead time stay in their fields.",
    keys: [cosmicwatch_keys::OWN],
    simulator: [cosmicwatch_keys::SIM],
    then: serial(cosmicwatch_keys::EXPECT_DATA),
);

/// Checks the config of `device.cosmicwatch` as [`build`] does, opening nothing.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx, cosmicwatch_keys::EXPECT_DATA)?;
    cosmicwatch_version(ctx)?;
    baud(ctx, cosmicwatch_keys::BAUD).map(drop)
}

/// The CosmicWatch version (with its columns), as the driver and the simulator name it.
fn cosmicwatch_version(
    ctx: &BuildContext,
) -> Result<(CosmicWatchVersion, SimVersion), WorkerError> {
    let cfg = &ctx.config;
    let cols = V3Columns {
        environment: cfg.get(cosmicwatch_keys::ENVIRONMENT)?,
        motion: cfg.get(cosmicwatch_keys::MOTION)?,
        name: cfg.get(cosmicwatch_keys::NAME_COLUMN)?,
    };
    Ok(match cfg.get(cosmicwatch_keys::VERSION)? {
        "v2" => (CosmicWatchVersion::V2, SimVersion::V2),
        "v3x" | "v3X" => (CosmicWatchVersion::V3X(cols), SimVersion::V3X(cols)),
        other => {
            let key = cosmicwatch_keys::VERSION.name;
            return Err(super::not_one_of(cfg, key, other, "v2 or v3x"));
        }
    })
}

/// Builds `device.cosmicwatch`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (version, sim_version) = cosmicwatch_version(ctx)?;
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let coincidence = within(
            cfg,
            cosmicwatch_keys::SIM_COINCIDENCE,
            0.0..=1.0,
            "must be 0 … 1",
        )?;
        Some(
            cosmicwatch::simulate(CosmicWatchSimConfig {
                version: sim_version,
                rate: rate(ctx, cosmicwatch_keys::SIM_RATE)?,
                coincidence,
                seed: c.seed,
                second: c.sim_second,
                ..CosmicWatchSimConfig::default()
            })
            .map_err(|e| sim_error("device.cosmicwatch", e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let source = cosmicwatch::open(CosmicWatchConfig {
        path,
        version,
        baud: baud(ctx, cosmicwatch_keys::BAUD)?,
        backoff: c.backoff,
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        "device.cosmicwatch",
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        cfg.get(cosmicwatch_keys::EXPECT_DATA)?,
    )
}

/// The CosmicWatch family: `device.cosmicwatch`.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::cosmicwatch::FAMILY,
    functions: &[super::importer!(SPEC, build, check)],
    suggest: |_| ("device.cosmicwatch", "setups/cosmicwatch.yaml"),
    bench,
};

/// `bench drivers`: v2 lines at 50 kHz.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    use daq_drivers::cosmicwatch;
    vec![super::tools::serial_rate(
        "cosmicwatch v2 lines (pty, 50 kHz)",
        events,
        || {
            cosmicwatch::simulate(cosmicwatch::CosmicWatchSimConfig {
                rate: 50_000.0,
                ..cosmicwatch::CosmicWatchSimConfig::default()
            })
        },
        |path| {
            cosmicwatch::open(cosmicwatch::CosmicWatchConfig {
                path,
                ..cosmicwatch::CosmicWatchConfig::default()
            })
        },
    )]
}
