//! `importers.picoscope.source`: mimoCoRB2's PicoScope 3000A importer
//! (`mimocorb2/functions/importers/picoscope.py`, 0.0.4), with its config keys, run by
//! `device.picoscope`.
//!
//! Its keys are translated into `device.picoscope`'s, then checked and built as those are:
//! - the enabled channels are the first N of A..D for a sink of N fields (mimoCoRB2 reads
//!   `len(dtype.names)`); the fields must be named chA.. as the driver writes them;
//! - `channel_coupling` DC/AC; `channel_range` (Pico's names: `500MV`, `20V`, …) for every
//!   channel, else `channelA_range`.. each (default `20V`); `analogue_offset` (V) for every
//!   channel, else `analogue_offset_chA`.. (which must then agree: the driver takes one);
//! - `trigger_channel` A..D (one not enabled falls back to A, as there; `EXT` is refused:
//!   the external trigger input is not supported), `trigger_threshold` in mV as mimoCoRB2
//!   compares it (against the digitised input + offset), `trigger_direction` (`RISING`, …);
//! - `pre_trigger_samples`, `post_trigger_samples`, `timebase` (Pico's index, used as it
//!   is), `number_of_memory_segments` (captures per RunBlock); no auto trigger: mimoCoRB2
//!   passes `2**16` ms to an `int16_t`, which the library receives as 0 (wait for ever);
//! - events in mV, float32, the analogue offset not subtracted (`format: millivolts`), as
//!   mimoCoRB2 delivers them, so its analysis thresholds keep their meaning.
//!
//! Our own keys (`simulate`, `seed`, `sim_rate`, `library`, `serial`, `reconnect`,
//! `expect_data_within`, `on_silence`) work beside them.

use super::picoscope::{self, pico_keys};
use super::usb;
use super::{bad, not_one_of, DeviceImporter, ON_SILENCE, RECONNECT, SEED, SIMULATE};
use crate::worker::WiringError;
use crate::worker::{BuildContext, FunctionSpec, Key, MaybeKey, Template, WorkerError};
use crate::{key, keys};
use serde_json::{json, Map, Value};

/// The declaration.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "importers.picoscope.source",
    Template::Importer,
    "mimoCoRB2's PicoScope 3000A importer with its own keys, run by device.picoscope (family \
     ps3000a, rapid block): events in mV (float32, the analogue offset not subtracted) as \
     mimoCoRB2 gives them; sink fields chA.. for the first N channels.",
    &[
        CHANNEL_COUPLING.spec(),
        CHANNEL_RANGE.spec(),
        RANGES[0].spec(),
        RANGES[1].spec(),
        RANGES[2].spec(),
        RANGES[3].spec(),
        ANALOGUE_OFFSET.spec(),
        OFFSETS[0].spec(),
        OFFSETS[1].spec(),
        OFFSETS[2].spec(),
        OFFSETS[3].spec(),
        TRIGGER_CHANNEL.spec(),
        TRIGGER_THRESHOLD.spec(),
        TRIGGER_DIRECTION.spec(),
        PRE_TRIGGER_SAMPLES.spec(),
        POST_TRIGGER_SAMPLES.spec(),
        TIMEBASE.spec(),
        SEGMENTS.spec(),
        pico_keys::LIBRARY.spec(),
        pico_keys::SERIAL.spec(),
        SIMULATE.spec(),
        pico_keys::SIM_RATE.spec(),
        SEED.spec(),
        RECONNECT.spec(),
        usb::SCOPE_EXPECT_DATA.spec(),
        ON_SILENCE.spec(),
    ],
);

keys! {
    const CHANNEL_COUPLING: Key<str> = ("channel_coupling", required, "DC or AC");
    const CHANNEL_RANGE: MaybeKey<str> = ("channel_range", absent: "per channel", "± full scale of every channel, Pico's name: 10MV, 20MV, 50MV, 100MV, 200MV, 500MV, 1V, 2V, 5V, 10V, 20V");
    const ANALOGUE_OFFSET: MaybeKey<f64> = ("analogue_offset", absent: "per channel", "volts added to every input before digitising (V)");
    const TRIGGER_CHANNEL: Key<str> = ("trigger_channel", required, "A..D (one not enabled means A, as in mimoCoRB2)");
    const TRIGGER_THRESHOLD: Key<f64> = ("trigger_threshold", required, "trigger level (mV) of the digitised input + offset");
    const TRIGGER_DIRECTION: Key<str> = ("trigger_direction", "RISING", "RISING, FALLING, ABOVE, BELOW or RISING_OR_FALLING");
    const PRE_TRIGGER_SAMPLES: Key<u32> = ("pre_trigger_samples", required, "samples before the trigger");
    const POST_TRIGGER_SAMPLES: Key<u32> = ("post_trigger_samples", required, "samples from the trigger on");
    const TIMEBASE: Key<u32> = ("timebase", required, "Pico's timebase index (3000A D models: 2^n ns for n ≤ 2, then (n − 2) × 8 ns)");
    const SEGMENTS: Key<u32> = ("number_of_memory_segments", required, "captures per RunBlock (memory segments)");
}

/// Without `channel_range`: channel A's, B's, C's and D's range.
#[rustfmt::skip]
const RANGES: [Key<str>; 4] = [
    key!("channelA_range", "20V", "without channel_range: channel A's"),
    key!("channelB_range", "20V", "without channel_range: channel B's"),
    key!("channelC_range", "20V", "without channel_range: channel C's"),
    key!("channelD_range", "20V", "without channel_range: channel D's"),
];
/// Without `analogue_offset`: channel A's, B's, C's and D's offset.
#[rustfmt::skip]
const OFFSETS: [Key<f64>; 4] = [
    key!("analogue_offset_chA", 0.0, "without analogue_offset: A's (V)"),
    key!("analogue_offset_chB", 0.0, "without analogue_offset: B's (V)"),
    key!("analogue_offset_chC", 0.0, "without analogue_offset: C's (V)"),
    key!("analogue_offset_chD", 0.0, "without analogue_offset: D's (V)"),
];

/// mimoCoRB2's auto trigger: it asks for `2**16` ms, but `ps3000aSetSimpleTrigger` takes
/// an `int16_t` and ctypes wraps it to 0: wait for a trigger for ever.
const AUTO_TRIGGER_MS: u64 = (1u64 << 16) as u16 as u64;

/// A Pico range name (`PS3000A_` left out) in volts.
fn range_volts(name: &str) -> Option<f64> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("PS3000A_").unwrap_or(&n);
    let (num, scale) = match n.strip_suffix("MV") {
        Some(mv) => (mv, 1e-3),
        None => (n.strip_suffix('V')?, 1.0),
    };
    let v = num.parse::<f64>().ok()? * scale;
    [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0,
    ]
    .into_iter()
    .find(|r| (r - v).abs() < 1e-9)
}

/// `device.picoscope`'s config for this mimoCoRB2 config and sink.
pub fn translate(ctx: &BuildContext) -> Result<Map<String, Value>, WorkerError> {
    let cfg = &ctx.config;
    let sink = ctx.sinks.first().ok_or_else(|| WiringError::Count {
        worker: ctx.worker.clone(),
        want: "one sink buffer",
        has: 0,
    })?;
    let n = sink.dtype.fields().len();
    if !(1..=4).contains(&n) {
        return Err(WorkerError::Other(format!(
            "worker '{}': sink '{}' has {n} fields; mimoCoRB2's PicoScope importer captures one \
             channel per field, A..D in order (1 to 4)",
            ctx.worker, sink.name
        )));
    }
    let letters = &["A", "B", "C", "D"][..n];
    let coupling = match cfg.get(CHANNEL_COUPLING)?.to_ascii_uppercase().as_str() {
        "DC" => "dc",
        "AC" => "ac",
        other => return Err(not_one_of(cfg, CHANNEL_COUPLING.name, other, "DC or AC")),
    };
    let range = |key: &str, name: &str| {
        range_volts(name).ok_or_else(|| {
            bad(
                cfg,
                key,
                format!("'{name}' is not a PicoScope 3000A range: 10MV, 20MV, 50MV, 100MV, 200MV, 500MV, 1V, 2V, 5V, 10V, 20V"),
            )
        })
    };
    let ranges: Vec<f64> = match cfg.get(CHANNEL_RANGE)? {
        Some(name) => vec![range(CHANNEL_RANGE.name, name)?; n],
        None => RANGES[..n]
            .iter()
            .map(|k| range(k.name, cfg.get(*k)?))
            .collect::<Result<_, WorkerError>>()?,
    };
    let offset = match cfg.get(ANALOGUE_OFFSET)? {
        Some(v) => v,
        None => {
            let each: Vec<f64> = OFFSETS[..n]
                .iter()
                .map(|k| cfg.get(*k))
                .collect::<Result<_, _>>()?;
            if each.iter().any(|v| *v != each[0]) {
                return Err(bad(
                    cfg,
                    OFFSETS[0].name,
                    format!(
                        "the channels' offsets differ ({each:?} V); daq-engine's PicoScope driver \
                         takes one for all: give analogue_offset"
                    ),
                ));
            }
            each[0]
        }
    };
    let threshold_mv = cfg.get(TRIGGER_THRESHOLD)?;
    let trigger = cfg.get(TRIGGER_CHANNEL)?.to_ascii_uppercase();
    let trigger = match trigger.as_str() {
        "EXT" => {
            return Err(bad(
                cfg,
                TRIGGER_CHANNEL.name,
                "EXT: the external trigger input is not supported by daq-engine's PicoScope \
                 driver; trigger on a channel",
            ))
        }
        t if letters.contains(&t) => t.to_string(),
        // mimoCoRB2: a channel that is not captured means A.
        _ => "A".to_string(),
    };
    let direction = cfg.get(TRIGGER_DIRECTION)?.to_ascii_lowercase();
    let direction = direction.strip_prefix("ps3000a_").unwrap_or(&direction);
    let pre = cfg.get(PRE_TRIGGER_SAMPLES)?;
    let post = cfg.get(POST_TRIGGER_SAMPLES)?;
    if (pre + post) as usize != sink.data_length {
        return Err(bad(
            cfg,
            PRE_TRIGGER_SAMPLES.name,
            format!(
                "pre_trigger_samples + post_trigger_samples = {} must equal sink '{}''s \
                 data_length {} (mimoCoRB2 refuses it too)",
                pre + post,
                sink.name,
                sink.data_length
            ),
        ));
    }
    let mut out: Map<String, Value> = [
        ("family", json!("ps3000a")),
        ("channels", json!(letters)),
        ("ranges", json!(ranges)),
        ("coupling", json!(coupling)),
        ("analog_offset", json!(offset)),
        ("mode", json!("rapid_block")),
        ("pre_trigger", json!(pre)),
        ("post_trigger", json!(post)),
        ("captures_per_run", json!(cfg.get(SEGMENTS)?)),
        ("timebase", json!(cfg.get(TIMEBASE)?)),
        ("trigger_channel", json!(trigger)),
        // mimoCoRB2 compares the threshold with the digitised input + offset; the driver
        // takes the level at the input.
        ("trigger_level", json!(threshold_mv / 1000.0 - offset)),
        ("trigger_direction", json!(direction)),
        ("auto_trigger_ms", json!(AUTO_TRIGGER_MS)),
        ("format", json!("millivolts")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Our own keys, as given.
    for k in [
        pico_keys::LIBRARY.name,
        pico_keys::SERIAL.name,
        SIMULATE.name,
        pico_keys::SIM_RATE.name,
        SEED.name,
        RECONNECT.name,
        usb::SCOPE_EXPECT_DATA.name,
        ON_SILENCE.name,
    ] {
        if let Some(v) = cfg.values.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    Ok(out)
}

fn translated(ctx: &BuildContext) -> Result<BuildContext, WorkerError> {
    let mut c = ctx.clone();
    c.config.values = translate(ctx)?;
    Ok(c)
}

/// Checks the config as the build does, opening nothing.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    picoscope::check(&translated(ctx)?)
}

/// Builds it: `device.picoscope` with the translated config.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    picoscope::build(&translated(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_names_are_pico_s() {
        assert_eq!(range_volts("500MV"), Some(0.5));
        assert_eq!(range_volts("PS3000A_20V"), Some(20.0));
        assert_eq!(range_volts("10mv"), Some(0.01));
        assert_eq!(range_volts("3V"), None);
        assert_eq!(range_volts("V"), None);
        assert_eq!(range_volts(""), None);
    }
}
