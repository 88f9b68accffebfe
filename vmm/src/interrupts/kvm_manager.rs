//! The [`InterruptManager`] of a KVM machine: owns the GSI routing table and hands out MSI
//! groups, INTx lines and platform edge lines backed by irqfds.

use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::interrupt::{InterruptError, InterruptManager, InterruptSourceGroup, LegacyIrq};
use kvm_ioctls::VmFd;

use super::gsi_routes::GsiRoutes;
use super::kvm_lines::{KvmEdgeIrq, KvmLegacyIrq};
use super::kvm_msi::KvmMsiGroup;
use super::{EdgeIrq, host_error};
use crate::layout::IOAPIC_PINS;

/// The VM and its routing table, shared by the manager and every group it created.
#[derive(Debug)]
pub(super) struct KvmRouter {
    vm: Arc<VmFd>,
    routes: Mutex<GsiRoutes>,
}

impl KvmRouter {
    pub(super) fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// Applies `change` to the routing table and commits it to KVM if it reports a change. If
    /// KVM refuses the new table, the old one stays in force, in KVM and here.
    pub(super) fn update<T>(
        &self,
        index: u32,
        change: impl FnOnce(&mut GsiRoutes) -> (T, bool),
    ) -> Result<T, InterruptError> {
        let mut routes = lock(&self.routes);
        let mut next = routes.clone();
        let (value, changed) = change(&mut next);
        if changed {
            self.commit(&next, index)?;
            *routes = next;
        }
        Ok(value)
    }

    fn commit(&self, routes: &GsiRoutes, index: u32) -> Result<(), InterruptError> {
        self.vm
            .set_gsi_routing(&routes.to_kvm())
            .map_err(|e| host_error("route", index, e))
    }
}

/// Interrupts on an in-kernel irqchip (PIC + I/O APIC + local APICs).
#[derive(Debug)]
pub struct KvmInterruptManager {
    router: Arc<KvmRouter>,
}

impl KvmInterruptManager {
    /// Takes over GSI routing of `vm` (which must have an in-kernel irqchip) and commits the
    /// default table.
    pub fn new(vm: Arc<VmFd>) -> Result<Self, InterruptError> {
        let router = Arc::new(KvmRouter {
            vm,
            routes: Mutex::new(GsiRoutes::new()),
        });
        router.commit(&lock(&router.routes), 0)?;
        Ok(Self { router })
    }

    /// Creates an edge-triggered platform line on I/O APIC input `gsi`.
    pub fn create_edge_irq(&self, gsi: u32) -> Result<Arc<dyn EdgeIrq>, InterruptError> {
        check_ioapic_gsi(gsi)?;
        Ok(Arc::new(KvmEdgeIrq::new(self.router.vm.clone(), gsi)?))
    }
}

fn check_ioapic_gsi(gsi: u32) -> Result<(), InterruptError> {
    if gsi >= IOAPIC_PINS {
        return Err(InterruptError::InvalidVector {
            index: gsi,
            len: IOAPIC_PINS,
        });
    }
    Ok(())
}

impl InterruptManager for KvmInterruptManager {
    fn create_msi_group(
        &self,
        count: u32,
    ) -> Result<Arc<dyn InterruptSourceGroup>, InterruptError> {
        Ok(Arc::new(KvmMsiGroup::new(self.router.clone(), count)?))
    }

    fn create_legacy_irq(&self, gsi: u32) -> Result<Arc<dyn LegacyIrq>, InterruptError> {
        check_ioapic_gsi(gsi)?;
        Ok(Arc::new(KvmLegacyIrq::new(self.router.vm.clone(), gsi)?))
    }
}
