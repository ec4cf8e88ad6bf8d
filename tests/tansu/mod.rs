//! A real Kafka-protocol broker for the Kafka tests: tansu 0.6.0 (Rust, no Java), in-memory
//! storage, on a free loopback port, killed when dropped. `scripts/install-tansu.sh` builds
//! it once outside the clone; `scripts/test.sh` sets `DAQ_TANSU` to the binary. Without
//! `DAQ_TANSU` the tests print a SKIPPED line and pass.
//!
//! tansu has no topic auto-creation: [`Broker::create_topic`] makes each topic first.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary, or `None` after printing why the test is skipped.
pub fn binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("DAQ_TANSU").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            eprintln!(
                "SKIPPED {test}: set DAQ_TANSU to a tansu 0.6.0 binary (scripts/install-tansu.sh \
                 builds one; scripts/test.sh sets it)"
            );
            None
        }
    }
}

/// A running broker.
pub struct Broker {
    bin: PathBuf,
    /// host:port for bootstrap.servers.
    pub address: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it takes connections.
    pub fn start(bin: &std::path::Path, tag: &str) -> Broker {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("daq-tansu-{tag}-{}.log", std::process::id()));
        let mut b = Broker {
            bin: bin.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
            port,
            child: None,
            log,
        };
        b.restart();
        b
    }

    /// Starts the broker again on the same port (after [`Broker::kill`]): empty, as its
    /// storage is in memory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu reads a .env file from its working directory: none here.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "tansu did not listen on {} within 60 s: {}",
                self.address,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates `topic` with `partitions` partitions (tansu creates none by itself).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &format!("tcp://{}", self.address),
            ])
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
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

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
