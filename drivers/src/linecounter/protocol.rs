//! Line formats of simple serial Geiger counters: MightyOhm kit, NetIO GC10, and a
//! configurable grammar for Arduino-style sketches. Pure: one line (without CR/LF) in, one
//! reading out.
//!
//! Guarantees: a line parses only if every field is where the format says and the values
//! are consistent (MightyOhm: µSv/h = CPM × 57 / 10000, INST ⇒ CPM = CPS × 60, FAST ⇒ CPM a
//! multiple of 12 above 1000, CPS ≤ 255); anything else is a [`LineError`], never a zero
//! count. Must never allocate or panic.

use crate::serial::text::{fields, parse_decimal, parse_u32, parse_u64};

/// What was wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Wrong number of fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields the format has.
        expected: usize,
        /// Fields in the line.
        found: usize,
    },
    /// A field is not what the format says.
    #[error("field {index} ({what}) is malformed")]
    Field {
        /// 0-based field index.
        index: usize,
        /// What was expected there.
        what: &'static str,
    },
    /// The values contradict each other or the device's limits.
    #[error("inconsistent reading: {0}")]
    Inconsistent(&'static str),
    /// An empty line where a reading was expected.
    #[error("empty line")]
    Empty,
}

/// MightyOhm averaging mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MightyOhmMode {
    /// 60-second running sum.
    Slow = 0,
    /// 5-second sum × 12 (when that exceeds 1000 CPM).
    Fast = 1,
    /// CPS × 60 (when a one-second count overflowed 255).
    Inst = 2,
}

impl MightyOhmMode {
    /// The word on the wire.
    pub fn word(self) -> &'static str {
        match self {
            MightyOhmMode::Slow => "SLOW",
            MightyOhmMode::Fast => "FAST",
            MightyOhmMode::Inst => "INST",
        }
    }
}

/// One MightyOhm report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MightyOhmReading {
    /// Counts in the last second (0..=255).
    pub cps: u32,
    /// Counts per minute by `mode`.
    pub cpm: u32,
    /// µSv/h × 100, as printed.
    pub usv_centi: u32,
    /// Averaging mode.
    pub mode: MightyOhmMode,
}

/// A MightyOhm line: the boot banner or a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MightyOhmLine {
    /// `mightyohm.com Geiger Counter …` or `http://mightyohm.com/geiger`.
    Banner,
    /// `CPS, n, CPM, n, uSv/hr, x.yy, MODE`.
    Reading(MightyOhmReading),
}

/// Largest count the firmware's 8-bit per-second counter holds.
pub const MIGHTYOHM_MAX_CPS: u32 = 255;
/// CPM above which the firmware switches to FAST.
pub const MIGHTYOHM_FAST_THRESHOLD: u32 = 1000;

/// µSv/h × 100 as the firmware prints it for `cpm` (scale factor 57 / 10000, truncated).
pub fn mightyohm_usv_centi(cpm: u32) -> u32 {
    (u64::from(cpm) * 57 / 100) as u32
}

fn parse_centi(s: &[u8]) -> Option<u32> {
    let dot = s.iter().position(|&b| b == b'.')?;
    let (int, frac) = (&s[..dot], &s[dot + 1..]);
    if frac.len() != 2 {
        return None;
    }
    parse_u32(int)?
        .checked_mul(100)?
        .checked_add(parse_u32(frac)?)
}

/// Parses one MightyOhm line.
pub fn parse_mightyohm(line: &[u8]) -> Result<MightyOhmLine, LineError> {
    if line.starts_with(b"mightyohm.com Geiger Counter") || line == b"http://mightyohm.com/geiger" {
        return Ok(MightyOhmLine::Banner);
    }
    if line.is_empty() {
        return Err(LineError::Empty);
    }
    let mut f: [&[u8]; 7] = [&[]; 7];
    let mut n = 0;
    for (i, field) in fields(line, Some(b',')).enumerate() {
        if i < 7 {
            // Fields after the first are preceded by one space.
            f[i] = if i > 0 {
                field.strip_prefix(b" ").unwrap_or(b"\xff")
            } else {
                field
            };
        }
        n = i + 1;
    }
    if n != 7 {
        return Err(LineError::FieldCount {
            expected: 7,
            found: n,
        });
    }
    let label = |i: usize, want: &'static [u8], what: &'static str| {
        if f[i] == want {
            Ok(())
        } else {
            Err(LineError::Field { index: i, what })
        }
    };
    label(0, b"CPS", "label CPS")?;
    label(2, b"CPM", "label CPM")?;
    label(4, b"uSv/hr", "label uSv/hr")?;
    let cps = parse_u32(f[1]).ok_or(LineError::Field {
        index: 1,
        what: "CPS integer",
    })?;
    let cpm = parse_u32(f[3]).ok_or(LineError::Field {
        index: 3,
        what: "CPM integer",
    })?;
    let usv_centi = parse_centi(f[5]).ok_or(LineError::Field {
        index: 5,
        what: "uSv/hr x.yy",
    })?;
    let mode = match f[6] {
        b"SLOW" => MightyOhmMode::Slow,
        b"FAST" => MightyOhmMode::Fast,
        b"INST" => MightyOhmMode::Inst,
        _ => {
            return Err(LineError::Field {
                index: 6,
                what: "mode SLOW|FAST|INST",
            })
        }
    };
    if cps > MIGHTYOHM_MAX_CPS {
        return Err(LineError::Inconsistent("CPS above 255 (8-bit counter)"));
    }
    if usv_centi != mightyohm_usv_centi(cpm) {
        return Err(LineError::Inconsistent("uSv/hr is not CPM x 57 / 10000"));
    }
    match mode {
        MightyOhmMode::Inst if cpm != cps * 60 => {
            return Err(LineError::Inconsistent("INST but CPM != CPS x 60"))
        }
        MightyOhmMode::Fast if cpm % 12 != 0 || cpm <= MIGHTYOHM_FAST_THRESHOLD => {
            return Err(LineError::Inconsistent(
                "FAST but CPM is no 5-s sum x 12 above 1000",
            ))
        }
        MightyOhmMode::Slow if cpm > 60 * MIGHTYOHM_MAX_CPS => {
            return Err(LineError::Inconsistent("SLOW CPM above 60 x 255"))
        }
        _ => {}
    }
    Ok(MightyOhmLine::Reading(MightyOhmReading {
        cps,
        cpm,
        usv_centi,
        mode,
    }))
}

/// Parses one NetIO GC10 line: the integer CPM and nothing else.
pub fn parse_gc10(line: &[u8]) -> Result<u32, LineError> {
    if line.is_empty() {
        return Err(LineError::Empty);
    }
    parse_u32(line).ok_or(LineError::Field {
        index: 0,
        what: "CPM integer",
    })
}

/// How fields of a grammar line are separated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Separator {
    /// Runs of spaces or tabs.
    Whitespace,
    /// Exactly this byte (e.g. `,` or `;` or `\t`).
    Byte(u8),
}

/// One field of a grammar line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrammarField {
    /// Counts in the interval the line covers → record field `counts: u4`.
    Counts,
    /// Running pulse number → `pulse: u8`.
    Pulse,
    /// Device time in seconds (decimal) → `device_time: f8` (seconds).
    TimeS,
    /// Device time in milliseconds (integer) → `device_time: f8` (seconds).
    TimeMs,
    /// Device time in microseconds (integer) → `device_time: f8` (seconds). Arduino
    /// `micros()` wraps after 2^32 µs (71.6 min); the value is passed on as sent.
    TimeUs,
    /// Any non-empty token, ignored.
    Skip,
}

/// A line grammar for Arduino-style counters: one line per pulse (a time field, no
/// `Counts`) or per interval (a `Counts` field). Lines starting with `comment` are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineGrammar {
    /// Field separator.
    pub separator: Separator,
    /// Fields in order; every line must have exactly these.
    pub fields: Vec<GrammarField>,
    /// Lines starting with this are ignored (e.g. `#`); empty = none.
    pub comment: String,
}

impl Default for LineGrammar {
    fn default() -> Self {
        LineGrammar::pulse_time_us()
    }
}

/// A parsed grammar line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GrammarReading {
    /// `Counts` field.
    pub counts: Option<u32>,
    /// `Pulse` field.
    pub pulse: Option<u64>,
    /// Time field, converted to seconds.
    pub time_s: Option<f64>,
}

impl LineGrammar {
    /// One line per pulse with its `micros()` timestamp.
    pub fn pulse_time_us() -> LineGrammar {
        LineGrammar {
            separator: Separator::Whitespace,
            fields: vec![GrammarField::TimeUs],
            comment: "#".into(),
        }
    }

    /// One line per pulse: `<ms_since_start> <ms_since_last> <count>`
    /// (`RodrigolCasimiro/PIC1:Arduino_Geiger/Arduino_Geiger.ino`).
    pub fn pulse_ms_interval_count() -> LineGrammar {
        LineGrammar {
            separator: Separator::Whitespace,
            fields: vec![
                GrammarField::TimeMs,
                GrammarField::Skip,
                GrammarField::Pulse,
            ],
            comment: "#".into(),
        }
    }

    /// One line per interval with the counts in it.
    pub fn interval_counts() -> LineGrammar {
        LineGrammar {
            separator: Separator::Whitespace,
            fields: vec![GrammarField::Counts],
            comment: "#".into(),
        }
    }

    /// Checks the grammar: 1..=16 fields, at most one of each of Counts, Pulse and a time.
    pub fn validate(&self) -> Result<(), String> {
        if self.fields.is_empty() || self.fields.len() > 16 {
            return Err(format!(
                "a line grammar needs 1..=16 fields, got {}",
                self.fields.len()
            ));
        }
        let count = |f: &dyn Fn(&GrammarField) -> bool| self.fields.iter().filter(|x| f(x)).count();
        if count(&|f| *f == GrammarField::Counts) > 1
            || count(&|f| *f == GrammarField::Pulse) > 1
            || count(&|f| {
                matches!(
                    f,
                    GrammarField::TimeS | GrammarField::TimeMs | GrammarField::TimeUs
                )
            }) > 1
        {
            return Err("at most one counts, one pulse and one time field".into());
        }
        if self.fields.iter().all(|f| *f == GrammarField::Skip) {
            return Err("a line grammar needs a counts, pulse or time field".into());
        }
        Ok(())
    }

    /// Record fields (name, numpy type) in grammar order.
    pub fn record_fields(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.fields.iter().filter_map(|f| match f {
            GrammarField::Counts => Some(("counts", "u4")),
            GrammarField::Pulse => Some(("pulse", "u8")),
            GrammarField::TimeS | GrammarField::TimeMs | GrammarField::TimeUs => {
                Some(("device_time", "f8"))
            }
            GrammarField::Skip => None,
        })
    }

    /// Parses a line; `Ok(None)` for a comment line.
    pub fn parse(&self, line: &[u8]) -> Result<Option<GrammarReading>, LineError> {
        if !self.comment.is_empty() && line.starts_with(self.comment.as_bytes()) {
            return Ok(None);
        }
        if line.iter().all(|&b| b == b' ' || b == b'\t') {
            return Err(LineError::Empty);
        }
        let sep = match self.separator {
            Separator::Whitespace => None,
            Separator::Byte(b) => Some(b),
        };
        let mut r = GrammarReading::default();
        let mut n = 0;
        for (i, tok) in fields(line, sep).enumerate() {
            n = i + 1;
            let Some(kind) = self.fields.get(i) else {
                continue;
            };
            let bad = |what| LineError::Field { index: i, what };
            match kind {
                GrammarField::Counts => {
                    r.counts = Some(parse_u32(tok).ok_or(bad("counts integer"))?)
                }
                GrammarField::Pulse => r.pulse = Some(parse_u64(tok).ok_or(bad("pulse number"))?),
                GrammarField::TimeS => {
                    r.time_s = Some(parse_decimal(tok, false).ok_or(bad("time [s]"))?)
                }
                GrammarField::TimeMs => {
                    r.time_s = Some(parse_u64(tok).ok_or(bad("time [ms] integer"))? as f64 / 1e3)
                }
                GrammarField::TimeUs => {
                    r.time_s = Some(parse_u64(tok).ok_or(bad("time [us] integer"))? as f64 / 1e6)
                }
                GrammarField::Skip if tok.is_empty() => return Err(bad("non-empty field")),
                GrammarField::Skip => {}
            }
        }
        if n != self.fields.len() {
            return Err(LineError::FieldCount {
                expected: self.fields.len(),
                found: n,
            });
        }
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mightyohm_lines() {
        assert_eq!(
            parse_mightyohm(b"mightyohm.com Geiger Counter 1.00"),
            Ok(MightyOhmLine::Banner)
        );
        assert_eq!(
            parse_mightyohm(b"http://mightyohm.com/geiger"),
            Ok(MightyOhmLine::Banner)
        );
        assert_eq!(
            parse_mightyohm(b"CPS, 1, CPM, 19, uSv/hr, 0.10, SLOW"),
            Ok(MightyOhmLine::Reading(MightyOhmReading {
                cps: 1,
                cpm: 19,
                usv_centi: 10,
                mode: MightyOhmMode::Slow
            }))
        );
        assert!(parse_mightyohm(b"CPS, 255, CPM, 15300, uSv/hr, 87.21, INST").is_ok());
        assert!(parse_mightyohm(b"CPS, 30, CPM, 1800, uSv/hr, 10.26, FAST").is_ok());
        // Inconsistent or malformed → error, never a reading.
        for bad in [
            &b"CPS, 1, CPM, 19, uSv/hr, 0.11, SLOW"[..],
            b"CPS, 1, CPM, 19, uSv/hr, 0.1, SLOW",
            b"CPS, 2, CPM, 19, uSv/hr, 0.10, INST",
            b"CPS, 1, CPM, 19, uSv/hr, 0.10, FAST",
            b"CPS, 300, CPM, 19, uSv/hr, 0.10, SLOW",
            b"CPS, 1, CPM, 19, uSv/hr, 0.10",
            b"CPS, 1, CPM, , uSv/hr, 0.00, SLOW",
            b"CPS,1,CPM,19,uSv/hr,0.10,SLOW",
            b"",
        ] {
            assert!(
                parse_mightyohm(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn gc10_and_grammar_lines() {
        assert_eq!(parse_gc10(b"28"), Ok(28));
        assert!(parse_gc10(b"").is_err());
        assert!(parse_gc10(b"2 8").is_err());
        let g = LineGrammar::pulse_ms_interval_count();
        let r = g.parse(b"1234 17 42").unwrap().unwrap();
        assert_eq!((r.time_s, r.pulse, r.counts), (Some(1.234), Some(42), None));
        assert!(g.parse(b"1234 17").is_err());
        assert!(g.parse(b"1234 17 42 9").is_err());
        assert_eq!(g.parse(b"# header"), Ok(None));
        let csv = LineGrammar {
            separator: Separator::Byte(b','),
            fields: vec![GrammarField::TimeS, GrammarField::Counts],
            comment: String::new(),
        };
        let r = csv.parse(b"12.5,7").unwrap().unwrap();
        assert_eq!((r.time_s, r.counts), (Some(12.5), Some(7)));
        assert!(csv.parse(b"12.5,").is_err());
        assert!(LineGrammar {
            fields: vec![GrammarField::Skip],
            ..csv.clone()
        }
        .validate()
        .is_err());
        assert_eq!(
            csv.record_fields().collect::<Vec<_>>(),
            [("device_time", "f8"), ("counts", "u4")]
        );
    }

    fn mightyohm_line() -> impl Strategy<Value = Vec<u8>> {
        (0u32..=255, 0u32..=15300).prop_map(|(cps, cpm)| {
            let u = mightyohm_usv_centi(cpm);
            format!(
                "CPS, {cps}, CPM, {cpm}, uSv/hr, {}.{:02}, SLOW",
                u / 100,
                u % 100
            )
            .into_bytes()
        })
    }

    proptest! {
        #![proptest_config(crate::testing::fixed_seed(0x6c630001))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_mightyohm(&bytes);
            let _ = parse_gc10(&bytes);
            let _ = LineGrammar::pulse_ms_interval_count().parse(&bytes);
            let _ = LineGrammar::interval_counts().parse(&bytes);
        }

        #[test]
        fn truncated_mightyohm_lines_never_give_a_reading(line in mightyohm_line(), cut in 0usize..60) {
            prop_assert!(matches!(parse_mightyohm(&line), Ok(MightyOhmLine::Reading(_))));
            let cut = cut.min(line.len());
            if cut < line.len() {
                // A truncated line is either an error or (cut inside the last number of a
                // consistent line) impossible: the mode word is last, so any cut loses it.
                prop_assert!(parse_mightyohm(&line[..cut]).is_err());
            }
        }

        #[test]
        fn interleaved_lines_never_give_a_reading(a in mightyohm_line(), b in mightyohm_line(), at in 1usize..40) {
            // Bytes of line b spliced into line a (two writers, a lost CR/LF).
            let at = at.min(a.len() - 1);
            let mut mixed = a[..at].to_vec();
            mixed.extend_from_slice(&b);
            prop_assert!(parse_mightyohm(&mixed).is_err());
        }

        #[test]
        fn gc10_reads_exactly_the_number(v in any::<u32>(), junk in "[^0-9]{1,3}") {
            prop_assert_eq!(parse_gc10(v.to_string().as_bytes()), Ok(v));
            let mut bad = v.to_string();
            bad.push_str(&junk);
            prop_assert!(parse_gc10(bad.as_bytes()).is_err());
        }
    }
}
