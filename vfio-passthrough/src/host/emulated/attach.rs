//! Binding devices and attaching them to HWPTs (`device.c`, `hw_pagetable.c`).
//!
//! Attaching to an IOAS finds or creates a compatible automatic paging HWPT
//! (`iommufd_device_auto_get_domain`): existing automatic HWPTs of the IOAS are tried in order,
//! `EINVAL` meaning "incompatible, try the next", and a new one is created otherwise; an
//! automatic HWPT dies with its last device. A device reserves its regions in the IOAS of the
//! paging HWPT it uses (directly, or as the parent of a nested one).

use std::sync::Arc;

use crate::errno::Errno;
use crate::host::iommufd::uapi::{
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID,
};

use super::context::Context;
use super::device::Device;
use super::domain::Domain;
use super::hwpt::{HwptPaging, Stage1};
use super::ioas::Owner;
use super::objects::Object;
use super::profile::IommuProfile;
use super::vtd;

/// Attach or replace, as `iommufd_device_auto_get_domain` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Attach,
    Replace,
}

impl Context {
    /// `iommufd_device_bind`: a new DEVICE object, referenced by its owner. `pasid_log2` is the
    /// device's usable PASID width (already capped by the IOMMU's).
    pub(crate) fn bind(&mut self, profile: IommuProfile, pasid_log2: u8) -> Result<u32, Errno> {
        let id = self.objects.reserve()?;
        self.objects.finalize(
            id,
            Object::Device(Device {
                profile,
                pasid_log2,
                hwpt: None,
                pasids: Default::default(),
            }),
        );
        self.objects.get_ref(id);
        Ok(id)
    }

    /// `iommufd_device_unbind`: drops the owner's reference and destroys the (detached) device.
    pub(crate) fn unbind(&mut self, dev_id: u32) {
        if self.objects.device(dev_id).is_err() {
            return;
        }
        self.objects.put_ref(dev_id);
        self.destroy_object(dev_id);
    }

    /// The paging HWPT whose IOAS a HWPT uses: itself, or a nested HWPT's parent.
    fn paging_of(&self, hwpt_id: u32) -> Option<u32> {
        match self.objects.get(hwpt_id)? {
            Object::HwptPaging(_) => Some(hwpt_id),
            Object::HwptNested(n) => Some(n.parent_id),
            _ => None,
        }
    }

    fn ioas_of(&self, hwpt_id: u32) -> Option<u32> {
        let paging = self.paging_of(hwpt_id)?;
        Some(self.objects.hwpt_paging(paging).ok()?.ioas_id)
    }

    /// Whether HWPT `hwpt_id` was allocated with `IOMMU_HWPT_ALLOC_PASID`.
    fn pasid_compat(&self, hwpt_id: u32) -> bool {
        match self.objects.get(hwpt_id) {
            Some(Object::HwptPaging(h)) => h.pasid_compat,
            Some(Object::HwptNested(n)) => n.pasid_compat,
            _ => false,
        }
    }

    /// `iommufd_hwpt_pasid_compat` (6.15), then the driver's `attach_dev` checks: the RID may
    /// only use a HWPT without `IOMMU_HWPT_ALLOC_PASID` while no PASID is attached; a PASID
    /// only a HWPT with it, and only while the RID's HWPT (if any) has it too. `EINVAL`.
    fn attach_checks(&self, dev_id: u32, hwpt_id: u32, pasid: Option<u32>) -> Result<(), Errno> {
        let dev = self.objects.device(dev_id)?;
        let compat = self.pasid_compat(hwpt_id);
        let refused = match pasid {
            None => !compat && !dev.pasids.is_empty(),
            Some(_) => !compat || dev.hwpt.is_some_and(|rid| !self.pasid_compat(rid)),
        };
        if refused {
            return Err(Errno::EINVAL);
        }
        self.driver_attach_check(dev_id, hwpt_id)
    }

    /// Drops the software IOMMU's cached stage-1 translations of HWPT `hwpt_id` (a device or
    /// PASID is leaving it), as the driver flushes the caches of a PASID entry it tears down.
    fn flush_stage1_cache(&self, hwpt_id: u32) {
        if let Ok(n) = self.objects.hwpt_nested(hwpt_id) {
            n.table.flush_iotlb();
        }
    }

    /// The driver's `attach_dev` checks for `dev_id` on HWPT `hwpt_id` (`EINVAL`).
    fn driver_attach_check(&self, dev_id: u32, hwpt_id: u32) -> Result<(), Errno> {
        let profile = self.objects.device(dev_id)?.profile;
        match self.objects.get(hwpt_id) {
            Some(Object::HwptPaging(h)) => {
                if h.domain.driver() != profile.driver() {
                    return Err(Errno::EINVAL);
                }
                profile.check_attach(h.domain.has_dirty_ops())
            }
            Some(Object::HwptNested(n)) => {
                if n.table.driver() != profile.driver() {
                    return Err(Errno::EINVAL);
                }
                match (profile, n.table.stage1()) {
                    (IommuProfile::Vtd(iommu), Stage1::Vtd(s1)) => {
                        vtd::check_s1_attach(&iommu, &s1)
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `iommufd_hw_pagetable_attach` for a detached device.
    fn do_attach(&mut self, dev_id: u32, hwpt_id: u32) -> Result<(), Errno> {
        let dev = self.objects.device(dev_id)?;
        if dev.hwpt.is_some_and(|h| h != hwpt_id) {
            return Err(Errno::EINVAL);
        }
        let regions = dev.profile.reserved_regions();
        let ioas_id = self.ioas_of(hwpt_id);
        if let Some(ioas_id) = ioas_id {
            self.objects
                .ioas_mut(ioas_id)?
                .enforce_reserved(&regions, Owner::Device(dev_id))?;
        }
        if let Err(e) = self.attach_checks(dev_id, hwpt_id, None) {
            if let Some(ioas_id) = ioas_id
                && let Ok(ioas) = self.objects.ioas_mut(ioas_id)
            {
                ioas.remove_reserved(Owner::Device(dev_id));
            }
            return Err(e);
        }
        self.objects.device_mut(dev_id)?.hwpt = Some(hwpt_id);
        self.objects.get_ref(hwpt_id);
        Ok(())
    }

    /// `iommufd_device_do_replace`; returns the HWPT replaced (the caller puts it), or `None`
    /// when `hwpt_id` was already the device's.
    fn do_replace(&mut self, dev_id: u32, hwpt_id: u32) -> Result<Option<u32>, Errno> {
        let dev = self.objects.device(dev_id)?;
        let Some(old) = dev.hwpt else {
            return Err(Errno::EINVAL);
        };
        if old == hwpt_id {
            return Ok(None);
        }
        let regions = dev.profile.reserved_regions();
        let new_ioas = self.ioas_of(hwpt_id);
        let old_ioas = self.ioas_of(old);
        let moving = new_ioas.is_some() && new_ioas != old_ioas;
        if moving && let Some(ioas_id) = new_ioas {
            self.objects
                .ioas_mut(ioas_id)?
                .enforce_reserved(&regions, Owner::Device(dev_id))?;
        }
        if let Err(e) = self.attach_checks(dev_id, hwpt_id, None) {
            if moving
                && let Some(ioas_id) = new_ioas
                && let Ok(ioas) = self.objects.ioas_mut(ioas_id)
            {
                ioas.remove_reserved(Owner::Device(dev_id));
            }
            return Err(e);
        }
        self.auto_respond(old, dev_id);
        self.flush_stage1_cache(old);
        if let Some(ioas_id) = old_ioas
            && new_ioas != old_ioas
            && let Ok(ioas) = self.objects.ioas_mut(ioas_id)
        {
            ioas.remove_reserved(Owner::Device(dev_id));
        }
        self.objects.device_mut(dev_id)?.hwpt = Some(hwpt_id);
        self.objects.get_ref(hwpt_id);
        Ok(Some(old))
    }

    /// Answers the pending faults of `dev_id` on `hwpt_id`'s fault queue.
    fn auto_respond(&self, hwpt_id: u32, dev_id: u32) {
        if let Ok(n) = self.objects.hwpt_nested(hwpt_id)
            && let Some(q) = n.table.fault_queue()
        {
            q.auto_respond(dev_id);
        }
    }

    /// `iommufd_hw_pagetable_put`: drops a device's reference, destroying an automatic
    /// HWPT that nothing uses any more.
    fn hwpt_put(&mut self, hwpt_id: u32) {
        self.objects.put_ref(hwpt_id);
        let auto = self
            .objects
            .hwpt_paging(hwpt_id)
            .is_ok_and(|h| h.auto_domain);
        if auto && self.objects.users(hwpt_id) == 0 {
            self.destroy_object(hwpt_id);
        }
    }

    /// `iommufd_hwpt_paging_alloc`: a paging HWPT on `ioas_id` for `dev_id`'s driver; with
    /// `immediate_attach` the device is attached before the domain is linked. `flags` have
    /// passed the core's checks.
    pub(crate) fn hwpt_paging_alloc(
        &mut self,
        ioas_id: u32,
        dev_id: u32,
        flags: u32,
        has_data: bool,
        immediate_attach: bool,
    ) -> Result<u32, Errno> {
        let profile = self.objects.device(dev_id)?.profile;
        let id = self.objects.reserve()?;
        let pasid_compat = flags & IOMMU_HWPT_ALLOC_PASID != 0;
        let flags = flags & !IOMMU_HWPT_ALLOC_PASID;
        if let Err(e) = profile.check_paging_alloc(flags, has_data) {
            self.objects.release(id);
            return Err(e);
        }
        let domain = Domain::new(
            profile.driver(),
            profile.geometry(),
            flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0,
            flags & IOMMU_HWPT_ALLOC_NEST_PARENT != 0,
        );
        self.objects.get_ref(ioas_id);
        self.objects.finalize(
            id,
            Object::HwptPaging(HwptPaging {
                ioas_id,
                domain: domain.clone(),
                auto_domain: false,
                pasid_compat,
            }),
        );
        if immediate_attach && let Err(e) = self.do_attach(dev_id, id) {
            self.abort_paging(id);
            return Err(e);
        }
        let linked = self
            .objects
            .ioas_mut(ioas_id)
            .and_then(|ioas| ioas.add_domain(id, domain));
        if let Err(e) = linked {
            if immediate_attach {
                self.detach_raw(dev_id);
            }
            self.abort_paging(id);
            return Err(e);
        }
        if let Ok(ioas) = self.objects.ioas_mut(ioas_id) {
            ioas.hwpt_list.push(id);
        }
        Ok(id)
    }

    /// Undoes a paging HWPT that was not linked or attached.
    fn abort_paging(&mut self, id: u32) {
        if let Some(Object::HwptPaging(h)) = self.objects.release(id) {
            self.objects.put_ref(h.ioas_id);
        }
    }

    /// Detaches the RID of `dev_id` without putting the HWPT; returns it.
    fn detach_raw(&mut self, dev_id: u32) -> Option<u32> {
        let hwpt = self.objects.device_mut(dev_id).ok()?.hwpt.take()?;
        self.auto_respond(hwpt, dev_id);
        self.flush_stage1_cache(hwpt);
        if let Some(ioas_id) = self.ioas_of(hwpt)
            && let Ok(ioas) = self.objects.ioas_mut(ioas_id)
        {
            ioas.remove_reserved(Owner::Device(dev_id));
        }
        self.objects.put_ref(hwpt);
        Some(hwpt)
    }

    /// `iommufd_device_auto_get_domain`.
    fn auto_get_domain(&mut self, dev_id: u32, ioas_id: u32, mode: Mode) -> Result<u32, Errno> {
        let candidates: Vec<u32> = self
            .objects
            .ioas(ioas_id)?
            .hwpt_list
            .iter()
            .copied()
            .filter(|&h| self.objects.hwpt_paging(h).is_ok_and(|p| p.auto_domain))
            .collect();
        for hwpt in candidates {
            let r = match mode {
                Mode::Attach => self.do_attach(dev_id, hwpt).map(|()| None),
                Mode::Replace => self.do_replace(dev_id, hwpt),
            };
            match r {
                Ok(old) => {
                    if let Some(old) = old {
                        self.hwpt_put(old);
                    }
                    return Ok(hwpt);
                }
                Err(e) if e == Errno::EINVAL => continue,
                Err(e) => return Err(e),
            }
        }
        let hwpt = self.hwpt_paging_alloc(ioas_id, dev_id, 0, false, mode == Mode::Attach)?;
        if mode == Mode::Replace {
            match self.do_replace(dev_id, hwpt) {
                Ok(old) => {
                    self.mark_auto(hwpt);
                    if let Some(old) = old {
                        self.hwpt_put(old);
                    }
                    return Ok(hwpt);
                }
                Err(e) => {
                    self.destroy_object(hwpt);
                    return Err(e);
                }
            }
        }
        self.mark_auto(hwpt);
        Ok(hwpt)
    }

    fn mark_auto(&mut self, hwpt: u32) {
        if let Ok(h) = self.objects.hwpt_paging_mut(hwpt) {
            h.auto_domain = true;
        }
    }

    /// `iommufd_device_change_pt`: the target must exist (`ENOENT`) and be an IOAS or a HWPT
    /// (`EINVAL`).
    fn change_pt(&mut self, dev_id: u32, pt_id: u32, mode: Mode) -> Result<u32, Errno> {
        match self.objects.get(pt_id).ok_or(Errno::ENOENT)? {
            Object::HwptPaging(_) | Object::HwptNested(_) => match mode {
                Mode::Attach => {
                    self.do_attach(dev_id, pt_id)?;
                    Ok(pt_id)
                }
                Mode::Replace => {
                    if let Some(old) = self.do_replace(dev_id, pt_id)? {
                        self.hwpt_put(old);
                    }
                    Ok(pt_id)
                }
            },
            Object::Ioas(_) => self.auto_get_domain(dev_id, pt_id, mode),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `iommufd_device_attach`: returns the HWPT now used.
    pub(crate) fn device_attach(&mut self, dev_id: u32, pt_id: u32) -> Result<u32, Errno> {
        self.change_pt(dev_id, pt_id, Mode::Attach)
    }

    /// `iommufd_device_replace`: `EINVAL` unless attached.
    pub(crate) fn device_replace(&mut self, dev_id: u32, pt_id: u32) -> Result<u32, Errno> {
        self.change_pt(dev_id, pt_id, Mode::Replace)
    }

    /// `iommufd_device_detach`.
    pub(crate) fn device_detach(&mut self, dev_id: u32) {
        if let Some(hwpt) = self.detach_raw(dev_id) {
            // detach_raw dropped the reference; destroy an automatic HWPT left unused.
            let auto = self.objects.hwpt_paging(hwpt).is_ok_and(|h| h.auto_domain);
            if auto && self.objects.users(hwpt) == 0 {
                self.destroy_object(hwpt);
            }
        }
    }

    /// Attaches PASID `pasid` of `dev_id` to HWPT `hwpt_id`, replacing what the PASID used
    /// (`VFIO_DEVICE_ATTACH_IOMMUFD_PT` with `VFIO_DEVICE_ATTACH_PASID`, 6.15; older kernels
    /// refuse the flag with `EINVAL`). `ENOENT` for an unknown `hwpt_id`; `EINVAL` for an IOAS
    /// (the automatic domain the kernel would make is never PASID-compatible) or another
    /// object, for a HWPT or RID HWPT without `IOMMU_HWPT_ALLOC_PASID`, for a PASID the device
    /// does not have (0 is the RID's; at most `max_pasid_log2` bits), and for the driver's
    /// attach checks.
    pub(crate) fn pasid_attach(
        &mut self,
        dev_id: u32,
        pasid: u32,
        hwpt_id: u32,
    ) -> Result<u32, Errno> {
        if !self.features().hwpt_alloc_pasid() {
            return Err(Errno::EINVAL);
        }
        let dev = self.objects.device(dev_id)?;
        let width = dev.pasid_log2;
        let old = dev.pasids.get(&pasid).copied();
        match self.objects.get(hwpt_id).ok_or(Errno::ENOENT)? {
            Object::HwptPaging(_) | Object::HwptNested(_) => {}
            _ => return Err(Errno::EINVAL),
        }
        if old == Some(hwpt_id) {
            return Ok(hwpt_id);
        }
        self.attach_checks(dev_id, hwpt_id, Some(pasid))?;
        if width == 0 || pasid == 0 || u64::from(pasid) >= 1u64 << width {
            return Err(Errno::EINVAL);
        }
        self.objects
            .device_mut(dev_id)?
            .pasids
            .insert(pasid, hwpt_id);
        self.objects.get_ref(hwpt_id);
        if let Some(old) = old {
            self.auto_respond(old, dev_id);
            self.flush_stage1_cache(old);
            self.hwpt_put(old);
        }
        Ok(hwpt_id)
    }

    /// Detaches PASID `pasid` of `dev_id`.
    pub(crate) fn pasid_detach(&mut self, dev_id: u32, pasid: u32) {
        let old = self
            .objects
            .device_mut(dev_id)
            .ok()
            .and_then(|d| d.pasids.remove(&pasid));
        if let Some(old) = old {
            self.auto_respond(old, dev_id);
            self.flush_stage1_cache(old);
            self.hwpt_put(old);
        }
    }

    /// Detaches the RID and every PASID of `dev_id`.
    pub(crate) fn detach_all(&mut self, dev_id: u32) {
        let pasids: Vec<u32> = self
            .objects
            .device(dev_id)
            .map(|d| d.pasids.keys().copied().collect())
            .unwrap_or_default();
        for p in pasids {
            self.pasid_detach(dev_id, p);
        }
        self.device_detach(dev_id);
    }

    /// The domain of paging HWPT `id`.
    pub(crate) fn paging_domain(&self, id: u32) -> Result<Arc<Domain>, Errno> {
        Ok(self.objects.hwpt_paging(id)?.domain.clone())
    }
}
