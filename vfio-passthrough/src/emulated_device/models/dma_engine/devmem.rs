//! The DMA engine's 1 MiB of device memory, at the start of BAR 2, and how pre-copy finds the
//! pages that changed.
//!
//! Users write device memory through their mapping of BAR 2, which the device never sees (as
//! on real hardware: a store through a BAR mapping is a posted write the device does not
//! report). So pre-copy does what a device without write tracking on its memory must do: it
//! keeps a snapshot of what it last sent and, at each pre-copy read, compares the memory with
//! it page by page; the pages that differ are sent again (and the snapshot updated). DMA into
//! device memory is caught the same way. The cost is one 1 MiB comparison per pass, paid only
//! while a saving session is open.

use std::sync::Arc;

use crate::emulated_device::vfio_core::{SharedMemory, SharedMemoryError};
use crate::errno::Errno;

/// Bytes of device memory.
pub const DEVMEM_SIZE: u64 = 1 << 20;
/// Bytes of BAR 2 (device memory, the MSI-X table and PBA page, then reserved memory).
pub const BAR2_SIZE: u64 = 2 << 20;
/// The granule of pre-copy change tracking.
pub const TRACK_PAGE: usize = 4096;

/// Device memory and its pre-copy snapshot.
#[derive(Debug)]
pub struct DeviceMemory {
    bar: Arc<SharedMemory>,
    snapshot: Option<Vec<u8>>,
}

impl DeviceMemory {
    /// Zeroed memory backing all of BAR 2.
    pub fn new(name: &str) -> Result<Self, SharedMemoryError> {
        Ok(DeviceMemory {
            bar: Arc::new(SharedMemory::new(&format!("{name}-bar2"), BAR2_SIZE)?),
            snapshot: None,
        })
    }

    /// The memory behind BAR 2 (offset in the file = offset in the BAR).
    pub fn bar_memory(&self) -> &Arc<SharedMemory> {
        &self.bar
    }

    /// Reads device memory at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check(offset, buf.len())?;
        self.bar.read(offset, buf)
    }

    /// Writes device memory at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(offset, data.len())?;
        self.bar.write(offset, data)
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), Errno> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= DEVMEM_SIZE => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// All of device memory.
    pub fn contents(&self) -> Result<Vec<u8>, Errno> {
        let mut all = vec![0u8; DEVMEM_SIZE as usize];
        self.bar.read(0, &mut all)?;
        Ok(all)
    }

    /// Replaces all of device memory.
    pub fn load(&self, data: &[u8]) -> Result<(), Errno> {
        if data.len() as u64 != DEVMEM_SIZE {
            return Err(Errno::EINVAL);
        }
        self.bar.write(0, data)
    }

    /// Power-on contents: all of BAR 2's memory zeroed.
    pub fn clear(&self) -> Result<(), Errno> {
        self.bar.zero(0, BAR2_SIZE)
    }

    /// Starts tracking for a pre-copy: returns the contents, remembered as sent.
    pub fn snapshot_start(&mut self) -> Result<Vec<u8>, Errno> {
        let all = self.contents()?;
        self.snapshot = Some(all.clone());
        Ok(all)
    }

    /// The runs of pages that changed since the last snapshot, as `(offset, bytes)`; the
    /// snapshot takes them. Empty without a snapshot.
    pub fn take_changes(&mut self) -> Result<Vec<(u64, Vec<u8>)>, Errno> {
        let now = self.contents()?;
        let Some(snap) = self.snapshot.as_mut() else {
            return Ok(Vec::new());
        };
        let runs = changed_runs(snap, &now);
        for (offset, len) in &runs {
            let r = *offset as usize..*offset as usize + *len;
            snap[r.clone()].copy_from_slice(&now[r]);
        }
        Ok(runs
            .into_iter()
            .map(|(o, l)| (o, now[o as usize..o as usize + l].to_vec()))
            .collect())
    }

    /// Bytes of the pages that changed since the last snapshot (0 without one).
    pub fn changed_bytes(&self) -> u64 {
        let (Some(snap), Ok(now)) = (self.snapshot.as_ref(), self.contents()) else {
            return 0;
        };
        changed_runs(snap, &now)
            .iter()
            .map(|(_, l)| *l as u64)
            .sum()
    }

    /// Whether a snapshot is kept (a saving session is open).
    pub fn tracking(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Stops tracking.
    pub fn snapshot_end(&mut self) {
        self.snapshot = None;
    }
}

/// `(offset, len)` of each run of consecutive pages that differ between `old` and `new`.
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(u64, usize)> {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for (i, (a, b)) in old
        .chunks(TRACK_PAGE)
        .zip(new.chunks(TRACK_PAGE))
        .enumerate()
    {
        if a == b {
            continue;
        }
        let offset = (i * TRACK_PAGE) as u64;
        match runs.last_mut() {
            Some((o, l)) if *o + *l as u64 == offset => *l += b.len(),
            _ => runs.push((offset, b.len())),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_made_through_a_mapping_are_found_page_by_page() {
        let mut mem = DeviceMemory::new("devmem-test").unwrap();
        assert!(mem.take_changes().unwrap().is_empty());
        mem.snapshot_start().unwrap();
        let map = mem.bar_memory().map(0, DEVMEM_SIZE, true).unwrap();
        map.write(5 * TRACK_PAGE + 7, &[1]).unwrap();
        map.write(6 * TRACK_PAGE, &[2]).unwrap();
        map.write(9 * TRACK_PAGE + 4095, &[3]).unwrap();
        assert_eq!(mem.changed_bytes(), 3 * TRACK_PAGE as u64);
        let changes = mem.take_changes().unwrap();
        let spans: Vec<(u64, usize)> = changes.iter().map(|(o, d)| (*o, d.len())).collect();
        assert_eq!(
            spans,
            vec![
                (5 * TRACK_PAGE as u64, 2 * TRACK_PAGE),
                (9 * TRACK_PAGE as u64, TRACK_PAGE)
            ]
        );
        assert_eq!(changes[0].1[7], 1);
        assert_eq!(mem.changed_bytes(), 0);
        mem.snapshot_end();
        assert!(!mem.tracking());
    }
}
