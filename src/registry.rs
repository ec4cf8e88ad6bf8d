//! The built-in functions of daq-engine, collected into a [`Registry`]: the plumbing
//! functions, analysis, devices, HDF5 export and mimoCoRB2's built-ins by their own names.
//! Above the function modules and below the engine and the CLI; `main.rs` calls
//! [`Registry::builtin`] and hands the registry down.

use crate::worker::{Alias, Build, Check, Function, Registry};

impl Registry {
    /// Every built-in function of daq-engine.
    pub fn builtin() -> Registry {
        let mut r = Registry::new();
        for f in crate::analysis::plumbing::functions()
            .into_iter()
            .chain(crate::analysis::functions())
            .chain(crate::devices::functions().into_iter().map(|(f, _)| f))
            .chain([
                Function {
                    spec: crate::export::function::SPEC,
                    build: Build::Exporter(|c| {
                        Ok(Box::new(crate::export::function::Hdf5Export::build(c)?))
                    }),
                },
                Function {
                    spec: crate::export::replay::SPEC,
                    build: Build::Importer(|c| {
                        Ok(Box::new(crate::export::replay::Replay::build(c)?))
                    }),
                },
            ])
            .chain(crate::export::mimo::functions().into_iter().map(|(f, _)| f))
            .chain(kafka_functions().into_iter().map(|(f, _)| f))
        {
            r.add(f);
        }
        for (name, check) in builtin_checks() {
            r.set_check(name, check);
        }
        for (f, check) in crate::export::mimo::functions()
            .into_iter()
            .chain(crate::devices::functions())
            .chain(kafka_functions())
        {
            r.set_check(f.spec.name, check);
        }
        for a in &MIMOCORB2_ALIASES {
            r.add_alias(a);
        }
        r.set_ignored("exporters.histogram", SHARED_WITH_CSV);
        r
    }

    /// The functions registered after the built-ins (those of user libraries), for messages.
    pub fn names_from(&self, _file: Option<&std::path::Path>) -> String {
        let builtin = Registry::builtin();
        let user: Vec<&str> = self
            .all()
            .iter()
            .filter(|f| builtin.get(f.spec.name).is_none())
            .map(|f| f.spec.name)
            .collect();
        if user.is_empty() {
            "nothing".into()
        } else {
            user.join(", ")
        }
    }
}

/// export.kafka and source.kafka, in a build with the `kafka` feature.
fn kafka_functions() -> Vec<(Function, Check)> {
    #[cfg(feature = "kafka")]
    return crate::kafka::functions();
    #[cfg(not(feature = "kafka"))]
    return Vec::new();
}

/// Why a key of mimoCoRB2's visualizers is ignored by an exporter.
const VISUALIZER_KEY: &str =
    "a key of mimoCoRB2's visualizers (matplotlib), not read by an exporter";

/// Why a visualizer's drawing keys are ignored here.
const DRAWN_HERE: &str = "the dashboard and the web page draw the histograms their own way";

/// Why a visualizer ignores a key of exporters.csv in the config it shares with it.
const CSV_KEY: &str = "a key of exporters.csv (a config shared with it)";

/// Keys of mimoCoRB2's exporters.csv and visualizers.csv that a config file shared with
/// exporters.histogram holds; exporters.histogram reads none of them.
const SHARED_WITH_CSV: &[(&str, &str)] = &[
    ("filename", "exporters.histogram writes Histograms_<buffer>/ and histogram_<worker>_<field>.csv; `filename` is exporters.csv's"),
    ("save_interval", "exporters.histogram writes every `update_interval` seconds; `save_interval` is exporters.csv's"),
    ("plot_type", VISUALIZER_KEY),
    ("histtype", VISUALIZER_KEY),
];

/// What check says about mimoCoRB2's visualizers here.
const VISUALIZER_NOTE: &str = "no matplotlib window opens: the terminal dashboard and the web \
     page show the histograms of every export.histogram/exporters.histogram worker (add one with \
     these `bins` if there is none); this worker puts the latest record of the observed buffer \
     there (oscilloscope_<worker>.json)";

/// mimoCoRB2 0.0.4's built-ins (`mimocorb2/functions/*.py`) that one of ours runs as they are.
pub static MIMOCORB2_ALIASES: [Alias; 6] = [
    Alias {
        name: "exporters.drain",
        target: "export.drain",
        summary: "mimoCoRB2's exporters.drain, run by export.drain: consumes and counts every \
                  event; writes drain_<worker>_<process>.json with the counts at the end.",
        ignored: &[],
        note: None,
    },
    Alias {
        name: "exporters.csv",
        target: "export.csv",
        summary: "mimoCoRB2's exporters.csv, run by export.csv: appends every event's fields \
                  as a row of <filename>.csv in the run directory every save_interval seconds.",
        ignored: &[
            ("bins", "exporters.csv reads no `bins` (a config shared with exporters.histogram)"),
            (
                "update_interval",
                "exporters.csv writes every `save_interval` seconds",
            ),
            ("plot_type", VISUALIZER_KEY),
            ("histtype", VISUALIZER_KEY),
        ],
        note: None,
    },
    Alias {
        name: "visualizers.histogram",
        target: "observe.oscilloscope",
        summary: "mimoCoRB2's visualizers.histogram (a matplotlib window of the histograms of \
                  exporters.histogram), run by observe.oscilloscope: the dashboard and the web \
                  page show every histogram exporter's histograms; this worker adds the latest \
                  record of the observed buffer.",
        ignored: &[
            ("plot_type", DRAWN_HERE),
            ("bins", "visualizers.histogram reads no `bins` (a config shared with exporters.histogram)"),
            ("filename", CSV_KEY),
            ("save_interval", CSV_KEY),
            ("histtype", "a key of visualizers.csv (a config shared with it)"),
        ],
        note: Some(VISUALIZER_NOTE),
    },
    Alias {
        name: "visualizers.csv",
        target: "observe.oscilloscope",
        summary: "mimoCoRB2's visualizers.csv (a matplotlib window of histograms of the CSV \
                  file of exporters.csv), run by observe.oscilloscope: the dashboard and the web \
                  page show every histogram exporter's histograms; this worker adds the latest \
                  record of the observed buffer.",
        ignored: &[
            (
                "bins",
                "histograms on the dashboard come from an exporters.histogram worker: give it these bins",
            ),
            ("filename", "nothing is read back from the CSV file"),
            ("plot_type", DRAWN_HERE),
            ("histtype", DRAWN_HERE),
            ("save_interval", CSV_KEY),
        ],
        note: Some(VISUALIZER_NOTE),
    },
    Alias {
        name: "observers.oscilloscope",
        target: "observe.oscilloscope",
        summary: "mimoCoRB2's observers.oscilloscope, run by observe.oscilloscope: the latest \
                  event's channels go to the dashboard, the web page and \
                  oscilloscope_<worker>.json, with its t_scaling, y_scaling, ylim and \
                  trigger_level; no matplotlib window opens.",
        ignored: &[
            ("colors", "the dashboard and the web page pick the colours"),
        ],
        note: Some(
            "no matplotlib window opens: the traces are shown on the terminal dashboard and the web page, and written to oscilloscope_<worker>.json",
        ),
    },
    Alias {
        name: "importers.redpitaya.waveform",
        target: "device.redpitaya",
        summary: "mimoCoRB2's importers.redpitaya.waveform, run by device.redpitaya: traces \
                  {IN1: int16, IN2: int16} from a Red Pitaya's MCPHA server, streamed set_size \
                  at a time; its keys ip, sample_rate and number_of_samples_before_trigger \
                  are read as address, decimation and pretrigger.",
        ignored: &[],
        note: None,
    },
];

/// The check of every built-in function.
fn builtin_checks() -> Vec<(&'static str, Check)> {
    let mut checks: Vec<(&'static str, Check)> = [
        "bench.source",
        "bench.sink",
        "misc.copy",
        "simulate.pulses",
        "filter.threshold",
        "filter.coincidence",
        "filter.prescale",
        "process.baseline",
        "process.pulses",
        "process.pulse_pairs",
        "process.downsample",
        "analyzers.pha",
        "process.rate",
        "process.coincidence",
        "export.histogram",
        "exporters.histogram",
        "export.drain",
        "observe.oscilloscope",
    ]
    .into_iter()
    .map(|n| (n, Check::Build))
    .collect();
    checks.extend([
        (
            crate::export::function::SPEC.name,
            Check::Config(crate::export::function::check),
        ),
        (
            crate::analysis::csv::CSV_SPEC.name,
            Check::Config(crate::analysis::csv::check),
        ),
        (
            crate::export::replay::SPEC.name,
            Check::Config(crate::export::replay::check),
        ),
    ]);
    checks
}

#[cfg(test)]
mod tests {
    /// Every built-in function's keys are documented, unique, and defaulted in their type
    /// (see `setup::check::key_declaration_problems`).
    #[test]
    fn every_builtin_key_is_documented_unique_and_its_default_has_its_type() {
        let registry = Registry::builtin();
        let (problems, keys) =
            crate::setup::key_declaration_problems(registry.all().iter().map(|f| &f.spec));
        assert!(keys > 100, "only {keys} keys: is the registry complete?");
        assert!(problems.is_empty(), "{problems:#?}");
    }

    use super::*;

    /// Every built-in validates its whole config in a pure step that `check` runs.
    #[test]
    fn every_builtin_function_has_a_check() {
        let r = Registry::builtin();
        for f in r.all() {
            assert!(
                r.has_check(f.spec.name),
                "built-in {} has no check",
                f.spec.name
            );
        }
        for n in r.checked_names() {
            assert!(
                r.get(n).is_some(),
                "a check for {n}, which is not a function"
            );
        }
    }

    /// A refusal of a mimoCoRB2 name's worker names the function as the setup wrote it.
    #[test]
    fn an_alias_refused_in_several_processes_is_named_as_written() {
        let r = Registry::builtin();
        let raw = crate::worker::BufferShape::parse("raw", [("x", "float64")], 1).unwrap();
        for (alias, ours) in [
            ("exporters.csv", "export.csv"),
            ("exporters.histogram", "export.histogram"),
        ] {
            let mut ctx = crate::worker::BuildContext::for_test(
                "table",
                serde_json::json!({}),
                vec![raw.clone()],
                vec![],
            );
            ctx.process = (0, 2);
            let e = r.check(alias, &ctx).unwrap_err().to_string();
            assert!(e.contains(&format!("{alias} must see every event")), "{e}");
            let e = r.check(ours, &ctx).unwrap_err().to_string();
            assert!(e.contains(&format!("{ours} must see every event")), "{e}");
        }
    }
}
