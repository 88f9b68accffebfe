//! [`DmaSpace`]: guest RAM as passed-through devices see it, IOVA = guest physical address, in
//! one host IOAS (iommufd) or type1 container.
//!
//! Every RAM region is mapped whole (RAM never moves while mapped), readable and writable:
//! through `IOMMU_IOAS_MAP_FILE` on the RAM memfd where the host has it (6.13+; the mapping then
//! holds the file, not our address space), else `IOMMU_IOAS_MAP` of the VMM's mapping of the
//! region, or `VFIO_IOMMU_MAP_DMA` for a container. [`sync`](DmaSpace::sync) keeps the mapped
//! set equal to [`GuestRam::regions`]: the VMM calls it at start and whenever regions are added
//! or removed.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::iommufd::uapi::{
    IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IoasAlloc,
    IoasMap, IoasMapFile, IoasUnmap,
};
use vfio_passthrough::host::type1::{Type1Container, Type1DmaMap, Type1DmaUnmap};

use crate::memory::{GuestRam, RamRegion};

/// Where the mappings go.
#[derive(Debug, Clone)]
pub enum DmaTarget {
    /// An IOAS of an iommufd context.
    Ioas {
        /// The context.
        ctx: Arc<dyn Iommufd>,
        /// The IOAS.
        ioas_id: u32,
    },
    /// A type1 container (every group in it shares its mappings).
    Container(Arc<dyn Type1Container>),
}

/// An error from mapping guest RAM for device DMA.
#[derive(Debug, thiserror::Error)]
pub enum DmaSpaceError {
    /// `IOMMU_IOAS_ALLOC` failed.
    #[error("failed to allocate an IOAS in the {backend} iommufd")]
    IoasAlloc {
        /// The backend ("emulated", "kernel").
        backend: &'static str,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// Mapping a RAM region failed.
    #[error(
        "failed to map guest RAM [{gpa:#x}, +{size:#x}) for device DMA ({backend} {how}){hint}",
        hint = dma_hint(*source)
    )]
    Map {
        /// The backend.
        backend: &'static str,
        /// The call used.
        how: &'static str,
        /// Guest physical address (= IOVA).
        gpa: u64,
        /// Length.
        size: u64,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// Unmapping a RAM region failed.
    #[error("failed to unmap guest RAM [{gpa:#x}, +{size:#x}) from device DMA ({backend})")]
    Unmap {
        /// The backend.
        backend: &'static str,
        /// Guest physical address.
        gpa: u64,
        /// Length.
        size: u64,
        /// The host error.
        #[source]
        source: Errno,
    },
    /// The region is not one of the machine's RAM regions.
    #[error("[{gpa:#x}, +{size:#x}) is not a region of guest RAM")]
    NotRam {
        /// Guest physical address.
        gpa: u64,
        /// Length.
        size: u64,
    },
    /// The region is mapped already.
    #[error("guest RAM [{gpa:#x}, +{size:#x}) is already mapped for device DMA")]
    AlreadyMapped {
        /// Guest physical address.
        gpa: u64,
        /// Length.
        size: u64,
    },
    /// The region is not mapped.
    #[error("guest RAM [{gpa:#x}, +{size:#x}) is not mapped for device DMA")]
    NotMapped {
        /// Guest physical address.
        gpa: u64,
        /// Length.
        size: u64,
    },
}

/// What a user can do about a failed map or attach: pinning guest RAM counts against
/// `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`; RAM at IOVA = guest address must lie
/// inside what the device's IOMMU translates and outside what it reserves.
pub(super) fn dma_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::ENOMEM => {
            " (pinned guest RAM counts against RLIMIT_MEMLOCK: raise it with ulimit -l, or run \
             with CAP_IPC_LOCK)"
        }
        Errno::EADDRINUSE => {
            " (guest RAM overlaps IOVAs the device's IOMMU reserves or cannot translate)"
        }
        _ => "",
    }
}

/// Guest RAM mapped for device DMA at IOVA = guest physical address.
pub struct DmaSpace {
    backend: &'static str,
    target: DmaTarget,
    /// Held so every mapped region's memory outlives its mapping.
    ram: Arc<GuestRam>,
    /// Mapped regions by guest address: their size.
    mapped: Mutex<BTreeMap<u64, u64>>,
    /// The host has no `IOMMU_IOAS_MAP_FILE` (it answered `ENOTTY`): map the VMM's mapping.
    no_map_file: AtomicBool,
}

impl fmt::Debug for DmaSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaSpace")
            .field("backend", &self.backend)
            .field("ioas_id", &self.ioas_id())
            .field("mapped", &*lock(&self.mapped))
            .finish_non_exhaustive()
    }
}

impl DmaSpace {
    /// A new IOAS in `ctx` (backend `backend`) with all of `ram` mapped; returns the space and
    /// the IOAS id devices attach to.
    pub fn ioas(
        backend: &'static str,
        ctx: Arc<dyn Iommufd>,
        ram: Arc<GuestRam>,
    ) -> Result<(Self, u32), DmaSpaceError> {
        let mut alloc = IoasAlloc::default();
        ctx.ioas_alloc(&mut alloc)
            .map_err(|source| DmaSpaceError::IoasAlloc { backend, source })?;
        let ioas_id = alloc.out_ioas_id;
        let target = DmaTarget::Ioas { ctx, ioas_id };
        Ok((Self::with_target(backend, target, ram)?, ioas_id))
    }

    /// All of `ram` mapped in `container` (backend `backend`), which has its IOMMU type set.
    pub fn container(
        backend: &'static str,
        container: Arc<dyn Type1Container>,
        ram: Arc<GuestRam>,
    ) -> Result<Self, DmaSpaceError> {
        Self::with_target(backend, DmaTarget::Container(container), ram)
    }

    fn with_target(
        backend: &'static str,
        target: DmaTarget,
        ram: Arc<GuestRam>,
    ) -> Result<Self, DmaSpaceError> {
        let space = Self {
            backend,
            target,
            ram,
            mapped: Mutex::new(BTreeMap::new()),
            no_map_file: AtomicBool::new(false),
        };
        // On error `space` drops here, unmapping what was mapped and freeing the IOAS.
        space.sync()?;
        Ok(space)
    }

    /// The backend's name ("emulated", "emulated container", "iommufd", "container").
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Where the mappings go.
    pub fn target(&self) -> &DmaTarget {
        &self.target
    }

    /// The IOAS devices attach to, for an iommufd space.
    pub fn ioas_id(&self) -> Option<u32> {
        match &self.target {
            DmaTarget::Ioas { ioas_id, .. } => Some(*ioas_id),
            DmaTarget::Container(_) => None,
        }
    }

    /// The mapped ranges `(IOVA, length)`, in IOVA order.
    pub fn mapped(&self) -> Vec<(u64, u64)> {
        lock(&self.mapped).iter().map(|(a, s)| (*a, *s)).collect()
    }

    /// Makes the mapped set equal to the RAM regions now: maps the new ones, unmaps the ones
    /// gone. Stops at the first failure (what was done stays done, and is consistent).
    pub fn sync(&self) -> Result<(), DmaSpaceError> {
        let regions = self.ram.regions();
        let gone: Vec<(u64, u64)> = self
            .mapped()
            .into_iter()
            .filter(|&(gpa, size)| {
                !regions
                    .iter()
                    .any(|r| r.guest_addr.0 == gpa && r.size == size)
            })
            .collect();
        for (gpa, size) in gone {
            self.unmap_range(gpa, size)?;
        }
        for region in &regions {
            if !lock(&self.mapped).contains_key(&region.guest_addr.0) {
                self.map_region(region)?;
            }
        }
        Ok(())
    }

    /// Maps one RAM region (one of [`GuestRam::regions`]) at IOVA = its guest address.
    pub fn map_region(&self, region: &RamRegion) -> Result<(), DmaSpaceError> {
        let (gpa, size) = (region.guest_addr.0, region.size);
        let mut mapped = lock(&self.mapped);
        if mapped.contains_key(&gpa) {
            return Err(DmaSpaceError::AlreadyMapped { gpa, size });
        }
        let region = self.ram_region(gpa, size)?;
        self.map(&region)?;
        mapped.insert(gpa, size);
        Ok(())
    }

    /// Unmaps one RAM region mapped by [`map_region`](Self::map_region) or
    /// [`sync`](Self::sync); device DMA to it faults from then on.
    pub fn unmap_region(&self, region: &RamRegion) -> Result<(), DmaSpaceError> {
        self.unmap_range(region.guest_addr.0, region.size)
    }

    fn unmap_range(&self, gpa: u64, size: u64) -> Result<(), DmaSpaceError> {
        let mut mapped = lock(&self.mapped);
        if mapped.get(&gpa) != Some(&size) {
            return Err(DmaSpaceError::NotMapped { gpa, size });
        }
        self.unmap(gpa, size)?;
        mapped.remove(&gpa);
        Ok(())
    }

    /// The region of our RAM at `gpa` of `size` bytes: only memory `self.ram` owns is mapped.
    fn ram_region(&self, gpa: u64, size: u64) -> Result<RamRegion, DmaSpaceError> {
        self.ram
            .regions()
            .into_iter()
            .find(|r| r.guest_addr.0 == gpa && r.size == size)
            .ok_or(DmaSpaceError::NotRam { gpa, size })
    }

    fn map(&self, region: &RamRegion) -> Result<(), DmaSpaceError> {
        let (gpa, size) = (region.guest_addr.0, region.size);
        let error = |how, source| DmaSpaceError::Map {
            backend: self.backend,
            how,
            gpa,
            size,
            source,
        };
        let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
        match &self.target {
            DmaTarget::Ioas { ctx, ioas_id } => {
                if !self.no_map_file.load(Ordering::Relaxed) {
                    let mut req = IoasMapFile {
                        flags,
                        ioas_id: *ioas_id,
                        fd: region.memfd.as_raw_fd(),
                        start: region.file_offset,
                        length: size,
                        iova: gpa,
                    };
                    match ctx.ioas_map_file(&mut req) {
                        Ok(()) => return Ok(()),
                        Err(Errno::ENOTTY) => {
                            log::info!(
                                "{} iommufd has no IOMMU_IOAS_MAP_FILE (before 6.13): mapping \
                                 guest RAM by address",
                                self.backend
                            );
                            self.no_map_file.store(true, Ordering::Relaxed);
                        }
                        Err(e) => return Err(error("IOMMU_IOAS_MAP_FILE", e)),
                    }
                }
                let mut req = IoasMap {
                    flags,
                    ioas_id: *ioas_id,
                    reserved: 0,
                    user_va: region.host_addr,
                    length: size,
                    iova: gpa,
                };
                // SAFETY: the region is one of `self.ram`'s (checked by the callers), mapped in
                // this process for as long as `self.ram` lives; `self` holds `self.ram` and
                // unmaps every region before letting go of it (`Drop`). Guest RAM is only ever
                // accessed through volatile `vm-memory` accessors and by KVM, which tolerate
                // concurrent device access.
                unsafe { ctx.ioas_map(&mut req) }.map_err(|e| error("IOMMU_IOAS_MAP", e))
            }
            DmaTarget::Container(container) => {
                let req = Type1DmaMap::new(region.host_addr, gpa, size);
                // SAFETY: as for `IOMMU_IOAS_MAP` above: the memory is `self.ram`'s, which
                // outlives the mapping, and is accessed only in ways that tolerate device DMA.
                unsafe { container.map_dma(&req) }.map_err(|e| error("VFIO_IOMMU_MAP_DMA", e))
            }
        }
    }

    fn unmap(&self, gpa: u64, size: u64) -> Result<(), DmaSpaceError> {
        let error = |source| DmaSpaceError::Unmap {
            backend: self.backend,
            gpa,
            size,
            source,
        };
        match &self.target {
            DmaTarget::Ioas { ctx, ioas_id } => {
                let mut req = IoasUnmap {
                    ioas_id: *ioas_id,
                    iova: gpa,
                    length: size,
                };
                ctx.ioas_unmap(&mut req).map_err(error)
            }
            DmaTarget::Container(container) => container
                .unmap_dma(&mut Type1DmaUnmap::new(gpa, size), &mut [])
                .map_err(error),
        }
    }
}

impl Drop for DmaSpace {
    fn drop(&mut self) {
        for (gpa, size) in self.mapped() {
            if let Err(e) = self.unmap_range(gpa, size) {
                log::warn!("{e}");
            }
        }
        if let DmaTarget::Ioas { ctx, ioas_id } = &self.target {
            // Devices still attached keep the IOAS (EBUSY); it goes with the context then.
            if let Err(e) = ctx.destroy(*ioas_id) {
                log::debug!(
                    "{} iommufd: IOAS {ioas_id} not destroyed: {e}",
                    self.backend
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use vfio_passthrough::host::emulated::{
        AreaInfo, EmulatedHost, EmulatedIommufd, HostConfig, KernelVersion,
    };

    use super::*;

    const MIB: u64 = 1 << 20;

    /// An emulated iommufd behaving as `kernel`, whose pins are not charged.
    fn context(kernel: KernelVersion) -> Arc<EmulatedIommufd> {
        let config = HostConfig {
            cap_ipc_lock: true,
            ..HostConfig::unprivileged(0).with_kernel(kernel)
        };
        Arc::new(EmulatedHost::new(config).open_iommufd())
    }

    fn areas(ctx: &EmulatedIommufd, ioas: u32) -> Vec<AreaInfo> {
        ctx.areas(ioas).unwrap()
    }

    #[test]
    fn ram_is_mapped_from_its_memfd_at_iova_equal_to_guest_address() {
        let ram = Arc::new(GuestRam::new(16 * MIB).unwrap());
        let ctx = context(KernelVersion::NEWEST);
        let (space, ioas) = DmaSpace::ioas("emulated", ctx.clone(), ram).unwrap();
        assert_eq!(space.ioas_id(), Some(ioas));
        assert_eq!(
            areas(&ctx, ioas),
            [AreaInfo {
                iova: 0,
                length: 16 * MIB,
                address: 0,
                file: true,
                read: true,
                write: true,
            }]
        );
    }

    #[test]
    fn hosts_before_6_13_get_the_vmm_mapping_of_ram_instead() {
        let ram = Arc::new(GuestRam::new(4 * MIB).unwrap());
        let host_addr = ram.regions()[0].host_addr;
        let ctx = context(KernelVersion::V6_12);
        let (space, ioas) = DmaSpace::ioas("emulated", ctx.clone(), ram).unwrap();
        let mapped = areas(&ctx, ioas);
        assert_eq!(mapped.len(), 1);
        assert_eq!(
            (mapped[0].iova, mapped[0].length, mapped[0].address),
            (0, 4 * MIB, host_addr)
        );
        assert!(!mapped[0].file);
        assert_eq!(space.mapped(), [(0, 4 * MIB)]);
    }

    #[test]
    fn dropping_the_space_unmaps_ram_and_destroys_the_ioas() {
        let ram = Arc::new(GuestRam::new(4 * MIB).unwrap());
        let ctx = context(KernelVersion::NEWEST);
        let (space, ioas) = DmaSpace::ioas("emulated", ctx.clone(), ram).unwrap();
        assert!(ctx.object_ids().contains(&ioas));
        drop(space);
        assert!(ctx.object_ids().is_empty());
        assert!(ctx.host().nothing_pinned());
    }
}
