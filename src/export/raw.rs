//! The few HDF5 C calls the safe `hdf5-metno` API does not offer: a compound type built from
//! a runtime [`Dtype`] with members of exactly the field types (byte order, bool, complex,
//! strings, subarrays, as h5py maps them to numpy), that type read back from a file, and
//! hyperslab reads and writes of raw record bytes with that type as the memory type (so no
//! conversion happens).
//!
//! Guarantees: every call runs under `hdf5-metno`'s library lock, every identifier this
//! module opens is closed on every path, and a byte slice handed to HDF5 is checked to be
//! exactly as long as the selection it fills. It must never hand HDF5 a pointer to fewer
//! bytes than the selection covers.

use hdf5_metno as h5;
use hdf5_metno::Dataset;
use hdf5_metno_sys::h5::{haddr_t, hsize_t};
use hdf5_metno_sys::h5i::hid_t;
use hdf5_metno_sys::{h5d, h5p, h5s, h5t};
use std::ffi::CString;

use crate::dtype::{Base, ByteOrder, Dtype, FieldType, Scalar, Shape, MAX_DIMS};

/// An HDF5 identifier closed on drop with the matching close call.
struct Id {
    id: hid_t,
    close: unsafe extern "C" fn(hid_t) -> hdf5_metno_sys::h5::herr_t,
}

impl Drop for Id {
    fn drop(&mut self) {
        // SAFETY: `id` was returned valid (>= 0) by the HDF5 call that created it and is
        // closed exactly once here with the close function of its kind; we hold the library
        // lock because every Id lives only inside a `locked` closure.
        unsafe {
            (self.close)(self.id);
        }
    }
}

/// Every frame of an HDF5 error, innermost last, so that causes such as
/// "errno = 28, No space left on device" deep in the stack reach the message.
pub(crate) fn describe(e: h5::Error) -> String {
    match e {
        h5::Error::Internal(s) => s,
        h5::Error::HDF5(stack) => match stack.expand() {
            Ok(frames) if !frames.is_empty() => {
                let mut descs: Vec<&str> = frames.iter().map(|f| f.desc()).collect();
                // A frame the library pushed at several levels of one call says one thing.
                descs.dedup();
                descs.join(": ")
            }
            Ok(frames) => frames.description().to_string(),
            Err(e) => e.to_string(),
        },
    }
}

/// Why an HDF5 step of this module failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum H5Error {
    /// A library call failed: what it was to do, and the library's error stack described
    /// ([`describe`]), where a full disk shows as "errno = 28".
    #[error("{what}: {stack}")]
    Call {
        /// What the call was to do, e.g. "could not write the rows" or "attribute 'x'".
        what: String,
        /// The library's error frames, joined.
        stack: String,
    },
    /// A call of the safe `hdf5-metno` API failed; its error, described.
    #[error("{0}")]
    Library(String),
    /// A type in a file that numpy (and so a buffer) has no equal for, in words.
    #[error("{0}")]
    Unsupported(String),
    /// A step on a named object (a buffer's dataset) failed.
    #[error("{context}: {source}")]
    In {
        /// The object and step, e.g. "buffer 'raw': open data".
        context: String,
        /// What failed.
        source: Box<H5Error>,
    },
    /// A field of a compound type whose type is unsupported.
    #[error("field '{name}' is {source}")]
    Field {
        /// The field.
        name: String,
        /// Its type's problem.
        source: Box<H5Error>,
    },
    /// A name handed to the C library holds a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// The name, in words, e.g. "dataset name 'raw/data'".
        what: String,
    },
    /// A byte slice not as long as the rows it should hold (a defect of the caller).
    #[error("internal: {got} bytes for {rows} rows of {want} bytes")]
    Size {
        /// Bytes handed over.
        got: usize,
        /// Rows selected.
        rows: u64,
        /// Bytes those rows take.
        want: usize,
    },
}

impl H5Error {
    /// A failed library call of the safe API while doing `what`.
    pub(crate) fn call(what: impl Into<String>, e: h5::Error) -> H5Error {
        H5Error::Call {
            what: what.into(),
            stack: describe(e),
        }
    }

    /// The file system is full: the system's ENOSPC somewhere in the library's stack.
    pub(crate) fn disk_full(&self) -> bool {
        match self {
            H5Error::Call { stack, .. } => {
                stack.contains("No space left") || stack.contains("errno = 28")
            }
            H5Error::In { source, .. } => source.disk_full(),
            _ => false,
        }
    }
}

fn unsupported(what: impl Into<String>) -> H5Error {
    H5Error::Unsupported(what.into())
}

fn check_id(id: hid_t, what: &str) -> Result<hid_t, H5Error> {
    h5::h5check(id).map_err(|e| H5Error::call(format!("could not {what}"), e))
}

fn check(status: hdf5_metno_sys::h5::herr_t, what: &str) -> Result<(), H5Error> {
    h5::h5check(status)
        .map(|_| ())
        .map_err(|e| H5Error::call(format!("could not {what}"), e))
}

fn locked<T>(f: impl FnOnce() -> T) -> T {
    h5::sync::sync(f)
}

/// The predefined HDF5 type of a number in a byte order (a library constant: never closed).
fn num_type(s: Scalar, big: bool) -> hid_t {
    match (s, big) {
        (Scalar::I8, _) => *h5t::H5T_STD_I8LE,
        (Scalar::U8, _) => *h5t::H5T_STD_U8LE,
        (Scalar::I16, false) => *h5t::H5T_STD_I16LE,
        (Scalar::I16, true) => *h5t::H5T_STD_I16BE,
        (Scalar::I32, false) => *h5t::H5T_STD_I32LE,
        (Scalar::I32, true) => *h5t::H5T_STD_I32BE,
        (Scalar::I64, false) => *h5t::H5T_STD_I64LE,
        (Scalar::I64, true) => *h5t::H5T_STD_I64BE,
        (Scalar::U16, false) => *h5t::H5T_STD_U16LE,
        (Scalar::U16, true) => *h5t::H5T_STD_U16BE,
        (Scalar::U32, false) => *h5t::H5T_STD_U32LE,
        (Scalar::U32, true) => *h5t::H5T_STD_U32BE,
        (Scalar::U64, false) => *h5t::H5T_STD_U64LE,
        (Scalar::U64, true) => *h5t::H5T_STD_U64BE,
        (Scalar::F32, false) => *h5t::H5T_IEEE_F32LE,
        (Scalar::F32, true) => *h5t::H5T_IEEE_F32BE,
        (Scalar::F64, false) => *h5t::H5T_IEEE_F64LE,
        (Scalar::F64, true) => *h5t::H5T_IEEE_F64BE,
    }
}

/// The tag of an opaque member holding numpy's `U<n>`: h5py's convention for types HDF5 has
/// no equivalent of (`h5py.opaque_dtype`), so h5py reads the member back as that dtype.
const NUMPY_TAG: &str = "NUMPY:";

fn new_type(id: hid_t, what: &str) -> Result<Id, H5Error> {
    Ok(Id {
        id: check_id(id, what)?,
        close: h5t::H5Tclose,
    })
}

/// A new HDF5 type for one element of `t` (its base and byte order), as h5py writes and
/// reads back the same numpy type: numbers as themselves, bool as h5py's enum(int8)
/// {FALSE: 0, TRUE: 1}, complex as the compound {r, i}, `S<n>` as a fixed-length,
/// NUL-padded ASCII string, `U<n>` as an opaque type tagged `NUMPY:<U<n>`. Must run under
/// the library lock.
fn element_type(t: &FieldType) -> Result<Id, H5Error> {
    let big = t.order == ByteOrder::Big;
    // SAFETY (for every call below): the ids passed are live (predefined library types after
    // initialisation by `sync`, or ids this function created and still holds in an `Id`);
    // the name and tag pointers are NUL-terminated and outlive the calls; enum values are
    // read as one i8 each, matching the enum's int8 base.
    unsafe {
        match t.base {
            Base::Num(s) => new_type(h5t::H5Tcopy(num_type(s, big)), "copy a number type"),
            Base::Bool => {
                let id = new_type(
                    h5t::H5Tenum_create(*h5t::H5T_STD_I8LE),
                    "create the bool enum",
                )?;
                for (name, v) in [(c"FALSE", 0i8), (c"TRUE", 1i8)] {
                    check(
                        h5t::H5Tenum_insert(id.id, name.as_ptr(), (&v as *const i8).cast()),
                        "insert a bool enum value",
                    )?;
                }
                Ok(id)
            }
            Base::Complex64 | Base::Complex128 => {
                let (part, half) = match t.base {
                    Base::Complex64 => (Scalar::F32, 4),
                    _ => (Scalar::F64, 8),
                };
                let id = new_type(
                    h5t::H5Tcreate(h5t::H5T_class_t::H5T_COMPOUND, 2 * half),
                    "create a complex type",
                )?;
                for (name, at) in [(c"r", 0), (c"i", half)] {
                    check(
                        h5t::H5Tinsert(id.id, name.as_ptr(), at, num_type(part, big)),
                        "insert a complex part",
                    )?;
                }
                Ok(id)
            }
            Base::Bytes(n) => {
                let id = new_type(h5t::H5Tcopy(*h5t::H5T_C_S1), "copy the string type")?;
                check(h5t::H5Tset_size(id.id, n as usize), "size a string type")?;
                check(
                    h5t::H5Tset_strpad(id.id, h5t::H5T_str_t::H5T_STR_NULLPAD),
                    "pad a string type",
                )?;
                Ok(id)
            }
            Base::Unicode(_) => {
                let id = new_type(
                    h5t::H5Tcreate(h5t::H5T_class_t::H5T_OPAQUE, t.base.size()),
                    "create an opaque type",
                )?;
                let tag =
                    CString::new(format!("{NUMPY_TAG}{}", t.element_str())).map_err(|_| {
                        H5Error::Nul {
                            what: "a numpy tag".into(),
                        }
                    })?;
                check(h5t::H5Tset_tag(id.id, tag.as_ptr()), "tag an opaque type")?;
                Ok(id)
            }
        }
    }
}

/// A new HDF5 type for a field of type `t`: its element type, or an HDF5 array of it for a
/// subarray field (h5py reads that back as the numpy subarray). Must run under the lock.
fn field_type(t: &FieldType) -> Result<Id, H5Error> {
    let elem = element_type(t)?;
    let dims = t.shape.dims();
    if dims.is_empty() {
        return Ok(elem);
    }
    let dims: Vec<hsize_t> = dims.iter().map(|&d| hsize_t::from(d)).collect();
    // SAFETY: `elem` is a live type id; `dims` holds exactly `dims.len()` (≤ MAX_DIMS)
    // dimensions, each ≥ 1. The array type copies `elem`, which is closed on return.
    new_type(
        unsafe { h5t::H5Tarray_create2(elem.id, dims.len() as u32, dims.as_ptr()) },
        "create an array type",
    )
}

/// The HDF5 compound type of one record of `dtype`: the same field names in the same order,
/// each member the type h5py maps back to the field's numpy type ([`element_type`]), at the
/// packed offsets, total size `dtype.record_size()`.
pub(crate) fn compound_type(dtype: &Dtype) -> Result<h5::Datatype, H5Error> {
    locked(|| {
        // SAFETY: H5Tcreate with a non-zero size returns a new compound type id or < 0,
        // which check_id turns into an error before the id is used.
        let id = check_id(
            unsafe { h5t::H5Tcreate(h5t::H5T_class_t::H5T_COMPOUND, dtype.record_size()) },
            "create a compound type",
        )?;
        let guard = Id {
            id,
            close: h5t::H5Tclose,
        };
        for f in dtype.fields() {
            let name = CString::new(f.name.as_str()).map_err(|_| H5Error::Nul {
                what: format!("field '{}'", f.name),
            })?;
            let member = field_type(&f.ty)?;
            // SAFETY: `guard.id` is a live compound type, `name` is a NUL-terminated string
            // that outlives the call, and `member` a live type id (H5Tinsert copies it).
            // offset + size <= record_size because Dtype packs fields in order.
            check(
                unsafe { h5t::H5Tinsert(guard.id, name.as_ptr(), f.offset, member.id) },
                &format!("insert field '{}'", f.name),
            )?;
        }
        let id = guard.id;
        std::mem::forget(guard);
        // SAFETY: `id` is a valid datatype id whose ownership passes to the Datatype.
        unsafe { h5::from_id::<h5::Datatype>(id) }.map_err(|e| H5Error::Library(e.to_string()))
    })
}

/// A string HDF5 allocated (member names, tags), copied and freed.
///
/// # Safety
/// `p` is null or a NUL-terminated string allocated by the HDF5 library.
unsafe fn take_string(p: *mut std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract, `p` is a live NUL-terminated string; it is freed once, by
    // the library's allocator, after being copied.
    unsafe {
        let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        hdf5_metno_sys::h5::H5free_memory(p.cast());
        Some(s)
    }
}

/// The numpy element type (base and byte order) of HDF5 type `id`, for the types
/// [`element_type`] writes and h5py's equivalents. Must run under the lock.
fn element_of(id: hid_t) -> Result<(Base, ByteOrder), H5Error> {
    use h5t::H5T_class_t as C;
    // SAFETY (for every call below): `id` is a live type id (the caller holds it), member
    // and super type ids are held in `Id`s and closed on return, strings are taken with
    // `take_string`, and enum values are read into an i64 (at least the enum's size).
    unsafe {
        let size = h5t::H5Tget_size(id);
        let big = h5t::H5Tget_order(id) == h5t::H5T_order_t::H5T_ORDER_BE;
        let order = if big {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        };
        let class = h5t::H5Tget_class(id);
        let num = |s: Option<Scalar>| {
            s.map(|s| (Base::Num(s), order))
                .ok_or_else(|| unsupported(format!("a {size}-byte number numpy has no type for")))
        };
        match class {
            C::H5T_INTEGER => {
                let unsigned = h5t::H5Tget_sign(id) == h5t::H5T_sign_t::H5T_SGN_NONE;
                num(match (size, unsigned) {
                    (1, false) => Some(Scalar::I8),
                    (2, false) => Some(Scalar::I16),
                    (4, false) => Some(Scalar::I32),
                    (8, false) => Some(Scalar::I64),
                    (1, true) => Some(Scalar::U8),
                    (2, true) => Some(Scalar::U16),
                    (4, true) => Some(Scalar::U32),
                    (8, true) => Some(Scalar::U64),
                    _ => None,
                })
            }
            C::H5T_FLOAT => num(match size {
                4 => Some(Scalar::F32),
                8 => Some(Scalar::F64),
                _ => None,
            }),
            C::H5T_ENUM => {
                let n = h5t::H5Tget_nmembers(id);
                let mut names = Vec::new();
                for k in 0..n.max(0) as u32 {
                    let mut v: i64 = 0;
                    check(
                        h5t::H5Tget_member_value(id, k, (&mut v as *mut i64).cast()),
                        "read an enum value",
                    )?;
                    names.push((take_string(h5t::H5Tget_member_name(id, k)), v));
                }
                let is_bool = size == 1
                    && names
                        == [
                            (Some("FALSE".to_string()), 0),
                            (Some("TRUE".to_string()), 1),
                        ];
                if is_bool {
                    Ok((Base::Bool, ByteOrder::Little))
                } else {
                    Err(unsupported(
                        "an enum other than h5py's bool {FALSE: 0, TRUE: 1}",
                    ))
                }
            }
            C::H5T_STRING => {
                if h5t::H5Tis_variable_str(id) > 0 {
                    return Err(unsupported(
                        "a variable-length string (numpy holds fixed lengths)",
                    ));
                }
                Ok((Base::Bytes(size as u32), ByteOrder::Little))
            }
            C::H5T_OPAQUE => {
                let tag = take_string(h5t::H5Tget_tag(id)).unwrap_or_default();
                let t = tag
                    .strip_prefix(NUMPY_TAG)
                    .and_then(|s| FieldType::parse(s).ok())
                    .filter(|t| t.shape.is_scalar() && t.size() == size);
                t.map(|t| (t.base, t.order))
                    .ok_or_else(|| unsupported(format!("an opaque type tagged '{tag}'")))
            }
            C::H5T_COMPOUND => {
                let mut parts = Vec::new();
                for k in 0..h5t::H5Tget_nmembers(id).max(0) as u32 {
                    let name = take_string(h5t::H5Tget_member_name(id, k));
                    let at = h5t::H5Tget_member_offset(id, k);
                    let m = new_type(h5t::H5Tget_member_type(id, k), "get a member type")?;
                    parts.push((name, at, element_of(m.id)?));
                }
                match parts.as_slice() {
                    [(Some(r), 0, (Base::Num(a), oa)), (Some(i), h, (Base::Num(b), ob))]
                        if r == "r" && i == "i" && a == b && oa == ob && *h == a.size() =>
                    {
                        match a {
                            Scalar::F32 => Ok((Base::Complex64, *oa)),
                            Scalar::F64 => Ok((Base::Complex128, *oa)),
                            _ => Err(unsupported("a compound {r, i} of integers")),
                        }
                    }
                    _ => Err(unsupported("a nested compound type (not complex {r, i})")),
                }
            }
            other => Err(unsupported(format!("HDF5 class {other:?}"))),
        }
    }
}

/// The numpy field type of HDF5 type `id`: an element, or an HDF5 array of one (subarray).
/// Must run under the lock.
fn field_of(id: hid_t) -> Result<FieldType, H5Error> {
    // SAFETY: `id` is live; the super type is held in an `Id`; `dims` has room for the
    // MAX_DIMS dimensions checked before H5Tget_array_dims2 fills `ndims` of them.
    unsafe {
        if h5t::H5Tget_class(id) != h5t::H5T_class_t::H5T_ARRAY {
            let (base, order) = element_of(id)?;
            return FieldType::new(base, order, Shape::SCALAR)
                .ok_or_else(|| unsupported("an empty type"));
        }
        let ndims = h5t::H5Tget_array_ndims(id);
        if ndims < 1 || ndims as usize > MAX_DIMS {
            return Err(unsupported(format!("an array of {ndims} dimensions")));
        }
        let mut dims: [hsize_t; MAX_DIMS] = [0; MAX_DIMS];
        check(
            h5t::H5Tget_array_dims2(id, dims.as_mut_ptr()),
            "read array dimensions",
        )
        .map(drop)?;
        let dims: Vec<u32> = dims[..ndims as usize]
            .iter()
            .map(|&d| u32::try_from(d).unwrap_or(0))
            .collect();
        let sup = new_type(h5t::H5Tget_super(id), "get an array's element type")?;
        let (base, order) = element_of(sup.id)?;
        Shape::new(&dims)
            .and_then(|s| FieldType::new(base, order, s))
            .ok_or_else(|| unsupported(format!("an array of shape {dims:?}")))
    }
}

/// The fields of a compound type `t` as (name, offset, type), in member order.
pub(crate) fn compound_fields(
    t: &h5::Datatype,
) -> Result<Vec<(String, usize, FieldType)>, H5Error> {
    locked(|| {
        // SAFETY: `t` is a live datatype; member types are held in `Id`s, names taken with
        // `take_string`.
        unsafe {
            let id = t.id();
            if h5t::H5Tget_class(id) != h5t::H5T_class_t::H5T_COMPOUND {
                return Err(unsupported("not a compound type"));
            }
            let mut out = Vec::new();
            for k in 0..h5t::H5Tget_nmembers(id).max(0) as u32 {
                let name = take_string(h5t::H5Tget_member_name(id, k))
                    .ok_or_else(|| unsupported("a member without a name"))?;
                let at = h5t::H5Tget_member_offset(id, k);
                let m = new_type(h5t::H5Tget_member_type(id, k), "get a member type")?;
                let ty = field_of(m.id).map_err(|e| H5Error::Field {
                    name: name.clone(),
                    source: Box::new(e),
                })?;
                out.push((name, at, ty));
            }
            Ok(out)
        }
    })
}

/// A hyperslab of `rows` rows starting at `first_row` of a dataset of rank 1 (`cols == None`)
/// or rank 2 with `cols` columns, as (file space, memory space).
fn row_spaces(
    ds: &Dataset,
    first_row: u64,
    rows: u64,
    cols: Option<u64>,
) -> Result<(Id, Id), H5Error> {
    let (start, count, rank): ([hsize_t; 2], [hsize_t; 2], i32) = match cols {
        Some(c) => ([first_row, 0], [rows, c], 2),
        None => ([first_row, 0], [rows, 1], 1),
    };
    // SAFETY: H5Dget_space on a live dataset id returns a new dataspace id or < 0.
    let fspace = Id {
        id: check_id(
            unsafe { h5d::H5Dget_space(ds.id()) },
            "get the dataset's space",
        )?,
        close: h5s::H5Sclose,
    };
    // SAFETY: `start` and `count` hold at least `rank` entries, matching the dataset's rank
    // (the caller passes `cols` exactly for rank-2 datasets); null stride/block mean 1.
    check(
        unsafe {
            h5s::H5Sselect_hyperslab(
                fspace.id,
                h5s::H5S_seloper_t::H5S_SELECT_SET,
                start.as_ptr(),
                std::ptr::null(),
                count.as_ptr(),
                std::ptr::null(),
            )
        },
        "select the rows to write",
    )?;
    // SAFETY: `count` holds `rank` dimensions; a null maxdims means fixed size.
    let mspace = Id {
        id: check_id(
            unsafe { h5s::H5Screate_simple(rank, count.as_ptr(), std::ptr::null()) },
            "create the memory space",
        )?,
        close: h5s::H5Sclose,
    };
    Ok((fspace, mspace))
}

/// Writes `bytes` (exactly `rows` rows of `row_bytes` bytes, records of `mem_type`) to rows
/// `first_row..first_row + rows`. The dataset's extent must already cover them.
pub(crate) fn write_rows(
    ds: &Dataset,
    mem_type: &h5::Datatype,
    first_row: u64,
    rows: u64,
    cols: Option<u64>,
    bytes: &[u8],
) -> Result<(), H5Error> {
    let rows_at = Rows::new(first_row, rows, cols, mem_type, bytes.len())?;
    locked(|| {
        let Some((fspace, mspace)) = rows_at.spaces(ds)? else {
            return Ok(());
        };
        // SAFETY: the memory space selects exactly rows * cols elements of `mem_type`, i.e.
        // `bytes.len()` bytes (checked by `Rows::new`); the buffer is only read.
        check(
            unsafe {
                h5d::H5Dwrite(
                    ds.id(),
                    mem_type.id(),
                    mspace.id,
                    fspace.id,
                    h5p::H5P_DEFAULT,
                    bytes.as_ptr().cast(),
                )
            },
            "write the rows",
        )
    })
}

/// Reads rows `first_row..first_row + rows` into `out`, which must be exactly
/// `rows * cols * mem_type.size()` bytes.
pub(crate) fn read_rows(
    ds: &Dataset,
    mem_type: &h5::Datatype,
    first_row: u64,
    rows: u64,
    cols: Option<u64>,
    out: &mut [u8],
) -> Result<(), H5Error> {
    let rows_at = Rows::new(first_row, rows, cols, mem_type, out.len())?;
    locked(|| {
        let Some((fspace, mspace)) = rows_at.spaces(ds)? else {
            return Ok(());
        };
        // SAFETY: the memory space selects exactly `out.len()` bytes of `mem_type` (checked
        // by `Rows::new`) and `out` is exclusively borrowed for the call.
        check(
            unsafe {
                h5d::H5Dread(
                    ds.id(),
                    mem_type.id(),
                    mspace.id,
                    fspace.id,
                    h5p::H5P_DEFAULT,
                    out.as_mut_ptr().cast(),
                )
            },
            "read the rows",
        )
    })
}

/// The rows a read or write transfers, checked against the length of the caller's bytes.
struct Rows {
    first_row: u64,
    rows: u64,
    cols: Option<u64>,
}

impl Rows {
    /// Refuses a byte slice of `len` bytes that is not exactly the selection's size.
    fn new(
        first_row: u64,
        rows: u64,
        cols: Option<u64>,
        mem_type: &h5::Datatype,
        len: usize,
    ) -> Result<Rows, H5Error> {
        let want = rows as usize * cols.unwrap_or(1) as usize * mem_type.size();
        if len != want {
            return Err(H5Error::Size {
                got: len,
                rows,
                want,
            });
        }
        Ok(Rows {
            first_row,
            rows,
            cols,
        })
    }

    /// The (file, memory) spaces of the rows; `None` for no rows (nothing to transfer).
    /// Must run under the library lock.
    fn spaces(&self, ds: &Dataset) -> Result<Option<(Id, Id)>, H5Error> {
        if self.rows == 0 {
            return Ok(None);
        }
        row_spaces(ds, self.first_row, self.rows, self.cols).map(Some)
    }
}

/// Writes the dataset's cached chunks and its metadata to the file (`H5Dflush`), so that
/// what is written after this call can never reach the disk before these rows.
pub(crate) fn flush_dataset(ds: &Dataset) -> Result<(), H5Error> {
    locked(|| {
        // SAFETY: `ds.id()` is a live dataset id owned by `ds` for the duration of the call.
        check(unsafe { h5d::H5Dflush(ds.id()) }, "flush the dataset")
    })
}

/// Opens `path` read-write with HDF5's `clear_status_flags` file-access property (what
/// `h5clear -s` does) and closes it again: the superblock no longer says "open for (SWMR)
/// writing", so every reader opens a file whose writer was killed.
pub(crate) fn clear_status_flags(path: &std::path::Path) -> Result<(), H5Error> {
    let name = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| H5Error::Nul {
        what: format!("path {}", path.display()),
    })?;
    locked(|| {
        // SAFETY: H5P_CLS_FILE_ACCESS is a predefined class id valid after library
        // initialisation (done by `sync`); the new list is closed by the guard.
        let fapl = Id {
            id: check_id(
                unsafe { h5p::H5Pcreate(*h5p::H5P_CLS_FILE_ACCESS) },
                "create a file access list",
            )?,
            close: h5p::H5Pclose,
        };
        let mut clear: hdf5_metno_sys::h5::hbool_t = 1;
        let prop = c"clear_status_flags";
        // SAFETY: "clear_status_flags" is registered in every file access list by HDF5
        // (≥ 1.10) with an hbool_t value; `clear` is an hbool_t that outlives the call.
        check(
            unsafe { h5p::H5Pset(fapl.id, prop.as_ptr(), (&raw mut clear).cast()) },
            "set clear_status_flags",
        )?;
        // SAFETY: `name` is NUL-terminated and outlives the call; `fapl.id` is live. The
        // returned file id is closed by the guard.
        let file = Id {
            id: check_id(
                unsafe {
                    hdf5_metno_sys::h5f::H5Fopen(
                        name.as_ptr(),
                        hdf5_metno_sys::h5f::H5F_ACC_RDWR,
                        fapl.id,
                    )
                },
                "open the file read-write",
            )?,
            close: hdf5_metno_sys::h5f::H5Fclose,
        };
        // A writer killed between flushes may have written raw-data chunks past the
        // end-of-allocation its superblock records; readers then fail with "addr overflow".
        // Move the end of allocation to the end of the file, as `h5clear --increment=0` does.
        // SAFETY: `file.id` is a live file id opened read-write; the function only updates
        // the file's end-of-allocation (HDF5 ≥ 1.10.2; Debian ships 1.10.8).
        check(
            unsafe { H5Fincrement_filesize(file.id, 0) },
            "move the end of allocation to the end of the file",
        )?;
        drop(file);
        Ok::<(), H5Error>(())
    })?;
    cover_last_chunks(path)
}

/// The last chunk of a dataset may be only partly on disk (the writer was killed while
/// writing it, or the disk filled): its index entry reached the file, its bytes only in
/// part. Moves the file's end of allocation to the end of the furthest such chunk, so that
/// its missing tail reads as zeros (which `read_buffer` and recovery cut off) instead of
/// failing. The file grows by that missing tail at most (less than one chunk), and not at
/// all when every chunk is whole: making a file whole again adds nothing.
fn cover_last_chunks(path: &std::path::Path) -> Result<(), H5Error> {
    let library = |e| H5Error::Library(describe(e));
    let file = h5::File::open_rw(path).map_err(library)?;
    let eof = std::fs::metadata(path).map_or(0, |m| m.len());
    // A group or chunk index that does not read is left to the steps after this one, which
    // say what is wrong with it: here it only has no chunk to cover.
    let need = file
        .groups()
        .unwrap_or_default()
        .iter()
        .flat_map(|g| g.datasets().unwrap_or_default())
        .filter_map(|ds| last_chunks_end(&ds, eof).ok())
        .max()
        .unwrap_or(0);
    let end = recorded_end(&file)?.max(eof);
    if need > end {
        locked(|| {
            // SAFETY: `file.id()` is a live file id opened read-write; the function only
            // moves the file's end-of-allocation, here to max(EOA, EOF) + the increment.
            check(
                unsafe { H5Fincrement_filesize(file.id(), need - end) },
                "move the end of allocation past the last chunk",
            )
        })?;
    }
    Ok(())
}

/// Where the last two chunks along the first dimension of `ds` end in the file (0 when it
/// is not chunked or has none): those are the chunks a killed appending writer may have
/// left partly written. A chunk that starts at or past `eof` is not counted: none of it
/// reached the disk, and covering it would only add zeros.
fn last_chunks_end(ds: &Dataset, eof: u64) -> Result<u64, H5Error> {
    let Some(chunk) = ds.chunk() else {
        return Ok(0);
    };
    let rows = ds.shape().first().copied().unwrap_or(0) as u64;
    let step = chunk.first().copied().unwrap_or(1).max(1) as u64;
    if rows == 0 {
        return Ok(0);
    }
    let last = (rows - 1) / step;
    let mut end = 0u64;
    for index in last.saturating_sub(1)..=last {
        let mut offset = vec![0 as hsize_t; chunk.len()];
        offset[0] = index * step;
        let mut mask: std::ffi::c_uint = 0;
        let mut addr: haddr_t = hdf5_metno_sys::h5::HADDR_UNDEF;
        let mut size: hsize_t = 0;
        locked(|| {
            // SAFETY: `ds.id()` is a live chunked dataset; `offset` holds one coordinate per
            // dimension of the dataset (the chunk shape's rank), and the outputs are live
            // locals of the C types.
            check(
                unsafe {
                    h5d::H5Dget_chunk_info_by_coord(
                        ds.id(),
                        offset.as_ptr(),
                        &mut mask,
                        &mut addr,
                        &mut size,
                    )
                },
                "find the last chunks",
            )
        })?;
        if addr != hdf5_metno_sys::h5::HADDR_UNDEF && addr < eof {
            end = end.max(addr.saturating_add(size));
        }
    }
    Ok(end)
}

extern "C" {
    /// HDF5 ≥ 1.10.2: sets a file's end-of-allocation to max(EOA, EOF) + `increment`.
    fn H5Fincrement_filesize(file_id: hid_t, increment: hsize_t) -> hdf5_metno_sys::h5::herr_t;
    /// HDF5 ≥ 1.10.2: a file's end-of-allocation (on opening, the end of file its
    /// superblock records).
    fn H5Fget_eoa(file_id: hid_t, eoa: *mut haddr_t) -> hdf5_metno_sys::h5::herr_t;
}

/// The end of the file as its superblock recorded it at the writer's last flush (every
/// flush also sets the file's length to it): a file shorter than this was cut short.
pub(crate) fn recorded_end(file: &h5::File) -> Result<u64, H5Error> {
    let mut eoa: haddr_t = 0;
    locked(|| {
        // SAFETY: `file.id()` is a live file id and `eoa` a live local of the C type.
        check(
            unsafe { H5Fget_eoa(file.id(), &mut eoa) },
            "read the end of allocation",
        )
    })?;
    Ok(eoa)
}

/// Opens dataset `name` (a path from the file's root) with a raw-data chunk cache of
/// `cache_bytes` bytes (0: chunks go straight to the file, no copy through the cache).
pub(crate) fn open_dataset(
    file: &h5::File,
    name: &str,
    cache_bytes: usize,
) -> Result<Dataset, H5Error> {
    let cname = CString::new(name).map_err(|_| H5Error::Nul {
        what: format!("dataset name '{name}'"),
    })?;
    locked(|| {
        // SAFETY: H5P_CLS_DATASET_ACCESS is a predefined class id valid after library
        // initialisation (done by `sync`); the list is closed by the guard.
        let dapl = Id {
            id: check_id(
                unsafe { h5p::H5Pcreate(*h5p::H5P_CLS_DATASET_ACCESS) },
                "create a dataset access list",
            )?,
            close: h5p::H5Pclose,
        };
        // SAFETY: `dapl.id` is a live dataset access list; 521 slots (a prime, as HDF5
        // advises), `cache_bytes` bytes and w0 = 1.0 (evict fully written chunks first) are
        // valid values.
        check(
            unsafe { h5p::H5Pset_chunk_cache(dapl.id, 521, cache_bytes, 1.0) },
            "set the chunk cache",
        )?;
        // SAFETY: `file.id()` is a live file id, `cname` is NUL-terminated and outlives the
        // call; the returned id's ownership passes to the Dataset below.
        let id = check_id(
            unsafe { h5d::H5Dopen2(file.id(), cname.as_ptr(), dapl.id) },
            &format!("open dataset '{name}'"),
        )?;
        // SAFETY: `id` is a valid dataset id whose ownership passes to the Dataset.
        unsafe { h5::from_id::<Dataset>(id) }.map_err(|e| H5Error::Library(describe(e)))
    })
}

/// Stores `bytes` as the chunk of a rank-2 dataset whose first row is `first_row`, as they
/// are (`H5Dwrite_chunk`): already passed through the dataset's filters, except those whose
/// bit is set in `filter_mask`. The dataset's extent must already reach `first_row`.
pub(crate) fn write_chunk(
    ds: &Dataset,
    first_row: u64,
    filter_mask: u32,
    bytes: &[u8],
) -> Result<(), H5Error> {
    let offset: [hsize_t; 2] = [first_row, 0];
    locked(|| {
        // SAFETY: `ds.id()` is a live rank-2 chunked dataset id (the caller passes only the
        // `data` datasets, all of rank 2); `offset` holds one coordinate per dimension; HDF5
        // reads exactly `bytes.len()` bytes from the pointer, which the slice provides.
        check(
            unsafe {
                h5d::H5Dwrite_chunk(
                    ds.id(),
                    h5p::H5P_DEFAULT,
                    filter_mask,
                    offset.as_ptr(),
                    bytes.len(),
                    bytes.as_ptr().cast(),
                )
            },
            "write a chunk",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_not_the_size_of_the_rows_are_refused_before_hdf5_sees_them() {
        let d = Dtype::parse([("a", "f4")]).unwrap();
        let t = compound_type(&d).unwrap();
        assert!(Rows::new(0, 3, None, &t, 12).is_ok());
        let e = Rows::new(0, 3, Some(2), &t, 12).err().unwrap();
        assert_eq!(
            e,
            H5Error::Size {
                got: 12,
                rows: 3,
                want: 24
            }
        );
        assert_eq!(e.to_string(), "internal: 12 bytes for 3 rows of 24 bytes");
    }

    /// A file whose root group's header is zeroed (a bad disk block): the library's message
    /// says each step once, not "link iteration failed: link iteration failed: …" as libhdf5
    /// pushes a frame at every level it passes.
    #[test]
    fn a_damaged_files_error_says_each_step_once() {
        let dir = crate::fsio::test_dir("damaged");
        let path = dir.join("damaged.h5");
        let file = h5::File::with_options()
            .with_fapl(|p| p.libver_latest())
            .create(&path)
            .unwrap();
        file.create_group("raw").unwrap();
        drop(file);
        let mut bytes = std::fs::read(&path).unwrap();
        // Superblock version 2 and 3: signature, 4 bytes, then the base, extension, end of
        // file and root object header addresses, 8 bytes each.
        assert_eq!(bytes[8], 3);
        let root = u64::from_le_bytes(bytes[36..44].try_into().unwrap()) as usize;
        bytes[root..root + 64].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let e = h5::File::open(&path)
            .and_then(|f| f.member_names())
            .unwrap_err();
        let text = describe(e);
        let steps: Vec<&str> = text.split(": ").collect();
        assert!(steps.len() > 2, "{text}");
        assert!(steps.windows(2).all(|w| w[0] != w[1]), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The writer tells a full disk by the kind of its error (ENOSPC in the library's stack
    /// of a call, or of a call on a named object), not by the text of its whole message.
    #[test]
    fn a_full_disk_is_found_in_a_call_or_a_step_on_a_named_object() {
        let call = H5Error::Call {
            what: "could not write a chunk".into(),
            stack: "H5Dwrite_chunk(): can't write chunk: file write failed: errno = 28, \
                    error message = 'No space left on device'"
                .into(),
        };
        assert!(call.disk_full());
        let step = H5Error::In {
            context: "buffer 'raw': open data".into(),
            source: Box::new(call),
        };
        assert!(step.disk_full());
        assert!(step
            .to_string()
            .starts_with("buffer 'raw': open data: could not write a chunk: H5Dwrite_chunk()"));
        let other = H5Error::Call {
            what: "could not flush the file".into(),
            stack: "not a file".into(),
        };
        assert!(!other.disk_full());
        assert!(!H5Error::Unsupported("errno = 28".into()).disk_full());
    }
}
