//! USB at the transfer level, shared by the drivers that speak an open USB protocol
//! (Hantek 6022, PSI DRS4).
//!
//! Guarantees: a driver talks to a device only through [`UsbTransport`] (control and bulk
//! transfers) and finds devices only through [`UsbBus`], so the same driver code runs
//! against real hardware ([`RusbBus`]) and against a simulated device that answers the same
//! transfers. Every libusb failure becomes a typed [`UsbError`]; nothing here panics when
//! the machine has no USB bus at all. A driver that finds its device again after an unplug
//! paces its look-ups with [`RetryPacing`] and recognises the device by
//! [`UsbBus::physical_port`] where the bus reports one. The families' simulators share
//! their simulated device, bus and handles ([`sim`]).
//!
//! Must never: call `rusb::devices()` or any other rusb global-context function (it panics
//! without a USB bus), allocate inside a transfer, or print.

use std::time::Duration;

use crate::driver::{DriverError, ReadOutcome, Source};
use crate::serial::Backoff;

pub mod sim;

/// What to tell a user whose device refused access.
pub const UDEV_HINT: &str = "no permission on the USB device node: install the udev rules with \
`daq-engine udev install` (file udev/70-daq-engine.rules), then replug the device";

/// Why a USB transfer or a device look-up failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsbError {
    /// The device is gone: unplugged, or it re-enumerated after a firmware upload.
    #[error("device is gone (unplugged or re-enumerated)")]
    NoDevice,
    /// The operating system refused access to the device node.
    #[error("access denied")]
    Access,
    /// Nothing arrived (or could be sent) within the timeout.
    #[error("timed out")]
    Timeout,
    /// The device refused the request (endpoint stall), as a device does for requests it
    /// does not know.
    #[error("request refused by the device (pipe stall)")]
    Stall,
    /// libusb could not start: no USB bus on this machine.
    #[error("no USB bus available: {0}")]
    NoBus(String),
    /// Anything else libusb reported.
    #[error("{0}")]
    Other(String),
}

impl UsbError {
    /// Maps a libusb error onto the cases a driver acts on.
    pub fn from_rusb(error: rusb::Error) -> Self {
        match error {
            rusb::Error::NoDevice => UsbError::NoDevice,
            rusb::Error::Access => UsbError::Access,
            rusb::Error::Timeout => UsbError::Timeout,
            rusb::Error::Pipe => UsbError::Stall,
            other => UsbError::Other(other.to_string()),
        }
    }

    /// The driver-level error for this failure on `device` while `doing` something.
    /// `NoDevice` becomes [`DriverError::Disconnected`], `Access` becomes
    /// [`DriverError::Open`] with the udev hint. Callers that wait for data treat
    /// [`UsbError::Timeout`] as idle before they get here.
    pub fn into_driver_error(self, device: &str, doing: &str) -> DriverError {
        match self {
            UsbError::NoDevice => DriverError::Disconnected {
                device: device.to_string(),
                detail: format!(
                    "device vanished while {doing} (unplugged, or its cable or power failed)"
                ),
            },
            UsbError::Access => DriverError::Open {
                device: device.to_string(),
                detail: format!("{doing}: {UDEV_HINT}"),
            },
            UsbError::NoBus(why) => DriverError::Open {
                device: device.to_string(),
                detail: format!("{doing}: no USB bus on this machine ({why}); use the simulator"),
            },
            UsbError::Timeout => DriverError::Io {
                device: device.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timed out while {doing}"),
                ),
            },
            UsbError::Stall => DriverError::Protocol {
                device: device.to_string(),
                offset: 0,
                detail: format!(
                    "device refused the request while {doing} (stall): the request or its \
                     value is not one this device or its firmware knows"
                ),
            },
            UsbError::Other(what) => DriverError::Io {
                device: device.to_string(),
                source: std::io::Error::other(format!("{doing}: {what}")),
            },
        }
    }
}

/// bmRequestType of a vendor request host → device (type vendor, recipient device).
pub const VENDOR_OUT: u8 = 0x40;
/// bmRequestType of a vendor request device → host.
pub const VENDOR_IN: u8 = 0xC0;

/// The setup stage of a control transfer (USB 2.0 §9.3) but its wLength, which is the
/// length of the data or buffer that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// bmRequestType: direction, type and recipient ([`VENDOR_OUT`], [`VENDOR_IN`]).
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
}

impl Setup {
    /// Vendor request `request` host → device, wValue and wIndex 0.
    pub const fn vendor_out(request: u8) -> Self {
        Self {
            request_type: VENDOR_OUT,
            request,
            value: 0,
            index: 0,
        }
    }

    /// Vendor request `request` device → host, wValue and wIndex 0.
    pub const fn vendor_in(request: u8) -> Self {
        Self {
            request_type: VENDOR_IN,
            request,
            ..Self::vendor_out(request)
        }
    }

    /// The same request with wValue `value` (an address, an offset).
    pub const fn with_value(self, value: u16) -> Self {
        Self { value, ..self }
    }
}

/// One opened USB device, seen as the four kinds of transfer a driver needs.
///
/// Each call returns the number of bytes moved.
pub trait UsbTransport: Send {
    /// Control transfer host → device with `data` as payload.
    fn control_out(
        &mut self,
        setup: Setup,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, UsbError>;

    /// Control transfer device → host into `buf`.
    fn control_in(
        &mut self,
        setup: Setup,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, UsbError>;

    /// Bulk transfer to OUT endpoint `endpoint` (e.g. 0x04).
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration)
        -> Result<usize, UsbError>;

    /// Bulk transfer from IN endpoint `endpoint` (e.g. 0x86) into `buf`; returns bytes read.
    fn bulk_in(
        &mut self,
        endpoint: u8,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, UsbError>;
}

/// A device seen on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDeviceEntry {
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// Bus number.
    pub bus: u8,
    /// Device address on the bus (changes when the device re-enumerates).
    pub address: u8,
}

impl UsbDeviceEntry {
    /// Where the device is, as `usb:BUS:ADDR`.
    pub fn port(&self) -> String {
        format!("usb:{:03}:{:03}", self.bus, self.address)
    }
}

/// Finds and opens devices: libusb for hardware, a simulated bus for tests.
pub trait UsbBus {
    /// The transport an opened device gives.
    type Transport: UsbTransport + 'static;

    /// All devices on the bus now.
    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError>;

    /// Opens `entry` and claims `interface`.
    fn open(&mut self, entry: &UsbDeviceEntry, interface: u8) -> Result<Self::Transport, UsbError>;

    /// The physical place of `entry` (bus and hub port chain, `1-2.4`), which stays the
    /// same when the device is replugged into the same socket or re-enumerates, unlike its
    /// address. `None` where the bus cannot say.
    fn physical_port(&mut self, entry: &UsbDeviceEntry) -> Option<String> {
        let _ = entry;
        None
    }
}

/// Paces the attempts to find a device again after it vanished: the first attempt at once,
/// then waits growing from `backoff.initial` by doubling up to `backoff.max`, so a driver's
/// `reconnect` never spins on the bus. Sleeps only in [`RetryPacing::wait_turn`].
#[derive(Clone, Debug)]
pub struct RetryPacing {
    backoff: Backoff,
    next_delay: Duration,
    next_attempt: Option<std::time::Instant>,
    failed: u64,
}

impl RetryPacing {
    /// Pacing with `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        RetryPacing {
            backoff,
            next_delay: Duration::ZERO,
            next_attempt: None,
            failed: 0,
        }
    }

    /// Sleeps until the next attempt is due (at once for the first one).
    pub fn wait_turn(&self) {
        if let Some(at) = self.next_attempt {
            let now = std::time::Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
    }

    /// The attempt found nothing: the next one waits longer.
    pub fn failed(&mut self) {
        self.failed += 1;
        self.next_delay = if self.next_delay.is_zero() {
            self.backoff.initial
        } else {
            (self.next_delay * 2).min(self.backoff.max)
        };
        self.next_attempt = Some(std::time::Instant::now() + self.next_delay);
    }

    /// The device is back: the next loss starts again with an immediate attempt.
    pub fn succeeded(&mut self) {
        self.next_delay = Duration::ZERO;
        self.next_attempt = None;
    }

    /// Attempts that found nothing, over the pacing's life.
    pub fn failed_attempts(&self) -> u64 {
        self.failed
    }

    /// How long the next attempt will wait from now.
    pub fn next_wait(&self) -> Duration {
        self.next_attempt
            .map(|at| at.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::ZERO)
    }
}

impl Default for RetryPacing {
    fn default() -> Self {
        RetryPacing::new(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        })
    }
}

/// The real bus through libusb, with its own context (never the global one).
pub struct RusbBus {
    context: rusb::Context,
}

impl RusbBus {
    /// Starts libusb. Fails with [`UsbError::NoBus`] where there is no USB bus.
    pub fn new() -> Result<Self, UsbError> {
        use rusb::UsbContext as _;
        let context = rusb::Context::new().map_err(|e| UsbError::NoBus(e.to_string()))?;
        // Touch the device list once so a broken bus shows here, not in the first list().
        context
            .devices()
            .map_err(|e| UsbError::NoBus(e.to_string()))?;
        Ok(RusbBus { context })
    }
}

impl UsbBus for RusbBus {
    type Transport = RusbTransport;

    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError> {
        use rusb::UsbContext as _;
        let devices = self.context.devices().map_err(UsbError::from_rusb)?;
        let mut found = Vec::new();
        for device in devices.iter() {
            let Ok(descriptor) = device.device_descriptor() else {
                continue;
            };
            found.push(UsbDeviceEntry {
                vendor_id: descriptor.vendor_id(),
                product_id: descriptor.product_id(),
                bus: device.bus_number(),
                address: device.address(),
            });
        }
        Ok(found)
    }

    fn open(&mut self, entry: &UsbDeviceEntry, interface: u8) -> Result<RusbTransport, UsbError> {
        use rusb::UsbContext as _;
        let devices = self.context.devices().map_err(UsbError::from_rusb)?;
        let device = devices
            .iter()
            .find(|d| d.bus_number() == entry.bus && d.address() == entry.address)
            .ok_or(UsbError::NoDevice)?;
        let handle = device.open().map_err(UsbError::from_rusb)?;
        // Not supported on every platform; a kernel driver left attached shows up as Busy below.
        let _ = handle.set_auto_detach_kernel_driver(true);
        match handle.active_configuration() {
            Ok(1) => {}
            _ => handle
                .set_active_configuration(1)
                .map_err(UsbError::from_rusb)?,
        }
        handle
            .claim_interface(interface)
            .map_err(UsbError::from_rusb)?;
        Ok(RusbTransport { handle, interface })
    }

    fn physical_port(&mut self, entry: &UsbDeviceEntry) -> Option<String> {
        use rusb::UsbContext as _;
        let devices = self.context.devices().ok()?;
        let device = devices
            .iter()
            .find(|d| d.bus_number() == entry.bus && d.address() == entry.address)?;
        let ports = device.port_numbers().ok()?;
        let chain: Vec<String> = ports.iter().map(u8::to_string).collect();
        Some(format!("{}-{}", entry.bus, chain.join(".")))
    }
}

/// An opened libusb device with its interface claimed; released on drop.
pub struct RusbTransport {
    handle: rusb::DeviceHandle<rusb::Context>,
    interface: u8,
}

impl Drop for RusbTransport {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.interface);
    }
}

impl UsbTransport for RusbTransport {
    fn control_out(
        &mut self,
        setup: Setup,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, UsbError> {
        self.handle
            .write_control(
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                data,
                timeout,
            )
            .map_err(UsbError::from_rusb)
    }

    fn control_in(
        &mut self,
        setup: Setup,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, UsbError> {
        self.handle
            .read_control(
                setup.request_type,
                setup.request,
                setup.value,
                setup.index,
                buf,
                timeout,
            )
            .map_err(UsbError::from_rusb)
    }

    fn bulk_out(
        &mut self,
        endpoint: u8,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, UsbError> {
        self.handle
            .write_bulk(endpoint, data, timeout)
            .map_err(UsbError::from_rusb)
    }

    fn bulk_in(
        &mut self,
        endpoint: u8,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, UsbError> {
        self.handle
            .read_bulk(endpoint, buf, timeout)
            .map_err(UsbError::from_rusb)
    }
}

/// Lists the devices on the real bus whose (vendor, product) id is in `ids`.
/// Returns an empty list when none is plugged in and [`UsbError::NoBus`] when the machine
/// has no USB bus; never panics.
pub fn scan(ids: &[(u16, u16)]) -> Result<Vec<UsbDeviceEntry>, UsbError> {
    let mut bus = RusbBus::new()?;
    Ok(bus
        .list()?
        .into_iter()
        .filter(|e| ids.contains(&(e.vendor_id, e.product_id)))
        .collect())
}

/// Throughput of a simulated device through its driver into a byte buffer
/// (what `daq-engine bench drivers` prints).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchFigures {
    /// Events written.
    pub events: u64,
    /// Event bytes written into the buffer.
    pub bytes: u64,
    /// Wall time of the measurement, seconds.
    pub seconds: f64,
}

impl BenchFigures {
    /// Measures `source`, a simulated device opened through its driver: starts it, reads
    /// `events` events into one buffer (fewer if it ends), stops it. A read that waits 1 s
    /// for nothing fails as a configuration error of `device` saying `idle`.
    pub fn measure(
        source: &mut dyn Source,
        events: u64,
        device: &str,
        idle: &str,
    ) -> Result<BenchFigures, DriverError> {
        let mut out = vec![0u8; source.layout().event_size()];
        source.start()?;
        let started = std::time::Instant::now();
        let mut written = 0u64;
        while written < events {
            match source.read_event(&mut out, Duration::from_secs(1))? {
                ReadOutcome::Event(_) => written += 1,
                ReadOutcome::Idle => {
                    return Err(DriverError::Config {
                        device: device.into(),
                        detail: idle.into(),
                    })
                }
                ReadOutcome::End => break,
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        source.stop()?;
        Ok(BenchFigures {
            events: written,
            bytes: written * out.len() as u64,
            seconds,
        })
    }

    /// Events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    /// Megabytes (10⁶ bytes) of event data per second.
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rusb_errors_map_to_the_cases_drivers_act_on() {
        assert_eq!(
            UsbError::from_rusb(rusb::Error::NoDevice),
            UsbError::NoDevice
        );
        assert_eq!(UsbError::from_rusb(rusb::Error::Access), UsbError::Access);
        assert_eq!(UsbError::from_rusb(rusb::Error::Timeout), UsbError::Timeout);
        assert_eq!(UsbError::from_rusb(rusb::Error::Pipe), UsbError::Stall);
        let open = UsbError::Access.into_driver_error("hantek", "opening");
        assert!(
            open.to_string().contains("daq-engine udev install"),
            "{open}"
        );
        assert!(open.to_string().contains("70-daq-engine.rules"), "{open}");
        assert!(matches!(
            UsbError::NoDevice.into_driver_error("hantek", "reading"),
            DriverError::Disconnected { .. }
        ));
    }

    #[test]
    fn scanning_without_a_usb_bus_does_not_panic() {
        // On a machine with a bus this lists devices; without one it is a clear error.
        match scan(&[(0x04b4, 0x6022)]) {
            Ok(list) => assert!(list.iter().all(|e| e.vendor_id == 0x04b4)),
            Err(e) => assert!(matches!(e, UsbError::NoBus(_) | UsbError::Other(_)), "{e}"),
        }
    }
}
