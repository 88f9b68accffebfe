//! `emulated:dma-engine` (`docs/dma-engine.md`): a DMA controller with a descriptor ring in
//! host memory, per-descriptor PASIDs, completion records, 1 MiB of device memory,
//! MSI-X / MSI / INTx, migration (v2 with PRE_COPY and P2P, and the v1 region) and DMA logging.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | the physical configuration space |
//! | [`regs`] | BAR 0 registers and their saved form |
//! | [`descriptor`] | descriptors, checks, status codes, completion records |
//! | [`devmem`] | device memory and its pre-copy change tracking |
//! | [`process`] | running the ring: DMA, completions, errors, interrupts |
//! | [`migrate`] | the migration hooks: sections, quiesce/stop, load |

pub mod config;
pub mod descriptor;
pub mod devmem;
pub mod migrate;
pub mod process;
pub mod regs;

use std::sync::Arc;

use devices::pci::PciConfiguration;
use migration::engine::MigrationHooks;
use migration::vfio_v2::{MIGRATION_P2P, MIGRATION_PRE_COPY, MIGRATION_STOP_COPY};

use self::devmem::{DEVMEM_SIZE, DeviceMemory};
use self::regs::*;
use super::regs::{read_dwords, split_write};
use crate::emulated_device::vfio_core::dma_log::BlockedDmaPort;
use crate::emulated_device::vfio_core::phys_irq::{PhysMsi, PhysMsix};
use crate::emulated_device::vfio_core::{
    BarAccess, DeviceModel, IrqRouter, MappedRange, MigrationSupport, SharedMemoryError,
};
use crate::host::dma::DmaPort;

/// The device kind, as it appears in specs and migration streams.
pub const KIND: &str = "emulated:dma-engine";
/// `PCI_COMMAND_MASTER`.
const COMMAND_MASTER: u16 = 0x4;
/// `PCI_STATUS_INTERRUPT`.
const STATUS_INTERRUPT: u16 = 0x0008;
/// PASID extended capability ID.
const EXT_CAP_ID_PASID: u16 = 0x1b;
/// The MSI-X table and PBA pages of BAR 2: trapped, not memory.
const MSIX_PAGES: std::ops::Range<u64> = DEVMEM_SIZE..config::BAR2_TAIL_OFFSET;

/// Which migration interfaces the device offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// None: the device cannot migrate.
    Off,
    /// The deprecated v1 region only.
    V1,
    /// The v2 features only.
    V2,
    /// Both (the default): they share one state.
    Both,
}

/// Build options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaEngineOptions {
    /// The PASID capability exists (the device can tag DMA with PASIDs).
    pub pasid: bool,
    /// Migration interfaces.
    pub migration: MigrationMode,
}

impl Default for DmaEngineOptions {
    fn default() -> Self {
        DmaEngineOptions {
            pasid: true,
            migration: MigrationMode::Both,
        }
    }
}

/// Why a DMA engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DmaEngineError {
    /// The configuration space.
    #[error(transparent)]
    Config(#[from] config::ConfigBuildError),
    /// Device memory.
    #[error(transparent)]
    Memory(#[from] SharedMemoryError),
}

/// The DMA engine.
#[derive(Debug)]
pub struct DmaEngine {
    pub(super) options: DmaEngineOptions,
    pub(super) config: PciConfiguration,
    pub(super) irq: Arc<IrqRouter>,
    pub(super) dma: Arc<dyn DmaPort>,
    pub(super) regs: Registers,
    pub(super) mem: DeviceMemory,
    /// Answers MMIO with side effects and advances (migration: not STOP and the like).
    pub(super) operating: bool,
    /// May initiate DMA (migration: RUNNING or PRE_COPY).
    pub(super) dma_allowed: bool,
    pub(super) msi: Option<PhysMsi>,
    pub(super) msix: Option<PhysMsix>,
    pub(super) pasid_cap: Option<u16>,
}

impl DmaEngine {
    /// A DMA engine named `name` (for its memory files and logs) in its power-on state,
    /// raising interrupts through `irq`.
    pub fn new(
        name: &str,
        options: DmaEngineOptions,
        irq: Arc<IrqRouter>,
    ) -> Result<Self, DmaEngineError> {
        let config = config::build(options.pasid)?;
        let mem = DeviceMemory::new(name)?;
        Ok(DmaEngine {
            msi: PhysMsi::find(&config),
            msix: PhysMsix::find(&config),
            pasid_cap: config.find_extended_capability(EXT_CAP_ID_PASID),
            options,
            config,
            irq,
            dma: Arc::new(BlockedDmaPort),
            regs: Registers::default(),
            mem,
            operating: true,
            dma_allowed: true,
        })
    }

    /// The register state (for inspection).
    pub fn registers(&self) -> Registers {
        self.regs
    }

    /// Whether PASID is enabled in the PASID capability (only then are descriptor PASIDs
    /// used).
    pub fn pasid_enabled(&self) -> bool {
        self.pasid_cap.is_some_and(|at| {
            crate::emulated_device::vfio_core::phys_irq::read16(&self.config, at + 6) & 1 != 0
        })
    }

    pub(super) fn bus_master(&self) -> bool {
        self.config.command() & COMMAND_MASTER != 0
    }

    /// Raises interrupt `vector` (0 completion, 1 error): MSI-X when enabled, else MSI, else
    /// the INTx source bit.
    pub(super) fn raise(&mut self, vector: u32) {
        if let Some(msix) = self.msix {
            if msix.enabled(&self.config) {
                self.irq.msix(vector);
                return;
            }
        }
        if let Some(msi) = self.msi {
            if msi.enabled(&self.config) {
                // With fewer vectors enabled than the device has, the vector number wraps
                // into the enabled ones (the function modifies only the low message bits).
                let n = msi.enabled_vectors(&self.config).max(1);
                self.irq.msi(&mut self.config, &msi, vector % n);
                return;
            }
        }
        self.regs.int_status |= 1 << vector;
        self.update_intx();
    }

    /// Drives INTx from `INT_STATUS` and `CTRL.INT_ENABLE`.
    pub(super) fn update_intx(&mut self) {
        let level = self.regs.int_status != 0 && self.regs.ctrl & CTRL_INT_ENABLE != 0;
        self.config.set_status_bits(STATUS_INTERRUPT, level);
        self.irq.set_intx(level);
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let r = &self.regs;
        match offset {
            REG_ID => DMA_ENGINE_ID,
            REG_CAPS => {
                let pasid = if self.options.pasid { CAPS_PASID } else { 0 };
                pasid | CAPS_COMPARE | (MAX_QUEUE_SIZE << 16)
            }
            REG_CTRL => r.ctrl,
            REG_STATUS => r.status,
            REG_QUEUE_BASE => r.queue_base as u32,
            x if x == REG_QUEUE_BASE + 4 => (r.queue_base >> 32) as u32,
            REG_QUEUE_SIZE => r.queue_size,
            REG_QUEUE_HEAD => r.head,
            REG_QUEUE_TAIL => r.tail,
            REG_COMPLETED => r.completed,
            REG_ERROR_CODE => r.error_code,
            REG_ERROR_DESC => r.error_desc,
            REG_FAULT_ADDR => r.fault_addr as u32,
            x if x == REG_FAULT_ADDR + 4 => (r.fault_addr >> 32) as u32,
            REG_INT_STATUS => r.int_status,
            _ => 0,
        }
    }

    fn write_regs(&mut self, offset: u64, data: &[u8]) {
        for w in split_write(offset, data) {
            let r = &mut self.regs;
            match w.offset {
                REG_CTRL => {
                    let new = w.merge(r.ctrl);
                    if w.value & w.mask & CTRL_RESET != 0 {
                        r.reset_queue();
                    }
                    r.ctrl = new & (CTRL_ENABLE | CTRL_INT_ENABLE);
                    self.update_intx();
                }
                REG_STATUS if w.value & w.mask & STATUS_ERROR != 0 => {
                    r.status &= !(STATUS_ERROR | STATUS_HALTED);
                }
                REG_QUEUE_BASE => {
                    let lo = w.merge(r.queue_base as u32);
                    r.queue_base =
                        (r.queue_base & !0xffff_ffff | u64::from(lo)) & !QUEUE_BASE_ALIGN_MASK;
                }
                x if x == REG_QUEUE_BASE + 4 => {
                    let hi = w.merge((r.queue_base >> 32) as u32);
                    r.queue_base = (r.queue_base & 0xffff_ffff) | (u64::from(hi) << 32);
                }
                REG_QUEUE_SIZE => {
                    let size = w.merge(r.queue_size);
                    if size.is_power_of_two() && size <= MAX_QUEUE_SIZE {
                        r.queue_size = size;
                    }
                }
                REG_QUEUE_TAIL => {
                    let tail = w.merge(r.tail);
                    if tail < r.queue_size {
                        r.tail = tail;
                    }
                }
                REG_INT_STATUS => {
                    r.int_status &= !(w.value & w.mask);
                    self.update_intx();
                }
                _ => {}
            }
        }
    }

    /// Power-on state: registers, device memory, interrupt line.
    pub(super) fn function_reset(&mut self) {
        self.regs = Registers::default();
        if let Err(e) = self.mem.clear() {
            log::error!("{KIND}: clearing device memory at reset: {e}");
        }
        self.operating = true;
        self.dma_allowed = true;
        self.update_intx();
    }
}

impl DeviceModel for DmaEngine {
    fn kind(&self) -> &str {
        KIND
    }

    fn config(&self) -> &PciConfiguration {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfiguration {
        &mut self.config
    }

    fn bar_access(&self) -> Vec<BarAccess> {
        let tail = config::BAR2_TAIL_OFFSET;
        vec![BarAccess {
            index: 2,
            mmap: vec![
                MappedRange {
                    offset: 0,
                    len: DEVMEM_SIZE,
                    file_offset: 0,
                },
                MappedRange {
                    offset: tail,
                    len: devmem::BAR2_SIZE - tail,
                    file_offset: tail,
                },
            ],
            memory: Some(self.mem.bar_memory().clone()),
        }]
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match index {
            0 => read_dwords(offset, data, |reg| self.read_reg(reg)),
            2 if !MSIX_PAGES.contains(&offset) => {
                if let Err(e) = self.mem.bar_memory().read(offset, data) {
                    log::warn!("{KIND}: BAR 2 read at {offset:#x}: {e}");
                    data.fill(0xff);
                }
            }
            // The rest of the MSI-X table page and the PBA (no vector is ever pending in the
            // host-owned table).
            2 => data.fill(0),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if !self.operating {
            log::debug!("{KIND}: BAR {index} write at {offset:#x} while stopped: dropped");
            return;
        }
        match index {
            0 => {
                self.write_regs(offset, data);
                self.process();
            }
            2 if !MSIX_PAGES.contains(&offset) => {
                if let Err(e) = self.mem.bar_memory().write(offset, data) {
                    log::warn!("{KIND}: BAR 2 write at {offset:#x}: {e}");
                }
            }
            _ => {}
        }
    }

    fn config_changed(&mut self) {
        self.update_intx();
        self.process();
    }

    fn set_dma_port(&mut self, port: Arc<dyn DmaPort>) {
        self.dma = port;
    }

    fn reset(&mut self) {
        self.mem.snapshot_end();
        self.function_reset();
    }

    fn migration_support(&self) -> Option<MigrationSupport> {
        let all = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;
        let (v2, v1) = match self.options.migration {
            MigrationMode::Off => return None,
            MigrationMode::V1 => (0, true),
            MigrationMode::V2 => (all, false),
            MigrationMode::Both => (all, true),
        };
        Some(MigrationSupport {
            v2_flags: v2,
            v1_region: v1,
            engine_flags: all,
        })
    }

    fn migration_hooks(&mut self) -> Option<&mut dyn MigrationHooks> {
        match self.options.migration {
            MigrationMode::Off => None,
            _ => Some(self),
        }
    }

    fn dma_logging(&self) -> bool {
        true
    }
}
