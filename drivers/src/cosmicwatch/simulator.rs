//! Simulated CosmicWatch detectors on a pseudo-terminal: v2 (header, name line, space-
//! separated events) and v3X (comment header, tab-separated events with Flag and the
//! configured sensor columns, `# HK` lines every 60 device seconds).
//!
//! Events arrive as a Poisson process at the set rate; ADC peaks follow a falling
//! exponential above the trigger threshold (50 counts for v2). The SiPM voltage uses a
//! smooth stand-in calibration, **not** the firmware's 12-coefficient polynomial (which we do
//! not have). Guarantees: the text depends only on seed and settings ([`CosmicWatchGen`]
//! regenerates it); every line parses with the matching parser. Must never: print dead time
//! above run time.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;

use super::protocol::V3Columns;
use crate::serial::simclock::{simulate_lines, LineSource, PoissonArrivals};
use crate::serial::SimulatorHandle;

/// Which detector to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimVersion {
    /// v2 (Arduino Nano).
    V2,
    /// v3X (RP2040) with these optional columns.
    V3X(V3Columns),
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CosmicWatchSimConfig {
    /// Detector version.
    pub version: SimVersion,
    /// Mean events per device second (a desk detector sees ~0.5–1).
    pub rate: f64,
    /// Probability that an event is flagged coincident (v3X).
    pub coincidence: f64,
    /// Seed.
    pub seed: u64,
    /// Host duration of one device second.
    pub second: Duration,
    /// Detector name (≤ 40 ASCII characters).
    pub name: String,
}

impl Default for CosmicWatchSimConfig {
    fn default() -> Self {
        CosmicWatchSimConfig {
            version: SimVersion::V2,
            rate: 1.0,
            coincidence: 0.0,
            seed: 1,
            second: Duration::from_secs(1),
            name: "Axel".into(),
        }
    }
}

const V2_BAR: &str =
    "##########################################################################################";

/// The text generator (pure): header, then events and housekeeping in time order.
pub struct CosmicWatchGen {
    cfg: CosmicWatchSimConfig,
    arrivals: PoissonArrivals,
    events: u64,
    /// Cumulative dead time, seconds.
    dead: f64,
    next_hk: f64,
}

impl CosmicWatchGen {
    /// A generator for `cfg`.
    pub fn new(cfg: &CosmicWatchSimConfig) -> CosmicWatchGen {
        CosmicWatchGen {
            arrivals: PoissonArrivals::new(cfg.seed, cfg.rate),
            cfg: cfg.clone(),
            events: 0,
            dead: 0.0,
            next_hk: 60.0,
        }
    }

    /// Appends the boot header (v2: 5 `#` lines and the name line).
    pub fn header(&self, out: &mut String) {
        match self.cfg.version {
            SimVersion::V2 => {
                let _ = write!(
                    out,
                    "{V2_BAR}\r\n### CosmicWatch: The Desktop Muon Detector\r\n### Questions? saxani@mit.edu\r\n\
                     ### Comp_date Comp_time Event Ardn_time[ms] ADC[0-1023] SiPM[mV] Deadtime[ms] Temp[C]\r\n{V2_BAR}\r\n{}\r\n",
                    self.cfg.name
                );
            }
            SimVersion::V3X(c) => {
                out.push_str("# CosmicWatch v3X (simulated)\r\n# Event\tTimestamp[s]\tFlag\tADC[12b]\tSiPM[mV]\tDeadtime[s]");
                if c.environment {
                    out.push_str("\tTemp[C]\tPress[Pa]");
                }
                if c.motion {
                    out.push_str("\tAccel(X:Y:Z)[g]\tGyro(X:Y:Z)[deg/sec]");
                }
                if c.name {
                    out.push_str("\tName");
                }
                out.push_str("\r\n");
            }
        }
    }

    /// Device time (s) of the next line.
    pub fn next_due(&self) -> f64 {
        match self.cfg.version {
            SimVersion::V2 => self.arrivals.next_time(),
            SimVersion::V3X(_) => self.arrivals.next_time().min(self.next_hk),
        }
    }

    /// Appends the next line (event or housekeeping); returns true for an event.
    pub fn next_line(&mut self, out: &mut String) -> bool {
        if matches!(self.cfg.version, SimVersion::V3X(_))
            && self.next_hk < self.arrivals.next_time()
        {
            let _ = write!(
                out,
                "# HK t={:.0} T=23.4 P=101325 HV=29.50\r\n",
                self.next_hk
            );
            self.next_hk += 60.0;
            return false;
        }
        let t = self.arrivals.pop();
        self.events += 1;
        let rng = &mut self.arrivals.rng;
        let u: f64 = rng.random::<f64>().max(1e-12);
        match self.cfg.version {
            SimVersion::V2 => {
                let adc = (51.0 - 90.0 * u.ln()).min(1023.0) as u32;
                let sipm = adc as f64 * 0.35 + (adc as f64).powi(2) * 2.0e-4;
                // Dead time: ~3–5 ms per event to measure and print at 9600 baud, never
                // beyond the run time.
                self.dead = (self.dead + 0.003 + 0.002 * rng.random::<f64>()).min(t);
                let temp = 21.5 + 0.5 * rng.random::<f64>();
                let _ = write!(
                    out,
                    "{} {} {} {:.2} {} {:.2}\r\n",
                    self.events,
                    (t * 1e3) as u64,
                    adc,
                    sipm,
                    ((self.dead * 1e3) as u64).min((t * 1e3) as u64),
                    temp
                );
            }
            SimVersion::V3X(c) => {
                let adc = (200.0 - 600.0 * u.ln()).min(4095.0) as u32;
                let sipm = adc as f64 * 0.08 + (adc as f64).powi(2) * 1.0e-5;
                let flag = u8::from(rng.random::<f64>() < self.cfg.coincidence);
                // ~12 µs per event (open firmware).
                self.dead = (self.dead + 12e-6).min(t);
                let _ = write!(
                    out,
                    "{}\t{t:.6}\t{flag}\t{adc}\t{sipm:.1}\t{:.6}",
                    self.events, self.dead
                );
                if c.environment {
                    let _ = write!(
                        out,
                        "\t{:.1}\t{:.0}",
                        23.0 + rng.random::<f64>(),
                        101000.0 + 600.0 * rng.random::<f64>()
                    );
                }
                if c.motion {
                    let a: [f64; 6] = std::array::from_fn(|_| rng.random::<f64>() - 0.5);
                    let _ = write!(
                        out,
                        "\t{:.3}:{:.3}:{:.3}\t{:.1}:{:.1}:{:.1}",
                        0.01 * a[0],
                        -1.0 + 0.01 * a[1],
                        0.01 * a[2],
                        a[3],
                        a[4],
                        a[5]
                    );
                }
                if c.name {
                    let _ = write!(out, "\t{}", self.cfg.name);
                }
                out.push_str("\r\n");
            }
        }
        true
    }

    /// The first `n` event lines (housekeeping skipped), as the simulator sends them.
    pub fn event_lines(cfg: &CosmicWatchSimConfig, n: usize) -> Vec<String> {
        let mut g = CosmicWatchGen::new(cfg);
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let mut s = String::new();
            if g.next_line(&mut s) {
                v.push(s);
            }
        }
        v
    }
}

impl LineSource for CosmicWatchGen {
    fn preamble(&mut self, out: &mut String) {
        self.header(out);
    }
    fn next_due(&self) -> f64 {
        CosmicWatchGen::next_due(self)
    }
    fn next_line(&mut self, out: &mut String) {
        // Housekeeping lines count as lines here: the device prints them too.
        CosmicWatchGen::next_line(self, out);
    }
}

/// Starts a simulated CosmicWatch on a pty; returns the handle and the stable path. A replug
/// reboots the detector (header again, event numbers from 1).
pub fn simulate(config: CosmicWatchSimConfig) -> std::io::Result<(SimulatorHandle, PathBuf)> {
    let second = config.second;
    simulate_lines("cosmicwatch", second, move || CosmicWatchGen::new(&config))
}
