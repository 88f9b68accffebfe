//! I/O APIC lines on KVM: level-triggered PCI INTx with a resample eventfd, and edge-triggered
//! platform lines.

use std::sync::Arc;

use devices::interrupt::{InterruptError, LegacyIrq};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::{EdgeIrq, host_error};

fn new_eventfd(gsi: u32) -> Result<EventFd, InterruptError> {
    EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(|e| host_error("create eventfd for", gsi, e))
}

/// A PCI INTx line: an irqfd with `KVM_IRQFD_FLAG_RESAMPLE`, so KVM holds the line asserted
/// until the guest's EOI, then lowers it and signals the resample eventfd (for VFIO, its INTx
/// unmask eventfd).
#[derive(Debug)]
pub(super) struct KvmLegacyIrq {
    vm: Arc<VmFd>,
    gsi: u32,
    trigger: EventFd,
    resample: EventFd,
}

impl KvmLegacyIrq {
    pub(super) fn new(vm: Arc<VmFd>, gsi: u32) -> Result<Self, InterruptError> {
        let trigger = new_eventfd(gsi)?;
        let resample = new_eventfd(gsi)?;
        vm.register_irqfd_with_resample(&trigger, &resample, gsi)
            .map_err(|e| host_error("wire", gsi, e))?;
        Ok(Self {
            vm,
            gsi,
            trigger,
            resample,
        })
    }
}

impl LegacyIrq for KvmLegacyIrq {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> Result<(), InterruptError> {
        self.trigger
            .write(1)
            .map_err(|e| host_error("raise", self.gsi, e))
    }

    fn notifier(&self) -> &EventFd {
        &self.trigger
    }

    fn resample_notifier(&self) -> &EventFd {
        &self.resample
    }
}

impl Drop for KvmLegacyIrq {
    fn drop(&mut self) {
        if let Err(e) = self.vm.unregister_irqfd(&self.trigger, self.gsi) {
            log::warn!("failed to deassign the INTx irqfd of GSI {}: {e}", self.gsi);
        }
    }
}

/// A platform line: a plain irqfd, which KVM turns into a pulse (assert, deassert) per write,
/// i.e. one edge.
#[derive(Debug)]
pub(super) struct KvmEdgeIrq {
    vm: Arc<VmFd>,
    gsi: u32,
    trigger: EventFd,
}

impl KvmEdgeIrq {
    pub(super) fn new(vm: Arc<VmFd>, gsi: u32) -> Result<Self, InterruptError> {
        let trigger = new_eventfd(gsi)?;
        vm.register_irqfd(&trigger, gsi)
            .map_err(|e| host_error("wire", gsi, e))?;
        Ok(Self { vm, gsi, trigger })
    }
}

impl EdgeIrq for KvmEdgeIrq {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> Result<(), InterruptError> {
        self.trigger
            .write(1)
            .map_err(|e| host_error("raise", self.gsi, e))
    }

    fn notifier(&self) -> &EventFd {
        &self.trigger
    }
}

impl Drop for KvmEdgeIrq {
    fn drop(&mut self) {
        if let Err(e) = self.vm.unregister_irqfd(&self.trigger, self.gsi) {
            log::warn!("failed to deassign the irqfd of GSI {}: {e}", self.gsi);
        }
    }
}
