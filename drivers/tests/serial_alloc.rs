//! The reading loop of every serial driver allocates nothing: a counting global allocator
//! counts allocations made by the test thread while it reads events (and idles) from each
//! simulator. The simulator threads may allocate; they are not counted.

#[path = "../../tests/alloc_count/mod.rs"]
mod alloc_count;
mod common;

use std::time::Duration;

use alloc_count::allocations_in;
use daq_drivers::cosmicwatch::{
    CosmicWatchConfig, CosmicWatchSimConfig, CosmicWatchVersion, SimVersion, V3Columns,
};
use daq_drivers::gmc::{Gmc, GmcConfig, GmcMode, GmcModel, GmcSimConfig};
use daq_drivers::linecounter::{self, LineCounterConfig, LineSimConfig, SimFormat};
use daq_drivers::serial::SimulatorHandle;
use daq_drivers::{ReadOutcome, Source};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Reads `n` events (after 5 to warm up) plus `idles` Idle outcomes with a short timeout;
/// returns the allocations the reads made.
fn allocations_while_reading(dev: &mut dyn Source, n: usize, idle_reads: usize) -> u64 {
    let mut out = vec![0u8; dev.layout().event_size()];
    let mut read = |count: usize, out: &mut [u8]| {
        let mut got = 0;
        let mut idle = 0;
        while got < count {
            match dev.read_event(out, Duration::from_millis(200)).unwrap() {
                ReadOutcome::Event(_) => got += 1,
                _ => {
                    idle += 1;
                    assert!(idle < 50);
                }
            }
        }
    };
    read(5, &mut out);
    let reading = allocations_in(|| read(n, &mut out));
    // Read with a tiny timeout until `idle_reads` Idle outcomes were seen (a backlog of
    // events is drained first; those reads count too).
    let idling = allocations_in(|| {
        let mut idles = 0;
        let mut tries = 0;
        while idles < idle_reads {
            tries += 1;
            assert!(tries < 100_000, "no idle read happened");
            if let ReadOutcome::Idle = dev.read_event(&mut out, Duration::from_micros(1)).unwrap() {
                idles += 1;
            }
        }
    });
    reading + idling
}

/// A simulated GMC `model` counting 20 a (simulated) `second`, and its driver opened with
/// `config` and started; the simulator runs as long as its handle lives.
fn started_gmc(model: GmcModel, second: Duration, config: GmcConfig) -> (SimulatorHandle, Gmc) {
    let (sim, mut dev) = common::open_gmc(
        GmcSimConfig {
            model,
            cps: 20.0,
            second,
            ..Default::default()
        },
        config,
    );
    dev.start().unwrap();
    (sim, dev)
}

#[test]
fn serial_reading_loops_do_not_allocate() {
    // The counter sees this thread's allocations at all.
    let mut probe = Vec::new();
    let probing = allocations_in(|| probe = std::hint::black_box(vec![1u8; 10]));
    assert_eq!(probing, 1);
    drop(probe);

    let fast = Duration::from_millis(5);

    let (_sim, mut dev) = started_gmc(GmcModel::Gmc320, fast, GmcConfig::default());
    assert_eq!(
        allocations_while_reading(&mut dev, 50, 5),
        0,
        "gmc heartbeat"
    );

    let mode = GmcMode::PollCpm {
        interval: Duration::from_millis(2),
    };
    let (_sim, mut dev) = started_gmc(
        GmcModel::Gmc600Plus,
        fast,
        GmcConfig {
            mode,
            ..Default::default()
        },
    );
    assert_eq!(
        allocations_while_reading(&mut dev, 20, 0),
        0,
        "gmc polled cpm"
    );

    let (_sim, path) = linecounter::simulate(LineSimConfig {
        format: SimFormat::MightyOhm,
        cps: 30.0,
        second: fast,
        ..Default::default()
    })
    .unwrap();
    let mut dev = linecounter::open(LineCounterConfig {
        path,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(allocations_while_reading(&mut dev, 50, 5), 0, "mightyohm");

    let (_sim, mut dev) = common::open_cosmicwatch(
        CosmicWatchSimConfig {
            rate: 20.0,
            second: fast,
            ..Default::default()
        },
        CosmicWatchConfig::default(),
    );
    assert_eq!(
        allocations_while_reading(&mut dev, 100, 5),
        0,
        "cosmicwatch v2"
    );

    let cols = V3Columns::ALL;
    // 2 events per device second: 200 events span ~100 s, so a housekeeping line is read too.
    let (_sim, mut dev) = common::open_cosmicwatch(
        CosmicWatchSimConfig {
            version: SimVersion::V3X(cols),
            rate: 2.0,
            second: Duration::from_millis(2),
            ..Default::default()
        },
        CosmicWatchConfig {
            version: CosmicWatchVersion::V3X(cols),
            ..Default::default()
        },
    );
    assert_eq!(
        allocations_while_reading(&mut dev, 200, 0),
        0,
        "cosmicwatch v3X"
    );
    assert!(
        dev.housekeeping().starts_with("t="),
        "a housekeeping line was read"
    );
}
