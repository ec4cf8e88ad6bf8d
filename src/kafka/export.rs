//! `export.kafka`: the Exporter that publishes every event of its source buffer to a Kafka
//! topic as one ESS FlatBuffers message (da00 or ev44, see [`super::wire`]).
//!
//! Records are keyed by the source name (per-source order in one partition) and carry the
//! event's time as their timestamp (the ESS file-writer seeks by time). The producer is
//! idempotent with `acks=all`; its messages never time out while the run goes on. While
//! the broker keeps up, the client holds at most `hold_kb` (two batches): beyond that the
//! exporter waits a little for room and the source buffer holds the events (a long client
//! queue makes librdkafka busy-wait, see [`super::outlet`]). A broker that pauses longer
//! fills the client's queue up to `queue_mb`; when that is full (the broker away or slow),
//! events go to a bounded spool file in the run directory and are replayed, in order, as
//! soon as the queue has room again; once anything is spooled, newer events queue behind
//! it. A topic the broker does not have is said in the run log at once (with the broker,
//! and again every minute while so); the run goes on, its events are spooled as while the
//! broker is away and sent once the topic is created. Beyond the spool's bound an event is
//! dropped and counted. At the end of the run the exporter waits up to `drain_seconds` for
//! every message to be delivered; what is still undelivered then is counted lost (the
//! summary names a missing topic as the reason). Every lost event (failed delivery, spool
//! full, undelivered at the end) is booked in the source ring as released unread, so stats,
//! `status`, the page and summary.json show it.
//!
//! With `control_topic`, the first process sends a pl72 run start (the setup as metadata)
//! before the first event and a 6s4t run stop after the last. With `status_topic`, it sends
//! the run's state there every `status_interval` (f144 values, al00 alarms, x5f2 status; see
//! [`super::status`]). Each process writes its counts ([`KafkaCounts`]) to
//! `kafka_<worker>_<process>.json` on every flush and at the end, for the stats, `status`,
//! the page and summary.json.
//!
//! da00 carries how counts become volts once it is known: when the source buffer holds ADC
//! counts from an importer that wrote its scales (`scales_<worker>.txt`, through built-in
//! filters too, as the HDF5 export finds them), read on the flush path until found.

use super::outlet::{no_topic, Outlet, NOT_AN_EVENT, PROBE};
use super::spool::Spool;
use super::status::RunStatus;
use super::wire::{self, Encoder, Ev44Fields, Format};
use crate::keys;
use crate::run_dir::KafkaCounts;
use crate::worker::{
    BuildContext, EventRef, Exporter, FunctionSpec, Key, MaybeKey, Template, WorkerError,
};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The declaration.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "export.kafka",
    Template::Exporter,
    "Publishes every event of its source to a Kafka topic as an ESS FlatBuffers \
     message: da00 (one variable per field, shape and dtype kept) for waveforms, ev44 \
     (reference time = event time in ns since the epoch, time of flight from the time \
     field, pixel id from the channel) for features with a time. Keyed by source name, \
     record time = event time, idempotent with acks=all; a broker that is away never \
     blocks the run: events spool to a bounded file and are replayed in order.",
    KEYS,
)
.delivering_after_stop(DRAIN_SECONDS);

keys! {
    list KEYS;
    pub(super) const BROKERS: Key<str> = ("brokers", "127.0.0.1:9092", "bootstrap brokers, host:port[,host:port…]");
    const TOPIC: MaybeKey<str> = ("topic", absent: "the source buffer's name", "the topic (it must exist: create it first)");
    const SOURCE_NAME: MaybeKey<str> = ("source_name", absent: "<setup>/<worker>/<buffer>", "source_name of every message, and the record key");
    pub(super) const FORMAT: Key<str> = ("format", "auto", "da00, ev44, or auto: da00 for waveforms (data_length > 1 or array fields), ev44 when the buffer has the time field, else da00");
    pub(super) const TIME_FIELD: Key<str> = ("time_field", "time", "ev44: the field with each record's time after the event time (time of flight)");
    pub(super) const TIME_UNIT: Key<f64> = ("time_unit", 1.0, "ev44: seconds per unit of the time field (1e-9 for a field in ns)");
    pub(super) const PIXEL_FIELD: MaybeKey<str> = ("pixel_field", absent: "channel, when the buffer has it", "ev44: the field sent as pixel id");
    const CONTROL_TOPIC: MaybeKey<str> = ("control_topic", absent: "none: no run start/stop messages", "topic for the pl72 run start and 6s4t run stop (the setup as metadata)");
    const STATUS_TOPIC: MaybeKey<str> = ("status_topic", absent: "none: no status messages", "topic for the run's state: f144 values (rates, counts, device readings), al00 alarms, x5f2 status (set it on one exporter of a run)");
    const STATUS_INTERVAL: Key<f64> = ("status_interval", 2.0, "seconds between two rounds of status messages");
    pub(super) const LINGER_MS: Key<f64> = ("linger_ms", 5.0, "milliseconds a batch waits to fill (librdkafka linger.ms)");
    pub(super) const BATCH_KB: Key<usize> = ("batch_kb", 1024, "largest batch in KiB (librdkafka batch.size)");
    const COMPRESSION: Key<str> = ("compression", "none", "none, gzip, snappy or lz4 (librdkafka compression.type)");
    const HOLD_KB: MaybeKey<usize> = ("hold_kb", absent: "two batches (2 × batch_kb)", "KiB of events in the client beyond which a send waits for room while the broker delivers (at most 50 ms), so librdkafka's queue stays short while the broker keeps up; 0: never wait");
    pub(super) const QUEUE_MB: Key<f64> = ("queue_mb", 64.0, "MB of messages the client holds in memory (a broker that pauses) before events go to the spool");
    const SPOOL_MB: Key<f64> = ("spool_mb", 1024.0, "largest spool file in MB while the broker is away; 0: no spool, a full client queue drops (counted)");
    const DRAIN_SECONDS: Key<f64> = ("drain_seconds", 30.0, "at the end of the run, seconds to wait for delivery before what is left counts as lost");
}

/// What the config asks for, read and checked without connecting.
struct Settings {
    brokers: String,
    topic: String,
    source_name: String,
    format: Format,
    ev44: Option<Ev44Fields>,
    control_topic: Option<String>,
    status_topic: Option<String>,
    status_interval: Duration,
    linger_ms: f64,
    batch_bytes: usize,
    compression: &'static str,
    queue_kb: u64,
    hold_bytes: u64,
    spool_bytes: u64,
    drain: Duration,
}

/// The setup's name: the run directory's parent (the setup file's stem unless the setup
/// names another run directory).
fn setup_name(ctx: &BuildContext) -> String {
    ctx.run_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "daq-engine".into())
}

/// The ev44 fields of `ctx`'s buffer (`time_field` must exist), or why not.
pub(super) fn ev44_fields(
    ctx: &BuildContext,
    buffer: &crate::worker::BufferShape,
) -> Result<Ev44Fields, WorkerError> {
    let c = &ctx.config;
    let time = c.get(TIME_FIELD)?;
    let pixel = match c.get(PIXEL_FIELD)? {
        Some(p) => Some(p),
        None => buffer.dtype.field("channel").map(|_| "channel"),
    };
    Ev44Fields::new(&buffer.dtype, time, c.get(TIME_UNIT)?, pixel)
        .map_err(|e| c.error(TIME_FIELD.name, e.to_string()).into())
}

/// The format `format` asks for on `buffer`.
pub(super) fn format_of(
    ctx: &BuildContext,
    buffer: &crate::worker::BufferShape,
) -> Result<Format, WorkerError> {
    let c = &ctx.config;
    Ok(match c.get(FORMAT)? {
        "da00" => Format::Da00,
        "ev44" => Format::Ev44,
        "auto" => {
            let waveform = buffer.data_length > 1
                || buffer
                    .dtype
                    .fields()
                    .iter()
                    .any(|f| !f.ty.shape.is_scalar());
            if !waveform && buffer.dtype.field(c.get(TIME_FIELD)?).is_some() {
                Format::Ev44
            } else {
                Format::Da00
            }
        }
        other => {
            return Err(c
                .error(FORMAT.name, format!("'{other}': use da00, ev44 or auto"))
                .into())
        }
    })
}

impl Settings {
    fn read(ctx: &BuildContext) -> Result<Settings, WorkerError> {
        let c = &ctx.config;
        let src = &ctx.sources[0];
        let non_empty = |key: &str, v: &str| -> Result<String, WorkerError> {
            if v.trim().is_empty() {
                Err(c.error(key, "must not be empty").into())
            } else {
                Ok(v.to_string())
            }
        };
        let at_least = |key: &str, v: f64, min: f64| -> Result<f64, WorkerError> {
            if v >= min && v.is_finite() {
                Ok(v)
            } else {
                Err(c
                    .error(key, format!("{v}: must be a number ≥ {min}"))
                    .into())
            }
        };
        let format = format_of(ctx, src)?;
        let ev44 = match format {
            Format::Ev44 => Some(ev44_fields(ctx, src)?),
            Format::Da00 => None,
        };
        let source_name = match c.get(SOURCE_NAME)? {
            Some(s) => non_empty(SOURCE_NAME.name, s)?,
            None => format!("{}/{}/{}", setup_name(ctx), ctx.worker, src.name),
        };
        // The encoder refuses what the schema cannot carry (da00: big-endian, text).
        Encoder::new(
            format,
            &src.dtype,
            src.data_length,
            &source_name,
            ev44.clone(),
        )
        .map_err(|e| WorkerError::from(c.error(FORMAT.name, e.to_string())))?;
        let compression = match c.get(COMPRESSION)? {
            "none" => "none",
            "gzip" => "gzip",
            "snappy" => "snappy",
            "lz4" => "lz4",
            other => {
                return Err(c
                    .error(
                        COMPRESSION.name,
                        format!(
                            "'{other}': use none, gzip, snappy or lz4 (the codecs of this \
                             build's librdkafka)"
                        ),
                    )
                    .into())
            }
        };
        let batch_kb = c.get(BATCH_KB)?;
        if !(1..=1_000_000).contains(&batch_kb) {
            return Err(c
                .error(BATCH_KB.name, format!("{batch_kb}: must be 1 to 1000000"))
                .into());
        }
        let queue_mb = at_least(QUEUE_MB.name, c.get(QUEUE_MB)?, 0.001)?;
        if queue_mb > 2_000_000.0 {
            return Err(c
                .error(QUEUE_MB.name, format!("{queue_mb}: at most 2000000"))
                .into());
        }
        Ok(Settings {
            brokers: non_empty(BROKERS.name, c.get(BROKERS)?)?,
            topic: non_empty(TOPIC.name, c.get(TOPIC)?.unwrap_or(&src.name))?,
            source_name,
            format,
            ev44,
            control_topic: c
                .get(CONTROL_TOPIC)?
                .map(|t| non_empty(CONTROL_TOPIC.name, t))
                .transpose()?,
            status_topic: c
                .get(STATUS_TOPIC)?
                .map(|t| non_empty(STATUS_TOPIC.name, t))
                .transpose()?,
            status_interval: c.duration(
                STATUS_INTERVAL.name,
                at_least(STATUS_INTERVAL.name, c.get(STATUS_INTERVAL)?, 0.1)?,
            )?,
            linger_ms: at_least(LINGER_MS.name, c.get(LINGER_MS)?, 0.0)?,
            batch_bytes: batch_kb * 1024,
            compression,
            queue_kb: (queue_mb * 1000.0) as u64,
            hold_bytes: c.get(HOLD_KB)?.map_or(hold_bytes(batch_kb * 1024), |kb| {
                (kb as u64).saturating_mul(1024)
            }),
            spool_bytes: (at_least(SPOOL_MB.name, c.get(SPOOL_MB)?, 0.0)? * 1e6) as u64,
            drain: c.duration(
                DRAIN_SECONDS.name,
                at_least(DRAIN_SECONDS.name, c.get(DRAIN_SECONDS)?, 0.0)?,
            )?,
        })
    }
}

/// The default `hold_kb` in bytes: two batches.
pub(super) fn hold_bytes(batch_bytes: usize) -> u64 {
    2 * batch_bytes as u64
}

/// Checks the config of `export.kafka` as [`KafkaExport::build`] does, connecting nowhere.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    Settings::read(ctx).map(drop)
}

/// Delivery reports, counted on librdkafka's thread.
#[derive(Default)]
pub(super) struct Reports {
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Of `failed`: returned because the broker does not have the topic (the messages
    /// librdkafka held when the broker first said so).
    pub(super) failed_no_topic: AtomicU64,
    /// Probes that failed (see [`super::outlet::NoTopic`]): not lost, they stay in the
    /// spool.
    pub(super) probes_failed: AtomicU64,
    /// Payload bytes of the event messages reported (delivered or failed).
    pub(super) reported_bytes: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
    /// The client's last error of its own (a broker it cannot reach), for what is given
    /// up at the end.
    last_client_error: std::sync::Mutex<Option<String>>,
}

impl Reports {
    /// Why the first event that failed did: librdkafka's error, or for one given up at
    /// the end of the drain (purged), that, with the client's last error.
    fn first_failure(&self, drain: Duration) -> Option<String> {
        let first = self.first_failure.lock().ok()?.clone()?;
        if first != PURGED {
            return Some(first);
        }
        let why = self.last_client_error.lock().ok().and_then(|e| e.clone());
        Some(format!(
            "not delivered within drain_seconds ({} s) and given up{}",
            drain.as_secs_f64(),
            why.map_or(String::new(), |e| format!("; the client's last error: {e}"))
        ))
    }
}

/// How [`Reports::first_failure`] holds a message purged at the end of the drain.
const PURGED: &str = "purged";

/// The producer's context: counts delivery reports of event messages (opaque
/// [`super::outlet::EVENT`] or [`PROBE`]) apart from the run start/stop and status
/// ([`NOT_AN_EVENT`]), whose failures it says in the run log (once per topic).
pub(super) struct Counting {
    reports: Arc<Reports>,
    /// `bootstrap.servers`, for the messages.
    brokers: String,
    /// The topics whose run command or status message failed, said once each.
    told: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Counting {
    /// Says (once per topic) that a run command or status message to `topic` failed.
    fn not_delivered(&self, topic: &str, e: &KafkaError) {
        let Ok(mut told) = self.told.lock() else {
            return;
        };
        if !told.insert(topic.to_string()) {
            return;
        }
        let b = &self.brokers;
        if no_topic(e) {
            tracing::warn!(
                "kafka: topic '{topic}' does not exist on broker {b}: the run commands or \
                 status messages sent there are lost; create it"
            );
        } else {
            tracing::warn!(
                "kafka: a run command or status message to topic '{topic}' on broker {b} was \
                 not delivered: {e}"
            );
        }
    }
}

impl ClientContext for Counting {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka: {error}: {reason}");
        if let Ok(mut last) = self.reports.last_client_error.lock() {
            *last = Some(reason.to_string());
        }
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if opaque == NOT_AN_EVENT {
            if let Err((e, m)) = result {
                self.not_delivered(rdkafka::Message::topic(m), e);
            }
            return;
        }
        let m = match result {
            Ok(m) | Err((_, m)) => m,
        };
        let r = &self.reports;
        r.reported_bytes
            .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
        match result {
            Ok(_) => r.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) if opaque == PROBE => r.probes_failed.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if no_topic(e) {
                    r.failed_no_topic.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut first) = r.first_failure.lock() {
                    let purged = matches!(
                        e,
                        KafkaError::MessageProduction(
                            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                        )
                    );
                    first.get_or_insert_with(|| {
                        if purged {
                            PURGED.to_string()
                        } else {
                            e.to_string()
                        }
                    });
                }
                r.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// An idempotent, `acks=all` producer with the given batching, for the exporter and the
/// benchmark. Its delivery reports and errors are served by [`BaseProducer::poll`] on the
/// sending thread (`poll(0)` every [`super::outlet::POLL_EVERY`] sends, while it waits for
/// room and on flush), not by a polling thread of its own: one thread less to wake per batch
/// of reports on a busy machine.
pub(super) fn producer(
    brokers: &str,
    linger_ms: f64,
    batch_bytes: usize,
    compression: &str,
    queue_kb: u64,
    reports: Arc<Reports>,
) -> Result<BaseProducer<Counting>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "daq-engine")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", format!("{linger_ms}"))
        .set("batch.size", batch_bytes.to_string())
        .set("compression.type", compression)
        .set("queue.buffering.max.kbytes", queue_kb.max(1).to_string())
        .set("queue.buffering.max.messages", "2147483647")
        // Never given up while the run goes on: the spool and the end-of-run drain decide.
        .set("message.timeout.ms", "0")
        // A topic the broker does not have is known at its first metadata answer, not 30 s
        // later: until then librdkafka holds the messages, and fails them all at once when
        // the time is up. Known, its messages are refused at once (the outlet spools them)
        // and a topic created later is found within a second (librdkafka asks every second
        // for a topic without partitions). A broker that creates topics itself (Kafka's
        // auto.create.topics.enable) answers "leader not available" while it does; one that
        // said "unknown" meanwhile would cost a second's delay, no event (the outlet spools
        // and probes until the topic takes a message).
        .set("topic.metadata.propagation.max.ms", "0")
        .create_with_context(Counting {
            reports,
            brokers: brokers.to_string(),
            told: Default::default(),
        })
}

/// True when a field of `dtype` holds integers (ADC counts).
fn counts_in(dtype: &crate::dtype::Dtype) -> bool {
    use crate::dtype::Scalar;
    dtype.fields().iter().any(|f| {
        f.ty.scalar()
            .is_some_and(|s| !matches!(s, Scalar::F32 | Scalar::F64))
    })
}

/// `export.kafka`.
pub struct KafkaExport {
    encoder: Encoder,
    out: Outlet,
    drain: Duration,
    run: Option<RunCommands>,
    /// da00: the notes of the device importer writing the source buffer, read until they
    /// give the volts per ADC count.
    /// The scales file of the importer the source's counts come from, until it is read.
    scales_file: Option<std::path::PathBuf>,
    /// The status stream and its topic (first process, with `status_topic`).
    status: Option<(RunStatus, String)>,
    events: u64,
    /// The outlet's losses already booked through [`Exporter::events_dropped`].
    summary: Vec<String>,
    worker: String,
    process: usize,
    run_dir: std::path::PathBuf,
    /// `bootstrap.servers`, for the messages.
    brokers: String,
    /// While the broker does not have the topic: when the run log last said so.
    told_no_topic: Option<Instant>,
}

/// While the broker does not have the topic, the run log says so again this often (with
/// what waits and what was lost), so a week-long run's log keeps showing it.
const NO_TOPIC_REMINDER: Duration = Duration::from_secs(60);

/// The pl72/6s4t messages of one run, sent by the first process.
struct RunCommands {
    topic: String,
    job_id: String,
    run_name: String,
}

/// A random UUID (version 4) in its usual spelling.
fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl KafkaExport {
    /// Connects (lazily: librdkafka connects in the background) and sends the run start.
    pub fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let s = Settings::read(ctx)?;
        let src = &ctx.sources[0];
        let encoder = Encoder::new(
            s.format,
            &src.dtype,
            src.data_length,
            &s.source_name,
            s.ev44.clone(),
        )
        .map_err(WorkerError::output)?;
        let reports = Arc::new(Reports::default());
        let producer = producer(
            &s.brokers,
            s.linger_ms,
            s.batch_bytes,
            s.compression,
            s.queue_kb,
            reports.clone(),
        )
        .map_err(|e| WorkerError::failed(format!("worker '{}': Kafka producer", ctx.worker), e))?;
        let (me, _) = ctx.process;
        let spool = if s.spool_bytes > 0 {
            let path = ctx
                .run_dir
                .join(format!("kafka_spool_{}_{me}.bin", ctx.worker));
            Some(
                Spool::create(&path, s.spool_bytes).map_err(|source| WorkerError::Io {
                    what: format!("the Kafka spool {}", path.display()),
                    source,
                })?,
            )
        } else {
            None
        };
        let out = Outlet::new(
            producer,
            reports,
            s.topic.clone(),
            s.source_name.clone(),
            spool,
            s.hold_bytes,
        )
        .map_err(|e| WorkerError::failed(format!("worker '{}': Kafka producer", ctx.worker), e))?;
        let run_name = crate::fsio::file_name(&ctx.run_dir);
        let mut export = KafkaExport {
            encoder,
            out,
            drain: s.drain,
            run: None,
            // Only counts have a scale: a buffer of floats is in volts already.
            scales_file: match s.format {
                Format::Da00 if counts_in(&src.dtype) => {
                    crate::run_dir::plan::Plan::load(&ctx.run_dir.join(crate::run_dir::PLAN))
                        .ok()
                        .and_then(|p| crate::run_dir::scales::origin_of(&p, &src.name))
                        .map(|w| crate::run_dir::scales::scales_path(&ctx.run_dir, &w))
                }
                _ => None,
            },
            status: None,
            events: 0,
            summary: Vec::new(),
            worker: ctx.worker.clone(),
            process: me,
            run_dir: ctx.run_dir.clone(),
            brokers: s.brokers.clone(),
            told_no_topic: None,
        };
        if let (Some(topic), 0) = (&s.status_topic, me) {
            let status = RunStatus::new(
                ctx.run_dir.clone(),
                &setup_name(ctx),
                &s.source_name,
                s.status_interval,
            );
            export.status = Some((status, topic.clone()));
        }
        if let (Some(topic), 0) = (s.control_topic, me) {
            let run = RunCommands {
                topic,
                job_id: uuid4(),
                run_name,
            };
            let setup_text =
                std::fs::read_to_string(ctx.run_dir.join("setup.yaml")).unwrap_or_default();
            let metadata = serde_json::json!({
                "setup_name": setup_name(ctx),
                "setup": setup_text,
                "run_dir": ctx.run_dir.display().to_string(),
            })
            .to_string();
            let nexus = serde_json::json!({"children": [{
                "type": "group", "name": "entry",
                "children": [{"module": s.format.id(), "config": {
                    "topic": s.topic, "source": s.source_name}}]}]})
            .to_string();
            let msg = wire::run_start(&wire::RunStartFields {
                start_ms: now_ms(),
                run_name: &run.run_name,
                instrument_name: &setup_name(ctx),
                job_id: &run.job_id,
                filename: &format!("{}.nxs", run.run_name),
                nexus_structure: &nexus,
                metadata: &metadata,
                control_topic: &run.topic,
            });
            export.command(&run.topic, &msg)?;
            export.run = Some(run);
        }
        Ok(export)
    }

    /// Sends a run command (not counted as an event).
    fn command(&self, topic: &str, msg: &[u8]) -> Result<(), WorkerError> {
        let record = BaseRecord::with_opaque_to(topic, NOT_AN_EVENT)
            .key(&self.out.key)
            .payload(msg)
            .timestamp(now_ms() as i64);
        self.out.producer.send(record).map_err(|(e, _)| {
            WorkerError::failed(
                format!("worker '{}': run command to '{topic}'", self.worker),
                e,
            )
        })
    }
}

impl KafkaExport {
    /// The counts now; `done` at the end.
    fn counts(&self, done: bool) -> KafkaCounts {
        let o = &self.out;
        KafkaCounts {
            topic: o.topic.clone(),
            source_name: o.key.clone(),
            format: self.encoder.format().id().to_string(),
            events: self.events,
            delivered: o.reports.delivered.load(Ordering::Relaxed),
            lost: o.lost(),
            failed: o.reports.failed.load(Ordering::Relaxed),
            dropped_spool_full: o.dropped,
            refused: o.refused,
            undelivered_at_end: o.undelivered,
            spooled: o.spooled,
            replayed: o.replayed,
            spool_pending: o.spool.as_ref().map_or(0, |s| s.pending()),
            spool_peak: o.spool_peak,
            status_dropped: o.status_dropped,
            waits_for_room: o.waits,
            waits_ran_out: o.overflows,
            no_topic: o.no_topic.since.map(|_| self.no_topic()),
            done,
        }
    }

    /// Writes the counts file (best effort: the counts also reach the summary lines).
    fn write_counts(&self, counts: &KafkaCounts) {
        let path = crate::run_dir::kafka_counts_path(&self.run_dir, &self.worker, self.process);
        let text = serde_json::to_string_pretty(counts).unwrap_or_default() + "\n";
        let _ = crate::fsio::write_atomic(&path, text.as_bytes());
    }

    /// Looks for the importer's scales until they are found.
    fn find_scale(&mut self) {
        let Some(path) = &self.scales_file else {
            return;
        };
        if let Some(scales) = crate::run_dir::scales::SampleScales::read(path) {
            let from = crate::fsio::file_name(path);
            self.encoder.set_scales(&scales.fields, &from);
            self.scales_file = None;
        }
    }

    /// A round of status messages when one is due (or `ended`).
    fn status_round(&mut self, counts: &KafkaCounts, ended: bool) {
        let no_topic = self.out.no_topic.since.map(|_| self.no_topic());
        let Some((status, topic)) = &mut self.status else {
            return;
        };
        if !ended && !status.due(Instant::now()) {
            return;
        }
        let messages = status.messages(counts, no_topic.as_deref(), ended);
        let topic = topic.clone();
        self.out.send_status(&topic, &messages);
    }

    /// Says in the run log, at once, that the broker does not have the topic (and again
    /// every [`NO_TOPIC_REMINDER`] while so), and when it has it again.
    fn tell_topic(&mut self) {
        let o = &self.out;
        let (w, t, b) = (&self.worker, &o.topic, &self.brokers);
        match (o.no_topic.since, self.told_no_topic) {
            (Some(_), None) => {
                let meanwhile = match &o.spool {
                    Some(s) => format!(
                        "its events wait in the spool {} and are sent once the topic is \
                         created (beyond spool_mb they are lost, counted)",
                        s.path().display()
                    ),
                    None => "its events are lost (counted) until the topic is created (no \
                             spool: spool_mb is 0)"
                        .to_string(),
                };
                tracing::warn!(
                    "{w}: {}: create it; the run goes on, {meanwhile}",
                    self.no_topic()
                );
                self.told_no_topic = Some(Instant::now());
            }
            (Some(since), Some(at)) if at.elapsed() >= NO_TOPIC_REMINDER => {
                tracing::warn!(
                    "{w}: topic '{t}' still does not exist on broker {b} ({:.0} s now): {} \
                     events wait in the spool, {} lost so far",
                    since.elapsed().as_secs_f64(),
                    o.spool.as_ref().map_or(0, |s| s.pending()),
                    o.lost()
                );
                self.told_no_topic = Some(Instant::now());
            }
            (None, Some(_)) => {
                tracing::info!(
                    "{w}: topic '{t}' exists now on broker {b}: delivery resumes ({} events \
                     wait in the spool)",
                    o.spool.as_ref().map_or(0, |s| s.pending())
                );
                self.told_no_topic = None;
            }
            _ => {}
        }
    }

    /// That the broker does not have the topic, named with the broker.
    fn no_topic(&self) -> String {
        format!(
            "topic '{}' does not exist on broker {}",
            self.out.topic, self.brokers
        )
    }

    /// Events lost because the broker does not have the topic: those librdkafka held when
    /// the broker first said so, those dropped meanwhile, and, when it still does not have
    /// it at the end, those undelivered then.
    fn lost_to_no_topic(&self) -> u64 {
        let o = &self.out;
        o.reports.failed_no_topic.load(Ordering::Relaxed)
            + o.no_topic.dropped
            + if o.no_topic.since.is_some() {
                o.undelivered
            } else {
                0
            }
    }
}

impl Exporter for KafkaExport {
    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        self.events += 1;
        let ts_ms = (event.meta.timestamp * 1e3).round() as i64;
        let msg = self
            .encoder
            .encode(event.data, &event.meta)
            .map_err(WorkerError::output)?;
        self.out.send(msg, ts_ms)?;
        self.tell_topic();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WorkerError> {
        // Delivery reports while no event comes (replay polls too, when there is a spool).
        self.out.producer.poll(Duration::ZERO);
        self.out.check_topic()?;
        self.out.replay()?;
        self.tell_topic();
        self.find_scale();
        let counts = self.counts(false);
        self.write_counts(&counts);
        self.status_round(&counts, false);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        if let Some(run) = &self.run {
            let msg = wire::run_stop(now_ms(), &run.run_name, &run.job_id, &uuid4());
            // A run stop that cannot be queued (the broker away, the queue full) does not
            // fail the run's data: it is said in the summary.
            if let Err(e) = self.command(&run.topic, &msg) {
                self.summary.push(format!("no run stop sent: {e}"));
            }
        }
        self.out.drain(self.drain)?;
        if let Some(s) = self.out.spool.as_ref().filter(|s| s.is_empty()) {
            let _ = std::fs::remove_file(s.path());
        }
        if self.status.is_some() {
            let counts = self.counts(true);
            self.status_round(&counts, true);
            // The last status is worth a moment, not the drain's whole time.
            let _ = self
                .out
                .producer
                .flush(self.drain.min(Duration::from_secs(5)));
        }
        let counts = self.counts(true);
        self.write_counts(&counts);
        let o = &self.out;
        let (delivered, failed) = (counts.delivered, counts.failed);
        self.summary.push(format!(
            "{}: {} events to Kafka topic '{}' as {} (source '{}'): {delivered} delivered, {} \
             lost ({failed} failed, {} spool full, {} refused, {} undelivered at the end), {} \
             went through the spool",
            self.worker,
            self.events,
            o.topic,
            self.encoder.format().id(),
            o.key,
            o.lost(),
            o.dropped,
            o.refused,
            o.undelivered,
            o.spooled,
        ));
        let no_topic = self.lost_to_no_topic();
        if o.no_topic.since.is_some() {
            self.summary.push(format!(
                "{}: {}: {no_topic} events lost to it",
                self.worker,
                self.no_topic()
            ));
        } else if no_topic > 0 {
            self.summary.push(format!(
                "{}: topic '{}' did not exist on broker {} for a while: {no_topic} events lost \
                 to it",
                self.worker, o.topic, self.brokers
            ));
        }
        if let Some(e) = o.reports.first_failure(self.drain) {
            self.summary.push(format!("first delivery failure: {e}"));
        }
        if let Some(e) = &o.first_refusal {
            self.summary.push(format!("first refusal: {e}"));
        }
        if o.undelivered > 0 {
            if let Some(s) = &o.spool {
                self.summary.push(format!(
                    "the undelivered events stay in {} (counted lost)",
                    s.path().display()
                ));
            }
        }
        Ok(())
    }

    fn summary(&self) -> Vec<String> {
        self.summary.clone()
    }

    fn events_dropped(&self) -> u64 {
        self.out.lost()
    }
}
