//! The one interface every device family fills, in the manner of libsigrok's `api.c`:
//! scan, open, configure, start, read events, stop, close.
//!
//! A driver writes each event straight into bytes the caller owns (a ring slot), laid out as
//! the records the driver declares in [`EventLayout`]: `records` records of the named numpy
//! fields, packed little-endian. It allocates nothing per event. The engine checks the layout
//! against the setup's buffer before the run starts.
//!
//! This crate does not depend on the engine, so fields are named by numpy type strings
//! (`"f4"`, `"int16"`), which the engine's dtype parser reads.

use std::time::Duration;

/// Which family a device belongs to; names the driver a setup selects. Each variant has
/// one [`FamilyInfo`](crate::FamilyInfo) in [`FAMILIES`](crate::FAMILIES).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// GQ Electronics GMC Geiger counters (GQ-RFC1201 / RFC1801).
    Gmc,
    /// MightyOhm Geiger kit, NetIO GC10 and Arduino-style line counters.
    LineCounter,
    /// CosmicWatch desktop muon detector v2 / v3X.
    CosmicWatch,
    /// PicoScope oscilloscopes through Pico's driver libraries.
    PicoScope,
    /// Hantek 6022BE/BL USB oscilloscopes.
    Hantek6022,
    /// PSI DRS4 evaluation board.
    Drs4,
    /// Red Pitaya over TCP (MCPHA or SCPI server).
    RedPitaya,
}

impl Family {
    /// The name used in setups and in `daq-engine devices`, from the family's
    /// [`FamilyInfo`](crate::FamilyInfo).
    pub fn name(self) -> &'static str {
        crate::families::info(self).map_or("unregistered", |f| f.name)
    }
}

/// A device found by a scan (or the simulator standing in for one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Driver family.
    pub family: Family,
    /// Model as the device reports it (`GMC-320Re 4.26`, `PicoScope 5444D`), or as guessed.
    pub model: String,
    /// Serial number, when the device has one.
    pub serial: Option<String>,
    /// Where it is: a tty path, `usb:BUS:ADDR`, or `sim:...` for a simulator.
    pub port: String,
    /// USB vendor and product id, where known.
    pub usb_id: Option<(u16, u16)>,
}

impl DeviceInfo {
    /// A `family` device answering as `model` on the serial port `path`, with the USB ids
    /// of its adapter where it is one (from sysfs; none for a pty).
    pub fn on_serial_port(
        family: Family,
        model: impl Into<String>,
        path: &std::path::Path,
    ) -> Self {
        DeviceInfo {
            family,
            model: model.into(),
            serial: None,
            port: path.display().to_string(),
            usb_id: crate::serial::usb_identity(path).map(|(v, p, _)| (v, p)),
        }
    }
}

/// One field of the records a driver writes: name and numpy type string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field name (e.g. `chA`, `cpm`, `adc`).
    pub name: String,
    /// numpy type string (e.g. `f4`, `int16`, `u4`).
    pub numpy_type: &'static str,
}

impl FieldSpec {
    /// Field `name` of numpy type `numpy_type`.
    pub fn new(name: impl Into<String>, numpy_type: &'static str) -> Self {
        FieldSpec {
            name: name.into(),
            numpy_type,
        }
    }
}

/// The shape of the events a configured driver writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLayout {
    /// Fields of one record, in order.
    pub fields: Vec<FieldSpec>,
    /// Records per event (the buffer's `data_length`).
    pub records: usize,
}

impl EventLayout {
    /// Events of `records` records of the (name, numpy type) `fields`.
    pub fn of<N: Into<String>>(
        fields: impl IntoIterator<Item = (N, &'static str)>,
        records: usize,
    ) -> Self {
        EventLayout {
            fields: fields
                .into_iter()
                .map(|(n, t)| FieldSpec::new(n, t))
                .collect(),
            records,
        }
    }

    /// Bytes one record takes.
    pub fn record_size(&self) -> usize {
        self.fields.iter().map(|f| numpy_size(f.numpy_type)).sum()
    }

    /// Bytes one event takes.
    pub fn event_size(&self) -> usize {
        self.record_size() * self.records
    }

    /// The fields' names, in record order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// The fields as (name, numpy type) pairs, in record order.
    pub fn names_and_types(&self) -> impl Iterator<Item = (&str, &'static str)> + '_ {
        self.fields.iter().map(|f| (f.name.as_str(), f.numpy_type))
    }
}

/// Size in bytes of a numpy scalar type string this crate uses; 0 for anything else.
pub fn numpy_size(t: &str) -> usize {
    match t.trim_start_matches(['<', '|', '=']) {
        "i1" | "u1" | "int8" | "uint8" => 1,
        "i2" | "u2" | "int16" | "uint16" => 2,
        "i4" | "u4" | "f4" | "int32" | "uint32" | "float32" => 4,
        "i8" | "u8" | "f8" | "int64" | "uint64" | "float64" => 8,
        _ => 0,
    }
}

/// How the integer samples of one field become volts: `volts = counts × volts_per_count +
/// offset_volts`. A driver that writes ADC counts reports one per sample field.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelScale {
    /// Field name (e.g. `chA`).
    pub field: String,
    /// Volts one count is worth.
    pub volts_per_count: f64,
    /// Volts of count 0.
    pub offset_volts: f64,
}

/// What a driver reports with each event besides its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EventInfo {
    /// The device's own time of the event in seconds since its start, where it reports one.
    pub device_time: Option<f64>,
    /// Dead time the device reports for this event, in seconds, where it does.
    pub device_deadtime: Option<f64>,
    /// Events the device says it lost before this one (overflow, buffer stall), if known.
    pub device_lost: u64,
}

/// What came of waiting for an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadOutcome {
    /// An event was written into the output bytes.
    Event(EventInfo),
    /// Nothing arrived within the timeout; call again.
    Idle,
    /// The source has no more events (a finite simulator, a replay).
    End,
}

/// Errors every driver can report. Families add their own detail in the message.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The device is gone (unplugged, pty closed). The engine may try [`Source::reconnect`].
    #[error("{device}: disconnected: {detail}")]
    Disconnected {
        /// Which device.
        device: String,
        /// What was seen.
        detail: String,
    },
    /// The device sent bytes that do not fit its protocol. Nothing was written to the slot.
    #[error("{device}: bad data at byte {offset}: {detail}")]
    Protocol {
        /// Which device.
        device: String,
        /// Byte offset in the stream since open.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The configuration asks for something the device cannot do.
    #[error("{device}: {detail}")]
    Config {
        /// Which device.
        device: String,
        /// What is wrong and what would work.
        detail: String,
    },
    /// A vendor library is missing or refused (PicoScope, CAEN).
    #[error("{0}")]
    Vendor(String),
    /// The device or port could not be opened.
    #[error("{device}: cannot open: {detail}")]
    Open {
        /// Which device or path.
        device: String,
        /// Why, and what to do.
        detail: String,
    },
    /// An I/O error on the transport.
    #[error("{device}: {source}")]
    Io {
        /// Which device.
        device: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Refuses an event buffer that is not the `want` bytes one event takes
/// ([`DriverError::Config`] naming both sizes); allocates nothing when it fits.
pub fn check_event_buffer(device: &str, got: usize, want: usize) -> Result<(), DriverError> {
    if got == want {
        return Ok(());
    }
    Err(DriverError::Config {
        device: device.to_string(),
        detail: format!("event buffer is {got} bytes, the layout needs {want}"),
    })
}

/// What a driver call returns: the value, or the [`DriverError`] naming the device.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A configured, opened device that produces events. One per Importer process.
pub trait Source: Send {
    /// The device this is and the records it writes per event (fixed once configured): the
    /// two facts every driver holds from its `open`, given by one method.
    fn described(&self) -> (&DeviceInfo, &EventLayout);

    /// The device this is.
    fn info(&self) -> &DeviceInfo {
        self.described().0
    }

    /// The records this source writes per event, fixed once configured.
    fn layout(&self) -> &EventLayout {
        self.described().1
    }

    /// Starts acquisition. The default does nothing, for a device that streams as soon as
    /// it is open (a serial counter).
    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    /// Waits at most `timeout` for the next event and writes it into `out`, which is exactly
    /// `layout().event_size()` bytes. Must not allocate. On `Err` or `Idle`, `out` may hold
    /// partial bytes but the caller does not publish it.
    fn read_event(&mut self, out: &mut [u8], timeout: Duration) -> Result<ReadOutcome>;

    /// Stops acquisition; `start` may be called again. The default does nothing, like
    /// [`Source::start`]'s.
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    /// After [`DriverError::Disconnected`]: tries once to open the device again at the same
    /// place and restart acquisition. `Ok(true)` when it is back.
    fn reconnect(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Device facts worth keeping with the run (serial number, firmware, voltage, clock),
    /// as key/value text for the run's metadata.
    fn run_metadata(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// For a source writing ADC counts: how each sample field becomes volts, fixed once
    /// the device is open (an empty list for sources writing volts or other quantities).
    fn channel_scales(&self) -> Vec<ChannelScale> {
        Vec::new()
    }

    /// After [`DriverError::Protocol`]: the first bytes (at most 32) of what was refused, for
    /// the log; empty when the driver does not keep them. The driver has already skipped
    /// past them: the next `read_event` starts at the next line or frame.
    fn rejected_bytes(&self) -> &[u8] {
        &[]
    }
}
