//! What the whole-run device tests share: a scratch target directory that finds the one run
//! directory a run made and is removed afterwards.

#![allow(dead_code)]

use std::path::PathBuf;

/// A scratch target directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    /// A fresh, empty directory named after `tag` and this test process.
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("daq-devices-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Writes `text` into the file `name` in it; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The one run directory a run made in it.
    pub fn run_dir(&self) -> PathBuf {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.pop().unwrap()
    }
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

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
