use std::collections::VecDeque;
use std::io::ErrorKind;
use std::ops::Range;

use super::*;
use crate::errno::Errno;
use crate::testing::fake_device::{FakeDevice, PAGE};
use crate::testing::v1_harness::RegionHarness;
use crate::vfio_v1::V1State;

fn assert_mmap_stayed_inside_extents(h: &RegionHarness) {
    assert!(
        h.mmap_violations.is_empty(),
        "mmap accesses left their extent: {:?}",
        h.mmap_violations
    );
}

#[test]
fn v1_live_round_trip_moves_chunks_across_mmap_and_trapped_extents() {
    let mut src = RegionHarness::new(FakeDevice::new(6));
    let mut saved = Vec::new();
    set_v1_state(&mut src, V1State::PreCopy).unwrap();
    let first = v1_save_precopy(&mut src, &mut saved, u64::MAX).unwrap();
    assert!(first.drained);
    assert!(
        first.chunks >= 2,
        "16 KiB of memory needs several 10 KiB buffers"
    );

    // Three dirty pages make a ~3 KiB buffer: it starts mapped and ends in the trapped page.
    src.dev.write_mem(7 * PAGE + 100, &[0x42; 2 * PAGE]);
    let second = v1_save_precopy(&mut src, &mut saved, u64::MAX).unwrap();
    assert!(second.drained && second.bytes >= 3 * PAGE as u64);

    src.dev.write_mem(15 * PAGE + 1, &[0x43; 3]);
    src.dev.write_reg(9, 0xab);
    let last = v1_save_stop_copy(&mut src, &mut saved).unwrap();
    assert!(last.bytes > 0);
    assert_eq!(v1_state(&mut src).unwrap(), V1State::Stop);

    let mut dst = RegionHarness::new(FakeDevice::blank());
    let loaded = v1_resume(&mut dst, &mut saved.as_slice(), V1State::Running).unwrap();
    assert_eq!(loaded.chunks, first.chunks + second.chunks + last.chunks);
    assert_eq!(v1_state(&mut dst).unwrap(), V1State::Running);
    assert!(dst.dev.same_state(&src.dev));

    for h in [&src, &dst] {
        assert_mmap_stayed_inside_extents(h);
        assert!(
            h.mmap_accesses
                .iter()
                .any(|r| r.start == 0x1800 && r.end == 0x2000)
        );
        assert!(
            h.trapped_data_accesses
                .iter()
                .any(|r| r.start == 0x2000 && r.end == 0x3000),
            "a buffer crossed the trapped page into the second extent"
        );
        assert!(
            h.trapped_data_accesses
                .iter()
                .any(|r| r.start == 0x2000 && r.end > 0x2000 && r.end < 0x3000),
            "a buffer started mapped and ended in the trapped page"
        );
    }
}

#[test]
fn a_corrupt_v1_stream_fails_the_final_state_change_and_is_reset() {
    let mut src = RegionHarness::new(FakeDevice::new(6));
    let mut saved = Vec::new();
    v1_save_stop_copy(&mut src, &mut saved).unwrap();
    saved[100] ^= 1;

    let mut dst = RegionHarness::new(FakeDevice::blank());
    let err = v1_resume(&mut dst, &mut saved.as_slice(), V1State::Running).unwrap_err();
    assert!(
        matches!(
            err,
            V1UserError::SetState {
                from: V1State::Resuming,
                to: V1State::Running,
                errno: Errno::EINVAL,
                recovery: V1Recovery::Reset,
            }
        ),
        "{err}"
    );
    assert_eq!(v1_state(&mut dst).unwrap(), V1State::Running);
    assert!(
        dst.dev.same_state(&FakeDevice::blank()),
        "nothing was applied"
    );
}

#[test]
fn a_chunk_list_without_its_end_marker_aborts_the_resume() {
    let mut src = RegionHarness::new(FakeDevice::new(6));
    let mut saved = Vec::new();
    v1_save_stop_copy(&mut src, &mut saved).unwrap();
    saved.truncate(saved.len() - 8);

    let mut dst = RegionHarness::new(FakeDevice::blank());
    let err = v1_resume(&mut dst, &mut saved.as_slice(), V1State::Running).unwrap_err();
    match &err {
        V1UserError::ResumeAborted { source, recovery } => {
            assert_eq!(*recovery, V1Recovery::Reset);
            assert!(
                matches!(&**source, V1UserError::Source { source, .. } if source.kind() == ErrorKind::UnexpectedEof),
                "{err}"
            );
        }
        e => panic!("expected an aborted resume, got {e}"),
    }
    assert_eq!(v1_state(&mut dst).unwrap(), V1State::Running);
}

#[test]
fn precopy_refuses_a_device_that_is_not_pre_copying() {
    let mut h = RegionHarness::new(FakeDevice::new(1));
    let err = v1_save_precopy(&mut h, &mut Vec::new(), u64::MAX).unwrap_err();
    assert!(matches!(
        err,
        V1UserError::WrongState {
            state: V1State::Running,
            ..
        }
    ));
}

/// A region whose header says whatever the test wants.
struct LyingRegion {
    state: u32,
    pending: VecDeque<u64>,
    data_offset: u64,
    data_size: u64,
    extents: Vec<Range<u64>>,
    resets: usize,
}

impl LyingRegion {
    fn new(state: u32, pending: &[u64], data_offset: u64, data_size: u64) -> Self {
        LyingRegion {
            state,
            pending: pending.iter().copied().collect(),
            data_offset,
            data_size,
            extents: vec![],
            resets: 0,
        }
    }
}

impl V1RegionAccess for LyingRegion {
    fn region_size(&self) -> u64 {
        0x1000
    }
    fn mmap_extents(&self) -> Vec<Range<u64>> {
        self.extents.clone()
    }
    fn read_u32(&mut self, _: u64) -> Result<u32, Errno> {
        Ok(self.state)
    }
    fn write_u32(&mut self, _: u64, value: u32) -> Result<(), Errno> {
        self.state = value;
        Ok(())
    }
    fn read_u64(&mut self, offset: u64) -> Result<u64, Errno> {
        Ok(match offset {
            8 if self.pending.len() > 1 => self.pending.pop_front().unwrap_or(0),
            8 => self.pending.front().copied().unwrap_or(0),
            16 => self.data_offset,
            24 => self.data_size,
            _ => return Err(Errno::EINVAL),
        })
    }
    fn write_u64(&mut self, _: u64, _: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn trapped_read(&mut self, _: u64, buf: &mut [u8]) -> Result<(), Errno> {
        buf.fill(0);
        Ok(())
    }
    fn trapped_write(&mut self, _: u64, _: &[u8]) -> Result<(), Errno> {
        Ok(())
    }
    fn mmap_read(&mut self, _: u64, buf: &mut [u8]) -> Result<(), Errno> {
        buf.fill(0);
        Ok(())
    }
    fn mmap_write(&mut self, _: u64, _: &[u8]) -> Result<(), Errno> {
        Ok(())
    }
    fn reset(&mut self) -> Result<(), Errno> {
        self.resets += 1;
        self.state = 1;
        Ok(())
    }
}

#[test]
fn data_buffers_outside_the_region_or_over_the_header_are_refused() {
    for (offset, size) in [
        (0x10, 0x10),
        (0xff0, 0x20),
        (u64::MAX - 4, 8),
        (0x100, 0x1000),
    ] {
        let mut r = LyingRegion::new(2, &[0x100], offset, size);
        let err = v1_save_stop_copy(&mut r, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, V1UserError::BadDataBuffer { data_offset, data_size, region_size: 0x1000 }
                if data_offset == offset && data_size == size),
            "{offset:#x}+{size:#x}: {err}"
        );
    }
}

#[test]
fn stop_and_copy_refuses_a_device_that_does_not_converge() {
    let mut r = LyingRegion::new(2, &[0x100, 0x100], 0x100, 0x80);
    assert!(matches!(
        v1_save_stop_copy(&mut r, &mut Vec::new()).unwrap_err(),
        V1UserError::PendingNotShrinking {
            before: 0x100,
            after: 0x100,
            consumed: 0x80
        }
    ));
    let mut r = LyingRegion::new(2, &[0x40], 0x100, 0x80);
    assert!(matches!(
        v1_save_stop_copy(&mut r, &mut Vec::new()).unwrap_err(),
        V1UserError::DataSizeOverPending {
            data_size: 0x80,
            pending: 0x40
        }
    ));
    let mut r = LyingRegion::new(2, &[0x40], 0x100, 0);
    assert!(matches!(
        v1_save_stop_copy(&mut r, &mut Vec::new()).unwrap_err(),
        V1UserError::Stalled { pending: 0x40 }
    ));
}

#[test]
fn bad_extents_and_unknown_states_are_reported() {
    let mut r = LyingRegion::new(1, &[0], 0x100, 0);
    r.extents = vec![0x100..0x200, 0x800..0x2000];
    assert!(matches!(
        v1_save_stop_copy(&mut r, &mut Vec::new()).unwrap_err(),
        V1UserError::BadExtent {
            start: 0x800,
            end: 0x2000,
            ..
        }
    ));
    let mut r = LyingRegion::new(5, &[0], 0x100, 0);
    assert!(matches!(
        v1_state(&mut r).unwrap_err(),
        V1UserError::UnknownState { value: 5 }
    ));
    // Reserved bits are kept by the read-modify-write.
    let mut r = LyingRegion::new(0x100 | 1, &[0], 0x100, 0);
    set_v1_state(&mut r, V1State::Stop).unwrap();
    assert_eq!(r.state, 0x100);
    assert_eq!(r.resets, 0);
}
