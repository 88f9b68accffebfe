//! What a PCI function implements to sit on a [`PciBus`](super::PciBus).
//!
//! Config accesses arrive as byte ranges (offset and width), not as dword read-modify-writes, so
//! a passthrough device can hand exactly the guest's access to the host device: a 1-byte write to
//! the command register must not also write back the status register's write-1-to-clear bits.

use std::sync::{Arc, Mutex};

use super::bar::{BarChange, PciBar, PciBarError};
use crate::bus::{BusDevice, lock};

/// A PCI function as the bus and the VMM see it.
///
/// The buses only ever pass naturally aligned accesses of 1, 2 or 4 bytes inside the 4 KiB config
/// space to [`read_config`](Self::read_config) and [`write_config`](Self::write_config).
pub trait PciDevice: Send {
    /// Reads `data.len()` bytes of config space at `offset`.
    fn read_config(&mut self, offset: u16, data: &mut [u8]);

    /// Writes `data` to config space at `offset`. Returns the BAR decoding changes the write
    /// caused, in order, for the owner of the MMIO/PIO buses to apply (see
    /// [`BarChange`]).
    fn write_config(&mut self, offset: u16, data: &[u8]) -> Vec<BarChange>;

    /// The BARs the function implements (index, size, kind, prefetchable), for the VMM to
    /// allocate guest addresses.
    fn bars(&self) -> Vec<PciBar>;

    /// Places BAR `index` at `address` (the VMM's initial allocation, before the guest enables
    /// decoding). The BAR starts decoding there once the guest enables its space, which is
    /// reported as [`BarChange::Mapped`] from [`write_config`](Self::write_config).
    fn set_bar_address(&mut self, index: usize, address: u64) -> Result<(), PciBarError>;

    /// Reads `data.len()` bytes at `offset` into BAR `index`.
    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]);

    /// Writes `data` at `offset` into BAR `index`.
    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]);
}

/// A PCI function shared between its owner, the PCI bus and its BARs' bus entries.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// The [`BusDevice`] that serves one BAR of a function on the MMIO or PIO bus: it forwards
/// accesses to [`PciDevice::read_bar`] / [`PciDevice::write_bar`] with the offset into the BAR, so
/// it keeps working wherever the guest moves the BAR.
pub struct PciBarBusDevice {
    device: SharedPciDevice,
    index: usize,
}

impl PciBarBusDevice {
    /// The bus entry for BAR `index` of `device`.
    pub fn new(device: SharedPciDevice, index: usize) -> Self {
        Self { device, index }
    }

    /// The BAR index served.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl std::fmt::Debug for PciBarBusDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciBarBusDevice")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl BusDevice for PciBarBusDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        lock(&self.device).read_bar(self.index, offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        lock(&self.device).write_bar(self.index, offset, data);
    }
}
