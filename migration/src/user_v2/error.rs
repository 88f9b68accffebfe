//! [`V2UserError`]: why a user-side v2 migration step failed, with the device's errno.

use std::fmt;
use std::io;

use crate::errno::Errno;
use crate::vfio_v2::DeviceState;

/// Where a device was left after a failed transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The device reports this (valid) state; nothing more was done.
    Stayed(DeviceState),
    /// The device was in ERROR or its state could not be read; it was reset to RUNNING.
    Reset,
    /// The device needed a reset, which failed too.
    ResetFailed(Errno),
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Stayed(s) => write!(f, "the device is in {s}"),
            Recovery::Reset => f.write_str("the device was reset to RUNNING"),
            Recovery::ResetFailed(e) => write!(f, "the device needs a reset, which failed: {e}"),
        }
    }
}

/// A failed user-side v2 migration step.
#[derive(Debug, thiserror::Error)]
pub enum V2UserError {
    /// Reading the migration flags failed.
    #[error("reading the device's migration flags failed: {errno}")]
    Flags {
        /// The device's errno.
        errno: Errno,
    },
    /// Reading the device state failed.
    #[error("reading the device's migration state failed: {errno}")]
    GetState {
        /// The device's errno.
        errno: Errno,
    },
    /// A state change failed.
    #[error("moving the device from {from} to {to} failed: {errno}; {recovery}")]
    Transition {
        /// The state before.
        from: DeviceState,
        /// The state asked for.
        to: DeviceState,
        /// The device's errno.
        errno: Errno,
        /// What was done about it, and where the device is.
        recovery: Recovery,
    },
    /// A state change that must open a session returned no data stream.
    #[error("moving the device from {from} to {to} returned no data stream")]
    NoStream {
        /// The state before.
        from: DeviceState,
        /// The state reached.
        to: DeviceState,
    },
    /// The device is not in a state this step starts from.
    #[error("the device is in {state}; this step needs {expected}")]
    WrongState {
        /// The device's state.
        state: DeviceState,
        /// The states the step accepts.
        expected: &'static str,
    },
    /// Reading the data stream failed.
    #[error("reading the data stream in {state} after {offset} bytes failed: {errno}")]
    Read {
        /// The device's state.
        state: DeviceState,
        /// Bytes read before.
        offset: u64,
        /// The device's errno.
        errno: Errno,
    },
    /// `VFIO_MIG_GET_PRECOPY_INFO` failed.
    #[error("PRECOPY_INFO after {offset} bytes failed: {errno}")]
    PrecopyInfo {
        /// Bytes read before.
        offset: u64,
        /// The device's errno.
        errno: Errno,
    },
    /// PRE_COPY said "no data for now" while reporting initial bytes still to send.
    #[error(
        "PRE_COPY has no data after {offset} bytes but reports {initial_bytes} initial bytes left"
    )]
    PrecopyStalled {
        /// Bytes read before.
        offset: u64,
        /// The initial bytes the device reports.
        initial_bytes: u64,
    },
    /// The stream ended in PRE_COPY, or said "no data for now" in STOP_COPY.
    #[error("the data stream in {state} after {offset} bytes {what}")]
    BadStreamEnd {
        /// The device's state.
        state: DeviceState,
        /// Bytes read before.
        offset: u64,
        /// What the stream did.
        what: &'static str,
    },
    /// Writing the data stream failed; the resume was aborted (which takes a reset).
    #[error("writing the resuming data stream at byte {offset} failed: {errno}; {recovery}")]
    Write {
        /// Bytes written before.
        offset: u64,
        /// The device's errno.
        errno: Errno,
        /// The abort's outcome.
        recovery: Recovery,
    },
    /// The device took no bytes of a write; the resume was aborted (which takes a reset).
    #[error("the resuming data stream took no bytes at byte {offset}; {recovery}")]
    WriteZero {
        /// Bytes written before.
        offset: u64,
        /// The abort's outcome.
        recovery: Recovery,
    },
    /// Writing saved state to the sink failed.
    #[error("writing device state to the migration sink after {offset} bytes failed: {source}")]
    Sink {
        /// Bytes written to the sink before.
        offset: u64,
        /// The sink's error.
        source: io::Error,
    },
    /// Reading saved state from the source failed; the resume was aborted (which takes a
    /// reset).
    #[error(
        "reading device state from the migration source after {offset} bytes failed: {source}; {recovery}"
    )]
    Source {
        /// Bytes read from the source before.
        offset: u64,
        /// The source's error.
        source: io::Error,
        /// The abort's outcome.
        recovery: Recovery,
    },
}
