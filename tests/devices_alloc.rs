//! The device importer allocates nothing per event: a CosmicWatch on a pty read through
//! `DeviceImporter::next`, counting allocations made by the reading thread only (the
//! simulator runs in its own thread and may allocate as it likes).

use daq_drivers::cosmicwatch::{self, CosmicWatchConfig, CosmicWatchSimConfig};
use daq_engine::devices::DeviceImporter;
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{EventMut, Importer, Produced};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only bumps a thread-local counter besides.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = COUNT.try_with(|n| n.set(n.get() + 1));
            }
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn reading_events_allocates_nothing() {
    let (_sim, path) = cosmicwatch::simulate(CosmicWatchSimConfig {
        rate: 2000.0,
        seed: 5,
        ..CosmicWatchSimConfig::default()
    })
    .unwrap();
    let source = cosmicwatch::open(CosmicWatchConfig {
        path,
        ..CosmicWatchConfig::default()
    })
    .unwrap();
    let mut imp = DeviceImporter::new(
        "device.cosmicwatch",
        "det",
        Box::new(source),
        Vec::new(),
        true,
    )
    .unwrap();
    let dtype = Dtype::parse([
        ("event", "u8"),
        ("time_ms", "u8"),
        ("adc", "u2"),
        ("sipm_mv", "f4"),
        ("deadtime_ms", "u8"),
        ("temp_c", "f4"),
    ])
    .unwrap();
    let mut data = vec![0u8; dtype.record_size()];
    let mut meta = Metadata::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = |imp: &mut DeviceImporter, n: u64| {
        let target = imp.events() + n;
        while imp.events() < target {
            assert!(Instant::now() < deadline, "simulator too slow");
            let mut ev = EventMut {
                data: &mut data,
                meta: &mut meta,
                dtype: &dtype,
            };
            let p = imp.next(&mut ev).unwrap();
            assert_ne!(p, Produced::End);
        }
    };
    // Warm up: the header, the name line, first buffer fills.
    read(&mut imp, 20);
    COUNTING.with(|c| c.set(true));
    read(&mut imp, 200);
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        COUNT.with(|n| n.get()),
        0,
        "allocations while reading 200 events"
    );
}
