//! MSI / MSI-X vectors on KVM: one GSI route and one irqfd per vector.
//!
//! Masking deassigns the vector's irqfd rather than changing the route: writes to the eventfd
//! (from VFIO or from [`trigger`](InterruptSourceGroup::trigger)) then accumulate in the eventfd
//! counter, and when the vector is unmasked KVM finds the eventfd already signalled as the irqfd
//! is assigned and injects it at once (`kvm_irqfd_assign` polls the eventfd after hooking its
//! wait queue). That is the pending-bit behaviour of a masked MSI-X vector, with no userspace hop.
//! The pending bit itself, for the PBA, is whether the deassigned vector's eventfd is readable.

use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::interrupt::{InterruptError, InterruptSourceGroup, MsiMessage};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::kvm_manager::KvmRouter;
use super::{eventfd_is_signalled, host_error};

#[derive(Debug)]
struct Vector {
    gsi: u32,
    eventfd: EventFd,
    state: Mutex<VectorState>,
}

#[derive(Debug, Default)]
struct VectorState {
    msg: Option<MsiMessage>,
    irqfd_assigned: bool,
}

/// A group of MSI or MSI-X vectors of one device.
#[derive(Debug)]
pub(super) struct KvmMsiGroup {
    router: Arc<KvmRouter>,
    vectors: Vec<Vector>,
}

impl KvmMsiGroup {
    /// Allocates `count` GSIs and eventfds; every vector starts masked and unrouted.
    pub(super) fn new(router: Arc<KvmRouter>, count: u32) -> Result<Self, InterruptError> {
        let gsis = router.update(0, |routes| (routes.allocate_msi(count), false))??;
        let mut vectors = Vec::with_capacity(gsis.len());
        for (index, &gsi) in gsis.iter().enumerate() {
            match EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC) {
                Ok(eventfd) => vectors.push(Vector {
                    gsi,
                    eventfd,
                    state: Mutex::new(VectorState::default()),
                }),
                Err(e) => {
                    router.update(0, |routes| {
                        routes.release_msi(&gsis);
                        ((), false)
                    })?;
                    return Err(host_error("create eventfd for", index as u32, e));
                }
            }
        }
        Ok(Self { router, vectors })
    }

    fn vector(&self, index: u32) -> Result<&Vector, InterruptError> {
        self.vectors
            .get(index as usize)
            .ok_or(InterruptError::InvalidVector {
                index,
                len: self.len(),
            })
    }
}

impl InterruptSourceGroup for KvmMsiGroup {
    fn len(&self) -> u32 {
        self.vectors.len() as u32
    }

    fn trigger(&self, index: u32) -> Result<(), InterruptError> {
        self.vector(index)?
            .eventfd
            .write(1)
            .map_err(|e| host_error("raise", index, e))
    }

    fn notifier(&self, index: u32) -> Option<&EventFd> {
        self.vectors.get(index as usize).map(|v| &v.eventfd)
    }

    fn update(&self, index: u32, msg: MsiMessage, masked: bool) -> Result<(), InterruptError> {
        let vector = self.vector(index)?;
        let vm = self.router.vm();
        let mut state = lock(&vector.state);
        // Deassign before rerouting so a masked vector never fires with either message.
        if masked && state.irqfd_assigned {
            vm.unregister_irqfd(&vector.eventfd, vector.gsi)
                .map_err(|e| host_error("mask", index, e))?;
            state.irqfd_assigned = false;
        }
        if state.msg != Some(msg) {
            self.router
                .update(index, |routes| ((), routes.set_msi(vector.gsi, msg)))?;
            state.msg = Some(msg);
        }
        // Assign after rerouting so a pending interrupt is delivered to the new message.
        if !masked && !state.irqfd_assigned {
            vm.register_irqfd(&vector.eventfd, vector.gsi)
                .map_err(|e| host_error("unmask", index, e))?;
            state.irqfd_assigned = true;
        }
        Ok(())
    }

    fn pending(&self, index: u32) -> bool {
        // With its irqfd assigned KVM consumes every write at once; without it, a write stays in
        // the eventfd until the unmask assigns the irqfd again.
        self.vectors
            .get(index as usize)
            .is_some_and(|v| !lock(&v.state).irqfd_assigned && eventfd_is_signalled(&v.eventfd))
    }
}

impl Drop for KvmMsiGroup {
    fn drop(&mut self) {
        let vm = self.router.vm();
        for (index, vector) in self.vectors.iter().enumerate() {
            if lock(&vector.state).irqfd_assigned {
                if let Err(e) = vm.unregister_irqfd(&vector.eventfd, vector.gsi) {
                    log::warn!(
                        "failed to deassign irqfd of MSI vector {index} (GSI {}): {e}",
                        vector.gsi
                    );
                }
            }
        }
        let gsis: Vec<u32> = self.vectors.iter().map(|v| v.gsi).collect();
        let released = self.router.update(0, |routes| {
            let routed = gsis.iter().any(|&g| !routes.routes(g).is_empty());
            routes.release_msi(&gsis);
            ((), routed)
        });
        if let Err(e) = released {
            log::warn!("failed to remove the routes of a dropped MSI group: {e}");
        }
    }
}
