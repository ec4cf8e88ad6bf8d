//! A simulated DRS4 evaluation board behind the same [`UsbTransport`] as the real one.
//!
//! Guarantees: it answers the 10-byte command protocol on EP 0x04 / 0x88 exactly as
//! HARDWARE.md C.2 describes — control and status registers as byte memory with the same
//! word-swapped 16-bit layout the PSI library sees, a waveform RAM of 9 channels × 1024
//! cells (+ the stop-cell trailer from firmware 17147) — and stalls malformed commands.
//! After `START_TRIG` it is armed (status RUNNING); a status read fires the hardware trigger
//! when it is enabled and the pulse crosses the set level, `SOFT_TRIG` fires at once. Each
//! trigger writes the four input waveforms into RAM in readout order starting at a random
//! stop cell, with per-physical-cell offsets and gains and per-readout-position offsets
//! (its "true" calibration) and noise.
//!
//! The board's EEPROM holds that true calibration (and per-cell widths for the time axis)
//! in PSI's layout for its board type, written by [`eeprom::encode`]; the true tables are
//! the ones decoded back from those bytes, so a driver that reads the EEPROM byte-exactly
//! recovers them exactly. An EEPROM read (control bit 4) keeps `SERIAL_BUSY` set for a few
//! status reads, then copies the selected page to the start of RAM; an EEPROM write
//! (bit 3) is carried out too and counted, so tests can prove nobody wrote.
//! Deterministic for a seed. Must never be mistaken for hardware: port `sim:drs4`.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::calibration::Drs4Calibration;
use super::driver::Drs4Bus;
use super::eeprom::{self, EepromContents, EepromLayout, PAGE_BYTES};
use super::protocol::*;
use crate::usb::sim::{SimUsb, SimUsbBus, SimUsbHandle, SimUsbState};
use crate::usb::{Setup, UsbDeviceEntry, UsbError, UsbTransport};

/// How the simulated board is built and what it sees.
#[derive(Clone, Debug)]
pub struct SimDrs4Config {
    /// Board serial number.
    pub serial: u16,
    /// FPGA firmware version.
    pub firmware: u16,
    /// Board type (8 or 9 for the Eval4 boards).
    pub board_type: u8,
    /// DRS chip type (4).
    pub drs_type: u8,
    /// Value of the magic register (0xC0DE on a real board).
    pub magic: u16,
    /// Seed of every random choice.
    pub seed: u64,
    /// Input (0..4) that sees the pulse.
    pub pulse_input: usize,
    /// Pulse height in volts (negative for SiPM/PMT pulses).
    pub pulse_volts: f32,
    /// Readout sample where the pulse peaks.
    pub pulse_position: usize,
    /// Rise time in samples.
    pub pulse_rise: f32,
    /// Decay constant in samples.
    pub pulse_decay: f32,
    /// Gaussian noise per sample, ADC counts.
    pub noise_counts: f32,
    /// Per-cell offsets are uniform in ± this many counts.
    pub offset_spread_counts: f32,
    /// Per-cell gains are uniform in 1 ± this.
    pub gain_spread: f32,
    /// Per-readout-position offsets are uniform in ± this many counts.
    pub readout_offset_spread_counts: f32,
    /// Per-cell widths are uniform in (1 ± this) / f before they are scaled to add up to
    /// 1024 / f.
    pub cell_width_spread: f32,
    /// The EEPROM holds the board's calibration (`false`: erased, all 0xFF).
    pub eeprom_calibrated: bool,
    /// Range centre (V) the stored voltage calibration was taken at.
    pub eeprom_range_centre: f64,
    /// Sampling frequency (GHz) the stored timing calibration was taken at, the realised
    /// one as PSI stores it (5.12 GHz for a 5 GHz request); `None`: none stored.
    pub eeprom_timing_ghz: Option<f64>,
    /// Status reads that still see `SERIAL_BUSY` after an EEPROM command.
    pub eeprom_busy_polls: u32,
    /// Stuck cells (input 0–3, physical cell): they always read 0xFFFF, and the EEPROM marks
    /// them with a stored offset of 0.
    pub stuck_cells: Vec<(usize, usize)>,
    /// Bytes left in the IN FIFO from an earlier session, returned before anything else.
    pub stale_fifo_bytes: usize,
    /// Keep a log of every OUT transfer (off for benchmarks).
    pub log_transfers: bool,
}

impl Default for SimDrs4Config {
    fn default() -> Self {
        SimDrs4Config {
            serial: 2989,
            firmware: 21305,
            board_type: 9,
            drs_type: 4,
            magic: MAGIC,
            seed: 4,
            pulse_input: 0,
            pulse_volts: -0.3,
            pulse_position: 600,
            pulse_rise: 4.0,
            pulse_decay: 40.0,
            noise_counts: 30.0,
            offset_spread_counts: 3000.0,
            gain_spread: 0.05,
            readout_offset_spread_counts: 10.0,
            cell_width_spread: 0.1,
            eeprom_calibrated: true,
            eeprom_range_centre: 0.0,
            eeprom_timing_ghz: Some(1.024 / 12.0 * REF_CLOCK_MHZ),
            eeprom_busy_polls: 2,
            stuck_cells: Vec::new(),
            stale_fifo_bytes: 0,
            log_transfers: true,
        }
    }
}

/// The simulated board's state.
#[derive(Debug)]
pub struct SimDrs4State {
    config: SimDrs4Config,
    /// Control register bytes (wire offsets 0x00..0x40).
    pub ctrl: [u8; 0x40],
    /// Status register bytes (wire offsets 0x00..0x40).
    pub status: [u8; 0x40],
    /// Waveform RAM.
    pub ram: Vec<u8>,
    /// Bytes waiting on EP 0x88.
    pub fifo: VecDeque<u8>,
    /// Armed (domino running, waiting for a trigger).
    pub armed: bool,
    /// Triggers fired.
    pub triggers: u64,
    /// Stop cell of the last trigger.
    pub last_stop_cell: usize,
    /// Every OUT transfer, if logging.
    pub log: Vec<Vec<u8>>,
    /// True per-cell offsets in counts, per input.
    pub true_offset: Box<[[f32; CELLS]; 4]>,
    /// True per-cell gains, per input.
    pub true_gain: Box<[[f32; CELLS]; 4]>,
    /// True offsets per readout position, per input (counts, after the gain).
    pub true_readout_offset: Box<[[f32; CELLS]; 4]>,
    /// Stuck cells per input and physical cell.
    pub stuck: Box<[[bool; CELLS]; 4]>,
    /// True width of each physical cell, ns.
    pub true_cell_width_ns: Box<[f32; CELLS]>,
    /// EEPROM pages 0, 1, 2 (32 KiB each).
    pub eeprom: [Vec<u8>; 3],
    /// Why the EEPROM was left erased although `eeprom_calibrated` asked for a calibration.
    pub eeprom_error: Option<String>,
    /// EEPROM pages read into RAM.
    pub eeprom_reads: u64,
    /// EEPROM pages written from RAM.
    pub eeprom_writes: u64,
    /// EEPROM command in progress: (page, write?) and status reads left before it is done.
    eeprom_pending: Option<(u16, bool, u32)>,
    /// False after unplugging.
    pub plugged: bool,
    /// USB address on the simulated bus; a replugged board comes back at the next one.
    pub usb_address: u8,
    /// Counts plug-ins: a handle opened before the last one is dead, as after a real replug.
    pub generation: u64,
    /// Pulls the plug once this many more bytes have gone out on EP 0x88 (fault injection:
    /// a board lost in the middle of a readout).
    pub unplug_after_in_bytes: Option<usize>,
    rng: Xoshiro256PlusPlus,
}

fn put16(memory: &mut [u8], space: Space, register: u32, value: u16) {
    let at = (wire_address(space, register, 2) - space.base()) as usize;
    memory[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn get16(memory: &[u8], space: Space, register: u32) -> u16 {
    let at = (wire_address(space, register, 2) - space.base()) as usize;
    u16::from_le_bytes([memory[at], memory[at + 1]])
}

/// The board's true calibration and its EEPROM image.
struct Truth {
    calibration: Drs4Calibration,
    widths: Box<[f32; CELLS]>,
    eeprom: [Vec<u8>; 3],
    error: Option<String>,
}

/// Draws readout offsets and cell widths (from a stream of their own, so the main stream of
/// stop cells and noise is the same as without them), writes the EEPROM and takes the tables
/// decoded back from it as the truth.
fn draw_truth(
    config: &SimDrs4Config,
    offset: &mut [[f32; CELLS]; 4],
    gain: &mut [[f32; CELLS]; 4],
) -> Truth {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ 0x0EE9_2011);
    let mut calibration = Drs4Calibration::nominal();
    calibration.stuck_cells = config
        .stuck_cells
        .iter()
        .copied()
        .filter(|(input, cell)| *input < 4 && *cell < CELLS)
        .collect();
    calibration.offset.copy_from_slice(&offset[..]);
    calibration.gain.copy_from_slice(&gain[..]);
    for row in calibration.readout_offset.iter_mut() {
        for v in row.iter_mut() {
            *v = (rng.random_range(-1.0f32..=1.0) * config.readout_offset_spread_counts).round();
        }
    }
    let ghz = config.eeprom_timing_ghz.unwrap_or(5.0);
    let mut widths = Box::new([0.0f32; CELLS]);
    let mut sum = 0.0f64;
    for w in widths.iter_mut() {
        let v = 1.0 + rng.random_range(-1.0f64..=1.0) * config.cell_width_spread as f64;
        *w = v as f32;
        sum += v;
    }
    for w in widths.iter_mut() {
        *w = (*w as f64 * CELLS as f64 / ghz / sum) as f32;
    }
    let blank = || {
        [
            vec![0xFFu8; PAGE_BYTES],
            vec![0xFFu8; PAGE_BYTES],
            vec![0xFFu8; PAGE_BYTES],
        ]
    };
    let layout = EepromLayout::of_board_type(config.board_type);
    if !config.eeprom_calibrated {
        return Truth {
            calibration,
            widths,
            eeprom: blank(),
            error: None,
        };
    }
    let Some(layout) = layout else {
        return Truth {
            calibration,
            widths,
            eeprom: blank(),
            error: Some(format!(
                "no EEPROM layout for board type {}",
                config.board_type
            )),
        };
    };
    calibration.cell_width_ns = Some(widths.clone());
    let contents = EepromContents {
        layout,
        serial: config.serial,
        range_centre: config.eeprom_range_centre,
        temperature_c: 30.5,
        timing_ghz: config.eeprom_timing_ghz,
        calibration: calibration.clone(),
    };
    let pages = match eeprom::encode(&contents) {
        Ok(pages) => pages,
        Err(e) => {
            calibration.cell_width_ns = None;
            return Truth {
                calibration,
                widths,
                eeprom: blank(),
                error: Some(e.to_string()),
            };
        }
    };
    let reads = layout.reads();
    let decoded = eeprom::decode(
        layout,
        [
            &pages[0][..reads[0].1],
            &pages[1][..reads[1].1],
            &pages[2][..reads[2].1],
        ],
    );
    match decoded {
        Ok(d) => {
            let mut calibration = d.calibration;
            let widths = calibration.cell_width_ns.take().unwrap_or(widths);
            offset.copy_from_slice(&calibration.offset[..]);
            gain.copy_from_slice(&calibration.gain[..]);
            Truth {
                calibration,
                widths,
                eeprom: pages,
                error: None,
            }
        }
        Err(e) => {
            calibration.cell_width_ns = None;
            Truth {
                calibration,
                widths,
                eeprom: blank(),
                error: Some(e.to_string()),
            }
        }
    }
}

impl SimDrs4State {
    fn new(config: SimDrs4Config) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let mut true_offset = Box::new([[0.0f32; CELLS]; 4]);
        let mut true_gain = Box::new([[1.0f32; CELLS]; 4]);
        for input in 0..4 {
            for cell in 0..CELLS {
                true_offset[input][cell] =
                    rng.random_range(-1.0f32..=1.0) * config.offset_spread_counts;
                true_gain[input][cell] = 1.0 + rng.random_range(-1.0f32..=1.0) * config.gain_spread;
            }
        }
        let truth = draw_truth(&config, &mut true_offset, &mut true_gain);
        let mut status = [0u8; 0x40];
        put16(&mut status, Space::Status, REG_MAGIC, config.magic);
        put16(
            &mut status,
            Space::Status,
            REG_BOARD_TYPE,
            config.drs_type as u16 | (config.board_type as u16) << 8,
        );
        put16(&mut status, Space::Status, REG_SERIAL_BOARD, config.serial);
        put16(&mut status, Space::Status, REG_VERSION_FW, config.firmware);
        put16(&mut status, Space::Status, REG_TEMPERATURE, 25 * 16);
        let fifo = (0..config.stale_fifo_bytes).map(|i| i as u8).collect();
        SimDrs4State {
            ram: vec![0; readout_bytes(config.firmware).max(PAGE_BYTES)],
            ctrl: [0; 0x40],
            status,
            fifo,
            armed: false,
            triggers: 0,
            last_stop_cell: 0,
            log: Vec::new(),
            true_offset: truth.calibration.offset,
            true_gain: truth.calibration.gain,
            true_readout_offset: truth.calibration.readout_offset,
            stuck: {
                let mut stuck = Box::new([[false; CELLS]; 4]);
                for &(input, cell) in &truth.calibration.stuck_cells {
                    stuck[input][cell] = true;
                }
                stuck
            },
            true_cell_width_ns: truth.widths,
            eeprom: truth.eeprom,
            eeprom_error: truth.error,
            eeprom_reads: 0,
            eeprom_writes: 0,
            eeprom_pending: None,
            plugged: true,
            usb_address: 9,
            generation: 0,
            unplug_after_in_bytes: None,
            rng,
            config,
        }
    }

    fn status_word(&self) -> u32 {
        u32::from_le_bytes([
            self.status[4],
            self.status[5],
            self.status[6],
            self.status[7],
        ])
    }

    fn set_running(&mut self, running: bool) {
        let word = (self.status_word() & !BIT_RUNNING)
            | if running { BIT_RUNNING } else { 0 }
            | BIT_PLL_LOCKED0;
        self.status[4..8].copy_from_slice(&word.to_le_bytes());
    }

    fn ctrl_word(&self) -> u32 {
        u32::from_le_bytes([self.ctrl[0], self.ctrl[1], self.ctrl[2], self.ctrl[3]])
    }

    fn dac_volts(&self, dac: u8) -> f64 {
        dac_volts(get16(&self.ctrl, Space::Ctrl, REG_DAC_OFS + 2 * dac as u32))
    }

    fn set_serial_busy(&mut self, busy: bool) {
        let word = (self.status_word() & !BIT_SERIAL_BUSY) | if busy { BIT_SERIAL_BUSY } else { 0 };
        self.status[4..8].copy_from_slice(&word.to_le_bytes());
    }

    /// Starts an EEPROM command on the page selected in `REG_EEPROM_PAGE_EVAL`.
    fn eeprom_command(&mut self, write: bool) {
        let page = get16(&self.ctrl, Space::Ctrl, REG_EEPROM_PAGE_EVAL);
        self.eeprom_pending = Some((page, write, self.config.eeprom_busy_polls));
        self.set_serial_busy(true);
        if self.config.eeprom_busy_polls == 0 {
            self.eeprom_progress();
        }
    }

    /// One status read's worth of EEPROM work: the command completes when no busy reads
    /// are left.
    fn eeprom_progress(&mut self) {
        let Some((page, write, left)) = self.eeprom_pending else {
            return;
        };
        if left > 0 {
            self.eeprom_pending = Some((page, write, left - 1));
            return;
        }
        let stored = self.eeprom.get_mut(page as usize);
        if write {
            if let Some(stored) = stored {
                stored.copy_from_slice(&self.ram[..PAGE_BYTES]);
            }
            self.eeprom_writes += 1;
        } else {
            match stored {
                Some(stored) => self.ram[..PAGE_BYTES].copy_from_slice(stored),
                None => self.ram[..PAGE_BYTES].fill(0xFF),
            }
            self.eeprom_reads += 1;
        }
        self.eeprom_pending = None;
        self.set_serial_busy(false);
    }

    fn control_written(&mut self) {
        let word = self.ctrl_word();
        let kept = word
            & !(BIT_START_TRIG
                | BIT_REINIT_TRIG
                | BIT_SOFT_TRIG
                | BIT_EEPROM_READ_TRIG
                | BIT_EEPROM_WRITE_TRIG);
        self.ctrl[0..4].copy_from_slice(&kept.to_le_bytes());
        if word & BIT_REINIT_TRIG != 0 {
            self.armed = false;
            self.set_running(false);
        }
        if word & BIT_START_TRIG != 0 {
            self.armed = true;
            self.set_running(true);
        }
        if word & BIT_SOFT_TRIG != 0 && self.armed {
            self.fire(false);
        }
        if word & BIT_EEPROM_READ_TRIG != 0 {
            self.eeprom_command(false);
        }
        if word & BIT_EEPROM_WRITE_TRIG != 0 {
            self.eeprom_command(true);
        }
    }

    /// Called on every status read: the hardware trigger fires if it can.
    fn advance(&mut self) {
        self.eeprom_progress();
        if !self.armed || self.ctrl_word() & BIT_ENABLE_TRIGGER1 == 0 {
            return;
        }
        let input = self.config.pulse_input;
        let sources = get16(&self.ctrl, Space::Ctrl, REG_TRG_CONFIG);
        if sources & (1 << input) == 0 {
            return;
        }
        let level = trigger_level_of_dac(self.dac_volts(DAC_TRIGGER_LEVEL[input])) as f32;
        let falling = self.ctrl_word() & BIT_NEG_TRIGGER != 0;
        let peak = self.config.pulse_volts;
        if (falling && peak < level) || (!falling && peak > level) {
            self.fire(true);
        }
    }

    fn pulse(&self, j: usize) -> f32 {
        let c = &self.config;
        let x = j as f32 - c.pulse_position as f32;
        if x < -c.pulse_rise {
            0.0
        } else if x < 0.0 {
            c.pulse_volts * (1.0 + x / c.pulse_rise.max(1e-3))
        } else {
            c.pulse_volts * (-x / c.pulse_decay.max(1e-3)).exp()
        }
    }

    fn fire(&mut self, with_pulse: bool) {
        let stop = self.rng.random_range(0..CELLS);
        let range_low = (centre_of_rofs(self.dac_volts(DAC_ROFS)) - 0.5) as f32;
        let noise = Normal::new(0.0f32, self.config.noise_counts.max(0.0)).ok();
        for (input, &channel) in INPUT_CHANNEL.iter().enumerate() {
            for j in 0..CELLS {
                let cell = (j + stop) % CELLS;
                let volts = if with_pulse && input == self.config.pulse_input {
                    self.pulse(j)
                } else {
                    0.0
                };
                let mut raw = ((volts - range_low) * 65536.0 + self.true_readout_offset[input][j])
                    / self.true_gain[input][cell]
                    + self.true_offset[input][cell];
                if let Some(n) = &noise {
                    raw += n.sample(&mut self.rng);
                }
                let code = if self.stuck[input][cell] {
                    0xFFFF
                } else {
                    raw.round().clamp(0.0, 65535.0) as u16
                };
                let at = sample_offset(channel, j);
                self.ram[at..at + 2].copy_from_slice(&code.to_le_bytes());
            }
        }
        if self.config.firmware >= TRAILER_FIRMWARE {
            let at = READOUT_CHANNELS * CELLS * 2;
            self.ram[at..at + 4].copy_from_slice(&[stop as u8, (stop >> 8) as u8, 0, 0]);
        }
        put16(&mut self.status, Space::Status, REG_STOP_CELL0, stop as u16);
        self.last_stop_cell = stop;
        self.triggers += 1;
        self.armed = false;
        self.set_running(false);
    }

    fn command(&mut self, data: &[u8]) -> Result<usize, UsbError> {
        if self.config.log_transfers {
            self.log.push(data.to_vec());
        }
        if data.len() < 10 || data[1] != 0 {
            return Err(UsbError::Stall);
        }
        let address = u32::from_le_bytes([data[2], data[3], data[4], data[5]]);
        let size = u32::from_le_bytes([data[6], data[7], data[8], data[9]]) as usize;
        if !address.is_multiple_of(2) || !size.is_multiple_of(2) {
            return Err(UsbError::Stall);
        }
        let (space, offset) = Space::of(address).ok_or(UsbError::Stall)?;
        let offset = offset as usize;
        match data[0] {
            CMD_WRITE => {
                if data.len() != 10 + size {
                    return Err(UsbError::Stall);
                }
                let payload = &data[10..];
                match space {
                    Space::Ctrl => {
                        write_into(&mut self.ctrl, offset, payload)?;
                        if offset < 4 {
                            self.control_written();
                        }
                    }
                    Space::Ram => write_into(&mut self.ram, offset, payload)?,
                    Space::Status | Space::Fifo => {}
                }
            }
            CMD_READ => {
                if data.len() != 10 {
                    return Err(UsbError::Stall);
                }
                if space == Space::Status {
                    self.advance();
                }
                let memory: &[u8] = match space {
                    Space::Ctrl => &self.ctrl,
                    Space::Status => &self.status,
                    Space::Ram => &self.ram,
                    Space::Fifo => &[],
                };
                for i in 0..size {
                    self.fifo
                        .push_back(memory.get(offset + i).copied().unwrap_or(0));
                }
            }
            _ => return Err(UsbError::Stall),
        }
        Ok(data.len())
    }
}

/// Copies a write command's `payload` into `memory` from `offset`; one that does not fit
/// stalls, as the board does.
fn write_into(memory: &mut [u8], offset: usize, payload: &[u8]) -> Result<(), UsbError> {
    let end = offset
        .checked_add(payload.len())
        .filter(|e| *e <= memory.len())
        .ok_or(UsbError::Stall)?;
    memory[offset..end].copy_from_slice(payload);
    Ok(())
}

impl SimUsbState for SimDrs4State {
    const INTERFACE: u8 = INTERFACE;

    fn entry(&self) -> Option<UsbDeviceEntry> {
        self.plugged.then_some(UsbDeviceEntry {
            vendor_id: USB_ID.0,
            product_id: USB_ID.1,
            bus: 1,
            address: self.usb_address,
        })
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

/// A simulated DRS4 board on a simulated bus. Cloning shares the board.
pub type SimDrs4 = SimUsb<SimDrs4State>;

/// A simulated USB bus with one simulated DRS4 board.
pub type SimDrs4Bus = SimUsbBus<SimDrs4State>;

/// An open handle on the simulated board.
pub type SimDrs4Handle = SimUsbHandle<SimDrs4State>;

impl SimDrs4 {
    /// Powers up a simulated board.
    pub fn new(config: SimDrs4Config) -> Self {
        SimUsb::with_state(SimDrs4State::new(config))
    }

    /// Pulls the plug.
    pub fn unplug(&self) {
        self.state().plugged = false;
    }

    /// Plugs the board back in, as after a power cycle: control registers and FIFO cleared,
    /// not armed, at the next USB address; handles opened before are dead. The EEPROM and
    /// the board's true calibration are kept.
    pub fn plug(&self) {
        let mut s = self.state();
        if s.plugged {
            return;
        }
        s.plugged = true;
        s.generation += 1;
        s.usb_address = s.usb_address.wrapping_add(1).max(1);
        s.ctrl = [0; 0x40];
        s.fifo.clear();
        s.armed = false;
        s.set_running(false);
        s.eeprom_pending = None;
        s.set_serial_busy(false);
        s.unplug_after_in_bytes = None;
    }

    /// Pulls the plug after `bytes` more bytes have gone out on EP 0x88.
    pub fn unplug_after_in_bytes(&self, bytes: usize) {
        self.state().unplug_after_in_bytes = Some(bytes);
    }
}

impl Drs4Bus for SimDrs4Bus {
    fn handle_for_reconnect(&self) -> Result<Self, UsbError> {
        Ok(self.clone())
    }
}

impl UsbTransport for SimDrs4Handle {
    fn control_out(&mut self, _: Setup, _: &[u8], _: Duration) -> Result<usize, UsbError> {
        drop(self.live()?);
        Err(UsbError::Stall)
    }

    fn control_in(&mut self, _: Setup, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
        drop(self.live()?);
        Err(UsbError::Stall)
    }

    fn bulk_out(
        &mut self,
        endpoint: u8,
        data: &[u8],
        _timeout: Duration,
    ) -> Result<usize, UsbError> {
        let mut s = self.live()?;
        if endpoint != EP_OUT {
            return Err(UsbError::Stall);
        }
        s.command(data)
    }

    fn bulk_in(
        &mut self,
        endpoint: u8,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, UsbError> {
        let mut s = self.live()?;
        if endpoint != EP_IN {
            return Err(UsbError::Stall);
        }
        if s.fifo.is_empty() {
            return Err(UsbError::Timeout);
        }
        let mut n = buf.len().min(s.fifo.len());
        if let Some(left) = s.unplug_after_in_bytes {
            if left == 0 {
                s.plugged = false;
                return Err(UsbError::NoDevice);
            }
            n = n.min(left);
            s.unplug_after_in_bytes = Some(left - n);
        }
        for (slot, b) in buf[..n].iter_mut().zip(s.fifo.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}
