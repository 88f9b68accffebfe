//! The host side of the device's interrupts: which VFIO IRQ index is enabled, with which
//! eventfds.
//!
//! vfio-pci allows one of INTx, MSI and MSI-X at a time and has exact rules for moving between
//! them (`vfio_pci_intrs.c`): enabling an index while another is enabled fails (`EINVAL`), so
//! the old one is disabled first (`DATA_NONE | ACTION_TRIGGER` with count 0, which itself fails
//! on an index that is not enabled); MSI cannot change its vector count while enabled, so a new
//! count is a disable and an enable; and the kernel never re-enables INTx by itself when MSI or
//! MSI-X is turned off. [`HostInterrupts`] keeps the one enabled index in step with what the
//! guest enabled, following those rules:
//!
//! | guest enabled | host index | eventfds |
//! |---|---|---|
//! | MSI-X (with or without MSI) | MSI-X, every vector of the table | the MSI-X group's notifiers |
//! | MSI with *n* vectors | MSI, *n* vectors | the MSI group's notifiers 0..*n* |
//! | neither, device has INTx | INTx | see the `intx` module |
//!
//! The vectors are handed to VFIO as soon as the guest enables MSI or MSI-X, masked or not:
//! per-vector masking and the MSI-X function mask are applied to the routes by the MSI / MSI-X
//! models through [`InterruptSourceGroup::update`], and an interrupt the device raises on a
//! masked vector stays pending in the group until the guest unmasks it, and the guest reads it
//! as pending in the PBA or the MSI pending bits meanwhile ([`InterruptSourceGroup::pending`]).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use devices::interrupt::InterruptSourceGroup;

use super::error::VfioPciError;
use super::intx::Intx;
use crate::errno::Errno;
use crate::vfio::{
    IrqSet, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VfioDevice,
};

/// The IRQ index the host device signals through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIrq {
    /// No index is enabled: the device's interrupts go nowhere.
    None,
    /// INTx.
    Intx,
    /// MSI with this many vectors.
    Msi(u32),
    /// MSI-X with this many vectors.
    Msix(u32),
}

/// `VFIO_DEVICE_SET_IRQS(DATA_EVENTFD | ACTION_TRIGGER)`: binds `fds` to vectors `0..fds.len()`
/// of `index`, enabling it if it is not.
pub(super) fn set_irqs_eventfds(
    device: &dyn VfioDevice,
    index: u32,
    fds: &[RawFd],
) -> Result<(), Errno> {
    let req = IrqSet {
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: fds.len() as u32,
    };
    let data: Vec<u8> = fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect();
    device.set_irqs(&req, &data)
}

/// `VFIO_DEVICE_SET_IRQS(DATA_NONE | ACTION_TRIGGER)` with count 0: disables an enabled index.
pub(super) fn disable_irq_index(device: &dyn VfioDevice, index: u32) -> Result<(), Errno> {
    let req = IrqSet {
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: 0,
    };
    device.set_irqs(&req, &[])
}

/// Wraps a `SET_IRQS` errno into the device's error.
pub(super) fn set_irqs_error(
    name: &str,
    index: u32,
    action: &'static str,
) -> impl FnOnce(Errno) -> VfioPciError {
    let device = name.to_string();
    move |source| VfioPciError::SetIrqs {
        device,
        index,
        action,
        source,
    }
}

/// The raw eventfds of vectors `0..count` of `group`, checked to exist.
pub(super) fn group_eventfds(
    group: &dyn InterruptSourceGroup,
    count: u32,
    name: &str,
    what: &'static str,
) -> Result<Vec<RawFd>, VfioPciError> {
    (0..count)
        .map(|vector| {
            group
                .notifier(vector)
                .map(|fd| fd.as_raw_fd())
                .ok_or_else(|| VfioPciError::NoNotifier {
                    device: name.to_string(),
                    what,
                    vector,
                })
        })
        .collect()
}

/// The host IRQ state of one device.
#[derive(Debug)]
pub(super) struct HostInterrupts {
    name: String,
    device: Arc<dyn VfioDevice>,
    intx: Option<Intx>,
    msi: Option<Arc<dyn InterruptSourceGroup>>,
    msix: Option<Arc<dyn InterruptSourceGroup>>,
    current: HostIrq,
}

impl HostInterrupts {
    /// Nothing enabled yet.
    pub fn new(
        name: &str,
        device: Arc<dyn VfioDevice>,
        intx: Option<Intx>,
        msi: Option<Arc<dyn InterruptSourceGroup>>,
        msix: Option<Arc<dyn InterruptSourceGroup>>,
    ) -> Self {
        Self {
            name: name.to_string(),
            device,
            intx,
            msi,
            msix,
            current: HostIrq::None,
        }
    }

    /// The index enabled now.
    pub fn current(&self) -> HostIrq {
        self.current
    }

    /// The INTx wiring, if the device has INTx.
    pub fn intx(&self) -> Option<&Intx> {
        self.intx.as_ref()
    }

    /// What the host runs on when the guest has not enabled MSI or MSI-X.
    pub fn idle(&self) -> HostIrq {
        match self.intx {
            Some(_) => HostIrq::Intx,
            None => HostIrq::None,
        }
    }

    /// Moves the host to `desired`: disables the index enabled now (if any and different), then
    /// enables the new one. On failure the host is left with nothing enabled.
    pub fn sync(&mut self, desired: HostIrq) -> Result<(), VfioPciError> {
        if desired == self.current {
            return Ok(());
        }
        self.disable()?;
        let device = self.device.as_ref();
        let name = self.name.as_str();
        match desired {
            HostIrq::None => {}
            HostIrq::Intx => match &self.intx {
                Some(intx) => {
                    if let Err(e) = intx.enable(device, name) {
                        // Do not leave a half-enabled INTx (trigger without unmask fd).
                        let _ = disable_irq_index(device, VFIO_PCI_INTX_IRQ_INDEX);
                        return Err(e);
                    }
                }
                None => return Ok(()),
            },
            HostIrq::Msi(n) | HostIrq::Msix(n) => {
                let (index, what, group) = match desired {
                    HostIrq::Msi(_) => (VFIO_PCI_MSI_IRQ_INDEX, "MSI", &self.msi),
                    _ => (VFIO_PCI_MSIX_IRQ_INDEX, "MSI-X", &self.msix),
                };
                let Some(group) = group else {
                    return Ok(());
                };
                let fds = group_eventfds(group.as_ref(), n, name, what)?;
                set_irqs_eventfds(device, index, &fds)
                    .map_err(set_irqs_error(name, index, "enable"))?;
            }
        }
        self.current = desired;
        Ok(())
    }

    /// Disables whatever index is enabled.
    pub fn disable(&mut self) -> Result<(), VfioPciError> {
        let index = match self.current {
            HostIrq::None => return Ok(()),
            HostIrq::Intx => VFIO_PCI_INTX_IRQ_INDEX,
            HostIrq::Msi(_) => VFIO_PCI_MSI_IRQ_INDEX,
            HostIrq::Msix(_) => VFIO_PCI_MSIX_IRQ_INDEX,
        };
        disable_irq_index(self.device.as_ref(), index)
            .map_err(set_irqs_error(&self.name, index, "disable"))?;
        self.current = HostIrq::None;
        Ok(())
    }
}
