//! The host bridge at 00:00.0: the function a guest finds first when it scans bus 0.

use super::bar::{BarChange, PciBar, PciBarError};
use super::configuration::{PciClassCode, PciConfiguration, PciIdentity};
use super::device::PciDevice;

/// Intel's vendor ID.
pub const PCI_VENDOR_ID_INTEL: u16 = 0x8086;
/// The device ID of the Q35 (82G33/G31/P35/P31) DRAM controller QEMU's q35 machine shows.
pub const PCI_DEVICE_ID_INTEL_Q35_MCH: u16 = 0x29c0;
/// Base class of bridges.
pub const PCI_CLASS_BRIDGE: u8 = 0x06;
/// Subclass of host bridges.
pub const PCI_SUBCLASS_HOST_BRIDGE: u8 = 0x00;

/// A host bridge with no BARs and no capabilities, identified as Intel Q35. Guests use it to
/// confirm that configuration mechanism #1 works (Linux's `pci_sanity_check` looks for a host
/// bridge class or an Intel vendor on bus 0).
#[derive(Debug)]
pub struct PciHostBridge {
    config: PciConfiguration,
}

impl PciHostBridge {
    /// Creates the host bridge.
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(&PciIdentity {
                vendor_id: PCI_VENDOR_ID_INTEL,
                device_id: PCI_DEVICE_ID_INTEL_Q35_MCH,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
                revision_id: 0,
                class_code: PciClassCode {
                    class: PCI_CLASS_BRIDGE,
                    subclass: PCI_SUBCLASS_HOST_BRIDGE,
                    prog_if: 0,
                },
            }),
        }
    }
}

impl Default for PciHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for PciHostBridge {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) -> Vec<BarChange> {
        self.config.write(offset, data).bar_changes
    }

    fn bars(&self) -> Vec<PciBar> {
        Vec::new()
    }

    fn set_bar_address(&mut self, index: usize, _address: u64) -> Result<(), PciBarError> {
        Err(PciBarError::NotPresent { index })
    }

    fn read_bar(&mut self, _index: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write_bar(&mut self, _index: usize, _offset: u64, _data: &[u8]) {}
}
