//! Kafka in whole runs of the real binary against a real broker (tansu 0.6.0, see
//! tests/tansu): `export.kafka` publishes in the ESS schemas, the ESS Python package and
//! confluent-kafka read every kind of message back and compare it with the run's own HDF5
//! file; `source.kafka` in a second engine reads two producers' topic back into HDF5, every
//! event exactly once and in order per source; a broker killed and started again mid-run
//! loses nothing (the exporter spools and replays).
//!
//! Needs `DAQ_TANSU` (and `DAQ_PYTHON` with confluent-kafka, ess-streaming-data-types and
//! h5py for the Python test); without them each test prints SKIPPED.

mod runs;
mod tansu;

use daq_engine::export::read_buffer;
use runs::{books_balance, finish_within, Dir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tansu::Broker;

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

/// Generous: the machine is shared and builds run beside the tests.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn start(dir: &Dir, name: &str, text: &str) -> Child {
    let setup = dir.write(name, text);
    Command::new(EXE)
        .arg(&setup)
        .args(["--quiet", "--no-tui"])
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The one run directory under `dir/target`.
fn run_dir(dir: &Dir, target: &str) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.0.join(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

fn kafka_counts(run: &Path, worker: &str) -> serde_json::Value {
    let path = run.join(format!("kafka_{worker}_0.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn python(test: &str) -> Option<String> {
    let py = std::env::var("DAQ_PYTHON").ok()?;
    let ok = Command::new(&py)
        .args(["-c", "import confluent_kafka, streaming_data_types, h5py"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED {test}: DAQ_PYTHON has no confluent-kafka, ess-streaming-data-types or h5py \
             (scripts/test.sh installs them)"
        );
        return None;
    }
    Some(py)
}

/// The Python side: reads every topic with confluent-kafka, decodes with the ESS package and
/// compares with the HDF5 files of the same run. Prints one JSON line of counts.
const CHECK_PY: &str = r#"
import json, sys, time
import h5py, numpy as np
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
from streaming_data_types import (deserialise_da00, deserialise_ev44, deserialise_pl72,
                                  deserialise_6s4t)

broker, run, setup_name = sys.argv[1], sys.argv[2], sys.argv[3]

def read(topic, expected):
    c = Consumer({"bootstrap.servers": broker, "group.id": "check-" + topic,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out, idle = [], time.time()
    # Until the expected count and then 2 s of quiet (a duplicate would show), at most 60 s.
    while time.time() - idle < (2 if len(out) >= expected else 60):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            raise SystemExit(f"{topic}: {m.error()}")
        out.append((m.key(), m.timestamp(), m.value()))
        idle = time.time()
    c.close()
    return out

def h5(name):
    with h5py.File(f"{run}/{name}.h5", "r") as f:
        return f[name]["data"][()], f[name]["metadata"][()]

raw, raw_meta = h5("raw")
pulses, pulses_meta = h5("pulses")
facts = {}

# da00: one variable per field, shape and dtype kept, metadata as daq_counter/daq_deadtime.
msgs = read("raw", len(raw))
assert len(msgs) == len(raw), (len(msgs), len(raw))
source = f"{setup_name}/to_kafka_raw/raw"
for i, (key, (ts_type, ts_ms), value) in enumerate(msgs):
    m = deserialise_da00(value)
    assert key.decode() == source and m.source_name == source, (key, m.source_name)
    assert m.timestamp_ns == round(raw_meta["timestamp"][i] * 1e3) * 10**6 or \
        abs(m.timestamp_ns / 1e9 - raw_meta["timestamp"][i]) < 1e-6, (i, m.timestamp_ns)
    assert ts_ms == round(raw_meta["timestamp"][i] * 1e3), (i, ts_ms)
    v = {x.name: x for x in m.data}
    for field in raw.dtype.names:
        assert v[field].data.dtype == raw.dtype[field], (field, v[field].data.dtype)
        assert v[field].shape == (raw.shape[1],), v[field].shape
        assert v[field].axes == ["sample"], v[field].axes
        assert np.array_equal(v[field].data, raw[field][i]), (i, field)
    assert v["daq_counter"].data == raw_meta["counter"][i]
    assert v["daq_deadtime"].data == raw_meta["deadtime"][i]
facts["da00"] = len(msgs)

# ev44: reference time = event time in ns, time of flight = time in ns, pixel = channel.
msgs = read("pulses", len(pulses))
assert len(msgs) == len(pulses), (len(msgs), len(pulses))
for i, (key, (ts_type, ts_ms), value) in enumerate(msgs):
    e = deserialise_ev44(value)
    assert e.source_name == f"{setup_name}/to_kafka_pulses/pulses"
    assert e.message_id == pulses_meta["counter"][i]
    assert abs(e.reference_time[0] / 1e9 - pulses_meta["timestamp"][i]) < 1e-6
    assert list(e.reference_time_index) == [0]
    assert list(e.time_of_flight) == [round(pulses["time"][i][0] * 1e9)], \
        (i, e.time_of_flight, pulses["time"][i])
    assert list(e.pixel_id) == [pulses["channel"][i][0]], (e.pixel_id, pulses["channel"][i])
facts["ev44"] = len(msgs)

# pl72 then 6s4t on the control topic, the setup as metadata.
msgs = read("control", 2)
assert len(msgs) == 2, len(msgs)
start, stop = deserialise_pl72(msgs[0][2]), deserialise_6s4t(msgs[1][2])
meta = json.loads(start.metadata)
assert "to_kafka_raw" in meta["setup"] and meta["setup_name"] == setup_name, meta
assert start.job_id == stop.job_id and start.run_name == stop.run_name, (start, stop)
assert start.run_name == run.rstrip("/").split("/")[-1]
assert start.instrument_name == setup_name
assert json.loads(start.nexus_structure)["children"][0]["children"][0]["module"] == "da00"
assert stop.stop_time >= start.start_time > 0
facts["control"] = 2
print(json.dumps(facts))
"#;

#[test]
fn python_reads_every_kind_we_send_and_it_matches_the_run_file() {
    let test = "python_reads_every_kind_we_send_and_it_matches_the_run_file";
    let Some(bin) = tansu::binary(test) else {
        return;
    };
    let Some(py) = python(test) else { return };
    let broker = Broker::start(&bin, "python");
    for t in ["raw", "pulses", "control"] {
        broker.create_topic(t, 1);
    }
    let dir = Dir::new("kafka-python");
    let b = &broker.address;
    let child = start(
        &dir,
        "kinds.yaml",
        &format!(
            "target_directory: kinds
Buffers:
  raw: {{slot_count: 64, data_length: 128, data_dtype: {{chA: float32, chB: int16}}}}
  pulses:
    slot_count: 256
    data_length: 1
    data_dtype: {{channel: int16, time: float64, height: float32, area: float32, width: float32}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: 300, seed: 11, pretrigger_samples: 30}}
  pulse_finder:
    function: process.pulses
    sources: [raw]
    sinks: [pulses]
    config: {{threshold: 0.05, sample_interval: 4.0e-9}}
  to_kafka_raw:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{b}', topic: raw, control_topic: control}}
  to_kafka_pulses:
    function: export.kafka
    sources: [pulses]
    config: {{brokers: '{b}', topic: pulses}}
  raw_file:
    function: export.hdf5
    sources: [raw]
    config: {{compression: none}}
  pulses_file:
    function: export.hdf5
    sources: [pulses]
    config: {{compression: none}}
"
        ),
    );
    let (code, text) = finish_within(child, RUN_LIMIT);
    assert_eq!(code, 0, "{text}\n{}", broker.log());
    let run = run_dir(&dir, "kinds");
    books_balance(&run);
    let raw = kafka_counts(&run, "to_kafka_raw");
    assert_eq!(raw["events"], 300, "{raw}");
    assert_eq!(raw["delivered"], 300, "{raw}");
    assert_eq!(raw["lost"], 0, "{raw}");
    assert_eq!(raw["format"], "da00");
    let pulses = kafka_counts(&run, "to_kafka_pulses");
    assert_eq!(pulses["format"], "ev44");
    assert!(pulses["events"].as_u64().unwrap() > 100, "{pulses}");
    assert_eq!(pulses["delivered"], pulses["events"], "{pulses}");
    let out = Command::new(&py)
        .args(["-c", CHECK_PY, b, run.to_str().unwrap(), "kinds"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("one JSON line");
    assert_eq!(facts["da00"], 300);
    assert_eq!(facts["ev44"], pulses["events"]);
    assert_eq!(facts["control"], 2);
}

/// A producing engine's setup: `n` seeded waveforms to `topic` as source `digitizer_<seed>`
/// and into its own HDF5 file.
fn producer_setup(broker: &str, target: &str, seed: u64, n: u64, extra: &str) -> String {
    format!(
        "target_directory: {target}
Buffers:
  raw: {{slot_count: 64, data_length: 64, data_dtype: {{chA: float32, chB: float32}}}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: {n}, seed: {seed}, rate: 400.0, realtime: true, pretrigger_samples: 20}}
  to_kafka:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{broker}', topic: waveforms, source_name: digitizer_{seed}{extra}}}
  raw_file:
    function: export.hdf5
    sources: [raw]
    config: {{compression: none}}
"
    )
}

/// Every event of `part` (its records and timestamp), in order.
fn events(file: &Path) -> Vec<(Vec<u8>, f64)> {
    let b = read_buffer(file, "raw").unwrap();
    let size = b.data.len() / b.events.max(1);
    b.data
        .chunks_exact(size.max(1))
        .zip(&b.metadata)
        .map(|(d, m)| (d.to_vec(), m.timestamp))
        .collect()
}

#[test]
fn two_producing_engines_and_a_consuming_one_every_event_once_in_order_per_source() {
    let Some(bin) = tansu::binary(
        "two_producing_engines_and_a_consuming_one_every_event_once_in_order_per_source",
    ) else {
        return;
    };
    let broker = Broker::start(&bin, "hosts");
    broker.create_topic("waveforms", 2);
    let dir = Dir::new("kafka-hosts");
    let b = broker.address.clone();
    // The consumer first, so it reads while the producers run; it ends 15 s after the last
    // message.
    let consumer = start(
        &dir,
        "analysis.yaml",
        &format!(
            "target_directory: analysis
Buffers:
  raw: {{slot_count: 256, data_length: 64, data_dtype: {{chA: float32, chB: float32}}}}
Workers:
  from_kafka:
    function: source.kafka
    sinks: [raw]
    config: {{brokers: '{b}', topic: waveforms, group_id: analysis, idle_end: 15.0}}
  raw_file:
    function: export.hdf5
    sources: [raw]
    config: {{compression: none}}
"
        ),
    );
    let one = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 600, ""));
    let two = start(&dir, "host2.yaml", &producer_setup(&b, "host2", 2, 500, ""));
    for (name, child) in [("host1", one), ("host2", two)] {
        let (code, text) = finish_within(child, RUN_LIMIT);
        assert_eq!(code, 0, "{name}: {text}");
    }
    let (code, text) = finish_within(consumer, RUN_LIMIT);
    assert_eq!(code, 0, "analysis: {text}");
    let got = events(&run_dir(&dir, "analysis").join("raw.h5"));
    let mut total = 0;
    for (host, n) in [("host1", 600), ("host2", 500)] {
        let run = run_dir(&dir, host);
        books_balance(&run);
        let counts = kafka_counts(&run, "to_kafka");
        assert_eq!(counts["delivered"], n, "{host}: {counts}");
        let sent = events(&run.join("raw.h5"));
        assert_eq!(sent.len(), n);
        // This source's events in the consumer's file: the same, in the same order.
        let mine: Vec<&(Vec<u8>, f64)> = got.iter().filter(|e| sent.contains(e)).collect();
        assert_eq!(mine.len(), n, "{host}: every event once");
        assert!(
            mine.iter().zip(&sent).all(|(a, b)| *a == b),
            "{host}: order kept"
        );
        total += n;
    }
    assert_eq!(got.len(), total, "nothing else, no duplicate");
}

/// The broker stops answering for 4 s in the middle of a run (SIGSTOP, as a hung or
/// unreachable broker): the exporter's small client queue fills, events go to the spool, and
/// when the broker answers again the spool is replayed — every event arrives once, in order.
/// (A tansu killed and started again comes back empty — its storage is in memory — and
/// without the producer's idempotence state, which a real Kafka keeps on disk; see README.)
#[test]
fn a_broker_away_mid_run_loses_nothing_the_spool_replays_in_order() {
    let Some(bin) = tansu::binary("a_broker_away_mid_run_loses_nothing_the_spool_replays_in_order")
    else {
        return;
    };
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let broker = Broker::start(&bin, "away-mid-run");
    broker.create_topic("waveforms", 1);
    let dir = Dir::new("kafka-away-mid-run");
    let b = broker.address.clone();
    // 2000 waveforms of 512 B at 400 Hz (5 s); the client holds 100 kB (~140 messages), so
    // a broker away for 4 s sends events to the spool.
    let n = 2000u64;
    let child = start(
        &dir,
        "restart.yaml",
        &producer_setup(&b, "restart", 3, n, ", queue_mb: 0.1, drain_seconds: 120.0"),
    );
    // Once events flow, the broker stops answering for 4 s.
    let t = std::time::Instant::now();
    while runs::processes_with(&dir.0.to_string_lossy()).len() < 3 && t.elapsed() < RUN_LIMIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    broker.pause(true);
    std::thread::sleep(Duration::from_secs(4));
    broker.pause(false);
    let (code, text) = finish_within(child, RUN_LIMIT);
    assert_eq!(code, 0, "{text}\n{}", broker.log());
    let run = run_dir(&dir, "restart");
    books_balance(&run);
    let counts = kafka_counts(&run, "to_kafka");
    assert_eq!(counts["lost"], 0, "{counts}");
    assert_eq!(counts["delivered"], n, "{counts}");
    assert!(
        counts["spooled"].as_u64().unwrap() > 0,
        "the broker was away for 4 s: events should have gone through the spool: {counts}"
    );
    assert!(
        !run.join("kafka_spool_to_kafka_0.bin").exists(),
        "an emptied spool is removed"
    );
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "away-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("waveforms", 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut seen: Vec<i64> = Vec::new();
    let mut quiet = std::time::Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) || seen.len() < n as usize {
        assert!(
            quiet.elapsed() < Duration::from_secs(60),
            "{} events",
            seen.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let msg =
                daq_engine::kafka::schemas::da00::root_as_da_00_data_array(m.payload().unwrap())
                    .expect("da00");
            let v = msg
                .data()
                .iter()
                .find(|v| v.name() == "daq_counter")
                .unwrap();
            seen.push(i64::from_le_bytes(v.data().bytes().try_into().unwrap()));
            quiet = std::time::Instant::now();
        }
    }
    let expected: Vec<i64> = (0..n as i64).collect();
    assert_eq!(seen, expected, "every event once, in order");
}

/// No broker at all (a closed port): the run is not held back, and every event the exporters
/// could not deliver is counted lost in their books — one exporter without a spool (its full
/// client queue drops), one with a spool that is still full at the end.
#[test]
fn a_broker_that_is_away_never_blocks_the_run_and_every_event_is_counted_lost() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Dir::new("kafka-away");
    let child = start(
        &dir,
        "away.yaml",
        &format!(
            "target_directory: away
Buffers:
  raw: {{slot_count: 16, data_length: 64, data_dtype: {{chA: float32, chB: float32}}}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: 500, seed: 5, pretrigger_samples: 20}}
  no_spool:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '127.0.0.1:{port}', queue_mb: 0.001, spool_mb: 0, drain_seconds: 1.0}}
  spool:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '127.0.0.1:{port}', queue_mb: 0.001, spool_mb: 10, drain_seconds: 1.0}}
  raw_file:
    function: export.hdf5
    sources: [raw]
"
        ),
    );
    let (code, text) = finish_within(child, RUN_LIMIT);
    assert_eq!(code, 0, "{text}");
    let run = run_dir(&dir, "away");
    let summary = books_balance(&run);
    assert_eq!(summary["events"]["raw"], 500, "{summary}");
    for worker in ["no_spool", "spool"] {
        let counts = kafka_counts(&run, worker);
        assert_eq!(counts["events"], 500, "{worker}: {counts}");
        assert_eq!(counts["delivered"], 0, "{worker}: {counts}");
        assert_eq!(counts["lost"], 500, "{worker}: {counts}");
        let books = &summary["readers"]["raw"][worker];
        assert_eq!(books["lost"], 500, "{worker}: {summary}");
        assert_eq!(books["delivered"], 0, "{worker}: {summary}");
    }
    let spool = kafka_counts(&run, "spool");
    assert!(spool["spooled"].as_u64().unwrap() > 400, "{spool}");
    assert!(
        kafka_counts(&run, "no_spool")["dropped_spool_full"]
            .as_u64()
            .unwrap()
            > 400,
        "without a spool a full client queue drops"
    );
    // The writer of the same buffer kept everything: the exporters did not hold it back.
    assert_eq!(
        summary["readers"]["raw"]["raw_file"]["lost"], 0,
        "{summary}"
    );
}

/// `daq-engine check` validates every key of both functions without connecting anywhere:
/// exit 2, each message positioned and naming the worker and key.
#[test]
fn check_refuses_bad_kafka_keys_without_a_broker() {
    let dir = Dir::new("kafka-check");
    let setup = dir.write(
        "bad.yaml",
        "Buffers:
  raw: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
  back: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
  big: {slot_count: 16, data_length: 64, data_dtype: {chA: '>f4'}}
Workers:
  sim:
    function: simulate.pulses
    sinks: [raw]
    config: {n_events: 10, pretrigger_samples: 20}
  k1:
    function: export.kafka
    sources: [raw]
    config: {compression: zstd}
  k2:
    function: export.kafka
    sources: [raw]
    config: {format: ev44}
  s1:
    function: source.kafka
    sinks: [back]
    config: {from: yesterday}
  d:
    function: export.drain
    sources: [back]
  s2:
    function: source.kafka
    sinks: [big]
  d2:
    function: export.drain
    sources: [big]
",
    );
    let out = Command::new(EXE)
        .arg("check")
        .arg(&setup)
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for needle in [
        "error: worker 'k1', config key 'compression': 'zstd'",
        "worker 'k2', config key 'time_field': the buffer has no field 'time'",
        "worker 's1', config key 'from': 'yesterday'",
        "worker 's2', config key 'format': field 'chA' (>f4): da00 carries little-endian numbers only",
    ] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
    // No run directory for a rejected setup.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1, "{text}");
}
