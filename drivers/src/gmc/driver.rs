//! The GMC driver: connect sequence, model detection, heartbeat streaming or polled CPM,
//! device facts into the run metadata, reconnect after unplug.
//!
//! Guarantees: one event per heartbeat frame (field `cps: u4`, counts in that device second)
//! or per poll (field `cpm: u4`); a reply of the wrong size or a missing poll reply is an
//! error with the byte offset, never a zero count. A heartbeat frame whose bytes straddle
//! the pause between two heartbeats (a stray or lost byte) is an error at the offset of its
//! early bytes, which are dropped, so the next frames are in step again
//! ([`HeartbeatFramer`]). The reading loop allocates nothing. Must
//! never: leave the heartbeat running after `stop`, or trust the VID alone for the model.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::protocol::{self, cmd, CountWidth, GmcError, HeartbeatFramer, Version};
use crate::driver::Result;
use crate::serial::{Backoff, PortSettings, SerialLink};
use crate::{DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Source};

/// How counts are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmcMode {
    /// `<HEARTBEAT1>>`: the device sends its counts every second; one event (`cps`) each.
    Heartbeat,
    /// `<GETCPM>>` every `interval`; one event (`cpm`) each.
    PollCpm {
        /// Time between polls.
        interval: Duration,
    },
}

/// Settings of a GMC counter (setup keys map onto these fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmcConfig {
    /// Serial port path (`/dev/daq/geiger-0`, `/dev/ttyUSB0`).
    pub path: PathBuf,
    /// Baud rate; `None` probes 115200 then 57600 with `<GETVER>>` (what pygmc does; other
    /// units may be set to anything from 1200 up, then give it here).
    pub baud: Option<u32>,
    /// Heartbeat streaming (default) or polled CPM.
    pub mode: GmcMode,
    /// Count width override (2 or 4 bytes) for firmware that differs from its class
    /// (some GMC-500+ answer 2 bytes). `None` = by model.
    pub width: Option<CountWidth>,
    /// How long to wait for a reply to a command.
    pub reply_timeout: Duration,
    /// How long to drain input after `<HEARTBEAT0>>` on connect.
    pub settle: Duration,
    /// In heartbeat mode, a pause longer than this inside a frame means its bytes belong to
    /// different heartbeats ([`HeartbeatFramer::GAP`], half the 1 s period; shorter only
    /// for simulators that run faster than real time).
    pub heartbeat_gap: Duration,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl Default for GmcConfig {
    fn default() -> Self {
        GmcConfig {
            path: PathBuf::from("/dev/ttyUSB0"),
            baud: None,
            mode: GmcMode::Heartbeat,
            width: None,
            reply_timeout: Duration::from_millis(500),
            settle: Duration::from_millis(100),
            heartbeat_gap: HeartbeatFramer::GAP,
            backoff: Backoff::default(),
        }
    }
}

/// Baud rates probed when none is configured (HARDWARE.md B.1).
pub const PROBE_BAUDS: [u32; 2] = [115200, 57600];

/// Idle gap that ends a GETVER reply.
const GETVER_IDLE: Duration = Duration::from_millis(50);

/// An open GMC counter.
pub struct Gmc {
    cfg: GmcConfig,
    link: SerialLink,
    info: DeviceInfo,
    layout: EventLayout,
    width: CountWidth,
    version: Version,
    facts: Vec<(String, String)>,
    running: bool,
    next_poll: Instant,
    /// Heartbeat frames by arrival time; arrival times count from `epoch`.
    framer: HeartbeatFramer,
    epoch: Instant,
    events: u64,
}

fn protocol_error(link: &SerialLink, offset: u64, e: GmcError) -> DriverError {
    DriverError::Protocol {
        device: link.device().to_string(),
        offset,
        detail: e.to_string(),
    }
}

/// Sends a command and reads exactly `n` reply bytes (copied out; not on the hot path).
fn ask(
    link: &mut SerialLink,
    command: &[u8],
    n: usize,
    timeout: Duration,
) -> Result<Vec<u8>, DriverError> {
    link.write_all(command)?;
    match link.read_exact(n, timeout)? {
        Some((_, b)) => Ok(b.to_vec()),
        None => Err(DriverError::Protocol {
            device: link.device().to_string(),
            offset: link.offset(),
            detail: format!(
                "no {n}-byte reply to {} within {timeout:?}; wrong model/width?",
                String::from_utf8_lossy(command)
            ),
        }),
    }
}

/// Stops any heartbeat, flushes, asks GETVER; returns the version, or `Ok(None)` when not a
/// byte came back.
fn handshake(link: &mut SerialLink, cfg: &GmcConfig) -> Result<Option<Version>, DriverError> {
    link.write_all(cmd::HEARTBEAT0)?;
    link.discard_input(cfg.settle)?;
    link.write_all(cmd::GETVER)?;
    let (offset, bytes) = link.read_until_idle(7, GETVER_IDLE, cfg.reply_timeout)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    protocol::decode_version(bytes)
        .map(Some)
        .map_err(|e| protocol_error(link, offset, e))
}

/// Opens the port, probes the baud rate if needed, and connects. A counter that never
/// answers is "no reply", naming the baud rates tried; a garbled answer is the last one's
/// error, with the rates tried.
fn connect(link: &mut SerialLink, cfg: &GmcConfig) -> Result<Version, DriverError> {
    let bauds: &[u32] = match &cfg.baud {
        Some(b) => std::slice::from_ref(b),
        None => &PROBE_BAUDS,
    };
    let mut garbled = None;
    // GMC-500+ Re 1.18 answers nothing to the first GETVER until the port is reopened
    // (pygmc): a second round after a reopen.
    for round in 0..2 {
        if round == 1 {
            link.reopen()?;
        }
        for &baud in bauds {
            link.set_baud(baud)?;
            match handshake(link, cfg) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e @ DriverError::Disconnected { .. }) => return Err(e),
                Err(e) => garbled = Some(e),
            }
        }
    }
    let tried = bauds
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    let device = link.device().to_string();
    Err(match garbled {
        Some(DriverError::Protocol { offset, detail, .. }) => DriverError::Protocol {
            device,
            offset,
            detail: format!(
                "{detail} (tried {tried} baud, twice, reopening the port in between): is it \
                 a GMC counter, and is `baud` the rate set in its menu?"
            ),
        },
        Some(e) => e,
        None => DriverError::Open {
            device,
            detail: format!(
                "no reply to <GETVER>> at {tried} baud (asked twice at each, reopening the \
                 port in between, waiting {:?} for each reply). Is the counter switched on \
                 and is this its port? If its menu sets another baud rate, give it as `baud`",
                cfg.reply_timeout
            ),
        },
    })
}

/// Reads serial, voltage and clock; a missing or malformed reply is noted, not fatal.
fn read_facts(
    link: &mut SerialLink,
    cfg: &GmcConfig,
    v: &Version,
) -> Result<Vec<(String, String)>, DriverError> {
    let mut facts = vec![("gmc_version".to_string(), v.text.clone())];
    let mut note =
        |link: &mut SerialLink, key: &str, r: Result<String, DriverError>| -> Result<()> {
            match r {
                Ok(s) => facts.push((key.to_string(), s)),
                Err(e @ DriverError::Disconnected { .. }) => return Err(e),
                Err(e) => {
                    facts.push((key.to_string(), format!("unavailable: {e}")));
                    link.discard_input(cfg.settle)?;
                }
            }
            Ok(())
        };
    let t = cfg.reply_timeout;
    let r = ask(link, cmd::GETSERIAL, 7, t).and_then(|b| {
        protocol::decode_serial(&b).map_err(|e| protocol_error(link, link.offset(), e))
    });
    note(link, "gmc_serial", r)?;
    let r = ask(link, cmd::GETVOLT, v.class.volt_bytes(), t).and_then(|b| {
        protocol::decode_volts(&b)
            .map(|x| format!("{x:.2}"))
            .map_err(|e| protocol_error(link, link.offset(), e))
    });
    note(link, "gmc_battery_volts", r)?;
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let r = ask(link, cmd::GETDATETIME, 7, t).and_then(|b| {
        protocol::decode_datetime(&b)
            .map(|c| c.to_string())
            .map_err(|e| protocol_error(link, link.offset(), e))
    });
    note(link, "gmc_device_clock", r)?;
    facts.push(("gmc_device_clock_read_at_unix".into(), format!("{host:.3}")));
    Ok(facts)
}

/// Opens and connects to a GMC counter.
pub fn open(config: GmcConfig) -> Result<Gmc, DriverError> {
    let first_baud = config.baud.unwrap_or(PROBE_BAUDS[0]);
    let mut link = SerialLink::open(PortSettings {
        path: config.path.clone(),
        baud: first_baud,
    })?;
    link.set_backoff(config.backoff);
    let version = connect(&mut link, &config)?;
    let facts = read_facts(&mut link, &config, &version)?;
    let width = config.width.unwrap_or(version.class.count_width());
    let field = match config.mode {
        GmcMode::Heartbeat => "cps",
        GmcMode::PollCpm { .. } => "cpm",
    };
    let serial = facts
        .iter()
        .find(|(k, v)| k == "gmc_serial" && !v.starts_with("unavailable"))
        .map(|(_, v)| v.clone());
    Ok(Gmc {
        info: DeviceInfo {
            serial,
            ..DeviceInfo::on_serial_port(Family::Gmc, version.text.clone(), &config.path)
        },
        layout: EventLayout::of([(field, "u4")], 1),
        width,
        version,
        facts,
        running: false,
        next_poll: Instant::now(),
        framer: HeartbeatFramer::new(width),
        epoch: Instant::now(),
        events: 0,
        link,
        cfg: config,
    })
}

impl Gmc {
    /// The count width in use.
    pub fn width(&self) -> CountWidth {
        self.width
    }

    /// The GETVER answer.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The serial link (for its counters).
    pub fn link(&self) -> &SerialLink {
        &self.link
    }

    /// Heartbeat mode's `read_event`: hands the bytes to the framer as they arrive, with the
    /// time of the read that brought them, until a frame is whole (an event) or out of step
    /// (its early bytes refused, with their offset).
    fn next_heartbeat(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, value)) = self.framer.frame() {
                out.copy_from_slice(&value.to_le_bytes());
                self.events += 1;
                return Ok(ReadOutcome::Event(EventInfo::default()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(got) = self.link.read_up_to(self.framer.wants(), left)? else {
                return Ok(ReadOutcome::Idle);
            };
            let at = got.at.saturating_duration_since(self.epoch);
            let gap = self.cfg.heartbeat_gap;
            if let Err(m) = self.framer.push(got.bytes, got.offset, at, gap) {
                self.link.note_rejected(&m.bytes[..m.len]);
                return Err(DriverError::Protocol {
                    device: self.link.device().to_string(),
                    offset: m.offset,
                    detail: format!(
                        "heartbeat out of step: {} byte(s) came {:.3} s before the next ones, \
                         so they are not part of the next {}-byte frame (a stray or lost byte \
                         on the line); dropped, the counts go on in step",
                        m.len,
                        m.early_by.as_secs_f64(),
                        self.width.bytes()
                    ),
                });
            }
        }
    }
}

impl Source for Gmc {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn start(&mut self) -> Result<()> {
        match self.cfg.mode {
            GmcMode::Heartbeat => {
                self.framer.reset();
                self.link.write_all(cmd::HEARTBEAT1)?
            }
            GmcMode::PollCpm { .. } => self.next_poll = Instant::now(),
        }
        self.running = true;
        Ok(())
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        if out.len() != 4 {
            return Err(DriverError::Config {
                device: self.link.device().to_string(),
                detail: format!(
                    "event slot is {} bytes, a GMC event is 4 (one u4)",
                    out.len()
                ),
            });
        }
        let n = self.width.bytes();
        let (offset, bytes) = match self.cfg.mode {
            GmcMode::Heartbeat => return self.next_heartbeat(out, timeout),
            GmcMode::PollCpm { interval } => {
                let now = Instant::now();
                if self.next_poll > now {
                    let wait = self.next_poll - now;
                    if wait > timeout {
                        std::thread::sleep(timeout);
                        return Ok(ReadOutcome::Idle);
                    }
                    std::thread::sleep(wait);
                }
                self.next_poll += interval;
                // Whatever came unasked (a late reply, line noise) would shift this reply:
                // drop it, so each poll starts in step (one syscall per poll, not per byte).
                self.link.reject_buffered();
                self.link.write_all(cmd::GETCPM)?;
                let t = self.cfg.reply_timeout;
                match self.link.read_exact(n, t)? {
                    Some((o, b)) => (o, b),
                    None => {
                        let offset = self.link.offset();
                        let got = self.link.reject_buffered();
                        return Err(DriverError::Protocol {
                            device: self.link.device().to_string(),
                            offset,
                            detail: format!(
                                "{got} byte(s) instead of a {n}-byte reply to <GETCPM>> \
                                 within {t:?}; the next poll starts afresh"
                            ),
                        });
                    }
                }
            }
        };
        let value = protocol::decode_count(bytes, self.width, false).map_err(|e| {
            DriverError::Protocol {
                device: self.link.device().to_string(),
                offset,
                detail: e.to_string(),
            }
        })?;
        out.copy_from_slice(&value.to_le_bytes());
        self.events += 1;
        Ok(ReadOutcome::Event(EventInfo::default()))
    }

    fn stop(&mut self) -> Result<()> {
        self.running = false;
        if self.cfg.mode == GmcMode::Heartbeat {
            self.link.write_all(cmd::HEARTBEAT0)?;
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<bool> {
        if !self.link.reconnect()? {
            return Ok(false);
        }
        let version = match connect(&mut self.link, &self.cfg) {
            Ok(v) => v,
            Err(DriverError::Disconnected { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if version.class != self.version.class {
            return Err(DriverError::Config {
                device: self.link.device().to_string(),
                detail: format!(
                    "a different counter came back ({} instead of {}); restart the run",
                    version.text, self.version.text
                ),
            });
        }
        self.framer.reset();
        if self.running {
            self.start()?;
        }
        Ok(true)
    }

    fn rejected_bytes(&self) -> &[u8] {
        self.link.rejected()
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let mut m = self.facts.clone();
        m.push((
            "gmc_count_width_bytes".into(),
            self.width.bytes().to_string(),
        ));
        m.push(("gmc_baud".into(), self.link.settings().baud.to_string()));
        m.extend(self.link.gap_metadata());
        m
    }
}
