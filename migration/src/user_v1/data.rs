//! Moving a data buffer in and out of the region, extent by extent, after checking what the
//! device reports.

use std::ops::Range;

use super::access::{V1RegionAccess, split_by_extents};
use super::error::V1UserError;
use crate::vfio_v1::HEADER_SIZE;

/// The region's mmap-able extents, checked: ascending, disjoint, non-empty, inside the region.
pub(crate) fn checked_extents<A: V1RegionAccess + ?Sized>(
    region: &A,
) -> Result<Vec<Range<u64>>, V1UserError> {
    let region_size = region.region_size();
    let extents = region.mmap_extents();
    let mut floor = 0;
    for e in &extents {
        if e.start < floor || e.end <= e.start || e.end > region_size {
            return Err(V1UserError::BadExtent {
                start: e.start,
                end: e.end,
                region_size,
            });
        }
        floor = e.end;
    }
    Ok(extents)
}

/// Checks that a `size`-byte buffer at `offset` lies after the header and inside the region.
pub(crate) fn check_buffer(offset: u64, size: u64, region_size: u64) -> Result<(), V1UserError> {
    let inside = offset
        .checked_add(size)
        .is_some_and(|end| offset >= HEADER_SIZE && end <= region_size);
    if inside {
        Ok(())
    } else {
        Err(V1UserError::BadDataBuffer {
            data_offset: offset,
            data_size: size,
            region_size,
        })
    }
}

/// Reads `buf.len()` bytes at region `offset`, each piece through its own path: the mapping is
/// never used past the end of its extent.
pub(crate) fn read_data<A: V1RegionAccess + ?Sized>(
    region: &mut A,
    extents: &[Range<u64>],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), V1UserError> {
    for piece in split_by_extents(offset, buf.len() as u64, extents) {
        let at = (piece.range.start - offset) as usize;
        let part = &mut buf[at..at + (piece.range.end - piece.range.start) as usize];
        let (result, path) = if piece.mapped {
            (region.mmap_read(piece.range.start, part), "mmap")
        } else {
            (region.trapped_read(piece.range.start, part), "trapped")
        };
        result.map_err(|errno| V1UserError::Data {
            offset: piece.range.start,
            len: piece.range.end - piece.range.start,
            path,
            op: "read",
            errno,
        })?;
    }
    Ok(())
}

/// Writes `data` at region `offset`, piece by piece as [`read_data`] reads.
pub(crate) fn write_data<A: V1RegionAccess + ?Sized>(
    region: &mut A,
    extents: &[Range<u64>],
    offset: u64,
    data: &[u8],
) -> Result<(), V1UserError> {
    for piece in split_by_extents(offset, data.len() as u64, extents) {
        let at = (piece.range.start - offset) as usize;
        let part = &data[at..at + (piece.range.end - piece.range.start) as usize];
        let (result, path) = if piece.mapped {
            (region.mmap_write(piece.range.start, part), "mmap")
        } else {
            (region.trapped_write(piece.range.start, part), "trapped")
        };
        result.map_err(|errno| V1UserError::Data {
            offset: piece.range.start,
            len: piece.range.end - piece.range.start,
            path,
            op: "write",
            errno,
        })?;
    }
    Ok(())
}
