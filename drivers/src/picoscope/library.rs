//! Pico's driver library for one family, loaded at run time with `libloading`, behind
//! one set of safe methods that hide the families' signature differences.
//!
//! Guarantees: the search order is the configured path, then
//! `/opt/picoscope/lib/lib<family>.so`, then the bare file name through the OS search path
//! (`LD_LIBRARY_PATH`, ld.so.conf); a missing library is a [`PicoError::LibraryMissing`]
//! that names the package and every path tried. Every function pointer is resolved at load,
//! so a call never fails for a missing symbol later. The library stays loaded as long as
//! any [`PicoLibrary`] clone lives. Never panics; never allocates in the per-event calls.

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::family::{FamilyTable, Resolution};
use super::status::{PicoError, PicoStatus};

/// Block-ready callback: `void cb(int16_t handle, PICO_STATUS status, void *pParameter)`.
pub type BlockReady = unsafe extern "C" fn(i16, u32, *mut c_void);
/// Streaming callback: `void cb(int16_t handle, int32_t noOfSamples, uint32_t startIndex,
/// int16_t overflow, uint32_t triggerAt, int16_t triggered, int16_t autoStop, void *p)`.
pub type StreamingReady = unsafe extern "C" fn(i16, i32, u32, i16, u32, i16, i16, *mut c_void);

type OpenRes = unsafe extern "C" fn(*mut i16, *const i8, u32) -> u32;
type Open = unsafe extern "C" fn(*mut i16, *const i8) -> u32;
type HandleOnly = unsafe extern "C" fn(i16) -> u32;
type UnitInfo = unsafe extern "C" fn(i16, *mut i8, i16, *mut i16, u32) -> u32;
type Enumerate = unsafe extern "C" fn(*mut i16, *mut i8, *mut i16) -> u32;
type SetChannel = unsafe extern "C" fn(i16, i32, i16, i32, i32, f32) -> u32;
type Timebase2 = unsafe extern "C" fn(i16, u32, i32, *mut f32, *mut i32, u32) -> u32;
type Timebase2Os = unsafe extern "C" fn(i16, u32, i32, *mut f32, i16, *mut i32, u32) -> u32;
type SimpleTrigger = unsafe extern "C" fn(i16, i16, i32, i16, i32, u32, i16) -> u32;
type MemorySegments = unsafe extern "C" fn(i16, u32, *mut i32) -> u32;
type HandleU32 = unsafe extern "C" fn(i16, u32) -> u32;
type RunBlock =
    unsafe extern "C" fn(i16, i32, i32, u32, *mut i32, u32, Option<BlockReady>, *mut c_void) -> u32;
type RunBlockOs = unsafe extern "C" fn(
    i16,
    i32,
    i32,
    u32,
    i16,
    *mut i32,
    u32,
    Option<BlockReady>,
    *mut c_void,
) -> u32;
type IsReady = unsafe extern "C" fn(i16, *mut i16) -> u32;
type SetDataBuffer = unsafe extern "C" fn(i16, i32, *mut i16, i32, u32, i32) -> u32;
/// `GetValues(handle, uint32_t startIndex, uint32_t *noOfSamples, uint32_t downSampleRatio,
/// RATIO_MODE downSampleRatioMode, uint32_t segmentIndex, int16_t *overflow)`, the same in
/// ps2000a, ps3000a and ps5000a (Pico's Python wrappers, picosdk/ps*.py).
type Values = unsafe extern "C" fn(i16, u32, *mut u32, u32, i32, u32, *mut i16) -> u32;
type ValuesBulk = unsafe extern "C" fn(i16, *mut u32, u32, u32, u32, i32, *mut i16) -> u32;
type OffsetBulk64 = unsafe extern "C" fn(i16, *mut i64, *mut i32, u32, u32) -> u32;
/// `GetTriggerTimeOffset64(handle, int64_t *time, TIME_UNITS *timeUnits, uint32_t
/// segmentIndex)`, the same in ps2000a, ps3000a and ps5000a (picosdk/ps*.py).
type Offset64 = unsafe extern "C" fn(i16, *mut i64, *mut i32, u32) -> u32;
type RunStreaming = unsafe extern "C" fn(i16, *mut u32, i32, u32, u32, i16, u32, i32, u32) -> u32;
type LatestValues = unsafe extern "C" fn(i16, Option<StreamingReady>, *mut c_void) -> u32;
type MaxValue = unsafe extern "C" fn(i16, *mut i16) -> u32;
/// `SetDigitalPort(handle, port, int16_t enabled, int16_t logicLevel)`, the same in ps2000a,
/// ps3000a and ps5000a (Pico's Python wrappers, picosdk/ps*.py).
type SetDigitalPort = unsafe extern "C" fn(i16, i32, i16, i16) -> u32;

enum OpenFn {
    WithResolution(OpenRes),
    Plain(Open),
}

enum TimebaseFn {
    Plain(Timebase2),
    Oversample(Timebase2Os),
}

enum RunBlockFn {
    Plain(RunBlock),
    Oversample(RunBlockOs),
}

struct Api {
    open_unit: OpenFn,
    close_unit: HandleOnly,
    stop: HandleOnly,
    ping_unit: HandleOnly,
    get_unit_info: UnitInfo,
    enumerate_units: Enumerate,
    set_channel: SetChannel,
    get_timebase2: TimebaseFn,
    set_simple_trigger: SimpleTrigger,
    memory_segments: MemorySegments,
    set_no_of_captures: HandleU32,
    run_block: RunBlockFn,
    is_ready: IsReady,
    set_data_buffer: SetDataBuffer,
    get_values: Values,
    get_values_bulk: ValuesBulk,
    trigger_time_offset_bulk64: OffsetBulk64,
    trigger_time_offset64: Offset64,
    run_streaming: RunStreaming,
    get_streaming_latest_values: LatestValues,
    maximum_value: MaxValue,
    set_digital_port: SetDigitalPort,
    change_power_source: Option<HandleU32>,
    set_device_resolution: Option<HandleU32>,
    /// Keeps the code behind the pointers above mapped; dropped last.
    _lib: libloading::Library,
}

/// A loaded Pico library for one family. Cheap to clone (shared).
#[derive(Clone)]
pub struct PicoLibrary {
    api: Arc<Api>,
    family: &'static FamilyTable,
    path: PathBuf,
}

impl std::fmt::Debug for PicoLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PicoLibrary({} from {})",
            self.family.name,
            self.path.display()
        )
    }
}

/// Where the loader looks for a family's library, in order.
pub fn search_paths(family: &FamilyTable, configured: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = configured {
        // A directory means "the family's file in there".
        if p.is_dir() {
            paths.push(p.join(family.soname));
        } else {
            paths.push(p.to_path_buf());
        }
    }
    paths.push(Path::new("/opt/picoscope/lib").join(family.soname));
    paths.push(PathBuf::from(family.soname));
    paths
}

/// Text from a C string buffer the library filled: up to the first NUL (or the end), bytes
/// outside printable ASCII shown as `?`. Never panics, whatever the bytes.
pub fn c_text(buf: &[i8]) -> String {
    buf.iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            let c = b as u8;
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Serial numbers from `EnumerateUnits`' comma-separated list, of which the library says
/// `len` bytes are used (clamped to the buffer).
pub fn serial_list(buf: &[i8], len: i16) -> Vec<String> {
    let used = (len.max(0) as usize).min(buf.len());
    c_text(&buf[..used])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn status(code: u32) -> PicoStatus {
    PicoStatus::from_code(code)
}

impl PicoLibrary {
    /// Loads the family's library from `configured` (a file or a directory), else
    /// `/opt/picoscope/lib`, else the OS search path.
    pub fn load(
        family: &'static FamilyTable,
        configured: Option<&Path>,
    ) -> Result<PicoLibrary, PicoError> {
        let mut tried = Vec::new();
        for path in search_paths(family, configured) {
            let bare = path.components().count() == 1;
            if !bare && !path.exists() {
                tried.push(format!("{}: no such file", path.display()));
                continue;
            }
            // SAFETY: loading runs the library's initialisers. We only load files named as
            // Pico's driver libraries (or the path the user configured for one), which is the
            // documented way to use them.
            match unsafe { libloading::Library::new(&path) } {
                Ok(lib) => return Self::bind(family, lib, path),
                Err(e) => {
                    let place = if bare {
                        format!(
                            "{} through the OS search path (LD_LIBRARY_PATH, ld.so.conf)",
                            path.display()
                        )
                    } else {
                        path.display().to_string()
                    };
                    tried.push(format!("{place}: {e}"));
                }
            }
        }
        Err(PicoError::LibraryMissing {
            family: family.name,
            soname: family.soname.to_string(),
            package: family.package,
            tried: tried.join("; "),
        })
    }

    fn bind(
        family: &'static FamilyTable,
        lib: libloading::Library,
        path: PathBuf,
    ) -> Result<PicoLibrary, PicoError> {
        let s = &family.symbols;
        let missing = |symbol: &'static str, e: libloading::Error| PicoError::SymbolMissing {
            family: family.name,
            path: path.display().to_string(),
            symbol,
            detail: e.to_string(),
            package: family.package,
        };
        macro_rules! get {
            ($name:expr, $ty:ty) => {{
                // SAFETY: the symbol's C prototype in Pico's header is the one `$ty`
                // states (HARDWARE.md A.5 and the family table); the pointer is used only
                // while `lib` is alive (it is stored beside it in `Api`).
                let sym: Result<libloading::Symbol<$ty>, _> = unsafe { lib.get($name.as_bytes()) };
                *sym.map_err(|e| missing($name, e))?
            }};
        }
        let open_unit = if family.api.open_takes_resolution {
            OpenFn::WithResolution(get!(s.open_unit, OpenRes))
        } else {
            OpenFn::Plain(get!(s.open_unit, Open))
        };
        let (get_timebase2, run_block) = if family.api.takes_oversample {
            (
                TimebaseFn::Oversample(get!(s.get_timebase2, Timebase2Os)),
                RunBlockFn::Oversample(get!(s.run_block, RunBlockOs)),
            )
        } else {
            (
                TimebaseFn::Plain(get!(s.get_timebase2, Timebase2)),
                RunBlockFn::Plain(get!(s.run_block, RunBlock)),
            )
        };
        let change_power_source = match s.change_power_source {
            Some(name) => Some(get!(name, HandleU32)),
            None => None,
        };
        let set_device_resolution = match s.set_device_resolution {
            Some(name) => Some(get!(name, HandleU32)),
            None => None,
        };
        let api = Api {
            open_unit,
            close_unit: get!(s.close_unit, HandleOnly),
            stop: get!(s.stop, HandleOnly),
            ping_unit: get!(s.ping_unit, HandleOnly),
            get_unit_info: get!(s.get_unit_info, UnitInfo),
            enumerate_units: get!(s.enumerate_units, Enumerate),
            set_channel: get!(s.set_channel, SetChannel),
            get_timebase2,
            set_simple_trigger: get!(s.set_simple_trigger, SimpleTrigger),
            memory_segments: get!(s.memory_segments, MemorySegments),
            set_no_of_captures: get!(s.set_no_of_captures, HandleU32),
            run_block,
            is_ready: get!(s.is_ready, IsReady),
            set_data_buffer: get!(s.set_data_buffer, SetDataBuffer),
            get_values: get!(s.get_values, Values),
            get_values_bulk: get!(s.get_values_bulk, ValuesBulk),
            trigger_time_offset_bulk64: get!(s.trigger_time_offset_bulk64, OffsetBulk64),
            trigger_time_offset64: get!(s.trigger_time_offset64, Offset64),
            run_streaming: get!(s.run_streaming, RunStreaming),
            get_streaming_latest_values: get!(s.get_streaming_latest_values, LatestValues),
            maximum_value: get!(s.maximum_value, MaxValue),
            set_digital_port: get!(s.set_digital_port, SetDigitalPort),
            change_power_source,
            set_device_resolution,
            _lib: lib,
        };
        Ok(PicoLibrary {
            api: Arc::new(api),
            family,
            path,
        })
    }

    /// The family this library serves.
    pub fn family(&self) -> &'static FamilyTable {
        self.family
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serial numbers of the units the library can see (`EnumerateUnits`); empty when none.
    pub fn enumerate_units(&self) -> Result<Vec<String>, PicoStatus> {
        let mut count = 0i16;
        let mut buf = [0i8; 512];
        let mut len = buf.len() as i16;
        // SAFETY: count and len point to live int16_t; buf holds `len` bytes.
        let s =
            status(unsafe { (self.api.enumerate_units)(&mut count, buf.as_mut_ptr(), &mut len) });
        match s {
            PicoStatus::Ok => {}
            PicoStatus::NotFound => return Ok(Vec::new()),
            other => return Err(other),
        }
        Ok(serial_list(&buf, len))
    }

    /// `OpenUnit`: returns the handle and the status (OK or a power prompt).
    pub fn open_unit(&self, serial: Option<&str>, resolution: Resolution) -> (i16, PicoStatus) {
        let serial_c = serial.and_then(|s| CString::new(s).ok());
        let serial_ptr = serial_c
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr().cast::<i8>());
        let mut handle = 0i16;
        // SAFETY: handle points to a live int16_t; serial is null or NUL-terminated and
        // outlives the call.
        let code = unsafe {
            match self.api.open_unit {
                OpenFn::WithResolution(f) => f(&mut handle, serial_ptr, resolution.code()),
                OpenFn::Plain(f) => f(&mut handle, serial_ptr),
            }
        };
        (handle, status(code))
    }

    /// `ChangePowerSource`; `None` when the family has no power prompts.
    pub fn change_power_source(&self, handle: i16, prompt: PicoStatus) -> Option<PicoStatus> {
        // SAFETY: plain integer arguments.
        self.api
            .change_power_source
            .map(|f| status(unsafe { f(handle, prompt.code()) }))
    }

    /// `SetDeviceResolution`; `None` when the family has a fixed resolution.
    pub fn set_device_resolution(&self, handle: i16, r: Resolution) -> Option<PicoStatus> {
        // SAFETY: plain integer arguments.
        self.api
            .set_device_resolution
            .map(|f| status(unsafe { f(handle, r.code()) }))
    }

    /// `CloseUnit`.
    pub fn close_unit(&self, handle: i16) -> PicoStatus {
        // SAFETY: plain integer argument.
        status(unsafe { (self.api.close_unit)(handle) })
    }

    /// `Stop`.
    pub fn stop(&self, handle: i16) -> PicoStatus {
        // SAFETY: plain integer argument.
        status(unsafe { (self.api.stop)(handle) })
    }

    /// `PingUnit`.
    pub fn ping_unit(&self, handle: i16) -> PicoStatus {
        // SAFETY: plain integer argument.
        status(unsafe { (self.api.ping_unit)(handle) })
    }

    /// `GetUnitInfo` as text (`info`: 3 = variant, 4 = batch and serial, 0 = driver version).
    pub fn unit_info(&self, handle: i16, info: u32) -> Result<String, PicoStatus> {
        let mut buf = [0i8; 128];
        let mut required = 0i16;
        // SAFETY: buf holds 128 bytes as stated; required points to a live int16_t.
        let s = status(unsafe {
            (self.api.get_unit_info)(
                handle,
                buf.as_mut_ptr(),
                buf.len() as i16,
                &mut required,
                info,
            )
        });
        if s != PicoStatus::Ok {
            return Err(s);
        }
        Ok(c_text(&buf))
    }

    /// `SetChannel`.
    pub fn set_channel(
        &self,
        handle: i16,
        ch: u8,
        enabled: bool,
        coupling: i32,
        range: u8,
        offset_v: f32,
    ) -> PicoStatus {
        // SAFETY: plain scalar arguments.
        status(unsafe {
            (self.api.set_channel)(
                handle,
                i32::from(ch),
                i16::from(enabled),
                coupling,
                i32::from(range),
                offset_v,
            )
        })
    }

    /// `GetTimebase2`: (status, interval ns, max samples).
    pub fn get_timebase2(
        &self,
        handle: i16,
        timebase: u32,
        samples: i32,
    ) -> (PicoStatus, f32, i32) {
        let mut interval = 0f32;
        let mut max = 0i32;
        // SAFETY: interval and max point to live locals of the C types.
        let code = unsafe {
            match self.api.get_timebase2 {
                TimebaseFn::Plain(f) => f(handle, timebase, samples, &mut interval, &mut max, 0),
                TimebaseFn::Oversample(f) => {
                    f(handle, timebase, samples, &mut interval, 0, &mut max, 0)
                }
            }
        };
        (status(code), interval, max)
    }

    /// `SetSimpleTrigger`.
    #[allow(clippy::too_many_arguments)]
    pub fn set_simple_trigger(
        &self,
        handle: i16,
        enable: bool,
        source: u8,
        threshold: i16,
        direction: i32,
        delay: u32,
        auto_ms: i16,
    ) -> PicoStatus {
        // SAFETY: plain scalar arguments.
        status(unsafe {
            (self.api.set_simple_trigger)(
                handle,
                i16::from(enable),
                i32::from(source),
                threshold,
                direction,
                delay,
                auto_ms,
            )
        })
    }

    /// `MemorySegments`: (status, max samples per segment).
    pub fn memory_segments(&self, handle: i16, n: u32) -> (PicoStatus, i32) {
        let mut max = 0i32;
        // SAFETY: max points to a live int32_t.
        (
            status(unsafe { (self.api.memory_segments)(handle, n, &mut max) }),
            max,
        )
    }

    /// `SetNoOfCaptures`.
    pub fn set_no_of_captures(&self, handle: i16, n: u32) -> PicoStatus {
        // SAFETY: plain scalar arguments.
        status(unsafe { (self.api.set_no_of_captures)(handle, n) })
    }

    /// `RunBlock` with a block-ready callback.
    ///
    /// # Safety
    /// `param` must stay valid, and `cb` callable with it, until the block completes or
    /// `stop`/`close_unit` has returned.
    pub unsafe fn run_block(
        &self,
        handle: i16,
        pre: i32,
        post: i32,
        timebase: u32,
        cb: BlockReady,
        param: *mut c_void,
    ) -> PicoStatus {
        let mut indisposed = 0i32;
        // SAFETY: indisposed is a live local; the caller guarantees cb/param validity.
        let code = unsafe {
            match self.api.run_block {
                RunBlockFn::Plain(f) => f(
                    handle,
                    pre,
                    post,
                    timebase,
                    &mut indisposed,
                    0,
                    Some(cb),
                    param,
                ),
                RunBlockFn::Oversample(f) => f(
                    handle,
                    pre,
                    post,
                    timebase,
                    0,
                    &mut indisposed,
                    0,
                    Some(cb),
                    param,
                ),
            }
        };
        status(code)
    }

    /// `IsReady`: (status, ready).
    pub fn is_ready(&self, handle: i16) -> (PicoStatus, bool) {
        let mut ready = 0i16;
        // SAFETY: ready points to a live int16_t.
        let s = status(unsafe { (self.api.is_ready)(handle, &mut ready) });
        (s, ready != 0)
    }

    /// `SetDataBuffer` (ratio mode NONE).
    ///
    /// # Safety
    /// `buf` must point to `len` writable `i16` that stay valid and unmoved until another
    /// buffer is registered for this channel and segment or the unit is closed.
    pub unsafe fn set_data_buffer(
        &self,
        handle: i16,
        ch: u8,
        buf: *mut i16,
        len: i32,
        segment: u32,
    ) -> PicoStatus {
        // SAFETY: the caller guarantees the buffer's validity.
        status(unsafe { (self.api.set_data_buffer)(handle, i32::from(ch), buf, len, segment, 0) })
    }

    /// `GetValues` of `samples` samples from the start of `segment`, without downsampling:
    /// (status, samples fetched, overflow bit field).
    pub fn get_values(&self, handle: i16, samples: u32, segment: u32) -> (PicoStatus, u32, i16) {
        let mut n = samples;
        let mut overflow = 0i16;
        // SAFETY: n and overflow are live locals of the C types.
        let s = status(unsafe {
            (self.api.get_values)(handle, 0, &mut n, 1, 0, segment, &mut overflow)
        });
        (s, n, overflow)
    }

    /// `GetValuesBulk` for segments `from..=to`: (status, samples per capture).
    /// `overflow` receives one bit field per segment.
    pub fn get_values_bulk(
        &self,
        handle: i16,
        samples: u32,
        from: u32,
        to: u32,
        overflow: &mut [i16],
    ) -> (PicoStatus, u32) {
        let mut n = samples;
        if overflow.len() < (to.saturating_sub(from) as usize + 1) {
            return (PicoStatus::InvalidParameter, 0);
        }
        // SAFETY: n is a live uint32_t; overflow holds one int16_t per segment (checked).
        let s = status(unsafe {
            (self.api.get_values_bulk)(handle, &mut n, from, to, 1, 0, overflow.as_mut_ptr())
        });
        (s, n)
    }

    /// `GetValuesTriggerTimeOffsetBulk64` for segments `from..=to`.
    pub fn trigger_time_offsets(
        &self,
        handle: i16,
        times: &mut [i64],
        units: &mut [i32],
        from: u32,
        to: u32,
    ) -> PicoStatus {
        let need = to.saturating_sub(from) as usize + 1;
        if times.len() < need || units.len() < need {
            return PicoStatus::InvalidParameter;
        }
        // SAFETY: both slices hold at least one element per segment (checked).
        status(unsafe {
            (self.api.trigger_time_offset_bulk64)(
                handle,
                times.as_mut_ptr(),
                units.as_mut_ptr(),
                from,
                to,
            )
        })
    }

    /// `GetTriggerTimeOffset64` of `segment`: (status, offset, its `TIME_UNITS`).
    pub fn trigger_time_offset(&self, handle: i16, segment: u32) -> (PicoStatus, i64, i32) {
        let (mut time, mut unit) = (0i64, 0i32);
        // SAFETY: time and unit are live locals of the C types.
        let s = status(unsafe {
            (self.api.trigger_time_offset64)(handle, &mut time, &mut unit, segment)
        });
        (s, time, unit)
    }

    /// `RunStreaming` without downsampling or autostop: (status, actual interval).
    pub fn run_streaming(
        &self,
        handle: i16,
        interval: u32,
        units: i32,
        overview: u32,
    ) -> (PicoStatus, u32) {
        let mut iv = interval;
        // SAFETY: iv is a live uint32_t.
        let s = status(unsafe {
            (self.api.run_streaming)(handle, &mut iv, units, 0, overview, 0, 1, 0, overview)
        });
        (s, iv)
    }

    /// `GetStreamingLatestValues`; the callback runs inside this call.
    ///
    /// # Safety
    /// `cb` must be callable with `param` for the duration of the call.
    pub unsafe fn get_streaming_latest_values(
        &self,
        handle: i16,
        cb: StreamingReady,
        param: *mut c_void,
    ) -> PicoStatus {
        // SAFETY: the caller guarantees cb/param validity for this call.
        status(unsafe { (self.api.get_streaming_latest_values)(handle, Some(cb), param) })
    }

    /// `SetDigitalPort`: switches an MSO digital port (`0x80` = PORT0, D0..D7; `0x81` = PORT1,
    /// D8..D15) on with its logic threshold in Pico's counts (−32767 = −5 V .. 32767 = +5 V),
    /// or off.
    pub fn set_digital_port(
        &self,
        handle: i16,
        port: u8,
        enabled: bool,
        logic_level: i16,
    ) -> PicoStatus {
        // SAFETY: plain scalar arguments.
        status(unsafe {
            (self.api.set_digital_port)(handle, i32::from(port), i16::from(enabled), logic_level)
        })
    }

    /// `MaximumValue`.
    pub fn maximum_value(&self, handle: i16) -> (PicoStatus, i16) {
        let mut v = 0i16;
        // SAFETY: v is a live int16_t.
        (
            status(unsafe { (self.api.maximum_value)(handle, &mut v) }),
            v,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(s: &str) -> Vec<i8> {
        s.bytes().map(|b| b as i8).collect()
    }

    #[test]
    fn serial_lists_split_and_stop_at_nul() {
        let b = bytes("JO123/0001, FAKE5000/001\0garbage");
        assert_eq!(
            serial_list(&b, b.len() as i16),
            ["JO123/0001", "FAKE5000/001"]
        );
        assert_eq!(serial_list(&b, 10), ["JO123/0001"]);
        assert_eq!(serial_list(&b, -5), Vec::<String>::new());
        assert_eq!(c_text(&bytes("5444D\0\0")), "5444D");
        assert_eq!(c_text(&[0x35, -1, 0x36]), "5?6");
    }

    #[test]
    fn search_order_is_configured_then_opt_then_bare_name() {
        let p = search_paths(
            &crate::picoscope::PS5000A,
            Some(Path::new("/x/libps5000a.so")),
        );
        assert_eq!(
            p,
            [
                PathBuf::from("/x/libps5000a.so"),
                PathBuf::from("/opt/picoscope/lib/libps5000a.so"),
                PathBuf::from("libps5000a.so"),
            ]
        );
        let p = search_paths(&crate::picoscope::PS2000A, None);
        assert_eq!(
            p,
            [
                PathBuf::from("/opt/picoscope/lib/libps2000a.so"),
                PathBuf::from("libps2000a.so")
            ]
        );
    }

    proptest! {
        #[test]
        fn garbage_from_the_library_never_panics_or_yields_bogus_serials(
            buf in proptest::collection::vec(any::<i8>(), 0..300),
            len in any::<i16>(),
        ) {
            for s in serial_list(&buf, len) {
                prop_assert!(!s.is_empty());
                prop_assert!(!s.contains(',') && !s.contains('\0'));
                prop_assert_eq!(s.trim(), s.as_str());
                prop_assert!(s.len() <= buf.len());
            }
            let t = c_text(&buf);
            prop_assert!(t.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }
}
