//! The device harness: the machine's devices driven without vCPUs or KVM, as a guest would
//! drive them, with interrupts recorded.

use std::sync::mpsc;

use devices::interrupt::MsiMessage;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vm_memory::MmapRegion;
use vmm::harness::Harness;
use vmm::hypervisor::Hypervisor;
use vmm::interrupts::RecordedInterrupt;
use vmm::layout::{ACPI_PM1A_CNT_PORT, COM1_GSI, COM1_PORT, I8042_COMMAND_PORT};
use vmm::power::ExitReason;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// UART register offsets and bits.
const UART_IER: u16 = 1;
const UART_LSR: u16 = 5;
const IER_THR_EMPTY: u8 = 0x02;
const LSR_THR_EMPTY: u8 = 0x20;

fn harness() -> Harness {
    Harness::new(16 << 20).expect("harness")
}

#[test]
fn bytes_written_to_com1_appear_in_the_serial_output() {
    let h = harness();
    for b in b"harness\n" {
        h.pio_write(COM1_PORT, &[*b]);
    }
    assert_eq!(h.serial_output(), "harness\n");
    assert_ne!(h.pio_read8(COM1_PORT + UART_LSR) & LSR_THR_EMPTY, 0);
}

#[test]
fn com1_raises_its_isa_line_when_the_guest_enables_thr_empty_interrupts() {
    let h = harness();
    h.pio_write(COM1_PORT, b"a");
    assert_eq!(h.take_interrupts(), vec![], "interrupts disabled");
    h.pio_write(COM1_PORT + UART_IER, &[IER_THR_EMPTY]);
    h.pio_write(COM1_PORT, b"b");
    assert!(
        h.take_interrupts()
            .contains(&RecordedInterrupt::Line(COM1_GSI))
    );
}

#[test]
fn pm1a_control_write_of_s5_powers_off() {
    let h = harness();
    assert_eq!(h.exit_reason(), None);
    // SLP_EN (bit 13) | SLP_TYP 5 (bits 12:10), as a 16-bit `out`.
    h.pio_write(ACPI_PM1A_CNT_PORT, &0x3400u16.to_le_bytes());
    assert_eq!(h.exit_reason(), Some(ExitReason::PowerOff));
}

#[test]
fn i8042_reset_command_requests_reset() {
    let h = harness();
    h.pio_write(I8042_COMMAND_PORT, &[0xfe]);
    assert_eq!(h.exit_reason(), Some(ExitReason::Reset));
}

#[test]
fn unclaimed_ports_and_mmio_read_all_ones() {
    let h = harness();
    assert_eq!(h.pio_read8(0x80), 0xff);
    let mut b = [0u8; 4];
    h.mmio_read(0xd000_0000, &mut b);
    assert_eq!(b, [0xff; 4]);
}

#[test]
fn guest_accesses_to_ram_reach_guest_memory() {
    let h = harness();
    h.mem_write(0x20_0000, &[1, 2, 3, 4]).unwrap();
    let mut b = [0u8; 4];
    h.mmio_read(0x20_0000, &mut b);
    assert_eq!(b, [1, 2, 3, 4]);
    h.mmio_write(0x20_0002, &[9]);
    h.mem_read(0x20_0000, &mut b).unwrap();
    assert_eq!(b, [1, 2, 9, 4]);
}

#[test]
fn memory_mapped_by_a_device_is_accessed_directly_until_unmapped() {
    let h = harness();
    // Stands in for a passthrough device's mmapped BAR.
    let bar = MmapRegion::<()>::new(0x1000).unwrap();
    let hv = h.hypervisor();
    // SAFETY: `bar` stays mapped until after the slot is removed below.
    let slot = unsafe {
        vmm::hypervisor::Hypervisor::map_memory(
            hv.as_ref(),
            0xc000_0000,
            0x1000,
            bar.as_ptr() as u64,
            false,
        )
    }
    .unwrap();
    h.mmio_write(0xc000_0010, &0xdead_beefu32.to_le_bytes());
    // SAFETY: offset 0x10 is inside the 4 KiB mapping.
    let in_bar = unsafe { std::ptr::read_volatile(bar.as_ptr().add(0x10).cast::<u32>()) };
    assert_eq!(in_bar, 0xdead_beef);
    hv.unmap_memory(slot.id).unwrap();
    let mut b = [0u8; 4];
    h.mmio_read(0xc000_0010, &mut b);
    assert_eq!(
        b, [0xff; 4],
        "unmapped: the access goes to the (empty) MMIO bus"
    );
}

#[test]
fn device_mappings_over_ram_are_refused() {
    let h = harness();
    let page = MmapRegion::<()>::new(0x1000).unwrap();
    // SAFETY: the mapping is refused, so nothing keeps the address.
    let r = unsafe {
        vmm::hypervisor::Hypervisor::map_memory(
            h.hypervisor().as_ref(),
            0x10_0000,
            0x1000,
            page.as_ptr() as u64,
            false,
        )
    };
    assert!(matches!(
        r,
        Err(vmm::memory_slots::MemorySlotError::Overlap { existing: 0, .. })
    ));
}

#[test]
fn msi_groups_from_the_harness_record_messages_and_hold_masked_vectors() {
    let h = harness();
    let group = h.core().interrupt_manager().create_msi_group(2).unwrap();
    let msg = MsiMessage {
        address: 0xfee0_0000,
        data: 0x45,
    };
    group.update(0, msg, true).unwrap();
    // A passthrough backend writes the eventfd directly.
    group.notifier(0).unwrap().write(1).unwrap();
    assert_eq!(h.interrupts(), vec![]);
    group.update(0, msg, false).unwrap();
    assert_eq!(h.take_interrupts(), vec![RecordedInterrupt::Msi(msg)]);
}

#[test]
fn intx_line_is_recorded_and_resampled_on_end_of_interrupt() {
    let h = harness();
    let line = h.core().interrupt_manager().create_legacy_irq(18).unwrap();
    line.trigger().unwrap();
    assert_eq!(h.take_interrupts(), vec![RecordedInterrupt::Line(18)]);
    h.end_of_interrupt(18).unwrap();
    assert_eq!(line.resample_notifier().read().unwrap(), 1);
}

/// Forwards each eventfd count it drains to a channel.
struct Forwarder {
    fd: EventFd,
    out: mpsc::Sender<u64>,
}

impl MutEventSubscriber for Forwarder {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        if let Ok(n) = self.fd.read() {
            let _ = self.out.send(n);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        ops.add(Events::new(&self.fd, EventSet::IN)).unwrap();
    }
}

#[test]
fn event_loop_subscribers_run_when_the_test_dispatches() {
    let h = harness();
    let fd = EventFd::new(EFD_NONBLOCK).unwrap();
    let trigger = fd.try_clone().unwrap();
    let (out, seen) = mpsc::channel();
    h.core()
        .event_loop()
        .add_subscriber(Box::new(Forwarder { fd, out }))
        .unwrap();
    trigger.write(2).unwrap();
    assert_eq!(seen.try_recv(), Err(mpsc::TryRecvError::Empty));
    assert_eq!(h.dispatch_events().unwrap(), 1);
    assert_eq!(seen.try_recv(), Ok(2));
}
