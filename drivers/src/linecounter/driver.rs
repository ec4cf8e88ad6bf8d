//! The line-counter driver: reads CRLF lines, parses them by the configured format, writes one
//! record per reading.
//!
//! Records: MightyOhm `cps: u4, cpm: u4, usv_per_hr: f4, mode: u1` (0 SLOW, 1 FAST, 2 INST);
//! GC10 `cpm: u4`; grammar: its fields in order (`counts: u4`, `pulse: u8`,
//! `device_time: f8`). Guarantees: banner and comment lines produce no event; a line that does
//! not parse is a [`DriverError::Protocol`] with its byte offset, never a zero count; so is a
//! last line without its line end at the stop or a disconnect, even one that parses (it may
//! be cut short: `0.1` of `0.11`). The reading loop allocates nothing. Must never: publish a
//! partially written record as an event.

use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{parse_gc10, parse_mightyohm, LineGrammar, MightyOhmLine};
use crate::driver::Result;
use crate::serial::{Backoff, LineUse, PortSettings, SerialLink};
use crate::{DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Source};

/// Which line format the counter prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// MightyOhm kit (9600 baud).
    MightyOhm,
    /// NetIO GC10 (9600 baud; GC10next 115200).
    Gc10,
    /// An Arduino-style sketch described by a grammar.
    Grammar(LineGrammar),
}

/// Settings of a line counter (setup keys map onto these fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineCounterConfig {
    /// Serial port path.
    pub path: PathBuf,
    /// Baud rate (MightyOhm and GC10: 9600).
    pub baud: u32,
    /// Line format.
    pub format: LineFormat,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl Default for LineCounterConfig {
    fn default() -> Self {
        LineCounterConfig {
            path: PathBuf::from("/dev/ttyUSB0"),
            baud: 9600,
            format: LineFormat::MightyOhm,
            backoff: Backoff::default(),
        }
    }
}

/// An open line counter.
pub struct LineCounter {
    cfg: LineCounterConfig,
    link: SerialLink,
    info: DeviceInfo,
    layout: EventLayout,
    banner_seen: bool,
}

/// Opens a line counter. Nothing is sent to the device.
pub fn open(config: LineCounterConfig) -> Result<LineCounter, DriverError> {
    let device = config.path.display().to_string();
    let (model, fields): (&str, Vec<(&'static str, &'static str)>) = match &config.format {
        LineFormat::MightyOhm => (
            "MightyOhm Geiger kit",
            vec![
                ("cps", "u4"),
                ("cpm", "u4"),
                ("usv_per_hr", "f4"),
                ("mode", "u1"),
            ],
        ),
        LineFormat::Gc10 => ("NetIO GC10", vec![("cpm", "u4")]),
        LineFormat::Grammar(g) => {
            g.validate().map_err(|detail| DriverError::Config {
                device: device.clone(),
                detail,
            })?;
            ("Arduino-style line counter", g.record_fields().collect())
        }
    };
    let mut link = SerialLink::open(PortSettings {
        path: config.path.clone(),
        baud: config.baud,
    })?;
    link.set_backoff(config.backoff);
    Ok(LineCounter {
        info: DeviceInfo::on_serial_port(Family::LineCounter, model, &config.path),
        layout: EventLayout::of(fields, 1),
        banner_seen: false,
        link,
        cfg: config,
    })
}

impl LineCounter {
    /// The serial link (for its counters).
    pub fn link(&self) -> &SerialLink {
        &self.link
    }
}

impl Source for LineCounter {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        let (port, format, banner_seen) =
            (&self.info.port, &self.cfg.format, &mut self.banner_seen);
        let got = self.link.next_record(out, timeout, |line, offset, w| {
            let bad = |detail: String| DriverError::Protocol {
                device: port.clone(),
                offset,
                detail,
            };
            let mut info = EventInfo::default();
            match format {
                LineFormat::MightyOhm => match parse_mightyohm(line) {
                    Ok(MightyOhmLine::Banner) => {
                        *banner_seen = true;
                        return Ok(LineUse::Skip);
                    }
                    Ok(MightyOhmLine::Reading(r)) => {
                        w.u32(r.cps);
                        w.u32(r.cpm);
                        w.f32(r.usv_centi as f32 / 100.0);
                        w.u8(r.mode as u8);
                    }
                    Err(e) => return Err(bad(format!("MightyOhm line: {e}"))),
                },
                LineFormat::Gc10 => match parse_gc10(line) {
                    Ok(cpm) => w.u32(cpm),
                    Err(e) => return Err(bad(format!("GC10 line: {e}"))),
                },
                LineFormat::Grammar(g) => match g.parse(line) {
                    Ok(None) => return Ok(LineUse::Skip),
                    Ok(Some(r)) => {
                        for f in &g.fields {
                            use super::protocol::GrammarField as F;
                            match f {
                                F::Counts => w.u32(r.counts.unwrap_or_default()),
                                F::Pulse => w.u64(r.pulse.unwrap_or_default()),
                                F::TimeS | F::TimeMs | F::TimeUs => {
                                    w.f64(r.time_s.unwrap_or_default())
                                }
                                F::Skip => {}
                            }
                        }
                        info.device_time = r.time_s;
                    }
                    Err(e) => return Err(bad(format!("line grammar: {e}"))),
                },
            }
            Ok(LineUse::Record(info))
        })?;
        Ok(got.map_or(ReadOutcome::Idle, |(_, info)| ReadOutcome::Event(info)))
    }

    fn reconnect(&mut self) -> Result<bool> {
        self.link.reconnect()
    }

    fn stop(&mut self) -> Result<()> {
        self.link.end_lines()
    }

    fn rejected_bytes(&self) -> &[u8] {
        self.link.rejected()
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let mut m = vec![("line_format".to_string(), format!("{:?}", self.cfg.format))];
        if matches!(self.cfg.format, LineFormat::MightyOhm) {
            m.push(("mightyohm_banner_seen".into(), self.banner_seen.to_string()));
        }
        m.extend(self.link.gap_metadata());
        m
    }
}
