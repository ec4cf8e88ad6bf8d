//! User functions, both ways: a shared library named with `file:` (examples/user-filter) and
//! a user's own binary with a compiled-in function (examples/own_binary.rs). Both run real
//! pipelines and are checked by exact event counts.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn built(rel: &str, how: &str) -> PathBuf {
    let p = target_dir().join("debug").join(rel);
    assert!(
        p.exists(),
        "{} not built: run `{how}` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Writes `setup` as `setup.yaml` into `dir` (made anew) and runs `exe <args…>` there to its
/// end: (exit code, -1 for a signal; stderr).
fn run_in(dir: &Path, setup: &str, exe: &Path, args: &[&str]) -> (i32, String) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("setup.yaml"), setup).unwrap();
    let out = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(exe: &Path, dir: &Path, setup: &str) -> (i32, String, PathBuf) {
    let (code, text) = run_in(dir, setup, exe, &["setup.yaml", "--quiet"]);
    let run_dir = std::fs::read_dir(dir.join("runs"))
        .ok()
        .and_then(|mut d| d.next())
        .map(|e| e.unwrap().path())
        .unwrap_or_default();
    (code, text, run_dir)
}

/// The C maths library: a shared library that is no plugin.
fn libm() -> &'static str {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm")
}

fn sink_events(run_dir: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("bench_sink_0.json")).unwrap())
            .unwrap();
    v["events"].as_u64().unwrap()
}

fn pipeline(filter: &str, n: u64) -> String {
    format!(
        "target_directory: runs
Buffers:
  raw: &b
    slot_count: 32
    data_length: 64
    data_dtype: {{chA: f4}}
  kept: *b
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{n_events: {n}, seed: 7, amplitude: exponential, amplitude_mean: 0.3, noise: 0.0, pretrigger_samples: 10, sample_interval: 4.0e-9}}
  filter:
{filter}
    sources: [raw]
    sinks: [kept]
  sink:
    function: bench.sink
    sources: [kept]
"
    )
}

#[test]
fn a_shared_library_filter_runs_in_the_pipeline() {
    let lib = built("libuser_filter.so", "cargo build -p user-filter");
    let dir = std::env::temp_dir().join(format!("daq-user-lib-{}", std::process::id()));
    let n = 3000;
    let with_level = |level: f64| {
        pipeline(
            &format!(
                "    file: {}\n    function: user.peak_above\n    config: {{channel: chA, level: {level}}}",
                lib.display()
            ),
            n,
        )
    };
    // Every event passes a level below everything, none a level above everything.
    let (code, text, run_dir) = run(Path::new(EXE), &dir, &with_level(-1.0e9));
    assert_eq!(code, 0, "{text}");
    assert_eq!(sink_events(&run_dir), n);
    let (code, text, run_dir) = run(Path::new(EXE), &dir, &with_level(1.0e9));
    assert_eq!(code, 0, "{text}");
    assert_eq!(sink_events(&run_dir), 0);
    // A real level keeps some: exponential heights with mean 0.3 V, so about exp(-1) above 0.3.
    let (code, text, run_dir) = run(Path::new(EXE), &dir, &with_level(0.3));
    assert_eq!(code, 0, "{text}");
    let kept = sink_events(&run_dir);
    assert!(kept > n / 5 && kept < n / 2, "kept {kept} of {n}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("daq-user-bad-{}", std::process::id()));
    let libc = libm();
    let setup = pipeline(
        &format!("    file: {libc}\n    function: user.peak_above\n    config: {{channel: chA, level: 0}}"),
        10,
    );
    let (code, text, _) = run(Path::new(EXE), &dir, &setup);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a daq-engine worker library"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_users_own_binary_runs_its_compiled_in_function() {
    let exe = built("examples/own_binary", "cargo build --examples");
    let dir = std::env::temp_dir().join(format!("daq-user-bin-{}", std::process::id()));
    let n = 1000;
    let setup = pipeline("    function: user.every_nth\n    config: {nth: 3}", n);
    let (code, text, run_dir) = run(&exe, &dir, &setup);
    assert_eq!(code, 0, "{text}");
    // Counters 0..n-1 that are multiples of 3.
    assert_eq!(sink_events(&run_dir), n.div_ceil(3));
    // The stock binary does not know the function: a positioned setup error, exit 2.
    let (code, text, _) = run(Path::new(EXE), &dir, &setup);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("user.every_nth"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `daq-engine check` on the setup in `dir`: (exit code, stderr).
fn check(dir: &Path, setup: &str) -> (i32, String) {
    run_in(dir, setup, Path::new(EXE), &["check", "setup.yaml"])
}

/// issue 12, item 9: `check` loads user libraries as the run would, each in a child process
/// first: a library that is no plugin, lacks the function, or crashes while loading is
/// refused by check (exit 2), and a crashing one cannot take check or the run down.
#[test]
fn check_loads_user_libraries_in_a_child_process() {
    let dir = std::env::temp_dir().join(format!("daq-user-check-{}", std::process::id()));
    let with = |file: &str, function: &str| {
        pipeline(
            &format!("    file: {file}\n    function: {function}\n    config: {{channel: chA, level: 0}}"),
            10,
        )
    };
    // A real plugin and its function: OK.
    let lib = built("libuser_filter.so", "cargo build -p user-filter");
    let (code, text) = check(&dir, &with(&lib.display().to_string(), "user.peak_above"));
    assert_eq!(code, 0, "{text}");
    // The plugin without the function named.
    let (code, text) = check(&dir, &with(&lib.display().to_string(), "user.nope"));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("has no function 'user.nope' (it has: user.peak_above)"),
        "{text}"
    );
    // A library that is no plugin.
    let libm = libm();
    let (code, text) = check(&dir, &with(libm, "user.peak_above"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a daq-engine worker library"), "{text}");
    // A library that crashes while it loads (a constructor that dereferences null).
    let crash_dir = std::env::temp_dir().join(format!("daq-user-crash-{}", std::process::id()));
    std::fs::create_dir_all(&crash_dir).unwrap();
    let c = crash_dir.join("crash.c");
    std::fs::write(
        &c,
        "__attribute__((constructor)) static void boom(void) { *(volatile int *)0 = 1; }\n",
    )
    .unwrap();
    let so = crash_dir.join("libcrash.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .status()
        .expect("cc (gcc) to build a test library");
    assert!(cc.success());
    let setup = with(&so.display().to_string(), "user.peak_above");
    let (code, text) = check(&dir, &setup);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("crashed while loading") && text.contains("SIGSEGV"),
        "{text}"
    );
    let (code, text, run_dir) = run(Path::new(EXE), &dir, &setup);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("crashed while loading"), "{text}");
    assert_eq!(run_dir, PathBuf::new(), "no run directory");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&crash_dir);
}
