//! Shared fixtures for the emulated device tests: an in-memory DMA port (the unit-test seam
//! for device DMA), eventfds, and a driver for the DMA engine that talks to it only through
//! the `VfioDevice` trait, as a VMM would.
#![allow(dead_code)]

pub mod nested;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vfio_passthrough::emulated_device::{EmulatedDeviceSpec, EmulatedVfioDevice};
use vfio_passthrough::host::dma::{DmaFault, DmaFaultReason, DmaPort};
use vfio_passthrough::vfio::*;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub const PAGE: u64 = 4096;

/// Pages by page number, per PASID (`None`: requests without PASID).
pub type Spaces = HashMap<Option<u32>, BTreeMap<u64, Vec<u8>>>;

/// A DMA port over pages of process memory, one address space per PASID (and one without),
/// that records the PASID of every access.
#[derive(Debug, Default)]
pub struct MemPort {
    spaces: Mutex<Spaces>,
    seen: Mutex<Vec<(Option<u32>, u64, bool)>>,
}

impl MemPort {
    pub fn new() -> Arc<Self> {
        Arc::new(MemPort::default())
    }

    /// Maps zeroed pages covering `[iova, iova + len)` in the space of `pasid`.
    pub fn map(&self, pasid: Option<u32>, iova: u64, len: u64) {
        let mut spaces = self.spaces.lock().unwrap();
        let space = spaces.entry(pasid).or_default();
        for page in (iova / PAGE)..(iova + len).div_ceil(PAGE) {
            space.entry(page).or_insert_with(|| vec![0; PAGE as usize]);
        }
    }

    /// Removes the page holding `iova`.
    pub fn unmap_page(&self, pasid: Option<u32>, iova: u64) {
        if let Some(space) = self.spaces.lock().unwrap().get_mut(&pasid) {
            space.remove(&(iova / PAGE));
        }
    }

    /// Test-side write (the CPU's view of memory).
    pub fn poke(&self, pasid: Option<u32>, iova: u64, data: &[u8]) {
        let mut spaces = self.spaces.lock().unwrap();
        let space = spaces.get_mut(&pasid).expect("poke into an unmapped space");
        for (i, b) in data.iter().enumerate() {
            let a = iova + i as u64;
            space
                .get_mut(&(a / PAGE))
                .expect("poke into an unmapped page")[(a % PAGE) as usize] = *b;
        }
    }

    /// Test-side read.
    pub fn peek(&self, pasid: Option<u32>, iova: u64, len: usize) -> Vec<u8> {
        let spaces = self.spaces.lock().unwrap();
        let space = spaces.get(&pasid).expect("peek into an unmapped space");
        (0..len as u64)
            .map(|i| {
                let a = iova + i;
                space.get(&(a / PAGE)).expect("peek into an unmapped page")[(a % PAGE) as usize]
            })
            .collect()
    }

    /// Every page of every space, for comparing two runs.
    pub fn snapshot(&self) -> Spaces {
        self.spaces.lock().unwrap().clone()
    }

    /// A port holding a copy of this one's memory (what migrating the guest's RAM does).
    pub fn clone_memory(&self) -> Arc<Self> {
        Arc::new(MemPort {
            spaces: Mutex::new(self.snapshot()),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The `(pasid, iova, write)` of every access so far.
    pub fn accesses(&self) -> Vec<(Option<u32>, u64, bool)> {
        self.seen.lock().unwrap().clone()
    }

    fn access(
        &self,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut Vec<u8>, std::ops::Range<usize>, usize),
    ) -> Result<(), DmaFault> {
        let mut spaces = self.spaces.lock().unwrap();
        let mut done = 0usize;
        while done < len {
            let a = iova.wrapping_add(done as u64);
            let fault = DmaFault {
                iova: a,
                pasid,
                write,
                reason: DmaFaultReason::NotPresent,
            };
            let page = spaces
                .get_mut(&pasid)
                .and_then(|s| s.get_mut(&(a / PAGE)))
                .ok_or(fault)?;
            let off = (a % PAGE) as usize;
            let n = (len - done).min(PAGE as usize - off);
            f(page, off..off + n, done);
            done += n;
        }
        Ok(())
    }
}

impl DmaPort for MemPort {
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        self.seen.lock().unwrap().push((pasid, iova, false));
        self.access(pasid, iova, buf.len(), false, |page, r, at| {
            let n = r.len();
            buf[at..at + n].copy_from_slice(&page[r]);
        })
    }

    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        self.seen.lock().unwrap().push((pasid, iova, true));
        self.access(pasid, iova, buf.len(), true, |page, r, at| {
            let n = r.len();
            page[r].copy_from_slice(&buf[at..at + n]);
        })
    }
}

/// A fresh eventfd.
pub fn eventfd() -> EventFd {
    EventFd::new(EFD_NONBLOCK).unwrap()
}

/// Reads (and clears) the counter of a non-blocking eventfd: 0 when it was not signalled.
pub fn drain(fd: &EventFd) -> u64 {
    fd.read().unwrap_or(0)
}

/// Waits until `fd` is signalled (for signals sent by another thread); its count.
pub fn wait_signal(fd: &EventFd, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = drain(fd);
        if n != 0 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The data bytes of a `DATA_EVENTFD` set.
pub fn fds(fds: &[i32]) -> Vec<u8> {
    fds.iter().flat_map(|f| f.to_ne_bytes()).collect()
}

/// `EVENTFD|TRIGGER` of `fds` on irq `index` from vector `start`.
pub fn set_triggers(
    dev: &dyn VfioDevice,
    index: u32,
    start: u32,
    fdv: &[&EventFd],
) -> Result<(), vfio_passthrough::errno::Errno> {
    let raw: Vec<i32> = fdv.iter().map(|f| f.as_raw_fd()).collect();
    dev.set_irqs(
        &IrqSet {
            flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start,
            count: raw.len() as u32,
        },
        &fds(&raw),
    )
}

pub fn build(spec: &str) -> EmulatedVfioDevice {
    EmulatedDeviceSpec::parse(spec).unwrap().build().unwrap()
}

pub fn read32(dev: &dyn VfioDevice, index: u32, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    assert_eq!(dev.region_read(index, offset, &mut b).unwrap(), 4);
    u32::from_le_bytes(b)
}

pub fn write32(dev: &dyn VfioDevice, index: u32, offset: u64, value: u32) {
    assert_eq!(
        dev.region_write(index, offset, &value.to_le_bytes())
            .unwrap(),
        4
    );
}

pub fn read16(dev: &dyn VfioDevice, index: u32, offset: u64) -> u16 {
    let mut b = [0u8; 2];
    assert_eq!(dev.region_read(index, offset, &mut b).unwrap(), 2);
    u16::from_le_bytes(b)
}

pub fn write16(dev: &dyn VfioDevice, index: u32, offset: u64, value: u16) {
    assert_eq!(
        dev.region_write(index, offset, &value.to_le_bytes())
            .unwrap(),
        2
    );
}

/// Turns on bus mastering (and memory decoding) through the configuration region.
pub fn enable_bus_master(dev: &dyn VfioDevice) {
    let cmd = read16(dev, VFIO_PCI_CONFIG_REGION_INDEX, 4);
    write16(dev, VFIO_PCI_CONFIG_REGION_INDEX, 4, cmd | 0x6);
}

// DMA engine registers and descriptor fields (docs/dma-engine.md), as the model defines them.
// Each test binary uses its own subset of them.
use vfio_passthrough::emulated_device::models::dma_engine::descriptor::Status;
#[allow(unused_imports)]
pub use vfio_passthrough::emulated_device::models::dma_engine::descriptor::{
    OP_COMPARE, OP_COPY, OP_DST_DEVMEM, OP_FILL, OP_INTERRUPT, OP_SRC_DEVMEM, PASID_VALID,
};
#[allow(unused_imports)]
pub use vfio_passthrough::emulated_device::models::dma_engine::regs::{
    CTRL_ENABLE, CTRL_INT_ENABLE, CTRL_RESET, REG_CAPS, REG_COMPLETED, REG_CTRL, REG_ERROR_CODE,
    REG_ERROR_DESC, REG_FAULT_ADDR, REG_ID, REG_INT_STATUS, REG_QUEUE_BASE, REG_QUEUE_HEAD,
    REG_QUEUE_SIZE, REG_QUEUE_TAIL, REG_STATUS, STATUS_ERROR, STATUS_HALTED,
};
pub const ST_SUCCESS: u32 = Status::Success as u32;
pub const ST_BAD_OPCODE: u32 = Status::BadOpcode as u32;
pub const ST_BAD_LENGTH: u32 = Status::BadLength as u32;
pub const ST_SRC_FAULT: u32 = Status::SrcFault as u32;
pub const ST_DST_FAULT: u32 = Status::DstFault as u32;
pub const ST_DEVMEM_RANGE: u32 = Status::DevmemRange as u32;
pub const ST_DESC_FAULT: u32 = Status::DescFault as u32;

/// A descriptor as the guest writes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Desc {
    pub op: u32,
    pub pasid: u32,
    pub src: u64,
    pub dst: u64,
    pub len: u64,
    pub completion: u64,
}

impl Desc {
    pub fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.op.to_le_bytes());
        b[4..8].copy_from_slice(&self.pasid.to_le_bytes());
        b[8..16].copy_from_slice(&self.src.to_le_bytes());
        b[16..24].copy_from_slice(&self.dst.to_le_bytes());
        b[24..32].copy_from_slice(&self.len.to_le_bytes());
        b[32..40].copy_from_slice(&self.completion.to_le_bytes());
        b
    }
}

/// The completion record `(status, result, bytes_done)` at `iova`.
pub fn completion(port: &MemPort, pasid: Option<u32>, iova: u64) -> (u32, u32, u64) {
    let b = port.peek(pasid, iova, 16);
    (
        u32::from_le_bytes(b[0..4].try_into().unwrap()),
        u32::from_le_bytes(b[4..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
    )
}

/// Where the fixtures put things in the test port's memory.
pub const RING: u64 = 0x10_0000;
pub const RING_SIZE: u32 = 16;
pub const COMPLETIONS: u64 = 0x20_0000;
pub const BUF_A: u64 = 0x30_0000;
pub const BUF_B: u64 = 0x40_0000;
pub const BUF_C: u64 = 0x50_0000;

/// A DMA engine driven through `VfioDevice`, with its DMA going to a `MemPort`.
pub struct Engine {
    pub dev: EmulatedVfioDevice,
    pub port: Arc<MemPort>,
    pub next: u32,
}

impl Engine {
    /// A DMA engine from `spec` whose DMA reaches `port` (PASID enabled iff `pasid`), with a
    /// `RING_SIZE` ring at `RING`, bus mastering on and the engine enabled.
    pub fn with_port(spec: &str, port: Arc<MemPort>, pasid: bool) -> Self {
        let dev = build(spec);
        dev.connect_dma(port.clone(), if pasid { 20 } else { 0 });
        for (at, len) in [
            (RING, RING_SIZE as u64 * 64),
            (COMPLETIONS, 0x1000),
            (BUF_A, 0x4000),
            (BUF_B, 0x4000),
            (BUF_C, 0x4000),
        ] {
            port.map(None, at, len);
        }
        enable_bus_master(&dev);
        let e = Engine { dev, port, next: 0 };
        e.write(REG_CTRL, CTRL_RESET);
        e.write(REG_QUEUE_BASE, RING as u32);
        e.write(REG_QUEUE_BASE + 4, (RING >> 32) as u32);
        e.write(REG_QUEUE_SIZE, RING_SIZE);
        e.write(REG_CTRL, CTRL_ENABLE | CTRL_INT_ENABLE);
        e
    }

    pub fn new(spec: &str) -> Self {
        Self::with_port(spec, MemPort::new(), false)
    }

    pub fn read(&self, reg: u64) -> u32 {
        read32(&self.dev, 0, reg)
    }

    pub fn write(&self, reg: u64, value: u32) {
        write32(&self.dev, 0, reg, value)
    }

    /// Writes `desc` into the next ring slot (without ringing the doorbell); its index.
    pub fn queue(&mut self, desc: Desc) -> u32 {
        let index = self.next;
        self.port
            .poke(None, RING + u64::from(index) * 64, &desc.bytes());
        self.next = (self.next + 1) % RING_SIZE;
        index
    }

    /// Rings the doorbell for everything queued.
    pub fn doorbell(&self) {
        self.write(REG_QUEUE_TAIL, self.next);
    }

    /// Queues `desc` and rings the doorbell.
    pub fn submit(&mut self, desc: Desc) -> u32 {
        let i = self.queue(desc);
        self.doorbell();
        i
    }

    /// Sets up MSI-X with two eventfds.
    pub fn msix(&self) -> [EventFd; 2] {
        let v = [eventfd(), eventfd()];
        set_triggers(&self.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, &[&v[0], &v[1]]).unwrap();
        v
    }
}
