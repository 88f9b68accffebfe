//! MSI delivery from an interrupt group's eventfd to a vCPU through a KVM GSI route and irqfd,
//! the pending-while-masked behaviour of a vector, and a level-triggered INTx line with its
//! resample eventfd.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{ENTRY, SAFETY_LIMIT, load, machine, wait_for_exit, wait_for_serial};
use devices::interrupt::{InterruptSourceGroup, LegacyIrq, MsiMessage};
use vm_memory::{Bytes, GuestAddress};
use vmm::boot_entry::BootProtocol;
use vmm::machine::Machine;
use vmm::power::ExitReason;

/// Where the test writes the guest's IDT (256 16-byte gates; free low memory).
const IDT: u64 = 0x3000;
/// The vector whose handler prints "P", sends EOI and returns.
const PROBE_VECTOR: u8 = 0x40;
/// The vector whose handler prints "I" and powers off. Higher priority class than the probe, so
/// if both were pending at once this one would run first.
const TARGET_VECTOR: u8 = 0x50;
const PROBE_HANDLER: u64 = ENTRY + 0x3c;
const TARGET_HANDLER: u64 = ENTRY + 0x54;
/// The I/O APIC input the program routes to the probe vector, level triggered.
const INTX_GSI: u32 = 16;

/// Long-mode program for the interrupt tests (loaded at 0x100000; the test writes the IDT). It
/// also routes I/O APIC input 16 to the probe vector, level triggered, for the INTx test.
///
/// ```text
/// 100000: b8 f0 00 e0 fe         mov eax, 0xfee000f0       ; LAPIC spurious vector register
/// 100005: c7 00 ff 01 00 00      mov dword [rax], 0x1ff    ; software-enable the LAPIC
/// 10000b: b8 00 00 c0 fe         mov eax, 0xfec00000       ; I/O APIC IOREGSEL
/// 100010: c7 00 31 00 00 00      mov dword [rax], 0x31     ; redirection entry 16, high half
/// 100016: c7 40 10 00 00 00 00   mov dword [rax+0x10], 0   ; destination APIC id 0
/// 10001d: c7 00 30 00 00 00      mov dword [rax], 0x30     ; redirection entry 16, low half
/// 100023: c7 40 10 40 80 00 00   mov dword [rax+0x10], 0x8040 ; vector 0x40, level, unmasked
/// 10002a: 0f 01 1d 35 00 00 00   lidt [rip + idtr]         ; 0x100066
/// 100031: b0 52                  mov al, 'R'               ; ready: interrupts can arrive
/// 100033: 66 ba f8 03            mov dx, 0x3f8
/// 100037: ee                     out dx, al
/// 100038: fb                     sti
/// 100039: f4                     idle: hlt
/// 10003a: eb fd                  jmp idle
/// 10003c: 50                     probe: push rax
/// 10003d: 52                     push rdx
/// 10003e: b0 50                  mov al, 'P'
/// 100040: 66 ba f8 03            mov dx, 0x3f8
/// 100044: ee                     out dx, al
/// 100045: b8 b0 00 e0 fe         mov eax, 0xfee000b0       ; LAPIC EOI register
/// 10004a: c7 00 00 00 00 00      mov dword [rax], 0
/// 100050: 5a                     pop rdx
/// 100051: 58                     pop rax
/// 100052: 48 cf                  iretq
/// 100054: b0 49                  target: mov al, 'I'
/// 100056: 66 ba f8 03            mov dx, 0x3f8
/// 10005a: ee                     out dx, al
/// 10005b: 66 ba 04 06            mov dx, 0x604             ; PM1a_CNT
/// 10005f: 66 b8 00 34            mov ax, 0x3400            ; SLP_EN | SLP_TYP=5
/// 100063: 66 ef                  out dx, ax
/// 100065: f4                     hlt
/// 100066: ff 0f                  idtr: limit 0xfff
/// 100068: 00 30 00 00 00 00 00 00      base 0x3000
/// ```
const PROGRAM: &[u8] = &[
    0xb8, 0xf0, 0x00, 0xe0, 0xfe, 0xc7, 0x00, 0xff, 0x01, 0x00, 0x00, 0xb8, 0x00, 0x00, 0xc0, 0xfe,
    0xc7, 0x00, 0x31, 0x00, 0x00, 0x00, 0xc7, 0x40, 0x10, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x00, 0x30,
    0x00, 0x00, 0x00, 0xc7, 0x40, 0x10, 0x40, 0x80, 0x00, 0x00, 0x0f, 0x01, 0x1d, 0x35, 0x00, 0x00,
    0x00, 0xb0, 0x52, 0x66, 0xba, 0xf8, 0x03, 0xee, 0xfb, 0xf4, 0xeb, 0xfd, 0x50, 0x52, 0xb0, 0x50,
    0x66, 0xba, 0xf8, 0x03, 0xee, 0xb8, 0xb0, 0x00, 0xe0, 0xfe, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x5a, 0x58, 0x48, 0xcf, 0xb0, 0x49, 0x66, 0xba, 0xf8, 0x03, 0xee, 0x66, 0xba, 0x04, 0x06, 0x66,
    0xb8, 0x00, 0x34, 0x66, 0xef, 0xf4, 0xff, 0x0f, 0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A 64-bit interrupt gate to `handler` in the boot GDT's code segment (selector 8).
fn interrupt_gate(handler: u64) -> [u8; 16] {
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&8u16.to_le_bytes());
    gate[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    gate
}

/// An MSI to the local APIC with id 0, fixed delivery, edge, `vector`.
fn msi(vector: u8) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000,
        data: u32::from(vector),
    }
}

fn load_program(m: &mut Machine) {
    load(m, PROGRAM, BootProtocol::Linux64);
    let mem = m.core().ram().memory();
    for (vector, handler) in [
        (PROBE_VECTOR, PROBE_HANDLER),
        (TARGET_VECTOR, TARGET_HANDLER),
    ] {
        let gate = GuestAddress(IDT + 16 * u64::from(vector));
        mem.write_slice(&interrupt_gate(handler), gate).unwrap();
    }
}

fn msi_group(m: &Machine, count: u32) -> Arc<dyn InterruptSourceGroup> {
    m.core()
        .interrupt_manager()
        .create_msi_group(count)
        .expect("MSI group")
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn msi_vector_triggered_through_its_eventfd_reaches_the_guest_handler() {
    let (mut m, serial) = machine();
    load_program(&mut m);
    let group = msi_group(&m, 1);
    group.update(0, msi(TARGET_VECTOR), false).unwrap();
    m.start().unwrap();
    // The LAPIC drops interrupts until the guest software-enables it.
    wait_for_serial(&m, &serial, "R");
    // What VFIO does: write the vector's eventfd; KVM injects it without the VMM.
    group.notifier(0).unwrap().write(1).unwrap();
    assert_eq!(wait_for_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "RI");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn masked_vector_stays_pending_and_is_delivered_on_unmask() {
    let (mut m, serial) = machine();
    load_program(&mut m);
    let group = msi_group(&m, 2);
    group.update(0, msi(TARGET_VECTOR), true).unwrap();
    group.update(1, msi(PROBE_VECTOR), false).unwrap();
    m.start().unwrap();
    wait_for_serial(&m, &serial, "R");
    assert!(!group.pending(0));
    // Raised while masked: must not be delivered...
    group.trigger(0).unwrap();
    // ...which the probe shows: it fires after the masked vector was raised, and the masked one
    // has the higher priority, so a leak would print "I" (and power off) before "P".
    group.trigger(1).unwrap();
    wait_for_serial(&m, &serial, "RP");
    // The guest would read it in the PBA; the unmasked probe, consumed by KVM, is not pending.
    assert!(group.pending(0));
    assert!(!group.pending(1));
    group.update(0, msi(TARGET_VECTOR), false).unwrap();
    assert!(!group.pending(0));
    assert_eq!(wait_for_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "RPI");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn rerouted_vector_is_delivered_to_its_new_message() {
    let (mut m, serial) = machine();
    load_program(&mut m);
    let group = msi_group(&m, 1);
    group.update(0, msi(PROBE_VECTOR), false).unwrap();
    m.start().unwrap();
    wait_for_serial(&m, &serial, "R");
    group.trigger(0).unwrap();
    wait_for_serial(&m, &serial, "RP");
    // The guest reprograms the vector (new data): the routing table is re-committed.
    group.update(0, msi(TARGET_VECTOR), false).unwrap();
    group.trigger(0).unwrap();
    assert_eq!(wait_for_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "RPI");
}

/// Waits for the guest's end of interrupt to signal the line's resample eventfd.
fn wait_for_resample(line: &dyn LegacyIrq) {
    let deadline = Instant::now() + SAFETY_LIMIT;
    loop {
        match line.resample_notifier().read() {
            Ok(n) => {
                assert_eq!(n, 1);
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no resample within {SAFETY_LIMIT:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => panic!("reading the resample eventfd: {e}"),
        }
    }
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn intx_line_reaches_the_guest_and_resamples_on_its_eoi() {
    let (mut m, serial) = machine();
    load_program(&mut m);
    let line = m
        .core()
        .interrupt_manager()
        .create_legacy_irq(INTX_GSI)
        .unwrap();
    m.start().unwrap();
    wait_for_serial(&m, &serial, "R");
    line.trigger().unwrap();
    wait_for_serial(&m, &serial, "RP");
    // The handler's EOI reaches the I/O APIC (level triggered): KVM lowers the line and signals
    // the resample eventfd, so the source can raise it again.
    wait_for_resample(line.as_ref());
    line.notifier().write(1).unwrap();
    wait_for_serial(&m, &serial, "RPP");
    wait_for_resample(line.as_ref());
    assert_eq!(
        m.stop(),
        None,
        "the guest is still idling, nothing stopped it"
    );
    assert_eq!(serial.text(), "RPP");
}
