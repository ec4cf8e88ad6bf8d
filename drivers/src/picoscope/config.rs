//! What a setup asks of a PicoScope: family, library path, channels, resolution, sample
//! interval, acquisition mode, trigger and sample format. Plain data with validation; no I/O.

use std::path::PathBuf;

use super::family::{
    family_serves_model, model_channels, model_has_digital_ports, FamilyTable, Resolution, PS5000A,
};

/// An input range, ± full scale (HARDWARE.md A.6: codes 0 = ±10 mV .. 11 = ±50 V).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoltageRange {
    /// ±10 mV
    Mv10,
    /// ±20 mV
    Mv20,
    /// ±50 mV
    Mv50,
    /// ±100 mV
    Mv100,
    /// ±200 mV
    Mv200,
    /// ±500 mV
    Mv500,
    /// ±1 V
    V1,
    /// ±2 V
    V2,
    /// ±5 V
    V5,
    /// ±10 V
    V10,
    /// ±20 V
    V20,
    /// ±50 V
    V50,
}

const RANGES: [(VoltageRange, f64); 12] = [
    (VoltageRange::Mv10, 0.01),
    (VoltageRange::Mv20, 0.02),
    (VoltageRange::Mv50, 0.05),
    (VoltageRange::Mv100, 0.1),
    (VoltageRange::Mv200, 0.2),
    (VoltageRange::Mv500, 0.5),
    (VoltageRange::V1, 1.0),
    (VoltageRange::V2, 2.0),
    (VoltageRange::V5, 5.0),
    (VoltageRange::V10, 10.0),
    (VoltageRange::V20, 20.0),
    (VoltageRange::V50, 50.0),
];

impl VoltageRange {
    /// The enum value of Pico's C API.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Full scale in volts.
    pub fn volts(self) -> f64 {
        RANGES[self as usize].1
    }

    /// The range of a C API enum value (0 = ±10 mV .. 11 = ±50 V).
    pub fn from_code(code: u8) -> Option<VoltageRange> {
        RANGES.get(code as usize).map(|r| r.0)
    }

    /// The range whose full scale is `volts` (within 0.1 %).
    pub fn from_volts(volts: f64) -> Option<VoltageRange> {
        RANGES
            .iter()
            .find(|(_, v)| (v - volts).abs() <= v * 1e-3)
            .map(|r| r.0)
    }
}

/// Input coupling (Pico: AC = 0, DC = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coupling {
    /// AC coupled.
    Ac,
    /// DC coupled.
    Dc,
}

impl Coupling {
    /// The enum value of Pico's C API.
    pub fn code(self) -> i32 {
        match self {
            Coupling::Ac => 0,
            Coupling::Dc => 1,
        }
    }
}

/// One input channel's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelConfig {
    /// Recorded (a field `chA`.. in the event) or off.
    pub enabled: bool,
    /// AC or DC.
    pub coupling: Coupling,
    /// ± full scale.
    pub range: VoltageRange,
    /// Volts added to the input before digitising (Pico's analogue offset).
    pub analog_offset_v: f32,
}

impl ChannelConfig {
    /// An enabled DC channel on `range` without offset.
    pub fn dc(range: VoltageRange) -> ChannelConfig {
        ChannelConfig {
            enabled: true,
            coupling: Coupling::Dc,
            range,
            analog_offset_v: 0.0,
        }
    }

    /// A disabled channel.
    pub const OFF: ChannelConfig = ChannelConfig {
        enabled: false,
        coupling: Coupling::Dc,
        range: VoltageRange::V2,
        analog_offset_v: 0.0,
    };
}

/// Trigger direction (Pico's `THRESHOLD_DIRECTION` values 0..4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThresholdDirection {
    /// Level-sensitive: above the threshold.
    Above,
    /// Level-sensitive: below the threshold.
    Below,
    /// Rising edge through the threshold.
    Rising,
    /// Falling edge through the threshold.
    Falling,
    /// Either edge.
    RisingOrFalling,
}

impl ThresholdDirection {
    /// The enum value of Pico's C API.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A simple edge trigger on one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TriggerConfig {
    /// Channel index 0 = A .. 3 = D; must be enabled.
    pub channel: u8,
    /// Level in volts at the input.
    pub level_v: f64,
    /// Edge or level sense.
    pub direction: ThresholdDirection,
    /// Samples between the trigger and the reference point (Pico's `delay`).
    pub delay_samples: u32,
    /// Fire anyway after this many ms without a trigger (0 = wait for ever).
    pub auto_trigger_ms: i16,
}

/// How samples become events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Acquisition {
    /// Rapid block: `captures_per_run` triggered captures per `RunBlock`, each
    /// `pre_trigger + post_trigger` samples, fetched with `GetValuesBulk`. One event per capture.
    RapidBlock {
        /// Samples before the trigger point.
        pre_trigger: u32,
        /// Samples from the trigger point on.
        post_trigger: u32,
        /// Memory segments (captures) per run.
        captures_per_run: u32,
        /// Trigger, or free-running captures when None.
        trigger: Option<TriggerConfig>,
    },
    /// Block: one triggered capture per `RunBlock`, `pre_trigger + post_trigger` samples,
    /// fetched with `GetValues` from segment 0 (Pico's block mode, no memory segments). One
    /// event per capture.
    Block {
        /// Samples before the trigger point.
        pre_trigger: u32,
        /// Samples from the trigger point on.
        post_trigger: u32,
        /// Trigger, or free-running captures when None.
        trigger: Option<TriggerConfig>,
    },
    /// Streaming: continuous samples cut into events of `samples_per_event`, gapless.
    Streaming {
        /// Samples per event.
        samples_per_event: u32,
        /// The driver's overview buffer in samples per channel (Pico's
        /// `overviewBufferSize`); at least one event.
        overview_samples: u32,
    },
}

/// What block and rapid block share: one `RunBlock` of `captures` triggered captures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockShape {
    /// Samples before the trigger point.
    pub pre_trigger: u32,
    /// Samples from the trigger point on.
    pub post_trigger: u32,
    /// Captures per `RunBlock`: 1 in block mode.
    pub captures: u32,
    /// Trigger, or free-running captures when None.
    pub trigger: Option<TriggerConfig>,
    /// Block mode: fetched with `GetValues` (segment 0), not `GetValuesBulk`.
    pub single: bool,
}

impl Acquisition {
    /// The shape of a block or rapid-block acquisition; None for streaming.
    pub fn block_shape(&self) -> Option<BlockShape> {
        match *self {
            Acquisition::RapidBlock {
                pre_trigger,
                post_trigger,
                captures_per_run,
                trigger,
            } => Some(BlockShape {
                pre_trigger,
                post_trigger,
                captures: captures_per_run,
                trigger,
                single: false,
            }),
            Acquisition::Block {
                pre_trigger,
                post_trigger,
                trigger,
            } => Some(BlockShape {
                pre_trigger,
                post_trigger,
                captures: 1,
                trigger,
                single: true,
            }),
            Acquisition::Streaming { .. } => None,
        }
    }
}

/// An MSO digital port: eight logic inputs, one byte per sample in the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigitalPort {
    /// `PORT0`, inputs D0..D7: field `D0_7`.
    Port0,
    /// `PORT1`, inputs D8..D15: field `D8_15`.
    Port1,
}

/// Most a logic threshold can be, ± volts: Pico's headers define `PS2000A_MAX_LOGIC_LEVEL` /
/// `PS3000A_MAX_LOGIC_LEVEL` = 32767 (and MIN −32767) for ±5 V. ps5000aApi.h defines no
/// such constant; the 5000D MSO is taken to use the same scale **\[unverified\]**, and the
/// library refuses a level it does not accept.
pub const LOGIC_LEVEL_MAX_V: f64 = 5.0;

impl DigitalPort {
    /// Both ports, PORT0 first.
    pub const ALL: [DigitalPort; 2] = [DigitalPort::Port0, DigitalPort::Port1];

    /// The `channelOrPort` of `SetDigitalPort` / `SetDataBuffer`: `0x80`, `0x81`.
    pub fn code(self) -> u8 {
        0x80 + self as u8
    }

    /// 0 for PORT0, 1 for PORT1.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The event field: `D0_7`, `D8_15`.
    pub fn field(self) -> &'static str {
        match self {
            DigitalPort::Port0 => "D0_7",
            DigitalPort::Port1 => "D8_15",
        }
    }

    /// Pico's name: `PORT0`, `PORT1`.
    pub fn pico_name(self) -> &'static str {
        match self {
            DigitalPort::Port0 => "PORT0",
            DigitalPort::Port1 => "PORT1",
        }
    }

    /// The port a setup names: its field (`D0_7`, `D8_15`) or Pico's name (`port0`,
    /// `port1`), any case.
    pub fn from_name(name: &str) -> Option<DigitalPort> {
        DigitalPort::ALL.into_iter().find(|p| {
            name.eq_ignore_ascii_case(p.field()) || name.eq_ignore_ascii_case(p.pico_name())
        })
    }

    /// A threshold in volts as `SetDigitalPort`'s `logicLevel`: `volts / 5 × 32767`, rounded;
    /// None outside ±[`LOGIC_LEVEL_MAX_V`] or not a number.
    pub fn logic_level_counts(volts: f64) -> Option<i16> {
        (volts.is_finite() && volts.abs() <= LOGIC_LEVEL_MAX_V)
            .then(|| (volts / LOGIC_LEVEL_MAX_V * 32767.0).round() as i16)
    }
}

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// Volts as `f4` (ADC × range / max − analogue offset).
    Volts,
    /// Millivolts as `f4`: ADC × range / max × 1000, the analogue offset not subtracted (the
    /// digitised input + offset: what mimoCoRB2's PicoScope importer delivers).
    Millivolts,
    /// ADC counts as `i2`, unchanged; volts = counts × range / max ADC − analogue offset
    /// (the driver reports both per channel: [`crate::Source::channel_scales`]).
    Raw,
}

/// Everything needed to open and configure one PicoScope.
#[derive(Clone, Debug, PartialEq)]
pub struct PicoScopeConfig {
    /// Driver family.
    pub family: &'static FamilyTable,
    /// Pico's library file (or its directory); None = `/opt/picoscope/lib`, then the OS path.
    pub library: Option<PathBuf>,
    /// Open the unit with this serial (batch/serial, `JO123/0045`); None = the first one.
    pub serial: Option<String>,
    /// Vertical resolution (ps5000a); ps2000a has only 8 bits.
    pub resolution: Resolution,
    /// Channels A..D.
    pub channels: [ChannelConfig; 4],
    /// Requested sample interval; the nearest timebase the device accepts is used.
    pub sample_interval_ns: f64,
    /// A timebase index as Pico's programmer's guide numbers them (mimoCoRB2's `timebase`):
    /// used as it is, instead of the nearest to `sample_interval_ns`; the device must
    /// accept it.
    pub timebase: Option<u32>,
    /// Rapid block or streaming.
    pub acquisition: Acquisition,
    /// Volts or raw counts.
    pub format: SampleFormat,
    /// MSO digital ports: the logic threshold in volts of PORT0 (D0..D7) and PORT1
    /// (D8..D15), `None` = off. An enabled port is a `u1` field (`D0_7`, `D8_15`) after the
    /// channels: bit k is input D(k) (D(8+k) for PORT1).
    pub digital: [Option<f64>; 2],
    /// The model the setup is written for (`3406D MSO`): when given, what it lacks
    /// (channels, digital ports) is refused before the device is opened, and open refuses
    /// a unit of another model. None = whatever unit is found.
    pub model: Option<String>,
}

impl PartialEq for FamilyTable {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl PicoScopeConfig {
    /// A 4-channel rapid-block setup as a muon telescope uses it: ±500 mV DC, 8 ns samples,
    /// 100 pre + 400 post, 100 captures per run, falling-edge trigger on A at −50 mV, volts.
    pub fn muon_telescope(family: &'static FamilyTable) -> PicoScopeConfig {
        PicoScopeConfig {
            family,
            library: None,
            serial: None,
            resolution: family.resolutions[0],
            channels: [ChannelConfig::dc(VoltageRange::Mv500); 4],
            sample_interval_ns: 8.0,
            timebase: None,
            acquisition: Acquisition::RapidBlock {
                pre_trigger: 100,
                post_trigger: 400,
                captures_per_run: 100,
                trigger: Some(TriggerConfig {
                    channel: 0,
                    level_v: -0.05,
                    direction: ThresholdDirection::Falling,
                    delay_samples: 0,
                    auto_trigger_ms: 0,
                }),
            },
            format: SampleFormat::Volts,
            digital: [None, None],
            model: None,
        }
    }

    /// Samples per event.
    pub fn records(&self) -> usize {
        match self.acquisition {
            Acquisition::Streaming {
                samples_per_event, ..
            } => samples_per_event as usize,
            a => a
                .block_shape()
                .map_or(0, |b| b.pre_trigger as usize + b.post_trigger as usize),
        }
    }

    /// Indices of the enabled channels, A first.
    pub fn enabled_channels(&self) -> Vec<u8> {
        (0u8..4)
            .filter(|&c| self.channels[c as usize].enabled)
            .collect()
    }

    /// The enabled digital ports, PORT0 first.
    pub fn enabled_ports(&self) -> Vec<DigitalPort> {
        DigitalPort::ALL
            .into_iter()
            .filter(|p| self.digital[p.index()].is_some())
            .collect()
    }

    /// The records the scope writes per event: fields `chA`..`chD` of the enabled channels,
    /// `f4` (volts, millivolts) or `i2` (ADC counts), then `D0_7` / `D8_15` (`u1`) of the
    /// enabled digital ports. Known without the device.
    pub fn layout(&self) -> crate::EventLayout {
        let sample = match self.format {
            SampleFormat::Volts | SampleFormat::Millivolts => "f4",
            SampleFormat::Raw => "i2",
        };
        let analogue = self
            .enabled_channels()
            .into_iter()
            .map(|c| (format!("ch{}", channel_letter(c)), sample));
        let digital = self
            .enabled_ports()
            .into_iter()
            .map(|p| (p.field().to_string(), "u1"));
        crate::EventLayout::of(analogue.chain(digital), self.records())
    }

    /// What the configured `model` lacks for this setup (family, channels, ranges, digital
    /// ports),
    /// or Ok without a model.
    pub fn check_model(&self) -> Result<(), String> {
        let Some(model) = self.model.as_deref() else {
            return Ok(());
        };
        if !family_serves_model(self.family, model) {
            return Err(format!(
                "model {model} is not served by {} (its models are named {}xxx)",
                self.family.name,
                self.family
                    .name
                    .as_bytes()
                    .get(2)
                    .map_or('?', |b| *b as char)
            ));
        }
        if let Some(n) = model_channels(model) {
            if let Some(&c) = self.enabled_channels().iter().find(|&&c| c >= n) {
                return Err(format!(
                    "channel {} enabled, but the {model} has {n} channels",
                    channel_letter(c)
                ));
            }
        }
        let offered = (self.family.model_ranges)(model);
        for c in self.enabled_channels() {
            let range = self.channels[c as usize].range;
            if !offered.contains(&range.code()) {
                return Err(format!(
                    "channel {}: range ±{} V is not offered by the {model} (±{} V .. ±{} V)",
                    channel_letter(c),
                    range.volts(),
                    RANGES[*offered.start() as usize].1,
                    RANGES[*offered.end() as usize].1
                ));
            }
        }
        if let Some(p) = self.enabled_ports().first() {
            if !model_has_digital_ports(model) {
                return Err(format!(
                    "digital port {} ({}) asked for, but the {model} has no digital inputs \
                     (only MSO models do)",
                    p.field(),
                    p.pico_name()
                ));
            }
        }
        Ok(())
    }

    /// Checks what can be checked without the device; the message says what would work.
    pub fn validate(&self) -> Result<(), String> {
        let f = self.family;
        let enabled = self.enabled_channels();
        if enabled.is_empty() {
            return Err("no channel enabled: enable at least one of A..D".into());
        }
        if !f.resolutions.contains(&self.resolution) {
            return Err(format!(
                "{} does not offer {}-bit resolution (it has {:?})",
                f.name,
                self.resolution.bits(),
                f.resolutions.iter().map(|r| r.bits()).collect::<Vec<_>>()
            ));
        }
        if enabled.len() > self.resolution.max_channels() {
            return Err(format!(
                "{}-bit resolution allows at most {} channel(s), {} are enabled",
                self.resolution.bits(),
                self.resolution.max_channels(),
                enabled.len()
            ));
        }
        for &c in &enabled {
            let ch = &self.channels[c as usize];
            if !f.ranges.contains(&ch.range.code()) {
                return Err(format!(
                    "channel {}: range ±{} V is not offered by {} (±{} V .. ±{} V)",
                    channel_letter(c),
                    ch.range.volts(),
                    f.name,
                    RANGES[*f.ranges.start() as usize].1,
                    RANGES[*f.ranges.end() as usize].1
                ));
            }
            if !ch.analog_offset_v.is_finite() {
                return Err(format!(
                    "channel {}: analogue offset is not a number",
                    channel_letter(c)
                ));
            }
        }
        for p in self.enabled_ports() {
            let v = self.digital[p.index()].unwrap_or(0.0);
            if DigitalPort::logic_level_counts(v).is_none() {
                return Err(format!(
                    "digital port {}: logic level {v} V is outside ±{LOGIC_LEVEL_MAX_V} V",
                    p.field()
                ));
            }
        }
        self.check_model()?;
        if !(self.sample_interval_ns.is_finite() && self.sample_interval_ns > 0.0) {
            return Err(format!(
                "sample interval {} ns: must be a positive number",
                self.sample_interval_ns
            ));
        }
        if let Some(BlockShape {
            pre_trigger,
            post_trigger,
            captures: captures_per_run,
            trigger,
            ..
        }) = self.acquisition.block_shape()
        {
            let total = u64::from(pre_trigger) + u64::from(post_trigger);
            if total == 0 || total > i32::MAX as u64 {
                return Err(format!(
                    "pre + post trigger samples = {total}: must be 1 .. 2^31-1"
                ));
            }
            if captures_per_run == 0 {
                return Err("captures per run must be at least 1".into());
            }
            if let Some(t) = trigger {
                if t.channel > 3 || !self.channels[t.channel as usize].enabled {
                    return Err(format!(
                        "trigger channel {} is not enabled",
                        channel_letter(t.channel.min(3))
                    ));
                }
                let r = self.channels[t.channel as usize].range.volts();
                let off = f64::from(self.channels[t.channel as usize].analog_offset_v);
                if !t.level_v.is_finite() || (t.level_v + off).abs() > r {
                    return Err(format!(
                        "trigger level {} V is outside channel {}'s range ±{} V (offset {} V)",
                        t.level_v,
                        channel_letter(t.channel),
                        r,
                        off
                    ));
                }
            }
        }
        if let Acquisition::Streaming {
            samples_per_event,
            overview_samples,
        } = self.acquisition
        {
            if samples_per_event == 0 {
                return Err("samples per event must be at least 1".into());
            }
            if overview_samples < samples_per_event || overview_samples > i32::MAX as u32 {
                return Err(format!(
                    "overview buffer of {overview_samples} samples must hold at least one event ({samples_per_event})"
                ));
            }
        }
        Ok(())
    }
}

/// `A`..`D` for 0..3.
pub fn channel_letter(c: u8) -> char {
    (b'A' + c.min(25)) as char
}

impl Default for PicoScopeConfig {
    fn default() -> Self {
        PicoScopeConfig::muon_telescope(&PS5000A)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picoscope::family::PS2000A;

    #[test]
    fn ranges_match_the_hardware_table() {
        assert_eq!(VoltageRange::Mv10.code(), 0);
        assert_eq!(VoltageRange::V1.code(), 6);
        assert_eq!(VoltageRange::V50.code(), 11);
        assert_eq!(VoltageRange::from_volts(0.2), Some(VoltageRange::Mv200));
        assert_eq!(VoltageRange::from_volts(0.3), None);
        for (r, v) in RANGES {
            assert_eq!(VoltageRange::from_volts(v), Some(r));
            assert_eq!(VoltageRange::from_code(r.code()), Some(r));
        }
        assert_eq!(VoltageRange::from_code(12), None);
    }

    #[test]
    fn validation_says_what_is_wrong() {
        let mut c = PicoScopeConfig::muon_telescope(&PS5000A);
        assert_eq!(c.validate(), Ok(()));
        c.resolution = Resolution::Bits15;
        assert!(c.validate().unwrap_err().contains("at most 2 channel"));
        c = PicoScopeConfig::muon_telescope(&PS2000A);
        c.channels[0].range = VoltageRange::Mv10;
        assert!(c.validate().unwrap_err().contains("not offered by ps2000a"));
        c = PicoScopeConfig::muon_telescope(&PS5000A);
        if let Acquisition::RapidBlock {
            trigger: Some(ref mut t),
            ..
        } = c.acquisition
        {
            t.level_v = -0.7;
        }
        assert!(c
            .validate()
            .unwrap_err()
            .contains("outside channel A's range"));
        c = PicoScopeConfig::muon_telescope(&PS5000A);
        c.channels[0].enabled = false;
        assert!(c
            .validate()
            .unwrap_err()
            .contains("trigger channel A is not enabled"));
        c.sample_interval_ns = f64::NAN;
        assert!(c.validate().is_err());
    }

    #[test]
    fn digital_ports_are_fields_after_the_channels_and_checked_against_the_model() {
        let mut c = PicoScopeConfig::muon_telescope(&crate::picoscope::PS3000A);
        c.format = SampleFormat::Raw;
        c.digital = [Some(1.5), Some(-0.5)];
        let l = c.layout();
        let names: Vec<(&str, &str)> = l.names_and_types().collect();
        assert_eq!(
            names,
            [
                ("chA", "i2"),
                ("chB", "i2"),
                ("chC", "i2"),
                ("chD", "i2"),
                ("D0_7", "u1"),
                ("D8_15", "u1")
            ]
        );
        assert_eq!(l.record_size(), 10);
        assert_eq!(c.validate(), Ok(()));
        c.model = Some("3406D MSO".into());
        assert_eq!(c.validate(), Ok(()));
        c.model = Some("3406D".into());
        let e = c.validate().unwrap_err();
        assert!(e.contains("the 3406D has no digital inputs"), "{e}");
        c.model = Some("3206D MSO".into());
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("channel C enabled, but the 3206D MSO has 2"),
            "{e}"
        );
        c.model = Some("5444D MSO".into());
        assert!(c.validate().unwrap_err().contains("not served by ps3000a"));
        // ±20 mV: a D model has it, an A/B model starts at ±50 mV (HARDWARE.md P).
        c.digital = [None, None];
        c.channels[1].range = VoltageRange::Mv20;
        c.model = Some("3406D".into());
        assert_eq!(c.validate(), Ok(()));
        c.model = Some("3404B".into());
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            "channel B: range ±0.02 V is not offered by the 3404B (±0.05 V .. ±20 V)"
        );
        c.channels[1].range = VoltageRange::Mv500;
        c.digital = [Some(1.5), Some(-0.5)];
        c.model = None;
        c.digital[1] = Some(5.5);
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("D8_15: logic level 5.5 V is outside ±5 V"),
            "{e}"
        );
        assert_eq!(DigitalPort::logic_level_counts(1.5), Some(9830));
        assert_eq!(DigitalPort::logic_level_counts(-5.0), Some(-32767));
        assert_eq!(DigitalPort::logic_level_counts(f64::NAN), None);
        assert_eq!(DigitalPort::from_name("port1"), Some(DigitalPort::Port1));
        assert_eq!(DigitalPort::from_name("d0_7"), Some(DigitalPort::Port0));
        assert_eq!(DigitalPort::from_name("D0"), None);
        assert_eq!(DigitalPort::Port1.code(), 0x81);
    }
}
