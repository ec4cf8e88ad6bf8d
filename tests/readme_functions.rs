//! The README's function reference names every built-in function and every one of its config
//! keys, so the documentation cannot drift from the program; and the commands that print it
//! (and the others that only print) behave as Unix printers when their reader goes; `bench`
//! refuses what it cannot use.

use std::time::Duration;

mod hdf5_files;

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

/// `daq-engine functions | head`, `check … | less` quit early: the commands that only print
/// end as any Unix printer does (SIGPIPE, which the shell does not report) instead of
/// panicking with "failed printing to stdout" and a backtrace. The pipe's read end is closed
/// before the command starts, so its first write finds no reader.
#[test]
fn printing_commands_end_quietly_when_their_reader_has_gone() {
    use std::os::unix::process::ExitStatusExt;
    let setup = concat!(env!("CARGO_MANIFEST_DIR"), "/setups/demo.yaml");
    let dir = hdf5_files::temp_dir("pipe");
    let file = dir.join("run.h5");
    let w = hdf5_files::writer_flushing_every(&file, "a file to inspect", Duration::from_secs(1));
    w.finish(Default::default()).unwrap();
    let file = file.to_str().unwrap();
    for args in [
        vec!["functions"],
        vec!["check", setup],
        vec!["man"],
        vec!["inspect", file],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_daq-engine"))
            .args(&args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bench … --events` is refused where it would mean nothing, exit 2: 0 events (before,
/// every bench ran and printed rows of zeros as if measured) and a count for the benches
/// that run each case for a set time (before, silently ignored).
#[test]
fn bench_refuses_an_events_count_it_cannot_use() {
    for (args, says) in [
        (["pipeline", "--events", "0"], "--events"),
        (["ring-loaded", "--events", "0"], "--events"),
        (["ring", "--events", "5"], "leave --events out"),
        (["analysis", "--events", "5"], "leave --events out"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_daq-engine"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
