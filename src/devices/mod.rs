//! Device importers: every `daq-drivers` family as an Importer function (`device.gmc`,
//! `device.cosmicwatch`, `device.picoscope`, `device.redpitaya`, …), plus device discovery, udev installation
//! and the driver benchmark for the command line ([`tools`]).
//!
//! Guarantees: before a run starts, the sink buffer's fields (names and numpy types) and
//! `data_length` are checked against what the configured driver writes, and a mismatch says
//! exactly what the setup must declare. Per event the importer calls the driver's
//! `read_event` straight into the ring slot with a short timeout and stamps the host wall
//! clock: no allocation, no copy. A device that disappears (unplugged, pty closed) is
//! re-opened with the driver's backoff while the run goes on; every gap is logged with
//! `tracing::warn!` and kept in the worker's device notes file and its run metadata.
//! Bad device data (a [`DriverError::Protocol`]) never ends the run: it is counted
//! (`device.bad_records`), logged with the device, byte offset and escaped first bytes (the
//! first [`BAD_LOGGED_EACH`] one by one, then a summary every [`BAD_SUMMARY_EVERY`]) and
//! skipped; the driver goes on at the next line or frame. No good event for
//! `expect_data_within` is warned (or, with `on_silence: stop`, ends the importer cleanly).
//! The notes are rewritten once a second off the per-event path. However the importer ends,
//! dropping it runs the driver's `stop` (bad data the stop finds, such as a serial line
//! device's last line without its line end, is counted like any other) and writes the
//! notes a last time.
//! Must never: publish a slot the driver did not fill, or spin without a timeout.

// Shared by the families: the simulated plug, the serial and USB importers' common keys
// and checks, and the command-line tools.
mod plug;
pub mod serial;
pub mod tools;
pub mod usb;

// One file per device family: its spec, keys, check and build.
pub mod cosmicwatch;
pub mod drs4;
pub mod gmc;
pub mod hantek6022;
pub mod linecounter;
mod mimo_picoscope;
pub mod picoscope;
pub mod redpitaya;

use crate::keys;
use crate::run_dir::DeviceNotes;
use crate::worker::Function;
use crate::worker::WiringError;
use crate::worker::{BufferShape, BuildContext, EventMut, Importer, Key, Produced, WorkerError};
use daq_drivers::{DriverError, EventLayout, ReadOutcome, Source};
use std::any::Any;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest a single `next` waits for the driver (so the engine sees a stop quickly).
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// How often the device notes are rewritten while the run goes on (events, bad records,
/// silence), checked off the per-event path.
pub const NOTES_EVERY: Duration = Duration::from_secs(1);

/// Bad records logged one by one; after these, one summary line per [`BAD_SUMMARY_EVERY`].
pub const BAD_LOGGED_EACH: u64 = 5;

/// Time between the summary lines of bad records after the first [`BAD_LOGGED_EACH`].
pub const BAD_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One device importer's registration: its spec, the build that opens the device (wrapped
/// as an Importer) and the check that makes every check of the build without opening it,
/// registered together so that neither can be registered without the other:
/// `importer!(SPEC, build, check)` in a family file's [`Family`]. Both refuse more than one
/// process ([`one_device`]): a device is opened by one.
macro_rules! importer {
    ($spec:expr, $build:path, $check:path) => {
        (
            $crate::worker::Function {
                spec: $spec,
                build: $crate::worker::Build::Importer(|c| {
                    $crate::devices::one_device(c, $spec.name)?;
                    Ok(Box::new($build(c)?))
                }),
            },
            $crate::worker::Check::Config(|c| {
                $crate::devices::one_device(c, $spec.name)?;
                $check(c)
            }),
        )
    };
}
pub(crate) use importer;

/// Refuses more than one process for device importer `function` (see [`importer!`]).
pub(crate) fn one_device(ctx: &BuildContext, function: &'static str) -> Result<(), WorkerError> {
    let instead = " (a second device gets a worker of its own)";
    Ok(ctx.one_opener(function, "its device", instead)?)
}

/// A device family as the engine knows it, described once in its file
/// (`src/devices/<family>.rs`, `pub const FAMILY`): the driver crate's description of it,
/// the importer functions that serve it, what `daq-engine devices` suggests for a device of
/// it that a scan found, and its rows of `bench drivers`.
pub struct Family {
    /// The driver crate's description (setup name, scan, udev lines).
    pub driver: &'static daq_drivers::FamilyInfo,
    /// Its importer functions, each with the check of its config.
    pub functions: &'static [(Function, crate::worker::Check)],
    /// The importer function and example setup for a found device.
    pub suggest: fn(&daq_drivers::DeviceInfo) -> (&'static str, &'static str),
    /// Its rows of `daq-engine bench drivers`: the simulated device through its driver,
    /// reading about `events` (or the family's own number).
    pub bench: fn(Option<u64>) -> Vec<Result<tools::DriverRate, String>>,
}

/// Every device family, one line each, in the order of the driver crate's
/// [`daq_drivers::FAMILIES`] (a test compares).
pub const FAMILIES: &[&Family] = &[
    &gmc::FAMILY,
    &linecounter::FAMILY,
    &cosmicwatch::FAMILY,
    &picoscope::FAMILY,
    &hantek6022::FAMILY,
    &drs4::FAMILY,
    &redpitaya::FAMILY,
];

/// Importer functions for the supported devices, each with the check of its config that
/// `daq-engine check` runs: everything its build checks, opening no device (see
/// [`crate::worker::Check`]). The families' functions, in [`FAMILIES`] order.
pub fn functions() -> Vec<(Function, crate::worker::Check)> {
    FAMILIES
        .iter()
        .flat_map(|f| f.functions.iter().copied())
        .collect()
}

keys! {
    /// The keys every device importer reads.
    pub(crate) const SIMULATE: Key<bool> = ("simulate", false, "run the family's simulator and open it through the same driver path (set by --simulate)");
    /// See [`SIMULATE`].
    pub(crate) const RECONNECT: Key<bool> = ("reconnect", true, "when the device disappears, wait and re-open it (the gap is logged); false = stop the run");
    /// See [`SIMULATE`].
    pub(crate) const SEED: Key<i64> = ("seed", 1, "simulator only: random seed; the same seed gives the same events");

    /// See [`SIMULATE`]. What a long silence does.
    pub(crate) const ON_SILENCE: Key<str> = ("on_silence", "warn", "after expect_data_within s without a good event: warn (log, device notes, status, page; the run goes on) or stop (the run stops cleanly, as at max_seconds)");
}

/// `expect_data_within` with the family's default (seconds): the longest time without a
/// good event (nothing, or only bad data) before the silence is reported;
/// `expect_data_key!(60.0)`, or with a note added to the doc.
macro_rules! expect_data_key {
    ($default:literal $(, $note:literal)?) => {
        $crate::key!(
            "expect_data_within",
            $default,
            concat!(
                "seconds without a good event (nothing, or only bad data) before a warning \
                 names the device (see on_silence); 0 = never"
                $(, $note)?
            )
        )
    };
}
pub(crate) use expect_data_key;

/// A device importer's [`FunctionSpec`](crate::worker::FunctionSpec): no sources, one sink,
/// nothing observed; its keys in the order `daq-engine functions` lists them, each named
/// once. `keys` and `simulator` are lists of key lists (a family table's `list`, or
/// `&[KEY.spec()]` for a key declared elsewhere): the family's own keys, then `simulate`
/// and the simulator's keys, then what every device of its kind ends with. `then: scope`
/// is every scope (USB, and the Red Pitaya): seed, simulated unplug, reconnect, the
/// scopes' `expect_data_within`, `on_silence`. `then: serial(EXPECT)` is every serial
/// detector: the port before the family's keys; `sim_second` after the simulator's; then
/// seed, simulated unplug, reconnect and its backoff, the family's `expect_data_within`,
/// `on_silence`.
macro_rules! importer_spec {
    (name: $name:literal, summary: $summary:expr, keys: [$($own:expr),* $(,)?],
     simulator: [$($sim:expr),* $(,)?], then: scope $(,)?) => {
        $crate::devices::importer_spec!(
            @join $name, $summary, [$($own),*], [$($sim),*],
            [$crate::devices::usb::SCOPE_EXPECT_DATA.spec()]
        )
    };
    (name: $name:literal, summary: $summary:expr, keys: [$($own:expr),* $(,)?],
     simulator: [$($sim:expr),* $(,)?], then: serial($expect:expr) $(,)?) => {
        $crate::devices::importer_spec!(
            @join $name, $summary,
            [&[$crate::devices::serial::PORT.spec()], $($own),*],
            [$($sim,)* &[$crate::devices::serial::SIM_SECOND.spec()]],
            [$crate::devices::serial::BACKOFF.spec(), $expect.spec()]
        )
    };
    (@join $name:literal, $summary:expr, [$($own:expr),*], [$($sim:expr),*],
     [$($silence:expr),*]) => {
        $crate::worker::FunctionSpec::new(
            $name,
            $crate::worker::Template::Importer,
            $summary,
            $crate::join_keys!(
                $($own,)*
                &[$crate::devices::SIMULATE.spec()],
                $($sim,)*
                &[
                    $crate::devices::SEED.spec(),
                    $crate::devices::plug::UNPLUG_AT.spec(),
                    $crate::devices::plug::UNPLUG_FOR.spec(),
                    $crate::devices::RECONNECT.spec(),
                    $($silence,)*
                    $crate::devices::ON_SILENCE.spec(),
                ],
            ),
        )
    };
}
pub(crate) use importer_spec;

/// What a device importer does when its device stays silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSilence {
    /// Warn (log, notes) and go on.
    Warn,
    /// Warn and end the importer, so the run stops cleanly.
    Stop,
}

/// A config error about `key` of a device importer, as its build returns it.
pub(crate) fn bad(
    cfg: &crate::worker::Config,
    key: &str,
    problem: impl Into<String>,
) -> WorkerError {
    cfg.error(key, problem).into()
}

/// The error for `text`, the value of config key `key`, which is none of `choices` (their
/// names as a sentence: "traces or histogram").
pub(crate) fn not_one_of(
    cfg: &crate::worker::Config,
    key: &str,
    text: &str,
    choices: &str,
) -> WorkerError {
    bad(cfg, key, format!("'{text}': {choices}"))
}

/// The value `choices` pairs with the text of `key`; any other text is an error that
/// names it and lists the choices (a spelling that differs from an earlier one only in
/// case is accepted but not listed).
pub(crate) fn pick<T: Clone>(
    cfg: &crate::worker::Config,
    key: Key<str>,
    choices: &[(&str, T)],
) -> Result<T, WorkerError> {
    let text = cfg.get(key)?;
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(value.clone());
    }
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in choices {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    let listed = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(not_one_of(cfg, key.name, text, &listed))
}

/// The value of `key` if it lies in `range` (NaN never does); else the error `problem`.
pub(crate) fn within<T>(
    cfg: &crate::worker::Config,
    key: Key<T>,
    range: std::ops::RangeInclusive<T>,
    problem: &str,
) -> Result<T, WorkerError>
where
    T: for<'a> crate::worker::KeyValue<Out<'a> = T> + PartialOrd,
{
    let v = cfg.get(key)?;
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(bad(cfg, key.name, problem))
    }
}

/// Checks `expect_data_within` (the family's `key`) and `on_silence` as a build reads them,
/// opening nothing.
pub(crate) fn check_silence(ctx: &BuildContext, key: Key<f64>) -> Result<(), WorkerError> {
    silence_config(ctx, ctx.config.get(key)?).map(drop)
}

/// Checks the `expect_data_within` read (`within_s`, s) and reads `on_silence`.
fn silence_config(
    ctx: &BuildContext,
    within_s: f64,
) -> Result<(Option<Duration>, OnSilence), WorkerError> {
    let c = &ctx.config;
    let s = within_s;
    if !(s.is_finite() && (0.0..=7.0 * 86400.0).contains(&s)) {
        return Err(c
            .error(
                "expect_data_within",
                "must be 0 (never) or a time up to a week, in seconds",
            )
            .into());
    }
    let on = pick(
        c,
        ON_SILENCE,
        &[("warn", OnSilence::Warn), ("stop", OnSilence::Stop)],
    )?;
    Ok(((s > 0.0).then(|| Duration::from_secs_f64(s)), on))
}

/// How a sink buffer differs from the events the configured driver writes: what is wrong
/// and how to declare it.
#[derive(Debug, thiserror::Error)]
#[error(
    "sink buffer '{sink}' does not match the device: {}. \
     Declare it as  data_length: {records}  data_dtype: {{{want}}}  (the setup has \
     data_length: {has_length}, data_dtype: {{{has}}})",
    why.join("; ")
)]
pub struct SinkMismatch {
    /// The worker.
    pub worker: String,
    /// Its function.
    pub function: String,
    /// The sink buffer.
    pub sink: String,
    /// Each difference, in words.
    pub why: Vec<String>,
    /// Records per event the driver writes.
    pub records: usize,
    /// The fields the driver writes, as a data_dtype.
    pub want: String,
    /// The sink's data_length.
    pub has_length: usize,
    /// The sink's fields, as a data_dtype.
    pub has: String,
    /// The sink has the driver's field names, in order, and its data_length: only the
    /// types of fields differ (a sample format the buffer does not declare).
    pub only_types: bool,
}

/// `worker 'W' (F): sink buffer …`, the mismatch kept whole as the source.
impl From<Box<SinkMismatch>> for WorkerError {
    fn from(e: Box<SinkMismatch>) -> WorkerError {
        WorkerError::Failed {
            doing: format!("worker '{}' ({})", e.worker, e.function),
            source: e,
        }
    }
}

/// Checks that `sink` is declared exactly as the driver writes its events.
pub fn check_layout(
    function: &str,
    worker: &str,
    layout: &EventLayout,
    sink: &BufferShape,
) -> Result<(), Box<SinkMismatch>> {
    let want: Vec<(String, Option<crate::dtype::Scalar>)> = layout
        .fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                crate::dtype::Scalar::parse(f.numpy_type).ok(),
            )
        })
        .collect();
    let have: Vec<(String, Option<crate::dtype::Scalar>)> = sink
        .dtype
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.ty.scalar()))
        .collect();
    if want == have && sink.data_length == layout.records {
        return Ok(());
    }
    let show = |v: &[(String, Option<crate::dtype::Scalar>)]| {
        v.iter()
            .map(|(n, s)| format!("{n}: {}", s.map(|s| s.name()).unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut why = Vec::new();
    if want != have {
        let missing: Vec<&str> = want
            .iter()
            .filter(|w| !have.iter().any(|h| h.0 == w.0))
            .map(|w| w.0.as_str())
            .collect();
        let extra: Vec<&str> = have
            .iter()
            .filter(|h| !want.iter().any(|w| w.0 == h.0))
            .map(|h| h.0.as_str())
            .collect();
        let retyped: Vec<String> = want
            .iter()
            .filter_map(|w| {
                let h = have.iter().find(|h| h.0 == w.0)?;
                (h.1 != w.1).then(|| {
                    format!(
                        "{} is {} but must be {}",
                        w.0,
                        h.1.map(|s| s.name()).unwrap_or("?"),
                        w.1.map(|s| s.name()).unwrap_or("?")
                    )
                })
            })
            .collect();
        if !missing.is_empty() {
            why.push(format!("missing fields {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            why.push(format!(
                "fields the driver does not write: {}",
                extra.join(", ")
            ));
        }
        if !retyped.is_empty() {
            why.push(retyped.join("; "));
        }
        if missing.is_empty() && extra.is_empty() && retyped.is_empty() {
            why.push("fields in the wrong order".into());
        }
    }
    if sink.data_length != layout.records {
        why.push(format!(
            "data_length is {} but the driver writes {} record(s) per event",
            sink.data_length, layout.records
        ));
    }
    let only_types = sink.data_length == layout.records
        && want.len() == have.len()
        && want.iter().zip(&have).all(|(w, h)| w.0 == h.0);
    Err(Box::new(SinkMismatch {
        worker: worker.to_string(),
        function: function.to_string(),
        sink: sink.name.clone(),
        why,
        records: layout.records,
        want: show(&want),
        has_length: sink.data_length,
        has: show(&have),
        only_types,
    }))
}

/// Writes how the counts of `buffer`'s fields become volts into the run directory
/// (`scales_<worker>.txt`, see [`crate::run_dir::scales`]), for the exporters; nothing when
/// the source writes no counts. A failure is logged: the data are still good.
fn write_scales(ctx: &BuildContext, buffer: &str, scales: &[daq_drivers::ChannelScale]) {
    use crate::run_dir::scales::{FieldScale, SampleScales};
    let s = SampleScales {
        buffer: buffer.to_string(),
        fields: scales
            .iter()
            .map(|c| FieldScale {
                field: c.field.clone(),
                volts_per_count: c.volts_per_count,
                offset_volts: c.offset_volts,
            })
            .collect(),
    };
    if let Err(e) = s.write(&ctx.run_dir, &ctx.worker) {
        tracing::warn!("{}: cannot write its sample scales: {e}", ctx.worker);
    }
}

/// One disconnect and what came of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    /// Host wall-clock time (Unix seconds) the device was found gone.
    pub lost_at_unix: f64,
    /// Seconds until it was back.
    pub seconds: f64,
    /// Events read before the gap.
    pub events_before: u64,
    /// What the driver said.
    pub detail: String,
}

struct Lost {
    since: Instant,
    wall: f64,
    detail: String,
}

/// Bad device data: counted, logged (the first few one by one, then summed up), skipped.
struct BadData {
    /// Records refused so far.
    count: u64,
    /// Of these, not yet in a log line.
    unlogged: u64,
    /// When the unlogged ones were last summed up.
    summed_at: Instant,
    /// The last one: where and what (capacity kept between records).
    last: String,
}

/// Watch for a device that sends nothing good.
struct Silence {
    /// Longest wait for a good event before the silence is reported; `None`: not watched.
    within: Option<Duration>,
    on: OnSilence,
    /// When the last good event was seen (to the precision of the checks, ≤ 1 s).
    heard_at: Instant,
    /// Events counted at `heard_at`.
    events_then: u64,
    /// True while a reported silence lasts.
    reported: bool,
    /// Silences reported so far.
    spells: u64,
}

/// The Importer every device function builds: a configured [`Source`] read into ring slots.
pub struct DeviceImporter {
    function: &'static str,
    worker: String,
    source: Box<dyn Source>,
    /// Simulators (pty devices, simulated USB devices, a loaded fake library) that must live
    /// as long as the source.
    _keep: Vec<Box<dyn Any + Send>>,
    simulated: bool,
    reconnect: bool,
    lost: Option<Lost>,
    /// Gaps listed one by one: this process's first [`GAPS_LISTED`] and latest
    /// [`GAPS_LISTED`].
    gaps: Vec<Gap>,
    /// Gaps in all, those of earlier processes of this worker included, and their seconds.
    gap_count: u64,
    gap_seconds: f64,
    /// Of `gap_count`, the gaps of earlier processes (the index of this one's first).
    gaps_before: u64,
    events: u64,
    notes: Option<PathBuf>,
    bad: BadData,
    silence: Silence,
    /// Host wall clock (Unix s) at or after which an event triggers [`Self::check`]: the
    /// event's own timestamp is compared, so the event path reads no extra clock (see
    /// [`Self::check_due`] for a clock set back).
    check_due_wall: f64,
    /// When the notes were last written.
    notes_at: Instant,
}

impl DeviceImporter {
    /// Wraps an opened source and starts acquisition. `keep` holds whatever must outlive the
    /// source (a simulator); `reconnect` says whether a disconnect is waited out.
    pub fn new(
        function: &'static str,
        worker: &str,
        mut source: Box<dyn Source>,
        keep: Vec<Box<dyn Any + Send>>,
        reconnect: bool,
    ) -> Result<DeviceImporter, WorkerError> {
        source.start()?;
        let now = Instant::now();
        Ok(DeviceImporter {
            function,
            worker: worker.to_string(),
            source,
            _keep: keep,
            simulated: false,
            reconnect,
            lost: None,
            gaps: Vec::with_capacity(2 * GAPS_LISTED),
            gap_count: 0,
            gap_seconds: 0.0,
            gaps_before: 0,
            events: 0,
            notes: None,
            bad: BadData {
                count: 0,
                unlogged: 0,
                summed_at: now,
                last: String::with_capacity(256),
            },
            silence: Silence {
                within: None,
                on: OnSilence::Warn,
                heard_at: now,
                events_then: 0,
                reported: false,
                spells: 0,
            },
            check_due_wall: 0.0,
            notes_at: now,
        })
    }

    /// Watches for silence: after `within` without a good event, warn (and with
    /// [`OnSilence::Stop`] end); `None` turns the watch off.
    pub fn expect_data_within(&mut self, within: Option<Duration>, on: OnSilence) {
        self.silence.within = within;
        self.silence.on = on;
    }

    /// Checks the sink of `ctx` against the source, starts it, and writes the device notes
    /// (`device_<worker>.txt` in the run directory). `expect_within` is the family's
    /// `expect_data_within` as read (s).
    pub(crate) fn build(
        function: &'static str,
        ctx: &BuildContext,
        source: Box<dyn Source>,
        keep: Vec<Box<dyn Any + Send>>,
        simulated: bool,
        expect_within: f64,
    ) -> Result<DeviceImporter, WorkerError> {
        let sink = ctx.sinks.first().ok_or_else(|| WiringError::Count {
            worker: ctx.worker.clone(),
            want: "one sink buffer",
            has: 0,
        })?;
        check_layout(function, &ctx.worker, source.layout(), sink)?;
        let reconnect = ctx.config.get(RECONNECT)?;
        let (within, on) = silence_config(ctx, expect_within)?;
        let mut imp = DeviceImporter::new(function, &ctx.worker, source, keep, reconnect)?;
        imp.expect_data_within(within, on);
        imp.simulated = simulated;
        if ctx.run_dir.is_dir() && ctx.run_dir != std::env::temp_dir() {
            // One process (see `importer!`), so one notes file.
            imp.notes = Some(crate::run_dir::device_notes_path(&ctx.run_dir, &ctx.worker));
        }
        imp.carry_on();
        imp.write_notes();
        if ctx.process.0 == 0 {
            write_scales(ctx, &sink.name, &imp.source.channel_scales());
        }
        let info = imp.source.info();
        tracing::info!(
            "{}: {} {} at {}{}",
            ctx.worker,
            function,
            info.model,
            info.port,
            if simulated { " (simulated)" } else { "" }
        );
        Ok(imp)
    }

    /// The disconnect gaps this process listed (see [`GAPS_LISTED`]).
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// True while the device is gone and not yet back.
    pub fn is_disconnected(&self) -> bool {
        self.lost.is_some()
    }

    /// Bad records (lines, replies, frames the driver refused) skipped so far.
    pub fn bad_records(&self) -> u64 {
        self.bad.count
    }

    /// True while a reported silence lasts.
    pub fn is_silent(&self) -> bool {
        self.silence.reported
    }

    /// Counts, logs (rate-limited) and skips one bad record; the driver has already moved on
    /// to the next line or frame.
    fn refuse(&mut self, device: &str, offset: u64, detail: &str) {
        use std::fmt::Write;
        self.bad.count += 1;
        self.bad.last.clear();
        let _ = write!(self.bad.last, "at byte {offset}: {detail}");
        let head = self.source.rejected_bytes();
        if !head.is_empty() {
            let _ = write!(self.bad.last, "; first bytes \"{}\"", head.escape_ascii());
        }
        if self.bad.count <= BAD_LOGGED_EACH {
            tracing::warn!(
                "{}: {device}: bad data skipped {}{} (the run goes on)",
                self.worker,
                self.bad.last,
                if self.bad.count == BAD_LOGGED_EACH {
                    format!(
                        "; {BAD_LOGGED_EACH} so far, further ones are summed up every {} s",
                        BAD_SUMMARY_EVERY.as_secs()
                    )
                } else {
                    String::new()
                }
            );
            self.bad.summed_at = Instant::now();
        } else {
            self.bad.unlogged += 1;
        }
    }

    /// Logs the bad records not yet logged, if any.
    fn sum_up_bad(&mut self, now: Instant) {
        if self.bad.unlogged == 0 {
            return;
        }
        tracing::warn!(
            "{}: {} more bad record(s) from {} skipped in the last {:.0} s ({} in all); the \
             last {}",
            self.worker,
            self.bad.unlogged,
            self.source.info().port,
            now.duration_since(self.bad.summed_at).as_secs_f64(),
            self.bad.count,
            self.bad.last
        );
        self.bad.unlogged = 0;
        self.bad.summed_at = now;
    }

    /// Off the per-event path (when idle, or at most once a second while events flow):
    /// notes silence and its end, sums up bad records, rewrites the notes once a second.
    /// `Produced::End` when a silence asks to stop the run.
    fn check(&mut self, now: Instant) -> Produced {
        let mut rewrite = now.duration_since(self.notes_at) >= NOTES_EVERY;
        let s = &mut self.silence;
        if self.events != s.events_then || self.lost.is_some() {
            // Heard from it (a gap is reported as a gap, not as silence).
            if s.reported && self.lost.is_none() {
                tracing::warn!(
                    "{}: {} sends events again after {:.1} s of silence",
                    self.worker,
                    self.source.info().port,
                    now.duration_since(s.heard_at).as_secs_f64()
                );
                s.reported = false;
                rewrite = true;
            }
            s.heard_at = now;
            s.events_then = self.events;
        } else if let Some(within) = s.within {
            let quiet = now.duration_since(s.heard_at);
            if quiet >= within && !s.reported {
                s.reported = true;
                s.spells += 1;
                rewrite = true;
                tracing::warn!(
                    "{}: {} ({}) sent no good event for {:.1} s (expect_data_within: {}; {} bad \
                     record(s) so far): is it connected, powered and configured? {}",
                    self.worker,
                    self.source.info().port,
                    self.function,
                    quiet.as_secs_f64(),
                    within.as_secs_f64(),
                    self.bad.count,
                    match s.on {
                        OnSilence::Warn => "The run goes on (on_silence: warn).",
                        OnSilence::Stop => "Stopping the run (on_silence: stop).",
                    }
                );
            }
        }
        if now.duration_since(self.bad.summed_at) >= BAD_SUMMARY_EVERY {
            self.sum_up_bad(now);
        }
        if rewrite {
            self.write_notes();
            self.notes_at = now;
        }
        self.check_due_wall = crate::clock::wall_clock() + NOTES_EVERY.as_secs_f64();
        if self.silence.reported && self.silence.on == OnSilence::Stop {
            Produced::End
        } else {
            Produced::Idle
        }
    }

    /// An earlier process of this worker (it failed and was started again) left its notes:
    /// go on counting from them, so a restart does not reset the device's events, bad
    /// records and silences (what it read after its last notes, ≤ 1 s, is not known here:
    /// the engine tells what it published in [`Importer::restarted`]).
    fn carry_on(&mut self) {
        let Some(path) = &self.notes else { return };
        let before = DeviceNotes::read(path);
        if before.entries.is_empty() {
            return;
        }
        self.events = before.count(DeviceNotes::EVENTS);
        self.bad.count = before.count(DeviceNotes::BAD_RECORDS);
        self.silence.spells = before.count(DeviceNotes::SILENCES);
        self.gap_count = before.count(DeviceNotes::GAPS);
        self.gaps_before = self.gap_count;
        self.gap_seconds = before
            .get(DeviceNotes::GAP_SECONDS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        self.silence.events_then = self.events;
        tracing::info!(
            "{}: going on from an earlier process of this worker: {} events, {} bad records",
            self.worker,
            self.events,
            self.bad.count
        );
    }

    fn write_notes(&self) {
        let Some(path) = &self.notes else { return };
        let text = DeviceNotes {
            entries: self.run_metadata(),
        }
        .text();
        if let Err(e) = crate::worker::write_atomically(path, text.as_bytes()) {
            tracing::warn!("{}: cannot write {}: {e}", self.worker, path.display());
        }
    }

    /// Whether an event stamped `now` (host wall clock) is to run [`Self::check`]: its time
    /// has come, or the clock was set back since the last check (by more than a second:
    /// waiting for it to catch up would hold the checks off for as long as it went back).
    fn check_due(&self, now: f64) -> bool {
        let every = NOTES_EVERY.as_secs_f64();
        now >= self.check_due_wall || now < self.check_due_wall - 2.0 * every
    }

    fn try_reconnect(&mut self) -> Result<Produced, WorkerError> {
        match self.source.reconnect() {
            Ok(true) => {
                if let Some(lost) = self.lost.take() {
                    let gap = Gap {
                        lost_at_unix: lost.wall,
                        seconds: lost.since.elapsed().as_secs_f64(),
                        events_before: self.events,
                        detail: lost.detail,
                    };
                    tracing::warn!(
                        "{}: {} is back after a gap of {:.3} s ({} events before the gap)",
                        self.worker,
                        self.source.info().port,
                        gap.seconds,
                        gap.events_before
                    );
                    self.gap_count += 1;
                    self.gap_seconds += gap.seconds;
                    if self.gaps.len() == 2 * GAPS_LISTED {
                        self.gaps.remove(GAPS_LISTED);
                    }
                    self.gaps.push(gap);
                    self.write_notes();
                }
                Ok(Produced::Idle)
            }
            Ok(false) | Err(DriverError::Disconnected { .. }) => Ok(Produced::Idle),
            Err(e) => Err(e.into()),
        }
    }
}

impl Importer for DeviceImporter {
    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError> {
        if self.lost.is_some() {
            let r = self.try_reconnect();
            self.check(Instant::now());
            return r;
        }
        match self.source.read_event(out.data, READ_TIMEOUT) {
            Ok(ReadOutcome::Event(_)) => {
                let now = crate::clock::wall_clock();
                out.meta.timestamp = now;
                self.events += 1;
                if self.check_due(now) {
                    // At most once a second: the event already read the clock.
                    self.check(Instant::now());
                }
                Ok(Produced::Event)
            }
            Ok(ReadOutcome::Idle) => Ok(self.check(Instant::now())),
            Err(DriverError::Protocol {
                device,
                offset,
                detail,
            }) => {
                self.refuse(&device, offset, &detail);
                Ok(self.check(Instant::now()))
            }
            Ok(ReadOutcome::End) => Ok(Produced::End),
            Err(DriverError::Disconnected { device, detail }) if self.reconnect => {
                tracing::warn!(
                    "{}: {device} disconnected ({detail}) after {} events; waiting for it to \
                     come back (the run goes on)",
                    self.worker,
                    self.events
                );
                self.lost = Some(Lost {
                    since: Instant::now(),
                    wall: crate::clock::wall_clock(),
                    detail,
                });
                // The monitor reads the notes: say at once that the device is gone.
                self.write_notes();
                self.try_reconnect()
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The earlier process's notes trail what it read by up to a second (they are rewritten
    /// once a second, and it may have been killed just before the next rewrite); what it
    /// published or counted lost it had read, so the device's count is at least that.
    fn restarted(&mut self, taken: u64) {
        if taken > self.events {
            tracing::info!(
                "{}: its earlier process read {} events after its last notes",
                self.worker,
                taken - self.events
            );
            self.events = taken;
            self.silence.events_then = taken;
            self.write_notes();
        }
    }

    fn run_metadata(&self) -> Vec<(String, String)> {
        let info = self.source.info();
        let mut m = vec![
            ("device.function".to_string(), self.function.to_string()),
            ("device.model".to_string(), info.model.clone()),
            ("device.port".to_string(), info.port.clone()),
            ("device.simulated".to_string(), self.simulated.to_string()),
            (
                "device.connected".to_string(),
                self.lost.is_none().to_string(),
            ),
            ("device.events".to_string(), self.events.to_string()),
            ("device.bad_records".to_string(), self.bad.count.to_string()),
            (
                "device.silent".to_string(),
                self.silence.reported.to_string(),
            ),
            (
                "device.silences".to_string(),
                self.silence.spells.to_string(),
            ),
            (
                "device.expect_data_within".to_string(),
                self.silence
                    .within
                    .map_or("never".to_string(), |d| format!("{} s", d.as_secs_f64())),
            ),
        ];
        if self.bad.count > 0 {
            m.push(("device.bad_last".into(), self.bad.last.clone()));
        }
        if self.silence.reported {
            m.push((
                "device.silent_since_unix".into(),
                format!(
                    "{:.3}",
                    crate::clock::wall_clock() - self.silence.heard_at.elapsed().as_secs_f64()
                ),
            ));
        }
        if let Some(s) = &info.serial {
            m.push(("device.serial".into(), s.clone()));
        }
        if let Some((v, p)) = info.usb_id {
            m.push(("device.usb_id".into(), format!("{v:04x}:{p:04x}")));
        }
        m.extend(self.source.run_metadata());
        m.push((DeviceNotes::GAPS.into(), self.gap_count.to_string()));
        m.push((
            DeviceNotes::GAP_SECONDS.into(),
            format!("{:.3}", self.gap_seconds),
        ));
        let (first, len) = (self.gaps_before, self.gaps.len() as u64);
        for (i, g) in (0u64..).zip(&self.gaps) {
            let n = if i < GAPS_LISTED as u64 {
                first + i
            } else {
                self.gap_count - len + i
            };
            m.push((
                format!("device.gap.{n}"),
                format!(
                    "lost at unix {:.3}, back after {:.3} s, {} events before; {}",
                    g.lost_at_unix, g.seconds, g.events_before, g.detail
                ),
            ));
        }
        m
    }
}

/// Gaps the notes list one by one: the first and the latest this many each. The count and
/// the time gone cover every gap: a loose cable over a week makes thousands, and the notes
/// are rewritten every second.
pub const GAPS_LISTED: usize = 20;

/// Every ending of the importer (finished, a stop, a run limit, an error) drops it: the
/// driver's `stop` runs (the device is left as it was found; bad data it reports, like a
/// last line cut off by the stop, is a bad record), what is not yet logged is logged, and
/// the notes are written a last time.
impl Drop for DeviceImporter {
    fn drop(&mut self) {
        if self.lost.is_none() {
            match self.source.stop() {
                Ok(()) => {}
                Err(DriverError::Protocol {
                    device,
                    offset,
                    detail,
                }) => self.refuse(&device, offset, &detail),
                Err(e) => tracing::warn!("{}: stopping the device: {e}", self.worker),
            }
        }
        self.sum_up_bad(Instant::now());
        self.write_notes();
    }
}

/// A failed open of real hardware, with the hint that `--simulate` needs none; the kind of
/// the driver's error is kept ([`WorkerError::Device`]).
pub(crate) fn open_error(e: DriverError) -> WorkerError {
    const HINT: &str = ". Without the hardware, try the setup with --simulate";
    match e {
        DriverError::Open { device, detail } => DriverError::Open {
            device,
            detail: detail + HINT,
        },
        DriverError::Vendor(detail) => DriverError::Vendor(detail + HINT),
        e => e,
    }
    .into()
}

/// Maps an I/O error starting a simulator.
pub(crate) fn sim_error(function: &str, e: std::io::Error) -> WorkerError {
    WorkerError::failed(
        format!("{function}: cannot start the simulator (pseudo-terminal)"),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;

    fn layout() -> EventLayout {
        EventLayout::of([("chA", "f4"), ("chB", "f4")], 100)
    }

    fn sink(fields: [(&str, &str); 2], data_length: usize) -> BufferShape {
        BufferShape {
            name: "raw".into(),
            dtype: Dtype::parse(fields).unwrap(),
            data_length,
        }
    }

    /// A sink that differs only in its types is told apart from one with other fields, as
    /// the scopes' check needs (it then names the sample format key); the message is the one
    /// the setup's author has always read.
    #[test]
    fn sink_mismatch_says_whether_only_types_differ() {
        let l = layout();
        let check = |fields: [(&str, &str); 2], length| {
            check_layout("device.x", "w", &l, &sink(fields, length))
        };
        assert!(check([("chA", "f4"), ("chB", "f4")], 100).is_ok());
        let types = check([("chA", "i2"), ("chB", "i2")], 100).unwrap_err();
        assert!(types.only_types);
        let fields = check([("chA", "f4"), ("chC", "f4")], 100).unwrap_err();
        assert!(!fields.only_types);
        let length = check([("chA", "f4"), ("chB", "f4")], 10).unwrap_err();
        assert!(!length.only_types);
        let e = WorkerError::from(fields);
        assert_eq!(
            e.to_string(),
            "worker 'w' (device.x): sink buffer 'raw' does not match the device: missing fields \
             chB; fields the driver does not write: chC. Declare it as  data_length: 100  \
             data_dtype: {chA: float32, chB: float32}  (the setup has data_length: 100, \
             data_dtype: {chA: float32, chC: float32})"
        );
        let WorkerError::Failed { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(source.downcast_ref::<SinkMismatch>().is_some());
    }

    /// A device that cannot be opened stays a device error of its kind, with the hint.
    #[test]
    fn open_error_keeps_the_driver_error_and_adds_the_hint() {
        let e = open_error(DriverError::Open {
            device: "/dev/ttyUSB0".into(),
            detail: "no such file".into(),
        });
        assert_eq!(
            e.to_string(),
            "/dev/ttyUSB0: cannot open: no such file. Without the hardware, try the setup \
             with --simulate"
        );
        assert!(matches!(e, WorkerError::Device(DriverError::Open { .. })));
        let e = open_error(DriverError::Disconnected {
            device: "d".into(),
            detail: "gone".into(),
        });
        assert_eq!(e.to_string(), "d: disconnected: gone");
    }

    /// A counter with an event whenever asked; `flaps`: gone at every other read and back
    /// at once (a loose cable over a long run).
    struct Counter {
        info: daq_drivers::DeviceInfo,
        layout: EventLayout,
        flaps: bool,
        reads: u64,
    }

    impl Counter {
        fn new(flaps: bool) -> Counter {
            Counter {
                info: daq_drivers::DeviceInfo::on_serial_port(
                    daq_drivers::Family::LineCounter,
                    "counter",
                    std::path::Path::new("/dev/null"),
                ),
                layout: EventLayout::of([("counts", "u4")], 1),
                flaps,
                reads: 0,
            }
        }
    }

    impl Source for Counter {
        fn described(&self) -> (&daq_drivers::DeviceInfo, &EventLayout) {
            (&self.info, &self.layout)
        }
        fn read_event(&mut self, _: &mut [u8], _: Duration) -> Result<ReadOutcome, DriverError> {
            self.reads += 1;
            if self.flaps && self.reads.is_multiple_of(2) {
                return Err(DriverError::Disconnected {
                    device: "counter".into(),
                    detail: "the cable moved".into(),
                });
            }
            Ok(ReadOutcome::Event(Default::default()))
        }
        fn reconnect(&mut self) -> Result<bool, DriverError> {
            Ok(true)
        }
    }

    /// One call of the importer's `next` for an event of one count.
    fn next_event(imp: &mut DeviceImporter) -> Result<Produced, WorkerError> {
        let dtype = Dtype::parse([("counts", "u4")]).unwrap();
        let (mut data, mut meta) = ([0u8; 4], crate::dtype::Metadata::default());
        imp.next(&mut EventMut {
            data: &mut data,
            meta: &mut meta,
            dtype: &dtype,
        })
    }

    /// The wall clock set back (NTP stepping a clock that ran ahead, an RTC-less board
    /// setting its time after the run started) while events flow: the once-a-second check
    /// still comes at the next event, instead of when the clock has caught up again (an
    /// hour without fresh device notes, bad-record sums or a silence ending noticed).
    #[test]
    fn a_wall_clock_set_back_does_not_hold_off_the_checks() {
        let dir = crate::fsio::test_dir("clock-back");
        let counter = Box::new(Counter::new(false));
        let mut imp = DeviceImporter::new("device.x", "w", counter, Vec::new(), false).unwrap();
        let notes = dir.join("device_w.txt");
        imp.notes = Some(notes.clone());
        // A check ran a moment ago (the notes are due again), and the clock then went back
        // by an hour: the next check was set for an hour ahead of the clock as it is now.
        imp.notes_at = Instant::now() - 2 * NOTES_EVERY;
        imp.check_due_wall = crate::clock::wall_clock() + 3600.0;
        assert!(matches!(next_event(&mut imp), Ok(Produced::Event)));
        let text = std::fs::read_to_string(&notes).unwrap_or_default();
        assert!(text.contains("device.events = 1\n"), "notes: {text:?}");
        drop(imp);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A device that comes and goes thousands of times (a loose cable over a week): the
    /// notes, rewritten every second, list the first and the latest gaps, not every one
    /// (they grew by a line a gap, 100 kB after a thousand), while the count and the time
    /// gone cover all; and a worker started again goes on counting them, as it does its
    /// events (the count went back to 0, and a Prometheus counter with it).
    #[test]
    fn a_device_that_comes_and_goes_all_week_keeps_its_notes_short_and_its_count_whole() {
        let dir = crate::fsio::test_dir("flapping");
        let notes = dir.join("device_w.txt");
        let open = || {
            let counter = Box::new(Counter::new(true));
            let mut imp = DeviceImporter::new("device.x", "w", counter, Vec::new(), true).unwrap();
            imp.notes = Some(notes.clone());
            imp.carry_on();
            imp
        };
        let flap = |imp: &mut DeviceImporter, times: u64| {
            for _ in 0..2 * times {
                next_event(imp).unwrap();
            }
            imp.write_notes();
        };
        let mut imp = open();
        flap(&mut imp, 1000);
        let text = std::fs::read_to_string(&notes).unwrap();
        let listed = |text: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix("device.gap."))
                .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        };
        assert!(text.contains("device.gaps = 1000\n"), "{text}");
        let want: Vec<u64> = (0..20).chain(980..1000).collect();
        assert_eq!(listed(&text), want);
        assert!(text.len() < 8 << 10, "{} bytes of notes", text.len());
        drop(imp);
        // The worker fails and is started again: it goes on from the earlier count.
        let mut again = open();
        flap(&mut again, 3);
        let text = std::fs::read_to_string(&notes).unwrap();
        assert!(text.contains("device.gaps = 1003\n"), "{text}");
        assert_eq!(listed(&text), [1000, 1001, 1002]);
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `pick` takes every spelling in its table and, for any other text, lists the choices
    /// once each, from the same table.
    #[test]
    fn pick_lists_its_own_choices_once_each() {
        const COUPLING: Key<str> = crate::key!("coupling", "dc", "dc or ac");
        let choices = [("dc", 'd'), ("DC", 'd'), ("ac", 'a'), ("AC", 'a')];
        let read = |text: &str| {
            let cfg =
                crate::worker::Config::from_json("scope", serde_json::json!({ "coupling": text }));
            pick(&cfg, COUPLING, &choices).map_err(|e| e.to_string())
        };
        assert_eq!(read("AC"), Ok('a'));
        assert_eq!(read("dc"), Ok('d'));
        let e = read("Dc").unwrap_err();
        assert!(
            e.contains("coupling") && e.ends_with("'Dc': dc or ac"),
            "{e}"
        );
        let one = crate::worker::Config::new("w", serde_json::Map::new());
        assert_eq!(pick(&one, COUPLING, &[("dc", 1)]).ok(), Some(1));
    }
}
