//! What one arc of the state machine asks of the device: activity changes and a session action.

use super::hooks::{DeviceHookError, MigrationHooks};
use crate::vfio_v2::DeviceState;

/// A change in what the device may do, with its inverse for undoing a failed arc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    QuiesceDma,
    Stop,
    Start,
    ResumeDma,
}

impl Activity {
    pub(crate) fn hook_name(self) -> &'static str {
        match self {
            Activity::QuiesceDma => "quiesce_dma",
            Activity::Stop => "stop",
            Activity::Start => "start",
            Activity::ResumeDma => "resume_dma",
        }
    }

    pub(crate) fn inverse(self) -> Activity {
        match self {
            Activity::QuiesceDma => Activity::ResumeDma,
            Activity::Stop => Activity::Start,
            Activity::Start => Activity::Stop,
            Activity::ResumeDma => Activity::QuiesceDma,
        }
    }

    pub(crate) fn apply<D: MigrationHooks + ?Sized>(
        self,
        dev: &mut D,
    ) -> Result<(), DeviceHookError> {
        match self {
            Activity::QuiesceDma => dev.quiesce_dma(),
            Activity::Stop => dev.stop(),
            Activity::Start => dev.start(),
            Activity::ResumeDma => dev.resume_dma(),
        }
    }
}

/// What an arc does to the migration sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionAction {
    None,
    /// RUNNING -> PRE_COPY, RUNNING_P2P -> PRE_COPY_P2P.
    OpenPrecopy,
    /// STOP -> STOP_COPY.
    OpenStopCopy,
    /// PRE_COPY_P2P -> STOP_COPY (or PRE_COPY -> STOP_COPY without P2P): same session.
    ContinueToStopCopy,
    /// PRE_COPY -> RUNNING, PRE_COPY_P2P -> RUNNING_P2P, STOP_COPY -> STOP.
    CloseSaving,
    /// STOP -> RESUMING.
    OpenResuming,
    /// RESUMING -> STOP: check the stream and load it.
    LoadAndCloseResuming,
}

/// Whether the device operates (answers MMIO with side effects, advances its state) in `s`.
pub(crate) fn operates(s: DeviceState) -> bool {
    matches!(
        s,
        DeviceState::Running
            | DeviceState::RunningP2p
            | DeviceState::PreCopy
            | DeviceState::PreCopyP2p
    )
}

/// The activity changes of the arc `from -> to`, in the order the device must see them.
pub(crate) fn activity(from: DeviceState, to: DeviceState) -> Vec<Activity> {
    let mut steps = Vec::new();
    if from.initiates_dma() && !to.initiates_dma() {
        steps.push(Activity::QuiesceDma);
    }
    if operates(from) && !operates(to) {
        steps.push(Activity::Stop);
    }
    if !operates(from) && operates(to) {
        steps.push(Activity::Start);
    }
    if !from.initiates_dma() && to.initiates_dma() {
        steps.push(Activity::ResumeDma);
    }
    steps
}

/// The session action of the arc `from -> to`.
pub(crate) fn session_action(from: DeviceState, to: DeviceState) -> SessionAction {
    use DeviceState::*;
    match (from, to) {
        (Resuming, _) => SessionAction::LoadAndCloseResuming,
        (_, Resuming) => SessionAction::OpenResuming,
        (Stop, StopCopy) => SessionAction::OpenStopCopy,
        (f, StopCopy) if f.is_saving() => SessionAction::ContinueToStopCopy,
        (f, t) if !f.is_saving() && t.is_saving() => SessionAction::OpenPrecopy,
        (f, t) if f.is_saving() && !t.is_saving() => SessionAction::CloseSaving,
        _ => SessionAction::None,
    }
}
