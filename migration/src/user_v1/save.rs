//! The v1 saving loop: pre-copy rounds and stop-and-copy, each buffer written to the sink as a
//! chunk (`u64` little-endian length, then the bytes; a zero length ends the device's chunks),
//! because a v1 device must be resumed with the chunks it produced, in their sizes and order.

use std::io::Write;

use super::access::V1RegionAccess;
use super::data::{check_buffer, checked_extents, read_data};
use super::error::V1UserError;
use super::state::{read_field, read_state, set_v1_state};
use crate::vfio_v1::{HeaderField, V1State};

/// What a saving loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1SaveReport {
    /// Data bytes saved (framing excluded).
    pub bytes: u64,
    /// Chunks saved.
    pub chunks: u64,
    /// Whether the device reported nothing pending at the end.
    pub drained: bool,
}

/// Reads `data_offset` (which stages a buffer) and `data_size`, and checks the buffer.
fn staged_buffer<A: V1RegionAccess + ?Sized>(region: &mut A) -> Result<(u64, u64), V1UserError> {
    let offset = read_field(region, HeaderField::DataOffset)?;
    let size = read_field(region, HeaderField::DataSize)?;
    check_buffer(offset, size, region.region_size())?;
    Ok((offset, size))
}

/// Copies the staged buffer to `sink` as one chunk.
fn save_chunk<A: V1RegionAccess + ?Sized, W: Write + ?Sized>(
    region: &mut A,
    extents: &[std::ops::Range<u64>],
    offset: u64,
    size: u64,
    sink: &mut W,
    saved: u64,
) -> Result<(), V1UserError> {
    let mut buf = vec![0u8; size as usize];
    read_data(region, extents, offset, &mut buf)?;
    sink.write_all(&size.to_le_bytes())
        .and_then(|()| sink.write_all(&buf))
        .map_err(|source| V1UserError::Sink {
            offset: saved,
            source,
        })
}

/// One pre-copy pass (the device must be in pre-copy, 011b): saves buffers while
/// `pending_bytes` is non-zero and the device stages data, up to about `max_bytes`.
pub fn v1_save_precopy<A: V1RegionAccess + ?Sized, W: Write + ?Sized>(
    region: &mut A,
    sink: &mut W,
    max_bytes: u64,
) -> Result<V1SaveReport, V1UserError> {
    let (_, state) = read_state(region)?;
    if state != V1State::PreCopy {
        return Err(V1UserError::WrongState {
            state,
            expected: "pre-copy (011b)",
        });
    }
    let extents = checked_extents(region)?;
    let mut report = V1SaveReport {
        bytes: 0,
        chunks: 0,
        drained: false,
    };
    loop {
        // Also acknowledges the previous buffer.
        let pending = read_field(region, HeaderField::PendingBytes)?;
        if pending == 0 {
            report.drained = true;
            return Ok(report);
        }
        if report.bytes >= max_bytes {
            return Ok(report);
        }
        let (offset, size) = staged_buffer(region)?;
        if size == 0 {
            // Nothing staged for now: what is pending is left for the next pass.
            return Ok(report);
        }
        save_chunk(region, &extents, offset, size, sink, report.bytes)?;
        report.bytes += size;
        report.chunks += 1;
    }
}

/// Stop-and-copy: moves the device to stop-and-copy (010b), saves buffers until
/// `pending_bytes` is 0, writes the end-of-chunks marker and stops the device (000b).
pub fn v1_save_stop_copy<A: V1RegionAccess + ?Sized, W: Write + ?Sized>(
    region: &mut A,
    sink: &mut W,
) -> Result<V1SaveReport, V1UserError> {
    let (_, state) = read_state(region)?;
    if matches!(state, V1State::Resuming | V1State::Error) {
        return Err(V1UserError::WrongState {
            state,
            expected: "a running, pre-copying or stopped device",
        });
    }
    let extents = checked_extents(region)?;
    set_v1_state(region, V1State::StopAndCopy)?;
    let mut report = V1SaveReport {
        bytes: 0,
        chunks: 0,
        drained: true,
    };
    let mut last: Option<(u64, u64)> = None;
    loop {
        let pending = read_field(region, HeaderField::PendingBytes)?;
        if let Some((before, consumed)) = last {
            if pending >= before {
                return Err(V1UserError::PendingNotShrinking {
                    before,
                    after: pending,
                    consumed,
                });
            }
        }
        if pending == 0 {
            break;
        }
        let (offset, size) = staged_buffer(region)?;
        if size == 0 {
            return Err(V1UserError::Stalled { pending });
        }
        if size > pending {
            return Err(V1UserError::DataSizeOverPending {
                data_size: size,
                pending,
            });
        }
        save_chunk(region, &extents, offset, size, sink, report.bytes)?;
        report.bytes += size;
        report.chunks += 1;
        last = Some((pending, size));
    }
    sink.write_all(&0u64.to_le_bytes())
        .map_err(|source| V1UserError::Sink {
            offset: report.bytes,
            source,
        })?;
    set_v1_state(region, V1State::Stop)?;
    Ok(report)
}
