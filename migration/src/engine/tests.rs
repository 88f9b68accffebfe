use super::arc::operates;
use super::*;
use crate::device_stream::StreamId;
use crate::errno::Errno;
use crate::testing::fake_device::{FakeDevice, MEM_SIZE, PAGE};
use crate::vfio_v2::ALL_STATES;
use DeviceState::*;

const BASIC: u64 = MIGRATION_STOP_COPY;
const FULL: u64 = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;
const FLAG_SETS: [u64; 4] = [
    BASIC,
    BASIC | MIGRATION_P2P,
    BASIC | MIGRATION_PRE_COPY,
    FULL,
];

/// Reads a saving session to its end (STOP_COPY) or to "no data for now" (PRE_COPY), `piece`
/// bytes at a time.
fn drain(
    engine: &mut MigrationEngine,
    dev: &mut FakeDevice,
    id: SessionId,
    piece: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        match engine.read(dev, id, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(EngineError::NoDataNow { .. }) => return out,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// The complete STOP_COPY stream of `dev`.
fn saved_stream(dev: &mut FakeDevice) -> Vec<u8> {
    let mut engine = MigrationEngine::new(BASIC).unwrap();
    let id = engine.set_state(dev, StopCopy).unwrap().unwrap();
    let bytes = drain(&mut engine, dev, id, 4096);
    engine.set_state(dev, Running).unwrap();
    bytes
}

/// Writes `bytes` into a resuming session opened on `engine`.
fn resume_with(engine: &mut MigrationEngine, dev: &mut FakeDevice, bytes: &[u8]) {
    let id = engine.set_state(dev, Resuming).unwrap().unwrap();
    for piece in bytes.chunks(1000) {
        assert_eq!(engine.write(dev, id, piece), Ok(piece.len()));
    }
}

/// Brings a fresh engine (and its device) to `state`.
fn engine_at(flags: u64, state: DeviceState) -> (MigrationEngine, FakeDevice) {
    let mut engine = MigrationEngine::new(flags).unwrap();
    let mut dev = FakeDevice::new(1);
    match state {
        Error => {
            resume_with(&mut engine, &mut dev, b"not a stream");
            let err = engine.set_state(&mut dev, Stop).unwrap_err();
            assert!(matches!(err, EngineError::BadStream { .. }), "{err}");
        }
        Resuming => {
            let bytes = saved_stream(&mut FakeDevice::new(9));
            resume_with(&mut engine, &mut dev, &bytes);
        }
        s => {
            engine.set_state(&mut dev, s).unwrap();
        }
    }
    assert_eq!(engine.state(), state);
    (engine, dev)
}

#[test]
fn every_pair_of_states_moves_the_device_or_is_refused_without_change() {
    for flags in FLAG_SETS {
        for from in ALL_STATES
            .into_iter()
            .filter(|s| *s == Error || s.supported_by(flags))
        {
            for to in ALL_STATES {
                let (mut engine, mut dev) = engine_at(flags, from);
                let session_before = engine.current_session();
                let legal = from != Error
                    && to != Error
                    && to.supported_by(flags)
                    && crate::vfio_v2::path(from, to, flags).is_ok();
                let result = engine.set_state(&mut dev, to);
                let case = format!("{from} -> {to}, flags {flags:#x}");
                if !legal {
                    let err = result.expect_err(&case);
                    assert!(
                        matches!(err, EngineError::Transition { .. }),
                        "{case}: {err}"
                    );
                    assert_eq!(err.errno(), Errno::EINVAL, "{case}");
                    assert_eq!(engine.state(), from, "{case}");
                    assert_eq!(engine.current_session(), session_before, "{case}");
                    continue;
                }
                let opened = result.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(engine.state(), to, "{case}");
                assert_eq!(dev.dma, to.initiates_dma(), "{case}: DMA");
                assert_eq!(dev.operating, operates(to), "{case}: operating");
                let has_session = to.is_saving() || to == Resuming;
                assert_eq!(engine.current_session().is_some(), has_session, "{case}");
                let opens = from != to && ((to.is_saving() && !from.is_saving()) || to == Resuming);
                assert_eq!(opened.is_some(), opens, "{case}: new session");
                if from.is_saving() && to.is_saving() {
                    assert_eq!(
                        engine.current_session(),
                        session_before,
                        "{case}: same session"
                    );
                }
                if from == Resuming && to != Resuming {
                    assert!(dev.same_state(&FakeDevice::new(9)), "{case}: state loaded");
                }
            }
        }
    }
}

#[test]
fn each_direct_arc_calls_the_hooks_of_its_activity_change() {
    let cases: [(u64, DeviceState, DeviceState, &[&str]); 8] = [
        (FULL, Running, RunningP2p, &["quiesce_dma"]),
        (FULL, RunningP2p, Stop, &["stop"]),
        (FULL, Stop, RunningP2p, &["start"]),
        (FULL, RunningP2p, Running, &["resume_dma"]),
        (FULL, PreCopyP2p, StopCopy, &["stop", "stop_copy"]),
        (FULL, Running, PreCopy, &["precopy_start"]),
        (BASIC, Running, Stop, &["quiesce_dma", "stop"]),
        (BASIC, Stop, Running, &["start", "resume_dma"]),
    ];
    for (flags, from, to, hooks) in cases {
        assert_eq!(crate::vfio_v2::path(from, to, flags).unwrap().len(), 1);
        let (mut engine, mut dev) = engine_at(flags, from);
        dev.calls.clear();
        engine.set_state(&mut dev, to).unwrap();
        assert_eq!(dev.calls, hooks, "{from} -> {to}");
    }
    let (mut engine, mut dev) = engine_at(FULL, PreCopy);
    dev.calls.clear();
    engine.set_state(&mut dev, Running).unwrap();
    assert_eq!(dev.calls, ["saving_end"]);
}

#[test]
fn a_failing_hook_stops_the_walk_at_the_last_state_reached() {
    let (mut engine, mut dev) = engine_at(FULL, Running);
    dev.fail.insert("stop");
    let err = engine.set_state(&mut dev, StopCopy).unwrap_err();
    assert!(matches!(
        err,
        EngineError::Hook {
            from: RunningP2p,
            to: Stop,
            hook: "stop",
            now: RunningP2p,
            ..
        }
    ));
    assert_eq!(err.errno(), Errno::EIO);
    assert_eq!(engine.state(), RunningP2p);
    assert!(!dev.dma && dev.operating);
    assert_eq!(engine.current_session(), None);
}

#[test]
fn a_failed_capture_after_stopping_restarts_the_device_and_keeps_the_session() {
    let (mut engine, mut dev) = engine_at(FULL, PreCopyP2p);
    let id = engine.current_session().unwrap();
    dev.fail.insert("stop_copy");
    let err = engine.set_state(&mut dev, StopCopy).unwrap_err();
    assert!(matches!(
        err,
        EngineError::Hook {
            hook: "stop_copy",
            now: PreCopyP2p,
            ..
        }
    ));
    assert_eq!(engine.state(), PreCopyP2p);
    assert!(dev.operating, "the stop was undone");
    assert!(!drain(&mut engine, &mut dev, id, 4096).is_empty());
}

#[test]
fn a_failed_undo_leaves_error_until_a_reset() {
    let (mut engine, mut dev) = engine_at(FULL, PreCopyP2p);
    dev.fail.extend(["stop_copy", "start"]);
    let err = engine.set_state(&mut dev, StopCopy).unwrap_err();
    assert!(matches!(err, EngineError::Hook { now: Error, .. }), "{err}");
    assert_eq!(engine.state(), Error);
    assert_eq!(engine.current_session(), None);
    assert!(matches!(
        engine.set_state(&mut dev, Running),
        Err(EngineError::Transition { from: Error, .. })
    ));
    dev.fail.clear();
    engine.reset(&mut dev);
    assert_eq!(engine.state(), Running);
    assert_eq!(dev.resets, 1);
    assert!(dev.dma && dev.operating);
}

#[test]
fn stale_sessions_and_wrong_directions_are_refused() {
    let (mut engine, mut dev) = engine_at(FULL, PreCopy);
    let saving = engine.current_session().unwrap();
    assert!(matches!(
        engine.write(&mut dev, saving, b"x"),
        Err(EngineError::WrongDirection { kind: "saving", .. })
    ));
    engine.set_state(&mut dev, Running).unwrap();
    let err = engine.read(&mut dev, saving, &mut [0u8; 16]).unwrap_err();
    assert_eq!(err, EngineError::SessionClosed { session: saving });
    assert_eq!(err.errno(), Errno::ENODEV);

    let resuming = engine.set_state(&mut dev, Resuming).unwrap().unwrap();
    assert_ne!(resuming, saving);
    assert_eq!(
        engine
            .read(&mut dev, resuming, &mut [0u8; 4])
            .unwrap_err()
            .errno(),
        Errno::EBADF
    );
    engine.reset(&mut dev);
    assert_eq!(
        engine.write(&mut dev, resuming, b"x"),
        Err(EngineError::SessionClosed { session: resuming })
    );
}

#[test]
fn precopy_reports_shrinking_initial_bytes_then_dirty_pages_then_no_data() {
    let (mut engine, mut dev) = engine_at(FULL, Running);
    let id = engine.set_state(&mut dev, PreCopy).unwrap().unwrap();
    let first = engine.precopy_info(&dev, id).unwrap();
    assert!(first.initial_bytes > MEM_SIZE as u64);
    assert_eq!(first.dirty_bytes, 0);
    let mut last = first.initial_bytes;
    let mut buf = [0u8; 3000];
    let mut stream = Vec::new();
    while last > 0 {
        let n = engine.read(&mut dev, id, &mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
        let info = engine.precopy_info(&dev, id).unwrap();
        assert_eq!(info.initial_bytes, last - n as u64);
        last = info.initial_bytes;
    }
    let err = engine.read(&mut dev, id, &mut buf).unwrap_err();
    assert_eq!(err.errno(), Errno::ENOMSG);

    dev.write_mem(5 * PAGE + 10, &[0xee; 2 * PAGE]);
    let info = engine.precopy_info(&dev, id).unwrap();
    assert_eq!(info.initial_bytes, 0);
    assert_eq!(info.dirty_bytes, 3 * PAGE as u64);
    stream.extend(drain(&mut engine, &mut dev, id, 700));
    assert_eq!(engine.precopy_info(&dev, id).unwrap().dirty_bytes, 0);
    assert!(matches!(
        engine.read(&mut dev, id, &mut buf),
        Err(EngineError::NoDataNow { state: PreCopy })
    ));

    dev.write_mem(0, &[1, 2, 3]);
    dev.write_reg(3, 0x77);
    engine.set_state(&mut dev, StopCopy).unwrap();
    let size = engine.data_size(&dev);
    let rest = drain(&mut engine, &mut dev, id, 512);
    assert_eq!(
        size,
        rest.len() as u64,
        "MIG_DATA_SIZE is exact in STOP_COPY"
    );
    stream.extend(rest);
    assert_eq!(
        engine.read(&mut dev, id, &mut buf),
        Ok(0),
        "end of stream stays"
    );
    assert_eq!(
        engine.precopy_info(&dev, id).unwrap_err().errno(),
        Errno::EINVAL
    );
    engine.set_state(&mut dev, Stop).unwrap();

    let mut target_engine = MigrationEngine::new(FULL).unwrap();
    let mut target = FakeDevice::blank();
    resume_with(&mut target_engine, &mut target, &stream);
    target_engine.set_state(&mut target, Running).unwrap();
    assert!(target.same_state(&dev));
}

#[test]
fn a_capture_failure_during_precopy_breaks_the_session() {
    let (mut engine, mut dev) = engine_at(FULL, PreCopy);
    let id = engine.current_session().unwrap();
    drain(&mut engine, &mut dev, id, 8192);
    dev.fail.insert("precopy_dirty");
    let err = engine.read(&mut dev, id, &mut [0u8; 64]).unwrap_err();
    assert!(matches!(err, EngineError::SavingBroken { .. }));
    dev.fail.clear();
    assert!(matches!(
        engine.read(&mut dev, id, &mut [0u8; 64]),
        Err(EngineError::SavingBroken { .. })
    ));
    engine.set_state(&mut dev, Running).unwrap();
    assert_eq!(engine.current_session(), None);
}

fn rejected_stream(bytes: &[u8]) -> (StreamError, MigrationEngine, FakeDevice) {
    let mut engine = MigrationEngine::new(FULL).unwrap();
    let mut dev = FakeDevice::blank();
    resume_with(&mut engine, &mut dev, bytes);
    let err = engine.set_state(&mut dev, Running).unwrap_err();
    assert_eq!(engine.state(), Error, "{err}");
    assert!(dev.same_state(&FakeDevice::blank()), "nothing was applied");
    assert!(!dev.calls.contains(&"load"));
    match err {
        EngineError::BadStream { source } => (source, engine, dev),
        e => panic!("expected a stream error, got {e}"),
    }
}

#[test]
fn corrupt_truncated_and_foreign_streams_leave_error_and_a_reset_recovers() {
    let good = saved_stream(&mut FakeDevice::new(4));

    let mut corrupt = good.clone();
    corrupt[good.len() / 2] ^= 0x40;
    let (err, _, _) = rejected_stream(&corrupt);
    assert!(matches!(err, StreamError::RecordChecksum { .. }), "{err}");

    let (err, _, _) = rejected_stream(&good[..good.len() - 10]);
    assert!(matches!(err, StreamError::Truncated { .. }), "{err}");

    let mut other = FakeDevice::new(4);
    other.kind = "test:other-device";
    let (err, mut engine, mut dev) = rejected_stream(&saved_stream(&mut other));
    assert_eq!(
        err,
        StreamError::Foreign {
            found: StreamId::new("test:other-device", 1),
            expected: StreamId::new("test:fake-device", 1),
        }
    );

    engine.reset(&mut dev);
    assert_eq!(engine.state(), Running);
    resume_with(&mut engine, &mut dev, &good);
    engine.set_state(&mut dev, Running).unwrap();
    assert!(dev.same_state(&FakeDevice::new(4)));
}

#[test]
fn a_device_refusing_the_image_leaves_error() {
    let good = saved_stream(&mut FakeDevice::new(4));
    let mut engine = MigrationEngine::new(BASIC).unwrap();
    let mut dev = FakeDevice::blank();
    dev.fail.insert("load");
    resume_with(&mut engine, &mut dev, &good);
    let err = engine.set_state(&mut dev, Stop).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Hook {
                hook: "load",
                now: Error,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(engine.state(), Error);
}

#[test]
fn flags_without_stop_copy_are_refused() {
    assert!(matches!(
        MigrationEngine::new(MIGRATION_P2P),
        Err(EngineError::BadFlags { .. })
    ));
    assert!(matches!(
        MigrationEngine::new(MIGRATION_STOP_COPY | 8),
        Err(EngineError::BadFlags { .. })
    ));
}

#[test]
fn an_unframable_initial_capture_fails_the_arc_and_stops_tracking() {
    let limits = crate::device_stream::StreamLimits {
        max_record: 2 * PAGE as u32,
        max_image: 1 << 20,
    };
    let mut engine = MigrationEngine::with_limits(FULL, limits).unwrap();
    let mut dev = FakeDevice::new(2);
    // 16 KiB of memory sent whole does not fit a 2 KiB record.
    let err = engine.set_state(&mut dev, PreCopy).unwrap_err();
    assert!(matches!(err, EngineError::Encode { .. }), "{err}");
    assert_eq!(engine.state(), Running);
    assert!(!dev.tracking, "tracking stopped with the failed session");
    assert_eq!(engine.current_session(), None);
}

#[test]
fn an_unframable_final_capture_breaks_the_session() {
    let limits = crate::device_stream::StreamLimits {
        max_record: MEM_SIZE as u32,
        max_image: 1 << 20,
    };
    let mut engine = MigrationEngine::with_limits(FULL, limits).unwrap();
    let mut dev = FakeDevice::new(2);
    let id = engine.set_state(&mut dev, PreCopyP2p).unwrap().unwrap();
    dev.extra_final = MEM_SIZE + 1;
    let err = engine.set_state(&mut dev, StopCopy).unwrap_err();
    assert!(matches!(err, EngineError::Encode { .. }), "{err}");
    assert_eq!(engine.state(), PreCopyP2p);
    assert!(dev.operating, "the stop was undone");
    let err = engine.read(&mut dev, id, &mut [0u8; 64]).unwrap_err();
    assert!(matches!(err, EngineError::SavingBroken { .. }), "{err}");
    assert_eq!(err.errno(), Errno::EIO);
}
