//! A simulated Red Pitaya SCPI server: a real TCP server on loopback that speaks the
//! command lines and replies of HARDWARE.md Part 2, section S, byte for byte, over a
//! simulated 16384-sample acquisition buffer per input fed by a seeded detector signal.
//!
//! Guarantees: one client at a time (others wait in the backlog, as with the board's
//! server); the acquisition is a state machine advanced one sample at a time, so the traces
//! depend only on the seed and the settings, never on how often the client polls
//! ([`expected_traces`] replays them); triggers are found in the signal itself (a crossing
//! of the level on the chosen edge, or `NOW`), eligible once the pre-trigger part of the
//! buffer was written since `ACQ:START` [unverified on the board]; the trigger position
//! wraps around the buffer, so reads wrap too. Data replies follow `ACQ:DATA:Units`,
//! `FORMAT` and `BYTE:ORDER` (RAW int16 or VOLTS float32 in binary blocks, or ASCII
//! `{…}`). Must never: answer a query it does not know (it queues an error, as `*STB?` and
//! `SYST:ERR:NEXT?` report).

use super::protocol::{encode_block, window_start, BUFFER_SAMPLES, DELAY_ZERO_POST};
use crate::redpitaya::protocol::{ADC_MAX, ADC_MIN, SAMPLE_BYTES};
use crate::redpitaya::sim_server::{SimBoard, SimServer, SimShared};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Exp, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts per volt of RAW data (LV jumpers: ±1 V over ±8192 counts).
pub const COUNTS_PER_VOLT: f64 = 8192.0;
/// What `*IDN?` answers [unverified: the board's exact text varies with the OS version].
pub const IDN: &str = "REDPITAYA,INSTR2020,0,OS_2.00-SIM";
/// Most samples one unpaced poll may generate (a level above every pulse waits for ever,
/// and the server must stay responsive).
const BUDGET: u64 = 4_000_000;

/// The simulated detector and faults.
#[derive(Clone, Debug, PartialEq)]
pub struct ScpiSimConfig {
    /// Random seed: the same seed gives the same signal.
    pub seed: u64,
    /// Detector pulses per second (signal time).
    pub rate: f64,
    /// The acquisition takes as long as its samples last at the sample rate (false: as fast
    /// as it is computed).
    pub paced: bool,
    /// Pulses are negative.
    pub negative: bool,
    /// Uniform noise amplitude (counts).
    pub noise: i16,
    /// Pulse rise and decay time constants (ns).
    pub rise_ns: f64,
    /// See `rise_ns`.
    pub decay_ns: f64,
    /// Heights: a Gaussian line (mean, sigma, counts) with this share, the rest flat over
    /// `flat`.
    pub line: (f64, f64),
    /// Share of the line.
    pub line_share: f64,
    /// Flat part of the heights (counts).
    pub flat: (f64, f64),
    /// IN2 sees each pulse at this fraction of IN1.
    pub in2_fraction: f64,
    /// Replace IN1's data of every n-th acquisition by out-of-range samples (0 = never).
    pub garbage_every: u64,
    /// Keep every command line received (`transcript()`).
    pub transcript: bool,
}

impl Default for ScpiSimConfig {
    fn default() -> Self {
        ScpiSimConfig {
            seed: 1,
            rate: 1000.0,
            paced: true,
            negative: false,
            noise: 8,
            rise_ns: 40.0,
            decay_ns: 2000.0,
            line: (1000.0, 20.0),
            line_share: 0.7,
            flat: (200.0, 4000.0),
            in2_fraction: 0.5,
            garbage_every: 0,
            transcript: true,
        }
    }
}

/// The acquisition settings the client gave (after `ACQ:RST`: the board's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AcqSettings {
    /// `ACQ:DEC`.
    pub decimation: u32,
    /// `ACQ:TRig:LEV` in counts.
    pub level: i16,
    /// `ACQ:TRig:DLY`.
    pub delay: i64,
    /// `ACQ:TRig` source: `None` = DISABLED; input 0/1 and rising, or `NOW`.
    pub source: Option<TriggerWord>,
}

/// A trigger source the simulator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerWord {
    /// At once.
    Now,
    /// A crossing of input `0`/`1`, rising when `true`.
    Edge(usize, bool),
}

impl Default for AcqSettings {
    fn default() -> Self {
        AcqSettings {
            decimation: 1,
            level: 0,
            delay: 0,
            source: None,
        }
    }
}

impl AcqSettings {
    fn post(&self) -> u64 {
        (DELAY_ZERO_POST + self.delay).clamp(1, i64::from(BUFFER_SAMPLES)) as u64
    }
    fn sample_ns(&self) -> f64 {
        8.0 * f64::from(self.decimation.max(1))
    }
}

/// The detector signal at the inputs, one sample at a time.
struct Signal {
    rng: Xoshiro256PlusPlus,
    cfg: ScpiSimConfig,
    /// Samples until the next pulse.
    next_in: f64,
    /// Pulses still ringing: (age in samples, height).
    active: Vec<(f64, f64)>,
}

impl Signal {
    fn new(cfg: &ScpiSimConfig) -> Signal {
        Signal {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            cfg: cfg.clone(),
            next_in: 0.0,
            active: Vec::with_capacity(16),
        }
    }

    fn height(&mut self) -> f64 {
        let c = &self.cfg;
        if self.rng.random::<f64>() < c.line_share {
            Normal::new(c.line.0, c.line.1.max(1e-9))
                .map(|n| n.sample(&mut self.rng))
                .unwrap_or(c.line.0)
        } else {
            self.rng.random_range(c.flat.0..=c.flat.1.max(c.flat.0))
        }
    }

    /// The next sample of both inputs at `dt_ns` per sample.
    fn sample(&mut self, dt_ns: f64) -> [i16; 2] {
        self.next_in -= 1.0;
        while self.next_in <= 0.0 {
            let h = self.height();
            self.active.push((-self.next_in, h));
            let per_sample = self.cfg.rate * dt_ns * 1e-9;
            let gap = Exp::new(per_sample.max(1e-12))
                .map(|e| e.sample(&mut self.rng))
                .unwrap_or(f64::INFINITY);
            self.next_in += gap.max(1e-9);
        }
        let (rise, decay) = (self.cfg.rise_ns / dt_ns, self.cfg.decay_ns / dt_ns);
        let mut v = 0.0;
        for (age, h) in &mut self.active {
            v += *h * (1.0 - (-*age / rise.max(1e-9)).exp()) * (-*age / decay.max(1e-9)).exp();
            *age += 1.0;
        }
        self.active
            .retain(|(age, _)| *age < 12.0 * decay + 12.0 * rise);
        if self.cfg.negative {
            v = -v;
        }
        let n = i32::from(self.cfg.noise);
        let mut noise = || {
            if n == 0 {
                0
            } else {
                self.rng.random_range(-n..=n)
            }
        };
        let clamp = |x: f64| x.round().clamp(f64::from(ADC_MIN), f64::from(ADC_MAX)) as i16;
        let (n1, n2) = (noise(), noise());
        [
            clamp(v + f64::from(n1)),
            clamp(v * self.cfg.in2_fraction + f64::from(n2)),
        ]
    }
}

/// The acquisition buffer and its state machine (pure: no clock, no I/O).
pub struct Acquisition {
    signal: Signal,
    /// The buffer of each input.
    pub buffer: [Vec<i16>; 2],
    /// Next index written.
    pub wpos: u32,
    /// Index of the trigger sample of the last acquisition.
    pub tpos: u32,
    /// Samples written since `ACQ:START`.
    written: u64,
    /// Post-trigger samples still to write; `None` until triggered.
    post_left: Option<u64>,
    prev: Option<i16>,
    /// Running (between `ACQ:START` and the end of the post-trigger samples).
    pub running: bool,
    /// Acquisitions finished.
    pub done: u64,
}

impl Acquisition {
    /// A board after power-up: buffer zero, not running.
    pub fn new(cfg: &ScpiSimConfig) -> Acquisition {
        Acquisition {
            signal: Signal::new(cfg),
            buffer: [
                vec![0; BUFFER_SAMPLES as usize],
                vec![0; BUFFER_SAMPLES as usize],
            ],
            wpos: 0,
            tpos: 0,
            written: 0,
            post_left: None,
            prev: None,
            running: false,
            done: 0,
        }
    }

    /// `ACQ:START`.
    pub fn start(&mut self) {
        self.running = true;
        self.written = 0;
        self.post_left = None;
        self.prev = None;
    }

    /// Triggered (and the post-trigger samples written, or being written).
    pub fn triggered(&self) -> bool {
        self.post_left.is_some()
    }

    /// Writes up to `budget` samples under `s`; true when the acquisition is complete.
    pub fn advance(&mut self, s: &AcqSettings, budget: u64) -> bool {
        if !self.running {
            return self.post_left == Some(0);
        }
        let dt = s.sample_ns();
        let post = s.post();
        let pre_needed = u64::from(BUFFER_SAMPLES) - post;
        for _ in 0..budget {
            let v = self.signal.sample(dt);
            let at = self.wpos;
            self.buffer[0][at as usize] = v[0];
            self.buffer[1][at as usize] = v[1];
            self.wpos = (self.wpos + 1) % BUFFER_SAMPLES;
            self.written += 1;
            match &mut self.post_left {
                Some(left) => {
                    *left -= 1;
                }
                None => {
                    let eligible = self.written > pre_needed;
                    let fire = match s.source {
                        Some(TriggerWord::Now) => eligible,
                        Some(TriggerWord::Edge(ch, rising)) => {
                            let cur = v[ch];
                            let crossed = self.prev.is_some_and(|p| {
                                if rising {
                                    p < s.level && s.level <= cur
                                } else {
                                    p > s.level && s.level >= cur
                                }
                            });
                            self.prev = Some(cur);
                            eligible && crossed
                        }
                        None => false,
                    };
                    if fire {
                        self.tpos = at;
                        self.post_left = Some(post - 1);
                    }
                }
            }
            if self.post_left == Some(0) {
                self.running = false;
                self.done += 1;
                return true;
            }
        }
        false
    }

    /// `n` samples of input `ch` from buffer index `start`, wrapping.
    pub fn read(&self, ch: usize, start: u32, n: u32) -> impl Iterator<Item = i16> + '_ {
        (0..n).map(move |i| self.buffer[ch][((start + i) % BUFFER_SAMPLES) as usize])
    }
}

/// The traces an unpaced simulator of `cfg` gives a client that reads `samples` samples,
/// `pre` of them before the trigger, with settings `s`: the first `n`, as
/// `{IN1: int16, IN2: int16}` records (the driver's event bytes).
pub fn expected_traces(
    cfg: &ScpiSimConfig,
    s: &AcqSettings,
    pre: u32,
    samples: u32,
    n: usize,
) -> Vec<Vec<u8>> {
    let mut a = Acquisition::new(cfg);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        a.start();
        while !a.advance(s, BUDGET) {}
        let start = window_start(a.tpos, pre);
        let mut t = Vec::with_capacity(samples as usize * SAMPLE_BYTES);
        for (x, y) in a.read(0, start, samples).zip(a.read(1, start, samples)) {
            t.extend_from_slice(&x.to_le_bytes());
            t.extend_from_slice(&y.to_le_bytes());
        }
        out.push(t);
    }
    out
}

/// A running simulated SCPI server; stops when dropped. The controls it shares with the
/// MCPHA simulator (address, transcript of command lines without the `\r\n`, vanish and
/// reappear, clients) are its [`SimServer`]'s.
pub struct SimScpi {
    server: SimServer<String>,
    acquisitions: Arc<AtomicU64>,
}

impl std::ops::Deref for SimScpi {
    type Target = SimServer<String>;
    fn deref(&self) -> &SimServer<String> {
        &self.server
    }
}

impl SimScpi {
    /// Starts the server on `127.0.0.1:0`.
    pub fn start(cfg: ScpiSimConfig) -> std::io::Result<SimScpi> {
        let acquisitions = Arc::new(AtomicU64::new(0));
        let done = acquisitions.clone();
        let server = SimServer::start("127.0.0.1:0", "sim-scpi", move |life| {
            Server::new(cfg, life, done)
        })?;
        Ok(SimScpi {
            server,
            acquisitions,
        })
    }

    /// Acquisitions completed so far.
    pub fn acquisitions(&self) -> u64 {
        self.acquisitions.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Units {
    Raw,
    Volts,
}

struct Server {
    cfg: ScpiSimConfig,
    life: Arc<SimShared<String>>,
    /// Acquisitions completed so far ([`SimScpi::acquisitions`]).
    acquisitions: Arc<AtomicU64>,
    acq: Acquisition,
    s: AcqSettings,
    units: Units,
    binary: bool,
    little: bool,
    started_at: Instant,
    paced_done: u64,
    errors: Vec<String>,
    /// Acquisitions whose IN1 data was read (for `garbage_every`).
    reads: u64,
    out: Vec<u8>,
}

impl Server {
    fn new(
        cfg: ScpiSimConfig,
        life: Arc<SimShared<String>>,
        acquisitions: Arc<AtomicU64>,
    ) -> Server {
        Server {
            acq: Acquisition::new(&cfg),
            cfg,
            life,
            acquisitions,
            s: AcqSettings::default(),
            units: Units::Volts,
            binary: false,
            little: false,
            started_at: Instant::now(),
            paced_done: 0,
            errors: Vec::new(),
            reads: 0,
            out: Vec::with_capacity(BUFFER_SAMPLES as usize * 4 + 64),
        }
    }

    fn serve_client(&mut self, mut s: TcpStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
        let mut line = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        loop {
            if self.life.client_must_go(&s) {
                return;
            }
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                            let text = String::from_utf8_lossy(&line).into_owned();
                            line.clear();
                            if self.cfg.transcript {
                                self.life.record(text.clone());
                            }
                            self.out.clear();
                            self.command(text.trim());
                            if !self.out.is_empty() && s.write_all(&self.out).is_err() {
                                return;
                            }
                        } else if line.len() < 4096 {
                            line.push(b);
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn error(&mut self, e: &str) {
        if self.errors.len() < 32 {
            self.errors.push(e.to_string());
        }
    }

    /// Advances the acquisition as far as the clock (paced) or the budget allows.
    fn advance(&mut self) {
        if !self.acq.running || self.s.source.is_none() {
            return;
        }
        let budget = if self.cfg.paced {
            let due = (self.started_at.elapsed().as_nanos() as f64 / self.s.sample_ns()) as u64;
            due.saturating_sub(self.paced_done).min(BUDGET)
        } else {
            BUDGET
        };
        self.paced_done += budget;
        if self.acq.advance(&self.s, budget) {
            self.acquisitions.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn command(&mut self, line: &str) {
        let (head, arg) = match line.split_once(' ') {
            Some((h, a)) => (h.to_ascii_uppercase(), a.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match head.as_str() {
            "*IDN?" => self.reply(IDN),
            "*STB?" => {
                let v = if self.errors.is_empty() { "0" } else { "4" };
                self.reply(v)
            }
            "SYST:ERR:NEXT?" => {
                let e = if self.errors.is_empty() {
                    "0,\"No error\"".to_string()
                } else {
                    self.errors.remove(0)
                };
                self.reply(&e)
            }
            "ACQ:RST" => {
                self.s = AcqSettings::default();
                self.units = Units::Volts;
                self.binary = false;
                self.little = false;
                self.acq.running = false;
            }
            "ACQ:DEC" => match arg.parse::<u32>() {
                Ok(d) if d.is_power_of_two() && d <= 65536 => self.s.decimation = d,
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:DEC?" => {
                let d = self.s.decimation.to_string();
                self.reply(&d)
            }
            "ACQ:DATA:UNITS" => match arg.to_ascii_uppercase().as_str() {
                "RAW" => self.units = Units::Raw,
                "VOLTS" => self.units = Units::Volts,
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:DATA:FORMAT" => match arg.to_ascii_uppercase().as_str() {
                "BIN" => self.binary = true,
                "ASCII" => self.binary = false,
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:DATA:BYTE:ORDER" => match arg.to_ascii_uppercase().as_str() {
                "LEND" => self.little = true,
                "BEND" => self.little = false,
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:TRIG:LEV" => match arg.trim_end_matches(['V', 'v']).parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    self.s.level = (v * COUNTS_PER_VOLT)
                        .round()
                        .clamp(f64::from(ADC_MIN), f64::from(ADC_MAX))
                        as i16
                }
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:TRIG:DLY" => match arg.parse::<i64>() {
                Ok(d) if d >= -DELAY_ZERO_POST => self.s.delay = d,
                _ => self.error("-224,\"Illegal parameter value\""),
            },
            "ACQ:START" => {
                self.acq.start();
                self.started_at = Instant::now();
                self.paced_done = 0;
            }
            "ACQ:STOP" => self.acq.running = false,
            "ACQ:TRIG" => {
                self.s.source = match arg.to_ascii_uppercase().as_str() {
                    "DISABLED" => None,
                    "NOW" => Some(TriggerWord::Now),
                    "CH1_PE" => Some(TriggerWord::Edge(0, true)),
                    "CH1_NE" => Some(TriggerWord::Edge(0, false)),
                    "CH2_PE" => Some(TriggerWord::Edge(1, true)),
                    "CH2_NE" => Some(TriggerWord::Edge(1, false)),
                    _ => {
                        // EXT and AWG are not simulated: nothing triggers.
                        self.error("-224,\"Illegal parameter value\"");
                        None
                    }
                };
            }
            "ACQ:TRIG:STAT?" => {
                self.advance();
                let td = self.s.source.is_none() || self.acq.triggered();
                self.reply(if td { "TD" } else { "WAIT" })
            }
            "ACQ:TRIG:FILL?" => {
                self.advance();
                let full = !self.acq.running && self.acq.triggered();
                self.reply(if full { "1" } else { "0" })
            }
            "ACQ:TPOS?" => {
                let t = self.acq.tpos.to_string();
                self.reply(&t)
            }
            "ACQ:WPOS?" => {
                let w = self.acq.wpos.to_string();
                self.reply(&w)
            }
            "ACQ:BUF:SIZE?" => self.reply(&BUFFER_SAMPLES.to_string()),
            h => {
                if let Some((ch, rest)) = h
                    .strip_prefix("ACQ:SOUR")
                    .and_then(|r| r.split_once(':'))
                    .and_then(|(c, rest)| Some((c.parse::<usize>().ok()?, rest)))
                {
                    if (1..=2).contains(&ch) {
                        return self.data(ch - 1, rest, arg);
                    }
                }
                self.error("-113,\"Undefined header\"");
            }
        }
    }

    /// `ACQ:SOUR<n>:DATA?` and `ACQ:SOUR<n>:DATA:STArt:N? a,n`.
    fn data(&mut self, ch: usize, rest: &str, arg: &str) {
        let (start, n) = match rest {
            "DATA?" => (0, BUFFER_SAMPLES),
            "DATA:STA:N?" | "DATA:START:N?" => {
                let parsed = arg.split_once(',').and_then(|(a, n)| {
                    Some((a.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
                });
                match parsed {
                    Some((a, n)) if a < BUFFER_SAMPLES && (1..=BUFFER_SAMPLES).contains(&n) => {
                        (a, n)
                    }
                    _ => return self.error("-224,\"Illegal parameter value\""),
                }
            }
            _ => return self.error("-113,\"Undefined header\""),
        };
        let garbage = ch == 0 && {
            self.reads += 1;
            self.cfg.garbage_every > 0 && self.reads.is_multiple_of(self.cfg.garbage_every)
        };
        let samples: Vec<i16> = if garbage {
            vec![0x7f7f; n as usize]
        } else {
            self.acq.read(ch, start, n).collect()
        };
        if self.binary {
            let mut payload = Vec::with_capacity(n as usize * 4);
            for v in samples {
                match (self.units, self.little) {
                    (Units::Raw, true) => payload.extend_from_slice(&v.to_le_bytes()),
                    (Units::Raw, false) => payload.extend_from_slice(&v.to_be_bytes()),
                    (Units::Volts, true) => payload.extend_from_slice(
                        &((f64::from(v) / COUNTS_PER_VOLT) as f32).to_le_bytes(),
                    ),
                    (Units::Volts, false) => payload.extend_from_slice(
                        &((f64::from(v) / COUNTS_PER_VOLT) as f32).to_be_bytes(),
                    ),
                }
            }
            encode_block(&payload, &mut self.out);
        } else {
            let items: Vec<String> = samples
                .iter()
                .map(|&v| match self.units {
                    Units::Raw => v.to_string(),
                    Units::Volts => format!("{:.6}", f64::from(v) / COUNTS_PER_VOLT),
                })
                .collect();
            let text = format!("{{{}}}", items.join(","));
            self.reply(&text);
        }
    }
}

impl SimBoard for Server {
    fn serve(&mut self, s: TcpStream) {
        self.serve_client(s);
    }
}
