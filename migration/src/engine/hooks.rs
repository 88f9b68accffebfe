//! What a device model implements so that [`MigrationEngine`](super::MigrationEngine) can migrate
//! it: per-arc hooks (quiesce, stop, start), state capture and state load.

use crate::device_stream::{StateChunk, StateImage, StreamId};
use crate::errno::Errno;

/// A device hook's failure: the errno the VFIO ioctl should return and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({errno})")]
pub struct DeviceHookError {
    /// The errno reported to the caller of the ioctl or read.
    pub errno: Errno,
    /// What failed, on what.
    pub reason: String,
}

impl DeviceHookError {
    /// A hook error with the given cause.
    pub fn new(errno: Errno, reason: impl Into<String>) -> Self {
        DeviceHookError {
            errno,
            reason: reason.into(),
        }
    }
}

/// The device side of migration: what the engine asks of a device model.
///
/// The engine calls the activity hooks when an arc changes what the device may do:
///
/// | may initiate DMA | RUNNING, PRE_COPY |
/// |---|---|
/// | **operates** (answers MMIO with side effects, advances its state) | RUNNING, PRE_COPY, RUNNING_P2P, PRE_COPY_P2P |
///
/// Leaving the DMA set calls [`quiesce_dma`](Self::quiesce_dma), leaving the operating set
/// [`stop`](Self::stop) (after quiescing when one arc does both, as RUNNING -> STOP on a device
/// without P2P), entering the operating set [`start`](Self::start), entering the DMA set
/// [`resume_dma`](Self::resume_dma) (after starting). If an arc fails part way, the engine undoes
/// the hooks it already called, in reverse order, with their inverse.
///
/// Saved state is a list of [`StateChunk`]s: sections whose ids and contents are the device's
/// business (device memory, registers, queue state). A device that cannot track changes may
/// return everything from [`stop_copy`](Self::stop_copy) and nothing from the pre-copy hooks.
pub trait MigrationHooks {
    /// The kind and state version written in the stream header.
    fn stream_id(&self) -> StreamId;

    /// Whether a stream saved by a device with `id` can be loaded here. Default: the same id.
    fn accepts_stream(&self, id: &StreamId) -> bool {
        *id == self.stream_id()
    }

    /// Stop initiating DMA and P2P, and complete what is outstanding, before returning.
    fn quiesce_dma(&mut self) -> Result<(), DeviceHookError>;

    /// Initiate DMA again (work recorded while quiesced may proceed).
    fn resume_dma(&mut self) -> Result<(), DeviceHookError>;

    /// Stop operating: no MMIO side effects, no internal state change, from now on.
    fn stop(&mut self) -> Result<(), DeviceHookError>;

    /// Operate again (still without DMA until [`resume_dma`](Self::resume_dma)).
    fn start(&mut self) -> Result<(), DeviceHookError>;

    /// A pre-copy session begins (the device is running): start tracking state changes and
    /// return the initial state, typically the iterable sections whole.
    fn precopy_start(&mut self) -> Result<Vec<StateChunk>, DeviceHookError>;

    /// What changed since the last capture, as chunks (typically patches); clears the record of
    /// those changes. Empty when nothing changed.
    fn precopy_dirty(&mut self) -> Result<Vec<StateChunk>, DeviceHookError>;

    /// Bytes of state changed since the last capture (an estimate, for `PRECOPY_INFO`).
    fn precopy_dirty_bytes(&self) -> u64;

    /// The device is stopped and its saving session enters STOP_COPY: return the rest of the
    /// state. With `after_precopy`, that is what changed since the last capture plus the
    /// non-iterable sections; without, it is the whole state.
    fn stop_copy(&mut self, after_precopy: bool) -> Result<Vec<StateChunk>, DeviceHookError>;

    /// The saving session ended (or was dropped by a reset or a failure): stop tracking.
    fn saving_end(&mut self) {}

    /// Bytes of state a STOP_COPY from now would produce (an estimate, for `MIG_DATA_SIZE`).
    fn stop_copy_size(&self) -> u64;

    /// A resuming session begins (the device is stopped): prepare to receive state.
    fn resuming_start(&mut self) -> Result<(), DeviceHookError> {
        Ok(())
    }

    /// Load a complete, checked state image (RESUMING -> STOP). The device must validate the
    /// image (section ids and sizes) before changing anything: a failure here puts the device in
    /// ERROR, and a partly applied image would be worse.
    fn load(&mut self, image: &StateImage) -> Result<(), DeviceHookError>;

    /// `VFIO_DEVICE_RESET`: back to a freshly reset, running device with DMA allowed.
    fn reset(&mut self);
}
