//! QEMU's `edu` teaching device (1234:11e8) passed through from a host: MSI to our local APIC,
//! then a DMA round trip between our RAM and the device's 4 KiB buffer (no vIOMMU: IOVA =
//! guest physical address): RAM -> device, device -> a zeroed buffer, compare.
//!
//! Registers in BAR 0 (QEMU `hw/misc/edu.c`): 0x00 identification (0x010000ed), 0x24 interrupt
//! status, 0x64 interrupt acknowledge, 0x80 DMA source, 0x88 destination, 0x90 count, 0x98
//! command (bit 0 start, bit 1 set = device -> RAM, bit 2 raise interrupt 0x100 on completion).
//! The device buffer is at 0x40000 in the device's DMA space. QEMU completes a transfer about
//! 100 ms after the start, from a timer; a transfer of exactly 4096 bytes aborts QEMU 7.2, so
//! this one is far shorter.

use core::cell::UnsafeCell;
use core::sync::atomic::{Ordering, fence};

use crate::apic;
use crate::io::Registers;
use crate::paging;
use crate::pci::{Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY, Ecam};

/// PCI ids of the edu.
pub const VENDOR_ID: u16 = 0x1234;
/// Device id.
pub const DEVICE_ID: u16 = 0x11e8;

const REG_ID: u64 = 0x00;
const REG_IRQ_STATUS: u64 = 0x24;
const REG_IRQ_ACK: u64 = 0x64;
const REG_DMA_SRC: u64 = 0x80;
const REG_DMA_DST: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_CMD: u64 = 0x98;
/// The identification register of QEMU's edu 1.0.
const ID_EDU: u32 = 0x0100_00ed;
const CMD_START: u32 = 1 << 0;
const CMD_TO_RAM: u32 = 1 << 1;
const CMD_IRQ: u32 = 1 << 2;
/// The interrupt status bit of a finished DMA.
const IRQ_DMA: u32 = 0x100;
/// Where the device's buffer sits in its DMA space.
const DEVICE_BUFFER: u32 = 0x4_0000;
/// The part of BAR 0 used (the registers).
const BAR0_USED: u64 = 0x100;

// MSI capability (no per-vector masking on the edu).
const CAP_MSI: u8 = 0x05;
const MSI_CONTROL: u64 = 2;
const MSI_ADDRESS: u64 = 4;
const MSI_ENABLE: u16 = 1 << 0;
const MSI_64BIT: u16 = 1 << 7;
const MSI_MULTIPLE_ENABLE: u16 = 0b111 << 4;

/// Bytes moved each way.
pub const DMA_LEN: usize = 256;
/// Wake-ups (interrupts or 10 ms timer ticks) to wait for each completion: QEMU needs about
/// 100 ms, nested virtualization may make that much longer.
const MAX_WAKEUPS: u32 = 2000;

/// What went wrong with one edu.
#[derive(Debug, Clone, Copy)]
pub enum EduFailure {
    /// BAR 0 reads 0 or as I/O.
    BarUnassigned,
    /// The identification register is not edu 1.0's.
    BadId(u32),
    /// No MSI capability.
    NoMsi,
    /// Our page-table pool ran out mapping BAR 0 above 4 GiB.
    CannotMap(u64),
    /// The completion interrupt of this transfer never came (`to_ram`: device -> RAM).
    NoInterrupt {
        /// The direction of the transfer that did not complete.
        to_ram: bool,
        /// The interrupt status register then.
        status: u32,
    },
    /// The bytes that came back differ at this offset.
    DataMismatch(usize),
}

impl core::fmt::Display for EduFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EduFailure::BarUnassigned => write!(f, "BAR0 not assigned"),
            EduFailure::BadId(id) => write!(f, "ID register {id:#010x} is not edu's"),
            EduFailure::NoMsi => write!(f, "no MSI capability"),
            EduFailure::CannotMap(addr) => write!(f, "cannot map MMIO at {addr:#x}"),
            EduFailure::NoInterrupt { to_ram, status } => write!(
                f,
                "no MSI after the DMA {} (interrupt status {status:#x})",
                if to_ram { "to RAM" } else { "to the device" }
            ),
            EduFailure::DataMismatch(offset) => write!(f, "data mismatch at offset {offset:#x}"),
        }
    }
}

/// Our side of one edu's transfers.
#[repr(C, align(4096))]
struct Buffers {
    out: [u8; DMA_LEN],
    back: [u8; DMA_LEN],
}

struct Areas(UnsafeCell<[Buffers; apic::MAX_DEVICES]>);
// SAFETY: one vCPU; each device uses only its own buffers, through raw volatile accesses.
unsafe impl Sync for Areas {}
static AREAS: Areas = Areas(UnsafeCell::new(
    [const {
        Buffers {
            out: [0; DMA_LEN],
            back: [0; DMA_LEN],
        }
    }; apic::MAX_DEVICES],
));

/// The byte sent at `offset` by device slot `slot`.
fn pattern(slot: usize, offset: usize) -> u8 {
    (offset as u8)
        .wrapping_mul(13)
        .wrapping_add(0xa5 ^ slot as u8)
}

/// Points the MSI capability of `bdf` at this CPU with `vector` and enables it (one vector).
fn setup_msi(ecam: &Ecam, bdf: Bdf, vector: u8) -> Result<(), EduFailure> {
    let cap = ecam
        .find_capability(bdf, CAP_MSI)
        .ok_or(EduFailure::NoMsi)?;
    let control = ecam.read16(bdf, cap + MSI_CONTROL);
    let address = apic::msi_address();
    ecam.write32(bdf, cap + MSI_ADDRESS, address);
    let data_at = if control & MSI_64BIT != 0 {
        ecam.write32(bdf, cap + MSI_ADDRESS + 4, 0);
        cap + 12
    } else {
        cap + 8
    };
    ecam.write16(bdf, data_at, u16::from(vector));
    ecam.write16(
        bdf,
        cap + MSI_CONTROL,
        (control & !MSI_MULTIPLE_ENABLE) | MSI_ENABLE,
    );
    Ok(())
}

/// Starts one transfer and waits for its completion interrupt on `slot`, then acknowledges it.
fn transfer(regs: &Registers, slot: usize, src: u32, dst: u32, to_ram: bool) -> bool {
    let before = apic::count(slot);
    // A 32-bit write sets the whole 64-bit register (zero-extended).
    regs.write(REG_DMA_SRC, src);
    regs.write(REG_DMA_DST, dst);
    regs.write(REG_DMA_COUNT, DMA_LEN as u32);
    // Our buffer must be in memory before the device reads it.
    fence(Ordering::SeqCst);
    let direction = if to_ram { CMD_TO_RAM } else { 0 };
    regs.write(REG_DMA_CMD, CMD_START | direction | CMD_IRQ);
    let came = apic::wait_for_more_interrupts(slot, before, MAX_WAKEUPS);
    let status = regs.read(REG_IRQ_STATUS);
    regs.write(REG_IRQ_ACK, status);
    came && status & IRQ_DMA != 0
}

/// Runs the round trip on the edu at `bdf` with interrupt slot `slot`; on success returns the
/// vector used.
pub fn test_device(ecam: &Ecam, bdf: Bdf, slot: usize) -> Result<u8, EduFailure> {
    let vector = apic::DEVICE_VECTOR_BASE + slot as u8;
    let bar0 = ecam.memory_bar(bdf, 0).ok_or(EduFailure::BarUnassigned)?;
    ecam.enable(bdf, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    paging::map_mmio(bar0, BAR0_USED).map_err(|_| EduFailure::CannotMap(bar0))?;
    let regs = Registers(bar0);
    let id = regs.read(REG_ID);
    if id != ID_EDU {
        return Err(EduFailure::BadId(id));
    }
    setup_msi(ecam, bdf, vector)?;

    // SAFETY: this slot's buffers, used by nobody else; identity mapped in .bss.
    let area = unsafe { &raw mut (*AREAS.0.get())[slot] };
    // SAFETY: `area` is valid and the device does not use it before the first transfer.
    unsafe {
        for offset in 0..DMA_LEN {
            (&raw mut (*area).out[offset]).write_volatile(pattern(slot, offset));
            (&raw mut (*area).back[offset]).write_volatile(0);
        }
    }
    // The image is linked at 1 MiB, far below 4 GiB (and edu's 28-bit DMA mask): the
    // addresses fit 32 bits.
    // SAFETY: only the addresses of the fields are taken.
    let (out, back) = unsafe {
        (
            (&raw const (*area).out) as u32,
            (&raw const (*area).back) as u32,
        )
    };
    if !transfer(&regs, slot, out, DEVICE_BUFFER, false) {
        return Err(EduFailure::NoInterrupt {
            to_ram: false,
            status: regs.read(REG_IRQ_STATUS),
        });
    }
    if !transfer(&regs, slot, DEVICE_BUFFER, back, true) {
        return Err(EduFailure::NoInterrupt {
            to_ram: true,
            status: regs.read(REG_IRQ_STATUS),
        });
    }
    fence(Ordering::SeqCst);
    for offset in 0..DMA_LEN {
        // SAFETY: the device is done; we read back our own buffer.
        let byte = unsafe { (&raw const (*area).back[offset]).read_volatile() };
        if byte != pattern(slot, offset) {
            return Err(EduFailure::DataMismatch(offset));
        }
    }
    Ok(vector)
}
