//! The data window of an emulated device's v1 migration region: an mmap-able extent backed by
//! shared memory followed by a trapped extent held in process memory, so that a staged buffer
//! may start in one and end in the other (as on devices whose window is part BAR, part
//! registers).

use std::ops::Range;
use std::sync::Arc;

use migration::v1_region::{V1Layout, V1LayoutError, WindowStorage};
use migration::vfio_v1::HEADER_SIZE;

use super::shared_memory::{SharedMemory, SharedMemoryError};

/// Bytes of the header page (trapped; the header is its first 32 bytes).
pub const V1_HEADER_PAGE: u64 = 0x1000;
/// Bytes of the mmap-able extent of the window.
pub const V1_MMAP_LEN: u64 = 0x10000;
/// Bytes of the trapped extent of the window.
pub const V1_TRAPPED_LEN: u64 = 0x10000;
/// Where buffers are staged in the window: 2 KiB before the end of the mmap-able extent, so
/// that every buffer longer than 2 KiB crosses into the trapped extent.
pub const V1_STAGING_OFFSET: u64 = V1_MMAP_LEN - 0x800;

/// The window storage.
#[derive(Debug)]
pub struct V1Window {
    mapped: Arc<SharedMemory>,
    trapped: Vec<u8>,
}

/// Why the v1 window could not be built.
#[derive(Debug, thiserror::Error)]
pub enum V1WindowError {
    /// The shared memory of the mmap-able extent.
    #[error("v1 migration window: {0}")]
    Memory(#[from] SharedMemoryError),
    /// The layout (a bug in the constants above).
    #[error("v1 migration window: {0}")]
    Layout(#[from] V1LayoutError),
}

impl V1Window {
    /// A zeroed window for device `name`.
    pub fn new(name: &str) -> Result<Self, V1WindowError> {
        let mapped = Arc::new(SharedMemory::new(
            &format!("{name}-v1-window"),
            V1_MMAP_LEN,
        )?);
        Ok(V1Window {
            mapped,
            trapped: vec![0; V1_TRAPPED_LEN as usize],
        })
    }

    /// The region layout: the header page, then the mmap-able extent, then the trapped one.
    pub fn layout() -> Result<V1Layout, V1LayoutError> {
        const { assert!(HEADER_SIZE <= V1_HEADER_PAGE) };
        let window_start = V1_HEADER_PAGE;
        let window_end = window_start + V1_MMAP_LEN + V1_TRAPPED_LEN;
        V1Layout::new(
            window_end,
            window_start..window_end,
            vec![Self::mmap_extent()],
        )
    }

    /// The memory behind the mmap-able extent (region offsets [`Self::mmap_extent`]).
    pub fn mapped(&self) -> &Arc<SharedMemory> {
        &self.mapped
    }

    /// The mmap-able extent, as region offsets.
    pub fn mmap_extent() -> Range<u64> {
        V1_HEADER_PAGE..V1_HEADER_PAGE + V1_MMAP_LEN
    }

    /// Splits window `[offset, offset + len)` at the end of the mapped extent.
    fn split(offset: u64, len: usize) -> (Range<usize>, Range<usize>) {
        let end = offset as usize + len;
        let cut = (V1_MMAP_LEN as usize).clamp(offset as usize, end);
        (offset as usize..cut, cut..end)
    }
}

impl WindowStorage for V1Window {
    fn size(&self) -> u64 {
        V1_MMAP_LEN + V1_TRAPPED_LEN
    }

    fn read(&self, offset: u64, buf: &mut [u8]) {
        let (mapped, trapped) = Self::split(offset, buf.len());
        let n = mapped.len();
        if n > 0 {
            if let Err(e) = self.mapped.read(mapped.start as u64, &mut buf[..n]) {
                // The memfd cannot fail a read inside its size; if the host does, the stream
                // CRC makes the loss visible at the destination.
                log::error!("v1 window: reading the mapped extent: {e}");
                buf[..n].fill(0);
            }
        }
        let t0 = trapped.start.saturating_sub(V1_MMAP_LEN as usize);
        buf[n..].copy_from_slice(&self.trapped[t0..t0 + trapped.len()]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (mapped, trapped) = Self::split(offset, data.len());
        let n = mapped.len();
        if n > 0 {
            if let Err(e) = self.mapped.write(mapped.start as u64, &data[..n]) {
                log::error!("v1 window: writing the mapped extent: {e}");
            }
        }
        let t0 = trapped.start.saturating_sub(V1_MMAP_LEN as usize);
        self.trapped[t0..t0 + trapped.len()].copy_from_slice(&data[n..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_across_the_extents_lands_in_both_backings() {
        let mut w = V1Window::new("v1-window-test").unwrap();
        let data: Vec<u8> = (0..0x1000u32).map(|i| i as u8).collect();
        w.write(V1_STAGING_OFFSET, &data);
        let mut back = vec![0u8; data.len()];
        w.read(V1_STAGING_OFFSET, &mut back);
        assert_eq!(back, data);
        let mut mapped = [0u8; 0x800];
        w.mapped().read(V1_STAGING_OFFSET, &mut mapped).unwrap();
        assert_eq!(&mapped[..], &data[..0x800]);
        assert_eq!(&w.trapped[..0x800], &data[0x800..]);
        assert_eq!(
            V1Window::layout().unwrap().mmap_extents(),
            &[V1Window::mmap_extent()]
        );
    }
}
