//! Shared-memory files that rings live in: where they go, which pages back them, and how
//! they are mapped.
//!
//! One file per ring, created by the engine and attached by path from any process. Pages are
//! chosen in this order, and the choice is reported ([`Backing`]):
//! 1. a hugetlbfs mount with enough free huge pages (explicit 2 MiB pages);
//! 2. a tmpfs mounted with `huge=advise|always|within_size` (transparent huge pages for shared
//!    memory, asked for with `madvise`); when root, the engine mounts its own under its state
//!    directory and unmounts it at the end;
//! 3. `/dev/shm` with normal pages.
//!
//! Every mapping is pre-faulted (`MAP_POPULATE`) and locked (`mlock`) before a run starts, so
//! no page fault or swap-in happens while data flows; where locking is refused the mapping
//! still works and [`ShmFile::locked`] says so. Files are removed when their creator drops
//! them. This module never interprets the bytes it maps.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The pages behind a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Explicit huge pages from a hugetlbfs mount, of this many bytes each.
    HugeTlb {
        /// Huge page size in bytes.
        page_size: usize,
    },
    /// A tmpfs with transparent huge pages enabled for it (`huge=` mount option).
    TmpfsHuge,
    /// Normal 4 KiB pages in `/dev/shm`.
    Normal,
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::HugeTlb { page_size } => {
                write!(f, "hugetlbfs ({} KiB pages)", page_size / 1024)
            }
            Backing::TmpfsHuge => f.write_str("tmpfs with transparent huge pages"),
            Backing::Normal => f.write_str("normal pages (/dev/shm)"),
        }
    }
}

/// Which pages rings may use: the setup's `options.huge_pages`, the plan's `huge_pages` and
/// what [`places`] is asked for (one setting, from the setup file to the ring files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Try explicit huge pages, then transparent ones, then normal pages.
    #[default]
    Auto,
    /// Normal pages only.
    Off,
}

impl HugePages {
    /// The setup-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            HugePages::Auto => "auto",
            HugePages::Off => "off",
        }
    }
}

impl serde::Serialize for HugePages {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for HugePages {
    /// `"auto"` or `"off"`; `true` and `false` as the plans of earlier versions wrote it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Name(String),
            Flag(bool),
        }
        match Written::deserialize(d)? {
            Written::Flag(true) => Ok(HugePages::Auto),
            Written::Flag(false) => Ok(HugePages::Off),
            Written::Name(n) if n == "auto" => Ok(HugePages::Auto),
            Written::Name(n) if n == "off" => Ok(HugePages::Off),
            Written::Name(n) => Err(serde::de::Error::custom(format!(
                "huge_pages '{n}': use auto or off"
            ))),
        }
    }
}

/// Errors creating or opening a shared-memory file.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A file of that name exists already.
    #[error("{path}: exists already")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file does not exist.
    #[error("{path}: no such ring (is the engine running, and is the name right?)")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// Any other failure, with what was being done.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> ShmError + 'a {
    move |source| ShmError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// As [`io_err`], but an error of `kind` (the one the caller looks out for) is `expected`
/// of the path.
fn open_err<'a>(
    path: &'a Path,
    what: &'static str,
    kind: io::ErrorKind,
    expected: fn(PathBuf) -> ShmError,
) -> impl FnOnce(io::Error) -> ShmError + 'a {
    move |e| {
        if e.kind() == kind {
            expected(path.to_path_buf())
        } else {
            io_err(path, what)(e)
        }
    }
}

/// A directory ring files can be created in, with the pages it gives.
#[derive(Debug)]
pub struct ShmPlace {
    /// The directory.
    pub dir: PathBuf,
    /// Its pages.
    pub backing: Backing,
    /// We mounted it and unmount it on drop.
    mounted_by_us: bool,
}

impl Drop for ShmPlace {
    fn drop(&mut self) {
        if self.mounted_by_us {
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// One line of /proc/mounts: (mount point, fs type, options).
fn mounts() -> Vec<(PathBuf, String, String)> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let _dev = it.next()?;
            let dir = it.next()?.replace("\\040", " ");
            let ty = it.next()?.to_string();
            let opts = it.next()?.to_string();
            Some((PathBuf::from(dir), ty, opts))
        })
        .collect()
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1024),
        'm' | 'M' => (&s[..s.len() - 1], 1024 * 1024),
        'g' | 'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

/// Free huge pages of `page_size` bytes in the system pool.
pub fn free_huge_pages(page_size: usize) -> usize {
    let p = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
        page_size / 1024
    );
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn writable_dir(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Unmounts the huge-page tmpfs mounts (`huge-<pid>`) under `state` whose engine process is
/// gone: a supervisor killed with SIGKILL cannot unmount its own.
fn remove_stale_mounts(state: &Path, mounts: &[(PathBuf, String, String)]) {
    for (dir, ty, _) in mounts {
        if ty != "tmpfs" || dir.parent() != Some(state) {
            continue;
        }
        let pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("huge-"))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id()
                && !pid_alive(pid)
                && nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_ok()
            {
                let _ = std::fs::remove_dir(dir);
                tracing::warn!(
                    "removed the huge-page mount {} left by a run that was killed (pid {pid})",
                    dir.display()
                );
            }
        }
    }
}

/// The places to create ring files in, best first. `state_dir` is where the engine may mount
/// its own huge-page tmpfs when it runs as root (it must exist or be creatable).
pub fn places(huge: HugePages, state_dir: Option<&Path>) -> Vec<ShmPlace> {
    let mut out = Vec::new();
    if huge == HugePages::Auto {
        if let Some(state) = state_dir.filter(|_| nix::unistd::geteuid().is_root()) {
            remove_stale_mounts(state, &mounts());
        }
        let all = mounts();
        for (dir, ty, opts) in &all {
            if ty == "hugetlbfs" && writable_dir(dir) {
                let page_size = opts
                    .split(',')
                    .find_map(|o| o.strip_prefix("pagesize=").and_then(parse_size))
                    .unwrap_or(2 * 1024 * 1024);
                out.push(ShmPlace {
                    dir: dir.clone(),
                    backing: Backing::HugeTlb { page_size },
                    mounted_by_us: false,
                });
            }
        }
        let huge_tmpfs = |opts: &str| {
            opts.split(',')
                .any(|o| matches!(o, "huge=advise" | "huge=always" | "huge=within_size"))
        };
        // Another engine's own mount (`huge-<pid>` under the state directory) is never
        // borrowed: it is unmounted when that engine ends, taking our rings with it.
        let engines_own = |dir: &Path| state_dir.is_some_and(|s| dir.parent() == Some(s));
        let mut have_tmpfs = false;
        for (dir, ty, opts) in &all {
            if ty == "tmpfs" && huge_tmpfs(opts) && writable_dir(dir) && !engines_own(dir) {
                have_tmpfs = true;
                out.push(ShmPlace {
                    dir: dir.clone(),
                    backing: Backing::TmpfsHuge,
                    mounted_by_us: false,
                });
            }
        }
        if !have_tmpfs && nix::unistd::geteuid().is_root() {
            if let Some(state) = state_dir {
                let dir = state.join(format!("huge-{}", std::process::id()));
                if mount_huge_tmpfs(&dir) {
                    out.push(ShmPlace {
                        dir,
                        backing: Backing::TmpfsHuge,
                        mounted_by_us: true,
                    });
                } else {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
    }
    out.push(ShmPlace {
        dir: PathBuf::from("/dev/shm"),
        backing: Backing::Normal,
        mounted_by_us: false,
    });
    out
}

/// Creates `dir` and mounts on it the tmpfs with transparent huge pages an engine makes for
/// its rings when the machine has none (named `daq-engine`, so that a later engine knows
/// it); whether both were allowed.
fn mount_huge_tmpfs(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).is_ok()
        && nix::mount::mount(
            Some("daq-engine"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("huge=advise,mode=1777"),
        )
        .is_ok()
}

/// A mapped shared-memory file.
#[derive(Debug)]
pub struct ShmFile {
    path: PathBuf,
    map: memmap2::MmapRaw,
    backing: Backing,
    owner: bool,
    locked: bool,
}

// SAFETY: the mapping is plain shared memory; all concurrent access to it goes through the
// ring protocol's atomics, and the raw pointer stays valid for the life of `map`.
unsafe impl Send for ShmFile {}
// SAFETY: as above; `&ShmFile` only hands out the base pointer and length.
unsafe impl Sync for ShmFile {}

impl ShmFile {
    /// Creates `name` in the first of `places` that can hold `size` bytes, maps it,
    /// pre-faults and locks it. The file is removed when the returned value is dropped.
    pub fn create(places: &[ShmPlace], name: &str, size: usize) -> Result<ShmFile, ShmError> {
        let mut last = None;
        for place in places {
            let len = match place.backing {
                Backing::HugeTlb { page_size } => {
                    let len = size.div_ceil(page_size) * page_size;
                    if free_huge_pages(page_size) < len / page_size {
                        continue;
                    }
                    len
                }
                _ => size.div_ceil(4096) * 4096,
            };
            let path = place.dir.join(name);
            match Self::create_at(&path, len, place.backing) {
                Ok(f) => return Ok(f),
                Err(e @ ShmError::Exists { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ShmError::Io {
            path: PathBuf::from(name),
            what: "finding a place for the ring",
            source: io::Error::other("no shared-memory directory is usable"),
        }))
    }

    fn create_at(path: &Path, len: usize, backing: Backing) -> Result<ShmFile, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o660)
            .open(path)
            .map_err(open_err(
                path,
                "creating",
                io::ErrorKind::AlreadyExists,
                |path| ShmError::Exists { path },
            ))?;
        let result = (|| {
            file.set_len(len as u64).map_err(io_err(path, "sizing"))?;
            Self::map(path, &file, len, backing, true)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn map(
        path: &Path,
        file: &File,
        len: usize,
        backing: Backing,
        owner: bool,
    ) -> Result<ShmFile, ShmError> {
        // On a huge tmpfs the kernel decides a page's size when it first allocates it, and
        // with `huge=advise` it makes a huge one only inside a MADV_HUGEPAGE range: so the
        // advice must come before any page is touched, and pre-faulting (MAP_POPULATE)
        // must wait until after it.
        let thp = backing == Backing::TmpfsHuge;
        let mut options = memmap2::MmapOptions::new();
        options.len(len);
        if !thp {
            options.populate();
        }
        let map = options.map_raw(file).map_err(io_err(path, "mapping"))?;
        if thp {
            // SAFETY: the range is exactly our live mapping; MADV_HUGEPAGE only changes how
            // the kernel backs it.
            unsafe { libc::madvise(map.as_mut_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        }
        // SAFETY: the range is exactly our live mapping; mlock only pins (and faults in) its
        // pages.
        let locked = unsafe { libc::mlock(map.as_ptr().cast(), len) } == 0;
        if thp && !locked {
            // Not locked, so not faulted in yet: pre-fault writable without changing a byte
            // (the file may already hold a live ring).
            // SAFETY: the range is exactly our live mapping; MADV_POPULATE_WRITE only
            // faults its pages in.
            let r =
                unsafe { libc::madvise(map.as_mut_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
            if r != 0 {
                // Kernels before 5.14: read one byte per page, which allocates shmem pages.
                for off in (0..len).step_by(4096) {
                    // SAFETY: off < len, inside the live mapping; a volatile read of a byte
                    // that may be shared is harmless and its value is unused.
                    let _ = unsafe { std::ptr::read_volatile(map.as_ptr().add(off)) };
                }
            }
        }
        Ok(ShmFile {
            path: path.to_path_buf(),
            map,
            backing,
            owner,
            locked,
        })
    }

    /// Opens and maps an existing file (a reader or a second process attaching).
    pub fn open(path: &Path) -> Result<ShmFile, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(open_err(path, "opening", io::ErrorKind::NotFound, |path| {
                ShmError::NotFound { path }
            }))?;
        let len = file.metadata().map_err(io_err(path, "reading size"))?.len() as usize;
        let backing = backing_of(path);
        Self::map(path, &file, len, backing, false)
    }

    /// Base address of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pages behind it.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Whether `mlock` succeeded.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Keep the file when this handle is dropped (hand ownership to another process).
    pub fn disown(&mut self) {
        self.owner = false;
    }

    /// Remove the file when this handle is dropped.
    pub fn own(&mut self) {
        self.owner = true;
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The backing of an existing file, from the mount it lives on.
pub fn backing_of(path: &Path) -> Backing {
    let mut best: Option<(usize, Backing)> = None;
    for (dir, ty, opts) in mounts() {
        if path.starts_with(&dir) {
            let depth = dir.components().count();
            let b = if ty == "hugetlbfs" {
                Backing::HugeTlb {
                    page_size: opts
                        .split(',')
                        .find_map(|o| o.strip_prefix("pagesize=").and_then(parse_size))
                        .unwrap_or(2 * 1024 * 1024),
                }
            } else if ty == "tmpfs" && opts.contains("huge=") && !opts.contains("huge=never") {
                Backing::TmpfsHuge
            } else {
                Backing::Normal
            };
            if best.is_none_or(|(d, _)| depth > d) {
                best = Some((depth, b));
            }
        }
    }
    best.map(|(_, b)| b).unwrap_or(Backing::Normal)
}

/// Whether process `pid` is alive (a zombie counts as dead).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    crate::procfs::Stat::read(pid).is_some_and(|s| !s.ended())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_remove() {
        let places = places(HugePages::Off, None);
        let name = format!("daq-test-shm-{}", std::process::id());
        let f = ShmFile::create(&places, &name, 10_000).unwrap();
        assert_eq!(f.len(), 12_288);
        assert_eq!(f.backing(), Backing::Normal);
        // SAFETY: the mapping is at least 12 KiB long and nothing else uses it yet.
        unsafe { *f.as_ptr().add(100) = 42 };
        let g = ShmFile::open(f.path()).unwrap();
        // SAFETY: same file, same length, written above.
        assert_eq!(unsafe { *g.as_ptr().add(100) }, 42);
        assert!(matches!(
            ShmFile::create(&places, &name, 10),
            Err(ShmError::Exists { .. })
        ));
        let path = f.path().to_path_buf();
        drop(g);
        assert!(path.exists());
        drop(f);
        assert!(!path.exists());
        assert!(matches!(
            ShmFile::open(&path),
            Err(ShmError::NotFound { .. })
        ));
    }

    /// Whether this test may mount a tmpfs (as root only); says it skips when not.
    fn may_mount() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            println!("SKIPPED: mounting a tmpfs needs root");
        }
        root
    }

    #[test]
    fn stale_huge_mounts_of_dead_engines_are_removed() {
        if !may_mount() {
            return;
        }
        let state = std::env::temp_dir().join(format!("daq-shm-state-{}", std::process::id()));
        // A pid that is certainly dead: a child that has exited and been reaped.
        let dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let _ = { dead }.wait();
        let stale = state.join(format!("huge-{dead_pid}"));
        std::fs::create_dir_all(&stale).unwrap();
        if !mount_huge_tmpfs(&stale) {
            let _ = std::fs::remove_dir_all(&state);
            println!("SKIPPED: tmpfs mount refused here");
            return;
        }
        let mounted = |p: &Path| mounts().iter().any(|(d, _, _)| d == p);
        assert!(mounted(&stale));
        let got = places(HugePages::Auto, Some(&state));
        assert!(!mounted(&stale), "the dead engine's mount is gone");
        assert!(!stale.exists());
        drop(got);
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn a_live_engines_mount_is_neither_borrowed_nor_removed() {
        if !may_mount() {
            return;
        }
        let state = std::env::temp_dir().join(format!("daq-shm-live-{}", std::process::id()));
        // A live process standing in for another engine's supervisor.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let theirs = state.join(format!("huge-{}", other.id()));
        std::fs::create_dir_all(&theirs).unwrap();
        let mounted = mount_huge_tmpfs(&theirs);
        if mounted {
            let got = places(HugePages::Auto, Some(&state));
            let still = mounts().iter().any(|(d, _, _)| d == &theirs);
            let borrowed = got.iter().any(|p| p.dir == theirs);
            drop(got);
            let _ = nix::mount::umount2(&theirs, nix::mount::MntFlags::MNT_DETACH);
            let _ = other.kill();
            let _ = other.wait();
            let _ = std::fs::remove_dir_all(&state);
            assert!(still, "a live engine's mount was removed");
            assert!(!borrowed, "a live engine's mount was offered for our rings");
        } else {
            let _ = other.kill();
            let _ = other.wait();
            let _ = std::fs::remove_dir_all(&state);
            println!("SKIPPED: tmpfs mount refused here");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
    }
}
