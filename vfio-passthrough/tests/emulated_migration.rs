//! Migration of the emulated DMA engine through `VfioDevice`: the v2 state machine arc by arc,
//! P2P quiescence, pre-copy with device memory changed through the user's mapping, a device
//! saved mid-queue and continued elsewhere, corrupt streams, the v1 region through the
//! migration crate's user-side loop, and device DMA logging.

mod common;

use std::ops::Range;

use common::*;
use migration::user_v1::{
    V1Recovery, V1RegionAccess, V1UserError, set_v1_state, v1_resume, v1_save_precopy,
    v1_save_stop_copy, v1_state,
};
use migration::user_v2::{PrecopyPolicy, resume, save_precopy, save_stop_copy, transition};
use migration::vfio_v1::V1State;
use migration::vfio_v2::{ALL_STATES, DeviceState};
use vfio_passthrough::errno::Errno;
use vfio_passthrough::migration_adapters::{VfioMigrationDevice, VfioV1Region};
use vfio_passthrough::vfio::*;

use DeviceState::*;

/// Reads a saving stream until it ends (STOP_COPY) or has nothing for now (PRE_COPY).
fn read_available(stream: &mut Box<dyn MigrationData>, out: &mut Vec<u8>) -> usize {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(Errno::ENOMSG) => return total,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                total += n;
            }
            Err(e) => panic!("reading the migration stream: {e}"),
        }
    }
}

fn state(dev: &dyn VfioDevice) -> DeviceState {
    DeviceState::try_from(dev.mig_state().unwrap()).unwrap()
}

/// Puts `dev` in ERROR: a resume of a stream that is not one.
fn break_device(dev: &dyn VfioDevice) {
    let mut s = dev.set_mig_state(Resuming as u32).unwrap().unwrap();
    s.write(b"definitely not a device state stream").unwrap();
    assert_eq!(dev.set_mig_state(Stop as u32).err(), Some(Errno::EINVAL));
    assert_eq!(state(dev), Error);
}

#[test]
fn every_arc_of_the_next_step_table_is_taken_or_refused_with_einval() {
    // Leaving RESUMING loads what was written: give it a valid state.
    let valid = {
        let other = build("emulated:dma-engine");
        let mut s = other.set_mig_state(StopCopy as u32).unwrap().unwrap();
        let mut saved = Vec::new();
        read_available(&mut s, &mut saved);
        saved
    };
    let dev = build("emulated:dma-engine");
    for cur in ALL_STATES {
        for target in ALL_STATES {
            dev.reset().unwrap();
            assert_eq!(state(&dev), Running);
            if cur == Error {
                break_device(&dev);
            } else if let Some(mut s) = dev.set_mig_state(cur as u32).unwrap() {
                if cur == Resuming {
                    s.write(&valid).unwrap();
                }
            }
            assert_eq!(state(&dev), cur);
            let legal = cur != Error
                && target != Error
                && !(cur == StopCopy && matches!(target, PreCopy | PreCopyP2p));
            let result = dev.set_mig_state(target as u32);
            if legal {
                let session = result.unwrap_or_else(|e| panic!("{cur} -> {target}: {e}"));
                let opens = match target {
                    Resuming => cur != Resuming,
                    PreCopy | PreCopyP2p | StopCopy => !cur.is_saving(),
                    _ => false,
                };
                assert_eq!(session.is_some(), opens, "{cur} -> {target}: session");
                assert_eq!(state(&dev), target, "{cur} -> {target}");
            } else {
                assert_eq!(result.err(), Some(Errno::EINVAL), "{cur} -> {target}");
                assert_eq!(state(&dev), cur, "{cur} -> {target} must change nothing");
            }
        }
    }
    assert_eq!(dev.set_mig_state(8).err(), Some(Errno::EINVAL));
    assert_eq!(dev.set_mig_state(u32::MAX).err(), Some(Errno::EINVAL));
}

#[test]
fn running_p2p_accepts_mmio_but_initiates_no_dma_and_stop_drops_writes() {
    let mut e = Engine::new("emulated:dma-engine");
    e.dev.set_mig_state(RunningP2p as u32).unwrap();
    let before = e.port.accesses().len();
    e.submit(Desc {
        op: OP_FILL,
        src: 5,
        dst: BUF_A,
        len: 4,
        ..Desc::default()
    });
    assert_eq!(
        (e.read(REG_QUEUE_HEAD), e.read(REG_QUEUE_TAIL)),
        (0, 1),
        "doorbell recorded"
    );
    assert_eq!(e.port.accesses().len(), before, "no DMA");
    e.dev.set_mig_state(Stop as u32).unwrap();
    e.write(REG_QUEUE_TAIL, 0);
    assert_eq!(e.read(REG_QUEUE_TAIL), 1, "STOP: writes have no effect");
    e.dev.set_mig_state(Running as u32).unwrap();
    assert_eq!(e.read(REG_QUEUE_HEAD), 1, "the recorded work ran");
    assert_eq!(e.port.peek(None, BUF_A, 4), vec![5, 0, 0, 0]);
}

/// The workload of the mid-queue test, in two halves; the user writes device memory between
/// them.
fn first_half() -> Vec<Desc> {
    vec![
        Desc {
            op: OP_FILL,
            src: 0x0123_4567_89ab_cdef,
            dst: BUF_A,
            len: 0x1000,
            ..Desc::default()
        },
        Desc {
            op: OP_COPY | OP_DST_DEVMEM,
            src: BUF_A,
            dst: 0,
            len: 0x1000,
            ..Desc::default()
        },
        Desc {
            op: OP_FILL | OP_DST_DEVMEM,
            src: 0x5a5a_5a5a_5a5a_5a5a,
            dst: 0x5000,
            len: 0x800,
            ..Desc::default()
        },
    ]
}

fn second_half() -> Vec<Desc> {
    vec![
        Desc {
            op: OP_COPY | OP_SRC_DEVMEM | OP_INTERRUPT,
            src: 0x9000,
            dst: BUF_B,
            len: 0x100,
            completion: COMPLETIONS,
            ..Desc::default()
        },
        Desc {
            op: OP_COPY | OP_SRC_DEVMEM,
            src: 0,
            dst: BUF_C,
            len: 0x1000,
            completion: COMPLETIONS + 16,
            ..Desc::default()
        },
        Desc {
            op: OP_COMPARE,
            src: BUF_A,
            dst: BUF_C,
            len: 0x1000,
            completion: COMPLETIONS + 32,
            ..Desc::default()
        },
        Desc {
            op: OP_COPY | OP_SRC_DEVMEM,
            src: 0x5000,
            dst: BUF_B + 0x1000,
            len: 0x800,
            ..Desc::default()
        },
    ]
}

fn user_write(dev: &dyn VfioDevice) {
    let map = dev.region_mmap(2, 0x9000, 0x1000, true).unwrap();
    map.write(0, &(0..=255u8).collect::<Vec<_>>()).unwrap();
}

fn devmem(dev: &dyn VfioDevice) -> Vec<u8> {
    let mut all = vec![0u8; 1 << 20];
    assert_eq!(dev.region_read(2, 0, &mut all).unwrap(), 1 << 20);
    all
}

#[test]
fn a_device_saved_mid_queue_continues_its_queue_after_restore() {
    // The reference: the same work without migration.
    let mut reference = Engine::new("emulated:dma-engine");
    for d in first_half() {
        reference.queue(d);
    }
    reference.doorbell();
    user_write(&reference.dev);
    for d in second_half() {
        reference.queue(d);
    }
    reference.doorbell();
    assert_eq!(reference.read(REG_COMPLETED), 7);
    assert_eq!(reference.read(REG_STATUS), 0);

    let mut src = Engine::new("emulated:dma-engine");
    let _src_vectors = src.msix();
    for d in first_half() {
        src.queue(d);
    }
    src.doorbell();
    let mut saved = Vec::new();
    let mut stream = src.dev.set_mig_state(PreCopy as u32).unwrap().unwrap();
    assert!(read_available(&mut stream, &mut saved) > 1 << 20);
    user_write(&src.dev);
    assert_eq!(stream.precopy_info().unwrap().dirty_bytes, 0x1000);
    let resent = read_available(&mut stream, &mut saved);
    assert!(
        (0x1000..0x1100).contains(&resent),
        "only the dirty page: {resent}"
    );
    assert!(src.dev.set_mig_state(PreCopyP2p as u32).unwrap().is_none());
    // Quiesced: the doorbell is recorded, the work waits.
    let dma_before = src.port.accesses().len();
    for d in second_half() {
        src.queue(d);
    }
    src.doorbell();
    assert_eq!((src.read(REG_QUEUE_HEAD), src.read(REG_QUEUE_TAIL)), (3, 7));
    assert_eq!(src.port.accesses().len(), dma_before);
    assert!(src.dev.set_mig_state(StopCopy as u32).unwrap().is_none());
    read_available(&mut stream, &mut saved);
    src.dev.set_mig_state(Stop as u32).unwrap();
    assert_eq!(
        stream.read(&mut [0u8; 8]),
        Err(Errno::ENODEV),
        "the session ended"
    );

    // The guest's RAM moves with the device; the destination VMM sets up MSI-X again.
    let mut dst = Engine::with_port("emulated:dma-engine", src.port.clone_memory(), false);
    let dst_vectors = dst.msix();
    let mut load = dst.dev.set_mig_state(Resuming as u32).unwrap().unwrap();
    for piece in saved.chunks(10_000) {
        assert_eq!(load.write(piece).unwrap(), piece.len());
    }
    dst.dev.set_mig_state(Running as u32).unwrap();

    assert_eq!(dst.read(REG_QUEUE_HEAD), 7);
    assert_eq!(dst.read(REG_COMPLETED), 7);
    assert_eq!(dst.read(REG_STATUS), 0);
    assert_eq!(
        drain(&dst_vectors[0]),
        1,
        "the continued descriptor's interrupt"
    );
    assert_eq!(
        completion(&dst.port, None, COMPLETIONS + 32),
        (ST_SUCCESS, 0, 0x1000)
    );
    assert!(
        dst.port.snapshot() == reference.port.snapshot(),
        "memory differs"
    );
    assert!(
        devmem(&dst.dev) == devmem(&reference.dev),
        "device memory differs"
    );
    dst.next = 7;
    dst.submit(Desc {
        op: OP_FILL,
        src: 1,
        dst: BUF_A,
        len: 1,
        ..Desc::default()
    });
    assert_eq!(
        dst.read(REG_COMPLETED),
        8,
        "the restored device keeps working"
    );
}

#[test]
fn precopy_initial_bytes_shrink_to_zero_and_dirty_pages_are_resent() {
    let e = Engine::new("emulated:dma-engine");
    let running_size = e.dev.mig_data_size().unwrap();
    assert!(
        running_size > 1 << 20,
        "device memory and registers: {running_size}"
    );
    let mut stream = e.dev.set_mig_state(PreCopy as u32).unwrap().unwrap();
    let first = stream.precopy_info().unwrap();
    assert!(first.initial_bytes > 1 << 20);
    assert_eq!(first.dirty_bytes, 0);
    let mut last = first.initial_bytes;
    let mut buf = vec![0u8; 100_000];
    while last > 0 {
        stream.read(&mut buf).unwrap();
        let now = stream.precopy_info().unwrap().initial_bytes;
        assert!(now < last, "initial_bytes went from {last} to {now}");
        last = now;
    }
    assert_eq!(stream.read(&mut buf), Err(Errno::ENOMSG));
    let map = e.dev.region_mmap(2, 0, 0x10_0000, true).unwrap();
    map.write(0x3000, &[1]).unwrap();
    map.write(0x7fff, &[1]).unwrap();
    assert_eq!(stream.precopy_info().unwrap().dirty_bytes, 0x2000);
    let mut more = Vec::new();
    assert!(read_available(&mut stream, &mut more) >= 0x2000);
    assert_eq!(stream.precopy_info().unwrap().dirty_bytes, 0);

    e.dev.set_mig_state(StopCopy as u32).unwrap();
    assert_eq!(
        stream.precopy_info().err(),
        Some(Errno::EINVAL),
        "not in STOP_COPY"
    );
    let exact = e.dev.mig_data_size().unwrap();
    let mut rest = Vec::new();
    assert_eq!(read_available(&mut stream, &mut rest) as u64, exact);
    assert_eq!(stream.read(&mut buf), Ok(0), "the end, for ever");
    assert_eq!(
        stream.write(b"x").err(),
        Some(Errno::EBADF),
        "a saving stream"
    );
}

#[test]
fn a_corrupt_stream_puts_the_device_in_error_until_reset() {
    let src = Engine::new("emulated:dma-engine");
    let mut stream = src.dev.set_mig_state(StopCopy as u32).unwrap().unwrap();
    let mut saved = Vec::new();
    read_available(&mut stream, &mut saved);
    let mid = saved.len() / 2;
    saved[mid] ^= 0x40;

    let mut dst = Engine::new("emulated:dma-engine");
    dst.write(REG_QUEUE_SIZE, 8);
    let mut load = dst.dev.set_mig_state(Resuming as u32).unwrap().unwrap();
    load.write(&saved).unwrap();
    assert_eq!(
        dst.dev.set_mig_state(Running as u32).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(state(&dst.dev), Error);
    assert_eq!(
        dst.read(REG_QUEUE_SIZE),
        8,
        "nothing of the stream was loaded"
    );
    assert_eq!(
        dst.dev.set_mig_state(Running as u32).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(load.write(b"more").err(), Some(Errno::ENODEV));
    dst.dev.reset().unwrap();
    assert_eq!(state(&dst.dev), Running);

    // A truncated stream fails the same way; the device still works after the reset.
    let mut load = dst.dev.set_mig_state(Resuming as u32).unwrap().unwrap();
    load.write(&saved[..1000]).unwrap();
    assert_eq!(
        dst.dev.set_mig_state(Stop as u32).err(),
        Some(Errno::EINVAL)
    );
    dst.dev.reset().unwrap();
    enable_bus_master(&dst.dev);
    dst.write(REG_QUEUE_BASE, RING as u32);
    dst.write(REG_QUEUE_SIZE, RING_SIZE);
    dst.write(REG_CTRL, CTRL_ENABLE);
    dst.submit(Desc {
        op: OP_FILL,
        src: 3,
        dst: BUF_A,
        len: 1,
        ..Desc::default()
    });
    assert_eq!(dst.port.peek(None, BUF_A, 1), vec![3]);
}

#[test]
fn the_user_side_v2_loops_migrate_through_the_adapters() {
    let mut src = Engine::new("emulated:dma-engine");
    for d in first_half() {
        src.queue(d);
    }
    src.doorbell();
    let mut saved = Vec::new();
    {
        let mut dev = VfioMigrationDevice::new(&src.dev);
        let mut stream = transition(&mut dev, PreCopy).unwrap();
        let report = save_precopy(
            stream.as_mut().unwrap(),
            &mut saved,
            &PrecopyPolicy::default(),
        )
        .unwrap();
        assert!(report.converged);
        save_stop_copy(&mut dev, stream, &mut saved, 64 << 10).unwrap();
    }
    assert_eq!(state(&src.dev), Stop);
    let dst = Engine::new("emulated:dma-engine,migration=v2");
    let mut dev = VfioMigrationDevice::new(&dst.dev);
    let loaded = resume(&mut dev, &mut saved.as_slice(), Running, 64 << 10).unwrap();
    assert_eq!(loaded, saved.len() as u64);
    assert_eq!(dst.read(REG_COMPLETED), 3);
    assert!(devmem(&dst.dev) == devmem(&src.dev));
}

/// A v1 region that records which of its data accesses went through the mapping and which were
/// trapped.
struct Recording<'a> {
    inner: VfioV1Region<'a>,
    mapped: Vec<Range<u64>>,
    trapped: Vec<Range<u64>>,
}

impl V1RegionAccess for Recording<'_> {
    fn region_size(&self) -> u64 {
        self.inner.region_size()
    }
    fn mmap_extents(&self) -> Vec<Range<u64>> {
        self.inner.mmap_extents()
    }
    fn read_u32(&mut self, offset: u64) -> Result<u32, Errno> {
        self.inner.read_u32(offset)
    }
    fn write_u32(&mut self, offset: u64, value: u32) -> Result<(), Errno> {
        self.inner.write_u32(offset, value)
    }
    fn read_u64(&mut self, offset: u64) -> Result<u64, Errno> {
        self.inner.read_u64(offset)
    }
    fn write_u64(&mut self, offset: u64, value: u64) -> Result<(), Errno> {
        self.inner.write_u64(offset, value)
    }
    fn trapped_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.trapped.push(offset..offset + buf.len() as u64);
        self.inner.trapped_read(offset, buf)
    }
    fn trapped_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.trapped.push(offset..offset + data.len() as u64);
        self.inner.trapped_write(offset, data)
    }
    fn mmap_read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.mapped.push(offset..offset + buf.len() as u64);
        self.inner.mmap_read(offset, buf)
    }
    fn mmap_write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.mapped.push(offset..offset + data.len() as u64);
        self.inner.mmap_write(offset, data)
    }
    fn reset(&mut self) -> Result<(), Errno> {
        self.inner.reset()
    }
}

/// Whether some buffer went through the mapping up to the end of the mmap-able extent and on
/// through the trapped path from there.
fn straddled(r: &Recording<'_>) -> bool {
    let end = 0x11000;
    r.mapped.iter().any(|m| m.end == end && m.start < end)
        && r.trapped.iter().any(|t| t.start == end && t.end > end)
}

#[test]
fn the_v1_region_round_trips_with_chunks_straddling_mapped_and_trapped_extents() {
    let mut src = Engine::new("emulated:dma-engine,migration=v1");
    assert_eq!(src.dev.migration_flags(), Err(Errno::ENOTTY), "v1 only");
    for d in first_half() {
        src.queue(d);
    }
    src.doorbell();
    let mut saved = Vec::new();
    let mut region = Recording {
        inner: VfioV1Region::open(&src.dev).unwrap(),
        mapped: Vec::new(),
        trapped: Vec::new(),
    };
    assert_eq!(region.inner.index(), 9);
    assert_eq!(region.mmap_extents(), vec![0x1000..0x11000]);
    set_v1_state(&mut region, V1State::PreCopy).unwrap();
    let pre = v1_save_precopy(&mut region, &mut saved, u64::MAX).unwrap();
    assert!(
        pre.drained && pre.chunks >= 16,
        "1 MiB in 66 KiB buffers: {pre:?}"
    );
    user_write(&src.dev);
    let again = v1_save_precopy(&mut region, &mut saved, u64::MAX).unwrap();
    assert!(again.bytes >= 0x1000 && again.bytes < 0x2000, "{again:?}");
    let last = v1_save_stop_copy(&mut region, &mut saved).unwrap();
    assert!(last.bytes > 0);
    assert_eq!(v1_state(&mut region).unwrap(), V1State::Stop);
    assert!(
        straddled(&region),
        "no buffer crossed from the mapping into the trapped extent"
    );

    let dst = Engine::with_port(
        "emulated:dma-engine,migration=v1",
        src.port.clone_memory(),
        false,
    );
    let mut dst_region = Recording {
        inner: VfioV1Region::open(&dst.dev).unwrap(),
        mapped: Vec::new(),
        trapped: Vec::new(),
    };
    let loaded = v1_resume(&mut dst_region, &mut saved.as_slice(), V1State::Running).unwrap();
    assert_eq!(loaded.chunks, pre.chunks + again.chunks + last.chunks);
    assert!(straddled(&dst_region));
    assert_eq!(v1_state(&mut dst_region).unwrap(), V1State::Running);
    assert_eq!(dst.read(REG_COMPLETED), 3);
    assert!(devmem(&dst.dev) == devmem(&src.dev));
}

#[test]
fn a_corrupt_v1_stream_fails_the_resume_and_the_device_is_reset() {
    let src = Engine::new("emulated:dma-engine");
    let mut saved = Vec::new();
    let mut region = VfioV1Region::open(&src.dev).unwrap();
    v1_save_stop_copy(&mut region, &mut saved).unwrap();
    saved[5000] ^= 1;
    let dst = Engine::new("emulated:dma-engine");
    let mut dst_region = VfioV1Region::open(&dst.dev).unwrap();
    let err = v1_resume(&mut dst_region, &mut saved.as_slice(), V1State::Running).unwrap_err();
    assert!(
        matches!(
            err,
            V1UserError::SetState {
                from: V1State::Resuming,
                recovery: V1Recovery::Reset,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        v1_state(&mut dst_region).unwrap(),
        V1State::Running,
        "reset by the loop"
    );
    assert_eq!(state(&dst.dev), Running);
}

#[test]
fn dma_logging_reports_exactly_the_pages_the_device_wrote() {
    let mut e = Engine::new("emulated:dma-engine");
    let mut page_size = 4096;
    let ranges = [
        DmaLoggingRange {
            iova: BUF_A,
            length: 0x4000,
        },
        DmaLoggingRange {
            iova: BUF_B,
            length: 0x4000,
        },
        DmaLoggingRange {
            iova: COMPLETIONS,
            length: 0x1000,
        },
    ];
    e.dev.dma_logging_start(&mut page_size, &ranges).unwrap();
    assert_eq!(page_size, 4096);
    assert_eq!(
        e.dev.dma_logging_start(&mut page_size, &ranges),
        Err(Errno::EINVAL)
    );
    e.port.poke(None, BUF_A, &[7; 0x3000]);
    e.submit(Desc {
        op: OP_COPY,
        src: BUF_A,
        dst: BUF_B + 0x1800,
        len: 0x1800,
        completion: COMPLETIONS,
        ..Desc::default()
    });
    e.submit(Desc {
        op: OP_FILL,
        src: 1,
        dst: BUF_C,
        len: 0x100,
        ..Desc::default()
    });
    e.submit(Desc {
        op: OP_COPY | OP_DST_DEVMEM,
        src: BUF_A,
        dst: 0,
        len: 0x100,
        ..Desc::default()
    });
    let report = |dev: &dyn VfioDevice, iova, length, page_size| {
        let mut bitmap = [0u64; 2];
        dev.dma_logging_report(
            &DmaLoggingReport {
                iova,
                length,
                page_size,
            },
            &mut bitmap,
        )
        .map(|()| bitmap[0])
    };
    assert_eq!(report(&e.dev, BUF_A, 0x4000, 4096), Ok(0), "read only");
    assert_eq!(
        report(&e.dev, BUF_B, 0x4000, 8192),
        Ok(0b11),
        "pages 1 and 2 at 8 KiB"
    );
    assert_eq!(
        report(&e.dev, BUF_B, 0x4000, 4096),
        Ok(0),
        "cleared by the first report"
    );
    assert_eq!(
        report(&e.dev, COMPLETIONS, 0x1000, 4096),
        Ok(1),
        "the completion record"
    );
    assert_eq!(report(&e.dev, BUF_C, 0x1000, 4096), Ok(0), "not tracked");
    assert_eq!(report(&e.dev, BUF_A, 0x4000, 1024), Err(Errno::EINVAL));
    assert_eq!(report(&e.dev, u64::MAX, 2, 4096), Err(Errno::EOVERFLOW));

    e.submit(Desc {
        op: OP_FILL,
        src: 2,
        dst: BUF_B + 0x3ff8,
        len: 0x10,
        ..Desc::default()
    });
    assert_eq!(
        report(&e.dev, BUF_B, 0x4000, 4096),
        Ok(0b1000),
        "the tracked part of the write"
    );
    e.dev.dma_logging_stop().unwrap();
    assert_eq!(report(&e.dev, BUF_B, 0x4000, 4096), Err(Errno::EINVAL));
    e.dev.dma_logging_stop().unwrap();
}
