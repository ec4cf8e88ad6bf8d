//! Maximum-likelihood fits for the classic lab-course measurements: the exponential lifetime
//! of a decay-time distribution, and gaussian peaks in a pulse-height spectrum.
//!
//! - [`exponential_events`] / [`exponential_histogram`]: the lifetime τ of a *truncated*
//!   exponential restricted to a window `[t_min, t_max]` (entries outside it are ignored, and
//!   the density is normalised inside it, so a window that cuts away the start or the end of
//!   the distribution does not bias τ). Unbinned, or binned with the multinomial likelihood.
//!   The uncertainty is `1/sqrt(−d²lnL/dτ²)` at the maximum; the profile-likelihood interval
//!   (`ΔlnL = ½`) is given too, since it is asymmetric for few entries.
//! - [`gaussian_histogram`]: mean and width of a gaussian peak (optionally on a flat
//!   background) in a histogram region, by binned maximum likelihood with exact bin integrals;
//!   uncertainties from the inverse of the numerical Hessian of lnL.
//!
//! Guarantees: never panics on data; empty, flat or degenerate inputs give a [`FitError`]
//! that says what to change. Fits allocate (they run once, at the end of a run).

use super::histogram::Histogram;
use std::fmt;

/// Why a fit gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// The window is empty or inverted.
    #[error("fit window [{lo}, {hi}] is empty or inverted, or holds no whole bin: widen it")]
    BadWindow {
        /// Lower edge.
        lo: f64,
        /// Upper edge.
        hi: f64,
    },
    /// Too few entries for a meaningful fit.
    #[error("only {n} entries in the fit window, at least {need} are needed: take more data or widen the window")]
    TooFewEntries {
        /// Entries found.
        n: u64,
        /// Entries needed.
        need: u64,
    },
    /// The likelihood has no maximum inside the searched range.
    #[error("{0}")]
    NoMaximum(String),
}

/// Result of an exponential lifetime fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExponentialFit {
    /// Fitted lifetime τ (same unit as the data).
    pub lifetime: f64,
    /// Its standard uncertainty from the curvature of lnL.
    pub sigma: f64,
    /// Lower end of the profile-likelihood interval (ΔlnL = ½).
    pub lower: f64,
    /// Upper end of the profile-likelihood interval.
    pub upper: f64,
    /// What it was fitted to.
    #[serde(flatten)]
    pub input: FitInput,
}

/// What a fit was made from: the entries in its window, and the window.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FitInput {
    /// Entries inside the window.
    pub entries: u64,
    /// The window actually used (snapped to bin edges for histograms).
    pub window: (f64, f64),
}

impl fmt::Display for FitInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = self.window;
        write!(f, "from {} entries in [{from:.4e}, {to:.4e}]", self.entries)
    }
}

impl fmt::Display for ExponentialFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exponential fit: lifetime = {:.6e} ± {:.2e} (profile interval [{:.6e}, {:.6e}]) \
             {}",
            self.lifetime, self.sigma, self.lower, self.upper, self.input
        )
    }
}

/// Result of a gaussian peak fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GaussianFit {
    /// Peak position.
    pub mean: f64,
    /// Its standard uncertainty.
    pub mean_sigma: f64,
    /// Peak width (standard deviation).
    pub width: f64,
    /// Its standard uncertainty.
    pub width_sigma: f64,
    /// Fraction of the window's entries in the flat background (0 when not fitted).
    pub background_fraction: f64,
    /// What it was fitted to (the window snapped to bin edges).
    #[serde(flatten)]
    pub input: FitInput,
}

impl fmt::Display for GaussianFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gaussian fit: mean = {:.6e} ± {:.2e}, width = {:.4e} ± {:.2e}, background fraction \
             {:.3} {}",
            self.mean,
            self.mean_sigma,
            self.width,
            self.width_sigma,
            self.background_fraction,
            self.input
        )
    }
}

/// `ln(1 − e^{−x})` for x > 0, accurate for small and large x.
fn ln_one_minus_exp_neg(x: f64) -> f64 {
    (-(-x).exp_m1()).ln()
}

/// Maximises a smooth 1-D function of τ > 0 over `[lo, hi]`: a log-spaced scan, then golden
/// section around the best grid point. Returns the maximiser, or an error naming the side
/// when the maximum is at an end of the range.
fn maximise_lifetime(f: &dyn Fn(f64) -> f64, lo: f64, hi: f64) -> Result<f64, FitError> {
    const GRID: usize = 400;
    let (a, b) = (lo.ln(), hi.ln());
    let at = |k: usize| (a + (b - a) * k as f64 / GRID as f64).exp();
    let mut best = 0;
    let mut best_v = f64::NEG_INFINITY;
    for k in 0..=GRID {
        let v = f(at(k));
        if v > best_v {
            best_v = v;
            best = k;
        }
    }
    if !best_v.is_finite() {
        return Err(FitError::NoMaximum(
            "the likelihood is not finite anywhere".into(),
        ));
    }
    if best == GRID {
        return Err(FitError::NoMaximum(format!(
            "the data in the window are flat: the lifetime is beyond {hi:.3e}; \
             check the window and the data"
        )));
    }
    if best == 0 {
        return Err(FitError::NoMaximum(format!(
            "the entries crowd at the window start: the lifetime is below {lo:.3e}; \
             check the window and the data"
        )));
    }
    let (mut x0, mut x1) = (at(best - 1).ln(), at(best + 1).ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = x1 - g * (x1 - x0);
    let mut d = x0 + g * (x1 - x0);
    let (mut fc, mut fd) = (f(c.exp()), f(d.exp()));
    for _ in 0..200 {
        if (x1 - x0).abs() < 1e-12 {
            break;
        }
        if fc > fd {
            x1 = d;
            d = c;
            fd = fc;
            c = x1 - g * (x1 - x0);
            fc = f(c.exp());
        } else {
            x0 = c;
            c = d;
            fc = fd;
            d = x0 + g * (x1 - x0);
            fd = f(d.exp());
        }
    }
    Ok((0.5 * (x0 + x1)).exp())
}

/// Curvature error and profile interval of a 1-D log-likelihood at its maximum `tau`.
fn lifetime_errors(f: &dyn Fn(f64) -> f64, tau: f64, lo: f64, hi: f64) -> (f64, f64, f64) {
    let h = 1e-4 * tau;
    let d2 = (f(tau + h) - 2.0 * f(tau) + f(tau - h)) / (h * h);
    let sigma = if d2 < 0.0 {
        (-1.0 / d2).sqrt()
    } else {
        f64::INFINITY
    };
    let target = f(tau) - 0.5;
    let solve = |mut inside: f64, mut outside: f64| {
        if f(outside) > target {
            return outside;
        }
        for _ in 0..200 {
            let mid = 0.5 * (inside + outside);
            if f(mid) > target {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        0.5 * (inside + outside)
    };
    (sigma, solve(tau, lo), solve(tau, hi))
}

/// The lifetime that maximises the log-likelihood `f` within `[lo, hi]`, with its errors.
fn best_lifetime(
    f: &dyn Fn(f64) -> f64,
    (lo, hi): (f64, f64),
    input: FitInput,
) -> Result<ExponentialFit, FitError> {
    let lifetime = maximise_lifetime(f, lo, hi)?;
    let (sigma, lower, upper) = lifetime_errors(f, lifetime, lo, hi);
    Ok(ExponentialFit {
        lifetime,
        sigma,
        lower,
        upper,
        input,
    })
}

/// Lifetime fit to a list of times, keeping those in `[t_min, t_max]`.
pub fn exponential_events(
    times: &[f64],
    t_min: f64,
    t_max: f64,
) -> Result<ExponentialFit, FitError> {
    if !(t_min.is_finite() && t_max.is_finite() && t_max > t_min) {
        return Err(FitError::BadWindow {
            lo: t_min,
            hi: t_max,
        });
    }
    let inside = times.iter().filter(|t| **t >= t_min && **t <= t_max);
    let n = inside.clone().count() as f64;
    let s: f64 = inside.map(|t| t - t_min).sum();
    if n < 10.0 {
        return Err(FitError::TooFewEntries {
            n: n as u64,
            need: 10,
        });
    }
    let len = t_max - t_min;
    let lnl = move |tau: f64| -n * tau.ln() - s / tau - n * ln_one_minus_exp_neg(len / tau);
    let input = FitInput {
        entries: n as u64,
        window: (t_min, t_max),
    };
    best_lifetime(&lnl, (len * 1e-4, len * 1e3), input)
}

/// The bins of `h` lying wholly inside `[lo, hi]` (a small tolerance keeps edges that equal
/// the window's): first bin and one past the last.
fn bins_inside(h: &Histogram, lo: f64, hi: f64) -> Result<(usize, usize), FitError> {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Err(FitError::BadWindow { lo, hi });
    }
    let w = h.bin_width();
    let first = ((lo - h.lo()) / w - 1e-9).ceil().max(0.0) as usize;
    let end = (((hi - h.lo()) / w + 1e-9).floor().max(0.0) as usize).min(h.bins());
    if end <= first {
        return Err(FitError::BadWindow { lo, hi });
    }
    Ok((first, end))
}

/// Binned lifetime fit to the bins of `h` inside `[t_min, t_max]` (the window is snapped
/// inward to whole bins).
pub fn exponential_histogram(
    h: &Histogram,
    t_min: f64,
    t_max: f64,
) -> Result<ExponentialFit, FitError> {
    let (first, end) = bins_inside(h, t_min, t_max)?;
    let w = h.bin_width();
    let a = h.edge(first);
    let b = h.edge(end);
    let counts = &h.counts()[first..end];
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    if n < 10.0 {
        return Err(FitError::TooFewEntries {
            n: n as u64,
            need: 10,
        });
    }
    // Σ n_i (x_i − a), x_i the bin's lower edge.
    let s: f64 = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| c as f64 * i as f64 * w)
        .sum();
    let len = b - a;
    let lnl = move |tau: f64| {
        -s / tau + n * ln_one_minus_exp_neg(w / tau) - n * ln_one_minus_exp_neg(len / tau)
    };
    let input = FitInput {
        entries: n as u64,
        window: (a, b),
    };
    best_lifetime(&lnl, (w * 1e-2, len * 1e3), input)
}

/// Complementary error function (Chebyshev fit, relative error < 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Probability that a standard normal variable lies in `[a, b]`, accurate in both tails.
fn normal_between(a: f64, b: f64) -> f64 {
    let s = std::f64::consts::SQRT_2;
    if a >= 0.0 {
        0.5 * (erfc(a / s) - erfc(b / s))
    } else if b <= 0.0 {
        0.5 * (erfc(-b / s) - erfc(-a / s))
    } else {
        1.0 - 0.5 * (erfc(-a / s) + erfc(b / s))
    }
}

/// Minimises `f` with the Nelder–Mead simplex from `start` with initial steps `step`.
fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, start: &[f64], step: &[f64]) -> Vec<f64> {
    let n = start.len();
    let mut pts: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step[i];
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| f(p)).collect();
    for _ in 0..5000 {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
        pts = order.iter().map(|&i| pts[i].clone()).collect();
        vals = order.iter().map(|&i| vals[i]).collect();
        if (vals[n] - vals[0]).abs() < 1e-11 * (1.0 + vals[0].abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| pts[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let towards = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + t * (pts[n][j] - centroid[j]))
                .collect()
        };
        let r = towards(-1.0);
        let fr = f(&r);
        if fr < vals[0] {
            let e = towards(-2.0);
            let fe = f(&e);
            if fe < fr {
                pts[n] = e;
                vals[n] = fe;
            } else {
                pts[n] = r;
                vals[n] = fr;
            }
        } else if fr < vals[n - 1] {
            pts[n] = r;
            vals[n] = fr;
        } else {
            let c = towards(0.5);
            let fc = f(&c);
            if fc < vals[n] {
                pts[n] = c;
                vals[n] = fc;
            } else {
                let best = pts[0].clone();
                for (p, v) in pts.iter_mut().zip(vals.iter_mut()).skip(1) {
                    for (x, b) in p.iter_mut().zip(&best) {
                        *x = b + 0.5 * (*x - b);
                    }
                    *v = f(p);
                }
            }
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| vals[a].total_cmp(&vals[b]))
        .unwrap_or(0);
    pts[best].clone()
}

/// Inverts a small symmetric matrix (Gauss–Jordan with partial pivoting).
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = r.clone();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for col in 0..n {
        let piv = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        let p = a[col][col];
        for v in a[col].iter_mut() {
            *v /= p;
        }
        for r in 0..n {
            if r != col {
                let k = a[r][col];
                let src = a[col].clone();
                for (v, s) in a[r].iter_mut().zip(src) {
                    *v -= k * s;
                }
            }
        }
    }
    Some(a.into_iter().map(|r| r[n..].to_vec()).collect())
}

/// Gaussian peak fit to the bins of `h` inside `[lo, hi]` (snapped inward to whole bins),
/// with a flat background when `background` is true.
pub fn gaussian_histogram(
    h: &Histogram,
    lo: f64,
    hi: f64,
    background: bool,
) -> Result<GaussianFit, FitError> {
    let (first, end) = bins_inside(h, lo, hi)?;
    let counts: Vec<f64> = h.counts()[first..end].iter().map(|&c| c as f64).collect();
    let edges: Vec<f64> = (first..=end).map(|i| h.edge(i)).collect();
    let (a, b) = (edges[0], edges[edges.len() - 1]);
    let n: f64 = counts.iter().sum();
    if n < 10.0 {
        return Err(FitError::TooFewEntries {
            n: n as u64,
            need: 10,
        });
    }
    if counts.len() < 3 + usize::from(background) {
        return Err(FitError::BadWindow { lo, hi });
    }
    let centres: Vec<f64> = edges.windows(2).map(|e| 0.5 * (e[0] + e[1])).collect();
    let m0 = counts.iter().zip(&centres).map(|(c, x)| c * x).sum::<f64>() / n;
    let v0 = counts
        .iter()
        .zip(&centres)
        .map(|(c, x)| c * (x - m0) * (x - m0))
        .sum::<f64>()
        / n;
    let s0 = v0.sqrt().max(h.bin_width() * 0.5);
    // Parameters: mean, ln(width), and logit(background fraction).
    let neg_lnl = |p: &[f64]| -> f64 {
        let (m, s) = (p[0], p[1].exp());
        let f = if background {
            1.0 / (1.0 + (-p[2]).exp())
        } else {
            0.0
        };
        let total = normal_between((a - m) / s, (b - m) / s);
        if total.is_nan() || total <= 0.0 {
            return f64::INFINITY;
        }
        let mut l = 0.0;
        for (i, c) in counts.iter().enumerate() {
            if *c == 0.0 {
                continue;
            }
            let g = normal_between((edges[i] - m) / s, (edges[i + 1] - m) / s) / total;
            let p = (1.0 - f) * g + f * (edges[i + 1] - edges[i]) / (b - a);
            if p.is_nan() || p <= 0.0 {
                return f64::INFINITY;
            }
            l += c * p.ln();
        }
        -l
    };
    let mut start = vec![m0, s0.ln()];
    let mut step = vec![0.1 * s0, 0.1];
    if background {
        start.push(-2.0);
        step.push(0.5);
    }
    let best = nelder_mead(&neg_lnl, &start, &step);
    // Hessian of −lnL in the optimiser's parameters, by central differences.
    let k = best.len();
    let hstep: Vec<f64> = (0..k)
        .map(|i| if i == 0 { 1e-3 * best[1].exp() } else { 1e-3 })
        .collect();
    let mut hess = vec![vec![0.0; k]; k];
    let f0 = neg_lnl(&best);
    for i in 0..k {
        for j in i..k {
            let at = |di: f64, dj: f64| {
                let mut p = best.clone();
                p[i] += di * hstep[i];
                p[j] += dj * hstep[j];
                neg_lnl(&p)
            };
            let v = if i == j {
                (at(1.0, 0.0) - 2.0 * f0 + at(-1.0, 0.0)) / (hstep[i] * hstep[i])
            } else {
                (at(1.0, 1.0) - at(1.0, -1.0) - at(-1.0, 1.0) + at(-1.0, -1.0))
                    / (4.0 * hstep[i] * hstep[j])
            };
            hess[i][j] = v;
            hess[j][i] = v;
        }
    }
    let cov = invert(&hess)
        .filter(|c| (0..k).all(|i| c[i][i] > 0.0 && c[i][i].is_finite()))
        .ok_or_else(|| {
            FitError::NoMaximum(
                "the peak fit has no well-defined maximum (flat or one-bin peak): check the \
                 window and the binning"
                    .into(),
            )
        })?;
    let width = best[1].exp();
    let mean = best[0];
    if !(mean > a && mean < b) {
        return Err(FitError::NoMaximum(format!(
            "the fitted peak position {mean:.4e} is outside the window [{a:.4e}, {b:.4e}]"
        )));
    }
    let background_fraction = if background {
        1.0 / (1.0 + (-best[2]).exp())
    } else {
        0.0
    };
    Ok(GaussianFit {
        mean,
        mean_sigma: cov[0][0].sqrt(),
        width,
        width_sigma: width * cov[1][1].sqrt(),
        background_fraction,
        input: FitInput {
            entries: n as u64,
            window: (a, b),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 1e-7);
        assert!((erfc(3.0) / 2.209_049_699_858_544e-5 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn exponential_fit_of_exact_quantiles() {
        // Times at the (k+0.5)/n quantiles of an exponential with τ = 2, window [0.5, 8].
        let tau = 2.0f64;
        let (a, b) = (0.5f64, 8.0f64);
        let n = 20_000;
        let fa = (-a / tau).exp();
        let fb = (-b / tau).exp();
        let times: Vec<f64> = (0..n)
            .map(|k| {
                let u = (k as f64 + 0.5) / n as f64;
                -tau * (fa - u * (fa - fb)).ln()
            })
            .collect();
        let f = exponential_events(&times, a, b).unwrap();
        assert!((f.lifetime - tau).abs() < 1e-3, "{f}");
        assert!(f.lower < f.lifetime && f.upper > f.lifetime);
        assert!(
            (f.sigma / (tau / (n as f64).sqrt()) - 1.0).abs() < 0.5,
            "{f}"
        );
        assert!(exponential_events(&times[..5], a, b).is_err());
        assert!(exponential_events(&times, 3.0, 1.0).is_err());
    }

    /// Inverse of the standard normal CDF by bisection on [`erfc`] (tests only).
    fn normal_quantile(u: f64) -> f64 {
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if 0.5 * erfc(-mid / std::f64::consts::SQRT_2) < u {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn gaussian_fit_with_and_without_background() {
        // 8000 entries at the quantiles of N(0.3, 0.01²) plus 2000 spread evenly over the
        // window [0.25, 0.35]: exact shapes, so the fit must return the inputs closely.
        let mut h = Histogram::new(0.0, 1.0, 400).unwrap();
        for k in 0..8000 {
            h.fill(0.3 + 0.01 * normal_quantile((k as f64 + 0.5) / 8000.0));
        }
        let pure = gaussian_histogram(&h, 0.25, 0.35, false).unwrap();
        assert!((pure.mean - 0.3).abs() < 2e-4, "{pure}");
        assert!((pure.width / 0.01 - 1.0).abs() < 0.03, "{pure}");
        assert!(pure.mean_sigma > 0.5e-4 && pure.mean_sigma < 2e-4, "{pure}");
        for k in 0..2000 {
            h.fill(0.25 + 0.1 * (k as f64 + 0.5) / 2000.0);
        }
        let bg = gaussian_histogram(&h, 0.25, 0.35, true).unwrap();
        assert!((bg.mean - 0.3).abs() < 3e-4, "{bg}");
        assert!((bg.width / 0.01 - 1.0).abs() < 0.05, "{bg}");
        // 2000 flat + the gaussian's 8000 (all but 0.00006 % inside ±5σ).
        assert!((bg.background_fraction - 0.2).abs() < 0.02, "{bg}");
        // Without the background term the same data give a wider peak.
        let wrong = gaussian_histogram(&h, 0.25, 0.35, false).unwrap();
        assert!(wrong.width > 1.2 * bg.width, "{wrong}");
        assert!(gaussian_histogram(&h, 0.9, 0.95, false).is_err());
    }

    #[test]
    fn binned_and_unbinned_lifetimes_agree() {
        let tau = 2.0f64;
        let n = 20_000;
        let times: Vec<f64> = (0..n)
            .map(|k| -tau * (1.0 - (k as f64 + 0.5) / n as f64).ln())
            .collect();
        let mut h = Histogram::new(0.0, 20.0, 200).unwrap();
        for t in &times {
            h.fill(*t);
        }
        let unbinned = exponential_events(&times, 0.5, 15.0).unwrap();
        let binned = exponential_histogram(&h, 0.5, 15.0).unwrap();
        assert_eq!(binned.input.window, (0.5, 15.0));
        assert!((unbinned.lifetime - tau).abs() < 0.01, "{unbinned}");
        assert!(
            (binned.lifetime - unbinned.lifetime).abs() < 0.3 * unbinned.sigma,
            "{binned} vs {unbinned}"
        );
    }

    #[test]
    fn rising_data_has_no_lifetime() {
        // Density rising across the window (quantiles of 2t on [0, 1]): no decay to fit.
        let times: Vec<f64> = (0..1000)
            .map(|k| ((k as f64 + 0.5) / 1000.0).sqrt())
            .collect();
        assert!(matches!(
            exponential_events(&times, 0.0, 1.0),
            Err(FitError::NoMaximum(_))
        ));
    }
}
