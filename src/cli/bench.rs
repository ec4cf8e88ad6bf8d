//! `daq-engine bench pipeline`: the pipelines of the mimoCoRB2 benchmark
//! (`tiny_direct`, `large_direct`, `large_filter`) run through daq-engine, and — when a
//! reference directory with a mimoCoRB2 installation is given — through mimoCoRB2 itself in
//! the same go, case by case, with the ratio.
//!
//! Throughput is measured as the reference measures it: events received by the final
//! exporter divided by the time from the first event's creation to the moment the exporter
//! saw the end of the stream.

use super::exit;
use crate::analysis::plumbing::SinkReport;
use crate::dtype::{FieldType, Scalar};
use crate::engine::{Progress, RunOptions, Supervisor};
use crate::ring::Policy;
use crate::run_dir::plan::{BufferPlan, Plan, Restart, WorkerPlan};
use crate::worker::Registry;
use std::path::{Path, PathBuf};

/// One benchmark case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name, as in the reference (`tiny_direct`).
    pub name: &'static str,
    /// Samples per event.
    pub data_length: usize,
    /// float32 channels.
    pub channels: usize,
    /// With a `misc.copy` stage between source and sink.
    pub filter: bool,
    /// Slots per buffer.
    pub slot_count: usize,
}

/// The three cases of the issue, shaped as the reference's YAML files.
pub const CASES: [Case; 3] = [
    Case {
        name: "tiny_direct",
        data_length: 16,
        channels: 1,
        filter: false,
        slot_count: 128,
    },
    Case {
        name: "large_direct",
        data_length: 4096,
        channels: 4,
        filter: false,
        slot_count: 128,
    },
    Case {
        name: "large_filter",
        data_length: 4096,
        channels: 4,
        filter: true,
        slot_count: 128,
    },
];

impl Case {
    /// Bytes per event.
    pub fn event_bytes(&self) -> usize {
        self.data_length * self.channels * 4
    }

    /// The run plan for this case.
    pub fn plan(&self, run_dir: &Path, run_id: &str, events: u64) -> Plan {
        let fields: Vec<(String, FieldType)> = (0..self.channels)
            .map(|c| (format!("ch{c}"), Scalar::F32.into()))
            .collect();
        let buffer = |name: &str, writer: &str, reader: &str| BufferPlan {
            name: name.into(),
            fields: fields.clone(),
            data_length: self.data_length,
            slot_count: self.slot_count,
            policy: Policy::Block,
            writer: Some(writer.into()),
            readers: vec![reader.into()],
            observers: vec![],
            rings: vec![],
        };
        let worker = |name: &str, function: &str, sources: &[&str], sinks: &[&str]| WorkerPlan {
            name: name.into(),
            function: function.into(),
            file: None,
            template: None,
            processes: 1,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            observes: vec![],
            config: serde_json::json!({ "n_events": events })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            cpu: vec![],
            priority: None,
            restart: Restart::Never,
            python: None,
            files: vec![],
            delivery_seconds: 0.0,
        };
        let (buffers, workers) = if self.filter {
            (
                vec![
                    buffer("raw", "source", "filter"),
                    buffer("accepted", "filter", "sink"),
                ],
                vec![
                    worker("source", "bench.source", &[], &["raw"]),
                    worker("filter", "misc.copy", &["raw"], &["accepted"]),
                    worker("sink", "bench.sink", &["accepted"], &[]),
                ],
            )
        } else {
            (
                vec![buffer("raw", "source", "sink")],
                vec![
                    worker("source", "bench.source", &[], &["raw"]),
                    worker("sink", "bench.sink", &["raw"], &[]),
                ],
            )
        };
        Plan {
            run_id: run_id.into(),
            run_dir: run_dir.into(),
            setup_dir: run_dir.into(),
            buffers,
            workers,
            max_events: None,
            max_seconds: None,
            stats_interval: 1.0,
            huge_pages: crate::shm::HugePages::Auto,
            disk_reserve_mb: 0.0,
            drain_stall_seconds: crate::run_dir::plan::DRAIN_STALL_SECONDS,
            worker_stall_seconds: crate::run_dir::plan::WORKER_STALL_SECONDS,
            alert_command: None,
        }
    }
}

/// One measured run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measured {
    /// Events the final exporter received.
    pub received: u64,
    /// Events sent.
    pub sent: u64,
    /// Seconds, first event made → end of stream seen.
    pub seconds: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Events that arrived out of counter order.
    pub out_of_order: u64,
    /// Events with a wrong checksum.
    pub corrupt: u64,
    /// Median latency, ms.
    pub latency_p50_ms: f64,
}

/// Runs one case through daq-engine once.
pub fn run_ours(case: &Case, events: u64, exe: &Path, scratch: &Path) -> anyhow::Result<Measured> {
    let run_id = format!("bench{}-{}", std::process::id(), case.name);
    let run_dir = scratch.join(&run_id);
    let plan = case.plan(&run_dir, &run_id, events);
    run_plan(plan, events, exe).map(|(m, _)| m)
}

/// Runs `plan` (whose last worker is a `bench.sink` called `sink`, and which sends `events`)
/// in a fresh run directory, removed afterwards; returns what the sink measured and the
/// last statistics line (per worker CPU seconds and the like).
pub fn run_plan(
    plan: Plan,
    events: u64,
    exe: &Path,
) -> anyhow::Result<(Measured, serde_json::Value)> {
    use anyhow::Context;
    let run_dir = plan.run_dir.clone();
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).with_context(|| run_dir.display().to_string())?;
    let sup = Supervisor::prepare(
        plan,
        RunOptions {
            worker_exe: exe.to_path_buf(),
            worker_args: vec![],
            progress: Progress::Quiet,
        },
    )?;
    let summary = sup.run()?;
    if summary.exit_code != 0 {
        anyhow::bail!("run failed: {:?}", summary.failures);
    }
    let sink: SinkReport = std::fs::read_to_string(run_dir.join("bench_sink_0.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .context("the sink wrote no report")?;
    let stats = std::fs::read_to_string(run_dir.join("stats.jsonl"))
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| serde_json::from_str(l).ok()))
        .unwrap_or(serde_json::Value::Null);
    let seconds = (sink.t_end - sink.t_first_made).max(1e-9);
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok((
        Measured {
            received: sink.events,
            sent: events,
            seconds,
            events_per_s: sink.events as f64 / seconds,
            mb_per_s: sink.bytes as f64 / seconds / 1e6,
            out_of_order: sink.out_of_order,
            corrupt: sink.corrupt,
            latency_p50_ms: sink.latency_us[0] / 1e3,
        },
        stats,
    ))
}

/// Runs one case through mimoCoRB2 (`run_once.py` of the reference directory) once.
pub fn run_reference(case: &Case, python: &Path, dir: &Path) -> anyhow::Result<Measured> {
    run_reference_setup(&format!("{}.yaml", case.name), python, dir)
}

/// Runs the mimoCoRB2 setup `setup` (a file in `dir`, beside `run_once.py`) once.
pub fn run_reference_setup(setup: &str, python: &Path, dir: &Path) -> anyhow::Result<Measured> {
    use anyhow::Context;
    let out = std::process::Command::new(python)
        .arg("run_once.py")
        .arg(setup)
        .current_dir(dir)
        .env("MPLBACKEND", "Agg")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("RESULT ")
                .or(l.starts_with('{').then_some(l))
        })
        .with_context(|| {
            format!(
                "mimoCoRB2 printed no result: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )
        })?;
    let v: serde_json::Value = serde_json::from_str(line).context("mimoCoRB2 result unreadable")?;
    if let Some(err) = v.get("error") {
        anyhow::bail!("mimoCoRB2: {err}");
    }
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    Ok(Measured {
        received: f("n_received") as u64,
        sent: f("n_sent") as u64,
        seconds: f("elapsed_s"),
        events_per_s: f("events_per_s"),
        mb_per_s: f("MB_per_s"),
        out_of_order: f("out_of_order") as u64,
        corrupt: 0,
        latency_p50_ms: f("latency_median_ms"),
    })
}

/// The Python that runs mimoCoRB2 in reference directory `dir`: `MIMOCORB2_PYTHON`, or the
/// directory's `.venv`.
pub fn reference_python(dir: &Path) -> PathBuf {
    std::env::var_os("MIMOCORB2_PYTHON")
        .map(PathBuf::from)
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .unwrap_or_else(|| dir.join(".venv/bin/python"))
}

/// The median (NaN for none).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        f64::NAN
    } else {
        xs[xs.len() / 2]
    }
}

/// The whole comparison, printed as it goes. Returns the exit code.
pub fn pipeline(events: Option<u64>, reference: Option<&Path>, _registry: &Registry) -> i32 {
    let events = events.unwrap_or(200_000);
    let reps = 3;
    let Some(exe) = own_exe() else {
        return exit::FAILED;
    };
    let scratch = std::env::temp_dir().join("daq-engine-bench");
    // mimoCoRB2 runs with the reference directory as its working directory: a relative
    // `--reference` (or interpreter) path would be looked up from there and not be found.
    let reference = match reference.map(std::fs::canonicalize).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daq-engine: --reference: {e}");
            return exit::BAD_INPUT;
        }
    };
    let reference = reference.as_deref();
    let python = reference.map(reference_python);
    println!(
        "daq-engine bench pipeline: {events} events per run, median of {reps} runs; nproc {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    if reference.is_none() {
        println!("(no --reference DIR: mimoCoRB2 not run; see scripts/bench_pipeline.sh)");
    }
    println!(
        "{:<13} {:>8} {:>14} {:>10} {:>10} {:>14} {:>10} {:>9}",
        "case", "bytes", "daq-engine ev/s", "MB/s", "p50 ms", "mimoCoRB2 ev/s", "MB/s", "ratio"
    );
    let mut code = 0;
    for case in &CASES {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut problems = Vec::new();
        for _ in 0..reps {
            match run_ours(case, events, &exe, &scratch) {
                Ok(m) => {
                    if m.received != events || m.out_of_order != 0 || m.corrupt != 0 {
                        problems.push(format!(
                            "received {}/{events}, out of order {}, corrupt {}",
                            m.received, m.out_of_order, m.corrupt
                        ));
                    }
                    ours.push(m);
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
            if let (Some(py), Some(dir)) = (&python, reference) {
                match run_reference(case, py, dir) {
                    Ok(m) => theirs.push(m),
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
        }
        let ev = median(ours.iter().map(|m| m.events_per_s).collect());
        let mb = median(ours.iter().map(|m| m.mb_per_s).collect());
        let lat = median(ours.iter().map(|m| m.latency_p50_ms).collect());
        let tev = median(theirs.iter().map(|m| m.events_per_s).collect());
        let tmb = median(theirs.iter().map(|m| m.mb_per_s).collect());
        let show = |x: f64, prec: usize| {
            if x.is_nan() {
                "-".to_string()
            } else {
                format!("{x:.prec$}")
            }
        };
        println!(
            "{:<13} {:>8} {:>14} {:>10} {:>10} {:>14} {:>10} {:>9}",
            case.name,
            case.event_bytes(),
            show(ev, 0),
            show(mb, 1),
            show(lat, 3),
            show(tev, 0),
            show(tmb, 1),
            if tev.is_nan() {
                "-".into()
            } else {
                format!("{:.1}×", ev / tev)
            }
        );
        for p in problems {
            code = 1;
            println!("  problem: {p}");
        }
    }
    code
}

/// This executable (the benchmarks start it as the engine); says why not and gives `None`.
pub(super) fn own_exe() -> Option<PathBuf> {
    std::env::current_exe()
        .map_err(|e| eprintln!("daq-engine: cannot find my own executable: {e}"))
        .ok()
}

/// The CPU model, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    crate::procfs::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

/// Prints a benchmark's report, or its error with the benchmark's name as context (the CLI
/// edge: `daq-engine: bench ring: …`); returns the exit code.
fn report(what: &str, r: anyhow::Result<impl std::fmt::Display>) -> i32 {
    use anyhow::Context;
    match r.with_context(|| format!("bench {what}")) {
        Ok(report) => {
            println!("{report}");
            exit::OK
        }
        Err(e) => {
            eprintln!("daq-engine: {e:#}");
            exit::FAILED
        }
    }
}

/// `daq-engine bench WHAT`: the one dispatcher of every benchmark.
pub fn bench(
    what: &str,
    events: Option<u64>,
    reference: Option<&Path>,
    registry: &Registry,
) -> i32 {
    let machine = format!(
        "machine: nproc {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    if events.is_some() && matches!(what, "ring" | "analysis" | "web") {
        eprintln!(
            "daq-engine: bench {what} runs each case for a set time, not a count of events: \
             leave --events out"
        );
        return exit::BAD_INPUT;
    }
    match what {
        "drivers" => crate::devices::tools::bench_drivers(events),
        "pipeline" => pipeline(events, reference, registry),
        "python" => super::bench_python::python(events, reference),
        "ring" => {
            println!("daq-engine bench ring; {machine}");
            let opts = crate::ring_bench::RingBenchOptions {
                realtime: nix::unistd::geteuid().is_root(),
                ..Default::default()
            };
            report("ring", crate::ring_bench::run(&opts).map_err(Into::into))
        }
        "ring-loaded" => {
            println!("daq-engine bench ring-loaded; {machine}");
            let opts = crate::ring_bench::RingBenchOptions {
                realtime: nix::unistd::geteuid().is_root(),
                ..Default::default()
            };
            let n = events.unwrap_or(1_000_000);
            report(
                "ring-loaded",
                crate::ring_bench::loaded(&opts, 64, n, 100_000.0).map_err(Into::into),
            )
        }
        "analysis" => {
            println!("daq-engine bench analysis; {machine}");
            report(
                "analysis",
                crate::analysis::bench::run(std::time::Duration::from_secs(2)).map_err(Into::into),
            )
        }
        "hdf5" => {
            println!("daq-engine bench hdf5; {machine}");
            let dir = std::env::temp_dir().join(format!("daq-bench-hdf5-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let r = crate::export::bench::run(&dir, events.unwrap_or(4000));
            let _ = std::fs::remove_dir_all(&dir);
            report("hdf5", r.map_err(Into::into))
        }
        #[cfg(feature = "kafka")]
        "kafka" => {
            println!(
                "daq-engine bench kafka: export.kafka's path into a loopback tansu broker, beside \
                 confluent-kafka; {machine}"
            );
            // The report ends its last line itself.
            let r = crate::kafka::bench::run(events.unwrap_or(1_000_000));
            report(
                "kafka",
                r.map(|t| t.trim_end_matches('\n').to_string())
                    .map_err(anyhow::Error::msg),
            )
        }
        "web" => {
            println!(
                "daq-engine bench web: {} clients polling /state and /metrics {}×/s and {} \
                 /events streams, on and off in turn, in one run; {machine}",
                crate::monitor::bench::POLLERS,
                crate::monitor::bench::POLL_HZ,
                crate::monitor::bench::STREAMS
            );
            let dir = std::env::temp_dir().join(format!("daq-bench-web-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let r = crate::monitor::bench::run(&Default::default(), &dir);
            let _ = std::fs::remove_dir_all(&dir);
            report("web", r.map_err(anyhow::Error::msg))
        }
        other => {
            eprintln!(
                "daq-engine: no benchmark '{other}'; choose pipeline, python, ring, ring-loaded, analysis, hdf5, drivers, kafka or web"
            );
            exit::BAD_INPUT
        }
    }
}
