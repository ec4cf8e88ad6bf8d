//! A GQ GMC counter on a pseudo-terminal, answering byte-exactly per HARDWARE.md B.1 with a
//! per-model profile, Poisson counts at a set rate (seeded) and a 1 Hz heartbeat that
//! interleaves with replies while it is on.
//!
//! Guarantees: reply sizes are those of the model's class (CPM/CPS 2|4 bytes, GETVOLT 1|5,
//! GETCFG 256|512); the per-second counts depend only on seed and rate (see
//! [`counts_for_seed`]); unknown commands get no reply (the host must time out; this is the
//! documented guess, (unverified) on hardware). Must never: answer a command the profile's
//! protocol does not have (GETCPS on RFC1201, GETTEMP outside the GMC-320).

use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{encode_count, encode_datetime, CountWidth, DeviceClock, ModelClass, ACK};
use crate::serial::simclock::{PoissonCounts, SimSeconds};
use crate::serial::{SimulatedDevice, SimulatorHandle};

/// Simulated models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmcModel {
    /// GMC-300 firmware 3.xx (57600 baud, RFC1201).
    Gmc300V3,
    /// GMC-300 Plus firmware 4.xx (115200 baud, RFC1201).
    Gmc300V4,
    /// GMC-320 (RFC1201, has GETTEMP).
    Gmc320,
    /// GMC-500+ (RFC1801, 15-byte version).
    Gmc500Plus,
    /// GMC-600+ (RFC1801, 15-byte version).
    Gmc600Plus,
    /// GMC-800 (claims RFC1201, 4-byte counts, 512-byte config).
    Gmc800,
}

/// What a simulated model says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GmcProfile {
    /// GETVER reply.
    pub version: &'static str,
    /// Class that version string maps to.
    pub class: ModelClass,
    /// Factory baud rate.
    pub baud: u32,
}

impl GmcModel {
    /// All simulated models.
    pub const ALL: [GmcModel; 6] = [
        GmcModel::Gmc300V3,
        GmcModel::Gmc300V4,
        GmcModel::Gmc320,
        GmcModel::Gmc500Plus,
        GmcModel::Gmc600Plus,
        GmcModel::Gmc800,
    ];

    /// The model's profile. Version strings: `GMC-300Re 2.10`-style 14-byte strings for
    /// RFC1201, `GMC-500+Re 2.22` / `GMC-600+Re 1.14` (15 bytes) as quoted in HARDWARE.md
    /// B.1; the exact 3.xx/4.xx/320/800 firmware numbers are (unverified) examples.
    pub fn profile(self) -> GmcProfile {
        let (version, class, baud) = match self {
            GmcModel::Gmc300V3 => ("GMC-300Re 3.20", ModelClass::Gmc300, 57600),
            GmcModel::Gmc300V4 => ("GMC-300Re 4.54", ModelClass::Gmc300, 115200),
            GmcModel::Gmc320 => ("GMC-320Re 4.26", ModelClass::Gmc320, 115200),
            GmcModel::Gmc500Plus => ("GMC-500+Re 2.22", ModelClass::Gmc500Plus, 115200),
            GmcModel::Gmc600Plus => ("GMC-600+Re 1.14", ModelClass::Gmc600Plus, 115200),
            GmcModel::Gmc800 => ("GMC-800Re1.10 ", ModelClass::Gmc800, 115200),
        };
        GmcProfile {
            version,
            class,
            baud,
        }
    }
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GmcSimConfig {
    /// Which model to be.
    pub model: GmcModel,
    /// Mean counts per device second.
    pub cps: f64,
    /// Seed of the count generator.
    pub seed: u64,
    /// Host duration of one device second (1 s real; 10–20 ms in tests).
    pub second: Duration,
    /// Bits ORed into bits 15–14 of 2-byte heartbeat frames (reserved; the driver masks them).
    pub reserved_bits: u16,
    /// 7-byte serial number.
    pub serial: [u8; 7],
    /// Battery volts × 100 (sent as 1 byte ×10 or `d.ddv`).
    pub centivolts: u16,
    /// Device clock at plug-in.
    pub clock: DeviceClock,
    /// Count width differing from the model class (some GMC-500+ firmware sends 2 bytes).
    pub width: Option<CountWidth>,
    /// Ignore the first GETVER, like GMC-500+ Re 1.18 (the real unit answers after a port
    /// reopen; a pty cannot show the reopen, so the second GETVER is answered).
    pub mute_first_getver: bool,
}

impl Default for GmcSimConfig {
    fn default() -> Self {
        GmcSimConfig {
            model: GmcModel::Gmc320,
            cps: 0.5,
            seed: 1,
            second: Duration::from_secs(1),
            reserved_bits: 0,
            serial: [0xF4, 0x88, 0x00, 0x45, 0x1A, 0x9B, 0x0E],
            centivolts: 397,
            clock: DeviceClock {
                year: 2026,
                month: 1,
                day: 2,
                hour: 3,
                minute: 4,
                second: 5,
            },
            width: None,
            mute_first_getver: false,
        }
    }
}

/// The per-second counts a simulator with this seed and rate produces, in order.
pub fn counts_for_seed(seed: u64, cps: f64, n: usize) -> Vec<u32> {
    let mut g = PoissonCounts::new(seed, cps);
    (0..n).map(|_| g.draw()).collect()
}

/// Commands with binary parameters: (name, parameter bytes for RFC1201, for RFC1801).
const WITH_PARAMS: [(&[u8], usize, usize); 9] = [
    (b"SETDATETIME", 6, 6),
    (b"WCFG", 2, 3),
    (b"SPIR", 5, 5),
    (b"SETDATEYY", 1, 1),
    (b"SETDATEMM", 1, 1),
    (b"SETDATEDD", 1, 1),
    (b"SETTIMEHH", 1, 1),
    (b"SETTIMEMM", 1, 1),
    (b"SETTIMESS", 1, 1),
];

/// Longest command frame accepted before resynchronising.
const MAX_FRAME: usize = 64;

/// The simulated counter.
pub struct GmcDevice {
    cfg: GmcSimConfig,
    profile: GmcProfile,
    width: CountWidth,
    clock: SimSeconds,
    counts: PoissonCounts,
    /// Last 60 per-second counts; `history[i % 60]`.
    history: [u32; 60],
    heartbeat: bool,
    inbox: Vec<u8>,
    device_clock: DeviceClock,
    /// Device second at which `device_clock` was set.
    device_clock_base: u64,
    /// Whether the first GETVER was already ignored.
    getver_muted: bool,
}

impl GmcDevice {
    /// A device as it powers up.
    pub fn new(cfg: GmcSimConfig) -> GmcDevice {
        let profile = cfg.model.profile();
        GmcDevice {
            width: cfg.width.unwrap_or(profile.class.count_width()),
            clock: SimSeconds::new(cfg.second),
            counts: PoissonCounts::new(cfg.seed, cfg.cps),
            history: [0; 60],
            heartbeat: false,
            inbox: Vec::with_capacity(MAX_FRAME),
            device_clock: cfg.clock,
            device_clock_base: 0,
            getver_muted: false,
            profile,
            cfg,
        }
    }

    fn cpm(&self) -> u32 {
        self.history.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    fn last_cps(&self) -> u32 {
        let t = self.clock.ticks();
        if t == 0 {
            0
        } else {
            self.history[((t - 1) % 60) as usize]
        }
    }

    fn answer(&mut self, name: &[u8], params: &[u8], out: &mut Vec<u8>) {
        let class = self.profile.class;
        let rfc1801_like = class.count_width() == CountWidth::Four;
        match name {
            b"GETVER" if self.cfg.mute_first_getver && !self.getver_muted => {
                self.getver_muted = true
            }
            b"GETVER" => out.extend_from_slice(self.profile.version.as_bytes()),
            b"GETCPM" => encode_count(self.cpm(), self.width, 0, out),
            b"GETCPS" if class.has_getcps() => encode_count(self.last_cps(), self.width, 0, out),
            b"GETMAXCPS" if rfc1801_like => encode_count(self.last_cps(), self.width, 0, out),
            b"GETCPMH" | b"GETCPML" if class == ModelClass::Gmc500Plus => {
                encode_count(self.cpm(), self.width, 0, out)
            }
            b"HEARTBEAT1" => self.heartbeat = true,
            b"HEARTBEAT0" => self.heartbeat = false,
            b"GETVOLT" => {
                let cv = self.cfg.centivolts;
                if class.volt_bytes() == 1 {
                    out.push((cv / 10).min(255) as u8);
                } else {
                    let v = cv.min(999);
                    out.extend_from_slice(&[
                        b'0' + (v / 100) as u8,
                        b'.',
                        b'0' + (v / 10 % 10) as u8,
                        b'0' + (v % 10) as u8,
                        b'v',
                    ]);
                }
            }
            b"GETSERIAL" => out.extend_from_slice(&self.cfg.serial),
            b"GETDATETIME" => {
                let c = self.clock_now();
                encode_datetime(&c, out);
            }
            b"GETCFG" => {
                let n = class.config_bytes();
                let start = out.len();
                out.resize(start + n, 0);
                // Byte 57: baud code (300/320: 254 = 115200, 252 = 57600; 500/600: 0 = 115200).
                out[start + 57] = match (n, self.profile.baud) {
                    (256, 57600) => 252,
                    (256, _) => 254,
                    _ => 0,
                };
            }
            b"GETTEMP" if matches!(class, ModelClass::Gmc320) => {
                out.extend_from_slice(&[22, 5, 0, ACK])
            }
            b"GETGYRO" => out.extend_from_slice(&[0, 0, 0, 0, 0, 0, ACK]),
            b"ECFG" | b"CFGUPDATE" | b"FACTORYRESET" => out.push(ACK),
            b"EchoON" | b"EchoOFF" | b"ALARM1" | b"ALARM0" | b"SPEAKER1" | b"SPEAKER0"
            | b"WiFiON" | b"WiFiOFF"
                if self.profile.class.rfc() == super::protocol::Rfc::Rfc1801 =>
            {
                out.push(ACK)
            }
            b"SETDATETIME" => {
                if let Ok(fields) = <[u8; 6]>::try_from(params) {
                    self.device_clock = DeviceClock::from_fields(fields);
                    self.device_clock_base = self.clock.ticks();
                }
                out.push(ACK)
            }
            b"WCFG" | b"SETDATEYY" | b"SETDATEMM" | b"SETDATEDD" | b"SETTIMEHH" | b"SETTIMEMM"
            | b"SETTIMESS" => out.push(ACK),
            // KEYn, POWEROFF, POWERON, REBOOT: no reply. SPIR (history flash) is not
            // simulated. Anything else: unknown → no reply.
            _ => {}
        }
    }

    fn clock_now(&self) -> DeviceClock {
        let mut c = self.device_clock;
        let secs = self.clock.ticks().saturating_sub(self.device_clock_base);
        let total =
            u64::from(c.hour) * 3600 + u64::from(c.minute) * 60 + u64::from(c.second) + secs;
        // Days are not rolled over: runs in tests are far shorter than a day.
        c.hour = ((total / 3600) % 24) as u8;
        c.minute = ((total / 60) % 60) as u8;
        c.second = (total % 60) as u8;
        c
    }

    fn parse_frames(&mut self, out: &mut Vec<u8>) {
        loop {
            // Resynchronise on '<'.
            match self.inbox.iter().position(|&b| b == b'<') {
                Some(0) => {}
                Some(i) => {
                    self.inbox.drain(..i);
                }
                None => {
                    self.inbox.clear();
                    return;
                }
            }
            let body = &self.inbox[1..];
            let rfc1801 = self.profile.class.rfc() == super::protocol::Rfc::Rfc1801;
            let mut handled = false;
            for (name, p1201, p1801) in WITH_PARAMS {
                let np = if rfc1801 { p1801 } else { p1201 };
                if body.len() < name.len() && name.starts_with(body) {
                    return; // could still become this command
                }
                if body.starts_with(name) {
                    let total = 1 + name.len() + np + 2;
                    if self.inbox.len() < total {
                        return;
                    }
                    let frame: Vec<u8> = self.inbox.drain(..total).collect();
                    if &frame[total - 2..] == b">>" {
                        let params = frame[1 + name.len()..total - 2].to_vec();
                        self.answer(name, &params, out);
                    }
                    handled = true;
                    break;
                }
            }
            if handled {
                continue;
            }
            match self.inbox.windows(2).position(|w| w == b">>") {
                Some(end) => {
                    let name: Vec<u8> = self.inbox[1..end].to_vec();
                    self.inbox.drain(..end + 2);
                    self.answer(&name, &[], out);
                }
                None if self.inbox.len() > MAX_FRAME => {
                    self.inbox.remove(0);
                }
                None => return,
            }
        }
    }
}

impl SimulatedDevice for GmcDevice {
    fn receive(&mut self, bytes: &[u8], now: Duration, out: &mut Vec<u8>) {
        self.advance(now, out);
        self.inbox.extend_from_slice(bytes);
        self.parse_frames(out);
    }

    fn advance(&mut self, now: Duration, out: &mut Vec<u8>) {
        while self.clock.tick(now) {
            let n = self.counts.draw();
            let t = self.clock.ticks();
            self.history[((t - 1) % 60) as usize] = n;
            if self.heartbeat {
                let n = match self.width {
                    CountWidth::Two => n.min(u32::from(super::protocol::HEARTBEAT14_MASK)),
                    CountWidth::Four => n,
                };
                encode_count(n, self.width, self.cfg.reserved_bits, out);
            }
        }
    }

    fn next_wakeup(&self) -> Option<Duration> {
        Some(self.clock.next_due())
    }
}

/// Starts a simulated GMC on a pty; returns the handle and the stable path to open. Each
/// replug powers up a fresh device with the same settings.
pub fn simulate(config: GmcSimConfig) -> std::io::Result<(SimulatorHandle, PathBuf)> {
    let handle = SimulatorHandle::start("gmc", move |_| Box::new(GmcDevice::new(config.clone())))?;
    let path = handle.path().to_path_buf();
    Ok((handle, path))
}
