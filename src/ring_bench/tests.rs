use super::*;

fn small(sizes: Vec<usize>, groups: Vec<usize>) -> RingBenchOptions {
    RingBenchOptions {
        sizes,
        groups,
        repeats: 1,
        min_events: 3_000,
        max_events: 3_000,
        paced_rate_hz: 20_000.0,
        paced_events: 200,
        ring_bytes: 64 * 1024,
        huge: HugePages::Off,
        no_peer: true,
        ..RingBenchOptions::default()
    }
}

/// Held by every test here that makes rings: they run in one process, in parallel, and
/// name their rings by the process id, so a test counting the ring files left in /dev/shm
/// counted another test's live ring (it failed so in a clean-clone `make test`).
static MAKES_RINGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn making_rings() -> std::sync::MutexGuard<'static, ()> {
    MAKES_RINGS.lock().unwrap_or_else(|p| p.into_inner())
}

fn our_ring_files() -> usize {
    let prefix = format!("daq-ring-bench-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0)
}

fn ordered(l: &Latency) -> bool {
    0 < l.p50_ns && l.p50_ns <= l.p99_ns && l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns
}

#[test]
fn every_group_reads_every_event_in_other_processes() {
    let _rings = making_rings();
    let report = run(&small(vec![64, 4096], vec![1, 2])).unwrap();
    assert_eq!(report.rows.len(), 4);
    let cases: Vec<(usize, usize)> = report.rows.iter().map(|r| (r.bytes, r.groups)).collect();
    assert_eq!(cases, [(64, 1), (64, 2), (4096, 1), (4096, 2)]);
    for r in &report.rows {
        // A reader that missed an event or saw a wrong event number fails the run, so a
        // row exists only when every group read all 3000 events.
        assert_eq!(r.ours.events, 3_000);
        assert!(r.ours.elapsed_ns > 0);
        assert!(ordered(&r.ours.latency), "{:?}", r.ours.latency);
        let paced = r.ours_paced.unwrap();
        assert_eq!(paced.events, 200);
        assert_eq!(r.ours_paced_poll.unwrap().events, 200);
        assert!(ordered(&paced.latency), "{:?}", paced.latency);
        // (No bound on how long the paced run took: wall-clock figures are the benchmark's
        // output, not something a test may assert.)
        assert!(paced.elapsed_ns > 0);
        assert!(r.memcpy_events_per_s > 0.0);
        assert_eq!(r.peer, None);
        assert_eq!(r.slots, 16.max((64 * 1024 / r.bytes).min(1024)));
    }
    assert_eq!(report.peer, PeerStatus::Skipped);
    assert_eq!(report.backing, Backing::Normal.to_string());
    assert_eq!(our_ring_files(), 0, "ring files left in /dev/shm");
    let text = report.to_string();
    for needle in [
        "Throughput",
        "paced at 20000 Hz",
        "64 B",
        "4 KiB",
        "share that CPU",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn bad_options_are_refused_before_anything_runs() {
    let cases = [
        small(vec![12], vec![1]),
        small(vec![8], vec![1]),
        small(vec![64], vec![0]),
        small(vec![64], vec![17]),
        small(vec![], vec![1]),
        RingBenchOptions {
            consumer_cpu: 4096,
            ..small(vec![64], vec![1])
        },
        RingBenchOptions {
            repeats: 0,
            ..small(vec![64], vec![1])
        },
    ];
    for opts in cases {
        assert!(
            matches!(run(&opts), Err(RingBenchError::Options(_))),
            "{opts:?}"
        );
    }
}

#[test]
fn default_geometry() {
    let o = RingBenchOptions::default();
    assert_eq!(o.slots(64), 1024);
    assert_eq!(o.slots(4096), 1024);
    assert_eq!(o.slots(65536), 64);
    assert_eq!(o.slots(3 << 20), 16);
    assert_eq!(o.full_events(64), 600_000);
    assert_eq!(o.full_events(4096), 524_288);
    assert_eq!(o.full_events(65536), 32_768);
    assert_eq!(o.full_events(1 << 30), 20_000);
    assert_eq!(source_bytes(65536), 512 << 20);
    assert_eq!(source_bytes(4096), 1 << 20);
}

#[test]
fn peer_result_line() {
    let line = "noise\npeer events=500 bytes=64 subscribers=2 elapsed_ns=1000 p50_ns=10 p99_ns=20 p999_ns=30 max_ns=40 errors=0\n";
    let t = parse_peer_line(line, 500).unwrap();
    assert_eq!(t.events, 500);
    assert_eq!(t.elapsed_ns, 1000);
    assert_eq!(
        t.latency,
        Latency {
            p50_ns: 10,
            p99_ns: 20,
            p999_ns: 30,
            max_ns: 40
        }
    );
    assert_eq!(t.events_per_s(), 500e9 / 1000.0);
    assert!(parse_peer_line(line, 501)
        .unwrap_err()
        .contains("asked 501"));
    let errs = line.replace("errors=0", "errors=3");
    assert!(parse_peer_line(&errs, 500).unwrap_err().contains("3 wrong"));
    let short = line.replace(" p99_ns=20", "");
    assert!(parse_peer_line(&short, 500).unwrap_err().contains("p99_ns"));
    assert!(parse_peer_line("garbage", 500).is_err());
}

#[test]
fn missing_peer_says_how_to_build_it() {
    let opts = RingBenchOptions {
        peer: Some(PathBuf::from("/nonexistent/ring-peer")),
        ..small(vec![64], vec![1])
    };
    let m = peer_program(&opts).unwrap_err();
    assert!(
        m.contains("/nonexistent/ring-peer") && m.contains("benches/peer"),
        "{m}"
    );
}

/// Runs the real iceoryx2 baseline when it has been built; says so when it has not.
#[test]
fn iceoryx2_baseline_when_built() {
    let _rings = making_rings();
    let opts = RingBenchOptions {
        no_peer: false,
        paced_events: 100,
        ..small(vec![64], vec![2])
    };
    let program = match peer_program(&opts) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("SKIPPED iceoryx2_baseline_when_built: {m}");
            return;
        }
    };
    let report = run(&opts).unwrap();
    assert_eq!(report.peer, PeerStatus::Ran(program));
    let row = &report.rows[0];
    assert_eq!(row.peer.unwrap().events, 3_000);
    assert_eq!(row.peer_paced.unwrap().events, 100);
    assert!(report.to_string().contains("iceoryx2 baseline:"));
}

/// The busy-machine case measures every event it was asked for and (not real-time here)
/// leaves the throttling setting alone.
#[test]
fn loaded_case_counts_every_event_and_cleans_up() {
    let _rings = making_rings();
    let before = read_trimmed(RT_RUNTIME);
    let opts = RingBenchOptions {
        realtime: false,
        ..small(vec![64], vec![1])
    };
    let r = loaded(&opts, 64, 2_000, 20_000.0).unwrap();
    assert_eq!((r.events, r.bytes), (2_000, 64));
    assert!(ordered(&r.latency), "{:?}", r.latency);
    assert!(!r.unthrottled);
    assert_eq!(read_trimmed(RT_RUNTIME), before);
    assert!(r.to_string().contains("p99.9"));
}
