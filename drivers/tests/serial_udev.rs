//! Checks `udev/70-daq-engine.rules`: every rule is well-formed udev syntax, every supported
//! USB id is there with `TAG+="uaccess"` and the right group (plugdev for USB, dialout for
//! tty), serial detectors get a `/dev/daq/` symlink, each rule carries a source comment, and
//! `udevadm verify` accepts the file where udevadm exists.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../udev/70-daq-engine.rules")
}

/// One `KEY{attr}OP"value"` term.
#[derive(Debug)]
struct Term {
    key: String,
    attr: Option<String>,
    op: String,
    value: String,
}

const MATCH_KEYS: [&str; 6] = ["ACTION", "SUBSYSTEM", "ATTR", "ATTRS", "KERNEL", "ENV"];
const ASSIGN_KEYS: [&str; 7] = ["TAG", "GROUP", "MODE", "SYMLINK", "GOTO", "LABEL", "ENV"];

/// Parses one rule line into terms; `Err` says what is malformed.
fn parse_rule(line: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !c.is_ascii_uppercase() && c != '_')
            .ok_or("no operator")?;
        let key = rest[..key_end].to_string();
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}').ok_or("unclosed {")?;
            attr = Some(r[..close].to_string());
            rest = &r[close + 1..];
        }
        let op = ["==", "!=", "+=", ":=", "="]
            .iter()
            .find(|op| rest.starts_with(**op))
            .ok_or(format!("no operator after {key}"))?;
        rest = &rest[op.len()..];
        let r = rest
            .strip_prefix('"')
            .ok_or(format!("value of {key} not quoted"))?;
        let close = r.find('"').ok_or(format!("unterminated value of {key}"))?;
        let value = r[..close].to_string();
        rest = r[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("missing comma after {key}"));
        }
        let is_match = *op == "==" || *op == "!=";
        if is_match && !MATCH_KEYS.contains(&key.as_str()) {
            return Err(format!("{key} cannot be matched"));
        }
        if !is_match && !ASSIGN_KEYS.contains(&key.as_str()) {
            return Err(format!("{key} cannot be assigned"));
        }
        if (key == "ATTR" || key == "ATTRS" || key == "ENV") && attr.is_none() {
            return Err(format!("{key} needs {{name}}"));
        }
        terms.push(Term {
            key,
            attr,
            op: op.to_string(),
            value,
        });
    }
    if terms.is_empty() {
        return Err("empty rule".into());
    }
    Ok(terms)
}

fn get<'a>(terms: &'a [Term], key: &str, attr: Option<&str>) -> Option<&'a Term> {
    terms
        .iter()
        .find(|t| t.key == key && t.attr.as_deref() == attr)
}

#[test]
fn udev_rules_are_well_formed_and_cover_every_device() {
    let text = std::fs::read_to_string(rules_path()).expect("udev/70-daq-engine.rules exists");
    assert!(!text.contains("\\\n"), "no line continuations");
    // (subsystem, vid, pid or "*") present in the file.
    let mut found: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let mut gotos = BTreeSet::new();
    let mut previous_is_comment = false;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            previous_is_comment = false;
            continue;
        }
        if trimmed.starts_with('#') {
            previous_is_comment = true;
            continue;
        }
        let terms =
            parse_rule(trimmed).unwrap_or_else(|e| panic!("line {line_no}: {e}: {trimmed}"));
        if let Some(l) = get(&terms, "LABEL", None) {
            labels.insert(l.value.clone());
        }
        if let Some(g) = get(&terms, "GOTO", None) {
            gotos.insert(g.value.clone());
        }
        let Some(subsystem) = get(&terms, "SUBSYSTEM", None) else {
            continue;
        };
        assert!(
            previous_is_comment,
            "line {line_no}: device rule without a source comment above it"
        );
        let attr_key = if subsystem.value == "tty" {
            "ATTRS"
        } else {
            "ATTR"
        };
        let vid = get(&terms, attr_key, Some("idVendor"))
            .unwrap_or_else(|| panic!("line {line_no}: no {attr_key}{{idVendor}}"));
        let pids: Vec<String> = match get(&terms, attr_key, Some("idProduct")) {
            Some(p) => p.value.split('|').map(str::to_string).collect(),
            None => vec!["*".into()],
        };
        let tag = get(&terms, "TAG", None).unwrap_or_else(|| panic!("line {line_no}: no TAG"));
        assert_eq!(
            (tag.op.as_str(), tag.value.as_str()),
            ("+=", "uaccess"),
            "line {line_no}"
        );
        let group =
            get(&terms, "GROUP", None).unwrap_or_else(|| panic!("line {line_no}: no GROUP"));
        let want_group = if subsystem.value == "tty" {
            "dialout"
        } else {
            "plugdev"
        };
        assert_eq!(group.value, want_group, "line {line_no}");
        assert_eq!(
            get(&terms, "MODE", None).map(|m| m.value.as_str()),
            Some("0660"),
            "line {line_no}"
        );
        if subsystem.value == "tty" {
            let link = get(&terms, "SYMLINK", None)
                .unwrap_or_else(|| panic!("line {line_no}: serial rule without SYMLINK"));
            assert_eq!(link.op, "+=", "line {line_no}");
            assert!(
                link.value.starts_with("daq/") && link.value.ends_with("-%n"),
                "line {line_no}: {}",
                link.value
            );
        }
        for v in vid.value.split('|') {
            assert!(
                v.len() == 4
                    && v.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "line {line_no}: vid {v}"
            );
            for p in &pids {
                assert!(
                    p == "*" || (p.len() == 4 && p.chars().all(|c| c.is_ascii_hexdigit())),
                    "line {line_no}: pid {p}"
                );
                found.insert((subsystem.value.clone(), v.to_string(), p.clone()));
            }
        }
    }
    assert_eq!(gotos, labels, "every GOTO has its LABEL");
    let want: [(&str, &str, &str); 24] = [
        // PicoScope families by product id (the lines naming DAQ_PICOSCOPE_FAMILY).
        ("usb", "0ce9", "1016"),
        ("usb", "0ce9", "1200"),
        ("usb", "0ce9", "1012"),
        ("usb", "0ce9", "1201"),
        ("usb", "0ce9", "1211"),
        ("usb", "0ce9", "1213"),
        ("usb", "0ce9", "1019"),
        ("usb", "0ce9", "1203"),
        ("usb", "0ce9", "1217"),
        ("usb", "0ce9", "1218"),
        ("tty", "1a86", "7523"),
        ("tty", "0403", "6001"),
        ("tty", "10c4", "ea60"),
        ("tty", "2e8a", "*"),
        ("tty", "2341", "*"),
        ("tty", "2a03", "*"),
        ("usb", "0ce9", "*"),
        ("usb", "04b4", "6022"),
        ("usb", "04b4", "602a"),
        ("usb", "04b4", "2020"),
        ("usb", "04b5", "6022"),
        ("usb", "04b5", "602a"),
        ("usb", "1d50", "608e"),
        ("usb", "04b4", "1175"),
    ];
    for (s, v, p) in want {
        assert!(
            found.contains(&(s.to_string(), v.to_string(), p.to_string())),
            "missing {s} {v}:{p}"
        );
    }
    assert_eq!(found.len(), want.len(), "unexpected extra ids: {found:?}");
}

#[test]
fn udev_rule_parser_rejects_malformed_rules() {
    for bad in [
        r#"SUBSYSTEM=="usb" ATTR{idVendor}=="0ce9""#,
        r#"SUBSYSTEM=="usb", ATTR{idVendor}=="0ce9"#,
        r#"SUBSYSTEM=="usb", TAG=+"uaccess""#,
        r#"SUBSYSTEM=="usb", ATTR=="0ce9""#,
        r#"GROUP=="plugdev""#,
        r#"SUBSYSTEM=="usb","#,
    ] {
        assert!(parse_rule(bad).is_err(), "{bad}");
    }
    assert!(parse_rule(r#"SUBSYSTEM=="usb", ATTR{idVendor}=="0ce9", TAG+="uaccess""#).is_ok());
}

#[test]
fn udev_rules_pass_udevadm_verify_where_available() {
    let Ok(out) = std::process::Command::new("udevadm")
        .arg("verify")
        .arg(rules_path())
        .output()
    else {
        eprintln!("udevadm not installed; syntax checked by the parser test only");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Unknown command") || stderr.contains("unknown command") {
        eprintln!("this udevadm has no `verify` (systemd < 254)");
        return;
    }
    assert!(out.status.success(), "udevadm verify: {stderr}");
}

/// The shipped file is what the registered families' own udev lines make.
#[test]
fn udev_rules_file_is_built_from_the_families() {
    let text = std::fs::read_to_string(rules_path()).expect("udev/70-daq-engine.rules exists");
    assert!(
        text == daq_drivers::families::udev_rules(),
        "udev/70-daq-engine.rules differs from the families' udev lines: run\n  \
         cargo run -p daq-drivers --example udev_rules > udev/70-daq-engine.rules"
    );
}
