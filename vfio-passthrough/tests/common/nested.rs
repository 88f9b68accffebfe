//! A guest in miniature for nested-translation tests: guest RAM mapped into an IOAS at its
//! guest physical addresses (so the IOAS is stage 2), a `NEST_PARENT` paging HWPT over it, VT-d
//! first-stage tables the guest builds in its RAM, and a DMA engine bound to the emulated
//! iommufd whose ring sits in guest RAM. Everything goes through the `Iommufd` and `VfioDevice`
//! seams, as a VMM would.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vfio_passthrough::emulated_device::EmulatedVfioDevice;
use vfio_passthrough::emulated_device::vfio_core::SharedMemory;
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::vfio::VfioDevice;
use viommu::vtd::{FirstStageTableBuilder, PagingMode, Stage2Fault, TableMemory};

use super::*;

/// Guest physical address of guest RAM (also its IOVA in the IOAS: stage 2 is the identity
/// onto the RAM).
pub const GPA_BASE: u64 = 0x1000_0000;
/// Bytes of guest RAM.
pub const RAM_SIZE: u64 = 4 << 20;
/// The descriptor ring (fetched without PASID, through stage 2 only).
pub const RING_GPA: u64 = GPA_BASE;
/// Where guest page tables are allocated from.
pub const TABLES_GPA: Range<u64> = GPA_BASE + 0x30_0000..GPA_BASE + 0x38_0000;
/// A second table area, for a second nested HWPT.
pub const TABLES2_GPA: Range<u64> = GPA_BASE + 0x38_0000..GPA_BASE + 0x40_0000;
/// Data pages of the guest, for stage-1 mappings to point at.
pub const DATA_GPA: u64 = GPA_BASE + 0x10_0000;
/// The PASID the tests attach to nested HWPTs.
pub const PASID: u32 = 5;

/// How guest RAM is given to the IOAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A memfd mapped with `IOMMU_IOAS_MAP_FILE`.
    Memfd,
    /// Anonymous process memory mapped with `IOMMU_IOAS_MAP`.
    Anonymous,
}

/// Guest RAM: a memfd, or anonymous memory read and written by address.
pub enum Ram {
    File(SharedMemory),
    Anon { addr: u64 },
}

impl Ram {
    fn new(backing: Backing) -> Self {
        match backing {
            Backing::Memfd => Ram::File(SharedMemory::new("guest-ram", RAM_SIZE).unwrap()),
            Backing::Anonymous => {
                // SAFETY: a fresh private anonymous mapping chosen by the kernel.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        RAM_SIZE as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                assert_ne!(p, libc::MAP_FAILED);
                Ram::Anon { addr: p as u64 }
            }
        }
    }

    /// Reads guest RAM at `gpa` as the guest's CPU would.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) {
        let off = gpa - GPA_BASE;
        assert!(off + buf.len() as u64 <= RAM_SIZE);
        match self {
            Ram::File(m) => m.read(off, buf).unwrap(),
            Ram::Anon { addr } => {
                // SAFETY: the range lies inside our mapping (checked above); the device writes
                // it only while a DMA runs, which the test does not overlap with this copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (addr + off) as *const u8,
                        buf.as_mut_ptr(),
                        buf.len(),
                    )
                }
            }
        }
    }

    /// Writes guest RAM at `gpa` as the guest's CPU would.
    pub fn write(&self, gpa: u64, data: &[u8]) {
        let off = gpa - GPA_BASE;
        assert!(off + data.len() as u64 <= RAM_SIZE);
        match self {
            Ram::File(m) => m.write(off, data).unwrap(),
            Ram::Anon { addr } => {
                // SAFETY: as in `read`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        (addr + off) as *mut u8,
                        data.len(),
                    )
                }
            }
        }
    }

    pub fn read_vec(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.read(gpa, &mut b);
        b
    }

    pub fn read_u64(&self, gpa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b);
        u64::from_le_bytes(b)
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        if let Ram::Anon { addr } = self {
            // SAFETY: unmaps the mapping `new` made, which nothing uses any more.
            unsafe { libc::munmap(*addr as *mut libc::c_void, RAM_SIZE as usize) };
        }
    }
}

/// The guest's view of its tables: its CPU writing guest RAM (single-threaded here, so a
/// read-compare-write is an exchange).
pub struct GuestTables<'a>(pub &'a Ram);

impl TableMemory for GuestTables<'_> {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        Ok(self.0.read_u64(gpa))
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        let old = self.0.read_u64(gpa);
        if old == current {
            self.0.write(gpa, &new.to_le_bytes());
        }
        Ok(old)
    }
}

/// The guest, its VMM's iommufd objects and a DMA engine.
/// Fields drop in order: the device and the context go before the RAM they map.
pub struct Guest {
    pub ctx: Arc<dyn Iommufd>,
    pub dev: EmulatedVfioDevice,
    pub ioas: u32,
    pub dev_id: u32,
    /// The `NEST_PARENT | DIRTY_TRACKING | ALLOC_PASID` paging HWPT the RID is attached to.
    pub parent: u32,
    next: u32,
    pub ram: Ram,
}

impl Guest {
    /// Guest RAM of `backing` in an IOAS, the parent HWPT with the device's RID on it, and the
    /// engine running a 16-entry ring at `RING_GPA`.
    pub fn new(backing: Backing) -> Self {
        let host = EmulatedHost::new(HostConfig::unprivileged(64 << 20));
        let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
        let mut alloc = IoasAlloc::default();
        ctx.ioas_alloc(&mut alloc).unwrap();
        let ioas = alloc.out_ioas_id;
        let ram = Ram::new(backing);
        let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
        match &ram {
            Ram::File(m) => {
                let mut map = IoasMapFile {
                    flags,
                    ioas_id: ioas,
                    fd: m.fd().as_raw_fd(),
                    start: 0,
                    length: RAM_SIZE,
                    iova: GPA_BASE,
                };
                ctx.ioas_map_file(&mut map).unwrap();
            }
            Ram::Anon { addr } => {
                let mut map = IoasMap {
                    flags,
                    ioas_id: ioas,
                    user_va: *addr,
                    length: RAM_SIZE,
                    iova: GPA_BASE,
                    ..Default::default()
                };
                // SAFETY: the memory stays mapped (owned by `ram`) until after the context is
                // closed: `Guest` drops `ctx` and `dev` before `ram`.
                unsafe { ctx.ioas_map(&mut map) }.unwrap();
            }
        }
        let dev = build("emulated:dma-engine");
        let dev_id = dev.bind_iommufd(&ctx).unwrap();
        let mut hwpt = HwptAlloc {
            flags: IOMMU_HWPT_ALLOC_NEST_PARENT
                | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
                | IOMMU_HWPT_ALLOC_PASID,
            dev_id,
            pt_id: ioas,
            ..Default::default()
        };
        ctx.hwpt_alloc(&mut hwpt, &[]).unwrap();
        let parent = hwpt.out_hwpt_id;
        dev.attach_pt(parent, None).unwrap();
        let g = Guest {
            ctx,
            ioas,
            ram,
            dev,
            dev_id,
            parent,
            next: 0,
        };
        enable_bus_master(&g.dev);
        g.restart();
        g
    }

    /// Resets the engine's queue and error state and starts it again on an empty ring.
    pub fn restart(&self) {
        write32(&self.dev, 0, REG_CTRL, CTRL_RESET);
        write32(&self.dev, 0, REG_QUEUE_BASE, RING_GPA as u32);
        write32(&self.dev, 0, REG_QUEUE_BASE + 4, (RING_GPA >> 32) as u32);
        write32(&self.dev, 0, REG_QUEUE_SIZE, 16);
        write32(&self.dev, 0, REG_CTRL, CTRL_ENABLE | CTRL_INT_ENABLE);
    }

    /// Writes `desc` into the next ring slot and rings the doorbell.
    pub fn submit(&mut self, desc: Desc) {
        if read32(&self.dev, 0, REG_STATUS) & STATUS_HALTED != 0 {
            self.restart();
            self.next = 0;
        }
        self.ram
            .write(RING_GPA + u64::from(self.next) * 64, &desc.bytes());
        self.next = (self.next + 1) % 16;
        write32(&self.dev, 0, REG_QUEUE_TAIL, self.next);
    }

    /// `ERROR_CODE` and the 64-bit `FAULT_ADDR`.
    pub fn error(&self) -> (u32, u64) {
        let lo = u64::from(read32(&self.dev, 0, REG_FAULT_ADDR));
        let hi = u64::from(read32(&self.dev, 0, REG_FAULT_ADDR + 4));
        (read32(&self.dev, 0, REG_ERROR_CODE), lo | hi << 32)
    }

    /// An empty 4-level first-stage table in `area` of guest RAM.
    pub fn table(&self, area: Range<u64>) -> FirstStageTableBuilder {
        FirstStageTableBuilder::new(&mut GuestTables(&self.ram), PagingMode::FourLevel, area)
            .unwrap()
    }

    /// Maps 4 KiB at `iova` to `gpa` in `table` with `flags`, as the guest's driver does.
    pub fn map(&self, table: &mut FirstStageTableBuilder, iova: u64, gpa: u64, flags: u64) {
        table
            .map(
                &mut GuestTables(&self.ram),
                iova,
                gpa,
                viommu::vtd::PageSize::Size4KiB,
                flags,
            )
            .unwrap();
    }

    /// The level-`level` entry the walk of `iova` in `table` uses, read from guest RAM.
    pub fn entry(&self, table: &FirstStageTableBuilder, iova: u64, level: u8) -> u64 {
        let gpa = table
            .entry_gpa(&mut GuestTables(&self.ram), iova, level)
            .unwrap()
            .unwrap();
        self.ram.read_u64(gpa)
    }

    /// A nested HWPT over the parent for `table` (PASID-compatible), reporting faults to
    /// `fault_id` when given.
    pub fn nested(&self, table: &FirstStageTableBuilder, fault_id: Option<u32>) -> u32 {
        let data = HwptVtdS1 {
            flags: 0,
            pgtbl_addr: table.root(),
            addr_width: 48,
            reserved: 0,
        }
        .to_bytes();
        let mut req = HwptAlloc {
            flags: IOMMU_HWPT_ALLOC_PASID
                | if fault_id.is_some() {
                    IOMMU_HWPT_FAULT_ID_VALID
                } else {
                    0
                },
            dev_id: self.dev_id,
            pt_id: self.parent,
            data_type: IOMMU_HWPT_DATA_VTD_S1,
            fault_id: fault_id.unwrap_or(0),
            ..Default::default()
        };
        self.ctx.hwpt_alloc(&mut req, &data).unwrap();
        req.out_hwpt_id
    }

    /// A fault queue: its id and the user's end (non-blocking, so a missing record fails a
    /// read instead of hanging the test).
    pub fn fault_queue(&self) -> (u32, File) {
        let mut req = FaultQueueAlloc::default();
        let file = self.ctx.fault_queue_alloc(&mut req).unwrap();
        // SAFETY: sets O_NONBLOCK on a descriptor we own.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        assert_eq!(rc, 0);
        (req.out_fault_id, file)
    }

    /// `IOMMU_HWPT_INVALIDATE` of `npages` pages from `addr` on nested HWPT `hwpt`.
    pub fn invalidate(&self, hwpt: u32, addr: u64, npages: u64) {
        let entry = HwptVtdS1Invalidate {
            addr,
            npages,
            flags: 0,
            reserved: 0,
        };
        let mut req = HwptInvalidate {
            hwpt_id: hwpt,
            data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
            entry_len: HwptVtdS1Invalidate::SIZE as u32,
            entry_num: 1,
            reserved: 0,
        };
        self.ctx
            .hwpt_invalidate(&mut req, &entry.to_bytes())
            .unwrap();
        assert_eq!(req.entry_num, 1);
    }

    /// Turns dirty tracking of the parent on.
    pub fn track_dirty(&self) {
        self.ctx
            .hwpt_set_dirty_tracking(&HwptSetDirtyTracking {
                flags: IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
                hwpt_id: self.parent,
                reserved: 0,
            })
            .unwrap();
    }

    /// The guest pages of RAM the parent's dirty bitmap reports (and clears).
    pub fn dirty_pages(&self) -> Vec<u64> {
        let pages = RAM_SIZE / 4096;
        let mut bitmap = vec![0u64; pages.div_ceil(64) as usize];
        self.ctx
            .hwpt_get_dirty_bitmap(
                &HwptGetDirtyBitmap {
                    hwpt_id: self.parent,
                    flags: 0,
                    reserved: 0,
                    iova: GPA_BASE,
                    length: RAM_SIZE,
                    page_size: 4096,
                },
                &mut bitmap,
            )
            .unwrap();
        (0..pages)
            .filter(|&i| bitmap[(i / 64) as usize] >> (i % 64) & 1 != 0)
            .map(|i| GPA_BASE + i * 4096)
            .collect()
    }
}
