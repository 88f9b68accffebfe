//! [`VfioPciError`]: what can go wrong building or driving a passthrough PCI device.
//!
//! Every message names the device (the name the VMM gave it) and what failed on it: the region,
//! BAR, capability or IRQ index, with offsets. Host errors keep the kernel's errno as their
//! source.

use std::io;

use devices::interrupt::InterruptError;
use devices::pci::{MsiError, MsixError, PciBarError};

use crate::errno::Errno;

/// Why a trapped BAR access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BarAccessFault {
    /// The function has no BAR at this index.
    #[error("the function has no such BAR")]
    NoSuchBar,
    /// The access does not fit inside the BAR.
    #[error("the access does not fit in the BAR of {size:#x} bytes")]
    OutOfRange {
        /// The BAR size.
        size: u64,
    },
    /// Only 1, 2, 4 and 8-byte accesses exist on PCI.
    #[error("only 1, 2, 4 and 8-byte accesses are forwarded")]
    BadWidth,
    /// The access covers the MSI-X table or PBA only in part.
    #[error("the access straddles the edge of the MSI-X table or PBA")]
    StraddlesMsix,
    /// The expansion ROM cannot be written.
    #[error("the expansion ROM is read-only")]
    ReadOnly,
}

/// An error from building or driving a [`VfioPciDevice`](super::VfioPciDevice).
#[derive(Debug, thiserror::Error)]
pub enum VfioPciError {
    /// `VFIO_DEVICE_GET_INFO` failed.
    #[error("VFIO device {device}: VFIO_DEVICE_GET_INFO failed")]
    DeviceInfo {
        /// The device's name.
        device: String,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// The device is not a vfio-pci device.
    #[error("VFIO device {device} is not a PCI device (device flags {flags:#x})")]
    NotPci {
        /// The device's name.
        device: String,
        /// `VFIO_DEVICE_FLAGS_*` as reported.
        flags: u32,
    },
    /// The device reports fewer regions than vfio-pci always has (BARs, ROM, config, VGA).
    #[error("VFIO device {device} reports {num_regions} regions; a vfio-pci device has at least 9")]
    TooFewRegions {
        /// The device's name.
        device: String,
        /// Regions reported.
        num_regions: u32,
    },
    /// `VFIO_DEVICE_GET_REGION_INFO` failed, or its reply was malformed (a capability or sparse
    /// area outside the buffer or the region).
    #[error("VFIO device {device}: region info of region {index} failed or is malformed")]
    RegionInfo {
        /// The device's name.
        device: String,
        /// The region index.
        index: u32,
        /// The host error (`EINVAL` for a malformed reply).
        #[source]
        source: Errno,
    },
    /// The region-info reply describes another region than the one asked for.
    #[error(
        "VFIO device {device}: region info asked for region {index} describes region {reported}"
    )]
    RegionIndexMismatch {
        /// The device's name.
        device: String,
        /// The index asked for.
        index: u32,
        /// The index in the reply.
        reported: u32,
    },
    /// The config region is missing or cannot be read.
    #[error("VFIO device {device}: reading {len} bytes of config space at {offset:#x} failed")]
    ConfigRead {
        /// The device's name.
        device: String,
        /// Offset in config space.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The host error (`EIO` for a short read).
        #[source]
        source: Errno,
    },
    /// A BAR register and its region disagree, or describe an impossible BAR.
    #[error("VFIO device {device}: BAR {index}: {reason}")]
    InvalidBar {
        /// The device's name.
        device: String,
        /// BAR index (6 for the ROM).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The BAR layout is not one a PCI function can have.
    #[error("VFIO device {device}: BAR {index} cannot be declared")]
    Bar {
        /// The device's name.
        device: String,
        /// BAR index.
        index: usize,
        /// Why the config space model refused it.
        #[source]
        source: PciBarError,
    },
    /// A capability the guest would see is malformed.
    #[error("VFIO device {device}: capability {id:#x} at {offset:#x}: {reason}")]
    InvalidCapability {
        /// The device's name.
        device: String,
        /// Capability ID.
        id: u16,
        /// Its offset in config space.
        offset: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// The MSI capability cannot be modelled.
    #[error("VFIO device {device}: MSI capability rejected")]
    Msi {
        /// The device's name.
        device: String,
        /// Why the model refused it.
        #[source]
        source: MsiError,
    },
    /// The MSI-X capability cannot be modelled.
    #[error("VFIO device {device}: MSI-X capability rejected")]
    Msix {
        /// The device's name.
        device: String,
        /// Why the model refused it.
        #[source]
        source: MsixError,
    },
    /// The MSI-X table or PBA is not inside a memory BAR of the device.
    #[error(
        "VFIO device {device}: MSI-X {what} at BAR {bir} offset {offset:#x} (+{len:#x}) is not inside a memory BAR"
    )]
    MsixOutsideBar {
        /// The device's name.
        device: String,
        /// "table" or "PBA".
        what: &'static str,
        /// BAR indicator.
        bir: u8,
        /// Offset in the BAR.
        offset: u32,
        /// Length in bytes.
        len: u64,
    },
    /// `VFIO_DEVICE_GET_IRQ_INFO` failed.
    #[error("VFIO device {device}: IRQ info of index {index} failed")]
    IrqInfo {
        /// The device's name.
        device: String,
        /// The IRQ index.
        index: u32,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// The IRQ-info reply describes another index than the one asked for.
    #[error("VFIO device {device}: IRQ info asked for index {index} describes index {reported}")]
    IrqIndexMismatch {
        /// The device's name.
        device: String,
        /// The index asked for.
        index: u32,
        /// The index in the reply.
        reported: u32,
    },
    /// The VMM's interrupt manager could not provide interrupts.
    #[error("VFIO device {device}: creating its {what} interrupts failed")]
    Interrupt {
        /// The device's name.
        device: String,
        /// "INTx", "MSI" or "MSI-X".
        what: &'static str,
        /// The interrupt manager's error.
        #[source]
        source: InterruptError,
    },
    /// An interrupt group has no eventfd for a vector, so VFIO cannot signal it.
    #[error("VFIO device {device}: {what} vector {vector} has no eventfd to hand to VFIO")]
    NoNotifier {
        /// The device's name.
        device: String,
        /// "MSI" or "MSI-X".
        what: &'static str,
        /// The vector.
        vector: u32,
    },
    /// An eventfd could not be created.
    #[error("VFIO device {device}: creating the {what} eventfd failed")]
    EventFd {
        /// The device's name.
        device: String,
        /// What the eventfd was for.
        what: &'static str,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// `VFIO_DEVICE_SET_IRQS` failed.
    #[error("VFIO device {device}: VFIO_DEVICE_SET_IRQS ({action}) on IRQ index {index} failed")]
    SetIrqs {
        /// The device's name.
        device: String,
        /// The IRQ index.
        index: u32,
        /// What was asked ("enable", "disable", "unmask", ...).
        action: &'static str,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// A trapped BAR access was refused before reaching the device.
    #[error("VFIO device {device}: {len}-byte access at {offset:#x} of BAR {index}: {fault}")]
    BarAccess {
        /// The device's name.
        device: String,
        /// BAR index (6 for the ROM).
        index: usize,
        /// Offset in the BAR.
        offset: u64,
        /// Access width.
        len: usize,
        /// Why it was refused.
        fault: BarAccessFault,
    },
    /// A region read or write failed or was short.
    #[error("VFIO device {device}: {op} of {len} bytes at {offset:#x} of region {index} failed")]
    RegionAccess {
        /// The device's name.
        device: String,
        /// "read" or "write".
        op: &'static str,
        /// Region index.
        index: u32,
        /// Offset in the region.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The host error (`EIO` for a short access).
        #[source]
        source: Errno,
    },
    /// The device cannot be reset.
    #[error("VFIO device {device} does not support VFIO_DEVICE_RESET")]
    ResetUnsupported {
        /// The device's name.
        device: String,
    },
    /// `VFIO_DEVICE_RESET` failed.
    #[error("VFIO device {device}: VFIO_DEVICE_RESET failed")]
    Reset {
        /// The device's name.
        device: String,
        /// The host error.
        #[source]
        source: Errno,
    },
}
