//! The device importer allocates nothing per event: a CosmicWatch on a pty and the Red
//! Pitaya's MCPHA and SCPI drivers over loopback TCP, read through `DeviceImporter::next`,
//! counting allocations made by the reading thread only (the simulators run in their own
//! threads and may allocate as they like).

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

/// Reads 20 events to warm up, then counts the allocations of this thread over `n` more
/// events from `source` (records of `dtype`).
fn allocations_reading(source: Box<dyn daq_drivers::Source>, dtype: &Dtype, n: u64) -> u64 {
    let mut data = vec![0u8; source.layout().event_size()];
    let mut imp = DeviceImporter::new("device.redpitaya", "rp", source, Vec::new(), true).unwrap();
    let mut meta = Metadata::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = |imp: &mut DeviceImporter, n: u64| {
        let target = imp.events() + n;
        while imp.events() < target {
            assert!(Instant::now() < deadline, "simulator too slow");
            let mut ev = EventMut {
                data: &mut data,
                meta: &mut meta,
                dtype,
            };
            let p = imp.next(&mut ev).unwrap();
            assert_ne!(p, Produced::End);
        }
    };
    read(&mut imp, 20);
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    read(&mut imp, n);
    COUNTING.with(|c| c.set(false));
    COUNT.with(|c| c.get())
}

/// Both Red Pitaya transports read traces into the slot without allocating: the MCPHA
/// stream (code 31 sets, the dropped tail) and SCPI (arm, polls, two binary blocks).
#[test]
fn red_pitaya_traces_allocate_nothing_per_event() {
    use daq_drivers::redpitaya::scpi::{self, ScpiConfig, ScpiSimConfig, SimScpi};
    use daq_drivers::redpitaya::{
        self, McphaConfig, McphaMode, McphaSimConfig, ScopeConfig, SimMcpha, TraceAcquisition,
    };
    let dtype = Dtype::parse([("IN1", "i2"), ("IN2", "i2")]).unwrap();
    let sim = SimMcpha::start(McphaSimConfig {
        paced: false,
        transcript: false,
        ..McphaSimConfig::default()
    })
    .unwrap();
    let m = redpitaya::open(McphaConfig {
        scope: ScopeConfig {
            address: sim.addr().to_string(),
            ..ScopeConfig::default()
        },
        ..McphaConfig::default()
    })
    .unwrap();
    assert_eq!(
        allocations_reading(Box::new(m), &dtype, 300),
        0,
        "mcpha stream"
    );
    // The upstream way: a status request per poll, then the trace.
    let m = redpitaya::open(McphaConfig {
        scope: ScopeConfig {
            address: sim.addr().to_string(),
            ..ScopeConfig::default()
        },
        mode: McphaMode::Traces(TraceAcquisition::Poll {
            poll: Duration::from_millis(1),
        }),
        ..McphaConfig::default()
    })
    .unwrap();
    assert_eq!(
        allocations_reading(Box::new(m), &dtype, 100),
        0,
        "mcpha poll"
    );
    let sim = SimScpi::start(ScpiSimConfig {
        paced: false,
        transcript: false,
        ..ScpiSimConfig::default()
    })
    .unwrap();
    let s = scpi::open_scpi(ScpiConfig {
        scope: ScopeConfig {
            address: sim.addr().to_string(),
            ..ScopeConfig::default()
        },
        ..ScpiConfig::default()
    })
    .unwrap();
    assert_eq!(allocations_reading(Box::new(s), &dtype, 100), 0, "scpi");
}
