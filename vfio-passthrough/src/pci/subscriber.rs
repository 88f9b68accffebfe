//! [`VfioPciSubscriber`]: the device's eventfds that need userspace, on the VMM's event loop.
//!
//! - The VFIO ERR interrupt (an uncorrectable error the host's AER driver saw on the function):
//!   logged, and reported as [`VfioPciEvent::DeviceError`].
//! - The VFIO REQ interrupt (the host wants the device back, e.g. its driver is being unbound):
//!   logged, and reported as [`VfioPciEvent::ReleaseRequest`]; the VMM should unplug the device.
//! - INTx in [`IntxDelivery::Userspace`](super::IntxDelivery::Userspace): the trigger raises the
//!   line, the line's resample notifier unmasks INTx in the host.
//!
//! The subscriber holds its own handles (the VFIO device, the eventfds, the line), never the
//! PCI device, so the event loop thread takes no lock a vCPU thread may hold.

use std::fmt;
use std::sync::Arc;

use devices::interrupt::LegacyIrq;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;

use super::intx;
use crate::vfio::VfioDevice;

/// Something the host told us about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfioPciEvent {
    /// The host reported an uncorrectable error on the device (VFIO ERR interrupt).
    DeviceError,
    /// The host asks for the device back (VFIO REQ interrupt): unplug it.
    ReleaseRequest,
}

/// What the subscriber calls for each [`VfioPciEvent`].
pub type VfioPciEventHandler = Box<dyn FnMut(VfioPciEvent) + Send>;

const TOKEN_ERR: u32 = 0;
const TOKEN_REQ: u32 = 1;
const TOKEN_INTX: u32 = 2;
const TOKEN_RESAMPLE: u32 = 3;

/// The userspace half of INTx delivery.
pub(super) struct UserspaceIntx {
    pub trigger: Arc<EventFd>,
    pub irq: Arc<dyn LegacyIrq>,
}

/// The event-loop subscriber of one passthrough device. Register it once per device.
pub struct VfioPciSubscriber {
    name: String,
    device: Arc<dyn VfioDevice>,
    err: Option<Arc<EventFd>>,
    req: Option<Arc<EventFd>>,
    intx: Option<UserspaceIntx>,
    on_event: VfioPciEventHandler,
}

impl fmt::Debug for VfioPciSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioPciSubscriber")
            .field("name", &self.name)
            .field("err", &self.err.is_some())
            .field("req", &self.req.is_some())
            .field("userspace_intx", &self.intx.is_some())
            .finish_non_exhaustive()
    }
}

impl VfioPciSubscriber {
    pub(super) fn new(
        name: &str,
        device: Arc<dyn VfioDevice>,
        err: Option<Arc<EventFd>>,
        req: Option<Arc<EventFd>>,
        intx: Option<UserspaceIntx>,
        on_event: VfioPciEventHandler,
    ) -> Self {
        Self {
            name: name.to_string(),
            device,
            err,
            req,
            intx,
            on_event,
        }
    }

    fn add(&self, ops: &mut EventOps, fd: &EventFd, token: u32, what: &str) {
        if let Err(e) = ops.add(Events::with_data(fd, token, EventSet::IN)) {
            log::error!(
                "{}: cannot watch the {what} eventfd on the event loop: {e}",
                self.name
            );
        }
    }

    /// Consumes an eventfd's count; false if it was not signalled (a spurious wake-up).
    fn drained(&self, fd: &EventFd, what: &str) -> bool {
        match fd.read() {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => {
                log::warn!("{}: reading the {what} eventfd failed: {e}", self.name);
                false
            }
        }
    }
}

impl MutEventSubscriber for VfioPciSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Some(fd) = self.err.clone() {
            self.add(ops, &fd, TOKEN_ERR, "VFIO ERR");
        }
        if let Some(fd) = self.req.clone() {
            self.add(ops, &fd, TOKEN_REQ, "VFIO REQ");
        }
        if let Some(intx) = &self.intx {
            let (trigger, irq) = (intx.trigger.clone(), intx.irq.clone());
            self.add(ops, &trigger, TOKEN_INTX, "INTx trigger");
            self.add(
                ops,
                irq.resample_notifier(),
                TOKEN_RESAMPLE,
                "INTx resample",
            );
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            TOKEN_ERR => {
                if let Some(fd) = self.err.clone() {
                    if self.drained(&fd, "VFIO ERR") {
                        log::error!(
                            "{}: the host reported an uncorrectable error on the device",
                            self.name
                        );
                        (self.on_event)(VfioPciEvent::DeviceError);
                    }
                }
            }
            TOKEN_REQ => {
                if let Some(fd) = self.req.clone() {
                    if self.drained(&fd, "VFIO REQ") {
                        log::warn!("{}: the host asks for the device back", self.name);
                        (self.on_event)(VfioPciEvent::ReleaseRequest);
                    }
                }
            }
            TOKEN_INTX => {
                if let Some(intx) = &self.intx {
                    let (trigger, irq) = (intx.trigger.clone(), intx.irq.clone());
                    if self.drained(&trigger, "INTx trigger") {
                        if let Err(e) = irq.trigger() {
                            log::warn!("{}: raising INTx failed: {e}", self.name);
                        }
                    }
                }
            }
            TOKEN_RESAMPLE => {
                if let Some(intx) = &self.intx {
                    let irq = intx.irq.clone();
                    if self.drained(irq.resample_notifier(), "INTx resample") {
                        if let Err(e) = intx::unmask(self.device.as_ref()) {
                            log::warn!("{}: unmasking INTx in the host failed: {e}", self.name);
                        }
                    }
                }
            }
            other => log::warn!("{}: event with unknown token {other}", self.name),
        }
    }
}
