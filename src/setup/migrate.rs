//! `daq-engine migrate SETUP`: a mimoCoRB2 setup ported to what it means here, as text.
//!
//! Most mimoCoRB2 setups run as they are (its built-in names, keys and dtypes are accepted).
//! What migrate changes is what is read differently here, each change with its reason:
//! - the top-level `Options:` block (mimoCoRB2's; ignored here) goes, and its
//!   `output_directory` becomes `target_directory` when the setup has none;
//! - `overwrite:` in a buffer goes (ignored by both);
//! - several workers reading one buffer that are alike in everything but their name: in
//!   mimoCoRB2 they shared that buffer's events (each event went to one of them), here each
//!   would get every event; they become one worker with `number_of_processes` their number,
//!   which shares the events as mimoCoRB2 did.
//!
//! Readers that differ (an exporter and a filter on one buffer) are left as they are and
//! listed: whether each should see every event is the user's call. So are alike readers
//! whose function takes one process (an exporter writing one file must see every event):
//! each of them gets every event here. So is text that an alias (`*name`, `<<: *name`)
//! elsewhere copies: removed, the alias would name no anchor; changed, the change would reach
//! the copy too. The rest of the file — comments, anchors, order,
//! formatting — is kept byte for byte: edits are line or span deletions and insertions at
//! positions the parser reports.
//!
//! Alike readers given as the path of one worker file (`sink_a: sink.yaml`) are made one
//! worker the same way: the file's text is written in place of the path, with the key.
//!
//! Guarantees: pure (text in, text and a list of changes out; it reads no file but the worker
//! files the setup names); never panics on any input; a
//! file it cannot parse gets no changes (check reports why).

use super::yaml::{self, Kind, Value};
use super::{Checked, WorkerPlan};
use crate::worker::{Catalog, WiringError, WorkerError};

/// One change made, or one thing looked at and left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// 1-based line in the original file.
    pub line: u64,
    /// What was done ("removed `overwrite: true`"), or what was left.
    pub what: String,
    /// Why.
    pub why: String,
    /// False for things left as they are (listed for the user to decide).
    pub changed: bool,
}

/// The ported text and what was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The new setup text (the original when nothing changed).
    pub text: String,
    /// In line order.
    pub changes: Vec<Change>,
}

impl Migration {
    /// True when at least one change was made.
    pub fn changed(&self) -> bool {
        self.changes.iter().any(|c| c.changed)
    }
}

/// The edit that puts the text of worker file `file` (the value of `key`, a path) in place
/// of its path, indented under the key, with `number_of_processes: n` first: a worker given
/// as a file path has no place for the key. `None` (nothing is changed) for a flow-style
/// entry, a file that cannot be read, or one whose text would not read the same indented
/// (not a block mapping from column 1, document markers or directives, anchors that could
/// clash with the setup's).
fn inline_with_processes(
    text: &str,
    lines: &LineIndex<'_>,
    (key, value): (&Value, &Value),
    file: &str,
    checked: &Checked,
    n: usize,
) -> Option<Edit> {
    let start = lines.offset(value.at)?;
    if is_flow(text, start) || value.at.line != key.at.line {
        return None;
    }
    let path = super::load::beside_setup(&checked.setup.setup_dir, file);
    let body = std::fs::read_to_string(path).ok()?;
    let parsed = yaml::parse(body.as_bytes(), 0).ok()?;
    let Kind::Map(entries) = &parsed.root.kind else {
        return None;
    };
    let block = entries.iter().all(|(k, _)| k.at.column == 1);
    let markers = body
        .lines()
        .any(|l| l.starts_with("---") || l.starts_with("...") || l.starts_with('%'));
    if entries.is_empty() || !block || markers || !parsed.alias_targets.is_empty() {
        return None;
    }
    let end = match text[start..].chars().next()? {
        q @ ('"' | '\'') => start + 1 + text[start + 1..].find(q)? + 1,
        _ => start + scalar_len(&text[start..]),
    };
    // A comment after the path goes on the first line, where it stays a comment.
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let rest = text[end..line_end].trim();
    let indent = " ".repeat(key.at.column.saturating_sub(1) as usize + 2);
    let note = format!("the text of {file}, with number_of_processes");
    let mut with = match rest {
        "" => format!("# {note}"),
        _ => format!("{rest} ({note})"),
    };
    with.push_str(&format!("\n{indent}number_of_processes: {n}"));
    for line in body.trim_end().lines() {
        with.push('\n');
        if !line.trim().is_empty() {
            with.push_str(&indent);
            with.push_str(line);
        }
    }
    Some(Edit {
        start,
        end: line_end,
        with,
    })
}

/// Where the file's anchors in use are: text an alias (`*name`) or merge key (`<<: *name`)
/// copies. Text holding one is neither removed (the alias would name no anchor, and the file
/// would not read) nor changed (the change would reach every copy).
struct Anchors<'a> {
    lines: &'a LineIndex<'a>,
    used: &'a [yaml::Loc],
}

impl Anchors<'_> {
    /// True when the bytes `span` hold anchored text that an alias copies (or when the span
    /// is not known: nothing is touched then).
    fn used_in(&self, span: Option<(usize, usize)>) -> bool {
        let Some((start, end)) = span else {
            return true;
        };
        self.used
            .iter()
            .filter_map(|at| self.lines.offset(*at))
            .any(|o| (start..end).contains(&o))
    }
}

/// An edit: replace bytes `start..end` of the original with `with`.
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// Ports `text` (the setup file `checked` was made from); `catalog` (the one `checked` was
/// checked with) says which workers can run in several processes.
pub fn migrate(text: &str, checked: &Checked, catalog: &dyn Catalog) -> Migration {
    let Ok(parsed) = yaml::parse(text.as_bytes(), 0) else {
        return Migration {
            text: text.to_string(),
            changes: Vec::new(),
        };
    };
    let lines = LineIndex::new(text);
    let anchors = Anchors {
        lines: &lines,
        used: &parsed.alias_targets,
    };
    let mut edits = Vec::new();
    let mut changes = Vec::new();
    let Kind::Map(top) = &parsed.root.kind else {
        return Migration {
            text: text.to_string(),
            changes,
        };
    };
    let has_target = top
        .iter()
        .any(|(k, _)| k.key_text().as_deref() == Some("target_directory"));
    for (k, v) in top {
        match k.key_text().as_deref() {
            Some("Options")
                if entry_span(text, &lines, k).is_some_and(|span| anchors.used_in(Some(span))) =>
            {
                changes.push(Change {
                    line: k.at.line,
                    what: "left the `Options:` block as it is".into(),
                    why: "an alias (`*name`) elsewhere copies an anchor (`&name`) in it: \
                          removed, the file would not read; it is ignored here"
                        .into(),
                    changed: false,
                });
            }
            Some("Options") => options(text, &lines, k, v, has_target, &mut edits, &mut changes),
            Some("Buffers") => overwrites(text, &lines, v, &mut edits, &mut changes),
            Some("Workers") => {
                readers(
                    text,
                    &lines,
                    v,
                    (checked, catalog, &anchors),
                    &mut edits,
                    &mut changes,
                );
            }
            _ => {}
        }
    }
    changes.sort_by_key(|c| c.line);
    Migration {
        text: apply(text, edits),
        changes,
    }
}

fn options(
    text: &str,
    lines: &LineIndex<'_>,
    k: &Value,
    v: &Value,
    has_target: bool,
    edits: &mut Vec<Edit>,
    changes: &mut Vec<Change>,
) {
    let Some((start, end)) = entry_span(text, lines, k) else {
        return;
    };
    let output = match &v.kind {
        Kind::Map(m) => m.iter().find_map(|(k, v)| match (&k.key_text(), &v.kind) {
            (Some(n), Kind::Str(s)) if n == "output_directory" => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    };
    let with = match (&output, has_target) {
        (Some(dir), false) => {
            changes.push(Change {
                line: k.at.line,
                what: format!(
                    "`Options: output_directory: {dir}` became `target_directory: {dir}`"
                ),
                why: "the directory runs are written under (each run in its own run_<UTC time>/)"
                    .into(),
                changed: true,
            });
            format!("target_directory: {}\n", yaml_scalar(dir))
        }
        _ => String::new(),
    };
    changes.push(Change {
        line: k.at.line,
        what: "removed the `Options:` block".into(),
        why: "mimoCoRB2's section (output_directory, debug_workers); run settings go under \
              `options:` here, and each worker's messages are in the run directory anyway"
            .into(),
        changed: true,
    });
    edits.push(Edit { start, end, with });
}

fn overwrites(
    text: &str,
    lines: &LineIndex<'_>,
    buffers: &Value,
    edits: &mut Vec<Edit>,
    changes: &mut Vec<Change>,
) {
    let Kind::Map(buffers) = &buffers.kind else {
        return;
    };
    let mut seen = Vec::new();
    for (_, b) in buffers {
        let Kind::Map(keys) = &b.kind else { continue };
        for (k, v) in keys {
            // A buffer that copies another's anchor has the anchored text's positions: the
            // key is removed once, from the anchor.
            if k.key_text().as_deref() != Some("overwrite") || seen.contains(&k.at) {
                continue;
            }
            seen.push(k.at);
            if let Some((start, end)) = entry_span(text, lines, k) {
                let value = match &v.kind {
                    Kind::Bool(b) => b.to_string(),
                    _ => "…".into(),
                };
                changes.push(Change {
                    line: k.at.line,
                    what: format!("removed `overwrite: {value}`"),
                    why: "ignored by mimoCoRB2 too; every run writes into its own new run \
                          directory, so nothing is overwritten"
                        .into(),
                    changed: true,
                });
                edits.push(Edit {
                    start,
                    end,
                    with: String::new(),
                });
            }
        }
    }
}

/// Gives worker `w`, kept apart from `first` which does the same, a file of its own (its
/// name) when both would write the one their buffer names: `check` refuses two writers of
/// one file.
fn own_files(
    text: &str,
    lines: &LineIndex<'_>,
    (w, first, node): (&WorkerPlan, &WorkerPlan, Option<&(Value, Value)>),
    catalog: &dyn Catalog,
    edits: &mut Vec<Edit>,
    changes: &mut Vec<Change>,
) {
    let Some(name_key) = catalog
        .function(&w.function)
        .and_then(|f| f.writes)
        .and_then(|f| f.name_key)
    else {
        return;
    };
    if w.config.get(name_key) != first.config.get(name_key) {
        return;
    }
    let Some((k, v)) = node else { return };
    // The key in its config, or a config made with it.
    let edit = match entries_and(v, "config").and_then(|(_, c)| c) {
        Some((ck, cv)) => set_key(text, lines, (ck, cv), name_key, &w.name),
        None => {
            let config = format!("{{{name_key}: {}}}", w.name);
            set_key(text, lines, (k, v), "config", &config)
        }
    };
    let Some(edit) = edit else { return };
    edits.push(edit);
    changes.push(Change {
        line: k.at.line,
        what: format!("worker '{}' now has `{name_key}: {}`", w.name, w.name),
        why: format!(
            "beside worker '{}' it would write the same file, and each would overwrite the \
             other's events",
            first.name
        ),
        changed: true,
    });
}

/// Whether `b` can become a process of `a`: it does the same thing and writes no buffer
/// (the processes of one worker write their own rings of its sinks).
fn alike(a: &WorkerPlan, b: &WorkerPlan) -> bool {
    a.does_the_same(b) && a.sinks.is_empty()
}

/// Whether worker `w`'s function refuses to run in `n` processes (it must see every event,
/// or opens something only one process can).
fn one_process(checked: &Checked, catalog: &dyn Catalog, w: &WorkerPlan, n: usize) -> bool {
    let Some(ctx) = checked.setup.check_context(w, n) else {
        return false;
    };
    matches!(
        catalog.check_worker(&w.function, &ctx),
        Err(WorkerError::Wiring(
            WiringError::OneProcess { .. } | WiringError::OneOpener { .. }
        ))
    )
}

fn readers(
    text: &str,
    lines: &LineIndex<'_>,
    workers: &Value,
    (checked, catalog, anchors): (&Checked, &dyn Catalog, &Anchors<'_>),
    edits: &mut Vec<Edit>,
    changes: &mut Vec<Change>,
) {
    let Kind::Map(nodes) = &workers.kind else {
        return;
    };
    let node = |name: &str| {
        nodes
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(name))
    };
    let ws = &checked.setup.workers;
    let mut merged: Vec<&str> = Vec::new();
    for b in &checked.setup.buffers {
        let readers: Vec<&WorkerPlan> = ws
            .iter()
            .filter(|w| w.sources.contains(&b.name) && !merged.contains(&w.name.as_str()))
            .collect();
        let Some(head) = readers.first() else {
            continue;
        };
        // The readers in groups of alike ones, in the order of the file.
        let mut groups: Vec<(&WorkerPlan, Vec<&WorkerPlan>)> = Vec::new();
        for w in &readers {
            match groups.iter_mut().find(|(first, _)| alike(first, w)) {
                Some((_, same)) => same.push(w),
                None => groups.push((w, Vec::new())),
            }
        }
        for (w, _) in groups.iter().skip(1) {
            changes.push(Change {
                line: node(&w.name).map_or(1, |(k, _)| k.at.line),
                what: format!(
                    "left as it is: worker '{}' reads buffer '{}' beside worker '{}'",
                    w.name, b.name, head.name
                ),
                why: "here each of them gets every event; in mimoCoRB2 each event went to one \
                      of them. They do different things, so they are kept apart; if they were \
                      meant to share the work, make them one worker with number_of_processes"
                    .into(),
                changed: false,
            });
        }
        // A worker whose text an alias copies stays as it is: neither removed nor given
        // more processes (a `<<: *name` copy would get them too).
        let anchored = |w: &WorkerPlan| {
            anchors.used_in(node(&w.name).and_then(|(k, _)| entry_span(text, lines, k)))
        };
        let groups = groups.into_iter().filter_map(|(first, same)| {
            if same.is_empty() {
                return None;
            }
            let all: Vec<&WorkerPlan> = std::iter::once(first).chain(same).collect();
            let (kept, free): (Vec<&WorkerPlan>, Vec<&WorkerPlan>) =
                all.iter().partition(|w| anchored(w));
            for w in kept {
                let twin = all
                    .iter()
                    .find(|o| o.name != w.name)
                    .map_or("", |o| &o.name);
                changes.push(Change {
                    line: node(&w.name).map_or(1, |(k, _)| k.at.line),
                    what: format!(
                        "left as it is: worker '{}' reads buffer '{}' beside worker '{twin}', \
                         which does the same",
                        w.name, b.name
                    ),
                    why: "here each of them gets every event; in mimoCoRB2 each event went to \
                          one of them. An alias (`*name`) elsewhere copies an anchor (`&name`) \
                          in this worker, so it is not made part of another: to share the \
                          events, move the anchor and make them one worker with \
                          number_of_processes by hand"
                        .into(),
                    changed: false,
                });
            }
            let (first, same) = free.split_first()?;
            (!same.is_empty()).then(|| (*first, same.to_vec()))
        });
        let groups: Vec<(&WorkerPlan, Vec<&WorkerPlan>)> = groups.collect();
        for (first, same) in groups {
            let n = first.processes + same.iter().map(|w| w.processes).sum::<usize>();
            if one_process(checked, catalog, first, n) {
                for w in &same {
                    changes.push(Change {
                        line: node(&w.name).map_or(1, |(k, _)| k.at.line),
                        what: format!(
                            "left as it is: worker '{}' reads buffer '{}' beside worker '{}', \
                             which does the same",
                            w.name, b.name, first.name
                        ),
                        why: format!(
                            "here each of them gets every event; in mimoCoRB2 each event went \
                             to one of them. {} takes one process, so they cannot become one \
                             worker sharing the events",
                            w.function
                        ),
                        changed: false,
                    });
                    own_files(
                        text,
                        lines,
                        (w, first, node(&w.name)),
                        catalog,
                        edits,
                        changes,
                    );
                }
                continue;
            }
            let Some((first_key, first_value)) = node(&first.name) else {
                continue;
            };
            let names: Vec<&str> = same.iter().map(|w| w.name.as_str()).collect();
            let edit = match &first_value.kind {
                Kind::Str(file) => {
                    inline_with_processes(text, lines, (first_key, first_value), file, checked, n)
                }
                _ => set_processes(text, lines, first_key, first_value, n),
            };
            let Some(edit) = edit else {
                changes.push(Change {
                    line: first_key.at.line,
                    what: format!(
                        "left as it is: worker '{}' reads buffer '{}' beside {}, which do the same",
                        first.name,
                        b.name,
                        names.join(", ")
                    ),
                    why: "here each of them gets every event; in mimoCoRB2 each event went to \
                          one of them. migrate could not write number_of_processes into this \
                          worker's text (a worker file it cannot place here as it is): make \
                          them one worker with number_of_processes by hand"
                        .into(),
                    changed: false,
                });
                continue;
            };
            if let Kind::Str(file) = &first_value.kind {
                changes.push(Change {
                    line: first_key.at.line,
                    what: format!(
                        "worker '{}': the text of its file '{file}' is now written here",
                        first.name
                    ),
                    why: "a worker given as a file path has no place for number_of_processes; \
                          the file is left as it is"
                        .into(),
                    changed: true,
                });
            }
            edits.push(edit);
            changes.push(Change {
                line: first_key.at.line,
                what: format!(
                    "worker '{}' now has number_of_processes: {n} (was {}), in place of {}",
                    first.name,
                    first.processes,
                    names.join(", ")
                ),
                why: format!(
                    "in mimoCoRB2 these workers shared the events of buffer '{}' (each event to \
                     one of them); here every worker reading a buffer gets every event, and the \
                     processes of one worker share them",
                    b.name
                ),
                changed: true,
            });
            for w in same {
                let Some((k, _)) = node(&w.name) else {
                    continue;
                };
                if let Some((start, end)) = entry_span(text, lines, k) {
                    edits.push(Edit {
                        start,
                        end,
                        with: String::new(),
                    });
                    changes.push(Change {
                        line: k.at.line,
                        what: format!("removed worker '{}'", w.name),
                        why: format!("it is now a process of worker '{}'", first.name),
                        changed: true,
                    });
                    merged.push(&w.name);
                }
            }
        }
    }
}

/// The edit that makes a worker's `number_of_processes` `n`: its value replaced, or the key
/// added as the mapping's first entry.
fn set_processes(
    text: &str,
    lines: &LineIndex<'_>,
    key: &Value,
    value: &Value,
    n: usize,
) -> Option<Edit> {
    set_key(
        text,
        lines,
        (key, value),
        "number_of_processes",
        &n.to_string(),
    )
}

/// A mapping's entry: its key and value nodes.
type Entry = (Value, Value);

/// The entries of mapping `value` and the one named `name` among them; `None` for a node
/// that is not a mapping.
fn entries_and<'a>(value: &'a Value, name: &str) -> Option<(&'a [Entry], Option<&'a Entry>)> {
    let Kind::Map(entries) = &value.kind else {
        return None;
    };
    let found = entries
        .iter()
        .find(|(k, _)| k.key_text().as_deref() == Some(name));
    Some((entries, found))
}

/// The edit that sets `name: with` in the mapping `value` (the value of `key`): its value
/// replaced when it is there (a plain scalar), else the entry added first.
fn set_key(
    text: &str,
    lines: &LineIndex<'_>,
    (key, value): (&Value, &Value),
    name: &str,
    with: &str,
) -> Option<Edit> {
    let (entries, found) = entries_and(value, name)?;
    if let Some((_, v)) = found {
        let start = lines.offset(v.at)?;
        let end = start + scalar_len(&text[start..]);
        return Some(Edit {
            start,
            end,
            with: with.to_string(),
        });
    }
    let (first_key, _) = entries.first()?;
    let start = lines.offset(first_key.at)?;
    if first_key.at.line == key.at.line || is_flow(text, start) {
        // `name: {function: …}`: a flow mapping.
        return Some(Edit {
            start,
            end: start,
            with: format!("{name}: {with}, "),
        });
    }
    let indent = " ".repeat(first_key.at.column.saturating_sub(1) as usize);
    let line_start = lines.line_start(first_key.at.line)?;
    Some(Edit {
        start: line_start,
        end: line_start,
        with: format!("{indent}{name}: {with}\n"),
    })
}

/// Bytes of a plain scalar at the start of `s`.
fn scalar_len(s: &str) -> usize {
    s.find([',', '}', ']', '\n', ' ', '#']).unwrap_or(s.len())
}

/// True when the text before `offset` on its line ends in `{` or `,` (a flow mapping entry).
fn is_flow(text: &str, offset: usize) -> bool {
    let line = &text[text[..offset].rfind('\n').map_or(0, |i| i + 1)..offset];
    matches!(line.trim_end().chars().last(), Some('{' | ','))
}

/// The bytes of the mapping entry whose key is `k`: in block style its lines (the key's line
/// and every following line indented deeper, or blank), in flow style `key: value` and one
/// separating comma.
fn entry_span(text: &str, lines: &LineIndex<'_>, k: &Value) -> Option<(usize, usize)> {
    let start = lines.offset(k.at)?;
    if is_flow(text, start) {
        let end = flow_value_end(text, start)?;
        let rest = &text[end..];
        if let Some(after) = rest.strip_prefix(',') {
            let spaces = after.len() - after.trim_start_matches(' ').len();
            return Some((start, end + 1 + spaces));
        }
        // The last entry: take the comma before it instead.
        let before = text[..start].trim_end_matches(' ');
        let from = before.strip_suffix(',').map_or(start, str::len);
        return Some((from, end));
    }
    let indent = k.at.column.saturating_sub(1) as usize;
    let begin = lines.line_start(k.at.line)?;
    let mut line = k.at.line + 1;
    let mut end = lines.line_start(line).unwrap_or(text.len());
    while let Some(s) = lines.line_start(line) {
        let next = lines.line_start(line + 1).unwrap_or(text.len());
        let body = &text[s..next];
        let content = body.trim_start_matches(' ');
        let deeper = body.len() - content.len() > indent;
        let blank = content.trim().is_empty();
        if !(deeper || blank) {
            break;
        }
        if !blank {
            end = next;
        }
        line += 1;
    }
    Some((begin, end))
}

/// Where a flow entry's value ends (at the `,` or `}` that closes it, quotes and nesting
/// skipped).
fn flow_value_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text[start..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') if depth == 0 => return Some(start + i),
            (None, '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => return Some(start + i),
            _ => {}
        }
    }
    None
}

/// A string as a YAML scalar (quoted when plain would not read back as the same text).
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || "._/-~".contains(c))
        && !s.starts_with(['-', '~']);
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// Applies non-overlapping edits (overlapping ones: the later is dropped).
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in edits {
        if e.start < at || e.end > text.len() {
            continue;
        }
        out.push_str(&text[at..e.start]);
        out.push_str(&e.with);
        at = e.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Byte offsets of line starts, for the parser's (line, column) positions.
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> LineIndex<'t> {
        let mut starts = vec![0];
        for line in text.split_inclusive('\n') {
            starts.push(starts[starts.len() - 1] + line.len());
        }
        LineIndex { text, starts }
    }

    /// Start of 1-based `line`, if the text has it.
    fn line_start(&self, line: u64) -> Option<usize> {
        let i = usize::try_from(line).ok()?.checked_sub(1)?;
        self.starts.get(i).copied().filter(|&s| s < self.text.len())
    }

    /// Byte offset of a position (columns count characters, within the line).
    fn offset(&self, at: yaml::Loc) -> Option<usize> {
        let start = self.line_start(at.line)?;
        let end = self.line_start(at.line + 1).unwrap_or(self.text.len());
        let col = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let (i, _) = self.text[start..end].char_indices().nth(col)?;
        Some(start + i)
    }
}
