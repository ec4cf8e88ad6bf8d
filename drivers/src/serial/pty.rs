//! Pseudo-terminal harness: a simulated device runs in a thread on the master side of a pty;
//! drivers open the slave through `serialport`, by path, exactly as they would open
//! `/dev/ttyUSB0`. A stable symlink points at the current slave so "unplug" (close the
//! master) and "replug" (a new pty, link re-pointed) look like a real USB serial adapter.
//!
//! Guarantees: every byte the host sends and the device answers is recorded in [`Wire`] (up
//! to a cap) for byte-exact transcripts; unplug closes the master, so the driver's reads see
//! the hang-up. Must never: block the device thread on a full pty (output is queued and
//! written as the host reads), or leave its temporary directory behind after drop.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

/// Most bytes each direction of [`Wire`] keeps.
const WIRE_CAP: usize = 1 << 20;

/// A device model the harness drives. Time is host time since this plug-in.
pub trait SimulatedDevice: Send + 'static {
    /// The host sent `bytes`; append any answer to `out`.
    fn receive(&mut self, bytes: &[u8], now: Duration, out: &mut Vec<u8>);
    /// Advance the device to `now`; append anything it sends on its own to `out`.
    fn advance(&mut self, now: Duration, out: &mut Vec<u8>);
    /// When it next has something to send on its own, if ever.
    fn next_wakeup(&self) -> Option<Duration>;
}

/// A device that sends fixed bytes once, as soon as it is plugged in, and ignores what the
/// host sends: for transcripts of bad, truncated or interleaved lines.
pub struct ScriptedDevice {
    script: Vec<u8>,
    sent: bool,
}

impl ScriptedDevice {
    /// A device that will send `script`.
    pub fn new(script: impl Into<Vec<u8>>) -> ScriptedDevice {
        ScriptedDevice {
            script: script.into(),
            sent: false,
        }
    }
}

impl SimulatedDevice for ScriptedDevice {
    fn receive(&mut self, _: &[u8], _: Duration, _: &mut Vec<u8>) {}
    fn advance(&mut self, _: Duration, out: &mut Vec<u8>) {
        if !self.sent {
            out.extend_from_slice(&self.script);
            self.sent = true;
        }
    }
    fn next_wakeup(&self) -> Option<Duration> {
        None
    }
}

/// What crossed the simulated wire (both directions, capped at 1 MiB each) and counters.
#[derive(Debug, Default)]
pub struct Wire {
    /// Bytes the host sent to the device, in order.
    pub to_device: Mutex<Vec<u8>>,
    /// Bytes the device sent to the host, in order.
    pub to_host: Mutex<Vec<u8>>,
    /// Total bytes written to the host (not capped).
    pub to_host_total: AtomicU64,
}

impl Wire {
    fn record(v: &Mutex<Vec<u8>>, bytes: &[u8]) {
        let mut v = v.lock().unwrap_or_else(|p| p.into_inner());
        let room = WIRE_CAP.saturating_sub(v.len());
        v.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// A copy of what the host has sent so far.
    pub fn host_sent(&self) -> Vec<u8> {
        self.to_device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of what the device has sent so far.
    pub fn device_sent(&self) -> Vec<u8> {
        self.to_host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the recorded bytes (counters stay).
    pub fn clear(&self) {
        self.to_device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.to_host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

type DeviceFactory = Box<dyn FnMut(u32) -> Box<dyn SimulatedDevice> + Send>;

struct Plugged {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    /// Held so the master never sees "no slave open" between driver opens.
    _slave: OwnedFd,
    pts: PathBuf,
}

/// A running simulator: a pty pair, a device thread and a stable symlink to the slave.
pub struct SimulatorHandle {
    dir: PathBuf,
    link: PathBuf,
    factory: DeviceFactory,
    plugged: Option<Plugged>,
    plugs: u32,
    wire: Arc<Wire>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl SimulatorHandle {
    /// Starts a simulator: `factory(n)` builds the device for the n-th plug-in (0 first).
    /// The stable path is `<tmp>/daq-sim-<pid>-<k>/<name>`.
    pub fn start(
        name: &str,
        factory: impl FnMut(u32) -> Box<dyn SimulatedDevice> + Send + 'static,
    ) -> std::io::Result<SimulatorHandle> {
        remove_dirs_of_the_dead(&std::env::temp_dir());
        let dir = std::env::temp_dir().join(format!(
            "daq-sim-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let link = dir.join(name);
        let mut handle = SimulatorHandle {
            dir,
            link,
            factory: Box::new(factory),
            plugged: None,
            plugs: 0,
            wire: Arc::new(Wire::default()),
        };
        handle.replug()?;
        Ok(handle)
    }

    /// The stable path drivers open (a symlink to the current pty slave).
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// The current pty slave (`/dev/pts/N`), if plugged in.
    pub fn pts(&self) -> Option<&Path> {
        self.plugged.as_ref().map(|p| p.pts.as_path())
    }

    /// The recorded traffic.
    pub fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

    /// How many times the device has been plugged in (1 after start).
    pub fn plugs(&self) -> u32 {
        self.plugs
    }

    /// Whether the device is plugged in.
    pub fn is_plugged(&self) -> bool {
        self.plugged.is_some()
    }

    /// Pulls the plug: stops the device thread and closes the pty master, so the driver's
    /// reads see a hang-up. The symlink is left dangling, as `/dev/serial/by-id` would be.
    pub fn unplug(&mut self) {
        if let Some(p) = self.plugged.take() {
            p.stop.store(true, Ordering::Relaxed);
            let _ = p.thread.join();
        }
        let _ = std::fs::remove_file(&self.link);
    }

    /// Plugs the device in again (or for the first time): a new pty, a fresh device from the
    /// factory, the symlink re-pointed atomically.
    pub fn replug(&mut self) -> std::io::Result<()> {
        self.unplug();
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        // Close-on-exec: a program this process starts (the engine under test) must not
        // hold the master open, or closing it here would not hang up the line there.
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            fcntl(fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .map_err(std::io::Error::from)?;
        }
        // Raw mode before anyone writes: no echo, no CR/LF translation.
        let mut t = tcgetattr(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &t).map_err(std::io::Error::from)?;
        let pts = nix::unistd::ttyname(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        let fl = fcntl(pty.master.as_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        fcntl(
            pty.master.as_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
        )
        .map_err(std::io::Error::from)?;

        let tmp = self.dir.join(".link-new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&pts, &tmp)?;
        std::fs::rename(&tmp, &self.link)?;

        let device = (self.factory)(self.plugs);
        self.plugs += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let wire = self.wire.clone();
            let master = pty.master;
            std::thread::Builder::new()
                .name("daq-sim".into())
                .spawn(move || run_device(master, device, stop, wire))?
        };
        self.plugged = Some(Plugged {
            stop,
            thread,
            _slave: pty.slave,
            pts,
        });
        Ok(())
    }
}

/// Removes the simulator directories (`daq-sim-<pid>-<k>`) in `tmp` of processes that are
/// gone: one killed (a stalled worker's SIGKILL, a test's) could not remove its own, and
/// they piled up in /tmp, each with a link to a pty long closed.
fn remove_dirs_of_the_dead(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("daq-sim-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone && pid > 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.unplug();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_device(
    master: OwnedFd,
    mut device: Box<dyn SimulatedDevice>,
    stop: Arc<AtomicBool>,
    wire: Arc<Wire>,
) {
    let started = Instant::now();
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut sent = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut inbuf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let now = started.elapsed();
        out.clear();
        device.advance(now, &mut out);
        pending.extend_from_slice(&out);

        let mut wait = Duration::from_millis(10);
        if let Some(at) = device.next_wakeup() {
            wait = wait.min(at.saturating_sub(now));
        }
        let mut flags = PollFlags::POLLIN;
        if sent < pending.len() {
            flags |= PollFlags::POLLOUT;
        }
        let mut fds = [PollFd::new(master.as_fd(), flags)];
        let ms = (wait.as_micros().div_ceil(1000)).min(10) as u16;
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            continue;
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            if let Ok(n) = nix::unistd::read(&master, &mut inbuf) {
                if n > 0 {
                    Wire::record(&wire.to_device, &inbuf[..n]);
                    out.clear();
                    device.receive(&inbuf[..n], started.elapsed(), &mut out);
                    pending.extend_from_slice(&out);
                }
            }
        }
        if sent < pending.len() {
            match nix::unistd::write(&master, &pending[sent..]) {
                Ok(n) => {
                    Wire::record(&wire.to_host, &pending[sent..sent + n]);
                    wire.to_host_total.fetch_add(n as u64, Ordering::Relaxed);
                    sent += n;
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => {}
            }
            if sent == pending.len() {
                pending.clear();
                sent = 0;
            }
        }
    }
    // Dropping `master` here closes it: the slave side sees the hang-up.
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tester found seven `daq-sim-<pid>-0` directories in /tmp, left by simulated device
    /// workers killed with SIGKILL. Those of processes that are gone are removed when a
    /// simulator starts; a live process's stay.
    #[test]
    fn the_simulator_directories_of_dead_processes_are_removed() {
        let tmp = std::env::temp_dir().join(format!("daq-sim-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let theirs = tmp.join(format!("daq-sim-{dead}-0"));
        let mine = tmp.join(format!("daq-sim-{}-0", std::process::id()));
        for d in [&theirs, &mine] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::symlink("/dev/pts/999", d.join("gmc")).unwrap();
        }
        let other = tmp.join("daq-sim-notes");
        std::fs::create_dir_all(&other).unwrap();
        remove_dirs_of_the_dead(&tmp);
        assert!(!theirs.exists());
        assert!(mine.exists() && other.exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
