//! Strict number and field parsing for text-line detectors (line counters, CosmicWatch).
//!
//! Guarantees: a number parses only if every byte belongs to it (no sign where none is
//! allowed, no empty field, no overflow); otherwise `None`. Must never allocate or panic.

/// Unsigned decimal integer, 1..=20 digits, no sign, no spaces; `None` on overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Unsigned decimal integer that fits a `u32`.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// Decimal number `[-]digits[.digits]` (at least one digit before or after the point);
/// `signed` allows a leading `-`. Finite result only.
pub fn parse_decimal(s: &[u8], signed: bool) -> Option<f64> {
    let body = match s {
        [b'-', rest @ ..] if signed => rest,
        _ => s,
    };
    if body.is_empty() || body.len() > 32 {
        return None;
    }
    let mut digits = 0;
    let mut points = 0;
    for &b in body {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => points += 1,
            _ => return None,
        }
    }
    if digits == 0 || points > 1 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Splits on one separator byte, or on runs of spaces/tabs when `sep` is `None`.
pub fn fields(line: &[u8], sep: Option<u8>) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    let mut done = line.is_empty() && sep.is_some();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match sep {
            Some(c) => match rest.iter().position(|&b| b == c) {
                Some(i) => {
                    let f = &rest[..i];
                    rest = &rest[i + 1..];
                    Some(f)
                }
                None => {
                    done = true;
                    Some(rest)
                }
            },
            None => {
                let start = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
                rest = &rest[start..];
                let end = rest
                    .iter()
                    .position(|&b| b == b' ' || b == b'\t')
                    .unwrap_or(rest.len());
                let f = &rest[..end];
                rest = &rest[end..];
                Some(f)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u32(b"28"), Some(28));
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"+1"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_decimal(b"-3.5", true), Some(-3.5));
        assert_eq!(parse_decimal(b"-3.5", false), None);
        assert_eq!(parse_decimal(b".", false), None);
        assert_eq!(parse_decimal(b"1e5", false), None);
        assert_eq!(parse_decimal(b"1.2.3", false), None);
        let v: Vec<&[u8]> = fields(b"  a b\t\tc ", None).collect();
        assert_eq!(v, [&b"a"[..], b"b", b"c"]);
        let v: Vec<&[u8]> = fields(b"a,,b", Some(b',')).collect();
        assert_eq!(v, [&b"a"[..], b"", b"b"]);
    }
}
