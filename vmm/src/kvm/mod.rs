//! The KVM VM: creation, in-kernel irqchip and PIT, guest memory slots, and what the vCPUs need
//! from KVM (supported CPUID and MSR lists).

use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::interrupt::{InterruptError, InterruptManager};
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vfio_passthrough::pci::IntxDelivery;

use crate::hypervisor::Hypervisor;
use crate::interrupts::{EdgeIrq, KvmInterruptManager};
use crate::layout::{KVM_IDENTITY_MAP_START, KVM_TSS_START};
use crate::memory::GuestRam;
use crate::memory_slots::{MemorySlot, MemorySlotError, MemorySlots};

mod memslot;

/// An error from setting up the KVM VM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` could not be opened.
    #[error("failed to open /dev/kvm (is KVM available and accessible to this user?)")]
    Open(#[source] kvm_ioctls::Error),
    /// KVM lacks a capability the machine needs.
    #[error("KVM lacks the {0} capability this VMM needs")]
    MissingCap(&'static str),
    /// A VM-level ioctl failed.
    #[error("failed to {op} (KVM)")]
    Vm {
        /// What was being done.
        op: &'static str,
        /// The KVM error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest RAM could not be registered.
    #[error("failed to register guest RAM with KVM")]
    Ram(#[source] MemorySlotError),
    /// The interrupt routing could not be set up.
    #[error("failed to set up interrupt routing")]
    Interrupts(#[source] InterruptError),
    /// A vCPU could not be created.
    #[error("failed to create vCPU {id}")]
    CreateVcpu {
        /// The vCPU id.
        id: u32,
        /// The KVM error.
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn vm_op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Vm { op, source }
}

/// A KVM VM with an in-kernel irqchip, its RAM registered, and the interrupt manager on it.
#[derive(Debug)]
pub struct KvmHypervisor {
    kvm: Kvm,
    vm: Arc<VmFd>,
    // Held so RAM outlives the memory slots that point into it.
    ram: Arc<GuestRam>,
    interrupts: Arc<KvmInterruptManager>,
    slots: Mutex<MemorySlots>,
    supported_cpuid: CpuId,
    msr_index_list: Vec<u32>,
}

impl KvmHypervisor {
    /// Opens `/dev/kvm`, creates the VM with its irqchip and PIT, and registers `ram`.
    pub fn new(ram: Arc<GuestRam>) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        for (cap, name) in [
            (Cap::Irqchip, "IRQCHIP"),
            (Cap::Irqfd, "IRQFD"),
            (Cap::IrqRouting, "IRQ_ROUTING"),
            (Cap::UserMemory, "USER_MEMORY"),
            (Cap::SetTssAddr, "SET_TSS_ADDR"),
            (Cap::SetIdentityMapAddr, "SET_IDENTITY_MAP_ADDR"),
            (Cap::Pit2, "PIT2"),
            (Cap::ImmediateExit, "IMMEDIATE_EXIT"),
            (Cap::ExtCpuid, "EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let vm = kvm.create_vm().map_err(vm_op("create the VM"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP_START)
            .map_err(vm_op("set the identity map address"))?;
        vm.set_tss_address(KVM_TSS_START as usize)
            .map_err(vm_op("set the TSS address"))?;
        vm.create_irq_chip()
            .map_err(vm_op("create the in-kernel irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(vm_op("create the in-kernel PIT"))?;
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(vm_op("get the supported CPUID"))?;
        let msr_index_list = kvm
            .get_msr_index_list()
            .map_err(vm_op("get the MSR index list"))?
            .as_slice()
            .to_vec();

        let vm = Arc::new(vm);
        let regions = ram.regions();
        let slot_count = u32::try_from(kvm.get_nr_memslots()).unwrap_or(u32::MAX);
        let ram_slots = regions.len() as u32;
        let ranges = regions.iter().map(|r| (r.guest_addr.0, r.size)).collect();
        let slots = MemorySlots::new(ram_slots, slot_count, ranges);
        for (id, region) in regions.iter().enumerate() {
            let slot = MemorySlot {
                id: id as u32,
                guest_addr: region.guest_addr.0,
                size: region.size,
                host_addr: region.host_addr,
                read_only: false,
            };
            // SAFETY: the region is a mapping owned by `ram`, which this hypervisor keeps alive,
            // and `Drop` deletes the slot before letting go of it.
            unsafe { memslot::set(&vm, &slot) }.map_err(KvmError::Ram)?;
        }
        let interrupts =
            Arc::new(KvmInterruptManager::new(vm.clone()).map_err(KvmError::Interrupts)?);
        Ok(Self {
            kvm,
            vm,
            ram,
            interrupts,
            slots: Mutex::new(slots),
            supported_cpuid,
            msr_index_list,
        })
    }

    /// The VM.
    pub fn vm(&self) -> &Arc<VmFd> {
        &self.vm
    }

    /// Guest RAM as registered with KVM.
    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// The CPUID leaves KVM can expose (`KVM_GET_SUPPORTED_CPUID`).
    pub fn supported_cpuid(&self) -> &CpuId {
        &self.supported_cpuid
    }

    /// The MSRs KVM saves and restores for a vCPU (`KVM_GET_MSR_INDEX_LIST`).
    pub fn msr_index_list(&self) -> &[u32] {
        &self.msr_index_list
    }

    /// The most vCPUs this KVM supports in one VM.
    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    /// Creates vCPU `id`.
    pub fn create_vcpu(&self, id: u32) -> Result<VcpuFd, KvmError> {
        self.vm
            .create_vcpu(u64::from(id))
            .map_err(|source| KvmError::CreateVcpu { id, source })
    }
}

impl Hypervisor for KvmHypervisor {
    fn interrupt_manager(&self) -> Arc<dyn InterruptManager> {
        self.interrupts.clone()
    }

    fn intx_delivery(&self) -> IntxDelivery {
        // INTx lines are irqfds with KVM_IRQFD_FLAG_RESAMPLE: VFIO raises them and KVM's
        // resample eventfd unmasks INTx in the host, with no userspace hop.
        IntxDelivery::Irqfd
    }

    fn create_edge_irq(&self, gsi: u32) -> Result<Arc<dyn EdgeIrq>, InterruptError> {
        self.interrupts.create_edge_irq(gsi)
    }

    unsafe fn map_memory(
        &self,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<MemorySlot, MemorySlotError> {
        let mut slots = lock(&self.slots);
        let slot = slots.prepare(guest_addr, size, host_addr, read_only)?;
        // SAFETY: the caller guarantees the host range stays mapped until the slot is removed or
        // this hypervisor is dropped, and `Drop` deletes every slot.
        unsafe { memslot::set(&self.vm, &slot) }?;
        slots.commit(slot);
        Ok(slot)
    }

    fn unmap_memory(&self, id: u32) -> Result<MemorySlot, MemorySlotError> {
        let mut slots = lock(&self.slots);
        let slot = slots.get(id)?;
        memslot::delete(&self.vm, &slot)?;
        slots.remove(id)
    }
}

impl Drop for KvmHypervisor {
    fn drop(&mut self) {
        // Interrupt groups may keep the VM fd open after this; make sure no slot of it still
        // points at memory that is about to be unmapped.
        let slots = lock(&self.slots);
        let extra: Vec<MemorySlot> = slots.iter().copied().collect();
        let ram = self
            .ram
            .regions()
            .into_iter()
            .enumerate()
            .map(|(id, r)| MemorySlot {
                id: id as u32,
                guest_addr: r.guest_addr.0,
                size: r.size,
                host_addr: r.host_addr,
                read_only: false,
            });
        for slot in extra.into_iter().chain(ram) {
            if let Err(e) = memslot::delete(&self.vm, &slot) {
                log::warn!("{e}");
            }
        }
    }
}
