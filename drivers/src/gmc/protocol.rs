//! GQ GMC wire protocol (GQ-RFC1201 for GMC-280/300/320, GQ-RFC1801 for GMC-500/600, and
//! the GMC-800 which claims RFC1201 but answers like RFC1801). Pure: bytes in, values out.
//!
//! Guarantees: every reply decoder checks the exact length and the fixed bytes (0xAA
//! trailers, ASCII shapes) and returns a [`GmcError`] instead of a value when they do not fit.
//! Model detection follows the prefix table of HARDWARE.md B.1 in its order. Must never: do
//! I/O, or invent a count from a reply of the wrong size.

use std::fmt::Write as _;

/// Commands the driver and simulator use. Each is ASCII `<NAME>>`.
pub mod cmd {
    /// Firmware version string.
    pub const GETVER: &[u8] = b"<GETVER>>";
    /// Counts per minute.
    pub const GETCPM: &[u8] = b"<GETCPM>>";
    /// Counts per second (RFC1801 and GMC-800 only).
    pub const GETCPS: &[u8] = b"<GETCPS>>";
    /// Start the 1 Hz CPS stream.
    pub const HEARTBEAT1: &[u8] = b"<HEARTBEAT1>>";
    /// Stop the CPS stream (no reply).
    pub const HEARTBEAT0: &[u8] = b"<HEARTBEAT0>>";
    /// Battery voltage.
    pub const GETVOLT: &[u8] = b"<GETVOLT>>";
    /// 7-byte serial number.
    pub const GETSERIAL: &[u8] = b"<GETSERIAL>>";
    /// Device clock.
    pub const GETDATETIME: &[u8] = b"<GETDATETIME>>";
    /// Configuration block (256 or 512 bytes).
    pub const GETCFG: &[u8] = b"<GETCFG>>";
}

/// The acknowledge byte setters return.
pub const ACK: u8 = 0xAA;

/// Mask of the valid bits of a 2-byte heartbeat CPS (bits 15–14 reserved, RFC1201).
pub const HEARTBEAT14_MASK: u16 = 0x3FFF;

/// Appends `<NAME[params]>>` to `out`; params are raw binary bytes.
pub fn encode(name: &str, params: &[u8], out: &mut Vec<u8>) {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(params);
    out.extend_from_slice(b">>");
}

/// Which protocol document a model follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rfc {
    /// GQ-RFC1201 (GMC-280/300/320).
    Rfc1201,
    /// GQ-RFC1801 (GMC-500/600).
    Rfc1801,
}

/// Model class by GETVER prefix, in the order they must be tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelClass {
    /// `GMC-300S`.
    Gmc300S,
    /// `GMC-300E+`.
    Gmc300EPlus,
    /// `GMC-300` (incl. `GMC-300Re 3.xx`/`4.xx`).
    Gmc300,
    /// `GMC-320+V5` (WiFi).
    Gmc320PlusV5,
    /// `GMC-320+`.
    Gmc320Plus,
    /// `GMC-320S`.
    Gmc320S,
    /// `GMC-320`.
    Gmc320,
    /// `GMC-500+`.
    Gmc500Plus,
    /// `GMC-500`.
    Gmc500,
    /// `GMC-600+`.
    Gmc600Plus,
    /// `GMC-600`.
    Gmc600,
    /// `GMC-800` (claims RFC1201, answers with 4-byte counts and a 512-byte config).
    Gmc800,
    /// `GMC-SE`.
    GmcSe,
}

/// The prefix table, order as in pygmc `auto_get_device.py` (longer prefixes first).
pub const MODEL_PREFIXES: [(&str, ModelClass); 13] = [
    ("GMC-300S", ModelClass::Gmc300S),
    ("GMC-300E+", ModelClass::Gmc300EPlus),
    ("GMC-300", ModelClass::Gmc300),
    ("GMC-320+V5", ModelClass::Gmc320PlusV5),
    ("GMC-320+", ModelClass::Gmc320Plus),
    ("GMC-320S", ModelClass::Gmc320S),
    ("GMC-320", ModelClass::Gmc320),
    ("GMC-500+", ModelClass::Gmc500Plus),
    ("GMC-500", ModelClass::Gmc500),
    ("GMC-600+", ModelClass::Gmc600Plus),
    ("GMC-600", ModelClass::Gmc600),
    ("GMC-800", ModelClass::Gmc800),
    ("GMC-SE", ModelClass::GmcSe),
];

/// Width of CPM/CPS replies in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountWidth {
    /// uint16 big-endian (RFC1201); heartbeat CPS masked to 14 bits.
    Two,
    /// uint32 big-endian (RFC1801, GMC-800).
    Four,
}

impl CountWidth {
    /// Bytes per count.
    pub fn bytes(self) -> usize {
        match self {
            CountWidth::Two => 2,
            CountWidth::Four => 4,
        }
    }
}

impl ModelClass {
    /// Detects the class from a GETVER reply; `None` if no prefix matches.
    pub fn detect(version: &[u8]) -> Option<ModelClass> {
        MODEL_PREFIXES
            .iter()
            .find(|(p, _)| version.starts_with(p.as_bytes()))
            .map(|&(_, c)| c)
    }

    /// The protocol document this class answers by.
    pub fn rfc(self) -> Rfc {
        match self {
            ModelClass::Gmc500Plus
            | ModelClass::Gmc500
            | ModelClass::Gmc600Plus
            | ModelClass::Gmc600 => Rfc::Rfc1801,
            _ => Rfc::Rfc1201,
        }
    }

    /// CPM and heartbeat CPS width. GMC-800 is the RFC1201 exception (4 bytes). Some
    /// GMC-500+ firmware answered 2 bytes: use the driver's width override for those.
    pub fn count_width(self) -> CountWidth {
        match (self, self.rfc()) {
            (ModelClass::Gmc800, _) | (_, Rfc::Rfc1801) => CountWidth::Four,
            _ => CountWidth::Two,
        }
    }

    /// Size of the GETCFG reply.
    pub fn config_bytes(self) -> usize {
        match (self, self.rfc()) {
            (ModelClass::Gmc800, _) | (_, Rfc::Rfc1801) => 512,
            _ => 256,
        }
    }

    /// Size of the GETVOLT reply: 1 byte (volts × 10) for RFC1201, 5 ASCII bytes for
    /// RFC1801. GMC-800: 5 ASCII (unverified); the driver treats a missing reply as
    /// "voltage unavailable".
    pub fn volt_bytes(self) -> usize {
        match (self, self.rfc()) {
            (ModelClass::Gmc800, _) | (_, Rfc::Rfc1801) => 5,
            _ => 1,
        }
    }

    /// Whether GETCPS exists (not in RFC1201 v1.40).
    pub fn has_getcps(self) -> bool {
        self.count_width() == CountWidth::Four
    }
}

/// A reply that does not fit the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GmcError {
    /// Wrong number of bytes.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        /// Which reply.
        what: &'static str,
        /// Bytes the protocol specifies.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The GETVER string matches no known model.
    #[error("unknown model in version string {0:?}; set the count width by hand (gmc width 2|4)")]
    UnknownModel(String),
    /// Bytes of the right length but impossible content.
    #[error("{what}: {detail}")]
    Content {
        /// Which reply.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Decodes a CPM/CPS reply (or heartbeat frame). With `heartbeat` and 2 bytes, the reserved
/// bits 15–14 are masked off.
pub fn decode_count(bytes: &[u8], width: CountWidth, heartbeat: bool) -> Result<u32, GmcError> {
    match (width, bytes) {
        (CountWidth::Two, &[a, b]) => {
            let v = u16::from_be_bytes([a, b]);
            Ok(u32::from(if heartbeat { v & HEARTBEAT14_MASK } else { v }))
        }
        (CountWidth::Four, &[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(GmcError::Length {
            what: "count",
            expected: width.bytes(),
            got: bytes.len(),
        }),
    }
}

/// Encodes a count as the device sends it (2-byte counts saturate at the field's maximum;
/// `reserved` is ORed into bits 15–14 of 2-byte heartbeat frames).
pub fn encode_count(value: u32, width: CountWidth, reserved: u16, out: &mut Vec<u8>) {
    match width {
        CountWidth::Two => {
            let v = value.min(u32::from(u16::MAX)) as u16 | (reserved & !HEARTBEAT14_MASK);
            out.extend_from_slice(&v.to_be_bytes());
        }
        CountWidth::Four => out.extend_from_slice(&value.to_be_bytes()),
    }
}

/// Heartbeat bytes that are not a frame: the first bytes of a frame arrived more than
/// [`HeartbeatFramer::GAP`] before the rest, so they belong to another second (a stray byte
/// on the line, or a byte lost from a frame) and were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Misaligned {
    /// Stream offset of the first dropped byte.
    pub offset: u64,
    /// The dropped bytes: `bytes[..len]`.
    pub bytes: [u8; 4],
    /// How many were dropped (1..width).
    pub len: usize,
    /// How long before the next byte they arrived.
    pub early_by: std::time::Duration,
}

/// Cuts the `<HEARTBEAT1>>` stream into count frames by arrival time. The stream has no
/// marker to re-synchronise on: the reserved bits 15–14 of a 2-byte frame may be set by the
/// device (RFC1201 says only that they are reserved), and a 4-byte frame has none. What it
/// has is timing: the device sends one frame a second, its bytes together (2 or 4 bytes,
/// well under a millisecond on the line), so a frame whose bytes straddle the pause between
/// two heartbeats is out of step. The framer drops the early bytes and starts the frame
/// again with the late ones, so one stray byte costs one refused fragment, not every count
/// after it.
///
/// Pure: arrival times come in as durations on any clock (the driver's reads, or a test's
/// numbers). Limit: a stray byte that arrives together with the next frame still forms a
/// frame with its first byte (one wrong count); the byte left over is then caught at the
/// next pause.
#[derive(Clone, Debug)]
pub struct HeartbeatFramer {
    width: CountWidth,
    /// The frame so far: `held[..held_len]`; invariant `held_len < width.bytes()` between
    /// calls, except while a whole frame waits in [`HeartbeatFramer::frame`].
    held: [u8; 4],
    held_len: usize,
    /// Stream offset of `held[0]`.
    held_offset: u64,
    /// When the last held byte arrived.
    held_at: std::time::Duration,
}

impl HeartbeatFramer {
    /// A pause longer than this between bytes of one frame means they belong to different
    /// heartbeats: half the 1 s period, far above the time a frame takes on the line and a
    /// USB-serial chip's latency.
    pub const GAP: std::time::Duration = std::time::Duration::from_millis(500);

    /// A framer at the start of the stream.
    pub fn new(width: CountWidth) -> HeartbeatFramer {
        HeartbeatFramer {
            width,
            held: [0; 4],
            held_len: 0,
            held_offset: 0,
            held_at: std::time::Duration::ZERO,
        }
    }

    /// Forgets a partial frame (a new stream: after a reconnect or a new `<HEARTBEAT1>>`).
    pub fn reset(&mut self) {
        self.held_len = 0;
    }

    /// How many bytes the frame still needs (0 when a whole one waits in `frame`).
    pub fn wants(&self) -> usize {
        self.width.bytes() - self.held_len
    }

    /// Takes bytes (at most [`HeartbeatFramer::wants`]; more are ignored) that arrived
    /// together at `at`, the first at stream offset `offset`. With `gap` between the held
    /// bytes and these, the held ones are dropped and returned as [`Misaligned`]; these
    /// start the frame afresh.
    pub fn push(
        &mut self,
        bytes: &[u8],
        offset: u64,
        at: std::time::Duration,
        gap: std::time::Duration,
    ) -> Result<(), Misaligned> {
        let bytes = &bytes[..bytes.len().min(self.wants())];
        if bytes.is_empty() {
            return Ok(());
        }
        let mut dropped = None;
        let early_by = at.saturating_sub(self.held_at);
        if self.held_len > 0 && early_by > gap {
            dropped = Some(Misaligned {
                offset: self.held_offset,
                bytes: self.held,
                len: self.held_len,
                early_by,
            });
            self.held_len = 0;
        }
        if self.held_len == 0 {
            self.held_offset = offset;
        }
        self.held[self.held_len..self.held_len + bytes.len()].copy_from_slice(bytes);
        self.held_len += bytes.len();
        self.held_at = at;
        dropped.map_or(Ok(()), Err)
    }

    /// The next whole frame, decoded (2-byte counts masked to 14 bits), with its stream
    /// offset; `None` until one is complete.
    pub fn frame(&mut self) -> Option<(u64, u32)> {
        if self.wants() > 0 {
            return None;
        }
        self.held_len = 0;
        let bytes = &self.held[..self.width.bytes()];
        decode_count(bytes, self.width, true)
            .ok()
            .map(|v| (self.held_offset, v))
    }
}

/// A decoded GETVER reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The text as sent (printable ASCII only).
    pub text: String,
    /// The model class it names.
    pub class: ModelClass,
}

/// Decodes a GETVER reply: at least 7 printable ASCII bytes naming a known model.
pub fn decode_version(bytes: &[u8]) -> Result<Version, GmcError> {
    if bytes.len() < 7 {
        return Err(GmcError::Length {
            what: "GETVER",
            expected: 7,
            got: bytes.len(),
        });
    }
    if let Some(b) = bytes.iter().find(|b| !(0x20..0x7f).contains(*b)) {
        return Err(GmcError::Content {
            what: "GETVER",
            detail: format!("non-ASCII byte 0x{b:02x}; a running heartbeat or wrong baud rate?"),
        });
    }
    let text = String::from_utf8_lossy(bytes).into_owned();
    match ModelClass::detect(bytes) {
        Some(class) => Ok(Version { text, class }),
        None => Err(GmcError::UnknownModel(text)),
    }
}

/// Decodes GETVOLT: 1 byte volts×10 (RFC1201) or 5 ASCII bytes like `3.97v` (RFC1801).
pub fn decode_volts(bytes: &[u8]) -> Result<f32, GmcError> {
    match bytes {
        [v] => Ok(f32::from(*v) / 10.0),
        [d0, b'.', d1, d2, b'v' | b'V'] if [d0, d1, d2].iter().all(|d| d.is_ascii_digit()) => {
            Ok(f32::from(d0 - b'0') + f32::from((d1 - b'0') * 10 + (d2 - b'0')) / 100.0)
        }
        [_, _, _, _, _] => Err(GmcError::Content {
            what: "GETVOLT",
            detail: format!("not of the form d.ddv: {bytes:02x?}"),
        }),
        _ => Err(GmcError::Length {
            what: "GETVOLT",
            expected: 5,
            got: bytes.len(),
        }),
    }
}

/// Formats GETSERIAL's 7 raw bytes as 14 hex digits.
pub fn decode_serial(bytes: &[u8]) -> Result<String, GmcError> {
    if bytes.len() != 7 {
        return Err(GmcError::Length {
            what: "GETSERIAL",
            expected: 7,
            got: bytes.len(),
        });
    }
    let mut s = String::with_capacity(14);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    Ok(s)
}

/// Device clock from GETDATETIME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceClock {
    /// Full year (2000 + YY).
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl DeviceClock {
    /// From the six bytes GETDATETIME answers and SETDATETIME sends: `YY MM DD HH MM SS`
    /// (not range-checked).
    pub fn from_fields([yy, mo, dd, hh, mi, ss]: [u8; 6]) -> DeviceClock {
        DeviceClock {
            year: 2000 + u16::from(yy),
            month: mo,
            day: dd,
            hour: hh,
            minute: mi,
            second: ss,
        }
    }
}

impl std::fmt::Display for DeviceClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Decodes GETDATETIME: `YY MM DD HH MM SS 0xAA`, each field range-checked.
pub fn decode_datetime(bytes: &[u8]) -> Result<DeviceClock, GmcError> {
    let &[yy, mo, dd, hh, mi, ss, trailer] = bytes else {
        return Err(GmcError::Length {
            what: "GETDATETIME",
            expected: 7,
            got: bytes.len(),
        });
    };
    if trailer != ACK {
        return Err(GmcError::Content {
            what: "GETDATETIME",
            detail: format!("last byte 0x{trailer:02x}, expected 0xaa"),
        });
    }
    if yy > 99
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&dd)
        || hh > 23
        || mi > 59
        || ss > 59
    {
        return Err(GmcError::Content {
            what: "GETDATETIME",
            detail: format!("field out of range: {bytes:02x?}"),
        });
    }
    Ok(DeviceClock::from_fields([yy, mo, dd, hh, mi, ss]))
}

/// Encodes a clock as GETDATETIME answers it.
pub fn encode_datetime(c: &DeviceClock, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        (c.year.saturating_sub(2000)).min(99) as u8,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        ACK,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_order_decides_the_class() {
        let cases: [(&[u8], ModelClass, CountWidth); 9] = [
            (b"GMC-300Re 3.20", ModelClass::Gmc300, CountWidth::Two),
            (
                b"GMC-300E+Re 4.54",
                ModelClass::Gmc300EPlus,
                CountWidth::Two,
            ),
            (b"GMC-300SRe 1.03", ModelClass::Gmc300S, CountWidth::Two),
            (
                b"GMC-320+V5Re5.21",
                ModelClass::Gmc320PlusV5,
                CountWidth::Two,
            ),
            (b"GMC-320Re 4.26", ModelClass::Gmc320, CountWidth::Two),
            (b"GMC-500+Re 2.22", ModelClass::Gmc500Plus, CountWidth::Four),
            (b"GMC-600+Re 1.14", ModelClass::Gmc600Plus, CountWidth::Four),
            (b"GMC-600Re 1.10", ModelClass::Gmc600, CountWidth::Four),
            (b"GMC-800Re1.10 ", ModelClass::Gmc800, CountWidth::Four),
        ];
        for (v, class, width) in cases {
            let got = decode_version(v).unwrap();
            assert_eq!(got.class, class, "{}", got.text);
            assert_eq!(class.count_width(), width);
        }
        assert_eq!(ModelClass::Gmc800.config_bytes(), 512);
        assert_eq!(ModelClass::Gmc320.config_bytes(), 256);
        assert!(matches!(
            decode_version(b"GMC-999Re 1.00"),
            Err(GmcError::UnknownModel(_))
        ));
    }

    #[test]
    fn counts_decode_big_endian_with_14_bit_heartbeat_mask() {
        assert_eq!(decode_count(&[0x00, 0x1C], CountWidth::Two, false), Ok(28));
        assert_eq!(
            decode_count(&[0, 0, 0, 0x1C], CountWidth::Four, false),
            Ok(28)
        );
        assert_eq!(decode_count(&[0xC0, 0x1C], CountWidth::Two, true), Ok(28));
        assert_eq!(
            decode_count(&[0xC0, 0x1C], CountWidth::Two, false),
            Ok(0xC01C)
        );
        assert!(decode_count(&[0, 0, 0x1C], CountWidth::Four, false).is_err());
        let mut out = Vec::new();
        encode_count(28, CountWidth::Two, 0xC000, &mut out);
        assert_eq!(out, [0xC0, 0x1C]);
    }

    #[test]
    fn volts_serial_and_clock() {
        assert_eq!(decode_volts(&[0x62]), Ok(9.8));
        assert!((decode_volts(b"3.97v").unwrap() - 3.97).abs() < 1e-6);
        assert!(decode_volts(b"3x97v").is_err());
        assert_eq!(
            decode_serial(&[0xF4, 0x88, 0x00, 0x45, 0x1A, 0x9B, 0x0E]).unwrap(),
            "F48800451A9B0E"
        );
        let c = decode_datetime(&[24, 6, 30, 23, 59, 58, 0xAA]).unwrap();
        assert_eq!(c.to_string(), "2024-06-30T23:59:58");
        assert!(decode_datetime(&[24, 13, 30, 23, 59, 58, 0xAA]).is_err());
        assert!(decode_datetime(&[24, 6, 30, 23, 59, 58, 0xAB]).is_err());
        let mut out = Vec::new();
        encode_datetime(&c, &mut out);
        assert_eq!(out, [24, 6, 30, 23, 59, 58, 0xAA]);
    }

    /// Feeds `bursts` (bytes arriving together at a time in ms, offsets counted on) the way
    /// the driver does, at most `wants()` bytes at a time; returns the counts and the
    /// dropped fragments as (offset, bytes).
    fn frame_bursts(width: CountWidth, bursts: &[(u64, &[u8])]) -> (Vec<u32>, Vec<(u64, Vec<u8>)>) {
        use std::time::Duration;
        let mut f = HeartbeatFramer::new(width);
        let (mut counts, mut dropped) = (Vec::new(), Vec::new());
        let mut offset = 0u64;
        for &(ms, burst) in bursts {
            let mut rest = burst;
            while !rest.is_empty() {
                let n = f.wants().min(rest.len());
                let at = Duration::from_millis(ms);
                if let Err(m) = f.push(&rest[..n], offset, at, HeartbeatFramer::GAP) {
                    dropped.push((m.offset, m.bytes[..m.len].to_vec()));
                }
                offset += n as u64;
                rest = &rest[n..];
                if let Some((_, v)) = f.frame() {
                    counts.push(v);
                }
            }
        }
        (counts, dropped)
    }

    /// The tester's stream: cps 3, 4, then a stray 0x55 right after the second frame, then
    /// 5, 6, 7, 3, one frame a second, reserved bits set. The stray byte straddles the pause
    /// before the third heartbeat: it alone is dropped, at its offset, and no count is
    /// wrong. A stray byte that arrives together with the next frame costs that one frame
    /// (the documented limit) and is caught at the next pause.
    #[test]
    fn heartbeat_framer_resyncs_on_the_pause_after_a_stray_byte() {
        let two = CountWidth::Two;
        let f = |v: u16| (v | 0xC000).to_be_bytes();
        let (b3, b4, b5, b6, b7) = (f(3), f(4), f(5), f(6), f(7));
        let stray_after = [b4[0], b4[1], 0x55];
        let bursts: [(u64, &[u8]); 6] = [
            (1000, &b3),
            (2000, &stray_after),
            (3000, &b5),
            (4000, &b6),
            (5000, &b7),
            (6000, &b3),
        ];
        let (counts, dropped) = frame_bursts(two, &bursts);
        assert_eq!(counts, [3, 4, 5, 6, 7, 3]);
        assert_eq!(dropped, [(4, vec![0x55])]);
        // The stray byte alone, 10 ms after its frame: the same.
        let bursts: [(u64, &[u8]); 4] = [(1000, &b3), (2000, &b4), (2010, &[0x55]), (3000, &b5)];
        let (counts, dropped) = frame_bursts(two, &bursts);
        assert_eq!(counts, [3, 4, 5]);
        assert_eq!(dropped, [(4, vec![0x55])]);
        // Together with the next frame: one wrong frame, then in step from the next pause.
        let stray_before = [0x55, b5[0], b5[1]];
        let bursts: [(u64, &[u8]); 4] =
            [(1000, &b3), (2000, &stray_before), (3000, &b6), (4000, &b7)];
        let (counts, dropped) = frame_bursts(two, &bursts);
        let glued = u32::from(u16::from_be_bytes([0x55, b5[0]]) & HEARTBEAT14_MASK);
        assert_eq!(counts, [3, glued, 6, 7]);
        assert_eq!(dropped, [(4, vec![b5[1]])]);
        // A lost byte: the frame's lone half is dropped, not glued to the next frame.
        let bursts: [(u64, &[u8]); 3] = [(1000, &b3), (2000, &b4[..1]), (3000, &b5)];
        let (counts, dropped) = frame_bursts(two, &bursts);
        assert_eq!(counts, [3, 5]);
        assert_eq!(dropped, [(2, vec![b4[0]])]);
        // 4-byte frames, several read together after a slow read: no false alarm.
        let mut late = Vec::new();
        for v in [9u32, 10, 11] {
            late.extend_from_slice(&v.to_be_bytes());
        }
        let bursts: [(u64, &[u8]); 2] = [(1000, &8u32.to_be_bytes()), (4000, &late)];
        let (counts, dropped) = frame_bursts(CountWidth::Four, &bursts);
        assert_eq!(counts, [8, 9, 10, 11]);
        assert!(dropped.is_empty());
    }

    proptest! {
        #![proptest_config(crate::testing::fixed_seed(0x6d630001))]

        #[test]
        fn garbage_never_panics_and_never_counts_wrong_sizes(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_version(&bytes);
            let _ = decode_volts(&bytes);
            let _ = decode_serial(&bytes);
            let _ = decode_datetime(&bytes);
            for w in [CountWidth::Two, CountWidth::Four] {
                let r = decode_count(&bytes, w, true);
                prop_assert_eq!(r.is_ok(), bytes.len() == w.bytes());
            }
        }
    }
}
