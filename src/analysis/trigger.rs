//! Software triggers: `filter.threshold`, `filter.coincidence` and `filter.prescale`.
//!
//! A threshold *crossing* on a rising edge is a sample `i ≥ 1` with `x[i-1] < level ≤ x[i]`;
//! on a falling edge `x[i-1] > level ≥ x[i]`. The crossing's position is `i`. Levels are in
//! the channel's own units (volts for float fields, ADC counts for integer fields).
//!
//! Guarantees: decisions depend only on the event (and, for the prescaler, on how many events
//! this process has seen), so a run is reproducible. `select` allocates nothing: channel
//! scratch and crossing lists are sized in `build`.
//! Must never: modify the event (Filters copy it unchanged).

use super::trace::{channels, choice, one_source, sinks_like_source, FieldAccess};
use crate::keys;
use crate::worker::{
    BuildContext, EventRef, Filter, FunctionSpec, Key, SinkMask, Template, WorkerError,
};

keys! {
    const EDGE: Key<str> = ("edge", "rising", "rising or falling");
}

/// `filter.threshold`'s keys.
mod threshold {
    use crate::keys;
    use crate::worker::{Key, MaybeKey, Strings};
    keys! {
        pub const LEVEL: Key<f64> = ("level", required, "trigger level in the channel's units (V for float fields, ADC counts for integer fields)");
        pub const CHANNELS: MaybeKey<Strings> = ("channels", absent: "all fields", "channels to look at; any one crossing passes the event");
        pub const PRETRIGGER: Key<usize> = ("pretrigger_samples", 0, "first sample at which a crossing counts (earlier crossings are ignored)");
    }
}

/// `filter.coincidence`'s keys.
mod coincidence {
    use crate::keys;
    use crate::worker::{Key, MaybeKey, Strings};
    keys! {
        pub const LEVEL: Key<f64> = ("level", required, "trigger level in the channel's units (V or ADC counts)");
        pub const CHANNELS: MaybeKey<Strings> = ("channels", absent: "all fields", "channels taking part");
        pub const MIN_CHANNELS: Key<usize> = ("min_channels", 2, "how many different channels must cross");
        pub const WINDOW: Key<usize> = ("window", 10, "largest distance between the crossings (samples)");
        pub const MAX_CROSSINGS: Key<usize> = ("max_crossings", 256, "crossings kept per channel and event (later ones are ignored)");
    }
}

keys! {
    list PRESCALE_KEYS;
    /// `filter.prescale`: the factor.
    const FACTOR: Key<u64> = ("factor", required, "keep 1 event in this many (≥ 1)");
}

/// The declaration of `filter.threshold`.
pub const THRESHOLD_SPEC: FunctionSpec = FunctionSpec::new(
    "filter.threshold",
    Template::Filter,
    "Passes an event when any of the chosen channels crosses `level` on the chosen edge \
     at or after sample `pretrigger_samples`; otherwise drops it.",
    &[
        threshold::LEVEL.spec(),
        EDGE.spec(),
        threshold::CHANNELS.spec(),
        threshold::PRETRIGGER.spec(),
    ],
);

/// The declaration of `filter.coincidence`.
pub const COINCIDENCE_SPEC: FunctionSpec = FunctionSpec::new(
    "filter.coincidence",
    Template::Filter,
    "Passes an event when at least `min_channels` different channels cross `level` \
     within `window` samples of each other.",
    &[
        coincidence::LEVEL.spec(),
        EDGE.spec(),
        coincidence::CHANNELS.spec(),
        coincidence::MIN_CHANNELS.spec(),
        coincidence::WINDOW.spec(),
        coincidence::MAX_CROSSINGS.spec(),
    ],
);

/// The declaration of `filter.prescale`.
pub const PRESCALE_SPEC: FunctionSpec = FunctionSpec::new(
    "filter.prescale",
    Template::Filter,
    "Passes one event in `factor`: the 1st, (factor+1)th, … event this process sees.",
    PRESCALE_KEYS,
);

/// Which way a crossing goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// From below the level to at/above it.
    Rising,
    /// From above the level to at/below it.
    Falling,
}

impl Edge {
    fn from_config(ctx: &BuildContext) -> Result<Edge, WorkerError> {
        Ok(match choice(ctx, EDGE, &["rising", "falling"])? {
            "falling" => Edge::Falling,
            _ => Edge::Rising,
        })
    }
}

/// Position of the first crossing of `level` at index ≥ `from` (≥ 1), if any.
#[inline]
pub fn first_crossing(trace: &[f32], level: f32, edge: Edge, from: usize) -> Option<usize> {
    let from = from.max(1);
    if from >= trace.len() {
        return None;
    }
    let pairs = trace[from - 1..].windows(2);
    let hit = match edge {
        Edge::Rising => pairs.clone().position(|w| w[0] < level && w[1] >= level),
        Edge::Falling => pairs.clone().position(|w| w[0] > level && w[1] <= level),
    };
    hit.map(|p| p + from)
}

fn level(ctx: &BuildContext, key: Key<f64>) -> Result<f32, WorkerError> {
    let v = ctx.config.get(key)?;
    if !v.is_finite() {
        return Err(ctx.config.error(key.name, "must be a finite number").into());
    }
    Ok(v as f32)
}

/// Samples converted and scanned at a time by [`first_crossing_in`]: small enough to stay in
/// L1 and to stop early, large enough for the scan loop to run at full speed.
pub const SCAN_BLOCK: usize = 512;

/// Position of the first crossing of `level` at index ≥ `from` (≥ 1) in field `ch` of
/// `data`. Same definition as [`first_crossing`]; the channel is converted block by block
/// into `scratch` (at least 2 values long; [`SCAN_BLOCK`]` + 1` is best), so a crossing near
/// the start is found without converting the rest of the trace.
#[inline]
pub fn first_crossing_in(
    ch: &FieldAccess,
    data: &[u8],
    level: f32,
    edge: Edge,
    from: usize,
    scratch: &mut [f32],
) -> Option<usize> {
    let block = scratch.len().checked_sub(1).filter(|b| *b > 0)?;
    // Each block starts one sample early so a crossing on a block boundary is seen.
    let mut start = from.max(1) - 1;
    loop {
        let bytes = data.get(start.checked_mul(ch.stride)?..)?;
        let n = ch.load(bytes, &mut scratch[..=block]);
        if n < 2 {
            return None;
        }
        if let Some(i) = first_crossing(&scratch[..n], level, edge, 1) {
            return Some(start + i);
        }
        start += n - 1;
    }
}

/// `filter.threshold`.
pub struct Threshold {
    channels: Vec<FieldAccess>,
    level: f32,
    edge: Edge,
    from: usize,
    scratch: Vec<f32>,
}

impl Threshold {
    /// Builds the trigger; checks the channels exist and the sinks match the source.
    pub fn build(ctx: &BuildContext) -> Result<Threshold, WorkerError> {
        let src = one_source(ctx)?;
        sinks_like_source(ctx, src)?;
        let from = ctx.config.get(threshold::PRETRIGGER)?;
        if from >= src.data_length {
            return Err(ctx
                .config
                .error(
                    threshold::PRETRIGGER.name,
                    format!(
                        "{from} is not inside the trace of {} samples",
                        src.data_length
                    ),
                )
                .into());
        }
        Ok(Threshold {
            channels: channels(ctx, threshold::CHANNELS, src)?,
            level: level(ctx, threshold::LEVEL)?,
            edge: Edge::from_config(ctx)?,
            from,
            scratch: vec![0f32; SCAN_BLOCK + 1],
        })
    }
}

impl Filter for Threshold {
    fn select(&mut self, event: &EventRef<'_>) -> Result<SinkMask, WorkerError> {
        for ch in &self.channels {
            let hit = first_crossing_in(
                ch,
                event.data,
                self.level,
                self.edge,
                self.from,
                &mut self.scratch,
            );
            if hit.is_some() {
                return Ok(SinkMask::ALL);
            }
        }
        Ok(SinkMask::NONE)
    }
}

/// `filter.coincidence`.
pub struct Coincidence {
    channels: Vec<FieldAccess>,
    level: f32,
    edge: Edge,
    min_channels: usize,
    window: usize,
    scratch: Vec<f32>,
    /// Per channel: crossing positions (capacity `max_crossings`) and how many are used.
    crossings: Vec<(Vec<usize>, usize)>,
}

impl Coincidence {
    /// Builds the coincidence trigger.
    pub fn build(ctx: &BuildContext) -> Result<Coincidence, WorkerError> {
        let c = &ctx.config;
        let src = one_source(ctx)?;
        sinks_like_source(ctx, src)?;
        let chans = channels(ctx, coincidence::CHANNELS, src)?;
        let min_channels = c.get(coincidence::MIN_CHANNELS)?;
        if min_channels == 0 || min_channels > chans.len() {
            return Err(c
                .error(
                    coincidence::MIN_CHANNELS.name,
                    format!(
                        "must be between 1 and the {} channels taking part",
                        chans.len()
                    ),
                )
                .into());
        }
        let max = c.get(coincidence::MAX_CROSSINGS)?;
        if max == 0 {
            return Err(c
                .error(coincidence::MAX_CROSSINGS.name, "must be at least 1")
                .into());
        }
        Ok(Coincidence {
            crossings: chans.iter().map(|_| (vec![0; max], 0)).collect(),
            channels: chans,
            level: level(ctx, coincidence::LEVEL)?,
            edge: Edge::from_config(ctx)?,
            min_channels,
            window: c.get(coincidence::WINDOW)?,
            scratch: vec![0f32; src.data_length],
        })
    }

    /// True when at least `min_channels` channels have crossings within `window` samples.
    fn coincident(&self) -> bool {
        // Try every crossing as the start of a window [t, t + window]; count channels that
        // have a crossing inside it. Crossing lists are sorted, so a binary search suffices.
        for (a, (list, n)) in self.crossings.iter().enumerate() {
            for &t in &list[..*n] {
                let mut count = 1;
                for (b, (other, m)) in self.crossings.iter().enumerate() {
                    if a == b {
                        continue;
                    }
                    let o = &other[..*m];
                    let i = o.partition_point(|&x| x < t);
                    if i < o.len() && o[i] <= t + self.window {
                        count += 1;
                    }
                }
                if count >= self.min_channels {
                    return true;
                }
            }
        }
        false
    }
}

impl Filter for Coincidence {
    fn select(&mut self, event: &EventRef<'_>) -> Result<SinkMask, WorkerError> {
        let mut with_any = 0;
        for (ch, (list, used)) in self.channels.iter().zip(self.crossings.iter_mut()) {
            let n = ch.load(event.data, &mut self.scratch);
            let trace = &self.scratch[..n];
            *used = 0;
            let mut from = 1;
            while *used < list.len() {
                match first_crossing(trace, self.level, self.edge, from) {
                    Some(i) => {
                        list[*used] = i;
                        *used += 1;
                        from = i + 1;
                    }
                    None => break,
                }
            }
            if *used > 0 {
                with_any += 1;
            }
        }
        if with_any < self.min_channels {
            return Ok(SinkMask::NONE);
        }
        Ok(SinkMask::from(self.coincident()))
    }
}

/// `filter.prescale`.
pub struct Prescale {
    factor: u64,
    seen: u64,
}

impl Prescale {
    /// Builds the prescaler.
    pub fn build(ctx: &BuildContext) -> Result<Prescale, WorkerError> {
        let src = one_source(ctx)?;
        sinks_like_source(ctx, src)?;
        match ctx.config.get(FACTOR)? {
            0 => Err(ctx.config.error(FACTOR.name, "must be ≥ 1").into()),
            factor => Ok(Prescale { factor, seen: 0 }),
        }
    }
}

impl Filter for Prescale {
    fn select(&mut self, _event: &EventRef<'_>) -> Result<SinkMask, WorkerError> {
        let keep = self.seen.is_multiple_of(self.factor);
        self.seen += 1;
        Ok(SinkMask::from(keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{Dtype, Metadata};
    use crate::worker::BufferShape;

    /// Two channels with a single rising crossing of 0.5 at samples `a` and `b`.
    fn two_steps(a: usize, b: usize) -> (BufferShape, Vec<u8>) {
        let s = BufferShape {
            name: "raw".into(),
            dtype: Dtype::parse([("x", "f4"), ("y", "f4")]).unwrap(),
            data_length: 40,
        };
        let mut data = vec![0u8; 40 * 8];
        let step =
            |at: usize| -> Vec<f32> { (0..40).map(|i| if i >= at { 1.0 } else { 0.0 }).collect() };
        FieldAccess::new(&s, "x")
            .unwrap()
            .store(&mut data, &step(a));
        FieldAccess::new(&s, "y")
            .unwrap()
            .store(&mut data, &step(b));
        (s, data)
    }

    #[test]
    fn byte_scan_agrees_with_slice_scan() {
        let (s, mut data) = two_steps(5, 9);
        let noisy: Vec<f32> = (0..40)
            .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let y = FieldAccess::new(&s, "y").unwrap();
        y.store(&mut data, &noisy);
        for edge in [Edge::Rising, Edge::Falling] {
            for from in [0, 1, 5, 9, 20, 39, 40, 100] {
                for level in [-0.5f32, 0.0, 0.5, 1.0] {
                    for block in [1, 2, 3, 7, 64] {
                        let mut scratch = vec![0f32; block + 1];
                        assert_eq!(
                            first_crossing_in(&y, &data, level, edge, from, &mut scratch),
                            first_crossing(&noisy, level, edge, from),
                            "{edge:?} from {from} level {level} block {block}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn coincidence_window_is_inclusive_and_exact() {
        for (a, b, window, want) in [
            (10, 14, 3, false),
            (10, 14, 4, true),
            (14, 10, 4, true),
            (10, 10, 0, true),
        ] {
            let (s, data) = two_steps(a, b);
            let ctx = BuildContext::for_test(
                "c",
                serde_json::json!({"level": 0.5, "window": window}),
                vec![s.clone()],
                vec![s.clone()],
            );
            let mut c = Coincidence::build(&ctx).unwrap();
            let ev = EventRef {
                data: &data,
                meta: Metadata::default(),
                dtype: &s.dtype,
            };
            assert_eq!(
                c.select(&ev).unwrap() == SinkMask::ALL,
                want,
                "{a} {b} {window}"
            );
        }
    }

    #[test]
    fn crossings_follow_the_definition() {
        let t = [0.0, 0.5, 1.0, 2.0, 0.5, 1.0, 0.0];
        assert_eq!(first_crossing(&t, 1.0, Edge::Rising, 0), Some(2));
        assert_eq!(first_crossing(&t, 1.0, Edge::Rising, 3), Some(5));
        assert_eq!(first_crossing(&t, 1.0, Edge::Rising, 6), None);
        assert_eq!(first_crossing(&t, 1.0, Edge::Falling, 0), Some(4));
        assert_eq!(first_crossing(&t, 5.0, Edge::Rising, 0), None);
        assert_eq!(first_crossing(&[], 1.0, Edge::Rising, 0), None);
        // Starting above the level is not a crossing.
        assert_eq!(first_crossing(&[2.0, 3.0], 1.0, Edge::Rising, 0), None);
    }
}
