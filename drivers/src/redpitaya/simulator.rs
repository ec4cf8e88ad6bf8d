//! A Red Pitaya running the MCPHA server, on a loopback TCP port: the checklist of
//! HARDWARE.md R.8, byte for byte, with a seeded detector behind the inputs.
//!
//! What it does: one client at a time (accept, serve until EOF, accept the next); reads
//! exactly 8-byte LE words and ignores what the server ignores; never acks; replies only to
//! 11 (36 B status), 12 (16384 B histogram), 20 (total × 4 B trace) and 31 (the fork's
//! "start daq": the pending count grows by N and traces stream back to back, the scope reset
//! and re-armed between them). On EOF it keeps the scope, histogram and timer state, stops
//! the pulse generator unless it was started with keep_pulsing, and — as the fork does
//! \[inferred\] — keeps the pending count of code 31.
//!
//! The detector: pulses at `rate` per second (exponential intervals), heights drawn from a
//! known spectrum ([`McphaSimConfig::lines`] + a flat part) on IN1, a coincident pulse of
//! `in2_fraction` of that height on IN2; each pulse rises in one sample and decays
//! exponentially; uniform noise of ± `noise` counts. With the pulse generator running and
//! `generator_loopback`, the inputs see the generator's pulses instead (OUT1 → IN1, OUT2 →
//! IN2, heights from its spectrum's CDF, its rate and distribution, first pulse 1 ms after
//! the start). The hardware histogram counts the peak of every pulse within the PHA
//! thresholds while the input's timer runs (and has not reached its preset) \[inferred\].
//!
//! Time: `paced` follows the wall clock (pulses arrive in real time, the histogram and
//! timers grow while nobody asks); not paced, the simulated clock moves only while the
//! scope is armed and jumps to the next pulse, so every triggering pulse becomes a trace
//! and the traces depend on the seed alone ([`expected_traces`]).
//!
//! Faults for tests ([`SimMcpha::reset_after`], [`SimMcpha::stall`], [`SimMcpha::garbage`]):
//! a TCP reset after N more bytes, a stall mid-reply until the test releases it (then the
//! client is dropped, as a board that hung and was rebooted), traces replaced by garbage of the same length.
//!
//! Not modelled: the 0x7FFFFF wrap-around skip of code 20 (R.4; the simulated RAM is one
//! window); the pulse rise time (≤ 100 ns, one sample at decimation ≥ 4).
//! Must never: send a byte the protocol does not send, or serve two clients at once.

use super::protocol::{
    self, Command, Distribution, Input, Slope, Status, Timers, TriggerMode, HIST_BINS, HIST_BYTES,
    SAMPLE_BYTES,
};
use super::sim_server::{reset, SimBoard, SimServer, SimShared};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Exp, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line of the simulated detector's pulse-height spectrum (ADC counts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    /// Mean height.
    pub mean: f64,
    /// Gaussian width.
    pub sigma: f64,
    /// Relative weight.
    pub weight: f64,
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct McphaSimConfig {
    /// Random seed: the same seed gives the same pulses and noise.
    pub seed: u64,
    /// Detector pulses per second (simulated time).
    pub rate: f64,
    /// Follow the wall clock (see the module comment).
    pub paced: bool,
    /// Gaussian lines of the height spectrum.
    pub lines: Vec<Line>,
    /// Flat part of the spectrum: (lowest, highest, relative weight).
    pub flat: (f64, f64, f64),
    /// Decay time of a detector pulse (ns).
    pub decay_ns: f64,
    /// Rise time constant of a detector pulse (ns): the board's input filter makes every
    /// pulse rise over several samples.
    pub rise_ns: f64,
    /// Uniform noise amplitude (counts) on both inputs.
    pub noise: i16,
    /// Detector pulses are negative (the negators make them positive for the PHA).
    pub negative: bool,
    /// Height of the coincident IN2 pulse as a fraction of IN1's.
    pub in2_fraction: f64,
    /// Model the stale trailing samples of R.6: the last (pulse time mod 64) samples of a
    /// window keep what the RAM held before [inferred from axis_oscilloscope.v].
    pub stale_tail: bool,
    /// Pulse generator outputs cabled to the inputs.
    pub generator_loopback: bool,
    /// Benchmarks: render this many traces, then repeat them (generation cost out of the
    /// measurement).
    pub repeat_after: Option<usize>,
    /// Keep every received command word (`transcript()`).
    pub transcript: bool,
    /// Replace every n-th trace sent by garbage (0 = never), as [`SimMcpha::garbage`].
    pub garbage_every: u64,
}

impl Default for McphaSimConfig {
    fn default() -> Self {
        McphaSimConfig {
            seed: 1,
            rate: 1000.0,
            paced: false,
            lines: vec![
                Line {
                    mean: 1000.0,
                    sigma: 30.0,
                    weight: 0.6,
                },
                Line {
                    mean: 2500.0,
                    sigma: 50.0,
                    weight: 0.3,
                },
            ],
            flat: (50.0, 4000.0, 0.1),
            decay_ns: 1000.0,
            rise_ns: 50.0,
            noise: 2,
            negative: false,
            in2_fraction: 0.5,
            stale_tail: true,
            generator_loopback: true,
            repeat_after: None,
            transcript: true,
            garbage_every: 0,
        }
    }
}

/// The oscilloscope settings a trace depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeSettings {
    /// Decimation (code 4).
    pub decimation: u16,
    /// Negators of IN1, IN2 (code 5).
    pub negator: [bool; 2],
    /// Trigger source (13), slope (14), mode (15), level (16).
    pub source: Input,
    /// See `source`.
    pub slope: Slope,
    /// See `source`.
    pub mode: TriggerMode,
    /// See `source`.
    pub level: i16,
    /// Samples before the trigger (17), as sent.
    pub pre: u32,
    /// Total samples (18), as sent.
    pub total: u32,
}

impl Default for ScopeSettings {
    fn default() -> Self {
        ScopeSettings {
            decimation: 4,
            negator: [false; 2],
            source: Input::In1,
            slope: Slope::Rising,
            mode: TriggerMode::Normal,
            level: 100,
            pre: 100,
            total: 1100,
        }
    }
}

/// A register holding N − 1 of a 23-bit count, read back as the count the server uses.
fn count23(n: u32) -> u32 {
    (n.wrapping_sub(1) & 0x7F_FFFF) + 1
}

impl ScopeSettings {
    /// Samples per trace as the server stores them.
    pub fn total_samples(&self) -> usize {
        count23(self.total) as usize
    }
    /// Pre-trigger samples as the server stores them (0 underflows to 2^23).
    pub fn pre_samples(&self) -> usize {
        count23(self.pre) as usize
    }
    fn ticks_per_sample(&self) -> f64 {
        if self.decimation < 4 {
            1.0
        } else {
            f64::from(self.decimation)
        }
    }
}

/// One pulse at the inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pulse {
    /// Its number in its stream.
    pub index: u64,
    /// When (125 MHz ticks of simulated time).
    pub ticks: u64,
    /// Height at IN1 and IN2 before the negators (counts, signed by polarity).
    pub height: [i32; 2],
    /// Decay time (ticks).
    pub decay_ticks: f64,
    /// Rise time constant (ticks).
    pub rise_ticks: f64,
    /// From the pulse generator.
    pub generated: bool,
}

impl Pulse {
    /// The peak the board sees at `input` after its negator.
    pub fn peak(&self, input: Input, s: &ScopeSettings) -> i32 {
        let c = input.chan() as usize;
        if s.negator[c] {
            -self.height[c]
        } else {
            self.height[c]
        }
    }
    /// Whether the board's trigger fires on it (rising: peak ≥ level; falling: ≤).
    pub fn triggers(&self, s: &ScopeSettings) -> bool {
        let p = self.peak(s.source, s);
        match s.slope {
            Slope::Rising => p >= i32::from(s.level),
            Slope::Falling => p <= i32::from(s.level),
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The pulse shape: `exp(-t/decay) - exp(-t/rise)` scaled to a peak of 1, in ticks.
#[derive(Clone, Copy, Debug)]
struct Shape {
    decay: f64,
    rise: f64,
    /// Time of the peak.
    peak_t: f64,
    /// Unscaled value at the peak.
    norm: f64,
}

impl Shape {
    fn of(p: &Pulse) -> Shape {
        let decay = p.decay_ticks.max(1e-3);
        let rise = p.rise_ticks.clamp(1e-3, decay * 0.5);
        let peak_t = rise * decay / (decay - rise) * (decay / rise).ln();
        let norm = (-peak_t / decay).exp() - (-peak_t / rise).exp();
        Shape {
            decay,
            rise,
            peak_t,
            norm,
        }
    }
    fn at(&self, t: f64) -> f64 {
        if t <= 0.0 {
            0.0
        } else {
            ((-t / self.decay).exp() - (-t / self.rise).exp()) / self.norm
        }
    }
    /// The time on the rising edge where the shape reaches `f` (0 … 1).
    fn rising_to(&self, f: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, self.peak_t);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.at(mid) < f {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Writes the first `out.len() / 4` samples of the trace of `pulse` (None: noise only, as
/// an auto trigger gives). The pulse rises over several samples (the board's filter) and is
/// placed so that the trigger input first reaches the level at sample `pre` (at a random
/// phase after the exact crossing); the samples at `pre − 1` and `pre` are kept on their
/// sides of the level despite the noise, as the board's trigger guarantees. `noise_key`
/// seeds the noise and the phase.
pub fn render(
    pulse: Option<&Pulse>,
    noise_key: u64,
    s: &ScopeSettings,
    noise: i16,
    out: &mut [u8],
) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix(noise_key));
    let pre = s.pre_samples();
    let dt = s.ticks_per_sample();
    let phase: f64 = rng.random();
    let n = i32::from(noise.max(0));
    let src = s.source.chan() as usize;
    let mut peaks = [0.0f64; 2];
    // Pulse time (ticks after its start) at sample `pre`.
    let mut t_pre = 0.0;
    let mut shape = None;
    if let Some(p) = pulse {
        let sh = Shape::of(p);
        peaks = [
            f64::from(p.peak(Input::In1, s)),
            f64::from(p.peak(Input::In2, s)),
        ];
        // The level as a fraction of the trigger input's peak (on the pulse's side).
        let f = if peaks[src] == 0.0 {
            0.0
        } else {
            f64::from(s.level) / peaks[src]
        };
        let t_c = if f <= 0.0 {
            0.0
        } else {
            sh.rising_to(f.min(1.0))
        };
        t_pre = t_c + phase * dt;
        if f > 0.0 && sh.at(t_pre) < f {
            t_pre = t_c;
        }
        shape = Some(sh);
    }
    // The first sample at or after the pulse's start.
    let first = (pre as f64 - t_pre / dt).ceil().max(0.0) as usize;
    let (mut e_d, mut e_r, r_d, r_r, norm) = match shape {
        Some(sh) => {
            let t = t_pre + (first as f64 - pre as f64) * dt;
            (
                (-t / sh.decay).exp(),
                (-t / sh.rise).exp(),
                (-dt / sh.decay).exp(),
                (-dt / sh.rise).exp(),
                sh.norm,
            )
        }
        None => (0.0, 0.0, 0.0, 0.0, 1.0),
    };
    let level = i32::from(s.level);
    let mut v = [0i32; 2];
    for (i, b) in out.chunks_exact_mut(SAMPLE_BYTES).enumerate() {
        let g = if shape.is_some() && i >= first {
            let g = ((e_d - e_r) / norm).max(0.0);
            e_d *= r_d;
            e_r *= r_r;
            g
        } else {
            0.0
        };
        for (c, x) in v.iter_mut().enumerate() {
            *x = if n > 0 { rng.random_range(-n..=n) } else { 0 };
            *x += (peaks[c] * g).round() as i32;
            if c == src && shape.is_some() && (i + 1 == pre || i == pre) {
                *x = match (s.slope, i + 1 == pre) {
                    (Slope::Rising, true) => (*x).min(level - 1),
                    (Slope::Rising, false) => (*x).max(level),
                    (Slope::Falling, true) => (*x).max(level + 1),
                    (Slope::Falling, false) => (*x).min(level),
                };
            }
            *x = (*x).clamp(i32::from(protocol::ADC_MIN), i32::from(protocol::ADC_MAX));
        }
        b[..2].copy_from_slice(&(v[0] as i16).to_le_bytes());
        b[2..].copy_from_slice(&(v[1] as i16).to_le_bytes());
    }
}

/// The detector's pulses, in order.
pub struct DetectorPulses {
    rng: Xoshiro256PlusPlus,
    cfg: McphaSimConfig,
    next_index: u64,
    ticks: u64,
}

impl DetectorPulses {
    /// The stream of `cfg.seed`.
    pub fn new(cfg: &McphaSimConfig) -> DetectorPulses {
        DetectorPulses {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            cfg: cfg.clone(),
            next_index: 0,
            ticks: 0,
        }
    }

    /// The next pulse.
    pub fn next_pulse(&mut self) -> Pulse {
        let cfg = &self.cfg;
        let rate = if cfg.rate.is_finite() && cfg.rate > 0.0 {
            cfg.rate
        } else {
            1e6
        };
        let dt = Exp::new(rate)
            .map(|e| e.sample(&mut self.rng))
            .unwrap_or(1e-6);
        self.ticks += ((dt * protocol::TICKS_PER_SECOND) as u64).max(1);
        let total: f64 = cfg.lines.iter().map(|l| l.weight).sum::<f64>() + cfg.flat.2;
        let mut u = self.rng.random::<f64>() * total;
        let mut h = None;
        for l in &cfg.lines {
            if u < l.weight {
                h = Some(
                    Normal::new(l.mean, l.sigma.max(0.0))
                        .map(|n| n.sample(&mut self.rng))
                        .unwrap_or(l.mean),
                );
                break;
            }
            u -= l.weight;
        }
        let h = h.unwrap_or_else(|| {
            let (lo, hi, _) = cfg.flat;
            lo + self.rng.random::<f64>() * (hi - lo).max(0.0)
        });
        let h1 = h.round().clamp(1.0, 8191.0);
        let h2 = (h1 * cfg.in2_fraction).round().clamp(0.0, 8191.0);
        let sign = if cfg.negative { -1.0 } else { 1.0 };
        let p = Pulse {
            index: self.next_index,
            ticks: self.ticks,
            height: [(sign * h1) as i32, (sign * h2) as i32],
            decay_ticks: cfg.decay_ns / 8.0,
            rise_ticks: cfg.rise_ns / 8.0,
            generated: false,
        };
        self.next_index += 1;
        p
    }
}

/// The traces a not-paced simulator of `cfg` sends for scope settings `s` (generator off):
/// the first `n` triggering pulses, rendered whole (without the stale tail).
pub fn expected_traces(cfg: &McphaSimConfig, s: &ScopeSettings, n: usize) -> Vec<Vec<u8>> {
    let mut d = DetectorPulses::new(cfg);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = d.next_pulse();
        if p.triggers(s) {
            let mut t = vec![0u8; s.total_samples() * SAMPLE_BYTES];
            render(Some(&p), cfg.seed ^ p.index, s, cfg.noise, &mut t);
            out.push(t);
        }
    }
    out
}

/// The pulse generator (codes 21–30).
#[derive(Clone, Debug)]
struct Generator {
    fall_us: u32,
    rise_ns: u32,
    lower: i16,
    upper: i16,
    rate: u32,
    distribution: Distribution,
    spectrum: Vec<u32>,
    running: bool,
    keep_pulsing: bool,
    rng: Xoshiro256PlusPlus,
    next_ticks: u64,
    index: u64,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            fall_us: 50,
            rise_ns: 50,
            lower: -8192,
            upper: 8191,
            rate: 1000,
            distribution: Distribution::Uniform,
            spectrum: vec![0; HIST_BINS],
            running: false,
            keep_pulsing: false,
            rng: Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ 0x6e6e)),
            next_ticks: 0,
            index: 0,
        }
    }

    fn interval(&mut self) -> u64 {
        let rate = f64::from(self.rate.max(1));
        match self.distribution {
            Distribution::Uniform => (protocol::TICKS_PER_SECOND / rate).round().max(1.0) as u64,
            Distribution::Poisson => {
                let dt = Exp::new(rate)
                    .map(|e| e.sample(&mut self.rng))
                    .unwrap_or(1.0 / rate);
                ((dt * protocol::TICKS_PER_SECOND) as u64).max(1)
            }
        }
    }

    fn next_pulse(&mut self) -> Pulse {
        let total: u64 = self.spectrum.iter().map(|&w| u64::from(w)).sum();
        let mut u = self.rng.random_range(0..total.max(1));
        let mut bin = 0;
        for (b, &w) in self.spectrum.iter().enumerate() {
            if u < u64::from(w) {
                bin = b;
                break;
            }
            u -= u64::from(w);
        }
        let h = (bin as i32).clamp(i32::from(self.lower), i32::from(self.upper));
        let p = Pulse {
            index: self.index,
            ticks: self.next_ticks,
            height: [h, h],
            decay_ticks: f64::from(self.fall_us.max(1)) * 125.0,
            rise_ticks: f64::from(self.rise_ns.max(1)) / 8.0,
            generated: true,
        };
        self.index += 1;
        self.next_ticks += self.interval();
        p
    }
}

/// Injected faults (armed from the test thread).
#[derive(Debug, Default)]
struct Faults {
    /// Reset the connection once this many more bytes are sent.
    reset_after: Option<u64>,
    /// Send this many more bytes, then nothing until released, then drop the client.
    stall: Option<u64>,
    /// The next traces to replace by garbage.
    garbage: u32,
    /// Bytes sent since the faults were armed.
    sent: u64,
}

struct Shared {
    faults: Mutex<Faults>,
    faults_armed: AtomicBool,
    /// Ends a stall ([`SimMcpha::release`]).
    released: AtomicBool,
    traces: AtomicU64,
    pulses: AtomicU64,
    bytes: AtomicU64,
}

/// A running simulated MCPHA server; stops when dropped. The controls it shares with the
/// SCPI simulator (address, transcript of command words, vanish and reappear, clients) are
/// its [`SimServer`]'s.
pub struct SimMcpha {
    server: SimServer<[u8; 8]>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for SimMcpha {
    type Target = SimServer<[u8; 8]>;
    fn deref(&self) -> &SimServer<[u8; 8]> {
        &self.server
    }
}

impl SimMcpha {
    /// Starts the server on `127.0.0.1:0`.
    pub fn start(cfg: McphaSimConfig) -> std::io::Result<SimMcpha> {
        SimMcpha::start_on("127.0.0.1:0", cfg)
    }

    /// Starts the server on `addr`.
    pub fn start_on(addr: &str, cfg: McphaSimConfig) -> std::io::Result<SimMcpha> {
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            faults_armed: AtomicBool::new(false),
            released: AtomicBool::new(false),
            traces: AtomicU64::new(0),
            pulses: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let server = SimServer::start(addr, "sim-mcpha", move |life| Board::new(cfg, life, sh))?;
        Ok(SimMcpha { server, shared })
    }

    fn arm(&self, f: impl FnOnce(&mut Faults)) {
        if let Ok(mut g) = self.shared.faults.lock() {
            g.sent = 0;
            f(&mut g);
        }
        self.shared.faults_armed.store(true, Ordering::SeqCst);
    }

    /// Resets the connection (TCP RST) once `bytes` more bytes are sent.
    pub fn reset_after(&self, bytes: u64) {
        self.arm(|f| f.reset_after = Some(bytes));
    }

    /// Sends `bytes` more bytes, then nothing (and reads nothing, and accepts no other
    /// client) until [`SimMcpha::release`], then drops the client. The test decides when the
    /// board comes back, so what it sees while the board hangs does not depend on timing.
    pub fn stall(&self, bytes: u64) {
        self.shared.released.store(false, Ordering::SeqCst);
        self.arm(|f| f.stall = Some(bytes));
    }

    /// Ends the stall: the hung client is dropped and the next one is served.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// Replaces the next `traces` traces by garbage of the same length (`GARBAGE!`
    /// repeated: every sample outside the 14-bit range).
    pub fn garbage(&self, traces: u32) {
        self.arm(|f| f.garbage += traces);
    }

    /// Traces sent so far (codes 20 and 31, garbage included).
    pub fn traces_sent(&self) -> u64 {
        self.shared.traces.load(Ordering::SeqCst)
    }

    /// Pulses seen at the inputs so far.
    pub fn pulses(&self) -> u64 {
        self.shared.pulses.load(Ordering::SeqCst)
    }

    /// Bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }
}

/// The board's state (kept across clients).
struct Board {
    cfg: McphaSimConfig,
    life: Arc<SimShared<[u8; 8]>>,
    shared: Arc<Shared>,
    scope: ScopeSettings,
    running: bool,
    write_pos: u32,
    ram: Vec<u8>,
    hist: [Box<[u32; HIST_BINS]>; 2],
    timers: [u64; 2],
    preset: [u64; 2],
    timer_run: [bool; 2],
    pha: [(u16, u16, u16); 2],
    generator: Generator,
    detector: DetectorPulses,
    next: Pulse,
    clock: u64,
    wall: Instant,
    pending: u64,
    /// The fork's daq thread runs.
    daq: bool,
    auto_index: u64,
    cache: Vec<Vec<u8>>,
    captures: u64,
}

enum Sent {
    Ok,
    Gone,
}

impl Board {
    fn new(cfg: McphaSimConfig, life: Arc<SimShared<[u8; 8]>>, shared: Arc<Shared>) -> Board {
        let scope = ScopeSettings::default();
        let mut detector = DetectorPulses::new(&cfg);
        let next = detector.next_pulse();
        Board {
            generator: Generator::new(cfg.seed),
            ram: vec![0; scope.total_samples() * SAMPLE_BYTES],
            cfg,
            life,
            shared,
            scope,
            running: false,
            write_pos: 0,
            hist: [Box::new([0; HIST_BINS]), Box::new([0; HIST_BINS])],
            timers: [0; 2],
            preset: [0; 2],
            timer_run: [false; 2],
            pha: [(0, 0, 16383); 2],
            detector,
            next,
            clock: 0,
            wall: Instant::now(),
            pending: 0,
            daq: false,
            auto_index: 0,
            cache: Vec::new(),
            captures: 0,
        }
    }

    fn serve_client(&mut self, mut s: TcpStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
        let mut word = [0u8; 8];
        let mut have = 0usize;
        loop {
            if self.life.client_must_go(&s) {
                return;
            }
            match s.read(&mut word[have..]) {
                Ok(0) => return,
                Ok(n) => {
                    have += n;
                    if have == 8 {
                        have = 0;
                        if let Sent::Gone = self.command(&mut s, word) {
                            return;
                        }
                    }
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
            let daq = self.daq && self.pending > 0;
            self.follow_wall(daq);
            if self.running && !self.cfg.paced {
                self.hunt();
            }
            // The fork's daq thread (started by 31): while traces are pending and the scope
            // is not running, send the RAM, reset and re-arm; it ends when none are pending
            // or a send fails (the pending count stays, R.7 [inferred]).
            while self.daq && self.pending > 0 && !self.running {
                self.pending -= 1;
                if let Sent::Gone = self.send_trace(&mut s) {
                    return;
                }
                self.running = true;
                if self.cfg.paced {
                    self.follow_wall(true);
                } else {
                    self.hunt();
                }
            }
            if self.pending == 0 {
                self.daq = false;
            }
        }
    }

    fn command(&mut self, s: &mut TcpStream, word: [u8; 8]) -> Sent {
        if self.cfg.transcript {
            self.life.record(word);
        }
        let Some(c) = Command::decode(word) else {
            return Sent::Ok;
        };
        use Command::*;
        let ch = |i: Input| i.chan() as usize;
        match c {
            ResetHistogram(i) => self.hist[ch(i)].fill(0),
            ResetTimer(i) => self.timers[ch(i)] = 0,
            ResetScope => self.running = false,
            ResetGenerator => {
                self.generator.running = false;
            }
            SetDecimation(n) => self.scope.decimation = n,
            SetNegator(i, on) => self.scope.negator[ch(i)] = on,
            SetPhaDelay(i, d) => self.pha[ch(i)].0 = d,
            SetPhaMin(i, v) => self.pha[ch(i)].1 = v,
            SetPhaMax(i, v) => self.pha[ch(i)].2 = v,
            SetTimerPreset(i, t) => self.preset[ch(i)] = t,
            SetTimerMode(t, run) => match t {
                Timers::One(i) => self.timer_run[ch(i)] = run,
                Timers::Both => self.timer_run = [run; 2],
            },
            ReadStatus => {
                let st = Status {
                    timers: [self.timers[0], self.timers[1], 0, 0],
                    scope: (((self.write_pos + self.scope.pre_samples() as u32) & 0x7F_FFFF) << 1)
                        | u32::from(self.running),
                };
                return self.send(s, &st.encode());
            }
            ReadHistogram(i) => {
                let mut b = vec![0u8; HIST_BYTES];
                for (c, v) in b.chunks_exact_mut(4).zip(self.hist[ch(i)].iter()) {
                    c.copy_from_slice(&v.to_le_bytes());
                }
                return self.send(s, &b);
            }
            SetTriggerSource(i) => self.scope.source = i,
            SetTriggerSlope(sl) => self.scope.slope = sl,
            SetTriggerMode(m) => self.scope.mode = m,
            SetTriggerLevel(l) => self.scope.level = l,
            SetPreSamples(n) => self.scope.pre = n,
            SetTotalSamples(n) => {
                self.scope.total = n;
                self.ram = vec![0; self.scope.total_samples() * SAMPLE_BYTES];
                self.cache.clear();
            }
            StartScope => {
                self.running = true;
                if self.scope.mode == TriggerMode::Auto {
                    self.capture(None);
                } else if !self.cfg.paced {
                    self.hunt();
                }
            }
            ReadTrace => return self.send_trace(s),
            SetGenFallTime(t) => self.generator.fall_us = t,
            SetGenRiseTime(t) => self.generator.rise_ns = t,
            SetGenLower(v) => self.generator.lower = v,
            SetGenUpper(v) => self.generator.upper = v,
            SetGenRate(r) => self.generator.rate = r,
            SetGenDistribution(d) => self.generator.distribution = d,
            ResetGenSpectrum => self.generator.spectrum.fill(0),
            SetGenBin { bin, weight } => self.generator.spectrum[usize::from(bin)] = weight,
            StartGenerator { keep_pulsing } => {
                let sum: u64 = self.generator.spectrum.iter().map(|&w| u64::from(w)).sum();
                if sum >= 1 {
                    self.generator.keep_pulsing = keep_pulsing;
                    if !self.generator.running {
                        self.generator.running = true;
                        self.generator.next_ticks = self.clock + 125_000;
                    }
                }
            }
            StopGenerator => self.generator.running = false,
            StartDaq(n) => {
                self.pending += u64::from(n);
                self.daq = true;
            }
        }
        Sent::Ok
    }

    /// The next pulse at the inputs (the generator's while it runs into them).
    fn peek(&mut self) -> Pulse {
        if self.generator.running && self.cfg.generator_loopback {
            Pulse {
                ticks: self.generator.next_ticks,
                ..self.next
            }
        } else {
            self.next
        }
    }

    fn take(&mut self) -> Pulse {
        if self.generator.running && self.cfg.generator_loopback {
            self.generator.next_pulse()
        } else {
            let p = self.next;
            self.next = self.detector.next_pulse();
            p
        }
    }

    fn advance_timers(&mut self, to: u64) {
        let dt = to.saturating_sub(self.clock);
        for c in 0..2 {
            if self.timer_run[c] {
                let t = self.timers[c] + dt;
                self.timers[c] = if self.preset[c] > 0 {
                    t.min(self.preset[c])
                } else {
                    t
                };
            }
        }
        self.clock = self.clock.max(to);
    }

    /// One pulse at the inputs: histogram, and a trace if the scope waits for it.
    fn process(&mut self) {
        let next_ticks = self.peek().ticks;
        // A detector stream behind the clock (the generator ran meanwhile) catches up.
        let at = next_ticks.max(self.clock);
        self.advance_timers(at);
        let p = self.take();
        self.shared.pulses.fetch_add(1, Ordering::Relaxed);
        for input in [Input::In1, Input::In2] {
            let c = input.chan() as usize;
            let live =
                self.timer_run[c] && (self.preset[c] == 0 || self.timers[c] < self.preset[c]);
            let peak = p.peak(input, &self.scope);
            let (_, lo, hi) = self.pha[c];
            if live
                && (0..HIST_BINS as i32).contains(&peak)
                && peak >= i32::from(lo)
                && peak <= i32::from(hi)
            {
                self.hist[c][peak as usize] = self.hist[c][peak as usize].saturating_add(1);
            }
        }
        if self.running && p.triggers(&self.scope) {
            self.capture(Some(&p));
        }
    }

    /// Paced: processes the pulses up to the wall clock. With `daq` (the fork's thread
    /// re-arms at once after sending), it stops at a capture so that the trace is sent and
    /// the scope re-armed before the next pulse.
    fn follow_wall(&mut self, daq: bool) {
        if !self.cfg.paced {
            return;
        }
        let to = (self.wall.elapsed().as_secs_f64() * protocol::TICKS_PER_SECOND) as u64;
        let mut budget = 1_000_000;
        while self.peek().ticks <= to && budget > 0 {
            let armed = self.running;
            self.process();
            if daq && armed && !self.running {
                return;
            }
            budget -= 1;
        }
        self.advance_timers(to);
    }

    /// Not paced: jump to pulses until the armed scope has a trace (bounded per call).
    fn hunt(&mut self) {
        let mut budget = 100_000;
        while self.running && budget > 0 {
            self.process();
            budget -= 1;
        }
    }

    fn capture(&mut self, p: Option<&Pulse>) {
        let total = self.scope.total_samples();
        let stale = match p {
            Some(p) if self.cfg.stale_tail => ((p.ticks % 64) as usize).min(total),
            _ => 0,
        };
        let fresh = (total - stale) * SAMPLE_BYTES;
        match self.cfg.repeat_after {
            Some(k) if k > 0 && self.cache.len() == k => {
                let i = (self.captures % k as u64) as usize;
                self.ram[..fresh].copy_from_slice(&self.cache[i][..fresh]);
            }
            k => {
                let key = match p {
                    Some(p) if p.generated => self.cfg.seed ^ (p.index | 1 << 62),
                    Some(p) => self.cfg.seed ^ p.index,
                    None => {
                        self.auto_index += 1;
                        self.cfg.seed ^ (self.auto_index | 1 << 63)
                    }
                };
                render(p, key, &self.scope, self.cfg.noise, &mut self.ram[..fresh]);
                if let Some(k) = k {
                    if k > 0 {
                        self.cache.push(self.ram.clone());
                    }
                }
            }
        }
        self.captures += 1;
        self.write_pos = (self.write_pos + total as u32) & 0x7F_FFFF;
        self.running = false;
    }

    fn send_trace(&mut self, s: &mut TcpStream) -> Sent {
        let n = self.shared.traces.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.cfg.garbage_every;
        let garbage = (every > 0 && n.is_multiple_of(every))
            || self.shared.faults_armed.load(Ordering::SeqCst)
                && self
                    .shared
                    .faults
                    .lock()
                    .map(|mut f| {
                        let g = f.garbage > 0;
                        if g {
                            f.garbage -= 1;
                        }
                        g
                    })
                    .unwrap_or(false);
        if garbage {
            let g: Vec<u8> = b"GARBAGE!"
                .iter()
                .copied()
                .cycle()
                .take(self.ram.len())
                .collect();
            return self.send(s, &g);
        }
        let ram = std::mem::take(&mut self.ram);
        let r = self.send(s, &ram);
        self.ram = ram;
        r
    }

    /// Sends `bytes`, applying the armed faults.
    fn send(&mut self, s: &mut TcpStream, bytes: &[u8]) -> Sent {
        let mut n = bytes.len();
        // After the bytes: `Some(false)` a reset, `Some(true)` a stall.
        let mut then: Option<bool> = None;
        if self.shared.faults_armed.load(Ordering::SeqCst) {
            if let Ok(mut f) = self.shared.faults.lock() {
                if let Some(limit) = f.reset_after {
                    if f.sent + n as u64 >= limit {
                        n = (limit - f.sent.min(limit)) as usize;
                        f.reset_after = None;
                        then = Some(false);
                    }
                }
                if then.is_none() {
                    if let Some(limit) = f.stall {
                        if f.sent + n as u64 >= limit {
                            n = (limit - f.sent.min(limit)) as usize;
                            f.stall = None;
                            then = Some(true);
                        }
                    }
                }
                f.sent += n as u64;
                if f.reset_after.is_none() && f.stall.is_none() && f.garbage == 0 {
                    self.shared.faults_armed.store(false, Ordering::SeqCst);
                }
            }
        }
        let _ = s.set_read_timeout(None);
        let ok = s.write_all(&bytes[..n]).is_ok();
        let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
        self.shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        match then {
            None if ok => Sent::Ok,
            None => Sent::Gone,
            Some(false) => {
                reset(s);
                Sent::Gone
            }
            Some(true) => {
                while !self.shared.released.load(Ordering::SeqCst) && !self.life.stopped() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Sent::Gone
            }
        }
    }
}

impl SimBoard for Board {
    fn serve(&mut self, s: TcpStream) {
        self.serve_client(s);
        self.daq = false;
        // R.7: state kept; the generator stops unless keep_pulsing.
        if !self.generator.keep_pulsing {
            self.generator.running = false;
            let seed = self.cfg.seed;
            self.generator = Generator {
                rng: Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ self.generator.index)),
                ..self.generator.clone()
            };
        }
    }

    fn idle(&mut self) {
        self.follow_wall(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client connected to `sim`, its reads timing out after `timeout`.
    fn client(sim: &SimMcpha, timeout: Duration) -> TcpStream {
        let s = TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        s
    }

    fn talk(s: &mut TcpStream, c: Command) {
        s.write_all(&c.encode()).unwrap();
    }

    fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        s.read_exact(&mut b).unwrap();
        b
    }

    fn configure(s: &mut TcpStream, sc: &ScopeSettings) {
        use Command::*;
        for c in [
            SetDecimation(sc.decimation),
            SetNegator(Input::In1, sc.negator[0]),
            SetNegator(Input::In2, sc.negator[1]),
            SetTriggerSlope(sc.slope),
            SetTriggerMode(sc.mode),
            SetTriggerLevel(sc.level),
            SetPreSamples(sc.pre),
            SetTriggerSource(sc.source),
            SetTotalSamples(sc.total),
            ResetScope,
            StartScope,
        ] {
            talk(s, c);
        }
    }

    #[test]
    fn streams_the_seeded_traces_back_to_back_and_polls_upstream() {
        let cfg = McphaSimConfig {
            stale_tail: false,
            ..McphaSimConfig::default()
        };
        let sim = SimMcpha::start(cfg.clone()).unwrap();
        let mut s = client(&sim, Duration::from_secs(5));
        let sc = ScopeSettings {
            total: 200,
            pre: 20,
            level: 500,
            ..ScopeSettings::default()
        };
        configure(&mut s, &sc);
        let want = expected_traces(&cfg, &sc, 6);
        talk(&mut s, Command::StartDaq(3));
        for w in &want[..3] {
            assert_eq!(&read_n(&mut s, 800), w);
        }
        // Nothing more until asked: the status (not a trace) is the next reply.
        talk(&mut s, Command::ReadStatus);
        let st = Status::decode(&read_n(&mut s, 36)).unwrap();
        assert!(
            !st.running(),
            "not paced: the armed scope has its next trace"
        );
        // Upstream: read 20, reset, arm.
        talk(&mut s, Command::ReadTrace);
        assert_eq!(&read_n(&mut s, 800), &want[3]);
        talk(&mut s, Command::ResetScope);
        talk(&mut s, Command::StartScope);
        talk(&mut s, Command::ReadStatus);
        assert!(!Status::decode(&read_n(&mut s, 36)).unwrap().running());
        talk(&mut s, Command::ReadTrace);
        assert_eq!(&read_n(&mut s, 800), &want[4]);
        // The trigger is at sample pre: below the level before, at or above it there.
        let (before, _) = protocol::sample(&want[4], 19).unwrap();
        let (at, _) = protocol::sample(&want[4], 20).unwrap();
        assert!(before < 500 && at >= 500, "{before} {at}");
        assert_eq!(sim.traces_sent(), 5);
        // Unknown codes are ignored, nothing comes back.
        s.write_all(&[0, 0, 0, 0, 0, 0, 0, 200]).unwrap();
        talk(&mut s, Command::ReadStatus);
        assert_eq!(read_n(&mut s, 36).len(), 36);
        assert_eq!(sim.transcript().len(), 11 + 1 + 1 + 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn stale_tail_and_generator_and_histogram() {
        let cfg = McphaSimConfig::default();
        let sim = SimMcpha::start(cfg.clone()).unwrap();
        let mut s = client(&sim, Duration::from_secs(5));
        let sc = ScopeSettings {
            total: 300,
            pre: 10,
            ..ScopeSettings::default()
        };
        talk(&mut s, Command::SetTimerMode(Timers::Both, true));
        configure(&mut s, &sc);
        let want = expected_traces(&cfg, &sc, 20);
        talk(&mut s, Command::StartDaq(20));
        let mut stale = 0;
        for w in &want {
            let got = read_n(&mut s, 1200);
            // The first 300 - 63 samples are always fresh.
            assert_eq!(&got[..(300 - 63) * 4], &w[..(300 - 63) * 4]);
            stale += usize::from(got != *w);
        }
        assert!(stale > 10, "the stale tail shows in most traces: {stale}");
        // Generator: every pulse of height 777 into both inputs.
        use Command::*;
        talk(&mut s, ResetGenSpectrum);
        talk(
            &mut s,
            SetGenBin {
                bin: 777,
                weight: 5,
            },
        );
        talk(&mut s, SetGenRate(100_000));
        talk(
            &mut s,
            StartGenerator {
                keep_pulsing: false,
            },
        );
        // The re-armed scope already holds the next detector trace: start afresh. Arming
        // takes one generator pulse into the RAM (and the histogram) before the reset.
        talk(&mut s, ResetScope);
        talk(&mut s, StartScope);
        talk(&mut s, ResetHistogram(Input::In1));
        talk(&mut s, StartDaq(5));
        for _ in 0..5 {
            let t = read_n(&mut s, 1200);
            let max = (0..300).map(|i| protocol::sample(&t, i).unwrap().0).max();
            assert!(
                max.is_some_and(|m| (765..=780).contains(&m)),
                "height 777: {max:?}"
            );
        }
        talk(&mut s, ReadHistogram(Input::In1));
        let mut bins = [0u32; HIST_BINS];
        protocol::decode_histogram(&read_n(&mut s, HIST_BYTES), &mut bins).unwrap();
        // Pulses 2..6 (the 6th waits in the re-armed scope's RAM), all in one bin.
        assert_eq!(bins[777], 5, "the generator's pulses, all in one bin");
        assert_eq!(bins.iter().sum::<u32>(), 5);
        talk(&mut s, ReadStatus);
        let st = Status::decode(&read_n(&mut s, 36)).unwrap();
        assert!(st.timers[0] > 0 && st.timers[0] == st.timers[1]);
    }

    #[test]
    fn one_client_at_a_time_and_faults() {
        let sim = SimMcpha::start(McphaSimConfig::default()).unwrap();
        let mut a = client(&sim, Duration::from_millis(300));
        talk(&mut a, Command::ReadStatus);
        read_n(&mut a, 36);
        let mut b = client(&sim, Duration::from_millis(300));
        talk(&mut b, Command::ReadStatus);
        let mut x = [0u8; 1];
        assert!(b.read(&mut x).is_err(), "the second client waits");
        drop(a);
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_n(&mut b, 36);
        assert_eq!(sim.clients(), 2);
        // Reset after 10 bytes of the next reply.
        sim.reset_after(10);
        talk(&mut b, Command::ReadStatus);
        let mut got = Vec::new();
        let e = b.read_to_end(&mut got);
        assert_eq!(got.len(), 10);
        assert_eq!(e.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
        // Garbage of the right length.
        let mut c = client(&sim, Duration::from_secs(5));
        configure(&mut c, &ScopeSettings::default());
        sim.garbage(1);
        talk(&mut c, Command::StartDaq(2));
        let g = read_n(&mut c, 4400);
        assert!(protocol::check_trace(&g).is_err());
        assert!(protocol::check_trace(&read_n(&mut c, 4400)).is_ok());
    }
}
