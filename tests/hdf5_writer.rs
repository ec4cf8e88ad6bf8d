//! The HDF5 run-file writer: layout, exact round trip of bytes and metadata, chunked batches
//! and flushes, rotation without split or duplicated events, histograms, attributes,
//! `inspect`, typed errors, and `h5dump -H` running clean on every file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::export::hdf5::{
    no_inherited_files, AttrValue, BufferOptions, Compression, Rotation, RunFileWriter, RunInfo,
    RunStats, WriterOptions,
};
use daq_engine::export::{inspect, read_buffer, ExportError};

mod hdf5_files;
use hdf5_files::{h5dump_clean, temp_dir};

/// Deterministic event bytes: every byte depends on the counter and its position.
fn event_bytes(dtype: &Dtype, data_length: usize, counter: i64) -> Vec<u8> {
    hdf5_files::event_bytes_of_len(dtype.record_size() * data_length, counter)
}

fn meta(counter: i64) -> Metadata {
    Metadata {
        counter,
        timestamp: 1_700_000_000.0 + counter as f64 * 0.001,
        deadtime: (counter % 10) as f64 / 100.0,
    }
}

fn waveform_dtype() -> Dtype {
    Dtype::parse([("ch0", "f4"), ("ch1", "i2"), ("flag", "u1"), ("t", "f8")]).unwrap()
}

#[test]
fn round_trip_is_byte_exact_for_both_compressions() {
    let dir = temp_dir("roundtrip");
    let dtype = waveform_dtype();
    let feat = Dtype::parse([("height", "f8"), ("n", "u4")]).unwrap();
    let path = dir.join("run.h5");
    let mut w = RunFileWriter::create(
        &path,
        RunInfo::new("buffers: {}\n"),
        WriterOptions::default(),
    )
    .unwrap();
    // Small chunks so that 37 events cross several chunk boundaries and a partial chunk.
    let raw = w
        .add_buffer(
            "raw",
            &dtype,
            100,
            BufferOptions {
                compression: Compression::Deflate { level: 4 },
                chunk_bytes: 5 * 1500,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    let features = w
        .add_buffer(
            "features",
            &feat,
            1,
            BufferOptions {
                compression: Compression::None,
                chunk_bytes: 1 << 20,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    for c in 0..37 {
        w.append(raw, &event_bytes(&dtype, 100, c), &meta(c))
            .unwrap();
        if c % 3 == 0 {
            w.append(features, &event_bytes(&feat, 1, c), &meta(c))
                .unwrap();
        }
        if c == 12 {
            // A flush in the middle of a chunk must not misalign later writes.
            w.flush().unwrap();
        }
    }
    w.write_histogram(
        "height",
        &[0.0, 1.0, 2.0, 3.0],
        &[5, 7, 1],
        &[
            ("unit", AttrValue::Text("mV".into())),
            ("entries", AttrValue::Int(13)),
        ],
    )
    .unwrap();
    let summary = w
        .finish(RunStats {
            events_lost: 3,
            dead_time_fraction: 0.25,
        })
        .unwrap();
    assert_eq!(summary.files, vec![path.clone()]);
    assert_eq!(summary.events, vec![37, 13]);

    let got = read_buffer(&path, "raw").unwrap();
    assert_eq!(got.dtype, dtype);
    assert_eq!(got.data_length, 100);
    assert_eq!(got.events, 37);
    let want: Vec<u8> = (0..37).flat_map(|c| event_bytes(&dtype, 100, c)).collect();
    assert_eq!(got.data, want);
    assert_eq!(got.metadata, (0..37).map(meta).collect::<Vec<_>>());

    let got = read_buffer(&path, "features").unwrap();
    assert_eq!(got.events, 13);
    let counters: Vec<i64> = (0..37).filter(|c| c % 3 == 0).collect();
    let want: Vec<u8> = counters
        .iter()
        .flat_map(|c| event_bytes(&feat, 1, *c))
        .collect();
    assert_eq!(got.data, want);
    assert_eq!(
        got.metadata.iter().map(|m| m.counter).collect::<Vec<_>>(),
        counters
    );

    let text = inspect(&path).unwrap();
    for needle in [
        "buffer 'raw'",
        "shape [37, 100]",
        "('ch0', '<f4'), ('ch1', '<i2'), ('flag', '|u1'), ('t', '<f8')",
        "counter 0 … 36: 0 missing, 0 duplicated (complete)",
        "@events_written = 50",
        "@events_lost = 3",
        "@dead_time_fraction = 0.25",
        "@closed_cleanly = 1",
        "histogram 'height': 3 bins from 0 to 3, 13 entries",
        "@unit = mV",
        "buffers: {}",
    ] {
        assert!(
            text.contains(needle),
            "inspect output lacks {needle:?}:\n{text}"
        );
    }
    h5dump_clean(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rotation_by_size_keeps_every_event_once_and_every_file_complete() {
    let dir = temp_dir("rotate");
    let dtype = Dtype::parse([("adc", "u2")]).unwrap();
    let options = WriterOptions {
        flush_interval: Duration::from_secs(3600),
        rotation: Rotation {
            max_bytes: Some(10_000),
            max_duration: None,
        },
    };
    let mut w =
        RunFileWriter::create(dir.join("run_20261125.h5"), RunInfo::new("x: 1"), options).unwrap();
    let b = w
        .add_buffer(
            "pulses",
            &dtype,
            512,
            BufferOptions {
                compression: Compression::default(),
                chunk_bytes: 4096,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    // Histograms given before the appends are written into every file as it closes.
    w.write_histogram("h", &[0.0, 1.0], &[4], &[]).unwrap();
    // 1048 bytes per event with metadata: a file fills after 10 events.
    let n = 95i64;
    for c in 0..n {
        w.append(b, &event_bytes(&dtype, 512, c), &meta(c)).unwrap();
    }
    let summary = w.finish(RunStats::default()).unwrap();
    assert_eq!(summary.files.len(), 10);
    let names: Vec<String> = summary
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "run_20261125_0001.h5");
    assert_eq!(names[9], "run_20261125_0010.h5");
    let mut all = Vec::new();
    for (i, f) in summary.files.iter().enumerate() {
        let got = read_buffer(f, "pulses").unwrap();
        assert_eq!(got.events, got.metadata.len());
        assert_eq!(got.events, if i < 9 { 10 } else { 5 }, "file {i}");
        for (k, m) in got.metadata.iter().enumerate() {
            let c = m.counter;
            assert_eq!(
                &got.data[k * 1024..(k + 1) * 1024],
                event_bytes(&dtype, 512, c).as_slice()
            );
            all.push(c);
        }
        let text = inspect(f).unwrap();
        assert!(text.contains(&format!("@file_index = {}", i + 1)), "{text}");
        assert!(text.contains("@closed_cleanly = 1"), "{text}");
        assert!(text.contains("setup (1 lines)"), "{text}");
        assert!(text.contains("histogram 'h'"), "{text}");
        // Every rotated file was compressed once closed, and no temporary file is left.
        assert!(text.contains("filters [Shuffle, Deflate(1)]"), "{text}");
        h5dump_clean(f);
    }
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".packing"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rotation_by_time_starts_new_files() {
    let dir = temp_dir("rotate-time");
    let dtype = Dtype::parse([("x", "f4")]).unwrap();
    let options = WriterOptions {
        flush_interval: Duration::from_secs(3600),
        rotation: Rotation {
            max_bytes: None,
            max_duration: Some(Duration::from_millis(30)),
        },
    };
    let mut w = RunFileWriter::create(dir.join("run.h5"), RunInfo::new(""), options).unwrap();
    let b = w
        .add_buffer("b", &dtype, 4, BufferOptions::default())
        .unwrap();
    for c in 0..6 {
        w.append(b, &event_bytes(&dtype, 4, c), &meta(c)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
    let summary = w.finish(RunStats::default()).unwrap();
    // From the second event on, each append finds its file older than 30 ms and starts a
    // new one before writing: six files of one event each, none empty.
    assert_eq!(summary.files.len(), 6);
    let mut all = Vec::new();
    for f in &summary.files {
        let got = read_buffer(f, "b").unwrap();
        assert_eq!(got.events, 1, "{}", f.display());
        all.extend(got.metadata.iter().map(|m| m.counter));
        h5dump_clean(f);
    }
    assert_eq!(all, (0..6).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gives_typed_errors() {
    let dir = temp_dir("errors");
    let dtype = Dtype::parse([("x", "f4")]).unwrap();
    let path = dir.join("run.h5");
    let mut w = hdf5_files::writer_flushing_every(&path, "", Duration::from_secs(3600));
    assert!(matches!(
        RunFileWriter::create(&path, RunInfo::new(""), WriterOptions::default()),
        Err(ExportError::Create { .. })
    ));
    assert!(matches!(
        w.add_buffer("a/b", &dtype, 4, BufferOptions::default()),
        Err(ExportError::BadName { .. })
    ));
    assert!(matches!(
        w.add_buffer("histograms", &dtype, 4, BufferOptions::default()),
        Err(ExportError::BadName { .. })
    ));
    let b = w
        .add_buffer("b", &dtype, 4, BufferOptions::default())
        .unwrap();
    assert!(matches!(
        w.add_buffer("b", &dtype, 4, BufferOptions::default()),
        Err(ExportError::BadName { .. })
    ));
    let e = w.append(b, &[0u8; 15], &meta(0)).unwrap_err();
    assert!(
        matches!(
            e,
            ExportError::EventSize {
                got: 15,
                expected: 16,
                ..
            }
        ),
        "{e}"
    );
    w.append(b, &[0u8; 16], &meta(0)).unwrap();
    assert!(matches!(
        w.add_buffer("late", &dtype, 4, BufferOptions::default()),
        Err(ExportError::LayoutFrozen(_))
    ));
    assert!(matches!(
        w.write_histogram("h", &[0.0, 1.0], &[1, 2], &[]),
        Err(ExportError::HistogramShape { .. })
    ));
    // One-hour interval: nothing is due right after the last append.
    assert!(!w.flush_if_due().unwrap());
    let summary = w.finish(RunStats::default()).unwrap();
    assert_eq!(summary.events, vec![1]);
    assert!(matches!(
        inspect(dir.join("missing.h5")),
        Err(ExportError::Read { .. })
    ));
    h5dump_clean(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropped_writer_keeps_events_and_says_not_closed_cleanly() {
    let dir = temp_dir("drop");
    let dtype = Dtype::parse([("x", "i8")]).unwrap();
    let path = dir.join("run.h5");
    {
        let mut w = hdf5_files::writer_flushing_every(&path, "", Duration::ZERO);
        let b = w
            .add_buffer("b", &dtype, 3, BufferOptions::default())
            .unwrap();
        for c in 0..7 {
            w.append(b, &event_bytes(&dtype, 3, c), &meta(c)).unwrap();
        }
        assert!(w.flush_if_due().unwrap());
    }
    let got = read_buffer(&path, "b").unwrap();
    assert_eq!(
        got.metadata.iter().map(|m| m.counter).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert!(inspect(&path).unwrap().contains("@closed_cleanly = 0"));
    h5dump_clean(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}

mod garbage {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A valid run file's bytes, written once.
    fn valid_file() -> &'static Vec<u8> {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| {
            let dir = temp_dir("garbage-src");
            let path = dir.join("run.h5");
            let dtype = waveform_dtype();
            let mut w =
                RunFileWriter::create(&path, RunInfo::new("x"), WriterOptions::default()).unwrap();
            let b = w
                .add_buffer("raw", &dtype, 20, BufferOptions::default())
                .unwrap();
            for c in 0..30 {
                w.append(b, &event_bytes(&dtype, 20, c), &meta(c)).unwrap();
            }
            w.write_histogram("h", &[0.0, 1.0, 2.0], &[1, 2], &[])
                .unwrap();
            w.finish(RunStats::default()).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            bytes
        })
    }

    /// Reading back a damaged file gives an answer or a typed error, never a panic, and
    /// never data of the wrong size.
    fn read_damaged(bytes: &[u8], tag: u64) {
        let dir = temp_dir(&format!("garbage-{tag}"));
        let path = dir.join("bad.h5");
        std::fs::write(&path, bytes).unwrap();
        let _ = inspect(&path);
        if let Ok(got) = read_buffer(&path, "raw") {
            assert_eq!(
                got.data.len(),
                got.events * got.data_length * got.dtype.record_size()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, rng_seed: proptest::test_runner::RngSeed::Fixed(5), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn truncated_files_never_panic(cut in 0usize..20_000) {
            let v = valid_file();
            let cut = cut.min(v.len());
            read_damaged(&v[..cut], cut as u64);
        }

        #[test]
        fn flipped_bytes_never_panic(at in 0usize..20_000, x in 1u8..=255) {
            let mut v = valid_file().clone();
            let at = at % v.len();
            v[at] ^= x;
            read_damaged(&v, 1_000_000 + at as u64);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            read_damaged(&bytes, 2_000_000 + bytes.len() as u64);
        }
    }
}

/// A slow run (a few events between flushes, far less than a chunk) with compression: the
/// file must not keep a dead copy of the growing chunk per flush (SWMR never reuses space):
/// the chunk a flush stored is stored again in place, raw, and every event reads back
/// exactly.
#[test]
fn slow_compressed_run_does_not_grow_with_its_flushes() {
    let dir = temp_dir("slow-deflate");
    let path = dir.join("run.h5");
    let dtype = Dtype::parse([("ch0", "u4")]).unwrap();
    let n = 64;
    let mut w = RunFileWriter::create(&path, RunInfo::new("x"), WriterOptions::default()).unwrap();
    let b = w
        .add_buffer("raw", &dtype, n, BufferOptions::default())
        .unwrap();
    // Incompressible words (xorshift), so a compressed copy is as large as the data.
    let mut x = 0x9E37_79B9u32;
    let mut events = Vec::new();
    for c in 0..400i64 {
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()
            })
            .collect();
        w.append(b, &bytes, &meta(c)).unwrap();
        events.extend_from_slice(&bytes);
        if c % 10 == 9 {
            w.flush().unwrap();
        }
    }
    w.finish(RunStats::default()).unwrap();
    let raw = (events.len() + 400 * 24) as u64;
    let size = std::fs::metadata(&path).unwrap().len();
    // 40 flushes of a growing, never-full 1 MiB chunk: kept copies would make it ~20x raw.
    // Stored in place it is one chunk (1 MiB) and the metadata.
    assert!(
        size < raw + (1 << 20) + 64 * 1024,
        "{size} bytes for {raw} bytes of events"
    );
    let text = inspect(&path).unwrap();
    assert!(text.contains("filters [Shuffle, Deflate(1)]"), "{text}");
    let got = read_buffer(&path, "raw").unwrap();
    assert_eq!(got.data, events);
    assert_eq!(got.metadata.len(), 400);
    assert!(!dir.join("run.h5.packing").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` events of `dtype` × `data_length` whose values compress like a digitizer's: small
/// integers and floats on a slow ramp with a little seeded noise.
fn compressible_events(dtype: &Dtype, data_length: usize, n: usize) -> Vec<Vec<u8>> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            (0..dtype.record_size() * data_length)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly the same high bits, noise in the low ones.
                    if i % 4 == 0 {
                        (x % 5) as u8
                    } else {
                        (i / 512) as u8
                    }
                })
                .collect()
        })
        .collect()
}

/// Writes `events` into a new file at `path` with one buffer `raw` of `compression`,
/// `chunk_events` events a chunk, flushing after the events whose index `flush_after`
/// says; returns the file's size.
fn write_events(
    path: &Path,
    dtype: &Dtype,
    data_length: usize,
    events: &[Vec<u8>],
    compression: Compression,
    chunk_events: usize,
    flush_after: impl Fn(usize) -> bool,
) -> u64 {
    let mut w = hdf5_files::writer_flushing_every(path, "x", Duration::from_secs(3600));
    let b = w
        .add_buffer(
            "raw",
            dtype,
            data_length,
            BufferOptions {
                compression,
                chunk_bytes: chunk_events * dtype.record_size() * data_length,
                ..BufferOptions::default()
            },
        )
        .unwrap();
    for (c, e) in events.iter().enumerate() {
        w.append(b, e, &meta(c as i64)).unwrap();
        if flush_after(c) {
            w.flush().unwrap();
        }
    }
    w.finish(RunStats::default()).unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// [`write_events`] twice into `dir`: deflated (level 1, shuffled) as `d.h5` and
/// uncompressed as `p.h5`; their sizes.
fn write_deflated_and_plain(
    dir: &Path,
    dtype: &Dtype,
    data_length: usize,
    events: &[Vec<u8>],
    chunk_events: usize,
    flush_after: impl Fn(usize) -> bool,
) -> (u64, u64) {
    let deflate = Compression::Deflate { level: 1 };
    let write = |name: &str, compression| {
        let path = dir.join(name);
        write_events(
            &path,
            dtype,
            data_length,
            events,
            compression,
            chunk_events,
            &flush_after,
        )
    };
    (write("d.h5", deflate), write("p.h5", Compression::None))
}

/// (filter mask, count) of the chunks of `/raw/data`, sorted by mask.
fn chunk_masks(path: &Path) -> Vec<(u32, usize)> {
    let mut masks = std::collections::BTreeMap::new();
    for mask in hdf5_files::chunk_filter_masks(path) {
        *masks.entry(mask).or_insert(0) += 1;
    }
    masks.into_iter().collect()
}

/// The output of `h5dump -d /raw/data` (values only), or None when h5dump is missing.
fn h5dump_values(path: &Path) -> Option<String> {
    let mut cmd = Command::new("h5dump");
    no_inherited_files(&mut cmd);
    let out = cmd.args(["-d", "/raw/data"]).arg(path).output().ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Everything after the dataset's name line (the file name differs).
    Some(text.split_once("DATASET").unwrap().1.to_string())
}

/// Compressed by the writer's threads: chunks filled between flushes are stored deflated
/// (filter mask 0), the chunks a flush stored while they grew stay raw (mask 3: both
/// filters skipped), and the last, partly filled chunk that no flush stored is deflated at
/// the close. The crate's reader, h5dump and h5py read exactly the values of an
/// uncompressed file of the same events.
#[test]
fn direct_compressed_chunks_read_back_like_an_uncompressed_file() {
    let dir = temp_dir("direct");
    let dtype = waveform_dtype();
    let events = compressible_events(&dtype, 100, 203);
    // 5 events a chunk; flushes inside chunks 2 and 7 (events 12 and 37), none at the end.
    let flush = |c: usize| c == 12 || c == 37;
    write_deflated_and_plain(&dir, &dtype, 100, &events, 5, flush);
    let (deflated, plain) = (dir.join("d.h5"), dir.join("p.h5"));
    // 41 chunks: 39 deflated, the two a flush stored while they grew stay raw.
    assert_eq!(chunk_masks(&deflated), vec![(0, 39), (3, 2)]);
    let got = read_buffer(&deflated, "raw").unwrap();
    assert_eq!(got.data, events.concat());
    assert_eq!(got.metadata, (0..203).map(meta).collect::<Vec<_>>());
    let text = inspect(&deflated).unwrap();
    assert!(text.contains("filters [Shuffle, Deflate(1)]"), "{text}");
    match (h5dump_values(&deflated), h5dump_values(&plain)) {
        (Some(a), Some(b)) => assert!(a == b, "h5dump shows other values"),
        _ => println!("SKIPPED h5dump check: h5dump not runnable; install hdf5-tools"),
    }
    let python = std::env::var("DAQ_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import h5py\na = h5py.File({:?}, 'r')['raw/data']\nb = h5py.File({:?}, 'r')['raw/data']\n\
         assert a.compression == 'gzip' and a.shuffle, (a.compression, a.shuffle)\n\
         assert a.dtype == b.dtype and a.shape == b.shape == (203, 100), (a.shape, b.shape)\n\
         assert a[:].tobytes() == b[:].tobytes()\nprint('h5py ok')\n",
        deflated.display().to_string(),
        plain.display().to_string()
    );
    match Command::new(&python).arg("-c").arg(&script).output() {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            println!("SKIPPED h5py check: {python} has no h5py")
        }
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("SKIPPED h5py check: {python}: {e}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run slower than a chunk per flush: every chunk is stored raw by a flush before it
/// fills. Deflating each once full would move it and leave its raw copy (SWMR frees no file
/// space): the file would be the raw data plus the compressed data. It must never be larger
/// than the uncompressed file of the same events.
#[test]
fn slow_compressible_run_is_no_larger_than_uncompressed() {
    let dir = temp_dir("slow-compressible");
    let dtype = waveform_dtype();
    let events = compressible_events(&dtype, 100, 400);
    let flush = |c: usize| c % 2 == 1;
    let (deflated, plain) = write_deflated_and_plain(&dir, &dtype, 100, &events, 4, flush);
    assert!(
        deflated <= plain + plain / 50,
        "compressed {deflated} bytes, uncompressed {plain}"
    );
    assert_eq!(
        read_buffer(dir.join("d.h5"), "raw").unwrap().data,
        events.concat()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 17: a compressed run slower than one chunk (1 MiB) per flush interval was stored
/// raw: every chunk was stored raw by a flush while it grew, and stays raw (SWMR frees no
/// space), so a 300 kB/s waveform run with `compression: deflate` got no compression at all.
/// Its chunks are now sized at the first flush so that several fill between two flushes:
/// only the one a flush finds growing is raw. Every event reads back exactly.
#[test]
fn a_slow_compressed_run_is_compressed() {
    let dir = temp_dir("slow-compressed");
    let dtype = waveform_dtype();
    let event = dtype.record_size() * 100;
    let events = compressible_events(&dtype, 100, 4000);
    // 200 events (300 kB) between flushes, 20 flushes: a 300 kB/s run flushed every second,
    // with the default 1 MiB chunks.
    let flush = |c: usize| c % 200 == 199;
    let chunk_events = (1 << 20) / event;
    let (deflated, plain) =
        write_deflated_and_plain(&dir, &dtype, 100, &events, chunk_events, flush);
    let d = dir.join("d.h5");
    println!(
        "slow run, 300 kB a flush: deflated {deflated} bytes, uncompressed {plain} bytes ({:.3})",
        deflated as f64 / plain as f64
    );
    let masks = chunk_masks(&d);
    println!("chunks (filter mask, count): {masks:?}");
    let count = |mask: u32| masks.iter().find(|m| m.0 == mask).map_or(0, |m| m.1);
    // At most the chunk each flush found growing is raw.
    assert!(count(3) <= 20, "{masks:?}");
    assert!(count(0) >= 3 * count(3), "{masks:?}");
    assert!(
        deflated < plain / 2,
        "compressed {deflated} bytes, uncompressed {plain}"
    );
    let got = read_buffer(&d, "raw").unwrap();
    assert_eq!(got.data, events.concat());
    assert_eq!(got.metadata, (0..4000).map(meta).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fast run (chunks fill between flushes) is as small as `h5repack` with the same filters
/// makes the uncompressed file of the same events, within 5 %.
#[test]
fn fast_compressed_run_is_within_5_percent_of_h5repack() {
    let dir = temp_dir("vs-h5repack");
    let dtype = waveform_dtype();
    let events = compressible_events(&dtype, 1000, 600);
    // 1 MiB-ish chunks (70 events of 15 kB), no flush but the close.
    let (ours, _) = write_deflated_and_plain(&dir, &dtype, 1000, &events, 70, |_| false);
    let mut cmd = Command::new("h5repack");
    no_inherited_files(&mut cmd);
    let out = cmd
        .args(["-f", "/raw/data:SHUF", "-f", "/raw/data:GZIP=1"])
        .arg(dir.join("p.h5"))
        .arg(dir.join("r.h5"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let theirs = std::fs::metadata(dir.join("r.h5")).unwrap().len();
            println!("daq-engine {ours} bytes, h5repack {theirs} bytes");
            assert!(
                ours as f64 <= 1.05 * theirs as f64,
                "daq-engine {ours} bytes, h5repack {theirs} bytes"
            );
        }
        Ok(o) => panic!("h5repack: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("SKIPPED h5repack comparison: {e} (install hdf5-tools)"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file another program wrote, whose `data` is plain numbers rather than our compound
/// records: `inspect` names the type it cannot take and still counts the bytes the numbers
/// hold, rather than saying "480 bytes stored for 0 bytes of records".
#[test]
fn inspect_counts_the_bytes_of_data_that_is_not_compound() {
    let dir = temp_dir("not-compound");
    let path = dir.join("foreign.h5");
    {
        let f = hdf5_metno::File::create(&path).unwrap();
        let g = f.create_group("raw").unwrap();
        let values: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let ds = g
            .new_dataset::<f32>()
            .shape((4, 30))
            .create("data")
            .unwrap();
        ds.write_raw(&values).unwrap();
    }
    let text = inspect(&path).unwrap();
    assert!(text.contains("data: shape [4, 30]"), "{text}");
    assert!(text.contains("not a compound type"), "{text}");
    assert!(
        text.contains("480 bytes stored for 480 bytes of records (ratio 1.00)"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
