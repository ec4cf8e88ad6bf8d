//! `process.rate`: the count rate over time, corrected for dead time.
//!
//! Events (or the counts they carry, e.g. a Geiger counter's counts per second) are summed in
//! consecutive windows of `window` seconds of a clock: the host timestamp of each event, or a
//! field the detector writes itself (CosmicWatch `time_ms`). When a window closes, one record
//! goes to the sink: start, duration, counts, live time, rate and its Poisson error.
//!
//! Dead time, two kinds, both optional:
//! - reported by the detector as a *cumulative* field (CosmicWatch `deadtime_ms`): the live
//!   time of a window is its duration minus the growth of that field within the window;
//! - a per-count dead time τ of the counter (a Geiger tube): non-paralysable correction
//!   `n = m / (1 − m·τ)` of the measured rate `m`.
//!
//! The first event starts the clock and is not counted (counting it would bias the first
//! window by one event); the last, partial window ends at the last event. A window holds the
//! events after its start up to and including its end, so counts reported per interval (a
//! heartbeat at the end of its second) fall into the window of that interval. A clock that runs
//! backwards (a detector reset) closes the current window and starts again from there; a jump
//! longer than [`MAX_EMPTY_WINDOWS`] windows is reported as one empty record spanning it.
//!
//! Guarantees: `process` allocates nothing and never panics on data; non-finite times are
//! skipped and counted. Must never: see only part of the events (it refuses to run as more
//! than one process, which would split them).

use super::trace::{
    feature_fields_needing, one_sink, one_source, positive, set_features, FieldAccess,
};
use crate::keys;
use crate::worker::{
    BuildContext, Emit, EventRef, FunctionSpec, Key, MaybeKey, Processor, Template, WorkerError,
};

/// Empty windows emitted one by one after a gap; a longer gap is one record.
pub const MAX_EMPTY_WINDOWS: u64 = 1000;

/// The fields the sink may have, in this order.
const RATE_FIELDS: [&str; 7] = [
    "time",
    "duration",
    "counts",
    "live_time",
    "rate",
    "rate_error",
    "deadtime_fraction",
];

/// The declaration of `process.rate`.
pub const RATE_SPEC: FunctionSpec = FunctionSpec::new(
    "process.rate",
    Template::Processor,
    "Counts events (or sums `count_field`) in consecutive windows of `window` seconds \
     and emits one record per window with the dead-time corrected rate. Sink \
     (data_length 1) fields, any of: time (window start, s), duration (s), counts, \
     live_time (s), rate (Hz), rate_error (Hz, Poisson), deadtime_fraction. The first \
     event starts the clock; the last window ends at the last event. Runs as one \
     process.",
    KEYS,
);

keys! {
    list KEYS;
    const WINDOW: Key<f64> = ("window", 10.0, "window length (s)");
    const TIME_FIELD: MaybeKey<str> = ("time_field", absent: "host timestamp", "field with the detector's own clock (e.g. time_ms), or `counter` (event number × time_unit: one heartbeat per device second); the host timestamp when absent");
    const TIME_UNIT: Key<f64> = ("time_unit", 1.0, "seconds per unit of time_field (0.001 for milliseconds)");
    const DEADTIME_FIELD: MaybeKey<str> = ("deadtime_field", absent: "none", "field with the detector's cumulative dead time (e.g. deadtime_ms)");
    const DEADTIME_UNIT: Key<f64> = ("deadtime_unit", 1.0, "seconds per unit of deadtime_field (0.001 for milliseconds)");
    const COUNT_FIELD: MaybeKey<str> = ("count_field", absent: "none", "field with counts per event (e.g. a Geiger counter's cps); 1 per event when absent");
    const DEAD_TIME_PER_COUNT: Key<f64> = ("dead_time_per_count", 0.0, "non-paralysable dead time of the counter per count (s), e.g. a Geiger tube's");
}

/// One window being summed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// Start (s, on the chosen clock).
    pub start: f64,
    /// Duration (s).
    pub duration: f64,
    /// Counts in it.
    pub counts: f64,
    /// Dead time reported by the detector in it (s).
    pub dead: f64,
}

impl Window {
    /// Live time: duration minus reported dead time minus `tau` per count, never below 0.
    pub fn live_time(&self, tau: f64) -> f64 {
        (self.duration - self.dead - self.counts * tau).max(0.0)
    }

    /// (rate, Poisson error) in Hz, corrected for the dead time; 0 when there is no live time.
    pub fn rate(&self, tau: f64) -> (f64, f64) {
        let live = self.live_time(tau);
        if live <= 0.0 {
            return (0.0, 0.0);
        }
        (self.counts / live, self.counts.sqrt() / live)
    }
}

/// The windowing, separate from the buffers so it can be checked against known truth.
#[derive(Clone, Debug)]
pub struct RateCounter {
    window: f64,
    /// Start of the open window, and the clock at the previous event.
    start: Option<f64>,
    last_t: f64,
    counts: f64,
    /// Cumulative dead time at the window's start and at the latest event.
    dead_at_start: f64,
    dead_now: f64,
    /// Events whose time was not a finite number.
    pub skipped: u64,
}

impl RateCounter {
    /// Windows of `window` seconds (> 0).
    pub fn new(window: f64) -> RateCounter {
        RateCounter {
            window,
            start: None,
            last_t: 0.0,
            counts: 0.0,
            dead_at_start: 0.0,
            dead_now: 0.0,
            skipped: 0,
        }
    }

    /// Adds an event at clock `t` (s) carrying `counts`, with the detector's cumulative dead
    /// time `dead` (s; 0 when not reported). Every window it closes goes to `closed`.
    pub fn add(&mut self, t: f64, counts: f64, dead: f64, closed: &mut impl FnMut(Window)) {
        if !t.is_finite() || !counts.is_finite() || !dead.is_finite() {
            self.skipped += 1;
            return;
        }
        let Some(mut start) = self.start else {
            self.restart(t, dead);
            return;
        };
        if t < self.last_t {
            // The clock went backwards (detector reset): close what we have and start again.
            self.close_at(self.last_t, closed);
            self.restart(t, dead);
            return;
        }
        if t > start + self.window {
            let end = start + self.window;
            // The dead time up to this event belongs to the windows it spans; give the
            // closing window what had accumulated by the previous event.
            closed(self.window_until(end));
            self.dead_at_start = self.dead_now;
            self.counts = 0.0;
            start = end;
            // Windows wholly before the one holding `t`.
            let empty = ((t - start) / self.window).ceil() - 1.0;
            if empty >= 1.0 {
                if empty as u64 <= MAX_EMPTY_WINDOWS {
                    for _ in 0..empty as u64 {
                        closed(Window {
                            start,
                            duration: self.window,
                            counts: 0.0,
                            dead: 0.0,
                        });
                        start += self.window;
                    }
                } else {
                    let span = empty * self.window;
                    closed(Window {
                        start,
                        duration: span,
                        counts: 0.0,
                        dead: 0.0,
                    });
                    start += span;
                }
            }
            self.start = Some(start);
        }
        self.counts += counts;
        self.dead_now = dead.max(self.dead_now);
        self.last_t = t;
    }

    /// Closes the open window at the last event (end of run). Nothing when it is empty.
    pub fn finish(&mut self, closed: &mut impl FnMut(Window)) {
        if self.start.is_some() {
            self.close_at(self.last_t, closed);
        }
        self.start = None;
    }

    fn restart(&mut self, t: f64, dead: f64) {
        self.start = Some(t);
        self.last_t = t;
        self.counts = 0.0;
        self.dead_at_start = dead;
        self.dead_now = dead;
    }

    fn window_until(&self, end: f64) -> Window {
        let start = self.start.unwrap_or(end);
        Window {
            start,
            duration: end - start,
            counts: self.counts,
            dead: (self.dead_now - self.dead_at_start).clamp(0.0, (end - start).max(0.0)),
        }
    }

    fn close_at(&mut self, end: f64, closed: &mut impl FnMut(Window)) {
        let w = self.window_until(end);
        // A window that ends on its first event still carries that count.
        if w.duration > 0.0 || w.counts > 0.0 {
            closed(w);
        }
        self.counts = 0.0;
        self.dead_at_start = self.dead_now;
    }
}

/// Which clock the windows run on.
enum Clock {
    /// The host timestamp of each event.
    Host,
    /// The event counter times this many seconds.
    Counter(f64),
    /// A field of the event times this many seconds per unit.
    Field(FieldAccess, f64),
}

/// `process.rate`.
pub struct Rate {
    counter: RateCounter,
    clock: Clock,
    dead: Option<(FieldAccess, f64)>,
    count: Option<FieldAccess>,
    tau: f64,
    outputs: Vec<(FieldAccess, usize)>,
    emitted: i64,
}

impl Rate {
    /// Builds it from its config; checks the source fields and the sink's.
    pub fn build(ctx: &BuildContext) -> Result<Rate, WorkerError> {
        let src = one_source(ctx)?;
        let sink = one_sink(ctx)?;
        ctx.one_process("process.rate", "")?;
        let c = &ctx.config;
        let window = positive(ctx, WINDOW)?;
        let field = |key: MaybeKey<str>| -> Result<Option<FieldAccess>, WorkerError> {
            match c.get(key)? {
                None => Ok(None),
                Some(name) => FieldAccess::new(src, name)
                    .map(Some)
                    .map_err(|e| c.error(key.name, e.to_string()).into()),
            }
        };
        let clock = if c.get(TIME_FIELD)? == Some("counter") {
            Clock::Counter(positive(ctx, TIME_UNIT)?)
        } else {
            match field(TIME_FIELD)? {
                Some(f) => Clock::Field(f, positive(ctx, TIME_UNIT)?),
                None => Clock::Host,
            }
        };
        let dead = field(DEADTIME_FIELD)?
            .map(|f| Ok::<_, WorkerError>((f, positive(ctx, DEADTIME_UNIT)?)));
        let tau = c.get(DEAD_TIME_PER_COUNT)?;
        if !(tau.is_finite() && (0.0..1.0).contains(&tau)) {
            return Err(c
                .error(
                    DEAD_TIME_PER_COUNT.name,
                    "must be 0 ≤ τ < 1 (seconds per count)",
                )
                .into());
        }
        let outputs = feature_fields_needing(ctx, sink, &RATE_FIELDS, 4, " (e.g. rate: float64)")?;
        Ok(Rate {
            counter: RateCounter::new(window),
            clock,
            dead: dead.transpose()?,
            count: field(COUNT_FIELD)?,
            tau,
            outputs,
            emitted: 0,
        })
    }

    /// Events whose time or counts were not finite numbers.
    pub fn skipped(&self) -> u64 {
        self.counter.skipped
    }

    /// Emits window `w`; the record's metadata counter is its window number.
    fn emit(
        outputs: &[(FieldAccess, usize)],
        tau: f64,
        emitted: &mut i64,
        out: &mut dyn Emit,
        w: &Window,
    ) -> Result<(), WorkerError> {
        let (rate, err) = w.rate(tau);
        let live = w.live_time(tau);
        let number = *emitted;
        out.emit(0, &mut |ev| {
            ev.meta.counter = number;
            set_features(outputs, ev.data, |what| match what {
                0 => w.start,
                1 => w.duration,
                2 => w.counts,
                3 => live,
                4 => rate,
                5 => err,
                _ if w.duration > 0.0 => 1.0 - live / w.duration,
                _ => 0.0,
            });
            Ok(())
        })?;
        *emitted += 1;
        Ok(())
    }
}

impl Processor for Rate {
    fn process(&mut self, event: &EventRef<'_>, out: &mut dyn Emit) -> Result<(), WorkerError> {
        let t = match &self.clock {
            Clock::Field(f, unit) => f.get(event.data, 0).map_or(f64::NAN, |v| v * unit),
            Clock::Counter(unit) => event.meta.counter as f64 * unit,
            Clock::Host => event.meta.timestamp,
        };
        let dead = match &self.dead {
            Some((f, unit)) => f.get(event.data, 0).map_or(f64::NAN, |v| v * unit),
            None => 0.0,
        };
        let counts = match &self.count {
            Some(f) => f.get(event.data, 0).unwrap_or(f64::NAN),
            None => 1.0,
        };
        // Each window is emitted as it closes; after a failed emit the rest are not tried.
        let mut result = Ok(());
        let (outputs, tau, emitted) = (&self.outputs, self.tau, &mut self.emitted);
        self.counter.add(t, counts, dead, &mut |w| {
            if result.is_ok() {
                result = Rate::emit(outputs, tau, emitted, out, &w);
            }
        });
        result
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), WorkerError> {
        let mut last = None;
        self.counter.finish(&mut |w| last = Some(w));
        if let Some(w) = last {
            Rate::emit(&self.outputs, self.tau, &mut self.emitted, out, &w)?;
        }
        if self.counter.skipped > 0 {
            tracing::warn!(
                "process.rate: {} events had no valid time or counts and were not counted",
                self.counter.skipped
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::EventCollector;
    use crate::dtype::Dtype;
    use crate::worker::BufferShape;

    fn windows(w: f64, events: &[(f64, f64, f64)]) -> Vec<Window> {
        let mut rc = RateCounter::new(w);
        let mut got = Vec::new();
        for &(t, c, d) in events {
            rc.add(t, c, d, &mut |x| got.push(x));
        }
        rc.finish(&mut |x| got.push(x));
        got
    }

    /// The windows of events of one count each, at `times`, with no dead time.
    fn windows_of_single_counts(w: f64, times: &[f64]) -> Vec<Window> {
        let events: Vec<(f64, f64, f64)> = times.iter().map(|&t| (t, 1.0, 0.0)).collect();
        windows(w, &events)
    }

    #[test]
    fn counts_fall_into_their_windows_and_the_first_event_starts_the_clock() {
        let got = windows_of_single_counts(1.0, &[10.0, 10.5, 10.9, 11.2, 13.5]);
        let summary: Vec<(f64, f64, f64)> = got
            .iter()
            .map(|w| (w.start, w.duration, w.counts))
            .collect();
        assert_eq!(
            summary,
            vec![
                (10.0, 1.0, 2.0),
                (11.0, 1.0, 1.0),
                (12.0, 1.0, 0.0),
                (13.0, 0.5, 1.0),
            ]
        );
    }

    #[test]
    fn cumulative_dead_time_shortens_the_live_time() {
        // 0.2 s dead in the first window, 0.1 s in the second.
        let got = windows(
            1.0,
            &[
                (0.0, 1.0, 1.0),
                (0.5, 1.0, 1.1),
                (0.9, 1.0, 1.2),
                (1.5, 1.0, 1.3),
                (2.0, 1.0, 1.3),
            ],
        );
        // The event at 2.0 ends the second window and belongs to it.
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[1].start, got[1].duration, got[1].counts),
            (1.0, 1.0, 2.0)
        );
        assert!((got[0].dead - 0.2).abs() < 1e-12, "{got:?}");
        assert!((got[0].live_time(0.0) - 0.8).abs() < 1e-12);
        assert_eq!(got[0].rate(0.0).0, 2.0 / 0.8);
        assert!((got[1].dead - 0.1).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn geiger_tube_dead_time_is_corrected_non_paralysably() {
        // m = 1000 counts/s measured, τ = 100 µs: n = m / (1 − mτ) = 1000 / 0.9.
        let w = Window {
            start: 0.0,
            duration: 1.0,
            counts: 1000.0,
            dead: 0.0,
        };
        let (n, _) = w.rate(1e-4);
        assert!((n - 1000.0 / 0.9).abs() < 1e-9, "{n}");
    }

    #[test]
    fn a_clock_reset_and_a_long_gap_neither_panic_nor_invent_counts() {
        let got = windows_of_single_counts(1.0, &[5.0, 5.5, 1.0, 1.2, 5000.5, f64::NAN]);
        let total: f64 = got.iter().map(|w| w.counts).sum();
        // Counted: 5.5 (after the start at 5.0), 1.2 (after the restart at 1.0), 5000.5.
        assert_eq!(total, 3.0, "{got:?}");
        assert!(got.iter().all(|w| w.duration >= 0.0 && w.counts >= 0.0));
        assert!(got.len() < 10, "a long gap is one record: {}", got.len());
    }

    #[test]
    fn poisson_rate_is_recovered_within_its_error() {
        // Poisson arrivals at 50 Hz with 2 ms of dead time per event (recorded cumulatively).
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (rate, dead_per_event) = (50.0, 0.002);
        let (mut t, mut dead, mut events) = (0.0, 0.0, Vec::new());
        while t < 2000.0 {
            // A non-paralysable detector: the next event can come only after the dead time.
            t += dead_per_event - (1.0 - rng.random::<f64>()).ln() / rate;
            dead += dead_per_event;
            events.push((t, 1.0, dead));
        }
        let got = windows(100.0, &events);
        let full: Vec<&Window> = got.iter().filter(|w| w.duration == 100.0).collect();
        assert!(full.len() >= 18, "{}", full.len());
        let pulls: Vec<f64> = full
            .iter()
            .map(|w| {
                let (r, e) = w.rate(0.0);
                (r - rate) / e
            })
            .collect();
        let mean = pulls.iter().sum::<f64>() / pulls.len() as f64;
        let rms = (pulls.iter().map(|p| p * p).sum::<f64>() / pulls.len() as f64).sqrt();
        // Unbiased and with the Poisson spread: mean pull within 3/√n, rms within ±50 %.
        assert!(mean.abs() < 3.0 / (pulls.len() as f64).sqrt(), "{pulls:?}");
        assert!((0.5..1.5).contains(&rms), "{pulls:?}");
        // Without the correction the rate is low by the dead-time fraction (≈ 9 %).
        let uncorrected: f64 =
            full.iter().map(|w| w.counts / w.duration).sum::<f64>() / full.len() as f64;
        assert!(uncorrected < rate * 0.95, "{uncorrected}");
    }

    fn shape(name: &str, dtype: &str) -> BufferShape {
        BufferShape {
            name: name.into(),
            dtype: Dtype::parse(dtype.split(',').map(|f| f.split_once(':').unwrap())).unwrap(),
            data_length: 1,
        }
    }

    #[test]
    fn cosmicwatch_records_become_rate_records() {
        let src = shape("events", "event:u8,time_ms:u8,deadtime_ms:u8");
        let sink = shape(
            "rates",
            "time:f8,counts:u4,live_time:f8,rate:f8,rate_error:f8",
        );
        let ctx = BuildContext::for_test(
            "rate",
            serde_json::json!({"window": 1.0, "time_field": "time_ms", "time_unit": 0.001,
                               "deadtime_field": "deadtime_ms", "deadtime_unit": 0.001}),
            vec![src.clone()],
            vec![sink.clone()],
        );
        let mut r = Rate::build(&ctx).unwrap();
        let mut out = EventCollector::new(std::slice::from_ref(&sink));
        let rec = |ev: u64, ms: u64, dead: u64| {
            let mut b = Vec::new();
            for v in [ev, ms, dead] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b
        };
        for (i, (ms, dead)) in [(1000, 10), (1400, 20), (1800, 30), (2100, 40), (2600, 50)]
            .iter()
            .enumerate()
        {
            let data = rec(i as u64, *ms, *dead);
            let ev = EventRef {
                data: &data,
                meta: Default::default(),
                dtype: &src.dtype,
            };
            r.process(&ev, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        let rows: Vec<(f64, f64, f64)> = out.events[0]
            .iter()
            .map(|(_, d)| {
                let get = |o: usize| f64::from_le_bytes(d[o..o + 8].try_into().unwrap());
                let counts = u32::from_le_bytes(d[8..12].try_into().unwrap()) as f64;
                (get(0), counts, get(12))
            })
            .collect();
        // Window [1.0, 2.0): events at 1.4, 1.8, dead 20 ms; then [2.0, 2.6]: 2.1, 2.6, dead 20 ms.
        assert_eq!(rows.len(), 2, "{rows:?}");
        let numbers: Vec<i64> = out.events[0].iter().map(|(m, _)| m.counter).collect();
        assert_eq!(
            numbers,
            vec![0, 1],
            "window numbers as the metadata counter"
        );
        assert_eq!((rows[0].0, rows[0].1), (1.0, 2.0));
        assert!((rows[0].2 - 0.98).abs() < 1e-9, "{rows:?}");
        assert_eq!((rows[1].0, rows[1].1), (2.0, 2.0));
        assert!((rows[1].2 - 0.58).abs() < 1e-9, "{rows:?}");
    }

    #[test]
    fn geiger_heartbeats_on_the_counter_clock() {
        // One heartbeat per device second carrying that second's counts: 60-s windows give
        // counts per minute whatever the host's timing.
        let src = shape("counts", "cps:u4");
        let sink = shape("rates", "time:f8,counts:f8,rate:f8");
        let ctx = BuildContext::for_test(
            "rate",
            serde_json::json!({"window": 60.0, "time_field": "counter", "count_field": "cps"}),
            vec![src.clone()],
            vec![sink.clone()],
        );
        let mut r = Rate::build(&ctx).unwrap();
        let mut out = EventCollector::new(std::slice::from_ref(&sink));
        for k in 0..=120i64 {
            let data = 3u32.to_le_bytes();
            let meta = crate::dtype::Metadata {
                counter: k,
                timestamp: 0.0,
                deadtime: 0.0,
            };
            let ev = EventRef {
                data: &data,
                meta,
                dtype: &src.dtype,
            };
            r.process(&ev, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        let rates: Vec<f64> = out.events[0]
            .iter()
            .map(|(_, d)| f64::from_le_bytes(d[16..24].try_into().unwrap()))
            .collect();
        // Heartbeat 0 starts the clock; 60 heartbeats of 3 counts fill each window: 3 Hz.
        assert_eq!(rates, vec![3.0, 3.0], "{rates:?}");
    }

    #[test]
    fn bad_configs_are_refused_with_the_key_named() {
        let src = shape("events", "time_ms:u8");
        let sink = shape("rates", "rate:f8");
        let build = |cfg: serde_json::Value, sink: &BufferShape| {
            Rate::build(&BuildContext::for_test(
                "rate",
                cfg,
                vec![src.clone()],
                vec![sink.clone()],
            ))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(build(serde_json::json!({"window": 0}), &sink).contains("window"));
        assert!(build(serde_json::json!({"time_field": "time_s"}), &sink).contains("time_ms"));
        assert!(build(serde_json::json!({"dead_time_per_count": 2}), &sink)
            .contains("dead_time_per_count"));
        assert!(build(serde_json::json!({}), &shape("r", "counts:u4")).contains("'rate'"));
        assert!(
            build(serde_json::json!({}), &shape("r", "rate:f8,cps:f8")).contains("choose fields")
        );
    }
}
