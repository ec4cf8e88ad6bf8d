//! The TCP side both simulated Red Pitaya servers (MCPHA and SCPI) share: a listener on
//! loopback served by one thread, one client at a time (others wait in the backlog, as with
//! the board's servers), and the controls a test holds: the board vanishes and reappears,
//! clients are counted, what the client sent is kept, the server stops when dropped.
//!
//! Guarantees: while the board has vanished nobody is accepted and a client being served
//! is reset (RST, not an orderly close) at its next look; dropping the [`SimServer`] stops
//! the thread and waits for it. Must never: know either protocol; that is the board's.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the test thread and the server thread share; `W` is what the transcript keeps of
/// one command (an 8-byte word, a text line).
pub(crate) struct SimShared<W> {
    /// The server thread ends.
    stop: AtomicBool,
    /// The board is gone: no client is accepted or served.
    vanished: AtomicBool,
    /// Clients accepted so far.
    clients: AtomicU64,
    /// Every command received, when the board keeps a transcript.
    transcript: Mutex<Vec<W>>,
}

impl<W> SimShared<W> {
    /// The server is asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Keeps `w` in the transcript.
    pub(crate) fn record(&self, w: W) {
        if let Ok(mut t) = self.transcript.lock() {
            t.push(w);
        }
    }

    /// Whether the client on `s` must be let go now: the server stops, or the board
    /// vanished (then `s` is closed with a reset once dropped).
    pub(crate) fn client_must_go(&self, s: &TcpStream) -> bool {
        if self.stopped() {
            return true;
        }
        if self.vanished.load(Ordering::SeqCst) {
            reset(s);
            return true;
        }
        false
    }
}

/// A simulated board behind the listener.
pub(crate) trait SimBoard {
    /// Serves one client until it leaves or must go ([`SimShared::client_must_go`]).
    fn serve(&mut self, s: TcpStream);
    /// Called while no client is waiting, every 2 ms.
    fn idle(&mut self) {}
}

/// A running simulated server; stops when dropped. The MCPHA and SCPI simulators dereference
/// to theirs for the controls they share.
pub struct SimServer<W> {
    addr: SocketAddr,
    shared: Arc<SimShared<W>>,
    thread: Option<JoinHandle<()>>,
}

impl<W: Clone + Send + 'static> SimServer<W> {
    /// Listens on `addr` and serves clients, one at a time, with the board `make` builds on
    /// the server thread (named `name`).
    pub(crate) fn start<B: SimBoard>(
        addr: &str,
        name: &str,
        make: impl FnOnce(Arc<SimShared<W>>) -> B + Send + 'static,
    ) -> std::io::Result<SimServer<W>> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(SimShared {
            stop: AtomicBool::new(false),
            vanished: AtomicBool::new(false),
            clients: AtomicU64::new(0),
            transcript: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut board = make(sh.clone());
                accept(&listener, &sh, &mut board);
            })?;
        Ok(SimServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every command received so far (with the board's `transcript` on).
    pub fn transcript(&self) -> Vec<W> {
        self.shared
            .transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Forgets the transcript so far.
    pub fn clear_transcript(&self) {
        if let Ok(mut t) = self.shared.transcript.lock() {
            t.clear();
        }
    }

    /// The board vanishes (power cut, cable pulled): the client's connection is reset and
    /// no one is served (connections wait in the backlog) until [`SimServer::reappear`].
    pub fn vanish(&self) {
        self.shared.vanished.store(true, Ordering::SeqCst);
    }

    /// The board is back, with the state it had (as after a network outage).
    pub fn reappear(&self) {
        self.shared.vanished.store(false, Ordering::SeqCst);
    }

    /// Clients accepted so far.
    pub fn clients(&self) -> u64 {
        self.shared.clients.load(Ordering::SeqCst)
    }
}

impl<W> Drop for SimServer<W> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The server thread: accepts clients one at a time until stopped.
fn accept<W>(listener: &TcpListener, shared: &SimShared<W>, board: &mut impl SimBoard) {
    while !shared.stopped() {
        if shared.vanished.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match listener.accept() {
            Ok((s, _)) => {
                shared.clients.fetch_add(1, Ordering::SeqCst);
                board.serve(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                board.idle();
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Makes the close of `s` a reset (RST), not an orderly close: SO_LINGER 0.
pub(crate) fn reset(s: &TcpStream) {
    let _ = nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
}
