//! [`TestVfioDevice`]: a small in-memory VFIO PCI device, for tests of the passthrough device and
//! of the crates built on it (feature `test-utils`).
//!
//! It answers the [`VfioDevice`] seam the way vfio-pci does where the passthrough device relies
//! on it: a config region backed by a real [`PciConfiguration`] (with BARs, MSI, MSI-X, PCIe and
//! PASID capabilities, and capabilities a guest must not see), BAR regions backed by memfds so
//! `region_mmap` really maps, sparse-mmap and type capabilities, IRQ info, and `SET_IRQS` with
//! vfio-pci's rules and errnos (one of INTx / MSI / MSI-X at a time, disable before enable,
//! eventfds duplicated as the kernel takes its own references). It records every config write,
//! every BAR access and every `SET_IRQS` call, so tests assert on what reached the device.
//! Migration and iommufd operations answer `ENOTTY` (the device cannot migrate) and `EINVAL`
//! (it is not a cdev).

mod irqs;
mod spec;

use std::any::Any;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::pci::{BarKind, PciConfiguration};

use crate::errno::Errno;
use crate::host::iommufd::Iommufd;
use crate::vfio::{
    DeviceInfo, DmaLoggingRange, DmaLoggingReport, IrqInfo, IrqSet, MigrationData, MmapArea,
    REGION_INFO_SIZE, RegionCap, RegionInfo, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET,
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_INFO_NORESIZE, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_PCI_VGA_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE, VfioDevice,
};
use irqs::IrqState;
pub use spec::*;

/// A region access that reached the test device (config accesses are recorded separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionAccess {
    /// A read of `len` bytes.
    Read {
        /// Region index.
        index: u32,
        /// Offset in the region.
        offset: u64,
        /// Bytes read.
        len: usize,
    },
    /// A write of `data`.
    Write {
        /// Region index.
        index: u32,
        /// Offset in the region.
        offset: u64,
        /// Bytes written.
        data: Vec<u8>,
    },
}

/// One `VFIO_DEVICE_SET_IRQS` call as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetIrqsCall {
    /// The header.
    pub req: IrqSet,
    /// The data array.
    pub data: Vec<u8>,
    /// What the device answered.
    pub result: Result<(), Errno>,
}

impl SetIrqsCall {
    /// The eventfds of a `DATA_EVENTFD` call.
    pub fn fds(&self) -> Vec<i32> {
        self.data
            .chunks_exact(4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

#[derive(Debug)]
struct State {
    spec: TestDeviceSpec,
    info: DeviceInfo,
    config: PciConfiguration,
    regions: Vec<RegionInfo>,
    backing: BTreeMap<u32, File>,
    irq_info: Vec<Result<IrqInfo, Errno>>,
    irqs: IrqState,
    config_writes: Vec<(u16, Vec<u8>)>,
    region_accesses: Vec<RegionAccess>,
    set_irqs_calls: Vec<SetIrqsCall>,
    resets: u32,
}

/// An in-memory VFIO PCI device.
#[derive(Debug)]
pub struct TestVfioDevice {
    state: Mutex<State>,
}

fn memfd(len: u64) -> io::Result<File> {
    // SAFETY: memfd_create with a static NUL-terminated name; it returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"test-vfio-region".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)?;
    Ok(file)
}

const RW: u32 = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

impl TestVfioDevice {
    /// A device of the given shape. Fails only if memfds cannot be created.
    pub fn new(spec: TestDeviceSpec) -> io::Result<Self> {
        let config = spec.build_config();
        let num_regions = VFIO_PCI_NUM_REGIONS + spec.device_regions.len() as u32;
        let mut regions: Vec<RegionInfo> = (0..num_regions)
            .map(|index| RegionInfo {
                index,
                offset: u64::from(index) << 40,
                ..RegionInfo::default()
            })
            .collect();
        let mut backing = BTreeMap::new();
        for b in &spec.bars {
            let index = b.bar.index as u32;
            let r = &mut regions[b.bar.index];
            r.size = b.bar.size;
            r.flags = match b.bar.kind {
                BarKind::Rom => VFIO_REGION_INFO_FLAG_READ,
                _ => RW,
            };
            match &b.mmap {
                TestMmap::None => {}
                TestMmap::Whole => r.flags |= VFIO_REGION_INFO_FLAG_MMAP,
                TestMmap::Sparse(areas) => {
                    r.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                    r.caps.push(RegionCap::SparseMmap(areas.clone()));
                }
            }
            if b.msix_mappable {
                r.caps.push(RegionCap::MsixMappable);
            }
            backing.insert(index, memfd(b.bar.size)?);
        }
        let config_region = &mut regions[VFIO_PCI_CONFIG_REGION_INDEX as usize];
        config_region.size = 4096;
        config_region.flags = RW;
        for (i, (region_type, subtype, size)) in spec.device_regions.iter().enumerate() {
            let index = VFIO_PCI_NUM_REGIONS + i as u32;
            let r = &mut regions[index as usize];
            r.size = *size;
            r.flags = RW;
            r.caps.push(RegionCap::Type {
                region_type: *region_type,
                subtype: *subtype,
            });
            backing.insert(index, memfd(*size)?);
        }
        let irq = |index: u32, count: u32, flags: u32| {
            Ok(IrqInfo {
                flags: if count > 0 { flags } else { 0 },
                index,
                count,
            })
        };
        let noresize = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
        let irq_info = vec![
            irq(
                0,
                u32::from(spec.intx),
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
            ),
            irq(1, spec.msi.map_or(0, |m| m.max_vectors), noresize),
            irq(
                2,
                spec.msix.map_or(0, |m| u32::from(m.table_size)),
                noresize,
            ),
            // As vfio-pci: only a PCI Express function has the ERR index.
            if spec.pcie {
                irq(3, 1, VFIO_IRQ_INFO_EVENTFD)
            } else {
                Err(Errno::EINVAL)
            },
            irq(4, 1, noresize),
        ];
        Ok(Self {
            state: Mutex::new(State {
                info: DeviceInfo {
                    flags: VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
                    num_regions,
                    num_irqs: VFIO_PCI_NUM_IRQS,
                },
                spec,
                config,
                regions,
                backing,
                irq_info,
                irqs: IrqState::default(),
                config_writes: Vec::new(),
                region_accesses: Vec::new(),
                set_irqs_calls: Vec::new(),
                resets: 0,
            }),
        })
    }

    /// A device like the emulated DMA engine (see [`TestDeviceSpec::default`]), shared.
    pub fn dma_engine() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self::new(TestDeviceSpec::default())?))
    }

    /// The config writes that reached the device, as `(offset, bytes)`.
    pub fn config_writes(&self) -> Vec<(u16, Vec<u8>)> {
        lock(&self.state).config_writes.clone()
    }

    /// The config writes so far, clearing the record.
    pub fn take_config_writes(&self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut lock(&self.state).config_writes)
    }

    /// Reads the device's own config space (`len` of 1, 2 or 4 bytes).
    pub fn config_read(&self, offset: u16, len: usize) -> u32 {
        let mut data = [0u8; 4];
        lock(&self.state).config.read(offset, &mut data[..len]);
        u32::from_le_bytes(data)
    }

    /// Sets a dword of the device's config space (to build malformed devices).
    pub fn set_config_register(&self, reg_idx: usize, value: u32) {
        lock(&self.state).config.set_register(reg_idx, value);
    }

    /// The BAR, ROM and device-specific region accesses so far.
    pub fn region_accesses(&self) -> Vec<RegionAccess> {
        lock(&self.state).region_accesses.clone()
    }

    /// The region accesses so far, clearing the record.
    pub fn take_region_accesses(&self) -> Vec<RegionAccess> {
        std::mem::take(&mut lock(&self.state).region_accesses)
    }

    /// The `SET_IRQS` calls so far.
    pub fn set_irqs_calls(&self) -> Vec<SetIrqsCall> {
        lock(&self.state).set_irqs_calls.clone()
    }

    /// The `SET_IRQS` calls so far, clearing the record.
    pub fn take_set_irqs_calls(&self) -> Vec<SetIrqsCall> {
        std::mem::take(&mut lock(&self.state).set_irqs_calls)
    }

    /// The enabled index among INTx, MSI and MSI-X, and its vector count (1 for INTx).
    pub fn enabled_irq(&self) -> Option<(u32, u32)> {
        let s = lock(&self.state);
        s.irqs.enabled.map(|index| match index {
            VFIO_PCI_INTX_IRQ_INDEX => (index, 1),
            _ => (index, s.irqs.vectors),
        })
    }

    /// The device raises vector `vector` of `index`: its trigger eventfd is signalled if one is
    /// set. INTx fires only while enabled and unmasked, and then masks itself (automasked).
    pub fn fire(&self, index: u32, vector: u32) -> bool {
        let mut s = lock(&self.state);
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            if s.irqs.enabled != Some(index) || s.irqs.intx_masked {
                return false;
            }
            s.irqs.intx_masked = true;
        }
        s.irqs.signal((index, vector))
    }

    /// Consumes the INTx unmask eventfd the device was given, unmasking INTx if it was
    /// signalled (what the kernel's virqfd does). Returns whether it was.
    pub fn poll_intx_unmask(&self) -> bool {
        let mut s = lock(&self.state);
        let signalled = s
            .irqs
            .intx_unmask
            .as_ref()
            .is_some_and(|fd| fd.read().is_ok());
        if signalled {
            s.irqs.unmask_intx();
        }
        signalled
    }

    /// Whether INTx is masked in the device.
    pub fn intx_masked(&self) -> bool {
        lock(&self.state).irqs.intx_masked
    }

    /// Times INTx was unmasked by `ACTION_UNMASK` (or its unmask eventfd).
    pub fn intx_unmasks(&self) -> u32 {
        lock(&self.state).irqs.intx_unmasks
    }

    /// Times `VFIO_DEVICE_RESET` was called.
    pub fn resets(&self) -> u32 {
        lock(&self.state).resets
    }

    /// Replaces what region info reports for `region.index`.
    pub fn set_region(&self, region: RegionInfo) {
        let mut s = lock(&self.state);
        let index = region.index as usize;
        if let Some(r) = s.regions.get_mut(index) {
            *r = region;
        }
    }

    /// Replaces what IRQ info reports for `index`.
    pub fn set_irq_info(&self, index: u32, info: Result<IrqInfo, Errno>) {
        if let Some(i) = lock(&self.state).irq_info.get_mut(index as usize) {
            *i = info;
        }
    }

    /// Replaces what device info reports.
    pub fn set_device_info(&self, info: DeviceInfo) {
        lock(&self.state).info = info;
    }

    /// Reads region `index`'s backing memory directly (not recorded).
    pub fn backing_read(&self, index: u32, offset: u64, len: usize) -> Vec<u8> {
        let s = lock(&self.state);
        let mut buf = vec![0u8; len];
        if let Some(f) = s.backing.get(&index) {
            let _ = f.read_at(&mut buf, offset);
        }
        buf
    }

    /// Writes region `index`'s backing memory directly (not recorded).
    pub fn backing_write(&self, index: u32, offset: u64, data: &[u8]) {
        let s = lock(&self.state);
        if let Some(f) = s.backing.get(&index) {
            let _ = f.write_at(data, offset);
        }
    }
}

impl State {
    fn region(&self, index: u32) -> Result<&RegionInfo, Errno> {
        self.regions
            .get(index as usize)
            .filter(|r| r.size != 0)
            .ok_or(Errno::EINVAL)
    }

    /// The part of `[offset, offset + len)` inside the region: `EINVAL` from its end on.
    fn clamp(&self, index: u32, offset: u64, len: usize) -> Result<usize, Errno> {
        let size = self.region(index)?.size;
        if offset >= size {
            return Err(Errno::EINVAL);
        }
        Ok(len.min(usize::try_from(size - offset).unwrap_or(usize::MAX)))
    }

    /// Config space in naturally aligned pieces, as vfio-pci walks it.
    fn config_chunks(offset: u64, len: usize) -> Vec<(u16, usize)> {
        let mut out = Vec::new();
        let mut at = offset as usize;
        let end = at + len;
        while at < end {
            let w = [4usize, 2, 1]
                .into_iter()
                .find(|w| at % w == 0 && at + w <= end)
                .unwrap_or(1);
            out.push((at as u16, w));
            at += w;
        }
        out
    }
}

impl VfioDevice for TestVfioDevice {
    fn device_info(&self) -> Result<DeviceInfo, Errno> {
        Ok(lock(&self.state).info)
    }

    fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.len() < REGION_INFO_SIZE {
            return Err(Errno::EINVAL);
        }
        let argsz = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let index = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let s = lock(&self.state);
        let region = s.regions.get(index as usize).ok_or(Errno::EINVAL)?;
        // As vfio-pci: a function without VGA has no VGA region to describe.
        if index == VFIO_PCI_VGA_REGION_INDEX && region.size == 0 {
            return Err(Errno::EINVAL);
        }
        let reply = region.encode(argsz.min(buf.len()));
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        Ok(())
    }

    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut s = lock(&self.state);
        let len = s.clamp(index, offset, buf.len())?;
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            for (at, w) in State::config_chunks(offset, len) {
                let start = usize::from(at) - offset as usize;
                s.config.read(at, &mut buf[start..start + w]);
            }
            return Ok(len);
        }
        s.region_accesses
            .push(RegionAccess::Read { index, offset, len });
        let file = s.backing.get(&index).ok_or(Errno::EINVAL)?;
        file.read_exact_at(&mut buf[..len], offset)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(len)
    }

    fn region_write(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let mut s = lock(&self.state);
        let len = s.clamp(index, offset, buf.len())?;
        if s.region(index)?.flags & VFIO_REGION_INFO_FLAG_WRITE == 0 {
            return Err(Errno::EINVAL);
        }
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            s.config_writes.push((offset as u16, buf[..len].to_vec()));
            for (at, w) in State::config_chunks(offset, len) {
                let start = usize::from(at) - offset as usize;
                let _ = s.config.write(at, &buf[start..start + w]);
            }
            return Ok(len);
        }
        s.region_accesses.push(RegionAccess::Write {
            index,
            offset,
            data: buf[..len].to_vec(),
        });
        let file = s.backing.get(&index).ok_or(Errno::EINVAL)?;
        file.write_all_at(&buf[..len], offset)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(len)
    }

    fn region_mmap(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno> {
        let s = lock(&self.state);
        let region = s.region(index)?;
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        let inside = region
            .mmap_areas()
            .iter()
            .any(|(o, l)| offset >= *o && end <= o + l);
        if !inside || (writable && region.flags & VFIO_REGION_INFO_FLAG_WRITE == 0) {
            return Err(Errno::EINVAL);
        }
        let file = s.backing.get(&index).ok_or(Errno::EINVAL)?;
        let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        MmapArea::map(file.as_fd(), offset, len, writable)
    }

    fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno> {
        lock(&self.state)
            .irq_info
            .get(index as usize)
            .cloned()
            .unwrap_or(Err(Errno::EINVAL))
    }

    fn set_irqs(&self, req: &IrqSet, data: &[u8]) -> Result<(), Errno> {
        let mut s = lock(&self.state);
        let mut counts = [0u32; VFIO_PCI_NUM_IRQS as usize];
        for (c, info) in counts.iter_mut().zip(&s.irq_info) {
            *c = info.as_ref().map_or(0, |i| i.count);
        }
        let result = s.irqs.set_irqs(req, data, counts);
        s.set_irqs_calls.push(SetIrqsCall {
            req: *req,
            data: data.to_vec(),
            result,
        });
        result
    }

    fn reset(&self) -> Result<(), Errno> {
        let mut s = lock(&self.state);
        if s.info.flags & VFIO_DEVICE_FLAGS_RESET == 0 {
            return Err(Errno::EINVAL);
        }
        s.resets += 1;
        s.config = s.spec.build_config();
        Ok(())
    }

    fn feature_probe(&self, _feature: u32, _get: bool, _set: bool) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn migration_flags(&self) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    fn mig_state(&self) -> Result<u32, Errno> {
        Err(Errno::ENOTTY)
    }

    fn set_mig_state(&self, _state: u32) -> Result<Option<Box<dyn MigrationData>>, Errno> {
        Err(Errno::ENOTTY)
    }

    fn mig_data_size(&self) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    fn dma_logging_start(
        &self,
        _page_size: &mut u64,
        _ranges: &[DmaLoggingRange],
    ) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn dma_logging_stop(&self) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn dma_logging_report(
        &self,
        _req: &DmaLoggingReport,
        _bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn bind_iommufd(&self, _iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    fn attach_pt(&self, _pt_id: u32, _pasid: Option<u32>) -> Result<u32, Errno> {
        Err(Errno::ENOTTY)
    }

    fn detach_pt(&self, _pasid: Option<u32>) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
