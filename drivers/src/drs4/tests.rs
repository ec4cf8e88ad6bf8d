//! The DRS4 driver against the simulated board across an unplug: reconnect finds the same
//! board again (by serial number, at its new address) and events flow again, calibrated.
//! Guarantees: every test is deterministic (fixed seeds) and asserts counted facts.

use std::time::Duration;

use super::protocol::CELLS;
use super::{Drs4, Drs4Config, SimDrs4, SimDrs4Config};
use crate::driver::{DriverError, ReadOutcome, Source};
use crate::usb::UsbTransport;

const T: Duration = Duration::from_secs(1);

fn ch(out: &[u8], record: usize, field: usize) -> f32 {
    let at = (record * 4 + field) * 4;
    f32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]])
}

/// Reads one event and checks the simulated pulse: −0.3 V peaking at readout sample 600 on
/// CH1, calibrated to within 5 mV, baseline within twice the noise.
fn assert_calibrated_event(board: &mut Drs4<impl UsbTransport>, sim: &SimDrs4, out: &mut [u8]) {
    assert!(matches!(
        board.read_event(out, T).unwrap(),
        ReadOutcome::Event(_)
    ));
    assert_eq!(board.last_stop_cell(), sim.state().last_stop_cell);
    let (peak_at, peak) = (0..CELLS)
        .map(|j| (j, ch(out, j, 0)))
        .fold((0, 0.0f32), |m, (j, v)| if v < m.1 { (j, v) } else { m });
    assert_eq!(peak_at, 600);
    assert!((peak + 0.3).abs() < 0.005, "calibrated pulse height {peak}");
    let baseline = ((0..500).map(|j| ch(out, j, 0).powi(2)).sum::<f32>() / 500.0).sqrt();
    assert!(baseline < 2.0 * 30.0 / 65536.0, "baseline rms {baseline}");
}

/// The board of `sim` opened with the calibration in its EEPROM and started, and a buffer
/// for one event.
fn started_board_with_true_calibration(
    sim: &SimDrs4,
) -> (Drs4<super::simulator::SimDrs4Handle>, Vec<u8>) {
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    assert_eq!(
        board.calibration_source().to_string(),
        "eeprom (voltage, timing)"
    );
    let out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
    (board, out)
}

#[test]
fn drs4_reconnect_after_unplug_finds_the_same_board_and_events_flow_again() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let (mut board, mut out) = started_board_with_true_calibration(&sim);
    for _ in 0..3 {
        assert_calibrated_event(&mut board, &sim, &mut out);
    }
    assert_eq!(board.info().port, "usb:001:009");

    sim.unplug();
    assert!(matches!(
        board.read_event(&mut out, T),
        Err(DriverError::Disconnected { .. })
    ));
    assert!(!board.reconnect().unwrap(), "nothing on the bus");
    assert!(!board.reconnect().unwrap(), "still nothing on the bus");
    assert!(
        matches!(
            board.read_event(&mut out, T),
            Err(DriverError::Disconnected { .. })
        ),
        "no reads through a handle that is not known to be the board"
    );

    sim.plug();
    let reads = sim.state().eeprom_reads;
    assert!(board.reconnect().unwrap());
    assert_eq!(board.reconnects(), 1);
    assert_eq!(
        sim.state().eeprom_reads,
        reads,
        "the calibration is kept, not read again"
    );
    assert_eq!(*board.calibration().offset, *sim.state().true_offset);
    assert_eq!(board.info().port, "usb:001:010", "back at its new address");
    assert_eq!(board.info().serial.as_deref(), Some("2989"));
    for _ in 0..3 {
        assert_calibrated_event(&mut board, &sim, &mut out);
    }
    assert_eq!(sim.state().triggers, 6);
    let meta = board.run_metadata();
    assert!(
        meta.contains(&("drs4.events".into(), "6".into())),
        "{meta:?}"
    );
    assert!(
        meta.contains(&("drs4.reconnects".into(), "1".into())),
        "{meta:?}"
    );
}

#[test]
fn drs4_unplug_in_the_middle_of_a_readout_publishes_nothing_torn() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let (mut board, mut out) = started_board_with_true_calibration(&sim);
    assert_calibrated_event(&mut board, &sim, &mut out);
    // The next readout (18436 bytes) breaks off after 5000 bytes.
    sim.unplug_after_in_bytes(5000);
    assert!(matches!(
        board.read_event(&mut out, T),
        Err(DriverError::Disconnected { .. })
    ));
    assert!(!sim.state().plugged);
    let events = |b: &Drs4<_>| {
        b.run_metadata()
            .into_iter()
            .find(|(k, _)| k == "drs4.events")
            .map(|(_, v)| v)
    };
    assert_eq!(
        events(&board).as_deref(),
        Some("1"),
        "the torn readout is no event"
    );
    sim.plug();
    assert!(board.reconnect().unwrap());
    assert_calibrated_event(&mut board, &sim, &mut out);
    assert_eq!(events(&board).as_deref(), Some("2"));
}

#[test]
fn drs4_reconnect_refuses_another_board_at_the_same_place() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let (mut board, mut out) = started_board_with_true_calibration(&sim);
    sim.unplug();
    // Another board (serial 3001) is plugged in where ours was: REG_SERIAL_BOARD 0x24,
    // word-swapped to 0x26.
    sim.state().status[0x26..0x28].copy_from_slice(&3001u16.to_le_bytes());
    sim.plug();
    assert!(!board.reconnect().unwrap(), "serial 3001 is not board 2989");
    assert!(matches!(
        board.read_event(&mut out, T),
        Err(DriverError::Disconnected { .. })
    ));
    assert_eq!(
        sim.state().ctrl,
        [0u8; 0x40],
        "nothing written to the other board"
    );
    // Ours comes back.
    sim.unplug();
    sim.state().status[0x26..0x28].copy_from_slice(&2989u16.to_le_bytes());
    sim.plug();
    assert!(board.reconnect().unwrap());
    assert_eq!(board.info().port, "usb:001:011");
    assert_calibrated_event(&mut board, &sim, &mut out);
}

// ---- calibration from the board's EEPROM ----

use std::sync::{Arc, Mutex};

use super::driver::{CalibrationSource, Drs4Bus};
use super::eeprom::EepromLayout;
use super::protocol::*;
use super::simulator::{SimDrs4Bus, SimDrs4Handle};
use crate::usb::{Setup, UsbBus, UsbDeviceEntry, UsbError};

/// One bulk transfer as seen on the wire: OUT (EP 0x04) or IN (EP 0x88) and its bytes.
#[derive(Clone, Debug, PartialEq)]
enum Wire {
    Out(Vec<u8>),
    In(Vec<u8>),
}

/// The simulated bus with every bulk transfer in both directions recorded.
#[derive(Clone)]
struct RecordingBus {
    inner: SimDrs4Bus,
    wire: Arc<Mutex<Vec<Wire>>>,
}

struct RecordingHandle {
    inner: SimDrs4Handle,
    wire: Arc<Mutex<Vec<Wire>>>,
}

impl UsbBus for RecordingBus {
    type Transport = RecordingHandle;
    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError> {
        self.inner.list()
    }
    fn open(&mut self, entry: &UsbDeviceEntry, interface: u8) -> Result<RecordingHandle, UsbError> {
        Ok(RecordingHandle {
            inner: self.inner.open(entry, interface)?,
            wire: self.wire.clone(),
        })
    }
}

impl Drs4Bus for RecordingBus {
    fn handle_for_reconnect(&self) -> Result<Self, UsbError> {
        Ok(self.clone())
    }
}

impl UsbTransport for RecordingHandle {
    fn control_out(&mut self, setup: Setup, data: &[u8], t: Duration) -> Result<usize, UsbError> {
        self.inner.control_out(setup, data, t)
    }
    fn control_in(&mut self, setup: Setup, buf: &mut [u8], t: Duration) -> Result<usize, UsbError> {
        self.inner.control_in(setup, buf, t)
    }
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], t: Duration) -> Result<usize, UsbError> {
        assert_eq!(endpoint, EP_OUT);
        self.wire.lock().unwrap().push(Wire::Out(data.to_vec()));
        self.inner.bulk_out(endpoint, data, t)
    }
    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], t: Duration) -> Result<usize, UsbError> {
        assert_eq!(endpoint, EP_IN);
        let n = self.inner.bulk_in(endpoint, buf, t)?;
        self.wire.lock().unwrap().push(Wire::In(buf[..n].to_vec()));
        Ok(n)
    }
}

fn meta(board: &Drs4<impl UsbTransport>, key: &str) -> Option<String> {
    board
        .run_metadata()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn drs4_eeprom_read_sequence_is_byte_exact() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let wire = Arc::new(Mutex::new(Vec::new()));
    let mut bus = RecordingBus {
        inner: sim.bus(),
        wire: wire.clone(),
    };
    let board = Drs4::open(&mut bus, Drs4Config::default()).unwrap();
    let wire = wire.lock().unwrap().clone();
    // Open: 4 identification reads (OUT + IN each), reinit, frequency, ROFS and the four
    // trigger-level DACs (7 OUT); the EEPROM reads follow.
    let start = 4 * 2 + 7;
    let eeprom = sim.state().eeprom.clone();
    let mut expected = Vec::new();
    for (page, size) in [(0u8, 4096u32), (1, 32768), (2, 32768)] {
        // REG_EEPROM_PAGE_EVAL 0x1E, 16 bits, word-swapped to 0x1C.
        expected.push(Wire::Out(vec![2, 0, 0x1C, 0, 0, 0, 2, 0, 0, 0, page, 0]));
        // Control word with only the EEPROM-read bit (bit 4): the board is stopped.
        expected.push(Wire::Out(vec![2, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0x10, 0, 0, 0]));
        // REG_STATUS (0x10004, 32 bits) until SERIAL_BUSY (bit 5) clears: two busy replies.
        for reply in [0x22u8, 0x22, 0x02] {
            expected.push(Wire::Out(vec![1, 0, 0x04, 0, 0x01, 0, 4, 0, 0, 0]));
            expected.push(Wire::In(vec![reply, 0, 0, 0]));
        }
        // The page from RAM address 0 (wire 0x40000).
        let s = size.to_le_bytes();
        expected.push(Wire::Out(vec![1, 0, 0, 0, 4, 0, s[0], s[1], s[2], s[3]]));
        expected.push(Wire::In(eeprom[page as usize][..size as usize].to_vec()));
    }
    assert_eq!(wire[start..start + expected.len()], expected[..]);
    // Then trigger source and control word, and nothing else.
    assert_eq!(wire.len(), start + expected.len() + 2);
    assert!(
        matches!(&wire[start - 1], Wire::Out(f) if f[..3] == [CMD_WRITE, 0, 0x04]),
        "the last trigger-level DAC (DAC 1 at 0x06, swapped to 0x04) comes just before"
    );
    // Page 0 as PSI reads it: serial 2989, methods 2/2, one timing calibration, 5.12 GHz,
    // range 0, 30.5 °C, pages 1 and 2 written.
    assert_eq!(eeprom[0][..6], [0xAD, 0x0B, 0xFF, 0xFF, 2, 2]);
    assert_eq!(eeprom[0][8..10], [1, 0]);
    assert_eq!(eeprom[0][16..20], (5.12f32).to_le_bytes());
    assert_eq!(eeprom[0][20..24], [0, 61, 1, 0]);
    assert_eq!(sim.state().eeprom_reads, 3);
    assert_eq!(sim.state().eeprom_writes, 0);
    assert!(
        wire.iter().all(|w| match w {
            Wire::Out(f) => !(f[0] == CMD_WRITE && f[2..6] == [0, 0, 0, 0] && f[10] & 0x08 != 0),
            Wire::In(_) => true,
        }),
        "the EEPROM-write bit is never sent"
    );
    assert_eq!(
        meta(&board, "drs4.calibration").as_deref(),
        Some("eeprom (voltage, timing)")
    );
    assert_eq!(meta(&board, "drs4.calibration_warning"), None);
    assert_eq!(
        meta(&board, "drs4.timing_calibrated_ghz").as_deref(),
        Some("5.120000")
    );
}

#[test]
fn drs4_tables_from_eeprom_are_the_simulators_truth() {
    for board_type in [9u8, 8] {
        let sim = SimDrs4::new(SimDrs4Config {
            board_type,
            ..SimDrs4Config::default()
        });
        let board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
        let s = sim.state();
        let cal = board.calibration();
        assert_eq!(*cal.offset, *s.true_offset, "type {board_type}");
        assert_eq!(*cal.gain, *s.true_gain);
        assert_eq!(*cal.readout_offset, *s.true_readout_offset);
        assert_eq!(cal.cell_width_ns.as_deref(), Some(&*s.true_cell_width_ns));
        // Non-trivial: offsets spread over thousands of counts, gains over percent.
        assert!(s.true_offset[0].iter().any(|o| o.abs() > 1000.0));
        assert!(s.true_gain[3].iter().any(|g| (g - 1.0).abs() > 0.02));
        assert!(s.true_readout_offset[1].iter().any(|r| r.abs() >= 5.0));
        let CalibrationSource::Eeprom {
            header,
            timing_used,
            stuck_cells,
        } = board.calibration_source()
        else {
            panic!("{}", board.calibration_source())
        };
        assert_eq!(
            header.layout,
            EepromLayout::of_board_type(board_type).unwrap()
        );
        assert_eq!(header.serial, 2989);
        assert!(*timing_used);
        assert_eq!(*stuck_cells, 0);
        assert_eq!(header.temperature_c, (board_type == 9).then_some(30.5));
    }
}

#[test]
fn drs4_waveforms_calibrated_from_eeprom_match_the_truth_within_the_noise() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    for _ in 0..10 {
        assert_calibrated_event(&mut board, &sim, &mut out);
        for input in 1..4 {
            let rms =
                ((0..CELLS).map(|j| ch(&out, j, input).powi(2)).sum::<f32>() / CELLS as f32).sqrt();
            // Noise 30 counts = 0.46 mV; the stored tables are exact to < 1 count.
            assert!(rms < 1.2 * 30.0 / 65536.0, "input {} rms {rms}", input + 1);
        }
    }
    // Pedestals without the calibration would show the ±3000-count offsets (~26 mV rms).
    let mut raw_board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    raw_board.set_calibration(super::Drs4Calibration::nominal());
    raw_board.start().unwrap();
    assert!(matches!(
        raw_board.read_event(&mut out, T).unwrap(),
        ReadOutcome::Event(_)
    ));
    let rms = ((0..CELLS).map(|j| ch(&out, j, 2).powi(2)).sum::<f32>() / CELLS as f32).sqrt();
    assert!(rms > 0.015, "uncalibrated rms {rms}");
}

#[test]
fn drs4_time_axis_from_the_stored_cell_widths() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let config = Drs4Config {
        time_axis: true,
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    assert!(matches!(
        board.read_event(&mut out, T).unwrap(),
        ReadOutcome::Event(_)
    ));
    let stop = board.last_stop_cell();
    let widths = sim.state().true_cell_width_ns.clone();
    let t = |j: usize| {
        let at = j * 20 + 16;
        f32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]])
    };
    let mut expect = 0.0f64;
    for j in 0..CELLS {
        assert!(
            (t(j) as f64 - expect).abs() < 1e-3,
            "t[{j}] {} vs {expect}",
            t(j)
        );
        expect += widths[(j + stop) % CELLS] as f64;
    }
    // One revolution of the stored widths is 1024 / 5.12 GHz.
    assert!((expect - 200.0).abs() < 1e-2, "{expect}");
    assert!((t(1) - widths[stop % CELLS]).abs() < 1e-6);
}

#[test]
fn drs4_timing_calibration_is_used_only_at_its_frequency() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let config = Drs4Config {
        sampling_ghz: 2.0,
        time_axis: true,
        ..Drs4Config::default()
    };
    let board = Drs4::open(&mut sim.bus(), config).unwrap();
    assert!(board.calibration().cell_width_ns.is_none());
    assert_eq!(*board.calibration().offset, *sim.state().true_offset);
    assert_eq!(
        meta(&board, "drs4.calibration").as_deref(),
        Some("eeprom (voltage; timing taken at 5.120 GHz, not used at this frequency)")
    );
    let warning = meta(&board, "drs4.calibration_warning").unwrap();
    assert!(
        // 2 GHz is 31 ticks of 60 MHz: 1.982 GHz.
        warning.contains("board 2989") && warning.contains("1.982 GHz"),
        "{warning}"
    );
}

#[test]
fn drs4_blank_eeprom_falls_back_to_nominal_with_a_warning() {
    let sim = SimDrs4::new(SimDrs4Config {
        eeprom_calibrated: false,
        ..SimDrs4Config::default()
    });
    let board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    assert_eq!(*board.calibration(), super::Drs4Calibration::nominal());
    assert_eq!(
        meta(&board, "drs4.calibration").as_deref(),
        Some("nominal: EEPROM not calibrated")
    );
    let warnings = board.calibration_warnings();
    assert_eq!(warnings.len(), 1);
    let w = &warnings[0];
    assert!(
        w.contains("board 2989")
            && w.contains("page 0 byte 4 is 0xFF")
            && w.contains("drsosc")
            && w.contains("calibration_file"),
        "{w}"
    );
    assert_eq!(
        meta(&board, "drs4.calibration_warning").as_deref(),
        Some(w.as_str())
    );
    assert_eq!(sim.state().eeprom_reads, 1, "only the header page");
    assert_eq!(sim.state().eeprom_writes, 0);
}

#[test]
fn drs4_calibration_file_is_used_instead_of_the_eeprom() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let path = std::env::temp_dir().join(format!("drs4-eeprom-test-{}.txt", std::process::id()));
    std::fs::write(&path, super::Drs4Calibration::nominal().to_text()).unwrap();
    let config = Drs4Config {
        calibration_file: Some(path.clone()),
        ..Drs4Config::default()
    };
    let board = Drs4::open(&mut sim.bus(), config).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(sim.state().eeprom_reads, 0);
    assert_eq!(
        meta(&board, "drs4.calibration"),
        Some(format!("file {}", path.display()))
    );
}

#[test]
fn drs4_corrupt_eeprom_refuses_open_naming_page_and_byte() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    sim.state().eeprom[0][20] = 99; // range centre 0.99 V
    let Err(DriverError::Protocol { offset, detail, .. }) =
        Drs4::open(&mut sim.bus(), Drs4Config::default())
    else {
        panic!("corrupt EEPROM accepted")
    };
    assert_eq!(offset, 20);
    assert!(
        detail.contains("board 2989")
            && detail.contains("EEPROM page 0 byte 20")
            && detail.contains("calibration_file"),
        "{detail}"
    );
    // A cell width of 5.9 ns in page 2 (type 9, 5.12 GHz): cell 5 of channel 0, byte 4·5 + 2.
    let sim = SimDrs4::new(SimDrs4Config::default());
    sim.state().eeprom[2][22..24].copy_from_slice(&60000u16.to_le_bytes());
    let Err(DriverError::Protocol { offset, detail, .. }) =
        Drs4::open(&mut sim.bus(), Drs4Config::default())
    else {
        panic!("zero cell width accepted")
    };
    assert_eq!(offset, 22);
    assert!(detail.contains("EEPROM page 2 byte 22"), "{detail}");
}

#[test]
fn drs4_calibration_taken_at_another_range_centre_carries_over() {
    // Stored at centre 0.25 V, run at 0 V: the simulated cells shift exactly with the
    // range, so the carried-over offsets are right and the pulse is still −0.3 V.
    let sim = SimDrs4::new(SimDrs4Config {
        eeprom_range_centre: 0.25,
        ..SimDrs4Config::default()
    });
    assert_eq!(sim.state().eeprom[0][20], 25);
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    let warning = meta(&board, "drs4.calibration_warning").unwrap();
    assert!(warning.contains("range centre 0.25 V"), "{warning}");
    assert_eq!(
        meta(&board, "drs4.calibrated_range_centre_volts").as_deref(),
        Some("0.25")
    );
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    assert_calibrated_event(&mut board, &sim, &mut out);
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Whatever the EEPROM holds, open either refuses it with a protocol error naming
        /// a byte inside the pages, or applies tables that are all finite with positive
        /// gains; it never panics and never writes the EEPROM.
        #[test]
        fn drs4_open_survives_any_eeprom_bytes(
            seed in any::<u64>(),
            method in prop_oneof![Just(2u8), any::<u8>()],
            timing in prop_oneof![Just(2u8), any::<u8>()],
            garbage_everywhere in any::<bool>(),
        ) {
            let sim = SimDrs4::new(SimDrs4Config {
                eeprom_busy_polls: 0,
                ..SimDrs4Config::default()
            });
            {
                let mut s = sim.state();
                let mut x = seed | 1;
                for page in s.eeprom.iter_mut() {
                    for (i, b) in page.iter_mut().enumerate() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if garbage_everywhere || i % 97 == 0 {
                            *b = x as u8;
                        }
                    }
                }
                s.eeprom[0][4] = method;
                s.eeprom[0][5] = timing;
            }
            match Drs4::open(&mut sim.bus(), Drs4Config::default()) {
                Ok(board) => {
                    let c = board.calibration();
                    for input in 0..4 {
                        prop_assert!(c.offset[input].iter().all(|v| v.is_finite()));
                        prop_assert!(c.gain[input].iter().all(|g| g.is_finite() && *g > 0.0));
                        prop_assert!(c.readout_offset[input].iter().all(|v| v.is_finite()));
                    }
                    if let Some(w) = &c.cell_width_ns {
                        prop_assert!(w.iter().all(|v| v.is_finite() && *v >= -0.1 - 1e-6));
                    }
                    let source = board.calibration_source().to_string();
                    prop_assert!(
                        (method == 2) == source.starts_with("eeprom"),
                        "method {method}: {source}"
                    );
                }
                Err(DriverError::Protocol { offset, detail, .. }) => {
                    prop_assert!(method == 2, "{detail}");
                    prop_assert!(offset < 32768 && detail.contains("EEPROM page"), "{detail}");
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
            prop_assert_eq!(sim.state().eeprom_writes, 0);
        }
    }
}

#[test]
fn drs4_stuck_cells_marked_in_the_eeprom_are_repaired() {
    let stuck = vec![(0usize, 100usize), (0, 101), (2, 700), (3, 5)];
    let sim = SimDrs4::new(SimDrs4Config {
        stuck_cells: stuck.clone(),
        ..SimDrs4Config::default()
    });
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    assert_eq!(board.calibration().stuck_cells, stuck);
    assert_eq!(meta(&board, "drs4.stuck_cells").as_deref(), Some("4"));
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    for _ in 0..10 {
        // Unrepaired, a stuck cell (0xFFFF) would read about +0.5 V.
        assert_calibrated_event(&mut board, &sim, &mut out);
        for input in 1..4 {
            let worst = (0..CELLS)
                .map(|j| ch(&out, j, input).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 0.005, "input {} worst {worst} V", input + 1);
        }
        // Cells 100 and 101 of input 1 are both stuck: each takes the mean of cells 99
        // and 102.
        let stop = board.last_stop_cell();
        let at = |cell: usize| ch(&out, (cell + CELLS - stop) % CELLS, 0);
        let mean = (at(99) + at(102)) / 2.0;
        assert_eq!(at(100), mean);
        assert_eq!(at(101), mean);
    }
}

#[test]
fn drs4_stuck_cells_from_a_calibration_file_are_repaired_too() {
    let sim = SimDrs4::new(SimDrs4Config {
        stuck_cells: vec![(0, 100)],
        ..SimDrs4Config::default()
    });
    let mut cal = super::Drs4Calibration::nominal();
    {
        let s = sim.state();
        cal.offset.copy_from_slice(&s.true_offset[..]);
        cal.gain.copy_from_slice(&s.true_gain[..]);
        cal.readout_offset
            .copy_from_slice(&s.true_readout_offset[..]);
    }
    cal.stuck_cells = vec![(0, 100)];
    let path = std::env::temp_dir().join(format!("drs4-stuck-test-{}.txt", std::process::id()));
    std::fs::write(&path, cal.to_text()).unwrap();
    let config = Drs4Config {
        calibration_file: Some(path.clone()),
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(board.calibration().stuck_cells, [(0, 100)]);
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    for _ in 0..5 {
        assert_calibrated_event(&mut board, &sim, &mut out);
        let stop = board.last_stop_cell();
        let at = |cell: usize| ch(&out, (cell + CELLS - stop) % CELLS, 0);
        assert_eq!(at(100), (at(99) + at(101)) / 2.0);
    }
}
