//! Per-cell calibration of the DRS4: voltage offset and gain of every sampling cell of the
//! four inputs, and optionally the effective width of every cell (time calibration).
//!
//! The conversion is
//! `volts = ((raw − offset[cell]) × gain[cell] − readout_offset[j]) / 65536 + range_low`,
//! where `cell` is the physical cell `(j + stop_cell) mod 1024` of readout sample `j` and
//! `range_low = centre − 0.5 V`; `readout_offset` is the small secondary offset that
//! belongs to the readout position, not to the cell (PSI's second offset table). The
//! tables come from the board's EEPROM (see [`eeprom`](super::eeprom)) or from a text file
//! of our own (`# daq-engine DRS4 calibration v1`, then lines `offset <input 1-4> <1024
//! numbers>`, `gain <input> <1024 numbers>`, `readout_offset <input> <1024 numbers>`,
//! `dt <1024 numbers in ns>`, `stuck <input> <cell numbers>`); missing tables are nominal.
//! Stuck cells (PSI's "stuck pixels") give no usable sample: the driver replaces theirs by
//! the mean of the nearest usable readout neighbours, as PSI's library does with the direct
//! neighbours.
//! Guarantees: a parsed table has exactly 1024 finite numbers, gains are positive, widths
//! positive; errors name file and line. Must never do device I/O.

use super::protocol::CELLS;

/// Why a calibration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The file could not be read.
    #[error("{path}: cannot read calibration: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {detail}")]
    Line {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what is expected.
        detail: String,
    },
}

/// Calibration tables of the four inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Drs4Calibration {
    /// Offset in ADC counts, per input, per physical cell.
    pub offset: Box<[[f32; CELLS]; 4]>,
    /// Gain factor, per input, per physical cell.
    pub gain: Box<[[f32; CELLS]; 4]>,
    /// Secondary offset in ADC counts (after the gain), per input, per readout position.
    pub readout_offset: Box<[[f32; CELLS]; 4]>,
    /// Stuck cells as (input 0–3, physical cell): their samples are replaced by the mean of
    /// the nearest usable readout neighbours.
    pub stuck_cells: Vec<(usize, usize)>,
    /// Effective width of each physical cell in ns, if time-calibrated.
    pub cell_width_ns: Option<Box<[f32; CELLS]>>,
}

/// The file's first line.
pub const FILE_HEADER: &str = "# daq-engine DRS4 calibration v1";

impl Default for Drs4Calibration {
    fn default() -> Self {
        Self::nominal()
    }
}

impl Drs4Calibration {
    /// No correction: offsets 0, gains 1, no time calibration.
    pub fn nominal() -> Self {
        Drs4Calibration {
            offset: Box::new([[0.0; CELLS]; 4]),
            gain: Box::new([[1.0; CELLS]; 4]),
            readout_offset: Box::new([[0.0; CELLS]; 4]),
            stuck_cells: Vec::new(),
            cell_width_ns: None,
        }
    }

    /// Volts of `raw` read at readout position `j` from physical `cell` of `input`.
    #[inline]
    pub fn volts(&self, input: usize, cell: usize, j: usize, raw: u16, range_low: f32) -> f32 {
        ((raw as f32 - self.offset[input][cell]) * self.gain[input][cell]
            - self.readout_offset[input][j])
            / 65536.0
            + range_low
    }

    /// The text form, readable by [`parse`](Self::parse).
    pub fn to_text(&self) -> String {
        let mut text = String::from(FILE_HEADER);
        text.push('\n');
        let row = |name: String, values: &[f32; CELLS]| {
            let numbers: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            format!("{name} {}\n", numbers.join(" "))
        };
        for input in 0..4 {
            text += &row(format!("offset {}", input + 1), &self.offset[input]);
            text += &row(format!("gain {}", input + 1), &self.gain[input]);
            if self.readout_offset[input].iter().any(|v| *v != 0.0) {
                text += &row(
                    format!("readout_offset {}", input + 1),
                    &self.readout_offset[input],
                );
            }
        }
        for input in 0..4 {
            let cells: Vec<String> = self
                .stuck_cells
                .iter()
                .filter(|(i, _)| *i == input)
                .map(|(_, c)| c.to_string())
                .collect();
            if !cells.is_empty() {
                text += &format!("stuck {} {}\n", input + 1, cells.join(" "));
            }
        }
        if let Some(dt) = &self.cell_width_ns {
            text += &row("dt".into(), dt);
        }
        text
    }

    /// Reads the text form.
    pub fn parse(text: &str, path: &str) -> Result<Self, CalibrationError> {
        let bad = |line: usize, detail: String| CalibrationError::Line {
            path: path.into(),
            line,
            detail,
        };
        let mut cal = Drs4Calibration::nominal();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, first)) if first.trim() == FILE_HEADER => {}
            _ => return Err(bad(1, format!("first line must be '{FILE_HEADER}'"))),
        }
        for (n, raw_line) in lines {
            let line = n + 1;
            let mut words = raw_line.split_whitespace();
            let Some(kind) = words.next() else { continue };
            if kind.starts_with('#') {
                continue;
            }
            let input = match kind {
                "offset" | "gain" | "readout_offset" | "stuck" => {
                    let w = words.next().unwrap_or("");
                    match w.parse::<usize>() {
                        Ok(i @ 1..=4) => Some(i - 1),
                        _ => return Err(bad(line, format!("input must be 1..4, found '{w}'"))),
                    }
                }
                "dt" => None,
                other => {
                    return Err(bad(
                        line,
                        format!(
                            "unknown table '{other}' (offset, gain, readout_offset, stuck, dt)"
                        ),
                    ))
                }
            };
            if let ("stuck", Some(i)) = (kind, input) {
                for w in words {
                    match w.parse::<usize>() {
                        Ok(cell) if cell < CELLS => {
                            if !cal.stuck_cells.contains(&(i, cell)) {
                                cal.stuck_cells.push((i, cell));
                            }
                        }
                        _ => {
                            return Err(bad(
                                line,
                                format!("stuck cell '{w}' is not a cell number 0 … {}", CELLS - 1),
                            ))
                        }
                    }
                }
                continue;
            }
            let mut values = [0.0f32; CELLS];
            let mut count = 0;
            for w in words {
                let v: f32 = w
                    .parse()
                    .map_err(|_| bad(line, format!("value {} '{w}' is not a number", count + 1)))?;
                if !v.is_finite() {
                    return Err(bad(line, format!("value {} is not finite", count + 1)));
                }
                if count == CELLS {
                    return Err(bad(line, format!("more than {CELLS} values")));
                }
                values[count] = v;
                count += 1;
            }
            if count != CELLS {
                return Err(bad(line, format!("{count} values, a table needs {CELLS}")));
            }
            if (kind == "gain" || kind == "dt") && values.iter().any(|v| *v <= 0.0) {
                return Err(bad(line, format!("{kind} values must be positive")));
            }
            match (kind, input) {
                ("offset", Some(i)) => cal.offset[i] = values,
                ("gain", Some(i)) => cal.gain[i] = values,
                ("readout_offset", Some(i)) => cal.readout_offset[i] = values,
                _ => cal.cell_width_ns = Some(Box::new(values)),
            }
        }
        Ok(cal)
    }

    /// Reads a calibration file.
    pub fn load(path: &std::path::Path) -> Result<Self, CalibrationError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }

    /// Time of each readout sample in ns, starting at 0, for a readout that began at
    /// `stop_cell`: the sum of the widths of the physical cells before it, or `j / f` when
    /// not time-calibrated.
    pub fn time_axis(&self, stop_cell: usize, sampling_ghz: f64, out: &mut [f32; CELLS]) {
        let mut t = 0.0f64;
        for (j, slot) in out.iter_mut().enumerate() {
            *slot = t as f32;
            t += match &self.cell_width_ns {
                Some(dt) => dt[(j + stop_cell) % CELLS] as f64,
                None => 1.0 / sampling_ghz,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let mut cal = Drs4Calibration::nominal();
        cal.offset[2][5] = -12.5;
        cal.gain[3][1023] = 1.25;
        cal.readout_offset[1][7] = -3.5;
        cal.stuck_cells = vec![(0, 17), (0, 1023), (3, 0)];
        cal.cell_width_ns = Some(Box::new([0.2; CELLS]));
        assert_eq!(
            Drs4Calibration::parse(&cal.to_text(), "c.txt").unwrap(),
            cal
        );
    }

    #[test]
    fn stuck_cell_numbers_are_checked() {
        let text = format!("{FILE_HEADER}\nstuck 2 5 1024\n");
        let err = Drs4Calibration::parse(&text, "s.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.txt:2: stuck cell '1024' is not a cell number 0 … 1023"
        );
    }

    #[test]
    fn short_table_names_the_line() {
        let text = format!("{FILE_HEADER}\n\ngain 2 1 1 1\n");
        let err = Drs4Calibration::parse(&text, "c.txt").unwrap_err();
        assert_eq!(err.to_string(), "c.txt:3: 3 values, a table needs 1024");
    }

    #[test]
    fn time_axis_rotates_cell_widths() {
        let mut cal = Drs4Calibration::nominal();
        let mut dt = [0.2f32; CELLS];
        dt[1000] = 0.5;
        cal.cell_width_ns = Some(Box::new(dt));
        let mut t = [0.0; CELLS];
        cal.time_axis(998, 5.0, &mut t);
        assert_eq!(t[0], 0.0);
        assert!((t[2] - 0.4).abs() < 1e-6);
        assert!((t[3] - 0.9).abs() < 1e-6, "cell 1000 is readout sample 2");
        let nominal = Drs4Calibration::nominal();
        nominal.time_axis(0, 2.0, &mut t);
        assert!((t[1023] - 511.5).abs() < 1e-3);
    }
}
