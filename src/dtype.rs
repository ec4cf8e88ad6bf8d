//! Event record types, laid out exactly as numpy structured arrays.
//!
//! A buffer's `data_dtype` is an ordered list of named fields. Each field is any numpy type a
//! mimoCoRB2 buffer can hold ([`FieldType`]): a number (`int8` … `uint64`, `float32`,
//! `float64`, short forms `i1` … `f8`), `bool` (`?`, `b1`), complex (`c8`/`complex64`,
//! `c16`/`complex128`), fixed-length bytes (`S10`, `a10`) or unicode text (`U4`, UCS-4: four
//! bytes a character), with an explicit byte order (`<`, `>`, `=`, `|`) where it matters, and
//! a subarray shape in front (`(2,)f4`, `(2,3)i2`, `2f4`). The type text is what
//! `numpy.dtype` accepts, because mimoCoRB2 builds its buffers with
//! `numpy.dtype([(name, text) for name, text in data_dtype.items()])`.
//!
//! Fields are packed in declaration order with no padding, which is what
//! `numpy.dtype([("ch0", "<f4"), ...])` produces, so the `data_length` records of an event can
//! be handed to numpy, h5py or HDF5 byte for byte.
//!
//! Guarantees: a [`Dtype`] is never empty, field names are unique and at most
//! [`MAX_FIELD_NAME`] bytes, every field is at least one byte, and the record size is the sum
//! of the field sizes and fits a `u32` (the ring header stores offsets as `u32`).

use std::fmt;

mod text;

/// Longest field name a ring header can store.
pub const MAX_FIELD_NAME: usize = 31;
/// Most fields one dtype may have (the ring header's field table has this many rows).
pub const MAX_FIELDS: usize = 64;
/// Most dimensions of a subarray field (the ring header stores this many).
pub const MAX_DIMS: usize = 4;
/// Largest record, in bytes (offsets are stored as `u32`).
pub const MAX_RECORD_SIZE: usize = u32::MAX as usize;

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

    /// Parses a numpy type name of a plain little-endian number: `float32`, `f4`, `<f4`,
    /// `=f4`, `int16`, `i2`, `uint8`, `u1`, `double`, `single`, `float` (numpy's float64),
    /// `int` (int64). Any other type numpy knows (`>f4`, `bool`, `S10`, `(2,)f4`) is
    /// [`DtypeError::NotANumber`]; see [`FieldType::parse`] for those.
    pub fn parse(name: &str) -> Result<Scalar, DtypeError> {
        let t = FieldType::parse(name)?;
        t.scalar()
            .ok_or_else(|| DtypeError::NotANumber(name.trim().to_string(), t))
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

/// What one element of a field is, apart from its byte order and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    /// A real number ([`Scalar`]).
    Num(Scalar),
    /// `bool`, `?`, `b1`: one byte, 0 or 1.
    Bool,
    /// `complex64`, `c8`: two `float32`, real then imaginary.
    Complex64,
    /// `complex128`, `c16`: two `float64`, real then imaginary.
    Complex128,
    /// `S<n>` (`a<n>`): n bytes, NUL-padded, no byte order.
    Bytes(u32),
    /// `U<n>`: n characters of UCS-4 (4 bytes each, in the field's byte order), NUL-padded.
    Unicode(u32),
}

impl Base {
    /// Bytes of one element.
    pub const fn size(self) -> usize {
        match self {
            Base::Num(s) => s.size(),
            Base::Bool => 1,
            Base::Complex64 => 8,
            Base::Complex128 => 16,
            Base::Bytes(n) => n as usize,
            Base::Unicode(n) => 4 * n as usize,
        }
    }

    /// True when the byte order changes the bytes (multi-byte numbers, complex, unicode).
    pub const fn has_byte_order(self) -> bool {
        match self {
            Base::Num(s) => s.size() > 1,
            Base::Bool | Base::Bytes(_) => false,
            Base::Complex64 | Base::Complex128 | Base::Unicode(_) => true,
        }
    }

    /// The code stored in a ring header's field table: [`Scalar::code`] (1 … 10) for
    /// numbers, then 11 bool, 12 complex64, 13 complex128, 14 bytes, 15 unicode.
    pub const fn code(self) -> u8 {
        match self {
            Base::Num(s) => s.code(),
            Base::Bool => 11,
            Base::Complex64 => 12,
            Base::Complex128 => 13,
            Base::Bytes(_) => 14,
            Base::Unicode(_) => 15,
        }
    }

    /// Inverse of [`Base::code`]; `len` is the string length for codes 14 and 15.
    pub fn from_code(code: u8, len: u32) -> Option<Base> {
        Some(match code {
            11 => Base::Bool,
            12 => Base::Complex64,
            13 => Base::Complex128,
            14 if len > 0 => Base::Bytes(len),
            15 if len > 0 => Base::Unicode(len),
            c => Base::Num(Scalar::from_code(c)?),
        })
    }

    /// The string length of `S<n>`/`U<n>`, 0 for the others.
    pub const fn text_len(self) -> u32 {
        match self {
            Base::Bytes(n) | Base::Unicode(n) => n,
            _ => 0,
        }
    }

    /// A word for messages: "bool", "fixed-length bytes S10", …
    pub fn kind(self) -> String {
        match self {
            Base::Num(s) => s.name().to_string(),
            Base::Bool => "bool".into(),
            Base::Complex64 => "complex64".into(),
            Base::Complex128 => "complex128".into(),
            Base::Bytes(n) => format!("fixed-length bytes S{n}"),
            Base::Unicode(n) => format!("unicode text U{n}"),
        }
    }
}

/// The byte order of a field's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// `<` (also `=` and `|`: every machine this runs on is little-endian).
    #[default]
    Little,
    /// `>`.
    Big,
}

/// The shape of a subarray field: 0 dimensions for a plain field, else 1 ..= [`MAX_DIMS`]
/// dimensions, each ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    ndim: u8,
    dims: [u32; MAX_DIMS],
}

impl Shape {
    /// A plain (not subarray) field.
    pub const SCALAR: Shape = Shape {
        ndim: 0,
        dims: [0; MAX_DIMS],
    };

    /// A shape of `dims`; None when there are more than [`MAX_DIMS`] or one is 0.
    pub fn new(dims: &[u32]) -> Option<Shape> {
        if dims.len() > MAX_DIMS || dims.contains(&0) {
            return None;
        }
        let mut s = Shape::SCALAR;
        s.ndim = dims.len() as u8;
        s.dims[..dims.len()].copy_from_slice(dims);
        Some(s)
    }

    /// The dimensions (empty for a plain field).
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.ndim as usize]
    }

    /// Elements in one record's field (1 for a plain field); None on overflow.
    pub fn count(&self) -> Option<usize> {
        self.dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
    }

    /// True for a plain field.
    pub fn is_scalar(&self) -> bool {
        self.ndim == 0
    }
}

/// The type of one field: its elements, their byte order, and the subarray shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldType {
    /// What each element is.
    pub base: Base,
    /// Byte order; always [`ByteOrder::Little`] when the base has none
    /// ([`Base::has_byte_order`]), as numpy normalises `>i1` to `|i1`.
    pub order: ByteOrder,
    /// Subarray shape ([`Shape::SCALAR`] for a plain field).
    pub shape: Shape,
}

impl From<Scalar> for FieldType {
    fn from(s: Scalar) -> FieldType {
        FieldType::plain(Base::Num(s))
    }
}

impl FieldType {
    /// A little-endian, plain field of `base`.
    pub const fn plain(base: Base) -> FieldType {
        FieldType {
            base,
            order: ByteOrder::Little,
            shape: Shape::SCALAR,
        }
    }

    /// Builds a field type, normalising the byte order of order-less bases; None when its
    /// size is 0 or does not fit [`MAX_RECORD_SIZE`].
    pub fn new(base: Base, order: ByteOrder, shape: Shape) -> Option<FieldType> {
        let order = if base.has_byte_order() {
            order
        } else {
            ByteOrder::Little
        };
        let t = FieldType { base, order, shape };
        match t.checked_size() {
            Some(n) if n > 0 && n <= MAX_RECORD_SIZE => Some(t),
            _ => None,
        }
    }

    fn checked_size(&self) -> Option<usize> {
        self.shape.count()?.checked_mul(self.base.size())
    }

    /// Bytes the field takes in a record.
    pub fn size(&self) -> usize {
        self.checked_size().unwrap_or(usize::MAX)
    }

    /// Elements in the field (1 unless it is a subarray).
    pub fn count(&self) -> usize {
        self.shape.count().unwrap_or(usize::MAX)
    }

    /// The number type, when this is a plain little-endian number: the only kind the
    /// numeric built-ins (filters, pulse finding, histograms, …) read and write.
    pub fn scalar(&self) -> Option<Scalar> {
        match self.base {
            Base::Num(s) if self.order == ByteOrder::Little && self.shape.is_scalar() => Some(s),
            _ => None,
        }
    }

    /// The numpy type string of one element with its byte order, as `numpy.dtype.str`
    /// prints it: `<f4`, `>i2`, `|b1`, `|S10`, `<U4`, `<c8`.
    pub fn element_str(&self) -> String {
        let o = if !self.base.has_byte_order() {
            '|'
        } else if self.order == ByteOrder::Big {
            '>'
        } else {
            '<'
        };
        let code = match self.base {
            Base::Num(s) => return format!("{o}{}", &s.numpy_str()[1..]),
            Base::Bool => "b1".to_string(),
            Base::Complex64 => "c8".to_string(),
            Base::Complex128 => "c16".to_string(),
            Base::Bytes(n) => format!("S{n}"),
            Base::Unicode(n) => format!("U{n}"),
        };
        format!("{o}{code}")
    }

    /// The shape as numpy writes it: `(2,)`, `(2, 3)`; empty for a plain field.
    pub fn shape_str(&self) -> String {
        match self.shape.dims() {
            [] => String::new(),
            [d] => format!("({d},)"),
            dims => format!(
                "({})",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// One string numpy reads as this type, e.g. `(2,)<f4` (shape, then element); what a
    /// Python worker hands to `numpy.dtype([(name, text), …])`.
    pub fn numpy_spec(&self) -> String {
        format!(
            "{}{}",
            self.shape_str().replace(' ', ""),
            self.element_str()
        )
    }

    /// Parses a field type as `numpy.dtype` reads the text of a data_dtype entry (see the
    /// module documentation). The byte order may stand before the shape (`>(2,)f4`) or
    /// before the element (`(2,)>f4`).
    ///
    /// ```
    /// use daq_engine::dtype::{Base, ByteOrder, FieldType, Scalar};
    /// let t = FieldType::parse("(2,3)>i2").unwrap();
    /// assert_eq!(t.base, Base::Num(Scalar::I16));
    /// assert_eq!(t.order, ByteOrder::Big);
    /// assert_eq!(t.shape.dims(), &[2, 3]);
    /// assert_eq!(t.size(), 12);
    /// assert_eq!(FieldType::parse("U4").unwrap().size(), 16);
    /// assert!(FieldType::parse("S").is_err()); // numpy's S0: no room for any byte
    /// ```
    pub fn parse(text: &str) -> Result<FieldType, DtypeError> {
        let t = text.trim();
        let unknown = || DtypeError::UnknownType(text.to_string());
        let (outer, rest) = split_order(t);
        let (dims, elem) = if let Some(inner) = rest.strip_prefix('(') {
            let close = inner
                .find(')')
                .ok_or_else(|| DtypeError::BadShape(text.to_string()))?;
            let dims = parse_dims(&inner[..close], true)
                .ok_or_else(|| DtypeError::BadShape(text.to_string()))?;
            (dims, inner[close + 1..].trim_start())
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            // numpy's `2f4` and `2,3f4`: a count or shape without parentheses.
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
                .ok_or_else(unknown)?;
            let dims = parse_dims(&rest[..end], false)
                .ok_or_else(|| DtypeError::BadShape(text.to_string()))?;
            (dims, rest[end..].trim_start())
        } else {
            (Vec::new(), rest)
        };
        let (inner, elem) = split_order(elem);
        let order = match (outer, inner) {
            (Some(a), Some(b)) if a != b => return Err(DtypeError::BadShape(text.to_string())),
            (a, b) => a.or(b).unwrap_or(ByteOrder::Little),
        };
        let base = parse_base(elem).map_err(|e| match e {
            Some(e) => e,
            None => unknown(),
        })?;
        if dims.len() > MAX_DIMS {
            return Err(DtypeError::TooManyDims(text.to_string()));
        }
        let shape = Shape::new(&dims).ok_or_else(|| DtypeError::BadShape(text.to_string()))?;
        FieldType::new(base, order, shape).ok_or_else(|| DtypeError::TooLarge(text.to_string()))
    }
}

/// The leading byte-order character, if any: `<`, `=` and `|` are little-endian here.
fn split_order(t: &str) -> (Option<ByteOrder>, &str) {
    match t.chars().next() {
        Some('<') | Some('=') | Some('|') => (Some(ByteOrder::Little), &t[1..]),
        Some('>') => (Some(ByteOrder::Big), &t[1..]),
        _ => (None, t),
    }
}

/// `2, 3` or `2,` (with `paren`, `()` is a plain field); None on anything else.
fn parse_dims(s: &str, paren: bool) -> Option<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() {
        return paren.then(Vec::new);
    }
    let s = s.strip_suffix(',').unwrap_or(s);
    s.split(',').map(|d| d.trim().parse::<u32>().ok()).collect()
}

/// One element type; `Err(None)` for a name that is no type at all.
fn parse_base(e: &str) -> Result<Base, Option<DtypeError>> {
    let b = match e {
        "bool" | "bool_" | "?" | "b1" => Base::Bool,
        "complex64" | "c8" | "F" | "csingle" | "singlecomplex" => Base::Complex64,
        "complex128" | "c16" | "D" | "cdouble" | "complex" | "cfloat" | "complex_" => {
            Base::Complex128
        }
        _ => {
            // The length of S<n>, a<n>, U<n>: none (or 0) is numpy's empty field; digits past
            // u32 are a field too large; anything else after the letter is no type.
            let string = |prefixes: &[&str]| {
                prefixes.iter().find_map(|p| e.strip_prefix(p)).map(|n| {
                    if !n.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(None);
                    }
                    if n.bytes().all(|b| b == b'0') {
                        return Err(Some(DtypeError::NoLength(e.to_string())));
                    }
                    n.parse::<u32>()
                        .map_err(|_| Some(DtypeError::TooLarge(e.to_string())))
                })
            };
            if matches!(
                e,
                "str" | "str_" | "unicode" | "unicode_" | "bytes" | "bytes_"
            ) {
                // numpy makes these 0-byte fields.
                return Err(Some(DtypeError::NoLength(e.to_string())));
            }
            if let Some(n) = string(&["S", "a"]) {
                Base::Bytes(n?)
            } else if let Some(n) = string(&["U"]) {
                Base::Unicode(n?)
            } else {
                Base::Num(scalar_name(e).ok_or(None)?)
            }
        }
    };
    Ok(b)
}

fn scalar_name(bare: &str) -> Option<Scalar> {
    Some(match bare {
        "int8" | "i1" | "b" | "byte" => Scalar::I8,
        "int16" | "i2" | "h" | "short" => Scalar::I16,
        "int32" | "i4" | "i" | "intc" => Scalar::I32,
        "int64" | "i8" | "l" | "q" | "int" | "long" | "longlong" | "int_" | "intp" => Scalar::I64,
        "uint8" | "u1" | "B" | "ubyte" => Scalar::U8,
        "uint16" | "u2" | "H" | "ushort" => Scalar::U16,
        "uint32" | "u4" | "I" | "uintc" => Scalar::U32,
        "uint64" | "u8" | "L" | "Q" | "uint" | "ulonglong" | "uintp" => Scalar::U64,
        "float32" | "f4" | "f" | "single" => Scalar::F32,
        "float64" | "f8" | "d" | "double" | "float" | "float_" => Scalar::F64,
        _ => return None,
    })
}

/// As numpy would print it in a setup: a plain little-endian number by its long name
/// (`float32`, as plan.json and the setup copy always wrote it), anything else as
/// [`FieldType::numpy_spec`] (`>f4`, `|b1`, `|S10`, `(2,)<f4`). [`FieldType::parse`] reads
/// both back.
impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scalar() {
            Some(s) => f.write_str(s.name()),
            None => f.write_str(&self.numpy_spec()),
        }
    }
}

/// As its [`Display`](fmt::Display) text, the way plan.json writes a field's type.
impl serde::Serialize for FieldType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From a numpy type text ([`FieldType::parse`]); an unknown one is an error.
impl<'de> serde::Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FieldType, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FieldType::parse(&name).map_err(serde::de::Error::custom)
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
    pub ty: FieldType,
    /// Byte offset inside the record (sum of the sizes of the fields before it).
    pub offset: usize,
}

/// What went wrong building a dtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtypeError {
    /// The type name is not a numpy type a buffer can hold.
    #[error("unknown data type '{0}': expected a numpy type such as int8 … int64, uint8 … uint64, float32, float64 (i1 … f8), bool, complex64/complex128 (c8, c16), S<n> (bytes), U<n> (unicode), optionally with a byte order (<f4, >f4) and a subarray shape ((2,)f4)")]
    UnknownType(String),
    /// `S`, `U`, `str` or `bytes` without a length: numpy makes a 0-byte field of it.
    #[error("'{0}' has no length: give the number of bytes or characters, e.g. S10 or U4")]
    NoLength(String),
    /// The subarray shape is not `(n,)`, `(n, m)`, … of positive whole numbers.
    #[error("'{0}': a subarray shape is written (2,) or (2, 3) of whole numbers ≥ 1, in front of the type")]
    BadShape(String),
    /// More subarray dimensions than the ring header stores.
    #[error("'{0}' has more than {MAX_DIMS} subarray dimensions")]
    TooManyDims(String),
    /// A field or record larger than a ring header can describe.
    #[error("'{0}' is larger than {MAX_RECORD_SIZE} bytes")]
    TooLarge(String),
    /// A plain little-endian number was asked for and this is another type.
    #[error("'{0}' is {1}, not a plain little-endian number (int8 … float64)")]
    NotANumber(String, FieldType),
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
    /// Builds a dtype from `(name, type)` pairs in order; a type is a [`FieldType`] or a
    /// [`Scalar`].
    ///
    /// ```
    /// use daq_engine::dtype::{Dtype, FieldType, Scalar};
    /// let d = Dtype::new([("ch0", Scalar::F32), ("flag", Scalar::U8)]).unwrap();
    /// assert_eq!(d.record_size(), 5);
    /// assert_eq!(d.field("flag").unwrap().offset, 4);
    /// let e = Dtype::new([("xy", FieldType::parse("(2,)>f8").unwrap())]).unwrap();
    /// assert_eq!(e.record_size(), 16);
    /// ```
    pub fn new<S: Into<String>, T: Into<FieldType>>(
        fields: impl IntoIterator<Item = (S, T)>,
    ) -> Result<Dtype, DtypeError> {
        let mut out: Vec<Field> = Vec::new();
        let mut offset: usize = 0;
        for (name, ty) in fields {
            let name = name.into();
            let ty = ty.into();
            if name.is_empty() || name.contains('\0') {
                return Err(DtypeError::BadName(name));
            }
            if name.len() > MAX_FIELD_NAME {
                return Err(DtypeError::NameTooLong(name));
            }
            if out.iter().any(|f| f.name == name) {
                return Err(DtypeError::Duplicate(name));
            }
            if out.len() == MAX_FIELDS {
                return Err(DtypeError::TooManyFields(MAX_FIELDS + 1));
            }
            let end = offset
                .checked_add(ty.size())
                .filter(|&e| e <= MAX_RECORD_SIZE && ty.size() > 0)
                .ok_or_else(|| DtypeError::TooLarge(format!("{name}: {ty}")))?;
            out.push(Field { name, ty, offset });
            offset = end;
        }
        if out.is_empty() {
            return Err(DtypeError::Empty);
        }
        Ok(Dtype {
            fields: out,
            size: offset,
        })
    }

    /// Builds a dtype from `(name, numpy type text)` pairs, e.g. `("ch0", "f4")` or
    /// `("flags", "(8,)?")` ([`FieldType::parse`]).
    pub fn parse<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Dtype, DtypeError> {
        let parsed: Result<Vec<_>, _> = fields
            .into_iter()
            .map(|(n, t)| FieldType::parse(t).map(|s| (n.to_string(), s)))
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
            eat(&[0, f.ty.base.code()]);
            eat(&(f.offset as u64).to_le_bytes());
            // A plain little-endian field hashes as it always did (older ring headers keep
            // their hash); anything else adds its byte order, length and shape.
            let t = &f.ty;
            if t.order != ByteOrder::Little || t.base.text_len() != 0 || !t.shape.is_scalar() {
                eat(&[
                    1,
                    u8::from(t.order == ByteOrder::Big),
                    t.shape.dims().len() as u8,
                ]);
                eat(&t.base.text_len().to_le_bytes());
                for d in t.shape.dims() {
                    eat(&d.to_le_bytes());
                }
            }
        }
        h
    }

    /// The numpy description as `numpy.dtype.descr` prints it, e.g.
    /// `[('ch0', '<f4'), ('xy', '<f4', (2,))]`.
    pub fn numpy_descr(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|f| match f.ty.shape.is_scalar() {
                true => format!("('{}', '{}')", f.name, f.ty.element_str()),
                false => format!(
                    "('{}', '{}', {})",
                    f.name,
                    f.ty.element_str(),
                    f.ty.shape_str()
                ),
            })
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|x| format!("{}: {}", x.name, x.ty))
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

/// A view of one field across the records of an event: `data_length` values of type `T`,
/// `stride` bytes apart. Zero-copy over the slot's bytes; unaligned reads are fine (records
/// are packed like numpy's, so a field need not be aligned). Read-only over `&[u8]`;
/// over `&mut [u8]` it is a [`ColumnMut`], which writes too.
#[derive(Clone, Copy)]
pub struct Column<'a, T: Element, B = &'a [u8]> {
    bytes: B,
    at: Strided,
    _t: std::marker::PhantomData<(&'a [u8], T)>,
}

/// A writable view of one field across the records of an event (see [`Column`]).
pub type ColumnMut<'a, T> = Column<'a, T, &'a mut [u8]>;

/// Where one field's values lie in an event's bytes: value `i` at `offset + i * stride`,
/// `len` values. Invariant (checked by [`locate`]): every value lies inside the bytes the
/// column was made over.
#[derive(Clone, Copy)]
struct Strided {
    offset: usize,
    stride: usize,
    len: usize,
}

impl Strided {
    /// The bytes of value `i` of a `T`, or `None` past the end.
    #[inline]
    fn range<T: Element>(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.len {
            return None;
        }
        let at = i * self.stride + self.offset;
        Some(at..at + std::mem::size_of::<T>())
    }
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
        actual: FieldType,
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

fn locate<T: Element>(dtype: &Dtype, bytes_len: usize, name: &str) -> Result<Strided, ColumnError> {
    let f = dtype
        .field(name)
        .ok_or_else(|| ColumnError::NoSuchField(name.to_string()))?;
    if f.ty.scalar() != Some(T::SCALAR) {
        return Err(ColumnError::WrongType {
            name: name.to_string(),
            actual: f.ty,
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
    Ok(Strided {
        offset: f.offset,
        stride,
        len: bytes_len / stride,
    })
}

/// The `T` in `src`, which is a [`Strided::range`] of `T`: exactly size_of::<T>() bytes.
#[inline]
fn read<T: Element>(src: &[u8]) -> T {
    // Never fails for a `Strided::range::<T>` (the compiler sees the length and drops it).
    assert_eq!(src.len(), std::mem::size_of::<T>());
    // SAFETY: `src` is exactly size_of::<T>() bytes (asserted above); every bit pattern is a
    // valid value of the primitive T (Element is sealed to the ten numbers), and
    // read_unaligned has no alignment requirement.
    unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) }
}

impl<'a, T: Element, B: AsRef<[u8]>> Column<'a, T, B> {
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
    pub fn new(dtype: &Dtype, bytes: B, name: &str) -> Result<Self, ColumnError> {
        Ok(Column {
            at: locate::<T>(dtype, bytes.as_ref().len(), name)?,
            bytes,
            _t: std::marker::PhantomData,
        })
    }

    /// Number of values (the buffer's `data_length`).
    pub fn len(&self) -> usize {
        self.at.len
    }

    /// True when the event has no records.
    pub fn is_empty(&self) -> bool {
        self.at.len == 0
    }

    /// Value `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        Some(read(&self.bytes.as_ref()[self.at.range::<T>(i)?]))
    }

    /// Iterates over the values.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.at.len).map(move |i| self.get(i).unwrap_or_default())
    }

    /// Copies the values into `out` (de-interleaving), up to `out.len()`; returns how many.
    pub fn copy_to(&self, out: &mut [T]) -> usize {
        let n = out.len().min(self.at.len);
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.get(i).unwrap_or_default();
        }
        n
    }
}

impl<T: Element> ColumnMut<'_, T> {
    /// Sets value `i`; does nothing past the end.
    #[inline]
    pub fn set(&mut self, i: usize, v: T) {
        let Some(r) = self.at.range::<T>(i) else {
            return;
        };
        let dst = &mut self.bytes[r];
        // SAFETY: `dst` is exactly size_of::<T>() bytes inside `self.bytes` (checked by the
        // slice index above) and write_unaligned has no alignment requirement.
        unsafe { std::ptr::write_unaligned(dst.as_mut_ptr().cast::<T>(), v) }
    }

    /// Writes `values` into the column (interleaving), up to the shorter length; returns how many.
    pub fn copy_from(&mut self, values: &[T]) -> usize {
        let n = values.len().min(self.at.len);
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
            Err(DtypeError::NotANumber(_, _))
        ));
        assert!(matches!(
            Scalar::parse("S10"),
            Err(DtypeError::NotANumber(_, _))
        ));
        assert!(matches!(
            Scalar::parse("float128"),
            Err(DtypeError::UnknownType(_))
        ));
    }

    /// Each kind of issue 14's list, its size and the text numpy is given for it.
    #[test]
    fn every_numpy_kind_parses_with_numpys_size() {
        for (text, size, spec, shown) in [
            ("bool", 1, "|b1", "|b1"),
            ("?", 1, "|b1", "|b1"),
            ("b1", 1, "|b1", "|b1"),
            ("S10", 10, "|S10", "|S10"),
            ("a5", 5, "|S5", "|S5"),
            ("<S4", 4, "|S4", "|S4"),
            ("U4", 16, "<U4", "<U4"),
            (">U4", 16, ">U4", ">U4"),
            ("c8", 8, "<c8", "<c8"),
            ("complex64", 8, "<c8", "<c8"),
            ("c16", 16, "<c16", "<c16"),
            ("complex128", 16, "<c16", "<c16"),
            (">c8", 8, ">c8", ">c8"),
            (">f4", 4, ">f4", ">f4"),
            ("<f4", 4, "<f4", "float32"),
            ("=i2", 2, "<i2", "int16"),
            ("|f8", 8, "<f8", "float64"),
            (">i1", 1, "|i1", "int8"),
            (">u8", 8, ">u8", ">u8"),
            ("(2,)f4", 8, "(2,)<f4", "(2,)<f4"),
            ("(2,3)i2", 12, "(2,3)<i2", "(2,3)<i2"),
            ("( 2 , 3 )>i2", 12, "(2,3)>i2", "(2,3)>i2"),
            (">(2,)f4", 8, "(2,)>f4", "(2,)>f4"),
            ("2f4", 8, "(2,)<f4", "(2,)<f4"),
            ("2,3f4", 24, "(2,3)<f4", "(2,3)<f4"),
            ("(1,)u1", 1, "(1,)|u1", "(1,)|u1"),
            ("()f4", 4, "<f4", "float32"),
            ("(2,)S3", 6, "(2,)|S3", "(2,)|S3"),
            ("(2,)U2", 16, "(2,)<U2", "(2,)<U2"),
        ] {
            let t = FieldType::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.size(), size, "{text}");
            assert_eq!(t.numpy_spec(), spec, "{text}");
            assert_eq!(t.to_string(), shown, "{text}");
            assert_eq!(FieldType::parse(&t.to_string()), Ok(t), "{text} round trip");
        }
    }

    #[test]
    fn types_numpy_refuses_or_makes_empty_are_refused() {
        for text in ["S", "U", "S0", "U0", "U000", "str", "bytes", "a"] {
            assert!(
                matches!(FieldType::parse(text), Err(DtypeError::NoLength(_))),
                "{text}"
            );
        }
        // A length, but past what a field holds; not a length at all: said as such, not
        // as a missing length.
        for text in ["S99999999999999999999", "U4294967296"] {
            assert!(
                matches!(FieldType::parse(text), Err(DtypeError::TooLarge(_))),
                "{text}: {:?}",
                FieldType::parse(text)
            );
        }
        for text in ["S1x", "U-4", "S 4"] {
            assert!(
                matches!(FieldType::parse(text), Err(DtypeError::UnknownType(_))),
                "{text}: {:?}",
                FieldType::parse(text)
            );
        }
        for text in ["(0,)f4", "(2,f4", "(2,x)f4", "<(2,)>f4"] {
            assert!(
                matches!(FieldType::parse(text), Err(DtypeError::BadShape(_))),
                "{text}: {:?}",
                FieldType::parse(text)
            );
        }
        assert!(matches!(
            FieldType::parse("(1,1,1,1,1)f4"),
            Err(DtypeError::TooManyDims(_))
        ));
        assert!(matches!(
            FieldType::parse("(65536,65536)f8"),
            Err(DtypeError::TooLarge(_))
        ));
        for text in ["f2", "float16", "M8[ns]", "O", "V4", "c32", "Bool", ""] {
            assert!(
                matches!(FieldType::parse(text), Err(DtypeError::UnknownType(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn plain_numbers_keep_their_schema_hash_and_others_change_it() {
        // The hash of a plain dtype is what layout version 2 always stored (computed here
        // by the old formula), so an older ring header still matches.
        let d = Dtype::parse([("x", "f4"), ("n", "i2")]).unwrap();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, code, off) in [("x", 9u8, 0u64), ("n", 2, 4)] {
            for b in name.bytes().chain([0, code]).chain(off.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(d.schema_hash(), h);
        let hashes: Vec<u64> = ["f4", ">f4", "(1,)f4", "(2,)f4", "U1", ">U1", "S4", "S5"]
            .iter()
            .map(|t| Dtype::parse([("x", *t)]).unwrap().schema_hash())
            .collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn numpy_descr_of_every_kind() {
        let d =
            Dtype::parse([("a", "?"), ("f", "(2,)f4"), ("m", "(2,3)>i2"), ("e", "U4")]).unwrap();
        assert_eq!(
            d.numpy_descr(),
            "[('a', '|b1'), ('f', '<f4', (2,)), ('m', '>i2', (2, 3)), ('e', '<U4')]"
        );
        let offs: Vec<usize> = d.fields().iter().map(|f| f.offset).collect();
        assert_eq!(offs, [0, 1, 9, 21]);
        assert_eq!(d.record_size(), 37);
    }

    #[test]
    fn columns_refuse_fields_that_are_not_plain_numbers() {
        let d = Dtype::parse([("c", ">f4"), ("v", "(2,)f4")]).unwrap();
        let bytes = vec![0u8; d.record_size()];
        assert!(matches!(
            Column::<f32>::new(&d, &bytes, "c"),
            Err(ColumnError::WrongType { .. })
        ));
        assert!(matches!(
            Column::<f32>::new(&d, &bytes, "v"),
            Err(ColumnError::WrongType { .. })
        ));
    }

    #[test]
    fn csv_cells_of_every_kind() {
        let d = Dtype::parse([
            ("a", "?"),
            ("s", "S6"),
            ("u", ">U3"),
            ("z", "c16"),
            ("v", "(2,)>i2"),
            ("x", "f4"),
        ])
        .unwrap();
        assert_eq!(d.csv_columns(), ["a", "s", "u", "z", "v[0]", "v[1]", "x"]);
        let mut rec = vec![0u8];
        rec.extend(b"q\"\n\xff\0\0");
        for c in ['é', ' ', '\0'] {
            rec.extend((c as u32).to_be_bytes());
        }
        rec.extend(f64::NAN.to_le_bytes());
        rec.extend((-0.5f64).to_le_bytes());
        rec.extend((-2i16).to_be_bytes());
        rec.extend(7i16.to_be_bytes());
        rec.extend(f32::INFINITY.to_le_bytes());
        assert_eq!(rec.len(), d.record_size());
        let mut line = String::new();
        d.write_csv_cells(&rec, &mut line);
        assert_eq!(line, ",False,\"q\"\"\\x0a\\xff\",\"é \",nan-0.5j,-2,7,inf");
    }
    /// Floats far from 1 were written in full: 1e300 as 301 digits, 1e-300 as 302
    /// characters (the tester's 80-digit cells), past the 32 bytes a CSV line reserves per
    /// number. They are written as Python's repr writes them now: an exponent below 1e-4
    /// and from 1e16 on, still the shortest text that reads back to the same value.
    #[test]
    fn floats_far_from_one_are_written_with_an_exponent() {
        let d = Dtype::parse([("x", "f8"), ("y", "f4")]).unwrap();
        let cells = |x: f64, y: f32| {
            let mut rec = x.to_le_bytes().to_vec();
            rec.extend(y.to_le_bytes());
            let mut line = String::new();
            d.write_csv_cells(&rec, &mut line);
            line
        };
        assert_eq!(cells(1e300, 3.4e38), ",1e300,3.4e38");
        assert_eq!(cells(-1.5e-300, 1e-45), ",-1.5e-300,1e-45");
        assert_eq!(
            cells(f64::MIN_POSITIVE, -f32::MAX),
            ",2.2250738585072014e-308,-3.4028235e38"
        );
        assert_eq!(cells(1e16, 1e-5), ",1e16,1e-5");
        assert_eq!(cells(9999999999999998.0, 1e-4), ",9999999999999998,0.0001");
        assert_eq!(cells(51.0, 0.1), ",51,0.1");
        assert_eq!(cells(0.0, -0.0), ",0,-0");
        for x in [1e300, -1.5e-300, f64::MIN_POSITIVE, 1e16, 123.456] {
            let text = cells(x, 0.0);
            let cell = text.split(',').nth(1).unwrap();
            assert_eq!(cell.parse::<f64>().unwrap(), x);
            assert!(cell.len() <= 24, "{cell}");
        }
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
