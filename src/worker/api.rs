//! The API a worker function is written against: one trait per template.
//!
//! The engine owns the rings and the loop; a function only sees events. It borrows each input
//! event in place (zero copy) as an [`EventRef`] and fills output events in place through
//! [`EventMut`]. Nothing here allocates per event, and a function must not either: whatever
//! scratch space it needs it allocates in its constructor.
//!
//! A function reports bad input or a failed write as a [`WorkerError`]; it never panics on
//! data. The engine names the worker and the event in the message.

use crate::dtype::{Column, ColumnError, ColumnMut, Dtype, Element, Metadata};
use std::path::PathBuf;

/// One event borrowed read-only from a ring slot.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    /// The records, `data_length × record_size` bytes, laid out as numpy would.
    pub data: &'a [u8],
    /// counter, timestamp, deadtime.
    pub meta: Metadata,
    /// The buffer's record type.
    pub dtype: &'a Dtype,
}

impl<'a> EventRef<'a> {
    /// The field `name` as a column of `T` across the event's records.
    pub fn column<T: Element>(&self, name: &str) -> Result<Column<'a, T>, ColumnError> {
        Column::new(self.dtype, self.data, name)
    }

    /// Records in the event.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.record_size()
    }

    /// True when the event holds no records.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// One event being written in place into a ring slot.
pub struct EventMut<'a> {
    /// The records to fill.
    pub data: &'a mut [u8],
    /// counter, timestamp, deadtime. Importers fill `timestamp`; the engine fills `counter` and
    /// `deadtime` for Importers. Filters and Processors start from the input's metadata.
    /// On entry to [`Importer::next`], `deadtime` holds the seconds the engine waited for
    /// room in the sink since the previous call (a source that paces itself in wall time
    /// treats them as time it could not deliver: dead time, not a backlog to catch up).
    pub meta: &'a mut Metadata,
    /// The buffer's record type.
    pub dtype: &'a Dtype,
}

impl<'a> EventMut<'a> {
    /// The field `name` as a writable column of `T`.
    pub fn column_mut<T: Element>(&mut self, name: &str) -> Result<ColumnMut<'_, T>, ColumnError> {
        ColumnMut::new(self.dtype, self.data, name)
    }

    /// The field `name` as a read-only column of `T`.
    pub fn column<T: Element>(&self, name: &str) -> Result<Column<'_, T>, ColumnError> {
        Column::new(self.dtype, self.data, name)
    }

    /// Copies `bytes` into the records; a slot of another size is [`WorkerError::SlotSize`]
    /// of `function`.
    pub(crate) fn copy_data_from(
        &mut self,
        function: &str,
        bytes: &[u8],
    ) -> Result<(), WorkerError> {
        if self.data.len() != bytes.len() {
            return Err(WorkerError::SlotSize {
                function: function.into(),
                slot: self.data.len(),
                want: bytes.len(),
                unit: "bytes",
            });
        }
        self.data.copy_from_slice(bytes);
        Ok(())
    }

    /// Records in the event.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.record_size()
    }

    /// True when the event holds no records.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Why a worker function could not go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The function's config is wrong (caught at construction, before the run).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A buffer does not have the field or type the function needs.
    #[error("buffer '{buffer}': {source}")]
    Column {
        /// The buffer.
        buffer: String,
        /// What is wrong.
        #[source]
        source: ColumnError,
    },
    /// A device failed.
    #[error(transparent)]
    Device(#[from] daq_drivers::DriverError),
    /// Writing output failed (disk full, file gone).
    #[error("{what}: {source}")]
    Io {
        /// What was being written, and where.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The worker's buffers do not fit its function.
    #[error(transparent)]
    Wiring(#[from] WiringError),
    /// The function's output failed: the source is the output's own error (an
    /// `export::ExportError`, a Kafka error), as it is, so a caller can downcast it (a full
    /// disk says how many events are safe).
    #[error(transparent)]
    Output(Box<dyn std::error::Error + Send + Sync>),
    /// Something the function did failed in a library or a layer below; `doing` says what
    /// (and for which worker), the source how.
    #[error("{doing}: {source}")]
    Failed {
        /// What the function was doing, e.g. "worker 'k': Kafka producer".
        doing: String,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be encoded as JSON (a file the function writes beside the run).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The sink slot the engine handed out is not the size the function was built for: a
    /// defect of the engine, not of the data.
    #[error("{function}: the sink slot holds {slot} {unit}, expected {want}")]
    SlotSize {
        /// The function (or the worker and function).
        function: String,
        /// What the slot holds.
        slot: usize,
        /// What the function writes.
        want: usize,
        /// "bytes" or "records".
        unit: &'static str,
    },
    /// The function asked for a sink it does not have (setup order, from 0).
    #[error("no sink number {0}")]
    NoSink(usize),
    /// A sink ring has had no room for an hour: a reader is stuck.
    #[error("ring '{ring}' has had no room for an hour; is a reader stuck?")]
    Stalled {
        /// The ring's name.
        ring: String,
    },
    /// A sink ring refused a claim right after it reported room: the ring protocol broke.
    #[error("a sink ring lost its room between wait and claim (ring protocol broken)")]
    LostRoom,
    /// Anything else, said plainly (a message that is only ever shown).
    #[error("{0}")]
    Other(String),
}

impl WorkerError {
    /// A failure of the function's output ([`WorkerError::Output`]).
    pub fn output(e: impl std::error::Error + Send + Sync + 'static) -> WorkerError {
        WorkerError::Output(Box::new(e))
    }

    /// A failure while `doing` something ([`WorkerError::Failed`]).
    pub fn failed(
        doing: impl Into<String>,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> WorkerError {
        WorkerError::Failed {
            doing: doing.into(),
            source: e.into(),
        }
    }
}

/// How a worker's buffers fail to fit its function: found when the worker is built, so
/// `check` reports it before a run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WiringError {
    /// Too many or too few buffers on one side.
    #[error("worker '{worker}' needs exactly {want}, has {has}")]
    Count {
        /// The worker.
        worker: String,
        /// What it needs, e.g. "one source buffer".
        want: &'static str,
        /// How many it has.
        has: usize,
    },
    /// No sink at all.
    #[error("worker '{worker}' needs at least one sink buffer")]
    NoSink {
        /// The worker.
        worker: String,
    },
    /// The buffer lacks a field the function reads or writes.
    #[error("buffer '{buffer}' has no field '{field}' (its fields: {fields})")]
    NoField {
        /// The buffer.
        buffer: String,
        /// The field asked for.
        field: String,
        /// The fields it has, comma-separated.
        fields: String,
    },
    /// The field is not one plain little-endian number.
    #[error(
        "buffer '{buffer}' field '{field}' is {ty} ({kind}): this function reads one \
         little-endian number per record (int8 … int64, uint8 … uint64, float32, float64); \
         pass-through functions (misc.copy, export.hdf5, export.csv, export.drain, bench.sink) \
         take any type"
    )]
    NotANumber {
        /// The buffer.
        buffer: String,
        /// The field.
        field: String,
        /// Its type as written in a setup.
        ty: String,
        /// Its type in words.
        kind: String,
    },
    /// A sink of a function that copies events differs from its source.
    #[error(
        "worker '{worker}': sink '{sink}' ({sink_shape}) must have the same data_dtype and \
         data_length as source '{source_buffer}' ({source_shape})"
    )]
    UnlikeSource {
        /// The worker.
        worker: String,
        /// The sink.
        sink: String,
        /// Its `data_length × data_dtype`.
        sink_shape: String,
        /// The source.
        source_buffer: String,
        /// Its `data_length × data_dtype`.
        source_shape: String,
    },
    /// A feature sink whose events are not one record each.
    #[error(
        "worker '{worker}': {what} '{sink}' must have data_length 1 (one record per {per}), has {has}"
    )]
    NotOneRecord {
        /// The worker.
        worker: String,
        /// "feature sink" or "sink".
        what: &'static str,
        /// The sink.
        sink: String,
        /// What one record stands for.
        per: &'static str,
        /// Its data_length.
        has: usize,
    },
    /// A sink field the function does not produce.
    #[error(
        "worker '{worker}': sink '{sink}' has field '{field}', which {function} does not \
         produce; choose fields from: {allowed}"
    )]
    UnknownOutput {
        /// The worker.
        worker: String,
        /// The sink.
        sink: String,
        /// The field.
        field: String,
        /// "this function" or its name.
        function: &'static str,
        /// The fields it can produce, comma-separated.
        allowed: String,
    },
    /// A sink lacks a field the function must write.
    #[error("worker '{worker}': sink '{sink}' needs a field '{field}'{example}")]
    MissingOutput {
        /// The worker.
        worker: String,
        /// The sink.
        sink: String,
        /// The field.
        field: &'static str,
        /// An example declaration, e.g. " (e.g. rate: float64)", or empty.
        example: &'static str,
    },
    /// A function that must see every event runs in several processes.
    #[error(
        "worker '{worker}': {function} must see every event{of}; set number_of_processes: 1 (it has {has})"
    )]
    OneProcess {
        /// The worker.
        worker: String,
        /// The function's name.
        function: &'static str,
        /// " of both sources" or empty.
        of: &'static str,
        /// Its number_of_processes.
        has: usize,
    },
    /// An importer runs in several processes, each of which would open the same thing and
    /// take all of it.
    #[error(
        "worker '{worker}': {function} in {has} processes would open {what} {has} times; set \
         number_of_processes: 1{instead}"
    )]
    OneOpener {
        /// The worker.
        worker: String,
        /// The function's name.
        function: &'static str,
        /// What it opens ("its device").
        what: &'static str,
        /// Its number_of_processes.
        has: usize,
        /// What to do instead (" (a second device gets a worker of its own)"), or empty.
        instead: &'static str,
    },
    /// A buffer without fields where the function needs a default field.
    #[error("buffer '{buffer}' has no fields")]
    NoFields {
        /// The buffer.
        buffer: String,
    },
    /// A sink whose events hold no records where the function writes at least one.
    #[error("sink '{sink}' has data_length 0: {why}")]
    Empty {
        /// The sink.
        sink: String,
        /// Why it needs records, e.g. "a trace needs at least one sample".
        why: &'static str,
    },
    /// A sink field the function only produces when a config key is given.
    #[error(
        "worker '{worker}': sink field '{field}' is only possible with config key '{key}' \
         (as in scipy's find_peaks)"
    )]
    OutputNeedsKey {
        /// The worker.
        worker: String,
        /// The sink field.
        field: String,
        /// The config key that makes the function compute it.
        key: &'static str,
    },
    /// The sink of a function that thins events out by a factor has the wrong shape.
    #[error(
        "worker '{worker}': sink '{sink}' must have the dtype of source '{source_buffer}' \
         ({dtype}) and data_length {length} / {factor} = {want} (≥ 1); it has {has}"
    )]
    /// (Its text fields are boxed `str`s, which keeps `WorkerError` small.)
    NotThinned {
        /// The worker.
        worker: Box<str>,
        /// The sink.
        sink: Box<str>,
        /// The source.
        source_buffer: Box<str>,
        /// The source's data_dtype.
        dtype: Box<str>,
        /// The source's data_length.
        length: usize,
        /// The factor.
        factor: usize,
        /// The sink's data_length it needs.
        want: usize,
        /// The sink's `data_length × data_dtype`.
        has: Box<str>,
    },
}

/// What an Importer produced on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Produced {
    /// The event was written; publish it.
    Event,
    /// Nothing this time (no trigger within the timeout); nothing is published.
    Idle,
    /// The source is exhausted; the run ends when the rings drain.
    End,
}

/// Takes data from a device or generator into its sink.
pub trait Importer: Send {
    /// Fill `out` with the next event, waiting at most a short while (≈100 ms) so the engine
    /// can react to a stop. Fill `out.meta.timestamp` with the time the data was taken.
    fn next(&mut self, out: &mut EventMut<'_>) -> Result<Produced, WorkerError>;

    /// The run was paused (`true`) or resumed (`false`); called on each change, before the
    /// next call to [`next`](Importer::next). While a run is paused the engine goes on calling
    /// `next` and discards what it gives, so that a live device does not stall (mimoCoRB2's
    /// pause): that is the default, which returns `false`. A source whose data waits for it
    /// — a Kafka topic, recorded files — stops taking data instead, returns
    /// [`Produced::Idle`] from `next` until it is resumed, and returns `true` here: nothing
    /// of it is discarded by a pause.
    fn pause(&mut self, _paused: bool) -> bool {
        false
    }

    /// Facts about the source to keep with the run (device serial, firmware, seed).
    fn run_metadata(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// This process was started again after an earlier one of its worker ended: the earlier
    /// ones published or counted lost `taken` events into its sink. Called once, before the
    /// first [`next`](Importer::next), and only when `taken` > 0. The default ignores it.
    fn restarted(&mut self, _taken: u64) {}
}

/// Which sinks an event goes to: bit `i` set means sink `i` (in setup order). Sinks whose bit
/// is clear are not touched at all: no slot is taken in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkMask(pub u64);

impl SinkMask {
    /// To no sink (the event is discarded).
    pub const NONE: SinkMask = SinkMask(0);
    /// To every sink.
    pub const ALL: SinkMask = SinkMask(u64::MAX);

    /// True when sink `i` gets the event.
    pub fn contains(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
}

impl From<bool> for SinkMask {
    fn from(b: bool) -> Self {
        if b {
            SinkMask::ALL
        } else {
            SinkMask::NONE
        }
    }
}

/// Passes each event unchanged to all, some or none of its sinks.
pub trait Filter: Send {
    /// Decide where `event` goes. The engine copies it, metadata included.
    fn select(&mut self, event: &EventRef<'_>) -> Result<SinkMask, WorkerError>;
}

/// Where a Processor writes its results.
pub trait Emit {
    /// Take a slot in sink `sink` (setup order), let `fill` write it, and publish it. The
    /// slot's metadata starts as the input event's. Under `block` this waits for room; under
    /// `drop` a full sink counts the event as lost and `fill` is not called.
    fn emit(
        &mut self,
        sink: usize,
        fill: &mut dyn FnMut(&mut EventMut<'_>) -> Result<(), WorkerError>,
    ) -> Result<(), WorkerError>;
}

/// Turns each event into zero or more results per sink.
pub trait Processor: Send {
    /// Process one event, emitting results through `out`.
    fn process(&mut self, event: &EventRef<'_>, out: &mut dyn Emit) -> Result<(), WorkerError>;

    /// For a function with several sources: process one event of source `source` (its index
    /// in the setup's `source_list`). Events of one source come in their ring's order; the
    /// sources are interleaved as their events arrive. The default ignores the index.
    fn process_from(
        &mut self,
        source: usize,
        event: &EventRef<'_>,
        out: &mut dyn Emit,
    ) -> Result<(), WorkerError> {
        let _ = source;
        self.process(event, out)
    }

    /// For a function with several sources: whether it takes an event of `source` now. A
    /// function that pairs events across sources says no to a source that has run too far
    /// ahead of the others; its events then wait in their ring (under `block` its writer
    /// waits, under `drop` the ring's overflow is counted). Asked before every event.
    fn accepts(&self, source: usize) -> bool {
        let _ = source;
        true
    }

    /// Called once after the last event; may emit final results and write summaries.
    fn finish(&mut self, _out: &mut dyn Emit) -> Result<(), WorkerError> {
        Ok(())
    }
}

/// Consumes every event of its source.
pub trait Exporter: Send {
    /// Take one event.
    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError>;

    /// Called about once a second while the run goes on, and when idle: write what is
    /// buffered so a crash loses at most this interval.
    fn flush(&mut self) -> Result<(), WorkerError> {
        Ok(())
    }

    /// Called once after the last event: write everything and close files.
    fn finish(&mut self) -> Result<(), WorkerError> {
        Ok(())
    }

    /// Lines for the end-of-run summary on the terminal (fit results, totals), asked for
    /// after `finish`.
    fn summary(&self) -> Vec<String> {
        Vec::new()
    }

    /// Told just before `finish`: events lost in the whole run so far (every buffer under
    /// `policy: drop` that was full), for exporters that record it with their output.
    fn run_lost(&mut self, _events_lost: u64) {}

    /// For an exporter whose output outlives its process: how many events the output of
    /// this worker's earlier processes in this run keeps (0 in the first process). After a
    /// restart, what the earlier processes were delivered beyond this is counted lost, so the
    /// books match the files. `None`: the output is not kept across processes (not counted).
    fn kept_from_earlier(&self) -> Option<u64> {
        None
    }

    /// For an exporter whose output can fail part way (a full disk): how many of the events
    /// this worker was delivered in this run (all its processes) its output keeps, asked when
    /// the process ends with an error. What was delivered beyond this is counted lost, so the
    /// books match the files. `None`: not counted.
    fn events_kept(&self) -> Option<u64> {
        None
    }

    /// For an exporter whose output drops events by its own policy while the run goes on
    /// (Kafka: a failed delivery, a full spool): how many of the events this process was
    /// delivered its output lost so far. Asked after every flush and after `finish`; the
    /// increase is counted lost in the source ring (released unread), so the books show it
    /// while the run goes on.
    fn events_dropped(&self) -> u64 {
        0
    }
}

/// Looks at copies of the latest events, never holding the writer back.
pub trait Observer: Send {
    /// A copy of a recent event: the latest one, offered at most every
    /// [`interval`](Observer::interval) (and every 0.2 s at the longest, so that the end of
    /// the run is seen soon).
    fn observe(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError>;

    /// The least time between two events it wants (its `update_interval`, if it has one).
    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(200)
    }

    /// Called once at the end.
    fn finish(&mut self) -> Result<(), WorkerError> {
        Ok(())
    }
}

/// A bad config value, found when the function is built (before the run starts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("worker '{worker}', config key '{key}': {problem}")]
pub struct ConfigError {
    /// The worker's name in the setup.
    pub worker: String,
    /// The key.
    pub key: String,
    /// What is wrong and what was expected.
    pub problem: String,
}

/// A worker's merged `config:` (base_config under the worker's own), as JSON-like values,
/// with typed getters whose errors name the worker and key.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The worker's name, for messages.
    pub worker: String,
    /// The merged values.
    pub values: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    /// A config for `worker` from a JSON object.
    pub fn new(
        worker: impl Into<String>,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Config {
            worker: worker.into(),
            values,
        }
    }

    /// A config for `worker` from a JSON value: the keys of an object, none of anything else.
    pub(crate) fn from_json(worker: impl Into<String>, values: serde_json::Value) -> Self {
        let values = match values {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Config::new(worker, values)
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            worker: self.worker.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// Reads `key`: a typed [`Key`](super::Key) gives its value or its declared default
    /// (`Result<T>`), a [`MaybeKey`](super::MaybeKey) its value if given
    /// (`Result<Option<T>>`); a wrong type is a [`ConfigError`] naming the worker and key.
    /// A key name (`get("level")`, the untyped API for plugins) gives the raw value.
    pub fn get<K: super::Lookup>(&self, key: K) -> K::Out<'_> {
        key.look_up(self)
    }

    /// The value of `key` if the setup gives it, `None` when it leaves the declared default:
    /// for a default that depends on other keys.
    pub fn given<T: super::KeyValue + ?Sized>(
        &self,
        key: super::Key<T>,
    ) -> Result<Option<T::Out<'_>>, ConfigError> {
        super::key::given::<T>(self, key.name)
    }

    /// `seconds`, the value of time key `key`, as a [`Duration`](std::time::Duration):
    /// refused unless it is a number from 0 to [`Config::LONGEST`], the longest wait a key
    /// may ask for (beyond it, a clock's arithmetic overflows, and no run waits that long).
    pub fn duration(&self, key: &str, seconds: f64) -> Result<std::time::Duration, ConfigError> {
        if (0.0..=Self::LONGEST).contains(&seconds) {
            Ok(std::time::Duration::from_secs_f64(seconds))
        } else {
            Err(self.error(
                key,
                format!(
                    "{seconds:?} s: a time must be from 0 to a year ({} s)",
                    Self::LONGEST
                ),
            ))
        }
    }

    /// The longest time a key may give, in seconds: a year.
    pub const LONGEST: f64 = 365.0 * 86400.0;

    /// An output file name (without its extension) from `key`, or `absent` when the setup
    /// does not give one: checked to be a plain name as [`Config::file_name_or`] does.
    pub fn file_name<'a>(
        &'a self,
        key: super::MaybeKey<str>,
        absent: &'a str,
    ) -> Result<&'a str, ConfigError> {
        let name = self.get(key)?.unwrap_or(absent);
        self.plain_file_name(key.name, name)
    }

    fn plain_file_name<'a>(&self, key: &str, name: &'a str) -> Result<&'a str, ConfigError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(self.error(
                key,
                format!(
                    "'{name}' is not a plain file name: output files stay inside the run \
                     directory, so give a name without directories (no '/' or '..')"
                ),
            ));
        }
        Ok(name)
    }

    fn typed<T>(
        &self,
        key: &str,
        what: &str,
        conv: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.values.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => conv(v)
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected {what}, found {v}"))),
        }
    }

    /// A number, or `default` when absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        Ok(self
            .typed(key, "a number", |v| v.as_f64())?
            .unwrap_or(default))
    }

    /// A required number.
    pub fn f64(&self, key: &str) -> Result<f64, ConfigError> {
        self.typed(key, "a number", |v| v.as_f64())?
            .ok_or_else(|| self.error(key, "is required"))
    }

    /// A whole number ≥ 0, or `default` when absent.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        Ok(self
            .typed(key, "a whole number ≥ 0", |v| {
                v.as_u64().and_then(|u| usize::try_from(u).ok())
            })?
            .unwrap_or(default))
    }

    /// A whole number (may be negative), or `default` when absent.
    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64, ConfigError> {
        Ok(self
            .typed(key, "a whole number", |v| v.as_i64())?
            .unwrap_or(default))
    }

    /// true/false, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self
            .typed(key, "true or false", |v| v.as_bool())?
            .unwrap_or(default))
    }

    /// A string, or `default` when absent.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, ConfigError> {
        match self.values.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(v) => Err(self.error(key, format!("expected a string, found {v}"))),
        }
    }

    /// A file name for an output in the run directory (without its extension), or
    /// `default` when absent: a plain name, so the file stays inside the run directory —
    /// no `/`, no `\\`, not `.` or `..`, not empty.
    pub fn file_name_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, ConfigError> {
        let name = self.str_or(key, default)?;
        self.plain_file_name(key, name)
    }

    /// A list of numbers, or `None` when absent.
    pub fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>, ConfigError> {
        self.typed(key, "a list of numbers", |v| {
            v.as_array()?.iter().map(|x| x.as_f64()).collect()
        })
    }

    /// A list of strings (a single string counts as a list of one), or `None` when absent.
    pub fn str_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.typed(key, "a list of strings", |v| match v {
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().map(String::from)).collect(),
            _ => None,
        })
    }
}

/// What a function is given when it is built, in the worker process, before the run starts.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// The worker's name in the setup.
    pub worker: String,
    /// Which of the worker's `number_of_processes` processes this is (0-based), and how many.
    pub process: (usize, usize),
    /// The merged config.
    pub config: Config,
    /// Source buffers in setup order: name, dtype, data_length.
    pub sources: Vec<BufferShape>,
    /// Sink buffers in setup order.
    pub sinks: Vec<BufferShape>,
    /// Observed buffers in setup order.
    pub observes: Vec<BufferShape>,
    /// The run directory, where output files go.
    pub run_dir: PathBuf,
    /// The directory of the setup file (relative paths in config are relative to it).
    pub setup_dir: PathBuf,
}

/// A buffer as a function sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferShape {
    /// Its name.
    pub name: String,
    /// Its record type.
    pub dtype: Dtype,
    /// Records per event.
    pub data_length: usize,
}

impl BufferShape {
    /// A buffer `name` of `data_length` records of the `(field, type)` pairs `fields`
    /// (types as [`Dtype::parse`] reads them).
    pub fn parse<'a>(
        name: &str,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        data_length: usize,
    ) -> Result<BufferShape, crate::dtype::DtypeError> {
        Ok(BufferShape {
            name: name.to_string(),
            dtype: Dtype::parse(fields)?,
            data_length,
        })
    }
}

impl BuildContext {
    /// Refuses more than one process for `function`, which must see every event (`of`:
    /// " of both sources", or empty).
    pub fn one_process(&self, function: &'static str, of: &'static str) -> Result<(), WiringError> {
        if self.process.1 > 1 {
            return Err(WiringError::OneProcess {
                worker: self.worker.clone(),
                function,
                of,
                has: self.process.1,
            });
        }
        Ok(())
    }

    /// Refuses more than one process for importer `function`, each of which would open
    /// `what` and take all of it: a device (a second open of the same port, USB device or
    /// board fails, takes its bytes or configures it anew under the first), or files
    /// replayed (every event twice). `instead`: what to do instead, or empty.
    pub fn one_opener(
        &self,
        function: &'static str,
        what: &'static str,
        instead: &'static str,
    ) -> Result<(), WiringError> {
        if self.process.1 > 1 {
            return Err(WiringError::OneOpener {
                worker: self.worker.clone(),
                function,
                what,
                has: self.process.1,
                instead,
            });
        }
        Ok(())
    }

    /// A minimal context for tests and benchmarks: one worker, no run directory.
    pub fn for_test(
        worker: &str,
        config: serde_json::Value,
        sources: Vec<BufferShape>,
        sinks: Vec<BufferShape>,
    ) -> BuildContext {
        BuildContext {
            worker: worker.to_string(),
            process: (0, 1),
            config: Config::from_json(worker, config),
            sources,
            sinks,
            observes: Vec::new(),
            run_dir: std::env::temp_dir(),
            setup_dir: PathBuf::from("."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_getters_name_worker_and_key() {
        let c = Config::from_json(
            "trig",
            json!({"level": 0.5, "n": 3, "edge": "rising", "chs": ["a", "b"], "bad": "x"}),
        );
        assert_eq!(c.f64("level").unwrap(), 0.5);
        assert_eq!(c.f64_or("missing", 2.0).unwrap(), 2.0);
        assert_eq!(c.usize_or("n", 0).unwrap(), 3);
        assert_eq!(c.str_or("edge", "falling").unwrap(), "rising");
        assert_eq!(c.str_list("chs").unwrap().unwrap(), vec!["a", "b"]);
        let e = c.f64("bad").unwrap_err();
        assert_eq!(
            e.to_string(),
            "worker 'trig', config key 'bad': expected a number, found \"x\""
        );
        assert!(c
            .f64("missing")
            .unwrap_err()
            .to_string()
            .contains("is required"));
        assert!(c.usize_or("level", 0).is_err());
    }

    /// A time past a year is refused with its value written as short as it reads in the
    /// setup: before, `1e300` was printed with all its 301 digits.
    #[test]
    fn a_time_past_a_year_is_refused_with_its_value_as_written() {
        let c = Config::from_json("w", json!({}));
        let said = |s: f64| c.duration("t", s).unwrap_err().to_string();
        assert_eq!(
            said(1e300),
            "worker 'w', config key 't': 1e300 s: a time must be from 0 to a year (31536000 s)"
        );
        assert!(said(-1e-20).contains("'t': -1e-20 s: "), "{}", said(-1e-20));
        assert!(said(31_536_001.0).contains("'t': 31536001.0 s: "));
        assert!(said(f64::NAN).contains("'t': NaN s: "));
        assert_eq!(c.duration("t", 31_536_000.0).unwrap().as_secs(), 31_536_000);
    }

    #[test]
    fn sink_mask_bits() {
        assert!(SinkMask::from(true).contains(3));
        assert!(!SinkMask::from(false).contains(0));
        assert!(SinkMask(0b10).contains(1) && !SinkMask(0b10).contains(0));
        assert!(!SinkMask::ALL.contains(64));
    }
}
