//! The pipeline of a setup drawn two ways: readable text for the terminal and Graphviz dot for
//! the run directory (as mimoCoRB2 draws its data flow).
//!
//! Guarantees: every buffer and worker of the setup appears; names are quoted so any name
//! gives valid dot. Pure functions of the setup: they never read or write files.

use super::{BufferSetup, Setup, WorkerPlan};
use crate::ring::Policy;
use std::fmt::Write;

fn policy(b: &BufferSetup) -> &'static str {
    match b.policy {
        Policy::Block => "block",
        Policy::Drop => "drop",
    }
}

fn worker_label(w: &WorkerPlan) -> String {
    let what = match w.template {
        Some(t) => format!("{t} {}", w.function),
        None => match &w.file {
            Some(f) => format!(
                "{} from {}",
                w.function,
                f.file_name()
                    .map_or_else(|| f.to_string_lossy(), |n| n.to_string_lossy())
            ),
            None => w.function.clone(),
        },
    };
    format!("{} ({what}, ×{})", w.name, w.processes)
}

/// A readable listing: each buffer with its writer, readers and observers, importers first.
///
/// ```text
/// source (importer simulate.pulses, ×1)
///   ──▶ raw [root] 128 slots × 16 records of {ch0: float32}, block
///         ──▶ trigger (filter filter.threshold, ×2)
///         ┈┈▶ scope (observer observe.oscilloscope, ×1)
/// ```
pub fn text(setup: &Setup) -> String {
    let mut out = String::new();
    let roots = setup.root_buffers();
    let _ = writeln!(
        out,
        "pipeline: {} buffer{}, {} worker{}",
        setup.buffers.len(),
        if setup.buffers.len() == 1 { "" } else { "s" },
        setup.workers.len(),
        if setup.workers.len() == 1 { "" } else { "s" }
    );
    // Workers in data-flow order: importers, then those fed by buffers already listed.
    let mut order: Vec<&WorkerPlan> = Vec::new();
    let mut listed_buffers: Vec<&str> = Vec::new();
    let mut remaining: Vec<&WorkerPlan> = setup.workers.iter().collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|w| {
            w.sources
                .iter()
                .chain(&w.observes)
                .all(|b| listed_buffers.contains(&b.as_str()) || setup.writer_of(b).is_none())
        });
        let w = remaining.remove(ready.unwrap_or(0));
        listed_buffers.extend(w.sinks.iter().map(String::as_str));
        order.push(w);
    }
    for w in &order {
        if w.sinks.is_empty() {
            // An end of the pipeline: say what it reads.
            let mut from: Vec<String> = w.sources.clone();
            from.extend(w.observes.iter().map(|o| format!("{o} (observed)")));
            let _ = writeln!(out, "{} ◀── {}", worker_label(w), from.join(", "));
            continue;
        }
        let _ = writeln!(out, "{}", worker_label(w));
        for s in &w.sinks {
            let Some(b) = setup.buffer(s) else {
                let _ = writeln!(out, "  ──▶ {s} (not declared)");
                continue;
            };
            let _ = writeln!(
                out,
                "  ──▶ {}{} {} slots × {} records of {}, {}",
                b.name,
                if roots.contains(&b.name.as_str()) {
                    " [root]"
                } else {
                    ""
                },
                b.slot_count,
                b.data_length,
                b.dtype,
                policy(b)
            );
            for r in setup.readers_of(&b.name) {
                let _ = writeln!(out, "        ──▶ {}", worker_label(r));
            }
            for o in setup.observers_of(&b.name) {
                let _ = writeln!(out, "        ┈┈▶ {}", worker_label(o));
            }
        }
    }
    for b in &setup.buffers {
        if setup.writer_of(&b.name).is_none() {
            let _ = writeln!(
                out,
                "(no writer) ──▶ {} {} slots × {} records of {}, {}",
                b.name,
                b.slot_count,
                b.data_length,
                b.dtype,
                policy(b)
            );
        }
    }
    out
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A dot node `id` drawn as `shape` with `label`, and the further attributes `style`
/// (empty, or starting with a comma).
fn node(out: &mut String, id: &str, shape: &str, label: &str, style: &str) {
    let _ = writeln!(
        out,
        "  {} [shape={shape}, label={}{style}];",
        quote(id),
        quote(label)
    );
}

/// Graphviz dot: buffers as boxes (root buffers filled), workers as ellipses, data edges
/// solid, observe edges dotted.
pub fn dot(setup: &Setup) -> String {
    let roots = setup.root_buffers();
    let mut out =
        String::from("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for b in &setup.buffers {
        let label = format!(
            "{}\n{} slots × {}\n{}\n{}",
            b.name,
            b.slot_count,
            b.data_length,
            b.dtype,
            policy(b)
        );
        let style = if roots.contains(&b.name.as_str()) {
            ", style=filled, fillcolor=\"#ffe08a\", penwidth=2"
        } else {
            ""
        };
        node(
            &mut out,
            &format!("buffer:{}", b.name),
            "box",
            &label,
            style,
        );
    }
    for w in &setup.workers {
        let label = match w.template {
            Some(t) => format!("{}\n{t} {}\n×{}", w.name, w.function, w.processes),
            None => format!("{}\n{}\n×{}", w.name, w.function, w.processes),
        };
        node(
            &mut out,
            &format!("worker:{}", w.name),
            "ellipse",
            &label,
            "",
        );
    }
    for w in &setup.workers {
        let me = quote(&format!("worker:{}", w.name));
        for s in &w.sources {
            let _ = writeln!(out, "  {} -> {me};", quote(&format!("buffer:{s}")));
        }
        for s in &w.sinks {
            let _ = writeln!(out, "  {me} -> {};", quote(&format!("buffer:{s}")));
        }
        for s in &w.observes {
            let _ = writeln!(
                out,
                "  {} -> {me} [style=dotted];",
                quote(&format!("buffer:{s}"))
            );
        }
    }
    out.push_str("}\n");
    out
}
