//! PCI configuration through ECAM: enumeration of bus 0, BARs, the command register and the
//! capability list.

use core::fmt;

use crate::io::{read16, read32, write16, write32};

/// Configuration space offsets and bits.
const VENDOR_ID: u64 = 0x00;
const COMMAND: u64 = 0x04;
const STATUS: u64 = 0x06;
const HEADER_TYPE: u64 = 0x0e;
const BAR0: u64 = 0x10;
const CAPABILITIES_POINTER: u64 = 0x34;
const STATUS_CAPABILITIES: u16 = 1 << 4;
const HEADER_MULTIFUNCTION: u32 = 1 << 7;
/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (the device may DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// A capability list longer than this is taken as a loop.
const MAX_CAPABILITIES: usize = 48;

/// A function's bus/device/function address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The ECAM window of segment 0.
#[derive(Debug, Clone, Copy)]
pub struct Ecam {
    /// Base address from the MCFG.
    pub base: u64,
}

impl Ecam {
    fn addr(&self, bdf: Bdf, offset: u64) -> u64 {
        self.base
            + (u64::from(bdf.bus) << 20)
            + (u64::from(bdf.device) << 15)
            + (u64::from(bdf.function) << 12)
            + offset
    }

    /// Reads a 32-bit configuration register.
    pub fn read32(&self, bdf: Bdf, offset: u64) -> u32 {
        // SAFETY: the ECAM window (from the MCFG, below 4 GiB) is identity mapped, and config
        // reads have no side effects.
        unsafe { read32(self.addr(bdf, offset & !3)) }
    }

    /// Reads a 16-bit configuration register.
    pub fn read16(&self, bdf: Bdf, offset: u64) -> u16 {
        // SAFETY: as `read32`.
        unsafe { read16(self.addr(bdf, offset & !1)) }
    }

    /// Writes a 16-bit configuration register.
    pub fn write16(&self, bdf: Bdf, offset: u64, value: u16) {
        // SAFETY: the address is in the ECAM window; the callers write registers they mean to.
        unsafe { write16(self.addr(bdf, offset & !1), value) }
    }

    /// Writes a 32-bit configuration register.
    pub fn write32(&self, bdf: Bdf, offset: u64, value: u32) {
        // SAFETY: the address is in the ECAM window; the callers write registers they mean to.
        unsafe { write32(self.addr(bdf, offset & !3), value) }
    }

    /// Calls `found` for each function on bus 0 whose vendor and device ids match.
    pub fn for_each_on_bus0(&self, vendor: u16, device: u16, mut found: impl FnMut(Bdf)) {
        let wanted = (u32::from(device) << 16) | u32::from(vendor);
        for slot in 0..32 {
            let function0 = Bdf {
                bus: 0,
                device: slot,
                function: 0,
            };
            if self.read16(function0, VENDOR_ID) == 0xffff {
                continue;
            }
            let functions =
                if self.read32(function0, HEADER_TYPE & !3) >> 16 & HEADER_MULTIFUNCTION != 0 {
                    8
                } else {
                    1
                };
            for function in 0..functions {
                let bdf = Bdf {
                    bus: 0,
                    device: slot,
                    function,
                };
                if self.read32(bdf, VENDOR_ID) == wanted {
                    found(bdf);
                }
            }
        }
    }

    /// The address of memory BAR `index` (combining the halves of a 64-bit BAR); `None` when
    /// it is an I/O BAR or unassigned (0).
    pub fn memory_bar(&self, bdf: Bdf, index: u8) -> Option<u64> {
        let offset = BAR0 + 4 * u64::from(index);
        let low = self.read32(bdf, offset);
        if low & 1 != 0 {
            return None;
        }
        let mut addr = u64::from(low & !0xf);
        if (low >> 1) & 3 == 2 {
            addr |= u64::from(self.read32(bdf, offset + 4)) << 32;
        }
        (addr != 0).then_some(addr)
    }

    /// Sets bits in the command register.
    pub fn enable(&self, bdf: Bdf, bits: u16) {
        let command = self.read16(bdf, COMMAND);
        self.write16(bdf, COMMAND, command | bits);
    }

    /// The config-space offset of capability `id`, if the function has it.
    pub fn find_capability(&self, bdf: Bdf, id: u8) -> Option<u64> {
        if self.read16(bdf, STATUS) & STATUS_CAPABILITIES == 0 {
            return None;
        }
        let mut offset = u64::from(self.read32(bdf, CAPABILITIES_POINTER) & 0xfc);
        for _ in 0..MAX_CAPABILITIES {
            if offset < 0x40 {
                return None;
            }
            let header = self.read32(bdf, offset);
            if header & 0xff == u32::from(id) {
                return Some(offset);
            }
            offset = u64::from((header >> 8) & 0xfc);
        }
        None
    }
}
