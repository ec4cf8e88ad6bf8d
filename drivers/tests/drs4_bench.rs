//! Throughput of the simulated DRS4 board through the driver.
//! `cargo test -p daq-drivers --release --test drs4_bench -- --ignored --nocapture`

use daq_drivers::drs4::bench_simulated;

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput() {
    for time_axis in [false, true] {
        let f = bench_simulated(5_000, time_axis).unwrap();
        assert_eq!(f.events, 5_000);
        println!(
            "drs4 sim, time axis {time_axis}: {:>8.0} events/s, {:>7.1} MB/s of events",
            f.events_per_second(),
            f.megabytes_per_second()
        );
    }
}
