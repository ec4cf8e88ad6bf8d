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
            .chain(crate::devices::functions())
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
        {
            r.add(f);
        }
        for (name, check) in builtin_checks() {
            r.set_check(name, check);
        }
        for a in &MIMOCORB2_ALIASES {
            r.add_alias(a);
        }
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

/// mimoCoRB2 0.0.4's built-ins (`mimocorb2/functions/*.py`) that one of ours runs as they are.
pub static MIMOCORB2_ALIASES: [Alias; 4] = [
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
        ],
        note: None,
    },
    Alias {
        name: "observers.oscilloscope",
        target: "observe.oscilloscope",
        summary: "mimoCoRB2's observers.oscilloscope, run by observe.oscilloscope: the latest \
                  event's channels go to the dashboard, the web page and \
                  oscilloscope_<worker>.json; no matplotlib window opens.",
        ignored: &[
            ("ylim", "the dashboard and the web page scale the axes themselves"),
            (
                "t_scaling",
                "not applied: the time axis is in samples unless observe.oscilloscope's `sample_interval` is set",
            ),
            (
                "y_scaling",
                "not applied: the values are shown as stored unless observe.oscilloscope's `scale` and `offset` are set",
            ),
            ("trigger_level", "no trigger line is drawn"),
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
        "process.rate",
        "export.histogram",
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
    checks.extend(crate::devices::checks());
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
}
