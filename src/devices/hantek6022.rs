//! `device.hantek6022`: the Hantek 6022BE/BL USB oscilloscope through libusb (or its
//! transfer-level simulator) as an Importer function: spec, keys, the config check and the
//! build.
//!
//! Guarantees: every key maps onto the driver's [`HantekConfig`] and is checked before the
//! device is touched; with `simulate: true` the same driver code runs against the simulated
//! scope, which comes back cold from an unplug (the driver uploads the firmware again).
//! Must never: fall back to the simulator when real hardware was asked for.

use super::plug::{keep_simulated, unplug_window, SimulatedPlug};
use super::usb::{check_scope, libusb, per_channel, scope_importer};
use super::{bad, importer_spec, open_error, pick, within, DeviceImporter, SEED, SIMULATE};
use crate::worker::{BuildContext, Config, FunctionSpec, WorkerError};
use daq_drivers::hantek6022::{
    self, Calibration, Edge, Gain, Hantek6022, HantekConfig, SimHantek, SimHantekConfig, SimSignal,
    Trigger,
};
use std::path::PathBuf;

impl SimulatedPlug for SimHantek {
    fn name(&self) -> String {
        "the simulated Hantek 6022".into()
    }
    fn unplug(&mut self) {
        SimHantek::unplug(self);
    }
    /// Comes back cold: the driver uploads the firmware again.
    fn replug(&mut self) -> Result<(), super::plug::ReplugError> {
        SimHantek::replug(self);
        Ok(())
    }
}

/// `device.hantek6022`'s own keys: the device's (`OWN`), then its simulator's (`SIM`).
mod hantek_keys {
    use crate::keys;
    use crate::worker::{Key, MaybeKey, PerChannel};
    keys! {
        list pub OWN;
        pub const FIRMWARE: MaybeKey<str> = ("firmware", absent: "none", "firmware for a cold device, e.g. /usr/share/sigrok-firmware/fx2lafw-hantek-6022be.fw (Debian package sigrok-firmware-fx2lafw)");
        pub const SAMPLE_RATE: Key<u32> = ("sample_rate", 1000000, "samples per second per channel (must be in the firmware's table)");
        pub const CHANNELS: Key<usize> = ("channels", 2, "active channels: 1 (ch1) or 2");
        pub const RANGES: Key<PerChannel> = ("ranges", 5.0, "± full scale per channel (V): 5, 2.5, 1 or 0.5; one number or a list");
        pub const FORMAT: Key<str> = ("format", "volts", "counts (int8 ADC counts, 0 ≈ 0 V, a quarter of the bytes of volts; volts = counts × volts_per_count + offset_volts, stored with the data), volts (float32) or raw (uint8 codes as the scope sends them, 0x80 ≈ 0 V)");
        pub const SAMPLES_PER_EVENT: Key<usize> = ("samples_per_event", 1000, "samples per channel in one event");
        pub const TRIGGER_CHANNEL: Key<usize> = ("trigger_channel", 1, "software trigger on ch1 or ch2; 0 = free-running gapless blocks");
        pub const TRIGGER_LEVEL: Key<f64> = ("trigger_level", 0.2, "trigger level (V, after calibration)");
        pub const TRIGGER_EDGE: Key<str> = ("trigger_edge", "rising", "rising or falling");
        pub const PRE_TRIGGER: Key<usize> = ("pre_trigger", 100, "samples kept before the trigger sample");
    }
    keys! {
        list pub SIM;
        pub const SIM_RATE: Key<f64> = ("sim_rate", 1000.0, "simulator only: pulses per second on ch1 (paced at sample_rate)");
        pub const SIM_AMPLITUDE: Key<f64> = ("sim_amplitude", 1.0, "simulator only: pulse height (V, sign = polarity)");
    }
}

/// `device.hantek6022`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.hantek6022",
    summary: "Hantek 6022BE/BL USB oscilloscope through libusb: firmware upload on cold boot, \
              continuous bulk reads, software trigger (or free-running blocks) into events. \
              Sink fields ch1 (and ch2 with 2 channels): int8 counts (format counts), float32 \
              volts or uint8 raw codes; data_length = samples_per_event.",
    keys: [hantek_keys::OWN],
    simulator: [hantek_keys::SIM],
    then: scope,
);

/// Checks the config of `device.hantek6022` as [`build`] does, opening nothing,
/// and the sink against the records it describes.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    let c = hantek_config(&ctx.config)?;
    check_scope(ctx, SPEC.name, &c.layout(), hantek_keys::FORMAT)
}

/// The Hantek configuration `cfg` describes.
pub fn hantek_config(cfg: &Config) -> Result<HantekConfig, WorkerError> {
    let channels = within(cfg, hantek_keys::CHANNELS, 1..=2, "must be 1 or 2")?;
    let ranges = per_channel(cfg, hantek_keys::RANGES, channels)?;
    let mut gains = [Gain::X1; 2];
    for (g, r) in gains.iter_mut().zip(&ranges) {
        *g = Gain::from_full_scale(*r as f32).ok_or_else(|| {
            bad(
                cfg,
                hantek_keys::RANGES.name,
                format!("±{r} V: the 6022 offers 5, 2.5, 1 or 0.5"),
            )
        })?;
    }
    let format = pick(
        cfg,
        hantek_keys::FORMAT,
        &[
            ("volts", hantek6022::SampleFormat::Volts),
            ("counts", hantek6022::SampleFormat::Counts),
            ("raw", hantek6022::SampleFormat::Raw),
        ],
    )?;
    let samples = within(
        cfg,
        hantek_keys::SAMPLES_PER_EVENT,
        1..=10_000_000,
        "must be 1 … 10000000",
    )?;
    let trigger = match cfg.get(hantek_keys::TRIGGER_CHANNEL)? {
        0 => None,
        c @ (1 | 2) if c <= channels => {
            let edge = pick(
                cfg,
                hantek_keys::TRIGGER_EDGE,
                &[("rising", Edge::Rising), ("falling", Edge::Falling)],
            )?;
            let pre = cfg.get(hantek_keys::PRE_TRIGGER)?;
            if pre >= samples {
                return Err(bad(
                    cfg,
                    hantek_keys::PRE_TRIGGER.name,
                    "must be less than samples_per_event",
                ));
            }
            Some(Trigger {
                channel: c - 1,
                level_volts: cfg.get(hantek_keys::TRIGGER_LEVEL)? as f32,
                edge,
                pre_trigger: pre,
            })
        }
        _ => {
            return Err(bad(
                cfg,
                hantek_keys::TRIGGER_CHANNEL.name,
                "must be 0 (none) or an active channel (1 or 2)",
            ))
        }
    };
    Ok(HantekConfig {
        firmware_path: cfg.get(hantek_keys::FIRMWARE)?.map(PathBuf::from),
        sample_rate: cfg.get(hantek_keys::SAMPLE_RATE)?,
        channels: channels as u8,
        gains,
        calibration: [Calibration::default(); 2],
        format,
        samples_per_event: samples,
        trigger,
        ..HantekConfig::default()
    })
}

/// Builds `device.hantek6022`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let config = hantek_config(cfg)?;
    let simulate = cfg.get(SIMULATE)?;
    if simulate {
        let rate = cfg.get(hantek_keys::SIM_RATE)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(bad(
                cfg,
                hantek_keys::SIM_RATE.name,
                "must be > 0 (pulses per second)",
            ));
        }
        let period = (f64::from(config.sample_rate) / rate).max(2.0) as u64;
        let sim = SimHantek::new(SimHantekConfig {
            signal: SimSignal::Pulses {
                channel: 0,
                first: period / 2,
                period,
                amplitude_volts: cfg.get(hantek_keys::SIM_AMPLITUDE)? as f32,
                decay_frames: 20.0,
                noise_volts: 0.01,
            },
            seed: cfg.get(SEED)? as u64,
            paced: true,
            ..SimHantekConfig::default()
        });
        let unplug = unplug_window(cfg)?;
        let has_firmware = config.firmware_path.is_some();
        let mut scope = Hantek6022::open_reconnectable(sim.bus(), config)?;
        if !has_firmware {
            // The simulated scope takes any image; a replugged (cold) one gets this one.
            scope.set_firmware_image(simulated_firmware()?);
        }
        scope_importer(
            SPEC.name,
            ctx,
            Box::new(scope),
            Some(keep_simulated(sim, unplug)),
        )
    } else {
        let scope =
            Hantek6022::open_reconnectable(libusb("hantek6022")?, config).map_err(open_error)?;
        scope_importer(SPEC.name, ctx, Box::new(scope), None)
    }
}

/// The stand-in firmware the simulated Hantek gets when no `firmware` is configured: an
/// 8051 `LJMP 0x0000` (the simulator runs any image; this one just makes the upload real).
fn simulated_firmware() -> Result<hantek6022::firmware::FirmwareImage, WorkerError> {
    hantek6022::firmware::FirmwareImage::from_binary(&[0x02, 0x00, 0x00], "simulator")
        .map_err(|e| WorkerError::failed("device.hantek6022 --simulate", e))
}

/// The Hantek 6022 family: `device.hantek6022`.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::hantek6022::FAMILY,
    functions: &[super::importer!(SPEC, build, check)],
    suggest: |_| ("device.hantek6022", "setups/hantek6022.yaml"),
    bench,
};

/// `bench drivers`: the simulated scope, 2 × 1000 samples as volts and as raw codes.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    let n = super::tools::wave_events(events);
    [
        (hantek6022::SampleFormat::Volts, "hantek6022 sim, 2x1000 f4"),
        (hantek6022::SampleFormat::Raw, "hantek6022 sim, 2x1000 u1"),
    ]
    .into_iter()
    .map(|(format, label)| {
        super::tools::figures_row(label, hantek6022::bench_simulated(n, 1000, format))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `firmware` that is not a path must be refused, not taken as "no firmware" (a cold
    /// scope would then fail to start far from the setup line that caused it).
    #[test]
    fn hantek_firmware_of_the_wrong_type_is_an_error() {
        let e = hantek_config(&Config::from_json("scope", json!({"firmware": 42}))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("config key 'firmware'") && text.contains("expected a string"),
            "{text}"
        );
        let path = Config::from_json("scope", json!({"firmware": "/lib/fw.hex"}));
        let ok = hantek_config(&path).unwrap();
        assert_eq!(ok.firmware_path, Some(PathBuf::from("/lib/fw.hex")));
        let none = Config::from_json("scope", json!({}));
        assert_eq!(hantek_config(&none).unwrap().firmware_path, None);
    }
}
