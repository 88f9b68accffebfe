//! [`EmulatedIommufd`]: one open iommufd context of the emulated host.
//!
//! All state of a context sits behind one mutex ([`Context`]), taken by each call as the
//! kernel's handlers take their object and IOAS locks; domains have their own lock so that
//! device translations do not wait for it (lock order: context, domain table, pages, host).
//! Handlers live in `ctx_ioas`, `ctx_hwpt`, `attach` and `selftest`; this module holds the
//! context, destruction, teardown and introspection.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;

use super::domain::Domain;
use super::features::Features;
use super::host::EmulatedHost;
use super::hwpt::NestedTable;
use super::iotlb_glue::NestedIotlb;
use super::objects::{Object, ObjectTable};

/// The state of one context.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) host: Arc<EmulatedHost>,
    pub(crate) objects: ObjectTable,
    /// `IOMMU_OPTION_RLIMIT_MODE` 1: pages are charged to the process (mm).
    pub(crate) mm_mode: bool,
    /// The IOAS of the VFIO compatibility path (`IOMMU_VFIO_IOAS`).
    pub(crate) vfio_ioas: Option<u32>,
    /// The software IOMMU's cache of first-stage translations, shared by the nested HWPTs.
    pub(crate) iotlb: Arc<NestedIotlb>,
}

/// What [`EmulatedIommufd`] and the device handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) host: Arc<EmulatedHost>,
    ctx: Mutex<Context>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Context> {
        self.ctx.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One iommufd context of an [`EmulatedHost`], implementing
/// [`Iommufd`](crate::host::iommufd::Iommufd) and
/// [`IommufdSelftest`](crate::host::iommufd::IommufdSelftest) with the kernel's semantics.
///
/// Dropping it (and every device handle bound to it) destroys its objects leaf first, as
/// closing `/dev/iommu` does.
#[derive(Debug, Clone)]
pub struct EmulatedIommufd {
    pub(crate) shared: Arc<Shared>,
}

impl EmulatedIommufd {
    pub(crate) fn new(host: Arc<EmulatedHost>, mm_mode: bool) -> Self {
        EmulatedIommufd {
            shared: Arc::new(Shared {
                host: host.clone(),
                ctx: Mutex::new(Context {
                    host,
                    objects: ObjectTable::default(),
                    mm_mode,
                    vfio_ioas: None,
                    iotlb: NestedIotlb::new(),
                }),
            }),
        }
    }

    /// The host this context belongs to.
    pub fn host(&self) -> &Arc<EmulatedHost> {
        &self.shared.host
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Context> {
        self.shared.lock()
    }

    /// The domain of paging HWPT `hwpt_id` (`ENOENT` for anything else): the translator's
    /// entry point and the property tests' view of the page table.
    pub fn domain(&self, hwpt_id: u32) -> Result<Arc<Domain>, Errno> {
        Ok(self.lock().objects.hwpt_paging(hwpt_id)?.domain.clone())
    }

    /// The translation of nested HWPT `hwpt_id` (`ENOENT` for anything else).
    pub fn nested_table(&self, hwpt_id: u32) -> Result<Arc<NestedTable>, Errno> {
        Ok(self.lock().objects.hwpt_nested(hwpt_id)?.table.clone())
    }

    /// The areas of IOAS `ioas_id`, ascending (introspection for tests and debugging).
    pub fn areas(&self, ioas_id: u32) -> Result<Vec<AreaInfo>, Errno> {
        let ctx = self.lock();
        let ioas = ctx.objects.ioas(ioas_id)?;
        Ok(ioas
            .areas()
            .map(|(range, area)| AreaInfo {
                iova: range.start(),
                length: range.size() as u64,
                address: area.pages.base() + area.start_byte,
                file: area.pages.is_file(),
                read: area.prot.read,
                write: area.prot.write,
            })
            .collect())
    }

    /// Hits, misses and occupancy of the software IOMMU's IOTLB (first-stage translations of
    /// the context's nested HWPTs).
    pub fn iotlb_stats(&self) -> viommu::iotlb::IotlbStats {
        self.lock().iotlb.stats()
    }

    /// The object ids in use, ascending (introspection).
    pub fn object_ids(&self) -> Vec<u32> {
        self.lock().objects.ids()
    }
}

/// One area as seen by [`EmulatedIommufd::areas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaInfo {
    /// First IOVA.
    pub iova: u64,
    /// Bytes.
    pub length: u64,
    /// The user VA (or, for `file`, the file offset) of the first byte.
    pub address: u64,
    /// Mapped from a file (`IOMMU_IOAS_MAP_FILE`).
    pub file: bool,
    /// Devices may read.
    pub read: bool,
    /// Devices may write.
    pub write: bool,
}

impl Context {
    pub(crate) fn features(&self) -> Features {
        self.host.features()
    }

    /// `IOMMU_DESTROY`: `ENOENT` for an unknown id, `EBUSY` while referenced.
    pub(crate) fn destroy(&mut self, id: u32) -> Result<(), Errno> {
        let obj = self.objects.get(id).ok_or(Errno::ENOENT)?;
        let fd_open = matches!(obj, Object::Fault(q) if q.user_open());
        if self.objects.users(id) > 0 || fd_open {
            return Err(Errno::EBUSY);
        }
        self.destroy_object(id);
        Ok(())
    }

    /// Removes an unreferenced object and undoes what it holds (`ops->destroy`).
    pub(crate) fn destroy_object(&mut self, id: u32) {
        debug_assert_eq!(
            self.objects.users(id),
            0,
            "destroying referenced object {id}"
        );
        let Some(obj) = self.objects.release(id) else {
            return;
        };
        if self.vfio_ioas == Some(id) {
            self.vfio_ioas = None;
        }
        match obj {
            Object::Ioas(ioas) => drop(ioas),
            Object::HwptPaging(h) => {
                if let Ok(ioas) = self.objects.ioas_mut(h.ioas_id) {
                    ioas.remove_domain(id);
                    ioas.hwpt_list.retain(|&x| x != id);
                }
                self.objects.put_ref(h.ioas_id);
            }
            Object::HwptNested(n) => {
                self.objects.put_ref(n.parent_id);
                if let Some(f) = n.fault_id {
                    self.objects.put_ref(f);
                }
            }
            Object::Device(d) => {
                debug_assert!(
                    d.hwpt.is_none() && d.pasids.is_empty(),
                    "device destroyed attached"
                );
            }
            Object::Fault(q) => drop(q),
            Object::Selftest(s) => {
                self.detach_all(s.dev_id);
                self.unbind(s.dev_id);
            }
        }
    }

    /// `iommufd_fops_release`: destroys every object, leaf first.
    fn teardown(&mut self) {
        loop {
            let ids = self.objects.ids();
            if ids.is_empty() {
                break;
            }
            let mut destroyed = 0;
            for id in ids {
                if self.objects.get(id).is_some() && self.objects.users(id) == 0 {
                    self.destroy_object(id);
                    destroyed += 1;
                }
            }
            if destroyed == 0 {
                debug_assert!(false, "objects still referenced at context teardown");
                break;
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ctx
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .teardown();
    }
}
