//! A tansu broker (a Kafka-protocol broker in Rust, no Java) on a free loopback port, for the
//! Kafka tests and `daq-engine bench kafka`, killed when dropped. Its storage is in memory
//! (gone when it is killed) or, with [`Tansu::start_sqlite`], a SQLite file that outlives a
//! kill, as a real broker's log does. `scripts/install-tansu.sh` builds tansu 0.6.0 once (with
//! both engines); `DAQ_TANSU` names the binary.
//!
//! tansu 0.6.0 creates no topic by itself: [`Tansu::create_topic`] makes each one first.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/install-tansu.sh` puts the binary by default.
pub const INSTALLED: &str = "/var/cache/daq-engine/tansu/bin/tansu";

/// The tansu binary: `$DAQ_TANSU`, else the installed one, if it is a file.
pub fn binary() -> Option<PathBuf> {
    std::env::var_os("DAQ_TANSU")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(INSTALLED)))
        .filter(|p| p.is_file())
}

/// A running broker.
pub struct Tansu {
    bin: PathBuf,
    /// host:port for `bootstrap.servers`.
    pub address: String,
    port: u16,
    /// The port it tells clients to connect to, when not its own (a proxy in front).
    advertised: Option<u16>,
    child: Option<Child>,
    log: PathBuf,
    /// The directory of the SQLite storage (`tansu.db`), or `None` for memory.
    data: Option<PathBuf>,
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits (up to 60 s) until it takes
    /// connections.
    pub fn start(bin: &Path, tag: &str) -> Result<Tansu, String> {
        Tansu::start_advertising(bin, tag, None)
    }

    /// As [`Tansu::start`], with its storage in the SQLite file `data/tansu.db` (made when
    /// missing): topics, records, committed offsets and idempotent producers' state survive
    /// [`Tansu::kill`] and [`Tansu::restart`]. Needs a tansu built with the `libsql` feature.
    pub fn start_sqlite(bin: &Path, tag: &str, data: &Path) -> Result<Tansu, String> {
        Tansu::start_with(bin, tag, None, Some(data.to_path_buf()))
    }

    /// As [`Tansu::start`], but telling clients (in its metadata) to connect to loopback port
    /// `advertised` instead of its own: for a proxy in front of it that sees every request.
    pub fn start_advertising(
        bin: &Path,
        tag: &str,
        advertised: Option<u16>,
    ) -> Result<Tansu, String> {
        Tansu::start_with(bin, tag, advertised, None)
    }

    fn start_with(
        bin: &Path,
        tag: &str,
        advertised: Option<u16>,
        data: Option<PathBuf>,
    ) -> Result<Tansu, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("daq-tansu-{tag}-{}.log", std::process::id()));
        let mut t = Tansu {
            bin: bin.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
            port,
            advertised,
            child: None,
            log,
            data,
        };
        t.restart()?;
        Ok(t)
    }

    /// Starts the broker again on the same port (after [`Tansu::kill`]): empty when its
    /// storage is in memory, with all it had stored when it is SQLite.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("the broker is running".into());
        }
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let log = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        // The kernel kills the broker when the thread that started it ends, so a test killed
        // by a signal (its Drop never runs) leaves no broker behind.
        crate::runtime::child_ends_with_parent(&mut cmd, libc::SIGKILL);
        // tansu opens `sqlite://NAME` relative to its working directory; it also reads a .env
        // file from there: there is none in either directory.
        let (storage, dir) = match &self.data {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                ("sqlite://tansu.db", d.clone())
            }
            None => ("memory://tansu/", std::env::temp_dir()),
        };
        let child = cmd
            .args(["broker", "--storage-engine", storage])
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "tansu ended at its start ({st}), storage {storage}: {}",
                    self.log()
                ));
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "tansu did not listen on {} within 60 s: {}",
                    self.address,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), String> {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.address)])
            .current_dir(std::env::temp_dir())
            .output()
            .map_err(|e| format!("tansu topic create: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tansu topic create {topic}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Stops (`pause: true`, SIGSTOP) or continues (SIGCONT) the broker: while stopped it
    /// takes connections but answers nothing, as a hung or unreachable broker; its data and
    /// producer state stay, as a restarted broker with storage keeps them.
    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn pause(&self, pause: bool) -> Result<(), String> {
        let Some(c) = &self.child else {
            return Err("the broker is not running".into());
        };
        let sig = if pause {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig)
            .map_err(|e| format!("{sig} to tansu: {e}"))
    }

    /// Kills the broker (SIGKILL): what it held in memory is gone; its SQLite file stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
