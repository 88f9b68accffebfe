//! Interrupt delivery as devices see it.
//!
//! Devices never talk to the hypervisor. They get interrupt groups from an [`InterruptManager`]
//! the VMM provides (KVM irqfds and GSI routes in production, a recorder in tests). A group
//! exposes per-vector eventfds ([`InterruptSourceGroup::notifier`]) so that a passthrough device
//! can hand them to VFIO and its interrupts reach the vCPU without a userspace hop.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// An MSI message as the guest programmed it (in an MSI capability or an MSI-X table entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    /// The message address (upper and lower halves combined).
    pub address: u64,
    /// The message data.
    pub data: u32,
}

/// An error from routing or raising an interrupt.
#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    /// The vector index is outside the group.
    #[error("interrupt vector {index} is outside a group of {len}")]
    InvalidVector {
        /// The vector asked for.
        index: u32,
        /// The number of vectors in the group.
        len: u32,
    },
    /// The hypervisor or an eventfd refused the operation.
    #[error("failed to {op} interrupt vector {index}")]
    Host {
        /// What was being done ("route", "raise", "mask", ...).
        op: &'static str,
        /// The vector concerned.
        index: u32,
        /// The underlying host error.
        #[source]
        source: io::Error,
    },
    /// No more interrupt resources (GSIs, vectors) are available.
    #[error("no interrupt resources left for {count} more vectors")]
    Exhausted {
        /// The number of vectors asked for.
        count: u32,
    },
}

/// The vectors of one MSI or MSI-X capability of one device.
pub trait InterruptSourceGroup: Send + Sync + Debug {
    /// The number of vectors in the group.
    fn len(&self) -> u32;

    /// True if the group has no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Raises vector `index` from the VMM (an emulated device firing it). A masked vector stays
    /// pending until [`update`](Self::update) unmasks it.
    fn trigger(&self, index: u32) -> Result<(), InterruptError>;

    /// The eventfd that raises vector `index` when written, if the group has one per vector.
    fn notifier(&self, index: u32) -> Option<&EventFd>;

    /// Routes vector `index` to `msg`, masked or not. Writes to the vector's eventfd while it is
    /// masked are kept and delivered when it is unmasked.
    fn update(&self, index: u32, msg: MsiMessage, masked: bool) -> Result<(), InterruptError>;

    /// True if vector `index` was raised while masked and waits for its unmask: what the guest
    /// reads as its bit in the MSI-X PBA or the MSI pending register. Raises that reach the
    /// group through the vector's eventfd count (a passthrough device's, which the capability
    /// models never see); looking does not consume them. False for an index out of range.
    fn pending(&self, index: u32) -> bool;
}

/// A level-triggered legacy interrupt line (PCI INTx) wired to one GSI.
pub trait LegacyIrq: Send + Sync + Debug {
    /// The GSI (I/O APIC input) this line drives.
    fn gsi(&self) -> u32;

    /// Raises the line from the VMM. The line drops again when the guest acknowledges it (end of
    /// interrupt), which signals [`resample_notifier`](Self::resample_notifier).
    fn trigger(&self) -> Result<(), InterruptError>;

    /// The eventfd that raises the line when written.
    fn notifier(&self) -> &EventFd;

    /// The eventfd signalled when the guest acknowledges the line, so the source can re-arm
    /// (VFIO's unmask eventfd for INTx).
    fn resample_notifier(&self) -> &EventFd;
}

/// Creates interrupt groups for devices. Implemented by the VMM.
pub trait InterruptManager: Send + Sync + Debug {
    /// Creates a group of `count` MSI or MSI-X vectors, all masked and unrouted.
    fn create_msi_group(&self, count: u32)
    -> Result<Arc<dyn InterruptSourceGroup>, InterruptError>;

    /// Creates the legacy line wired to `gsi`.
    fn create_legacy_irq(&self, gsi: u32) -> Result<Arc<dyn LegacyIrq>, InterruptError>;
}
