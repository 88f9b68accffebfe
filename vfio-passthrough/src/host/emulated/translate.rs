//! [`Translator`]: the software IOMMU's DMA path for one bound device, a [`DmaPort`].
//!
//! Every access resolves what the device, or the request's PASID, is attached to at that
//! moment (one look at the context), then goes through that [`Attachment`] as
//! `attachment_dma` describes (blocked; stage 2 of a paging HWPT; the guest's VT-d first stage
//! then stage 2 of a nested one). Every fault is recorded by the device's translator
//! ([`Translator::faults`]) and, when the faulting HWPT is nested with a fault queue,
//! delivered to it as a page request.
//!
//! A request with PASID 0 translates as a request without PASID (VT-d's RID_PASID is 0);
//! a PASID beyond the IOMMU's width is blocked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::host::dma::{DmaFault, DmaPort};

use super::attachment_dma::{self, Failure, PieceOp};
use super::context::Shared;
use super::device::Attachment;
use super::fault_log::{DmaFaultRecord, FaultLog};

/// What the request resolved to: the HWPT id and how to translate through it.
struct Resolved {
    hwpt: Option<u32>,
    attachment: Attachment,
}

/// The DMA path of one device bound to an emulated context (see the module documentation).
///
/// It holds the context weakly: once the device is unbound or the context is gone, every
/// access is blocked.
#[derive(Debug)]
pub struct Translator {
    shared: Weak<Shared>,
    dev_id: u32,
    /// PASID bits the device may use (0: no PASID requests translate).
    pasid_log2: u8,
    bound: AtomicBool,
    faults: FaultLog,
}

impl Translator {
    pub(crate) fn new(shared: &Arc<Shared>, dev_id: u32, pasid_log2: u8) -> Arc<Self> {
        Arc::new(Translator {
            shared: Arc::downgrade(shared),
            dev_id,
            pasid_log2,
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
                let width = self.pasid_log2;
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

    /// Accesses `[iova, iova + len)` through what requests with `pasid` use now.
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
        attachment_dma::run(&resolved.attachment, iova, len, write, op)
            .map_err(|(at, failure)| self.report(&resolved, pasid, at, write, failure))
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
