//! [`IommufdSelftest`] for the emulated host: the kernel's `IOMMU_TEST_CMD` ops (`selftest.c`)
//! with their checks in the kernel's order.
//!
//! Two behaviours of 6.12 are kept on purpose: `IOMMU_TEST_OP_DIRTY` indexes the mock domain by
//! `iova / page_size` (right only for `page_size == MOCK_IO_PAGE_SIZE`, as the selftests use it)
//! and counts every mapped entry it marks, dirty before or not; `MD_CHECK_MAP` and
//! `MD_CHECK_REFS` compare page identities (file and offset for shared memory, address for
//! private memory) where the kernel compares PFNs.

use crate::errno::Errno;
use crate::host::iommufd::{
    IommufdSelftest, MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY, MockDomain,
};

use super::context::{Context, EmulatedIommufd};
use super::device::Attachment;
use super::fault::PageRequest;
use super::features::TestOp;
use super::ioas::Owner;
use super::objects::{Object, SelftestObj};
use super::profile::{Driver, IommuProfile, MOCK_IO_PAGE_SIZE};
use super::{PAGE_SHIFT, PAGE_SIZE};

/// `SZ_16M * BITS_PER_BYTE`: the most pages one `IOMMU_TEST_OP_DIRTY` may mark (6.12 stable).
const MOCK_DIRTY_MAX_BITS: u64 = (16 << 20) * 8;

impl Context {
    fn mock_domain(&mut self, req: &mut MockDomain) -> Result<(), Errno> {
        let op = if req.dev_flags != 0 {
            TestOp::MockDomainFlags
        } else {
            TestOp::MockDomain
        };
        self.features().test_op(op)?;
        let sobj = self.objects.reserve()?;
        if req.dev_flags & !(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA) != 0 {
            self.objects.release(sobj);
            return Err(Errno::EINVAL);
        }
        let profile = IommuProfile::Mock {
            flags: req.dev_flags,
        };
        let dev_id = match self.bind(profile, profile.max_pasid_log2()) {
            Ok(id) => id,
            Err(e) => {
                self.objects.release(sobj);
                return Err(e);
            }
        };
        match self.device_attach(dev_id, req.pt_id) {
            Ok(hwpt) => {
                self.objects
                    .finalize(sobj, Object::Selftest(SelftestObj { dev_id }));
                req.out_stdev_id = sobj;
                req.out_hwpt_id = hwpt;
                req.out_idev_id = dev_id;
                Ok(())
            }
            Err(e) => {
                self.unbind(dev_id);
                self.objects.release(sobj);
                Err(e)
            }
        }
    }

    fn mock_domain_replace(&mut self, stdev_id: u32, pt_id: u32) -> Result<u32, Errno> {
        self.features().test_op(TestOp::MockDomainReplace)?;
        let dev_id = self.objects.selftest(stdev_id)?.dev_id;
        self.device_replace(dev_id, pt_id)
    }

    fn mock_add_reserved(&mut self, ioas_id: u32, start: u64, length: u64) -> Result<(), Errno> {
        self.features().test_op(TestOp::AddReserved)?;
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.objects
            .ioas_mut(ioas_id)?
            .reserve(start, last, Owner::Test)
    }

    /// `get_md_pagetable`: a paging HWPT (`ENOENT`) of the mock driver (`EINVAL`).
    fn mock_paging(&self, hwpt_id: u32) -> Result<std::sync::Arc<super::domain::Domain>, Errno> {
        let domain = self.paging_domain(hwpt_id)?;
        if domain.driver() != Driver::Mock {
            return Err(Errno::EINVAL);
        }
        Ok(domain)
    }

    fn mock_check_map(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        user_va: u64,
    ) -> Result<(), Errno> {
        self.features().test_op(TestOp::MdCheckMap)?;
        if iova % MOCK_IO_PAGE_SIZE != 0
            || length % MOCK_IO_PAGE_SIZE != 0
            || user_va % MOCK_IO_PAGE_SIZE != 0
            || user_va.checked_add(length).is_none()
        {
            return Err(Errno::EINVAL);
        }
        let domain = self.mock_paging(hwpt_id)?;
        let vmas = self.host.vmas();
        let table = domain.read_table();
        let mut done = 0;
        while done < length {
            let uptr = user_va + done;
            let want = vmas.identity(uptr & !(PAGE_SIZE - 1))?;
            let want_offset = want.offset + (uptr % PAGE_SIZE);
            let found = iova
                .checked_add(done)
                .and_then(|i| table.lookup(i).map(|(start, m)| (i, start, m)))
                .and_then(|(i, start, m)| m.pages.pinned_identity(m.offset + (i - start)));
            match found {
                Some(id) if id.source == want.source && id.offset == want_offset => {}
                _ => return Err(Errno::EINVAL),
            }
            done += MOCK_IO_PAGE_SIZE;
        }
        Ok(())
    }

    fn mock_check_refs(&self, user_va: u64, length: u64, refs: u32) -> Result<(), Errno> {
        self.features().test_op(TestOp::MdCheckRefs)?;
        if length % PAGE_SIZE != 0
            || user_va % PAGE_SIZE != 0
            || user_va.checked_add(length).is_none()
        {
            return Err(Errno::EINVAL);
        }
        for page in 0..length >> PAGE_SHIFT {
            if self.host.pin_count(user_va + (page << PAGE_SHIFT))? != refs {
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }

    fn mock_dirty(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u64],
    ) -> Result<u64, Errno> {
        self.features().test_op(TestOp::Dirty)?;
        if page_size == 0 || length == 0 || iova % page_size != 0 || length % page_size != 0 {
            return Err(Errno::EINVAL);
        }
        let max = length / page_size;
        // 6.12 stable (measured on 6.12.117): at most a 16 MiB bitmap, checked before the HWPT.
        if max > MOCK_DIRTY_MAX_BITS {
            return Err(Errno::EOVERFLOW);
        }
        let domain = self.mock_paging(hwpt_id)?;
        if !domain.dirty_tracking() {
            return Err(Errno::EINVAL);
        }
        if (bitmap.len() as u64) < max.div_ceil(64) {
            return Err(Errno::EFAULT);
        }
        let mut count = 0;
        for i in 0..max {
            if (bitmap[(i / 64) as usize] >> (i % 64)) & 1 == 0 {
                continue;
            }
            // Unsigned long arithmetic, as in the kernel: it wraps.
            let cur = iova.wrapping_add(i.wrapping_mul(page_size));
            if domain.mock_set_dirty(cur / page_size) {
                count += 1;
            }
        }
        Ok(count)
    }

    fn mock_check_iotlb(&self, hwpt_id: u32, iotlb_id: u32, expected: u32) -> Result<(), Errno> {
        self.features().test_op(TestOp::MdCheckIotlb)?;
        let table = self.objects.hwpt_nested(hwpt_id)?.table.clone();
        if table.driver() != Driver::Mock {
            return Err(Errno::EINVAL);
        }
        match table.mock_iotlb(iotlb_id as usize) {
            Some(v) if v == expected => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn mock_trigger_iopf(
        &self,
        dev_id: u32,
        pasid: u32,
        grpid: u32,
        perm: u32,
        addr: u64,
    ) -> Result<(), Errno> {
        self.features().test_op(TestOp::TriggerIopf)?;
        // 6.12 stable (6.12.117) raises faults only from the selftest's own mock devices.
        if !matches!(
            self.objects.device(dev_id)?.profile,
            IommuProfile::Mock { .. }
        ) {
            return Err(Errno::EINVAL);
        }
        let pasid = (pasid != 0).then_some(pasid);
        // find_fault_handler: the PASID's attachment, else (user-managed PASID tables) the
        // nested HWPT of the RID; the RID's attachment for requests without PASID.
        let mut target = self.attachment(dev_id, pasid)?;
        if pasid.is_some() && !matches!(target, Attachment::Nested(_)) {
            target = match self.attachment(dev_id, None)? {
                n @ Attachment::Nested(_) => n,
                _ => target,
            };
        }
        if let Attachment::Nested(table) = target
            && let Some(queue) = table.fault_queue()
        {
            queue.report(&[PageRequest {
                dev_id,
                pasid,
                grpid,
                perm,
                addr,
            }]);
        }
        Ok(())
    }
}

impl IommufdSelftest for EmulatedIommufd {
    fn mock_domain(&self, req: &mut MockDomain) -> Result<(), Errno> {
        self.lock().mock_domain(req)
    }

    fn mock_domain_replace(&self, stdev_id: u32, pt_id: u32) -> Result<u32, Errno> {
        self.lock().mock_domain_replace(stdev_id, pt_id)
    }

    fn mock_add_reserved(&self, ioas_id: u32, start: u64, length: u64) -> Result<(), Errno> {
        self.lock().mock_add_reserved(ioas_id, start, length)
    }

    fn mock_check_map(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        user_va: u64,
    ) -> Result<(), Errno> {
        self.lock().mock_check_map(hwpt_id, iova, length, user_va)
    }

    fn mock_check_refs(&self, user_va: u64, length: u64, refs: u32) -> Result<(), Errno> {
        self.lock().mock_check_refs(user_va, length, refs)
    }

    fn mock_dirty(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u64],
    ) -> Result<u64, Errno> {
        self.lock()
            .mock_dirty(hwpt_id, iova, length, page_size, bitmap)
    }

    fn mock_check_iotlb(&self, hwpt_id: u32, iotlb_id: u32, expected: u32) -> Result<(), Errno> {
        self.lock().mock_check_iotlb(hwpt_id, iotlb_id, expected)
    }

    fn mock_trigger_iopf(
        &self,
        dev_id: u32,
        pasid: u32,
        grpid: u32,
        perm: u32,
        addr: u64,
    ) -> Result<(), Errno> {
        self.lock()
            .mock_trigger_iopf(dev_id, pasid, grpid, perm, addr)
    }
}
