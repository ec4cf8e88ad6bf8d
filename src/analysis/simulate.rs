//! `simulate.pulses`: a detector in software. Each event holds `data_length` samples per
//! channel (the sink's fields): baseline, gaussian noise, one pulse at the trigger position
//! and, for a chosen fraction of events, a second pulse after an exponentially distributed
//! delay (a stopped muon decaying). Arrivals are Poisson in simulated time.
//!
//! Guarantees: the same `seed` and config give the same samples, byte for byte, and the
//! same gaps between timestamps (timestamps count from the wall-clock time of `build`); a
//! process started again after `taken` events draws new ones, the same for the same
//! `taken`. `next` allocates nothing; the pulse shape is tabulated in `build` at 16
//! sub-sample phases, and noise comes either from a precomputed table (`noise_generator:
//! table`, the default, at memory speed) or from the Ziggurat sampler (`ziggurat`, exact and
//! independent per sample).
//! [`SimulatePulses::truth`] tells tests what was injected.
//!
//! Must never: sleep unless `realtime: true`, and then at most 100 ms per call.
//!
//! # The noise table, and why it is statistically acceptable
//! The table holds 2^20 (or 8 × data_length, whichever is larger) independent standard
//! normal draws made with the Ziggurat sampler at build time. Each channel of each event
//! reads a contiguous stretch starting at a uniformly random offset, multiplied by a random
//! sign. Every sample is therefore an exact N(0, σ²) draw, and samples within one trace are
//! distinct draws, hence independent: pulse heights, baselines and noise RMS come out with
//! the right distributions. What the table gives up is independence *between* traces: two
//! traces overlap in part of the table with probability about 2·data_length / table size
//! (0.8 % for 4096 samples), and then share (possibly sign-flipped) noise stretches. That
//! is harmless for everything computed per trace; a study of correlations between events
//! should choose `noise_generator: ziggurat`.

use super::trace::{choice, positive, positive_time, FieldAccess};
use crate::keys;
use crate::worker::{
    BuildContext, Config, EventMut, FunctionSpec, Importer, Key, MaybeKey, Numbers, Produced,
    Strings, Template, WiringError, WorkerError,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::{Duration, Instant};

/// Sub-sample phases at which the pulse shape is tabulated (time resolution 1/16 sample).
pub const PHASES: usize = 16;

/// Longest a real-time `next` sleeps before returning `Idle` (so a stop is seen quickly).
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// The declaration of `simulate.pulses`.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "simulate.pulses",
    Template::Importer,
    "Simulated detector pulses on every channel (sink field): baseline, gaussian noise, \
     a pulse at the trigger position with a chosen shape and amplitude distribution, an \
     optional second pulse after an exponential delay (muon decay), Poisson arrivals, \
     ADC quantisation, reproducible from a seed.",
    KEYS,
);

/// The most normals `noise_generator: table` precomputes: 16 Mi (64 MiB), eight events of
/// 2 Mi samples. Longer events draw each sample (as `ziggurat`): their table, eight events
/// long, took 4 GB and half a minute to fill for 10^8 samples, in `check` as in the run.
const LARGEST_NOISE_TABLE: usize = 1 << 24;

/// The shortest `sample_interval`: a picosecond, shorter than any digitiser's (the fastest
/// take a sample every few ps). Much shorter, the pulse's time constants in samples outgrow
/// what a machine word counts.
const SHORTEST_SAMPLE_INTERVAL: f64 = 1e-12;

keys! {
    list KEYS;
    const CHANNELS: MaybeKey<Strings> = ("channels", absent: "all fields", "sink fields to fill, one per channel (f4/f8 in volts, integer types in ADC counts)");
    const SAMPLE_INTERVAL: Key<f64> = ("sample_interval", 4.0e-9, "time between samples (s), from 1e-12 (a picosecond) to a year");
    const PRETRIGGER_SAMPLES: Key<usize> = ("pretrigger_samples", 100, "sample at which the (first) pulse starts");
    const RATE: Key<f64> = ("rate", 1000.0, "mean event rate (Hz), at least one event a year (3.17e-8); gaps are exponential");
    const REALTIME: Key<bool> = ("realtime", false, "sleep so events arrive at `rate` in wall time; false = as fast as possible");
    const N_EVENTS: Key<u64> = ("n_events", 0, "events to produce, then end; 0 = no limit");
    const SEED: Key<i64> = ("seed", 1, "random seed; the same seed gives the same events");
    const SHAPE: Key<str> = ("shape", "exponential", "pulse shape: `exponential` (rise and decay) or `template`");
    const RISE_TIME: Key<f64> = ("rise_time", 1.0e-8, "exponential shape: rise time constant (s); 0 = instant rise");
    const DECAY_TIME: Key<f64> = ("decay_time", 4.0e-8, "exponential shape: decay time constant (s)");
    const TEMPLATE: MaybeKey<Numbers> = ("template", absent: "none", "measured pulse, one value per sample_interval, scaled so its peak is 1");
    const AMPLITUDE: Key<str> = ("amplitude", "gaussian", "pulse height distribution: fixed, gaussian, exponential, landau (Moyal) or lines");
    const AMPLITUDE_MEAN: Key<f64> = ("amplitude_mean", 0.5, "fixed/gaussian: mean height; exponential: mean; landau: most probable value (V)");
    const AMPLITUDE_SIGMA: Key<f64> = ("amplitude_sigma", 0.05, "gaussian: standard deviation; landau: width (V)");
    const LINE_AMPLITUDES: MaybeKey<Numbers> = ("line_amplitudes", absent: "none", "lines: the pulse height of each line (V)");
    const LINE_WEIGHTS: MaybeKey<Numbers> = ("line_weights", absent: "all equal", "lines: relative intensity of each line");
    const RESOLUTION: Key<f64> = ("resolution", 0.03, "lines: gaussian sigma as a fraction of the line's height");
    const POLARITY: Key<str> = ("polarity", "positive", "pulse sign: positive or negative");
    const BASELINE: Key<f64> = ("baseline", 0.0, "constant offset of every sample (V)");
    const NOISE: Key<f64> = ("noise", 0.002, "gaussian noise RMS per sample (V); 0 = none");
    const NOISE_GENERATOR: Key<str> = ("noise_generator", "table", "`table` (precomputed normals at random offsets, fast; for events over 2 Mi samples as ziggurat) or `ziggurat` (exact, independent per sample)");
    const DECAY_FRACTION: Key<f64> = ("decay_fraction", 0.0, "fraction of events with a second pulse after an exponential delay");
    const LIFETIME: Key<f64> = ("lifetime", 2.197e-6, "mean delay of the second pulse (s); the muon lifetime by default");
    const COINCIDENCE: Key<bool> = ("coincidence", true, "true: every channel has the pulses; false: one channel chosen at random per event");
    const ADC_BITS: Key<usize> = ("adc_bits", 0, "quantise to this many bits over ±adc_range; 0 = no quantisation for float fields, the field's width for integer fields (at most that; an unsigned field holds offset binary, 0 V at mid-scale)");
    const ADC_RANGE: Key<f64> = ("adc_range", 1.0, "ADC full scale: values span ±adc_range (V)");
}

/// A pulse shape with peak 1, tabulated at [`PHASES`] sub-sample phases.
#[derive(Clone, Debug)]
pub struct PulseShape {
    /// `table[p * len + j]`: the shape at `j + p / PHASES` samples after the onset.
    table: Vec<f32>,
    len: usize,
    kind: ShapeKind,
}

#[derive(Clone, Debug)]
enum ShapeKind {
    /// Time constants in samples; `norm` makes the peak 1.
    Exponential { rise: f64, decay: f64, norm: f64 },
    /// Samples, peak-normalised.
    Template(Vec<f64>),
}

impl ShapeKind {
    /// The shape at `t` samples after the onset.
    fn value(&self, t: f64) -> f64 {
        if t < 0.0 {
            return 0.0;
        }
        match self {
            ShapeKind::Exponential { rise, decay, norm } => {
                let v = if *rise <= 0.0 {
                    (-t / decay).exp()
                } else if (decay - rise).abs() < 1e-9 * decay {
                    t / decay * (1.0 - t / decay).exp()
                } else {
                    (-t / decay).exp() - (-t / rise).exp()
                };
                v / norm
            }
            ShapeKind::Template(s) => {
                let i = t.floor() as usize;
                let f = t - t.floor();
                let a = s.get(i).copied().unwrap_or(0.0);
                let b = s.get(i + 1).copied().unwrap_or(0.0);
                a + (b - a) * f
            }
        }
    }
}

impl PulseShape {
    /// A double-exponential pulse (time constants in samples; `rise` 0 = instant rise),
    /// tabulated for at most `max_len` samples.
    pub fn exponential(rise: f64, decay: f64, max_len: usize) -> PulseShape {
        let peak = if rise <= 0.0 || (decay - rise).abs() < 1e-9 * decay {
            1.0
        } else {
            let tp = rise * decay / (decay - rise) * (decay / rise).ln();
            (-tp / decay).exp() - (-tp / rise).exp()
        };
        // In floating point: time constants of more samples than a machine word counts are
        // cut to `max_len` rather than overflow.
        let len = ((rise.max(0.0) + decay) * 12.0).ceil() + 2.0;
        let max_len = max_len.max(1);
        let len = if len < max_len as f64 {
            len as usize
        } else {
            max_len
        };
        PulseShape::tabulate(
            ShapeKind::Exponential {
                rise,
                decay,
                norm: peak,
            },
            len,
        )
    }

    /// A measured pulse, one value per sample, scaled so its largest |value| is 1.
    pub fn template(samples: &[f64], max_len: usize) -> Option<PulseShape> {
        let peak = samples.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if !(peak.is_finite() && peak > 0.0) {
            return None;
        }
        let s: Vec<f64> = samples.iter().map(|v| v / peak).collect();
        let len = (s.len() + 1).min(max_len.max(1));
        Some(PulseShape::tabulate(ShapeKind::Template(s), len))
    }

    fn tabulate(kind: ShapeKind, len: usize) -> PulseShape {
        let mut table = vec![0f32; PHASES * len];
        for p in 0..PHASES {
            for j in 0..len {
                table[p * len + j] = kind.value(j as f64 + p as f64 / PHASES as f64) as f32;
            }
        }
        PulseShape { table, len, kind }
    }

    /// The shape at `t` samples after the onset (exact, not tabulated).
    pub fn value(&self, t: f64) -> f64 {
        self.kind.value(t)
    }

    /// Samples from the onset until the leading edge first reaches `fraction` of the peak
    /// (to 1/1000 sample), or `None` if it never does.
    pub fn rise_crossing(&self, fraction: f64) -> Option<f64> {
        let step = 1e-3;
        let mut t = 0.0;
        let mut prev = self.value(0.0);
        if prev >= fraction {
            return Some(0.0);
        }
        while t < self.len as f64 {
            let next = self.value(t + step);
            if next >= fraction {
                return Some(t + step * (fraction - prev) / (next - prev));
            }
            prev = next;
            t += step;
        }
        None
    }

    /// Samples tabulated after the onset.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is tabulated.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `amplitude × shape` to `trace` with the onset at `onset` samples (may be
    /// fractional; rounded to 1/[`PHASES`] sample). Parts outside the trace are dropped.
    #[inline]
    pub fn add_to(&self, trace: &mut [f32], onset: f64, amplitude: f32) {
        let Some((start, row)) = self.placement(onset, trace.len()) else {
            return;
        };
        for (t, s) in trace[start..].iter_mut().zip(row) {
            *t += amplitude * s;
        }
    }

    /// As [`PulseShape::add_to`], on a float32 field at byte `offset` of records of `stride`
    /// bytes in `data` (`n` records): the same arithmetic, so the same values.
    pub fn add_to_field(
        &self,
        data: &mut [u8],
        stride: usize,
        offset: usize,
        n: usize,
        onset: f64,
        amplitude: f32,
    ) {
        let Some((start, row)) = self.placement(onset, n) else {
            return;
        };
        let Some(tail) = data.get_mut(start * stride + offset..) else {
            return;
        };
        for (rec, s) in tail.chunks_mut(stride).zip(row) {
            if let Some(b) = rec.get_mut(..4) {
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                let v = f32::from_le_bytes(a) + amplitude * s;
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// Where a pulse with this onset lands in a trace of `len` samples: the first sample it
    /// touches and the tabulated row of shape values from there on.
    fn placement(&self, onset: f64, len: usize) -> Option<(usize, &[f32])> {
        if !onset.is_finite() || onset >= len as f64 {
            return None;
        }
        // First sample at or after the onset, and how far after it lies.
        let mut first = onset.ceil();
        let mut phase = ((first - onset) * PHASES as f64).round() as usize;
        if phase >= PHASES {
            // The onset rounds to the sample just before `first`: start there at phase 0.
            phase -= PHASES;
            first -= 1.0;
        }
        // A negative onset starts the pulse before the trace: skip the samples before 0.
        let (start, skip) = if first < 0.0 {
            (0usize, (-first) as usize)
        } else {
            (first as usize, 0)
        };
        if skip >= self.len || start >= len {
            return None;
        }
        Some((
            start,
            &self.table[phase * self.len + skip..(phase + 1) * self.len],
        ))
    }
}

/// How pulse heights are drawn.
#[derive(Clone, Debug)]
enum Amplitude {
    Fixed(f64),
    Gaussian {
        mean: f64,
        sigma: f64,
    },
    Exponential {
        mean: f64,
    },
    Landau {
        mpv: f64,
        width: f64,
    },
    Lines {
        heights: Vec<f64>,
        cumulative: Vec<f64>,
        resolution: f64,
    },
}

impl Amplitude {
    fn draw(&self, rng: &mut Xoshiro256PlusPlus) -> f64 {
        match self {
            Amplitude::Fixed(a) => *a,
            Amplitude::Gaussian { mean, sigma } => {
                mean + sigma * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
            }
            Amplitude::Exponential { mean } => {
                mean * <Exp1 as Distribution<f64>>::sample(&Exp1, rng)
            }
            Amplitude::Landau { mpv, width } => {
                // Moyal distribution: if Z ~ N(0,1), -ln(Z²) has the Moyal density, whose
                // mode is 0 and whose right tail is Landau-like. Heights below 0 are cut.
                let z: f64 = StandardNormal.sample(rng);
                (mpv + width * -(z * z).max(1e-300).ln()).max(0.0)
            }
            Amplitude::Lines {
                heights,
                cumulative,
                resolution,
            } => {
                let u: f64 = rng.random();
                let k = cumulative
                    .iter()
                    .position(|c| u < *c)
                    .unwrap_or(heights.len() - 1);
                let z: f64 = StandardNormal.sample(rng);
                heights[k] * (1.0 + resolution * z)
            }
        }
    }
}

/// One injected pulse.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TruthPulse {
    /// Onset, in samples from the start of the trace (the pulse shape's time 0).
    pub onset: f64,
    /// Peak height above the baseline, signed by the polarity (V, before quantisation).
    pub amplitude: f64,
}

/// What was injected into the last event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Truth {
    /// Per channel (in `channels` order): the pulses that start inside the trace, at most 2.
    pub pulses: Vec<([TruthPulse; 2], usize)>,
    /// The drawn decay delay (s), if this event has a second pulse (even one that falls
    /// after the end of the trace).
    pub delay: Option<f64>,
}

/// The quantiser: round to `lsb` steps and clamp to the ADC's codes (two's complement, or
/// offset binary for an unsigned field: 0 V at mid-scale, `offset` counts).
#[derive(Clone, Copy, Debug)]
struct Quantiser {
    inv_lsb: f32,
    offset: f32,
    lo: f32,
    hi: f32,
    /// 1 to write counts (integer fields), `lsb` to write volts (float fields).
    out_scale: f32,
}

/// Writes `N` channels stored one after the other in `planar` (`n` samples each) into `out`
/// as `n` records of `N` little-endian float32 values: one pass over the slot, record by
/// record, about twice as fast as writing each channel with a stride.
fn interleave<const N: usize>(planar: &[f32], n: usize, out: &mut [u8]) {
    let lanes: [&[f32]; N] = std::array::from_fn(|k| &planar[k * n..(k + 1) * n]);
    for (i, rec) in out.chunks_exact_mut(4 * N).take(n).enumerate() {
        for (k, dst) in rec.chunks_exact_mut(4).enumerate() {
            dst.copy_from_slice(&lanes[k][i].to_le_bytes());
        }
    }
}

/// `simulate.pulses` (see the module documentation).
pub struct SimulatePulses {
    channels: Vec<FieldAccess>,
    quantisers: Vec<Option<Quantiser>>,
    other_fields: bool,
    data_length: usize,
    pretrigger: f64,
    shape: PulseShape,
    amplitude: Amplitude,
    polarity: f64,
    rate: f64,
    realtime: bool,
    n_events: u64,
    produced: u64,
    baseline: f32,
    noise: f32,
    noise_table: Option<Vec<f32>>,
    decay_fraction: f64,
    lifetime_samples: f64,
    sample_interval: f64,
    coincidence: bool,
    seed: u64,
    rng: Xoshiro256PlusPlus,
    sim_time: f64,
    pending: bool,
    /// All channels are the sink's float32 fields in record order, unquantised: generate them
    /// one after the other in `trace` and interleave once.
    planar: bool,
    /// Fused path: per channel, the noise-table offset and the signed noise RMS.
    lanes: Vec<(usize, f32)>,
    start_epoch: f64,
    start: Instant,
    /// Realtime: how long the engine has held this source back in all (dead time).
    held: Duration,
    trace: Vec<f32>,
    truth: Truth,
}

impl SimulatePulses {
    /// Builds the simulator from its config and its sink's shape.
    pub fn build(ctx: &BuildContext) -> Result<SimulatePulses, WorkerError> {
        let c = &ctx.config;
        let sink = super::trace::one_sink(ctx)?;
        let channels = super::trace::channels(ctx, CHANNELS, sink)?;
        let n = sink.data_length;
        if n == 0 {
            return Err(WiringError::Empty {
                sink: sink.name.clone(),
                why: "a trace needs at least one sample",
            }
            .into());
        }
        let dt = positive_time(ctx, SAMPLE_INTERVAL)?;
        if dt < SHORTEST_SAMPLE_INTERVAL {
            return Err(c
                .error(
                    SAMPLE_INTERVAL.name,
                    format!(
                        "{dt:?} s: must be from {SHORTEST_SAMPLE_INTERVAL:e} s (a picosecond, \
                         shorter than any digitiser's) to a year"
                    ),
                )
                .into());
        }
        let pretrigger = c.get(PRETRIGGER_SAMPLES)?;
        if pretrigger >= n {
            return Err(c
                .error(
                    PRETRIGGER_SAMPLES.name,
                    format!("{pretrigger} is not inside the trace of {n} samples"),
                )
                .into());
        }
        let rate = positive(ctx, RATE)?;
        // The mean gap between events is a time like any key's, at most a year: longer, the
        // arrival times overflow the clock that paces them.
        let least_rate = 1.0 / Config::LONGEST;
        if rate < least_rate {
            return Err(c
                .error(
                    RATE.name,
                    format!("{rate:?} Hz: must be at least one event a year ({least_rate:.3e} Hz)"),
                )
                .into());
        }
        let shape = match choice(ctx, SHAPE, &["exponential", "template"])? {
            "template" => {
                let t = c.get(TEMPLATE)?.ok_or_else(|| {
                    c.error(TEMPLATE.name, "is required when shape is 'template'")
                })?;
                PulseShape::template(&t, n + 1).ok_or_else(|| {
                    c.error(TEMPLATE.name, "needs at least one finite, non-zero value")
                })?
            }
            _ => {
                let rise = c.get(RISE_TIME)?;
                if !(rise.is_finite() && rise >= 0.0) {
                    return Err(c.error(RISE_TIME.name, "must be a number ≥ 0 (s)").into());
                }
                c.duration(RISE_TIME.name, rise)?;
                let decay = positive_time(ctx, DECAY_TIME)?;
                if rise > 0.0 && rise > decay {
                    return Err(c
                        .error(RISE_TIME.name, "must not be longer than decay_time")
                        .into());
                }
                PulseShape::exponential(rise / dt, decay / dt, n + 1)
            }
        };
        let mean = c.get(AMPLITUDE_MEAN)?;
        let sigma = c.get(AMPLITUDE_SIGMA)?;
        let amplitude = match choice(
            ctx,
            AMPLITUDE,
            &["fixed", "gaussian", "exponential", "landau", "lines"],
        )? {
            "fixed" => Amplitude::Fixed(mean),
            "exponential" => Amplitude::Exponential { mean },
            "landau" => Amplitude::Landau {
                mpv: mean,
                width: sigma.abs(),
            },
            "lines" => {
                let heights = c.get(LINE_AMPLITUDES)?.ok_or_else(|| {
                    c.error(
                        LINE_AMPLITUDES.name,
                        "is required when amplitude is 'lines'",
                    )
                })?;
                if heights.is_empty() || heights.iter().any(|h| !h.is_finite()) {
                    return Err(c
                        .error(LINE_AMPLITUDES.name, "needs at least one finite height")
                        .into());
                }
                let weights = c
                    .get(LINE_WEIGHTS)?
                    .unwrap_or_else(|| vec![1.0; heights.len()]);
                if weights.len() != heights.len()
                    || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                    || weights.iter().sum::<f64>() <= 0.0
                {
                    return Err(c
                        .error(
                            LINE_WEIGHTS.name,
                            format!(
                                "needs {} weights ≥ 0 (one per line) with a positive sum",
                                heights.len()
                            ),
                        )
                        .into());
                }
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                let cumulative = weights
                    .iter()
                    .map(|w| {
                        acc += w / total;
                        acc
                    })
                    .collect();
                let resolution = c.get(RESOLUTION)?;
                if !(resolution.is_finite() && resolution >= 0.0) {
                    return Err(c.error(RESOLUTION.name, "must be a number ≥ 0").into());
                }
                Amplitude::Lines {
                    heights,
                    cumulative,
                    resolution,
                }
            }
            _ => Amplitude::Gaussian {
                mean,
                sigma: sigma.abs(),
            },
        };
        let polarity = match choice(ctx, POLARITY, &["positive", "negative"])? {
            "negative" => -1.0,
            _ => 1.0,
        };
        let noise = c.get(NOISE)?;
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(c.error(NOISE.name, "must be a number ≥ 0 (V)").into());
        }
        let seed = c.get(SEED)? as u64;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let noise_table = match choice(ctx, NOISE_GENERATOR, &["table", "ziggurat"])? {
            "table" if noise > 0.0 && 8 * n <= LARGEST_NOISE_TABLE => {
                let size = (1usize << 20).max((8 * n).next_power_of_two());
                let mut t = vec![0f32; size];
                for v in &mut t {
                    *v = StandardNormal.sample(&mut rng);
                }
                Some(t)
            }
            _ => None,
        };
        let decay_fraction = c.get(DECAY_FRACTION)?;
        if !(0.0..=1.0).contains(&decay_fraction) {
            return Err(c
                .error(DECAY_FRACTION.name, "must be between 0 and 1")
                .into());
        }
        let lifetime = positive_time(ctx, LIFETIME)?;
        let range = positive(ctx, ADC_RANGE)?;
        let bits = c.get(ADC_BITS)?;
        if bits > 32 {
            return Err(c.error(ADC_BITS.name, "must be at most 32").into());
        }
        // An integer field holds the ADC's codes whole, or they are clipped.
        if let Some(ch) = channels
            .iter()
            .find(|ch| ch.is_integer() && bits > 8 * ch.scalar.size())
        {
            return Err(c
                .error(
                    ADC_BITS.name,
                    format!(
                        "{bits} bits do not fit field '{}' ({}, {} bits): give at most {}, or \
                         a wider field",
                        ch.name,
                        ch.scalar.name(),
                        8 * ch.scalar.size(),
                        8 * ch.scalar.size()
                    ),
                )
                .into());
        }
        // The ADC's bits for a channel, and the volts of one count.
        let field_bits = |ch: &FieldAccess| {
            if bits == 0 && ch.is_integer() {
                8 * ch.scalar.size()
            } else {
                bits
            }
        };
        let lsb_of = |b: usize| range / 2f64.powi(b as i32 - 1);
        let quantisers: Vec<Option<Quantiser>> = channels
            .iter()
            .map(|ch| {
                let b = field_bits(ch);
                if b == 0 {
                    return None;
                }
                let half = 2f64.powi(b as i32 - 1);
                let lsb = lsb_of(b);
                let offset = if ch.is_unsigned() { half } else { 0.0 };
                Some(Quantiser {
                    inv_lsb: (1.0 / lsb) as f32,
                    offset: offset as f32,
                    lo: (offset - half) as f32,
                    hi: (offset + half - 1.0) as f32,
                    out_scale: if ch.is_integer() { 1.0 } else { lsb as f32 },
                })
            })
            .collect();
        // Integer fields hold ADC counts: say how they become volts (for the exporters).
        let scales = crate::run_dir::scales::SampleScales {
            buffer: sink.name.clone(),
            fields: channels
                .iter()
                .filter(|ch| ch.is_integer())
                .map(|ch| crate::run_dir::scales::FieldScale {
                    field: ch.name.clone(),
                    volts_per_count: lsb_of(field_bits(ch)),
                    // Offset binary: mid-scale is 0 V.
                    offset_volts: if ch.is_unsigned() { -range } else { 0.0 },
                })
                .collect(),
        };
        if ctx.process.0 == 0 {
            if let Err(e) = scales.write(&ctx.run_dir, &ctx.worker) {
                tracing::warn!("{}: cannot write its sample scales: {e}", ctx.worker);
            }
        }
        let other_fields = sink.dtype.fields().len() != channels.len();
        let nch = channels.len();
        let planar = !other_fields
            && channels
                .iter()
                .enumerate()
                .all(|(k, c)| c.scalar == crate::dtype::Scalar::F32 && c.offset == 4 * k)
            && quantisers.iter().all(|q| q.is_none());
        Ok(SimulatePulses {
            channels,
            quantisers,
            other_fields,
            data_length: n,
            pretrigger: pretrigger as f64,
            shape,
            amplitude,
            polarity,
            rate,
            realtime: c.get(REALTIME)?,
            n_events: c.get(N_EVENTS)?,
            produced: 0,
            baseline: c.get(BASELINE)? as f32,
            noise: noise as f32,
            noise_table,
            decay_fraction,
            lifetime_samples: lifetime / dt,
            sample_interval: dt,
            coincidence: c.get(COINCIDENCE)?,
            seed,
            rng,
            sim_time: 0.0,
            pending: false,
            planar,
            lanes: vec![(0, 0.0); nch],
            start_epoch: crate::clock::wall_clock(),
            start: Instant::now(),
            held: Duration::ZERO,
            trace: vec![0f32; if planar { nch * n } else { n }],
            truth: Truth {
                pulses: vec![([TruthPulse::default(); 2], 0); nch],
                delay: None,
            },
        })
    }

    /// What was injected into the last event produced.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// The pulse shape in use.
    pub fn shape(&self) -> &PulseShape {
        &self.shape
    }

    /// Seconds per sample.
    pub fn sample_interval(&self) -> f64 {
        self.sample_interval
    }

    fn fill_noise(&mut self, lane: std::ops::Range<usize>) {
        let base = self.baseline;
        let trace = &mut self.trace[lane];
        if self.noise == 0.0 {
            trace.fill(base);
            return;
        }
        match &self.noise_table {
            Some(table) => {
                let n = trace.len();
                let off = self.rng.random_range(0..=table.len() - n);
                let s = if self.rng.random::<bool>() {
                    self.noise
                } else {
                    -self.noise
                };
                for (t, z) in trace.iter_mut().zip(&table[off..off + n]) {
                    *t = base + s * z;
                }
            }
            None => {
                for t in trace {
                    let z: f32 = StandardNormal.sample(&mut self.rng);
                    *t = base + self.noise * z;
                }
            }
        }
    }

    fn generate(&mut self, out: &mut EventMut<'_>) -> Result<(), WorkerError> {
        if self.other_fields {
            out.data.fill(0);
        }
        let delay = if self.decay_fraction > 0.0 && self.rng.random::<f64>() < self.decay_fraction {
            let e: f64 = Exp1.sample(&mut self.rng);
            Some(e * self.lifetime_samples)
        } else {
            None
        };
        self.truth.delay = delay.map(|d| d * self.sample_interval);
        let hit = if self.coincidence {
            usize::MAX
        } else {
            self.rng.random_range(0..self.channels.len())
        };
        let n = self.data_length;
        if self.planar && self.noise > 0.0 && self.noise_table.is_some() {
            return self.generate_fused(out, delay, hit);
        }
        for k in 0..self.channels.len() {
            let lane = if self.planar {
                k * n..(k + 1) * n
            } else {
                0..n
            };
            self.fill_noise(lane.clone());
            let trace = &mut self.trace[lane];
            let mut count = 0;
            if hit == usize::MAX || hit == k {
                let a = self.polarity * self.amplitude.draw(&mut self.rng);
                self.shape.add_to(trace, self.pretrigger, a as f32);
                self.truth.pulses[k].0[0] = TruthPulse {
                    onset: self.pretrigger,
                    amplitude: a,
                };
                count = 1;
                if let Some(d) = delay {
                    let onset = self.pretrigger + d;
                    let a2 = self.polarity * self.amplitude.draw(&mut self.rng);
                    if onset < self.data_length as f64 {
                        self.shape.add_to(trace, onset, a2 as f32);
                        self.truth.pulses[k].0[1] = TruthPulse {
                            onset,
                            amplitude: a2,
                        };
                        count = 2;
                    }
                }
            }
            self.truth.pulses[k].1 = count;
            if self.planar {
                continue;
            }
            if let Some(q) = self.quantisers[k] {
                for t in trace.iter_mut() {
                    *t = (*t * q.inv_lsb + q.offset).round().clamp(q.lo, q.hi) * q.out_scale;
                }
            }
            slot_size(self.channels[k].store(out.data, trace), n, "records")?;
        }
        if self.planar {
            let nch = self.channels.len();
            slot_size(out.data.len(), 4 * nch * n, "bytes")?;
            let (t, d) = (&self.trace[..], &mut *out.data);
            match nch {
                1 => interleave::<1>(t, n, d),
                2 => interleave::<2>(t, n, d),
                3 => interleave::<3>(t, n, d),
                4 => interleave::<4>(t, n, d),
                8 => interleave::<8>(t, n, d),
                _ => {
                    for (k, ch) in self.channels.iter().enumerate() {
                        ch.store(d, &t[k * n..(k + 1) * n]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The error of a slot that holds `slot` `unit` where `simulate.pulses` writes `want`.
#[inline]
fn slot_size(slot: usize, want: usize, unit: &'static str) -> Result<(), WorkerError> {
    if slot == want {
        return Ok(());
    }
    Err(WorkerError::SlotSize {
        function: "simulate.pulses".into(),
        slot,
        want,
        unit,
    })
}

impl SimulatePulses {
    /// Draws this channel's pulses (same draws, same order as the general path) and records
    /// them in the truth; returns how many start inside the trace.
    fn draw_pulses(&mut self, k: usize, delay: Option<f64>) -> usize {
        let a = self.polarity * self.amplitude.draw(&mut self.rng);
        self.truth.pulses[k].0[0] = TruthPulse {
            onset: self.pretrigger,
            amplitude: a,
        };
        let mut count = 1;
        if let Some(d) = delay {
            let onset = self.pretrigger + d;
            let a2 = self.polarity * self.amplitude.draw(&mut self.rng);
            if onset < self.data_length as f64 {
                self.truth.pulses[k].0[1] = TruthPulse {
                    onset,
                    amplitude: a2,
                };
                count = 2;
            }
        }
        count
    }

    /// The fast path for float32 channels with table noise: one pass writes baseline + noise
    /// of every channel record by record straight into the slot, then the pulses are added in
    /// place. Same random draws and arithmetic as the general path, so the same samples.
    fn generate_fused(
        &mut self,
        out: &mut EventMut<'_>,
        delay: Option<f64>,
        hit: usize,
    ) -> Result<(), WorkerError> {
        let n = self.data_length;
        let nch = self.channels.len();
        slot_size(out.data.len(), 4 * nch * n, "bytes")?;
        let table_len = self.noise_table.as_ref().map_or(0, |t| t.len());
        for k in 0..nch {
            let off = self.rng.random_range(0..=table_len - n);
            let s = if self.rng.random::<bool>() {
                self.noise
            } else {
                -self.noise
            };
            self.lanes[k] = (off, s);
            self.truth.pulses[k].1 = if hit == usize::MAX || hit == k {
                self.draw_pulses(k, delay)
            } else {
                0
            };
        }
        let table = self.noise_table.as_deref().unwrap_or(&[]);
        let (base, lanes, d) = (self.baseline, &self.lanes[..], &mut *out.data);
        match nch {
            1 => noise_records::<1>(table, lanes, base, n, d),
            2 => noise_records::<2>(table, lanes, base, n, d),
            3 => noise_records::<3>(table, lanes, base, n, d),
            4 => noise_records::<4>(table, lanes, base, n, d),
            8 => noise_records::<8>(table, lanes, base, n, d),
            _ => {
                for (i, rec) in d.chunks_exact_mut(4 * nch).enumerate() {
                    for (dst, (off, s)) in rec.chunks_exact_mut(4).zip(lanes) {
                        dst.copy_from_slice(&(base + s * table[off + i]).to_le_bytes());
                    }
                }
            }
        }
        for k in 0..nch {
            let (pulses, count) = self.truth.pulses[k];
            for p in &pulses[..count] {
                self.shape
                    .add_to_field(out.data, 4 * nch, 4 * k, n, p.onset, p.amplitude as f32);
            }
        }
        Ok(())
    }
}

/// Writes `n` records of `N` float32 values `base + s_k · table[off_k + i]` into `out`.
fn noise_records<const N: usize>(
    table: &[f32],
    lanes: &[(usize, f32)],
    base: f32,
    n: usize,
    out: &mut [u8],
) {
    let rows: [&[f32]; N] = std::array::from_fn(|k| &table[lanes[k].0..lanes[k].0 + n]);
    let signs: [f32; N] = std::array::from_fn(|k| lanes[k].1);
    for (i, rec) in out.chunks_exact_mut(4 * N).take(n).enumerate() {
        for (k, dst) in rec.chunks_exact_mut(4).enumerate() {
            dst.copy_from_slice(&(base + signs[k] * rows[k][i]).to_le_bytes());
        }
    }
}

impl Importer for SimulatePulses {
    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        if self.n_events > 0 && self.produced >= self.n_events {
            return Ok(Produced::End);
        }
        if !self.pending {
            let gap: f64 = Exp1.sample(&mut self.rng);
            self.sim_time += gap / self.rate;
            self.pending = true;
        }
        if self.realtime {
            // Time the engine held the source (its sink was full) is dead time: arrivals
            // then were never seen, as a real detector's, and are not caught up in a burst
            // afterwards. Arrivals are memoryless, so moving the schedule on by the stall is
            // the same as re-arming at its end.
            let held = out.meta.deadtime;
            if held > 0.0 && held.is_finite() {
                self.held += Duration::from_secs_f64(held);
            }
            let due = self.start + self.held + Duration::from_secs_f64(self.sim_time);
            let now = Instant::now();
            if due > now {
                let wait = due - now;
                if wait > MAX_SLEEP {
                    std::thread::sleep(MAX_SLEEP);
                    return Ok(Produced::Idle);
                }
                std::thread::sleep(wait);
            }
        }
        self.generate(out)?;
        out.meta.timestamp = self.start_epoch + self.held.as_secs_f64() + self.sim_time;
        self.pending = false;
        self.produced += 1;
        Ok(Produced::Event)
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("simulate.seed".into(), self.seed.to_string()),
            (
                "simulate.noise_generator".into(),
                if self.noise_table.is_some() {
                    "table"
                } else {
                    "ziggurat"
                }
                .into(),
            ),
            ("simulate.rate_hz".into(), self.rate.to_string()),
            (
                "simulate.lifetime_s".into(),
                (self.lifetime_samples * self.sample_interval).to_string(),
            ),
        ]
    }

    /// Started again after `taken` events of earlier lives: the draws go on from a stream
    /// of their own, seeded by `seed` and `taken` (the seed alone would give the first
    /// life's events again), and `n_events` counts the earlier events.
    fn restarted(&mut self, taken: u64) {
        // Odd multiplier: a different `taken` gives a different seed for the same `seed`.
        let life = self
            .seed
            .wrapping_add(taken.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.rng = Xoshiro256PlusPlus::seed_from_u64(life);
        self.produced = taken;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_shape_peaks_at_one() {
        let s = PulseShape::exponential(2.5, 10.0, 10_000);
        let peak = (0..2000)
            .map(|i| s.value(i as f64 * 0.01))
            .fold(0.0f64, f64::max);
        assert!((peak - 1.0).abs() < 1e-6, "{peak}");
        let half = s.rise_crossing(0.5).unwrap();
        assert!((s.value(half) - 0.5).abs() < 1e-3);
    }

    /// Time constants of more samples than a machine word counts give a shape cut to its
    /// longest; before, its length overflowed (`check` panicked on `decay_time: 1e300`).
    #[test]
    fn huge_time_constants_give_a_shape_of_the_longest_length() {
        for (rise, decay) in [
            (0.0, 1e300),
            (1e300, 1e300),
            (f64::MAX, f64::MAX),
            (1e19, 2e19),
        ] {
            assert_eq!(PulseShape::exponential(rise, decay, 4096).len(), 4096);
        }
        assert_eq!(PulseShape::exponential(1.0, 4.0, 4096).len(), 62);
        assert_eq!(PulseShape::exponential(1.0, 4.0, 0).len(), 1);
    }

    #[test]
    fn fractional_onset_uses_the_right_phase() {
        let s = PulseShape::exponential(2.0, 8.0, 1000);
        let mut tr = vec![0f32; 100];
        s.add_to(&mut tr, 10.25, 1.0);
        for (i, v) in tr.iter().enumerate() {
            let want = s.value(i as f64 - 10.25) as f32;
            assert!((v - want).abs() < 1e-6, "sample {i}: {v} vs {want}");
        }
        // An onset a hair after a sample rounds onto that sample.
        let mut tr = vec![0f32; 100];
        s.add_to(&mut tr, 20.001, 1.0);
        assert!((tr[25] as f64 - s.value(5.0)).abs() < 1e-6);
        let mut tr = vec![0f32; 10];
        s.add_to(&mut tr, -3.5, 1.0);
        assert!((tr[0] as f64 - s.value(3.5)).abs() < 1e-6);
        s.add_to(&mut tr, 1e9, 1.0);
        s.add_to(&mut tr, f64::NAN, 1.0);
    }
}
