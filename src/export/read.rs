//! Reading back what [`super::hdf5::RunFileWriter`] wrote: a buffer's dtype, its raw event
//! bytes and its metadata, from a closed file, a file still being written (SWMR read), or a
//! file whose writer was killed.
//!
//! Guarantees: the dtype is rebuilt from the file's compound type (names, order, offsets)
//! and the bytes are read with that exact layout, so they equal what was appended. Must
//! never modify the file.

use std::path::Path;

use hdf5_metno as h5;

use super::error::ExportError;
use super::hdf5::MetaRow;
use super::raw::{self, H5Error};
use crate::dtype::{Dtype, Metadata};

/// One buffer of a run file, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferContents {
    /// The record type, rebuilt from the file's compound type.
    pub dtype: Dtype,
    /// Records per event.
    pub data_length: usize,
    /// Events in `data` (rows of the `data` dataset).
    pub events: usize,
    /// `events * data_length` records, laid out like numpy's structured array.
    pub data: Vec<u8>,
    /// The `metadata` rows (normally `events` of them; after a crash they may differ).
    pub metadata: Vec<Metadata>,
}

/// How many times a SWMR read of a metadata block whose checksum fails is tried. A failing
/// checksum may be a block the writer is writing at that moment, so libhdf5 tries again,
/// sleeping 1 ns, then twice as long each time; its default of 100 tries sleeps for ever
/// (2^99 ns) on a block that is not there, as in a file cut short by a crash. 28 tries wait
/// at most 2^27 ns (0.13 s) for a block, far longer than the write of one takes.
const SWMR_READ_ATTEMPTS: u32 = 28;

/// Opens a run file read-only; a file still open for SWMR writing (or whose writer was
/// killed) is opened in SWMR-read mode.
pub(crate) fn open_run_file(path: &Path) -> Result<(h5::File, bool), ExportError> {
    // What the system says of a file that is not there or not readable, rather than
    // libhdf5's several lines around it.
    if let Err(e) = std::fs::File::open(path) {
        return Err(ExportError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    match h5::File::open(path) {
        Ok(f) => Ok((f, false)),
        Err(first) => match h5::File::with_options()
            .with_fapl(|p| p.metadata_read_attempts(SWMR_READ_ATTEMPTS))
            .open_as(path, h5::OpenMode::ReadSWMR)
        {
            Ok(f) => {
                // libhdf5 does not compare the two in SWMR mode (a reader may see the
                // file's end before the writer's superblock does), and parts of a file cut
                // short read as zeros that it may loop over for ever.
                let recorded = raw::recorded_end(&f).map_err(|e| ExportError::Read {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                let len = std::fs::metadata(path).map_or(0, |m| m.len());
                if len < recorded {
                    return Err(ExportError::Read {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the file is cut short: {len} bytes of the {recorded} its writer \
                             recorded (a copy that stopped, or a crash before its end reached \
                             the disk); what it holds cannot be read safely"
                        ),
                    });
                }
                Ok((f, true))
            }
            Err(_) => Err(ExportError::Read {
                path: path.to_path_buf(),
                reason: raw::describe(first),
            }),
        },
    }
}

/// The record dtype of a dataset whose type is a packed compound of numpy field types.
pub(crate) fn dtype_of(ds: &h5::Dataset) -> Result<Dtype, H5Error> {
    let t = ds.dtype().map_err(|e| H5Error::Library(raw::describe(e)))?;
    let mut fields = raw::compound_fields(&t)?;
    fields.sort_by_key(|f| f.1);
    let d = Dtype::new(fields.iter().map(|(n, _, t)| (n.clone(), *t)))
        .map_err(|e| H5Error::Unsupported(e.to_string()))?;
    let packed =
        d.fields().iter().zip(&fields).all(|(a, b)| a.offset == b.1) && d.record_size() == t.size();
    if !packed {
        return Err(H5Error::Unsupported(
            "compound type has padding: not a packed numpy record".to_string(),
        ));
    }
    Ok(d)
}

/// Reads buffer `name` of the run file at `path`.
pub fn read_buffer(path: impl AsRef<Path>, name: &str) -> Result<BufferContents, ExportError> {
    let path = path.as_ref();
    let err = |reason: String| ExportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let (file, _) = open_run_file(path)?;
    let group = file
        .group(name)
        .map_err(|e| err(format!("no buffer '{name}': {}", raw::describe(e))))?;
    let ds = group
        .dataset("data")
        .map_err(|e| err(format!("buffer '{name}' has no data: {}", raw::describe(e))))?;
    let dtype = dtype_of(&ds).map_err(|r| err(format!("buffer '{name}': {r}")))?;
    let shape = ds.shape();
    if shape.len() != 2 {
        return Err(err(format!(
            "buffer '{name}': data has shape {shape:?}, expected (events, data_length)"
        )));
    }
    let (events, data_length) = (shape[0], shape[1]);
    let mem = raw::compound_type(&dtype).map_err(|e| err(e.to_string()))?;
    let row_bytes = data_length * dtype.record_size();
    let mut data = vec![0u8; events * row_bytes];
    let mut data_rows = events;
    if let Err(whole) = raw::read_rows(
        &ds,
        &mem,
        0,
        events as u64,
        Some(data_length as u64),
        &mut data,
    ) {
        // As for the metadata below: after a killed writer, keep every whole chunk that reads.
        let step = ds
            .chunk()
            .and_then(|c| c.first().copied())
            .unwrap_or(1)
            .max(1);
        let mut at = 0;
        while at < events {
            let end = (at + step).min(events);
            let part = &mut data[at * row_bytes..end * row_bytes];
            if raw::read_rows(
                &ds,
                &mem,
                at as u64,
                (end - at) as u64,
                Some(data_length as u64),
                part,
            )
            .is_err()
            {
                break;
            }
            at = end;
        }
        if at == 0 && events > 0 {
            return Err(err(format!("buffer '{name}': {whole}")));
        }
        data_rows = at;
    }
    let mds = group
        .dataset("metadata")
        .map_err(|e| err(format!("buffer '{name}': metadata: {}", raw::describe(e))))?;
    let meta = match mds.read_raw::<MetaRow>() {
        Ok(m) => m,
        Err(whole) => {
            // A writer killed between flushes can leave the last chunk of rows unreadable
            // (its address past the end of what was written). Keep every whole chunk that
            // reads: those rows were flushed, and their data precedes them in the file.
            let step = mds
                .chunk()
                .and_then(|c| c.first().copied())
                .unwrap_or(1024)
                .max(1);
            let total = mds.shape().first().copied().unwrap_or(0);
            let mut rows: Vec<MetaRow> = Vec::new();
            let mut at = 0;
            while at < total {
                let end = (at + step).min(total);
                match mds.read_slice_1d::<MetaRow, _>(at..end) {
                    Ok(part) => rows.extend(part.iter().copied()),
                    Err(_) => break,
                }
                at = end;
            }
            if rows.is_empty() && total > 0 {
                return Err(err(format!(
                    "buffer '{name}': metadata: {}",
                    raw::describe(whole)
                )));
            }
            rows
        }
    };
    // Rows past the last flush of a killed writer read as zeros (see `hdf5::recover`): an
    // all-zero row after the first can only be such a row, since every real event after the
    // first has a non-zero counter or timestamp.
    let written = meta
        .iter()
        .enumerate()
        .position(|(i, m)| i > 0 && m.counter == 0 && m.timestamp == 0.0 && m.deadtime == 0.0)
        .unwrap_or(meta.len());
    let meta: Vec<MetaRow> = meta.into_iter().take(written).collect();
    let events = data_rows.min(meta.len());
    data.truncate(events * data_length * dtype.record_size());
    Ok(BufferContents {
        dtype,
        data_length,
        events,
        data,
        metadata: meta
            .into_iter()
            .map(|m| Metadata {
                counter: m.counter,
                timestamp: m.timestamp,
                deadtime: m.deadtime,
            })
            .collect(),
    })
}
