//! Events ⇄ ESS FlatBuffers messages (ev44, da00) and the run start/stop commands (pl72,
//! 6s4t), pure: no I/O, unit-tested on bytes.
//!
//! - **da00** (any buffer): one variable per field, named as the field, `shape` =
//!   `[data_length, subarray dims…]` with axes `sample`, `dim_1`, …, `data` the field's
//!   values in C order (the records de-interleaved), `data_type` the field's numpy type; two
//!   more variables carry the event's metadata, `daq_counter` (int64, shape `[1]`) and
//!   `daq_deadtime` (float64, `[1]`); the message's `timestamp` is the event's time in ns
//!   since the epoch. Where a field holds ADC counts whose scale the importer wrote
//!   ([`Encoder::set_scales`], `scales_<worker>.txt`), two attribute variables per such
//!   field go with every message: `<field>.volts_per_count` and `<field>.offset_volts`
//!   (float64, `[1]`, unit `V`, `source` naming the file), the names of the HDF5 export's
//!   attributes, so that `volts = counts × volts_per_count + offset_volts` here too.
//! - **ev44** (feature buffers with a time): `reference_time` = `[event time in ns since the
//!   epoch]`, `reference_time_index` = `[0]`, `time_of_flight` = the time field of every
//!   record in ns, `pixel_id` = the pixel field (e.g. `channel`) when there is one,
//!   `message_id` = the event counter. Only time and pixel travel: the other fields are not
//!   in ev44.
//!
//! - **f144** ([`log_data`]): one slow value (a rate, a count, a device reading) as a long or
//!   a double, with its time in ns since the epoch.
//! - **al00** ([`alarm`]): a source's alarm state (OK, MINOR, MAJOR) with a message.
//! - **x5f2** ([`status`]): the service's periodic status, its details as JSON.
//!
//! A da00 message's layout depends on the buffer's shape only, never on the values: the
//! encoder builds it once (and again when the scales become known) and then writes each
//! event's values, counter, dead time and time straight into that message, one pass over the
//! event (building it anew zero-filled scratch space, gathered into it and copied that into
//! the builder: three passes).
//!
//! Guarantees: an [`Encoder`] reuses its da00 message, its builder and scratch space (ev44),
//! so after the first event encoding allocates nothing; a [`Decoder`] writes straight into the
//! slot and reports a message that does not fit the buffer as a [`WireError`], never panics
//! on bytes.

use super::schemas::{al00, da00, ev44, f144, pl72, run_stop_6s4t, x5f2};
use crate::dtype::{Base, ByteOrder, Dtype, Field, Metadata, Scalar};
use flatbuffers::FlatBufferBuilder;

/// The ESS schema a buffer is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// da00_DataArray.
    Da00,
    /// Event44Message.
    Ev44,
}

impl Format {
    /// The 4-character file identifier.
    pub fn id(self) -> &'static str {
        match self {
            Format::Da00 => "da00",
            Format::Ev44 => "ev44",
        }
    }
}

/// The da00 variable with the event counter.
pub const COUNTER: &str = "daq_counter";
/// The da00 variable with the event's dead time.
pub const DEADTIME: &str = "daq_deadtime";
pub use crate::run_dir::scales::{FieldScale, OFFSET_VOLTS, VOLTS_PER_COUNT};

/// The names of a field variable's axes: the records of the event (the samples of a
/// waveform), then a subarray field's dimensions.
const AXES: [&str; 1 + crate::dtype::MAX_DIMS] = ["sample", "dim_1", "dim_2", "dim_3", "dim_4"];

/// Why a message could not be made or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The buffer's dtype cannot travel in the schema.
    #[error("{0}")]
    Unsupported(String),
    /// A received message is not what the buffer takes.
    #[error("{0}")]
    BadMessage(String),
}

/// The file identifier (bytes 4..8) of a FlatBuffers message, if it has one.
pub fn schema_of(message: &[u8]) -> Option<&str> {
    message.get(4..8).and_then(|b| std::str::from_utf8(b).ok())
}

/// The da00 type of a field's element.
fn da00_type(s: Scalar) -> da00::da00_dtype {
    use da00::da00_dtype as T;
    match s {
        Scalar::I8 => T::int8,
        Scalar::U8 => T::uint8,
        Scalar::I16 => T::int16,
        Scalar::U16 => T::uint16,
        Scalar::I32 => T::int32,
        Scalar::U32 => T::uint32,
        Scalar::I64 => T::int64,
        Scalar::U64 => T::uint64,
        Scalar::F32 => T::float32,
        Scalar::F64 => T::float64,
    }
}

/// The element of `f` as da00 carries it: a little-endian number (one, or a subarray of
/// them, whose dimensions follow the sample axis in the variable's shape), or why not.
fn da00_scalar(f: &Field) -> Result<Scalar, WireError> {
    match (f.ty.base, f.ty.order) {
        (Base::Num(s), ByteOrder::Little) => Ok(s),
        (Base::Num(s), ByteOrder::Big) if s.size() == 1 => Ok(s),
        _ => Err(WireError::Unsupported(format!(
            "field '{}' ({}): da00 carries little-endian numbers only",
            f.name,
            f.ty.numpy_spec()
        ))),
    }
}

/// A numeric field read as f64 (the time and pixel of ev44).
#[derive(Clone, Debug)]
struct NumField {
    offset: usize,
    scalar: Scalar,
}

impl NumField {
    fn of(dtype: &Dtype, name: &str, what: &str) -> Result<NumField, WireError> {
        let f = dtype.field(name).ok_or_else(|| {
            WireError::Unsupported(format!("the buffer has no field '{name}' ({what})"))
        })?;
        match (f.ty.base, f.ty.order, f.ty.shape.is_scalar()) {
            (Base::Num(s), ByteOrder::Little, true) => Ok(NumField {
                offset: f.offset,
                scalar: s,
            }),
            _ => Err(WireError::Unsupported(format!(
                "field '{name}' ({what}) is {}: ev44 needs a little-endian number per record",
                f.ty.numpy_spec()
            ))),
        }
    }

    fn read(&self, rec: &[u8]) -> f64 {
        let b = &rec[self.offset..self.offset + self.scalar.size()];
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        match self.scalar {
            Scalar::I8 => b[0] as i8 as f64,
            Scalar::U8 => b[0] as f64,
            Scalar::I16 => i16::from_le_bytes([a[0], a[1]]) as f64,
            Scalar::U16 => u16::from_le_bytes([a[0], a[1]]) as f64,
            Scalar::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
            Scalar::U32 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
            Scalar::F32 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
            Scalar::I64 => i64::from_le_bytes(a) as f64,
            Scalar::U64 => u64::from_le_bytes(a) as f64,
            Scalar::F64 => f64::from_le_bytes(a),
        }
    }

    fn write(&self, rec: &mut [u8], v: f64) {
        let out = &mut rec[self.offset..self.offset + self.scalar.size()];
        match self.scalar {
            Scalar::I8 => out.copy_from_slice(&(v.round() as i8).to_le_bytes()),
            Scalar::U8 => out.copy_from_slice(&(v.round() as u8).to_le_bytes()),
            Scalar::I16 => out.copy_from_slice(&(v.round() as i16).to_le_bytes()),
            Scalar::U16 => out.copy_from_slice(&(v.round() as u16).to_le_bytes()),
            Scalar::I32 => out.copy_from_slice(&(v.round() as i32).to_le_bytes()),
            Scalar::U32 => out.copy_from_slice(&(v.round() as u32).to_le_bytes()),
            Scalar::I64 => out.copy_from_slice(&(v.round() as i64).to_le_bytes()),
            Scalar::U64 => out.copy_from_slice(&(v.round() as u64).to_le_bytes()),
            Scalar::F32 => out.copy_from_slice(&(v as f32).to_le_bytes()),
            Scalar::F64 => out.copy_from_slice(&v.to_le_bytes()),
        }
    }
}

/// How ev44's time of flight and pixel id come from (and go back into) a buffer's records.
#[derive(Clone, Debug)]
pub struct Ev44Fields {
    time: NumField,
    /// Nanoseconds per unit of the time field (1e9 for a field in seconds).
    ns_per_unit: f64,
    pixel: Option<NumField>,
}

impl Ev44Fields {
    /// The time field `time` (in units of `seconds_per_unit` seconds) and the optional pixel
    /// field `pixel` of `dtype`.
    pub fn new(
        dtype: &Dtype,
        time: &str,
        seconds_per_unit: f64,
        pixel: Option<&str>,
    ) -> Result<Ev44Fields, WireError> {
        if !(seconds_per_unit > 0.0 && seconds_per_unit.is_finite()) {
            return Err(WireError::Unsupported(format!(
                "{seconds_per_unit}: the time unit must be a number of seconds above 0"
            )));
        }
        Ok(Ev44Fields {
            time: NumField::of(dtype, time, "the time of flight")?,
            ns_per_unit: seconds_per_unit * 1e9,
            pixel: pixel
                .map(|p| NumField::of(dtype, p, "the pixel id"))
                .transpose()?,
        })
    }
}

/// Event time (seconds since the epoch) → ns since the epoch, whole seconds and fraction
/// apart so that the product does not round (an f64 of ns since the epoch is only good to
/// 256 ns); [`epoch_seconds`] gives the same f64 back.
pub fn epoch_ns(seconds: f64) -> i64 {
    let whole = seconds.floor();
    (whole as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(((seconds - whole) * 1e9).round() as i64)
}

/// ns since the epoch → seconds since the epoch (the inverse of [`epoch_ns`]).
pub fn epoch_seconds(ns: i64) -> f64 {
    ns.div_euclid(1_000_000_000) as f64 + ns.rem_euclid(1_000_000_000) as f64 / 1e9
}

/// Makes messages of one buffer, reusing its memory.
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
    format: Format,
    dtype: Dtype,
    data_length: usize,
    source_name: String,
    ev44: Option<Ev44Fields>,
    /// da00: per field its element type and shape; ev44: unused.
    da00: Vec<(da00::da00_dtype, Vec<i64>)>,
    /// da00: the last message, whose values each event overwrites in place, and where they
    /// are in it (empty for ev44).
    da00_msg: Vec<u8>,
    da00_at: Da00Places,
    ints: Vec<i32>,
    pixels: Vec<i32>,
    vars: Vec<flatbuffers::WIPOffset<da00::da00_Variable<'static>>>,
    axes: Vec<flatbuffers::WIPOffset<&'static str>>,
    /// da00: how each field of counts becomes volts and where that came from, once known
    /// (the attribute variables' names, `<field>.volts_per_count` and `<field>.offset_volts`,
    /// made once here).
    scales: Vec<(String, f64, String, f64)>,
    scales_source: String,
}

impl Encoder {
    /// An encoder for events of `data_length` records of `dtype`, named `source_name`.
    /// `ev44` is required for [`Format::Ev44`].
    pub fn new(
        format: Format,
        dtype: &Dtype,
        data_length: usize,
        source_name: &str,
        ev44: Option<Ev44Fields>,
    ) -> Result<Encoder, WireError> {
        let mut da = Vec::new();
        if format == Format::Da00 {
            for f in dtype.fields() {
                let s = da00_scalar(f)?;
                let mut shape = vec![data_length as i64];
                shape.extend(f.ty.shape.dims().iter().map(|&d| d as i64));
                da.push((da00_type(s), shape));
            }
        } else if ev44.is_none() {
            return Err(WireError::Unsupported(
                "ev44 needs a time field".to_string(),
            ));
        }
        let mut enc = Encoder {
            fbb: FlatBufferBuilder::with_capacity(1024 + dtype.record_size() * data_length * 2),
            format,
            dtype: dtype.clone(),
            data_length,
            source_name: source_name.to_string(),
            ev44: if format == Format::Ev44 { ev44 } else { None },
            da00: da,
            da00_msg: Vec::new(),
            da00_at: Da00Places::default(),
            ints: Vec::with_capacity(data_length),
            pixels: Vec::with_capacity(data_length),
            vars: Vec::with_capacity(dtype.fields().len() + 3),
            axes: Vec::with_capacity(AXES.len()),
            scales: Vec::new(),
            scales_source: String::new(),
        };
        enc.lay_out_da00();
        Ok(enc)
    }

    /// da00: builds the message once (values zero) and finds where each event's values go.
    /// Its layout depends on the shape, the names and the scales only; `force_defaults`
    /// keeps the timestamp's slot in it even while it is 0.
    fn lay_out_da00(&mut self) {
        if self.format != Format::Da00 {
            return;
        }
        let zeros = vec![0u8; self.dtype.record_size() * self.data_length];
        self.fbb.reset();
        self.fbb.force_defaults(true);
        self.da00(&zeros, &Metadata::default());
        self.fbb.force_defaults(false);
        self.da00_msg.clear();
        self.da00_msg.extend_from_slice(self.fbb.finished_data());
        self.da00_at = Da00Places::of(&self.da00_msg, self.dtype.fields().len());
    }

    /// From now on, da00 messages carry each of these fields' scale as the attribute
    /// variables `<field>.volts_per_count` and `<field>.offset_volts`, their `source` saying
    /// where the values came from. Fields the encoder does not have are left out.
    pub fn set_scales(&mut self, scales: &[FieldScale], source: &str) {
        self.scales = scales
            .iter()
            .filter(|s| self.dtype.fields().iter().any(|f| f.name == s.field))
            .map(|s| {
                (
                    format!("{}.{VOLTS_PER_COUNT}", s.field),
                    s.volts_per_count,
                    format!("{}.{OFFSET_VOLTS}", s.field),
                    s.offset_volts,
                )
            })
            .collect();
        self.scales_source = source.to_string();
        self.lay_out_da00();
    }

    /// The schema used.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The source name in every message.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// One event (`data_length` records) as a message; the bytes live until the next call.
    pub fn encode(&mut self, data: &[u8], meta: &Metadata) -> Result<&[u8], WireError> {
        let rs = self.dtype.record_size();
        if data.len() != rs * self.data_length {
            return Err(WireError::BadMessage(format!(
                "event of {} bytes, expected {} records of {rs}",
                data.len(),
                self.data_length
            )));
        }
        match self.format {
            Format::Da00 => {
                let (msg, at) = (&mut self.da00_msg, &self.da00_at);
                for (f, &start) in self.dtype.fields().iter().zip(&at.fields) {
                    let size = f.ty.size();
                    let out = &mut msg[start..start + self.data_length * size];
                    gather(out, data, rs, f.offset, size);
                }
                let mut put = |at: usize, bytes: [u8; 8]| msg[at..at + 8].copy_from_slice(&bytes);
                put(at.counter, meta.counter.to_le_bytes());
                put(at.deadtime, meta.deadtime.to_le_bytes());
                put(at.timestamp, epoch_ns(meta.timestamp).to_le_bytes());
                Ok(&self.da00_msg)
            }
            Format::Ev44 => {
                self.fbb.reset();
                self.ev44(data, meta);
                Ok(self.fbb.finished_data())
            }
        }
    }

    fn da00(&mut self, data: &[u8], meta: &Metadata) {
        let rs = self.dtype.record_size();
        let fbb = &mut self.fbb;
        let vars = &mut self.vars;
        vars.clear();
        // One variable per field, then the two metadata variables.
        for (f, (ty, shape)) in self.dtype.fields().iter().zip(&self.da00) {
            let mut values = vec![0u8; data.len() / rs * f.ty.size()];
            gather(&mut values, data, rs, f.offset, f.ty.size());
            let name = fbb.create_string(&f.name);
            let shape_list = fbb.create_vector(shape);
            let bytes = fbb.create_vector(&values);
            self.axes.clear();
            for axis in AXES.iter().take(shape.len()) {
                self.axes.push(fbb.create_string(axis));
            }
            let axes = fbb.create_vector(&self.axes);
            vars.push(da00::da00_Variable::create(
                fbb,
                &da00::da00_VariableArgs {
                    name: Some(name),
                    data_type: *ty,
                    axes: Some(axes),
                    shape: Some(shape_list),
                    data: Some(bytes),
                    ..Default::default()
                },
            ));
        }
        for (name, ty, bytes) in [
            (COUNTER, da00::da00_dtype::int64, meta.counter.to_le_bytes()),
            (
                DEADTIME,
                da00::da00_dtype::float64,
                meta.deadtime.to_le_bytes(),
            ),
        ] {
            let name = fbb.create_string(name);
            let shape = fbb.create_vector(&[1i64]);
            let bytes = fbb.create_vector(&bytes);
            let source = fbb.create_string("daq-engine metadata");
            vars.push(da00::da00_Variable::create(
                fbb,
                &da00::da00_VariableArgs {
                    name: Some(name),
                    source: Some(source),
                    data_type: ty,
                    shape: Some(shape),
                    data: Some(bytes),
                    ..Default::default()
                },
            ));
        }
        for (vpc_name, vpc, offset_name, offset) in &self.scales {
            for (name, value) in [(vpc_name, vpc), (offset_name, offset)] {
                let name = fbb.create_string(name);
                let unit = fbb.create_string("V");
                let source = fbb.create_string(&self.scales_source);
                let shape = fbb.create_vector(&[1i64]);
                let bytes = fbb.create_vector(&value.to_le_bytes());
                vars.push(da00::da00_Variable::create(
                    fbb,
                    &da00::da00_VariableArgs {
                        name: Some(name),
                        unit: Some(unit),
                        source: Some(source),
                        data_type: da00::da00_dtype::float64,
                        shape: Some(shape),
                        data: Some(bytes),
                        ..Default::default()
                    },
                ));
            }
        }
        let list = fbb.create_vector(vars);
        let source_name = fbb.create_string(&self.source_name);
        let root = da00::da00_DataArray::create(
            fbb,
            &da00::da00_DataArrayArgs {
                source_name: Some(source_name),
                timestamp: epoch_ns(meta.timestamp),
                data: Some(list),
            },
        );
        da00::finish_da_00_data_array_buffer(fbb, root);
    }

    fn ev44(&mut self, data: &[u8], meta: &Metadata) {
        let rs = self.dtype.record_size();
        let Some(e) = &self.ev44 else { return };
        self.ints.clear();
        self.pixels.clear();
        for rec in data.chunks_exact(rs) {
            let ns = (e.time.read(rec) * e.ns_per_unit).round();
            self.ints
                .push(ns.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
            if let Some(p) = &e.pixel {
                self.pixels.push(p.read(rec) as i32);
            }
        }
        let fbb = &mut self.fbb;
        let source_name = fbb.create_string(&self.source_name);
        let reference_time = fbb.create_vector(&[epoch_ns(meta.timestamp)]);
        let reference_time_index = fbb.create_vector(&[0i32]);
        let time_of_flight = fbb.create_vector(&self.ints);
        let pixel_id = fbb.create_vector(&self.pixels);
        let root = ev44::Event44Message::create(
            fbb,
            &ev44::Event44MessageArgs {
                source_name: Some(source_name),
                message_id: meta.counter,
                reference_time: Some(reference_time),
                reference_time_index: Some(reference_time_index),
                time_of_flight: Some(time_of_flight),
                pixel_id: Some(pixel_id),
            },
        );
        ev44::finish_event_44_message_buffer(fbb, root);
    }
}

/// The fields of a pl72 run start this engine fills.
pub struct RunStartFields<'a> {
    /// Run start, ms since the epoch.
    pub start_ms: u64,
    /// The run's name (its run directory's name).
    pub run_name: &'a str,
    /// The setup's name.
    pub instrument_name: &'a str,
    /// A UUID for the file-writing job.
    pub job_id: &'a str,
    /// The file a file-writer should write.
    pub filename: &'a str,
    /// JSON: the NeXus structure with the streams.
    pub nexus_structure: &'a str,
    /// JSON: the setup and run facts.
    pub metadata: &'a str,
    /// Where replies go.
    pub control_topic: &'a str,
}

/// A pl72 run start.
pub fn run_start(f: &RunStartFields<'_>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(1024 + f.metadata.len());
    let mut s = |t: &str| Some(fbb.create_string(t));
    let args = pl72::RunStartArgs {
        start_time: f.start_ms,
        run_name: s(f.run_name),
        instrument_name: s(f.instrument_name),
        job_id: s(f.job_id),
        filename: s(f.filename),
        nexus_structure: s(f.nexus_structure),
        metadata: s(f.metadata),
        control_topic: s(f.control_topic),
        service_id: s("daq-engine"),
        ..Default::default()
    };
    let root = pl72::RunStart::create(&mut fbb, &args);
    pl72::finish_run_start_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// A 6s4t run stop.
pub fn run_stop(stop_ms: u64, run_name: &str, job_id: &str, command_id: &str) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let mut s = |t: &str| Some(fbb.create_string(t));
    let args = run_stop_6s4t::RunStopArgs {
        stop_time: stop_ms,
        run_name: s(run_name),
        job_id: s(job_id),
        service_id: s("daq-engine"),
        command_id: s(command_id),
        ..Default::default()
    };
    let root = run_stop_6s4t::RunStop::create(&mut fbb, &args);
    run_stop_6s4t::finish_run_stop_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// A slow value for f144: a count as a long, anything else as a double.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogValue {
    /// f144 `Long`.
    Long(i64),
    /// f144 `Double`.
    Double(f64),
}

/// An f144 message: `value` of `source_name` at `ns` since the epoch.
pub fn log_data(source_name: &str, ns: i64, value: LogValue) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + source_name.len());
    let (value_type, value) = match value {
        LogValue::Long(v) => (
            f144::Value::Long,
            f144::Long::create(&mut fbb, &f144::LongArgs { value: v }).as_union_value(),
        ),
        LogValue::Double(v) => (
            f144::Value::Double,
            f144::Double::create(&mut fbb, &f144::DoubleArgs { value: v }).as_union_value(),
        ),
    };
    let source_name = fbb.create_string(source_name);
    let root = f144::f144_LogData::create(
        &mut fbb,
        &f144::f144_LogDataArgs {
            source_name: Some(source_name),
            timestamp: ns,
            value_type,
            value: Some(value),
        },
    );
    f144::finish_f_144_log_data_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// How bad an alarm is (al00's severities this engine uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Nothing wrong (any more).
    Ok,
    /// Needs attention; data still complete.
    Minor,
    /// Data is being lost or a part of the run is gone.
    Major,
}

/// An al00 message: `source_name`'s alarm state at `ns` since the epoch.
pub fn alarm(source_name: &str, ns: i64, severity: Severity, message: &str) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + source_name.len() + message.len());
    let source_name = fbb.create_string(source_name);
    let message = fbb.create_string(message);
    let root = al00::Alarm::create(
        &mut fbb,
        &al00::AlarmArgs {
            source_name: Some(source_name),
            timestamp: ns,
            severity: match severity {
                Severity::Ok => al00::Severity::OK,
                Severity::Minor => al00::Severity::MINOR,
                Severity::Major => al00::Severity::MAJOR,
            },
            message: Some(message),
        },
    );
    al00::finish_alarm_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// The fields of an x5f2 status this engine fills.
pub struct StatusFields<'a> {
    /// Which service: the exporter's source name.
    pub service_id: &'a str,
    /// This machine's name.
    pub host_name: &'a str,
    /// The exporter's process id.
    pub process_id: u32,
    /// Milliseconds until the next status.
    pub update_interval_ms: u32,
    /// JSON: the run and the exporter's counts.
    pub status_json: &'a str,
}

/// An x5f2 status message from daq-engine (its name and version filled in).
pub fn status(f: &StatusFields<'_>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256 + f.status_json.len());
    let mut s = |t: &str| Some(fbb.create_string(t));
    let args = x5f2::StatusArgs {
        software_name: s("daq-engine"),
        software_version: s(env!("CARGO_PKG_VERSION")),
        service_id: s(f.service_id),
        host_name: s(f.host_name),
        process_id: f.process_id,
        update_interval: f.update_interval_ms,
        status_json: s(f.status_json),
    };
    let root = x5f2::Status::create(&mut fbb, &args);
    x5f2::finish_status_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// Writes ev44/da00 messages into a buffer's events.
pub struct Decoder {
    dtype: Dtype,
    data_length: usize,
    ev44: Option<Ev44Fields>,
    /// da00: per field its element type and byte size per record.
    fields: Vec<(da00::da00_dtype, usize)>,
}

impl Decoder {
    /// A decoder into events of `data_length` records of `dtype`; `ev44` says where ev44's
    /// time and pixel go (`None`: ev44 messages are refused).
    pub fn new(
        dtype: &Dtype,
        data_length: usize,
        ev44: Option<Ev44Fields>,
    ) -> Result<Decoder, WireError> {
        let fields = dtype
            .fields()
            .iter()
            .map(|f| da00_scalar(f).map(|s| (da00_type(s), f.ty.size())))
            .collect::<Result<Vec<_>, _>>();
        let fields = match (fields, &ev44) {
            (Ok(f), _) => f,
            // A dtype da00 cannot carry still takes ev44.
            (Err(_), Some(_)) => Vec::new(),
            (Err(e), None) => return Err(e),
        };
        Ok(Decoder {
            dtype: dtype.clone(),
            data_length,
            ev44,
            fields,
        })
    }

    /// Decodes `message` into `out` (the slot's records, zeroed where the message has no
    /// value) and `meta.timestamp`; returns the event counter the message carries, if any.
    pub fn decode(
        &self,
        message: &[u8],
        out: &mut [u8],
        meta: &mut Metadata,
    ) -> Result<Option<i64>, WireError> {
        let rs = self.dtype.record_size();
        if out.len() != rs * self.data_length {
            return Err(WireError::BadMessage(
                "slot size differs from the buffer".into(),
            ));
        }
        let bad = |e: flatbuffers::InvalidFlatbuffer| WireError::BadMessage(e.to_string());
        match schema_of(message) {
            Some("da00") if self.fields.len() == self.dtype.fields().len() => {
                let m = da00::root_as_da_00_data_array(message).map_err(bad)?;
                meta.timestamp = epoch_seconds(m.timestamp());
                let vars = m.data();
                for (f, (ty, size)) in self.dtype.fields().iter().zip(&self.fields) {
                    let v = vars.iter().find(|v| v.name() == f.name).ok_or_else(|| {
                        WireError::BadMessage(format!("da00 has no variable '{}'", f.name))
                    })?;
                    let bytes = v.data().bytes();
                    if v.data_type() != *ty || bytes.len() != size * self.data_length {
                        return Err(WireError::BadMessage(format!(
                            "da00 variable '{}': {:?} of {} bytes, the buffer takes {:?} of {}",
                            f.name,
                            v.data_type(),
                            bytes.len(),
                            ty,
                            size * self.data_length
                        )));
                    }
                    for (rec, value) in out.chunks_exact_mut(rs).zip(bytes.chunks_exact(*size)) {
                        rec[f.offset..f.offset + size].copy_from_slice(value);
                    }
                }
                let counter = vars
                    .iter()
                    .find(|v| v.name() == COUNTER)
                    .and_then(|v| v.data().bytes().try_into().ok().map(i64::from_le_bytes));
                if let Some(d) = vars.iter().find(|v| v.name() == DEADTIME) {
                    if let Ok(b) = d.data().bytes().try_into() {
                        meta.deadtime = f64::from_le_bytes(b);
                    }
                }
                Ok(counter)
            }
            Some("ev44") if self.ev44.is_some() => {
                let e = self.ev44.as_ref().expect("checked");
                let m = ev44::root_as_event_44_message(message).map_err(bad)?;
                let refs = m.reference_time();
                let index = m.reference_time_index();
                let Some(t0) = refs.iter().next() else {
                    return Err(WireError::BadMessage(
                        "ev44 without a reference time".into(),
                    ));
                };
                let tof = m.time_of_flight();
                let n = tof.as_ref().map_or(0, |t| t.len());
                if n > self.data_length {
                    return Err(WireError::BadMessage(format!(
                        "ev44 with {n} events, the buffer takes {} per event",
                        self.data_length
                    )));
                }
                out.fill(0);
                meta.timestamp = epoch_seconds(t0);
                let pixels = m.pixel_id();
                let mut pulse = 0usize;
                for (i, rec) in out.chunks_exact_mut(rs).take(n).enumerate() {
                    // The pulse this event belongs to: the last whose first index is ≤ i.
                    while pulse + 1 < refs.len()
                        && pulse + 1 < index.len()
                        && index.get(pulse + 1) as usize <= i
                    {
                        pulse += 1;
                    }
                    // Another producer's reference times may lie any distance apart.
                    let since_t0 = i128::from(refs.get(pulse)) - i128::from(t0);
                    let t = tof.as_ref().map_or(0, |t| t.get(i)) as f64 + since_t0 as f64;
                    e.time.write(rec, t / e.ns_per_unit);
                    if let (Some(p), Some(ids)) = (&e.pixel, &pixels) {
                        if i < ids.len() {
                            p.write(rec, ids.get(i) as f64);
                        }
                    }
                }
                Ok(Some(m.message_id()))
            }
            Some(other) => Err(WireError::BadMessage(format!(
                "a '{other}' message, which this buffer does not take (da00{})",
                if self.ev44.is_some() { " or ev44" } else { "" }
            ))),
            None => Err(WireError::BadMessage("not a FlatBuffers message".into())),
        }
    }
}

/// Where an event's values go in a da00 message of [`Encoder::lay_out_da00`]: byte offsets.
#[derive(Clone, Debug, Default, PartialEq)]
struct Da00Places {
    /// The first byte of each field's values (its variable's `data`), in field order.
    fields: Vec<usize>,
    /// The 8 bytes of `daq_counter`'s and `daq_deadtime`'s `data`.
    counter: usize,
    deadtime: usize,
    /// The root table's `timestamp` (present: built with `force_defaults`).
    timestamp: usize,
}

impl Da00Places {
    /// The places in `msg`, a da00 message the encoder built: its first `n_fields` variables
    /// are the fields, then come the counter and the dead time.
    fn of(msg: &[u8], n_fields: usize) -> Da00Places {
        let m = da00::root_as_da_00_data_array(msg).expect("the encoder's own da00 message");
        let at = |bytes: &[u8]| bytes.as_ptr() as usize - msg.as_ptr() as usize;
        let vars = m.data();
        let data_of = |name: &str| {
            vars.iter()
                .find(|v| v.name() == name)
                .map_or(0, |v| at(v.data().bytes()))
        };
        let table = &m._tab;
        Da00Places {
            fields: (0..n_fields)
                .map(|i| at(vars.get(i).data().bytes()))
                .collect(),
            counter: data_of(COUNTER),
            deadtime: data_of(DEADTIME),
            timestamp: table.loc()
                + table.vtable().get(da00::da00_DataArray::VT_TIMESTAMP) as usize,
        }
    }
}

/// Copies field `offset..offset + size` of every `rs`-byte record of `data` into `out` (one
/// value after the other: a da00 variable's bytes, `out` exactly that long), with fixed-size
/// copies for the common sizes (known to the compiler), not grown 4 bytes at a time: that was
/// most of the encoder's time for a 64 KiB waveform (`bench kafka`).
fn gather(out: &mut [u8], data: &[u8], rs: usize, offset: usize, size: usize) {
    match size {
        1 => gather_n::<1>(out, data, rs, offset),
        2 => gather_n::<2>(out, data, rs, offset),
        4 => gather_n::<4>(out, data, rs, offset),
        8 => gather_n::<8>(out, data, rs, offset),
        _ => {
            for (dst, rec) in out.chunks_exact_mut(size).zip(data.chunks_exact(rs)) {
                dst.copy_from_slice(&rec[offset..offset + size]);
            }
        }
    }
}

fn gather_n<const N: usize>(out: &mut [u8], data: &[u8], rs: usize, offset: usize) {
    for (dst, rec) in out.chunks_exact_mut(N).zip(data.chunks_exact(rs)) {
        dst.copy_from_slice(&rec[offset..offset + N]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-size gather takes every field of every record, as the byte-by-byte one did.
    #[test]
    fn gather_takes_each_field_of_every_record() {
        // Records of 15 bytes: fields of 1, 2, 4, 8 bytes at offsets 0, 1, 3, 7, and the
        // same 15 as one 3-byte field at 12 (another size).
        let data: Vec<u8> = (0..15 * 100).map(|k| (k * 31 % 251) as u8).collect();
        for (offset, size) in [(0, 1), (1, 2), (3, 4), (7, 8), (12, 3)] {
            let mut out = vec![9u8; 100 * size];
            gather(&mut out, &data, 15, offset, size);
            let want: Vec<u8> = data
                .chunks_exact(15)
                .flat_map(|r| r[offset..offset + size].to_vec())
                .collect();
            assert_eq!(out, want, "field at {offset} of {size} bytes");
        }
    }

    /// The da00 message written in place is, byte for byte, the one the builder makes for the
    /// same event (values, counter, dead time, time), event after event, with and without
    /// scales, and the FlatBuffers defaults (counter 0, time 0) included.
    #[test]
    fn da00_written_in_place_is_the_built_message() {
        let d = Dtype::parse([
            ("chA", "<f4"),
            ("flags", "u1"),
            ("chB", "<i2"),
            ("t", "<f8"),
        ])
        .unwrap();
        let n = 5;
        let mut enc = Encoder::new(Format::Da00, &d, n, "demo/w/raw", None).unwrap();
        let built = |enc: &mut Encoder, data: &[u8], meta: &Metadata| {
            enc.fbb.reset();
            enc.fbb.force_defaults(true);
            enc.da00(data, meta);
            enc.fbb.force_defaults(false);
            enc.fbb.finished_data().to_vec()
        };
        for k in 0..6u64 {
            if k == 3 {
                enc.set_scales(
                    &[FieldScale {
                        field: "chB".into(),
                        volts_per_count: 1e-3,
                        offset_volts: 0.5,
                    }],
                    "scales_x.txt",
                );
            }
            let data: Vec<u8> = (0..d.record_size() * n)
                .map(|i| (i as u64 * 13 + k * 101) as u8)
                .collect();
            let meta = Metadata {
                counter: k as i64,
                timestamp: if k == 0 {
                    0.0
                } else {
                    1_700_000_000.5 + k as f64
                },
                deadtime: k as f64 * 0.25,
            };
            let in_place = enc.encode(&data, &meta).unwrap().to_vec();
            assert_eq!(in_place, built(&mut enc, &data, &meta), "event {k}");
            let m = da00::root_as_da_00_data_array(&in_place).unwrap();
            assert_eq!(m.timestamp(), epoch_ns(meta.timestamp));
            let dec = Decoder::new(&d, n, None).unwrap();
            let (mut out, mut back) = (vec![0u8; data.len()], Metadata::default());
            assert_eq!(
                dec.decode(&in_place, &mut out, &mut back).unwrap(),
                Some(k as i64)
            );
            assert_eq!((out, back.deadtime), (data, meta.deadtime));
        }
    }

    fn waveform() -> Dtype {
        Dtype::parse([("chA", "f4"), ("chB", "i2")]).unwrap()
    }

    #[test]
    fn da00_round_trip_keeps_values_shape_type_and_metadata() {
        let d = waveform();
        let mut data = Vec::new();
        for i in 0..4i16 {
            data.extend_from_slice(&(i as f32 * 0.5).to_le_bytes());
            data.extend_from_slice(&(-i).to_le_bytes());
        }
        let meta = Metadata {
            counter: 41,
            timestamp: 1_700_000_000.25,
            deadtime: 0.125,
        };
        let mut enc = Encoder::new(Format::Da00, &d, 4, "demo/w/raw", None).unwrap();
        let msg = enc.encode(&data, &meta).unwrap().to_vec();
        assert_eq!(schema_of(&msg), Some("da00"));
        let m = da00::root_as_da_00_data_array(&msg).unwrap();
        assert_eq!(m.source_name(), "demo/w/raw");
        assert_eq!(m.timestamp(), 1_700_000_000_250_000_000);
        let a = m.data().get(0);
        assert_eq!(a.name(), "chA");
        assert_eq!(a.data_type(), da00::da00_dtype::float32);
        assert_eq!(a.shape().iter().collect::<Vec<_>>(), vec![4]);
        assert_eq!(&a.data().bytes()[4..8], &0.5f32.to_le_bytes());
        let dec = Decoder::new(&d, 4, None).unwrap();
        let mut out = vec![0xffu8; data.len()];
        let mut back = Metadata::default();
        assert_eq!(dec.decode(&msg, &mut out, &mut back).unwrap(), Some(41));
        assert_eq!(out, data);
        assert_eq!(back.timestamp, meta.timestamp);
        assert_eq!(back.deadtime, meta.deadtime);
        assert!(m.data().iter().all(|v| !v.name().contains(VOLTS_PER_COUNT)));
        // Once the scales are known they travel as attributes, one pair per field named;
        // the decoder ignores them.
        let scale = |field: &str, volts_per_count, offset_volts| FieldScale {
            field: field.into(),
            volts_per_count,
            offset_volts,
        };
        enc.set_scales(
            &[scale("chA", 2.0 / 16384.0, -0.25), scale("nope", 1.0, 0.0)],
            "scales_digitizer.txt",
        );
        let scaled = enc.encode(&data, &meta).unwrap().to_vec();
        let m = da00::root_as_da_00_data_array(&scaled).unwrap();
        let var = |name: &str| m.data().iter().find(|v| v.name() == name);
        for (name, value) in [
            ("chA.volts_per_count", 2.0f64 / 16384.0),
            ("chA.offset_volts", -0.25),
        ] {
            let v = var(name).unwrap();
            assert_eq!(v.data().bytes(), &value.to_le_bytes());
            assert_eq!(
                (v.unit(), v.data_type()),
                (Some("V"), da00::da00_dtype::float64)
            );
            assert_eq!(v.source(), Some("scales_digitizer.txt"));
        }
        assert!(var("nope.volts_per_count").is_none());
        assert_eq!(dec.decode(&scaled, &mut out, &mut back).unwrap(), Some(41));
        assert_eq!(out, data);
        // A buffer of another shape refuses the message instead of writing half of it.
        let short = Decoder::new(&d, 3, None).unwrap();
        assert!(short.decode(&msg, &mut [0; 18], &mut back).is_err());
        assert!(dec.decode(b"garbage!", &mut out, &mut back).is_err());
    }

    /// A subarray field (three values per record) travels as a variable of shape
    /// `[data_length, 3]` with a `dim_1` axis, and comes back as it went. It was refused
    /// ("da00 carries little-endian numbers only"), though the module says it travels.
    #[test]
    fn da00_carries_a_subarray_field_with_its_dimensions() {
        let d = Dtype::parse([("xyz", "(3,)<f4"), ("n", "<u2")]).unwrap();
        let mut data = Vec::new();
        for i in 0..4u16 {
            for k in 0..3 {
                data.extend_from_slice(&(f32::from(i) + 0.25 * k as f32).to_le_bytes());
            }
            data.extend_from_slice(&(100 + i).to_le_bytes());
        }
        let meta = Metadata {
            counter: 7,
            timestamp: 1_700_000_000.5,
            deadtime: 0.0,
        };
        let mut enc = Encoder::new(Format::Da00, &d, 4, "demo/w/tracks", None).unwrap();
        let msg = enc.encode(&data, &meta).unwrap().to_vec();
        let m = da00::root_as_da_00_data_array(&msg).unwrap();
        let xyz = m.data().iter().find(|v| v.name() == "xyz").unwrap();
        assert_eq!(xyz.shape().iter().collect::<Vec<_>>(), vec![4, 3]);
        let axes: Vec<&str> = xyz.axes().unwrap().iter().collect();
        assert_eq!(axes, ["sample", "dim_1"]);
        assert_eq!(xyz.data_type(), da00::da00_dtype::float32);
        // C order: record 1's three values follow record 0's.
        assert_eq!(&xyz.data().bytes()[12..16], &1.0f32.to_le_bytes());
        let dec = Decoder::new(&d, 4, None).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut back = Metadata::default();
        assert_eq!(dec.decode(&msg, &mut out, &mut back).unwrap(), Some(7));
        assert_eq!(out, data);
    }

    #[test]
    fn ev44_carries_time_in_ns_and_channel_as_pixel() {
        let d = Dtype::parse([("channel", "i2"), ("time", "f8"), ("height", "f4")]).unwrap();
        let mut data = Vec::new();
        for (ch, t) in [(1i16, 2.5e-6f64), (3, 7.0e-9)] {
            data.extend_from_slice(&ch.to_le_bytes());
            data.extend_from_slice(&t.to_le_bytes());
            data.extend_from_slice(&1.5f32.to_le_bytes());
        }
        let meta = Metadata {
            counter: 7,
            timestamp: 1_700_000_000.5,
            deadtime: 0.0,
        };
        let fields = Ev44Fields::new(&d, "time", 1.0, Some("channel")).unwrap();
        let mut enc = Encoder::new(Format::Ev44, &d, 2, "s", Some(fields.clone())).unwrap();
        let msg = enc.encode(&data, &meta).unwrap().to_vec();
        let m = ev44::root_as_event_44_message(&msg).unwrap();
        assert_eq!(m.message_id(), 7);
        assert_eq!(
            m.reference_time().iter().collect::<Vec<_>>(),
            vec![1_700_000_000_500_000_000]
        );
        assert_eq!(
            m.time_of_flight().unwrap().iter().collect::<Vec<_>>(),
            vec![2500, 7]
        );
        assert_eq!(m.pixel_id().unwrap().iter().collect::<Vec<_>>(), vec![1, 3]);
        let dec = Decoder::new(&d, 2, Some(fields)).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut back = Metadata::default();
        assert_eq!(dec.decode(&msg, &mut out, &mut back).unwrap(), Some(7));
        assert_eq!(back.timestamp, meta.timestamp);
        let rs = d.record_size();
        assert_eq!(&out[..2], &1i16.to_le_bytes());
        assert_eq!(f64::from_le_bytes(out[2..10].try_into().unwrap()), 2.5e-6);
        assert_eq!(&out[rs..rs + 2], &3i16.to_le_bytes());
        // height does not travel in ev44: zero.
        assert_eq!(&out[10..14], &[0; 4]);
    }

    /// An ev44 message of any contents, as another producer on the topic might send.
    fn ev44_message(refs: &[i64], index: &[i32], tof: &[i32], pixels: &[i32]) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let args = ev44::Event44MessageArgs {
            source_name: Some(fbb.create_string("other")),
            message_id: 1,
            reference_time: Some(fbb.create_vector(refs)),
            reference_time_index: Some(fbb.create_vector(index)),
            time_of_flight: Some(fbb.create_vector(tof)),
            pixel_id: Some(fbb.create_vector(pixels)),
        };
        let root = ev44::Event44Message::create(&mut fbb, &args);
        ev44::finish_event_44_message_buffer(&mut fbb, root);
        fbb.finished_data().to_vec()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever a message on the topic holds (any reference times, indices, times of
        /// flight and pixels; or a valid message with bytes changed), decoding it is a
        /// decoded event or an error for the count of refused messages, never a panic.
        #[test]
        fn no_message_makes_the_decoder_panic(
            refs in proptest::collection::vec(proptest::num::i64::ANY, 0..4),
            index in proptest::collection::vec(-1i32..5, 0..4),
            tof in proptest::collection::vec(proptest::num::i32::ANY, 0..5),
            pixels in proptest::collection::vec(proptest::num::i32::ANY, 0..5),
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..6),
        ) {
            let d = Dtype::parse([("channel", "i2"), ("time", "f8")]).unwrap();
            let fields = Ev44Fields::new(&d, "time", 1.0, Some("channel")).unwrap();
            let dec = Decoder::new(&d, 4, Some(fields.clone())).unwrap();
            let mut out = vec![0u8; 4 * d.record_size()];
            let mut meta = Metadata::default();
            let msg = ev44_message(&refs, &index, &tof, &pixels);
            let _ = dec.decode(&msg, &mut out, &mut meta);
            let mut da00 = Encoder::new(Format::Da00, &d, 4, "s", None).unwrap();
            let data: Vec<u8> = (0..out.len()).map(|k| k as u8).collect();
            for mut m in [msg, da00.encode(&data, &meta).unwrap().to_vec()] {
                for &(at, x) in &flips {
                    let n = m.len();
                    m[at % n] ^= x;
                }
                let _ = dec.decode(&m, &mut out, &mut meta);
            }
        }
    }

    #[test]
    fn event_times_survive_the_trip_through_ns() {
        let mut x = 1_700_000_000.123_456_7f64;
        for _ in 0..10_000 {
            assert_eq!(epoch_seconds(epoch_ns(x)), x, "{x}");
            x += 0.000_123_456_789;
        }
        assert_eq!(epoch_ns(1.5), 1_500_000_000);
        assert_eq!(epoch_seconds(-500_000_000), -0.5);
    }

    #[test]
    fn run_start_and_stop_carry_their_fields() {
        let start = run_start(&RunStartFields {
            start_ms: 5,
            run_name: "run_1",
            instrument_name: "demo",
            job_id: "j",
            filename: "run_1.nxs",
            nexus_structure: "{}",
            metadata: "{\"setup\": \"x\"}",
            control_topic: "ctl",
        });
        assert_eq!(schema_of(&start), Some("pl72"));
        let m = pl72::root_as_run_start(&start).unwrap();
        assert_eq!((m.start_time(), m.job_id()), (5, Some("j")));
        assert_eq!(m.metadata(), Some("{\"setup\": \"x\"}"));
        let stop = run_stop(9, "run_1", "j", "c");
        let s = run_stop_6s4t::root_as_run_stop(&stop).unwrap();
        assert_eq!((s.stop_time(), s.command_id()), (9, Some("c")));
        assert_eq!(schema_of(&stop), Some("6s4t"));
    }
    #[test]
    fn f144_al00_and_x5f2_carry_their_fields() {
        let m = log_data("demo/raw/rate_hz", 5, LogValue::Double(2.5));
        assert_eq!(schema_of(&m), Some("f144"));
        let l = f144::root_as_f_144_log_data(&m).unwrap();
        assert_eq!((l.source_name(), l.timestamp()), ("demo/raw/rate_hz", 5));
        assert_eq!(l.value_as_double().unwrap().value(), 2.5);
        let m = log_data("demo/raw/lost", 6, LogValue::Long(-7));
        let l = f144::root_as_f_144_log_data(&m).unwrap();
        assert_eq!(l.value_as_long().unwrap().value(), -7);
        assert!(l.value_as_double().is_none());
        let a = alarm("demo/raw", 9, Severity::Major, "losing events");
        assert_eq!(schema_of(&a), Some("al00"));
        let a = al00::root_as_alarm(&a).unwrap();
        assert_eq!(a.severity(), al00::Severity::MAJOR);
        assert_eq!(
            (a.source_name(), a.message()),
            (Some("demo/raw"), Some("losing events"))
        );
        let st = status(&StatusFields {
            service_id: "demo/k/raw",
            host_name: "h",
            process_id: 3,
            update_interval_ms: 2000,
            status_json: "{}",
        });
        assert_eq!(schema_of(&st), Some("x5f2"));
        let st = x5f2::root_as_status(&st).unwrap();
        assert_eq!(st.software_name(), Some("daq-engine"));
        assert_eq!((st.process_id(), st.update_interval()), (3, 2000));
        assert_eq!(st.status_json(), Some("{}"));
    }
}
