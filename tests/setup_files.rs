//! Setup files end to end: every bad setup under tests/setups/bad gives its message at its
//! position, the good ones resolve to exactly the expected buffers, workers and merged
//! configs, and the mimoCoRB2 reference setups parse with their Python workers listed.

use daq_engine::ring::Policy;
use daq_engine::setup::{graph, Checked, HugePages, Restart, Setup, Severity};
use daq_engine::worker::{Arity, Catalog, FunctionSpec, KeyType, Template};
use serde_json::json;
use std::path::{Path, PathBuf};

mod catalog;
mod runs;
use catalog::{key, spec, ListCatalog};

/// A catalog shaped like the engine's built-ins (the real registry comes from the engine).
const CATALOG: [FunctionSpec; 6] = [
    spec(
        "simulate.pulses",
        Template::Importer,
        (Arity::NONE, Arity::ONE, Arity::NONE),
        &[
            key("n_events", KeyType::Int, false),
            key("rate", KeyType::Float, false),
        ],
    ),
    spec(
        "filter.threshold",
        Template::Filter,
        (Arity::ONE, Arity::SOME, Arity::NONE),
        &[
            key("level", KeyType::Float, true),
            key("channel", KeyType::Str, false),
        ],
    ),
    spec(
        "process.pulses",
        Template::Processor,
        (Arity::SOME, Arity::SOME, Arity::NONE),
        &[key("threshold", KeyType::Float, false)],
    ),
    spec(
        "export.hdf5",
        Template::Exporter,
        (Arity::ONE, Arity::ANY, Arity::NONE),
        &[key("file", KeyType::Str, false)],
    ),
    spec(
        "export.drain",
        Template::Exporter,
        (Arity::ONE, Arity::ANY, Arity::NONE),
        &[],
    ),
    spec(
        "observe.oscilloscope",
        Template::Observer,
        (Arity::NONE, Arity::NONE, Arity::ONE),
        &[
            key("update_interval", KeyType::Float, false),
            key("ylim", KeyType::List, false),
        ],
    ),
];

fn catalog() -> &'static dyn Catalog {
    static LIST: ListCatalog = ListCatalog(&CATALOG);
    &LIST
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/setups")
}

fn check(rel: &str) -> Checked {
    Setup::check_file(&dir().join(rel), catalog(), 2)
}

fn listing(c: &Checked) -> String {
    c.errors
        .iter()
        .chain(&c.warnings)
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// (file, expected fragment of the first error's message or hint, line, column).
const BAD: &[(&str, &str, u64, u64)] = &[
    ("syntax_unclosed", "did not find expected ',' or '}'", 6, 11),
    ("unknown_buffer_key", "did you mean `slot_count`?", 3, 5),
    (
        "slot_count_zero",
        "slot_count must be at least 1 (events in flight)",
        3,
        17,
    ),
    // It said "≥ 0", and 0 is refused too.
    (
        "slot_count_negative",
        "slot_count: expected a whole number ≥ 1, found the number -16",
        3,
        17,
    ),
    ("data_length_zero", "data_length must be at least 1", 4, 18),
    ("dtype_unknown_type", "unknown data type 'f5'", 5, 23),
    ("dtype_no_length", "'S' has no length", 5, 23),
    (
        "sink_missing_buffer",
        "did you mean `raw`? valid buffers: raw, accepted",
        13,
        13,
    ),
    (
        "filter_shape_mismatch",
        "sink 'accepted' holds 32 records",
        17,
        13,
    ),
    (
        "importer_two_sinks",
        "takes exactly 1 buffer in sinks, but 2 are given",
        13,
        5,
    ),
    (
        "user_library_missing",
        "user library 'libmissing.so' not found",
        20,
        11,
    ),
    (
        "unknown_function",
        "did you mean `filter.threshold`?",
        15,
        15,
    ),
    (
        "python_worker",
        "worker 'save': Python file 'my_sink.py' not found",
        20,
        11,
    ),
    (
        "config_missing_required",
        "needs config key 'level' (a number)",
        14,
        3,
    ),
    (
        "config_wrong_type",
        "config key 'level': expected a number, found the text 'high'",
        18,
        21,
    ),
    ("config_unknown_key", "did you mean `level`?", 18, 26),
    (
        "cpu_does_not_exist",
        "core 7 does not exist: this machine has 2 online CPUs",
        13,
        14,
    ),
    (
        "priority_out_of_range",
        "120 is not a SCHED_FIFO priority (1 to 99)",
        13,
        15,
    ),
    (
        "two_writers",
        "written by worker 'trigger' and also by worker 'save'",
        21,
        13,
    ),
    (
        "cycle",
        "the buffers form a cycle: accepted2 → (again) → raw2 → (loop) → accepted2",
        29,
        13,
    ),
    ("unknown_top_level_key", "did you mean `Buffers`?", 1, 1),
    (
        "restart_bad",
        "'always' is not one of never, on-failure",
        13,
        14,
    ),
    ("policy_bad", "did you mean `drop`?", 6, 13),
    (
        "include_missing",
        "cannot read the worker 'trigger', config file 'not_there.yaml'",
        18,
        28,
    ),
    (
        "duplicate_key",
        "`data_length` is given twice in this mapping (first at line 4, column 5)",
        5,
        5,
    ),
    ("tab_indent", "tabs disallowed", 3, 2),
    (
        "max_seconds_negative",
        "options.max_seconds: must be more than 0",
        22,
        24,
    ),
    ("options_unknown_key", "did you mean `max_events`?", 23, 3),
    (
        "slot_count_beyond_memory",
        "the buffers' rings need 8264.00 GiB of memory",
        2,
        3,
    ),
    // The Buffers and Workers sections share their checks (one message shape for both).
    (
        "buffers_not_a_mapping",
        "Buffers: expected a mapping of buffer names to buffer specs, found a list",
        1,
        10,
    ),
    ("workers_empty", "Workers: no worker is declared", 3, 10),
    (
        "worker_name_a_number",
        "a worker name must be a name, found the number 1.5",
        4,
        3,
    ),
    // What the YAML library refuses, in our words (its own named its API and options).
    (
        "second_document",
        "a setup is one YAML document, and this file has a second one starting here (`---`)",
        5,
        1,
    ),
    (
        "alias_to_no_anchor",
        "`*wav`: no anchor `&wav` before it in this file",
        3,
        9,
    ),
    (
        "number_not_finite",
        "`.inf` is infinite: a setup's numbers must be finite",
        4,
        68,
    ),
];

#[test]
fn bad_setups_give_positioned_messages() {
    assert!(BAD.len() >= 15);
    for (name, fragment, line, column) in BAD {
        let path = dir().join(format!("bad/{name}.yaml"));
        let c = Setup::check_file(&path, catalog(), 2);
        let first = c
            .errors
            .first()
            .unwrap_or_else(|| panic!("{name}: no error; warnings:\n{}", listing(&c)));
        let text = first.to_string();
        assert!(
            text.contains(fragment),
            "{name}: expected '{fragment}' in the first error, got:\n{}",
            listing(&c)
        );
        assert_eq!(
            (first.file.as_path(), first.line, first.column),
            (path.as_path(), *line, *column),
            "{name}: position of {text}"
        );
        // Through the entry point, it is a SetupError whose Display reads like a compiler.
        let err = Setup::load(&path, catalog(), 2).unwrap_err();
        let shown = err.to_string();
        let prefix = format!("{}:{line}:{column}: error: ", path.display());
        assert!(shown.contains(&prefix), "{name}: {shown}");
        assert!(shown.ends_with(&format!(
            "setup rejected: {} error{}",
            c.errors.len(),
            if c.errors.len() == 1 { "" } else { "s" }
        )));
    }
}

#[test]
fn an_error_inside_an_included_file_points_into_that_file() {
    let c = check("bad/include_syntax_error.yaml");
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    assert_eq!(c.files.len(), 2);
    let e = &c.errors[0];
    // `bad/../include/…` in the setup: named without the detour (`bad` is a directory).
    assert_eq!(e.file, dir().join("include/broken_config.yaml"));
    assert_eq!((e.line, e.column), (2, 10));
    assert!(e.message.contains("unclosed bracket '['"), "{e}");
}

#[test]
fn every_error_is_collected_and_sorted_by_position() {
    let text = "Buffers:\n  raw: {slot_count: 0, data_length: 0, data_dtype: {a: q9}}\nWorkers:\n  w:\n    function: nothing.here\n    sinks: [nope]\n    priority: 0\n";
    let c = Setup::check_bytes(text.as_bytes(), Path::new("many.yaml"), catalog(), 2);
    let got: Vec<(u64, u64)> = c.errors.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        got,
        vec![(2, 21), (2, 37), (2, 56), (5, 15), (6, 13), (7, 15)],
        "{}",
        listing(&c)
    );
    let hint = c.errors[3].hint.as_deref().unwrap();
    assert!(
        hint.starts_with("valid functions: simulate.pulses"),
        "{hint}"
    );
    assert!(!hint.contains("mimoCoRB2"), "{hint}");
}

#[test]
fn minimal_good_setup_resolves() {
    let (setup, warnings) =
        Setup::load(&dir().join("good/minimal.yaml"), catalog(), 2).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(setup.target_directory, dir().join("good/target"));
    assert_eq!(setup.buffers.len(), 2);
    assert_eq!(setup.workers.len(), 3);
    let t = setup.worker("trigger").unwrap();
    assert_eq!(t.template, Some(Template::Filter));
    assert_eq!(t.config().f64("level").unwrap(), 0.5);
    assert_eq!(setup.root_buffers(), vec!["raw"]);
    assert_eq!(setup.options.stats_interval, 1.0);
    assert_eq!(setup.options.max_events, None);
}

#[test]
fn full_pipeline_resolves_includes_anchors_and_merges() {
    let (setup, warnings) =
        Setup::load(&dir().join("good/pipeline.yaml"), catalog(), 2).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    assert_eq!(setup.target_directory, home.join("daq-runs"));

    // Buffers: an alias copies the anchored spec; a path includes a file.
    let names: Vec<&str> = setup.buffers.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["raw", "accepted", "pulses"]);
    let raw = setup.buffer("raw").unwrap();
    let acc = setup.buffer("accepted").unwrap();
    assert_eq!(
        (raw.slot_count, raw.data_length, raw.policy),
        (256, 512, Policy::Drop)
    );
    assert_eq!(raw.dtype, acc.dtype);
    assert_eq!(
        raw.dtype.numpy_descr(),
        "[('ch0', '<f4'), ('ch1', '<f4'), ('flags', '|u1')]"
    );
    let pulses = setup.buffer("pulses").unwrap();
    assert_eq!((pulses.slot_count, pulses.data_length), (64, 1));
    assert_eq!(pulses.policy, Policy::Block);
    assert_eq!(pulses.dtype.record_size(), 24);

    // base_config = [file, mapping]: the mapping wins; the worker's own config wins over both.
    let src = setup.worker("source").unwrap();
    assert_eq!(
        serde_json::Value::Object(src.config.clone()),
        json!({"rate": 250.0, "n_events": 5000})
    );
    assert_eq!((src.cpu.clone(), src.priority), (vec![1], Some(80)));
    assert_eq!(src.restart, Restart::Never);

    // config = [file, mapping], merged in order over base_config.
    let trig = setup.worker("trigger").unwrap();
    assert_eq!(trig.config().f64("level").unwrap(), 0.25);
    assert_eq!(trig.config().str_or("channel", "").unwrap(), "ch1");
    // base_config keys it does not read are left out of its config.
    assert_eq!(trig.config.len(), 2);
    assert!(trig.config.get("n_events").is_none());
    assert_eq!((trig.processes, trig.restart), (2, Restart::OnFailure));

    // A worker spec from its own file, whose config path is relative to the setup file.
    let save = setup.worker("save").unwrap();
    assert_eq!(save.function, "export.hdf5");
    assert_eq!(save.config().str_or("file", "").unwrap(), "pulses.h5");

    // Merge keys: the template's config, overridden by the worker's own.
    let scope = setup.worker("scope").unwrap();
    let scope2 = setup.worker("scope_accepted").unwrap();
    assert_eq!(scope.function, "observe.oscilloscope");
    assert_eq!(scope.config().f64("update_interval").unwrap(), 0.5);
    assert_eq!(scope2.config().f64("update_interval").unwrap(), 2.0);
    assert_eq!(scope2.observes, ["accepted"]);

    assert_eq!(setup.options.max_events, Some(100_000));
    assert_eq!(setup.options.max_seconds, Some(30.5));
    assert_eq!(setup.options.stats_interval, 2.0);
    assert_eq!(setup.options.huge_pages, HugePages::Off);
}

#[test]
fn resolved_setup_round_trips_through_yaml() {
    let (setup, _) = Setup::load(&dir().join("good/pipeline.yaml"), catalog(), 2).unwrap();
    let yaml = setup.to_yaml();
    assert!(
        yaml.contains("Buffers:") && yaml.contains("Workers:"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("base_config"),
        "configs are merged in: {yaml}"
    );
    let (again, _) =
        Setup::from_str(&yaml, &setup.file, catalog(), 2).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again, setup);
}

#[test]
fn command_line_limits_override_options() {
    let (mut setup, _) = Setup::load(&dir().join("good/pipeline.yaml"), catalog(), 2).unwrap();
    setup.apply_limits(None, Some(5.0)).unwrap();
    assert_eq!(setup.options.max_events, Some(100_000));
    assert_eq!(setup.options.max_seconds, Some(5.0));
    setup.apply_limits(Some(7), None).unwrap();
    assert_eq!(setup.options.max_events, Some(7));
    assert!(setup.apply_limits(Some(0), None).is_err());
    assert!(setup.apply_limits(None, Some(-1.0)).is_err());
    assert!(setup.apply_limits(None, Some(f64::NAN)).is_err());
    assert_eq!(setup.options.max_events, Some(7));
}

#[test]
fn graphs_show_every_buffer_and_worker() {
    let (setup, _) = Setup::load(&dir().join("good/pipeline.yaml"), catalog(), 2).unwrap();
    let text = graph::text(&setup);
    assert!(
        text.starts_with("pipeline: 3 buffers, 6 workers\n"),
        "{text}"
    );
    assert!(text.contains("source (importer simulate.pulses, ×1)\n  ──▶ raw [root] 256 slots × 512 records of {ch0: float32, ch1: float32, flags: uint8}, drop\n        ──▶ trigger (filter filter.threshold, ×2)\n        ┈┈▶ scope (observer observe.oscilloscope, ×1)\n"), "{text}");
    assert!(text.ends_with("save (exporter export.hdf5, ×1) ◀── pulses\nscope (observer observe.oscilloscope, ×1) ◀── raw (observed)\nscope_accepted (observer observe.oscilloscope, ×1) ◀── accepted (observed)\n"), "{text}");
    let dot = graph::dot(&setup);
    assert!(dot.starts_with("digraph pipeline {"));
    assert!(dot.contains("\"buffer:raw\" [shape=box,") && dot.contains("fillcolor"));
    assert!(!dot.contains("\"buffer:accepted\" [shape=box, label=\"accepted\\n256 slots × 512\\n{ch0: float32, ch1: float32, flags: uint8}\\ndrop\", style"));
    assert!(dot.contains("\"worker:trigger\" [shape=ellipse,"));
    assert!(dot.contains("\"buffer:raw\" -> \"worker:scope\" [style=dotted];"));
    assert!(dot.contains("\"worker:source\" -> \"buffer:raw\";"));
    assert_eq!(dot.matches(" -> ").count(), 8);
}

#[test]
fn mimocorb2_ignored_keys_and_templates() {
    let text = "overwrite: true\nosc_template: &osc\n  function: observe.oscilloscope\nBuffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw]}\n  osc:\n    <<: *osc\n    observes: [raw]\nOptions:\n  debug_workers: True\n";
    let (setup, warnings) =
        Setup::from_str(text, Path::new("m.yaml"), catalog(), 2).expect("valid");
    assert_eq!(
        setup.worker("osc").unwrap().function,
        "observe.oscilloscope"
    );
    let w: Vec<String> = warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("m.yaml:1:1: warning: `overwrite:` is ignored"));
    assert!(w[1].starts_with("m.yaml:12:1: warning: `Options:` is a mimoCoRB2 section"));
    // The same template block with no alias using it is an unknown key.
    let unused = text.replace("    <<: *osc\n", "    function: observe.oscilloscope\n");
    let err = Setup::from_str(&unused, Path::new("m.yaml"), catalog(), 2).unwrap_err();
    let first = err.errors().next().unwrap();
    assert_eq!((first.line, first.column), (2, 1));
    assert!(first
        .message
        .contains("unknown top-level key `osc_template`"));
}

/// Readers that do different things are what a broadcast is for: `check` notes it without
/// a warning (every setup in `setups/` has such a buffer). Readers that do the same thing
/// (the case above) would do it twice: that stays a warning.
#[test]
fn different_readers_of_one_buffer_get_a_note_and_alike_ones_a_warning() {
    let text = |b_config: &str| {
        format!(
            "Buffers:\n  raw: {{slot_count: 4, data_length: 1, data_dtype: {{a: i2}}}}\nWorkers:\n  src: {{function: simulate.pulses, sinks: [raw]}}\n  a: {{function: export.hdf5, sources: [raw], config: {{file: one}}}}\n  b: {{function: export.hdf5, sources: [raw], config: {b_config}}}\n  h: {{function: export.drain, sources: [raw]}}\n"
        )
    };
    let severity = |b_config: &str| {
        let (_, warnings) =
            Setup::from_str(&text(b_config), Path::new("t.yaml"), catalog(), 2).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("read by 3 workers (a, b, h)"));
        (warnings[0].severity, warnings[0].to_string())
    };
    let (s, shown) = severity("{file: two}");
    assert_eq!(s, Severity::Note);
    assert!(
        shown.starts_with("t.yaml:2:3: note: buffer 'raw'"),
        "{shown}"
    );
    let (s, shown) = severity("{file: one}");
    assert_eq!(s, Severity::Warning);
    assert!(shown.contains("two of them do the same thing"), "{shown}");
}

#[test]
fn two_reader_workers_get_the_broadcast_warning() {
    let text = "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\n  lonely: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  a: {function: export.drain, sources: [raw]}\n  b: {function: export.drain, sources: [raw]}\n";
    let (_, warnings) = Setup::from_str(text, Path::new("t.yaml"), catalog(), 2).unwrap();
    assert_eq!(warnings.len(), 2);
    assert!(warnings.iter().all(|d| d.severity == Severity::Warning));
    assert_eq!((warnings[0].line, warnings[0].column), (2, 3));
    assert!(warnings[0].message.contains(
        "read by 2 workers (a, b): here each of them gets every event (broadcast); mimoCoRB2 split"
    ));
    assert_eq!((warnings[1].line, warnings[1].column), (3, 3));
    assert!(warnings[1].message.contains("'lonely' has no writer"));
    // The broadcast note has a kind of its own, which a run leaves out without reading text.
    use daq_engine::setup::DiagnosticKind;
    assert_eq!(warnings[0].kind, DiagnosticKind::Broadcast);
    assert_eq!(warnings[1].kind, DiagnosticKind::General);
}

#[test]
fn base_config_keys_a_function_does_not_read_are_not_errors() {
    let text = "base_config: {n_events: 10}\nBuffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw], config: {n_events: 3}}\n";
    let err = Setup::from_str(text, Path::new("b.yaml"), catalog(), 2).unwrap_err();
    let errors: Vec<_> = err.errors().collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!((errors[0].line, errors[0].column), (6, 58));
    assert!(errors[0]
        .message
        .contains("function export.drain has no config key 'n_events'"));
    let fixed = text.replace(", config: {n_events: 3}", "");
    let (setup, _) = Setup::from_str(&fixed, Path::new("b.yaml"), catalog(), 2).unwrap();
    assert_eq!(
        setup.worker("src").unwrap().config.get("n_events"),
        Some(&json!(10))
    );
    assert!(setup.worker("out").unwrap().config.is_empty());
}

#[test]
fn not_utf8_and_empty_files_are_positioned_errors() {
    let c = Setup::check_bytes(
        b"Buffers:\n  r\xffw: {}\n",
        Path::new("x.yaml"),
        catalog(),
        2,
    );
    assert_eq!(c.errors.len(), 1);
    assert_eq!((c.errors[0].line, c.errors[0].column), (2, 4));
    assert!(c.errors[0].message.contains("not UTF-8"));
    let c = Setup::check_bytes(b"", Path::new("e.yaml"), catalog(), 2);
    assert_eq!(c.errors.len(), 1);
    assert!(c.errors[0]
        .message
        .contains("expected a mapping with `Buffers:` and `Workers:`"));
    let c = Setup::check_file(Path::new("/nonexistent/setup.yaml"), catalog(), 2);
    assert!(c.errors[0]
        .message
        .starts_with("cannot read the setup file"));
    // An include that never ends is refused, not read into memory.
    let text = "base_config: /dev/zero\nBuffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw]}\n";
    let c = Setup::check_bytes(text.as_bytes(), Path::new("z.yaml"), catalog(), 2);
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    assert_eq!((c.errors[0].line, c.errors[0].column), (1, 14));
    assert!(
        c.errors[0]
            .message
            .contains("it is a device, not a regular file"),
        "{}",
        c.errors[0]
    );
    // So is a regular file too large for any setup.
    let big = std::env::temp_dir().join(format!("daq-big-include-{}.yaml", std::process::id()));
    std::fs::write(&big, vec![b'#'; (4 << 20) + 1]).unwrap();
    let text = text.replace("/dev/zero", big.to_str().unwrap());
    let c = Setup::check_bytes(text.as_bytes(), Path::new("z.yaml"), catalog(), 2);
    let _ = std::fs::remove_file(&big);
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    assert!(
        c.errors[0].message.contains("larger than 4 MiB"),
        "{}",
        c.errors[0]
    );
}

/// Checks `path` on another thread; None when it has not answered within 20 s (a FIFO
/// used to make the check wait for a writer forever).
fn check_within_20s(path: PathBuf) -> Option<Checked> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Setup::check_file(&path, catalog(), 2));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
}

#[test]
fn a_fifo_as_setup_or_include_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("daq-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("pipe.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The setup itself.
    let c = check_within_20s(fifo.clone()).expect("check of a FIFO setup never returned");
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    let e = &c.errors[0];
    assert_eq!((e.file.as_path(), e.line, e.column), (fifo.as_path(), 1, 1));
    assert!(
        e.message
            .contains("it is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    // An include, named at its position in the setup.
    let setup = dir.join("setup.yaml");
    std::fs::write(
        &setup,
        "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw], config: pipe.yaml}\n  out: {function: export.drain, sources: [raw]}\n",
    )
    .unwrap();
    let c = check_within_20s(setup.clone()).expect("check of a FIFO include never returned");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    let e = &c.errors[0];
    assert_eq!(
        (e.file.as_path(), e.line, e.column),
        (setup.as_path(), 4, 58)
    );
    assert!(e.message.contains("FIFO (named pipe)"), "{e}");
}

/// The mimoCoRB2 reference setups parse; their Python workers are listed by name and the
/// rest of each setup is read.
#[test]
fn mimocorb2_reference_setups_parse_and_list_python_workers() {
    let refdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/setups/mimocorb2");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&refdir)
        .unwrap_or_else(|e| panic!("{}: {e}", refdir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    for f in &files {
        let c = Setup::check_file(f, catalog(), 2);
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let python: Vec<&str> = c.python_workers.iter().map(|p| p.worker.as_str()).collect();
        let expected: &[&str] = match name.as_str() {
            "probe_filter_mask" => &["source", "filter", "sink_a", "sink_b"],
            "probe_two_readers" => &["source", "sink_a", "sink_b"],
            _ => &["source", "sink"],
        };
        assert_eq!(python, expected, "{name}");
        assert!(c
            .python_workers
            .iter()
            .all(|p| p.file == "bench_workers.py"));
        assert_eq!(c.python_workers[0].template, Some(Template::Importer));
        // Python workers run here: the only errors left are mimoCoRB2 built-ins that do not
        // exist here.
        for e in &c.errors {
            assert!(
                e.message.contains("unknown function 'misc.copy'")
                    || e.message
                        .contains("unknown function 'observers.oscilloscope'"),
                "{name}: {e}"
            );
            assert_eq!(e.file, *f);
        }
        assert!(
            !c.report().contains("not runnable"),
            "{name}: {}",
            c.report()
        );
        // The rest is read: buffers, workers, base_config merged.
        assert!(!c.setup.buffers.is_empty());
        assert_eq!(c.setup.workers.len(), c.setup.workers.len());
        let src = c.setup.worker("source").unwrap();
        assert!(src.config.contains_key("n_events"));
        assert_eq!(
            c.setup.target_directory,
            refdir.join(format!("runs/{name}"))
        );
    }
    // A setup of Python workers alone has nothing to complain about (the files are
    // imported by `daq-engine check`, in a child process: tests/python_workers.rs).
    let c = Setup::check_file(&refdir.join("tiny_direct.yaml"), catalog(), 2);
    assert!(c.errors.is_empty(), "{}", c.report());
    assert_eq!(c.python_workers.len(), 2);
    // A mimoCoRB2 built-in is named as such.
    let c = Setup::check_file(&refdir.join("tiny_filter.yaml"), catalog(), 2);
    let copy = c
        .errors
        .iter()
        .find(|e| e.message.contains("'misc.copy'"))
        .unwrap();
    assert!(copy
        .hint
        .as_deref()
        .unwrap()
        .contains("mimoCoRB2's Python built-ins are not available here"));
    // probe_two_readers relies on mimoCoRB2's split: the warning says so.
    let c = Setup::check_file(&refdir.join("probe_two_readers.yaml"), catalog(), 2);
    assert!(c.warnings.iter().any(|w| w.message.contains("broadcast")));
}

#[test]
#[ignore = "prints every diagnostic of every bad setup, for writing the table"]
fn dump_bad_setups() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join("bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let c = Setup::check_file(&f, catalog(), 2);
        println!("== {}\n{}", f.display(), listing(&c));
    }
}

#[test]
#[ignore = "prints the graphs and the resolved YAML of the full pipeline"]
fn dump_pipeline() {
    let (setup, _) = Setup::load(&dir().join("good/pipeline.yaml"), catalog(), 2).unwrap();
    println!(
        "{}\n{}\n{}",
        graph::text(&setup),
        graph::dot(&setup),
        setup.to_yaml()
    );
}

#[test]
fn a_user_library_worker_is_resolved_against_the_setup_dir() {
    let dir = std::env::temp_dir().join(format!("daq-setup-lib-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("lib/libmine.so"), b"").unwrap();
    let text = "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  mine:\n    file: lib/libmine.so\n    function: my_sink\n    sources: [raw]\n    config: {anything: [1, 2]}\n";
    let result = Setup::from_str(text, &dir.join("s.yaml"), catalog(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
    let (setup, _) = result.unwrap();
    let w = setup.worker("mine").unwrap();
    assert_eq!(
        w.file.as_deref(),
        Some(dir.join("lib/libmine.so").as_path())
    );
    assert_eq!(w.template, None);
    assert_eq!(w.config.get("anything"), Some(&json!([1, 2])));
}

/// YAML 1.1 read `n`, `y`, `on`, `off` as booleans; keys and values keep their text here.
#[test]
fn short_words_stay_text() {
    let text = "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw], config: {n: 3}}\n";
    let c = Setup::check_bytes(text.as_bytes(), Path::new("s.yaml"), catalog(), 2);
    assert_eq!(c.errors.len(), 1, "{}", listing(&c));
    assert!(c.errors[0].message.contains("'n'"), "{}", c.errors[0]);
}

#[test]
fn mimocorb2_buffer_overwrite_is_a_note_and_a_typo_still_an_error() {
    let text = "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {a: i2}, overwrite: true}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw]}\nOptions:\n  output_directory: out\n";
    let (_, warnings) = Setup::from_str(text, Path::new("o.yaml"), catalog(), 2).expect("valid");
    let w: Vec<String> = warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("o.yaml:2:61: warning: buffer 'raw': `overwrite:` is ignored"),
        "{w:?}"
    );
    assert!(w[1].starts_with("o.yaml:6:1: warning: `Options:`"), "{w:?}");
    let typo = text.replace("slot_count", "slot_cont");
    let err = Setup::from_str(&typo, Path::new("o.yaml"), catalog(), 2).unwrap_err();
    let first = err
        .errors()
        .find(|d| d.message.contains("unknown key `slot_cont`"))
        .expect("the typo is an error");
    assert_eq!((first.line, first.column), (2, 9));
    assert!(
        first
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `slot_count`"),
        "{:?}",
        first.hint
    );
}

#[test]
fn any_positive_slot_count_is_taken_as_it_is() {
    let text = "Buffers:\n  raw: {slot_count: 500, data_length: 256, data_dtype: {a: i2}}\n  one: {slot_count: 1, data_length: 256, data_dtype: {a: i2}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  mid: {function: misc.copy, sources: [raw], sinks: [one]}\n  out: {function: export.drain, sources: [one]}\n";
    let registry = daq_engine::worker::Registry::builtin();
    let (setup, _) = Setup::from_str(text, Path::new("s.yaml"), &registry, 2).expect("valid");
    assert_eq!(setup.buffer("raw").unwrap().slot_count, 500);
    assert_eq!(setup.buffer("one").unwrap().slot_count, 1);
}

#[test]
fn mimocorb2_builtins_by_their_own_names() {
    let text = "Buffers:\n  raw: {slot_count: 8, data_length: 256, data_dtype: {a: f4}}\n  out: {slot_count: 8, data_length: 256, data_dtype: {a: f4}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  cp: {function: misc.copy, sources: [raw], sinks: [out]}\n  csv:\n    function: exporters.csv\n    sources: [out]\n    config: {filename: pulses, save_interval: 2, bins: {a: [0, 1, 10]}}\n  osc:\n    function: observers.oscilloscope\n    observes: [raw]\n    config: {update_interval: 0.5, ylim: [-1, 1], trigger_level: 0.2}\n  drain: {function: exporters.drain, sources: [raw]}\n";
    let registry = daq_engine::worker::Registry::builtin();
    let (setup, warnings) =
        Setup::from_str(text, Path::new("b.yaml"), &registry, 2).expect("valid");
    let w: Vec<String> = warnings
        .iter()
        .map(|d| d.to_string())
        .filter(|d| !d.contains("broadcast"))
        .collect();
    // ylim and trigger_level are observe.oscilloscope's own keys now (the page draws them).
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("b.yaml:10:50: warning: worker 'csv': config key 'bins' of mimoCoRB2's exporters.csv is ignored"), "{w:?}");
    assert!(w[1].starts_with("b.yaml:12:15: warning: worker 'osc', observers.oscilloscope: no matplotlib window opens"), "{w:?}");
    // The ignored keys are not part of the resolved config; ours are.
    let osc = setup.worker("osc").unwrap();
    assert_eq!(
        osc.config.get("update_interval"),
        Some(&serde_json::json!(0.5))
    );
    assert_eq!(osc.config.get("ylim"), Some(&serde_json::json!([-1, 1])));
    assert!(setup.worker("csv").unwrap().config.get("bins").is_none());
    // A key neither function takes is still an error, with our keys named.
    let typo = text.replace("save_interval: 2", "save_intervall: 2");
    let err = Setup::from_str(&typo, Path::new("b.yaml"), &registry, 2).unwrap_err();
    let first = err.errors().next().unwrap();
    assert_eq!((first.line, first.column), (10, 32));
    assert!(
        first
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `save_interval`"),
        "{:?}",
        first.hint
    );
}

/// A buffer too big for the machine is an error of check, and the functions of its
/// workers are not built: simulate.pulses would allocate one 400 GB event and abort the
/// check (it did, "memory allocation of 400000000000 bytes failed").
#[test]
fn a_buffer_too_big_for_memory_is_refused_without_building_its_functions() {
    let text = "Buffers:\n  raw: {slot_count: 8, data_length: 100000000000, data_dtype: {a: f4}}\nWorkers:\n  src: {function: simulate.pulses, sinks: [raw]}\n  out: {function: export.drain, sources: [raw]}\n";
    let registry = daq_engine::worker::Registry::builtin();
    let c = Setup::check_bytes(text.as_bytes(), Path::new("big.yaml"), &registry, 2);
    assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
    assert!(
        c.errors[0].message.contains("the buffers' rings need")
            && c.errors[0].message.contains("available (MemAvailable)"),
        "{:?}",
        c.errors
    );
    assert_eq!((c.errors[0].line, c.errors[0].column), (2, 3));
}

/// The run options with a lower bound: each out-of-range value is its own positioned error
/// naming the option and its bound, and values in range are taken.
#[test]
fn run_options_below_their_bound_are_positioned_errors() {
    let text = |options: &str| {
        format!(
            "Buffers:\n  raw: {{slot_count: 4, data_length: 1, data_dtype: {{a: i2}}}}\nWorkers:\n  src: {{function: simulate.pulses, sinks: [raw]}}\n  out: {{function: export.drain, sources: [raw]}}\noptions: {options}\n"
        )
    };
    let bad = text("{stats_interval: 0.001, drain_stall_seconds: 0.5, disk_reserve_mb: -1}");
    let c = Setup::check_bytes(bad.as_bytes(), Path::new("o.yaml"), catalog(), 2);
    let errors: Vec<String> = c.errors.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errors,
        [
            "o.yaml:6:27: error: options.stats_interval: must be at least 0.01 seconds",
            "o.yaml:6:55: error: options.drain_stall_seconds: must be at least 1 second (the \
             drain is looked at once a second)",
            "o.yaml:6:77: error: options.disk_reserve_mb: must be 0 or more (MB kept free on the \
             run's disk)",
        ],
        "{}",
        listing(&c)
    );
    let good = text("{stats_interval: 0.5, drain_stall_seconds: 60, disk_reserve_mb: 0}");
    let (setup, _) = Setup::from_str(&good, Path::new("o.yaml"), catalog(), 2).expect("valid");
    assert_eq!(
        (
            setup.options.stats_interval,
            setup.options.drain_stall_seconds,
            setup.options.disk_reserve_mb
        ),
        (0.5, 60.0, 0.0)
    );
    let (default, _) = Setup::from_str(&text("{}"), Path::new("o.yaml"), catalog(), 2).unwrap();
    assert_eq!(default.options.drain_stall_seconds, 300.0);
    assert_eq!(default.options.worker_stall_seconds, 300.0);
    // The worker stall takes 0 for never, or at least 3 s.
    for (value, error) in [("2.9", true), ("-1", true), ("0", false), ("3", false)] {
        let c = Setup::check_bytes(
            text(&format!("{{worker_stall_seconds: {value}}}")).as_bytes(),
            Path::new("o.yaml"),
            catalog(),
            2,
        );
        let errors: Vec<String> = c.errors.iter().map(|d| d.to_string()).collect();
        let expected: &[&str] = if error {
            &[
                "o.yaml:6:33: error: options.worker_stall_seconds: must be at least 3 seconds \
                   (the watch looks once a second), or 0 for never",
            ]
        } else {
            &[]
        };
        assert_eq!(errors, expected, "{value}: {}", listing(&c));
    }
}

/// A time key with a value no clock can wait (10^300 s, minutes) is refused by `check` at its
/// line, exit 2, as any other bad value; before, `check` panicked on `rotate_minutes`
/// converting it, and passed the others, whose worker then panicked at the run's start.
#[test]
fn times_longer_than_a_clock_holds_are_refused_by_check() {
    let demo = std::fs::read_to_string(runs::shipped_setup("demo.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("daq-long-times-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to, key) in [
        (
            "flush_interval: 1.0}",
            "flush_interval: 1.0e300}",
            "flush_interval",
        ),
        (
            "flush_interval: 1.0}",
            "rotate_minutes: 1.0e300}",
            "rotate_minutes",
        ),
        (
            "update_interval: 0.5,",
            "update_interval: 1.0e300,",
            "update_interval",
        ),
        (
            "width: [0.0, 2.0e-7, 100]",
            "width: [0.0, 2.0e-7, 100]\n      update_interval: 1.0e300",
            "update_interval",
        ),
        (
            "function: export.csv\n",
            "function: export.csv\n    config: {save_interval: 1.0e300}\n",
            "save_interval",
        ),
        (
            "function: export.csv\n",
            "function: export.kafka\n    config: {status_interval: 1.0e300}\n",
            "status_interval",
        ),
        (
            "function: export.csv\n",
            "function: export.kafka\n    config: {drain_seconds: 1.0e300}\n",
            "drain_seconds",
        ),
    ] {
        assert!(demo.contains(from), "{from}");
        let setup = dir.join("long.yaml");
        std::fs::write(&setup, demo.replacen(from, to, 1)).unwrap();
        let out = runs::check(&[], &setup);
        let text = runs::stdout_and_stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{key}: {text}");
        let line = demo
            .replacen(from, to, 1)
            .lines()
            .position(|l| l.contains("e300"))
            .unwrap()
            + 1;
        assert!(
            text.contains(&format!("long.yaml:{line}:")) && text.contains(key),
            "{key}: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two exporters that would write one file (both named after their buffer) are refused by
/// `check` at the second one's function. Before, it said OK: two `export.hdf5` ended the
/// run failed (the second took the first's live file for one a crashed process left), and
/// two `export.csv` or `data.export` kept one exporter's events while the books said both
/// were written. `filename: raw.h5` (`raw.csv`) names that file: before, the extension was
/// added again (the run wrote `raw.h5.h5`, without a word from check) and check said OK.
#[test]
fn two_writers_of_one_file_are_refused_by_check() {
    let dir = std::env::temp_dir().join(format!("daq-one-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (function, file, hint, config) in [
        ("export.hdf5", "raw.h5", "its own `filename`", ""),
        ("export.csv", "raw.csv", "its own `filename`", ""),
        ("data.export", "raw.mimo", "keep one of them", ""),
        (
            "export.hdf5",
            "raw.h5",
            "",
            "    config: {filename: raw.h5}\n",
        ),
        (
            "export.csv",
            "raw.csv",
            "",
            "    config: {filename: raw.csv}\n",
        ),
    ] {
        let text = refused_by_check(
            &dir.join("two.yaml"),
            &format!(
                "Buffers:
  raw: {{slot_count: 16, data_length: 1, data_dtype: {{x: float64}}}}
Workers:
  source:
    function: bench.source
    sinks: [raw]
  first:
    function: {function}
    sources: [raw]
  second:
    function: {function}
    sources: [raw]
{config}"
            ),
        );
        assert!(
            text.contains(&format!(
                "two.yaml:11:15: error: worker 'second' ({function}) would write {file}, as \
                 worker 'first' does"
            )) && text.contains(hint),
            "{function}: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes setup `text` to `setup` and checks it: refused (exit 2), what check said.
fn refused_by_check(setup: &Path, text: &str) -> String {
    std::fs::write(setup, text).unwrap();
    let out = runs::check(&[], setup);
    let said = runs::stdout_and_stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    said
}

/// A file named by the setup can be one another function names after its worker: an
/// `export.hdf5` with `filename: histograms_h` wrote `histograms_h.h5`, which the
/// `export.histogram` worker `h` then wrote over at the end (every waveform gone while the
/// books said delivered); an `export.csv` with `filename: histogram_h_height` lost its rows
/// to `h`'s CSV of the field `height`. `check` refuses both, and an `export.hdf5` with
/// `filename: histograms` beside an `export.histogram` worker `r1`: started again, it would
/// go on in `histograms_r1.h5`.
#[test]
fn a_file_named_as_another_worker_names_its_own_is_refused_by_check() {
    let dir = std::env::temp_dir().join(format!("daq-worker-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let numbers = "(it names its files histograms.h5, histograms_NNNN.h5 when rotating, \
                   histograms_rN.h5 and histograms_rN_NNNN.h5 when started again)";
    for (function, filename, h, file) in [
        (
            "export.hdf5",
            "histograms_h",
            "h",
            "histograms_h.h5".to_string(),
        ),
        (
            "export.csv",
            "histogram_h_height",
            "h",
            "histogram_h_height.csv".to_string(),
        ),
        (
            "export.hdf5",
            "histograms",
            "r1",
            format!("histograms_r1.h5 {numbers}"),
        ),
    ] {
        let text = refused_by_check(
            &dir.join("clash.yaml"),
            &format!(
                "Buffers:
  raw: {{slot_count: 16, data_length: 1, data_dtype: {{height: float64}}}}
Workers:
  source:
    function: bench.source
    sinks: [raw]
  {h}:
    function: export.histogram
    sources: [raw]
    config: {{bins: {{height: [0, 1, 10]}}}}
  w:
    function: {function}
    sources: [raw]
    config: {{filename: {filename}}}
"
            ),
        );
        assert!(
            text.contains(&format!(
                "clash.yaml:12:15: error: worker 'w' ({function}) would write {file}, which \
                 worker '{h}' (export.histogram) writes: each would overwrite the other's"
            )) && text.contains("give worker 'w' its own `filename`"),
            "{function}: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An `export.hdf5` writer's files are its first, `<stem>.h5`, and those it numbers after it:
/// `<stem>_NNNN.h5` when it rotates, `<stem>_rN.h5` and `<stem>_rN_NNNN.h5` when it is started
/// again. A file another exporter names as one of them is refused by `check`, at the second
/// worker's function, naming both workers and how the first names its files. Before, `check`
/// said OK, and a rotating writer of `raw` took the `raw_0001.h5` of a writer named
/// `raw_0001` for its own earlier file: the run ended failed, `attribute 'paused_seconds':
/// unable to create attribute: attribute already exists`.
#[test]
fn a_file_another_hdf5_writer_numbers_after_its_first_is_refused_by_check() {
    let dir = std::env::temp_dir().join(format!("daq-numbered-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = |first: (&str, &str), second: (&str, &str)| {
        format!(
            "Buffers:
  raw:  {{slot_count: 16, data_length: 8, data_dtype: {{x: float32}}}}
  raw2: {{slot_count: 16, data_length: 8, data_dtype: {{x: float32}}}}
Workers:
  src:  {{function: bench.source, sinks: [raw], config: {{n_events: 50}}}}
  cp:   {{function: misc.copy, sources: [raw], sinks: [raw2]}}
  {}:
    function: export.hdf5
    sources: [raw]
    {}
  {}:
    function: export.hdf5
    sources: [raw2]
    {}
  csvb: {{function: export.csv, sources: [raw], config: {{filename: raw_hist}}}}
",
            first.0, first.1, second.0, second.1
        )
    };
    let numbers = "raw.h5, raw_NNNN.h5 when rotating, raw_rN.h5 and raw_rN_NNNN.h5 when \
                   started again";
    // What check says when `h5b` is named as a file the writer `h5a` of `raw` numbers.
    let numbered_by_h5a = |file: &str| {
        format!(
            "clash.yaml:12:15: error: worker 'h5b' (export.hdf5) would write {file}, which \
             worker 'h5a' (export.hdf5) writes too (it names its files {numbers}): each would \
             take the other's files for its own"
        )
    };
    for (first, second, message) in [
        // The tester's setup: a rotating writer, and one named as its first numbered file.
        (
            ("h5a", "config: {rotate_mb: 1}"),
            ("h5b", "config: {filename: raw_0001}"),
            numbered_by_h5a("raw_0001.h5"),
        ),
        // Without rotation: started again, the writer of `raw` goes on in `raw_r1.h5`.
        (
            ("h5a", "config: {}"),
            ("h5b", "config: {filename: raw_r1}"),
            numbered_by_h5a("raw_r1.h5"),
        ),
        // The other way round: the numbering writer comes second.
        (
            ("h5b", "config: {filename: raw_0001}"),
            ("h5a", "config: {filename: raw}"),
            format!(
                "clash.yaml:12:15: error: worker 'h5a' (export.hdf5) would write raw_0001.h5 \
                 (it names its files {numbers}), which worker 'h5b' (export.hdf5) writes too: \
                 each would take the other's files for its own"
            ),
        ),
        // A process of a worker with two numbers the files after its own, `raw_p1.h5`.
        (
            ("h5a", "number_of_processes: 2"),
            ("h5b", "config: {filename: raw_p1_r2_0003}"),
            "clash.yaml:12:15: error: worker 'h5b' (export.hdf5) would write \
             raw_p1_r2_0003.h5, which worker 'h5a' (export.hdf5) writes too (it names its \
             files raw_p1.h5, raw_p1_NNNN.h5 when rotating, raw_p1_rN.h5 and \
             raw_p1_rN_NNNN.h5 when started again)"
                .to_string(),
        ),
    ] {
        let path = dir.join("clash.yaml");
        let text = refused_by_check(&path, &setup(first, second));
        assert!(
            text.contains(&message) && text.contains("give one of them its own `filename`"),
            "{first:?} {second:?}: {text}"
        );
        // The run is refused as `check` is, before it makes a run directory.
        let target = dir.join("runs");
        let (code, said) = runs::code_and_stderr(&mut runs::simulated(&path, 50, &target));
        assert_eq!(code, 2, "{first:?} {second:?}: {said}");
        assert!(
            !target.exists() || runs::run_dirs_in(&target).is_empty(),
            "{said}"
        );
    }
    // Files no writer of `raw` ever numbers are another writer's own: not refused.
    for (first, second) in [
        ("config: {rotate_mb: 1}", "config: {filename: raw_big}"),
        ("config: {rotate_mb: 1}", "config: {filename: raw_01}"),
        ("config: {}", "config: {filename: raw_r0}"),
        ("config: {}", "config: {filename: raw_r1_1}"),
        ("number_of_processes: 2", "config: {filename: raw_p2}"),
    ] {
        let path = dir.join("fine.yaml");
        std::fs::write(&path, setup(("h5a", first), ("h5b", second))).unwrap();
        let out = runs::check(&[], &path);
        let said = runs::stdout_and_stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{first} {second}: {said}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A target directory a run could not make its run directory in is refused by `check` at
/// the `target_directory:` value, like any other error in the file (it was said with the
/// setup's name only, no line and column); with no `target_directory:`, at the file's start.
#[test]
fn a_target_directory_under_a_file_is_refused_at_its_line_and_column() {
    let dir = std::env::temp_dir().join(format!("daq-target-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("afile"), "not a directory\n").unwrap();
    std::fs::write(dir.join("target"), "not a directory either\n").unwrap();
    let body = "Buffers:
  raw: {slot_count: 4, data_length: 8, data_dtype: {ch0: float32}}
Workers:
  source: {function: bench.source, sinks: [raw]}
  sink: {function: bench.sink, sources: [raw]}
";
    for (head, line, column, target, file) in [
        ("target_directory: afile/sub\n", 1, 19, "afile/sub", "afile"),
        ("# runs go to the default\n", 1, 1, "target", "target"),
    ] {
        let setup = dir.join("s.yaml");
        std::fs::write(&setup, format!("{head}{body}")).unwrap();
        let out = runs::check(&[], &setup);
        let text = runs::stdout_and_stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let expected = format!(
            "{}:{line}:{column}: error: target_directory {}: a run cannot make its run \
             directory there: {} is a file, not a directory",
            setup.display(),
            dir.join(target).display(),
            dir.join(file).display()
        );
        assert!(text.contains(&expected), "expected {expected} in:\n{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` knows where the target directory and each worker's `file:` and `function:` were
/// written, in the setup or in the file a worker spec was included from.
#[test]
fn the_places_check_points_at_are_where_the_values_were_written() {
    let pipeline = dir().join("good/pipeline.yaml");
    let c = Setup::check_file(&pipeline, catalog(), 2);
    let at = |p: Option<&daq_engine::setup::Place>| p.map(|p| (p.file.clone(), p.line, p.column));
    assert_eq!(
        at(Some(&c.places.target_directory)),
        Some((pipeline.clone(), 2, 19))
    );
    assert_eq!(
        at(c.places.function_of("source")),
        Some((pipeline.clone(), 23, 15))
    );
    assert_eq!(
        at(c.places.function_of("save")),
        Some((dir().join("good/workers/save.yaml"), 1, 11))
    );
    assert_eq!(at(c.places.file_of("source")), None);
    let python = dir().join("bad/python_worker.yaml");
    let c = Setup::check_file(&python, catalog(), 2);
    assert_eq!(at(c.places.file_of("save")), Some((python, 20, 11)));
}

/// `options.stats_interval: 1e30` was taken: stats.jsonl then held its first and last lines
/// only, and the dashboard, the page and the service's status stood still for the whole run.
#[test]
fn a_stats_interval_past_an_hour_is_refused() {
    let text = |interval: &str| {
        format!(
            "Buffers:\n  raw: {{slot_count: 4, data_length: 1, data_dtype: {{a: i2}}}}\nWorkers:\n  src: {{function: simulate.pulses, sinks: [raw]}}\n  out: {{function: export.drain, sources: [raw]}}\noptions: {{stats_interval: {interval}}}\n"
        )
    };
    let c = Setup::check_bytes(text("1e30").as_bytes(), Path::new("o.yaml"), catalog(), 2);
    let errors: Vec<String> = c.errors.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errors,
        [
            "o.yaml:6:27: error: options.stats_interval: must be at most 3600 seconds (an hour): \
          the dashboard, the page and the service's status are only as fresh as the last stats \
          line"
        ],
        "{}",
        listing(&c)
    );
    let (setup, _) = Setup::from_str(&text("3600"), Path::new("o.yaml"), catalog(), 2).unwrap();
    assert_eq!(setup.options.stats_interval, 3600.0);
}
