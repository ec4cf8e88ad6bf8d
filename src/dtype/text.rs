//! Every field type as text, for CSV files and messages.
//!
//! One cell per element (a subarray field `xy: (2,)f4` is the columns `xy[0]`, `xy[1]`; a
//! two-dimensional one `m[0][0]`, `m[0][1]`, …, in numpy's C order):
//! - integers as integers, floats in the shortest form that reads back to the same value,
//!   with an exponent below 1e-4 and from 1e16 on as Python's repr (`1e300`, `1.5e-7`);
//!   `nan`, `inf`, `-inf` spelled as Python reads them;
//! - bool as `True`/`False` (what `str(numpy.bool_)` and `numpy.savetxt(fmt='%s')` write);
//! - complex as `a+bj` (`1.5-2j`, Python's `complex()` reads it);
//! - bytes `S<n>` and unicode `U<n>` as their text with numpy's trailing NULs removed: a
//!   backslash as `\\`, a byte or character below 0x20 (or 0x7f, or a non-ASCII byte of an
//!   `S` field) as `\xNN`, an invalid UCS-4 value as U+FFFD. A cell holding `,` or `"` or
//!   starting or ending with a space is quoted (`"a,b"`, inner `"` doubled), as RFC 4180 and
//!   Python's `csv` module read it.
//!
//! Guarantees: no panic for any bytes; appends to a `String` the caller reserved (no other
//! allocation).

use super::{Base, ByteOrder, Dtype, FieldType, Scalar};
use std::fmt::Write as _;

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = b.len().min(N);
    a[..n].copy_from_slice(&b[..n]);
    a
}

/// The number of type `$t` at the start of `$b`, big-endian when `$big`.
macro_rules! of_bytes {
    ($t:ty, $b:expr, $big:expr) => {{
        let a = arr::<{ std::mem::size_of::<$t>() }>($b);
        if $big {
            <$t>::from_be_bytes(a)
        } else {
            <$t>::from_le_bytes(a)
        }
    }};
}

fn float(out: &mut String, x: f64, as_f32: Option<f32>) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        // Python's repr: an exponent below 1e-4 and from 1e16 on (1e300 in full is 301
        // digits). Both forms are the shortest digits that read back to the same value.
        // Writing into a String cannot fail.
        let _ = match as_f32 {
            Some(f) if f != 0.0 && !(1e-4..1e16).contains(&f.abs()) => write!(out, "{f:e}"),
            Some(f) => write!(out, "{f}"),
            None if x != 0.0 && !(1e-4..1e16).contains(&x.abs()) => write!(out, "{x:e}"),
            None => write!(out, "{x}"),
        };
    }
}

fn number(out: &mut String, s: Scalar, big: bool, b: &[u8]) {
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", of_bytes!($t, b, big));
        }};
    }
    match s {
        Scalar::I8 => int!(i8),
        Scalar::I16 => int!(i16),
        Scalar::I32 => int!(i32),
        Scalar::I64 => int!(i64),
        Scalar::U8 => int!(u8),
        Scalar::U16 => int!(u16),
        Scalar::U32 => int!(u32),
        Scalar::U64 => int!(u64),
        Scalar::F32 => {
            let v = f32_of(b, big);
            float(out, f64::from(v), Some(v));
        }
        Scalar::F64 => float(out, f64_of(b, big), None),
    }
}

fn f32_of(b: &[u8], big: bool) -> f32 {
    of_bytes!(f32, b, big)
}

fn f64_of(b: &[u8], big: bool) -> f64 {
    of_bytes!(f64, b, big)
}

/// `re+imj` / `re-imj` with each part in [`float`]'s form.
fn complex(out: &mut String, re: (f64, Option<f32>), im: (f64, Option<f32>)) {
    float(out, re.0, re.1);
    let neg = im.0.is_sign_negative() && !im.0.is_nan();
    out.push(if neg { '-' } else { '+' });
    float(out, im.0.abs(), im.1.map(f32::abs));
    out.push('j');
}

fn escape(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => out.push(c),
    }
}

/// The text of the element `b` of type `t` (its base and byte order), unquoted.
fn element(out: &mut String, t: &FieldType, b: &[u8]) {
    let big = t.order == ByteOrder::Big;
    match t.base {
        Base::Num(s) => number(out, s, big, b),
        Base::Bool => out.push_str(if b.first().is_some_and(|&x| x != 0) {
            "True"
        } else {
            "False"
        }),
        Base::Complex64 => {
            let (re, im) = (f32_of(b, big), f32_of(b.get(4..).unwrap_or(&[]), big));
            complex(out, (f64::from(re), Some(re)), (f64::from(im), Some(im)));
        }
        Base::Complex128 => complex(
            out,
            (f64_of(b, big), None),
            (f64_of(b.get(8..).unwrap_or(&[]), big), None),
        ),
        Base::Bytes(_) => {
            let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            for &x in &b[..end] {
                if x.is_ascii() {
                    escape(out, char::from(x));
                } else {
                    let _ = write!(out, "\\x{x:02x}");
                }
            }
        }
        Base::Unicode(_) => {
            let code = |c: &[u8]| {
                let a = arr::<4>(c);
                if big {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                }
            };
            let end = b
                .chunks_exact(4)
                .rposition(|c| code(c) != 0)
                .map_or(0, |i| i + 1);
            for c in b.chunks_exact(4).take(end) {
                escape(out, char::from_u32(code(c)).unwrap_or('\u{fffd}'));
            }
        }
    }
}

/// Appends the element as one CSV cell (quoted when it must be).
fn cell(out: &mut String, t: &FieldType, b: &[u8]) {
    let start = out.len();
    element(out, t, b);
    if !matches!(t.base, Base::Bytes(_) | Base::Unicode(_)) {
        return;
    }
    let text = &out[start..];
    let quote = text.contains([',', '"']) || text.starts_with(' ') || text.ends_with(' ');
    if quote {
        // Double each inner quote, then wrap the cell (in place: no new string).
        let mut i = start;
        while i < out.len() {
            if out.as_bytes()[i] == b'"' {
                out.insert(i, '"');
                i += 2;
            } else {
                i += 1;
            }
        }
        out.insert(start, '"');
        out.push('"');
    }
}

impl FieldType {
    /// Appends the text of the field's element `b` (exactly [`Base::size`] bytes), as the
    /// module documentation describes, without CSV quoting.
    pub fn write_element(&self, b: &[u8], out: &mut String) {
        element(out, self, b)
    }
}

impl Dtype {
    /// The CSV column names of a record: a plain field by its name, each element of a
    /// subarray field as `name[i]` (`name[i][j]` for two dimensions, …).
    ///
    /// ```
    /// use daq_engine::dtype::Dtype;
    /// let d = Dtype::parse([("a", "?"), ("m", "(2,2)i2")]).unwrap();
    /// assert_eq!(d.csv_columns(), ["a", "m[0][0]", "m[0][1]", "m[1][0]", "m[1][1]"]);
    /// ```
    pub fn csv_columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.fields {
            let dims = f.ty.shape.dims();
            let mut idx = vec![0u32; dims.len()];
            for _ in 0..f.ty.count() {
                let mut name = f.name.clone();
                for i in &idx {
                    let _ = write!(name, "[{i}]");
                }
                out.push(name);
                // Next index in C order.
                for k in (0..dims.len()).rev() {
                    idx[k] += 1;
                    if idx[k] < dims[k] {
                        break;
                    }
                    idx[k] = 0;
                }
            }
        }
        out
    }

    /// Appends the cells of one record (`record` holds [`Dtype::record_size`] bytes), each
    /// preceded by a comma, in [`Dtype::csv_columns`] order.
    ///
    /// ```
    /// use daq_engine::dtype::Dtype;
    /// let d = Dtype::parse([("ok", "?"), ("name", "S4"), ("z", "c8"), ("h", ">i2")]).unwrap();
    /// let mut rec = vec![1u8, b'a', b',', b'b', 0];
    /// rec.extend(1.5f32.to_le_bytes());
    /// rec.extend((-2f32).to_le_bytes());
    /// rec.extend(300i16.to_be_bytes());
    /// let mut line = String::new();
    /// d.write_csv_cells(&rec, &mut line);
    /// assert_eq!(line, ",True,\"a,b\",1.5-2j,300");
    /// ```
    pub fn write_csv_cells(&self, record: &[u8], out: &mut String) {
        for f in &self.fields {
            let size = f.ty.base.size();
            for k in 0..f.ty.count() {
                out.push(',');
                let at = f.offset + k * size;
                cell(out, &f.ty, record.get(at..at + size).unwrap_or(&[]));
            }
        }
    }
}
