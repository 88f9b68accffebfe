//! A fake device model: a few KiB of "device memory" tracked per page while pre-copying, a
//! register file saved in STOP_COPY, activity flags the tests check against the state, a log of
//! hook calls and failure injection by hook name.

use std::collections::BTreeSet;

use crate::device_stream::{StateChunk, StateImage, StreamId};
use crate::engine::{DeviceHookError, MigrationHooks};
use crate::errno::Errno;

pub(crate) const MEM_SIZE: usize = 16 * 1024;
pub(crate) const PAGE: usize = 1024;
pub(crate) const REGS_SIZE: usize = 64;
pub(crate) const SECTION_MEM: u32 = 0;
pub(crate) const SECTION_REGS: u32 = 1;

#[derive(Debug, Clone)]
pub(crate) struct FakeDevice {
    pub kind: &'static str,
    pub mem: Vec<u8>,
    pub regs: Vec<u8>,
    /// Initiates DMA.
    pub dma: bool,
    /// Operates (MMIO side effects, state changes).
    pub operating: bool,
    pub tracking: bool,
    dirty: BTreeSet<usize>,
    /// Hook names in call order.
    pub calls: Vec<&'static str>,
    /// Hooks that fail when called.
    pub fail: BTreeSet<&'static str>,
    pub resets: usize,
    /// Bytes of an extra section that STOP_COPY appends (0: none).
    pub extra_final: usize,
}

impl FakeDevice {
    /// A running device whose memory and registers are a pattern derived from `seed`.
    pub(crate) fn new(seed: u8) -> Self {
        FakeDevice {
            kind: "test:fake-device",
            mem: (0..MEM_SIZE)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect(),
            regs: (0..REGS_SIZE).map(|i| (i as u8) ^ seed).collect(),
            dma: true,
            operating: true,
            tracking: false,
            dirty: BTreeSet::new(),
            calls: Vec::new(),
            fail: BTreeSet::new(),
            resets: 0,
            extra_final: 0,
        }
    }

    /// A blank device, as on a destination host.
    pub(crate) fn blank() -> Self {
        let mut d = FakeDevice::new(0);
        d.mem.fill(0);
        d.regs.fill(0);
        d
    }

    /// What the running device does to its memory (DMA landing in device memory, say).
    pub(crate) fn write_mem(&mut self, offset: usize, data: &[u8]) {
        assert!(self.operating, "a stopped device changed its memory");
        self.mem[offset..offset + data.len()].copy_from_slice(data);
        if self.tracking {
            for page in offset / PAGE..(offset + data.len()).div_ceil(PAGE) {
                self.dirty.insert(page);
            }
        }
    }

    pub(crate) fn write_reg(&mut self, offset: usize, value: u8) {
        assert!(self.operating, "a stopped device changed a register");
        self.regs[offset] = value;
    }

    pub(crate) fn same_state(&self, other: &FakeDevice) -> bool {
        self.mem == other.mem && self.regs == other.regs
    }

    fn hook(&mut self, name: &'static str) -> Result<(), DeviceHookError> {
        self.calls.push(name);
        if self.fail.contains(name) {
            return Err(DeviceHookError::new(
                Errno::EIO,
                format!("injected failure in {name}"),
            ));
        }
        Ok(())
    }

    fn dirty_patches(&mut self) -> Vec<StateChunk> {
        let pages = std::mem::take(&mut self.dirty);
        pages
            .into_iter()
            .map(|p| StateChunk::Patch {
                section: SECTION_MEM,
                offset: (p * PAGE) as u64,
                data: self.mem[p * PAGE..(p + 1) * PAGE].to_vec(),
            })
            .collect()
    }
}

impl MigrationHooks for FakeDevice {
    fn stream_id(&self) -> StreamId {
        StreamId::new(self.kind, 1)
    }

    fn quiesce_dma(&mut self) -> Result<(), DeviceHookError> {
        self.hook("quiesce_dma")?;
        self.dma = false;
        Ok(())
    }

    fn resume_dma(&mut self) -> Result<(), DeviceHookError> {
        self.hook("resume_dma")?;
        self.dma = true;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), DeviceHookError> {
        self.hook("stop")?;
        self.operating = false;
        Ok(())
    }

    fn start(&mut self) -> Result<(), DeviceHookError> {
        self.hook("start")?;
        self.operating = true;
        Ok(())
    }

    fn precopy_start(&mut self) -> Result<Vec<StateChunk>, DeviceHookError> {
        self.hook("precopy_start")?;
        self.tracking = true;
        self.dirty.clear();
        Ok(vec![StateChunk::Whole {
            section: SECTION_MEM,
            data: self.mem.clone(),
        }])
    }

    fn precopy_dirty(&mut self) -> Result<Vec<StateChunk>, DeviceHookError> {
        self.hook("precopy_dirty")?;
        Ok(self.dirty_patches())
    }

    fn precopy_dirty_bytes(&self) -> u64 {
        (self.dirty.len() * PAGE) as u64
    }

    fn stop_copy(&mut self, after_precopy: bool) -> Result<Vec<StateChunk>, DeviceHookError> {
        self.hook("stop_copy")?;
        let mut chunks = if after_precopy {
            self.dirty_patches()
        } else {
            vec![StateChunk::Whole {
                section: SECTION_MEM,
                data: self.mem.clone(),
            }]
        };
        chunks.push(StateChunk::Whole {
            section: SECTION_REGS,
            data: self.regs.clone(),
        });
        if self.extra_final > 0 {
            chunks.push(StateChunk::Whole {
                section: 2,
                data: vec![0; self.extra_final],
            });
        }
        Ok(chunks)
    }

    fn saving_end(&mut self) {
        self.calls.push("saving_end");
        self.tracking = false;
        self.dirty.clear();
    }

    fn stop_copy_size(&self) -> u64 {
        (MEM_SIZE + REGS_SIZE) as u64
    }

    fn resuming_start(&mut self) -> Result<(), DeviceHookError> {
        self.hook("resuming_start")
    }

    fn load(&mut self, image: &StateImage) -> Result<(), DeviceHookError> {
        self.hook("load")?;
        let mem = image.section(SECTION_MEM);
        let regs = image.section(SECTION_REGS);
        match (mem, regs) {
            (Some(m), Some(r))
                if m.len() == MEM_SIZE && r.len() == REGS_SIZE && image.len() == 2 =>
            {
                self.mem.copy_from_slice(m);
                self.regs.copy_from_slice(r);
                Ok(())
            }
            _ => Err(DeviceHookError::new(
                Errno::EINVAL,
                "state image lacks memory or registers of the right size",
            )),
        }
    }

    fn reset(&mut self) {
        self.calls.push("reset");
        self.resets += 1;
        self.regs.fill(0);
        self.dma = true;
        self.operating = true;
        self.tracking = false;
        self.dirty.clear();
    }
}
