//! `IOMMU_TEST_CMD` (`CONFIG_IOMMUFD_TEST`): the iommufd selftest's command, with its
//! `struct iommu_test_cmd` laid out as in Linux 6.12 (`drivers/iommu/iommufd/iommufd_test.h`).
//!
//! That header is not uAPI, so no bindings crate has it. The struct is a 16-byte header, a
//! 48-byte union of per-op arguments (8-byte aligned) and a trailing `u32 last` that marks the
//! minimum size: 72 bytes in all. The union is kept as bytes with the 6.12 offsets below, which
//! the tests pin (they were measured with the header and gcc).

use std::os::fd::BorrowedFd;
use std::os::raw::c_ulong;

use super::{io, ioctl_mut};
use crate::errno::Errno;

/// `IOMMU_TEST_CMD`: `_IO(';', 0x80 + 32)`.
pub const IOMMU_TEST_CMD: c_ulong = io(0xa0);

/// `IOMMU_TEST_OP_ADD_RESERVED`.
pub const OP_ADD_RESERVED: u32 = 1;
/// `IOMMU_TEST_OP_MOCK_DOMAIN`.
pub const OP_MOCK_DOMAIN: u32 = 2;
/// `IOMMU_TEST_OP_MD_CHECK_MAP`.
pub const OP_MD_CHECK_MAP: u32 = 3;
/// `IOMMU_TEST_OP_MD_CHECK_REFS`.
pub const OP_MD_CHECK_REFS: u32 = 4;
/// `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`.
pub const OP_MOCK_DOMAIN_REPLACE: u32 = 10;
/// `IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS`.
pub const OP_MOCK_DOMAIN_FLAGS: u32 = 12;
/// `IOMMU_TEST_OP_DIRTY`.
pub const OP_DIRTY: u32 = 13;
/// `IOMMU_TEST_OP_MD_CHECK_IOTLB`.
pub const OP_MD_CHECK_IOTLB: u32 = 14;
/// `IOMMU_TEST_OP_TRIGGER_IOPF`.
pub const OP_TRIGGER_IOPF: u32 = 15;

/// Byte offsets of the union members used here, from the start of the struct (6.12).
pub mod offset {
    /// `add_reserved.start` (u64).
    pub const ADD_RESERVED_START: usize = 16;
    /// `add_reserved.length` (u64).
    pub const ADD_RESERVED_LENGTH: usize = 24;
    /// `mock_domain.out_stdev_id` (u32).
    pub const MOCK_DOMAIN_OUT_STDEV_ID: usize = 16;
    /// `mock_domain.out_hwpt_id` (u32).
    pub const MOCK_DOMAIN_OUT_HWPT_ID: usize = 20;
    /// `mock_domain.out_idev_id` (u32).
    pub const MOCK_DOMAIN_OUT_IDEV_ID: usize = 24;
    /// `mock_domain_flags.dev_flags` (u32).
    pub const MOCK_DOMAIN_DEV_FLAGS: usize = 28;
    /// `mock_domain_replace.pt_id` (u32, in and out).
    pub const MOCK_DOMAIN_REPLACE_PT_ID: usize = 16;
    /// `check_map.iova` (u64).
    pub const CHECK_MAP_IOVA: usize = 16;
    /// `check_map.length` (u64).
    pub const CHECK_MAP_LENGTH: usize = 24;
    /// `check_map.uptr` (u64).
    pub const CHECK_MAP_UPTR: usize = 32;
    /// `check_refs.length` (u64).
    pub const CHECK_REFS_LENGTH: usize = 16;
    /// `check_refs.uptr` (u64).
    pub const CHECK_REFS_UPTR: usize = 24;
    /// `check_refs.refs` (u32).
    pub const CHECK_REFS_REFS: usize = 32;
    /// `dirty.flags` (u32).
    pub const DIRTY_FLAGS: usize = 16;
    /// `dirty.iova` (u64).
    pub const DIRTY_IOVA: usize = 24;
    /// `dirty.length` (u64).
    pub const DIRTY_LENGTH: usize = 32;
    /// `dirty.page_size` (u64).
    pub const DIRTY_PAGE_SIZE: usize = 40;
    /// `dirty.uptr` (u64).
    pub const DIRTY_UPTR: usize = 48;
    /// `dirty.out_nr_dirty` (u64).
    pub const DIRTY_OUT_NR_DIRTY: usize = 56;
    /// `check_iotlb.id` (u32).
    pub const CHECK_IOTLB_ID: usize = 16;
    /// `check_iotlb.iotlb` (u32).
    pub const CHECK_IOTLB_IOTLB: usize = 20;
    /// `trigger_iopf.dev_id` (u32).
    pub const TRIGGER_IOPF_DEV_ID: usize = 16;
    /// `trigger_iopf.pasid` (u32).
    pub const TRIGGER_IOPF_PASID: usize = 20;
    /// `trigger_iopf.grpid` (u32).
    pub const TRIGGER_IOPF_GRPID: usize = 24;
    /// `trigger_iopf.perm` (u32).
    pub const TRIGGER_IOPF_PERM: usize = 28;
    /// `trigger_iopf.addr` (u64).
    pub const TRIGGER_IOPF_ADDR: usize = 32;
}

/// Where the union starts.
const UNION_START: usize = 16;
/// Bytes of the union.
const UNION_LEN: usize = 48;

/// `struct iommu_test_cmd` (6.12), 72 bytes.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct IommuTestCmd {
    size: u32,
    /// `IOMMU_TEST_OP_*`.
    pub op: u32,
    /// The object the op applies to (IOAS, HWPT or selftest device, per op).
    pub id: u32,
    reserved: u32,
    union: [u8; UNION_LEN],
    last: u32,
    tail: u32,
}

impl IommuTestCmd {
    /// A command for `op` on object `id`, with every argument 0.
    pub fn new(op: u32, id: u32) -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            op,
            id,
            reserved: 0,
            union: [0; UNION_LEN],
            last: 0,
            tail: 0,
        }
    }

    fn field(&self, at: usize, len: usize) -> &[u8] {
        &self.union[at - UNION_START..at - UNION_START + len]
    }

    fn field_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        &mut self.union[at - UNION_START..at - UNION_START + len]
    }

    /// Sets the `u32` union member at struct offset `at` (one of [`offset`]).
    pub fn set_u32(&mut self, at: usize, value: u32) -> &mut Self {
        self.field_mut(at, 4).copy_from_slice(&value.to_ne_bytes());
        self
    }

    /// Sets the `u64` union member at struct offset `at`.
    pub fn set_u64(&mut self, at: usize, value: u64) -> &mut Self {
        self.field_mut(at, 8).copy_from_slice(&value.to_ne_bytes());
        self
    }

    /// The `u32` union member at struct offset `at`.
    pub fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.field(at, 4));
        u32::from_ne_bytes(b)
    }

    /// The `u64` union member at struct offset `at`.
    pub fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.field(at, 8));
        u64::from_ne_bytes(b)
    }
}

/// `IOMMU_TEST_CMD` for every op whose user pointers (if any) the kernel only reads to look up
/// pages (`MD_CHECK_MAP`, `MD_CHECK_REFS`) or does not have.
///
/// `OP_DIRTY` reads a bitmap through its pointer: use [`test_dirty`], which checks its length.
pub fn test_cmd(fd: BorrowedFd<'_>, cmd: &mut IommuTestCmd) -> Result<(), Errno> {
    if cmd.op == OP_DIRTY {
        return Err(Errno::EFAULT);
    }
    // SAFETY: the kernel reads and writes at most `size` (72) bytes of `cmd`; the ops allowed
    // here carry no pointer the kernel writes through (check ops only resolve the pages of
    // `uptr` with get_user_pages, which fails with EFAULT on a bad address).
    unsafe { ioctl_mut(fd, IOMMU_TEST_CMD, cmd) }.map(drop)
}

/// `IOMMU_TEST_OP_DIRTY` with `bitmap` as the pages to dirty: the kernel reads
/// `ceil(length / page_size / 8)` bytes of it, so a shorter slice is `EFAULT` before the ioctl.
pub fn test_dirty(fd: BorrowedFd<'_>, cmd: &mut IommuTestCmd, bitmap: &[u64]) -> Result<(), Errno> {
    let length = cmd.u64_at(offset::DIRTY_LENGTH);
    let page_size = cmd.u64_at(offset::DIRTY_PAGE_SIZE);
    if page_size != 0 && (length / page_size).div_ceil(8) > (bitmap.len() as u64) * 8 {
        return Err(Errno::EFAULT);
    }
    cmd.op = OP_DIRTY;
    cmd.set_u64(offset::DIRTY_UPTR, bitmap.as_ptr() as u64);
    // SAFETY: the kernel reads at most `ceil(length / page_size / 8)` bytes at `uptr`, inside
    // the slice (checked above), or refuses a zero page size first; it writes only `cmd`.
    unsafe { ioctl_mut(fd, IOMMU_TEST_CMD, cmd) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    #[test]
    fn layout_matches_linux_6_12() {
        assert_eq!(IOMMU_TEST_CMD, 0x3ba0);
        assert_eq!(size_of::<IommuTestCmd>(), 72);
        assert_eq!(offset_of!(IommuTestCmd, union), UNION_START);
        assert_eq!(offset_of!(IommuTestCmd, last), 64);
        assert_eq!(IommuTestCmd::new(OP_MOCK_DOMAIN, 1).size, 72);
        // Every union member ends inside the union.
        for (at, len) in [
            (offset::DIRTY_OUT_NR_DIRTY, 8),
            (offset::TRIGGER_IOPF_ADDR, 8),
            (offset::CHECK_REFS_REFS, 4),
            (offset::MOCK_DOMAIN_DEV_FLAGS, 4),
        ] {
            assert!(at >= UNION_START && at + len <= UNION_START + UNION_LEN);
        }
    }

    #[test]
    fn union_members_land_at_their_offsets() {
        let mut cmd = IommuTestCmd::new(OP_DIRTY, 7);
        cmd.set_u32(offset::DIRTY_FLAGS, 0xaabb_ccdd)
            .set_u64(offset::DIRTY_PAGE_SIZE, 0x1122_3344_5566_7788);
        assert_eq!(cmd.u32_at(offset::DIRTY_FLAGS), 0xaabb_ccdd);
        assert_eq!(cmd.u64_at(offset::DIRTY_PAGE_SIZE), 0x1122_3344_5566_7788);
        assert_eq!(
            &cmd.union[offset::DIRTY_PAGE_SIZE - 16..offset::DIRTY_PAGE_SIZE - 8],
            &0x1122_3344_5566_7788u64.to_ne_bytes()
        );
    }

    #[test]
    fn dirty_bitmap_shorter_than_the_range_is_refused_without_an_ioctl() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut cmd = IommuTestCmd::new(OP_DIRTY, 1);
        cmd.set_u64(offset::DIRTY_LENGTH, 65 * 2048)
            .set_u64(offset::DIRTY_PAGE_SIZE, 2048);
        assert_eq!(test_dirty(f.as_fd(), &mut cmd, &[0]), Err(Errno::EFAULT));
        assert_eq!(test_dirty(f.as_fd(), &mut cmd, &[0, 0]), Err(Errno::ENOTTY));
        // The generic entry point refuses the op that reads a bitmap.
        assert_eq!(test_cmd(f.as_fd(), &mut cmd), Err(Errno::EFAULT));
    }
}
