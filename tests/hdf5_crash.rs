//! Crash safety of run files, for real: a writer process killed with SIGKILL leaves a file
//! that opens and holds every event flushed before the kill; a reader in another process
//! (h5py when available, else this crate in SWMR-read mode) reads the file while it grows;
//! a full disk (a 2 MiB tmpfs) gives `ExportError::DiskFull` and leaves the flushed events
//! readable.
//!
//! The child processes are this test binary re-run with an environment variable that
//! selects the role (`DAQ_HDF5_ROLE`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

mod hdf5_files;
mod runs;
use hdf5_files::{h5dump_clean, temp_dir};
use runs::SmallDisk;

use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::export::hdf5::{
    no_inherited_files, recover, BufferHandle, BufferOptions, Compression, RunFileWriter, RunStats,
    WriterOptions,
};
use daq_engine::export::{inspect, read_buffer, ExportError};

const DATA_LENGTH: usize = 1024;

fn dtype() -> Dtype {
    Dtype::parse([("ch0", "f4")]).unwrap()
}

/// Deterministic event bytes (same formula as the Python reader uses).
fn event_bytes(counter: i64) -> Vec<u8> {
    hdf5_files::event_bytes_of_len(DATA_LENGTH * 4, counter)
}

fn meta(counter: i64) -> Metadata {
    Metadata {
        counter,
        timestamp: 1_700_000_000.0 + counter as f64,
        deadtime: 0.0,
    }
}

/// A run file at `path` with one buffer `raw` (the events of [`event_bytes`], 64 KiB chunks).
fn raw_writer(
    path: &Path,
    flush_interval: Duration,
    compression: Compression,
) -> (RunFileWriter, BufferHandle) {
    let mut w = hdf5_files::writer_flushing_every(path, "crash test", flush_interval);
    let b = w
        .add_buffer(
            "raw",
            &dtype(),
            DATA_LENGTH,
            BufferOptions {
                compression,
                chunk_bytes: 64 * 1024,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    (w, b)
}

/// The tests here run one at a time: each starts processes and opens files that libhdf5
/// locks, and a CI run once saw `recover` refused (EAGAIN) while another test's processes
/// were running. Serial, they cannot meet.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_role(role: &str, test: &str, arg: &Path) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // The other tests' open HDF5 files (and their locks) stay out of this child.
    no_inherited_files(&mut cmd);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("DAQ_HDF5_ROLE", role)
        .env("DAQ_HDF5_ARG", arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// In a child started by [`spawn_role`]: runs `part` on the child's path if the child is
/// for `role` (a child for another role has nothing to do in this test). Whether this
/// process is such a child, which then returns from the test.
fn child_plays(role: &str, part: impl FnOnce(&Path)) -> bool {
    let Ok(asked) = std::env::var("DAQ_HDF5_ROLE") else {
        return false;
    };
    if asked == role {
        part(Path::new(&std::env::var("DAQ_HDF5_ARG").unwrap()));
    }
    true
}

/// A writer child of a kill test and what the parent keeps while it runs.
struct WriterChild {
    /// One test at a time (see [`serial`]), for as long as this lives.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    dir: PathBuf,
    /// The file the child writes.
    path: PathBuf,
    child: Child,
    out: BufReader<ChildStdout>,
}

/// Test `test`'s kill test with the child role `role` (whose part is `part`): in the parent,
/// one test at a time, a fresh directory `tag` and the child writing `run.h5` there; `None`
/// in a child (its part done), which then returns from the test.
fn writer_child(
    test: &str,
    role: &str,
    part: impl FnOnce(&Path),
    tag: &str,
) -> Option<WriterChild> {
    if child_plays(role, part) {
        return None;
    }
    let one_at_a_time = serial();
    let dir = temp_dir(tag);
    let path = dir.join("run.h5");
    let mut child = spawn_role(role, test, &path);
    let out = BufReader::new(child.stdout.take().unwrap());
    Some(WriterChild {
        _one_at_a_time: one_at_a_time,
        dir,
        path,
        child,
        out,
    })
}

/// The next line the child printed that starts with `prefix` (test-harness chatter skipped).
fn next_line(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child ended before printing '{prefix}'");
        // The child's first line follows libtest's "test <name> ... " on the same line.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_string();
        }
    }
}

/// Asserts the events in `path` are counters 0..m exactly once (rows never written carry the
/// fill value -1), with their exact bytes, and m >= `at_least`. Returns m.
fn check_events(path: &Path, at_least: usize) -> usize {
    let got = read_buffer(path, "raw").unwrap();
    let rows = got.events.min(got.metadata.len());
    let mut seen = 0usize;
    for (k, m) in got.metadata.iter().take(rows).enumerate() {
        if m.counter < 0 {
            continue;
        }
        assert_eq!(
            m.counter, seen as i64,
            "row {k}: counters must be 0.. in order, once"
        );
        let ev = &got.data[k * DATA_LENGTH * 4..(k + 1) * DATA_LENGTH * 4];
        assert!(
            ev == event_bytes(m.counter).as_slice(),
            "row {k} (counter {}): data differ",
            m.counter
        );
        seen += 1;
    }
    assert!(
        seen >= at_least,
        "{seen} events in the file, {at_least} were flushed"
    );
    seen
}

/// Child role "killed-writer": appends 64 events (4 chunks, compressed by the writer's
/// threads), then events with a flush every 10 (the growing chunk stored raw) reporting each,
/// then 7 more without flushing and waits to be killed.
fn killed_writer(path: &Path) {
    let (w, b) = raw_writer(
        path,
        Duration::from_secs(3600),
        Compression::Deflate { level: 1 },
    );
    write_until_killed(w, b, 64, 23, 10);
}

/// Appends `first` events, then `flushes` times `per_flush` events and a flush (printing
/// "flushed N"), then 7 more without flushing; prints "ready" and waits to be killed.
fn write_until_killed(
    mut w: RunFileWriter,
    b: BufferHandle,
    first: usize,
    flushes: usize,
    per_flush: usize,
) {
    let mut c = 0i64;
    for _ in 0..first {
        w.append(b, &event_bytes(c), &meta(c)).unwrap();
        c += 1;
    }
    for _ in 0..flushes {
        for _ in 0..per_flush {
            w.append(b, &event_bytes(c), &meta(c)).unwrap();
            c += 1;
        }
        w.flush().unwrap();
        println!("flushed {c}");
    }
    for _ in 0..7 {
        w.append(b, &event_bytes(c), &meta(c)).unwrap();
        c += 1;
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    unreachable!("the parent kills this process");
}

#[test]
fn kill_9_leaves_a_readable_file_with_every_flushed_event() {
    let Some(mut w) = writer_child(
        "kill_9_leaves_a_readable_file_with_every_flushed_event",
        "killed-writer",
        killed_writer,
        "kill9",
    ) else {
        return;
    };
    let mut flushed = 0usize;
    loop {
        let mut line = String::new();
        assert!(w.out.read_line(&mut line).unwrap() > 0, "writer died early");
        if let Some(at) = line.find("flushed ") {
            flushed = line[at + 8..].trim().parse().unwrap();
        }
        if line.trim().ends_with("ready") {
            break;
        }
    }
    assert_eq!(flushed, 294);
    // Child::kill sends SIGKILL on Unix: no destructor, no atexit, no HDF5 close.
    w.child.kill().unwrap();
    let status = w.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));

    let kept = check_events(&w.path, flushed);
    assert!(kept <= 301);
    let text = inspect(&w.path).unwrap();
    assert!(
        text.contains("still open for writing, or its writer stopped"),
        "{text}"
    );
    assert!(text.contains("@closed_cleanly = 0"), "{text}");
    // HDF5 readers other than SWMR ones refuse the file until the writer's flags are
    // cleared; `recover` does that (like `h5clear -s`) and changes no event.
    recover(&w.path).unwrap();
    assert_eq!(check_events(&w.path, flushed), kept);
    let text = inspect(&w.path).unwrap();
    assert!(!text.contains("still open for writing"), "{text}");
    // Both kinds of chunk were in the file the writer left: deflated ones (filter mask 0)
    // and raw ones a flush stored (mask 3, both filters skipped).
    let masks = hdf5_files::chunk_filter_masks(&w.path);
    assert!(masks.contains(&0) && masks.contains(&3), "{masks:?}");
    h5dump_clean(&w.path);
    println!("after kill -9: {kept} events readable, {flushed} were flushed");
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// A run file cut short after a crash (a power cut before its tail reached the disk, a
/// copy that stopped): `inspect` and `read_buffer` answer (events or an error naming the
/// file), never hang. libhdf5 retries a SWMR read whose checksum fails, sleeping twice as
/// long each time; at its default of 100 tries a metadata block that is not there (read as
/// zeros) kept `daq-engine inspect` asleep for hours.
#[test]
fn a_killed_writers_file_cut_short_gives_an_answer_not_a_hang() {
    let Some(mut w) = writer_child(
        "a_killed_writers_file_cut_short_gives_an_answer_not_a_hang",
        "killed-writer",
        killed_writer,
        "cut",
    ) else {
        return;
    };
    next_line(&mut w.out, "ready");
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    let whole = std::fs::read(&w.path).unwrap();
    let mut cuts: Vec<usize> = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
        .iter()
        .map(|k| k * 1024)
        .collect();
    cuts.push(whole.len() / 2);
    for cut in cuts {
        let path = w.dir.join(format!("cut_{cut}.h5"));
        std::fs::write(&path, &whole[..cut]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let inspected = inspect(&p).map(drop);
            let read = read_buffer(&p, "raw").map(drop);
            tx.send((inspected, read)).ok();
        });
        // Not a time limit on the answer (it comes in well under a second): a hang here
        // would otherwise hold the test for hours.
        let (inspected, read) = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{}: no answer in 120 s", path.display()));
        for e in [inspected.err(), read.err()].into_iter().flatten() {
            assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        }
    }
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// Child role "slow-killed-writer": a compressed run slower than a chunk per flush, with the
/// default chunks (1 MiB, sized by the writer at its first flush): 15 flushes 90 events
/// (369 kB) apart, then 7 more events; waits to be killed.
fn slow_killed_writer(path: &Path) {
    let mut w = hdf5_files::writer_flushing_every(path, "crash test", Duration::from_secs(3600));
    let b = w
        .add_buffer("raw", &dtype(), DATA_LENGTH, BufferOptions::default())
        .unwrap();
    write_until_killed(w, b, 0, 15, 90);
}

/// Issue 17: a slow compressed run (less than a chunk between flushes), whose chunks the
/// writer sizes at its first flush, keeps every flushed event through a `kill -9`, and its
/// chunks are mostly deflated (before, a slow run's chunks were all stored raw).
#[test]
fn kill_9_of_a_slow_compressed_run_keeps_every_flushed_event() {
    let Some(mut w) = writer_child(
        "kill_9_of_a_slow_compressed_run_keeps_every_flushed_event",
        "slow-killed-writer",
        slow_killed_writer,
        "kill9-slow",
    ) else {
        return;
    };
    while !next_line(&mut w.out, "").ends_with("ready") {}
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    recover(&w.path).unwrap();
    let kept = check_events(&w.path, 1350);
    assert!(kept <= 1357);
    let masks = hdf5_files::chunk_filter_masks(&w.path);
    let raw = masks.iter().filter(|&&m| m == 3).count();
    let deflated = masks.iter().filter(|&&m| m == 0).count();
    // The chunk each flush found growing is raw, the rest deflated.
    assert!((1..=16).contains(&raw) && deflated >= 3 * raw, "{masks:?}");
    h5dump_clean(&w.path);
    println!("slow run after kill -9: {kept} events, chunks {deflated} deflated, {raw} raw");
    std::fs::remove_dir_all(&w.dir).unwrap();
}

/// Reads targets from stdin; for each, polls the SWMR file until it holds that many events,
/// checking counters and bytes at every poll, then prints "saw N".
const PY_READER: &str = r#"
import sys, time, h5py, numpy as np
path = sys.argv[1]
f = h5py.File(path, "r", libver="latest", swmr=True)
data, meta = f["raw/data"], f["raw/metadata"]
assert data.dtype.names == ("ch0",) and data.dtype["ch0"] == np.dtype("<f4"), data.dtype
assert meta.dtype.names == ("counter", "timestamp", "deadtime"), meta.dtype
i = np.arange(4096, dtype=np.int64)
polls = 0
for line in sys.stdin:
    target = int(line)
    deadline = time.time() + 20
    while True:
        data.refresh(); meta.refresh(); polls += 1
        n = min(data.shape[0], meta.shape[0])
        c = meta["counter"][:n]
        assert (c == np.arange(n)).all(), c
        raw = data[:n].tobytes()
        want = b"".join((((i * 31 + k * 7 + (i >> 8)) & 0xFF).astype(np.uint8)).tobytes() for k in range(n))
        assert raw == want, "data differ"
        if n >= target:
            break
        assert time.time() < deadline, "file stopped growing at %d" % n
        time.sleep(0.005)
    print("saw", n, flush=True)
print("polls", polls, flush=True)
"#;

/// Child role "reader": the same protocol as PY_READER with this crate (SWMR read).
fn crate_reader(path: &Path) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let target: usize = line.unwrap().trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = check_events(path, 0);
            if n >= target {
                println!("saw {n}");
                std::io::stdout().flush().unwrap();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "file stopped growing at {n}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn reader_in_another_process_follows_the_growing_file() {
    if child_plays("reader", crate_reader) {
        return;
    }
    let _one_at_a_time = serial();
    let dir = temp_dir("swmr-read");
    let path = dir.join("run.h5");
    let (mut w, b) = raw_writer(
        &path,
        WriterOptions::default().flush_interval,
        Compression::Deflate { level: 1 },
    );
    w.flush().unwrap();
    let (mut child, who) = match daq_engine::export::bench::h5py_python() {
        Ok(py) => (
            Command::new(py)
                .args(["-c", PY_READER])
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
            "h5py",
        ),
        Err(why) => {
            println!("h5py reader not available ({why}); reading with this crate in SWMR mode");
            (
                spawn_role(
                    "reader",
                    "reader_in_another_process_follows_the_growing_file",
                    &path,
                ),
                "daq_engine",
            )
        }
    };
    let mut to_child: ChildStdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut c = 0i64;
    // Grow the file in steps that end mid-chunk; the reader must see each step whole.
    for step in [5i64, 16, 33, 50, 81] {
        while c < step {
            w.append(b, &event_bytes(c), &meta(c)).unwrap();
            c += 1;
        }
        w.flush().unwrap();
        writeln!(to_child, "{step}").unwrap();
        let saw: i64 = next_line(&mut out, "saw").parse().unwrap();
        assert_eq!(
            saw, step,
            "{who} reader saw {saw} events after a flush of {step}"
        );
    }
    drop(to_child);
    assert!(child.wait().unwrap().success(), "{who} reader failed");
    w.finish(RunStats::default()).unwrap();
    assert_eq!(check_events(&path, 81), 81);
    h5dump_clean(&path);
    println!("{who} reader followed the file through 5 flushes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_disk_is_a_typed_error_and_flushed_events_stay_readable() {
    if std::env::var("DAQ_HDF5_ROLE").is_ok() {
        return;
    }
    let _one_at_a_time = serial();
    let dir = temp_dir("diskfull");
    let mnt = dir.join("mnt");
    let Some(disk) = SmallDisk::mount(&mnt, 2) else {
        return;
    };
    let path = mnt.join("run.h5");
    let (mut w, b) = raw_writer(&path, Duration::from_secs(3600), Compression::None);
    let mut flushed = 0u64;
    let mut err = None;
    for c in 0..2000i64 {
        let r = w.append(b, &event_bytes(c), &meta(c)).and_then(|_| {
            if c % 16 == 15 {
                w.flush()
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) if c % 16 == 15 => flushed = c as u64 + 1,
            Ok(()) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("2000 events of 4 KiB cannot fit a 2 MiB disk");
    println!("error: {err}");
    let safe = match &err {
        ExportError::DiskFull {
            path: p,
            events_safe,
            ..
        } => {
            assert_eq!(p, &path);
            assert!(*events_safe >= flushed, "{events_safe} < {flushed}");
            *events_safe
        }
        other => panic!("expected DiskFull, got {other}"),
    };
    // Without any recovery: the file opens for every reader, `data` and `metadata` have
    // the same length, and that length is what the error and `events_written` say.
    {
        let f = hdf5_metno::File::open(&path).expect("plain open after the failure");
        let data = f.dataset("raw/data").unwrap().shape()[0] as u64;
        let metadata = f.dataset("raw/metadata").unwrap().shape()[0] as u64;
        let written: u64 = f.attr("events_written").unwrap().read_scalar().unwrap();
        assert_eq!(
            (data, metadata, written),
            (safe, safe, safe),
            "data rows, metadata rows, events_written"
        );
    }
    assert!(err.to_string().contains("disk full writing"));
    assert!(matches!(
        w.append(b, &event_bytes(0), &meta(0)),
        Err(ExportError::Stopped { .. })
    ));
    drop(w);
    assert!(
        flushed >= 16 * 10,
        "only {flushed} events fit before the disk was full"
    );
    let kept = check_events(&path, flushed as usize);
    assert_eq!(kept as u64, safe);
    println!("disk full after {flushed} flushed events; {kept} readable");
    inspect(&path).unwrap();
    recover(&path).unwrap();
    assert_eq!(check_events(&path, flushed as usize), kept);
    h5dump_clean(&path);
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}
