//! HWPT ioctls of the emulated context (`hw_pagetable.c`, `device.c`, `fault.c`), each with
//! the kernel's checks in the kernel's order.

use std::fs::File;
use std::sync::Arc;

use crate::errno::Errno;
use crate::host::iommufd::uapi::*;
use crate::host::iommufd::{IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_TEST_INVALIDATE_FLAG_ALL};

use super::context::Context;
use super::fault::FaultQueue;
use super::features::Ioctl;
use super::hwpt::{HwptNested, Invalidation, NestedTable, Stage1};
use super::objects::Object;
use super::page_table::BitmapOut;
use super::profile::{IommuProfile, MOCK_NESTED_DOMAIN_IOTLB_NUM, check_data_len};
use super::{PAGE_SIZE, vtd};

/// `struct iommu_hwpt_invalidate_selftest`: `{u32 flags, u32 iotlb_id}`.
const SELFTEST_INVALIDATE_SIZE: usize = 8;
/// `struct iommu_hwpt_selftest`: `{u32 iotlb}`.
const SELFTEST_DATA_SIZE: usize = 4;
/// `IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX` (6.12 stable): the most entries one call may pass.
const INVALIDATE_ENTRY_NUM_MAX: u32 = 1 << 19;

impl Context {
    /// `IOMMU_HWPT_ALLOC`.
    pub(crate) fn hwpt_alloc(&mut self, req: &mut HwptAlloc, data: &[u8]) -> Result<(), Errno> {
        let f = self.features();
        f.ioctl(Ioctl::HwptAlloc)?;
        if !f.hwpt_alloc_data() && (req.data_type != 0 || !data.is_empty()) {
            return Err(Errno::E2BIG);
        }
        if !f.hwpt_fault_id() && (req.fault_id != 0 || req.reserved2 != 0) {
            return Err(Errno::E2BIG);
        }
        if req.reserved != 0 || (!f.hwpt_alloc_data() && req.flags != 0) {
            return Err(Errno::EOPNOTSUPP);
        }
        let none = req.data_type == IOMMU_HWPT_DATA_NONE;
        if none != data.is_empty() {
            return Err(Errno::EINVAL);
        }
        let profile = self.objects.device(req.dev_id)?.profile;
        let id = match self.objects.get(req.pt_id) {
            Some(Object::Ioas(_)) => self.alloc_paging_hwpt(req, &profile, !data.is_empty())?,
            Some(Object::HwptPaging(_)) => self.alloc_nested_hwpt(req, &profile, data)?,
            _ => return Err(Errno::EINVAL),
        };
        req.out_hwpt_id = id;
        Ok(())
    }

    fn alloc_paging_hwpt(
        &mut self,
        req: &HwptAlloc,
        profile: &IommuProfile,
        has_data: bool,
    ) -> Result<u32, Errno> {
        let mut valid = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
        if self.features().hwpt_alloc_pasid() {
            valid |= IOMMU_HWPT_ALLOC_PASID;
        }
        if req.flags & !valid != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if req.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0 && !profile.dirty_capable() {
            return Err(Errno::EOPNOTSUPP);
        }
        self.hwpt_paging_alloc(req.pt_id, req.dev_id, req.flags, has_data, false)
    }

    fn alloc_nested_hwpt(
        &mut self,
        req: &HwptAlloc,
        profile: &IommuProfile,
        data: &[u8],
    ) -> Result<u32, Errno> {
        let mut valid = IOMMU_HWPT_FAULT_ID_VALID;
        if self.features().hwpt_alloc_pasid() {
            valid |= IOMMU_HWPT_ALLOC_PASID;
        }
        if req.flags & !valid != 0 || data.is_empty() {
            return Err(Errno::EOPNOTSUPP);
        }
        let parent = self.objects.hwpt_paging(req.pt_id)?;
        let parent_domain = parent.domain.clone();
        if parent.auto_domain
            || !parent_domain.is_nest_parent()
            || parent_domain.driver() != profile.driver()
        {
            return Err(Errno::EINVAL);
        }
        let id = self.objects.reserve()?;
        let stage1 = profile
            .check_nested_type(req.data_type)
            .and_then(|()| parse_stage1(profile, data));
        let stage1 = match stage1 {
            Ok(s) => s,
            Err(e) => {
                self.objects.release(id);
                return Err(e);
            }
        };
        let fault = if req.flags & IOMMU_HWPT_FAULT_ID_VALID != 0 {
            match self.objects.fault(req.fault_id) {
                Ok(q) => Some(q.clone()),
                Err(e) => {
                    self.objects.release(id);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let fault_id = fault.as_ref().map(|_| req.fault_id);
        let table = NestedTable::new(
            profile.driver(),
            parent_domain,
            stage1,
            fault,
            self.iotlb.clone(),
            matches!(profile, IommuProfile::Vtd(v) if v.pages_1g),
        );
        self.objects.get_ref(req.pt_id);
        if let Some(f) = fault_id {
            self.objects.get_ref(f);
        }
        self.objects.finalize(
            id,
            Object::HwptNested(HwptNested {
                parent_id: req.pt_id,
                pasid_compat: req.flags & IOMMU_HWPT_ALLOC_PASID != 0,
                fault_id,
                table,
            }),
        );
        Ok(id)
    }

    /// `IOMMU_GET_HW_INFO`.
    pub(crate) fn get_hw_info(&mut self, req: &mut HwInfo, data: &mut [u8]) -> Result<(), Errno> {
        let f = self.features();
        f.ioctl(Ioctl::GetHwInfo)?;
        if !f.hw_info_capabilities() && req.out_capabilities != 0 {
            return Err(Errno::E2BIG);
        }
        let valid_flags = if f.hw_info_input_type() {
            IOMMU_HW_INFO_FLAG_INPUT_TYPE
        } else {
            0
        };
        if req.flags & !valid_flags != 0
            || req.reserved != [0; 3]
            || (!f.hw_info_pasid() && req.out_max_pasid_log2 != 0)
        {
            return Err(Errno::EOPNOTSUPP);
        }
        let dev = self.objects.device(req.dev_id)?;
        let (info, pasid_log2) = (dev.profile.hw_info(), dev.pasid_log2);
        if req.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE != 0
            && req.data_type != IOMMU_HW_INFO_TYPE_NONE
            && req.data_type != info.data_type
        {
            return Err(Errno::EOPNOTSUPP);
        }
        let copy = data.len().min(info.data.len());
        data[..copy].copy_from_slice(&info.data[..copy]);
        data[copy..].fill(0);
        req.data_len = info.data.len() as u32;
        req.data_type = info.data_type;
        if f.hw_info_capabilities() {
            req.out_capabilities = info.capabilities;
        }
        if f.hw_info_pasid() {
            req.out_max_pasid_log2 = pasid_log2;
        }
        Ok(())
    }

    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`: enabling first clears every dirty bit.
    pub(crate) fn hwpt_set_dirty_tracking(
        &mut self,
        req: &HwptSetDirtyTracking,
    ) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::HwptSetDirtyTracking)?;
        if req.flags & !IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let domain = self.objects.hwpt_paging(req.hwpt_id)?.domain.clone();
        if !domain.has_dirty_ops() {
            return Err(Errno::EOPNOTSUPP);
        }
        let enable = req.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0;
        if enable {
            domain.write_table().clear_dirty();
        }
        domain.set_tracking(enable);
        Ok(())
    }

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP`: ORs the dirty bits of the areas contiguous from `iova`.
    pub(crate) fn hwpt_get_dirty_bitmap(
        &mut self,
        req: &HwptGetDirtyBitmap,
        bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::HwptGetDirtyBitmap)?;
        if req.flags & !IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0 || req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let hwpt = self.objects.hwpt_paging(req.hwpt_id)?;
        let (ioas_id, domain) = (hwpt.ioas_id, hwpt.domain.clone());
        let ioas = self.objects.ioas(ioas_id)?;
        // 6.12 stable (measured on 6.12.117) refuses a zero length before its overflow check;
        // the first 6.12 releases answered EOVERFLOW (or, at IOVA 0, read the whole space).
        if req.length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = req
            .iova
            .checked_add(req.length.wrapping_sub(1))
            .ok_or(Errno::EOVERFLOW)?;
        let align_mask = ioas.iova_alignment() - 1;
        let end = last.wrapping_add(1);
        if req.iova & align_mask != 0 || end & align_mask != 0 {
            return Err(Errno::EINVAL);
        }
        if req.page_size == 0 {
            return Err(Errno::EINVAL);
        }
        let page_mask = req.page_size - 1;
        if req.iova & page_mask != 0 || end & page_mask != 0 {
            return Err(Errno::EINVAL);
        }
        if !domain.has_dirty_ops() {
            return Err(Errno::EOPNOTSUPP);
        }
        let pgshift = req.page_size.trailing_zeros();
        let needed_words = ((last - req.iova) >> pgshift) / 64 + 1;
        if (bitmap.len() as u64) < needed_words {
            return Err(Errno::EFAULT);
        }
        let mut out = BitmapOut {
            words: bitmap,
            base: req.iova,
            pgshift,
        };
        let no_clear = req.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0;
        ioas.read_dirty(&domain, req.iova, last, &mut out, no_clear);
        Ok(())
    }

    /// `IOMMU_HWPT_INVALIDATE`: `req.entry_num` becomes the number of entries handled, on
    /// error too.
    pub(crate) fn hwpt_invalidate(
        &mut self,
        req: &mut HwptInvalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::HwptInvalidate)?;
        let mut done = 0;
        let r = self.invalidate_entries(req, entries, &mut done);
        req.entry_num = done;
        r
    }

    fn invalidate_entries(
        &mut self,
        req: &HwptInvalidate,
        entries: &[u8],
        done: &mut u32,
    ) -> Result<(), Errno> {
        if req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // 6.12 stable bounds one call (measured on 6.12.117): entries over a page or more than
        // 2^19 of them are refused before the HWPT is looked up.
        if req.entry_num != 0
            && (entries.is_empty()
                || req.entry_len == 0
                || u64::from(req.entry_len) > PAGE_SIZE
                || req.entry_num > INVALIDATE_ENTRY_NUM_MAX)
        {
            return Err(Errno::EINVAL);
        }
        let n = self.objects.hwpt_nested(req.hwpt_id)?;
        let table = n.table.clone();
        let (wanted, size) = match table.stage1() {
            Stage1::Mock { .. } => (
                IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
                SELFTEST_INVALIDATE_SIZE,
            ),
            Stage1::Vtd(_) => (IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, HwptVtdS1Invalidate::SIZE),
        };
        if req.data_type != wanted {
            return Err(Errno::EINVAL);
        }
        let len = req.entry_len as usize;
        for i in 0..req.entry_num as usize {
            check_data_len(len, size, size)?;
            let entry = i
                .checked_mul(len)
                .and_then(|off| entries.get(off..off.checked_add(len)?))
                .ok_or(Errno::EFAULT)?;
            let inv = match table.stage1() {
                Stage1::Mock { .. } => parse_mock_invalidation(entry)?,
                Stage1::Vtd(_) => {
                    let inv = HwptVtdS1Invalidate::from_bytes(entry).ok_or(Errno::EFAULT)?;
                    vtd::check_s1_invalidation(&inv)?;
                    Invalidation::Vtd {
                        addr: inv.addr,
                        npages: inv.npages,
                        leaf: inv.flags & IOMMU_VTD_INV_FLAGS_LEAF != 0,
                    }
                }
            };
            table.invalidate(inv);
            *done += 1;
        }
        Ok(())
    }

    /// `IOMMU_FAULT_QUEUE_ALLOC` (6.11).
    pub(crate) fn fault_queue_alloc(&mut self, req: &mut FaultQueueAlloc) -> Result<File, Errno> {
        self.features().ioctl(Ioctl::FaultQueueAlloc)?;
        if req.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let id = self.objects.reserve()?;
        let (queue, file) = match FaultQueue::new() {
            Ok(pair) => pair,
            Err(e) => {
                self.objects.release(id);
                return Err(e);
            }
        };
        self.objects.finalize(id, Object::Fault(Arc::new(queue)));
        req.out_fault_id = id;
        Ok(file)
    }
}

/// Driver data of a nested allocation, after the type check: the mock's `{u32 iotlb}` or a
/// VT-d `iommu_hwpt_vtd_s1` (exact sizes, else `EINVAL`).
fn parse_stage1(profile: &IommuProfile, data: &[u8]) -> Result<Stage1, Errno> {
    match profile {
        IommuProfile::Mock { .. } => {
            check_data_len(data.len(), SELFTEST_DATA_SIZE, SELFTEST_DATA_SIZE)?;
            let iotlb = u32::from_le_bytes(data[..4].try_into().map_err(|_| Errno::EINVAL)?);
            Ok(Stage1::Mock { iotlb })
        }
        IommuProfile::Vtd(_) => {
            check_data_len(data.len(), HwptVtdS1::SIZE, HwptVtdS1::SIZE)?;
            Ok(Stage1::Vtd(
                HwptVtdS1::from_bytes(data).ok_or(Errno::EINVAL)?,
            ))
        }
    }
}

/// A mock invalidation entry: unknown flags -> `EOPNOTSUPP`, `iotlb_id` past the IOTLB ->
/// `EINVAL`.
fn parse_mock_invalidation(entry: &[u8]) -> Result<Invalidation, Errno> {
    let word = |i: usize| -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(
            entry
                .get(i..i + 4)
                .ok_or(Errno::EFAULT)?
                .try_into()
                .map_err(|_| Errno::EFAULT)?,
        ))
    };
    let (flags, iotlb_id) = (word(0)?, word(4)?);
    if flags & !IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if iotlb_id as usize >= MOCK_NESTED_DOMAIN_IOTLB_NUM {
        return Err(Errno::EINVAL);
    }
    Ok(Invalidation::Mock {
        id: (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL == 0).then_some(iotlb_id),
    })
}
