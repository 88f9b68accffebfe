use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::errno::Errno;
use crate::testing::fake_device::{FakeDevice, PAGE};
use crate::testing::local::{LocalDevice, LocalStream, Log};
use crate::vfio_v2::{
    DeviceState, MIGRATION_P2P, MIGRATION_PRE_COPY, MIGRATION_STOP_COPY, PrecopyInfo,
};
use DeviceState::*;

const FULL: u64 = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;
const NO_P2P: u64 = MIGRATION_STOP_COPY | MIGRATION_PRE_COPY;

/// Records every PRECOPY_INFO a save loop sees.
struct Recording<S> {
    inner: S,
    infos: Vec<PrecopyInfo>,
}

impl<S: DataStream> DataStream for Recording<S> {
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Errno> {
        self.inner.read(buf)
    }
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        self.inner.write(data)
    }
    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        let info = self.inner.precopy_info()?;
        self.infos.push(info);
        Ok(info)
    }
}

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn policy(dirty_threshold: u64) -> PrecopyPolicy {
    PrecopyPolicy {
        dirty_threshold,
        max_bytes: 1 << 20,
        read_size: 1500,
    }
}

#[test]
fn live_round_trip_resends_redirtied_memory_and_restores_equal_state() {
    let log = log();
    let mut src = LocalDevice::new(FULL, FakeDevice::new(5), 0, &log);
    let stream = transition(&mut src, PreCopy).unwrap().unwrap();
    let mut stream = Recording {
        inner: stream,
        infos: Vec::new(),
    };
    let mut saved = Vec::new();

    let first = save_precopy(&mut stream, &mut saved, &policy(0)).unwrap();
    assert!(first.converged);
    assert_eq!(first.bytes, saved.len() as u64);
    let initial: Vec<u64> = stream.infos.iter().map(|i| i.initial_bytes).collect();
    assert_eq!(
        initial.first().copied(),
        Some(first.bytes),
        "initial bytes = all of pass 1"
    );
    assert!(
        initial.windows(2).all(|w| w[1] < w[0]),
        "initial bytes shrink: {initial:?}"
    );
    assert_eq!(initial.last().copied(), Some(0));

    // The guest keeps the device busy: three pages change, one of them twice.
    src.node.borrow_mut().dev.write_mem(3 * PAGE, &[0x5a; 100]);
    src.node
        .borrow_mut()
        .dev
        .write_mem(9 * PAGE + 1010, &[0x11; 20]);
    src.node
        .borrow_mut()
        .dev
        .write_mem(3 * PAGE + 50, &[0x6b; 10]);
    assert_eq!(
        stream.precopy_info().unwrap(),
        PrecopyInfo {
            initial_bytes: 0,
            dirty_bytes: 3 * PAGE as u64
        }
    );
    let second = save_precopy(&mut stream, &mut saved, &policy(0)).unwrap();
    assert!(second.converged);
    assert!(second.bytes >= 3 * PAGE as u64, "the dirty pages were sent");

    // More changes after the last pass: STOP_COPY carries them with the registers.
    src.node.borrow_mut().dev.write_mem(0, &[0xfe; 7]);
    src.node.borrow_mut().dev.write_reg(2, 0x99);
    let rest = save_stop_copy(&mut src, Some(stream.inner), &mut saved, 4096).unwrap();
    assert!(rest > 0);
    assert_eq!(src.state().unwrap(), Stop);

    let mut dst = LocalDevice::new(FULL, FakeDevice::blank(), 1, &log);
    let loaded = resume(&mut dst, &mut saved.as_slice(), Running, 777).unwrap();
    assert_eq!(loaded, saved.len() as u64);
    assert_eq!(dst.state().unwrap(), Running);
    assert!(dst.node.borrow().dev.same_state(&src.node.borrow().dev));
}

#[test]
fn precopy_stops_at_its_byte_budget_when_the_device_does_not_converge() {
    let log = log();
    let mut src = LocalDevice::new(FULL, FakeDevice::new(5), 0, &log);
    let mut stream = transition(&mut src, PreCopy).unwrap().unwrap();
    let mut saved = Vec::new();
    let budget = PrecopyPolicy {
        dirty_threshold: 0,
        max_bytes: 3000,
        read_size: 1000,
    };
    let report = save_precopy(&mut stream, &mut saved, &budget).unwrap();
    assert!(!report.converged);
    assert_eq!(report.bytes, 3000);
    assert!(report.last_info.initial_bytes > 0);
}

#[test]
fn stop_copy_from_running_opens_its_own_stream() {
    let log = log();
    let mut src = LocalDevice::new(MIGRATION_STOP_COPY, FakeDevice::new(8), 0, &log);
    let mut saved = Vec::new();
    let estimate = src.data_size().unwrap();
    let bytes = save_stop_copy(&mut src, None, &mut saved, 4096).unwrap();
    assert_eq!(bytes, saved.len() as u64);
    assert!(
        estimate.abs_diff(bytes) < 64,
        "MIG_DATA_SIZE {estimate} vs {bytes}"
    );
    let mut dst = LocalDevice::new(MIGRATION_STOP_COPY, FakeDevice::blank(), 1, &log);
    resume(&mut dst, &mut saved.as_slice(), Stop, 4096).unwrap();
    assert!(dst.node.borrow().dev.same_state(&FakeDevice::new(8)));
    assert_eq!(dst.state().unwrap(), Stop);
}

#[test]
fn a_rejected_stream_fails_resuming_to_stop_and_the_device_is_reset() {
    let log = log();
    let mut src = LocalDevice::new(FULL, FakeDevice::new(5), 0, &log);
    let mut saved = Vec::new();
    save_stop_copy(&mut src, None, &mut saved, 4096).unwrap();
    saved.truncate(saved.len() - 1);

    let mut dst = LocalDevice::new(FULL, FakeDevice::blank(), 1, &log);
    let err = resume(&mut dst, &mut saved.as_slice(), Running, 4096).unwrap_err();
    assert!(
        matches!(
            err,
            V2UserError::Transition {
                from: Resuming,
                to: Stop,
                errno: Errno::EINVAL,
                recovery: Recovery::Reset,
            }
        ),
        "{err}"
    );
    assert_eq!(dst.state().unwrap(), Running);
    assert_eq!(dst.node.borrow().dev.resets, 1);
    assert!(dst.node.borrow().dev.same_state(&FakeDevice::blank()));
}

#[test]
fn a_failed_transition_reports_the_intermediate_state_without_resetting() {
    let log = log();
    let mut dev = LocalDevice::new(FULL, FakeDevice::new(1), 0, &log);
    dev.node.borrow_mut().dev.fail.insert("stop");
    let err = save_stop_copy(&mut dev, None, &mut Vec::new(), 4096).unwrap_err();
    assert!(
        matches!(
            err,
            V2UserError::Transition {
                from: Running,
                to: StopCopy,
                errno: Errno::EIO,
                recovery: Recovery::Stayed(RunningP2p),
            }
        ),
        "{err}"
    );
    assert_eq!(dev.node.borrow().dev.resets, 0);
}

#[test]
fn a_failing_source_aborts_the_resume_with_a_reset() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("connection lost"))
        }
    }
    let log = log();
    let mut dst = LocalDevice::new(FULL, FakeDevice::blank(), 0, &log);
    let err = resume(&mut dst, &mut Broken, Running, 4096).unwrap_err();
    assert!(
        matches!(
            err,
            V2UserError::Source {
                offset: 0,
                recovery: Recovery::Reset,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(dst.state().unwrap(), Running);
}

/// Position of the first and last log entries matching `pred`.
fn span(log: &Log, pred: impl Fn(usize, DeviceState) -> bool) -> (usize, usize) {
    let entries = log.borrow();
    let hits: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, (i, s))| s.is_some_and(|s| pred(*i, s)))
        .map(|(pos, _)| pos)
        .collect();
    (hits[0], hits[hits.len() - 1])
}

#[test]
fn every_device_is_quiesced_before_any_stops_and_loaded_before_any_runs() {
    let src_log = log();
    let mut sources: Vec<LocalDevice> = (0..3)
        .map(|i| LocalDevice::new(FULL, FakeDevice::new(10 + i as u8), i, &src_log))
        .collect();
    // Device 1 pre-copies; the others are saved in STOP_COPY only.
    let mut streams: Vec<Option<LocalStream>> = vec![None, None, None];
    let mut sinks = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut s1 = transition(&mut sources[1], PreCopy).unwrap();
    save_precopy(s1.as_mut().unwrap(), &mut sinks[1], &policy(0)).unwrap();
    streams[1] = s1;
    src_log.borrow_mut().clear();

    let mut devs: Vec<&mut LocalDevice> = sources.iter_mut().collect();
    let sizes = save_all(&mut devs, streams, &mut sinks, 4096).unwrap();
    assert!(sizes.iter().all(|s| *s > 0));
    let (_, last_quiesce) = span(&src_log, |_, s| matches!(s, RunningP2p | PreCopyP2p));
    let (first_stop, _) = span(&src_log, |_, s| matches!(s, Stop | StopCopy));
    assert!(
        last_quiesce < first_stop,
        "a device stopped before all were quiescent: {:?}",
        src_log.borrow()
    );
    assert_eq!(
        src_log.borrow()[..3],
        [
            (0, Some(RunningP2p)),
            (1, Some(PreCopyP2p)),
            (2, Some(RunningP2p))
        ]
    );

    let dst_log = log();
    let mut targets: Vec<LocalDevice> = (0..3)
        .map(|i| LocalDevice::new(FULL, FakeDevice::blank(), i, &dst_log))
        .collect();
    let mut devs: Vec<&mut LocalDevice> = targets.iter_mut().collect();
    let mut readers: Vec<&[u8]> = sinks.iter().map(Vec::as_slice).collect();
    restore_all(&mut devs, &mut readers, 4096).unwrap();
    let (_, last_loaded) = span(&dst_log, |_, s| s == RunningP2p);
    let (first_run, _) = span(&dst_log, |_, s| s == Running);
    assert!(
        last_loaded < first_run,
        "a device ran before all were loaded: {:?}",
        dst_log.borrow()
    );
    for (src, dst) in sources.iter().zip(&targets) {
        assert_eq!(dst.state().unwrap(), Running);
        assert!(dst.node.borrow().dev.same_state(&src.node.borrow().dev));
    }
}

#[test]
fn several_devices_without_p2p_are_refused_before_any_moves() {
    let log = log();
    let mut a = LocalDevice::new(FULL, FakeDevice::new(1), 0, &log);
    let mut b = LocalDevice::new(NO_P2P, FakeDevice::new(2), 1, &log);
    let mut devs = vec![&mut a, &mut b];
    let err = quiesce_all(&mut devs).unwrap_err();
    assert!(
        matches!(err, MultiDeviceError::NoP2p { index: 1, flags } if flags == NO_P2P),
        "{err}"
    );
    assert!(log.borrow().is_empty());
}

#[test]
fn a_device_failing_to_quiesce_rolls_the_others_back() {
    let log = log();
    let mut devices: Vec<LocalDevice> = (0..3)
        .map(|i| LocalDevice::new(FULL, FakeDevice::new(i as u8), i, &log))
        .collect();
    let _precopy = transition(&mut devices[0], PreCopy).unwrap();
    devices[2].node.borrow_mut().dev.fail.insert("quiesce_dma");
    let mut devs: Vec<&mut LocalDevice> = devices.iter_mut().collect();
    let err = quiesce_all(&mut devs).unwrap_err();
    assert!(
        matches!(&err, MultiDeviceError::Device { index: 2, not_restored, .. } if not_restored.is_empty()),
        "{err}"
    );
    assert_eq!(devices[0].state().unwrap(), PreCopy);
    assert_eq!(devices[1].state().unwrap(), Running);
    assert_eq!(devices[2].state().unwrap(), Running);
    assert!(devices.iter().all(|d| d.node.borrow().dev.dma));
}

#[test]
fn stopping_refuses_devices_that_are_not_quiescent() {
    let log = log();
    let mut a = LocalDevice::new(FULL, FakeDevice::new(1), 0, &log);
    let mut b = LocalDevice::new(FULL, FakeDevice::new(2), 1, &log);
    let mut devs = vec![&mut a, &mut b];
    let mut sinks = vec![Vec::new(), Vec::new()];
    let err = stop_copy_all(&mut devs, vec![None, None], &mut sinks, 4096).unwrap_err();
    assert!(
        matches!(
            err,
            MultiDeviceError::WrongState {
                index: 0,
                state: Running,
                ..
            }
        ),
        "{err}"
    );
    assert!(log.borrow().is_empty());
    let err = stop_copy_all(&mut devs, vec![None], &mut sinks, 4096).unwrap_err();
    assert!(matches!(
        err,
        MultiDeviceError::CountMismatch {
            devices: 2,
            given: 1,
            ..
        }
    ));
}

#[test]
fn stop_copy_of_a_pre_copying_device_needs_its_stream_and_moves_nothing_without_it() {
    let log = log();
    let mut src = LocalDevice::new(FULL, FakeDevice::new(5), 0, &log);
    let _stream = transition(&mut src, PreCopy).unwrap();
    let err = save_stop_copy(&mut src, None, &mut Vec::new(), 4096).unwrap_err();
    assert!(
        matches!(err, V2UserError::WrongState { state: PreCopy, .. }),
        "{err}"
    );
    assert_eq!(src.state().unwrap(), PreCopy);
}

/// A PRE_COPY stream that answers scripted PRECOPY_INFOs and reads (data reads fill with 0xab).
struct Scripted {
    infos: Vec<PrecopyInfo>,
    reads: Vec<Result<ReadOutcome, Errno>>,
}

impl DataStream for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, Errno> {
        let next = self.reads.remove(0);
        if let Ok(ReadOutcome::Data(n)) = next {
            buf[..n].fill(0xab);
        }
        next
    }
    fn write(&mut self, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        Ok(self.infos.remove(0))
    }
}

fn info(initial_bytes: u64, dirty_bytes: u64) -> PrecopyInfo {
    PrecopyInfo {
        initial_bytes,
        dirty_bytes,
    }
}

#[test]
fn a_precopy_read_of_zero_bytes_is_the_temporary_end_as_mtty_answers_it() {
    // The device reports dirty state above the threshold, but its stream is drained for now and
    // it says so with read() = 0 rather than ENOMSG.
    let mut stream = Scripted {
        infos: vec![info(4, 100), info(0, 100)],
        reads: vec![Ok(ReadOutcome::Data(4)), Ok(ReadOutcome::End)],
    };
    let mut saved = Vec::new();
    let report = save_precopy(&mut stream, &mut saved, &policy(0)).unwrap();
    assert!(report.converged);
    assert_eq!(report.bytes, 4);
    assert_eq!(saved, [0xab; 4]);
}

#[test]
fn precopy_ending_with_initial_bytes_left_is_a_stall_however_it_is_said() {
    for end in [Ok(ReadOutcome::End), Ok(ReadOutcome::NoDataNow)] {
        let mut stream = Scripted {
            infos: vec![info(8, 0)],
            reads: vec![end],
        };
        let err = save_precopy(&mut stream, &mut Vec::new(), &policy(0)).unwrap_err();
        assert!(
            matches!(
                err,
                V2UserError::PrecopyStalled {
                    offset: 0,
                    initial_bytes: 8
                }
            ),
            "{err:?}"
        );
    }
}
