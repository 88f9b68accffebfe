//! [`Iommufd`] for [`EmulatedIommufd`]: each call takes the context lock and runs the handler.

use std::any::Any;
use std::fs::File;
use std::os::fd::RawFd;

use crate::errno::Errno;
use crate::host::iommufd::Iommufd;
use crate::host::iommufd::uapi::*;

use super::context::EmulatedIommufd;
use super::features::Ioctl;

impl Iommufd for EmulatedIommufd {
    fn destroy(&self, id: u32) -> Result<(), Errno> {
        let mut ctx = self.lock();
        ctx.features().ioctl(Ioctl::Destroy)?;
        ctx.destroy(id)
    }

    fn ioas_alloc(&self, req: &mut IoasAlloc) -> Result<(), Errno> {
        self.lock().ioas_alloc(req)
    }

    fn ioas_allow_iovas(&self, req: &IoasAllowIovas, ranges: &[IovaRange]) -> Result<(), Errno> {
        self.lock().ioas_allow_iovas(req, ranges)
    }

    fn ioas_iova_ranges(
        &self,
        req: &mut IoasIovaRanges,
        out: &mut [IovaRange],
    ) -> Result<(), Errno> {
        self.lock().ioas_iova_ranges(req, out)
    }

    unsafe fn ioas_map(&self, req: &mut IoasMap) -> Result<(), Errno> {
        self.lock().ioas_map(req)
    }

    fn ioas_map_file(&self, req: &mut IoasMapFile) -> Result<(), Errno> {
        self.lock().ioas_map_file(req)
    }

    fn ioas_copy(&self, req: &mut IoasCopy) -> Result<(), Errno> {
        self.lock().ioas_copy(req)
    }

    fn ioas_unmap(&self, req: &mut IoasUnmap) -> Result<(), Errno> {
        self.lock().ioas_unmap(req)
    }

    fn option(&self, req: &mut IommuOption) -> Result<(), Errno> {
        self.lock().option(req)
    }

    fn vfio_ioas(&self, req: &mut VfioIoas) -> Result<(), Errno> {
        self.lock().vfio_ioas(req)
    }

    fn hwpt_alloc(&self, req: &mut HwptAlloc, data: &[u8]) -> Result<(), Errno> {
        self.lock().hwpt_alloc(req, data)
    }

    fn get_hw_info(&self, req: &mut HwInfo, data: &mut [u8]) -> Result<(), Errno> {
        self.lock().get_hw_info(req, data)
    }

    fn hwpt_set_dirty_tracking(&self, req: &HwptSetDirtyTracking) -> Result<(), Errno> {
        self.lock().hwpt_set_dirty_tracking(req)
    }

    fn hwpt_get_dirty_bitmap(
        &self,
        req: &HwptGetDirtyBitmap,
        bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        self.lock().hwpt_get_dirty_bitmap(req, bitmap)
    }

    fn hwpt_invalidate(&self, req: &mut HwptInvalidate, entries: &[u8]) -> Result<(), Errno> {
        self.lock().hwpt_invalidate(req, entries)
    }

    fn fault_queue_alloc(&self, req: &mut FaultQueueAlloc) -> Result<File, Errno> {
        self.lock().fault_queue_alloc(req)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
