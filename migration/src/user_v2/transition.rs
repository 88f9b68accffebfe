//! State changes with recovery: a failed SET re-reads the state, and resets as a last resort.

use super::error::{Recovery, V2UserError};
use super::traits::MigrationDevice;
use crate::vfio_v2::DeviceState;

/// Moves `dev` to `to`. On failure the state is re-read: a valid state is reported as is (the
/// caller decides what next); ERROR or an unreadable state is reset, the only way out.
pub fn transition<D: MigrationDevice + ?Sized>(
    dev: &mut D,
    to: DeviceState,
) -> Result<Option<D::Stream>, V2UserError> {
    let from = dev
        .state()
        .map_err(|errno| V2UserError::GetState { errno })?;
    dev.set_state(to).map_err(|errno| V2UserError::Transition {
        from,
        to,
        errno,
        recovery: recover(dev),
    })
}

/// After a failed SET: where the device is, resetting it if it is in ERROR or unreadable.
pub fn recover<D: MigrationDevice + ?Sized>(dev: &mut D) -> Recovery {
    match dev.state() {
        Ok(state) if state != DeviceState::Error => Recovery::Stayed(state),
        _ => match dev.reset() {
            Ok(()) => Recovery::Reset,
            Err(errno) => Recovery::ResetFailed(errno),
        },
    }
}
