//! What the user side needs from a v1 migration region, and how a data buffer is cut into
//! mmap-able and trapped pieces.

use std::ops::Range;

use crate::errno::Errno;

/// Access to one device's v1 migration region (consumer-side: the passthrough device
/// implements it over `VFIO_DEVICE_GET_REGION_INFO`, `pread`/`pwrite` and its mappings of the
/// region's sparse-mmap areas).
pub trait V1RegionAccess {
    /// The region's size.
    fn region_size(&self) -> u64;

    /// The mmap-able extents of the region (region offsets), as the sparse-mmap capability
    /// reports them; everything else is trapped.
    fn mmap_extents(&self) -> Vec<Range<u64>>;

    /// A 4-byte read of a header field (`pread` of exactly 4 bytes at `offset`).
    fn read_u32(&mut self, offset: u64) -> Result<u32, Errno>;

    /// A 4-byte write of a header field.
    fn write_u32(&mut self, offset: u64, value: u32) -> Result<(), Errno>;

    /// An 8-byte read of a header field.
    fn read_u64(&mut self, offset: u64) -> Result<u64, Errno>;

    /// An 8-byte write of a header field.
    fn write_u64(&mut self, offset: u64, value: u64) -> Result<(), Errno>;

    /// Reads region bytes through the trapped path (`pread`).
    fn trapped_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Writes region bytes through the trapped path (`pwrite`).
    fn trapped_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno>;

    /// Reads region bytes through the mapping. Callers keep `[offset, offset + buf.len())`
    /// inside one extent of [`mmap_extents`](Self::mmap_extents).
    fn mmap_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// Writes region bytes through the mapping, inside one extent.
    fn mmap_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno>;

    /// `VFIO_DEVICE_RESET`: the last resort after a failure (back to running).
    fn reset(&mut self) -> Result<(), Errno>;
}

/// A piece of a data buffer and the path that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Region offsets of the piece.
    pub range: Range<u64>,
    /// Whether it lies in an mmap-able extent (else it is trapped).
    pub mapped: bool,
}

/// Cuts `[offset, offset + len)` at extent boundaries: pieces inside an extent are mapped, the
/// others trapped. `extents` must be ascending and disjoint.
pub fn split_by_extents(offset: u64, len: u64, extents: &[Range<u64>]) -> Vec<Piece> {
    let end = offset + len;
    let mut pieces = Vec::new();
    let mut at = offset;
    while at < end {
        let inside = extents.iter().find(|e| e.start <= at && at < e.end);
        let (stop, mapped) = match inside {
            Some(e) => (e.end.min(end), true),
            None => {
                let next = extents
                    .iter()
                    .map(|e| e.start)
                    .filter(|s| *s > at)
                    .min()
                    .unwrap_or(end);
                (next.min(end), false)
            }
        };
        pieces.push(Piece {
            range: at..stop,
            mapped,
        });
        at = stop;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_cut_at_every_extent_boundary() {
        let extents = [0x1000..0x2000, 0x3000..0x4000];
        assert_eq!(
            split_by_extents(0x1800, 0x2800, &extents),
            vec![
                Piece {
                    range: 0x1800..0x2000,
                    mapped: true
                },
                Piece {
                    range: 0x2000..0x3000,
                    mapped: false
                },
                Piece {
                    range: 0x3000..0x4000,
                    mapped: true
                },
            ]
        );
        assert_eq!(
            split_by_extents(0x800, 0x100, &extents),
            vec![Piece {
                range: 0x800..0x900,
                mapped: false
            }]
        );
        assert_eq!(
            split_by_extents(0x1f00, 0x200, &extents),
            vec![
                Piece {
                    range: 0x1f00..0x2000,
                    mapped: true
                },
                Piece {
                    range: 0x2000..0x2100,
                    mapped: false
                },
            ]
        );
        assert!(split_by_extents(0x1000, 0, &extents).is_empty());
    }
}
