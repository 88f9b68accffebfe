//! `VFIO_DEVICE_FEATURE` for emulated devices: the probe rules of `vfio_check_feature`, the
//! migration features over the device's [`MigrationEngine`](migration::engine::MigrationEngine),
//! and the data stream of a migration session as a [`MigrationData`].

use std::sync::Weak;

use migration::engine::{EngineError, SessionId};
use migration::vfio_v2::DeviceState;

use super::device::{Core, Shared};
use crate::errno::Errno;
use crate::vfio::{
    MigrationData, PrecopyInfo, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    VFIO_DEVICE_FEATURE_MIGRATION,
};

/// `VFIO_DEVICE_FEATURE_MASK`.
const FEATURE_MASK: u32 = 0xffff;

impl Core {
    /// The v2 migration flags (`ENOTTY` for a device without v2 migration).
    pub(super) fn v2_flags(&self) -> Result<u64, Errno> {
        match self.support {
            Some(s) if s.v2_flags != 0 => Ok(s.v2_flags),
            _ => Err(Errno::ENOTTY),
        }
    }

    /// `VFIO_DEVICE_FEATURE` with `PROBE` (`vfio_ioctl_device_feature` and
    /// `vfio_check_feature`).
    pub(super) fn feature_probe(&self, feature: u32, get: bool, set: bool) -> Result<(), Errno> {
        if feature & !FEATURE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        let (available, get_ok, set_ok) = match feature {
            VFIO_DEVICE_FEATURE_MIGRATION => (self.v2_flags().is_ok(), true, false),
            VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE => (self.v2_flags().is_ok(), true, true),
            VFIO_DEVICE_FEATURE_MIG_DATA_SIZE => (self.v2_flags().is_ok(), true, false),
            VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP => {
                (self.model.dma_logging(), false, true)
            }
            VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT => (self.model.dma_logging(), true, false),
            // vfio-pci's device_feature op answers ENOTTY for features it does not handle
            // (the emulated devices are no SR-IOV PFs and have no low-power states).
            _ => (false, false, false),
        };
        if !available {
            return Err(Errno::ENOTTY);
        }
        if (get && !get_ok) || (set && !set_ok) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `EINVAL`-free check that the device logs DMA (`ENOTTY` else).
    pub(super) fn check_logging(&self) -> Result<(), Errno> {
        if self.model.dma_logging() {
            Ok(())
        } else {
            Err(Errno::ENOTTY)
        }
    }

    /// `MIG_DEVICE_STATE` GET.
    pub(super) fn mig_state(&mut self) -> Result<u32, Errno> {
        self.v2_flags()?;
        let parts = self.migration().ok_or(Errno::ENOTTY)?;
        Ok(parts.engine.state() as u32)
    }

    /// `MIG_DEVICE_STATE` SET: the new session, if the move opened one.
    pub(super) fn set_mig_state(&mut self, state: u32) -> Result<Option<SessionId>, Errno> {
        self.v2_flags()?;
        let target = DeviceState::try_from(state).map_err(|_| Errno::EINVAL)?;
        let parts = self.migration().ok_or(Errno::ENOTTY)?;
        parts.engine.set_state(parts.hooks, target).map_err(|e| {
            log::debug!("migration state change to {target}: {e}");
            e.errno()
        })
    }

    /// `MIG_DATA_SIZE` GET.
    pub(super) fn mig_data_size(&mut self) -> Result<u64, Errno> {
        self.v2_flags()?;
        let parts = self.migration().ok_or(Errno::ENOTTY)?;
        Ok(parts.engine.data_size(&*parts.hooks))
    }
}

/// The data stream of one migration session (the kernel's `data_fd`). It keeps only a weak
/// reference to the device: a stream outliving its device reads `ENODEV`.
#[derive(Debug)]
pub struct SessionStream {
    device: Weak<Shared>,
    session: SessionId,
}

impl SessionStream {
    pub(super) fn new(device: Weak<Shared>, session: SessionId) -> Self {
        SessionStream { device, session }
    }

    fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut super::device::MigrationParts<'_>) -> Result<T, EngineError>,
    ) -> Result<T, Errno> {
        let shared = self.device.upgrade().ok_or(Errno::ENODEV)?;
        let mut core = shared.lock();
        let mut parts = core.migration().ok_or(Errno::ENODEV)?;
        f(&mut parts).map_err(|e| {
            if !matches!(e, EngineError::NoDataNow { .. }) {
                log::debug!("migration session {}: {e}", self.session);
            }
            e.errno()
        })
    }
}

impl MigrationData for SessionStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let session = self.session;
        self.with_engine(|p| p.engine.read(p.hooks, session, buf))
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, Errno> {
        let session = self.session;
        self.with_engine(|p| p.engine.write(p.hooks, session, buf))
    }

    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        let session = self.session;
        self.with_engine(|p| p.engine.precopy_info(&*p.hooks, session))
            .map(|i| PrecopyInfo {
                initial_bytes: i.initial_bytes,
                dirty_bytes: i.dirty_bytes,
            })
    }
}
