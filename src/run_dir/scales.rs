//! How the integer samples of a buffer become volts: `scales_<worker>.txt`, written once by an
//! importer that stores ADC counts (a device in `format: counts`, `simulate.pulses` into
//! integer fields), read by the exporters (`export.hdf5` puts them on the dataset as
//! attributes `<field>.volts_per_count` and `<field>.offset_volts`).
//!
//! The recipe, for every field listed: `volts = counts × volts_per_count + offset_volts`.
//! The file holds `key = value` lines, like the device notes: `buffer = <sink>`, then per
//! field `<field>.volts_per_count` and `<field>.offset_volts` (f64, shortest exact text).

use std::path::{Path, PathBuf};

/// How one field's counts become volts.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldScale {
    /// Field name (`chA`).
    pub field: String,
    /// Volts one count is worth.
    pub volts_per_count: f64,
    /// Volts of count 0.
    pub offset_volts: f64,
}

/// The scales an importer wrote for its sink buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleScales {
    /// The buffer the importer writes.
    pub buffer: String,
    /// One per field stored as counts, in field order.
    pub fields: Vec<FieldScale>,
}

/// The suffix of the attribute holding a field's volts per count (`chA.volts_per_count`).
pub const VOLTS_PER_COUNT: &str = "volts_per_count";
/// The suffix of the attribute holding a field's volts at count 0 (`chA.offset_volts`).
pub const OFFSET_VOLTS: &str = "offset_volts";

/// The sample scales of importer `worker` (`scales_<worker>.txt`).
pub fn scales_path(run_dir: &Path, worker: &str) -> PathBuf {
    run_dir.join(format!("scales_{worker}.txt"))
}

impl SampleScales {
    /// The file's text.
    pub fn text(&self) -> String {
        let mut t = format!("buffer = {}\n", self.buffer);
        for f in &self.fields {
            t.push_str(&format!(
                "{0}.{VOLTS_PER_COUNT} = {1}\n{0}.{OFFSET_VOLTS} = {2}\n",
                f.field, f.volts_per_count, f.offset_volts
            ));
        }
        t
    }

    /// The scales in `path`; `None` when it cannot be read or holds no buffer.
    pub fn read(path: &Path) -> Option<SampleScales> {
        let notes = super::read_notes(path);
        let buffer = notes.iter().find(|(k, _)| k == "buffer")?.1.clone();
        let mut fields: Vec<FieldScale> = Vec::new();
        for (k, v) in &notes {
            let Some((field, what)) = k.rsplit_once('.') else {
                continue;
            };
            let Ok(v) = v.parse::<f64>() else { continue };
            let at = match fields.iter().position(|f| f.field == field) {
                Some(i) => i,
                None => {
                    fields.push(FieldScale {
                        field: field.to_string(),
                        volts_per_count: f64::NAN,
                        offset_volts: f64::NAN,
                    });
                    fields.len() - 1
                }
            };
            match what {
                VOLTS_PER_COUNT => fields[at].volts_per_count = v,
                OFFSET_VOLTS => fields[at].offset_volts = v,
                _ => {}
            }
        }
        fields.retain(|f| f.volts_per_count.is_finite() && f.offset_volts.is_finite());
        Some(SampleScales { buffer, fields })
    }

    /// Writes them as importer `worker`'s scales into `run_dir`, atomically; nothing when
    /// there are none or `run_dir` is not a run's directory (a `check`, a unit test).
    pub fn write(&self, run_dir: &Path, worker: &str) -> std::io::Result<()> {
        if self.fields.is_empty() || !run_dir.is_dir() || run_dir == std::env::temp_dir() {
            return Ok(());
        }
        crate::fsio::replace(&scales_path(run_dir, worker), self.text().as_bytes())
    }
}

/// The importer whose scales describe buffer `buffer` of the run in `plan`: its writer, or,
/// where the writer is a built-in filter (which passes events on unchanged) reading one
/// buffer of the same shape, that buffer's, and so on. `None` when the chain ends at
/// anything else (a processor changes the values; the scales no longer hold).
pub fn origin_of(plan: &super::plan::Plan, buffer: &str) -> Option<String> {
    let mut at = plan.buffer(buffer)?;
    for _ in 0..plan.buffers.len() {
        let writer = plan.worker(at.writer.as_deref()?)?;
        if writer.is_importer() {
            return Some(writer.name.clone());
        }
        let [source] = writer.sources.as_slice() else {
            return None;
        };
        let from = plan.buffer(source)?;
        let copies = writer.function.starts_with("filter.")
            && writer.file.is_none()
            && from.fields == at.fields
            && from.data_length == at.data_length;
        if !copies {
            return None;
        }
        at = from;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_trip_exactly() {
        let dir = crate::fsio::test_dir("scales");
        let s = SampleScales {
            buffer: "raw".into(),
            fields: vec![
                FieldScale {
                    field: "chA".into(),
                    volts_per_count: 0.5 / 32512.0,
                    offset_volts: -0.1,
                },
                FieldScale {
                    field: "ch.2".into(),
                    volts_per_count: 1.0 / 65536.0,
                    offset_volts: 0.0,
                },
            ],
        };
        s.write(&dir, "scope").unwrap();
        assert_eq!(SampleScales::read(&scales_path(&dir, "scope")), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A plan of buffers (name, dtype of field `chA`, writer) and workers (name, function,
    /// sources).
    fn plan(buffers: &[(&str, &str, &str)], workers: &[(&str, &str, &[&str])]) -> Plan {
        let buffers: Vec<serde_json::Value> = buffers
            .iter()
            .map(|(name, ty, writer)| {
                serde_json::json!({"name": name, "fields": [["chA", ty]], "data_length": 8,
                    "slot_count": 4, "policy": "block", "writer": writer, "readers": [],
                    "observers": [], "rings": []})
            })
            .collect();
        let workers: Vec<serde_json::Value> = workers
            .iter()
            .map(|(name, function, sources)| {
                serde_json::json!({"name": name, "function": function, "file": null,
                    "processes": 1, "sources": sources, "sinks": [], "observes": [],
                    "config": {}, "cpu": [], "priority": null, "restart": "never"})
            })
            .collect();
        serde_json::from_value(
            serde_json::json!({"run_id": "t", "run_dir": "/", "setup_dir": "/",
            "buffers": buffers, "workers": workers, "max_events": null, "max_seconds": null,
            "stats_interval": 1.0, "huge_pages": false}),
        )
        .unwrap()
    }

    use super::super::plan::Plan;

    /// The scales hold behind filters (events copied unchanged) and not behind a
    /// processor, nor across a change of dtype.
    #[test]
    fn the_origin_is_found_through_filters_only() {
        let p = plan(
            &[
                ("raw", "int16", "adc"),
                ("trig", "int16", "trigger"),
                ("again", "int16", "prescale"),
                ("flat", "int16", "baseline"),
                ("wide", "int32", "widen"),
            ],
            &[
                ("adc", "simulate.pulses", &[]),
                ("trigger", "filter.threshold", &["raw"]),
                ("prescale", "filter.prescale", &["trig"]),
                ("baseline", "process.baseline", &["raw"]),
                ("widen", "filter.threshold", &["raw"]),
            ],
        );
        assert_eq!(origin_of(&p, "raw").as_deref(), Some("adc"));
        assert_eq!(origin_of(&p, "again").as_deref(), Some("adc"));
        assert_eq!(origin_of(&p, "flat"), None);
        assert_eq!(origin_of(&p, "wide"), None);
        assert_eq!(origin_of(&p, "nothing"), None);
    }
}
