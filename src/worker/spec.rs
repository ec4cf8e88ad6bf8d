//! What a worker function declares about itself: its template, how many buffers it takes on
//! each side, and its config keys. The setup validator checks a setup file against these
//! declarations before anything starts, so a missing key or a wrong buffer count is reported
//! with its file position instead of failing at run time.

use std::fmt;

/// The five mimoCoRB2 templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    /// Takes data from a device or generator into one sink.
    Importer,
    /// Passes each event unchanged to all, some or none of its sinks (same dtype and length).
    Filter,
    /// Turns each event into zero or more results per sink (any dtype).
    Processor,
    /// Consumes every event (to a file, a histogram, nowhere), optionally passing it on.
    Exporter,
    /// Looks at the latest events without ever holding the writer back.
    Observer,
}

impl Template {
    /// Lower-case name, as printed in messages and graphs.
    pub fn name(self) -> &'static str {
        match self {
            Template::Importer => "importer",
            Template::Filter => "filter",
            Template::Processor => "processor",
            Template::Exporter => "exporter",
            Template::Observer => "observer",
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many buffers a function takes on one side (`sources`, `sinks`, `observes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    /// At least this many.
    pub min: usize,
    /// At most this many.
    pub max: usize,
}

impl Arity {
    /// Exactly none.
    pub const NONE: Arity = Arity { min: 0, max: 0 };
    /// Exactly one.
    pub const ONE: Arity = Arity { min: 1, max: 1 };
    /// One or more.
    pub const SOME: Arity = Arity {
        min: 1,
        max: usize::MAX,
    };
    /// Any number, including none.
    pub const ANY: Arity = Arity {
        min: 0,
        max: usize::MAX,
    };

    /// True when `n` buffers are allowed.
    pub fn allows(self, n: usize) -> bool {
        n >= self.min && n <= self.max
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (a, b) if a == b => write!(f, "exactly {a}"),
            (0, usize::MAX) => write!(f, "any number"),
            (a, usize::MAX) => write!(f, "at least {a}"),
            (a, b) => write!(f, "{a} to {b}"),
        }
    }
}

/// The type a config value must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// A whole number.
    Int,
    /// A number (whole numbers accepted).
    Float,
    /// `true` or `false`.
    Bool,
    /// Text.
    Str,
    /// A list.
    List,
    /// A mapping.
    Map,
    /// Anything.
    Any,
}

impl KeyType {
    /// What a message calls it.
    pub fn describe(self) -> &'static str {
        match self {
            KeyType::Int => "a whole number",
            KeyType::Float => "a number",
            KeyType::Bool => "true or false",
            KeyType::Str => "a string",
            KeyType::List => "a list",
            KeyType::Map => "a mapping",
            KeyType::Any => "any value",
        }
    }
}

/// One config key a function reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigKey {
    /// The key as written in `config:`.
    pub name: &'static str,
    /// Its type.
    pub ty: KeyType,
    /// Whether the setup must give it.
    pub required: bool,
    /// The default, as YAML text, when not required (shown in docs and `check`).
    pub default: Option<&'static str>,
    /// One line for the README and `--help`: what it does, with its unit.
    pub doc: &'static str,
}

impl ConfigKey {
    /// How many keys `lists` hold together: the length of [`ConfigKey::join`]'s array.
    pub const fn count(lists: &[&[ConfigKey]]) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < lists.len() {
            n += lists[i].len();
            i += 1;
        }
        n
    }

    /// The keys of `lists`, one list after the other, as one array of `N` keys, `N` being
    /// their [`count`](ConfigKey::count) (another `N` is an error, at compile time in a
    /// const). [`join_keys!`](crate::join_keys) calls it for a function's declaration.
    pub const fn join<const N: usize>(lists: &[&[ConfigKey]]) -> [ConfigKey; N] {
        /// What each place holds until its key is copied in (none is left so).
        const UNSET: ConfigKey = ConfigKey {
            name: "",
            ty: KeyType::Any,
            required: false,
            default: None,
            doc: "",
        };
        assert!(
            ConfigKey::count(lists) == N,
            "the array must be as long as the lists together"
        );
        let mut out = [UNSET; N];
        let mut at = 0;
        let mut i = 0;
        while i < lists.len() {
            let mut j = 0;
            while j < lists[i].len() {
                out[at] = lists[i][j];
                at += 1;
                j += 1;
            }
            i += 1;
        }
        out
    }
}

/// An optional config key with a default (given as YAML text).
pub const fn opt(
    name: &'static str,
    ty: KeyType,
    default: &'static str,
    doc: &'static str,
) -> ConfigKey {
    ConfigKey {
        name,
        ty,
        required: false,
        default: Some(default),
        doc,
    }
}

/// The file a function writes in the run directory, so that `check` refuses two workers
/// that would write the same one (each would overwrite the other's events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writes {
    /// The config key that names the file (without its extension); absent or not given,
    /// the file is named after the worker's first source buffer.
    pub name_key: Option<&'static str>,
    /// The file's extension, without the dot.
    pub extension: &'static str,
    /// Each process writes its own file, `<name>_p<i>.<extension>`, when there are several.
    pub per_process: bool,
    /// Later files follow the first, `<stem>.<extension>`, named after it: `<stem>_NNNN`
    /// when the writer rotates ([`Writes::rotated`]), `<stem>_rN` and `<stem>_rN_NNNN` when
    /// it is started again in the same run ([`Writes::life`]). The writer takes any file of
    /// that name in the run directory for its own (see [`Writes::holds`]), so no other
    /// writer may name one so. False for a writer that only ever writes its first file.
    pub numbered: bool,
}

impl Writes {
    /// The stem of the file a worker names `name`: `name` without a trailing
    /// `.<extension>` (`filename: data.h5` is the file `data.h5`, never `data.h5.h5`).
    pub fn stem<'a>(&self, name: &'a str) -> &'a str {
        name.strip_suffix(self.extension)
            .and_then(|s| s.strip_suffix('.'))
            .filter(|s| !s.is_empty())
            .unwrap_or(name)
    }

    /// The file that process `process` of `processes` writes, named `stem`.
    pub fn file(&self, stem: &str, process: usize, processes: usize) -> String {
        if self.per_process && processes > 1 {
            format!("{stem}_p{process}.{}", self.extension)
        } else {
            format!("{stem}.{}", self.extension)
        }
    }

    /// The stem of a numbered writer's file number `index` (from 1) after its first stem
    /// `stem`: `<stem>_0001`, … `<stem>_9999`, `<stem>_10000`.
    pub fn rotated(stem: &str, index: u32) -> String {
        format!("{stem}_{index:04}")
    }

    /// The first stem of life `life` (from 1: the writer was started again `life` times)
    /// of a numbered writer whose first stem is `stem`: `<stem>_r1`, `<stem>_r2`, …
    pub fn life(stem: &str, life: u32) -> String {
        format!("{stem}_r{life}")
    }

    /// True when `file` is one of the files of a writer whose first file is `first` (as
    /// [`Writes::file`] names it): `first` itself and, for a [`numbered`](Writes::numbered)
    /// writer, each name [`Writes::rotated`] and [`Writes::life`] give after its stem, with
    /// its extension. Exactly those: `<stem>_01` or `<stem>_r0` are never one of them.
    pub fn holds(&self, first: &str, file: &str) -> bool {
        if file == first {
            return true;
        }
        let Some((stem, extension)) = first.rsplit_once('.').filter(|_| self.numbered) else {
            return false;
        };
        let Some(rest) = file
            .strip_suffix(extension)
            .and_then(|r| r.strip_suffix('.'))
            .and_then(|r| r.strip_prefix(stem))
        else {
            return false;
        };
        // A number as `{n}` writes it: digits, no leading zero, at least 1.
        let number =
            |s: &str| !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
        // A file index as `{index:04}` writes it: four digits, or more without a leading
        // zero; at least 1.
        let index = |s: &str| {
            s.bytes().all(|b| b.is_ascii_digit())
                && (s.len() == 4 && s != "0000" || s.len() > 4 && !s.starts_with('0'))
        };
        // "_0001", "_r1", "_r1_0001"
        match rest.strip_prefix("_r") {
            Some(r) => match r.split_once('_') {
                Some((life, i)) => number(life) && index(i),
                None => number(r),
            },
            None => rest.strip_prefix('_').is_some_and(index),
        }
    }

    /// How the files of a writer whose first file is `first` are named, for messages:
    /// `raw.h5, raw_NNNN.h5 when rotating, raw_rN.h5 and raw_rN_NNNN.h5 when started again`.
    pub fn pattern(&self, first: &str) -> String {
        match first.rsplit_once('.') {
            Some((stem, ext)) if self.numbered => format!(
                "{first}, {stem}_NNNN.{ext} when rotating, {stem}_rN.{ext} and \
                 {stem}_rN_NNNN.{ext} when started again"
            ),
            _ => first.to_string(),
        }
    }
}

/// Files a function names after its worker: `<prefix><worker>.<extension>`, or with `more`,
/// `<prefix><worker>_<anything>.<extension>`; `check` refuses a file named by the setup
/// that is one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerFiles {
    /// What comes before the worker's name.
    pub prefix: &'static str,
    /// The extension, without the dot.
    pub extension: &'static str,
    /// Whether more follows the worker's name (after a `_`).
    pub more: bool,
}

impl WorkerFiles {
    /// True when `file` is one of these files of worker `worker`.
    pub fn holds(&self, file: &str, worker: &str) -> bool {
        let Some(rest) = file
            .strip_prefix(self.prefix)
            .and_then(|r| r.strip_prefix(worker))
            .and_then(|r| r.strip_suffix(self.extension))
            .and_then(|r| r.strip_suffix('.'))
        else {
            return false;
        };
        if self.more {
            rest.strip_prefix('_').is_some_and(|r| !r.is_empty())
        } else {
            rest.is_empty()
        }
    }

    /// The one file of worker `worker` (`histograms_<worker>.h5`); `None` when more follows
    /// the worker's name (there are many).
    pub fn only_file(&self, worker: &str) -> Option<String> {
        (!self.more).then(|| format!("{}{worker}.{}", self.prefix, self.extension))
    }

    /// How the files are named, for messages: `histograms_<worker>.h5`.
    pub fn pattern(&self) -> String {
        let more = if self.more { "_…" } else { "" };
        format!("{}<worker>{more}.{}", self.prefix, self.extension)
    }
}

/// Everything the setup validator and the docs need to know about a worker function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The name selected with `function:` (e.g. `simulate.pulses`).
    pub name: &'static str,
    /// Its template.
    pub template: Template,
    /// One paragraph: what it does.
    pub summary: &'static str,
    /// Buffers read (`sources`).
    pub sources: Arity,
    /// Buffers written (`sinks`).
    pub sinks: Arity,
    /// Buffers observed (`observes`).
    pub observes: Arity,
    /// Config keys it reads; any other key is an error (with a "did you mean").
    pub keys: &'static [ConfigKey],
    /// The file it writes in the run directory, if it is named by the setup (see
    /// [`Writes`]); `None` for one named after the worker, or none.
    pub writes: Option<Writes>,
    /// The files it names after its worker (see [`WorkerFiles`]).
    pub worker_files: &'static [WorkerFiles],
    /// The key of the seconds it may go on delivering after the run stopped and its source
    /// is drained (an upload to a network service), if it does: the run's drain watch
    /// gives it that time before it counts as stuck.
    pub delivers_after_stop: Option<super::Key<f64>>,
}

impl FunctionSpec {
    /// A function of `template` with the buffers that template usually takes: an importer
    /// writes one buffer; a filter reads one and passes events to one or more; a processor
    /// reads one and writes one; an exporter reads one (and may pass its events on to any
    /// number of buffers of their shape); an observer observes one. [`with_sources`] and
    /// [`with_sinks`] say otherwise.
    ///
    /// [`with_sources`]: FunctionSpec::with_sources
    /// [`with_sinks`]: FunctionSpec::with_sinks
    pub const fn new(
        name: &'static str,
        template: Template,
        summary: &'static str,
        keys: &'static [ConfigKey],
    ) -> FunctionSpec {
        let (sources, sinks, observes) = match template {
            Template::Importer => (Arity::NONE, Arity::ONE, Arity::NONE),
            Template::Filter => (Arity::ONE, Arity::SOME, Arity::NONE),
            Template::Processor => (Arity::ONE, Arity::ONE, Arity::NONE),
            Template::Exporter => (Arity::ONE, Arity::ANY, Arity::NONE),
            Template::Observer => (Arity::NONE, Arity::NONE, Arity::ONE),
        };
        FunctionSpec {
            name,
            template,
            summary,
            sources,
            sinks,
            observes,
            keys,
            writes: None,
            worker_files: &[],
            delivers_after_stop: None,
        }
    }

    /// The same function writing the file `writes` says.
    pub const fn writing(self, writes: Writes) -> FunctionSpec {
        FunctionSpec {
            writes: Some(writes),
            ..self
        }
    }

    /// The same function naming the files `files` after its worker.
    pub const fn naming_after_worker(self, files: &'static [WorkerFiles]) -> FunctionSpec {
        FunctionSpec {
            worker_files: files,
            ..self
        }
    }

    /// The same function delivering, after the stop, for up to the seconds of `key` (see
    /// [`FunctionSpec::delivers_after_stop`]).
    pub const fn delivering_after_stop(self, key: super::Key<f64>) -> FunctionSpec {
        FunctionSpec {
            delivers_after_stop: Some(key),
            ..self
        }
    }

    /// The same function reading `sources` buffers.
    pub const fn with_sources(self, sources: Arity) -> FunctionSpec {
        FunctionSpec { sources, ..self }
    }

    /// The same function writing `sinks` buffers.
    pub const fn with_sinks(self, sinks: Arity) -> FunctionSpec {
        FunctionSpec { sinks, ..self }
    }

    /// The key with this name.
    pub fn key(&self, name: &str) -> Option<&ConfigKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// Where the setup validator looks functions up. The engine's registry implements it; tests
/// may use their own.
pub trait Catalog {
    /// The function with this name, if known.
    fn function(&self, name: &str) -> Option<&FunctionSpec>;
    /// All known function names (for "did you mean").
    fn names(&self) -> Vec<&'static str>;
    /// Checks what a function's declaration cannot say (a deflate level out of range, a
    /// port that does not exist, a field the buffer lacks) for one worker of a setup, as its
    /// constructor would before the run, but opening nothing: no output file, no device, no
    /// library. The setup check runs it for every built-in worker whose buffers and config
    /// keys are valid; a [`ConfigError`](super::ConfigError) is shown at that key's value.
    /// The default knows only the declarations.
    fn check_worker(
        &self,
        _function: &str,
        _ctx: &super::BuildContext,
    ) -> Result<(), super::WorkerError> {
        Ok(())
    }
    /// Config keys `function` accepts without acting on them (those a mimoCoRB2 function of
    /// that name takes that ours has no use for), each with the note `check` shows.
    fn ignored_keys(&self, _function: &str) -> &[(&'static str, &'static str)] {
        &[]
    }
    /// A note `check` shows for every worker running `function` (what differs from the
    /// mimoCoRB2 function of that name).
    fn note(&self, _function: &str) -> Option<&'static str> {
        None
    }
}

impl Catalog for [FunctionSpec] {
    fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.iter().find(|f| f.name == name)
    }
    fn names(&self) -> Vec<&'static str> {
        self.iter().map(|f| f.name).collect()
    }
}

impl Catalog for Vec<FunctionSpec> {
    fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self[..].function(name)
    }
    fn names(&self) -> Vec<&'static str> {
        self[..].names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_bounds() {
        assert!(Arity::ONE.allows(1) && !Arity::ONE.allows(0) && !Arity::ONE.allows(2));
        assert!(Arity::SOME.allows(5) && !Arity::SOME.allows(0));
        assert!(Arity::ANY.allows(0));
        assert_eq!(Arity::SOME.to_string(), "at least 1");
        assert_eq!(Arity::ONE.to_string(), "exactly 1");
    }

    #[test]
    fn a_join_must_be_as_long_as_its_lists() {
        const A: ConfigKey = opt("a", KeyType::Int, "1", "");
        const B: ConfigKey = opt("b", KeyType::Str, "x", "");
        let lists: &[&[ConfigKey]] = &[&[A], &[], &[B, A]];
        assert_eq!(ConfigKey::count(lists), 3);
        assert_eq!(ConfigKey::join::<3>(lists), [A, B, A]);
        assert!(std::panic::catch_unwind(|| ConfigKey::join::<2>(lists)).is_err());
        assert!(std::panic::catch_unwind(|| ConfigKey::join::<4>(lists)).is_err());
    }

    /// A numbered writer's files are exactly those `rotated` and `life` name after its first
    /// (with its extension), whatever its first is called; a writer that does not number
    /// its files has its first only.
    #[test]
    fn a_numbered_writer_holds_exactly_the_files_it_names() {
        const H5: Writes = Writes {
            name_key: None,
            extension: "h5",
            per_process: true,
            numbered: true,
        };
        const CSV: Writes = Writes {
            name_key: None,
            extension: "csv",
            per_process: false,
            numbered: false,
        };
        for first in ["raw.h5", "raw_p1.h5", "run.2024.h5"] {
            let stem = first.strip_suffix(".h5").unwrap();
            let r2 = Writes::life(stem, 2);
            let named = [
                first.to_string(),
                format!("{}.h5", Writes::rotated(stem, 1)),
                format!("{}.h5", Writes::rotated(stem, 9999)),
                format!("{}.h5", Writes::rotated(stem, 10000)),
                format!("{}.h5", Writes::life(stem, 1)),
                format!("{}.h5", Writes::life(stem, 12)),
                format!("{r2}.h5"),
                format!("{}.h5", Writes::rotated(&r2, 3)),
            ];
            assert_eq!(named[1], format!("{stem}_0001.h5"));
            assert_eq!(named[7], format!("{stem}_r2_0003.h5"));
            for file in &named {
                assert!(H5.holds(first, file), "{first}: {file}");
                assert_eq!(CSV.holds(first, file), file == first, "{first}: {file}");
            }
            for other in [
                "big",
                "_big",
                "_01",
                "_00001",
                "_0000",
                "_r",
                "_r0",
                "_r01",
                "_r1_01",
                "_r1_",
                "_r1_0000",
                "_0001_0001",
                "_p0",
                "x",
            ] {
                let file = format!("{stem}{other}.h5");
                assert!(!H5.holds(first, &file), "{first}: {file}");
            }
            for file in [format!("{stem}_0001.csv"), format!("{stem}_0001.h5.tmp")] {
                assert!(!H5.holds(first, &file), "{first}: {file}");
            }
        }
        // The stem is the name without its extension only.
        assert!(!H5.holds("raw.h5", "raw_0001.h5_0001.h5"));
        assert!(CSV.holds("raw.csv", "raw.csv") && !CSV.holds("raw.csv", "raw_0001.csv"));
        assert_eq!(
            H5.pattern("raw.h5"),
            "raw.h5, raw_NNNN.h5 when rotating, raw_rN.h5 and raw_rN_NNNN.h5 when started again"
        );
        assert_eq!(CSV.pattern("raw.csv"), "raw.csv");
    }

    #[test]
    fn slice_catalog_finds_by_name() {
        const F: [FunctionSpec; 1] =
            [
                FunctionSpec::new("export.drain", Template::Exporter, "", &[])
                    .with_sinks(Arity::NONE),
            ];
        assert!(F[..].function("export.drain").is_some());
        assert!(F[..].function("export.csv").is_none());
        assert_eq!(F[..].names(), vec!["export.drain"]);
    }
}
