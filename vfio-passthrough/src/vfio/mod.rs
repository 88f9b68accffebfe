//! The VFIO device seam: one method per VFIO device operation.
//!
//! A [`VfioDevice`] is one opened device: a kernel cdev (`/dev/vfio/devices/vfioN`, bound to an
//! iommufd), a kernel group device (`/dev/vfio/<group>` in a type1 container), or an emulated
//! device in the emulated host. Methods answer with the kernel's errno; the contract is
//! `kernel-uapi.md` section 2 (and the v1 migration region of 2.9, which is simply a region).

pub(crate) mod cap_chain;
pub mod kernel;
pub mod mmap;
pub mod region_info;
pub mod uapi;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use crate::errno::Errno;
use crate::host::iommufd::Iommufd;

pub use mmap::MmapArea;
pub use region_info::{REGION_INFO_SIZE, RegionCap, RegionInfo};
pub use uapi::*;

/// The data stream of a migration session (the kernel's `data_fd`).
///
/// Saving states (PRE_COPY, PRE_COPY_P2P, STOP_COPY) read it; RESUMING writes it. The stream is
/// opaque and only its byte order matters, not how it is cut into reads and writes.
pub trait MigrationData: Send + Debug {
    /// Reads the next bytes. `Ok(0)` is the end of the stream (STOP_COPY has nothing more);
    /// `ENOMSG` means PRE_COPY has nothing more for now.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Writes the next bytes of the stream being resumed.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Errno>;

    /// `VFIO_MIG_GET_PRECOPY_INFO`: valid in PRE_COPY and PRE_COPY_P2P only (`EINVAL` else).
    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno>;
}

/// One VFIO device.
pub trait VfioDevice: Send + Sync + Debug {
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_info(&self) -> Result<DeviceInfo, Errno>;

    /// `VFIO_DEVICE_GET_REGION_INFO` into a raw buffer whose first bytes hold `argsz` (bytes
    /// 0..4) and `index` (bytes 8..12); use [`region_info()`] for the parsed reply. A buffer too
    /// small for the capabilities still succeeds, with `argsz` raised to the size needed.
    fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno>;

    /// Reads `buf.len()` bytes at `offset` in region `index` (a `pread` on the device). Returns
    /// the bytes read; fewer than asked only at the end of the region.
    fn region_read(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Writes `buf` at `offset` in region `index` (a `pwrite` on the device).
    fn region_write(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize, Errno>;

    /// Maps `len` bytes at `offset` of region `index` into the process. Only ranges inside the
    /// region's mmap-able areas are allowed (`EINVAL` else).
    fn region_mmap(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno>;

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno>;

    /// `VFIO_DEVICE_SET_IRQS` with its data array as raw bytes (see [`IrqSet`]). Eventfds are
    /// referenced by the device (the kernel takes its own reference), so the caller may close
    /// its copies.
    fn set_irqs(&self, req: &IrqSet, data: &[u8]) -> Result<(), Errno>;

    /// `VFIO_DEVICE_RESET`. A migratable device returns to RUNNING.
    fn reset(&self) -> Result<(), Errno>;

    /// `VFIO_DEVICE_FEATURE` with `PROBE`: whether `feature` supports GET and/or SET as asked.
    fn feature_probe(&self, feature: u32, get: bool, set: bool) -> Result<(), Errno>;

    /// `VFIO_DEVICE_FEATURE_MIGRATION` GET: `VFIO_MIGRATION_*` flags (`ENOTTY` if the device
    /// cannot migrate).
    fn migration_flags(&self) -> Result<u64, Errno>;

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` GET: the current `VFIO_DEVICE_STATE_*`.
    fn mig_state(&self) -> Result<u32, Errno>;

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` SET: moves to `state` through the kernel's
    /// next-step table; returns the data stream when the move starts a session. On failure the
    /// device may sit at an intermediate state (read it back with [`mig_state`](Self::mig_state)).
    fn set_mig_state(&self, state: u32) -> Result<Option<Box<dyn MigrationData>>, Errno>;

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` GET: estimated STOP_COPY length.
    fn mig_data_size(&self) -> Result<u64, Errno>;

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`: `page_size` may be changed by the device.
    fn dma_logging_start(
        &self,
        page_size: &mut u64,
        ranges: &[DmaLoggingRange],
    ) -> Result<(), Errno>;

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
    fn dma_logging_stop(&self) -> Result<(), Errno>;

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`: ORs the pages written since the last report
    /// into `bitmap` (bit n = page `iova + n * page_size`) and clears them in the device's log.
    fn dma_logging_report(&self, req: &DmaLoggingReport, bitmap: &mut [u64]) -> Result<(), Errno>;

    /// `VFIO_DEVICE_BIND_IOMMUFD` (cdev devices only; `EINVAL` for a device opened through its
    /// group, `EBADFD` for a context this device cannot bind to). Returns the device id.
    fn bind_iommufd(&self, iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno>;

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attaches (or atomically replaces) to an IOAS or HWPT;
    /// returns the HWPT id used. With a PASID, only that PASID is attached (6.15+).
    fn attach_pt(&self, pt_id: u32, pasid: Option<u32>) -> Result<u32, Errno>;

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    fn detach_pt(&self, pasid: Option<u32>) -> Result<(), Errno>;

    /// The backend as `Any`.
    fn as_any(&self) -> &dyn Any;
}

/// The largest region-info reply accepted: far above any real capability chain, small enough
/// that a lying backend cannot make us allocate without bound.
const MAX_REGION_INFO_SIZE: usize = 64 * 1024;

/// `VFIO_DEVICE_GET_REGION_INFO`, parsed, with the buffer-size retry every caller needs.
pub fn region_info(device: &dyn VfioDevice, index: u32) -> Result<RegionInfo, Errno> {
    let mut argsz = REGION_INFO_SIZE + 256;
    for _ in 0..4 {
        let mut buf = vec![0u8; argsz];
        buf[0..4].copy_from_slice(&(argsz as u32).to_le_bytes());
        buf[8..12].copy_from_slice(&index.to_le_bytes());
        device.get_region_info(&mut buf)?;
        let needed = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if needed <= argsz {
            return RegionInfo::parse(&buf);
        }
        if needed > MAX_REGION_INFO_SIZE {
            return Err(Errno::EINVAL);
        }
        argsz = needed;
    }
    // A device that keeps asking for more is broken; refuse rather than loop.
    Err(Errno::EINVAL)
}
