//! The VFIO migration v2 state machine: device states and the kernel's next-step table.
//!
//! A device moves from state to state only along arcs its driver implements; the VFIO core
//! reaches any other target by walking `vfio_from_fsm_table` one arc at a time, skipping states
//! whose optional feature (P2P, PRE_COPY) the device lacks. This module is that table and walk,
//! exactly as Linux has them (`vfio_mig_get_next_state` in `drivers/vfio/vfio_main.c`), so that
//! the emulated host's devices and the migration driver agree with real ones.

use std::fmt;

/// `VFIO_MIGRATION_STOP_COPY`: the device can be saved and resumed.
pub const MIGRATION_STOP_COPY: u64 = 1 << 0;
/// `VFIO_MIGRATION_P2P`: the device has the RUNNING_P2P quiescent state.
pub const MIGRATION_P2P: u64 = 1 << 1;
/// `VFIO_MIGRATION_PRE_COPY`: the device can send state while running.
pub const MIGRATION_PRE_COPY: u64 = 1 << 2;

/// `enum vfio_device_mig_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceState {
    /// The device failed a transition; only a reset leaves this state.
    Error = 0,
    /// Stopped: no DMA, no MMIO side effects, state frozen.
    Stop = 1,
    /// Normal operation.
    Running = 2,
    /// Stopped, saving its state through the data stream.
    StopCopy = 3,
    /// Stopped, loading state from the data stream.
    Resuming = 4,
    /// Running but initiating no DMA or P2P (it still answers MMIO).
    RunningP2p = 5,
    /// Running while sending its state (initial bytes, then dirty bytes).
    PreCopy = 6,
    /// PRE_COPY's quiescent twin: saving, initiating no DMA.
    PreCopyP2p = 7,
}

/// Every state, in uAPI order.
pub const ALL_STATES: [DeviceState; 8] = [
    DeviceState::Error,
    DeviceState::Stop,
    DeviceState::Running,
    DeviceState::StopCopy,
    DeviceState::Resuming,
    DeviceState::RunningP2p,
    DeviceState::PreCopy,
    DeviceState::PreCopyP2p,
];

/// A state number outside `enum vfio_device_mig_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a VFIO device migration state")]
pub struct UnknownState(pub u32);

impl TryFrom<u32> for DeviceState {
    type Error = UnknownState;

    fn try_from(raw: u32) -> Result<Self, UnknownState> {
        ALL_STATES
            .get(raw as usize)
            .copied()
            .ok_or(UnknownState(raw))
    }
}

impl From<DeviceState> for u32 {
    fn from(s: DeviceState) -> u32 {
        s as u32
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceState::Error => "ERROR",
            DeviceState::Stop => "STOP",
            DeviceState::Running => "RUNNING",
            DeviceState::StopCopy => "STOP_COPY",
            DeviceState::Resuming => "RESUMING",
            DeviceState::RunningP2p => "RUNNING_P2P",
            DeviceState::PreCopy => "PRE_COPY",
            DeviceState::PreCopyP2p => "PRE_COPY_P2P",
        })
    }
}

impl DeviceState {
    /// The migration flags a device needs for this state to exist (`state_flags_table`).
    /// ERROR needs every flag, which no device has: it is never a valid target.
    pub fn required_flags(self) -> u64 {
        match self {
            DeviceState::Stop
            | DeviceState::Running
            | DeviceState::StopCopy
            | DeviceState::Resuming => MIGRATION_STOP_COPY,
            DeviceState::PreCopy => MIGRATION_STOP_COPY | MIGRATION_PRE_COPY,
            DeviceState::RunningP2p => MIGRATION_STOP_COPY | MIGRATION_P2P,
            DeviceState::PreCopyP2p => MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY,
            DeviceState::Error => u64::MAX,
        }
    }

    /// Whether a device with `flags` has this state.
    pub fn supported_by(self, flags: u64) -> bool {
        self.required_flags() & flags == self.required_flags()
    }

    /// True for the states in which the device hands out saved state (a saving session).
    pub fn is_saving(self) -> bool {
        matches!(
            self,
            DeviceState::PreCopy | DeviceState::PreCopyP2p | DeviceState::StopCopy
        )
    }

    /// True for the states in which the device initiates DMA and P2P.
    pub fn initiates_dma(self) -> bool {
        matches!(self, DeviceState::Running | DeviceState::PreCopy)
    }
}

/// `struct vfio_precopy_info`: what `VFIO_MIG_GET_PRECOPY_INFO` reports in PRE_COPY and
/// PRE_COPY_P2P.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Initial state not yet read; starts non-zero and only shrinks.
    pub initial_bytes: u64,
    /// State changed since it was last read (an estimate).
    pub dirty_bytes: u64,
}

/// A transition the state machine refuses (`EINVAL` from the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The current or target state does not exist for this device.
    #[error("state {state} is not supported by a device with migration flags {flags:#x}")]
    Unsupported {
        /// The offending state.
        state: DeviceState,
        /// The device's migration flags.
        flags: u64,
    },
    /// The table leads to ERROR (STOP_COPY -> PRE_COPY and STOP_COPY -> PRE_COPY_P2P).
    #[error("no path from {from} to {to}")]
    Blocked {
        /// Current state.
        from: DeviceState,
        /// Target state.
        to: DeviceState,
    },
}

/// `vfio_from_fsm_table[cur][target]`, verbatim.
fn table(cur: DeviceState, target: DeviceState) -> DeviceState {
    use DeviceState::*;
    if target == Error {
        return Error;
    }
    match cur {
        Stop => match target {
            Stop => Stop,
            StopCopy => StopCopy,
            Resuming => Resuming,
            Running | PreCopy | PreCopyP2p | RunningP2p => RunningP2p,
            Error => Error,
        },
        Running => match target {
            Running => Running,
            PreCopy => PreCopy,
            Stop | PreCopyP2p | StopCopy | Resuming | RunningP2p => RunningP2p,
            Error => Error,
        },
        PreCopy => match target {
            PreCopy => PreCopy,
            PreCopyP2p | StopCopy => PreCopyP2p,
            Stop | Running | Resuming | RunningP2p => Running,
            Error => Error,
        },
        PreCopyP2p => match target {
            PreCopy => PreCopy,
            PreCopyP2p => PreCopyP2p,
            StopCopy => StopCopy,
            Stop | Running | Resuming | RunningP2p => RunningP2p,
            Error => Error,
        },
        StopCopy => match target {
            StopCopy => StopCopy,
            PreCopy | PreCopyP2p => Error,
            Stop | Running | Resuming | RunningP2p => Stop,
            Error => Error,
        },
        Resuming => match target {
            Resuming => Resuming,
            _ => Stop,
        },
        RunningP2p => match target {
            Stop | StopCopy | Resuming => Stop,
            Running | PreCopy => Running,
            PreCopyP2p => PreCopyP2p,
            RunningP2p => RunningP2p,
            Error => Error,
        },
        Error => Error,
    }
}

/// The next state the VFIO core moves a device with migration `flags` to, on its way from `cur`
/// to `target`: the table entry, skipping states the device does not have. `Ok(cur)` when
/// `cur == target`.
pub fn next_step(
    cur: DeviceState,
    target: DeviceState,
    flags: u64,
) -> Result<DeviceState, TransitionError> {
    for state in [cur, target] {
        if !state.supported_by(flags) {
            return Err(TransitionError::Unsupported { state, flags });
        }
    }
    let mut next = table(cur, target);
    while !next.supported_by(flags) {
        if next == DeviceState::Error {
            return Err(TransitionError::Blocked {
                from: cur,
                to: target,
            });
        }
        next = table(next, target);
    }
    Ok(next)
}

/// Every arc the core would ask the driver for, from `cur` to `target` (empty when equal).
pub fn path(
    cur: DeviceState,
    target: DeviceState,
    flags: u64,
) -> Result<Vec<(DeviceState, DeviceState)>, TransitionError> {
    let mut arcs = Vec::new();
    let mut at = cur;
    while at != target {
        let next = next_step(at, target, flags)?;
        arcs.push((at, next));
        at = next;
        // The table reaches any supported target within 5 arcs; more means a broken table.
        debug_assert!(arcs.len() <= ALL_STATES.len());
    }
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    const FULL: u64 = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;
    const BASIC: u64 = MIGRATION_STOP_COPY;

    fn states(flags: u64) -> impl Iterator<Item = DeviceState> {
        ALL_STATES
            .into_iter()
            .filter(move |s| s.supported_by(flags))
    }

    #[test]
    fn every_supported_pair_is_reachable_except_stop_copy_to_pre_copy() {
        for flags in [
            BASIC,
            BASIC | MIGRATION_P2P,
            BASIC | MIGRATION_PRE_COPY,
            FULL,
        ] {
            for from in states(flags) {
                for to in states(flags) {
                    let result = path(from, to, flags);
                    let blocked = from == StopCopy && matches!(to, PreCopy | PreCopyP2p);
                    assert_eq!(
                        result.is_err(),
                        blocked,
                        "{from} -> {to} with flags {flags:#x}"
                    );
                    if let Ok(arcs) = result {
                        assert_eq!(arcs.last().map(|a| a.1).unwrap_or(from), to);
                        assert!(
                            arcs.iter()
                                .all(|(a, b)| a.supported_by(flags) && b.supported_by(flags))
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn multi_step_paths_follow_the_kernel_comment() {
        assert_eq!(
            path(Running, Resuming, FULL).unwrap(),
            vec![(Running, RunningP2p), (RunningP2p, Stop), (Stop, Resuming)]
        );
        assert_eq!(
            path(Resuming, PreCopy, FULL).unwrap(),
            vec![
                (Resuming, Stop),
                (Stop, RunningP2p),
                (RunningP2p, Running),
                (Running, PreCopy)
            ]
        );
        assert_eq!(
            path(PreCopy, StopCopy, FULL).unwrap(),
            vec![(PreCopy, PreCopyP2p), (PreCopyP2p, StopCopy)]
        );
    }

    #[test]
    fn without_p2p_the_quiescent_states_are_skipped() {
        assert_eq!(path(Running, Stop, BASIC).unwrap(), vec![(Running, Stop)]);
        assert_eq!(path(Stop, Running, BASIC).unwrap(), vec![(Stop, Running)]);
        let with_precopy = BASIC | MIGRATION_PRE_COPY;
        assert_eq!(
            path(PreCopy, StopCopy, with_precopy).unwrap(),
            vec![(PreCopy, StopCopy)]
        );
    }

    #[test]
    fn unsupported_or_error_states_are_refused() {
        assert_eq!(
            next_step(Running, RunningP2p, BASIC),
            Err(TransitionError::Unsupported {
                state: RunningP2p,
                flags: BASIC
            })
        );
        assert_eq!(
            next_step(Running, Error, FULL),
            Err(TransitionError::Unsupported {
                state: Error,
                flags: FULL
            })
        );
        assert_eq!(
            next_step(Error, Running, FULL),
            Err(TransitionError::Unsupported {
                state: Error,
                flags: FULL
            })
        );
        assert_eq!(
            next_step(StopCopy, PreCopy, FULL),
            Err(TransitionError::Blocked {
                from: StopCopy,
                to: PreCopy
            })
        );
    }

    #[test]
    fn raw_state_numbers_round_trip() {
        for s in ALL_STATES {
            assert_eq!(DeviceState::try_from(u32::from(s)), Ok(s));
        }
        assert_eq!(DeviceState::try_from(8), Err(UnknownState(8)));
    }
}
