//! The platform devices every machine has, and their wiring onto the buses: COM1, the ACPI PM1a
//! blocks and the i8042 reset port.

use std::sync::{Arc, Mutex};

use devices::bus::{BusError, SharedBusDevice, lock};
use devices::interrupt::InterruptError;

use crate::buses::Buses;
use crate::hypervisor::Hypervisor;
use crate::layout::{
    ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, COM_PORT_SIZE,
    COM1_GSI, COM1_PORT, I8042_COMMAND_PORT, I8042_DATA_PORT,
};
use crate::power::PowerControl;

mod acpi_pm;
mod i8042;
mod serial;

pub use acpi_pm::AcpiPm;
pub use i8042::I8042;
pub use serial::{SerialCapture, SerialDevice, SerialSink};

/// An error from wiring the platform devices.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The serial sink could not be opened.
    #[error("failed to open the serial output {sink:?}")]
    SerialSink {
        /// The sink.
        sink: SerialSink,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A device's interrupt line could not be created.
    #[error("failed to create the interrupt line of {device}")]
    Irq {
        /// The device.
        device: &'static str,
        /// The interrupt error.
        #[source]
        source: InterruptError,
    },
    /// A device's ports collide with another device.
    #[error("failed to place {device} on the port bus")]
    Bus {
        /// The device.
        device: &'static str,
        /// The bus error.
        #[source]
        source: BusError,
    },
}

/// The platform devices, owned here and reachable through the buses.
#[derive(Debug)]
pub struct Platform {
    serial: Arc<Mutex<SerialDevice>>,
    // Held: the buses keep only weak references to their devices.
    _acpi_pm: Arc<Mutex<AcpiPm>>,
    _i8042: Arc<Mutex<I8042>>,
}

impl Platform {
    /// Creates the platform devices and puts them on `buses`, with interrupts from `hv`.
    pub fn attach(
        buses: &Buses,
        hv: &dyn Hypervisor,
        sink: &SerialSink,
        power: &Arc<PowerControl>,
    ) -> Result<Self, PlatformError> {
        let out = sink.open().map_err(|source| PlatformError::SerialSink {
            sink: sink.clone(),
            source,
        })?;
        let irq = hv
            .create_edge_irq(COM1_GSI)
            .map_err(|source| PlatformError::Irq {
                device: "COM1",
                source,
            })?;
        let serial = Arc::new(Mutex::new(SerialDevice::new(irq, out)));
        let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(power.clone())));
        let i8042 = Arc::new(Mutex::new(I8042::new(power.clone())));

        let place = |device: &'static str, dev: SharedBusDevice, port: u16, len: u8| {
            buses
                .pio
                .insert(&dev, u64::from(port), u64::from(len))
                .map_err(|source| PlatformError::Bus { device, source })
        };
        place("COM1", serial.clone(), COM1_PORT, COM_PORT_SIZE as u8)?;
        place(
            "the ACPI PM1a event block",
            acpi_pm.clone(),
            ACPI_PM1A_EVT_PORT,
            ACPI_PM1_EVT_LEN,
        )?;
        place(
            "the ACPI PM1a control block",
            acpi_pm.clone(),
            ACPI_PM1A_CNT_PORT,
            ACPI_PM1_CNT_LEN,
        )?;
        place("the i8042 data port", i8042.clone(), I8042_DATA_PORT, 1)?;
        place(
            "the i8042 command port",
            i8042.clone(),
            I8042_COMMAND_PORT,
            1,
        )?;
        Ok(Self {
            serial,
            _acpi_pm: acpi_pm,
            _i8042: i8042,
        })
    }

    /// Queues console input for the guest on COM1. Returns how many bytes fitted.
    pub fn serial_input(&self, bytes: &[u8]) -> usize {
        lock(&self.serial).enqueue_input(bytes)
    }
}
