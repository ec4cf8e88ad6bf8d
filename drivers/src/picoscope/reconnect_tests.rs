//! A streaming PicoScope unplugged and plugged in again, against a private copy of the fake
//! vendor library: the unit reports the unplug, `reconnect` says "not yet" while it is gone
//! and reopens it when it is back, and no event mixes samples from before and after the gap.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{
    Acquisition, ChannelConfig, PicoScope, PicoScopeConfig, SampleFormat, VoltageRange, PS5000A,
};
use crate::driver::{DriverError, ReadOutcome, Source};
use crate::serial::Backoff;
use crate::usb::RetryPacing;

const T: Duration = Duration::from_secs(2);

/// A private copy of the built fake library under the family's file name, loaded so its
/// controls can be called; removed on drop.
struct Fake {
    dir: PathBuf,
    path: PathBuf,
    lib: libloading::Library,
}

impl Fake {
    fn new() -> Fake {
        let so = fake_picosdk::built_library(&[]);
        let dir = std::env::temp_dir().join(format!("daq-pico-reconnect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PS5000A.soname);
        std::fs::copy(so, &path).unwrap();
        // SAFETY: daq-engine's own fake library; its initialisers are Rust's std only.
        let lib = unsafe { libloading::Library::new(&path) }.unwrap();
        Fake { dir, path, lib }
    }

    /// Calls an argument-less control (`fakepico_unplug`, `fakepico_replug`).
    fn call(&self, symbol: &[u8]) {
        // SAFETY: the controls named in these tests are `void f(void)`.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn()> = self.lib.get(symbol).unwrap();
            f()
        }
    }

    /// Calls a control taking one int32_t.
    fn set(&self, symbol: &[u8], v: i32) {
        // SAFETY: the controls named in these tests take one int32_t.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(i32)> = self.lib.get(symbol).unwrap();
            f(v)
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn streaming_config(fake: &Fake) -> PicoScopeConfig {
    let mut c = PicoScopeConfig::muon_telescope(&PS5000A);
    c.library = Some(fake.path.clone());
    c.channels = [
        ChannelConfig::dc(VoltageRange::Mv500),
        ChannelConfig::OFF,
        ChannelConfig::OFF,
        ChannelConfig::OFF,
    ];
    c.sample_interval_ns = 1000.0;
    c.acquisition = Acquisition::Streaming {
        samples_per_event: 300,
        overview_samples: 1000,
    };
    c.format = SampleFormat::Raw;
    c
}

fn samples(out: &[u8]) -> Vec<i16> {
    out.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The ramp the fake streams on channel A: sample n is n mod 30000 ADC counts.
fn on_the_ramp(s: &[i16]) -> bool {
    s.windows(2)
        .all(|w| i32::from(w[1]) == (i32::from(w[0]) + 1) % 30000)
}

#[test]
fn streamed_events_never_span_an_unplug_and_the_stream_starts_anew() {
    let fake = Fake::new();
    fake.set(b"fakepico_set_waveform", 1);
    fake.set(b"fakepico_set_streaming_paced", 0);
    let mut scope = PicoScope::open(streaming_config(&fake)).unwrap();
    scope.set_reconnect_pacing(RetryPacing::new(Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
    }));
    let mut out = vec![0u8; scope.layout().event_size()];
    Source::start(&mut scope).unwrap();
    let mut read = |scope: &mut PicoScope| match Source::read_event(scope, &mut out, T) {
        Ok(ReadOutcome::Event(_)) => Ok(samples(&out)),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    for e in 0..5 {
        let s = read(&mut scope).unwrap();
        assert_eq!(s[0], e * 300);
        assert!(on_the_ramp(&s));
    }
    fake.call(b"fakepico_unplug");
    let err = loop {
        match read(&mut scope) {
            Ok(s) => assert!(on_the_ramp(&s), "an event before the gap is whole"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, DriverError::Disconnected { .. }), "{err}");
    assert!(!Source::reconnect(&mut scope).unwrap(), "still unplugged");
    assert!(!Source::reconnect(&mut scope).unwrap(), "still unplugged");
    fake.call(b"fakepico_replug");
    let deadline = Instant::now() + T;
    while !Source::reconnect(&mut scope).unwrap() {
        assert!(Instant::now() < deadline, "never back");
    }
    assert_eq!(scope.reconnects(), 1);
    // A fresh unit streams from sample 0 again: the samples staged before the gap are gone.
    for e in 0..5 {
        let s = read(&mut scope).unwrap();
        assert_eq!(s[0], e * 300, "event {e} after the gap");
        assert!(on_the_ramp(&s));
    }
    assert!(Source::run_metadata(&scope)
        .contains(&("picoscope.reconnects".to_string(), "1".to_string())));
    scope.stop_capture().unwrap();
}
