//! Checks across the whole setup, after every section was read: buffer references, one writer
//! per buffer, no cycles, functions against the [`Catalog`], buffer counts, Filter shapes,
//! config keys and types; then each built-in worker's own check of its whole config
//! ([`Catalog::check_worker`]). Then builds the resolved [`Setup`].
//!
//! Guarantees: all problems are recorded (not just the first), each at the position of the
//! text to change. Must never start, open or map anything: it only reads the drafts.

use super::diag::{unknown_name_hint, DiagnosticKind, Severity};
use super::load::{to_json, BufferDraft, ConfigItem, Draft, Loader, WorkerDraft};
use super::yaml::{Kind, Loc, Value};
use super::{BufferSetup, PythonWorker, Setup, WorkerPlan};
use crate::worker::{Catalog, FunctionSpec, KeyType, Template, WorkerError, Writes};
use std::collections::{HashMap, HashSet};

const SIDES: [&str; 3] = ["sources", "sinks", "observes"];

/// The packages of mimoCoRB2's built-in Python functions (`function: exporters.csv`).
const MIMOCORB2_MODULES: [&str; 8] = [
    "importers",
    "exporters",
    "filters",
    "analyzers",
    "observers",
    "visualizers",
    "misc",
    "data",
];

fn side(w: &WorkerDraft, i: usize) -> &[(String, Loc)] {
    match i {
        0 => &w.sources,
        1 => &w.sinks,
        _ => &w.observes,
    }
}

fn type_ok(ty: KeyType, v: &Value) -> bool {
    match ty {
        KeyType::Int => matches!(v.kind, Kind::Int(_) | Kind::UInt(_)),
        KeyType::Float => matches!(v.kind, Kind::Int(_) | Kind::UInt(_) | Kind::Float(_)),
        KeyType::Bool => matches!(v.kind, Kind::Bool(_)),
        KeyType::Str => matches!(v.kind, Kind::Str(_)),
        KeyType::List => matches!(v.kind, Kind::Seq(_)),
        KeyType::Map => matches!(v.kind, Kind::Map(_)),
        KeyType::Any => true,
    }
}

fn same_shape(a: &BufferDraft, b: &BufferDraft) -> bool {
    a.dtype == b.dtype && a.data_length == b.data_length
}

fn shape(b: &BufferDraft) -> String {
    format!("{} records of {}", b.data_length, b.dtype)
}

/// The template a Python worker plays, guessed from its buffers (for the suggestion).
fn guess_template(w: &WorkerDraft, buffers: &HashMap<&str, &BufferDraft>) -> Option<Template> {
    match (
        w.sources.is_empty(),
        w.sinks.is_empty(),
        w.observes.is_empty(),
    ) {
        (_, _, false) => Some(Template::Observer),
        (true, false, true) => Some(Template::Importer),
        (false, true, true) => Some(Template::Exporter),
        (false, false, true) => {
            let src = buffers.get(w.sources[0].0.as_str());
            let all_same = w.sinks.iter().all(|(s, _)| {
                matches!((src, buffers.get(s.as_str())), (Some(a), Some(b)) if same_shape(a, b))
            });
            Some(if all_same {
                Template::Filter
            } else {
                Template::Processor
            })
        }
        (true, true, true) => None,
    }
}

/// Runs every cross-section check and builds the resolved setup (from what is valid).
pub(crate) fn check(
    l: &mut Loader,
    draft: Draft,
    catalog: &dyn Catalog,
) -> (Setup, Vec<PythonWorker>) {
    let buffers: HashMap<&str, &BufferDraft> =
        draft.buffers.iter().map(|b| (b.name.as_str(), b)).collect();
    let declared: Vec<&str> = draft.declared_buffers.iter().map(String::as_str).collect();
    let mut python = Vec::new();

    // References, duplicates within one list.
    for w in &draft.workers {
        for (i, side_name) in SIDES.iter().enumerate() {
            let mut seen = HashSet::new();
            for (b, at) in side(w, i) {
                if !declared.contains(&b.as_str()) {
                    l.error(
                        *at,
                        format!("worker '{}': {side_name} names buffer '{b}', which is not declared under Buffers", w.name),
                        Some(unknown_name_hint(b, "buffers", &declared)),
                    );
                } else if !seen.insert(b.as_str()) {
                    l.error(
                        *at,
                        format!(
                            "worker '{}': buffer '{b}' appears twice in {side_name}",
                            w.name
                        ),
                        None,
                    );
                }
            }
        }
    }

    // Writers and readers per buffer.
    let mut writers: HashMap<&str, Vec<(&str, Loc)>> = HashMap::new();
    let mut readers: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut observers: HashMap<&str, Vec<&str>> = HashMap::new();
    for w in &draft.workers {
        for (b, at) in &w.sinks {
            writers.entry(b).or_default().push((&w.name, *at));
        }
        for (b, _) in &w.sources {
            readers.entry(b).or_default().push(&w.name);
        }
        for (b, _) in &w.observes {
            observers.entry(b).or_default().push(&w.name);
        }
    }
    for b in &draft.buffers {
        let name = b.name.as_str();
        let ws = writers.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if ws.is_empty() {
            l.warn(b.name_at, format!("buffer '{name}' has no writer: no worker lists it in sinks, so no event will arrive in it"), None);
        }
        for (other, at) in ws.iter().skip(1) {
            let first = ws[0].0;
            l.error(
                *at,
                format!("buffer '{name}' is written by worker '{first}' and also by worker '{other}': a buffer has exactly one writing worker"),
                Some("give each writer its own buffer (a worker with number_of_processes: N is one writer: it gets N rings)".into()),
            );
        }
        let rs = readers.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if rs.is_empty() && !ws.is_empty() {
            let observed = observers.contains_key(name);
            l.warn(
                b.name_at,
                format!(
                    "buffer '{name}' is not read by any worker{}: its events are written and never consumed",
                    if observed { " (only observed)" } else { "" }
                ),
                Some("add a worker with it in `sources:` (e.g. an exporter), or remove the buffer".into()),
            );
        }
    }

    find_cycles(l, &draft);
    let too_big = check_memory(l, &draft);

    // Functions, buffer counts, Filter shapes, config keys.
    let mut templates: HashMap<&str, Template> = HashMap::new();
    // Workers with an error of their own so far: their functions' checks would repeat it.
    let mut refused: HashSet<&str> = HashSet::new();
    // Workers of a buffer that cannot fit: building their functions could ask for more
    // memory than there is (and abort), and the setup cannot run anyway.
    for w in &draft.workers {
        let sides = [&w.sources, &w.sinks, &w.observes];
        if sides
            .iter()
            .any(|side| side.iter().any(|(b, _)| too_big.contains(&b.as_str())))
        {
            refused.insert(&w.name);
        }
    }
    for w in &draft.workers {
        let Some((function, f_at)) = &w.function else {
            continue;
        };
        if let Some((file, file_at)) = &w.file {
            if file.ends_with(".py") {
                let full = super::load::beside_setup(&l.setup_dir, file);
                if !full.is_file() {
                    l.error(
                        *file_at,
                        format!(
                            "worker '{}': Python file '{file}' not found (looked at {})",
                            w.name,
                            full.display()
                        ),
                        Some("give the path of the worker file relative to the setup file".into()),
                    );
                }
                python.push(PythonWorker {
                    worker: w.name.clone(),
                    file: file.clone(),
                    function: function.clone(),
                    template: guess_template(w, &buffers),
                });
            } else {
                let full = super::load::beside_setup(&l.setup_dir, file);
                if !full.is_file() {
                    l.error(
                        *file_at,
                        format!("worker '{}': user library '{file}' not found (looked at {})", w.name, full.display()),
                        Some("build it with `cargo build --release` and give its path relative to the setup file".into()),
                    );
                }
            }
            continue;
        }
        let Some(spec) = catalog.function(function) else {
            let names = catalog.names();
            let mut hint = unknown_name_hint(function, "functions", &names);
            let module = function.split('.').next().unwrap_or("");
            if function.contains('.') && MIMOCORB2_MODULES.contains(&module) {
                hint.push_str(" (mimoCoRB2's Python built-ins are not available here: pick the built-in that does the same job)");
            }
            l.error(
                *f_at,
                format!("worker '{}': unknown function '{function}'", w.name),
                Some(hint),
            );
            continue;
        };
        templates.insert(&w.name, spec.template);
        let errors_before = l.error_count();
        check_arity(l, w, spec);
        if matches!(spec.template, Template::Filter | Template::Exporter) {
            check_copied_shapes(l, w, spec.template, &buffers);
        }
        check_config(l, w, spec, catalog.ignored_keys(function));
        if let Some(note) = catalog.note(function) {
            l.warn(
                *f_at,
                format!("worker '{}', {function}: {note}", w.name),
                None,
            );
        }
        if l.error_count() > errors_before {
            refused.insert(&w.name);
        }
    }

    // The resolved setup, from what is valid.
    let mut setup = Setup {
        file: l.files[0].clone(),
        setup_dir: l.setup_dir.clone(),
        target_directory: draft.target_directory.clone(),
        options: draft.options.clone(),
        buffers: draft
            .buffers
            .iter()
            .map(|b| BufferSetup {
                name: b.name.clone(),
                slot_count: b.slot_count,
                data_length: b.data_length,
                dtype: b.dtype.clone(),
                policy: b.policy,
            })
            .collect(),
        workers: Vec::new(),
    };
    for w in &draft.workers {
        let Some((function, _)) = &w.function else {
            continue;
        };
        let mut config = serde_json::Map::new();
        let spec = catalog.function(function).filter(|_| w.file.is_none());
        for ConfigItem {
            key,
            value,
            from_base,
            ..
        } in &w.config
        {
            // A base_config key this built-in does not read is not part of its config, nor
            // is a mimoCoRB2 key it accepts and ignores.
            let unread = spec.is_some_and(|s| s.key(key).is_none());
            if unread
                && (*from_base || catalog.ignored_keys(function).iter().any(|(k, _)| k == key))
            {
                continue;
            }
            match to_json(value) {
                Ok(j) => {
                    config.insert(key.clone(), j);
                }
                Err((at, msg)) => l.error(
                    at,
                    format!("worker '{}', config key '{key}': {msg}", w.name),
                    None,
                ),
            }
        }
        let file = w
            .file
            .as_ref()
            .map(|(f, _)| super::load::beside_setup(&l.setup_dir, f));
        let names = |v: &[(String, Loc)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        // Checked with the rest of the config (a value of the wrong type is refused there).
        let delivery_seconds = catalog
            .function(function)
            .and_then(|f| f.delivers_after_stop)
            .and_then(|k| {
                crate::worker::Config::new(w.name.clone(), config.clone())
                    .get(k)
                    .ok()
            })
            .unwrap_or(0.0);
        setup.workers.push(WorkerPlan {
            name: w.name.clone(),
            function: function.clone(),
            file,
            template: templates.get(w.name.as_str()).copied(),
            processes: w.number_of_processes,
            sources: names(&w.sources),
            sinks: names(&w.sinks),
            observes: names(&w.observes),
            config,
            cpu: w.cpu.clone(),
            priority: w.priority,
            restart: w.restart,
            python: w
                .python
                .as_deref()
                .map(super::load::expand_home)
                .or_else(|| draft.options.python.clone())
                .map(|p| super::load::under(&l.setup_dir, p)),
            files: Vec::new(),
            delivery_seconds,
        });
    }
    for w in &draft.workers {
        if w.file.is_none() && !refused.contains(w.name.as_str()) {
            check_worker(l, w, &setup, catalog);
        }
    }
    broadcasts(l, &draft, &setup);
    for (worker, files) in one_writer_a_file(l, &draft, &setup, catalog) {
        if let Some(w) = setup.workers.iter_mut().find(|w| w.name == worker) {
            w.files = files;
        }
    }
    (setup, python)
}

/// Refuses two workers that would write the same file in the run directory (two
/// `export.hdf5` of one buffer, both named after it; one named as a file the other numbers
/// after its first, `raw_0001` beside a rotating writer of `raw`): each would overwrite the
/// other's events, or take the other's live file for one its crashed process left. Returns
/// the files each built-in worker names (for the plan).
fn one_writer_a_file(
    l: &mut Loader,
    draft: &Draft,
    setup: &Setup,
    catalog: &dyn Catalog,
) -> Vec<(String, Vec<String>)> {
    let mut named_files = Vec::new();
    // The first files of the workers before, each with its worker, function and rule.
    let mut written: Vec<(String, &str, &str, Writes)> = Vec::new();
    // The workers whose functions name files after them, with those files.
    let naming: Vec<(&str, &str, &[crate::worker::WorkerFiles])> = draft
        .workers
        .iter()
        .filter(|w| w.file.is_none())
        .filter_map(|w| {
            let (function, _) = w.function.as_ref()?;
            let f = catalog.function(function)?;
            Some((w.name.as_str(), f.name, f.worker_files))
        })
        .filter(|(_, _, files)| !files.is_empty())
        .collect();
    for w in &draft.workers {
        let (Some((function, at)), Some(ws)) = (&w.function, setup.worker(&w.name)) else {
            continue;
        };
        if w.file.is_some() {
            continue;
        }
        let Some((ours, writes)) = catalog
            .function(function)
            .and_then(|f| Some((f.name, f.writes?)))
        else {
            continue;
        };
        let named = writes
            .name_key
            .and_then(|k| ws.config.get(k))
            .and_then(|v| v.as_str());
        let Some(stem) = named
            .map(|n| writes.stem(n))
            .or(ws.sources.first().map(String::as_str))
        else {
            continue;
        };
        let mut files: Vec<String> = (0..ws.processes.max(1))
            .map(|i| writes.file(stem, i, ws.processes))
            .collect();
        // The processes of a worker that writes one file share it.
        files.dedup();
        named_files.push((w.name.clone(), files.clone()));
        // How a worker that numbers its files after its first, `first`, names them.
        let names =
            |rule: &Writes, first: &str| format!(" (it names its files {})", rule.pattern(first));
        for file in files {
            // A file of theirs this worker writes: its first, or one it numbers after it.
            let theirs = naming.iter().find_map(|(other, f, kinds)| {
                kinds.iter().find_map(|k| {
                    let common = if k.holds(&file, other) {
                        Some(file.clone())
                    } else {
                        k.only_file(other).filter(|o| writes.holds(&file, o))
                    };
                    common.map(|c| (other, f, k, c))
                })
            });
            if let Some((other, f, kind, common)) = theirs {
                let how = if common == file {
                    String::new()
                } else {
                    names(&writes, &file)
                };
                l.error(
                    *at,
                    format!(
                        "worker '{}' ({function}) would write {common}{how}, which worker \
                         '{other}' ({f}) writes: each would overwrite the other's ({f} names \
                         its files {})",
                        w.name,
                        kind.pattern()
                    ),
                    writes
                        .name_key
                        .map(|k| format!("give worker '{}' its own `{k}`", w.name)),
                );
                continue;
            }
            let clash = written.iter().find(|(first, _, _, their)| {
                their.holds(first, &file) || writes.holds(&file, first)
            });
            let Some((first, who, their_function, their)) = clash else {
                written.push((file, &w.name, ours, writes));
                continue;
            };
            let give_own = |k: Option<&str>| k.map(|k| format!("give one of them its own `{k}`"));
            if *first == file {
                l.error(
                    *at,
                    format!(
                        "worker '{}' ({function}) would write {file}, as worker '{who}' \
                         does: each would overwrite the other's events",
                        w.name
                    ),
                    Some(give_own(writes.name_key).unwrap_or_else(|| {
                        "keep one of them: both write every event of the buffer".into()
                    })),
                );
                continue;
            }
            // One of them numbers the other's file after its own first.
            let (common, how, theirs) = if their.holds(first, &file) {
                (&file, String::new(), names(their, first))
            } else {
                (first, names(&writes, &file), String::new())
            };
            l.error(
                *at,
                format!(
                    "worker '{}' ({function}) would write {common}{how}, which worker '{who}' \
                     ({their_function}) writes too{theirs}: each would take the other's files \
                     for its own",
                    w.name
                ),
                give_own(writes.name_key.or(their.name_key)),
            );
        }
    }
    named_files
}

/// Notes each buffer read by several workers: here each gets every event, where mimoCoRB2
/// split them. Readers that do different things (a filter and an exporter) are what a
/// broadcast is for: a note. Two that do the same thing would do it twice: a warning.
fn broadcasts(l: &mut Loader, draft: &Draft, setup: &Setup) {
    for b in &draft.buffers {
        let rs: Vec<&WorkerPlan> = setup
            .workers
            .iter()
            .filter(|w| w.sources.contains(&b.name))
            .collect();
        if rs.len() < 2 {
            continue;
        }
        let names: Vec<&str> = rs.iter().map(|w| w.name.as_str()).collect();
        let twins = rs
            .iter()
            .enumerate()
            .any(|(i, a)| rs[i + 1..].iter().any(|b| a.does_the_same(b)));
        let (severity, hint) = if twins {
            (Severity::Warning, "two of them do the same thing, so here they would do it twice over: to share the events, make them one worker with number_of_processes: N (`daq-engine migrate` does that)")
        } else {
            (Severity::Note, "to share the events between processes instead, use one worker with number_of_processes: N")
        };
        l.diagnose(
            severity,
            DiagnosticKind::Broadcast,
            b.name_at,
            format!(
                "buffer '{}' is read by {} workers ({}): here each of them gets every event (broadcast); mimoCoRB2 split the events between them",
                b.name,
                rs.len(),
                names.join(", ")
            ),
            Some(hint.into()),
        );
    }
}

/// Runs the function's own check of worker `w` (see [`Catalog::check_worker`]) when all its
/// buffers are valid, and records what it refuses at the config value it concerns (else at
/// `function:`).
fn check_worker(l: &mut Loader, w: &WorkerDraft, setup: &Setup, catalog: &dyn Catalog) {
    let (Some((function, f_at)), Some(ws)) = (&w.function, setup.worker(&w.name)) else {
        return;
    };
    let Some(ctx) = setup.check_context(ws, w.number_of_processes) else {
        return;
    };
    let Err(e) = catalog.check_worker(function, &ctx) else {
        return;
    };
    let (at, message) = match &e {
        WorkerError::Config(c) => {
            let at = w
                .config
                .iter()
                .rev()
                .find(|i| i.key == c.key)
                .map_or(w.config_at, |i| i.value.at);
            (at, e.to_string())
        }
        _ => {
            let text = e.to_string();
            let named = format!("worker '{}'", w.name);
            (
                *f_at,
                if text.contains(&named) {
                    text
                } else {
                    format!("{named} ({function}): {text}")
                },
            )
        }
    };
    l.error(at, message, None);
}

fn check_arity(l: &mut Loader, w: &WorkerDraft, spec: &FunctionSpec) {
    for (i, arity) in [spec.sources, spec.sinks, spec.observes]
        .into_iter()
        .enumerate()
    {
        let n = side(w, i).len();
        if !arity.allows(n) {
            l.error(
                w.side_at[i],
                format!(
                    "worker '{}': function {} ({}) takes {arity} buffer{} in {}, but {n} {} given",
                    w.name,
                    spec.name,
                    spec.template,
                    if arity.min == 1 && arity.max == 1 {
                        ""
                    } else {
                        "s"
                    },
                    SIDES[i],
                    if n == 1 { "is" } else { "are" }
                ),
                None,
            );
        }
    }
}

/// A Filter copies its events to its sinks, and so does an Exporter given sinks (mimoCoRB2:
/// "If provided with an identical sink events will be copied"): each sink must hold the
/// source's records.
fn check_copied_shapes(
    l: &mut Loader,
    w: &WorkerDraft,
    template: Template,
    buffers: &HashMap<&str, &BufferDraft>,
) {
    let Some((src_name, _)) = w.sources.first() else {
        return;
    };
    let Some(src) = buffers.get(src_name.as_str()) else {
        return;
    };
    for (s, at) in &w.sinks {
        if let Some(sink) = buffers.get(s.as_str()) {
            if !same_shape(src, sink) {
                let (what, hint) = if template == Template::Exporter {
                    (
                        "an exporter: it passes every event of",
                        "an exporter's sinks get its events unchanged (pass-through): they need the same data_dtype and data_length as its source",
                    )
                } else {
                    (
                        "a filter: it copies events from",
                        "a Filter's sinks need the same data_dtype and data_length as its source (use a processor to change the shape)",
                    )
                };
                l.error(
                    *at,
                    format!(
                        "worker '{}' is {what} '{src_name}' ({}) unchanged, but sink '{s}' holds {}",
                        w.name,
                        shape(src),
                        shape(sink)
                    ),
                    Some(hint.into()),
                );
            }
        }
    }
}

fn check_config(
    l: &mut Loader,
    w: &WorkerDraft,
    spec: &FunctionSpec,
    ignored: &[(&'static str, &'static str)],
) {
    // A config file that could not be read is already an error; its keys are unknown.
    let required = spec.keys.iter().filter(|k| k.required && w.config_complete);
    for key in required {
        let given = w
            .config
            .iter()
            .any(|i| i.key == key.name && !matches!(i.value.kind, Kind::Null));
        if !given {
            l.error(
                w.config_at,
                format!(
                    "worker '{}': function {} needs config key '{}' ({}): {}",
                    w.name,
                    spec.name,
                    key.name,
                    key.ty.describe(),
                    key.doc
                ),
                Some(format!(
                    "add `{}: ...` under config: (or base_config:)",
                    key.name
                )),
            );
        }
    }
    let valid: Vec<&str> = spec.keys.iter().map(|k| k.name).collect();
    for item in &w.config {
        match spec.key(&item.key) {
            Some(key) => {
                if !matches!(item.value.kind, Kind::Null) && !type_ok(key.ty, &item.value) {
                    l.error(
                        item.value.at,
                        format!(
                            "worker '{}', config key '{}': expected {}, found {}",
                            w.name,
                            item.key,
                            key.ty.describe(),
                            item.value.describe()
                        ),
                        Some(key.doc.to_string()),
                    );
                }
            }
            // base_config is shared by every worker: a key there that this function does not
            // read is meant for another worker, as in mimoCoRB2.
            None if item.from_base => {}
            None if ignored.iter().any(|(k, _)| *k == item.key) => {
                let note = ignored
                    .iter()
                    .find(|(k, _)| *k == item.key)
                    .map(|(_, n)| *n);
                l.warn(
                    item.key_at,
                    format!(
                        "worker '{}': config key '{}' of mimoCoRB2's {} is ignored",
                        w.name, item.key, spec.name
                    ),
                    note.map(str::to_string),
                );
            }
            None => l.error(
                item.key_at,
                format!(
                    "worker '{}': function {} has no config key '{}'",
                    w.name, spec.name, item.key
                ),
                Some(unknown_name_hint(
                    &item.key,
                    &format!("config keys of {}", spec.name),
                    &valid,
                )),
            ),
        }
    }
}

/// Reports every cycle buffer → worker → buffer, at the sink that closes it.
fn find_cycles(l: &mut Loader, draft: &Draft) {
    // Edges: buffer --(worker reading it, sink item)--> buffer.
    let mut edges: HashMap<&str, Vec<(&str, &str, Loc)>> = HashMap::new();
    for w in &draft.workers {
        for (src, _) in &w.sources {
            for (sink, at) in &w.sinks {
                edges.entry(src).or_default().push((&w.name, sink, *at));
            }
        }
    }
    let mut done: HashSet<&str> = HashSet::new();
    let mut names: Vec<&str> = edges.keys().copied().collect();
    names.sort();
    for start in names {
        if done.contains(start) {
            continue;
        }
        // Iterative depth-first search keeping the path.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        let mut on_path: HashSet<&str> = HashSet::from([start]);
        while let Some((node, next)) = path.last().copied() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if next >= out.len() {
                path.pop();
                on_path.remove(node);
                done.insert(node);
                continue;
            }
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            let (worker, to, at) = out[next];
            if on_path.contains(to) {
                let from = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                let mut ring: Vec<String> = Vec::new();
                for (i, (n, idx)) in path[from..].iter().enumerate() {
                    ring.push(n.to_string());
                    let via = if i + from + 1 == path.len() {
                        worker
                    } else {
                        edges[n][idx - 1].0
                    };
                    ring.push(format!("({via})"));
                }
                ring.push(to.to_string());
                l.error(
                    at,
                    format!("the buffers form a cycle: {}", ring.join(" → ")),
                    Some("events must flow one way, from importers to exporters: break the cycle with a new buffer or by removing this sink".into()),
                );
            } else if !done.contains(to) {
                on_path.insert(to);
                path.push((to, 0));
            }
        }
    }
}

/// Bytes the kernel says can be allocated without swapping (MemAvailable), if known.
fn memory_available() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A memory size in GiB, or in MiB below one GiB (so that 12 MiB against a limit of 8 MiB
/// does not read "0.01 GiB but only 0.01 GiB").
fn mem_size(bytes: u128) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// The rings of every buffer (one per writing process) against the memory there is: more
/// than MemAvailable is an error at the largest buffer; more than the locked-memory limit
/// (the rings are locked) a warning for a user other than root, since the run goes on
/// unlocked. Returns the buffers whose rings alone need more than MemAvailable: their
/// workers' functions are not built (one of their events may be more than can be allocated).
fn check_memory<'a>(l: &mut Loader, draft: &'a Draft) -> Vec<&'a str> {
    let mut total: u128 = 0;
    let mut largest: Option<(u128, &BufferDraft)> = None;
    let mut each = Vec::new();
    for b in &draft.buffers {
        let writers = draft
            .workers
            .iter()
            .find(|w| w.sinks.iter().any(|(s, _)| *s == b.name))
            .map_or(1, |w| w.number_of_processes.max(1));
        let groups = draft
            .workers
            .iter()
            .filter(|w| w.sources.iter().any(|(s, _)| *s == b.name))
            .count();
        let ring =
            crate::ring::ring_bytes(b.dtype.record_size(), b.data_length, b.slot_count, groups)
                .map_or(u128::from(u64::MAX), |n| n as u128);
        let bytes = ring * writers as u128;
        each.push((bytes, b.name.as_str()));
        total += bytes;
        if largest.is_none_or(|(n, _)| bytes > n) {
            largest = Some((bytes, b));
        }
    }
    let Some((bytes, b)) = largest else {
        return Vec::new();
    };
    if let Some(available) = memory_available() {
        if total > available {
            let too_big = each
                .iter()
                .filter(|(n, _)| *n > available)
                .map(|(_, name)| *name)
                .collect();
            l.error(
                b.name_at,
                format!(
                    "the buffers' rings need {} of memory ({} of it for buffer '{}'), but this \
                     machine has {} available (MemAvailable)",
                    mem_size(total),
                    mem_size(bytes),
                    b.name,
                    mem_size(available)
                ),
                Some("lower slot_count or data_length".into()),
            );
            return too_big;
        }
    }
    if let Ok((limit, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
    {
        // root locks memory whatever the limit says (CAP_IPC_LOCK), as `tune` says too.
        if limit != nix::sys::resource::RLIM_INFINITY
            && total > u128::from(limit)
            && !nix::unistd::geteuid().is_root()
        {
            let (mut need, mut may) = (mem_size(total), mem_size(u128::from(limit)));
            if need == may {
                // Just over the limit (the rings' headers): in KiB they differ.
                (need, may) = (
                    format!("{} KiB", total.div_ceil(1024)),
                    format!("{} KiB", limit / 1024),
                );
            }
            l.warn(
                b.name_at,
                format!(
                    "the buffers' rings need {need} but only {may} may be locked in memory: \
                     they run unlocked and may be paged out"
                ),
                Some(
                    "`ulimit -l unlimited`, or `memlock unlimited` in /etc/security/limits.conf"
                        .into(),
                ),
            );
        }
    }
    Vec::new()
}

/// Problems with functions' key declarations, as `check`, `daq-engine functions` and the
/// README see them: each key needs a doc, a name used once per function, and a default that
/// is a value of the key's type as `check` types a setup's value (or, in parentheses, what
/// leaving it out means). Returns the problems and how many keys were looked at; the
/// registry's tests run it over every built-in.
pub fn key_declaration_problems<'a>(
    specs: impl IntoIterator<Item = &'a FunctionSpec>,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut keys = 0;
    for s in specs {
        let mut seen = HashSet::new();
        for k in s.keys {
            keys += 1;
            let at = format!("{} key '{}'", s.name, k.name);
            if k.doc.trim().is_empty() {
                problems.push(format!("{at}: no doc"));
            }
            if !seen.insert(k.name) {
                problems.push(format!("{at}: declared twice"));
            }
            match (k.required, k.default) {
                (true, Some(d)) => problems.push(format!("{at}: required with default {d}")),
                (true, None) => {}
                (false, None) => problems.push(format!("{at}: neither required nor defaulted")),
                (false, Some(d)) if d.starts_with('(') && d.ends_with(')') => {}
                // A text default is shown as the text itself (`#`, not YAML's `'#'`).
                (false, Some(_)) if k.ty == KeyType::Str => {}
                (false, Some(d)) => match super::yaml::parse(d.as_bytes(), 0) {
                    Ok(p) if type_ok(k.ty, &p.root) && !matches!(p.root.kind, Kind::Null) => {}
                    Ok(p) => problems.push(format!(
                        "{at}: default '{d}' is {}, not {}",
                        p.root.describe(),
                        k.ty.describe()
                    )),
                    Err(e) => problems.push(format!("{at}: default '{d}': {}", e.message)),
                },
            }
        }
    }
    (problems, keys)
}
