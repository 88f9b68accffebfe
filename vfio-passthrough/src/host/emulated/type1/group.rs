//! [`EmulatedGroup`]: an IOMMU group of the emulated host as `/dev/vfio/<group>` presents it
//! (`group.c`): status, joining and leaving a type1 container, and opening its devices.
//!
//! An `EmulatedGroup` is the open group file. Its devices ([`GroupMember`]s) are placed in it
//! by whoever builds the machine; opening one ([`EmulatedGroup::device`]) needs the group in a
//! container with an IOMMU set (`EINVAL`), and keeps the group in use until the device is
//! dropped (`VFIO_GROUP_UNSET_CONTAINER` is `EBUSY` meanwhile). What the devices' DMA
//! translates through is the container's domain for this group ([`GroupAttachment`]), or
//! nothing (blocked) outside a container with an IOMMU.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::errno::Errno;
use crate::host::emulated::{Attachment, Domain};
use crate::host::type1::Type1Container;
use crate::vfio::VfioDevice;

use super::config::GroupIommu;
use super::container::{ContainerShared, EmulatedType1Container};

pub use crate::vfio::kernel::group::{VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE};

/// The IOMMU group as the container's driver sees it: its number, its IOMMU, and the domain
/// it is attached to. The domain sits behind its own lock, taken innermost, so device DMA
/// never waits on the group or the container.
#[derive(Debug)]
pub(super) struct GroupSlot {
    pub(super) id: u32,
    pub(super) iommu: GroupIommu,
    domain: RwLock<Option<Arc<Domain>>>,
}

impl GroupSlot {
    pub(super) fn set_domain(&self, domain: Option<Arc<Domain>>) {
        *self.domain.write().unwrap_or_else(|e| e.into_inner()) = domain;
    }

    fn domain(&self) -> Option<Arc<Domain>> {
        self.domain
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the devices of a group translate their DMA through, looked up at each access: the
/// paging domain the group's container attached it to, or [`Attachment::Blocked`].
#[derive(Debug, Clone)]
pub struct GroupAttachment {
    slot: Arc<GroupSlot>,
}

impl GroupAttachment {
    /// The group's attachment now (type1 attaches no PASID: requests with one are blocked).
    pub fn attachment(&self) -> Attachment {
        match self.slot.domain() {
            Some(domain) => Attachment::Paging(domain),
            None => Attachment::Blocked,
        }
    }

    /// The group's number.
    pub fn group_id(&self) -> u32 {
        self.slot.id
    }
}

/// A device that can be placed in an [`EmulatedGroup`] and opened through it.
pub trait GroupMember: Send + Sync + Debug {
    /// Records that the device is now in group `group` (its group file is open): `EBUSY` if
    /// it already is in one, or if it is bound to an iommufd through its cdev.
    fn join_group(&self, group: u32) -> Result<(), Errno>;

    /// The group file of `group` was closed: the device is free again.
    fn leave_group(&self, group: u32);

    /// `VFIO_GROUP_GET_DEVICE_FD` for this device: a device handle whose DMA goes through
    /// `access` and which cannot bind to an iommufd. It keeps `access` (and so the group in
    /// use) until dropped.
    fn open_through_group(
        self: Arc<Self>,
        access: GroupDeviceAccess,
    ) -> Result<Box<dyn VfioDevice>, Errno>;
}

/// A device's hold on the group it was opened through: the group stays open and in use
/// (`UNSET_CONTAINER` is `EBUSY`) until this is dropped.
#[derive(Debug)]
pub struct GroupDeviceAccess {
    group: Arc<EmulatedGroup>,
}

impl GroupDeviceAccess {
    /// What the device's DMA translates through.
    pub fn attachment(&self) -> GroupAttachment {
        self.group.attachment()
    }

    /// The group.
    pub fn group(&self) -> &Arc<EmulatedGroup> {
        &self.group
    }
}

impl Drop for GroupDeviceAccess {
    fn drop(&mut self) {
        let mut st = self.group.state();
        st.open_devices = st.open_devices.saturating_sub(1);
    }
}

#[derive(Debug, Default)]
struct GroupState {
    container: Option<Arc<ContainerShared>>,
    open_devices: u32,
    members: BTreeMap<String, Arc<dyn GroupMember>>,
}

/// An open emulated VFIO group.
#[derive(Debug)]
pub struct EmulatedGroup {
    slot: Arc<GroupSlot>,
    state: Mutex<GroupState>,
}

impl EmulatedGroup {
    /// Group `id` of devices behind `iommu`, with no device yet.
    pub fn new(id: u32, iommu: GroupIommu) -> Arc<Self> {
        Arc::new(EmulatedGroup {
            slot: Arc::new(GroupSlot {
                id,
                iommu,
                domain: RwLock::new(None),
            }),
            state: Mutex::new(GroupState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group's number (`/dev/vfio/<id>`).
    pub fn id(&self) -> u32 {
        self.slot.id
    }

    /// The IOMMU the group's devices sit behind.
    pub fn iommu(&self) -> GroupIommu {
        self.slot.iommu
    }

    /// What the group's devices translate through.
    pub fn attachment(&self) -> GroupAttachment {
        GroupAttachment {
            slot: self.slot.clone(),
        }
    }

    /// Places `device` in the group under `name` (a PCI address, as `GET_DEVICE_FD` names
    /// it): `EEXIST` for a name in use, else what [`GroupMember::join_group`] says.
    pub fn add_device(&self, name: &str, device: Arc<dyn GroupMember>) -> Result<(), Errno> {
        let mut st = self.state();
        if st.members.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        device.join_group(self.slot.id)?;
        st.members.insert(name.to_owned(), device);
        Ok(())
    }

    /// `VFIO_GROUP_GET_STATUS`: `VIABLE` (no device of the group can be claimed by another
    /// DMA owner while the group is open), and `CONTAINER_SET` in a container.
    pub fn status(&self) -> Result<u32, Errno> {
        Ok(if self.state().container.is_some() {
            VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET
        } else {
            VFIO_GROUP_FLAGS_VIABLE
        })
    }

    /// `VFIO_GROUP_SET_CONTAINER`: `EBADFD` for a container that is not the emulated host's,
    /// `EINVAL` if the group is already in one, else what the container's driver says when it
    /// has an IOMMU set (`EINVAL` if mappings conflict with the group's aperture or reserved
    /// regions, `EBUSY` while a mapping awaits `VFIO_DMA_MAP_FLAG_VADDR`).
    pub fn set_container(&self, container: &dyn Type1Container) -> Result<(), Errno> {
        let Some(container) = container.as_any().downcast_ref::<EmulatedType1Container>() else {
            return Err(Errno::EBADFD);
        };
        let mut st = self.state();
        if st.container.is_some() {
            return Err(Errno::EINVAL);
        }
        let shared = container.shared();
        shared.attach_group(self.slot.clone())?;
        st.container = Some(shared.clone());
        Ok(())
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`: `EINVAL` outside a container, `EBUSY` while a device is
    /// open through the group. The last group leaving a container removes its IOMMU and every
    /// mapping.
    pub fn unset_container(&self) -> Result<(), Errno> {
        let mut st = self.state();
        if st.container.is_none() {
            return Err(Errno::EINVAL);
        }
        if st.open_devices != 0 {
            return Err(Errno::EBUSY);
        }
        if let Some(container) = st.container.take() {
            container.detach_group(&self.slot);
        }
        Ok(())
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for the device placed as `name`: `ENODEV` for an unknown
    /// name, `EINVAL` outside a container or before `VFIO_SET_IOMMU`.
    pub fn device(self: &Arc<Self>, name: &str) -> Result<Box<dyn VfioDevice>, Errno> {
        let member = {
            let mut st = self.state();
            let member = st.members.get(name).cloned().ok_or(Errno::ENODEV)?;
            match &st.container {
                Some(c) if c.has_iommu() => {}
                _ => return Err(Errno::EINVAL),
            }
            st.open_devices += 1;
            member
        };
        // The access is counted: if the open fails, dropping it uncounts it.
        member.open_through_group(GroupDeviceAccess {
            group: self.clone(),
        })
    }
}

impl Drop for EmulatedGroup {
    /// Closing the group file takes the group out of its container and frees its devices.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(container) = st.container.take() {
            container.detach_group(&self.slot);
        }
        for member in st.members.values() {
            member.leave_group(self.slot.id);
        }
    }
}
