//! [`BarSlots`]: a passthrough device's mmapped BAR areas as hypervisor memory slots, at BAR base
//! + offset while the BAR decodes, so the guest reaches device memory without exits.
//!
//! The slots follow the guest's BAR programming through the PCI bus's relocation sink
//! ([`DirectMappedBars`]): mapped when a BAR starts decoding, moved with it, removed when it
//! stops. An area the hypervisor refuses (the guest put the BAR over RAM or another mapping)
//! stays unmapped, and its accesses are trapped and forwarded like any other.
//!
//! The slots point into mappings the [`VfioPciDevice`] owns. `BarSlots` holds the device, and
//! removes every slot before letting go of it, so no slot outlives the memory it maps.

use std::fmt;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use vfio_passthrough::pci::VfioPciDevice;

use crate::hypervisor::Hypervisor;
use crate::memory_slots::MemorySlot;
use crate::pci::DirectMappedBars;

/// One mmapped BAR area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarArea {
    /// The BAR index.
    pub index: usize,
    /// Offset of the area in the BAR.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Address of the mapping in the VMM.
    pub host_addr: u64,
    /// Whether the guest may write it directly.
    pub writable: bool,
}

/// The memory slots of one passthrough device's BAR areas.
pub struct BarSlots {
    name: String,
    hypervisor: Arc<dyn Hypervisor>,
    areas: Vec<BarArea>,
    /// Per area (same order as `areas`): its slot while mapped.
    slots: Mutex<Vec<Option<MemorySlot>>>,
    /// Owns the mappings the slots point into; kept until every slot is gone (see `Drop`).
    _owner: Arc<Mutex<VfioPciDevice>>,
}

impl fmt::Debug for BarSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarSlots")
            .field("name", &self.name)
            .field("areas", &self.areas)
            .field("slots", &*lock(&self.slots))
            .finish_non_exhaustive()
    }
}

impl BarSlots {
    /// The slots of `device`'s mmap areas, none mapped yet.
    pub fn new(hypervisor: Arc<dyn Hypervisor>, device: Arc<Mutex<VfioPciDevice>>) -> Self {
        let (name, areas) = {
            let dev = lock(&device);
            let areas: Vec<BarArea> = dev
                .mmap_areas()
                .iter()
                .map(|m| BarArea {
                    index: m.index(),
                    offset: m.offset(),
                    len: m.area().len() as u64,
                    host_addr: m.area().as_ptr() as u64,
                    writable: m.writable(),
                })
                .collect();
            (dev.name().to_string(), areas)
        };
        Self {
            name,
            hypervisor,
            slots: Mutex::new(vec![None; areas.len()]),
            areas,
            _owner: device,
        }
    }

    /// The device's mmapped areas.
    pub fn areas(&self) -> &[BarArea] {
        &self.areas
    }

    /// The slots mapped now.
    pub fn mapped(&self) -> Vec<MemorySlot> {
        lock(&self.slots).iter().flatten().copied().collect()
    }

    /// Removes every slot (the device is leaving the machine).
    pub fn clear(&self) {
        let mut slots = lock(&self.slots);
        for slot in slots.iter_mut() {
            self.remove(slot);
        }
    }

    fn remove(&self, slot: &mut Option<MemorySlot>) {
        if let Some(s) = slot.take() {
            if let Err(e) = self.hypervisor.unmap_memory(s.id) {
                log::error!(
                    "{}: removing the memory slot of [{:#x}, +{:#x}) failed: {e}",
                    self.name,
                    s.guest_addr,
                    s.size
                );
            }
        }
    }
}

impl DirectMappedBars for BarSlots {
    fn decoding(&self, index: usize, base: Option<u64>) {
        let mut slots = lock(&self.slots);
        for (area, slot) in self.areas.iter().zip(slots.iter_mut()) {
            if area.index != index {
                continue;
            }
            self.remove(slot);
            let Some(guest_addr) = base.and_then(|b| b.checked_add(area.offset)) else {
                continue;
            };
            // SAFETY: the area is a mapping owned by the `VfioPciDevice` in `self._owner`, which
            // `self` keeps alive; every slot is removed (here, in `clear` or in `Drop`) before
            // `self` lets go of the device, so the host range outlives the slot.
            let mapped = unsafe {
                self.hypervisor
                    .map_memory(guest_addr, area.len, area.host_addr, !area.writable)
            };
            match mapped {
                Ok(s) => *slot = Some(s),
                Err(e) => log::warn!(
                    "{}: BAR {index} area [{:#x}, +{:#x}) not mapped at {guest_addr:#x}, its \
                     accesses will be trapped: {e}",
                    self.name,
                    area.offset,
                    area.len
                ),
            }
        }
    }
}

impl Drop for BarSlots {
    fn drop(&mut self) {
        // Fields drop after this, so `_owner` (maybe the device's last owner, whose drop
        // unmaps the areas) goes only once no slot points into them.
        self.clear();
    }
}
