//! Simulated line counters on a pseudo-terminal: MightyOhm (banner, then one report per
//! device second with the firmware's SLOW/FAST/INST rules), NetIO GC10 (`<cpm>\r\n` per
//! reading) and Arduino-style sketches printing a [`LineGrammar`] (one line per Poisson
//! pulse, or per second with the counts).
//!
//! Guarantees: the text depends only on seed and rate, never on host timing, so tests can
//! regenerate it ([`LineCounterSim::lines`]). Lines end in CRLF as the devices send them.
//! Must never: print a line the matching parser would reject.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{
    mightyohm_usv_centi, GrammarField, LineGrammar, MightyOhmMode, MIGHTYOHM_FAST_THRESHOLD,
    MIGHTYOHM_MAX_CPS,
};
use crate::serial::simclock::{simulate_lines, LineSource, PoissonArrivals, PoissonCounts};
use crate::serial::SimulatorHandle;

/// Which counter to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimFormat {
    /// MightyOhm kit, firmware version string in the banner.
    MightyOhm,
    /// NetIO GC10: one CPM line per device second.
    Gc10,
    /// An Arduino sketch printing this grammar.
    Grammar(LineGrammar),
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LineSimConfig {
    /// Output format.
    pub format: SimFormat,
    /// Mean counts per device second.
    pub cps: f64,
    /// Seed.
    pub seed: u64,
    /// Host duration of one device second.
    pub second: Duration,
}

impl Default for LineSimConfig {
    fn default() -> Self {
        LineSimConfig {
            format: SimFormat::MightyOhm,
            cps: 0.5,
            seed: 1,
            second: Duration::from_secs(1),
        }
    }
}

/// The text generator (pure, no I/O): one step per device second, or per pulse.
pub struct LineCounterSim {
    format: SimFormat,
    counts: PoissonCounts,
    arrivals: PoissonArrivals,
    /// Last 60 one-second counts, `history[t % 60]`.
    history: [u32; 60],
    seconds: u64,
    pulses: u64,
    last_pulse_ms: u64,
    banner_sent: bool,
}

impl LineCounterSim {
    /// A generator for `cfg` (only format, rate and seed matter).
    pub fn new(cfg: &LineSimConfig) -> LineCounterSim {
        LineCounterSim {
            format: cfg.format.clone(),
            counts: PoissonCounts::new(cfg.seed, cfg.cps),
            arrivals: PoissonArrivals::new(cfg.seed, cfg.cps),
            history: [0; 60],
            seconds: 0,
            pulses: 0,
            last_pulse_ms: 0,
            banner_sent: false,
        }
    }

    fn per_pulse(&self) -> bool {
        matches!(&self.format, SimFormat::Grammar(g) if !g.fields.contains(&GrammarField::Counts))
    }

    /// The first `n` lines after the banner, as the simulator sends them (for tests).
    pub fn lines(cfg: &LineSimConfig, n: usize) -> Vec<String> {
        let mut g = LineCounterSim::new(cfg);
        (0..n)
            .map(|_| {
                let mut s = String::new();
                g.next_line(&mut s);
                s
            })
            .collect()
    }
}

impl LineSource for LineCounterSim {
    /// Device time (s) when the next line is due.
    fn next_due(&self) -> f64 {
        if self.per_pulse() {
            self.arrivals.next_time()
        } else {
            (self.seconds + 1) as f64
        }
    }

    /// Appends the banner (MightyOhm only) once.
    fn preamble(&mut self, out: &mut String) {
        if !self.banner_sent && self.format == SimFormat::MightyOhm {
            out.push_str("mightyohm.com Geiger Counter 1.00\r\nhttp://mightyohm.com/geiger\r\n");
        }
        self.banner_sent = true;
    }

    /// Appends the next line (CRLF-terminated).
    fn next_line(&mut self, out: &mut String) {
        if self.per_pulse() {
            let t = self.arrivals.pop();
            self.pulses += 1;
            let SimFormat::Grammar(g) = &self.format else {
                return;
            };
            let ms = (t * 1e3) as u64;
            let (pulses, last_ms) = (self.pulses, self.last_pulse_ms.min(ms));
            write_grammar_line(out, g, |out, f| match f {
                GrammarField::TimeUs => write!(out, "{}", (t * 1e6) as u64),
                GrammarField::TimeMs => write!(out, "{ms}"),
                GrammarField::TimeS => write!(out, "{t:.6}"),
                GrammarField::Pulse => write!(out, "{pulses}"),
                // In the per-pulse sketch this column is the time since the last pulse.
                GrammarField::Skip => write!(out, "{}", ms - last_ms),
                GrammarField::Counts => Ok(()),
            });
            self.last_pulse_ms = ms;
            return;
        }
        let drawn = self.counts.draw();
        self.seconds += 1;
        let idx = (self.seconds % 60) as usize;
        match &self.format {
            SimFormat::MightyOhm => {
                // The firmware counts into 8 bits; a count that would pass 255 sets overflow.
                let overflow = drawn > MIGHTYOHM_MAX_CPS;
                let cps = drawn.min(MIGHTYOHM_MAX_CPS);
                self.history[idx] = cps;
                let slow: u32 = self.history.iter().sum();
                let fast: u32 = (0..5)
                    .map(|k| self.history[(idx + 60 - k) % 60])
                    .sum::<u32>()
                    * 12;
                let (cpm, mode) = if overflow {
                    (cps * 60, MightyOhmMode::Inst)
                } else if fast > MIGHTYOHM_FAST_THRESHOLD {
                    (fast, MightyOhmMode::Fast)
                } else {
                    (slow, MightyOhmMode::Slow)
                };
                let u = mightyohm_usv_centi(cpm);
                let _ = write!(
                    out,
                    "CPS, {cps}, CPM, {cpm}, uSv/hr, {}.{:02}, {}\r\n",
                    u / 100,
                    u % 100,
                    mode.word()
                );
            }
            SimFormat::Gc10 => {
                self.history[idx] = drawn;
                let cpm: u32 = self.history.iter().sum();
                let _ = write!(out, "{cpm}\r\n");
            }
            SimFormat::Grammar(g) => {
                self.history[idx] = drawn;
                let s = self.seconds;
                write_grammar_line(out, g, |out, f| match f {
                    GrammarField::Counts => write!(out, "{drawn}"),
                    GrammarField::TimeUs => write!(out, "{}", s * 1_000_000),
                    GrammarField::TimeMs => write!(out, "{}", s * 1000),
                    GrammarField::TimeS => write!(out, "{s}.000000"),
                    GrammarField::Pulse => write!(out, "{s}"),
                    GrammarField::Skip => write!(out, "0"),
                });
            }
        }
    }
}

/// Starts a simulated line counter on a pty; returns the handle and the stable path.
pub fn simulate(config: LineSimConfig) -> std::io::Result<(SimulatorHandle, PathBuf)> {
    let second = config.second;
    simulate_lines("linecounter", second, move || LineCounterSim::new(&config))
}
/// Writes one line of `g`'s fields, each as `field` writes it, separated as `g` says and
/// CRLF-terminated.
fn write_grammar_line(
    out: &mut String,
    g: &LineGrammar,
    mut field: impl FnMut(&mut String, &GrammarField) -> std::fmt::Result,
) {
    let sep = match g.separator {
        super::protocol::Separator::Whitespace => ' ',
        super::protocol::Separator::Byte(b) => b as char,
    };
    for (i, f) in g.fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        // Writing into a String cannot fail.
        let _ = field(out, f);
    }
    out.push_str("\r\n");
}
