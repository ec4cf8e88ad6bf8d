//! The SCPI driver: connects to the board's official SCPI server (port 5000), resets and
//! configures the acquisition (decimation, raw little-endian binary data, trigger level and
//! delay), then per event arms (`ACQ:START`, `ACQ:TRig <source>`), polls `ACQ:TRig:STAT?`
//! until `TD` and `ACQ:TRig:FILL?` until `1`, asks for the trigger position and reads the
//! window of both inputs as binary blocks, straight into the caller's slot as
//! `{IN1: int16, IN2: int16}` records (HARDWARE.md Part 2, section S).
//!
//! Guarantees: the reading path allocates nothing (the receive buffer, the command line and
//! both channel buffers are sized at open) and makes no system call but the socket's and
//! the sleep between polls, which never outlasts the caller's timeout. Every block's length
//! is checked against what was asked and every sample against the 14-bit range; a block of
//! the wrong size is skipped whole (the framing holds), a reply that cannot be framed makes
//! the driver re-open the connection. No answer for `stall_timeout`, a reset or a close is
//! [`DriverError::Disconnected`]; [`Source::reconnect`] re-opens with backoff and sends
//! the setup again. Must never: publish a trace it did not read whole and check.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::protocol::{self as sp, DataQuery, ScpiError};
use crate::driver::Result;
use crate::redpitaya::protocol::{Input, Slope, SAMPLE_BYTES};
use crate::redpitaya::{locate, Redial, ScopeConfig};
use crate::{ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, ReadOutcome, Source};

/// Settings of a board read over SCPI (setup keys map onto these fields).
#[derive(Clone, Debug, PartialEq)]
pub struct ScpiConfig {
    /// The board, its inputs, trigger and window (the port is 5000 when not given).
    pub scope: ScopeConfig,
    /// `ACQ:DEC`: a power of two, 1 … 65536.
    pub decimation: u32,
    /// Time between status polls.
    pub poll: Duration,
}

impl Default for ScpiConfig {
    fn default() -> Self {
        ScpiConfig {
            scope: ScopeConfig::default(),
            decimation: 4,
            poll: Duration::from_millis(1),
        }
    }
}

impl ScpiConfig {
    /// What is wrong with these settings, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.decimation.is_power_of_two() && self.decimation <= 65536) {
            return Err(format!(
                "decimation {} over SCPI must be a power of two, 1 … 65536 (ACQ:DEC)",
                self.decimation
            ));
        }
        if self.scope.samples == 0 || self.scope.samples > sp::BUFFER_SAMPLES {
            return Err(format!(
                "samples {} over SCPI must be 1 … {} (the acquisition buffer)",
                self.scope.samples,
                sp::BUFFER_SAMPLES
            ));
        }
        if self.scope.pre == 0 || self.scope.pre >= self.scope.samples {
            return Err(format!(
                "pretrigger must be 1 … samples − 1 = {}",
                self.scope.samples.saturating_sub(1)
            ));
        }
        if !(self.scope.volts_per_count.is_finite() && self.scope.volts_per_count > 0.0) {
            return Err("volts_per_count must be > 0".into());
        }
        Ok(())
    }

    /// The trigger as the board sees it: a negated input flips the edge and the level.
    fn board_trigger(&self) -> (Slope, i16) {
        let i = match self.scope.trigger_source {
            Input::In1 => 0,
            Input::In2 => 1,
        };
        if self.scope.negator[i] {
            let slope = match self.scope.trigger_slope {
                Slope::Rising => Slope::Falling,
                Slope::Falling => Slope::Rising,
            };
            (slope, self.scope.trigger_level.saturating_neg())
        } else {
            (self.scope.trigger_slope, self.scope.trigger_level)
        }
    }

    /// The `ACQ:TRig` source word.
    pub fn trigger_word(&self) -> &'static str {
        sp::trigger_source(
            self.scope.trigger_source,
            self.board_trigger().0,
            self.scope.trigger_mode,
        )
    }

    /// The setup lines sent after each connect.
    pub fn setup_lines(&self) -> Vec<String> {
        let level_volts = f64::from(self.board_trigger().1) * self.scope.volts_per_count;
        sp::setup_lines(
            self.decimation,
            level_volts,
            sp::trigger_delay(self.scope.samples, self.scope.pre),
        )
    }

    /// The records of an event.
    pub fn layout(&self) -> EventLayout {
        EventLayout::of(
            [("IN1", "int16"), ("IN2", "int16")],
            self.scope.samples as usize,
        )
    }
}

/// Counters over the driver's life, for the run metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScpiStats {
    /// Traces delivered.
    pub events: u64,
    /// Replies refused (wrong size, out-of-range samples, unexpected text).
    pub refused: u64,
    /// Status polls sent.
    pub polls: u64,
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Times it was re-opened.
    pub reconnects: u64,
}

/// Where the acquisition cycle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not armed: the next read sends `ACQ:START` and the trigger.
    Idle,
    /// Armed: polling `ACQ:TRig:STAT?`.
    Armed,
    /// Triggered: polling `ACQ:TRig:FILL?`.
    Filling,
}

/// A connection with a receive buffer (text lines and binary blocks).
struct Wire {
    s: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

const RX_BYTES: usize = 1 << 16;

impl Wire {
    /// Makes room and reads more bytes; waits up to `stall` for the first one.
    fn more(&mut self, stall: Duration, device: &str) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut since: Option<Instant> = None;
        loop {
            match self.s.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(DriverError::Disconnected {
                        device: device.to_string(),
                        detail: "the board closed the connection".into(),
                    })
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let t = *since.get_or_insert_with(Instant::now);
                    if t.elapsed() >= stall {
                        return Err(DriverError::Disconnected {
                            device: device.to_string(),
                            detail: format!("no answer for {stall:?}"),
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(DriverError::Disconnected {
                        device: device.to_string(),
                        detail: e.to_string(),
                    })
                }
            }
        }
    }

    fn have(&self) -> usize {
        self.end - self.start
    }

    /// The next text line (without `\r\n`), as (start, end) in `buf`.
    fn line(&mut self, stall: Duration, device: &str) -> Result<(usize, usize), Framing> {
        let mut scanned = 0usize;
        loop {
            let have = &self.buf[self.start..self.end];
            if let Some(i) = have[scanned.saturating_sub(1)..]
                .windows(2)
                .position(|w| w == sp::EOL)
            {
                let at = scanned.saturating_sub(1) + i;
                let l = (self.start, self.start + at);
                self.start += at + 2;
                return Ok(l);
            }
            if have.len() > sp::MAX_LINE {
                return Err(Framing::Lost(format!(
                    "a text reply longer than {} bytes",
                    sp::MAX_LINE
                )));
            }
            scanned = have.len();
            self.more(stall, device).map_err(Framing::Gone)?;
        }
    }

    /// Fills `out` from the stream.
    fn exact(&mut self, out: &mut [u8], stall: Duration, device: &str) -> Result<()> {
        let mut at = 0;
        while at < out.len() {
            if self.have() == 0 {
                self.more(stall, device)?;
            }
            let n = self.have().min(out.len() - at);
            out[at..at + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            at += n;
        }
        Ok(())
    }

    /// Drops `n` bytes of the stream.
    fn skip(&mut self, mut n: usize, stall: Duration, device: &str) -> Result<()> {
        while n > 0 {
            if self.have() == 0 {
                self.more(stall, device)?;
            }
            let k = self.have().min(n);
            self.start += k;
            n -= k;
        }
        Ok(())
    }
}

/// Why a reply could not be used.
enum Framing {
    /// The connection is gone.
    Gone(DriverError),
    /// The reply was read whole and refused; the stream is in step.
    Refused(String),
    /// The stream lost its place: re-open.
    Lost(String),
}

/// An open board on the SCPI server.
pub struct Scpi {
    cfg: ScpiConfig,
    addr: SocketAddr,
    wire: Option<Wire>,
    info: DeviceInfo,
    layout: EventLayout,
    idn: String,
    /// One input's block payload; sized once.
    chan: [Vec<u8>; 2],
    /// The command line being sent; capacity kept.
    cmd: Vec<u8>,
    phase: Phase,
    running: bool,
    redial: Redial,
    stats: ScpiStats,
}

fn connect(
    cfg: &ScpiConfig,
    addr: SocketAddr,
    device: &str,
) -> Result<(Wire, String), DriverError> {
    let s = TcpStream::connect_timeout(&addr, cfg.scope.connect_timeout).map_err(|e| {
        DriverError::Open {
            device: device.to_string(),
            detail: format!(
                "{e}: is the board on, on this network, and is its SCPI server running (port {})?",
                addr.port()
            ),
        }
    })?;
    let gone = |e: std::io::Error| DriverError::Disconnected {
        device: device.to_string(),
        detail: e.to_string(),
    };
    s.set_nodelay(true).map_err(gone)?;
    s.set_read_timeout(Some(Duration::from_millis(10)))
        .map_err(gone)?;
    s.set_write_timeout(Some(cfg.scope.stall_timeout))
        .map_err(gone)?;
    let mut w = Wire {
        s,
        buf: vec![0u8; RX_BYTES].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    w.s.write_all(b"*IDN?\r\n").map_err(gone)?;
    let idn = match w.line(cfg.scope.connect_timeout, device) {
        Ok((a, b)) => String::from_utf8_lossy(&w.buf[a..b]).into_owned(),
        Err(Framing::Gone(e)) => {
            return Err(DriverError::Open {
                device: device.to_string(),
                detail: format!(
                    "connected, but no answer to *IDN? ({e}): not a SCPI server, or it serves \
                     another client"
                ),
            })
        }
        Err(Framing::Lost(d) | Framing::Refused(d)) => {
            return Err(DriverError::Open {
                device: device.to_string(),
                detail: format!("connected, but *IDN? got {d}"),
            })
        }
    };
    Ok((w, idn))
}

/// Connects and asks `*IDN?`; the answer (used by `devices --probe`).
pub fn probe_scpi(addr: SocketAddr, timeout: Duration) -> Result<String, DriverError> {
    let cfg = ScpiConfig {
        scope: ScopeConfig {
            connect_timeout: timeout,
            stall_timeout: timeout,
            ..ScopeConfig::default()
        },
        ..ScpiConfig::default()
    };
    connect(&cfg, addr, &format!("scpi:{addr}")).map(|(_, idn)| idn)
}

/// Opens the board at `cfg.scope.address` over SCPI and configures the acquisition.
pub fn open_scpi(cfg: ScpiConfig) -> Result<Scpi, DriverError> {
    let (addr, info) = locate(
        "scpi",
        "Red Pitaya SCPI server",
        &cfg.scope.address,
        cfg.validate(),
        sp::PORT,
    )?;
    let bytes = cfg.scope.samples as usize * 2;
    let mut d = Scpi {
        info,
        addr,
        wire: None,
        layout: cfg.layout(),
        idn: String::new(),
        chan: [vec![0u8; bytes], vec![0u8; bytes]],
        cmd: Vec::with_capacity(128),
        phase: Phase::Idle,
        running: false,
        redial: Redial::new(cfg.scope.backoff),
        stats: ScpiStats::default(),
        cfg,
    };
    d.connect()?;
    Ok(d)
}

impl Scpi {
    /// Counters so far.
    pub fn stats(&self) -> ScpiStats {
        self.stats
    }

    /// What the board answered to `*IDN?`.
    pub fn idn(&self) -> &str {
        &self.idn
    }

    fn connect(&mut self) -> Result<()> {
        let (mut w, idn) = connect(&self.cfg, self.addr, &self.info.port)?;
        for l in self.cfg.setup_lines() {
            w.s.write_all(l.as_bytes())
                .and_then(|_| w.s.write_all(sp::EOL))
                .map_err(|e| DriverError::Disconnected {
                    device: self.info.port.clone(),
                    detail: e.to_string(),
                })?;
        }
        self.idn = idn;
        self.wire = Some(w);
        self.phase = Phase::Idle;
        Ok(())
    }

    fn gone(&mut self, e: DriverError) -> DriverError {
        if self.wire.take().is_some() {
            self.stats.disconnects += 1;
        }
        self.phase = Phase::Idle;
        e
    }

    fn refuse(&mut self, detail: String, lost: bool) -> DriverError {
        self.stats.refused += 1;
        self.phase = Phase::Idle;
        if lost {
            // Re-opened by the next read's Disconnected and the importer's reconnect.
            self.wire = None;
        }
        DriverError::Protocol {
            device: self.info.port.clone(),
            offset: 0,
            detail,
        }
    }

    /// Sends the line in `self.cmd` (without its end).
    fn send_cmd(&mut self) -> Result<()> {
        self.cmd.extend_from_slice(sp::EOL);
        let device = &self.info.port;
        let Some(w) = self.wire.as_mut() else {
            return Err(not_connected(device));
        };
        w.s.write_all(&self.cmd)
            .map_err(|e| DriverError::Disconnected {
                device: device.clone(),
                detail: e.to_string(),
            })
    }

    fn send(&mut self, line: &[u8]) -> Result<()> {
        self.cmd.clear();
        self.cmd.extend_from_slice(line);
        self.send_cmd()
    }

    /// Sends `query` and reads its text reply: its span in the receive buffer.
    fn query(&mut self, query: &[u8]) -> Result<(usize, usize), Framing> {
        self.send(query).map_err(Framing::Gone)?;
        let stall = self.cfg.scope.stall_timeout;
        let device = &self.info.port;
        let Some(w) = self.wire.as_mut() else {
            return Err(Framing::Gone(not_connected(device)));
        };
        w.line(stall, device)
    }

    fn reply(&self, span: (usize, usize)) -> &[u8] {
        self.wire
            .as_ref()
            .map_or(&[][..], |w| &w.buf[span.0..span.1])
    }

    /// Reads input `i`'s block of the window into `self.chan[i]`.
    fn block(&mut self, i: usize, start: u32) -> Result<(), Framing> {
        self.cmd.clear();
        let q = DataQuery {
            input: if i == 0 { Input::In1 } else { Input::In2 },
            start,
            n: self.cfg.scope.samples,
        };
        // Writing into a Vec with capacity left allocates nothing.
        let _ = write!(self.cmd, "{q}");
        self.send_cmd().map_err(Framing::Gone)?;
        let stall = self.cfg.scope.stall_timeout;
        let device = &self.info.port;
        let Some(w) = self.wire.as_mut() else {
            return Err(Framing::Gone(not_connected(device)));
        };
        let (head, len) = loop {
            match sp::block_header(&w.buf[w.start..w.end]) {
                Ok(Some(h)) => break h,
                Ok(None) => w.more(stall, device).map_err(Framing::Gone)?,
                Err(e) => return Err(Framing::Lost(e.to_string())),
            }
        };
        w.start += head;
        let out = &mut self.chan[i];
        if len != out.len() {
            w.skip(len + 2, stall, device).map_err(Framing::Gone)?;
            return Err(Framing::Refused(
                ScpiError::WrongSize {
                    got: len,
                    want: out.len(),
                }
                .to_string(),
            ));
        }
        w.exact(out, stall, device).map_err(Framing::Gone)?;
        let mut end = [0u8; 2];
        w.exact(&mut end, stall, device).map_err(Framing::Gone)?;
        if end != *b"\r\n" {
            return Err(Framing::Lost(ScpiError::NoEnd.to_string()));
        }
        sp::check_samples(out).map_err(|e| Framing::Refused(format!("IN{}: {e}", i + 1)))
    }

    /// The window of both inputs into `out` (after the trigger and the fill).
    fn read_window(&mut self, out: &mut [u8]) -> Result<(), Framing> {
        let span = self.query(b"ACQ:TPOS?")?;
        let tpos = sp::number(self.reply(span), "ACQ:TPOS?")
            .ok()
            .filter(|&t| t < sp::BUFFER_SAMPLES)
            .ok_or_else(|| {
                Framing::Refused(format!(
                    "ACQ:TPOS? answered {:?}",
                    String::from_utf8_lossy(self.reply(span))
                ))
            })?;
        let start = sp::window_start(tpos, self.cfg.scope.pre);
        self.block(0, start)?;
        self.block(1, start)?;
        let [a, b] = &self.chan;
        let neg = self.cfg.scope.negator;
        for ((o, x), y) in out
            .chunks_exact_mut(SAMPLE_BYTES)
            .zip(a.chunks_exact(2))
            .zip(b.chunks_exact(2))
        {
            let v = |c: &[u8], n: bool| {
                let v = i16::from_le_bytes([c[0], c[1]]);
                if n {
                    v.wrapping_neg()
                } else {
                    v
                }
            };
            o[..2].copy_from_slice(&v(x, neg[0]).to_le_bytes());
            o[2..].copy_from_slice(&v(y, neg[1]).to_le_bytes());
        }
        Ok(())
    }

    /// One step of the cycle: `None` when the next step may follow at once, `Idle` when
    /// the board is not ready yet (poll again later), or the event.
    fn step(&mut self, out: &mut [u8]) -> Result<Option<ReadOutcome>, Framing> {
        match self.phase {
            Phase::Idle => {
                self.send(b"ACQ:START").map_err(Framing::Gone)?;
                self.cmd.clear();
                self.cmd.extend_from_slice(b"ACQ:TRig ");
                self.cmd
                    .extend_from_slice(self.cfg.trigger_word().as_bytes());
                self.send_cmd().map_err(Framing::Gone)?;
                self.phase = Phase::Armed;
                Ok(None)
            }
            Phase::Armed => {
                self.stats.polls += 1;
                let span = self.query(b"ACQ:TRig:STAT?")?;
                match sp::triggered(self.reply(span)) {
                    Ok(true) => {
                        self.phase = Phase::Filling;
                        Ok(None)
                    }
                    Ok(false) => Ok(Some(ReadOutcome::Idle)),
                    Err(e) => Err(Framing::Refused(e.to_string())),
                }
            }
            Phase::Filling => {
                self.stats.polls += 1;
                let span = self.query(b"ACQ:TRig:FILL?")?;
                match sp::number(self.reply(span), "ACQ:TRig:FILL?") {
                    Ok(1) => {
                        self.phase = Phase::Idle;
                        self.read_window(out)?;
                        self.stats.events += 1;
                        Ok(Some(ReadOutcome::Event(EventInfo::default())))
                    }
                    Ok(_) => Ok(Some(ReadOutcome::Idle)),
                    Err(e) => Err(Framing::Refused(e.to_string())),
                }
            }
        }
    }
}

fn not_connected(device: &str) -> DriverError {
    DriverError::Disconnected {
        device: device.to_string(),
        detail: "not connected (re-opening after a reply that could not be framed)".into(),
    }
}

impl Source for Scpi {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn start(&mut self) -> Result<()> {
        self.running = true;
        self.phase = Phase::Idle;
        Ok(())
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        if self.wire.is_none() {
            return Err(not_connected(&self.info.port));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.step(out) {
                Ok(None) => {}
                Ok(Some(ReadOutcome::Idle)) => {
                    let now = Instant::now();
                    if now + self.cfg.poll >= deadline {
                        return Ok(ReadOutcome::Idle);
                    }
                    std::thread::sleep(self.cfg.poll);
                }
                Ok(Some(r)) => return Ok(r),
                Err(Framing::Gone(e)) => return Err(self.gone(e)),
                Err(Framing::Refused(d)) => return Err(self.refuse(d, false)),
                Err(Framing::Lost(d)) => return Err(self.refuse(d, true)),
            }
        }
    }

    fn stop(&mut self) -> Result<()> {
        self.running = false;
        if self.wire.is_some() {
            let r = self.send(b"ACQ:STOP");
            self.phase = Phase::Idle;
            return r;
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<bool> {
        self.wire = None;
        if !self.redial.due() {
            return Ok(false);
        }
        // Connecting over SCPI has no configuration error: every failure is retried.
        let outcome = self.connect();
        let connected = self.redial.settle(outcome)?;
        self.stats.reconnects += u64::from(connected);
        Ok(connected)
    }

    fn channel_scales(&self) -> Vec<ChannelScale> {
        crate::redpitaya::driver::trace_scales(
            self.cfg.scope.volts_per_count,
            self.cfg.scope.negator,
        )
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let c = &self.cfg;
        let (slope, level) = c.board_trigger();
        let mut m = vec![
            ("redpitaya.transport".to_string(), "scpi".to_string()),
            ("redpitaya.address".to_string(), self.addr.to_string()),
            ("redpitaya.idn".to_string(), self.idn.clone()),
            ("redpitaya.decimation".to_string(), c.decimation.to_string()),
            (
                "redpitaya.sample_interval_ns".to_string(),
                format!("{}", 8 * c.decimation),
            ),
        ];
        m.extend(c.scope.run_metadata(format!(
            "{} (board: {:?} level {} counts)",
            c.trigger_word(),
            slope,
            level
        )));
        m.push((
            "redpitaya.refused".to_string(),
            self.stats.refused.to_string(),
        ));
        m.push((
            "redpitaya.reconnects".to_string(),
            self.stats.reconnects.to_string(),
        ));
        m
    }
}
