//! Files written so that a full disk or a crash never leaves half of one: `summary.json`
//! replaced atomically and synced, result files replaced by a rename, `stats.jsonl` grown by
//! whole lines only. Below every other module but `shm`, `dtype` and `clock`.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// The last component of `path` as text (lossily), empty when it has none (`/`, `..`).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last `n` bytes of the file at `path` (all of it when shorter), reading only those
/// however large the file, and whether it has more before them.
pub fn tail(path: &Path, n: u64) -> Option<(Vec<u8>, bool)> {
    use std::io::{Read, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(n);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.take(n).read_to_end(&mut buf).ok()?;
    Some((buf, start > 0))
}

/// Writes `bytes` to `path` atomically: into `<path>.tmp` in the same directory, synced, then
/// renamed over `path`. On failure `path` is unchanged (or absent) and the temporary file is
/// removed: a reader never sees a partly written or 0-byte file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Removes from `dir` the temporary files of [`write_atomic`] and [`replace`] that a killed
/// writer left (`<name>.tmp` beside a `<name>`: the rewrite was cut short, the file it would
/// have replaced is whole). Call only when nothing writes in `dir` any more. Returns the
/// names removed.
pub fn remove_interrupted_rewrites(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(base) = name.strip_suffix(".tmp") else {
            continue;
        };
        if dir.join(base).is_file() && std::fs::remove_file(&path).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed.sort();
    removed
}

/// True for the errors of a full disk: no space left (ENOSPC) or the quota reached (EDQUOT).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Runs `write` until it succeeds or fails for another reason than a full disk. A disk may be
/// full for a moment only (another program's temporary file): on a full disk `write` is tried
/// again every half second for up to `wait`, as long as `give_up()` says no; `waiting` is
/// called once, at the first full-disk failure, so the caller can say what it waits for.
pub fn retry_while_full(
    wait: std::time::Duration,
    give_up: &dyn Fn() -> bool,
    waiting: &mut dyn FnMut(),
    write: &mut dyn FnMut() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let t0 = std::time::Instant::now();
    let mut said = false;
    loop {
        match write() {
            Err(e) if is_disk_full(&e) && t0.elapsed() < wait && !give_up() => {
                if !said {
                    said = true;
                    waiting();
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// Writes `bytes` to `path` by a rename: into `<path>.tmp` in the same directory, then renamed
/// over `path`, so a reader never sees a half-written file. Not synced (the result files of
/// workers, rewritten often); see [`write_atomic`] for the synced form.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path))
}

/// Appends `line` and a newline to `file` in one write; when that fails (a full disk), the
/// file is cut back to where it was, so it only ever holds whole lines. Returns whether the
/// line was written.
pub fn append_line(file: &mut std::fs::File, line: &str) -> bool {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let Ok(at) = file.stream_position() else {
        return false;
    };
    if file.write_all(&buf).is_ok() {
        return true;
    }
    let _ = file.set_len(at);
    let _ = file.seek(std::io::SeekFrom::Start(at));
    false
}

/// A fresh, empty directory `daq-<tag>-<pid>` in the system's temporary directory, for unit
/// tests (what an earlier run left there is removed first).
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("daq-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let dir = test_dir("files");
        let p = dir.join("summary.json");
        write_atomic(&p, b"{\"a\": 1}").unwrap();
        write_atomic(&p, b"{\"a\": 2}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\": 2}");
        // A directory in the way: the write fails and nothing is left behind.
        let q = dir.join("sub");
        std::fs::create_dir_all(q.join("x")).unwrap();
        assert!(write_atomic(&q, b"x").is_err());
        assert!(!dir.join("sub.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A writer killed in a rewrite leaves `<name>.tmp` beside the whole `<name>`: removed.
    /// A `.tmp` without its file is not one of these and is left alone.
    #[test]
    fn interrupted_rewrites_are_removed_and_nothing_else() {
        let dir = test_dir("rewrites");
        for (name, text) in [
            ("stats.jsonl", "{}\n"),
            ("stats.jsonl.tmp", "{}\n{\"t\""),
            ("oscilloscope_scope.json", "{}"),
            ("oscilloscope_scope.json.tmp", "{"),
            ("mine.tmp", "a user's file"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        assert_eq!(
            remove_interrupted_rewrites(&dir),
            ["oscilloscope_scope.json.tmp", "stats.jsonl.tmp"]
        );
        for kept in ["stats.jsonl", "oscilloscope_scope.json", "mine.tmp"] {
            assert!(dir.join(kept).exists(), "{kept}");
        }
        assert!(remove_interrupted_rewrites(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
