//! Scan for serial detector ports: `/dev/serial/by-id/*`, `/dev/ttyUSB*`, `/dev/ttyACM*`
//! and `/dev/daq/*`, with USB vendor/product ids and serial numbers read from sysfs and
//! mapped to the families that may sit behind them (the chips each family lists in its
//! [`FamilyInfo`](crate::FamilyInfo); a port behind none is a line counter's, probe needed).
//!
//! Guarantees: never opens a port (opening resets an Arduino); every guess from a USB id
//! says "probe needed", because one USB-serial chip serves many detectors. Must never:
//! claim a model it has not talked to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{DeviceInfo, Family};

fn read_hex(path: &Path) -> Option<u16> {
    let s = std::fs::read_to_string(path).ok()?;
    u16::from_str_radix(s.trim(), 16).ok()
}

/// USB ids and serial of the device behind a tty, from `<sys>/class/tty/<name>/device`,
/// walking up parents until `idVendor` is found (ttyUSB: 2 levels, ttyACM: 1).
fn usb_facts(sys: &Path, tty: &str) -> Option<(u16, u16, Option<String>)> {
    let mut dir = std::fs::canonicalize(sys.join("class/tty").join(tty).join("device")).ok()?;
    for _ in 0..5 {
        if let (Some(v), Some(p)) = (
            read_hex(&dir.join("idVendor")),
            read_hex(&dir.join("idProduct")),
        ) {
            let serial = std::fs::read_to_string(dir.join("serial"))
                .ok()
                .map(|s| s.trim().to_string());
            return Some((v, p, serial));
        }
        if !dir.pop() {
            break;
        }
    }
    None
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// USB vendor id, product id and serial number of the device behind a tty path (following
/// symlinks such as `/dev/daq/geiger-0`), from `/sys`. `None` for ptys and non-USB ports.
pub fn usb_identity(path: &Path) -> Option<(u16, u16, Option<String>)> {
    let target = std::fs::canonicalize(path).ok()?;
    let name = target.file_name()?.to_str()?;
    usb_facts(Path::new("/sys"), name)
}

/// Scans the real `/dev` and `/sys`.
pub fn scan() -> Vec<DeviceInfo> {
    scan_in(Path::new("/dev"), Path::new("/sys"))
}

/// Scans under the given roots (tests use a fake tree). One entry per tty; the port named is
/// the most stable path found (`/dev/daq/…` over `/dev/serial/by-id/…` over `/dev/ttyUSB0`).
pub fn scan_in(dev: &Path, sys: &Path) -> Vec<DeviceInfo> {
    // tty name -> (stability rank, path)
    let mut ports: BTreeMap<String, (u8, PathBuf)> = BTreeMap::new();
    let mut offer = |rank: u8, path: PathBuf| {
        let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let Some(name) = target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            return;
        };
        let e = ports.entry(name).or_insert((rank, path.clone()));
        if rank > e.0 {
            *e = (rank, path);
        }
    };
    for p in list(dev) {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if n.starts_with("ttyUSB") || n.starts_with("ttyACM") {
            offer(0, p);
        }
    }
    for p in list(&dev.join("serial/by-id")) {
        offer(1, p);
    }
    for p in list(&dev.join("daq")) {
        offer(2, p);
    }
    ports
        .into_iter()
        .map(|(tty, (_, path))| {
            let facts = usb_facts(sys, &tty);
            let (family, model) = match facts
                .as_ref()
                .and_then(|(v, p, _)| crate::families::serial_guess(*v, *p))
            {
                Some((f, m)) => (f, m.to_string()),
                None => (
                    Family::LineCounter,
                    match &facts {
                        Some((v, p, _)) => {
                            format!("unknown USB serial {v:04x}:{p:04x} - probe needed")
                        }
                        None => "serial port without USB ids - probe needed".to_string(),
                    },
                ),
            };
            DeviceInfo {
                family,
                model,
                serial: facts.as_ref().and_then(|f| f.2.clone()),
                port: path.display().to_string(),
                usb_id: facts.as_ref().map(|(v, p, _)| (*v, *p)),
            }
        })
        .collect()
}

/// One line per device, or a clear statement that none was found and where we looked.
pub fn scan_summary(devices: &[DeviceInfo]) -> String {
    if devices.is_empty() {
        return "no serial detector ports found (looked in /dev/serial/by-id, /dev/ttyUSB*, \
                /dev/ttyACM*, /dev/daq); plug the detector in, check `dmesg` for a new tty, \
                and on Ubuntu with a CH340 (1a86:7523) check that brltty did not take it"
            .to_string();
    }
    let mut s = String::new();
    for d in devices {
        let id = d
            .usb_id
            .map(|(v, p)| format!("{v:04x}:{p:04x}"))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{}  {}  usb {}  serial {}  driver {}\n",
            d.port,
            d.model,
            id,
            d.serial.as_deref().unwrap_or("-"),
            d.family.name()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("daq-scan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn empty_tree_finds_nothing_and_says_so() {
        let root = tmp("empty");
        let found = scan_in(&root.join("dev"), &root.join("sys"));
        assert!(found.is_empty());
        assert!(scan_summary(&found).starts_with("no serial detector ports found"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn ch340_behind_by_id_and_daq_link_is_one_gmc_candidate() {
        let root = tmp("ch340");
        let (dev, sys) = (root.join("dev"), root.join("sys"));
        // sysfs: usb device dir with ids, interface, port dir; class/tty/ttyUSB0/device -> port.
        let usbdev = sys.join("devices/usb1/1-1");
        let port = usbdev.join("1-1:1.0/ttyUSB0");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(usbdev.join("idVendor"), "1a86\n").unwrap();
        std::fs::write(usbdev.join("idProduct"), "7523\n").unwrap();
        std::fs::create_dir_all(sys.join("class/tty/ttyUSB0")).unwrap();
        std::os::unix::fs::symlink(&port, sys.join("class/tty/ttyUSB0/device")).unwrap();
        // sysfs for an ACM device without a known id.
        let acm = sys.join("devices/usb1/1-2");
        std::fs::create_dir_all(acm.join("1-2:1.0")).unwrap();
        std::fs::write(acm.join("idVendor"), "2e8a\n").unwrap();
        std::fs::write(acm.join("idProduct"), "000a\n").unwrap();
        std::fs::write(acm.join("serial"), "E6614C311B\n").unwrap();
        std::fs::create_dir_all(sys.join("class/tty/ttyACM0")).unwrap();
        std::os::unix::fs::symlink(acm.join("1-2:1.0"), sys.join("class/tty/ttyACM0/device"))
            .unwrap();
        // /dev
        std::fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        std::fs::create_dir_all(dev.join("daq")).unwrap();
        std::fs::write(dev.join("ttyUSB0"), "").unwrap();
        std::fs::write(dev.join("ttyACM0"), "").unwrap();
        std::os::unix::fs::symlink(
            dev.join("ttyUSB0"),
            dev.join("serial/by-id/usb-1a86_USB_Serial-if00"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dev.join("ttyUSB0"), dev.join("daq/geiger-0")).unwrap();

        let found = scan_in(&dev, &sys);
        assert_eq!(found.len(), 2, "{found:?}");
        let acm0 = &found[0];
        assert_eq!(acm0.family, Family::CosmicWatch);
        assert_eq!(acm0.usb_id, Some((0x2e8a, 0x000a)));
        assert_eq!(acm0.serial.as_deref(), Some("E6614C311B"));
        let usb0 = &found[1];
        assert_eq!(usb0.family, Family::Gmc);
        assert_eq!(usb0.usb_id, Some((0x1a86, 0x7523)));
        assert!(usb0.model.contains("probe needed"));
        assert_eq!(usb0.port, dev.join("daq/geiger-0").display().to_string());
        assert_eq!(scan_summary(&found).lines().count(), 2);
        std::fs::remove_dir_all(root).unwrap();
    }
}
