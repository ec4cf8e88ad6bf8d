//! The calibration a PSI DRS4 evaluation board keeps in its on-board EEPROM, in the layout
//! PSI's DRS library reads (`DRSBoard::ReadCalibration` and `DRSBoard::ReadEEPROM` in
//! `DRS.cpp`, drs-5.0.x; copy in `Yonghao-Zeng/drs4:src/DRS.cpp`).
//!
//! Facts used (all from that file unless marked):
//! - The driver selects an EEPROM page in `REG_EEPROM_PAGE_EVAL` (0x1E), sets the
//!   self-clearing control bit EEPROM-read (bit 4), polls `REG_STATUS` until `SERIAL_BUSY`
//!   (bit 5) clears (PSI: up to 100 polls, 10 ms apart), then reads the page from the start
//!   of the board's RAM space (wire address 0x40000). Pages hold up to 32 KiB
//!   (`WriteEEPROM` merges into a 32768-byte buffer).
//! - All numbers are little-endian 16-bit words (the library reads them into `unsigned
//!   short` on little-endian hosts).
//! - Page 0 starts with the board serial number (bytes 0–1, `SetBoardSerialNumber`).
//! - Board type 9: byte 4 = voltage calibration method (2 = valid), byte 5 = timing
//!   calibration method (2 = valid), word 4 (bytes 8–9) = number of timing calibrations
//!   (1), bytes 16–19 = the frequency the timing calibration was taken at (IEEE float, GHz),
//!   byte 20 = calibrated range centre × 100 (written as a signed char, read back
//!   unsigned), byte 21 = temperature × 2 (°C, rounded) at calibration, word 11 (bytes
//!   22–23) = 1 (pages 1 and 2 written). `DRSBoard::CalibrateVolt` / `CalibrateTiming`
//!   write exactly these.
//! - Board types 5, 7, 8: byte 4 = voltage method (1 = valid), byte 5 = range centre × 100,
//!   word 4 (bytes 8–9) = timing method (1 = valid), word 6 (bytes 12–13) = timing
//!   frequency in MHz, rounded.
//! - Page 1 (both): for DRS channel c (0–7) and cell k, word 2(1024c + k) is the cell's
//!   offset in ADC counts and the next word its gain code, gain = code / 65535 × 0.4 + 0.7.
//!   PSI calibrates `(adc − offset) / gain − (offset2 − 32768)`, in units of 1/65536 V
//!   (0.1 mV × 65536/10000), so the offset is the cell's ADC code at 0 V input with the
//!   range centre the calibration was taken at.
//! - Page 2, type 9: word 2(1024c + j) is the secondary offset `offset2` of readout
//!   position j, the next word the width of physical cell j of channel c:
//!   (code − 1000) / 10000 ns — shifted by 1000 "to allow negative widths"; PSI rounds the
//!   running sum of the widths, so their sum keeps the revolution exact.
//! - Page 2, types 5/7/8: words 0–2047 hold the clock channel's offset/gain; from word 2048
//!   on, word 2048 + 2(1024i + j) is `offset2` of channel 2i, the next word that of channel
//!   2i + 1. Cell widths are shared by all channels: page 0 word 2j + 1, code / 10000 ns.
//! - Reads PSI makes: type 9 page 0 (4096 bytes), page 1 (32768), page 2 (32768); types
//!   5/7/8 page 0 (32, then 4096 for the widths — this driver reads 4096 once), page 1
//!   (32768), page 2 (20480).
//!
//! How the four inputs map: input n is DRS channel 2n (`protocol::INPUT_CHANNEL`); the time
//! axis uses the widths of channel 0 (PSI aligns every channel's time to channel 0).
//! In this crate's model (`calibration`), gain g = 1 / gain_PSI and the offset is the code
//! at the bottom of the input range: offset = offset_PSI − (0.5 − centre_cal) × 65536 ×
//! gain_PSI; the readout offset is offset2 − 32768.
//!
//! A stored offset of 0 marks a stuck cell (PSI's "stuck pixel": its pedestal was below 100
//! counts at calibration); PSI replaces its samples by the mean of the readout neighbours,
//! and the decoder lists it in `Drs4Calibration::stuck_cells` so the driver does the same.
//! PSI's writer truncates
//! the gain code; the encoder here rounds (it serves the simulator, whose true tables are
//! the decoded ones, so both sides agree byte for byte either way).
//!
//! Guarantees: decoding is pure and never panics on any bytes; it returns either a typed
//! error naming the page and byte offset, or a calibration whose numbers are all finite,
//! gains within what the format can hold, cell widths no longer than five nominal cells
//! (negative down to −0.1 ns only where the format allows it, type 9) and adding up to one
//! domino revolution at the calibrated frequency within 10 %. Must never do I/O; [`encode`]
//! exists for the simulator and must never be used to write a real board's EEPROM.

use super::calibration::Drs4Calibration;
use super::protocol::{CELLS, INPUT_CHANNEL};

/// Bytes of one EEPROM page.
pub const PAGE_BYTES: usize = 32768;
/// DRS channels with cell calibration in page 1.
pub const CALIBRATED_CHANNELS: usize = 8;
/// Byte offset of the serial number in page 0.
pub const SERIAL_AT: usize = 0;
/// Byte offset of the voltage calibration method in page 0.
pub const VOLTAGE_METHOD_AT: usize = 4;

/// The gain code's scale: gain = code / 65535 × `GAIN_SPAN` + `GAIN_MIN`.
pub const GAIN_MIN: f64 = 0.7;
/// See [`GAIN_MIN`].
pub const GAIN_SPAN: f64 = 0.4;
/// Cell widths are stored in units of 0.1 ps.
pub const WIDTH_UNITS_PER_NS: f64 = 10000.0;
/// Board type 9 adds this to the width code.
pub const WIDTH_CODE_OFFSET_TYPE9: f64 = 1000.0;
/// The readout offset is stored around this code.
pub const READOUT_OFFSET_ZERO: f64 = 32768.0;
/// The largest range centre a header may hold (0.5 V, the highest this driver sets).
/// PSI writes the centre × 100 as a signed char but reads the byte unsigned, so a negative
/// centre would come back as 156…255; such bytes (and anything else above 50) are refused.
pub const MAX_RANGE_CENTRE_CODE: u8 = 50;

/// Which EEPROM layout a board uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EepromLayout {
    /// Evaluation boards of type 5, 7 and 8 (voltage/timing method 1).
    BoardType8,
    /// Evaluation board type 9 (method 2, per-channel cell widths).
    BoardType9,
}

impl EepromLayout {
    /// The layout of a board type this driver reads, if any.
    pub fn of_board_type(board_type: u8) -> Option<Self> {
        match board_type {
            8 => Some(EepromLayout::BoardType8),
            9 => Some(EepromLayout::BoardType9),
            _ => None,
        }
    }

    /// Board type for messages.
    pub fn board_type(self) -> u8 {
        match self {
            EepromLayout::BoardType8 => 8,
            EepromLayout::BoardType9 => 9,
        }
    }

    /// The method byte that marks a valid voltage calibration.
    pub fn voltage_method(self) -> u8 {
        match self {
            EepromLayout::BoardType8 => 1,
            EepromLayout::BoardType9 => 2,
        }
    }

    /// The method byte that marks a valid timing calibration.
    pub fn timing_method(self) -> u8 {
        self.voltage_method()
    }

    /// Byte offset of the timing method in page 0.
    pub fn timing_method_at(self) -> usize {
        match self {
            EepromLayout::BoardType8 => 8,
            EepromLayout::BoardType9 => 5,
        }
    }

    /// Byte offset of the timing frequency in page 0 (u16 MHz for type 8, f32 GHz for 9).
    pub fn timing_frequency_at(self) -> usize {
        match self {
            EepromLayout::BoardType8 => 12,
            EepromLayout::BoardType9 => 16,
        }
    }

    /// Byte offset of the range centre × 100 in page 0.
    pub fn range_at(self) -> usize {
        match self {
            EepromLayout::BoardType8 => 5,
            EepromLayout::BoardType9 => 20,
        }
    }

    /// Byte offset of the temperature × 2 in page 0 (type 9 only).
    pub fn temperature_at(self) -> Option<usize> {
        match self {
            EepromLayout::BoardType8 => None,
            EepromLayout::BoardType9 => Some(21),
        }
    }

    /// The page reads a calibration takes, in order: (page, bytes).
    pub fn reads(self) -> [(u16, usize); 3] {
        match self {
            EepromLayout::BoardType8 => [(0, 4096), (1, PAGE_BYTES), (2, 20480)],
            EepromLayout::BoardType9 => [(0, 4096), (1, PAGE_BYTES), (2, PAGE_BYTES)],
        }
    }

    /// Byte offset in page 2 of the readout offset of `channel` at readout position `j`.
    pub fn readout_offset_at(self, channel: usize, j: usize) -> usize {
        match self {
            EepromLayout::BoardType8 => 4096 + 4 * ((channel / 2) * CELLS + j) + 2 * (channel % 2),
            EepromLayout::BoardType9 => 4 * (channel * CELLS + j),
        }
    }

    /// (page, byte offset) of the width of physical cell `k` (channel 0 for type 9).
    pub fn width_at(self, k: usize) -> (u16, usize) {
        match self {
            EepromLayout::BoardType8 => (0, 4 * k + 2),
            EepromLayout::BoardType9 => (2, 4 * k + 2),
        }
    }

    fn width_ns(self, code: u16) -> f64 {
        match self {
            EepromLayout::BoardType8 => code as f64 / WIDTH_UNITS_PER_NS,
            EepromLayout::BoardType9 => {
                (code as f64 - WIDTH_CODE_OFFSET_TYPE9) / WIDTH_UNITS_PER_NS
            }
        }
    }

    fn width_code(self, ns: f64) -> f64 {
        match self {
            EepromLayout::BoardType8 => (ns * WIDTH_UNITS_PER_NS).round(),
            EepromLayout::BoardType9 => (ns * WIDTH_UNITS_PER_NS + WIDTH_CODE_OFFSET_TYPE9).round(),
        }
    }
}

/// Byte offset in page 1 of the offset of `channel`'s physical cell `k` (its gain code
/// follows at +2).
pub fn cell_at(channel: usize, k: usize) -> usize {
    4 * (channel * CELLS + k)
}

/// Gain of a stored gain code.
pub fn gain_of_code(code: u16) -> f64 {
    code as f64 / 65535.0 * GAIN_SPAN + GAIN_MIN
}

/// Why EEPROM bytes were not taken as a calibration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EepromError {
    /// The method byte says there is no voltage calibration (a blank or never-calibrated
    /// board).
    #[error(
        "EEPROM page 0 byte {offset}: voltage calibration method {found} (0x{found:02X}), \
         a calibrated type-{board_type} board has {expected}: the board is not calibrated"
    )]
    NotCalibrated {
        /// Board type whose layout was read.
        board_type: u8,
        /// Byte offset in page 0.
        offset: usize,
        /// Method byte found.
        found: u8,
        /// Method byte of a valid calibration.
        expected: u8,
    },
    /// A page is shorter than the layout needs.
    #[error("EEPROM page {page}: {got} bytes, the type-{board_type} layout needs {needed}")]
    Truncated {
        /// Board type whose layout was read.
        board_type: u8,
        /// Page number.
        page: u16,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// A value is outside what a calibration can hold.
    #[error("EEPROM page {page} byte {offset}: {detail}")]
    OutOfRange {
        /// Page number.
        page: u16,
        /// Byte offset in the page.
        offset: usize,
        /// What was found and what is allowed.
        detail: String,
    },
}

/// The header of page 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EepromHeader {
    /// Layout read.
    pub layout: EepromLayout,
    /// Serial number stored in the EEPROM.
    pub serial: u16,
    /// Range centre (V) the voltage calibration was taken at.
    pub range_centre: f64,
    /// Board temperature (°C) at calibration, where the layout stores it.
    pub temperature_c: Option<f64>,
    /// Sampling frequency (GHz) of the timing calibration, if there is a valid one.
    pub timing_ghz: Option<f64>,
}

/// A calibration read from EEPROM pages.
#[derive(Clone, Debug, PartialEq)]
pub struct EepromCalibration {
    /// What page 0 says.
    pub header: EepromHeader,
    /// The tables in this crate's model; `cell_width_ns` is set when the header has a valid
    /// timing calibration (whether it fits the running frequency is the driver's call).
    pub calibration: Drs4Calibration,
    /// Cells of the four inputs whose stored offset is 0 (PSI's stuck pixels), also listed
    /// in `calibration.stuck_cells`.
    pub stuck_cells: usize,
}

fn word(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn need(layout: EepromLayout, page: u16, bytes: &[u8], needed: usize) -> Result<(), EepromError> {
    if bytes.len() < needed {
        return Err(EepromError::Truncated {
            board_type: layout.board_type(),
            page,
            got: bytes.len(),
            needed,
        });
    }
    Ok(())
}

/// Reads the header of page 0.
pub fn decode_header(layout: EepromLayout, page0: &[u8]) -> Result<EepromHeader, EepromError> {
    need(layout, 0, page0, 32)?;
    let method = page0[VOLTAGE_METHOD_AT];
    if method != layout.voltage_method() {
        return Err(EepromError::NotCalibrated {
            board_type: layout.board_type(),
            offset: VOLTAGE_METHOD_AT,
            found: method,
            expected: layout.voltage_method(),
        });
    }
    let range_code = page0[layout.range_at()];
    if range_code > MAX_RANGE_CENTRE_CODE {
        return Err(EepromError::OutOfRange {
            page: 0,
            offset: layout.range_at(),
            detail: format!(
                "calibrated range centre code {range_code} (centre × 100 V) is above \
                 {MAX_RANGE_CENTRE_CODE}"
            ),
        });
    }
    let timing_ghz = if page0[layout.timing_method_at()] == layout.timing_method() {
        let at = layout.timing_frequency_at();
        let ghz = match layout {
            EepromLayout::BoardType8 => word(page0, at) as f64 / 1000.0,
            EepromLayout::BoardType9 => {
                f32::from_le_bytes([page0[at], page0[at + 1], page0[at + 2], page0[at + 3]]) as f64
            }
        };
        if !(0.1..=6.0).contains(&ghz) {
            return Err(EepromError::OutOfRange {
                page: 0,
                offset: at,
                detail: format!("timing calibration frequency {ghz} GHz is outside 0.1 … 6 GHz"),
            });
        }
        Some(ghz)
    } else {
        None
    };
    Ok(EepromHeader {
        layout,
        serial: word(page0, SERIAL_AT),
        range_centre: range_code as f64 / 100.0,
        temperature_c: layout.temperature_at().map(|at| page0[at] as f64 / 2.0),
        timing_ghz,
    })
}

/// Reads a whole calibration from the pages read as [`EepromLayout::reads`] says.
pub fn decode(layout: EepromLayout, pages: [&[u8]; 3]) -> Result<EepromCalibration, EepromError> {
    let header = decode_header(layout, pages[0])?;
    for (n, (page, bytes)) in layout.reads().iter().enumerate() {
        need(layout, *page, pages[n], *bytes)?;
    }
    let (page0, page1, page2) = (pages[0], pages[1], pages[2]);
    let mut cal = Drs4Calibration::nominal();
    let mut stuck_cells = 0;
    let bottom = (0.5 - header.range_centre) * 65536.0;
    for (input, &channel) in INPUT_CHANNEL.iter().enumerate() {
        for k in 0..CELLS {
            let at = cell_at(channel, k);
            let offset = word(page1, at);
            let gain = gain_of_code(word(page1, at + 2));
            if offset == 0 {
                stuck_cells += 1;
                cal.stuck_cells.push((input, k));
            }
            cal.offset[input][k] = (offset as f64 - bottom * gain) as f32;
            cal.gain[input][k] = (1.0 / gain) as f32;
            let at = layout.readout_offset_at(channel, k);
            cal.readout_offset[input][k] = (word(page2, at) as f64 - READOUT_OFFSET_ZERO) as f32;
        }
    }
    if let Some(ghz) = header.timing_ghz {
        let mut widths = Box::new([0.0f32; CELLS]);
        let mut revolution = 0.0;
        let longest = 5.0 / ghz;
        for (k, slot) in widths.iter_mut().enumerate() {
            let (page, at) = layout.width_at(k);
            let bytes = if page == 0 { page0 } else { page2 };
            let ns = layout.width_ns(word(bytes, at));
            if ns > longest {
                return Err(EepromError::OutOfRange {
                    page,
                    offset: at,
                    detail: format!(
                        "width of cell {k} is {ns} ns; at {ghz} GHz no cell is longer than \
                         {longest} ns"
                    ),
                });
            }
            *slot = ns as f32;
            revolution += ns;
        }
        let nominal = CELLS as f64 / ghz;
        if (revolution / nominal - 1.0).abs() > 0.1 {
            let (page, at) = layout.width_at(0);
            return Err(EepromError::OutOfRange {
                page,
                offset: at,
                detail: format!(
                    "the 1024 cell widths add up to {revolution:.3} ns, one revolution at \
                     {ghz} GHz is {nominal:.3} ns (more than 10 % apart)"
                ),
            });
        }
        cal.cell_width_ns = Some(widths);
    }
    Ok(EepromCalibration {
        header,
        calibration: cal,
        stuck_cells,
    })
}

/// What the simulator stores: a calibration in this crate's model plus the header facts.
#[derive(Clone, Debug)]
pub struct EepromContents {
    /// Layout to write.
    pub layout: EepromLayout,
    /// Serial number (page 0 bytes 0–1).
    pub serial: u16,
    /// Range centre of the voltage calibration, V (0 … 0.5 in steps of 0.01).
    pub range_centre: f64,
    /// Temperature at calibration, °C (type 9 only).
    pub temperature_c: f64,
    /// Frequency of the timing calibration, GHz; the widths are written when set.
    pub timing_ghz: Option<f64>,
    /// The tables; `cell_width_ns` is needed when `timing_ghz` is set.
    pub calibration: Drs4Calibration,
}

/// Why a calibration cannot be written in the EEPROM layout.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("cannot store in the EEPROM layout: {0}")]
pub struct EncodeError(String);

fn code16(value: f64, what: &str) -> Result<u16, EncodeError> {
    let v = value.round();
    if !(0.0..=65535.0).contains(&v) {
        return Err(EncodeError(format!(
            "{what} {value} does not fit 0 … 65535"
        )));
    }
    Ok(v as u16)
}

fn put(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Writes `contents` as the pages [`EepromLayout::reads`] names (full 32 KiB pages, unused
/// bytes 0xFF as in an erased EEPROM). Each input's tables go to both of its DRS channels.
pub fn encode(contents: &EepromContents) -> Result<[Vec<u8>; 3], EncodeError> {
    let layout = contents.layout;
    let cal = &contents.calibration;
    let mut pages = [
        vec![0xFFu8; PAGE_BYTES],
        vec![0xFFu8; PAGE_BYTES],
        vec![0xFFu8; PAGE_BYTES],
    ];
    let range_code = (contents.range_centre * 100.0).round();
    if !(0.0..=MAX_RANGE_CENTRE_CODE as f64).contains(&range_code) {
        return Err(EncodeError(format!(
            "range centre {} V is outside 0 … 0.5 V",
            contents.range_centre
        )));
    }
    {
        let page0 = &mut pages[0];
        put(page0, SERIAL_AT, contents.serial);
        if layout == EepromLayout::BoardType9 {
            put(page0, 22, 1); // pages 1 and 2 written
        }
        page0[VOLTAGE_METHOD_AT] = layout.voltage_method();
        page0[layout.range_at()] = range_code as u8;
        if let Some(at) = layout.temperature_at() {
            page0[at] = code16(contents.temperature_c * 2.0, "temperature × 2")?.min(255) as u8;
        }
        match contents.timing_ghz {
            Some(ghz) => {
                let at = layout.timing_frequency_at();
                match layout {
                    EepromLayout::BoardType8 => {
                        put(
                            page0,
                            layout.timing_method_at(),
                            layout.timing_method() as u16,
                        );
                        put(page0, at, code16(ghz * 1000.0, "MHz")?);
                    }
                    EepromLayout::BoardType9 => {
                        page0[layout.timing_method_at()] = layout.timing_method();
                        put(page0, 8, 1); // number of timing calibrations
                        page0[at..at + 4].copy_from_slice(&(ghz as f32).to_le_bytes());
                    }
                }
            }
            None => page0[layout.timing_method_at()] = 0,
        }
    }
    let bottom = (0.5 - range_code / 100.0) * 65536.0;
    for (input, &first) in INPUT_CHANNEL.iter().enumerate() {
        for channel in [first, first + 1] {
            for k in 0..CELLS {
                let gain_psi = 1.0 / cal.gain[input][k] as f64;
                let gain_code = code16((gain_psi - GAIN_MIN) / GAIN_SPAN * 65535.0, "gain code")?;
                let stored_gain = gain_of_code(gain_code);
                let offset = if cal.stuck_cells.contains(&(input, k)) {
                    0
                } else {
                    code16(cal.offset[input][k] as f64 + bottom * stored_gain, "offset")?
                };
                let at = cell_at(channel, k);
                put(&mut pages[1], at, offset);
                put(&mut pages[1], at + 2, gain_code);
                let second = code16(
                    cal.readout_offset[input][k] as f64 + READOUT_OFFSET_ZERO,
                    "readout offset",
                )?;
                put(&mut pages[2], layout.readout_offset_at(channel, k), second);
            }
        }
    }
    if contents.timing_ghz.is_some() {
        let widths = cal.cell_width_ns.as_ref().ok_or_else(|| {
            EncodeError("a timing frequency is set but there are no cell widths".into())
        })?;
        // Type 9 as PSI writes it: each code rounds what the running sum still lacks.
        let (mut exact, mut stored) = (0.0f64, 0.0f64);
        for (k, ns) in widths.iter().enumerate() {
            let code = match layout {
                EepromLayout::BoardType8 => {
                    code16(layout.width_code(*ns as f64), "cell width code")?
                }
                EepromLayout::BoardType9 => {
                    exact += *ns as f64;
                    let code = code16(layout.width_code(exact - stored), "cell width code")?;
                    stored += layout.width_ns(code);
                    code
                }
            };
            let (page, at) = layout.width_at(k);
            put(&mut pages[page as usize], at, code);
            if layout == EepromLayout::BoardType9 {
                // Every channel's widths: the same table for the simulated chip.
                for channel in 1..CALIBRATED_CHANNELS {
                    put(&mut pages[2], at + 4 * channel * CELLS, code);
                }
            }
        }
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_contents(layout: EepromLayout, seed: u32) -> EepromContents {
        let mut cal = Drs4Calibration::nominal();
        let mut x = seed.wrapping_mul(2654435761).max(1);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 20001) as f32 / 10000.0 - 1.0
        };
        for input in 0..4 {
            for k in 0..CELLS {
                cal.offset[input][k] = 3000.0 * next();
                cal.gain[input][k] = 1.0 + 0.05 * next();
                cal.readout_offset[input][k] = 10.0 * next();
            }
        }
        let mut widths = Box::new([0.0f32; CELLS]);
        for w in widths.iter_mut() {
            *w = 0.2 * (1.0 + 0.1 * next());
        }
        cal.cell_width_ns = Some(widths);
        EepromContents {
            layout,
            serial: 2989,
            range_centre: 0.2,
            temperature_c: 31.5,
            timing_ghz: Some(5.0),
            calibration: cal,
        }
    }

    fn pages_of(p: &[Vec<u8>; 3], layout: EepromLayout) -> [&[u8]; 3] {
        let r = layout.reads();
        [&p[0][..r[0].1], &p[1][..r[1].1], &p[2][..r[2].1]]
    }

    #[test]
    fn header_bytes_are_where_psi_reads_them() {
        let c = sample_contents(EepromLayout::BoardType9, 1);
        let p = encode(&c).unwrap();
        assert_eq!(p[0][0..2], [0xAD, 0x0B], "serial 2989");
        assert_eq!(p[0][4], 2, "VCALIB_METHOD");
        assert_eq!(p[0][5], 2, "TCALIB_METHOD");
        assert_eq!(p[0][16..20], 5.0f32.to_le_bytes());
        assert_eq!(p[0][20], 20, "range centre 0.2 V");
        assert_eq!(p[0][21], 63, "31.5 °C");
        assert_eq!(p[0][8..10], [1, 0], "one timing calibration");
        assert_eq!(p[0][22..24], [1, 0], "pages 1 and 2 written");
        let c = sample_contents(EepromLayout::BoardType8, 1);
        let p = encode(&c).unwrap();
        assert_eq!(p[0][4], 1, "VCALIB_METHOD_V4");
        assert_eq!(p[0][5], 20);
        assert_eq!(p[0][8..10], [1, 0], "TCALIB_METHOD_V4 as a word");
        assert_eq!(p[0][12..14], 5000u16.to_le_bytes());
        // Cell width of cell 0 in word 1 of page 0 (type 8), in page 2 word 1 (type 9).
        let w0 = c.calibration.cell_width_ns.as_ref().unwrap()[0] as f64;
        assert_eq!(word(&p[0], 2), (w0 * 10000.0).round() as u16);
    }

    #[test]
    fn gain_code_spans_0_7_to_1_1() {
        assert_eq!(gain_of_code(0), 0.7);
        assert!((gain_of_code(65535) - 1.1).abs() < 1e-12);
    }

    #[test]
    fn round_trip_within_the_formats_resolution() {
        for layout in [EepromLayout::BoardType8, EepromLayout::BoardType9] {
            let c = sample_contents(layout, 7);
            let p = encode(&c).unwrap();
            let d = decode(layout, pages_of(&p, layout)).unwrap();
            assert_eq!(d.header.serial, 2989);
            assert_eq!(d.header.range_centre, 0.2);
            assert_eq!(d.header.timing_ghz, Some(5.0));
            assert_eq!(d.stuck_cells, 0);
            let (a, b) = (&c.calibration, &d.calibration);
            for input in 0..4 {
                for k in 0..CELLS {
                    // Offsets round to whole counts, gains to 0.4/65535.
                    assert!((a.offset[input][k] - b.offset[input][k]).abs() < 0.7);
                    assert!((a.gain[input][k] - b.gain[input][k]).abs() < 1e-5);
                    assert!((a.readout_offset[input][k] - b.readout_offset[input][k]).abs() <= 0.5);
                }
            }
            let (wa, wb) = (
                a.cell_width_ns.as_ref().unwrap(),
                b.cell_width_ns.as_ref().unwrap(),
            );
            for k in 0..CELLS {
                // Half a step of 0.1 ps each (type 8); type 9 rounds the running sum, so a
                // cell may take up to a whole step and the sum stays within half a step.
                assert!((wa[k] - wb[k]).abs() <= 1e-4 + 1e-6);
            }
            let sum = |w: &[f32; CELLS]| w.iter().map(|v| *v as f64).sum::<f64>();
            let tolerance = match layout {
                EepromLayout::BoardType8 => 1024.0 * 0.5e-4,
                EepromLayout::BoardType9 => 0.5e-4 + 1e-4,
            };
            assert!((sum(wa) - sum(wb)).abs() <= tolerance, "{layout:?}");
            // Decoding what was decoded and encoded again gives the same bytes.
            let again = encode(&EepromContents {
                calibration: d.calibration.clone(),
                ..c.clone()
            })
            .unwrap();
            assert_eq!(again, p, "byte-exact after one round trip");
        }
    }

    #[test]
    fn not_calibrated_names_the_method_byte() {
        let blank = vec![0xFFu8; 4096];
        let err = decode_header(EepromLayout::BoardType9, &blank).unwrap_err();
        assert_eq!(
            err,
            EepromError::NotCalibrated {
                board_type: 9,
                offset: 4,
                found: 0xFF,
                expected: 2
            }
        );
        assert!(err
            .to_string()
            .starts_with("EEPROM page 0 byte 4: voltage calibration method 255"));
        // A type-9 method byte on a type-8 board is not a calibration either.
        let mut p = vec![0u8; 4096];
        p[4] = 2;
        assert!(matches!(
            decode_header(EepromLayout::BoardType8, &p),
            Err(EepromError::NotCalibrated {
                found: 2,
                expected: 1,
                ..
            })
        ));
    }

    #[test]
    fn bad_content_names_page_and_byte() {
        let layout = EepromLayout::BoardType9;
        let c = sample_contents(layout, 3);
        let mut p = encode(&c).unwrap();
        // The (page, byte) decode names as out of range, or else what it said instead.
        let out_of_range_at = |p: &[Vec<u8>; 3]| match decode(layout, pages_of(p, layout)) {
            Err(EepromError::OutOfRange { page, offset, .. }) => Ok((page, offset)),
            Err(other) => Err(other.to_string()),
            Ok(_) => Err("decoded as a calibration".to_string()),
        };
        p[0][20] = 51;
        assert_eq!(out_of_range_at(&p), Ok((0, 20)));
        p[0][20] = 0;
        p[0][16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(out_of_range_at(&p), Ok((0, 16)));
        p[0][16..20].copy_from_slice(&5.0f32.to_le_bytes());
        // Width code 60000 = 5.9 ns at cell 3 (a 5 GHz cell is 0.2 ns): page 2, byte 4·3 + 2.
        put(&mut p[2], 14, 60000);
        assert_eq!(out_of_range_at(&p), Ok((2, 14)));
        let short = [&p[0][..4096], &p[1][..100], &p[2][..]];
        assert!(matches!(
            decode(layout, short),
            Err(EepromError::Truncated {
                page: 1,
                got: 100,
                needed: 32768,
                ..
            })
        ));
    }

    #[test]
    fn stuck_cells_are_counted() {
        let layout = EepromLayout::BoardType8;
        let c = sample_contents(layout, 5);
        let mut p = encode(&c).unwrap();
        put(&mut p[1], cell_at(2, 17), 0);
        put(&mut p[1], cell_at(3, 17), 0); // channel 3 is no input's: not counted
        let d = decode(layout, pages_of(&p, layout)).unwrap();
        assert_eq!(d.stuck_cells, 1);
        assert_eq!(
            d.calibration.stuck_cells,
            [(1, 17)],
            "channel 2 is input 2 (index 1)"
        );
        // And the encoder marks them the same way.
        let again = encode(&EepromContents {
            calibration: d.calibration.clone(),
            ..c
        })
        .unwrap();
        assert_eq!(word(&again[1], cell_at(2, 17)), 0);
        assert_eq!(
            word(&again[1], cell_at(3, 17)),
            0,
            "both channels of the input"
        );
    }

    fn check_sane(d: &EepromCalibration) -> Result<(), TestCaseError> {
        let c = &d.calibration;
        for input in 0..4 {
            for k in 0..CELLS {
                prop_assert!(c.offset[input][k].is_finite());
                prop_assert!(c.readout_offset[input][k].is_finite());
                let g = c.gain[input][k];
                prop_assert!(
                    g.is_finite() && (1.0 / 1.1 - 1e-6..=1.0 / 0.7 + 1e-6).contains(&(g as f64))
                );
            }
        }
        prop_assert!((0.0..=0.5).contains(&d.header.range_centre));
        match (&c.cell_width_ns, d.header.timing_ghz) {
            (Some(w), Some(ghz)) => {
                prop_assert!(w.iter().all(|v| v.is_finite() && *v >= -0.1 - 1e-6));
                prop_assert!(w.iter().all(|v| (*v as f64) <= 5.0 / ghz + 1e-6));
                let sum: f64 = w.iter().map(|v| *v as f64).sum();
                prop_assert!((sum * ghz / CELLS as f64 - 1.0).abs() <= 0.1 + 1e-6);
            }
            (None, None) => {}
            _ => prop_assert!(false, "widths without a frequency or the other way round"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn garbage_pages_never_panic_nor_pass_for_a_calibration(
            head in proptest::collection::vec(any::<u8>(), 0..64),
            fill in any::<u8>(),
            seed in any::<u64>(),
            type9 in any::<bool>(),
            len1 in 0usize..=PAGE_BYTES,
        ) {
            let layout = if type9 { EepromLayout::BoardType9 } else { EepromLayout::BoardType8 };
            let mut x = seed | 1;
            let mut bytes = |n: usize| -> Vec<u8> {
                (0..n).map(|_| { x ^= x << 7; x ^= x >> 9; (x as u8) ^ fill }).collect()
            };
            let mut page0 = bytes(4096);
            page0[..head.len()].copy_from_slice(&head);
            let page1 = bytes(len1);
            let page2 = bytes(PAGE_BYTES);
            if let Ok(d) = decode(layout, [&page0, &page1, &page2]) {
                prop_assert_eq!(page0[4], layout.voltage_method());
                prop_assert_eq!(len1, PAGE_BYTES);
                check_sane(&d)?;
            }
            let _ = decode_header(layout, &page0[..head.len()]);
        }

        #[test]
        fn a_valid_header_over_garbage_tables_is_sane_or_refused(
            seed in any::<u64>(),
            type9 in any::<bool>(),
            corrupt_at in 0usize..PAGE_BYTES,
            corrupt in any::<u8>(),
        ) {
            let layout = if type9 { EepromLayout::BoardType9 } else { EepromLayout::BoardType8 };
            let c = sample_contents(layout, seed as u32);
            let mut p = encode(&c).unwrap();
            let page = (seed % 3) as usize;
            let len = layout.reads()[page].1;
            p[page][corrupt_at % len] = corrupt;
            match decode(layout, pages_of(&p, layout)) {
                Ok(d) => check_sane(&d)?,
                Err(EepromError::OutOfRange { page: at_page, offset, .. }) => {
                    prop_assert!(offset < layout.reads()[at_page as usize].1);
                }
                Err(EepromError::NotCalibrated { offset, .. }) => prop_assert_eq!(offset, 4),
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
    }
}
