//! `export.histogram`: 1-D histograms of feature fields, written as CSV into the run
//! directory every `update_interval` and at the end, with optional fits at the end.
//!
//! Binning: `bins: {field: [min, max, n]}` gives **n bins** of width `(max − min)/n`
//! (mimoCoRB2 made n−1). Bin `i` holds `min + i·w ≤ x < min + (i+1)·w`; values below `min`
//! count as underflow, values at or above `max` as overflow, NaN as invalid. Every record of
//! every event is filled (feature buffers have data_length 1, so one entry per event).
//!
//! Files (each replaced atomically, so a reader never sees half a file):
//! - `histogram_<worker>_<field>.csv`: comment lines `# field`, `# entries/underflow/overflow/
//!   invalid`, `# events` (the events counted), then `bin_low,bin_high,count`, one line per
//!   bin ([`parse_histogram_csv`] reads it);
//! - for `exporters.histogram` (mimoCoRB2's name) also mimoCoRB2's files:
//!   `Histograms_<source buffer>/info.csv` (`Channel,Min,Max,NBins`) and `<field>.npy` (the
//!   counts as int64), rewritten at the same times. mimoCoRB2 binned with
//!   `np.linspace(min, max, NBins)` edges, which is NBins − 1 bins; here `n` means n bins, and
//!   info.csv says `NBins = n + 1`, so that a mimoCoRB2 script's `np.linspace(Min, Max, NBins)`
//!   gives exactly the edges of the counts in the .npy file (a value equal to max is overflow
//!   here; mimoCoRB2's last bin included it);
//! - at the end, for each entry of `fit:`, `fit_<name>.json` and `fit_<name>.txt` with the
//!   result (or the reason there is none); the same line is logged and kept for
//!   [`HistogramExport::summary`].
//!
//! Guarantees: `consume` allocates nothing and does no I/O; files are written in
//! `flush`/`finish` only. A process started again after a failure (`restart: on-failure`)
//! goes on from the counts its earlier process last wrote, and the events that process took
//! after that write are counted lost for the worker (see [`Exporter::kept_from_earlier`]):
//! the histograms hold every event the books say they were delivered. The live histograms
//! can be read with [`HistogramExport::histograms`] (edges and counts) by a monitor in the
//! same process.

use super::fit::{self, ExponentialFit, FitError, GaussianFit};
use super::trace::{one_source, FieldAccess};
use crate::keys;
use crate::worker::{
    BuildContext, EventRef, Exporter, FunctionSpec, Items, Key, Mapping, Template, WorkerError,
};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The declaration of `export.histogram`.
pub const SPEC: FunctionSpec = FunctionSpec::new(
    "export.histogram",
    Template::Exporter,
    "Fills 1-D histograms of chosen feature fields (n bins over [min, max), with \
     under/overflow), writes them as CSV into the run directory periodically and at the \
     end, and optionally fits them at the end (exponential lifetime or gaussian peaks).",
    KEYS,
)
.naming_after_worker(&[
    crate::worker::WorkerFiles {
        prefix: "histograms_",
        extension: "h5",
        more: false,
    },
    crate::worker::WorkerFiles {
        prefix: "histogram_",
        extension: "csv",
        more: true,
    },
]);

/// The declaration of `exporters.histogram`: mimoCoRB2's name for `export.histogram`, which
/// also writes mimoCoRB2's `Histograms_<buffer>/` files.
pub const MIMOCORB2_SPEC: FunctionSpec = FunctionSpec {
    name: "exporters.histogram",
    summary: "mimoCoRB2's exporters.histogram, run by export.histogram (n bins over [min, max)) \
              that also writes mimoCoRB2's Histograms_<buffer>/info.csv and <field>.npy; events \
              pass on unchanged to sinks of the source's shape.",
    ..SPEC
};

keys! {
    list KEYS;
    const BINS: Key<Mapping> = ("bins", required, "field → [min, max, n]: n bins over [min, max) in the field's unit");
    const UPDATE_INTERVAL: Key<f64> = ("update_interval", 1.0, "seconds between rewrites of the CSV files");
    const FIT: Key<Items> = ("fit", [], "fits at the end: each {field, model: exponential|gaussian, min, max, background: false, name}");
}

/// Most bins one histogram may have (128 MiB of counts).
pub const MAX_BINS: usize = 1 << 24;

/// A 1-D histogram with n equal bins over `[lo, hi)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    lo: f64,
    hi: f64,
    inv_width: f64,
    counts: Vec<u64>,
    underflow: u64,
    overflow: u64,
    invalid: u64,
}

impl Histogram {
    /// `n` bins over `[lo, hi)`; `None` unless `n ≥ 1`, both ends finite and `hi > lo`.
    pub fn new(lo: f64, hi: f64, n: usize) -> Option<Histogram> {
        if n == 0 || !lo.is_finite() || !hi.is_finite() || hi <= lo {
            return None;
        }
        Some(Histogram {
            lo,
            hi,
            inv_width: n as f64 / (hi - lo),
            counts: vec![0; n],
            underflow: 0,
            overflow: 0,
            invalid: 0,
        })
    }

    /// Counts `x`.
    #[inline]
    pub fn fill(&mut self, x: f64) {
        if x.is_nan() {
            self.invalid += 1;
        } else if x < self.lo {
            self.underflow += 1;
        } else if x >= self.hi {
            self.overflow += 1;
        } else {
            let i = (((x - self.lo) * self.inv_width) as usize).min(self.counts.len() - 1);
            self.counts[i] += 1;
        }
    }

    /// The counts, one per bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Lower edge of the first bin.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// Upper edge of the last bin.
    pub fn hi(&self) -> f64 {
        self.hi
    }

    /// Bin width.
    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    /// Edge `i` (0 ≤ i ≤ bins): the lower edge of bin `i`, or `hi` for `i = bins`.
    pub fn edge(&self, i: usize) -> f64 {
        if i >= self.counts.len() {
            self.hi
        } else {
            self.lo + i as f64 * self.bin_width()
        }
    }

    /// All `bins + 1` edges.
    pub fn edges(&self) -> Vec<f64> {
        (0..=self.counts.len()).map(|i| self.edge(i)).collect()
    }

    /// Entries below `lo`.
    pub fn underflow(&self) -> u64 {
        self.underflow
    }

    /// Entries at or above `hi`.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// NaN entries.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Entries inside the bins.
    pub fn entries(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The CSV text described in the module documentation, with `# events:` when given.
    pub fn to_csv(&self, field: &str, events: Option<u64>) -> String {
        let mut s = String::with_capacity(32 * self.counts.len() + 128);
        let _ = writeln!(s, "# field: {field}");
        let _ = writeln!(
            s,
            "# entries: {}, underflow: {}, overflow: {}, invalid: {}",
            self.entries(),
            self.underflow,
            self.overflow,
            self.invalid
        );
        if let Some(n) = events {
            let _ = writeln!(s, "# events: {n}");
        }
        s.push_str("bin_low,bin_high,count\n");
        for (i, c) in self.counts.iter().enumerate() {
            let _ = writeln!(s, "{},{},{}", self.edge(i), self.edge(i + 1), c);
        }
        s
    }

    /// Takes the counts of `file` (as written by this histogram's worker earlier in the
    /// run), when its bins are this histogram's; else says how they differ.
    pub fn restore(&mut self, file: &HistogramFile) -> Result<(), String> {
        let n = self.counts.len();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (self.hi - self.lo);
        let (Some(&lo), Some(&hi)) = (file.edges.first(), file.edges.last()) else {
            return Err("it has no bins".into());
        };
        if file.counts.len() != n || !close(lo, self.lo) || !close(hi, self.hi) {
            return Err(format!(
                "its {} bins over [{lo}, {hi}) are not the {n} over [{}, {}) configured",
                file.counts.len(),
                self.lo,
                self.hi
            ));
        }
        self.counts.copy_from_slice(&file.counts);
        self.underflow = file.underflow;
        self.overflow = file.overflow;
        self.invalid = file.invalid;
        Ok(())
    }
}

/// One histogram of one `export.histogram` worker.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct HistogramFile {
    /// The worker that wrote it.
    pub worker: String,
    /// The histogrammed field.
    pub field: String,
    /// Entries inside the bins.
    pub entries: u64,
    /// Entries below the first bin.
    pub underflow: u64,
    /// Entries at or above the last bin's upper edge.
    pub overflow: u64,
    /// NaN entries.
    pub invalid: u64,
    /// Events counted (`# events:`; absent in files of versions before it).
    pub events: Option<u64>,
    /// Bin edges, one more than counts.
    pub edges: Vec<f64>,
    /// Counts per bin.
    pub counts: Vec<u64>,
}

/// Why a histogram file could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistogramCsvError {
    /// A line is not `low,high,count`.
    #[error("line {line}: expected 'bin_low,bin_high,count' numbers, found {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line (shortened).
        text: String,
    },
    /// A bin does not start where the previous one ended, or is not increasing.
    #[error("line {line}: bin edges are not contiguous and increasing")]
    BadEdges {
        /// 1-based line number.
        line: usize,
    },
    /// The `bin_low,bin_high,count` header or every bin is missing.
    #[error("no 'bin_low,bin_high,count' header or no bins")]
    NoBins,
}

fn comment_number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}: "))?;
    let rest = &line[at + key.len() + 2..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Parses the CSV that `export.histogram` writes (see `analysis::histogram`).
pub fn parse_histogram_csv(text: &str) -> Result<HistogramFile, HistogramCsvError> {
    let mut h = HistogramFile::default();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim();
            if let Some(f) = c.strip_prefix("field:") {
                h.field = f.trim().to_string();
            } else if c.starts_with("entries:") {
                h.entries = comment_number(c, "entries").unwrap_or(0);
                h.underflow = comment_number(c, "underflow").unwrap_or(0);
                h.overflow = comment_number(c, "overflow").unwrap_or(0);
                h.invalid = comment_number(c, "invalid").unwrap_or(0);
            } else if c.starts_with("events:") {
                h.events = comment_number(c, "events");
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if !header {
            if line.trim() == "bin_low,bin_high,count" {
                header = true;
                continue;
            }
            return Err(HistogramCsvError::NoBins);
        }
        let bad = || HistogramCsvError::BadLine {
            line: line_no,
            text: line.chars().take(60).collect(),
        };
        let mut parts = line.split(',');
        let (Some(lo), Some(hi), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let lo: f64 = lo.trim().parse().map_err(|_| bad())?;
        let hi: f64 = hi.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if !lo.is_finite() || !hi.is_finite() || hi <= lo {
            return Err(HistogramCsvError::BadEdges { line: line_no });
        }
        match h.edges.last() {
            None => h.edges.push(lo),
            Some(&last) if (last - lo).abs() <= 1e-9 * (hi - lo).abs().max(last.abs()) => {}
            Some(_) => return Err(HistogramCsvError::BadEdges { line: line_no }),
        }
        h.edges.push(hi);
        h.counts.push(n);
    }
    if h.counts.is_empty() {
        return Err(HistogramCsvError::NoBins);
    }
    Ok(h)
}

/// The result of one configured fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FitOutcome {
    /// An exponential lifetime fit.
    Exponential(ExponentialFit),
    /// A gaussian peak fit.
    Gaussian(GaussianFit),
}

impl std::fmt::Display for FitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitOutcome::Exponential(x) => x.fmt(f),
            FitOutcome::Gaussian(x) => x.fmt(f),
        }
    }
}

#[derive(Clone, Debug)]
struct FitRequest {
    name: String,
    hist: usize,
    gaussian: bool,
    background: bool,
    lo: f64,
    hi: f64,
}

/// `export.histogram`.
pub struct HistogramExport {
    worker: String,
    run_dir: PathBuf,
    fields: Vec<(FieldAccess, Histogram)>,
    fits: Vec<FitRequest>,
    interval: Duration,
    last_write: Instant,
    results: Vec<(String, Result<FitOutcome, FitError>)>,
    /// `Histograms_<buffer>` for mimoCoRB2's files, with its info.csv text.
    npy: Option<(PathBuf, String)>,
    /// Events counted, by this process and the earlier ones it went on from.
    events: u64,
    /// Of those, the ones counted by earlier processes (see `resume`).
    earlier_events: u64,
}

impl HistogramExport {
    /// Builds `exporters.histogram`: as [`HistogramExport::build`], also writing mimoCoRB2's
    /// files (see the module documentation).
    pub fn build_mimocorb2(ctx: &BuildContext) -> Result<HistogramExport, WorkerError> {
        let mut h = HistogramExport::build(ctx)?;
        let dir = ctx
            .run_dir
            .join(format!("Histograms_{}", one_source(ctx)?.name));
        let mut info = String::from("Channel,Min,Max,NBins\n");
        let bins = ctx.config.get(BINS)?;
        for (f, hist) in &h.fields {
            let v = bins.get(&f.name).and_then(|v| v.as_array());
            let end = |i: usize| {
                v.and_then(|a| a.get(i))
                    .map_or(String::new(), |x| x.to_string())
            };
            let _ = writeln!(info, "{},{},{},{}", f.name, end(0), end(1), hist.bins() + 1);
        }
        h.npy = Some((dir, info));
        Ok(h)
    }

    /// Builds it; every histogrammed field must exist in the source.
    pub fn build(ctx: &BuildContext) -> Result<HistogramExport, WorkerError> {
        // Its files hold every event's entries: a second process's histograms, written over
        // the first's, held only the events it took.
        ctx.one_process("export.histogram", "")?;
        let c = &ctx.config;
        let src = one_source(ctx)?;
        let bins = c.get(BINS)?;
        if bins.is_empty() {
            return Err(c.error(BINS.name, "names no field").into());
        }
        let mut fields = Vec::new();
        for (name, spec) in bins {
            let bad = || {
                c.error(
                    BINS.name,
                    format!(
                        "'{name}': expected [min, max, n] with min < max and n ≥ 1, found {spec}"
                    ),
                )
            };
            let v = spec.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
            let (lo, hi) = (
                v[0].as_f64().ok_or_else(bad)?,
                v[1].as_f64().ok_or_else(bad)?,
            );
            let n = v[2].as_u64().ok_or_else(bad)?;
            if n > MAX_BINS as u64 {
                return Err(c
                    .error(
                        BINS.name,
                        format!(
                            "'{name}': {n} bins is more than the {MAX_BINS} a histogram may \
                             have (8 bytes each, kept in memory and written at the end)"
                        ),
                    )
                    .into());
            }
            let h = Histogram::new(lo, hi, n as usize).ok_or_else(bad)?;
            let access = FieldAccess::new(src, name)
                .map_err(|e| WorkerError::from(c.error(BINS.name, e.to_string())))?;
            fields.push((access, h));
        }
        let mut fits = Vec::new();
        for (k, item) in c.get(FIT)?.iter().enumerate() {
            let bad = |what: &str| c.error(FIT.name, format!("entry {k}: {what}, found {item}"));
            let o = item.as_object().ok_or_else(|| bad("expected a mapping"))?;
            let field = o
                .get("field")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("needs 'field'"))?;
            let hist = fields
                .iter()
                .position(|(f, _)| f.name == field)
                .ok_or_else(|| bad("'field' must be one of the histogrammed fields in 'bins'"))?;
            let gaussian = match o.get("model").and_then(|v| v.as_str()) {
                Some("exponential") => false,
                Some("gaussian") => true,
                _ => return Err(bad("'model' must be exponential or gaussian").into()),
            };
            let h = &fields[hist].1;
            let lo = match o.get("min") {
                None => h.lo(),
                Some(v) => v.as_f64().ok_or_else(|| bad("'min' must be a number"))?,
            };
            let hi = match o.get("max") {
                None => h.hi(),
                Some(v) => v.as_f64().ok_or_else(|| bad("'max' must be a number"))?,
            };
            if hi.is_nan() || lo.is_nan() || hi <= lo {
                return Err(bad("needs min < max").into());
            }
            let background = match o.get("background") {
                None => false,
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| bad("'background' must be true or false"))?,
            };
            let name = match o.get("name") {
                None => format!("{field}_{k}"),
                Some(v) => v
                    .as_str()
                    .filter(|s| !s.is_empty() && !s.contains(['/', '\\']))
                    .ok_or_else(|| bad("'name' must be a file-name-safe string"))?
                    .to_string(),
            };
            if let Some(extra) = o.keys().find(|k| {
                !["field", "model", "min", "max", "background", "name"].contains(&k.as_str())
            }) {
                return Err(bad(&format!("unknown key '{extra}'")).into());
            }
            fits.push(FitRequest {
                name,
                hist,
                gaussian,
                background,
                lo,
                hi,
            });
        }
        let interval = super::trace::positive_seconds(ctx, UPDATE_INTERVAL)?;
        let mut h = HistogramExport {
            worker: ctx.worker.clone(),
            run_dir: ctx.run_dir.clone(),
            fields,
            fits,
            interval,
            last_write: Instant::now(),
            results: Vec::new(),
            npy: None,
            events: 0,
            earlier_events: 0,
        };
        // A check builds it with no run directory: it reads nothing then.
        if !ctx.run_dir.as_os_str().is_empty() {
            h.resume();
        }
        Ok(h)
    }

    /// Goes on from the files an earlier process of this worker wrote in this run (it failed
    /// and this one was started in its place): their counts, and as events counted the
    /// fewest any of them holds (none for a file missing beside others: the books never
    /// say a file holds more than it does). A file that cannot be taken (unreadable, other
    /// bins) is kept beside as `<name>.earlier` and its histogram starts empty, never
    /// written over.
    fn resume(&mut self) {
        let mut earlier: Option<u64> = None;
        let mut missing = false;
        for i in 0..self.fields.len() {
            let path = self.csv_path(&self.fields[i].0.name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                missing = true;
                continue;
            };
            let taken = parse_histogram_csv(&text)
                .map_err(|e| e.to_string())
                .and_then(|f| self.fields[i].1.restore(&f).map(|()| f.events.unwrap_or(0)));
            match taken {
                Ok(n) => {
                    earlier = Some(earlier.map_or(n, |e| e.min(n)));
                }
                Err(why) => {
                    let aside = path.with_extension("csv.earlier");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::warn!(
                        "{}: cannot go on from {} ({why}): kept as {}; this histogram starts \
                         empty",
                        self.worker,
                        path.display(),
                        aside.display()
                    );
                    earlier = Some(0);
                }
            }
        }
        if let Some(n) = earlier.map(|n| if missing { 0 } else { n }) {
            self.events = n;
            self.earlier_events = n;
            tracing::info!(
                "{}: resuming the histograms after {n} events counted by an earlier process \
                 of this worker",
                self.worker
            );
        }
    }

    /// The live histograms: field name and histogram (edges and counts).
    pub fn histograms(&self) -> impl Iterator<Item = (&str, &Histogram)> {
        self.fields.iter().map(|(f, h)| (f.name.as_str(), h))
    }

    /// Writes every histogram into `histograms_<worker>.h5` in the run directory (group
    /// `/histograms/<field>` with `edges` and `counts`, under/overflow as attributes), at the
    /// end of the run.
    fn write_hdf5(&self) -> Result<(), WorkerError> {
        use crate::export::hdf5::{AttrValue, RunFileWriter, RunInfo, RunStats, WriterOptions};
        let path = self.run_dir.join(format!("histograms_{}.h5", self.worker));
        let _ = std::fs::remove_file(&path);
        let setup = std::fs::read_to_string(self.run_dir.join("setup.yaml")).unwrap_or_default();
        let fail = WorkerError::output;
        let mut w = RunFileWriter::create(&path, RunInfo::new(setup), WriterOptions::default())
            .map_err(fail)?;
        for (name, h) in self.histograms() {
            w.write_histogram(
                name,
                &h.edges(),
                h.counts(),
                &[
                    ("underflow", AttrValue::Int(h.underflow() as i64)),
                    ("overflow", AttrValue::Int(h.overflow() as i64)),
                    ("worker", AttrValue::Text(self.worker.clone())),
                ],
            )
            .map_err(fail)?;
        }
        w.finish(RunStats::default()).map_err(fail)?;
        Ok(())
    }

    /// Runs the configured fits on the current histograms (also done by `finish`).
    pub fn run_fits(&self) -> Vec<(String, Result<FitOutcome, FitError>)> {
        self.fits
            .iter()
            .map(|r| {
                let h = &self.fields[r.hist].1;
                let res = if r.gaussian {
                    fit::gaussian_histogram(h, r.lo, r.hi, r.background).map(FitOutcome::Gaussian)
                } else {
                    fit::exponential_histogram(h, r.lo, r.hi).map(FitOutcome::Exponential)
                };
                (r.name.clone(), res)
            })
            .collect()
    }

    /// The results of the fits made by `finish` (empty before).
    pub fn fit_results(&self) -> &[(String, Result<FitOutcome, FitError>)] {
        &self.results
    }

    /// One line per fit made by `finish`, for the end-of-run summary.
    pub fn summary(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|(name, r)| match r {
                Ok(o) => format!("{}: {name}: {o}", self.worker),
                Err(e) => format!("{}: {name}: no fit: {e}", self.worker),
            })
            .collect()
    }

    /// Path of the CSV file for `field`.
    pub fn csv_path(&self, field: &str) -> PathBuf {
        self.run_dir
            .join(format!("histogram_{}_{field}.csv", self.worker))
    }

    fn write_all(&mut self) -> Result<(), WorkerError> {
        for (f, h) in &self.fields {
            let text = h.to_csv(&f.name, Some(self.events));
            crate::worker::write_atomically(&self.csv_path(&f.name), text.as_bytes())?;
        }
        if let Some((dir, info)) = &self.npy {
            std::fs::create_dir_all(dir).map_err(|source| WorkerError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            crate::worker::write_atomically(&dir.join("info.csv"), info.as_bytes())?;
            for (f, h) in &self.fields {
                let path = dir.join(format!("{}.npy", f.name));
                crate::worker::write_atomically(&path, &npy_int64(h.counts()))?;
            }
        }
        self.last_write = Instant::now();
        Ok(())
    }
}

/// `counts` as a NumPy .npy file (format 1.0) of int64, as `np.save` writes it.
pub fn npy_int64(counts: &[u64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        counts.len()
    );
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + 8 * counts.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &c in counts {
        out.extend_from_slice(&(c.min(i64::MAX as u64) as i64).to_le_bytes());
    }
    out
}

impl Exporter for HistogramExport {
    fn kept_from_earlier(&self) -> Option<u64> {
        Some(self.earlier_events)
    }

    fn consume(&mut self, event: &EventRef<'_>) -> Result<(), WorkerError> {
        self.events += 1;
        let records = event.len();
        for (f, h) in &mut self.fields {
            for i in 0..records {
                if let Some(x) = f.get(event.data, i) {
                    h.fill(x);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WorkerError> {
        if self.last_write.elapsed() >= self.interval {
            self.write_all()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), WorkerError> {
        self.write_all()?;
        self.write_hdf5()?;
        self.results = self.run_fits();
        for (name, r) in &self.results {
            let json = match r {
                Ok(o) => serde_json::json!({ "name": name, "result": o }),
                Err(e) => serde_json::json!({ "name": name, "error": e.to_string() }),
            };
            let text = match r {
                Ok(o) => format!("{o}\n"),
                Err(e) => format!("no fit: {e}\n"),
            };
            let body = serde_json::to_vec_pretty(&json)?;
            crate::worker::write_atomically(&self.run_dir.join(format!("fit_{name}.json")), &body)?;
            crate::worker::write_atomically(
                &self.run_dir.join(format!("fit_{name}.txt")),
                text.as_bytes(),
            )?;
        }
        for line in self.summary() {
            tracing::info!("{line}");
        }
        Ok(())
    }

    fn summary(&self) -> Vec<String> {
        HistogramExport::summary(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_bins_means_n_bins() {
        let mut h = Histogram::new(0.0, 10.0, 5).unwrap();
        for x in [-1.0, 0.0, 1.99, 2.0, 9.999, 10.0, f64::NAN] {
            h.fill(x);
        }
        assert_eq!(h.bins(), 5);
        assert_eq!(h.counts(), &[2, 1, 0, 0, 1]);
        assert_eq!((h.underflow(), h.overflow(), h.invalid()), (1, 1, 1));
        assert_eq!(h.edges(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(Histogram::new(1.0, 1.0, 3).is_none());
        assert!(Histogram::new(0.0, 1.0, 0).is_none());
        let csv = h.to_csv("x", None);
        assert!(csv.contains("bin_low,bin_high,count\n0,2,2\n"), "{csv}");
        assert!(csv.contains("underflow: 1, overflow: 1, invalid: 1"));
    }

    #[test]
    fn restores_its_own_file_and_refuses_other_bins() {
        let mut h = Histogram::new(0.0, 10.0, 5).unwrap();
        for x in [-1.0, 0.5, 3.0, 3.5, 11.0, f64::NAN] {
            h.fill(x);
        }
        let file = parse_histogram_csv(&h.to_csv("x", Some(6))).unwrap();
        assert_eq!(file.events, Some(6));
        let mut again = Histogram::new(0.0, 10.0, 5).unwrap();
        again.restore(&file).unwrap();
        assert_eq!(again, h);
        again.fill(9.0);
        assert_eq!(again.counts(), &[1, 2, 0, 0, 1]);
        for other in [
            Histogram::new(0.0, 10.0, 4),
            Histogram::new(0.0, 12.0, 5),
            Histogram::new(1.0, 10.0, 5),
        ] {
            let mut other = other.unwrap();
            let err = other.restore(&file).unwrap_err();
            assert!(err.contains("5 bins over [0, 10)"), "{err}");
            assert_eq!(other.entries(), 0);
        }
    }
}
