//! An emulated device in an emulated VFIO group (the legacy path): placed in an
//! [`EmulatedGroup`], opened through it (`VFIO_GROUP_GET_DEVICE_FD`), its DMA translated by
//! the domain the group's type1 container attached the group to.
//!
//! The device opened through its group is an [`EmulatedGroupDevice`]: the same device, except
//! that it cannot bind to an iommufd (`EINVAL`: the kernel refuses BIND on a group-opened fd,
//! which already has access) and has no ATTACH/DETACH (`ENOTTY`: they fall through to the PCI
//! driver). While the device sits in an open group, binding its cdev is `EBUSY`, as the kernel
//! refuses to open a cdev whose group file is open; a device bound through its cdev cannot be
//! placed in a group (`EBUSY`).
//!
//! DMA is connected when the device is first opened through its group and blocked again when
//! the last such handle is dropped (vfio-pci disables the device on close). Each access looks
//! the group's [`Attachment`](crate::host::emulated::Attachment) up again, so it follows the container (blocked before
//! `VFIO_SET_IOMMU` could not happen: the device cannot be opened then), and PASID-tagged
//! requests are blocked: type1 attaches no PASID, and the host enables no PASID capability.

use std::any::Any;
use std::sync::Arc;

use super::device::EmulatedVfioDevice;
use crate::errno::Errno;
use crate::host::dma::{DmaFault, DmaFaultReason, DmaPort};
use crate::host::emulated::type1::{
    EmulatedGroup, GroupAttachment, GroupDeviceAccess, GroupMember,
};
use crate::host::iommufd::Iommufd;
use crate::vfio::{
    DeviceInfo, DmaLoggingRange, DmaLoggingReport, IrqInfo, IrqSet, MigrationData, MmapArea,
    VfioDevice,
};

/// A device's place in a group: the group whose file holds it, and how many handles opened
/// through that group are alive.
#[derive(Debug, Default)]
pub(super) struct GroupUse {
    group: Option<u32>,
    opens: u32,
}

/// Refuses `VFIO_DEVICE_BIND_IOMMUFD` on the device's cdev while its group file is open.
pub(super) fn check_cdev_bind(dev: &EmulatedVfioDevice) -> Result<(), Errno> {
    match dev.lock().group.group {
        Some(_) => Err(Errno::EBUSY),
        None => Ok(()),
    }
}

impl GroupMember for EmulatedVfioDevice {
    fn join_group(&self, group: u32) -> Result<(), Errno> {
        let mut core = self.lock();
        if core.group.group.is_some() || core.binding.device.is_some() {
            return Err(Errno::EBUSY);
        }
        core.group.group = Some(group);
        Ok(())
    }

    fn leave_group(&self, group: u32) {
        let mut core = self.lock();
        if core.group.group == Some(group) {
            core.group.group = None;
        }
    }

    fn open_through_group(
        self: Arc<Self>,
        access: GroupDeviceAccess,
    ) -> Result<Box<dyn VfioDevice>, Errno> {
        let log = self.dma_log();
        {
            let mut core = self.lock();
            if core.group.group != Some(access.group().id()) {
                return Err(Errno::ENODEV);
            }
            core.group.opens += 1;
            if core.group.opens == 1 {
                let port = Arc::new(GroupDmaPort {
                    attachment: access.attachment(),
                });
                core.connect_dma(port, 0, &log);
            }
        }
        Ok(Box::new(EmulatedGroupDevice {
            device: self,
            access,
        }))
    }
}

/// An emulated device opened through its group.
#[derive(Debug)]
pub struct EmulatedGroupDevice {
    device: Arc<EmulatedVfioDevice>,
    access: GroupDeviceAccess,
}

impl EmulatedGroupDevice {
    /// The device.
    pub fn device(&self) -> &Arc<EmulatedVfioDevice> {
        &self.device
    }

    /// The group it was opened through.
    pub fn group(&self) -> &Arc<EmulatedGroup> {
        self.access.group()
    }
}

impl Drop for EmulatedGroupDevice {
    fn drop(&mut self) {
        let log = self.device.dma_log();
        let mut core = self.device.lock();
        core.group.opens = core.group.opens.saturating_sub(1);
        if core.group.opens == 0 {
            core.connect_dma(Arc::new(super::dma_log::BlockedDmaPort), 0, &log);
        }
    }
}

impl VfioDevice for EmulatedGroupDevice {
    fn device_info(&self) -> Result<DeviceInfo, Errno> {
        self.device.device_info()
    }

    fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        self.device.get_region_info(buf)
    }

    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.device.region_read(index, offset, buf)
    }

    fn region_write(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.device.region_write(index, offset, buf)
    }

    fn region_mmap(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno> {
        self.device.region_mmap(index, offset, len, writable)
    }

    fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno> {
        self.device.irq_info(index)
    }

    fn set_irqs(&self, req: &IrqSet, data: &[u8]) -> Result<(), Errno> {
        self.device.set_irqs(req, data)
    }

    fn reset(&self) -> Result<(), Errno> {
        self.device.reset()
    }

    fn feature_probe(&self, feature: u32, get: bool, set: bool) -> Result<(), Errno> {
        self.device.feature_probe(feature, get, set)
    }

    fn migration_flags(&self) -> Result<u64, Errno> {
        self.device.migration_flags()
    }

    fn mig_state(&self) -> Result<u32, Errno> {
        self.device.mig_state()
    }

    fn set_mig_state(&self, state: u32) -> Result<Option<Box<dyn MigrationData>>, Errno> {
        self.device.set_mig_state(state)
    }

    fn mig_data_size(&self) -> Result<u64, Errno> {
        self.device.mig_data_size()
    }

    fn dma_logging_start(
        &self,
        page_size: &mut u64,
        ranges: &[DmaLoggingRange],
    ) -> Result<(), Errno> {
        self.device.dma_logging_start(page_size, ranges)
    }

    fn dma_logging_stop(&self) -> Result<(), Errno> {
        self.device.dma_logging_stop()
    }

    fn dma_logging_report(&self, req: &DmaLoggingReport, bitmap: &mut [u64]) -> Result<(), Errno> {
        self.device.dma_logging_report(req, bitmap)
    }

    fn bind_iommufd(&self, _iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    fn attach_pt(&self, _pt_id: u32, _pasid: Option<u32>) -> Result<u32, Errno> {
        Err(Errno::ENOTTY)
    }

    fn detach_pt(&self, _pasid: Option<u32>) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The DMA of a device opened through its group: translated by whatever the group's container
/// gives it (its paging domain once `SET_IOMMU` ran, blocked before), through the same stage-2
/// path as iommufd attachments (unmap-safe locking, dirty marking). Group-opened devices carry
/// no PASID: a request with one is blocked.
#[derive(Debug)]
pub struct GroupDmaPort {
    attachment: GroupAttachment,
}

impl GroupDmaPort {
    fn blocked(pasid: Option<u32>, iova: u64, write: bool) -> DmaFault {
        DmaFault {
            iova,
            pasid,
            write,
            reason: DmaFaultReason::Blocked,
        }
    }
}

impl DmaPort for GroupDmaPort {
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        if pasid.is_some() {
            return Err(Self::blocked(pasid, iova, false));
        }
        self.attachment.attachment().dma_read(pasid, iova, buf)
    }

    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        if pasid.is_some() {
            return Err(Self::blocked(pasid, iova, true));
        }
        self.attachment.attachment().dma_write(pasid, iova, buf)
    }
}
