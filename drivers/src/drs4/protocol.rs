//! The PSI DRS4 evaluation board's USB 2 register protocol, pure (HARDWARE.md C.2 and the
//! PSI DRS library `DRS.cpp`).
//!
//! Every access is a bulk OUT on EP 0x04 starting with a 10-byte header
//! `[cmd, 0, addr LE u32, size LE u32]`; WRITE appends the data, READ is answered with
//! `size` bytes on EP 0x88. 16-bit register accesses are word-swapped: the first 16 bits of
//! a 32-bit word sit at the upper address. Guarantees: the functions here compute bytes and
//! values only; must never do I/O.

use std::time::Duration;

/// Command byte: read.
pub const CMD_READ: u8 = 1;
/// Command byte: write.
pub const CMD_WRITE: u8 = 2;
/// Bulk OUT endpoint (commands).
pub const EP_OUT: u8 = 0x04;
/// Bulk IN endpoint (replies).
pub const EP_IN: u8 = 0x88;
/// USB interface claimed.
pub const INTERFACE: u8 = 0;
/// USB id of the evaluation board.
pub const USB_ID: (u16, u16) = (0x04b4, 0x1175);
/// Timeout of one transfer (the PSI library uses 1 s).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Address space of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Control registers (read/write).
    Ctrl,
    /// Status registers (read only).
    Status,
    /// FIFO.
    Fifo,
    /// Waveform RAM.
    Ram,
}

impl Space {
    /// Base address on the wire.
    pub fn base(self) -> u32 {
        match self {
            Space::Ctrl => 0x00000,
            Space::Status => 0x10000,
            Space::Fifo => 0x20000,
            Space::Ram => 0x40000,
        }
    }

    /// The space a wire address falls in, with the offset inside it.
    pub fn of(address: u32) -> Option<(Space, u32)> {
        match address {
            0x00000..=0x0FFFF => Some((Space::Ctrl, address)),
            0x10000..=0x1FFFF => Some((Space::Status, address - 0x10000)),
            0x20000..=0x3FFFF => Some((Space::Fifo, address - 0x20000)),
            0x40000.. => Some((Space::Ram, address - 0x40000)),
        }
    }
}

/// Control register: 32-bit control bits.
pub const REG_CTRL: u32 = 0x00;
/// Control register: first DAC (eight 16-bit DACs at 0x04–0x12).
pub const REG_DAC_OFS: u32 = 0x04;
/// Control register: channel configuration.
pub const REG_CHANNEL_CONFIG: u32 = 0x14;
/// Control register: channel mode / ADC clock phase.
pub const REG_CHANNEL_MODE: u32 = 0x16;
/// Control register: trigger delay.
pub const REG_TRG_DELAY: u32 = 0x18;
/// Control register: sampling frequency (reference-clock ticks per 1024 cells, minus 2).
pub const REG_FREQ_SET: u32 = 0x1A;
/// Control register: trigger source (Eval4: OR bits 0–4 = CH1–CH4, EXT; AND bits 8–12).
pub const REG_TRG_CONFIG: u32 = 0x1C;
/// Control register: EEPROM page.
pub const REG_EEPROM_PAGE_EVAL: u32 = 0x1E;
/// Status register: magic number 0xC0DE.
pub const REG_MAGIC: u32 = 0x00;
/// Status register: DRS type (low byte) and board type (high byte).
pub const REG_BOARD_TYPE: u32 = 0x02;
/// Status register: 32-bit status bits.
pub const REG_STATUS: u32 = 0x04;
/// Status register: stop cell of chip 0.
pub const REG_STOP_CELL0: u32 = 0x08;
/// Status register: temperature.
pub const REG_TEMPERATURE: u32 = 0x20;
/// Status register: board serial number.
pub const REG_SERIAL_BOARD: u32 = 0x24;
/// Status register: FPGA firmware version.
pub const REG_VERSION_FW: u32 = 0x26;

/// Control bit: start the domino wave (arm).
pub const BIT_START_TRIG: u32 = 1 << 0;
/// Control bit: stop and re-arm the trigger logic.
pub const BIT_REINIT_TRIG: u32 = 1 << 1;
/// Control bit: software trigger.
pub const BIT_SOFT_TRIG: u32 = 1 << 2;
/// Control bit: EEPROM write.
pub const BIT_EEPROM_WRITE_TRIG: u32 = 1 << 3;
/// Control bit: EEPROM read.
pub const BIT_EEPROM_READ_TRIG: u32 = 1 << 4;
/// Control bit: multi-buffer mode.
pub const BIT_MULTI_BUFFER: u32 = 1 << 16;
/// Control bit: ADC active.
pub const BIT_ADC_ACTIVE: u32 = 1 << 17;
/// Control bit: LED.
pub const BIT_LED: u32 = 1 << 18;
/// Control bit: timing calibration signal.
pub const BIT_TCAL_EN: u32 = 1 << 19;
/// Control bit: transparent mode.
pub const BIT_TRANSP_MODE: u32 = 1 << 21;
/// Control bit: enable hardware trigger.
pub const BIT_ENABLE_TRIGGER1: u32 = 1 << 22;
/// Control bit: readout mode (from the stop cell).
pub const BIT_READOUT_MODE: u32 = 1 << 23;
/// Control bit: trigger on the falling edge.
pub const BIT_NEG_TRIGGER: u32 = 1 << 24;
/// Control bit: amplitude calibration source.
pub const BIT_ACAL_EN: u32 = 1 << 25;
/// Control bit: domino wave runs continuously.
pub const BIT_DACTIVE: u32 = 1 << 27;
/// Control bit: standby.
pub const BIT_STANDBY: u32 = 1 << 28;
/// Control bit: second trigger enable.
pub const BIT_ENABLE_TRIGGER2: u32 = 1 << 31;
/// Status bit: domino wave running (armed, not yet triggered or read out).
pub const BIT_RUNNING: u32 = 1 << 0;
/// Status bit: PLL locked.
pub const BIT_PLL_LOCKED0: u32 = 1 << 1;
/// Status bit: serial (EEPROM) interface busy.
pub const BIT_SERIAL_BUSY: u32 = 1 << 5;

/// Value of `REG_MAGIC`.
pub const MAGIC: u16 = 0xC0DE;
/// Lowest FPGA firmware the PSI library (and this driver) accepts for a DRS4.
pub const REQUIRED_FIRMWARE: u16 = 15147;
/// From this firmware on, Eval board readouts end with a 4-byte trailer holding the stop cell.
pub const TRAILER_FIRMWARE: u16 = 17147;
/// Sampling cells per channel.
pub const CELLS: usize = 1024;
/// Channels the USB 2 FPGA transfers per readout (8 DRS channels + clock).
pub const READOUT_CHANNELS: usize = 9;
/// DRS channel of each of the four inputs (input n is wired to DRS channels 2n and 2n+1).
pub const INPUT_CHANNEL: [usize; 4] = [0, 2, 4, 6];
/// Reference clock of the Eval board, MHz.
pub const REF_CLOCK_MHZ: f64 = 60.0;
/// DAC index of the readout offset (sets the input range).
pub const DAC_ROFS: u8 = 0;
/// DAC index of the trigger level of CH1..CH4 (Eval board types 8 and 9).
pub const DAC_TRIGGER_LEVEL: [u8; 4] = [5, 6, 7, 1];
/// Board types whose trigger is set through `REG_TRG_CONFIG` (Eval4).
pub const SUPPORTED_BOARD_TYPES: [u8; 2] = [8, 9];

/// The 10-byte command header.
pub fn header(cmd: u8, address: u32, size: u32) -> [u8; 10] {
    let a = address.to_le_bytes();
    let s = size.to_le_bytes();
    [cmd, 0, a[0], a[1], a[2], a[3], s[0], s[1], s[2], s[3]]
}

/// The wire address of a register access of `size` bytes at `register` in `space`:
/// 16-bit accesses outside RAM are word-swapped (addr + 2 if 4-aligned, else addr − 2).
pub fn wire_address(space: Space, register: u32, size: usize) -> u32 {
    let mut address = register;
    if space != Space::Ram && size == 2 {
        address = if register.is_multiple_of(4) {
            register + 2
        } else {
            register - 2
        };
    }
    space.base() + address
}

/// DAC counts for `volts` (clamped to 0…2.5 V): V / 2.5 × 0xFFFF, rounded.
pub fn dac_counts(volts: f64) -> u16 {
    (volts.clamp(0.0, 2.5) / 2.5 * 65535.0 + 0.5) as u16
}

/// Volts of DAC counts.
pub fn dac_volts(counts: u16) -> f64 {
    counts as f64 / 65535.0 * 2.5
}

/// `REG_FREQ_SET` value for `ghz` and the frequency it really gives:
/// ticks = round(1.024 / f × 60 MHz), written as ticks − 2.
pub fn frequency_setting(ghz: f64) -> Option<(u16, f64)> {
    if !(0.1..=6.0).contains(&ghz) {
        return None;
    }
    let ticks = (1.024 / ghz * REF_CLOCK_MHZ + 0.5) as u16;
    Some((ticks - 2, 1.024 / ticks as f64 * REF_CLOCK_MHZ))
}

/// Sampling frequency in GHz set by a `REG_FREQ_SET` value.
pub fn frequency_of_setting(value: u16) -> f64 {
    1.024 / (value as f64 + 2.0) * REF_CLOCK_MHZ
}

/// Readout-offset DAC volts for an input range centred at `centre` (0 … 0.5 V):
/// 1.6 − 1.125 × centre.
pub fn rofs_volts(centre: f64) -> f64 {
    1.6 - 1.125 * centre
}

/// Input-range centre set by a readout-offset DAC voltage.
pub fn centre_of_rofs(volts: f64) -> f64 {
    (1.6 - volts) / 1.125
}

/// Trigger-level DAC volts for a level in input volts: level / 2 + 0.8.
pub fn trigger_dac_volts(level: f64) -> f64 {
    level / 2.0 + 0.8
}

/// Input volts of a trigger-level DAC voltage.
pub fn trigger_level_of_dac(volts: f64) -> f64 {
    (volts - 0.8) * 2.0
}

/// Bytes of one readout: 9 channels × 1024 cells × 2 bytes, plus the 4-byte trailer from
/// firmware 17147 on.
pub fn readout_bytes(firmware: u16) -> usize {
    READOUT_CHANNELS * CELLS * 2 + if firmware >= TRAILER_FIRMWARE { 4 } else { 0 }
}

/// Byte offset of cell `j` (in readout order) of DRS channel `channel` in a readout.
pub fn sample_offset(channel: usize, j: usize) -> usize {
    (channel * CELLS + j) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_byte_exact() {
        assert_eq!(
            header(CMD_READ, 0x10002, 2),
            [1, 0, 0x02, 0x00, 0x01, 0x00, 2, 0, 0, 0]
        );
        assert_eq!(
            header(CMD_WRITE, 0x4_0000, 18436),
            [2, 0, 0, 0, 4, 0, 0x04, 0x48, 0, 0]
        );
    }

    #[test]
    fn sixteen_bit_registers_are_word_swapped() {
        assert_eq!(wire_address(Space::Status, REG_MAGIC, 2), 0x10002);
        assert_eq!(wire_address(Space::Status, REG_BOARD_TYPE, 2), 0x10000);
        assert_eq!(wire_address(Space::Ctrl, REG_FREQ_SET, 2), 0x18);
        assert_eq!(wire_address(Space::Ctrl, REG_CTRL, 4), 0x00);
        assert_eq!(wire_address(Space::Ram, 0x10, 2), 0x40010);
    }

    #[test]
    fn dac_and_frequency_values() {
        assert_eq!(dac_counts(2.5), 0xFFFF);
        assert_eq!(dac_counts(1.25), 0x8000);
        assert_eq!(dac_counts(-1.0), 0);
        assert_eq!(
            dac_counts(rofs_volts(0.0)),
            (1.6 / 2.5 * 65535.0 + 0.5) as u16
        );
        let (set, actual) = frequency_setting(5.0).unwrap();
        assert_eq!(set, 10); // 1.024 / 5 × 60 = 12.29 → 12 ticks, written as 10
        assert!((actual - 5.12).abs() < 1e-9);
        assert_eq!(frequency_of_setting(set), actual);
        assert_eq!(frequency_setting(7.0), None);
        assert_eq!(readout_bytes(15147), 18432);
        assert_eq!(readout_bytes(21305), 18436);
    }
}
