//! The device side of the deprecated v1 migration region (`vfio_device_migration_info`), as a
//! region model that a device exposes as one of its VFIO regions.
//!
//! The region is driven by the same [`MigrationEngine`] and [`MigrationHooks`] as v2, so both
//! protocols carry the same stream and share one state (a device may offer both, as the
//! emulated DMA engine does). Access rules and side effects, from `kernel-uapi.md` 2.9:
//!
//! * header fields only at their exact width and alignment; `pending_bytes` and `data_offset`
//!   are read-only, `reserved` reads 0 and ignores writes;
//! * writing `device_state` moves the engine (101b, 111b, 110b and reserved bits are refused
//!   and change nothing; an internal failure leaves the error state, 110b);
//! * saving: reading `data_offset` stages the next buffer in the data window (repeated reads
//!   return the same buffer), `data_size` is its length, and the next read of `pending_bytes`
//!   acknowledges it;
//! * resuming: the user writes a chunk at `data_offset`, then writes `data_size`, which consumes
//!   it before the write returns.
//!
//! Buffers are staged at a fixed offset in the window ([`V1Region::with_staging_offset`]), so a
//! device can place them across mmap-able and trapped extents.
//!
//! A device exposes the region as a device-specific region with
//! `VFIO_REGION_INFO_CAP_TYPE` ([`REGION_TYPE_MIGRATION_DEPRECATED`],
//! [`REGION_SUBTYPE_MIGRATION_DEPRECATED`]), size [`V1Layout::region_size`] and a sparse-mmap
//! capability listing [`V1Layout::mmap_extents`], and routes the region's trapped accesses and
//! its reset here, next to the engine it also uses for v2:
//!
//! ```
//! use migration::engine::{MigrationEngine, MigrationHooks};
//! use migration::v1_region::{V1Region, WindowStorage};
//!
//! struct Device<M, W: WindowStorage> {
//!     migration: MigrationEngine,
//!     v1: V1Region<W>,
//!     model: M,
//! }
//!
//! impl<M: MigrationHooks, W: WindowStorage> Device<M, W> {
//!     /// `pread` of the v1 migration region (the mmap-able extents never get here).
//!     fn v1_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), i32> {
//!         self.v1
//!             .read(&mut self.migration, &mut self.model, offset, buf)
//!             .map_err(|e| e.errno().raw())
//!     }
//!
//!     /// `VFIO_DEVICE_RESET`.
//!     fn reset(&mut self) {
//!         self.v1.reset(&mut self.migration, &mut self.model);
//!     }
//! }
//! ```
//!
//! [`REGION_TYPE_MIGRATION_DEPRECATED`]: crate::vfio_v1::REGION_TYPE_MIGRATION_DEPRECATED
//! [`REGION_SUBTYPE_MIGRATION_DEPRECATED`]: crate::vfio_v1::REGION_SUBTYPE_MIGRATION_DEPRECATED

mod error;
mod layout;
mod window;

pub use error::V1RegionError;
pub use layout::{V1Layout, V1LayoutError};
pub use window::{VecWindow, WindowStorage};

use crate::engine::{EngineError, MigrationEngine, MigrationHooks, SessionId};
use crate::vfio_v1::{HEADER_SIZE, HeaderField, V1State};
use crate::vfio_v2::DeviceState;

/// The v1 migration region of one device.
#[derive(Debug)]
pub struct V1Region<W: WindowStorage> {
    layout: V1Layout,
    window: W,
    /// Window-relative offset where buffers are staged.
    staging: u64,
    /// Length of the buffer staged for the saving session it belongs to.
    staged: Option<(SessionId, u64)>,
    /// The last `data_size` written while resuming.
    resumed_size: u64,
}

impl<W: WindowStorage> V1Region<W> {
    /// A region with `layout`, its data window backed by `window`.
    pub fn new(layout: V1Layout, window: W) -> Result<Self, V1LayoutError> {
        if window.size() != layout.window_len() {
            return Err(V1LayoutError::StorageSize {
                storage: window.size(),
                window: layout.window_len(),
            });
        }
        Ok(V1Region {
            layout,
            window,
            staging: 0,
            staged: None,
            resumed_size: 0,
        })
    }

    /// Stages buffers at `offset` bytes into the data window (default 0).
    pub fn with_staging_offset(mut self, offset: u64) -> Result<Self, V1LayoutError> {
        if offset >= self.layout.window_len() {
            return Err(V1LayoutError::BadStagingOffset {
                offset,
                window: self.layout.window_len(),
            });
        }
        self.staging = offset;
        Ok(self)
    }

    /// The region's layout (size, data window, mmap-able extents).
    pub fn layout(&self) -> &V1Layout {
        &self.layout
    }

    /// The window storage.
    pub fn window(&self) -> &W {
        &self.window
    }

    /// The window storage, for writing.
    pub fn window_mut(&mut self) -> &mut W {
        &mut self.window
    }

    /// The region offset of the data buffer (`data_offset`).
    pub fn data_offset(&self) -> u64 {
        self.layout.window().start + self.staging
    }

    /// The largest buffer: from `data_offset` to the end of the window.
    pub fn buffer_capacity(&self) -> u64 {
        self.layout.window_len() - self.staging
    }

    /// `VFIO_DEVICE_RESET` through the region's device: resets the engine and forgets staging.
    pub fn reset<D: MigrationHooks + ?Sized>(&mut self, engine: &mut MigrationEngine, dev: &mut D) {
        engine.reset(dev);
        self.staged = None;
        self.resumed_size = 0;
    }

    /// A `pread` of the region.
    pub fn read<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), V1RegionError> {
        if let Some(w) = self.window_offset(offset, buf.len())? {
            self.window.read(w, buf);
            return Ok(());
        }
        let field = header_field(offset, buf.len())?;
        let state = V1State::from_v2(engine.state());
        let value: u64 = match field {
            HeaderField::DeviceState => u64::from(state.bits()),
            HeaderField::Reserved => 0,
            HeaderField::PendingBytes => self.pending_bytes(engine, dev)?,
            HeaderField::DataOffset => {
                if state.is_saving() {
                    self.stage(engine, dev)?;
                }
                self.data_offset()
            }
            HeaderField::DataSize => match (state, self.current_staged(engine)) {
                (V1State::Resuming, _) => self.resumed_size,
                (s, Some(len)) if s.is_saving() => len,
                _ => 0,
            },
        };
        buf.copy_from_slice(&value.to_le_bytes()[..buf.len()]);
        Ok(())
    }

    /// A `pwrite` of the region.
    pub fn write<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
        offset: u64,
        data: &[u8],
    ) -> Result<(), V1RegionError> {
        if let Some(w) = self.window_offset(offset, data.len())? {
            self.window.write(w, data);
            return Ok(());
        }
        let field = header_field(offset, data.len())?;
        let mut raw = [0u8; 8];
        raw[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(raw);
        match field {
            HeaderField::Reserved => Ok(()),
            HeaderField::PendingBytes | HeaderField::DataOffset => {
                Err(V1RegionError::ReadOnlyField {
                    field: field.name(),
                    offset,
                })
            }
            HeaderField::DeviceState => self.set_state(engine, dev, value as u32),
            HeaderField::DataSize => self.consume(engine, dev, value),
        }
    }

    /// `Some(window offset)` for an access inside the data window, `None` for the header.
    fn window_offset(&self, offset: u64, len: usize) -> Result<Option<u64>, V1RegionError> {
        let window = self.layout.window();
        let end = offset.checked_add(len as u64);
        if offset >= window.start && end.is_some_and(|e| e <= window.end) {
            return Ok(Some(offset - window.start));
        }
        if offset < HEADER_SIZE {
            return Ok(None);
        }
        Err(V1RegionError::OutOfRange {
            offset,
            len,
            window_start: window.start,
            window_end: window.end,
        })
    }

    /// The staged buffer's length, if it belongs to the engine's current session.
    fn current_staged(&self, engine: &MigrationEngine) -> Option<u64> {
        self.staged
            .filter(|(id, _)| Some(*id) == engine.current_session())
            .map(|(_, len)| len)
    }

    fn pending_bytes<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
    ) -> Result<u64, V1RegionError> {
        // Reading pending_bytes after a buffer was staged acknowledges that buffer.
        self.staged = None;
        match (engine.state(), engine.current_session()) {
            (DeviceState::PreCopy | DeviceState::PreCopyP2p, Some(id)) => {
                match engine.precopy_info(dev, id) {
                    Ok(info) => Ok(info.initial_bytes + info.dirty_bytes),
                    Err(e) => Err(self.fail(engine, dev, e)),
                }
            }
            (DeviceState::StopCopy, Some(_)) => Ok(engine.pending_bytes()),
            _ => Ok(0),
        }
    }

    /// Stages the next buffer, unless one is staged for the current session already.
    fn stage<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
    ) -> Result<(), V1RegionError> {
        let Some(id) = engine.current_session() else {
            return Ok(());
        };
        if self.current_staged(engine).is_some() {
            return Ok(());
        }
        let mut buf = vec![0u8; self.buffer_capacity() as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match engine.read(dev, id, &mut buf[filled..]) {
                Ok(0) | Err(EngineError::NoDataNow { .. }) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(self.fail(engine, dev, e)),
            }
        }
        self.window.write(self.staging, &buf[..filled]);
        self.staged = Some((id, filled as u64));
        Ok(())
    }

    /// `data_size` written while resuming: hands the chunk at `data_offset` to the engine.
    fn consume<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
        size: u64,
    ) -> Result<(), V1RegionError> {
        let state = V1State::from_v2(engine.state());
        let (V1State::Resuming, Some(id)) = (state, engine.current_session()) else {
            return Err(V1RegionError::DataSizeNotWritable { state });
        };
        if size > self.buffer_capacity() {
            return Err(V1RegionError::DataSizeTooLarge {
                size,
                max: self.buffer_capacity(),
            });
        }
        let mut chunk = vec![0u8; size as usize];
        self.window.read(self.staging, &mut chunk);
        if let Err(e) = engine.write(dev, id, &chunk) {
            return Err(self.fail(engine, dev, e));
        }
        self.resumed_size = size;
        Ok(())
    }

    fn set_state<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
        value: u32,
    ) -> Result<(), V1RegionError> {
        let current = V1State::from_v2(engine.state());
        let target = V1State::from_bits(value).map_err(|e| V1RegionError::InvalidState {
            value,
            current,
            reason: e.reason,
        })?;
        if target == V1State::Error {
            return Err(V1RegionError::InvalidState {
                value,
                current,
                reason: "the error state is entered by failures, not requested",
            });
        }
        match engine.set_state(dev, target.to_v2()) {
            Ok(_) => {
                self.staged = None;
                self.resumed_size = 0;
                Ok(())
            }
            Err(source @ EngineError::Transition { .. }) => Err(V1RegionError::Transition {
                from: current,
                to: target,
                source,
            }),
            Err(e) => Err(self.fail(engine, dev, e)),
        }
    }

    /// An internal failure: the v1 contract has only one way to report it, the error state.
    fn fail<D: MigrationHooks + ?Sized>(
        &mut self,
        engine: &mut MigrationEngine,
        dev: &mut D,
        source: EngineError,
    ) -> V1RegionError {
        if engine.state() != DeviceState::Error {
            engine.enter_error(dev);
        }
        self.staged = None;
        V1RegionError::InternalFailure { source }
    }
}

fn header_field(offset: u64, len: usize) -> Result<HeaderField, V1RegionError> {
    HeaderField::at(offset, len).ok_or(V1RegionError::BadHeaderAccess { offset, len })
}

#[cfg(test)]
mod tests;
