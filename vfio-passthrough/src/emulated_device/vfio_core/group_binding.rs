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
//! the group's [`Attachment`] up again, so it follows the container (blocked before
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
use crate::host::emulated::{Attachment, Pages};
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

/// The DMA of a device opened through its group: translated by the group's paging domain.
///
/// Its walk over [`Domain::translate`](crate::host::emulated::Domain::translate) is the same
/// stage-2 walk the iommufd binding's port does; once the shared DMA translator takes an
/// [`Attachment`], this port should hand it `self.attachment.attachment()` instead.
#[derive(Debug)]
pub struct GroupDmaPort {
    attachment: GroupAttachment,
}

impl GroupDmaPort {
    /// Runs `op(pages, offset, range)` over each translated piece of `[iova, iova + len)`;
    /// stops at the first IOVA that does not translate for this access.
    fn walk(
        &self,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        write: bool,
        mut op: impl FnMut(&Pages, u64, std::ops::Range<usize>) -> Result<(), Errno>,
    ) -> Result<(), DmaFault> {
        let fault = |at: u64, reason| DmaFault {
            iova: at,
            pasid,
            write,
            reason,
        };
        let domain = match (pasid, self.attachment.attachment()) {
            (None, Attachment::Paging(domain)) => domain,
            (None, Attachment::Nested(_)) => {
                return Err(fault(iova, DmaFaultReason::NotPresent));
            }
            _ => return Err(fault(iova, DmaFaultReason::Blocked)),
        };
        let mut done = 0usize;
        while done < len {
            let at = iova.wrapping_add(done as u64);
            let t = domain
                .translate(at)
                .ok_or_else(|| fault(at, DmaFaultReason::NotPresent))?;
            if (write && !t.prot.write) || (!write && !t.prot.read) {
                return Err(fault(at, DmaFaultReason::Permission));
            }
            let room = t.mapping_last.saturating_sub(at).saturating_add(1);
            let n = (len - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            op(&t.pages, t.offset, done..done + n)
                .map_err(|_| fault(at, DmaFaultReason::Backing))?;
            done += n;
        }
        Ok(())
    }
}

impl DmaPort for GroupDmaPort {
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let len = buf.len();
        self.walk(pasid, iova, len, false, |pages, offset, range| {
            pages.read(offset, &mut buf[range])
        })
    }

    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        self.walk(pasid, iova, buf.len(), true, |pages, offset, range| {
            pages.write(offset, &buf[range])
        })
    }
}
