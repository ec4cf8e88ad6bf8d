//! The terminal face of the monitor: a live dashboard (ratatui) of every buffer and worker,
//! progress, warnings, the latest oscilloscope trace and a histogram; keys `p` pause,
//! `r` resume, `s` or `q` stop (drain), `h` next histogram, `t` next oscilloscope; Ctrl-C
//! acts as it does without the dashboard (once: drain; twice: abort).
//!
//! Guarantees:
//! - The terminal is given back (raw mode off, main screen, cursor shown) on every way out:
//!   the run's end, an error, a drop, and a panic (a hook restores it before the message).
//! - While the dashboard is up, the process's stderr (the supervisor's messages, the
//!   workers' stderr) goes to `console.log` in the run directory instead of scribbling over
//!   the screen (the workers' stdout too: a worker's prints go with its messages); its
//!   latest lines are shown in the dashboard and its last 40 replayed on the terminal when
//!   the dashboard closes. Past [`CONSOLE_MAX`] its last [`CONSOLE_KEEP`] go to
//!   `console.log.1` and it starts again, saying so: a worker printing every event for a
//!   week would otherwise fill the disk and stop the run.
//! - When the terminal goes away (SIGHUP, or reading keys or drawing fails) the dashboard
//!   stops drawing and the run stops (drains) as for a SIGHUP, `stopped_by: hung_up`,
//!   whichever of them is noticed first.
//!
//! Must never: slow the supervisor. It runs in its own thread; `update` only sends the
//! snapshot on a channel and `poll` only takes key presses from one.

use super::files::{HistogramFile, RunFiles, Trace};
use super::view::{RunView, Snapshot};
use crate::engine::{Control, RunSummary, Watcher};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The terminal is in raw mode on the alternate screen.
static RAW: AtomicBool = AtomicBool::new(false);
/// A copy of the real stderr while it points at console.log; -1 otherwise.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);
static HOOK: std::sync::Once = std::sync::Once::new();

/// console.log is cut past this size ([`bound_console`]).
pub const CONSOLE_MAX: u64 = 64 << 20;
/// What is kept of it then, in console.log.1.
pub const CONSOLE_KEEP: u64 = 1 << 20;

/// The last `n` bytes of the file at `path` (all of it when shorter), as text; a line cut
/// at the front is dropped. Reads only those bytes, however large the file.
fn tail(path: &Path, n: u64) -> Option<String> {
    let (mut bytes, cut) = crate::fsio::tail(path, n)?;
    if cut {
        let start = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.drain(..start);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// When the file at `path` (console.log) is larger than `max`: its last `keep` bytes (from
/// a line's start) replace `<path>.1`, and it is emptied, with a first line saying what was
/// dropped (all of it when `<path>.1` cannot be written: the space is the run's). Everything
/// writing to it holds it with `O_APPEND` and writes on at its new end. Returns the bytes
/// dropped, or `None` when it was not larger.
pub fn bound_console(path: &Path, max: u64, keep: u64) -> std::io::Result<Option<u64>> {
    let len = std::fs::metadata(path)?.len();
    if len <= max {
        return Ok(None);
    }
    let kept = tail(path, keep).unwrap_or_default();
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let saved = crate::fsio::write_atomic(Path::new(&old), kept.as_bytes());
    let f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.set_len(0)?;
    let mb = |b: u64| b as f64 / 1e6;
    let said = match saved {
        Ok(()) => {
            let dropped = len - kept.len() as u64;
            let _ = writeln!(
                &f,
                "daq-engine: console.log had {:.1} MB: its last {} kB are in console.log.1, \
                 the {:.1} MB before them were dropped",
                mb(len),
                kept.len() / 1000,
                mb(dropped)
            );
            dropped
        }
        Err(e) => {
            let _ = writeln!(
                &f,
                "daq-engine: console.log had {:.1} MB, dropped: console.log.1 could not be \
                 written ({e})",
                mb(len)
            );
            len
        }
    };
    Ok(Some(said))
}

/// Least time between two redraws.
const FRAME: Duration = Duration::from_millis(250);
/// Channel colours for the traces.
const COLORS: [Color; 6] = [
    Color::Yellow,
    Color::Cyan,
    Color::Magenta,
    Color::Green,
    Color::Red,
    Color::Blue,
];

/// Gives the terminal back and points stderr at the terminal again; safe to call twice.
fn restore_terminal() {
    if RAW.swap(false, Ordering::SeqCst) {
        let mut out = std::io::stdout();
        let _ = crossterm::execute!(out, LeaveAlternateScreen, crossterm::cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
    let fd = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this module duplicated from stderr and still owns;
        // dup2 onto 2 and close only affect descriptors, no memory.
        unsafe {
            libc::dup2(fd, 2);
            libc::close(fd);
        }
    }
}

/// Sends stderr into `path` (appending), keeping a copy of the real one to restore.
fn redirect_stderr(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // SAFETY: dup and dup2 operate on descriptors only; `file` stays open across both calls
    // and is closed by its drop after descriptor 2 holds its own reference.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(saved);
            return Err(e);
        }
        SAVED_STDERR.store(saved, Ordering::SeqCst);
    }
    Ok(())
}

enum Input {
    Ready,
    Nothing,
    Gone,
}

/// Waits up to `timeout` for the terminal (stdin) to have input, or to hang up.
fn wait_for_input(timeout: Duration) -> Input {
    let mut fds = [libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Input::Nothing
        } else {
            Input::Gone
        };
    }
    if fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::Gone
    } else if fds[0].revents & libc::POLLIN != 0 {
        Input::Ready
    } else {
        Input::Nothing
    }
}

enum Msg {
    Stats(Box<Snapshot>),
    Finish(Box<RunSummary>),
}

/// The terminal dashboard: a [`Watcher`] drawing the run in its own thread.
pub struct Tui {
    tx: Sender<Msg>,
    controls: Receiver<Control>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
    console: PathBuf,
}

impl Tui {
    /// Takes over the terminal (keys from stdin, drawing on stdout) for the run in `run_dir`.
    /// Fails when either is not a terminal (show plain progress lines then): a dashboard
    /// must never wait for keys that cannot come.
    pub fn new(run_dir: &Path) -> std::io::Result<Tui> {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(
                "the dashboard needs a terminal on stdin and stdout (use --no-tui for plain lines)",
            ));
        }
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        let console = run_dir.join("console.log");
        redirect_stderr(&console)?;
        let started = terminal::enable_raw_mode().and_then(|_| {
            RAW.store(true, Ordering::SeqCst);
            crossterm::execute!(
                std::io::stdout(),
                EnterAlternateScreen,
                crossterm::cursor::Hide
            )?;
            Terminal::new(CrosstermBackend::new(std::io::stdout()))
        });
        let term = match started {
            Ok(t) => t,
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel();
        let (ctx, controls) = mpsc::channel();
        let dir = run_dir.to_path_buf();
        let console_path = console.clone();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("monitor-tui".into())
            .spawn(move || {
                Dashboard::new(&dir, console_path).run(term, &rx, &ctx);
                restore_terminal();
                let _ = done_tx.send(());
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        Ok(Tui {
            tx,
            controls,
            thread: Some(thread),
            done,
            console,
        })
    }

    fn close(&mut self) {
        if let Some(t) = self.thread.take() {
            // Never hang the run's end on a thread stuck on a dead terminal.
            if self.done.recv_timeout(Duration::from_secs(2)).is_ok() {
                let _ = t.join();
            }
            restore_terminal();
            // What went to stderr while the dashboard was up, for the scrollback.
            if let Some(text) = tail(&self.console, 64 * 1024) {
                let lines = readable_lines(&text);
                let from = lines.len().saturating_sub(40);
                // Not eprintln!: the terminal may be gone, and that must not panic.
                let mut err = std::io::stderr().lock();
                for l in &lines[from..] {
                    let _ = writeln!(err, "{l}");
                }
            }
        }
    }
}

impl Watcher for Tui {
    fn update(&mut self, stats: &Snapshot) {
        let _ = self.tx.send(Msg::Stats(Box::new(stats.clone())));
    }

    fn poll(&mut self) -> Option<Control> {
        self.controls.try_recv().ok()
    }

    fn finish(&mut self, summary: &RunSummary) {
        let _ = self.tx.send(Msg::Finish(Box::new(summary.clone())));
        self.close();
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        // Disconnecting the channel ends the thread.
        drop(std::mem::replace(&mut self.tx, tx));
        self.close();
    }
}

/// The state of the drawing thread.
struct Dashboard {
    view: RunView,
    files: RunFiles,
    console: PathBuf,
    console_tail: Vec<String>,
    console_len: u64,
    /// Cutting console.log failed once: not tried again (and not warned every frame).
    console_uncut: bool,
    histogram: usize,
    trace: usize,
    note: String,
}

/// The lines of console text as a terminal shows them: of a line rewritten with `\r` (a
/// progress line) its last state, without escape codes (colours, cursor moves: they would
/// scribble over the dashboard), blank lines left out.
fn readable_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l))
        .map(|l| anstream::adapter::strip_str(l).to_string())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

impl Dashboard {
    fn new(run_dir: &Path, console: PathBuf) -> Dashboard {
        Dashboard {
            view: RunView::for_run(run_dir),
            files: RunFiles::new(run_dir, Duration::from_millis(300)),
            console,
            console_tail: Vec::new(),
            console_len: 0,
            console_uncut: false,
            histogram: 0,
            trace: 0,
            note: String::new(),
        }
    }

    fn run(
        mut self,
        mut term: Terminal<CrosstermBackend<std::io::Stdout>>,
        rx: &Receiver<Msg>,
        controls: &Sender<Control>,
    ) {
        let mut alive = true;
        let mut asked_stop = false;
        let mut last_draw: Option<Instant> = None;
        let ask = |c: Control, asked_stop: &mut bool| {
            if c == Control::Stop {
                if *asked_stop {
                    return;
                }
                *asked_stop = true;
            }
            let _ = controls.send(c);
        };
        loop {
            let mut ended = false;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Stats(v)) => {
                        self.view.update(&v);
                        last_draw = None;
                    }
                    Ok(Msg::Finish(summary)) => {
                        self.note = if summary.exit_code == 0 {
                            format!(
                                "run finished after {:.1} s, stopped by {}",
                                summary.seconds,
                                summary.stopped_by.text()
                            )
                        } else {
                            format!("run FAILED: {}", summary.failures.join("; "))
                        };
                        ended = true;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if ended {
                self.view.set_finished();
                if alive {
                    let _ = term.draw(|f| self.draw(f));
                }
                return;
            }
            if crate::engine::hung_up() && alive {
                // The supervisor stops the run for the SIGHUP itself.
                tracing::warn!("the terminal hung up: stopping the run (buffers drain)");
                alive = false;
            }
            if !RAW.load(Ordering::SeqCst) {
                // The terminal was given back (a panic elsewhere): draw no more.
                alive = false;
            }
            if !alive {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if last_draw.is_none_or(|t| t.elapsed() >= FRAME) {
                last_draw = Some(Instant::now());
                self.files.refresh();
                self.read_console();
                if term.draw(|f| self.draw(f)).is_err() {
                    tracing::warn!("cannot draw on the terminal any more: stopping the run");
                    alive = false;
                    crate::engine::terminal_gone();
                    continue;
                }
            }
            // Wait for input ourselves: crossterm's reader spins when the terminal hangs
            // up, so a hang-up must be seen here, before crossterm reads.
            match wait_for_input(Duration::from_millis(100)) {
                Input::Gone => {
                    tracing::warn!("the terminal hung up: stopping the run (buffers drain)");
                    alive = false;
                    crate::engine::terminal_gone();
                    continue;
                }
                Input::Nothing => continue,
                Input::Ready => {}
            }
            match event::poll(Duration::ZERO) {
                Ok(false) => {}
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
                        match k.code {
                            KeyCode::Char('c') if ctrl => {
                                // Raw mode swallows the terminal's SIGINT: pass it on, so
                                // Ctrl-C works as without the dashboard.
                                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
                                self.note = "Ctrl-C: stopping (again to abort)".into();
                            }
                            KeyCode::Char('p') => {
                                ask(Control::Pause, &mut asked_stop);
                                self.note = "pause requested".into();
                            }
                            KeyCode::Char('r') => {
                                ask(Control::Resume, &mut asked_stop);
                                self.note = "resume requested".into();
                            }
                            KeyCode::Char('s') | KeyCode::Char('q') => {
                                ask(Control::Stop, &mut asked_stop);
                                self.note = "stop requested: buffers drain".into();
                            }
                            KeyCode::Char('h') => self.histogram += 1,
                            KeyCode::Char('t') => self.trace += 1,
                            _ => {}
                        }
                        last_draw = None;
                    }
                    Ok(_) => last_draw = None,
                    Err(_) => {
                        alive = false;
                        crate::engine::terminal_gone();
                    }
                },
                Err(_) => {
                    tracing::warn!("cannot read the terminal any more: stopping the run");
                    alive = false;
                    crate::engine::terminal_gone();
                }
            }
        }
    }

    /// Keeps the last few readable lines of console.log (cut when it grew too large).
    fn read_console(&mut self) {
        let len = std::fs::metadata(&self.console).map_or(0, |m| m.len());
        if len == self.console_len {
            return;
        }
        if len > CONSOLE_MAX && !self.console_uncut {
            if let Err(e) = bound_console(&self.console, CONSOLE_MAX, CONSOLE_KEEP) {
                tracing::warn!("cannot cut {}: {e}; it grows on", self.console.display());
                self.console_uncut = true;
            }
        }
        self.console_len = len;
        if let Some(text) = tail(&self.console, 8192) {
            self.console_tail = readable_lines(&text);
            let from = self.console_tail.len().saturating_sub(3);
            self.console_tail.drain(..from);
        }
    }

    fn draw(&self, f: &mut Frame) {
        let s = self.view.snapshot();
        let warnings = self.view.warnings();
        let n_msgs = (warnings.len() + self.console_tail.len()).min(5) as u16;
        let [head, gauge, buffers, workers, msgs, plots, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(s.buffers.len() as u16 + 3),
            Constraint::Length(s.workers.len() as u16 + 3),
            Constraint::Length(n_msgs),
            Constraint::Min(6),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let state = self.view.state();
        let state_style = match state {
            "running" => Style::default().fg(Color::Black).bg(Color::Green),
            "paused" => Style::default().fg(Color::Black).bg(Color::Yellow),
            _ => Style::default().fg(Color::White).bg(Color::Red),
        };
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    " daq-engine ",
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::styled(format!(" {} ", state.to_uppercase()), state_style),
                Span::raw(format!("  run time {:.1} s  {}", s.t, s.time)),
                Span::raw(s.paused_text().map_or(String::new(), |p| format!("  {p}"))),
            ])),
            head,
        );
        let (ratio, label) = match self.view.progress() {
            Some(p) => (
                p.fraction,
                format!(
                    "{:.0}% of {}{}",
                    p.fraction * 100.0,
                    p.of,
                    p.seconds_left
                        .map_or(String::new(), |l| format!(", {l:.0} s left"))
                ),
            ),
            None => (
                0.0,
                "no limit: runs until stopped or the sources end".to_string(),
            ),
        };
        f.render_widget(
            Gauge::default()
                .ratio(ratio.clamp(0.0, 1.0))
                .label(label)
                .gauge_style(Style::default().fg(Color::Blue).bg(Color::DarkGray)),
            gauge,
        );
        self.draw_buffers(f, buffers);
        self.draw_workers(f, workers);
        let mut lines: Vec<Line> = warnings
            .iter()
            .map(|w| Line::styled(format!("! {w}"), Style::default().fg(Color::Red)))
            .collect();
        lines.extend(
            self.console_tail
                .iter()
                .map(|l| Line::styled(l.clone(), Style::default().fg(Color::Gray))),
        );
        let skip = lines.len().saturating_sub(n_msgs as usize);
        f.render_widget(Paragraph::new(lines.split_off(skip)), msgs);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(plots);
        self.draw_trace(f, left);
        self.draw_histogram(f, right);
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    " p pause  r resume  s stop (drain)  q stop  h next histogram  t next scope ",
                    Style::default().add_modifier(Modifier::REVERSED),
                ),
                Span::raw(format!("  {}", self.note)),
            ])),
            keys,
        );
    }

    fn draw_buffers(&self, f: &mut Frame, area: Rect) {
        let s = self.view.snapshot();
        let rows = s.buffers.iter().map(|(name, b)| {
            let out = b.events_out.values().min().copied();
            let full = b.fill >= crate::run_dir::FULL_LEVEL;
            let bar_len = 10usize;
            let filled = ((b.fill.clamp(0.0, 1.0) * bar_len as f64).round()) as usize;
            let bar = format!(
                "{}{} {:>3.0}%",
                "█".repeat(filled),
                "░".repeat(bar_len - filled),
                b.fill * 100.0
            );
            Row::new(vec![
                Span::raw(name.clone()),
                Span::raw(b.events_in.to_string()),
                Span::raw(out.map_or("–".into(), |o| o.to_string())),
                Span::raw(format!("{:.1}", self.view.rate_hz(name))),
                Span::styled(
                    bar,
                    Style::default().fg(if full { Color::Red } else { Color::Green }),
                ),
                Span::raw(format!("{:.2}", b.deadtime * 100.0)),
                Span::styled(
                    b.lost.to_string(),
                    if b.lost > 0 {
                        Style::default().fg(Color::Red)
                    } else {
                        Style::default()
                    },
                ),
                Span::raw(if b.closed { "closed" } else { "" }),
            ])
        });
        #[rustfmt::skip]
        let columns = [
            ("buffer", 16), ("events in", 12), ("events out", 12), ("rate Hz", 11), ("fill", 16),
            ("dead %", 10), ("lost", 9), ("", 7),
        ];
        f.render_widget(table(rows, &columns, " buffers "), area);
    }

    fn draw_workers(&self, f: &mut Frame, area: Rect) {
        let s = self.view.snapshot();
        let rows = s.workers.iter().map(|(name, w)| {
            let lost = self.view.reader_lost(name);
            let style = match w.state.as_str() {
                "failed" => Style::default().fg(Color::Red),
                "running" => Style::default().fg(Color::Green),
                _ => Style::default(),
            };
            Row::new(vec![
                Span::raw(name.clone()),
                Span::styled(w.state.clone(), style),
                Span::raw(w.processes.to_string()),
                Span::raw(w.events_text()),
                Span::raw(format!("{:.0}", self.view.cpu_percent(name))),
                Span::raw(w.cores_text()),
                Span::raw(w.restarts.to_string()),
                // Its own losses as a reader (it died, was restarted or left holding them).
                Span::styled(
                    lost.to_string(),
                    if lost > 0 {
                        Style::default().fg(Color::Red)
                    } else {
                        Style::default()
                    },
                ),
            ])
        });
        #[rustfmt::skip]
        let columns = [
            ("worker", 16), ("state", 12), ("processes", 10), ("events", 12), ("CPU %", 7),
            ("core", 12), ("restarts", 9), ("lost", 9),
        ];
        f.render_widget(table(rows, &columns, " workers "), area);
    }

    fn draw_trace(&self, f: &mut Frame, area: Rect) {
        let traces: Vec<&Trace> = self.files.traces().values().collect();
        let Some(t) = (!traces.is_empty()).then(|| traces[self.trace % traces.len()]) else {
            let text = "no oscilloscope trace yet (observe.oscilloscope writes one)";
            return nothing_yet(f, area, text, " oscilloscope ");
        };
        let t_max = t.time.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        let (unit, k) = time_unit(t_max);
        let width = (area.width as usize).saturating_sub(10).max(10) * 2;
        let series: Vec<(String, Vec<(f64, f64)>)> = t
            .channels
            .iter()
            .map(|(name, v)| (name.clone(), min_max_points(&t.time, v, width, k)))
            .collect();
        let (mut lo, mut hi) = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
                (a.min(y), b.max(y))
            });
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let (lo, hi) = (lo - pad, hi + pad);
        let datasets: Vec<Dataset> = series
            .iter()
            .enumerate()
            .map(|(i, (name, pts))| {
                Dataset::default()
                    .name(name.clone())
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(Style::default().fg(COLORS[i % COLORS.len()]))
                    .data(pts)
            })
            .collect();
        let chart = Chart::new(datasets)
            .block(
                Block::bordered()
                    .title(format!(" oscilloscope {}: event {} ", t.worker, t.counter)),
            )
            .x_axis(
                Axis::default()
                    .title(format!("time ({unit})"))
                    .bounds([0.0, t_max * k])
                    .labels(["0".to_string(), format!("{:.3}", t_max * k)]),
            )
            .y_axis(
                Axis::default()
                    .title("V")
                    .bounds([lo, hi])
                    .labels([format!("{lo:.3}"), format!("{hi:.3}")]),
            );
        f.render_widget(chart, area);
    }

    fn draw_histogram(&self, f: &mut Frame, area: Rect) {
        let hists: Vec<&HistogramFile> = self.files.histograms().values().collect();
        let Some(h) = (!hists.is_empty()).then(|| hists[self.histogram % hists.len()]) else {
            let text = "no histogram yet (export.histogram writes them)";
            return nothing_yet(f, area, text, " histogram ");
        };
        let width = (area.width as usize).saturating_sub(10).max(10) * 2;
        let pts = rebinned(h, width);
        let top = pts.iter().map(|p| p.1).fold(1.0, f64::max);
        let (lo, hi) = (h.edges[0], h.edges[h.edges.len() - 1]);
        let chart = Chart::new(vec![Dataset::default()
            .name(h.field.clone())
            .marker(Marker::HalfBlock)
            .graph_type(GraphType::Bar)
            .style(Style::default().fg(Color::Cyan))
            .data(&pts)])
        .block(Block::bordered().title(format!(
            " histogram {}/{} ({} of {}): {} entries, under {}, over {} ",
            h.worker,
            h.field,
            self.histogram % hists.len() + 1,
            hists.len(),
            h.entries,
            h.underflow,
            h.overflow
        )))
        .x_axis(
            Axis::default()
                .title(h.field.clone())
                .bounds([lo, hi])
                .labels([number(lo), number(hi)]),
        )
        .y_axis(
            Axis::default()
                .title("counts")
                .bounds([0.0, top * 1.05])
                .labels(["0".to_string(), format!("{top:.0}")]),
        );
        f.render_widget(chart, area);
    }
}

/// A bordered box titled `title` saying `text`: what a panel shows before its data exists.
fn nothing_yet(f: &mut Frame, area: Rect, text: &str, title: &str) {
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title)),
        area,
    );
}

/// A bordered table titled `title` whose columns are `(header, width)`, the header bold.
fn table<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    columns: &[(&'a str, u16)],
    title: &'a str,
) -> Table<'a> {
    Table::new(rows, columns.iter().map(|&(_, w)| Constraint::Length(w)))
        .header(
            Row::new(columns.iter().map(|&(h, _)| h))
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(title))
}

/// An axis label: plain for ordinary magnitudes, exponent otherwise.
fn number(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-3..1e5).contains(&a) {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// A unit for a time axis reaching `t_max` seconds: (name, factor).
fn time_unit(t_max: f64) -> (&'static str, f64) {
    if t_max < 1e-6 {
        ("ns", 1e9)
    } else if t_max < 1e-3 {
        ("µs", 1e6)
    } else if t_max < 1.0 {
        ("ms", 1e3)
    } else {
        ("s", 1.0)
    }
}

/// At most about `width` points: each bucket of samples gives its minimum and maximum, so
/// a one-sample pulse still shows.
fn min_max_points(time: &[f64], v: &[f64], width: usize, k: f64) -> Vec<(f64, f64)> {
    let n = time.len().min(v.len());
    if n == 0 {
        return Vec::new();
    }
    let per = n.div_ceil(width.max(1) / 2 + 1).max(1);
    let mut out = Vec::with_capacity(2 * n / per + 2);
    for start in (0..n).step_by(per) {
        let end = (start + per).min(n);
        let chunk = &v[start..end];
        let (lo, hi) = chunk
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                (a.min(y), b.max(y))
            });
        out.push((time[start] * k, lo));
        out.push((time[end - 1] * k, hi));
    }
    out
}

/// The histogram as (bin centre, count) with adjacent bins summed to at most `width` bars.
fn rebinned(h: &HistogramFile, width: usize) -> Vec<(f64, f64)> {
    let n = h.counts.len();
    let per = n.div_ceil(width.max(1)).max(1);
    (0..n)
        .step_by(per)
        .map(|i| {
            let j = (i + per).min(n);
            let c: u64 = h.counts[i..j].iter().sum();
            ((h.edges[i] + h.edges[j]) / 2.0, c as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console.log grown past its bound by a writer that keeps writing (as every worker
    /// holds it, `O_APPEND`): its last lines are kept in console.log.1, it starts again with
    /// a line saying what was dropped, and the writer's next line follows that line (no
    /// hole, nothing of it lost).
    #[test]
    fn console_log_past_its_bound_keeps_its_end_and_writers_go_on() {
        let dir = crate::fsio::test_dir("console");
        let path = dir.join("console.log");
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut all = String::new();
        for i in 0..1000 {
            let line = format!("worker printed line {i}\n");
            writer.write_all(line.as_bytes()).unwrap();
            all.push_str(&line);
        }
        assert_eq!(bound_console(&path, 1 << 20, 100).unwrap(), None);
        let dropped = bound_console(&path, 1000, 100).unwrap().unwrap();
        let kept = std::fs::read_to_string(dir.join("console.log.1")).unwrap();
        assert!(
            all.ends_with(&kept) && kept.starts_with("worker printed line 99"),
            "{kept}"
        );
        assert!(kept.len() <= 100, "{kept}");
        assert_eq!(dropped, (all.len() - kept.len()) as u64);
        writer.write_all(b"worker printed line 1000\n").unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        let mut lines = now.lines();
        let note = lines.next().unwrap();
        assert!(
            note.starts_with(
                "daq-engine: console.log had 0.0 MB: its last 0 kB are in console.log.1"
            ),
            "{now}"
        );
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["worker printed line 1000"],
            "{now:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A Python worker's coloured log line (`\x1b[31m…\x1b[0m`) was dropped from the
    /// dashboard's console lines: its text is shown now, without the escape codes (which
    /// would scribble over the dashboard), as is the last state of a `\r` progress line.
    #[test]
    fn coloured_console_lines_are_shown_without_their_escape_codes() {
        let dir = crate::fsio::test_dir("console-colour");
        let console = dir.join("console.log");
        std::fs::write(
            &console,
            "plain line\n\x1b[1;31mERROR\x1b[0m worker 'fit': no peak\n10 %\r55 %\r\x1b[32m100 %\x1b[0m\n",
        )
        .unwrap();
        let mut d = Dashboard::new(&dir, console);
        d.read_console();
        assert_eq!(
            d.console_tail,
            ["plain line", "ERROR worker 'fit': no peak", "100 %"],
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_reads_whole_lines_of_the_end() {
        let path = std::env::temp_dir().join(format!("daq-tail-{}", std::process::id()));
        std::fs::write(&path, "aaa\nbbb\nccc\n").unwrap();
        assert_eq!(tail(&path, 10).unwrap(), "bbb\nccc\n");
        assert_eq!(tail(&path, 100).unwrap(), "aaa\nbbb\nccc\n");
        assert_eq!(tail(&path, 3).unwrap(), "");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rebinning_keeps_every_count() {
        let h = HistogramFile {
            edges: (0..=150).map(f64::from).collect(),
            counts: (0..150).collect(),
            ..HistogramFile::default()
        };
        let pts = rebinned(&h, 40);
        assert!(pts.len() <= 40, "{}", pts.len());
        let total: f64 = pts.iter().map(|p| p.1).sum();
        assert_eq!(total as u64, (0..150u64).sum::<u64>());
    }

    #[test]
    fn a_one_sample_pulse_survives_decimation() {
        let time: Vec<f64> = (0..4096).map(|i| i as f64 * 4e-9).collect();
        let mut v = vec![0.0; 4096];
        v[1234] = -0.5;
        let pts = min_max_points(&time, &v, 100, 1e6);
        assert!(pts.len() <= 104, "{}", pts.len());
        assert!(pts.iter().any(|p| p.1 == -0.5));
    }
}
