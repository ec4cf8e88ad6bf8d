//! One opened PicoScope behind [`Source`]: block (one triggered capture per run, fetched
//! with `GetValues`), rapid block (triggered captures, many per run, `GetValuesBulk`) or
//! streaming (continuous samples cut into fixed-length events).
//!
//! Guarantees: every buffer handed to Pico's library with `SetDataBuffer` is allocated once
//! at configure time and never moves while registered; `read_event` allocates nothing,
//! takes no lock and makes no system call other than waiting (sleep) for data. Events are
//! written record by record, one field per enabled channel (`chA`..`chD`), `f4` volts or
//! `i2` counts, little-endian, then one `u1` per enabled MSO digital port (`D0_7`, `D8_15`:
//! the low byte of the library's 16-bit port sample, whose high byte Pico leaves
//! unspecified). Digital ports are switched on with `SetDigitalPort` at configure and off
//! before the unit is closed; their buffers are registered beside the channels'. Streaming events follow each other without a gap or a
//! repeated sample. A status that says the scope is gone becomes
//! [`DriverError::Disconnected`]; [`Source::reconnect`] opens it again (paced, so that a
//! caller waiting for the scope does not spin on the library) and restarts acquisition from a
//! clean state: a capture or streamed event begun before the gap is never handed out.
//! Never: lets a callback outlive the memory it writes to (the unit is stopped and closed
//! before the callback's context is freed), panics on anything the library returns.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::config::{
    channel_letter, Acquisition, BlockShape, DigitalPort, PicoScopeConfig, SampleFormat,
};
use super::family::{model_channels, model_has_digital_ports, same_model};
use super::library::PicoLibrary;
use super::status::{PicoError, PicoStatus};
use crate::driver::{
    ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, Family, ReadOutcome, Result,
    Source,
};
use crate::usb::RetryPacing;

/// Set by the block-ready callback; lives in a Box so its address is stable.
#[derive(Default)]
struct BlockSignal {
    ready: AtomicBool,
    status: AtomicU32,
}

unsafe extern "C" fn block_ready(_handle: i16, status: u32, param: *mut c_void) {
    // SAFETY: `param` is the address of the scope's boxed BlockSignal, which outlives every
    // run: the unit is stopped and closed before the box is dropped.
    let signal = unsafe { &*(param as *const BlockSignal) };
    signal.status.store(status, Ordering::Relaxed);
    signal.ready.store(true, Ordering::Release);
}

/// What one streaming callback reported.
#[derive(Default)]
struct StreamChunk {
    called: bool,
    samples: i32,
    start: u32,
    overflow: i16,
}

unsafe extern "C" fn streaming_ready(
    _handle: i16,
    samples: i32,
    start: u32,
    overflow: i16,
    _trigger_at: u32,
    _triggered: i16,
    _auto_stop: i16,
    param: *mut c_void,
) {
    // SAFETY: `param` is a `&mut StreamChunk` on the caller's stack, alive for the whole
    // GetStreamingLatestValues call inside which this runs.
    let chunk = unsafe { &mut *(param as *mut StreamChunk) };
    chunk.called = true;
    chunk.samples = samples;
    chunk.start = start;
    chunk.overflow = overflow;
}

enum RunState {
    Stopped,
    /// A RunBlock is armed; its data is not fetched yet.
    Armed,
    /// Captures fetched into the segment buffers; `next` is the one to hand out.
    Draining {
        next: u32,
        captures: u32,
    },
    Streaming,
}

/// Counts kept while running, reported in the run metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicoCounters {
    /// Events written.
    pub events: u64,
    /// RunBlock calls (rapid block) or callbacks (streaming).
    pub batches: u64,
    /// Events (rapid block) or chunks (streaming) where a channel went over range.
    pub overrange: u64,
    /// Samples delivered per channel (streaming).
    pub stream_samples: u64,
    /// Times the unit reported a new power source mid-run (DC adapter plugged or pulled)
    /// and the run went on after `ChangePowerSource`.
    pub power_changes: u64,
}

/// An opened, configured PicoScope.
pub struct PicoScope {
    lib: PicoLibrary,
    config: PicoScopeConfig,
    info: DeviceInfo,
    layout: EventLayout,
    handle: i16,
    variant: String,
    serial: String,
    driver_version: String,
    max_adc: i16,
    timebase: u32,
    interval_ns: f64,
    enabled: Vec<u8>,
    /// Enabled MSO digital ports, PORT0 first; their data follows the channels' in
    /// `segments`, `stream_bufs` and `stage`.
    ports: Vec<DigitalPort>,
    /// Volts per ADC count and analogue offset, per channel index.
    scale: [f32; 4],
    offset: [f32; 4],
    records: usize,
    captures: u32,
    /// Rapid block: `segments[capture * nsrc + k]` (k: the enabled channels, then the
    /// enabled digital ports), `records` samples each, registered.
    segments: Vec<Vec<i16>>,
    overflow: Vec<i16>,
    trigger_times: Vec<i64>,
    trigger_units: Vec<i32>,
    signal: Box<BlockSignal>,
    rearm_error: Option<PicoError>,
    /// An error to report on the next read (the re-arm after the last fetched capture failed).
    pending_error: Option<PicoError>,
    /// Streaming: per enabled channel, then per digital port, the overview buffer registered
    /// with the library.
    stream_bufs: Vec<Vec<i16>>,
    /// Streaming: the event being assembled, source-major (`k * records + i`).
    stage: Vec<i16>,
    stage_fill: usize,
    pending_start: usize,
    pending_len: usize,
    state: RunState,
    was_running: bool,
    last_trigger_offset_s: Option<f64>,
    counters: PicoCounters,
    /// Paces the look-ups for a vanished unit.
    pacing: RetryPacing,
    /// Times the unit came back after it vanished.
    reconnects: u32,
    /// The power prompt last accepted with `ChangePowerSource` (None: the unit runs from
    /// its DC adapter or never asked).
    power_source: Option<PicoStatus>,
}

impl std::fmt::Debug for PicoScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PicoScope({} {} via {:?})",
            self.variant, self.serial, self.lib
        )
    }
}

/// OK, or the typed error naming `device` and `function`. Allocates only on error.
fn check(device: &str, function: &'static str, s: PicoStatus) -> Result<(), PicoError> {
    if s == PicoStatus::Ok {
        Ok(())
    } else {
        Err(PicoError::Status {
            device: device.to_string(),
            function,
            status: s,
        })
    }
}

/// Seconds per unit of Pico's `TIME_UNITS` (FS = 0 .. S = 5).
fn time_unit_s(unit: i32) -> f64 {
    match unit {
        0 => 1e-15,
        1 => 1e-12,
        2 => 1e-9,
        3 => 1e-6,
        4 => 1e-3,
        _ => 1.0,
    }
}

impl PicoScope {
    /// Loads the family's library, opens the unit (accepting a USB power prompt) and
    /// configures it. The library is found as [`PicoLibrary::load`] describes.
    pub fn open(config: PicoScopeConfig) -> Result<PicoScope, PicoError> {
        let lib = PicoLibrary::load(config.family, config.library.as_deref())?;
        Self::open_with(lib, config)
    }

    /// Opens and configures with an already loaded library.
    pub fn open_with(lib: PicoLibrary, config: PicoScopeConfig) -> Result<PicoScope, PicoError> {
        let family = config.family;
        let before = format!("PicoScope {}", family.name);
        config.validate().map_err(|detail| PicoError::Config {
            device: before.clone(),
            detail,
        })?;
        if lib.family().name != family.name {
            return Err(PicoError::Config {
                device: before,
                detail: format!(
                    "library {} is for {}, setup asks for {}",
                    lib.path().display(),
                    lib.family().name,
                    family.name
                ),
            });
        }
        let records = config.records();
        let enabled = config.enabled_channels();
        let ports = config.enabled_ports();
        let mut scope = PicoScope {
            lib,
            info: DeviceInfo {
                family: Family::PicoScope,
                model: before,
                serial: None,
                port: String::new(),
                usb_id: None,
            },
            layout: config.layout(),
            config,
            handle: 0,
            variant: String::new(),
            serial: String::new(),
            driver_version: String::new(),
            max_adc: 0,
            timebase: 0,
            interval_ns: 0.0,
            enabled,
            ports,
            scale: [0.0; 4],
            offset: [0.0; 4],
            records,
            captures: 0,
            segments: Vec::new(),
            overflow: Vec::new(),
            trigger_times: Vec::new(),
            trigger_units: Vec::new(),
            signal: Box::default(),
            rearm_error: None,
            pending_error: None,
            stream_bufs: Vec::new(),
            stage: Vec::new(),
            stage_fill: 0,
            pending_start: 0,
            pending_len: 0,
            state: RunState::Stopped,
            was_running: false,
            last_trigger_offset_s: None,
            counters: PicoCounters::default(),
            pacing: RetryPacing::default(),
            reconnects: 0,
            power_source: None,
        };
        scope.open_unit()?;
        scope.configure()?;
        Ok(scope)
    }

    /// OK, or the typed error naming this device and `function`. Allocates only on error.
    fn check(&self, function: &'static str, s: PicoStatus) -> Result<(), PicoError> {
        if s == PicoStatus::Ok {
            return Ok(());
        }
        check(&self.device(), function, s)
    }

    fn device(&self) -> String {
        self.info.model.clone() + if self.serial.is_empty() { "" } else { " " } + &self.serial
    }

    /// OpenUnit, the power prompt, unit info.
    fn open_unit(&mut self) -> Result<(), PicoError> {
        let family = self.config.family;
        let device = format!("PicoScope {}", family.name);
        let (handle, status) = self
            .lib
            .open_unit(self.config.serial.as_deref(), self.config.resolution);
        self.power_source = None;
        if status.is_power_prompt() {
            // The unit is open but waits for us to accept USB power (fewer channels may
            // work; Pico's examples continue the same way). The run notes say what the
            // user can do about it (see `power_note`).
            match self.lib.change_power_source(handle, status) {
                Some(PicoStatus::Ok) => self.power_source = Some(status),
                Some(other) => {
                    let _ = self.lib.close_unit(handle);
                    return Err(PicoError::Status {
                        device,
                        function: family
                            .symbols
                            .change_power_source
                            .unwrap_or("ChangePowerSource"),
                        status: other,
                    });
                }
                None => {
                    let _ = self.lib.close_unit(handle);
                    return Err(PicoError::Status {
                        device,
                        function: family.symbols.open_unit,
                        status,
                    });
                }
            }
        } else if status != PicoStatus::Ok {
            if handle > 0 {
                let _ = self.lib.close_unit(handle);
            }
            return Err(PicoError::Status {
                device,
                function: family.symbols.open_unit,
                status,
            });
        }
        if handle <= 0 {
            return Err(PicoError::Status {
                device,
                function: family.symbols.open_unit,
                status: PicoStatus::NotFound,
            });
        }
        self.handle = handle;
        let info = |lib: &PicoLibrary, what: u32| {
            lib.unit_info(handle, what)
                .map_err(|status| PicoError::Status {
                    device: device.clone(),
                    function: family.symbols.get_unit_info,
                    status,
                })
        };
        let variant = info(&self.lib, 3);
        let serial = info(&self.lib, 4);
        let version = info(&self.lib, 0);
        let (variant, serial, version) = match (variant, serial, version) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let _ = self.lib.close_unit(handle);
                self.handle = 0;
                return Err(e);
            }
        };
        self.variant = variant;
        self.serial = serial;
        self.driver_version = version;
        self.info.model = format!("PicoScope {}", self.variant);
        self.info.serial = Some(self.serial.clone());
        self.info.port = format!("picosdk:{}:{}", family.name, self.serial);
        Ok(())
    }

    /// Channels, resolution, timebase, trigger, segments and buffers. Allocates every
    /// buffer the run will use.
    fn configure(&mut self) -> Result<(), PicoError> {
        let h = self.handle;
        let family = self.config.family;
        let sym = &family.symbols;
        let device = self.device();
        if let Some(model) = self.config.model.as_deref() {
            if !same_model(model, &self.variant) {
                return Err(PicoError::Config {
                    device,
                    detail: format!(
                        "the setup is written for a {model} (key model), this unit is a {}; \
                         change the model or connect a {model}",
                        self.variant
                    ),
                });
            }
        }
        let channel_count = model_channels(&self.variant).unwrap_or(4);
        // Switch channels off first, so that enabling the wanted ones never passes through a
        // state with more channels than the resolution allows.
        let order = (0u8..4)
            .filter(|&c| !self.config.channels[c as usize].enabled)
            .chain(self.enabled.iter().copied());
        for c in order {
            let ch = self.config.channels[c as usize];
            if ch.enabled && c >= channel_count {
                return Err(PicoError::Config {
                    device,
                    detail: format!(
                        "channel {} enabled, but the {} has {} channels",
                        channel_letter(c),
                        self.variant,
                        channel_count
                    ),
                });
            }
            let s = self.lib.set_channel(
                h,
                c,
                ch.enabled,
                ch.coupling.code(),
                ch.range.code(),
                ch.analog_offset_v,
            );
            // Switching off a channel the model does not have is not an error.
            if !(s == PicoStatus::InvalidChannel && !ch.enabled && c >= channel_count) {
                check(&device, sym.set_channel, s)?;
            }
        }
        // Digital ports: on with their thresholds as asked, off otherwise (Pico's examples
        // switch an MSO's ports off first, so none is left on from an earlier session).
        let mso = model_has_digital_ports(&self.variant);
        if let (Some(p), false) = (self.ports.first(), mso) {
            return Err(PicoError::Config {
                device,
                detail: format!(
                    "digital port {} ({}) asked for, but the {} has no digital inputs (only \
                     MSO models have them); remove digital_ports or connect an MSO model",
                    p.field(),
                    p.pico_name(),
                    self.variant
                ),
            });
        }
        if mso {
            for p in DigitalPort::ALL {
                let level = self.config.digital[p.index()];
                let counts = level.and_then(DigitalPort::logic_level_counts).unwrap_or(0);
                let s = self
                    .lib
                    .set_digital_port(h, p.code(), level.is_some(), counts);
                // Switching off a port nobody asked for must not stop an analogue run.
                if level.is_some() || s.is_disconnection() {
                    check(&device, sym.set_digital_port, s)?;
                }
            }
        }
        if let Some(s) = self.lib.set_device_resolution(h, self.config.resolution) {
            check(
                &device,
                sym.set_device_resolution.unwrap_or("SetDeviceResolution"),
                s,
            )?;
        }
        let (s, max) = self.lib.maximum_value(h);
        check(&device, sym.maximum_value, s)?;
        if max <= 0 {
            return Err(PicoError::Status {
                device,
                function: sym.maximum_value,
                status: PicoStatus::Other(max as u32),
            });
        }
        self.max_adc = max;
        for &c in &self.enabled {
            let ch = self.config.channels[c as usize];
            let volts = (ch.range.volts() / f64::from(max)) as f32;
            (self.scale[c as usize], self.offset[c as usize]) = match self.config.format {
                // mimoCoRB2's reading: the digitised (input + offset), in mV.
                SampleFormat::Millivolts => (1000.0 * volts, 0.0),
                _ => (volts, ch.analog_offset_v),
            };
        }
        // Where each source's samples come from: channel indices, then port codes.
        let sources: Vec<u8> = self
            .enabled
            .iter()
            .copied()
            .chain(self.ports.iter().map(|p| p.code()))
            .collect();
        let nsrc = sources.len();
        match (
            self.config.acquisition.block_shape(),
            self.config.acquisition,
        ) {
            (
                Some(BlockShape {
                    captures: captures_per_run,
                    trigger,
                    single,
                    ..
                }),
                _,
            ) => {
                // Block mode uses the unit's one segment as open leaves it; rapid block
                // divides the memory into a segment per capture.
                if !single {
                    let (s, max_per_segment) = self.lib.memory_segments(h, captures_per_run);
                    check(&device, sym.memory_segments, s)?;
                    if (max_per_segment as i64) < self.records as i64 * nsrc as i64
                        && max_per_segment > 0
                    {
                        return Err(PicoError::Config {
                            device,
                            detail: format!(
                                "{} captures of {} samples on {} channels and ports do not fit: {} samples per segment; use fewer captures per run",
                                captures_per_run, self.records, nsrc, max_per_segment
                            ),
                        });
                    }
                    check(
                        &device,
                        sym.set_no_of_captures,
                        self.lib.set_no_of_captures(h, captures_per_run),
                    )?;
                }
                self.choose_timebase(&device)?;
                match trigger {
                    Some(t) => {
                        let ch = self.config.channels[t.channel as usize];
                        let adc = ((t.level_v + f64::from(ch.analog_offset_v)) / ch.range.volts()
                            * f64::from(max))
                        .round();
                        if adc.abs() > f64::from(max) {
                            return Err(PicoError::Config {
                                device,
                                detail: format!(
                                    "trigger level {} V is outside channel {}'s range",
                                    t.level_v,
                                    channel_letter(t.channel)
                                ),
                            });
                        }
                        let s = self.lib.set_simple_trigger(
                            h,
                            true,
                            t.channel,
                            adc as i16,
                            t.direction.code(),
                            t.delay_samples,
                            t.auto_trigger_ms,
                        );
                        check(&device, sym.set_simple_trigger, s)?;
                    }
                    None => {
                        let s = self.lib.set_simple_trigger(h, false, 0, 0, 2, 0, 0);
                        check(&device, sym.set_simple_trigger, s)?;
                    }
                }
                // Buffers: allocated once, registered once per channel (port) and segment.
                if self.segments.len() != captures_per_run as usize * nsrc {
                    self.segments = (0..captures_per_run as usize * nsrc)
                        .map(|_| vec![0i16; self.records])
                        .collect();
                    self.overflow = vec![0; captures_per_run as usize];
                    self.trigger_times = vec![0; captures_per_run as usize];
                    self.trigger_units = vec![0; captures_per_run as usize];
                }
                for cap in 0..captures_per_run {
                    for (k, &c) in sources.iter().enumerate() {
                        let buf = &mut self.segments[cap as usize * nsrc + k];
                        // SAFETY: the Vec is never resized or dropped while the unit is open
                        // (it lives in `self`, and the unit is closed in Drop and before any
                        // reallocation above, which only happens on first configure).
                        let s = unsafe {
                            self.lib
                                .set_data_buffer(h, c, buf.as_mut_ptr(), buf.len() as i32, cap)
                        };
                        check(&device, sym.set_data_buffer, s)?;
                    }
                }
                self.captures = captures_per_run;
            }
            (
                None,
                Acquisition::Streaming {
                    overview_samples, ..
                },
            ) => {
                if self.stream_bufs.len() != nsrc {
                    self.stream_bufs = (0..nsrc)
                        .map(|_| vec![0i16; overview_samples as usize])
                        .collect();
                    self.stage = vec![0i16; nsrc * self.records];
                }
                for (k, &c) in sources.iter().enumerate() {
                    let buf = &mut self.stream_bufs[k];
                    // SAFETY: as for the segment buffers: allocated once, kept in `self`
                    // until the unit is closed.
                    let s = unsafe {
                        self.lib
                            .set_data_buffer(h, c, buf.as_mut_ptr(), buf.len() as i32, 0)
                    };
                    check(&device, sym.set_data_buffer, s)?;
                }
                self.interval_ns = self.config.sample_interval_ns;
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// Nearest timebase by the family's formula, confirmed (and stepped up past refusals)
    /// with GetTimebase2.
    fn choose_timebase(&mut self, device: &str) -> Result<(), PicoError> {
        if let Some(n) = self.config.timebase {
            let iv = self
                .probe_timebase(device, n)?
                .ok_or_else(|| PicoError::Config {
                    device: device.to_string(),
                    detail: format!(
                        "timebase {n} is not accepted with {} channel(s) (PICO_INVALID_TIMEBASE); \
                     choose a larger one",
                        self.enabled.len()
                    ),
                })?;
            self.timebase = n;
            self.interval_ns = iv;
            return Ok(());
        }
        let family = self.config.family;
        let formula = (family.timebases)(&self.variant, self.config.resolution);
        let wanted = self.config.sample_interval_ns;
        let first = formula.nearest(wanted).ok_or_else(|| PicoError::Config {
            device: device.to_string(),
            detail: format!("sample interval {wanted} ns has no timebase"),
        })?;
        let mut chosen = None;
        for n in first..first.saturating_add(8) {
            if let Some(iv) = self.probe_timebase(device, n)? {
                chosen = Some((n, iv));
                break;
            }
        }
        let Some((mut n, mut iv)) = chosen else {
            return Err(PicoError::Config {
                device: device.to_string(),
                detail: format!(
                    "no timebase from {first} on is accepted for {wanted} ns with {} channel(s) at {} bits \
                     (PICO_INVALID_TIMEBASE); choose a longer interval or fewer channels",
                    self.enabled.len(),
                    self.config.resolution.bits()
                ),
            });
        };
        // The device disagrees with the formula when it refused faster timebases (then the
        // step above is right) or when the formula is not this model's: then search the
        // device's own table, which grows with n.
        let expected = formula.interval_ns(n).unwrap_or(iv);
        if (iv - expected).abs() > 0.01 * expected {
            (n, iv) = self.search_timebase(device, wanted)?.unwrap_or((n, iv));
        }
        self.timebase = n;
        self.interval_ns = iv;
        Ok(())
    }

    /// GetTimebase2 for index `n`: its interval, or None if the device refuses the index.
    fn probe_timebase(&self, device: &str, n: u32) -> Result<Option<f64>, PicoError> {
        let (s, interval, _max) = self.lib.get_timebase2(self.handle, n, self.records as i32);
        match s {
            PicoStatus::Ok if interval > 0.0 => Ok(Some(f64::from(interval))),
            PicoStatus::Ok | PicoStatus::InvalidTimebase => Ok(None),
            other => Err(PicoError::Status {
                device: device.to_string(),
                function: self.config.family.symbols.get_timebase2,
                status: other,
            }),
        }
    }

    /// Binary search over the device's answers for the accepted timebase nearest `wanted`
    /// (ties: the longer interval). About 32 GetTimebase2 calls.
    fn search_timebase(&self, device: &str, wanted: f64) -> Result<Option<(u32, f64)>, PicoError> {
        // Smallest n whose interval is at least `wanted`; refused indices count as too fast.
        let (mut lo, mut hi) = (0u32, 1u32 << 31);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.probe_timebase(device, mid)? {
                Some(iv) if iv >= wanted => hi = mid,
                _ => lo = mid + 1,
            }
        }
        let above = self.probe_timebase(device, lo)?.map(|iv| (lo, iv));
        let below = match lo.checked_sub(1) {
            Some(m) => self.probe_timebase(device, m)?.map(|iv| (m, iv)),
            None => None,
        };
        Ok(match (below, above) {
            (Some(b), Some(a)) => Some(if (wanted - b.1) < (a.1 - wanted) {
                b
            } else {
                a
            }),
            (b, a) => a.or(b),
        })
    }

    /// The timebase index in use.
    pub fn timebase(&self) -> u32 {
        self.timebase
    }

    /// The sample interval the device confirmed, in ns.
    pub fn sample_interval_ns(&self) -> f64 {
        self.interval_ns
    }

    /// ADC full scale the device reported (`MaximumValue`).
    pub fn max_adc(&self) -> i16 {
        self.max_adc
    }

    /// The model variant the device reported (`5444D`).
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Trigger time offset of the last rapid-block event (sub-sample time from the trigger
    /// sample to the true trigger), in seconds.
    pub fn last_trigger_offset_s(&self) -> Option<f64> {
        self.last_trigger_offset_s
    }

    /// Counters since open.
    pub fn counters(&self) -> PicoCounters {
        self.counters
    }

    /// The library in use.
    pub fn library(&self) -> &PicoLibrary {
        &self.lib
    }

    /// How the unit is powered, and what to do when that is a compromise: the warning a
    /// user sees in the run notes after a power prompt was accepted.
    pub fn power_note(&self) -> String {
        match self.power_source {
            None => "as the unit wants (DC adapter or USB, no prompt)".to_string(),
            Some(PicoStatus::Usb3DeviceNonUsb3Port) => {
                "USB 2 port (USB3_0_DEVICE_NON_USB3_0_PORT accepted): transfers are slower; \
                 plug the scope into a USB 3 port"
                    .to_string()
            }
            Some(s) => format!(
                "USB only ({} accepted): some channels may be unavailable; plug in the \
                 scope's DC adapter for all channels",
                s.name()
            ),
        }
    }

    fn arm(&mut self) -> Result<(), PicoError> {
        let Some(BlockShape {
            pre_trigger,
            post_trigger,
            ..
        }) = self.config.acquisition.block_shape()
        else {
            return Ok(());
        };
        self.signal.ready.store(false, Ordering::Relaxed);
        self.signal.status.store(0, Ordering::Relaxed);
        let param = &*self.signal as *const BlockSignal as *mut c_void;
        let timebase = self.timebase;
        let run_block = |lib: &PicoLibrary, handle| {
            // SAFETY: the BlockSignal box lives until after the unit is stopped and closed
            // (Drop, reconnect), so the callback never sees freed memory.
            unsafe {
                lib.run_block(
                    handle,
                    pre_trigger as i32,
                    post_trigger as i32,
                    timebase,
                    block_ready,
                    param,
                )
            }
        };
        let mut s = run_block(&self.lib, self.handle);
        if s.is_power_change() && self.config.family.symbols.change_power_source.is_some() {
            // HARDWARE.md P: RunBlock answers POWER_SUPPLY_CONNECTED / _NOT_CONNECTED when
            // the DC adapter is plugged in or pulled out; accept the new source with that
            // very code and run the block again (once: a second refusal is an error).
            let changed = self.lib.change_power_source(self.handle, s);
            let function = self
                .config
                .family
                .symbols
                .change_power_source
                .unwrap_or("ChangePowerSource");
            self.check(function, changed.unwrap_or(s))?;
            self.power_source = (s != PicoStatus::PowerSupplyConnected).then_some(s);
            self.counters.power_changes += 1;
            s = run_block(&self.lib, self.handle);
        }
        self.check(self.config.family.symbols.run_block, s)?;
        self.counters.batches += 1;
        Ok(())
    }

    fn start_running(&mut self) -> Result<(), PicoError> {
        match self.config.acquisition {
            Acquisition::RapidBlock { .. } | Acquisition::Block { .. } => {
                self.arm()?;
                self.state = RunState::Armed;
            }
            Acquisition::Streaming {
                overview_samples, ..
            } => {
                // Nanoseconds if representable, else microseconds.
                let (value, units, unit_ns) = if self.config.sample_interval_ns < 4.0e9 {
                    (
                        self.config.sample_interval_ns.round().max(1.0) as u32,
                        2,
                        1.0,
                    )
                } else {
                    (
                        (self.config.sample_interval_ns / 1e3).round() as u32,
                        3,
                        1e3,
                    )
                };
                let (s, actual) =
                    self.lib
                        .run_streaming(self.handle, value, units, overview_samples);
                self.check(self.config.family.symbols.run_streaming, s)?;
                self.interval_ns = f64::from(actual) * unit_ns;
                self.stage_fill = 0;
                self.pending_len = 0;
                self.state = RunState::Streaming;
            }
        }
        self.was_running = true;
        Ok(())
    }

    /// Waits for the next event and writes it into `out` (exactly one event's bytes).
    /// Typed-error version of [`Source::read_event`].
    pub fn read_capture(
        &mut self,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<ReadOutcome, PicoError> {
        if out.len() != self.layout.event_size() {
            return Err(PicoError::Config {
                device: self.device(),
                detail: format!(
                    "output is {} bytes, one event is {} bytes",
                    out.len(),
                    self.layout.event_size()
                ),
            });
        }
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let deadline = Instant::now() + timeout;
        match self.state {
            RunState::Stopped => Err(PicoError::Config {
                device: self.device(),
                detail: "read before start".into(),
            }),
            RunState::Streaming => self.read_streaming(out, deadline),
            RunState::Armed | RunState::Draining { .. } => self.read_block(out, deadline),
        }
    }

    fn read_block(&mut self, out: &mut [u8], deadline: Instant) -> Result<ReadOutcome, PicoError> {
        if let RunState::Armed = self.state {
            if !self.wait_block(deadline)? {
                return Ok(ReadOutcome::Idle);
            }
            self.fetch_block()?;
        }
        let RunState::Draining { next, captures } = self.state else {
            return Ok(ReadOutcome::Idle);
        };
        self.write_capture(next, out);
        let t = self.trigger_times.get(next as usize).copied().unwrap_or(0);
        let u = self.trigger_units.get(next as usize).copied().unwrap_or(2);
        self.last_trigger_offset_s = Some(t as f64 * time_unit_s(u));
        if self.overflow.get(next as usize).copied().unwrap_or(0) != 0 {
            self.counters.overrange += 1;
        }
        self.counters.events += 1;
        self.state = if next + 1 < captures {
            RunState::Draining {
                next: next + 1,
                captures,
            }
        } else {
            RunState::Armed
        };
        if matches!(self.state, RunState::Armed) {
            if let Some(e) = self.rearm_error.take() {
                // The run after this one could not start; report it now that this one is out.
                self.state = RunState::Stopped;
                self.pending_error = Some(e);
            }
        }
        Ok(ReadOutcome::Event(EventInfo::default()))
    }

    /// Waits for the block-ready callback (confirmed by IsReady); at the deadline asks
    /// IsReady once (which also notices an unplugged scope while waiting for a trigger).
    fn wait_block(&mut self, deadline: Instant) -> Result<bool, PicoError> {
        let mut pause = Duration::from_micros(10);
        loop {
            if self.signal.ready.load(Ordering::Acquire) {
                let s = PicoStatus::from_code(self.signal.status.load(Ordering::Relaxed));
                if s != PicoStatus::Ok {
                    self.state = RunState::Stopped;
                    return Err(PicoError::Callback {
                        device: self.device(),
                        status: s,
                    });
                }
                // Confirm with IsReady: a callback of the previous run that arrived after
                // the re-arm (the IsReady at a deadline had already seen it ready) must not
                // count for this one. One call per run, not per event.
                let (s, ready) = self.lib.is_ready(self.handle);
                self.check(self.config.family.symbols.is_ready, s)?;
                if ready {
                    return Ok(true);
                }
                self.signal.ready.store(false, Ordering::Relaxed);
            }
            let now = Instant::now();
            if now >= deadline {
                let (s, ready) = self.lib.is_ready(self.handle);
                self.check(self.config.family.symbols.is_ready, s)?;
                return Ok(ready);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Fetches the armed run's captures into the registered buffers and their trigger
    /// offsets: `GetValues` and `GetTriggerTimeOffset64` of segment 0 in block mode,
    /// `GetValuesBulk` and `GetValuesTriggerTimeOffsetBulk64` of every segment in rapid
    /// block.
    fn fetch_block(&mut self) -> Result<(), PicoError> {
        let sym = &self.config.family.symbols;
        let to = self.captures - 1;
        let single = matches!(self.config.acquisition, Acquisition::Block { .. });
        let (function, s, got) = if single {
            let (s, got, overflow) = self.lib.get_values(self.handle, self.records as u32, 0);
            if let Some(o) = self.overflow.first_mut() {
                *o = overflow;
            }
            (sym.get_values, s, got)
        } else {
            let (s, got) = self.lib.get_values_bulk(
                self.handle,
                self.records as u32,
                0,
                to,
                &mut self.overflow,
            );
            (sym.get_values_bulk, s, got)
        };
        self.check(function, s)?;
        if got as usize != self.records {
            return Err(PicoError::BadData {
                device: self.device(),
                offset: self.counters.events,
                detail: format!(
                    "{} returned {got} samples per capture, {} were asked",
                    function.trim_start_matches(self.config.family.name),
                    self.records
                ),
            });
        }
        if single {
            let (s, time, unit) = self.lib.trigger_time_offset(self.handle, 0);
            self.check(sym.trigger_time_offset64, s)?;
            if let (Some(t), Some(u)) = (
                self.trigger_times.first_mut(),
                self.trigger_units.first_mut(),
            ) {
                (*t, *u) = (time, unit);
            }
        } else {
            let s = self.lib.trigger_time_offsets(
                self.handle,
                &mut self.trigger_times,
                &mut self.trigger_units,
                0,
                to,
            );
            self.check(sym.trigger_time_offset_bulk64, s)?;
        }
        self.state = RunState::Draining {
            next: 0,
            captures: self.captures,
        };
        // Re-arm at once: the scope captures the next run while we hand these out. Our
        // buffers are written only by GetValuesBulk, so they are safe until then.
        if let Err(e) = self.arm() {
            self.rearm_error = Some(e);
        }
        Ok(())
    }

    fn write_capture(&self, cap: u32, out: &mut [u8]) {
        let nsrc = self.enabled.len() + self.ports.len();
        let base = cap as usize * nsrc;
        self.write_records(|k| &self.segments[base + k], out);
    }

    /// Writes one event, record by record, from the samples of source `k` (`src(k)`: the
    /// enabled channels, then the ports). Allocates nothing; a short source leaves the
    /// rest of its field as it was rather than panicking.
    fn write_records<'a>(&'a self, src: impl Fn(usize) -> &'a [i16], out: &mut [u8]) {
        let nch = self.enabled.len();
        let rec = self.layout.record_size();
        let width = match self.config.format {
            SampleFormat::Volts | SampleFormat::Millivolts => {
                for (k, &c) in self.enabled.iter().enumerate() {
                    let (scale, offset) = (self.scale[c as usize], self.offset[c as usize]);
                    for (r, &x) in out.chunks_exact_mut(rec).zip(src(k)) {
                        let v = f32::from(x) * scale - offset;
                        r[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                4 * nch
            }
            SampleFormat::Raw => {
                for k in 0..nch {
                    for (r, &x) in out.chunks_exact_mut(rec).zip(src(k)) {
                        r[2 * k..2 * k + 2].copy_from_slice(&x.to_le_bytes());
                    }
                }
                2 * nch
            }
        };
        for j in 0..self.ports.len() {
            for (r, &x) in out.chunks_exact_mut(rec).zip(src(nch + j)) {
                // The port's eight inputs are the low byte (D0 = bit 0).
                r[width + j] = x as u8;
            }
        }
    }

    fn read_streaming(
        &mut self,
        out: &mut [u8],
        deadline: Instant,
    ) -> Result<ReadOutcome, PicoError> {
        let nsrc = self.enabled.len() + self.ports.len();
        let records = self.records;
        let mut pause = Duration::from_micros(20);
        loop {
            if self.pending_len > 0 && self.stage_fill < records {
                let take = self.pending_len.min(records - self.stage_fill);
                for k in 0..nsrc {
                    let src = &self.stream_bufs[k][self.pending_start..self.pending_start + take];
                    let at = k * records + self.stage_fill;
                    self.stage[at..at + take].copy_from_slice(src);
                }
                self.stage_fill += take;
                self.pending_start += take;
                self.pending_len -= take;
            }
            if self.stage_fill == records {
                self.write_stage(out);
                self.stage_fill = 0;
                self.counters.events += 1;
                return Ok(ReadOutcome::Event(EventInfo::default()));
            }
            let mut chunk = StreamChunk::default();
            // SAFETY: `chunk` outlives the call; the callback runs inside it.
            let s = unsafe {
                self.lib.get_streaming_latest_values(
                    self.handle,
                    streaming_ready,
                    &mut chunk as *mut StreamChunk as *mut c_void,
                )
            };
            if s != PicoStatus::Ok && s != PicoStatus::Busy {
                return Err(PicoError::Status {
                    device: self.device(),
                    function: self.config.family.symbols.get_streaming_latest_values,
                    status: s,
                });
            }
            if chunk.called && chunk.samples > 0 {
                let overview = self.stream_bufs.first().map_or(0, Vec::len);
                let end = chunk.start as usize + chunk.samples as usize;
                if end > overview {
                    return Err(PicoError::BadData {
                        device: self.device(),
                        offset: self.counters.stream_samples,
                        detail: format!(
                            "streaming callback names samples {}..{end}, the buffer holds {overview}",
                            chunk.start
                        ),
                    });
                }
                self.pending_start = chunk.start as usize;
                self.pending_len = chunk.samples as usize;
                self.counters.stream_samples += chunk.samples as u64;
                self.counters.batches += 1;
                if chunk.overflow != 0 {
                    self.counters.overrange += 1;
                }
                pause = Duration::from_micros(20);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(ReadOutcome::Idle);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_micros(500));
        }
    }

    fn write_stage(&self, out: &mut [u8]) {
        let records = self.records;
        self.write_records(|k| &self.stage[k * records..(k + 1) * records], out);
    }

    /// Switches the digital ports off and closes the unit (errors ignored: the unit may be
    /// gone). The registered buffers and the callback context may go after this.
    fn close_handle(&mut self) {
        if self.handle > 0 {
            let _ = self.lib.stop(self.handle);
            if model_has_digital_ports(&self.variant) {
                for p in &self.ports {
                    let _ = self.lib.set_digital_port(self.handle, p.code(), false, 0);
                }
            }
            let _ = self.lib.close_unit(self.handle);
            self.handle = 0;
        }
    }

    /// Starts acquisition (typed-error version of [`Source::start`]).
    pub fn start_capture(&mut self) -> Result<(), PicoError> {
        if !matches!(self.state, RunState::Stopped) {
            self.stop_capture()?;
        }
        self.pending_error = None;
        self.rearm_error = None;
        self.start_running()
    }

    /// Stops acquisition (typed-error version of [`Source::stop`]).
    pub fn stop_capture(&mut self) -> Result<(), PicoError> {
        self.state = RunState::Stopped;
        self.was_running = false;
        let s = self.lib.stop(self.handle);
        self.check(self.config.family.symbols.stop, s)
    }

    /// Replaces the pacing of [`Source::reconnect`] (default: 50 ms doubling to 1 s).
    pub fn set_reconnect_pacing(&mut self, pacing: RetryPacing) {
        self.pacing = pacing;
    }

    /// Times the unit came back through [`Source::reconnect`].
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// Closes the old handle and opens the unit again with the same settings; restarts if it
    /// was running. `Ok(false)` when the unit is not (yet) back.
    pub fn reopen(&mut self) -> Result<bool, PicoError> {
        let was_running = self.was_running;
        self.close_handle();
        self.state = RunState::Stopped;
        match self.open_unit() {
            Ok(()) => {}
            Err(e) if e.is_disconnection() => return Ok(false),
            Err(e) => return Err(e),
        }
        self.configure()?;
        if was_running {
            self.start_capture()?;
        }
        Ok(true)
    }
}

impl Source for PicoScope {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        (&self.info, &self.layout)
    }

    fn start(&mut self) -> Result<()> {
        self.start_capture().map_err(DriverError::from)
    }

    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        self.read_capture(out, timeout).map_err(DriverError::from)
    }

    fn stop(&mut self) -> Result<()> {
        self.stop_capture().map_err(DriverError::from)
    }

    /// With [`SampleFormat::Raw`]: per enabled channel, range / max ADC volts per count and
    /// the analogue offset taken off (the driver's own volts path, in f64).
    fn channel_scales(&self) -> Vec<ChannelScale> {
        if self.config.format != SampleFormat::Raw || self.max_adc <= 0 {
            return Vec::new();
        }
        self.enabled
            .iter()
            .map(|&c| {
                let ch = self.config.channels[c as usize];
                ChannelScale {
                    field: format!("ch{}", channel_letter(c)),
                    volts_per_count: ch.range.volts() / f64::from(self.max_adc),
                    // `0.0 -`: no "-0" for no offset.
                    offset_volts: 0.0 - f64::from(ch.analog_offset_v),
                }
            })
            .collect()
    }

    /// Waits its turn (50 ms after the first miss, doubling to 1 s), then tries
    /// [`reopen`](PicoScope::reopen) once; a unit that vanishes again while it is being set
    /// up counts as not back yet.
    fn reconnect(&mut self) -> Result<bool> {
        self.pacing.wait_turn();
        match self.reopen() {
            Ok(true) => {
                self.pacing.succeeded();
                self.reconnects += 1;
                Ok(true)
            }
            Ok(false) => {
                self.pacing.failed();
                Ok(false)
            }
            Err(e) if e.is_disconnection() => {
                self.pacing.failed();
                Ok(false)
            }
            Err(e) => {
                self.pacing.failed();
                Err(DriverError::from(e))
            }
        }
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let mut m = vec![
            (
                "picoscope.family".to_string(),
                self.config.family.name.to_string(),
            ),
            (
                "picoscope.library".to_string(),
                self.lib.path().display().to_string(),
            ),
            (
                "picoscope.driver_version".to_string(),
                self.driver_version.clone(),
            ),
            ("picoscope.variant".to_string(), self.variant.clone()),
            ("picoscope.serial".to_string(), self.serial.clone()),
            (
                "picoscope.resolution_bits".to_string(),
                self.config.resolution.bits().to_string(),
            ),
            ("picoscope.max_adc".to_string(), self.max_adc.to_string()),
            ("picoscope.power_source".to_string(), self.power_note()),
            (
                "picoscope.sample_interval_ns".to_string(),
                self.interval_ns.to_string(),
            ),
        ];
        match (
            self.config.acquisition.block_shape(),
            self.config.acquisition,
        ) {
            (
                Some(BlockShape {
                    pre_trigger,
                    post_trigger,
                    captures,
                    trigger,
                    single,
                }),
                _,
            ) => {
                let mode = if single { "block" } else { "rapid block" };
                m.push(("picoscope.mode".into(), mode.into()));
                m.push(("picoscope.timebase".into(), self.timebase.to_string()));
                m.push(("picoscope.pre_trigger".into(), pre_trigger.to_string()));
                m.push(("picoscope.post_trigger".into(), post_trigger.to_string()));
                if !single {
                    m.push(("picoscope.captures_per_run".into(), captures.to_string()));
                }
                if let Some(t) = trigger {
                    m.push((
                        "picoscope.trigger".into(),
                        format!(
                            "channel {} {:?} {} V",
                            channel_letter(t.channel),
                            t.direction,
                            t.level_v
                        ),
                    ));
                }
            }
            (
                None,
                Acquisition::Streaming {
                    samples_per_event, ..
                },
            ) => {
                m.push(("picoscope.mode".into(), "streaming".into()));
                m.push((
                    "picoscope.samples_per_event".into(),
                    samples_per_event.to_string(),
                ));
            }
            (None, _) => {}
        }
        for &c in &self.enabled {
            let ch = self.config.channels[c as usize];
            m.push((
                format!("picoscope.ch{}", channel_letter(c)),
                format!(
                    "±{} V {:?} offset {} V",
                    ch.range.volts(),
                    ch.coupling,
                    ch.analog_offset_v
                ),
            ));
        }
        for p in &self.ports {
            m.push((
                format!("picoscope.digital.{}", p.field()),
                format!(
                    "{} (D{}..D{}) logic level {} V",
                    p.pico_name(),
                    8 * p.index(),
                    8 * p.index() + 7,
                    self.config.digital[p.index()].unwrap_or(0.0)
                ),
            ));
        }
        m.push((
            "picoscope.overrange".into(),
            self.counters.overrange.to_string(),
        ));
        m.push(("picoscope.reconnects".into(), self.reconnects.to_string()));
        m
    }
}

impl Drop for PicoScope {
    fn drop(&mut self) {
        // Stop and close before the callback context and the registered buffers go.
        self.close_handle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_can_move_to_the_importer_thread() {
        fn send<T: Send>() {}
        send::<PicoScope>();
        send::<Box<dyn Source>>();
    }

    #[test]
    fn time_units_scale_to_seconds() {
        assert_eq!(time_unit_s(0), 1e-15);
        assert_eq!(time_unit_s(1), 1e-12);
        assert_eq!(time_unit_s(2), 1e-9);
        assert_eq!(time_unit_s(5), 1.0);
    }
}
