//! Tests that need a real PicoScope and Pico's library in /opt/picoscope/lib (or on the
//! OS search path). Run with `cargo test -p daq-drivers --test picoscope_hardware -- --ignored`
//! and a 5000A (or, for the second test, a 2000A) scope plugged in, signal on channel A.

use std::time::Duration;

use daq_drivers::picoscope::{
    usb::scan_usb, Acquisition, PicoScope, PicoScopeConfig, SampleFormat, ThresholdDirection,
    TriggerConfig, PS2000A, PS5000A,
};
use daq_drivers::{ReadOutcome, Source};

fn auto_triggered(mut c: PicoScopeConfig) -> PicoScopeConfig {
    if let Acquisition::RapidBlock {
        ref mut trigger,
        ref mut captures_per_run,
        ..
    } = c.acquisition
    {
        *captures_per_run = 10;
        *trigger = Some(TriggerConfig {
            channel: 0,
            level_v: -0.05,
            direction: ThresholdDirection::Falling,
            delay_samples: 0,
            auto_trigger_ms: 100,
        });
    }
    c.format = SampleFormat::Volts;
    c
}

fn read_twenty(mut scope: PicoScope) {
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().expect("start");
    let mut events = 0;
    for _ in 0..200 {
        if let ReadOutcome::Event(_) = scope
            .read_capture(&mut out, Duration::from_secs(2))
            .expect("read")
        {
            events += 1;
            if events == 20 {
                break;
            }
        }
    }
    assert_eq!(events, 20, "auto-trigger guarantees captures");
    scope.stop_capture().expect("stop");
}

#[test]
#[ignore = "needs a PicoScope connected"]
fn ps5000a_rapid_block_on_hardware() {
    let scope = PicoScope::open(auto_triggered(PicoScopeConfig::muon_telescope(&PS5000A)))
        .expect("open 5000A");
    assert!(scope.variant().starts_with('5'), "{}", scope.variant());
    read_twenty(scope);
}

#[test]
#[ignore = "needs a PicoScope connected"]
fn ps2000a_rapid_block_on_hardware() {
    let mut c = auto_triggered(PicoScopeConfig::muon_telescope(&PS2000A));
    c.channels[2].enabled = false;
    c.channels[3].enabled = false;
    let scope = PicoScope::open(c).expect("open 2000A");
    read_twenty(scope);
}

#[test]
#[ignore = "needs a PicoScope connected"]
fn usb_scan_finds_the_scope() {
    let found = scan_usb().expect("USB bus present");
    assert!(!found.is_empty(), "no device with vendor id 0x0ce9");
}
