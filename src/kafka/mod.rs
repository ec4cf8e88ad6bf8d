//! Streaming to and from Apache Kafka in the ESS streaming-data-types schemas (issue 16):
//! `export.kafka` publishes a buffer, `source.kafka` turns a topic back into a buffer.
//!
//! - [`wire`]: events ⇄ ev44/da00 messages, run start/stop (pl72/6s4t); pure.
//! - [`schemas`]: the ESS message types in use (the code flatc generated from their `.fbs`
//!   files, from the `isis_streaming_data_types` crate).
//! - [`status`]: the run's state as f144 values, al00 alarms and x5f2 status
//!   (`status_topic`).
//! - [`spool`]: the bounded local file that keeps a `block` buffer's events while the broker
//!   is away, replayed in order when it is back.
//! - [`export`]: `export.kafka`; [`outlet`]: where its messages go (the client, kept short
//!   while the broker keeps up, and the spool); [`source`]: `source.kafka`, and
//!   [`positions`]: where it stands in each partition, for a process started again.
//! - [`tansu`]: a loopback tansu broker for the tests and `bench kafka`; [`mod@bench`]: `bench
//!   kafka`.
//!
//! Guarantees: the network never reaches an acquisition process (these are exporter and
//! importer workers of their own); a broker that goes away never blocks the exporter's
//! source ring (a wait for room ends after 20 ms without a delivery, 50 ms in all) — events
//! go to the client's queue, then the spool, and beyond its bound are counted lost, never
//! dropped silently. Built only with the cargo feature `kafka` (on by default).

pub mod bench;
pub mod export;
pub mod outlet;
pub mod positions;
pub mod schemas;
pub mod source;
pub mod spool;
pub mod status;
pub mod tansu;
pub mod wire;

use crate::worker::{Build, Check, Function};

/// `export.kafka` and `source.kafka` with their checks, for the registry.
pub fn functions() -> Vec<(Function, Check)> {
    vec![
        (
            Function {
                spec: export::SPEC,
                build: Build::Exporter(|c| Ok(Box::new(export::KafkaExport::build(c)?))),
            },
            Check::Config(export::check),
        ),
        (
            Function {
                spec: source::SPEC,
                build: Build::Importer(|c| Ok(Box::new(source::KafkaSource::build(c)?))),
            },
            Check::Config(source::check),
        ),
    ]
}
