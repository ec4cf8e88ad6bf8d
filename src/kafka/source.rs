//! `source.kafka`: the Importer that reads a Kafka topic of ev44/da00 messages back into a
//! buffer with the dtype the setup declares, so analysis can run on another machine and a
//! recorded stream can be analysed again.
//!
//! With `from: committed` (the default) it joins the consumer group `group_id` and reads on
//! from the group's committed offsets (from the beginning when there are none): several
//! daq-engine instances in one group share the partitions. `beginning`, `end`, `offset` and
//! `from_time` assign every partition of the topic to this process instead, starting there;
//! `from_time` asks the broker for the first offset at or after that time (ListOffsets by
//! timestamp, as the ESS file-writer seeks); a broker that answers an earlier offset
//! (tansu 0.6.0 answers 0) is corrected here: a partition's records before the time are
//! passed over (and counted) until its first one at or after it.
//!
//! Every partition assignment the group gives this process is logged (`assigned partitions
//! of 'topic': [..]`), so an operator — and a test — sees how the partitions are shared.
//!
//! Guarantees: a message is decoded straight into the claimed slot; one that does not fit
//! the buffer (another schema, shape or type) is counted and skipped, never half written.
//! Offsets are committed for what was handed to the engine, and only that: a record the
//! client had fetched but this process never wrote (it left the group, was stopped, lost
//! the partition in a rebalance) is read by the member that takes the partition over.

use super::export::{ev44_fields, format_of, BROKERS, FORMAT, TIME_FIELD};
use super::positions::{self, Position, Positions};
use super::wire::{Decoder, Format};
use crate::keys;
use crate::worker::{
    BuildContext, EventMut, FunctionSpec, Importer, Key, MaybeKey, Produced, Template, WorkerError,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The declaration.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "source.kafka",
    Template::Importer,
    "Reads ev44 and da00 messages from a Kafka topic into its sink, in the dtype the \
     setup declares (da00: one variable per field; ev44: time of flight into the time \
     field, pixel id into the pixel field), event time from the message; as one \
     consumer group (several hosts share the partitions) or from the beginning, the \
     end, an offset or a time.",
    &[
        BROKERS.spec(),
        TOPIC.spec(),
        GROUP_ID.spec(),
        FROM.spec(),
        OFFSET.spec(),
        FROM_TIME.spec(),
        SOURCE_NAME.spec(),
        FORMAT.spec(),
        TIME_FIELD.spec(),
        super::export::TIME_UNIT.spec(),
        super::export::PIXEL_FIELD.spec(),
        IDLE_END.spec(),
    ],
);

keys! {
    const TOPIC: MaybeKey<str> = ("topic", absent: "the sink buffer's name", "the topic to read");
    const GROUP_ID: Key<str> = ("group_id", "daq-engine", "consumer group: instances with the same group share the partitions");
    const FROM: Key<str> = ("from", "committed", "committed (the group's offsets, else the beginning), beginning or end; `offset` and `from_time` override it");
    const OFFSET: MaybeKey<u64> = ("offset", absent: "see from", "start every partition at this offset");
    const FROM_TIME: MaybeKey<f64> = ("from_time", absent: "see from", "start at the first record at or after this time (seconds since the epoch)");
    const SOURCE_NAME: MaybeKey<str> = ("source_name", absent: "every source in the topic", "take only records with this key (export.kafka keys by source name)");
    const IDLE_END: MaybeKey<f64> = ("idle_end", absent: "never: the run's limits or the operator end it", "end the run after this many seconds without a message");
}

/// Where reading starts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    Committed,
    Beginning,
    End,
    Offset(i64),
    Time(i64),
}

struct Settings {
    brokers: String,
    topic: String,
    group: String,
    start: Start,
    source_name: Option<String>,
    idle_end: Option<Duration>,
}

impl Settings {
    fn read(ctx: &BuildContext) -> Result<(Settings, Decoder), WorkerError> {
        let c = &ctx.config;
        let sink = &ctx.sinks[0];
        let start = match (c.get(OFFSET)?, c.get(FROM_TIME)?, c.get(FROM)?) {
            (Some(_), Some(_), _) => {
                return Err(c
                    .error(OFFSET.name, "give `offset` or `from_time`, not both")
                    .into())
            }
            (Some(o), None, _) => Start::Offset(i64::try_from(o).unwrap_or(i64::MAX)),
            (None, Some(t), _) if t >= 0.0 && t.is_finite() => Start::Time((t * 1e3) as i64),
            (None, Some(t), _) => {
                return Err(c
                    .error(FROM_TIME.name, format!("{t}: seconds since the epoch, ≥ 0"))
                    .into())
            }
            (None, None, "committed") => Start::Committed,
            (None, None, "beginning") => Start::Beginning,
            (None, None, "end") => Start::End,
            (None, None, other) => {
                return Err(c
                    .error(
                        FROM.name,
                        format!("'{other}': use committed, beginning or end"),
                    )
                    .into())
            }
        };
        // Assigned every partition, each process would read the whole topic: every record
        // once per process. In the group (`committed`) the processes share the partitions.
        if start != Start::Committed {
            let instead = " (with `from: committed` the processes of one group share the \
                           partitions)";
            ctx.one_opener("source.kafka", "every partition of its topic", instead)?;
        }
        // ev44 needs the time field; a buffer without it takes da00 only.
        let ev44 = match format_of(ctx, sink)? {
            Format::Ev44 => Some(ev44_fields(ctx, sink)?),
            Format::Da00 if c.get(FORMAT)? == "auto" => ev44_fields(ctx, sink).ok(),
            Format::Da00 => None,
        };
        let decoder = Decoder::new(&sink.dtype, sink.data_length, ev44)
            .map_err(|e| WorkerError::from(c.error(FORMAT.name, e.to_string())))?;
        let idle_end = match c.get(IDLE_END)? {
            Some(s) if s > 0.0 && s.is_finite() => Some(c.duration(IDLE_END.name, s)?),
            Some(s) => {
                return Err(c
                    .error(IDLE_END.name, format!("{s}: must be a number above 0"))
                    .into())
            }
            None => None,
        };
        let text = |key: &str, v: &str| -> Result<String, WorkerError> {
            if v.trim().is_empty() {
                Err(c.error(key, "must not be empty").into())
            } else {
                Ok(v.to_string())
            }
        };
        Ok((
            Settings {
                brokers: text(BROKERS.name, c.get(BROKERS)?)?,
                topic: text(TOPIC.name, c.get(TOPIC)?.unwrap_or(&sink.name))?,
                group: text(GROUP_ID.name, c.get(GROUP_ID)?)?,
                start,
                source_name: c.get(SOURCE_NAME)?.map(String::from),
                idle_end,
            },
            decoder,
        ))
    }
}

/// Checks the config of `source.kafka` as [`KafkaSource::build`] does, connecting nowhere.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    Settings::read(ctx).map(drop)
}

/// The consumer's context: logs the group's partition assignments.
pub struct Assignments {
    worker: String,
}

impl rdkafka::ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
                for e in list.elements() {
                    by_topic
                        .entry(e.topic().to_string())
                        .or_default()
                        .push(e.partition());
                }
                for (topic, partitions) in by_topic {
                    tracing::info!(
                        "worker '{}': assigned partitions of '{topic}': {partitions:?}",
                        self.worker
                    );
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("worker '{}': rebalance: {e}", self.worker),
        }
    }
}

/// `source.kafka`.
pub struct KafkaSource {
    consumer: BaseConsumer<Assignments>,
    idle_end: Option<Duration>,
    last: Instant,
    /// Since when no partition has been assigned to this process (in a group), and
    /// whether that was said.
    unassigned: Option<(Instant, bool)>,
    errors: u64,
    /// The run is paused: the assigned partitions are paused at the client, so the topic
    /// keeps its records until the resume (nothing is taken and discarded).
    paused: bool,
    /// Records that came all the same while paused (from a partition assigned during the
    /// pause, or fetched before it): handed on first after the resume, in the order they
    /// came, unless their partition went to another member meanwhile.
    held: VecDeque<OwnedMessage>,
    records: Records,
}

/// What becomes of each record, and the counts of it: apart from the consumer, which a
/// polled record borrows.
struct Records {
    worker: String,
    decoder: Decoder,
    source_name: Option<String>,
    taken: u64,
    skipped: u64,
    /// Per partition (by id), the offset after the last record this process handed on or
    /// skipped (`-1`: none yet).
    next_offset: Vec<i64>,
    /// Records that came again at an offset this process was already past: not handed on.
    repeats: u64,
    /// With `from_time`: which partitions have reached it.
    from_time: Option<FromTime>,
    /// `next_offset` and `from_time`'s partitions reached, kept for a process of this worker
    /// started again in this run (`None` when the file could not be made: said in the log).
    positions: Option<Positions>,
}

/// Where `from_time` stands in each partition.
struct FromTime {
    /// The time, ms since the epoch.
    ms: i64,
    /// Per partition (by id): a record at or after the time has come.
    reached: Vec<bool>,
    /// Records before the time that a broker served all the same: not handed on.
    passed: u64,
}

impl KafkaSource {
    /// Connects, joins the group or assigns the partitions.
    pub fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let (s, decoder) = Settings::read(ctx)?;
        let (positions, earlier) =
            match Positions::open(&positions::path(&ctx.run_dir, &ctx.worker, ctx.process.0)) {
                Ok((p, earlier)) => (Some(p), earlier),
                Err(e) => {
                    tracing::warn!(
                        "worker '{}': cannot keep its positions in the run directory ({e}): \
                         started again, it would read from where the setup says",
                        ctx.worker
                    );
                    (None, Vec::new())
                }
            };
        let fail = |what: &str, e: rdkafka::error::KafkaError| {
            WorkerError::failed(
                format!(
                    "worker '{}': Kafka {what} (topic '{}' at {})",
                    ctx.worker, s.topic, s.brokers
                ),
                e,
            )
        };
        let consumer: BaseConsumer<Assignments> = ClientConfig::new()
            .set("bootstrap.servers", &s.brokers)
            .set("group.id", &s.group)
            .set("client.id", "daq-engine")
            .set(
                "auto.offset.reset",
                if s.start == Start::End {
                    "latest"
                } else {
                    "earliest"
                },
            )
            .set("enable.auto.commit", "true")
            // An offset is stored (for the next commit) only once its message was handed to
            // the engine (see `next`), not when librdkafka hands it out: on leaving the group
            // (or a stop) the client still hands out what it had fetched, which nobody
            // writes — stored automatically, those offsets were committed and the records
            // were lost to the member that took the partition over.
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(Assignments {
                worker: ctx.worker.clone(),
            })
            .map_err(|e| fail("consumer", e))?;
        if s.start == Start::Committed {
            consumer
                .subscribe(&[&s.topic])
                .map_err(|e| fail("subscribe", e))?;
        } else {
            let meta = consumer
                .fetch_metadata(Some(&s.topic), Duration::from_secs(10))
                .map_err(|e| fail("metadata", e))?;
            let partitions: Vec<i32> = meta
                .topics()
                .iter()
                .filter(|t| t.name() == s.topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(WorkerError::Other(format!(
                    "worker '{}': topic '{}' has no partitions at {} (create it first)",
                    ctx.worker, s.topic, s.brokers
                )));
            }
            let mut tpl = TopicPartitionList::new();
            for &p in &partitions {
                let offset = match s.start {
                    Start::Beginning => Offset::Beginning,
                    Start::End => Offset::End,
                    Start::Offset(o) => Offset::Offset(o),
                    // The timestamp goes in the offset field; the broker answers with offsets.
                    Start::Time(ms) => Offset::Offset(ms),
                    Start::Committed => Offset::Stored,
                };
                tpl.add_partition_offset(&s.topic, p, offset)
                    .map_err(|e| fail("partition list", e))?;
            }
            if let Start::Time(_) = s.start {
                tpl = consumer
                    .offsets_for_times(tpl, Duration::from_secs(10))
                    .map_err(|e| fail("offsets for time", e))?;
            }
            // A process started again goes on where the earlier one stopped.
            for e in &earlier {
                if partitions.contains(&e.partition) {
                    tpl.set_partition_offset(&s.topic, e.partition, Offset::Offset(e.next))
                        .map_err(|e| fail("partition list", e))?;
                }
            }
            consumer.assign(&tpl).map_err(|e| fail("assign", e))?;
        }
        let from_time = match s.start {
            Start::Time(ms) => Some(FromTime {
                ms,
                reached: by_partition(&earlier, false, |e| e.reached),
                passed: 0,
            }),
            _ => None,
        };
        if !earlier.is_empty() {
            let at: Vec<String> = earlier
                .iter()
                .map(|e| format!("partition {} at offset {}", e.partition, e.next))
                .collect();
            tracing::info!(
                "worker '{}': goes on after the records its earlier process took: {}",
                ctx.worker,
                at.join(", ")
            );
        }
        Ok(KafkaSource {
            consumer,
            idle_end: s.idle_end,
            last: Instant::now(),
            unassigned: None,
            errors: 0,
            paused: false,
            held: VecDeque::new(),
            records: Records {
                worker: ctx.worker.clone(),
                decoder,
                source_name: s.source_name,
                taken: 0,
                skipped: 0,
                next_offset: by_partition(&earlier, -1, |e| e.next),
                repeats: 0,
                from_time,
                positions,
            },
        })
    }
}

/// Per partition (by id), what `of` says of each partition an earlier process left a
/// position of, `none` for the others.
fn by_partition<T: Clone>(earlier: &[Position], none: T, of: impl Fn(&Position) -> T) -> Vec<T> {
    let mut out = Vec::new();
    for e in earlier {
        let i = usize::try_from(e.partition).unwrap_or(0);
        if i >= out.len() {
            out.resize(i + 1, none.clone());
        }
        out[i] = of(e);
    }
    out
}

impl FromTime {
    /// Is this record one of a partition's leading records from before the time? A real
    /// Kafka answers the time's offset and serves none; a broker that answers an earlier
    /// offset (tansu 0.6.0 answers 0) serves them, and they are passed over until the
    /// partition's first record at or after the time — so the first record handed on is the
    /// one a real Kafka starts at, and later records are taken as they come, whatever their
    /// time, as from a real Kafka. A record without a time counts as reached.
    fn passes_over(&mut self, m: &impl Message, partition: usize) -> bool {
        if partition >= self.reached.len() {
            self.reached.resize(partition + 1, false);
        }
        if self.reached[partition] {
            return false;
        }
        if m.timestamp().to_millis().is_some_and(|t| t < self.ms) {
            self.passed += 1;
            return true;
        }
        self.reached[partition] = true;
        false
    }
}

impl KafkaSource {
    /// Pauses (or resumes) every partition assigned now at the client.
    fn pause_assigned(&self, pause: bool) {
        let done = self.consumer.assignment().and_then(|a| {
            if pause {
                self.consumer.pause(&a)
            } else {
                self.consumer.resume(&a)
            }
        });
        if let Err(e) = done {
            tracing::warn!(
                "worker '{}': Kafka {}: {e}",
                self.records.worker,
                if pause { "pause" } else { "resume" }
            );
        }
    }

    /// Counts an error of the client; the first five are logged (`what` after "Kafka").
    fn client_error(&mut self, what: &str, e: &rdkafka::error::KafkaError) {
        self.errors += 1;
        if self.errors <= 5 {
            tracing::warn!("worker '{}': Kafka{what}: {e}", self.records.worker);
        }
    }

    /// While paused: polls (the group needs it) and holds what comes all the same.
    fn while_paused(&mut self) -> Produced {
        match self.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                self.held.push_back(m.detach());
                // From a partition assigned since the pause: pause it too.
                self.pause_assigned(true);
            }
            Some(Err(e)) => self.client_error("", &e),
            None => {}
        }
        Produced::Idle
    }

    /// A record held over a pause, if one is left whose partition is still this process's.
    fn held_record(&mut self, out: &mut EventMut<'_>) -> Option<Produced> {
        let m = self.held.pop_front()?;
        let ours = self
            .consumer
            .assignment()
            .is_ok_and(|a| a.find_partition(m.topic(), m.partition()).is_some());
        if !ours {
            // Its offset was never stored: the member that has the partition now reads it.
            return Some(Produced::Idle);
        }
        let Some(handed) = self.records.take(&m, out) else {
            return Some(Produced::Idle);
        };
        // rd_kafka_offset_store keeps offset + 1, as for a polled record.
        if let Err(e) = self
            .consumer
            .store_offset(m.topic(), m.partition(), m.offset())
        {
            self.client_error(" offset store", &e);
        }
        Some(handed)
    }
}

impl Records {
    /// Hands on (into `out`) or passes over one record: the common part of a polled and a
    /// held one. `None` for a record that came again (its offset is not stored again).
    fn take(&mut self, m: &impl Message, out: &mut EventMut<'_>) -> Option<Produced> {
        // A record at an offset this process is already past was handed on (or skipped)
        // before: it comes again after a rebalance whose revoke could not commit, or from a
        // broker that serves a fetch again. Not twice into the ring.
        let partition = usize::try_from(m.partition()).unwrap_or(0);
        if partition >= self.next_offset.len() {
            self.next_offset.resize(partition + 1, -1);
        }
        if m.offset() < self.next_offset[partition] {
            self.repeats += 1;
            if self.repeats <= 5 {
                tracing::warn!(
                    "worker '{}': the record at {}/{} offset {} came again (this process is at \
                     offset {}): not taken twice",
                    self.worker,
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    self.next_offset[partition]
                );
            }
            return None;
        }
        self.next_offset[partition] = m.offset() + 1;
        let passes_over = self
            .from_time
            .as_mut()
            .is_some_and(|f| f.passes_over(m, partition));
        if let Some(p) = &mut self.positions {
            p.set(partition, m.offset() + 1);
            if self.from_time.is_some() && !passes_over {
                p.reached(partition);
            }
        }
        let handed = if passes_over {
            Produced::Idle
        } else if self
            .source_name
            .as_ref()
            .is_some_and(|want| m.key() != Some(want.as_bytes()))
        {
            // Another source's record.
            Produced::Idle
        } else {
            match self
                .decoder
                .decode(m.payload().unwrap_or_default(), out.data, out.meta)
            {
                Ok(_) => {
                    self.taken += 1;
                    Produced::Event
                }
                Err(e) => {
                    self.skipped += 1;
                    if self.skipped <= 5 {
                        tracing::warn!(
                            "worker '{}': skipped the record at {}/{} offset {}: {e}",
                            self.worker,
                            m.topic(),
                            m.partition(),
                            m.offset()
                        );
                    }
                    Produced::Idle
                }
            }
        };
        Some(handed)
    }
}

impl KafkaSource {
    /// Whether no partition of the topic is assigned to this process now (a group that
    /// gives them to other members, or still holds those of a member that was killed until
    /// its session times out: 45 s); said once when that lasts longer than `idle_end`.
    /// Asked only while no record comes.
    fn waits_for_partitions(&mut self) -> bool {
        let none = self.consumer.assignment().is_ok_and(|a| a.count() == 0);
        if !none {
            self.unassigned = None;
            return false;
        }
        let (since, said) = self.unassigned.get_or_insert((Instant::now(), false));
        if !*said && self.idle_end.is_some_and(|d| since.elapsed() >= d) {
            *said = true;
            tracing::warn!(
                "worker '{}': no partition assigned for {:.0} s (the group gives them to other \
                 members, or holds a killed member's until its session times out, 45 s): \
                 idle_end counts only while partitions are assigned",
                self.records.worker,
                since.elapsed().as_secs_f64()
            );
        }
        true
    }
}

impl Importer for KafkaSource {
    fn pause(&mut self, paused: bool) -> bool {
        self.paused = paused;
        self.pause_assigned(paused);
        if !paused {
            // The pause is no silence of the topic's.
            self.last = Instant::now();
        }
        true
    }

    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        if self.paused {
            return Ok(self.while_paused());
        }
        if let Some(handed) = self.held_record(out) {
            return Ok(handed);
        }
        let Some(polled) = self.consumer.poll(Duration::from_millis(100)) else {
            if self.idle_end.is_some() && self.waits_for_partitions() {
                // `idle_end` is a silence of the topic's: none while no partition is ours.
                self.last = Instant::now();
                return Ok(Produced::Idle);
            }
            if self.idle_end.is_some_and(|d| self.last.elapsed() >= d) {
                let _ = self.consumer.commit_consumer_state(CommitMode::Sync);
                tracing::info!(
                    "worker '{}': no message for {:?}: {} events taken, {} skipped, {} came \
                     again, {} before from_time; ending",
                    self.records.worker,
                    self.idle_end.unwrap_or_default(),
                    self.records.taken,
                    self.records.skipped,
                    self.records.repeats,
                    self.records.from_time.as_ref().map_or(0, |f| f.passed)
                );
                return Ok(Produced::End);
            }
            return Ok(Produced::Idle);
        };
        self.last = Instant::now();
        let m = match polled {
            Ok(m) => m,
            Err(e) => {
                self.client_error("", &e);
                return Ok(Produced::Idle);
            }
        };
        let Some(handed) = self.records.take(&m, out) else {
            return Ok(Produced::Idle);
        };
        // Done with this record: written into the slot (published as this returns) or
        // skipped. Only now is its offset stored; stored offsets are what a commit (timed,
        // on a rebalance's revoke, at the end) sends.
        let stored = self.consumer.store_offset_from_message(&m);
        drop(m);
        if let Err(e) = stored {
            self.client_error(" offset store", &e);
        }
        Ok(handed)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        let _ = self.consumer.commit_consumer_state(CommitMode::Sync);
    }
}
