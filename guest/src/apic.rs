//! The local APIC (xAPIC at 0xfee00000): software enable, our id, the periodic timer that
//! bounds every wait, and the vectors the interrupt stubs count.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::io::{rdmsr, read32, write32, wrmsr};

/// xAPIC MMIO base (the VMM's `layout::APIC_START`).
pub const APIC_BASE: u64 = 0xfee0_0000;
const ID: u64 = 0x20;
const TPR: u64 = 0x80;
const SVR: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL_COUNT: u64 = 0x380;
const TIMER_DIVIDE: u64 = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;
/// Divide the APIC bus clock by 16.
const DIVIDE_BY_16: u32 = 0b0011;
/// 625000 ticks of 16 ns (KVM's APIC bus runs at 1 GHz): a wake-up every 10 ms.
const TIMER_COUNT: u32 = 625_000;
/// IA32_APIC_BASE and its global enable bit.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

/// The spurious-interrupt vector (its stub returns without EOI).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The timer's vector.
pub const TIMER_VECTOR: u8 = 0x30;
/// The first device vector; device `i` gets `DEVICE_VECTOR_BASE + i`.
pub const DEVICE_VECTOR_BASE: u8 = 0x40;
/// Devices with a vector (and a counter) of their own.
pub const MAX_DEVICES: usize = 8;
/// Counter slot of the timer in [`INTERRUPT_COUNTS`].
pub const TIMER_SLOT: usize = MAX_DEVICES;

/// Interrupts taken per device vector (slots 0..8) and timer ticks (slot 8). The interrupt
/// stubs (`interrupts.rs`) increment them with `lock inc`.
pub static INTERRUPT_COUNTS: [AtomicU32; MAX_DEVICES + 1] =
    [const { AtomicU32::new(0) }; MAX_DEVICES + 1];

fn reg(offset: u64) -> u64 {
    APIC_BASE + offset
}

/// Interrupts taken so far on device vector slot `slot`.
pub fn count(slot: usize) -> u32 {
    INTERRUPT_COUNTS[slot].load(Ordering::SeqCst)
}

/// Enables the local APIC (globally and in software), accepts every priority and starts the
/// periodic timer.
pub fn init() {
    let base = rdmsr(IA32_APIC_BASE);
    if base & APIC_GLOBAL_ENABLE == 0 {
        // SAFETY: setting the global enable bit keeps the xAPIC at its reset base address.
        unsafe { wrmsr(IA32_APIC_BASE, base | APIC_GLOBAL_ENABLE) };
    }
    // SAFETY: the xAPIC page is identity mapped (below 4 GiB) and these are its registers.
    unsafe {
        write32(reg(SVR), SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
        write32(reg(TPR), 0);
        write32(reg(TIMER_DIVIDE), DIVIDE_BY_16);
        write32(reg(LVT_TIMER), LVT_PERIODIC | u32::from(TIMER_VECTOR));
        write32(reg(TIMER_INITIAL_COUNT), TIMER_COUNT);
    }
}

/// Stops the timer.
pub fn stop_timer() {
    // SAFETY: as in `init`.
    unsafe {
        write32(reg(LVT_TIMER), LVT_MASKED | u32::from(TIMER_VECTOR));
        write32(reg(TIMER_INITIAL_COUNT), 0);
    }
}

/// This CPU's APIC id, the destination of the MSI-X messages.
pub fn id() -> u8 {
    // SAFETY: as in `init`.
    (unsafe { read32(reg(ID)) } >> 24) as u8
}

/// The MSI address that sends an interrupt to this CPU (physical destination, our APIC id).
pub fn msi_address() -> u32 {
    APIC_BASE as u32 | (u32::from(id()) << 12)
}

/// Waits until device slot `slot` has taken an interrupt, sleeping in `hlt` between
/// interrupts (device or timer) at most `max_wakeups` times. Returns whether it came.
pub fn wait_for_interrupt(slot: usize, max_wakeups: u32) -> bool {
    wait_for_more_interrupts(slot, 0, max_wakeups)
}

/// Waits until device slot `slot` has taken more than `seen` interrupts, sleeping as
/// [`wait_for_interrupt`] does. Returns whether they came.
pub fn wait_for_more_interrupts(slot: usize, seen: u32, max_wakeups: u32) -> bool {
    for _ in 0..max_wakeups {
        if count(slot) > seen {
            return true;
        }
        // SAFETY: `sti; hlt` sleeps until the next interrupt (sti's one-instruction shadow
        // means an interrupt already pending wakes the hlt rather than slipping in before it);
        // every vector that can arrive has a stub in the IDT.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    count(slot) > seen
}
