//! First-stage translation faults, their VT-d fault reason codes, and the record a fault queue or
//! a fault recording register is filled from.
//!
//! Reason codes and names follow the VT-d scalable-mode fault reasons as the Linux intel driver
//! decodes them (`dma_remap_sm_fault_reasons` in `drivers/iommu/intel/dmar.c`).

use super::access::Access;
use super::memory::Stage2Fault;

/// A VT-d scalable-mode fault reason code (the FR field of a fault record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FaultReason {
    /// 0x5D: a supervisor request while SRE is clear ("SRE field is clear in PASID Table Entry").
    SreClear = 0x5d,
    /// 0x70: error accessing a first-stage paging entry below the root.
    FsEntryAccessError = 0x70,
    /// 0x71: present bit clear in a first-stage paging entry.
    FsEntryNotPresent = 0x71,
    /// 0x72: non-zero reserved field in a present first-stage paging entry.
    FsEntryReserved = 0x72,
    /// 0x73: error accessing the root (FS-PML4/FS-PML5) entry.
    FsRootAccessError = 0x73,
    /// 0x74: a first-stage table address beyond the stage-2 width in nested translation.
    FsEntryBeyondMgaw = 0x74,
    /// 0x75: stage 2 refuses to read the root entry in nested translation.
    FsRootReadDenied = 0x75,
    /// 0x76: stage 2 refuses to read a first-stage paging entry in nested translation.
    FsEntryReadDenied = 0x76,
    /// 0x77: stage 2 refuses to write a first-stage paging entry (A/EA/D update) in nested
    /// translation.
    FsEntryWriteDenied = 0x77,
    /// 0x80: input address not canonical for first-stage translation.
    NonCanonical = 0x80,
    /// 0x81: U/S clear for a first-stage translation with user privilege.
    UserPrivilege = 0x81,
    /// 0x85: no write permission for a write or AtomicOp request.
    WriteDenied = 0x85,
}

impl FaultReason {
    /// The 8-bit code a fault record carries.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// A one-line description, as a fault log would print it.
    pub const fn description(self) -> &'static str {
        match self {
            FaultReason::SreClear => "SRE field is clear in PASID Table Entry",
            FaultReason::FsEntryAccessError => {
                "Error attempting to access first-stage paging entry"
            }
            FaultReason::FsEntryNotPresent => "Present bit in first-stage paging entry is clear",
            FaultReason::FsEntryReserved => {
                "Non-zero reserved field set in first-stage paging entry"
            }
            FaultReason::FsRootAccessError => "Error attempting to access first-stage root entry",
            FaultReason::FsEntryBeyondMgaw => {
                "First-stage entry address beyond MGAW in nested translation"
            }
            FaultReason::FsRootReadDenied => {
                "Read permission error in first-stage root entry in nested translation"
            }
            FaultReason::FsEntryReadDenied => {
                "Read permission error in first-stage paging entry in nested translation"
            }
            FaultReason::FsEntryWriteDenied => {
                "Write permission error in first-stage paging entry in nested translation"
            }
            FaultReason::NonCanonical => "Address in first-stage translation is not canonical",
            FaultReason::UserPrivilege => {
                "U/S clear for first-stage translation with user privilege"
            }
            FaultReason::WriteDenied => "No write permission for Write/AtomicOp request",
        }
    }
}

/// Why a first-stage translation failed. Every variant carries the input address; those raised
/// while reading a table carry the level (1 = leaf page table ... 5 = FS-PML5) and the guest
/// physical address of the entry involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FirstStageFault {
    /// A privileged request while supervisor requests are disabled (SRE clear).
    #[error(
        "Supervisor request for IOVA {iova:#x} refused: supervisor requests are disabled (SRE)"
    )]
    SupervisorRequestsDisabled {
        /// The input address.
        iova: u64,
    },
    /// The input address is not canonical for the paging depth, i.e. it does not fit the 48- or
    /// 57-bit input width (first-stage translation checks the width this way).
    #[error("IOVA {iova:#x} is not canonical for {width}-bit first-stage paging")]
    NonCanonical {
        /// The input address.
        iova: u64,
        /// The input width in bits.
        width: u8,
    },
    /// An entry on the walk has P clear.
    #[error(
        "Level-{level} first-stage entry at GPA {entry_gpa:#x} for IOVA {iova:#x} is not present"
    )]
    NotPresent {
        /// The input address.
        iova: u64,
        /// Level of the entry.
        level: u8,
        /// Guest physical address of the entry.
        entry_gpa: u64,
    },
    /// A present entry has reserved bits set.
    #[error(
        "Level-{level} first-stage entry {value:#x} at GPA {entry_gpa:#x} for IOVA {iova:#x} has reserved bits {bits:#x} set"
    )]
    ReservedBits {
        /// The input address.
        iova: u64,
        /// Level of the entry.
        level: u8,
        /// Guest physical address of the entry.
        entry_gpa: u64,
        /// The entry.
        value: u64,
        /// The reserved bits found set.
        bits: u64,
    },
    /// A user-level request met an entry with U/S clear.
    #[error(
        "User-level request for IOVA {iova:#x} denied: level-{level} entry at GPA {entry_gpa:#x} is supervisor-only"
    )]
    UserPrivilege {
        /// The input address.
        iova: u64,
        /// Level of the first entry with U/S clear.
        level: u8,
        /// Guest physical address of that entry.
        entry_gpa: u64,
    },
    /// A write met an entry with R/W clear (user request, or privileged request with WPE set).
    #[error(
        "Write to IOVA {iova:#x} denied: level-{level} entry at GPA {entry_gpa:#x} is read-only"
    )]
    WriteDenied {
        /// The input address.
        iova: u64,
        /// Level of the first entry with R/W clear.
        level: u8,
        /// Guest physical address of that entry.
        entry_gpa: u64,
    },
    /// Stage 2 refused access to the memory holding a table entry.
    #[error("Stage-2 fault accessing the level-{level} first-stage entry for IOVA {iova:#x}")]
    Stage2 {
        /// The input address.
        iova: u64,
        /// Level of the entry being read or updated.
        level: u8,
        /// The entry is in the root table (read through the configured root pointer).
        root: bool,
        /// What stage 2 reported, with the entry's guest physical address.
        #[source]
        fault: Stage2Fault,
    },
    /// Setting A/EA/D kept racing with other updates of the entry; the walker gave up rather
    /// than spin for ever on a guest that keeps rewriting it.
    #[error(
        "Could not set access flags in level-{level} entry at GPA {entry_gpa:#x} for IOVA {iova:#x}: it kept changing"
    )]
    EntryUpdateContended {
        /// The input address.
        iova: u64,
        /// Level of the entry.
        level: u8,
        /// Guest physical address of the entry.
        entry_gpa: u64,
    },
}

impl FirstStageFault {
    /// The input address that faulted.
    pub const fn iova(&self) -> u64 {
        match *self {
            FirstStageFault::SupervisorRequestsDisabled { iova }
            | FirstStageFault::NonCanonical { iova, .. }
            | FirstStageFault::NotPresent { iova, .. }
            | FirstStageFault::ReservedBits { iova, .. }
            | FirstStageFault::UserPrivilege { iova, .. }
            | FirstStageFault::WriteDenied { iova, .. }
            | FirstStageFault::Stage2 { iova, .. }
            | FirstStageFault::EntryUpdateContended { iova, .. } => iova,
        }
    }

    /// The level of the entry where the fault happened; `None` for faults raised before any table
    /// is read.
    pub const fn level(&self) -> Option<u8> {
        match *self {
            FirstStageFault::SupervisorRequestsDisabled { .. }
            | FirstStageFault::NonCanonical { .. } => None,
            FirstStageFault::NotPresent { level, .. }
            | FirstStageFault::ReservedBits { level, .. }
            | FirstStageFault::UserPrivilege { level, .. }
            | FirstStageFault::WriteDenied { level, .. }
            | FirstStageFault::Stage2 { level, .. }
            | FirstStageFault::EntryUpdateContended { level, .. } => Some(level),
        }
    }

    /// The VT-d fault reason this fault is reported with.
    ///
    /// A contended flag update has no VT-d reason of its own (hardware updates entries with a
    /// locked operation); it is reported as an error accessing the entry.
    pub const fn reason(&self) -> FaultReason {
        match *self {
            FirstStageFault::SupervisorRequestsDisabled { .. } => FaultReason::SreClear,
            FirstStageFault::NonCanonical { .. } => FaultReason::NonCanonical,
            FirstStageFault::NotPresent { .. } => FaultReason::FsEntryNotPresent,
            FirstStageFault::ReservedBits { .. } => FaultReason::FsEntryReserved,
            FirstStageFault::UserPrivilege { .. } => FaultReason::UserPrivilege,
            FirstStageFault::WriteDenied { .. } => FaultReason::WriteDenied,
            FirstStageFault::EntryUpdateContended { .. } => FaultReason::FsEntryAccessError,
            FirstStageFault::Stage2 { root, fault, .. } => match fault {
                Stage2Fault::NotMapped { .. } | Stage2Fault::ReadDenied { .. } => {
                    if root {
                        FaultReason::FsRootReadDenied
                    } else {
                        FaultReason::FsEntryReadDenied
                    }
                }
                Stage2Fault::WriteDenied { .. } => FaultReason::FsEntryWriteDenied,
                Stage2Fault::BeyondAddressWidth { .. } => FaultReason::FsEntryBeyondMgaw,
                Stage2Fault::MemoryError { .. } => {
                    if root {
                        FaultReason::FsRootAccessError
                    } else {
                        FaultReason::FsEntryAccessError
                    }
                }
            },
        }
    }
}

/// `IOMMU_PGFAULT_PERM_READ`.
pub const PGFAULT_PERM_READ: u32 = 1 << 0;
/// `IOMMU_PGFAULT_PERM_WRITE`.
pub const PGFAULT_PERM_WRITE: u32 = 1 << 1;
/// `IOMMU_PGFAULT_PERM_PRIV`.
pub const PGFAULT_PERM_PRIV: u32 = 1 << 3;

/// One recorded translation fault: what a VT-d fault recording register (FRCD) or an iommufd
/// fault queue entry (`iommu_hwpt_pgfault`) is filled from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Requester ID (bus/device/function) of the device whose request faulted.
    pub source_id: u16,
    /// The PASID of a request-with-PASID; `None` for requests without one.
    pub pasid: Option<u32>,
    /// The faulting input address, unaligned.
    pub address: u64,
    /// What the request asked for (read, write, privileged).
    pub access: Access,
    /// The fault reason.
    pub reason: FaultReason,
    /// Level of the entry where the walk stopped; `None` if no table was read.
    pub level: Option<u8>,
}

impl FaultRecord {
    /// The record for `fault`, raised by `access` from `source_id` with `pasid`.
    pub const fn new(
        source_id: u16,
        pasid: Option<u32>,
        access: Access,
        fault: &FirstStageFault,
    ) -> Self {
        FaultRecord {
            source_id,
            pasid,
            address: fault.iova(),
            access,
            reason: fault.reason(),
            level: fault.level(),
        }
    }

    /// The 4 KiB page address, as the FI field of a fault recording register holds it.
    pub const fn page_address(&self) -> u64 {
        self.address & !0xfff
    }

    /// The `perm` field of an `iommu_hwpt_pgfault`.
    pub const fn pgfault_perm(&self) -> u32 {
        (if self.access.read {
            PGFAULT_PERM_READ
        } else {
            0
        }) | (if self.access.write {
            PGFAULT_PERM_WRITE
        } else {
            0
        }) | (if self.access.privileged {
            PGFAULT_PERM_PRIV
        } else {
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_faults_map_to_nested_reasons_by_kind_and_root() {
        let at = |root, fault| FirstStageFault::Stage2 {
            iova: 0,
            level: 4,
            root,
            fault,
        };
        let gpa = 0x1000;
        assert_eq!(
            at(true, Stage2Fault::NotMapped { gpa }).reason().code(),
            0x75
        );
        assert_eq!(
            at(false, Stage2Fault::ReadDenied { gpa }).reason().code(),
            0x76
        );
        assert_eq!(
            at(false, Stage2Fault::WriteDenied { gpa }).reason().code(),
            0x77
        );
        assert_eq!(
            at(false, Stage2Fault::BeyondAddressWidth { gpa, width: 39 })
                .reason()
                .code(),
            0x74
        );
        assert_eq!(
            at(true, Stage2Fault::MemoryError { gpa }).reason().code(),
            0x73
        );
        assert_eq!(
            at(false, Stage2Fault::MemoryError { gpa }).reason().code(),
            0x70
        );
    }

    #[test]
    fn record_carries_page_address_pasid_and_permissions() {
        let fault = FirstStageFault::WriteDenied {
            iova: 0x1234_5678,
            level: 1,
            entry_gpa: 0x9000,
        };
        let record = FaultRecord::new(0x0810, Some(5), Access::WRITE.privileged(), &fault);
        assert_eq!(record.page_address(), 0x1234_5000);
        assert_eq!(record.reason.code(), 0x85);
        assert_eq!(record.level, Some(1));
        assert_eq!(record.pasid, Some(5));
        assert_eq!(
            record.pgfault_perm(),
            PGFAULT_PERM_WRITE | PGFAULT_PERM_PRIV
        );
    }

    #[test]
    fn fault_message_names_address_and_entry() {
        let fault = FirstStageFault::NotPresent {
            iova: 0x4000,
            level: 2,
            entry_gpa: 0x7008,
        };
        assert_eq!(
            fault.to_string(),
            "Level-2 first-stage entry at GPA 0x7008 for IOVA 0x4000 is not present"
        );
    }
}
