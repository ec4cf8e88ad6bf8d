//! Which core each worker process runs on.
//!
//! A machine set up for acquisition keeps some cores free of other work (`isolcpus=`,
//! `nohz_full=`, `rcu_nocbs=` on the kernel command line; see the README). The engine puts
//! its processes there in the order that matters for dead time: importers first (a late
//! importer loses events), then analysis workers (filters and processors: a late one fills
//! its source buffer), then exporters (a late exporter only delays files). Processes beyond
//! the isolated cores are not pinned and run on the housekeeping cores, where the scheduler
//! puts everything not pinned; so are observers, which must never matter. A worker's own
//! `cpu:` in the setup wins over all of this. Without isolated cores nothing is pinned
//! unless the setup asks.
//!
//! `check` prints the placement, the supervisor applies it, and the stats (`pinned`), the
//! dashboard and the page show where each process really runs.

use std::collections::BTreeSet;

/// What a worker does, as far as placement cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// No sources: it brings data in.
    Importer,
    /// Sources and sinks.
    Analysis,
    /// Sources and no sinks.
    Exporter,
    /// Observes only: never placed.
    Observer,
}

impl Role {
    /// The role of a worker with these buffer counts.
    pub fn of(sources: usize, sinks: usize, observes: usize) -> Role {
        match (sources, sinks, observes) {
            (0, _, 0) => Role::Importer,
            (0, _, _) => Role::Observer,
            (_, 0, _) => Role::Exporter,
            _ => Role::Analysis,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Importer => "importer",
            Role::Analysis => "analysis",
            Role::Exporter => "exporter",
            Role::Observer => "observer",
        }
    }
}

/// One worker as placement sees it.
#[derive(Clone, Debug)]
pub struct Seat<'a> {
    /// Its name.
    pub name: &'a str,
    /// What it does.
    pub role: Role,
    /// How many processes it runs.
    pub processes: usize,
    /// The cores its setup asks for (empty: the engine chooses).
    pub cpu: &'a [usize],
    /// It asks for a real-time priority (`priority:`).
    pub real_time: bool,
}

/// Where each process runs: `cores[w][k]` for process `k` of worker `w`, `None` when it is
/// not pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Per worker, per process.
    pub cores: Vec<Vec<Option<usize>>>,
    /// The isolated cores it was made for.
    pub isolated: Vec<usize>,
}

/// Places `seats` on the `isolated` cores (see the module's description).
pub fn place(seats: &[Seat<'_>], isolated: &[usize]) -> Placement {
    let mut cores: Vec<Vec<Option<usize>>> = seats
        .iter()
        .map(|s| {
            (0..s.processes)
                .map(|k| (!s.cpu.is_empty()).then(|| s.cpu[k % s.cpu.len()]))
                .collect()
        })
        .collect();
    // Isolated cores a setup gave to a worker of its own are not handed out again.
    let taken: BTreeSet<usize> = seats.iter().flat_map(|s| s.cpu.iter().copied()).collect();
    let mut free = isolated.iter().copied().filter(|c| !taken.contains(c));
    for role in [Role::Importer, Role::Analysis, Role::Exporter] {
        for (w, s) in seats.iter().enumerate() {
            if s.role != role || !s.cpu.is_empty() {
                continue;
            }
            for slot in cores[w].iter_mut() {
                *slot = free.next();
            }
        }
    }
    Placement {
        cores,
        isolated: isolated.to_vec(),
    }
}

impl Placement {
    /// The core of process `k` of worker `w`.
    pub fn core(&self, w: usize, k: usize) -> Option<usize> {
        self.cores.get(w).and_then(|c| c.get(k)).copied().flatten()
    }

    /// True when process `k` of worker `w` is pinned to a core no other process of the
    /// run is pinned to: its readers may spin before they sleep without taking the core
    /// from another worker.
    pub fn alone(&self, w: usize, k: usize) -> bool {
        let Some(core) = self.core(w, k) else {
            return false;
        };
        let holders = self.cores.iter().flatten().filter(|c| **c == Some(core));
        holders.count() == 1
    }

    /// The first worker that runs real-time with a process on a core of its own: for such a
    /// run the supervisor keeps idle CPUs from sleeping (`supervisor::hold_cpus_awake`).
    pub fn real_time_alone<'a>(&self, seats: &[Seat<'a>]) -> Option<&'a str> {
        seats
            .iter()
            .enumerate()
            .find(|(w, s)| s.real_time && (0..s.processes).any(|k| self.alone(*w, k)))
            .map(|(_, s)| s.name)
    }

    /// One line per worker for `check`: where its processes run and why.
    pub fn describe(&self, seats: &[Seat<'_>]) -> Vec<String> {
        let mut out = Vec::new();
        if self.isolated.is_empty() && seats.iter().all(|s| s.cpu.is_empty()) {
            out.push(
                "placement: no isolated cores (see the README's real-time section): every \
                 worker runs where the scheduler puts it"
                    .to_string(),
            );
            return out;
        }
        out.push(format!(
            "placement on isolated cores {}: importers first, then analysis, then exporters; \
             the rest run on the housekeeping cores",
            if self.isolated.is_empty() {
                "(none)".to_string()
            } else {
                cpu_list(&self.isolated)
            }
        ));
        for (w, s) in seats.iter().enumerate() {
            let cores: Vec<String> = self.cores[w]
                .iter()
                .map(|c| c.map_or("-".to_string(), |c| c.to_string()))
                .collect();
            let why = if !s.cpu.is_empty() {
                "its `cpu:`"
            } else if self.cores[w].iter().all(Option::is_none) {
                "housekeeping"
            } else {
                "isolated"
            };
            out.push(format!(
                "  {:<20} {:<9} core {} ({why})",
                s.name,
                s.role.name(),
                cores.join(",")
            ));
        }
        if let Some(name) = self.real_time_alone(seats) {
            out.push(format!(
                "idle CPUs: kept from sleeping while the run lasts, for the real-time worker \
                 '{name}' on a core of its own ({} at 0 µs; needs root)",
                crate::runtime::realtime::CPU_LATENCY_QOS
            ));
        }
        out
    }
}

/// The seats of a run's workers (a plan's, or a checked setup's: the same workers in the
/// same order).
pub fn seats_of(workers: &[crate::run_dir::plan::WorkerPlan]) -> Vec<Seat<'_>> {
    workers
        .iter()
        .map(|w| Seat {
            name: &w.name,
            role: Role::of(w.sources.len(), w.sinks.len(), w.observes.len()),
            processes: w.processes,
            cpu: &w.cpu,
            real_time: w.priority.is_some(),
        })
        .collect()
}

/// Formats cores as the kernel writes them (`2-3,5`).
pub fn cpu_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if j == i {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The environment variable that replaces the kernel's isolated-core list: for machines
/// that keep cores free with cpusets (systemd `AllowedCPUs=`, `cset shield`) rather than
/// `isolcpus=`, and for tests.
pub const ISOLATED_VAR: &str = "DAQ_ISOLATED_CPUS";

/// The isolated cores: `DAQ_ISOLATED_CPUS` if set, else the kernel's
/// (`/sys/devices/system/cpu/isolated`), keeping only cores this machine has.
pub fn isolated_cores() -> Vec<usize> {
    let list = std::env::var(ISOLATED_VAR)
        .ok()
        .or_else(|| std::fs::read_to_string("/sys/devices/system/cpu/isolated").ok());
    list.map(|s| crate::runtime::realtime::parse_cpu_list(s.trim()))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| crate::runtime::realtime::pin_possible(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat<'a>(name: &'a str, role: Role, processes: usize, cpu: &'a [usize]) -> Seat<'a> {
        Seat {
            name,
            role,
            processes,
            cpu,
            real_time: false,
        }
    }

    #[test]
    fn importers_then_analysis_then_exporters_then_housekeeping() {
        let seats = [
            seat("writer", Role::Exporter, 1, &[]),
            seat("trigger", Role::Analysis, 2, &[]),
            seat("scope", Role::Observer, 1, &[]),
            seat("digitizer", Role::Importer, 1, &[]),
        ];
        let p = place(&seats, &[2, 3, 5]);
        assert_eq!(
            p.cores,
            vec![
                vec![None],
                vec![Some(3), Some(5)],
                vec![None],
                vec![Some(2)]
            ]
        );
        // Enough cores for everyone: the exporter gets one too, observers never.
        let p = place(&seats, &[1, 2, 3, 4, 5]);
        assert_eq!(p.core(0, 0), Some(4));
        assert_eq!(p.core(2, 0), None);
    }

    #[test]
    fn a_setups_cpu_wins_and_its_core_is_not_handed_out_again() {
        let seats = [
            seat("a", Role::Importer, 1, &[]),
            seat("b", Role::Importer, 2, &[3]),
            seat("c", Role::Analysis, 1, &[]),
        ];
        let p = place(&seats, &[3, 4]);
        assert_eq!(
            p.cores,
            vec![vec![Some(4)], vec![Some(3), Some(3)], vec![None]]
        );
        // Alone on its core: only "a" (b's two processes share 3; c is not pinned).
        assert!(p.alone(0, 0));
        assert!(!p.alone(1, 0) && !p.alone(1, 1));
        assert!(!p.alone(2, 0));
    }

    #[test]
    fn without_isolated_cores_nothing_is_pinned() {
        let seats = [
            seat("a", Role::Importer, 2, &[]),
            seat("b", Role::Exporter, 1, &[]),
        ];
        let p = place(&seats, &[]);
        assert!(p.cores.iter().flatten().all(Option::is_none));
        assert_eq!(p.describe(&seats).len(), 1);
    }

    #[test]
    fn roles_from_buffer_counts() {
        assert_eq!(Role::of(0, 1, 0), Role::Importer);
        assert_eq!(Role::of(0, 0, 1), Role::Observer);
        assert_eq!(Role::of(1, 0, 0), Role::Exporter);
        assert_eq!(Role::of(1, 2, 0), Role::Analysis);
    }

    #[test]
    fn cpu_lists_are_written_as_the_kernel_does() {
        assert_eq!(cpu_list(&[5, 2, 3, 3, 7, 8, 9]), "2-3,5,7-9");
        assert_eq!(cpu_list(&[]), "");
    }
}
