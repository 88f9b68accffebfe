//! What each kernel version's iommufd offers: ioctls, request fields, flags and selftest ops.
//!
//! The emulated host consults this before anything else, as the kernel's ioctl table and
//! `copy_struct_from_user` act before any handler: an ioctl the version lacks is `ENOTTY`; a
//! request field the version does not know must be zero, else `E2BIG`. Versions are the first
//! mainline release with the feature (6.12 as in the lab's 6.12.111, which reports
//! `out_max_pasid_log2`).

use super::config::KernelVersion;
use crate::errno::Errno;

/// An iommufd ioctl, for availability checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ioctl {
    Destroy,
    IoasAlloc,
    IoasAllowIovas,
    IoasCopy,
    IoasIovaRanges,
    IoasMap,
    IoasUnmap,
    Option,
    VfioIoas,
    HwptAlloc,
    GetHwInfo,
    HwptSetDirtyTracking,
    HwptGetDirtyBitmap,
    HwptInvalidate,
    FaultQueueAlloc,
    IoasMapFile,
}

impl Ioctl {
    /// The first version with the ioctl.
    const fn since(self) -> KernelVersion {
        match self {
            Ioctl::Destroy
            | Ioctl::IoasAlloc
            | Ioctl::IoasAllowIovas
            | Ioctl::IoasCopy
            | Ioctl::IoasIovaRanges
            | Ioctl::IoasMap
            | Ioctl::IoasUnmap
            | Ioctl::Option
            | Ioctl::VfioIoas => KernelVersion::V6_2,
            Ioctl::HwptAlloc | Ioctl::GetHwInfo => KernelVersion::V6_6,
            Ioctl::HwptSetDirtyTracking | Ioctl::HwptGetDirtyBitmap => KernelVersion::V6_7,
            Ioctl::HwptInvalidate => KernelVersion::V6_8,
            Ioctl::FaultQueueAlloc => KernelVersion::V6_11,
            Ioctl::IoasMapFile => KernelVersion::V6_13,
        }
    }
}

/// A selftest op (`IOMMU_TEST_OP_*`), for availability checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TestOp {
    AddReserved,
    MockDomain,
    MockDomainFlags,
    MockDomainReplace,
    MdCheckMap,
    MdCheckRefs,
    Dirty,
    MdCheckIotlb,
    TriggerIopf,
}

impl TestOp {
    const fn since(self) -> KernelVersion {
        match self {
            TestOp::AddReserved | TestOp::MockDomain | TestOp::MdCheckMap | TestOp::MdCheckRefs => {
                KernelVersion::V6_2
            }
            TestOp::MockDomainReplace => KernelVersion::V6_6,
            TestOp::MockDomainFlags | TestOp::Dirty => KernelVersion::V6_7,
            TestOp::MdCheckIotlb => KernelVersion::V6_8,
            TestOp::TriggerIopf => KernelVersion::V6_11,
        }
    }
}

/// The uAPI of one kernel version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    pub(crate) version: KernelVersion,
    /// `CONFIG_IOMMUFD_TEST`.
    pub(crate) selftest: bool,
}

impl Features {
    /// `ENOTTY` if the version lacks `ioctl`.
    pub(crate) fn ioctl(&self, ioctl: Ioctl) -> Result<(), Errno> {
        if self.version >= ioctl.since() {
            Ok(())
        } else {
            Err(Errno::ENOTTY)
        }
    }

    /// `ENOTTY` without the selftest interface; `EOPNOTSUPP` (the dispatcher's default) for an
    /// op the version lacks.
    pub(crate) fn test_op(&self, op: TestOp) -> Result<(), Errno> {
        if !self.selftest {
            return Err(Errno::ENOTTY);
        }
        if self.version >= op.since() {
            Ok(())
        } else {
            Err(Errno::EOPNOTSUPP)
        }
    }

    /// `iommu_hwpt_alloc` has `data_type`, `data_len`, `data_uptr` and flags (6.7).
    pub(crate) fn hwpt_alloc_data(&self) -> bool {
        self.version >= KernelVersion::V6_7
    }

    /// `iommu_hwpt_alloc` has `fault_id` and `FAULT_ID_VALID` (6.11).
    pub(crate) fn hwpt_fault_id(&self) -> bool {
        self.version >= KernelVersion::V6_11
    }

    /// `IOMMU_HWPT_ALLOC_PASID` is a valid flag (6.15).
    pub(crate) fn hwpt_alloc_pasid(&self) -> bool {
        self.version >= KernelVersion::V6_15
    }

    /// `iommu_hw_info` has `out_capabilities` (6.7).
    pub(crate) fn hw_info_capabilities(&self) -> bool {
        self.version >= KernelVersion::V6_7
    }

    /// `iommu_hw_info` has `out_max_pasid_log2` (6.12 stable).
    pub(crate) fn hw_info_pasid(&self) -> bool {
        self.version >= KernelVersion::V6_12
    }

    /// `IOMMU_HW_INFO_FLAG_INPUT_TYPE` (6.17).
    pub(crate) fn hw_info_input_type(&self) -> bool {
        self.version >= KernelVersion::V6_17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctls_appear_with_their_release() {
        let f = |v| Features {
            version: v,
            selftest: true,
        };
        assert_eq!(
            f(KernelVersion::V6_2).ioctl(Ioctl::HwptAlloc),
            Err(Errno::ENOTTY)
        );
        assert_eq!(f(KernelVersion::V6_6).ioctl(Ioctl::HwptAlloc), Ok(()));
        assert_eq!(
            f(KernelVersion::V6_12).ioctl(Ioctl::IoasMapFile),
            Err(Errno::ENOTTY)
        );
        assert_eq!(f(KernelVersion::V6_13).ioctl(Ioctl::IoasMapFile), Ok(()));
        assert_eq!(
            f(KernelVersion::V6_7).test_op(TestOp::MdCheckIotlb),
            Err(Errno::EOPNOTSUPP)
        );
        let no_test = Features {
            version: KernelVersion::NEWEST,
            selftest: false,
        };
        assert_eq!(no_test.test_op(TestOp::MockDomain), Err(Errno::ENOTTY));
    }
}
