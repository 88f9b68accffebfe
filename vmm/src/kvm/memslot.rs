//! `KVM_SET_USER_MEMORY_REGION` for one [`MemorySlot`].

use kvm_bindings::{KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;

use crate::memory_slots::{MemorySlot, MemorySlotError};

fn region(slot: &MemorySlot, size: u64) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region {
        slot: slot.id,
        flags: if slot.read_only { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: slot.guest_addr,
        memory_size: size,
        userspace_addr: slot.host_addr,
    }
}

/// Creates (or replaces) the slot in KVM.
///
/// # Safety
///
/// `slot.host_addr..+slot.size` must be mapped in this process and stay so until the slot is
/// deleted.
pub(super) unsafe fn set(vm: &VmFd, slot: &MemorySlot) -> Result<(), MemorySlotError> {
    // SAFETY: the caller guarantees the host range outlives the slot.
    unsafe { vm.set_user_memory_region(region(slot, slot.size)) }.map_err(|e| {
        MemorySlotError::Hypervisor {
            op: "create",
            id: slot.id,
            source: e.into(),
        }
    })
}

/// Deletes the slot from KVM (a region of size zero).
pub(super) fn delete(vm: &VmFd, slot: &MemorySlot) -> Result<(), MemorySlotError> {
    // SAFETY: a zero-sized region deletes the slot; KVM no longer touches the host range.
    unsafe { vm.set_user_memory_region(region(slot, 0)) }.map_err(|e| MemorySlotError::Hypervisor {
        op: "delete",
        id: slot.id,
        source: e.into(),
    })
}
