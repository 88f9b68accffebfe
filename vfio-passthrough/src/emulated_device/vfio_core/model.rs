//! [`DeviceModel`]: what an emulated PCI function gives the vfio-pci core.
//!
//! A model is the hardware: its physical configuration space (a
//! [`PciConfiguration`] with its capabilities), its BARs (trapped registers, and memory in a
//! [`SharedMemory`] that users may map), its interrupt outputs (an [`IrqRouter`](super::IrqRouter) it receives
//! when built), its DMA (a [`DmaPort`] it receives when the host attaches it to an IOMMU),
//! function-level reset and, optionally, migration hooks. The core
//! ([`EmulatedVfioDevice`](super::EmulatedVfioDevice)) turns that into what vfio-pci shows
//! userspace.

use std::fmt::Debug;
use std::sync::Arc;

use devices::pci::PciConfiguration;
use migration::engine::MigrationHooks;

use super::shared_memory::SharedMemory;
use crate::host::dma::DmaPort;

/// A BAR's backing that users may map: `[offset, offset + len)` of the BAR is bytes
/// `[file_offset, file_offset + len)` of `memory`.
#[derive(Debug, Clone)]
pub struct MappedRange {
    /// Offset in the BAR.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Offset in the shared memory.
    pub file_offset: u64,
}

/// How users reach one BAR.
#[derive(Debug, Clone)]
pub struct BarAccess {
    /// BAR index (0..=5).
    pub index: usize,
    /// The mmap-able parts (page-aligned), reported as sparse-mmap areas; everything else is
    /// trapped (`bar_read`/`bar_write`).
    pub mmap: Vec<MappedRange>,
    /// The memory behind the mmap-able parts.
    pub memory: Option<Arc<SharedMemory>>,
}

/// Which VFIO migration interfaces a device offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationSupport {
    /// `VFIO_MIGRATION_*` flags of the v2 protocol (0: no v2 migration features).
    pub v2_flags: u64,
    /// Whether the device has the deprecated v1 migration region.
    pub v1_region: bool,
    /// The flags of the engine behind both (STOP_COPY at least; the v1 region uses PRE_COPY
    /// when the engine has it).
    pub engine_flags: u64,
}

/// An emulated PCI function.
pub trait DeviceModel: Send + Debug {
    /// The device kind (`"emulated:dma-engine"`): names it in logs and in migration streams.
    fn kind(&self) -> &str;

    /// The physical configuration space.
    fn config(&self) -> &PciConfiguration;

    /// The physical configuration space, for writes by the user or the host.
    fn config_mut(&mut self) -> &mut PciConfiguration;

    /// How users reach the BARs declared in the configuration space (BARs without an entry
    /// are fully trapped).
    fn bar_access(&self) -> Vec<BarAccess>;

    /// A trapped read of `data.len()` (1, 2, 4 or 8, naturally aligned) bytes at `offset` of
    /// BAR `index`.
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]);

    /// A trapped write of `data` (1, 2, 4 or 8 naturally aligned bytes) at `offset` of BAR
    /// `index`.
    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]);

    /// Bits of the physical configuration space were written (by the user through the
    /// configuration region, or by the host: MSI/MSI-X enables, PASID enable).
    fn config_changed(&mut self) {}

    /// The DMA path: `port` translates the device's requests (through the host IOMMU); every
    /// access of a model goes through it.
    fn set_dma_port(&mut self, port: Arc<dyn DmaPort>);

    /// Function-level reset: registers and internal state back to power-on values (the
    /// configuration space is saved and restored around it by the host, as the PCI core does).
    fn reset(&mut self);

    /// The migration interfaces the device offers.
    fn migration_support(&self) -> Option<MigrationSupport> {
        None
    }

    /// The migration hooks (for devices with [`migration_support`](Self::migration_support)).
    fn migration_hooks(&mut self) -> Option<&mut dyn MigrationHooks> {
        None
    }

    /// Whether the device can log the pages it writes by DMA (`DMA_LOGGING_*`). The core does
    /// the logging on the device's DMA port.
    fn dma_logging(&self) -> bool {
        false
    }
}
