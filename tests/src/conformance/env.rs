//! [`Env`]: what a case works with: the context, buffers, call helpers and expectations.

use std::fmt::Debug;
use std::os::fd::{AsRawFd, RawFd};

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{IommufdDevice, IommufdSelftest, MockDomain};

use super::backend::{Backend, BackendInfo, Opened};
use super::case::Fail;
use super::memory::{Memory, PAGE};

/// Read and write, the usual map flags.
pub const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/// A buffer handed to a case: where it is and which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    index: usize,
}

impl Buf {
    /// Address of page `i`.
    pub fn page(&self, i: u64) -> u64 {
        self.addr + i * PAGE
    }
}

/// The environment of one case on one backend.
pub struct Env<'a> {
    /// The context.
    pub ctx: &'a dyn IommufdSelftest,
    /// Facts about the backend.
    pub info: BackendInfo,
    opened: &'a Opened,
    backend: &'a dyn Backend,
    memory: &'a mut Memory,
}

impl Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl<'a> Env<'a> {
    pub(crate) fn new(
        opened: &'a Opened,
        backend: &'a dyn Backend,
        memory: &'a mut Memory,
    ) -> Self {
        Env {
            ctx: opened.ctx.as_ref(),
            info: opened.info,
            opened,
            backend,
            memory,
        }
    }

    // ---- memory -------------------------------------------------------------------------

    /// A populated buffer of `pages` pages, 2 MiB aligned (so automatic IOVAs take their
    /// alignment from the length).
    pub fn buffer(&mut self, pages: u64) -> Buf {
        self.aligned_buffer(pages, 2 << 20)
    }

    /// A populated buffer of `pages` pages aligned to `align`.
    pub fn aligned_buffer(&mut self, pages: u64, align: u64) -> Buf {
        let index = self.memory.alloc(pages, align);
        let b = self.memory.get(index);
        Buf {
            addr: b.addr(),
            len: b.len(),
            index,
        }
    }

    /// A memfd of `pages` pages mapped shared into the process: the buffer and the fd.
    pub fn memfd(&mut self, pages: u64) -> (Buf, RawFd) {
        let index = self.memory.memfd(pages);
        let b = self.memory.get(index);
        let fd = b.file().map_or(-1, |f| f.as_raw_fd());
        (
            Buf {
                addr: b.addr(),
                len: b.len(),
                index,
            },
            fd,
        )
    }

    /// Unmaps `count` pages of `buf` from page `first`.
    pub fn hole(&self, buf: Buf, first: u64, count: u64) {
        self.memory.get(buf.index).unmap_pages(first, count);
    }

    /// Makes `buf` read-only.
    pub fn read_only(&self, buf: Buf) {
        self.memory.get(buf.index).protect(libc::PROT_READ);
    }

    /// Binds a device behind a VT-d IOMMU (cases that need one declare it).
    pub fn vtd_device(&self) -> Result<Box<dyn IommufdDevice>, Fail> {
        let bind = self
            .opened
            .vtd_device
            .as_ref()
            .ok_or_else(|| Fail("backend cannot bind a VT-d device".into()))?;
        self.ok("bind a VT-d device", bind())
    }

    // ---- expectations -------------------------------------------------------------------

    /// `r` must succeed; its value.
    pub fn ok<T>(&self, step: &str, r: Result<T, Errno>) -> Result<T, Fail> {
        r.map_err(|e| Fail(format!("{step}: expected success, got {e:?}")))
    }

    /// `r` must fail with `want`.
    pub fn err<T: Debug>(&self, step: &str, r: Result<T, Errno>, want: Errno) -> Result<(), Fail> {
        match r {
            Err(e) if e == want => Ok(()),
            Err(e) => Err(Fail(format!("{step}: expected {want:?}, got {e:?}"))),
            Ok(v) => Err(Fail(format!(
                "{step}: expected {want:?}, got success ({v:?})"
            ))),
        }
    }

    /// `got` must equal `want`.
    pub fn eq<T: PartialEq + Debug>(&self, step: &str, got: T, want: T) -> Result<(), Fail> {
        if got == want {
            Ok(())
        } else {
            Err(Fail(format!("{step}: expected {want:?}, got {got:?}")))
        }
    }

    /// `cond` must hold.
    pub fn check(&self, step: &str, cond: bool) -> Result<(), Fail> {
        if cond {
            Ok(())
        } else {
            Err(Fail(format!("{step}: does not hold")))
        }
    }

    /// The IOAS holds exactly `regions` (`(iova, length, user_va)`): with a mock paging HWPT,
    /// each region maps its memory (`MD_CHECK_MAP`); then an unmap-all must report exactly
    /// their total. This empties the IOAS, so it ends a case (or a part of one).
    pub fn expect_exactly(
        &self,
        ioas: u32,
        mock_hwpt: Option<u32>,
        regions: &[(u64, u64, u64)],
    ) -> Result<(), Fail> {
        if let Some(hwpt) = mock_hwpt {
            for &(iova, len, va) in regions {
                self.ok(
                    &format!("MD_CHECK_MAP of [{iova:#x}, +{len:#x})"),
                    self.ctx.mock_check_map(hwpt, iova, len, va),
                )?;
            }
        }
        let total: u64 = regions.iter().map(|r| r.1).sum();
        let unmapped = self.ok("unmap-all", self.unmap_all(ioas))?;
        self.eq("bytes reported by unmap-all", unmapped, total)
    }

    // ---- calls --------------------------------------------------------------------------

    /// A new IOAS (must succeed).
    pub fn ioas(&self) -> Result<u32, Fail> {
        let mut a = IoasAlloc::default();
        self.ok("IOMMU_IOAS_ALLOC", self.ctx.ioas_alloc(&mut a))?;
        Ok(a.out_ioas_id)
    }

    /// `IOMMU_IOAS_MAP` with `flags`; the IOVA used.
    pub fn map(
        &self,
        ioas_id: u32,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64, Errno> {
        let mut m = IoasMap {
            flags,
            ioas_id,
            reserved: 0,
            user_va,
            length,
            iova,
        };
        // SAFETY: the case's buffers outlive the context (the runner drops the context first),
        // and the suite never accesses them while mapped except through the uAPI.
        unsafe { self.ctx.ioas_map(&mut m) }.map(|()| m.iova)
    }

    /// Read/write map at a fixed IOVA.
    pub fn map_fixed(
        &self,
        ioas_id: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<(), Errno> {
        self.map(
            ioas_id,
            RW | IOMMU_IOAS_MAP_FIXED_IOVA,
            user_va,
            length,
            iova,
        )
        .map(|_| ())
    }

    /// Read/write map at an IOVA the kernel chooses.
    pub fn map_auto(&self, ioas_id: u32, user_va: u64, length: u64) -> Result<u64, Errno> {
        self.map(ioas_id, RW, user_va, length, 0)
    }

    /// `IOMMU_IOAS_UNMAP`; the bytes unmapped.
    pub fn unmap(&self, ioas_id: u32, iova: u64, length: u64) -> Result<u64, Errno> {
        let mut u = IoasUnmap {
            ioas_id,
            iova,
            length,
        };
        self.ctx.ioas_unmap(&mut u).map(|()| u.length)
    }

    /// Unmap of everything.
    pub fn unmap_all(&self, ioas_id: u32) -> Result<u64, Errno> {
        self.unmap(ioas_id, 0, u64::MAX)
    }

    /// `IOMMU_IOAS_COPY`; the destination IOVA.
    pub fn copy(
        &self,
        flags: u32,
        dst: u32,
        src: u32,
        length: u64,
        dst_iova: u64,
        src_iova: u64,
    ) -> Result<u64, Errno> {
        let mut c = IoasCopy {
            flags,
            dst_ioas_id: dst,
            src_ioas_id: src,
            length,
            dst_iova,
            src_iova,
        };
        self.ctx.ioas_copy(&mut c).map(|()| c.dst_iova)
    }

    /// `IOMMU_TEST_OP_MOCK_DOMAIN[_FLAGS]` on `pt_id`.
    pub fn mock_flags(&self, pt_id: u32, dev_flags: u32) -> Result<MockDomain, Errno> {
        let mut d = MockDomain {
            pt_id,
            dev_flags,
            ..Default::default()
        };
        self.ctx.mock_domain(&mut d).map(|()| d)
    }

    /// A plain mock device attached to `pt_id` (must succeed).
    pub fn mock(&self, pt_id: u32) -> Result<MockDomain, Fail> {
        self.ok("IOMMU_TEST_OP_MOCK_DOMAIN", self.mock_flags(pt_id, 0))
    }

    /// `IOMMU_IOAS_IOVA_RANGES` with room for 16 ranges: the ranges and the alignment.
    pub fn ranges(&self, ioas_id: u32) -> Result<(Vec<IovaRange>, u64), Errno> {
        let mut out = [IovaRange::default(); 16];
        let mut r = IoasIovaRanges {
            ioas_id,
            num_iovas: 16,
            ..Default::default()
        };
        self.ctx.ioas_iova_ranges(&mut r, &mut out)?;
        Ok((out[..r.num_iovas as usize].to_vec(), r.out_iova_alignment))
    }

    /// `IOMMU_HWPT_ALLOC`; the new HWPT.
    pub fn hwpt(
        &self,
        flags: u32,
        dev_id: u32,
        pt_id: u32,
        data_type: u32,
        data: &[u8],
    ) -> Result<u32, Errno> {
        let mut h = HwptAlloc {
            flags,
            dev_id,
            pt_id,
            data_type,
            ..Default::default()
        };
        self.ctx.hwpt_alloc(&mut h, data).map(|()| h.out_hwpt_id)
    }

    /// A mock nested HWPT over `parent` with the default IOTLB seed.
    pub fn nested_mock(&self, flags: u32, dev_id: u32, parent: u32) -> Result<u32, Errno> {
        self.hwpt(
            flags,
            dev_id,
            parent,
            vfio_passthrough::host::iommufd::IOMMU_HWPT_DATA_SELFTEST,
            &vfio_passthrough::host::iommufd::IOMMU_TEST_IOTLB_DEFAULT.to_le_bytes(),
        )
    }

    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    pub fn set_dirty(&self, hwpt_id: u32, enable: bool) -> Result<(), Errno> {
        self.ctx.hwpt_set_dirty_tracking(&HwptSetDirtyTracking {
            flags: if enable {
                IOMMU_HWPT_DIRTY_TRACKING_ENABLE
            } else {
                0
            },
            hwpt_id,
            reserved: 0,
        })
    }

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP` into a bitmap pre-filled with `fill`.
    pub fn dirty_bitmap(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        flags: u32,
        fill: u64,
    ) -> Result<Vec<u64>, Errno> {
        let bits = length / page_size.max(1);
        let mut bitmap = vec![fill; bits.div_ceil(64).max(1) as usize];
        let req = HwptGetDirtyBitmap {
            hwpt_id,
            flags,
            reserved: 0,
            iova,
            length,
            page_size,
        };
        self.ctx
            .hwpt_get_dirty_bitmap(&req, &mut bitmap)
            .map(|()| bitmap)
    }

    /// `IOMMU_HWPT_INVALIDATE` of mock entries `(flags, iotlb_id)`; the entries handled, or
    /// the errno and the entries handled.
    pub fn invalidate_mock(
        &self,
        hwpt_id: u32,
        data_type: u32,
        entry_len: u32,
        entries: &[(u32, u32)],
    ) -> Result<u32, (Errno, u32)> {
        let mut bytes = Vec::new();
        for &(flags, id) in entries {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&flags.to_le_bytes());
            e[4..].copy_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&e);
            bytes.resize(bytes.len() + (entry_len as usize).saturating_sub(8), 0);
        }
        if entry_len < 8 {
            bytes.truncate(entry_len as usize * entries.len());
        }
        let mut req = HwptInvalidate {
            hwpt_id,
            data_type,
            entry_len,
            entry_num: entries.len() as u32,
            reserved: 0,
        };
        match self.ctx.hwpt_invalidate(&mut req, &bytes) {
            Ok(()) => Ok(req.entry_num),
            Err(e) => Err((e, req.entry_num)),
        }
    }

    /// `IOMMU_OPTION`; `val64` after the call.
    pub fn option(
        &self,
        option_id: u32,
        op: u16,
        object_id: u32,
        val64: u64,
    ) -> Result<u64, Errno> {
        let mut o = IommuOption {
            option_id,
            op,
            reserved: 0,
            object_id,
            val64,
        };
        self.ctx.option(&mut o).map(|()| o.val64)
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`.
    pub fn allow(&self, ioas_id: u32, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        let list: Vec<IovaRange> = ranges
            .iter()
            .map(|&(start, last)| IovaRange { start, last })
            .collect();
        self.ctx.ioas_allow_iovas(
            &IoasAllowIovas {
                ioas_id,
                reserved: 0,
            },
            &list,
        )
    }

    /// `IOMMU_IOAS_IOVA_RANGES` alignment only.
    pub fn alignment(&self, ioas_id: u32) -> Result<u64, Errno> {
        self.ranges(ioas_id).map(|(_, a)| a)
    }
}
