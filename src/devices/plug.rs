//! Simulated unplugs for every device family: the `sim_unplug_at` / `sim_unplug_for` keys,
//! and a thread that owns a simulated device, pulls its plug once and puts it back, so the
//! importer's real reconnect path runs without hardware.
//!
//! Guarantees: the thread only sleeps and calls the simulator; dropping the [`PlugPuller`]
//! stops it and then drops the device. Must never: touch real hardware.

use crate::keys;
use crate::worker::{Config, Key, WorkerError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

keys! {
    /// `sim_unplug_at`: when the simulated device loses its plug (the serial setups' meaning).
    pub(crate) const UNPLUG_AT: Key<f64> = ("sim_unplug_at", 0.0, "simulator only: pull the simulated device's plug this many seconds after the start (0 = never), to try the reconnect");
    /// `sim_unplug_for`: how long it stays unplugged.
    pub(crate) const UNPLUG_FOR: Key<f64> = ("sim_unplug_for", 1.0, "simulator only: seconds the device stays unplugged before it is plugged in again");
}

/// The simulated unplug a setup asks for with `sim_unplug_at` / `sim_unplug_for`:
/// `Some((after, for))`, or `None` when `sim_unplug_at` is 0. Checked as for every device.
pub(crate) fn unplug_window(cfg: &Config) -> Result<Option<(Duration, Duration)>, WorkerError> {
    let at = cfg.get(UNPLUG_AT)?;
    let gone = cfg.get(UNPLUG_FOR)?;
    if !(at.is_finite() && (0.0..=86400.0).contains(&at)) {
        return Err(cfg.error(UNPLUG_AT.name, "must be 0 … 86400 (s)").into());
    }
    if !(gone.is_finite() && (0.0..=3600.0).contains(&gone)) {
        return Err(cfg.error(UNPLUG_FOR.name, "must be 0 … 3600 (s)").into());
    }
    Ok((at > 0.0).then(|| (Duration::from_secs_f64(at), Duration::from_secs_f64(gone))))
}

/// Why a simulated device could not be plugged in again (its own error, kept whole).
pub(crate) type ReplugError = Box<dyn std::error::Error + Send + Sync>;

/// A simulated device whose plug can be pulled and put back.
pub(crate) trait SimulatedPlug: Send + 'static {
    /// What to call it in the log.
    fn name(&self) -> String;
    /// Pulls the plug.
    fn unplug(&mut self);
    /// Puts it back.
    fn replug(&mut self) -> Result<(), ReplugError>;
}

/// Owns a simulated device and pulls its plug once, `at` after it was built, for `gone`;
/// dropping it stops the thread, then drops the device.
pub(crate) struct PlugPuller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlugPuller {
    /// Starts the thread that pulls `device`'s plug.
    pub(crate) fn start<D: SimulatedPlug>(mut device: D, at: Duration, gone: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let wait = |until: Duration| {
                while t0.elapsed() < until {
                    if flag.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                true
            };
            if wait(at) {
                tracing::warn!("simulator: pulling the plug of {}", device.name());
                device.unplug();
                if wait(at + gone) {
                    match device.replug() {
                        Ok(()) => tracing::warn!("simulator: plugged {} in again", device.name()),
                        Err(e) => tracing::warn!("simulator: replug failed: {e}"),
                    }
                }
            }
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(device);
        });
        PlugPuller {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PlugPuller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the importer keeps of a simulated device: the device itself, or the thread that
/// pulls its plug (and owns it) when the setup asks for an `unplug` (see [`unplug_window`]).
pub(crate) fn keep_simulated<D: SimulatedPlug>(
    device: D,
    unplug: Option<(Duration, Duration)>,
) -> Box<dyn std::any::Any + Send> {
    match unplug {
        Some((at, gone)) => Box::new(PlugPuller::start(device, at, gone)),
        None => Box::new(device),
    }
}

impl SimulatedPlug for daq_drivers::serial::SimulatorHandle {
    fn name(&self) -> String {
        self.path().display().to_string()
    }

    fn unplug(&mut self) {
        daq_drivers::serial::SimulatorHandle::unplug(self);
    }

    fn replug(&mut self) -> Result<(), ReplugError> {
        Ok(daq_drivers::serial::SimulatorHandle::replug(self)?)
    }
}
