//! USB discovery of PicoScopes with rusb. The build machines have no USB bus: the scan must
//! answer with a clear error or an empty list, never panic.

use daq_drivers::picoscope::usb::{is_plugged_in, scan_usb, PICO_VENDOR_ID};
use daq_drivers::Family;

#[test]
fn scan_returns_a_list_or_a_clear_error_without_panicking() {
    let result = std::panic::catch_unwind(scan_usb);
    let result = result.expect("scan_usb must not panic");
    eprintln!("scan_usb on this machine: {result:?}");
    match result {
        Ok(found) => {
            // Whatever is found is a Pico device with its bus address.
            for d in &found {
                assert_eq!(d.family, Family::PicoScope);
                assert_eq!(d.usb_id.map(|id| id.0), Some(PICO_VENDOR_ID));
                assert!(d.port.starts_with("usb:"), "{}", d.port);
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("USB scan for PicoScopes"), "{text}");
            assert!(text.contains("libusb"), "{text}");
        }
    }
    // Unplug detection by USB says the same without panicking.
    let r =
        std::panic::catch_unwind(|| is_plugged_in(0x1019)).expect("is_plugged_in must not panic");
    if let Ok(present) = r {
        assert_eq!(
            present,
            scan_usb()
                .map(|l| l.iter().any(|d| d.usb_id == Some((0x0ce9, 0x1019))))
                .unwrap_or(false)
        );
    }
}
