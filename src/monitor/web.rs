//! The web face of the monitor: a page with the run's numbers, the latest oscilloscope
//! trace and the histograms, buttons to pause, resume and stop, and `/metrics` for
//! Prometheus.
//!
//! Endpoints: `GET /` the page; `GET /events` server-sent events, one `data:` line per
//! statistics snapshot (the [`RunView::to_json`] object) and a final `event: end` with the
//! run summary; `GET /state` the latest of those as JSON; `GET /trace` the latest traces
//! and `GET /histograms` the histograms as JSON (read from the run directory, at most every
//! 250 ms); `GET /metrics` the Prometheus text format (see [`super::metrics`]);
//! `POST /control/pause|resume|stop`; `POST /session` turns a valid bearer token into a
//! cookie, so that the page's event stream (which cannot send headers) carries it. The
//! page's script and uPlot (MIT, in `assets/`) are served from the binary: no network needed.
//!
//! Access: binds to a loopback address unless the caller opts in to any other address,
//! which then also needs a token. Every request must name this machine in `Host` (loopback
//! names, the bound address, and for a wildcard address this host's name and addresses)
//! with this server's port, or it is refused (400 without Host, 403 otherwise): a site
//! whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing. A request with an
//! `Origin` must come from `http://<Host>`. With a token, every endpoint but the page's
//! static files needs it, as `Authorization: Bearer <token>` (any case of `Bearer`) or the
//! session cookie, compared in constant time; a token in the URL is refused (over plain
//! HTTP it lands in logs and browser history). Every control action is logged.
//!
//! Guarantees: the server runs on its own thread with a one-thread tokio runtime, never on
//! the supervisor's, and wakes at most once per [`TICK`] however many clients it has. Bodies are never read beyond [`MAX_BODY_BYTES`]; headers must arrive
//! within [`HEADER_TIMEOUT`] and fit [`MAX_HEAD_BYTES`]; at most [`MAX_CONNECTIONS`]
//! connections and [`MAX_STREAMS`] event streams are open (more are closed or answered 503),
//! so its memory and threads are bounded whatever clients send. A panic in a handler ends
//! that connection; a panic of the server itself is caught on its thread and ends the page,
//! never the run.
//!
//! Must never: block the supervisor. `update` renders the snapshot to a string and swaps it
//! into a watch channel; nothing the server does can hold that up for longer than a copy.

use super::files::RunFiles;
use super::metrics;
use super::view::{Progress, RunView, Snapshot};
use crate::engine::{Control, RunSummary, Watcher};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{watch, Notify, Semaphore};

const PAGE: &str = include_str!("../../assets/monitor.html");
const SCRIPT: &str = include_str!("../../assets/monitor.js");
const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");

/// Connections open at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// Event streams (`/events`, one per open page) at once; one more is answered 503.
pub const MAX_STREAMS: usize = 32;
/// Time a client has to send a request's line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a request's line and headers may take.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Bytes of a request body the server would read (none of its endpoints reads one).
pub const MAX_BODY_BYTES: usize = 1024;
/// The environment variable a token may come from (see [`token_from`]).
pub const TOKEN_VAR: &str = "DAQ_ENGINE_TOKEN";
/// The cookie `POST /session` sets.
const COOKIE: &str = "daq_engine_token";
/// The time a stopping server gives open pages to receive the run's end.
const DRAIN: Duration = Duration::from_secs(2);

/// Why the web monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address is not `IP:PORT`.
    #[error("--http {0:?}: expected IP:PORT, e.g. 127.0.0.1:8080")]
    BadAddress(String),
    /// A non-loopback address without the opt-in.
    #[error(
        "--http {0}: not a loopback address; anyone who can reach it could stop the run. \
         Add --http-any and a token (--token-file FILE or {TOKEN_VAR}) to serve it on other \
         interfaces"
    )]
    NotLoopback(SocketAddr),
    /// A non-loopback address without a token.
    #[error(
        "--http {0}: serving beyond this machine needs a token: --token-file FILE or the \
         environment variable {TOKEN_VAR}"
    )]
    NoToken(SocketAddr),
    /// The token has characters a header or cookie cannot carry.
    #[error(
        "the monitor's token must be printable ASCII without spaces, ';', ',' or quotes \
         (e.g. `openssl rand -hex 16`)"
    )]
    BadToken,
    /// The token file could not be read, or is empty.
    #[error("--token-file {path}: {why}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The address could not be bound.
    #[error("--http {addr}: cannot listen: {source} (is the port in use?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The monitor's token: the first line of `file` if given, else the environment variable
/// [`TOKEN_VAR`] (`env` is its value), else none. Never the command line, where `ps` shows it
/// to every user. A file that others may read is used, with a warning.
pub fn token_from(file: Option<&Path>, env: Option<String>) -> Result<Option<String>, WebError> {
    let Some(path) = file else {
        return Ok(env.filter(|t| !t.is_empty()));
    };
    let bad = |why: String| WebError::TokenFile {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(bad("empty; put the token on its first line".into()));
    }
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        tracing::warn!(
            "--token-file {}: other users may read it (chmod 600 it)",
            path.display()
        );
    }
    Ok(Some(token))
}

/// What the watcher hands the server: the latest snapshot, as JSON for the page and typed
/// for `/metrics`, and the summary once the run ended.
#[derive(Clone, Default)]
struct Published {
    /// Snapshots published so far (0: the empty view from before the run's first).
    seq: u64,
    /// The view as JSON, rendered once per snapshot and shared by every `/state` answer and
    /// event stream (a clone is a reference count, not a copy).
    state: Bytes,
    snapshot: Arc<Snapshot>,
    progress: Option<Progress>,
    end: Option<Arc<String>>,
}

/// Who may ask what.
struct Access {
    /// Host names (without port) that name this server.
    names: Vec<String>,
    port: u16,
    token: Option<String>,
}

impl Access {
    /// Whether `host` (a Host header: `name`, `name:port`, `[v6]` or `[v6]:port`) names
    /// this server.
    fn host_allowed(&self, host: &str) -> bool {
        let (name, port) = match host.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((name, "")) => (name, None),
                Some((name, p)) => match p.strip_prefix(':') {
                    Some(p) => (name, Some(p)),
                    None => return false,
                },
                None => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, p)) => (name, Some(p)),
                None => (host, None),
            },
        };
        let port_ok = match port {
            None => true,
            Some(p) => p.parse::<u16>().is_ok_and(|p| p == self.port),
        };
        port_ok && self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Whether the request carries the token (when one is set).
    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.trim().split_once(' '))
            .find(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let cookie = || {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        };
        bearer
            .or_else(cookie)
            .is_some_and(|t| same_secret(t, token))
    }
}

/// Names this server answers to when bound to `ip`: loopback names, `ip` itself, and for a
/// wildcard address this host's name and the addresses of its interfaces.
fn names_for(ip: IpAddr) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if ip.is_unspecified() {
        if let Ok(h) = nix::unistd::gethostname() {
            names.extend(h.into_string());
        }
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs.filter_map(|a| a.address) {
                if let Some(v4) = a.as_sockaddr_in() {
                    names.push(v4.ip().to_string());
                } else if let Some(v6) = a.as_sockaddr_in6() {
                    names.push(v6.ip().to_string());
                }
            }
        }
    } else {
        names.push(ip.to_string());
    }
    names
}

/// Compares in constant time, so the time taken does not tell how much matched (the
/// length may show; it is no secret).
fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// What the server's tasks and the watcher share.
struct Shared {
    latest: watch::Sender<Published>,
    stop: watch::Sender<bool>,
    controls: Mutex<VecDeque<Control>>,
    files: Mutex<RunFiles>,
    run_dir: PathBuf,
    access: Access,
    streams: Arc<Semaphore>,
    /// `/metrics` as rendered for the snapshot with this `seq`: a Prometheus (or fifty)
    /// scraping between two snapshots gets the same text without rendering it again, and the
    /// disk's free space in it is as old as the snapshot.
    metrics: Mutex<(u64, Bytes)>,
    /// Test faults: `/fault/server` notifies this and the accept loop panics.
    fault: Notify,
}

/// The web monitor: a [`Watcher`] serving the run on HTTP.
pub struct Web {
    shared: Arc<Shared>,
    view: RunView,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Web {
    /// Serves the run in `run_dir` on `addr` (`IP:PORT`; port 0 picks a free one, see
    /// [`Web::local_addr`]). `any_address` must be true to bind anything but loopback, and
    /// then `token` is required. With a `token`, every request but the page's static files
    /// must carry it.
    pub fn bind(
        addr: &str,
        token: Option<String>,
        any_address: bool,
        run_dir: &Path,
    ) -> Result<Web, WebError> {
        Web::start(addr, token, any_address, run_dir, false)
    }

    /// [`Web::bind`] with two routes for tests of the server's isolation: `GET
    /// /fault/handler` panics in its handler, `GET /fault/server` makes the server itself
    /// panic. Never used by the binary.
    #[doc(hidden)]
    pub fn bind_with_test_faults(addr: &str, run_dir: &Path) -> Result<Web, WebError> {
        Web::start(addr, None, false, run_dir, true)
    }

    fn start(
        addr: &str,
        token: Option<String>,
        any_address: bool,
        run_dir: &Path,
        faults: bool,
    ) -> Result<Web, WebError> {
        let sa: SocketAddr = addr
            .parse()
            .map_err(|_| WebError::BadAddress(addr.to_string()))?;
        let token = token.filter(|t| !t.is_empty());
        if let Some(t) = &token {
            let cookie_safe = |c: char| c.is_ascii_graphic() && !";,\"\\".contains(c);
            if !t.chars().all(cookie_safe) {
                return Err(WebError::BadToken);
            }
        }
        if !sa.ip().is_loopback() {
            if !any_address {
                return Err(WebError::NotLoopback(sa));
            }
            if token.is_none() {
                return Err(WebError::NoToken(sa));
            }
        }
        let bind_err = |source| WebError::Bind { addr: sa, source };
        let listener = TcpListener::bind(sa).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .thread_name("monitor-http-files")
            .on_thread_start(yield_to_acquisition)
            .build()
            .map_err(bind_err)?;
        let view = RunView::for_run(run_dir);
        let shared = Arc::new(Shared {
            latest: watch::Sender::new(Published {
                state: Bytes::from(view.to_json().to_string()),
                ..Published::default()
            }),
            stop: watch::Sender::new(false),
            controls: Mutex::new(VecDeque::new()),
            files: Mutex::new(RunFiles::new(run_dir, Duration::from_millis(250))),
            run_dir: run_dir.to_path_buf(),
            access: Access {
                names: names_for(local.ip()),
                port: local.port(),
                token,
            },
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            metrics: Mutex::new((u64::MAX, Bytes::new())),
            fault: Notify::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("monitor-http".into())
                .spawn(move || run_server(runtime, listener, shared, faults))
                .map_err(bind_err)?
        };
        tracing::info!(
            "monitor page on http://{local}/{}",
            if shared.access.token.is_some() {
                " (reading and controls need the token)"
            } else {
                ""
            }
        );
        Ok(Web {
            shared,
            view,
            addr: local,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn publish(&self, end: Option<String>) {
        let state = Bytes::from(self.view.to_json().to_string());
        let snapshot = Arc::new(self.view.snapshot().clone());
        let progress = self.view.progress();
        self.shared.latest.send_modify(|p| {
            p.seq += 1;
            p.state = state;
            p.snapshot = snapshot;
            p.progress = progress;
            if let Some(end) = end {
                p.end = Some(Arc::new(end));
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watcher for Web {
    fn update(&mut self, stats: &Snapshot) {
        self.view.update(stats);
        self.publish(None);
    }

    fn poll(&mut self) -> Option<Control> {
        lock(&self.shared.controls).pop_front()
    }

    fn finish(&mut self, summary: &RunSummary) {
        self.view.set_finished();
        // The summary as summary.json has it, and why the run stopped in words for the page.
        let mut v = serde_json::to_value(summary).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("stopped_by_text".into(), summary.stopped_by.text().into());
        }
        self.publish(Some(v.to_string()));
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How much nicer than the supervisor the server's threads are: below the workers, so its
/// wakeups do not preempt them.
pub const SERVER_NICE: i32 = 10;

/// The niceness the server's threads get in a process started at niceness `base` (`nice`
/// caps at 19).
pub fn server_nice(base: i32) -> i32 {
    (base + SERVER_NICE).min(19)
}

/// Lowers the calling thread's scheduling weight by [`SERVER_NICE`] (relative, so that a
/// supervisor started under `nice` keeps its server below itself). On a machine whose cores
/// the pipeline keeps busy, every wakeup of a server thread preempts a worker and stalls the
/// worker on the other side of its ring, which costs the run more than the server's own CPU
/// time (measured with `daq-engine bench web`: 0.89–0.93 of the unwatched rate at nice 0).
/// At nice 10 the scheduler lets the workers finish their slice first; the server still gets
/// far more than the few percent of a core it needs, so the page stays responsive. Only the
/// server's threads are lowered (Linux applies the niceness per thread); the supervisor's
/// other threads keep theirs.
fn yield_to_acquisition() {
    // SAFETY: gettid and setpriority take and return plain integers and touch no memory of
    // ours; setpriority on our own thread id changes only this thread's niceness.
    let r = unsafe {
        let tid = libc::gettid() as libc::id_t;
        // A new thread starts with its creator's niceness, which is the process's.
        let base = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, server_nice(base))
    };
    if r != 0 {
        tracing::debug!(
            "could not lower the monitor server's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// How often the server wakes to do its work. Requests, stream updates and new connections
/// that arrived in between are all served in one wakeup, so the server's wakeups — each of
/// which takes a core from a worker on a machine the pipeline keeps busy — are bounded by
/// `1 / TICK` whatever the number of clients; a request waits at most this long, which a
/// page or a Prometheus scrape does not notice.
pub const TICK: Duration = Duration::from_millis(10);

/// Rounds of work per tick: each polls the sockets without waiting and runs every task that
/// became ready (a request is read and answered in one; an accepted connection or a file
/// read on the blocking pool takes one or two more).
const ROUNDS_PER_TICK: usize = 4;

/// The server thread: everything HTTP happens here, in [`TICK`]s. A panic is caught and
/// costs the page.
fn run_server(
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    shared: Arc<Shared>,
    faults: bool,
) {
    yield_to_acquisition();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = runtime.spawn(serve(listener, shared, faults));
        while !server.is_finished() {
            runtime.block_on(async {
                for _ in 0..ROUNDS_PER_TICK {
                    // Yielding lets the runtime poll the sockets without blocking, wake what
                    // became ready and run it before this loop goes on.
                    tokio::task::yield_now().await;
                }
            });
            std::thread::sleep(TICK);
        }
        if let Err(e) = runtime.block_on(server) {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }));
    if let Err(p) = outcome {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(
            "monitor: the web server stopped ({why}); the page is gone, the run goes on"
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// Accepts connections until told to stop, then gives open pages [`DRAIN`] to hear the end.
async fn serve(listener: TcpListener, shared: Arc<Shared>, faults: bool) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("monitor: the web server cannot start: {e}");
            return;
        }
    };
    let app = router(shared.clone(), faults);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            _ = shared.fault.notified() => panic!("a test asked the web server to fail"),
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::debug!("monitor: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let mut app = app.clone();
            // A Router is always ready: no poll_ready needed.
            tower_service::Service::call(&mut app, req.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(DRAIN, shared.streams.acquire_many(MAX_STREAMS as u32)).await;
}

fn router(shared: Arc<Shared>, faults: bool) -> Router {
    let data = Router::new()
        .route("/state", get(state))
        .route("/events", get(events))
        .route("/trace", get(trace))
        .route("/histograms", get(histograms))
        .route("/metrics", get(metrics_text))
        .route("/control/{action}", post(control))
        .route("/session", post(session))
        .route_layer(middleware::from_fn_with_state(shared.clone(), need_token));
    let mut app = Router::new()
        .route("/", get(|| page("text/html; charset=utf-8", PAGE)))
        .route(
            "/index.html",
            get(|| page("text/html; charset=utf-8", PAGE)),
        )
        .route("/monitor.js", get(|| page("text/javascript", SCRIPT)))
        .route(
            "/uPlot.iife.min.js",
            get(|| page("text/javascript", UPLOT_JS)),
        )
        .route("/uPlot.min.css", get(|| page("text/css", UPLOT_CSS)))
        .merge(data);
    if faults {
        app = app
            .route(
                "/fault/handler",
                get(|| async {
                    panic!("a test asked a handler to fail");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route(
                "/fault/server",
                get(|State(s): State<Arc<Shared>>| async move {
                    s.fault.notify_one();
                    "failing"
                }),
            );
    }
    app.fallback(|req: Request| async move {
        text(
            StatusCode::NOT_FOUND,
            format!("no page {}\n", req.uri().path()),
        )
    })
    .layer(middleware::from_fn_with_state(
        shared.clone(),
        this_machine_only,
    ))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(shared)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into(),
    )
        .into_response()
}

fn json(body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn page(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn who(req: &Request) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or_else(|| "?".into(), |c| c.0.to_string())
}

/// The request and who sent it, for the log: `GET /path from 127.0.0.1:50000`.
fn request(req: &Request) -> String {
    format!("{} {} from {}", req.method(), req.uri().path(), who(req))
}

/// Refuses a request that does not name this machine in `Host`, or comes from a page of
/// another origin.
async fn this_machine_only(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return text(StatusCode::BAD_REQUEST, "a Host header is needed\n");
    };
    if !shared.access.host_allowed(host) {
        tracing::debug!(
            "monitor: refused {}: Host {host:?} is not this machine",
            request(&req)
        );
        return text(
            StatusCode::FORBIDDEN,
            "this server answers only to this machine's names\n",
        );
    }
    // Where the browser says the request comes from (`Sec-Fetch-Site`, which no page can
    // set).
    let fetch_site = req.headers().get("sec-fetch-site").map(|v| v.as_bytes());
    let refused = match req.headers().get(header::ORIGIN) {
        // Without an `Origin`: one from another site that changes something is refused
        // all the same (a link to the page from another site, a GET, is still followed).
        None => {
            let elsewhere = matches!(fetch_site, Some(b"cross-site" | b"same-site"));
            let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
            (elsewhere && changes).then(|| "from another site".to_string())
        }
        // This server's own page: its origin is this Host, over http, or over https through
        // a TLS proxy that keeps the Host; or the browser says so, as through a proxy that
        // forwards to this address.
        Some(origin) => {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| {
                    o.strip_prefix("http://")
                        .or_else(|| o.strip_prefix("https://"))
                })
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
                || fetch_site == Some(b"same-origin");
            (!same).then(|| format!("page of another site ({origin:?})"))
        }
    };
    if let Some(why) = refused {
        tracing::warn!("monitor: refused {}: {why}", request(&req));
        return text(
            StatusCode::FORBIDDEN,
            "requests must come from this server's own page\n",
        );
    }
    next.run(req).await
}

/// Refuses a request without the token, when one is set.
async fn need_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if shared.access.token.is_none() {
        return next.run(req).await;
    }
    let in_url = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    let why = if in_url {
        "a token in the URL is refused: over plain HTTP it lands in logs and browser \
         history. Send the header Authorization: Bearer <token>\n"
    } else if !shared.access.token_ok(req.headers()) {
        "a valid token is needed: Authorization: Bearer <token> (the page: open it as \
         http://HOST:PORT/#token=<token>)\n"
    } else {
        return next.run(req).await;
    };
    if req.method() == Method::POST {
        tracing::warn!(
            "monitor: refused {} from {}: no valid token",
            req.uri().path(),
            who(&req)
        );
    }
    let mut r = text(StatusCode::UNAUTHORIZED, why);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    json(shared.latest.borrow().state.clone())
}

/// Runs `f` on the runtime's small pool of blocking threads (file reads, statvfs).
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "the request failed\n"))
}

async fn trace(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        let mut f = lock(&shared.files);
        f.refresh();
        json(serde_json::to_string(&f.traces().values().collect::<Vec<_>>()).unwrap_or_default())
    })
    .await
}

async fn histograms(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        let mut f = lock(&shared.files);
        f.refresh();
        json(
            serde_json::to_string(&f.histograms().values().collect::<Vec<_>>()).unwrap_or_default(),
        )
    })
    .await
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let p = shared.latest.borrow().clone();
    let respond = |body: Bytes| {
        (
            [
                (header::CONTENT_TYPE, metrics::CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    };
    // Rendered already for this snapshot (every scrape but the first after a new one): answer
    // on the server's own thread, without a hop to the blocking pool and back.
    let key = p.seq;
    if let Some(body) = {
        let cached = lock(&shared.metrics);
        (cached.0 == key).then(|| cached.1.clone())
    } {
        return respond(body);
    }
    blocking(move || {
        let mut cached = lock(&shared.metrics);
        if cached.0 != key {
            let text = metrics::render(
                &p.snapshot,
                p.progress.as_ref(),
                p.end.is_some(),
                &shared.run_dir,
            );
            *cached = (key, Bytes::from(text));
        }
        let body = cached.1.clone();
        drop(cached);
        respond(body)
    })
    .await
}

async fn control(
    State(shared): State<Arc<Shared>>,
    UrlPath(action): UrlPath<String>,
    req: Request,
) -> Response {
    let c = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "stop" => Control::Stop,
        other => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no control action '{other}'; use pause, resume or stop\n"),
            )
        }
    };
    tracing::info!("monitor: '{action}' requested over http by {}", who(&req));
    lock(&shared.controls).push_back(c);
    (
        StatusCode::ACCEPTED,
        json(format!("{{\"accepted\":\"{action}\"}}")),
    )
        .into_response()
}

/// A request that passed the token check: the page keeps the token as an HttpOnly cookie
/// for its event stream.
async fn session(State(shared): State<Arc<Shared>>) -> Response {
    let Some(token) = &shared.access.token else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad token\n"),
    }
}

/// Where one event stream is.
enum Phase {
    First,
    Next,
    End(Arc<String>),
    Done,
}

/// Server-sent events: the current snapshot at once, then every new one, then `event: end`
/// with the summary; ends when the client goes away or the server stops.
async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let Ok(permit) = shared.streams.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} pages are open already; close one\n"),
        );
    };
    let rx = shared.latest.subscribe();
    let stop = shared.stop.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, stop, permit, Phase::First),
        |(mut rx, mut stop, permit, phase)| async move {
            let snapshot = |rx: &mut watch::Receiver<Published>| {
                let p = rx.borrow_and_update().clone();
                let next = p.end.map_or(Phase::Next, Phase::End);
                let data = std::str::from_utf8(&p.state).unwrap_or("{}");
                (Event::default().data(data), next)
            };
            let (event, next) = match phase {
                Phase::Done => return None,
                Phase::End(summary) => (
                    Event::default().event("end").data(summary.as_str()),
                    Phase::Done,
                ),
                Phase::First => {
                    if rx.borrow().seq == 0 {
                        next_snapshot(&mut rx, &mut stop).await?;
                    }
                    let (e, next) = snapshot(&mut rx);
                    (e.retry(Duration::from_secs(2)), next)
                }
                Phase::Next => {
                    next_snapshot(&mut rx, &mut stop).await?;
                    snapshot(&mut rx)
                }
            };
            Some((Ok::<_, Infallible>(event), (rx, stop, permit, next)))
        },
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(stream).keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("still here"),
        ),
    )
        .into_response()
}

/// Waits for a new snapshot; `None` when the stream should end: the server stops before
/// the run ended (once it ended, the end is still sent), or the watcher is gone.
async fn next_snapshot(
    rx: &mut watch::Receiver<Published>,
    stop: &mut watch::Receiver<bool>,
) -> Option<()> {
    tokio::select! {
        changed = rx.changed() => changed.ok(),
        _ = stop.wait_for(|s| *s) => rx.borrow().end.as_ref().map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_addresses_without_opt_in_and_token() {
        let d = std::env::temp_dir();
        assert!(matches!(
            Web::bind("0.0.0.0:0", Some("x".into()), false, &d),
            Err(WebError::NotLoopback(_))
        ));
        assert!(matches!(
            Web::bind("0.0.0.0:0", None, true, &d),
            Err(WebError::NoToken(_))
        ));
        assert!(matches!(
            Web::bind("0.0.0.0:0", Some(String::new()), true, &d),
            Err(WebError::NoToken(_))
        ));
        assert!(matches!(
            Web::bind("127.0.0.1:0", Some("a b".into()), false, &d),
            Err(WebError::BadToken)
        ));
        assert!(matches!(
            Web::bind("localhost", None, false, &d),
            Err(WebError::BadAddress(_))
        ));
        let w = Web::bind("127.0.0.1:0", None, false, &d).unwrap();
        assert!(w.local_addr().port() > 0);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn host_names_with_and_without_port() {
        let a = Access {
            names: names_for("127.0.0.1".parse().unwrap()),
            port: 8080,
            token: None,
        };
        for ok in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost:8081",
            "localhost:",
            "[::1]x",
            "[::1",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_in_any_case_or_the_cookie() {
        let a = Access {
            names: vec![],
            port: 1,
            token: Some("t0k".into()),
        };
        let with = |k: header::HeaderName, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(k, HeaderValue::from_str(v).unwrap());
            a.token_ok(&h)
        };
        assert!(with(header::AUTHORIZATION, "Bearer t0k"));
        assert!(with(header::AUTHORIZATION, "bEaReR t0k"));
        assert!(!with(header::AUTHORIZATION, "Basic t0k"));
        assert!(!with(header::AUTHORIZATION, "Bearer t0"));
        assert!(with(header::COOKIE, "a=b; daq_engine_token=t0k"));
        assert!(!with(header::COOKIE, "daq_engine_tokenx=t0k"));
        assert!(!a.token_ok(&HeaderMap::new()));
    }

    #[test]
    fn token_from_file_first_then_environment() {
        let dir = crate::fsio::test_dir("token");
        let f = dir.join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(
            token_from(Some(&f), Some("env".into())).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            token_from(None, Some("env".into())).unwrap().as_deref(),
            Some("env")
        );
        assert_eq!(token_from(None, Some(String::new())).unwrap(), None);
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            token_from(Some(&f), None),
            Err(WebError::TokenFile { .. })
        ));
        assert!(matches!(
            token_from(Some(&dir.join("none")), None),
            Err(WebError::TokenFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
