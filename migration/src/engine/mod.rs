//! The device side of VFIO migration v2: what a VFIO driver does under the core, as a
//! [`MigrationEngine`] that a device model embeds next to its own state.
//!
//! The engine owns the device's migration state and its session (the kernel's data fd). A SET
//! walks [`path`] one arc at a time, as the VFIO core does, calling the device's
//! [`MigrationHooks`] for each arc; it stops at the first failing arc, leaving the state at the
//! last one reached (a failed RESUMING -> STOP leaves ERROR, as drivers do). The data stream is
//! our [`device_stream`](crate::device_stream) format.
//!
//! A device model keeps the engine and its own state in separate fields so that both can be
//! borrowed at once:
//!
//! ```
//! # use migration::engine::{MigrationEngine, MigrationHooks};
//! # use migration::Errno;
//! # use migration::vfio_v2::DeviceState;
//! struct MyDevice<M: MigrationHooks> {
//!     migration: MigrationEngine,
//!     model: M, // registers, device memory, queues: implements MigrationHooks
//! }
//! impl<M: MigrationHooks> MyDevice<M> {
//!     fn set_mig_state(&mut self, raw: u32) -> Result<Option<u64>, i32> {
//!         let target = DeviceState::try_from(raw).map_err(|_| Errno::EINVAL.raw())?;
//!         self.migration
//!             .set_state(&mut self.model, target)
//!             .map(|session| session.map(|s| s.raw()))
//!             .map_err(|e| e.errno().raw())
//!     }
//! }
//! ```

mod arc;
mod error;
mod hooks;
mod saving;

use std::fmt;

pub use error::EngineError;
pub use hooks::{DeviceHookError, MigrationHooks};

use self::arc::{Activity, SessionAction};
use self::saving::SavingStream;
use crate::device_stream::{RECORD_HEADER_LEN, StreamDecoder, StreamError, StreamLimits};
use crate::errno::Errno;
use crate::vfio_v2::{
    DeviceState, MIGRATION_P2P, MIGRATION_PRE_COPY, MIGRATION_STOP_COPY, PrecopyInfo,
    TransitionError, path,
};

/// One migration session (one data fd). Ids are never reused, so a stale id is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// The raw id (for a backend to map to its fd or handle).
    pub fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug)]
enum Session {
    Saving {
        id: SessionId,
        stream: SavingStream,
        broken: Option<(String, Errno)>,
    },
    Resuming {
        id: SessionId,
        decoder: StreamDecoder,
        id_checked: bool,
    },
}

impl Session {
    fn id(&self) -> SessionId {
        match self {
            Session::Saving { id, .. } | Session::Resuming { id, .. } => *id,
        }
    }
}

/// The migration state machine and data sessions of one device.
#[derive(Debug)]
pub struct MigrationEngine {
    flags: u64,
    limits: StreamLimits,
    state: DeviceState,
    session: Option<Session>,
    sessions_opened: u64,
}

impl MigrationEngine {
    /// An engine for a device with `VFIO_MIGRATION_*` `flags`, starting in RUNNING.
    pub fn new(flags: u64) -> Result<Self, EngineError> {
        Self::with_limits(flags, StreamLimits::default())
    }

    /// An engine whose resuming sessions accept streams within `limits` (and whose saving
    /// sessions produce records within `limits.max_record`).
    pub fn with_limits(flags: u64, limits: StreamLimits) -> Result<Self, EngineError> {
        let known = MIGRATION_STOP_COPY | MIGRATION_P2P | MIGRATION_PRE_COPY;
        if flags & MIGRATION_STOP_COPY == 0 || flags & !known != 0 {
            return Err(EngineError::BadFlags { flags });
        }
        Ok(MigrationEngine {
            flags,
            limits,
            state: DeviceState::Running,
            session: None,
            sessions_opened: 0,
        })
    }

    /// `VFIO_DEVICE_FEATURE_MIGRATION`: the device's migration flags.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` GET.
    pub fn state(&self) -> DeviceState {
        self.state
    }

    /// The open session, if any (a saving or resuming data fd).
    pub fn current_session(&self) -> Option<SessionId> {
        self.session.as_ref().map(Session::id)
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` SET: moves to `target` arc by arc. Returns the new
    /// session when the move opened one (its last arc entered PRE_COPY, PRE_COPY_P2P or
    /// STOP_COPY from outside the saving group, or RESUMING). On failure the device is at the
    /// last state reached; the error says which.
    pub fn set_state<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        target: DeviceState,
    ) -> Result<Option<SessionId>, EngineError> {
        let from = self.state;
        let refuse = |source| EngineError::Transition {
            from,
            to: target,
            source,
        };
        // ERROR is never a target, and only a reset leaves it; `path` would accept
        // ERROR -> ERROR as "nothing to do".
        if from == DeviceState::Error || target == DeviceState::Error {
            return Err(refuse(TransitionError::Unsupported {
                state: DeviceState::Error,
                flags: self.flags,
            }));
        }
        let arcs = path(from, target, self.flags).map_err(refuse)?;
        let mut opened = None;
        for (a, b) in arcs {
            log::debug!("migration: arc {a} -> {b} (target {target})");
            match self.step(dev, a, b) {
                Ok(Some(id)) => opened = Some(id),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("migration: {from} -> {target} stopped: {e}");
                    return Err(e);
                }
            }
        }
        Ok(opened)
    }

    /// Reads the next bytes of saving session `session`. `Ok(0)` is the end of the stream (in
    /// STOP_COPY, once everything was read; or for an empty `buf`); [`EngineError::NoDataNow`]
    /// means PRE_COPY has nothing more for now.
    pub fn read<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        session: SessionId,
        buf: &mut [u8],
    ) -> Result<usize, EngineError> {
        let state = self.state;
        let (id, stream, broken) = self.saving(session)?;
        if let Some((reason, errno)) = broken {
            return Err(EngineError::SavingBroken {
                session: id,
                state,
                reason: reason.clone(),
                errno: *errno,
            });
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if stream.pending() == 0 && !stream.ended() {
            // PRE_COPY caught up with what was captured: ask the device what changed since.
            let captured = dev.precopy_dirty().map_err(|e| (e.reason, e.errno));
            let appended = captured.and_then(|chunks| {
                stream
                    .append(&chunks, false)
                    .map_err(|e| (e.to_string(), Errno::EIO))
            });
            if let Err((reason, errno)) = appended {
                // Losing a capture would silently corrupt the destination: refuse further reads.
                *broken = Some((reason.clone(), errno));
                return Err(EngineError::SavingBroken {
                    session: id,
                    state,
                    reason,
                    errno,
                });
            }
            if stream.pending() == 0 {
                return Err(EngineError::NoDataNow { state });
            }
        }
        Ok(stream.take(buf))
    }

    /// Writes the next bytes of resuming session `session`. All bytes are always taken; a bad
    /// stream is reported at RESUMING -> STOP, as the uAPI specifies.
    pub fn write<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        session: SessionId,
        data: &[u8],
    ) -> Result<usize, EngineError> {
        let (decoder, id_checked) = self.resuming(session)?;
        // A decoding error is sticky in the decoder and reported when the session is closed.
        let _ = decoder.feed(data);
        if !*id_checked {
            if let Some(found) = decoder.stream_id().cloned() {
                *id_checked = true;
                if !dev.accepts_stream(&found) {
                    decoder.fail(StreamError::Foreign {
                        found,
                        expected: dev.stream_id(),
                    });
                }
            }
        }
        Ok(data.len())
    }

    /// `VFIO_MIG_GET_PRECOPY_INFO` on saving session `session`.
    pub fn precopy_info<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &D,
        session: SessionId,
    ) -> Result<PrecopyInfo, EngineError> {
        let state = self.state;
        let (_, stream, _) = self.saving(session)?;
        if !matches!(state, DeviceState::PreCopy | DeviceState::PreCopyP2p) {
            return Err(EngineError::NotPrecopy { state });
        }
        let initial_bytes = stream.initial_left();
        Ok(PrecopyInfo {
            initial_bytes,
            dirty_bytes: stream.pending() - initial_bytes + dev.precopy_dirty_bytes(),
        })
    }

    /// Bytes of the saving stream queued and not yet read (exact in STOP_COPY; in PRE_COPY it
    /// excludes changes not captured yet). 0 without a saving session.
    pub fn pending_bytes(&self) -> u64 {
        match &self.session {
            Some(Session::Saving { stream, .. }) => stream.pending(),
            _ => 0,
        }
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`: the estimated length of a STOP_COPY stream from
    /// now (exact once in STOP_COPY). Valid in any state.
    pub fn data_size<D: MigrationHooks + ?Sized>(&self, dev: &D) -> u64 {
        match &self.session {
            Some(Session::Saving { stream, .. }) if stream.ended() => stream.pending(),
            Some(Session::Saving { stream, .. }) => {
                stream.pending() + dev.stop_copy_size() + 2 * RECORD_HEADER_LEN as u64
            }
            _ => {
                dev.stream_id().header_len() as u64
                    + dev.stop_copy_size()
                    + 2 * RECORD_HEADER_LEN as u64
            }
        }
    }

    /// `VFIO_DEVICE_RESET`: drops any session, resets the device, back to RUNNING. The only way
    /// out of ERROR.
    pub fn reset<D: MigrationHooks + ?Sized>(&mut self, dev: &mut D) {
        self.drop_session(dev);
        dev.reset();
        self.state = DeviceState::Running;
    }

    /// Moves to ERROR after an internal failure outside a SET (the v1 region's data path).
    pub(crate) fn enter_error<D: MigrationHooks + ?Sized>(&mut self, dev: &mut D) {
        self.drop_session(dev);
        self.state = DeviceState::Error;
    }

    fn drop_session<D: MigrationHooks + ?Sized>(&mut self, dev: &mut D) {
        if let Some(Session::Saving { .. }) = self.session.take() {
            dev.saving_end();
        }
    }

    /// The open saving session `session`.
    #[allow(clippy::type_complexity)]
    fn saving(
        &mut self,
        session: SessionId,
    ) -> Result<(SessionId, &mut SavingStream, &mut Option<(String, Errno)>), EngineError> {
        match self.session.as_mut() {
            Some(Session::Saving { id, stream, broken }) if *id == session => {
                Ok((*id, stream, broken))
            }
            Some(Session::Resuming { id, .. }) if *id == session => {
                Err(EngineError::WrongDirection {
                    session,
                    kind: "resuming",
                    op: "read",
                })
            }
            _ => Err(EngineError::SessionClosed { session }),
        }
    }

    /// The open resuming session `session`.
    fn resuming(
        &mut self,
        session: SessionId,
    ) -> Result<(&mut StreamDecoder, &mut bool), EngineError> {
        match self.session.as_mut() {
            Some(Session::Resuming {
                id,
                decoder,
                id_checked,
            }) if *id == session => Ok((decoder, id_checked)),
            Some(Session::Saving { id, .. }) if *id == session => {
                Err(EngineError::WrongDirection {
                    session,
                    kind: "saving",
                    op: "written",
                })
            }
            _ => Err(EngineError::SessionClosed { session }),
        }
    }

    fn next_session_id(&mut self) -> SessionId {
        self.sessions_opened += 1;
        SessionId(self.sessions_opened)
    }

    /// One arc: activity hooks, then the session action; undo on failure.
    fn step<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        from: DeviceState,
        to: DeviceState,
    ) -> Result<Option<SessionId>, EngineError> {
        let mut done: Vec<Activity> = Vec::new();
        for act in arc::activity(from, to) {
            if let Err(source) = act.apply(dev) {
                let now = self.undo(dev, &done, from);
                return Err(EngineError::Hook {
                    from,
                    to,
                    hook: act.hook_name(),
                    source,
                    now,
                });
            }
            done.push(act);
        }
        match self.session_step(dev, from, to) {
            Ok(opened) => {
                self.state = to;
                Ok(opened)
            }
            Err(e @ EngineError::BadStream { .. }) => Err(e),
            Err(EngineError::Hook { hook, source, .. }) if from == DeviceState::Resuming => {
                self.enter_error(dev);
                Err(EngineError::Hook {
                    from,
                    to,
                    hook,
                    source,
                    now: DeviceState::Error,
                })
            }
            Err(EngineError::Hook { hook, source, .. }) => {
                let now = self.undo(dev, &done, from);
                Err(EngineError::Hook {
                    from,
                    to,
                    hook,
                    source,
                    now,
                })
            }
            Err(e) => {
                self.undo(dev, &done, from);
                Err(e)
            }
        }
    }

    /// Reverts the activity hooks of a failed arc; ERROR if that fails too.
    fn undo<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        done: &[Activity],
        from: DeviceState,
    ) -> DeviceState {
        for act in done.iter().rev() {
            if let Err(e) = act.inverse().apply(dev) {
                log::warn!(
                    "migration: undoing a failed arc from {from}: {} failed: {e}; device in ERROR",
                    act.inverse().hook_name()
                );
                self.enter_error(dev);
                return DeviceState::Error;
            }
        }
        from
    }

    /// The session part of an arc. The state is not changed here; on error nothing of the
    /// session has changed except for RESUMING -> STOP, which leaves ERROR.
    fn session_step<D: MigrationHooks + ?Sized>(
        &mut self,
        dev: &mut D,
        from: DeviceState,
        to: DeviceState,
    ) -> Result<Option<SessionId>, EngineError> {
        let hook_err = |hook: &'static str| {
            move |source| EngineError::Hook {
                from,
                to,
                hook,
                source,
                now: from,
            }
        };
        let encode_err = |source| EngineError::Encode { from, to, source };
        let max_record = self.limits.max_record;
        match arc::session_action(from, to) {
            SessionAction::None => Ok(None),
            SessionAction::OpenPrecopy | SessionAction::OpenStopCopy => {
                let precopy = arc::session_action(from, to) == SessionAction::OpenPrecopy;
                let chunks = if precopy {
                    dev.precopy_start().map_err(hook_err("precopy_start"))?
                } else {
                    dev.stop_copy(false).map_err(hook_err("stop_copy"))?
                };
                let stream = SavingStream::open(&dev.stream_id(), max_record, &chunks, !precopy)
                    .map_err(|e| {
                        dev.saving_end();
                        encode_err(e)
                    })?;
                let id = self.next_session_id();
                self.session = Some(Session::Saving {
                    id,
                    stream,
                    broken: None,
                });
                Ok(Some(id))
            }
            SessionAction::ContinueToStopCopy => {
                let chunks = dev.stop_copy(true).map_err(hook_err("stop_copy"))?;
                if let Some(Session::Saving { stream, broken, .. }) = &mut self.session {
                    if let Err(e) = stream.append(&chunks, true) {
                        // The device has handed over (and forgotten) its last changes: a retry
                        // would silently miss them, so the session cannot be completed.
                        *broken = Some((e.to_string(), Errno::EIO));
                        return Err(encode_err(e));
                    }
                }
                Ok(None)
            }
            SessionAction::CloseSaving => {
                self.drop_session(dev);
                Ok(None)
            }
            SessionAction::OpenResuming => {
                dev.resuming_start().map_err(hook_err("resuming_start"))?;
                let id = self.next_session_id();
                self.session = Some(Session::Resuming {
                    id,
                    decoder: StreamDecoder::new(self.limits),
                    id_checked: false,
                });
                Ok(Some(id))
            }
            SessionAction::LoadAndCloseResuming => {
                let finished = match self.session.take() {
                    Some(Session::Resuming { decoder, .. }) => decoder.finish(),
                    // RESUMING always has its session; without one there is no stream at all.
                    _ => Err(StreamError::Truncated {
                        at: 0,
                        inside: "header",
                    }),
                };
                let image = match finished {
                    Ok((_, image)) => image,
                    Err(source) => {
                        self.enter_error(dev);
                        return Err(EngineError::BadStream { source });
                    }
                };
                dev.load(&image).map_err(hook_err("load"))?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests;
