//! Reading and writing one numeric field of an event as numbers, whatever its numpy type.
//!
//! A waveform buffer has one field per channel (`ch0: f4`, `IN1: int16`, …); a feature
//! buffer has one field per quantity. [`FieldAccess`] is located once, in a function's
//! constructor, and then converts a whole channel into an `f32` scratch slice (or back) with
//! the type dispatch hoisted out of the sample loop.
//!
//! Guarantees: no allocation and no panic for any byte content; reads past the last record
//! are not made (the caller's slice length bounds the work). Integer stores round to the
//! nearest value and saturate at the type's range (NaN stores as 0).

use crate::dtype::{ByteOrder, Field, FieldType, Scalar};
use crate::worker::{
    BufferShape, BuildContext, ConfigError, Key, MaybeKey, Strings, WiringError, WorkerError,
};

/// Where one field lives in each record, and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldAccess {
    /// The field's name.
    pub name: String,
    /// Its numpy type.
    pub scalar: Scalar,
    /// Byte offset inside a record.
    pub offset: usize,
    /// Record size in bytes.
    pub stride: usize,
}

macro_rules! each_scalar {
    ($s:expr, $m:ident) => {
        match $s {
            Scalar::I8 => $m!(i8, 1),
            Scalar::I16 => $m!(i16, 2),
            Scalar::I32 => $m!(i32, 4),
            Scalar::I64 => $m!(i64, 8),
            Scalar::U8 => $m!(u8, 1),
            Scalar::U16 => $m!(u16, 2),
            Scalar::U32 => $m!(u32, 4),
            Scalar::U64 => $m!(u64, 8),
            Scalar::F32 => $m!(f32, 4),
            Scalar::F64 => $m!(f64, 8),
        }
    };
}

impl FieldAccess {
    /// The field `name` of `buffer`, or an error naming the buffer and its fields.
    pub fn new(buffer: &BufferShape, name: &str) -> Result<FieldAccess, WorkerError> {
        let f = buffer
            .dtype
            .field(name)
            .ok_or_else(|| WiringError::NoField {
                buffer: buffer.name.clone(),
                field: name.into(),
                fields: field_names(buffer),
            })?;
        FieldAccess::of(buffer, f)
    }

    /// The accessor of field `f` of `buffer`; an error naming the field and its type when it
    /// is not a plain little-endian number (bool, complex, text, big-endian, subarray): the
    /// numeric built-ins refuse such a field rather than misread its bytes.
    fn of(buffer: &BufferShape, f: &Field) -> Result<FieldAccess, WorkerError> {
        let scalar = f.ty.scalar().ok_or_else(|| WiringError::NotANumber {
            buffer: buffer.name.clone(),
            field: f.name.clone(),
            ty: f.ty.to_string(),
            kind: describe(&f.ty),
        })?;
        Ok(FieldAccess {
            name: f.name.clone(),
            scalar,
            offset: f.offset,
            stride: buffer.dtype.record_size(),
        })
    }

    /// True for the integer types (ADC counts), false for float32/float64.
    pub fn is_integer(&self) -> bool {
        !matches!(self.scalar, Scalar::F32 | Scalar::F64)
    }

    /// True for the unsigned integer types (ADC counts in offset binary).
    pub fn is_unsigned(&self) -> bool {
        matches!(
            self.scalar,
            Scalar::U8 | Scalar::U16 | Scalar::U32 | Scalar::U64
        )
    }

    /// Converts the field of the first `out.len()` records of `data` to `f32` into `out`;
    /// returns how many values were written (fewer when `data` holds fewer records).
    #[inline]
    pub fn load(&self, data: &[u8], out: &mut [f32]) -> usize {
        let Some(tail) = data.get(self.offset..) else {
            return 0;
        };
        let mut n = 0;
        macro_rules! load {
            ($t:ty, $w:expr) => {{
                for (o, rec) in out.iter_mut().zip(tail.chunks(self.stride)) {
                    let Some(b) = rec.get(..$w) else { break };
                    let mut a = [0u8; $w];
                    a.copy_from_slice(b);
                    *o = <$t>::from_le_bytes(a) as f32;
                    n += 1;
                }
            }};
        }
        each_scalar!(self.scalar, load);
        n
    }

    /// Writes `values` into the field of the first `values.len()` records of `data`
    /// (rounding and saturating for integer types); returns how many were written.
    #[inline]
    pub fn store(&self, data: &mut [u8], values: &[f32]) -> usize {
        let Some(tail) = data.get_mut(self.offset..) else {
            return 0;
        };
        let mut n = 0;
        let int = self.is_integer();
        macro_rules! store {
            ($t:ty, $w:expr) => {{
                for (v, rec) in values.iter().zip(tail.chunks_mut(self.stride)) {
                    let Some(b) = rec.get_mut(..$w) else { break };
                    let x = if int { v.round() } else { *v };
                    b.copy_from_slice(&(x as $t).to_le_bytes());
                    n += 1;
                }
            }};
        }
        each_scalar!(self.scalar, store);
        n
    }

    /// Record `i`'s value as `f64` (integers exactly up to 2^53), or `None` past the end.
    #[inline]
    pub fn get(&self, data: &[u8], i: usize) -> Option<f64> {
        let at = i.checked_mul(self.stride)?.checked_add(self.offset)?;
        macro_rules! get {
            ($t:ty, $w:expr) => {{
                let b = data.get(at..at + $w)?;
                let mut a = [0u8; $w];
                a.copy_from_slice(b);
                Some(<$t>::from_le_bytes(a) as f64)
            }};
        }
        each_scalar!(self.scalar, get)
    }

    /// Sets record `i`'s value (rounding and saturating for integer types); does nothing past
    /// the end.
    #[inline]
    pub fn set(&self, data: &mut [u8], i: usize, v: f64) {
        let Some(at) = i
            .checked_mul(self.stride)
            .and_then(|a| a.checked_add(self.offset))
        else {
            return;
        };
        let int = self.is_integer();
        macro_rules! set {
            ($t:ty, $w:expr) => {{
                if let Some(b) = data.get_mut(at..at + $w) {
                    let x = if int { v.round() } else { v };
                    b.copy_from_slice(&(x as $t).to_le_bytes());
                }
            }};
        }
        each_scalar!(self.scalar, set)
    }

    /// Writes record `i`'s value as text into `out`: integers as integers, floats in the
    /// shortest form that reads back exactly. Returns `false` past the end.
    pub fn write_text(&self, data: &[u8], i: usize, out: &mut impl std::fmt::Write) -> bool {
        let Some(at) = i
            .checked_mul(self.stride)
            .and_then(|a| a.checked_add(self.offset))
        else {
            return false;
        };
        macro_rules! text {
            ($t:ty, $w:expr) => {{
                let Some(b) = data.get(at..at + $w) else {
                    return false;
                };
                let mut a = [0u8; $w];
                a.copy_from_slice(b);
                write!(out, "{}", <$t>::from_le_bytes(a)).is_ok()
            }};
        }
        each_scalar!(self.scalar, text)
    }
}

/// What kind of non-numeric (for the built-ins) field type `t` is, in words.
fn describe(t: &FieldType) -> String {
    let mut parts = vec![t.base.kind()];
    if t.order == ByteOrder::Big {
        parts.push("big-endian".into());
    }
    if !t.shape.is_scalar() {
        parts.push(format!("a subarray of shape {}", t.shape_str()));
    }
    parts.join(", ")
}

/// The buffer's field names, comma-separated, for messages.
pub fn field_names(buffer: &BufferShape) -> String {
    buffer
        .dtype
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The channels named by config key `key` (a list of field names, or one name), or every
/// field of `buffer` when the key is absent.
pub fn channels(
    ctx: &BuildContext,
    key: MaybeKey<Strings>,
    buffer: &BufferShape,
) -> Result<Vec<FieldAccess>, WorkerError> {
    match ctx.config.get(key)? {
        None => buffer
            .dtype
            .fields()
            .iter()
            .map(|f| FieldAccess::of(buffer, f))
            .collect(),
        Some(names) if names.is_empty() => Err(ctx
            .config
            .error(key.name, "is an empty list: name at least one channel")
            .into()),
        Some(names) => names
            .iter()
            .map(|n| match buffer.dtype.field(n) {
                Some(f) => FieldAccess::of(buffer, f)
                    .map_err(|e| WorkerError::from(ctx.config.error(key.name, e.to_string()))),
                None => Err(WorkerError::from(ctx.config.error(
                    key.name,
                    format!(
                        "buffer '{}' has no field '{n}' (its fields: {})",
                        buffer.name,
                        field_names(buffer)
                    ),
                ))),
            })
            .collect(),
    }
}

/// The one source buffer of a function that takes exactly one.
pub fn one_source(ctx: &BuildContext) -> Result<&BufferShape, WorkerError> {
    match ctx.sources.as_slice() {
        [s] => Ok(s),
        other => Err(count(ctx, "one source buffer", other.len())),
    }
}

/// The one sink buffer of a function that takes exactly one.
pub fn one_sink(ctx: &BuildContext) -> Result<&BufferShape, WorkerError> {
    match ctx.sinks.as_slice() {
        [s] => Ok(s),
        other => Err(count(ctx, "one sink buffer", other.len())),
    }
}

/// Worker `ctx` needs exactly `want` and has `has`.
pub fn count(ctx: &BuildContext, want: &'static str, has: usize) -> WorkerError {
    WiringError::Count {
        worker: ctx.worker.clone(),
        want,
        has,
    }
    .into()
}

/// The buffer an Observer looks at: its one observed buffer (or, for tests built with
/// [`BuildContext::for_test`], its one source).
pub fn one_source_or_observed(ctx: &BuildContext) -> Result<&BufferShape, WorkerError> {
    match (ctx.observes.as_slice(), ctx.sources.as_slice()) {
        ([o], _) => Ok(o),
        ([], [s]) => Ok(s),
        _ => Err(count(ctx, "one observed buffer", ctx.observes.len())),
    }
}

/// Checks that every sink has the source's dtype and data_length (Filters copy events).
pub fn sinks_like_source(ctx: &BuildContext, source: &BufferShape) -> Result<(), WorkerError> {
    if ctx.sinks.is_empty() {
        return Err(WiringError::NoSink {
            worker: ctx.worker.clone(),
        }
        .into());
    }
    for s in &ctx.sinks {
        if s.dtype != source.dtype || s.data_length != source.data_length {
            return Err(WiringError::UnlikeSource {
                worker: ctx.worker.clone(),
                sink: s.name.clone(),
                sink_shape: format!("{} × {}", s.data_length, s.dtype),
                source_buffer: source.name.clone(),
                source_shape: format!("{} × {}", source.data_length, source.dtype),
            }
            .into());
        }
    }
    Ok(())
}

/// Checks that `sink` (`what`, to the user) has data_length 1: one record `per` result.
pub fn one_record(
    ctx: &BuildContext,
    sink: &BufferShape,
    what: &'static str,
    per: &'static str,
) -> Result<(), WiringError> {
    if sink.data_length == 1 {
        return Ok(());
    }
    Err(WiringError::NotOneRecord {
        worker: ctx.worker.clone(),
        what,
        sink: sink.name.clone(),
        per,
        has: sink.data_length,
    })
}

/// Checks a feature sink: data_length 1 and every field one of `allowed`; returns, per field,
/// its accessor and its position in `allowed`.
pub fn feature_fields(
    ctx: &BuildContext,
    sink: &BufferShape,
    allowed: &[&str],
) -> Result<Vec<(FieldAccess, usize)>, WorkerError> {
    one_record(ctx, sink, "feature sink", "result")?;
    sink.dtype
        .fields()
        .iter()
        .map(|f| {
            let k = allowed.iter().position(|a| *a == f.name).ok_or_else(|| {
                WiringError::UnknownOutput {
                    worker: ctx.worker.clone(),
                    sink: sink.name.clone(),
                    field: f.name.clone(),
                    function: "this function",
                    allowed: allowed.join(", "),
                }
            })?;
            Ok((FieldAccess::new(sink, &f.name)?, k))
        })
        .collect()
}

/// As [`feature_fields`], for a sink that must have the field `allowed[required]`; the
/// message for one without it adds `example` (e.g. " (e.g. rate: float64)", or empty).
pub fn feature_fields_needing(
    ctx: &BuildContext,
    sink: &BufferShape,
    allowed: &[&'static str],
    required: usize,
    example: &'static str,
) -> Result<Vec<(FieldAccess, usize)>, WorkerError> {
    let outputs = feature_fields(ctx, sink, allowed)?;
    if !outputs.iter().any(|(_, k)| *k == required) {
        return Err(WiringError::MissingOutput {
            worker: ctx.worker.clone(),
            sink: sink.name.clone(),
            field: allowed[required],
            example,
        }
        .into());
    }
    Ok(outputs)
}

/// Writes one feature record into `data`: each of `outputs` (field and position, as
/// [`feature_fields`] returns them) gets `value(k)` of its position `k` in the allowed names.
pub fn set_features(
    outputs: &[(FieldAccess, usize)],
    data: &mut [u8],
    value: impl Fn(usize) -> f64,
) {
    for (f, k) in outputs {
        f.set(data, 0, value(*k));
    }
}

/// A config value that must be one of `choices`.
pub fn choice<'a>(
    ctx: &'a BuildContext,
    key: Key<str>,
    choices: &[&str],
) -> Result<&'a str, ConfigError> {
    let v = ctx.config.get(key)?;
    if choices.contains(&v) {
        Ok(v)
    } else {
        Err(ctx.config.error(
            key.name,
            format!("'{v}' is not one of: {}", choices.join(", ")),
        ))
    }
}

/// A number that must be finite and strictly positive.
pub fn positive(ctx: &BuildContext, key: Key<f64>) -> Result<f64, ConfigError> {
    let v = ctx.config.get(key)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ctx
            .config
            .error(key.name, format!("must be a number > 0, found {v}")))
    }
}

/// A time key that must be above 0 and at most a year (see
/// [`crate::worker::Config::duration`]): its value in seconds, for a time finer than a
/// duration's nanoseconds (a sample interval).
pub fn positive_time(ctx: &BuildContext, key: Key<f64>) -> Result<f64, ConfigError> {
    let seconds = positive(ctx, key)?;
    ctx.config.duration(key.name, seconds)?;
    Ok(seconds)
}

/// A time key that must be above 0: its value as a duration (at most a year, see
/// [`crate::worker::Config::duration`]).
pub fn positive_seconds(
    ctx: &BuildContext,
    key: Key<f64>,
) -> Result<std::time::Duration, ConfigError> {
    ctx.config.duration(key.name, positive(ctx, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;

    fn shape() -> BufferShape {
        BufferShape {
            name: "raw".into(),
            dtype: Dtype::parse([("a", "i2"), ("b", "f4"), ("c", "u1")]).unwrap(),
            data_length: 3,
        }
    }

    #[test]
    fn load_store_round_trip_and_saturate() {
        let s = shape();
        let mut data = vec![0u8; 3 * s.dtype.record_size()];
        let a = FieldAccess::new(&s, "a").unwrap();
        let b = FieldAccess::new(&s, "b").unwrap();
        let c = FieldAccess::new(&s, "c").unwrap();
        assert_eq!(a.store(&mut data, &[1.4, -2.6, 1e9]), 3);
        assert_eq!(b.store(&mut data, &[0.25, 0.5, 0.75]), 3);
        assert_eq!(c.store(&mut data, &[-5.0, 255.4, f32::NAN]), 3);
        let mut out = [0f32; 4];
        assert_eq!(a.load(&data, &mut out), 3);
        assert_eq!(&out[..3], &[1.0, -3.0, 32767.0]);
        assert_eq!(b.load(&data, &mut out), 3);
        assert_eq!(&out[..3], &[0.25, 0.5, 0.75]);
        assert_eq!(c.load(&data, &mut out), 3);
        assert_eq!(&out[..3], &[0.0, 255.0, 0.0]);
        assert_eq!(b.get(&data, 2), Some(0.75));
        assert_eq!(b.get(&data, 3), None);
        let mut t = String::new();
        assert!(a.write_text(&data, 1, &mut t));
        assert_eq!(t, "-3");
        assert!(!a.write_text(&data, 3, &mut t));
        assert_eq!(a.load(&data[..5], &mut out), 1);
    }

    #[test]
    fn missing_field_is_named() {
        let e = FieldAccess::new(&shape(), "ch9").unwrap_err().to_string();
        assert!(
            e.contains("'raw'") && e.contains("ch9") && e.contains("a, b, c"),
            "{e}"
        );
    }

    /// Wiring mistakes are typed (issue 18: errors as enums, not text): a caller can tell a
    /// missing field from a wrong buffer count without reading the message.
    #[test]
    fn wiring_mistakes_have_a_kind() {
        assert!(matches!(
            FieldAccess::new(&shape(), "ch9"),
            Err(WorkerError::Wiring(WiringError::NoField { ref field, .. })) if field == "ch9"
        ));
        let ctx = BuildContext::for_test("w", serde_json::json!({}), vec![], vec![]);
        let e = one_source(&ctx).unwrap_err();
        assert!(
            matches!(e, WorkerError::Wiring(WiringError::Count { has: 0, .. })),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "worker 'w' needs exactly one source buffer, has 0"
        );
    }
}
