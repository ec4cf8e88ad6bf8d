//! The Hantek 6022 driver against the simulated scope, at the transfer level.

use std::time::Duration;

use daq_drivers::hantek6022::firmware::FirmwareImage;
use daq_drivers::hantek6022::protocol::{ControlTransfer, FirmwareFlavour};
use daq_drivers::hantek6022::{
    bench_simulated, Edge, Gain, Hantek6022, HantekConfig, SampleFormat, SimHantek,
    SimHantekConfig, SimSignal, Trigger,
};
use daq_drivers::usb::{Setup, UsbBus, UsbError, UsbTransport};
use daq_drivers::{DriverError, ReadOutcome, Source};

const T: Duration = Duration::from_millis(100);

fn out_transfer(request: u8, value: u16, data: &[u8]) -> ControlTransfer {
    ControlTransfer {
        setup: Setup::vendor_out(request).with_value(value),
        data: data.to_vec(),
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("daq-hantek-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A configuration that uploads the firmware file `name` (written with `bytes`) to a cold
/// device and looks for its re-enumeration every millisecond.
fn firmware_config(name: &str, bytes: &[u8]) -> HantekConfig {
    HantekConfig {
        firmware_path: Some(temp_file(name, bytes)),
        rescan_interval: Duration::from_millis(1),
        ..HantekConfig::default()
    }
}

#[test]
fn configure_start_stop_send_exact_control_transfers() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let config = HantekConfig {
        sample_rate: 100_000,
        gains: [Gain::X1, Gain::X5],
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    assert_eq!(scope.info().usb_id, Some((0x04b5, 0x6022)));
    assert_eq!(
        sim.state().log,
        vec![
            out_transfer(0xE4, 0, &[2]),
            out_transfer(0xE2, 0, &[110]),
            out_transfer(0xE0, 0, &[1]),
            out_transfer(0xE1, 0, &[5]),
        ]
    );
    scope.start().unwrap();
    scope.stop().unwrap();
    let log = sim.state().log.clone();
    assert_eq!(
        log[4..],
        [out_transfer(0xE3, 0, &[1]), out_transfer(0xE3, 0, &[0])]
    );
    let s = sim.state();
    assert_eq!(
        (s.gain, s.rate_code, s.channels, s.running),
        ([1, 5], 110, 2, false)
    );
}

#[test]
fn fx2lafw_firmware_uses_its_own_rate_table() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: Some(FirmwareFlavour::Fx2lafw),
        ..SimHantekConfig::default()
    });
    let config = HantekConfig {
        sample_rate: 100_000,
        channels: 1,
        ..HantekConfig::default()
    };
    let scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    assert_eq!(scope.info().usb_id, Some((0x1d50, 0x608e)));
    assert_eq!(
        sim.state().log[..2],
        [out_transfer(0xE4, 0, &[1]), out_transfer(0xE2, 0, &[10])]
    );
    let bad = Hantek6022::open(
        &mut sim.bus(),
        HantekConfig {
            sample_rate: 15_000_000,
            ..HantekConfig::default()
        },
    );
    let Err(DriverError::Config { detail, .. }) = bad else {
        panic!("15 MS/s accepted by fx2lafw")
    };
    assert!(detail.contains("48000000"), "{detail}");
}

#[test]
fn simulator_stalls_unknown_and_invalid_requests() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut bus = sim.bus();
    let entry = bus.list().unwrap().remove(0);
    let mut h = bus.open(&entry, 0).unwrap();
    // (request type, request, the one data byte) the simulator must refuse with a stall.
    for (request_type, request, byte) in [
        (0x40, 0xE9, 1),
        (0x40, 0xE0, 3),
        (0x40, 0xE2, 7),
        (0x40, 0xE4, 3),
        (0x41, 0xE0, 1),
    ] {
        assert_eq!(
            h.control_out(
                Setup {
                    request_type,
                    request,
                    value: 0,
                    index: 0
                },
                &[byte],
                T
            ),
            Err(UsbError::Stall),
            "{request_type:#x} {request:#x} [{byte}]"
        );
    }
    assert_eq!(h.control_out(Setup::vendor_out(0xE0), &[10], T), Ok(1));
    let mut buf = [0u8; 16];
    assert_eq!(
        h.bulk_in(0x86, &mut buf, T),
        Err(UsbError::Timeout),
        "not started"
    );
    assert_eq!(h.bulk_in(0x82, &mut buf, T), Err(UsbError::Stall));
    let mut cal = [0u8; 8];
    assert_eq!(h.control_in(Setup::vendor_in(0xA2), &mut cal, T), Ok(8));
    assert_eq!(cal, [0xc0, 0xb4, 0x04, 0x22, 0x60, 0, 0, 0]);
}

#[test]
fn cold_device_gets_hex_firmware_and_reenumerates() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: None,
        ..SimHantekConfig::default()
    });
    let hex = ":0300000002000BF0\n:02000300AA55FC\n:01100000EE01\n:00000001FF\n";
    let config = firmware_config("fw.hex", hex.as_bytes());
    assert_eq!(sim.state().usb_id, (0x04b4, 0x6022));
    let scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    let s = sim.state();
    assert_eq!(
        s.log[..4],
        [
            out_transfer(0xA0, 0xE600, &[1]),
            out_transfer(0xA0, 0x0000, &[0x02, 0x00, 0x0B, 0xAA, 0x55]),
            out_transfer(0xA0, 0x1000, &[0xEE]),
            out_transfer(0xA0, 0xE600, &[0]),
        ]
    );
    assert_eq!(
        s.log[4],
        out_transfer(0xE4, 0, &[2]),
        "configured after re-enumeration"
    );
    assert_eq!(&s.ram[..5], &[0x02, 0x00, 0x0B, 0xAA, 0x55]);
    assert_eq!(s.usb_id, (0x04b5, 0x6022));
    assert_eq!(s.generation, 1);
    assert_eq!(scope.info().usb_id, Some((0x04b5, 0x6022)));
    assert_eq!(scope.info().model, "Hantek 6022BE");
}

#[test]
fn cold_device_gets_binary_fw_in_4096_byte_chunks() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: None,
        uploads_become: FirmwareFlavour::Fx2lafw,
        ..SimHantekConfig::default()
    });
    let image: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    let config = firmware_config("fx2lafw-hantek-6022be.fw", &image);
    let scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    let s = sim.state();
    let writes: Vec<(u16, usize)> = s.log[..5]
        .iter()
        .map(|t| (t.setup.value, t.data.len()))
        .collect();
    assert_eq!(
        writes,
        vec![
            (0xE600, 1),
            (0, 4096),
            (4096, 4096),
            (8192, 808),
            (0xE600, 1)
        ]
    );
    assert_eq!(&s.ram[..9000], &image[..]);
    assert_eq!(scope.info().usb_id, Some((0x1d50, 0x608e)));
}

#[test]
fn cold_device_without_firmware_path_says_what_to_install() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: None,
        ..SimHantekConfig::default()
    });
    let Err(DriverError::Config { detail, .. }) =
        Hantek6022::open(&mut sim.bus(), HantekConfig::default())
    else {
        panic!("opened a cold device without firmware")
    };
    assert!(detail.contains("sigrok-firmware-fx2lafw"), "{detail}");
    assert!(sim.state().log.is_empty(), "nothing sent");
}

#[test]
fn bad_hex_firmware_reports_file_and_line_and_uploads_nothing() {
    let sim = SimHantek::new(SimHantekConfig {
        running_firmware: None,
        ..SimHantekConfig::default()
    });
    let path = temp_file(
        "broken.hex",
        b":0300000002000BF0\n:02000300AA55FD\n:00000001FF\n",
    );
    let config = HantekConfig {
        firmware_path: Some(path),
        ..HantekConfig::default()
    };
    let Err(DriverError::Config { detail, .. }) = Hantek6022::open(&mut sim.bus(), config) else {
        panic!("broken firmware accepted")
    };
    assert!(detail.contains("broken.hex:2:"), "{detail}");
    assert!(sim.state().log.is_empty());
}

/// Free-running raw events: the simulated counter must continue without a gap across
/// events, transfers and buffer reuse, starting right after the discarded glitch bytes.
#[test]
fn free_running_stream_is_gapless() {
    let sim = SimHantek::new(SimHantekConfig {
        signal: SimSignal::Counter,
        ..SimHantekConfig::default()
    });
    let config = HantekConfig {
        format: SampleFormat::Raw,
        samples_per_event: 1000,
        transfer_size: 3 * 512,
        pool_buffers: 3,
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    assert_eq!(out.len(), 2000);
    scope.start().unwrap();
    let mut expected: u64 = 1300; // 2600 discarded bytes = 1300 frames
    for event in 0..300u64 {
        let ReadOutcome::Event(info) = scope.read_event(&mut out, Duration::from_secs(5)).unwrap()
        else {
            panic!("no event {event}")
        };
        assert_eq!(info.device_time, Some(expected as f64 / 1e6));
        for frame in out.chunks(2) {
            let counter = frame[0] as u64 | (frame[1] as u64) << 8;
            assert_eq!(counter, expected % 65536, "gap in event {event}");
            expected += 1;
        }
    }
    scope.stop().unwrap();
    assert_eq!(expected, 1300 + 300 * 1000);
    assert!(sim.state().stream_bytes >= 2 * expected);
}

#[test]
fn trigger_finds_every_injected_pulse_at_its_sample() {
    let sim = SimHantek::new(SimHantekConfig {
        signal: SimSignal::Pulses {
            channel: 1,
            first: 3000,
            period: 5000,
            amplitude_volts: 2.0,
            decay_frames: 200.0,
            noise_volts: 0.02,
        },
        ..SimHantekConfig::default()
    });
    let config = HantekConfig {
        samples_per_event: 1000,
        gains: [Gain::X1, Gain::X1],
        trigger: Some(Trigger {
            channel: 1,
            level_volts: 1.0,
            edge: Edge::Rising,
            pre_trigger: 100,
        }),
        transfer_size: 8192,
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    for k in 0..40u64 {
        let ReadOutcome::Event(info) = scope.read_event(&mut out, Duration::from_secs(5)).unwrap()
        else {
            panic!("pulse {k} not found")
        };
        let frame = (info.device_time.unwrap() * 1e6).round() as u64;
        assert_eq!(frame, 3000 + 5000 * k, "pulse {k}");
        let ch2 = |i: usize| f32::from_le_bytes(out[i * 8 + 4..i * 8 + 8].try_into().unwrap());
        assert!(
            ch2(100) >= 1.0 && ch2(99) < 1.0,
            "crossing at sample 100: {} {}",
            ch2(99),
            ch2(100)
        );
        let max_ch1 = (0..1000)
            .map(|i| f32::from_le_bytes(out[i * 8..i * 8 + 4].try_into().unwrap()).abs())
            .fold(0.0f32, f32::max);
        assert!(max_ch1 < 0.2, "CH1 carries noise only: {max_ch1}");
    }
    scope.stop().unwrap();
}

#[test]
fn unplugging_during_a_run_reports_disconnected() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut scope = Hantek6022::open(&mut sim.bus(), HantekConfig::default()).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    scope.start().unwrap();
    assert!(matches!(
        scope.read_event(&mut out, Duration::from_secs(5)).unwrap(),
        ReadOutcome::Event(_)
    ));
    sim.unplug();
    let mut result = Ok(ReadOutcome::Idle);
    for _ in 0..10_000 {
        result = scope.read_event(&mut out, Duration::from_secs(1));
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(DriverError::Disconnected { .. })),
        "{result:?}"
    );
}

#[test]
fn wrong_event_buffer_size_is_refused() {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut scope = Hantek6022::open(&mut sim.bus(), HantekConfig::default()).unwrap();
    scope.start().unwrap();
    let mut out = vec![0u8; 10];
    assert!(matches!(
        scope.read_event(&mut out, T),
        Err(DriverError::Config { .. })
    ));
}

#[test]
fn bench_counts_what_it_wrote() {
    let figures = bench_simulated(50, 1000, SampleFormat::Volts).unwrap();
    assert_eq!(figures.events, 50);
    assert_eq!(figures.bytes, 50 * 1000 * 2 * 4);
}

#[test]
fn firmware_image_loader_picks_format_by_content() {
    let hex = temp_file("plain.txt", b":0100000042BD\n:00000001FF\n");
    assert_eq!(
        FirmwareImage::load(&hex).unwrap().segments,
        vec![(0, vec![0x42])]
    );
    let bin = temp_file("x.bin", &[1, 2, 3]);
    assert_eq!(
        FirmwareImage::load(&bin).unwrap().segments,
        vec![(0, vec![1, 2, 3])]
    );
}

#[test]
fn eeprom_reads_only_while_stopped_with_the_exact_request() {
    let sim = SimHantek::new(SimHantekConfig::default());
    sim.state().eeprom[8..12].copy_from_slice(&[0x82, 0x7e, 0x80, 0x81]);
    let mut scope = Hantek6022::open(&mut sim.bus(), HantekConfig::default()).unwrap();
    let mut cal = [0u8; 4];
    assert_eq!(scope.read_eeprom(8, &mut cal).unwrap(), 4);
    assert_eq!(cal, [0x82, 0x7e, 0x80, 0x81]);
    let last = sim.state().log.last().cloned().unwrap();
    assert_eq!(
        last,
        ControlTransfer {
            setup: Setup::vendor_in(0xA2).with_value(8),
            data: vec![0x82, 0x7e, 0x80, 0x81]
        }
    );
    scope.start().unwrap();
    assert!(matches!(
        scope.read_eeprom(8, &mut cal),
        Err(DriverError::Config { .. })
    ));
    scope.stop().unwrap();
    assert_eq!(scope.read_eeprom(8, &mut cal).unwrap(), 4);
}

#[test]
fn paced_simulator_never_runs_ahead_of_its_sample_rate() {
    let sim = SimHantek::new(SimHantekConfig {
        paced: true,
        ..SimHantekConfig::default()
    });
    let config = HantekConfig {
        sample_rate: 100_000,
        transfer_size: 512,
        ..HantekConfig::default()
    };
    let mut scope = Hantek6022::open(&mut sim.bus(), config).unwrap();
    let mut out = vec![0u8; scope.layout().event_size()];
    let started = std::time::Instant::now();
    scope.start().unwrap();
    let mut events = 0;
    while events < 3 {
        if let ReadOutcome::Event(_) = scope.read_event(&mut out, Duration::from_secs(5)).unwrap() {
            events += 1;
        }
    }
    scope.stop().unwrap();
    let due_bytes = (started.elapsed().as_secs_f64() * 100_000.0).ceil() as u64 * 2;
    let streamed = sim.state().stream_bytes;
    assert!(
        streamed >= 2 * (1300 + 3000),
        "three events were cut: {streamed} bytes"
    );
    assert!(
        streamed <= due_bytes,
        "{streamed} bytes streamed, only {due_bytes} were due"
    );
}

#[test]
fn warm_device_model_follows_its_product_id() {
    let bl = SimHantek::new(SimHantekConfig {
        model: daq_drivers::hantek6022::Model::Dso6022Bl,
        ..SimHantekConfig::default()
    });
    let scope = Hantek6022::open(&mut bl.bus(), HantekConfig::default()).unwrap();
    assert_eq!(scope.info().model, "Hantek 6022BL");
    assert_eq!(scope.info().usb_id, Some((0x04b5, 0x602a)));
}
