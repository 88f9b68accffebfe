//! [`V1UserError`]: why a user-side v1 migration loop failed.

use std::fmt;
use std::io;

use crate::errno::Errno;
use crate::vfio_v1::V1State;

/// Where a device was left after a failed v1 state change or an aborted resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Recovery {
    /// The device reports this (valid, non-error) state; nothing more was done.
    Stayed(V1State),
    /// The device was in the error state, its state was unreadable, or a resume was abandoned:
    /// it was reset to running.
    Reset,
    /// The device needed a reset, which failed too.
    ResetFailed(Errno),
}

impl fmt::Display for V1Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            V1Recovery::Stayed(s) => write!(f, "the device is {s}"),
            V1Recovery::Reset => f.write_str("the device was reset to running"),
            V1Recovery::ResetFailed(e) => write!(f, "the device needs a reset, which failed: {e}"),
        }
    }
}

/// A failed user-side v1 migration step.
#[derive(Debug, thiserror::Error)]
pub enum V1UserError {
    /// A header field access failed.
    #[error("{op} of {field} (region offset {offset:#x}) failed: {errno}")]
    Header {
        /// The field's name.
        field: &'static str,
        /// Its offset.
        offset: u64,
        /// `"read"` or `"write"`.
        op: &'static str,
        /// The device's errno.
        errno: Errno,
    },
    /// The device reports a `device_state` that names no state.
    #[error("the device reports device_state {value:#x}, which is no v1 state")]
    UnknownState {
        /// The value read.
        value: u32,
    },
    /// The device is not in a state this step starts from.
    #[error("the device is {state}; this step needs {expected}")]
    WrongState {
        /// Its state.
        state: V1State,
        /// What the step needs.
        expected: &'static str,
    },
    /// A state change failed.
    #[error("moving the device from {from} to {to} failed: {errno}; {recovery}")]
    SetState {
        /// The state before.
        from: V1State,
        /// The state asked for.
        to: V1State,
        /// The device's errno.
        errno: Errno,
        /// Where the device is now.
        recovery: V1Recovery,
    },
    /// The mmap-able extents do not lie inside the region in ascending, disjoint order.
    #[error(
        "mmap-able extent [{start:#x}, {end:#x}) is empty, overlaps the previous one or leaves the {region_size:#x}-byte region"
    )]
    BadExtent {
        /// Extent start.
        start: u64,
        /// Extent end.
        end: u64,
        /// The region's size.
        region_size: u64,
    },
    /// The device's data buffer overlaps the header or leaves the region.
    #[error(
        "the device reports a data buffer of {data_size:#x} bytes at data_offset {data_offset:#x}, which overlaps the 32-byte header or leaves the {region_size:#x}-byte region"
    )]
    BadDataBuffer {
        /// `data_offset` as read.
        data_offset: u64,
        /// `data_size` as read (or the chunk to write).
        data_size: u64,
        /// The region's size.
        region_size: u64,
    },
    /// In stop-and-copy, a buffer larger than what the device said was pending.
    #[error("the device stages {data_size} bytes while reporting only {pending} pending")]
    DataSizeOverPending {
        /// `data_size`.
        data_size: u64,
        /// `pending_bytes`.
        pending: u64,
    },
    /// In stop-and-copy, `pending_bytes` did not shrink after a buffer was consumed.
    #[error(
        "pending_bytes went from {before} to {after} after a {consumed}-byte buffer: the device does not converge"
    )]
    PendingNotShrinking {
        /// Before the buffer.
        before: u64,
        /// After it.
        after: u64,
        /// The buffer's size.
        consumed: u64,
    },
    /// In stop-and-copy, no data staged while bytes are pending.
    #[error("the device stages no data while reporting {pending} bytes pending in stop-and-copy")]
    Stalled {
        /// `pending_bytes`.
        pending: u64,
    },
    /// Reading or writing data bytes failed.
    #[error(
        "{op} of {len} data bytes at region offset {offset:#x} through the {path} path failed: {errno}"
    )]
    Data {
        /// Region offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// `"mmap"` or `"trapped"`.
        path: &'static str,
        /// `"read"` or `"write"`.
        op: &'static str,
        /// The device's errno.
        errno: Errno,
    },
    /// A saved chunk is larger than the region could ever stage.
    #[error("saved chunk of {len} bytes exceeds the {max}-byte region")]
    ChunkTooLarge {
        /// The chunk's length.
        len: u64,
        /// The region's size.
        max: u64,
    },
    /// Writing saved chunks to the sink failed.
    #[error("writing saved chunks to the migration sink after {offset} bytes failed: {source}")]
    Sink {
        /// Bytes written before.
        offset: u64,
        /// The sink's error.
        source: io::Error,
    },
    /// Reading saved chunks from the source failed or stopped inside a chunk.
    #[error("reading saved chunks from the migration source after {offset} bytes failed: {source}")]
    Source {
        /// Bytes read before.
        offset: u64,
        /// The source's error (`UnexpectedEof` for a truncated chunk).
        source: io::Error,
    },
    /// A resume failed part way and was abandoned with a reset.
    #[error("resume aborted: {source}; {recovery}")]
    ResumeAborted {
        /// Why.
        source: Box<V1UserError>,
        /// The reset's outcome.
        recovery: V1Recovery,
    },
}
