//! What the user side needs from a VFIO device and its migration data stream (consumer-side
//! traits: the passthrough device implements them over its VFIO seam, for real and emulated
//! devices alike).

use crate::errno::Errno;
use crate::vfio_v2::{DeviceState, PrecopyInfo};

/// One read of a migration data stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were read (never 0).
    Data(usize),
    /// PRE_COPY has nothing more for now (`read` failed with `ENOMSG`).
    NoDataNow,
    /// The end of the stream (`read` returned 0): STOP_COPY has sent everything. In PRE_COPY
    /// some drivers (Linux's mtty sample) answer 0 instead of `ENOMSG` at the temporary end, so
    /// the PRE_COPY loop takes it as "no data for now".
    End,
}

impl ReadOutcome {
    /// The outcome of a kernel-style `read`: 0 is the end, `ENOMSG` is "no data for now".
    pub fn from_read_result(result: Result<usize, Errno>) -> Result<ReadOutcome, Errno> {
        match result {
            Ok(0) => Ok(ReadOutcome::End),
            Ok(n) => Ok(ReadOutcome::Data(n)),
            Err(Errno::ENOMSG) => Ok(ReadOutcome::NoDataNow),
            Err(e) => Err(e),
        }
    }
}

/// A migration session's data stream (the kernel's `data_fd`).
pub trait DataStream {
    /// Reads the next bytes of a saving session into `buf` (non-empty).
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Errno>;

    /// Writes the next bytes of a resuming session; returns how many were taken.
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno>;

    /// `VFIO_MIG_GET_PRECOPY_INFO` (PRE_COPY and PRE_COPY_P2P only).
    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno>;
}

/// A VFIO device's migration controls (`VFIO_DEVICE_FEATURE_MIGRATION`, `MIG_DEVICE_STATE`,
/// `MIG_DATA_SIZE`, and `VFIO_DEVICE_RESET` for recovery).
pub trait MigrationDevice {
    /// The data stream type of this device's sessions.
    type Stream: DataStream;

    /// `VFIO_MIGRATION_*` flags.
    fn migration_flags(&self) -> Result<u64, Errno>;

    /// The current state (`MIG_DEVICE_STATE` GET).
    fn state(&self) -> Result<DeviceState, Errno>;

    /// Moves to `state` (`MIG_DEVICE_STATE` SET); the new stream when the move opened a
    /// session. On failure the device may be at any state along the way.
    fn set_state(&mut self, state: DeviceState) -> Result<Option<Self::Stream>, Errno>;

    /// Estimated bytes of a STOP_COPY stream (`MIG_DATA_SIZE`).
    fn data_size(&self) -> Result<u64, Errno>;

    /// `VFIO_DEVICE_RESET`: the last resort after a failed transition (back to RUNNING).
    fn reset(&mut self) -> Result<(), Errno>;
}
