//! Worker functions by name: a [`Function`] is a declaration and a constructor, a
//! [`Registry`] holds them (the built-ins are added by `crate::registry`, user libraries by
//! [`Registry::with_libraries`]).
//!
//! A function is its declaration ([`FunctionSpec`], checked by the setup validator) and a
//! constructor for its template's trait, called in the worker process before the run.

use crate::worker::{
    BuildContext, Catalog, Exporter, Filter, FunctionSpec, Importer, Observer, Processor, Template,
    WiringError, WorkerError,
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
    /// The aliases added with [`Registry::add_alias`].
    aliases: Vec<&'static Alias>,
    /// mimoCoRB2 config keys a built-in accepts and ignores, with why (besides aliases').
    ignored: Vec<(&'static str, &'static [(&'static str, &'static str)])>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Sets the check of function `name` (see [`Check`]); [`Registry::add`] of a function of
    /// that name later drops it.
    pub fn set_check(&mut self, name: &'static str, check: Check) {
        self.checks.retain(|(n, _)| *n != name);
        self.checks.push((name, check));
    }

    /// Sets the mimoCoRB2 config keys that built-in `name` accepts and ignores (keys a
    /// config file shared with other mimoCoRB2 built-ins holds); [`Registry::add`] of a
    /// function of that name later drops them.
    pub fn set_ignored(
        &mut self,
        name: &'static str,
        keys: &'static [(&'static str, &'static str)],
    ) {
        self.ignored.retain(|(n, _)| *n != name);
        self.ignored.push((name, keys));
    }

    /// Whether function `name` has a check.
    pub fn has_check(&self, name: &str) -> bool {
        self.checks.iter().any(|(n, _)| *n == name)
    }

    /// The names of the functions that have a check.
    pub fn checked_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.checks.iter().map(|(n, _)| *n)
    }

    /// Adds `a`: its target function under its name, with the target's summary replaced and
    /// the target's check. Nothing when the target is not registered.
    pub fn add_alias(&mut self, a: &'static Alias) {
        let Some(target) = self.get(a.target).copied() else {
            return;
        };
        let check = self
            .checks
            .iter()
            .find(|(n, _)| *n == a.target)
            .map(|c| c.1);
        self.add(Function {
            spec: FunctionSpec {
                name: a.name,
                summary: a.summary,
                ..target.spec
            },
            build: target.build,
        });
        if let Some(check) = check {
            self.checks.push((a.name, check));
        }
        self.aliases.push(a);
    }

    /// Runs the check of function `name` (see [`Check`]) in `ctx`; Ok when it has none. A
    /// refusal of its process count names `name` (an alias's, not its target's).
    pub fn check(&self, name: &str, ctx: &BuildContext) -> Result<(), WorkerError> {
        let Some(f) = self.get(name) else {
            return Ok(());
        };
        let checked = match self.checks.iter().find(|(n, _)| *n == name) {
            None => Ok(()),
            Some((_, Check::Config(check))) => check(ctx),
            Some((_, Check::Build)) => match f.build {
                Build::Importer(b) => b(ctx).map(drop),
                Build::Filter(b) => b(ctx).map(drop),
                Build::Processor(b) => b(ctx).map(drop),
                Build::Exporter(b) => b(ctx).map(drop),
                Build::Observer(b) => b(ctx).map(drop),
            },
        };
        checked.map_err(|mut e| {
            if let WorkerError::Wiring(
                WiringError::OneProcess { function, .. } | WiringError::OneOpener { function, .. },
            ) = &mut e
            {
                *function = f.spec.name;
            }
            e
        })
    }

    /// Adds a function; a later one of the same name replaces the earlier (a user's own
    /// binary may override a built-in).
    pub fn add(&mut self, f: Function) {
        debug_assert_eq!(f.spec.template, f.build.template(), "{}", f.spec.name);
        self.functions.retain(|g| g.spec.name != f.spec.name);
        self.checks.retain(|(n, _)| *n != f.spec.name);
        self.ignored.retain(|(n, _)| *n != f.spec.name);
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
        match alias(self, function) {
            Some(a) => a.ignored,
            None => self
                .ignored
                .iter()
                .find(|(n, _)| *n == function)
                .map_or(&[], |(_, keys)| keys),
        }
    }

    fn note(&self, function: &str) -> Option<&'static str> {
        alias(self, function).and_then(|a| a.note)
    }
}

/// The alias `function` is, unless a user library replaced it.
fn alias(r: &Registry, function: &str) -> Option<&'static Alias> {
    let a = r.aliases.iter().copied().find(|a| a.name == function)?;
    let f = r.get(function)?;
    (f.spec.summary == a.summary).then_some(a)
}
