//! The CosmicWatch driver: one record per detector event with every field the detector
//! prints; the detector's own timestamp and dead time are kept raw in the record and also
//! reported in [`EventInfo`].
//!
//! Records — v2: `event: u8, time_ms: u8, adc: u2, sipm_mv: f4, deadtime_ms: u8, temp_c: f4`;
//! v3X: `event: u8, time_s: f8, flag: u1, adc: u2, sipm_mv: f4, deadtime_s: f8` then, when
//! configured, `temp_c: f4, pressure_pa: f4` and `accel_x/y/z: f4, gyro_x/y/z: f4`.
//! `EventInfo.device_time` is the detector time in s; `device_deadtime` is the dead time
//! accrued since the previous event (the record keeps the cumulative value);
//! `device_lost` counts skipped event numbers.
//!
//! Guarantees: header, name, comment and housekeeping lines make no event; a line that does
//! not parse, or an event number that goes backwards, is a [`DriverError::Protocol`] with the
//! byte offset, the refused line's first bytes kept for the log, and the next read starts at
//! the next line (the numbering follows the new numbers). A v2 detector that prints its
//! header again (a reset or brown-out) and then numbers from the start again restarted: its
//! name line is read as the name, its events are kept, and the restart is counted in the
//! run metadata (`cosmicwatch_restarts`, `cosmicwatch_last_restart`). A last line without
//! its line end at the stop or a disconnect is bad data, never an event (it may be cut
//! short). The reading loop allocates nothing (housekeeping text goes into a buffer
//! reserved at open). Must never: send anything to the detector.

use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{is_v2_name, parse_v2, parse_v3, V2Line, V3Columns, V3Line};
use crate::driver::Result;
use crate::serial::{Backoff, LineUse, PortSettings, SerialLink};
use crate::{DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Source};

/// Detector version and its columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CosmicWatchVersion {
    /// v2, Arduino Nano, 9600 baud, space-separated.
    V2,
    /// v3X, RP2040 USB CDC, tab-separated; which optional columns it prints.
    V3X(V3Columns),
}

/// Settings of a CosmicWatch detector (setup keys map onto these fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosmicWatchConfig {
    /// Serial port path.
    pub path: PathBuf,
    /// Detector version and columns.
    pub version: CosmicWatchVersion,
    /// Baud rate; `None` = 9600 for v2, 115200 for v3X (ignored by USB CDC).
    pub baud: Option<u32>,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl Default for CosmicWatchConfig {
    fn default() -> Self {
        CosmicWatchConfig {
            path: PathBuf::from("/dev/ttyUSB0"),
            version: CosmicWatchVersion::V2,
            baud: None,
            backoff: Backoff::default(),
        }
    }
}

/// Longest housekeeping text kept.
const HK_CAPACITY: usize = 256;

/// An open CosmicWatch detector.
pub struct CosmicWatch {
    cfg: CosmicWatchConfig,
    link: SerialLink,
    info: DeviceInfo,
    layout: EventLayout,
    /// Detector name from the v2 name line.
    name: Option<String>,
    /// Last housekeeping text (capacity reserved at open).
    housekeeping: String,
    last_event: Option<u64>,
    /// True until the first line after the header of a (re)started detector was seen.
    expect_name: bool,
    /// Since the last event, a v2 header line came: the detector may have restarted.
    header_since_event: bool,
    /// Restarts seen mid-run (header, then numbering from the start again).
    restarts: u64,
    /// The latest restart: byte offset of its first event, and the event number before it.
    last_restart: Option<(u64, u64)>,
    /// Last cumulative dead time, seconds.
    last_dead: f64,
    events: u64,
    lost: u64,
}

fn layout_for(version: CosmicWatchVersion) -> Vec<(&'static str, &'static str)> {
    match version {
        CosmicWatchVersion::V2 => vec![
            ("event", "u8"),
            ("time_ms", "u8"),
            ("adc", "u2"),
            ("sipm_mv", "f4"),
            ("deadtime_ms", "u8"),
            ("temp_c", "f4"),
        ],
        CosmicWatchVersion::V3X(c) => {
            let mut v = vec![
                ("event", "u8"),
                ("time_s", "f8"),
                ("flag", "u1"),
                ("adc", "u2"),
                ("sipm_mv", "f4"),
                ("deadtime_s", "f8"),
            ];
            if c.environment {
                v.extend([("temp_c", "f4"), ("pressure_pa", "f4")]);
            }
            if c.motion {
                v.extend([
                    ("accel_x", "f4"),
                    ("accel_y", "f4"),
                    ("accel_z", "f4"),
                    ("gyro_x", "f4"),
                    ("gyro_y", "f4"),
                    ("gyro_z", "f4"),
                ]);
            }
            v
        }
    }
}

/// Opens a CosmicWatch detector. Nothing is sent to it.
pub fn open(config: CosmicWatchConfig) -> Result<CosmicWatch, DriverError> {
    let baud = config.baud.unwrap_or(match config.version {
        CosmicWatchVersion::V2 => 9600,
        CosmicWatchVersion::V3X(_) => 115200,
    });
    let mut link = SerialLink::open(PortSettings {
        path: config.path.clone(),
        baud,
    })?;
    link.set_backoff(config.backoff);
    let model = match config.version {
        CosmicWatchVersion::V2 => "CosmicWatch v2",
        CosmicWatchVersion::V3X(_) => "CosmicWatch v3X",
    };
    Ok(CosmicWatch {
        info: DeviceInfo::on_serial_port(Family::CosmicWatch, model, &config.path),
        layout: EventLayout::of(layout_for(config.version), 1),
        name: None,
        housekeeping: String::with_capacity(HK_CAPACITY),
        last_event: None,
        expect_name: true,
        header_since_event: false,
        restarts: 0,
        last_restart: None,
        last_dead: 0.0,
        events: 0,
        lost: 0,
        link,
        cfg: config,
    })
}

impl CosmicWatch {
    /// Detector name from the v2 name line, if seen.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Last housekeeping text (v3X `# HK` line), empty if none yet.
    pub fn housekeeping(&self) -> &str {
        &self.housekeeping
    }

    /// The serial link (for its counters).
    pub fn link(&self) -> &SerialLink {
        &self.link
    }
}

/// What the event numbering says of an event: how many numbers were skipped before it.
/// A number not above the previous one is refused, unless a header came since the previous
/// event (a v2 detector printing its header again restarted): then the numbering starts
/// afresh and the restart is counted. Either way the numbering follows the new numbers.
fn sequence(
    seq: &mut Sequence<'_>,
    event: u64,
    offset: u64,
    port: &str,
) -> Result<u64, DriverError> {
    let lost = match *seq.last_event {
        Some(prev) if event <= prev && *seq.header_since_event => {
            *seq.restarts += 1;
            *seq.last_restart = Some((offset, prev));
            *seq.last_dead = 0.0;
            event.saturating_sub(1)
        }
        Some(prev) if event <= prev => {
            // Follow the new numbering: this line is refused, the next ones are not.
            *seq.last_event = Some(event);
            return Err(DriverError::Protocol {
                device: port.to_string(),
                offset,
                detail: format!(
                    "event number {event} after {prev}: the detector restarted or lines \
                     were merged; if it rebooted, reconnect"
                ),
            });
        }
        Some(prev) => event - prev - 1,
        None => 0,
    };
    *seq.last_event = Some(event);
    *seq.header_since_event = false;
    Ok(lost)
}

/// The driver's numbering state, borrowed apart from its serial link.
struct Sequence<'a> {
    last_event: &'a mut Option<u64>,
    header_since_event: &'a mut bool,
    restarts: &'a mut u64,
    last_restart: &'a mut Option<(u64, u64)>,
    last_dead: &'a mut f64,
}

impl Source for CosmicWatch {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        let port = &self.info.port;
        let version = self.cfg.version;
        let (expect_name, name, housekeeping) = (
            &mut self.expect_name,
            &mut self.name,
            &mut self.housekeeping,
        );
        let mut seq = Sequence {
            last_event: &mut self.last_event,
            header_since_event: &mut self.header_since_event,
            restarts: &mut self.restarts,
            last_restart: &mut self.last_restart,
            last_dead: &mut self.last_dead,
        };
        let got = self.link.next_record(out, timeout, |line, offset, w| {
            let bad = |detail: String| DriverError::Protocol {
                device: port.clone(),
                offset,
                detail,
            };
            let fields = match version {
                CosmicWatchVersion::V2 => match parse_v2(line) {
                    Ok(V2Line::Comment) => {
                        // Only the boot header has `#` lines, and the name line follows it:
                        // seen mid-run, the detector was reset.
                        *expect_name = true;
                        *seq.header_since_event = true;
                        return Ok(LineUse::Skip);
                    }
                    Ok(V2Line::Event(e)) => {
                        w.u64(e.event);
                        w.u64(e.time_ms);
                        w.u16(e.adc);
                        w.f32(e.sipm_mv);
                        w.u64(e.deadtime_ms);
                        w.f32(e.temp_c);
                        (e.event, e.time_ms as f64 / 1e3, e.deadtime_ms as f64 / 1e3)
                    }
                    // The name line follows the header, before any event.
                    Err(_) if *expect_name && is_v2_name(line) => {
                        *name = Some(String::from_utf8_lossy(line).into_owned());
                        *expect_name = false;
                        return Ok(LineUse::Skip);
                    }
                    Err(e) => return Err(bad(format!("CosmicWatch v2 line: {e}"))),
                },
                CosmicWatchVersion::V3X(cols) => match parse_v3(line, cols) {
                    Ok(V3Line::Comment) => return Ok(LineUse::Skip),
                    Ok(V3Line::Housekeeping(hk)) => {
                        housekeeping.clear();
                        let text = std::str::from_utf8(hk).unwrap_or("(not UTF-8)");
                        let mut end = text.len().min(HK_CAPACITY);
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        housekeeping.push_str(&text[..end]);
                        return Ok(LineUse::Skip);
                    }
                    Ok(V3Line::Event(e)) => {
                        w.u64(e.event);
                        w.f64(e.time_s);
                        w.u8(e.flag);
                        w.u16(e.adc);
                        w.f32(e.sipm_mv);
                        w.f64(e.deadtime_s);
                        if cols.environment {
                            w.f32(e.temp_c);
                            w.f32(e.pressure_pa);
                        }
                        if cols.motion {
                            for v in e.accel.iter().chain(&e.gyro) {
                                w.f32(*v);
                            }
                        }
                        (e.event, e.time_s, e.deadtime_s)
                    }
                    Err(e) => return Err(bad(format!("CosmicWatch v3X line: {e}"))),
                },
            };
            let (event, time_s, dead_s) = fields;
            *expect_name = false;
            // Checked here, so a refused number keeps its own line as the rejected bytes.
            let lost = sequence(&mut seq, event, offset, port)?;
            let dead_increment = (dead_s - *seq.last_dead).max(0.0);
            *seq.last_dead = dead_s;
            Ok(LineUse::Record((lost, time_s, dead_increment)))
        })?;
        let Some((_, (lost, time_s, dead_increment))) = got else {
            return Ok(ReadOutcome::Idle);
        };
        self.lost += lost;
        self.events += 1;
        Ok(ReadOutcome::Event(EventInfo {
            device_time: Some(time_s),
            device_deadtime: Some(dead_increment),
            device_lost: lost,
        }))
    }

    fn reconnect(&mut self) -> Result<bool> {
        let back = self.link.reconnect()?;
        if back {
            // A replugged detector reboots: numbering and dead time start again.
            self.last_event = None;
            self.last_dead = 0.0;
            self.expect_name = true;
            self.header_since_event = false;
        }
        Ok(back)
    }

    fn stop(&mut self) -> Result<()> {
        self.link.end_lines()
    }

    fn rejected_bytes(&self) -> &[u8] {
        self.link.rejected()
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let mut m = vec![
            ("cosmicwatch_events".to_string(), self.events.to_string()),
            (
                "cosmicwatch_lost_event_numbers".to_string(),
                self.lost.to_string(),
            ),
        ];
        if let Some(n) = &self.name {
            m.push(("cosmicwatch_name".into(), n.clone()));
        }
        m.push(("cosmicwatch_restarts".into(), self.restarts.to_string()));
        if let Some((offset, prev)) = self.last_restart {
            m.push((
                "cosmicwatch_last_restart".into(),
                format!(
                    "at byte {offset}: the detector printed its header again and numbered \
                     from the start after event {prev} (a reset or brown-out); its events \
                     are kept"
                ),
            ));
        }
        if !self.housekeeping.is_empty() {
            m.push(("cosmicwatch_housekeeping".into(), self.housekeeping.clone()));
        }
        m.extend(self.link.gap_metadata());
        m
    }
}
