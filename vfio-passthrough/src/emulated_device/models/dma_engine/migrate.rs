//! The DMA engine's migration hooks. Its state is two sections: device memory (sent whole when
//! pre-copy starts, then as patches of the pages that changed, see [`devmem`](super::devmem))
//! and the registers (queue configuration and position, error state, interrupt status: sent
//! once the device is stopped). The descriptors waiting between `HEAD` and `TAIL` live in
//! host memory, which migrates with the guest's RAM: a restored device continues its queue
//! from `HEAD` as soon as it may initiate DMA again.
//!
//! RUNNING_P2P (and PRE_COPY_P2P) stop DMA but keep MMIO working: doorbells move `TAIL`, work
//! waits. STOP (and the saving and resuming states) stop MMIO side effects too: writes are
//! dropped, reads still answer.

use migration::device_stream::{StateChunk, StateImage, StreamId};
use migration::engine::{DeviceHookError, MigrationHooks};
use migration::errno::Errno;

use super::devmem::DEVMEM_SIZE;
use super::regs::{Registers, SAVED_LEN};
use super::{DmaEngine, KIND};

/// Section: device memory.
pub const SECTION_DEVMEM: u32 = 1;
/// Section: registers.
pub const SECTION_REGS: u32 = 2;
/// Version of the sections' layout.
pub const STATE_VERSION: u32 = 1;

fn memory_error(what: &str, e: Errno) -> DeviceHookError {
    DeviceHookError::new(Errno::EIO, format!("{KIND}: {what} device memory: {e}"))
}

impl DmaEngine {
    fn regs_chunk(&self) -> StateChunk {
        StateChunk::Whole {
            section: SECTION_REGS,
            data: self.regs.save(),
        }
    }

    fn memory_patches(&mut self) -> Result<Vec<StateChunk>, DeviceHookError> {
        Ok(self
            .mem
            .take_changes()
            .map_err(|e| memory_error("comparing", e))?
            .into_iter()
            .map(|(offset, data)| StateChunk::Patch {
                section: SECTION_DEVMEM,
                offset,
                data,
            })
            .collect())
    }
}

impl MigrationHooks for DmaEngine {
    fn stream_id(&self) -> StreamId {
        StreamId::new(KIND, STATE_VERSION)
    }

    fn quiesce_dma(&mut self) -> Result<(), DeviceHookError> {
        // Descriptors run to completion inside the MMIO write that starts them, so nothing is
        // in flight: stopping is enough.
        self.dma_allowed = false;
        Ok(())
    }

    fn resume_dma(&mut self) -> Result<(), DeviceHookError> {
        self.dma_allowed = true;
        self.process();
        Ok(())
    }

    fn stop(&mut self) -> Result<(), DeviceHookError> {
        self.operating = false;
        Ok(())
    }

    fn start(&mut self) -> Result<(), DeviceHookError> {
        self.operating = true;
        self.update_intx();
        Ok(())
    }

    fn precopy_start(&mut self) -> Result<Vec<StateChunk>, DeviceHookError> {
        let data = self
            .mem
            .snapshot_start()
            .map_err(|e| memory_error("reading", e))?;
        Ok(vec![StateChunk::Whole {
            section: SECTION_DEVMEM,
            data,
        }])
    }

    fn precopy_dirty(&mut self) -> Result<Vec<StateChunk>, DeviceHookError> {
        self.memory_patches()
    }

    fn precopy_dirty_bytes(&self) -> u64 {
        self.mem.changed_bytes()
    }

    fn stop_copy(&mut self, after_precopy: bool) -> Result<Vec<StateChunk>, DeviceHookError> {
        let mut chunks = if after_precopy {
            self.memory_patches()?
        } else {
            vec![StateChunk::Whole {
                section: SECTION_DEVMEM,
                data: self
                    .mem
                    .contents()
                    .map_err(|e| memory_error("reading", e))?,
            }]
        };
        chunks.push(self.regs_chunk());
        Ok(chunks)
    }

    fn saving_end(&mut self) {
        self.mem.snapshot_end();
    }

    fn stop_copy_size(&self) -> u64 {
        let memory = if self.mem.tracking() {
            self.mem.changed_bytes()
        } else {
            DEVMEM_SIZE
        };
        memory + SAVED_LEN as u64
    }

    fn load(&mut self, image: &StateImage) -> Result<(), DeviceHookError> {
        let bad = |reason: String| DeviceHookError::new(Errno::EINVAL, format!("{KIND}: {reason}"));
        if let Some((id, _)) = image
            .sections()
            .find(|(id, _)| *id != SECTION_DEVMEM && *id != SECTION_REGS)
        {
            return Err(bad(format!("unknown state section {id}")));
        }
        let memory = image
            .section(SECTION_DEVMEM)
            .ok_or_else(|| bad("the state has no device memory section".into()))?;
        if memory.len() as u64 != DEVMEM_SIZE {
            return Err(bad(format!(
                "device memory section is {:#x} bytes, expected {DEVMEM_SIZE:#x}",
                memory.len()
            )));
        }
        let regs = image
            .section(SECTION_REGS)
            .ok_or_else(|| bad("the state has no register section".into()))?;
        let regs = Registers::load(regs).map_err(|e| bad(e.to_string()))?;
        // Everything is checked: apply.
        self.mem
            .load(memory)
            .map_err(|e| memory_error("loading", e))?;
        self.regs = regs;
        Ok(())
    }

    fn reset(&mut self) {
        self.mem.snapshot_end();
        self.function_reset();
    }
}
