//! Binding an emulated device to the emulated iommufd (`VFIO_DEVICE_BIND_IOMMUFD`,
//! `ATTACH_IOMMUFD_PT`, `DETACH_IOMMUFD_PT`), and the device's DMA path through what it is
//! attached to.
//!
//! An emulated device can only bind to the emulated host's iommufd (any other context is
//! `EBADFD`, as a kernel cdev refuses a file that is not an iommufd). Binding creates the
//! DEVICE object behind the device's IOMMU profile and connects the model's DMA (through the
//! device's DMA log) to the emulated host's software IOMMU
//! ([`EmulatedDevice::dma_port`](crate::host::emulated::EmulatedDevice::dma_port)): blocked
//! until attached, then translated by what the device, or the request's PASID, is attached to
//! (paging or nested HWPTs). The device's PASID capability is enabled when its IOMMU handles
//! PASIDs, as the IOMMU driver does at probe.

use std::sync::Arc;

use super::device::EmulatedVfioDevice;
use crate::errno::Errno;
use crate::host::emulated::{DmaFaultRecord, EmulatedDevice, EmulatedIommufd, IommuProfile};
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
    let device_pasid_log2 = core.pasid_capability_width();
    let handle = Arc::new(ctx.bind_with_pasid(profile, device_pasid_log2)?);
    let dev_id = handle.dev_id();
    core.binding.device = Some(handle.clone());
    let log = dev.dma_log();
    core.connect_dma(
        handle.dma_port(),
        device_pasid_log2.min(profile.max_pasid_log2()),
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

impl EmulatedVfioDevice {
    /// The DMA faults the emulated host's IOMMU recorded for the device while it was bound
    /// (the most recent ones, oldest first); empty when not bound.
    pub fn dma_faults(&self) -> Vec<DmaFaultRecord> {
        self.lock()
            .binding
            .device
            .as_ref()
            .map(|d| d.translator().faults())
            .unwrap_or_default()
    }
}
