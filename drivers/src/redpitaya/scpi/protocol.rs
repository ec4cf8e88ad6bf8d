//! The Red Pitaya's official SCPI server (HARDWARE.md Part 2, section S), pure: the command
//! lines the driver sends, the text replies it reads, and the IEEE-488.2 binary block
//! (`#<d><len><data>`) that carries a channel's samples. No I/O here.
//!
//! Guarantees: every command is one line ending in `\r\n`; a block header is parsed from at
//! most 2 + 9 bytes and its payload length is checked against what was asked, so a reply of
//! the wrong size is an error before any payload is taken as samples. Must never: accept a
//! sample outside the 14-bit range as data.

use super::super::protocol::{Input, Slope, TriggerMode, ADC_MAX, ADC_MIN};
use std::fmt;

/// The SCPI server's TCP port.
pub const PORT: u16 = 5000;
/// Samples per channel in the acquisition buffer (`ACQ:BUF:SIZE?`).
pub const BUFFER_SAMPLES: u32 = 16384;
/// Post-trigger samples with `ACQ:TRig:DLY 0`: the trigger sits in the middle of the buffer.
pub const DELAY_ZERO_POST: i64 = 8192;
/// The line end of commands and text replies.
pub const EOL: &[u8] = b"\r\n";
/// Longest text reply the driver accepts (a number, `TD`, `WAIT`, an `*IDN?` string).
pub const MAX_LINE: usize = 256;

/// What went wrong in a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScpiError {
    /// A binary block did not start with `#` and a digit 1 … 9.
    #[error("not a binary block: starts with {0:?} (expected '#' and a digit 1 … 9)")]
    NotABlock(String),
    /// The length digits were not digits.
    #[error("binary block length {0:?} is not a number")]
    BadLength(String),
    /// The block holds another number of bytes than asked for.
    #[error("binary block of {got} bytes where {want} were asked for")]
    WrongSize {
        /// Bytes announced.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// A sample outside the 14-bit range.
    #[error("sample {index} is {value}, outside the 14-bit range −8192 … 8191")]
    OutOfRange {
        /// Sample index in the block.
        index: usize,
        /// Its value.
        value: i16,
    },
    /// The block did not end with `\r\n`.
    #[error("binary block not followed by \\r\\n")]
    NoEnd,
    /// A text reply that is not one of the expected ones.
    #[error("unexpected reply {0:?} to {1}")]
    Unexpected(String, &'static str),
}

/// The trigger source word of `ACQ:TRig`: `CH1_PE`, `CH2_NE`, … or `NOW` for auto.
pub fn trigger_source(input: Input, slope: Slope, mode: TriggerMode) -> &'static str {
    match (mode, input, slope) {
        (TriggerMode::Auto, _, _) => "NOW",
        (_, Input::In1, Slope::Rising) => "CH1_PE",
        (_, Input::In1, Slope::Falling) => "CH1_NE",
        (_, Input::In2, Slope::Rising) => "CH2_PE",
        (_, Input::In2, Slope::Falling) => "CH2_NE",
    }
}

/// `ACQ:TRig:DLY` for `pre` samples before the trigger in a window of `samples`: the board
/// writes 8192 + delay samples from the trigger on, so this leaves exactly `samples − pre`
/// after it (trigger sample included) [unverified: the off-by-one of the board's count].
pub fn trigger_delay(samples: u32, pre: u32) -> i64 {
    i64::from(samples) - i64::from(pre) - DELAY_ZERO_POST
}

/// The first buffer index of a window of `pre` samples before the trigger at `tpos`.
pub fn window_start(tpos: u32, pre: u32) -> u32 {
    (tpos + BUFFER_SAMPLES - pre % BUFFER_SAMPLES) % BUFFER_SAMPLES
}

/// The setup lines sent once per connection, in order: reset, decimation, raw little-endian
/// binary data, trigger level (volts) and delay.
pub fn setup_lines(decimation: u32, level_volts: f64, delay: i64) -> Vec<String> {
    vec![
        "ACQ:RST".into(),
        format!("ACQ:DEC {decimation}"),
        "ACQ:DATA:Units RAW".into(),
        "ACQ:DATA:FORMAT BIN".into(),
        "ACQ:DATA:BYTE:ORDER LEND".into(),
        format!("ACQ:TRig:LEV {level_volts}"),
        format!("ACQ:TRig:DLY {delay}"),
    ]
}

/// The read of `n` samples of `input` from buffer index `start` (wrapping at the end).
pub struct DataQuery {
    /// Input read.
    pub input: Input,
    /// First buffer index.
    pub start: u32,
    /// Samples.
    pub n: u32,
}

impl fmt::Display for DataQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ch = match self.input {
            Input::In1 => 1,
            Input::In2 => 2,
        };
        write!(f, "ACQ:SOUR{ch}:DATA:STArt:N? {},{}", self.start, self.n)
    }
}

/// Parses the start of a binary block in `head` (which holds at least 2 bytes): `Ok(None)`
/// when more bytes are needed for the length digits, else (header bytes, payload bytes).
pub fn block_header(head: &[u8]) -> Result<Option<(usize, usize)>, ScpiError> {
    if head.len() < 2 {
        return Ok(None);
    }
    let d = head[1];
    if head[0] != b'#' || !(b'1'..=b'9').contains(&d) {
        return Err(ScpiError::NotABlock(
            String::from_utf8_lossy(&head[..2]).into_owned(),
        ));
    }
    let digits = usize::from(d - b'0');
    if head.len() < 2 + digits {
        return Ok(None);
    }
    let text = &head[2..2 + digits];
    let len = std::str::from_utf8(text)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<usize>().ok())
        .ok_or_else(|| ScpiError::BadLength(String::from_utf8_lossy(text).into_owned()))?;
    Ok(Some((2 + digits, len)))
}

/// A binary block carrying `payload`: `#`, the digit count, the length, the bytes, `\r\n`.
pub fn encode_block(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len().to_string();
    out.push(b'#');
    out.extend_from_slice(len.len().to_string().as_bytes());
    out.extend_from_slice(len.as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(EOL);
}

/// Checks that every int16 LE sample of `payload` is in the 14-bit range.
pub fn check_samples(payload: &[u8]) -> Result<(), ScpiError> {
    for (index, c) in payload.chunks_exact(2).enumerate() {
        let value = i16::from_le_bytes([c[0], c[1]]);
        if !(ADC_MIN..=ADC_MAX).contains(&value) {
            return Err(ScpiError::OutOfRange { index, value });
        }
    }
    Ok(())
}

/// `ACQ:TRig:STAT?`: true when triggered (`TD`), false while waiting (`WAIT`).
pub fn triggered(reply: &[u8]) -> Result<bool, ScpiError> {
    match reply {
        b"TD" => Ok(true),
        b"WAIT" => Ok(false),
        r => Err(ScpiError::Unexpected(
            String::from_utf8_lossy(r).into_owned(),
            "ACQ:TRig:STAT?",
        )),
    }
}

/// A whole number reply (`ACQ:TPOS?`, `ACQ:TRig:FILL?`).
pub fn number(reply: &[u8], to: &'static str) -> Result<u32, ScpiError> {
    std::str::from_utf8(reply)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ScpiError::Unexpected(String::from_utf8_lossy(reply).into_owned(), to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_headers_and_payload_lengths() {
        let mut b = Vec::new();
        encode_block(&[1, 0, 2, 0], &mut b);
        assert_eq!(b, b"#14\x01\x00\x02\x00\r\n");
        assert_eq!(block_header(&b).unwrap(), Some((3, 4)));
        let mut big = Vec::new();
        encode_block(&vec![0u8; 32768], &mut big);
        assert_eq!(&big[..7], b"#532768");
        assert_eq!(block_header(&big[..7]).unwrap(), Some((7, 32768)));
        // Not enough bytes for the digits yet.
        assert_eq!(block_header(b"#53276").unwrap(), None);
        assert!(matches!(
            block_header(b"{1,2}"),
            Err(ScpiError::NotABlock(_))
        ));
        assert!(matches!(block_header(b"#0"), Err(ScpiError::NotABlock(_))));
        assert!(matches!(
            block_header(b"#2x4"),
            Err(ScpiError::BadLength(_))
        ));
    }

    #[test]
    fn samples_triggers_and_windows() {
        assert!(check_samples(&8191i16.to_le_bytes()).is_ok());
        assert_eq!(
            check_samples(&[0, 0, 0, 0x20]),
            Err(ScpiError::OutOfRange {
                index: 1,
                value: 8192
            })
        );
        assert_eq!(
            trigger_source(Input::In2, Slope::Falling, TriggerMode::Normal),
            "CH2_NE"
        );
        assert_eq!(
            trigger_source(Input::In1, Slope::Rising, TriggerMode::Auto),
            "NOW"
        );
        assert_eq!(trigger_delay(1000, 100), 900 - 8192);
        assert_eq!(window_start(50, 100), 16334);
        assert_eq!(window_start(500, 100), 400);
        assert!(triggered(b"TD").unwrap());
        assert!(!triggered(b"WAIT").unwrap());
        assert!(triggered(b"ERR").is_err());
        assert_eq!(number(b"16383", "ACQ:TPOS?").unwrap(), 16383);
        assert_eq!(
            DataQuery {
                input: Input::In2,
                start: 16334,
                n: 1000
            }
            .to_string(),
            "ACQ:SOUR2:DATA:STArt:N? 16334,1000"
        );
        assert_eq!(
            setup_lines(8, 0.0125, -7292)[..2],
            ["ACQ:RST".to_string(), "ACQ:DEC 8".to_string()]
        );
    }
}
