//! [`IommufdSelftest`] for [`KernelIommufd`]: the kernel's `IOMMU_TEST_CMD`
//! (`CONFIG_IOMMUFD_TEST`; other kernels answer `ENOTTY`).

use super::kernel::KernelIommufd;
use super::{IommufdSelftest, MockDomain};
use crate::errno::Errno;
use crate::sys::selftest::{self as sys, IommuTestCmd, offset};

impl IommufdSelftest for KernelIommufd {
    fn mock_domain(&self, req: &mut MockDomain) -> Result<(), Errno> {
        // The plain op for no flags, as the kernel's own tests do; MOCK_DOMAIN_FLAGS otherwise.
        let op = if req.dev_flags == 0 {
            sys::OP_MOCK_DOMAIN
        } else {
            sys::OP_MOCK_DOMAIN_FLAGS
        };
        let mut cmd = IommuTestCmd::new(op, req.pt_id);
        cmd.set_u32(offset::MOCK_DOMAIN_DEV_FLAGS, req.dev_flags);
        sys::test_cmd(self.fd(), &mut cmd)?;
        req.out_stdev_id = cmd.u32_at(offset::MOCK_DOMAIN_OUT_STDEV_ID);
        req.out_hwpt_id = cmd.u32_at(offset::MOCK_DOMAIN_OUT_HWPT_ID);
        req.out_idev_id = cmd.u32_at(offset::MOCK_DOMAIN_OUT_IDEV_ID);
        Ok(())
    }

    fn mock_domain_replace(&self, stdev_id: u32, pt_id: u32) -> Result<u32, Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_MOCK_DOMAIN_REPLACE, stdev_id);
        cmd.set_u32(offset::MOCK_DOMAIN_REPLACE_PT_ID, pt_id);
        sys::test_cmd(self.fd(), &mut cmd)?;
        Ok(cmd.u32_at(offset::MOCK_DOMAIN_REPLACE_PT_ID))
    }

    fn mock_add_reserved(&self, ioas_id: u32, start: u64, length: u64) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_ADD_RESERVED, ioas_id);
        cmd.set_u64(offset::ADD_RESERVED_START, start)
            .set_u64(offset::ADD_RESERVED_LENGTH, length);
        sys::test_cmd(self.fd(), &mut cmd)
    }

    fn mock_check_map(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        user_va: u64,
    ) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_MD_CHECK_MAP, hwpt_id);
        cmd.set_u64(offset::CHECK_MAP_IOVA, iova)
            .set_u64(offset::CHECK_MAP_LENGTH, length)
            .set_u64(offset::CHECK_MAP_UPTR, user_va);
        sys::test_cmd(self.fd(), &mut cmd)
    }

    fn mock_check_refs(&self, user_va: u64, length: u64, refs: u32) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_MD_CHECK_REFS, 0);
        cmd.set_u64(offset::CHECK_REFS_LENGTH, length)
            .set_u64(offset::CHECK_REFS_UPTR, user_va)
            .set_u32(offset::CHECK_REFS_REFS, refs);
        sys::test_cmd(self.fd(), &mut cmd)
    }

    fn mock_dirty(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u64],
    ) -> Result<u64, Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_DIRTY, hwpt_id);
        cmd.set_u64(offset::DIRTY_IOVA, iova)
            .set_u64(offset::DIRTY_LENGTH, length)
            .set_u64(offset::DIRTY_PAGE_SIZE, page_size);
        sys::test_dirty(self.fd(), &mut cmd, bitmap)?;
        Ok(cmd.u64_at(offset::DIRTY_OUT_NR_DIRTY))
    }

    fn mock_check_iotlb(&self, hwpt_id: u32, iotlb_id: u32, expected: u32) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_MD_CHECK_IOTLB, hwpt_id);
        cmd.set_u32(offset::CHECK_IOTLB_ID, iotlb_id)
            .set_u32(offset::CHECK_IOTLB_IOTLB, expected);
        sys::test_cmd(self.fd(), &mut cmd)
    }

    fn mock_trigger_iopf(
        &self,
        dev_id: u32,
        pasid: u32,
        grpid: u32,
        perm: u32,
        addr: u64,
    ) -> Result<(), Errno> {
        let mut cmd = IommuTestCmd::new(sys::OP_TRIGGER_IOPF, 0);
        cmd.set_u32(offset::TRIGGER_IOPF_DEV_ID, dev_id)
            .set_u32(offset::TRIGGER_IOPF_PASID, pasid)
            .set_u32(offset::TRIGGER_IOPF_GRPID, grpid)
            .set_u32(offset::TRIGGER_IOPF_PERM, perm)
            .set_u64(offset::TRIGGER_IOPF_ADDR, addr);
        sys::test_cmd(self.fd(), &mut cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn mock_dirty_with_a_short_bitmap_is_efault_before_the_kernel() {
        let ctx = KernelIommufd::from_file(File::open("/dev/null").unwrap());
        // 128 half pages need two bytes; an empty slice has none.
        assert_eq!(
            ctx.mock_dirty(3, 1 << 24, 128 * 2048, 2048, &[]),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            ctx.mock_dirty(3, 1 << 24, 128 * 2048, 2048, &[0, 0]),
            Err(Errno::ENOTTY)
        );
    }
}
