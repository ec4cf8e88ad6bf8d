//! The Hantek 6022 driver over any [`UsbTransport`]: open (with firmware upload and
//! re-enumeration on a cold device), configure, gapless streaming, software trigger.
//!
//! Guarantees: samples are read by a dedicated reader thread in large bulk transfers into a
//! pool of buffers allocated before the run and passed through bounded channels set up at
//! start, so a run allocates nothing per transfer or per event; the first
//! `discard_initial_bytes` of every stream (ADC settling glitch) never reach an event; a
//! triggered event holds `pre_trigger` samples before the crossing; events never overlap.
//! After an unplug, [`Source::reconnect`] finds the scope again on the bus it was opened on
//! (at the same physical port where the bus reports one), uploads the firmware again when it
//! came back cold, restores channels, sample rate and gains, and restarts the reader thread
//! with a fresh event cutter: samples from before and after a gap never share an event.
//! Must never: block in `read_event` longer than its timeout, allocate there, or publish an
//! event whose samples are not contiguous in the stream.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::firmware::{upload, FirmwareImage};
use super::protocol::*;
use crate::driver::{
    ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Result,
    Source,
};
use crate::usb::{RetryPacing, UsbBus, UsbDeviceEntry, UsbError, UsbTransport};

/// Which edge fires the trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Previous sample below the level, this one at or above.
    Rising,
    /// Previous sample above the level, this one at or below.
    Falling,
}

/// Software trigger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trigger {
    /// Channel watched (0 = CH1, 1 = CH2).
    pub channel: usize,
    /// Level in volts (after calibration).
    pub level_volts: f32,
    /// Edge.
    pub edge: Edge,
    /// Samples kept before the crossing sample (which is sample `pre_trigger` of the event).
    pub pre_trigger: usize,
}

/// Sample format written into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// Calibrated volts as `f4`.
    Volts,
    /// The raw ADC code as `u1` (0x80 ≈ 0 V).
    Raw,
    /// ADC counts as `i1`: the code − 0x80, so 0 ≈ 0 V (the code with its top bit flipped).
    Counts,
}

impl SampleFormat {
    /// The numpy type of a sample.
    pub fn numpy_type(self) -> &'static str {
        match self {
            SampleFormat::Volts => "f4",
            SampleFormat::Raw => "u1",
            SampleFormat::Counts => "i1",
        }
    }
}

impl HantekConfig {
    /// The records the scope writes per event: `ch1` (and `ch2`) in the sample format,
    /// `samples_per_event` of them. Known without the device.
    pub fn layout(&self) -> EventLayout {
        EventLayout::of(
            (1..=self.channels).map(|c| (format!("ch{c}"), self.format.numpy_type())),
            self.samples_per_event,
        )
    }

    /// How each channel's integer samples become volts (as [`raw_to_volts`] does, with the
    /// channel's gain and calibration), or nothing for volts.
    pub fn channel_scales(&self) -> Vec<ChannelScale> {
        let centre = match self.format {
            SampleFormat::Volts => return Vec::new(),
            SampleFormat::Raw => f64::from(CENTRE_CODE),
            SampleFormat::Counts => 0.0,
        };
        (0..self.channels.clamp(1, 2) as usize)
            .map(|c| {
                let cal = self.calibration[c];
                let per_count =
                    f64::from(cal.gain) * f64::from(self.gains[c].full_scale_volts()) / 128.0;
                ChannelScale {
                    field: format!("ch{}", c + 1),
                    volts_per_count: per_count,
                    offset_volts: 0.0 - (centre + f64::from(cal.offset_counts)) * per_count,
                }
            })
            .collect()
    }
}

/// Everything the driver needs to open and configure a scope.
#[derive(Clone, Debug)]
pub struct HantekConfig {
    /// Firmware for a cold device: Intel-HEX (`.hex`, `.ihx`) or a raw image (`.fw`, `.bin`),
    /// e.g. `/usr/share/sigrok-firmware/fx2lafw-hantek-6022be.fw` from Debian's
    /// `sigrok-firmware-fx2lafw` package.
    pub firmware_path: Option<PathBuf>,
    /// Samples per second per channel; must be in the running firmware's table.
    pub sample_rate: u32,
    /// Active channels, 1 (CH1) or 2.
    pub channels: u8,
    /// Gains of CH1 and CH2.
    pub gains: [Gain; 2],
    /// Corrections of CH1 and CH2 at the chosen gains.
    pub calibration: [Calibration; 2],
    /// Volts (`f4`) or raw codes (`u1`).
    pub format: SampleFormat,
    /// Samples per channel in one event.
    pub samples_per_event: usize,
    /// `None`: consecutive blocks of `samples_per_event` (free running, gapless).
    pub trigger: Option<Trigger>,
    /// Bytes dropped at the start of every stream (libsigrok flushes about 2600).
    pub discard_initial_bytes: usize,
    /// Bytes per bulk transfer (a multiple of 512).
    pub transfer_size: usize,
    /// Buffers in the pool between reader thread and consumer.
    pub pool_buffers: usize,
    /// How long to wait for a device to come back after a firmware upload.
    pub reenumeration_timeout: Duration,
    /// Pause between bus scans while waiting.
    pub rescan_interval: Duration,
}

impl Default for HantekConfig {
    fn default() -> Self {
        HantekConfig {
            firmware_path: None,
            sample_rate: 1_000_000,
            channels: 2,
            gains: [Gain::X1, Gain::X1],
            calibration: [Calibration::default(); 2],
            format: SampleFormat::Volts,
            samples_per_event: 1000,
            trigger: None,
            discard_initial_bytes: 2600,
            transfer_size: 256 * 1024,
            pool_buffers: 16,
            reenumeration_timeout: Duration::from_secs(5),
            rescan_interval: Duration::from_millis(100),
        }
    }
}

/// Cuts events out of the interleaved uint8 stream. Pure: bytes in, events out; allocates
/// only when built, divides nothing per sample.
#[derive(Debug)]
pub struct EventCutter {
    channels: usize,
    samples: usize,
    format: SampleFormat,
    trigger: Option<Trigger>,
    volts: [[f32; 256]; 2],
    /// The last `samples` frames as a ring, `channels` bytes per frame; the oldest frame is
    /// at `next_slot` once the ring has filled.
    history: Vec<u8>,
    /// Frame slot the next frame is written to; always below `samples`.
    next_slot: usize,
    /// Frames completed since the stream began (discarded ones included).
    frames_seen: u64,
    discard_frames: u64,
    /// Frames kept since the last free-running event; always below `samples`.
    block_fill: usize,
    partial: [u8; 2],
    partial_len: usize,
    previous: Option<f32>,
    /// While collecting a triggered event: the frame that completes it, and its trigger frame.
    collecting: Option<(u64, u64)>,
    /// First frame a new event may start at (end of the last event).
    free_from: u64,
}

/// An event the cutter completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutEvent {
    /// Frame (sample index since the stream began) of the trigger, or of the first sample.
    pub trigger_frame: u64,
}

impl EventCutter {
    /// A cutter for `config`.
    pub fn new(config: &HantekConfig) -> EventCutter {
        let channels = config.channels.clamp(1, 2) as usize;
        let samples = config.samples_per_event.max(1);
        EventCutter {
            channels,
            samples,
            format: config.format,
            trigger: config.trigger,
            volts: [
                volts_table(config.gains[0], config.calibration[0]),
                volts_table(config.gains[1], config.calibration[1]),
            ],
            history: vec![0; samples * channels],
            next_slot: 0,
            frames_seen: 0,
            discard_frames: (config.discard_initial_bytes / channels) as u64,
            block_fill: 0,
            partial: [0; 2],
            partial_len: 0,
            previous: None,
            collecting: None,
            free_from: 0,
        }
    }

    /// Bytes one event takes in the output.
    pub fn event_size(&self) -> usize {
        let per_sample = match self.format {
            SampleFormat::Volts => 4,
            SampleFormat::Raw | SampleFormat::Counts => 1,
        };
        self.samples * self.channels * per_sample
    }

    /// Starts a new stream (after a start request).
    pub fn reset(&mut self) {
        self.next_slot = 0;
        self.frames_seen = 0;
        self.block_fill = 0;
        self.partial_len = 0;
        self.previous = None;
        self.collecting = None;
        self.free_from = 0;
    }

    /// Consumes stream bytes until an event is complete (written to `out`, which is
    /// [`event_size`](Self::event_size) bytes) or `bytes` is used up. Returns the bytes
    /// consumed and the event, if one completed. A frame split across calls is kept.
    pub fn feed(&mut self, bytes: &[u8], out: &mut [u8]) -> (usize, Option<CutEvent>) {
        let ch = self.channels;
        let mut i = 0;
        while i < bytes.len() {
            if self.trigger.is_none() && self.partial_len == 0 && bytes.len() - i >= ch {
                // Free running: whole frames move in one copy, no per-sample work.
                let whole = (bytes.len() - i) / ch;
                if self.frames_seen < self.discard_frames {
                    let skip = (self.discard_frames - self.frames_seen).min(whole as u64);
                    self.frames_seen += skip;
                    i += skip as usize * ch;
                    continue;
                }
                let n = whole
                    .min(self.samples - self.block_fill)
                    .min(self.samples - self.next_slot);
                let at = self.next_slot * ch;
                self.history[at..at + n * ch].copy_from_slice(&bytes[i..i + n * ch]);
                i += n * ch;
                self.next_slot += n;
                if self.next_slot == self.samples {
                    self.next_slot = 0;
                }
                self.frames_seen += n as u64;
                self.block_fill += n;
                if self.block_fill == self.samples {
                    self.block_fill = 0;
                    self.write_event(out);
                    return (
                        i,
                        Some(CutEvent {
                            trigger_frame: self.frames_seen - self.samples as u64,
                        }),
                    );
                }
                continue;
            }
            let frame = if self.partial_len == 0 && bytes.len() - i >= ch {
                let f = [bytes[i], bytes[i + ch - 1]];
                i += ch;
                f
            } else {
                self.partial[self.partial_len] = bytes[i];
                self.partial_len += 1;
                i += 1;
                if self.partial_len < ch {
                    continue;
                }
                self.partial_len = 0;
                [self.partial[0], self.partial[ch - 1]]
            };
            if let Some(event) = self.frame(frame, out) {
                return (i, Some(event));
            }
        }
        (bytes.len(), None)
    }

    #[inline]
    fn frame(&mut self, frame: [u8; 2], out: &mut [u8]) -> Option<CutEvent> {
        let index = self.frames_seen;
        self.frames_seen += 1;
        if index < self.discard_frames {
            return None;
        }
        let slot = self.next_slot * self.channels;
        self.history[slot..slot + self.channels].copy_from_slice(&frame[..self.channels]);
        self.next_slot += 1;
        if self.next_slot == self.samples {
            self.next_slot = 0;
        }
        match self.trigger {
            None => {
                self.block_fill += 1;
                if self.block_fill == self.samples {
                    self.block_fill = 0;
                    self.write_event(out);
                    return Some(CutEvent {
                        trigger_frame: index + 1 - self.samples as u64,
                    });
                }
            }
            Some(trigger) => {
                let channel = trigger.channel.min(self.channels - 1);
                let v = self.volts[channel][frame[channel] as usize];
                let crossed = match (self.previous, trigger.edge) {
                    (Some(p), Edge::Rising) => p < trigger.level_volts && v >= trigger.level_volts,
                    (Some(p), Edge::Falling) => p > trigger.level_volts && v <= trigger.level_volts,
                    (None, _) => false,
                };
                self.previous = Some(v);
                let pre = trigger.pre_trigger.min(self.samples - 1) as u64;
                if crossed
                    && self.collecting.is_none()
                    && index >= self.discard_frames + pre
                    && index - pre >= self.free_from
                {
                    self.collecting = Some((index - pre + self.samples as u64 - 1, index));
                }
                if let Some((last, trig)) = self.collecting {
                    if index == last {
                        self.write_event(out);
                        self.collecting = None;
                        self.free_from = index + 1;
                        return Some(CutEvent {
                            trigger_frame: trig,
                        });
                    }
                }
            }
        }
        None
    }

    /// Writes the last `samples` frames, oldest first.
    fn write_event(&self, out: &mut [u8]) {
        let split = self.next_slot * self.channels;
        let (newer, older) = self.history.split_at(split);
        match self.format {
            SampleFormat::Raw => {
                out[..older.len()].copy_from_slice(older);
                out[older.len()..older.len() + newer.len()].copy_from_slice(newer);
            }
            SampleFormat::Counts => {
                for (raw, dst) in older.iter().chain(newer.iter()).zip(out.iter_mut()) {
                    // code − 0x80 as two's complement: flip the top bit.
                    *dst = raw ^ 0x80;
                }
            }
            SampleFormat::Volts => {
                let ch = self.channels;
                for (k, (raw, dst)) in older
                    .iter()
                    .chain(newer.iter())
                    .zip(out.chunks_exact_mut(4))
                    .enumerate()
                {
                    let table = &self.volts[if ch == 2 { k & 1 } else { 0 }];
                    dst.copy_from_slice(&table[*raw as usize].to_le_bytes());
                }
            }
        }
    }
}

/// Counters of the reader thread, readable while it runs.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Bulk transfers completed with data.
    pub transfers: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Times the reader found no free buffer and had to wait for the consumer: each is a
    /// moment the device FIFO could overflow (a possible gap on real hardware).
    pub starved: AtomicU64,
}

enum Filled {
    Data(Box<[u8]>, usize),
    Failed(UsbError, Box<[u8]>),
}

/// What the reader thread hands back when it ends: the transport, the free-buffer queue and
/// the buffer it held.
struct ReaderReturn<T> {
    transport: T,
    free: Receiver<Box<[u8]>>,
    spare: Option<Box<[u8]>>,
}

struct Run<T> {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ReaderReturn<T>>,
    filled: Receiver<Filled>,
    free: SyncSender<Box<[u8]>>,
}

fn reader_loop<T: UsbTransport>(
    mut transport: T,
    stop: Arc<AtomicBool>,
    free: Receiver<Box<[u8]>>,
    filled: SyncSender<Filled>,
    counters: Arc<StreamCounters>,
) -> ReaderReturn<T> {
    let poll = Duration::from_millis(50);
    let mut spare: Option<Box<[u8]>> = None;
    while !stop.load(Ordering::Acquire) {
        let mut buf = match spare.take() {
            Some(b) => b,
            None => match free.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty) => {
                    counters.starved.fetch_add(1, Ordering::Relaxed);
                    match free.recv_timeout(poll) {
                        Ok(b) => b,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            },
        };
        match transport.bulk_in(SAMPLE_ENDPOINT, &mut buf, poll) {
            Ok(0) | Err(UsbError::Timeout) => spare = Some(buf),
            Ok(n) => {
                counters.transfers.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if let Err(e) = filled.send(Filled::Data(buf, n)) {
                    if let Filled::Data(b, _) = e.0 {
                        spare = Some(b);
                    }
                    break;
                }
            }
            Err(e) => {
                let _ = filled.send(Filled::Failed(e, buf));
                break;
            }
        }
    }
    ReaderReturn {
        transport,
        free,
        spare,
    }
}

/// The bus a scope was opened on, kept to find it again after an unplug.
type KeptBus<T> = Box<dyn UsbBus<Transport = T> + Send>;

/// What the driver remembers to bring a vanished scope back.
struct Rejoin<T: UsbTransport + 'static> {
    /// The bus to search; `None` when opened with [`Hantek6022::open`] on a borrowed bus.
    bus: Option<KeptBus<T>>,
    /// Where the scope sat (`1-2.4`), if the bus says.
    physical_port: Option<String>,
    /// The image uploaded at open, or set for reconnects; loaded from `firmware_path` on
    /// the first cold return otherwise.
    firmware: Option<FirmwareImage>,
    /// The scope vanished and is not back yet.
    lost: bool,
    /// Acquisition was started (and not stopped) by the caller.
    running: bool,
    pacing: RetryPacing,
    /// When firmware was last sent to the returned cold scope.
    uploaded_at: Option<Instant>,
    /// When the scope was first seen on the bus again in this gap.
    back_since: Option<Instant>,
    /// Times it came back.
    reconnects: u32,
}

/// A configured Hantek 6022 on transport `T`.
pub struct Hantek6022<T: UsbTransport + 'static> {
    info: DeviceInfo,
    layout: EventLayout,
    config: HantekConfig,
    flavour: FirmwareFlavour,
    transport: Option<T>,
    pool: Vec<Box<[u8]>>,
    run: Option<Run<T>>,
    current: Option<(Box<[u8]>, usize, usize)>,
    cutter: EventCutter,
    counters: Arc<StreamCounters>,
    bytes_consumed: u64,
    rejoin: Rejoin<T>,
}

fn find_device<B: UsbBus + ?Sized>(
    bus: &mut B,
) -> Result<Option<(UsbDeviceEntry, DeviceState)>, UsbError> {
    find_device_at(bus, None)
}

/// The first Hantek 6022 on `bus`, preferring one at physical port `at`.
fn find_device_at<B: UsbBus + ?Sized>(
    bus: &mut B,
    at: Option<&str>,
) -> Result<Option<(UsbDeviceEntry, DeviceState)>, UsbError> {
    let mut first = None;
    for e in bus.list()? {
        let Some(state) = identify(e.vendor_id, e.product_id) else {
            continue;
        };
        if at.is_some() && bus.physical_port(&e).as_deref() == at {
            return Ok(Some((e, state)));
        }
        if first.is_none() {
            first = Some((e, state));
        }
    }
    Ok(first)
}

/// Opens the cold scope at `entry` and uploads `image`; the scope then re-enumerates.
fn upload_to<B: UsbBus + ?Sized>(
    bus: &mut B,
    entry: &UsbDeviceEntry,
    image: &FirmwareImage,
) -> Result<(), UsbError> {
    let mut cold = bus.open(entry, INTERFACE)?;
    upload(&mut cold, image)?;
    Ok(())
}

/// Sends channels, sample-rate code and gains, as at open and after a reconnect.
fn send_configuration<T: UsbTransport>(
    transport: &mut T,
    config: &HantekConfig,
    rate_code: u8,
) -> Result<(), (u8, UsbError)> {
    for (request, data) in configure_requests(config.channels, rate_code, config.gains) {
        transport
            .control_out(Setup::vendor_out(request), &[data], CONTROL_TIMEOUT)
            .map_err(|e| (request, e))?;
    }
    Ok(())
}

impl<T: UsbTransport + 'static> Hantek6022<T> {
    /// Finds the first Hantek 6022 on `bus`, uploads firmware if it is cold, waits for it to
    /// come back, and configures it.
    pub fn open<B: UsbBus<Transport = T>>(
        bus: &mut B,
        config: HantekConfig,
    ) -> Result<Self, DriverError> {
        let name = "hantek6022";
        let usb = |e: UsbError, doing: &str| e.into_driver_error(name, doing);
        let found = find_device(bus).map_err(|e| usb(e, "scanning the USB bus"))?;
        let Some((mut entry, mut state)) = found else {
            return Err(DriverError::Open {
                device: name.into(),
                detail: "no Hantek 6022 found (looked for 04b4:6022/602a/2020, 04b5:6022/602a, 1d50:608e); \
                         check the cable and `lsusb`"
                    .into(),
            });
        };
        let mut uploaded = None;
        let mut model_name = match (entry.vendor_id, entry.product_id) {
            (0x04b5, 0x6022) => Model::Dso6022Be.name(),
            (0x04b5, 0x602a) => Model::Dso6022Bl.name(),
            _ => "Hantek 6022 (sigrok fx2lafw firmware)",
        };
        if let DeviceState::Cold(model) = state {
            model_name = model.name();
            let Some(path) = &config.firmware_path else {
                return Err(DriverError::Config {
                    device: entry.port(),
                    detail: format!(
                        "{} is cold and needs firmware: set firmware_path, e.g. \
                         /usr/share/sigrok-firmware/fx2lafw-hantek-6022be.fw (Debian package \
                         sigrok-firmware-fx2lafw), or a Ho-Ro custom firmware .hex",
                        model.name()
                    ),
                });
            };
            let image = FirmwareImage::load(path).map_err(|e| DriverError::Config {
                device: entry.port(),
                detail: e.to_string(),
            })?;
            upload_to(bus, &entry, &image).map_err(|e| usb(e, "uploading firmware"))?;
            uploaded = Some(image);
            let deadline = Instant::now() + config.reenumeration_timeout;
            loop {
                if let Some((e, s @ DeviceState::Running(_))) =
                    find_device(bus).map_err(|e| usb(e, "rescanning after the firmware upload"))?
                {
                    entry = e;
                    state = s;
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(DriverError::Open {
                        device: entry.port(),
                        detail: format!(
                            "firmware {} uploaded but the scope did not re-enumerate within {:?}; \
                             replug it and check the firmware file",
                            path.display(),
                            config.reenumeration_timeout
                        ),
                    });
                }
                std::thread::sleep(config.rescan_interval);
            }
        }
        let flavour = match state {
            DeviceState::Running(flavour) => flavour,
            DeviceState::Cold(_) => {
                return Err(DriverError::Open {
                    device: entry.port(),
                    detail: "the scope is still cold after the firmware upload; replug it".into(),
                })
            }
        };
        let transport = bus
            .open(&entry, INTERFACE)
            .map_err(|e| usb(e, "opening the scope"))?;
        let physical_port = bus.physical_port(&entry);
        let mut scope = Self::configured(transport, flavour, entry, model_name, config)?;
        scope.rejoin.physical_port = physical_port;
        scope.rejoin.firmware = uploaded;
        Ok(scope)
    }

    /// As [`open`](Self::open), and keeps `bus` so that [`Source::reconnect`] can find the
    /// scope again after it was unplugged (the way the importer opens it).
    pub fn open_reconnectable<B>(mut bus: B, config: HantekConfig) -> Result<Self, DriverError>
    where
        B: UsbBus<Transport = T> + Send + 'static,
    {
        let mut scope = Self::open(&mut bus, config)?;
        scope.rejoin.bus = Some(Box::new(bus));
        Ok(scope)
    }

    /// The firmware image a scope that comes back cold gets, instead of reading
    /// `firmware_path` at that moment (the simulator's stand-in image, or an image a caller
    /// already holds).
    pub fn set_firmware_image(&mut self, image: FirmwareImage) {
        self.rejoin.firmware = Some(image);
    }

    /// Replaces the pacing of the look-ups after an unplug (default: 50 ms doubling to 1 s).
    pub fn set_reconnect_pacing(&mut self, pacing: RetryPacing) {
        self.rejoin.pacing = pacing;
    }

    /// Times the scope came back after an unplug.
    pub fn reconnects(&self) -> u32 {
        self.rejoin.reconnects
    }

    fn configured(
        mut transport: T,
        flavour: FirmwareFlavour,
        entry: UsbDeviceEntry,
        model_name: &str,
        config: HantekConfig,
    ) -> Result<Self, DriverError> {
        let port = entry.port();
        let bad = |detail: String| DriverError::Config {
            device: port.clone(),
            detail,
        };
        if config.channels != 1 && config.channels != 2 {
            return Err(bad(format!(
                "channels must be 1 or 2, not {}",
                config.channels
            )));
        }
        let code = rate_code(flavour, config.sample_rate).ok_or_else(|| {
            bad(format!(
                "sample rate {} S/s not offered by the {:?} firmware; choose one of {}",
                config.sample_rate,
                flavour,
                rates_offered(flavour)
            ))
        })?;
        if config.transfer_size == 0 || !config.transfer_size.is_multiple_of(512) {
            return Err(bad(format!(
                "transfer_size {} must be a positive multiple of 512",
                config.transfer_size
            )));
        }
        if config.pool_buffers < 2 {
            return Err(bad("pool_buffers must be at least 2".into()));
        }
        if config.samples_per_event == 0 {
            return Err(bad("samples_per_event must be at least 1".into()));
        }
        if let Some(t) = config.trigger {
            if t.channel >= config.channels as usize {
                return Err(bad(format!(
                    "trigger channel {} is not active",
                    t.channel + 1
                )));
            }
            if t.pre_trigger >= config.samples_per_event {
                return Err(bad(format!(
                    "pre_trigger {} must be below samples_per_event {}",
                    t.pre_trigger, config.samples_per_event
                )));
            }
        }
        send_configuration(&mut transport, &config, code).map_err(|(request, e)| {
            e.into_driver_error(&port, &format!("sending request 0x{request:02X}"))
        })?;
        let layout = config.layout();
        let pool = (0..config.pool_buffers)
            .map(|_| vec![0u8; config.transfer_size].into_boxed_slice())
            .collect();
        Ok(Hantek6022 {
            info: DeviceInfo {
                family: Family::Hantek6022,
                model: model_name.to_string(),
                serial: None,
                port,
                usb_id: Some((entry.vendor_id, entry.product_id)),
            },
            layout,
            cutter: EventCutter::new(&config),
            config,
            flavour,
            transport: Some(transport),
            pool,
            run: None,
            current: None,
            counters: Arc::new(StreamCounters::default()),
            bytes_consumed: 0,
            rejoin: Rejoin {
                bus: None,
                physical_port: None,
                firmware: None,
                lost: false,
                running: false,
                pacing: RetryPacing::default(),
                uploaded_at: None,
                back_since: None,
                reconnects: 0,
            },
        })
    }

    /// The firmware the scope runs.
    pub fn firmware(&self) -> FirmwareFlavour {
        self.flavour
    }

    /// Reads `buf.len()` bytes of the scope's 256-byte EEPROM from `offset` (vendor request
    /// 0xA2, custom firmware), e.g. the calibration bytes from offset 8 that
    /// [`Calibration::from_eeprom_bytes`] turns into corrections. Only while stopped.
    pub fn read_eeprom(&mut self, offset: u8, buf: &mut [u8]) -> Result<usize, DriverError> {
        let port = self.info.port.clone();
        let Some(transport) = self.transport.as_mut() else {
            return Err(DriverError::Config {
                device: port,
                detail: "the EEPROM can only be read while acquisition is stopped".into(),
            });
        };
        transport
            .control_in(
                Setup::vendor_in(REQ_EEPROM).with_value(offset as u16),
                buf,
                CONTROL_TIMEOUT,
            )
            .map_err(|e| e.into_driver_error(&port, "reading the EEPROM"))
    }

    /// Reader-thread counters of the current or last run.
    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    fn port(&self) -> &str {
        &self.info.port
    }

    fn recycle(&mut self, buf: Box<[u8]>) {
        match &self.run {
            Some(run) => {
                if let Err(e) = run.free.send(buf) {
                    self.pool.push(e.0);
                }
            }
            None => self.pool.push(buf),
        }
    }

    /// Ends the reader thread of the current run (if any), takes every buffer back into the
    /// pool and returns the transport the thread held (`None` without a run).
    fn join_reader(&mut self) -> Result<Option<T>, DriverError> {
        let Some(run) = self.run.take() else {
            return Ok(None);
        };
        run.stop.store(true, Ordering::Release);
        let Run {
            thread,
            filled,
            free,
            ..
        } = run;
        drop(free);
        let joined = thread.join();
        while let Ok(f) = filled.try_recv() {
            match f {
                Filled::Data(b, _) | Filled::Failed(_, b) => self.pool.push(b),
            }
        }
        if let Some((b, _, _)) = self.current.take() {
            self.pool.push(b);
        }
        let ReaderReturn {
            transport,
            free: free_rx,
            spare,
        } = joined.map_err(|_| DriverError::Disconnected {
            device: self.info.port.clone(),
            detail: "the reader thread panicked".into(),
        })?;
        while let Ok(b) = free_rx.try_recv() {
            self.pool.push(b);
        }
        if let Some(b) = spare {
            self.pool.push(b);
        }
        Ok(Some(transport))
    }

    /// The scope is gone: notes it, so that [`Source::reconnect`] looks for it.
    fn lost(&mut self, e: UsbError, doing: &str) -> DriverError {
        if e == UsbError::NoDevice {
            self.rejoin.lost = true;
        }
        e.into_driver_error(&self.info.port, doing)
    }

    /// The image for a scope that came back cold.
    fn firmware_for_return(&mut self, model: Model) -> Result<FirmwareImage, DriverError> {
        if let Some(image) = &self.rejoin.firmware {
            return Ok(image.clone());
        }
        let Some(path) = &self.config.firmware_path else {
            return Err(DriverError::Config {
                device: self.info.port.clone(),
                detail: format!(
                    "the {} came back from an unplug cold and needs its firmware again, but \
                     no firmware is configured: set firmware (e.g. \
                     /usr/share/sigrok-firmware/fx2lafw-hantek-6022be.fw) and restart the run",
                    model.name()
                ),
            });
        };
        let image = FirmwareImage::load(path).map_err(|e| DriverError::Config {
            device: self.info.port.clone(),
            detail: format!("the scope came back cold after an unplug: {e}"),
        })?;
        self.rejoin.firmware = Some(image.clone());
        Ok(image)
    }

    /// One attempt to bring the vanished scope back on `bus`: `Ok(false)` while it is not
    /// (yet) there or still re-enumerating.
    fn rejoin_on(&mut self, bus: &mut (dyn UsbBus<Transport = T> + Send)) -> Result<bool> {
        let timeout = self.config.reenumeration_timeout;
        let found = match find_device_at(bus, self.rejoin.physical_port.as_deref()) {
            Ok(Some(found)) => found,
            // Not on the bus, or the bus could not be listed this time: look again later.
            Ok(None) | Err(_) => {
                self.rejoin.back_since = None;
                return Ok(false);
            }
        };
        let back_since = *self.rejoin.back_since.get_or_insert_with(Instant::now);
        // A scope just plugged in may vanish again while it re-enumerates, and its device
        // node may not carry the udev permissions yet.
        let transient = |e: &UsbError| {
            matches!(e, UsbError::NoDevice | UsbError::Timeout)
                || (*e == UsbError::Access && back_since.elapsed() < timeout)
        };
        let (mut entry, mut state) = found;
        if let DeviceState::Cold(model) = state {
            if self
                .rejoin
                .uploaded_at
                .is_some_and(|t| t.elapsed() < timeout)
            {
                // Firmware sent; waiting for the scope to come back with it.
                return Ok(false);
            }
            let image = self.firmware_for_return(model)?;
            match upload_to(bus, &entry, &image) {
                Ok(()) => self.rejoin.uploaded_at = Some(Instant::now()),
                Err(e) if transient(&e) => return Ok(false),
                Err(e) => {
                    return Err(e.into_driver_error(
                        &entry.port(),
                        "uploading firmware to the replugged scope",
                    ))
                }
            }
            match find_device_at(bus, self.rejoin.physical_port.as_deref()) {
                Ok(Some((e, s @ DeviceState::Running(_)))) => {
                    entry = e;
                    state = s;
                }
                _ => return Ok(false),
            }
        }
        let DeviceState::Running(flavour) = state else {
            return Ok(false);
        };
        let code =
            rate_code(flavour, self.config.sample_rate).ok_or_else(|| DriverError::Config {
                device: entry.port(),
                detail: format!(
                    "the scope came back running {flavour:?} firmware, which does not offer {} \
                     S/s ({}); give the firmware it ran before and restart the run",
                    self.config.sample_rate,
                    rates_offered(flavour)
                ),
            })?;
        let mut transport = match bus.open(&entry, INTERFACE) {
            Ok(t) => t,
            Err(e) if transient(&e) => return Ok(false),
            Err(e) => return Err(e.into_driver_error(&entry.port(), "opening the replugged scope")),
        };
        match send_configuration(&mut transport, &self.config, code) {
            Ok(()) => {}
            Err((_, e)) if transient(&e) => return Ok(false),
            Err((request, e)) => {
                return Err(e.into_driver_error(
                    &entry.port(),
                    &format!("sending request 0x{request:02X} to the replugged scope"),
                ))
            }
        }
        if let Some(at) = bus.physical_port(&entry) {
            self.rejoin.physical_port = Some(at);
        }
        self.flavour = flavour;
        self.info.port = entry.port();
        self.info.usb_id = Some((entry.vendor_id, entry.product_id));
        self.transport = Some(transport);
        self.rejoin.lost = false;
        self.rejoin.uploaded_at = None;
        self.rejoin.back_since = None;
        if self.rejoin.running {
            match self.start() {
                Ok(()) => {}
                Err(DriverError::Disconnected { .. }) => {
                    self.rejoin.lost = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.rejoin.reconnects += 1;
        Ok(true)
    }
}

impl<T: UsbTransport + 'static> Source for Hantek6022<T> {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn channel_scales(&self) -> Vec<ChannelScale> {
        self.config.channel_scales()
    }

    fn start(&mut self) -> Result<()> {
        if self.run.is_some() {
            return Ok(());
        }
        let port = self.port().to_string();
        let mut transport = self
            .transport
            .take()
            .ok_or_else(|| DriverError::Disconnected {
                device: port.clone(),
                detail: "the scope was lost in an earlier run; open it again".into(),
            })?;
        if let Err(e) =
            transport.control_out(Setup::vendor_out(REQ_START_STOP), &[1], CONTROL_TIMEOUT)
        {
            self.transport = Some(transport);
            return Err(self.lost(e, "starting acquisition"));
        }
        self.cutter.reset();
        self.bytes_consumed = 0;
        self.counters = Arc::new(StreamCounters::default());
        let n = self.pool.len();
        let (free_tx, free_rx) = sync_channel(n);
        let (filled_tx, filled_rx) = sync_channel(n);
        for buf in self.pool.drain(..) {
            // Capacity is the pool size, so this never blocks or fails.
            let _ = free_tx.send(buf);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c) = (stop.clone(), self.counters.clone());
        let thread = std::thread::Builder::new()
            .name("hantek6022-reader".into())
            .spawn(move || reader_loop(transport, s, free_rx, filled_tx, c))
            .map_err(|e| DriverError::Io {
                device: port,
                source: e,
            })?;
        self.run = Some(Run {
            stop,
            thread,
            filled: filled_rx,
            free: free_tx,
        });
        self.rejoin.running = true;
        Ok(())
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        crate::driver::check_event_buffer(&self.info.port, out.len(), self.cutter.event_size())?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((buf, len, pos)) = &mut self.current {
                let (used, event) = self.cutter.feed(&buf[*pos..*len], out);
                *pos += used;
                self.bytes_consumed += used as u64;
                if *pos == *len {
                    if let Some((buf, _, _)) = self.current.take() {
                        self.recycle(buf);
                    }
                }
                if let Some(event) = event {
                    return Ok(ReadOutcome::Event(EventInfo {
                        device_time: Some(
                            event.trigger_frame as f64 / self.config.sample_rate as f64,
                        ),
                        device_deadtime: None,
                        device_lost: 0,
                    }));
                }
                continue;
            }
            let Some(run) = &self.run else {
                return Err(DriverError::Config {
                    device: self.info.port.clone(),
                    detail: "read_event before start".into(),
                });
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ReadOutcome::Idle);
            }
            match run.filled.recv_timeout(left) {
                Ok(Filled::Data(buf, len)) => self.current = Some((buf, len, 0)),
                Ok(Filled::Failed(e, buf)) => {
                    self.pool.push(buf);
                    return Err(self.lost(e, "streaming samples"));
                }
                Err(RecvTimeoutError::Timeout) => return Ok(ReadOutcome::Idle),
                Err(RecvTimeoutError::Disconnected) => {
                    self.rejoin.lost = true;
                    return Err(DriverError::Disconnected {
                        device: self.info.port.clone(),
                        detail: "the reader thread ended".into(),
                    });
                }
            }
        }
    }

    fn stop(&mut self) -> Result<()> {
        self.rejoin.running = false;
        let Some(mut transport) = self.join_reader()? else {
            return Ok(());
        };
        let result =
            transport.control_out(Setup::vendor_out(REQ_START_STOP), &[0], CONTROL_TIMEOUT);
        self.transport = Some(transport);
        result
            .map(|_| ())
            .map_err(|e| self.lost(e, "stopping acquisition"))
    }

    /// After [`DriverError::Disconnected`]: one paced look for the scope on the bus it was
    /// opened on. A cold scope gets its firmware again and is waited for while it
    /// re-enumerates; then channels, sample rate and gains are sent again and, if it was
    /// acquiring, the reader thread restarts with a fresh event cutter (the partial event of
    /// before the gap is dropped, the settling bytes are discarded again). `Ok(false)` while
    /// it is absent.
    fn reconnect(&mut self) -> Result<bool> {
        if !self.rejoin.lost {
            return Ok(true);
        }
        // The old run and handle are dead: take the buffers back, drop the handle. A reader
        // that panicked took its buffers with it; the pool is smaller but still whole.
        let _ = self.join_reader();
        self.transport = None;
        let Some(mut bus) = self.rejoin.bus.take() else {
            return Err(DriverError::Config {
                device: self.info.port.clone(),
                detail: "the scope was unplugged, and it was opened without keeping its USB bus \
                         (Hantek6022::open), so it cannot be looked for again; open it with \
                         Hantek6022::open_reconnectable, or restart the run"
                    .into(),
            });
        };
        self.rejoin.pacing.wait_turn();
        let result = self.rejoin_on(&mut *bus);
        self.rejoin.bus = Some(bus);
        match result {
            Ok(true) => self.rejoin.pacing.succeeded(),
            Ok(false) | Err(_) => self.rejoin.pacing.failed(),
        }
        result
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("hantek6022.firmware".into(), format!("{:?}", self.flavour)),
            (
                "hantek6022.sample_rate".into(),
                self.config.sample_rate.to_string(),
            ),
            (
                "hantek6022.channels".into(),
                self.config.channels.to_string(),
            ),
            (
                "hantek6022.ch1_full_scale_volts".into(),
                self.config.gains[0].full_scale_volts().to_string(),
            ),
            (
                "hantek6022.ch2_full_scale_volts".into(),
                self.config.gains[1].full_scale_volts().to_string(),
            ),
            (
                "hantek6022.bytes_consumed".into(),
                self.bytes_consumed.to_string(),
            ),
            (
                "hantek6022.reader_starved".into(),
                self.counters.starved.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hantek6022.reconnects".into(),
                self.rejoin.reconnects.to_string(),
            ),
        ]
    }
}

impl<T: UsbTransport + 'static> Drop for Hantek6022<T> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
