//! Saving one device: PRE_COPY iterations until convergence, then STOP_COPY to the end.

use std::io::Write;

use super::error::V2UserError;
use super::traits::{DataStream, MigrationDevice, ReadOutcome};
use super::transition::transition;
use crate::vfio_v2::{DeviceState, PrecopyInfo};

/// When PRE_COPY has done enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecopyPolicy {
    /// Converged once the initial bytes are all sent and the device reports at most this many
    /// dirty bytes (what STOP_COPY will add to the downtime).
    pub dirty_threshold: u64,
    /// Stop after sending this many bytes in one call even if not converged (a device dirtying
    /// faster than it is read would otherwise never let the call return).
    pub max_bytes: u64,
    /// Bytes asked for by each read.
    pub read_size: usize,
}

impl Default for PrecopyPolicy {
    /// 64 KiB of dirty state tolerated, 256 MiB per call, 64 KiB reads.
    fn default() -> Self {
        PrecopyPolicy {
            dirty_threshold: 64 << 10,
            max_bytes: 256 << 20,
            read_size: 64 << 10,
        }
    }
}

/// What one PRE_COPY pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecopyReport {
    /// Bytes sent to the sink.
    pub bytes: u64,
    /// Whether the convergence rule was met (else `max_bytes` was reached).
    pub converged: bool,
    /// The last PRECOPY_INFO read.
    pub last_info: PrecopyInfo,
}

/// Reads a PRE_COPY stream into `sink` until the initial bytes are sent and the dirty bytes are
/// at most `policy.dirty_threshold` (or the device has nothing for now with no initial bytes
/// left: `ENOMSG`, or a read of 0 bytes as some drivers answer), or until `policy.max_bytes`
/// were sent. May be called again for another pass.
pub fn save_precopy<S: DataStream + ?Sized, W: Write + ?Sized>(
    stream: &mut S,
    sink: &mut W,
    policy: &PrecopyPolicy,
) -> Result<PrecopyReport, V2UserError> {
    let mut buf = vec![0u8; policy.read_size.max(1)];
    let mut bytes = 0u64;
    loop {
        let info = stream
            .precopy_info()
            .map_err(|errno| V2UserError::PrecopyInfo {
                offset: bytes,
                errno,
            })?;
        let report = |converged| PrecopyReport {
            bytes,
            converged,
            last_info: info,
        };
        if info.initial_bytes == 0 && info.dirty_bytes <= policy.dirty_threshold {
            return Ok(report(true));
        }
        if bytes >= policy.max_bytes {
            return Ok(report(false));
        }
        let outcome = stream.read(&mut buf).map_err(|errno| V2UserError::Read {
            state: DeviceState::PreCopy,
            offset: bytes,
            errno,
        })?;
        match outcome {
            ReadOutcome::Data(n) => {
                sink.write_all(&buf[..n])
                    .map_err(|source| V2UserError::Sink {
                        offset: bytes,
                        source,
                    })?;
                bytes += n as u64;
            }
            // PRE_COPY's temporary end of stream: the uAPI asks for `ENOMSG`, but a read of 0
            // bytes means the same here (Linux's own mtty sample answers 0 when drained, measured
            // on 6.12); the session goes on into STOP_COPY either way.
            ReadOutcome::NoDataNow | ReadOutcome::End if info.initial_bytes == 0 => {
                return Ok(report(true));
            }
            ReadOutcome::NoDataNow | ReadOutcome::End => {
                return Err(V2UserError::PrecopyStalled {
                    offset: bytes,
                    initial_bytes: info.initial_bytes,
                });
            }
        }
    }
}

/// Moves `dev` to STOP_COPY, reads its stream to the end into `sink`, then moves it to STOP.
/// `stream` is the PRE_COPY session's stream when the device is pre-copying (the same session
/// continues); from RUNNING, RUNNING_P2P or STOP a new one is opened. Returns the bytes sent.
pub fn save_stop_copy<D: MigrationDevice + ?Sized, W: Write + ?Sized>(
    dev: &mut D,
    stream: Option<D::Stream>,
    sink: &mut W,
    read_size: usize,
) -> Result<u64, V2UserError> {
    let from = dev
        .state()
        .map_err(|errno| V2UserError::GetState { errno })?;
    if matches!(from, DeviceState::Resuming | DeviceState::Error) {
        return Err(V2UserError::WrongState {
            state: from,
            expected: "a running, quiescent, stopped or pre-copying device",
        });
    }
    if from.is_saving() && stream.is_none() {
        // Its session continues into STOP_COPY and no new stream will be handed out.
        return Err(V2UserError::WrongState {
            state: from,
            expected: "the stream of the device's open saving session",
        });
    }
    let opened = transition(dev, DeviceState::StopCopy)?;
    let Some(mut stream) = opened.or(stream) else {
        return Err(V2UserError::NoStream {
            from,
            to: DeviceState::StopCopy,
        });
    };
    let mut buf = vec![0u8; read_size.max(1)];
    let mut bytes = 0u64;
    loop {
        let outcome = stream.read(&mut buf).map_err(|errno| V2UserError::Read {
            state: DeviceState::StopCopy,
            offset: bytes,
            errno,
        })?;
        match outcome {
            ReadOutcome::Data(n) => {
                sink.write_all(&buf[..n])
                    .map_err(|source| V2UserError::Sink {
                        offset: bytes,
                        source,
                    })?;
                bytes += n as u64;
            }
            ReadOutcome::End => break,
            ReadOutcome::NoDataNow => {
                return Err(V2UserError::BadStreamEnd {
                    state: DeviceState::StopCopy,
                    offset: bytes,
                    what: "had no data for now, which STOP_COPY may not say",
                });
            }
        }
    }
    transition(dev, DeviceState::Stop)?;
    Ok(bytes)
}
