//! `process.coincidence`: pairs the events of two sources whose times lie within a window of
//! each other — two paddles of a telescope read by two digitizers, two detectors of one
//! experiment on two hosts.
//!
//! Each source's events come in their own time order; the two streams are interleaved as
//! their events arrive, so one may run ahead of the other. Events wait in a queue per source
//! until an event of the other source is later than them by more than the window: then no
//! partner can come any more and they are counted unpaired. Pairing is greedy: an event pairs
//! with the earliest waiting event of the other source within the window, and each event
//! pairs at most once. One record per pair goes to the sink.
//!
//! The clock is the events' host timestamp, or a field both sources carry (a digitizer's own
//! time, more precise than a float of seconds since 1970, whose step is ≈ 0.24 µs today).
//!
//! Guarantees: `process` allocates nothing (the queues are made in `build` and never grow) and
//! never panics on data; an event whose time is not a finite number is skipped and counted.
//! When a source runs `max_pending` events ahead, the engine stops handing its events over
//! until the other catches up (they wait in their ring: backpressure, not loss); only when
//! the other source has ended are the oldest waiting events given up, counted. The counts
//! (pairs, unpaired per source, out of order, skipped) are printed at the end of the run and
//! written to `coincidence_<worker>.json`. Must never: see only part of the events (it
//! refuses to run as more than one process).

use super::trace::{count, feature_fields, one_sink, positive, set_features, FieldAccess};
use crate::keys;
use crate::worker::{
    Arity, BuildContext, Emit, EventRef, FunctionSpec, Key, MaybeKey, Processor, Template,
    WorkerError,
};
use std::collections::VecDeque;
use std::path::PathBuf;

/// The fields the sink may have, in this order.
const FIELDS: [&str; 6] = ["time", "dt", "time_a", "time_b", "counter_a", "counter_b"];

/// The declaration of `process.coincidence`.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "process.coincidence",
    Template::Processor,
    "Pairs events of its two sources (a, b in source_list order) whose times lie \
     within `window` of each other; one record per pair. Sink (data_length 1) fields, \
     any of: time (the earlier of the two, s), dt (time b − time a, s), time_a, \
     time_b, counter_a, counter_b (the events' counters). Greedy: each event pairs \
     at most once, with the earliest unpaired partner. Runs as one process.",
    KEYS,
)
.with_sources(Arity { min: 2, max: 2 });

keys! {
    list KEYS;
    const WINDOW: Key<f64> = ("window", 1.0e-6, "largest |time b − time a| of a pair (s)");
    const TIME_FIELD: MaybeKey<str> = ("time_field", absent: "host timestamp", "a field both sources have (record 0), holding the event time on a clock both share; the host timestamp when absent");
    const TIME_UNIT: Key<f64> = ("time_unit", 1.0, "seconds per unit of time_field (1e-9 for nanoseconds)");
    const MAX_PENDING: Key<usize> = ("max_pending", 65536, "events of one source held while waiting for the other; beyond this the source waits in its ring");
}

/// An event waiting for a partner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Waiting {
    /// Its time on the pairing clock (s).
    pub time: f64,
    /// Its metadata counter.
    pub counter: i64,
    /// Its host timestamp (s since the epoch).
    pub timestamp: f64,
}

/// A pair found: the event of source a and of source b.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    /// Source a's event.
    pub a: Waiting,
    /// Source b's event.
    pub b: Waiting,
}

/// What the pairing counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Events taken, per source.
    pub events: [u64; 2],
    /// Pairs found.
    pub pairs: u64,
    /// Events that found no partner, per source (at the end, everything still waiting).
    pub unpaired: [u64; 2],
    /// Of those, given up while a partner could still have come (the other source had ended
    /// or the queue was full though the engine held the source back).
    pub given_up: [u64; 2],
    /// Events earlier than the previous one of their source (pairing may miss partners).
    pub out_of_order: [u64; 2],
    /// Events without a finite time (not paired, not counted unpaired).
    pub skipped: [u64; 2],
}

/// The pairing, apart from the buffers so it can be checked against known truth.
#[derive(Debug)]
pub struct Pairing {
    window: f64,
    capacity: usize,
    waiting: [VecDeque<Waiting>; 2],
    last: [f64; 2],
    /// What was counted.
    pub counts: Counts,
}

impl Pairing {
    /// Pairs within `window` seconds, holding at most `capacity` events per source.
    pub fn new(window: f64, capacity: usize) -> Pairing {
        let capacity = capacity.max(1);
        Pairing {
            window,
            capacity,
            waiting: [
                VecDeque::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
            ],
            last: [f64::NEG_INFINITY; 2],
            counts: Counts::default(),
        }
    }

    /// Whether an event of `source` can be taken without giving one up.
    pub fn has_room(&self, source: usize) -> bool {
        self.waiting[source & 1].len() < self.capacity
    }

    /// Takes event `e` of `source` (0 = a, 1 = b); returns the pair it completes, if any.
    pub fn add(&mut self, source: usize, e: Waiting) -> Option<Pair> {
        let (s, o) = (source & 1, 1 - (source & 1));
        if !e.time.is_finite() {
            self.counts.skipped[s] += 1;
            return None;
        }
        self.counts.events[s] += 1;
        if e.time < self.last[s] {
            self.counts.out_of_order[s] += 1;
        }
        self.last[s] = self.last[s].max(e.time);
        // The other source's events earlier than this one by more than the window can pair
        // with no later event of this source either.
        while let Some(w) = self.waiting[o].front() {
            if w.time >= e.time - self.window {
                break;
            }
            self.waiting[o].pop_front();
            self.counts.unpaired[o] += 1;
        }
        if let Some(w) = self.waiting[o].front() {
            if w.time <= e.time + self.window {
                let w = *w;
                self.waiting[o].pop_front();
                self.counts.pairs += 1;
                return Some(if s == 0 {
                    Pair { a: e, b: w }
                } else {
                    Pair { a: w, b: e }
                });
            }
        }
        if e.time < self.last[o] - self.window {
            // The other source is already later than any partner could be.
            self.counts.unpaired[s] += 1;
            return None;
        }
        if self.waiting[s].len() == self.capacity {
            self.waiting[s].pop_front();
            self.counts.unpaired[s] += 1;
            self.counts.given_up[s] += 1;
        }
        self.waiting[s].push_back(e);
        None
    }

    /// The end of the run: what still waits is unpaired.
    pub fn finish(&mut self) {
        for s in 0..2 {
            self.counts.unpaired[s] += self.waiting[s].len() as u64;
            self.waiting[s].clear();
        }
    }
}

/// Where an event's time comes from.
enum Clock {
    Host,
    Field([FieldAccess; 2], f64),
}

/// `process.coincidence`.
pub struct CoincidenceWorker {
    pairing: Pairing,
    clock: Clock,
    outputs: Vec<(FieldAccess, usize)>,
    report: PathBuf,
    worker: String,
}

impl CoincidenceWorker {
    /// Builds it from its config; checks the sources' and the sink's fields.
    pub fn build(ctx: &BuildContext) -> Result<CoincidenceWorker, WorkerError> {
        let sink = one_sink(ctx)?;
        let [a, b] = ctx.sources.as_slice() else {
            return Err(count(
                ctx,
                "two source buffers (a and b)",
                ctx.sources.len(),
            ));
        };
        ctx.one_process("process.coincidence", " of both sources")?;
        let c = &ctx.config;
        let window = positive(ctx, WINDOW)?;
        let capacity = c.get(MAX_PENDING)?;
        if capacity == 0 {
            return Err(c.error(MAX_PENDING.name, "must be at least 1").into());
        }
        let clock = match c.get(TIME_FIELD)? {
            None => Clock::Host,
            Some(name) => {
                let field = |src| {
                    FieldAccess::new(src, name)
                        .map_err(|e| WorkerError::from(c.error(TIME_FIELD.name, e.to_string())))
                };
                Clock::Field([field(a)?, field(b)?], positive(ctx, TIME_UNIT)?)
            }
        };
        let outputs = feature_fields(ctx, sink, &FIELDS)?;
        Ok(CoincidenceWorker {
            pairing: Pairing::new(window, capacity),
            clock,
            outputs,
            report: ctx.run_dir.join(format!("coincidence_{}.json", ctx.worker)),
            worker: ctx.worker.clone(),
        })
    }
}

impl Processor for CoincidenceWorker {
    fn process(&mut self, event: &EventRef<'_>, out: &mut dyn Emit) -> Result<(), WorkerError> {
        self.process_from(0, event, out)
    }

    fn process_from(
        &mut self,
        source: usize,
        event: &EventRef<'_>,
        out: &mut dyn Emit,
    ) -> Result<(), WorkerError> {
        let time = match &self.clock {
            Clock::Host => event.meta.timestamp,
            Clock::Field(f, unit) => f[source & 1]
                .get(event.data, 0)
                .map_or(f64::NAN, |v| v * unit),
        };
        let e = Waiting {
            time,
            counter: event.meta.counter,
            timestamp: event.meta.timestamp,
        };
        let Some(pair) = self.pairing.add(source, e) else {
            return Ok(());
        };
        let number = self.pairing.counts.pairs as i64 - 1;
        let outputs = &self.outputs;
        out.emit(0, &mut |ev| {
            ev.meta.counter = number;
            ev.meta.timestamp = pair.a.timestamp.min(pair.b.timestamp);
            set_features(outputs, ev.data, |what| match what {
                0 => pair.a.time.min(pair.b.time),
                1 => pair.b.time - pair.a.time,
                2 => pair.a.time,
                3 => pair.b.time,
                4 => pair.a.counter as f64,
                _ => pair.b.counter as f64,
            });
            Ok(())
        })
    }

    fn accepts(&self, source: usize) -> bool {
        self.pairing.has_room(source)
    }

    fn finish(&mut self, _out: &mut dyn Emit) -> Result<(), WorkerError> {
        self.pairing.finish();
        let c = self.pairing.counts;
        let line = format!(
            "{}: {} pairs of {} + {} events; unpaired {} + {}",
            self.worker, c.pairs, c.events[0], c.events[1], c.unpaired[0], c.unpaired[1]
        );
        tracing::info!("{line}");
        if c.given_up != [0, 0] || c.out_of_order != [0, 0] || c.skipped != [0, 0] {
            tracing::warn!(
                "{line}; given up while a partner could still come: {:?}, out of time order: \
                 {:?}, without a valid time: {:?}",
                c.given_up,
                c.out_of_order,
                c.skipped
            );
        }
        let json = serde_json::to_string_pretty(&c).unwrap_or_default();
        crate::fsio::write_atomic(&self.report, json.as_bytes()).map_err(|e| WorkerError::Io {
            what: format!("writing {}", self.report.display()),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: f64, counter: i64) -> Waiting {
        Waiting {
            time,
            counter,
            timestamp: time,
        }
    }

    /// Pairs from the two sources' time lists, fed in the given interleaving.
    fn pairs(window: f64, feed: &[(usize, f64)]) -> (Vec<(i64, i64)>, Counts) {
        let mut p = Pairing::new(window, 16);
        let mut n = [0i64; 2];
        let mut got = Vec::new();
        for &(s, t) in feed {
            if let Some(pair) = p.add(s, at(t, n[s])) {
                got.push((pair.a.counter, pair.b.counter));
            }
            n[s] += 1;
        }
        p.finish();
        (got, p.counts)
    }

    #[test]
    fn pairs_within_the_window_whichever_source_comes_first() {
        let (got, c) = pairs(
            0.1,
            &[(0, 1.0), (1, 1.05), (1, 2.0), (0, 2.08), (0, 3.0), (1, 3.5)],
        );
        assert_eq!(got, vec![(0, 0), (1, 1)]);
        assert_eq!((c.pairs, c.unpaired), (2, [1, 1]));
    }

    #[test]
    fn a_source_running_ahead_still_pairs_once_the_other_catches_up() {
        // a delivers everything first; b's events then find their partners waiting.
        let (got, c) = pairs(
            0.01,
            &[
                (0, 1.0),
                (0, 2.0),
                (0, 3.0),
                (1, 1.005),
                (1, 2.5),
                (1, 2.995),
            ],
        );
        assert_eq!(got, vec![(0, 0), (2, 2)]);
        assert_eq!(c.unpaired, [1, 1]);
        assert_eq!(c.given_up, [0, 0]);
    }

    #[test]
    fn each_event_pairs_at_most_once_with_the_earliest_partner() {
        let (got, c) = pairs(0.1, &[(0, 1.0), (0, 1.02), (1, 1.05), (1, 1.06), (1, 1.5)]);
        assert_eq!(got, vec![(0, 0), (1, 1)]);
        assert_eq!((c.pairs, c.unpaired, c.events), (2, [0, 1], [2, 3]));
    }

    #[test]
    fn a_full_queue_gives_up_its_oldest_and_counts_it() {
        let mut p = Pairing::new(0.1, 2);
        for (i, t) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            assert!(i < 2 || !p.has_room(0));
            p.add(0, at(t, i as i64));
        }
        assert_eq!(p.counts.given_up, [1, 0]);
        assert!(
            p.add(1, at(2.05, 0)).is_some(),
            "the second one still waits"
        );
        p.finish();
        assert_eq!(p.counts.unpaired, [2, 0]);
    }

    #[test]
    fn bad_times_are_skipped_and_late_ones_counted() {
        // a's 1.0 comes after its 2.0: it waits behind it and b's 1.01 misses it (said in
        // the counts, not silently).
        let (got, c) = pairs(0.1, &[(0, f64::NAN), (0, 2.0), (0, 1.0), (1, 1.01)]);
        assert_eq!(got, vec![]);
        assert_eq!((c.skipped, c.out_of_order), ([1, 0], [1, 0]));
        assert_eq!(c.events[0] + c.skipped[0], 3);
    }

    /// Every event is paired or counted unpaired, whatever the interleaving.
    #[test]
    fn every_event_is_paired_or_counted() {
        let mut x = 12345u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut p = Pairing::new(0.02, 8);
        let mut t = [0.0f64; 2];
        for _ in 0..10_000 {
            let s = (rnd() < 0.5) as usize;
            t[s] += -rnd().max(1e-12).ln() * 0.05;
            p.add(s, at(t[s], 0));
        }
        p.finish();
        let c = p.counts;
        for s in 0..2 {
            assert_eq!(c.events[s], c.pairs + c.unpaired[s], "source {s}: {c:?}");
        }
    }
}
