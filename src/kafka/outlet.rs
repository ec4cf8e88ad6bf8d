//! Where `export.kafka`'s messages go: the producer while the broker takes them, the spool
//! while it is away or does not have the topic.
//!
//! librdkafka's queue is kept short while the broker keeps up: a message waiting in a long
//! queue behind the single produce request an idempotent producer has in flight makes
//! librdkafka's broker thread poll with timeout 0 until that request is answered (a busy
//! wait that takes a core from everything else; BENCHMARKS.md, "64 KiB waveforms"). So once
//! `hold` bytes of events are in the client, `Outlet::send` waits for room, woken by
//! librdkafka's own event (an eventfd, `Wakeup`), and the source buffer holds the events
//! meanwhile. It waits while deliveries come, at most `HOLD_WAIT` (50 ms), and stops when
//! none came for `STILL` (20 ms): a broker that pauses (a slow moment, or gone) must not hold
//! the source buffer, so the client's queue takes the rest up to its hard
//! bound (`queue_mb`) and the exporter waits again only once that queue is back under `hold`.
//! When that queue is full too, events go to the spool and are replayed in order once the
//! broker takes them again. While the broker does not have the topic, events go to the spool
//! too, and only the spool's oldest is sent, once a second, to learn when it has it
//! (`NoTopic`).
//!
//! Guarantees: every event handed to `Outlet::send` is either accepted by the producer
//! (then its delivery report counts it delivered or failed), spooled, or counted (dropped:
//! spool full or off; refused: a message the producer will not take); a probe is an event
//! of the spool, counted delivered when it is and kept in the spool until then; one event
//! waits at most `HOLD_WAIT`, and only while the client holds `hold` bytes or more.

use super::export::Counting;
use super::spool::Spool;
use crate::worker::WorkerError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Sends between two non-blocking polls for delivery reports: a poll reads the clock three
/// times (rdkafka's deadline), which showed as the sender's largest cost for small messages;
/// the reports wait in librdkafka's queue meanwhile (served in one batch).
pub(super) const POLL_EVERY: u64 = 32;

/// The longest single sleep for room: a report that comes wakes the sender at once.
const NAP: Duration = Duration::from_millis(1);

/// The longest an event waits for the client's queue to fall under `hold`, while the broker
/// delivers: a few round trips of a 1 MiB request, short against a source buffer's time (a
/// 64-slot buffer of 20 MB/s waveforms holds 200 ms).
const HOLD_WAIT: Duration = Duration::from_millis(50);

/// A wait for room ends when no delivery was reported for this long (the broker paused):
/// a 1 MiB request on loopback is answered in ~1.3 ms.
const STILL: Duration = Duration::from_millis(20);

/// Wakes the sending thread when the producer has something to report (delivery reports
/// free queue room): librdkafka writes to an eventfd when its main queue goes from empty to
/// not empty. `BaseProducer::poll(t)` serves events until the whole `t` has passed, where
/// confluent-kafka's `poll(t)` (`rd_kafka_poll`) returns once it has served some; waiting on
/// this instead, ours resumes as soon as theirs does.
struct Wakeup {
    queue: *mut rdkafka::bindings::rd_kafka_queue_t,
    fd: std::os::fd::OwnedFd,
}

// SAFETY: the queue handle is librdkafka's reference-counted `rd_kafka_queue_t`, whose
// functions lock the queue themselves and may be called from any thread; `Wakeup` owns its
// reference (released once, in `drop`) and its eventfd.
unsafe impl Send for Wakeup {}

impl Wakeup {
    /// Events of `p`'s main queue wake [`Wakeup::wait`]. `p` must outlive the `Wakeup`.
    fn new(p: &BaseProducer<Counting>) -> Result<Self, String> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor that
        // nothing else owns.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a valid descriptor owned by no one else (above).
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: the client pointer is valid while `p` lives, which the caller keeps longer
        // than this `Wakeup` (in `Outlet`, the field order drops it first); the queue
        // reference is released in `drop`.
        let queue = unsafe { rdkafka::bindings::rd_kafka_queue_get_main(p.client().native_ptr()) };
        if queue.is_null() {
            return Err("no main queue".into());
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: `queue` is valid; librdkafka copies the 8-byte payload, which an eventfd
        // reads as a count, and writes it to `fd` (non-blocking) until disabled in `drop`.
        unsafe {
            rdkafka::bindings::rd_kafka_queue_io_event_enable(
                queue,
                fd.as_raw_fd(),
                one.as_ptr().cast(),
                one.len(),
            )
        };
        Ok(Wakeup { queue, fd })
    }

    /// Serves what is queued; if nothing was, waits until something is, at most `limit`.
    fn wait(&self, p: &BaseProducer<Counting>, limit: Duration) {
        use std::os::fd::AsRawFd;
        // SAFETY: `self.queue` is valid until `drop`.
        let queued = || unsafe { rdkafka::bindings::rd_kafka_queue_length(self.queue) };
        if queued() == 0 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ts = libc::timespec {
                tv_sec: limit.as_secs() as libc::time_t,
                tv_nsec: limit.subsec_nanos() as libc::c_long,
            };
            // SAFETY: one valid pollfd, a valid timeout, no signal mask.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `count`; EAGAIN (nothing written) is fine.
            unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        }
        while queued() > 0 {
            p.poll(Duration::ZERO);
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        // SAFETY: `self.queue` is valid; a negative fd disables the writes before the
        // eventfd closes, and the reference from rd_kafka_queue_get_main is released once.
        unsafe {
            rdkafka::bindings::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rdkafka::bindings::rd_kafka_queue_destroy(self.queue);
        }
    }
}

/// librdkafka's handle of the events' topic, held from the start: making it asks the broker
/// about the topic at once, so a topic the broker does not have is known before the first
/// event (which is then spooled) instead of at the answer to that event's own question (the
/// events sent until then are returned failed).
struct TopicHandle(*mut rdkafka::bindings::rd_kafka_topic_t);

// SAFETY: librdkafka's topic handles are reference-counted and locked by librdkafka itself;
// this one is only destroyed, once, in `drop`.
unsafe impl Send for TopicHandle {}

impl TopicHandle {
    /// The handle of `topic` in `p`, which must outlive it; `None` when librdkafka makes
    /// none (a name it refuses: the sends say so then).
    fn new(p: &BaseProducer<Counting>, topic: &str) -> Option<TopicHandle> {
        let name = std::ffi::CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `p` lives, which the caller keeps longer
        // than this handle (in `Outlet`, the field order drops it first); librdkafka copies
        // the name; a null configuration takes the client's topic defaults, as a send does.
        let h = unsafe {
            rdkafka::bindings::rd_kafka_topic_new(
                p.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        (!h.is_null()).then_some(TopicHandle(h))
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: a valid handle from rd_kafka_topic_new, released once.
        unsafe { rdkafka::bindings::rd_kafka_topic_destroy(self.0) };
    }
}

fn queue_full(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

/// True when `e` says the broker does not have the topic: librdkafka refusing a message
/// (`UnknownTopic`) or returning the ones it held (`UnknownTopicOrPartition`).
pub(super) fn no_topic(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// The delivery-report opaque of a run command or status message (not an event).
pub(super) const NOT_AN_EVENT: usize = 0;
/// The opaque of an event message.
pub(super) const EVENT: usize = 1;
/// The opaque of a probe: the spool's oldest event, sent while the broker does not have
/// the topic to learn whether it has it now. It stays in the spool until it is delivered.
pub(super) const PROBE: usize = 2;

/// While the broker does not have the topic, the spool's oldest event is sent this often to
/// learn whether it has it now (librdkafka asks the broker again every second).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What the outlet knows of a topic the broker said it does not have. librdkafka says so by
/// refusing a message (`UnknownTopic`) or by returning those it held (their reports); but it
/// forgets it within a second (it asks the broker again), and what it takes meanwhile it
/// returns, failed, at the next answer. So while the topic is missing, no event goes to the
/// producer but one probe at a time (the spool's oldest, kept there until it is delivered):
/// the first delivery shows the topic exists.
#[derive(Default)]
pub(super) struct NoTopic {
    /// Since when the broker has not had the topic; `None` while it takes its messages.
    pub(super) since: Option<Instant>,
    /// `reports.delivered` at `since`: a delivery after it shows the topic exists again.
    delivered_then: u64,
    /// `reports.failed_no_topic` at the last look.
    failures_seen: u64,
    /// The payload bytes of the probe in the producer, until its report comes.
    probe: Option<usize>,
    /// When the last probe was tried.
    probed_at: Option<Instant>,
    /// `reports.probes_failed` at the last look.
    probe_failures_seen: u64,
    /// Events dropped (spool full or off) while the topic was missing.
    pub(super) dropped: u64,
}

impl NoTopic {
    /// The broker does not have the topic (from now, unless that was known).
    fn begin(&mut self, reports: &super::export::Reports) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            self.delivered_then = reports.delivered.load(Ordering::Relaxed);
        }
    }
}

/// A failed read or write of `spool`.
fn spool_error(spool: &Spool, source: std::io::Error) -> WorkerError {
    WorkerError::Io {
        what: format!("the Kafka spool {}", spool.path().display()),
        source,
    }
}

/// Where the messages go: the producer, and the spool while the broker is away.
pub(super) struct Outlet {
    /// Before `producer`: dropped first (it holds a reference into the client).
    wakeup: Wakeup,
    /// Before `producer` too, for the same reason.
    _topic_handle: Option<TopicHandle>,
    pub(super) producer: BaseProducer<Counting>,
    pub(super) reports: std::sync::Arc<super::export::Reports>,
    pub(super) topic: String,
    pub(super) key: String,
    pub(super) spool: Option<Spool>,
    /// Bytes of events in the client beyond which a send waits for room (0: never).
    hold: u64,
    /// Bytes of events accepted by the producer.
    produced_bytes: u64,
    /// A wait for room ran out: the client's queue takes events without waiting until it is
    /// back under `hold`.
    overflow: bool,
    /// Messages in the producer when its queue was last found full: the spool is replayed
    /// once fewer than half of that are left (so a full queue is not retried every event).
    full_at: i32,
    replay: Vec<u8>,
    /// Accepted by the producer.
    produced: u64,
    /// Went through the spool.
    pub(super) spooled: u64,
    /// Handed from the spool to the producer.
    pub(super) replayed: u64,
    /// Status messages that could not be queued.
    pub(super) status_dropped: u64,
    /// Most records in the spool at once.
    pub(super) spool_peak: u64,
    /// Refused: the spool was full (or off) while the queue was.
    pub(super) dropped: u64,
    /// Refused by the producer for another reason (a message larger than the broker takes).
    pub(super) refused: u64,
    /// Still in the spool or the producer when the run ended and the drain gave up.
    pub(super) undelivered: u64,
    /// Sends that waited for room (the client held `hold` bytes).
    pub(super) waits: u64,
    /// Waits for room that ran out ([`HOLD_WAIT`]): the broker paused, the client's queue
    /// took the events.
    pub(super) overflows: u64,
    /// A full client queue waits for room instead of spooling: `bench kafka`, whose other
    /// client (confluent-kafka's producer loop) does the same; never in a run.
    pub(super) wait_when_full: bool,
    pub(super) first_refusal: Option<String>,
    /// While the broker does not have the topic.
    pub(super) no_topic: NoTopic,
}

impl Outlet {
    /// Sends `topic` messages keyed `key` through `producer` (whose reports count into
    /// `reports`), waiting for room while it holds `hold` bytes of events, spooling to
    /// `spool` while its queue is full (none: such an event is dropped and counted).
    pub(super) fn new(
        producer: BaseProducer<Counting>,
        reports: std::sync::Arc<super::export::Reports>,
        topic: String,
        key: String,
        spool: Option<Spool>,
        hold: u64,
    ) -> Result<Outlet, String> {
        Ok(Outlet {
            wakeup: Wakeup::new(&producer)?,
            _topic_handle: TopicHandle::new(&producer, &topic),
            producer,
            reports,
            topic,
            key,
            spool,
            hold,
            produced_bytes: 0,
            overflow: false,
            full_at: i32::MAX,
            replay: Vec::new(),
            produced: 0,
            spooled: 0,
            replayed: 0,
            status_dropped: 0,
            spool_peak: 0,
            dropped: 0,
            refused: 0,
            undelivered: 0,
            waits: 0,
            overflows: 0,
            wait_when_full: false,
            first_refusal: None,
            no_topic: NoTopic::default(),
        })
    }

    /// Bytes of events the client holds: accepted and not yet reported.
    fn outstanding(&self) -> u64 {
        self.produced_bytes.saturating_sub(self.reported())
    }

    /// Waits while the client holds `hold` bytes or more, as long as the broker reports
    /// deliveries (none for [`STILL`]: it paused) and at most [`HOLD_WAIT`] in all; unless a
    /// wait ran out and the client has not been back under `hold` since.
    fn hold_back(&mut self) {
        if self.hold == 0 || self.outstanding() < self.hold {
            self.overflow = false;
            return;
        }
        if self.overflow {
            return;
        }
        self.waits += 1;
        let start = Instant::now();
        let (mut reported, mut moved) = (self.reported(), start);
        loop {
            self.wakeup.wait(&self.producer, NAP);
            if self.outstanding() < self.hold {
                return;
            }
            let now = Instant::now();
            if self.reported() != reported {
                (reported, moved) = (self.reported(), now);
            }
            if now - moved >= STILL || now - start >= HOLD_WAIT {
                self.overflow = true;
                self.overflows += 1;
                return;
            }
        }
    }

    fn reported(&self) -> u64 {
        self.reports.reported_bytes.load(Ordering::Relaxed)
    }

    /// Sends one event message (record timestamp `ts_ms`): through the spool when anything
    /// waits there or the producer's queue is full; waits first (a little) while the client
    /// holds `hold` bytes.
    pub(super) fn send(&mut self, payload: &[u8], ts_ms: i64) -> Result<(), WorkerError> {
        self.check_topic()?;
        if self.spool.as_ref().is_some_and(|s| !s.is_empty()) {
            self.replay()?;
        }
        // While the topic is missing, what the producer took would be returned failed.
        let spooling = self.no_topic.since.is_some() && self.spool.is_some();
        if spooling || self.spool.as_ref().is_some_and(|s| !s.is_empty()) {
            return self.spool_one(payload, ts_ms);
        }
        self.hold_back();
        let mut record = BaseRecord::with_opaque_to(&self.topic, EVENT)
            .key(&self.key)
            .payload(payload)
            .timestamp(ts_ms);
        loop {
            let sent = self.producer.send(record);
            if self.produced.is_multiple_of(POLL_EVERY) {
                // Delivery reports so far (non-blocking).
                self.producer.poll(Duration::ZERO);
            }
            return match sent {
                Ok(()) => {
                    self.produced += 1;
                    self.produced_bytes += payload.len() as u64;
                    Ok(())
                }
                Err((e, back)) if queue_full(&e) && self.wait_when_full => {
                    self.wakeup.wait(&self.producer, NAP);
                    record = back;
                    continue;
                }
                Err((e, _)) if queue_full(&e) => {
                    self.full_at = self.producer.in_flight_count();
                    self.spool_one(payload, ts_ms)
                }
                Err((e, _)) if no_topic(&e) => {
                    self.no_topic.begin(&self.reports);
                    self.spool_one(payload, ts_ms)
                }
                Err((e, _)) => {
                    self.refused += 1;
                    self.first_refusal.get_or_insert_with(|| e.to_string());
                    Ok(())
                }
            };
        }
    }

    fn spool_one(&mut self, payload: &[u8], ts_ms: i64) -> Result<(), WorkerError> {
        let missing = u64::from(self.no_topic.since.is_some());
        let Some(spool) = &mut self.spool else {
            self.dropped += 1;
            self.no_topic.dropped += missing;
            return Ok(());
        };
        match spool.append(ts_ms, payload) {
            Ok(true) => {
                self.spooled += 1;
                self.spool_peak = self.spool_peak.max(spool.pending());
                Ok(())
            }
            Ok(false) => {
                self.dropped += 1;
                self.no_topic.dropped += missing;
                Ok(())
            }
            Err(e) => Err(spool_error(spool, e)),
        }
    }

    /// Hands spooled messages to the producer, oldest first, while its queue takes them.
    /// While the broker does not have the topic, only probes (see [`NoTopic`]).
    pub(super) fn replay(&mut self) -> Result<(), WorkerError> {
        if self.spool.is_none() {
            return Ok(());
        }
        self.producer.poll(Duration::ZERO);
        self.check_topic()?;
        if self.no_topic.since.is_some() {
            return self.probe();
        }
        let Some(spool) = &mut self.spool else {
            return Ok(());
        };
        if spool.is_empty() || self.producer.in_flight_count() > self.full_at / 2 {
            return Ok(());
        }
        loop {
            let ts = match spool.peek(&mut self.replay) {
                Ok(Some(ts)) => ts,
                Ok(None) => return Ok(()),
                Err(e) => return Err(spool_error(spool, e)),
            };
            let record = BaseRecord::with_opaque_to(&self.topic, EVENT)
                .key(&self.key)
                .payload(&self.replay)
                .timestamp(ts);
            match self.producer.send(record) {
                Ok(()) => {
                    self.produced += 1;
                    self.produced_bytes += self.replay.len() as u64;
                    self.replayed += 1;
                }
                Err((e, _)) if queue_full(&e) => {
                    self.full_at = self.producer.in_flight_count();
                    return Ok(());
                }
                Err((e, _)) if no_topic(&e) => {
                    self.no_topic.begin(&self.reports);
                    return Ok(());
                }
                Err((e, _)) => {
                    self.refused += 1;
                    self.first_refusal.get_or_insert_with(|| e.to_string());
                }
            }
            let len = self.replay.len();
            spool.advance(len).map_err(|e| spool_error(spool, e))?;
        }
    }

    /// Sends status messages (not events: not spooled; one that cannot be queued is
    /// counted).
    pub(super) fn send_status(&mut self, topic: &str, messages: &[super::status::Message]) {
        for (key, payload) in messages {
            let record = BaseRecord::with_opaque_to(topic, NOT_AN_EVENT)
                .key(key)
                .payload(payload)
                .timestamp(super::export::now_ms() as i64);
            if self.producer.send(record).is_err() {
                self.status_dropped += 1;
            }
        }
    }

    /// Sends the spool's oldest event as a probe (see [`NoTopic`]), unless one is in the
    /// producer or the last was tried less than [`PROBE_EVERY`] ago; it leaves the spool
    /// only when delivered ([`Outlet::check_topic`]).
    fn probe(&mut self) -> Result<(), WorkerError> {
        let nt = &mut self.no_topic;
        if nt.probe.is_some() || nt.probed_at.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
            return Ok(());
        }
        let Some(spool) = &mut self.spool else {
            return Ok(());
        };
        let ts = match spool.peek(&mut self.replay) {
            Ok(Some(ts)) => ts,
            Ok(None) => return Ok(()),
            Err(e) => return Err(spool_error(spool, e)),
        };
        nt.probed_at = Some(Instant::now());
        let record = BaseRecord::with_opaque_to(&self.topic, PROBE)
            .key(&self.key)
            .payload(&self.replay)
            .timestamp(ts);
        match self.producer.send(record) {
            Ok(()) => {
                nt.probe = Some(self.replay.len());
                self.produced += 1;
                self.produced_bytes += self.replay.len() as u64;
                Ok(())
            }
            // Still missing, or the queue full: the next probe in a while.
            Err((e, _)) if no_topic(&e) || queue_full(&e) => Ok(()),
            // A message the producer never takes (too large): refused, as in `replay`.
            Err((e, _)) => {
                self.refused += 1;
                self.first_refusal.get_or_insert_with(|| e.to_string());
                let len = self.replay.len();
                spool.advance(len).map_err(|e| spool_error(spool, e))
            }
        }
    }

    /// Takes in what the delivery reports served so far say of the topic: messages
    /// returned because the broker does not have it (it is missing from then on), a
    /// delivery while it was missing (it exists: a delivered probe leaves the spool), a
    /// failed probe (it stays in the spool, the next is tried later).
    pub(super) fn check_topic(&mut self) -> Result<(), WorkerError> {
        let r = &self.reports;
        let nt = &mut self.no_topic;
        let failed = r.failed_no_topic.load(Ordering::Relaxed);
        if failed > nt.failures_seen {
            nt.failures_seen = failed;
            nt.begin(r);
        }
        let probes_failed = r.probes_failed.load(Ordering::Relaxed);
        if probes_failed > nt.probe_failures_seen {
            nt.probe_failures_seen = probes_failed;
            nt.probe = None;
        }
        if nt.since.is_none() || r.delivered.load(Ordering::Relaxed) <= nt.delivered_then {
            return Ok(());
        }
        nt.since = None;
        nt.probed_at = None;
        if let (Some(len), Some(spool)) = (nt.probe.take(), &mut self.spool) {
            self.replayed += 1;
            spool.advance(len).map_err(|e| spool_error(spool, e))?;
        }
        Ok(())
    }

    /// Events lost so far: refused, dropped, failed in delivery, undelivered at the end.
    pub(super) fn lost(&self) -> u64 {
        self.refused + self.dropped + self.undelivered + self.reports.failed.load(Ordering::Relaxed)
    }

    /// At the end: replay the spool and wait for delivery, up to `limit`; what is left then
    /// is purged from the producer (its reports count it failed) or counted undelivered.
    pub(super) fn drain(&mut self, limit: Duration) -> Result<(), WorkerError> {
        let deadline = Instant::now() + limit;
        loop {
            self.full_at = i32::MAX;
            self.replay()?;
            let spool_empty = self.spool.as_ref().is_none_or(|s| s.is_empty());
            if spool_empty && self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            // Serves delivery reports as they come.
            self.wakeup.wait(&self.producer, Duration::from_millis(10));
        }
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        // The purged messages' reports arrive while flush polls; a probe delivered
        // meanwhile leaves the spool.
        let _ = self.producer.flush(Duration::from_secs(5));
        self.check_topic()?;
        self.undelivered += self.spool.as_ref().map_or(0, |s| s.pending());
        Ok(())
    }
}
