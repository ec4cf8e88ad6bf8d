//! Finding PicoScopes on the USB bus with rusb (vendor id 0x0ce9), without Pico's library.
//!
//! Guarantees: goes through `rusb::Context::new()` and turns every libusb failure into a
//! [`UsbScanError`]; on a machine with no USB bus the scan returns an error that says so,
//! never panics. Only reads descriptors; never opens or claims a device (Pico's library
//! does that).

use rusb::UsbContext;

use super::family::family_for_pid;
use crate::driver::{DeviceInfo, Family};

/// Pico Technology's USB vendor id.
pub const PICO_VENDOR_ID: u16 = 0x0ce9;

/// Why a USB scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum UsbScanError {
    /// libusb could not start: no USB bus or no access to it.
    #[error(
        "USB scan for PicoScopes: libusb cannot start here ({0}); this machine has no usable \
         USB bus. In a container pass the bus through (e.g. --device /dev/bus/usb); \
         otherwise use the simulator."
    )]
    NoUsb(rusb::Error),
    /// libusb started but listing devices failed.
    #[error("USB scan for PicoScopes: listing USB devices failed ({0}); check permissions on /dev/bus/usb (udev rule 95-pico.rules)")]
    List(rusb::Error),
}

/// The device a USB vendor/product id pair names, if it is a PicoScope (any family; the
/// model says when this driver has no table for its library).
pub fn scope_from_ids(vendor: u16, product: u16, bus: u8, address: u8) -> Option<DeviceInfo> {
    if vendor != PICO_VENDOR_ID {
        return None;
    }
    let model = match family_for_pid(product) {
        Some(f) => format!("PicoScope ({})", f.name),
        None => format!("Pico device 0x{product:04x} (no supported library)"),
    };
    Some(DeviceInfo {
        family: Family::PicoScope,
        model,
        serial: None,
        port: format!("usb:{bus:03}:{address:03}"),
        usb_id: Some((vendor, product)),
    })
}

/// Lists Pico devices on the USB bus. An empty list means none are plugged in.
pub fn scan_usb() -> Result<Vec<DeviceInfo>, UsbScanError> {
    let ctx = rusb::Context::new().map_err(UsbScanError::NoUsb)?;
    let devices = ctx.devices().map_err(UsbScanError::List)?;
    let mut found = Vec::new();
    for dev in devices.iter() {
        let Ok(desc) = dev.device_descriptor() else {
            continue;
        };
        if let Some(info) = scope_from_ids(
            desc.vendor_id(),
            desc.product_id(),
            dev.bus_number(),
            dev.address(),
        ) {
            found.push(info);
        }
    }
    Ok(found)
}

/// Whether a Pico device with `product` id is on the bus now (unplug detection that does
/// not need Pico's library). `Err` when USB cannot be scanned at all.
pub fn is_plugged_in(product: u16) -> Result<bool, UsbScanError> {
    Ok(scan_usb()?
        .iter()
        .any(|d| d.usb_id == Some((PICO_VENDOR_ID, product))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_family() {
        let d = scope_from_ids(0x0ce9, 0x1019, 1, 7).expect("pico");
        assert_eq!(d.model, "PicoScope (ps5000a)");
        assert_eq!(d.port, "usb:001:007");
        assert_eq!(d.usb_id, Some((0x0ce9, 0x1019)));
        assert!(scope_from_ids(0x0ce9, 0x1007, 1, 2)
            .expect("pico")
            .model
            .contains("no supported library"));
        assert!(scope_from_ids(0x04b4, 0x1019, 1, 2).is_none());
        for pid in [0x1012, 0x1201, 0x1211, 0x1213] {
            let d = scope_from_ids(0x0ce9, pid, 1, 3).expect("pico");
            assert_eq!(d.model, "PicoScope (ps3000a)", "{pid:04x}");
        }
    }
}
