//! What differs between PicoScope driver families, as data: function names, argument
//! shapes, USB product ids, ADC full scale, voltage ranges and timebase formulas.
//!
//! Guarantees: adding a family (ps4000a, ps6000a) is one more [`FamilyTable`] constant;
//! the driver code is shared. Timebase formulas are those of HARDWARE.md A.7 and are only a
//! first guess: the driver always confirms with `GetTimebase2`. Pure data and arithmetic,
//! no I/O.

/// Names of the C functions the driver binds, for one family.
#[derive(Clone, Copy, Debug)]
pub struct Symbols {
    /// `OpenUnit`.
    pub open_unit: &'static str,
    /// `CloseUnit`.
    pub close_unit: &'static str,
    /// `Stop`.
    pub stop: &'static str,
    /// `PingUnit`.
    pub ping_unit: &'static str,
    /// `GetUnitInfo`.
    pub get_unit_info: &'static str,
    /// `EnumerateUnits`.
    pub enumerate_units: &'static str,
    /// `SetChannel`.
    pub set_channel: &'static str,
    /// `GetTimebase2`.
    pub get_timebase2: &'static str,
    /// `SetSimpleTrigger`.
    pub set_simple_trigger: &'static str,
    /// `MemorySegments`.
    pub memory_segments: &'static str,
    /// `SetNoOfCaptures`.
    pub set_no_of_captures: &'static str,
    /// `RunBlock`.
    pub run_block: &'static str,
    /// `IsReady`.
    pub is_ready: &'static str,
    /// `SetDataBuffer`.
    pub set_data_buffer: &'static str,
    /// `GetValues` (block mode).
    pub get_values: &'static str,
    /// `GetValuesBulk`.
    pub get_values_bulk: &'static str,
    /// `GetValuesTriggerTimeOffsetBulk64`.
    pub trigger_time_offset_bulk64: &'static str,
    /// `GetTriggerTimeOffset64` (block mode).
    pub trigger_time_offset64: &'static str,
    /// `RunStreaming`.
    pub run_streaming: &'static str,
    /// `GetStreamingLatestValues`.
    pub get_streaming_latest_values: &'static str,
    /// `MaximumValue`.
    pub maximum_value: &'static str,
    /// `SetDigitalPort` (MSO models; every family here has MSO models).
    pub set_digital_port: &'static str,
    /// `ChangePowerSource`, where the family has USB power prompts.
    pub change_power_source: Option<&'static str>,
    /// `SetDeviceResolution`, where the family has selectable resolution.
    pub set_device_resolution: Option<&'static str>,
}

macro_rules! symbols {
    ($p:literal, power: $power:expr, resolution: $res:expr) => {
        Symbols {
            open_unit: concat!($p, "OpenUnit"),
            close_unit: concat!($p, "CloseUnit"),
            stop: concat!($p, "Stop"),
            ping_unit: concat!($p, "PingUnit"),
            get_unit_info: concat!($p, "GetUnitInfo"),
            enumerate_units: concat!($p, "EnumerateUnits"),
            set_channel: concat!($p, "SetChannel"),
            get_timebase2: concat!($p, "GetTimebase2"),
            set_simple_trigger: concat!($p, "SetSimpleTrigger"),
            memory_segments: concat!($p, "MemorySegments"),
            set_no_of_captures: concat!($p, "SetNoOfCaptures"),
            run_block: concat!($p, "RunBlock"),
            is_ready: concat!($p, "IsReady"),
            set_data_buffer: concat!($p, "SetDataBuffer"),
            get_values: concat!($p, "GetValues"),
            get_values_bulk: concat!($p, "GetValuesBulk"),
            trigger_time_offset_bulk64: concat!($p, "GetValuesTriggerTimeOffsetBulk64"),
            trigger_time_offset64: concat!($p, "GetTriggerTimeOffset64"),
            run_streaming: concat!($p, "RunStreaming"),
            get_streaming_latest_values: concat!($p, "GetStreamingLatestValues"),
            maximum_value: concat!($p, "MaximumValue"),
            set_digital_port: concat!($p, "SetDigitalPort"),
            change_power_source: if $power {
                Some(concat!($p, "ChangePowerSource"))
            } else {
                None
            },
            set_device_resolution: if $res {
                Some(concat!($p, "SetDeviceResolution"))
            } else {
                None
            },
        }
    };
}

/// How a family's C signatures differ from the ps5000a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiShape {
    /// `OpenUnit(handle*, serial*, resolution)` instead of `OpenUnit(handle*, serial*)`.
    pub open_takes_resolution: bool,
    /// `GetTimebase2` and `RunBlock` carry an `int16_t oversample` argument
    /// (ps2000a, ps3000a); ps5000a has none.
    pub takes_oversample: bool,
}

/// Device resolution (ps5000a `PS5000A_DEVICE_RESOLUTION`); other families are fixed 8-bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// 8 bits (code 0).
    Bits8,
    /// 12 bits (code 1).
    Bits12,
    /// 14 bits (code 2).
    Bits14,
    /// 15 bits (code 3), at most 2 channels.
    Bits15,
    /// 16 bits (code 4), 1 channel.
    Bits16,
}

impl Resolution {
    /// The enum value the C API takes.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Number of bits.
    pub fn bits(self) -> u32 {
        [8, 12, 14, 15, 16][self as usize]
    }

    /// Parses `8`, `12`, `14`, `15`, `16`.
    pub fn from_bits(bits: u32) -> Option<Resolution> {
        Some(match bits {
            8 => Resolution::Bits8,
            12 => Resolution::Bits12,
            14 => Resolution::Bits14,
            15 => Resolution::Bits15,
            16 => Resolution::Bits16,
            _ => return None,
        })
    }

    /// Most channels the resolution allows (HARDWARE.md A.6).
    pub fn max_channels(self) -> usize {
        match self {
            Resolution::Bits15 => 2,
            Resolution::Bits16 => 1,
            _ => 4,
        }
    }
}

/// Timebase `n` → sample interval: `unit_ns × 2^n` for `fast_first ≤ n ≤ fast_last`,
/// `(n − slow_offset) × slow_step_ns` above.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timebases {
    /// Smallest timebase index the formula allows.
    pub fast_first: u32,
    /// Last index of the power-of-two range.
    pub fast_last: u32,
    /// Interval of index 0 in the power-of-two range, ns.
    pub unit_ns: f64,
    /// Offset of the linear range.
    pub slow_offset: u32,
    /// Step of the linear range, ns.
    pub slow_step_ns: f64,
}

impl Timebases {
    /// Sample interval of timebase `n` in ns, or None below the fastest index.
    pub fn interval_ns(&self, n: u32) -> Option<f64> {
        if n < self.fast_first {
            None
        } else if n <= self.fast_last {
            Some(self.unit_ns * f64::from(1u32 << n))
        } else {
            Some(f64::from(n - self.slow_offset) * self.slow_step_ns)
        }
    }

    /// The timebase whose interval is nearest to `requested_ns` (ties: the longer interval).
    /// Returns None for a non-positive or non-finite request.
    pub fn nearest(&self, requested_ns: f64) -> Option<u32> {
        if !(requested_ns.is_finite() && requested_ns > 0.0) {
            return None;
        }
        let slow = (requested_ns / self.slow_step_ns)
            .round()
            .min(f64::from(u32::MAX - self.slow_offset - 1));
        let slow = (slow as u32 + self.slow_offset).max(self.fast_last + 1);
        let mut best: Option<(u32, f64)> = None;
        for n in (self.fast_first..=self.fast_last).chain([
            slow.saturating_sub(1),
            slow,
            slow.saturating_add(1),
        ]) {
            let Some(iv) = self.interval_ns(n) else {
                continue;
            };
            let err = (iv - requested_ns).abs();
            let better = match best {
                None => true,
                Some((bn, be)) => {
                    err < be - 1e-9
                        || ((err - be).abs() <= 1e-9 && iv > self.interval_ns(bn).unwrap_or(0.0))
                }
            };
            if better {
                best = Some((n, err));
            }
        }
        best.map(|b| b.0)
    }
}

/// Everything the shared driver needs to know about one family.
#[derive(Clone, Debug)]
pub struct FamilyTable {
    /// Family name as setups write it (`ps5000a`).
    pub name: &'static str,
    /// Library file name (`libps5000a.so`).
    pub soname: &'static str,
    /// Debian package in Pico's apt repository that installs it.
    pub package: &'static str,
    /// USB product ids (vendor 0x0ce9) served by this library (HARDWARE.md A.1).
    pub usb_pids: &'static [u16],
    /// C function names.
    pub symbols: Symbols,
    /// Signature differences.
    pub api: ApiShape,
    /// Resolutions the family supports; the first is the default.
    pub resolutions: &'static [Resolution],
    /// Range codes (0 = ±10 mV .. 11 = ±50 V) the family accepts.
    pub ranges: std::ops::RangeInclusive<u8>,
    /// Range codes a model (`GetUnitInfo` VARIANT, e.g. `3204A`) offers; within `ranges`.
    pub model_ranges: fn(&str) -> std::ops::RangeInclusive<u8>,
    /// ADC full scale before the device is asked (`MaximumValue` is always asked).
    pub max_value: fn(Resolution) -> i16,
    /// Timebase formula for a model variant (`GetUnitInfo` VARIANT, e.g. `5444D`) and resolution.
    pub timebases: fn(&str, Resolution) -> Timebases,
}

/// PicoScope 2000 series with the `ps2000a` library (2205 MSO, 2206..2208 A/B, 2405A..2408B).
pub const PS2000A: FamilyTable = FamilyTable {
    name: "ps2000a",
    soname: "libps2000a.so",
    package: "libps2000a",
    usb_pids: &[0x1016, 0x1200],
    symbols: symbols!("ps2000a", power: false, resolution: false),
    api: ApiShape {
        open_takes_resolution: false,
        takes_oversample: true,
    },
    resolutions: &[Resolution::Bits8],
    ranges: 1..=10,
    // Per model [unverified]: HARDWARE.md has no 2000A range table. Pico's C example
    // (picosdk-c-examples ps2000aCon.c, get_info) starts the 2206/7/8, 2206A/7A/8A and
    // 2205 MSO at ±50 mV and the others at ±20 mV; until that is confirmed, every model
    // gets the family's ±20 mV .. ±20 V and the unit's SetChannel has the last word.
    model_ranges: |_| 1..=10,
    max_value: |_| 32512,
    timebases: ps2000a_timebases,
};

/// PicoScope 5000 series with flexible resolution (`ps5000a` library).
pub const PS5000A: FamilyTable = FamilyTable {
    name: "ps5000a",
    soname: "libps5000a.so",
    package: "libps5000a",
    usb_pids: &[0x1019, 0x1203, 0x1217, 0x1218],
    symbols: symbols!("ps5000a", power: true, resolution: true),
    api: ApiShape {
        open_takes_resolution: true,
        takes_oversample: false,
    },
    resolutions: &[
        Resolution::Bits8,
        Resolution::Bits12,
        Resolution::Bits14,
        Resolution::Bits15,
        Resolution::Bits16,
    ],
    ranges: 0..=10,
    // Per model [unverified]: HARDWARE.md has no 5000A range table; Pico's C example
    // (ps5000aCon.c) gives every model ±10 mV .. ±20 V (its first range depends on the
    // resolution, not the model), so the family-wide check stands.
    model_ranges: |_| 0..=10,
    max_value: |r| if r == Resolution::Bits8 { 32512 } else { 32767 },
    timebases: ps5000a_timebases,
};

/// PicoScope 3000 series with the `ps3000a` library (3204A/B..3207A/B, 3204..3206 MSO,
/// 3203D..3406D and their MSO versions), HARDWARE.md section P. Signatures as ps2000a
/// (no resolution argument, `int16_t oversample` in GetTimebase2 and RunBlock), but the
/// models with a DC socket (34xxA/B, 32xxD/34xxD) ask about their power source, so
/// `ChangePowerSource` is bound.
pub const PS3000A: FamilyTable = FamilyTable {
    name: "ps3000a",
    soname: "libps3000a.so",
    package: "libps3000a",
    // HARDWARE.md A.1/P, from a third-party table; which PID is which model is
    // [unverified], so any of them selects the family and the variant string decides.
    usb_pids: &[0x1012, 0x1201, 0x1211, 0x1213],
    symbols: symbols!("ps3000a", power: true, resolution: false),
    api: ApiShape {
        open_takes_resolution: false,
        takes_oversample: true,
    },
    resolutions: &[Resolution::Bits8],
    // ±20 mV .. ±20 V over the family; which model has which: `ps3000a_ranges`.
    ranges: 1..=10,
    model_ranges: ps3000a_ranges,
    max_value: |_| 32512,
    timebases: ps3000a_timebases,
};

/// Families this driver supports.
pub const FAMILIES: &[&FamilyTable] = &[&PS2000A, &PS3000A, &PS5000A];

/// The family whose library serves USB product id `pid`, among supported ones.
pub fn family_for_pid(pid: u16) -> Option<&'static FamilyTable> {
    FAMILIES.iter().copied().find(|f| f.usb_pids.contains(&pid))
}

/// The family named `name` (`ps2000a`, `ps5000a`).
pub fn family_by_name(name: &str) -> Option<&'static FamilyTable> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Whether a model (`GetUnitInfo` VARIANT, e.g. `3406D MSO`, `2205A MSO`) has digital
/// inputs: Pico's own C examples decide it the same way (`strstr(variant, "MSO")`, two
/// ports then). Case and spacing do not matter.
pub fn model_has_digital_ports(variant: &str) -> bool {
    variant.to_ascii_uppercase().contains("MSO")
}

/// Analogue channels of a model from its name: the second digit (`3406D` → 4, `2205A MSO`
/// → 2), as Pico's C examples read it; None when the name has no such digit.
pub fn model_channels(variant: &str) -> Option<u8> {
    variant
        .trim()
        .as_bytes()
        .get(1)
        .and_then(|b| (*b as char).to_digit(10))
        .filter(|n| (1..=4).contains(n))
        .map(|n| n as u8)
}

/// The same model name written two ways (`3206D MSO`, `3206dmso`): upper case, spaces and
/// dashes left out.
pub fn same_model(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

/// Whether `family` serves a model of this name: the model's first digit is the family's
/// series (2xxx → ps2000a, 3xxx → ps3000a, 5xxx → ps5000a).
pub fn family_serves_model(family: &FamilyTable, variant: &str) -> bool {
    let series = family.name.as_bytes().get(2).copied();
    variant.trim().as_bytes().first().copied() == series
}

/// ps3000a, HARDWARE.md P "Ranges by model": the D and D MSO models (3203D .. 3406D MSO)
/// go from ±20 mV, the A/B models and the 3204..3206 MSO from ±50 mV, all up to ±20 V.
/// Pico's C example (ps3000aCon.c, get_info) tells them apart by the fifth character of
/// the variant, `D` or not; so does this.
fn ps3000a_ranges(variant: &str) -> std::ops::RangeInclusive<u8> {
    if variant.trim().as_bytes().get(4).map(u8::to_ascii_uppercase) == Some(b'D') {
        1..=10
    } else {
        2..=10
    }
}

/// ps5000a, HARDWARE.md A.7: 8-bit `2^n` ns (n ≤ 2) then `(n−2)×8`; 12-bit `2^n` ns
/// (1 ≤ n ≤ 3) then `(n−3)×16`; 14/15-bit 8 ns (n = 3) then `(n−2)×8`; 16-bit 16 ns (n = 4)
/// then `(n−3)×16`.
fn ps5000a_timebases(_variant: &str, r: Resolution) -> Timebases {
    let t = |fast_first, fast_last, slow_offset, slow_step_ns| Timebases {
        fast_first,
        fast_last,
        unit_ns: 1.0,
        slow_offset,
        slow_step_ns,
    };
    match r {
        Resolution::Bits8 => t(0, 2, 2, 8.0),
        Resolution::Bits12 => t(1, 3, 3, 16.0),
        Resolution::Bits14 | Resolution::Bits15 => t(3, 3, 2, 8.0),
        Resolution::Bits16 => t(4, 4, 3, 16.0),
    }
}

/// ps2000a: the 500 MS/s models (2205 MSO, 2206, 2207, 2208 and their A versions, Pico's
/// Python wrapper's variant list) use `2^n / 500 MHz` (n ≤ 2) then `(n−2) / 62.5 MHz`, the
/// same as the 3000A 2-channel table. The B models and 2405A..2408B run from a 1 GHz clock:
/// `2^n` ns then `(n−2)×8` ns **[from third-party example code, unverified]**;
/// `GetTimebase2` decides.
fn ps2000a_timebases(variant: &str, _r: Resolution) -> Timebases {
    let v = variant.trim().to_ascii_uppercase();
    let one_ghz =
        v.starts_with("24") || (v.ends_with('B') || v.contains("B MSO") || v.ends_with("BMSO"));
    if one_ghz {
        Timebases {
            fast_first: 0,
            fast_last: 2,
            unit_ns: 1.0,
            slow_offset: 2,
            slow_step_ns: 8.0,
        }
    } else {
        Timebases {
            fast_first: 0,
            fast_last: 2,
            unit_ns: 2.0,
            slow_offset: 2,
            slow_step_ns: 16.0,
        }
    }
}

/// ps3000a, HARDWARE.md P (programmer's guide r9): the 2-channel USB2 models 3204A/B..3206A/B
/// run `2^n / 500 MHz` (n ≤ 2) then `(n−2) / 62.5 MHz`; the 3204..3206 MSO `2^n / 500 MHz`
/// (n ≤ 1) then `(n−1) / 125 MHz`; the 4-channel models, the 3207A/B and (**[unverified]**,
/// pico-python applies it to every unit) the D and D MSO models `2^n / 1 GHz` (n ≤ 2) then
/// `(n−2) / 125 MHz`. `GetTimebase2` decides in the end.
fn ps3000a_timebases(variant: &str, _r: Resolution) -> Timebases {
    let v = variant.trim().to_ascii_uppercase();
    let t = |fast_last, unit_ns, slow_offset, slow_step_ns| Timebases {
        fast_first: 0,
        fast_last,
        unit_ns,
        slow_offset,
        slow_step_ns,
    };
    let d_model = v.contains('D');
    let old_2ch = ["3204", "3205", "3206"].iter().any(|m| v.starts_with(m));
    if old_2ch && !d_model && v.contains("MSO") {
        t(1, 2.0, 1, 8.0)
    } else if old_2ch && !d_model {
        t(2, 2.0, 2, 16.0)
    } else {
        t(2, 1.0, 2, 8.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is asked, the chosen timebase exists and no neighbour is nearer.
        #[test]
        fn nearest_is_never_beaten_by_a_neighbour(req in 1e-3f64..1e11, res in 0usize..5, fam in 0usize..3) {
            let t = match fam {
                0 => (PS5000A.timebases)("5444D", PS5000A.resolutions[res]),
                1 => (PS2000A.timebases)("2206A", Resolution::Bits8),
                _ => (PS2000A.timebases)("2208B", Resolution::Bits8),
            };
            let n = t.nearest(req).expect("a positive request has a timebase");
            let err = (t.interval_ns(n).expect("chosen timebase exists") - req).abs();
            for m in [n.saturating_sub(1), n.saturating_add(1)] {
                if let Some(iv) = t.interval_ns(m) {
                    prop_assert!(err <= (iv - req).abs() + 1e-6 * req.max(1.0), "n={} m={} req={}", n, m, req);
                }
            }
        }
    }

    /// HARDWARE.md A.7, row by row: (resolution, n, interval ns).
    const PS5000A_TABLE: &[(Resolution, u32, f64)] = &[
        (Resolution::Bits8, 0, 1.0),
        (Resolution::Bits8, 1, 2.0),
        (Resolution::Bits8, 2, 4.0),
        (Resolution::Bits8, 3, 8.0),
        (Resolution::Bits8, 4, 16.0),
        (Resolution::Bits8, 127, 1000.0),
        (Resolution::Bits12, 1, 2.0),
        (Resolution::Bits12, 2, 4.0),
        (Resolution::Bits12, 3, 8.0),
        (Resolution::Bits12, 4, 16.0),
        (Resolution::Bits12, 5, 32.0),
        (Resolution::Bits14, 3, 8.0),
        (Resolution::Bits14, 4, 16.0),
        (Resolution::Bits14, 5, 24.0),
        (Resolution::Bits15, 3, 8.0),
        (Resolution::Bits15, 4, 16.0),
        (Resolution::Bits16, 4, 16.0),
        (Resolution::Bits16, 5, 32.0),
        (Resolution::Bits16, 6, 48.0),
    ];

    #[test]
    fn ps5000a_intervals_match_the_hardware_table() {
        for &(r, n, ns) in PS5000A_TABLE {
            let t = (PS5000A.timebases)("5444D", r);
            assert_eq!(t.interval_ns(n), Some(ns), "{r:?} n={n}");
            assert_eq!(t.nearest(ns), Some(n), "{r:?} {ns} ns");
        }
        // Below the fastest index there is no timebase.
        assert_eq!(
            (PS5000A.timebases)("5444D", Resolution::Bits12).interval_ns(0),
            None
        );
        assert_eq!(
            (PS5000A.timebases)("5444D", Resolution::Bits14).interval_ns(2),
            None
        );
        assert_eq!(
            (PS5000A.timebases)("5444D", Resolution::Bits16).interval_ns(3),
            None
        );
    }

    #[test]
    fn ps2000a_intervals_per_model() {
        let slow = (PS2000A.timebases)("2206A", Resolution::Bits8);
        for (n, ns) in [
            (0, 2.0),
            (1, 4.0),
            (2, 8.0),
            (3, 16.0),
            (4, 32.0),
            (65, 1008.0),
        ] {
            assert_eq!(slow.interval_ns(n), Some(ns), "2206A n={n}");
            assert_eq!(slow.nearest(ns), Some(n));
        }
        let fast = (PS2000A.timebases)("2208B", Resolution::Bits8);
        for (n, ns) in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)] {
            assert_eq!(fast.interval_ns(n), Some(ns), "2208B n={n}");
        }
        assert_eq!((PS2000A.timebases)("2406B", Resolution::Bits8), fast);
        assert_eq!((PS2000A.timebases)("2205 MSO", Resolution::Bits8), slow);
    }

    #[test]
    fn ps3000a_intervals_per_model() {
        // (variant, n, interval ns), HARDWARE.md P table.
        for (v, n, ns) in [
            ("3206B", 0, 2.0),
            ("3206B", 2, 8.0),
            ("3206B", 3, 16.0),
            ("3204A", 4, 32.0),
            ("3204 MSO", 0, 2.0),
            ("3205 MSO", 1, 4.0),
            ("3206 MSO", 2, 8.0),
            ("3206 MSO", 3, 16.0),
            ("3404B", 0, 1.0),
            ("3404B", 2, 4.0),
            ("3404B", 3, 8.0),
            ("3207A", 4, 16.0),
            ("3406D", 3, 8.0),
            ("3206D MSO", 2, 4.0),
            ("3206D MSO", 127, 1000.0),
        ] {
            let t = (PS3000A.timebases)(v, Resolution::Bits8);
            assert_eq!(t.interval_ns(n), Some(ns), "{v} n={n}");
            assert_eq!(t.nearest(ns), Some(n), "{v} {ns} ns");
        }
        assert_eq!(PS3000A.symbols.open_unit, "ps3000aOpenUnit");
        assert_eq!(
            PS3000A.symbols.change_power_source,
            Some("ps3000aChangePowerSource")
        );
        assert_eq!(PS3000A.symbols.set_device_resolution, None);
        assert_eq!(
            PS3000A.api,
            ApiShape {
                open_takes_resolution: false,
                takes_oversample: true
            }
        );
        for pid in [0x1012, 0x1201, 0x1211, 0x1213] {
            assert_eq!(family_for_pid(pid).map(|f| f.name), Some("ps3000a"));
        }
        assert_eq!(
            family_by_name("ps3000a").map(|f| f.soname),
            Some("libps3000a.so")
        );
    }

    #[test]
    fn ps3000a_ranges_by_model() {
        for (model, first) in [
            ("3406D MSO", 1),
            ("3203D", 1),
            ("3206d", 1),
            ("3204A", 2),
            ("3405B", 2),
            ("3206 MSO", 2),
            ("3207B", 2),
        ] {
            assert_eq!((PS3000A.model_ranges)(model), first..=10, "{model}");
        }
        assert_eq!((PS2000A.model_ranges)("2206A"), PS2000A.ranges);
        assert_eq!((PS5000A.model_ranges)("5242D"), PS5000A.ranges);
    }

    #[test]
    fn nearest_picks_the_closest_interval() {
        let t = (PS5000A.timebases)("5444D", Resolution::Bits8);
        assert_eq!(t.nearest(10.0), Some(3)); // 8 ns beats 16 ns
        assert_eq!(t.nearest(12.0), Some(4)); // tie 8/16 → the longer
        assert_eq!(t.nearest(3.0), Some(2)); // tie 2/4 → 4 ns
        assert_eq!(t.nearest(0.1), Some(0));
        assert_eq!(t.nearest(1e6), Some(125_002));
        assert_eq!(t.nearest(0.0), None);
        assert_eq!(t.nearest(f64::NAN), None);
        assert!(t.nearest(1e30).is_some());
        let t16 = (PS5000A.timebases)("5444D", Resolution::Bits16);
        assert_eq!(t16.nearest(1.0), Some(4));
    }

    #[test]
    fn model_names_say_channels_and_digital_ports() {
        assert!(model_has_digital_ports("3406D MSO"));
        assert!(model_has_digital_ports("2205A mso"));
        assert!(!model_has_digital_ports("3406D"));
        assert_eq!(model_channels("2205A MSO"), Some(2));
        assert_eq!(model_channels("5444D MSO"), Some(4));
        assert_eq!(model_channels("x"), None);
        assert!(same_model("3206D MSO", "3206dmso"));
        assert!(!same_model("3206D MSO", "3206D"));
        assert!(family_serves_model(&PS3000A, "3406D MSO"));
        assert!(family_serves_model(&PS2000A, "2405A"));
        assert!(!family_serves_model(&PS5000A, "3406D"));
    }

    #[test]
    fn pids_map_to_families() {
        assert_eq!(family_for_pid(0x1016).map(|f| f.name), Some("ps2000a"));
        assert_eq!(family_for_pid(0x1200).map(|f| f.name), Some("ps2000a"));
        assert_eq!(family_for_pid(0x1019).map(|f| f.name), Some("ps5000a"));
        assert_eq!(family_for_pid(0x1218).map(|f| f.name), Some("ps5000a"));
        assert!(family_for_pid(0x1007).is_none()); // ps2000 (non-A): a different API
        assert_eq!(
            family_by_name("PS5000A").map(|f| f.soname),
            Some("libps5000a.so")
        );
        assert_eq!(PS5000A.symbols.run_block, "ps5000aRunBlock");
        assert_eq!(PS2000A.symbols.change_power_source, None);
        assert_eq!(
            PS5000A.symbols.change_power_source,
            Some("ps5000aChangePowerSource")
        );
    }
}
