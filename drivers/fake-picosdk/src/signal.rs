//! Simulated detector signals: a seeded generator, the two-exponential pulse shape, triggered
//! captures and the continuous streaming sequence. Deterministic for a given seed; never
//! writes outside the buffers registered for a unit.

use crate::{range_volts, Settings, Unit};

/// xorshift64* with a table of standard normal deviates for cheap Gaussian noise.
pub(crate) struct Rng {
    state: u64,
    normals: Vec<f64>,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut r = Rng {
            state: seed | 1,
            normals: Vec::new(),
        };
        let mut normals = Vec::with_capacity(4096);
        while normals.len() < 4096 {
            // Box-Muller, both outputs.
            let u1 = r.uniform().max(1e-300);
            let u2 = r.uniform();
            let m = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            normals.push(m * a.cos());
            normals.push(m * a.sin());
        }
        r.normals = normals;
        r
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A standard normal deviate (from a 4096-entry table).
    pub(crate) fn gauss(&mut self) -> f64 {
        let i = (self.next() >> 52) as usize;
        self.normals[i]
    }
}

/// `f(t) = N (exp(-t/fall) - exp(-t/rise))` for t >= 0, peak 1; t in samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    rise: f64,
    fall: f64,
}

impl Shape {
    pub(crate) const DEFAULT: Shape = Shape {
        rise: 2.0,
        fall: 20.0,
    };

    pub(crate) fn new(rise: f64, fall: f64) -> Shape {
        Shape { rise, fall }
    }

    fn peak_time(&self) -> f64 {
        (self.fall / self.rise).ln() * self.rise * self.fall / (self.fall - self.rise)
    }

    fn raw(&self, t: f64) -> f64 {
        if t <= 0.0 {
            0.0
        } else {
            (-t / self.fall).exp() - (-t / self.rise).exp()
        }
    }

    fn norm(&self) -> f64 {
        1.0 / self.raw(self.peak_time())
    }

    /// Samples after which the pulse is negligible.
    fn length(&self) -> f64 {
        12.0 * self.fall
    }

    /// Time on the rising edge where the pulse reaches `frac` (0..1] of its peak.
    fn crossing(&self, frac: f64) -> f64 {
        let norm = self.norm();
        let (mut lo, mut hi) = (0.0, self.peak_time());
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.raw(mid) * norm < frac {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Polarity of pulses for a trigger direction: falling/below triggers see negative pulses.
fn polarity(direction: i32) -> f64 {
    if direction == 1 || direction == 3 {
        -1.0
    } else {
        1.0
    }
}

/// One capture of `samples` samples per channel, trigger at `trig_index`. Returns the
/// per-channel ADC data (index = channel; disabled channels empty), the overflow bit field
/// and the trigger phase (fraction of a sample between the crossing and sample
/// `trig_index`), or None if no pulse can reach the trigger level.
pub(crate) fn capture(
    u: &mut Unit,
    s: &Settings,
    trig_index: usize,
    samples: usize,
) -> Option<(Vec<Vec<i16>>, i16, f64)> {
    let trig = u.trig;
    let max = f64::from(u.fam.max_value(u.resolution));
    let mut amps = [0.0f64; 4];
    let pol;
    let t0;
    let mut phase = 0.0;
    if trig.enabled {
        let src = trig.source as usize;
        let c = u.chans[src];
        let range = range_volts(c.range);
        let level = f64::from(trig.threshold) / max * range - f64::from(c.offset_v);
        pol = polarity(trig.direction);
        let reach = level * pol;
        let (lo, hi) = (s.amp_min * range, s.amp_max * range);
        let t_cross = if reach <= 0.0 {
            // The baseline is already past the level: the trigger fires at once.
            amps[src] = u.rng.between(lo, hi);
            0.0
        } else {
            let lo = lo.max(reach * 1.02);
            if lo > hi {
                return None;
            }
            amps[src] = u.rng.between(lo, hi);
            s.shape.crossing(reach / amps[src])
        };
        phase = u.rng.uniform();
        t0 = trig_index as f64 - phase - t_cross;
    } else {
        pol = 1.0;
        t0 = u.rng.between(0.0, samples as f64);
    }
    for (c, amp) in amps.iter_mut().enumerate() {
        if u.chans[c].enabled && !(trig.enabled && c == trig.source as usize) {
            let range = range_volts(u.chans[c].range);
            *amp = u.rng.between(s.amp_min * range, s.amp_max * range);
        }
    }
    let norm = s.shape.norm();
    let len = s.shape.length();
    let mut overflow = 0i16;
    let mut out = Vec::with_capacity(4);
    for (c, &amp) in amps.iter().enumerate() {
        if !u.chans[c].enabled {
            out.push(Vec::new());
            continue;
        }
        let sigma = s.noise * range_volts(u.chans[c].range);
        let mut data = Vec::with_capacity(samples);
        for i in 0..samples {
            let t = i as f64 - t0;
            let pulse = if t > 0.0 && t < len {
                pol * amp * norm * s.shape.raw(t)
            } else {
                0.0
            };
            let noise = if sigma > 0.0 {
                sigma * u.rng.gauss()
            } else {
                0.0
            };
            let (adc, clipped) = u.to_adc(c, pulse + noise);
            if clipped {
                overflow |= 1 << c;
            }
            data.push(adc);
        }
        out.push(data);
    }
    Some((out, overflow, phase))
}

/// Writes `n` streaming samples per enabled channel at `start` of the registered buffers
/// and returns the overflow bit field.
pub(crate) fn stream(u: &mut Unit, s: &Settings, start: u32, n: u32) -> i16 {
    let Some(mut st) = u.stream.take() else {
        return 0;
    };
    let mut overflow = 0i16;
    let norm = s.shape.norm();
    let len = s.shape.length();
    let bufs: Vec<Option<(usize, i32)>> = (0..4)
        .map(|c| {
            if u.chans[c].enabled {
                u.buffer(c, 0)
            } else {
                None
            }
        })
        .collect();
    let ports: Vec<Option<(usize, i32)>> = (0..2)
        .map(|p| u.ports[p].and_then(|_| u.buffer(4 + p, 0)))
        .collect();
    for k in 0..n {
        let idx = st.delivered + u64::from(k);
        let pos = (start + k) as usize;
        if !s.ramp && st.pulse_age.is_none() && u.rng.uniform() < s.pulse_per_sample {
            st.pulse_age = Some(0);
            for c in 0..4 {
                let r = range_volts(u.chans[c].range);
                st.pulse_amp[c] = u.rng.between(s.amp_min * r, s.amp_max * r);
            }
        }
        for (c, b) in bufs.iter().enumerate() {
            let Some((ptr, blen)) = *b else { continue };
            if pos >= blen as usize {
                continue;
            }
            let v = if s.ramp {
                ((idx + 7919 * c as u64) % 30000) as i16
            } else {
                let pulse = st
                    .pulse_age
                    .map_or(0.0, |a| st.pulse_amp[c] * norm * s.shape.raw(a as f64));
                let sigma = s.noise * range_volts(u.chans[c].range);
                let noise = sigma * u.rng.gauss();
                let (adc, clipped) = u.to_adc(c, pulse + noise);
                if clipped {
                    overflow |= 1 << c;
                }
                adc
            };
            // SAFETY: `ptr` was registered with SetDataBuffer for `blen` int16_t and
            // pos < blen.
            unsafe { *(ptr as *mut i16).add(pos) = v };
        }
        for (p, b) in ports.iter().enumerate() {
            let Some((ptr, blen)) = *b else { continue };
            if pos < blen as usize {
                // SAFETY: as above, for the port's registered buffer.
                unsafe { *(ptr as *mut i16).add(pos) = crate::digital_sample(idx, p) };
            }
        }
        if let Some(a) = st.pulse_age.as_mut() {
            *a += 1;
            if *a as f64 > len {
                st.pulse_age = None;
            }
        }
    }
    u.stream = Some(st);
    overflow
}
