//! What Linux's /proc tells about a process and the machine, read and parsed in one place:
//! a process's state, flags, CPU ticks and last core (`/proc/PID/stat`), the CPU time and
//! context switches of some of its threads (`/proc/PID/task`), the CPU model
//! (`/proc/cpuinfo`).
//!
//! Guarantees: never panics and never reports an error; a process that is gone or a file
//! that cannot be read or parsed is `None` (or counts nothing). Uses no other module of the
//! crate (the bottom layer, beside `shm`, which asks it whether a process is alive).

/// The fields of `/proc/PID/stat` this crate reads (proc(5)). Those after the state are
/// `None` when the line is cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (`R`, `S`, `D`, `Z` zombie, `X` dead, …).
    pub state: char,
    /// The kernel's flags word (`PF_*` of include/linux/sched.h).
    pub flags: Option<u64>,
    /// User and system time in clock ticks (`sysconf(_SC_CLK_TCK)` a second).
    pub ticks: Option<(u64, u64)>,
    /// The core it last ran on.
    pub processor: Option<u32>,
}

impl Stat {
    /// `PF_EXITING` in [`Stat::flags`]: the task is exiting.
    pub const PF_EXITING: u64 = 0x4;

    /// The stat line of process `pid`; `None` when it is gone.
    pub fn read(pid: u32) -> Option<Stat> {
        Stat::read_in(&format!("/proc/{pid}"))
    }

    /// The stat line of thread `tid` of process `pid` (its own CPU time, not the
    /// process's); `None` when it is gone.
    pub fn read_thread(pid: u32, tid: u32) -> Option<Stat> {
        Stat::read_in(&format!("/proc/{pid}/task/{tid}"))
    }

    /// The stat line in the /proc directory `dir` of a process or thread.
    fn read_in(dir: &str) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)
    }

    /// Parses one stat line. The command name (field 2) is in parentheses and may itself
    /// hold spaces and parentheses, so the fields are counted from its last `)`.
    pub fn parse(line: &str) -> Option<Stat> {
        let (_, rest) = line.rsplit_once(')')?;
        // After the name: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) tpgid(5) flags(6)
        // minflt(7) cminflt(8) majflt(9) cmajflt(10) utime(11) stime(12) ... processor(36)
        let f: Vec<&str> = rest.split_whitespace().collect();
        let state = f.first()?.chars().next()?;
        let number = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        Some(Stat {
            state,
            flags: number(6),
            ticks: number(11).zip(number(12)),
            processor: f.get(36).and_then(|v| v.parse().ok()),
        })
    }

    /// A zombie or dead task: it has ended, only its parent has not reaped it yet.
    pub fn ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// User plus system time in seconds, from the ticks.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let (user, system) = self.ticks?;
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some((user + system) as f64 / hz.max(1.0))
    }
}

/// The bytes process `pid` has read and written through system calls so far (`rchar` plus
/// `wchar` of `/proc/PID/io`, page-cache hits included); `None` when it is gone or the file
/// cannot be read.
pub fn io_bytes(pid: u32) -> Option<u64> {
    io_bytes_in(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

/// As [`io_bytes`], of thread `tid` of process `pid` alone.
pub fn thread_io_bytes(pid: u32, tid: u32) -> Option<u64> {
    io_bytes_in(&std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/io")).ok()?)
}

/// `rchar` plus `wchar` of the text of a `/proc/PID/io` file.
fn io_bytes_in(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("rchar:")? + field("wchar:")?)
}

/// What some threads of a process used so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Time on a CPU (ns).
    pub cpu_ns: u64,
    /// Times they gave up the CPU themselves (to sleep or wait).
    pub voluntary_switches: u64,
    /// Times they were preempted.
    pub involuntary_switches: u64,
}

impl Usage {
    /// Context switches of both kinds: how often they woke.
    pub fn switches(&self) -> u64 {
        self.voluntary_switches + self.involuntary_switches
    }
}

/// What the threads of process `pid` whose name (`comm`) passes `named` used so far, from
/// /proc: `schedstat` (time on the CPU) and `status` (context switches).
pub fn thread_usage(pid: u32, named: impl Fn(&str) -> bool) -> Usage {
    let mut u = Usage::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return u;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !named(comm.trim_end()) {
            continue;
        }
        // schedstat: time on the CPU (ns), time waiting to run (ns), timeslices.
        let schedstat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        u.cpu_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        for l in status.lines() {
            let count = |prefix: &str| -> u64 {
                l.strip_prefix(prefix)
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            u.voluntary_switches += count("voluntary_ctxt_switches:");
            u.involuntary_switches += count("nonvoluntary_ctxt_switches:");
        }
    }
    u
}

/// The CPU model (the first `model name` of /proc/cpuinfo); `None` where there is none.
pub fn cpu_model() -> Option<String> {
    cpu_model_in(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

fn cpu_model_in(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_bytes_are_what_was_read_and_written() {
        let text = "rchar: 1200\nwchar: 34\nsyscr: 5\nsyscw: 2\nread_bytes: 4096\n";
        assert_eq!(io_bytes_in(text), Some(1234));
        assert_eq!(io_bytes_in("rchar: 1200\n"), None);
        // This process has read its own source files, at least.
        assert!(io_bytes(std::process::id()).is_some_and(|n| n > 0));
    }

    #[test]
    fn a_stat_line_is_counted_from_the_last_parenthesis_of_the_name() {
        // A name with a space and a parenthesis in it; flags 0x404044 hold PF_EXITING;
        // utime 7, stime 3, processor 1.
        let line = "4242 (a (b) c) Z 1 4242 4242 0 -1 4211012 10 0 0 0 7 3 0 0 20 0 1 0 \
                    100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = Stat::parse(line).unwrap();
        assert_eq!(s.state, 'Z');
        assert!(s.ended());
        assert_eq!(s.flags, Some(4211012));
        assert_ne!(s.flags.unwrap() & Stat::PF_EXITING, 0);
        assert_eq!(s.ticks, Some((7, 3)));
        assert_eq!(s.processor, Some(1));
        // Cut short after the state: only the state is known.
        let short = Stat::parse("1 (init) S").unwrap();
        assert_eq!((short.state, short.flags, short.ticks), ('S', None, None));
        assert!(!short.ended());
        assert_eq!(Stat::parse("garbage"), None);
        assert_eq!(Stat::parse("1 (x) "), None);
    }

    #[test]
    fn this_process_is_running_and_its_cpu_time_is_read() {
        let s = Stat::read(std::process::id()).unwrap();
        assert!(!s.ended());
        assert!(s.cpu_seconds().is_some());
        assert_eq!(Stat::read(0), None);
    }

    #[test]
    fn the_cpu_model_is_the_value_of_the_first_model_name_line() {
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.0GHz \n\
                    processor\t: 1\nmodel name\t: Other\n";
        assert_eq!(cpu_model_in(info).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(cpu_model_in("processor\t: 0\n"), None);
    }
}
