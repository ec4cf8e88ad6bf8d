//! The README's function reference names every built-in function and every one of its config
//! keys, so the documentation cannot drift from the program.

#[test]
fn readme_documents_every_function_and_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let registry = daq_engine::worker::Registry::builtin();
    let mut missing = Vec::new();
    for f in registry.all() {
        let s = &f.spec;
        let Some(at) = readme.find(&format!("\n{}  (", s.name)) else {
            missing.push(s.name.to_string());
            continue;
        };
        let rest = &readme[at + 1..];
        let block = &rest[..rest.find("\n\n").unwrap_or(rest.len())];
        for k in s.keys {
            if !block.contains(&format!("    {} ", k.name)) {
                missing.push(format!("{}: {}", s.name, k.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's function reference lacks {missing:?}: paste the output of `daq-engine functions`"
    );
}
