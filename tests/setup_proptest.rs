//! The setup parser never panics: random bytes, and random cuts, byte flips and insertions
//! in a good setup, always give either a setup or errors that each name a file, a line ≥ 1
//! and a column ≥ 1.

use daq_engine::setup::Setup;
use daq_engine::worker::{Arity, Template};
use proptest::prelude::*;
use std::path::Path;

mod catalog;
use catalog::{spec, ListCatalog};

/// The two functions the setups here use.
static TEST_CATALOG: ListCatalog = ListCatalog(&[
    spec(
        "simulate.pulses",
        Template::Importer,
        (Arity::NONE, Arity::ONE, Arity::NONE),
        &[],
    ),
    spec(
        "export.drain",
        Template::Exporter,
        (Arity::ONE, Arity::ANY, Arity::NONE),
        &[],
    ),
]);

const GOOD: &str = "target_directory: out\nbase_config: {n: 1}\nBuffers:\n  raw: &w\n    slot_count: 8\n    data_length: 4\n    data_dtype: {ch0: f4, ch1: int16}\n    policy: drop\n  copy: *w\nWorkers:\n  src:\n    function: simulate.pulses\n    sinks: [raw]\n    cpu: [0]\n    priority: 10\n  out:\n    function: export.drain\n    sources: [raw]\n    sinks: [copy]\n  end: {function: export.drain, sources: [copy]}\noptions: {max_events: 10, huge_pages: auto}\n";

/// A setup written the mimoCoRB2 way, with everything `migrate` ports (Options, overwrite in
/// block and flow style, alike readers of one buffer in block and flow style).
const MIMO: &str = "Options: {output_directory: o, debug_workers: true}\nBuffers:\n  raw: &w\n    slot_count: 8\n    data_length: 4\n    data_dtype: {ch0: f4}\n    overwrite: true\n  copy: {overwrite: false, slot_count: 8, data_length: 4, data_dtype: {ch0: f4}}\nWorkers:\n  src:\n    function: simulate.pulses\n    sinks: [raw]\n  a:\n    function: export.drain\n    sources: [raw]\n  b: {function: export.drain, sources: [raw]}\n  c:\n    function: export.drain\n    sources: [raw]\n    sinks: [copy]\n  d: {sources: [copy], function: export.drain}\n";

/// Checks one input: no panic, and every diagnostic positioned in a named file; `migrate` on
/// it does not panic either, and its port checks without panicking.
fn positioned(bytes: &[u8]) -> Result<(), TestCaseError> {
    let c = Setup::check_bytes(bytes, Path::new("p.yaml"), &TEST_CATALOG, 2);
    for d in c.errors.iter().chain(&c.warnings) {
        prop_assert!(d.line >= 1 && d.column >= 1, "{d}");
        prop_assert!(!d.file.as_os_str().is_empty(), "{d}");
        prop_assert!(!d.message.is_empty(), "{d}");
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let port = daq_engine::setup::migrate::migrate(text, &c, &TEST_CATALOG);
        Setup::check_bytes(port.text.as_bytes(), Path::new("p.yaml"), &TEST_CATALOG, 2);
        prop_assert_eq!(port.changed(), port.text != text);
    }
    Ok(())
}

#[test]
fn the_mimocorb2_way_setup_is_ported_to_a_valid_one() {
    let c = Setup::check_bytes(MIMO.as_bytes(), Path::new("p.yaml"), &TEST_CATALOG, 2);
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let port = daq_engine::setup::migrate::migrate(MIMO, &c, &TEST_CATALOG);
    let (setup, warnings) = Setup::from_str(&port.text, Path::new("p.yaml"), &TEST_CATALOG, 2)
        .unwrap_or_else(|e| panic!("{e}\n{}", port.text));
    // `c` passes the events on, so it is not like `a`: the two stay apart and the
    // broadcast note stays (migrate listed it as left alone).
    assert_eq!(warnings.len(), 1, "{warnings:?}\n{}", port.text);
    assert!(warnings[0].message.contains("(a, c)"), "{warnings:?}");
    assert!(port
        .changes
        .iter()
        .any(|c| !c.changed && c.what.contains("'c'")));
    let names: Vec<(&str, usize)> = setup
        .workers
        .iter()
        .map(|w| (w.name.as_str(), w.processes))
        .collect();
    assert_eq!(
        names,
        [("src", 1), ("a", 2), ("c", 1), ("d", 1)],
        "{}",
        port.text
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    Cut(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0..GOOD.len();
    prop_oneof![
        at.clone().prop_map(Mutation::Cut),
        (at.clone(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            at.clone(),
            prop::collection::vec(
                prop::sample::select(b"{}[]:,&*!|>-#'\"\t\n ~<?%@`\\0aZ\xff".to_vec()),
                1..6
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (at, 1..20usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Cut(i) => text.truncate((*i).min(text.len())),
        Mutation::Flip(i, b) => {
            if let Some(x) = text.get_mut(*i) {
                *x = *b;
            }
        }
        Mutation::Insert(i, v) => {
            let i = (*i).min(text.len());
            text.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = (*i).min(text.len());
            let j = (i + n).min(text.len());
            text.drain(i..j);
        }
    }
}

/// `text` with `ms` applied, in order.
fn mutated(text: &str, ms: &[Mutation]) -> Vec<u8> {
    let mut text = text.as_bytes().to_vec();
    for m in ms {
        apply(&mut text, m);
    }
    text
}

#[test]
fn the_unmutated_setup_is_valid() {
    let (setup, warnings) =
        Setup::from_str(GOOD, Path::new("p.yaml"), &TEST_CATALOG, 2).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(setup.buffers.len(), 2);
}

#[test]
fn alias_bombs_are_refused_with_a_position() {
    // Each level doubles: 2^40 nodes if expanded naively.
    let mut text = String::from("a0: &a0 [x, x]\n");
    for i in 1..40 {
        text.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    let c = Setup::check_bytes(text.as_bytes(), Path::new("bomb.yaml"), &TEST_CATALOG, 2);
    assert_eq!(c.errors.len(), 1);
    let e = &c.errors[0];
    assert!(e.line >= 1 && e.column >= 1);
    assert!(e.message.contains("more than 50000 values"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        positioned(&bytes)?;
    }

    #[test]
    fn mutated_setups_never_panic(ms in prop::collection::vec(mutation(), 1..4)) {
        let text = mutated(GOOD, &ms);
        positioned(&text)?;
        // A mutation that still parses into a runnable setup must resolve to sane values.
        if let Ok(text) = std::str::from_utf8(&text) {
            if let Ok((setup, _)) = Setup::from_str(text, Path::new("p.yaml"), &TEST_CATALOG, 2) {
                for b in &setup.buffers {
                    prop_assert!((1..=1 << 30).contains(&b.slot_count));
                    prop_assert!(b.data_length >= 1);
                }
            }
        }
    }

    #[test]
    fn mutated_mimocorb2_setups_never_panic_in_migrate(ms in prop::collection::vec(mutation(), 1..4)) {
        let text = mutated(MIMO, &ms);
        positioned(&text)?;
    }

    #[test]
    fn interleaved_setups_never_panic(cut_a in 0..GOOD.len(), cut_b in 0..GOOD.len()) {
        // Two copies spliced at random points: duplicated keys, broken nesting.
        let mut text = GOOD.as_bytes()[..cut_a].to_vec();
        text.extend_from_slice(&GOOD.as_bytes()[cut_b..]);
        positioned(&text)?;
    }
}
