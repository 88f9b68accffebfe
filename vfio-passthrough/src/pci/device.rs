//! [`VfioPciDevice`]: a host PCI function behind VFIO, as a guest PCI device.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use devices::interrupt::{InterruptManager, InterruptSourceGroup, LegacyIrq};
use devices::pci::{
    BarChange, MsiCapability, MsiMode, MsixConfig, PCI_ROM_BAR_INDEX, PciBar, PciBarError,
    PciDevice,
};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::bars::{BarMmap, BarTarget, host_page_size, map_areas, mmap_plan, route};
use super::capabilities::CapabilityPlan;
use super::config::VirtualConfig;
use super::discovery::DeviceLayout;
use super::error::{BarAccessFault, VfioPciError};
use super::interrupts::{
    HostInterrupts, HostIrq, disable_irq_index, group_eventfds, set_irqs_eventfds,
};
use super::intx::{Intx, IntxDelivery};
use super::pasid::PasidSupport;
use super::subscriber::{UserspaceIntx, VfioPciEventHandler, VfioPciSubscriber};
use crate::vfio::{
    RegionInfo, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX, VfioDevice,
};

/// How the VMM wants a passthrough device built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioPciDeviceConfig {
    /// A name for logs and errors (the host BDF or the `--device` id).
    pub name: String,
    /// The GSI the VMM wired to INTA# of the device's slot. Used only if the device has INTx.
    pub intx_gsi: u32,
    /// How INTx reaches the guest.
    pub intx_delivery: IntxDelivery,
    /// What the host IOMMU supports for the device's PASIDs (from `IOMMU_GET_HW_INFO` once the
    /// device is bound), or `None`: the guest is shown a virtual PASID capability of this shape
    /// (see the `capabilities` module). `None` for devices in a type1 container.
    pub pasid: Option<PasidSupport>,
}

/// A host PCI function passed through to the guest.
///
/// The guest sees a virtual config space built from the device's (see
/// the `config` module), BARs the VMM places and the guest may move, the device's memory
/// BARs mostly through direct mappings ([`mmap_areas`](Self::mmap_areas)), the rest trapped and
/// forwarded, and interrupts delivered through the VMM's interrupt groups without a userspace hop.
///
/// The VMM must remove the KVM memory slots of the mmap areas before dropping the device (the
/// areas are unmapped on drop).
#[derive(Debug)]
pub struct VfioPciDevice {
    name: String,
    device: Arc<dyn VfioDevice>,
    layout: DeviceLayout,
    plan: CapabilityPlan,
    config: VirtualConfig,
    msi_group: Option<Arc<dyn InterruptSourceGroup>>,
    msix_group: Option<Arc<dyn InterruptSourceGroup>>,
    /// Vectors the host enables for MSI-X: the table size, or fewer if the host offers fewer.
    msix_host_vectors: u32,
    irqs: HostInterrupts,
    err: Option<Arc<EventFd>>,
    req: Option<Arc<EventFd>>,
    mmaps: Vec<BarMmap>,
}

impl VfioPciDevice {
    /// Builds the passthrough device of `device`, which the VMM has already bound and attached
    /// to its IOAS. Reads the device's regions, BARs, capabilities and IRQs, creates its
    /// interrupt groups and INTx line from `interrupts`, maps its mmap-able BAR areas and
    /// enables INTx (and the ERR and REQ notifications) in the host.
    pub fn new(
        device: Arc<dyn VfioDevice>,
        interrupts: &dyn InterruptManager,
        config: VfioPciDeviceConfig,
    ) -> Result<Self, VfioPciError> {
        let name = config.name;
        let layout = DeviceLayout::discover(device.as_ref(), &name)?;
        let plan = CapabilityPlan::new(&layout, &name, config.pasid)?;
        for hidden in &plan.hidden {
            log::info!(
                "{name}: hiding capability {:#x} at {:#x} from the guest",
                hidden.id,
                hidden.offset
            );
        }
        let interrupt_error = |what| {
            let device = name.clone();
            move |source| VfioPciError::Interrupt {
                device,
                what,
                source,
            }
        };
        let msi_group = match plan.msi() {
            Some((_, cfg)) => {
                let group = interrupts
                    .create_msi_group(cfg.max_vectors)
                    .map_err(interrupt_error("MSI"))?;
                group_eventfds(group.as_ref(), cfg.max_vectors, &name, "MSI")?;
                Some(group)
            }
            None => None,
        };
        let mut msix_host_vectors = 0;
        let msix_group = match plan.msix() {
            Some((_, msix)) => {
                let size = u32::from(msix.table_size);
                let group = interrupts
                    .create_msi_group(size)
                    .map_err(interrupt_error("MSI-X"))?;
                let host = layout
                    .usable_irq(VFIO_PCI_MSIX_IRQ_INDEX)
                    .map_or(0, |irq| irq.count);
                msix_host_vectors = size.min(host);
                group_eventfds(group.as_ref(), msix_host_vectors, &name, "MSI-X")?;
                Some(group)
            }
            None => None,
        };
        let intx = match layout.usable_irq(VFIO_PCI_INTX_IRQ_INDEX) {
            Some(_) => {
                let irq = interrupts
                    .create_legacy_irq(config.intx_gsi)
                    .map_err(interrupt_error("INTx"))?;
                Some(Intx::new(irq, config.intx_delivery, &name)?)
            }
            None => None,
        };
        let virtual_config = build_config(
            &name,
            &device,
            &layout,
            &plan,
            msi_group.as_ref(),
            msix_group.as_ref(),
            intx.is_some(),
        )?;
        let plan_areas = mmap_plan(
            &layout.bars,
            &layout.regions,
            plan.msix().map(|(_, m)| m),
            host_page_size(),
        );
        let mmaps = map_areas(device.as_ref(), &name, &layout.regions, &plan_areas);
        let mut irqs = HostInterrupts::new(
            &name,
            device.clone(),
            intx,
            msi_group.clone(),
            msix_group.clone(),
        );
        irqs.sync(irqs.idle())?;
        let err = wire_notification(device.as_ref(), &layout, &name, VFIO_PCI_ERR_IRQ_INDEX);
        let req = wire_notification(device.as_ref(), &layout, &name, VFIO_PCI_REQ_IRQ_INDEX);
        Ok(Self {
            name,
            device,
            layout,
            plan,
            config: virtual_config,
            msi_group,
            msix_group,
            msix_host_vectors,
            irqs,
            err,
            req,
            mmaps,
        })
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VFIO device (for migration and DMA set-up).
    pub fn vfio_device(&self) -> &Arc<dyn VfioDevice> {
        &self.device
    }

    /// The device-specific regions (index 9 and up), e.g. a v1 migration region.
    pub fn device_specific_regions(&self) -> &[RegionInfo] {
        self.layout.device_specific_regions()
    }

    /// The mmapped parts of the BARs: `(bar index, offset in the BAR, mapping)` each. While BAR
    /// `index` decodes at `base`, the VMM maps `area()` into the guest at `base + offset()` (a
    /// KVM memory slot), moves it when the BAR moves and removes it when the BAR stops decoding,
    /// following the [`BarChange`]s config writes report. Accesses outside these areas reach
    /// [`PciDevice::read_bar`] / [`PciDevice::write_bar`].
    pub fn mmap_areas(&self) -> &[BarMmap] {
        &self.mmaps
    }

    /// The IRQ index the host device signals through now.
    pub fn host_irq(&self) -> HostIrq {
        self.irqs.current()
    }

    /// The INTx line, if the device has INTx.
    pub fn intx_irq(&self) -> Option<&Arc<dyn LegacyIrq>> {
        self.irqs.intx().map(|i| i.irq())
    }

    /// The event-loop subscriber for the device's eventfds that need userspace (VFIO ERR and
    /// REQ, and INTx in userspace delivery). `on_event` hears about errors and release
    /// requests. Register one subscriber per device: each watches the same eventfds.
    pub fn subscriber(&self, on_event: VfioPciEventHandler) -> VfioPciSubscriber {
        let intx = self.irqs.intx().and_then(|i| {
            i.userspace_trigger().map(|trigger| UserspaceIntx {
                trigger: trigger.clone(),
                irq: i.irq().clone(),
            })
        });
        VfioPciSubscriber::new(
            &self.name,
            self.device.clone(),
            self.err.clone(),
            self.req.clone(),
            intx,
            on_event,
        )
    }

    /// Resets the device (`VFIO_DEVICE_RESET`) and returns it to its initial virtual state:
    /// command register cleared (so no BAR decodes), MSI and MSI-X disabled with every vector
    /// masked, the host back on INTx, capabilities and interrupt line as at construction. BAR
    /// addresses are kept, so the VMM need not place them again. Returns the BARs that stopped
    /// decoding, for the VMM to take off its buses.
    ///
    /// A device without reset support is refused before anything changes.
    pub fn reset(&mut self) -> Result<Vec<BarChange>, VfioPciError> {
        if self.layout.info.flags & VFIO_DEVICE_FLAGS_RESET == 0 {
            return Err(VfioPciError::ResetUnsupported {
                device: self.name.clone(),
            });
        }
        // vfio-pci requires the host interrupts off before a reset (as QEMU does it).
        self.irqs.disable()?;
        if let Err(source) = self.device.reset() {
            self.sync_host_irqs();
            return Err(VfioPciError::Reset {
                device: self.name.clone(),
                source,
            });
        }
        let regs = self.config.regs();
        let decoding = regs.decoded_bars();
        let placed: Vec<(usize, u64)> = regs
            .bars()
            .iter()
            .filter_map(|b| Some((b.index, regs.bar_address(b.index)?)))
            .collect();
        self.config.quiesce();
        let mut config = build_config(
            &self.name,
            &self.device,
            &self.layout,
            &self.plan,
            self.msi_group.as_ref(),
            self.msix_group.as_ref(),
            self.irqs.intx().is_some(),
        )?;
        for (index, address) in placed {
            if let Err(e) = config.regs_mut().set_bar_address(index, address) {
                log::warn!("{}: BAR {index} could not be placed again: {e}", self.name);
            }
        }
        self.config = config;
        self.irqs.sync(self.irqs.idle())?;
        Ok(decoding.into_iter().map(BarChange::Unmapped).collect())
    }

    /// Reads a BAR as the guest does (a trapped access): the MSI-X table and PBA from the
    /// model, anything else from the device at the same offset and width.
    pub fn bar_read(&self, index: usize, offset: u64, data: &mut [u8]) -> Result<(), VfioPciError> {
        let msix = self.config.msix().map(|(_, m)| m);
        match route(
            &self.name,
            &self.layout.bars,
            msix.map(|m| m.layout()),
            index,
            offset,
            data.len(),
        )? {
            BarTarget::MsixTable(at) => {
                if let Some(m) = msix {
                    m.read_table(at, data);
                }
                Ok(())
            }
            BarTarget::MsixPba(at) => {
                if let Some(m) = msix {
                    m.read_pba(at, data);
                }
                Ok(())
            }
            BarTarget::Region => self.region_access("read", index, offset, data.len(), || {
                self.device.region_read(index as u32, offset, data)
            }),
        }
    }

    /// Writes a BAR as the guest does (a trapped access): the MSI-X table to the model (PBA
    /// writes are dropped, it is read-only), anything else to the device at the same offset and
    /// width. The ROM is read-only.
    pub fn bar_write(
        &mut self,
        index: usize,
        offset: u64,
        data: &[u8],
    ) -> Result<(), VfioPciError> {
        let layout = self.config.msix().map(|(_, m)| m.layout());
        let target = route(
            &self.name,
            &self.layout.bars,
            layout,
            index,
            offset,
            data.len(),
        )?;
        if index == PCI_ROM_BAR_INDEX {
            return Err(VfioPciError::BarAccess {
                device: self.name.clone(),
                index,
                offset,
                len: data.len(),
                fault: BarAccessFault::ReadOnly,
            });
        }
        match target {
            BarTarget::MsixTable(at) => {
                if let Some(m) = self.config.msix_mut() {
                    m.write_table(at, data);
                }
                Ok(())
            }
            BarTarget::MsixPba(_) => {
                log::debug!("{}: guest write to the MSI-X PBA dropped", self.name);
                Ok(())
            }
            BarTarget::Region => self.region_access("write", index, offset, data.len(), || {
                self.device.region_write(index as u32, offset, data)
            }),
        }
    }

    fn region_access(
        &self,
        op: &'static str,
        index: usize,
        offset: u64,
        len: usize,
        access: impl FnOnce() -> Result<usize, crate::errno::Errno>,
    ) -> Result<(), VfioPciError> {
        let error = |source| VfioPciError::RegionAccess {
            device: self.name.clone(),
            op,
            index: index as u32,
            offset,
            len,
            source,
        };
        match access() {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(error(crate::errno::Errno::EIO)),
            Err(e) => Err(error(e)),
        }
    }

    /// The host index the guest's MSI / MSI-X state calls for.
    fn desired_host_irq(&self) -> HostIrq {
        if let Some((_, msix)) = self.config.msix() {
            if msix.control().enabled {
                return HostIrq::Msix(self.msix_host_vectors);
            }
        }
        if let Some((_, msi)) = self.config.msi() {
            if let MsiMode::Enabled { vectors } = msi.mode() {
                return HostIrq::Msi(vectors);
            }
        }
        self.irqs.idle()
    }

    fn sync_host_irqs(&mut self) {
        let desired = self.desired_host_irq();
        if let Err(e) = self.irqs.sync(desired) {
            log::error!(
                "{}: host interrupts not set up as the guest asked: {e}",
                self.name
            );
        }
    }

    /// A guest-initiated function level reset: the device is reset as vfio-pci does it (the
    /// host keeps the interrupt set-up, the guest restores the config state it saved).
    fn function_level_reset(&self) {
        if self.layout.info.flags & VFIO_DEVICE_FLAGS_RESET == 0 {
            log::warn!(
                "{}: guest FLR ignored: the device cannot be reset",
                self.name
            );
            return;
        }
        if let Err(e) = self.device.reset() {
            log::warn!("{}: guest FLR failed: {e}", self.name);
        }
    }
}

impl PciDevice for VfioPciDevice {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) -> Vec<BarChange> {
        let outcome = self.config.write(offset, data);
        if outcome.msi.is_some() || outcome.msix.is_some() {
            self.sync_host_irqs();
        }
        if outcome.flr {
            self.function_level_reset();
        }
        outcome.bar_changes
    }

    fn bars(&self) -> Vec<PciBar> {
        self.config.regs().bars()
    }

    fn set_bar_address(&mut self, index: usize, address: u64) -> Result<(), PciBarError> {
        self.config.regs_mut().set_bar_address(index, address)
    }

    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if let Err(e) = self.bar_read(index, offset, data) {
            log::warn!("{e}");
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]) {
        if let Err(e) = self.bar_write(index, offset, data) {
            log::warn!("{e}");
        }
    }
}

impl Drop for VfioPciDevice {
    fn drop(&mut self) {
        // The device may outlive us (the VMM holds it too): leave no eventfd of ours in it.
        if let Err(e) = self.irqs.disable() {
            log::warn!("{}: {e}", self.name);
        }
        for (index, fd) in [
            (VFIO_PCI_ERR_IRQ_INDEX, &self.err),
            (VFIO_PCI_REQ_IRQ_INDEX, &self.req),
        ] {
            if fd.is_some() {
                if let Err(e) = disable_irq_index(self.device.as_ref(), index) {
                    log::warn!("{}: releasing IRQ index {index} failed: {e}", self.name);
                }
            }
        }
    }
}

/// The virtual config space as at construction, with fresh MSI / MSI-X models on the groups.
fn build_config(
    name: &str,
    device: &Arc<dyn VfioDevice>,
    layout: &DeviceLayout,
    plan: &CapabilityPlan,
    msi_group: Option<&Arc<dyn InterruptSourceGroup>>,
    msix_group: Option<&Arc<dyn InterruptSourceGroup>>,
    intx: bool,
) -> Result<VirtualConfig, VfioPciError> {
    let msi = match (plan.msi(), msi_group) {
        (Some((_, cfg)), Some(group)) => Some(MsiCapability::new(cfg, group.clone()).map_err(
            |source| VfioPciError::Msi {
                device: name.to_string(),
                source,
            },
        )?),
        _ => None,
    };
    let msix = match (plan.msix(), msix_group) {
        (Some((_, l)), Some(group)) => Some(MsixConfig::new(l, group.clone()).map_err(
            |source| VfioPciError::Msix {
                device: name.to_string(),
                source,
            },
        )?),
        _ => None,
    };
    VirtualConfig::new(name, device.clone(), layout, plan, msi, msix, intx)
}

/// Hands VFIO an eventfd for the ERR or REQ index, if the device has it. A device that refuses
/// keeps working without the notification (logged).
fn wire_notification(
    device: &dyn VfioDevice,
    layout: &DeviceLayout,
    name: &str,
    index: u32,
) -> Option<Arc<EventFd>> {
    layout.usable_irq(index)?;
    let what = if index == VFIO_PCI_ERR_IRQ_INDEX {
        "ERR"
    } else {
        "REQ"
    };
    let fd = match EventFd::new(EFD_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("{name}: no eventfd for the VFIO {what} notification: {e}");
            return None;
        }
    };
    match set_irqs_eventfds(device, index, &[fd.as_raw_fd()]) {
        Ok(()) => Some(Arc::new(fd)),
        Err(e) => {
            log::warn!("{name}: the device refused an eventfd for its {what} notification: {e}");
            None
        }
    }
}
