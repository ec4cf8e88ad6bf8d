//! `analyzers.pha`: mimoCoRB2's pulse height analysis, which calls `scipy.signal.find_peaks`
//! on one channel of each event; and [`PeakFinder`], that function's definitions in Rust.
//!
//! # The definitions (scipy 1.x, `scipy/signal/_peak_finding.py`)
//! - **peaks**: local maxima — a sample (or a flat run of equal samples, a *plateau*) whose
//!   left and right neighbours are both lower; the peak of a plateau is its middle sample
//!   (rounded down). The first and last samples are never peaks.
//! - **plateau_size** `[left_edge, right_edge]`: the samples of the flat top.
//! - **height**: the sample value at the peak.
//! - **threshold**: `x[peak] − x[peak−1]` and `x[peak] − x[peak+1]` (left and right); the
//!   smaller must reach the minimum, the larger stay under the maximum.
//! - **distance**: peaks are taken from the highest down; each one taken removes every
//!   remaining peak closer than `ceil(distance)` samples (so smaller peaks go first). Equal
//!   heights: the later peak counts as higher (a stable sort). scipy leaves this to numpy's
//!   argsort, whose order of equal values is unspecified and differs between machines (the
//!   AVX-512 kernel reorders even short lists), so only there can the two differ.
//! - **prominence**: from the peak, walk left while the samples are not higher than the peak
//!   (inside the window `wlen`, if given); the lowest sample on the way is the left base
//!   (its first occurrence from the peak). Likewise right. prominence = `x[peak] −
//!   max(left minimum, right minimum)`: the height above the lowest contour line.
//! - **width** at `rel_height` (0.5: half the prominence): the line `x[peak] − prominence ×
//!   rel_height`; from the peak walk out to the bases while the samples are above it; each
//!   crossing is linearly interpolated between samples (`left_ips`, `right_ips`); width =
//!   `right_ip − left_ip`.
//!
//! The filters run in scipy's order: plateau size, height, threshold, distance, prominence,
//! width; each condition is a number (minimum) or `[min, max]` (either may be null). A peak's
//! properties are only those of the filters given, as in scipy.
//!
//! # `analyzers.pha` as mimoCoRB2 0.0.4 runs it
//! One sink with data_length 1 whose fields name the properties (`position`, `peak_heights`,
//! `left_thresholds`, `right_thresholds`, `prominences`, `left_bases`, `right_bases`,
//! `widths`, `width_heights`, `left_ips`, `right_ips`, `plateau_sizes`, `left_edges`,
//! `right_edges`); a property needs its condition in the config. mimoCoRB2 returns from inside
//! its loop over the peaks, so it writes **the first peak** of each event and nothing for an
//! event without peaks; so does this, unless `all_peaks: true` (one record per peak).
//!
//! Guarantees: [`PeakFinder::find`] allocates nothing once built for the trace length (its
//! lists are reserved for the most peaks a trace can hold); no panics on any data (NaN
//! samples are never peaks, as in scipy's comparisons).

use super::trace::{field_names, one_record, one_sink, one_source, set_features, FieldAccess};
use crate::keys;
use crate::worker::{
    BuildContext, Emit, EventRef, FunctionSpec, Key, KeyType, KeyValue, MaybeKey, Processor,
    Template, WiringError, WorkerError,
};
use serde_json::Value;

/// A condition on one property: a minimum, or `[min, max]` with either end open (null).
pub enum Interval {}

impl KeyValue for Interval {
    const TYPE: KeyType = KeyType::Any;
    const WHAT: &'static str = "a number (the minimum) or [min, max] (either may be null)";
    type Default = (Option<f64>, Option<f64>);
    type Out<'a> = Bounds;
    fn parse(v: &Value) -> Option<Bounds> {
        let end = |x: &Value| match x {
            Value::Null => Some(None),
            _ => x.as_f64().map(Some),
        };
        match v {
            Value::Array(a) if a.len() == 2 => Some(Bounds {
                min: end(&a[0])?,
                max: end(&a[1])?,
            }),
            _ => v.as_f64().map(|m| Bounds {
                min: Some(m),
                max: None,
            }),
        }
    }
    fn from_default<'a>(d: (Option<f64>, Option<f64>)) -> Self::Out<'a> {
        Bounds { min: d.0, max: d.1 }
    }
}

/// The bounds of a condition; a property passes when `min ≤ value ≤ max` (open ends pass).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bounds {
    /// The least value kept, if any.
    pub min: Option<f64>,
    /// The greatest value kept, if any.
    pub max: Option<f64>,
}

impl Bounds {
    /// `[min, ∞)`.
    pub fn at_least(min: f64) -> Bounds {
        Bounds {
            min: Some(min),
            max: None,
        }
    }

    #[inline]
    fn keeps(&self, v: f64) -> bool {
        // As scipy's `pmin <= v` and `v <= pmax`: a NaN value fails any given end.
        self.min.is_none_or(|m| m <= v) && self.max.is_none_or(|m| v <= m)
    }
}

/// What [`PeakFinder::find`] looks for: `scipy.signal.find_peaks`'s arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakSettings {
    /// `height`.
    pub height: Option<Bounds>,
    /// `threshold`.
    pub threshold: Option<Bounds>,
    /// `distance` (≥ 1; used as `ceil(distance)` samples).
    pub distance: Option<f64>,
    /// `prominence`.
    pub prominence: Option<Bounds>,
    /// `width`.
    pub width: Option<Bounds>,
    /// `wlen` (> 1; used as `ceil(wlen)`): the window for the bases.
    pub wlen: Option<f64>,
    /// `rel_height` (≥ 0).
    pub rel_height: f64,
    /// `plateau_size`.
    pub plateau_size: Option<Bounds>,
}

impl Default for PeakSettings {
    fn default() -> Self {
        PeakSettings {
            height: None,
            threshold: None,
            distance: None,
            prominence: None,
            width: None,
            wlen: None,
            rel_height: 0.5,
            plateau_size: None,
        }
    }
}

impl PeakSettings {
    /// Why these settings are not valid for scipy, if they are not.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(d) = self.distance {
            if !(d >= 1.0 && d.is_finite()) {
                return Some(("distance", format!("must be a number ≥ 1, found {d}")));
            }
        }
        if let Some(w) = self.wlen {
            if !(w > 1.0 && w.is_finite()) {
                return Some(("wlen", format!("must be a number > 1, found {w}")));
            }
        }
        if !(self.rel_height >= 0.0 && self.rel_height.is_finite()) {
            return Some((
                "rel_height",
                format!("must be a number ≥ 0, found {}", self.rel_height),
            ));
        }
        None
    }
}

/// One peak and its properties (those whose condition was given; the others are 0).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Peak {
    /// The peak's sample (the middle of a plateau).
    pub position: usize,
    /// First sample of the flat top.
    pub left_edge: usize,
    /// Last sample of the flat top.
    pub right_edge: usize,
    /// Samples in the flat top.
    pub plateau_size: usize,
    /// `x[position]`.
    pub peak_height: f64,
    /// `x[position] − x[position − 1]`.
    pub left_threshold: f64,
    /// `x[position] − x[position + 1]`.
    pub right_threshold: f64,
    /// Height above the lowest contour line.
    pub prominence: f64,
    /// The left base's sample.
    pub left_base: usize,
    /// The right base's sample.
    pub right_base: usize,
    /// Width at `rel_height` (samples).
    pub width: f64,
    /// The height the width is measured at.
    pub width_height: f64,
    /// Interpolated left crossing.
    pub left_ip: f64,
    /// Interpolated right crossing.
    pub right_ip: f64,
}

/// Finds peaks as `scipy.signal.find_peaks` does (see the module documentation).
pub struct PeakFinder {
    settings: PeakSettings,
    peaks: Vec<Peak>,
    /// Peak indices ordered by height (for `distance`).
    order: Vec<usize>,
    keep: Vec<bool>,
}

impl PeakFinder {
    /// A finder for traces of up to `samples` samples (longer ones are searched too, at the
    /// cost of allocating).
    pub fn new(settings: PeakSettings, samples: usize) -> PeakFinder {
        let most = samples / 2 + 1;
        PeakFinder {
            settings,
            peaks: Vec::with_capacity(most),
            order: Vec::with_capacity(most),
            keep: Vec::with_capacity(most),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PeakSettings {
        &self.settings
    }

    /// The peaks of `x` that pass every condition, in sample order.
    pub fn find(&mut self, x: &[f64]) -> &[Peak] {
        let s = self.settings;
        local_maxima(x, &mut self.peaks);
        if let Some(b) = s.plateau_size {
            self.peaks.retain(|p| b.keeps(p.plateau_size as f64));
        }
        if let Some(b) = s.height {
            for p in &mut self.peaks {
                p.peak_height = x[p.position];
            }
            self.peaks.retain(|p| b.keeps(p.peak_height));
        }
        if let Some(b) = s.threshold {
            for p in &mut self.peaks {
                p.left_threshold = x[p.position] - x[p.position - 1];
                p.right_threshold = x[p.position] - x[p.position + 1];
            }
            // scipy: min(left, right) ≥ tmin and max(left, right) ≤ tmax (NaN-propagating).
            self.peaks.retain(|p| {
                let (l, r) = (p.left_threshold, p.right_threshold);
                let lo = if l.is_nan() || r.is_nan() {
                    f64::NAN
                } else {
                    l.min(r)
                };
                let hi = if l.is_nan() || r.is_nan() {
                    f64::NAN
                } else {
                    l.max(r)
                };
                b.min.is_none_or(|m| m <= lo) && b.max.is_none_or(|m| hi <= m)
            });
        }
        if let Some(d) = s.distance {
            self.select_by_distance(x, d.ceil());
        }
        if s.prominence.is_some() || s.width.is_some() {
            let wlen = s.wlen.map(|w| w.ceil() as usize);
            for p in &mut self.peaks {
                prominence(x, p, wlen);
            }
        }
        if let Some(b) = s.prominence {
            self.peaks.retain(|p| b.keeps(p.prominence));
        }
        if let Some(b) = s.width {
            for p in &mut self.peaks {
                width(x, p, s.rel_height);
            }
            self.peaks.retain(|p| b.keeps(p.width));
        }
        &self.peaks
    }

    /// scipy's `_select_by_peak_distance`: highest first, each removes its close neighbours.
    fn select_by_distance(&mut self, x: &[f64], distance: f64) {
        let n = self.peaks.len();
        self.order.clear();
        self.order.extend(0..n);
        let peaks = &self.peaks;
        // Ascending by height, ties in sample order (a stable argsort: numpy's own order of
        // equal heights depends on the machine's sort kernel); -0 equals 0; NaN heights sort
        // last, as numpy puts them.
        self.order.sort_unstable_by(|&a, &b| {
            let (ha, hb) = (x[peaks[a].position], x[peaks[b].position]);
            ha.partial_cmp(&hb)
                .unwrap_or_else(|| ha.is_nan().cmp(&hb.is_nan()))
                .then(a.cmp(&b))
        });
        self.keep.clear();
        self.keep.resize(n, true);
        for &j in self.order.iter().rev() {
            if !self.keep[j] {
                continue;
            }
            let pj = peaks[j].position as f64;
            let mut k = j;
            while k > 0 && pj - (peaks[k - 1].position as f64) < distance {
                k -= 1;
                self.keep[k] = false;
            }
            let mut k = j + 1;
            while k < n && (peaks[k].position as f64) - pj < distance {
                self.keep[k] = false;
                k += 1;
            }
        }
        let mut i = 0;
        let keep = &self.keep;
        self.peaks.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}

/// scipy's `_local_maxima_1d`: every peak with its plateau (other properties zero).
fn local_maxima(x: &[f64], out: &mut Vec<Peak>) {
    out.clear();
    let n = x.len();
    if n < 3 {
        return;
    }
    let i_max = n - 1;
    let mut i = 1;
    while i < i_max {
        if x[i - 1] < x[i] {
            let mut ahead = i + 1;
            while ahead < i_max && x[ahead] == x[i] {
                ahead += 1;
            }
            if x[ahead] < x[i] {
                let (left, right) = (i, ahead - 1);
                out.push(Peak {
                    position: (left + right) / 2,
                    left_edge: left,
                    right_edge: right,
                    plateau_size: right - left + 1,
                    ..Peak::default()
                });
                i = ahead;
            }
        }
        i += 1;
    }
}

/// scipy's `_peak_prominences` for one peak (`wlen`: the window, already rounded up).
fn prominence(x: &[f64], p: &mut Peak, wlen: Option<usize>) {
    let peak = p.position;
    let (mut i_min, mut i_max) = (0, x.len() - 1);
    if let Some(w) = wlen.filter(|&w| w >= 2) {
        i_min = peak.saturating_sub(w / 2);
        i_max = (peak + w / 2).min(i_max);
    }
    let top = x[peak];
    let mut left_min = top;
    p.left_base = peak;
    let mut i = peak;
    // A NaN sample ends the walk, as scipy's `x[i] <= x[peak]` does.
    while x[i] <= top {
        if x[i] < left_min {
            left_min = x[i];
            p.left_base = i;
        }
        if i == i_min {
            break;
        }
        i -= 1;
    }
    let mut right_min = top;
    p.right_base = peak;
    let mut i = peak;
    while i <= i_max && x[i] <= top {
        if x[i] < right_min {
            right_min = x[i];
            p.right_base = i;
        }
        i += 1;
    }
    // numpy's max of two floats.
    p.prominence = top - left_min.max(right_min);
}

/// scipy's `_peak_widths` for one peak whose prominence and bases are known.
fn width(x: &[f64], p: &mut Peak, rel_height: f64) {
    let (i_min, i_max, peak) = (p.left_base, p.right_base, p.position);
    let height = x[peak] - p.prominence * rel_height;
    p.width_height = height;
    let mut i = peak;
    while i_min < i && height < x[i] {
        i -= 1;
    }
    let mut left_ip = i as f64;
    if x[i] < height {
        left_ip += (height - x[i]) / (x[i + 1] - x[i]);
    }
    let mut i = peak;
    while i < i_max && height < x[i] {
        i += 1;
    }
    let mut right_ip = i as f64;
    if x[i] < height {
        right_ip -= (height - x[i]) / (x[i - 1] - x[i]);
    }
    p.left_ip = left_ip;
    p.right_ip = right_ip;
    p.width = right_ip - left_ip;
}

/// The properties `analyzers.pha` can write, with the condition each needs.
const OUTPUTS: [(&str, Option<&str>); 14] = [
    ("position", None),
    ("peak_heights", Some("height")),
    ("left_thresholds", Some("threshold")),
    ("right_thresholds", Some("threshold")),
    ("prominences", Some("prominence")),
    ("left_bases", Some("prominence")),
    ("right_bases", Some("prominence")),
    ("widths", Some("width")),
    ("width_heights", Some("width")),
    ("left_ips", Some("width")),
    ("right_ips", Some("width")),
    ("plateau_sizes", Some("plateau_size")),
    ("left_edges", Some("plateau_size")),
    ("right_edges", Some("plateau_size")),
];

fn output(p: &Peak, k: usize) -> f64 {
    match k {
        0 => p.position as f64,
        1 => p.peak_height,
        2 => p.left_threshold,
        3 => p.right_threshold,
        4 => p.prominence,
        5 => p.left_base as f64,
        6 => p.right_base as f64,
        7 => p.width,
        8 => p.width_height,
        9 => p.left_ip,
        10 => p.right_ip,
        11 => p.plateau_size as f64,
        12 => p.left_edge as f64,
        _ => p.right_edge as f64,
    }
}

keys! {
    list KEYS;
    const CHANNEL: MaybeKey<str> = ("channel", absent: "first field", "the channel searched");
    const HEIGHT: MaybeKey<Interval> = ("height", absent: "no condition", "peak height: minimum, or [min, max]");
    const THRESHOLD: MaybeKey<Interval> = ("threshold", absent: "no condition", "vertical distance to both neighbouring samples: minimum, or [min, max]");
    const DISTANCE: MaybeKey<f64> = ("distance", absent: "no condition", "least samples between peaks (≥ 1); smaller peaks are removed first");
    const PROMINENCE: MaybeKey<Interval> = ("prominence", absent: "no condition", "height above the lowest contour line: minimum, or [min, max]");
    const WIDTH: MaybeKey<Interval> = ("width", absent: "no condition", "width in samples at rel_height of the prominence: minimum, or [min, max]");
    const WLEN: MaybeKey<f64> = ("wlen", absent: "the whole trace", "window (samples, > 1) around the peak in which its bases are searched");
    const REL_HEIGHT: Key<f64> = ("rel_height", 0.5, "where the width is measured, as a fraction of the prominence below the peak");
    const PLATEAU_SIZE: MaybeKey<Interval> = ("plateau_size", absent: "no condition", "samples in the flat top: minimum, or [min, max]");
    const ALL_PEAKS: Key<bool> = ("all_peaks", false, "one record per peak; false writes only each event's first peak, as mimoCoRB2 0.0.4 does");
}

/// The declaration of `analyzers.pha`.
pub const PHA_SPEC: FunctionSpec = FunctionSpec::new(
    "analyzers.pha",
    Template::Processor,
    "mimoCoRB2's pulse height analysis: scipy.signal.find_peaks (height, threshold, \
     distance, prominence, width, wlen, rel_height, plateau_size) on one channel; \
     writes the first peak of each event (or every peak) into a data_length-1 sink \
     whose fields name scipy's properties (position, peak_heights, prominences, \
     widths, left_ips, …).",
    KEYS,
);

/// `analyzers.pha`.
pub struct Pha {
    channel: FieldAccess,
    finder: PeakFinder,
    outputs: Vec<(FieldAccess, usize)>,
    all: bool,
    x: Vec<f64>,
}

impl Pha {
    /// Builds it: the channel exists, the sink has data_length 1 and only fields whose
    /// condition is given.
    pub fn build(ctx: &BuildContext) -> Result<Pha, WorkerError> {
        let c = &ctx.config;
        let src = one_source(ctx)?;
        let sink = one_sink(ctx)?;
        let channel = match c.get(CHANNEL)? {
            Some(name) => FieldAccess::new(src, name).map_err(|_| {
                WorkerError::from(c.error(
                    CHANNEL.name,
                    format!(
                        "buffer '{}' has no field '{name}' (its fields: {})",
                        src.name,
                        field_names(src)
                    ),
                ))
            })?,
            None => {
                let first = src
                    .dtype
                    .fields()
                    .first()
                    .ok_or_else(|| WiringError::NoFields {
                        buffer: src.name.clone(),
                    })?;
                FieldAccess::new(src, &first.name)?
            }
        };
        let settings = PeakSettings {
            height: c.get(HEIGHT)?,
            threshold: c.get(THRESHOLD)?,
            distance: c.get(DISTANCE)?,
            prominence: c.get(PROMINENCE)?,
            width: c.get(WIDTH)?,
            wlen: c.get(WLEN)?,
            rel_height: c.get(REL_HEIGHT)?,
            plateau_size: c.get(PLATEAU_SIZE)?,
        };
        if let Some((key, why)) = settings.problem() {
            return Err(c.error(key, why).into());
        }
        let given = |cond: &str| match cond {
            "height" => settings.height.is_some(),
            "threshold" => settings.threshold.is_some(),
            "prominence" => settings.prominence.is_some(),
            "width" => settings.width.is_some(),
            _ => settings.plateau_size.is_some(),
        };
        one_record(ctx, sink, "sink", "peak")?;
        let mut outputs = Vec::new();
        for f in sink.dtype.fields() {
            let k = OUTPUTS
                .iter()
                .position(|(n, _)| *n == f.name)
                .ok_or_else(|| WiringError::UnknownOutput {
                    worker: ctx.worker.clone(),
                    sink: sink.name.clone(),
                    field: f.name.clone(),
                    function: "analyzers.pha",
                    allowed: OUTPUTS.map(|o| o.0).join(", "),
                })?;
            if let Some(cond) = OUTPUTS[k].1 {
                if !given(cond) {
                    return Err(WiringError::OutputNeedsKey {
                        worker: ctx.worker.clone(),
                        field: f.name.clone(),
                        key: cond,
                    }
                    .into());
                }
            }
            outputs.push((FieldAccess::new(sink, &f.name)?, k));
        }
        Ok(Pha {
            channel,
            finder: PeakFinder::new(settings, src.data_length),
            outputs,
            all: c.get(ALL_PEAKS)?,
            x: vec![0.0; src.data_length],
        })
    }
}

impl Processor for Pha {
    fn process(&mut self, event: &EventRef<'_>, out: &mut dyn Emit) -> Result<(), WorkerError> {
        let n = event.len().min(self.x.len());
        for (i, v) in self.x[..n].iter_mut().enumerate() {
            *v = self.channel.get(event.data, i).unwrap_or(f64::NAN);
        }
        let peaks = self.finder.find(&self.x[..n]);
        let take = if self.all {
            peaks.len()
        } else {
            peaks.len().min(1)
        };
        for p in &peaks[..take] {
            let outputs = &self.outputs;
            out.emit(0, &mut |ev| {
                set_features(outputs, ev.data, |k| output(p, k));
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(x: &[f64], s: PeakSettings) -> Vec<Peak> {
        PeakFinder::new(s, x.len()).find(x).to_vec()
    }

    #[test]
    fn plateaus_and_edges_as_scipy() {
        // scipy: find_peaks([0,1,1,1,0,2,0,3,3,0,1]) → [2, 5, 7]; the ends are never peaks.
        let x = [0., 1., 1., 1., 0., 2., 0., 3., 3., 0., 1.];
        let p = find(
            &x,
            PeakSettings {
                plateau_size: Some(Bounds::at_least(1.0)),
                ..Default::default()
            },
        );
        let pos: Vec<usize> = p.iter().map(|p| p.position).collect();
        assert_eq!(pos, [2, 5, 7]);
        assert_eq!(
            (p[0].left_edge, p[0].right_edge, p[0].plateau_size),
            (1, 3, 3)
        );
        assert_eq!(p[2].plateau_size, 2);
    }

    #[test]
    fn prominence_width_and_distance_by_hand() {
        // A peak of 5 beside a higher one: the right walk stops at the 6, so its right
        // minimum is 2 (the first of the two) → prominence 3.
        let x = [0., 1., 5., 2., 2., 6., 1.];
        let p = find(
            &x,
            PeakSettings {
                prominence: Some(Bounds::default()),
                width: Some(Bounds::default()),
                ..Default::default()
            },
        );
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].position, p[0].prominence), (2, 3.0));
        assert_eq!((p[0].left_base, p[0].right_base), (0, 3));
        // Half prominence: 3.5; left crossing between 1 (1) and 2 (5): 1 + 2.5/4.
        assert_eq!(p[0].width_height, 3.5);
        assert_eq!(p[0].left_ip, 1.625);
        assert_eq!(p[0].right_ip, 2.0 + 1.5 / 3.0);
        assert_eq!(
            (p[1].position, p[1].prominence, p[1].left_base),
            (5, 5.0, 0)
        );
        // 3 samples apart: distance 3 keeps both, 3.5 (→ 4) only the higher.
        let positions = |d: f64| -> Vec<usize> {
            let s = PeakSettings {
                distance: Some(d),
                ..Default::default()
            };
            find(&x, s).iter().map(|p| p.position).collect()
        };
        assert_eq!(positions(3.0), [2, 5]);
        assert_eq!(positions(3.5), [5]);
        // NaN is never a peak, and a NaN trace is no panic.
        assert!(find(&[f64::NAN; 9], PeakSettings::default()).is_empty());
    }
}
