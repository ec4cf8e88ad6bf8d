//! The real Kafka-protocol broker of the Kafka tests: tansu 0.6.0 (`daq_engine::kafka::tansu`),
//! in-memory or SQLite storage on a free loopback port, killed when dropped. `scripts/install-tansu.sh`
//! builds it once outside the clone; `scripts/test.sh` sets `DAQ_TANSU` to the binary.
//! Without it the tests print a SKIPPED line and pass.

#![allow(dead_code)]

use std::path::PathBuf;

/// The Kafka counts of an `export.kafka` worker in the order `daq-engine status` and the
/// web page show them (the page puts the topic before them).
pub const COUNT_COLUMNS: [&str; 6] = [
    "events",
    "delivered",
    "spooled",
    "replayed",
    "dropped_spool_full",
    "lost",
];

/// The tansu binary from `DAQ_TANSU`, or `None` after printing why the test is skipped.
pub fn binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("DAQ_TANSU").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            eprintln!(
                "SKIPPED {test}: set DAQ_TANSU to a tansu 0.6.0 binary (scripts/install-tansu.sh \
                 builds one; scripts/test.sh sets it)"
            );
            None
        }
    }
}

/// A running broker that panics on failure (a test's broker must work).
pub struct Broker(pub daq_engine::kafka::tansu::Tansu);

impl Broker {
    pub fn start(bin: &std::path::Path, tag: &str) -> Broker {
        Broker(daq_engine::kafka::tansu::Tansu::start(bin, tag).unwrap())
    }
    /// With its storage in SQLite under `data` (kept across kill and restart).
    pub fn start_sqlite(bin: &std::path::Path, tag: &str, data: &std::path::Path) -> Broker {
        Broker(daq_engine::kafka::tansu::Tansu::start_sqlite(bin, tag, data).unwrap())
    }
    pub fn start_advertising(bin: &std::path::Path, tag: &str, port: u16) -> Broker {
        Broker(daq_engine::kafka::tansu::Tansu::start_advertising(bin, tag, Some(port)).unwrap())
    }
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.0.create_topic(topic, partitions).unwrap()
    }
    pub fn restart(&mut self) {
        self.0.restart().unwrap()
    }
    pub fn pause(&self, pause: bool) {
        self.0.pause(pause).unwrap()
    }
    pub fn kill(&mut self) {
        self.0.kill()
    }
    pub fn log(&self) -> String {
        self.0.log()
    }
}

impl std::ops::Deref for Broker {
    type Target = daq_engine::kafka::tansu::Tansu;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
