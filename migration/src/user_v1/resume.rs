//! The v1 resuming loop: each saved chunk is written at `data_offset`, then `data_size` is
//! written to hand it to the device.

use std::io::Read;

use super::access::V1RegionAccess;
use super::data::{check_buffer, checked_extents, write_data};
use super::error::V1UserError;
use super::state::{read_field, reset_v1, set_v1_state};
use crate::vfio_v1::{HeaderField, V1State};

/// What a resume loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1ResumeReport {
    /// Data bytes loaded.
    pub bytes: u64,
    /// Chunks loaded.
    pub chunks: u64,
}

/// Moves the device to resuming (100b), loads the chunks read from `source` (as written by
/// [`v1_save_stop_copy`](super::v1_save_stop_copy) and [`v1_save_precopy`](super::v1_save_precopy),
/// up to the end marker), then moves it to `target` (running or stopped). A failure while
/// loading abandons the resume with a reset; a stream the device rejects fails the final state
/// change, which leaves the error state and is reset.
pub fn v1_resume<A: V1RegionAccess + ?Sized, R: Read + ?Sized>(
    region: &mut A,
    source: &mut R,
    target: V1State,
) -> Result<V1ResumeReport, V1UserError> {
    if !matches!(target, V1State::Running | V1State::Stop) {
        return Err(V1UserError::WrongState {
            state: target,
            expected: "running or stopped as the state after resuming",
        });
    }
    let extents = checked_extents(region)?;
    set_v1_state(region, V1State::Resuming)?;
    let report = match load_chunks(region, &extents, source) {
        Ok(report) => report,
        Err(e) => {
            return Err(V1UserError::ResumeAborted {
                source: Box::new(e),
                recovery: reset_v1(region),
            });
        }
    };
    set_v1_state(region, target)?;
    Ok(report)
}

fn load_chunks<A: V1RegionAccess + ?Sized, R: Read + ?Sized>(
    region: &mut A,
    extents: &[std::ops::Range<u64>],
    source: &mut R,
) -> Result<V1ResumeReport, V1UserError> {
    let mut report = V1ResumeReport {
        bytes: 0,
        chunks: 0,
    };
    loop {
        let mut len = [0u8; 8];
        source
            .read_exact(&mut len)
            .map_err(|source| V1UserError::Source {
                offset: report.bytes,
                source,
            })?;
        let len = u64::from_le_bytes(len);
        if len == 0 {
            return Ok(report);
        }
        let max = region.region_size();
        if len > max {
            return Err(V1UserError::ChunkTooLarge { len, max });
        }
        let mut chunk = vec![0u8; len as usize];
        source
            .read_exact(&mut chunk)
            .map_err(|source| V1UserError::Source {
                offset: report.bytes,
                source,
            })?;
        let offset = read_field(region, HeaderField::DataOffset)?;
        check_buffer(offset, len, max)?;
        write_data(region, extents, offset, &chunk)?;
        let field = HeaderField::DataSize;
        region
            .write_u64(field.offset(), len)
            .map_err(|errno| V1UserError::Header {
                field: field.name(),
                offset: field.offset(),
                op: "write",
                errno,
            })?;
        report.bytes += len;
        report.chunks += 1;
    }
}
