//! vCPUs: creation and configuration (CPUID, MSRs, FPU, local APIC, boot registers), and the run
//! loop each vCPU thread executes.

use kvm_bindings::{Msrs, kvm_fpu};
use kvm_ioctls::VcpuFd;

use crate::boot_entry::EntryPoint;
use crate::kvm::{KvmError, KvmHypervisor};

mod boot_state;
mod cpuid;
mod gdt;
mod kick;
mod lapic;
mod msrs;
mod run_loop;

pub use boot_state::write_boot_tables;
pub use kick::install_handler as install_kick_handler;
pub use run_loop::{VcpuHandle, spawn};

/// x87 control word after FNINIT: all exceptions masked, 64-bit precision.
const FPU_CONTROL_WORD: u16 = 0x37f;
/// MXCSR at reset: all SSE exceptions masked.
const MXCSR_DEFAULT: u32 = 0x1f80;

/// An error from setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The vCPU could not be created.
    #[error(transparent)]
    Create(#[from] KvmError),
    /// A vCPU ioctl failed.
    #[error("failed to {op} of vCPU {id}")]
    Kvm {
        /// What was being done.
        op: &'static str,
        /// The vCPU.
        id: u32,
        /// The KVM error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM accepted only some of the boot MSRs.
    #[error("KVM refused MSR {index:#x} of vCPU {id}")]
    MsrRefused {
        /// The vCPU.
        id: u32,
        /// The first MSR KVM did not set.
        index: u32,
    },
    /// The vCPU thread could not be started.
    #[error("failed to start the thread of vCPU {id}")]
    Thread {
        /// The vCPU.
        id: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A configured vCPU, not yet running.
#[derive(Debug)]
pub struct Vcpu {
    id: u32,
    fd: VcpuFd,
}

impl Vcpu {
    /// Creates vCPU `id` of `count` and sets its CPUID, MSRs, FPU and local APIC.
    pub fn new(hv: &KvmHypervisor, id: u32, count: u32) -> Result<Self, VcpuError> {
        let fd = hv.create_vcpu(id)?;
        let vcpu = Self { id, fd };
        let op = |op| move |source| VcpuError::Kvm { op, id, source };

        let cpuid = cpuid::vcpu_cpuid(hv.supported_cpuid(), id, count);
        vcpu.fd.set_cpuid2(&cpuid).map_err(op("set the CPUID"))?;

        let entries = msrs::boot_msrs(hv.msr_index_list());
        let msr_list =
            Msrs::from_entries(&entries).expect("boot MSR list is far below KVM_MAX_MSR_ENTRIES");
        let set = vcpu.fd.set_msrs(&msr_list).map_err(op("set the MSRs"))?;
        if let Some(refused) = entries.get(set) {
            return Err(VcpuError::MsrRefused {
                id,
                index: refused.index,
            });
        }

        let fpu = kvm_fpu {
            fcw: FPU_CONTROL_WORD,
            mxcsr: MXCSR_DEFAULT,
            ..Default::default()
        };
        vcpu.fd.set_fpu(&fpu).map_err(op("set the FPU"))?;

        let mut apic = vcpu.fd.get_lapic().map_err(op("get the local APIC"))?;
        lapic::set_lint_modes(&mut apic);
        vcpu.fd.set_lapic(&apic).map_err(op("set the local APIC"))?;
        Ok(vcpu)
    }

    /// The vCPU id (also its APIC id).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Puts the vCPU at `entry` in the state its boot protocol expects. The boot tables must be
    /// in guest memory (see [`write_boot_tables`]).
    pub fn set_boot_state(&self, entry: EntryPoint) -> Result<(), VcpuError> {
        let id = self.id;
        let op = |op| move |source| VcpuError::Kvm { op, id, source };
        let sregs = self
            .fd
            .get_sregs()
            .map_err(op("get the special registers"))?;
        self.fd
            .set_sregs(&boot_state::boot_sregs(entry.protocol, sregs))
            .map_err(op("set the special registers"))?;
        self.fd
            .set_regs(&boot_state::boot_regs(entry))
            .map_err(op("set the registers"))
    }
}
