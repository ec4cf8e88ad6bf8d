//! Worker functions by name: the built-ins, and those loaded from user shared libraries.
//!
//! A function is its declaration ([`FunctionSpec`], checked by the setup validator) and a
//! constructor for its template's trait, called in the worker process before the run.

use crate::worker::{
    BuildContext, Catalog, Exporter, Filter, FunctionSpec, Importer, Observer, Processor, Template,
    WorkerError,
};

/// A constructor for one template.
#[derive(Clone, Copy)]
pub enum Build {
    /// Builds an Importer.
    Importer(fn(&BuildContext) -> Result<Box<dyn Importer>, WorkerError>),
    /// Builds a Filter.
    Filter(fn(&BuildContext) -> Result<Box<dyn Filter>, WorkerError>),
    /// Builds a Processor.
    Processor(fn(&BuildContext) -> Result<Box<dyn Processor>, WorkerError>),
    /// Builds an Exporter.
    Exporter(fn(&BuildContext) -> Result<Box<dyn Exporter>, WorkerError>),
    /// Builds an Observer.
    Observer(fn(&BuildContext) -> Result<Box<dyn Observer>, WorkerError>),
}

impl Build {
    /// The template it builds.
    pub fn template(&self) -> Template {
        match self {
            Build::Importer(_) => Template::Importer,
            Build::Filter(_) => Template::Filter,
            Build::Processor(_) => Template::Processor,
            Build::Exporter(_) => Template::Exporter,
            Build::Observer(_) => Template::Observer,
        }
    }
}

/// How a function's config is checked before a run (by `check` and by the run itself),
/// opening nothing.
#[derive(Clone, Copy)]
pub enum Check {
    /// Its constructor opens nothing (no file, device or library): building it once and
    /// dropping it is the check.
    Build,
    /// Its constructor opens something; this checks everything it checks, without opening.
    Config(fn(&BuildContext) -> Result<(), WorkerError>),
}

/// A mimoCoRB2 built-in by its own name, run by the built-in of ours that does its job.
pub struct Alias {
    /// mimoCoRB2's name (`exporters.drain`).
    pub name: &'static str,
    /// Ours (`export.drain`).
    pub target: &'static str,
    /// The summary the function reference shows.
    pub summary: &'static str,
    /// mimoCoRB2 config keys accepted and ignored, with why.
    pub ignored: &'static [(&'static str, &'static str)],
    /// What `check` says about every worker using it.
    pub note: Option<&'static str>,
}

/// mimoCoRB2 0.0.4's built-ins (`mimocorb2/functions/*.py`) that one of ours runs as they are.
pub static MIMOCORB2_ALIASES: [Alias; 3] = [
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
];

/// A registered function.
#[derive(Clone, Copy)]
pub struct Function {
    /// Its declaration.
    pub spec: FunctionSpec,
    /// Its constructor.
    pub build: Build,
}

/// Functions by name.
#[derive(Default, Clone)]
pub struct Registry {
    functions: Vec<Function>,
    /// The pure checks of the built-ins, by name; a function that replaces a built-in
    /// drops its check.
    checks: Vec<(&'static str, Check)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Every built-in function of daq-engine.
    pub fn builtin() -> Registry {
        let mut r = Registry::new();
        for f in super::builtin::functions()
            .into_iter()
            .chain(crate::analysis::functions())
            .chain(crate::devices::functions())
            .chain([Function {
                spec: crate::export::function::SPEC,
                build: Build::Exporter(|c| {
                    Ok(Box::new(crate::export::function::Hdf5Export::build(c)?))
                }),
            }])
        {
            r.add(f);
        }
        r.checks = builtin_checks();
        for a in &MIMOCORB2_ALIASES {
            let Some(target) = r.get(a.target).copied() else {
                continue;
            };
            let check = r.checks.iter().find(|(n, _)| *n == a.target).map(|c| c.1);
            r.add(Function {
                spec: FunctionSpec {
                    name: a.name,
                    summary: a.summary,
                    ..target.spec
                },
                build: target.build,
            });
            if let Some(check) = check {
                r.checks.push((a.name, check));
            }
        }
        r
    }

    /// Runs the check of function `name` (see [`Check`]) in `ctx`; Ok when it has none.
    pub fn check(&self, name: &str, ctx: &BuildContext) -> Result<(), WorkerError> {
        let Some(f) = self.get(name) else {
            return Ok(());
        };
        match self.checks.iter().find(|(n, _)| *n == name) {
            None => Ok(()),
            Some((_, Check::Config(check))) => check(ctx),
            Some((_, Check::Build)) => match f.build {
                Build::Importer(b) => b(ctx).map(drop),
                Build::Filter(b) => b(ctx).map(drop),
                Build::Processor(b) => b(ctx).map(drop),
                Build::Exporter(b) => b(ctx).map(drop),
                Build::Observer(b) => b(ctx).map(drop),
            },
        }
    }

    /// Adds a function; a later one of the same name replaces the earlier (a user's own
    /// binary may override a built-in).
    pub fn add(&mut self, f: Function) {
        debug_assert_eq!(f.spec.template, f.build.template(), "{}", f.spec.name);
        self.functions.retain(|g| g.spec.name != f.spec.name);
        self.checks.retain(|(n, _)| *n != f.spec.name);
        self.functions.push(f);
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.spec.name == name)
    }

    /// Loads the user libraries (`file:`) that `workers` name, adding their functions.
    /// Python files are left alone (the setup check reports them).
    pub fn with_libraries<'a>(
        &self,
        files: impl IntoIterator<Item = &'a std::path::Path>,
    ) -> Result<Registry, super::plugin::PluginError> {
        let mut r = self.clone();
        let mut seen = Vec::new();
        for f in files {
            if f.extension().is_some_and(|e| e == "py") || seen.contains(&f) {
                continue;
            }
            seen.push(f);
            super::plugin::load(f, &mut r)?;
        }
        Ok(r)
    }

    /// The functions registered after the built-ins (those of user libraries), for messages.
    pub fn names_from(&self, _file: Option<&std::path::Path>) -> String {
        let builtin = Registry::builtin();
        let user: Vec<&str> = self
            .functions
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

    /// All functions, in registration order.
    pub fn all(&self) -> &[Function] {
        &self.functions
    }
}

impl Catalog for Registry {
    fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.get(name).map(|f| &f.spec)
    }

    fn names(&self) -> Vec<&'static str> {
        self.functions.iter().map(|f| f.spec.name).collect()
    }

    fn check_worker(&self, function: &str, ctx: &BuildContext) -> Result<(), WorkerError> {
        self.check(function, ctx)
    }

    fn ignored_keys(&self, function: &str) -> &[(&'static str, &'static str)] {
        alias(self, function).map_or(&[], |a| a.ignored)
    }

    fn note(&self, function: &str) -> Option<&'static str> {
        alias(self, function).and_then(|a| a.note)
    }
}

/// The mimoCoRB2 alias `function` is, unless a user library replaced it.
fn alias(r: &Registry, function: &str) -> Option<&'static Alias> {
    let a = MIMOCORB2_ALIASES.iter().find(|a| a.name == function)?;
    let f = r.get(function)?;
    (f.spec.summary == a.summary).then_some(a)
}

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
    ]);
    checks.extend(crate::devices::checks());
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every built-in validates its whole config in a pure step that `check` runs.
    #[test]
    fn every_builtin_function_has_a_check() {
        let r = Registry::builtin();
        for f in r.all() {
            assert!(
                r.checks.iter().any(|(n, _)| *n == f.spec.name),
                "built-in {} has no check",
                f.spec.name
            );
        }
        for (n, _) in &r.checks {
            assert!(
                r.get(n).is_some(),
                "a check for {n}, which is not a function"
            );
        }
    }
}
