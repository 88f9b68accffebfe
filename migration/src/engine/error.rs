//! [`EngineError`]: why the device-side engine refused or failed a request, with the errno the
//! VFIO uAPI would return for it.

use super::SessionId;
use super::hooks::DeviceHookError;
use crate::device_stream::{EncodeError, StreamError};
use crate::errno::Errno;
use crate::vfio_v2::{DeviceState, TransitionError};

/// A device-side migration request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Migration flags without `VFIO_MIGRATION_STOP_COPY`, or with unknown bits.
    #[error(
        "migration flags {flags:#x} are invalid: STOP_COPY is required, only STOP_COPY|P2P|PRE_COPY are known"
    )]
    BadFlags {
        /// The flags given.
        flags: u64,
    },
    /// The state machine refuses the move (`EINVAL`); the state is unchanged.
    #[error("cannot move the device from {from} to {to}: {source}")]
    Transition {
        /// The state at the time of the request.
        from: DeviceState,
        /// The requested state.
        to: DeviceState,
        /// Why the table refuses it.
        source: TransitionError,
    },
    /// A device hook failed during the arc `from -> to`; the device is now in `now`.
    #[error(
        "arc {from} -> {to} failed in the device's {hook} hook: {source}; the device is in {now}"
    )]
    Hook {
        /// The arc's start.
        from: DeviceState,
        /// The arc's end.
        to: DeviceState,
        /// The hook that failed.
        hook: &'static str,
        /// The device's error.
        source: DeviceHookError,
        /// The state the device was left in: `from`, or ERROR if undoing failed too.
        now: DeviceState,
    },
    /// The device's saved state could not be framed.
    #[error("arc {from} -> {to}: the device's state cannot be written to the stream: {source}")]
    Encode {
        /// The arc's start.
        from: DeviceState,
        /// The arc's end.
        to: DeviceState,
        /// The framing error.
        source: EncodeError,
    },
    /// RESUMING -> STOP found the written stream bad; the device is in ERROR.
    #[error("RESUMING -> STOP rejected the resumed stream, the device is in ERROR: {source}")]
    BadStream {
        /// What is wrong with the stream.
        source: StreamError,
    },
    /// The session (data fd) was closed by a state change or a reset.
    #[error("migration session {session} is closed")]
    SessionClosed {
        /// The session used.
        session: SessionId,
    },
    /// Reading a resuming session or writing a saving one.
    #[error("migration session {session} is a {kind} session and cannot be {op}")]
    WrongDirection {
        /// The session used.
        session: SessionId,
        /// `"saving"` or `"resuming"`.
        kind: &'static str,
        /// `"read"` or `"written"`.
        op: &'static str,
    },
    /// PRE_COPY has nothing more to send for now (`ENOMSG`).
    #[error("no migration data for now in {state}")]
    NoDataNow {
        /// The device's state.
        state: DeviceState,
    },
    /// `PRECOPY_INFO` outside PRE_COPY / PRE_COPY_P2P.
    #[error("PRECOPY_INFO is valid only in PRE_COPY or PRE_COPY_P2P; the device is in {state}")]
    NotPrecopy {
        /// The device's state.
        state: DeviceState,
    },
    /// Capturing changed state during pre-copy failed; the session can no longer be read.
    #[error(
        "saving session {session} is broken: capturing changed state in {state} failed: {reason}"
    )]
    SavingBroken {
        /// The session.
        session: SessionId,
        /// The device's state when it broke.
        state: DeviceState,
        /// What failed.
        reason: String,
        /// The errno reported.
        errno: Errno,
    },
}

impl EngineError {
    /// The errno the VFIO uAPI returns for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            EngineError::BadFlags { .. }
            | EngineError::Transition { .. }
            | EngineError::BadStream { .. }
            | EngineError::NotPrecopy { .. } => Errno::EINVAL,
            EngineError::Hook { source, .. } => source.errno,
            EngineError::Encode { .. } => Errno::EIO,
            EngineError::SessionClosed { .. } => Errno::ENODEV,
            EngineError::WrongDirection { .. } => Errno::EBADF,
            EngineError::NoDataNow { .. } => Errno::ENOMSG,
            EngineError::SavingBroken { errno, .. } => *errno,
        }
    }
}
