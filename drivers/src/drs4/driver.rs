//! The DRS4 evaluation board driver over any [`UsbTransport`]: open (drain stale FIFO,
//! identify, firmware check), configure, arm, wait for the trigger, read 4 × 1024 cells,
//! calibrate per physical cell and write one event.
//!
//! Calibration: from `calibration_file` when given, otherwise read from the board's EEPROM
//! at open (PSI's layout, see [`eeprom`]), between setting the DACs and
//! enabling the trigger; a board whose EEPROM says it is not calibrated runs with nominal
//! tables and says so in [`Drs4::calibration_warnings`] and the run metadata. The stored
//! cell widths are used for the time axis only at the frequency they were taken at.
//!
//! Reconnect: after a disconnect the driver keeps a handle on the bus ([`Drs4Bus`]) and
//! looks for a board with the same serial number (at whatever address it comes back),
//! configures it as at open with the calibration it already has, and re-arms it if the run
//! was acquiring; until then every read says `Disconnected`.
//!
//! Event layout: 1024 records of `ch1, ch2, ch3, ch4` as `f4` volts, plus `t` (`f4`, ns since
//! the first sample) when `time_axis` is on. Guarantees: `read_event` allocates nothing (the
//! readout buffer is sized at open, command headers live on the stack), re-arms the board
//! right after each readout, and never returns samples of a readout it did not finish.
//! Must never: write the EEPROM, or busy-wait beyond the caller's timeout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::calibration::Drs4Calibration;
use super::eeprom::{self, EepromError, EepromHeader, EepromLayout};
use super::protocol::*;
use crate::driver::{
    ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Result,
    Source,
};
use crate::usb::{RetryPacing, RusbBus, UsbBus, UsbDeviceEntry, UsbError, UsbTransport};

/// A USB bus the driver keeps after open, to find its board again after an unplug.
pub trait Drs4Bus: UsbBus + Send + 'static {
    /// An owned handle on the same bus for the driver to keep (libusb: a second context;
    /// simulator: the same simulated bus).
    fn handle_for_reconnect(&self) -> Result<Self, UsbError>
    where
        Self: Sized;
}

impl Drs4Bus for RusbBus {
    fn handle_for_reconnect(&self) -> Result<Self, UsbError> {
        RusbBus::new()
    }
}

/// The kept bus with its transport type fixed, so the driver needs no bus type parameter.
trait BoardBus<T>: Send {
    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError>;
    fn open(&mut self, entry: &UsbDeviceEntry) -> Result<T, UsbError>;
}

impl<B: UsbBus + Send> BoardBus<B::Transport> for B {
    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError> {
        UsbBus::list(self)
    }

    fn open(&mut self, entry: &UsbDeviceEntry) -> Result<B::Transport, UsbError> {
        UsbBus::open(self, entry, INTERFACE)
    }
}

/// What starts a readout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drs4TriggerSource {
    /// Any of the inputs in this mask (bit 0 = CH1 … bit 3 = CH4) crossing the level.
    Inputs(u8),
    /// The external trigger input.
    External,
    /// A software trigger sent by the driver for every event (free running, pedestals).
    Software,
}

/// Configuration of a DRS4 board.
#[derive(Clone, Debug)]
pub struct Drs4Config {
    /// Sampling frequency in GHz (0.1 … 6; the board rounds it to whole 60 MHz ticks).
    pub sampling_ghz: f64,
    /// Centre of the 1 Vpp input range in volts (0 … 0.5; 0 means −0.5 … +0.5 V).
    pub range_centre: f64,
    /// Trigger source.
    pub trigger: Drs4TriggerSource,
    /// Trigger level in volts.
    pub trigger_level: f64,
    /// Trigger on the falling edge (negative pulses).
    pub trigger_falling: bool,
    /// Calibration file (see [`Drs4Calibration`]); when `None`, the calibration stored in
    /// the board's EEPROM (nominal if the board was never calibrated).
    pub calibration_file: Option<PathBuf>,
    /// Write a `t` field (ns) after the four channels.
    pub time_axis: bool,
    /// Write the calibrated samples as `i2` counts of 1/32768 V, 0 at the range centre,
    /// instead of `f4` volts: volts = counts / 32768 + range_centre. The step is half the
    /// 14-bit ADC's, and ±1 V holds every calibrated value (the calibration moves samples at
    /// the edges of the 1 V window a little outside it).
    pub counts: bool,
}

/// Counts of a volt in the `counts` format (see [`Drs4Config::counts`]).
const COUNTS_PER_VOLT: f32 = 32768.0;

impl Drs4Config {
    /// The records the board writes per event: `ch1`..`ch4` (`f4` volts or `i2` counts),
    /// and `t` (`f4` ns) with the time axis, 1024 of them. Known without the board.
    pub fn layout(&self) -> EventLayout {
        let sample = if self.counts { "i2" } else { "f4" };
        let time = self.time_axis.then(|| ("t".to_string(), "f4"));
        EventLayout::of(
            (1..=4).map(|c| (format!("ch{c}"), sample)).chain(time),
            CELLS,
        )
    }

    /// With `counts`: how each channel's counts become volts (1/32768 V per count, the
    /// range centre at 0); nothing for volts.
    pub fn channel_scales(&self) -> Vec<ChannelScale> {
        if !self.counts {
            return Vec::new();
        }
        (1..=4)
            .map(|c| ChannelScale {
                field: format!("ch{c}"),
                volts_per_count: 1.0 / COUNTS_PER_VOLT as f64,
                offset_volts: self.range_centre,
            })
            .collect()
    }
}

impl Default for Drs4Config {
    fn default() -> Self {
        Drs4Config {
            sampling_ghz: 5.0,
            range_centre: 0.0,
            trigger: Drs4TriggerSource::Inputs(1),
            trigger_level: -0.05,
            trigger_falling: true,
            calibration_file: None,
            time_axis: false,
            counts: false,
        }
    }
}

/// Board identity read at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardIdentity {
    /// DRS chip type (4).
    pub drs_type: u8,
    /// Board type (8, 9 = Eval4).
    pub board_type: u8,
    /// Serial number.
    pub serial: u16,
    /// FPGA firmware version.
    pub firmware: u16,
}

/// Where the calibration in use came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CalibrationSource {
    /// The `calibration_file`.
    File(PathBuf),
    /// The board's EEPROM.
    Eeprom {
        /// What page 0 said.
        header: EepromHeader,
        /// The stored cell widths make the time axis (stored and taken at this frequency).
        timing_used: bool,
        /// Cells with a stored offset of 0 (PSI's stuck pixels), repaired like PSI does.
        stuck_cells: usize,
    },
    /// No correction, and why.
    Nominal(String),
    /// Set or changed by the program (measured offsets, `set_calibration`): how.
    Program(String),
}

impl std::fmt::Display for CalibrationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrationSource::File(path) => write!(f, "file {}", path.display()),
            CalibrationSource::Eeprom {
                header,
                timing_used,
                ..
            } => match (header.timing_ghz, timing_used) {
                (Some(_), true) => write!(f, "eeprom (voltage, timing)"),
                (Some(ghz), false) => write!(
                    f,
                    "eeprom (voltage; timing taken at {ghz:.3} GHz, not used at this frequency)"
                ),
                (None, _) => write!(f, "eeprom (voltage; no timing calibration stored)"),
            },
            CalibrationSource::Nominal(why) => write!(f, "nominal: {why}"),
            CalibrationSource::Program(how) => write!(f, "{how}"),
        }
    }
}

/// Status polls an EEPROM page read waits for `SERIAL_BUSY` to clear, and the pause between
/// them (PSI: 100 × 10 ms).
const EEPROM_POLLS: usize = 100;
const EEPROM_POLL_PAUSE: Duration = Duration::from_millis(10);

/// A configured DRS4 board on transport `T`.
pub struct Drs4<T: UsbTransport> {
    transport: T,
    bus: Box<dyn BoardBus<T>>,
    info: DeviceInfo,
    layout: EventLayout,
    config: Drs4Config,
    identity: BoardIdentity,
    sampling_ghz: f64,
    control: u32,
    calibration: Drs4Calibration,
    calibration_source: CalibrationSource,
    calibration_warnings: Vec<String>,
    /// `calibration.stuck_cells` as a table, for the per-event repair.
    stuck: Box<[[bool; CELLS]; 4]>,
    readout: Vec<u8>,
    times: Box<[f32; CELLS]>,
    armed: bool,
    running: bool,
    connected: bool,
    stale_bytes_drained: usize,
    events: u64,
    reconnects: u64,
    /// Paces the bus look-ups while the board is gone.
    pacing: RetryPacing,
    last_stop_cell: usize,
}

impl<T: UsbTransport> Drs4<T> {
    /// Finds the first board on `bus` (04b4:1175), drains stale data, checks identity and
    /// firmware, and configures it. Keeps a handle on the bus for [`Source::reconnect`].
    pub fn open<B: Drs4Bus<Transport = T>>(
        bus: &mut B,
        config: Drs4Config,
    ) -> Result<Self, DriverError> {
        let entry = bus
            .list()
            .map_err(|e| e.into_driver_error("drs4", "scanning the USB bus"))?
            .into_iter()
            .find(|e| (e.vendor_id, e.product_id) == USB_ID)
            .ok_or_else(|| DriverError::Open {
                device: "drs4".into(),
                detail: "no DRS4 evaluation board (04b4:1175) found; check the cable and `lsusb`"
                    .into(),
            })?;
        let port = entry.port();
        let transport = bus
            .open(&entry, INTERFACE)
            .map_err(|e| e.into_driver_error(&port, "opening the board"))?;
        let kept = bus
            .handle_for_reconnect()
            .map_err(|e| e.into_driver_error(&port, "keeping the USB bus for reconnects"))?;
        let (calibration, calibration_source) = match &config.calibration_file {
            Some(path) => (
                Drs4Calibration::load(path).map_err(|e| DriverError::Config {
                    device: port.clone(),
                    detail: e.to_string(),
                })?,
                CalibrationSource::File(path.clone()),
            ),
            None => (
                Drs4Calibration::nominal(),
                CalibrationSource::Nominal("EEPROM not read yet".into()),
            ),
        };
        let layout = config.layout();
        let mut board = Drs4 {
            transport,
            bus: Box::new(kept),
            info: DeviceInfo {
                family: Family::Drs4,
                model: "DRS4 evaluation board".into(),
                serial: None,
                port,
                usb_id: Some(USB_ID),
            },
            layout,
            identity: BoardIdentity {
                drs_type: 0,
                board_type: 0,
                serial: 0,
                firmware: 0,
            },
            sampling_ghz: config.sampling_ghz,
            control: 0,
            stuck: Box::new([[false; CELLS]; 4]),
            calibration,
            calibration_source,
            calibration_warnings: Vec::new(),
            readout: vec![0; readout_bytes(u16::MAX)],
            times: Box::new([0.0; CELLS]),
            armed: false,
            running: false,
            connected: true,
            stale_bytes_drained: 0,
            events: 0,
            reconnects: 0,
            pacing: RetryPacing::default(),
            last_stop_cell: 0,
            config,
        };
        let from_file = std::mem::take(&mut board.calibration);
        board.use_calibration(from_file);
        board.drain()?;
        let identity = board.read_identity()?;
        board.accept_identity(identity)?;
        board.configure(true)?;
        Ok(board)
    }

    fn usb(&self, e: UsbError, doing: &str) -> DriverError {
        e.into_driver_error(&self.info.port, doing)
    }

    /// Reads and throws away whatever an earlier session left on EP 0x88.
    fn drain(&mut self) -> Result<()> {
        for _ in 0..1000 {
            match self
                .transport
                .bulk_in(EP_IN, &mut self.readout, Duration::from_millis(20))
            {
                Ok(0) | Err(UsbError::Timeout) => return Ok(()),
                Ok(n) => self.stale_bytes_drained += n,
                Err(e) => return Err(self.usb(e, "draining stale FIFO data")),
            }
        }
        Err(DriverError::Protocol {
            device: self.info.port.clone(),
            offset: self.stale_bytes_drained as u64,
            detail: "the board keeps sending data; power-cycle it".into(),
        })
    }

    /// Writes `data` (≤ 16 bytes) to wire address `address`.
    pub fn write(&mut self, address: u32, data: &[u8]) -> Result<()> {
        let mut frame = [0u8; 26];
        if data.len() > 16 || !data.len().is_multiple_of(2) || !address.is_multiple_of(2) {
            return Err(DriverError::Config {
                device: self.info.port.clone(),
                detail: format!(
                    "register write of {} bytes at 0x{address:x}: must be even and ≤ 16",
                    data.len()
                ),
            });
        }
        frame[..10].copy_from_slice(&header(CMD_WRITE, address, data.len() as u32));
        frame[10..10 + data.len()].copy_from_slice(data);
        let n = 10 + data.len();
        match self
            .transport
            .bulk_out(EP_OUT, &frame[..n], TRANSFER_TIMEOUT)
        {
            Ok(sent) if sent == n => Ok(()),
            Ok(sent) => Err(DriverError::Protocol {
                device: self.info.port.clone(),
                offset: address as u64,
                detail: format!("board took {sent} of {n} bytes of a write"),
            }),
            Err(e) => Err(self.usb(e, "writing a register")),
        }
    }

    /// Reads `buf.len()` bytes from wire address `address`.
    fn read_into(transport: &mut T, port: &str, address: u32, buf: &mut [u8]) -> Result<()> {
        let head = header(CMD_READ, address, buf.len() as u32);
        transport
            .bulk_out(EP_OUT, &head, TRANSFER_TIMEOUT)
            .map_err(|e| e.into_driver_error(port, "sending a read command"))?;
        let mut got = 0;
        while got < buf.len() {
            match transport.bulk_in(EP_IN, &mut buf[got..], TRANSFER_TIMEOUT) {
                Ok(0) | Err(UsbError::Timeout) => {
                    return Err(DriverError::Protocol {
                        device: port.into(),
                        offset: address as u64,
                        detail: format!(
                            "reply to a {}-byte read at 0x{address:x} stopped after {got} bytes",
                            buf.len()
                        ),
                    })
                }
                Ok(n) => got += n,
                Err(e) => return Err(e.into_driver_error(port, "reading a reply")),
            }
        }
        Ok(())
    }

    /// Reads the `N` little-endian bytes of a register.
    fn read_register<const N: usize>(
        &mut self,
        space: Space,
        register: u32,
    ) -> Result<[u8; N], DriverError> {
        let mut b = [0u8; N];
        let address = wire_address(space, register, N);
        Self::read_into(&mut self.transport, &self.info.port, address, &mut b)?;
        Ok(b)
    }

    /// Reads a 16-bit register.
    pub fn read_register16(&mut self, space: Space, register: u32) -> Result<u16, DriverError> {
        self.read_register(space, register).map(u16::from_le_bytes)
    }

    /// Writes a 16-bit control register.
    pub fn write_register16(&mut self, register: u32, value: u16) -> Result<()> {
        self.write(wire_address(Space::Ctrl, register, 2), &value.to_le_bytes())
    }

    /// Reads a 32-bit register.
    pub fn read_register32(&mut self, space: Space, register: u32) -> Result<u32, DriverError> {
        self.read_register(space, register).map(u32::from_le_bytes)
    }

    /// Writes a 32-bit control register.
    pub fn write_register32(&mut self, register: u32, value: u32) -> Result<()> {
        self.write(wire_address(Space::Ctrl, register, 4), &value.to_le_bytes())
    }

    /// Sets DAC `dac` to `volts`.
    pub fn set_dac(&mut self, dac: u8, volts: f64) -> Result<()> {
        self.write_register16(REG_DAC_OFS + 2 * dac as u32, dac_counts(volts))
    }

    /// Reads magic, types, firmware and serial number.
    fn read_identity(&mut self) -> Result<BoardIdentity, DriverError> {
        let magic = self.read_register16(Space::Status, REG_MAGIC)?;
        if magic != MAGIC {
            return Err(DriverError::Protocol {
                device: self.info.port.clone(),
                offset: wire_address(Space::Status, REG_MAGIC, 2) as u64,
                detail: format!(
                    "magic 0x{magic:04X} instead of 0x{MAGIC:04X}: not a DRS4 board, or its FPGA is not configured (power-cycle it)"
                ),
            });
        }
        let types = self.read_register16(Space::Status, REG_BOARD_TYPE)?;
        let firmware = self.read_register16(Space::Status, REG_VERSION_FW)?;
        let serial = self.read_register16(Space::Status, REG_SERIAL_BOARD)?;
        Ok(BoardIdentity {
            drs_type: types as u8,
            board_type: (types >> 8) as u8,
            serial,
            firmware,
        })
    }

    /// Keeps `identity` if this driver can read the board.
    fn accept_identity(&mut self, identity: BoardIdentity) -> Result<()> {
        let firmware = identity.firmware;
        self.identity = identity;
        self.info.serial = Some(identity.serial.to_string());
        if self.identity.drs_type != 4 {
            return Err(DriverError::Config {
                device: self.info.port.clone(),
                detail: format!(
                    "board has a DRS{} chip; this driver reads DRS4 boards only",
                    self.identity.drs_type
                ),
            });
        }
        if firmware < REQUIRED_FIRMWARE {
            return Err(DriverError::Open {
                device: self.info.port.clone(),
                detail: format!(
                    "FPGA firmware {firmware} is too old: DRS4 boards need firmware ≥ {REQUIRED_FIRMWARE}; \
                     update it with PSI's drscl/drsosc (drs-5.x) before using daq-engine"
                ),
            });
        }
        if !SUPPORTED_BOARD_TYPES.contains(&self.identity.board_type) {
            return Err(DriverError::Config {
                device: self.info.port.clone(),
                detail: format!(
                    "board type {} is not supported (only the V4 evaluation boards, types 8 and 9)",
                    self.identity.board_type
                ),
            });
        }
        self.info.model = format!(
            "DRS4 evaluation board type {} (firmware {firmware})",
            self.identity.board_type
        );
        Ok(())
    }

    /// Sets frequency, range and trigger; with `read_eeprom` and no calibration file, reads
    /// the calibration from the EEPROM after the DACs, before the trigger is enabled.
    fn configure(&mut self, read_eeprom: bool) -> Result<()> {
        let port = self.info.port.clone();
        let (setting, actual) =
            frequency_setting(self.config.sampling_ghz).ok_or_else(|| DriverError::Config {
                device: port.clone(),
                detail: format!(
                    "sampling frequency {} GHz is outside 0.1 … 6 GHz",
                    self.config.sampling_ghz
                ),
            })?;
        if !(0.0..=0.5).contains(&self.config.range_centre) {
            return Err(DriverError::Config {
                device: port.clone(),
                detail: format!(
                    "range centre {} V must be within 0 … 0.5 V",
                    self.config.range_centre
                ),
            });
        }
        let low = self.config.range_centre - 0.5;
        if self.config.trigger != Drs4TriggerSource::Software
            && !(low..=low + 1.0).contains(&self.config.trigger_level)
        {
            return Err(DriverError::Config {
                device: port,
                detail: format!(
                    "trigger level {} V lies outside the input range {low} … {} V",
                    self.config.trigger_level,
                    low + 1.0
                ),
            });
        }
        self.sampling_ghz = actual;
        // Stop anything running before reconfiguring.
        self.write_register32(REG_CTRL, BIT_REINIT_TRIG)?;
        self.write_register16(REG_FREQ_SET, setting)?;
        self.set_dac(DAC_ROFS, rofs_volts(self.config.range_centre))?;
        for dac in DAC_TRIGGER_LEVEL {
            self.set_dac(dac, trigger_dac_volts(self.config.trigger_level))?;
        }
        if read_eeprom && self.config.calibration_file.is_none() {
            self.load_eeprom_calibration()?;
        }
        let sources: u16 = match self.config.trigger {
            Drs4TriggerSource::Inputs(mask) => (mask & 0x0F) as u16,
            Drs4TriggerSource::External => 1 << 4,
            Drs4TriggerSource::Software => 0,
        };
        self.write_register16(REG_TRG_CONFIG, sources)?;
        self.control = BIT_DACTIVE | BIT_ADC_ACTIVE | BIT_READOUT_MODE;
        if self.config.trigger != Drs4TriggerSource::Software {
            self.control |= BIT_ENABLE_TRIGGER1;
        }
        if self.config.trigger_falling {
            self.control |= BIT_NEG_TRIGGER;
        }
        self.write_register32(REG_CTRL, self.control)?;
        self.armed = false;
        Ok(())
    }

    /// Reads EEPROM `page` into `buf` the way PSI's library does: page number, EEPROM-read
    /// control bit, wait for `SERIAL_BUSY` to clear, read the page from RAM address 0. Only
    /// reads: the EEPROM-write bit is never set.
    pub fn read_eeprom_page(&mut self, page: u16, buf: &mut [u8]) -> Result<()> {
        self.write_register16(REG_EEPROM_PAGE_EVAL, page)?;
        self.write_register32(REG_CTRL, self.control | BIT_EEPROM_READ_TRIG)?;
        let mut polls = 0;
        while self.read_register32(Space::Status, REG_STATUS)? & BIT_SERIAL_BUSY != 0 {
            polls += 1;
            if polls == EEPROM_POLLS {
                return Err(DriverError::Protocol {
                    device: self.info.port.clone(),
                    offset: wire_address(Space::Status, REG_STATUS, 4) as u64,
                    detail: format!(
                        "EEPROM page {page} read: the serial interface stayed busy for \
                         {EEPROM_POLLS} status reads {EEPROM_POLL_PAUSE:?} apart; power-cycle \
                         the board"
                    ),
                });
            }
            std::thread::sleep(EEPROM_POLL_PAUSE);
        }
        Self::read_into(&mut self.transport, &self.info.port, Space::Ram.base(), buf)
    }

    /// Reads and decodes the stored calibration; falls back to nominal when the EEPROM
    /// says the board is not calibrated.
    fn load_eeprom_calibration(&mut self) -> Result<()> {
        let serial = self.identity.serial;
        let Some(layout) = EepromLayout::of_board_type(self.identity.board_type) else {
            return self.nominal_calibration(format!(
                "no EEPROM layout known for board type {}",
                self.identity.board_type
            ));
        };
        let reads = layout.reads();
        let mut pages = [
            vec![0u8; reads[0].1],
            vec![0u8; reads[1].1],
            vec![0u8; reads[2].1],
        ];
        self.read_eeprom_page(reads[0].0, &mut pages[0])?;
        match eeprom::decode_header(layout, &pages[0]) {
            Ok(_) => {}
            Err(EepromError::NotCalibrated { found, offset, .. }) => {
                self.calibration_warnings.push(format!(
                    "DRS4 board {serial}: its EEPROM holds no voltage calibration (page 0 byte \
                     {offset} is 0x{found:02X}), so volts are nominal and each cell may be off \
                     by tens of mV; calibrate the board with PSI's drsosc (voltage and timing \
                     calibration) or give calibration_file"
                ));
                return self.nominal_calibration("EEPROM not calibrated".into());
            }
            Err(e) => return Err(self.bad_eeprom(e)),
        }
        for (n, (page, _)) in reads.iter().enumerate().skip(1) {
            let (_, rest) = pages.split_at_mut(n);
            self.read_eeprom_page(*page, &mut rest[0])?;
        }
        let stored = eeprom::decode(layout, [&pages[0], &pages[1], &pages[2]])
            .map_err(|e| self.bad_eeprom(e))?;
        let mut calibration = stored.calibration;
        let header = stored.header;
        // PSI stores the realised frequency (1.024 / ticks × 60 MHz, `SetFrequency`) and
        // uses the widths only within 1 MHz of it (`IsTimingCalibrationValid`).
        let timing_used = header
            .timing_ghz
            .is_some_and(|ghz| (ghz - self.sampling_ghz).abs() < 1e-3);
        if !timing_used {
            calibration.cell_width_ns = None;
            if self.config.time_axis {
                self.calibration_warnings.push(match header.timing_ghz {
                    Some(ghz) => format!(
                        "DRS4 board {serial}: the stored timing calibration was taken at {ghz:.3} \
                         GHz, this run samples at {:.3} GHz: the time axis is nominal (run at \
                         that frequency or calibrate the timing there with drsosc)",
                        self.sampling_ghz
                    ),
                    None => format!(
                        "DRS4 board {serial}: no timing calibration stored: the time axis is \
                         nominal (calibrate the timing with drsosc)"
                    ),
                });
            }
        }
        if (header.range_centre - self.config.range_centre).abs() > 0.005 {
            // [unverified] that a cell's response only shifts with the range centre: the
            // offsets are carried over under that assumption.
            self.calibration_warnings.push(format!(
                "DRS4 board {serial}: the voltage calibration was taken at range centre {} V, \
                 this run uses {} V: offsets are carried over, recalibrate at this range with \
                 drsosc for full precision",
                header.range_centre, self.config.range_centre
            ));
        }
        self.use_calibration(calibration);
        self.calibration_source = CalibrationSource::Eeprom {
            header,
            timing_used,
            stuck_cells: stored.stuck_cells,
        };
        Ok(())
    }

    /// Takes `calibration` and rebuilds the stuck-cell table (entries outside the tables
    /// are ignored).
    fn use_calibration(&mut self, calibration: Drs4Calibration) {
        self.calibration = calibration;
        *self.stuck = [[false; CELLS]; 4];
        for &(input, cell) in &self.calibration.stuck_cells {
            if input < 4 && cell < CELLS {
                self.stuck[input][cell] = true;
            }
        }
    }

    fn nominal_calibration(&mut self, why: String) -> Result<()> {
        self.use_calibration(Drs4Calibration::nominal());
        self.calibration_source = CalibrationSource::Nominal(why);
        Ok(())
    }

    fn bad_eeprom(&self, e: EepromError) -> DriverError {
        let offset = match &e {
            EepromError::OutOfRange { offset, .. } | EepromError::NotCalibrated { offset, .. } => {
                *offset as u64
            }
            EepromError::Truncated { got, .. } => *got as u64,
        };
        DriverError::Protocol {
            device: self.info.port.clone(),
            offset,
            detail: format!(
                "board {}: stored calibration refused: {e}; recalibrate the board with PSI's \
                 drsosc, or give calibration_file to run with a calibration of your own",
                self.identity.serial
            ),
        }
    }

    /// Where the calibration in use came from.
    pub fn calibration_source(&self) -> &CalibrationSource {
        &self.calibration_source
    }

    /// What the user should know about the calibration (not calibrated, other range, …),
    /// each naming the board; empty when all is well.
    pub fn calibration_warnings(&self) -> &[String] {
        &self.calibration_warnings
    }

    /// Identity read at open.
    pub fn identity(&self) -> BoardIdentity {
        self.identity
    }

    /// Sampling frequency the board really runs at, GHz.
    pub fn sampling_ghz(&self) -> f64 {
        self.sampling_ghz
    }

    /// The calibration applied.
    pub fn calibration(&self) -> &Drs4Calibration {
        &self.calibration
    }

    /// Replaces the calibration.
    pub fn set_calibration(&mut self, calibration: Drs4Calibration) {
        self.use_calibration(calibration);
        self.calibration_source = CalibrationSource::Program("set by the program".into());
    }

    /// Bytes thrown away from the FIFO at open.
    pub fn stale_bytes_drained(&self) -> usize {
        self.stale_bytes_drained
    }

    /// Times the board was found again after a disconnect.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Stop cell of the last readout.
    pub fn last_stop_cell(&self) -> usize {
        self.last_stop_cell
    }

    fn check_connected(&self) -> Result<()> {
        if self.connected {
            return Ok(());
        }
        Err(DriverError::Disconnected {
            device: self.info.port.clone(),
            detail: format!(
                "board {} has not been found again yet; call reconnect until it is back",
                self.identity.serial
            ),
        })
    }

    fn arm(&mut self) -> Result<()> {
        self.write_register32(REG_CTRL, self.control | BIT_START_TRIG)?;
        self.armed = true;
        Ok(())
    }

    /// Waits until the armed board has triggered and read its cells into RAM. `false` on
    /// timeout (still armed).
    fn wait_for_trigger(&mut self, deadline: Instant) -> Result<bool> {
        loop {
            let status = self.read_register32(Space::Status, REG_STATUS)?;
            if status & BIT_RUNNING == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Reads the waveform RAM and returns the stop cell.
    fn read_cells(&mut self) -> Result<usize, DriverError> {
        let n = readout_bytes(self.identity.firmware);
        let address = Space::Ram.base();
        Self::read_into(
            &mut self.transport,
            &self.info.port,
            address,
            &mut self.readout[..n],
        )?;
        let stop = if self.identity.firmware >= TRAILER_FIRMWARE {
            u16::from_le_bytes([self.readout[n - 4], self.readout[n - 3]])
        } else {
            self.read_register16(Space::Status, REG_STOP_CELL0)?
        } as usize;
        if stop >= CELLS {
            return Err(DriverError::Protocol {
                device: self.info.port.clone(),
                offset: (n - 4) as u64,
                detail: format!("stop cell {stop} is not below {CELLS}"),
            });
        }
        self.last_stop_cell = stop;
        Ok(stop)
    }

    /// One triggered readout into the RAM buffer; `None` on timeout.
    fn acquire(&mut self, timeout: Duration, soft: bool) -> Result<Option<usize>, DriverError> {
        let deadline = Instant::now() + timeout;
        if !self.armed {
            self.arm()?;
        }
        if soft {
            self.write_register32(REG_CTRL, self.control | BIT_SOFT_TRIG)?;
        }
        if !self.wait_for_trigger(deadline)? {
            return Ok(None);
        }
        self.armed = false;
        let stop = self.read_cells()?;
        // Re-arm at once: the next event can arrive while this one is converted.
        self.arm()?;
        Ok(Some(stop))
    }

    /// Measures per-cell offsets with `events` software-triggered readouts of inputs held at
    /// 0 V (disconnect them or terminate them), keeping the gains. Restores the trigger
    /// configuration afterwards.
    pub fn calibrate_offsets(&mut self, events: usize) -> Result<()> {
        let saved = self.control;
        self.control &= !BIT_ENABLE_TRIGGER1;
        self.write_register32(REG_CTRL, self.control | BIT_REINIT_TRIG)?;
        self.armed = false;
        let mut sum = vec![[0.0f64; CELLS]; 4];
        let mut count = vec![[0u32; CELLS]; 4];
        let mut result = Ok(());
        for _ in 0..events {
            match self.acquire(Duration::from_secs(1), true) {
                Ok(Some(stop)) => {
                    for (input, channel) in INPUT_CHANNEL.iter().enumerate() {
                        for j in 0..CELLS {
                            let at = sample_offset(*channel, j);
                            let raw = u16::from_le_bytes([self.readout[at], self.readout[at + 1]]);
                            let cell = (j + stop) % CELLS;
                            sum[input][cell] += raw as f64;
                            count[input][cell] += 1;
                        }
                    }
                }
                Ok(None) => {
                    result = Err(DriverError::Protocol {
                        device: self.info.port.clone(),
                        offset: 0,
                        detail: "software trigger did not complete within 1 s".into(),
                    });
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.control = saved;
        self.write_register32(REG_CTRL, self.control | BIT_REINIT_TRIG)?;
        self.armed = false;
        result?;
        let range_low = self.config.range_centre - 0.5;
        for input in 0..4 {
            for cell in 0..CELLS {
                if count[input][cell] > 0 {
                    let zero_code =
                        -range_low * 65536.0 / self.calibration.gain[input][cell] as f64;
                    self.calibration.offset[input][cell] =
                        (sum[input][cell] / count[input][cell] as f64 - zero_code) as f32;
                }
            }
        }
        self.calibration_source = CalibrationSource::Program(format!(
            "offsets measured with {events} pedestal events, the rest from {}",
            self.calibration_source
        ));
        Ok(())
    }

    fn write_event(&mut self, stop: usize, out: &mut [u8]) {
        let counts = self.config.counts;
        // Counts are the calibrated value on the board's 16-bit scale, 0 at the range
        // centre: the volts of a range centred on 0, in steps of 1 / COUNTS_PER_VOLT.
        let range_low = if counts {
            -0.5
        } else {
            (self.config.range_centre - 0.5) as f32
        };
        if self.config.time_axis {
            self.calibration
                .time_axis(stop, self.sampling_ghz, &mut self.times);
        }
        // Bytes of one sample, and of one record (four channels, then `t`).
        let width = if counts { 2 } else { 4 };
        let samples = 4 * width;
        let record = samples + if self.config.time_axis { 4 } else { 0 };
        let put = |out: &mut [u8], at: usize, volts: f32| {
            if counts {
                let c = (volts * COUNTS_PER_VOLT).round().clamp(-32768.0, 32767.0) as i16;
                out[at..at + 2].copy_from_slice(&c.to_le_bytes());
            } else {
                out[at..at + 4].copy_from_slice(&volts.to_le_bytes());
            }
        };
        for j in 0..CELLS {
            let cell = (j + stop) % CELLS;
            let base = j * record;
            for (input, channel) in INPUT_CHANNEL.iter().enumerate() {
                let at = sample_offset(*channel, j);
                let raw = u16::from_le_bytes([self.readout[at], self.readout[at + 1]]);
                let volts = self.calibration.volts(input, cell, j, raw, range_low);
                put(out, base + width * input, volts);
            }
            if self.config.time_axis {
                out[base + samples..base + samples + 4]
                    .copy_from_slice(&self.times[j].to_le_bytes());
            }
        }
        // Stuck cells: the mean of the nearest usable readout neighbours on either side,
        // looked for up to `STUCK_REACH` cells away, else the direct neighbours (PSI's
        // `CalibrateWaveform` always takes the direct ones, which leaves the first of two
        // adjacent stuck cells half repaired).
        const STUCK_REACH: usize = 8;
        let stuck = &self.stuck;
        // A written sample back in volts (of the range written: centred on 0 for counts).
        let sample = |out: &[u8], j: usize, input: usize| {
            let at = j * record + width * input;
            if counts {
                f32::from(i16::from_le_bytes([out[at], out[at + 1]])) / COUNTS_PER_VOLT
            } else {
                f32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]])
            }
        };
        let usable = |input: usize, j: usize| !stuck[input][(j + stop) % CELLS];
        for &(input, cell) in &self.calibration.stuck_cells {
            if input >= 4 || cell >= CELLS {
                continue;
            }
            let j = (cell + CELLS - stop) % CELLS;
            let left = (1..=STUCK_REACH)
                .map(|d| (j + CELLS - d) % CELLS)
                .find(|&k| usable(input, k))
                .unwrap_or((j + CELLS - 1) % CELLS);
            let right = (1..=STUCK_REACH)
                .map(|d| (j + d) % CELLS)
                .find(|&k| usable(input, k))
                .unwrap_or((j + 1) % CELLS);
            let mean = (sample(out, left, input) + sample(out, right, input)) / 2.0;
            put(out, j * record + width * input, mean);
        }
    }
}

impl<T: UsbTransport> Drs4<T> {
    /// One look at the bus for the board (see [`Source::reconnect`]).
    fn look_for_the_board(&mut self) -> Result<bool> {
        // Until a board with our serial number is configured again, the transport may be a
        // dead handle or another board: nothing may use it.
        self.connected = false;
        let entries = match self.bus.list() {
            Ok(entries) => entries,
            Err(UsbError::NoDevice | UsbError::Timeout) => return Ok(false),
            Err(e) => return Err(self.usb(e, "scanning the USB bus for the board again")),
        };
        let wanted = self.identity.serial;
        for entry in entries
            .iter()
            .filter(|e| (e.vendor_id, e.product_id) == USB_ID)
        {
            // A board that cannot be opened (still enumerating, held by another program)
            // is not ours to take: look at the next one.
            let Ok(transport) = self.bus.open(entry) else {
                continue;
            };
            self.transport = transport;
            self.info.port = entry.port();
            self.armed = false;
            let identity = match self.drain().and_then(|()| self.read_identity()) {
                Ok(identity) => identity,
                Err(DriverError::Disconnected { .. }) => continue,
                Err(e) => return Err(e),
            };
            if identity.serial != wanted {
                continue;
            }
            let restart = match self
                .accept_identity(identity)
                .and_then(|()| self.configure(false))
                .and_then(|()| if self.running { self.arm() } else { Ok(()) })
            {
                Ok(()) => true,
                Err(DriverError::Disconnected { .. }) => false,
                Err(e) => return Err(e),
            };
            if restart {
                self.connected = true;
                self.reconnects += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl<T: UsbTransport> Source for Drs4<T> {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn channel_scales(&self) -> Vec<ChannelScale> {
        self.config.channel_scales()
    }

    fn start(&mut self) -> Result<()> {
        self.check_connected()?;
        self.running = true;
        self.arm()
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        crate::driver::check_event_buffer(&self.info.port, out.len(), self.layout.event_size())?;
        self.check_connected()?;
        let soft = self.config.trigger == Drs4TriggerSource::Software;
        let Some(stop) = self.acquire(timeout, soft)? else {
            return Ok(ReadOutcome::Idle);
        };
        self.write_event(stop, out);
        self.events += 1;
        Ok(ReadOutcome::Event(EventInfo::default()))
    }

    fn stop(&mut self) -> Result<()> {
        self.armed = false;
        self.running = false;
        self.write_register32(REG_CTRL, self.control | BIT_REINIT_TRIG)
    }

    /// Looks for a board with the same serial number on the bus (it may come back at another
    /// address), opens it, drains it, checks it, configures it as at open with the same
    /// calibration and re-arms it if acquisition was running. `Ok(false)` while no such board
    /// answers. The importer calls this on every turn while the board is gone, so the bus is
    /// looked at only when the pacing allows: at once, then 50 ms doubling to 1 s.
    fn reconnect(&mut self) -> Result<bool> {
        self.pacing.wait_turn();
        let back = self.look_for_the_board();
        match back {
            Ok(true) => self.pacing.succeeded(),
            Ok(false) | Err(_) => self.pacing.failed(),
        }
        back
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let mut meta = vec![
            ("drs4.serial".into(), self.identity.serial.to_string()),
            ("drs4.firmware".into(), self.identity.firmware.to_string()),
            (
                "drs4.board_type".into(),
                self.identity.board_type.to_string(),
            ),
            (
                "drs4.sampling_ghz".into(),
                format!("{:.6}", self.sampling_ghz),
            ),
            (
                "drs4.range_centre_volts".into(),
                self.config.range_centre.to_string(),
            ),
            (
                "drs4.time_calibrated".into(),
                self.calibration.cell_width_ns.is_some().to_string(),
            ),
            (
                "drs4.calibration".into(),
                self.calibration_source.to_string(),
            ),
            ("drs4.events".into(), self.events.to_string()),
            ("drs4.reconnects".into(), self.reconnects.to_string()),
        ];
        if let CalibrationSource::Eeprom { header, .. } = &self.calibration_source {
            meta.push((
                "drs4.calibrated_range_centre_volts".into(),
                header.range_centre.to_string(),
            ));
            if let Some(t) = header.temperature_c {
                meta.push(("drs4.calibrated_temperature_c".into(), t.to_string()));
            }
            if let Some(ghz) = header.timing_ghz {
                meta.push(("drs4.timing_calibrated_ghz".into(), format!("{ghz:.6}")));
            }
            meta.push((
                "drs4.stuck_cells".into(),
                self.calibration.stuck_cells.len().to_string(),
            ));
        }
        if !self.calibration_warnings.is_empty() {
            meta.push((
                "drs4.calibration_warning".into(),
                self.calibration_warnings.join("; "),
            ));
        }
        meta
    }
}
