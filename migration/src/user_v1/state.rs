//! Header field access and v1 state changes with recovery.

use super::access::V1RegionAccess;
use super::error::{V1Recovery, V1UserError};
use crate::vfio_v1::{HeaderField, STATE_MASK, V1State};

/// Reads an 8-byte header field.
pub(crate) fn read_field<A: V1RegionAccess + ?Sized>(
    region: &mut A,
    field: HeaderField,
) -> Result<u64, V1UserError> {
    region
        .read_u64(field.offset())
        .map_err(|errno| V1UserError::Header {
            field: field.name(),
            offset: field.offset(),
            op: "read",
            errno,
        })
}

/// The raw `device_state` and the state it names.
pub(crate) fn read_state<A: V1RegionAccess + ?Sized>(
    region: &mut A,
) -> Result<(u32, V1State), V1UserError> {
    let field = HeaderField::DeviceState;
    let raw = region
        .read_u32(field.offset())
        .map_err(|errno| V1UserError::Header {
            field: field.name(),
            offset: field.offset(),
            op: "read",
            errno,
        })?;
    let state = V1State::from_bits(raw & STATE_MASK)
        .map_err(|_| V1UserError::UnknownState { value: raw })?;
    Ok((raw, state))
}

/// The device's current v1 state.
pub fn v1_state<A: V1RegionAccess + ?Sized>(region: &mut A) -> Result<V1State, V1UserError> {
    read_state(region).map(|(_, s)| s)
}

/// Moves the device to `to` by a read-modify-write of `device_state` (reserved bits are kept as
/// read). On failure the state is re-read; the error state or an unreadable state is reset.
pub fn set_v1_state<A: V1RegionAccess + ?Sized>(
    region: &mut A,
    to: V1State,
) -> Result<(), V1UserError> {
    let (raw, from) = read_state(region)?;
    let value = (raw & !STATE_MASK) | to.bits();
    region
        .write_u32(HeaderField::DeviceState.offset(), value)
        .map_err(|errno| V1UserError::SetState {
            from,
            to,
            errno,
            recovery: recover_v1(region),
        })
}

/// After a failure: where the device is, resetting it if it is in the error state or its state
/// cannot be read.
pub fn recover_v1<A: V1RegionAccess + ?Sized>(region: &mut A) -> V1Recovery {
    match read_state(region) {
        Ok((_, state)) if state != V1State::Error => V1Recovery::Stayed(state),
        _ => reset_v1(region),
    }
}

/// Resets the device (the only way out of the error state or an abandoned resume).
pub(crate) fn reset_v1<A: V1RegionAccess + ?Sized>(region: &mut A) -> V1Recovery {
    match region.reset() {
        Ok(()) => V1Recovery::Reset,
        Err(errno) => V1Recovery::ResetFailed(errno),
    }
}
