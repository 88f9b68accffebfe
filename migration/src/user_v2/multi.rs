//! Several devices migrating together, ordered for peer-to-peer DMA.
//!
//! While one device is stopped, another still running could DMA into it (P2P) and change state
//! that was already saved, or find it unresponsive. The P2P states exist to prevent that: on the
//! source every device is moved to RUNNING_P2P (or PRE_COPY_P2P) before any goes to STOP or
//! STOP_COPY, and on the destination every device reaches RUNNING_P2P before any goes to
//! RUNNING. As QEMU does, several devices migrate together only if all have P2P.

use std::io::{Read, Write};

use super::error::V2UserError;
use super::resume::resume;
use super::save::save_stop_copy;
use super::traits::MigrationDevice;
use super::transition::transition;
use crate::vfio_v2::{DeviceState, MIGRATION_P2P};

/// A failed multi-device step.
#[derive(Debug, thiserror::Error)]
pub enum MultiDeviceError {
    /// Several devices, one without P2P: their ordering cannot be guaranteed.
    #[error(
        "device {index} lacks P2P (migration flags {flags:#x}); devices migrate together only if all have RUNNING_P2P"
    )]
    NoP2p {
        /// The device.
        index: usize,
        /// Its migration flags.
        flags: u64,
    },
    /// A device is not in a state the step starts from.
    #[error("device {index} is in {state}; {expected}")]
    WrongState {
        /// The device.
        index: usize,
        /// Its state.
        state: DeviceState,
        /// What the step needs.
        expected: &'static str,
    },
    /// Device, stream and sink/source lists of different lengths.
    #[error("{devices} devices but {given} {what}")]
    CountMismatch {
        /// Devices given.
        devices: usize,
        /// Entries in the other list.
        given: usize,
        /// What the other list holds.
        what: &'static str,
    },
    /// One device's step failed. Devices already quiesced were moved back to where they were;
    /// `not_restored` lists those that could not be.
    #[error("device {index}: {source}{}", restored_note(not_restored))]
    Device {
        /// The device.
        index: usize,
        /// Its failure.
        source: V2UserError,
        /// Devices a rollback could not return to their previous state.
        not_restored: Vec<usize>,
    },
}

fn restored_note(not_restored: &[usize]) -> String {
    if not_restored.is_empty() {
        String::new()
    } else {
        format!(" (devices {not_restored:?} could not be moved back)")
    }
}

fn device_error(index: usize, source: V2UserError) -> MultiDeviceError {
    MultiDeviceError::Device {
        index,
        source,
        not_restored: Vec::new(),
    }
}

fn state_of<D: MigrationDevice + ?Sized>(
    index: usize,
    dev: &D,
) -> Result<DeviceState, MultiDeviceError> {
    dev.state()
        .map_err(|errno| device_error(index, V2UserError::GetState { errno }))
}

/// Whether the P2P states are used: always with several devices (all must have them), and for
/// a lone device that has them.
fn use_p2p<D: MigrationDevice + ?Sized>(devs: &[&mut D]) -> Result<bool, MultiDeviceError> {
    let mut all = true;
    for (index, dev) in devs.iter().enumerate() {
        let flags = dev
            .migration_flags()
            .map_err(|errno| device_error(index, V2UserError::Flags { errno }))?;
        if flags & MIGRATION_P2P == 0 {
            if devs.len() > 1 {
                return Err(MultiDeviceError::NoP2p { index, flags });
            }
            all = false;
        }
    }
    Ok(all)
}

fn check_count(devices: usize, given: usize, what: &'static str) -> Result<(), MultiDeviceError> {
    if devices == given {
        Ok(())
    } else {
        Err(MultiDeviceError::CountMismatch {
            devices,
            given,
            what,
        })
    }
}

/// Source side, first half of the switchover: moves every running device to RUNNING_P2P and
/// every pre-copying one to PRE_COPY_P2P. If one fails, the devices already moved are moved
/// back, so the guest keeps running as before.
pub fn quiesce_all<D: MigrationDevice + ?Sized>(
    devs: &mut [&mut D],
) -> Result<(), MultiDeviceError> {
    if !use_p2p(devs)? {
        return Ok(());
    }
    let mut moved: Vec<(usize, DeviceState)> = Vec::new();
    for index in 0..devs.len() {
        let state = state_of(index, &*devs[index])?;
        let target = match state {
            DeviceState::Running => DeviceState::RunningP2p,
            DeviceState::PreCopy => DeviceState::PreCopyP2p,
            DeviceState::RunningP2p
            | DeviceState::PreCopyP2p
            | DeviceState::Stop
            | DeviceState::StopCopy => continue,
            DeviceState::Resuming | DeviceState::Error => {
                return Err(MultiDeviceError::WrongState {
                    index,
                    state,
                    expected: "a saving source device must be running or pre-copying",
                });
            }
        };
        if let Err(source) = transition(&mut *devs[index], target) {
            let mut not_restored = Vec::new();
            for (i, before) in moved.into_iter().rev() {
                if transition(&mut *devs[i], before).is_err() {
                    not_restored.push(i);
                }
            }
            return Err(MultiDeviceError::Device {
                index,
                source,
                not_restored,
            });
        }
        moved.push((index, state));
    }
    Ok(())
}

/// Source side, second half: with every device quiescent, saves each one's STOP_COPY stream to
/// its sink (continuing its PRE_COPY session, given in `streams`, if it has one) and stops it.
/// Returns the bytes saved per device.
pub fn stop_copy_all<D: MigrationDevice + ?Sized, W: Write>(
    devs: &mut [&mut D],
    streams: Vec<Option<D::Stream>>,
    sinks: &mut [W],
    read_size: usize,
) -> Result<Vec<u64>, MultiDeviceError> {
    check_count(devs.len(), streams.len(), "streams")?;
    check_count(devs.len(), sinks.len(), "sinks")?;
    if use_p2p(devs)? {
        for (index, dev) in devs.iter().enumerate() {
            let state = state_of(index, &**dev)?;
            if !matches!(
                state,
                DeviceState::RunningP2p
                    | DeviceState::PreCopyP2p
                    | DeviceState::Stop
                    | DeviceState::StopCopy
            ) {
                return Err(MultiDeviceError::WrongState {
                    index,
                    state,
                    expected: "every device must be quiescent (quiesce_all) before any stops",
                });
            }
        }
    }
    let mut sizes = Vec::with_capacity(devs.len());
    for (index, ((dev, stream), sink)) in devs.iter_mut().zip(streams).zip(sinks).enumerate() {
        let bytes = save_stop_copy(&mut **dev, stream, sink, read_size)
            .map_err(|e| device_error(index, e))?;
        sizes.push(bytes);
    }
    Ok(sizes)
}

/// The source switchover: [`quiesce_all`], then [`stop_copy_all`].
pub fn save_all<D: MigrationDevice + ?Sized, W: Write>(
    devs: &mut [&mut D],
    streams: Vec<Option<D::Stream>>,
    sinks: &mut [W],
    read_size: usize,
) -> Result<Vec<u64>, MultiDeviceError> {
    quiesce_all(devs)?;
    stop_copy_all(devs, streams, sinks, read_size)
}

/// Destination side, first half: loads each device's state from its source and leaves it in
/// RUNNING_P2P (in STOP for a lone device without P2P). Returns the bytes loaded per device.
pub fn resume_all<D: MigrationDevice + ?Sized, R: Read>(
    devs: &mut [&mut D],
    sources: &mut [R],
    read_size: usize,
) -> Result<Vec<u64>, MultiDeviceError> {
    check_count(devs.len(), sources.len(), "sources")?;
    let target = if use_p2p(devs)? {
        DeviceState::RunningP2p
    } else {
        DeviceState::Stop
    };
    let mut sizes = Vec::with_capacity(devs.len());
    for (index, (dev, source)) in devs.iter_mut().zip(sources).enumerate() {
        let bytes =
            resume(&mut **dev, source, target, read_size).map_err(|e| device_error(index, e))?;
        sizes.push(bytes);
    }
    Ok(sizes)
}

/// Destination side, second half: once every device is loaded, moves each to RUNNING.
pub fn start_all<D: MigrationDevice + ?Sized>(devs: &mut [&mut D]) -> Result<(), MultiDeviceError> {
    if use_p2p(devs)? {
        for (index, dev) in devs.iter().enumerate() {
            let state = state_of(index, &**dev)?;
            if !matches!(state, DeviceState::RunningP2p | DeviceState::Running) {
                return Err(MultiDeviceError::WrongState {
                    index,
                    state,
                    expected: "every device must be loaded into RUNNING_P2P before any runs",
                });
            }
        }
    }
    for (index, dev) in devs.iter_mut().enumerate() {
        transition(&mut **dev, DeviceState::Running).map_err(|e| device_error(index, e))?;
    }
    Ok(())
}

/// The destination: [`resume_all`], then [`start_all`].
pub fn restore_all<D: MigrationDevice + ?Sized, R: Read>(
    devs: &mut [&mut D],
    sources: &mut [R],
    read_size: usize,
) -> Result<Vec<u64>, MultiDeviceError> {
    let sizes = resume_all(devs, sources, read_size)?;
    start_all(devs)?;
    Ok(sizes)
}
