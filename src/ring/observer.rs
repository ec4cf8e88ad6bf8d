//! Observers: copies of the latest event, taken without holding the producer back.
//!
//! Must never: return a copy torn by the producer overwriting the slot, or make the producer
//! wait.

use super::attach::Ring;
use super::layout::SLOT_HEADER;
use super::sync::{self, Ordering};
use crate::dtype::Metadata;

impl Ring {
    /// An observer: copies of the latest events, never holding the producer back.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-observer-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// let observer = ring.observer(); // takes no role: any number may look
    /// # drop(observer);
    /// ```
    pub fn observer(&self) -> RingObserver {
        RingObserver {
            ring: self.clone(),
            last: 0,
        }
    }
}

/// Copies of the latest events, taken without holding anything.
pub struct RingObserver {
    ring: Ring,
    /// Events published when the last copy was taken.
    last: u64,
}

impl RingObserver {
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Copies the latest published event into `data` (exactly the ring's event size) and
    /// `meta`, if one was published since the last call: `Ok(Some(index))`, or `Ok(None)`
    /// when nothing new was published. A copy torn by the producer overwriting the slot is
    /// detected and retried; never returned. A `data` of another size is an error (not
    /// "nothing new"), so a mistake cannot pass for an idle ring.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-latest-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::dtype::Metadata;
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let mut observer = ring.observer();
    /// let (mut data, mut meta) = (vec![0u8; ring.event_bytes()], Metadata::default());
    /// assert_eq!(observer.latest(&mut data, &mut meta), Ok(None)); // nothing yet
    /// for e in 0..3 {
    ///     let mut slot = producer.claim(Duration::from_secs(1)).unwrap();
    ///     slot.meta_mut().counter = e;
    ///     slot.publish();
    /// }
    /// // The newest event only, and only once.
    /// assert_eq!(observer.latest(&mut data, &mut meta), Ok(Some(2)));
    /// assert_eq!(meta.counter, 2);
    /// assert_eq!(observer.latest(&mut data, &mut meta), Ok(None));
    /// assert!(observer.latest(&mut [0u8; 3], &mut meta).is_err()); // not one event long
    /// ```
    pub fn latest(
        &mut self,
        data: &mut [u8],
        meta: &mut Metadata,
    ) -> Result<Option<u64>, WrongSize> {
        let inner = &*self.ring.inner;
        let n = inner.data_bytes();
        if data.len() != n {
            return Err(WrongSize {
                got: data.len(),
                want: n,
            });
        }
        let core = inner.core();
        loop {
            let w = core.ctl.write.load(Ordering::SeqCst);
            if w == 0 || w == self.last {
                return Ok(None);
            }
            let e = w - 1;
            let sh = inner.slot_header(e);
            let s1 = sh.seq.load(Ordering::Acquire);
            if s1 != 2 * e + 2 {
                // Already being overwritten by a later lap: look again at the newest.
                sync::spin();
                continue;
            }
            // SAFETY: the slot lies inside the mapping; the producer may be writing it
            // concurrently, which the sequence check below detects. Copying racy bytes is
            // done with volatile-free memcpy over shared memory the compiler cannot reason
            // about; the result is discarded unless the sequence word is unchanged.
            unsafe {
                std::ptr::copy_nonoverlapping(inner.slot(e).add(SLOT_HEADER), data.as_mut_ptr(), n);
                std::ptr::copy_nonoverlapping(
                    &sh.meta as *const Metadata,
                    meta as *mut Metadata,
                    1,
                );
            }
            sync::fence(Ordering::Acquire);
            if sh.seq.load(Ordering::Relaxed) == s1 {
                self.last = w;
                return Ok(Some(e));
            }
        }
    }
}

/// [`RingObserver::latest`] was given a buffer that is not one event long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the observer's copy buffer holds {got} bytes; an event of this ring is {want} bytes")]
pub struct WrongSize {
    /// Bytes given.
    pub got: usize,
    /// Bytes of one event.
    pub want: usize,
}
