//! [`Translator`]: the software IOMMU's DMA path for one bound device, a [`DmaPort`].
//!
//! Every access resolves what the device, or the request's PASID, is attached to at that
//! moment (one look at the context), then translates page by page:
//!
//! - **Blocked**: a fault.
//! - **Paging HWPT**: stage 2 only. The IOVA is looked up in the domain and the memory behind
//!   it accessed under the domain's table lock (see `stage2_memory`); a write marks the
//!   granules dirty when tracking is on.
//! - **Nested HWPT**: the user's VT-d first stage, then stage 2. The walk (`viommu::vtd`)
//!   reads the guest's table entries and sets their A/D flags through the parent domain, since
//!   the table lives in guest memory the parent maps; the result is cached in the context's
//!   IOTLB (stage 1 only, see `iotlb_glue`). The output address then goes through the parent
//!   like a paging access. Rights combine: stage 1 must allow the request (user, writable for
//!   a write), stage 2 must map the output address with read or write rights. A mock nested
//!   HWPT (the selftest's) has no table: its stage 1 is the identity.
//!
//! An access crossing a page (or mapping) boundary is split; a fault leaves the pieces before
//! it done and reports the first IOVA that failed. Every fault is recorded by the device's
//! translator ([`Translator::faults`]) and, when the faulting HWPT is nested with a fault
//! queue, delivered to it as a page request.
//!
//! A request with PASID 0 translates as a request without PASID (VT-d's RID_PASID is 0);
//! a PASID beyond the IOMMU's width is blocked.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use viommu::vtd::{Access, FirstStageConfig, FirstStageFault, FirstStageFlags, Stage2Fault};

use crate::errno::Errno;
use crate::host::dma::{DmaFault, DmaFaultReason, DmaPort};

use super::context::Shared;
use super::device::Attachment;
use super::fault_log::{DmaFaultRecord, FaultLog, FaultStage};
use super::hwpt::{NestedTable, Stage1};
use super::pages::Pages;
use super::profile::IommuProfile;
use super::stage2_memory::{self, Stage2Error, Stage2Tables};
use super::vtd::VTD_ADDRESS_WIDTH;

/// The operation an access performs on each translated piece: `(pages, offset, range of the
/// caller's buffer)`.
type PieceOp<'a> = dyn FnMut(&Pages, u64, Range<usize>) -> Result<(), Errno> + 'a;

/// What the request resolved to: the HWPT id and how to translate through it.
struct Resolved {
    hwpt: Option<u32>,
    attachment: Attachment,
}

/// Why one piece did not translate.
struct Failure {
    reason: DmaFaultReason,
    stage: FaultStage,
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

/// The DMA path of one device bound to an emulated context (see the module documentation).
///
/// It holds the context weakly: once the device is unbound or the context is gone, every
/// access is blocked.
#[derive(Debug)]
pub struct Translator {
    shared: Weak<Shared>,
    dev_id: u32,
    profile: IommuProfile,
    bound: AtomicBool,
    faults: FaultLog,
}

impl Translator {
    pub(crate) fn new(shared: &Arc<Shared>, dev_id: u32, profile: IommuProfile) -> Arc<Self> {
        Arc::new(Translator {
            shared: Arc::downgrade(shared),
            dev_id,
            profile,
            bound: AtomicBool::new(true),
            faults: FaultLog::default(),
        })
    }

    /// The device is being unbound: block every access from now on (its DEVICE id may be
    /// reused by another device).
    pub(crate) fn unbind(&self) {
        self.bound.store(false, Ordering::Release);
    }

    /// The DEVICE object id of the device.
    pub fn dev_id(&self) -> u32 {
        self.dev_id
    }

    /// The faults recorded so far (the most recent
    /// [`FAULT_LOG_CAPACITY`](super::fault_log::FAULT_LOG_CAPACITY)), oldest first.
    pub fn faults(&self) -> Vec<DmaFaultRecord> {
        self.faults.records()
    }

    /// Removes and returns the faults recorded so far, and how many older ones were dropped
    /// for room since the last call.
    pub fn take_faults(&self) -> (Vec<DmaFaultRecord>, u64) {
        self.faults.take()
    }

    /// What requests with `pasid` translate through now.
    fn resolve(&self, pasid: Option<u32>) -> Resolved {
        let blocked = Resolved {
            hwpt: None,
            attachment: Attachment::Blocked,
        };
        if !self.bound.load(Ordering::Acquire) {
            return blocked;
        }
        let pasid = match pasid {
            Some(0) | None => None,
            Some(p) => {
                let width = self.profile.max_pasid_log2();
                if width == 0 || u64::from(p) >= 1u64 << width {
                    return blocked;
                }
                Some(p)
            }
        };
        let Some(shared) = self.shared.upgrade() else {
            return blocked;
        };
        let found = shared.lock().attachment_of(self.dev_id, pasid);
        match found {
            Ok((hwpt, attachment)) => Resolved { hwpt, attachment },
            Err(_) => blocked,
        }
    }

    /// Accesses `[iova, iova + len)` piece by piece with `op`.
    fn run(
        &self,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        write: bool,
        op: &mut PieceOp<'_>,
    ) -> Result<(), DmaFault> {
        if len == 0 {
            return Ok(());
        }
        let resolved = self.resolve(pasid);
        let mut done = 0usize;
        while done < len {
            let at = iova.wrapping_add(done as u64);
            let remaining = (len - done) as u64;
            let start = done;
            let step = self.step(
                &resolved.attachment,
                at,
                remaining,
                write,
                &mut |p, off, n| op(p, off, start..start + n as usize),
            );
            match step {
                Ok(n) if n > 0 => done += n as usize,
                // Never happens (every piece has at least one byte); refuse rather than spin.
                Ok(_) => {
                    let failure = Failure {
                        reason: DmaFaultReason::Backing,
                        stage: FaultStage::Stage2 { address: at },
                    };
                    return Err(self.report(&resolved, pasid, at, write, failure));
                }
                Err(failure) => return Err(self.report(&resolved, pasid, at, write, failure)),
            }
        }
        Ok(())
    }

    /// Translates and accesses the first piece of `[at, at + remaining)`; its length.
    fn step(
        &self,
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
                let (gpa, room) = self.stage1(table, at, write)?;
                stage2(table.parent(), gpa, remaining.min(room))
            }
        }
    }

    /// Stage 1 of a nested table: the guest physical address of `at` and how many bytes from
    /// it the same stage-1 page covers.
    fn stage1(&self, table: &NestedTable, at: u64, write: bool) -> Result<(u64, u64), Failure> {
        let s1 = match table.stage1() {
            Stage1::Mock { .. } => return Ok((at, u64::MAX)),
            Stage1::Vtd(s1) => s1,
        };
        let known = FirstStageFlags::SRE | FirstStageFlags::EAFE | FirstStageFlags::WPE;
        let one_gib = match self.profile {
            IommuProfile::Vtd(v) => v.pages_1g,
            IommuProfile::Mock { .. } => false,
        };
        let config = FirstStageConfig::from_hwpt_vtd_s1(
            s1.flags & known,
            s1.pgtbl_addr,
            s1.addr_width,
            VTD_ADDRESS_WIDTH as u8,
        )
        .map_err(|_| Failure {
            reason: DmaFaultReason::BadTable,
            stage: FaultStage::Stage1Config,
        })?
        .with_one_gib_pages(one_gib);
        let access = if write { Access::WRITE } else { Access::READ };
        let mut tables = Stage2Tables::new(table.parent());
        let t = table
            .translate_stage1(&config, at, access, &mut tables)
            .map_err(|f| Failure::stage1(&f))?;
        Ok((t.output, t.bytes_to_page_end()))
    }

    /// Records a failed piece (and delivers it to the fault queue of a nested HWPT that has
    /// one); the fault the port reports.
    fn report(
        &self,
        resolved: &Resolved,
        pasid: Option<u32>,
        iova: u64,
        write: bool,
        failure: Failure,
    ) -> DmaFault {
        let fault = DmaFault {
            iova,
            pasid,
            write,
            reason: failure.reason,
        };
        log::debug!(
            "emulated IOMMU: device {}: {fault} ({:?})",
            self.dev_id,
            failure.stage
        );
        let queue = match &resolved.attachment {
            Attachment::Nested(table) => table.fault_queue().map(Arc::as_ref),
            _ => None,
        };
        let record = DmaFaultRecord {
            dev_id: self.dev_id,
            fault,
            stage: failure.stage,
            hwpt: resolved.hwpt,
            cookie: None,
        };
        self.faults.record(record, queue);
        fault
    }
}

impl DmaPort for Translator {
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let len = buf.len();
        self.run(pasid, iova, len, false, &mut |pages, offset, range| {
            pages.read(offset, &mut buf[range])
        })
    }

    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        self.run(pasid, iova, buf.len(), true, &mut |pages, offset, range| {
            pages.write(offset, &buf[range])
        })
    }
}
