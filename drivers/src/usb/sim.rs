//! A simulated device on a simulated USB bus, shared by the families' simulators (Hantek
//! 6022, DRS4): the device's state behind one lock, the bus that lists and opens it, and
//! the handles that die when it is unplugged or re-enumerates. What the device answers is
//! the family's own: its `UsbTransport` impl on [`SimUsbHandle`] of its state.
//!
//! Must never: answer a transfer for a handle opened before the device's current
//! generation, or list the device while it is unplugged.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{UsbBus, UsbDeviceEntry, UsbError, UsbTransport};

/// What the simulated bus needs to know of a simulated device's state.
pub trait SimUsbState: Send + 'static {
    /// The interface a driver claims.
    const INTERFACE: u8;

    /// The device as the bus lists it now; `None` while it is unplugged.
    fn entry(&self) -> Option<UsbDeviceEntry>;

    /// Goes up each time the device goes away or re-enumerates: a handle opened at an
    /// earlier generation is dead.
    fn generation(&self) -> u64;

    /// The physical place of `entry` (see [`UsbBus::physical_port`]); `None` by default.
    fn physical_port(&self, entry: &UsbDeviceEntry) -> Option<String> {
        let _ = entry;
        None
    }
}

/// A simulated device. Cloning shares the device.
#[derive(Debug)]
pub struct SimUsb<S> {
    state: Arc<Mutex<S>>,
}

impl<S> Clone for SimUsb<S> {
    fn clone(&self) -> Self {
        SimUsb {
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: SimUsbState> SimUsb<S> {
    /// A device powered up in `state`.
    pub fn with_state(state: S) -> Self {
        SimUsb {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The device state, for tests to inspect and change.
    pub fn state(&self) -> MutexGuard<'_, S> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bus this device is plugged into.
    pub fn bus(&self) -> SimUsbBus<S> {
        SimUsbBus {
            device: self.clone(),
        }
    }
}

/// A simulated USB bus with one simulated device on it.
#[derive(Debug)]
pub struct SimUsbBus<S> {
    device: SimUsb<S>,
}

impl<S> Clone for SimUsbBus<S> {
    fn clone(&self) -> Self {
        SimUsbBus {
            device: self.device.clone(),
        }
    }
}

impl<S: SimUsbState> UsbBus for SimUsbBus<S>
where
    SimUsbHandle<S>: UsbTransport,
{
    type Transport = SimUsbHandle<S>;

    fn list(&mut self) -> Result<Vec<UsbDeviceEntry>, UsbError> {
        Ok(self.device.state().entry().into_iter().collect())
    }

    fn physical_port(&mut self, entry: &UsbDeviceEntry) -> Option<String> {
        self.device.state().physical_port(entry)
    }

    fn open(&mut self, entry: &UsbDeviceEntry, interface: u8) -> Result<SimUsbHandle<S>, UsbError> {
        let s = self.device.state();
        if s.entry().as_ref() != Some(entry) {
            return Err(UsbError::NoDevice);
        }
        if interface != S::INTERFACE {
            return Err(UsbError::Other(format!("no interface {interface}")));
        }
        Ok(SimUsbHandle {
            device: self.device.clone(),
            generation: s.generation(),
        })
    }
}

/// An open handle on a simulated device; dies when the device is unplugged or
/// re-enumerates.
#[derive(Debug)]
pub struct SimUsbHandle<S> {
    device: SimUsb<S>,
    generation: u64,
}

impl<S: SimUsbState> SimUsbHandle<S> {
    /// The device state while this handle is alive, else [`UsbError::NoDevice`].
    pub fn live(&self) -> Result<MutexGuard<'_, S>, UsbError> {
        let s = self.device.state();
        if s.entry().is_none() || s.generation() != self.generation {
            return Err(UsbError::NoDevice);
        }
        Ok(s)
    }
}
