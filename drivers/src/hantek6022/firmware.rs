//! FX2 (EZ-USB) firmware: reading an image from Intel-HEX or a raw binary (`.fw`, `.bin`,
//! as sigrok's fx2lafw package ships it) and uploading it over vendor request 0xA0.
//!
//! Guarantees: a bad HEX record is reported with file and line and nothing is uploaded; an
//! image never addresses beyond 0xFFFF; the upload holds the CPU (0xE600 = 1), writes the
//! image in ascending address order in chunks of at most 4096 bytes, then releases the CPU
//! (0xE600 = 0). Must never upload a partially parsed image.

use std::path::Path;

use super::protocol::{Setup, CONTROL_TIMEOUT, CPUCS_ADDRESS, FIRMWARE_CHUNK, REQ_FIRMWARE_RAM};
use crate::usb::{UsbError, UsbTransport};

/// Why a firmware image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The file could not be read.
    #[error("{path}: cannot read firmware: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An Intel-HEX record is malformed.
    #[error("{path}:{line}: bad Intel-HEX record: {detail}")]
    Hex {
        /// File.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The image is empty or does not fit the FX2's 64 KiB address space.
    #[error("{path}: {detail}")]
    Image {
        /// File.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// A firmware image: contiguous runs of bytes at FX2 RAM addresses, ascending, not
/// overlapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareImage {
    /// (start address, bytes) runs.
    pub segments: Vec<(u16, Vec<u8>)>,
}

impl FirmwareImage {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|(_, d)| d.len()).sum()
    }

    /// True if the image holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The RAM writes of an upload: (address, ≤ 4096 bytes), ascending.
    pub fn chunks(&self) -> impl Iterator<Item = (u16, &[u8])> + '_ {
        self.segments.iter().flat_map(|(start, data)| {
            data.chunks(FIRMWARE_CHUNK)
                .enumerate()
                .map(move |(i, c)| (start + (i * FIRMWARE_CHUNK) as u16, c))
        })
    }

    /// A raw binary image loaded at address 0 (fx2lafw `.fw` files).
    pub fn from_binary(bytes: &[u8], path: &str) -> Result<FirmwareImage, FirmwareError> {
        if bytes.is_empty() {
            return Err(FirmwareError::Image {
                path: path.into(),
                detail: "file is empty".into(),
            });
        }
        if bytes.len() > 0x10000 {
            return Err(FirmwareError::Image {
                path: path.into(),
                detail: format!(
                    "{} bytes do not fit the FX2's 64 KiB address space",
                    bytes.len()
                ),
            });
        }
        Ok(FirmwareImage {
            segments: vec![(0, bytes.to_vec())],
        })
    }

    /// Parses Intel-HEX text (records 00 data, 01 end, 02/04 extended address, 03/05 start
    /// address, ignored). The end record is required: a file without it is truncated.
    pub fn from_intel_hex(text: &str, path: &str) -> Result<FirmwareImage, FirmwareError> {
        let bad = |line: usize, detail: String| FirmwareError::Hex {
            path: path.into(),
            line,
            detail,
        };
        let mut memory = vec![0u8; 0x10000];
        let mut written = vec![false; 0x10000];
        let mut base: u32 = 0;
        let mut ended = false;
        for (n, raw_line) in text.lines().enumerate() {
            let line = n + 1;
            let record = raw_line.trim();
            if record.is_empty() {
                continue;
            }
            if ended {
                return Err(bad(line, "data after the end-of-file record".into()));
            }
            let Some(hex) = record.strip_prefix(':') else {
                return Err(bad(line, "record does not start with ':'".into()));
            };
            if !hex.len().is_multiple_of(2) || hex.len() < 10 {
                return Err(bad(
                    line,
                    format!(
                        "{} hex digits; a record needs an even number ≥ 10",
                        hex.len()
                    ),
                ));
            }
            let mut bytes = Vec::with_capacity(hex.len() / 2);
            for i in (0..hex.len()).step_by(2) {
                let pair = hex
                    .get(i..i + 2)
                    .ok_or_else(|| bad(line, "non-ASCII character".into()))?;
                let b = u8::from_str_radix(pair, 16)
                    .map_err(|_| bad(line, format!("'{pair}' at column {} is not hex", i + 2)))?;
                bytes.push(b);
            }
            let count = bytes[0] as usize;
            if bytes.len() != count + 5 {
                return Err(bad(
                    line,
                    format!(
                        "byte count says {count} data bytes, record has {}",
                        bytes.len() - 5
                    ),
                ));
            }
            let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            if sum != 0 {
                return Err(bad(
                    line,
                    format!("checksum wrong (sum of bytes is 0x{sum:02x}, must be 0)"),
                ));
            }
            let offset = u16::from_be_bytes([bytes[1], bytes[2]]) as u32;
            let data = &bytes[4..4 + count];
            match bytes[3] {
                0x00 => {
                    let start = base + offset;
                    let end = start + count as u32;
                    if end > 0x10000 {
                        return Err(bad(
                            line,
                            format!("data at 0x{start:x}..0x{end:x} beyond the FX2's 64 KiB"),
                        ));
                    }
                    for (i, b) in data.iter().enumerate() {
                        memory[start as usize + i] = *b;
                        written[start as usize + i] = true;
                    }
                }
                0x01 => ended = true,
                0x02 if count == 2 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 4,
                0x04 if count == 2 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 16,
                0x03 | 0x05 => {}
                t => {
                    return Err(bad(
                        line,
                        format!("record type 0x{t:02x} with {count} data bytes is not valid"),
                    ))
                }
            }
        }
        if !ended {
            return Err(FirmwareError::Image {
                path: path.into(),
                detail: "no end-of-file record (':00000001FF'): file truncated?".into(),
            });
        }
        let mut segments = Vec::new();
        let mut i = 0usize;
        while i < written.len() {
            if !written[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < written.len() && written[i] {
                i += 1;
            }
            segments.push((start as u16, memory[start..i].to_vec()));
        }
        if segments.is_empty() {
            return Err(FirmwareError::Image {
                path: path.into(),
                detail: "no data records".into(),
            });
        }
        Ok(FirmwareImage { segments })
    }

    /// Reads a firmware file: Intel-HEX if it ends in `.hex`/`.ihx` or starts with ':',
    /// otherwise a raw binary loaded at address 0.
    pub fn load(path: &Path) -> Result<FirmwareImage, FirmwareError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| FirmwareError::Io {
            path: name.clone(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ext == "hex" || ext == "ihx" || bytes.first() == Some(&b':') {
            let text = String::from_utf8(bytes).map_err(|e| FirmwareError::Image {
                path: name.clone(),
                detail: format!(
                    "Intel-HEX file is not text (byte {} is not UTF-8)",
                    e.utf8_error().valid_up_to()
                ),
            })?;
            FirmwareImage::from_intel_hex(&text, &name)
        } else {
            FirmwareImage::from_binary(&bytes, &name)
        }
    }
}

fn write_ram<T: UsbTransport + ?Sized>(
    transport: &mut T,
    address: u16,
    data: &[u8],
) -> Result<(), UsbError> {
    let n = transport.control_out(
        Setup::vendor_out(REQ_FIRMWARE_RAM).with_value(address),
        data,
        CONTROL_TIMEOUT,
    )?;
    if n != data.len() {
        return Err(UsbError::Other(format!(
            "firmware write at 0x{address:04x}: device took {n} of {} bytes",
            data.len()
        )));
    }
    Ok(())
}

/// Uploads `image` to a cold FX2: hold CPU, write every chunk, release CPU. Returns the
/// number of control transfers sent. The device re-enumerates afterwards.
pub fn upload<T: UsbTransport + ?Sized>(
    transport: &mut T,
    image: &FirmwareImage,
) -> Result<usize, UsbError> {
    write_ram(transport, CPUCS_ADDRESS, &[1])?;
    let mut transfers = 1;
    for (address, chunk) in image.chunks() {
        write_ram(transport, address, chunk)?;
        transfers += 1;
    }
    write_ram(transport, CPUCS_ADDRESS, &[0])?;
    Ok(transfers + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_records_merge_into_segments() {
        let text = ":0300000002000BF0\n:02000300AA55FC\n:01100000EE01\n:00000001FF\n";
        let image = FirmwareImage::from_intel_hex(text, "t.hex").unwrap();
        assert_eq!(
            image.segments,
            vec![
                (0, vec![0x02, 0x00, 0x0B, 0xAA, 0x55]),
                (0x1000, vec![0xEE])
            ]
        );
    }

    #[test]
    fn bad_checksum_names_file_and_line() {
        let text = ":0300000002000BF0\n:02000300AA55FD\n:00000001FF\n";
        let err = FirmwareImage::from_intel_hex(text, "fw.hex").unwrap_err();
        assert!(err.to_string().starts_with("fw.hex:2: "), "{err}");
    }

    #[test]
    fn missing_end_record_is_an_error() {
        let err = FirmwareImage::from_intel_hex(":0300000002000BF0\n", "fw.hex").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn binary_chunks_are_at_most_4096_bytes() {
        let image = FirmwareImage::from_binary(&vec![7u8; 9000], "x.fw").unwrap();
        let chunks: Vec<(u16, usize)> = image.chunks().map(|(a, c)| (a, c.len())).collect();
        assert_eq!(chunks, vec![(0, 4096), (4096, 4096), (8192, 808)]);
    }
}
