//! The test guest: a freestanding x86-64 program the VMM boots with the 64-bit Linux protocol
//! (linked at 1 MiB, an ELF without a PVH note; entered in long mode with the first 4 GiB
//! identity mapped and RSI = the zero page, which it does not need). At about a microsecond per
//! instruction under emulated KVM it finishes in well under a second when all is well.
//!
//! It finds the RSDP in 0xe0000..0x100000, walks XSDT -> MCFG (ECAM base) and FADT (PM1a
//! control port), enumerates PCI bus 0, and for every DMA engine (1234:7d10) reads the BARs the
//! VMM assigned, enables memory decoding and bus mastering, points MSI-X entry 0 at its local
//! APIC with a vector of its own, runs one 256-byte COPY descriptor with INTERRUPT set, waits
//! in `sti; hlt` (a 10 ms APIC timer bounds the wait to 300 wake-ups) for the interrupt, and
//! checks the completion record and the copied bytes. For every QEMU `edu` (1234:11e8, a host
//! device passed through) it points the MSI capability at its local APIC, moves 256 bytes from
//! RAM to the device and back into a zeroed buffer, waiting for each completion interrupt, and
//! compares (`edu.rs`). Then it powers off through PM1a_CNT (SLP_TYP 5 | SLP_EN), also after a
//! failure.
//!
//! # Output on COM1 (every line starts with `guest: `)
//!
//! ```text
//! guest: start
//! guest: acpi: rsdp 0xe0000 ecam 0xe0000000 buses 0-255 pm1a_cnt 0x604
//! guest: pci: 2 dma-engine(s)
//! guest: pci: 1 edu(s)
//! guest: dev 00:02.0: ok: copied 256 bytes, msi-x vector 0x40
//! guest: dev 00:03.0: ok: copied 256 bytes, msi-x vector 0x41
//! guest: edu 00:04.0: ok: 256 bytes to the device and back, msi vector 0x42
//! guest: PASS
//! ```
//!
//! The last line is `guest: PASS` or `guest: FAIL <reason>`, where the reason is one of:
//! `no RSDP in 0xe0000-0xfffff`, `RSDP has no valid XSDT`, `ACPI table XXXX missing`,
//! `ACPI table XXXX invalid` (bad length or checksum), `no dma-engine or edu found`,
//! `more than 8 devices`, `edu BB:DD.F: <edu failure>` (see `edu.rs`),
//! `dev BB:DD.F: <device failure>` with the device failure one of
//! `BAR<n> not assigned`, `ID register 0x... is not DMA1`, `no usable MSI-X capability`,
//! `cannot map MMIO at 0x...`, `device error, ERROR_CODE 0x...`, `no MSI-X interrupt`,
//! `completion status 0x...`, `completion bytes_done <n>`, `data mismatch at offset 0x..`;
//! or `exception <vector> at rip 0x...`, or `panic: <message>`.

#![no_std]
#![no_main]

mod acpi;
mod apic;
mod dma;
mod edu;
mod interrupts;
mod io;
mod paging;
mod pci;
mod serial;

use core::fmt;

use pci::{Bdf, Ecam};

core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "cli",
    "lea rsp, [rip + __stack_top]",
    "xor ebp, ebp",
    "mov rdi, rsi",
    "call {main}",
    "2:",
    "hlt",
    "jmp 2b",
    main = sym guest_main,
);

/// Why the run failed: the text after `guest: FAIL `.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// No RSDP with a valid checksum in the BIOS area.
    NoRsdp,
    /// The RSDP is not revision 2 or its extended checksum is wrong.
    NoXsdt,
    /// The XSDT does not list this table.
    MissingTable([u8; 4]),
    /// The table has a bad address, length or checksum, or unusable contents.
    BadTable([u8; 4]),
    /// Bus 0 has neither a DMA engine nor an edu.
    NoDevice,
    /// More devices than we have vectors for.
    TooManyDevices,
    /// A DMA engine failed.
    Device(Bdf, dma::DeviceFailure),
    /// An edu failed.
    Edu(Bdf, edu::EduFailure),
    /// An unexpected CPU exception.
    Exception {
        /// Its vector.
        vector: u64,
        /// Where it happened.
        rip: u64,
    },
}

struct Signature([u8; 4]);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|&byte| {
            let printable = if byte.is_ascii_graphic() {
                byte as char
            } else {
                '?'
            };
            write!(f, "{printable}")
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::NoRsdp => write!(f, "no RSDP in 0xe0000-0xfffff"),
            Failure::NoXsdt => write!(f, "RSDP has no valid XSDT"),
            Failure::MissingTable(sig) => write!(f, "ACPI table {} missing", Signature(sig)),
            Failure::BadTable(sig) => write!(f, "ACPI table {} invalid", Signature(sig)),
            Failure::NoDevice => write!(f, "no dma-engine or edu found"),
            Failure::TooManyDevices => {
                write!(f, "more than {} devices", apic::MAX_DEVICES)
            }
            Failure::Device(bdf, failure) => write!(f, "dev {bdf}: {failure}"),
            Failure::Edu(bdf, failure) => write!(f, "edu {bdf}: {failure}"),
            Failure::Exception { vector, rip } => write!(f, "exception {vector} at rip {rip:#x}"),
        }
    }
}

/// Reports `failure` as the final line and powers off.
pub fn fail(failure: Failure) -> ! {
    report!("FAIL {failure}");
    acpi::power_off()
}

extern "C" fn guest_main(_zero_page: u64) -> ! {
    report!("start");
    interrupts::init();
    match run() {
        Ok(()) => {
            apic::stop_timer();
            report!("PASS");
            acpi::power_off()
        }
        Err(failure) => fail(failure),
    }
}

fn run() -> Result<(), Failure> {
    let platform = acpi::discover()?;
    report!(
        "acpi: rsdp {:#x} ecam {:#x} buses {}-{} pm1a_cnt {:#x}",
        platform.rsdp,
        platform.ecam_base,
        platform.first_bus,
        platform.last_bus,
        platform.pm1a_cnt
    );
    apic::init();

    let ecam = Ecam {
        base: platform.ecam_base,
    };
    let mut engines = Devices::default();
    ecam.for_each_on_bus0(dma::VENDOR_ID, dma::DEVICE_ID, |bdf| engines.push(bdf));
    let mut edus = Devices::default();
    ecam.for_each_on_bus0(edu::VENDOR_ID, edu::DEVICE_ID, |bdf| edus.push(bdf));
    if engines.count + edus.count > apic::MAX_DEVICES || engines.too_many || edus.too_many {
        return Err(Failure::TooManyDevices);
    }
    report!("pci: {} dma-engine(s)", engines.count);
    if edus.count > 0 {
        report!("pci: {} edu(s)", edus.count);
    }
    if engines.count + edus.count == 0 {
        return Err(Failure::NoDevice);
    }
    // Each device gets an interrupt slot (and vector) of its own: engines first, then edus.
    for (slot, &bdf) in engines.found().iter().enumerate() {
        let vector =
            dma::test_device(&ecam, bdf, slot).map_err(|failure| Failure::Device(bdf, failure))?;
        report!(
            "dev {bdf}: ok: copied {} bytes, msi-x vector {vector:#x}",
            dma::COPY_LEN
        );
    }
    for (i, &bdf) in edus.found().iter().enumerate() {
        let slot = engines.count + i;
        let vector =
            edu::test_device(&ecam, bdf, slot).map_err(|failure| Failure::Edu(bdf, failure))?;
        report!(
            "edu {bdf}: ok: {} bytes to the device and back, msi vector {vector:#x}",
            edu::DMA_LEN
        );
    }
    Ok(())
}

/// The functions of one kind found on bus 0 (at most one per interrupt slot).
struct Devices {
    bdfs: [Bdf; apic::MAX_DEVICES],
    count: usize,
    too_many: bool,
}

impl Default for Devices {
    fn default() -> Self {
        Devices {
            bdfs: [Bdf {
                bus: 0,
                device: 0,
                function: 0,
            }; apic::MAX_DEVICES],
            count: 0,
            too_many: false,
        }
    }
}

impl Devices {
    fn push(&mut self, bdf: Bdf) {
        if self.count < self.bdfs.len() {
            self.bdfs[self.count] = bdf;
            self.count += 1;
        } else {
            self.too_many = true;
        }
    }

    fn found(&self) -> &[Bdf] {
        &self.bdfs[..self.count]
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    report!("FAIL panic: {}", info.message());
    acpi::power_off()
}
