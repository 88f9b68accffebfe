//! [`ConfigPolicy`]: for every bit of config space, where guest reads come from and whether guest
//! writes reach the device.
//!
//! Two masks per byte, as the kernel's vfio-pci keeps them (`struct perm_bits`):
//! - *virtual* bits are served from the passthrough device's own registers (a
//!   [`PciConfiguration`](devices::pci::PciConfiguration) and the MSI/MSI-X models); the other
//!   bits are read from the device at the time of the read;
//! - *device-writable* bits of a guest write are written to the device (merged into what it
//!   holds, so the other bits of the byte are unchanged); a write with none never reaches it.
//!
//! Which virtual bits the guest may change is the register file's business (its write masks),
//! so a bit can be virtual and writable (a BAR address), virtual and read-only (the capability
//! pointer), passed through read-only (the class code), or both virtual and device-writable (the
//! memory enable bit, which drives BAR decoding here and on the device).

use super::discovery::CONFIG_SPACE_SIZE;

/// Per-bit read source and write permission of config space. Everything starts virtual and
/// read-only to the device.
#[derive(Clone)]
pub(super) struct ConfigPolicy {
    virt: Box<[u8; CONFIG_SPACE_SIZE]>,
    dev_write: Box<[u8; CONFIG_SPACE_SIZE]>,
}

impl std::fmt::Debug for ConfigPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let passthrough = self.virt.iter().filter(|b| **b != 0xff).count();
        let writable = self.dev_write.iter().filter(|b| **b != 0).count();
        f.debug_struct("ConfigPolicy")
            .field("bytes_read_from_device", &passthrough)
            .field("bytes_written_to_device", &writable)
            .finish()
    }
}

impl Default for ConfigPolicy {
    fn default() -> Self {
        Self {
            virt: Box::new([0xff; CONFIG_SPACE_SIZE]),
            dev_write: Box::new([0; CONFIG_SPACE_SIZE]),
        }
    }
}

impl ConfigPolicy {
    /// Sets the field of `width` bytes at `offset`: `virt` bits are virtual, `dev_write` bits
    /// reach the device on guest writes.
    pub fn set(&mut self, offset: u16, width: usize, virt: u32, dev_write: u32) {
        for i in 0..width {
            let at = usize::from(offset) + i;
            if at < CONFIG_SPACE_SIZE {
                self.virt[at] = (virt >> (8 * i)) as u8;
                self.dev_write[at] = (dev_write >> (8 * i)) as u8;
            }
        }
    }

    /// Reads `len` bytes at `offset` from the device, read-only.
    pub fn passthrough(&mut self, offset: u16, len: usize) {
        for at in usize::from(offset)..(usize::from(offset) + len).min(CONFIG_SPACE_SIZE) {
            self.virt[at] = 0;
            self.dev_write[at] = 0;
        }
    }

    /// The virtual bits of an access of `len` (at most 4) bytes at `offset`, as a little-endian
    /// value.
    pub fn virt_mask(&self, offset: u16, len: usize) -> u32 {
        gather(&self.virt[..], offset, len, 0xff)
    }

    /// The device-writable bits of an access of `len` (at most 4) bytes at `offset`.
    pub fn dev_write_mask(&self, offset: u16, len: usize) -> u32 {
        gather(&self.dev_write[..], offset, len, 0)
    }
}

/// The masks of `len` bytes at `offset`; bytes past the space take `past_end`.
fn gather(bytes: &[u8], offset: u16, len: usize, past_end: u8) -> u32 {
    let mut out = [0u8; 4];
    for (i, o) in out.iter_mut().enumerate().take(len) {
        *o = bytes
            .get(usize::from(offset) + i)
            .copied()
            .unwrap_or(past_end);
    }
    u32::from_le_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_set_per_byte_and_read_back_as_access_masks() {
        let mut p = ConfigPolicy::default();
        assert_eq!(p.virt_mask(4, 4), u32::MAX);
        assert_eq!(p.dev_write_mask(4, 4), 0);
        p.set(4, 2, 0x0403, 0x0547);
        p.passthrough(6, 2);
        assert_eq!(p.virt_mask(4, 4), 0x0000_0403);
        assert_eq!(p.dev_write_mask(4, 4), 0x0000_0547);
        assert_eq!(p.dev_write_mask(5, 1), 0x05);
        // Past the end nothing is read from or written to the device.
        assert_eq!(p.virt_mask(0xffe, 4), u32::MAX);
        assert_eq!(p.dev_write_mask(0xffe, 4), 0);
    }
}
