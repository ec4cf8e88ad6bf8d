//! What the whole-run tests of the real binary share: waiting for a run (and failing when it
//! hangs), finding its worker processes, and the accounting invariant over its files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Waits for the run; returns its exit code and its stderr followed by its stdout.
pub fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait for daq-engine");
    let code = out.status.code().unwrap_or(-1);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (code, text)
}

/// Waits for the run at most `limit`; a run still going then is killed and the test fails
/// (a hung run is the defect some tests look for).
pub fn finish_within(mut child: Child, limit: Duration) -> (i32, String) {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = interrupt(&child);
            std::thread::sleep(Duration::from_millis(500));
            let _ = interrupt(&child);
            let (_, text) = finish(child);
            panic!("the run did not end within {limit:?}: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    finish(child)
}

/// Sends the engine `child` SIGINT, as Ctrl-C does: the run drains and ends (a second one
/// aborts it).
pub fn interrupt(child: &Child) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
}

/// Pids of live processes whose command line mentions `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// The pid of the one worker process `worker_process` ("<worker> <index>") of the run.
pub fn the_process(run: &Path, worker_process: &str) -> u32 {
    let needle = format!("{} {worker_process}", run.join("plan.json").display());
    let found = processes_with(&needle);
    assert_eq!(found.len(), 1, "{worker_process}: {found:?}");
    found[0]
}

/// The accounting invariant over summary.json and the last stats line: for every buffer and
/// every reader, produced = delivered + lost (+ pending, 0 once the run ended). Returns the
/// summary.
pub fn books_balance(run: &Path) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let stats = std::fs::read_to_string(run.join("stats.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    let events = summary["events"].as_object().unwrap();
    assert!(!events.is_empty());
    for (buffer, n) in events {
        let produced = n.as_u64().unwrap() + summary["lost"][buffer].as_u64().unwrap();
        assert_eq!(last["buffers"][buffer]["produced"], produced, "{buffer}");
        let readers = summary["readers"][buffer].as_object().unwrap_or_else(|| {
            panic!("summary.json has no reader books for '{buffer}': {summary}")
        });
        assert!(!readers.is_empty(), "{buffer}");
        for (reader, b) in readers {
            let (d, l) = (
                b["delivered"].as_u64().unwrap(),
                b["lost"].as_u64().unwrap(),
            );
            assert_eq!(b["pending"], 0, "{buffer}/{reader}");
            assert_eq!(d + l, produced, "{buffer}/{reader}: {b}");
            let s = &last["buffers"][buffer]["readers"][reader];
            assert_eq!(
                s["delivered"].as_u64().unwrap()
                    + s["lost"].as_u64().unwrap()
                    + s["pending"].as_u64().unwrap(),
                produced,
                "stats {buffer}/{reader}: {s}"
            );
            assert_eq!(
                last["buffers"][buffer]["events_out"][reader],
                s["delivered"]
            );
        }
    }
    summary
}

/// Per file, per group: (rows of `data`, rows of `metadata`).
pub type FileRows = BTreeMap<String, BTreeMap<String, (u64, u64)>>;

/// Rows of `data` and `metadata` of every group of every .h5 file in `run`, read by plain
/// h5py (no SWMR, no h5clear): file → group → (data rows, metadata rows). `None` without a
/// Python with h5py.
pub fn h5py_rows(run: &Path) -> Option<FileRows> {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import h5py"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED the h5py checks: {py} has no h5py (scripts/test.sh makes a venv)");
        return None;
    }
    let script = r#"
import glob, json, os, sys, h5py
out = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.h5"))):
    with h5py.File(path, "r") as f:
        out[os.path.basename(path)] = {
            g: [len(f[g]["data"]), len(f[g]["metadata"])]
            for g in f if isinstance(f[g], h5py.Group) and "data" in f[g]
        }
print(json.dumps(out))
"#;
    let o = run_python(
        &py,
        script,
        &[run.as_os_str()],
        "plain h5py could not read the run's files: ",
    );
    let v: FileRows = serde_json::from_slice(&o.stdout).unwrap();
    Some(v)
}

/// The Python the tests run scripts with: `$DAQ_PYTHON` (scripts/test.sh's venv, with h5py
/// and numpy), else `python3`.
pub fn python() -> String {
    std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs `python -c script` with `args` to its end and returns its output; fails the test
/// unless it exited 0, the message `what` followed by the script's stdout and stderr.
#[track_caller]
pub fn run_python(python: &str, script: &str, args: &[&std::ffi::OsStr], what: &str) -> Output {
    let o = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    succeeded(o, what)
}

/// Runs the checking script of `cmd` to its end and prints what it printed; fails the test
/// unless it exited 0 and said `ok`, the message `what` followed by its stdout and stderr.
#[track_caller]
pub fn script_says(cmd: &mut Command, ok: &str, what: &str) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(ok),
        "{what}{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", stdout.trim());
}

/// A scratch directory for one test's run, removed afterwards (when dropped, also when the
/// test fails).
pub struct Dir(pub std::path::PathBuf);

/// The run directories in `target`: its directories but the `.staging_*` one a starting run
/// makes and then renames to `run_*` (a test that took that one waited on a path that was
/// gone a moment later).
pub fn run_dirs_in(target: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(target)
        .unwrap_or_else(|e| panic!("{}: {e}", target.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// Polls `f` every 20 ms until it holds; fails the test after `timeout`, naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// From the run's stats.jsonl: how many lines, the events that went into `buffer` by the
/// last one, and whether the run was paused then.
pub fn last_stats(run: &Path, buffer: &str) -> (usize, u64, bool) {
    let text = std::fs::read_to_string(run.join("stats.jsonl")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_default();
    (
        lines.len(),
        last["buffers"][buffer]["events_in"].as_u64().unwrap_or(0),
        last["paused"].as_bool().unwrap_or(false),
    )
}

/// Pauses the live `run` (as the dashboard's button does), does `during` once the run says
/// it is paused, holds the pause for three more stats lines — a second or more, in which a
/// source goes on as it does when paused — and resumes the run.
pub fn pause_a_while(run: &Path, during: impl FnOnce()) {
    use daq_engine::engine::{requests, Control};
    requests::request(run, Control::Pause, Duration::from_secs(30)).unwrap();
    wait_until("a paused stats line", Duration::from_secs(60), || {
        last_stats(run, "").2
    });
    during();
    let (lines, _, _) = last_stats(run, "");
    wait_until("three more stats lines", Duration::from_secs(60), || {
        last_stats(run, "").0 >= lines + 3
    });
    requests::request(run, Control::Resume, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("could not resume the run (did it end while paused?): {e:?}"));
}

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("daq-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// The one directory in it: the run directory of a run whose target directory it is.
    pub fn only_dir(&self) -> PathBuf {
        let mut dirs = run_dirs_in(&self.0);
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.pop().unwrap()
    }

    /// The one run directory under runs/.
    pub fn run_dir(&self) -> std::path::PathBuf {
        let mut dirs = run_dirs_in(&self.0.join("runs"));
        assert_eq!(dirs.len(), 1, "expected one run directory: {dirs:?}");
        dirs.pop().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A run that fills a disk: 4 KiB events at 1000 Hz (`simulate.pulses`, paced, seed 1) into
/// `export.hdf5` with `writer_config`, in `target` with `disk_reserve_mb: reserve_mb`.
pub fn disk_filling_setup(target: &Path, reserve_mb: u32, writer_config: &str) -> String {
    format!(
        "target_directory: {}
options: {{disk_reserve_mb: {reserve_mb}}}
Buffers:
  raw:
    slot_count: 64
    data_length: 256
    data_dtype: {{chA: f4, chB: f4, chC: f4, chD: f4}}
Workers:
  source:
    function: simulate.pulses
    sinks: [raw]
    config: {{rate: 1000, realtime: true, seed: 1}}
  writer:
    function: export.hdf5
    sources: [raw]
    config: {{{writer_config}}}
",
        target.display()
    )
}

/// Fills the disk of `path` with a file there, at most `limit` bytes (the small disk's
/// size and more; never more, should the tmpfs not be there), while the run of supervisor
/// `supervisor` with run directory `run` is held still (SIGSTOP, SIGCONT after): the disk
/// goes from roomy to full between two instants of the run.
///
/// Filled while the run went on, the disk passed through "almost full": once in a loaded
/// clean-clone CI run of session 18 and again in session 23 (the fill's last blocks written
/// while a build ran beside the suite), the run's disk watch found the disk almost full and
/// stopped the run, and the exporter's last write fitted into what was left: it never met
/// a full disk, which is what the tests that call this are about.
pub fn fill_with_ballast(path: &Path, limit: usize, supervisor: u32, run: &Path) {
    use nix::sys::signal::{kill, Signal};
    use std::io::Write;
    /// The run's processes, stopped; they go on when this is dropped (also when the test
    /// fails while they are held).
    struct Held(Vec<u32>);
    impl Held {
        fn signal(&self, s: Signal) {
            for &pid in &self.0 {
                let _ = kill(nix::unistd::Pid::from_raw(pid as i32), s);
            }
        }
    }
    impl Drop for Held {
        fn drop(&mut self) {
            self.signal(Signal::SIGCONT);
        }
    }
    let mut pids = processes_with(&run.join("plan.json").display().to_string());
    pids.push(supervisor);
    let held = Held(pids);
    held.signal(Signal::SIGSTOP);
    let stopped = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| matches!(r.trim_start().as_bytes()[0], b'T' | b'Z'))
        })
    };
    wait_until("the run held still", Duration::from_secs(10), || {
        held.0.iter().all(|&p| stopped(p))
    });
    // Nothing writes now: one fallocate takes what is free, then blocks what rounding left.
    let mut f = std::fs::File::create(path).unwrap();
    let free = daq_engine::export::disk::free_bytes(path).unwrap_or(0);
    let want = free.min(limit as u64) as libc::off_t;
    let mut written = 0;
    if want > 0 && nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, want).is_ok() {
        written = want as usize;
    }
    let block = [0u8; 4096];
    while written < limit && f.write_all(&block).is_ok() {
        written += block.len();
    }
    drop(held);
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB at `at` (created); None, with a SKIPPED line, when that
    /// is not allowed (not root).
    pub fn mount(at: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        match nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={mib}m").as_str()),
        ) {
            Ok(()) => Some(SmallDisk(at.to_path_buf())),
            Err(e) => {
                println!(
                    "SKIPPED: cannot mount a {mib} MiB tmpfs at {} ({e}); run as root",
                    at.display()
                );
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("could not unmount {}: {e}", self.0.display());
        }
    }
}

/// The real binary, run in `dir` with `args`, stdin closed and its output piped (read by
/// [`finish`] or [`finish_within`]). A `Command`, so that callers can add to it.
///
/// The engine is killed when the test's thread ends (`PR_SET_PDEATHSIG`; its workers follow
/// it): a test that fails while its run goes on leaves no engine behind. One left by a
/// failed test ran for two hours beside the suite before this.
pub fn engine_in<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_daq-engine"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not a service, even where the tests run under one (CI as a systemd unit): their
        // SIGINT stands for a person's Ctrl-C. A test of the service sets these itself.
        .env_remove("INVOCATION_ID")
        .env_remove("NOTIFY_SOCKET");
    daq_engine::runtime::child_ends_with_parent(&mut cmd, libc::SIGKILL);
    cmd
}

/// The real binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_daq-engine");

/// The process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Its stdout followed by its stderr, as text.
pub fn stdout_and_stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Asserts that the process of `out` exited 0, its stderr the message; returns `out`.
#[track_caller]
pub fn exited_0(out: Output) -> Output {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

/// Asserts that the process of `out` succeeded, the message `what` followed by its stdout
/// and its stderr; returns `out`.
#[track_caller]
pub fn succeeded(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `daq-engine <setup> --simulate --no-tui --quiet --max-events <n> --target-directory
/// <target>`: a whole simulated run that ends after exactly `n` events. A `Command`, so that
/// callers can add to it (`--max-seconds`, the fake's environment).
pub fn simulated(setup: &Path, n: u64, target: &Path) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.arg(setup)
        .args(["--simulate", "--no-tui", "--quiet", "--max-events"])
        .arg(n.to_string())
        .arg("--target-directory")
        .arg(target);
    cmd
}

/// Runs `cmd` to its end: (exit code, -1 for a signal; its stderr).
pub fn code_and_stderr(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run daq-engine");
    (out.status.code().unwrap_or(-1), stderr(&out))
}

/// `daq-engine check <args…> <setup>`, run to its end.
pub fn check(args: &[&str], setup: &Path) -> Output {
    check_command(args, setup).output().unwrap()
}

/// `daq-engine check <setup>` in `dir` (where the setup's relative paths lead), run to its
/// end.
pub fn check_in(dir: &Path, setup: &Path) -> Output {
    check_command(&[], setup).current_dir(dir).output().unwrap()
}

fn check_command(args: &[&str], setup: &Path) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.arg("check").args(args).arg(setup);
    cmd
}

/// A setup shipped in the repository's `setups/`.
pub fn shipped_setup(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("setups")
        .join(name)
}

/// A run directory's summary.json.
pub fn summary(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Events of `buffer` in a run directory's summary.json (the summary the message).
pub fn summary_events(run_dir: &Path, buffer: &str) -> u64 {
    let v = summary(run_dir);
    v["events"][buffer]
        .as_u64()
        .unwrap_or_else(|| panic!("{v}"))
}

/// The HDF5 files (`*.h5`) directly in `dir`.
pub fn h5_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "h5"))
        .collect()
}

/// A command whose process inherits none of the files this test process has open: libhdf5
/// opens files without close-on-exec, and a child started by one test while another test
/// reads a run file would hold that file (and its lock) for as long as it lives.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    daq_engine::export::hdf5::no_inherited_files(&mut cmd);
    cmd
}

/// `daq-engine <args…>` in `dir` (a [`command`]), run to its end: (exit code, -1 for a
/// signal; stderr followed by stdout).
pub fn engine(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = command(EXE).args(args).current_dir(dir).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

/// A fresh, empty directory under the system's temporary one, named after `tag` and this
/// test process (left there for a look after a failure).
pub fn fresh(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daq-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The (first) run directory under `dir/runs`.
pub fn only_run(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// 1-based (line, column) of the value of `key:` on its first line in `text`.
pub fn value_at(text: &str, key: &str) -> (usize, usize) {
    let needle = format!("{key}:");
    for (i, l) in text.lines().enumerate() {
        if let Some(at) = l.find(&needle) {
            if l[..at].trim().is_empty() {
                let after = at + needle.len();
                let skip = l[after..].len() - l[after..].trim_start().len();
                return (i + 1, after + skip + 1);
            }
        }
    }
    panic!("no {key} in\n{text}")
}
