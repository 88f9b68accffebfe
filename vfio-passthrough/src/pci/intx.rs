//! INTx: the device's legacy interrupt wired to the VMM's [`LegacyIrq`] line.
//!
//! VFIO signals INTx through a trigger eventfd and masks the line in the host until it is
//! unmasked (the interrupt is level triggered and automasked). Two ways to close that loop:
//!
//! - [`IntxDelivery::Irqfd`]: the trigger eventfd is the line's own
//!   [`notifier`](LegacyIrq::notifier) (a KVM irqfd) and the unmask eventfd its
//!   [`resample_notifier`](LegacyIrq::resample_notifier) (KVM's resample fd, signalled at the
//!   guest's EOI). Nothing passes through userspace.
//! - [`IntxDelivery::Userspace`]: for machines without a resample irqfd (the device harness, a
//!   split irqchip), VFIO signals an eventfd of ours; the device's
//!   [`VfioPciSubscriber`](super::VfioPciSubscriber) raises the line with
//!   [`LegacyIrq::trigger`] and, when the line's resample notifier fires, unmasks INTx with
//!   `VFIO_DEVICE_SET_IRQS(DATA_NONE | ACTION_UNMASK)`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use devices::interrupt::LegacyIrq;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::error::VfioPciError;
use super::interrupts::{set_irqs_error, set_irqs_eventfds};
use crate::errno::Errno;
use crate::vfio::{
    IrqSet, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_INTX_IRQ_INDEX, VfioDevice,
};

/// How INTx reaches the guest and how it is re-armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntxDelivery {
    /// VFIO signals the line's irqfd; the line's resample fd unmasks it in the host.
    #[default]
    Irqfd,
    /// VFIO signals an eventfd the device's subscriber watches; the subscriber raises the line
    /// and unmasks INTx when the line's resample notifier fires.
    Userspace,
}

/// The INTx wiring of one device.
#[derive(Debug)]
pub(super) struct Intx {
    irq: Arc<dyn LegacyIrq>,
    delivery: IntxDelivery,
    /// The eventfd VFIO signals in userspace delivery.
    trigger: Option<Arc<EventFd>>,
}

impl Intx {
    /// Wires INTx to `irq`.
    pub fn new(
        irq: Arc<dyn LegacyIrq>,
        delivery: IntxDelivery,
        name: &str,
    ) -> Result<Self, VfioPciError> {
        let trigger = match delivery {
            IntxDelivery::Irqfd => None,
            IntxDelivery::Userspace => {
                Some(Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|source| {
                    VfioPciError::EventFd {
                        device: name.to_string(),
                        what: "INTx trigger",
                        source,
                    }
                })?))
            }
        };
        Ok(Self {
            irq,
            delivery,
            trigger,
        })
    }

    /// The line.
    pub fn irq(&self) -> &Arc<dyn LegacyIrq> {
        &self.irq
    }

    /// The eventfd VFIO signals in userspace delivery.
    pub fn userspace_trigger(&self) -> Option<&Arc<EventFd>> {
        self.trigger.as_ref()
    }

    fn trigger_fd(&self) -> RawFd {
        match &self.trigger {
            Some(fd) => fd.as_raw_fd(),
            None => self.irq.notifier().as_raw_fd(),
        }
    }

    /// Enables INTx in the host: the trigger eventfd, then (irqfd delivery) the resample fd as
    /// the unmask eventfd, which vfio-pci only accepts once INTx is enabled.
    pub fn enable(&self, device: &dyn VfioDevice, name: &str) -> Result<(), VfioPciError> {
        set_irqs_eventfds(device, VFIO_PCI_INTX_IRQ_INDEX, &[self.trigger_fd()])
            .map_err(set_irqs_error(name, VFIO_PCI_INTX_IRQ_INDEX, "enable"))?;
        if self.delivery == IntxDelivery::Irqfd {
            let fd = self.irq.resample_notifier().as_raw_fd();
            let req = IrqSet {
                flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
                index: VFIO_PCI_INTX_IRQ_INDEX,
                start: 0,
                count: 1,
            };
            device
                .set_irqs(&req, &fd.to_ne_bytes())
                .map_err(set_irqs_error(
                    name,
                    VFIO_PCI_INTX_IRQ_INDEX,
                    "set the unmask eventfd",
                ))?;
        }
        Ok(())
    }
}

/// Unmasks INTx in the host after the guest acknowledged it (userspace delivery).
pub(super) fn unmask(device: &dyn VfioDevice) -> Result<(), Errno> {
    let req = IrqSet {
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        index: VFIO_PCI_INTX_IRQ_INDEX,
        start: 0,
        count: 1,
    };
    device.set_irqs(&req, &[])
}
