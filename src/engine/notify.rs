//! The service manager's side of a run: systemd's `sd_notify` protocol, written by hand (one
//! datagram per message to the socket named in `NOTIFY_SOCKET`; a name starting with `@` is
//! an abstract socket).
//!
//! Guarantees: without `NOTIFY_SOCKET` every call does nothing and allocates nothing; a
//! message that cannot be sent is dropped (a service manager that went away must never stop
//! a run); `READY=1` and `STOPPING=1` are sent at most once each; watchdog pings go out at
//! half the interval systemd asked for in `WATCHDOG_USEC`, and only when `WATCHDOG_PID`
//! (if set) names this process. Must never block: the socket is non-blocking.

use crate::run_dir::Snapshot;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The environment variable systemd names its notification socket in.
pub const SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// The connection to the service manager, if the run was started by one.
pub struct Notify {
    /// The socket and where to send; `None` when not started with `NOTIFY_SOCKET`.
    to: Option<(UnixDatagram, SocketAddr)>,
    /// How often to ping the watchdog (half of `WATCHDOG_USEC`); `None` without a watchdog.
    ping_every: Option<Duration>,
    /// When the watchdog was last pinged; `None` before the first ping.
    pinged: Option<Instant>,
    /// Whether `READY=1` was sent.
    ready: bool,
    /// Whether `STOPPING=1` was sent.
    stopping: bool,
}

/// Where `NOTIFY_SOCKET`'s value points: a path, or an abstract name after `@`.
fn address(value: &str) -> std::io::Result<SocketAddr> {
    match value.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(value),
    }
}

/// Half of the watchdog interval `WATCHDOG_USEC` asks for, when it is meant for process
/// `pid` (`WATCHDOG_PID` unset or equal to it).
fn ping_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if watchdog_pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(pid)) {
        return None;
    }
    let us = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(us / 2))
}

impl Notify {
    /// Connects to the socket in `NOTIFY_SOCKET`, if set; the watchdog from `WATCHDOG_USEC`.
    pub fn from_env() -> Notify {
        let var = |k: &str| std::env::var(k).ok();
        let to = var(SOCKET_VAR).filter(|v| !v.is_empty()).and_then(|v| {
            let made = address(&v).and_then(|addr| {
                let sock = UnixDatagram::unbound()?;
                sock.set_nonblocking(true)?;
                Ok((sock, addr))
            });
            made.map_err(|e| tracing::warn!("{SOCKET_VAR}={v}: cannot use it: {e}"))
                .ok()
        });
        let ping_every = to.as_ref().and_then(|_| {
            ping_interval(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            )
        });
        Notify {
            to,
            ping_every,
            pinged: None,
            ready: false,
            stopping: false,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.to {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("{SOCKET_VAR}: '{msg}' not sent: {e}");
            }
        }
    }

    /// Every worker runs: `READY=1` (once).
    pub fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.send("READY=1");
        }
    }

    /// Called from the supervisor's loop: pings the watchdog when half its interval passed.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.ping_every else { return };
        if self.pinged.is_none_or(|t| now.duration_since(t) >= every) {
            self.pinged = Some(now);
            self.send("WATCHDOG=1");
        }
    }

    /// A status line for `systemctl status` (`STATUS=`; one line).
    pub fn status(&self, text: &str) {
        if self.to.is_some() {
            self.send(&format!("STATUS={}", text.replace('\n', " ")));
        }
    }

    /// The run is stopping: `STOPPING=1` (once).
    pub fn stopping(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.send("STOPPING=1");
        }
    }
}

/// The status line of a statistics snapshot (a stats.jsonl line): per buffer its rate and
/// fill, and what a stop waits for.
pub fn status_of(stats: &Snapshot) -> String {
    let mut parts = Vec::new();
    for (name, b) in &stats.buffers {
        let mut s = format!(
            "{name}: {} ev/s fill {:.0}%",
            super::supervisor::human(b.rate_hz),
            b.fill * 100.0
        );
        if b.lost > 0 {
            s.push_str(&format!(" lost {}", b.lost));
        }
        parts.push(s);
    }
    if stats.stopping {
        parts.push("stopping: buffers drain".into());
    }
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_only_for_this_pid() {
        assert_eq!(
            ping_interval(Some("20000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            ping_interval(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(ping_interval(Some("20000000"), Some("8"), 7), None);
        assert_eq!(ping_interval(None, None, 7), None);
        assert_eq!(ping_interval(Some("0"), None, 7), None);
        assert_eq!(ping_interval(Some("x"), None, 7), None);
    }

    #[test]
    fn abstract_and_path_addresses() {
        use std::os::linux::net::SocketAddrExt;
        let a = address("@daq/notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"daq/notify"[..]));
        let p = address("/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }

    #[test]
    fn status_names_rates_fill_and_losses() {
        let line = serde_json::json!({
            "stopping": false,
            "buffers": {
                "raw": {"rate_hz": 12345.0, "fill": 0.5, "lost": 0},
                "copy": {"rate_hz": 10.0, "fill": 0.0, "lost": 3}
            }
        });
        assert_eq!(
            status_of(&Snapshot::from_json(&line)),
            "copy: 10 ev/s fill 0% lost 3 | raw: 12.3 k ev/s fill 50%"
        );
    }
}
