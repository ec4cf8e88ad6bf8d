//! The serial detectors as Importer functions: GQ GMC counters, MightyOhm, GC10,
//! Arduino-style line counters and CosmicWatch.
//!
//! Guarantees: each config key maps onto one field of the driver's config struct; with
//! `simulate: true` the family's simulator runs on a pseudo-terminal and the driver opens its
//! slave path through `serialport`, exactly as it would open `/dev/ttyUSB0`. Must never: open
//! a real port when simulating, or guess a port when none is configured.

use super::plug::{unplug_window, PlugPuller, UNPLUG_AT, UNPLUG_FOR};
use super::{
    expect_data_key, open_error, sim_error, DeviceImporter, ON_SILENCE, RECONNECT, SEED, SIMULATE,
};
use crate::key;
use crate::worker::{
    Arity, BuildContext, ConfigKey, FunctionSpec, Key, MaybeKey, Template, WorkerError,
};
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

const PORT: MaybeKey<str> = key!(
    "port",
    absent: "required unless simulate",
    "serial port path, e.g. /dev/daq/geiger-0 (udev symlink) or /dev/ttyUSB0"
);
const SIM_SECOND: Key<f64> = key!(
    "sim_second",
    1.0,
    "simulator only: host seconds per device second (0.1 runs the device 10x faster)"
);
const BACKOFF: Key<f64> = key!(
    "reconnect_backoff_max",
    2.0,
    "longest wait between re-open attempts after an unplug (s); starts at 0.05 s, doubling"
);
/// `sim_rate` of the counters (GMC, line counters).
const SIM_COUNT_RATE: Key<f64> = key!(
    "sim_rate",
    0.5,
    "simulator only: mean counts per device second (Poisson)"
);

/// `device.gmc`'s own keys.
mod gmc_keys {
    use crate::key;
    use crate::worker::Key;
    pub const BAUD: Key<usize> = key!(
        "baud",
        0,
        "baud rate; 0 = probe 115200 then 57600 with <GETVER>>"
    );
    pub const MODE: Key<str> = key!(
        "mode",
        "heartbeat",
        "heartbeat (one cps event per second) or poll_cpm (one cpm event per poll_interval)"
    );
    pub const POLL_INTERVAL: Key<f64> = key!(
        "poll_interval",
        60.0,
        "poll_cpm: time between <GETCPM>> requests (s)"
    );
    pub const COUNT_WIDTH: Key<usize> = key!(
        "count_width",
        0,
        "reply width override in bytes (2 or 4) for firmware that differs from its model; 0 = by model"
    );
    pub const REPLY_TIMEOUT: Key<f64> = key!(
        "reply_timeout",
        0.5,
        "how long to wait for a reply to a command (s)"
    );
    pub const SIM_MODEL: Key<str> = key!(
        "sim_model",
        "gmc320",
        "simulator only: gmc300v3, gmc300v4, gmc320, gmc500plus, gmc600plus or gmc800"
    );
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(
        10.0,
        "; with poll_cpm, 3 × poll_interval when that is longer"
    );
}

/// The line counters' keys (`device.mightyohm`, `device.gc10`, `device.line_counter`).
mod line_keys {
    use crate::key;
    use crate::worker::{Key, Strings};
    pub const BAUD: Key<usize> = key!(
        "baud",
        9600,
        "baud rate (MightyOhm and GC10: 9600; GC10next: 115200)"
    );
    pub const FIELDS: Key<Strings> = key!(
        "fields",
        ["time_us"],
        "the line's fields in order: counts, pulse, time_s, time_ms, time_us (device time, converted to s) or skip"
    );
    pub const SEPARATOR: Key<str> = key!(
        "separator",
        "whitespace",
        "field separator: whitespace (runs of spaces/tabs) or one character such as ',' or ';'"
    );
    pub const COMMENT: Key<str> = key!(
        "comment",
        "#",
        "lines starting with this are ignored; empty = none"
    );
    /// A line a second: silent after 10 s.
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(10.0);
    /// A line per pulse can be sparse.
    pub const COUNTER_EXPECT_DATA: Key<f64> = super::expect_data_key!(120.0);
}

/// `device.cosmicwatch`'s own keys.
mod cosmicwatch_keys {
    use crate::key;
    use crate::worker::Key;
    pub const VERSION: Key<str> = key!(
        "version",
        "v2",
        "detector version: v2 (Arduino Nano, space-separated) or v3x (RP2040, tab-separated)"
    );
    pub const BAUD: Key<usize> = key!(
        "baud",
        0,
        "baud rate; 0 = 9600 for v2, 115200 for v3x (ignored by USB CDC)"
    );
    pub const ENVIRONMENT: Key<bool> = key!(
        "environment",
        false,
        "v3x: the BMP280 columns Temp[C] and Press[Pa] are printed"
    );
    pub const MOTION: Key<bool> = key!(
        "motion",
        false,
        "v3x: the MPU-6050 accelerometer and gyroscope columns are printed"
    );
    pub const NAME_COLUMN: Key<bool> = key!(
        "name_column",
        false,
        "v3x: the detector name is printed as the last column"
    );
    pub const SIM_RATE: Key<f64> = key!(
        "sim_rate",
        1.0,
        "simulator only: mean events per device second"
    );
    pub const SIM_COINCIDENCE: Key<f64> = key!(
        "sim_coincidence",
        0.0,
        "simulator only (v3x): probability that an event is flagged coincident"
    );
    /// Muons come at ~1/s.
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(60.0);
}

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
        PORT.spec(),
        gmc_keys::BAUD.spec(),
        gmc_keys::MODE.spec(),
        gmc_keys::POLL_INTERVAL.spec(),
        gmc_keys::COUNT_WIDTH.spec(),
        gmc_keys::REPLY_TIMEOUT.spec(),
        SIMULATE.spec(),
        gmc_keys::SIM_MODEL.spec(),
        SIM_COUNT_RATE.spec(),
        SIM_SECOND.spec(),
        SEED.spec(),
        UNPLUG_AT.spec(),
        UNPLUG_FOR.spec(),
        RECONNECT.spec(),
        BACKOFF.spec(),
        gmc_keys::EXPECT_DATA.spec(),
        ON_SILENCE.spec(),
    ],
};

const LINE_KEYS_SIM: [ConfigKey; 7] = [
    PORT.spec(),
    line_keys::BAUD.spec(),
    SIMULATE.spec(),
    SIM_COUNT_RATE.spec(),
    SIM_SECOND.spec(),
    SEED.spec(),
    RECONNECT.spec(),
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
        BACKOFF.spec(),
        UNPLUG_AT.spec(),
        UNPLUG_FOR.spec(),
        line_keys::EXPECT_DATA.spec(),
        ON_SILENCE.spec(),
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
        line_keys::FIELDS.spec(),
        line_keys::SEPARATOR.spec(),
        line_keys::COMMENT.spec(),
        LINE_KEYS_SIM[2],
        LINE_KEYS_SIM[3],
        LINE_KEYS_SIM[4],
        LINE_KEYS_SIM[5],
        LINE_KEYS_SIM[6],
        BACKOFF.spec(),
        UNPLUG_AT.spec(),
        UNPLUG_FOR.spec(),
        line_keys::COUNTER_EXPECT_DATA.spec(),
        ON_SILENCE.spec(),
    ],
};

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
        PORT.spec(),
        cosmicwatch_keys::VERSION.spec(),
        cosmicwatch_keys::BAUD.spec(),
        cosmicwatch_keys::ENVIRONMENT.spec(),
        cosmicwatch_keys::MOTION.spec(),
        cosmicwatch_keys::NAME_COLUMN.spec(),
        SIMULATE.spec(),
        cosmicwatch_keys::SIM_RATE.spec(),
        cosmicwatch_keys::SIM_COINCIDENCE.spec(),
        SIM_SECOND.spec(),
        SEED.spec(),
        UNPLUG_AT.spec(),
        UNPLUG_FOR.spec(),
        RECONNECT.spec(),
        BACKOFF.spec(),
        cosmicwatch_keys::EXPECT_DATA.spec(),
        ON_SILENCE.spec(),
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
    let simulate = c.get(SIMULATE)?;
    let port = c.get(PORT)?.map(PathBuf::from);
    if port.is_none() && !simulate {
        return Err(c
            .error(
                PORT.name,
                "is required: the serial port of the detector (e.g. /dev/daq/geiger-0 with the \
                 udev rules installed, or /dev/ttyUSB0); `daq-engine devices` lists them; or \
                 run with --simulate to try the setup without hardware",
            )
            .into());
    }
    let second = c.get(SIM_SECOND)?;
    if !(second.is_finite() && (1e-4..=60.0).contains(&second)) {
        return Err(c
            .error(SIM_SECOND.name, "must be between 0.0001 and 60 (s)")
            .into());
    }
    let max = c.get(BACKOFF)?;
    if !(max.is_finite() && (0.05..=600.0).contains(&max)) {
        return Err(c
            .error(BACKOFF.name, "must be between 0.05 and 600 (s)")
            .into());
    }
    Ok(Common {
        unplug: unplug_window(c)?,
        simulate,
        port,
        sim_second: Duration::from_secs_f64(second),
        seed: c.get(SEED)? as u64,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs_f64(max),
        },
    })
}

fn rate(ctx: &BuildContext, key: Key<f64>) -> Result<f64, WorkerError> {
    let v = ctx.config.get(key)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(ctx.config.error(key.name, "must be a number ≥ 0").into());
    }
    Ok(v)
}

fn baud(ctx: &BuildContext, key: Key<usize>) -> Result<Option<u32>, WorkerError> {
    let b = ctx.config.get(key)?;
    if b == 0 {
        return Ok(None);
    }
    if !(300..=4_000_000).contains(&b) {
        return Err(ctx
            .config
            .error(
                key.name,
                "must be 0 (automatic) or a baud rate 300 … 4000000",
            )
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
fn check_common(ctx: &BuildContext, expect_data: Key<f64>) -> Result<(), WorkerError> {
    let c = common(ctx)?;
    super::check_silence(ctx, expect_data)?;
    if let (false, Some(port)) = (c.simulate, &c.port) {
        // Follows links: a udev link whose device is unplugged does not count.
        if let Err(e) = std::fs::metadata(port) {
            return Err(ctx
                .config
                .error(
                    PORT.name,
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
    check_common(ctx, gmc_keys::EXPECT_DATA)?;
    gmc_settings(ctx)?;
    baud(ctx, gmc_keys::BAUD).map(drop)
}

/// Checks the config of `device.mightyohm` and `device.gc10`, opening nothing.
pub fn check_line(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx, line_keys::EXPECT_DATA)?;
    baud(ctx, line_keys::BAUD).map(drop)
}

/// Checks the config of `device.line_counter`, opening nothing.
pub fn check_line_counter(ctx: &BuildContext) -> Result<(), WorkerError> {
    grammar(ctx)?;
    check_common(ctx, line_keys::COUNTER_EXPECT_DATA)?;
    baud(ctx, line_keys::BAUD).map(drop)
}

/// Checks the config of `device.cosmicwatch` as [`build_cosmicwatch`] does, opening nothing.
pub fn check_cosmicwatch(ctx: &BuildContext) -> Result<(), WorkerError> {
    check_common(ctx, cosmicwatch_keys::EXPECT_DATA)?;
    cosmicwatch_version(ctx)?;
    baud(ctx, cosmicwatch_keys::BAUD).map(drop)
}

/// The GMC's mode, count width and reply timeout (s).
fn gmc_settings(ctx: &BuildContext) -> Result<(GmcMode, Option<CountWidth>, f64), WorkerError> {
    let cfg = &ctx.config;
    let mode = match cfg.get(gmc_keys::MODE)? {
        "heartbeat" => GmcMode::Heartbeat,
        "poll_cpm" => {
            let s = cfg.get(gmc_keys::POLL_INTERVAL)?;
            if !(s.is_finite() && (0.01..=86400.0).contains(&s)) {
                return Err(cfg
                    .error(gmc_keys::POLL_INTERVAL.name, "must be 0.01 … 86400 (s)")
                    .into());
            }
            GmcMode::PollCpm {
                interval: Duration::from_secs_f64(s),
            }
        }
        other => {
            return Err(cfg
                .error(
                    gmc_keys::MODE.name,
                    format!("'{other}' is not a mode: heartbeat or poll_cpm"),
                )
                .into())
        }
    };
    let width = match cfg.get(gmc_keys::COUNT_WIDTH)? {
        0 => None,
        2 => Some(CountWidth::Two),
        4 => Some(CountWidth::Four),
        _ => {
            return Err(cfg
                .error(gmc_keys::COUNT_WIDTH.name, "must be 0 (by model), 2 or 4")
                .into())
        }
    };
    let reply = cfg.get(gmc_keys::REPLY_TIMEOUT)?;
    if !(reply.is_finite() && (0.01..=10.0).contains(&reply)) {
        return Err(cfg
            .error(gmc_keys::REPLY_TIMEOUT.name, "must be 0.01 … 10 (s)")
            .into());
    }
    Ok((mode, width, reply))
}

/// Builds `device.gmc`.
pub fn build_gmc(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (mode, width, reply) = gmc_settings(ctx)?;
    // A counter polled every minute is silent between polls: unless the setup says, wait
    // three polls.
    let expect_within = match (cfg.given(gmc_keys::EXPECT_DATA)?, mode) {
        (Some(s), _) => s,
        (None, GmcMode::PollCpm { interval }) => cfg
            .get(gmc_keys::EXPECT_DATA)?
            .max(3.0 * interval.as_secs_f64()),
        (None, _) => cfg.get(gmc_keys::EXPECT_DATA)?,
    };
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let model = match cfg.get(gmc_keys::SIM_MODEL)? {
            "gmc300v3" => GmcModel::Gmc300V3,
            "gmc300v4" => GmcModel::Gmc300V4,
            "gmc320" => GmcModel::Gmc320,
            "gmc500plus" => GmcModel::Gmc500Plus,
            "gmc600plus" => GmcModel::Gmc600Plus,
            "gmc800" => GmcModel::Gmc800,
            other => {
                return Err(cfg
                    .error(
                        gmc_keys::SIM_MODEL.name,
                        format!("'{other}': choose gmc300v3, gmc300v4, gmc320, gmc500plus, gmc600plus or gmc800"),
                    )
                    .into())
            }
        };
        Some(
            gmc::simulate(GmcSimConfig {
                model,
                cps: rate(ctx, SIM_COUNT_RATE)?,
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
        baud: baud(ctx, gmc_keys::BAUD)?,
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
        expect_within,
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
                cps: rate(ctx, SIM_COUNT_RATE)?,
                seed: c.seed,
                second: c.sim_second,
            })
            .map_err(|e| sim_error(function, e))?,
        )
    } else {
        None
    };
    let path = path_of(&c, sim, &mut keep);
    let expect_within = ctx.config.get(match &format {
        LineFormat::Grammar(_) => line_keys::COUNTER_EXPECT_DATA,
        LineFormat::MightyOhm | LineFormat::Gc10 => line_keys::EXPECT_DATA,
    })?;
    let source = linecounter::open(LineCounterConfig {
        path,
        baud: baud(ctx, line_keys::BAUD)?.unwrap_or(9600),
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
        expect_within,
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
    let names = cfg.get(line_keys::FIELDS)?;
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
                        line_keys::FIELDS.name,
                        format!(
                        "'{other}' is not a field: counts, pulse, time_s, time_ms, time_us or skip"
                    ),
                    )
                    .into())
            }
        });
    }
    let separator = match cfg.get(line_keys::SEPARATOR)? {
        "whitespace" => Separator::Whitespace,
        s if s.len() == 1 && s.is_ascii() => Separator::Byte(s.as_bytes()[0]),
        "\\t" | "tab" => Separator::Byte(b'\t'),
        other => {
            return Err(cfg
                .error(
                    line_keys::SEPARATOR.name,
                    format!("'{other}': whitespace, tab or one ASCII character such as ','"),
                )
                .into())
        }
    };
    let g = LineGrammar {
        separator,
        fields,
        comment: cfg.get(line_keys::COMMENT)?.to_string(),
    };
    g.validate()
        .map_err(|p| cfg.error(line_keys::FIELDS.name, p))?;
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
        environment: cfg.get(cosmicwatch_keys::ENVIRONMENT)?,
        motion: cfg.get(cosmicwatch_keys::MOTION)?,
        name: cfg.get(cosmicwatch_keys::NAME_COLUMN)?,
    };
    Ok(match cfg.get(cosmicwatch_keys::VERSION)? {
        "v2" => (CosmicWatchVersion::V2, SimVersion::V2),
        "v3x" | "v3X" => (CosmicWatchVersion::V3X(cols), SimVersion::V3X(cols)),
        other => {
            return Err(cfg
                .error(
                    cosmicwatch_keys::VERSION.name,
                    format!("'{other}': v2 or v3x"),
                )
                .into())
        }
    })
}

/// Builds `device.cosmicwatch`.
pub fn build_cosmicwatch(ctx: &BuildContext) -> Result<DeviceImporter, WorkerError> {
    let cfg = &ctx.config;
    let c = common(ctx)?;
    let (version, sim_version) = cosmicwatch_version(ctx)?;
    let mut keep: Vec<Box<dyn Any + Send>> = Vec::new();
    let sim = if c.simulate {
        let coincidence = cfg.get(cosmicwatch_keys::SIM_COINCIDENCE)?;
        if !(0.0..=1.0).contains(&coincidence) {
            return Err(cfg
                .error(cosmicwatch_keys::SIM_COINCIDENCE.name, "must be 0 … 1")
                .into());
        }
        Some(
            cosmicwatch::simulate(CosmicWatchSimConfig {
                version: sim_version,
                rate: rate(ctx, cosmicwatch_keys::SIM_RATE)?,
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
        baud: baud(ctx, cosmicwatch_keys::BAUD)?,
        backoff: c.backoff,
    })
    .map_err(open_error)?;
    DeviceImporter::build(
        "device.cosmicwatch",
        ctx,
        Box::new(source),
        keep,
        c.simulate,
        cfg.get(cosmicwatch_keys::EXPECT_DATA)?,
    )
}
