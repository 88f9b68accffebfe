//! [`V1RegionError`]: why an access to the v1 migration region failed.

use crate::engine::EngineError;
use crate::errno::Errno;
use crate::vfio_v1::{HEADER_SIZE, V1State};

/// A failed read or write of the v1 migration region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1RegionError {
    /// A header access that is not exactly one field at its width and alignment.
    #[error(
        "{len}-byte access at region offset {offset:#x} does not match a header field: use device_state (4 bytes @0), pending_bytes (8 @8), data_offset (8 @16) or data_size (8 @24)"
    )]
    BadHeaderAccess {
        /// Region offset of the access.
        offset: u64,
        /// Bytes accessed.
        len: usize,
    },
    /// A write to `pending_bytes` or `data_offset`.
    #[error("{field} (region offset {offset:#x}) is read-only")]
    ReadOnlyField {
        /// The field's name.
        field: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// An access outside the header and the data window.
    #[error(
        "{len}-byte access at region offset {offset:#x} is outside the {HEADER_SIZE}-byte header and the data window [{window_start:#x}, {window_end:#x})"
    )]
    OutOfRange {
        /// Region offset of the access.
        offset: u64,
        /// Bytes accessed.
        len: usize,
        /// Start of the data window.
        window_start: u64,
        /// End of the data window.
        window_end: u64,
    },
    /// A `device_state` value naming no state, or naming the error state; nothing changed.
    #[error("device_state write of {value:#x} refused in {current}: {reason}")]
    InvalidState {
        /// The value written.
        value: u32,
        /// The state, unchanged.
        current: V1State,
        /// Why the value is refused.
        reason: &'static str,
    },
    /// The state machine refuses the move; nothing changed.
    #[error("cannot move from {from} to {to}: {source}")]
    Transition {
        /// The state, unchanged.
        from: V1State,
        /// The state asked for.
        to: V1State,
        /// The engine's refusal.
        source: EngineError,
    },
    /// `data_size` written outside the resuming state.
    #[error("data_size is written only while resuming; the device is {state}")]
    DataSizeNotWritable {
        /// The device's state.
        state: V1State,
    },
    /// `data_size` written larger than the data buffer.
    #[error("data_size {size:#x} exceeds the {max:#x}-byte data buffer at data_offset")]
    DataSizeTooLarge {
        /// The size written.
        size: u64,
        /// The buffer's size.
        max: u64,
    },
    /// An internal failure (a device hook, the saving stream, a rejected resumed stream): the
    /// device is now in the error state (110b) until a reset.
    #[error("device moved to the error state: {source}")]
    InternalFailure {
        /// What failed.
        source: EngineError,
    },
}

impl V1RegionError {
    /// The errno the region's `pread`/`pwrite` returns.
    pub fn errno(&self) -> Errno {
        match self {
            V1RegionError::Transition { source, .. }
            | V1RegionError::InternalFailure { source } => source.errno(),
            _ => Errno::EINVAL,
        }
    }
}
