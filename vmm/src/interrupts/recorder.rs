//! An [`InterruptManager`] that records interrupts instead of injecting them, for the device
//! harness.
//!
//! It keeps KVM's semantics where a test can observe them: vectors start masked, a masked vector's
//! eventfd writes stay pending and are delivered on unmask, GSIs run out where KVM's would, and an
//! INTx line's resample eventfd fires on end of interrupt. Writes that bypass `trigger()` (a
//! passthrough backend signalling the eventfd directly, as VFIO does) are picked up whenever the
//! recorded interrupts are read.

use std::sync::{Arc, Mutex, Weak};

use devices::bus::lock;
use devices::interrupt::{
    InterruptError, InterruptManager, InterruptSourceGroup, LegacyIrq, MsiMessage,
};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

use super::gsi_routes::GsiRoutes;
use super::{EdgeIrq, eventfd_is_signalled, host_error};
use crate::layout::IOAPIC_PINS;

/// One interrupt as the interrupt controller would have received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedInterrupt {
    /// An MSI message was written (an unmasked vector fired, or a pending one was unmasked).
    Msi(MsiMessage),
    /// An I/O APIC input was raised.
    Line(u32),
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Vec<RecordedInterrupt>>,
    gsis: Mutex<GsiRoutes>,
    groups: Mutex<Vec<Weak<RecordingMsiGroup>>>,
    lines: Mutex<Vec<Weak<RecordingLine>>>,
}

impl Shared {
    fn record(&self, irq: RecordedInterrupt) {
        lock(&self.log).push(irq);
    }
}

/// Records every interrupt devices raise, in order.
#[derive(Debug, Clone, Default)]
pub struct RecordingInterruptManager {
    shared: Arc<Shared>,
}

impl RecordingInterruptManager {
    /// A manager with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an edge-triggered platform line on I/O APIC input `gsi`.
    pub fn create_edge_irq(&self, gsi: u32) -> Result<Arc<dyn EdgeIrq>, InterruptError> {
        Ok(self.new_line(gsi, false)?)
    }

    fn new_line(&self, gsi: u32, level: bool) -> Result<Arc<RecordingLine>, InterruptError> {
        if gsi >= IOAPIC_PINS {
            return Err(InterruptError::InvalidVector {
                index: gsi,
                len: IOAPIC_PINS,
            });
        }
        let line = Arc::new(RecordingLine {
            shared: Arc::downgrade(&self.shared),
            gsi,
            trigger: new_eventfd(gsi)?,
            resample: if level { Some(new_eventfd(gsi)?) } else { None },
        });
        lock(&self.shared.lines).push(Arc::downgrade(&line));
        Ok(line)
    }

    /// The interrupts recorded so far, oldest first, after collecting writes made directly to
    /// the eventfds of unmasked vectors and of lines.
    pub fn interrupts(&self) -> Vec<RecordedInterrupt> {
        self.collect();
        lock(&self.shared.log).clone()
    }

    /// Like [`interrupts`](Self::interrupts), and clears the record.
    pub fn take_interrupts(&self) -> Vec<RecordedInterrupt> {
        self.collect();
        std::mem::take(&mut *lock(&self.shared.log))
    }

    /// The guest's end of interrupt for `gsi`: signals the resample eventfd of every INTx line on
    /// it, as KVM does when the I/O APIC sees the EOI.
    pub fn end_of_interrupt(&self, gsi: u32) -> Result<(), InterruptError> {
        for line in live(&self.shared.lines) {
            if let (true, Some(resample)) = (line.gsi == gsi, &line.resample) {
                resample
                    .write(1)
                    .map_err(|e| host_error("resample", gsi, e))?;
            }
        }
        Ok(())
    }

    fn collect(&self) {
        for group in live(&self.shared.groups) {
            for vector in &group.vectors {
                let state = lock(&vector.state);
                if let (false, Some(msg)) = (state.masked, state.msg) {
                    if drain(&vector.eventfd) {
                        self.shared.record(RecordedInterrupt::Msi(msg));
                    }
                }
            }
        }
        for line in live(&self.shared.lines) {
            if drain(&line.trigger) {
                self.shared.record(RecordedInterrupt::Line(line.gsi));
            }
        }
    }
}

impl InterruptManager for RecordingInterruptManager {
    fn create_msi_group(
        &self,
        count: u32,
    ) -> Result<Arc<dyn InterruptSourceGroup>, InterruptError> {
        let gsis = lock(&self.shared.gsis).allocate_msi(count)?;
        let mut vectors = Vec::with_capacity(gsis.len());
        for (index, _) in gsis.iter().enumerate() {
            match EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC) {
                Ok(eventfd) => vectors.push(RecordingVector {
                    eventfd,
                    state: Mutex::new(RecordingVectorState {
                        msg: None,
                        masked: true,
                    }),
                }),
                Err(e) => {
                    lock(&self.shared.gsis).release_msi(&gsis);
                    return Err(host_error("create eventfd for", index as u32, e));
                }
            }
        }
        let group = Arc::new(RecordingMsiGroup {
            shared: Arc::downgrade(&self.shared),
            gsis,
            vectors,
        });
        lock(&self.shared.groups).push(Arc::downgrade(&group));
        Ok(group)
    }

    fn create_legacy_irq(&self, gsi: u32) -> Result<Arc<dyn LegacyIrq>, InterruptError> {
        Ok(self.new_line(gsi, true)?)
    }
}

fn new_eventfd(index: u32) -> Result<EventFd, InterruptError> {
    EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(|e| host_error("create eventfd for", index, e))
}

/// Empties an eventfd; true if it had been written.
fn drain(eventfd: &EventFd) -> bool {
    eventfd.read().is_ok_and(|n| n > 0)
}

/// The live entries of a list of weak references, pruning the dead ones.
fn live<T>(list: &Mutex<Vec<Weak<T>>>) -> Vec<Arc<T>> {
    let mut list = lock(list);
    list.retain(|w| w.strong_count() > 0);
    list.iter().filter_map(Weak::upgrade).collect()
}

#[derive(Debug)]
struct RecordingVector {
    eventfd: EventFd,
    state: Mutex<RecordingVectorState>,
}

#[derive(Debug)]
struct RecordingVectorState {
    msg: Option<MsiMessage>,
    masked: bool,
}

#[derive(Debug)]
struct RecordingMsiGroup {
    shared: Weak<Shared>,
    gsis: Vec<u32>,
    vectors: Vec<RecordingVector>,
}

impl RecordingMsiGroup {
    fn vector(&self, index: u32) -> Result<&RecordingVector, InterruptError> {
        self.vectors
            .get(index as usize)
            .ok_or(InterruptError::InvalidVector {
                index,
                len: self.len(),
            })
    }
}

impl InterruptSourceGroup for RecordingMsiGroup {
    fn len(&self) -> u32 {
        self.vectors.len() as u32
    }

    fn trigger(&self, index: u32) -> Result<(), InterruptError> {
        let vector = self.vector(index)?;
        let state = lock(&vector.state);
        match (state.masked, state.msg, self.shared.upgrade()) {
            (false, Some(msg), Some(shared)) => shared.record(RecordedInterrupt::Msi(msg)),
            // Masked: pending in the eventfd until unmasked, as with an irqfd.
            _ => vector
                .eventfd
                .write(1)
                .map_err(|e| host_error("raise", index, e))?,
        }
        Ok(())
    }

    fn notifier(&self, index: u32) -> Option<&EventFd> {
        self.vectors.get(index as usize).map(|v| &v.eventfd)
    }

    fn update(&self, index: u32, msg: MsiMessage, masked: bool) -> Result<(), InterruptError> {
        let vector = self.vector(index)?;
        let mut state = lock(&vector.state);
        state.msg = Some(msg);
        state.masked = masked;
        if !masked && drain(&vector.eventfd) {
            if let Some(shared) = self.shared.upgrade() {
                shared.record(RecordedInterrupt::Msi(msg));
            }
        }
        Ok(())
    }

    fn pending(&self, index: u32) -> bool {
        self.vectors
            .get(index as usize)
            .is_some_and(|v| lock(&v.state).masked && eventfd_is_signalled(&v.eventfd))
    }
}

impl Drop for RecordingMsiGroup {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.gsis).release_msi(&self.gsis);
        }
    }
}

/// An edge line (no resample eventfd) or an INTx line (with one).
#[derive(Debug)]
struct RecordingLine {
    shared: Weak<Shared>,
    gsi: u32,
    trigger: EventFd,
    resample: Option<EventFd>,
}

impl RecordingLine {
    fn raise(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.record(RecordedInterrupt::Line(self.gsi));
        }
    }
}

impl EdgeIrq for RecordingLine {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> Result<(), InterruptError> {
        self.raise();
        Ok(())
    }

    fn notifier(&self) -> &EventFd {
        &self.trigger
    }
}

impl LegacyIrq for RecordingLine {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> Result<(), InterruptError> {
        self.raise();
        Ok(())
    }

    fn notifier(&self) -> &EventFd {
        &self.trigger
    }

    fn resample_notifier(&self) -> &EventFd {
        self.resample
            .as_ref()
            .expect("only INTx lines are handed out as LegacyIrq, and they have a resample fd")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: MsiMessage = MsiMessage {
        address: 0xfee0_0000,
        data: 0x41,
    };

    #[test]
    fn unmasked_vector_records_its_message() {
        let m = RecordingInterruptManager::new();
        let g = m.create_msi_group(2).unwrap();
        g.update(1, MSG, false).unwrap();
        g.trigger(1).unwrap();
        assert_eq!(m.take_interrupts(), vec![RecordedInterrupt::Msi(MSG)]);
        assert!(m.interrupts().is_empty());
    }

    #[test]
    fn vectors_start_masked_and_deliver_pending_on_unmask() {
        let m = RecordingInterruptManager::new();
        let g = m.create_msi_group(1).unwrap();
        g.trigger(0).unwrap();
        g.trigger(0).unwrap();
        g.update(0, MSG, true).unwrap();
        assert!(m.interrupts().is_empty(), "masked vector stays pending");
        assert!(g.pending(0));
        g.update(0, MSG, false).unwrap();
        assert!(!g.pending(0));
        // Two writes while masked coalesce into one pending interrupt, as the pending bit does.
        assert_eq!(m.interrupts(), vec![RecordedInterrupt::Msi(MSG)]);
    }

    #[test]
    fn direct_eventfd_writes_are_collected() {
        let m = RecordingInterruptManager::new();
        let g = m.create_msi_group(1).unwrap();
        g.update(0, MSG, false).unwrap();
        g.notifier(0).unwrap().write(1).unwrap();
        assert_eq!(m.interrupts(), vec![RecordedInterrupt::Msi(MSG)]);
    }

    #[test]
    fn out_of_range_vector_is_rejected() {
        let m = RecordingInterruptManager::new();
        let g = m.create_msi_group(2).unwrap();
        assert!(matches!(
            g.trigger(2),
            Err(InterruptError::InvalidVector { index: 2, len: 2 })
        ));
    }

    #[test]
    fn intx_line_records_raise_and_resamples_on_eoi() {
        let m = RecordingInterruptManager::new();
        let line = m.create_legacy_irq(17).unwrap();
        line.trigger().unwrap();
        assert_eq!(m.interrupts(), vec![RecordedInterrupt::Line(17)]);
        m.end_of_interrupt(17).unwrap();
        assert_eq!(line.resample_notifier().read().unwrap(), 1);
    }

    #[test]
    fn lines_outside_the_ioapic_are_rejected() {
        let m = RecordingInterruptManager::new();
        assert!(matches!(
            m.create_edge_irq(IOAPIC_PINS),
            Err(InterruptError::InvalidVector { .. })
        ));
    }
}
