//! One open serial port with a fixed read buffer, byte-offset bookkeeping, disconnect
//! detection and reconnect with backoff.
//!
//! Guarantees: after [`SerialLink::open`] no method allocates except the reconnect path;
//! every byte handed out has a known offset since the (re)open; EOF, EIO and hang-up become
//! [`DriverError::Disconnected`] and the port is dropped, so later calls report the same
//! until [`SerialLink::reconnect`] succeeds. Must never: return a partial frame as if it were
//! whole, or sleep longer than the backoff limit.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort, TTYPort};

use super::record::RecordWriter;
use crate::DriverError;

/// Size of the read buffer; also the longest line a line reader accepts.
pub const BUFFER_BYTES: usize = 4096;

/// How many first bytes of a refused line or reply are kept for the log.
pub const REJECTED_BYTES: usize = 32;

/// Where and how to open a serial port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSettings {
    /// tty path (`/dev/ttyUSB0`, `/dev/daq/geiger-0`, a simulator's link).
    pub path: PathBuf,
    /// Line speed in baud (8N1, no flow control). Ignored by USB CDC devices and ptys.
    pub baud: u32,
}

/// Exponential backoff between reconnect attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the second attempt; doubled after each failure.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

/// Counters of one link over its life, for the run's metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkStats {
    /// Times the device vanished.
    pub disconnects: u32,
    /// Times it came back.
    pub reconnects: u32,
    /// Total time spent disconnected (closed gaps only), seconds.
    pub gap_seconds: f64,
    /// Reconnect attempts that failed.
    pub failed_attempts: u32,
}

/// What a line-protocol driver made of one line (see [`SerialLink::next_record`]).
pub enum LineUse<T> {
    /// Not a record (a comment, a banner, a name line): read on.
    Skip,
    /// The record is written; the value goes back to the driver.
    Record(T),
}

/// How long a line in progress at the stop may go without a byte before it counts as cut
/// off (see [`SerialLink::end_lines`]): many byte times even at 1200 baud.
const STOP_LINE_IDLE: Duration = Duration::from_millis(500);
/// At most this long is waited at the stop for a line in progress to end.
const STOP_LINE_MOST: Duration = Duration::from_secs(2);

/// Bytes that came with one read of the port (see [`SerialLink::read_up_to`]).
pub struct Arrived<'a> {
    /// Stream offset of `bytes[0]`.
    pub offset: u64,
    /// The bytes, consumed.
    pub bytes: &'a [u8],
    /// When the read that brought them returned.
    pub at: Instant,
}

/// An open serial port with a fixed read buffer.
pub struct SerialLink {
    settings: PortSettings,
    device: String,
    port: Option<TTYPort>,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`; invariant `start <= end <= buf.len()`.
    start: usize,
    end: usize,
    /// Stream offset (since the last open) of `buf[start]`.
    offset: u64,
    /// Set after an over-long line: drop bytes up to the next newline.
    skip_to_newline: bool,
    /// When the last read from the port brought bytes: every byte buffered arrived then or
    /// earlier (see [`SerialLink::read_up_to`]).
    filled_at: Instant,
    /// What the disconnect said, kept for the calls after it (a line reader first reports
    /// the unterminated line the disconnect cut off, then this).
    lost_detail: Option<String>,
    /// First bytes of the last line or reply a driver refused: `rejected[..rejected_len]`.
    rejected: [u8; REJECTED_BYTES],
    /// Invariant: `rejected_len <= REJECTED_BYTES`.
    rejected_len: usize,
    backoff: Backoff,
    next_delay: Duration,
    next_attempt: Option<Instant>,
    lost_at: Option<Instant>,
    stats: LinkStats,
}

fn open_port(settings: &PortSettings, device: &str) -> Result<TTYPort, DriverError> {
    serialport::new(settings.path.to_string_lossy(), settings.baud)
        .timeout(Duration::from_millis(100))
        .open_native()
        .map_err(|e| DriverError::Open {
            device: device.to_string(),
            detail: format!(
                "{e} (at {} baud). Check the path exists, that no other program holds the \
                 port, and that you may open it (group dialout or the udev rules in \
                 udev/70-daq-engine.rules)",
                settings.baud
            ),
        })
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof | ErrorKind::NotConnected)
        || e.raw_os_error() == Some(libc::EIO)
        || e.raw_os_error() == Some(libc::ENXIO)
        || e.raw_os_error() == Some(libc::ENODEV)
        // serialport reports a poll that saw neither data nor hang-up as EIO text.
        || (e.kind() == ErrorKind::Other && e.to_string().contains("I/O error"))
}

impl SerialLink {
    /// Opens the port. Errors name the path and what to check.
    pub fn open(settings: PortSettings) -> Result<SerialLink, DriverError> {
        let device = settings.path.display().to_string();
        let port = open_port(&settings, &device)?;
        let backoff = Backoff::default();
        Ok(SerialLink {
            settings,
            device,
            port: Some(port),
            buf: vec![0u8; BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            skip_to_newline: false,
            filled_at: Instant::now(),
            lost_detail: None,
            rejected: [0; REJECTED_BYTES],
            rejected_len: 0,
            backoff,
            next_delay: backoff.initial,
            next_attempt: None,
            lost_at: None,
            stats: LinkStats::default(),
        })
    }

    /// Sets the reconnect backoff.
    pub fn set_backoff(&mut self, backoff: Backoff) {
        self.backoff = backoff;
        self.next_delay = backoff.initial;
    }

    /// The device name used in errors (the path as configured).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The settings this link was opened with.
    pub fn settings(&self) -> &PortSettings {
        &self.settings
    }

    /// Stream offset of the next unconsumed byte since the last (re)open.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The first bytes (at most `REJECTED_BYTES`) of the last line or reply refused as bad
    /// data, for the log; empty before any.
    pub fn rejected(&self) -> &[u8] {
        &self.rejected[..self.rejected_len]
    }

    fn keep_rejected(rejected: &mut [u8; REJECTED_BYTES], len: &mut usize, bytes: &[u8]) {
        *len = bytes.len().min(REJECTED_BYTES);
        rejected[..*len].copy_from_slice(&bytes[..*len]);
    }

    /// Keeps the first bytes of something a driver refused that is no longer in the buffer
    /// (a heartbeat frame's first bytes it held) as [`SerialLink::rejected`].
    pub fn note_rejected(&mut self, bytes: &[u8]) {
        Self::keep_rejected(&mut self.rejected, &mut self.rejected_len, bytes);
    }

    /// Drops the bytes buffered so far (a partial or garbled reply), keeping their first
    /// bytes as [`SerialLink::rejected`], so the next read starts with what the device sends
    /// next. Returns how many were dropped.
    pub fn reject_buffered(&mut self) -> usize {
        let n = self.end - self.start;
        Self::keep_rejected(
            &mut self.rejected,
            &mut self.rejected_len,
            &self.buf[self.start..self.end],
        );
        self.consume(n);
        n
    }

    /// Counters of disconnects and reconnects.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Whether the port is open (false after a disconnect until a reconnect succeeds).
    pub fn is_connected(&self) -> bool {
        self.port.is_some()
    }

    /// Changes the line speed of the open port (used when probing the baud rate).
    pub fn set_baud(&mut self, baud: u32) -> Result<(), DriverError> {
        self.settings.baud = baud;
        if let Some(port) = self.port.as_mut() {
            port.set_baud_rate(baud).map_err(|e| DriverError::Config {
                device: self.device.clone(),
                detail: format!("cannot set {baud} baud: {e}"),
            })?;
        }
        Ok(())
    }

    fn disconnected(&mut self, detail: String) -> DriverError {
        self.lost_detail = Some(detail.clone());
        if self.port.take().is_some() {
            self.stats.disconnects += 1;
            self.lost_at = Some(Instant::now());
            self.next_delay = Duration::ZERO;
            self.next_attempt = None;
        }
        DriverError::Disconnected {
            device: self.device.clone(),
            detail,
        }
    }

    fn port(&mut self) -> Result<&mut TTYPort, DriverError> {
        if self.port.is_none() {
            let detail = match &self.lost_detail {
                Some(d) => format!("{d}; the port is closed since, call reconnect"),
                None => "port is closed since the device vanished; call reconnect".into(),
            };
            return Err(DriverError::Disconnected {
                device: self.device.clone(),
                detail,
            });
        }
        Ok(self.port.as_mut().expect("checked above"))
    }

    /// Writes all bytes (a command).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        let offset = self.offset;
        let result = {
            let port = self.port()?;
            port.write_all(bytes).and_then(|_| port.flush())
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_disconnect(&e) => {
                Err(self.disconnected(format!("write failed at read offset {offset}: {e}")))
            }
            Err(e) => Err(DriverError::Io {
                device: self.device.clone(),
                source: e,
            }),
        }
    }

    /// Drops everything received so far: buffered bytes, the driver's input queue, and
    /// whatever arrives within `settle`.
    pub fn discard_input(&mut self, settle: Duration) -> Result<(), DriverError> {
        self.consume(self.end - self.start);
        let _ = self.port()?.clear(ClearBuffer::Input);
        let deadline = Instant::now() + settle;
        while self.fill(deadline)? {
            self.consume(self.end - self.start);
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the buffer, waiting until `deadline`. `Ok(false)` on timeout.
    fn fill(&mut self, deadline: Instant) -> Result<bool, DriverError> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(false);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            let end = self.end;
            let Some(port) = self.port.as_ref() else {
                self.port()?;
                continue;
            };
            let fd = port.as_raw_fd();
            // We poll and read the descriptor ourselves: serialport's read() builds a boxed
            // io::Error on every timeout, and the reading loop must not allocate.
            // SAFETY: `fd` belongs to `self.port`, which stays open for this whole block.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
            let ms = wait.as_millis().min(u128::from(u16::MAX)) as u16;
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue, // re-check the deadline
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(DriverError::Io {
                        device: self.device.clone(),
                        source: e.into(),
                    })
                }
            }
            let revents = fds[0].revents().unwrap_or(PollFlags::empty());
            let result = if revents.contains(PollFlags::POLLIN) {
                nix::unistd::read(borrowed, &mut self.buf[end..]).map_err(std::io::Error::from)
            } else if revents
                .intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
            {
                Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            } else {
                continue;
            };
            match result {
                Ok(0) => {
                    return Err(self.disconnected(format!(
                        "end of file at byte {} (the device closed the line)",
                        self.offset + (self.end - self.start) as u64
                    )))
                }
                Ok(n) => {
                    self.end += n;
                    self.filled_at = Instant::now();
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if is_disconnect(&e) => {
                    return Err(self.disconnected(format!(
                        "{e} at byte {} (unplugged?)",
                        self.offset + (self.end - self.start) as u64
                    )))
                }
                Err(e) => {
                    return Err(DriverError::Io {
                        device: self.device.clone(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Waits at most `timeout` until `n` bytes (n ≤ buffer size) are there and returns them
    /// with their stream offset, consumed. `Ok(None)` on timeout; partial bytes stay
    /// buffered for the next call.
    pub fn read_exact(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Option<(u64, &[u8])>, DriverError> {
        let n = n.min(self.buf.len());
        let deadline = Instant::now() + timeout;
        while self.end - self.start < n {
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
        let at = self.start;
        let offset = self.offset;
        self.consume(n);
        // consume() may reset start/end to 0 but never touches the bytes themselves.
        Ok(Some((offset, &self.buf[at..at + n])))
    }

    /// Waits at most `timeout` for at least one byte and returns at most `n` of the buffered
    /// bytes, consumed, with their stream offset and when they arrived (the time of the read
    /// that brought them). Reads the port only when nothing is buffered, so all the bytes
    /// returned came with one read; `Ok(None)` on timeout. For streams whose framing rests on
    /// timing (the GMC heartbeat).
    pub fn read_up_to(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Option<Arrived<'_>>, DriverError> {
        if self.start == self.end && !self.fill(Instant::now() + timeout)? {
            return Ok(None);
        }
        let n = n.min(self.end - self.start);
        let (at, offset) = (self.start, self.offset);
        self.consume(n);
        // consume() may reset start/end to 0 but never touches the bytes themselves.
        Ok(Some(Arrived {
            offset,
            bytes: &self.buf[at..at + n],
            at: self.filled_at,
        }))
    }

    /// Reads a reply of unknown length: at least `min` bytes, then until no byte arrived for
    /// `idle`, at most `timeout` overall. Returns what arrived (maybe fewer than `min` on
    /// timeout) with its offset.
    pub fn read_until_idle(
        &mut self,
        min: usize,
        idle: Duration,
        timeout: Duration,
    ) -> Result<(u64, &[u8]), DriverError> {
        let deadline = Instant::now() + timeout;
        while self.end - self.start < min {
            if !self.fill(deadline)? {
                break;
            }
        }
        if self.end - self.start >= min {
            loop {
                let until = (Instant::now() + idle).min(deadline);
                if !self.fill(until)? {
                    break;
                }
            }
        }
        let (at, n, offset) = (self.start, self.end - self.start, self.offset);
        self.consume(n);
        Ok((offset, &self.buf[at..at + n]))
    }

    /// Reads lines for at most `timeout` until `parse` turns one into a record, written into
    /// `out` (exactly `out.len()` bytes): the frame every line-protocol driver shares.
    /// `parse` gets the line, its stream offset (for errors) and the record writer, and says
    /// whether the line was a record or is skipped (a comment, a banner). Returns the
    /// record's line offset and what `parse` returned; `None` when no line completed in time.
    pub fn next_record<T>(
        &mut self,
        out: &mut [u8],
        timeout: Duration,
        mut parse: impl FnMut(&[u8], u64, &mut RecordWriter<'_>) -> Result<LineUse<T>, DriverError>,
    ) -> Result<Option<(u64, T)>, DriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((offset, at, len)) = self.next_line(left)? else {
                return Ok(None);
            };
            let line = &self.buf[at..at + len];
            let mut w = RecordWriter::new(out);
            let value = match parse(line, offset, &mut w) {
                Ok(LineUse::Record(value)) => value,
                Ok(LineUse::Skip) => continue,
                Err(e) => {
                    // The line is consumed: the next call starts at the next line.
                    Self::keep_rejected(&mut self.rejected, &mut self.rejected_len, line);
                    return Err(e);
                }
            };
            return match w.finish() {
                Ok(_) => Ok(Some((offset, value))),
                Err(n) => Err(DriverError::Config {
                    device: self.device.clone(),
                    detail: format!("event slot is {} bytes, this device writes {n}", out.len()),
                }),
            };
        }
    }

    /// Waits at most `timeout` for one whole line (ending in `\n`) and returns it without the
    /// trailing `\r\n`/`\n`, with the offset of its first byte. `Ok(None)` on timeout (a
    /// partial line stays buffered). A line longer than the buffer is an error at its offset;
    /// the rest of it is skipped.
    pub fn read_line(&mut self, timeout: Duration) -> Result<Option<(u64, &[u8])>, DriverError> {
        Ok(self
            .next_line(timeout)?
            .map(|(offset, at, len)| (offset, &self.buf[at..at + len])))
    }

    /// [`SerialLink::read_line`], as the line's offset and its place `buf[at..at + len]`
    /// (consumed, but not overwritten before the next read).
    fn next_line(&mut self, timeout: Duration) -> Result<Option<(u64, usize, usize)>, DriverError> {
        let deadline = Instant::now() + timeout;
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.start + searched..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let at = self.start;
                let len = searched + i;
                let offset = self.offset;
                self.consume(len + 1);
                if self.skip_to_newline {
                    self.skip_to_newline = false;
                    searched = 0;
                    continue;
                }
                let len = if len > 0 && self.buf[at + len - 1] == b'\r' {
                    len - 1
                } else {
                    len
                };
                return Ok(Some((offset, at, len)));
            }
            searched = self.end - self.start;
            if self.start == 0 && self.end == self.buf.len() {
                let offset = self.offset;
                let was_skipping = self.skip_to_newline;
                if !was_skipping {
                    Self::keep_rejected(&mut self.rejected, &mut self.rejected_len, &self.buf);
                }
                self.consume(self.end - self.start);
                self.skip_to_newline = true;
                searched = 0;
                if !was_skipping {
                    return Err(DriverError::Protocol {
                        device: self.device.clone(),
                        offset,
                        detail: format!(
                            "no line end within {} bytes; wrong baud rate or not a line \
                             protocol? Skipping to the next line end",
                            self.buf.len()
                        ),
                    });
                }
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e @ DriverError::Disconnected { .. }) => {
                    // Report the line the disconnect cut off first; the next call says
                    // the device is gone.
                    return Err(self.cut_line("at the disconnect").unwrap_or(e));
                }
                Err(e) => return Err(e),
            }
            // fill() may have compacted the buffer; `searched` counts from start, still valid.
        }
    }

    /// The bytes after the last line end in the buffer — a line the stop or a disconnect cut
    /// off — dropped and kept as [`SerialLink::rejected`], as a [`DriverError::Protocol`]
    /// at their offset saying how many there were and `when` they were cut. Such a line is
    /// never taken as a record, even when it parses: it may be cut short (`0.1` of `0.11`).
    /// `None` when there are none, or they are the rest of an over-long line already
    /// reported. Whole lines before them (read at the stop, so after it) are dropped too.
    fn cut_line(&mut self, when: &str) -> Option<DriverError> {
        let held = &self.buf[self.start..self.end];
        let tail = held.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let (total, n) = (held.len(), held.len() - tail);
        if n == 0 {
            return None;
        }
        let offset = self.offset + tail as u64;
        let skipping = self.skip_to_newline && tail == 0;
        if !skipping {
            Self::keep_rejected(
                &mut self.rejected,
                &mut self.rejected_len,
                &self.buf[self.start + tail..self.end],
            );
        }
        self.consume(total);
        self.skip_to_newline = false;
        (!skipping).then(|| DriverError::Protocol {
            device: self.device.clone(),
            offset,
            detail: format!(
                "{n} byte(s) without a line end discarded {when}: a line cut off there may \
                 be cut short, so it is not taken as a record"
            ),
        })
    }

    /// At the stop of a line device: a line in progress (its first bytes buffered, no line
    /// end yet) is given time to end — a device sending as the run stops finishes its line
    /// within a few byte times — and then dropped with whatever came after it (that came
    /// after the stop). One still without its end after `STOP_LINE_IDLE` (0.5 s) without a byte
    /// was cut off: reported as [`DriverError::Protocol`] (see `cut_line`), so it is
    /// counted as bad data instead of vanishing.
    pub fn end_lines(&mut self) -> Result<(), DriverError> {
        let held = &self.buf[self.start..self.end];
        if held.last().is_none_or(|&b| b == b'\n') {
            return Ok(());
        }
        // Where the line in progress starts, from `start` (compaction keeps that).
        let from = held.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let give_up = Instant::now() + STOP_LINE_MOST;
        while self.port.is_some() && Instant::now() < give_up {
            let ended = self.buf[self.start + from..self.end].contains(&b'\n');
            if ended {
                // The line ended after the stop: nothing was cut; it and what followed
                // came after the stop and are left unread.
                self.consume(self.end - self.start);
                self.skip_to_newline = false;
                return Ok(());
            }
            match self.fill(Instant::now() + STOP_LINE_IDLE) {
                Ok(true) => {}
                Ok(false) | Err(DriverError::Disconnected { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        match self.cut_line("at the stop") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Closes and opens the port again at once (some GMC-500+ firmware answers the first
    /// GETVER only after a reopen). The buffer and offset start afresh.
    pub fn reopen(&mut self) -> Result<(), DriverError> {
        self.port = None;
        self.port = Some(open_port(&self.settings, &self.device)?);
        self.start = 0;
        self.end = 0;
        self.offset = 0;
        self.skip_to_newline = false;
        Ok(())
    }

    /// After a disconnect: waits out the backoff delay (first attempt immediately), then
    /// tries once to open the same path again (a re-pointed symlink counts). `Ok(true)` when
    /// open; the read buffer and offset start afresh.
    pub fn reconnect(&mut self) -> Result<bool, DriverError> {
        if self.port.is_some() {
            return Ok(true);
        }
        if let Some(at) = self.next_attempt {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
        match open_port(&self.settings, &self.device) {
            Ok(port) => {
                self.port = Some(port);
                self.start = 0;
                self.end = 0;
                self.offset = 0;
                self.skip_to_newline = false;
                self.lost_detail = None;
                self.stats.reconnects += 1;
                if let Some(lost) = self.lost_at.take() {
                    self.stats.gap_seconds += lost.elapsed().as_secs_f64();
                }
                self.next_delay = self.backoff.initial;
                self.next_attempt = None;
                Ok(true)
            }
            Err(_) => {
                self.stats.failed_attempts += 1;
                self.next_delay = if self.next_delay.is_zero() {
                    self.backoff.initial
                } else {
                    (self.next_delay * 2).min(self.backoff.max)
                };
                self.next_attempt = Some(Instant::now() + self.next_delay);
                Ok(false)
            }
        }
    }

    /// The wait the next reconnect attempt will take before trying.
    pub fn next_backoff(&self) -> Duration {
        self.next_attempt
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Metadata entries describing disconnect gaps.
    pub fn gap_metadata(&self) -> [(String, String); 3] {
        [
            ("disconnects".into(), self.stats.disconnects.to_string()),
            ("reconnects".into(), self.stats.reconnects.to_string()),
            (
                "disconnected_seconds".into(),
                format!("{:.3}", self.stats.gap_seconds),
            ),
        ]
    }
}
