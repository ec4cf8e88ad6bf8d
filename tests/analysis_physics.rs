//! Physics checks of the built-in analysis on simulated data with known truth: pulse heights
//! and times, the muon lifetime through the whole chain, and a two-line spectrum.

use daq_engine::analysis::histogram::{FitOutcome, HistogramExport};
use daq_engine::analysis::pulses::PulsePairs;
use daq_engine::analysis::simulate::SimulatePulses;
use daq_engine::analysis::trigger::Threshold;
use daq_engine::analysis::EventCollector;
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{EventMut, EventRef, Exporter, Filter, Importer, Processor, Produced};
use serde_json::{json, Value};

mod analysis_common;
use analysis_common::{ctx, ctx_in, next_of, pulse_finder, shape, simulator};

/// Produces one event into `data`; panics if the simulator does not produce one.
fn produce(sim: &mut SimulatePulses, data: &mut [u8], meta: &mut Metadata, dtype: &Dtype) {
    assert_eq!(next_of(sim, data, meta, dtype), Produced::Event);
}

struct Residuals {
    height: Vec<f64>,
    rel_height: Vec<f64>,
    time: Vec<f64>,
}

/// Simulates `n` single-channel events with a second pulse in every one, finds the pulses
/// and compares them with the truth (pulses closer than 80 samples are skipped: they
/// overlap by design).
fn pulse_residuals(noise: f64, n: usize) -> Residuals {
    let raw = shape("raw", &[("ch0", "f4")], 1024);
    let feat = shape("feat", &[("height", "f8"), ("time", "f8")], 1);
    let mut sim = simulator(
        "sim",
        json!({"noise": noise, "noise_generator": "ziggurat", "decay_fraction": 1.0,
               "lifetime": 8e-7, "amplitude": "gaussian", "amplitude_mean": 0.5,
               "amplitude_sigma": 0.1, "seed": 42, "pretrigger_samples": 100}),
        &raw,
    );
    let mut finder = pulse_finder(
        "pha",
        json!({"threshold": 0.05, "baseline_samples": 50}),
        &raw,
        &feat,
    );
    let cf = sim.shape().rise_crossing(0.5).unwrap();
    let mut data = vec![0u8; 1024 * 4];
    let mut meta = Metadata::default();
    let mut r = Residuals {
        height: vec![],
        rel_height: vec![],
        time: vec![],
    };
    for _ in 0..n {
        produce(&mut sim, &mut data, &mut meta, &raw.dtype);
        let truth = sim.truth().pulses[0];
        let ev = EventRef {
            data: &data,
            meta,
            dtype: &raw.dtype,
        };
        let found = finder.find(&ev, 0);
        if truth.1 == 2 && truth.0[1].onset - truth.0[0].onset < 80.0 {
            continue;
        }
        assert_eq!(
            found.len(),
            truth.1,
            "pulse count, truth {truth:?}, found {found:?}"
        );
        for (p, t) in found.iter().zip(truth.0.iter()) {
            r.height.push(p.height - t.amplitude);
            r.rel_height.push((p.height - t.amplitude) / t.amplitude);
            r.time.push(p.time - (t.onset + cf));
        }
    }
    r
}

fn mean_rms(x: &[f64]) -> (f64, f64) {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64;
    (m, v.sqrt())
}

#[test]
fn noise_free_heights_within_one_percent_and_times_within_one_sample() {
    let r = pulse_residuals(0.0, 300);
    assert!(r.height.len() > 400, "{} pulses compared", r.height.len());
    let worst_h = r.rel_height.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst_t = r.time.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst_h < 0.01, "worst relative height error {worst_h}");
    assert!(worst_t < 1.0, "worst time error {worst_t} samples");
    eprintln!("noise-free: worst height error {worst_h}, worst time error {worst_t} samples");
}

#[test]
fn noisy_heights_spread_as_the_noise_predicts() {
    let sigma = 0.005;
    let r = pulse_residuals(sigma, 400);
    let (m, rms) = mean_rms(&r.height);
    // Predicted spread of one peak sample minus a 50-sample baseline mean: σ·sqrt(1 + 1/50);
    // the parabola through three samples changes it by a few per cent only.
    let predicted = sigma * (1.0 + 1.0 / 50.0f64).sqrt();
    assert!(
        rms > 0.8 * predicted && rms < 1.3 * predicted,
        "height residual RMS {rms} vs predicted {predicted}"
    );
    // Bias: choosing the peak and the parabola from noisy samples shifts the height by a
    // fraction of σ (about −0.16 σ here); it must stay well below the noise itself.
    assert!(m.abs() < 0.5 * sigma, "height bias {m}");
    let worst_t = r.time.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst_t < 1.0, "worst time error {worst_t} samples");
    eprintln!(
        "noise {sigma}: height bias {m}, RMS {rms} (predicted {predicted}), worst time {worst_t}"
    );
}

#[test]
fn integer_adc_heights_scale_back_to_volts() {
    let raw = shape("raw", &[("IN1", "i2")], 512);
    let feat = shape("feat", &[("height", "f4")], 1);
    let mut sim = simulator(
        "sim",
        json!({"noise": 0.0, "amplitude": "fixed", "amplitude_mean": 0.4, "adc_bits": 12,
               "adc_range": 1.0, "seed": 3}),
        &raw,
    );
    let mut finder = pulse_finder(
        "pha",
        json!({"threshold": 0.05, "scale": 1.0 / 2048.0}),
        &raw,
        &feat,
    );
    let mut data = vec![0u8; 512 * 2];
    let mut meta = Metadata::default();
    produce(&mut sim, &mut data, &mut meta, &raw.dtype);
    let ev = EventRef {
        data: &data,
        meta,
        dtype: &raw.dtype,
    };
    let p = finder.find(&ev, 0);
    assert_eq!(p.len(), 1);
    // 0.4 V is 819.2 counts: quantisation keeps the height within 1 LSB plus the parabola.
    assert!(
        (p[0].height - 0.4).abs() < 2.0 / 2048.0 + 0.004,
        "{}",
        p[0].height
    );
}

/// An ADC wider than its integer field (`adc_bits: 16` into int8) was taken and every
/// pulse saturated at 127, with the 16-bit scale in the file: `check` refuses it now.
#[test]
fn adc_bits_wider_than_the_field_are_refused() {
    let raw = shape("raw", &[("chA", "i1")], 200);
    let e = SimulatePulses::build(&ctx("sim", json!({"adc_bits": 16}), &[], &[&raw]))
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("adc_bits") && text.contains("chA") && text.contains("8 bits"),
        "{text}"
    );
    // As wide as the field is fine.
    simulator("sim", json!({"adc_bits": 8}), &raw);
}

/// An unsigned field holds offset binary: 0 V is mid-scale (32768 for 16 bits), and its
/// scale's offset says so. Before, the codes were signed and cast: the negative half of
/// the noise was clipped to 0 (half the baseline samples 0), the baseline biased.
#[test]
fn an_unsigned_adc_field_holds_offset_binary() {
    let raw = shape("raw", &[("chA", "u2")], 512);
    let dir = std::env::temp_dir().join(format!("daq_unsigned_adc_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = ctx(
        "sim",
        json!({"noise": 0.003, "pretrigger_samples": 400, "seed": 5}),
        &[],
        &[&raw],
    );
    c.run_dir = dir.clone();
    let mut sim = SimulatePulses::build(&c).unwrap();
    let mut data = vec![0u8; 512 * 2];
    let mut meta = Metadata::default();
    produce(&mut sim, &mut data, &mut meta, &raw.dtype);
    let counts: Vec<u16> = data
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    // The baseline, before the pulse: noise around mid-scale, none clipped.
    let baseline = &counts[..300];
    assert!(baseline.iter().all(|&v| v > 30_000), "{baseline:?}");
    let mean = baseline.iter().map(|&v| f64::from(v)).sum::<f64>() / 300.0;
    assert!((mean - 32768.0).abs() < 20.0, "baseline mean {mean}");
    let scales = std::fs::read_to_string(dir.join("scales_sim.txt")).unwrap();
    assert!(scales.contains("offset_volts"), "{scales}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The muon-lifetime chain, by hand: simulate.pulses → filter.threshold →
/// process.pulse_pairs → export.histogram (with its exponential fit at the end).
#[test]
fn muon_lifetime_chain_recovers_the_injected_lifetime() {
    let n_events = 2500;
    let dir = std::env::temp_dir().join(format!("daq_analysis_muon_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = shape("raw", &[("ch0", "f4"), ("ch1", "f4")], 4096);
    let delays = shape(
        "delays",
        &[("delay", "f8"), ("height1", "f4"), ("height2", "f4")],
        1,
    );
    let mut sim = simulator(
        "muon_source",
        json!({"sample_interval": 4e-9, "pretrigger_samples": 100, "decay_fraction": 1.0,
               "n_events": n_events, "seed": 2197, "noise": 0.002}),
        &raw,
    );
    let mut trigger = Threshold::build(&ctx(
        "trigger",
        json!({"level": 0.05, "channels": ["ch0"]}),
        &[&raw],
        &[&raw],
    ))
    .unwrap();
    let mut pairs = PulsePairs::build(&ctx(
        "decays",
        json!({"threshold": 0.05, "channel": "ch0", "sample_interval": 4e-9}),
        &[&raw],
        &[&delays],
    ))
    .unwrap();
    let hctx = ctx_in(
        &dir,
        "lifetime",
        json!({"bins": {"delay": [0.0, 1.6e-5, 160]},
               "fit": [{"field": "delay", "model": "exponential", "min": 4e-7, "max": 1.5e-5,
                        "name": "muon_lifetime"}]}),
        &[&delays],
    );
    let mut hist = HistogramExport::build(&hctx).unwrap();

    let mut data = vec![0u8; 4096 * 8];
    let mut meta = Metadata::default();
    let mut out = EventCollector::new(std::slice::from_ref(&delays));
    let (mut produced, mut triggered, mut visible) = (0, 0, 0);
    loop {
        let mut ev = EventMut {
            data: &mut data,
            meta: &mut meta,
            dtype: &raw.dtype,
        };
        match sim.next(&mut ev).unwrap() {
            Produced::End => break,
            Produced::Idle => continue,
            Produced::Event => {}
        }
        meta.counter = produced;
        produced += 1;
        if sim.truth().pulses[0].1 == 2 {
            visible += 1;
        }
        let ev = EventRef {
            data: &data,
            meta,
            dtype: &raw.dtype,
        };
        if !trigger.select(&ev).unwrap().contains(0) {
            continue;
        }
        triggered += 1;
        out.input_meta = meta;
        out.clear();
        pairs.process(&ev, &mut out).unwrap();
        for (m, d) in &out.events[0] {
            hist.consume(&EventRef {
                data: d,
                meta: *m,
                dtype: &delays.dtype,
            })
            .unwrap();
        }
    }
    hist.finish().unwrap();

    // Counted facts: every event has a pulse well above the level, so all pass the trigger;
    // every delay lands in exactly one of the histogram's bins or its overflow.
    assert_eq!(produced, n_events as i64);
    assert_eq!(triggered, n_events);
    let h = hist.histograms().next().unwrap().1;
    assert_eq!(h.entries() + h.underflow() + h.overflow(), pairs.pairs());
    // Second pulses inside the trace and more than ~30 samples after the first are found.
    assert!(
        pairs.pairs() as f64 > 0.9 * visible as f64,
        "{} of {visible}",
        pairs.pairs()
    );

    let (_, fit) = &hist.fit_results()[0];
    let FitOutcome::Exponential(f) = fit.as_ref().unwrap() else {
        panic!("not an exponential fit")
    };
    let pull = (f.lifetime - 2.197e-6) / f.sigma;
    eprintln!("{f}; pull {pull:.2}");
    assert!(pull.abs() < 3.0, "{f}: pull {pull}");
    assert!(f.sigma < 0.05 * 2.197e-6, "{f}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fit_muon_lifetime.json")).unwrap())
            .unwrap();
    assert!((json["result"]["lifetime"].as_f64().unwrap() - f.lifetime).abs() < 1e-15);
    assert!(std::fs::read_to_string(dir.join("fit_muon_lifetime.txt"))
        .unwrap()
        .contains("lifetime"));
    assert!(dir.join("histogram_lifetime_delay.csv").exists());
    assert!(hist.summary()[0].contains("muon_lifetime"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Two-line pulse-height spectrum: simulate.pulses → process.pulses → export.histogram with
/// two gaussian fits; the fitted positions match the injected lines.
#[test]
fn two_line_spectrum_peaks_are_found_where_injected() {
    let n_events = 4000;
    let dir = std::env::temp_dir().join(format!("daq_analysis_spectrum_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = shape("raw", &[("ch0", "f4")], 256);
    let feat = shape("pulses", &[("channel", "u1"), ("height", "f4")], 1);
    let mut sim = simulator(
        "source",
        json!({"amplitude": "lines", "line_amplitudes": [0.3, 0.6], "line_weights": [0.6, 0.4],
               "resolution": 0.03, "noise": 0.001, "pretrigger_samples": 60,
               "n_events": n_events, "seed": 60}),
        &raw,
    );
    let mut pha = pulse_finder(
        "pha",
        json!({"threshold": 0.05, "baseline_samples": 40}),
        &raw,
        &feat,
    );
    let hctx = ctx_in(
        &dir,
        "spectrum",
        json!({"bins": {"height": [0.0, 1.0, 400]},
               "fit": [{"field": "height", "model": "gaussian", "min": 0.25, "max": 0.35, "name": "line1"},
                       {"field": "height", "model": "gaussian", "min": 0.5, "max": 0.7, "name": "line2"}]}),
        &[&feat],
    );
    let mut hist = HistogramExport::build(&hctx).unwrap();
    let mut data = vec![0u8; 256 * 4];
    let mut meta = Metadata::default();
    let mut out = EventCollector::new(std::slice::from_ref(&feat));
    let mut produced = 0u64;
    loop {
        let mut ev = EventMut {
            data: &mut data,
            meta: &mut meta,
            dtype: &raw.dtype,
        };
        if sim.next(&mut ev).unwrap() == Produced::End {
            break;
        }
        produced += 1;
        out.clear();
        pha.process(
            &EventRef {
                data: &data,
                meta,
                dtype: &raw.dtype,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out.events[0].len(), 1, "one pulse per event");
        for (m, d) in &out.events[0] {
            hist.consume(&EventRef {
                data: d,
                meta: *m,
                dtype: &feat.dtype,
            })
            .unwrap();
        }
    }
    hist.finish().unwrap();
    assert_eq!(produced, n_events);
    assert_eq!(pha.pulses_found(), n_events);
    for ((name, fit), line) in hist.fit_results().iter().zip([0.3, 0.6]) {
        let FitOutcome::Gaussian(g) = fit.as_ref().unwrap() else {
            panic!("not a gaussian fit")
        };
        let pull = (g.mean - line) / g.mean_sigma;
        eprintln!("{name}: {g}; pull {pull:.2}");
        // "Within their uncertainty", as the issue asks: |pull| < 1. With the fixed seed the
        // pulls are −0.44 and −0.13; a change that biases the finder or the fit by more than
        // one standard error (0.2 mV, 0.4 mV) fails here.
        assert!(pull.abs() < 1.0, "{name}: {g}, pull {pull}");
        // The width is the injected resolution (3 %) with the noise added in quadrature.
        let want_width = ((0.03 * line).powi(2) + 0.001f64.powi(2)).sqrt();
        assert!(
            (g.width - want_width).abs() < 4.0 * g.width_sigma,
            "{name}: {g}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
