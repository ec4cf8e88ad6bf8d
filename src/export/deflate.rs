//! Whole HDF5 chunks compressed by the exporter itself, on a small pool of threads, in the
//! exact byte format HDF5's own shuffle and deflate filters write: the byte shuffle of
//! `H5Z_filter_shuffle` (element size = the dataset's record size), then a zlib stream
//! (RFC 1950, what `H5Z_filter_deflate` writes with `compress2` and reads with `inflate`),
//! made with libdeflate. A chunk compressed here and stored with `H5Dwrite_chunk` (filter
//! mask 0) reads back through every HDF5 reader's filters like one HDF5 compressed itself.
//!
//! Guarantees:
//! - A [`ChunkJob`] owns its buffers; after its first use nothing is allocated for it again
//!   (the caller recycles jobs). Sending, compressing and receiving a job allocate nothing.
//! - [`Pool::next_done`] hands jobs back in exactly the order they were submitted (one lane
//!   per thread, submitted and collected round-robin), so chunks reach the file in order.
//! - A chunk that deflate does not make smaller is kept as it is ([`ChunkJob::stored`] says
//!   so with the filter mask that skips both filters), as HDF5 does with an optional filter.
//!
//! Must never: block the caller for longer than the oldest job in flight takes, or panic on
//! any chunk content.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// Filter mask of a chunk stored as it is: bit 0 (shuffle) and bit 1 (deflate) set, so a
/// reader skips both filters of the pipeline `[shuffle, deflate]`.
pub(crate) const STORED_RAW: u32 = 0b11;

/// One chunk on its way through the compressor, with every buffer it needs.
pub(crate) struct ChunkJob {
    /// The buffer (index in the writer) the chunk belongs to.
    pub buffer: usize,
    /// The chunk's first row in the dataset.
    pub row: u64,
    /// Rows of the chunk that hold events (the rest are zeros past the dataset's end).
    pub rows: u64,
    /// The whole chunk, records in row order (`chunk_rows * row_bytes` bytes).
    pub raw: Vec<u8>,
    /// Scratch for the shuffled bytes (as long as `raw`).
    shuffled: Vec<u8>,
    /// The zlib stream (room for `raw.len()` bytes: a longer one is not kept).
    out: Vec<u8>,
    /// Bytes of `out` in use; 0 when the chunk is stored raw.
    out_len: usize,
    /// Bytes per element for the shuffle: the dataset's record size.
    element: usize,
    /// Deflate level, 1..=9.
    level: u8,
}

impl ChunkJob {
    /// A job for chunks of `chunk_bytes` bytes of records of `element` bytes.
    pub fn new(buffer: usize, chunk_bytes: usize, element: usize, level: u8) -> ChunkJob {
        ChunkJob {
            buffer,
            row: 0,
            rows: 0,
            raw: vec![0; chunk_bytes],
            shuffled: vec![0; chunk_bytes],
            out: vec![0; chunk_bytes],
            out_len: 0,
            element: element.max(1),
            level: level.clamp(1, 9),
        }
    }

    /// The filter mask and the bytes to store for this chunk once it is compressed.
    pub fn stored(&self) -> (u32, &[u8]) {
        if self.out_len > 0 {
            (0, &self.out[..self.out_len])
        } else {
            (STORED_RAW, &self.raw)
        }
    }

    /// Shuffles and deflates `raw` with `c` (which must be at this job's level).
    fn compress(&mut self, c: &mut libdeflater::Compressor) {
        shuffle(&self.raw, self.element, &mut self.shuffled);
        self.out_len = match c.zlib_compress(&self.shuffled, &mut self.out) {
            Ok(n) if n < self.raw.len() => n,
            // Not smaller (or no room for it): stored raw.
            _ => 0,
        };
    }
}

/// HDF5's shuffle filter: byte `j` of element `i` goes to `j * n + i` (`n` whole elements);
/// bytes past the last whole element stay at the end. Elements of one byte, or a single
/// element, are copied unchanged (as `H5Z_filter_shuffle` leaves them). `out` is as long as
/// `input`.
pub(crate) fn shuffle(input: &[u8], element: usize, out: &mut [u8]) {
    let n = input.len() / element.max(1);
    if element <= 1 || n <= 1 {
        out.copy_from_slice(input);
        return;
    }
    let whole = n * element;
    // A block of records at a time, so that the records read stay in the L1 cache while
    // each of their bytes goes to its plane.
    const BLOCK: usize = 256;
    let mut first = 0;
    while first < n {
        let m = BLOCK.min(n - first);
        let records = &input[first * element..(first + m) * element];
        for j in 0..element {
            let plane = &mut out[j * n + first..j * n + first + m];
            for (dst, rec) in plane.iter_mut().zip(records.chunks_exact(element)) {
                *dst = rec[j];
            }
        }
        first += m;
    }
    out[whole..].copy_from_slice(&input[whole..]);
}

/// The compressor state of one thread: one libdeflate compressor, made again only when a
/// job asks for another level.
struct Worker {
    compressor: Option<(u8, libdeflater::Compressor)>,
}

impl Worker {
    fn run(&mut self, job: &mut ChunkJob) {
        let fresh = match &self.compressor {
            Some((level, _)) => *level != job.level,
            None => true,
        };
        if fresh {
            let level = libdeflater::CompressionLvl::new(i32::from(job.level))
                .unwrap_or_else(|_| libdeflater::CompressionLvl::fastest());
            self.compressor = Some((job.level, libdeflater::Compressor::new(level)));
        }
        if let Some((_, c)) = self.compressor.as_mut() {
            job.compress(c);
        }
    }
}

/// One thread with its job and result channels.
struct Lane {
    jobs: Sender<ChunkJob>,
    done: Receiver<ChunkJob>,
    thread: Option<JoinHandle<()>>,
}

/// Threads that compress chunks, handing them back in submission order.
pub(crate) struct Pool {
    lanes: Vec<Lane>,
    /// When not even one thread could be started (a process whose locked memory is at its
    /// limit cannot map a thread stack): chunks are compressed at submission, in the
    /// caller, and wait here (room for `depth` of them, made once).
    inline: Option<(Worker, std::collections::VecDeque<ChunkJob>)>,
    /// Lane of the next submission.
    next_in: usize,
    /// Lane of the oldest job in flight.
    next_out: usize,
    /// Jobs submitted and not yet handed back.
    in_flight: usize,
}

/// Why the pool could not take or return a job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// A compression thread ended (it panicked): its job is lost.
    #[error("a compression thread stopped")]
    Stopped,
}

impl Pool {
    /// The number of threads a pool takes by default: the cores this process may use, at
    /// most 4 (deflate level 1 runs at several hundred MB/s a core; more only fight the
    /// acquisition for cores).
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    }

    /// Starts `threads` (at least one) compression threads, each taking up to `depth` jobs
    /// ahead. The threads run under normal scheduling even when the exporter is real-time:
    /// compressing must never take a core from an importer at real-time priority. Threads
    /// that cannot be started are left out (logged); with none, the caller compresses.
    pub fn start(threads: usize, depth: usize) -> Pool {
        let mut lanes = Vec::with_capacity(threads.max(1));
        for k in 0..threads.max(1) {
            let (jobs, take) = crossbeam_channel::bounded::<ChunkJob>(depth.max(1));
            let (give, done) = crossbeam_channel::bounded::<ChunkJob>(depth.max(1));
            let thread = std::thread::Builder::new()
                .name(format!("deflate-{k}"))
                // The compressor's state is on the heap: a small stack is locked memory
                // saved in a process that locks all of its memory.
                .stack_size(256 << 10)
                .spawn(move || {
                    let param = libc::sched_param { sched_priority: 0 };
                    // SAFETY: sched_setscheduler on thread id 0 (the calling thread) with a
                    // valid param for SCHED_OTHER; it changes only this thread's policy.
                    unsafe {
                        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
                    }
                    let mut w = Worker { compressor: None };
                    for mut job in take {
                        w.run(&mut job);
                        if give.send(job).is_err() {
                            break;
                        }
                    }
                });
            match thread {
                Ok(thread) => lanes.push(Lane {
                    jobs,
                    done,
                    thread: Some(thread),
                }),
                Err(e) => {
                    tracing::warn!(
                        "could not start compression thread {k} ({e}); {} compress",
                        if lanes.is_empty() {
                            "the exporter's own thread will".to_string()
                        } else {
                            format!("{} threads", lanes.len())
                        }
                    );
                    break;
                }
            }
        }
        let inline = lanes.is_empty().then(|| {
            (
                Worker { compressor: None },
                std::collections::VecDeque::with_capacity(depth.max(1)),
            )
        });
        Pool {
            lanes,
            inline,
            next_in: 0,
            next_out: 0,
            in_flight: 0,
        }
    }

    /// Threads in the pool (at least 1: the caller, when none could be started).
    pub fn threads(&self) -> usize {
        self.lanes.len().max(1)
    }

    /// Jobs submitted and not yet handed back.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands `job` to the next thread (waits while that thread has `depth` jobs queued).
    pub fn submit(&mut self, mut job: ChunkJob) -> Result<(), PoolError> {
        if let Some((worker, done)) = self.inline.as_mut() {
            worker.run(&mut job);
            done.push_back(job);
            self.in_flight += 1;
            return Ok(());
        }
        let lane = &self.lanes[self.next_in];
        lane.jobs.send(job).map_err(|_| PoolError::Stopped)?;
        self.next_in = (self.next_in + 1) % self.lanes.len();
        self.in_flight += 1;
        Ok(())
    }

    /// The oldest job in flight once it is compressed (waits for it); `None` when none is
    /// in flight.
    pub fn next_done(&mut self) -> Result<Option<ChunkJob>, PoolError> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        if let Some((_, done)) = self.inline.as_mut() {
            self.in_flight -= 1;
            return Ok(done.pop_front());
        }
        let job = self.lanes[self.next_out]
            .done
            .recv()
            .map_err(|_| PoolError::Stopped)?;
        self.next_out = (self.next_out + 1) % self.lanes.len();
        self.in_flight -= 1;
        Ok(Some(job))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channels ends each thread's loop; results not collected are
        // dropped with their channels.
        let lanes = std::mem::take(&mut self.lanes);
        let mut threads = Vec::with_capacity(lanes.len());
        for mut lane in lanes {
            threads.extend(lane.thread.take());
            drop(lane);
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_matches_hdf5s_byte_planes() {
        let input: Vec<u8> = (0..14).collect();
        let mut out = vec![0; 14];
        // 3 elements of 4 bytes, 2 bytes left over.
        shuffle(&input, 4, &mut out);
        assert_eq!(out, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, 12, 13]);
        shuffle(&input, 1, &mut out);
        assert_eq!(out, input);
        shuffle(&input, 20, &mut out);
        assert_eq!(out, input);
        // Across several blocks of records: as the definition says.
        let input: Vec<u8> = (0..7 * 1000 + 3).map(|i| (i * 37 % 251) as u8).collect();
        let mut out = vec![0; input.len()];
        shuffle(&input, 7, &mut out);
        for (i, rec) in input[..7000].chunks_exact(7).enumerate() {
            for (j, b) in rec.iter().enumerate() {
                assert_eq!(out[j * 1000 + i], *b);
            }
        }
        assert_eq!(out[7000..], input[7000..]);
    }

    #[test]
    fn jobs_come_back_in_order_compressed_or_stored() {
        let mut pool = Pool::start(3, 2);
        in_order(&mut pool);
        // Without threads (none could be started) the caller compresses, same order.
        let mut pool = Pool {
            lanes: Vec::new(),
            inline: Some((Worker { compressor: None }, Default::default())),
            next_in: 0,
            next_out: 0,
            in_flight: 0,
        };
        in_order(&mut pool);
    }

    fn in_order(pool: &mut Pool) {
        let mut sent = Vec::new();
        for k in 0..7u64 {
            let mut job = ChunkJob::new(0, 4096, 8, 1);
            job.row = k;
            if k.is_multiple_of(2) {
                // Compressible: a ramp of small integers.
                for (i, b) in job.raw.iter_mut().enumerate() {
                    *b = (i / 64) as u8;
                }
            } else {
                // Incompressible: xorshift bytes.
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ k;
                for b in job.raw.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            sent.push(job.raw.clone());
            pool.submit(job).unwrap();
            if pool.in_flight() == 3 {
                let j = pool.next_done().unwrap().unwrap();
                check(&j, &sent[j.row as usize]);
            }
        }
        while let Some(j) = pool.next_done().unwrap() {
            check(&j, &sent[j.row as usize]);
        }
        assert_eq!(pool.in_flight(), 0);
    }

    fn check(job: &ChunkJob, raw: &[u8]) {
        let (mask, bytes) = job.stored();
        if job.row.is_multiple_of(2) {
            assert_eq!(mask, 0);
            assert!(bytes.len() < raw.len() / 4);
            let mut d = libdeflater::Decompressor::new();
            let mut back = vec![0; raw.len()];
            assert_eq!(d.zlib_decompress(bytes, &mut back).unwrap(), raw.len());
            let mut want = vec![0; raw.len()];
            shuffle(raw, 8, &mut want);
            assert_eq!(back, want);
        } else {
            assert_eq!(mask, STORED_RAW);
            assert_eq!(bytes, raw);
        }
    }
}
