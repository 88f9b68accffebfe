//! The device's regions as vfio-pci numbers them: BARs 0..5, the ROM (6), configuration space
//! (7), VGA (8, absent), then device-specific regions (the v1 migration region, if any, at 9).
//! Region info with its capabilities, `pread`/`pwrite` with the kernel's bounds and access
//! widths (`vfio_pci_bar_rw`, `vfio_pci_core_do_io_rw`), and `mmap` of the memory-backed parts.

use std::ops::Range;
use std::sync::Arc;

use migration::vfio_v1::{REGION_SUBTYPE_MIGRATION_DEPRECATED, REGION_TYPE_MIGRATION_DEPRECATED};

use super::device::Core;
use super::irqs::IrqRouter;
use super::model::{DeviceModel, MappedRange};
use super::phys_irq::{PhysMsi, PhysMsix};
use super::shared_memory::SharedMemory;
use super::v1_window::V1Window;
use crate::errno::Errno;
use crate::vfio::{
    MmapArea, REGION_INFO_SIZE, RegionCap, RegionInfo, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_NUM_REGIONS, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

/// `VFIO_PCI_OFFSET_SHIFT`: region `i` lives at `i << 40` of the device file.
const OFFSET_SHIFT: u32 = 40;
/// The CPU page size, the granule of mappings.
const PAGE_SIZE: u64 = 4096;
/// The index of the v1 migration region when the device has one.
pub const V1_REGION_INDEX: u32 = VFIO_PCI_NUM_REGIONS;

/// One BAR as users reach it.
#[derive(Debug)]
struct BarRegion {
    size: u64,
    io: bool,
    mmap: Vec<MappedRange>,
    memory: Option<Arc<SharedMemory>>,
    /// The MSI-X table's bytes in this BAR: reads of it return all-ones and writes are
    /// dropped, as vfio-pci keeps the table to itself.
    msix_table: Option<Range<u64>>,
}

/// The regions of a device.
#[derive(Debug)]
pub struct RegionTable {
    bars: [Option<BarRegion>; 6],
    v1_window: Option<Arc<SharedMemory>>,
}

impl RegionTable {
    /// The regions of `model` (and of its v1 window's mmap-able memory, if it has one).
    pub fn new(model: &dyn DeviceModel, v1_window: Option<Arc<SharedMemory>>) -> Self {
        let config = model.config();
        let mut bars: [Option<BarRegion>; 6] = Default::default();
        let access = model.bar_access();
        let msix = PhysMsix::find(config).map(|m| {
            let (bir, offset) = m.table(config);
            let len = u64::from(m.table_size(config)) * 16;
            (usize::from(bir), u64::from(offset)..u64::from(offset) + len)
        });
        for bar in config.bars() {
            let Some(slot) = bars.get_mut(bar.index) else {
                continue;
            };
            let a = access.iter().find(|a| a.index == bar.index);
            *slot = Some(BarRegion {
                size: bar.size,
                io: bar.kind.is_io(),
                mmap: a.map(|a| a.mmap.clone()).unwrap_or_default(),
                memory: a.and_then(|a| a.memory.clone()),
                msix_table: msix
                    .as_ref()
                    .filter(|(bir, _)| *bir == bar.index)
                    .map(|(_, r)| r.clone()),
            });
        }
        RegionTable { bars, v1_window }
    }

    /// Regions: the nine vfio-pci ones plus the device-specific ones.
    pub fn num_regions(&self) -> u32 {
        VFIO_PCI_NUM_REGIONS + u32::from(self.v1_window.is_some())
    }

    fn bar(&self, index: u32) -> Option<&BarRegion> {
        self.bars
            .get(index as usize)
            .and_then(Option::as_ref)
            .filter(|b| b.size != 0)
    }
}

/// The `(offset, size)` areas of `mmap`, with a sparse capability unless they cover the
/// whole region.
fn mmap_caps(areas: &[(u64, u64)], size: u64) -> Vec<RegionCap> {
    if areas == [(0, size)] {
        Vec::new()
    } else {
        vec![RegionCap::SparseMmap(areas.to_vec())]
    }
}

impl Core {
    /// The region's description.
    pub(super) fn region_info(&self, index: u32) -> Result<RegionInfo, Errno> {
        let offset = u64::from(index) << OFFSET_SHIFT;
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        let mut info = RegionInfo {
            flags: 0,
            index,
            size: 0,
            offset,
            caps: Vec::new(),
        };
        match index {
            0..=5 => {
                if let Some(bar) = self.regions.bar(index) {
                    info.size = bar.size;
                    info.flags = rw;
                    if !bar.mmap.is_empty() {
                        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                        let areas: Vec<(u64, u64)> =
                            bar.mmap.iter().map(|a| (a.offset, a.len)).collect();
                        info.caps = mmap_caps(&areas, bar.size);
                    }
                }
            }
            // No expansion ROM: size 0, no flags.
            VFIO_PCI_ROM_REGION_INDEX => {}
            VFIO_PCI_CONFIG_REGION_INDEX => {
                info.size = u64::from(self.vconfig.size());
                info.flags = rw;
            }
            VFIO_PCI_VGA_REGION_INDEX => return Err(Errno::EINVAL),
            V1_REGION_INDEX if self.v1.is_some() => {
                let extent = V1Window::mmap_extent();
                info.size = self.v1.as_ref().map_or(0, |v| v.layout().region_size());
                info.flags = rw | VFIO_REGION_INFO_FLAG_MMAP;
                info.caps = vec![
                    RegionCap::Type {
                        region_type: REGION_TYPE_MIGRATION_DEPRECATED,
                        subtype: REGION_SUBTYPE_MIGRATION_DEPRECATED,
                    },
                    RegionCap::SparseMmap(vec![(extent.start, extent.end - extent.start)]),
                ];
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(info)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` into the caller's buffer (`argsz` at 0, `index` at 8).
    pub(super) fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.len() < REGION_INFO_SIZE {
            return Err(Errno::EFAULT);
        }
        let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let argsz = word(0) as usize;
        let index = word(8);
        if argsz < REGION_INFO_SIZE {
            return Err(Errno::EINVAL);
        }
        let out = self.region_info(index)?.encode(argsz);
        // The kernel copies the reply into the caller's `argsz` bytes: a buffer smaller than
        // it claims faults.
        buf.get_mut(..out.len())
            .ok_or(Errno::EFAULT)?
            .copy_from_slice(&out);
        Ok(())
    }

    /// `pread` of region `index`.
    pub(super) fn region_read(
        &mut self,
        irq: &IrqRouter,
        index: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        if index >= self.regions.num_regions() {
            return Err(Errno::EINVAL);
        }
        match index {
            0..=5 => self.bar_rw(index, offset, Access::Read(buf)),
            VFIO_PCI_CONFIG_REGION_INDEX => {
                self.vconfig.read(self.model.config(), irq, offset, buf)
            }
            V1_REGION_INDEX => self.v1_rw(offset, Access::Read(buf)),
            // No ROM, no VGA.
            _ => Err(Errno::EINVAL),
        }
    }

    /// `pwrite` of region `index`.
    pub(super) fn region_write(
        &mut self,
        irq: &IrqRouter,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Errno> {
        if index >= self.regions.num_regions() {
            return Err(Errno::EINVAL);
        }
        match index {
            0..=5 => self.bar_rw(index, offset, Access::Write(data)),
            VFIO_PCI_CONFIG_REGION_INDEX => {
                let (n, outcome) =
                    self.vconfig
                        .write(self.model.config_mut(), irq, offset, data)?;
                if outcome.msi_mask_written {
                    let config = self.model.config_mut();
                    if let Some(msi) = PhysMsi::find(config) {
                        irq.msi_mask_changed(config, &msi);
                    }
                }
                if outcome.physical_written {
                    self.model.config_changed();
                }
                if outcome.flr {
                    log::debug!("{}: function-level reset", self.model.kind());
                    self.reset();
                }
                Ok(n)
            }
            V1_REGION_INDEX => self.v1_rw(offset, Access::Write(data)),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `vfio_pci_bar_rw` + `vfio_pci_core_do_io_rw`.
    fn bar_rw(&mut self, index: u32, offset: u64, mut access: Access<'_>) -> Result<usize, Errno> {
        let Some(bar) = self.regions.bar(index) else {
            return Err(Errno::EINVAL);
        };
        if offset >= bar.size {
            return Err(Errno::EINVAL);
        }
        let count = access.len().min((bar.size - offset) as usize);
        let (x_start, x_end) = bar.msix_table.as_ref().map_or((0, 0), |r| (r.start, r.end));
        let test_mem = !bar.io;
        let mut done = 0usize;
        while done < count {
            let off = offset + done as u64;
            let left = count - done;
            let fillable = if off < x_start {
                left.min((x_start - off) as usize)
            } else if off >= x_end {
                left
            } else {
                0
            };
            if fillable == 0 {
                let filled = left.min((x_end - off) as usize);
                if let Access::Read(buf) = &mut access {
                    buf[done..done + filled].fill(0xff);
                }
                done += filled;
                continue;
            }
            let width = if fillable >= 8 && off % 8 == 0 {
                8
            } else if fillable >= 4 && off % 4 == 0 {
                4
            } else if fillable >= 2 && off % 2 == 0 {
                2
            } else {
                1
            };
            if test_mem && !self.vconfig.memory_enabled() {
                return Err(Errno::EIO);
            }
            match &mut access {
                Access::Read(buf) => {
                    self.model
                        .bar_read(index as usize, off, &mut buf[done..done + width])
                }
                Access::Write(data) => {
                    self.model
                        .bar_write(index as usize, off, &data[done..done + width])
                }
            }
            done += width;
        }
        Ok(done)
    }

    fn v1_rw(&mut self, offset: u64, access: Access<'_>) -> Result<usize, Errno> {
        let Some(parts) = self.migration() else {
            return Err(Errno::EINVAL);
        };
        let Some(v1) = parts.v1 else {
            return Err(Errno::EINVAL);
        };
        let size = v1.layout().region_size();
        if offset >= size {
            return Err(Errno::EINVAL);
        }
        let n = access.len().min((size - offset) as usize);
        let result = match access {
            Access::Read(buf) => v1.read(parts.engine, parts.hooks, offset, &mut buf[..n]),
            Access::Write(data) => v1.write(parts.engine, parts.hooks, offset, &data[..n]),
        };
        result.map(|()| n).map_err(|e| {
            log::debug!("v1 migration region access at {offset:#x}: {e}");
            e.errno()
        })
    }

    /// Maps `[offset, offset + len)` (rounded up to pages) of region `index`: it must start on a
    /// page and lie inside one mmap-able area.
    pub(super) fn region_mmap(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno> {
        if len == 0 || offset % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let len = len
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(Errno::EINVAL)?;
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        let (areas, memory): (Vec<MappedRange>, Option<&Arc<SharedMemory>>) = match index {
            0..=5 => {
                let bar = self.regions.bar(index).ok_or(Errno::EINVAL)?;
                (bar.mmap.clone(), bar.memory.as_ref())
            }
            V1_REGION_INDEX if self.regions.v1_window.is_some() => {
                let extent = V1Window::mmap_extent();
                (
                    vec![MappedRange {
                        offset: extent.start,
                        len: extent.end - extent.start,
                        file_offset: 0,
                    }],
                    self.regions.v1_window.as_ref(),
                )
            }
            _ => return Err(Errno::EINVAL),
        };
        let memory = memory.ok_or(Errno::EINVAL)?;
        let area = areas
            .iter()
            .find(|a| a.offset <= offset && end <= a.offset + a.len)
            .ok_or(Errno::EINVAL)?;
        memory.map(area.file_offset + (offset - area.offset), len, writable)
    }
}

/// One region access: a read into a buffer or a write from one.
enum Access<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Access<'_> {
    fn len(&self) -> usize {
        match self {
            Access::Read(b) => b.len(),
            Access::Write(d) => d.len(),
        }
    }
}
