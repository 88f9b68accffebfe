//! [`EmulatedVfioDevice`]: a [`DeviceModel`] behind the vfio-pci personality, as a
//! [`VfioDevice`].

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use migration::engine::{MigrationEngine, MigrationHooks};
use migration::v1_region::V1Region;

use super::binding::Binding;
use super::config::VfioConfig;
use super::dma_log::{BlockedDmaPort, DmaLog, LoggingDmaPort};
use super::irqs::{IrqCounts, IrqRouter, PhysicalIrqControl};
use super::model::{DeviceModel, MigrationSupport};
use super::phys_irq::{PhysMsi, PhysMsix};
use super::regions::RegionTable;
use super::v1_window::{V1_STAGING_OFFSET, V1Window, V1WindowError};
use crate::errno::Errno;
use crate::host::dma::DmaPort;
use crate::host::iommufd::Iommufd;
use crate::vfio::{
    DeviceInfo, DmaLoggingRange, DmaLoggingReport, IrqInfo, IrqSet, MigrationData, MmapArea,
    VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_NUM_IRQS, VfioDevice,
};

/// `PCI_COMMAND_MEMORY`.
const COMMAND_MEMORY: u16 = 0x2;
/// PASID extended capability ID.
const PCI_EXT_CAP_ID_PASID: u16 = 0x1b;
/// PASID control: enable.
const PASID_CTRL_ENABLE: u16 = 0x1;
/// Host addresses given to the device's BARs (as firmware would assign them): above 4 GiB
/// for 64-bit BARs, below for 32-bit ones, one 16 MiB slot per BAR.
const HOST_BAR_BASE_32: u64 = 0xe000_0000;
const HOST_BAR_BASE_64: u64 = 0x38_0000_0000;
const HOST_BAR_SLOT: u64 = 16 << 20;

/// Why an emulated device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmulatedDeviceError {
    /// The model could not be built.
    #[error("device {name}: {source}")]
    Model {
        /// The device's name.
        name: String,
        /// The model's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A BAR of the model cannot be given a host address (it is too large for its slot).
    #[error("{kind}: BAR {index} of {size:#x} bytes cannot be placed: {reason}")]
    Bar {
        /// The device kind.
        kind: String,
        /// The BAR.
        index: usize,
        /// Its size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// The migration engine refused the model's flags.
    #[error("{kind}: migration engine: {source}")]
    Migration {
        /// The device kind.
        kind: String,
        /// The engine's error.
        #[source]
        source: migration::engine::EngineError,
    },
    /// The v1 migration region could not be built.
    #[error("{kind}: {source}")]
    V1Region {
        /// The device kind.
        kind: String,
        /// Why.
        #[source]
        source: V1WindowError,
    },
}

/// The state shared by the device's methods, behind one lock.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) model: Box<dyn DeviceModel>,
    pub(super) vconfig: VfioConfig,
    pub(super) regions: RegionTable,
    pub(super) engine: Option<MigrationEngine>,
    pub(super) v1: Option<V1Region<V1Window>>,
    pub(super) support: Option<MigrationSupport>,
    pub(super) binding: Binding,
    pub(super) group: super::group_binding::GroupUse,
}

/// The device model, its migration hooks and its engine, borrowed together.
pub(super) struct MigrationParts<'a> {
    pub(super) engine: &'a mut MigrationEngine,
    pub(super) hooks: &'a mut dyn MigrationHooks,
    pub(super) v1: Option<&'a mut V1Region<V1Window>>,
}

impl Core {
    /// The engine and hooks, if the device migrates.
    pub(super) fn migration(&mut self) -> Option<MigrationParts<'_>> {
        let engine = self.engine.as_mut()?;
        let hooks = self.model.migration_hooks()?;
        Some(MigrationParts {
            engine,
            hooks,
            v1: self.v1.as_mut(),
        })
    }

    /// Function reset: the model (through the migration engine when it migrates, which goes
    /// back to RUNNING and drops any session).
    pub(super) fn reset(&mut self) {
        match self.migration() {
            Some(MigrationParts {
                engine,
                hooks,
                v1: Some(v1),
            }) => v1.reset(engine, hooks),
            Some(MigrationParts { engine, hooks, .. }) => engine.reset(hooks),
            None => self.model.reset(),
        }
    }
}

pub(super) struct Shared {
    pub(super) core: Mutex<Core>,
    pub(super) irq: Arc<IrqRouter>,
    pub(super) log: Arc<DmaLog>,
    pub(super) name: String,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

/// An emulated PCI device as vfio-pci presents a real one.
#[derive(Debug)]
pub struct EmulatedVfioDevice {
    shared: Arc<Shared>,
}

/// The model's configuration space as the host programs MSI/MSI-X in it.
struct PhysIrqs<'a> {
    model: &'a mut dyn DeviceModel,
}

impl PhysicalIrqControl for PhysIrqs<'_> {
    fn set_msi(&mut self, nvec: Option<u32>) {
        let config = self.model.config_mut();
        if let Some(msi) = PhysMsi::find(config) {
            match nvec {
                Some(n) => msi.enable(config, n),
                None => msi.disable(config),
            }
        }
    }

    fn set_msix(&mut self, enabled: bool) {
        let config = self.model.config_mut();
        if let Some(msix) = PhysMsix::find(config) {
            msix.set_enabled(config, enabled);
        }
    }
}

impl EmulatedVfioDevice {
    /// Builds the device: `build` makes the model from the device's interrupt router. The host
    /// then places its BARs and enables memory decoding (as `pci_enable_device` does at open),
    /// and the configuration region is set up from the result.
    pub fn new<M, E>(
        name: &str,
        build: impl FnOnce(Arc<IrqRouter>) -> Result<M, E>,
    ) -> Result<Self, EmulatedDeviceError>
    where
        M: DeviceModel + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        // The router's vector counts come from the model's configuration space: the model is
        // built with the router, whose counts are filled in right after.
        let irq = IrqRouter::new(name, IrqCounts::default());
        let model = build(irq.clone()).map_err(|e| EmulatedDeviceError::Model {
            name: name.to_string(),
            source: Box::new(e),
        })?;
        irq.set_counts(IrqCounts::from_config(model.config()));
        Self::assemble(name, Box::new(model), irq)
    }

    fn assemble(
        name: &str,
        mut model: Box<dyn DeviceModel>,
        irq: Arc<IrqRouter>,
    ) -> Result<Self, EmulatedDeviceError> {
        let kind = model.kind().to_string();
        place_bars(&kind, &mut *model)?;
        let support = model.migration_support();
        let engine = match support {
            Some(s) => Some(MigrationEngine::new(s.engine_flags).map_err(|source| {
                EmulatedDeviceError::Migration {
                    kind: kind.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let v1 = match support {
            Some(s) if s.v1_region => {
                let v1_err = |source| EmulatedDeviceError::V1Region {
                    kind: kind.clone(),
                    source,
                };
                let layout = V1Window::layout().map_err(|e| v1_err(e.into()))?;
                let window = V1Window::new(name).map_err(v1_err)?;
                Some(
                    V1Region::new(layout, window)
                        .and_then(|r| r.with_staging_offset(V1_STAGING_OFFSET))
                        .map_err(|e| v1_err(e.into()))?,
                )
            }
            _ => None,
        };
        let log = DmaLog::new();
        model.set_dma_port(Arc::new(LoggingDmaPort::new(
            Arc::new(BlockedDmaPort),
            log.clone(),
        )));
        let vconfig = VfioConfig::new(model.config());
        let regions = RegionTable::new(&*model, v1.as_ref().map(|r| r.window().mapped().clone()));
        let core = Core {
            model,
            vconfig,
            regions,
            engine,
            v1,
            support,
            binding: Binding::default(),
            group: Default::default(),
        };
        Ok(EmulatedVfioDevice {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                irq,
                log,
                name: name.to_string(),
            }),
        })
    }

    /// The device's name (from its spec).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sets the IOMMU the device sits behind on the emulated host (before binding; the default
    /// is a VT-d-like IOMMU with 20-bit PASIDs).
    pub fn set_iommu_profile(&self, profile: crate::host::emulated::IommuProfile) {
        self.lock().binding.profile = profile;
    }

    pub(super) fn dma_log(&self) -> Arc<DmaLog> {
        self.shared.log.clone()
    }

    /// The device's interrupt router.
    pub fn irq_router(&self) -> &Arc<IrqRouter> {
        &self.shared.irq
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        self.shared.lock()
    }

    pub(super) fn weak(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    /// Connects the device's DMA to `port` as the host does when it attaches the device to an
    /// IOMMU: every DMA the model issues goes through `port` (DMA-logged by the device when
    /// logging is on). With `max_pasid_log2` non-zero (the IOMMU handles PASIDs) the host
    /// enables the device's PASID capability, as the IOMMU driver does at probe; with 0 it is
    /// disabled and the device issues no PASID. The binding to the emulated iommufd calls this;
    /// so may hosts that translate DMA elsewhere, and tests.
    pub fn connect_dma(&self, port: Arc<dyn DmaPort>, max_pasid_log2: u8) {
        let mut core = self.lock();
        core.connect_dma(port, max_pasid_log2, &self.shared.log);
    }

    /// Disconnects the device's DMA: every access is blocked from now on.
    pub fn disconnect_dma(&self) {
        let mut core = self.lock();
        core.connect_dma(Arc::new(BlockedDmaPort), 0, &self.shared.log);
    }
}

impl Core {
    /// The "Max PASID Width" of the device's own PASID extended capability (bits 8..12 of its
    /// capability register), 0 if it has none: what the IOMMU may use for this device.
    pub(super) fn pasid_capability_width(&mut self) -> u8 {
        let config = self.model.config_mut();
        match config.find_extended_capability(PCI_EXT_CAP_ID_PASID) {
            Some(pasid) => ((super::phys_irq::read16(config, pasid + 4) >> 8) & 0x1f) as u8,
            None => 0,
        }
    }

    pub(super) fn connect_dma(
        &mut self,
        port: Arc<dyn DmaPort>,
        max_pasid_log2: u8,
        log: &Arc<DmaLog>,
    ) {
        let config = self.model.config_mut();
        if let Some(pasid) = config.find_extended_capability(PCI_EXT_CAP_ID_PASID) {
            let ctrl_at = pasid + 6;
            let ctrl = super::phys_irq::read16(config, ctrl_at) & !PASID_CTRL_ENABLE;
            let on = if max_pasid_log2 > 0 {
                PASID_CTRL_ENABLE
            } else {
                0
            };
            super::phys_irq::write16(config, ctrl_at, ctrl | on);
        }
        self.model
            .set_dma_port(Arc::new(LoggingDmaPort::new(port, log.clone())));
        self.model.config_changed();
    }
}

/// Gives every BAR a host address and enables memory decoding, as firmware and
/// `pci_enable_device` leave a device at open.
fn place_bars(kind: &str, model: &mut dyn DeviceModel) -> Result<(), EmulatedDeviceError> {
    let config = model.config_mut();
    for bar in config.bars() {
        if bar.size > HOST_BAR_SLOT {
            return Err(EmulatedDeviceError::Bar {
                kind: kind.to_string(),
                index: bar.index,
                size: bar.size,
                reason: format!("larger than the {HOST_BAR_SLOT:#x}-byte host slot"),
            });
        }
        let base = if bar.kind.is_64bit() {
            HOST_BAR_BASE_64
        } else {
            HOST_BAR_BASE_32
        };
        let address = base + bar.index as u64 * HOST_BAR_SLOT;
        config
            .set_bar_address(bar.index, address)
            .map_err(|e| EmulatedDeviceError::Bar {
                kind: kind.to_string(),
                index: bar.index,
                size: bar.size,
                reason: e.to_string(),
            })?;
    }
    let command = config.command() | COMMAND_MEMORY;
    let _ = config.write(0x04, &command.to_le_bytes());
    Ok(())
}

impl VfioDevice for EmulatedVfioDevice {
    fn device_info(&self) -> Result<DeviceInfo, Errno> {
        let core = self.lock();
        Ok(DeviceInfo {
            flags: VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI,
            num_regions: core.regions.num_regions(),
            num_irqs: VFIO_PCI_NUM_IRQS,
        })
    }

    fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        self.lock().get_region_info(buf)
    }

    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut core = self.lock();
        core.region_read(&self.shared.irq, index, offset, buf)
    }

    fn region_write(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let mut core = self.lock();
        core.region_write(&self.shared.irq, index, offset, buf)
    }

    fn region_mmap(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno> {
        self.lock().region_mmap(index, offset, len, writable)
    }

    fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno> {
        self.shared.irq.irq_info(index)
    }

    fn set_irqs(&self, req: &IrqSet, data: &[u8]) -> Result<(), Errno> {
        let mut core = self.lock();
        let result = self.shared.irq.set_irqs(
            req,
            data,
            &mut PhysIrqs {
                model: &mut *core.model,
            },
        );
        core.model.config_changed();
        result
    }

    fn reset(&self) -> Result<(), Errno> {
        self.lock().reset();
        Ok(())
    }

    fn feature_probe(&self, feature: u32, get: bool, set: bool) -> Result<(), Errno> {
        self.lock().feature_probe(feature, get, set)
    }

    fn migration_flags(&self) -> Result<u64, Errno> {
        self.lock().v2_flags()
    }

    fn mig_state(&self) -> Result<u32, Errno> {
        self.lock().mig_state()
    }

    fn set_mig_state(&self, state: u32) -> Result<Option<Box<dyn MigrationData>>, Errno> {
        let session = self.lock().set_mig_state(state)?;
        Ok(session.map(|id| {
            Box::new(super::features::SessionStream::new(self.weak(), id)) as Box<dyn MigrationData>
        }))
    }

    fn mig_data_size(&self) -> Result<u64, Errno> {
        self.lock().mig_data_size()
    }

    fn dma_logging_start(
        &self,
        page_size: &mut u64,
        ranges: &[DmaLoggingRange],
    ) -> Result<(), Errno> {
        self.lock().check_logging()?;
        self.shared.log.start(page_size, ranges)
    }

    fn dma_logging_stop(&self) -> Result<(), Errno> {
        self.lock().check_logging()?;
        self.shared.log.stop();
        Ok(())
    }

    fn dma_logging_report(&self, req: &DmaLoggingReport, bitmap: &mut [u64]) -> Result<(), Errno> {
        self.lock().check_logging()?;
        self.shared.log.report(req, bitmap)
    }

    fn bind_iommufd(&self, iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
        super::group_binding::check_cdev_bind(self)?;
        super::binding::bind(self, iommufd)
    }

    fn attach_pt(&self, pt_id: u32, pasid: Option<u32>) -> Result<u32, Errno> {
        super::binding::attach(self, pt_id, pasid)
    }

    fn detach_pt(&self, pasid: Option<u32>) -> Result<(), Errno> {
        super::binding::detach(self, pasid)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
