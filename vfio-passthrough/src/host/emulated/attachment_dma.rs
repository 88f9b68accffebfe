//! One DMA access through an [`Attachment`], as the software IOMMU performs it:
//!
//! - **Blocked**: a fault.
//! - **Paging**: stage 2 only. The IOVA is looked up in the domain and the memory behind it
//!   accessed under the domain's table lock (see `stage2_memory`); a write marks the granules
//!   dirty when tracking is on.
//! - **Nested**: the user's VT-d first stage, then stage 2. The walk (`viommu::vtd`) reads the
//!   guest's table entries and sets their A/D flags through the parent domain, since the table
//!   lives in guest memory the parent maps; the result is cached in the context's IOTLB (stage
//!   1 only, see `iotlb_glue`). The output address then goes through the parent like a paging
//!   access. Rights combine: stage 1 must allow the request (user, writable for a write),
//!   stage 2 must map the output address with read or write rights. A mock nested HWPT (the
//!   selftest's) has no table: its stage 1 is the identity.
//!
//! An access crossing a page (or mapping) boundary is split; a failure leaves the pieces
//! before it done and names the first IOVA that failed.

use std::ops::Range;

use viommu::vtd::{Access, FirstStageFault, Stage2Fault};

use crate::errno::Errno;
use crate::host::dma::{DmaFault, DmaFaultReason};

use super::device::Attachment;
use super::fault_log::FaultStage;
use super::hwpt::NestedTable;
use super::pages::Pages;
use super::stage2_memory::{self, Stage2Error, Stage2Tables};

/// What an access does with each translated piece: `(pages, offset, range of the caller's
/// buffer)`.
pub(crate) type PieceOp<'a> = dyn FnMut(&Pages, u64, Range<usize>) -> Result<(), Errno> + 'a;

/// Why one piece did not translate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    pub(crate) reason: DmaFaultReason,
    pub(crate) stage: FaultStage,
}

impl Failure {
    fn stage2(e: Stage2Error, address: u64) -> Self {
        let reason = match e {
            Stage2Error::NotMapped => DmaFaultReason::NotPresent,
            Stage2Error::Denied => DmaFaultReason::Permission,
            Stage2Error::Backing => DmaFaultReason::Backing,
        };
        Failure {
            reason,
            stage: FaultStage::Stage2 { address },
        }
    }

    fn stage1(f: &FirstStageFault) -> Self {
        let reason = match f {
            FirstStageFault::NotPresent { .. } | FirstStageFault::NonCanonical { .. } => {
                DmaFaultReason::NotPresent
            }
            FirstStageFault::WriteDenied { .. }
            | FirstStageFault::UserPrivilege { .. }
            | FirstStageFault::SupervisorRequestsDisabled { .. } => DmaFaultReason::Permission,
            FirstStageFault::ReservedBits { .. } | FirstStageFault::EntryUpdateContended { .. } => {
                DmaFaultReason::BadTable
            }
            FirstStageFault::Stage2 { fault, .. } => match fault {
                Stage2Fault::NotMapped { .. } | Stage2Fault::BeyondAddressWidth { .. } => {
                    DmaFaultReason::NotPresent
                }
                Stage2Fault::ReadDenied { .. } | Stage2Fault::WriteDenied { .. } => {
                    DmaFaultReason::Permission
                }
                Stage2Fault::MemoryError { .. } => DmaFaultReason::Backing,
            },
        };
        Failure {
            reason,
            stage: FaultStage::Stage1 {
                reason: f.reason(),
                level: f.level(),
            },
        }
    }
}

/// Accesses `[iova, iova + len)` through `attachment` piece by piece with `op`; on failure,
/// the first IOVA that failed and why.
pub(crate) fn run(
    attachment: &Attachment,
    iova: u64,
    len: usize,
    write: bool,
    op: &mut PieceOp<'_>,
) -> Result<(), (u64, Failure)> {
    let mut done = 0usize;
    while done < len {
        let at = iova.wrapping_add(done as u64);
        let start = done;
        let n = piece(
            attachment,
            at,
            (len - done) as u64,
            write,
            &mut |p, off, n| op(p, off, start..start + n as usize),
        )
        .map_err(|f| (at, f))?;
        if n == 0 {
            // Never happens (every piece has at least one byte); refuse rather than spin.
            let stage = FaultStage::Stage2 { address: at };
            let reason = DmaFaultReason::Backing;
            return Err((at, Failure { reason, stage }));
        }
        done += n as usize;
    }
    Ok(())
}

/// Translates and accesses the first piece of `[at, at + remaining)`; its length.
fn piece(
    attachment: &Attachment,
    at: u64,
    remaining: u64,
    write: bool,
    op: &mut dyn FnMut(&Pages, u64, u64) -> Result<(), Errno>,
) -> Result<u64, Failure> {
    let mut stage2 = |domain, addr, len| {
        stage2_memory::access(domain, addr, len, write, |p, off, n| op(p, off, n))
            .map(|((), n)| n)
            .map_err(|e| Failure::stage2(e, addr))
    };
    match attachment {
        Attachment::Blocked => Err(Failure {
            reason: DmaFaultReason::Blocked,
            stage: FaultStage::Blocked,
        }),
        Attachment::Paging(domain) => stage2(domain, at, remaining),
        Attachment::Nested(table) => {
            let (gpa, room) = stage1(table, at, write)?;
            stage2(table.parent(), gpa, remaining.min(room))
        }
    }
}

/// Stage 1 of a nested table: the guest physical address of `at` and how many bytes from it
/// the same stage-1 page covers.
fn stage1(table: &NestedTable, at: u64, write: bool) -> Result<(u64, u64), Failure> {
    let config = match table.first_stage_config() {
        None => return Ok((at, u64::MAX)),
        Some(Ok(config)) => config,
        Some(Err(_)) => {
            return Err(Failure {
                reason: DmaFaultReason::BadTable,
                stage: FaultStage::Stage1Config,
            });
        }
    };
    let access = if write { Access::WRITE } else { Access::READ };
    let mut tables = Stage2Tables::new(table.parent());
    let t = table
        .translate_stage1(&config, at, access, &mut tables)
        .map_err(|f| Failure::stage1(&f))?;
    Ok((t.output, t.bytes_to_page_end()))
}

impl Attachment {
    /// Reads `buf.len()` bytes at `iova` through this attachment as the software IOMMU does
    /// (stage 1 through the IOTLB, stage 2, flags and dirty bits), for DMA paths that find
    /// their attachment elsewhere (a type1 group's domain). Nothing is recorded; `pasid` only
    /// fills the fault.
    pub fn dma_read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let len = buf.len();
        run(self, iova, len, false, &mut |pages, offset, range| {
            pages.read(offset, &mut buf[range])
        })
        .map_err(|(at, f)| dma_fault(at, pasid, false, f.reason))
    }

    /// Writes `buf` at `iova` through this attachment; see [`Attachment::dma_read`].
    pub fn dma_write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        run(self, iova, buf.len(), true, &mut |pages, offset, range| {
            pages.write(offset, &buf[range])
        })
        .map_err(|(at, f)| dma_fault(at, pasid, true, f.reason))
    }
}

fn dma_fault(iova: u64, pasid: Option<u32>, write: bool, reason: DmaFaultReason) -> DmaFault {
    DmaFault {
        iova,
        pasid,
        write,
        reason,
    }
}
