//! The DMA faults of one device: what the software IOMMU records for every failed
//! translation ([`DmaFaultRecord`]), kept for inspection as a fault recording register file
//! keeps them (the most recent ones), and the page request sent to the fault queue of the
//! faulting nested HWPT when it has one.
//!
//! Like a page request queue, a fault queue holds a bounded number of requests: while
//! [`MAX_PENDING_GROUPS`] groups await a response, further faults are recorded but not
//! delivered, so a device faulting in a loop at a user that never answers cannot grow the
//! queue without bound.

use std::collections::VecDeque;
use std::sync::Mutex;

use viommu::vtd::FaultReason;

use crate::host::dma::DmaFault;
use crate::host::iommufd::uapi::{IOMMU_PGFAULT_PERM_READ, IOMMU_PGFAULT_PERM_WRITE};

use super::fault::{FaultQueue, PageRequest};

/// How many records a device keeps; older ones are dropped (and counted).
pub const FAULT_LOG_CAPACITY: usize = 256;
/// Page request group indexes are 9 bits (PCIe PRG index).
const GROUP_INDEXES: u32 = 512;
/// Groups a fault queue may hold unanswered before faults stop being delivered to it.
pub const MAX_PENDING_GROUPS: usize = 512;

/// Where a translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStage {
    /// The device (or the request's PASID) is attached to nothing.
    Blocked,
    /// The nested HWPT's first-stage configuration cannot be walked (a root table address
    /// that is unaligned or beyond the address width, an unknown paging mode).
    Stage1Config,
    /// The first-stage walk failed: the VT-d fault reason and the level of the entry where
    /// the walk stopped (`None` when no table was read).
    Stage1 {
        /// The VT-d fault reason.
        reason: FaultReason,
        /// The level of the entry (1 = page table ... 5 = FS-PML5).
        level: Option<u8>,
    },
    /// Stage 2 refused `address`: the IOVA itself for a paging HWPT, the guest physical
    /// address that stage 1 produced for a nested one.
    Stage2 {
        /// The address stage 2 was asked to translate.
        address: u64,
    },
}

/// One failed translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFaultRecord {
    /// The DEVICE object id of the requester.
    pub dev_id: u32,
    /// The IOVA, PASID, direction and reason (what the DMA port reported).
    pub fault: DmaFault,
    /// Where it failed.
    pub stage: FaultStage,
    /// The HWPT the request translated through (`None` when blocked).
    pub hwpt: Option<u32>,
    /// The cookie of the page request group delivered to the HWPT's fault queue, if it has
    /// one and it had room.
    pub cookie: Option<u32>,
}

#[derive(Debug, Default)]
struct LogState {
    records: VecDeque<DmaFaultRecord>,
    dropped: u64,
    next_group: u32,
}

/// The fault records of one device.
#[derive(Debug, Default)]
pub(crate) struct FaultLog {
    state: Mutex<LogState>,
}

impl FaultLog {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `record`, first delivering it as a one-request page request group to `queue`
    /// (the page-aligned address, read or write permission) when there is one with room.
    pub(crate) fn record(&self, mut record: DmaFaultRecord, queue: Option<&FaultQueue>) {
        let mut st = self.state();
        let queue = queue.filter(|q| {
            let room = q.awaiting().len() < MAX_PENDING_GROUPS;
            if !room {
                log::warn!(
                    "emulated IOMMU: fault queue full, page request of device {} at {:#x} not delivered",
                    record.dev_id,
                    record.fault.iova
                );
            }
            room
        });
        if let Some(queue) = queue {
            let grpid = st.next_group;
            st.next_group = (grpid + 1) % GROUP_INDEXES;
            let perm = if record.fault.write {
                IOMMU_PGFAULT_PERM_WRITE
            } else {
                IOMMU_PGFAULT_PERM_READ
            };
            record.cookie = Some(queue.report(&[PageRequest {
                dev_id: record.dev_id,
                pasid: record.fault.pasid,
                grpid,
                perm,
                addr: record.fault.iova & !0xfff,
            }]));
        }
        if st.records.len() >= FAULT_LOG_CAPACITY {
            st.records.pop_front();
            st.dropped += 1;
        }
        st.records.push_back(record);
    }

    /// The records kept, oldest first.
    pub(crate) fn records(&self) -> Vec<DmaFaultRecord> {
        self.state().records.iter().copied().collect()
    }

    /// Removes and returns the records kept, oldest first, and how many were dropped for
    /// room since the last call.
    pub(crate) fn take(&self) -> (Vec<DmaFaultRecord>, u64) {
        let mut st = self.state();
        let dropped = std::mem::take(&mut st.dropped);
        (st.records.drain(..).collect(), dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::dma::DmaFaultReason;
    use crate::host::iommufd::uapi::{HwptPageResponse, HwptPgfault, IOMMUFD_PAGE_RESP_INVALID};
    use std::io::Read;

    fn record(iova: u64, write: bool) -> DmaFaultRecord {
        DmaFaultRecord {
            dev_id: 3,
            fault: DmaFault {
                iova,
                pasid: Some(9),
                write,
                reason: DmaFaultReason::NotPresent,
            },
            stage: FaultStage::Stage2 { address: iova },
            hwpt: Some(4),
            cookie: None,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_records_and_counts_the_others() {
        let log = FaultLog::default();
        for i in 0..FAULT_LOG_CAPACITY as u64 + 3 {
            log.record(record(i << 12, false), None);
        }
        let kept = log.records();
        assert_eq!(kept.len(), FAULT_LOG_CAPACITY);
        assert_eq!(kept[0].fault.iova, 3 << 12);
        let (taken, dropped) = log.take();
        assert_eq!((taken.len(), dropped), (FAULT_LOG_CAPACITY, 3));
        assert!(log.records().is_empty());
    }

    #[test]
    fn a_fault_with_a_queue_becomes_a_page_request_with_a_cookie() {
        let (queue, mut user) = FaultQueue::new().unwrap();
        let log = FaultLog::default();
        log.record(record(0x12_3456, true), Some(&queue));
        let mut buf = [0u8; HwptPgfault::SIZE];
        user.read_exact(&mut buf).unwrap();
        let got = HwptPgfault::from_bytes(&buf).unwrap();
        assert_eq!((got.dev_id, got.pasid, got.addr), (3, 9, 0x12_3000));
        assert_eq!(got.perm, IOMMU_PGFAULT_PERM_WRITE);
        assert_eq!(log.records()[0].cookie, Some(got.cookie));
    }

    #[test]
    fn a_full_fault_queue_takes_no_more_page_requests_until_answered() {
        let (queue, mut user) = FaultQueue::new().unwrap();
        let log = FaultLog::default();
        for i in 0..MAX_PENDING_GROUPS as u64 + 1 {
            log.record(record(i << 12, false), Some(&queue));
        }
        let records = log.records();
        let (last, kept) = records.split_last().unwrap();
        assert!(kept.iter().all(|r| r.cookie.is_some()));
        assert_eq!(last.cookie, None, "the queue was full");
        let resp = HwptPageResponse {
            cookie: 7,
            code: IOMMUFD_PAGE_RESP_INVALID,
        };
        std::io::Write::write_all(&mut user, &resp.to_bytes()).unwrap();
        log.record(record(0, true), Some(&queue));
        assert_eq!(log.records().last().unwrap().cookie, Some(7));
    }
}
