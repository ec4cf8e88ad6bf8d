//! `device.gmc`: the GQ Electronics GMC Geiger counters as an Importer function (spec, keys,
//! check, build). The serial settings every serial detector shares are in `serial.rs`.
//!
//! Guarantees: each config key maps onto one field of the driver's [`GmcConfig`]; with
//! `simulate: true` the GMC simulator runs on a pseudo-terminal and the driver opens its slave
//! path. Must never: open a real port when simulating, or guess a port when none is configured.

use super::serial::{baud, check_common, common, path_of, rate, SIM_COUNT_RATE};
use super::{expect_data_key, importer_spec, open_error, pick, sim_error, within, DeviceImporter};
use crate::worker::{BuildContext, FunctionSpec, WorkerError};
use daq_drivers::gmc::{self, CountWidth, GmcConfig, GmcMode, GmcModel, GmcSimConfig};
use std::any::Any;
use std::time::Duration;

/// `device.gmc`'s own keys: the device's (`OWN`), then its simulator's (`SIM`).
mod gmc_keys {
    use crate::keys;
    use crate::worker::Key;
    keys! {
        list pub OWN;
        pub const BAUD: Key<usize> = ("baud", 0, "baud rate; 0 = probe 115200 then 57600 with <GETVER>>");
        pub const MODE: Key<str> = ("mode", "heartbeat", "heartbeat (one cps event per second) or poll_cpm (one cpm event per poll_interval)");
        pub const POLL_INTERVAL: Key<f64> = ("poll_interval", 60.0, "poll_cpm: time between <GETCPM>> requests (s)");
        pub const COUNT_WIDTH: Key<usize> = ("count_width", 0, "reply width override in bytes (2 or 4) for firmware that differs from its model; 0 = by model");
        pub const REPLY_TIMEOUT: Key<f64> = ("reply_timeout", 0.5, "how long to wait for a reply to a command (s)");
    }
    keys! {
        list pub SIM;
        pub const SIM_MODEL: Key<str> = ("sim_model", "gmc320", "simulator only: gmc300v3, gmc300v4, gmc320, gmc500plus, gmc600plus or gmc800");
    }
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(
        10.0,
        "; with poll_cpm, 3 × poll_interval when that is longer"
    );
}

/// `device.gmc`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.gmc",
    summary: "GQ Electronics GMC Geiger counter (GMC-300/320/500+/600+/800): connect sequence, \
              model detection, heartbeat counts per second (sink field cps: uint32) or polled \
              CPM (cpm: uint32), data_length 1. Serial number, voltage and clock go into the \
              run's device notes.",
    keys: [gmc_keys::OWN],
    simulator: [gmc_keys::SIM, &[SIM_COUNT_RATE.spec()]],
    then: serial(gmc_keys::EXPECT_DATA),
);

/// Checks the config of `device.gmc` as [`build`] does, opening nothing.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx, gmc_keys::EXPECT_DATA)?;
    gmc_settings(ctx)?;
    baud(ctx, gmc_keys::BAUD).map(drop)
}

/// The GMC's mode, count width and reply timeout (s).
fn gmc_settings(ctx: &BuildContext) -> Result<(GmcMode, Option<CountWidth>, f64), WorkerError> {
    let cfg = &ctx.config;
    let mode = match cfg.get(gmc_keys::MODE)? {
        "heartbeat" => GmcMode::Heartbeat,
        "poll_cpm" => {
            let s = within(
                cfg,
                gmc_keys::POLL_INTERVAL,
                0.01..=86400.0,
                "must be 0.01 … 86400 (s)",
            )?;
            GmcMode::PollCpm {
                interval: Duration::from_secs_f64(s),
            }
        }
        other => {
            let key = gmc_keys::MODE.name;
            return Err(super::not_one_of(cfg, key, other, "heartbeat or poll_cpm"));
        }
    };
    let width = match cfg.get(gmc_keys::COUNT_WIDTH)? {
        0 => None,
        2 => Some(CountWidth::Two),
        4 => Some(CountWidth::Four),
        _ => {
            return Err(cfg
                .error(gmc_keys::COUNT_WIDTH.name, "must be 0 (by model), 2 or 4")
                .into())
        }
    };
    let reply = within(
        cfg,
        gmc_keys::REPLY_TIMEOUT,
        0.01..=10.0,
        "must be 0.01 … 10 (s)",
    )?;
    Ok((mode, width, reply))
}

/// Builds `device.gmc`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (mode, width, reply) = gmc_settings(ctx)?;
    // A counter polled every minute is silent between polls: unless the setup says, wait
    // three polls.
    let expect_within = match (cfg.given(gmc_keys::EXPECT_DATA)?, mode) {
        (Some(s), _) => s,
        (None, GmcMode::PollCpm { interval }) => cfg
            .get(gmc_keys::EXPECT_DATA)?
            .max(3.0 * interval.as_secs_f64()),
        (None, _) => cfg.get(gmc_keys::EXPECT_DATA)?,
    };
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let model = pick(
            cfg,
            gmc_keys::SIM_MODEL,
            &[
                ("gmc300v3", GmcModel::Gmc300V3),
                ("gmc300v4", GmcModel::Gmc300V4),
                ("gmc320", GmcModel::Gmc320),
                ("gmc500plus", GmcModel::Gmc500Plus),
                ("gmc600plus", GmcModel::Gmc600Plus),
                ("gmc800", GmcModel::Gmc800),
            ],
        )?;
        Some(
            gmc::simulate(GmcSimConfig {
                model,
                cps: rate(ctx, SIM_COUNT_RATE)?,
                seed: c.seed,
                second: c.sim_second,
                width,
                ..GmcSimConfig::default()
            })
            .map_err(|e| sim_error("device.gmc", e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let source = gmc::open(GmcConfig {
        path,
        baud: baud(ctx, gmc_keys::BAUD)?,
        mode,
        width,
        reply_timeout: Duration::from_secs_f64(reply),
        backoff: c.backoff,
        ..GmcConfig::default()
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        "device.gmc",
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        expect_within,
    )
}

/// The GMC family: `device.gmc`.
pub const FAMILY: super::Family = super::Family {
    driver: &gmc::FAMILY,
    functions: &[super::importer!(SPEC, build, check)],
    suggest: |_| ("device.gmc", "setups/geiger_gmc.yaml"),
    bench,
};

/// `bench drivers`: heartbeat frames, one 2-byte frame per device second of 0.2 ms.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    vec![super::tools::serial_rate(
        "gmc heartbeat (pty, 0.2 ms device s)",
        events,
        || {
            gmc::simulate(GmcSimConfig {
                cps: 30.0,
                second: Duration::from_micros(200),
                ..GmcSimConfig::default()
            })
        },
        |path| {
            gmc::open(GmcConfig {
                path,
                ..GmcConfig::default()
            })
        },
    )]
}
