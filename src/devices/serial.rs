//! The serial detectors as Importer functions: GQ GMC counters, MightyOhm, GC10,
//! Arduino-style line counters and CosmicWatch.
//!
//! Guarantees: each config key maps onto one field of the driver's config struct; with
//! `simulate: true` the family's simulator runs on a pseudo-terminal and the driver opens its
//! slave path through `serialport`, exactly as it would open `/dev/ttyUSB0`. Must never: open
//! a real port when simulating, or guess a port when none is configured.

use super::plug::{unplug_window, PlugPuller, UNPLUG_AT_KEY, UNPLUG_FOR_KEY};
use super::{
    expect_data_key, key, open_error, sim_error, DeviceImporter, ON_SILENCE_KEY, RECONNECT_KEY,
    SEED_KEY, SIMULATE_KEY,
};
use crate::worker::{Arity, BuildContext, ConfigKey, FunctionSpec, KeyType, Template, WorkerError};
use daq_drivers::cosmicwatch::{
    self, CosmicWatchConfig, CosmicWatchSimConfig, CosmicWatchVersion, SimVersion, V3Columns,
};
use daq_drivers::gmc::{self, CountWidth, GmcConfig, GmcMode, GmcModel, GmcSimConfig};
use daq_drivers::linecounter::{
    self, GrammarField, LineCounterConfig, LineFormat, LineGrammar, LineSimConfig, Separator,
    SimFormat,
};
use daq_drivers::serial::{Backoff, SimulatorHandle};
use std::any::Any;
use std::path::PathBuf;
use std::time::Duration;

const PORT_KEY: ConfigKey = key(
    "port",
    KeyType::Str,
    "none (required unless simulate)",
    "serial port path, e.g. /dev/daq/geiger-0 (udev symlink) or /dev/ttyUSB0",
);
const SIM_SECOND_KEY: ConfigKey = key(
    "sim_second",
    KeyType::Float,
    "1.0",
    "simulator only: host seconds per device second (0.1 runs the device 10x faster)",
);
const BACKOFF_KEY: ConfigKey = key(
    "reconnect_backoff_max",
    KeyType::Float,
    "2.0",
    "longest wait between re-open attempts after an unplug (s); starts at 0.05 s, doubling",
);

/// `device.gmc`.
pub const GMC_SPEC: FunctionSpec = FunctionSpec {
    name: "device.gmc",
    template: Template::Importer,
    summary: "GQ Electronics GMC Geiger counter (GMC-300/320/500+/600+/800): connect sequence, \
              model detection, heartbeat counts per second (sink field cps: uint32) or polled \
              CPM (cpm: uint32), data_length 1. Serial number, voltage and clock go into the \
              run's device notes.",
    sources: Arity::NONE,
    sinks: Arity::ONE,
    observes: Arity::NONE,
    keys: &[
        PORT_KEY,
        key("baud", KeyType::Int, "0", "baud rate; 0 = probe 115200 then 57600 with <GETVER>>"),
        key("mode", KeyType::Str, "heartbeat", "heartbeat (one cps event per second) or poll_cpm (one cpm event per poll_interval)"),
        key("poll_interval", KeyType::Float, "60.0", "poll_cpm: time between <GETCPM>> requests (s)"),
        key("count_width", KeyType::Int, "0", "reply width override in bytes (2 or 4) for firmware that differs from its model; 0 = by model"),
        key("reply_timeout", KeyType::Float, "0.5", "how long to wait for a reply to a command (s)"),
        SIMULATE_KEY,
        key("sim_model", KeyType::Str, "gmc320", "simulator only: gmc300v3, gmc300v4, gmc320, gmc500plus, gmc600plus or gmc800"),
        key("sim_rate", KeyType::Float, "0.5", "simulator only: mean counts per device second (Poisson)"),
        SIM_SECOND_KEY,
        SEED_KEY,
        UNPLUG_AT_KEY,
        UNPLUG_FOR_KEY,
        RECONNECT_KEY,
        BACKOFF_KEY,
        expect_data_key("10 (poll_cpm: 3 × poll_interval)"),
        ON_SILENCE_KEY,
    ],
};

/// Default `expect_data_within` of the counters that print a line a second (s).
const LINE_A_SECOND_SILENCE: f64 = 10.0;

const LINE_KEYS_SIM: [ConfigKey; 7] = [
    PORT_KEY,
    key(
        "baud",
        KeyType::Int,
        "9600",
        "baud rate (MightyOhm and GC10: 9600; GC10next: 115200)",
    ),
    SIMULATE_KEY,
    key(
        "sim_rate",
        KeyType::Float,
        "0.5",
        "simulator only: mean counts per device second (Poisson)",
    ),
    SIM_SECOND_KEY,
    SEED_KEY,
    RECONNECT_KEY,
];

/// `device.mightyohm`.
pub const MIGHTYOHM_SPEC: FunctionSpec = FunctionSpec {
    name: "device.mightyohm",
    template: Template::Importer,
    summary: "MightyOhm Geiger kit (one line per second, 9600 baud): sink fields cps: uint32, \
              cpm: uint32, usv_per_hr: float32, mode: uint8 (0 slow, 1 fast, 2 inst), \
              data_length 1.",
    sources: Arity::NONE,
    sinks: Arity::ONE,
    observes: Arity::NONE,
    keys: &[
        LINE_KEYS_SIM[0],
        LINE_KEYS_SIM[1],
        LINE_KEYS_SIM[2],
        LINE_KEYS_SIM[3],
        LINE_KEYS_SIM[4],
        LINE_KEYS_SIM[5],
        LINE_KEYS_SIM[6],
        BACKOFF_KEY,
        UNPLUG_AT_KEY,
        UNPLUG_FOR_KEY,
        expect_data_key("10"),
        ON_SILENCE_KEY,
    ],
};

/// `device.gc10`.
pub const GC10_SPEC: FunctionSpec = FunctionSpec {
    name: "device.gc10",
    template: Template::Importer,
    summary: "NetIO GC10-style counter (one CPM line per second): sink field cpm: uint32, \
              data_length 1.",
    sources: Arity::NONE,
    sinks: Arity::ONE,
    observes: Arity::NONE,
    keys: MIGHTYOHM_SPEC.keys,
};

/// `device.line_counter`.
pub const LINE_COUNTER_SPEC: FunctionSpec = FunctionSpec {
    name: "device.line_counter",
    template: Template::Importer,
    summary: "Arduino-style counter printing one line per pulse or per interval, described by a \
              grammar. Sink fields, in grammar order: counts: uint32 (counts), pulse: uint64 \
              (pulse), device_time: float64 (time_s/time_ms/time_us, in seconds); data_length 1.",
    sources: Arity::NONE,
    sinks: Arity::ONE,
    observes: Arity::NONE,
    keys: &[
        LINE_KEYS_SIM[0],
        LINE_KEYS_SIM[1],
        key("fields", KeyType::List, "[time_us]", "the line's fields in order: counts, pulse, time_s, time_ms, time_us (device time, converted to s) or skip"),
        key("separator", KeyType::Str, "whitespace", "field separator: whitespace (runs of spaces/tabs) or one character such as ',' or ';'"),
        key("comment", KeyType::Str, "#", "lines starting with this are ignored; empty = none"),
        LINE_KEYS_SIM[2],
        LINE_KEYS_SIM[3],
        LINE_KEYS_SIM[4],
        LINE_KEYS_SIM[5],
        LINE_KEYS_SIM[6],
        BACKOFF_KEY,
        UNPLUG_AT_KEY,
        UNPLUG_FOR_KEY,
        expect_data_key("120"),
        ON_SILENCE_KEY,
    ],
};

/// Default `expect_data_within` of `device.line_counter` (s): a line per pulse can be sparse.
const LINE_COUNTER_SILENCE: f64 = 120.0;

/// Default `expect_data_within` of `device.cosmicwatch` (s): muons come at ~1/s.
const COSMICWATCH_SILENCE: f64 = 60.0;

/// `device.cosmicwatch`.
pub const COSMICWATCH_SPEC: FunctionSpec = FunctionSpec {
    name: "device.cosmicwatch",
    template: Template::Importer,
    summary: "CosmicWatch desktop muon detector, every field of each event line into a feature \
              buffer (data_length 1). v2: event: uint64, time_ms: uint64, adc: uint16, \
              sipm_mv: float32, deadtime_ms: uint64, temp_c: float32. v3x: event: uint64, \
              time_s: float64, flag: uint8, adc: uint16, sipm_mv: float32, deadtime_s: float64, \
              then temp_c, pressure_pa (environment) and accel_x/y/z, gyro_x/y/z (motion), all \
              float32. The detector's own time and cumulative dead time stay in their fields.",
    sources: Arity::NONE,
    sinks: Arity::ONE,
    observes: Arity::NONE,
    keys: &[
        PORT_KEY,
        key(
            "version",
            KeyType::Str,
            "v2",
            "detector version: v2 (Arduino Nano, space-separated) or v3x (RP2040, tab-separated)",
        ),
        key(
            "baud",
            KeyType::Int,
            "0",
            "baud rate; 0 = 9600 for v2, 115200 for v3x (ignored by USB CDC)",
        ),
        key(
            "environment",
            KeyType::Bool,
            "false",
            "v3x: the BMP280 columns Temp[C] and Press[Pa] are printed",
        ),
        key(
            "motion",
            KeyType::Bool,
            "false",
            "v3x: the MPU-6050 accelerometer and gyroscope columns are printed",
        ),
        key(
            "name_column",
            KeyType::Bool,
            "false",
            "v3x: the detector name is printed as the last column",
        ),
        SIMULATE_KEY,
        key(
            "sim_rate",
            KeyType::Float,
            "1.0",
            "simulator only: mean events per device second",
        ),
        key(
            "sim_coincidence",
            KeyType::Float,
            "0.0",
            "simulator only (v3x): probability that an event is flagged coincident",
        ),
        SIM_SECOND_KEY,
        SEED_KEY,
        UNPLUG_AT_KEY,
        UNPLUG_FOR_KEY,
        RECONNECT_KEY,
        BACKOFF_KEY,
        expect_data_key("60"),
        ON_SILENCE_KEY,
    ],
};

/// Settings every serial importer reads.
struct Common {
    simulate: bool,
    port: Option<PathBuf>,
    sim_second: Duration,
    seed: u64,
    backoff: Backoff,
    /// Simulated unplug: (after, for).
    unplug: Option<(Duration, Duration)>,
}

fn common(ctx: &BuildContext) -> Result<Common, WorkerError> {
    let c = &ctx.config;
    let simulate = c.bool_or("simulate", false)?;
    let port = match c.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(PathBuf::from(c.str_or("port", "")?)),
    };
    if port.is_none() && !simulate {
        return Err(c
            .error(
                "port",
                "is required: the serial port of the detector (e.g. /dev/daq/geiger-0 with the \
                 udev rules installed, or /dev/ttyUSB0); `daq-engine devices` lists them; or \
                 run with --simulate to try the setup without hardware",
            )
            .into());
    }
    let second = c.f64_or("sim_second", 1.0)?;
    if !(second.is_finite() && (1e-4..=60.0).contains(&second)) {
        return Err(c
            .error("sim_second", "must be between 0.0001 and 60 (s)")
            .into());
    }
    let max = c.f64_or("reconnect_backoff_max", 2.0)?;
    if !(max.is_finite() && (0.05..=600.0).contains(&max)) {
        return Err(c
            .error("reconnect_backoff_max", "must be between 0.05 and 600 (s)")
            .into());
    }
    Ok(Common {
        unplug: unplug_window(c)?,
        simulate,
        port,
        sim_second: Duration::from_secs_f64(second),
        seed: c.i64_or("seed", 1)? as u64,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs_f64(max),
        },
    })
}

fn rate(ctx: &BuildContext, name: &str, default: f64) -> Result<f64, WorkerError> {
    let v = ctx.config.f64_or(name, default)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(ctx.config.error(name, "must be a number ≥ 0").into());
    }
    Ok(v)
}

fn baud(ctx: &BuildContext, default: u32) -> Result<Option<u32>, WorkerError> {
    let b = ctx.config.usize_or("baud", default as usize)?;
    if b == 0 {
        return Ok(None);
    }
    if !(300..=4_000_000).contains(&b) {
        return Err(ctx
            .config
            .error("baud", "must be 0 (automatic) or a baud rate 300 … 4000000")
            .into());
    }
    Ok(Some(b as u32))
}

/// Path to open: the simulator's stable link, or the configured port.
fn path_of(
    c: &Common,
    sim: Option<(SimulatorHandle, PathBuf)>,
    keep: &mut Vec<Box<dyn Any + Send>>,
) -> PathBuf {
    match sim {
        Some((handle, path)) => {
            match c.unplug {
                Some((at, gone)) => keep.push(Box::new(PlugPuller::start(handle, at, gone))),
                None => keep.push(Box::new(handle)),
            }
            path
        }
        None => c.port.clone().unwrap_or_default(),
    }
}

/// Checks a serial importer's common settings as its build does, opening nothing; unless
/// simulated, the configured port must exist.
fn check_common(ctx: &BuildContext) -> Result<(), WorkerError> {
    let c = common(ctx)?;
    super::check_silence(ctx)?;
    if let (false, Some(port)) = (c.simulate, &c.port) {
        // Follows links: a udev link whose device is unplugged does not count.
        if let Err(e) = std::fs::metadata(port) {
            return Err(ctx
                .config
                .error(
                    "port",
                    format!(
                        "{}: no such serial port ({e}): is the detector plugged in? \
                         `daq-engine devices` lists the connected ones; --simulate runs the \
                         setup without it",
                        port.display()
                    ),
                )
                .into());
        }
    }
    Ok(())
}

/// Checks the config of `device.gmc` as [`build_gmc`] does, opening nothing.
pub fn check_gmc(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx)?;
    gmc_settings(ctx)?;
    baud(ctx, 0).map(drop)
}

/// Checks the config of `device.mightyohm` and `device.gc10`, opening nothing.
pub fn check_line(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx)?;
    baud(ctx, 9600).map(drop)
}

/// Checks the config of `device.line_counter`, opening nothing.
pub fn check_line_counter(ctx: &BuildContext) -> Result<(), WorkerError> {
    grammar(ctx)?;
    check_line(ctx)
}

/// Checks the config of `device.cosmicwatch` as [`build_cosmicwatch`] does, opening nothing.
pub fn check_cosmicwatch(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx)?;
    cosmicwatch_version(ctx)?;
    baud(ctx, 0).map(drop)
}

/// The GMC's mode, count width and reply timeout (s).
fn gmc_settings(ctx: &BuildContext) -> Result<(GmcMode, Option<CountWidth>, f64), WorkerError> {
    let cfg = &ctx.config;
    let mode = match cfg.str_or("mode", "heartbeat")? {
        "heartbeat" => GmcMode::Heartbeat,
        "poll_cpm" => {
            let s = cfg.f64_or("poll_interval", 60.0)?;
            if !(s.is_finite() && (0.01..=86400.0).contains(&s)) {
                return Err(cfg
                    .error("poll_interval", "must be 0.01 … 86400 (s)")
                    .into());
            }
            GmcMode::PollCpm {
                interval: Duration::from_secs_f64(s),
            }
        }
        other => {
            return Err(cfg
                .error(
                    "mode",
                    format!("'{other}' is not a mode: heartbeat or poll_cpm"),
                )
                .into())
        }
    };
    let width = match cfg.usize_or("count_width", 0)? {
        0 => None,
        2 => Some(CountWidth::Two),
        4 => Some(CountWidth::Four),
        _ => {
            return Err(cfg
                .error("count_width", "must be 0 (by model), 2 or 4")
                .into())
        }
    };
    let reply = cfg.f64_or("reply_timeout", 0.5)?;
    if !(reply.is_finite() && (0.01..=10.0).contains(&reply)) {
        return Err(cfg.error("reply_timeout", "must be 0.01 … 10 (s)").into());
    }
    Ok((mode, width, reply))
}

/// Builds `device.gmc`.
pub fn build_gmc(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (mode, width, reply) = gmc_settings(ctx)?;
    // A counter polled every minute is silent between polls: wait three polls.
    let silent_after = match mode {
        GmcMode::PollCpm { interval } => LINE_A_SECOND_SILENCE.max(3.0 * interval.as_secs_f64()),
        _ => LINE_A_SECOND_SILENCE,
    };
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let model = match cfg.str_or("sim_model", "gmc320")? {
            "gmc300v3" => GmcModel::Gmc300V3,
            "gmc300v4" => GmcModel::Gmc300V4,
            "gmc320" => GmcModel::Gmc320,
            "gmc500plus" => GmcModel::Gmc500Plus,
            "gmc600plus" => GmcModel::Gmc600Plus,
            "gmc800" => GmcModel::Gmc800,
            other => {
                return Err(cfg
                    .error(
                        "sim_model",
                        format!("'{other}': choose gmc300v3, gmc300v4, gmc320, gmc500plus, gmc600plus or gmc800"),
                    )
                    .into())
            }
        };
        Some(
            gmc::simulate(GmcSimConfig {
                model,
                cps: rate(ctx, "sim_rate", 0.5)?,
                seed: c.seed,
                second: c.sim_second,
                width,
                ..GmcSimConfig::default()
            })
            .map_err(|e| sim_error("device.gmc", e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let source = gmc::open(GmcConfig {
        path,
        baud: baud(ctx, 0)?,
        mode,
        width,
        reply_timeout: Duration::from_secs_f64(reply),
        backoff: c.backoff,
        ..GmcConfig::default()
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        "device.gmc",
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        silent_after,
    )
}

fn build_line(
    ctx: &BuildContext,
    function: &'static str,
    format: LineFormat,
) -> Result<DeviceImporter, WorkerError> {
    let c = common(ctx)?;
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let sim_format = match &format {
            LineFormat::MightyOhm => SimFormat::MightyOhm,
            LineFormat::Gc10 => SimFormat::Gc10,
            LineFormat::Grammar(g) => SimFormat::Grammar(g.clone()),
        };
        Some(
            linecounter::simulate(LineSimConfig {
                format: sim_format,
                cps: rate(ctx, "sim_rate", 0.5)?,
                seed: c.seed,
                second: c.sim_second,
            })
            .map_err(|e| sim_error(function, e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let silent_after = match &format {
        LineFormat::Grammar(_) => LINE_COUNTER_SILENCE,
        LineFormat::MightyOhm | LineFormat::Gc10 => LINE_A_SECOND_SILENCE,
    };
    let source = linecounter::open(LineCounterConfig {
        path,
        baud: baud(ctx, 9600)?.unwrap_or(9600),
        format,
        backoff: c.backoff,
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        function,
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        silent_after,
    )
}

/// Builds `device.mightyohm`.
pub fn build_mightyohm(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    build_line(ctx, "device.mightyohm", LineFormat::MightyOhm)
}

/// Builds `device.gc10`.
pub fn build_gc10(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    build_line(ctx, "device.gc10", LineFormat::Gc10)
}

/// The grammar `fields`, `separator` and `comment` describe.
pub fn grammar(ctx: &BuildContext) -> Result<LineGrammar, WorkerError> {
    let cfg = &ctx.config;
    let names = cfg
        .str_list("fields")?
        .unwrap_or_else(|| vec!["time_us".to_string()]);
    let mut fields = Vec::with_capacity(names.len());
    for n in &names {
        fields.push(match n.as_str() {
            "counts" => GrammarField::Counts,
            "pulse" => GrammarField::Pulse,
            "time_s" => GrammarField::TimeS,
            "time_ms" => GrammarField::TimeMs,
            "time_us" => GrammarField::TimeUs,
            "skip" => GrammarField::Skip,
            other => {
                return Err(cfg
                    .error(
                        "fields",
                        format!(
                        "'{other}' is not a field: counts, pulse, time_s, time_ms, time_us or skip"
                    ),
                    )
                    .into())
            }
        });
    }
    let separator = match cfg.str_or("separator", "whitespace")? {
        "whitespace" => Separator::Whitespace,
        s if s.len() == 1 && s.is_ascii() => Separator::Byte(s.as_bytes()[0]),
        "\\t" | "tab" => Separator::Byte(b'\t'),
        other => {
            return Err(cfg
                .error(
                    "separator",
                    format!("'{other}': whitespace, tab or one ASCII character such as ','"),
                )
                .into())
        }
    };
    let g = LineGrammar {
        separator,
        fields,
        comment: cfg.str_or("comment", "#")?.to_string(),
    };
    g.validate().map_err(|p| cfg.error("fields", p))?;
    Ok(g)
}

/// Builds `device.line_counter`.
pub fn build_line_counter(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let g = grammar(ctx)?;
    build_line(ctx, "device.line_counter", LineFormat::Grammar(g))
}

/// The CosmicWatch version (with its columns), as the driver and the simulator name it.
fn cosmicwatch_version(
    ctx: &BuildContext,
) -> Result<(CosmicWatchVersion, SimVersion), WorkerError> {
    let cfg = &ctx.config;
    let cols = V3Columns {
        environment: cfg.bool_or("environment", false)?,
        motion: cfg.bool_or("motion", false)?,
        name: cfg.bool_or("name_column", false)?,
    };
    Ok(match cfg.str_or("version", "v2")? {
        "v2" => (CosmicWatchVersion::V2, SimVersion::V2),
        "v3x" | "v3X" => (CosmicWatchVersion::V3X(cols), SimVersion::V3X(cols)),
        other => return Err(cfg.error("version", format!("'{other}': v2 or v3x")).into()),
    })
}

/// Builds `device.cosmicwatch`.
pub fn build_cosmicwatch(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (version, sim_version) = cosmicwatch_version(ctx)?;
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let coincidence = cfg.f64_or("sim_coincidence", 0.0)?;
        if !(0.0..=1.0).contains(&coincidence) {
            return Err(cfg.error("sim_coincidence", "must be 0 … 1").into());
        }
        Some(
            cosmicwatch::simulate(CosmicWatchSimConfig {
                version: sim_version,
                rate: rate(ctx, "sim_rate", 1.0)?,
                coincidence,
                seed: c.seed,
                second: c.sim_second,
                ..CosmicWatchSimConfig::default()
            })
            .map_err(|e| sim_error("device.cosmicwatch", e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let source = cosmicwatch::open(CosmicWatchConfig {
        path,
        version,
        baud: baud(ctx, 0)?,
        backoff: c.backoff,
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        "device.cosmicwatch",
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        COSMICWATCH_SILENCE,
    )
}
