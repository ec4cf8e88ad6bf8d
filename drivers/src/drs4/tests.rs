//! The DRS4 driver against the simulated board across an unplug: reconnect finds the same
//! board again (by serial number, at its new address) and events flow again, calibrated.
//! Guarantees: every test is deterministic (fixed seeds) and asserts counted facts.

use std::time::Duration;

use super::protocol::CELLS;
use super::{Drs4, Drs4Calibration, Drs4Config, SimDrs4, SimDrs4Config};
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

fn board_with_true_calibration(sim: &SimDrs4) -> Drs4<super::simulator::SimDrs4Handle> {
    let mut board = Drs4::open(&mut sim.bus(), Drs4Config::default()).unwrap();
    let mut cal = Drs4Calibration::nominal();
    {
        let s = sim.state();
        cal.offset.copy_from_slice(&s.true_offset[..]);
        cal.gain.copy_from_slice(&s.true_gain[..]);
    }
    board.set_calibration(cal);
    board
}

#[test]
fn drs4_reconnect_after_unplug_finds_the_same_board_and_events_flow_again() {
    let sim = SimDrs4::new(SimDrs4Config::default());
    let mut board = board_with_true_calibration(&sim);
    let mut out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
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
    assert!(board.reconnect().unwrap());
    assert_eq!(board.reconnects(), 1);
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
    let mut board = board_with_true_calibration(&sim);
    let mut out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
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
    let mut board = board_with_true_calibration(&sim);
    let mut out = vec![0u8; board.layout().event_size()];
    board.start().unwrap();
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
