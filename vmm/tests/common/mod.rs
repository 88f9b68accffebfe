//! Shared pieces of the KVM tests: a small machine with captured serial output, loading
//! hand-assembled guest code, and running it to its exit with a safety limit.
//!
//! Guest code runs at about 1 µs per instruction on hosts where KVM emulates every instruction,
//! so the programs are a few dozen instructions. Each is listed with its source (Intel syntax)
//! next to the bytes; they were assembled with GNU as and checked with objdump.

#![allow(dead_code)]

pub mod test_guest;

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm::assembly::DeviceConfig;
use vmm::boot_entry::{BootProtocol, EntryPoint};
use vmm::layout::HIGH_RAM_START;
use vmm::machine::{Machine, MachineConfig};
use vmm::platform::{SerialCapture, SerialSink};
use vmm::power::ExitReason;

/// How long a guest may take before the test gives up on it. Not a timing assertion: the guests
/// finish in milliseconds; this only turns a hung guest into a failure instead of a hung test.
pub const SAFETY_LIMIT: Duration = Duration::from_secs(60);

/// Where the test programs are loaded and start.
pub const ENTRY: u64 = HIGH_RAM_START;

/// A one-vCPU machine with 16 MiB of RAM, COM1 captured.
pub fn machine() -> (Machine, SerialCapture) {
    let serial = SerialCapture::new();
    let config = MachineConfig {
        memory_size: 16 << 20,
        vcpus: 1,
        devices: DeviceConfig::new(SerialSink::Capture(serial.clone())),
    };
    (
        Machine::new(&config).expect("build the KVM machine"),
        serial,
    )
}

/// Copies `code` to [`ENTRY`] and sets the boot vCPU there for `protocol`.
pub fn load(machine: &mut Machine, code: &[u8], protocol: BootProtocol) {
    machine
        .core()
        .ram()
        .memory()
        .write_slice(code, GuestAddress(ENTRY))
        .expect("guest code fits in RAM");
    machine
        .boot(EntryPoint {
            addr: GuestAddress(ENTRY),
            protocol,
        })
        .expect("boot state");
}

/// Starts the machine and waits for its exit; stops the vCPUs either way.
pub fn run_to_exit(machine: &mut Machine, serial: &SerialCapture) -> ExitReason {
    machine.start().expect("start the vCPUs");
    wait_for_exit(machine, serial)
}

/// Waits for an already started machine to exit, then stops its vCPUs.
pub fn wait_for_exit(machine: &mut Machine, serial: &SerialCapture) -> ExitReason {
    let reason = machine.wait(Some(SAFETY_LIMIT));
    machine.stop();
    reason.unwrap_or_else(|| {
        panic!(
            "guest did not exit within {SAFETY_LIMIT:?}; serial output so far: {:?}",
            serial.text()
        )
    })
}

/// Waits until the guest has written `text` to COM1; fails at once if the machine exits first.
pub fn wait_for_serial(machine: &Machine, serial: &SerialCapture, text: &str) {
    let deadline = Instant::now() + SAFETY_LIMIT;
    while !serial.text().contains(text) {
        if let Some(reason) = machine.core().power().exit_reason() {
            panic!(
                "machine exited ({reason}) before the guest printed {text:?}; serial output: {:?}",
                serial.text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "guest did not print {text:?} within {SAFETY_LIMIT:?}; serial output so far: {:?}",
            serial.text()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Linux64 entry test (64-bit code at 0x100000). Checks the boot protocol's RSI, prints through
/// a `call` (so the stack works) with `rep outsb` (string I/O), then powers off through PM1a_CNT.
///
/// ```text
/// 100000: 48 81 fe 00 70 00 00   cmp rsi, 0x7000          ; zero page?
/// 100007: 75 0e                  jne fail
/// 100009: 48 8d 35 2a 00 00 00   lea rsi, [rip + msg]     ; 0x10003a
/// 100010: b9 11 00 00 00         mov ecx, 17
/// 100015: eb 0c                  jmp print
/// 100017: 48 8d 35 2d 00 00 00   fail: lea rsi, [rip + bad] ; 0x10004b
/// 10001e: b9 10 00 00 00         mov ecx, 16
/// 100023: e8 0b 00 00 00         print: call emit
/// 100028: 66 ba 04 06            mov dx, 0x604            ; PM1a_CNT
/// 10002c: 66 b8 00 34            mov ax, 0x3400           ; SLP_EN | SLP_TYP=5
/// 100030: 66 ef                  out dx, ax
/// 100032: f4                     hlt
/// 100033: 66 ba f8 03            emit: mov dx, 0x3f8      ; COM1
/// 100037: f3 6e                  rep outsb
/// 100039: c3                     ret
/// 10003a: "long mode: hello\n"   msg
/// 10004b: "bad entry state\n"    bad
/// ```
pub fn linux64_hello() -> Vec<u8> {
    let code: &[u8] = &[
        0x48, 0x81, 0xfe, 0x00, 0x70, 0x00, 0x00, 0x75, 0x0e, 0x48, 0x8d, 0x35, 0x2a, 0x00, 0x00,
        0x00, 0xb9, 0x11, 0x00, 0x00, 0x00, 0xeb, 0x0c, 0x48, 0x8d, 0x35, 0x2d, 0x00, 0x00, 0x00,
        0xb9, 0x10, 0x00, 0x00, 0x00, 0xe8, 0x0b, 0x00, 0x00, 0x00, 0x66, 0xba, 0x04, 0x06, 0x66,
        0xb8, 0x00, 0x34, 0x66, 0xef, 0xf4, 0x66, 0xba, 0xf8, 0x03, 0xf3, 0x6e, 0xc3,
    ];
    [code, b"long mode: hello\n", b"bad entry state\n"].concat()
}

/// PVH entry test (32-bit code at 0x100000, paging off). Checks the protocol's EBX, prints with
/// a `lodsb`/`out` loop (flat 32-bit addressing of absolute addresses), then powers off.
///
/// ```text
/// 100000: 81 fb 00 60 00 00      cmp ebx, 0x6000          ; hvm_start_info?
/// 100006: 75 0c                  jne fail
/// 100008: be 31 00 10 00         mov esi, msg             ; 0x100031
/// 10000d: b9 0b 00 00 00         mov ecx, 11
/// 100012: eb 0a                  jmp print
/// 100014: be 3c 00 10 00         fail: mov esi, bad       ; 0x10003c
/// 100019: b9 10 00 00 00         mov ecx, 16
/// 10001e: 66 ba f8 03            print: mov dx, 0x3f8
/// 100022: ac                     next: lodsb
/// 100023: ee                     out dx, al
/// 100024: e2 fc                  loop next
/// 100026: 66 ba 04 06            mov dx, 0x604
/// 10002a: 66 b8 00 34            mov ax, 0x3400
/// 10002e: 66 ef                  out dx, ax
/// 100030: f4                     hlt
/// 100031: "pvh: hello\n"         msg
/// 10003c: "bad entry state\n"    bad
/// ```
pub fn pvh_hello() -> Vec<u8> {
    let code: &[u8] = &[
        0x81, 0xfb, 0x00, 0x60, 0x00, 0x00, 0x75, 0x0c, 0xbe, 0x31, 0x00, 0x10, 0x00, 0xb9, 0x0b,
        0x00, 0x00, 0x00, 0xeb, 0x0a, 0xbe, 0x3c, 0x00, 0x10, 0x00, 0xb9, 0x10, 0x00, 0x00, 0x00,
        0x66, 0xba, 0xf8, 0x03, 0xac, 0xee, 0xe2, 0xfc, 0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00,
        0x34, 0x66, 0xef, 0xf4,
    ];
    [code, b"pvh: hello\n", b"bad entry state\n"].concat()
}

/// A minimal x86-64 ELF executable: `code` in one PT_LOAD segment at physical address `load`,
/// entry `load`, and, with `pvh`, a PT_NOTE with the Xen PVH entry note pointing at `load`.
pub fn elf_image(code: &[u8], load: u64, pvh: bool) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const NOTE_OFFSET: usize = 0x100;
    const CODE_OFFSET: usize = 0x1000;
    let phnum: u16 = if pvh { 2 } else { 1 };
    let mut elf = vec![0u8; CODE_OFFSET];
    // e_ident: magic, 64-bit, little endian, version 1.
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    let put = |elf: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        elf[at..at + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut elf, 16, &2u16.to_le_bytes()); // e_type: EXEC
    put(&mut elf, 18, &62u16.to_le_bytes()); // e_machine: x86-64
    put(&mut elf, 20, &1u32.to_le_bytes()); // e_version
    put(&mut elf, 24, &load.to_le_bytes()); // e_entry
    put(&mut elf, 32, &(EHDR as u64).to_le_bytes()); // e_phoff
    put(&mut elf, 52, &(EHDR as u16).to_le_bytes()); // e_ehsize
    put(&mut elf, 54, &(PHDR as u16).to_le_bytes()); // e_phentsize
    put(&mut elf, 56, &phnum.to_le_bytes()); // e_phnum
    let phdr = |p_type: u32, offset: usize, addr: u64, size: usize| {
        let mut h = Vec::with_capacity(PHDR);
        h.extend_from_slice(&p_type.to_le_bytes());
        h.extend_from_slice(&5u32.to_le_bytes()); // R | X
        h.extend_from_slice(&(offset as u64).to_le_bytes());
        h.extend_from_slice(&addr.to_le_bytes()); // p_vaddr
        h.extend_from_slice(&addr.to_le_bytes()); // p_paddr
        h.extend_from_slice(&(size as u64).to_le_bytes()); // p_filesz
        h.extend_from_slice(&(size as u64).to_le_bytes()); // p_memsz
        h.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
        h
    };
    put(&mut elf, EHDR, &phdr(1, CODE_OFFSET, load, code.len()));
    if pvh {
        // Note: namesz 4, descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", entry.
        let mut note = Vec::new();
        for v in [4u32, 4, 18] {
            note.extend_from_slice(&v.to_le_bytes());
        }
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&(load as u32).to_le_bytes());
        put(&mut elf, EHDR + PHDR, &phdr(4, NOTE_OFFSET, 0, note.len()));
        put(&mut elf, NOTE_OFFSET, &note);
    }
    elf.extend_from_slice(code);
    elf
}
