//! YAML text to a tree of values that each carry their file position.
//!
//! Guarantees: parsing never panics on any input (bytes that are not UTF-8 included); every
//! node and every mapping key has a 1-based line and column; a syntax error is one
//! positioned message. Anchors, aliases and `<<` merge keys are resolved by serde-saphyr,
//! whose resource budget (depth 32, node and alias limits) bounds what a hostile file costs.
//! Must never read other files: includes are the resolver's business.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A position: file id (index into the loader's file table), 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Loc {
    pub file: u32,
    pub line: u64,
    pub column: u64,
}

impl Loc {
    /// The setup file's first character: where what concerns the whole file points.
    pub const SETUP_START: Loc = Loc {
        file: 0,
        line: 1,
        column: 1,
    };
}

/// A YAML node whose children are `C`: a [`Kind`] as the setup reads it, or the parser's
/// [`Raw`] tree before the positions are resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node<C> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<C>),
    Map(Vec<(C, C)>),
}

/// A YAML value.
pub(crate) type Kind = Node<Value>;

/// A YAML value and where its text is (for an alias: where the anchored text is).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Value {
    pub kind: Kind,
    pub at: Loc,
}

impl Value {
    /// A short description for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".into(),
            Kind::Bool(b) => format!("`{b}`"),
            Kind::Int(i) => format!("the number {i}"),
            Kind::UInt(u) => format!("the number {u}"),
            // Past 2^53 a float's digits are not the ones written (a whole number too large
            // for 64 bits came as 18446744073709551616 and was shown 18446744073709552000).
            Kind::Float(x) if x.abs() >= 1e16 => format!("the number {x:e}"),
            Kind::Float(x) => format!("the number {x}"),
            Kind::Str(s) => format!("the text '{s}'"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// Key text of a mapping key: strings as they are, numbers and booleans as written.
    pub fn key_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::UInt(u) => Some(u.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// What the parser produced for one file: the root and the positions aliases point at.
pub(crate) struct Parsed {
    pub root: Value,
    /// Every position that an alias or merge key copied from (anchor definitions in use).
    pub alias_targets: Vec<Loc>,
}

/// A syntax error: position and message.
pub(crate) struct SyntaxError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// The tree as serde-saphyr hands it over: each node with its spans.
struct Raw(Node<Spanned<Raw>>);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw(Node::Null))
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw(Node::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw(Node::Bool(b)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw(Node::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw(Node::UInt(v)))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Raw, E> {
                i64::try_from(v)
                    .map(|i| Raw(Node::Int(i)))
                    .map_err(|_| E::custom(format!("the number {v} is too large")))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Raw, E> {
                u64::try_from(v)
                    .map(|u| Raw(Node::UInt(u)))
                    .map_err(|_| E::custom(format!("the number {v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw(Node::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw(Node::Str(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw(Node::Str(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                Ok(Raw(Node::Str(String::from_utf8_lossy(v).into_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Raw(Node::Seq(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    v.push(entry);
                }
                Ok(Raw(Node::Map(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The first key, in file order, that a mapping of `v` holds twice: (its text, where it
/// first stands, where it stands again).
fn first_repeated_key(v: &Value) -> Option<(String, Loc, Loc)> {
    let mut found: Option<(String, Loc, Loc)> = None;
    let mut keep = |f: (String, Loc, Loc)| {
        let earlier = |x: &Loc, y: &Loc| (x.line, x.column) < (y.line, y.column);
        if found.as_ref().is_none_or(|g| earlier(&f.2, &g.2)) {
            found = Some(f);
        }
    };
    match &v.kind {
        Kind::Seq(items) => items.iter().filter_map(first_repeated_key).for_each(keep),
        Kind::Map(entries) => {
            let mut seen: std::collections::HashMap<String, Loc> = Default::default();
            for (k, value) in entries {
                if let Some(text) = k.key_text() {
                    match seen.get(&text) {
                        Some(first) => keep((text, *first, k.at)),
                        None => {
                            seen.insert(text, k.at);
                        }
                    }
                }
                if let Some(f) = first_repeated_key(value) {
                    keep(f);
                }
            }
        }
        _ => {}
    }
    found
}

fn convert(raw: Spanned<Raw>, file: u32, parent: Loc, targets: &mut Vec<Loc>) -> Value {
    let loc = |l: &serde_saphyr::Location| Loc {
        file,
        line: l.line(),
        column: l.column().max(1),
    };
    let referenced = if raw.referenced.line() > 0 {
        loc(&raw.referenced)
    } else {
        parent
    };
    let at = if raw.defined.line() > 0 {
        loc(&raw.defined)
    } else {
        referenced
    };
    if at != referenced {
        targets.push(at);
    }
    let kind = match raw.value.0 {
        Node::Null => Kind::Null,
        Node::Bool(b) => Kind::Bool(b),
        Node::Int(i) => Kind::Int(i),
        Node::UInt(u) => Kind::UInt(u),
        Node::Float(x) => Kind::Float(x),
        Node::Str(s) => Kind::Str(s),
        Node::Seq(items) => Kind::Seq(
            items
                .into_iter()
                .map(|x| convert(x, file, at, targets))
                .collect(),
        ),
        Node::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = convert(k, file, at, targets);
                    let value = convert(v, file, key.at, targets);
                    (key, value)
                })
                .collect(),
        ),
    };
    Value { kind, at }
}

/// Line and column (1-based) of byte `offset` in `bytes`.
fn position_of(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u64
        + 1;
    (line, column)
}

/// Most values (scalars, lists, mappings, aliases expanded) one file may hold.
pub(crate) const MAX_NODES: usize = 50_000;

/// Most aliases (`*name`) one file may use.
const MAX_ALIASES: usize = 10_000;

/// Deepest lists and mappings may nest inside each other. A setup nests a handful of
/// levels; the file is read recursively, and at the library's own bound (64) a file nested
/// 65 deep overflowed a 2 MiB thread stack in a debug build (a test thread's) instead of
/// being refused. At 32 the reading stays within about half of that.
const MAX_DEPTH: usize = 32;

/// Strips serde-saphyr's " at line L, column C" suffix: the position is printed in front.
fn bare_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let cut = first
        .rfind(" at line ")
        .filter(|i| first[*i..].contains("column"))
        .map_or(first, |i| &first[..i]);
    let cut = cut.strip_prefix("error: ").unwrap_or(cut);
    if cut.is_empty() {
        "the file is not valid YAML".to_string()
    } else {
        cut.to_string()
    }
}

/// The text of line `line` (1-based), without its line break.
fn line_text(text: &str, line: u64) -> &str {
    let index = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
    text.lines().nth(index).unwrap_or("")
}

/// True for a line that starts a document (`---`) or ends one (`...`): the marker at its
/// start, followed by nothing or a blank.
fn document_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// A file with a second document, said where the second one starts: at its `---` line,
/// or (after an end marker `...` with no `---`) where its text starts, at `line`:`column`.
fn second_document(text: &str, line: u64, column: u64) -> SyntaxError {
    let upto = usize::try_from(line).unwrap_or(usize::MAX);
    let lines: Vec<&str> = text.lines().take(upto).collect();
    let marker = lines
        .iter()
        .enumerate()
        .rev()
        .find(|(_, t)| document_marker(t, "---") || document_marker(t, "..."))
        .map(|(i, t)| (i as u64 + 1, *t));
    match marker {
        Some((l, t)) if t.starts_with("---") => SyntaxError {
            line: l,
            column: 1,
            message: "a setup is one YAML document, and this file has a second one starting \
                      here (`---`): remove the line, or put what follows in a file of its own"
                .into(),
        },
        _ => SyntaxError {
            line,
            column,
            message: "a setup is one YAML document, and this file has a second one starting \
                      here (after the end marker `...`): remove what follows, or put it in a \
                      file of its own"
                .into(),
        },
    }
}

/// For an alias whose anchor is not defined: the name, read from the text at the alias.
fn unknown_anchor(text: &str, line: u64, column: u64) -> String {
    let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    let from: String = line_text(text, line).chars().skip(skip).collect();
    let name: String = from
        .strip_prefix('*')
        .unwrap_or("")
        .chars()
        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
        .collect();
    if name.is_empty() {
        return "an alias (`*name`) names an anchor that is not defined before it in this file \
                (`&name`)"
            .into();
    }
    format!(
        "`*{name}`: no anchor `&{name}` before it in this file (an alias copies the value \
         marked `&{name}` earlier in the same file)"
    )
}

/// A number the YAML reads as infinite or not-a-number.
fn non_finite(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let what = if lower.contains("nan") {
        "not a number (NaN)".to_string()
    } else if lower.contains("inf") {
        "infinite".to_string()
    } else {
        format!(
            "beyond the largest number a setup can hold ({:e})",
            f64::MAX
        )
    };
    format!(
        "`{value}` is {what}: a setup's numbers must be finite (quote it, '{value}', if it is \
         meant as text)"
    )
}

/// A resource limit the file went over, in our words.
fn over_budget(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Nodes { .. } | B::Events { .. } => format!(
            "the file expands to more than {MAX_NODES} values or too many aliases (aliases of \
             aliases?): no setup needs that many"
        ),
        B::Aliases { .. } | B::AliasAnchorRatio { .. } => format!(
            "the file uses more than {MAX_ALIASES} aliases (`*name`), or many aliases for few \
             anchors: no setup needs that many"
        ),
        B::Depth { .. } => format!(
            "lists and mappings nest more than {MAX_DEPTH} levels deep here: no setup nests \
             that deep (a bracket left open?)"
        ),
        B::Documents { .. } => {
            "the file holds too many YAML documents (`---`): a setup is one".into()
        }
        _ => "the file is larger or more complex than any setup (too many anchors, merge keys \
              or too much text): no setup needs that"
            .into(),
    }
}

/// A value at `line`, `column` that its `!!` tag does not fit (`!!int x`); `ty` is the
/// library's name of what the tag asks for (`u64`, `floating point`, `boolean`).
fn tag_not_fitting(text: &str, line: u64, column: u64, ty: &str) -> String {
    let what = match ty {
        "floating point" => "a number",
        "boolean" => "true or false",
        t if t.starts_with(['u', 'i']) => "an integer",
        other => other,
    };
    let line = line_text(text, line);
    let at = line
        .char_indices()
        .nth(usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX))
        .map_or(line.len(), |(i, _)| i);
    let value: String = line[at..]
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | ']' | '#'))
        .collect();
    let value = value.trim();
    match line[..at].rfind("!!") {
        Some(i) => format!(
            "`{value}` is not {what}, which its tag `{}` asks for: write the value itself, or \
             drop the tag",
            line[i..at].split_whitespace().next().unwrap_or_default()
        ),
        None => format!("`{value}` is not {what}, which is asked for here"),
    }
}

/// A parse error of serde-saphyr, positioned and said in our words (the library's own
/// words name its API and options: "use from_str_multiple", "rejected by the configured
/// policy").
fn syntax_error(text: &str, e: &serde_saphyr::Error) -> SyntaxError {
    use serde_saphyr::Error as E;
    let (line, column) = e
        .location()
        .filter(|l| l.line() > 0)
        .map_or((1, 1), |l| (l.line(), l.column().max(1)));
    // The error itself, out of the library's wrappers (an alias's, a snippet's).
    let mut inner = e;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = inner {
        inner = error;
    }
    let message = match inner {
        E::MultipleDocuments { .. } => return second_document(text, line, column),
        E::UnknownAnchor { .. } => unknown_anchor(text, line, column),
        E::NonFiniteFloat { value, .. } => non_finite(value),
        E::BinaryNotUtf8 { .. } => "this `!!binary` value decodes to bytes that are not UTF-8 \
                                    text, and a setup's values are text, numbers, lists or \
                                    mappings: write the value itself"
            .into(),
        E::Budget { breach, .. } => over_budget(breach),
        E::InvalidScalar { ty, .. } => tag_not_fitting(text, line, column, ty),
        E::InvalidBooleanStrict { .. } => tag_not_fitting(text, line, column, "boolean"),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "the aliases expand to too many values (aliases of aliases?): no setup needs that \
             many"
                .into()
        }
        _ => bare_message(&inner.to_string()),
    };
    SyntaxError {
        line,
        column,
        message,
    }
}

/// Parses one YAML document. `file` is the id stamped on every position.
pub(crate) fn parse(bytes: &[u8], file: u32) -> Result<Parsed, SyntaxError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = position_of(bytes, e.valid_up_to());
            let byte = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
            return Err(SyntaxError {
                line,
                column,
                message: format!(
                    "the file is not UTF-8 text (byte 0x{byte:02x}): save it as UTF-8"
                ),
            });
        }
    };
    // A setup is small: a tighter budget than the library's default refuses alias bombs
    // quickly while leaving room for long config lists. YAML 1.2 booleans (only
    // true/false): with YAML 1.1's, a config key `n:` or `y:` or a value `off` turned into a
    // boolean, and a physicist's `n: 3` became "unknown key 'false'".
    // Repeated keys are handed over (not refused by the library, whose message names its
    // own option): `first_repeated_key` reports them with both places.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_depth: MAX_DEPTH,
        },
    };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => {
            let mut alias_targets = Vec::new();
            let top = Loc {
                file,
                line: 1,
                column: 1,
            };
            let root = convert(raw, file, top, &mut alias_targets);
            if let Some((key, first, again)) = first_repeated_key(&root) {
                return Err(SyntaxError {
                    line: again.line,
                    column: again.column,
                    message: format!(
                        "`{key}` is given twice in this mapping (first at line {}, column {}): \
                         a key may appear once",
                        first.line, first.column
                    ),
                });
            }
            Ok(Parsed {
                root,
                alias_targets,
            })
        }
        Err(e) => Err(syntax_error(text, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_carry_positions() {
        let p = parse(b"a: &x {k: 1}\nb: *x\n", 0).ok().unwrap();
        let Kind::Map(m) = &p.root.kind else {
            panic!("not a map")
        };
        assert_eq!((m[1].0.at.line, m[1].0.at.column), (2, 1));
        // The alias's content points at the anchored text.
        assert_eq!((m[1].1.at.line, m[1].1.at.column), (1, 7));
        assert!(p.alias_targets.contains(&m[0].1.at));
    }

    /// A key given twice is named with both places, in our words (the library's message
    /// named its own DuplicateKeyPolicy option); a merge that a key overrides is not a
    /// repetition.
    #[test]
    fn a_repeated_key_names_both_places() {
        let e = parse(b"Workers:\n  out: {function: a}\n  src: {function: b, sinks: [raw], sinks: [x]}\n  out: {function: c}\n", 0).err().unwrap();
        assert_eq!((e.line, e.column), (3, 36));
        assert_eq!(
            e.message,
            "`sinks` is given twice in this mapping (first at line 3, column 22): a key may \
             appear once"
        );
        let p = parse(b"base: &b {a: 1, c: 2}\nw:\n  <<: *b\n  a: 3\n", 0);
        assert!(p.is_ok());
    }

    #[test]
    fn errors_are_positioned() {
        let e = parse(b"a: {b: 1\n", 0).err().unwrap();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(e.message.contains("unclosed"), "{}", e.message);
        let e = parse(b"a: 1\nb: \xff\n", 0).err().unwrap();
        assert_eq!((e.line, e.column), (2, 4));
    }

    /// Line, column and message of the error `text` gives.
    fn refusal(text: &str) -> (u64, u64, String) {
        let e = parse(text.as_bytes(), 0).err().unwrap();
        (e.line, e.column, e.message)
    }

    /// Asserts that `text` is refused at `at` (line, column) with a message starting `start`.
    fn refused_at(text: &str, at: (u64, u64), start: &str) {
        let (line, column, message) = refusal(text);
        assert_eq!((line, column), at, "{message}");
        assert!(message.starts_with(start), "{message}");
    }

    /// A whole number too large for 64 bits (a tester's seed 18446744073709551616) reads as a
    /// float and was said as "the number 18446744073709552000", digits nobody wrote.
    #[test]
    fn a_number_past_whole_numbers_is_said_with_an_exponent() {
        let Ok(p) = parse(b"seed: 18446744073709551616\n", 0) else {
            panic!("parses")
        };
        let Kind::Map(entries) = &p.root.kind else {
            panic!("a mapping")
        };
        assert_eq!(entries[0].1.describe(), "the number 1.8446744073709552e19");
    }

    /// A value its `!!` tag does not fit was said in the library's words ("invalid u64").
    #[test]
    fn a_value_its_tag_does_not_fit_is_said_in_our_words() {
        refused_at(
            "raw: {slot_count: !!int x, data_length: 16}\n",
            (1, 25),
            "`x` is not an integer, which its tag `!!int` asks for: write the value itself, or \
             drop the tag",
        );
        refused_at(
            "config:\n  rate: !!float abc\n",
            (2, 17),
            "`abc` is not a number, which its tag `!!float` asks for",
        );
        refused_at(
            "config:\n  on: !!bool maybe # a comment\n",
            (2, 14),
            "`maybe` is not true or false, which its tag `!!bool` asks for",
        );
    }

    /// A second document is pointed at by its `---` (the library named its own API: "use
    /// from_str_multiple or from_str_multiple_with_options", at the line after the marker).
    #[test]
    fn a_second_document_is_pointed_at_by_its_marker() {
        assert_eq!(
            refusal("a: 1\n---\nb: 2\n"),
            (
                2,
                1,
                "a setup is one YAML document, and this file has a second one starting here \
                 (`---`): remove the line, or put what follows in a file of its own"
                    .into()
            )
        );
        refused_at(
            "---\na: 1\n...\nb: 2\n",
            (4, 1),
            "a setup is one YAML document, and this file has a second one starting here (after \
             the end marker `...`)",
        );
    }

    /// An alias to no anchor names it (the library said "alias references unknown anchor").
    #[test]
    fn an_alias_to_no_anchor_names_it() {
        assert_eq!(
            refusal("x: 1\nBuffers:\n  raw: *nope\n"),
            (
                3,
                8,
                "`*nope`: no anchor `&nope` before it in this file (an alias copies the value \
                 marked `&nope` earlier in the same file)"
                    .into()
            )
        );
        refused_at("a: [1, *nope]\n", (1, 8), "`*nope`: no anchor `&nope`");
    }

    /// A number that is not finite is said so (the library said "non-finite float `.inf`
    /// rejected by the configured policy").
    #[test]
    fn a_number_that_is_not_finite_is_said_so() {
        assert_eq!(
            refusal("a: .inf\n"),
            (
                1,
                4,
                "`.inf` is infinite: a setup's numbers must be finite (quote it, '.inf', if it \
                 is meant as text)"
                    .into()
            )
        );
        refused_at(
            "a: [1e999]\n",
            (1, 5),
            "`1e999` is beyond the largest number",
        );
        refused_at("a: {b: .NaN}\n", (1, 8), "`.NaN` is not a number (NaN)");
    }

    /// A `!!binary` value that is not text is said so (the library's message named its own
    /// option, "set ignore_binary_tag_for_string in Options").
    #[test]
    fn binary_that_is_not_text_is_said_so() {
        refused_at(
            "a: !!binary \"/w==\"\n",
            (1, 13),
            "this `!!binary` value decodes to bytes that are not UTF-8 text",
        );
    }

    /// Lists nested too deep are said to be, on a test thread's 2 MiB stack too (the
    /// library's depth limit was reported as "more than 50000 values", and a file nested
    /// 65 deep overflowed this stack before reaching it).
    #[test]
    fn nesting_too_deep_is_said_so() {
        let (line, _, message) = refusal(&format!("a: {}1{}\n", "[".repeat(70), "]".repeat(70)));
        assert_eq!(line, 1);
        assert!(
            message.starts_with("lists and mappings nest more than 32 levels deep here"),
            "{message}"
        );
        // At the bound (the top mapping and 31 lists) the file is read.
        let deepest = format!("a: {}1{}\n", "[".repeat(31), "]".repeat(31));
        assert!(parse(deepest.as_bytes(), 0).is_ok());
    }
}
