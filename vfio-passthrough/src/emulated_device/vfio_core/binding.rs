//! Binding an emulated device to the emulated iommufd (`VFIO_DEVICE_BIND_IOMMUFD`,
//! `ATTACH_IOMMUFD_PT`, `DETACH_IOMMUFD_PT`), and the device's DMA path through what it is
//! attached to.
//!
//! An emulated device can only bind to the emulated host's iommufd (any other context is
//! `EBADFD`, as a kernel cdev refuses a file that is not an iommufd). Binding creates the
//! DEVICE object behind the device's IOMMU profile and connects the model's DMA to an
//! [`EmulatedDmaPort`]: blocked until attached, then translated by the attached domain.
//!
//! [`EmulatedDmaPort`] is a small adapter over what the emulated host exposes today
//! ([`EmulatedDevice::attachment`], [`Domain::translate`], [`Pages`](crate::host::emulated::Pages)):
//! paging domains (stage 2) translate; nested attachments (a user stage 1 over stage 2) are
//! reported as faults until the emulated host's stage-1 walker is available.

use std::sync::Arc;

use super::device::EmulatedVfioDevice;
use crate::errno::Errno;
use crate::host::dma::{DmaFault, DmaFaultReason, DmaPort};
use crate::host::emulated::{Attachment, Domain, EmulatedDevice, EmulatedIommufd, IommuProfile};
use crate::host::iommufd::{Iommufd, IommufdDevice};

/// The binding state of a device.
#[derive(Debug)]
pub(super) struct Binding {
    /// The IOMMU the device sits behind on the emulated host.
    pub(super) profile: IommuProfile,
    /// The DEVICE object, once bound.
    pub(super) device: Option<Arc<EmulatedDevice>>,
}

impl Default for Binding {
    fn default() -> Self {
        Binding {
            profile: IommuProfile::Vtd(Default::default()),
            device: None,
        }
    }
}

/// `VFIO_DEVICE_BIND_IOMMUFD`.
pub(super) fn bind(dev: &EmulatedVfioDevice, iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
    let Some(ctx) = iommufd.as_any().downcast_ref::<EmulatedIommufd>() else {
        return Err(Errno::EBADFD);
    };
    let mut core = dev.lock();
    if core.binding.device.is_some() {
        return Err(Errno::EINVAL);
    }
    let profile = core.binding.profile;
    let handle = Arc::new(ctx.bind(profile)?);
    let dev_id = handle.dev_id();
    core.binding.device = Some(handle.clone());
    let log = dev.dma_log();
    core.connect_dma(
        Arc::new(EmulatedDmaPort { device: handle }),
        profile.max_pasid_log2(),
        &log,
    );
    Ok(dev_id)
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
pub(super) fn attach(
    dev: &EmulatedVfioDevice,
    pt_id: u32,
    pasid: Option<u32>,
) -> Result<u32, Errno> {
    let handle = dev.lock().binding.device.clone().ok_or(Errno::EINVAL)?;
    handle.attach(pasid, pt_id)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
pub(super) fn detach(dev: &EmulatedVfioDevice, pasid: Option<u32>) -> Result<(), Errno> {
    let handle = dev.lock().binding.device.clone().ok_or(Errno::EINVAL)?;
    handle.detach(pasid)
}

/// A bound device's DMA: each access translates through what the device (or the request's
/// PASID) is attached to now, as the IOMMU hardware would.
#[derive(Debug)]
pub struct EmulatedDmaPort {
    device: Arc<EmulatedDevice>,
}

impl EmulatedDmaPort {
    fn domain(&self, pasid: Option<u32>, iova: u64, write: bool) -> Result<Arc<Domain>, DmaFault> {
        let fault = |reason| DmaFault {
            iova,
            pasid,
            write,
            reason,
        };
        match self.device.attachment(pasid) {
            Ok(Attachment::Paging(domain)) => Ok(domain),
            Ok(Attachment::Blocked) | Err(_) => Err(fault(DmaFaultReason::Blocked)),
            Ok(Attachment::Nested(_)) => {
                log::warn!(
                    "DMA at {iova:#x}: nested translation is not available in the emulated host"
                );
                Err(fault(DmaFaultReason::NotPresent))
            }
        }
    }

    /// Runs `op(pages, offset, range)` over each translated piece of `[iova, iova + len)`.
    fn walk(
        &self,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        write: bool,
        mut op: impl FnMut(
            &crate::host::emulated::Pages,
            u64,
            std::ops::Range<usize>,
        ) -> Result<(), Errno>,
    ) -> Result<(), DmaFault> {
        let domain = self.domain(pasid, iova, write)?;
        let mut done = 0usize;
        while done < len {
            let at = iova.wrapping_add(done as u64);
            let fault = |reason| DmaFault {
                iova: at,
                pasid,
                write,
                reason,
            };
            let t = domain
                .translate(at)
                .ok_or_else(|| fault(DmaFaultReason::NotPresent))?;
            if (write && !t.prot.write) || (!write && !t.prot.read) {
                return Err(fault(DmaFaultReason::Permission));
            }
            let room = t.mapping_last.saturating_sub(at).saturating_add(1);
            let n = (len - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            op(&t.pages, t.offset, done..done + n).map_err(|_| fault(DmaFaultReason::Backing))?;
            if write {
                domain.mark_dirty(at, n as u64);
            }
            done += n;
        }
        Ok(())
    }
}

impl DmaPort for EmulatedDmaPort {
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
