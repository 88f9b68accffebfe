//! The IDT and its stubs: exceptions report a failure and power off; device vectors and the
//! timer count in [`apic::INTERRUPT_COUNTS`] and write EOI; the spurious vector just returns.
//!
//! The stubs are assembly (the `x86-interrupt` ABI is unstable). Each group is a table of
//! fixed-size, 16-byte aligned entries, so the IDT points at `base + 16 * n`.

use core::arch::{asm, global_asm};

use crate::apic::{self, DEVICE_VECTOR_BASE, MAX_DEVICES, SPURIOUS_VECTOR, TIMER_SLOT};

const STUB_SIZE: u64 = 16;
const EXCEPTIONS: usize = 32;
/// Present, DPL 0, 64-bit interrupt gate (interrupts stay off in handlers).
const INTERRUPT_GATE: u8 = 0x8e;
/// Exceptions that push an error code (the frame's RIP is one slot further up).
const WITH_ERROR_CODE: [u64; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

global_asm!(
    ".section .text.interrupts, \"ax\"",
    // Exceptions: vector in edi, frame in rsi, to the Rust reporter.
    ".balign 16",
    ".global guest_exception_stubs",
    "guest_exception_stubs:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    "mov edi, \\n",
    "mov rsi, rsp",
    "jmp guest_exception_common",
    ".endr",
    // Device vectors and the timer: the counter slot in eax.
    ".balign 16",
    ".global guest_counting_stubs",
    "guest_counting_stubs:",
    ".irp n, 0,1,2,3,4,5,6,7,8",
    ".balign 16",
    "push rax",
    "mov eax, \\n",
    "jmp guest_counting_common",
    ".endr",
    ".balign 16",
    ".global guest_spurious_stub",
    "guest_spurious_stub:",
    "iretq",
);

global_asm!(
    ".section .text.interrupts, \"ax\"",
    ".balign 16",
    ".global guest_counting_common",
    "guest_counting_common:",
    "push rcx",
    "lea rcx, [rip + {counts}]",
    "lock inc dword ptr [rcx + rax * 4]",
    // EOI: any write to the local APIC's EOI register (0xfee000b0).
    "mov eax, 0xfee000b0",
    "mov dword ptr [rax], 0",
    "pop rcx",
    "pop rax",
    "iretq",
    ".global guest_exception_common",
    "guest_exception_common:",
    "and rsp, -16",
    "call {report}",
    "ud2",
    counts = sym apic::INTERRUPT_COUNTS,
    report = sym exception_report,
);

unsafe extern "C" {
    fn guest_exception_stubs();
    fn guest_counting_stubs();
    fn guest_spurious_stub();
}

/// Reports an unexpected exception and powers off.
extern "C" fn exception_report(vector: u64, frame: *const u64) -> ! {
    let rip_slot = if WITH_ERROR_CODE.contains(&vector) {
        1
    } else {
        0
    };
    // SAFETY: `frame` is the stack pointer at the stub, where the CPU pushed its frame.
    let rip = unsafe { frame.add(rip_slot).read() };
    crate::fail(crate::Failure::Exception { vector, rip })
}

/// One IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    kind: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        kind: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn new(handler: u64, selector: u16) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: 0,
            kind: INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

/// The IDT lives in .bss; written once by `init` before `lidt`, then only read by the CPU.
struct IdtCell(core::cell::UnsafeCell<Idt>);
// SAFETY: one vCPU, and the table is written only in `init`, before interrupts are enabled.
unsafe impl Sync for IdtCell {}
static IDT: IdtCell = IdtCell(core::cell::UnsafeCell::new(Idt([Gate::MISSING; 256])));

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

/// The address of an assembly label.
fn address(label: unsafe extern "C" fn()) -> u64 {
    label as *const () as u64
}

/// Fills the IDT and loads it.
pub fn init() {
    let selector: u16;
    // SAFETY: reading CS has no effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) selector, options(nomem, nostack)) };
    // SAFETY: interrupts are off and nothing else touches the IDT while we fill it.
    let idt = unsafe { &mut *IDT.0.get() };
    for vector in 0..EXCEPTIONS {
        let stub = address(guest_exception_stubs) + STUB_SIZE * vector as u64;
        idt.0[vector] = Gate::new(stub, selector);
    }
    for slot in 0..MAX_DEVICES {
        let stub = address(guest_counting_stubs) + STUB_SIZE * slot as u64;
        idt.0[usize::from(DEVICE_VECTOR_BASE) + slot] = Gate::new(stub, selector);
    }
    let timer_stub = address(guest_counting_stubs) + STUB_SIZE * TIMER_SLOT as u64;
    idt.0[usize::from(apic::TIMER_VECTOR)] = Gate::new(timer_stub, selector);
    idt.0[usize::from(SPURIOUS_VECTOR)] = Gate::new(address(guest_spurious_stub), selector);

    let pointer = IdtPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is filled with gates to our stubs and lives for the whole program.
    unsafe { asm!("lidt [{0}]", in(reg) &pointer, options(readonly, nostack)) };
}
