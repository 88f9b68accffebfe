//! Devices bound to an emulated context: the DEVICE object, the handle device models hold
//! ([`EmulatedDevice`]), and what a device translates through ([`Attachment`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::errno::Errno;
use crate::host::iommufd::IommufdDevice;

use super::context::{EmulatedIommufd, Shared};
use super::domain::Domain;
use super::hwpt::NestedTable;
use super::objects::Object;
use super::profile::IommuProfile;
use super::translate::Translator;
use crate::host::dma::DmaPort;

/// A DEVICE object (`struct iommufd_device`). Each device is its own group.
#[derive(Debug)]
pub(crate) struct Device {
    /// The IOMMU behind it.
    pub(crate) profile: IommuProfile,
    /// PASID bits usable by this device: the IOMMU's width, capped by the device's own PASID
    /// capability (0 without one), as `iommu_hw_info::out_max_pasid_log2` reports it.
    pub(crate) pasid_log2: u8,
    /// The HWPT the device's requests without PASID use (`igroup->hwpt`).
    pub(crate) hwpt: Option<u32>,
    /// Per-PASID attachments: PASID -> HWPT.
    pub(crate) pasids: BTreeMap<u32, u32>,
}

/// What a device's DMA (for one PASID, or without PASID) translates through: the software
/// IOMMU's input.
#[derive(Debug, Clone)]
pub enum Attachment {
    /// Not attached: DMA is blocked.
    Blocked,
    /// A paging domain (stage 2 only).
    Paging(Arc<Domain>),
    /// A nested translation (user stage 1 over a paging stage 2).
    Nested(Arc<NestedTable>),
}

impl super::context::Context {
    /// The attachment of `dev_id` for `pasid` (`None`: requests without PASID).
    pub(crate) fn attachment(&self, dev_id: u32, pasid: Option<u32>) -> Result<Attachment, Errno> {
        Ok(self.attachment_of(dev_id, pasid)?.1)
    }

    /// The HWPT `dev_id` uses for `pasid` (`None`: requests without PASID) and its
    /// attachment.
    pub(crate) fn attachment_of(
        &self,
        dev_id: u32,
        pasid: Option<u32>,
    ) -> Result<(Option<u32>, Attachment), Errno> {
        let dev = self.objects.device(dev_id)?;
        let hwpt = match pasid {
            None => dev.hwpt,
            Some(p) => dev.pasids.get(&p).copied(),
        };
        Ok(
            match hwpt.and_then(|id| Some((id, self.objects.get(id)?))) {
                Some((id, Object::HwptPaging(h))) => {
                    (Some(id), Attachment::Paging(h.domain.clone()))
                }
                Some((id, Object::HwptNested(n))) => {
                    (Some(id), Attachment::Nested(n.table.clone()))
                }
                _ => (None, Attachment::Blocked),
            },
        )
    }

    /// Attaches (`pasid` None: the RID; replacing when already attached, as
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` does) or attaches a PASID.
    pub(crate) fn attach_any(
        &mut self,
        dev_id: u32,
        pasid: Option<u32>,
        pt_id: u32,
    ) -> Result<u32, Errno> {
        match pasid {
            None => {
                if self.objects.device(dev_id)?.hwpt.is_some() {
                    self.device_replace(dev_id, pt_id)
                } else {
                    self.device_attach(dev_id, pt_id)
                }
            }
            Some(p) => self.pasid_attach(dev_id, p, pt_id),
        }
    }

    /// Detaches the RID (`pasid` None) or a PASID; detaching what is not attached is fine.
    /// Kernels before 6.15 refuse the PASID flag (`EINVAL`).
    pub(crate) fn detach_any(&mut self, dev_id: u32, pasid: Option<u32>) -> Result<(), Errno> {
        self.objects.device(dev_id)?;
        if pasid.is_some() && !self.features().hwpt_alloc_pasid() {
            return Err(Errno::EINVAL);
        }
        match pasid {
            None => self.device_detach(dev_id),
            Some(p) => self.pasid_detach(dev_id, p),
        }
        Ok(())
    }
}

/// A device model's binding to an emulated context, as a VFIO device bound to an iommufd
/// (`VFIO_DEVICE_BIND_IOMMUFD`), with its DMA path through the software IOMMU
/// ([`EmulatedDevice::dma_port`]). Dropping it detaches and unbinds, as closing the device
/// does; the DMA path is blocked from then on.
#[derive(Debug)]
pub struct EmulatedDevice {
    shared: Arc<Shared>,
    dev_id: u32,
    translator: Arc<Translator>,
}

impl EmulatedIommufd {
    /// Binds a new device behind an IOMMU of `profile`: allocates its DEVICE object (the id
    /// `HWPT_ALLOC` and `GET_HW_INFO` take).
    pub fn bind(&self, profile: IommuProfile) -> Result<EmulatedDevice, Errno> {
        self.bind_with_pasid(profile, profile.max_pasid_log2())
    }

    /// Binds a device whose own PASID capability is `device_pasid_log2` bits wide (0: the
    /// device has none): the kernel reports, and the IOMMU honours, the smaller of that and the
    /// IOMMU's width.
    pub fn bind_with_pasid(
        &self,
        profile: IommuProfile,
        device_pasid_log2: u8,
    ) -> Result<EmulatedDevice, Errno> {
        let pasid_log2 = device_pasid_log2.min(profile.max_pasid_log2());
        let dev_id = self.lock().bind(profile, pasid_log2)?;
        Ok(EmulatedDevice {
            shared: self.shared.clone(),
            dev_id,
            translator: Translator::new(&self.shared, dev_id, pasid_log2),
        })
    }

    /// The DEVICE object of selftest device `stdev_id` (from `IOMMU_TEST_OP_MOCK_DOMAIN`), as
    /// a handle that attaches like `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`. The mock device stays
    /// owned by its selftest object: dropping the handle changes nothing.
    pub fn mock_device(&self, stdev_id: u32) -> Result<MockDevice, Errno> {
        let dev_id = self.lock().objects.selftest(stdev_id)?.dev_id;
        Ok(MockDevice {
            shared: self.shared.clone(),
            dev_id,
        })
    }
}

impl EmulatedDevice {
    /// What the device's DMA (without PASID, or for `pasid`) translates through now.
    pub fn attachment(&self, pasid: Option<u32>) -> Result<Attachment, Errno> {
        self.shared.lock().attachment(self.dev_id, pasid)
    }

    /// The device's DMA path: every access translated by the software IOMMU through what the
    /// device (or the request's PASID) is attached to at that moment.
    pub fn dma_port(&self) -> Arc<dyn DmaPort> {
        self.translator.clone()
    }

    /// The translator behind [`EmulatedDevice::dma_port`], for its fault records.
    pub fn translator(&self) -> &Arc<Translator> {
        &self.translator
    }
}

impl IommufdDevice for EmulatedDevice {
    fn dev_id(&self) -> u32 {
        self.dev_id
    }

    fn attach(&self, pasid: Option<u32>, pt_id: u32) -> Result<u32, Errno> {
        self.shared.lock().attach_any(self.dev_id, pasid, pt_id)
    }

    fn detach(&self, pasid: Option<u32>) -> Result<(), Errno> {
        self.shared.lock().detach_any(self.dev_id, pasid)
    }
}

impl Drop for EmulatedDevice {
    fn drop(&mut self) {
        self.translator.unbind();
        let mut ctx = self.shared.lock();
        ctx.detach_all(self.dev_id);
        ctx.unbind(self.dev_id);
    }
}

/// A handle on a selftest mock device (see [`EmulatedIommufd::mock_device`]).
#[derive(Debug)]
pub struct MockDevice {
    shared: Arc<Shared>,
    dev_id: u32,
}

impl MockDevice {
    /// What the device's DMA translates through now.
    pub fn attachment(&self, pasid: Option<u32>) -> Result<Attachment, Errno> {
        self.shared.lock().attachment(self.dev_id, pasid)
    }
}

impl IommufdDevice for MockDevice {
    fn dev_id(&self) -> u32 {
        self.dev_id
    }

    fn attach(&self, pasid: Option<u32>, pt_id: u32) -> Result<u32, Errno> {
        self.shared.lock().attach_any(self.dev_id, pasid, pt_id)
    }

    fn detach(&self, pasid: Option<u32>) -> Result<(), Errno> {
        self.shared.lock().detach_any(self.dev_id, pasid)
    }
}
