//! Resuming one device: STOP -> RESUMING, the saved bytes, RESUMING -> STOP, then the target.

use std::io::{ErrorKind, Read};

use super::error::{Recovery, V2UserError};
use super::traits::{DataStream, MigrationDevice};
use super::transition::transition;
use crate::vfio_v2::DeviceState;

/// Loads the device state read from `source` (to its end) into `dev`, then moves `dev` to
/// `target`. A stream the device rejects fails the RESUMING -> STOP step; the device is then in
/// ERROR and is reset (see [`Recovery`]). A failed read of `source` or write of the stream
/// aborts the resume, which takes a reset. Returns the bytes loaded.
pub fn resume<D: MigrationDevice + ?Sized, R: Read + ?Sized>(
    dev: &mut D,
    source: &mut R,
    target: DeviceState,
    read_size: usize,
) -> Result<u64, V2UserError> {
    let from = dev
        .state()
        .map_err(|errno| V2UserError::GetState { errno })?;
    let Some(mut stream) = transition(dev, DeviceState::Resuming)? else {
        return Err(V2UserError::NoStream {
            from,
            to: DeviceState::Resuming,
        });
    };
    let mut buf = vec![0u8; read_size.max(1)];
    let mut bytes = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(V2UserError::Source {
                    offset: bytes,
                    source,
                    recovery: abort(dev),
                });
            }
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            match stream.write(data) {
                Ok(0) => {
                    return Err(V2UserError::WriteZero {
                        offset: bytes,
                        recovery: abort(dev),
                    });
                }
                Ok(k) => {
                    data = &data[k.min(data.len())..];
                    bytes += k as u64;
                }
                Err(errno) => {
                    return Err(V2UserError::Write {
                        offset: bytes,
                        errno,
                        recovery: abort(dev),
                    });
                }
            }
        }
    }
    transition(dev, DeviceState::Stop)?;
    drop(stream);
    if target != DeviceState::Stop {
        transition(dev, target)?;
    }
    Ok(bytes)
}

/// Abandons a RESUMING session: only a reset leaves RESUMING without loading.
fn abort<D: MigrationDevice + ?Sized>(dev: &mut D) -> Recovery {
    match dev.reset() {
        Ok(()) => Recovery::Reset,
        Err(errno) => Recovery::ResetFailed(errno),
    }
}
