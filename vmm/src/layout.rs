//! The guest physical and port address layout of the machine (x86-64, q35-like).
//!
//! One place for every fixed address, so the loader, the ACPI tables, the PCI host bridge, the
//! test guest and the tests agree. The test guest (`guest/`) mirrors the few constants it needs
//! and checks them against the ACPI tables it reads.

/// Page size of the guest and of the host IOMMU mappings.
pub const PAGE_SIZE: u64 = 4096;

// Low memory, below 1 MiB: boot structures the VMM writes.
/// Global descriptor table for the initial long-mode entry.
pub const BOOT_GDT_START: u64 = 0x500;
/// Interrupt descriptor table placeholder (an empty IDT for entry).
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info` structure.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH memory map entries, after the start info.
pub const PVH_MEMMAP_START: u64 = 0x6040;
/// Most PVH memory map entries that fit between `PVH_MEMMAP_START` and `PVH_MODLIST_START`.
pub const PVH_MEMMAP_MAX_ENTRIES: usize = 64;
/// PVH module list (`hvm_modlist_entry`, one for the initramfs), after the memory map.
pub const PVH_MODLIST_START: u64 = 0x6800;
/// Linux `boot_params` ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Identity page tables for the 64-bit entry: PML4, PDPT, then page directories.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table of the identity map.
pub const PDPTE_START: u64 = 0xa000;
/// First page directory of the identity map (4 of them map the first 4 GiB with 2 MiB pages).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Maximum command line size, including the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Initial stack pointer for the 64-bit entry (grows down, below the EBDA).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Start of the extended BIOS data area; RAM below it is usable.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables live in the BIOS area where Linux scans for the RSDP.
pub const RSDP_START: u64 = 0xe0000;
/// Where the other ACPI tables follow the RSDP.
pub const ACPI_TABLES_START: u64 = 0xe0100;
/// End of the BIOS area (exclusive).
pub const BIOS_END: u64 = 0x100000;

/// Where high memory starts; kernels and the test guest load at or above it.
pub const HIGH_RAM_START: u64 = 0x100000;

/// Start of the 32-bit hole: RAM stops here and resumes at 4 GiB.
pub const MEM_32BIT_GAP_START: u64 = 0xc000_0000;
/// Size of the 32-bit hole.
pub const MEM_32BIT_GAP_SIZE: u64 = 0x4000_0000;
/// Where RAM resumes above the 32-bit hole.
pub const RAM_64BIT_START: u64 = 0x1_0000_0000;

/// 32-bit MMIO window for PCI BARs (inside the hole, below ECAM).
pub const MMIO32_START: u64 = 0xc000_0000;
/// Size of the 32-bit MMIO window.
pub const MMIO32_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration (ECAM) base.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
/// ECAM size: 256 buses x 32 devices x 8 functions x 4 KiB.
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
/// Buses the host bridge decodes (only bus 0 is populated).
pub const PCI_BUS_COUNT: u16 = 256;
/// I/O APIC registers.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers (and the MSI address window, 0xfee0_0000 - 0xfeef_ffff).
pub const APIC_START: u64 = 0xfee0_0000;
/// Size of the MSI address window, which DMA must never reach as memory.
pub const MSI_WINDOW_SIZE: u64 = 0x10_0000;

/// 64-bit MMIO window for PCI BARs (64 GiB at 64 GiB); guest RAM above 4 GiB must end below it.
pub const MMIO64_START: u64 = 0x10_0000_0000;
/// Size of the 64-bit MMIO window.
pub const MMIO64_SIZE: u64 = 0x10_0000_0000;
/// The most guest RAM the layout holds: below the hole plus up to the 64-bit MMIO window.
pub const MAX_RAM_SIZE: u64 = MEM_32BIT_GAP_START + (MMIO64_START - RAM_64BIT_START);
/// The least guest RAM a machine gets: the boot structures below 1 MiB plus 1 MiB to load into.
pub const MIN_RAM_SIZE: u64 = 2 << 20;

/// KVM's identity-mapped page for real-mode emulation on Intel (one page, inside the 32-bit hole,
/// clear of the I/O APIC, the local APIC and ECAM).
pub const KVM_IDENTITY_MAP_START: u64 = 0xfeff_c000;
/// KVM's task state segment area on Intel (three pages, right after the identity map page).
pub const KVM_TSS_START: u64 = 0xfeff_d000;

// Port I/O.
/// First COM port (16550 UART).
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's I/O APIC input.
pub const COM1_GSI: u32 = 4;
/// Number of ports of a 16550 UART.
pub const COM_PORT_SIZE: u16 = 8;
/// i8042 keyboard controller data port.
pub const I8042_DATA_PORT: u16 = 0x60;
/// i8042 keyboard controller command port; the command 0xfe resets the machine.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// PCI configuration address register (mechanism #1); data at `+4`.
pub const PCI_CONFIG_IO_PORT: u16 = 0xcf8;
/// Size of the PCI configuration mechanism #1 ports.
pub const PCI_CONFIG_IO_SIZE: u16 = 8;
/// ACPI PM1a event block (status, enable).
pub const ACPI_PM1A_EVT_PORT: u16 = 0x600;
/// Length of the PM1a event block (FADT `PM1_EVT_LEN`): a 16-bit status and a 16-bit enable
/// register.
pub const ACPI_PM1_EVT_LEN: u8 = 4;
/// ACPI PM1a control block; writing SLP_EN with SLP_TYP 5 powers the machine off.
pub const ACPI_PM1A_CNT_PORT: u16 = 0x604;
/// Length of the PM1a control block (FADT `PM1_CNT_LEN`).
pub const ACPI_PM1_CNT_LEN: u8 = 2;
/// The SLP_TYP value of the S5 (soft off) state: the DSDT's `\_S5` package must carry it.
pub const ACPI_S5_SLP_TYP: u16 = 5;
/// I/O window for PCI I/O BARs.
pub const PIO_WINDOW_START: u16 = 0xc000;
/// Size of the PCI I/O window.
pub const PIO_WINDOW_SIZE: u16 = 0x4000;

/// First GSI handed to PCI INTx lines (the legacy ISA ones stay below).
pub const PCI_INTX_GSI_START: u32 = 16;
/// I/O APIC inputs (GSIs 0..24).
pub const IOAPIC_PINS: u32 = 24;
/// The ACPI system control interrupt (ISA IRQ 9, level triggered, active low).
pub const ACPI_SCI_IRQ: u32 = 9;
/// Devices on a PCI bus.
pub const PCI_DEVICES_PER_BUS: u8 = 32;
/// INTx pins of a PCI function (INTA..INTD).
pub const PCI_INTX_PINS: u8 = 4;

/// The I/O APIC input (GSI) that INTx `pin` of PCI device `device` on bus 0 is wired to.
///
/// `pin` counts from 0 (0 = INTA, as in an ACPI `_PRT`; the config-space Interrupt Pin register
/// counts from 1). The classic swizzle `(device + pin) mod N` spreads the lines of neighbouring
/// slots over the `N` inputs from `PCI_INTX_GSI_START` to the last I/O APIC input. The ACPI
/// `_PRT` and the VMM's INTx wiring both call this, so the guest's view and the machine agree.
/// Out-of-range inputs wrap (device modulo 32, pin modulo 4) rather than panic.
pub const fn pci_intx_gsi(device: u8, pin: u8) -> u32 {
    let lines = IOAPIC_PINS - PCI_INTX_GSI_START;
    let device = (device % PCI_DEVICES_PER_BUS) as u32;
    let pin = (pin % PCI_INTX_PINS) as u32;
    PCI_INTX_GSI_START + (device + pin) % lines
}
/// First GSI used for MSI routes (above every I/O APIC input).
pub const MSI_GSI_START: u32 = 24;

/// The guest RAM regions, `(start, size)`, for `ram_size` bytes of RAM: up to the 32-bit hole
/// from address 0, the rest from 4 GiB. `ram_size` above `MAX_RAM_SIZE` is cut to it.
pub fn ram_regions(ram_size: u64) -> Vec<(u64, u64)> {
    let ram_size = ram_size.min(MAX_RAM_SIZE);
    let low = ram_size.min(MEM_32BIT_GAP_START);
    let mut regions = Vec::with_capacity(2);
    if low > 0 {
        regions.push((0, low));
    }
    if ram_size > low {
        regions.push((RAM_64BIT_START, ram_size - low));
    }
    regions
}

// The fixed boot structures must not overlap (sizes: hvm_start_info 56 bytes, a PVH memory map
// entry 24, a module list entry 32, the zero page 4096).
const _: () = assert!(PVH_INFO_START + 56 <= PVH_MEMMAP_START);
const _: () = assert!(PVH_MEMMAP_START + 24 * PVH_MEMMAP_MAX_ENTRIES as u64 <= PVH_MODLIST_START);
const _: () = assert!(PVH_MODLIST_START + 32 <= ZERO_PAGE_START);
const _: () = assert!(ZERO_PAGE_START + 4096 <= BOOT_STACK_POINTER);
const _: () = assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
const _: () = assert!(RSDP_START < ACPI_TABLES_START && ACPI_TABLES_START < BIOS_END);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intx_swizzle_stays_on_ioapic_inputs_above_the_isa_ones() {
        for device in 0..PCI_DEVICES_PER_BUS {
            for pin in 0..PCI_INTX_PINS {
                let gsi = pci_intx_gsi(device, pin);
                assert!(
                    (PCI_INTX_GSI_START..IOAPIC_PINS).contains(&gsi),
                    "{device}/{pin}: {gsi}"
                );
            }
        }
        // Neighbouring slots put their INTA on different lines, and a slot's pins differ.
        assert_ne!(pci_intx_gsi(1, 0), pci_intx_gsi(2, 0));
        assert_ne!(pci_intx_gsi(2, 0), pci_intx_gsi(2, 1));
        assert_eq!(pci_intx_gsi(0, 0), PCI_INTX_GSI_START);
    }

    #[test]
    fn ram_regions_split_around_the_32bit_hole() {
        assert_eq!(ram_regions(512 << 20), vec![(0, 512 << 20)]);
        assert_eq!(
            ram_regions(MEM_32BIT_GAP_START),
            vec![(0, MEM_32BIT_GAP_START)]
        );
        assert_eq!(
            ram_regions(4 << 30),
            vec![
                (0, MEM_32BIT_GAP_START),
                (RAM_64BIT_START, (4 << 30) - MEM_32BIT_GAP_START)
            ]
        );
        let capped = ram_regions(u64::MAX);
        assert_eq!(capped[1].0 + capped[1].1, MMIO64_START);
    }
}
