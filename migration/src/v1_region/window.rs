//! The storage behind a v1 region's data window, which the device provides.

/// The bytes of the data window. The device model provides it: the emulated device backs it
/// with shared memory so that the mmap-able extents are real mappings of the same bytes. The
/// region model only calls it with ranges inside the window.
pub trait WindowStorage {
    /// Bytes of the window.
    fn size(&self) -> u64;

    /// Copies `buf.len()` bytes at window offset `offset` into `buf`.
    fn read(&self, offset: u64, buf: &mut [u8]);

    /// Copies `data` to window offset `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A window held in process memory: for trapped-only windows and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecWindow(Vec<u8>);

impl VecWindow {
    /// A zeroed window of `size` bytes.
    pub fn new(size: usize) -> Self {
        VecWindow(vec![0; size])
    }

    /// The window's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The window's bytes, for writing (what a mapping of the window does).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl WindowStorage for VecWindow {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) {
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let start = offset as usize;
        self.0[start..start + data.len()].copy_from_slice(data);
    }
}
