//! How an emulated device reaches memory: [`DmaPort`], its path through the emulated host's
//! IOMMU.
//!
//! A real device's DMA is translated by the IOMMU hardware; an emulated device's DMA is
//! translated by the emulated host's software IOMMU, through whatever its device is attached to
//! (a paging HWPT, a nested HWPT per PASID). The port is the only way device models touch
//! memory, so a missing or wrong mapping is a fault, never a stray write.

use std::fmt::Debug;

/// Why a DMA access did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaFaultReason {
    /// The device (or this PASID of it) is attached to nothing: DMA is blocked.
    Blocked,
    /// No translation for the address (not mapped at some stage).
    NotPresent,
    /// The translation forbids this access (a write to a read-only mapping, ...).
    Permission,
    /// A stage-1 table entry was malformed (reserved bits set, bad level).
    BadTable,
    /// The backing memory could not be accessed (the process memory behind the mapping is gone).
    Backing,
}

/// A DMA access that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFault {
    /// The first IOVA that did not translate.
    pub iova: u64,
    /// The PASID of the access, if any.
    pub pasid: Option<u32>,
    /// Whether the access was a write.
    pub write: bool,
    /// Why.
    pub reason: DmaFaultReason,
}

impl std::fmt::Display for DmaFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.write { "write" } else { "read" };
        write!(f, "DMA {kind} at IOVA {:#x}", self.iova)?;
        if let Some(pasid) = self.pasid {
            write!(f, " (PASID {pasid})")?;
        }
        write!(f, " faulted: {:?}", self.reason)
    }
}

impl std::error::Error for DmaFault {}

/// A device's DMA path.
///
/// Accesses are all-or-nothing per page: a fault in the middle of a long access leaves the
/// pages before it written (as hardware would), and reports the first IOVA that failed.
pub trait DmaPort: Send + Sync + Debug {
    /// Reads `buf.len()` bytes at `iova`, with `pasid` if the request carries one.
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault>;

    /// Writes `buf` at `iova`, with `pasid` if the request carries one.
    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault>;
}
