//! [`Ring`]: creating a ring file, attaching to one (validating its header before trusting
//! any of it), the supervisor's calls (reclaim, detach, close) and the counters.
//!
//! Must never: hand out a view of a ring whose header was not validated against the file
//! length, or remove a ring file whose creator still runs.

use super::core::{self, Control, Core, Group, SeqWords};
use super::error::{AttachError, CreateError};
use super::layout::{
    slot_size_for, slots_for, Geometry, Header, Policy, RingSpec, SlotHeader, LAYOUT_VERSION,
    MAGIC, READY,
};
use super::sync::{AtomicU64, Ordering};
use super::{MAX_GROUPS, MAX_MEMBERS};
use crate::dtype::{Base, ByteOrder, Dtype, FieldType, Shape, MAX_DIMS, MAX_FIELDS};
use crate::shm::pid_alive;
use crate::shm::{Backing, ShmError, ShmFile, ShmPlace};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a [`Ring`] handle shares: the mapping and the validated header facts. Immutable after
/// create or attach; everything that changes lives in the mapping, behind atomics.
pub(super) struct Inner {
    /// The mapping, at least `geo.total` bytes.
    pub(super) shm: ShmFile,
    /// The layout, computed from the header and checked against it and the file length.
    pub(super) geo: Geometry,
    /// Events in flight at most, 1 ..= `geo.slots` (the header's `capacity`).
    pub(super) capacity: usize,
    /// The file name.
    pub(super) name: String,
    /// The record type (from the spec, or rebuilt from the header's field table).
    pub(super) dtype: Dtype,
    /// Records per event.
    pub(super) data_length: usize,
    /// Full-ring policy.
    pub(super) policy: Policy,
    /// Members of each group, each ≤ MAX_MEMBERS; `members.len() == geo.n_groups`.
    pub(super) members: Vec<usize>,
    /// This process created the file (it is in [`CREATED`] while this lives).
    pub(super) created: bool,
}

/// Ring files this process created and still holds. A file naming this process as its
/// creator that is not listed here was left by an earlier process with the same pid (pids
/// repeat, e.g. in containers) and is stale; one listed here is live.
static CREATED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn created_here(path: &Path) -> bool {
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|p| p == path)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.created {
            let path = self.shm.path();
            CREATED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| p != path);
        }
    }
}

impl Inner {
    pub(super) fn base(&self) -> *mut u8 {
        self.shm.as_ptr()
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: the file was validated to be at least `geo.total` ≥ size_of::<Header>() bytes
        // long; the mapping is page aligned; Header is plain data and atomics.
        unsafe { &*(self.base() as *const Header) }
    }

    pub(super) fn core(&self) -> Core<'_> {
        let g = &self.geo;
        // SAFETY: the geometry was computed from (and validated against) the header and the
        // file length, so each region lies inside the mapping, is page aligned (≥ the 128-byte
        // alignment of Control and Group), and holds zero-initialised or protocol-maintained
        // atomics, for which every bit pattern is valid. The mapping lives as long as `self`.
        unsafe {
            Core {
                ctl: &*(self.base().add(g.control) as *const Control),
                groups: std::slice::from_raw_parts(
                    self.base().add(g.groups) as *const Group,
                    g.n_groups,
                ),
                done: std::slice::from_raw_parts(
                    self.base().add(g.done) as *const AtomicU64,
                    g.n_groups * g.slots,
                ),
                // Each slot starts with its SlotHeader, whose first field is the word.
                seqs: SeqWords::new(
                    self.base()
                        .add(g.data + std::mem::offset_of!(SlotHeader, seq)),
                    g.slot_size,
                ),
                slots: g.slots as u64,
                capacity: self.capacity as u64,
            }
        }
    }

    pub(super) fn slot(&self, e: u64) -> *mut u8 {
        let s = (e as usize) & (self.geo.slots - 1);
        // SAFETY: s < slots, so the slot lies inside the data region of the mapping.
        unsafe { self.base().add(self.geo.data + s * self.geo.slot_size) }
    }

    pub(super) fn slot_header(&self, e: u64) -> &SlotHeader {
        // SAFETY: each slot starts 64-byte aligned inside the mapping with a SlotHeader.
        unsafe { &*(self.slot(e) as *const SlotHeader) }
    }

    pub(super) fn data_bytes(&self) -> usize {
        self.data_length * self.dtype.record_size()
    }
}

/// A ring in shared memory: a handle any number of producers, readers and observers in
/// this process share. Cloning is cheap.
#[derive(Clone)]
pub struct Ring {
    pub(super) inner: Arc<Inner>,
}

// SAFETY: all access to the shared mapping goes through atomics or through the slot
// ownership the protocol hands out; Inner's other fields are immutable after construction.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Ring {
    /// Creates a ring in the first usable place (see [`crate::shm::places`]), pre-faulted
    /// and locked. A stale file of the same name left by a crashed run is removed with a
    /// warning; one whose creator still runs (this process included, while it holds that
    /// ring) is [`CreateError::InUse`]. The file is removed when the last
    /// handle of this `Ring` in the creating process is dropped.
    ///
    /// ```
    /// use daq_engine::dtype::Dtype;
    /// use daq_engine::ring::{CreateError, Policy, Ring, RingSpec};
    /// use daq_engine::shm::{places, HugePages};
    ///
    /// let spec = RingSpec {
    ///     name: format!("doc-create-{}", std::process::id()),
    ///     dtype: Dtype::parse([("ch0", "i2"), ("ch1", "i2")]).unwrap(),
    ///     data_length: 1024,
    ///     slot_count: 64,
    ///     policy: Policy::Block,
    ///     groups: vec![1, 2], // one reading process, and two sharing the work
    /// };
    /// let places = places(HugePages::Off, None);
    /// let ring = Ring::create(&places, &spec).unwrap();
    /// assert_eq!(ring.event_bytes(), 1024 * 4);
    /// assert_eq!(ring.groups(), &[1, 2]);
    /// // The name is taken while this process holds the ring.
    /// assert!(matches!(Ring::create(&places, &spec), Err(CreateError::InUse { .. })));
    /// drop(ring); // the creator's last handle removes the file
    /// assert!(Ring::create(&places, &spec).is_ok());
    /// ```
    pub fn create(places: &[ShmPlace], spec: &RingSpec) -> Result<Ring, CreateError> {
        let bad = |problem: String| CreateError::BadSpec {
            name: spec.name.clone(),
            problem,
        };
        if spec.slot_count == 0 {
            return Err(bad("slot_count must be at least 1".into()));
        }
        if spec.data_length == 0 {
            return Err(bad("data_length must be at least 1".into()));
        }
        if spec.groups.len() > MAX_GROUPS {
            return Err(bad(format!(
                "{} reading workers; at most {MAX_GROUPS} may read one buffer",
                spec.groups.len()
            )));
        }
        if let Some(&m) = spec.groups.iter().find(|&&m| m == 0 || m > MAX_MEMBERS) {
            return Err(bad(format!(
                "a reading worker with {m} processes; 1 to {MAX_MEMBERS} allowed"
            )));
        }
        if spec.name.is_empty() || spec.name.contains('/') {
            return Err(bad(
                "a ring name must be non-empty and contain no '/'".into()
            ));
        }
        let geo = spec
            .data_length
            .checked_mul(spec.dtype.record_size())
            .and_then(slot_size_for)
            .and_then(|slot_size| {
                Geometry::new(slots_for(spec.slot_count)?, slot_size, spec.groups.len())
            })
            .ok_or_else(|| bad("the ring would be larger than memory".into()))?;
        let shm = match ShmFile::create(places, &spec.name, geo.total) {
            Ok(f) => f,
            Err(ShmError::Exists { path }) => {
                Self::remove_stale(&path)?;
                ShmFile::create(places, &spec.name, geo.total)?
            }
            Err(e) => return Err(e.into()),
        };
        let inner = Inner {
            shm,
            geo,
            capacity: spec.slot_count,
            name: spec.name.clone(),
            dtype: spec.dtype.clone(),
            data_length: spec.data_length,
            policy: spec.policy,
            members: spec.groups.clone(),
            created: true,
        };
        CREATED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inner.shm.path().to_path_buf());
        // SAFETY: the fresh file is zero-filled and at least geo.total bytes; we are its only
        // user until `ready` is set, so plain writes to the header are not racing anyone.
        unsafe {
            let h = inner.base() as *mut Header;
            (*h).magic = MAGIC;
            (*h).version = LAYOUT_VERSION;
            (*h).schema_hash = spec.dtype.schema_hash();
            (*h).slot_count = geo.slots as u64;
            (*h).capacity = spec.slot_count as u64;
            (*h).slot_size = geo.slot_size as u64;
            (*h).data_length = spec.data_length as u64;
            (*h).record_size = spec.dtype.record_size() as u64;
            (*h).region_size = geo.total as u64;
            (*h).control_offset = geo.control as u64;
            (*h).groups_offset = geo.groups as u64;
            (*h).done_offset = geo.done as u64;
            (*h).slots_offset = geo.data as u64;
            (*h).n_groups = geo.n_groups as u32;
            (*h).policy = spec.policy.code();
            (*h).n_fields = spec.dtype.fields().len() as u32;
            (*h).creator_pid = std::process::id();
            for ((entry, ext), f) in (*h)
                .fields
                .iter_mut()
                .zip((*h).field_ext.iter_mut())
                .zip(spec.dtype.fields())
            {
                entry.name[..f.name.len()].copy_from_slice(f.name.as_bytes());
                entry.code = f.ty.base.code();
                entry.order = u8::from(f.ty.order == ByteOrder::Big);
                let dims = f.ty.shape.dims();
                entry.ndim = dims.len() as u8;
                entry.offset = f.offset as u32;
                ext.len = f.ty.base.text_len();
                ext.dims[..dims.len()].copy_from_slice(dims);
            }
        }
        let core = inner.core();
        for (g, &m) in spec.groups.iter().enumerate() {
            let info = &core.groups[g].info;
            info.members.store(m as u32, Ordering::SeqCst);
            info.active.store(1, Ordering::SeqCst);
            for mem in &core.groups[g].members {
                mem.held.store(core::HELD_NONE, Ordering::SeqCst);
            }
        }
        inner.header().ready.store(READY, Ordering::SeqCst);
        Ok(Ring {
            inner: Arc::new(inner),
        })
    }

    fn remove_stale(path: &Path) -> Result<(), CreateError> {
        let pid = match ShmFile::open(path) {
            Ok(f) if f.len() >= std::mem::size_of::<Header>() => {
                // SAFETY: the mapping is at least a header long; we only read a u32.
                unsafe { (*(f.as_ptr() as *const Header)).creator_pid }
            }
            _ => 0,
        };
        let live = if pid == std::process::id() {
            created_here(path)
        } else {
            pid != 0 && pid_alive(pid)
        };
        if live {
            return Err(CreateError::InUse {
                path: path.to_path_buf(),
                pid,
            });
        }
        tracing::warn!(
            "removed stale ring file {} left by a run that ended without cleaning up (creator pid {pid})",
            path.display()
        );
        std::fs::remove_file(path).map_err(|source| {
            CreateError::Shm(ShmError::Io {
                path: path.to_path_buf(),
                what: "removing a stale ring",
                source,
            })
        })
    }

    /// Attaches to an existing ring by path, validating its header. `expect_dtype` and
    /// `expect_length`, when given, must match the ring's.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-attach-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::AttachError;
    ///
    /// // Another process would pass the path it was given; expectations are checked.
    /// let seen = Ring::attach(ring.path(), Some(ring.dtype()), Some(16)).unwrap();
    /// assert_eq!(seen.slot_count(), 8);
    /// assert!(matches!(
    ///     Ring::attach(ring.path(), None, Some(32)),
    ///     Err(AttachError::Length { found: 16, expected: 32, .. })
    /// ));
    /// ```
    pub fn attach(
        path: &Path,
        expect_dtype: Option<&Dtype>,
        expect_length: Option<usize>,
    ) -> Result<Ring, AttachError> {
        let shm = ShmFile::open(path)?;
        let p = || path.to_path_buf();
        let need = std::mem::size_of::<Header>();
        if shm.len() < need {
            return Err(AttachError::TooShort {
                path: p(),
                len: shm.len(),
                need,
            });
        }
        // SAFETY: the mapping is at least one Header long and page aligned; every field of
        // Header is valid for any bit pattern.
        let h = unsafe { &*(shm.as_ptr() as *const Header) };
        // `ready` first: the creator stores it after every other header field, so only once
        // it is seen are the others complete (and visible to this process). A file still
        // being built is zero-filled or has its magic already: not ready, not "not a ring".
        if h.ready.load(Ordering::SeqCst) != READY {
            if h.magic == MAGIC || h.magic == [0; 8] {
                return Err(AttachError::NotReady { path: p() });
            }
            return Err(AttachError::BadMagic {
                path: p(),
                found: h.magic,
            });
        }
        if h.magic != MAGIC {
            return Err(AttachError::BadMagic {
                path: p(),
                found: h.magic,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(AttachError::Version {
                path: p(),
                found: h.version,
                expected: LAYOUT_VERSION,
            });
        }
        let corrupt = |problem: String| AttachError::Corrupt { path: p(), problem };
        let slots = h.slot_count as usize;
        if slots < 2 || !slots.is_power_of_two() {
            return Err(corrupt(format!(
                "slot_count {slots} is not a power of two ≥ 2"
            )));
        }
        if h.capacity == 0 || h.capacity > h.slot_count {
            return Err(corrupt(format!(
                "capacity {} is not between 1 and the {slots} slots",
                h.capacity
            )));
        }
        let capacity = h.capacity as usize;
        if h.n_groups as usize > MAX_GROUPS || h.n_fields as usize > MAX_FIELDS || h.n_fields == 0 {
            return Err(corrupt(format!(
                "{} groups / {} fields out of range",
                h.n_groups, h.n_fields
            )));
        }
        let mut fields = Vec::new();
        let n = h.n_fields as usize;
        for (e, ext) in h.fields[..n].iter().zip(&h.field_ext[..n]) {
            let len = e.name.iter().position(|&b| b == 0).unwrap_or(e.name.len());
            let name = std::str::from_utf8(&e.name[..len])
                .map_err(|_| corrupt("a field name is not UTF-8".into()))?;
            let bad = || {
                corrupt(format!("field '{name}' has an unknown type (code {}, byte order {}, {} dimensions, length {})", e.code, e.order, e.ndim, ext.len))
            };
            let base = Base::from_code(e.code, ext.len).ok_or_else(bad)?;
            if base.text_len() != ext.len || e.order > 1 || e.ndim as usize > MAX_DIMS {
                return Err(bad());
            }
            let dims = &ext.dims[..e.ndim as usize];
            if ext.dims[e.ndim as usize..].iter().any(|&d| d != 0) {
                return Err(bad());
            }
            let order = if e.order == 1 {
                ByteOrder::Big
            } else {
                ByteOrder::Little
            };
            let ty = Shape::new(dims)
                .and_then(|shape| FieldType::new(base, order, shape))
                .filter(|t| t.order == order)
                .ok_or_else(bad)?;
            fields.push((name.to_string(), ty));
        }
        let dtype = Dtype::new(fields).map_err(|e| corrupt(e.to_string()))?;
        if dtype.schema_hash() != h.schema_hash || dtype.record_size() as u64 != h.record_size {
            return Err(corrupt("field table does not match its schema hash".into()));
        }
        let data_length = h.data_length as usize;
        let slot_size = data_length
            .checked_mul(dtype.record_size())
            .and_then(slot_size_for)
            .ok_or_else(|| {
                corrupt(format!(
                    "data_length {data_length} × record size {} overflows",
                    dtype.record_size()
                ))
            })?;
        let geo = Geometry::new(slots, slot_size, h.n_groups as usize).ok_or_else(|| {
            corrupt(format!(
                "{slots} slots of {slot_size} bytes for {} groups overflow the address space",
                h.n_groups
            ))
        })?;
        let stored = (
            h.slot_size,
            h.control_offset,
            h.groups_offset,
            h.done_offset,
            h.slots_offset,
            h.region_size,
        );
        let computed = (
            geo.slot_size as u64,
            geo.control as u64,
            geo.groups as u64,
            geo.done as u64,
            geo.data as u64,
            geo.total as u64,
        );
        if stored != computed {
            return Err(corrupt(format!(
                "offsets {stored:?} differ from the layout {computed:?}"
            )));
        }
        if shm.len() < geo.total {
            return Err(corrupt(format!(
                "file is {} bytes, the layout needs {} (truncated?)",
                shm.len(),
                geo.total
            )));
        }
        let policy = Policy::from_code(h.policy)
            .ok_or_else(|| corrupt(format!("unknown policy {}", h.policy)))?;
        if let Some(want) = expect_dtype {
            if *want != dtype {
                return Err(AttachError::Schema {
                    path: p(),
                    found: dtype.to_string(),
                    expected: want.to_string(),
                });
            }
        }
        if let Some(want) = expect_length {
            if want != data_length {
                return Err(AttachError::Length {
                    path: p(),
                    found: data_length,
                    expected: want,
                });
            }
        }
        let name = crate::fsio::file_name(path);
        let mut inner = Inner {
            shm,
            geo,
            capacity,
            name,
            dtype,
            data_length,
            policy,
            members: Vec::new(),
            created: false,
        };
        let core = inner.core();
        let members: Vec<usize> = core
            .groups
            .iter()
            .map(|g| (g.info.members.load(Ordering::SeqCst) as usize).min(MAX_MEMBERS))
            .collect();
        inner.members = members;
        Ok(Ring {
            inner: Arc::new(inner),
        })
    }

    /// Where event `e`'s slot keeps its records (`event_bytes()` long) and its metadata
    /// record (24 bytes: counter, timestamp, deadtime) in this process's mapping. The
    /// addresses stay valid while any clone of this `Ring` lives; who may read or write them
    /// is the ring protocol's business (a claimed event, a kept event), not this call's.
    pub fn slot_places(&self, e: u64) -> (*mut u8, *mut u8) {
        let base = self.inner.slot(e);
        // SAFETY: the slot lies inside the mapping; SLOT_HEADER and the metadata offset are
        // inside the slot (see SlotHeader).
        unsafe {
            (
                base.add(super::layout::SLOT_HEADER),
                base.add(std::mem::offset_of!(SlotHeader, meta)),
            )
        }
    }

    /// The ring's name (its file name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        self.inner.shm.path()
    }

    /// Record type.
    pub fn dtype(&self) -> &Dtype {
        &self.inner.dtype
    }

    /// Records per event.
    pub fn data_length(&self) -> usize {
        self.inner.data_length
    }

    /// Bytes of data per event.
    pub fn event_bytes(&self) -> usize {
        self.inner.data_bytes()
    }

    /// Events in flight at most: the spec's slot_count (the ring may lay out more slots
    /// inside, see [`slots_for`](super::slots_for)).
    pub fn slot_count(&self) -> usize {
        self.inner.capacity
    }

    /// Slots laid out: a power of two ≥ [`slot_count`](Ring::slot_count); event `e` lives in
    /// slot `e & (slots() - 1)`.
    pub fn slots(&self) -> usize {
        self.inner.geo.slots
    }

    /// Full-ring policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The consumer groups, each given by its number of members (processes): `groups()[g]`
    /// is how many processes share group `g`'s events, and `groups().len()` is the number of
    /// groups. The same shape as [`RingSpec::groups`], which it returns for a created ring.
    pub fn groups(&self) -> &[usize] {
        &self.inner.members
    }

    /// The pages behind the ring.
    pub fn backing(&self) -> Backing {
        self.inner.shm.backing()
    }

    /// Whether the mapping is locked in memory.
    pub fn locked(&self) -> bool {
        self.inner.shm.locked()
    }

    /// Size of the mapping in bytes.
    pub fn mapped_bytes(&self) -> usize {
        self.inner.shm.len()
    }

    pub(super) fn member_alive(&self, g: usize, m: usize) -> bool {
        let pid = self.inner.core().groups[g].members[m]
            .pid
            .load(Ordering::SeqCst);
        pid_alive(pid)
    }

    /// Supervisor: finds members whose process is gone and releases the events they held,
    /// so the producer and the other members go on. Returns the events released this call.
    pub fn reclaim_dead(&self) -> u64 {
        let core = self.inner.core();
        let mut total = 0;
        for (g, &n) in self.inner.members.iter().enumerate() {
            for m in 0..n {
                let pid = core.groups[g].members[m].pid.load(Ordering::SeqCst);
                if pid == 0 || pid_alive(pid) {
                    continue;
                }
                let (released, settled) =
                    core.reclaim(g, m, pid, &|i| i != m && self.member_alive(g, i));
                total += released;
                if settled {
                    let _ = core.groups[g].members[m].pid.compare_exchange(
                        pid,
                        0,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
            }
        }
        total
    }

    /// Supervisor: the producer stops waiting for consumer group `group` (its worker is gone
    /// and will not come back).
    pub fn detach_group(&self, group: usize) {
        if group < self.inner.members.len() {
            self.inner.core().detach(group);
        }
    }

    /// Counts `n` events consumer group `group` read but did not use as released unread (see
    /// [`Reader::count_unused`](super::Reader::count_unused)); the supervisor's way for a
    /// group whose processes are gone. At most what the group read from this ring and has
    /// not counted so; returns how many were counted.
    pub fn count_unused(&self, group: usize, n: u64) -> u64 {
        let Some(g) = self.inner.core().groups.get(group) else {
            return 0;
        };
        let read = self.stats().groups.get(group).map_or(0, GroupStats::read);
        let n = n.min(read);
        g.info.abandoned.fetch_add(n, Ordering::SeqCst);
        n
    }

    /// Supervisor: ends the stream on the producer's behalf (its process died).
    pub fn close(&self) {
        self.inner.core().close();
    }

    /// Pid of the producer process, if one is attached.
    pub fn producer_pid(&self) -> Option<u32> {
        let p = self.inner.core().ctl.producer_pid.load(Ordering::SeqCst);
        (p != 0).then_some(p)
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        let core = self.inner.core();
        // The groups first, then the write cursor: a group never releases what is not
        // published yet and the cursor only grows, so in the snapshot every group's counts
        // stay within `published` even while events flow (read the other way round, a
        // release after the cursor was read made delivered + lost exceed what was produced).
        let groups: Vec<GroupStats> = core
            .groups
            .iter()
            .map(|g| GroupStats {
                released: g.release.load(Ordering::SeqCst),
                claimed: g.claim.load(Ordering::SeqCst),
                abandoned: g.info.abandoned.load(Ordering::SeqCst),
                active: g.info.active.load(Ordering::SeqCst) != 0,
            })
            .collect();
        // A sole member learns of an event from its slot's word, which the producer stores
        // before the cursor (once per batch): what a group claimed is published even while
        // `write` still lags.
        let published = groups
            .iter()
            .map(|g| g.claimed)
            .fold(core.ctl.write.load(Ordering::SeqCst), u64::max);
        let oldest = core.min_release(published);
        RingStats {
            published,
            lost: core.ctl.stats.lost.load(Ordering::SeqCst),
            blocked_ns: core.ctl.stats.blocked_ns.load(Ordering::SeqCst),
            filled: published - oldest.min(published),
            slot_count: self.inner.capacity as u64,
            closed: core.ctl.eos.load(Ordering::SeqCst) != 0,
            groups,
        }
    }

    /// Keeps the file when the last handle in this process is dropped (the creator hands it
    /// to the engine, which removes it at the end of the run).
    pub fn keep_file(&mut self) -> bool {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.shm.disown();
                true
            }
            None => false,
        }
    }
}

/// Counters of one consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    /// Events fully released.
    pub released: u64,
    /// Events claimed by members.
    pub claimed: u64,
    /// Events released unread: by the supervisor for members that died holding them, and
    /// by members that left (dropped their reader) before reading all they had claimed.
    /// Per group, events read + abandoned == events released.
    pub abandoned: u64,
    /// Whether the producer waits for this group.
    pub active: bool,
}

impl GroupStats {
    /// Events the group read: released, less those released unread (its books'
    /// `delivered`).
    pub fn read(&self) -> u64 {
        self.released.saturating_sub(self.abandoned)
    }
}

/// A snapshot of a ring's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingStats {
    /// Events published.
    pub published: u64,
    /// Events dropped because the ring was full (`drop` policy).
    pub lost: u64,
    /// Nanoseconds the producer waited for room (`block` policy): dead time.
    pub blocked_ns: u64,
    /// Slots holding events not yet released by every active group.
    pub filled: u64,
    /// Events in flight at most (the spec's slot_count).
    pub slot_count: u64,
    /// The stream has ended.
    pub closed: bool,
    /// Per consumer group.
    pub groups: Vec<GroupStats>,
}
