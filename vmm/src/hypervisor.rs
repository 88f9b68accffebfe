//! The hypervisor side of a machine, as the device wiring sees it.
//!
//! The same wiring code builds the KVM machine and the device harness; it reaches the hypervisor
//! only through this trait. [`KvmHypervisor`](crate::kvm::KvmHypervisor) injects interrupts and
//! maps memory in KVM; [`RecordingHypervisor`](crate::harness::RecordingHypervisor) records
//! interrupts and keeps the mappings for the harness's own guest accesses.

use std::fmt::Debug;
use std::sync::Arc;

use devices::interrupt::{InterruptError, InterruptManager};
use vfio_passthrough::pci::IntxDelivery;

use crate::interrupts::EdgeIrq;
use crate::memory_slots::{MemorySlot, MemorySlotError};

/// What device wiring needs from the hypervisor.
pub trait Hypervisor: Send + Sync + Debug {
    /// The manager devices get MSI groups and INTx lines from.
    fn interrupt_manager(&self) -> Arc<dyn InterruptManager>;

    /// How a passthrough device's INTx reaches the guest here: straight through irqfds when
    /// the lines' resample eventfds are signalled by the hypervisor at the guest's EOI, else
    /// through the device's event-loop subscriber.
    fn intx_delivery(&self) -> IntxDelivery;

    /// An edge-triggered line on I/O APIC input `gsi`, for a platform (ISA) device.
    fn create_edge_irq(&self, gsi: u32) -> Result<Arc<dyn EdgeIrq>, InterruptError>;

    /// Maps `size` bytes of VMM memory at `host_addr` into guest physical memory at
    /// `guest_addr`, so guest accesses there reach that memory without exiting (a passthrough
    /// device's mmapped BAR area). All three values must be page aligned, and the range must not
    /// overlap RAM or another mapping.
    ///
    /// # Safety
    ///
    /// `host_addr..host_addr + size` must be a mapping of this process that stays valid (not
    /// unmapped or remapped) until [`unmap_memory`](Self::unmap_memory) removes the slot or the
    /// hypervisor is dropped; the guest will read and write it at any time.
    unsafe fn map_memory(
        &self,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<MemorySlot, MemorySlotError>;

    /// Removes the mapping with slot id `id`; guest accesses to its range exit to the VMM again.
    fn unmap_memory(&self, id: u32) -> Result<MemorySlot, MemorySlotError>;
}
