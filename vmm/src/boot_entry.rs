//! How the loader hands a loaded kernel to the vCPU set-up: the entry address and the boot
//! protocol that decides the initial CPU state.

use vm_memory::GuestAddress;

/// The CPU state a kernel expects at its entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Linux 64-bit boot protocol (and our test guest): long mode with identity paging of the
    /// first 4 GiB, `RSI` = guest physical address of `boot_params` (the zero page).
    Linux64,
    /// Xen PVH: 32-bit protected mode, paging off, `EBX` = address of `hvm_start_info`.
    Pvh,
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPoint {
    /// Guest physical address of the first instruction.
    pub addr: GuestAddress,
    /// The protocol the kernel was loaded for.
    pub protocol: BootProtocol,
}
