//! The device harness (QEMU's qtest approach): the machine's devices, assembled exactly as for
//! KVM by [`MachineCore::assemble`], but with no vCPU and no KVM. Tests play the guest: they
//! access ports, MMIO and RAM directly and read the interrupts the devices raised, all on the
//! test's thread and in order, so whole device paths are tested fast and deterministically.

use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::interrupt::{InterruptError, InterruptManager};
use vfio_passthrough::pci::IntxDelivery;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

use crate::assembly::{AssemblyError, DeviceConfig, MachineCore};
use crate::event_loop::{EventLoop, EventLoopError};
use crate::hypervisor::Hypervisor;
use crate::interrupts::{EdgeIrq, RecordedInterrupt, RecordingInterruptManager};
use crate::memory::{GuestRam, MemoryError};
use crate::memory_slots::{MemorySlot, MemorySlotError, MemorySlots};
use crate::passthrough::{HostIommu, PassthroughSpec};
use crate::platform::{SerialCapture, SerialSink};
use crate::power::ExitReason;

/// Memory slots KVM offers on x86 (`KVM_USER_MEM_SLOTS`), so the harness runs out where KVM
/// would.
const SLOT_COUNT: u32 = 32764;

/// The hypervisor side of the harness: interrupts are recorded, memory mappings are kept for the
/// harness's own guest accesses.
#[derive(Debug)]
pub struct RecordingHypervisor {
    interrupts: RecordingInterruptManager,
    slots: Mutex<MemorySlots>,
}

impl RecordingHypervisor {
    /// A hypervisor side for a machine with `ram`.
    pub fn new(ram: &GuestRam) -> Self {
        let regions = ram.regions();
        let ranges = regions.iter().map(|r| (r.guest_addr.0, r.size)).collect();
        Self {
            interrupts: RecordingInterruptManager::new(),
            slots: Mutex::new(MemorySlots::new(regions.len() as u32, SLOT_COUNT, ranges)),
        }
    }

    /// The recording interrupt manager.
    pub fn interrupts(&self) -> &RecordingInterruptManager {
        &self.interrupts
    }

    /// The mapping covering guest address `addr`, if any.
    pub fn find_slot(&self, addr: u64) -> Option<MemorySlot> {
        lock(&self.slots).find(addr)
    }
}

impl Hypervisor for RecordingHypervisor {
    fn interrupt_manager(&self) -> Arc<dyn InterruptManager> {
        Arc::new(self.interrupts.clone())
    }

    fn intx_delivery(&self) -> IntxDelivery {
        // The test plays the interrupt controller: the device's subscriber raises the line when
        // the test dispatches events, and unmasks INTx after the test's end of interrupt.
        IntxDelivery::Userspace
    }

    fn create_edge_irq(&self, gsi: u32) -> Result<Arc<dyn EdgeIrq>, InterruptError> {
        self.interrupts.create_edge_irq(gsi)
    }

    unsafe fn map_memory(
        &self,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<MemorySlot, MemorySlotError> {
        let mut slots = lock(&self.slots);
        let slot = slots.prepare(guest_addr, size, host_addr, read_only)?;
        slots.commit(slot);
        Ok(slot)
    }

    fn unmap_memory(&self, id: u32) -> Result<MemorySlot, MemorySlotError> {
        lock(&self.slots).remove(id)
    }
}

/// An error from building the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Guest RAM could not be created.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The event loop could not be created.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
    /// The devices could not be wired.
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
}

/// A machine without vCPUs, driven by the test.
#[derive(Debug)]
pub struct Harness {
    core: MachineCore,
    hypervisor: Arc<RecordingHypervisor>,
    serial: SerialCapture,
}

impl Harness {
    /// A machine with `memory_size` bytes of RAM and the platform devices, COM1 output captured.
    pub fn new(memory_size: u64) -> Result<Self, HarnessError> {
        Self::with_passthrough(memory_size, &[], HostIommu::Auto)
    }

    /// Like [`new`](Self::new), with the passthrough devices of `devices` on the `host_iommu`
    /// backend (as `--host-iommu` picks it), wired as on KVM but with INTx delivered through the
    /// event loop ([`dispatch_events`](Self::dispatch_events)).
    pub fn with_passthrough(
        memory_size: u64,
        devices: &[PassthroughSpec],
        host_iommu: HostIommu,
    ) -> Result<Self, HarnessError> {
        let serial = SerialCapture::new();
        let config = DeviceConfig {
            passthrough: devices.to_vec(),
            host_iommu,
            ..DeviceConfig::new(SerialSink::Capture(serial.clone()))
        };
        let ram = Arc::new(GuestRam::new(memory_size)?);
        let hypervisor = Arc::new(RecordingHypervisor::new(&ram));
        let core = MachineCore::assemble(ram, hypervisor.clone(), EventLoop::manual()?, &config)?;
        Ok(Self {
            core,
            hypervisor,
            serial,
        })
    }

    /// The devices and their shared state (to add devices or subscribe eventfds).
    pub fn core(&self) -> &MachineCore {
        &self.core
    }

    /// The hypervisor side, with the memory mappings devices made.
    pub fn hypervisor(&self) -> &Arc<RecordingHypervisor> {
        &self.hypervisor
    }

    /// A port read of `data.len()` bytes, as a vCPU `in` does. Unclaimed ports read all-ones.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        self.core.buses().pio.read(u64::from(port), data);
    }

    /// A port write, as a vCPU `out` does.
    pub fn pio_write(&self, port: u16, data: &[u8]) {
        self.core.buses().pio.write(u64::from(port), data);
    }

    /// A one-byte port read.
    pub fn pio_read8(&self, port: u16) -> u8 {
        let mut b = [0u8];
        self.pio_read(port, &mut b);
        b[0]
    }

    /// A read of guest physical address `addr` as a vCPU would do it: RAM, then memory mapped by
    /// a device, then the MMIO bus (all-ones if nothing answers).
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        let mem = self.core.ram().memory();
        if mem.check_range(GuestAddress(addr), data.len()) {
            if let Err(e) = mem.read_slice(data, GuestAddress(addr)) {
                log::warn!("harness read of RAM at {addr:#x}: {e}");
            }
        } else if let Some(host) = self.mapped(addr, data.len()) {
            // SAFETY: `map_memory`'s caller guaranteed the slot's host range stays mapped while
            // the slot exists, and `mapped` checked the access lies inside it.
            unsafe { volatile_copy(host as *const u8, data.as_mut_ptr(), data.len()) };
        } else {
            self.core.buses().mmio.read(addr, data);
        }
    }

    /// A write of guest physical address `addr` as a vCPU would do it (see
    /// [`mmio_read`](Self::mmio_read)); writes to a read-only mapping go to the MMIO bus, as KVM
    /// exits on them.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        let mem = self.core.ram().memory();
        if mem.check_range(GuestAddress(addr), data.len()) {
            if let Err(e) = mem.write_slice(data, GuestAddress(addr)) {
                log::warn!("harness write of RAM at {addr:#x}: {e}");
            }
            return;
        }
        let writable = self
            .hypervisor
            .find_slot(addr)
            .is_some_and(|slot| !slot.read_only);
        match self.mapped(addr, data.len()).filter(|_| writable) {
            // SAFETY: as in `mmio_read`; the slot is writable.
            Some(host) => unsafe { volatile_copy(data.as_ptr(), host as *mut u8, data.len()) },
            None => {
                self.core.buses().mmio.write(addr, data);
            }
        }
    }

    /// The host address of `len` bytes at `addr` if they lie inside one memory mapping.
    fn mapped(&self, addr: u64, len: usize) -> Option<u64> {
        let slot = self.hypervisor.find_slot(addr)?;
        let offset = addr - slot.guest_addr;
        (offset.checked_add(len as u64)? <= slot.size).then_some(slot.host_addr + offset)
    }

    /// Reads guest RAM.
    pub fn mem_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.core.ram().memory().read_slice(buf, GuestAddress(addr))
    }

    /// Writes guest RAM.
    pub fn mem_write(&self, addr: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        self.core
            .ram()
            .memory()
            .write_slice(buf, GuestAddress(addr))
    }

    /// The interrupts devices raised so far, oldest first.
    pub fn interrupts(&self) -> Vec<RecordedInterrupt> {
        self.hypervisor.interrupts().interrupts()
    }

    /// Like [`interrupts`](Self::interrupts), and clears the record.
    pub fn take_interrupts(&self) -> Vec<RecordedInterrupt> {
        self.hypervisor.interrupts().take_interrupts()
    }

    /// The guest's end of interrupt for I/O APIC input `gsi` (re-arms INTx sources).
    pub fn end_of_interrupt(&self, gsi: u32) -> Result<(), InterruptError> {
        self.hypervisor.interrupts().end_of_interrupt(gsi)
    }

    /// Runs the event loop once over the events ready now; returns how many there were.
    pub fn dispatch_events(&self) -> Result<usize, EventLoopError> {
        self.core.event_loop().dispatch_pending()
    }

    /// COM1 output so far.
    pub fn serial_output(&self) -> String {
        self.serial.text()
    }

    /// Why the machine would have stopped, if a device asked it to (power-off, reset).
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.core.power().exit_reason()
    }
}

/// Copies `len` bytes with volatile accesses. Device memory may change under us and may care
/// about access width, so a naturally aligned access of 1, 2, 4 or 8 bytes is done as one access
/// of that width, as the guest instruction would; anything else byte by byte.
///
/// # Safety
///
/// Both ranges must be valid for `len` bytes and not overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    macro_rules! one_access {
        ($t:ty) => {
            if src.align_offset(len) == 0 && dst.align_offset(len) == 0 {
                // SAFETY: the caller guarantees both ranges cover `len` bytes, and both are
                // aligned to the access width.
                unsafe {
                    std::ptr::write_volatile(
                        dst.cast::<$t>(),
                        std::ptr::read_volatile(src.cast::<$t>()),
                    )
                };
                return;
            }
        };
    }
    match len {
        2 => one_access!(u16),
        4 => one_access!(u32),
        8 => one_access!(u64),
        _ => {}
    }
    for i in 0..len {
        // SAFETY: the caller guarantees both ranges cover `len` bytes.
        unsafe { std::ptr::write_volatile(dst.add(i), std::ptr::read_volatile(src.add(i))) };
    }
}
