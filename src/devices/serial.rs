//! What the serial detectors' Importer functions share: the port, simulator-clock and
//! reconnect keys, the settings every serial importer reads, and the checks on them. Each
//! family's spec, keys, check and build are in a file of its own (`gmc.rs`,
//! `linecounter.rs`, `cosmicwatch.rs`).
//!
//! Guarantees: with `simulate: true` the family's simulator runs on a pseudo-terminal and the
//! driver opens its slave path through `serialport`, exactly as it would open
//! `/dev/ttyUSB0`. Must never: open a real port when simulating, or guess a port when none is
//! configured.

use super::plug::{keep_simulated, unplug_window};
use super::SIMULATE;
use super::{within, SEED};
use crate::keys;
use crate::worker::{BuildContext, Key, MaybeKey, WorkerError};
use daq_drivers::serial::{Backoff, SimulatorHandle};
use std::any::Any;
use std::path::PathBuf;
use std::time::Duration;

keys! {
    pub(super) const PORT: MaybeKey<str> = ("port", absent: "required unless simulate", "serial port path, e.g. /dev/daq/geiger-0 (udev symlink) or /dev/ttyUSB0");
    pub(super) const SIM_SECOND: Key<f64> = ("sim_second", 1.0, "simulator only: host seconds per device second (0.1 runs the device 10x faster)");
    pub(super) const BACKOFF: Key<f64> = ("reconnect_backoff_max", 2.0, "longest wait between re-open attempts after an unplug (s); starts at 0.05 s, doubling");
    /// `sim_rate` of the counters (GMC, line counters).
    pub(super) const SIM_COUNT_RATE: Key<f64> = ("sim_rate", 0.5, "simulator only: mean counts per device second (Poisson)");
}

/// Settings every serial importer reads.
pub(super) struct Common {
    pub(super) simulate: bool,
    pub(super) port: Option<PathBuf>,
    pub(super) sim_second: Duration,
    pub(super) seed: u64,
    pub(super) backoff: Backoff,
    /// Simulated unplug: (after, for).
    pub(super) unplug: Option<(Duration, Duration)>,
}

pub(super) fn common(ctx: &BuildContext) -> Result<Common, WorkerError> {
    let c = &ctx.config;
    let simulate = c.get(SIMULATE)?;
    let port = c.get(PORT)?.map(PathBuf::from);
    if port.is_none() && !simulate {
        return Err(c
            .error(
                PORT.name,
                "is required: the serial port of the detector (e.g. /dev/daq/geiger-0 with the \
                 udev rules installed, or /dev/ttyUSB0); `daq-engine devices` lists them; or \
                 run with --simulate to try the setup without hardware",
            )
            .into());
    }
    let second = within(
        c,
        SIM_SECOND,
        1e-4..=60.0,
        "must be between 0.0001 and 60 (s)",
    )?;
    let max = within(c, BACKOFF, 0.05..=600.0, "must be between 0.05 and 600 (s)")?;
    Ok(Common {
        unplug: unplug_window(c)?,
        simulate,
        port,
        sim_second: Duration::from_secs_f64(second),
        seed: c.get(SEED)? as u64,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs_f64(max),
        },
    })
}

pub(super) fn rate(ctx: &BuildContext, key: Key<f64>) -> Result<f64, WorkerError> {
    let v = ctx.config.get(key)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(ctx.config.error(key.name, "must be a number ≥ 0").into());
    }
    Ok(v)
}

pub(super) fn baud(ctx: &BuildContext, key: Key<usize>) -> Result<Option<u32>, WorkerError> {
    let b = ctx.config.get(key)?;
    if b == 0 {
        return Ok(None);
    }
    if !(300..=4_000_000).contains(&b) {
        return Err(ctx
            .config
            .error(
                key.name,
                "must be 0 (automatic) or a baud rate 300 … 4000000",
            )
            .into());
    }
    Ok(Some(b as u32))
}

/// Path to open: the simulator's stable link, or the configured port.
pub(super) fn path_of(
    c: &Common,
    sim: Option<(SimulatorHandle, PathBuf)>,
    keep: &mut Vec<Box<dyn Any + Send>>,
) -> PathBuf {
    match sim {
        Some((handle, path)) => {
            keep.push(keep_simulated(handle, c.unplug));
            path
        }
        None => c.port.clone().unwrap_or_default(),
    }
}

/// Checks a serial importer's common settings as its build does, opening nothing; unless
/// simulated, the configured port must exist.
pub(super) fn check_common(ctx: &BuildContext, expect_data: Key<f64>) -> Result<(), WorkerError> {
    let c = common(ctx)?;
    super::check_silence(ctx, expect_data)?;
    if let (false, Some(port)) = (c.simulate, &c.port) {
        // Follows links: a udev link whose device is unplugged does not count.
        if let Err(e) = std::fs::metadata(port) {
            return Err(ctx
                .config
                .error(
                    PORT.name,
                    format!(
                        "{}: no such serial port ({e}): is the detector plugged in? \
                         `daq-engine devices` lists the connected ones; --simulate runs the \
                         setup without it",
                        port.display()
                    ),
                )
                .into());
        }
    }
    Ok(())
}
