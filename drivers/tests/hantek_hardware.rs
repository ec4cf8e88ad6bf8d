//! Tests against a real Hantek 6022BE/BL through libusb. Run with the scope plugged in:
//! `HANTEK_FIRMWARE=/usr/share/sigrok-firmware/fx2lafw-hantek-6022be.fw \
//!  cargo test -p daq-drivers --test hantek_hardware -- --ignored`
//! (the firmware is only needed when the scope is cold, i.e. just plugged in).

use std::time::Duration;

use daq_drivers::hantek6022::protocol::USB_IDS;
use daq_drivers::hantek6022::{Hantek6022, HantekConfig, SampleFormat};
use daq_drivers::usb::{scan, RusbBus};
use daq_drivers::{ReadOutcome, Source};

fn config() -> HantekConfig {
    HantekConfig {
        firmware_path: std::env::var_os("HANTEK_FIRMWARE").map(Into::into),
        ..HantekConfig::default()
    }
}

#[test]
#[ignore = "needs a Hantek 6022 connected"]
fn scan_finds_the_scope() {
    let found = scan(&USB_IDS).expect("USB bus");
    assert!(!found.is_empty(), "no Hantek 6022 on the bus");
}

#[test]
#[ignore = "needs a Hantek 6022 connected"]
fn streams_free_running_events_without_starving_the_reader() {
    let mut bus = RusbBus::new().expect("USB bus");
    let mut scope = Hantek6022::open(
        &mut bus,
        HantekConfig {
            format: SampleFormat::Raw,
            ..config()
        },
    )
    .unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    let mut events = 0;
    while events < 2000 {
        match scope.read_event(&mut out, Duration::from_secs(2)).unwrap() {
            ReadOutcome::Event(_) => events += 1,
            other => panic!("after {events} events: {other:?}"),
        }
    }
    scope.stop().unwrap();
    assert_eq!(events, 2000);
    let starved = scope
        .counters()
        .starved
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        starved, 0,
        "reader waited for buffers {starved} times: possible gaps"
    );
}

#[test]
#[ignore = "needs a Hantek 6022 connected"]
fn restarts_after_stop() {
    let mut bus = RusbBus::new().expect("USB bus");
    let mut scope = Hantek6022::open(&mut bus, config()).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    for _ in 0..3 {
        scope.start().unwrap();
        assert!(matches!(
            scope.read_event(&mut out, Duration::from_secs(2)).unwrap(),
            ReadOutcome::Event(_)
        ));
        scope.stop().unwrap();
    }
}
