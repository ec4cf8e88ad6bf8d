//! Attaching to ring files that are not what the attacher expects: wrong magic, version,
//! dtype or data_length, truncated, not ready, garbage, or crafted headers whose numbers
//! overflow. Every case must be a typed error, never a panic or an out-of-bounds view.
//! Also: a stale file from a dead creator is replaced on create (with a warning), one from a
//! live creator is refused.
//!
//! The byte offsets below are the ring file format (layout version 2, `#[repr(C)] Header`
//! in src/ring/layout.rs); a layout change bumps the version and must update them. The
//! field types of issue 14 use bytes that were zero before (FieldEntry's padding, a table
//! after `capacity` inside the first page), zero meaning what it meant: a plain
//! little-endian number; so the version stays 2.

use daq_engine::dtype::Dtype;
use daq_engine::ring::{AttachError, CreateError, Policy, Ring, RingSpec, LAYOUT_VERSION};
use daq_engine::shm::{places, HugePages};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_READY: usize = 12;
const OFF_SLOT_COUNT: usize = 24;
const OFF_SLOT_SIZE: usize = 32;
const OFF_DATA_LENGTH: usize = 40;
const OFF_REGION_SIZE: usize = 56;
const OFF_SLOTS_OFFSET: usize = 88;
const OFF_N_GROUPS: usize = 96;
const OFF_CREATOR_PID: usize = 108;
/// End of the header fields before the field table.
const OFF_FIELDS: usize = 112;
/// Bytes per field-table entry (32 name bytes, type code, byte order, ndim, 1 pad, u32 offset).
const FIELD_ENTRY: usize = 40;
/// The field-extension table after the 64 entries and `capacity` (zero in headers written
/// before it existed): per field the string length (u32) and 4 dimensions (u32).
const OFF_FIELD_EXT: usize = OFF_FIELDS + 64 * FIELD_ENTRY + 8;
/// Bytes per field-extension entry.
const FIELD_EXT: usize = 20;

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ring-header-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec(name: &str, dtype: &Dtype, data_length: usize, groups: Vec<usize>) -> RingSpec {
    RingSpec {
        name: name.to_string(),
        dtype: dtype.clone(),
        data_length,
        slot_count: 8,
        policy: Policy::Block,
        groups,
    }
}

/// A fresh ring of [`spec`] on the plain places, named after `tag`.
fn new_ring(tag: &str, dtype: &Dtype, data_length: usize, groups: Vec<usize>) -> Ring {
    Ring::create(
        &places(HugePages::Off, None),
        &spec(&unique(tag), dtype, data_length, groups),
    )
    .unwrap()
}

fn f4() -> Dtype {
    Dtype::parse([("ch0", "f4")]).unwrap()
}

/// A copy of a ring file's bytes at a path of its own; removed on drop.
struct Image {
    path: PathBuf,
}

impl Image {
    fn write(tag: &str, bytes: &[u8]) -> Image {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::write(&path, bytes).unwrap();
        Image { path }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The bytes of a freshly created, valid ring file (f4 × 16, 8 slots, one group); made once.
fn valid_bytes() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| valid_bytes_with(&f4(), 16, vec![1]))
        .clone()
}

fn valid_bytes_with(dtype: &Dtype, data_length: usize, groups: Vec<usize>) -> Vec<u8> {
    let ring = new_ring("src", dtype, data_length, groups);
    std::fs::read(ring.path()).unwrap()
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn attach(bytes: &[u8]) -> Result<Ring, AttachError> {
    let img = Image::write("img", bytes);
    let r = Ring::attach(&img.path, None, None);
    drop(img);
    r
}

/// What an attached ring promises must fit in its mapping.
fn assert_consistent(ring: &Ring) {
    // Events in flight; the ring lays out slots_for(slots) slots.
    let slots = daq_engine::ring::slots_for(ring.slot_count()).expect("slot count overflows");
    assert!(ring.slot_count() >= 1 && slots >= ring.slot_count());
    let per_slot = 64usize
        .checked_add(ring.event_bytes())
        .expect("event size overflows");
    let data = slots.checked_mul(per_slot).expect("ring size overflows");
    assert!(
        data <= ring.mapped_bytes(),
        "{slots} slots of {per_slot} bytes do not fit the {} mapped bytes",
        ring.mapped_bytes()
    );
    assert_eq!(
        ring.event_bytes(),
        ring.data_length() * ring.dtype().record_size()
    );
}

#[test]
fn a_valid_file_attaches_with_and_without_expectations() {
    let ring = new_ring("ok", &f4(), 16, vec![2, 1]);
    let a = Ring::attach(ring.path(), Some(&f4()), Some(16)).unwrap();
    assert_eq!(a.dtype(), &f4());
    assert_eq!(a.data_length(), 16);
    assert_eq!(a.slot_count(), 8);
    assert_eq!(a.groups(), &[2, 1]);
    assert_eq!(a.policy(), Policy::Block);
    assert_consistent(&a);
    let b = Ring::attach(ring.path(), None, None).unwrap();
    assert_eq!(b.event_bytes(), 64);
}

#[test]
fn wrong_magic_is_refused() {
    let mut b = valid_bytes();
    b[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(b"NOTARING");
    match attach(&b) {
        Err(AttachError::BadMagic { found, .. }) => assert_eq!(&found, b"NOTARING"),
        other => panic!("expected BadMagic, got {:?}", other.err()),
    }
}

#[test]
fn wrong_version_is_refused() {
    let mut b = valid_bytes();
    put_u32(&mut b, OFF_VERSION, LAYOUT_VERSION + 1);
    match attach(&b) {
        Err(e @ AttachError::Version { .. }) => {
            let AttachError::Version {
                found, expected, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*found, *expected), (LAYOUT_VERSION + 1, LAYOUT_VERSION));
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("version {}", LAYOUT_VERSION + 1)),
                "{msg}"
            );
        }
        other => panic!("expected Version, got {:?}", other.err()),
    }
}

#[test]
fn not_ready_header_is_refused() {
    let mut b = valid_bytes();
    put_u32(&mut b, OFF_READY, 0);
    assert!(matches!(attach(&b), Err(AttachError::NotReady { .. })));
}

/// issue 18: a ring whose creator has only made the file (zero-filled, header not yet
/// written) is "not ready", not "not a ring": `ready` is read before anything else.
#[test]
fn half_built_ring_is_not_ready_rather_than_not_a_ring() {
    let b = vec![0u8; valid_bytes().len()];
    match attach(&b) {
        Err(AttachError::NotReady { .. }) => {}
        other => panic!("expected NotReady, got {:?}", other.err()),
    }
    // With its magic written but not yet marked ready: the same.
    let mut b = valid_bytes();
    put_u32(&mut b, OFF_READY, 0);
    put_u32(&mut b, OFF_VERSION, 0);
    assert!(matches!(attach(&b), Err(AttachError::NotReady { .. })));
}

#[test]
fn mismatching_dtype_says_what_differs() {
    let ring = new_ring("dtype", &f4(), 16, vec![1]);
    let other = Dtype::parse([("ch0", "f8")]).unwrap();
    match Ring::attach(ring.path(), Some(&other), Some(16)) {
        Err(e @ AttachError::Schema { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("data_dtype differs"), "{msg}");
            assert!(msg.contains(&f4().to_string()), "{msg}");
            assert!(msg.contains(&other.to_string()), "{msg}");
        }
        other => panic!("expected Schema, got {:?}", other.err()),
    }
    // Same types, other field name: also a different schema.
    let renamed = Dtype::parse([("ch1", "f4")]).unwrap();
    assert!(matches!(
        Ring::attach(ring.path(), Some(&renamed), None),
        Err(AttachError::Schema { .. })
    ));
}

#[test]
fn mismatching_data_length_says_what_differs() {
    let ring = new_ring("len", &f4(), 16, vec![1]);
    match Ring::attach(ring.path(), Some(&f4()), Some(32)) {
        Err(e @ AttachError::Length { .. }) => {
            let AttachError::Length {
                found, expected, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*found, *expected), (16, 32));
            assert!(e.to_string().contains("data_length differs"));
        }
        other => panic!("expected Length, got {:?}", other.err()),
    }
}

#[test]
fn truncated_files_are_refused() {
    let b = valid_bytes();
    let total = get_u64(&b, OFF_REGION_SIZE) as usize;
    assert!(b.len() >= total);
    // Shorter than the header.
    for len in [0, 1, 8, 100, 500] {
        let r = attach(&b[..len]);
        assert!(
            matches!(
                r,
                Err(AttachError::TooShort { .. }) | Err(AttachError::Shm(_))
            ),
            "{len} bytes: {:?}",
            r.err()
        );
    }
    // A whole header, but not the whole layout.
    for len in [4096, total / 2, total - 1] {
        match attach(&b[..len]) {
            Err(AttachError::Corrupt { problem, .. }) => {
                assert!(problem.contains("truncated"), "{len}: {problem}")
            }
            other => panic!("{len} bytes: expected Corrupt, got {:?}", other.err()),
        }
    }
    assert!(attach(&b[..total]).is_ok());
}

#[test]
fn missing_file_is_not_found() {
    let p = Path::new("/dev/shm").join(unique("missing"));
    assert!(matches!(
        Ring::attach(&p, None, None),
        Err(AttachError::Shm(daq_engine::shm::ShmError::NotFound { .. }))
    ));
}

/// A header whose data_length makes `data_length × record_size` overflow, with the slot
/// size and region size set to what wrapping arithmetic would compute: must be Corrupt.
#[test]
fn overflowing_data_length_is_corrupt_not_a_panic() {
    let mut b = valid_bytes();
    let slots = get_u64(&b, OFF_SLOT_COUNT);
    let data_at = get_u64(&b, OFF_SLOTS_OFFSET);
    // 4-byte records: (2^62 + 16) × 4 wraps to 64 bytes; 64 + saturated size wraps to 63.
    put_u64(&mut b, OFF_DATA_LENGTH, (1 << 62) + 16);
    put_u64(&mut b, OFF_SLOT_SIZE, 64);
    put_u64(&mut b, OFF_REGION_SIZE, data_at + slots * 64);
    match attach(&b) {
        Err(AttachError::Corrupt { .. }) => {}
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(r) => panic!(
            "attached a ring with data_length {} and {} event bytes in {} mapped bytes",
            r.data_length(),
            r.event_bytes(),
            r.mapped_bytes()
        ),
    }
}

/// A header whose slot count makes the done-word table overflow.
#[test]
fn overflowing_slot_count_is_corrupt_not_a_panic() {
    let mut b = valid_bytes_with(&f4(), 16, vec![1; 16]);
    put_u64(&mut b, OFF_SLOT_COUNT, 1 << 57);
    put_u32(&mut b, OFF_N_GROUPS, 16);
    assert!(matches!(attach(&b), Err(AttachError::Corrupt { .. })));
}

#[test]
fn a_bad_field_table_is_corrupt() {
    let mut b = valid_bytes();
    // Unknown type code in the first field entry.
    b[OFF_FIELDS + 32] = 200;
    assert!(matches!(attach(&b), Err(AttachError::Corrupt { .. })));
    // A field renamed behind the schema hash's back.
    let mut b = valid_bytes();
    b[OFF_FIELDS] = b'x';
    match attach(&b) {
        Err(AttachError::Corrupt { problem, .. }) => assert!(problem.contains("hash"), "{problem}"),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

/// Issue 14's field types: the header records each one (type code, byte order, string
/// length, subarray shape), so an attacher rebuilds exactly the creator's dtype and one
/// expecting another layout is refused.
#[test]
fn every_field_type_round_trips_through_the_header() {
    let d = Dtype::parse([
        ("a", "bool"),
        ("b", "S10"),
        ("c", ">f4"),
        ("d", "c8"),
        ("e", "U4"),
        ("f", "(2,)f4"),
        ("g", "c16"),
        ("h", "<i2"),
        ("m", "(2,3)>i2"),
        ("n", ">U2"),
    ])
    .unwrap();
    let ring = new_ring("types", &d, 4, vec![1]);
    assert_eq!(
        Ring::attach(ring.path(), Some(&d), Some(4))
            .unwrap()
            .dtype(),
        &d
    );
    let seen = Ring::attach(ring.path(), None, None).unwrap();
    assert_eq!(seen.dtype(), &d);
    assert_eq!(seen.event_bytes(), 4 * d.record_size());
    for (field, other) in [
        ("c", "<f4"),
        ("b", "S11"),
        ("f", "(3,)f4"),
        ("e", ">U4"),
        ("a", "u1"),
    ] {
        let changed: Vec<(&str, String)> = d
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    if f.name == field {
                        other.to_string()
                    } else {
                        f.ty.to_string()
                    },
                )
            })
            .collect();
        let changed = Dtype::parse(changed.iter().map(|(n, t)| (*n, t.as_str()))).unwrap();
        assert!(
            matches!(
                Ring::attach(ring.path(), Some(&changed), None),
                Err(AttachError::Schema { .. })
            ),
            "{field}: {other}"
        );
    }
}

/// A plain-number dtype writes the header bytes older versions wrote: byte order, ndim and
/// the field-extension table all zero (so an older header means what it meant, and an older
/// reader's schema hash check still matches a plain ring).
#[test]
fn plain_dtypes_write_the_header_bytes_older_versions_wrote() {
    let b = valid_bytes_with(
        &Dtype::parse([("a", "f4"), ("b", "<i2"), ("c", "=u8")]).unwrap(),
        4,
        vec![1],
    );
    for k in 0..3 {
        let e = OFF_FIELDS + k * FIELD_ENTRY;
        assert_eq!(&b[e + 33..e + 36], &[0, 0, 0], "field {k}");
    }
    assert!(b[OFF_FIELD_EXT..OFF_FIELD_EXT + 64 * FIELD_EXT]
        .iter()
        .all(|&x| x == 0));
    // And the other kinds do not: the extension says what the code alone cannot.
    let b = valid_bytes_with(
        &Dtype::parse([("s", "S4"), ("v", "(2,3)>f4")]).unwrap(),
        4,
        vec![1],
    );
    assert_eq!(&b[OFF_FIELD_EXT..OFF_FIELD_EXT + 4], &4u32.to_le_bytes());
    let v = OFF_FIELDS + FIELD_ENTRY;
    assert_eq!(&b[v + 33..v + 35], &[1, 2]);
    let x = OFF_FIELD_EXT + FIELD_EXT;
    assert_eq!(&b[x + 4..x + 12], &[2, 0, 0, 0, 3, 0, 0, 0]);
}

#[test]
fn a_bad_field_extension_is_corrupt() {
    let d = Dtype::parse([("s", "S4"), ("v", "(2,)f4")]).unwrap();
    let good = valid_bytes_with(&d, 4, vec![1]);
    assert!(attach(&good).is_ok());
    let entry = |k: usize| OFF_FIELDS + k * FIELD_ENTRY;
    let ext = |k: usize| OFF_FIELD_EXT + k * FIELD_EXT;
    let edits: [(&str, usize, u8); 7] = [
        ("big-endian behind the hash's back", entry(1) + 33, 1),
        ("a byte order that is no order", entry(1) + 33, 2),
        ("a string one byte longer", ext(0), 5),
        ("a string of no length", ext(0), 0),
        ("a dimension of 0", ext(1) + 4, 0),
        ("more dimensions than stored", entry(1) + 34, 5),
        ("a dimension past ndim", ext(1) + 8, 3),
    ];
    for (what, at, v) in edits {
        let mut b = good.clone();
        b[at] = v;
        assert!(
            matches!(attach(&b), Err(AttachError::Corrupt { .. })),
            "{what}: {:?}",
            attach(&b).err()
        );
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5eed_0001),
        failure_persistence: None,
        ..Config::default()
    })]

    /// Random bytes of random length: an error, never a ring, never a panic.
    #[test]
    fn garbage_files_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..12_000)) {
        prop_assert!(attach(&bytes).is_err());
    }

    /// Garbage after a valid magic and version: still an error.
    #[test]
    fn garbage_behind_a_valid_magic_is_refused(
        tail in proptest::collection::vec(any::<u8>(), 0..12_000)
    ) {
        let mut b = b"DAQRING\0".to_vec();
        b.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
        b.extend_from_slice(&tail);
        if let Ok(r) = attach(&b) {
            assert_consistent(&r);
        }
    }

    /// A valid file with random header bytes changed: either refused, or a ring whose
    /// geometry fits its mapping.
    #[test]
    fn mutated_headers_never_give_a_bad_ring(
        edits in proptest::collection::vec((0usize..OFF_FIELDS + 2 * FIELD_ENTRY, any::<u8>()), 1..6)
    ) {
        let mut b = valid_bytes();
        for (at, v) in edits {
            b[at] = v;
        }
        if let Ok(r) = attach(&b) {
            assert_consistent(&r);
        }
    }

    /// A valid file with one header number replaced by an arbitrary u64 (the fields an
    /// attacher computes sizes from): either refused, or a consistent ring.
    #[test]
    fn wild_header_numbers_never_give_a_bad_ring(
        field in 2usize..12,
        v in prop_oneof![any::<u64>(), 0u64..70_000, (0u32..64).prop_map(|s| 1u64 << s)],
    ) {
        let mut b = valid_bytes();
        put_u64(&mut b, 16 + 8 * (field - 2), v);
        if let Ok(r) = attach(&b) {
            assert_consistent(&r);
        }
    }
}

// ------------------------------------------------------------------- stale and live files

/// Runs `f` in a forked child that leaves with `_exit` (never returning into the harness).
fn in_child(f: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the child only runs `f` (ring calls, no locks other threads could hold that
    // it needs) and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: ends the child without running the harness's atexit or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Kills and reaps a child when dropped (also when the test fails).
struct Reaped(Option<Pid>);

impl Reaped {
    fn wait(&mut self) -> i32 {
        let pid = self.0.take().unwrap();
        match waitpid(pid, None).unwrap() {
            WaitStatus::Exited(_, c) => c,
            s => panic!("child {pid}: {s:?}"),
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Captures tracing output for the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn stale_file_of_a_dead_creator_is_replaced_with_a_warning() {
    let name = unique("stale");
    let old = Dtype::parse([("a", "i2"), ("b", "i2")]).unwrap();
    let sp = spec(&name, &old, 4, vec![1]);
    let mut child = Reaped(Some(in_child(|| {
        match Ring::create(&places(HugePages::Off, None), &sp) {
            // Leave without cleaning up, like a crashed run.
            // SAFETY: ends the child at once; the ring's destructor must not run.
            Ok(_ring) => unsafe { libc::_exit(0) },
            Err(_) => 1,
        }
    })));
    let pid = child.0.unwrap();
    assert_eq!(child.wait(), 0);
    let path = Path::new("/dev/shm").join(&name);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(path.clone());
    assert!(
        path.exists(),
        "the crashed creator's file should be left behind"
    );
    let b = std::fs::read(&path).unwrap();
    assert_eq!(
        u32::from_le_bytes(b[OFF_CREATOR_PID..OFF_CREATOR_PID + 4].try_into().unwrap()),
        pid.as_raw() as u32
    );
    drop(b);

    let log = Capture::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let new = f4();
    let ring = tracing::subscriber::with_default(subscriber, || {
        Ring::create(
            &places(HugePages::Off, None),
            &spec(&name, &new, 16, vec![1]),
        )
    })
    .expect("a stale file must not block create");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("stale ring file"), "{text}");
    assert!(text.contains(&format!("creator pid {pid}")), "{text}");
    // The new file has the new layout, not the stale one.
    let a = Ring::attach(ring.path(), Some(&new), Some(16)).unwrap();
    assert_eq!(a.event_bytes(), 64);
    drop(a);
    drop(ring);
    assert!(!path.exists(), "the creator removes its file");
}

#[test]
fn file_of_a_live_creator_is_in_use() {
    let name = unique("live");
    let sp = spec(&name, &f4(), 16, vec![1]);
    let (rx, tx) = nix::unistd::pipe().unwrap();
    let (ready_rx, ready_tx) = nix::unistd::pipe().unwrap();
    let mut child = Reaped(Some(in_child(|| {
        // The child's copies of the parent's ends: close them so EOF reaches the child.
        // SAFETY: these descriptors are the child's own copies; nothing else in the child uses them.
        unsafe {
            libc::close(tx.as_raw_fd());
            libc::close(ready_rx.as_raw_fd());
        }
        let ring = match Ring::create(&places(HugePages::Off, None), &sp) {
            Ok(r) => r,
            Err(_) => return 1,
        };
        let _ = nix::unistd::write(&ready_tx, b"r");
        // Wait until the parent is done (it closes its end).
        let mut buf = [0u8; 1];
        let _ = nix::unistd::read(&rx, &mut buf);
        drop(ring);
        0
    })));
    drop(rx);
    drop(ready_tx);
    let mut buf = [0u8; 1];
    assert_eq!(nix::unistd::read(&ready_rx, &mut buf).unwrap(), 1);
    let pid = child.0.unwrap().as_raw() as u32;
    match Ring::create(
        &places(HugePages::Off, None),
        &spec(&name, &f4(), 16, vec![1]),
    ) {
        Err(e @ CreateError::InUse { .. }) => {
            let CreateError::InUse { pid: found, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*found, pid);
            assert!(e.to_string().contains(&pid.to_string()));
        }
        Err(e) => panic!("expected InUse, got {e}"),
        Ok(_) => panic!("created over a live ring"),
    }
    let path = Path::new("/dev/shm").join(&name);
    assert!(path.exists(), "the live ring must be left alone");
    drop(tx);
    assert_eq!(child.wait(), 0);
    assert!(!path.exists(), "the live creator removed its file on exit");
}

/// A second create of a ring this process still holds must not replace it (the first
/// handle would then write into an unlinked file, and its drop would delete the second).
#[test]
fn creating_a_live_ring_twice_in_one_process_is_in_use() {
    let name = unique("twice");
    let sp = spec(&name, &f4(), 16, vec![1]);
    let first = Ring::create(&places(HugePages::Off, None), &sp).unwrap();
    let path = first.path().to_path_buf();
    match Ring::create(&places(HugePages::Off, None), &sp) {
        Err(CreateError::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
        Err(e) => panic!("expected InUse, got {e}"),
        Ok(second) => {
            let same = second.path() == first.path();
            drop(second);
            panic!(
                "a live ring of this process was replaced (same path: {same}; file still \
                 there after the second handle dropped: {})",
                path.exists()
            );
        }
    }
    // The first ring is intact and still the one in the file.
    let mut p = first.producer().unwrap();
    p.claim(Duration::from_secs(1)).unwrap().publish();
    let seen = Ring::attach(&path, Some(&f4()), Some(16)).unwrap();
    assert_eq!(seen.stats().published, 1);
    drop(seen);
    drop(p);
    drop(first);
    assert!(!path.exists());
    // Once dropped, the name is free again.
    let again = Ring::create(&places(HugePages::Off, None), &sp).unwrap();
    assert_eq!(again.stats().published, 0);
}

/// A file with this process's pid that this process does not hold (left by an earlier
/// process that had the same pid, as happens in containers) is stale.
#[test]
fn a_file_with_our_pid_that_we_do_not_hold_is_stale() {
    let name = unique("ourpid");
    let sp = spec(&name, &f4(), 16, vec![1]);
    let mut first = Ring::create(&places(HugePages::Off, None), &sp).unwrap();
    let path = first.path().to_path_buf();
    assert!(first.keep_file());
    drop(first);
    assert!(path.exists());
    let b = std::fs::read(&path).unwrap();
    assert_eq!(
        u32::from_le_bytes(b[OFF_CREATOR_PID..OFF_CREATOR_PID + 4].try_into().unwrap()),
        std::process::id()
    );
    let ring = Ring::create(&places(HugePages::Off, None), &sp)
        .expect("a file we no longer hold is replaced");
    assert_eq!(ring.path(), path);
}

/// Any positive slot_count is the number of events in flight: the ring lays out a power of
/// two inside, but the producer finds it full at exactly the spec's count, and a ring
/// attached from the file says the same count.
#[test]
fn any_slot_count_is_the_limit_of_events_in_flight() {
    use daq_engine::ring::{ClaimError, Next};
    for count in [1usize, 3, 5, 8, 500] {
        let mut s = spec(&unique("capacity"), &f4(), 4, vec![1]);
        s.slot_count = count;
        s.policy = Policy::Drop;
        let ring = Ring::create(&places(HugePages::Off, None), &s).unwrap();
        assert_eq!(ring.slot_count(), count);
        let mut producer = ring.producer().unwrap();
        let mut reader = ring.reader(0, 0).unwrap();
        let mut in_flight = 0;
        while producer.has_room() {
            producer.claim(Duration::ZERO).unwrap().publish();
            in_flight += 1;
            assert!(
                in_flight <= count,
                "slot_count {count}: more events in flight"
            );
        }
        assert_eq!(in_flight, count, "slot_count {count}");
        assert_eq!(producer.claim(Duration::ZERO).err(), Some(ClaimError::Full));
        assert_eq!(ring.stats().slot_count, count as u64);
        let attached = Ring::attach(ring.path(), None, None).unwrap();
        assert_eq!(attached.slot_count(), count);
        // One event read and released: room for exactly one more.
        match reader.next(Duration::ZERO) {
            Next::Event(ev) => drop(ev),
            _ => panic!("slot_count {count}: the first event is not there"),
        }
        assert!(producer.has_room());
        producer.claim(Duration::ZERO).unwrap().publish();
        assert!(!producer.has_room(), "slot_count {count}");
    }
}
