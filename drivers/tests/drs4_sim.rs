//! The DRS4 driver against the simulated board, at the transfer level.

use std::time::Duration;

use daq_drivers::drs4::protocol::*;
use daq_drivers::drs4::{
    bench_simulated, Drs4, Drs4Calibration, Drs4Config, Drs4TriggerSource, SimDrs4, SimDrs4Config,
};
use daq_drivers::usb::{UsbBus, UsbError, UsbTransport};
use daq_drivers::{DriverError, ReadOutcome, Source};

const T: Duration = Duration::from_secs(1);

fn sample(out: &[u8], record: usize, field: usize, fields: usize) -> f32 {
    let at = (record * fields + field) * 4;
    f32::from_le_bytes(out[at..at + 4].try_into().unwrap())
}

fn rms(values: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = values.collect();
    (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
}

/// Soft-triggered pedestal events (inputs at 0 V) as volts of CH1..CH4.
fn pedestal_rms(board: &mut Drs4<impl UsbTransport>, events: usize) -> f32 {
    let mut out = vec![0u8; board.layout().event_size()];
    let mut all = Vec::new();
    for _ in 0..events {
        assert!(matches!(
            board.read_event(&mut out, T).unwrap(),
            ReadOutcome::Event(_)
        ));
        all.extend(
            (0..CELLS)
                .flat_map(|j| (0..4).map(move |c| (j, c)))
                .map(|(j, c)| sample(&out, j, c, 4)),
        );
    }
    rms(all.into_iter())
}

#[test]
fn open_sends_byte_exact_commands() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    assert_eq!(board.info().serial.as_deref(), Some("2989"));
    assert_eq!(board.identity().firmware, 21305);
    assert_eq!(board.identity().board_type, 9);
    let log = sim.state().log.clone();
    // Identification: magic, board type, firmware, serial — 16-bit reads, word-swapped.
    assert_eq!(log[0], [1, 0, 0x02, 0x00, 0x01, 0x00, 2, 0, 0, 0]);
    assert_eq!(log[1], [1, 0, 0x00, 0x00, 0x01, 0x00, 2, 0, 0, 0]);
    assert_eq!(log[2], [1, 0, 0x24, 0x00, 0x01, 0x00, 2, 0, 0, 0]);
    assert_eq!(log[3], [1, 0, 0x26, 0x00, 0x01, 0x00, 2, 0, 0, 0]);
    // Configuration: reinit, frequency (5 GHz → 12 ticks − 2 = 10 at swapped 0x18), ROFS DAC.
    assert_eq!(log[4], [2, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0x02, 0, 0, 0]);
    assert_eq!(log[5], [2, 0, 0x18, 0, 0, 0, 2, 0, 0, 0, 10, 0]);
    let rofs = dac_counts(1.6).to_le_bytes();
    assert_eq!(log[6], [2, 0, 0x06, 0, 0, 0, 2, 0, 0, 0, rofs[0], rofs[1]]);
    // Trigger source CH1 at REG_TRG_CONFIG 0x1C (swapped 0x1E), then the control word.
    let n = log.len();
    assert_eq!(log[n - 2], [2, 0, 0x1E, 0, 0, 0, 2, 0, 0, 0, 1, 0]);
    let ctrl =
        (BIT_DACTIVE | BIT_ADC_ACTIVE | BIT_READOUT_MODE | BIT_ENABLE_TRIGGER1 | BIT_NEG_TRIGGER)
            .to_le_bytes();
    assert_eq!(
        log[n - 1],
        [2, 0, 0, 0, 0, 0, 4, 0, 0, 0, ctrl[0], ctrl[1], ctrl[2], ctrl[3]]
    );
}

#[test]
fn register_round_trips_through_the_word_swap() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    board.write_register16(REG_TRG_DELAY, 0x1234).unwrap();
    assert_eq!(
        board.read_register16(Space::Ctrl, REG_TRG_DELAY).unwrap(),
        0x1234
    );
    assert_eq!(
        sim.state().ctrl[0x1A..0x1C],
        [0x34, 0x12],
        "REG_TRG_DELAY 0x18 sits at 0x1A"
    );
    board.write_register16(REG_CHANNEL_MODE, 0xBEEF).unwrap();
    assert_eq!(
        sim.state().ctrl[0x14..0x16],
        [0xEF, 0xBE],
        "REG_CHANNEL_MODE 0x16 sits at 0x14"
    );
    assert_eq!(
        board
            .read_register16(Space::Ctrl, REG_CHANNEL_MODE)
            .unwrap(),
        0xBEEF
    );
    board.set_dac(3, 1.25).unwrap();
    assert_eq!(
        board.read_register16(Space::Ctrl, REG_DAC_OFS + 6).unwrap(),
        0x8000
    );
    let word = board.read_register32(Space::Ctrl, REG_CTRL).unwrap();
    assert_eq!(word & BIT_ENABLE_TRIGGER1, BIT_ENABLE_TRIGGER1);
    assert_eq!(
        board.read_register16(Space::Status, REG_MAGIC).unwrap(),
        0xC0DE
    );
}

#[test]
fn simulator_stalls_malformed_commands() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut bus = sim.bus();
    let entry = bus.list().unwrap().remove(0);
    assert_eq!((entry.vendor_id, entry.product_id), (0x04b4, 0x1175));
    let mut h = bus.open(&entry, 0).unwrap();
    assert_eq!(
        h.bulk_out(EP_OUT, &[1, 0, 0], T),
        Err(UsbError::Stall),
        "short header"
    );
    assert_eq!(
        h.bulk_out(EP_OUT, &header(3, 0, 2), T),
        Err(UsbError::Stall),
        "unknown command"
    );
    assert_eq!(
        h.bulk_out(EP_OUT, &header(CMD_READ, 1, 2), T),
        Err(UsbError::Stall),
        "odd address"
    );
    assert_eq!(
        h.bulk_out(EP_OUT, &header(CMD_WRITE, 0, 2), T),
        Err(UsbError::Stall),
        "missing data"
    );
    assert_eq!(
        h.bulk_out(0x02, &header(CMD_READ, 0, 2), T),
        Err(UsbError::Stall),
        "wrong endpoint"
    );
    let mut buf = [0u8; 4];
    assert_eq!(
        h.bulk_in(EP_IN, &mut buf, T),
        Err(UsbError::Timeout),
        "nothing asked, nothing sent"
    );
}

#[test]
fn stale_fifo_data_is_drained_at_open() {
    let sim = SimDrs4::new(SimDrs4Config {
        stale_fifo_bytes: 5000,
        ..SimDrs4Config::default()
    });
    let board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    assert_eq!(board.stale_bytes_drained(), 5000);
    assert_eq!(
        board.info().serial.as_deref(),
        Some("2989"),
        "identity read after the drain"
    );
}

#[test]
fn firmware_too_old_is_refused_with_the_minimum() {
    let sim = SimDrs4::new(SimDrs4Config {
        firmware: 15000,
        ..SimDrs4Config::default()
    });
    let Err(DriverError::Open { detail, .. }) = Drs4::open(&mut sim.bus(), Drs4Config::default())
    else {
        panic!("old firmware accepted")
    };
    assert!(
        detail.contains("15000") && detail.contains("15147"),
        "{detail}"
    );
}

#[test]
fn wrong_magic_is_a_protocol_error() {
    let sim = SimDrs4::new(SimDrs4Config {
        magic: 0x1234,
        ..SimDrs4Config::default()
    });
    let Err(DriverError::Protocol { detail, .. }) =
        Drs4::open(&mut sim.bus(), Drs4Config::default())
    else {
        panic!("bad magic accepted")
    };
    assert!(detail.contains("0x1234"), "{detail}");
}

#[test]
fn measured_offset_calibration_removes_per_cell_offsets() {
    // A board never calibrated: nothing in its EEPROM, so the offsets show until measured.
    let sim = SimDrs4::new(SimDrs4Config {
        eeprom_calibrated: false,
        ..SimDrs4Config::default()
    });
    let config = Drs4Config {
        trigger: Drs4TriggerSource::Software,
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    board.start().unwrap();
    // Uncalibrated: offsets spread ±3000 counts = ±46 mV, so rms ≈ 26 mV.
    let raw_rms = pedestal_rms(&mut board, 5);
    assert!(
        raw_rms > 0.015,
        "offsets visible before calibration: {raw_rms}"
    );
    board.calibrate_offsets(64).unwrap();
    // Each cell is seen ~64 times at random stop cells; residual offset error ≈ 30/√64 counts.
    let residual = pedestal_rms(&mut board, 5);
    let noise_volts = 30.0 / 65536.0;
    assert!(
        residual < 1.5 * noise_volts,
        "residual {residual} V vs noise {noise_volts} V"
    );
    let mean_offset_error: f32 = {
        let s = sim.state();
        let cal = board.calibration();
        // At 0 V the measured offset also absorbs the cell's gain: 32768/g − 32768 counts.
        let effective = |c: usize| s.true_offset[1][c] + 32768.0 / s.true_gain[1][c] - 32768.0;
        (0..CELLS)
            .map(|c| (cal.offset[1][c] - effective(c)).abs())
            .sum::<f32>()
            / CELLS as f32
    };
    assert!(
        mean_offset_error < 15.0,
        "offsets found per physical cell: {mean_offset_error} counts"
    );
    let said = board
        .run_metadata()
        .into_iter()
        .find(|(k, _)| k == "drs4.calibration")
        .map(|(_, v)| v);
    assert_eq!(
        said.as_deref(),
        Some("offsets measured with 64 pedestal events, the rest from nominal: EEPROM not calibrated")
    );
}

#[test]
fn calibration_file_with_true_tables_removes_offsets_and_gains() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut cal = Drs4Calibration::nominal();
    {
        let s = sim.state();
        cal.offset.copy_from_slice(&s.true_offset[..]);
        cal.gain.copy_from_slice(&s.true_gain[..]);
    }
    let path = std::env::temp_dir().join(format!("drs4-cal-{}.txt", std::process::id()));
    std::fs::write(&path, cal.to_text()).unwrap();
    let config = Drs4Config {
        calibration_file: Some(path),
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    let mut stops = std::collections::BTreeSet::new();
    for _ in 0..20 {
        assert!(matches!(
            board.read_event(&mut out, T).unwrap(),
            ReadOutcome::Event(_)
        ));
        stops.insert(board.last_stop_cell());
        assert_eq!(board.last_stop_cell(), sim.state().last_stop_cell);
        // The pulse peaks at readout sample 600 whatever the stop cell.
        let ch1: Vec<f32> = (0..CELLS).map(|j| sample(&out, j, 0, 4)).collect();
        let (peak_at, peak) =
            ch1.iter()
                .enumerate()
                .fold((0, 0.0f32), |m, (j, v)| if *v < m.1 { (j, *v) } else { m });
        assert_eq!(
            peak_at,
            600,
            "pulse moved with stop cell {}",
            board.last_stop_cell()
        );
        assert!((peak + 0.3).abs() < 0.005, "calibrated pulse height {peak}");
        let baseline = rms((0..500).map(|j| ch1[j]));
        assert!(baseline < 2.0 * 30.0 / 65536.0, "baseline rms {baseline}");
        let quiet = rms((0..CELLS).map(|j| sample(&out, j, 2, 4)));
        assert!(quiet < 2.0 * 30.0 / 65536.0, "CH3 rms {quiet}");
    }
    assert!(stops.len() > 15, "stop cells vary: {stops:?}");
}

#[test]
fn old_firmware_reads_the_stop_cell_register() {
    let sim = SimDrs4::new(SimDrs4Config {
        firmware: 16000,
        offset_spread_counts: 0.0,
        gain_spread: 0.0,
        ..SimDrs4Config::default()
    });
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    for _ in 0..5 {
        assert!(matches!(
            board.read_event(&mut out, T).unwrap(),
            ReadOutcome::Event(_)
        ));
        assert_eq!(board.last_stop_cell(), sim.state().last_stop_cell);
    }
}

#[test]
fn unreachable_trigger_level_gives_idle() {
    let sim = SimDrs4::new(SimDrs4Config {
        pulse_volts: -0.02,
        ..SimDrs4Config::default()
    });
    let config = Drs4Config {
        trigger_level: -0.1,
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    assert_eq!(
        board
            .read_event(&mut out, Duration::from_millis(20))
            .unwrap(),
        ReadOutcome::Idle
    );
    assert_eq!(sim.state().triggers, 0);
}

#[test]
fn time_axis_field_follows_the_sampling_frequency() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let config = Drs4Config {
        sampling_ghz: 2.0,
        time_axis: true,
        ..Drs4Config::default()
    };
    let mut board = Drs4::open(&mut sim.bus(), config).unwrap();
    let names: Vec<&str> = board.layout().names().collect();
    assert_eq!(names, ["ch1", "ch2", "ch3", "ch4", "t"]);
    assert_eq!(board.layout().event_size(), 1024 * 20);
    board.start().unwrap();
    let mut out = vec![0u8; board.layout().event_size()];
    assert!(matches!(
        board.read_event(&mut out, T).unwrap(),
        ReadOutcome::Event(_)
    ));
    let ghz = board.sampling_ghz();
    assert!(
        (ghz - 1.024 / 31.0 * 60.0).abs() < 1e-12,
        "31 ticks of 60 MHz: {ghz}"
    );
    assert_eq!(sample(&out, 0, 4, 5), 0.0);
    assert!((sample(&out, 1023, 4, 5) - (1023.0 / ghz) as f32).abs() < 1e-3);
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    for config in [
        Drs4Config {
            sampling_ghz: 9.0,
            ..Drs4Config::default()
        },
        Drs4Config {
            range_centre: 0.7,
            ..Drs4Config::default()
        },
        Drs4Config {
            trigger_level: 0.8,
            ..Drs4Config::default()
        },
    ] {
        assert!(matches!(
            Drs4::open(&mut sim.bus(), config),
            Err(DriverError::Config { .. })
        ));
    }
}

#[test]
fn unplugging_reports_disconnected() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    board.start().unwrap();
    sim.unplug();
    let mut out = vec![0u8; board.layout().event_size()];
    assert!(matches!(
        board.read_event(&mut out, T),
        Err(DriverError::Disconnected { .. })
    ));
}

#[test]
fn bench_counts_what_it_wrote() {
    let figures = bench_simulated(20, true).unwrap();
    assert_eq!(figures.events, 20);
    assert_eq!(figures.bytes, 20 * 1024 * 20);
}
