//! The few HDF5 C calls the safe `hdf5-metno` API does not offer: a compound type built from
//! a runtime [`Dtype`] with explicit little-endian members, and hyperslab reads and writes
//! of raw record bytes with that type as the memory type (so no conversion happens).
//!
//! Guarantees: every call runs under `hdf5-metno`'s library lock, every identifier this
//! module opens is closed on every path, and a byte slice handed to HDF5 is checked to be
//! exactly as long as the selection it fills. It must never hand HDF5 a pointer to fewer
//! bytes than the selection covers.

use hdf5_metno as h5;
use hdf5_metno::Dataset;
use hdf5_metno_sys::h5::hsize_t;
use hdf5_metno_sys::h5i::hid_t;
use hdf5_metno_sys::{h5d, h5p, h5s, h5t};
use std::ffi::CString;

use crate::dtype::{Dtype, Scalar};

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
            Ok(frames) if !frames.is_empty() => frames
                .iter()
                .map(|f| f.desc().to_string())
                .collect::<Vec<_>>()
                .join(": "),
            Ok(frames) => frames.description().to_string(),
            Err(e) => e.to_string(),
        },
    }
}

fn check_id(id: hid_t, what: &str) -> Result<hid_t, String> {
    h5::h5check(id).map_err(|e| format!("could not {what}: {}", describe(e)))
}

fn check(status: hdf5_metno_sys::h5::herr_t, what: &str) -> Result<(), String> {
    h5::h5check(status)
        .map(|_| ())
        .map_err(|e| format!("could not {what}: {}", describe(e)))
}

fn locked<T>(f: impl FnOnce() -> T) -> T {
    h5::sync::sync(f)
}

fn le_type(s: Scalar) -> hid_t {
    match s {
        Scalar::I8 => *h5t::H5T_STD_I8LE,
        Scalar::I16 => *h5t::H5T_STD_I16LE,
        Scalar::I32 => *h5t::H5T_STD_I32LE,
        Scalar::I64 => *h5t::H5T_STD_I64LE,
        Scalar::U8 => *h5t::H5T_STD_U8LE,
        Scalar::U16 => *h5t::H5T_STD_U16LE,
        Scalar::U32 => *h5t::H5T_STD_U32LE,
        Scalar::U64 => *h5t::H5T_STD_U64LE,
        Scalar::F32 => *h5t::H5T_IEEE_F32LE,
        Scalar::F64 => *h5t::H5T_IEEE_F64LE,
    }
}

/// The HDF5 compound type of one record of `dtype`: the same field names in the same order,
/// little-endian members at the packed offsets, total size `dtype.record_size()`.
pub(crate) fn compound_type(dtype: &Dtype) -> Result<h5::Datatype, String> {
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
            let name = CString::new(f.name.as_str())
                .map_err(|_| format!("field name '{}' contains a NUL byte", f.name))?;
            // SAFETY: `guard.id` is a live compound type, `name` is a NUL-terminated string
            // that outlives the call, and `le_type` is a predefined type id valid after
            // library initialisation (done by `sync`). offset + size <= record_size because
            // Dtype packs fields in order.
            check(
                unsafe { h5t::H5Tinsert(guard.id, name.as_ptr(), f.offset, le_type(f.scalar)) },
                &format!("insert field '{}'", f.name),
            )?;
        }
        let id = guard.id;
        std::mem::forget(guard);
        // SAFETY: `id` is a valid datatype id whose ownership passes to the Datatype.
        unsafe { h5::from_id::<h5::Datatype>(id) }.map_err(|e| e.to_string())
    })
}

/// A hyperslab of `rows` rows starting at `first_row` of a dataset of rank 1 (`cols == None`)
/// or rank 2 with `cols` columns, as (file space, memory space).
fn row_spaces(
    ds: &Dataset,
    first_row: u64,
    rows: u64,
    cols: Option<u64>,
) -> Result<(Id, Id), String> {
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
) -> Result<(), String> {
    let want = rows as usize * cols.unwrap_or(1) as usize * mem_type.size();
    if bytes.len() != want {
        return Err(format!(
            "internal: {} bytes for {rows} rows of {want} bytes",
            bytes.len()
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    locked(|| {
        let (fspace, mspace) = row_spaces(ds, first_row, rows, cols)?;
        // SAFETY: the memory space selects exactly rows * cols elements of `mem_type`, i.e.
        // `want` bytes, and `bytes.len() == want` was checked above; the buffer is only read.
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
) -> Result<(), String> {
    let want = rows as usize * cols.unwrap_or(1) as usize * mem_type.size();
    if out.len() != want {
        return Err(format!(
            "internal: {} bytes for {rows} rows of {want} bytes",
            out.len()
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    locked(|| {
        let (fspace, mspace) = row_spaces(ds, first_row, rows, cols)?;
        // SAFETY: the memory space selects exactly `want` bytes of `mem_type` and `out` is
        // exactly `want` bytes long and exclusively borrowed for the call.
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

/// Writes the dataset's cached chunks and its metadata to the file (`H5Dflush`), so that
/// what is written after this call can never reach the disk before these rows.
pub(crate) fn flush_dataset(ds: &Dataset) -> Result<(), String> {
    locked(|| {
        // SAFETY: `ds.id()` is a live dataset id owned by `ds` for the duration of the call.
        check(unsafe { h5d::H5Dflush(ds.id()) }, "flush the dataset")
    })
}

/// Opens `path` read-write with HDF5's `clear_status_flags` file-access property (what
/// `h5clear -s` does) and closes it again: the superblock no longer says "open for (SWMR)
/// writing", so every reader opens a file whose writer was killed.
pub(crate) fn clear_status_flags(path: &std::path::Path) -> Result<(), String> {
    let name = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", path.display()))?;
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
        // Move the end of allocation to the end of the file, as `h5clear --increment` does.
        // SAFETY: `file.id` is a live file id opened read-write; the function only updates
        // the file's end-of-allocation (HDF5 ≥ 1.10.2; Debian ships 1.10.8).
        // The last chunk may also be only partly on disk: with the end of allocation past it,
        // its missing tail reads as zeros (which `read_buffer` cuts off) instead of failing.
        check(
            unsafe { H5Fincrement_filesize(file.id, 64 << 20) },
            "move the end of allocation to the end of the file",
        )?;
        drop(file);
        Ok(())
    })
}

extern "C" {
    /// HDF5 ≥ 1.10.2: sets a file's end-of-allocation to max(EOA, EOF) + `increment`.
    fn H5Fincrement_filesize(file_id: hid_t, increment: hsize_t) -> hdf5_metno_sys::h5::herr_t;
}

/// Opens dataset `name` (a path from the file's root) with a raw-data chunk cache of
/// `cache_bytes` bytes (0: chunks go straight to the file, no copy through the cache).
pub(crate) fn open_dataset(
    file: &h5::File,
    name: &str,
    cache_bytes: usize,
) -> Result<Dataset, String> {
    let cname =
        CString::new(name).map_err(|_| format!("dataset name '{name}' contains a NUL byte"))?;
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
        unsafe { h5::from_id::<Dataset>(id) }.map_err(describe)
    })
}
