//! A simulated Hantek 6022 behind the same [`UsbTransport`] the real device uses.
//!
//! Guarantees: the simulator answers exactly the control requests the firmware answers
//! (HARDWARE.md A.11) and stalls every other one, as the device does; in cold state it only
//! accepts 0xA0 RAM writes, and releasing the CPU after an upload re-enumerates it with the
//! new product id, which kills the old handle ([`UsbError::NoDevice`]). Unplugged, it kills
//! every handle and leaves the bus; replugged, it comes back cold, as the hardware does.
//! While running it streams uint8 samples on 0x86 (CH1,CH2 interleaved in two-channel
//! mode), starting with `glitch_bytes` of garbage as the real ADC does. Every transfer is
//! logged for byte-exact tests. Deterministic for a given seed; unpaced by default (data as fast as it is read).
//! Must never be mistaken for hardware: its port is `sim:hantek6022`.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::protocol::*;
use crate::usb::sim::{SimUsb, SimUsbBus, SimUsbHandle, SimUsbState};
use crate::usb::{UsbDeviceEntry, UsbError, UsbTransport};

/// What the simulated inputs see.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SimSignal {
    /// A sample counter: frame n carries CH1 = n mod 256, CH2 = (n / 256) mod 256 (raw
    /// codes; in one-channel mode CH1 only), so every lost or repeated sample shows.
    Counter,
    /// Exponential pulses (instant rise) plus Gaussian noise on `channel` (0 or 1); the
    /// other channel carries noise only. Pulse k starts at frame `first + k·period`
    /// (frames counted from the start of the stream, glitch bytes included).
    Pulses {
        /// Channel with pulses (0 = CH1).
        channel: usize,
        /// Frame of the first pulse.
        first: u64,
        /// Frames between pulses.
        period: u64,
        /// Pulse height in volts (sign = polarity).
        amplitude_volts: f32,
        /// Decay constant in frames.
        decay_frames: f32,
        /// Noise standard deviation in volts.
        noise_volts: f32,
    },
}

/// How the simulated scope starts.
#[derive(Clone, Debug)]
pub struct SimHantekConfig {
    /// Which model it is (selects the cold product id).
    pub model: Model,
    /// `None`: cold (needs firmware). `Some(f)`: already running firmware `f`.
    pub running_firmware: Option<FirmwareFlavour>,
    /// The firmware an upload turns it into (decides the product id after re-enumeration).
    pub uploads_become: FirmwareFlavour,
    /// Input signal.
    pub signal: SimSignal,
    /// Garbage bytes at the start of every stream.
    pub glitch_bytes: usize,
    /// Seed of the noise generator.
    pub seed: u64,
    /// If true, bulk reads deliver no faster than the set sample rate (for live setups).
    pub paced: bool,
}

impl Default for SimHantekConfig {
    fn default() -> Self {
        SimHantekConfig {
            model: Model::Dso6022Be,
            running_firmware: Some(FirmwareFlavour::Custom),
            uploads_become: FirmwareFlavour::Custom,
            signal: SimSignal::Counter,
            glitch_bytes: 2600,
            seed: 6022,
            paced: false,
        }
    }
}

/// The simulated device's state (what the firmware keeps).
#[derive(Debug)]
pub struct SimHantekState {
    config: SimHantekConfig,
    /// Current (vendor, product) id.
    pub usb_id: (u16, u16),
    /// Firmware running, `None` when cold.
    pub firmware: Option<FirmwareFlavour>,
    /// Bumped on every re-enumeration or unplug; handles of an older generation are dead.
    pub generation: u32,
    /// Device address on the simulated bus (changes on re-enumeration).
    pub address: u8,
    /// False after [`SimHantek::unplug`].
    pub plugged: bool,
    /// FX2 RAM as written by 0xA0.
    pub ram: Vec<u8>,
    /// Bytes written to RAM outside the CPU control register since power-up.
    pub ram_bytes_written: usize,
    /// CPU held in reset.
    pub cpu_held: bool,
    /// Gain codes of CH1, CH2.
    pub gain: [u8; 2],
    /// Sample-rate code.
    pub rate_code: u8,
    /// Active channels (1 or 2).
    pub channels: u8,
    /// Acquisition running.
    pub running: bool,
    /// Coupling byte.
    pub coupling: u8,
    /// Calibration output code.
    pub cal_frequency: u8,
    /// 256-byte EEPROM (0xA2).
    pub eeprom: [u8; 256],
    /// Every control transfer received, in order.
    pub log: Vec<ControlTransfer>,
    /// Bytes streamed since the last start.
    pub stream_bytes: u64,
    /// Bulk transfers answered since the last start.
    pub bulk_transfers: u64,
    started_at: Instant,
    rng: Xoshiro256PlusPlus,
}

impl SimHantekState {
    fn new(config: SimHantekConfig) -> Self {
        let cold_pid = cold_product_id(config.model);
        let mut eeprom = [0x80u8; 256];
        eeprom[..8].copy_from_slice(&[
            0xc0,
            0xb4,
            0x04,
            (cold_pid & 0xff) as u8,
            (cold_pid >> 8) as u8,
            0,
            0,
            0,
        ]);
        let mut state = SimHantekState {
            usb_id: (0x04b4, cold_pid),
            firmware: None,
            generation: 0,
            address: 5,
            plugged: true,
            ram: vec![0; 0x10000],
            ram_bytes_written: 0,
            cpu_held: false,
            gain: [1, 1],
            rate_code: 1,
            channels: 2,
            running: false,
            coupling: 0x11,
            cal_frequency: 1,
            eeprom,
            log: Vec::new(),
            stream_bytes: 0,
            bulk_transfers: 0,
            started_at: Instant::now(),
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
        };
        if let Some(flavour) = state.config.running_firmware {
            state.become_firmware(flavour);
        }
        state
    }

    /// Power returns after an unplug: the FX2 forgets its firmware and RAM and enumerates
    /// with the cold id at a new address, as a replugged 6022 does; the EEPROM keeps its
    /// bytes. Handles of the earlier generation stay dead.
    fn power_up_cold(&mut self) {
        self.usb_id = (0x04b4, cold_product_id(self.config.model));
        self.firmware = None;
        self.generation += 1;
        self.address = self.address.wrapping_add(1);
        self.plugged = true;
        self.ram.fill(0);
        self.ram_bytes_written = 0;
        self.cpu_held = false;
        self.gain = [1, 1];
        self.rate_code = 1;
        self.channels = 2;
        self.running = false;
        self.coupling = 0x11;
        self.cal_frequency = 1;
        self.stream_bytes = 0;
        self.bulk_transfers = 0;
    }

    fn become_firmware(&mut self, flavour: FirmwareFlavour) {
        self.firmware = Some(flavour);
        self.usb_id = match (flavour, self.config.model) {
            (FirmwareFlavour::Fx2lafw, _) => (0x1d50, 0x608e),
            (FirmwareFlavour::Custom, Model::Dso6022Bl) => (0x04b5, 0x602a),
            (FirmwareFlavour::Custom, _) => (0x04b5, 0x6022),
        };
        self.rate_code = rate_code(flavour, 1_000_000).unwrap_or(1);
    }

    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<usize, UsbError> {
        let Setup {
            request_type,
            request,
            value,
            index,
        } = setup;
        if request_type != VENDOR_OUT || index != 0 {
            return Err(UsbError::Stall);
        }
        if request == REQ_FIRMWARE_RAM {
            // The FX2 core answers 0xA0 itself, with or without firmware.
            let end = value as usize + data.len();
            if end > self.ram.len() {
                return Err(UsbError::Stall);
            }
            if value == CPUCS_ADDRESS && data.len() == 1 {
                let hold = data[0] & 1 == 1;
                let released = self.cpu_held && !hold;
                self.cpu_held = hold;
                if released && self.firmware.is_none() && self.ram_bytes_written > 0 {
                    // The new firmware disconnects and comes back with its own id.
                    let flavour = self.config.uploads_become;
                    self.become_firmware(flavour);
                    self.generation += 1;
                    self.address = self.address.wrapping_add(1);
                }
            } else {
                self.ram[value as usize..end].copy_from_slice(data);
                self.ram_bytes_written += data.len();
            }
            return Ok(data.len());
        }
        let Some(flavour) = self.firmware else {
            return Err(UsbError::Stall);
        };
        if data.len() != 1 {
            return Err(UsbError::Stall);
        }
        let b = data[0];
        match request {
            REQ_CH1_GAIN | REQ_CH2_GAIN if Gain::from_code(b).is_some() => {
                self.gain[(request - REQ_CH1_GAIN) as usize] = b;
            }
            REQ_SAMPLE_RATE if rate_from_code(flavour, b).is_some() => self.rate_code = b,
            REQ_START_STOP if b <= 1 => {
                self.running = b == 1;
                if self.running {
                    // Start clears the FIFO: the stream (and its counter) begins anew.
                    self.stream_bytes = 0;
                    self.bulk_transfers = 0;
                    self.started_at = Instant::now();
                }
            }
            REQ_CHANNELS if b == 1 || b == 2 => self.channels = b,
            REQ_COUPLING if matches!(b, 0x00 | 0x01 | 0x10 | 0x11) => self.coupling = b,
            REQ_CAL_FREQUENCY => self.cal_frequency = b,
            _ => return Err(UsbError::Stall),
        }
        Ok(1)
    }

    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        let Setup {
            request_type,
            request,
            value,
            ..
        } = setup;
        if request_type != VENDOR_IN || self.firmware.is_none() {
            return Err(UsbError::Stall);
        }
        match request {
            REQ_EEPROM => {
                let start = value as usize;
                let end = (start + buf.len()).min(self.eeprom.len());
                if start >= end {
                    return Err(UsbError::Stall);
                }
                buf[..end - start].copy_from_slice(&self.eeprom[start..end]);
                Ok(end - start)
            }
            REQ_FIRMWARE_RAM => {
                let start = value as usize;
                let end = (start + buf.len()).min(self.ram.len());
                buf[..end - start].copy_from_slice(&self.ram[start..end]);
                Ok(end - start)
            }
            _ => Err(UsbError::Stall),
        }
    }

    fn sample_code(&mut self, frame: u64, channel: usize) -> u8 {
        match self.config.signal {
            SimSignal::Counter => {
                if channel == 0 {
                    frame as u8
                } else {
                    (frame >> 8) as u8
                }
            }
            SimSignal::Pulses {
                channel: pulsed,
                first,
                period,
                amplitude_volts,
                decay_frames,
                noise_volts,
            } => {
                let mut volts = 0.0f32;
                if channel == pulsed && frame >= first && period > 0 {
                    let since = ((frame - first) % period) as f32;
                    volts = amplitude_volts * (-since / decay_frames.max(1e-3)).exp();
                }
                if noise_volts > 0.0 {
                    if let Ok(normal) = Normal::new(0.0f32, noise_volts) {
                        volts += normal.sample(&mut self.rng);
                    }
                }
                let full_scale = Gain::from_code(self.gain[channel])
                    .unwrap_or(Gain::X1)
                    .full_scale_volts();
                let code = (volts / full_scale * 128.0).round() + CENTRE_CODE as f32;
                code.clamp(0.0, 255.0) as u8
            }
        }
    }

    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8]) -> Result<usize, UsbError> {
        if endpoint != SAMPLE_ENDPOINT || self.firmware.is_none() {
            return Err(UsbError::Stall);
        }
        if !self.running {
            return Err(UsbError::Timeout);
        }
        let channels = self.channels.max(1) as u64;
        let mut n = buf.len();
        if self.config.paced {
            let rate = self
                .firmware
                .and_then(|f| rate_from_code(f, self.rate_code))
                .unwrap_or(1_000_000);
            let due = (self.started_at.elapsed().as_secs_f64() * rate as f64) as u64 * channels;
            let available = due.saturating_sub(self.stream_bytes) as usize;
            if available == 0 {
                return Err(UsbError::Timeout);
            }
            n = n.min(available);
        }
        // Frame and channel of the next byte, advanced without dividing per byte.
        let mut frame = self.stream_bytes / channels;
        let mut channel = (self.stream_bytes % channels) as usize;
        for slot in buf[..n].iter_mut() {
            let position = self.stream_bytes;
            self.stream_bytes += 1;
            *slot = if position < self.config.glitch_bytes as u64 {
                if position.is_multiple_of(2) {
                    0xff
                } else {
                    self.rng.random()
                }
            } else {
                self.sample_code(frame, channel)
            };
            channel += 1;
            if channel as u64 == channels {
                channel = 0;
                frame += 1;
            }
        }
        self.bulk_transfers += 1;
        Ok(n)
    }
}

/// The product id a cold (firmware-less) scope of `model` enumerates with.
fn cold_product_id(model: Model) -> u16 {
    match model {
        Model::Dso6022Be => 0x6022,
        Model::Dso6022Bl => 0x602a,
        Model::Dso2020 => 0x2020,
    }
}

impl SimUsbState for SimHantekState {
    const INTERFACE: u8 = INTERFACE;

    fn entry(&self) -> Option<UsbDeviceEntry> {
        self.plugged.then_some(UsbDeviceEntry {
            vendor_id: self.usb_id.0,
            product_id: self.usb_id.1,
            bus: 1,
            address: self.address,
        })
    }

    fn generation(&self) -> u64 {
        u64::from(self.generation)
    }

    fn physical_port(&self, entry: &UsbDeviceEntry) -> Option<String> {
        // One socket: the scope is always in hub port 4 of bus 1, whatever its address.
        (entry.bus == 1).then(|| "1-4".to_string())
    }
}

/// A simulated scope plugged into a simulated bus. Cloning shares the device.
pub type SimHantek = SimUsb<SimHantekState>;

/// A simulated USB bus with one simulated Hantek on it.
pub type SimHantekBus = SimUsbBus<SimHantekState>;

/// An open handle on the simulated scope; dies when the device re-enumerates.
pub type SimHantekHandle = SimUsbHandle<SimHantekState>;

impl SimHantek {
    /// Powers up a simulated scope.
    pub fn new(config: SimHantekConfig) -> Self {
        SimUsb::with_state(SimHantekState::new(config))
    }

    /// Pulls the plug: every open handle fails with `NoDevice`, the bus lists nothing.
    pub fn unplug(&self) {
        let mut s = self.state();
        s.plugged = false;
        s.running = false;
        s.generation += 1;
    }

    /// Plugs it in again after [`unplug`](Self::unplug): it comes back COLD (cold-boot
    /// product id, no firmware, a new address), so the driver must upload the firmware and
    /// wait for the re-enumeration again. Does nothing while it is plugged in.
    pub fn replug(&self) {
        let mut s = self.state();
        if !s.plugged {
            s.power_up_cold();
        }
    }
}

impl UsbTransport for SimHantekHandle {
    fn control_out(
        &mut self,
        setup: Setup,
        data: &[u8],
        _timeout: Duration,
    ) -> Result<usize, UsbError> {
        let mut s = self.live()?;
        s.log.push(ControlTransfer {
            setup,
            data: data.to_vec(),
        });
        s.control_out(setup, data)
    }

    fn control_in(
        &mut self,
        setup: Setup,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, UsbError> {
        let mut s = self.live()?;
        if setup.index != 0 {
            return Err(UsbError::Stall);
        }
        let result = s.control_in(setup, buf);
        let returned = result
            .as_ref()
            .map(|n| buf[..*n].to_vec())
            .unwrap_or_default();
        s.log.push(ControlTransfer {
            setup,
            data: returned,
        });
        result
    }

    fn bulk_out(
        &mut self,
        _endpoint: u8,
        _data: &[u8],
        _timeout: Duration,
    ) -> Result<usize, UsbError> {
        drop(self.live()?);
        Err(UsbError::Stall)
    }

    fn bulk_in(
        &mut self,
        endpoint: u8,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, UsbError> {
        let result = self.live()?.bulk_in(endpoint, buf);
        if result == Err(UsbError::Timeout) {
            // A real read blocks for its timeout; stay short so stop() stays quick.
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
        }
        result
    }
}
