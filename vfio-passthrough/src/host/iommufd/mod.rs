//! The host IOMMU seam, iommufd flavour: one method per iommufd ioctl.
//!
//! [`Iommufd`] is one open iommufd context (one `/dev/iommu` file in the kernel backend, one
//! in-process context in the emulated one). Its methods take the request types of [`uapi`] by
//! `&mut`, like the kernel takes its argument struct, and answer with the kernel's errno. The
//! contract is `kernel-uapi.md` section 1 and, where the two differ, what Linux does; the
//! conformance suite holds every backend to it.
//!
//! Devices enter a context through the device seam (a VFIO cdev bound to the iommufd, an
//! emulated device bound to the emulated host) or, for tests, through the kernel's selftest mock
//! devices ([`IommufdSelftest`]); either way they appear as [`IommufdDevice`]s that attach to an
//! IOAS or a HWPT.

pub mod kernel;
mod kernel_selftest;
pub mod uapi;

use std::any::Any;
use std::fmt::Debug;
use std::fs::File;
use std::os::fd::RawFd;

use crate::errno::Errno;
pub use kernel::KernelIommufd;
use uapi::*;

/// One iommufd context.
///
/// Ids of all objects (IOAS, HWPT, device, fault queue) share one space per context: the lowest
/// free id in `[1, 2^31)`, reused after destroy.
pub trait Iommufd: Send + Sync + Debug {
    /// `IOMMU_DESTROY`: destroys the object `id`. `EBUSY` while something else references it.
    fn destroy(&self, id: u32) -> Result<(), Errno>;

    /// `IOMMU_IOAS_ALLOC`.
    fn ioas_alloc(&self, req: &mut IoasAlloc) -> Result<(), Errno>;

    /// `IOMMU_IOAS_ALLOW_IOVAS`: replaces the allowed list with `ranges` (empty clears it).
    fn ioas_allow_iovas(&self, req: &IoasAllowIovas, ranges: &[IovaRange]) -> Result<(), Errno>;

    /// `IOMMU_IOAS_IOVA_RANGES`: the usable IOVA ranges (holes of the reserved ranges), written
    /// to the first `req.num_iovas` entries of `out`. `EFAULT` if `req.num_iovas > out.len()`.
    fn ioas_iova_ranges(
        &self,
        req: &mut IoasIovaRanges,
        out: &mut [IovaRange],
    ) -> Result<(), Errno>;

    /// `IOMMU_IOAS_MAP`: maps process memory at `req.user_va`.
    ///
    /// # Safety
    ///
    /// While the range stays mapped, devices attached to the IOAS may read and write
    /// `[user_va, user_va + length)` at any time, and the backend keeps using that memory (the
    /// kernel pins its pages). The caller must keep the memory allocated until it is unmapped and
    /// must only access it in ways that tolerate concurrent device access (volatile or atomic
    /// accesses, `vm-memory`), never through Rust references. An invalid address is not
    /// undefined behaviour by itself: the backends report it as `EFAULT`.
    unsafe fn ioas_map(&self, req: &mut IoasMap) -> Result<(), Errno>;

    /// `IOMMU_IOAS_MAP_FILE` (6.13): maps part of a memfd. The backend takes its own reference
    /// to the file, so the caller may close `req.fd` afterwards.
    fn ioas_map_file(&self, req: &mut IoasMapFile) -> Result<(), Errno>;

    /// `IOMMU_IOAS_COPY`: maps the pages behind a source range again, sharing them.
    fn ioas_copy(&self, req: &mut IoasCopy) -> Result<(), Errno>;

    /// `IOMMU_IOAS_UNMAP`: unmaps whole areas inside the range; never splits one.
    fn ioas_unmap(&self, req: &mut IoasUnmap) -> Result<(), Errno>;

    /// `IOMMU_OPTION`.
    fn option(&self, req: &mut IommuOption) -> Result<(), Errno>;

    /// `IOMMU_VFIO_IOAS`.
    fn vfio_ioas(&self, req: &mut VfioIoas) -> Result<(), Errno>;

    /// `IOMMU_HWPT_ALLOC`, with the driver data in `data` (`data_len` is its length).
    fn hwpt_alloc(&self, req: &mut HwptAlloc, data: &[u8]) -> Result<(), Errno>;

    /// `IOMMU_GET_HW_INFO`: copies at most `data.len()` bytes of driver data into `data`,
    /// zero-filling the rest of it, and reports the full length in `req.data_len`.
    fn get_hw_info(&self, req: &mut HwInfo, data: &mut [u8]) -> Result<(), Errno>;

    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    fn hwpt_set_dirty_tracking(&self, req: &HwptSetDirtyTracking) -> Result<(), Errno>;

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP`: ORs dirty bits into `bitmap`. `EFAULT` if `bitmap` is
    /// shorter than `length / page_size` bits, once every other check passed (a range the
    /// kernel refuses, such as a zero `length`, gets the kernel's errno whatever the slice).
    fn hwpt_get_dirty_bitmap(
        &self,
        req: &HwptGetDirtyBitmap,
        bitmap: &mut [u64],
    ) -> Result<(), Errno>;

    /// `IOMMU_HWPT_INVALIDATE`: `entries` holds `entry_num` entries of `entry_len` bytes
    /// (`EFAULT` if shorter); `req.entry_num` is set to the number handled, also on error.
    fn hwpt_invalidate(&self, req: &mut HwptInvalidate, entries: &[u8]) -> Result<(), Errno>;

    /// `IOMMU_FAULT_QUEUE_ALLOC` (6.11): returns the queue's file; `read` yields
    /// [`HwptPgfault`] records, `write` takes [`HwptPageResponse`]s.
    fn fault_queue_alloc(&self, req: &mut FaultQueueAlloc) -> Result<File, Errno>;

    /// The context's file descriptor, for binding kernel VFIO devices to it; `None` for
    /// in-process backends.
    fn raw_fd(&self) -> Option<RawFd>;

    /// The backend as `Any`, so the device seam can recognise a context of its own kind (an
    /// emulated device can only bind to the emulated host, as a VFIO cdev can only bind to a
    /// kernel iommufd).
    fn as_any(&self) -> &dyn Any;
}

/// A device bound to an iommufd context.
///
/// Attaching is what the kernel does in `VFIO_DEVICE_ATTACH_IOMMUFD_PT` (or the selftest's
/// `MOCK_DOMAIN_REPLACE`): to an IOAS (the kernel finds or creates a compatible paging HWPT and
/// returns its id) or to a HWPT; attaching an attached device replaces atomically. With a PASID
/// (6.15+, in the kernel and in the emulated host configured as 6.15 or later) the attach
/// applies to that PASID only; older kernels answer `EINVAL`.
pub trait IommufdDevice: Send + Sync + Debug {
    /// The DEVICE object id in the context.
    fn dev_id(&self) -> u32;

    /// Attaches (or replaces) to `pt_id`; returns the HWPT id the device now uses.
    fn attach(&self, pasid: Option<u32>, pt_id: u32) -> Result<u32, Errno>;

    /// Detaches; DMA is blocked afterwards.
    fn detach(&self, pasid: Option<u32>) -> Result<(), Errno>;
}

/// A selftest mock device, as created by `IOMMU_TEST_OP_MOCK_DOMAIN`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockDomain {
    /// In: an IOAS or HWPT to attach the new mock device to.
    pub pt_id: u32,
    /// In: `MOCK_FLAGS_DEVICE_*` (0 = the plain `MOCK_DOMAIN` op).
    pub dev_flags: u32,
    /// Out: the selftest device object (destroy it to remove the device).
    pub out_stdev_id: u32,
    /// Out: the HWPT the device got attached to.
    pub out_hwpt_id: u32,
    /// Out: the DEVICE object id (`dev_id` for HWPT_ALLOC and GET_HW_INFO).
    pub out_idev_id: u32,
}

/// `MOCK_FLAGS_DEVICE_NO_DIRTY`: the mock device's IOMMU cannot track dirty pages.
pub const MOCK_FLAGS_DEVICE_NO_DIRTY: u32 = 1 << 0;
/// `MOCK_FLAGS_DEVICE_HUGE_IOVA`: the mock domain also offers huge IOPTEs.
pub const MOCK_FLAGS_DEVICE_HUGE_IOVA: u32 = 1 << 1;
/// The selftest mock domain's aperture: first IOVA.
pub const MOCK_APERTURE_START: u64 = 1 << 24;
/// The selftest mock domain's aperture: last IOVA.
pub const MOCK_APERTURE_LAST: u64 = (1 << 31) - 1;
/// `IOMMU_HWPT_DATA_SELFTEST`: driver data type of mock nested HWPTs (`u32 iotlb`).
pub const IOMMU_HWPT_DATA_SELFTEST: u32 = 0xdead;
/// The initial value of each of a mock nested HWPT's IOTLB entries.
pub const IOMMU_TEST_IOTLB_DEFAULT: u32 = 0xbadbeef;
/// `IOMMU_HWPT_INVALIDATE_DATA_SELFTEST`: invalidation entries `{u32 flags, u32 iotlb_id}`.
pub const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST: u32 = 0xdeadbeef;
/// `IOMMU_TEST_INVALIDATE_FLAG_ALL`.
pub const IOMMU_TEST_INVALIDATE_FLAG_ALL: u32 = 1 << 0;
/// `IOMMU_HW_INFO_TYPE_SELFTEST`.
pub const IOMMU_HW_INFO_TYPE_SELFTEST: u32 = 0xfeedbeef;

/// The kernel's iommufd selftest interface (`IOMMU_TEST_CMD`, `CONFIG_IOMMUFD_TEST`).
///
/// It is how tests reach what real hardware would do (a device that attaches, an IOMMU that
/// sets dirty bits) and how they check the page tables against the truth. The emulated host
/// implements it with the same semantics, which is what lets one conformance suite run on both.
/// A kernel without `CONFIG_IOMMUFD_TEST` answers `ENOTTY`.
pub trait IommufdSelftest: Iommufd {
    /// `IOMMU_TEST_OP_MOCK_DOMAIN[_FLAGS]`: creates a mock device attached to `req.pt_id`.
    fn mock_domain(&self, req: &mut MockDomain) -> Result<(), Errno>;

    /// `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`: re-attaches mock device `stdev_id` to `pt_id`;
    /// returns the HWPT id it now uses.
    fn mock_domain_replace(&self, stdev_id: u32, pt_id: u32) -> Result<u32, Errno>;

    /// `IOMMU_TEST_OP_ADD_RESERVED`: reserves `[start, start + length)` in IOAS `ioas_id`.
    fn mock_add_reserved(&self, ioas_id: u32, start: u64, length: u64) -> Result<(), Errno>;

    /// `IOMMU_TEST_OP_MD_CHECK_MAP`: checks that every mock page (half a CPU page) of
    /// `[iova, iova + length)` in mock paging HWPT `hwpt_id` maps the memory behind `user_va`
    /// (`EINVAL` where it does not).
    fn mock_check_map(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        user_va: u64,
    ) -> Result<(), Errno>;

    /// `IOMMU_TEST_OP_MD_CHECK_REFS`: checks that each page of `[user_va, +length)` is pinned
    /// exactly `refs` times (`EIO` where it is not).
    fn mock_check_refs(&self, user_va: u64, length: u64, refs: u32) -> Result<(), Errno>;

    /// `IOMMU_TEST_OP_DIRTY`: marks dirty, in mock paging HWPT `hwpt_id`, the pages whose bit is
    /// set in `bitmap` (bit n = page `iova + n * page_size`), as a device write would; returns
    /// how many mapped IOPTEs it marked (already dirty ones included, as 6.12 counts). 6.12
    /// finds the IOPTE of bit n at mock index `(iova + n * page_size) / page_size`, which is
    /// right only for `page_size` = the mock page (2 KiB), as the selftests use it.
    fn mock_dirty(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u64],
    ) -> Result<u64, Errno>;

    /// `IOMMU_TEST_OP_MD_CHECK_IOTLB`: checks that entry `iotlb_id` of mock nested HWPT
    /// `hwpt_id` holds `expected` (`EINVAL` if not).
    fn mock_check_iotlb(&self, hwpt_id: u32, iotlb_id: u32, expected: u32) -> Result<(), Errno>;

    /// `IOMMU_TEST_OP_TRIGGER_IOPF`: raises an I/O page fault from device `dev_id` as hardware
    /// would, to be read from the fault queue of the HWPT the device is attached to.
    fn mock_trigger_iopf(
        &self,
        dev_id: u32,
        pasid: u32,
        grpid: u32,
        perm: u32,
        addr: u64,
    ) -> Result<(), Errno>;
}
