//! A stand-in for Pico Technology's driver libraries `libps2000a.so`, `libps3000a.so` and
//! `libps5000a.so`.
//!
//! Guarantees:
//! - Exports the subset of the `ps2000a*` / `ps3000a*` / `ps5000a*` C functions that
//!   daq-drivers uses,
//!   with the same signatures, the same `PICO_STATUS` (u32) return values and the same
//!   callback conventions (block-ready callback from a library thread, streaming callback from
//!   inside `GetStreamingLatestValues`). Copy the built `.so` to `libps5000a.so`,
//!   `libps3000a.so` or `libps2000a.so` and load it exactly as Pico's library is loaded.
//! - One simulated 4-channel PicoScope 5444D (ps5000a, serial `FAKE5000/001`), one
//!   2-channel PicoScope 2206A (ps2000a, serial `FAKE2000/001`) and one 4-channel
//!   PicoScope 3406D (ps3000a, serial `FAKE3000/001`) are attached.
//! - Power source (ps3000a, ps5000a): `OpenUnit` can answer POWER_SUPPLY_NOT_CONNECTED or
//!   USB3_0_DEVICE_NON_USB3_0_PORT with a valid handle (set by [`fakepico_set_open_power`]
//!   or, for a process that cannot call it, the environment variable `FAKEPICO_OPEN_POWER`
//!   = `0x11A` / `0x11E`); every call but `ChangePowerSource(handle, that code)` then
//!   answers that code, as Pico's library does. [`fakepico_power_change`] makes the next
//!   `RunBlock` report an adapter plugged in (0x119) or pulled out (0x11A) the same way.
//! - Ranges by model: a ps3000a unit whose variant is not a D model (`3204A`, `3405B`,
//!   `3206 MSO`; [`fakepico_set_variant`]) answers `SetChannel` on ±10/±20 mV with
//!   PICO_INVALID_VOLTAGE_RANGE (HARDWARE.md P: A/B models from ±50 mV).
//! - MSO models: [`fakepico_set_variant`] names the model every family's unit reports
//!   (e.g. `3406D MSO`); a name with `MSO` has two digital ports (Pico's C examples decide
//!   it the same way) and reports a digital hardware version (`GetUnitInfo` 7).
//!   `SetDigitalPort` is recorded ([`fakepico_digital_level`]); on a model without `MSO` it
//!   answers `PICO_INVALID_DIGITAL_PORT` (0x113) **[unverified: which code Pico's library
//!   returns there is not documented in the sources at hand]**. An enabled port's samples
//!   count the unit's digital samples: sample n (rapid block: n = capture × samples + i,
//!   captures counted from open; streaming: n = samples since `RunStreaming`) carries
//!   bits 0..7 of n in PORT0's low byte and bits 8..15 in PORT1's, so D15..D0 read as a
//!   16-bit sample counter; the high byte of each 16-bit port sample is `0xA5`, which a
//!   driver must ignore (Pico leaves it unspecified).
//! - Block captures (`RunBlock` of one capture, read with `GetValues`) and rapid block
//!   captures (read with `GetValuesBulk`) are made the same way. Captures hold exponential pulses (two-exponential shape, rise and fall in
//!   samples) plus Gaussian noise, scaled to ADC counts for the channel's range, the analogue
//!   offset and the device resolution (8-bit: steps of 256 up to ±32512; 12..16-bit: steps of
//!   2^(16-bits) up to ±32767). With a trigger set, the pulse on the trigger channel crosses
//!   the level in the trigger's direction between sample `pre-1` and sample `pre` (minus the
//!   trigger delay); a level no pulse can reach never triggers (unless auto-trigger is set).
//! - Streaming delivers a gapless sample sequence, paced by the wall clock at the sample
//!   interval (or unpaced on request); the ramp waveform makes gaps and repeats visible.
//! - Control functions (`fakepico_*`) inject any status into any named function, unplug and
//!   replug the devices, and count calls, so every error path of a driver can be exercised.
//!
//! Never: panics across the C boundary, writes outside the buffers the caller registered,
//! or calls a callback after `Stop`/`CloseUnit` has returned.
//!
//! Each process that loads a separate copy of this file (a different path) gets separate
//! state, which is how tests running in parallel stay independent.

#![allow(non_snake_case)]
// The internal functions mirror Pico's C prototypes argument for argument.
#![allow(clippy::too_many_arguments)]

use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod signal;

use signal::{Rng, Shape};

/// Where this library was built, for the tests that load it: the newest
/// `libfake_picosdk.so` next to the running test binary (`target/<profile>/deps`, where
/// cargo puts it as a dev-dependency), one level up, or at one of `also`. Panics, saying how
/// to build it, when there is none.
pub fn built_library(also: &[std::path::PathBuf]) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let mut candidates = vec![deps.join("libfake_picosdk.so")];
    if let Some(profile) = deps.parent() {
        candidates.push(profile.join("libfake_picosdk.so"));
    }
    candidates.extend_from_slice(also);
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "fake-picosdk's libfake_picosdk.so not found (looked at {candidates:?}); \
                 build it with `cargo build -p fake-picosdk`"
            )
        })
}

/// `PICO_STATUS` as the C API returns it.
pub type PicoStatus = u32;

/// Block-ready callback: `void cb(int16_t handle, PICO_STATUS status, void *pParameter)`.
pub type BlockReady = Option<unsafe extern "C" fn(i16, PicoStatus, *mut c_void)>;

/// Streaming callback: `void cb(int16_t handle, int32_t noOfSamples, uint32_t startIndex,
/// int16_t overflow, uint32_t triggerAt, int16_t triggered, int16_t autoStop, void *p)`.
pub type StreamingReady =
    Option<unsafe extern "C" fn(i16, i32, u32, i16, u32, i16, i16, *mut c_void)>;

/// The `PICO_STATUS` codes this fake returns (values from Pico's `PicoStatus.h`).
pub mod status {
    #![allow(missing_docs)]
    pub const OK: u32 = 0x00;
    pub const NOT_FOUND: u32 = 0x03;
    pub const NOT_RESPONDING: u32 = 0x07;
    pub const INVALID_HANDLE: u32 = 0x0C;
    pub const INVALID_PARAMETER: u32 = 0x0D;
    pub const INVALID_TIMEBASE: u32 = 0x0E;
    pub const INVALID_VOLTAGE_RANGE: u32 = 0x0F;
    pub const INVALID_CHANNEL: u32 = 0x10;
    pub const INVALID_TRIGGER_CHANNEL: u32 = 0x11;
    pub const NULL_PARAMETER: u32 = 0x16;
    pub const TOO_MANY_SAMPLES: u32 = 0x1D;
    pub const TOO_MANY_SEGMENTS: u32 = 0x1E;
    pub const NO_SAMPLES_AVAILABLE: u32 = 0x25;
    pub const SEGMENT_OUT_OF_RANGE: u32 = 0x26;
    pub const BUSY: u32 = 0x27;
    pub const STARTINDEX_INVALID: u32 = 0x28;
    pub const INVALID_SAMPLE_INTERVAL: u32 = 0x2B;
    pub const INVALID_COUPLING: u32 = 0x45;
    pub const BUFFERS_NOT_SET: u32 = 0x46;
    pub const RATIO_MODE_NOT_SUPPORTED: u32 = 0x47;
    pub const POWER_SUPPLY_CONNECTED: u32 = 0x119;
    pub const POWER_SUPPLY_NOT_CONNECTED: u32 = 0x11A;
    pub const POWER_SUPPLY_REQUEST_INVALID: u32 = 0x11B;
    pub const USB3_0_DEVICE_NON_USB3_0_PORT: u32 = 0x11E;
    pub const INVALID_DEVICE_RESOLUTION: u32 = 0x120;
    pub const INVALID_NUMBER_CHANNELS_FOR_RESOLUTION: u32 = 0x121;
    pub const INVALID_DIGITAL_PORT: u32 = 0x113;
}

/// Sources of a unit's data: channels A..D (0..4), then digital ports PORT0, PORT1 (4, 5).
const SOURCES: usize = 6;

/// The `channelOrPort` Pico's API uses for source `s` (0..4 channels, 0x80/0x81 ports).
fn source_code(s: usize) -> i32 {
    if s < 4 {
        s as i32
    } else {
        0x80 + (s as i32 - 4)
    }
}

/// The digital sample of port `p` (0, 1) for the unit's `n`-th digital sample: bits
/// 8p..8p+7 of n in the low byte, `0xA5` in the high byte.
pub(crate) fn digital_sample(n: u64, p: usize) -> i16 {
    (0xA500u16 | ((n >> (8 * p)) & 0xFF) as u16) as i16
}
use status as st;

/// Which of Pico's libraries a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    Ps2000a,
    Ps3000a,
    Ps5000a,
}

impl Fam {
    fn serial(self) -> &'static str {
        match self {
            Fam::Ps2000a => "FAKE2000/001",
            Fam::Ps3000a => "FAKE3000/001",
            Fam::Ps5000a => "FAKE5000/001",
        }
    }
    fn variant(self) -> &'static str {
        match self {
            Fam::Ps2000a => "2206A",
            Fam::Ps3000a => "3406D",
            Fam::Ps5000a => "5444D",
        }
    }
    fn channels(self) -> usize {
        match self {
            Fam::Ps2000a => 2,
            Fam::Ps3000a | Fam::Ps5000a => 4,
        }
    }
    /// Channels that may be on at `resolution` (ps5000a's `PS5000A_DEVICE_RESOLUTION`: 15
    /// bits, code 3, allows two; 16 bits, code 4, one; the others take no resolution).
    fn channels_at(self, resolution: u32) -> usize {
        match (self, resolution) {
            (Fam::Ps5000a, 3) => 2,
            (Fam::Ps5000a, 4) => 1,
            _ => self.channels(),
        }
    }
    /// Capture memory in samples.
    fn memory(self) -> u64 {
        match self {
            Fam::Ps2000a => 32 * 1024 * 1024,
            Fam::Ps3000a => 256 * 1024 * 1024,
            Fam::Ps5000a => 128 * 1024 * 1024,
        }
    }
    fn max_segments(self) -> u32 {
        match self {
            Fam::Ps2000a => 32_000,
            Fam::Ps3000a => 500_000,
            Fam::Ps5000a => 250_000,
        }
    }
    /// Bits of the ADC at a resolution code (ps2000a has one fixed 8-bit resolution).
    fn bits(self, resolution: u32) -> u32 {
        match self {
            Fam::Ps2000a | Fam::Ps3000a => 8,
            Fam::Ps5000a => [8, 12, 14, 15, 16][resolution.min(4) as usize],
        }
    }
    fn max_value(self, resolution: u32) -> i16 {
        if self.bits(resolution) == 8 {
            32512
        } else {
            32767
        }
    }
    /// (first fast timebase, last fast timebase, fast unit ns, slow offset, slow step ns).
    fn timebases(self, resolution: u32) -> (u32, u32, f64, u32, f64) {
        match (self, resolution) {
            (Fam::Ps2000a, _) => (0, 2, 2.0, 2, 16.0),
            // 3406D: 2^n / 1 GHz, then (n − 2) / 125 MHz (HARDWARE.md P, 4-channel row).
            (Fam::Ps3000a, _) => (0, 2, 1.0, 2, 8.0),
            (Fam::Ps5000a, 0) => (0, 2, 1.0, 2, 8.0),
            (Fam::Ps5000a, 1) => (1, 3, 1.0, 3, 16.0),
            (Fam::Ps5000a, 2) | (Fam::Ps5000a, 3) => (3, 3, 1.0, 2, 8.0),
            (Fam::Ps5000a, _) => (4, 4, 1.0, 3, 16.0),
        }
    }
    /// Sample interval of timebase `n` with `enabled` channels, or None if not allowed.
    fn interval_ns(self, resolution: u32, n: u32, enabled: usize) -> Option<f64> {
        let (first, last, unit, offset, step) = self.timebases(resolution);
        // The fastest timebases need fewer channels: each doubling of the channel count
        // halves the fastest rate.
        let extra = match enabled {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        if n < first + extra {
            return None;
        }
        if n <= last {
            Some(unit * f64::from(1u32 << n))
        } else {
            Some(f64::from(n - offset) * step)
        }
    }
    fn range_ok(self, range: i32) -> bool {
        match self {
            Fam::Ps2000a | Fam::Ps3000a => (1..=10).contains(&range),
            Fam::Ps5000a => (0..=10).contains(&range),
        }
    }
}

/// ±full scale in volts of range codes 0..=11 (10 mV .. 50 V).
fn range_volts(range: i32) -> f64 {
    const V: [f64; 12] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0,
    ];
    V[range.clamp(0, 11) as usize]
}

#[derive(Clone, Copy, Debug)]
struct Chan {
    enabled: bool,
    range: i32,
    offset_v: f32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Trig {
    enabled: bool,
    source: i32,
    threshold: i16,
    direction: i32,
    delay: u32,
    auto_ms: i16,
}

/// A rapid-block run in flight or finished.
struct Block {
    id: u64,
    samples: usize,
    /// `data[segment * SOURCES + source]`, `samples` counts each.
    data: Vec<Vec<i16>>,
    overflow: Vec<i16>,
    offsets_ps: Vec<i64>,
    ready: bool,
    thread: Option<JoinHandle<()>>,
}

struct Stream {
    interval_ns: f64,
    start: Instant,
    delivered: u64,
    write_pos: u32,
    overview: u32,
    /// Samples since the current pulse began, and its amplitudes per channel (volts).
    pulse_age: Option<usize>,
    pulse_amp: [f64; 4],
}

struct Unit {
    handle: i16,
    fam: Fam,
    /// What `GetUnitInfo` VARIANT reports (fixed at open).
    variant: &'static str,
    /// A model with digital ports (`MSO` in its name).
    mso: bool,
    /// Logic level of PORT0, PORT1 as `SetDigitalPort` set it; None = off.
    ports: [Option<i16>; 2],
    /// Digital samples made by rapid block captures since open.
    digital_seq: u64,
    resolution: u32,
    dead: bool,
    power_pending: Option<u32>,
    chans: [Chan; 4],
    trig: Trig,
    segments: u32,
    captures: u32,
    /// (channel, segment, pointer, length) as registered with SetDataBuffer.
    buffers: Vec<(i32, u32, usize, i32)>,
    block: Option<Block>,
    run_id: u64,
    stream: Option<Stream>,
    rng: Rng,
}

impl Unit {
    /// Whether the model offers range code `range`: the family's ranges, and for the
    /// ps3000a A/B models and 3204..3206 MSO from ±50 mV only (HARDWARE.md P: D and D MSO
    /// models from ±20 mV; Pico's C example tells them apart by the variant's fifth
    /// character).
    fn range_ok(&self, range: i32) -> bool {
        let d_model = self
            .variant
            .trim()
            .as_bytes()
            .get(4)
            .map(u8::to_ascii_uppercase)
            == Some(b'D');
        self.fam.range_ok(range) && (self.fam != Fam::Ps3000a || d_model || range >= 2)
    }
    fn enabled(&self) -> usize {
        self.chans.iter().filter(|c| c.enabled).count()
    }
    /// Whether source `s` (0..4 channels, 4..6 ports) is on.
    fn source_on(&self, s: usize) -> bool {
        if s < 4 {
            self.chans[s].enabled
        } else {
            self.ports[s - 4].is_some()
        }
    }
    /// Channels and ports on: what shares the capture memory.
    fn sources(&self) -> usize {
        (0..SOURCES).filter(|&s| self.source_on(s)).count()
    }
    /// The buffer registered for source `s` (0..4 channels, 4..6 ports) and a segment.
    fn buffer(&self, s: usize, seg: u32) -> Option<(usize, i32)> {
        let code = source_code(s);
        self.buffers
            .iter()
            .rev()
            .find(|b| b.0 == code && b.1 == seg)
            .map(|b| (b.2, b.3))
    }
    /// Volts to ADC counts on channel `ch`; also says whether it clipped.
    fn to_adc(&self, ch: usize, volts: f64) -> (i16, bool) {
        let c = self.chans[ch];
        let max = f64::from(self.fam.max_value(self.resolution));
        let step = f64::from(1u32 << (16 - self.fam.bits(self.resolution)));
        let raw = (volts + f64::from(c.offset_v)) / range_volts(c.range) * max;
        let q = (raw / step).round() * step;
        if q > max {
            (max as i16, true)
        } else if q < -max {
            (-max as i16, true)
        } else {
            (q as i16, false)
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    amp_min: f64,
    amp_max: f64,
    shape: Shape,
    noise: f64,
    ramp: bool,
    capture_rate_hz: f64,
    paced: bool,
    pulse_per_sample: f64,
    seed: u64,
    /// Model name the ps2000a unit reports instead of 2206A (its timebases stay 2206A's).
    variant_2000a: Option<&'static str>,
    /// Model name every family's unit reports instead of its default (timebases stay).
    variant: Option<&'static str>,
    /// The power prompt `OpenUnit` answers with (0x11A / 0x11E), if any.
    open_power: Option<u32>,
    /// The power change the next `RunBlock` reports (0x119 / 0x11A), if any.
    power_change: Option<u32>,
}

impl Settings {
    /// What a fresh library (and `fakepico_reset`) starts from; a `const` so that the
    /// `static` state can start from it too.
    const DEFAULT: Settings = Settings {
        amp_min: 0.2,
        amp_max: 0.8,
        shape: Shape::DEFAULT,
        noise: 0.005,
        ramp: false,
        capture_rate_hz: 0.0,
        paced: true,
        pulse_per_sample: 1.0 / 2000.0,
        seed: 0x5EED_0FF1_C0DE,
        variant_2000a: None,
        variant: None,
        open_power: None,
        power_change: None,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

struct Injection {
    name: String,
    status: u32,
    skip: u32,
}

struct Fake {
    unplugged: bool,
    injections: Vec<Injection>,
    calls: Vec<(String, u32)>,
    units: Vec<Unit>,
    next_handle: i16,
    settings: Settings,
}

static FAKE: Mutex<Fake> = Mutex::new(Fake {
    unplugged: false,
    injections: Vec::new(),
    calls: Vec::new(),
    units: Vec::new(),
    next_handle: 1,
    settings: Settings::DEFAULT,
});

fn fake() -> MutexGuard<'static, Fake> {
    FAKE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fake {
    /// Counts the call and returns an injected status if one is due.
    fn enter(&mut self, name: &str) -> Option<u32> {
        match self.calls.iter_mut().find(|c| c.0 == name) {
            Some(c) => c.1 += 1,
            None => self.calls.push((name.to_string(), 1)),
        }
        let i = self.injections.iter().position(|j| j.name == name)?;
        if self.injections[i].skip > 0 {
            self.injections[i].skip -= 1;
            return None;
        }
        Some(self.injections.remove(i).status)
    }

    /// The open unit of `handle` that still answers (also while it waits for
    /// `ChangePowerSource`).
    fn answering(&mut self, handle: i16, fam: Fam) -> Result<&mut Unit, u32> {
        let unit = self
            .units
            .iter_mut()
            .find(|u| u.handle == handle && u.fam == fam)
            .ok_or(st::INVALID_HANDLE)?;
        if unit.dead {
            return Err(st::NOT_RESPONDING);
        }
        Ok(unit)
    }

    /// The open unit of `handle`, ready for work: it answers and no power prompt waits.
    fn unit(&mut self, handle: i16, fam: Fam) -> Result<&mut Unit, u32> {
        let unit = self.answering(handle, fam)?;
        if let Some(p) = unit.power_pending {
            return Err(p);
        }
        Ok(unit)
    }
}

/// Runs `f` on the unit after the common checks (injection, handle, unplug, power prompt).
fn with_unit(
    name: &str,
    fam: Fam,
    handle: i16,
    f: impl FnOnce(&mut Unit, &Settings) -> u32,
) -> u32 {
    let mut g = fake();
    if let Some(s) = g.enter(name) {
        return s;
    }
    let settings = g.settings;
    match g.unit(handle, fam) {
        Ok(u) => f(u, &settings),
        Err(s) => s,
    }
}

/// Runs `f` on the unit after the checks of a call that a power prompt does not block
/// (injection, handle, unplug).
fn with_answering_unit(name: &str, fam: Fam, handle: i16, f: impl FnOnce(&mut Unit) -> u32) -> u32 {
    let mut g = fake();
    if let Some(s) = g.enter(name) {
        return s;
    }
    match g.answering(handle, fam) {
        Ok(u) => f(u),
        Err(s) => s,
    }
}

/// Cancels a unit's block run and streaming; returns the thread to join outside the lock.
fn stop_unit(u: &mut Unit) -> Option<JoinHandle<()>> {
    u.run_id += 1;
    u.stream = None;
    u.block.as_mut().and_then(|b| {
        b.ready = false;
        b.thread.take()
    })
}

fn join(t: Option<JoinHandle<()>>) {
    if let Some(t) = t {
        if t.thread().id() != std::thread::current().id() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Family-independent implementations; the exported functions below add the name and the
// family, and for the functions of a unit (those taking `u: &mut Unit`) the common checks
// of `with_unit`.

fn open_unit(name: &str, fam: Fam, handle: *mut i16, serial: *const i8, resolution: u32) -> u32 {
    if handle.is_null() {
        return st::NULL_PARAMETER;
    }
    let mut g = fake();
    let injected = g.enter(name);
    // SAFETY: checked non-null above; the caller passes a pointer to one int16_t.
    unsafe { *handle = 0 };
    let mut power = match injected {
        Some(p @ (st::POWER_SUPPLY_NOT_CONNECTED | st::USB3_0_DEVICE_NON_USB3_0_PORT)) => Some(p),
        Some(s) => {
            // SAFETY: as above.
            unsafe { *handle = if s == st::NOT_FOUND { 0 } else { -1 } };
            return s;
        }
        None => g.settings.open_power.or_else(env_open_power),
    };
    if g.unplugged {
        return st::NOT_FOUND;
    }
    if !serial.is_null() {
        // SAFETY: a non-null serial is a NUL-terminated string by the API's contract.
        let wanted = unsafe { CStr::from_ptr(serial) }.to_string_lossy();
        if wanted != fam.serial() {
            return st::NOT_FOUND;
        }
    }
    if g.units.iter().any(|u| u.fam == fam && !u.dead) {
        // The one simulated device of this family is already open.
        return st::NOT_FOUND;
    }
    if fam == Fam::Ps2000a {
        // The 2000A series has no power socket and no ChangePowerSource.
        power = None;
    }
    if fam == Fam::Ps5000a && resolution > 4 {
        return st::INVALID_DEVICE_RESOLUTION;
    }
    let h = g.next_handle;
    g.next_handle = g.next_handle.wrapping_add(1).max(1);
    let seed = g.settings.seed ^ (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let variant = match (fam, g.settings.variant_2000a, g.settings.variant) {
        (Fam::Ps2000a, Some(v), _) => v,
        (_, _, Some(v)) => v,
        _ => fam.variant(),
    };
    g.units.push(Unit {
        handle: h,
        fam,
        variant,
        mso: variant.to_ascii_uppercase().contains("MSO"),
        ports: [None, None],
        digital_seq: 0,
        resolution: if fam == Fam::Ps5000a { resolution } else { 0 },
        dead: false,
        power_pending: power,
        chans: [Chan {
            enabled: true,
            range: 7,
            offset_v: 0.0,
        }; 4],
        trig: Trig::default(),
        segments: 1,
        captures: 1,
        buffers: Vec::new(),
        block: None,
        run_id: 0,
        stream: None,
        rng: Rng::new(seed),
    });
    if let Some(u) = g.units.last_mut() {
        // Channels the model lacks, or the resolution does not allow, start switched off.
        for c in fam.channels_at(u.resolution)..4 {
            u.chans[c].enabled = false;
        }
    }
    // SAFETY: as above.
    unsafe { *handle = h };
    power.unwrap_or(st::OK)
}

/// `FAKEPICO_OPEN_POWER`: the power prompt `OpenUnit` answers with, for a process (the
/// daq-engine binary) whose test cannot call [`fakepico_set_open_power`].
fn env_open_power() -> Option<u32> {
    let v = std::env::var("FAKEPICO_OPEN_POWER").ok()?;
    let v = v.trim();
    let code = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => v.parse().ok()?,
    };
    matches!(
        code,
        st::POWER_SUPPLY_NOT_CONNECTED | st::USB3_0_DEVICE_NON_USB3_0_PORT
    )
    .then_some(code)
}

fn close_unit(name: &str, fam: Fam, handle: i16) -> u32 {
    let t = {
        let mut g = fake();
        if let Some(s) = g.enter(name) {
            return s;
        }
        let Some(i) = g
            .units
            .iter()
            .position(|u| u.handle == handle && u.fam == fam)
        else {
            return st::INVALID_HANDLE;
        };
        let mut u = g.units.remove(i);
        stop_unit(&mut u)
    };
    join(t);
    st::OK
}

fn stop(name: &str, fam: Fam, handle: i16) -> u32 {
    let mut t = None;
    let s = with_unit(name, fam, handle, |u, _| {
        t = stop_unit(u);
        st::OK
    });
    join(t);
    s
}

fn change_power_source(name: &str, fam: Fam, handle: i16, state: u32) -> u32 {
    with_answering_unit(name, fam, handle, |u| match (u.power_pending, state) {
        // The answer must repeat the prompt's own code (Pico's C example passes the
        // status OpenUnit/RunBlock returned).
        (Some(p), s) if p == s => {
            u.power_pending = None;
            st::OK
        }
        (Some(_), _) => st::POWER_SUPPLY_REQUEST_INVALID,
        (
            None,
            st::POWER_SUPPLY_CONNECTED
            | st::POWER_SUPPLY_NOT_CONNECTED
            | st::USB3_0_DEVICE_NON_USB3_0_PORT,
        ) => st::OK,
        (None, _) => st::INVALID_PARAMETER,
    })
}

fn unit_info(
    name: &str,
    fam: Fam,
    handle: i16,
    out: *mut i8,
    len: i16,
    required: *mut i16,
    info: u32,
) -> u32 {
    with_answering_unit(name, fam, handle, |u| {
        let text: &str = match info {
            0 => "fake-picosdk 0.1.0",
            1 => "3.0",
            2 => "1",
            3 => u.variant,
            4 => fam.serial(),
            5 => "01Jan26",
            6 => "fake kernel driver",
            // PICO_DIGITAL_HARDWARE_VERSION: only units with digital hardware have one.
            7 if u.mso => "1",
            _ => return st::INVALID_PARAMETER,
        };
        let bytes = text.as_bytes();
        if !required.is_null() {
            // SAFETY: non-null pointer to one int16_t per the API.
            unsafe { *required = bytes.len() as i16 + 1 };
        }
        if out.is_null() || len <= 0 {
            return st::OK;
        }
        let n = bytes.len().min(len as usize - 1);
        // SAFETY: the caller gave `len` writable bytes at `out`; we write n + 1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const i8, out, n);
            *out.add(n) = 0;
        }
        st::OK
    })
}

fn enumerate_units(name: &str, fam: Fam, count: *mut i16, serials: *mut i8, len: *mut i16) -> u32 {
    let mut g = fake();
    if let Some(s) = g.enter(name) {
        return s;
    }
    if count.is_null() {
        return st::NULL_PARAMETER;
    }
    if g.unplugged {
        // SAFETY: non-null pointer to one int16_t.
        unsafe { *count = 0 };
        return st::NOT_FOUND;
    }
    // SAFETY: as above.
    unsafe { *count = 1 };
    if !serials.is_null() && !len.is_null() {
        let s = fam.serial().as_bytes();
        // SAFETY: `len` points to the buffer length in bytes, `serials` to that many bytes.
        unsafe {
            let cap = (*len).max(0) as usize;
            if cap < s.len() + 1 {
                return st::INVALID_PARAMETER;
            }
            std::ptr::copy_nonoverlapping(s.as_ptr() as *const i8, serials, s.len());
            *serials.add(s.len()) = 0;
            *len = s.len() as i16;
        }
    }
    st::OK
}

fn set_resolution(u: &mut Unit, res: u32) -> u32 {
    if res > 4 {
        return st::INVALID_DEVICE_RESOLUTION;
    }
    if u.enabled() > u.fam.channels_at(res) {
        return st::INVALID_NUMBER_CHANNELS_FOR_RESOLUTION;
    }
    u.resolution = res;
    st::OK
}

fn set_channel(u: &mut Unit, ch: i32, enabled: i16, coupling: i32, range: i32, offset: f32) -> u32 {
    if !(0..u.fam.channels() as i32).contains(&ch) {
        return st::INVALID_CHANNEL;
    }
    if !(0..=1).contains(&coupling) {
        return st::INVALID_COUPLING;
    }
    if enabled != 0 && !u.range_ok(range) {
        return st::INVALID_VOLTAGE_RANGE;
    }
    let mut next = u.chans;
    next[ch as usize] = Chan {
        enabled: enabled != 0,
        range,
        offset_v: offset,
    };
    let n = next.iter().filter(|c| c.enabled).count();
    if n > u.fam.channels_at(u.resolution) {
        return st::INVALID_NUMBER_CHANNELS_FOR_RESOLUTION;
    }
    u.chans = next;
    st::OK
}

fn get_timebase2(
    u: &mut Unit,
    tb: u32,
    samples: i32,
    interval: *mut f32,
    max: *mut i32,
    segment: u32,
) -> u32 {
    let Some(ns) = u.fam.interval_ns(u.resolution, tb, u.enabled()) else {
        return st::INVALID_TIMEBASE;
    };
    if segment >= u.segments {
        return st::SEGMENT_OUT_OF_RANGE;
    }
    let max_samples = max_per_segment(u);
    if samples < 0 || i64::from(samples) > max_samples {
        return st::TOO_MANY_SAMPLES;
    }
    // SAFETY: optional out-pointers to one float / one int32_t each.
    unsafe {
        if !interval.is_null() {
            *interval = ns as f32;
        }
        if !max.is_null() {
            *max = max_samples as i32;
        }
    }
    st::OK
}

fn max_per_segment(u: &Unit) -> i64 {
    (u.fam.memory() / u64::from(u.segments.max(1)) / u.sources().max(1) as u64) as i64
}

fn set_digital_port(u: &mut Unit, port: i32, enabled: i16, level: i16) -> u32 {
    // [unverified] the code Pico's library gives a model without digital ports.
    if !u.mso || !(0x80..=0x81).contains(&port) {
        return st::INVALID_DIGITAL_PORT;
    }
    if level == i16::MIN {
        // Outside PS*_MIN_LOGIC_LEVEL (−32767).
        return st::INVALID_PARAMETER;
    }
    u.ports[(port - 0x80) as usize] = (enabled != 0).then_some(level);
    st::OK
}

fn set_simple_trigger(
    u: &mut Unit,
    enable: i16,
    source: i32,
    threshold: i16,
    direction: i32,
    delay: u32,
    auto_ms: i16,
) -> u32 {
    if enable != 0 && !(0..u.fam.channels() as i32).contains(&source) {
        return st::INVALID_TRIGGER_CHANNEL;
    }
    if !(0..=4).contains(&direction) {
        return st::INVALID_PARAMETER;
    }
    u.trig = Trig {
        enabled: enable != 0,
        source,
        threshold,
        direction,
        delay,
        auto_ms,
    };
    st::OK
}

fn memory_segments(u: &mut Unit, n: u32, max: *mut i32) -> u32 {
    if n == 0 || n > u.fam.max_segments() {
        return st::TOO_MANY_SEGMENTS;
    }
    u.segments = n;
    u.captures = u.captures.min(n);
    u.buffers.clear();
    if !max.is_null() {
        // SAFETY: non-null pointer to one int32_t.
        unsafe { *max = (u.fam.memory() / u64::from(n)) as i32 };
    }
    st::OK
}

fn set_no_of_captures(u: &mut Unit, n: u32) -> u32 {
    if n == 0 || n > u.segments {
        return st::INVALID_PARAMETER;
    }
    u.captures = n;
    st::OK
}

fn set_data_buffer(u: &mut Unit, ch: i32, buf: *mut i16, len: i32, segment: u32, mode: i32) -> u32 {
    if (0x80..=0x83).contains(&ch) {
        if !u.mso || ch > 0x81 {
            return st::INVALID_DIGITAL_PORT;
        }
    } else if !(0..u.fam.channels() as i32).contains(&ch) {
        return st::INVALID_CHANNEL;
    }
    if segment >= u.segments {
        return st::SEGMENT_OUT_OF_RANGE;
    }
    if mode != 0 {
        return st::RATIO_MODE_NOT_SUPPORTED;
    }
    u.buffers.retain(|b| !(b.0 == ch && b.1 == segment));
    if !buf.is_null() && len > 0 {
        u.buffers.push((ch, segment, buf as usize, len));
    }
    st::OK
}

struct BlockArgs {
    fam: Fam,
    handle: i16,
    pre: i32,
    post: i32,
    tb: u32,
    time_indisposed: *mut i32,
    segment: u32,
    cb: BlockReady,
    param: *mut c_void,
}

fn run_block(name: &str, a: BlockArgs) -> u32 {
    let mut g = fake();
    if let Some(s) = g.enter(name) {
        return s;
    }
    let settings = g.settings;
    let power_change = if a.fam == Fam::Ps2000a {
        None
    } else {
        g.settings.power_change.take()
    };
    let u = match g.unit(a.handle, a.fam) {
        Ok(u) => u,
        Err(s) => return s,
    };
    if let Some(p) = power_change {
        // The adapter was plugged in or pulled out: the unit waits for ChangePowerSource.
        u.power_pending = Some(p);
        return p;
    }
    if u.block
        .as_ref()
        .is_some_and(|b| b.thread.is_some() && !b.ready)
        || u.stream.is_some()
    {
        return st::BUSY;
    }
    let Some(interval_ns) = a.fam.interval_ns(u.resolution, a.tb, u.enabled()) else {
        return st::INVALID_TIMEBASE;
    };
    if a.pre < 0 || a.post < 0 || a.pre + a.post <= 0 {
        return st::INVALID_PARAMETER;
    }
    if i64::from(a.pre) + i64::from(a.post) > max_per_segment(u) {
        return st::TOO_MANY_SAMPLES;
    }
    if a.segment + u.captures > u.segments {
        return st::SEGMENT_OUT_OF_RANGE;
    }
    if u.trig.enabled && !u.chans[u.trig.source as usize].enabled {
        return st::INVALID_TRIGGER_CHANNEL;
    }
    let samples = (a.pre + a.post) as usize;
    let mut block = Block {
        id: u.run_id + 1,
        samples,
        data: vec![Vec::new(); u.segments as usize * SOURCES],
        overflow: vec![0; u.segments as usize],
        offsets_ps: vec![0; u.segments as usize],
        ready: false,
        thread: None,
    };
    u.run_id += 1;
    let mut triggered = true;
    for seg in a.segment..a.segment + u.captures {
        match signal::capture(
            u,
            &settings,
            a.pre as usize - (u.trig.delay as usize).min(a.pre as usize),
            samples,
        ) {
            Some((chans, overflow, phase)) => {
                for (c, data) in chans.into_iter().enumerate() {
                    block.data[seg as usize * SOURCES + c] = data;
                }
                block.overflow[seg as usize] = overflow;
                block.offsets_ps[seg as usize] = -(phase * interval_ns * 1000.0).round() as i64;
            }
            None => {
                triggered = false;
                break;
            }
        }
    }
    let delay = if triggered {
        if settings.capture_rate_hz > 0.0 {
            Duration::from_secs_f64(f64::from(u.captures) / settings.capture_rate_hz)
        } else {
            Duration::ZERO
        }
    } else if u.trig.auto_ms > 0 {
        // Auto-trigger: capture noise only after the auto-trigger time.
        for seg in a.segment..a.segment + u.captures {
            for c in 0..4 {
                if u.chans[c].enabled {
                    let data = (0..samples)
                        .map(|_| {
                            let v = u.rng.gauss() * settings.noise * range_volts(u.chans[c].range);
                            u.to_adc(c, v).0
                        })
                        .collect();
                    block.data[seg as usize * SOURCES + c] = data;
                }
            }
        }
        Duration::from_millis(u.trig.auto_ms as u64 * u64::from(u.captures))
    } else {
        // The level is out of every pulse's reach: the scope waits for ever.
        u.block = Some(block);
        return st::OK;
    };
    // The digital ports' samples, counted over the captures handed out since open.
    for seg in a.segment..a.segment + u.captures {
        for p in 0..2 {
            if u.ports[p].is_some() {
                let first = u.digital_seq;
                block.data[seg as usize * SOURCES + 4 + p] = (0..samples as u64)
                    .map(|i| digital_sample(first + i, p))
                    .collect();
            }
        }
        u.digital_seq += samples as u64;
    }
    if !a.time_indisposed.is_null() {
        // SAFETY: non-null pointer to one int32_t.
        unsafe { *a.time_indisposed = delay.as_millis() as i32 };
    }
    let handle = u.handle;
    let fam = a.fam;
    let id = block.id;
    let cb = a.cb;
    let param = a.param as usize;
    u.block = Some(block);
    let thread = std::thread::Builder::new()
        .name("fake-pico-block".into())
        .spawn(move || block_thread(fam, handle, id, delay, cb, param));
    match thread {
        Ok(t) => {
            if let Some(b) = u.block.as_mut() {
                b.thread = Some(t);
            }
            st::OK
        }
        Err(_) => 0x02, // PICO_MEMORY_FAIL
    }
}

fn block_thread(fam: Fam, handle: i16, id: u64, delay: Duration, cb: BlockReady, param: usize) {
    let deadline = Instant::now() + delay;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        let g = fake();
        let alive = g
            .units
            .iter()
            .any(|u| u.handle == handle && u.fam == fam && u.run_id == id && !u.dead);
        if !alive {
            break;
        }
    }
    let status = {
        let mut g = fake();
        let Some(u) = g
            .units
            .iter_mut()
            .find(|u| u.handle == handle && u.fam == fam)
        else {
            return;
        };
        if u.run_id != id {
            return; // stopped
        }
        if u.dead {
            st::NOT_RESPONDING
        } else {
            if let Some(b) = u.block.as_mut() {
                b.ready = true;
            }
            st::OK
        }
    };
    if let Some(cb) = cb {
        // SAFETY: the caller registered this callback and parameter with RunBlock and keeps
        // them valid until Stop/CloseUnit returns, which joins this thread first.
        unsafe { cb(handle, status, param as *mut c_void) };
    }
}

fn is_ready(u: &mut Unit, ready: *mut i16) -> u32 {
    if ready.is_null() {
        return st::NULL_PARAMETER;
    }
    let r = u.block.as_ref().is_some_and(|b| b.ready);
    // SAFETY: non-null pointer to one int16_t.
    unsafe { *ready = i16::from(r) };
    st::OK
}

/// `GetValuesBulk`: segments `from..=to`, each from its first sample, one overflow flag per
/// segment.
fn get_values_bulk(
    u: &mut Unit,
    n: *mut u32,
    from: u32,
    to: u32,
    ratio: u32,
    mode: i32,
    overflow: *mut i16,
) -> u32 {
    copy_values(u, n, ratio, mode, None, from, to, overflow)
}

/// `GetValues`: one segment from sample `start`, one overflow flag.
fn get_values(
    u: &mut Unit,
    start: u32,
    n: *mut u32,
    ratio: u32,
    mode: i32,
    segment: u32,
    overflow: *mut i16,
) -> u32 {
    copy_values(u, n, ratio, mode, Some(start), segment, segment, overflow)
}

/// Copies the ready block's segments `from..=to` into the buffers registered with
/// `SetDataBuffer`, from sample `start` (`GetValues`; `None` for `GetValuesBulk`, which has
/// no start index and so no STARTINDEX_INVALID), at most `*n` samples; writes the count back
/// to `*n` and one overflow flag per segment to `overflow` (may be null).
fn copy_values(
    u: &mut Unit,
    n: *mut u32,
    ratio: u32,
    mode: i32,
    start: Option<u32>,
    from: u32,
    to: u32,
    overflow: *mut i16,
) -> u32 {
    if n.is_null() {
        return st::NULL_PARAMETER;
    }
    if mode != 0 || ratio > 1 {
        return st::RATIO_MODE_NOT_SUPPORTED;
    }
    let Some(block) = u.block.as_ref().filter(|b| b.ready) else {
        return st::NO_SAMPLES_AVAILABLE;
    };
    if from > to || to >= u.segments {
        return st::SEGMENT_OUT_OF_RANGE;
    }
    let start = match start {
        Some(s) if s as usize >= block.samples => return st::STARTINDEX_INVALID,
        Some(s) => s as usize,
        None => 0,
    };
    // SAFETY: non-null pointer to one uint32_t (in: wanted, out: fetched).
    let wanted = unsafe { *n } as usize;
    let mut count = wanted.min(block.samples - start);
    let short = SHORT_NEXT.swap(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    if short != u32::MAX {
        count = count.min(short as usize);
    }
    for seg in from..=to {
        for c in 0..SOURCES {
            if !u.source_on(c) {
                continue;
            }
            let Some((ptr, len)) = u.buffer(c, seg) else {
                return st::BUFFERS_NOT_SET;
            };
            let src = &block.data[seg as usize * SOURCES + c];
            let src = src.get(start..).unwrap_or(&[]);
            let k = count.min(len as usize).min(src.len());
            // SAFETY: the caller registered `len` writable int16_t at `ptr` for this source
            // and segment with SetDataBuffer; k <= len.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr as *mut i16, k) };
        }
        if !overflow.is_null() {
            // SAFETY: the overflow array has one int16_t per segment from..=to (GetValues:
            // one int16_t).
            unsafe { *overflow.add((seg - from) as usize) = block.overflow[seg as usize] };
        }
    }
    // SAFETY: as above.
    unsafe { *n = count as u32 };
    st::OK
}

/// `GetTriggerTimeOffset64`: the offsets of segments `segment..=segment`.
fn trigger_offset(u: &mut Unit, time: *mut i64, unit: *mut i32, segment: u32) -> u32 {
    trigger_offsets(u, time, unit, segment, segment)
}

/// `GetValuesTriggerTimeOffsetBulk64`: one offset and one time unit per segment `from..=to`.
fn trigger_offsets(u: &mut Unit, times: *mut i64, units: *mut i32, from: u32, to: u32) -> u32 {
    let Some(block) = u.block.as_ref().filter(|b| b.ready) else {
        return st::NO_SAMPLES_AVAILABLE;
    };
    if times.is_null() || units.is_null() {
        return st::NULL_PARAMETER;
    }
    if from > to || to >= u.segments {
        return st::SEGMENT_OUT_OF_RANGE;
    }
    for seg in from..=to {
        let i = (seg - from) as usize;
        // SAFETY: both arrays hold one element per segment from..=to.
        unsafe {
            *times.add(i) = block.offsets_ps[seg as usize];
            *units.add(i) = 1; // PS
        }
    }
    st::OK
}

#[allow(clippy::too_many_arguments)]
fn run_streaming(
    u: &mut Unit,
    interval: *mut u32,
    units: i32,
    _pre: u32,
    _post: u32,
    _auto_stop: i16,
    ratio: u32,
    mode: i32,
    overview: u32,
) -> u32 {
    if interval.is_null() {
        return st::NULL_PARAMETER;
    }
    if mode != 0 || ratio > 1 {
        return st::RATIO_MODE_NOT_SUPPORTED;
    }
    if !(0..=5).contains(&units) || overview == 0 {
        return st::INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to one uint32_t (in: requested, out: actual interval).
    let requested = unsafe { *interval };
    let unit_ns = 10f64.powi(units * 3 - 6);
    let req_ns = f64::from(requested) * unit_ns;
    // Streaming runs on the slow timebases: round to the nearest one at or above the
    // fastest allowed.
    let (_, last, _, offset, step) = u.fam.timebases(u.resolution);
    let n = ((req_ns / step).round() as u32 + offset).max(last + 1);
    let Some(ns) = u.fam.interval_ns(u.resolution, n, u.enabled()) else {
        return st::INVALID_SAMPLE_INTERVAL;
    };
    if requested == 0 || ns / unit_ns > f64::from(u32::MAX) {
        return st::INVALID_SAMPLE_INTERVAL;
    }
    for c in 0..SOURCES {
        if u.source_on(c) && u.buffer(c, 0).is_none() {
            return st::BUFFERS_NOT_SET;
        }
    }
    // SAFETY: as above.
    unsafe { *interval = (ns / unit_ns).round().max(1.0) as u32 };
    u.run_id += 1;
    u.stream = Some(Stream {
        interval_ns: ns,
        start: Instant::now(),
        delivered: 0,
        write_pos: 0,
        overview,
        pulse_age: None,
        pulse_amp: [0.0; 4],
    });
    st::OK
}

fn latest_values(name: &str, fam: Fam, handle: i16, cb: StreamingReady, param: *mut c_void) -> u32 {
    let mut call = None;
    let s = with_unit(name, fam, handle, |u, settings| {
        let Some(stream) = u.stream.as_ref() else {
            return st::INVALID_PARAMETER;
        };
        let room = stream.overview - stream.write_pos;
        let due = if settings.paced {
            let elapsed = stream.start.elapsed().as_secs_f64() * 1e9;
            ((elapsed / stream.interval_ns) as u64).saturating_sub(stream.delivered)
        } else {
            u64::from(room)
        };
        let n = due.min(u64::from(room)) as u32;
        if n == 0 {
            return st::BUSY;
        }
        let start = stream.write_pos;
        let overflow = signal::stream(u, settings, start, n);
        if let Some(s) = u.stream.as_mut() {
            s.delivered += u64::from(n);
            s.write_pos = (start + n) % s.overview;
        }
        call = Some((n, start, overflow));
        st::OK
    });
    if let (Some((n, start, overflow)), Some(cb)) = (call, cb) {
        // SAFETY: streaming callbacks run inside GetStreamingLatestValues with the caller's
        // parameter, as Pico's library does.
        unsafe { cb(handle, n as i32, start, overflow, 0, 0, 0, param) };
    }
    s
}

fn maximum_value(u: &mut Unit, v: *mut i16) -> u32 {
    if v.is_null() {
        return st::NULL_PARAMETER;
    }
    // SAFETY: non-null pointer to one int16_t.
    unsafe { *v = u.fam.max_value(u.resolution) };
    st::OK
}

fn ping(_: &mut Unit) -> u32 {
    st::OK
}

// ------------------------------------------------------------------------------------------
// The exported C API, family by family.

/// Exported C functions, each named `<prefix><Function>` as in Pico's headers and calling
/// its family-independent implementation with that name, the family and its own arguments
/// in order. One line a function: `Function => implementation(argument: type, ...);`.
macro_rules! c_exports {
    ($fam:expr, $pfx:ident; $($(#[$doc:meta])* $func:ident => $imp:ident($($arg:ident: $ty:ty),* $(,)?);)*) => { pastey::paste! { $(
        $(#[$doc])*
        #[no_mangle]
        pub extern "C" fn [<$pfx $func>]($($arg: $ty),*) -> u32 {
            $imp(concat!(stringify!($pfx), stringify!($func)), $fam, $($arg),*)
        }
    )* }};
}

/// Exported C functions of a unit, named as [`c_exports`] names them, whose first argument
/// is the handle: each calls its implementation on the unit after the common checks
/// ([`with_unit`]), with its other arguments in order. One line a function:
/// `Function => implementation(argument after the handle: type, ...);`.
macro_rules! unit_exports {
    ($fam:expr, $pfx:ident; $($(#[$doc:meta])* $func:ident => $imp:ident($($arg:ident: $ty:ty),* $(,)?);)*) => { pastey::paste! { $(
        $(#[$doc])*
        #[no_mangle]
        pub extern "C" fn [<$pfx $func>](handle: i16, $($arg: $ty),*) -> u32 {
            with_unit(concat!(stringify!($pfx), stringify!($func)), $fam, handle, |u, _| {
                $imp(u, $($arg),*)
            })
        }
    )* }};
}

/// The functions every family exports (`common_exports!(Fam::Ps5000a, ps5000a)` gives
/// `ps5000aCloseUnit` ...).
macro_rules! common_exports {
    ($fam:expr, $pfx:ident) => {
        c_exports! { $fam, $pfx;
            /// `PICO_STATUS CloseUnit(int16_t handle)`
            CloseUnit => close_unit(handle: i16);
            /// `PICO_STATUS Stop(int16_t handle)`
            Stop => stop(handle: i16);
            /// `PICO_STATUS GetUnitInfo(int16_t handle, int8_t *string, int16_t len, int16_t *required, PICO_INFO info)`
            GetUnitInfo => unit_info(handle: i16, s: *mut i8, len: i16, required: *mut i16, info: u32);
            /// `PICO_STATUS EnumerateUnits(int16_t *count, int8_t *serials, int16_t *serialLth)`
            EnumerateUnits => enumerate_units(count: *mut i16, serials: *mut i8, len: *mut i16);
            /// `PICO_STATUS GetStreamingLatestValues(handle, StreamingReady cb, void *pParameter)`
            GetStreamingLatestValues => latest_values(handle: i16, cb: StreamingReady, param: *mut c_void);
        }
        unit_exports! { $fam, $pfx;
            /// `PICO_STATUS PingUnit(int16_t handle)`
            PingUnit => ping();
            /// `PICO_STATUS SetChannel(handle, channel, int16_t enabled, coupling, range, float analogOffset)`
            SetChannel => set_channel(ch: i32, enabled: i16, coupling: i32, range: i32, offset: f32);
            /// `PICO_STATUS SetSimpleTrigger(handle, int16_t enable, source, int16_t threshold, direction, uint32_t delay, int16_t autoTrigger_ms)`
            SetSimpleTrigger => set_simple_trigger(
                enable: i16, source: i32, threshold: i16, direction: i32, delay: u32, auto_ms: i16
            );
            /// `PICO_STATUS MemorySegments(handle, uint32_t nSegments, int32_t *nMaxSamples)`
            MemorySegments => memory_segments(n: u32, max: *mut i32);
            /// `PICO_STATUS SetNoOfCaptures(handle, uint32_t nCaptures)`
            SetNoOfCaptures => set_no_of_captures(n: u32);
            /// `PICO_STATUS IsReady(handle, int16_t *ready)`
            IsReady => is_ready(ready: *mut i16);
            /// `PICO_STATUS SetDataBuffer(handle, channel, int16_t *buffer, int32_t len, uint32_t segment, ratioMode)`
            SetDataBuffer => set_data_buffer(ch: i32, buf: *mut i16, len: i32, segment: u32, mode: i32);
            /// `PICO_STATUS GetValues(handle, uint32_t startIndex, uint32_t *noOfSamples, uint32_t downSampleRatio, ratioMode, uint32_t segmentIndex, int16_t *overflow)`
            GetValues => get_values(
                start: u32, n: *mut u32, ratio: u32, mode: i32, segment: u32, overflow: *mut i16
            );
            /// `PICO_STATUS GetValuesBulk(handle, uint32_t *noOfSamples, uint32_t from, uint32_t to, uint32_t ratio, mode, int16_t *overflow)`
            GetValuesBulk => get_values_bulk(
                n: *mut u32, from: u32, to: u32, ratio: u32, mode: i32, overflow: *mut i16
            );
            /// `PICO_STATUS GetTriggerTimeOffset64(handle, int64_t *time, TIME_UNITS *timeUnits, uint32_t segmentIndex)`
            GetTriggerTimeOffset64 => trigger_offset(time: *mut i64, unit: *mut i32, segment: u32);
            /// `PICO_STATUS GetValuesTriggerTimeOffsetBulk64(handle, int64_t *times, TIME_UNITS *units, uint32_t from, uint32_t to)`
            GetValuesTriggerTimeOffsetBulk64 => trigger_offsets(
                times: *mut i64, units: *mut i32, from: u32, to: u32
            );
            /// `PICO_STATUS RunStreaming(handle, uint32_t *sampleInterval, units, uint32_t maxPre, uint32_t maxPost, int16_t autoStop, uint32_t ratio, mode, uint32_t overviewBufferSize)`
            RunStreaming => run_streaming(
                interval: *mut u32, units: i32, pre: u32, post: u32, auto_stop: i16, ratio: u32,
                mode: i32, overview: u32
            );
            /// `PICO_STATUS MaximumValue(handle, int16_t *value)`
            MaximumValue => maximum_value(v: *mut i16);
            /// `PICO_STATUS SetDigitalPort(int16_t handle, DIGITAL_PORT port, int16_t enabled, int16_t logicLevel)`
            /// (ps5000a names the port type `PS5000A_CHANNEL`)
            SetDigitalPort => set_digital_port(port: i32, enabled: i16, level: i16);
        }
    };
}

/// `GetTimebase2` and `RunBlock` of one family. ps2000a and ps3000a carry an `int16_t
/// oversample` argument (named by the last, optional macro argument, e.g. `_oversample`)
/// that ps5000a lacks; the fake ignores it.
macro_rules! block_exports {
    ($fam:expr, $pfx:ident $(, $oversample:ident)?) => { pastey::paste! {
        /// `PICO_STATUS GetTimebase2(handle, uint32_t timebase, int32_t noSamples, float *timeIntervalNanoseconds, [int16_t oversample,] int32_t *maxSamples, uint32_t segmentIndex)`
        #[no_mangle]
        pub extern "C" fn [<$pfx GetTimebase2>](
            handle: i16,
            tb: u32,
            samples: i32,
            interval: *mut f32,
            $($oversample: i16,)?
            max: *mut i32,
            segment: u32,
        ) -> u32 {
            with_unit(concat!(stringify!($pfx), "GetTimebase2"), $fam, handle, |u, _| {
                get_timebase2(u, tb, samples, interval, max, segment)
            })
        }
        /// `PICO_STATUS RunBlock(handle, int32_t noOfPreTriggerSamples, int32_t noOfPostTriggerSamples, uint32_t timebase, [int16_t oversample,] int32_t *timeIndisposedMs, uint32_t segmentIndex, BlockReady lpReady, void *pParameter)`
        #[no_mangle]
        pub extern "C" fn [<$pfx RunBlock>](
            handle: i16,
            pre: i32,
            post: i32,
            tb: u32,
            $($oversample: i16,)?
            time_indisposed: *mut i32,
            segment: u32,
            cb: BlockReady,
            param: *mut c_void,
        ) -> u32 {
            run_block(
                concat!(stringify!($pfx), "RunBlock"),
                BlockArgs {
                    fam: $fam,
                    handle,
                    pre,
                    post,
                    tb,
                    time_indisposed,
                    segment,
                    cb,
                    param,
                },
            )
        }
    }};
}

common_exports!(Fam::Ps5000a, ps5000a);
common_exports!(Fam::Ps2000a, ps2000a);
common_exports!(Fam::Ps3000a, ps3000a);

block_exports!(Fam::Ps5000a, ps5000a);
block_exports!(Fam::Ps2000a, ps2000a, _oversample);
block_exports!(Fam::Ps3000a, ps3000a, _oversample);

/// `OpenUnit`, with the resolution argument where the family takes one, and
/// `ChangePowerSource` where the family has it (HARDWARE.md P).
macro_rules! open_exports {
    ($fam:expr, $pfx:ident $(, $resolution:ident)? $(; $power:ident)?) => { pastey::paste! {
        /// `PICO_STATUS OpenUnit(int16_t *handle, int8_t *serial[, PS5000A_DEVICE_RESOLUTION res])`
        #[no_mangle]
        pub extern "C" fn [<$pfx OpenUnit>](
            handle: *mut i16,
            serial: *const i8,
            $($resolution: u32,)?
        ) -> u32 {
            open_unit(
                concat!(stringify!($pfx), "OpenUnit"),
                $fam,
                handle,
                serial,
                0 $(+ $resolution)?,
            )
        }
        $(
        /// `PICO_STATUS ChangePowerSource(int16_t handle, PICO_STATUS powerState)`
        #[no_mangle]
        pub extern "C" fn [<$pfx $power>](handle: i16, state: u32) -> u32 {
            change_power_source(concat!(stringify!($pfx), stringify!($power)), $fam, handle, state)
        }
        )?
    }};
}

open_exports!(Fam::Ps3000a, ps3000a; ChangePowerSource);
open_exports!(Fam::Ps5000a, ps5000a, resolution; ChangePowerSource);
open_exports!(Fam::Ps2000a, ps2000a);

unit_exports! { Fam::Ps5000a, ps5000a;
    /// `PICO_STATUS ps5000aSetDeviceResolution(int16_t handle, PS5000A_DEVICE_RESOLUTION res)`
    SetDeviceResolution => set_resolution(resolution: u32);
}

// ------------------------------------------------------------------------------------------
// Control functions for tests. None of these exist in Pico's libraries.

fn name_of(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null NUL-terminated string by this function's contract.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The next call of the exported function `name` (e.g. `"ps5000aRunBlock"`) returns
/// `status` without doing anything (for `OpenUnit` with 0x11A or 0x11E: opens and asks for
/// `ChangePowerSource`). Returns 0, or -1 if `name` is null.
#[no_mangle]
pub extern "C" fn fakepico_inject_status(name: *const c_char, status: u32) -> i32 {
    fakepico_inject_status_after(name, status, 0)
}

/// Like [`fakepico_inject_status`], but lets `skip` calls of `name` pass first.
#[no_mangle]
pub extern "C" fn fakepico_inject_status_after(name: *const c_char, status: u32, skip: u32) -> i32 {
    let Some(name) = name_of(name) else { return -1 };
    fake().injections.push(Injection { name, status, skip });
    0
}

/// How many times the exported function `name` has been called since load or reset.
#[no_mangle]
pub extern "C" fn fakepico_call_count(name: *const c_char) -> u32 {
    let Some(name) = name_of(name) else { return 0 };
    fake().calls.iter().find(|c| c.0 == name).map_or(0, |c| c.1)
}

/// The sample count the next `GetValues` / `GetValuesBulk` returns at most (`u32::MAX`: as asked).
static SHORT_NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// The next `GetValues` or `GetValuesBulk` returns at most `n` samples per capture, as a driver that lost
/// data on the bus would report (then the fake answers in full again).
#[no_mangle]
pub extern "C" fn fakepico_short_values_once(n: u32) {
    SHORT_NEXT.store(n, std::sync::atomic::Ordering::SeqCst);
}

/// Unplugs the simulated devices: open handles answer `PICO_NOT_RESPONDING` from now on
/// (a block in flight reports it through its callback), `OpenUnit` and `EnumerateUnits`
/// answer `PICO_NOT_FOUND` until [`fakepico_replug`].
#[no_mangle]
pub extern "C" fn fakepico_unplug() {
    let mut g = fake();
    g.unplugged = true;
    for u in g.units.iter_mut() {
        u.dead = true;
    }
}

/// Plugs the simulated devices back in; old handles stay dead, a new `OpenUnit` works.
#[no_mangle]
pub extern "C" fn fakepico_replug() {
    fake().unplugged = false;
}

/// Pulse shape: amplitudes uniform in [`amp_min`, `amp_max`] × the channel's full scale,
/// rise and fall time constants in samples, Gaussian noise sigma as a fraction of full
/// scale. Returns 0, or -1 if the values make no sense (nothing changed).
#[no_mangle]
pub extern "C" fn fakepico_set_pulse(
    amp_min: f64,
    amp_max: f64,
    rise: f64,
    fall: f64,
    noise: f64,
) -> i32 {
    let ok = amp_min >= 0.0 && amp_max >= amp_min && rise > 0.0 && fall > rise && noise >= 0.0;
    if !(ok && amp_max.is_finite() && fall.is_finite() && noise.is_finite()) {
        return -1;
    }
    let mut g = fake();
    g.settings.amp_min = amp_min;
    g.settings.amp_max = amp_max;
    g.settings.shape = Shape::new(rise, fall);
    g.settings.noise = noise;
    0
}

/// Waveform: 0 = pulses and noise, 1 = a ramp of ADC counts (streaming:
/// `(sample_index + 7919 × channel) mod 30000`) that makes gaps and repeats visible.
#[no_mangle]
pub extern "C" fn fakepico_set_waveform(kind: i32) {
    fake().settings.ramp = kind == 1;
}

/// Rapid block: how many captures per second the simulated detector triggers (0 = at once).
#[no_mangle]
pub extern "C" fn fakepico_set_capture_rate(hz: f64) {
    fake().settings.capture_rate_hz = if hz.is_finite() && hz > 0.0 { hz } else { 0.0 };
}

/// Streaming: 1 = deliver samples as the wall clock makes them due (default), 0 = fill
/// the overview buffer on every call (for throughput measurements).
#[no_mangle]
pub extern "C" fn fakepico_set_streaming_paced(paced: i32) {
    fake().settings.paced = paced != 0;
}

/// Streaming pulses: mean pulses per sample (default 1/2000).
#[no_mangle]
pub extern "C" fn fakepico_set_pulse_rate(per_sample: f64) {
    if per_sample.is_finite() && (0.0..=1.0).contains(&per_sample) {
        fake().settings.pulse_per_sample = per_sample;
    }
}

/// The model name the ps2000a unit reports (`GetUnitInfo` VARIANT); its timebases stay
/// those of a 2206A. Lets tests present a model whose timebase table the driver guesses
/// wrong. Returns 0, or -1 for a null or empty name.
#[no_mangle]
pub extern "C" fn fakepico_set_ps2000a_variant(name: *const c_char) -> i32 {
    match name_of(name) {
        Some(v) if !v.is_empty() => {
            fake().settings.variant_2000a = Some(Box::leak(v.into_boxed_str()));
            0
        }
        _ => -1,
    }
}

/// The model name every family's unit opened from now on reports (`GetUnitInfo` VARIANT),
/// e.g. `3406D MSO`: a name with `MSO` gives the unit two digital ports. Timebases and
/// channels stay the family's. Null or empty: back to the defaults. Returns 0.
#[no_mangle]
pub extern "C" fn fakepico_set_variant(name: *const c_char) -> i32 {
    fake().settings.variant = name_of(name)
        .filter(|v| !v.is_empty())
        .map(|v| &*Box::leak(v.into_boxed_str()));
    0
}

/// The logic level `SetDigitalPort` set on digital port `port` (0 = PORT0, 1 = PORT1) of
/// the first open unit, or `i32::MIN` when that port is off or no unit is open.
#[no_mangle]
pub extern "C" fn fakepico_digital_level(port: u32) -> i32 {
    let g = fake();
    g.units
        .iter()
        .find(|u| !u.dead)
        .and_then(|u| u.ports.get(port as usize).copied().flatten())
        .map_or(i32::MIN, i32::from)
}

/// The power prompt the next `OpenUnit` calls (ps3000a, ps5000a) answer with: 0x11A
/// (POWER_SUPPLY_NOT_CONNECTED), 0x11E (USB3_0_DEVICE_NON_USB3_0_PORT), or 0 for none.
/// Returns 0, or -1 for any other code (nothing changed).
#[no_mangle]
pub extern "C" fn fakepico_set_open_power(status: u32) -> i32 {
    let power = match status {
        0 => None,
        st::POWER_SUPPLY_NOT_CONNECTED | st::USB3_0_DEVICE_NON_USB3_0_PORT => Some(status),
        _ => return -1,
    };
    fake().settings.open_power = power;
    0
}

/// The next `RunBlock` (ps3000a, ps5000a) reports a new power source: 0x119 (DC adapter
/// plugged in) or 0x11A (pulled out), and waits for `ChangePowerSource` with that code.
/// Returns 0, or -1 for any other code (nothing changed).
#[no_mangle]
pub extern "C" fn fakepico_power_change(status: u32) -> i32 {
    match status {
        st::POWER_SUPPLY_CONNECTED | st::POWER_SUPPLY_NOT_CONNECTED => {
            fake().settings.power_change = Some(status);
            0
        }
        _ => -1,
    }
}

/// Seed of the noise and amplitude generator for units opened from now on.
#[no_mangle]
pub extern "C" fn fakepico_seed(seed: u64) {
    fake().settings.seed = seed;
}

/// Closes every unit, clears injections, counts and settings, replugs.
#[no_mangle]
pub extern "C" fn fakepico_reset() {
    let threads: Vec<_> = {
        let mut g = fake();
        let mut units = std::mem::take(&mut g.units);
        g.injections.clear();
        g.calls.clear();
        g.unplugged = false;
        g.settings = Settings::default();
        units.iter_mut().map(stop_unit).collect()
    };
    for t in threads {
        join(t);
    }
}
