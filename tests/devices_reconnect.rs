//! A serial detector unplugged in the middle of a run, at the Importer level: the importer
//! sees the hang-up, waits for the device with the driver's backoff, goes on reading when it
//! is plugged in again, and records the gap. (The end-to-end runs have no hook to pull the
//! plug of a simulator inside a worker process, so this drives the same `DeviceImporter`
//! the engine builds, in-process.)

use daq_drivers::linecounter::{self, LineCounterConfig, LineFormat, LineSimConfig, SimFormat};
use daq_drivers::serial::Backoff;
use daq_engine::devices::DeviceImporter;
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{EventMut, Importer, Produced};
use std::time::{Duration, Instant};

fn next(imp: &mut DeviceImporter, data: &mut [u8], dtype: &Dtype) -> Produced {
    let mut meta = Metadata::default();
    let mut ev = EventMut {
        data,
        meta: &mut meta,
        dtype,
    };
    let p = imp.next(&mut ev).expect("importer error");
    if p == Produced::Event {
        assert!(meta.timestamp > 1.6e9, "host wall clock stamped");
    }
    p
}

#[test]
fn unplugged_counter_comes_back_and_the_gap_is_recorded() {
    let (mut sim, path) = linecounter::simulate(LineSimConfig {
        format: SimFormat::Gc10,
        cps: 5.0,
        seed: 2,
        second: Duration::from_millis(10),
    })
    .unwrap();
    let source = linecounter::open(LineCounterConfig {
        path,
        baud: 9600,
        format: LineFormat::Gc10,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    })
    .unwrap();
    let mut imp =
        DeviceImporter::new("device.gc10", "counter", Box::new(source), Vec::new(), true).unwrap();
    let dtype = Dtype::parse([("cpm", "u4")]).unwrap();
    let mut data = [0u8; 4];
    let deadline = Instant::now() + Duration::from_secs(10);
    while imp.events() < 5 {
        assert!(Instant::now() < deadline, "no events before the unplug");
        next(&mut imp, &mut data, &dtype);
    }
    sim.unplug();
    while !imp.is_disconnected() {
        assert!(Instant::now() < deadline, "the unplug was never seen");
        next(&mut imp, &mut data, &dtype);
    }
    let before = imp.events();
    // Gone for a while: the importer keeps returning Idle, never an error.
    let gone = Instant::now();
    while gone.elapsed() < Duration::from_millis(200) {
        assert_eq!(next(&mut imp, &mut data, &dtype), Produced::Idle);
    }
    assert!(imp.is_disconnected());
    assert_eq!(imp.events(), before);
    sim.replug().unwrap();
    while imp.events() < before + 5 {
        assert!(Instant::now() < deadline, "no events after the replug");
        next(&mut imp, &mut data, &dtype);
    }
    assert_eq!(imp.gaps().len(), 1);
    let gap = &imp.gaps()[0];
    assert_eq!(gap.events_before, before);
    assert!(gap.seconds >= 0.2, "{gap:?}");
    let meta = imp.run_metadata();
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {meta:?}"))
    };
    assert_eq!(get("device.gaps"), "1");
    assert!(get("device.gap.0").contains(&format!("{before} events before")));
    assert_eq!(get("disconnects"), "1");
    assert_eq!(get("reconnects"), "1");
}

#[test]
fn reconnect_false_stops_with_the_driver_error() {
    let (mut sim, path) = linecounter::simulate(LineSimConfig {
        format: SimFormat::Gc10,
        cps: 5.0,
        seed: 3,
        second: Duration::from_millis(10),
    })
    .unwrap();
    let source = linecounter::open(LineCounterConfig {
        path,
        format: LineFormat::Gc10,
        ..LineCounterConfig::default()
    })
    .unwrap();
    let mut imp = DeviceImporter::new(
        "device.gc10",
        "counter",
        Box::new(source),
        Vec::new(),
        false,
    )
    .unwrap();
    let dtype = Dtype::parse([("cpm", "u4")]).unwrap();
    let mut data = [0u8; 4];
    let deadline = Instant::now() + Duration::from_secs(10);
    while imp.events() < 2 {
        assert!(Instant::now() < deadline);
        next(&mut imp, &mut data, &dtype);
    }
    sim.unplug();
    let err = loop {
        assert!(Instant::now() < deadline, "the unplug was never reported");
        let mut meta = Metadata::default();
        let mut ev = EventMut {
            data: &mut data,
            meta: &mut meta,
            dtype: &dtype,
        };
        if let Err(e) = imp.next(&mut ev) {
            break e;
        }
    };
    assert!(err.to_string().contains("disconnected"), "{err}");
}
