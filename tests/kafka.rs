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
use runs::{books_balance, check_in, finish_within, interrupt, succeeded, Dir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tansu::Broker;

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

/// Generous: the machine is shared and builds run beside the tests.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// What a test with a broker starts with: tansu (in memory, named `tag`) with `topics` of
/// `partitions` partitions each, a scratch directory `kafka-<tag>` and the broker's address.
/// `None`, with a SKIPPED line, without tansu.
fn with_broker(
    test: &str,
    tag: &str,
    topics: &[&str],
    partitions: u32,
) -> Option<(Broker, Dir, String)> {
    let bin = tansu::binary(test)?;
    let broker = Broker::start(&bin, tag);
    for t in topics {
        broker.create_topic(t, partitions);
    }
    let address = broker.address.clone();
    Some((broker, Dir::new(&format!("kafka-{tag}")), address))
}

/// Waits (at most [`RUN_LIMIT`]) for the engine `child` to end and asserts it exits 0; the
/// message is `what`, what the run said and `more` (the broker's log, say). What the run said.
fn ended(child: Child, what: &str, more: &str) -> String {
    let (code, text) = finish_within(child, RUN_LIMIT);
    assert_eq!(code, 0, "{what}{text}\n{more}");
    text
}

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

/// A consumer of partition 0 of `topic` from its first record, in group `group`, committing
/// nothing.
fn reader_from_start(broker: &str, group: &str, topic: &str) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    c
}

/// The event counter a da00 message carries (its `daq_counter` variable).
fn da00_counter(payload: &[u8]) -> i64 {
    let msg = daq_engine::kafka::schemas::da00::root_as_da_00_data_array(payload).expect("da00");
    let v = msg
        .data()
        .iter()
        .find(|v| v.name() == "daq_counter")
        .expect("daq_counter");
    i64::from_le_bytes(v.data().bytes().try_into().unwrap())
}

fn kafka_counts(run: &Path, worker: &str) -> serde_json::Value {
    let path = run.join(format!("kafka_{worker}_0.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The Kafka counts of `worker` agree everywhere: its file, summary.json, the last stats
/// line (what the page shows) and `daq-engine status`; final (`done`). Returns them.
fn kafka_counts_agree(run: &Path, worker: &str) -> serde_json::Value {
    let file = kafka_counts(run, worker);
    assert_eq!(file["done"], true, "{file}");
    let summary = runs::summary(run);
    assert_eq!(summary["kafka"][worker], file, "summary.json");
    let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    assert_eq!(last["ended"], true);
    assert_eq!(last["workers"][worker]["kafka"], file, "last stats line");
    let out = Command::new(EXE).arg("status").arg(run).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<String> = tansu::COUNT_COLUMNS
        .iter()
        .map(|k| file[k].to_string())
        .collect();
    assert!(
        text.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 8 && cols[0] == worker && cols[1..7] == row[..]
        }),
        "status shows {row:?} for {worker}: {text}"
    );
    file
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
import json, math, sys, time
import h5py, numpy as np
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
from streaming_data_types import (deserialise_da00, deserialise_ev44, deserialise_pl72,
                                  deserialise_6s4t, deserialise_f144, deserialise_al00,
                                  deserialise_x5f2)
from streaming_data_types.alarm_al00 import Severity

broker, run, setup_name = sys.argv[1], sys.argv[2], sys.argv[3]

def rounded(x):
    """As the exporter rounds (Rust's f64::round, halves away from zero); Python's round()
    takes a half to the even neighbour, and one timestamp in a few thousand is a half ms."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))

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
    assert m.timestamp_ns == rounded(raw_meta["timestamp"][i] * 1e3) * 10**6 or \
        abs(m.timestamp_ns / 1e9 - raw_meta["timestamp"][i]) < 1e-6, (i, m.timestamp_ns)
    assert ts_ms == rounded(raw_meta["timestamp"][i] * 1e3), (i, ts_ms)
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
    assert list(e.time_of_flight) == [rounded(pulses["time"][i][0] * 1e9)], \
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

# The status topic: f144 values, al00 alarms, x5f2 status, compared with the run's own files.
stats = [json.loads(l) for l in open(f"{run}/stats.jsonl") if l.strip()]
counts = json.load(open(f"{run}/kafka_to_kafka_raw_0.json"))
msgs = read("status", 1)
values, alarms, status = {}, [], []
for key, (ts_type, ts_ms), value in msgs:
    kind = value[4:8]
    if kind == b"f144":
        v = deserialise_f144(value)
        assert key.decode() == v.source_name
        values.setdefault(v.source_name, []).append(v.value)
    elif kind == b"al00":
        alarms.append(deserialise_al00(value))
    elif kind == b"x5f2":
        status.append(deserialise_x5f2(value))
    else:
        raise SystemExit(f"status: unexpected {kind}")
# Every buffer value is one the supervisor's stats showed, counts never go back.
for buf in ["raw", "pulses", "beat"]:
    for field in ["events_in", "lost", "rate_hz", "fill", "deadtime"]:
        got = values[f"{setup_name}/{buf}/{field}"]
        seen = [s["buffers"][buf][field] for s in stats if buf in s.get("buffers", {})]
        # (serde_json reads a float to within one unit in the last place)
        assert all(any(abs(g - x) <= 1e-12 * abs(x) for x in seen) for g in got), \
            (buf, field, got, seen)
        if field in ("events_in", "lost"):
            assert list(got) == sorted(got), (buf, field, got)
assert values[f"{setup_name}/digitizer/events"][-1] <= 300
# Never paused: the pause total says so.
assert set(values[f"{setup_name}/paused_s"]) == {0.0}, values[f"{setup_name}/paused_s"]
own = f"{setup_name}/to_kafka_raw/raw"
for field in ["events", "delivered", "lost", "spooled"]:
    assert values[f"{own}/kafka_{field}"][-1] == counts[field], (field, values[f"{own}/kafka_{field}"], counts)
# The restarted worker raised a MINOR alarm; nothing was lost, so no MAJOR one.
restarted = [a for a in alarms if a.source == f"{setup_name}/beat_source"]
assert restarted and restarted[0].severity == Severity.MINOR, alarms
assert "started again 1 time" in restarted[0].message, restarted
assert not [a for a in alarms if a.severity == Severity.MAJOR], alarms
# x5f2: the last status is the final one, with the counts of kafka_<worker>_0.json.
last = status[-1]
assert (last.software_name, last.service_id, last.update_interval) == ("daq-engine", own, 500), last
final = json.loads(last.status_json)
assert final["ended"] and final["kafka"]["delivered"] == counts["delivered"] == 300, final
assert final["run"] == run.rstrip("/").split("/")[-1]
assert (final["paused"], final["paused_s"]) == (False, 0.0), final
facts["f144"] = sum(len(v) for v in values.values())
facts["al00"] = len(alarms)
facts["x5f2"] = len(status)
print(json.dumps(facts))
"#;

#[test]
fn python_reads_every_kind_we_send_and_it_matches_the_run_file() {
    let test = "python_reads_every_kind_we_send_and_it_matches_the_run_file";
    let Some((broker, dir, b)) =
        with_broker(test, "python", &["raw", "pulses", "control", "status"], 1)
    else {
        return;
    };
    let Some(py) = python(test) else { return };
    let child = start(
        &dir,
        "kinds.yaml",
        &format!(
            "target_directory: kinds
options: {{stats_interval: 0.2}}
Buffers:
  raw: {{slot_count: 64, data_length: 128, data_dtype: {{chA: float32, chB: int16}}}}
  beat: {{slot_count: 16, data_length: 1, data_dtype: {{a: int64, b: int64}}}}
  pulses:
    slot_count: 256
    data_length: 1
    data_dtype: {{channel: int16, time: float64, height: float32, area: float32, width: float32}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: 300, seed: 11, pretrigger_samples: 30, rate: 100.0, realtime: true}}
  beat_source:
    function: bench.source
    sinks: [beat]
    config: {{n_events: 100, fail_at: 40}}
    restart: on-failure
  beat_sink:
    function: bench.sink
    sources: [beat]
  pulse_finder:
    function: process.pulses
    sources: [raw]
    sinks: [pulses]
    config: {{threshold: 0.05, sample_interval: 4.0e-9}}
  to_kafka_raw:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{b}', topic: raw, control_topic: control, status_topic: status,
              status_interval: 0.5}}
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
    ended(child, "", &broker.log());
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
    let out = succeeded(
        Command::new(&py)
            .args(["-c", CHECK_PY, &b, run.to_str().unwrap(), "kinds"])
            .output()
            .unwrap(),
        "python check: ",
    );
    let facts: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("one JSON line");
    assert_eq!(facts["da00"], 300);
    assert_eq!(facts["ev44"], pulses["events"]);
    assert_eq!(facts["control"], 2);
    // The last status, at least (the periodic ones depend on the flush cadence under load).
    assert!(facts["x5f2"].as_u64().unwrap() >= 1, "{facts}");
    assert!(facts["al00"].as_u64().unwrap() >= 1, "{facts}");
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

/// Every event of the run's `raw.h5` (its records and timestamp), in order.
fn events(run: &Path) -> Vec<(Vec<u8>, f64)> {
    let b = read_buffer(run.join("raw.h5"), "raw").unwrap();
    let size = b.data.len() / b.events.max(1);
    b.data
        .chunks_exact(size.max(1))
        .zip(&b.metadata)
        .map(|(d, m)| (d.to_vec(), m.timestamp))
        .collect()
}

/// An event of [`events`] as a hash key (its bytes and the bits of its time).
fn hashable(e: &(Vec<u8>, f64)) -> (&[u8], u64) {
    (&e.0, e.1.to_bits())
}

#[test]
fn two_producing_engines_and_a_consuming_one_every_event_once_in_order_per_source() {
    let test = "two_producing_engines_and_a_consuming_one_every_event_once_in_order_per_source";
    let Some((_broker, dir, b)) = with_broker(test, "hosts", &["waveforms"], 2) else {
        return;
    };
    // The consumer first, so it reads while the producers run; it ends 15 s after the last
    // message.
    let consumer = start(&dir, "analysis.yaml", &consumer_setup(&b, "analysis", 15.0));
    // digitizer_1 and digitizer_4 are keyed to different partitions (CRC32 of the key).
    let one = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 600, ""));
    let two = start(&dir, "host2.yaml", &producer_setup(&b, "host2", 4, 500, ""));
    for (name, child) in [("host1", one), ("host2", two)] {
        ended(child, &format!("{name}: "), "");
    }
    ended(consumer, "analysis: ", "");
    let got = events(&run_dir(&dir, "analysis"));
    let mut total = 0;
    for (host, n) in [("host1", 600), ("host2", 500)] {
        let run = run_dir(&dir, host);
        books_balance(&run);
        let counts = kafka_counts(&run, "to_kafka");
        assert_eq!(counts["delivered"], n, "{host}: {counts}");
        let sent = events(&run);
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

/// The analysis setup of a consuming engine: `source.kafka` in consumer group `analysis`
/// into HDF5, ending `idle_end` s after the last message.
fn consumer_setup(broker: &str, target: &str, idle_end: f64) -> String {
    format!(
        "target_directory: {target}
Buffers:
  raw: {{slot_count: 256, data_length: 64, data_dtype: {{chA: float32, chB: float32}}}}
Workers:
  from_kafka:
    function: source.kafka
    sinks: [raw]
    config: {{brokers: '{broker}', topic: waveforms, group_id: analysis, idle_end: {idle_end}}}
  raw_file:
    function: export.hdf5
    sources: [raw]
    config: {{compression: none}}
"
    )
}

/// Two consuming engines in one consumer group share the topic's two partitions: each gets
/// one producer's stream (the sources are keyed to different partitions), and across both
/// every event of both producers arrives exactly once, in order per source.
#[test]
fn two_consuming_engines_in_one_group_share_the_partitions_every_event_once() {
    let test = "two_consuming_engines_in_one_group_share_the_partitions_every_event_once";
    let Some((_broker, dir, b)) = with_broker(test, "group", &["waveforms"], 2) else {
        return;
    };
    let a = start(&dir, "a.yaml", &consumer_setup(&b, "analysis_a", 15.0));
    let c = start(&dir, "c.yaml", &consumer_setup(&b, "analysis_c", 15.0));
    // Before anything is produced, the group has settled: each consumer's last assignment
    // (source.kafka logs them) is one partition.
    wait_shared(&dir, &["analysis_a", "analysis_c"], 2);
    // Keys digitizer_1 and digitizer_4: librdkafka's default partitioner (CRC32 of the key)
    // puts them on partitions 1 and 0.
    let one = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 600, ""));
    let two = start(&dir, "host2.yaml", &producer_setup(&b, "host2", 4, 500, ""));
    for (name, child) in [
        ("host1", one),
        ("host2", two),
        ("analysis_a", a),
        ("analysis_c", c),
    ] {
        ended(child, &format!("{name}: "), "");
    }
    let got: Vec<Vec<(Vec<u8>, f64)>> = ["analysis_a", "analysis_c"]
        .iter()
        .map(|t| events(&run_dir(&dir, t)))
        .collect();
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "both consumers got a share: {} and {}",
        got[0].len(),
        got[1].len()
    );
    let mut total = 0;
    for (host, n) in [("host1", 600), ("host2", 500)] {
        let run = run_dir(&dir, host);
        assert_eq!(kafka_counts(&run, "to_kafka")["delivered"], n, "{host}");
        let sent = events(&run);
        let mut seen = 0;
        for g in &got {
            // Where this consumer's events of this source stand in what was sent: rising.
            let at: Vec<usize> = g
                .iter()
                .filter_map(|e| sent.iter().position(|s| s == e))
                .collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{host}: order kept");
            seen += at.len();
        }
        assert_eq!(seen, n, "{host}: every event once across both consumers");
        total += n;
    }
    assert_eq!(
        got[0].len() + got[1].len(),
        total,
        "nothing else, no duplicate"
    );
}

/// A run of `source.kafka` paused while its topic fills takes every record after the
/// resume, once and in order: the topic keeps them (the partitions are paused at the client).
/// Before, the engine went on taking records while paused and discarded them, as it does a
/// live device's, and their offsets were committed: lost for good.
#[test]
fn a_paused_consumer_takes_every_record_after_the_resume() {
    let test = "a_paused_consumer_takes_every_record_after_the_resume";
    let Some((_broker, dir, b)) = with_broker(test, "paused", &["waveforms"], 1) else {
        return;
    };
    let consumer = start(&dir, "analysis.yaml", &consumer_setup(&b, "analysis", 15.0));
    wait_shared(&dir, &["analysis"], 1);
    let run = runs::run_dirs_in(&dir.0.join("analysis")).pop().unwrap();
    runs::pause_a_while(&run, || {
        let host = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 300, ""));
        ended(host, "host1: ", "");
    });
    ended(consumer, "analysis: ", "");
    let sent = events(&run_dir(&dir, "host1"));
    assert_eq!(sent.len(), 300);
    let got = events(&run_dir(&dir, "analysis"));
    assert_eq!(
        got.len(),
        sent.len(),
        "every record produced while the consumer was paused, taken after the resume"
    );
    assert!(got == sent, "in order, each once");
}

/// A `source.kafka` reading `from: beginning` (every partition assigned, no group) killed
/// after it took a first producer's 100 records, started again: it goes on after them.
/// Before, the new process began at the beginning again and wrote the first 100 records
/// into the run a second time. (In a group, a process started again gets its partition
/// only once the group drops the killed member, after librdkafka's session timeout of
/// 45 s: too long for this suite.)
#[test]
fn a_restarted_source_takes_no_record_twice() {
    let test = "a_restarted_source_takes_no_record_twice";
    let Some((_broker, dir, b)) = with_broker(test, "resume", &["waveforms"], 1) else {
        return;
    };
    let text = consumer_setup(&b, "analysis", 10.0)
        .replace("group_id: analysis", "from: beginning")
        .replace(
            "    sinks: [raw]\n    config: {brokers",
            "    sinks: [raw]\n    restart: on-failure\n    config: {brokers",
        );
    assert!(text.contains("from: beginning") && text.contains("restart: on-failure"));
    let consumer = start(&dir, "analysis.yaml", &text);
    let first = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 100, ""));
    ended(first, "host1: ", "");
    let run = runs::run_dirs_in(&dir.0.join("analysis")).pop().unwrap();
    runs::wait_until("the first 100 records in the run", RUN_LIMIT, || {
        runs::last_stats(&run, "raw").1 >= 100
    });
    let source = runs::the_process(&run, "from_kafka 0");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(source as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = start(&dir, "host2.yaml", &producer_setup(&b, "host2", 4, 100, ""));
    ended(second, "host2: ", "");
    let (_, out) = finish_within(consumer, RUN_LIMIT);
    let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap();
    assert!(log.contains("starting it again"), "{out}\n{log}");
    assert!(
        log.contains(
            "goes on after the records its earlier process took: partition 0 at offset 100"
        ),
        "{log}"
    );
    let mut sent = events(&run_dir(&dir, "host1"));
    sent.extend(events(&run_dir(&dir, "host2")));
    let got = events(&run);
    assert_eq!(got.len(), sent.len(), "each record once\n{log}");
    assert!(got == sent, "in order");
}

/// A `source.kafka` in a group whose only partition another member holds (as the group
/// holds a killed member's until its session times out) ended after `idle_end` with 0
/// events and exit 0, the topic's records left unread without a word (a tester). `idle_end`
/// counts only while partitions are assigned now: it waits, says so, and takes the records
/// once the other member leaves.
#[test]
fn a_source_without_partitions_waits_for_them_instead_of_ending_idle() {
    use rdkafka::consumer::Consumer;
    let test = "a_source_without_partitions_waits_for_them_instead_of_ending_idle";
    let Some((_broker, dir, b)) = with_broker(test, "unassigned", &["waveforms"], 1) else {
        return;
    };
    // The other member: in group `analysis`, holding the topic's one partition.
    let other: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "analysis")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    other.subscribe(&["waveforms"]).unwrap();
    runs::wait_until("the other member holds the partition", RUN_LIMIT, || {
        let _ = other.poll(Duration::from_millis(100));
        other.assignment().is_ok_and(|a| a.count() == 1)
    });
    let host = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, 100, ""));
    ended(host, "host1: ", "");
    let mut consumer = start(&dir, "analysis.yaml", &consumer_setup(&b, "analysis", 3.0));
    let target = dir.0.join("analysis");
    runs::wait_until("the run directory", RUN_LIMIT, || {
        target.is_dir() && !runs::run_dirs_in(&target).is_empty()
    });
    let run = runs::run_dirs_in(&target).pop().unwrap();
    // Held until the run says it waits, or has ended (as it did: after 3 s, no events).
    runs::wait_until("the run waits for partitions or ends", RUN_LIMIT, || {
        let _ = other.poll(Duration::from_millis(10));
        let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap_or_default();
        log.contains("no partition assigned for") || consumer.try_wait().unwrap().is_some()
    });
    drop(other);
    let out = ended(consumer, "analysis: ", "");
    let (got, sent) = (events(&run), events(&run_dir(&dir, "host1")));
    assert_eq!(got.len(), sent.len(), "every record\n{out}");
    assert!(got == sent, "in order");
}

/// The last partition assignment `source.kafka` logged in the run under `dir/target`, if
/// any yet.
fn last_assignment(dir: &Dir, target: &str) -> Option<Vec<i32>> {
    std::fs::read_dir(dir.0.join(target))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("daq-engine.log")).ok())
        .find_map(|log| {
            log.lines()
                .rev()
                .find_map(|l| l.split_once("assigned partitions of 'waveforms': "))
                .map(|(_, p)| {
                    p.trim()
                        .trim_matches(['[', ']'])
                        .split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect()
                })
        })
}

/// Waits (up to [`RUN_LIMIT`]) until the consumers under `targets` share `partitions`
/// partitions: each has a part of them, together all, none twice.
fn wait_shared(dir: &Dir, targets: &[&str], partitions: i32) {
    let t = std::time::Instant::now();
    loop {
        let now: Vec<Option<Vec<i32>>> = targets.iter().map(|t| last_assignment(dir, t)).collect();
        let mut all: Vec<i32> = now.iter().flatten().flatten().copied().collect();
        all.sort();
        if now
            .iter()
            .all(|a| a.as_ref().is_some_and(|a| !a.is_empty()))
            && all == (0..partitions).collect::<Vec<_>>()
        {
            return;
        }
        assert!(
            t.elapsed() < RUN_LIMIT,
            "the group did not share the {partitions} partitions: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A rebalance while events flow: consumer A reads all four partitions alone, consumer B
/// joins (the group splits the partitions), then A, fallen behind, leaves (stopped with
/// SIGINT; B takes everything) — all while two producers send. Every event arrives exactly once across
/// both, in order per source, and for each source all that A wrote comes before all that B
/// wrote: each consumer committed exactly what it had written into its ring when its
/// partitions were taken away.
#[test]
fn a_rebalance_mid_stream_a_member_joins_and_one_leaves_every_event_once() {
    let Some(bin) =
        tansu::binary("a_rebalance_mid_stream_a_member_joins_and_one_leaves_every_event_once")
    else {
        return;
    };
    // SQLite storage: tansu's in-memory engine answers a fetch from the middle of a stored
    // batch with the batches after it, so a consumer starting at an offset inside a batch —
    // as B does at A's last commit — would miss the rest of that batch (see README).
    let dir = Dir::new("kafka-rebalance");
    let broker = Broker::start_sqlite(&bin, "rebalance", &dir.0.join("broker"));
    broker.create_topic("waveforms", 4);
    let b = broker.address.clone();
    let a = start(&dir, "a.yaml", &consumer_setup(&b, "analysis_a", 20.0));
    wait_shared(&dir, &["analysis_a"], 4);
    // Keys digitizer_1 and digitizer_2 go to partitions 3 and 1 of 4 (CRC32 of the key): the
    // range assignor gives two members [0, 1] and [2, 3], one stream each. 12000 events at
    // 400 Hz: 30 s of flow.
    let n = 12_000u64;
    let mut one = start(&dir, "host1.yaml", &producer_setup(&b, "host1", 1, n, ""));
    let mut two = start(&dir, "host2.yaml", &producer_setup(&b, "host2", 2, n, ""));
    let mut flowing = |what: &str| {
        assert!(
            one.try_wait().unwrap().is_none() && two.try_wait().unwrap().is_none(),
            "the producers ended before {what}: the rebalance was not mid-stream"
        );
    };
    std::thread::sleep(Duration::from_secs(4));
    flowing("B joined");
    let c = start(&dir, "b.yaml", &consumer_setup(&b, "analysis_b", 20.0));
    wait_shared(&dir, &["analysis_a", "analysis_b"], 4);
    // A falls behind before it leaves, as a busy analysis host does: its writer is held
    // (SIGSTOP) for 3 s, its ring fills, and its client fetches on into its own queue. Then A
    // is stopped (SIGINT) and its writer let go: what A fetched but never wrote into its ring
    // must be read by B.
    let run_a = run_dir(&dir, "analysis_a");
    let writer = runs::processes_with(&format!("{} raw_file 0", run_a.join("plan.json").display()));
    assert_eq!(writer.len(), 1, "{writer:?}");
    let signal = |pid: u32, sig| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap()
    };
    signal(writer[0], nix::sys::signal::Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    flowing("A left");
    interrupt(&a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(writer[0], nix::sys::signal::Signal::SIGCONT);
    ended(a, "analysis_a: ", "");
    wait_shared(&dir, &["analysis_b"], 4);
    flowing("B took A's partitions");
    for (name, child) in [("host1", one), ("host2", two), ("analysis_b", c)] {
        ended(child, &format!("{name}: "), "");
    }
    for t in ["analysis_a", "analysis_b"] {
        books_balance(&run_dir(&dir, t));
    }
    let got: Vec<Vec<(Vec<u8>, f64)>> = ["analysis_a", "analysis_b"]
        .iter()
        .map(|t| events(&run_dir(&dir, t)))
        .collect();
    for host in ["host1", "host2"] {
        let run = run_dir(&dir, host);
        assert_eq!(kafka_counts(&run, "to_kafka")["delivered"], n, "{host}");
        let sent = events(&run);
        assert_eq!(sent.len() as u64, n, "{host}");
        let index: std::collections::HashMap<(&[u8], u64), usize> = sent
            .iter()
            .enumerate()
            .map(|(i, e)| (hashable(e), i))
            .collect();
        // Where each consumer's events of this source stand in what was sent.
        let at: Vec<Vec<usize>> = got
            .iter()
            .map(|g| {
                g.iter()
                    .filter_map(|e| index.get(&hashable(e)).copied())
                    .collect()
            })
            .collect();
        for (who, at) in ["A", "B"].iter().zip(&at) {
            let back = at.windows(2).find(|w| w[0] >= w[1]);
            assert!(
                back.is_none(),
                "{host}: {who} got them in order, each once; not {back:?} (places in what was sent)"
            );
        }
        assert!(
            !at[0].is_empty() && !at[1].is_empty(),
            "{host}: both consumers read part of it: {} and {}",
            at[0].len(),
            at[1].len()
        );
        assert_eq!(
            at[0].last().map(|a| a + 1),
            at[1].first().copied(),
            "{host}: B goes on right after A's last: nothing twice, nothing skipped"
        );
        assert_eq!(
            (at[0].len() + at[1].len()) as u64,
            n,
            "{host}: every event once across both consumers"
        );
    }
    assert_eq!(
        (got[0].len() + got[1].len()) as u64,
        2 * n,
        "nothing else, no duplicate"
    );
}

/// The broker stops answering for 4 s in the middle of a run (SIGSTOP, as a hung or
/// unreachable broker): the exporter's small client queue fills, events go to the spool, and
/// when the broker answers again the spool is replayed — every event arrives once, in order.
/// (A broker killed and restarted: the next test.)
#[test]
fn a_broker_away_mid_run_loses_nothing_the_spool_replays_in_order() {
    use rdkafka::message::Message;
    let test = "a_broker_away_mid_run_loses_nothing_the_spool_replays_in_order";
    let Some((broker, dir, b)) = with_broker(test, "away-mid-run", &["waveforms"], 1) else {
        return;
    };
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
    ended(child, "", &broker.log());
    let run = run_dir(&dir, "restart");
    books_balance(&run);
    let counts = kafka_counts_agree(&run, "to_kafka");
    assert_eq!(counts["lost"], 0, "{counts}");
    assert_eq!(counts["delivered"], n, "{counts}");
    assert_eq!(counts["replayed"], counts["spooled"], "{counts}");
    assert!(
        counts["spooled"].as_u64().unwrap() > 0,
        "the broker was away for 4 s: events should have gone through the spool: {counts}"
    );
    assert!(
        !run.join("kafka_spool_to_kafka_0.bin").exists(),
        "an emptied spool is removed"
    );
    let c = reader_from_start(&b, "away-check", "waveforms");
    let mut seen: Vec<i64> = Vec::new();
    let mut quiet = std::time::Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) || seen.len() < n as usize {
        assert!(
            quiet.elapsed() < Duration::from_secs(60),
            "{} events",
            seen.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(da00_counter(m.payload().unwrap()));
            quiet = std::time::Instant::now();
        }
    }
    let expected: Vec<i64> = (0..n as i64).collect();
    assert_eq!(seen, expected, "every event once, in order");
}

/// The broker is killed (SIGKILL) in the middle of a run and started again a few seconds
/// later on the same port and SQLite file, while two producing engines (`block` buffers,
/// small client queues) send and a consuming engine reads: the producers spool while it is
/// away and replay in order when it is back, the consumer goes on where it was, and every
/// event of both arrives exactly once, in order per source. Each exporter's counts add up
/// (delivered = events, spooled = replayed, nothing dropped or lost) and match what the
/// consumer got.
#[test]
fn a_broker_killed_and_restarted_mid_run_loses_nothing_every_event_once() {
    let test = "a_broker_killed_and_restarted_mid_run_loses_nothing_every_event_once";
    let Some(bin) = tansu::binary(test) else {
        return;
    };
    let dir = Dir::new("kafka-restart");
    let mut broker = Broker::start_sqlite(&bin, "restart", &dir.0.join("broker"));
    broker.create_topic("waveforms", 2);
    let b = broker.address.clone();
    let consumer = start(&dir, "analysis.yaml", &consumer_setup(&b, "analysis", 20.0));
    wait_shared(&dir, &["analysis"], 2);
    // 4000 waveforms of 512 B at 400 Hz (10 s) from each host; the client holds 100 kB
    // (~140 messages), so a broker away for 4 s sends events to the spool.
    let n = 4000u64;
    let setup = |target: &str, seed: u64| {
        producer_setup(&b, target, seed, n, ", queue_mb: 0.1, drain_seconds: 120.0").replace(
            "data_dtype: {chA: float32, chB: float32}}",
            "data_dtype: {chA: float32, chB: float32}, policy: block}",
        )
    };
    // digitizer_1 and digitizer_4: partitions 1 and 0.
    let mut one = start(&dir, "host1.yaml", &setup("host1", 1));
    let mut two = start(&dir, "host2.yaml", &setup("host2", 4));
    // Once both have delivered events, the broker is killed.
    let delivered = |target: &str| {
        std::fs::read_dir(dir.0.join(target))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("kafka_to_kafka_0.json")).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .find_map(|v| v["delivered"].as_u64())
            .unwrap_or(0)
    };
    let t = std::time::Instant::now();
    while delivered("host1") < 200 || delivered("host2") < 200 {
        assert!(t.elapsed() < RUN_LIMIT, "the producers delivered nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.kill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        one.try_wait().unwrap().is_none() && two.try_wait().unwrap().is_none(),
        "the producers ended while the broker was away: not mid-run"
    );
    broker.restart();
    let mut consumed = 0;
    for (name, child) in [("host1", one), ("host2", two), ("analysis", consumer)] {
        ended(child, &format!("{name}: "), &broker.log());
    }
    let got = events(&run_dir(&dir, "analysis"));
    for host in ["host1", "host2"] {
        let run = run_dir(&dir, host);
        books_balance(&run);
        let counts = kafka_counts_agree(&run, "to_kafka");
        eprintln!("{host}: {counts}");
        assert_eq!(counts["events"], n, "{host}: {counts}");
        assert_eq!(counts["delivered"], n, "{host}: {counts}");
        assert_eq!(counts["lost"], 0, "{host}: {counts}");
        assert_eq!(counts["dropped_spool_full"], 0, "{host}: {counts}");
        assert_eq!(counts["replayed"], counts["spooled"], "{host}: {counts}");
        assert!(
            counts["spooled"].as_u64().unwrap() > 0,
            "{host}: the broker was away for 4 s: events should have gone through the spool: \
             {counts}"
        );
        let sent = events(&run);
        assert_eq!(sent.len() as u64, n, "{host}");
        let set: std::collections::HashSet<(&[u8], u64)> = sent.iter().map(hashable).collect();
        let mine: Vec<&(Vec<u8>, f64)> =
            got.iter().filter(|e| set.contains(&hashable(e))).collect();
        assert_eq!(
            mine.len() as u64,
            counts["delivered"].as_u64().unwrap(),
            "{host}: the consumer got what the exporter counts delivered, each once"
        );
        assert!(
            mine.iter().zip(&sent).all(|(a, b)| *a == b),
            "{host}: order kept"
        );
        consumed += mine.len();
    }
    assert_eq!(got.len(), consumed, "nothing else, no duplicate");
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
    ended(child, "", "");
    let run = run_dir(&dir, "away");
    let summary = books_balance(&run);
    assert_eq!(summary["events"]["raw"], 500, "{summary}");
    for worker in ["no_spool", "spool"] {
        let counts = kafka_counts_agree(&run, worker);
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

/// Topics the broker does not have (tansu creates none by itself): the run goes on, and the
/// run log names each missing topic with the broker at once, while events flow. `waveforms`,
/// created by the operator mid-run, takes every event from then on, those the spool kept
/// meanwhile included; `never` counts every event lost at the end, with that reason — not
/// the client's purge at close; its run start and stop to a missing control topic are said
/// lost too. Before, nothing was said while the run went on, and the end named only
/// librdkafka's PurgeQueue (or, after 30 s, its UnknownTopicOrPartition).
#[test]
fn a_topic_the_broker_does_not_have_is_named_at_once_and_its_losses_say_so() {
    use rdkafka::message::Message;
    let test = "a_topic_the_broker_does_not_have_is_named_at_once_and_its_losses_say_so";
    let Some((broker, dir, b)) = with_broker(test, "missing-topic", &[], 1) else {
        return;
    };
    // 12000 events at 400 Hz: 30 s of flow, time to see the warning and create the topic.
    let n = 12_000u64;
    let setup = producer_setup(&b, "missing", 6, n, ", drain_seconds: 120.0")
        + &format!(
            "  never:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{b}', topic: never, control_topic: ctl, drain_seconds: 1.0}}
"
        );
    let mut child = start(&dir, "missing.yaml", &setup);
    // The run log, once there is one.
    let log = |dir: &Dir| {
        std::fs::read_dir(dir.0.join("missing"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| std::fs::read_to_string(e.path().join("daq-engine.log")).ok())
            .unwrap_or_default()
    };
    let said = |log: &str, topic: &str| {
        let missing = format!("topic '{topic}' does not exist on broker {b}");
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains(&missing))
    };
    // The supervisor's word, from the exporters' counts files at a stats line: the topic is
    // created only after it (created at once after the exporters' warnings, the supervisor
    // could miss the moment it was missing).
    let supervisor_said = |log: &str, worker: &str, topic: &str| {
        log.contains(&format!(
            "worker '{worker}': topic '{topic}' does not exist on broker {b}"
        ))
    };
    // The warning comes while the run goes on; without it the run ends with nothing said.
    let t = std::time::Instant::now();
    while !(said(&log(&dir), "waveforms")
        && said(&log(&dir), "never")
        && supervisor_said(&log(&dir), "to_kafka", "waveforms")
        && supervisor_said(&log(&dir), "never", "never"))
    {
        if child.try_wait().unwrap().is_some() || t.elapsed() > RUN_LIMIT {
            let text = ended(child, "", &broker.log());
            panic!(
                "the run ended without a warning that names the missing topics with the \
                 broker: {}\n{text}",
                log(&dir)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The operator creates the topic: delivery starts while the run goes on.
    broker.create_topic("waveforms", 1);
    let text = ended(child, "", &broker.log());
    let run = run_dir(&dir, "missing");
    let log = std::fs::read_to_string(run.join("daq-engine.log")).unwrap();
    books_balance(&run);
    let late = kafka_counts_agree(&run, "to_kafka");
    let never = kafka_counts_agree(&run, "never");
    eprintln!("to_kafka: {late}\nnever: {never}");
    let count = |c: &serde_json::Value, k: &str| c[k].as_u64().unwrap();
    for (worker, c) in [("to_kafka", &late), ("never", &never)] {
        assert_eq!(count(c, "events"), n, "{worker}: {c}");
        assert_eq!(
            count(c, "delivered") + count(c, "lost"),
            n,
            "{worker}: every event delivered or counted lost: {c}"
        );
    }
    assert_eq!(count(&never, "lost"), n, "{never}");
    assert!(
        log.contains(&format!(
            "never: topic 'never' does not exist on broker {b}: {n} events lost to it"
        )),
        "the end names why never's events are lost: {log}\n{text}"
    );
    assert!(
        log.contains(&format!(
            "to_kafka: topic 'waveforms' exists now on broker {b}"
        )),
        "the log says when the topic is there: {log}"
    );
    assert!(!log.contains("PurgeQueue"), "{log}");
    // The supervisor says it on the terminal (and alerts it) as it does a device gone, and
    // when the topic is there.
    for said in [
        format!(
            "daq-engine: worker 'never': topic 'never' does not exist on broker {b}: create it; \
             its events wait in its spool meanwhile"
        ),
        format!("daq-engine: worker 'to_kafka': topic 'waveforms' does not exist on broker {b}"),
        "daq-engine: worker 'to_kafka': its Kafka topic exists now".to_string(),
        // At the end, not only "it ended before reading them": never's worker ran to the end.
        format!("{n} of them lost for reader 'never' (it ended before reading them, or could not write or deliver them: the log says which)"),
    ] {
        assert!(text.contains(&said), "{said}:\n{text}");
    }
    // Not events, but lost too: the run start and stop to a control topic that is not there.
    assert!(
        said(&log, "ctl"),
        "the run log names the missing control topic: {log}"
    );
    // The events the spool kept while the topic was missing reached it once it was there.
    // Lost at most: the first few, when one came before the broker's first answer (librdkafka
    // held it, and returned it failed with the answer).
    let lost = count(&late, "lost");
    assert_eq!(lost, count(&late, "failed"), "{late}");
    assert!(lost < 100, "{late}");
    if lost > 0 {
        assert!(
            log.contains(&format!(
                "to_kafka: topic 'waveforms' did not exist on broker {b} for a while: {lost} \
                 events lost to it"
            )),
            "{log}"
        );
    }
    assert!(count(&late, "spooled") > 0, "{late}");
    assert_eq!(count(&late, "replayed"), count(&late, "spooled"), "{late}");
    // Each delivered event once, in order, on the topic.
    let c = reader_from_start(&b, "missing-check", "waveforms");
    let mut seen: Vec<i64> = Vec::new();
    let t = std::time::Instant::now();
    while seen.len() < (n - lost) as usize {
        assert!(t.elapsed() < RUN_LIMIT, "{} of {n} events", seen.len());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(da00_counter(m.payload().unwrap()));
        }
    }
    let expected: Vec<i64> = (lost as i64..n as i64).collect();
    assert_eq!(seen, expected, "in order, each once");
}

/// A source faster than the broker: the exporter keeps librdkafka's queue short (a long one
/// makes librdkafka's broker thread busy-wait) by waiting for room once the client holds
/// `hold_kb` (two batches by default), and its source buffer holds the events meanwhile;
/// with `hold_kb: 0` it never waits. Either way every event is delivered once, in order,
/// and the counts agree everywhere.
#[test]
fn a_source_faster_than_the_broker_waits_for_room_instead_of_a_long_client_queue() {
    use rdkafka::message::Message;
    let test = "a_source_faster_than_the_broker_waits_for_room_instead_of_a_long_client_queue";
    let Some((broker, dir, b)) = with_broker(test, "hold", &["held", "unheld"], 1) else {
        return;
    };
    // 64 KiB events as fast as the simulator makes them: 98 MB, far more than two 1 MiB
    // batches ahead of any broker.
    let n = 1500u64;
    let child = start(
        &dir,
        "hold.yaml",
        &format!(
            "target_directory: hold
Buffers:
  raw: {{slot_count: 16, data_length: 4096, policy: block,
         data_dtype: {{chA: float32, chB: float32, chC: float32, chD: float32}}}}
Workers:
  digitizer:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: {n}, seed: 9, pretrigger_samples: 100}}
  held:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{b}', topic: held, drain_seconds: 120.0}}
  unheld:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '{b}', topic: unheld, hold_kb: 0, drain_seconds: 120.0}}
"
        ),
    );
    ended(child, "", &broker.log());
    let run = run_dir(&dir, "hold");
    books_balance(&run);
    for (worker, waits) in [("held", true), ("unheld", false)] {
        let counts = kafka_counts_agree(&run, worker);
        eprintln!("{worker}: {counts}");
        assert_eq!(counts["delivered"], n, "{worker}: {counts}");
        assert_eq!(counts["lost"], 0, "{worker}: {counts}");
        let w = counts["waits_for_room"]
            .as_u64()
            .expect("waits_for_room counted");
        assert_eq!(w > 0, waits, "{worker}: waits for room: {counts}");
        assert!(
            counts["waits_ran_out"]
                .as_u64()
                .expect("waits_ran_out counted")
                <= w,
            "{counts}"
        );
        // Every event once, in order.
        let c = reader_from_start(&b, &format!("hold-{worker}"), worker);
        let mut seen: Vec<i64> = Vec::new();
        let t = std::time::Instant::now();
        while seen.len() < n as usize {
            assert!(t.elapsed() < RUN_LIMIT, "{worker}: {} events", seen.len());
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                seen.push(da00_counter(m.payload().unwrap()));
            }
        }
        assert_eq!(seen, (0..n as i64).collect::<Vec<_>>(), "{worker}");
    }
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
  again: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
  shared: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
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
  s3:
    function: source.kafka
    number_of_processes: 2
    sinks: [again]
    config: {from: beginning}
  d3:
    function: export.drain
    sources: [again]
  s4:
    function: source.kafka
    number_of_processes: 2
    sinks: [shared]
  d4:
    function: export.drain
    sources: [shared]
",
    );
    let out = check_in(&dir.0, &setup);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for needle in [
        "error: worker 'k1', config key 'compression': 'zstd'",
        "worker 'k2', config key 'time_field': the buffer has no field 'time'",
        "worker 's1', config key 'from': 'yesterday'",
        "worker 's2', config key 'format': field 'chA' (>f4): da00 carries little-endian numbers only",
        // Each process was assigned every partition: every record twice (passed before).
        "worker 's3': source.kafka in 2 processes would open every partition of its topic 2 \
         times; set number_of_processes: 1 (with `from: committed`",
    ] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
    // In the group the processes share the partitions.
    assert!(!text.contains("worker 's4'"), "{text}");
    // No run directory for a rejected setup.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1, "{text}");
}

/// A digitizer storing counts writes its scales (the simulated Red Pitaya: 2 V / 16384
/// counts, offset 0): its da00 messages carry `<field>.volts_per_count` and
/// `<field>.offset_volts` as attributes, as the HDF5 export does, once the exporter has read
/// `scales_rp.txt` (from its next flush on), the values and their source exact, and the
/// waveform variables unchanged.
#[test]
fn da00_of_a_digitizer_carries_its_volts_per_count() {
    use rdkafka::message::Message;
    let test = "da00_of_a_digitizer_carries_its_volts_per_count";
    let Some((_broker, dir, b)) = with_broker(test, "scale", &["traces"], 1) else {
        return;
    };
    let setup = dir.write(
        "rp.yaml",
        &format!(
            "target_directory: rp
Buffers:
  oscilloscope: {{slot_count: 128, data_length: 1000, data_dtype: {{IN1: int16, IN2: int16}}}}
Workers:
  rp:
    function: device.redpitaya
    sinks: [oscilloscope]
    config:
      address: rp-f0c38f.local
      decimation: 4
      trigger_source: IN1
      trigger_level: 100
      pretrigger: 100
      set_size: 100
      discard_tail: 100
  to_kafka:
    function: export.kafka
    sources: [oscilloscope]
    config: {{brokers: '{b}', topic: traces}}
"
        ),
    );
    let child = Command::new(EXE)
        .arg(&setup)
        .args(["--simulate", "--quiet", "--no-tui", "--max-seconds", "4"])
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = ended(child, "", "");
    let run = run_dir(&dir, "rp");
    let sent = kafka_counts(&run, "to_kafka")["delivered"]
        .as_u64()
        .unwrap();
    assert!(sent > 0, "{text}");
    let c = reader_from_start(&b, "scale-check", "traces");
    let (mut n, mut scaled, mut unscaled_after) = (0u64, 0u64, 0u64);
    let t = std::time::Instant::now();
    while n < sent {
        assert!(t.elapsed() < Duration::from_secs(60), "{n} of {sent}");
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        n += 1;
        let msg = daq_engine::kafka::schemas::da00::root_as_da_00_data_array(m.payload().unwrap())
            .expect("da00");
        let names: Vec<&str> = msg.data().iter().map(|v| v.name()).collect();
        assert_eq!(&names[..4], ["IN1", "IN2", "daq_counter", "daq_deadtime"]);
        let var = |name: &str| msg.data().iter().find(|v| v.name() == name);
        match var("IN1.volts_per_count") {
            Some(_) => {
                scaled += 1;
                for (name, value) in [
                    ("IN1.volts_per_count", 2.0f64 / 16384.0),
                    ("IN1.offset_volts", 0.0),
                    ("IN2.volts_per_count", 2.0 / 16384.0),
                    ("IN2.offset_volts", 0.0),
                ] {
                    let v = var(name).unwrap_or_else(|| panic!("no {name}"));
                    assert_eq!(v.data().bytes(), value.to_le_bytes(), "{name}");
                    assert_eq!(v.unit(), Some("V"));
                    assert_eq!(v.source(), Some("scales_rp.txt"));
                }
            }
            None if scaled > 0 => unscaled_after += 1,
            None => {}
        }
    }
    assert!(scaled > 0, "no message carried the scale ({n} messages)");
    assert_eq!(unscaled_after, 0, "once known, every message carries it");
}

/// A loopback TCP proxy in front of a broker that keeps every request the clients send,
/// per connection, so a test can see what was asked on the wire.
struct Proxy {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    fn start(listener: std::net::TcpListener, broker: String) -> Proxy {
        use std::io::{Read, Write};
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = std::net::TcpStream::connect(&broker) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let kept = kept.clone();
                let index = {
                    let mut k = kept.lock().unwrap();
                    k.push(Vec::new());
                    k.len() - 1
                };
                // Client → broker, kept.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        kept.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                    }
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
                // Broker → client.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy { port, requests }
    }

    /// Every request frame sent so far with Kafka API key `api` (size-prefixed frames:
    /// `i32` size, `i16` api key, …).
    fn requests(&self, api: i16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for stream in self.requests.lock().unwrap().iter() {
            let mut rest = &stream[..];
            while rest.len() >= 6 {
                let size = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                if rest.len() < 4 + size {
                    break;
                }
                let frame = &rest[4..4 + size];
                if i16::from_be_bytes([frame[0], frame[1]]) == api {
                    out.push(frame.to_vec());
                }
                rest = &rest[4 + size..];
            }
        }
        out
    }
}

/// `from_time`: source.kafka asks the broker for the first offset at or after that time
/// (ListOffsets, API key 2, with the time in ms — seen on the wire through a proxy) and
/// reads on from the offset it answers. A real Kafka answers the offset of the first record
/// at or after the time; tansu 0.6.0 answers 0 for every time. Either way the run must start
/// where a real Kafka starts: the records before the time that tansu serves are passed over
/// (they came into the run before: issue 16's "seek by time must be right").
#[test]
fn from_time_asks_the_broker_for_the_offset_of_that_time() {
    let Some(bin) = tansu::binary("from_time_asks_the_broker_for_the_offset_of_that_time") else {
        return;
    };
    use daq_engine::dtype::{Dtype, Metadata};
    use daq_engine::kafka::wire::{Encoder, Format};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker =
        Broker::start_advertising(&bin, "from-time", listener.local_addr().unwrap().port());
    broker.create_topic("waveforms", 1);
    let proxy = Proxy::start(listener, broker.address.clone());
    let via = format!("127.0.0.1:{}", proxy.port);
    // 30 events one second apart; their record times are their event times.
    let base = 1_700_000_000i64;
    let dtype = Dtype::parse([("chA", "f4"), ("chB", "f4")]).unwrap();
    let mut enc = Encoder::new(Format::Da00, &dtype, 64, "digitizer", None).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &via)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..30i64 {
        let data: Vec<u8> = (0..128)
            .flat_map(|j| ((i * 128 + j) as f32).to_le_bytes())
            .collect();
        let meta = Metadata {
            counter: i,
            timestamp: (base + i) as f64,
            deadtime: 0.0,
        };
        let msg = enc.encode(&data, &meta).unwrap();
        producer
            .send(
                BaseRecord::to("waveforms")
                    .key("digitizer")
                    .payload(msg)
                    .timestamp((base + i) * 1000),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let from = base + 10;
    let dir = Dir::new("kafka-from-time");
    let child = start(
        &dir,
        "from.yaml",
        &format!(
            "target_directory: from
Buffers:
  raw: {{slot_count: 64, data_length: 64, data_dtype: {{chA: float32, chB: float32}}}}
Workers:
  from_kafka:
    function: source.kafka
    sinks: [raw]
    config: {{brokers: '{via}', topic: waveforms, from_time: {from}.0, idle_end: 3.0}}
  raw_file:
    function: export.hdf5
    sources: [raw]
    config: {{compression: none}}
"
        ),
    );
    ended(child, "", "");
    // The question on the wire: ListOffsets with the time in ms (big-endian i64).
    let asked = (from * 1000).to_be_bytes();
    let list_offsets = proxy.requests(2);
    assert!(
        list_offsets
            .iter()
            .any(|r| r.windows(8).any(|w| w == asked)),
        "no ListOffsets request for {} ms among {} ({list_offsets:?})",
        from * 1000,
        list_offsets.len()
    );
    // Every record from that time on, once, in order; nothing out of order before it.
    let b = read_buffer(run_dir(&dir, "from").join("raw.h5"), "raw").unwrap();
    // Which event each is, from its data (chA of the first record is 128 × its number; the
    // engine numbers the events it takes from 0 whatever the offset).
    let size = b.data.len() / b.events.max(1);
    let counters: Vec<i64> = b
        .data
        .chunks_exact(size.max(1))
        .map(|e| (f32::from_le_bytes(e[..4].try_into().unwrap()) / 128.0) as i64)
        .collect();
    assert_eq!(
        counters,
        (10..30).collect::<Vec<_>>(),
        "from_time {from}: every record from the 11th on, once, in order, and none before"
    );
    let log = std::fs::read_to_string(daq_engine::run_dir::log_path(&run_dir(&dir, "from")))
        .unwrap_or_default();
    assert!(
        log.contains("20 events taken, 0 skipped, 0 came again, ")
            && (log.contains(", 0 before from_time") || log.contains(", 10 before from_time")),
        "the end of the run counts what it took: {log}"
    );
}

/// The drain watch read an exporter's delivery time from its config by the key's name: an
/// `export.kafka` that left `drain_seconds` at its default (30 s) was given none, so with
/// `options: drain_stall_seconds` below 30 it was killed as stuck while it still delivered
/// to a slow broker. The time comes from the function's declaration now, given or not.
#[test]
fn the_drain_watch_gives_a_kafka_exporter_its_drain_time_given_or_not() {
    let registry = daq_engine::worker::Registry::builtin();
    let text = |config: &str| {
        format!(
            "Buffers:
  raw: {{slot_count: 8, data_length: 1, data_dtype: {{x: f4}}}}
Workers:
  sim:
    function: bench.source
    sinks: [raw]
  k:
    function: export.kafka
    sources: [raw]
    config: {{brokers: '127.0.0.1:9', topic: t{config}}}
  h5:
    function: export.hdf5
    sources: [raw]
"
        )
    };
    for (config, want) in [("", 30.0), (", drain_seconds: 5", 5.0)] {
        let text = text(config);
        let (setup, _) =
            daq_engine::setup::Setup::from_str(&text, Path::new("k.yaml"), &registry, 2)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let time = |w: &str| setup.worker(w).unwrap().delivery_seconds;
        assert_eq!((time("k"), time("h5"), time("sim")), (want, 0.0, 0.0));
    }
}

/// Events given up at the end of the drain because no broker could be reached were put down
/// to librdkafka's "PurgeQueue (Local: Purged in queue)"; the run now says they were not
/// delivered within `drain_seconds` and gives the client's last error (the refused
/// connection). No broker runs here: nothing listens on port 9.
#[test]
fn events_given_up_at_the_end_say_why_the_broker_did_not_take_them() {
    let dir = runs::fresh("kafka-unreachable");
    std::fs::write(
        dir.join("s.yaml"),
        "target_directory: runs
Buffers:
  raw: {slot_count: 64, data_length: 1, data_dtype: {x: f4}}
Workers:
  sim:
    function: bench.source
    sinks: [raw]
    config: {n_events: 50}
  k:
    function: export.kafka
    sources: [raw]
    config: {brokers: '127.0.0.1:9', topic: t, drain_seconds: 1}
",
    )
    .unwrap();
    let (_, text) = runs::engine(&dir, &["s.yaml", "--quiet"]);
    assert!(
        text.contains("first delivery failure: not delivered within drain_seconds (1 s) and given up; the client's last error: ")
            && text.contains("Connection refused"),
        "{text}"
    );
    let k = &runs::summary(&runs::only_run(&dir))["kafka"]["k"];
    assert_eq!(
        (k["events"].as_u64(), k["lost"].as_u64()),
        (Some(50), Some(50)),
        "{k}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
