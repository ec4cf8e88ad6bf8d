//! A tansu broker (a Kafka-protocol broker in Rust, no Java) on a free loopback port, for the
//! Kafka tests and `daq-engine bench kafka`: in-memory storage, killed when dropped.
//! `scripts/install-tansu.sh` builds tansu 0.6.0 once; `DAQ_TANSU` names the binary.
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
    child: Option<Child>,
    log: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits (up to 60 s) until it takes
    /// connections.
    pub fn start(bin: &Path, tag: &str) -> Result<Tansu, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("daq-tansu-{tag}-{}.log", std::process::id()));
        let mut t = Tansu {
            bin: bin.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
            port,
            child: None,
            log,
        };
        t.restart()?;
        Ok(t)
    }

    /// Starts the broker again on the same port (after [`Tansu::kill`]): empty, as its
    /// storage is in memory.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("the broker is running".into());
        }
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it makes the
        // kernel kill the broker when the thread that started it ends, so a test killed by a
        // signal (its Drop never runs) leaves no broker behind.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads a .env file from its working directory: none there.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
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

    /// Kills the broker (SIGKILL): what it held is gone.
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
