//! Simulated device time, Poisson count generators and the line-printing device shared by
//! the serial simulators.
//!
//! Guarantees: a device "second" is a configurable host duration (tests run at 10–20 ms per
//! second); draws depend only on the seed and the number of ticks, never on host timing, so
//! a test can regenerate exactly the counts a simulator produced. Must never: read the wall
//! clock itself (callers pass host time since plug-in).

use std::path::PathBuf;
use std::time::Duration;

use super::{SimulatedDevice, SimulatorHandle};
use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Whole device seconds elapsed, driven by host time since plug-in.
#[derive(Clone, Copy, Debug)]
pub struct SimSeconds {
    second: Duration,
    ticks: u64,
}

impl SimSeconds {
    /// A clock whose device second lasts `second` of host time (at least 1 ms).
    pub fn new(second: Duration) -> SimSeconds {
        SimSeconds {
            second: second.max(Duration::from_millis(1)),
            ticks: 0,
        }
    }

    /// Host time at which the next tick is due.
    pub fn next_due(&self) -> Duration {
        self.second
            .saturating_mul((self.ticks + 1).min(u32::MAX as u64) as u32)
    }

    /// True once for every device second completed by host time `now`.
    pub fn tick(&mut self, now: Duration) -> bool {
        if now >= self.next_due() {
            self.ticks += 1;
            true
        } else {
            false
        }
    }

    /// Device seconds completed.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Host time → device seconds (fractional).
    pub fn device_seconds(&self, now: Duration) -> f64 {
        now.as_secs_f64() / self.second.as_secs_f64()
    }

    /// Device seconds → host time.
    pub fn host_time(&self, device_seconds: f64) -> Duration {
        Duration::from_secs_f64((device_seconds * self.second.as_secs_f64()).max(0.0))
    }
}

/// Seeded Poisson counts per interval at a mean rate.
pub struct PoissonCounts {
    rng: Xoshiro256PlusPlus,
    dist: Option<Poisson<f64>>,
}

impl PoissonCounts {
    /// Counts with mean `mean` per draw (0 or negative → always 0).
    pub fn new(seed: u64, mean: f64) -> PoissonCounts {
        PoissonCounts {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            dist: if mean > 0.0 {
                Poisson::new(mean).ok()
            } else {
                None
            },
        }
    }

    /// The next count.
    pub fn draw(&mut self) -> u32 {
        match &self.dist {
            Some(d) => d.sample(&mut self.rng).min(u32::MAX as f64) as u32,
            None => 0,
        }
    }
}

/// Seeded exponential waiting times (Poisson arrivals) at `rate` per device second, plus a
/// uniform source for event contents.
pub struct PoissonArrivals {
    /// The generator; also used for event contents so one seed fixes everything.
    pub rng: Xoshiro256PlusPlus,
    dist: Option<Exp<f64>>,
    next: f64,
}

impl PoissonArrivals {
    /// Arrivals at `rate` per device second (0 → never).
    pub fn new(seed: u64, rate: f64) -> PoissonArrivals {
        let mut a = PoissonArrivals {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            dist: if rate > 0.0 {
                Exp::new(rate).ok()
            } else {
                None
            },
            next: 0.0,
        };
        a.next = a.wait();
        a
    }

    fn wait(&mut self) -> f64 {
        match &self.dist {
            Some(d) => d.sample(&mut self.rng),
            None => f64::INFINITY,
        }
    }

    /// Device time (seconds) of the next arrival.
    pub fn next_time(&self) -> f64 {
        self.next
    }

    /// Takes the next arrival time and schedules the one after.
    pub fn pop(&mut self) -> f64 {
        let t = self.next;
        self.next = t + self.wait();
        t
    }
}

/// A detector that prints text lines on its own and takes no commands (CosmicWatch, the
/// line counters): what it prints after power-up, and the lines due at device times.
pub trait LineSource: Send + 'static {
    /// Appends what the device prints once after power-up (a header or banner; maybe nothing).
    fn preamble(&mut self, out: &mut String);
    /// Device time (s) at which the next line is due; infinite when none ever is.
    fn next_due(&self) -> f64;
    /// Appends the line due next.
    fn next_line(&mut self, out: &mut String);
}

/// A [`LineSource`] on the pty harness: at each advance, the preamble once per plug-in, then
/// every line due by then in device time.
struct LineDevice<G> {
    gen: G,
    clock: SimSeconds,
    text: String,
    booted: bool,
}

impl<G: LineSource> SimulatedDevice for LineDevice<G> {
    fn receive(&mut self, _bytes: &[u8], now: Duration, out: &mut Vec<u8>) {
        // These detectors take no commands (CosmicWatch v3X's text commands are not
        // simulated).
        self.advance(now, out);
    }

    fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
        self.text.clear();
        if !self.booted {
            self.gen.preamble(&mut self.text);
            self.booted = true;
        }
        let t = self.clock.device_seconds(now);
        while self.gen.next_due() <= t {
            self.gen.next_line(&mut self.text);
        }
        out.extend_from_slice(self.text.as_bytes());
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let due = self.gen.next_due();
        due.is_finite().then(|| self.clock.host_time(due))
    }
}

/// Starts a line-printing detector on a pty (stable link named `name`), its device second
/// lasting `second` of host time; each plug-in (the first and every replug) powers up a
/// fresh device from `make`. Returns the handle and the stable path.
pub fn simulate_lines<G: LineSource>(
    name: &str,
    second: Duration,
    make: impl Fn() -> G + Send + 'static,
) -> std::io::Result<(SimulatorHandle, PathBuf)> {
    let handle = SimulatorHandle::start(name, move |_| {
        Box::new(LineDevice {
            gen: make(),
            clock: SimSeconds::new(second),
            text: String::with_capacity(4096),
            booted: false,
        })
    })?;
    let path = handle.path().to_path_buf();
    Ok((handle, path))
}
