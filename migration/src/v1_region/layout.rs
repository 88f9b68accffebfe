//! Where the data window of a v1 migration region lies and which parts of it are mmap-able.

use std::ops::Range;

use crate::vfio_v1::HEADER_SIZE;

/// A region layout that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1LayoutError {
    /// The data window overlaps the header, is empty or ends past the region.
    #[error(
        "data window [{start:#x}, {end:#x}) must be non-empty, after the {HEADER_SIZE}-byte header and inside the {region_size:#x}-byte region"
    )]
    BadWindow {
        /// Window start (region offset).
        start: u64,
        /// Window end.
        end: u64,
        /// The region's size.
        region_size: u64,
    },
    /// An mmap-able extent is empty, outside the window, or out of order / overlapping.
    #[error(
        "mmap-able extent [{start:#x}, {end:#x}) must be non-empty, inside the data window and after the previous extent"
    )]
    BadExtent {
        /// Extent start (region offset).
        start: u64,
        /// Extent end.
        end: u64,
    },
    /// The window storage is not the size of the window.
    #[error("window storage holds {storage:#x} bytes but the data window is {window:#x} bytes")]
    StorageSize {
        /// Bytes the storage holds.
        storage: u64,
        /// Bytes of the window.
        window: u64,
    },
    /// The staging offset leaves no room in the window.
    #[error("staging offset {offset:#x} is not inside the {window:#x}-byte data window")]
    BadStagingOffset {
        /// The offset asked for (relative to the window).
        offset: u64,
        /// Bytes of the window.
        window: u64,
    },
}

/// The layout of a v1 migration region: the 32-byte header at offset 0, then a data window
/// whose mmap-able extents the device reports through `VFIO_REGION_INFO_CAP_SPARSE_MMAP`; the
/// rest of the window is trapped (read and written through the region's read/write path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Layout {
    region_size: u64,
    window: Range<u64>,
    mmap: Vec<Range<u64>>,
}

impl V1Layout {
    /// A layout of a `region_size`-byte region with the data window at `window` and mmap-able
    /// `mmap` extents (region offsets, ascending, disjoint, inside the window).
    pub fn new(
        region_size: u64,
        window: Range<u64>,
        mmap: Vec<Range<u64>>,
    ) -> Result<Self, V1LayoutError> {
        if window.start < HEADER_SIZE || window.end <= window.start || window.end > region_size {
            return Err(V1LayoutError::BadWindow {
                start: window.start,
                end: window.end,
                region_size,
            });
        }
        let mut floor = window.start;
        for e in &mmap {
            if e.start < floor || e.end <= e.start || e.end > window.end {
                return Err(V1LayoutError::BadExtent {
                    start: e.start,
                    end: e.end,
                });
            }
            floor = e.end;
        }
        Ok(V1Layout {
            region_size,
            window,
            mmap,
        })
    }

    /// The region's size (`VFIO_DEVICE_GET_REGION_INFO` `size`).
    pub fn region_size(&self) -> u64 {
        self.region_size
    }

    /// The data window (region offsets).
    pub fn window(&self) -> Range<u64> {
        self.window.clone()
    }

    /// Bytes of the data window.
    pub fn window_len(&self) -> u64 {
        self.window.end - self.window.start
    }

    /// The mmap-able extents (region offsets), for the sparse-mmap capability.
    pub fn mmap_extents(&self) -> &[Range<u64>] {
        &self.mmap
    }
}
