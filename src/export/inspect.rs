//! `daq-engine inspect FILE.h5`: what a run file holds, as text a user can read without
//! Python: run attributes, every buffer with its fields, types, shape, chunking,
//! compression, event count, counter range and time span, and the histograms.
//!
//! Guarantees: opens the file read-only (SWMR read for a file still being written or whose
//! writer died) and reports gaps or duplicates in the counters. Must never modify the file.

use std::fmt::Write as _;
use std::path::Path;

use hdf5_metno as h5;
use hdf5_metno::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};

use super::error::ExportError;
use super::hdf5::{MetaRow, HISTOGRAM_GROUP};
use super::raw;
use super::read::{dtype_of, open_run_file};
use crate::clock::iso8601;

fn attr_text(a: &h5::Attribute) -> String {
    let td = match a.dtype().and_then(|t| t.to_descriptor()) {
        Ok(td) => td,
        Err(e) => return format!("<unreadable: {}>", raw::describe(e)),
    };
    if a.size() != 1 || a.ndim() != 0 {
        // A list of texts (the `pauses` intervals) reads as one.
        if matches!(td, TypeDescriptor::VarLenUnicode) {
            if let Ok(v) = a.read_raw::<VarLenUnicode>() {
                return v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            }
        }
        return format!("<{} values of {td}>", a.size());
    }
    let r = match td {
        TypeDescriptor::VarLenUnicode => a.read_scalar::<VarLenUnicode>().map(|s| s.to_string()),
        TypeDescriptor::VarLenAscii => a.read_scalar::<VarLenAscii>().map(|s| s.to_string()),
        TypeDescriptor::Integer(_) => a.read_scalar::<i64>().map(|v| v.to_string()),
        TypeDescriptor::Unsigned(_) => a.read_scalar::<u64>().map(|v| v.to_string()),
        TypeDescriptor::Float(_) => a.read_scalar::<f64>().map(|v| v.to_string()),
        other => return format!("<{other}>"),
    };
    r.unwrap_or_else(|e| format!("<unreadable: {}>", raw::describe(e)))
}

fn attrs_of(loc: &h5::Location) -> Vec<(String, String)> {
    let mut names = loc.attr_names().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = loc
                .attr(&n)
                .map(|a| attr_text(&a))
                .unwrap_or_else(|e| format!("<unreadable: {}>", raw::describe(e)));
            (n, v)
        })
        .collect()
}

fn time_text(t: f64) -> String {
    if !t.is_finite() {
        return format!("{t}");
    }
    let secs = t.floor();
    iso8601(secs as i64, ((t - secs) * 1000.0) as u32)
}

fn describe_buffer(out: &mut String, name: &str, g: &h5::Group) {
    let _ = writeln!(out, "\nbuffer '{name}'");
    // The events `data` holds, to compare with `metadata`'s.
    let mut data_events = None;
    match g.dataset("data") {
        Ok(ds) => {
            let shape = ds.shape();
            data_events = shape.first().copied();
            let dtype = dtype_of(&ds);
            let _ = writeln!(out, "  data: shape {shape:?} (events, data_length)");
            match &dtype {
                Ok(d) => {
                    let _ = writeln!(
                        out,
                        "    record {} bytes, numpy dtype {}",
                        d.record_size(),
                        d.numpy_descr()
                    );
                    for f in d.fields() {
                        let _ = writeln!(
                            out,
                            "      {:<20} {:<8} offset {}",
                            f.name,
                            f.ty.to_string(),
                            f.offset
                        );
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "    type: {e}");
                }
            }
            let filters: Vec<String> = ds.filters().iter().map(|f| format!("{f:?}")).collect();
            // The element size libhdf5 stores, for data whose type is not one of ours too.
            let element = match &dtype {
                Ok(d) => d.record_size(),
                Err(_) => ds.dtype().map(|t| t.size()).unwrap_or(0),
            };
            let logical = shape.iter().product::<usize>() as u64 * element as u64;
            let stored = ds.storage_size();
            let _ = writeln!(
                out,
                "    chunks {:?}, filters [{}], {} bytes stored for {} bytes of records{}",
                ds.chunk().unwrap_or_default(),
                filters.join(", "),
                stored,
                logical,
                if stored > 0 && logical > 0 {
                    format!(" (ratio {:.2})", logical as f64 / stored as f64)
                } else {
                    String::new()
                }
            );
            // The counts' scales (`<field>.volts_per_count`, `<field>.offset_volts`).
            for (k, v) in attrs_of(&ds) {
                let _ = writeln!(out, "    @{k} = {v}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  data: missing ({})", raw::describe(e));
        }
    }
    match g.dataset("metadata").and_then(|m| m.read_raw::<MetaRow>()) {
        Ok(rows) => {
            let written: Vec<&MetaRow> = rows.iter().filter(|m| m.counter >= 0).collect();
            let unwritten = rows.len() - written.len();
            let _ = write!(out, "  metadata: {} events", rows.len());
            if unwritten > 0 {
                let _ = write!(
                    out,
                    " ({unwritten} rows never written: the writer stopped before its flush)"
                );
            }
            let _ = writeln!(out);
            if let Some(d) = data_events.filter(|&d| d != rows.len()) {
                let _ = writeln!(
                    out,
                    "  data holds {d} events and metadata {}: the file was cut between the two \
                     (`daq-engine recover` keeps the {} both hold)",
                    rows.len(),
                    d.min(rows.len())
                );
            }
            if let (Some(first), Some(last)) = (written.first(), written.last()) {
                let mut counters: Vec<i64> = written.iter().map(|m| m.counter).collect();
                counters.sort_unstable();
                let (lo, hi) = (counters[0], counters[counters.len() - 1]);
                let dups = counters.windows(2).filter(|w| w[0] == w[1]).count();
                let span = (hi - lo + 1) as u64;
                let missing = span.saturating_sub((counters.len() - dups) as u64);
                let _ = writeln!(
                    out,
                    "    counter {lo} … {hi}: {missing} missing, {dups} duplicated{}",
                    if missing == 0 && dups == 0 {
                        " (complete)"
                    } else {
                        ""
                    }
                );
                let (t0, t1) = (first.timestamp, last.timestamp);
                let _ = writeln!(
                    out,
                    "    time {} … {} ({:.3} s)",
                    time_text(t0),
                    time_text(t1),
                    t1 - t0
                );
                let mean_dead =
                    written.iter().map(|m| m.deadtime).sum::<f64>() / written.len() as f64;
                let _ = writeln!(out, "    mean deadtime {mean_dead:.6}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  metadata: unreadable ({})", raw::describe(e));
        }
    }
    for (k, v) in attrs_of(g) {
        let _ = writeln!(out, "  @{k} = {v}");
    }
}

/// A readable summary of the run file at `path`: attributes, buffers (fields and types,
/// shape, chunks, compression, events, counter range with gaps and duplicates, time span)
/// and histograms, then the setup the file carries.
pub fn inspect(path: impl AsRef<Path>) -> Result<String, ExportError> {
    let (mut out, setup) = inspect_apart(path)?;
    if let Some(s) = setup {
        out.push_str(&setup_text(&s));
    }
    Ok(out)
}

/// The setup a run file carries, as [`inspect`] shows it.
pub fn setup_text(setup: &str) -> String {
    let mut out = format!("\nsetup ({} lines):\n", setup.lines().count());
    for line in setup.lines() {
        let _ = writeln!(out, "  | {line}");
    }
    out
}

/// As [`inspect`], with the setup the file carries apart (the files of one run carry the
/// same: `inspect RUN_DIR` shows it once).
pub fn inspect_apart(path: impl AsRef<Path>) -> Result<(String, Option<String>), ExportError> {
    let path = path.as_ref();
    let (file, swmr) = open_run_file(path)?;
    let mut out = String::new();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(out, "{} ({size} bytes)", path.display());
    if swmr {
        let _ = writeln!(
            out,
            "  still open for writing, or its writer stopped without closing it: shown as of the last flush"
        );
    }
    let mut setup = None;
    for (k, v) in attrs_of(&file) {
        if k == "setup" {
            setup = Some(v);
            continue;
        }
        let _ = writeln!(out, "  @{k} = {v}");
    }
    let mut names = file.member_names().map_err(|e| ExportError::Read {
        path: path.to_path_buf(),
        reason: raw::describe(e),
    })?;
    names.sort();
    for name in names.iter().filter(|n| n.as_str() != HISTOGRAM_GROUP) {
        match file.group(name) {
            Ok(g) => describe_buffer(&mut out, name, &g),
            Err(_) => {
                let _ = writeln!(out, "\n'{name}': not a group");
            }
        }
    }
    if let Ok(h) = file.group(HISTOGRAM_GROUP) {
        let mut hn = h.member_names().unwrap_or_default();
        hn.sort();
        for n in hn {
            let Ok(g) = h.group(&n) else { continue };
            let edges = g
                .dataset("edges")
                .and_then(|d| d.read_raw::<f64>())
                .unwrap_or_default();
            let counts = g
                .dataset("counts")
                .and_then(|d| d.read_raw::<u64>())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\nhistogram '{n}': {} bins from {} to {}, {} entries",
                counts.len(),
                edges.first().copied().unwrap_or(f64::NAN),
                edges.last().copied().unwrap_or(f64::NAN),
                counts.iter().sum::<u64>()
            );
            for (k, v) in attrs_of(&g) {
                let _ = writeln!(out, "  @{k} = {v}");
            }
        }
    }
    Ok((out, setup))
}
