//! Tests against a real PSI DRS4 evaluation board through libusb. Run with the board
//! plugged in: `cargo test -p daq-drivers --test drs4_hardware -- --ignored`.

use std::time::Duration;

use daq_drivers::drs4::protocol::{REQUIRED_FIRMWARE, USB_ID};
use daq_drivers::drs4::{Drs4, Drs4Config, Drs4TriggerSource};
use daq_drivers::usb::{scan, RusbBus, RusbTransport};
use daq_drivers::{ReadOutcome, Source};

/// The board on the real bus, opened with software triggers, with the time axis in its
/// events when `time_axis`.
fn open_soft_triggered(time_axis: bool) -> Drs4<RusbTransport> {
    let mut bus = RusbBus::new().expect("USB bus");
    let config = Drs4Config {
        trigger: Drs4TriggerSource::Software,
        time_axis,
        ..Drs4Config::default()
    };
    Drs4::open(&mut bus, config).unwrap()
}

#[test]
#[ignore = "needs a DRS4 evaluation board connected"]
fn scan_finds_the_board() {
    assert!(
        !scan(&[USB_ID]).expect("USB bus").is_empty(),
        "no DRS4 board on the bus"
    );
}

#[test]
#[ignore = "needs a DRS4 evaluation board connected"]
fn identifies_and_reads_soft_triggered_events() {
    let mut board = open_soft_triggered(true);
    assert!(board.identity().firmware >= REQUIRED_FIRMWARE);
    let mut out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
    for _ in 0..10 {
        assert!(matches!(
            board.read_event(&mut out, Duration::from_secs(1)).unwrap(),
            ReadOutcome::Event(_)
        ));
        assert!(board.last_stop_cell() < 1024);
    }
    board.stop().unwrap();
}

#[test]
#[ignore = "needs a DRS4 evaluation board connected, inputs open"]
fn measured_offsets_flatten_the_pedestal() {
    let mut board = open_soft_triggered(false);
    board.calibrate_offsets(100).unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
    assert!(matches!(
        board.read_event(&mut out, Duration::from_secs(1)).unwrap(),
        ReadOutcome::Event(_)
    ));
    let worst = out
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 0.02,
        "pedestal within 20 mV after offset calibration, worst {worst} V"
    );
}

#[test]
#[ignore = "needs a DRS4 evaluation board connected (calibrated with PSI's drsosc)"]
fn reads_the_calibration_stored_in_the_eeprom() {
    let board = open_soft_triggered(false);
    let facts = board.run_metadata();
    let used = facts
        .iter()
        .find(|(k, _)| k == "drs4.calibration")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        used.starts_with("eeprom"),
        "calibration used: '{used}'; warnings: {:?}",
        board.calibration_warnings()
    );
}
