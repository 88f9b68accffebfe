//! The deprecated VFIO migration v1 region: its header layout and device states
//! (`struct vfio_device_migration_info`, `VFIO_DEVICE_STATE_V1_*` in `include/uapi/linux/vfio.h`).
//!
//! Shared by the device-side region model ([`crate::v1_region`]) and the user-side loops
//! ([`crate::user_v1`]).

use std::fmt;

use crate::vfio_v2::DeviceState;

/// `VFIO_REGION_TYPE_MIGRATION_DEPRECATED`.
pub const REGION_TYPE_MIGRATION_DEPRECATED: u32 = 3;
/// `VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED`.
pub const REGION_SUBTYPE_MIGRATION_DEPRECATED: u32 = 1;

/// `VFIO_DEVICE_STATE_V1_RUNNING`.
pub const STATE_RUNNING: u32 = 1 << 0;
/// `VFIO_DEVICE_STATE_V1_SAVING`.
pub const STATE_SAVING: u32 = 1 << 1;
/// `VFIO_DEVICE_STATE_V1_RESUMING`.
pub const STATE_RESUMING: u32 = 1 << 2;
/// `VFIO_DEVICE_STATE_MASK`: the defined bits; the others are reserved.
pub const STATE_MASK: u32 = STATE_RUNNING | STATE_SAVING | STATE_RESUMING;

/// Size of the header at offset 0 of the region.
pub const HEADER_SIZE: u64 = 32;

/// A field of `struct vfio_device_migration_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    /// `__u32 device_state` at 0 (RW).
    DeviceState,
    /// `__u32 reserved` at 4 (reads 0, writes ignored).
    Reserved,
    /// `__u64 pending_bytes` at 8 (RO).
    PendingBytes,
    /// `__u64 data_offset` at 16 (RO; reading it stages the next buffer when saving).
    DataOffset,
    /// `__u64 data_size` at 24 (RW).
    DataSize,
}

impl HeaderField {
    /// Every field, in layout order.
    pub const ALL: [HeaderField; 5] = [
        HeaderField::DeviceState,
        HeaderField::Reserved,
        HeaderField::PendingBytes,
        HeaderField::DataOffset,
        HeaderField::DataSize,
    ];

    /// The field's offset in the region.
    pub fn offset(self) -> u64 {
        match self {
            HeaderField::DeviceState => 0,
            HeaderField::Reserved => 4,
            HeaderField::PendingBytes => 8,
            HeaderField::DataOffset => 16,
            HeaderField::DataSize => 24,
        }
    }

    /// The field's width in bytes: the only access size allowed.
    pub fn width(self) -> usize {
        match self {
            HeaderField::DeviceState | HeaderField::Reserved => 4,
            _ => 8,
        }
    }

    /// The uAPI name.
    pub fn name(self) -> &'static str {
        match self {
            HeaderField::DeviceState => "device_state",
            HeaderField::Reserved => "reserved",
            HeaderField::PendingBytes => "pending_bytes",
            HeaderField::DataOffset => "data_offset",
            HeaderField::DataSize => "data_size",
        }
    }

    /// The field accessed by `len` bytes at `offset`, if that is exactly one field.
    pub fn at(offset: u64, len: usize) -> Option<HeaderField> {
        Self::ALL
            .into_iter()
            .find(|f| f.offset() == offset && f.width() == len)
    }
}

/// The v1 device states (`device_state & VFIO_DEVICE_STATE_MASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V1State {
    /// `000b`: stopped.
    Stop,
    /// `001b`: running (the state after open or reset).
    Running,
    /// `010b`: stop-and-copy.
    StopAndCopy,
    /// `011b`: pre-copy (running and saving).
    PreCopy,
    /// `100b`: resuming.
    Resuming,
    /// `110b`: the error state after an internal failure; only a reset leaves it.
    Error,
}

/// A `device_state` value that names no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value:#x} is not a v1 device state: {reason}")]
pub struct InvalidV1State {
    /// The value.
    pub value: u32,
    /// Why: reserved bits set, or an invalid bit combination.
    pub reason: &'static str,
}

impl V1State {
    /// The state bits.
    pub fn bits(self) -> u32 {
        match self {
            V1State::Stop => 0,
            V1State::Running => STATE_RUNNING,
            V1State::StopAndCopy => STATE_SAVING,
            V1State::PreCopy => STATE_RUNNING | STATE_SAVING,
            V1State::Resuming => STATE_RESUMING,
            V1State::Error => STATE_SAVING | STATE_RESUMING,
        }
    }

    /// The state named by `value`, which must have no reserved bit set.
    pub fn from_bits(value: u32) -> Result<Self, InvalidV1State> {
        if value & !STATE_MASK != 0 {
            return Err(InvalidV1State {
                value,
                reason: "reserved bits are set",
            });
        }
        Ok(match value {
            0 => V1State::Stop,
            1 => V1State::Running,
            2 => V1State::StopAndCopy,
            3 => V1State::PreCopy,
            4 => V1State::Resuming,
            6 => V1State::Error,
            _ => {
                return Err(InvalidV1State {
                    value,
                    reason: "RESUMING must be the only bit set",
                });
            }
        })
    }

    /// The v2 state this maps to (the v2 engine drives both protocols).
    pub fn to_v2(self) -> DeviceState {
        match self {
            V1State::Stop => DeviceState::Stop,
            V1State::Running => DeviceState::Running,
            V1State::StopAndCopy => DeviceState::StopCopy,
            V1State::PreCopy => DeviceState::PreCopy,
            V1State::Resuming => DeviceState::Resuming,
            V1State::Error => DeviceState::Error,
        }
    }

    /// The v1 view of a v2 state: the P2P quiescent states look like their running twins.
    pub fn from_v2(state: DeviceState) -> Self {
        match state {
            DeviceState::Error => V1State::Error,
            DeviceState::Stop => V1State::Stop,
            DeviceState::Running | DeviceState::RunningP2p => V1State::Running,
            DeviceState::StopCopy => V1State::StopAndCopy,
            DeviceState::Resuming => V1State::Resuming,
            DeviceState::PreCopy | DeviceState::PreCopyP2p => V1State::PreCopy,
        }
    }

    /// True for pre-copy and stop-and-copy.
    pub fn is_saving(self) -> bool {
        matches!(self, V1State::PreCopy | V1State::StopAndCopy)
    }
}

impl fmt::Display for V1State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            V1State::Stop => "stopped",
            V1State::Running => "running",
            V1State::StopAndCopy => "stop-and-copy",
            V1State::PreCopy => "pre-copy",
            V1State::Resuming => "resuming",
            V1State::Error => "error",
        };
        write!(f, "{name} ({:03b}b)", self.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bits_follow_the_uapi_macros() {
        for value in 0..8u32 {
            let valid = if value & STATE_RESUMING != 0 {
                value & STATE_MASK == STATE_RESUMING
            } else {
                true
            };
            let is_error = value & STATE_MASK == STATE_SAVING | STATE_RESUMING;
            match V1State::from_bits(value) {
                Ok(s) => {
                    assert!(valid || is_error, "{value:03b}");
                    assert_eq!(s.bits(), value);
                    assert_eq!(s == V1State::Error, is_error);
                }
                Err(e) => {
                    assert!(!valid && !is_error, "{value:03b}");
                    assert_eq!(e.value, value);
                }
            }
        }
        assert_eq!(
            V1State::from_bits(STATE_RUNNING | 8),
            Err(InvalidV1State {
                value: 9,
                reason: "reserved bits are set"
            })
        );
    }

    #[test]
    fn header_fields_match_only_at_their_width_and_offset() {
        assert_eq!(HeaderField::at(0, 4), Some(HeaderField::DeviceState));
        assert_eq!(HeaderField::at(24, 8), Some(HeaderField::DataSize));
        assert_eq!(HeaderField::at(0, 8), None);
        assert_eq!(HeaderField::at(8, 4), None);
        assert_eq!(HeaderField::at(12, 4), None);
        assert_eq!(HeaderField::at(2, 2), None);
    }
}
