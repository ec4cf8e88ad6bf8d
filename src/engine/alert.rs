//! Alerts: the setup's `options.alert_command`, run through `sh -c` when a warning starts
//! (device gone, buffer full, events lost, worker failed or restarted, disk low), when
//! the run ends unless a person stopped it, at its start for each earlier run in its
//! target directory that was killed (recovered then), and when the run cannot start at all
//! and nobody is at a terminal to see it (under a service manager it is tried again and then
//! given up), with the warning in the environment:
//!
//! | variable | what |
//! |---|---|
//! | `DAQ_ALERT_KIND` | one of [`Kind`]'s names: `device_gone`, `buffer_full`, `events_lost`, `kafka_topic_missing`, `worker_failed`, `worker_restarted`, `disk_low`, `disk_full`, `run_dir_gone`, `run_ended`, `run_killed`, `run_refused` |
//! | `DAQ_ALERT_SUBJECT` | the buffer, the worker, or the run directory (disk, run end; the killed run's for `run_killed`; the setup file for `run_refused`) |
//! | `DAQ_ALERT_TEXT` | the warning as the log says it |
//! | `DAQ_RUN_DIR` | the run directory (the target directory when a refused run has none) |
//!
//! Guarantees: the run never waits for a command. It is spawned (its own process group,
//! stdin closed, output appended to `alerts.log` in the run directory, or to the supervisor's
//! stderr before there is one), reaped from the
//! supervisor's loop, and killed with its whole group after [`TIMEOUT`]; a command that
//! cannot start, fails or is killed is logged. The same kind and subject alert at most once
//! per [`REPEAT_AFTER`], and no more than [`MAX_RUNNING`] commands run at once (further
//! alerts are logged and skipped). When the run has ended, commands still running get
//! [`END_GRACE`] to finish ([`END_ALERT_GRACE`] when the run's end is alerted). Must never
//! fail or slow the run.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The same kind and subject alert at most once within this time.
pub const REPEAT_AFTER: Duration = Duration::from_secs(600);
/// A command still running after this long is killed (with its process group).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many alert commands run at once.
pub const MAX_RUNNING: usize = 8;
/// After the run's end, how long commands still running may finish.
pub const END_GRACE: Duration = Duration::from_secs(2);
/// As [`END_GRACE`] when the end itself is alerted: time for a mail or a webhook's reply.
pub const END_ALERT_GRACE: Duration = Duration::from_secs(10);

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A device importer lost its device, or stopped coming round its loop (`engine::stall`).
    DeviceGone,
    /// A buffer has been full for a while.
    BufferFull,
    /// A buffer lost events (policy: drop).
    EventsLost,
    /// The Kafka broker an `export.kafka` sends to does not have its topic (the events wait
    /// in its spool until the topic is created).
    KafkaTopicMissing,
    /// A worker process failed and is not started again.
    WorkerFailed,
    /// A worker process failed and was started again.
    WorkerRestarted,
    /// Disk space runs low.
    DiskLow,
    /// The disk reserve is reached: the run stops.
    DiskFull,
    /// The run directory was deleted, moved or renamed while the run went on: the run stops,
    /// failed.
    RunDirGone,
    /// The run ended, and not because a person stopped it (a signal, the monitor): its
    /// limit, its sources' end, a full disk, a failure.
    RunEnded,
    /// An earlier run in the same target directory ended without its summary (its
    /// supervisor was killed, or the machine stopped) and was recovered at this run's start:
    /// nothing could alert its end.
    RunKilled,
    /// The run could not start (its setup refused, e.g. a detector not plugged in; the disk
    /// reserve, the run directory, the web page's address, the buffers): the command is
    /// waited for before the exit.
    RunRefused,
    /// A try of the command from `daq-engine check --test-alert`; no run.
    Test,
}

impl Kind {
    /// The name in `DAQ_ALERT_KIND`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DeviceGone => "device_gone",
            Kind::KafkaTopicMissing => "kafka_topic_missing",
            Kind::BufferFull => "buffer_full",
            Kind::EventsLost => "events_lost",
            Kind::WorkerFailed => "worker_failed",
            Kind::WorkerRestarted => "worker_restarted",
            Kind::DiskLow => "disk_low",
            Kind::DiskFull => "disk_full",
            Kind::RunDirGone => "run_dir_gone",
            Kind::RunEnded => "run_ended",
            Kind::RunKilled => "run_killed",
            Kind::RunRefused => "run_refused",
            Kind::Test => "test",
        }
    }
}

/// `sh -c command` with the alert in its environment, in its own process group, stdin
/// closed.
fn shell(command: &str, kind: Kind, subject: &str, text: &str, run_dir: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("DAQ_ALERT_KIND", kind.name())
        .env("DAQ_ALERT_SUBJECT", subject)
        .env("DAQ_ALERT_TEXT", text)
        .env("DAQ_RUN_DIR", run_dir)
        .env_remove(super::notify::SOCKET_VAR)
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

/// Runs `command` once as an alert of kind `test` would run (`dir` as `DAQ_RUN_DIR`),
/// waiting at most [`TIMEOUT`]: what it printed when it succeeded, else why it failed with
/// what it printed. For `daq-engine check --test-alert`, so that a mail or a webhook is
/// seen to arrive before a long run relies on it.
pub fn test(command: &str, subject: &str, dir: &Path) -> Result<String, String> {
    let text = "a test of options.alert_command from `daq-engine check --test-alert`";
    // Its output into an unnamed file rather than a pipe: a program it leaves behind (a
    // mailer's delivery) may keep a pipe open long after it ended.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .open(std::env::temp_dir())
            .map_err(|e| format!("cannot make a file for its output: {e}"))?
    };
    let copy = file
        .try_clone()
        .and_then(|a| Ok((a, file.try_clone()?)))
        .map_err(|e| format!("cannot make a file for its output: {e}"))?;
    let mut child = shell(command, Kind::Test, subject, text, dir)
        .stdout(Stdio::from(copy.0))
        .stderr(Stdio::from(copy.1))
        .spawn()
        .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if started.elapsed() >= TIMEOUT => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("cannot wait for it: {e}"));
            }
        }
    };
    if status.is_none() {
        kill_group(&mut child);
    }
    let mut bytes = Vec::new();
    let mut file = file;
    let _ = std::io::Seek::rewind(&mut file)
        .and_then(|_| std::io::Read::read_to_end(&mut file, &mut bytes));
    let said = String::from_utf8_lossy(&bytes).trim_end().to_string();
    match status {
        Some(st) if st.success() => Ok(said),
        Some(st) => Err(format!(
            "it {}; it said: {said}",
            super::supervisor::describe(st)
        )),
        None => Err(format!(
            "it still ran after {} s (a run kills it then); it said: {said}",
            TIMEOUT.as_secs()
        )),
    }
}

/// Kills the command `child` with its whole process group (what it started too) and reaps it.
fn kill_group(child: &mut Child) {
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// One command still running.
struct Running {
    child: Child,
    started: Instant,
    /// `kind subject`, for the log.
    what: String,
}

/// The alert commands of one run.
pub struct Alerts {
    /// `options.alert_command`; `None`: alerts only go to the log.
    command: Option<String>,
    run_dir: PathBuf,
    /// Whether `run_dir` is the run's own directory, where the commands' output goes to
    /// `alerts.log` and what goes wrong with them to the run's log; before there is one
    /// (a refused start), both go to stderr.
    in_run_dir: bool,
    /// When each (kind, subject) last ran its command.
    last: BTreeMap<(Kind, String), Instant>,
    /// Conditions that hold now (see [`Alerts::condition`]).
    holding: BTreeMap<(Kind, String), bool>,
    running: Vec<Running>,
}

impl Alerts {
    /// Alerts of the run in `run_dir` running `command`, if any.
    pub fn new(command: Option<String>, run_dir: &Path) -> Alerts {
        Alerts {
            command,
            run_dir: run_dir.to_path_buf(),
            in_run_dir: true,
            last: BTreeMap::new(),
            holding: BTreeMap::new(),
            running: Vec::new(),
        }
    }

    /// Alerts of a run refused before its run directory was made (`DAQ_RUN_DIR` is the
    /// target directory): the commands' output and failures go to stderr (the journal under
    /// a service manager).
    pub fn before_run(command: Option<String>, target: &Path) -> Alerts {
        Alerts {
            in_run_dir: false,
            ..Alerts::new(command, target)
        }
    }

    /// A problem with an alert command, for the run's log (or stderr before the run).
    fn note(&self, text: &str) {
        if self.in_run_dir {
            tracing::warn!("{text}");
        } else {
            eprintln!("daq-engine: {text}");
        }
    }

    /// A warning started: runs the command unless this kind and subject ran it within
    /// [`REPEAT_AFTER`]. Returns whether it was started.
    pub fn raise(&mut self, kind: Kind, subject: &str, text: &str) -> bool {
        self.raise_at(Instant::now(), kind, subject, text)
    }

    /// As [`raise`](Self::raise) at a given time (for tests).
    pub fn raise_at(&mut self, now: Instant, kind: Kind, subject: &str, text: &str) -> bool {
        if self.command.is_none() {
            return false;
        }
        let key = (kind, subject.to_string());
        if self
            .last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < REPEAT_AFTER)
        {
            return false;
        }
        self.reap();
        let what = format!("{} {subject}", kind.name());
        if self.running.len() >= MAX_RUNNING {
            tracing::warn!("alert {what} not sent: {MAX_RUNNING} alert commands are still running");
            return false;
        }
        self.last.insert(key, now);
        let (out, err) = if self.in_run_dir {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.run_dir.join("alerts.log"));
            match log.and_then(|f| Ok((f.try_clone()?, f))) {
                Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
                Err(_) => (Stdio::null(), Stdio::null()),
            }
        } else {
            // Its stdout onto stderr too: with the supervisor's words in the journal, and
            // not taken for the command line's output.
            let out = std::io::stderr().as_fd().try_clone_to_owned();
            (out.map_or(Stdio::null(), Stdio::from), Stdio::inherit())
        };
        let Some(command) = &self.command else {
            return false;
        };
        let spawned = shell(command, kind, subject, text, &self.run_dir)
            .stdout(out)
            .stderr(err)
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!("alert {what}: command started (pid {})", child.id());
                self.running.push(Running {
                    child,
                    started: now,
                    what,
                });
                true
            }
            Err(e) => {
                self.note(&format!(
                    "alert {what}: cannot start `sh -c` for alert_command: {e}"
                ));
                false
            }
        }
    }

    /// A condition (e.g. a device being gone) is `on` or not now: alerts when it turns on.
    /// Returns whether it turned on or off now.
    pub fn condition(&mut self, kind: Kind, subject: &str, on: bool, text: &str) -> bool {
        let was = self
            .holding
            .insert((kind, subject.to_string()), on)
            .unwrap_or(false);
        if on && !was {
            self.raise(kind, subject, text);
        }
        on != was
    }

    /// Collects ended commands (logging failures) and kills those past [`TIMEOUT`]; called
    /// from the supervisor's loop.
    pub fn reap(&mut self) {
        let now = Instant::now();
        let mut notes = Vec::new();
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(st)) => {
                if !st.success() {
                    notes.push(format!(
                        "alert {}: alert_command {}{}",
                        r.what,
                        super::supervisor::describe(st),
                        if self.in_run_dir {
                            " (its output is in alerts.log)"
                        } else {
                            ""
                        }
                    ));
                }
                false
            }
            Ok(None) if now.duration_since(r.started) >= TIMEOUT => {
                kill_group(&mut r.child);
                notes.push(format!(
                    "alert {}: alert_command still ran after {} s: killed",
                    r.what,
                    TIMEOUT.as_secs()
                ));
                false
            }
            Ok(None) => true,
            Err(e) => {
                notes.push(format!(
                    "alert {}: cannot wait for alert_command: {e}",
                    r.what
                ));
                false
            }
        });
        for n in notes {
            self.note(&n);
        }
    }

    /// The run ends: commands still running get a last chance to finish (at most `grace`:
    /// [`END_GRACE`] or [`END_ALERT_GRACE`]), then are killed like at the timeout.
    pub fn finish(&mut self, grace: Duration) {
        let until = Instant::now() + grace;
        while !self.running.is_empty() && Instant::now() < until {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        for mut r in std::mem::take(&mut self.running) {
            kill_group(&mut r.child);
            self.note(&format!(
                "alert {}: alert_command still ran when the run ended: killed",
                r.what
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_kind_and_subject_once_per_window() {
        let d = crate::fsio::test_dir("alert-window");
        let mut a = Alerts::new(Some("true".into()), &d);
        let t0 = Instant::now();
        assert!(a.raise_at(t0, Kind::BufferFull, "raw", "full"));
        assert!(!a.raise_at(t0 + Duration::from_secs(1), Kind::BufferFull, "raw", "full"));
        // Another subject or another kind is another alert.
        assert!(a.raise_at(t0, Kind::BufferFull, "copy", "full"));
        assert!(a.raise_at(t0, Kind::EventsLost, "raw", "lost"));
        assert!(a.raise_at(t0 + REPEAT_AFTER, Kind::BufferFull, "raw", "full"));
        a.finish(END_GRACE);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_condition_alerts_when_it_starts() {
        let d = crate::fsio::test_dir("alert-cond");
        let out = d.join("out.txt");
        let mut a = Alerts::new(
            Some(format!(
                "echo \"$DAQ_ALERT_KIND $DAQ_ALERT_SUBJECT $DAQ_ALERT_TEXT\" >> {}",
                out.display()
            )),
            &d,
        );
        a.condition(Kind::DeviceGone, "scope", false, "here");
        a.condition(Kind::DeviceGone, "scope", true, "gone");
        a.condition(Kind::DeviceGone, "scope", true, "gone");
        a.finish(END_GRACE);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "device_gone scope gone\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn without_a_command_nothing_runs() {
        let d = crate::fsio::test_dir("alert-none");
        let mut a = Alerts::new(None, &d);
        assert!(!a.raise(Kind::DiskLow, "x", "y"));
        assert!(!d.join("alerts.log").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
