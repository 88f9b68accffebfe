//! Extra memory slots: host memory mapped into the guest (as a passthrough BAR's mmap will be)
//! is read and written by the guest directly.

mod common;

use common::{load, machine, run_to_exit};
use vm_memory::MmapRegion;
use vmm::boot_entry::BootProtocol;
use vmm::hypervisor::Hypervisor;
use vmm::power::ExitReason;

/// Reads the byte at 0xc0000000, writes 'W' there, prints the byte read, powers off.
///
/// ```text
/// b8 00 00 00 c0        mov eax, 0xc0000000
/// 8a 08                 mov cl, [rax]
/// c6 00 57              mov byte [rax], 'W'
/// 88 c8                 mov al, cl
/// 66 ba f8 03           mov dx, 0x3f8
/// ee                    out dx, al
/// 66 ba 04 06           mov dx, 0x604
/// 66 b8 00 34           mov ax, 0x3400
/// 66 ef                 out dx, ax
/// f4                    hlt
/// ```
const PROGRAM: &[u8] = &[
    0xb8, 0x00, 0x00, 0x00, 0xc0, 0x8a, 0x08, 0xc6, 0x00, 0x57, 0x88, 0xc8, 0x66, 0xba, 0xf8, 0x03,
    0xee, 0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x34, 0x66, 0xef, 0xf4,
];

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_reads_and_writes_host_memory_mapped_into_a_slot() {
    // Declared before the machine so it is dropped after it, even if an assertion fails.
    let bar = MmapRegion::<()>::new(0x1000).unwrap();
    let (mut m, serial) = machine();
    // SAFETY: offset 0 is inside the mapping; nothing else uses it yet.
    unsafe { std::ptr::write_volatile(bar.as_ptr(), b'M') };
    let kvm = m.kvm().clone();
    // SAFETY: `bar` outlives the machine, and with it the slot.
    let slot = unsafe { kvm.map_memory(0xc000_0000, 0x1000, bar.as_ptr() as u64, false) }.unwrap();
    load(&mut m, PROGRAM, BootProtocol::Linux64);
    assert_eq!(run_to_exit(&mut m, &serial), ExitReason::PowerOff);
    assert_eq!(serial.text(), "M");
    // SAFETY: as above.
    assert_eq!(unsafe { std::ptr::read_volatile(bar.as_ptr()) }, b'W');
    kvm.unmap_memory(slot.id).unwrap();
}
