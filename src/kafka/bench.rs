//! `daq-engine bench kafka`: how fast `export.kafka`'s path (encode + idempotent `acks=all`
//! producer) puts events into a loopback broker, beside Python's confluent-kafka sending the
//! same payloads with the same batching and acks to the same broker in the same run, and the
//! publish → consumer latency.
//!
//! Cases: 64-byte feature records (ev44) and 64 KiB waveforms (da00, 4 float32 channels ×
//! 4096 samples). Each is timed from the first send until every message is acknowledged.
//! The broker is tansu (`$DAQ_TANSU` or the installed one), started on loopback for the run.
//!
//! Guarantees: every figure is measured in this run; a comparison that could not be made is
//! reported with its reason, never estimated.

use super::export::{producer, Reports};
use super::outlet::Outlet;
use super::tansu::Tansu;
use super::wire::{Encoder, Ev44Fields, Format};
use crate::dtype::{Dtype, Metadata};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The batching both clients use: linger 5 ms, batches up to 1 MiB (export.kafka's defaults).
const LINGER_MS: f64 = 5.0;
const BATCH_BYTES: usize = 1 << 20;
/// export.kafka's default client queue (`queue_mb`), kB.
const OUR_QUEUE_KB: u64 = 64_000;
/// The short queue given to the other client for comparison: export.kafka's default
/// `hold_kb` (two batches) in kB as librdkafka counts (`queue.buffering.max.kbytes`).
const SHORT_QUEUE_KB: u64 = (2 * BATCH_BYTES as u64).div_ceil(1000);
/// Latency: messages sent before the measured ones.
const WARM_UP: u64 = 500;

/// The Python producer: sends the payload in argv[3] (a file) argv[4] times to topic argv[2]
/// with the same settings and a client queue of argv[5] kB (0: librdkafka's default, 1 GiB or
/// 100 000 messages), prints `{"seconds": …, "delivered": …}`.
const PY_PRODUCER: &str = r#"
import json, sys, time
from confluent_kafka import Producer
broker, topic, path, n, queue_kb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
payload = open(path, "rb").read()
delivered = [0]
def report(err, msg):
    if err is None:
        delivered[0] += 1
conf = {"bootstrap.servers": broker, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "batch.size": 1 << 20, "compression.type": "none",
        "message.timeout.ms": 0}
if queue_kb:
    conf.update({"queue.buffering.max.kbytes": queue_kb,
                 "queue.buffering.max.messages": 2147483647})
p = Producer(conf)
key = b"bench"
p.produce(topic, b"warm-up", b"warm-up")  # as ours: set up before the clock starts
p.flush()
t = time.perf_counter()
cpu = time.process_time()
for i in range(n):
    while True:
        try:
            p.produce(topic, payload, key, on_delivery=report, timestamp=int(time.time() * 1000))
            break
        except BufferError:
            p.poll(0.001)
    p.poll(0)
p.flush()
print(json.dumps({"seconds": time.perf_counter() - t, "delivered": delivered[0],
                  "cpu_seconds": time.process_time() - cpu}))
"#;

/// One timed case.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Messages acknowledged.
    pub messages: u64,
    /// Message bytes sent.
    pub bytes: u64,
    /// First send to last acknowledgement.
    pub seconds: f64,
    /// CPU time of the client's process (every thread: its own and librdkafka's) over the
    /// timed sends.
    pub client_cpu_s: f64,
    /// CPU time of the broker over the same run (NaN: not read).
    pub broker_cpu_s: f64,
    /// Ours: sends that waited for room, and waits that ran out (the broker paused).
    pub waits: Option<(u64, u64)>,
}

impl Throughput {
    fn line(&self, who: &str) -> String {
        let per_msg = |s: f64| s * 1e6 / self.messages.max(1) as f64;
        let waits = self.waits.map_or(String::new(), |(w, out)| {
            format!("; {w} waits for room, {out} ran out")
        });
        format!(
            "    {who:<24} {:>9.0} events/s {:>8.1} MB/s  ({} messages of {} B in {:.2} s; \
             CPU per message: client {:.1} µs, broker {:.1} µs{waits})",
            self.messages as f64 / self.seconds,
            self.bytes as f64 / self.seconds / 1e6,
            self.messages,
            self.bytes / self.messages.max(1),
            self.seconds,
            per_msg(self.client_cpu_s),
            per_msg(self.broker_cpu_s)
        )
    }
}

/// CPU time of process `pid` so far, every thread, seconds, in clock ticks (`procfs`; 10 ms
/// with USER_HZ 100, 1–2 % of a timed run), NaN if it cannot be read.
fn cpu_s(pid: Option<u32>) -> f64 {
    pid.and_then(crate::procfs::Stat::read)
        .and_then(|s| s.cpu_seconds())
        .unwrap_or(f64::NAN)
}

fn features() -> Dtype {
    // 64 bytes: the shape of process.pulses' records with room for more fields.
    Dtype::parse([
        ("channel", "i4"),
        ("flags", "i4"),
        ("time", "f8"),
        ("height", "f8"),
        ("area", "f8"),
        ("width", "f8"),
        ("baseline", "f8"),
        ("rise", "f8"),
        ("chi2", "f8"),
    ])
    .expect("static dtype")
}

fn waveforms() -> Dtype {
    Dtype::parse([("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")]).expect("static")
}

/// export.kafka's producer with the bench's batching and export.kafka's default queue.
fn our_producer(
    broker: &str,
    reports: Arc<Reports>,
) -> Result<rdkafka::producer::BaseProducer<super::export::Counting>, String> {
    producer(
        broker,
        LINGER_MS,
        BATCH_BYTES,
        "none",
        OUR_QUEUE_KB,
        reports,
    )
    .map_err(|e| e.to_string())
}

/// Our path, `export.kafka`'s own [`Outlet`] with its defaults (waiting for room while the
/// client holds two batches): encode every event and send it; timed until all are
/// delivered.
fn ours(
    broker: &str,
    topic: &str,
    enc: &mut Encoder,
    data: &[u8],
    n: u64,
) -> Result<(Throughput, Vec<u8>), String> {
    let reports = Arc::new(Reports::default());
    let p = our_producer(broker, reports.clone())?;
    // One message delivered before the clock starts: the connection, the metadata and the
    // idempotent producer's id are set up once per run, not per event (the Python side does
    // the same).
    warm_up(&p, topic)?;
    let hold = super::export::hold_bytes(BATCH_BYTES);
    let mut out = Outlet::new(p, reports.clone(), topic.into(), "bench".into(), None, hold)?;
    // As the Python loop does when its queue is full (an exporter would spool).
    out.wait_when_full = true;
    let mut bytes = 0u64;
    let mut sample = Vec::new();
    let cpu = cpu_s(Some(std::process::id()));
    let t = Instant::now();
    for i in 0..n {
        let now = crate::clock::wall_clock();
        let meta = Metadata {
            counter: i as i64,
            timestamp: now,
            deadtime: 0.0,
        };
        let msg = enc.encode(data, &meta).map_err(|e| e.to_string())?;
        // A typical message for the other client: not the first, whose counter 0 is a
        // FlatBuffers default and left out (8 bytes shorter).
        if i == n.min(2) - 1 {
            sample = msg.to_vec();
        }
        bytes += msg.len() as u64;
        out.send(msg, (now * 1e3) as i64)
            .map_err(|e| e.to_string())?;
    }
    out.drain(Duration::from_secs(300))
        .map_err(|e| e.to_string())?;
    let seconds = t.elapsed().as_secs_f64();
    let client_cpu_s = cpu_s(Some(std::process::id())) - cpu;
    let delivered = reports.delivered.load(Ordering::Relaxed);
    if delivered != n || out.lost() > 0 {
        return Err(format!(
            "{delivered} of {n} delivered, {} lost, {} spooled",
            out.lost(),
            out.spooled
        ));
    }
    Ok((
        Throughput {
            messages: n,
            bytes,
            seconds,
            client_cpu_s,
            broker_cpu_s: f64::NAN,
            waits: Some((out.waits, out.overflows)),
        },
        sample,
    ))
}

/// Sends one message and waits until it is acknowledged.
fn warm_up(
    p: &rdkafka::producer::BaseProducer<super::export::Counting>,
    topic: &str,
) -> Result<(), String> {
    // Not an event: its report counts neither delivered nor reported bytes.
    let record = BaseRecord::with_opaque_to(topic, super::outlet::NOT_AN_EVENT)
        .key("warm-up")
        .payload(&b"warm-up"[..]);
    p.send(record).map_err(|(e, _)| e.to_string())?;
    p.flush(Duration::from_secs(60)).map_err(|e| e.to_string())
}

/// confluent-kafka sending `payload` `n` times, or why it could not.
fn python(
    broker: &str,
    topic: &str,
    payload: &[u8],
    n: u64,
    queue_kb: u64,
) -> Result<Throughput, String> {
    let py = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = std::env::temp_dir().join(format!("daq-bench-kafka-{}.bin", std::process::id()));
    std::fs::write(&path, payload).map_err(|e| e.to_string())?;
    let out = Command::new(&py)
        .args(["-c", PY_PRODUCER, broker, topic])
        .arg(&path)
        .arg(n.to_string())
        .arg(queue_kb.to_string())
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.map_err(|e| format!("cannot run {py}: {e}; set DAQ_PYTHON"))?;
    if !out.status.success() {
        return Err(format!(
            "{py} (needs confluent-kafka; set DAQ_PYTHON): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).map_err(|e| e.to_string())?;
    let delivered = v["delivered"].as_u64().unwrap_or(0);
    if delivered != n {
        return Err(format!("confluent-kafka: {delivered} of {n} delivered"));
    }
    Ok(Throughput {
        messages: n,
        bytes: payload.len() as u64 * n,
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        client_cpu_s: v["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
        broker_cpu_s: f64::NAN,
        waits: None,
    })
}

/// Publish → consume latency of feature messages at `rate` per second for `n` messages:
/// (p50, p99) in ms, from the send to the consumer's poll returning it.
fn latency(
    broker: &str,
    topic: &str,
    enc: &mut Encoder,
    data: &[u8],
    n: u64,
    rate: f64,
) -> Result<(f64, f64), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", "daq-bench-latency")
        .set("fetch.wait.max.ms", "5")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let p = our_producer(broker, Arc::new(Reports::default()))?;
    // Connections and metadata first, so the figures are of the steady state.
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let sent: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..n).map(|_| Default::default()).collect());
    let start = Instant::now();
    let sender = {
        let sent = sent.clone();
        let mut msgs = Vec::new();
        for i in 0..n {
            let meta = Metadata {
                counter: i as i64,
                timestamp: crate::clock::wall_clock(),
                deadtime: 0.0,
            };
            msgs.push(enc.encode(data, &meta).map_err(|e| e.to_string())?.to_vec());
        }
        let topic = topic.to_string();
        std::thread::spawn(move || {
            for (i, m) in msgs.iter().enumerate() {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                sent[i].store(start.elapsed().as_nanos() as u64, Ordering::Release);
                let _ = p.send(
                    BaseRecord::with_opaque_to(&topic, 1usize)
                        .key("bench")
                        .payload(m),
                );
                p.poll(Duration::ZERO);
            }
            let _ = p.flush(Duration::from_secs(60));
        })
    };
    let decoder =
        super::wire::Decoder::new(&features(), 1, ev44_fields()).map_err(|e| e.to_string())?;
    let mut record = vec![0u8; features().record_size()];
    let mut lat = Vec::with_capacity(n as usize);
    let deadline = Instant::now() + Duration::from_secs_f64(n as f64 / rate + 60.0);
    let mut received = 0u64;
    while received < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let at = start.elapsed().as_nanos() as u64;
            received += 1;
            let mut meta = Metadata::default();
            let counter = decoder
                .decode(m.payload().unwrap_or_default(), &mut record, &mut meta)
                .ok()
                .flatten();
            if let Some(c) = counter.and_then(|c| usize::try_from(c).ok()) {
                // The first WARM_UP messages (connection set-up, first fetch) are not counted.
                if (WARM_UP as usize..sent.len()).contains(&c) {
                    let s = sent[c].load(Ordering::Acquire);
                    lat.push(at.saturating_sub(s) as f64 / 1e6);
                }
            }
        }
    }
    let _ = sender.join();
    if received < n {
        return Err(format!("{received} of {n} messages came back"));
    }
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat[((lat.len() - 1) as f64 * f).round() as usize];
    Ok((q(0.5), q(0.99)))
}

fn ev44_fields() -> Option<Ev44Fields> {
    Ev44Fields::new(&features(), "time", 1.0, Some("channel")).ok()
}

/// The importer's dead time with `export.kafka` reading its buffer (issue 16: "the exporter
/// must not slow the importer"): this very program runs `simulate.pulses` paced at 300 Hz
/// of 4 × 4096 float32 (19.7 MB/s) into `raw` (64 slots, `block`), read by `export.kafka`
/// with its defaults into a fresh broker, for 10 s. One line: events, what became of them
/// and the dead time (`deadtime_total_s` of `raw`).
fn dead_time(bin: &std::path::Path) -> Result<String, String> {
    let broker = Tansu::start(bin, "bench-dead-time")?;
    broker.create_topic("raw", 1)?;
    let dir = std::env::temp_dir().join(format!("daq-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let setup = dir.join("dead_time.yaml");
    let text = format!(
        "target_directory: {}
Buffers:
  raw: {{slot_count: 64, data_length: 4096, policy: block,
         data_dtype: {{chA: float32, chB: float32, chC: float32, chD: float32}}}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: 300.0, realtime: true, pretrigger_samples: 100}}
  to_kafka:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{}', topic: raw}}
",
        dir.join("runs").display(),
        broker.address
    );
    let result = (|| {
        std::fs::write(&setup, text).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = Command::new(exe)
            .arg(&setup)
            .args(["--max-seconds", "10", "--quiet", "--no-tui"])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let run = std::fs::read_dir(dir.join("runs"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .ok_or("no run directory")?;
        let stats = crate::run_dir::last_snapshot(&run).ok_or("no statistics")?;
        let dead = stats
            .buffers
            .get("raw")
            .ok_or("no buffer 'raw' in the statistics")?
            .deadtime_total_s;
        let k =
            crate::run_dir::worker_kafka_counts(&run, "to_kafka", 1).ok_or("no Kafka counts")?;
        Ok(format!(
            "  importer dead time, simulate.pulses at 300 Hz of 64 KiB (19.7 MB/s) → 64 slots \
             (block) → export.kafka (defaults), 10 s: {dead:.3} s; {} events, {} delivered, {} \
             lost, {} through the spool, {} waits for room ({} ran out)\n",
            k.events, k.delivered, k.lost, k.spooled, k.waits_for_room, k.waits_ran_out
        ))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the benchmark; `events` scales the feature case (waveforms: events / 100).
pub fn run(events: u64) -> Result<String, String> {
    let bin = super::tansu::binary().ok_or_else(|| {
        format!(
            "no tansu broker: set DAQ_TANSU or run scripts/install-tansu.sh (installs {})",
            super::tansu::INSTALLED
        )
    })?;
    // Each timed run gets a broker of its own: the memory storage of one broker slowed down
    // as the runs before it filled it (the fourth 64 KiB run into one broker cost it 137 µs
    // of CPU a message against 66–76 µs), so a shared broker favoured whichever client ran
    // first. The broker's first messages are slower too (its first topic, its memory
    // growing): 20000 untimed ones go first.
    let fresh = || -> Result<Tansu, String> {
        let broker = Tansu::start(&bin, "bench")?;
        broker.create_topic("warm_up", 1)?;
        let dtype = features();
        let mut enc = Encoder::new(Format::Ev44, &dtype, 1, "bench/warm_up", ev44_fields())
            .map_err(|e| e.to_string())?;
        ours(
            &broker.address,
            "warm_up",
            &mut enc,
            &vec![0u8; dtype.record_size()],
            20_000,
        )?;
        Ok(broker)
    };
    let mut out = String::new();
    let cases = [
        (
            "64 B features (ev44)",
            features(),
            1usize,
            Format::Ev44,
            events,
        ),
        (
            "64 KiB waveforms (da00)",
            waveforms(),
            4096usize,
            Format::Da00,
            (events / 100).max(100),
        ),
    ];
    for (i, (name, dtype, len, format, n)) in cases.into_iter().enumerate() {
        let ev44 = (format == Format::Ev44).then(ev44_fields).flatten();
        let mut enc = Encoder::new(format, &dtype, len, "bench/source/buffer", ev44)
            .map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..dtype.record_size() * len)
            .map(|k| (k * 7 + 3) as u8)
            .collect();
        out.push_str(&format!(
            "  {name}, {n} events, acks=all, idempotent, linger 5 ms, batch 1 MiB; ours as \
             export.kafka sends (waiting for room while the client holds two batches), \
             theirs with librdkafka's default queue and again with a queue of two batches \
             ({SHORT_QUEUE_KB} kB); runs in the order ours, theirs, \
             theirs (our queue) twice, theirs, ours (each into a fresh broker), so none gains \
             from its place:\n"
        ));
        let mut mine = Vec::new();
        let mut theirs: Result<[Vec<Throughput>; 2], String> = Ok([Vec::new(), Vec::new()]);
        let mut sample = Vec::new();
        let order = [None, Some(0), Some(1), Some(1), Some(0), None];
        for (k, who) in order.into_iter().enumerate() {
            let topic = format!("run_{i}_{k}");
            let broker = fresh()?;
            let b = broker.address.clone();
            broker.create_topic(&topic, 1)?;
            let before = cpu_s(broker.pid());
            let Some(q) = who else {
                let (mut t, s) = ours(&b, &topic, &mut enc, &data, n)?;
                t.broker_cpu_s = cpu_s(broker.pid()) - before;
                out.push_str(&t.line("daq-engine (rdkafka)"));
                out.push('\n');
                mine.push(t);
                sample = s;
                continue;
            };
            let Ok(lists) = &mut theirs else {
                continue;
            };
            // `sample`: a message of the first run of ours.
            let queue_kb = [0, SHORT_QUEUE_KB][q];
            match python(&b, &topic, &sample, n, queue_kb) {
                Ok(mut t) => {
                    t.broker_cpu_s = cpu_s(broker.pid()) - before;
                    let who = match q {
                        0 => "confluent-kafka, default q".to_string(),
                        _ => format!("confluent-kafka, {queue_kb} kB"),
                    };
                    out.push_str(&t.line(&who));
                    out.push('\n');
                    lists[q].push(t);
                }
                Err(e) => theirs = Err(e),
            }
        }
        let seconds = |l: &[Throughput]| l.iter().map(|t| t.seconds).sum::<f64>();
        match theirs {
            Ok([wide, same]) => out.push_str(&format!(
                "    ratio (ours / theirs, events/s over both runs): {:.2} against librdkafka's \
                 default queue, {:.2} against a queue of two batches\n",
                seconds(&wide) / seconds(&mine),
                seconds(&same) / seconds(&mine)
            )),
            Err(e) => out.push_str(&format!("    confluent-kafka: not measured: {e}\n")),
        }
    }
    let topic = "latency";
    let broker = fresh()?;
    let b = broker.address.clone();
    broker.create_topic(topic, 1)?;
    let dtype = features();
    let mut enc = Encoder::new(Format::Ev44, &dtype, 1, "bench/latency", ev44_fields())
        .map_err(|e| e.to_string())?;
    let data = vec![0u8; dtype.record_size()];
    let (p50, p99) = latency(&b, topic, &mut enc, &data, WARM_UP + 3000, 1000.0)?;
    out.push_str(&format!(
        "  publish → consumer latency, 64 B features at 1000/s, 3000 events after {WARM_UP} \
         warm-up: p50 {p50:.2} ms, p99 {p99:.2} ms\n"
    ));
    out.push_str(&dead_time(&bin)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's "ours" is export.kafka as a setup without these keys runs it: a change
    /// of a default there must show here (the constants restated its defaults unchecked).
    #[test]
    fn the_bench_runs_export_kafkas_defaults() {
        use super::super::export::{BATCH_KB, LINGER_MS, QUEUE_MB};
        assert_eq!(LINGER_MS.default_value(), Some(super::LINGER_MS));
        assert_eq!(BATCH_KB.default_value(), Some(BATCH_BYTES / 1024));
        assert_eq!(
            QUEUE_MB.default_value().map(|mb| (mb * 1000.0) as u64),
            Some(OUR_QUEUE_KB)
        );
        // The Python producer is given the same batching.
        assert!(PY_PRODUCER.contains(r#""linger.ms": 5, "batch.size": 1 << 20,"#));
    }
}
