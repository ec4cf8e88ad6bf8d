//! `daq-engine bench hdf5`: how fast run files are written, beside the physical limit and
//! beside the tool users would otherwise use.
//!
//! Writes the same events — 4 float32 channels x 4096 samples, 64 KiB each, noise around a
//! baseline from a fixed seed — four ways into the same directory (so the same disk), each
//! timed up to and including an fsync of the file: a plain sequential file write of the raw
//! bytes, [`RunFileWriter`] uncompressed, [`RunFileWriter`] with shuffle+deflate level 1
//! (compressed on its own threads while it writes), and h5py (`scripts/bench_h5py.py`, when
//! a Python with h5py is found) uncompressed and with shuffle+gzip level 1. The size
//! reference for the compressed file is `h5repack` (shuffle + gzip level 1) of the
//! uncompressed run file, timed too: what a stop used to wait for.
//!
//! Guarantees: every figure is measured in this run; a comparison that could not be made is
//! reported with the reason, never estimated. Must never leave its files behind.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::error::ExportError;
use super::hdf5::{
    BufferHandle, BufferOptions, Compression, RunFileWriter, RunInfo, RunStats, WriterOptions,
};
use crate::dtype::{Dtype, Metadata};

/// Samples per channel in one benchmark event.
pub const SAMPLES: usize = 4096;
/// Channels (float32 fields) in one benchmark event.
pub const CHANNELS: usize = 4;
/// Bytes in one benchmark event (64 KiB).
pub const EVENT_BYTES: usize = SAMPLES * CHANNELS * 4;
/// Distinct events generated and reused cyclically.
const POOL: usize = 64;
/// Alternating rounds of the writers (best of each reported).
const ROUNDS: usize = 3;
const _: () = assert!(ROUNDS >= 1);
/// Why every writer has a best figure after the rounds.
const MEASURED: &str = "ROUNDS >= 1 rounds measure every writer";

/// The h5py script, embedded so the benchmark runs from any directory.
const H5PY_SCRIPT: &str = include_str!("../../scripts/bench_h5py.py");

/// One timed write.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Event bytes written (what the user asked to store).
    pub bytes: u64,
    /// Size of the resulting file.
    pub file_bytes: u64,
    /// Wall time including the final fsync.
    pub seconds: f64,
}

impl Measurement {
    /// Event megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            f64::INFINITY
        }
    }
}

/// What `daq-engine bench hdf5` prints.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Where the files were written.
    pub dir: PathBuf,
    /// Events per measurement.
    pub events: u64,
    /// Plain sequential write of the event bytes (`write` + `fsync`).
    pub plain: Measurement,
    /// Run file, no compression.
    pub uncompressed: Measurement,
    /// Run file, shuffle + deflate level 1.
    pub compressed: Measurement,
    /// h5py writing the same layout uncompressed, or why it could not run.
    pub h5py_uncompressed: Result<Measurement, String>,
    /// h5py writing the same layout with gzip level 1 + shuffle, or why it could not run.
    pub h5py_compressed: Result<Measurement, String>,
    /// `h5repack` compressing the uncompressed run file with shuffle + gzip level 1 (its
    /// time, the compressed file's size), or why it could not run.
    pub h5repack: Result<Measurement, String>,
    /// Compression threads the writer used.
    pub threads: usize,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hdf5 export: {} events of {} x {} float32 ({} KiB each) in {}",
            self.events,
            CHANNELS,
            SAMPLES,
            EVENT_BYTES / 1024,
            self.dir.display()
        )?;
        writeln!(
            f,
            "  (each figure includes the final fsync; best of {ROUNDS} rounds in rotating order, uncompressed and compressed writers apart)"
        )?;
        let plain = self.plain.mb_per_s();
        let line = |f: &mut fmt::Formatter<'_>, name: &str, m: &Measurement| {
            writeln!(
                f,
                "  {name:<34} {:>9.1} MB/s  {:>5.1}% of plain  file {:>6.1} MB (ratio {:.2})",
                m.mb_per_s(),
                100.0 * m.mb_per_s() / plain,
                m.file_bytes as f64 / 1e6,
                m.bytes as f64 / m.file_bytes.max(1) as f64
            )
        };
        line(f, "plain sequential write", &self.plain)?;
        line(f, "daq-engine uncompressed", &self.uncompressed)?;
        line(
            f,
            &format!("daq-engine shuffle+deflate 1 ({} thr)", self.threads),
            &self.compressed,
        )?;
        for (name, r) in [
            ("h5py uncompressed", &self.h5py_uncompressed),
            ("h5py shuffle+gzip 1", &self.h5py_compressed),
            ("h5repack shuffle+gzip 1 of a file", &self.h5repack),
        ] {
            match r {
                Ok(m) => line(f, name, m)?,
                Err(why) => writeln!(f, "  {name:<34} not measured: {why}")?,
            }
        }
        if let Ok(h) = &self.h5py_uncompressed {
            writeln!(
                f,
                "  uncompressed: daq-engine / h5py = {:.2}",
                self.uncompressed.mb_per_s() / h.mb_per_s()
            )?;
        }
        if let Ok(h) = &self.h5py_compressed {
            writeln!(
                f,
                "  compressed:   daq-engine / h5py = {:.2}",
                self.compressed.mb_per_s() / h.mb_per_s()
            )?;
        }
        if let Ok(r) = &self.h5repack {
            writeln!(
                f,
                "  compressed size: daq-engine / h5repack = {:.3}",
                self.compressed.file_bytes as f64 / r.file_bytes.max(1) as f64
            )?;
        }
        Ok(())
    }
}

/// The benchmark record type: `ch0` … `ch3`, float32.
pub fn event_dtype() -> Dtype {
    Dtype::parse([("ch0", "f4"), ("ch1", "f4"), ("ch2", "f4"), ("ch3", "f4")])
        .expect("static benchmark dtype is valid")
}

/// `POOL` events of noise around a baseline (xorshift, fixed seed), record-interleaved.
fn event_pool() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..POOL)
        .map(|_| {
            let mut ev = Vec::with_capacity(EVENT_BYTES);
            for _ in 0..SAMPLES * CHANNELS {
                // Sum of 4 uniforms: roughly Gaussian noise, sigma about 2 ADC units.
                let s: f64 = (0..4)
                    .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64)
                    .sum();
                let v = 100.0 + (s - 2.0) * 3.5;
                ev.extend_from_slice(&(v as f32).to_le_bytes());
            }
            ev
        })
        .collect()
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_file(path: &Path) -> Result<(), ExportError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn plain_write(path: &Path, pool: &[Vec<u8>], events: u64) -> Result<Measurement, ExportError> {
    let start = Instant::now();
    let f = std::fs::File::create(path).map_err(io_err(path))?;
    // 1 MiB writes, the size of one run-file chunk.
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    for i in 0..events {
        w.write_all(&pool[i as usize % POOL])
            .map_err(io_err(path))?;
    }
    let f = w.into_inner().map_err(|e| ExportError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(io_err(path))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement {
        bytes: events * EVENT_BYTES as u64,
        file_bytes: file_size(path),
        seconds,
    })
}

/// The faster of two measurements of one writer.
fn faster(a: Measurement, b: Measurement) -> Measurement {
    if b.seconds < a.seconds {
        b
    } else {
        a
    }
}

/// Keeps in `kept` the fastest measurement so far.
fn keep_best(kept: &mut Option<Measurement>, m: Measurement) {
    *kept = Some(match kept.take() {
        Some(p) => faster(p, m),
        None => m,
    });
}

/// Keeps in `kept` the fastest measurement so far, or the first error (which stays).
fn keep_best_or_error(
    kept: &mut Option<Result<Measurement, String>>,
    m: Result<Measurement, String>,
) {
    *kept = Some(match (kept.take(), m) {
        (Some(Ok(p)), Ok(m)) => Ok(faster(p, m)),
        (Some(Err(e)), _) | (_, Err(e)) => Err(e),
        (None, m) => m,
    });
}

/// A run file at `path` with one buffer `raw` of the benchmark's events, in 1 MiB chunks
/// (what `daq-engine bench hdf5` and the criterion bench both write).
pub fn bench_file(
    path: &Path,
    compression: Compression,
) -> Result<(RunFileWriter, BufferHandle), ExportError> {
    let mut w = RunFileWriter::create(path, RunInfo::new("bench"), WriterOptions::default())?;
    let options = BufferOptions {
        compression,
        chunk_bytes: 1 << 20,
        ..BufferOptions::default()
    };
    let b = w.add_buffer("raw", &event_dtype(), SAMPLES, options)?;
    Ok((w, b))
}

fn run_file_write(
    path: &Path,
    pool: &[Vec<u8>],
    events: u64,
    compression: Compression,
) -> Result<Measurement, ExportError> {
    let start = Instant::now();
    let (mut w, b) = bench_file(path, compression)?;
    for i in 0..events {
        let meta = Metadata {
            counter: i as i64,
            timestamp: i as f64 * 1e-3,
            deadtime: 0.0,
        };
        w.append(b, &pool[i as usize % POOL], &meta)?;
    }
    w.finish(RunStats::default())?;
    fsync_file(path)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement {
        bytes: events * EVENT_BYTES as u64,
        file_bytes: file_size(path),
        seconds,
    })
}

/// Times `h5repack` compressing the run file `input` (shuffle + gzip level 1 on
/// `/raw/data`, as the writer's files used to be compressed at close) into `output`, with
/// the fsync of the result.
fn h5repack_write(input: &Path, output: &Path, events: u64) -> Result<Measurement, String> {
    let start = Instant::now();
    let mut cmd = Command::new("h5repack");
    super::hdf5::no_inherited_files(&mut cmd);
    let out = cmd
        .args([
            "--low=2",
            "--high=2",
            "-f",
            "/raw/data:SHUF",
            "-f",
            "/raw/data:GZIP=1",
        ])
        .arg(input)
        .arg(output)
        .output()
        .map_err(|e| format!("cannot run h5repack: {e} (install hdf5-tools)"))?;
    if !out.status.success() {
        return Err(format!(
            "h5repack failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    fsync_file(output).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement {
        bytes: events * EVENT_BYTES as u64,
        file_bytes: file_size(output),
        seconds,
    })
}

/// The Python to run h5py with: `$DAQ_PYTHON`, else `python3`, if it imports h5py and numpy.
pub fn h5py_python() -> Result<String, String> {
    let py = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".to_string());
    match Command::new(&py)
        .args(["-c", "import h5py, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(py),
        Ok(o) => Err(format!(
            "{py} cannot import h5py and numpy ({}); set DAQ_PYTHON to a Python that can \
             (python3 -m venv v && v/bin/pip install h5py numpy)",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        )),
        Err(e) => Err(format!("cannot run {py}: {e}; set DAQ_PYTHON")),
    }
}

fn json_number(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn h5py_write(
    py: &str,
    path: &Path,
    events: u64,
    compression: &str,
) -> Result<Measurement, String> {
    let out = Command::new(py)
        .args(["-c", H5PY_SCRIPT])
        .arg(path)
        .arg(events.to_string())
        .arg(compression)
        .output()
        .map_err(|e| format!("cannot run {py}: {e}"))?;
    let _ = std::fs::remove_file(path);
    if !out.status.success() {
        return Err(format!(
            "bench_h5py.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match (
        json_number(&text, "seconds"),
        json_number(&text, "bytes"),
        json_number(&text, "file_bytes"),
    ) {
        (Some(seconds), Some(bytes), Some(file_bytes)) => Ok(Measurement {
            bytes: bytes as u64,
            file_bytes: file_bytes as u64,
            seconds,
        }),
        _ => Err(format!("bench_h5py.py printed no result: {text}")),
    }
}

/// Runs the benchmark with `events` events per measurement in `dir` (which must exist) and
/// removes its files afterwards.
pub fn run(dir: impl AsRef<Path>, events: u64) -> Result<BenchReport, ExportError> {
    let dir = dir.as_ref().to_path_buf();
    let events = events.max(1);
    let pool = event_pool();
    let tag = std::process::id();
    let p = |name: &str| dir.join(format!("daq-bench-{tag}-{name}"));
    let (plain_path, unc_path, comp_path, py_path, repack_path) = (
        p("plain.bin"),
        p("uncompressed.h5"),
        p("deflate.h5"),
        p("h5py.h5"),
        p("h5repack.h5"),
    );
    let py = h5py_python();
    let h5py = |compression: &str| match &py {
        Ok(py) => h5py_write(py, &py_path, events, compression),
        Err(why) => Err(why.clone()),
    };
    let result = (|| {
        // The disk's speed drifts (write-back caches below the VM): the fast writers are
        // measured in alternation, ROUNDS times, and the best of each is reported.
        let mut plain: Option<Measurement> = None;
        let mut uncompressed: Option<Measurement> = None;
        let mut h5py_uncompressed: Option<Result<Measurement, String>> = None;
        // Untimed warm-up of the same size: the first large write of a process often waits
        // for the kernel to reclaim memory for the page cache (seconds on a busy machine),
        // which is not the writer's cost.
        plain_write(&plain_path, &pool, events)?;
        let _ = std::fs::remove_file(&plain_path);
        for round in 0..ROUNDS {
            // Each round starts with another writer, so no writer always pays for what the
            // one before it left in the page cache.
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => {
                        let m = plain_write(&plain_path, &pool, events)?;
                        let _ = std::fs::remove_file(&plain_path);
                        keep_best(&mut plain, m);
                    }
                    1 => {
                        let m = run_file_write(&unc_path, &pool, events, Compression::None)?;
                        let _ = std::fs::remove_file(&unc_path);
                        keep_best(&mut uncompressed, m);
                    }
                    _ => {
                        keep_best_or_error(&mut h5py_uncompressed, h5py("none"));
                    }
                }
            }
        }
        // The compressed writers are bound by the CPU, which other work on the machine
        // takes in bursts: they too alternate, ROUNDS times, best of each.
        let mut compressed: Option<Measurement> = None;
        let mut h5py_compressed: Option<Result<Measurement, String>> = None;
        for round in 0..ROUNDS {
            for k in 0..2 {
                if (round + k) % 2 == 0 {
                    let deflate = Compression::Deflate { level: 1 };
                    let m = run_file_write(&comp_path, &pool, events, deflate)?;
                    let _ = std::fs::remove_file(&comp_path);
                    keep_best(&mut compressed, m);
                } else {
                    keep_best_or_error(&mut h5py_compressed, h5py("gzip1"));
                }
            }
        }
        // The size reference: the same events written uncompressed (untimed), then
        // compressed by h5repack as the writer did at close before.
        run_file_write(&unc_path, &pool, events, Compression::None)?;
        let h5repack = h5repack_write(&unc_path, &repack_path, events);
        let _ = std::fs::remove_file(&unc_path);
        let _ = std::fs::remove_file(&repack_path);
        Ok(BenchReport {
            dir: dir.clone(),
            events,
            plain: plain.expect(MEASURED),
            uncompressed: uncompressed.expect(MEASURED),
            compressed: compressed.expect(MEASURED),
            h5py_uncompressed: h5py_uncompressed.unwrap_or_else(|| Err("not run".to_string())),
            h5py_compressed: h5py_compressed.unwrap_or_else(|| Err("not run".to_string())),
            h5repack,
            threads: super::deflate::Pool::default_threads(),
        })
    })();
    for path in [&plain_path, &unc_path, &comp_path, &py_path, &repack_path] {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_measures_every_writer_and_cleans_up() {
        let dir = crate::fsio::test_dir("bench-test");
        let r = run(&dir, 40).unwrap();
        assert_eq!(r.events, 40);
        for m in [&r.plain, &r.uncompressed, &r.compressed] {
            assert_eq!(m.bytes, 40 * EVENT_BYTES as u64);
            assert!(m.seconds > 0.0);
        }
        assert_eq!(r.plain.file_bytes, r.plain.bytes);
        // The uncompressed file holds every byte plus HDF5's structure and metadata.
        assert!(r.uncompressed.file_bytes >= r.plain.bytes);
        // Noise of sigma ~2 in float32 compresses, but not below a third.
        assert!(r.compressed.file_bytes < r.uncompressed.file_bytes);
        assert!(r.compressed.file_bytes > r.plain.bytes / 3);
        // h5repack (hdf5-tools) gives the size reference; its shuffle+gzip 1 of the same
        // events is within a few percent of the writer's libdeflate level 1.
        match &r.h5repack {
            Ok(h) => {
                let ratio = r.compressed.file_bytes as f64 / h.file_bytes as f64;
                assert!((0.8..1.05).contains(&ratio), "{ratio}");
            }
            Err(why) => println!("SKIPPED h5repack reference: {why}"),
        }
        let text = r.to_string();
        assert!(text.contains("plain sequential write"), "{text}");
        assert!(text.contains("h5py uncompressed"), "{text}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "files left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_numbers_are_found() {
        let t = r#"{"seconds": 0.25, "bytes": 1310720, "file_bytes": 99}"#;
        assert_eq!(json_number(t, "seconds"), Some(0.25));
        assert_eq!(json_number(t, "bytes"), Some(1_310_720.0));
        assert_eq!(json_number(t, "file_bytes"), Some(99.0));
        assert_eq!(json_number(t, "missing"), None);
    }
}
