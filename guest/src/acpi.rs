//! The ACPI walk: RSDP (scanned for in the BIOS area) -> XSDT -> MCFG for the ECAM window and
//! FADT for the PM1a control port, and the power-off through that port.

use core::sync::atomic::{AtomicU16, Ordering};

use crate::Failure;
use crate::io::{outw, read8, read32_unaligned, read64_unaligned};

/// Where the RSDP may be: the BIOS read-only area (the VMM puts it at 0xe0000).
const SCAN_START: u64 = 0xe0000;
const SCAN_END: u64 = 0x100000;
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Length of the ACPI 1.0 RSDP covered by the first checksum.
const RSDP_V1_LEN: u64 = 20;
/// The table header every SDT starts with.
const HEADER_LEN: u64 = 36;
/// Tables larger than this are taken as garbage rather than walked.
const MAX_TABLE_LEN: u32 = 0x10000;

/// The PM1a control port's value before the FADT is read: the VMM's layout value, so a
/// failure before the walk still powers off.
const DEFAULT_PM1A_CNT: u16 = 0x604;
/// `SLP_TYP` of `\_S5` (soft off) that the VMM's power-off device accepts.
const SLP_TYP_S5: u16 = 5;
/// `SLP_EN`.
const SLP_EN: u16 = 1 << 13;

static PM1A_CNT_PORT: AtomicU16 = AtomicU16::new(DEFAULT_PM1A_CNT);

/// What the tables say about the machine.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    /// Where the RSDP was found.
    pub rsdp: u64,
    /// ECAM base of PCI segment 0.
    pub ecam_base: u64,
    /// First bus the ECAM window decodes.
    pub first_bus: u8,
    /// Last bus.
    pub last_bus: u8,
    /// The PM1a control block port.
    pub pm1a_cnt: u16,
}

fn checksum_ok(addr: u64, len: u64) -> bool {
    // SAFETY: callers pass ranges inside the identity-mapped low 4 GiB that hold ACPI tables.
    (0..len).fold(0u8, |sum, i| sum.wrapping_add(unsafe { read8(addr + i) })) == 0
}

fn signature_at(addr: u64) -> [u8; 4] {
    // SAFETY: `addr` is a table address from the XSDT, in mapped low memory.
    unsafe { read32_unaligned(addr) }.to_le_bytes()
}

/// A table's length after checking its header and checksum.
fn checked_table(addr: u64, signature: [u8; 4]) -> Result<u32, Failure> {
    if addr == 0 || addr >= 1 << 32 {
        return Err(Failure::BadTable(signature));
    }
    // SAFETY: the header is in mapped low memory (checked just above).
    let len = unsafe { read32_unaligned(addr + 4) };
    if u64::from(len) < HEADER_LEN || len > MAX_TABLE_LEN || !checksum_ok(addr, u64::from(len)) {
        return Err(Failure::BadTable(signature));
    }
    Ok(len)
}

fn find_rsdp() -> Option<u64> {
    (SCAN_START..SCAN_END).step_by(16).find(|&addr| {
        // SAFETY: the BIOS area is RAM in the identity map.
        let signature = unsafe { read64_unaligned(addr) }.to_le_bytes();
        &signature == RSDP_SIGNATURE && checksum_ok(addr, RSDP_V1_LEN)
    })
}

/// Walks the tables; remembers the PM1a control port for [`power_off`].
pub fn discover() -> Result<Platform, Failure> {
    let rsdp = find_rsdp().ok_or(Failure::NoRsdp)?;
    // SAFETY: the RSDP and the fields below are inside the mapped BIOS area.
    let (revision, length, xsdt) = unsafe {
        (
            read8(rsdp + 15),
            read32_unaligned(rsdp + 20),
            read64_unaligned(rsdp + 24),
        )
    };
    if revision < 2 || !checksum_ok(rsdp, u64::from(length)) {
        return Err(Failure::NoXsdt);
    }
    let xsdt_len = checked_table(xsdt, *b"XSDT")?;
    let entries = (u64::from(xsdt_len) - HEADER_LEN) / 8;
    let (mut mcfg, mut fadt) = (None, None);
    for index in 0..entries {
        // SAFETY: the entry is inside the checked XSDT.
        let table = unsafe { read64_unaligned(xsdt + HEADER_LEN + index * 8) };
        match &signature_at(table) {
            b"MCFG" => mcfg = Some(table),
            b"FACP" => fadt = Some(table),
            _ => {}
        }
    }

    let mcfg = mcfg.ok_or(Failure::MissingTable(*b"MCFG"))?;
    let mcfg_len = checked_table(mcfg, *b"MCFG")?;
    // The first allocation (16 bytes at offset 44): base, segment, first and last bus.
    if mcfg_len < 44 + 16 {
        return Err(Failure::BadTable(*b"MCFG"));
    }
    // SAFETY: inside the checked MCFG.
    let (ecam_base, segment, first_bus, last_bus) = unsafe {
        (
            read64_unaligned(mcfg + 44),
            read32_unaligned(mcfg + 52) & 0xffff,
            read8(mcfg + 54),
            read8(mcfg + 55),
        )
    };
    if segment != 0 || ecam_base == 0 || first_bus != 0 {
        return Err(Failure::BadTable(*b"MCFG"));
    }

    let fadt = fadt.ok_or(Failure::MissingTable(*b"FACP"))?;
    let fadt_len = checked_table(fadt, *b"FACP")?;
    // PM1a_CNT_BLK (offset 64), else the address of X_PM1a_CNT_BLK (GAS at 172).
    let mut pm1a_cnt = 0;
    if fadt_len >= 68 {
        // SAFETY: inside the checked FADT.
        pm1a_cnt = unsafe { read32_unaligned(fadt + 64) };
    }
    if pm1a_cnt == 0 && fadt_len >= 184 {
        // SAFETY: inside the checked FADT.
        pm1a_cnt = unsafe { read64_unaligned(fadt + 176) } as u32;
    }
    let pm1a_cnt = u16::try_from(pm1a_cnt)
        .ok()
        .filter(|&port| port != 0)
        .ok_or(Failure::BadTable(*b"FACP"))?;
    PM1A_CNT_PORT.store(pm1a_cnt, Ordering::Relaxed);
    Ok(Platform {
        rsdp,
        ecam_base,
        first_bus,
        last_bus,
        pm1a_cnt,
    })
}

/// Enters S5 through PM1a_CNT (SLP_TYP 5 | SLP_EN); halts if the machine is still there.
pub fn power_off() -> ! {
    outw(
        PM1A_CNT_PORT.load(Ordering::Relaxed),
        (SLP_TYP_S5 << 10) | SLP_EN,
    );
    loop {
        // SAFETY: halting with interrupts off stops this vCPU; nothing is left to run.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
