//! Throughput of the simulated Hantek 6022 through the driver, by bulk-transfer size.
//! `cargo test -p daq-drivers --release --test hantek_bench -- --ignored --nocapture`

use daq_drivers::hantek6022::{bench_simulated_with, HantekConfig, SampleFormat};

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput_by_transfer_size() {
    for (transfer_size, format) in [
        (4096, SampleFormat::Raw),
        (65536, SampleFormat::Raw),
        (262144, SampleFormat::Raw),
        (1048576, SampleFormat::Raw),
        (262144, SampleFormat::Volts),
    ] {
        let config = HantekConfig {
            sample_rate: 16_000_000,
            samples_per_event: 10_000,
            transfer_size,
            format,
            ..HantekConfig::default()
        };
        let f = bench_simulated_with(config, 5_000).unwrap();
        assert_eq!(f.events, 5_000);
        println!(
            "hantek6022 sim, transfer {transfer_size:>7} B, {format:?}: {:>9.0} events/s, {:>7.1} MB/s of events ({:.1} MS/s per channel)",
            f.events_per_second(),
            f.megabytes_per_second(),
            f.events_per_second() * 10_000.0 / 1e6
        );
    }
}

/// The event cutter alone (no simulator, no thread): the driver's own per-sample cost.
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn event_cutter_alone() {
    use daq_drivers::hantek6022::{Edge, EventCutter, Trigger};
    let stream: Vec<u8> = (0..4_000_000u32).map(|i| (i / 2 % 251) as u8).collect();
    for trigger in [
        None,
        Some(Trigger {
            channel: 0,
            level_volts: 1.0,
            edge: Edge::Rising,
            pre_trigger: 100,
        }),
    ] {
        let config = HantekConfig {
            samples_per_event: 1000,
            format: SampleFormat::Raw,
            trigger,
            ..HantekConfig::default()
        };
        let mut cutter = EventCutter::new(&config);
        let mut out = vec![0u8; cutter.event_size()];
        let started = std::time::Instant::now();
        let mut events = 0u64;
        for _ in 0..25 {
            cutter.reset();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (used, event) = cutter.feed(rest, &mut out);
                events += event.is_some() as u64;
                rest = &rest[used..];
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "event cutter, trigger {}: {:.0} MB/s of stream, {events} events",
            trigger.is_some(),
            25.0 * stream.len() as f64 / 1e6 / seconds
        );
        assert!(events > 0);
    }
}
