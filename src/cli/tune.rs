//! `daq-engine tune`: is this machine ready for real-time acquisition?
//!
//! Checks what decides latency and dead time on a Linux box — isolated cores, real-time
//! throttling, the CPU frequency governor, transparent huge pages, reserved huge pages, the
//! locked-memory limit, irqbalance, a VM's idle polling — and says for each what it costs
//! and how to change it.
//! `--apply` changes the ones that are safe to change on a running machine (nothing that
//! needs a reboot, can freeze a core, or edits a configuration file), after saving their
//! values to `/run/daq-engine/tune.json`; `--restore` puts those values back. `/run` is a
//! tmpfs, so a reboot forgets the saved values along with the changes.
//!
//! Every path is read below a root directory (`/` on a real machine) so the checks and the
//! apply/restore round trip are tested on a made-up machine.

use super::exit;
use std::path::{Path, PathBuf};

/// Where `--apply` keeps the values it replaced, below the root.
pub const SAVED: &str = "run/daq-engine/tune.json";

/// One setting `--apply` may write: a file below the root and its new content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Path below the root (`sys/kernel/mm/transparent_hugepage/defrag`).
    pub path: String,
    /// What to write.
    pub value: String,
}

/// What one check found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What was checked.
    pub name: &'static str,
    /// Whether it is as an acquisition machine wants it.
    pub ok: bool,
    /// What was found.
    pub state: String,
    /// What it costs when not ok (empty when ok).
    pub cost: String,
    /// How to change it (empty when ok).
    pub fix: String,
    /// What `--apply` writes (empty: not changed by `--apply`, see `fix`).
    pub changes: Vec<Change>,
}

impl Finding {
    /// `name` as an acquisition machine wants it, found in `state`: it costs nothing, there
    /// is nothing to fix or change.
    fn fine(name: &'static str, state: impl Into<String>) -> Finding {
        Finding::checked(name, true, state, "", "")
    }

    /// `name`, `ok` or not, found in `state`; when not `ok`, it costs `cost` and `fix` says
    /// how to change it (both left empty when `ok`). No `changes`: a finding that `--apply`
    /// can fix sets its own.
    fn checked(
        name: &'static str,
        ok: bool,
        state: impl Into<String>,
        cost: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            name,
            ok,
            state: state.into(),
            cost: unless(ok, cost),
            fix: unless(ok, fix),
            changes: vec![],
        }
    }
}

/// A finding's cost or fix: `text` when it is not `ok`, empty when it is.
fn unless(ok: bool, text: impl Into<String>) -> String {
    if ok {
        String::new()
    } else {
        text.into()
    }
}

/// The machine below `root`.
pub struct Machine {
    root: PathBuf,
    /// The locked-memory limit of this process (None: unlimited) and whether it is root.
    memlock: (Option<u64>, bool),
    /// Huge pages `--apply` reserves (None: leave the reservation alone).
    hugepages: Option<u64>,
}

impl Machine {
    /// This machine, as this process sees it.
    pub fn here(hugepages: Option<u64>) -> Machine {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `l` is a valid rlimit for getrlimit to write into.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut l) };
        let limit = (l.rlim_cur != libc::RLIM_INFINITY).then_some(l.rlim_cur);
        Machine {
            root: "/".into(),
            memlock: (limit, nix::unistd::geteuid().is_root()),
            hugepages,
        }
    }

    /// A made-up machine below `root` (for tests).
    pub fn at(root: &Path, memlock: Option<u64>, is_root: bool, hugepages: Option<u64>) -> Self {
        Machine {
            root: root.to_path_buf(),
            memlock: (memlock, is_root),
            hugepages,
        }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Every check, in the order they are printed.
    pub fn check(&self) -> Vec<Finding> {
        vec![
            self.isolated(),
            self.rt_throttling(),
            self.governor(),
            self.thp(),
            self.huge_pages(),
            self.memlock(),
            self.irqbalance(),
            self.idle(),
        ]
    }

    fn isolated(&self) -> Finding {
        let cores = crate::runtime::realtime::parse_cpu_list(
            &self
                .read("sys/devices/system/cpu/isolated")
                .unwrap_or_default(),
        );
        let cmdline = self.read("proc/cmdline").unwrap_or_default();
        let params: Vec<&str> = cmdline
            .split_whitespace()
            .filter(|p| {
                ["isolcpus=", "nohz_full=", "rcu_nocbs="]
                    .iter()
                    .any(|k| p.starts_with(k))
            })
            .collect();
        let n = self
            .read("sys/devices/system/cpu/online")
            .map(|s| crate::runtime::realtime::parse_cpu_list(&s).len())
            .unwrap_or(0);
        let suggest = if n >= 4 {
            let list = crate::engine::placement::cpu_list(&(n / 2..n).collect::<Vec<_>>());
            format!("isolcpus={list} nohz_full={list} rcu_nocbs={list}")
        } else {
            "isolcpus=N-M nohz_full=N-M rcu_nocbs=N-M (keep core 0 and at least one more for \
             the system)"
                .to_string()
        };
        if cores.is_empty() {
            Finding::checked(
                "isolated cores",
                false,
                "none",
                "importers share their cores with every other program and the kernel's \
                 housekeeping: wake-ups late by tens of µs to ms, dead time under load",
                format!(
                    "add `{suggest}` to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub \
                     and reboot; the engine then places importers, analysis and exporters there \
                     (`daq-engine check` shows where)"
                ),
            )
        } else {
            let missing: Vec<&str> = ["nohz_full=", "rcu_nocbs="]
                .into_iter()
                .filter(|k| !params.iter().any(|p| p.starts_with(k)))
                .collect();
            Finding::checked(
                "isolated cores",
                missing.is_empty(),
                format!(
                    "{} ({})",
                    crate::engine::placement::cpu_list(&cores),
                    if params.is_empty() {
                        "not from the kernel command line".to_string()
                    } else {
                        params.join(" ")
                    }
                ),
                format!(
                    "without {} the isolated cores still take the scheduler tick and RCU \
                     callbacks: jitter of a few µs every ms",
                    missing.join(" and ")
                ),
                format!(
                    "add {} for the same cores and reboot",
                    missing.join(" and ")
                ),
            )
        }
    }

    fn rt_throttling(&self) -> Finding {
        let v = self.read("proc/sys/kernel/sched_rt_runtime_us");
        let state = match v.as_deref() {
            Some("-1") => "off (sched_rt_runtime_us = -1)".to_string(),
            Some(us) => format!("SCHED_FIFO may use {us} µs of every second"),
            None => "unknown".into(),
        };
        // The engine's real-time processes sleep when idle, so the throttle only ever stops
        // a runaway one: it is the safety net that keeps the machine usable. Since Linux 6.12
        // the deadline "fair server" also gives normal tasks 50 ms of every second on a CPU
        // whose real-time tasks starve them, whatever this says (measured: a SCHED_FIFO loop
        // beside a busy loop stopped 50-54 ms once a second with throttling off); only
        // isolated cores keep normal tasks away.
        Finding::fine(
            "RT throttling",
            format!(
                "{state}; kept: workers sleep when idle, so only a runaway SCHED_FIFO process \
                 is ever throttled (and on Linux 6.12 and later a real-time task that starves \
                 normal tasks on its core yields it to them 50 ms a second either way: \
                 isolated cores avoid that)"
            ),
        )
    }

    fn governor(&self) -> Finding {
        let mut slow = Vec::new();
        let mut changes = Vec::new();
        let mut seen = 0;
        for cpu in 0..4096 {
            let path = format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor");
            let Some(g) = self.read(&path) else {
                if !self
                    .root
                    .join(format!("sys/devices/system/cpu/cpu{cpu}"))
                    .exists()
                {
                    break;
                }
                continue;
            };
            seen += 1;
            if g != "performance" {
                slow.push(format!("cpu{cpu}: {g}"));
                changes.push(Change {
                    path,
                    value: "performance".into(),
                });
            }
        }
        if seen == 0 {
            return Finding::fine(
                "CPU governor",
                "no cpufreq here (a virtual machine, or the firmware decides)",
            );
        }
        Finding {
            changes,
            ..Finding::checked(
                "CPU governor",
                slow.is_empty(),
                if slow.is_empty() {
                    format!("performance on all {seen} cores")
                } else {
                    slow.join(", ")
                },
                "a core that clocks down between events needs tens of µs to come back: the \
                 first events after a pause are handled late",
                "`--apply` sets `performance` (more power drawn; `--restore` undoes it)",
            )
        }
    }

    fn thp(&self) -> Finding {
        let selected = |s: &str| {
            s.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        };
        let enabled = self
            .read("sys/kernel/mm/transparent_hugepage/enabled")
            .and_then(|s| selected(&s));
        let defrag = self
            .read("sys/kernel/mm/transparent_hugepage/defrag")
            .and_then(|s| selected(&s));
        let (Some(enabled), Some(defrag)) = (enabled, defrag) else {
            return Finding::fine("transparent huge pages", "not in this kernel");
        };
        let mut changes = Vec::new();
        if enabled == "always" {
            changes.push(Change {
                path: "sys/kernel/mm/transparent_hugepage/enabled".into(),
                value: "madvise".into(),
            });
        }
        if defrag == "always" {
            changes.push(Change {
                path: "sys/kernel/mm/transparent_hugepage/defrag".into(),
                value: "madvise".into(),
            });
        }
        let ok = changes.is_empty();
        Finding {
            changes,
            ..Finding::checked(
                "transparent huge pages",
                ok,
                format!("enabled {enabled}, defrag {defrag}"),
                "with `always`, any process may stall in a page fault while the kernel \
                 compacts memory, and khugepaged moves pages under running workers",
                "`--apply` sets `madvise` (programs that ask still get huge pages; the rings \
                 ask)",
            )
        }
    }

    fn huge_pages(&self) -> Finding {
        let total: u64 = self
            .read("proc/sys/vm/nr_hugepages")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let free = self
            .read("proc/meminfo")
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("HugePages_Free:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let changes = match self.hugepages {
            Some(n) if n != total => vec![Change {
                path: "proc/sys/vm/nr_hugepages".into(),
                value: n.to_string(),
            }],
            _ => vec![],
        };
        Finding {
            changes,
            ..Finding::checked(
                "huge pages",
                free > 0,
                format!("{total} reserved, {free} free"),
                "rings fall back to transparent huge pages or 4 KiB pages: more TLB misses \
                 on large events (a few % of throughput)",
                "`--apply --hugepages N` reserves N × 2 MiB (taken from free memory until \
                 `--restore`); for every boot: vm.nr_hugepages = N in /etc/sysctl.d/",
            )
        }
    }

    fn memlock(&self) -> Finding {
        let (limit, is_root) = self.memlock;
        let ok = is_root || limit.is_none();
        Finding::checked(
            "locked memory",
            ok,
            match (limit, is_root) {
                (_, true) => "root: no limit".into(),
                (None, _) => "unlimited".into(),
                (Some(l), _) => format!("{} KiB", l / 1024),
            },
            "rings and workers that cannot be locked may be paged out under memory \
             pressure: a page fault on the event path costs ms",
            "`@daq - memlock unlimited` in /etc/security/limits.d/daq.conf (log in again), \
             or `LimitMEMLOCK=infinity` in the service",
        )
    }

    fn irqbalance(&self) -> Finding {
        let running = std::fs::read_dir(self.root.join("proc"))
            .map(|rd| {
                rd.flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "irqbalance")
                })
            })
            .unwrap_or(false);
        let isolated = !self
            .read("sys/devices/system/cpu/isolated")
            .unwrap_or_default()
            .is_empty();
        let banned = self.read("etc/default/irqbalance").is_some_and(|c| {
            c.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("IRQBALANCE_BANNED_CPULIST=")
                    || l.starts_with("IRQBALANCE_BANNED_CPUS=")
            })
        });
        let ok = !running || !isolated || banned;
        Finding::checked(
            "irqbalance",
            ok,
            match (running, banned) {
                (false, _) => "not running",
                (true, true) => "running, keeping away from banned cores",
                (true, false) => "running",
            },
            "it may move device interrupts onto the isolated cores, where they interrupt \
             the importers",
            "set IRQBALANCE_BANNED_CPULIST to the isolated cores in /etc/default/irqbalance \
             and restart irqbalance",
        )
    }

    /// How idle CPUs wait. In a VM with the `haltpoll` idle driver and
    /// `guest_halt_poll_ns` 0, an idle virtual CPU halts at once and only the host wakes it:
    /// `bench ring-loaded` saw wake-ups of milliseconds on a busy host. Polling 200 µs (the
    /// kernel's default) before halting is safe to set on a running machine.
    fn idle(&self) -> Finding {
        const POLL: &str = "sys/module/haltpoll/parameters/guest_halt_poll_ns";
        let driver = self
            .read("sys/devices/system/cpu/cpuidle/current_driver")
            .unwrap_or_else(|| "none".into());
        let poll_ns = self.read(POLL);
        let halts_at_once = driver == "haltpoll" && poll_ns.as_deref() == Some("0");
        Finding {
            changes: if halts_at_once {
                vec![Change {
                    path: POLL.into(),
                    value: "200000".into(),
                }]
            } else {
                vec![]
            },
            ..Finding::checked(
                "idle states",
                !halts_at_once,
                match &poll_ns {
                    Some(ns) if driver == "haltpoll" => {
                        format!("cpuidle driver haltpoll (a VM), polls {ns} ns before halting")
                    }
                    _ => format!("cpuidle driver {driver}"),
                },
                "an idle virtual CPU halts at once and waits for the host to wake it: \
                 milliseconds on a busy host before a sleeping reader sees its next event",
                format!(
                    "write 200000 to /{POLL} (or boot with haltpoll.guest_halt_poll_ns=200000)"
                ),
            )
        }
    }

    /// Writes every change the findings allow, after saving the values they replace (once:
    /// a second `--apply` keeps the first one's saved values). Returns what it changed.
    pub fn apply(&self, findings: &[Finding]) -> anyhow::Result<Vec<Change>> {
        use anyhow::Context;
        let saved_path = self.root.join(SAVED);
        let mut saved: Vec<Change> = match std::fs::read_to_string(&saved_path) {
            Ok(t) => serde_json::from_str(&t).with_context(|| saved_path.display().to_string())?,
            Err(_) => Vec::new(),
        };
        let mut done = Vec::new();
        for c in findings.iter().flat_map(|f| &f.changes) {
            let old = self
                .read(&c.path)
                .with_context(|| format!("{}: cannot read", self.root.join(&c.path).display()))?;
            if !saved.iter().any(|s| s.path == c.path) {
                saved.push(Change {
                    path: c.path.clone(),
                    value: current_value(&old),
                });
                write_saved(&saved_path, &saved)?;
            }
            std::fs::write(self.root.join(&c.path), &c.value)
                .with_context(|| self.root.join(&c.path).display().to_string())?;
            done.push(c.clone());
        }
        Ok(done)
    }

    /// Puts back what `--apply` saved and forgets it. Returns what it wrote.
    pub fn restore(&self) -> anyhow::Result<Vec<Change>> {
        use anyhow::Context;
        let saved_path = self.root.join(SAVED);
        let text = match std::fs::read_to_string(&saved_path) {
            Ok(t) => t,
            Err(_) => return Ok(Vec::new()),
        };
        let saved: Vec<Change> =
            serde_json::from_str(&text).with_context(|| saved_path.display().to_string())?;
        for c in &saved {
            std::fs::write(self.root.join(&c.path), &c.value)
                .with_context(|| self.root.join(&c.path).display().to_string())?;
        }
        std::fs::remove_file(&saved_path).with_context(|| saved_path.display().to_string())?;
        Ok(saved)
    }
}

/// The value to write back for a file's current content: a sysfs choice list
/// (`always [madvise] never`) gives its selected word.
fn current_value(content: &str) -> String {
    content
        .split_whitespace()
        .find(|w| w.starts_with('[') && w.ends_with(']'))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| content.trim().to_string())
}

fn write_saved(path: &Path, saved: &[Change]) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let text = serde_json::to_string_pretty(saved)?;
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

/// The report, as `daq-engine tune` prints it.
pub fn report(findings: &[Finding]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(
            s,
            "  {:<5} {:<23} {}",
            if f.ok { "ok" } else { "WARN" },
            f.name,
            f.state
        );
        if !f.ok {
            let _ = writeln!(s, "        costs: {}", f.cost);
            let _ = writeln!(s, "        fix:   {}", f.fix);
        }
    }
    s
}

/// `daq-engine tune [--apply [--hugepages N] | --restore]`; returns the exit code.
pub fn run(apply: bool, restore: bool, hugepages: Option<u64>, root: Option<&Path>) -> i32 {
    let machine = match root {
        Some(r) => {
            let mut m = Machine::here(hugepages);
            m.root = r.to_path_buf();
            m
        }
        None => Machine::here(hugepages),
    };
    if restore {
        return match machine.restore() {
            Ok(done) if done.is_empty() => {
                println!("daq-engine tune: nothing to restore (no --apply since boot)");
                exit::OK
            }
            Ok(done) => {
                for c in done {
                    println!("restored /{} = {}", c.path, c.value);
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("daq-engine tune --restore: {e:#}");
                exit::FAILED
            }
        };
    }
    let findings = machine.check();
    println!("daq-engine tune: real-time readiness of this machine");
    print!("{}", report(&findings));
    if !apply {
        if findings.iter().any(|f| !f.changes.is_empty()) {
            println!("`daq-engine tune --apply` changes what is marked so; `--restore` undoes it");
        }
        return exit::OK;
    }
    match machine.apply(&findings) {
        Ok(done) => {
            for c in &done {
                println!("set /{} = {}", c.path, c.value);
            }
            if done.is_empty() {
                println!("nothing --apply may change");
            } else {
                println!(
                    "saved the old values in /{SAVED}; `daq-engine tune --restore` puts them back"
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("daq-engine tune --apply: {e:#}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("daq-tune-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let put = |p: &str, v: &str| {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, v).unwrap();
        };
        put("sys/devices/system/cpu/online", "0-7\n");
        put("sys/devices/system/cpu/isolated", "4-7\n");
        put("proc/cmdline", "quiet isolcpus=4-7 nohz_full=4-7\n");
        put("proc/sys/kernel/sched_rt_runtime_us", "950000\n");
        for c in 0..8 {
            put(
                &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
                if c < 2 {
                    "powersave\n"
                } else {
                    "performance\n"
                },
            );
        }
        put(
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        put(
            "sys/kernel/mm/transparent_hugepage/defrag",
            "always defer defer+madvise [madvise] never\n",
        );
        put("proc/sys/vm/nr_hugepages", "0\n");
        put("proc/meminfo", "MemTotal: 1 kB\nHugePages_Free:        0\n");
        put("proc/1234/comm", "irqbalance\n");
        put(
            "sys/devices/system/cpu/cpuidle/current_driver",
            "haltpoll\n",
        );
        put("sys/module/haltpoll/parameters/guest_halt_poll_ns", "0\n");
        put("etc/default/irqbalance", "#IRQBALANCE_BANNED_CPULIST=\n");
        d
    }

    fn by_name<'a>(f: &'a [Finding], name: &str) -> &'a Finding {
        f.iter().find(|x| x.name == name).unwrap()
    }

    #[test]
    fn finds_what_costs_latency_and_says_how_to_fix_it() {
        let d = fake("check");
        let m = Machine::at(&d, Some(64 * 1024), false, None);
        let f = m.check();
        let iso = by_name(&f, "isolated cores");
        assert!(!iso.ok && iso.state.starts_with("4-7"), "{iso:?}");
        assert!(iso.fix.contains("rcu_nocbs="), "{iso:?}");
        let gov = by_name(&f, "CPU governor");
        assert!(!gov.ok && gov.changes.len() == 2, "{gov:?}");
        assert!(by_name(&f, "RT throttling").ok);
        let thp = by_name(&f, "transparent huge pages");
        assert_eq!(thp.changes.len(), 1, "{thp:?}");
        assert!(!by_name(&f, "huge pages").ok);
        assert!(
            by_name(&f, "huge pages").changes.is_empty(),
            "reserved only when asked"
        );
        assert!(!by_name(&f, "locked memory").ok);
        assert!(!by_name(&f, "irqbalance").ok);
        let idle = by_name(&f, "idle states");
        assert!(!idle.ok && idle.changes.len() == 1, "{idle:?}");
        let text = report(&f);
        assert!(text.contains("WARN  CPU governor"), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn apply_changes_only_the_safe_settings_and_restore_puts_them_back() {
        let d = fake("apply");
        let m = Machine::at(&d, None, true, Some(16));
        let before = |p: &str| std::fs::read_to_string(d.join(p)).unwrap();
        let cmdline = before("proc/cmdline");
        let done = m.apply(&m.check()).unwrap();
        // Two governors, THP enabled, huge pages, the VM's halt polling.
        assert_eq!(done.len(), 5, "{done:?}");
        assert_eq!(
            before("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "performance"
        );
        assert_eq!(
            before("sys/kernel/mm/transparent_hugepage/enabled"),
            "madvise"
        );
        assert_eq!(before("proc/sys/vm/nr_hugepages"), "16");
        assert_eq!(
            before("sys/module/haltpoll/parameters/guest_halt_poll_ns"),
            "200000"
        );
        assert_eq!(before("proc/cmdline"), cmdline, "never touched");
        // A second --apply keeps the first one's saved values.
        std::fs::write(d.join("proc/sys/vm/nr_hugepages"), "8").unwrap();
        m.apply(&m.check()).unwrap();
        let restored = m.restore().unwrap();
        assert_eq!(restored.len(), 5);
        assert_eq!(
            before("sys/module/haltpoll/parameters/guest_halt_poll_ns"),
            "0"
        );
        assert_eq!(
            before("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"),
            "powersave"
        );
        assert_eq!(
            before("sys/kernel/mm/transparent_hugepage/enabled"),
            "always"
        );
        assert_eq!(before("proc/sys/vm/nr_hugepages"), "0");
        assert!(!d.join(SAVED).exists());
        assert!(m.restore().unwrap().is_empty(), "nothing left to restore");
        let _ = std::fs::remove_dir_all(&d);
    }
}
