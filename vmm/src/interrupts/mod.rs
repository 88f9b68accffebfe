//! Interrupt delivery: the devices' [`InterruptManager`](devices::interrupt::InterruptManager)
//! on KVM (GSI routes and irqfds) and a recording one for the device harness.
//!
//! GSIs below [`MSI_GSI_START`](crate::layout::MSI_GSI_START) are I/O APIC inputs (ISA lines and
//! PCI INTx); MSI and MSI-X vectors get GSIs from there up, each routed to its message through one
//! `KVM_SET_GSI_ROUTING` table the VMM keeps, and raised through one irqfd per vector.

use std::fmt::Debug;
use std::os::fd::AsRawFd;

use devices::interrupt::InterruptError;
use vmm_sys_util::eventfd::EventFd;

mod gsi_routes;
mod kvm_lines;
mod kvm_manager;
mod kvm_msi;
mod recorder;

pub use gsi_routes::{GsiRoutes, Route};
pub use kvm_manager::KvmInterruptManager;
pub use recorder::{RecordedInterrupt, RecordingInterruptManager};

/// An edge-triggered interrupt line of a platform (ISA) device such as the UART: each trigger is
/// one interrupt, with no acknowledgement to wait for (unlike PCI INTx, see
/// [`LegacyIrq`](devices::interrupt::LegacyIrq)).
pub trait EdgeIrq: Send + Sync + Debug {
    /// The GSI (I/O APIC input) this line drives.
    fn gsi(&self) -> u32;

    /// Raises one interrupt.
    fn trigger(&self) -> Result<(), InterruptError>;

    /// The eventfd that raises the line when written.
    fn notifier(&self) -> &EventFd;
}

/// Wraps a failed host call on vector `index` as an [`InterruptError`].
fn host_error(op: &'static str, index: u32, source: impl Into<std::io::Error>) -> InterruptError {
    InterruptError::Host {
        op,
        index,
        source: source.into(),
    }
}

/// True if `fd` was written and not read since: an interrupt raised through its eventfd that
/// nothing consumed yet (KVM reads an irqfd's eventfd as soon as it is written, so for a vector
/// this means its irqfd is deassigned, i.e. masked). Polls without reading, so the interrupt is
/// still there for whoever delivers it.
pub(crate) fn eventfd_is_signalled(fd: &EventFd) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid, writable pollfd for the duration of the call, `nfds` is 1 to
    // match, the descriptor is owned by `fd` which outlives the call, and a zero timeout returns
    // at once.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLIN != 0
}
