//! A user-side view of a device-side v1 region, as the passthrough device would give it: header
//! and trapped accesses go through the region model; mmap accesses go straight to the window
//! storage (the shared memory a mapping would reach), and are checked against the extents.

use std::ops::Range;

use super::fake_device::FakeDevice;
use crate::engine::MigrationEngine;
use crate::errno::Errno;
use crate::user_v1::V1RegionAccess;
use crate::v1_region::{V1Layout, V1Region, VecWindow};
use crate::vfio_v2::{MIGRATION_P2P, MIGRATION_PRE_COPY, MIGRATION_STOP_COPY};

pub(crate) const REGION_SIZE: u64 = 0x4000;
pub(crate) const WINDOW: Range<u64> = 0x1000..0x4000;

#[derive(Debug)]
pub(crate) struct RegionHarness {
    pub region: V1Region<VecWindow>,
    pub engine: MigrationEngine,
    pub dev: FakeDevice,
    /// Every mmap access, as region ranges.
    pub mmap_accesses: Vec<Range<u64>>,
    /// mmap accesses that left their extent.
    pub mmap_violations: Vec<Range<u64>>,
    /// Trapped accesses inside the data window.
    pub trapped_data_accesses: Vec<Range<u64>>,
}

impl RegionHarness {
    /// A region whose window has mmap-able extents at its first and last 4 KiB and a trapped
    /// page between, with buffers staged 2 KiB into the window: every large buffer starts
    /// mapped, crosses the trapped page, and ends mapped.
    pub(crate) fn new(dev: FakeDevice) -> Self {
        let layout =
            V1Layout::new(REGION_SIZE, WINDOW, vec![0x1000..0x2000, 0x3000..0x4000]).unwrap();
        let window = VecWindow::new((WINDOW.end - WINDOW.start) as usize);
        RegionHarness {
            region: V1Region::new(layout, window)
                .unwrap()
                .with_staging_offset(0x800)
                .unwrap(),
            engine: MigrationEngine::new(MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY)
                .unwrap(),
            dev,
            mmap_accesses: Vec::new(),
            mmap_violations: Vec::new(),
            trapped_data_accesses: Vec::new(),
        }
    }

    fn mmap_range(&mut self, offset: u64, len: usize) -> Result<Range<usize>, Errno> {
        let range = offset..offset + len as u64;
        self.mmap_accesses.push(range.clone());
        let inside = self
            .region
            .layout()
            .mmap_extents()
            .iter()
            .any(|e| e.start <= range.start && range.end <= e.end);
        if !inside {
            // A real mapping would fault (or reach past the mapping); record it and refuse.
            self.mmap_violations.push(range);
            return Err(Errno::EFAULT);
        }
        let w = (offset - WINDOW.start) as usize;
        Ok(w..w + len)
    }

    fn note_trapped(&mut self, offset: u64, len: usize) {
        if offset >= WINDOW.start {
            self.trapped_data_accesses.push(offset..offset + len as u64);
        }
    }
}

impl V1RegionAccess for RegionHarness {
    fn region_size(&self) -> u64 {
        self.region.layout().region_size()
    }

    fn mmap_extents(&self) -> Vec<Range<u64>> {
        self.region.layout().mmap_extents().to_vec()
    }

    fn read_u32(&mut self, offset: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.trapped_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u32(&mut self, offset: u64, value: u32) -> Result<(), Errno> {
        self.trapped_write(offset, &value.to_le_bytes())
    }

    fn read_u64(&mut self, offset: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.trapped_read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(&mut self, offset: u64, value: u64) -> Result<(), Errno> {
        self.trapped_write(offset, &value.to_le_bytes())
    }

    fn trapped_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.note_trapped(offset, buf.len());
        self.region
            .read(&mut self.engine, &mut self.dev, offset, buf)
            .map_err(|e| e.errno())
    }

    fn trapped_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.note_trapped(offset, data.len());
        self.region
            .write(&mut self.engine, &mut self.dev, offset, data)
            .map_err(|e| e.errno())
    }

    fn mmap_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let r = self.mmap_range(offset, buf.len())?;
        buf.copy_from_slice(&self.region.window().bytes()[r]);
        Ok(())
    }

    fn mmap_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let r = self.mmap_range(offset, data.len())?;
        self.region.window_mut().bytes_mut()[r].copy_from_slice(data);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Errno> {
        self.region.reset(&mut self.engine, &mut self.dev);
        Ok(())
    }
}
