//! The GSI routing table the VMM keeps and commits to KVM as a whole, and the pool of GSIs MSI
//! vectors use (a `resources::IdPool`).
//!
//! `KVM_SET_GSI_ROUTING` replaces the entire table, including the default routes of the in-kernel
//! PIC and I/O APIC, so the VMM must own the full table and re-send it on every change.

use std::collections::BTreeMap;

use devices::interrupt::{InterruptError, MsiMessage};
use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KvmIrqRouting, kvm_irq_routing_entry, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi,
};

use resources::{IdKind, IdPool};

use crate::layout::{IOAPIC_PINS, MSI_GSI_START};

/// The PIT's GSI, and the I/O APIC input it is wired to on a PC (the MADT says so with an
/// interrupt source override).
const PIT_GSI: u32 = 0;
const PIT_IOAPIC_PIN: u32 = 2;
/// The slave PIC's cascade into master input 2: not an interrupt source of its own.
const PIC_CASCADE_GSI: u32 = 2;

/// KVM's limit on routing entries, and so on GSI numbers (`KVM_MAX_IRQ_ROUTES`).
const MAX_ROUTES: u32 = kvm_bindings::KVM_MAX_IRQ_ROUTES as u32;

/// Where a GSI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An input pin of an in-kernel interrupt controller (`KVM_IRQCHIP_*`).
    Irqchip {
        /// The controller.
        chip: u32,
        /// The input pin.
        pin: u32,
    },
    /// An MSI message written to the local APICs.
    Msi(MsiMessage),
}

/// The routing table and the MSI GSI pool.
#[derive(Debug, Clone)]
pub struct GsiRoutes {
    routes: BTreeMap<u32, Vec<Route>>,
    msi_gsis: IdPool,
}

impl Default for GsiRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl GsiRoutes {
    /// A table with the PC's ISA wiring (as QEMU sets it up for KVM): GSIs 0-15 to both PICs
    /// and the I/O APIC, except that GSI 0 (the PIT) reaches I/O APIC input 2, matching the
    /// MADT's interrupt source override, and GSI 2 (the PIC cascade) has no route; GSIs 16-23
    /// go to the I/O APIC only. MSI GSIs run from [`MSI_GSI_START`] up to KVM's limit.
    pub fn new() -> Self {
        Self::with_msi_limit(MAX_ROUTES)
    }

    /// Like [`new`](Self::new), with MSI GSIs ending (exclusive) at `msi_end` (at most KVM's
    /// limit, at least one GSI).
    pub fn with_msi_limit(msi_end: u32) -> Self {
        let mut routes = BTreeMap::new();
        for gsi in (0..IOAPIC_PINS).filter(|&gsi| gsi != PIC_CASCADE_GSI) {
            let mut r = Vec::with_capacity(2);
            match gsi {
                0..8 => r.push(Route::Irqchip {
                    chip: KVM_IRQCHIP_PIC_MASTER,
                    pin: gsi,
                }),
                8..16 => r.push(Route::Irqchip {
                    chip: KVM_IRQCHIP_PIC_SLAVE,
                    pin: gsi - 8,
                }),
                _ => {}
            }
            r.push(Route::Irqchip {
                chip: KVM_IRQCHIP_IOAPIC,
                pin: if gsi == PIT_GSI { PIT_IOAPIC_PIN } else { gsi },
            });
            routes.insert(gsi, r);
        }
        // KVM takes at most KVM_MAX_IRQ_ROUTES entries in all: with one entry per MSI GSI, the
        // MSI GSIs must leave room for the interrupt controllers' entries.
        let irqchip_entries: usize = routes.values().map(Vec::len).sum();
        let entries_left = MAX_ROUTES - irqchip_entries as u32;
        let end = msi_end.min(MSI_GSI_START + entries_left);
        let last = end.max(MSI_GSI_START + 1) - 1;
        Self {
            routes,
            msi_gsis: IdPool::new(IdKind::Gsi, MSI_GSI_START, last)
                .expect("MSI GSI range is non-empty by construction"),
        }
    }

    /// Reserves `count` GSIs for MSI vectors, all or none. They have no route until
    /// [`set_msi`](Self::set_msi).
    pub fn allocate_msi(&mut self, count: u32) -> Result<Vec<u32>, InterruptError> {
        let mut gsis = Vec::with_capacity(count as usize);
        for _ in 0..count {
            match self.msi_gsis.alloc() {
                Ok(gsi) => gsis.push(gsi),
                Err(_) => {
                    for gsi in gsis {
                        // Just allocated above, so freeing cannot fail.
                        let _ = self.msi_gsis.free(gsi);
                    }
                    return Err(InterruptError::Exhausted { count });
                }
            }
        }
        Ok(gsis)
    }

    /// Returns MSI GSIs to the pool and drops their routes. GSIs that are not allocated MSI GSIs
    /// (I/O APIC inputs, unknown numbers) are left alone.
    pub fn release_msi(&mut self, gsis: &[u32]) {
        for &gsi in gsis {
            if self.msi_gsis.free(gsi).is_ok() {
                self.routes.remove(&gsi);
            }
        }
    }

    /// Routes `gsi` to `msg`. Returns whether the table changed.
    pub fn set_msi(&mut self, gsi: u32, msg: MsiMessage) -> bool {
        let new = vec![Route::Msi(msg)];
        if self.routes.get(&gsi) == Some(&new) {
            return false;
        }
        self.routes.insert(gsi, new);
        true
    }

    /// The routes of `gsi`.
    pub fn routes(&self, gsi: u32) -> &[Route] {
        self.routes.get(&gsi).map_or(&[], Vec::as_slice)
    }

    /// The table as KVM takes it.
    pub fn to_kvm(&self) -> KvmIrqRouting {
        let entries: Vec<kvm_irq_routing_entry> = self
            .routes
            .iter()
            .flat_map(|(&gsi, routes)| routes.iter().map(move |r| kvm_entry(gsi, r)))
            .collect();
        // The table holds at most one entry per GSI below KVM's limit, plus the 16 PIC entries,
        // and KVM's limit is also the wrapper's capacity.
        KvmIrqRouting::from_entries(&entries).expect("routing table within KVM_MAX_IRQ_ROUTES")
    }
}

fn kvm_entry(gsi: u32, route: &Route) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        ..Default::default()
    };
    match *route {
        Route::Irqchip { chip, pin } => {
            entry.type_ = KVM_IRQ_ROUTING_IRQCHIP;
            entry.u.irqchip = kvm_irq_routing_irqchip { irqchip: chip, pin };
        }
        Route::Msi(msg) => {
            entry.type_ = KVM_IRQ_ROUTING_MSI;
            entry.u.msi = kvm_irq_routing_msi {
                address_lo: msg.address as u32,
                address_hi: (msg.address >> 32) as u32,
                data: msg.data,
                ..Default::default()
            };
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(data: u32) -> MsiMessage {
        MsiMessage {
            address: 0xfee0_1000,
            data,
        }
    }

    #[test]
    fn default_table_wires_isa_gsis_like_a_pc() {
        let t = GsiRoutes::new();
        assert_eq!(
            t.routes(9),
            &[
                Route::Irqchip {
                    chip: KVM_IRQCHIP_PIC_SLAVE,
                    pin: 1
                },
                Route::Irqchip {
                    chip: KVM_IRQCHIP_IOAPIC,
                    pin: 9
                }
            ]
        );
        assert_eq!(
            t.routes(20),
            &[Route::Irqchip {
                chip: KVM_IRQCHIP_IOAPIC,
                pin: 20
            }]
        );
        // The PIT on GSI 0 reaches I/O APIC input 2; the cascade GSI has no route.
        assert_eq!(
            t.routes(0),
            &[
                Route::Irqchip {
                    chip: KVM_IRQCHIP_PIC_MASTER,
                    pin: 0
                },
                Route::Irqchip {
                    chip: KVM_IRQCHIP_IOAPIC,
                    pin: 2
                }
            ]
        );
        assert!(t.routes(2).is_empty());
        // 15 PIC entries plus 23 I/O APIC entries.
        assert_eq!(t.to_kvm().as_slice().len(), 38);
    }

    #[test]
    fn msi_gsis_start_above_the_ioapic_and_are_reused_after_release() {
        let mut t = GsiRoutes::new();
        let a = t.allocate_msi(3).unwrap();
        assert_eq!(a, vec![MSI_GSI_START, MSI_GSI_START + 1, MSI_GSI_START + 2]);
        t.release_msi(&a[1..2]);
        assert_eq!(
            t.allocate_msi(2).unwrap(),
            vec![MSI_GSI_START + 1, MSI_GSI_START + 3]
        );
    }

    #[test]
    fn allocation_beyond_the_limit_fails_and_takes_nothing() {
        let mut t = GsiRoutes::with_msi_limit(MSI_GSI_START + 4);
        t.allocate_msi(3).unwrap();
        assert!(matches!(
            t.allocate_msi(2),
            Err(InterruptError::Exhausted { count: 2 })
        ));
        assert_eq!(t.allocate_msi(1).unwrap(), vec![MSI_GSI_START + 3]);
    }

    #[test]
    fn msi_route_becomes_a_kvm_msi_entry() {
        let mut t = GsiRoutes::new();
        let gsi = t.allocate_msi(1).unwrap()[0];
        let m = MsiMessage {
            address: 0x1_fee0_2000,
            data: 0x4041,
        };
        assert!(t.set_msi(gsi, m));
        assert!(!t.set_msi(gsi, m), "same message again changes nothing");
        let table = t.to_kvm();
        let entry = table.as_slice().iter().find(|e| e.gsi == gsi).unwrap();
        assert_eq!(entry.type_, KVM_IRQ_ROUTING_MSI);
        // SAFETY: `type_` says the union holds the MSI variant.
        let msi = unsafe { entry.u.msi };
        assert_eq!(
            (msi.address_lo, msi.address_hi, msi.data),
            (0xfee0_2000, 1, 0x4041)
        );
    }

    #[test]
    fn every_msi_gsi_routed_still_fits_one_kvm_table() {
        let mut t = GsiRoutes::new();
        let mut gsis = Vec::new();
        while let Ok(mut more) = t.allocate_msi(1) {
            gsis.append(&mut more);
        }
        for &gsi in &gsis {
            t.set_msi(gsi, msg(0x30));
        }
        assert!(gsis.iter().all(|&g| g < MAX_ROUTES));
        assert_eq!(t.to_kvm().as_slice().len(), MAX_ROUTES as usize);
    }

    #[test]
    fn released_gsi_loses_its_route() {
        let mut t = GsiRoutes::new();
        let gsi = t.allocate_msi(1).unwrap()[0];
        t.set_msi(gsi, msg(0x30));
        t.release_msi(&[gsi]);
        assert!(t.routes(gsi).is_empty());
        assert_eq!(t.to_kvm().as_slice().len(), 38);
    }

    #[test]
    fn ioapic_gsis_cannot_be_released_into_the_msi_pool() {
        let mut t = GsiRoutes::new();
        t.release_msi(&[4]);
        assert_eq!(t.routes(4).len(), 2);
        assert_eq!(t.allocate_msi(1).unwrap(), vec![MSI_GSI_START]);
    }
}
