//! The MCPHA driver: connects to the server over TCP (`std::net`, timeouts), configures the
//! scope (decimation, negators, trigger, pre-trigger and total samples), the PHA and timers,
//! and the pulse generator; then reads traces straight into the caller's slot (streamed with
//! the fork's code 31, or the upstream way: arm, poll the status, read), or the hardware
//! histograms and timers every `interval`.
//!
//! Guarantees: a trace event is exactly `samples` records of `{IN1: int16, IN2: int16}` (the
//! wire bytes themselves: one LE uint32 word per sample, low half IN1), every sample checked
//! to be in the 14-bit range; the `discard_tail` samples requested beyond `samples` are read
//! into a buffer kept for the purpose and dropped (R.6: the last up to 63 samples of a window
//! may be stale RAM \[inferred\]; mimoCoRB2 requests and drops 100, the default here). The
//! reading path allocates nothing and makes no system call but the socket reads (and, once
//! per `set_size` traces, the 8-byte write of code 31). A board that closes or resets the
//! connection, or stops answering for `stall_timeout` in the middle of a reply, is
//! [`DriverError::Disconnected`]; a trace cut short by such a stall is first a
//! [`DriverError::Protocol`] (a bad record) and the connection is then re-opened, since a
//! stream without framing cannot be re-synchronised in place. Must never: publish a trace
//! it did not read whole, or send a command while the fork's server may be streaming
//! traces the driver has not yet read, except code 31 itself.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::protocol::{
    self, Command, Distribution, Input, Slope, Status, Timers, TriggerMode, HIST_BINS, HIST_BYTES,
    SAMPLE_BYTES, STATUS_BYTES,
};
use crate::driver::Result;
use crate::serial::Backoff;
use crate::{
    ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Source,
};

/// How traces are taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceAcquisition {
    /// The fork's code 31 (what mimoCoRB2 uses): ask for `set_size` traces, read them as
    /// they stream back to back, ask again.
    Stream {
        /// Traces per request.
        set_size: u32,
    },
    /// Upstream MCPHA: arm (19), poll the status (11) every `poll` until bit 0 clears, read
    /// (20), reset (2), re-arm.
    Poll {
        /// Time between status polls.
        poll: Duration,
    },
}

/// What the driver reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum McphaMode {
    /// Oscilloscope traces, one event each.
    Traces(TraceAcquisition),
    /// The hardware histograms and timers every `interval`, one event each: 4096 records of
    /// `{IN1: uint32, IN2: uint32, live_IN1: float64, live_IN2: float64}` (counts per bin,
    /// and the timers in seconds, repeated in every record since fields are scalars).
    Histogram {
        /// Time between readouts.
        interval: Duration,
    },
}

/// The pulse generator (codes 21–30).
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Fall time (µs, 0..=100).
    pub fall_us: u32,
    /// Rise time (ns, 0..=100).
    pub rise_ns: u32,
    /// Output limits (int16 counts).
    pub lower: i16,
    /// See `lower`.
    pub upper: i16,
    /// Pulses per second.
    pub rate: u32,
    /// Fixed or exponential intervals.
    pub distribution: Distribution,
    /// Non-zero bins of the height spectrum: (bin 0..4095, weight).
    pub spectrum: Vec<(u16, u32)>,
    /// Keep pulsing after the client leaves.
    pub keep_pulsing: bool,
}

/// Pulse-height analysis of one input (codes 6–8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaConfig {
    /// Delay (samples \[unverified\]).
    pub delay: u16,
    /// Lowest height counted (counts).
    pub min: u16,
    /// Highest height counted (counts).
    pub max: u16,
}

impl Default for PhaConfig {
    fn default() -> Self {
        PhaConfig {
            delay: 100,
            min: 0,
            max: 4095,
        }
    }
}

/// The board and its oscilloscope as both servers (MCPHA and SCPI) are told them: where the
/// board is, how long to wait for it, the inputs, the trigger and the window, and what a
/// count is in volts. Setup keys map onto these fields the same way for both.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeConfig {
    /// `host` or `host:port` (the server's port when not given: MCPHA 1001, SCPI 5000).
    pub address: String,
    /// Longest wait for the TCP connection and the first reply (MCPHA: the status; SCPI:
    /// `*IDN?`).
    pub connect_timeout: Duration,
    /// Longest pause in a reply before the board counts as gone (mimoCoRB2: 5 s).
    pub stall_timeout: Duration,
    /// Invert IN1, IN2 (MCPHA: on the board; SCPI: in the driver, the server has none).
    pub negator: [bool; 2],
    /// Trigger input.
    pub trigger_source: Input,
    /// Trigger edge, on the signal as stored (after the negator).
    pub trigger_slope: Slope,
    /// Normal, or auto (SCPI: `NOW`, at once without a crossing).
    pub trigger_mode: TriggerMode,
    /// Trigger level (ADC counts, after the negator; SCPI sends it in volts).
    pub trigger_level: i16,
    /// Samples before the trigger (≥ 1).
    pub pre: u32,
    /// Samples per event (SCPI: ≤ 16384, the buffer).
    pub samples: u32,
    /// Volts per ADC count, for the run metadata and SCPI's trigger level (STEMlab 125-14
    /// LV: 2 V / 16384 [unverified: the effective full scale after the FIR is not
    /// documented]).
    pub volts_per_count: f64,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            address: "rp-f0c38f.local".into(),
            connect_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(5),
            negator: [false; 2],
            trigger_source: Input::In1,
            trigger_slope: Slope::Rising,
            trigger_mode: TriggerMode::Normal,
            trigger_level: 100,
            pre: 100,
            samples: 1000,
            volts_per_count: 2.0 / 16384.0,
            backoff: Backoff::default(),
        }
    }
}

impl ScopeConfig {
    /// The run metadata of the scope, in the order written: volts per count, negators,
    /// `trigger` (as the transport describes it), pre-trigger and samples.
    pub(crate) fn run_metadata(&self, trigger: String) -> Vec<(String, String)> {
        vec![
            (
                "redpitaya.volts_per_count".to_string(),
                format!("{:e}", self.volts_per_count),
            ),
            (
                "redpitaya.negators".to_string(),
                format!("IN1 {}, IN2 {}", self.negator[0], self.negator[1]),
            ),
            ("redpitaya.trigger".to_string(), trigger),
            ("redpitaya.pretrigger".to_string(), self.pre.to_string()),
            ("redpitaya.samples".to_string(), self.samples.to_string()),
        ]
    }
}

/// Settings of an MCPHA board (setup keys map onto these fields).
#[derive(Clone, Debug, PartialEq)]
pub struct McphaConfig {
    /// The board, its inputs, trigger and window.
    pub scope: ScopeConfig,
    /// Decimation N (N < 4: 125 MS/s, else 125/N MS/s).
    pub decimation: u16,
    /// Samples requested beyond `samples` and dropped (see the module comment).
    pub discard_tail: u32,
    /// Traces or histograms.
    pub mode: McphaMode,
    /// PHA of IN1, IN2 (histogram mode).
    pub pha: [PhaConfig; 2],
    /// Timer preset (s); 0 = none (histogram mode).
    pub timer_preset_s: f64,
    /// Zero the histograms and timers at the start of the run (not after a reconnect).
    pub reset_histograms: bool,
    /// Traces mode: also read the hardware histograms and timers this often, between two
    /// sets of streamed traces (or two polls), the only moments the connection is quiet;
    /// see [`Mcpha::take_histogram`]. One client at a time is served, so this is how one
    /// run gets both from one board.
    pub histogram_every: Option<Duration>,
    /// Configure and start the pulse generator.
    pub generator: Option<GeneratorConfig>,
}

impl Default for McphaConfig {
    fn default() -> Self {
        McphaConfig {
            scope: ScopeConfig::default(),
            decimation: 4,
            discard_tail: 100,
            mode: McphaMode::Traces(TraceAcquisition::Stream { set_size: 100 }),
            pha: [PhaConfig::default(); 2],
            timer_preset_s: 0.0,
            reset_histograms: true,
            histogram_every: None,
            generator: None,
        }
    }
}

impl McphaConfig {
    /// What is wrong with these settings, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.scope.samples == 0 {
            return Err("samples must be ≥ 1".into());
        }
        let total = u64::from(self.scope.samples) + u64::from(self.discard_tail);
        if total > u64::from(protocol::MAX_SAMPLES) {
            return Err(format!(
                "samples + discard_tail = {total} exceeds the server's {} samples",
                protocol::MAX_SAMPLES
            ));
        }
        if self.scope.pre == 0 || self.scope.pre >= self.scope.samples {
            return Err(format!(
                "pretrigger must be 1 … samples − 1 = {} (the server stores N − 1: 0 \
                 underflows)",
                self.scope.samples.saturating_sub(1)
            ));
        }
        if let McphaMode::Traces(TraceAcquisition::Stream { set_size: 0 }) = self.mode {
            return Err("set_size must be ≥ 1".into());
        }
        if !(self.timer_preset_s.is_finite() && self.timer_preset_s >= 0.0) {
            return Err("timer_preset must be ≥ 0 s".into());
        }
        if let Some(g) = &self.generator {
            if g.fall_us > 100 || g.rise_ns > 100 {
                return Err(
                    "generator fall time (µs) and rise time (ns) must be 0 … 100: the \
                            server ignores other values"
                        .into(),
                );
            }
            if g.spectrum.iter().all(|&(_, w)| w == 0) {
                return Err(
                    "the generator's spectrum is empty: the server does not start it".into(),
                );
            }
            if g.spectrum.iter().any(|&(b, _)| usize::from(b) >= HIST_BINS) {
                return Err("generator spectrum bins are 0 … 4095".into());
            }
        }
        Ok(())
    }

    /// The record layout events have in this mode.
    pub fn layout(&self) -> EventLayout {
        match self.mode {
            McphaMode::Traces(_) => EventLayout::of(
                [("IN1", "int16"), ("IN2", "int16")],
                self.scope.samples as usize,
            ),
            McphaMode::Histogram { .. } => EventLayout::of(
                [
                    ("IN1", "uint32"),
                    ("IN2", "uint32"),
                    ("live_IN1", "float64"),
                    ("live_IN2", "float64"),
                ],
                HIST_BINS,
            ),
        }
    }

    /// The command words that configure the board, in the order sent: mimoCoRB2's order for
    /// the scope (4, 5, 5, 14, 15, 16, 17, 13, 18), then PHA and timers, then the
    /// generator, then reset and arm (2, 19). `first` adds the histogram/timer resets.
    pub fn setup_commands(&self, first: bool) -> Vec<Command> {
        use Command::*;
        let mut c = vec![
            SetDecimation(self.decimation),
            SetNegator(Input::In1, self.scope.negator[0]),
            SetNegator(Input::In2, self.scope.negator[1]),
            SetTriggerSlope(self.scope.trigger_slope),
            SetTriggerMode(self.scope.trigger_mode),
            SetTriggerLevel(self.scope.trigger_level),
            SetPreSamples(self.scope.pre),
            SetTriggerSource(self.scope.trigger_source),
            SetTotalSamples(self.scope.samples + self.discard_tail),
        ];
        if matches!(self.mode, McphaMode::Histogram { .. }) || self.histogram_every.is_some() {
            let preset = (self.timer_preset_s * protocol::TICKS_PER_SECOND).round() as u64;
            for (i, input) in [Input::In1, Input::In2].into_iter().enumerate() {
                c.push(SetPhaDelay(input, self.pha[i].delay));
                c.push(SetPhaMin(input, self.pha[i].min));
                c.push(SetPhaMax(input, self.pha[i].max));
                c.push(SetTimerPreset(input, preset));
            }
            if first && self.reset_histograms {
                for input in [Input::In1, Input::In2] {
                    c.push(ResetHistogram(input));
                    c.push(ResetTimer(input));
                }
            }
            c.push(SetTimerMode(Timers::Both, true));
        }
        if let Some(g) = &self.generator {
            c.extend([
                StopGenerator,
                SetGenFallTime(g.fall_us),
                SetGenRiseTime(g.rise_ns),
                SetGenLower(g.lower),
                SetGenUpper(g.upper),
                SetGenRate(g.rate),
                SetGenDistribution(g.distribution),
                ResetGenSpectrum,
            ]);
            c.extend(
                g.spectrum
                    .iter()
                    .filter(|&&(_, w)| w > 0)
                    .map(|&(bin, weight)| SetGenBin { bin, weight }),
            );
            c.push(StartGenerator {
                keep_pulsing: g.keep_pulsing,
            });
        }
        if let McphaMode::Traces(_) = self.mode {
            c.extend([ResetScope, StartScope]);
        }
        c
    }
}

/// The socket address of `address` (`host` or `host:port`, default port 1001).
pub fn resolve(address: &str, default_port: u16) -> Result<SocketAddr, String> {
    let with_port = if address.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit())
    }) || address.starts_with('[')
    {
        address.to_string()
    } else {
        format!("{address}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{with_port}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{with_port}' resolves to no address"))
}

/// The checks of opening a board over `server` (`mcpha`, `scpi`) before connecting: the
/// configuration's own check (`valid`) and the resolution of `address` (port
/// `default_port` unless it names one). Gives the address and the board's [`DeviceInfo`]
/// as `model` there; the error names the device `<server>:<address>`.
pub(crate) fn locate(
    server: &str,
    model: &str,
    address: &str,
    valid: std::result::Result<(), String>,
    default_port: u16,
) -> Result<(SocketAddr, DeviceInfo)> {
    let device = format!("{server}:{address}");
    valid.map_err(|detail| DriverError::Config {
        device: device.clone(),
        detail,
    })?;
    let addr = resolve(address, default_port).map_err(|detail| DriverError::Open {
        device: device.clone(),
        detail,
    })?;
    let info = DeviceInfo {
        family: Family::RedPitaya,
        model: model.into(),
        serial: None,
        port: format!("{server}:{addr}"),
        usb_id: None,
    };
    Ok((addr, info))
}

/// When a driver tries a lost board again: at once after a loss, then, while attempts
/// fail, after waits doubling from the backoff's initial wait up to its maximum. Sleeps
/// at most 100 ms a call, so that a run waiting for the board still stops quickly.
#[derive(Clone, Debug)]
pub(crate) struct Redial {
    backoff: Backoff,
    next_attempt: Instant,
    wait: Duration,
}

impl Redial {
    /// The first attempt at once.
    pub(crate) fn new(backoff: Backoff) -> Self {
        Redial {
            backoff,
            next_attempt: Instant::now(),
            wait: backoff.initial,
        }
    }

    /// Waits for the next attempt, 100 ms at most; whether it is due now.
    pub(crate) fn due(&self) -> bool {
        let now = Instant::now();
        if now < self.next_attempt {
            std::thread::sleep((self.next_attempt - now).min(Duration::from_millis(100)));
            if Instant::now() < self.next_attempt {
                return false;
            }
        }
        true
    }

    /// Takes in the outcome of an attempt: whether it connected. A configuration error,
    /// which no retry cures, is returned; any other error makes the next attempt wait.
    pub(crate) fn settle(&mut self, outcome: Result<()>) -> Result<bool> {
        match outcome {
            Ok(()) => {
                self.wait = self.backoff.initial;
                self.next_attempt = Instant::now();
                Ok(true)
            }
            Err(DriverError::Config { device, detail }) => {
                Err(DriverError::Config { device, detail })
            }
            Err(_) => {
                self.next_attempt = Instant::now() + self.wait;
                self.wait = (self.wait * 2).min(self.backoff.max);
                Ok(false)
            }
        }
    }
}

/// What a timed read came to.
pub(crate) enum Got {
    /// The buffer is full.
    Full,
    /// Nothing came within the read timeout (only when nothing was expected for sure).
    Nothing,
    /// Some bytes came, then nothing for the stall timeout.
    Short(usize),
}

/// Reads `buf` whole from `s` (whose read timeout is short). `expect`: a reply is due, so
/// even the first byte may take up to `stall`; otherwise a first read that times out is
/// [`Got::Nothing`]. Allocates nothing; `Instant::now` only after a read timed out.
pub(crate) fn fill(
    s: &mut TcpStream,
    buf: &mut [u8],
    expect: bool,
    stall: Duration,
    device: &str,
) -> Result<Got, DriverError> {
    let mut at = 0;
    let mut quiet_since: Option<Instant> = None;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => {
                return Err(DriverError::Disconnected {
                    device: device.to_string(),
                    detail: format!(
                        "the board closed the connection ({at} of {} bytes of a reply read)",
                        buf.len()
                    ),
                })
            }
            Ok(n) => {
                at += n;
                quiet_since = None;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if at == 0 && !expect {
                    return Ok(Got::Nothing);
                }
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    return Ok(Got::Short(at));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(DriverError::Disconnected {
                    device: device.to_string(),
                    detail: format!("{e} ({at} of {} bytes of a reply read)", buf.len()),
                })
            }
        }
    }
    Ok(Got::Full)
}

/// Counters over the driver's life, for the run metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct McphaStats {
    /// Traces or histogram readouts delivered.
    pub events: u64,
    /// Traces refused (out-of-range samples).
    pub garbage: u64,
    /// Replies cut short by a stall.
    pub short: u64,
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Times it was re-opened.
    pub reconnects: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Traces received beyond those asked for (the fork's pending count left over from an
    /// earlier client).
    pub unasked: u64,
}

/// An open MCPHA board.
pub struct Mcpha {
    cfg: McphaConfig,
    addr: SocketAddr,
    conn: Option<TcpStream>,
    /// The read timeout the socket has now (set again only when the caller's changes).
    read_timeout: Duration,
    info: DeviceInfo,
    layout: EventLayout,
    /// The dropped tail of each trace; sized once.
    scratch: Vec<u8>,
    /// A histogram reply, and the last histograms read (IN1, IN2) with their status;
    /// empty unless histograms are read.
    hist_bytes: Vec<u8>,
    hist: Vec<[u32; HIST_BINS]>,
    hist_status: Status,
    hist_fresh: bool,
    next_hist: Instant,
    /// Traces asked for with code 31 and not yet read.
    outstanding: u64,
    /// The stream lost its place (a short read): re-open before reading on.
    resync: bool,
    running: bool,
    next_readout: Instant,
    redial: Redial,
    stats: McphaStats,
    last_status: Status,
}

fn io_error(device: &str, e: std::io::Error) -> DriverError {
    DriverError::Disconnected {
        device: device.to_string(),
        detail: e.to_string(),
    }
}

/// Connects, asks for the status (the board must answer 36 bytes within `timeout`), and
/// returns the stream and the status. Used by the driver and by `devices --probe`.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(TcpStream, Status), DriverError> {
    let device = format!("mcpha:{addr}");
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| DriverError::Open {
        device: device.clone(),
        detail: format!(
            "{e}: is the board on, on this network, and is the MCPHA server running (port {})?",
            addr.port()
        ),
    })?;
    s.set_nodelay(true).map_err(|e| io_error(&device, e))?;
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| io_error(&device, e))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| io_error(&device, e))?;
    s.write_all(&Command::ReadStatus.encode())
        .map_err(|e| io_error(&device, e))?;
    let mut b = [0u8; STATUS_BYTES];
    match fill(&mut s, &mut b, true, timeout, &device)? {
        Got::Full => {}
        Got::Nothing | Got::Short(_) => {
            return Err(DriverError::Open {
                device,
                detail: format!(
                    "connected, but no 36-byte status reply within {timeout:?}: not an MCPHA \
                     server, or it is serving another client (it takes one at a time)"
                ),
            })
        }
    }
    let st = Status::decode(&b).map_err(|e| DriverError::Protocol {
        device,
        offset: 0,
        detail: e.to_string(),
    })?;
    Ok((s, st))
}

/// Opens the board at `cfg.scope.address`, configures it and arms the scope.
pub fn open(cfg: McphaConfig) -> Result<Mcpha, DriverError> {
    let (addr, info) = locate(
        "mcpha",
        "Red Pitaya MCPHA server",
        &cfg.scope.address,
        cfg.validate(),
        protocol::PORT,
    )?;
    let layout = cfg.layout();
    let (scratch, hists) = match cfg.mode {
        McphaMode::Traces(_) => (
            vec![0u8; cfg.discard_tail as usize * SAMPLE_BYTES],
            cfg.histogram_every.is_some(),
        ),
        McphaMode::Histogram { .. } => (Vec::new(), true),
    };
    let now = Instant::now();
    let mut m = Mcpha {
        info,
        addr,
        conn: None,
        read_timeout: Duration::ZERO,
        layout,
        scratch,
        hist_bytes: if hists {
            vec![0u8; HIST_BYTES]
        } else {
            Vec::new()
        },
        hist: if hists {
            vec![[0u32; HIST_BINS]; 2]
        } else {
            Vec::new()
        },
        hist_status: Status::default(),
        hist_fresh: false,
        next_hist: now,
        outstanding: 0,
        resync: false,
        running: false,
        next_readout: now,
        redial: Redial::new(cfg.scope.backoff),
        stats: McphaStats::default(),
        last_status: Status::default(),
        cfg,
    };
    m.connect(true)?;
    Ok(m)
}

impl Mcpha {
    /// The settings.
    pub fn config(&self) -> &McphaConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> McphaStats {
        self.stats
    }

    /// The last status read (histogram mode reads it with every readout).
    pub fn last_status(&self) -> Status {
        self.last_status
    }

    fn device(&self) -> &str {
        &self.info.port
    }

    fn connect(&mut self, first: bool) -> Result<()> {
        self.conn = None;
        let (mut s, st) = probe(self.addr, self.cfg.scope.connect_timeout)?;
        self.last_status = st;
        let words: Vec<u8> = self
            .cfg
            .setup_commands(first)
            .into_iter()
            .flat_map(Command::encode)
            .collect();
        s.write_all(&words)
            .map_err(|e| io_error(self.device(), e))?;
        self.conn = Some(s);
        self.read_timeout = Duration::from_millis(20);
        self.outstanding = 0;
        self.resync = false;
        self.next_readout = Instant::now();
        Ok(())
    }

    fn lost(&mut self, e: DriverError) -> DriverError {
        if self.conn.take().is_some() {
            self.stats.disconnects += 1;
        }
        e
    }

    fn send(&mut self, words: &[Command]) -> Result<()> {
        let mut buf = [0u8; 24];
        let n = words.len().min(3);
        for (i, w) in words[..n].iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&w.encode());
        }
        let r = match self.conn.as_mut() {
            Some(s) => s.write_all(&buf[..n * 8]),
            None => return Err(self.gone("not connected")),
        };
        r.map_err(|e| {
            let e = io_error(self.device(), e);
            self.lost(e)
        })
    }

    fn gone(&self, detail: &str) -> DriverError {
        DriverError::Disconnected {
            device: self.device().to_string(),
            detail: detail.into(),
        }
    }

    fn set_timeout(&mut self, t: Duration) -> Result<()> {
        let t = t.max(Duration::from_millis(1));
        if t != self.read_timeout {
            if let Some(s) = &self.conn {
                s.set_read_timeout(Some(t))
                    .map_err(|e| io_error(&self.info.port, e))?;
            }
            self.read_timeout = t;
        }
        Ok(())
    }

    /// Reads `len` bytes into `buf` (the slot or the scratch buffer).
    fn read_reply(
        conn: &mut Option<TcpStream>,
        buf: &mut [u8],
        expect: bool,
        stall: Duration,
        device: &str,
    ) -> Result<Got, DriverError> {
        match conn.as_mut() {
            Some(s) => fill(s, buf, expect, stall, device),
            None => Err(DriverError::Disconnected {
                device: device.to_string(),
                detail: "not connected".into(),
            }),
        }
    }

    /// After a short read: count it, mark the stream for re-opening, and say so.
    fn short(&mut self, got: usize, want: usize, what: &str) -> DriverError {
        self.stats.short += 1;
        self.resync = true;
        DriverError::Protocol {
            device: self.device().to_string(),
            offset: self.stats.bytes,
            detail: format!(
                "short {what}: {got} of {want} bytes, then nothing for {:?}; re-opening the \
                 connection to find the start of the next reply",
                self.cfg.scope.stall_timeout
            ),
        }
    }

    /// Reads one trace into `out` and its dropped tail; `expect` when it was asked for.
    fn read_trace(&mut self, out: &mut [u8], expect: bool) -> Result<ReadOutcome> {
        let stall = self.cfg.scope.stall_timeout;
        // The device name is borrowed, not cloned: this runs once per trace.
        let device = self.info.port.as_str();
        let want = out.len() + self.scratch.len();
        let r = Self::read_reply(&mut self.conn, out, expect, stall, device);
        match r {
            Ok(Got::Full) => {}
            Ok(Got::Nothing) => return Ok(ReadOutcome::Idle),
            Ok(Got::Short(n)) => return Err(self.short(n, want, "trace")),
            Err(e) => return Err(self.lost(e)),
        }
        let r = Self::read_reply(&mut self.conn, &mut self.scratch, true, stall, device);
        match r {
            Ok(Got::Full) => {}
            Ok(Got::Nothing) | Ok(Got::Short(_)) => {
                return Err(self.short(out.len(), want, "trace"));
            }
            Err(e) => return Err(self.lost(e)),
        }
        self.stats.bytes += want as u64;
        if let Err(e) = protocol::check_trace(out) {
            self.stats.garbage += 1;
            return Err(DriverError::Protocol {
                device: self.info.port.clone(),
                offset: self.stats.bytes - want as u64,
                detail: format!("not a trace: {e}"),
            });
        }
        self.stats.events += 1;
        Ok(ReadOutcome::Event(EventInfo::default()))
    }

    /// A reply that was asked for: `Ok` when it came whole; anything less within the stall
    /// timeout, or a read error, loses the connection (`what` names the reply).
    fn whole_reply(&mut self, r: Result<Got, DriverError>, what: &str) -> Result<()> {
        match r {
            Ok(Got::Full) => Ok(()),
            Ok(_) => {
                let stall = self.cfg.scope.stall_timeout;
                let e = self.gone(&format!("no {what} reply within {stall:?}"));
                Err(self.lost(e))
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    fn read_status(&mut self) -> Result<Status, DriverError> {
        self.send(&[Command::ReadStatus])?;
        let mut b = [0u8; STATUS_BYTES];
        let stall = self.cfg.scope.stall_timeout;
        let r = Self::read_reply(&mut self.conn, &mut b, true, stall, &self.info.port);
        self.whole_reply(r, "status")?;
        self.stats.bytes += STATUS_BYTES as u64;
        // 36 bytes always decode.
        let st = Status::decode(&b).unwrap_or_default();
        self.last_status = st;
        Ok(st)
    }

    /// Reads the status and both hardware histograms into `self.hist`.
    fn read_hw_histograms(&mut self) -> Result<()> {
        let st = self.read_status()?;
        let stall = self.cfg.scope.stall_timeout;
        for input in [Input::In1, Input::In2] {
            self.send(&[Command::ReadHistogram(input)])?;
            let r = Self::read_reply(
                &mut self.conn,
                &mut self.hist_bytes,
                true,
                stall,
                &self.info.port,
            );
            self.whole_reply(r, "histogram")?;
            self.stats.bytes += HIST_BYTES as u64;
            let c = input.chan() as usize;
            for (v, b) in self.hist[c].iter_mut().zip(self.hist_bytes.chunks_exact(4)) {
                *v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        self.hist_status = st;
        self.hist_fresh = true;
        Ok(())
    }

    /// In traces mode with `histogram_every`: when the hardware histograms were read since
    /// the last call, (IN1 bins, IN2 bins, the status read with them).
    pub fn take_histogram(&mut self) -> Option<(&[u32; HIST_BINS], &[u32; HIST_BINS], Status)> {
        if !std::mem::take(&mut self.hist_fresh) || self.hist.len() != 2 {
            return None;
        }
        Some((&self.hist[0], &self.hist[1], self.hist_status))
    }

    /// Reads the histograms when `histogram_every` says it is time.
    fn histograms_if_due(&mut self) -> Result<()> {
        if let Some(every) = self.cfg.histogram_every {
            let now = Instant::now();
            if now >= self.next_hist {
                self.next_hist = now + every;
                self.read_hw_histograms()?;
            }
        }
        Ok(())
    }

    fn read_histograms(&mut self, out: &mut [u8]) -> Result<ReadOutcome> {
        self.read_hw_histograms()?;
        self.hist_fresh = false;
        let st = self.hist_status;
        let rec = self.layout.record_size();
        let (l1, l2) = (st.seconds(Input::In1), st.seconds(Input::In2));
        for (i, r) in out.chunks_exact_mut(rec).enumerate() {
            r[0..4].copy_from_slice(&self.hist[0][i].to_le_bytes());
            r[4..8].copy_from_slice(&self.hist[1][i].to_le_bytes());
            r[8..16].copy_from_slice(&l1.to_le_bytes());
            r[16..24].copy_from_slice(&l2.to_le_bytes());
        }
        self.stats.events += 1;
        Ok(ReadOutcome::Event(EventInfo {
            device_time: Some(l1),
            ..EventInfo::default()
        }))
    }
}

/// How the int16 traces IN1, IN2 (MCPHA or SCPI) become volts: `volts_per_count` each,
/// negative for an input the negator inverts (the stored count is minus the input's).
pub(crate) fn trace_scales(volts_per_count: f64, negator: [bool; 2]) -> Vec<ChannelScale> {
    ["IN1", "IN2"]
        .iter()
        .zip(negator)
        .map(|(field, negated)| ChannelScale {
            field: field.to_string(),
            volts_per_count: if negated {
                -volts_per_count
            } else {
                volts_per_count
            },
            offset_volts: 0.0,
        })
        .collect()
}

impl Source for Mcpha {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn start(&mut self) -> Result<()> {
        if self.conn.is_none() {
            self.connect(false)?;
        }
        self.running = true;
        Ok(())
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        if self.resync {
            self.resync = false;
            let e = self.gone("re-opening after a short read");
            return Err(self.lost(e));
        }
        if self.conn.is_none() {
            return Err(self.gone("not connected"));
        }
        match self.cfg.mode {
            McphaMode::Traces(TraceAcquisition::Stream { set_size }) => {
                self.set_timeout(timeout)?;
                if self.outstanding == 0 {
                    self.histograms_if_due()?;
                    self.send(&[Command::StartDaq(set_size)])?;
                    self.outstanding = u64::from(set_size);
                }
                let r = self.read_trace(out, false);
                if let Ok(ReadOutcome::Event(_)) | Err(DriverError::Protocol { .. }) = r {
                    if !self.resync {
                        if self.outstanding == 0 {
                            self.stats.unasked += 1;
                        }
                        self.outstanding = self.outstanding.saturating_sub(1);
                    }
                }
                r
            }
            McphaMode::Traces(TraceAcquisition::Poll { poll }) => {
                self.set_timeout(poll.min(timeout))?;
                let deadline = Instant::now() + timeout;
                loop {
                    self.histograms_if_due()?;
                    let st = self.read_status()?;
                    if !st.running() {
                        self.send(&[Command::ReadTrace])?;
                        let r = self.read_trace(out, true);
                        if !self.resync {
                            self.send(&[Command::ResetScope, Command::StartScope])?;
                        }
                        return r;
                    }
                    let now = Instant::now();
                    if now + poll > deadline {
                        return Ok(ReadOutcome::Idle);
                    }
                    std::thread::sleep(poll);
                }
            }
            McphaMode::Histogram { interval } => {
                let now = Instant::now();
                if now < self.next_readout {
                    std::thread::sleep((self.next_readout - now).min(timeout));
                    if Instant::now() < self.next_readout {
                        return Ok(ReadOutcome::Idle);
                    }
                }
                self.next_readout += interval;
                if self.next_readout < Instant::now() {
                    self.next_readout = Instant::now() + interval;
                }
                self.read_histograms(out)
            }
        }
    }

    fn stop(&mut self) -> Result<()> {
        self.running = false;
        if let McphaMode::Traces(_) = self.cfg.mode {
            // Closing ends the fork's streaming (its send fails) and stops the generator
            // unless keep_pulsing; the scope, histograms and timers stay as they are.
            if self.conn.is_some() {
                let _ = self.send(&[Command::ResetScope]);
            }
            self.conn = None;
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<bool> {
        self.conn = None;
        if !self.redial.due() {
            return Ok(false);
        }
        let outcome = self.connect(false);
        let connected = self.redial.settle(outcome)?;
        self.stats.reconnects += u64::from(connected);
        Ok(connected)
    }

    fn channel_scales(&self) -> Vec<ChannelScale> {
        match self.cfg.mode {
            McphaMode::Traces(_) => {
                trace_scales(self.cfg.scope.volts_per_count, self.cfg.scope.negator)
            }
            McphaMode::Histogram { .. } => Vec::new(),
        }
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let c = &self.cfg;
        let mut m = vec![
            ("redpitaya.transport".to_string(), "mcpha".to_string()),
            ("redpitaya.address".to_string(), self.addr.to_string()),
            ("redpitaya.decimation".to_string(), c.decimation.to_string()),
            (
                "redpitaya.sample_interval_ns".to_string(),
                format!("{}", protocol::sample_interval(c.decimation) * 1e9),
            ),
        ];
        m.extend(c.scope.run_metadata(format!(
            "{} {:?} {:?} level {} counts",
            c.scope.trigger_source.name(),
            c.scope.trigger_slope,
            c.scope.trigger_mode,
            c.scope.trigger_level
        )));
        m.push(("redpitaya.discard_tail".into(), c.discard_tail.to_string()));
        m.push((
            "redpitaya.mode".into(),
            match c.mode {
                McphaMode::Traces(TraceAcquisition::Stream { set_size }) => {
                    format!("traces, streamed (code 31) in sets of {set_size}")
                }
                McphaMode::Traces(TraceAcquisition::Poll { poll }) => {
                    format!("traces, polled every {poll:?} (codes 19, 11, 20)")
                }
                McphaMode::Histogram { interval } => {
                    format!("hardware histograms every {interval:?}")
                }
            },
        ));
        if let Some(g) = &c.generator {
            m.push((
                "redpitaya.generator".into(),
                format!(
                    "{} pulses/s {:?}, fall {} us, rise {} ns, limits {}..{}, {} bins",
                    g.rate,
                    g.distribution,
                    g.fall_us,
                    g.rise_ns,
                    g.lower,
                    g.upper,
                    g.spectrum.len()
                ),
            ));
        }
        let s = self.stats;
        m.push(("redpitaya.garbage_traces".into(), s.garbage.to_string()));
        m.push(("redpitaya.short_reads".into(), s.short.to_string()));
        m.push(("redpitaya.disconnects".into(), s.disconnects.to_string()));
        m.push(("redpitaya.reconnects".into(), s.reconnects.to_string()));
        m.push(("redpitaya.unasked_traces".into(), s.unasked.to_string()));
        m
    }
}
