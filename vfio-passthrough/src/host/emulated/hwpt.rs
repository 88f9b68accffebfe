//! HWPT objects: paging HWPTs (a [`Domain`] linked to an IOAS) and nested HWPTs (a user
//! stage-1 table over a `NEST_PARENT` paging HWPT, [`NestedTable`]).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::host::iommufd::IOMMU_TEST_IOTLB_DEFAULT;
use crate::host::iommufd::uapi::HwptVtdS1;
use viommu::vtd::{
    Access, FirstStageConfig, FirstStageConfigError, FirstStageFault, FirstStageFlags, TableMemory,
    Translation,
};

use super::domain::Domain;
use super::fault::FaultQueue;
use super::iotlb_glue::NestedIotlb;
use super::profile::{Driver, MOCK_NESTED_DOMAIN_IOTLB_NUM};
use super::vtd::VTD_ADDRESS_WIDTH;

/// A paging HWPT (`IOMMUFD_OBJ_HWPT_PAGING`).
#[derive(Debug)]
pub(crate) struct HwptPaging {
    /// The IOAS it is linked to (holds a reference on it).
    pub(crate) ioas_id: u32,
    /// The domain.
    pub(crate) domain: Arc<Domain>,
    /// Created by attaching a device to the IOAS; destroyed with its last device.
    pub(crate) auto_domain: bool,
    /// Allocated with `IOMMU_HWPT_ALLOC_PASID`: PASIDs may attach to it (6.15).
    pub(crate) pasid_compat: bool,
}

/// The user's stage-1 configuration of a nested HWPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage1 {
    /// `IOMMU_HWPT_DATA_SELFTEST`: the mock's `iotlb` seed.
    Mock {
        /// Initial value of each mock IOTLB entry.
        iotlb: u32,
    },
    /// `IOMMU_HWPT_DATA_VTD_S1`: the guest's first-stage table.
    Vtd(HwptVtdS1),
}

/// One stage-1 invalidation a nested HWPT received (`IOMMU_HWPT_INVALIDATE`), for the software
/// IOMMU to drop what it cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// Mock: entry `id` of the mock IOTLB, or all of them.
    Mock {
        /// The entry, or `None` for all.
        id: Option<u32>,
    },
    /// VT-d: `npages` 4 KiB pages from `addr` (`u64::MAX` pages: everything); `leaf` when only
    /// leaf entries changed.
    Vtd {
        /// First address.
        addr: u64,
        /// Pages.
        npages: u64,
        /// `IOMMU_VTD_INV_FLAGS_LEAF`.
        leaf: bool,
    },
}

/// Listener for invalidations of one nested table.
pub type InvalidationListener = Arc<dyn Fn(Invalidation) + Send + Sync>;

struct NestedState {
    mock_iotlb: [u32; MOCK_NESTED_DOMAIN_IOTLB_NUM],
    listener: Option<InvalidationListener>,
}

/// A nested (user-managed stage 1) translation: the hook the software IOMMU walks.
///
/// A device attached to a nested HWPT translates first through the user's stage 1
/// ([`NestedTable::stage1`], e.g. a VT-d first-stage table at a guest physical address), then
/// through [`NestedTable::parent`] (stage 2, whose table maps guest physical addresses).
/// Stage-1 invalidations reach the listener set with [`NestedTable::set_listener`]; faults go to
/// [`NestedTable::fault_queue`] when the HWPT was allocated with one.
///
/// Stage-1 translations are cached in the context's IOTLB under a tag of the table's own,
/// dropped by the table's VT-d invalidations (before any listener hears of them), by
/// a device or PASID leaving the HWPT, and the table going away.
pub struct NestedTable {
    driver: Driver,
    parent: Arc<Domain>,
    stage1: Stage1,
    fault: Option<Arc<FaultQueue>>,
    state: Mutex<NestedState>,
    iotlb: Arc<NestedIotlb>,
    tag: u64,
    one_gib_pages: bool,
}

impl fmt::Debug for NestedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NestedTable")
            .field("driver", &self.driver)
            .field("stage1", &self.stage1)
            .field("fault", &self.fault.is_some())
            .finish_non_exhaustive()
    }
}

impl NestedTable {
    pub(crate) fn new(
        driver: Driver,
        parent: Arc<Domain>,
        stage1: Stage1,
        fault: Option<Arc<FaultQueue>>,
        iotlb: Arc<NestedIotlb>,
        one_gib_pages: bool,
    ) -> Arc<Self> {
        let seed = match stage1 {
            Stage1::Mock { iotlb } => iotlb,
            Stage1::Vtd(_) => IOMMU_TEST_IOTLB_DEFAULT,
        };
        Arc::new(NestedTable {
            driver,
            parent,
            stage1,
            fault,
            state: Mutex::new(NestedState {
                mock_iotlb: [seed; MOCK_NESTED_DOMAIN_IOTLB_NUM],
                listener: None,
            }),
            iotlb,
            tag: NestedIotlb::new_tag(),
            one_gib_pages,
        })
    }

    fn state(&self) -> MutexGuard<'_, NestedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The stage-2 domain (the `NEST_PARENT` paging HWPT's).
    pub fn parent(&self) -> &Arc<Domain> {
        &self.parent
    }

    /// The user's stage-1 configuration.
    pub fn stage1(&self) -> Stage1 {
        self.stage1
    }

    /// The fault queue page requests go to, if any.
    pub fn fault_queue(&self) -> Option<&Arc<FaultQueue>> {
        self.fault.as_ref()
    }

    /// Registers the function told of every stage-1 invalidation (replacing any earlier one).
    pub fn set_listener(&self, listener: InvalidationListener) {
        self.state().listener = Some(listener);
    }

    /// Entry `id` of the mock IOTLB.
    pub(crate) fn mock_iotlb(&self, id: usize) -> Option<u32> {
        self.state().mock_iotlb.get(id).copied()
    }

    /// The VT-d first-stage configuration the walker runs under (the IOMMU's 48-bit address
    /// width, 1 GiB leaves if it has them; flag bits the driver ignores are ignored), an error
    /// for a table that cannot be walked, `None` for the mock driver's table-less stage 1.
    pub(crate) fn first_stage_config(
        &self,
    ) -> Option<Result<FirstStageConfig, FirstStageConfigError>> {
        let Stage1::Vtd(s1) = self.stage1 else {
            return None;
        };
        let known = FirstStageFlags::SRE | FirstStageFlags::EAFE | FirstStageFlags::WPE;
        Some(
            FirstStageConfig::from_hwpt_vtd_s1(
                s1.flags & known,
                s1.pgtbl_addr,
                s1.addr_width,
                VTD_ADDRESS_WIDTH as u8,
            )
            .map(|c| c.with_one_gib_pages(self.one_gib_pages)),
        )
    }

    /// Translates `iova` for `access` through the table's stage 1 (VT-d: `config`, walked
    /// through `mem`), from the IOTLB when it holds the translation.
    pub(crate) fn translate_stage1<M: TableMemory + ?Sized>(
        &self,
        config: &FirstStageConfig,
        iova: u64,
        access: Access,
        mem: &mut M,
    ) -> Result<Translation, FirstStageFault> {
        self.iotlb.translate(self.tag, config, iova, access, mem)
    }

    /// Drops every cached translation of the table (a device or PASID left it).
    pub(crate) fn flush_iotlb(&self) {
        self.iotlb.flush(self.tag);
    }

    /// Applies one validated invalidation and tells the listener.
    pub(crate) fn invalidate(&self, inv: Invalidation) {
        if let Invalidation::Vtd { addr, npages, leaf } = inv {
            self.iotlb.invalidate_range(self.tag, addr, npages, leaf);
        }
        let listener = {
            let mut st = self.state();
            if let Invalidation::Mock { id } = inv {
                match id {
                    None => st.mock_iotlb = [0; MOCK_NESTED_DOMAIN_IOTLB_NUM],
                    Some(i) => {
                        if let Some(e) = st.mock_iotlb.get_mut(i as usize) {
                            *e = 0;
                        }
                    }
                }
            }
            st.listener.clone()
        };
        if let Some(l) = listener {
            l(inv);
        }
    }
}

impl Drop for NestedTable {
    fn drop(&mut self) {
        self.iotlb.flush(self.tag);
    }
}

/// A nested HWPT (`IOMMUFD_OBJ_HWPT_NESTED`).
#[derive(Debug)]
pub(crate) struct HwptNested {
    /// The parent paging HWPT (holds a reference on it).
    pub(crate) parent_id: u32,
    /// Allocated with `IOMMU_HWPT_ALLOC_PASID`: PASIDs may attach to it (6.15).
    pub(crate) pasid_compat: bool,
    /// The fault object (holds a reference on it), with `IOMMU_HWPT_FAULT_ID_VALID`.
    pub(crate) fault_id: Option<u32>,
    /// The translation.
    pub(crate) table: Arc<NestedTable>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::profile::IommuProfile;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn mock_invalidations_clear_iotlb_entries_and_reach_the_listener() {
        let parent = Domain::new(Driver::Mock, IommuProfile::MOCK.geometry(), false, true);
        let t = NestedTable::new(
            Driver::Mock,
            parent,
            Stage1::Mock { iotlb: 7 },
            None,
            NestedIotlb::new(),
            false,
        );
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        t.set_listener(Arc::new(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(t.mock_iotlb(1), Some(7));
        t.invalidate(Invalidation::Mock { id: Some(1) });
        assert_eq!(t.mock_iotlb(1), Some(0));
        assert_eq!(t.mock_iotlb(2), Some(7));
        t.invalidate(Invalidation::Mock { id: None });
        assert_eq!(t.mock_iotlb(3), Some(0));
        assert_eq!(t.mock_iotlb(4), None);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }
}
