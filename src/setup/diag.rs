//! Compiler-style messages about a setup file: `file:line:col: error: message`, then a hint.
//!
//! Guarantees: every [`Diagnostic`] has a file and a 1-based line and column; a
//! [`SetupError`] is never empty. Never prints anything itself: callers decide where
//! messages go.

use std::fmt;
use std::path::PathBuf;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The setup cannot run.
    Error,
    /// The setup runs, but probably not as meant.
    Warning,
    /// The setup runs as written; a fact about how, which a reader coming from mimoCoRB2
    /// may not expect.
    Note,
}

/// What a diagnostic is about, where callers treat some kinds apart (instead of matching
/// their text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DiagnosticKind {
    /// Anything about the setup itself.
    #[default]
    General,
    /// A buffer read by several workers: each gets every event here, where mimoCoRB2 split
    /// them. For setups carried over from mimoCoRB2: `check` shows it, a run does not; a
    /// note, or a warning where two of the readers do the same thing.
    Broadcast,
}

/// One message about one place in a setup file (or a file it includes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// What it is about.
    pub kind: DiagnosticKind,
    /// The file the position is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong, and what was expected.
    pub message: String,
    /// What to do about it (a "did you mean", the valid values), if anything useful.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            kind,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  = hint: {h}")?;
        }
        Ok(())
    }
}

/// A setup that cannot run: every error found (and the warnings alongside), sorted by
/// position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct SetupError {
    /// Errors and warnings, sorted by file and position. At least one is an error.
    pub diagnostics: Vec<Diagnostic>,
}

impl SetupError {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

fn render(list: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in list {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let n = list.iter().filter(|d| d.is_error()).count();
    out.push_str(&format!(
        "setup rejected: {n} error{}",
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// Edit distance between two strings, by characters: insertions, deletions, substitutions
/// and swaps of two neighbours (`rwa` → `raw`) each count 1 (optimal string alignment).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 {
                j
            } else if j == 0 {
                i
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * w + j] + 1)
                    .min(d[i * w + j - 1] + 1)
                    .min(d[(i - 1) * w + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * w + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo: a
/// case-insensitive match, or at most a third of the word's length in edits (at least 1,
/// at most 3).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if let Some(c) = candidates
        .iter()
        .find(|c| c.eq_ignore_ascii_case(word) && **c != word)
    {
        return Some(c);
    }
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint for an unknown name: "did you mean `x`?" when one is close, then the valid names.
pub fn unknown_name_hint(word: &str, what: &str, candidates: &[&str]) -> String {
    let list = if candidates.is_empty() {
        format!("there are no {what}")
    } else {
        format!("valid {what}: {}", candidates.join(", "))
    };
    match did_you_mean(word, candidates) {
        Some(c) => format!("did you mean `{c}`? {list}"),
        None => list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("slot_cont", "slot_count"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("rwa", "raw"), 1);
    }

    #[test]
    fn suggestions_only_when_close() {
        let keys = ["slot_count", "data_length", "data_dtype", "policy"];
        assert_eq!(did_you_mean("slot_cont", &keys), Some("slot_count"));
        assert_eq!(did_you_mean("Policy", &keys), Some("policy"));
        assert_eq!(did_you_mean("banana", &keys), None);
        assert!(unknown_name_hint("dtype", "keys", &keys).starts_with("valid keys"));
    }

    #[test]
    fn display_is_compiler_like() {
        let d = Diagnostic {
            severity: Severity::Error,
            kind: DiagnosticKind::General,
            file: "s.yaml".into(),
            line: 3,
            column: 5,
            message: "bad".into(),
            hint: Some("fix it".into()),
        };
        assert_eq!(d.to_string(), "s.yaml:3:5: error: bad\n  = hint: fix it");
        let e = SetupError {
            diagnostics: vec![d],
        };
        assert!(e.to_string().ends_with("setup rejected: 1 error"));
    }
}
