//! The PicoScope driver end to end against `fake-picosdk`, loaded through the same
//! `libloading` path as Pico's real libraries. Each test copies the fake to its own
//! directory under the family's file name, so tests running in parallel each get their own
//! library instance (state, injections, counters).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use daq_drivers::picoscope::{
    bench_fake, Acquisition, ChannelConfig, FamilyTable, PicoError, PicoScope, PicoScopeConfig,
    PicoStatus, Resolution, SampleFormat, ThresholdDirection, TriggerConfig, VoltageRange, PS2000A,
    PS3000A, PS5000A,
};
use daq_drivers::{DriverError, ReadOutcome, Source};

// Counts heap allocations made by the current thread (the fake library has its own
// allocator, so only the driver's allocations are counted). The main crate's tests share it.
#[path = "../../tests/alloc_count/mod.rs"]
mod alloc_count;
use alloc_count::allocations_in;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// The built fake library: next to this test binary, one level up, or in the target's
/// `debug` (see [`fake_picosdk::built_library`]). Fails loudly if it is not there.
fn fake_so() -> PathBuf {
    let mut also = Vec::new();
    if let Some(tmp) = option_env!("CARGO_TARGET_TMPDIR") {
        if let Some(target) = Path::new(tmp).parent() {
            also.push(target.join("debug").join("libfake_picosdk.so"));
        }
    }
    fake_picosdk::built_library(&also)
}

/// One private copy of the fake library, named as Pico's library for `family`.
struct Fake {
    dir: PathBuf,
    path: PathBuf,
    lib: libloading::Library,
}

impl Fake {
    fn new(family: &FamilyTable) -> Fake {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "daq-picoscope-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(family.soname);
        std::fs::copy(fake_so(), &path).expect("copy fake library");
        // SAFETY: our own test library; its initialisers are Rust's std only.
        let lib = unsafe { libloading::Library::new(&path) }.expect("load fake library");
        Fake { dir, path, lib }
    }

    fn config(&self, mut c: PicoScopeConfig) -> PicoScopeConfig {
        c.library = Some(self.path.clone());
        c
    }

    /// The driver opened on this fake with `c`, which must open.
    fn open(&self, c: PicoScopeConfig) -> PicoScope {
        PicoScope::open(self.config(c)).unwrap()
    }

    fn inject(&self, function: &str, status: u32) {
        self.inject_after(function, status, 0);
    }

    fn inject_after(&self, function: &str, status: u32, skip: u32) {
        let name = CString::new(function).unwrap();
        // SAFETY: fakepico_inject_status_after(const char*, uint32_t, uint32_t) -> int32_t.
        let r = unsafe {
            let f: libloading::Symbol<
                unsafe extern "C" fn(*const std::ffi::c_char, u32, u32) -> i32,
            > = self.lib.get(b"fakepico_inject_status_after").unwrap();
            f(name.as_ptr(), status, skip)
        };
        assert_eq!(r, 0);
    }

    fn calls(&self, function: &str) -> u32 {
        let name = CString::new(function).unwrap();
        // SAFETY: fakepico_call_count(const char*) -> uint32_t.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*const std::ffi::c_char) -> u32> =
                self.lib.get(b"fakepico_call_count").unwrap();
            f(name.as_ptr())
        }
    }

    fn void(&self, symbol: &[u8]) {
        // SAFETY: the fake's control functions named here take no arguments.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn()> = self.lib.get(symbol).unwrap();
            f()
        }
    }

    fn unplug(&self) {
        self.void(b"fakepico_unplug");
    }

    fn replug(&self) {
        self.void(b"fakepico_replug");
    }

    fn set_pulse(&self, amp_min: f64, amp_max: f64, rise: f64, fall: f64, noise: f64) {
        // SAFETY: fakepico_set_pulse(double x5) -> int32_t.
        let r = unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(f64, f64, f64, f64, f64) -> i32> =
                self.lib.get(b"fakepico_set_pulse").unwrap();
            f(amp_min, amp_max, rise, fall, noise)
        };
        assert_eq!(r, 0);
    }

    fn set_i32(&self, symbol: &[u8], v: i32) {
        // SAFETY: the fake's control functions named here take one int32_t.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(i32)> = self.lib.get(symbol).unwrap();
            f(v)
        }
    }

    /// Calls a control taking one uint32_t and returning int32_t (0 = accepted).
    fn set_u32(&self, symbol: &[u8], v: u32) -> i32 {
        // SAFETY: the fake's control functions named here are `int32_t f(uint32_t)`.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> =
                self.lib.get(symbol).unwrap();
            f(v)
        }
    }

    fn set_capture_rate(&self, hz: f64) {
        // SAFETY: fakepico_set_capture_rate(double).
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(f64)> =
                self.lib.get(b"fakepico_set_capture_rate").unwrap();
            f(hz)
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const T: Duration = Duration::from_secs(5);

fn block_config(
    family: &'static FamilyTable,
    channels: usize,
    captures: u32,
    format: SampleFormat,
) -> PicoScopeConfig {
    let mut c = PicoScopeConfig::muon_telescope(family);
    for (i, ch) in c.channels.iter_mut().enumerate() {
        *ch = if i < channels {
            ChannelConfig::dc(VoltageRange::Mv500)
        } else {
            ChannelConfig::OFF
        };
    }
    c.sample_interval_ns = 16.0;
    // The muon telescope's trigger: falling on A at −50 mV.
    let Acquisition::RapidBlock { trigger, .. } = c.acquisition else {
        unreachable!("the muon telescope setup is rapid block")
    };
    c.acquisition = Acquisition::RapidBlock {
        pre_trigger: 40,
        post_trigger: 160,
        captures_per_run: captures,
        trigger,
    };
    c.format = format;
    c
}

/// [`block_config`] streaming at 1 µs a sample: events of `samples_per_event`, the driver's
/// overview buffer `overview_samples` long.
fn streaming_config(
    family: &'static FamilyTable,
    channels: usize,
    format: SampleFormat,
    samples_per_event: u32,
    overview_samples: u32,
) -> PicoScopeConfig {
    let mut c = block_config(family, channels, 1, format);
    c.sample_interval_ns = 1000.0;
    c.acquisition = Acquisition::Streaming {
        samples_per_event,
        overview_samples,
    };
    c
}

fn read_one(scope: &mut PicoScope, out: &mut [u8]) {
    match scope.read_capture(out, T) {
        Ok(ReadOutcome::Event(_)) => {}
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads `n` events through the engine's `Source` face; each read must give an event.
fn read_events(scope: &mut PicoScope, out: &mut [u8], n: usize) {
    for _ in 0..n {
        assert!(matches!(
            Source::read_event(scope, out, T),
            Ok(ReadOutcome::Event(_))
        ));
    }
}

/// Reads through `Source` until a read fails: the events read before it (at most
/// `at_most`) and the error.
fn events_until_error(
    scope: &mut PicoScope,
    out: &mut [u8],
    at_most: usize,
) -> (usize, DriverError) {
    let mut events = 0;
    let err = loop {
        match Source::read_event(scope, out, T) {
            Ok(ReadOutcome::Event(_)) => events += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
        assert!(events <= at_most, "events before the failing read");
    };
    (events, err)
}
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn i16s(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// `family`'s fake making noiseless pulses of 0.2..0.8 of full scale, and the driver on it
/// in rapid block of `captures` captures a run with `channels` channels, volts.
fn pulsing_in_rapid_block(
    family: &'static FamilyTable,
    channels: usize,
    captures: u32,
) -> (Fake, PicoScope) {
    let fake = Fake::new(family);
    fake.set_pulse(0.2, 0.8, 2.0, 20.0, 0.0);
    let scope = fake.open(block_config(
        family,
        channels,
        captures,
        SampleFormat::Volts,
    ));
    (fake, scope)
}

#[test]
fn rapid_block_writes_each_capture_with_the_pulse_at_the_trigger() {
    let (fake, mut scope) = pulsing_in_rapid_block(&PS5000A, 4, 10);
    let layout = scope.layout().clone();
    assert_eq!(layout.records, 200);
    let names: Vec<_> = layout.names_and_types().collect();
    assert_eq!(
        names,
        [("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")]
    );
    assert_eq!(layout.event_size(), 200 * 4 * 4);
    assert_eq!(scope.sample_interval_ns(), 16.0);
    assert_eq!(scope.timebase(), 4);

    let mut out = vec![0u8; layout.event_size()];
    scope.start_capture().unwrap();
    for event in 0..25 {
        read_one(&mut scope, &mut out);
        let v = f32s(&out);
        assert_eq!(v.len(), 800);
        let a: Vec<f32> = v.chunks_exact(4).map(|r| r[0]).collect();
        // Falling through -50 mV exactly between samples 39 and 40 (noise is off).
        assert!(a[40] <= -0.05, "event {event}: A[40] = {}", a[40]);
        assert!(a[39] > -0.05, "event {event}: A[39] = {}", a[39]);
        assert!(
            a[..39].iter().all(|&x| x == 0.0),
            "event {event}: baseline before the pulse"
        );
        let min = a.iter().cloned().fold(f32::MAX, f32::min);
        assert!((-0.4..=-0.05).contains(&min), "event {event}: peak {min}");
        let offset = scope.last_trigger_offset_s().unwrap();
        assert!(offset <= 0.0 && offset > -16e-9, "trigger offset {offset}");
        // The other channels carry a coincident negative pulse too.
        for ch in 1..4 {
            let m = v.chunks_exact(4).map(|r| r[ch]).fold(f32::MAX, f32::min);
            assert!(m < -0.09, "event {event} channel {ch}: {m}");
        }
    }
    scope.stop_capture().unwrap();
    assert_eq!(scope.counters().events, 25);
    // 25 events = 3 runs fetched, the 4th armed at the third fetch.
    assert_eq!(fake.calls("ps5000aGetValuesBulk"), 3);
    assert_eq!(fake.calls("ps5000aRunBlock"), 4);
    // Buffers registered once at configure: one per channel and segment, none per event.
    assert_eq!(fake.calls("ps5000aSetDataBuffer"), 40);
    assert_eq!(fake.calls("ps5000aMemorySegments"), 1);
    assert_eq!(fake.calls("ps5000aSetNoOfCaptures"), 1);
}

#[test]
fn rising_trigger_sees_positive_pulses_at_the_trigger() {
    let fake = Fake::new(&PS5000A);
    fake.set_pulse(0.3, 0.9, 3.0, 30.0, 0.0);
    let mut c = block_config(&PS5000A, 1, 5, SampleFormat::Volts);
    if let Acquisition::RapidBlock {
        ref mut trigger, ..
    } = c.acquisition
    {
        *trigger = Some(TriggerConfig {
            channel: 0,
            level_v: 0.12,
            direction: ThresholdDirection::Rising,
            delay_samples: 0,
            auto_trigger_ms: 0,
        });
    }
    let mut scope = fake.open(c);
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    for _ in 0..12 {
        read_one(&mut scope, &mut out);
        let a = f32s(&out);
        assert_eq!(a.len(), 200);
        assert!(
            a[40] >= 0.12 && a[39] < 0.12,
            "A[39..41] = {:?}",
            &a[39..41]
        );
    }
}

#[test]
fn volts_are_counts_times_range_over_max_minus_offset() {
    // Two private library copies with the same seed produce the same ADC counts.
    let raw_fake = Fake::new(&PS5000A);
    let volt_fake = Fake::new(&PS5000A);
    let mut raw_cfg = block_config(&PS5000A, 2, 4, SampleFormat::Raw);
    raw_cfg.resolution = Resolution::Bits12;
    raw_cfg.channels[1] = ChannelConfig {
        analog_offset_v: 0.25,
        ..ChannelConfig::dc(VoltageRange::V1)
    };
    let mut volt_cfg = raw_cfg.clone();
    volt_cfg.format = SampleFormat::Volts;
    let mut raw = raw_fake.open(raw_cfg);
    let mut volts = volt_fake.open(volt_cfg);
    assert_eq!(raw.max_adc(), 32767);
    assert_eq!(raw.layout().fields[0].numpy_type, "i2");
    assert_eq!(raw.layout().event_size(), 200 * 2 * 2);
    let mut rb = vec![0u8; raw.layout().event_size()];
    let mut vb = vec![0u8; volts.layout().event_size()];
    raw.start_capture().unwrap();
    volts.start_capture().unwrap();
    for _ in 0..6 {
        read_one(&mut raw, &mut rb);
        read_one(&mut volts, &mut vb);
        let r = i16s(&rb);
        let v = f32s(&vb);
        for (i, (&adc, &volt)) in r.iter().zip(&v).enumerate() {
            let (range, offset) = if i % 2 == 0 {
                (0.5f32, 0.0f32)
            } else {
                (1.0, 0.25)
            };
            let want = f32::from(adc) * (range / 32767.0) - offset;
            assert!((volt - want).abs() <= 1e-6, "sample {i}: {volt} vs {want}");
            // 12-bit samples are left-aligned in 16 bits.
            assert_eq!(adc % 16, 0, "sample {i}: {adc}");
        }
        // The offset shows on channel B's baseline: 0 V in reads back as 0 V.
        assert!(
            (v[1] + 0.0).abs() < 2e-3 || v[1].abs() < 0.5,
            "B baseline {}",
            v[1]
        );
    }
}

#[test]
fn eight_bit_counts_are_multiples_of_256_within_32512() {
    let fake = Fake::new(&PS5000A);
    fake.set_pulse(0.5, 1.5, 2.0, 20.0, 0.01); // some pulses clip
    let mut scope = fake.open(block_config(&PS5000A, 2, 8, SampleFormat::Raw));
    assert_eq!(scope.max_adc(), 32512);
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    for _ in 0..16 {
        read_one(&mut scope, &mut out);
        for s in i16s(&out) {
            assert_eq!(s % 256, 0);
            assert!((-32512..=32512).contains(&s));
        }
    }
    assert!(
        scope.counters().overrange > 0,
        "amplitudes up to 1.5 × full scale clip"
    );
}

#[test]
fn timebase_is_confirmed_and_stepped_past_refusals() {
    // 8-bit, 4 channels, 1 ns asked: the formula says n = 0, the device allows n >= 2.
    // 12-bit, one channel, 1 µs: (n − 3) × 16 ns gives 992 (n = 65) or 1008 (n = 66),
    // both 8 ns away; a tie goes to the longer interval.
    // 16-bit needs one channel and gives 16 ns at best.
    for (channels, resolution, asked_ns, timebase, interval_ns, timebase_calls) in [
        (4, Resolution::Bits8, 1.0, 2, 4.0, Some(3)),
        (1, Resolution::Bits12, 1000.0, 66, 1008.0, Some(1)),
        (1, Resolution::Bits16, 2.0, 4, 16.0, None),
    ] {
        let fake = Fake::new(&PS5000A);
        let mut c = block_config(&PS5000A, channels, 1, SampleFormat::Raw);
        c.resolution = resolution;
        c.sample_interval_ns = asked_ns;
        let scope = fake.open(c);
        assert_eq!(
            (scope.timebase(), scope.sample_interval_ns()),
            (timebase, interval_ns),
            "{resolution:?}, {asked_ns} ns"
        );
        if let Some(calls) = timebase_calls {
            assert_eq!(fake.calls("ps5000aGetTimebase2"), calls, "{resolution:?}");
        }
    }

    // ps2000a 2206A: 2^n × 2 ns, then (n − 2) × 16 ns.
    let fake = Fake::new(&PS2000A);
    let mut c = block_config(&PS2000A, 2, 1, SampleFormat::Raw);
    c.sample_interval_ns = 32.0;
    let scope = fake.open(c);
    assert_eq!(scope.variant(), "2206A");
    assert_eq!((scope.timebase(), scope.sample_interval_ns()), (4, 32.0));

    // One refusal injected: the driver steps to the next timebase and reports its interval.
    let fake = Fake::new(&PS5000A);
    fake.inject("ps5000aGetTimebase2", 0x0E);
    let scope = fake.open(block_config(&PS5000A, 1, 1, SampleFormat::Raw));
    assert_eq!((scope.timebase(), scope.sample_interval_ns()), (5, 24.0));
}

#[test]
fn a_model_whose_timebases_the_formula_guesses_wrong_is_searched() {
    // Reported as a 2206B (1 GHz formula: 16 ns = n 4) while the device runs the 500 MS/s
    // table (n 4 = 32 ns): the driver notices and finds n 3 = 16 ns from the device.
    let fake = Fake::new(&PS2000A);
    let name = CString::new("2206B").unwrap();
    // SAFETY: fakepico_set_ps2000a_variant(const char*) -> int32_t.
    let r = unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn(*const std::ffi::c_char) -> i32> =
            fake.lib.get(b"fakepico_set_ps2000a_variant").unwrap();
        f(name.as_ptr())
    };
    assert_eq!(r, 0);
    for (wanted, n, ns) in [
        (16.0, 3, 16.0),
        (1000.0, 65, 1008.0),
        (1.0, 1, 4.0),
        (24.0, 4, 32.0),
    ] {
        let mut c = block_config(&PS2000A, 2, 1, SampleFormat::Raw);
        c.sample_interval_ns = wanted;
        let scope = fake.open(c);
        assert_eq!(scope.variant(), "2206B");
        assert_eq!(
            (scope.timebase(), scope.sample_interval_ns()),
            (n, ns),
            "{wanted} ns"
        );
    }
}

/// The falling trigger's −50 mV in `scope`'s ADC counts on the ±500 mV range.
fn trigger_level_counts(scope: &PicoScope) -> i16 {
    (-0.05f64 / 0.5 * f64::from(scope.max_adc())).round() as i16
}

/// Reads the `n`-th event (from 0) into `out`; the allocations the read made, not counted
/// for the first read.
fn allocations_of_read(scope: &mut PicoScope, out: &mut [u8], n: u64) -> u64 {
    let reading = allocations_in(|| read_one(scope, out));
    if n > 0 {
        reading
    } else {
        0
    }
}

/// Starts `scope` and reads `n` captures of 200 records of volts, interleaved over
/// `channels` (A first): in each, the falling trigger on A at -50 mV crosses at sample 40.
fn start_and_read_falling_edges_on_a(scope: &mut PicoScope, channels: usize, n: usize) {
    let mut out = vec![0u8; scope.layout().event_size()];
    assert_eq!(out.len(), 200 * channels * 4);
    scope.start_capture().unwrap();
    for _ in 0..n {
        read_one(scope, &mut out);
        let v = f32s(&out);
        let (before, at) = (v[39 * channels], v[40 * channels]);
        assert!(at <= -0.05 && before > -0.05, "A[39] {before} A[40] {at}");
    }
}

#[test]
fn ps2000a_rapid_block_through_its_own_signatures() {
    let (fake, mut scope) = pulsing_in_rapid_block(&PS2000A, 2, 5);
    assert_eq!(scope.max_adc(), 32512);
    start_and_read_falling_edges_on_a(&mut scope, 2, 10);
    assert_eq!(fake.calls("ps2000aGetValuesBulk"), 2);
    assert_eq!(fake.calls("ps2000aSetDataBuffer"), 10);
    // The 2206A has two channels: C and D were switched off (refusal ignored), and asking
    // for C is a configuration error.
    drop(scope);
    let err = PicoScope::open(fake.config(block_config(&PS2000A, 3, 1, SampleFormat::Volts)))
        .unwrap_err();
    assert!(matches!(err, PicoError::Config { .. }), "{err}");
    assert!(err.to_string().contains("2206A has 2 channels"), "{err}");
}

#[test]
fn ps3000a_rapid_block_through_its_own_signatures() {
    let (fake, mut scope) = pulsing_in_rapid_block(&PS3000A, 4, 5);
    assert_eq!(scope.max_adc(), 32512);
    assert_eq!(scope.variant(), "3406D");
    // 3406D, 4-channel row of HARDWARE.md P: (n − 2) × 8 ns, so 16 ns is timebase 4.
    assert_eq!(scope.timebase(), 4);
    assert_eq!(scope.sample_interval_ns(), 16.0);
    start_and_read_falling_edges_on_a(&mut scope, 4, 10);
    assert_eq!(fake.calls("ps3000aGetValuesBulk"), 2);
    assert_eq!(fake.calls("ps3000aSetDataBuffer"), 20);
    assert!(fake.calls("ps3000aGetTimebase2") >= 1);
    assert_eq!(fake.calls("ps3000aChangePowerSource"), 0);
    let notes = scope.run_metadata();
    assert!(
        notes
            .iter()
            .any(|(k, v)| k == "picoscope.family" && v == "ps3000a"),
        "{notes:?}"
    );
}

fn power_note(scope: &PicoScope) -> String {
    scope
        .run_metadata()
        .into_iter()
        .find(|(k, _)| k == "picoscope.power_source")
        .map(|(_, v)| v)
        .expect("power source in the run notes")
}

/// A 3000A with a DC socket opened without its adapter (or on a USB 2 port) answers
/// OpenUnit with a power prompt and a valid handle; the driver must answer with
/// ChangePowerSource(that very code), then the unit works, and the run notes say what the
/// user can do.
#[test]
fn ps3000a_without_its_adapter_changes_the_power_source_and_runs() {
    for (prompt, says) in [(0x11Au32, "DC adapter"), (0x11E, "USB 3 port")] {
        let fake = Fake::new(&PS3000A);
        assert_eq!(fake.set_u32(b"fakepico_set_open_power", prompt), 0);
        let mut scope = fake.open(block_config(&PS3000A, 4, 2, SampleFormat::Volts));
        assert_eq!(fake.calls("ps3000aChangePowerSource"), 1);
        let note = power_note(&scope);
        assert!(note.contains(says), "{note}");
        let mut out = vec![0u8; scope.layout().event_size()];
        scope.start_capture().unwrap();
        for _ in 0..3 {
            read_one(&mut scope, &mut out);
        }
    }
}

/// The adapter plugged in, then pulled out, during a run: RunBlock answers
/// POWER_SUPPLY_CONNECTED / _NOT_CONNECTED, the driver accepts the new source and the run
/// goes on without an error or a lost capture.
#[test]
fn ps3000a_adapter_plugged_and_pulled_mid_run_the_run_goes_on() {
    let fake = Fake::new(&PS3000A);
    assert_eq!(fake.set_u32(b"fakepico_set_open_power", 0x11A), 0);
    let mut scope = fake.open(block_config(&PS3000A, 4, 2, SampleFormat::Volts));
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    read_one(&mut scope, &mut out);
    assert!(power_note(&scope).contains("USB only"));
    assert_eq!(fake.set_u32(b"fakepico_power_change", 0x119), 0);
    for _ in 0..6 {
        read_one(&mut scope, &mut out);
    }
    assert_eq!(scope.counters().power_changes, 1);
    assert!(
        power_note(&scope).contains("no prompt"),
        "{}",
        power_note(&scope)
    );
    assert_eq!(fake.set_u32(b"fakepico_power_change", 0x11A), 0);
    for _ in 0..6 {
        read_one(&mut scope, &mut out);
    }
    assert_eq!(scope.counters().power_changes, 2);
    assert!(power_note(&scope).contains("USB only"));
    // Open prompt plus two changes, each answered once with the code the unit gave.
    assert_eq!(fake.calls("ps3000aChangePowerSource"), 3);
    assert_eq!(scope.counters().events, 13);
    // Only the power codes are accepted as a change.
    assert_eq!(fake.set_u32(b"fakepico_power_change", 0x07), -1);
}

/// A unit whose ChangePowerSource is refused mid-run: a typed error naming the function,
/// not a silent retry loop.
#[test]
fn ps3000a_refused_power_change_is_a_typed_error() {
    let fake = Fake::new(&PS3000A);
    let mut scope = fake.open(block_config(&PS3000A, 4, 1, SampleFormat::Volts));
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    read_one(&mut scope, &mut out);
    assert_eq!(fake.set_u32(b"fakepico_power_change", 0x11A), 0);
    fake.inject("ps3000aChangePowerSource", 0x11B);
    let mut seen = None;
    for _ in 0..5 {
        match scope.read_capture(&mut out, T) {
            Ok(ReadOutcome::Event(_)) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                seen = Some(e);
                break;
            }
        }
    }
    match seen.expect("the refused power change is reported") {
        PicoError::Status {
            function, status, ..
        } => {
            assert_eq!(function, "ps3000aChangePowerSource");
            assert_eq!(status, PicoStatus::PowerSupplyRequestInvalid);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn open_accepts_both_power_prompts() {
    for prompt in [0x11Au32, 0x11E] {
        let fake = Fake::new(&PS5000A);
        fake.inject("ps5000aOpenUnit", prompt);
        let mut scope = fake.open(block_config(&PS5000A, 4, 2, SampleFormat::Volts));
        assert_eq!(fake.calls("ps5000aChangePowerSource"), 1);
        let mut out = vec![0u8; scope.layout().event_size()];
        scope.start_capture().unwrap();
        read_one(&mut scope, &mut out);
    }
    // Refusing the power source is a typed error naming ChangePowerSource.
    let fake = Fake::new(&PS5000A);
    fake.inject("ps5000aOpenUnit", 0x11A);
    fake.inject("ps5000aChangePowerSource", 0x07);
    let err = PicoScope::open(fake.config(block_config(&PS5000A, 4, 2, SampleFormat::Volts)))
        .unwrap_err();
    match &err {
        PicoError::Status {
            function, status, ..
        } => {
            assert_eq!(*function, "ps5000aChangePowerSource");
            assert_eq!(*status, PicoStatus::NotResponding);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn streaming_cuts_a_gapless_sample_sequence_into_events() {
    for family in FAMILIES {
        for (paced, records, overview) in [
            (true, 1000u32, 4096u32),
            (false, 1000, 1500),
            (false, 333, 1024),
        ] {
            let fake = Fake::new(family);
            fake.set_i32(b"fakepico_set_waveform", 1);
            fake.set_i32(b"fakepico_set_streaming_paced", i32::from(paced));
            let mut c = block_config(family, 2, 1, SampleFormat::Raw);
            // 1024 ns is a timebase of every family's fake (8 or 16 ns steps).
            c.sample_interval_ns = 1024.0;
            c.acquisition = Acquisition::Streaming {
                samples_per_event: records,
                overview_samples: overview,
            };
            let mut scope = fake.open(c);
            assert_eq!(scope.layout().records, records as usize);
            let mut out = vec![0u8; scope.layout().event_size()];
            scope.start_capture().unwrap();
            assert_eq!(scope.sample_interval_ns(), 1024.0, "{}", family.name);
            let events = 40u64;
            for e in 0..events {
                read_one(&mut scope, &mut out);
                let s = i16s(&out);
                assert_eq!(s.len(), 2 * records as usize);
                for (i, pair) in s.chunks_exact(2).enumerate() {
                    let idx = e * u64::from(records) + i as u64;
                    assert_eq!(
                        pair[0],
                        (idx % 30000) as i16,
                        "{} paced {paced} event {e} sample {i} A",
                        family.name
                    );
                    assert_eq!(
                        pair[1],
                        ((idx + 7919) % 30000) as i16,
                        "{} paced {paced} event {e} sample {i} B",
                        family.name
                    );
                }
            }
            let counters = scope.counters();
            assert_eq!(counters.events, events);
            // Every sample delivered is either in an event or still waiting for the next one.
            assert!(counters.stream_samples >= events * u64::from(records));
            assert!(
                counters.stream_samples < (events + 1) * u64::from(records) + u64::from(overview)
            );
            scope.stop_capture().unwrap();
            assert_eq!(fake.calls(&format!("{}SetDataBuffer", family.name)), 2);
        }
    }
}

#[test]
fn streaming_volts_have_pulses_and_noise() {
    for family in FAMILIES {
        let fake = Fake::new(family);
        fake.set_i32(b"fakepico_set_streaming_paced", 0);
        let mut scope = fake.open(streaming_config(family, 1, SampleFormat::Volts, 4000, 8192));
        let mut out = vec![0u8; scope.layout().event_size()];
        scope.start_capture().unwrap();
        let mut peak = 0f32;
        for _ in 0..10 {
            read_one(&mut scope, &mut out);
            for v in f32s(&out) {
                assert!(v.abs() <= 0.5);
                peak = peak.max(v);
            }
        }
        // 40000 samples at one pulse per 2000 samples: pulses of 0.1..0.4 V are there.
        assert!(peak > 0.09, "peak {peak}");
    }
}

/// The three families the driver serves; every test that is not about one family's own
/// feature runs for each.
const FAMILIES: [&FamilyTable; 3] = [&PS2000A, &PS3000A, &PS5000A];

/// Analogue channels of each family's fake unit (2206A: 2; 3406D, 5444D: 4).
fn fake_channels(family: &FamilyTable) -> usize {
    if family.name == "ps2000a" {
        2
    } else {
        4
    }
}

/// How a mode is read in the tests below.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Block,
    RapidBlock,
    Streaming,
}

/// Opens, starts and reads until the error the injections (function names without the
/// family prefix, injected in order) cause, and returns it.
fn error_from(family: &'static FamilyTable, injections: &[(&str, u32)], mode: Mode) -> PicoError {
    let fake = Fake::new(family);
    for &(function, status) in injections {
        fake.inject(&format!("{}{function}", family.name), status);
    }
    let mut c = block_config(family, 2, 3, SampleFormat::Volts);
    match mode {
        Mode::RapidBlock => {}
        Mode::Block => c.acquisition = block_mode(&c),
        Mode::Streaming => {
            c.sample_interval_ns = 1024.0;
            c.acquisition = Acquisition::Streaming {
                samples_per_event: 100,
                overview_samples: 1000,
            };
        }
    }
    let mut scope = match PicoScope::open(fake.config(c)) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut out = vec![0u8; scope.layout().event_size()];
    if let Err(e) = scope.start_capture() {
        return e;
    }
    for _ in 0..10 {
        if let Err(e) = scope.read_capture(&mut out, T) {
            return e;
        }
    }
    panic!("{} {injections:?} caused no error", family.name);
}

/// The same setup as Pico's block mode: the rapid-block config's pre/post trigger and
/// trigger, one capture per RunBlock, fetched with GetValues.
fn block_mode(c: &PicoScopeConfig) -> Acquisition {
    match c.acquisition {
        Acquisition::RapidBlock {
            pre_trigger,
            post_trigger,
            trigger,
            ..
        } => Acquisition::Block {
            pre_trigger,
            post_trigger,
            trigger,
        },
        other => other,
    }
}

/// Every status any step can return becomes the typed error naming the function and the
/// status, in every family (the table names functions without the family prefix); a
/// power prompt refused by ChangePowerSource is reported as ChangePowerSource's error in
/// the families with power prompts (ps3000a, ps5000a).
#[test]
fn every_injected_status_becomes_its_typed_error() {
    use Mode::{Block, RapidBlock, Streaming};
    type Case = (&'static [(&'static str, u32)], Mode);
    // (injections, mode): the error names the function and status of the last injection
    let common: &[Case] = &[
        (&[("OpenUnit", 0x03)], RapidBlock),
        (&[("OpenUnit", 0x01)], RapidBlock),
        (&[("GetUnitInfo", 0x07)], RapidBlock),
        (&[("SetChannel", 0x0F)], RapidBlock),
        (&[("MaximumValue", 0x06)], RapidBlock),
        (&[("MemorySegments", 0x1E)], RapidBlock),
        (&[("SetNoOfCaptures", 0x0D)], RapidBlock),
        (&[("GetTimebase2", 0x0D)], RapidBlock),
        (&[("SetSimpleTrigger", 0x11)], RapidBlock),
        (&[("SetDataBuffer", 0x46)], RapidBlock),
        (&[("RunBlock", 0x15)], RapidBlock),
        (&[("GetValuesBulk", 0x18)], RapidBlock),
        (&[("GetValuesTriggerTimeOffsetBulk64", 0x25)], RapidBlock),
        (&[("RunBlock", 0x15)], Block),
        (&[("GetValues", 0x18)], Block),
        (&[("GetValues", 0x07)], Block),
        (&[("GetTriggerTimeOffset64", 0x25)], Block),
        (&[("RunStreaming", 0x14)], Streaming),
        (&[("GetStreamingLatestValues", 0x1C)], Streaming),
        (&[("GetStreamingLatestValues", 0x07)], Streaming),
    ];
    let resolution: &[Case] = &[(&[("SetDeviceResolution", 0x120)], RapidBlock)];
    // A prompt at open (no DC adapter, USB 2 port) whose ChangePowerSource is refused
    // (REQUEST_INVALID, UNDERVOLTAGE, gone), and a change reported by RunBlock mid-run
    // (adapter plugged in 0x119 / pulled out 0x11A) refused the same way.
    let power: &[Case] = &[
        (
            &[("OpenUnit", 0x11A), ("ChangePowerSource", 0x11B)],
            RapidBlock,
        ),
        (
            &[("OpenUnit", 0x11E), ("ChangePowerSource", 0x11C)],
            RapidBlock,
        ),
        (&[("OpenUnit", 0x11A), ("ChangePowerSource", 0x07)], Block),
        (
            &[("RunBlock", 0x119), ("ChangePowerSource", 0x11B)],
            RapidBlock,
        ),
        (&[("RunBlock", 0x11A), ("ChangePowerSource", 0x11B)], Block),
    ];
    let mut checked = 0;
    for family in FAMILIES {
        let mut cases: Vec<Case> = common.to_vec();
        if family.symbols.change_power_source.is_some() {
            cases.extend_from_slice(power);
        }
        if family.symbols.set_device_resolution.is_some() {
            cases.extend_from_slice(resolution);
        }
        for (injections, mode) in cases {
            let (function, code) = injections[injections.len() - 1];
            let function = format!("{}{function}", family.name);
            let err = error_from(family, injections, mode);
            match &err {
                PicoError::Status {
                    function: f,
                    status,
                    device,
                } => {
                    assert_eq!(*f, function, "{injections:?}: {err}");
                    assert_eq!(status.code(), code, "{err}");
                    assert!(device.contains("PicoScope"), "{err}");
                    assert!(
                        err.to_string().contains(&format!("PICO_{}", status.name())),
                        "{err}"
                    );
                }
                other => panic!("{function} 0x{code:X}: {other}"),
            }
            let expect_disconnect = matches!(code, 0x03 | 0x07);
            let d: DriverError = err.into();
            assert_eq!(
                matches!(d, DriverError::Disconnected { .. }),
                expect_disconnect,
                "{function}: {d}"
            );
            checked += 1;
        }
    }
    // ps3000a and ps5000a have power prompts, ps5000a alone a resolution.
    assert_eq!(
        checked,
        3 * common.len() + 2 * power.len() + resolution.len()
    );
}

/// RunBlock reporting the DC adapter plugged in or pulled out, in every family and both
/// block modes: the families with power prompts accept the new source and read on without
/// a lost capture; ps2000a (no power socket, no ChangePowerSource) reports RunBlock's
/// status as a typed error.
#[test]
fn a_power_change_at_run_block_in_every_family() {
    for family in FAMILIES {
        for code in [0x119u32, 0x11A] {
            for mode in [Mode::RapidBlock, Mode::Block] {
                let fake = Fake::new(family);
                let mut c = block_config(family, 2, 3, SampleFormat::Raw);
                if mode == Mode::Block {
                    c.acquisition = block_mode(&c);
                }
                let mut scope = fake.open(c);
                let mut out = vec![0u8; scope.layout().event_size()];
                scope.start_capture().unwrap();
                read_one(&mut scope, &mut out);
                let what = format!("{} 0x{code:X} {mode:?}", family.name);
                if family.symbols.change_power_source.is_some() {
                    assert_eq!(fake.set_u32(b"fakepico_power_change", code), 0);
                    for _ in 0..6 {
                        read_one(&mut scope, &mut out);
                    }
                    assert_eq!(scope.counters().power_changes, 1, "{what}");
                    assert_eq!(scope.counters().events, 7, "{what}");
                    let change = format!("{}ChangePowerSource", family.name);
                    assert_eq!(fake.calls(&change), 1, "{what}");
                } else {
                    // The fake's ps2000a has no power socket: inject the status instead.
                    fake.inject(&format!("{}RunBlock", family.name), code);
                    // Rapid block hands out the fetched run's captures first.
                    let err = (0..10)
                        .find_map(|_| scope.read_capture(&mut out, T).err())
                        .unwrap_or_else(|| panic!("{what}: no error"));
                    assert_eq!(err.status().map(|s| s.code()), Some(code), "{what}: {err}");
                    assert!(
                        err.to_string()
                            .contains("ps2000aRunBlock returned PICO_POWER_SUPPLY"),
                        "{what}: {err}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_timebase_refused_everywhere_is_a_configuration_error() {
    let fake = Fake::new(&PS5000A);
    for _ in 0..8 {
        fake.inject("ps5000aGetTimebase2", 0x0E);
    }
    let err =
        PicoScope::open(fake.config(block_config(&PS5000A, 2, 1, SampleFormat::Raw))).unwrap_err();
    assert!(matches!(err, PicoError::Config { .. }), "{err}");
    assert!(err.to_string().contains("no timebase from 4 on"), "{err}");
    assert!(matches!(DriverError::from(err), DriverError::Config { .. }));
}

/// issue 12: bad data from a USB scope (a block shorter than asked for) is a protocol
/// error at its event, and the next read goes on with the next block: the engine counts
/// and skips it and the run goes on.
#[test]
fn a_short_block_is_bad_data_and_the_next_block_is_read() {
    let fake = Fake::new(&PS5000A);
    let mut scope = fake.open(block_config(&PS5000A, 2, 5, SampleFormat::Volts));
    let mut out = vec![0u8; scope.layout().event_size()];
    Source::start(&mut scope).unwrap();
    let mut events = 0;
    let mut bad = 0;
    // SAFETY: fakepico_short_values_once(uint32_t).
    unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn(u32)> =
            fake.lib.get(b"fakepico_short_values_once").unwrap();
        f(3);
    }
    while events < 10 {
        match Source::read_event(&mut scope, &mut out, T) {
            Ok(ReadOutcome::Event(_)) => events += 1,
            Ok(ReadOutcome::Idle) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e @ DriverError::Protocol { .. }) => {
                assert!(
                    e.to_string().contains("GetValuesBulk returned 3 samples"),
                    "{e}"
                );
                bad += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(bad, 1);
}

#[test]
fn unplug_mid_run_is_a_disconnection_and_reconnect_reopens() {
    for family in FAMILIES {
        let fake = Fake::new(family);
        let mut scope = fake.open(block_config(family, 2, 5, SampleFormat::Volts));
        let mut out = vec![0u8; scope.layout().event_size()];
        Source::start(&mut scope).unwrap();
        read_events(&mut scope, &mut out, 7);
        fake.unplug();
        // The three captures already fetched are handed out; the next fetch finds the scope gone.
        let (events, err) = events_until_error(&mut scope, &mut out, 3);
        assert_eq!(events, 3);
        assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
        assert!(err.to_string().contains("PICO_NOT_RESPONDING"), "{err}");
        assert!(!scope.reconnect().unwrap(), "still unplugged");
        fake.replug();
        assert!(scope.reconnect().unwrap());
        read_events(&mut scope, &mut out, 6);
        // Open at start, a failed open while unplugged, the successful re-open; the dead
        // handle was closed once.
        assert_eq!(fake.calls(&format!("{}OpenUnit", family.name)), 3);
        assert_eq!(fake.calls(&format!("{}CloseUnit", family.name)), 1);
    }
}

#[test]
fn unplug_while_waiting_for_a_trigger_is_a_disconnection() {
    for family in FAMILIES {
        let fake = Fake::new(family);
        fake.set_capture_rate(1.0); // 4 captures take 4 s
        let mut scope = fake.open(block_config(family, 1, 4, SampleFormat::Volts));
        let mut out = vec![0u8; scope.layout().event_size()];
        scope.start_capture().unwrap();
        assert_eq!(
            scope
                .read_capture(&mut out, Duration::from_millis(30))
                .unwrap(),
            ReadOutcome::Idle
        );
        fake.unplug();
        let err = scope.read_capture(&mut out, T).unwrap_err();
        assert!(err.is_disconnection(), "{err}");
        assert_eq!(err.status(), Some(PicoStatus::NotResponding));
    }
}

#[test]
fn unplug_while_streaming_is_a_disconnection() {
    for family in FAMILIES {
        let fake = Fake::new(family);
        let mut scope = fake.open(streaming_config(family, 1, SampleFormat::Raw, 200, 1000));
        let mut out = vec![0u8; scope.layout().event_size()];
        Source::start(&mut scope).unwrap();
        read_events(&mut scope, &mut out, 1);
        fake.unplug();
        // Samples delivered before the unplug still make whole events (at most one overview
        // buffer's worth); then the scope is gone.
        let (_, err) = events_until_error(&mut scope, &mut out, 5);
        assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    }
}

#[test]
fn an_unreachable_trigger_level_waits_and_auto_trigger_fires() {
    let fake = Fake::new(&PS5000A);
    fake.set_pulse(0.1, 0.3, 2.0, 20.0, 0.0); // at most 150 mV on ±500 mV
    let mut c = block_config(&PS5000A, 1, 2, SampleFormat::Volts);
    if let Acquisition::RapidBlock {
        trigger: Some(ref mut t),
        ..
    } = c.acquisition
    {
        t.level_v = -0.2;
    }
    let mut scope = fake.open(c.clone());
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    for _ in 0..3 {
        assert_eq!(
            scope
                .read_capture(&mut out, Duration::from_millis(20))
                .unwrap(),
            ReadOutcome::Idle
        );
    }
    assert_eq!(fake.calls("ps5000aIsReady"), 3);
    drop(scope);

    if let Acquisition::RapidBlock {
        trigger: Some(ref mut t),
        ..
    } = c.acquisition
    {
        t.auto_trigger_ms = 10;
    }
    let mut scope = fake.open(c);
    scope.start_capture().unwrap();
    read_one(&mut scope, &mut out);
    assert!(
        f32s(&out).iter().all(|&v| v == 0.0),
        "auto-triggered capture holds no pulse (noise off)"
    );
}

#[test]
fn a_missing_library_says_what_to_install() {
    let mut c = block_config(&PS5000A, 1, 1, SampleFormat::Volts);
    c.library = Some(PathBuf::from("/nonexistent/pico/libps5000a.so"));
    let err = PicoScope::open(c).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PicoError::LibraryMissing { .. }), "{text}");
    for needle in [
        "`libps5000a`",
        "labs.picotech.com/picoscope7/debian",
        "/opt/picoscope/lib/libps5000a.so",
        "/nonexistent/pico/libps5000a.so: no such file",
        "through the OS search path",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    let d: DriverError = err.into();
    assert!(
        matches!(d, DriverError::Vendor(ref m) if m.contains("libps5000a")),
        "{d}"
    );

    let mut c = block_config(&PS2000A, 1, 1, SampleFormat::Volts);
    c.library = Some(PathBuf::from("/nonexistent"));
    let text = PicoScope::open(c).unwrap_err().to_string();
    assert!(
        text.contains("`libps2000a`") && text.contains("libps2000a.so"),
        "{text}"
    );
}

#[test]
fn a_library_without_picos_functions_is_named() {
    // Any shared library that is not Pico's: the test binary's own libc.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libc.so.6");
    let mut c = block_config(&PS5000A, 1, 1, SampleFormat::Volts);
    c.library = Some(libc);
    let err = PicoScope::open(c).unwrap_err();
    assert!(
        matches!(
            err,
            PicoError::SymbolMissing {
                symbol: "ps5000aOpenUnit",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_library_directory_may_be_configured() {
    let fake = Fake::new(&PS5000A);
    let mut c = block_config(&PS5000A, 1, 1, SampleFormat::Volts);
    c.library = Some(fake.dir.clone());
    let scope = PicoScope::open(c).unwrap();
    assert_eq!(scope.library().path(), fake.path.as_path());
    assert_eq!(scope.info().serial.as_deref(), Some("FAKE5000/001"));
    assert_eq!(scope.info().model, "PicoScope 5444D");
    let meta = scope.run_metadata();
    assert!(
        meta.contains(&("picoscope.sample_interval_ns".into(), "16".into())),
        "{meta:?}"
    );
    assert_eq!(
        scope.library().enumerate_units().unwrap(),
        vec!["FAKE5000/001".to_string()]
    );
    fake.unplug();
    assert_eq!(
        scope.library().enumerate_units().unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn wrong_serial_and_wrong_output_size_are_reported() {
    let fake = Fake::new(&PS5000A);
    let mut c = fake.config(block_config(&PS5000A, 1, 1, SampleFormat::Volts));
    c.serial = Some("JO999/0001".into());
    let err = PicoScope::open(c).unwrap_err();
    assert_eq!(err.status(), Some(PicoStatus::NotFound));
    let mut scope = fake.open(block_config(&PS5000A, 1, 1, SampleFormat::Volts));
    scope.start_capture().unwrap();
    let mut small = vec![0u8; 10];
    let err = Source::read_event(&mut scope, &mut small, T).unwrap_err();
    assert!(matches!(err, DriverError::Config { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("output is 10 bytes, one event is 800 bytes"),
        "{err}"
    );
}

#[test]
fn bench_counts_what_it_reads() {
    let fake = Fake::new(&PS5000A);
    let c = fake.config(block_config(&PS5000A, 4, 50, SampleFormat::Volts));
    let f = bench_fake(&c, 120).unwrap();
    assert_eq!(f.events, 120);
    assert_eq!(f.bytes, 120 * 200 * 4 * 4);
    assert!(f.events_per_s > 0.0 && f.mb_per_s > 0.0);
    assert!((f.events_per_s * f.seconds - 120.0).abs() < 1e-6);
    // 120 events in runs of 50: 3 reads fetched, 117 only copied out.
    assert_eq!(f.copy_events, 117);
    assert!(f.copy_events_per_s > 0.0 && f.copy_mb_per_s > 0.0);
}

/// Starts `scope` through `Source`, reads one event, then counts the allocations of reading
/// `n` more.
fn allocations_reading_events(scope: &mut PicoScope, n: usize) -> u64 {
    let mut out = vec![0u8; scope.layout().event_size()];
    Source::start(scope).unwrap();
    read_one(scope, &mut out);
    allocations_in(|| {
        read_events(scope, &mut out, n);
    })
}

#[test]
fn reading_events_allocates_nothing() {
    // Rapid block: 60 events = 6 fetches and re-arms of 10 captures, volts.
    let fake = Fake::new(&PS5000A);
    let mut opened = None;
    let at_open = allocations_in(|| {
        opened = Some(fake.open(block_config(&PS5000A, 4, 10, SampleFormat::Volts)));
    });
    let mut scope = opened.unwrap();
    assert!(
        at_open >= 40,
        "the counter sees the 40 segment buffers of open"
    );
    assert_eq!(allocations_reading_events(&mut scope, 60), 0, "rapid block");

    // Streaming, raw, chunks crossing event boundaries, idle polls included.
    let fake = Fake::new(&PS5000A);
    let mut scope = fake.open(streaming_config(&PS5000A, 2, SampleFormat::Raw, 250, 1000));
    assert_eq!(allocations_reading_events(&mut scope, 40), 0, "streaming");
}

#[test]
#[ignore = "measurement: cargo test --release -p daq-drivers --test picoscope_fake -- --ignored --nocapture"]
fn measure_fake_rates() {
    for family in FAMILIES {
        let channels = fake_channels(family);
        let (captures, records) = (1000u32, 1000u32);
        for (mode, events) in [(Mode::RapidBlock, 20_000u64), (Mode::Block, 2_000)] {
            let fake = Fake::new(family);
            let mut c = fake.config(block_config(
                family,
                channels,
                captures,
                SampleFormat::Volts,
            ));
            if let Acquisition::RapidBlock {
                ref mut pre_trigger,
                ref mut post_trigger,
                ..
            } = c.acquisition
            {
                *pre_trigger = records / 5;
                *post_trigger = records - records / 5;
            }
            let shape = match mode {
                Mode::Block => {
                    c.acquisition = block_mode(&c);
                    "block".to_string()
                }
                _ => format!("rapid block {captures} captures"),
            };
            let f = bench_fake(&c, events).unwrap();
            // Block mode fetches at every read: no read only copies out.
            let copy = if f.copy_events == 0 {
                "every read fetches".to_string()
            } else {
                format!(
                    "{:.0} events/s, {:.1} MB/s",
                    f.copy_events_per_s, f.copy_mb_per_s
                )
            };
            println!(
                "{} {channels} ch, {shape} x {records} samples, f4: {:.0} events/s, {:.1} MB/s \
                 ({} events in {:.3} s); driver copy-out alone: {copy}",
                family.name, f.events_per_s, f.mb_per_s, f.events, f.seconds,
            );
        }
    }
}

#[test]
fn a_failed_re_arm_is_reported_after_the_fetched_captures() {
    let fake = Fake::new(&PS5000A);
    // The second RunBlock (the re-arm right after the first fetch) fails.
    fake.inject_after("ps5000aRunBlock", 0x15, 1);
    let mut scope = fake.open(block_config(&PS5000A, 1, 4, SampleFormat::Volts));
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    for _ in 0..4 {
        read_one(&mut scope, &mut out);
    }
    let err = scope.read_capture(&mut out, T).unwrap_err();
    assert_eq!(err.status(), Some(PicoStatus::BlockModeFailed));
    assert!(
        err.to_string()
            .contains("ps5000aRunBlock returned PICO_BLOCK_MODE_FAILED"),
        "{err}"
    );
    // Starting again works.
    scope.start_capture().unwrap();
    read_one(&mut scope, &mut out);
}

impl Fake {
    /// `fakepico_set_variant`: the model every unit opened from now on reports.
    fn set_variant(&self, name: &str) {
        let name = CString::new(name).unwrap();
        // SAFETY: fakepico_set_variant(const char*) -> int32_t.
        let r = unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*const std::ffi::c_char) -> i32> =
                self.lib.get(b"fakepico_set_variant").unwrap();
            f(name.as_ptr())
        };
        assert_eq!(r, 0);
    }

    /// `fakepico_digital_level`: the logic level SetDigitalPort left on a port (MIN = off).
    fn digital_level(&self, port: u32) -> i32 {
        // SAFETY: fakepico_digital_level(uint32_t) -> int32_t.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> =
                self.lib.get(b"fakepico_digital_level").unwrap();
            f(port)
        }
    }
}

/// The MSO models of each family the fake presents, as their variant strings read.
const MSO_MODELS: [(&FamilyTable, &str); 3] = [
    (&PS2000A, "2205A MSO"),
    (&PS3000A, "3406D MSO"),
    (&PS5000A, "5444D MSO"),
];

/// Splits one event of `records` records of `rec` bytes into the bytes at `at` (a u1 field).
fn u1_field(event: &[u8], rec: usize, at: usize) -> Vec<u8> {
    event.chunks_exact(rec).map(|r| r[at]).collect()
}

/// The fake's digital pattern: sample n of the unit carries bits 0..7 of n on PORT0 and
/// bits 8..15 on PORT1.
fn counter(d0_7: &[u8], d8_15: &[u8]) -> Vec<u64> {
    d0_7.iter()
        .zip(d8_15)
        .map(|(&lo, &hi)| u64::from(hi) << 8 | u64::from(lo))
        .collect()
}

/// An MSO model of every family with both digital ports: SetDigitalPort switches them on
/// with the configured thresholds, every event carries the fake's 16-bit sample counter in
/// D0_7 / D8_15 (captures across re-arms, the high byte of Pico's 16-bit port samples left
/// out), the analogue channels are as before, reading allocates nothing, and closing
/// switches the ports off. Before, the driver had no digital ports at all.
#[test]
fn mso_rapid_block_in_every_family_carries_the_digital_pattern() {
    for (family, model) in MSO_MODELS {
        let fake = Fake::new(family);
        fake.set_variant(model);
        fake.set_pulse(0.2, 0.8, 2.0, 20.0, 0.0);
        let mut c = block_config(family, 2, 5, SampleFormat::Raw);
        c.digital = [Some(1.5), Some(-0.5)];
        c.model = Some(model.to_string());
        let mut scope = fake.open(c);
        let set_port = format!("{}SetDigitalPort", family.name);
        assert_eq!(fake.calls(&set_port), 2, "{model}");
        assert_eq!(fake.digital_level(0), 9830, "1.5 V / 5 V × 32767");
        assert_eq!(fake.digital_level(1), -3277, "-0.5 V / 5 V × 32767");
        let names: Vec<&str> = scope.layout().names().collect();
        assert_eq!(names, ["chA", "chB", "D0_7", "D8_15"]);
        let rec = 2 * 2 + 2;
        let mut out = vec![0u8; scope.layout().event_size()];
        assert_eq!(out.len(), 200 * rec);
        scope.start_capture().unwrap();
        let level = trigger_level_counts(&scope);
        let mut allocated = 0;
        for n in 0..12u64 {
            allocated += allocations_of_read(&mut scope, &mut out, n);
            let a: Vec<i16> = out
                .chunks_exact(rec)
                .map(|r| i16::from_le_bytes([r[0], r[1]]))
                .collect();
            assert!(
                a[40] <= level && a[39] > level,
                "{model} A[39..41] {:?}",
                &a[39..41]
            );
            let got = counter(&u1_field(&out, rec, 4), &u1_field(&out, rec, 5));
            let want: Vec<u64> = (0..200).map(|i| (n * 200 + i) & 0xFFFF).collect();
            assert_eq!(got, want, "{model} event {n}");
        }
        assert_eq!(allocated, 0, "{model}: reading allocates nothing");
        let notes = scope.run_metadata();
        assert!(
            notes
                .iter()
                .any(|(k, v)| k == "picoscope.digital.D8_15" && v.contains("-0.5 V")),
            "{notes:?}"
        );
        drop(scope);
        assert_eq!(fake.calls(&set_port), 4, "{model}: both ports off at close");
    }
}

/// Streaming with one digital port, volts: the port's bytes sit after the f4 channels in
/// every record and count on without a gap from event to event.
#[test]
fn mso_streaming_digital_port_is_gapless() {
    let fake = Fake::new(&PS5000A);
    fake.set_variant("5444D MSO");
    fake.set_i32(b"fakepico_set_streaming_paced", 0);
    let mut c = streaming_config(&PS5000A, 2, SampleFormat::Volts, 250, 1000);
    c.digital = [Some(2.0), None];
    let mut scope = fake.open(c);
    let rec = 4 * 2 + 1;
    let mut out = vec![0u8; scope.layout().event_size()];
    assert_eq!(out.len(), 250 * rec);
    scope.start_capture().unwrap();
    for e in 0..20u64 {
        read_one(&mut scope, &mut out);
        let got: Vec<u64> = u1_field(&out, rec, 8).into_iter().map(u64::from).collect();
        let want: Vec<u64> = (0..250).map(|i| (e * 250 + i) & 0xFF).collect();
        assert_eq!(got, want, "event {e}");
        let v = f32s(&out[..8]);
        assert!(v.iter().all(|x| x.abs() <= 0.5), "{v:?}");
    }
}

/// A model without digital inputs asked for a port: open says so, naming the device,
/// before any SetDigitalPort; the library itself answers INVALID_DIGITAL_PORT there. A
/// setup written for another model is refused at open too, and an MSO unit without ports
/// asked has both switched off and runs as before.
#[test]
fn digital_ports_on_a_model_without_them_are_refused_at_open() {
    let fake = Fake::new(&PS3000A);
    let mut c = block_config(&PS3000A, 2, 1, SampleFormat::Raw);
    c.digital = [Some(1.5), None];
    let err = PicoScope::open(fake.config(c.clone())).unwrap_err();
    assert!(matches!(err, PicoError::Config { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("PicoScope 3406D FAKE3000/001")
            && text.contains(
                "digital port D0_7 (PORT0) asked for, but the 3406D has no digital inputs"
            ),
        "{text}"
    );
    assert_eq!(fake.calls("ps3000aSetDigitalPort"), 0);
    assert!(matches!(DriverError::from(err), DriverError::Config { .. }));

    let lib = daq_drivers::picoscope::PicoLibrary::load(&PS3000A, Some(&fake.path)).unwrap();
    let (h, s) = lib.open_unit(None, Resolution::Bits8);
    assert_eq!(s, PicoStatus::Ok);
    assert_eq!(
        lib.set_digital_port(h, 0x80, true, 9830),
        PicoStatus::InvalidDigitalPort
    );
    assert_eq!(lib.close_unit(h), PicoStatus::Ok);

    c.digital = [None, None];
    c.model = Some("3406D MSO".into());
    let err = PicoScope::open(fake.config(c.clone())).unwrap_err();
    assert!(
        err.to_string()
            .contains("the setup is written for a 3406D MSO (key model), this unit is a 3406D"),
        "{err}"
    );

    fake.set_variant("3406D MSO");
    let mut scope = fake.open(c);
    // The library's own call above, then both ports off.
    assert_eq!(fake.calls("ps3000aSetDigitalPort"), 3);
    assert_eq!(fake.digital_level(0), i32::MIN, "PORT0 off");
    assert_eq!(fake.digital_level(1), i32::MIN, "PORT1 off");
    assert_eq!(scope.layout().record_size(), 4);
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start_capture().unwrap();
    read_one(&mut scope, &mut out);
}

/// An MSO unplugged mid-run: the reconnect opens the unit again with its digital port
/// switched on at the same threshold, and the events after the gap carry the new unit's
/// digital samples from its first capture on.
#[test]
fn mso_reconnect_switches_the_digital_port_on_again() {
    let fake = Fake::new(&PS3000A);
    fake.set_variant("3406D MSO");
    let mut c = block_config(&PS3000A, 1, 4, SampleFormat::Raw);
    c.digital = [None, Some(3.3)];
    let mut scope = fake.open(c);
    let rec = 2 + 1;
    let mut out = vec![0u8; scope.layout().event_size()];
    Source::start(&mut scope).unwrap();
    read_one(&mut scope, &mut out);
    fake.unplug();
    let (_, err) = events_until_error(&mut scope, &mut out, usize::MAX);
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    fake.replug();
    assert!(scope.reconnect().unwrap());
    assert_eq!(fake.digital_level(1), 21626, "3.3 V / 5 V × 32767");
    assert_eq!(fake.digital_level(0), i32::MIN);
    for n in 0..6u64 {
        read_one(&mut scope, &mut out);
        // PORT1 alone: bits 8..15 of the new unit's sample number.
        let got: Vec<u64> = u1_field(&out, rec, 2).into_iter().map(u64::from).collect();
        let want: Vec<u64> = (0..200).map(|i| ((n * 200 + i) >> 8) & 0xFF).collect();
        assert_eq!(got, want, "event {n} after the reconnect");
    }
}

/// Pico's block mode (`mode: block`) in every family: RunBlock of one capture, then
/// GetValues and GetTriggerTimeOffset64 of segment 0, no memory segments and none of the
/// bulk calls. The events are exactly
/// the captures the fake generates: byte for byte those a second copy of the fake with the
/// same seed gives through rapid block of one capture per run (trigger offsets too), with
/// the falling trigger
/// on A between samples 39 and 40. Reading allocates nothing. Before, there was no block
/// mode (only rapid block of one capture, through GetValuesBulk).
#[test]
fn block_mode_in_every_family_gives_the_fakes_captures_through_get_values() {
    const N: u64 = 12;
    for family in FAMILIES {
        let channels = fake_channels(family);
        let block_fake = Fake::new(family);
        let bulk_fake = Fake::new(family);
        let rapid = block_config(family, channels, 1, SampleFormat::Raw);
        let mut block = rapid.clone();
        block.acquisition = block_mode(&rapid);
        let mut scope = block_fake.open(block);
        let mut reference = bulk_fake.open(rapid);
        assert_eq!(scope.layout(), reference.layout());
        let meta = scope.run_metadata();
        assert!(
            meta.contains(&("picoscope.mode".into(), "block".into())),
            "{meta:?}"
        );
        let size = scope.layout().event_size();
        assert_eq!(size, 200 * channels * 2);
        let (mut got, mut want) = (vec![0u8; size], vec![0u8; size]);
        scope.start_capture().unwrap();
        reference.start_capture().unwrap();
        let level = trigger_level_counts(&scope);
        let mut allocated = 0;
        for n in 0..N {
            allocated += allocations_of_read(&mut scope, &mut got, n);
            read_one(&mut reference, &mut want);
            assert!(got == want, "{} event {n} differs", family.name);
            let a: Vec<i16> = i16s(&got).into_iter().step_by(channels).collect();
            assert!(
                a[40] <= level && a[39] > level,
                "{} event {n}: A[39..41] {:?}",
                family.name,
                &a[39..41]
            );
            let offset = scope.last_trigger_offset_s();
            assert!(offset.is_some());
            assert_eq!(offset, reference.last_trigger_offset_s());
        }
        assert_eq!(allocated, 0, "{}: reading allocates nothing", family.name);
        let name = |f: &str| format!("{}{f}", family.name);
        assert_eq!(block_fake.calls(&name("GetValues")), N as u32);
        assert_eq!(block_fake.calls(&name("GetValuesBulk")), 0);
        assert_eq!(block_fake.calls(&name("GetTriggerTimeOffset64")), N as u32);
        assert_eq!(
            block_fake.calls(&name("GetValuesTriggerTimeOffsetBulk64")),
            0
        );
        assert_eq!(block_fake.calls(&name("MemorySegments")), 0);
        assert_eq!(block_fake.calls(&name("SetNoOfCaptures")), 0);
        // One capture per RunBlock, re-armed at each fetch.
        assert_eq!(block_fake.calls(&name("RunBlock")), N as u32 + 1);
        // Buffers registered once, one per channel.
        assert_eq!(block_fake.calls(&name("SetDataBuffer")), channels as u32);
        assert_eq!(scope.counters().events, N);
    }
}

/// Ranges by model (HARDWARE.md P): a 3000A A/B model starts at ±50 mV, a D model at
/// ±20 mV. With `model` given, ±20 mV on an A/B model is refused before the unit is
/// opened; without it, the unit's own SetChannel refuses it (the fake answers
/// PICO_INVALID_VOLTAGE_RANGE as Pico's library does) and open reports that typed error.
/// Before, the fake accepted ±20 mV on every 3000A and the driver checked the family only.
#[test]
fn ps3000a_ranges_by_model_are_refused_before_open_and_by_set_channel() {
    let fake = Fake::new(&PS3000A);
    let mut c = block_config(&PS3000A, 2, 2, SampleFormat::Raw);
    c.channels[1].range = VoltageRange::Mv20;
    // The default fake unit, a 3406D, has ±20 mV.
    let scope = fake.open(c.clone());
    assert_eq!(scope.variant(), "3406D");
    drop(scope);
    for model in ["3204A", "3405B", "3206 MSO"] {
        fake.set_variant(model);
        let opens = fake.calls("ps3000aOpenUnit");
        let mut with_model = c.clone();
        with_model.model = Some(model.into());
        let err = PicoScope::open(fake.config(with_model)).unwrap_err();
        assert!(matches!(err, PicoError::Config { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!(
                "channel B: range ±0.02 V is not offered by the {model} (±0.05 V .. ±20 V)"
            )),
            "{err}"
        );
        assert_eq!(fake.calls("ps3000aOpenUnit"), opens, "refused before open");
        let err = PicoScope::open(fake.config(c.clone())).unwrap_err();
        match &err {
            PicoError::Status {
                function, status, ..
            } => {
                assert_eq!(*function, "ps3000aSetChannel", "{model}");
                assert_eq!(*status, PicoStatus::InvalidVoltageRange, "{model}");
            }
            other => panic!("{model}: {other}"),
        }
        assert!(
            err.to_string().contains(&format!("PicoScope {model}")),
            "{err}"
        );
        // ±50 mV is there on every model.
        let mut ok = c.clone();
        ok.channels[1].range = VoltageRange::Mv50;
        ok.model = Some(model.into());
        fake.open(ok);
    }
    fake.set_variant("3206D MSO");
    let mut d = c.clone();
    d.model = Some("3206D MSO".into());
    fake.open(d);
}
