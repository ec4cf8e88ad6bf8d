//! The device importer allocates nothing per event: a CosmicWatch on a pty and the Red
//! Pitaya's MCPHA and SCPI drivers over loopback TCP, read through `DeviceImporter::next`,
//! counting allocations made by the reading thread only (the simulators run in their own
//! threads and may allocate as they like).

use daq_drivers::cosmicwatch::{self, CosmicWatchConfig, CosmicWatchSimConfig};
use daq_engine::devices::DeviceImporter;
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{EventMut, Importer, Produced};
use std::time::{Duration, Instant};

mod alloc_count;
use alloc_count::allocations_in;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

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
    // The sink holds what the driver's layout says (v2: event, time_ms, adc, sipm_mv,
    // deadtime_ms, temp_c).
    let fields = &daq_drivers::Source::layout(&source).fields;
    let dtype = Dtype::parse(fields.iter().map(|f| (f.name.as_str(), f.numpy_type))).unwrap();
    assert_eq!(dtype.record_size(), 8 + 8 + 2 + 4 + 8 + 4);
    assert_eq!(
        allocations_reading(("device.cosmicwatch", "det"), Box::new(source), &dtype, 200),
        0,
        "allocations while reading 200 events"
    );
}

/// The Red Pitaya importer worker of the trace tests.
const RP: (&str, &str) = ("device.redpitaya", "rp");

/// Reads 20 events to warm up, then counts the allocations of this thread over `n` more
/// events from `source` (records of `dtype`) as the worker `(function, name)`.
fn allocations_reading(
    (function, name): (&'static str, &'static str),
    source: Box<dyn daq_drivers::Source>,
    dtype: &Dtype,
    n: u64,
) -> u64 {
    let mut data = vec![0u8; source.layout().event_size()];
    let mut imp = DeviceImporter::new(function, name, source, Vec::new(), true).unwrap();
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
    allocations_in(|| read(&mut imp, n))
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
    let mcpha = |mode: McphaMode| -> Box<dyn daq_drivers::Source> {
        Box::new(
            redpitaya::open(McphaConfig {
                scope: ScopeConfig {
                    address: sim.addr().to_string(),
                    ..ScopeConfig::default()
                },
                mode,
                ..McphaConfig::default()
            })
            .unwrap(),
        )
    };
    let stream = McphaConfig::default().mode;
    assert_eq!(
        allocations_reading(RP, mcpha(stream), &dtype, 300),
        0,
        "mcpha stream"
    );
    // The upstream way: a status request per poll, then the trace.
    let poll = McphaMode::Traces(TraceAcquisition::Poll {
        poll: Duration::from_millis(1),
    });
    assert_eq!(
        allocations_reading(RP, mcpha(poll), &dtype, 100),
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
    assert_eq!(allocations_reading(RP, Box::new(s), &dtype, 100), 0, "scpi");
}
