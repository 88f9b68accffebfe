//! The boot vCPU's initial state for each [`BootProtocol`], and the tables it needs in guest
//! memory (GDT, IDT, identity page tables).
//!
//! - Linux64: 64-bit long mode, flat segments, the first 4 GiB identity-mapped with 2 MiB pages,
//!   `RSI` = zero page, `RSP` = boot stack.
//! - PVH: 32-bit flat protected mode with paging off, `EBX` = `hvm_start_info`.

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::gdt::{gdt_entry, segment_from_gdt};
use crate::boot_entry::{BootProtocol, EntryPoint};
use crate::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Page-table entry bits: present, writable, and (in a page directory) a 2 MiB page.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x83;
/// Page directories of the identity map: four of them map 4 GiB with 2 MiB pages.
const PD_COUNT: u64 = 4;

// The boot structures must not overlap: GDT/IDT, PVH info and zero page, the stack (growing down
// from just below the PML4), then the page tables, all below the command line.
const _: () = {
    assert!(BOOT_GDT_START + 4 * 8 <= BOOT_IDT_START);
    assert!(BOOT_IDT_START + 8 <= PVH_INFO_START);
    assert!(PVH_INFO_START < ZERO_PAGE_START && ZERO_PAGE_START + 0x1000 <= BOOT_STACK_POINTER);
    assert!(BOOT_STACK_POINTER <= PML4_START && PML4_START + 0x1000 <= PDPTE_START);
    assert!(PDPTE_START + 0x1000 <= PDE_START);
    assert!(PDE_START + PD_COUNT * 0x1000 <= crate::layout::CMDLINE_START);
};

/// Selector indexes in the boot GDT.
const GDT_CODE: u8 = 1;
const GDT_DATA: u8 = 2;
const GDT_TSS: u8 = 3;

/// The boot GDT: null, code, data, TSS. Long mode needs a 64-bit code segment (L=1); PVH a
/// 32-bit one (D=1).
fn boot_gdt(protocol: BootProtocol) -> [u64; 4] {
    match protocol {
        BootProtocol::Linux64 => [
            0,
            gdt_entry(0xa09b, 0, 0xfffff),
            gdt_entry(0xc093, 0, 0xfffff),
            gdt_entry(0x808b, 0, 0xfffff),
        ],
        BootProtocol::Pvh => [
            0,
            gdt_entry(0xc09b, 0, 0xfffff),
            gdt_entry(0xc093, 0, 0xfffff),
            gdt_entry(0x008b, 0, 0x67),
        ],
    }
}

/// Writes the GDT, an empty IDT and (for Linux64) the identity page tables into guest memory.
pub fn write_boot_tables(
    mem: &GuestMemoryMmap,
    protocol: BootProtocol,
) -> Result<(), GuestMemoryError> {
    for (i, entry) in boot_gdt(protocol).iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))?;
    if protocol == BootProtocol::Linux64 {
        write_identity_map(mem)?;
    }
    Ok(())
}

fn write_identity_map(mem: &GuestMemoryMmap) -> Result<(), GuestMemoryError> {
    mem.write_obj(PDPTE_START | PTE_PRESENT_RW, GuestAddress(PML4_START))?;
    for pd in 0..PD_COUNT {
        let pd_addr = PDE_START + pd * 0x1000;
        mem.write_obj(pd_addr | PTE_PRESENT_RW, GuestAddress(PDPTE_START + pd * 8))?;
        for i in 0..512u64 {
            let page = ((pd * 512 + i) << 21) | PDE_2M_PAGE;
            mem.write_obj(page, GuestAddress(pd_addr + i * 8))?;
        }
    }
    Ok(())
}

/// General registers at entry.
pub fn boot_regs(entry: EntryPoint) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        rip: entry.addr.0,
        ..Default::default()
    };
    match entry.protocol {
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
        BootProtocol::Pvh => regs.rbx = PVH_INFO_START,
    }
    regs
}

/// Segment and control registers at entry, starting from the vCPU's reset state `sregs` (which
/// keeps the APIC base and the interrupt bitmap KVM set).
pub fn boot_sregs(protocol: BootProtocol, mut sregs: kvm_sregs) -> kvm_sregs {
    let gdt = boot_gdt(protocol);
    let code = segment_from_gdt(gdt[GDT_CODE as usize], GDT_CODE);
    let data = segment_from_gdt(gdt[GDT_DATA as usize], GDT_DATA);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[GDT_TSS as usize], GDT_TSS);
    match protocol {
        BootProtocol::Linux64 => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.cr3 = PML4_START;
            sregs.cr4 = X86_CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    sregs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;

    fn entry(protocol: BootProtocol) -> EntryPoint {
        EntryPoint {
            addr: GuestAddress(0x10_0000),
            protocol,
        }
    }

    #[test]
    fn identity_map_translates_addresses_below_4g_to_themselves() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mem = ram.memory();
        write_boot_tables(mem, BootProtocol::Linux64).unwrap();
        // Walk the tables by hand for a few addresses, including the local APIC's.
        for addr in [0u64, 0x12_3456, 0xfee0_00b0, 0xffff_ffff] {
            let pml4e: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
            let pdpt = pml4e & !0xfff;
            let pdpte: u64 = mem
                .read_obj(GuestAddress(pdpt + ((addr >> 30) & 0x1ff) * 8))
                .unwrap();
            let pd = pdpte & !0xfff;
            let pde: u64 = mem
                .read_obj(GuestAddress(pd + ((addr >> 21) & 0x1ff) * 8))
                .unwrap();
            assert_eq!(pde & 0x83, 0x83, "present, writable 2 MiB page");
            assert_eq!((pde & !0x1f_ffff) | (addr & 0x1f_ffff), addr);
        }
    }

    #[test]
    fn linux64_entry_is_long_mode_with_zero_page_in_rsi() {
        let regs = boot_regs(entry(BootProtocol::Linux64));
        assert_eq!(
            (regs.rip, regs.rsi, regs.rsp, regs.rflags),
            (0x10_0000, ZERO_PAGE_START, BOOT_STACK_POINTER, 2)
        );
        let s = boot_sregs(BootProtocol::Linux64, kvm_sregs::default());
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4_START);
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, 8));
        assert_eq!((s.ss.selector, s.tr.selector), (16, 24));
    }

    #[test]
    fn pvh_entry_is_flat_32bit_protected_mode_without_paging() {
        let regs = boot_regs(entry(BootProtocol::Pvh));
        assert_eq!((regs.rip, regs.rbx), (0x10_0000, PVH_INFO_START));
        let s = boot_sregs(BootProtocol::Pvh, kvm_sregs::default());
        assert_eq!((s.cr0 & X86_CR0_PE, s.cr0 & X86_CR0_PG), (1, 0));
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(
            (s.cs.l, s.cs.db, s.cs.limit, s.cs.base),
            (0, 1, 0xffff_ffff, 0)
        );
        assert_eq!((s.ds.db, s.ds.limit), (1, 0xffff_ffff));
    }

    #[test]
    fn gdt_in_memory_matches_the_loaded_segments() {
        let ram = GuestRam::new(4 << 20).unwrap();
        write_boot_tables(ram.memory(), BootProtocol::Pvh).unwrap();
        let s = boot_sregs(BootProtocol::Pvh, kvm_sregs::default());
        let code: u64 = ram
            .memory()
            .read_obj(GuestAddress(BOOT_GDT_START + u64::from(s.cs.selector)))
            .unwrap();
        assert_eq!(segment_from_gdt(code, GDT_CODE), s.cs);
    }
}
