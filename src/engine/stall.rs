//! Workers stuck while the importers run: a reader that has taken no event from its sources
//! for `options.worker_stall_seconds` while events wait for it, and a device importer that
//! has not come round its loop for as long (its device notes, rewritten once a second while
//! its loop goes round, are its heartbeat: a call into a driver or a vendor library that
//! never returns stops them, and with them every other sign of trouble).
//!
//! Guarantees: a reader counts as stuck only when events wait for it in *every* one of its
//! sources (a coincidence worker waiting on its quiet input is not stuck); no worker counts
//! as stuck while one of its sinks under `policy: block` is full (then it waits for a reader
//! further down, the one to name). Claiming or releasing one event, a heartbeat, or a
//! process of it started again starts its time over. Pure bookkeeping: the supervisor
//! decides what a stall means for the worker.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::ring::{Policy, RingStats};
use crate::run_dir::plan::Plan;

/// How one running worker stands this second.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    /// The worker's index in the plan.
    pub worker: usize,
    /// How often its processes were started again so far.
    pub restarts: u32,
    /// What changes while it works: a reader's events claimed and released, summed over its
    /// sources; a device importer's heartbeat.
    pub moved: u64,
    /// How it would be stuck now; `None` when it cannot be (a reader with a source without
    /// waiting events, a worker with a full `block` sink).
    pub stuck: Option<Stuck>,
}

/// How a worker is stuck.
#[derive(Clone, Debug, PartialEq)]
pub enum Stuck {
    /// A reader: what waits for it ("12 events wait in 'raw'").
    Reading(String),
    /// A device importer: its loop does not come round.
    Looping,
}

/// How the running workers stand: `running(worker)` is the restarts of a worker whose every
/// process runs (none ended or waiting to be started again), `None` for any other;
/// `heartbeat(worker)` a device importer's heartbeat, `None` for an importer without one
/// (not watched).
pub fn looks(
    plan: &Plan,
    stats: &[(String, Vec<RingStats>)],
    running: impl Fn(usize) -> Option<u32>,
    heartbeat: impl Fn(usize) -> Option<u64>,
) -> Vec<Look> {
    let rings_of = |name: &str| stats.iter().find(|(b, _)| b == name).map(|(_, r)| r);
    let mut out = Vec::new();
    for (wi, w) in plan.workers.iter().enumerate() {
        let Some(restarts) = running(wi) else {
            continue;
        };
        let sink_full = w.sinks.iter().any(|sink| {
            plan.buffer(sink)
                .is_some_and(|pb| pb.policy == Policy::Block)
                && rings_of(sink)
                    .is_some_and(|rings| rings.iter().any(|s| s.filled >= s.slot_count))
        });
        if w.sources.is_empty() {
            if let Some(beat) = heartbeat(wi) {
                out.push(Look {
                    worker: wi,
                    restarts,
                    moved: beat,
                    stuck: (!sink_full).then_some(Stuck::Looping),
                });
            }
            continue;
        }
        let mut moved = 0;
        let mut waits = Vec::new();
        for src in &w.sources {
            let (Some(pb), Some(rings)) = (plan.buffer(src), rings_of(src)) else {
                continue;
            };
            let Some(g) = pb.group_of(&w.name) else {
                continue;
            };
            moved += rings
                .iter()
                .filter_map(|s| s.groups.get(g))
                .map(|gs| gs.claimed + gs.released)
                .sum::<u64>();
            let books = super::supervisor::reader_books(&pb.readers, rings);
            waits.push((src, books.get(&w.name).map_or(0, |b| b.pending)));
        }
        let waiting = !waits.is_empty() && waits.iter().all(|(_, n)| *n > 0) && !sink_full;
        let stuck = waiting.then(|| {
            Stuck::Reading(
                waits
                    .iter()
                    .map(|(src, n)| format!("{n} events wait in '{src}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        });
        out.push(Look {
            worker: wi,
            restarts,
            moved,
            stuck,
        });
    }
    out
}

/// Since when each reader has not moved while events waited for it.
#[derive(Default)]
pub struct StallWatch {
    seen: BTreeMap<usize, Seen>,
}

struct Seen {
    restarts: u32,
    moved: u64,
    since: Instant,
    told: bool,
}

impl StallWatch {
    /// The workers stuck for `limit` seconds at `now`, each with how, each said once per
    /// stall. Workers not among `looks` (ended, restarting) are forgotten.
    pub fn check(&mut self, now: Instant, limit: f64, looks: &[Look]) -> Vec<(usize, Stuck)> {
        self.seen
            .retain(|w, _| looks.iter().any(|l| l.worker == *w));
        let mut found = Vec::new();
        for l in looks {
            let Some(stuck) = &l.stuck else {
                self.seen.remove(&l.worker);
                continue;
            };
            let seen = self.seen.entry(l.worker).or_insert(Seen {
                restarts: l.restarts,
                moved: l.moved,
                since: now,
                told: false,
            });
            if (seen.moved, seen.restarts) != (l.moved, l.restarts) {
                *seen = Seen {
                    restarts: l.restarts,
                    moved: l.moved,
                    since: now,
                    told: false,
                };
            } else if !seen.told && now.duration_since(seen.since).as_secs_f64() >= limit {
                seen.told = true;
                found.push((l.worker, stuck.clone()));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn look(moved: u64, waiting: bool) -> Look {
        Look {
            worker: 0,
            restarts: 0,
            moved,
            stuck: waiting.then(|| reading("8 events wait in 'raw'")),
        }
    }

    fn reading(what: &str) -> Stuck {
        Stuck::Reading(what.to_string())
    }

    /// The instant `s` seconds after the test's start.
    fn seconds_on() -> impl Fn(u64) -> Instant {
        let t0 = Instant::now();
        move |s| t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_reader_is_stuck_once_it_has_not_moved_for_the_limit_and_said_once() {
        let (mut w, at) = (StallWatch::default(), seconds_on());
        assert!(w.check(at(0), 5.0, &[look(3, true)]).is_empty());
        assert!(w.check(at(4), 5.0, &[look(3, true)]).is_empty());
        let stuck = w.check(at(5), 5.0, &[look(3, true)]);
        assert_eq!(stuck, vec![(0, reading("8 events wait in 'raw'"))]);
        assert!(w.check(at(60), 5.0, &[look(3, true)]).is_empty());
        // One event moves: its time starts over, and a new stall is said again.
        assert!(w.check(at(61), 5.0, &[look(4, true)]).is_empty());
        assert!(w.check(at(65), 5.0, &[look(4, true)]).is_empty());
        assert_eq!(w.check(at(66), 5.0, &[look(4, true)]).len(), 1);
    }

    /// A coincidence-like worker reading `a` and `b` and writing `out` (all `block`).
    fn plan() -> Plan {
        let buffer = |name: &str, writer: &str, reader: &str| {
            serde_json::json!({"name": name, "fields": [["x", "float32"]], "data_length": 1,
                "slot_count": 4, "policy": "block", "writer": writer, "readers": [reader],
                "observers": [], "rings": []})
        };
        let worker = |name: &str, sources: &[&str], sinks: &[&str]| {
            serde_json::json!({"name": name, "function": "f", "file": null, "processes": 1,
                "sources": sources, "sinks": sinks, "observes": [], "config": {}, "cpu": [],
                "priority": null, "restart": "on-failure"})
        };
        serde_json::from_value(serde_json::json!({
            "run_id": "r", "run_dir": "/", "setup_dir": "/", "max_events": null,
            "max_seconds": null, "stats_interval": 1.0, "huge_pages": "auto",
            "buffers": [buffer("a", "sa", "co"), buffer("b", "sb", "co"),
                        buffer("out", "co", "writer")],
            "workers": [worker("sa", &[], &["a"]), worker("sb", &[], &["b"]),
                        worker("co", &["a", "b"], &["out"]), worker("writer", &["out"], &[])],
        }))
        .unwrap()
    }

    /// A ring with `published` events of which its one group claimed and released these.
    fn ring(published: u64, claimed: u64, released: u64, filled: u64) -> RingStats {
        RingStats {
            published,
            filled,
            slot_count: 4,
            groups: vec![crate::ring::GroupStats {
                released,
                claimed,
                active: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_reader_waits_only_with_events_in_every_source_and_room_in_its_sinks() {
        let p = plan();
        let stats = |a: RingStats, b: RingStats, out: RingStats| {
            vec![
                ("a".to_string(), vec![a]),
                ("b".to_string(), vec![b]),
                ("out".to_string(), vec![out]),
            ]
        };
        let co = |stats: &[(String, Vec<RingStats>)]| {
            looks(&p, stats, |_| Some(0), |_| None)
                .into_iter()
                .find(|l| l.worker == 2)
                .unwrap()
        };
        // Events wait in both sources and `out` has room: it may be stuck.
        let both = co(&stats(
            ring(10, 7, 6, 4),
            ring(5, 3, 3, 2),
            ring(0, 0, 0, 0),
        ));
        assert_eq!(both.moved, 7 + 6 + 3 + 3);
        let wait = "4 events wait in 'a', 2 events wait in 'b'";
        assert_eq!(both.stuck, Some(reading(wait)));
        // Its quiet input `b` has nothing: it waits for it, as a coincidence does.
        let quiet = co(&stats(
            ring(10, 7, 6, 4),
            ring(3, 3, 3, 0),
            ring(0, 0, 0, 0),
        ));
        assert_eq!(quiet.stuck, None);
        // `out` is full under `block`: it waits for `writer`, the one to name.
        let held = co(&stats(
            ring(10, 7, 6, 4),
            ring(5, 3, 3, 2),
            ring(8, 4, 4, 4),
        ));
        assert_eq!(held.stuck, None);
        let writer = looks(
            &p,
            &stats(ring(0, 0, 0, 0), ring(0, 0, 0, 0), ring(8, 4, 4, 4)),
            |_| Some(0),
            |_| None,
        )
        .into_iter()
        .find(|l| l.worker == 3)
        .unwrap();
        assert_eq!(writer.stuck, Some(reading("4 events wait in 'out'")));
        // Importers without a heartbeat are not looked at, nor a worker not running whole.
        let s = stats(ring(10, 7, 6, 4), ring(5, 3, 3, 2), ring(0, 0, 0, 0));
        let all = looks(&p, &s, |w| (w != 3).then_some(0), |_| None);
        assert_eq!(all.iter().map(|l| l.worker).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn an_importer_with_a_heartbeat_is_stuck_only_with_room_in_its_sink() {
        let p = plan();
        let s = |filled: u64| {
            let a = ring(4, 0, 0, filled);
            vec![("a".to_string(), vec![a])]
        };
        let sa = |filled: u64| {
            looks(&p, &s(filled), |_| Some(2), |w| (w == 0).then_some(77))
                .into_iter()
                .filter(|l| l.worker < 2)
                .collect::<Vec<_>>()
        };
        let looking = Look {
            worker: 0,
            restarts: 2,
            moved: 77,
            stuck: Some(Stuck::Looping),
        };
        // `sb` has no heartbeat: not watched.
        assert_eq!(sa(3), std::slice::from_ref(&looking));
        // Its `block` sink is full: it waits for room, not in a call that never returns.
        assert_eq!(
            sa(4),
            [Look {
                stuck: None,
                ..looking
            }]
        );
    }

    #[test]
    fn nothing_waiting_or_a_restart_starts_the_time_over() {
        let (mut w, at) = (StallWatch::default(), seconds_on());
        assert!(w.check(at(0), 5.0, &[look(3, true)]).is_empty());
        // Nothing waits for a moment (or its sink is full): not stuck.
        assert!(w.check(at(3), 5.0, &[look(3, false)]).is_empty());
        assert!(w.check(at(6), 5.0, &[look(3, true)]).is_empty());
        // Gone from the looks (restarting): forgotten.
        assert!(w.check(at(10), 5.0, &[]).is_empty());
        assert!(w.check(at(12), 5.0, &[look(3, true)]).is_empty());
        assert_eq!(w.check(at(17), 5.0, &[look(3, true)]).len(), 1);
        // Started again between two looks (a kill, a crash): its time starts over even
        // though the new process has not moved yet.
        let again = Look {
            restarts: 1,
            ..look(3, true)
        };
        assert!(w
            .check(at(18), 5.0, std::slice::from_ref(&again))
            .is_empty());
        assert!(w
            .check(at(22), 5.0, std::slice::from_ref(&again))
            .is_empty());
        assert_eq!(w.check(at(23), 5.0, &[again]).len(), 1);
    }
}
