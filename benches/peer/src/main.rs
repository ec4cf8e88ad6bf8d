//! `ring-peer`: the iceoryx2 publish-subscribe baseline of daq-engine's ring benchmark.
//!
//! It moves exactly the workload `daq_engine::ring_bench` moves through a daq-engine ring,
//! so the two can be compared row by row: a publisher process pinned to CPU 0 copies each
//! event of `--bytes` bytes from a source buffer (512 MiB, larger than the last-level cache,
//! for events of 64 KiB and more; 1 MiB otherwise) into a loaned sample, writes the event
//! number into word 1 and its `CLOCK_MONOTONIC` publish time into word 0 (at full speed only
//! every 64th event and the last: [`STAMP_EVERY`]; 0 in the others), and sends it;
//! `--subscribers` subscriber processes pinned to CPU 1 receive every event, read every
//! 64-bit word of it (a checksum), check the event number, and record publish→receive
//! latency of every stamped event in an HDR histogram. The publisher blocks when a subscriber queue is full
//! (lossless, like the ring's `block` policy); the queue depth is `--depth` samples.
//! Subscribers poll (spin, then `sched_yield`), since that is iceoryx2's wait-free receive.
//! `--realtime 1` runs every process under SCHED_FIFO priority 50, as the ring side does.
//!
//! Output, one line on stdout:
//! `peer events=N bytes=B subscribers=S elapsed_ns=E p50_ns=.. p99_ns=.. p999_ns=.. max_ns=.. errors=K`
//! where `elapsed_ns` runs from the first publish to the last receive of the slowest
//! subscriber and the percentiles are those of the worst subscriber. It never prints a
//! figure it did not measure: any failure exits non-zero with the reason on stderr.

use hdrhistogram::Histogram;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::PortFactory;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

type Failure = Box<dyn std::error::Error>;

/// daq-engine's `src/clock/monotonic.rs` (it depends on nothing but libc): the same clock and
/// paced wait as the ring side, without making this baseline depend on daq-engine.
#[path = "../../../src/clock/monotonic.rs"]
mod clock;
use clock::now_ns;

/// How long a paced publisher spins before each due time, after sleeping until then (as the
/// ring side does, `ring_bench::SPIN_BEFORE_DUE_NS`).
const SPIN_BEFORE_DUE_NS: u64 = 30_000;

/// Spin iterations before a polling subscriber yields its CPU (the same count daq-engine's
/// ring spins before it sleeps).
const SPINS: u32 = 2_000;

/// At full speed only every this many events (and the last) carry a publish time and are
/// timed, as daq-engine's side does (`ring_bench::FULL_SPEED_STAMP_EVERY`): a clock read
/// costs as much as a small event's trip. Paced runs time every event.
const STAMP_EVERY: u64 = 64;

fn pin(cpu: usize, realtime: bool) -> Result<(), Failure> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write only into `set`, and
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        return Err(format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    if realtime {
        let param = libc::sched_param { sched_priority: 50 };
        // SAFETY: `param` is a valid sched_param; pid 0 is the calling process.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            return Err(format!("SCHED_FIFO: {}", std::io::Error::last_os_error()).into());
        }
    }
    Ok(())
}

/// Bytes of the source events are copied from (see the module comment).
fn source_bytes(event_bytes: usize) -> usize {
    if event_bytes >= 64 * 1024 {
        512 << 20
    } else {
        1 << 20
    }
}

struct Args {
    role_sub: bool,
    service: String,
    bytes: usize,
    events: u64,
    rate: f64,
    subscribers: usize,
    depth: usize,
    producer_cpu: usize,
    consumer_cpu: usize,
    realtime: bool,
}

fn parse_args() -> Result<Args, Failure> {
    let mut a = Args {
        role_sub: false,
        service: format!("daq-ring-bench/{}", std::process::id()),
        bytes: 4096,
        events: 100_000,
        rate: 0.0,
        subscribers: 1,
        depth: 256,
        producer_cpu: 0,
        consumer_cpu: 1,
        realtime: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "sub" {
            a.role_sub = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| format!("option {k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("option {k} {v}: {e}");
        match k.as_str() {
            "--service" => a.service = v,
            "--bytes" => a.bytes = v.parse().map_err(|e| bad(&e))?,
            "--events" => a.events = v.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = v.parse().map_err(|e| bad(&e))?,
            "--subscribers" => a.subscribers = v.parse().map_err(|e| bad(&e))?,
            "--depth" => a.depth = v.parse().map_err(|e| bad(&e))?,
            "--producer-cpu" => a.producer_cpu = v.parse().map_err(|e| bad(&e))?,
            "--consumer-cpu" => a.consumer_cpu = v.parse().map_err(|e| bad(&e))?,
            "--realtime" => a.realtime = v == "1",
            _ => return Err(format!("unknown option {k}").into()),
        }
    }
    if a.bytes < 16 || !a.bytes.is_multiple_of(8) {
        return Err(format!(
            "--bytes {}: events must be a multiple of 8 bytes, at least 16",
            a.bytes
        )
        .into());
    }
    if a.events == 0 || a.subscribers == 0 || a.depth == 0 {
        return Err("--events, --subscribers and --depth must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    set_log_level(LogLevel::Error);
    let result = parse_args().and_then(|a| {
        if a.role_sub {
            subscribe(&a)
        } else {
            publish(&a)
        }
    });
    if let Err(e) = result {
        eprintln!("ring-peer: {e}");
        std::process::exit(1);
    }
}

/// One subscriber's measurement.
struct SubResult {
    first_pub_ns: u64,
    last_recv_ns: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    errors: u64,
}

fn subscribe(a: &Args) -> Result<(), Failure> {
    pin(a.consumer_cpu, a.realtime)?;
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = node
        .service_builder(&a.service.as_str().try_into()?)
        .publish_subscribe::<[u64]>()
        .open()?;
    let subscriber = service.subscriber_builder().buffer_size(a.depth).create()?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let words = a.bytes / 8;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY")?;
    stdout.flush()?;
    let (mut expected, mut errors, mut sum) = (0u64, 0u64, 0u64);
    let (mut first_pub, mut last_recv) = (0u64, 0u64);
    let mut idle = 0u32;
    while expected < a.events {
        let Some(sample) = subscriber.receive()? else {
            idle += 1;
            if idle < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            continue;
        };
        idle = 0;
        let p = sample.payload();
        if p.len() != words || p[1] != expected {
            errors += 1;
        }
        if expected == 0 {
            first_pub = p[0];
        }
        sum = p.iter().fold(sum, |s, &w| s.wrapping_add(w));
        // Unstamped (0): a full-speed event between samples (STAMP_EVERY).
        if p[0] != 0 {
            let t = now_ns();
            hist.saturating_record(t.saturating_sub(p[0]).max(1));
            last_recv = t;
        }
        expected += 1;
    }
    std::hint::black_box(sum);
    let r = SubResult {
        first_pub_ns: first_pub,
        last_recv_ns: last_recv,
        p50: hist.value_at_quantile(0.5),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
        errors,
    };
    writeln!(
        stdout,
        "sub first={} last={} p50={} p99={} p999={} max={} errors={} sum={sum}",
        r.first_pub_ns, r.last_recv_ns, r.p50, r.p99, r.p999, r.max, r.errors
    )?;
    stdout.flush()?;
    Ok(())
}

fn parse_sub(line: &str) -> Result<SubResult, Failure> {
    let get = |key: &str| -> Result<u64, Failure> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| format!("subscriber result lacks {key}: {line}"))?
            .parse::<u64>()
            .map_err(|e| format!("subscriber result {key}: {e}: {line}").into())
    };
    Ok(SubResult {
        first_pub_ns: get("first")?,
        last_recv_ns: get("last")?,
        p50: get("p50")?,
        p99: get("p99")?,
        p999: get("p999")?,
        max: get("max")?,
        errors: get("errors")?,
    })
}

fn publish(a: &Args) -> Result<(), Failure> {
    pin(a.producer_cpu, a.realtime)?;
    let words = a.bytes / 8;
    let src_words = source_bytes(a.bytes) / 8;
    let events_in_source = (src_words / words).max(1);
    let source: Vec<u64> = (0..events_in_source * words)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();

    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = node
        .service_builder(&a.service.as_str().try_into()?)
        .publish_subscribe::<[u64]>()
        .enable_safe_overflow(false)
        .history_size(0)
        .subscriber_max_buffer_size(a.depth)
        .subscriber_max_borrowed_samples(2)
        .max_subscribers(a.subscribers)
        .max_publishers(1)
        .create()?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(words)
        .max_loaned_samples(1)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..a.subscribers {
        let mut child = Command::new(&exe)
            .args(["sub", "--service", &a.service])
            .args(["--bytes", &a.bytes.to_string()])
            .args(["--events", &a.events.to_string()])
            .args(["--depth", &a.depth.to_string()])
            .args(["--consumer-cpu", &a.consumer_cpu.to_string()])
            .args(["--realtime", if a.realtime { "1" } else { "0" }])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no subscriber stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "READY" {
            let _ = child.kill();
            return Err(format!("subscriber did not start: {line:?}").into());
        }
        children.push((child, out));
    }
    while service.dynamic_config().number_of_subscribers() < a.subscribers {
        std::thread::yield_now();
    }

    let t0 = now_ns();
    let period = if a.rate > 0.0 { 1e9 / a.rate } else { 0.0 };
    for i in 0..a.events {
        if period > 0.0 {
            let due = t0 + (i as f64 * period) as u64;
            clock::wait_until(due, SPIN_BEFORE_DUE_NS);
        }
        let off = (i as usize % events_in_source) * words;
        let sample = publisher.loan_slice_uninit(words)?;
        let mut sample = sample.write_from_slice(&source[off..off + words]);
        let p = sample.payload_mut();
        p[1] = i;
        let stamped = period > 0.0 || i.is_multiple_of(STAMP_EVERY) || i + 1 == a.events;
        p[0] = if stamped { now_ns() } else { 0 };
        sample.send()?;
    }

    let mut worst: Option<SubResult> = None;
    let mut first = u64::MAX;
    let mut last = 0;
    let mut errors = 0;
    for (mut child, mut out) in children {
        let mut line = String::new();
        out.read_line(&mut line)?;
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a subscriber failed ({status})").into());
        }
        let r = parse_sub(&line)?;
        first = first.min(r.first_pub_ns);
        last = last.max(r.last_recv_ns);
        errors += r.errors;
        worst = Some(match worst {
            Some(w) if w.p99 >= r.p99 => w,
            _ => r,
        });
    }
    let w = worst.ok_or("no subscriber")?;
    println!(
        "peer events={} bytes={} subscribers={} elapsed_ns={} p50_ns={} p99_ns={} p999_ns={} max_ns={} errors={}",
        a.events,
        a.bytes,
        a.subscribers,
        last.saturating_sub(first),
        w.p50,
        w.p99,
        w.p999,
        w.max,
        errors
    );
    Ok(())
}
