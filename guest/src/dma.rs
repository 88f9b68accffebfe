//! One DMA engine (docs/dma-engine.md): MSI-X entry 0 to our local APIC, a one-descriptor COPY
//! from a pattern buffer to a zeroed buffer in our RAM (no vIOMMU: IOVA = guest physical
//! address), the completion interrupt, then the completion record and the bytes.

use core::cell::UnsafeCell;
use core::sync::atomic::{Ordering, fence};

use crate::apic;
use crate::io::{Registers, write32};
use crate::paging;
use crate::pci::{Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY, Ecam};

/// PCI ids of the DMA engine.
pub const VENDOR_ID: u16 = 0x1234;
/// Device id.
pub const DEVICE_ID: u16 = 0x7d10;

// Registers in BAR 0.
const REG_ID: u64 = 0x00;
const REG_CTRL: u64 = 0x08;
const REG_STATUS: u64 = 0x0c;
const REG_QUEUE_BASE: u64 = 0x10;
const REG_QUEUE_SIZE: u64 = 0x18;
const REG_QUEUE_TAIL: u64 = 0x20;
const REG_ERROR_CODE: u64 = 0x28;
const ID_DMA1: u32 = 0x3141_4d44;
const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_RESET: u32 = 1 << 1;
const CTRL_INT_ENABLE: u32 = 1 << 2;
const STATUS_ERROR: u32 = 1 << 1;
const BAR0_SIZE: u64 = 4096;
const OP_COPY: u32 = 1;
const OP_INTERRUPT: u32 = 1 << 8;
const STATUS_SUCCESS: u32 = 1;
const QUEUE_SIZE: u32 = 4;

// MSI-X capability.
const CAP_MSIX: u8 = 0x11;
const MSIX_CONTROL: u64 = 2;
const MSIX_TABLE: u64 = 4;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
const MSIX_ENTRY_SIZE: u64 = 16;

/// Bytes copied per device.
pub const COPY_LEN: usize = 256;
/// Wake-ups (device interrupts or 10 ms timer ticks) to wait for the completion interrupt.
const MAX_WAKEUPS: u32 = 300;

/// What went wrong with one device.
#[derive(Debug, Clone, Copy)]
pub enum DeviceFailure {
    /// A BAR reads 0 or as I/O.
    BarUnassigned(u8),
    /// BAR 0's ID register is not "DMA1".
    BadId(u32),
    /// No MSI-X capability, or its table is in an unassigned BAR.
    NoMsix,
    /// Our page-table pool ran out mapping a BAR above 4 GiB.
    CannotMap(u64),
    /// The device stopped on an error (STATUS.ERROR), with this ERROR_CODE.
    DeviceError(u32),
    /// The completion interrupt never came.
    NoInterrupt,
    /// The completion record's status is not SUCCESS.
    CompletionStatus(u32),
    /// The completion record's bytes_done is not the copy length.
    BytesDone(u64),
    /// The destination differs from the source at this offset.
    DataMismatch(usize),
}

impl core::fmt::Display for DeviceFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DeviceFailure::BarUnassigned(bar) => write!(f, "BAR{bar} not assigned"),
            DeviceFailure::BadId(id) => write!(f, "ID register {id:#010x} is not DMA1"),
            DeviceFailure::NoMsix => write!(f, "no usable MSI-X capability"),
            DeviceFailure::CannotMap(addr) => write!(f, "cannot map MMIO at {addr:#x}"),
            DeviceFailure::DeviceError(code) => write!(f, "device error, ERROR_CODE {code:#x}"),
            DeviceFailure::NoInterrupt => write!(f, "no MSI-X interrupt"),
            DeviceFailure::CompletionStatus(status) => {
                write!(f, "completion status {status:#x}")
            }
            DeviceFailure::BytesDone(bytes) => write!(f, "completion bytes_done {bytes}"),
            DeviceFailure::DataMismatch(offset) => write!(f, "data mismatch at offset {offset:#x}"),
        }
    }
}

/// The device's 64-byte descriptor.
#[repr(C)]
struct Descriptor {
    op: u32,
    pasid: u32,
    src: u64,
    dst: u64,
    len: u64,
    completion: u64,
    reserved: [u64; 3],
}

/// Completion record written by the device.
#[repr(C)]
struct Completion {
    status: u32,
    result: u32,
    bytes_done: u64,
}

/// Everything one device reads or writes by DMA.
#[repr(C, align(4096))]
struct DmaArea {
    ring: [Descriptor; QUEUE_SIZE as usize],
    completion: Completion,
    src: [u8; COPY_LEN],
    dst: [u8; COPY_LEN],
}

struct Areas(UnsafeCell<[DmaArea; apic::MAX_DEVICES]>);
// SAFETY: one vCPU; each device uses only its own area, through raw volatile accesses.
unsafe impl Sync for Areas {}
static AREAS: Areas = Areas(UnsafeCell::new(
    [const {
        DmaArea {
            ring: [const {
                Descriptor {
                    op: 0,
                    pasid: 0,
                    src: 0,
                    dst: 0,
                    len: 0,
                    completion: 0,
                    reserved: [0; 3],
                }
            }; QUEUE_SIZE as usize],
            completion: Completion {
                status: 0,
                result: 0,
                bytes_done: 0,
            },
            src: [0; COPY_LEN],
            dst: [0; COPY_LEN],
        }
    }; apic::MAX_DEVICES],
));

/// The byte the source holds at `offset` for device `index` (differs per device, so a copy
/// from the wrong buffer shows).
fn pattern(index: usize, offset: usize) -> u8 {
    (offset as u8)
        .wrapping_mul(7)
        .wrapping_add(0x5a ^ index as u8)
}

/// Programs MSI-X entry 0 of `bdf` to send `vector` to this CPU and enables MSI-X.
fn setup_msix(ecam: &Ecam, bdf: Bdf, vector: u8) -> Result<(), DeviceFailure> {
    let cap = ecam
        .find_capability(bdf, CAP_MSIX)
        .ok_or(DeviceFailure::NoMsix)?;
    let table_reg = ecam.read32(bdf, cap + MSIX_TABLE);
    let bar = (table_reg & 7) as u8;
    let table = ecam.memory_bar(bdf, bar).ok_or(DeviceFailure::NoMsix)? + u64::from(table_reg & !7);
    paging::map_mmio(table, MSIX_ENTRY_SIZE).map_err(|_| DeviceFailure::CannotMap(table))?;
    // Enable with the function masked while the entry is written, then unmask.
    let control = ecam.read16(bdf, cap + MSIX_CONTROL);
    ecam.write16(
        bdf,
        cap + MSIX_CONTROL,
        control | MSIX_ENABLE | MSIX_FUNCTION_MASK,
    );
    let address = apic::msi_address();
    // SAFETY: the MSI-X table is in a mapped, enabled BAR; entry 0 is 16 bytes.
    unsafe {
        write32(table, address);
        write32(table + 4, 0);
        write32(table + 8, u32::from(vector));
        write32(table + 12, 0); // vector control: unmasked
    }
    ecam.write16(
        bdf,
        cap + MSIX_CONTROL,
        (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK,
    );
    Ok(())
}

/// Runs the copy on device number `index` at `bdf`; on success returns the vector used.
pub fn test_device(ecam: &Ecam, bdf: Bdf, index: usize) -> Result<u8, DeviceFailure> {
    let vector = apic::DEVICE_VECTOR_BASE + index as u8;
    let bar0 = ecam
        .memory_bar(bdf, 0)
        .ok_or(DeviceFailure::BarUnassigned(0))?;
    ecam.memory_bar(bdf, 2)
        .ok_or(DeviceFailure::BarUnassigned(2))?;
    ecam.enable(bdf, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    paging::map_mmio(bar0, BAR0_SIZE).map_err(|_| DeviceFailure::CannotMap(bar0))?;
    let regs = Registers(bar0);
    let id = regs.read(REG_ID);
    if id != ID_DMA1 {
        return Err(DeviceFailure::BadId(id));
    }
    setup_msix(ecam, bdf, vector)?;

    // SAFETY: this device's area, used by nobody else; identity mapped in .bss.
    let area = unsafe { &raw mut (*AREAS.0.get())[index] };
    // SAFETY: `area` is valid; the device is reset (below) before it may touch the area.
    unsafe {
        for offset in 0..COPY_LEN {
            (&raw mut (*area).src[offset]).write_volatile(pattern(index, offset));
            (&raw mut (*area).dst[offset]).write_volatile(0);
        }
        (&raw mut (*area).completion).write_volatile(Completion {
            status: 0,
            result: 0,
            bytes_done: 0,
        });
        (&raw mut (*area).ring[0]).write_volatile(Descriptor {
            op: OP_COPY | OP_INTERRUPT,
            pasid: 0,
            src: (&raw const (*area).src) as u64,
            dst: (&raw const (*area).dst) as u64,
            len: COPY_LEN as u64,
            completion: (&raw const (*area).completion) as u64,
            reserved: [0; 3],
        });
    }
    let ring = area as u64;
    regs.write(REG_CTRL, CTRL_RESET);
    regs.write(REG_QUEUE_BASE, ring as u32);
    regs.write(REG_QUEUE_BASE + 4, (ring >> 32) as u32);
    regs.write(REG_QUEUE_SIZE, QUEUE_SIZE);
    regs.write(REG_CTRL, CTRL_ENABLE | CTRL_INT_ENABLE);
    // The descriptor and buffers must be in memory before the doorbell.
    fence(Ordering::SeqCst);
    regs.write(REG_QUEUE_TAIL, 1);

    if !apic::wait_for_interrupt(index, MAX_WAKEUPS) {
        if regs.read(REG_STATUS) & STATUS_ERROR != 0 {
            return Err(DeviceFailure::DeviceError(regs.read(REG_ERROR_CODE)));
        }
        return Err(DeviceFailure::NoInterrupt);
    }
    fence(Ordering::SeqCst);
    // SAFETY: the device has completed; we read back our own area.
    let completion = unsafe { (&raw const (*area).completion).read_volatile() };
    if completion.status != STATUS_SUCCESS {
        return Err(DeviceFailure::CompletionStatus(completion.status));
    }
    if completion.bytes_done != COPY_LEN as u64 {
        return Err(DeviceFailure::BytesDone(completion.bytes_done));
    }
    for offset in 0..COPY_LEN {
        // SAFETY: as above.
        let byte = unsafe { (&raw const (*area).dst[offset]).read_volatile() };
        if byte != pattern(index, offset) {
            return Err(DeviceFailure::DataMismatch(offset));
        }
    }
    Ok(vector)
}
