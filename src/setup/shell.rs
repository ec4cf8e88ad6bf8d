//! What `check` can know of `options.alert_command` before a run needs it: whether `sh`
//! parses it (`sh -n`, which runs nothing) and whether the programs it starts exist here.
//! An alert command that cannot work is otherwise found out when the first alert of a
//! week-long run fails, written to a log nobody reads.
//!
//! The programs are found by a reading of the command that is simpler than the shell's: its
//! simple commands split at unquoted `|`, `;`, `&`, newlines, parentheses and backquotes,
//! the first word of each after assignments, redirections and keywords (`if`, `then`, `!`,
//! …), and the commands of `$(…)` substitutions, quoted or not. A word holding `$` or a
//! glob is not looked up (it is only known when the command runs); loop headers (`for`,
//! `case`) are skipped. What is missing is a warning, not an
//! error: the reading is not the shell's own.

use std::process::{Command, Stdio};

/// Why `sh` refuses `command` as a script (its own message), or `None` when it parses it.
/// `None` too when `sh` cannot be started: the run's alert would say so.
pub fn syntax_error(command: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-n", "-c", command])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    // dash: "sh: 1: Syntax error: …"; keep what follows the line number.
    let said = text.lines().next().unwrap_or("").trim();
    let said = said
        .strip_prefix("sh: ")
        .map(|s| s.split_once(": ").map_or(s, |(_, rest)| rest))
        .unwrap_or(said);
    Some(if said.is_empty() {
        format!("sh -n exited with {}", out.status)
    } else {
        said.to_string()
    })
}

/// The programs `command` starts that are neither shell builtins nor found on `PATH`, in
/// the order it names them, each once.
pub fn missing_programs(command: &str) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for name in programs(command) {
        if !missing.contains(&name) && !known_to_sh(&name) {
            missing.push(name);
        }
    }
    missing
}

/// Whether `sh` knows `name` as a builtin, a function or a program (`command -v`).
fn known_to_sh(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        // Nothing to say when sh itself cannot be started.
        .map_or(true, |s| s.success())
}

/// Words after which the next word is the command.
const LEADING: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "exec", "command",
    "nohup", "env", "timeout",
];
/// Words that end a construct or start a loop header: nothing in their command is a program.
const SKIP: &[&str] = &[
    "fi", "done", "esac", "}", "for", "case", "in", ";;", "function",
];

/// The first word of each simple command of `command`, as far as a plain reading tells.
fn programs(command: &str) -> Vec<String> {
    let mut found = Vec::new();
    for words in simple_commands(command) {
        let mut words = words.into_iter().peekable();
        while let Some((word, quoted)) = words.next() {
            let w = word.as_str();
            if !quoted && LEADING.contains(&w) {
                // `timeout 10 mail …`: its duration is no program.
                if w == "timeout" {
                    words.next_if(|(n, _)| n.chars().next().is_some_and(|c| c.is_ascii_digit()));
                }
                continue;
            }
            let assignment = !quoted
                && w.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            let redirection = !quoted
                && w.trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with(['<', '>']);
            if assignment || w.starts_with('-') {
                continue;
            }
            if redirection {
                // `> file` names the file in the next word; `>file` and `2>&1` in this one.
                let op_only =
                    w.trim_start_matches(|c: char| c.is_ascii_digit() || "<>&|".contains(c));
                if op_only.is_empty() {
                    words.next();
                }
                continue;
            }
            if (!quoted && SKIP.contains(&w)) || w.contains(['$', '*', '?', '[', '`']) {
                break;
            }
            if !w.is_empty() {
                found.push(word);
            }
            break;
        }
    }
    found
}

/// The words of each simple command, with whether each was quoted in part (a quoted word
/// is never a keyword). Separators: unquoted `|`, `;`, `&`, newline, `(`, `)`, a backquote.
fn simple_commands(command: &str) -> Vec<Vec<(String, bool)>> {
    let mut all = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = command.chars().peekable();
    // The commands of `$(…)` substitutions, after the others.
    let mut substituted = Vec::new();
    let end_word = |all: &mut Vec<Vec<(String, bool)>>,
                    word: &mut String,
                    in_word: &mut bool,
                    quoted: &mut bool| {
        if *in_word {
            all.last_mut()
                .expect("one list at least")
                .push((std::mem::take(word), *quoted));
        }
        *in_word = false;
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                quoted = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        '$' if chars.peek() == Some(&'(') => {
                            substitution(&mut chars, &mut substituted, &mut word);
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                substitution(&mut chars, &mut substituted, &mut word);
            }
            '#' if !in_word => {
                // A comment to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_word(&mut all, &mut word, &mut in_word, &mut quoted);
                all.push(Vec::new());
            }
            '|' | ';' | '&' | '\n' | '(' | ')' | '`' => {
                end_word(&mut all, &mut word, &mut in_word, &mut quoted);
                // `>&2`, `2>&1`: a redirection, not a separator.
                if c == '&'
                    && all
                        .last()
                        .and_then(|w| w.last())
                        .is_some_and(|(w, q)| !q && w.ends_with(['>', '<']))
                {
                    let (mut w, q) = all
                        .last_mut()
                        .expect("one list at least")
                        .pop()
                        .expect("just seen");
                    w.push('&');
                    word = w;
                    in_word = true;
                    quoted = q;
                    continue;
                }
                all.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut all, &mut word, &mut in_word, &mut quoted),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut all, &mut word, &mut in_word, &mut quoted);
    all.extend(substituted);
    all.retain(|w| !w.is_empty());
    all
}

/// A `$(…)` substitution, its `$` just read and `(` next in `chars`: its commands go to
/// `commands` (they are commands too), and the word it stands in is marked with `$` (like
/// one with `$X`, it is only known when the command runs). Quoted or not alike.
fn substitution(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    commands: &mut Vec<Vec<(String, bool)>>,
    word: &mut String,
) {
    chars.next();
    let mut inner = String::new();
    let mut depth = 1;
    for n in chars.by_ref() {
        depth += match n {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth == 0 {
            break;
        }
        inner.push(n);
    }
    commands.extend(simple_commands(&inner));
    word.push('$');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_examples_name_their_programs() {
        let mail = r#"printf "%s\n\n%s\n" "$DAQ_ALERT_TEXT" "$DAQ_RUN_DIR" | mail -s "daq-engine: $DAQ_ALERT_KIND $DAQ_ALERT_SUBJECT" lab@example.org"#;
        assert_eq!(programs(mail), ["printf", "mail"]);
        let chat = r#"curl -fsS -m 10 -H 'Content-Type: application/json' --data "$(jq -n --arg t "daq-engine $DAQ_ALERT_KIND $DAQ_ALERT_SUBJECT: $DAQ_ALERT_TEXT" '{text: $t}')" https://chat.example.org/hooks/XXXXXXXX"#;
        assert_eq!(programs(chat), ["curl", "jq"]);
        let tests = r#"echo "$DAQ_ALERT_KIND|$DAQ_ALERT_TEXT" >> alerts.txt"#;
        assert_eq!(programs(tests), ["echo"]);
    }

    #[test]
    fn assignments_redirections_and_keywords_are_passed_over() {
        let c = "X=1 LANG=C notify-send hi 2>&1 >/dev/null; if test -n \"$A\"; then logger -t daq \"$A\"; fi";
        assert_eq!(programs(c), ["notify-send", "test", "logger"]);
        assert_eq!(
            programs("timeout 10 wall < msg.txt && ! false"),
            ["wall", "false"]
        );
        assert_eq!(programs("for f in a b; do cat $f; done"), ["cat"]);
        assert_eq!(
            programs("$MAILER -s x y; ./notify.sh # comment: ignored"),
            ["./notify.sh"]
        );
        assert_eq!(programs("'my tool' --x"), ["my tool"]);
        // A substitution's commands, quoted or not; what follows it is an argument.
        assert_eq!(
            programs("printf %s $(hostname) there"),
            ["printf", "hostname"]
        );
        assert_eq!(programs("$(command -v mail) -s x y"), ["mail"]);
    }

    #[test]
    fn a_missing_program_is_named_and_builtins_are_known() {
        let gone = format!("no-such-program-{}", std::process::id());
        let c = format!("echo x | {gone} -s y; cd /tmp && {gone}; printf ok");
        assert_eq!(missing_programs(&c), [gone]);
        assert!(missing_programs("echo ok | cat >/dev/null").is_empty());
    }

    #[test]
    fn sh_says_why_it_cannot_parse_a_command() {
        let e = syntax_error("if true; then echo x").expect("an unclosed if");
        assert!(
            e.contains("Syntax error") || e.contains("syntax error"),
            "{e}"
        );
        assert_eq!(syntax_error("echo \"$DAQ_ALERT_TEXT\" | cat"), None);
    }
}
