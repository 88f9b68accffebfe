//! [`EmulatedType1Container`]: `/dev/vfio/vfio` of the emulated host, the container side of
//! `container.c` with the type1 driver behind it.
//!
//! Before `VFIO_SET_IOMMU` the container answers `CHECK_EXTENSION` for the type1 driver without
//! state and refuses every IOMMU ioctl with `EINVAL`; `SET_IOMMU` needs a group and works once
//! (`EINVAL`), types no driver offers are `ENODEV`. The last group leaving returns the container
//! to that unset state. Handles are cheap clones of one container, like duplicated fds; the
//! container lives on while groups are in it, as the kernel's reference counting keeps it.

use std::any::Any;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;
use crate::host::emulated::EmulatedHost;
use crate::host::type1::info::INFO_MINSZ;
use crate::host::type1::{
    Type1Container, Type1DirtyPages, Type1DmaMap, Type1DmaUnmap, VFIO_TYPE1_IOMMU,
    VFIO_TYPE1V2_IOMMU,
};

use super::config::Type1Config;
use super::driver::{Type1Iommu, VFIO_TYPE1_NESTING_IOMMU, check_extension};
use super::group::GroupSlot;

/// The container's state (the kernel's `struct vfio_container` with its `vfio_iommu`).
#[derive(Debug, Default)]
struct ContainerState {
    /// The groups in the container, most recent first (`list_add`).
    groups: Vec<Arc<GroupSlot>>,
    /// The driver's state once `VFIO_SET_IOMMU` succeeded.
    iommu: Option<Type1Iommu>,
}

/// What every handle of one container shares.
pub(super) struct ContainerShared {
    host: Arc<EmulatedHost>,
    config: Type1Config,
    state: Mutex<ContainerState>,
}

impl fmt::Debug for ContainerShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerShared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ContainerShared {
    fn lock(&self) -> MutexGuard<'_, ContainerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `VFIO_SET_IOMMU` has succeeded.
    pub(super) fn has_iommu(&self) -> bool {
        self.lock().iommu.is_some()
    }

    /// `vfio_container_attach_group`: the driver attaches the group first when an IOMMU is set.
    pub(super) fn attach_group(&self, slot: Arc<GroupSlot>) -> Result<(), Errno> {
        let mut st = self.lock();
        if let Some(iommu) = st.iommu.as_mut() {
            iommu.attach_group(&slot)?;
        }
        st.groups.insert(0, slot);
        Ok(())
    }

    /// `vfio_group_detach_container`: the driver lets the group go; the last group leaving
    /// releases the driver (every mapping goes).
    pub(super) fn detach_group(&self, slot: &GroupSlot) {
        let mut st = self.lock();
        st.groups.retain(|g| g.id != slot.id);
        let remaining: Vec<(u64, u64)> = st
            .groups
            .iter()
            .flat_map(|g| g.iommu.reserved_regions())
            .collect();
        if let Some(iommu) = st.iommu.as_mut() {
            iommu.detach_group(slot, &remaining);
        }
        if st.groups.is_empty() {
            st.iommu = None;
        }
    }
}

/// A type1 container of the emulated host.
#[derive(Debug, Clone)]
pub struct EmulatedType1Container {
    shared: Arc<ContainerShared>,
}

impl EmulatedHost {
    /// Opens a type1 container (`open("/dev/vfio/vfio")`) with the driver's default module
    /// parameters.
    pub fn open_type1(self: &Arc<Self>) -> EmulatedType1Container {
        self.open_type1_with(Type1Config::default())
    }

    /// Opens a type1 container whose driver has the module parameters `config`.
    pub fn open_type1_with(self: &Arc<Self>, config: Type1Config) -> EmulatedType1Container {
        EmulatedType1Container {
            shared: Arc::new(ContainerShared {
                host: self.clone(),
                config,
                state: Mutex::new(ContainerState::default()),
            }),
        }
    }
}

impl EmulatedType1Container {
    pub(super) fn shared(&self) -> &Arc<ContainerShared> {
        &self.shared
    }

    /// Number of mappings (for checks; the uAPI reports them through `DMA_AVAIL`).
    pub fn mapping_count(&self) -> usize {
        self.shared.lock().iommu.as_ref().map_or(0, |i| i.dma.len())
    }

    /// Runs `op` on the driver's state, `EINVAL` before `VFIO_SET_IOMMU` (the container passes
    /// IOMMU ioctls to no driver then).
    fn with_iommu<T>(
        &self,
        op: impl FnOnce(&mut Type1Iommu) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let mut st = self.shared.lock();
        op(st.iommu.as_mut().ok_or(Errno::EINVAL)?)
    }
}

impl Type1Container for EmulatedType1Container {
    fn get_api_version(&self) -> Result<i32, Errno> {
        Ok(0)
    }

    fn check_extension(&self, extension: u32) -> Result<u32, Errno> {
        Ok(check_extension(
            self.shared.lock().iommu.as_ref(),
            extension,
        ))
    }

    fn set_iommu(&self, iommu_type: u32) -> Result<(), Errno> {
        let mut st = self.shared.lock();
        if st.groups.is_empty() || st.iommu.is_some() {
            return Err(Errno::EINVAL);
        }
        // Only the type1 driver is registered: it takes the types it reports as extensions.
        if !matches!(
            iommu_type,
            VFIO_TYPE1_IOMMU | VFIO_TYPE1V2_IOMMU | VFIO_TYPE1_NESTING_IOMMU
        ) {
            return Err(Errno::ENODEV);
        }
        let mut iommu = Type1Iommu::open(iommu_type, self.shared.config.dma_entry_limit)?;
        for (i, slot) in st.groups.iter().enumerate() {
            if let Err(e) = iommu.attach_group(slot) {
                // The driver is released with the groups it took: nothing was mapped yet.
                for done in &st.groups[..i] {
                    done.set_domain(None);
                }
                return Err(e);
            }
        }
        st.iommu = Some(iommu);
        Ok(())
    }

    fn iommu_get_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        let argsz = buf
            .get(0..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(Errno::EFAULT)?;
        if argsz > buf.len() {
            return Err(Errno::EFAULT);
        }
        let reply = self.with_iommu(|iommu| {
            if argsz < INFO_MINSZ {
                return Err(Errno::EINVAL);
            }
            Ok(iommu.info_reply(argsz))
        })?;
        buf.get_mut(..reply.len())
            .ok_or(Errno::EFAULT)?
            .copy_from_slice(&reply);
        Ok(())
    }

    unsafe fn map_dma(&self, req: &Type1DmaMap) -> Result<(), Errno> {
        let host = self.shared.host.clone();
        self.with_iommu(|iommu| iommu.map_dma(&host, req))
    }

    fn unmap_dma(&self, req: &mut Type1DmaUnmap, bitmap: &mut [u64]) -> Result<(), Errno> {
        self.with_iommu(|iommu| iommu.unmap_dma(req, bitmap))
    }

    fn dirty_pages(&self, req: &Type1DirtyPages, bitmap: &mut [u64]) -> Result<(), Errno> {
        self.with_iommu(|iommu| iommu.dirty_pages(req, bitmap))
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
