//! Huge pages behind rings. As root: reserve explicit huge pages (`/proc/sys/vm/nr_hugepages`,
//! restored afterwards), mount a hugetlbfs, and check that `Ring::create` takes it
//! (`Backing::HugeTlb`) and that data flows; and let `places()` mount its own tmpfs with
//! `huge=advise` and check that the ring gets `Backing::TmpfsHuge` and that the kernel really
//! maps it with huge pages (`FilePmdMapped`/`ShmemPmdMapped` in /proc/self/smaps).
//!
//! Where the machine does not allow it (not root, no huge pages to reserve, shmem THP denied)
//! each test prints why it skipped; it never passes silently.

use daq_engine::dtype::Dtype;
use daq_engine::ring::{Next, Policy, Ring, RingSpec};
use daq_engine::shm::{free_huge_pages, places, Backing, HugePages};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const HUGE: usize = 2 * 1024 * 1024;
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The two tests change machine-wide mounts that `places()` looks at: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    println!("SKIPPED {test}: {why}");
}

/// The turn of `test`, which needs root (see [`SERIAL`]); `None`, the test skipped, when not
/// root: `why` says what root is needed for.
fn turn_as_root(test: &str, why: &str) -> Option<MutexGuard<'static, ()>> {
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::geteuid().is_root() {
        skip(test, &format!("not root: {why}"));
        return None;
    }
    Some(turn)
}

/// Restores `nr_hugepages` when dropped.
struct Reservation {
    old: String,
}

impl Reservation {
    fn add(pages: usize) -> Result<Reservation, String> {
        let old = std::fs::read_to_string(NR_HUGEPAGES)
            .map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?
            .trim()
            .to_string();
        let n: usize = old.parse().map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
        let guard = Reservation { old };
        std::fs::write(NR_HUGEPAGES, (n + pages).to_string())
            .map_err(|e| format!("writing {NR_HUGEPAGES}: {e}"))?;
        Ok(guard)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(NR_HUGEPAGES, &self.old) {
            eprintln!("could not restore {NR_HUGEPAGES} to {}: {e}", self.old);
        }
    }
}

/// A directory, with whatever we mounted on it, removed when dropped.
struct Mounted {
    dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    fn dir(tag: &str) -> Mounted {
        let dir = std::env::temp_dir().join(format!("ring-huge-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Mounted {
            dir,
            mounted: false,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("could not unmount {}: {e}", self.dir.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// kB of the mapping of `path` in this process mapped by PMD (huge) pages, summed over the
/// smaps fields that count it (FilePmdMapped, ShmemPmdMapped).
fn pmd_mapped_kb(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let want = path.to_string_lossy();
    let mut in_ours = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            in_ours = line.split_whitespace().nth(5).is_some_and(|p| p == want);
            continue;
        }
        if in_ours {
            for key in ["FilePmdMapped:", "ShmemPmdMapped:"] {
                if let Some(rest) = line.strip_prefix(key) {
                    kb += rest
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    kb
}

fn spec(tag: &str, event_bytes: usize, slots: usize) -> RingSpec {
    RingSpec {
        name: format!("ring-huge-{tag}-{}", std::process::id()),
        dtype: Dtype::parse([("adc", "u1")]).unwrap(),
        data_length: event_bytes,
        slot_count: slots,
        policy: Policy::Block,
        groups: vec![1],
    }
}

/// Publishes and reads back `n` events through `ring`, checking every byte.
fn flows(ring: &Ring, n: u64) {
    let mut p = ring.producer().unwrap();
    let mut r = ring.reader(0, 0).unwrap();
    for e in 0..n {
        let mut slot = p.claim(Duration::from_secs(1)).unwrap();
        for (i, b) in slot.data_mut().iter_mut().enumerate() {
            *b = (e as usize * 31 + i) as u8;
        }
        slot.publish();
        match r.next(Duration::from_secs(1)) {
            Next::Event(ev) => assert!(ev
                .data()
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (e as usize * 31 + i) as u8)),
            _ => panic!("event {e} missing"),
        }
    }
}

#[test]
fn hugetlbfs_is_taken_when_it_has_free_pages() {
    const TEST: &str = "hugetlbfs_is_taken_when_it_has_free_pages";
    let Some(_turn) = turn_as_root(TEST, "cannot reserve huge pages or mount a hugetlbfs") else {
        return;
    };
    // 16 slots of 64 KiB + the control pages: a little over 1 MiB → one 2 MiB page; reserve
    // two so a rounding change does not turn this into a skip.
    let sp = spec("tlb", 64 * 1024, 16);
    let free_before = free_huge_pages(HUGE);
    let _reserved = match Reservation::add(2) {
        Ok(r) => r,
        Err(e) => return skip(TEST, &e),
    };
    let free = free_huge_pages(HUGE);
    if free < free_before + 2 {
        return skip(
            TEST,
            &format!(
                "the kernel gave {} of 2 huge pages asked for (memory fragmented?)",
                free - free_before
            ),
        );
    }
    let mut mnt = Mounted::dir("tlb");
    if let Err(e) = nix::mount::mount(
        Some("hugetlbfs"),
        &mnt.dir,
        Some("hugetlbfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        // A size makes the mount count its own pages (statvfs), which no other program on
        // the machine changes; the pool's free count is shared with every program using
        // huge pages (a run of the engine beside the tests made this test fail).
        Some("pagesize=2M,size=8M,mode=0700"),
    ) {
        return skip(TEST, &format!("mounting a hugetlbfs failed: {e}"));
    }
    mnt.mounted = true;
    let in_use = || {
        let st = nix::sys::statvfs::statvfs(&mnt.dir).unwrap();
        (st.blocks() - st.blocks_free()) as usize
    };

    let pl = places(HugePages::Auto, None);
    assert!(
        pl.iter()
            .any(|p| p.dir == mnt.dir && p.backing == Backing::HugeTlb { page_size: HUGE }),
        "places() does not list the hugetlbfs mount: {pl:?}"
    );
    assert_eq!(in_use(), 0);
    let ring = Ring::create(&pl, &sp).unwrap();
    assert_eq!(ring.backing(), Backing::HugeTlb { page_size: HUGE });
    assert!(ring.locked(), "root may lock the ring in memory");
    assert!(
        ring.path().starts_with(&mnt.dir),
        "{}",
        ring.path().display()
    );
    assert_eq!(ring.mapped_bytes() % HUGE, 0);
    let pages = ring.mapped_bytes() / HUGE;
    assert_eq!(
        in_use(),
        pages,
        "the ring's huge pages are taken from the pool"
    );
    flows(&ring, 100);
    // Another handle attaches by path and sees the same backing and data.
    let other = Ring::attach(ring.path(), Some(ring.dtype()), Some(64 * 1024)).unwrap();
    assert_eq!(other.backing(), Backing::HugeTlb { page_size: HUGE });
    assert_eq!(other.stats().published, 100);
    drop(other);
    let path = ring.path().to_path_buf();
    drop(ring);
    assert!(!path.exists());
    assert_eq!(in_use(), 0, "pages returned to the pool");
    println!("hugetlbfs: ring of {pages} huge page(s), data flowed");
}

#[test]
fn tmpfs_with_huge_advise_gives_huge_pages() {
    const TEST: &str = "tmpfs_with_huge_advise_gives_huge_pages";
    let Some(_turn) = turn_as_root(TEST, "places() mounts its huge=advise tmpfs only as root")
    else {
        return;
    };
    let shmem = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    if shmem.contains("[deny]") {
        return skip(
            TEST,
            &format!(
                "shmem THP is denied machine-wide (shmem_enabled: {})",
                shmem.trim()
            ),
        );
    }
    if std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
    {
        return skip(TEST, "a hugetlbfs is mounted: places() would prefer it");
    }
    let state = Mounted::dir("state");
    let pl = places(HugePages::Auto, Some(&state.dir));
    let Some(place) = pl.iter().find(|p| p.backing == Backing::TmpfsHuge) else {
        return skip(
            TEST,
            &format!("places() found or mounted no huge tmpfs: {pl:?}"),
        );
    };
    let ours = place.dir.starts_with(&state.dir);
    // 32 slots of 128 KiB: 4 MiB of slots, so at least one aligned 2 MiB extent.
    let sp = spec("thp", 128 * 1024, 32);
    let shmem_huge_before = meminfo("ShmemHugePages").unwrap_or(0);
    let ring = Ring::create(&pl, &sp).unwrap();
    assert_eq!(ring.backing(), Backing::TmpfsHuge);
    assert!(ring.locked(), "root may lock the ring in memory");
    assert!(ring.path().starts_with(&place.dir));
    flows(&ring, 64);
    let pmd = pmd_mapped_kb(ring.path());
    let shmem_huge = meminfo("ShmemHugePages").unwrap_or(0);
    println!(
        "tmpfs huge=advise at {} ({}): {pmd} kB PMD-mapped, ShmemHugePages {shmem_huge_before} → {shmem_huge} kB",
        place.dir.display(),
        if ours { "mounted by places()" } else { "already mounted" }
    );
    assert!(
        pmd > 0 || shmem_huge > shmem_huge_before,
        "the ring on a huge=advise tmpfs got no huge pages ({pmd} kB PMD-mapped, ShmemHugePages \
         {shmem_huge_before} → {shmem_huge} kB; shmem_enabled: {})",
        shmem.trim()
    );
    let path = ring.path().to_path_buf();
    drop(ring);
    assert!(!path.exists());
    drop(pl);
    if ours {
        assert!(
            !std::fs::read_to_string("/proc/mounts")
                .unwrap()
                .contains(&state.dir.to_string_lossy().to_string()),
            "places() must unmount its tmpfs when dropped"
        );
    }
}
