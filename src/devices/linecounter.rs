//! `device.mightyohm`, `device.gc10` and `device.line_counter`: the line-printing counters
//! (MightyOhm Geiger kit, NetIO GC10, Arduino-style counters described by a grammar) as
//! Importer functions (specs, keys, checks, builds). The serial settings every serial
//! detector shares are in `serial.rs`.
//!
//! Guarantees: each config key maps onto one field of the driver's [`LineCounterConfig`];
//! with `simulate: true` the line-counter simulator runs on a pseudo-terminal and the driver
//! opens its slave path. Must never: open a real port when simulating, or guess a port when
//! none is configured.

use super::serial::{baud, check_common, common, path_of, rate, SIM_COUNT_RATE};
use super::{expect_data_key, importer_spec, open_error, sim_error, DeviceImporter};
use crate::worker::{BuildContext, FunctionSpec, Template, WorkerError};
use daq_drivers::linecounter::{
    self, GrammarField, LineCounterConfig, LineFormat, LineGrammar, LineSimConfig, Separator,
    SimFormat,
};
use std::any::Any;

/// The line counters' keys (`device.mightyohm`, `device.gc10`, `device.line_counter`).
mod line_keys {
    use crate::keys;
    use crate::worker::{Key, Strings};
    keys! {
        pub const BAUD: Key<usize> = ("baud", 9600, "baud rate (MightyOhm and GC10: 9600; GC10next: 115200)");
    }
    // `device.line_counter`'s grammar.
    keys! {
        list pub GRAMMAR;
        pub const FIELDS: Key<Strings> = ("fields", ["time_us"], "the line's fields in order: counts, pulse, time_s, time_ms, time_us (device time, converted to s) or skip");
        pub const SEPARATOR: Key<str> = ("separator", "whitespace", "field separator: whitespace (runs of spaces/tabs) or one character such as ',' or ';'");
        pub const COMMENT: Key<str> = ("comment", "#", "lines starting with this are ignored; empty = none");
    }
    /// A line a second: silent after 10 s.
    pub const EXPECT_DATA: Key<f64> = super::expect_data_key!(10.0);
    /// A line per pulse can be sparse.
    pub const COUNTER_EXPECT_DATA: Key<f64> = super::expect_data_key!(120.0);
}

/// `device.mightyohm`.
pub const MIGHTYOHM_SPEC: FunctionSpec = importer_spec!(
    name: "device.mightyohm",
    summary: "MightyOhm Geiger kit (one line per second, 9600 baud): sink fields cps: uint32, \
              cpm: uint32, usv_per_hr: float32, mode: uint8 (0 slow, 1 fast, 2 inst), \
              data_length 1.",
    keys: [&[line_keys::BAUD.spec()]],
    simulator: [&[SIM_COUNT_RATE.spec()]],
    then: serial(line_keys::EXPECT_DATA),
);

/// `device.gc10`.
pub const GC10_SPEC: FunctionSpec = FunctionSpec::new(
    "device.gc10",
    Template::Importer,
    "NetIO GC10-style counter (one CPM line per second): sink field cpm: uint32, \
     data_length 1.",
    MIGHTYOHM_SPEC.keys,
);

/// `device.line_counter`.
pub const LINE_COUNTER_SPEC: FunctionSpec = importer_spec!(
    name: "device.line_counter",
    summary: "Arduino-style counter printing one line per pulse or per interval, described \
              by a grammar. Sink fields, in grammar order: counts: uint32 (counts), pulse: \
              uint64 (pulse), device_time: float64 (time_s/time_ms/time_us, in seconds); \
              data_length 1.",
    keys: [&[line_keys::BAUD.spec()], line_keys::GRAMMAR],
    simulator: [&[SIM_COUNT_RATE.spec()]],
    then: serial(line_keys::COUNTER_EXPECT_DATA),
);

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
                return Err(super::not_one_of(
                    cfg,
                    line_keys::FIELDS.name,
                    other,
                    "counts, pulse, time_s, time_ms, time_us or skip",
                ))
            }
        });
    }
    let separator = match cfg.get(line_keys::SEPARATOR)? {
        "whitespace" => Separator::Whitespace,
        s if s.len() == 1 && s.is_ascii() => Separator::Byte(s.as_bytes()[0]),
        "\\t" | "tab" => Separator::Byte(b'\t'),
        other => {
            return Err(super::not_one_of(
                cfg,
                line_keys::SEPARATOR.name,
                other,
                "whitespace, tab or one ASCII character such as ','",
            ))
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

/// The line counters: `device.mightyohm`, `device.gc10` and the configurable
/// `device.line_counter`; a found port suggests the one its model names.
pub const FAMILY: super::Family = super::Family {
    driver: &daq_drivers::linecounter::FAMILY,
    functions: &[
        super::importer!(MIGHTYOHM_SPEC, build_mightyohm, check_line),
        super::importer!(GC10_SPEC, build_gc10, check_line),
        super::importer!(LINE_COUNTER_SPEC, build_line_counter, check_line_counter),
    ],
    suggest: |d| {
        let m = d.model.to_ascii_lowercase();
        if d.model == daq_drivers::linecounter::ONE_INTEGER {
            (
                "device.gc10 or device.line_counter",
                "setups/mightyohm.yaml (function: device.gc10)",
            )
        } else if m.contains("gc10") {
            (
                "device.gc10",
                "setups/mightyohm.yaml (function: device.gc10)",
            )
        } else if m.contains("mightyohm") {
            ("device.mightyohm", "setups/mightyohm.yaml")
        } else {
            (
                "device.mightyohm, device.gc10 or device.line_counter",
                "setups/mightyohm.yaml",
            )
        }
    },
    bench,
};

/// `bench drivers`: pulse lines at 50 kHz.
fn bench(events: Option<u64>) -> Vec<Result<super::tools::DriverRate, String>> {
    use daq_drivers::linecounter;
    vec![super::tools::serial_rate(
        "line counter, pulse lines (pty, 50 kHz)",
        events,
        || {
            linecounter::simulate(linecounter::LineSimConfig {
                format: linecounter::SimFormat::Grammar(linecounter::LineGrammar::pulse_time_us()),
                cps: 50_000.0,
                ..linecounter::LineSimConfig::default()
            })
        },
        |path| {
            linecounter::open(linecounter::LineCounterConfig {
                path,
                format: linecounter::LineFormat::Grammar(linecounter::LineGrammar::pulse_time_us()),
                ..linecounter::LineCounterConfig::default()
            })
        },
    )]
}
