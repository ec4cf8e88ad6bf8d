//! Device importers: every `daq-drivers` family as an Importer function (`device.gmc`,
//! `device.cosmicwatch`, `device.picoscope`, …), plus device discovery, udev installation
//! and the driver benchmark for the command line ([`tools`]).
//!
//! Guarantees: before a run starts, the sink buffer's fields (names and numpy types) and
//! `data_length` are checked against what the configured driver writes, and a mismatch says
//! exactly what the setup must declare. Per event the importer calls the driver's
//! `read_event` straight into the ring slot with a short timeout and stamps the host wall
//! clock: no allocation, no copy. A device that disappears (unplugged, pty closed) is
//! re-opened with the driver's backoff while the run goes on; every gap is logged with
//! `tracing::warn!` and kept in the worker's device notes file and its run metadata.
//! Must never: publish a slot the driver did not fill, or spin without a timeout.

mod plug;
pub mod serial;
pub mod tools;
pub mod usb;

use crate::engine::{Build, Function};
pub(crate) use crate::worker::opt as key;
use crate::worker::{
    BufferShape, BuildContext, ConfigKey, EventMut, Importer, KeyType, Produced, WorkerError,
};
use daq_drivers::{DriverError, EventLayout, ReadOutcome, Source};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest a single `next` waits for the driver (so the engine sees a stop quickly).
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Importer functions for the supported devices.
pub fn functions() -> Vec<Function> {
    vec![
        Function {
            spec: serial::GMC_SPEC,
            build: Build::Importer(|c| Ok(Box::new(serial::build_gmc(c)?))),
        },
        Function {
            spec: serial::MIGHTYOHM_SPEC,
            build: Build::Importer(|c| Ok(Box::new(serial::build_mightyohm(c)?))),
        },
        Function {
            spec: serial::GC10_SPEC,
            build: Build::Importer(|c| Ok(Box::new(serial::build_gc10(c)?))),
        },
        Function {
            spec: serial::LINE_COUNTER_SPEC,
            build: Build::Importer(|c| Ok(Box::new(serial::build_line_counter(c)?))),
        },
        Function {
            spec: serial::COSMICWATCH_SPEC,
            build: Build::Importer(|c| Ok(Box::new(serial::build_cosmicwatch(c)?))),
        },
        Function {
            spec: usb::PICOSCOPE_SPEC,
            build: Build::Importer(|c| Ok(Box::new(usb::build_picoscope(c)?))),
        },
        Function {
            spec: usb::HANTEK_SPEC,
            build: Build::Importer(|c| Ok(Box::new(usb::build_hantek(c)?))),
        },
        Function {
            spec: usb::DRS4_SPEC,
            build: Build::Importer(|c| Ok(Box::new(usb::build_drs4(c)?))),
        },
    ]
}

/// The check of each device importer's config: everything its build checks, opening no
/// device (see [`crate::engine::Check`]).
pub fn checks() -> Vec<(&'static str, crate::engine::Check)> {
    use crate::engine::Check::Config;
    vec![
        (serial::GMC_SPEC.name, Config(serial::check_gmc)),
        (serial::MIGHTYOHM_SPEC.name, Config(serial::check_line)),
        (serial::GC10_SPEC.name, Config(serial::check_line)),
        (
            serial::LINE_COUNTER_SPEC.name,
            Config(serial::check_line_counter),
        ),
        (
            serial::COSMICWATCH_SPEC.name,
            Config(serial::check_cosmicwatch),
        ),
        (usb::PICOSCOPE_SPEC.name, Config(usb::check_picoscope)),
        (usb::HANTEK_SPEC.name, Config(usb::check_hantek)),
        (usb::DRS4_SPEC.name, Config(usb::check_drs4)),
    ]
}

/// The keys every device importer reads.
pub(crate) const SIMULATE_KEY: ConfigKey = key(
    "simulate",
    KeyType::Bool,
    "false",
    "run the family's simulator and open it through the same driver path (set by --simulate)",
);
/// See [`SIMULATE_KEY`].
pub(crate) const RECONNECT_KEY: ConfigKey = key(
    "reconnect",
    KeyType::Bool,
    "true",
    "when the device disappears, wait and re-open it (the gap is logged); false = stop the run",
);
/// See [`SIMULATE_KEY`].
pub(crate) const SEED_KEY: ConfigKey = key(
    "seed",
    KeyType::Int,
    "1",
    "simulator only: random seed; the same seed gives the same events",
);

/// Checks that `sink` is declared exactly as the driver writes its events.
pub fn check_layout(
    function: &str,
    worker: &str,
    layout: &EventLayout,
    sink: &BufferShape,
) -> Result<(), WorkerError> {
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
        .map(|f| (f.name.clone(), Some(f.scalar)))
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
    Err(WorkerError::Other(format!(
        "worker '{worker}' ({function}): sink buffer '{}' does not match the device: {}. \
         Declare it as  data_length: {}  data_dtype: {{{}}}  (the setup has data_length: {}, \
         data_dtype: {{{}}})",
        sink.name,
        why.join("; "),
        layout.records,
        show(&want),
        sink.data_length,
        show(&have),
    )))
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
    gaps: Vec<Gap>,
    events: u64,
    notes: Option<PathBuf>,
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
        Ok(DeviceImporter {
            function,
            worker: worker.to_string(),
            source,
            _keep: keep,
            simulated: false,
            reconnect,
            lost: None,
            gaps: Vec::with_capacity(16),
            events: 0,
            notes: None,
        })
    }

    /// Checks the sink of `ctx` against the source, starts it, and writes the device notes
    /// (`device_<worker>.txt` in the run directory).
    pub(crate) fn build(
        function: &'static str,
        ctx: &BuildContext,
        source: Box<dyn Source>,
        keep: Vec<Box<dyn Any + Send>>,
        simulated: bool,
    ) -> Result<DeviceImporter, WorkerError> {
        let sink = ctx.sinks.first().ok_or_else(|| {
            WorkerError::Other(format!("{function} needs exactly one sink buffer"))
        })?;
        check_layout(function, &ctx.worker, source.layout(), sink)?;
        let reconnect = ctx.config.bool_or("reconnect", true)?;
        let mut imp = DeviceImporter::new(function, &ctx.worker, source, keep, reconnect)?;
        imp.simulated = simulated;
        if ctx.run_dir.is_dir() && ctx.run_dir != std::env::temp_dir() {
            let name = if ctx.process.1 > 1 {
                format!("device_{}_{}.txt", ctx.worker, ctx.process.0)
            } else {
                format!("device_{}.txt", ctx.worker)
            };
            imp.notes = Some(ctx.run_dir.join(name));
        }
        imp.write_notes();
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

    /// The disconnect gaps so far.
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

    fn write_notes(&self) {
        let Some(path) = &self.notes else { return };
        let mut text = String::new();
        for (k, v) in self.run_metadata() {
            text.push_str(&k);
            text.push_str(" = ");
            text.push_str(&v);
            text.push('\n');
        }
        if let Err(e) = crate::analysis::write_atomically(path, text.as_bytes()) {
            tracing::warn!("{}: cannot write {}: {e}", self.worker, path.display());
        }
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
            return self.try_reconnect();
        }
        match self.source.read_event(out.data, READ_TIMEOUT) {
            Ok(ReadOutcome::Event(_)) => {
                out.meta.timestamp = crate::analysis::wall_clock();
                self.events += 1;
                Ok(Produced::Event)
            }
            Ok(ReadOutcome::Idle) => Ok(Produced::Idle),
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
                    wall: crate::analysis::wall_clock(),
                    detail,
                });
                // The monitor reads the notes: say at once that the device is gone.
                self.write_notes();
                self.try_reconnect()
            }
            Err(e) => Err(e.into()),
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
        ];
        if let Some(s) = &info.serial {
            m.push(("device.serial".into(), s.clone()));
        }
        if let Some((v, p)) = info.usb_id {
            m.push(("device.usb_id".into(), format!("{v:04x}:{p:04x}")));
        }
        m.extend(self.source.run_metadata());
        m.push(("device.gaps".into(), self.gaps.len().to_string()));
        for (i, g) in self.gaps.iter().enumerate() {
            m.push((
                format!("device.gap.{i}"),
                format!(
                    "lost at unix {:.3}, back after {:.3} s, {} events before; {}",
                    g.lost_at_unix, g.seconds, g.events_before, g.detail
                ),
            ));
        }
        m
    }
}

/// The `key = value` lines of a device notes file (`device_<worker>.txt`), in file order;
/// empty when it cannot be read. Lines without ` = ` are skipped.
pub fn read_notes(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The notes of every device importer of the run in `run_dir`: (worker, notes), by worker.
pub fn run_notes(run_dir: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let worker = name
                .to_str()?
                .strip_prefix("device_")?
                .strip_suffix(".txt")?
                .to_string();
            Some((worker, read_notes(&e.path())))
        })
        .collect();
    out.sort();
    out
}

/// A failed open of real hardware, with the hint that `--simulate` needs none.
pub(crate) fn open_error(e: DriverError) -> WorkerError {
    match e {
        DriverError::Open { .. } | DriverError::Vendor(_) => WorkerError::Other(format!(
            "{e}. Without the hardware, try the setup with --simulate"
        )),
        e => e.into(),
    }
}

/// Maps an I/O error starting a simulator.
pub(crate) fn sim_error(function: &str, e: std::io::Error) -> WorkerError {
    WorkerError::Other(format!(
        "{function}: cannot start the simulator (pseudo-terminal): {e}"
    ))
}
