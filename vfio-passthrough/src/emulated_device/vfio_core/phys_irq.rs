//! The interrupt capabilities of an emulated device's *physical* configuration space, as the
//! host kernel programs them: MSI and MSI-X are enabled by `VFIO_DEVICE_SET_IRQS` (the user's
//! writes to their enable bits are virtualized away), and the MSI per-vector mask and pending
//! bits are real device registers the user may write.

use devices::pci::PciConfiguration;

/// MSI capability ID.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// MSI-X capability ID.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// `PCI_MSI_FLAGS_ENABLE`.
pub const MSI_FLAGS_ENABLE: u16 = 0x0001;
/// `PCI_MSI_FLAGS_QMASK`: log2 of the vectors the function can send.
pub const MSI_FLAGS_QMASK: u16 = 0x000e;
/// `PCI_MSI_FLAGS_QSIZE`: log2 of the vectors enabled.
pub const MSI_FLAGS_QSIZE: u16 = 0x0070;
/// `PCI_MSI_FLAGS_64BIT`.
pub const MSI_FLAGS_64BIT: u16 = 0x0080;
/// `PCI_MSI_FLAGS_MASKBIT`: per-vector masking.
pub const MSI_FLAGS_MASKBIT: u16 = 0x0100;
/// `PCI_MSIX_FLAGS_QSIZE`: table size - 1.
pub const MSIX_FLAGS_QSIZE: u16 = 0x07ff;
/// `PCI_MSIX_FLAGS_MASKALL`.
pub const MSIX_FLAGS_MASKALL: u16 = 0x4000;
/// `PCI_MSIX_FLAGS_ENABLE`.
pub const MSIX_FLAGS_ENABLE: u16 = 0x8000;

/// Reads the 16-bit register at `offset` of the physical space (the device's own view).
pub fn read16(config: &PciConfiguration, offset: u16) -> u16 {
    let dword = config.read_register(usize::from(offset / 4));
    (dword >> ((offset % 4) * 8)) as u16
}

/// Sets the 16-bit register at `offset` as the device or host does (ignoring write masks).
pub fn write16(config: &mut PciConfiguration, offset: u16, value: u16) {
    let idx = usize::from(offset / 4);
    let shift = (offset % 4) * 8;
    let dword = config.read_register(idx);
    let new = (dword & !(0xffff << shift)) | (u32::from(value) << shift);
    config.set_register(idx, new);
}

/// The physical MSI capability of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysMsi {
    /// Offset of the capability.
    pub offset: u16,
    /// Message control as built (QMASK, 64-bit, mask bit).
    flags: u16,
}

impl PhysMsi {
    /// The MSI capability of `config`, if it has one.
    pub fn find(config: &PciConfiguration) -> Option<Self> {
        let offset = config.find_capability(PCI_CAP_ID_MSI)?;
        Some(PhysMsi {
            offset,
            flags: read16(config, offset + 2),
        })
    }

    /// Vectors the function can send (`1 << QMASK`).
    pub fn max_vectors(&self) -> u32 {
        1 << ((self.flags & MSI_FLAGS_QMASK) >> 1)
    }

    /// Whether per-vector masking exists.
    pub fn has_mask_bits(&self) -> bool {
        self.flags & MSI_FLAGS_MASKBIT != 0
    }

    /// Bytes of the capability (never 0).
    pub fn size(&self) -> u16 {
        let mut len = if self.flags & MSI_FLAGS_64BIT != 0 {
            14
        } else {
            10
        };
        if self.has_mask_bits() {
            len += 10;
        }
        len
    }

    /// Offset of the mask register, if the capability has one.
    pub fn mask_offset(&self) -> Option<u16> {
        self.has_mask_bits().then(|| {
            self.offset
                + if self.flags & MSI_FLAGS_64BIT != 0 {
                    0x10
                } else {
                    0x0c
                }
        })
    }

    /// Offset of the pending register, if the capability has one.
    pub fn pending_offset(&self) -> Option<u16> {
        self.mask_offset().map(|m| m + 4)
    }

    /// Whether MSI is enabled on the device.
    pub fn enabled(&self, config: &PciConfiguration) -> bool {
        read16(config, self.offset + 2) & MSI_FLAGS_ENABLE != 0
    }

    /// Vectors enabled (`1 << QSIZE`), 0 while disabled.
    pub fn enabled_vectors(&self, config: &PciConfiguration) -> u32 {
        let control = read16(config, self.offset + 2);
        if control & MSI_FLAGS_ENABLE == 0 {
            return 0;
        }
        1 << ((control & MSI_FLAGS_QSIZE) >> 4)
    }

    /// Enables MSI with `nvec` vectors (rounded up to a power of two, as the PCI core does).
    pub fn enable(&self, config: &mut PciConfiguration, nvec: u32) {
        let qsize = nvec.max(1).next_power_of_two().trailing_zeros() as u16;
        let control = read16(config, self.offset + 2) & !MSI_FLAGS_QSIZE;
        write16(
            config,
            self.offset + 2,
            control | (qsize << 4) | MSI_FLAGS_ENABLE,
        );
    }

    /// Disables MSI.
    pub fn disable(&self, config: &mut PciConfiguration) {
        let control = read16(config, self.offset + 2);
        write16(
            config,
            self.offset + 2,
            control & !(MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE),
        );
    }

    /// Whether vector `v` is masked by its mask bit.
    pub fn masked(&self, config: &PciConfiguration, v: u32) -> bool {
        match self.mask_offset() {
            Some(m) if v < 32 => config.read_register(usize::from(m / 4)) & (1 << v) != 0,
            _ => false,
        }
    }

    /// The pending bits.
    pub fn pending(&self, config: &PciConfiguration) -> u32 {
        self.pending_offset()
            .map_or(0, |p| config.read_register(usize::from(p / 4)))
    }

    /// Sets or clears the pending bit of vector `v`.
    pub fn set_pending(&self, config: &mut PciConfiguration, v: u32, on: bool) {
        if let Some(p) = self.pending_offset() {
            if v < 32 {
                let idx = usize::from(p / 4);
                let bits = config.read_register(idx);
                let new = if on {
                    bits | (1 << v)
                } else {
                    bits & !(1 << v)
                };
                config.set_register(idx, new);
            }
        }
    }
}

/// The physical MSI-X capability of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysMsix {
    /// Offset of the capability.
    pub offset: u16,
}

impl PhysMsix {
    /// The MSI-X capability of `config`, if it has one.
    pub fn find(config: &PciConfiguration) -> Option<Self> {
        config
            .find_capability(PCI_CAP_ID_MSIX)
            .map(|offset| PhysMsix { offset })
    }

    /// Vectors of the table.
    pub fn table_size(&self, config: &PciConfiguration) -> u32 {
        u32::from(read16(config, self.offset + 2) & MSIX_FLAGS_QSIZE) + 1
    }

    /// `(BAR, offset)` of the table.
    pub fn table(&self, config: &PciConfiguration) -> (u8, u32) {
        let reg = config.read_register(usize::from((self.offset + 4) / 4));
        ((reg & 7) as u8, reg & !7)
    }

    /// Whether MSI-X is enabled on the device.
    pub fn enabled(&self, config: &PciConfiguration) -> bool {
        read16(config, self.offset + 2) & MSIX_FLAGS_ENABLE != 0
    }

    /// Sets the enable bit.
    pub fn set_enabled(&self, config: &mut PciConfiguration, on: bool) {
        let control = read16(config, self.offset + 2) & !MSIX_FLAGS_ENABLE;
        let bit = if on { MSIX_FLAGS_ENABLE } else { 0 };
        write16(config, self.offset + 2, control | bit);
    }
}
