//! Port I/O, MMIO and MSR access: the only ways this guest touches hardware.

use core::arch::asm;

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port input has no memory effects; the ports we read (COM1's line status) have no
    // read side effects either.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack)) };
    value
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port output has no memory effects visible to this program.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Writes a 16-bit word to an I/O port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: port output has no memory effects visible to this program.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) };
}

/// Reads a 32-bit MMIO register or physical memory word at `addr`.
///
/// # Safety
/// `addr` must be mapped (identity) and 4-byte aligned, and reading it must have no effect
/// the caller did not intend.
pub unsafe fn read32(addr: u64) -> u32 {
    // SAFETY: the caller guarantees the address is mapped and aligned.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes a 32-bit MMIO register or physical memory word at `addr`.
///
/// # Safety
/// `addr` must be mapped (identity), 4-byte aligned, and not memory this program uses as
/// anything else.
pub unsafe fn write32(addr: u64, value: u32) {
    // SAFETY: the caller guarantees the address is mapped, aligned and ours to write.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// Reads a 16-bit MMIO register at `addr`.
///
/// # Safety
/// As [`read32`], 2-byte aligned.
pub unsafe fn read16(addr: u64) -> u16 {
    // SAFETY: the caller guarantees the address is mapped and aligned.
    unsafe { core::ptr::read_volatile(addr as *const u16) }
}

/// Writes a 16-bit MMIO register at `addr`.
///
/// # Safety
/// As [`write32`], 2-byte aligned.
pub unsafe fn write16(addr: u64, value: u16) {
    // SAFETY: the caller guarantees the address is mapped, aligned and ours to write.
    unsafe { core::ptr::write_volatile(addr as *mut u16, value) }
}

/// Reads a byte of physical memory (identity mapped).
///
/// # Safety
/// `addr` must be mapped.
pub unsafe fn read8(addr: u64) -> u8 {
    // SAFETY: the caller guarantees the address is mapped.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Reads a 64-bit little-endian value at any alignment (ACPI tables are packed).
///
/// # Safety
/// `addr..addr + 8` must be mapped.
pub unsafe fn read64_unaligned(addr: u64) -> u64 {
    // SAFETY: the caller guarantees the bytes are mapped.
    unsafe { core::ptr::read_unaligned(addr as *const u64) }
}

/// Reads a 32-bit little-endian value at any alignment.
///
/// # Safety
/// `addr..addr + 4` must be mapped.
pub unsafe fn read32_unaligned(addr: u64) -> u32 {
    // SAFETY: the caller guarantees the bytes are mapped.
    unsafe { core::ptr::read_unaligned(addr as *const u32) }
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: we only read MSRs every x86-64 CPU has (IA32_APIC_BASE); no memory effects.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
///
/// # Safety
/// The write must keep the CPU in a state this program expects.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the new value is sound.
    unsafe {
        asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack)
        )
    };
}

/// A device's 32-bit registers in a memory BAR at this guest-physical (identity-mapped or
/// `paging::map_mmio`-mapped) address.
pub struct Registers(pub u64);

impl Registers {
    /// Reads the register at `offset`.
    pub fn read(&self, offset: u64) -> u32 {
        // SAFETY: the BAR is mapped and its memory decoding is on (whoever made this value
        // checked both); these are the device's registers.
        unsafe { read32(self.0 + offset) }
    }
    /// Writes the register at `offset`.
    pub fn write(&self, offset: u64, value: u32) {
        // SAFETY: as `read`.
        unsafe { write32(self.0 + offset, value) }
    }
}
