//! CosmicWatch desktop muon detector line formats (HARDWARE.md C.1). Pure: one line without
//! CR/LF in, one classified line out.
//!
//! v2 (Arduino Nano, 9600 baud): `#` header lines, one detector-name line, then
//! space-separated `event time_ms adc sipm_mV deadtime_ms temp_C`.
//! v3X (RP2040, USB CDC): `#` comments and `# HK …` housekeeping, then tab-separated
//! `event timestamp_s flag adc sipm_mV deadtime_s [temp_C press_Pa] [ax:ay:az gx:gy:gz] [name]`.
//!
//! Guarantees: every field is checked (ADC within 10/12 bits, flag 0/1, dead time not above
//! the run time, exact column count); any misfit is a [`CwError`], never an event with
//! made-up values. Must never allocate or panic.

use crate::serial::text::{fields, parse_decimal, parse_u64};

/// What was wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CwError {
    /// Wrong number of columns.
    #[error("expected {expected} columns, found {found}")]
    Columns {
        /// Columns the configured format has.
        expected: usize,
        /// Columns in the line.
        found: usize,
    },
    /// A column is malformed or out of range.
    #[error("column {index} ({what}) is malformed or out of range")]
    Column {
        /// 0-based column.
        index: usize,
        /// What belongs there.
        what: &'static str,
    },
    /// Dead time larger than the run time.
    #[error("dead time exceeds the detector's run time")]
    Deadtime,
    /// An empty line.
    #[error("empty line")]
    Empty,
}

/// One v2 event as printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V2Event {
    /// Running event number (from 1).
    pub event: u64,
    /// `millis()` at the event.
    pub time_ms: u64,
    /// 10-bit peak ADC (0..=1023).
    pub adc: u16,
    /// SiPM peak voltage in mV (the firmware's calibration of `adc`).
    pub sipm_mv: f32,
    /// Cumulative dead time in ms.
    pub deadtime_ms: u64,
    /// TMP36 temperature in °C.
    pub temp_c: f32,
}

/// A v2 line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum V2Line {
    /// Header line (`#…`).
    Comment,
    /// An event.
    Event(V2Event),
}

fn col<T>(v: Option<T>, index: usize, what: &'static str) -> Result<T, CwError> {
    v.ok_or(CwError::Column { index, what })
}

/// The columns of an event line split at `sep`, the first `N` of them kept; `expected` is
/// how many the line must have. A line of blanks only is [`CwError::Empty`].
fn columns<const N: usize>(line: &[u8], sep: u8, expected: usize) -> Result<[&[u8]; N], CwError> {
    if line.iter().all(|&b| b == b' ' || b == b'\t') {
        return Err(CwError::Empty);
    }
    let mut c: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for (i, f) in fields(line, Some(sep)).enumerate() {
        if i < N {
            c[i] = f;
        }
        n = i + 1;
    }
    if n != expected {
        return Err(CwError::Columns { expected, found: n });
    }
    Ok(c)
}

/// Parses one v2 line. (The detector-name line after the header is not an event; the driver
/// recognises it by position.)
pub fn parse_v2(line: &[u8]) -> Result<V2Line, CwError> {
    if line.first() == Some(&b'#') {
        return Ok(V2Line::Comment);
    }
    let c: [&[u8]; 6] = columns(line, b' ', 6)?;
    let event = col(parse_u64(c[0]), 0, "event number")?;
    let time_ms = col(parse_u64(c[1]), 1, "time [ms]")?;
    let adc = col(parse_u64(c[2]).filter(|&a| a <= 1023), 2, "ADC 0..1023")? as u16;
    let sipm_mv = col(parse_decimal(c[3], false), 3, "SiPM [mV]")? as f32;
    let deadtime_ms = col(parse_u64(c[4]), 4, "dead time [ms]")?;
    let temp_c = col(parse_decimal(c[5], true), 5, "temperature [C]")? as f32;
    if deadtime_ms > time_ms {
        return Err(CwError::Deadtime);
    }
    Ok(V2Line::Event(V2Event {
        event,
        time_ms,
        adc,
        sipm_mv,
        deadtime_ms,
        temp_c,
    }))
}

/// Which optional columns a v3X detector prints (fixed at its boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V3Columns {
    /// BMP280 present: `Temp[C]` and `Press[Pa]`.
    pub environment: bool,
    /// MPU-6050 present: `Accel(X:Y:Z)[g]` and `Gyro(X:Y:Z)[deg/sec]`.
    pub motion: bool,
    /// The detector name as last column (USB output).
    pub name: bool,
}

impl V3Columns {
    /// Every optional column: BMP280, MPU-6050 and the name.
    pub const ALL: V3Columns = V3Columns {
        environment: true,
        motion: true,
        name: true,
    };

    /// Columns per event line.
    pub fn count(self) -> usize {
        6 + 2 * usize::from(self.environment)
            + 2 * usize::from(self.motion)
            + usize::from(self.name)
    }
}

/// One v3X event as printed (absent optional columns are NaN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V3Event {
    /// Event number (from 1).
    pub event: u64,
    /// Seconds since run start (µs resolution).
    pub time_s: f64,
    /// Coincidence flag (0/1).
    pub flag: u8,
    /// 12-bit ADC (0..=4095).
    pub adc: u16,
    /// SiPM peak in mV.
    pub sipm_mv: f32,
    /// Cumulative dead time in s.
    pub deadtime_s: f64,
    /// °C (BMP280).
    pub temp_c: f32,
    /// Pa (BMP280).
    pub pressure_pa: f32,
    /// g, X:Y:Z.
    pub accel: [f32; 3],
    /// deg/s, X:Y:Z.
    pub gyro: [f32; 3],
}

/// A v3X line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum V3Line<'a> {
    /// `#` comment or header.
    Comment,
    /// `# HK …` housekeeping: the text after `# HK `.
    Housekeeping(&'a [u8]),
    /// An event.
    Event(V3Event),
}

fn triple(s: &[u8], index: usize, what: &'static str) -> Result<[f32; 3], CwError> {
    let mut v = [0f32; 3];
    let mut n = 0;
    for (i, p) in fields(s, Some(b':')).enumerate() {
        if i >= 3 {
            return Err(CwError::Column { index, what });
        }
        v[i] = col(parse_decimal(p, true), index, what)? as f32;
        n = i + 1;
    }
    if n != 3 {
        return Err(CwError::Column { index, what });
    }
    Ok(v)
}

/// Parses one v3X line with the given optional columns.
pub fn parse_v3(line: &[u8], cols: V3Columns) -> Result<V3Line<'_>, CwError> {
    if let Some(rest) = line.strip_prefix(b"# HK") {
        return Ok(V3Line::Housekeeping(
            rest.strip_prefix(b" ").unwrap_or(rest),
        ));
    }
    if line.first() == Some(&b'#') {
        return Ok(V3Line::Comment);
    }
    let c: [&[u8]; 11] = columns(line, b'\t', cols.count())?;
    let event = col(parse_u64(c[0]), 0, "event number")?;
    let time_s = col(parse_decimal(c[1], false), 1, "timestamp [s]")?;
    let flag = match c[2] {
        b"0" => 0,
        b"1" => 1,
        _ => {
            return Err(CwError::Column {
                index: 2,
                what: "flag 0|1",
            })
        }
    };
    let adc = col(parse_u64(c[3]).filter(|&a| a <= 4095), 3, "ADC 0..4095")? as u16;
    let sipm_mv = col(parse_decimal(c[4], false), 4, "SiPM [mV]")? as f32;
    let deadtime_s = col(parse_decimal(c[5], false), 5, "dead time [s]")?;
    if deadtime_s > time_s {
        return Err(CwError::Deadtime);
    }
    let mut e = V3Event {
        event,
        time_s,
        flag,
        adc,
        sipm_mv,
        deadtime_s,
        temp_c: f32::NAN,
        pressure_pa: f32::NAN,
        accel: [f32::NAN; 3],
        gyro: [f32::NAN; 3],
    };
    let mut k = 6;
    if cols.environment {
        e.temp_c = col(parse_decimal(c[k], true), k, "Temp [C]")? as f32;
        e.pressure_pa = col(parse_decimal(c[k + 1], false), k + 1, "Press [Pa]")? as f32;
        k += 2;
    }
    if cols.motion {
        e.accel = triple(c[k], k, "Accel X:Y:Z")?;
        e.gyro = triple(c[k + 1], k + 1, "Gyro X:Y:Z")?;
        k += 2;
    }
    if cols.name && c[k].is_empty() {
        return Err(CwError::Column {
            index: k,
            what: "name",
        });
    }
    Ok(V3Line::Event(e))
}

/// Whether a line can be the v2 detector-name line (printable ASCII, 1..=40 bytes).
pub fn is_v2_name(line: &[u8]) -> bool {
    (1..=40).contains(&line.len()) && line.iter().all(|b| (0x20..0x7f).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v2_and_v3_lines() {
        let V2Line::Event(e) = parse_v2(b"12 34567 312 87.25 1234 23.41").unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.event, e.time_ms, e.adc, e.deadtime_ms),
            (12, 34567, 312, 1234)
        );
        assert_eq!(
            parse_v2(b"### CosmicWatch: The Desktop Muon Detector"),
            Ok(V2Line::Comment)
        );
        assert!(parse_v2(b"12 34567 1024 87.25 1234 23.41").is_err());
        assert!(parse_v2(b"12 34567 312 87.25 99999 23.41").is_err());
        assert!(parse_v2(b"12 34567 312 87.25 1234").is_err());
        let l = b"7\t12.345678\t1\t2048\t123.4\t0.000084\t24.1\t101325\t0.012:-0.998:0.031\t-0.5:1.2:0.0\tAxel";
        let V3Line::Event(e) = parse_v3(l, V3Columns::ALL).unwrap() else {
            panic!()
        };
        assert_eq!((e.event, e.flag, e.adc), (7, 1, 2048));
        assert_eq!(e.accel, [0.012, -0.998, 0.031]);
        assert!(parse_v3(l, V3Columns::default()).is_err());
        assert!(parse_v3(b"7\t12.3\t2\t2048\t123.4\t0.000084", V3Columns::default()).is_err());
        assert_eq!(
            parse_v3(b"# HK t=60 T=23.1", V3Columns::default()),
            Ok(V3Line::Housekeeping(b"t=60 T=23.1"))
        );
    }

    fn v3_line() -> impl Strategy<Value = Vec<u8>> {
        (
            1u64..1_000_000,
            1u32..100_000_000,
            0u8..2,
            0u16..4096,
            0u32..100_000,
        )
            .prop_map(|(ev, us, flag, adc, dead)| {
                let t = us as f64 / 1e6;
                let d = (dead.min(us)) as f64 / 1e6;
                format!(
                    "{ev}\t{t:.6}\t{flag}\t{adc}\t{:.1}\t{d:.6}\t21.5\t100000",
                    adc as f32 * 0.1
                )
                .into_bytes()
            })
    }

    const ENV: V3Columns = V3Columns {
        environment: true,
        motion: false,
        name: false,
    };

    proptest! {
        #![proptest_config(crate::testing::fixed_seed(0x63770001))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = parse_v2(&bytes);
            let _ = parse_v3(&bytes, V3Columns::ALL);
            let _ = parse_v3(&bytes, V3Columns::default());
        }

        #[test]
        fn truncated_v3_lines_never_become_events(line in v3_line(), cut in 0usize..80) {
            prop_assert!(matches!(parse_v3(&line, ENV), Ok(V3Line::Event(_))));
            // Cutting inside the last column could leave a shorter valid number, so cut
            // before the last tab: a column is always missing.
            let last_tab = line.iter().rposition(|&b| b == b'\t').unwrap();
            let cut = cut.min(last_tab);
            prop_assert!(parse_v3(&line[..cut], ENV).is_err());
        }

        #[test]
        fn interleaved_v3_lines_never_become_events(a in v3_line(), b in v3_line(), at in 1usize..60) {
            let at = at.min(a.len() - 1);
            let mut mixed = a[..at].to_vec();
            mixed.extend_from_slice(&b);
            // a's prefix glued to b: a column too many or a malformed one. The one case a
            // line parser cannot see is a prefix of digits only fused into b's event number;
            // the driver's event-number check reports that as lost events.
            if let Ok(V3Line::Event(_)) = parse_v3(&mixed, ENV) {
                prop_assert!(mixed[..at].iter().all(|b| b.is_ascii_digit()), "{}", String::from_utf8_lossy(&mixed));
            }
        }
    }
}
