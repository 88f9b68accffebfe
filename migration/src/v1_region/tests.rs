use super::*;
use crate::errno::Errno;
use crate::testing::fake_device::FakeDevice;
use crate::vfio_v2::{MIGRATION_P2P, MIGRATION_PRE_COPY, MIGRATION_STOP_COPY};

const FLAGS: u64 = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;

struct Rig {
    region: V1Region<VecWindow>,
    engine: MigrationEngine,
    dev: FakeDevice,
}

impl Rig {
    fn new() -> Self {
        let layout =
            V1Layout::new(0x4000, 0x1000..0x4000, vec![0x1000..0x2000, 0x3000..0x4000]).unwrap();
        Rig {
            region: V1Region::new(layout, VecWindow::new(0x3000))
                .unwrap()
                .with_staging_offset(0x800)
                .unwrap(),
            engine: MigrationEngine::new(FLAGS).unwrap(),
            dev: FakeDevice::new(3),
        }
    }

    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, V1RegionError> {
        let mut buf = vec![0u8; len];
        self.region
            .read(&mut self.engine, &mut self.dev, offset, &mut buf)
            .map(|()| buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), V1RegionError> {
        self.region
            .write(&mut self.engine, &mut self.dev, offset, data)
    }

    fn state(&mut self) -> u32 {
        let b = self.read(0, 4).unwrap();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn read_u64(&mut self, offset: u64) -> u64 {
        let b = self.read(offset, 8).unwrap();
        u64::from_le_bytes(b.try_into().unwrap())
    }

    fn set_state(&mut self, value: u32) -> Result<(), V1RegionError> {
        self.write(0, &value.to_le_bytes())
    }
}

#[test]
fn header_fields_refuse_other_widths_and_alignments() {
    let mut rig = Rig::new();
    for (offset, len) in [
        (0, 8),
        (0, 2),
        (2, 4),
        (8, 4),
        (12, 4),
        (16, 4),
        (20, 8),
        (24, 4),
        (30, 2),
    ] {
        let err = rig.read(offset, len).unwrap_err();
        assert_eq!(err, V1RegionError::BadHeaderAccess { offset, len });
        assert_eq!(err.errno(), Errno::EINVAL);
        let err = rig.write(offset, &vec![0; len]).unwrap_err();
        assert_eq!(err, V1RegionError::BadHeaderAccess { offset, len });
    }
    assert_eq!(rig.state(), 1, "running after open");
    assert_eq!(rig.read(4, 4).unwrap(), [0; 4]);
    rig.write(4, &[0xff; 4]).unwrap();
    assert_eq!(rig.read(4, 4).unwrap(), [0; 4], "reserved ignores writes");
    assert_eq!(
        rig.write(8, &[0; 8]).unwrap_err(),
        V1RegionError::ReadOnlyField {
            field: "pending_bytes",
            offset: 8
        }
    );
    assert!(matches!(
        rig.write(16, &[0; 8]).unwrap_err(),
        V1RegionError::ReadOnlyField {
            field: "data_offset",
            ..
        }
    ));
    assert!(matches!(
        rig.read(32, 8).unwrap_err(),
        V1RegionError::OutOfRange { offset: 32, .. }
    ));
    assert!(matches!(
        rig.read(0x3ff8, 16).unwrap_err(),
        V1RegionError::OutOfRange { .. }
    ));
    assert_eq!(rig.state(), 1);
}

#[test]
fn invalid_state_values_change_nothing() {
    let mut rig = Rig::new();
    rig.set_state(3).unwrap(); // pre-copy
    for value in [5, 7, 6, 3 | 8, 1 << 31] {
        let err = rig.set_state(value).unwrap_err();
        assert!(
            matches!(err, V1RegionError::InvalidState { value: v, current: V1State::PreCopy, .. } if v == value),
            "{value:#x}: {err}"
        );
        assert_eq!(rig.state(), 3);
    }
    // Stop-and-copy back to pre-copy is not a journey the state machine has.
    rig.set_state(2).unwrap();
    let err = rig.set_state(3).unwrap_err();
    assert!(matches!(err, V1RegionError::Transition { .. }), "{err}");
    assert_eq!(rig.state(), 2);
}

#[test]
fn data_offset_stages_a_buffer_and_pending_bytes_acknowledges_it() {
    let mut rig = Rig::new();
    rig.set_state(2).unwrap(); // stop-and-copy
    let pending = rig.read_u64(8);
    assert_eq!(pending, rig.read_u64(8), "pending_bytes has no side effect");
    let offset = rig.read_u64(16);
    assert_eq!(offset, 0x1800, "buffers start in the first mmap extent");
    let size = rig.read_u64(24);
    assert_eq!(
        size, 0x2800,
        "and run to the end of the window, across the trapped part"
    );
    assert_eq!(
        rig.read_u64(16),
        offset,
        "repeated reads return the same buffer"
    );
    assert_eq!(rig.read_u64(24), size);
    let first = rig.read(offset, size as usize).unwrap();
    assert_eq!(&first[..8], b"VFDSTATE");
    assert_eq!(rig.read_u64(8), pending - size, "acknowledged");
    rig.read_u64(16);
    let second = rig.read(offset, 16).unwrap();
    assert_ne!(first[..16], second[..16], "a new buffer was staged");
}

#[test]
fn data_size_is_written_only_while_resuming_and_within_the_buffer() {
    let mut rig = Rig::new();
    assert_eq!(
        rig.write(24, &1u64.to_le_bytes()).unwrap_err(),
        V1RegionError::DataSizeNotWritable {
            state: V1State::Running
        }
    );
    rig.set_state(4).unwrap();
    assert_eq!(
        rig.write(24, &0x2801u64.to_le_bytes()).unwrap_err(),
        V1RegionError::DataSizeTooLarge {
            size: 0x2801,
            max: 0x2800
        }
    );
    assert_eq!(rig.state(), 4);
}

#[test]
fn a_bad_resumed_stream_moves_to_the_error_state_and_a_reset_clears_it() {
    let mut rig = Rig::new();
    rig.set_state(4).unwrap();
    let offset = rig.read_u64(16);
    rig.write(offset, b"definitely not a device-state stream")
        .unwrap();
    rig.write(24, &36u64.to_le_bytes()).unwrap();
    let err = rig.set_state(1).unwrap_err();
    assert!(
        matches!(
            err,
            V1RegionError::InternalFailure {
                source: EngineError::BadStream { .. }
            }
        ),
        "{err}"
    );
    assert_eq!(rig.state(), 6, "error state");
    assert!(matches!(
        rig.set_state(1).unwrap_err(),
        V1RegionError::Transition {
            from: V1State::Error,
            ..
        }
    ));
    rig.region.reset(&mut rig.engine, &mut rig.dev);
    assert_eq!(rig.state(), 1);
}

#[test]
fn a_failing_hook_moves_to_the_error_state() {
    let mut rig = Rig::new();
    rig.dev.fail.insert("stop_copy");
    let err = rig.set_state(2).unwrap_err();
    assert!(
        matches!(err, V1RegionError::InternalFailure { .. }),
        "{err}"
    );
    assert_eq!(err.errno(), Errno::EIO);
    assert_eq!(rig.state(), 6);
}

#[test]
fn layouts_that_do_not_hold_together_are_refused() {
    assert!(matches!(
        V1Layout::new(0x1000, 16..0x800, vec![]),
        Err(V1LayoutError::BadWindow { .. })
    ));
    assert!(matches!(
        V1Layout::new(0x1000, 0x100..0x1001, vec![]),
        Err(V1LayoutError::BadWindow { .. })
    ));
    assert!(matches!(
        V1Layout::new(0x1000, 0x100..0x1000, vec![0x200..0x400, 0x300..0x500]),
        Err(V1LayoutError::BadExtent { start: 0x300, .. })
    ));
    let layout = V1Layout::new(0x1000, 0x100..0x1000, vec![]).unwrap();
    assert!(matches!(
        V1Region::new(layout.clone(), VecWindow::new(0x100)),
        Err(V1LayoutError::StorageSize { .. })
    ));
    assert!(matches!(
        V1Region::new(layout, VecWindow::new(0xf00))
            .unwrap()
            .with_staging_offset(0xf00),
        Err(V1LayoutError::BadStagingOffset { .. })
    ));
}
