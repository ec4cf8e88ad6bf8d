//! `daq-engine devices --probe PORT`: which family's device is behind a serial port. Several
//! families sit behind the same USB-serial chips, so the scan can only guess ("probe
//! needed"); the probe opens the one port the user named and finds out.
//!
//! How: first it listens, because most serial counters print unasked: at each rate a
//! [`SerialProbe::Listen`] family names, for at most the listening time, each line is shown
//! to those families' recognisers; two lines of the same model (or one by the end) decide.
//! Only when nothing was recognised does it ask, as each [`SerialProbe::Ask`] family's
//! driver does when it opens (a GMC's `<GETVER>>`), so a line printer is never written to.
//!
//! Guarantees: every failure says what was heard at each rate and what was asked. Must
//! never: open any port but the one given, or send bytes before every listener has had its
//! time.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::families::{SerialProbe, FAMILIES};
use crate::serial::{PortSettings, SerialLink};
use crate::{DeviceInfo, FamilyInfo, Found};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The device: its family and model (and serial number, when it said one).
    pub info: DeviceInfo,
    /// How it was recognised: the line heard and at which rate, or what it answered.
    pub evidence: String,
}

/// Why the probe found nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The port could not be opened (or vanished): nothing was heard or asked.
    #[error(transparent)]
    Port(#[from] crate::DriverError),
    /// Something may be there, but no family recognised it: what each rate heard and what
    /// each question got, joined by "; ".
    #[error("no supported serial device recognised: {0}")]
    NotRecognised(String),
}

/// Listens on `path`, then asks (see the module comment), waiting at most `listen` at each
/// rate.
pub fn serial(path: &Path, listen: Duration) -> Result<Probed, ProbeError> {
    let mut said = Vec::new();
    for baud in listen_bauds() {
        match listen_at(path, baud, listen) {
            Ok(Heard::Recognised(p)) => return Ok(p),
            Ok(Heard::Nothing { lines, first }) => said.push(match first {
                None => format!("{baud} baud: no whole line in {listen:?}"),
                Some(l) => format!(
                    "{baud} baud: {lines} line(s), none recognised (first: {:?})",
                    String::from_utf8_lossy(&l)
                ),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    for f in FAMILIES {
        if let Found::Serial {
            probe: SerialProbe::Ask(ask),
            ..
        } = f.found
        {
            match ask(path) {
                Ok(info) => {
                    let evidence = format!("answered as a {} counter: {}", f.name, info.model);
                    return Ok(Probed { info, evidence });
                }
                Err(e) => said.push(format!("asked as a {} counter: {e}", f.name)),
            }
        }
    }
    Err(ProbeError::NotRecognised(said.join("; ")))
}

/// A line's model, as a [`SerialProbe::Listen`] family sees it.
type See = fn(&[u8]) -> Option<&'static str>;

/// The families that print unasked, in the families' order, with their rates.
fn listeners() -> impl Iterator<Item = (&'static FamilyInfo, &'static [u32], See)> {
    FAMILIES.iter().copied().filter_map(|f| match f.found {
        Found::Serial {
            probe: SerialProbe::Listen { bauds, line },
            ..
        } => Some((f, bauds, line)),
        _ => None,
    })
}

/// The rates the listening families print at, each once, in the families' order.
fn listen_bauds() -> Vec<u32> {
    let mut bauds = Vec::new();
    for (_, b, _) in listeners() {
        for &baud in b {
            if !bauds.contains(&baud) {
                bauds.push(baud);
            }
        }
    }
    bauds
}

/// What listening at one rate gave.
enum Heard {
    /// A family recognised the lines.
    Recognised(Probed),
    /// No family did: how many whole lines came, and the first of them.
    Nothing {
        lines: usize,
        first: Option<Vec<u8>>,
    },
}

/// The first family listening at `baud` that sees a model in `line`, and that model.
fn recognise(baud: u32, line: &[u8]) -> Option<(&'static FamilyInfo, &'static str)> {
    listeners()
        .filter(|(_, bauds, _)| bauds.contains(&baud))
        .find_map(|(f, _, see)| see(line).map(|model| (f, model)))
}

fn listen_at(path: &Path, baud: u32, listen: Duration) -> Result<Heard, crate::DriverError> {
    let mut link = SerialLink::open(PortSettings {
        path: path.to_path_buf(),
        baud,
    })?;
    let deadline = Instant::now() + listen;
    let mut lines = 0;
    let mut first = None;
    // The first recognised line (a second one of the same model ends the listening).
    let mut seen: Option<(&'static FamilyInfo, &'static str, Vec<u8>)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let line = match link.read_line(left) {
            Ok(Some((_, line))) => line,
            Ok(None) => break,
            // A run of bytes without a line end (a wrong rate, a binary heartbeat): skipped.
            Err(crate::DriverError::Protocol { .. }) => continue,
            Err(e) => return Err(e),
        };
        lines += 1;
        if first.is_none() {
            first = Some(line.to_vec());
        }
        let Some((family, model)) = recognise(baud, line) else {
            continue;
        };
        match &seen {
            Some((f, m, _)) if std::ptr::eq(*f, family) && *m == model => break,
            Some(_) => {}
            None => seen = Some((family, model, line.to_vec())),
        }
    }
    let Some((family, model, line)) = seen else {
        return Ok(Heard::Nothing { lines, first });
    };
    Ok(Heard::Recognised(Probed {
        info: DeviceInfo {
            family: family.family,
            model: model.to_string(),
            serial: None,
            port: path.display().to_string(),
            usb_id: crate::serial::usb_identity(path).map(|(v, p, _)| (v, p)),
        },
        evidence: format!(
            "printed at {baud} baud: {:?}",
            String::from_utf8_lossy(&line)
        ),
    }))
}
