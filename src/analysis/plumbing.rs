//! The plumbing functions, used by benchmarks and tests to measure and check the
//! plumbing itself: `bench.source` (an Importer that copies one prepared event per call, as
//! mimoCoRB2's benchmark source does) and `bench.sink` (an Exporter that counts, checks the
//! order and integrity of what arrives, measures latency and writes a result file).

use crate::dtype::{Base, ByteOrder, Dtype};
use crate::keys;
use crate::worker::{
    Arity, Build, BuildContext, EventMut, EventRef, Exporter, Function, FunctionSpec, Importer,
    Key, Produced, Template, WorkerError,
};
use std::path::PathBuf;

/// Every built-in function.
pub fn functions() -> Vec<Function> {
    vec![
        Function {
            spec: SOURCE_SPEC,
            build: Build::Importer(|c| Ok(Box::new(BenchSource::build(c)?))),
        },
        Function {
            spec: SINK_SPEC,
            build: Build::Exporter(|c| Ok(Box::new(BenchSink::build(c)?))),
        },
        Function {
            spec: COPY_SPEC,
            build: Build::Filter(|c| Ok(Box::new(Copy::build(c)?))),
        },
    ]
}

const COPY_SPEC: FunctionSpec = FunctionSpec::new(
    "misc.copy",
    Template::Filter,
    "Passes every event to every sink, as mimoCoRB2's misc.copy does (there it was the \
     only way to give two consumers every event; here every reading worker sees every \
     event anyway, so it is needed only to decouple two stages).",
    &[],
);

/// `misc.copy`.
pub struct Copy;

impl Copy {
    fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        // The spec's `Arity::SOME` sinks: never none here, so only the shapes are checked.
        super::trace::sinks_like_source(ctx, &ctx.sources[0])?;
        Ok(Copy)
    }
}

impl crate::worker::Filter for Copy {
    fn select(&mut self, _: &EventRef<'_>) -> Result<crate::worker::SinkMask, WorkerError> {
        Ok(crate::worker::SinkMask::ALL)
    }
}

const SOURCE_SPEC: FunctionSpec = FunctionSpec::new(
    "bench.source",
    Template::Importer,
    "Copies one prepared event into its sink per call, stamped with the event counter \
     in its first 8 bytes and a checksum in its last 8: the cost of the plumbing alone.",
    SOURCE_KEYS,
);

keys! {
    list SOURCE_KEYS;
    /// `bench.source`: events to produce.
    const N_EVENTS: Key<u64> = ("n_events", 200000, "events to produce (over all processes of the worker), then end");
    /// `bench.source`: the event after which to fail.
    const FAIL_AT: Key<i64> = ("fail_at", -1, "fault injection: fail (an error, as a device gone wrong would) right after producing the event with this counter; -1 = never. With `restart: on-failure` the new process resumes after it and does not fail again");
}

const SINK_SPEC: FunctionSpec = FunctionSpec::new(
    "bench.sink",
    Template::Exporter,
    "Counts the events of its source, checks counter order and the checksum, measures \
     latency from the event timestamp, and writes bench_<worker>_<process>.json.",
    SINK_KEYS,
)
.with_sinks(Arity::NONE);

keys! {
    list SINK_KEYS;
    /// `bench.sink`: read every byte.
    const TOUCH: Key<bool> = ("touch", true, "read every byte of each event (as a real consumer would)");
    /// `bench.sink`: leave early.
    const LEAVE_AFTER: Key<u64> = ("leave_after", 0, "fault injection: after this many events the process writes its report and ends (exit 0) though its source goes on, as a worker that returns early would; 0 = never");
}

/// The checksum `bench.source` writes: a mix of the counter.
pub fn bench_checksum(counter: i64) -> u64 {
    (counter as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        ^ 0xD1B5_4A32_D192_ED03
}

use crate::clock::wall_clock;

/// The event `bench.source` copies (before it stamps the counter into the first 8 bytes and
/// [`bench_checksum`] into the last 8): byte `i` is `i % 251`, a recognisable pattern so a
/// reader that checks bytes finds wrong slots, made a valid value of each field's type where
/// not every byte pattern is one: bool 0/1 (the pattern's low bit), `S<n>` printable text
/// with commas and quotes, `U<n>` characters from ASCII to outside the BMP.
pub fn bench_template(dtype: &Dtype, data_length: usize) -> Vec<u8> {
    const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ,\"\\";
    const CHARS: [char; 8] = ['a', 'Z', '0', ',', '"', '\u{e9}', '\u{20ac}', '\u{1f600}'];
    let record = dtype.record_size();
    let mut out: Vec<u8> = (0..data_length * record).map(|i| (i % 251) as u8).collect();
    for (r, rec) in out.chunks_exact_mut(record.max(1)).enumerate() {
        for f in dtype.fields() {
            let size = f.ty.base.size();
            for k in 0..f.ty.count() {
                let at = f.offset + k * size;
                let el = &mut rec[at..at + size];
                match f.ty.base {
                    Base::Bool => el[0] &= 1,
                    Base::Bytes(_) => {
                        for b in el.iter_mut() {
                            *b = TEXT[*b as usize % TEXT.len()];
                        }
                    }
                    Base::Unicode(_) => {
                        for (j, c) in el.chunks_exact_mut(4).enumerate() {
                            let ch = CHARS[(r + k + j) % CHARS.len()] as u32;
                            c.copy_from_slice(&match f.ty.order {
                                ByteOrder::Big => ch.to_be_bytes(),
                                ByteOrder::Little => ch.to_le_bytes(),
                            });
                        }
                    }
                    Base::Num(_) | Base::Complex64 | Base::Complex128 => {}
                }
            }
        }
    }
    out
}

/// `bench.source`.
pub struct BenchSource {
    template: Vec<u8>,
    /// Counters (process k makes k, k + n, k + 2n, …) below this are produced.
    total: i64,
    fail_at: i64,
    /// The counter of the event this process produced last.
    last: Option<i64>,
}

impl BenchSource {
    fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let total = ctx.config.get(N_EVENTS)? as i64;
        let fail_at = ctx.config.get(FAIL_AT)?;
        let sink = &ctx.sinks[0];
        Ok(BenchSource {
            template: bench_template(&sink.dtype, sink.data_length),
            total,
            fail_at,
            last: None,
        })
    }
}

impl Importer for BenchSource {
    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        // The end is told by the counter the engine hands in, so a restarted process
        // resumes where its previous life ended.
        let c = out.meta.counter;
        if c >= self.total {
            return Ok(Produced::End);
        }
        if self.last == Some(self.fail_at) {
            // On the call after this process produced event `fail_at`; a process that
            // resumes past it never produced it, so it does not fail again.
            return Err(WorkerError::Other(format!(
                "bench.source: failing after event {}, as `fail_at` asks",
                self.fail_at
            )));
        }
        out.data.copy_from_slice(&self.template);
        let n = out.data.len();
        if n >= 16 {
            out.data[..8].copy_from_slice(&c.to_le_bytes());
            out.data[n - 8..].copy_from_slice(&bench_checksum(c).to_le_bytes());
        }
        out.meta.timestamp = wall_clock();
        self.last = Some(c);
        Ok(Produced::Event)
    }
}

/// What `bench.sink` found, written as JSON at the end.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SinkReport {
    /// Worker name.
    pub worker: String,
    /// Process index.
    pub process: usize,
    /// Events received.
    pub events: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Events whose counter was lower than the previous one's.
    pub out_of_order: u64,
    /// Events whose checksum did not match their counter.
    pub corrupt: u64,
    /// Sum of counters (to check that a set of sinks saw every event once).
    pub counter_sum: u64,
    /// Latency from the event timestamp to arrival, in microseconds: p50, p99, max.
    pub latency_us: [f64; 3],
    /// Seconds from the first to the last event.
    pub seconds: f64,
    /// The first event's timestamp (when the source made it), Unix seconds.
    pub t_first_made: f64,
    /// When this sink saw the end of the stream, Unix seconds.
    pub t_end: f64,
    /// Sum of the 8-byte words read (keeps the reads from being optimised away).
    pub touched: u64,
}

/// `bench.sink`.
pub struct BenchSink {
    report: SinkReport,
    touch: bool,
    leave_after: u64,
    last: Option<i64>,
    first_t: f64,
    last_t: f64,
    hist: hdrhistogram::Histogram<u64>,
    out: PathBuf,
}

impl BenchSink {
    fn build(ctx: &BuildContext) -> Result<Self, WorkerError> {
        let touch = ctx.config.get(TOUCH)?;
        let leave_after = ctx.config.get(LEAVE_AFTER)?;
        let hist = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| WorkerError::failed("bench.sink: the latency histogram", e))?;
        Ok(BenchSink {
            report: SinkReport {
                worker: ctx.worker.clone(),
                process: ctx.process.0,
                ..SinkReport::default()
            },
            touch,
            leave_after,
            last: None,
            first_t: 0.0,
            last_t: 0.0,
            hist,
            out: ctx
                .run_dir
                .join(format!("bench_{}_{}.json", ctx.worker, ctx.process.0)),
        })
    }
}

impl Exporter for BenchSink {
    fn consume(&mut self, ev: &EventRef<'_>) -> Result<(), WorkerError> {
        if self.leave_after > 0 && self.report.events >= self.leave_after {
            // A worker that returns early: its report is written and the process ends well,
            // holding this event unread.
            self.finish()?;
            tracing::info!(
                "bench.sink: leaving after {} events, as `leave_after` asks",
                self.report.events
            );
            std::process::exit(0);
        }
        let now = wall_clock();
        let r = &mut self.report;
        if r.events == 0 {
            self.first_t = now;
            r.t_first_made = ev.meta.timestamp;
        }
        self.last_t = now;
        r.events += 1;
        r.bytes += ev.data.len() as u64;
        let c = ev.meta.counter;
        r.counter_sum = r.counter_sum.wrapping_add(c as u64);
        if self.last.is_some_and(|l| c < l) {
            r.out_of_order += 1;
        }
        self.last = Some(c);
        let n = ev.data.len();
        if n >= 16 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&ev.data[..8]);
            let head = i64::from_le_bytes(w);
            w.copy_from_slice(&ev.data[n - 8..]);
            let tail = u64::from_le_bytes(w);
            if head != c || tail != bench_checksum(c) {
                r.corrupt += 1;
            }
        }
        if self.touch {
            let mut sum = 0u64;
            for chunk in ev.data.chunks_exact(8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                sum = sum.wrapping_add(u64::from_le_bytes(w));
            }
            r.touched = r.touched.wrapping_add(sum);
        }
        let lat_us = ((now - ev.meta.timestamp) * 1e6).max(1.0) as u64;
        let _ = self.hist.record(lat_us.min(3_600_000_000));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        let r = &mut self.report;
        r.seconds = self.last_t - self.first_t;
        r.t_end = wall_clock();
        if !self.hist.is_empty() {
            r.latency_us = [
                self.hist.value_at_quantile(0.5) as f64,
                self.hist.value_at_quantile(0.99) as f64,
                self.hist.max() as f64,
            ];
        }
        let text = serde_json::to_string_pretty(r)?;
        std::fs::write(&self.out, text).map_err(|source| WorkerError::Io {
            what: format!("writing {}", self.out.display()),
            source,
        })
    }
}
