//! `daq-engine migrate SETUP`: writes a ported copy of a mimoCoRB2 setup next to it and says,
//! line by line, what changed and why ([`crate::setup::migrate`]); then checks the copy.

use super::exit;
use crate::setup::{self, Setup};
use crate::worker::Registry;
use std::path::{Path, PathBuf};

/// The ported file's default name: `NAME_daq-engine.yaml` beside `NAME.yaml`.
pub fn default_output(setup: &Path) -> PathBuf {
    let stem = setup
        .file_stem()
        .map_or_else(|| "setup".into(), |s| s.to_string_lossy());
    setup.with_file_name(format!("{stem}_daq-engine.yaml"))
}

/// Runs the command; returns the exit code (0: the port runs here or nothing needed
/// porting, 2: the setup or the port still has errors, or the output exists).
pub fn migrate(path: &Path, output: Option<&Path>, registry: &Registry) -> i32 {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("daq-engine: cannot read {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
    };
    let checked = Setup::check_bytes(text.as_bytes(), path, registry, setup::online_cpus());
    let port = setup::migrate::migrate(&text, &checked, registry);
    let name = path.display();
    for c in &port.changes {
        let mark = if c.changed { "changed" } else { "note" };
        println!("{name}:{}: {mark}: {}\n  = why: {}", c.line, c.what, c.why);
    }
    if !port.changed() {
        let mut errors: Vec<String> = checked.errors.iter().map(|e| e.to_string()).collect();
        if errors.is_empty() {
            // What check refuses beyond the file, as for a port below: "runs here" means
            // what check will say.
            let found = super::check::beyond_the_setup(&checked.setup, registry);
            errors.extend(found.iter().map(|e| format!("{name}: {e}")));
        }
        if errors.is_empty() {
            println!(
                "{name}: runs here as it is; nothing to port (`daq-engine check` shows the notes)"
            );
            return exit::OK;
        }
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!(
            "{name}: nothing migrate can port; {} error(s) to fix by hand",
            errors.len()
        );
        return exit::BAD_INPUT;
    }
    let out = output.map_or_else(|| default_output(path), Path::to_path_buf);
    if out.exists() {
        eprintln!(
            "daq-engine: {} exists; remove it or name another file with --output",
            out.display()
        );
        return exit::BAD_INPUT;
    }
    if let Err(e) = std::fs::write(&out, &port.text) {
        eprintln!("daq-engine: cannot write {}: {e}", out.display());
        return exit::FAILED;
    }
    let after = Setup::check_bytes(port.text.as_bytes(), &out, registry, setup::online_cpus());
    println!("wrote {}", out.display());
    let mut errors: Vec<String> = after.errors.iter().map(|e| e.to_string()).collect();
    if errors.is_empty() {
        // As `check` does next (its user libraries and Python workers loaded in probe
        // processes, its target directory), so that "OK" means what `check` will say.
        let found = super::check::beyond_the_setup(&after.setup, registry);
        errors.extend(found.iter().map(|e| format!("{}: {e}", out.display())));
    }
    if errors.is_empty() {
        println!("{}: OK for `daq-engine check`", out.display());
        exit::OK
    } else {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!(
            "{}: {} error(s) left to fix by hand",
            out.display(),
            errors.len()
        );
        exit::BAD_INPUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two alike exporters of a buffer that take one process each: in mimoCoRB2 they shared
    /// its events; made one worker of two processes, check would refuse the port. They stay
    /// apart (each writes every event here, the second into a file of its own), and migrate
    /// says why.
    #[test]
    fn alike_one_process_exporters_stay_apart_and_the_port_checks() {
        let dir = crate::fsio::test_dir("migrate");
        let setup = dir.join("alike_tables.yaml");
        let text = include_str!("../../tests/setups/mimocorb2_builtins/alike_tables.yaml");
        std::fs::write(&setup, text).unwrap();
        let registry = Registry::builtin();
        let code = migrate(&setup, None, &registry);
        let port = std::fs::read_to_string(default_output(&setup)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(code, exit::OK, "{port}");
        // The drains became one worker of two processes; the tables are both still there.
        assert!(!port.contains("sink_b"), "{port}");
        assert!(port.contains("number_of_processes: 2"), "{port}");
        assert!(
            port.contains("table_a:") && port.contains("table_b:"),
            "{port}"
        );
        // Both would write raw.csv, each over the other's events (check refuses that now):
        // the second has a file of its own.
        assert!(port.contains("config: {filename: table_b}"), "{port}");

        let checked = Setup::check_bytes(text.as_bytes(), &setup, &registry, 2);
        let changes = crate::setup::migrate::migrate(text, &checked, &registry).changes;
        let note = changes
            .iter()
            .find(|c| c.what.contains("'table_b'"))
            .expect("a note on table_b");
        assert!(!note.changed, "{note:?}");
        assert_eq!(note.line, 14, "{note:?}");
        assert!(
            note.why.contains("exporters.csv takes one process"),
            "{note:?}"
        );
    }

    /// Ports `text` written as `name` in a fresh directory `tag` beside `others` (name,
    /// text); the exit code, the port (empty when none was written) and whether it checks.
    fn port_of(tag: &str, name: &str, text: &str, others: &[(&str, &str)]) -> (i32, String) {
        let dir = crate::fsio::test_dir(tag);
        for (n, t) in others {
            std::fs::write(dir.join(n), t).unwrap();
        }
        let setup = dir.join(name);
        std::fs::write(&setup, text).unwrap();
        let code = migrate(&setup, None, &Registry::builtin());
        let port = std::fs::read_to_string(default_output(&setup)).unwrap_or_default();
        std::fs::remove_dir_all(&dir).unwrap();
        (code, port)
    }

    const TWO_BUFFERS: &str = "Buffers:
  raw: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
  other: {slot_count: 16, data_length: 64, data_dtype: {chA: float32}}
Workers:
  gen:
    function: simulate.pulses
    sinks: [raw]
    config: {n_events: 20, pretrigger_samples: 20}
  gen2:
    function: simulate.pulses
    sinks: [other]
    config: {n_events: 20, pretrigger_samples: 20}
";

    /// An alike reader whose anchor a later worker copies (`<<: *s`) stays: removed, it took
    /// the anchor with it and the port did not parse (`*s: no anchor &s before it`, exit 2).
    #[test]
    fn an_alike_reader_whose_anchor_is_used_stays_and_the_port_checks() {
        let text = format!(
            "{TWO_BUFFERS}  sink_a:
    function: export.drain
    sources: [raw]
  sink_b: &s
    function: export.drain
    sources: [raw]
  sink_c:
    <<: *s
    sources: [other]
"
        );
        let (code, port) = port_of("migrate-anchor", "mig.yaml", &text, &[]);
        assert_eq!(code, exit::OK, "{port}");
        assert!(port.is_empty() || port.contains("sink_b: &s"), "{port}");

        // Beside a third alike reader with no anchor, that one is merged all the same.
        let three = text.replace(
            "  sink_c:",
            "  sink_d:\n    function: export.drain\n    sources: [raw]\n  sink_c:",
        );
        let (code, port) = port_of("migrate-anchor3", "mig.yaml", &three, &[]);
        assert_eq!(code, exit::OK, "{port}");
        assert!(
            port.contains("sink_b: &s") && port.contains("<<: *s"),
            "{port}"
        );
        assert!(!port.contains("sink_d"), "{port}");
        assert!(port.contains("number_of_processes: 2"), "{port}");

        // The `Options:` block likewise, when an alias copies from it.
        let options = format!(
            "Options: {{output_directory: &d out}}
target_directory: *d
{TWO_BUFFERS}  sink: {{function: export.drain, sources: [raw]}}
  sink2: {{function: export.drain, sources: [other]}}
"
        );
        let (code, port) = port_of("migrate-anchor-options", "opt.yaml", &options, &[]);
        assert_eq!(code, exit::OK, "{port}");
        assert!(port.is_empty() || port.contains("&d"), "{port}");
    }

    /// Alike readers given as the path of one worker file (`sink_a: sinkw.yaml`) become one
    /// worker of two processes, as check's hint says migrate does: before, migrate said
    /// "runs here as it is; nothing to port".
    #[test]
    fn alike_readers_given_as_a_file_become_one_worker() {
        let text = format!("{TWO_BUFFERS}  sink_a: sinkw.yaml\n  sink_b: sinkw.yaml\n");
        let worker = "# the sink\nfunction: export.drain\nsources: [raw]\n";
        let (code, port) = port_of("migrate-files", "m3.yaml", &text, &[("sinkw.yaml", worker)]);
        assert_eq!(code, exit::OK, "{port}");
        assert!(!port.contains("sink_b"), "{port}");
        assert!(port.contains("number_of_processes: 2"), "{port}");
        assert!(port.contains("# the sink"), "{port}");
    }
}
