//! `device.picoscope`: PicoScope oscilloscopes through Pico's library (or the fake-picosdk
//! library when simulating) as an Importer function: spec, keys, the config check, the
//! build, and the loader of the fake library.
//!
//! Guarantees: every key maps onto the driver's [`PicoScopeConfig`] and is checked before
//! the device is touched; with `simulate: true` a private copy of `libfake_picosdk.so` is
//! loaded through the very `libloading` path used for Pico's library, and an unplug makes
//! it answer PICO_NOT_FOUND. Must never: load the fake library when not simulating.

use super::plug::{keep_simulated, unplug_window, SimulatedPlug};
use super::usb::{check_scope, per_channel, scope_importer};
use super::{bad, importer_spec, not_one_of, open_error, pick, DeviceImporter, SEED, SIMULATE};
use crate::worker::{BuildContext, Config, FunctionSpec, PerChannelValue, WorkerError};
use daq_drivers::picoscope::{
    self, Acquisition, ChannelConfig, Coupling, DigitalPort, PicoScope, PicoScopeConfig,
    Resolution, ThresholdDirection, TriggerConfig, VoltageRange, LOGIC_LEVEL_MAX_V,
};
use std::path::{Path, PathBuf};

impl SimulatedPlug for FakePico {
    fn name(&self) -> String {
        format!("the fake PicoScope ({})", self.path.display())
    }
    /// Open handles answer PICO_NOT_RESPONDING, `OpenUnit` PICO_NOT_FOUND.
    fn unplug(&mut self) {
        if let Err(e) = self.call(b"fakepico_unplug") {
            tracing::warn!("simulator: {e}");
        }
    }
    fn replug(&mut self) -> Result<(), super::plug::ReplugError> {
        Ok(self.call(b"fakepico_replug")?)
    }
}

/// `device.picoscope`'s own keys: the device's (`OWN`), then its simulator's (`SIM`).
pub(super) mod pico_keys {
    use crate::keys;
    use crate::worker::{Key, MaybeKey, PerChannel, Strings};
    keys! {
        list pub OWN;
        pub const FAMILY: Key<str> = ("family", "ps5000a", "driver family: ps5000a, ps3000a or ps2000a");
        pub const LIBRARY: MaybeKey<str> = ("library", absent: "/opt/picoscope/lib", "Pico's library file or its directory (libps5000a.so / libps3000a.so / libps2000a.so)");
        pub const SERIAL: MaybeKey<str> = ("serial", absent: "the first unit", "open the unit with this serial (e.g. JO123/0045)");
        pub const RESOLUTION_BITS: Key<u32> = ("resolution_bits", 8, "vertical resolution (ps5000a: 8, 12, 14, 15, 16; ps3000a, ps2000a: 8)");
        pub const CHANNELS: Key<Strings> = ("channels", ["A", "B", "C", "D"], "enabled channels, letters A..D");
        pub const RANGES: Key<PerChannel> = ("ranges", 0.5, "± full scale per enabled channel (V): one number for all, or a list; 0.01 … 50");
        pub const COUPLING: Key<str> = ("coupling", "dc", "input coupling: dc or ac");
        pub const ANALOG_OFFSET: Key<f64> = ("analog_offset", 0.0, "volts added to every input before digitising (V)");
        pub const SAMPLE_INTERVAL: Key<f64> = ("sample_interval", 8.0e-9, "requested time between samples (s); the nearest timebase is used");
        pub const TIMEBASE: MaybeKey<u32> = ("timebase", absent: "from sample_interval", "a timebase index as Pico's programmer's guide numbers them, used as it is instead of the nearest to sample_interval (mimoCoRB2 takes this)");
        pub const MODE: Key<str> = ("mode", "rapid_block", "rapid_block (captures_per_run captures per RunBlock, fetched with GetValuesBulk), block (one capture per RunBlock, fetched with GetValues) or streaming");
        pub const PRE_TRIGGER: Key<u32> = ("pre_trigger", 100, "block, rapid block: samples before the trigger");
        pub const POST_TRIGGER: Key<u32> = ("post_trigger", 400, "block, rapid block: samples from the trigger on");
        pub const CAPTURES_PER_RUN: Key<u32> = ("captures_per_run", 100, "rapid block: captures (memory segments) per RunBlock");
        pub const TRIGGER_CHANNEL: Key<str> = ("trigger_channel", "A", "block, rapid block: trigger channel A..D (enabled), or none for free-running captures");
        pub const TRIGGER_LEVEL: Key<f64> = ("trigger_level", -0.05, "trigger level at the input (V)");
        pub const TRIGGER_DIRECTION: Key<str> = ("trigger_direction", "falling", "rising, falling, above, below or rising_or_falling");
        pub const TRIGGER_DELAY: Key<u32> = ("trigger_delay", 0, "samples between the trigger and the reference point");
        pub const AUTO_TRIGGER_MS: Key<usize> = ("auto_trigger_ms", 0, "fire anyway after this many ms without a trigger; 0 = wait for ever");
        pub const SAMPLES_PER_EVENT: Key<u32> = ("samples_per_event", 1000, "streaming: samples per event");
        pub const OVERVIEW_SAMPLES: Key<u32> = ("overview_samples", 100000, "streaming: the driver's overview buffer per channel (samples)");
        pub const FORMAT: Key<str> = ("format", "volts", "counts (int16 ADC counts as the scope gives them, half the bytes of volts; volts = counts × volts_per_count + offset_volts, stored with the data), volts (float32), millivolts (float32, ADC × range / max × 1000, the analog offset not subtracted: what mimoCoRB2's importer gives) or raw (the older name of counts)");
        pub const DIGITAL_PORTS: Key<Strings> = ("digital_ports", [], "MSO models: digital ports to record, D0_7 (Pico's PORT0: inputs D0..D7) and/or D8_15 (PORT1: D8..D15); each is a uint8 field of that name after the channels, bit k = input Dk (D8+k)");
        pub const LOGIC_LEVEL: Key<PerChannel> = ("logic_level", 1.5, "threshold of the digital inputs (V), -5 … 5: one number for every port in digital_ports, or a list in their order");
        pub const MODEL: MaybeKey<str> = ("model", absent: "any unit of the family", "the model the setup is written for, as the scope names itself (e.g. 3406D MSO): check refuses channels, ranges and digital ports it lacks, open refuses another model; with simulate the fake scope presents this model");
    }
    keys! {
        list pub SIM;
        pub const SIM_RATE: Key<f64> = ("sim_rate", 100.0, "simulator only: triggered captures per second (0 = as fast as possible)");
    }
}

/// `device.picoscope`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.picoscope",
    summary: "PicoScope (ps2000a, ps3000a, ps5000a) through Pico's driver library, loaded at run time: \
              block (one triggered capture per RunBlock, GetValues), rapid block (many \
              captures per RunBlock, GetValuesBulk; one event per capture either way) or \
              streaming (continuous samples cut into events). Sink fields chA..chD for the enabled channels, int16 ADC counts \
              (format counts, with each channel's volts per count and offset written for the \
              exporters) or float32 volts (format volts), then uint8 fields D0_7 / D8_15 for \
              the digital ports of MSO models (digital_ports); data_length = pre_trigger + \
              post_trigger (block, rapid block) or samples_per_event (streaming).",
    keys: [pico_keys::OWN],
    simulator: [pico_keys::SIM],
    then: scope,
);

/// Where the fake PicoScope library was looked for, newest existing first.
pub fn fake_picosdk_candidates() -> Vec<PathBuf> {
    let name = "libfake_picosdk.so";
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("DAQ_FAKE_PICOSDK") {
        c.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            c.push(dir.join(name));
            c.push(dir.join("deps").join(name));
            if let Some(up) = dir.parent() {
                c.push(up.join(name));
            }
        }
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    for profile in ["debug", "release"] {
        c.push(target.join(profile).join(name));
        c.push(target.join(profile).join("deps").join(name));
    }
    c
}

/// Why the fake PicoScope library could not serve: each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FakePicoError {
    /// `DAQ_FAKE_PICOSDK` names no file.
    #[error(
        "DAQ_FAKE_PICOSDK={} is not a file; build the fake PicoScope library with \
         `cargo build -p fake-picosdk` (it lands in target/debug/libfake_picosdk.so)",
        .0.display()
    )]
    NotAFile(PathBuf),
    /// Not built: none of the places it lands in holds it.
    #[error(
        "the fake PicoScope library libfake_picosdk.so is not built (looked at {}); \
         build it with `cargo build -p fake-picosdk` in the daq-engine source tree, or \
         point DAQ_FAKE_PICOSDK at it",
        looked_at.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotBuilt {
        /// Where it was looked for.
        looked_at: Vec<PathBuf>,
    },
    /// Making the private copy failed.
    #[error("{what}: {source}")]
    Copy {
        /// The directory made or the copy written.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The copy would not load, or lacks a control.
    #[error("{what}{source}")]
    Load {
        /// `loading PATH: `, or nothing for a missing control.
        what: String,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// Already unloaded (it is only while dropping).
    #[error("fake library not loaded")]
    NotLoaded,
    /// The model name has a NUL byte.
    #[error(transparent)]
    Nul(#[from] std::ffi::NulError),
    /// The fake does not know the model.
    #[error("the fake PicoScope refused model '{0}'")]
    Refused(String),
}

/// The fake PicoScope library (`drivers/fake-picosdk`), or what to do to get it.
pub fn fake_picosdk() -> Result<PathBuf, FakePicoError> {
    let candidates = fake_picosdk_candidates();
    if let Some(p) = std::env::var_os("DAQ_FAKE_PICOSDK") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(FakePicoError::NotAFile(p))
        };
    }
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .ok_or(FakePicoError::NotBuilt {
            looked_at: candidates,
        })
}

/// A private copy of the fake library, named as Pico's library of the family, loaded so
/// its simulator controls can be set; the copy's directory is removed on drop.
pub struct FakePico {
    lib: Option<libloading::Library>,
    dir: PathBuf,
    /// The copy, to give the driver as its library path.
    pub path: PathBuf,
}

impl FakePico {
    /// Copies the fake library to a private directory as `soname` and loads it.
    pub fn load(soname: &str) -> Result<FakePico, FakePicoError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let src = fake_picosdk()?;
        let dir = std::env::temp_dir().join(format!(
            "daq-fake-picosdk-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| FakePicoError::Copy {
            what: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(soname);
        std::fs::copy(&src, &path).map_err(|source| FakePicoError::Copy {
            what: format!("copying {} to {}", src.display(), path.display()),
            source,
        })?;
        // SAFETY: the fake library is daq-engine's own (drivers/fake-picosdk); its
        // initialisers are Rust's std only and it has no load-time side effects.
        let lib =
            unsafe { libloading::Library::new(&path) }.map_err(|source| FakePicoError::Load {
                what: format!("loading {}: ", path.display()),
                source,
            })?;
        Ok(FakePico {
            lib: Some(lib),
            dir,
            path,
        })
    }

    /// Calls one of the fake's argument-less controls (`fakepico_unplug`, `fakepico_replug`).
    fn call(&self, symbol: &[u8]) -> Result<(), FakePicoError> {
        let lib = self.lib.as_ref().ok_or(FakePicoError::NotLoaded)?;
        // SAFETY: the fake exports fakepico_unplug and fakepico_replug as
        // `void f(void)`; only those two names are passed here.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn()> =
                lib.get(symbol).map_err(missing_control)?;
            f();
        }
        Ok(())
    }

    /// The model the fake's units report from now on (`3406D MSO`: with digital ports).
    pub fn set_variant(&self, model: &str) -> Result<(), FakePicoError> {
        let lib = self.lib.as_ref().ok_or(FakePicoError::NotLoaded)?;
        let name = std::ffi::CString::new(model)?;
        // SAFETY: fake-picosdk exports `int32_t fakepico_set_variant(const char *)`; `name`
        // is NUL-terminated and outlives the call (the fake copies it).
        let r = unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*const std::ffi::c_char) -> i32> =
                lib.get(b"fakepico_set_variant").map_err(missing_control)?;
            f(name.as_ptr())
        };
        if r == 0 {
            Ok(())
        } else {
            Err(FakePicoError::Refused(model.to_string()))
        }
    }

    /// Sets the simulated trigger rate (captures per second, 0 = at once) and the seed.
    pub fn set(&self, captures_per_second: f64, seed: u64) -> Result<(), FakePicoError> {
        let lib = self.lib.as_ref().ok_or(FakePicoError::NotLoaded)?;
        // SAFETY: both symbols are exported by fake-picosdk with exactly these C signatures:
        // fakepico_set_capture_rate(double) and fakepico_seed(uint64_t).
        unsafe {
            let rate: libloading::Symbol<unsafe extern "C" fn(f64)> = lib
                .get(b"fakepico_set_capture_rate")
                .map_err(missing_control)?;
            rate(captures_per_second);
            let seed_fn: libloading::Symbol<unsafe extern "C" fn(u64)> =
                lib.get(b"fakepico_seed").map_err(missing_control)?;
            seed_fn(seed);
        }
        Ok(())
    }
}

/// A control the fake library does not export (an older build of it).
fn missing_control(source: libloading::Error) -> FakePicoError {
    FakePicoError::Load {
        what: String::new(),
        source,
    }
}

impl Drop for FakePico {
    fn drop(&mut self) {
        drop(self.lib.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The PicoScope configuration `cfg` describes (without library path when simulating).
pub fn picoscope_config(cfg: &Config) -> Result<PicoScopeConfig, WorkerError> {
    let fam_name = cfg.get(pico_keys::FAMILY)?;
    let family = picoscope::family_by_name(fam_name).ok_or_else(|| {
        bad(
            cfg,
            pico_keys::FAMILY.name,
            format!(
                "'{fam_name}' is not a PicoScope family this driver supports: {}",
                picoscope::family::FAMILIES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let letters = cfg.get(pico_keys::CHANNELS)?;
    let mut enabled = Vec::new();
    for l in &letters {
        let i = match l.to_ascii_uppercase().trim_start_matches("CH") {
            "A" => 0u8,
            "B" => 1,
            "C" => 2,
            "D" => 3,
            _ => {
                return Err(bad(
                    cfg,
                    pico_keys::CHANNELS.name,
                    format!("'{l}' is not a channel A..D"),
                ))
            }
        };
        if enabled.contains(&i) {
            return Err(bad(
                cfg,
                pico_keys::CHANNELS.name,
                format!("channel {l} is named twice"),
            ));
        }
        enabled.push(i);
    }
    enabled.sort_unstable();
    let ranges = per_channel(cfg, pico_keys::RANGES, enabled.len())?;
    let coupling = pick(
        cfg,
        pico_keys::COUPLING,
        &[
            ("dc", Coupling::Dc),
            ("DC", Coupling::Dc),
            ("ac", Coupling::Ac),
            ("AC", Coupling::Ac),
        ],
    )?;
    let offset = cfg.get(pico_keys::ANALOG_OFFSET)? as f32;
    let mut channels = [ChannelConfig::OFF; 4];
    for (&c, &r) in enabled.iter().zip(&ranges) {
        let range = VoltageRange::from_volts(r).ok_or_else(|| {
            bad(
                cfg,
                pico_keys::RANGES.name,
                format!("±{r} V is not a PicoScope range: 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50"),
            )
        })?;
        channels[c as usize] = ChannelConfig {
            enabled: true,
            coupling,
            range,
            analog_offset_v: offset,
        };
    }
    let bits = cfg.get(pico_keys::RESOLUTION_BITS)?;
    let resolution = Resolution::from_bits(bits).ok_or_else(|| {
        bad(
            cfg,
            pico_keys::RESOLUTION_BITS.name,
            "must be 8, 12, 14, 15 or 16",
        )
    })?;
    let interval = cfg.get(pico_keys::SAMPLE_INTERVAL)?;
    if !(interval.is_finite() && interval > 0.0) {
        return Err(bad(
            cfg,
            pico_keys::SAMPLE_INTERVAL.name,
            "must be a time > 0 (s)",
        ));
    }
    let mode = cfg.get(pico_keys::MODE)?;
    let acquisition = match mode {
        "rapid_block" | "block" => {
            let tc = cfg.get(pico_keys::TRIGGER_CHANNEL)?;
            let trigger = if tc.eq_ignore_ascii_case("none") {
                None
            } else {
                let channel = match tc.to_ascii_uppercase().trim_start_matches("CH") {
                    "A" => 0u8,
                    "B" => 1,
                    "C" => 2,
                    "D" => 3,
                    _ => {
                        let key = pico_keys::TRIGGER_CHANNEL.name;
                        return Err(not_one_of(cfg, key, tc, "A..D or none"));
                    }
                };
                let direction = pick(
                    cfg,
                    pico_keys::TRIGGER_DIRECTION,
                    &[
                        ("rising", ThresholdDirection::Rising),
                        ("falling", ThresholdDirection::Falling),
                        ("above", ThresholdDirection::Above),
                        ("below", ThresholdDirection::Below),
                        ("rising_or_falling", ThresholdDirection::RisingOrFalling),
                    ],
                )?;
                let auto = cfg.get(pico_keys::AUTO_TRIGGER_MS)?;
                Some(TriggerConfig {
                    channel,
                    level_v: cfg.get(pico_keys::TRIGGER_LEVEL)?,
                    direction,
                    delay_samples: cfg.get(pico_keys::TRIGGER_DELAY)?,
                    auto_trigger_ms: i16::try_from(auto).map_err(|_| {
                        bad(cfg, pico_keys::AUTO_TRIGGER_MS.name, "must be 0 … 32767")
                    })?,
                })
            };
            let (pre_trigger, post_trigger) = (
                cfg.get(pico_keys::PRE_TRIGGER)?,
                cfg.get(pico_keys::POST_TRIGGER)?,
            );
            if mode == "block" {
                Acquisition::Block {
                    pre_trigger,
                    post_trigger,
                    trigger,
                }
            } else {
                Acquisition::RapidBlock {
                    pre_trigger,
                    post_trigger,
                    captures_per_run: cfg.get(pico_keys::CAPTURES_PER_RUN)?,
                    trigger,
                }
            }
        }
        "streaming" => Acquisition::Streaming {
            samples_per_event: cfg.get(pico_keys::SAMPLES_PER_EVENT)?,
            overview_samples: cfg.get(pico_keys::OVERVIEW_SAMPLES)?,
        },
        other => {
            let choices = "rapid_block, block or streaming";
            return Err(not_one_of(cfg, pico_keys::MODE.name, other, choices));
        }
    };
    let format = pick(
        cfg,
        pico_keys::FORMAT,
        &[
            ("volts", picoscope::SampleFormat::Volts),
            ("millivolts", picoscope::SampleFormat::Millivolts),
            ("counts", picoscope::SampleFormat::Raw),
            ("raw", picoscope::SampleFormat::Raw),
        ],
    )?;
    let digital = digital_ports(cfg)?;
    let model = cfg.get(pico_keys::MODEL)?.map(String::from);
    if let Some(m) = model.as_deref() {
        check_model(cfg, family, m, &channels, &digital)?;
    }
    let config = PicoScopeConfig {
        family,
        library: cfg.get(pico_keys::LIBRARY)?.map(PathBuf::from),
        serial: cfg.get(pico_keys::SERIAL)?.map(String::from),
        resolution,
        channels,
        sample_interval_ns: interval * 1e9,
        timebase: cfg.get(pico_keys::TIMEBASE)?,
        acquisition,
        format,
        digital,
        model,
    };
    config
        .validate()
        .map_err(|p| WorkerError::failed(format!("worker '{}': PicoScope", cfg.worker), p))?;
    Ok(config)
}

/// `digital_ports` and `logic_level`: the logic level in volts of PORT0 and PORT1, None
/// for a port not asked for.
fn digital_ports(cfg: &Config) -> Result<[Option<f64>; 2], WorkerError> {
    let names = cfg.get(pico_keys::DIGITAL_PORTS)?;
    let mut ports = Vec::new();
    for n in &names {
        let p = DigitalPort::from_name(n).ok_or_else(|| {
            bad(
                cfg,
                pico_keys::DIGITAL_PORTS.name,
                format!("'{n}' is not a digital port: D0_7 (port0) or D8_15 (port1)"),
            )
        })?;
        if ports.contains(&p) {
            return Err(bad(
                cfg,
                pico_keys::DIGITAL_PORTS.name,
                format!("port {} is named twice", p.field()),
            ));
        }
        ports.push(p);
    }
    let levels = match cfg.get(pico_keys::LOGIC_LEVEL)? {
        PerChannelValue::All(v) => vec![v; ports.len()],
        PerChannelValue::Each(v) if v.len() != ports.len() => {
            return Err(bad(
                cfg,
                pico_keys::LOGIC_LEVEL.name,
                format!(
                    "gives {} values for {} digital port(s) in digital_ports",
                    v.len(),
                    ports.len()
                ),
            ))
        }
        PerChannelValue::Each(v) => v,
    };
    let mut digital = [None, None];
    for (p, v) in ports.into_iter().zip(levels) {
        if DigitalPort::logic_level_counts(v).is_none() {
            return Err(bad(
                cfg,
                pico_keys::LOGIC_LEVEL.name,
                format!(
                    "{v} V is outside the digital inputs' range -{LOGIC_LEVEL_MAX_V} … \
                     {LOGIC_LEVEL_MAX_V} V"
                ),
            ));
        }
        digital[p.index()] = Some(v);
    }
    Ok(digital)
}

/// What the setup's `model` lacks, each at the key that asks for it.
fn check_model(
    cfg: &Config,
    family: &'static picoscope::FamilyTable,
    model: &str,
    channels: &[ChannelConfig; 4],
    digital: &[Option<f64>; 2],
) -> Result<(), WorkerError> {
    let enabled: Vec<u8> = (0u8..4).filter(|&c| channels[c as usize].enabled).collect();
    if !picoscope::family_serves_model(family, model) {
        return Err(bad(
            cfg,
            pico_keys::MODEL.name,
            format!(
                "the {model} is not a {} model; set family to the model's series (2xxx: \
                 ps2000a, 3xxx: ps3000a, 5xxx: ps5000a)",
                family.name
            ),
        ));
    }
    if let Some(n) = picoscope::model_channels(model) {
        if let Some(&c) = enabled.iter().find(|&&c| c >= n) {
            return Err(bad(
                cfg,
                pico_keys::CHANNELS.name,
                format!(
                    "channel {} enabled, but the {model} has {n} channels",
                    picoscope::config::channel_letter(c)
                ),
            ));
        }
    }
    // HARDWARE.md P for the 3000A (A/B from ±50 mV, D from ±20 mV); the 2000A and 5000A
    // tables say the family's ranges for every model (see `FamilyTable::model_ranges`).
    let offered = (family.model_ranges)(model);
    if let Some(&c) = enabled
        .iter()
        .find(|&&c| !offered.contains(&channels[c as usize].range.code()))
    {
        let volts = |code: u8| VoltageRange::from_code(code).map_or(0.0, VoltageRange::volts);
        return Err(bad(
            cfg,
            pico_keys::RANGES.name,
            format!(
                "channel {}: ±{} V is not a range of the {model}, which offers ±{} … ±{} V",
                picoscope::config::channel_letter(c),
                channels[c as usize].range.volts(),
                volts(*offered.start()),
                volts(*offered.end())
            ),
        ));
    }
    if let Some(p) = DigitalPort::ALL
        .into_iter()
        .find(|p| digital[p.index()].is_some())
    {
        if !picoscope::model_has_digital_ports(model) {
            return Err(bad(
                cfg,
                pico_keys::DIGITAL_PORTS.name,
                format!(
                    "the {model} has no digital inputs ({} asked for); only MSO models have \
                     them: remove digital_ports or set model to an MSO",
                    p.field()
                ),
            ));
        }
    }
    Ok(())
}

/// The sink's digital fields: one `uint8` per enabled port, named as the port, and none
/// for a port not enabled. Each problem is reported at `digital_ports`.
fn check_digital_sink(ctx: &BuildContext, c: &PicoScopeConfig) -> Result<(), WorkerError> {
    let Some(sink) = ctx.sinks.first() else {
        return Ok(());
    };
    let key = pico_keys::DIGITAL_PORTS.name;
    for p in DigitalPort::ALL {
        let field = sink.dtype.fields().iter().find(|f| f.name == p.field());
        let on = c.digital[p.index()].is_some();
        match field {
            None if on => {
                return Err(bad(
                    &ctx.config,
                    key,
                    format!(
                        "port {} is recorded as field '{}', which sink buffer '{}' does not \
                         declare: add `{}: uint8` to its data_dtype",
                        p.pico_name(),
                        p.field(),
                        sink.name,
                        p.field()
                    ),
                ))
            }
            Some(f) if on && f.ty.scalar() != Some(crate::dtype::Scalar::U8) => {
                return Err(bad(
                    &ctx.config,
                    key,
                    format!(
                        "field '{}' of sink buffer '{}' is {}, but a digital port is one byte \
                         per sample (its eight inputs): declare it uint8",
                        p.field(),
                        sink.name,
                        f.ty
                    ),
                ))
            }
            Some(_) if !on => {
                return Err(bad(
                    &ctx.config,
                    key,
                    format!(
                        "sink buffer '{}' declares field '{}', but port {} is not recorded: \
                         add {} to digital_ports (MSO models) or remove the field",
                        sink.name,
                        p.field(),
                        p.pico_name(),
                        p.field()
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the config of `device.picoscope` as [`build`] does, opening nothing,
/// and the sink against the records it describes.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    let c = picoscope_config(&ctx.config)?;
    check_digital_sink(ctx, &c)?;
    check_scope(ctx, SPEC.name, &c.layout(), pico_keys::FORMAT)
}

/// Builds `device.picoscope`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let mut config = picoscope_config(cfg)?;
    let simulate = cfg.get(SIMULATE)?;
    let unplug = unplug_window(cfg)?;
    let mut simulated = None;
    if simulate {
        let rate = cfg.get(pico_keys::SIM_RATE)?;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(bad(
                cfg,
                pico_keys::SIM_RATE.name,
                "must be ≥ 0 (captures per second)",
            ));
        }
        let fake = FakePico::load(config.family.soname)
            .map_err(|e| WorkerError::failed("device.picoscope --simulate", e))?;
        fake.set(rate, cfg.get(SEED)? as u64)
            .map_err(|e| WorkerError::failed("device.picoscope --simulate", e))?;
        if let Some(model) = config.model.as_deref() {
            fake.set_variant(model)
                .map_err(|e| WorkerError::failed("device.picoscope --simulate", e))?;
        }
        config.library = Some(fake.path.clone());
        simulated = Some(keep_simulated(fake, unplug));
    }
    let scope =
        PicoScope::open(config).map_err(|e| open_error(daq_drivers::DriverError::from(e)))?;
    // The scope is dropped (closing the unit) before `simulated` (unloading the fake library).
    scope_importer(SPEC.name, ctx, Box::new(scope), simulated)
}

/// The PicoScope family: `device.picoscope`, and `device.mimo_picoscope` for mimoCoRB2's
/// PicoScope keys.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::picoscope::FAMILY,
    functions: &[
        super::importer!(SPEC, build, check),
        super::importer!(
            super::mimo_picoscope::SPEC,
            super::mimo_picoscope::build,
            super::mimo_picoscope::check
        ),
    ],
    suggest: |_| ("device.picoscope", "setups/picoscope_muon.yaml"),
    bench,
};

/// `bench drivers`: the fake library, 4 × 500 samples volts (ps2000a: its 2 channels),
/// captures at once, one row per Pico family.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    use daq_drivers::picoscope::{self, ChannelConfig, PicoScopeConfig};
    let n = super::tools::wave_events(events);
    daq_drivers::picoscope::family::FAMILIES
        .iter()
        .map(|family| {
            let fake = FakePico::load(family.soname).map_err(|e| e.to_string())?;
            fake.set(0.0, 1).map_err(|e| e.to_string())?;
            let mut cfg = PicoScopeConfig::muon_telescope(family);
            let channels = if family.name == "ps2000a" { 2 } else { 4 };
            for ch in cfg.channels.iter_mut().skip(channels) {
                *ch = ChannelConfig::OFF;
            }
            cfg.library = Some(fake.path.clone());
            let size = channels * 500 * 4;
            let f = picoscope::bench_fake(&cfg, n).map_err(|e| e.to_string())?;
            Ok(super::tools::DriverRate {
                device: format!(
                    "picoscope {} fake, rapid block {channels}x500 f4 (copy path alone: {:.0} ev/s, {:.0} MB/s)",
                    family.name, f.copy_events_per_s, f.copy_mb_per_s
                ),
                event_bytes: size,
                events: f.events,
                events_per_s: f.events_per_s,
                mb_per_s: f.mb_per_s,
                ring_events_per_s: None,
            })
        })
        .collect()
}
