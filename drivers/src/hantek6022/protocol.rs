//! The Hantek 6022BE/BL wire protocol, pure: USB ids, vendor control requests and their data
//! bytes, sample-rate and gain codes, and the uint8 → volts conversion (HARDWARE.md A.11).
//!
//! Guarantees: every table here is the one in HARDWARE.md; a code that is not in a table is
//! `None`, never a guess. Must never do I/O.

use std::time::Duration;

pub use crate::usb::{Setup, VENDOR_IN, VENDOR_OUT};
/// CH1 gain; data byte 1, 2, 5 or 10.
pub const REQ_CH1_GAIN: u8 = 0xE0;
/// CH2 gain; data byte 1, 2, 5 or 10.
pub const REQ_CH2_GAIN: u8 = 0xE1;
/// Sample rate; data byte from [`rate_code`].
pub const REQ_SAMPLE_RATE: u8 = 0xE2;
/// Start (1) / stop (0) acquisition; start clears the FX2 FIFO.
pub const REQ_START_STOP: u8 = 0xE3;
/// Number of active channels: 1 = CH1 only, 2 = both.
pub const REQ_CHANNELS: u8 = 0xE4;
/// AC/DC coupling (needs a hardware modification): 0x00, 0x01, 0x10, 0x11.
pub const REQ_COUPLING: u8 = 0xE5;
/// Calibration output frequency (custom firmware).
pub const REQ_CAL_FREQUENCY: u8 = 0xE6;
/// EZ-USB RAM write/read (firmware upload), wValue = address.
pub const REQ_FIRMWARE_RAM: u8 = 0xA0;
/// EEPROM read/write, wValue = offset.
pub const REQ_EEPROM: u8 = 0xA2;
/// The FX2 CPU control register: write 1 to hold the CPU, 0 to release it.
pub const CPUCS_ADDRESS: u16 = 0xE600;
/// Largest payload of one firmware RAM write.
pub const FIRMWARE_CHUNK: usize = 4096;
/// Bulk IN endpoint that streams samples.
pub const SAMPLE_ENDPOINT: u8 = 0x86;
/// USB interface the driver claims.
pub const INTERFACE: u8 = 0;
/// Timeout of each control request (libsigrok uses 100 ms).
pub const CONTROL_TIMEOUT: Duration = Duration::from_millis(100);
/// ADC code of 0 V.
pub const CENTRE_CODE: u8 = 0x80;

/// Which scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// Hantek 6022BE.
    Dso6022Be,
    /// Hantek 6022BL.
    Dso6022Bl,
    /// Voltcraft DSO-2020 (a 6022BE).
    Dso2020,
}

impl Model {
    /// Model name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Model::Dso6022Be => "Hantek 6022BE",
            Model::Dso6022Bl => "Hantek 6022BL",
            Model::Dso2020 => "Voltcraft DSO-2020",
        }
    }
}

/// Which firmware answers the control requests; selects the sample-rate table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FirmwareFlavour {
    /// sigrok's fx2lafw-hantek firmware (and the stock table): 1d50:608e.
    Fx2lafw,
    /// Ho-Ro / OpenHantek custom firmware: 04b5:6022 / 04b5:602a.
    Custom,
}

/// What a USB id says about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// No firmware yet (cold boot): the host must upload it.
    Cold(Model),
    /// Running firmware of this flavour.
    Running(FirmwareFlavour),
}

/// Every (vendor, product) id a Hantek 6022 can show.
pub const USB_IDS: [(u16, u16); 6] = [
    (0x04b4, 0x6022),
    (0x04b4, 0x602a),
    (0x04b4, 0x2020),
    (0x04b5, 0x6022),
    (0x04b5, 0x602a),
    (0x1d50, 0x608e),
];

/// What state the device with this id is in; `None` for a foreign device.
pub fn identify(vendor_id: u16, product_id: u16) -> Option<DeviceState> {
    match (vendor_id, product_id) {
        (0x04b4, 0x6022) => Some(DeviceState::Cold(Model::Dso6022Be)),
        (0x04b4, 0x602a) => Some(DeviceState::Cold(Model::Dso6022Bl)),
        (0x04b4, 0x2020) => Some(DeviceState::Cold(Model::Dso2020)),
        (0x04b5, 0x6022) | (0x04b5, 0x602a) => Some(DeviceState::Running(FirmwareFlavour::Custom)),
        (0x1d50, 0x608e) => Some(DeviceState::Running(FirmwareFlavour::Fx2lafw)),
        _ => None,
    }
}

/// Sample-rate codes of sigrok's fx2lafw firmware (and the stock table): (code, samples/s).
pub const FX2LAFW_RATES: [(u8, u32); 10] = [
    (48, 48_000_000),
    (30, 30_000_000),
    (24, 24_000_000),
    (16, 16_000_000),
    (8, 8_000_000),
    (4, 4_000_000),
    (1, 1_000_000),
    (50, 500_000),
    (20, 200_000),
    (10, 100_000),
];

/// Sample-rate codes of the Ho-Ro custom firmware: (code, samples/s).
pub const CUSTOM_RATES: [(u8, u32); 22] = [
    (48, 48_000_000),
    (30, 30_000_000),
    (24, 24_000_000),
    (16, 16_000_000),
    (15, 15_000_000),
    (12, 12_000_000),
    (10, 10_000_000),
    (8, 8_000_000),
    (6, 6_000_000),
    (5, 5_000_000),
    (4, 4_000_000),
    (3, 3_000_000),
    (2, 2_000_000),
    (1, 1_000_000),
    (150, 500_000),
    (140, 400_000),
    (120, 200_000),
    (110, 100_000),
    (106, 64_000),
    (105, 50_000),
    (104, 40_000),
    (102, 20_000),
];

fn rate_table(flavour: FirmwareFlavour) -> &'static [(u8, u32)] {
    match flavour {
        FirmwareFlavour::Fx2lafw => &FX2LAFW_RATES,
        FirmwareFlavour::Custom => &CUSTOM_RATES,
    }
}

/// The 0xE2 data byte for exactly `samples_per_second`, or `None` if the firmware has no
/// such rate.
pub fn rate_code(flavour: FirmwareFlavour, samples_per_second: u32) -> Option<u8> {
    rate_table(flavour)
        .iter()
        .find(|(_, r)| *r == samples_per_second)
        .map(|(c, _)| *c)
}

/// Samples per second the firmware runs at for 0xE2 data byte `code`.
pub fn rate_from_code(flavour: FirmwareFlavour, code: u8) -> Option<u32> {
    rate_table(flavour)
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, r)| *r)
}

/// The rates a firmware offers, for error messages.
pub fn rates_offered(flavour: FirmwareFlavour) -> String {
    let mut rates: Vec<u32> = rate_table(flavour).iter().map(|(_, r)| *r).collect();
    rates.sort_unstable();
    rates
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Input gain of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gain {
    /// ×1: ±5 V full scale.
    X1,
    /// ×2: ±2.5 V.
    X2,
    /// ×5: ±1 V.
    X5,
    /// ×10: ±0.5 V.
    X10,
}

impl Gain {
    /// All gains, coarsest first.
    pub const ALL: [Gain; 4] = [Gain::X1, Gain::X2, Gain::X5, Gain::X10];

    /// The 0xE0/0xE1 data byte.
    pub fn code(self) -> u8 {
        match self {
            Gain::X1 => 1,
            Gain::X2 => 2,
            Gain::X5 => 5,
            Gain::X10 => 10,
        }
    }

    /// The gain for a data byte.
    pub fn from_code(code: u8) -> Option<Gain> {
        Gain::ALL.into_iter().find(|g| g.code() == code)
    }

    /// Half the input span in volts (the range is −this … +this).
    pub fn full_scale_volts(self) -> f32 {
        match self {
            Gain::X1 => 5.0,
            Gain::X2 => 2.5,
            Gain::X5 => 1.0,
            Gain::X10 => 0.5,
        }
    }

    /// The gain whose full scale is exactly `volts` (5, 2.5, 1, 0.5).
    pub fn from_full_scale(volts: f32) -> Option<Gain> {
        Gain::ALL
            .into_iter()
            .find(|g| g.full_scale_volts() == volts)
    }
}

/// Per-channel correction: the raw code of 0 V and a gain factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Offset of the 0 V code from 0x80, in ADC counts.
    pub offset_counts: f32,
    /// Multiplies the nominal volts per count.
    pub gain: f32,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            offset_counts: 0.0,
            gain: 1.0,
        }
    }
}

impl Calibration {
    /// From the EEPROM calibration bytes of one channel and gain step, where 0x80 means
    /// "no correction": offset = byte − 0x80 counts; gain = 1 + (byte − 0x80) / 500
    /// (the custom-firmware tools' scaling; \[unverified\] against a real EEPROM).
    pub fn from_eeprom_bytes(offset_byte: u8, gain_byte: u8) -> Calibration {
        Calibration {
            offset_counts: offset_byte as f32 - CENTRE_CODE as f32,
            gain: 1.0 + (gain_byte as f32 - CENTRE_CODE as f32) / 500.0,
        }
    }
}

/// Volts of ADC code `raw`: (raw − 0x80 − offset) × gain × full_scale / 128, so 0x80 is
/// 0 V, 0x00 is −full scale and 0xFF is +127/128 of full scale (uncalibrated).
pub fn raw_to_volts(raw: u8, gain: Gain, calibration: Calibration) -> f32 {
    (raw as f32 - CENTRE_CODE as f32 - calibration.offset_counts)
        * calibration.gain
        * gain.full_scale_volts()
        / 128.0
}

/// The 256-entry table of [`raw_to_volts`] the driver uses per sample.
pub fn volts_table(gain: Gain, calibration: Calibration) -> [f32; 256] {
    let mut table = [0.0f32; 256];
    for (raw, v) in table.iter_mut().enumerate() {
        *v = raw_to_volts(raw as u8, gain, calibration);
    }
    table
}

/// One control transfer as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlTransfer {
    /// The setup stage.
    pub setup: Setup,
    /// Payload (OUT) or bytes returned (IN).
    pub data: Vec<u8>,
}

/// The requests that configure a running device, in the order the driver sends them:
/// channel count, sample rate, CH1 gain, CH2 gain (each vendor OUT, wValue 0, wIndex 0,
/// one data byte).
pub fn configure_requests(channels: u8, rate_code: u8, gains: [Gain; 2]) -> [(u8, u8); 4] {
    [
        (REQ_CHANNELS, channels),
        (REQ_SAMPLE_RATE, rate_code),
        (REQ_CH1_GAIN, gains[0].code()),
        (REQ_CH2_GAIN, gains[1].code()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_states() {
        use DeviceState::{Cold, Running};
        for (vendor, product, state) in [
            (0x04b4, 0x6022, Cold(Model::Dso6022Be)),
            (0x04b4, 0x2020, Cold(Model::Dso2020)),
            (0x04b5, 0x602a, Running(FirmwareFlavour::Custom)),
            (0x1d50, 0x608e, Running(FirmwareFlavour::Fx2lafw)),
        ] {
            assert_eq!(
                identify(vendor, product),
                Some(state),
                "{vendor:04x}:{product:04x}"
            );
        }
        assert_eq!(identify(0x0ce9, 0x1007), None);
        assert!(USB_IDS.iter().all(|(v, p)| identify(*v, *p).is_some()));
    }

    #[test]
    fn rate_codes_follow_the_firmware_tables() {
        assert_eq!(rate_code(FirmwareFlavour::Fx2lafw, 100_000), Some(10));
        assert_eq!(rate_code(FirmwareFlavour::Custom, 100_000), Some(110));
        assert_eq!(rate_code(FirmwareFlavour::Custom, 10_000_000), Some(10));
        assert_eq!(rate_code(FirmwareFlavour::Fx2lafw, 10_000_000), None);
        assert_eq!(rate_from_code(FirmwareFlavour::Fx2lafw, 10), Some(100_000));
        assert_eq!(rate_from_code(FirmwareFlavour::Custom, 106), Some(64_000));
        assert_eq!(rate_from_code(FirmwareFlavour::Custom, 7), None);
    }

    #[test]
    fn volts_conversion() {
        assert_eq!(raw_to_volts(0x80, Gain::X1, Calibration::default()), 0.0);
        assert_eq!(raw_to_volts(0x00, Gain::X1, Calibration::default()), -5.0);
        assert_eq!(raw_to_volts(0xC0, Gain::X10, Calibration::default()), 0.25);
        let cal = Calibration::from_eeprom_bytes(0x82, 0x80);
        assert_eq!(cal.offset_counts, 2.0);
        assert_eq!(raw_to_volts(0x82, Gain::X2, cal), 0.0);
        let gain_cal = Calibration::from_eeprom_bytes(0x80, 0x80 + 50);
        assert!((raw_to_volts(0xC0, Gain::X5, gain_cal) - 0.55).abs() < 1e-6);
        let table = volts_table(Gain::X5, cal);
        assert_eq!(table[0x82], 0.0);
        assert_eq!(Gain::from_code(5), Some(Gain::X5));
        assert_eq!(Gain::from_code(3), None);
        assert_eq!(Gain::from_full_scale(2.5), Some(Gain::X2));
    }
}
