//! The Red Pitaya as an Importer function, `device.redpitaya` (and mimoCoRB2's
//! `importers.redpitaya.waveform`, whose config keys are accepted under their own names):
//! oscilloscope traces `{IN1: int16, IN2: int16}` or the board's hardware histograms,
//! over the MCPHA server's TCP protocol (`transport: mcpha`), or traces over the board's
//! official SCPI server (`transport: scpi`).
//!
//! Guarantees: every key maps onto [`McphaConfig`] or [`ScpiConfig`] and is checked before
//! anything is opened (keys only the MCPHA server uses are refused with `transport: scpi`,
//! not ignored); with `simulate: true` a simulated board ([`SimMcpha`] or [`SimScpi`])
//! listens on a loopback port and the very same driver connects to it over TCP. In traces
//! mode with `hardware_histogram_every`, the board's own spectra are read between two sets
//! of traces (one client at a time is served, so one connection carries both) and written
//! to `hardware_histogram_<worker>.csv` in the run directory, beside the spectrum the setup
//! makes from the traces. Must never: fall back to the simulator when a board was asked for.

use super::plug::{keep_simulated, unplug_window, SimulatedPlug};
use super::usb::{check_scope_keys, scope_importer};
use super::{bad, importer_spec, not_one_of, open_error, pick, DeviceImporter, SEED, SIMULATE};
use crate::worker::{BuildContext, Config, FunctionSpec, Key, KeyValue, MaybeKey, WorkerError};
use daq_drivers::driver::Result;
use daq_drivers::redpitaya::protocol::{Distribution, Input, Slope, TriggerMode, HIST_BINS};
use daq_drivers::redpitaya::scpi::{self, ScpiConfig, ScpiSimConfig, SimScpi};
use daq_drivers::redpitaya::{
    self, GeneratorConfig, Mcpha, McphaConfig, McphaMode, McphaSimConfig, PhaConfig, ScopeConfig,
    SimMcpha, TraceAcquisition,
};
use daq_drivers::{DeviceInfo, EventLayout, ReadOutcome, Source};
use std::path::PathBuf;
use std::time::Duration;

/// `device.redpitaya`'s own keys: the device's (`OWN`), then its simulator's (`SIM`). The
/// `M2_` ones are mimoCoRB2's names for three of ours (`importers.redpitaya.waveform` reads
/// them), accepted in place of ours, never both.
mod rp_keys {
    use crate::keys;
    use crate::worker::{Items, Key, MaybeKey};
    keys! {
        list pub OWN;
        pub const ADDRESS: MaybeKey<str> = ("address", absent: "required unless simulating", "the board: host or host:port (MCPHA port 1001), e.g. rp-f0c38f.local");
        pub const M2_IP: MaybeKey<str> = ("ip", absent: "see address", "mimoCoRB2's name for address");
        pub const TRANSPORT: Key<str> = ("transport", "mcpha", "mcpha (the MCPHA server, port 1001: traces, hardware histograms, generator) or scpi (the board's official SCPI server, port 5000: traces only, polled; decimation a power of two, at most 16384 samples)");
        pub const MODE: Key<str> = ("mode", "traces", "traces (one event per trace) or histogram (one event per readout of the hardware histograms)");
        pub const ACQUISITION: Key<str> = ("acquisition", "stream", "traces: stream (the fork's code 31, set_size traces per request, as mimoCoRB2) or poll (upstream server: arm, poll the status, read)");
        pub const SET_SIZE: Key<i64> = ("set_size", 100, "stream: traces asked for per request");
        pub const POLL_INTERVAL: Key<f64> = ("poll_interval", 0.001, "poll and scpi: seconds between status polls");
        pub const DECIMATION: Key<i64> = ("decimation", 4, "125 MS/s divided by this (1 … 8192; below 4: 125 MS/s)");
        pub const M2_SAMPLE_RATE: MaybeKey<i64> = ("sample_rate", absent: "see decimation", "mimoCoRB2's name for decimation");
        pub const NEGATOR_IN1: Key<bool> = ("negator_IN1", false, "invert IN1 (negative pulses become positive)");
        pub const NEGATOR_IN2: Key<bool> = ("negator_IN2", false, "invert IN2");
        pub const TRIGGER_SOURCE: Key<str> = ("trigger_source", "IN1", "IN1 or IN2");
        pub const TRIGGER_SLOPE: Key<str> = ("trigger_slope", "rising", "rising or falling");
        pub const TRIGGER_MODE: Key<str> = ("trigger_mode", "normal", "normal (only on a crossing) or auto (also at once after the pre-trigger samples)");
        pub const TRIGGER_LEVEL: Key<i64> = ("trigger_level", 100, "trigger level in ADC counts (-8192 … 8191)");
        pub const PRETRIGGER: Key<i64> = ("pretrigger", 100, "samples before the trigger (1 … samples − 1)");
        pub const M2_PRETRIGGER: MaybeKey<i64> = ("number_of_samples_before_trigger", absent: "see pretrigger", "mimoCoRB2's name for pretrigger");
        pub const SAMPLES: MaybeKey<i64> = ("samples", absent: "the sink's data_length", "samples per trace");
        pub const DISCARD_TAIL: Key<i64> = ("discard_tail", 100, "samples requested beyond samples and dropped: the board may leave up to 63 stale samples at a window's end (mimoCoRB2 drops 100)");
        pub const HISTOGRAM_INTERVAL: Key<f64> = ("histogram_interval", 1.0, "histogram mode: seconds between readouts");
        pub const HARDWARE_HISTOGRAM_EVERY: Key<f64> = ("hardware_histogram_every", 0.0, "traces mode: also read the hardware histograms this often (s), between two sets of traces, into hardware_histogram_<worker>.csv; 0 = not");
        pub const PHA_MIN: Key<i64> = ("pha_min", 0, "hardware histogram: lowest pulse height counted (counts)");
        pub const PHA_MAX: Key<i64> = ("pha_max", 4095, "hardware histogram: highest pulse height counted (counts)");
        pub const PHA_DELAY: Key<i64> = ("pha_delay", 100, "hardware histogram: PHA delay (samples, as the MCPHA GUI)");
        pub const TIMER_PRESET: Key<f64> = ("timer_preset", 0.0, "hardware histogram: stop counting after this live time (s); 0 = never");
        pub const RESET_HISTOGRAMS: Key<bool> = ("reset_histograms", true, "hardware histogram: zero the histograms and timers at the start (not after a reconnect)");
        pub const GENERATOR: Key<bool> = ("generator", false, "start the board's pulse generator (OUT1/OUT2; cable them to the inputs to test the chain)");
        pub const GENERATOR_RATE: Key<i64> = ("generator_rate", 1000, "generator: pulses per second");
        pub const GENERATOR_DISTRIBUTION: Key<str> = ("generator_distribution", "poisson", "generator: uniform (fixed interval) or poisson");
        pub const GENERATOR_FALL_TIME: Key<i64> = ("generator_fall_time", 10, "generator: fall time (µs, 0 … 100)");
        pub const GENERATOR_RISE_TIME: Key<i64> = ("generator_rise_time", 50, "generator: rise time (ns, 0 … 100)");
        pub const GENERATOR_LOWER: Key<i64> = ("generator_lower", -8192, "generator: lower output limit (counts)");
        pub const GENERATOR_UPPER: Key<i64> = ("generator_upper", 8191, "generator: upper output limit (counts)");
        pub const GENERATOR_SPECTRUM: MaybeKey<Items> = ("generator_spectrum", absent: "[[1000, 1]]: one height, bin 1000", "generator: pulse heights as [bin, weight] pairs (bins 0 … 4095)");
        pub const GENERATOR_KEEP_PULSING: Key<bool> = ("generator_keep_pulsing", false, "generator: keep pulsing after the run disconnects");
        pub const VOLTS_PER_COUNT: Key<f64> = ("volts_per_count", 0.0001220703125, "volts per ADC count for the run metadata (LV jumpers: 2 V / 16384; HV: 40 V / 16384; the effective full scale after the board's filter is unverified)");
        pub const CONNECT_TIMEOUT: Key<f64> = ("connect_timeout", 3.0, "seconds to wait for the connection and the first status reply");
        pub const STALL_TIMEOUT: Key<f64> = ("stall_timeout", 5.0, "seconds of silence in the middle of a reply before the board counts as gone (mimoCoRB2: 5)");
    }
    keys! {
        list pub SIM;
        pub const SIM_RATE: Key<f64> = ("sim_rate", 1000.0, "simulator only: detector pulses per second");
        pub const SIM_PACED: Key<bool> = ("sim_paced", true, "simulator only: pulses arrive in real time (false: as fast as they are read)");
        pub const SIM_GARBAGE_EVERY: Key<u64> = ("sim_garbage_every", 0, "simulator only: replace every n-th trace by garbage (0 = never), to see the bad records counted");
    }
}
use rp_keys as k;

/// `device.redpitaya`.
pub const SPEC: FunctionSpec = importer_spec!(
    name: "device.redpitaya",
    summary: "Red Pitaya STEMlab 125-14 running the MCPHA server (TCP port 1001): oscilloscope \
              traces (mode traces: sink {IN1: int16, IN2: int16} in ADC counts, data_length = \
              samples; volts per count in the run metadata), streamed with the fork's 'start \
              daq' command as mimoCoRB2 does or polled the upstream way; or the board's own \
              4096-bin pulse-height spectra and live times (mode histogram: sink {IN1: uint32, \
              IN2: uint32, live_IN1: float64, live_IN2: float64}, data_length 4096). Also \
              configures the board's pulse generator. With transport: scpi, the same traces \
              through the board's official SCPI server (port 5000), polled.",
    keys: [k::OWN],
    simulator: [k::SIM],
    then: scope,
);

/// A key of ours or mimoCoRB2's name for it, whichever the config gives (ours, or its
/// default, when neither), with the name read; both given is an error naming them.
fn ours_or_theirs<'c, T: KeyValue + ?Sized>(
    cfg: &'c Config,
    ours: Key<T>,
    theirs: MaybeKey<T>,
) -> Result<(T::Out<'c>, &'static str), WorkerError> {
    match (cfg.given(ours)?, cfg.get(theirs)?) {
        (Some(_), Some(_)) => Err(bad(
            cfg,
            theirs.name,
            format!("is mimoCoRB2's name for '{}': give one of them", ours.name),
        )),
        (None, Some(v)) => Ok((v, theirs.name)),
        (Some(v), None) => Ok((v, ours.name)),
        (None, None) => Ok((cfg.get(ours)?, ours.name)),
    }
}

/// `v`, read from key `name`, if it is in `range` and fits `T`.
fn int_in<T: TryFrom<i64>>(
    cfg: &Config,
    name: &str,
    v: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<T, WorkerError> {
    if !range.contains(&v) {
        return Err(bad(
            cfg,
            name,
            format!("{v} is outside {} … {}", range.start(), range.end()),
        ));
    }
    T::try_from(v).map_err(|_| bad(cfg, name, format!("{v} is out of range")))
}

/// Integer key `key` in `range`.
fn int_key<T: TryFrom<i64>>(
    cfg: &Config,
    key: Key<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<T, WorkerError> {
    int_in(cfg, key.name, cfg.get(key)?, range)
}

/// Time key `key` (s), 0 … `max`.
fn seconds(cfg: &Config, key: Key<f64>, max: f64) -> Result<Duration, WorkerError> {
    let v = cfg.get(key)?;
    if !(v.is_finite() && (0.0..=max).contains(&v)) {
        return Err(bad(cfg, key.name, format!("must be 0 … {max} (s)")));
    }
    Ok(Duration::from_secs_f64(v))
}

fn generator(cfg: &Config) -> Result<Option<GeneratorConfig>, WorkerError> {
    if !cfg.get(k::GENERATOR)? {
        return Ok(None);
    }
    let spectrum = match cfg.get(k::GENERATOR_SPECTRUM)? {
        None => vec![(1000, 1)],
        Some(items) => {
            let pairs = items
                .iter()
                .map(|p| {
                    let p = p.as_array()?;
                    let (b, w) = (p.first()?.as_u64()?, p.get(1)?.as_u64()?);
                    (p.len() == 2 && b < HIST_BINS as u64 && w <= u64::from(u32::MAX))
                        .then_some((b as u16, w as u32))
                })
                .collect::<Option<Vec<_>>>();
            pairs.ok_or_else(|| {
                bad(
                    cfg,
                    k::GENERATOR_SPECTRUM.name,
                    "must be a list of [bin, weight] pairs, bins 0 … 4095, weights ≥ 0",
                )
            })?
        }
    };
    Ok(Some(GeneratorConfig {
        fall_us: int_key(cfg, k::GENERATOR_FALL_TIME, 0..=100)?,
        rise_ns: int_key(cfg, k::GENERATOR_RISE_TIME, 0..=100)?,
        lower: int_key(cfg, k::GENERATOR_LOWER, -32768..=32767)?,
        upper: int_key(cfg, k::GENERATOR_UPPER, -32768..=32767)?,
        rate: int_key(cfg, k::GENERATOR_RATE, 1..=10_000_000)?,
        distribution: pick(
            cfg,
            k::GENERATOR_DISTRIBUTION,
            &[
                ("uniform", Distribution::Uniform),
                ("poisson", Distribution::Poisson),
            ],
        )?,
        spectrum,
        keep_pulsing: cfg.get(k::GENERATOR_KEEP_PULSING)?,
    }))
}

/// The MCPHA configuration of `ctx` (the address left empty when simulating).
pub fn redpitaya_config(ctx: &BuildContext) -> Result<McphaConfig, WorkerError> {
    let cfg = &ctx.config;
    let simulate = cfg.get(SIMULATE)?;
    let address = match (cfg.get(k::ADDRESS)?, cfg.get(k::M2_IP)?) {
        (Some(_), Some(_)) => {
            return Err(bad(
                cfg,
                k::M2_IP.name,
                format!(
                    "is mimoCoRB2's name for '{}': give one of them",
                    k::ADDRESS.name
                ),
            ))
        }
        (Some(a), None) | (None, Some(a)) if !a.is_empty() => a.to_string(),
        _ if simulate => String::new(),
        _ => {
            return Err(bad(
                cfg,
                k::ADDRESS.name,
                "is required: the board's host name or IP address (e.g. rp-f0c38f.local or \
                 192.168.1.100:1001); without a board, run the setup with --simulate",
            ))
        }
    };
    let mode = match cfg.get(k::MODE)? {
        "traces" => McphaMode::Traces(match cfg.get(k::ACQUISITION)? {
            "stream" => TraceAcquisition::Stream {
                set_size: int_key(cfg, k::SET_SIZE, 1..=1_000_000)?,
            },
            "poll" => TraceAcquisition::Poll {
                poll: seconds(cfg, k::POLL_INTERVAL, 10.0)?.max(Duration::from_micros(100)),
            },
            other => {
                return Err(not_one_of(
                    cfg,
                    k::ACQUISITION.name,
                    other,
                    "stream or poll",
                ))
            }
        }),
        "histogram" => McphaMode::Histogram {
            interval: seconds(cfg, k::HISTOGRAM_INTERVAL, 86400.0)?.max(Duration::from_millis(10)),
        },
        other => return Err(not_one_of(cfg, k::MODE.name, other, "traces or histogram")),
    };
    let samples = match (cfg.get(k::SAMPLES)?, mode, ctx.sinks.first()) {
        (Some(n), _, _) => n,
        (None, McphaMode::Traces(_), Some(sink)) => sink.data_length as i64,
        (None, _, _) => 1000,
    };
    let input = |key: Key<str>| -> Result<Input, WorkerError> {
        match cfg.get(key)? {
            "IN1" | "in1" => Ok(Input::In1),
            "IN2" | "in2" => Ok(Input::In2),
            other => Err(not_one_of(cfg, key.name, other, "IN1 or IN2")),
        }
    };
    let pha = PhaConfig {
        delay: int_key(cfg, k::PHA_DELAY, 0..=65535)?,
        min: int_key(cfg, k::PHA_MIN, 0..=16383)?,
        max: int_key(cfg, k::PHA_MAX, 0..=16383)?,
    };
    let every = seconds(cfg, k::HARDWARE_HISTOGRAM_EVERY, 86400.0)?;
    let (decimation, decimation_key) = ours_or_theirs(cfg, k::DECIMATION, k::M2_SAMPLE_RATE)?;
    let (pre, pre_key) = ours_or_theirs(cfg, k::PRETRIGGER, k::M2_PRETRIGGER)?;
    // In the order the keys were always checked: the first bad one is reported.
    let connect_timeout = seconds(cfg, k::CONNECT_TIMEOUT, 600.0)?.max(Duration::from_millis(10));
    let stall_timeout = seconds(cfg, k::STALL_TIMEOUT, 600.0)?.max(Duration::from_millis(10));
    let decimation = int_in(cfg, decimation_key, decimation, 1..=8192)?;
    let c = McphaConfig {
        scope: ScopeConfig {
            address,
            connect_timeout,
            stall_timeout,
            negator: [cfg.get(k::NEGATOR_IN1)?, cfg.get(k::NEGATOR_IN2)?],
            trigger_source: input(k::TRIGGER_SOURCE)?,
            trigger_slope: pick(
                cfg,
                k::TRIGGER_SLOPE,
                &[("rising", Slope::Rising), ("falling", Slope::Falling)],
            )?,
            trigger_mode: pick(
                cfg,
                k::TRIGGER_MODE,
                &[("normal", TriggerMode::Normal), ("auto", TriggerMode::Auto)],
            )?,
            trigger_level: int_key(cfg, k::TRIGGER_LEVEL, -8192..=8191)?,
            pre: int_in(cfg, pre_key, pre, 1..=8_388_606)?,
            samples: int_in(cfg, k::SAMPLES.name, samples, 1..=8_388_607)?,
            volts_per_count: {
                let v = cfg.get(k::VOLTS_PER_COUNT)?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(cfg, k::VOLTS_PER_COUNT.name, "must be > 0"));
                }
                v
            },
            backoff: daq_drivers::serial::Backoff::default(),
        },
        decimation,
        discard_tail: int_key(cfg, k::DISCARD_TAIL, 0..=8_388_606)?,
        mode,
        pha: [pha; 2],
        timer_preset_s: seconds(cfg, k::TIMER_PRESET, 1e7)?.as_secs_f64(),
        reset_histograms: cfg.get(k::RESET_HISTOGRAMS)?,
        histogram_every: (!every.is_zero() && matches!(mode, McphaMode::Traces(_)))
            .then_some(every),
        generator: generator(cfg)?,
    };
    c.validate()
        .map_err(|p| WorkerError::failed(format!("worker '{}': Red Pitaya", cfg.worker), p))?;
    Ok(c)
}

/// Keys only the MCPHA server has a use for: given with `transport: scpi`, they are refused
/// rather than silently ignored.
const MCPHA_ONLY: [&str; 17] = [
    "acquisition",
    "set_size",
    "discard_tail",
    "histogram_interval",
    "hardware_histogram_every",
    "pha_min",
    "pha_max",
    "pha_delay",
    "timer_preset",
    "reset_histograms",
    "generator",
    "generator_rate",
    "generator_distribution",
    "generator_fall_time",
    "generator_rise_time",
    "generator_spectrum",
    "generator_keep_pulsing",
];

/// The board and the transport a config asks for.
pub enum BoardConfig {
    /// The MCPHA server.
    Mcpha(McphaConfig),
    /// The official SCPI server.
    Scpi(ScpiConfig),
}

/// The configuration of `ctx` for its `transport` (the address left empty when simulating).
pub fn board_config(ctx: &BuildContext) -> Result<BoardConfig, WorkerError> {
    let cfg = &ctx.config;
    match cfg.get(k::TRANSPORT)? {
        "mcpha" => return redpitaya_config(ctx).map(BoardConfig::Mcpha),
        "scpi" => {}
        other => return Err(not_one_of(cfg, k::TRANSPORT.name, other, "mcpha or scpi")),
    }
    if let Some(key) = MCPHA_ONLY
        .iter()
        .find(|key| cfg.values.get(**key).is_some_and(|v| !v.is_null()))
    {
        return Err(bad(
            cfg,
            key,
            "is for transport mcpha only: the SCPI server reads polled traces, without hardware \
             histograms or the pulse generator",
        ));
    }
    if cfg.get(k::MODE)? != "traces" {
        return Err(bad(
            cfg,
            k::MODE.name,
            "transport scpi reads traces only: the hardware histograms need transport mcpha",
        ));
    }
    // The scope keys are the MCPHA's: read them the same way, then take what SCPI has.
    let m = redpitaya_config(ctx)?;
    let c = ScpiConfig {
        scope: m.scope,
        decimation: u32::from(m.decimation),
        poll: seconds(cfg, k::POLL_INTERVAL, 10.0)?.max(Duration::from_micros(100)),
    };
    c.validate().map_err(|p| {
        WorkerError::failed(format!("worker '{}': Red Pitaya (scpi)", cfg.worker), p)
    })?;
    Ok(BoardConfig::Scpi(c))
}

fn scpi_sim_config(cfg: &Config, board: &ScpiConfig) -> Result<ScpiSimConfig, WorkerError> {
    // The same checks as the MCPHA simulator's keys.
    let m = sim_config(cfg, &McphaConfig::default())?;
    Ok(ScpiSimConfig {
        seed: m.seed,
        rate: m.rate,
        paced: m.paced,
        negative: board.scope.negator[0],
        garbage_every: m.garbage_every,
        transcript: false,
        ..ScpiSimConfig::default()
    })
}

fn sim_config(cfg: &Config, board: &McphaConfig) -> Result<McphaSimConfig, WorkerError> {
    let rate = cfg.get(k::SIM_RATE)?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e7) {
        return Err(bad(
            cfg,
            k::SIM_RATE.name,
            "must be > 0 … 1e7 (pulses per second)",
        ));
    }
    Ok(McphaSimConfig {
        seed: cfg.get(SEED)? as u64,
        rate,
        paced: cfg.get(k::SIM_PACED)?,
        // The simulated detector's pulses have the polarity the IN1 negator expects.
        negative: board.scope.negator[0],
        garbage_every: cfg.get(k::SIM_GARBAGE_EVERY)?,
        transcript: false,
        ..McphaSimConfig::default()
    })
}

/// Checks the config of `device.redpitaya` as [`build`] does, opening nothing.
pub fn check(ctx: &BuildContext) -> Result<(), WorkerError> {
    let layout = match board_config(ctx)? {
        BoardConfig::Mcpha(c) => {
            sim_config(&ctx.config, &c)?;
            c.layout()
        }
        BoardConfig::Scpi(c) => {
            scpi_sim_config(&ctx.config, &c)?;
            c.layout()
        }
    };
    // The layout follows from the config alone: a sink that does not match is refused
    // before the run, not when the importer starts.
    if let Some(sink) = ctx.sinks.first() {
        super::check_layout(SPEC.name, &ctx.worker, &layout, sink)?;
    }
    check_scope_keys(ctx)
}

/// A simulated server on loopback whose network goes away for a while on `sim_unplug_at`:
/// the connection is reset and nobody is answered, so the driver's reconnects time out.
macro_rules! network_plug {
    ($sim:ty, $what:literal) => {
        impl SimulatedPlug for $sim {
            fn name(&self) -> String {
                format!(concat!("the simulated ", $what, " at {}"), self.addr())
            }
            fn unplug(&mut self) {
                self.vanish();
            }
            fn replug(&mut self) -> Result<(), $crate::devices::plug::ReplugError> {
                self.reappear();
                Ok(())
            }
        }
    };
}
network_plug!(SimMcpha, "Red Pitaya MCPHA server");
network_plug!(SimScpi, "Red Pitaya SCPI server");

/// The driver, and where the hardware histograms read between trace sets go.
struct Board {
    mcpha: Mcpha,
    histogram_csv: Option<PathBuf>,
    worker: String,
}

impl Board {
    /// Writes the histograms the driver read since the last call, if any (once per
    /// `hardware_histogram_every` at most, between trace sets: off the per-event path).
    fn write_histogram(&mut self) {
        let Some(path) = &self.histogram_csv else {
            return;
        };
        let Some((h1, h2, st)) = self.mcpha.take_histogram() else {
            return;
        };
        use std::fmt::Write;
        let mut s = String::with_capacity(HIST_BINS * 16 + 256);
        let _ = writeln!(
            s,
            "# Red Pitaya MCPHA hardware histograms: 4096 bins of 1 ADC count, read at unix {:.3}",
            crate::clock::wall_clock()
        );
        let _ = writeln!(s, "# live_IN1 = {} s", st.seconds(Input::In1));
        let _ = writeln!(s, "# live_IN2 = {} s", st.seconds(Input::In2));
        s.push_str("bin,IN1,IN2\n");
        for (i, (a, b)) in h1.iter().zip(h2.iter()).enumerate() {
            let _ = writeln!(s, "{i},{a},{b}");
        }
        if let Err(e) = crate::worker::write_atomically(path, s.as_bytes()) {
            tracing::warn!("{}: cannot write {}: {e}", self.worker, path.display());
        }
    }
}

impl Source for Board {
    fn described(&self) -> (&DeviceInfo, &EventLayout) {
        self.mcpha.described()
    }
    fn start(&mut self) -> Result<()> {
        self.mcpha.start()
    }
    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome> {
        let r = self.mcpha.read_event(out, timeout);
        self.write_histogram();
        r
    }
    fn stop(&mut self) -> Result<()> {
        self.mcpha.stop()
    }
    fn reconnect(&mut self) -> Result<bool> {
        self.mcpha.reconnect()
    }
    fn run_metadata(&self) -> Vec<(String, String)> {
        self.mcpha.run_metadata()
    }
    fn channel_scales(&self) -> Vec<daq_drivers::ChannelScale> {
        self.mcpha.channel_scales()
    }
}

/// Builds `device.redpitaya`.
pub fn build(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let simulate = cfg.get(SIMULATE)?;
    let mut config = match board_config(ctx)? {
        BoardConfig::Mcpha(c) => c,
        BoardConfig::Scpi(c) => return build_scpi(ctx, c, simulate),
    };
    let mut simulated = None;
    if simulate {
        let sim = SimMcpha::start(sim_config(cfg, &config)?).map_err(|e| {
            WorkerError::failed(
                "device.redpitaya --simulate: cannot start the simulated board on a loopback \
                 port",
                e,
            )
        })?;
        config.scope.address = sim.addr().to_string();
        simulated = Some(keep_simulated(sim, unplug_window(cfg)?));
    }
    let histogram_csv = (config.histogram_every.is_some() && ctx.run_dir.is_dir()).then(|| {
        ctx.run_dir
            .join(format!("hardware_histogram_{}.csv", ctx.worker))
    });
    let mcpha = redpitaya::open(config).map_err(open_error)?;
    // The board is dropped (disconnecting) before `simulated` (the simulator).
    let board = Board {
        mcpha,
        histogram_csv,
        worker: ctx.worker.clone(),
    };
    scope_importer(SPEC.name, ctx, Box::new(board), simulated)
}

/// Builds `device.redpitaya` with `transport: scpi`.
fn build_scpi(
    ctx: &BuildContext,
    mut config: ScpiConfig,
    simulate: bool,
) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let mut simulated = None;
    if simulate {
        let sim = SimScpi::start(scpi_sim_config(cfg, &config)?).map_err(|e| {
            WorkerError::failed(
                "device.redpitaya --simulate: cannot start the simulated SCPI server on a \
                 loopback port",
                e,
            )
        })?;
        config.scope.address = sim.addr().to_string();
        simulated = Some(keep_simulated(sim, unplug_window(cfg)?));
    }
    let board = scpi::open_scpi(config).map_err(open_error)?;
    // The board is dropped (disconnecting) before `simulated` (the simulator).
    scope_importer(SPEC.name, ctx, Box::new(board), simulated)
}

/// The Red Pitaya family: `device.redpitaya`. Network devices are never found by the USB
/// and serial scan: `daq-engine devices --probe HOST` asks the address.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::redpitaya::FAMILY,
    functions: &[super::importer!(SPEC, build, check)],
    suggest: |_| ("device.redpitaya", "setups/redpitaya_spectroscopy.yaml"),
    bench,
};

/// `bench drivers`: MCPHA traces over loopback TCP, beside a plain socket read of the same
/// bytes.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    use super::tools::DriverRate;
    let n_wave = super::tools::wave_events(events);
    let mut rows = Vec::new();
    for samples in [1000u32, 16384] {
        let n = if samples > 4096 {
            n_wave.min(5_000)
        } else {
            n_wave
        };
        match redpitaya::bench::bench_simulated(n, samples) {
            Ok(b) => {
                rows.push(Ok(DriverRate {
                    device: format!(
                        "redpitaya mcpha sim, 2x{samples} i2 (tcp loopback, code 31 sets of 100)"
                    ),
                    event_bytes: b.event_bytes,
                    events: b.events,
                    events_per_s: b.driver_events_per_s(),
                    mb_per_s: b.driver_mb_per_s(),
                    ring_events_per_s: None,
                }));
                rows.push(Ok(DriverRate {
                    device: format!(
                        "  the same bytes by a plain socket read (the limit): driver at {:.0} %",
                        100.0 * b.ratio()
                    ),
                    event_bytes: b.event_bytes,
                    events: b.events,
                    events_per_s: b.raw_events_per_s(),
                    mb_per_s: b.raw_mb_per_s(),
                    ring_events_per_s: None,
                }));
            }
            Err(e) => rows.push(Err(format!("redpitaya mcpha sim, 2x{samples}: {e}"))),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;
    use crate::worker::BufferShape;
    use serde_json::json;

    fn ctx(config: serde_json::Value, data_length: usize) -> BuildContext {
        let sink = BufferShape {
            name: "oscilloscope".into(),
            dtype: Dtype::parse([("IN1", "int16"), ("IN2", "int16")]).unwrap(),
            data_length,
        };
        BuildContext::for_test("rp", config, Vec::new(), vec![sink])
    }

    /// mimoCoRB2's keys land in the same fields as ours; the sink sets the samples.
    #[test]
    fn mimocorb2_keys_map_onto_the_same_fields_as_ours() {
        let theirs = redpitaya_config(&ctx(
            json!({"ip": "10.0.0.7", "sample_rate": 8, "number_of_samples_before_trigger": 50}),
            500,
        ))
        .unwrap();
        let ours = redpitaya_config(&ctx(
            json!({"address": "10.0.0.7", "decimation": 8, "pretrigger": 50}),
            500,
        ))
        .unwrap();
        assert_eq!(theirs, ours);
        assert_eq!(
            (
                ours.scope.address.as_str(),
                ours.decimation,
                ours.scope.pre,
                ours.scope.samples
            ),
            ("10.0.0.7", 8, 50, 500)
        );
        // Defaults where neither name is given.
        let d = redpitaya_config(&ctx(json!({"simulate": true}), 1000)).unwrap();
        assert_eq!(
            (d.decimation, d.scope.pre, d.scope.address.as_str()),
            (4, 100, "")
        );
    }

    /// The keys refused with `transport: scpi` are keys the function declares (a renamed
    /// key would otherwise slip through unrefused).
    #[test]
    fn every_mcpha_only_key_is_a_declared_key() {
        for name in MCPHA_ONLY {
            assert!(SPEC.keys.iter().any(|k| k.name == name), "{name}");
        }
        let e = board_config(&ctx(
            json!({"address": "a", "transport": "scpi", "pha_min": 5}),
            1000,
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("'pha_min': is for transport mcpha only"), "{e}");
        let Ok(BoardConfig::Scpi(c)) = board_config(&ctx(
            json!({"ip": "a", "transport": "scpi", "sample_rate": 8, "negator_IN1": true}),
            2000,
        )) else {
            panic!("not scpi");
        };
        assert_eq!(
            (c.decimation, c.scope.samples, c.scope.negator),
            (8, 2000, [true, false])
        );
    }

    #[test]
    fn both_names_of_one_key_are_refused_naming_them() {
        for (config, says) in [
            (
                json!({"address": "a", "ip": "b"}),
                "config key 'ip': is mimoCoRB2's name for 'address'",
            ),
            (
                json!({"address": "a", "decimation": 4, "sample_rate": 4}),
                "config key 'sample_rate': is mimoCoRB2's name for 'decimation'",
            ),
            (
                json!({"address": "a", "pretrigger": 9, "number_of_samples_before_trigger": 9}),
                "is mimoCoRB2's name for 'pretrigger'",
            ),
            // The range is checked under the name the setup used.
            (
                json!({"address": "a", "sample_rate": 0}),
                "config key 'sample_rate': 0 is outside 1 … 8192",
            ),
        ] {
            let e = redpitaya_config(&ctx(config.clone(), 1000))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{config}: {e}");
        }
    }
}
