//! Event record types, laid out exactly as numpy structured arrays.
//!
//! A buffer's `data_dtype` is an ordered list of named fields, each a little-endian numpy
//! scalar (`int8` … `uint64`, `float32`, `float64`, or their short forms `i1` … `f8`).
//! Fields are packed in declaration order with no padding, which is what
//! `numpy.dtype([("ch0", "<f4"), ...])` produces, so one record of `data_length` records
//! can be handed to numpy, h5py or HDF5 byte for byte.
//!
//! Guarantees: a [`Dtype`] is never empty, field names are unique and at most
//! [`MAX_FIELD_NAME`] bytes, and the record size is the sum of the field sizes.

use std::fmt;

/// Longest field name a ring header can store.
pub const MAX_FIELD_NAME: usize = 31;
/// Most fields one dtype may have (the ring header's field table has this many rows).
pub const MAX_FIELDS: usize = 64;

/// One numpy scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Scalar {
    /// `int8`, `i1`
    I8 = 1,
    /// `int16`, `i2`
    I16 = 2,
    /// `int32`, `i4`
    I32 = 3,
    /// `int64`, `i8`
    I64 = 4,
    /// `uint8`, `u1`
    U8 = 5,
    /// `uint16`, `u2`
    U16 = 6,
    /// `uint32`, `u4`
    U32 = 7,
    /// `uint64`, `u8`
    U64 = 8,
    /// `float32`, `f4`
    F32 = 9,
    /// `float64`, `f8`
    F64 = 10,
}

impl Scalar {
    /// Every scalar type, in code order.
    pub const ALL: [Scalar; 10] = [
        Scalar::I8,
        Scalar::I16,
        Scalar::I32,
        Scalar::I64,
        Scalar::U8,
        Scalar::U16,
        Scalar::U32,
        Scalar::U64,
        Scalar::F32,
        Scalar::F64,
    ];

    /// Size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 => 8,
        }
    }

    /// The long numpy name (`float32`).
    pub const fn name(self) -> &'static str {
        match self {
            Scalar::I8 => "int8",
            Scalar::I16 => "int16",
            Scalar::I32 => "int32",
            Scalar::I64 => "int64",
            Scalar::U8 => "uint8",
            Scalar::U16 => "uint16",
            Scalar::U32 => "uint32",
            Scalar::U64 => "uint64",
            Scalar::F32 => "float32",
            Scalar::F64 => "float64",
        }
    }

    /// The numpy type string with byte order (`<f4`), as `numpy.dtype.str` prints it.
    pub const fn numpy_str(self) -> &'static str {
        match self {
            Scalar::I8 => "|i1",
            Scalar::I16 => "<i2",
            Scalar::I32 => "<i4",
            Scalar::I64 => "<i8",
            Scalar::U8 => "|u1",
            Scalar::U16 => "<u2",
            Scalar::U32 => "<u4",
            Scalar::U64 => "<u8",
            Scalar::F32 => "<f4",
            Scalar::F64 => "<f8",
        }
    }

    /// The code stored in a ring header.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Scalar::code`].
    pub fn from_code(code: u8) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Parses a numpy type name: `float32`, `f4`, `<f4`, `=f4`, `int16`, `i2`, `uint8`, `u1`,
    /// `double`, `single`, `float` (numpy's float64), `int` (int64).
    pub fn parse(name: &str) -> Result<Scalar, DtypeError> {
        let trimmed = name.trim();
        let bare = trimmed
            .strip_prefix('<')
            .or_else(|| trimmed.strip_prefix('='))
            .or_else(|| trimmed.strip_prefix('|'))
            .unwrap_or(trimmed);
        if trimmed.starts_with('>') {
            return Err(DtypeError::BigEndian(name.to_string()));
        }
        let s = match bare {
            "int8" | "i1" | "b" | "byte" => Scalar::I8,
            "int16" | "i2" | "h" | "short" => Scalar::I16,
            "int32" | "i4" | "i" | "intc" => Scalar::I32,
            "int64" | "i8" | "l" | "q" | "int" | "long" | "longlong" => Scalar::I64,
            "uint8" | "u1" | "B" | "ubyte" => Scalar::U8,
            "uint16" | "u2" | "H" | "ushort" => Scalar::U16,
            "uint32" | "u4" | "I" | "uintc" => Scalar::U32,
            "uint64" | "u8" | "L" | "Q" | "uint" | "ulonglong" => Scalar::U64,
            "float32" | "f4" | "f" | "single" => Scalar::F32,
            "float64" | "f8" | "d" | "double" | "float" => Scalar::F64,
            _ => return Err(DtypeError::UnknownType(name.to_string())),
        };
        Ok(s)
    }
}

/// As its numpy name (`float32`), the way plan.json writes a field's type.
impl serde::Serialize for Scalar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// From a numpy type name ([`Scalar::parse`]); an unknown one is an error.
impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Scalar::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that is one numpy scalar. Implemented for the ten primitive types only.
pub trait Element: Copy + Default + Send + Sync + 'static + private::Sealed {
    /// The matching scalar.
    const SCALAR: Scalar;
}

mod private {
    pub trait Sealed {}
}

macro_rules! element {
    ($($t:ty => $s:ident),*) => {$(
        impl private::Sealed for $t {}
        impl Element for $t { const SCALAR: Scalar = Scalar::$s; }
    )*};
}
element!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32,
         u64 => U64, f32 => F32, f64 => F64);

/// One named field of a record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field's name, as the setup file and numpy call it.
    pub name: String,
    /// Its type.
    pub scalar: Scalar,
    /// Byte offset inside the record (sum of the sizes of the fields before it).
    pub offset: usize,
}

/// What went wrong building a dtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtypeError {
    /// The type name is not a numpy scalar we support.
    #[error("unknown data type '{0}': expected one of int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64 (or i1 … f8)")]
    UnknownType(String),
    /// Big-endian types are not supported.
    #[error("big-endian type '{0}' is not supported: use the little-endian form (e.g. '<i2')")]
    BigEndian(String),
    /// The dtype has no field.
    #[error("a data_dtype needs at least one field")]
    Empty,
    /// Too many fields for the ring header.
    #[error("{0} fields is more than the {MAX_FIELDS} a data_dtype may have")]
    TooManyFields(usize),
    /// A field name is too long.
    #[error("field name '{0}' is longer than {MAX_FIELD_NAME} bytes")]
    NameTooLong(String),
    /// A field name is empty or has a NUL byte.
    #[error("field name '{0}' is empty or contains a NUL byte")]
    BadName(String),
    /// Two fields share a name.
    #[error("field '{0}' appears twice")]
    Duplicate(String),
}

/// An ordered, packed record type: what numpy calls a structured dtype.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dtype {
    fields: Vec<Field>,
    size: usize,
}

impl Dtype {
    /// Builds a dtype from `(name, scalar)` pairs in order.
    ///
    /// ```
    /// use daq_engine::dtype::{Dtype, Scalar};
    /// let d = Dtype::new([("ch0", Scalar::F32), ("flag", Scalar::U8)]).unwrap();
    /// assert_eq!(d.record_size(), 5);
    /// assert_eq!(d.field("flag").unwrap().offset, 4);
    /// ```
    pub fn new<S: Into<String>>(
        fields: impl IntoIterator<Item = (S, Scalar)>,
    ) -> Result<Dtype, DtypeError> {
        let mut out: Vec<Field> = Vec::new();
        let mut offset = 0;
        for (name, scalar) in fields {
            let name = name.into();
            if name.is_empty() || name.contains('\0') {
                return Err(DtypeError::BadName(name));
            }
            if name.len() > MAX_FIELD_NAME {
                return Err(DtypeError::NameTooLong(name));
            }
            if out.iter().any(|f| f.name == name) {
                return Err(DtypeError::Duplicate(name));
            }
            out.push(Field {
                name,
                scalar,
                offset,
            });
            offset += scalar.size();
        }
        if out.is_empty() {
            return Err(DtypeError::Empty);
        }
        if out.len() > MAX_FIELDS {
            return Err(DtypeError::TooManyFields(out.len()));
        }
        Ok(Dtype {
            fields: out,
            size: offset,
        })
    }

    /// Builds a dtype from `(name, numpy type name)` pairs, e.g. `("ch0", "f4")`.
    pub fn parse<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Dtype, DtypeError> {
        let parsed: Result<Vec<_>, _> = fields
            .into_iter()
            .map(|(n, t)| Scalar::parse(t).map(|s| (n.to_string(), s)))
            .collect();
        Dtype::new(parsed?)
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Bytes in one record.
    pub fn record_size(&self) -> usize {
        self.size
    }

    /// A stable 64-bit hash (FNV-1a) of the names, types and offsets, stored in ring headers
    /// so that a reader attaching with another layout is refused.
    pub fn schema_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for f in &self.fields {
            eat(f.name.as_bytes());
            eat(&[0, f.scalar.code()]);
            eat(&(f.offset as u64).to_le_bytes());
        }
        h
    }

    /// The numpy description, e.g. `[('ch0', '<f4'), ('ch1', '<f4')]`.
    pub fn numpy_descr(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("('{}', '{}')", f.name, f.scalar.numpy_str()))
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|x| format!("{}: {}", x.name, x.scalar))
            .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// The metadata record every event carries, as in mimoCoRB2:
/// `counter: int64, timestamp: float64, deadtime: float64` (24 bytes, little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Metadata {
    /// Event number, counted by the Importer from 0.
    pub counter: i64,
    /// Seconds since the Unix epoch when the event was taken.
    pub timestamp: f64,
    /// Dead time: the fraction of the acquisition cycle before this event in which the
    /// source could not take data (waiting for a free slot under `block`).
    pub deadtime: f64,
}

/// The metadata record's dtype.
pub fn metadata_dtype() -> Dtype {
    Dtype::new([
        ("counter", Scalar::I64),
        ("timestamp", Scalar::F64),
        ("deadtime", Scalar::F64),
    ])
    .expect("static metadata dtype is valid")
}

/// A read-only view of one field across the records of an event: `data_length` values of
/// type `T`, `stride` bytes apart. Zero-copy over the slot's bytes; unaligned reads are fine
/// (records are packed like numpy's, so a field need not be aligned).
#[derive(Clone, Copy)]
pub struct Column<'a, T: Element> {
    bytes: &'a [u8],
    offset: usize,
    stride: usize,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

/// What went wrong picking a column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// No field has that name.
    #[error("no field '{0}' in this buffer's data_dtype")]
    NoSuchField(String),
    /// The field has another type than asked.
    #[error("field '{name}' is {actual}, not {wanted}")]
    WrongType {
        /// The field.
        name: String,
        /// Its type.
        actual: Scalar,
        /// The type asked for.
        wanted: Scalar,
    },
    /// The byte slice is not a whole number of records.
    #[error("{bytes} bytes is not {len} records of {record} bytes")]
    WrongSize {
        /// Bytes given.
        bytes: usize,
        /// Records expected.
        len: usize,
        /// Record size.
        record: usize,
    },
}

fn locate<T: Element>(
    dtype: &Dtype,
    bytes_len: usize,
    name: &str,
) -> Result<(usize, usize, usize), ColumnError> {
    let f = dtype
        .field(name)
        .ok_or_else(|| ColumnError::NoSuchField(name.to_string()))?;
    if f.scalar != T::SCALAR {
        return Err(ColumnError::WrongType {
            name: name.to_string(),
            actual: f.scalar,
            wanted: T::SCALAR,
        });
    }
    let stride = dtype.record_size();
    if !bytes_len.is_multiple_of(stride) {
        return Err(ColumnError::WrongSize {
            bytes: bytes_len,
            len: bytes_len / stride,
            record: stride,
        });
    }
    Ok((f.offset, stride, bytes_len / stride))
}

impl<'a, T: Element> Column<'a, T> {
    /// The column `name` of type `T` over `bytes`, which hold whole records of `dtype`.
    ///
    /// ```
    /// use daq_engine::dtype::{Column, Dtype};
    /// let d = Dtype::parse([("a", "f4"), ("b", "i2")]).unwrap();
    /// let mut bytes = vec![0u8; 2 * d.record_size()];
    /// bytes[6..10].copy_from_slice(&1.5f32.to_le_bytes()); // record 1, field a
    /// let a = Column::<f32>::new(&d, &bytes, "a").unwrap();
    /// assert_eq!(a.get(1), Some(1.5));
    /// assert!(Column::<f64>::new(&d, &bytes, "a").is_err());
    /// ```
    pub fn new(dtype: &Dtype, bytes: &'a [u8], name: &str) -> Result<Self, ColumnError> {
        let (offset, stride, len) = locate::<T>(dtype, bytes.len(), name)?;
        Ok(Column {
            bytes,
            offset,
            stride,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// Number of values (the buffer's `data_length`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the event has no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Value `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let at = i * self.stride + self.offset;
        let src = &self.bytes[at..at + T::SCALAR.size()];
        // SAFETY: `src` is exactly size_of::<T>() bytes inside `self.bytes` (checked by the
        // slice index above); every bit pattern is a valid value of the primitive T, and
        // read_unaligned has no alignment requirement.
        Some(unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) })
    }

    /// Iterates over the values.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len).map(move |i| self.get(i).unwrap_or_default())
    }

    /// Copies the values into `out` (de-interleaving), up to `out.len()`; returns how many.
    pub fn copy_to(&self, out: &mut [T]) -> usize {
        let n = out.len().min(self.len);
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.get(i).unwrap_or_default();
        }
        n
    }
}

/// A writable view of one field across the records of an event (see [`Column`]).
pub struct ColumnMut<'a, T: Element> {
    bytes: &'a mut [u8],
    offset: usize,
    stride: usize,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<'a, T: Element> ColumnMut<'a, T> {
    /// The column `name` of type `T` over `bytes`, which hold whole records of `dtype`.
    pub fn new(dtype: &Dtype, bytes: &'a mut [u8], name: &str) -> Result<Self, ColumnError> {
        let (offset, stride, len) = locate::<T>(dtype, bytes.len(), name)?;
        Ok(ColumnMut {
            bytes,
            offset,
            stride,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the event has no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets value `i`; does nothing past the end.
    #[inline]
    pub fn set(&mut self, i: usize, v: T) {
        if i >= self.len {
            return;
        }
        let at = i * self.stride + self.offset;
        let dst = &mut self.bytes[at..at + T::SCALAR.size()];
        // SAFETY: `dst` is exactly size_of::<T>() bytes inside `self.bytes` (checked by the
        // slice index above) and write_unaligned has no alignment requirement.
        unsafe { std::ptr::write_unaligned(dst.as_mut_ptr().cast::<T>(), v) }
    }

    /// Value `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let at = i * self.stride + self.offset;
        let src = &self.bytes[at..at + T::SCALAR.size()];
        // SAFETY: as in Column::get.
        Some(unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) })
    }

    /// Writes `values` into the column (interleaving), up to the shorter length; returns how many.
    pub fn copy_from(&mut self, values: &[T]) -> usize {
        let n = values.len().min(self.len);
        for (i, v) in values[..n].iter().enumerate() {
            self.set(i, *v);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_names_parse_both_forms() {
        for s in Scalar::ALL {
            assert_eq!(Scalar::parse(s.name()).unwrap(), s);
            assert_eq!(Scalar::parse(s.numpy_str()).unwrap(), s);
            assert_eq!(Scalar::from_code(s.code()), Some(s));
        }
        assert_eq!(Scalar::parse("f4").unwrap(), Scalar::F32);
        assert!(matches!(
            Scalar::parse(">f4"),
            Err(DtypeError::BigEndian(_))
        ));
        assert!(matches!(
            Scalar::parse("S10"),
            Err(DtypeError::UnknownType(_))
        ));
    }

    #[test]
    fn layout_is_packed_in_order() {
        let d = Dtype::parse([("a", "int16"), ("b", "f8"), ("c", "u1")]).unwrap();
        let offs: Vec<usize> = d.fields().iter().map(|f| f.offset).collect();
        assert_eq!(offs, vec![0, 2, 10]);
        assert_eq!(d.record_size(), 11);
        assert_eq!(
            d.numpy_descr(),
            "[('a', '<i2'), ('b', '<f8'), ('c', '|u1')]"
        );
    }

    #[test]
    fn bad_dtypes_are_refused() {
        assert_eq!(
            Dtype::new(Vec::<(String, Scalar)>::new()),
            Err(DtypeError::Empty)
        );
        assert!(matches!(
            Dtype::new([("a", Scalar::U8), ("a", Scalar::U8)]),
            Err(DtypeError::Duplicate(_))
        ));
        let long = "x".repeat(MAX_FIELD_NAME + 1);
        assert!(matches!(
            Dtype::new([(long.as_str(), Scalar::U8)]),
            Err(DtypeError::NameTooLong(_))
        ));
    }

    #[test]
    fn schema_hash_sees_names_types_and_order() {
        let a = Dtype::parse([("x", "f4"), ("y", "f4")]).unwrap();
        let b = Dtype::parse([("y", "f4"), ("x", "f4")]).unwrap();
        let c = Dtype::parse([("x", "f4"), ("y", "i4")]).unwrap();
        assert_ne!(a.schema_hash(), b.schema_hash());
        assert_ne!(a.schema_hash(), c.schema_hash());
        assert_eq!(a.schema_hash(), a.clone().schema_hash());
    }

    #[test]
    fn columns_roundtrip_interleaved() {
        let d = Dtype::parse([("a", "u1"), ("b", "f4"), ("c", "i2")]).unwrap();
        let mut bytes = vec![0u8; 5 * d.record_size()];
        {
            let mut b = ColumnMut::<f32>::new(&d, &mut bytes, "b").unwrap();
            assert_eq!(b.copy_from(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 5);
        }
        {
            let mut c = ColumnMut::<i16>::new(&d, &mut bytes, "c").unwrap();
            c.set(4, -7);
        }
        let b = Column::<f32>::new(&d, &bytes, "b").unwrap();
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            Column::<i16>::new(&d, &bytes, "c").unwrap().get(4),
            Some(-7)
        );
        assert_eq!(Column::<u8>::new(&d, &bytes, "a").unwrap().get(2), Some(0));
        assert!(matches!(
            Column::<f32>::new(&d, &bytes[1..], "b"),
            Err(ColumnError::WrongSize { .. })
        ));
    }

    #[test]
    fn metadata_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Metadata>(), 24);
        assert_eq!(metadata_dtype().record_size(), 24);
    }
}
