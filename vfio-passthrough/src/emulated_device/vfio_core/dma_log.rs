//! Device DMA logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`): the kernel core's validation of the
//! requests, and a device-side tracker fed by a [`LoggingDmaPort`] that wraps the device's DMA
//! port, so that every page the device writes inside a tracked range is recorded, whatever
//! the model.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;
use crate::host::dma::{DmaFault, DmaPort};
use crate::vfio::{DmaLoggingRange, DmaLoggingReport};

/// `LOG_MAX_RANGES`: `PAGE_SIZE / sizeof(struct vfio_device_feature_dma_logging_range)`.
pub const LOG_MAX_RANGES: usize = 256;
/// The smallest page the device tracks.
const MIN_PAGE: u64 = 4096;
/// The largest page the device tracks.
const MAX_PAGE: u64 = 1 << 30;

#[derive(Debug)]
struct Tracking {
    page_shift: u32,
    /// Inclusive `(first, last)` IOVAs of the tracked ranges.
    ranges: Vec<(u64, u64)>,
    /// Dirty pages, by page number (`iova >> page_shift`).
    dirty: BTreeSet<u64>,
}

/// A device's DMA log: off, or tracking writes to a set of IOVA ranges.
#[derive(Debug, Default)]
pub struct DmaLog {
    state: Mutex<Option<Tracking>>,
}

impl DmaLog {
    /// A log that is not tracking.
    pub fn new() -> Arc<Self> {
        Arc::new(DmaLog::default())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Tracking>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether tracking is on.
    pub fn active(&self) -> bool {
        self.lock().is_some()
    }

    /// `DMA_LOGGING_START`: the core's checks (`num_ranges` 0 `EINVAL`, over 256 `E2BIG`,
    /// ranges aligned to `page_size` `EINVAL`, `iova + length` overflowing `EOVERFLOW`,
    /// overlapping `EINVAL`), then the device's (already tracking: `EINVAL`). The device tracks
    /// at a power of two between 4 KiB and 1 GiB and writes the page size it chose back.
    pub fn start(&self, page_size: &mut u64, ranges: &[DmaLoggingRange]) -> Result<(), Errno> {
        if ranges.is_empty() {
            return Err(Errno::EINVAL);
        }
        if ranges.len() > LOG_MAX_RANGES {
            return Err(Errno::E2BIG);
        }
        let align = page_size.wrapping_sub(1);
        let mut spans: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            if r.iova & align != 0 || r.length & align != 0 {
                return Err(Errno::EINVAL);
            }
            r.iova.checked_add(r.length).ok_or(Errno::EOVERFLOW)?;
            let last = (r.iova + r.length).wrapping_sub(1);
            if spans.iter().any(|&(s, l)| r.iova <= l && s <= last) {
                return Err(Errno::EINVAL);
            }
            spans.push((r.iova, last));
        }
        let mut st = self.lock();
        if st.is_some() {
            return Err(Errno::EINVAL);
        }
        let chosen = if *page_size == 0 {
            MIN_PAGE
        } else {
            // ilog2, as the drivers take it, then the device's limits.
            1u64 << (63 - page_size.leading_zeros())
        }
        .clamp(MIN_PAGE, MAX_PAGE);
        *page_size = chosen;
        *st = Some(Tracking {
            page_shift: chosen.trailing_zeros(),
            ranges: spans,
            dirty: BTreeSet::new(),
        });
        Ok(())
    }

    /// `DMA_LOGGING_STOP` (stopping a log that is off succeeds).
    pub fn stop(&self) {
        *self.lock() = None;
    }

    /// `DMA_LOGGING_REPORT`: `page_size` under 4 KiB or not a power of two `EINVAL`,
    /// `iova + length` overflowing `EOVERFLOW`, not tracking `EINVAL`, a bitmap shorter than
    /// `length / page_size` bits `EFAULT`. ORs the dirty pages of the range into `bitmap`
    /// (bit n = page `iova + n * page_size`) and clears them in the log.
    pub fn report(&self, req: &DmaLoggingReport, bitmap: &mut [u64]) -> Result<(), Errno> {
        if req.page_size < MIN_PAGE || !req.page_size.is_power_of_two() {
            return Err(Errno::EINVAL);
        }
        let end = req.iova.checked_add(req.length).ok_or(Errno::EOVERFLOW)?;
        let mut st = self.lock();
        let Some(t) = st.as_mut() else {
            return Err(Errno::EINVAL);
        };
        let bits = req.length.div_ceil(req.page_size);
        if (bitmap.len() as u64).saturating_mul(64) < bits {
            return Err(Errno::EFAULT);
        }
        if req.length == 0 {
            return Ok(());
        }
        let first_page = req.iova >> t.page_shift;
        let last_page = (end - 1) >> t.page_shift;
        let hits: Vec<u64> = t.dirty.range(first_page..=last_page).copied().collect();
        for page in hits {
            t.dirty.remove(&page);
            let page_start = (page << t.page_shift).max(req.iova);
            let page_last = ((page << t.page_shift) + ((1u64 << t.page_shift) - 1)).min(end - 1);
            let first_bit = (page_start - req.iova) / req.page_size;
            let last_bit = (page_last - req.iova) / req.page_size;
            for bit in first_bit..=last_bit {
                bitmap[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        Ok(())
    }

    /// Records a device write of `[iova, iova + len)`: the tracked pages it touches get dirty.
    pub fn record_write(&self, iova: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut st = self.lock();
        let Some(t) = st.as_mut() else { return };
        let last = iova.saturating_add(len - 1);
        for &(s, l) in &t.ranges {
            let (a, b) = (iova.max(s), last.min(l));
            if a > b {
                continue;
            }
            for page in (a >> t.page_shift)..=(b >> t.page_shift) {
                t.dirty.insert(page);
            }
        }
    }
}

/// A device's DMA port with its writes logged in a [`DmaLog`].
#[derive(Debug)]
pub struct LoggingDmaPort {
    inner: Arc<dyn DmaPort>,
    log: Arc<DmaLog>,
}

impl LoggingDmaPort {
    /// Logs the writes made through `inner` into `log`.
    pub fn new(inner: Arc<dyn DmaPort>, log: Arc<DmaLog>) -> Self {
        LoggingDmaPort { inner, log }
    }
}

impl DmaPort for LoggingDmaPort {
    fn read(&self, pasid: Option<u32>, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        self.inner.read(pasid, iova, buf)
    }

    fn write(&self, pasid: Option<u32>, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        let result = self.inner.write(pasid, iova, buf);
        // Writes with a PASID are logged too: device logging tracks the device's requests.
        let written = match &result {
            Ok(()) => buf.len() as u64,
            // The pages before the faulting one were written.
            Err(f) => f.iova.saturating_sub(iova).min(buf.len() as u64),
        };
        self.log.record_write(iova, written);
        result
    }
}

/// The port of a device attached to nothing: every access is blocked.
#[derive(Debug, Default)]
pub struct BlockedDmaPort;

impl DmaPort for BlockedDmaPort {
    fn read(&self, pasid: Option<u32>, iova: u64, _buf: &mut [u8]) -> Result<(), DmaFault> {
        Err(DmaFault {
            iova,
            pasid,
            write: false,
            reason: crate::host::dma::DmaFaultReason::Blocked,
        })
    }

    fn write(&self, pasid: Option<u32>, iova: u64, _buf: &[u8]) -> Result<(), DmaFault> {
        Err(DmaFault {
            iova,
            pasid,
            write: true,
            reason: crate::host::dma::DmaFaultReason::Blocked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(iova: u64, length: u64) -> DmaLoggingRange {
        DmaLoggingRange { iova, length }
    }

    #[test]
    fn start_applies_the_cores_checks_in_order() {
        let log = DmaLog::new();
        let mut ps = 4096;
        assert_eq!(log.start(&mut ps, &[]), Err(Errno::EINVAL));
        let many = vec![range(0, 4096); LOG_MAX_RANGES + 1];
        assert_eq!(log.start(&mut ps, &many), Err(Errno::E2BIG));
        assert_eq!(
            log.start(&mut ps, &[range(0x800, 4096)]),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            log.start(&mut ps, &[range(u64::MAX - 4095, 8192)]),
            Err(Errno::EOVERFLOW)
        );
        assert_eq!(
            log.start(&mut ps, &[range(0, 0x3000), range(0x2000, 0x1000)]),
            Err(Errno::EINVAL)
        );
        assert!(!log.active());
        log.start(&mut ps, &[range(0, 0x3000), range(0x3000, 0x1000)])
            .unwrap();
        assert_eq!(
            log.start(&mut ps, &[range(0x10000, 0x1000)]),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn the_device_chooses_a_page_size_it_can_track() {
        let log = DmaLog::new();
        let mut ps = 512;
        log.start(&mut ps, &[range(0, 4096)]).unwrap();
        assert_eq!(ps, 4096);
        log.stop();
        // Alignment is checked as the kernel's IS_ALIGNED does, even for a size that is not a
        // power of two: 4 MiB & (3 MiB - 1) == 0.
        let mut ps = 3 << 20;
        assert_eq!(log.start(&mut ps, &[range(0, 3 << 20)]), Err(Errno::EINVAL));
        log.start(&mut ps, &[range(0, 4 << 20)]).unwrap();
        assert_eq!(ps, 2 << 20);
    }

    #[test]
    fn reports_set_and_clear_exactly_the_written_tracked_pages() {
        let log = DmaLog::new();
        let mut ps = 4096;
        log.start(&mut ps, &[range(0x10000, 0x10000)]).unwrap();
        log.record_write(0x10ff0, 0x20); // pages 0 and 1 of the range
        log.record_write(0x14000, 1); // page 4
        log.record_write(0x30000, 0x1000); // untracked
        let report = DmaLoggingReport {
            iova: 0x10000,
            length: 0x10000,
            page_size: 4096,
        };
        let mut bitmap = [0u64; 1];
        log.report(&report, &mut bitmap).unwrap();
        assert_eq!(bitmap[0], 0b10011);
        let mut again = [0u64; 1];
        log.report(&report, &mut again).unwrap();
        assert_eq!(again[0], 0);
        assert_eq!(
            log.report(
                &DmaLoggingReport {
                    page_size: 4097,
                    ..report
                },
                &mut again
            ),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            log.report(
                &DmaLoggingReport {
                    length: 65 * 4096,
                    ..report
                },
                &mut again
            ),
            Err(Errno::EFAULT)
        );
        log.stop();
        assert_eq!(log.report(&report, &mut again), Err(Errno::EINVAL));
    }
}
