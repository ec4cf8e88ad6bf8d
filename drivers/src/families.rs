//! The registered device families. Each family describes itself once, in its own folder, as
//! a [`FamilyInfo`] (setup name, how a scan finds it, its udev lines); [`FAMILIES`] lists
//! them, one line per family. [`Family::name`], the scan ([`scan_all`]), what
//! `daq-engine devices` says it looked for ([`usb_sought`]) and the udev rules
//! ([`udev_rules`]) read that list instead of naming families.
//!
//! Guarantees: scanning only reads descriptors and `/dev`, `/sys` (opening a port would reset
//! an Arduino); the udev rules are built from the families' own lines, in list order, and
//! are what `udev/70-daq-engine.rules` holds (a test compares). Must never: open a device.

use crate::serial::chips::{Chip, CHIPS};
use crate::{DeviceInfo, Family};

/// Everything about one family that is not its driver: what the engine, the scan and udev
/// need to know.
#[derive(Debug)]
pub struct FamilyInfo {
    /// Which family.
    pub family: Family,
    /// The name used in setups and in `daq-engine devices` (`gmc`, `line-counter`).
    pub name: &'static str,
    /// How a scan finds it.
    pub found: Found,
    /// Its paragraphs of `udev/70-daq-engine.rules` (comment, then rule lines), empty when
    /// the chips it sits behind ([`Found::Serial`]) or nothing (network) need rules.
    pub udev: &'static str,
}

/// How `daq-engine devices` finds a family's devices.
#[derive(Debug)]
pub enum Found {
    /// Behind a USB-serial chip, by the serial port scan; the first family listing the chip
    /// of a port is the guess (always "probe needed"). Their rules are the chips'.
    Serial {
        /// The chips it sits behind.
        chips: &'static [&'static Chip],
        /// How `daq-engine devices --probe PORT` recognises it ([`crate::probe`]).
        probe: SerialProbe,
    },
    /// By one shared libusb scan for these ids; `model` names what an id means.
    Usb {
        /// The family in words, as the scan's notes name it.
        what: &'static str,
        /// USB vendor and product ids.
        ids: &'static [(u16, u16)],
        /// The model an id stands for.
        model: fn(u16, u16) -> String,
    },
    /// By a scan of its own (PicoScope: every product of its vendor).
    Scan {
        /// The family and the ids it looks for, in words: `PicoScope (0ce9:*)`.
        what: &'static str,
        /// The scan; `Err` says why it could not run.
        scan: fn() -> Result<Vec<DeviceInfo>, String>,
    },
    /// Never found by a scan: `daq-engine devices --probe HOST` asks the address.
    Network,
}

/// How [`crate::probe::serial`] tells a serial family's device from the others behind the
/// same chips.
#[derive(Debug, Clone, Copy)]
pub enum SerialProbe {
    /// It prints lines unasked, at one of `bauds`: `line` names the model a line shows, or
    /// `None` for a line that is not this family's.
    Listen {
        /// The rates it may print at, most common first.
        bauds: &'static [u32],
        /// The model a line shows.
        line: fn(&[u8]) -> Option<&'static str>,
    },
    /// It answers only when asked: `ask` opens the port (at the family's own rates), asks as
    /// its driver does when it opens, and says what the device is.
    Ask(fn(&std::path::Path) -> Result<DeviceInfo, crate::DriverError>),
}

/// Every family, one line each; the order is that of the scan and of the udev rules.
pub const FAMILIES: &[&FamilyInfo] = &[
    &crate::gmc::FAMILY,
    &crate::linecounter::FAMILY,
    &crate::cosmicwatch::FAMILY,
    &crate::picoscope::FAMILY,
    &crate::hantek6022::FAMILY,
    &crate::drs4::FAMILY,
    &crate::redpitaya::FAMILY,
];

/// The registered description of a family (`None` only for a family not in [`FAMILIES`],
/// which a test rules out).
pub fn info(family: Family) -> Option<&'static FamilyInfo> {
    FAMILIES.iter().copied().find(|f| f.family == family)
}

/// What the USB ids of a serial port suggest: the first family behind a chip with these ids,
/// and what the scan says about it.
pub fn serial_guess(vendor: u16, product: u16) -> Option<(Family, &'static str)> {
    FAMILIES.iter().find_map(|f| match f.found {
        Found::Serial { chips, .. } => chips
            .iter()
            .find(|c| c.matches(vendor, product))
            .map(|c| (f.family, c.says)),
        _ => None,
    })
}

fn usb_families() -> impl Iterator<Item = (&'static FamilyInfo, &'static str)> {
    FAMILIES.iter().copied().filter_map(|f| match f.found {
        Found::Usb { what, .. } | Found::Scan { what, .. } => Some((f, what)),
        _ => None,
    })
}

/// Every connected supported device (serial ports first, then the families' own scans, then
/// the shared USB scan), and notes on scans that could not run.
pub fn scan_all() -> (Vec<DeviceInfo>, Vec<String>) {
    let mut found = crate::serial::scan();
    let mut notes = Vec::new();
    for f in FAMILIES {
        if let Found::Scan { scan, .. } = f.found {
            match scan() {
                Ok(v) => found.extend(v),
                Err(e) => notes.push(e),
            }
        }
    }
    let mut ids = Vec::new();
    let mut whats = Vec::new();
    for f in FAMILIES {
        if let Found::Usb { what, ids: i, .. } = f.found {
            ids.extend_from_slice(i);
            whats.push(what);
        }
    }
    match crate::usb::scan(&ids) {
        Ok(v) => {
            for e in v {
                let id = (e.vendor_id, e.product_id);
                let Some((family, model)) = FAMILIES.iter().find_map(|f| match f.found {
                    Found::Usb { ids, model, .. } if ids.contains(&id) => Some((f.family, model)),
                    _ => None,
                }) else {
                    continue;
                };
                found.push(DeviceInfo {
                    family,
                    model: model(id.0, id.1),
                    serial: None,
                    port: e.port(),
                    usb_id: Some(id),
                });
            }
        }
        Err(e) => notes.push(format!(
            "USB scan for {}: {e}; in a container pass the bus through \
             (--device /dev/bus/usb), otherwise use --simulate",
            whats.join(" and ")
        )),
    }
    (found, notes)
}

/// The USB devices a scan looks for, in words: `PicoScope (0ce9:*), Hantek 6022
/// (04b4:6022/602a/2020, 04b5:6022/602a, 1d50:608e) or DRS4 (04b4:1175)`.
pub fn usb_sought() -> String {
    let named: Vec<String> = usb_families()
        .map(|(f, what)| match f.found {
            Found::Usb { ids, .. } => {
                let mut vendors: Vec<(u16, Vec<String>)> = Vec::new();
                for (v, p) in ids {
                    match vendors.iter_mut().find(|(x, _)| x == v) {
                        Some((_, ps)) => ps.push(format!("{p:04x}")),
                        None => vendors.push((*v, vec![format!("{p:04x}")])),
                    }
                }
                let ids: Vec<String> = vendors
                    .iter()
                    .map(|(v, ps)| format!("{v:04x}:{}", ps.join("/")))
                    .collect();
                format!("{what} ({})", ids.join(", "))
            }
            _ => what.to_string(),
        })
        .collect();
    match named.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The head of the rules file: how to install it and why it is written as it is.
const UDEV_HEAD: &str = include_str!("udev_head.rules");

/// `udev/70-daq-engine.rules`: the head, the serial chips' rules, then each family's own
/// lines in list order.
pub fn udev_rules() -> String {
    let mut paragraphs: Vec<String> = vec![
        UDEV_HEAD.trim_end().to_string(),
        "ACTION==\"remove\", GOTO=\"daq_engine_end\"".to_string(),
        "# ---- Serial detectors (SUBSYSTEM tty; ATTRS walks up to the USB device) ----"
            .to_string(),
    ];
    paragraphs.extend(CHIPS.iter().map(|c| c.udev_rule()));
    paragraphs.push(
        "# ---- USB oscilloscopes and digitizers (SUBSYSTEM usb; libusb device nodes) ----"
            .to_string(),
    );
    paragraphs.extend(
        FAMILIES
            .iter()
            .filter(|f| !f.udev.is_empty())
            .map(|f| f.udev.trim_end().to_string()),
    );
    paragraphs.push("LABEL=\"daq_engine_end\"".to_string());
    let mut text = paragraphs.join("\n\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant of [`Family`] is registered exactly once. The `match` stops compiling
    /// when a variant is added: list the new one in `all` too.
    #[test]
    fn every_family_is_registered_once() {
        let all = [
            Family::Gmc,
            Family::LineCounter,
            Family::CosmicWatch,
            Family::PicoScope,
            Family::Hantek6022,
            Family::Drs4,
            Family::RedPitaya,
        ];
        for f in all {
            match f {
                Family::Gmc
                | Family::LineCounter
                | Family::CosmicWatch
                | Family::PicoScope
                | Family::Hantek6022
                | Family::Drs4
                | Family::RedPitaya => {}
            }
            assert_eq!(
                FAMILIES.iter().filter(|i| i.family == f).count(),
                1,
                "{f:?} must have exactly one line in FAMILIES"
            );
        }
        assert_eq!(FAMILIES.len(), all.len());
    }

    /// Every chip whose rule udev gets suggests a family, and each only one.
    #[test]
    fn every_chip_suggests_one_family() {
        for chip in CHIPS {
            let claimed = FAMILIES
                .iter()
                .filter(|f| matches!(f.found, Found::Serial { chips: c, .. } if c.iter().any(|c| std::ptr::eq(*c, *chip))))
                .count();
            assert_eq!(claimed, 1, "{chip:?}");
        }
        for f in FAMILIES {
            if let Found::Serial { chips, .. } = f.found {
                for c in chips {
                    assert!(CHIPS.iter().any(|x| std::ptr::eq(*x, *c)), "{c:?}");
                }
            }
        }
    }

    /// A family scanned by USB id has a udev rule for each of its ids, and no other.
    #[test]
    fn usb_ids_and_udev_rules_agree() {
        for f in FAMILIES {
            let Found::Usb { ids, .. } = f.found else {
                continue;
            };
            let mut in_rules = Vec::new();
            for line in f
                .udev
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let value = |attr: &str| {
                    line.split(&format!("ATTR{{{attr}}}==\""))
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_string()
                };
                let vendor = u16::from_str_radix(&value("idVendor"), 16).expect(line);
                for p in value("idProduct").split('|') {
                    in_rules.push((vendor, u16::from_str_radix(p, 16).expect(line)));
                }
            }
            let mut want = ids.to_vec();
            want.sort_unstable();
            in_rules.sort_unstable();
            assert_eq!(in_rules, want, "{}", f.name);
        }
    }

    #[test]
    fn usb_sought_names_every_usb_family_with_its_ids() {
        assert_eq!(
            usb_sought(),
            "PicoScope (0ce9:*), Hantek 6022 (04b4:6022/602a/2020, 04b5:6022/602a, \
             1d50:608e) or DRS4 (04b4:1175)"
        );
    }
}
