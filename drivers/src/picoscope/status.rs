//! `PICO_STATUS` codes with Pico's own names (HARDWARE.md A.8), and the typed errors of the
//! PicoScope driver.
//!
//! Guarantees: every code maps to exactly one [`PicoStatus`] and back to the same number;
//! unknown codes are kept as [`PicoStatus::Other`] with their number, never folded into a
//! neighbour. Nothing here does I/O.

use std::fmt;

use crate::driver::DriverError;

macro_rules! statuses {
    ($($variant:ident = $code:literal, $name:literal;)*) => {
        /// A `PICO_STATUS` value returned by every function of Pico's libraries.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum PicoStatus {
            $(
                #[doc = concat!("`PICO_", $name, "` (", stringify!($code), ")")]
                $variant,
            )*
            /// A code not in the table above, kept as returned.
            Other(u32),
        }

        impl PicoStatus {
            /// Every named status, in code order (for tests and documentation).
            pub const NAMED: &'static [PicoStatus] = &[$(PicoStatus::$variant,)*];

            /// The status for a code the library returned.
            pub fn from_code(code: u32) -> PicoStatus {
                match code {
                    $($code => PicoStatus::$variant,)*
                    other => PicoStatus::Other(other),
                }
            }

            /// The numeric code.
            pub fn code(self) -> u32 {
                match self {
                    $(PicoStatus::$variant => $code,)*
                    PicoStatus::Other(c) => c,
                }
            }

            /// Pico's name without the `PICO_` prefix (`NOT_FOUND`), or `UNKNOWN`.
            pub fn name(self) -> &'static str {
                match self {
                    $(PicoStatus::$variant => $name,)*
                    PicoStatus::Other(_) => "UNKNOWN",
                }
            }
        }
    };
}

statuses! {
    Ok = 0x00, "OK";
    MaxUnitsOpened = 0x01, "MAX_UNITS_OPENED";
    MemoryFail = 0x02, "MEMORY_FAIL";
    NotFound = 0x03, "NOT_FOUND";
    FwFail = 0x04, "FW_FAIL";
    OpenOperationInProgress = 0x05, "OPEN_OPERATION_IN_PROGRESS";
    OperationFailed = 0x06, "OPERATION_FAILED";
    NotResponding = 0x07, "NOT_RESPONDING";
    ConfigFail = 0x08, "CONFIG_FAIL";
    KernelDriverTooOld = 0x09, "KERNEL_DRIVER_TOO_OLD";
    EepromCorrupt = 0x0A, "EEPROM_CORRUPT";
    OsNotSupported = 0x0B, "OS_NOT_SUPPORTED";
    InvalidHandle = 0x0C, "INVALID_HANDLE";
    InvalidParameter = 0x0D, "INVALID_PARAMETER";
    InvalidTimebase = 0x0E, "INVALID_TIMEBASE";
    InvalidVoltageRange = 0x0F, "INVALID_VOLTAGE_RANGE";
    InvalidChannel = 0x10, "INVALID_CHANNEL";
    InvalidTriggerChannel = 0x11, "INVALID_TRIGGER_CHANNEL";
    StreamingFailed = 0x14, "STREAMING_FAILED";
    BlockModeFailed = 0x15, "BLOCK_MODE_FAILED";
    NullParameter = 0x16, "NULL_PARAMETER";
    DataNotAvailable = 0x18, "DATA_NOT_AVAILABLE";
    StringBufferTooSmall = 0x19, "STRING_BUFFER_TO_SMALL";
    BufferStall = 0x1C, "BUFFER_STALL";
    TooManySamples = 0x1D, "TOO_MANY_SAMPLES";
    TooManySegments = 0x1E, "TOO_MANY_SEGMENTS";
    DeviceSampling = 0x24, "DEVICE_SAMPLING";
    NoSamplesAvailable = 0x25, "NO_SAMPLES_AVAILABLE";
    SegmentOutOfRange = 0x26, "SEGMENT_OUT_OF_RANGE";
    Busy = 0x27, "BUSY";
    StartIndexInvalid = 0x28, "STARTINDEX_INVALID";
    InvalidSampleInterval = 0x2B, "INVALID_SAMPLE_INTERVAL";
    Cancelled = 0x3A, "CANCELLED";
    InvalidCoupling = 0x45, "INVALID_COUPLING";
    BuffersNotSet = 0x46, "BUFFERS_NOT_SET";
    RatioModeNotSupported = 0x47, "RATIO_MODE_NOT_SUPPORTED";
    InvalidAnalogueOffset = 0x50, "INVALID_ANALOGUE_OFFSET";
    InvalidDigitalPort = 0x113, "INVALID_DIGITAL_PORT";
    PowerSupplyConnected = 0x119, "POWER_SUPPLY_CONNECTED";
    PowerSupplyNotConnected = 0x11A, "POWER_SUPPLY_NOT_CONNECTED";
    PowerSupplyRequestInvalid = 0x11B, "POWER_SUPPLY_REQUEST_INVALID";
    PowerSupplyUndervoltage = 0x11C, "POWER_SUPPLY_UNDERVOLTAGE";
    Usb3DeviceNonUsb3Port = 0x11E, "USB3_0_DEVICE_NON_USB3_0_PORT";
    NotSupportedByThisDevice = 0x11F, "NOT_SUPPORTED_BY_THIS_DEVICE";
    InvalidDeviceResolution = 0x120, "INVALID_DEVICE_RESOLUTION";
    InvalidNumberChannelsForResolution = 0x121, "INVALID_NUMBER_CHANNELS_FOR_RESOLUTION";
    ChannelDisabledDueToUsbPowered = 0x122, "CHANNEL_DISABLED_DUE_TO_USB_POWERED";
}

impl PicoStatus {
    /// The device is gone or no longer answers: unplugged, powered off, handle stale.
    pub fn is_disconnection(self) -> bool {
        matches!(
            self,
            PicoStatus::NotFound | PicoStatus::NotResponding | PicoStatus::InvalidHandle
        )
    }

    /// The driver asks the application to accept the present USB power source
    /// (answer with `ChangePowerSource` and continue).
    pub fn is_power_prompt(self) -> bool {
        matches!(
            self,
            PicoStatus::PowerSupplyNotConnected | PicoStatus::Usb3DeviceNonUsb3Port
        )
    }

    /// The power source changed while the unit was open (the DC adapter was plugged in or
    /// pulled out, ps3000a/ps5000a): answer with `ChangePowerSource(status)` and retry.
    pub fn is_power_change(self) -> bool {
        self.is_power_prompt() || self == PicoStatus::PowerSupplyConnected
    }

    /// The settings were refused: the setup must change (range, timebase, channel, ...).
    pub fn is_configuration(self) -> bool {
        matches!(
            self,
            PicoStatus::InvalidTimebase
                | PicoStatus::InvalidVoltageRange
                | PicoStatus::InvalidChannel
                | PicoStatus::InvalidTriggerChannel
                | PicoStatus::InvalidParameter
                | PicoStatus::TooManySamples
                | PicoStatus::TooManySegments
                | PicoStatus::SegmentOutOfRange
                | PicoStatus::InvalidSampleInterval
                | PicoStatus::InvalidCoupling
                | PicoStatus::InvalidAnalogueOffset
                | PicoStatus::InvalidDeviceResolution
                | PicoStatus::InvalidNumberChannelsForResolution
                | PicoStatus::RatioModeNotSupported
                | PicoStatus::NotSupportedByThisDevice
                | PicoStatus::ChannelDisabledDueToUsbPowered
                | PicoStatus::InvalidDigitalPort
        )
    }
}

impl fmt::Display for PicoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PICO_{} (0x{:X})", self.name(), self.code())
    }
}

/// What went wrong in the PicoScope driver, typed so a caller can act on it.
#[derive(Debug, thiserror::Error)]
pub enum PicoError {
    /// Pico's library for the family is not installed where we looked.
    #[error(
        "PicoScope {family}: cannot load Pico's driver library {soname}. Tried: {tried}. \
         Install the Debian package `{package}` from Pico's apt repository \
         (deb https://labs.picotech.com/picoscope7/debian/ picoscope main); it installs \
         /opt/picoscope/lib/{soname}. Or set the setup's `library:` to the file's path."
    )]
    LibraryMissing {
        /// Family name (`ps5000a`).
        family: &'static str,
        /// File name (`libps5000a.so`).
        soname: String,
        /// Debian package (`libps5000a`).
        package: &'static str,
        /// Each place tried and why it failed, `; `-separated.
        tried: String,
    },
    /// The library loaded but lacks a function this driver needs (too old, or not Pico's).
    #[error("PicoScope {family}: {path} has no function `{symbol}`: {detail}. Install a current `{package}` from Pico's apt repository.")]
    SymbolMissing {
        /// Family name.
        family: &'static str,
        /// Library path.
        path: String,
        /// Missing symbol.
        symbol: &'static str,
        /// Loader message.
        detail: String,
        /// Debian package.
        package: &'static str,
    },
    /// A library call returned a status other than OK.
    #[error("{device}: {function} returned {status}{}", hint(*status))]
    Status {
        /// Which device (`PicoScope 5444D FAKE5000/001`, or the family before open).
        device: String,
        /// The C function called.
        function: &'static str,
        /// What it returned.
        status: PicoStatus,
    },
    /// The setup asks for something this scope or this driver cannot do.
    #[error("{device}: {detail}")]
    Config {
        /// Which device.
        device: String,
        /// What is wrong and what would work.
        detail: String,
    },
    /// The library handed back something inconsistent (sample counts, indices).
    #[error("{device}: bad data after {offset} samples/events: {detail}")]
    BadData {
        /// Which device.
        device: String,
        /// Events (rapid block) or samples (streaming) delivered before.
        offset: u64,
        /// What was inconsistent.
        detail: String,
    },
    /// A block or streaming callback reported a failure.
    #[error("{device}: capture callback reported {status}{}", hint(*status))]
    Callback {
        /// Which device.
        device: String,
        /// The status the callback carried.
        status: PicoStatus,
    },
}

fn hint(status: PicoStatus) -> &'static str {
    match status {
        s if s.is_disconnection() => {
            " — the scope is unplugged or not answering; check the USB cable and power"
        }
        PicoStatus::InvalidTimebase => {
            " — choose a longer sample interval or enable fewer channels"
        }
        PicoStatus::InvalidNumberChannelsForResolution => {
            " — 15-bit allows at most 2 channels, 16-bit only 1"
        }
        PicoStatus::PowerSupplyNotConnected | PicoStatus::Usb3DeviceNonUsb3Port => {
            " — the driver asks to accept USB power"
        }
        PicoStatus::InvalidDigitalPort => {
            " — only MSO models have digital ports (PORT0 = D0..D7, PORT1 = D8..D15)"
        }
        PicoStatus::PowerSupplyUndervoltage => {
            " — the USB port cannot power the scope: plug in its DC adapter or use a powered port"
        }
        _ => "",
    }
}

impl PicoError {
    /// The Pico status behind this error, if it came from the library.
    pub fn status(&self) -> Option<PicoStatus> {
        match self {
            PicoError::Status { status, .. } | PicoError::Callback { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the device is gone (unplugged or not answering).
    pub fn is_disconnection(&self) -> bool {
        self.status().is_some_and(PicoStatus::is_disconnection)
    }
}

impl From<PicoError> for DriverError {
    fn from(e: PicoError) -> DriverError {
        let device = match &e {
            PicoError::Status { device, .. }
            | PicoError::Config { device, .. }
            | PicoError::Callback { device, .. }
            | PicoError::BadData { device, .. } => device.clone(),
            PicoError::LibraryMissing { family, .. } | PicoError::SymbolMissing { family, .. } => {
                format!("PicoScope {family}")
            }
        };
        match &e {
            PicoError::LibraryMissing { .. } | PicoError::SymbolMissing { .. } => {
                DriverError::Vendor(e.to_string())
            }
            PicoError::Config { detail, .. } => DriverError::Config {
                device,
                detail: detail.clone(),
            },
            PicoError::BadData { offset, detail, .. } => DriverError::Protocol {
                device,
                offset: *offset,
                detail: detail.clone(),
            },
            _ if e.is_disconnection() => DriverError::Disconnected {
                device,
                detail: e.to_string(),
            },
            _ if e.status().is_some_and(PicoStatus::is_configuration) => DriverError::Config {
                device,
                detail: e.to_string(),
            },
            _ => DriverError::Vendor(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_status_round_trips_through_its_code() {
        // every code of HARDWARE.md A.8, plus P's 0x11B/0x11C and INVALID_DIGITAL_PORT (MSO)
        assert_eq!(PicoStatus::NAMED.len(), 47);
        for &s in PicoStatus::NAMED {
            assert_eq!(PicoStatus::from_code(s.code()), s, "{s}");
            assert!(!matches!(s, PicoStatus::Other(_)));
        }
        let mut codes: Vec<u32> = PicoStatus::NAMED.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), PicoStatus::NAMED.len(), "duplicate codes");
    }

    #[test]
    fn codes_carry_picos_names() {
        assert_eq!(PicoStatus::from_code(0x03).name(), "NOT_FOUND");
        assert_eq!(PicoStatus::from_code(0x07).name(), "NOT_RESPONDING");
        assert_eq!(PicoStatus::from_code(0x0E).name(), "INVALID_TIMEBASE");
        assert_eq!(
            PicoStatus::from_code(0x11A).name(),
            "POWER_SUPPLY_NOT_CONNECTED"
        );
        assert_eq!(
            PicoStatus::from_code(0x11E).name(),
            "USB3_0_DEVICE_NON_USB3_0_PORT"
        );
        assert_eq!(
            PicoStatus::from_code(0x121).name(),
            "INVALID_NUMBER_CHANNELS_FOR_RESOLUTION"
        );
        assert_eq!(PicoStatus::from_code(0x27), PicoStatus::Busy);
        assert_eq!(PicoStatus::from_code(0x999), PicoStatus::Other(0x999));
        assert_eq!(PicoStatus::Other(0x999).code(), 0x999);
        assert_eq!(
            PicoStatus::from_code(0x0E).to_string(),
            "PICO_INVALID_TIMEBASE (0xE)"
        );
    }

    #[test]
    fn power_prompts_and_disconnections_are_classified() {
        assert!(PicoStatus::from_code(0x11A).is_power_prompt());
        assert!(PicoStatus::from_code(0x11E).is_power_prompt());
        assert!(!PicoStatus::from_code(0x119).is_power_prompt());
        assert!(PicoStatus::from_code(0x119).is_power_change());
        assert!(PicoStatus::from_code(0x11A).is_power_change());
        assert!(!PicoStatus::from_code(0x11B).is_power_change());
        assert!(PicoStatus::NotResponding.is_disconnection());
        assert!(PicoStatus::NotFound.is_disconnection());
        assert!(!PicoStatus::InvalidTimebase.is_disconnection());
    }

    #[test]
    fn errors_become_the_right_driver_errors() {
        let status = |code| PicoError::Status {
            device: "PicoScope 5444D X".into(),
            function: "ps5000aRunBlock",
            status: PicoStatus::from_code(code),
        };
        let d: DriverError = status(0x07).into();
        assert!(matches!(d, DriverError::Disconnected { .. }), "{d}");
        assert!(d.to_string().contains("PICO_NOT_RESPONDING"), "{d}");
        let d: DriverError = status(0x0E).into();
        assert!(matches!(d, DriverError::Config { .. }), "{d}");
        assert!(
            d.to_string()
                .contains("ps5000aRunBlock returned PICO_INVALID_TIMEBASE"),
            "{d}"
        );
        let d: DriverError = status(0x02).into();
        assert!(matches!(d, DriverError::Vendor(_)), "{d}");
        let d: DriverError = PicoError::Callback {
            device: "x".into(),
            status: PicoStatus::NotResponding,
        }
        .into();
        assert!(matches!(d, DriverError::Disconnected { .. }));
    }
}
