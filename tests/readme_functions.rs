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

/// The reference is exactly what `daq-engine functions` prints: the keys' types, defaults and
/// docs come from the functions' key declarations, so a changed default cannot leave the
/// README behind.
#[test]
fn readme_reference_is_the_output_of_daq_engine_functions() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daq-engine"))
        .arg("functions")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let start = readme
        .find("## Function reference")
        .expect("README has a Function reference section");
    let block = &readme[start..];
    let block = &block[block.find("```text\n").unwrap() + 8..];
    let block = &block[..block.find("```").unwrap()];
    assert!(
        block == printed,
        "README's function reference differs from `daq-engine functions`: paste its output \
         between the ```text fences"
    );
}
