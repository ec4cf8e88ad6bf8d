//! `daq-engine bench drivers`: MCPHA traces from the simulated board over loopback TCP,
//! through the driver into one reused event buffer, beside a plain socket read of the same
//! bytes in the same run (the limit the driver is held to).
//!
//! Guarantees: both read from a simulator that repeats 64 rendered traces (so generating
//! them costs next to nothing), the same settings and the same number of traces, streamed
//! with code 31 in sets of 100; the plain read takes the bytes in 1 MiB reads and checks
//! nothing. Must never: compare runs of different sizes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::driver::{open, McphaConfig, McphaMode, ScopeConfig, TraceAcquisition};
use super::protocol::{Command, SAMPLE_BYTES};
use super::simulator::{McphaSimConfig, SimMcpha};
use crate::{DriverError, ReadOutcome, Source};

/// What [`bench_simulated`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct McphaBench {
    /// Traces read by each path.
    pub events: u64,
    /// Bytes of one event in the slot (samples × 4).
    pub event_bytes: usize,
    /// Bytes of one trace on the wire (with the dropped tail).
    pub wire_bytes: usize,
    /// Seconds the driver took.
    pub driver_s: f64,
    /// Seconds the plain socket read took.
    pub raw_s: f64,
}

impl McphaBench {
    /// Traces per second through the driver.
    pub fn driver_events_per_s(&self) -> f64 {
        self.events as f64 / self.driver_s.max(1e-9)
    }
    /// Traces per second by the plain read.
    pub fn raw_events_per_s(&self) -> f64 {
        self.events as f64 / self.raw_s.max(1e-9)
    }
    /// Wire MB/s through the driver.
    pub fn driver_mb_per_s(&self) -> f64 {
        self.driver_events_per_s() * self.wire_bytes as f64 / 1e6
    }
    /// Wire MB/s by the plain read.
    pub fn raw_mb_per_s(&self) -> f64 {
        self.raw_events_per_s() * self.wire_bytes as f64 / 1e6
    }
    /// Driver rate over the plain read's.
    pub fn ratio(&self) -> f64 {
        self.raw_s / self.driver_s.max(1e-9)
    }
}

fn sim() -> Result<SimMcpha, DriverError> {
    SimMcpha::start(McphaSimConfig {
        repeat_after: Some(64),
        transcript: false,
        stale_tail: false,
        ..McphaSimConfig::default()
    })
    .map_err(|e| DriverError::Vendor(format!("starting the simulated MCPHA board: {e}")))
}

/// Reads `events` traces of `samples` samples (2 × int16) both ways.
pub fn bench_simulated(events: u64, samples: u32) -> Result<McphaBench, DriverError> {
    let set_size = 100;
    let cfg = |address: String| McphaConfig {
        scope: ScopeConfig {
            address,
            samples,
            pre: 100.min(samples - 1).max(1),
            ..ScopeConfig::default()
        },
        mode: McphaMode::Traces(TraceAcquisition::Stream { set_size }),
        ..McphaConfig::default()
    };
    // Through the driver.
    let board = sim()?;
    let mut m = open(cfg(board.addr().to_string()))?;
    m.start()?;
    let event_bytes = samples as usize * SAMPLE_BYTES;
    let wire_bytes = (samples + m.config().discard_tail) as usize * SAMPLE_BYTES;
    let mut out = vec![0u8; event_bytes];
    let t0 = Instant::now();
    let mut n = 0;
    while n < events {
        match m.read_event(&mut out, Duration::from_secs(2))? {
            ReadOutcome::Event(_) => n += 1,
            other => {
                return Err(DriverError::Vendor(format!(
                    "MCPHA bench: {other:?} after {n} traces"
                )))
            }
        }
    }
    let driver_s = t0.elapsed().as_secs_f64();
    m.stop()?;
    drop(board);

    // The same bytes by a plain socket read.
    let board = sim()?;
    let io = |e: std::io::Error| DriverError::Vendor(format!("MCPHA bench, plain read: {e}"));
    let mut s = TcpStream::connect(board.addr()).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    let words: Vec<u8> = cfg(String::new())
        .setup_commands(true)
        .into_iter()
        .flat_map(Command::encode)
        .collect();
    s.write_all(&words).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    let mut asked = 0u64;
    let mut got = 0u64;
    let want = events * wire_bytes as u64;
    let wire = wire_bytes as u64;
    while got < want {
        // As the driver: the next set is asked for when the last one is read.
        if got == asked * wire {
            s.write_all(&Command::StartDaq(set_size).encode())
                .map_err(io)?;
            asked += u64::from(set_size);
        }
        let room = (asked * wire)
            .min(want)
            .saturating_sub(got)
            .min(buf.len() as u64) as usize;
        let k = s.read(&mut buf[..room]).map_err(io)?;
        if k == 0 {
            return Err(DriverError::Vendor(
                "MCPHA bench: the simulator closed".into(),
            ));
        }
        got += k as u64;
    }
    let raw_s = t0.elapsed().as_secs_f64();
    std::hint::black_box(&buf);
    Ok(McphaBench {
        events,
        event_bytes,
        wire_bytes,
        driver_s,
        raw_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths read the same number of whole traces; the figures are printed for
    /// BENCHMARKS.md with `cargo test --release -p daq-drivers redpitaya::bench -- --ignored
    /// --nocapture`.
    #[test]
    fn both_paths_read_the_same_traces() {
        let b = bench_simulated(300, 1000).unwrap();
        assert_eq!((b.events, b.event_bytes, b.wire_bytes), (300, 4000, 4400));
        assert!(b.driver_s > 0.0 && b.raw_s > 0.0);
    }

    #[test]
    #[ignore = "a measurement: run in release with --nocapture"]
    fn print_figures() {
        for (n, samples) in [(20_000, 1000), (5_000, 16384)] {
            let b = bench_simulated(n, samples).unwrap();
            println!(
                "MCPHA 2x{samples} i2: driver {:.0} ev/s {:.0} MB/s; plain read {:.0} ev/s {:.0} MB/s; ratio {:.2}",
                b.driver_events_per_s(),
                b.driver_mb_per_s(),
                b.raw_events_per_s(),
                b.raw_mb_per_s(),
                b.ratio()
            );
        }
    }
}
