//! The web face of the monitor: a page with the run's numbers, the latest oscilloscope
//! trace and the histograms, and buttons to pause, resume and stop.
//!
//! Endpoints: `GET /` the page; `GET /events` server-sent events, one `data:` line per
//! statistics snapshot (the [`RunView::to_json`] object) and a final `event: end` with the
//! run summary; `GET /state` the latest of those as JSON; `GET /trace` the latest traces
//! and `GET /histograms` the histograms as JSON (read from the run directory, at most every
//! 250 ms); `POST /control/pause|resume|stop`. The page's script and uPlot (MIT, in
//! `assets/`) are served from the binary: no network needed.
//!
//! Access: binds to a loopback address unless the caller opts in to any other address,
//! which then also needs a token. With a token, the control endpoints answer 401 to a
//! request without `Authorization: Bearer <token>` or `?token=<token>`. A control request
//! whose `Origin` is not this server is refused (403), so another web site open in the
//! same browser cannot stop a run. Every control action is logged (`tracing::info!`).
//!
//! Must never: block the supervisor. `update` renders the snapshot to a string and swaps it
//! in behind a short lock; requests are served by the server's own threads.

use super::files::RunFiles;
use super::view::RunView;
use crate::engine::{Control, RunSummary, Watcher};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const PAGE: &str = include_str!("../../assets/monitor.html");
const SCRIPT: &str = include_str!("../../assets/monitor.js");
const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");

/// Why the web monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address is not `IP:PORT`.
    #[error("--http {0:?}: expected IP:PORT, e.g. 127.0.0.1:8080")]
    BadAddress(String),
    /// A non-loopback address without the opt-in.
    #[error(
        "--http {0}: not a loopback address; anyone who can reach it could stop the run. \
         Add --http-any and --token SECRET to serve it on other interfaces"
    )]
    NotLoopback(SocketAddr),
    /// A non-loopback address without a token.
    #[error("--http {0}: serving beyond this machine needs --token SECRET for the controls")]
    NoToken(SocketAddr),
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

/// What the server threads and the watcher share.
struct Shared {
    /// (sequence number, latest snapshot JSON, final summary JSON once the run ended).
    latest: Mutex<(u64, String, Option<String>)>,
    changed: Condvar,
    controls: Mutex<VecDeque<Control>>,
    files: Mutex<RunFiles>,
    token: Option<String>,
    shutdown: AtomicBool,
}

/// The web monitor: a [`Watcher`] serving the run on HTTP.
pub struct Web {
    shared: Arc<Shared>,
    view: RunView,
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Web {
    /// Serves the run in `run_dir` on `addr` (`IP:PORT`; port 0 picks a free one, see
    /// [`Web::local_addr`]). `any_address` must be true to bind anything but loopback, and
    /// then `token` is required. With a `token`, control requests must carry it.
    pub fn bind(
        addr: &str,
        token: Option<String>,
        any_address: bool,
        run_dir: &Path,
    ) -> Result<Web, WebError> {
        let sa: SocketAddr = addr
            .parse()
            .map_err(|_| WebError::BadAddress(addr.to_string()))?;
        if !sa.ip().is_loopback() {
            if !any_address {
                return Err(WebError::NotLoopback(sa));
            }
            if token.as_deref().is_none_or(str::is_empty) {
                return Err(WebError::NoToken(sa));
            }
        }
        let listener =
            TcpListener::bind(sa).map_err(|source| WebError::Bind { addr: sa, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| WebError::Bind { addr: sa, source })?;
        let server =
            tiny_http::Server::from_listener(listener, None).map_err(|e| WebError::Bind {
                addr: sa,
                source: std::io::Error::other(e.to_string()),
            })?;
        let server = Arc::new(server);
        let view = RunView::for_run(run_dir);
        let shared = Arc::new(Shared {
            latest: Mutex::new((0, view.to_json().to_string(), None)),
            changed: Condvar::new(),
            controls: Mutex::new(VecDeque::new()),
            files: Mutex::new(RunFiles::new(run_dir, Duration::from_millis(250))),
            token: token.filter(|t| !t.is_empty()),
            shutdown: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            let server = server.clone();
            std::thread::Builder::new()
                .name("monitor-http".into())
                .spawn(move || serve(&server, &shared))
                .map_err(|source| WebError::Bind { addr: sa, source })?
        };
        tracing::info!(
            "monitor page on http://{local}/{}",
            if shared.token.is_some() {
                " (controls need the token)"
            } else {
                ""
            }
        );
        Ok(Web {
            shared,
            view,
            addr: local,
            server,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn publish(&self, finished: Option<String>) {
        let json = self.view.to_json().to_string();
        let mut g = lock(&self.shared.latest);
        g.0 += 1;
        g.1 = json;
        if finished.is_some() {
            g.2 = finished;
        }
        drop(g);
        self.shared.changed.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watcher for Web {
    fn update(&mut self, stats: &serde_json::Value) {
        self.view.update(stats);
        self.publish(None);
    }

    fn poll(&mut self) -> Option<Control> {
        lock(&self.shared.controls).pop_front()
    }

    fn finish(&mut self, summary: &RunSummary) {
        self.view.set_finished();
        self.publish(Some(
            serde_json::to_string(summary).unwrap_or_else(|_| "{}".into()),
        ));
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(&b"X-Bad"[..], &b"1"[..]).expect("ascii"))
}

fn reply(req: tiny_http::Request, status: u16, kind: &str, body: impl Into<Vec<u8>>) {
    // Content-Length, never chunked: the simplest thing for every client.
    let resp = tiny_http::Response::from_data(body.into())
        .with_chunked_threshold(usize::MAX)
        .with_status_code(status)
        .with_header(header("Content-Type", kind))
        .with_header(header("Cache-Control", "no-store"));
    let _ = req.respond(resp);
}

fn serve(server: &tiny_http::Server, shared: &Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let method = req.method().clone();
        use tiny_http::Method::{Get, Head, Post};
        match (&method, path) {
            (Get | Head, "/" | "/index.html") => reply(req, 200, "text/html; charset=utf-8", PAGE),
            (Get | Head, "/monitor.js") => reply(req, 200, "text/javascript", SCRIPT),
            (Get | Head, "/uPlot.iife.min.js") => reply(req, 200, "text/javascript", UPLOT_JS),
            (Get | Head, "/uPlot.min.css") => reply(req, 200, "text/css", UPLOT_CSS),
            (Get, "/state") => {
                let body = lock(&shared.latest).1.clone();
                reply(req, 200, "application/json", body)
            }
            (Get, "/trace") => {
                let body = {
                    let mut f = lock(&shared.files);
                    f.refresh();
                    serde_json::to_string(&f.traces().values().collect::<Vec<_>>())
                };
                reply(
                    req,
                    200,
                    "application/json",
                    body.unwrap_or_else(|_| "[]".into()),
                )
            }
            (Get, "/histograms") => {
                let body = {
                    let mut f = lock(&shared.files);
                    f.refresh();
                    serde_json::to_string(&f.histograms().values().collect::<Vec<_>>())
                };
                reply(
                    req,
                    200,
                    "application/json",
                    body.unwrap_or_else(|_| "[]".into()),
                )
            }
            (Get, "/events") => {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("monitor-sse".into())
                    .spawn(move || stream_events(req, &shared));
            }
            (Post, p) if p.starts_with("/control/") => {
                control(req, &p["/control/".len()..], query, shared)
            }
            (_, p) if p.starts_with("/control/") => {
                reply(req, 405, "text/plain", "use POST for control actions\n")
            }
            _ => reply(req, 404, "text/plain", format!("no page {path}\n")),
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn control(req: tiny_http::Request, action: &str, query: &str, shared: &Shared) {
    let who = req
        .remote_addr()
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    let get = |name: &'static str| {
        req.headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    if let Some(token) = &shared.token {
        let bearer = get("Authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
        let in_query = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("token=").map(str::to_string));
        let ok = bearer.or(in_query).is_some_and(|t| same_secret(&t, token));
        if !ok {
            tracing::warn!("monitor: refused '{action}' from {who}: no valid token");
            let resp = tiny_http::Response::from_string(
                "a valid token is needed: Authorization: Bearer <token> or ?token=<token>\n",
            )
            .with_status_code(401)
            .with_header(header("WWW-Authenticate", "Bearer"));
            let _ = req.respond(resp);
            return;
        }
    }
    if let (Some(origin), Some(host)) = (get("Origin"), get("Host")) {
        let stripped = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(&origin);
        if stripped != host {
            tracing::warn!(
                "monitor: refused '{action}' from {who}: page of another site ({origin})"
            );
            reply(
                req,
                403,
                "text/plain",
                "control requests must come from this page\n",
            );
            return;
        }
    }
    let c = match action {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "stop" => Control::Stop,
        other => {
            reply(
                req,
                404,
                "text/plain",
                format!("no control action '{other}'; use pause, resume or stop\n"),
            );
            return;
        }
    };
    tracing::info!("monitor: '{action}' requested over http by {who}");
    lock(&shared.controls).push_back(c);
    reply(
        req,
        202,
        "application/json",
        format!("{{\"accepted\":\"{action}\"}}"),
    );
}

/// One server-sent-events client: the current snapshot at once, then every new one, then
/// `event: end` with the summary; ends when the client goes away or the server stops.
fn stream_events(req: tiny_http::Request, shared: &Shared) {
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 2000\n\n";
    if w.write_all(head.as_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return;
    }
    let mut sent = 0u64;
    loop {
        let (msg, end) = {
            let mut g = lock(&shared.latest);
            while g.0 == sent && g.2.is_none() && !shared.shutdown.load(Ordering::SeqCst) {
                let (ng, timeout) = shared
                    .changed
                    .wait_timeout(g, Duration::from_secs(15))
                    .unwrap_or_else(|p| p.into_inner());
                g = ng;
                if timeout.timed_out() && g.0 == sent {
                    break;
                }
            }
            if shared.shutdown.load(Ordering::SeqCst) && g.2.is_none() {
                return;
            }
            let msg = if g.0 != sent {
                sent = g.0;
                format!("data: {}\n\n", g.1)
            } else if g.2.is_none() {
                ": still here\n\n".to_string()
            } else {
                String::new()
            };
            let end = g.2.as_ref().map(|s| format!("event: end\ndata: {s}\n\n"));
            (msg, end)
        };
        if w.write_all(msg.as_bytes()).and_then(|_| w.flush()).is_err() {
            return;
        }
        if let Some(end) = end {
            let _ = w.write_all(end.as_bytes()).and_then(|_| w.flush());
            return;
        }
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
}
