//! `daq-engine bench python`: one Python worker file (`benches/python/noop_filter.py`, a
//! Filter that passes every event on) run under daq-engine and — with `--reference DIR`, as
//! `bench pipeline` — under mimoCoRB2 0.0.4 in the same go, case by case, with the ratio;
//! and the bridge's own cost per event: the same file against the Rust no-op filter
//! (`misc.copy`) in daq-engine.
//!
//! Cases: source → raw (128 slots) → the no-op Python filter → accepted (128) → sink, with
//! 64 B events (16 × float32) and 64 KiB events (4 × 4096 float32). daq-engine's source
//! and sink are `bench.source` / `bench.sink`, mimoCoRB2's the reference's
//! `bench_workers.py`; throughput is measured as in `bench pipeline`.
//!
//! The bridge's cost is measured two ways on 64 B events: from throughput (1/ev·s⁻¹ of the
//! Python filter's pipeline minus that of the Rust filter's), and as the filter process's
//! CPU time per event (`cpu_s` of the last stats line), Python minus Rust. The CPU figure
//! takes the slope between runs of `events` and of `events / 5` events, so the
//! interpreter's start (importing numpy) is not spread over the events.

use super::bench::{
    cpu_model, median, reference_python, run_plan, run_reference_setup, Case, Measured,
};
use super::exit;
use crate::run_dir::plan::Plan;
use std::path::{Path, PathBuf};

/// The worker file both frameworks run.
const NOOP_FILTER: &str = include_str!("../../benches/python/noop_filter.py");

/// The two shapes (the filter stage is the Python file, or `misc.copy` for the baseline).
const CASES: [Case; 2] = [
    Case {
        name: "tiny_pyfilter",
        data_length: 16,
        channels: 1,
        filter: true,
        slot_count: 128,
    },
    Case {
        name: "large_pyfilter",
        data_length: 4096,
        channels: 4,
        filter: true,
        slot_count: 128,
    },
];

/// The filter stage of a run of ours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Python,
    Rust,
}

/// A plan of `case` whose filter is the Python no-op (in `file`) or `misc.copy`.
fn plan(case: &Case, stage: Stage, events: u64, scratch: &Path, file: &Path) -> Plan {
    let tag = if stage == Stage::Python { "py" } else { "rs" };
    let run_id = format!("benchpy{}-{}-{tag}", std::process::id(), case.name);
    let mut plan = case.plan(&scratch.join(&run_id), &run_id, events);
    if stage == Stage::Python {
        for w in plan.workers.iter_mut().filter(|w| w.name == "filter") {
            w.function = "noop".into();
            w.file = Some(file.to_path_buf());
        }
    }
    plan
}

/// The same pipeline as a mimoCoRB2 setup, beside the reference's `bench_workers.py`.
fn reference_setup(case: &Case, events: u64) -> String {
    let fields: Vec<String> = (0..case.channels).map(|c| format!("ch{c}: 'f4'")).collect();
    format!(
        "target_directory: runs/{name}\n\
         base_config: {{n_events: {events}}}\n\
         Buffers:\n  raw: &b\n    slot_count: {slots}\n    data_length: {len}\n    \
         data_dtype: {{{fields}}}\n  accepted: *b\n\
         Workers:\n  source: {{file: bench_workers.py, function: source, sinks: [raw]}}\n  \
         filter: {{file: noop_filter.py, function: noop, sources: [raw], sinks: [accepted]}}\n  \
         sink: {{file: bench_workers.py, function: sink, sources: [accepted]}}\n",
        name = case.name,
        slots = case.slot_count,
        len = case.data_length,
        fields = fields.join(", "),
    )
}

/// The scratch folder with the worker file (and, for the reference, its harness and setups).
fn prepare(scratch: &Path, reference: Option<&Path>, events: u64) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).with_context(|| scratch.display().to_string())?;
    let file = scratch.join("noop_filter.py");
    std::fs::write(&file, NOOP_FILTER).with_context(|| file.display().to_string())?;
    if let Some(dir) = reference {
        for f in ["run_once.py", "bench_workers.py"] {
            std::fs::copy(dir.join(f), scratch.join(f))
                .with_context(|| dir.join(f).display().to_string())?;
        }
        for case in &CASES {
            let path = scratch.join(format!("{}.yaml", case.name));
            std::fs::write(&path, reference_setup(case, events))
                .with_context(|| path.display().to_string())?;
        }
    }
    Ok(file)
}

/// CPU seconds of the `filter` worker in a run's last stats line.
fn filter_cpu(stats: &serde_json::Value) -> f64 {
    stats["workers"]["filter"]["cpu_s"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn check(m: &Measured, events: u64, problems: &mut Vec<String>) {
    if m.received != events || m.out_of_order != 0 || m.corrupt != 0 {
        problems.push(format!(
            "received {}/{events}, out of order {}, corrupt {}",
            m.received, m.out_of_order, m.corrupt
        ));
    }
}

fn show(x: f64, prec: usize) -> String {
    if x.is_nan() {
        "-".to_string()
    } else {
        format!("{x:.prec$}")
    }
}

/// The whole comparison, printed as it goes. Returns the exit code.
pub fn python(events: Option<u64>, reference: Option<&Path>) -> i32 {
    let events = events.unwrap_or(100_000).max(10);
    let reps = 3;
    let Some(exe) = super::bench::own_exe() else {
        return exit::FAILED;
    };
    let scratch =
        std::env::temp_dir().join(format!("daq-engine-bench-python-{}", std::process::id()));
    let file = match prepare(&scratch, reference, events) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("daq-engine: bench python: {e:#}");
            return exit::FAILED;
        }
    };
    let mimo = reference.map(reference_python);
    println!(
        "daq-engine bench python: {events} events per run, median of {reps} runs; nproc {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    match crate::python::venv(None) {
        Some(v) => println!("Python workers: venv {}", v.display()),
        None => println!("Python workers: no VIRTUAL_ENV (numpy must import without one)"),
    }
    if reference.is_none() {
        println!("(no --reference DIR: mimoCoRB2 not run; see scripts/bench_python.sh)");
    }
    println!(
        "{:<15} {:>8} {:>15} {:>15} {:>8} {:>6}",
        "case", "bytes", "daq-engine ev/s", "mimoCoRB2 ev/s", "ratio", "goal"
    );
    let mut code = 0;
    for (case, goal) in CASES.iter().zip([10.0, 3.0]) {
        let (mut ours, mut theirs, mut problems) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            match run_plan(
                plan(case, Stage::Python, events, &scratch, &file),
                events,
                &exe,
            ) {
                Ok((m, _)) => {
                    check(&m, events, &mut problems);
                    ours.push(m.events_per_s);
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
            if let Some(py) = &mimo {
                match run_reference_setup(&format!("{}.yaml", case.name), py, &scratch) {
                    Ok(m) => {
                        if m.received != events {
                            problems.push(format!("mimoCoRB2 received {}/{events}", m.received));
                        }
                        theirs.push(m.events_per_s);
                    }
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
        }
        let (ev, tev) = (median(ours), median(theirs));
        let ratio = ev / tev;
        println!(
            "{:<15} {:>8} {:>15} {:>15} {:>8} {:>6}",
            case.name,
            case.event_bytes(),
            show(ev, 0),
            show(tev, 0),
            if ratio.is_nan() {
                "-".into()
            } else {
                format!("{ratio:.1}×")
            },
            format!("≥{goal}×"),
        );
        for p in problems {
            code = 1;
            println!("  problem: {p}");
        }
    }

    // The bridge: the same 64 B pipeline with the Python filter and with misc.copy, each at
    // `events` and at `events / 5` (for the CPU slope).
    let small = (events / 5).max(1);
    let mut problems = Vec::new();
    let mut rate = [Vec::new(), Vec::new()];
    let mut cpu_per_event = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for (i, stage) in [Stage::Python, Stage::Rust].into_iter().enumerate() {
            let mut cpu = [f64::NAN; 2];
            for (j, n) in [events, small].into_iter().enumerate() {
                match run_plan(plan(&CASES[0], stage, n, &scratch, &file), n, &exe) {
                    Ok((m, stats)) => {
                        check(&m, n, &mut problems);
                        if j == 0 {
                            rate[i].push(m.events_per_s);
                        }
                        cpu[j] = filter_cpu(&stats);
                    }
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            cpu_per_event[i].push((cpu[0] - cpu[1]) / (events - small).max(1) as f64 * 1e6);
        }
    }
    let (py_rate, rs_rate) = (median(rate[0].clone()), median(rate[1].clone()));
    let (py_cpu, rs_cpu) = (
        median(cpu_per_event[0].clone()),
        median(cpu_per_event[1].clone()),
    );
    println!();
    println!("bridge, 64 B events, daq-engine only (goal < 2 µs per event):");
    println!(
        "  {:<34} {:>12} {:>16}",
        "filter", "pipeline ev/s", "filter CPU µs/ev"
    );
    println!(
        "  {:<34} {:>12} {:>16}",
        "Python no-op (noop_filter.py)",
        show(py_rate, 0),
        show(py_cpu, 3)
    );
    println!(
        "  {:<34} {:>12} {:>16}",
        "Rust no-op (misc.copy)",
        show(rs_rate, 0),
        show(rs_cpu, 3)
    );
    println!(
        "  bridge per event: {} µs of filter CPU; {} µs of pipeline time (1/rate difference)",
        show(py_cpu - rs_cpu, 3),
        show((1.0 / py_rate - 1.0 / rs_rate) * 1e6, 3)
    );
    for p in problems {
        code = 1;
        println!("  problem: {p}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_frameworks_get_the_same_shapes_and_the_python_filter() {
        let d = Path::new("/tmp/x");
        let f = Path::new("/tmp/x/noop_filter.py");
        let p = plan(&CASES[1], Stage::Python, 10, d, f);
        let filter = p.worker("filter").unwrap();
        assert_eq!(
            (filter.function.as_str(), filter.file.as_deref()),
            ("noop", Some(f))
        );
        assert_eq!(p.buffer("raw").unwrap().data_length, 4096);
        let r = plan(&CASES[1], Stage::Rust, 10, d, f);
        assert_eq!(r.worker("filter").unwrap().function, "misc.copy");
        let yaml = reference_setup(&CASES[1], 10);
        for part in [
            "n_events: 10",
            "slot_count: 128",
            "data_length: 4096",
            "{ch0: 'f4', ch1: 'f4', ch2: 'f4', ch3: 'f4'}",
            "file: noop_filter.py, function: noop",
        ] {
            assert!(yaml.contains(part), "{part} not in {yaml}");
        }
        assert_eq!(CASES[0].event_bytes(), 64);
        assert_eq!(CASES[1].event_bytes(), 65536);
    }
}
