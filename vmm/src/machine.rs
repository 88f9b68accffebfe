//! The KVM machine: guest RAM, the KVM VM, the devices ([`MachineCore`]) and the vCPUs, booted at
//! an [`EntryPoint`] and run until the guest powers off, resets or fails.

use std::sync::Arc;
use std::time::Duration;

use vm_memory::GuestMemoryError;

use crate::assembly::{AssemblyError, DeviceConfig, MachineCore};
use crate::boot_entry::EntryPoint;
use crate::event_loop::{EventLoop, EventLoopError};
use crate::kvm::{KvmError, KvmHypervisor};
use crate::memory::{GuestRam, MemoryError};
use crate::power::ExitReason;
use crate::vcpu::{self, Vcpu, VcpuError, VcpuHandle};

/// The most vCPUs a machine may have: as many as the MADT describes (8-bit APIC ids, 0xff is
/// broadcast).
pub const MAX_VCPUS: u32 = crate::acpi::MAX_VCPUS as u32;

/// What machine to build.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory_size: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The devices.
    pub devices: DeviceConfig,
}

/// An error from building or running the machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The vCPU count is zero or above what the machine or KVM supports.
    #[error("cannot create {requested} vCPUs: the machine supports 1 to {max}")]
    VcpuCount {
        /// The count asked for.
        requested: u32,
        /// The largest supported count.
        max: u32,
    },
    /// Guest RAM could not be created.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// KVM could not be set up.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The devices could not be wired.
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
    /// The event loop could not be started.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
    /// A vCPU could not be set up or started.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The boot tables do not fit in guest RAM.
    #[error("failed to write the boot page tables and GDT into guest memory")]
    BootTables(#[source] GuestMemoryError),
    /// The vCPU kick signal handler could not be installed.
    #[error("failed to install the vCPU kick signal handler")]
    KickHandler(#[source] std::io::Error),
    /// `start` before `boot`.
    #[error("the machine has no entry point: boot it before starting it")]
    NotBooted,
    /// `start` or `boot` on a machine already started.
    #[error("the machine has already been started")]
    AlreadyStarted,
}

/// A KVM machine.
#[derive(Debug)]
pub struct Machine {
    // Declared first so the vCPU threads are stopped and joined (by `Drop`) while everything they
    // use still exists.
    running: Vec<VcpuHandle>,
    vcpus: Vec<Vcpu>,
    booted: bool,
    core: MachineCore,
    kvm: Arc<KvmHypervisor>,
}

impl Machine {
    /// Builds RAM, the VM, the devices and the vCPUs of `config`.
    pub fn new(config: &MachineConfig) -> Result<Self, MachineError> {
        // Checked before any allocation so a bad count costs nothing.
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(MachineError::VcpuCount {
                requested: config.vcpus,
                max: MAX_VCPUS,
            });
        }
        let ram = Arc::new(GuestRam::new(config.memory_size)?);
        let kvm = Arc::new(KvmHypervisor::new(ram.clone())?);
        let max = MAX_VCPUS.min(u32::try_from(kvm.max_vcpus()).unwrap_or(u32::MAX));
        if config.vcpus > max {
            return Err(MachineError::VcpuCount {
                requested: config.vcpus,
                max,
            });
        }
        vcpu::install_kick_handler().map_err(MachineError::KickHandler)?;
        let vcpus = (0..config.vcpus)
            .map(|id| Vcpu::new(&kvm, id, config.vcpus))
            .collect::<Result<Vec<_>, _>>()?;
        let core = MachineCore::assemble(ram, kvm.clone(), EventLoop::spawn()?, &config.devices)?;
        Ok(Self {
            running: Vec::new(),
            vcpus,
            booted: false,
            core,
            kvm,
        })
    }

    /// The devices, RAM, buses, interrupt manager, power state and event loop.
    pub fn core(&self) -> &MachineCore {
        &self.core
    }

    /// The KVM VM.
    pub fn kvm(&self) -> &Arc<KvmHypervisor> {
        &self.kvm
    }

    /// Sets the boot vCPU at `entry` (the loader's result) and writes the boot tables its
    /// protocol needs. The other vCPUs wait for the guest's INIT/SIPI.
    pub fn boot(&mut self, entry: EntryPoint) -> Result<(), MachineError> {
        if !self.running.is_empty() {
            return Err(MachineError::AlreadyStarted);
        }
        vcpu::write_boot_tables(self.core.ram().memory(), entry.protocol)
            .map_err(MachineError::BootTables)?;
        self.vcpus[0].set_boot_state(entry)?;
        self.booted = true;
        Ok(())
    }

    /// Starts every vCPU on its own thread.
    pub fn start(&mut self) -> Result<(), MachineError> {
        if !self.running.is_empty() {
            return Err(MachineError::AlreadyStarted);
        }
        if !self.booted {
            return Err(MachineError::NotBooted);
        }
        for vcpu in std::mem::take(&mut self.vcpus) {
            let handle = vcpu::spawn(vcpu, self.core.buses().clone(), self.core.power().clone());
            match handle {
                Ok(h) => self.running.push(h),
                Err(e) => {
                    self.stop();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Waits until the machine exits and returns why, or `None` if `timeout` passes first (the
    /// machine keeps running).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        self.core.power().wait(timeout)
    }

    /// Stops every vCPU and waits for their threads. Returns the exit reason, if the guest or a
    /// vCPU gave one before.
    pub fn stop(&mut self) -> Option<ExitReason> {
        let power = self.core.power();
        power.stop();
        for vcpu in &self.running {
            vcpu.kick();
        }
        for vcpu in self.running.drain(..) {
            vcpu.join();
        }
        power.exit_reason()
    }

    /// Boots at `entry`, runs until the guest exits, stops the vCPUs and returns the reason.
    pub fn run(mut self, entry: EntryPoint) -> Result<ExitReason, MachineError> {
        self.boot(entry)?;
        self.start()?;
        let reason = self.core.power().wait_for_exit();
        self.stop();
        Ok(reason)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.running.is_empty() {
            self.stop();
        }
    }
}
