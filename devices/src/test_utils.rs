//! Test doubles for the interrupt and BAR relocation seams and a simple emulated PCI function, for
//! this crate's tests and for the crates built on it (enable the `test-utils` feature in their
//! `[dev-dependencies]`).
//!
//! The recording interrupt group behaves as the [`InterruptSourceGroup`] contract says a real one
//! does (a vector raised while masked stays pending and is delivered when `update` unmasks it),
//! and records every call so tests can assert on what a guest would observe: which messages were
//! delivered, and how vectors were routed.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::bus::{SharedBusDevice, lock};
use crate::interrupt::{
    InterruptError, InterruptManager, InterruptSourceGroup, LegacyIrq, MsiMessage,
};
use crate::pci::{
    BarChange, BarRelocation, PciBar, PciBarError, PciBdf, PciConfiguration, PciDevice, PciIdentity,
};

/// Something the recording group saw or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptEvent {
    /// `update(index, msg, masked)` was called.
    Update {
        /// The vector.
        index: u32,
        /// The message it was routed to.
        msg: MsiMessage,
        /// Whether it was masked.
        masked: bool,
    },
    /// The vector's message reached the (virtual) CPU.
    Delivered {
        /// The vector.
        index: u32,
        /// The message delivered.
        msg: MsiMessage,
    },
}

/// The routing state of one recorded vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorState {
    /// The message it is routed to.
    pub msg: MsiMessage,
    /// Whether it is masked.
    pub masked: bool,
    /// Whether it was raised while masked and not delivered yet.
    pub pending: bool,
}

impl Default for VectorState {
    fn default() -> Self {
        Self {
            msg: MsiMessage::default(),
            masked: true,
            pending: false,
        }
    }
}

#[derive(Debug, Default)]
struct GroupState {
    vectors: Vec<VectorState>,
    events: Vec<InterruptEvent>,
}

/// An [`InterruptSourceGroup`] that records routing and deliveries.
#[derive(Debug)]
pub struct RecordingInterruptGroup {
    state: Mutex<GroupState>,
    notifiers: Vec<EventFd>,
}

impl RecordingInterruptGroup {
    /// A group of `len` vectors, all masked and unrouted, without eventfds.
    pub fn new(len: u32) -> Self {
        Self {
            state: Mutex::new(GroupState {
                vectors: vec![VectorState::default(); len as usize],
                events: Vec::new(),
            }),
            notifiers: Vec::new(),
        }
    }

    /// A group of `len` vectors with one non-blocking eventfd each, for code that hands
    /// notifiers to a device (call [`poll_notifiers`](Self::poll_notifiers) to collect them).
    pub fn with_notifiers(len: u32) -> io::Result<Self> {
        let mut group = Self::new(len);
        group.notifiers = (0..len)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<_>>()?;
        Ok(group)
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<InterruptEvent> {
        lock(&self.state).events.clone()
    }

    /// Everything recorded so far, clearing the record.
    pub fn take_events(&self) -> Vec<InterruptEvent> {
        std::mem::take(&mut lock(&self.state).events)
    }

    /// The deliveries recorded so far, as `(vector, message)`.
    pub fn deliveries(&self) -> Vec<(u32, MsiMessage)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                InterruptEvent::Delivered { index, msg } => Some((index, msg)),
                InterruptEvent::Update { .. } => None,
            })
            .collect()
    }

    /// The updates recorded so far, as `(vector, message, masked)`.
    pub fn updates(&self) -> Vec<(u32, MsiMessage, bool)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                InterruptEvent::Update { index, msg, masked } => Some((index, msg, masked)),
                InterruptEvent::Delivered { .. } => None,
            })
            .collect()
    }

    /// The routing state of vector `index`.
    pub fn vector(&self, index: u32) -> Option<VectorState> {
        lock(&self.state).vectors.get(index as usize).copied()
    }

    /// Treats every signalled eventfd as a raise of its vector (as KVM's irqfd would), returning
    /// how many were signalled.
    pub fn poll_notifiers(&self) -> usize {
        let mut raised = 0;
        for (index, fd) in self.notifiers.iter().enumerate() {
            if fd.read().is_ok() {
                raised += 1;
                self.raise(index as u32);
            }
        }
        raised
    }

    fn raise(&self, index: u32) {
        let mut state = lock(&self.state);
        let Some(v) = state.vectors.get_mut(index as usize) else {
            return;
        };
        if v.masked {
            v.pending = true;
        } else {
            let msg = v.msg;
            state.events.push(InterruptEvent::Delivered { index, msg });
        }
    }

    fn check(&self, index: u32) -> Result<(), InterruptError> {
        match index < self.len() {
            true => Ok(()),
            false => Err(InterruptError::InvalidVector {
                index,
                len: self.len(),
            }),
        }
    }
}

impl InterruptSourceGroup for RecordingInterruptGroup {
    fn len(&self) -> u32 {
        lock(&self.state).vectors.len() as u32
    }

    fn trigger(&self, index: u32) -> Result<(), InterruptError> {
        self.check(index)?;
        self.raise(index);
        Ok(())
    }

    fn notifier(&self, index: u32) -> Option<&EventFd> {
        self.notifiers.get(index as usize)
    }

    fn update(&self, index: u32, msg: MsiMessage, masked: bool) -> Result<(), InterruptError> {
        self.check(index)?;
        let mut state = lock(&self.state);
        state
            .events
            .push(InterruptEvent::Update { index, msg, masked });
        let v = &mut state.vectors[index as usize];
        v.msg = msg;
        v.masked = masked;
        if !masked && v.pending {
            v.pending = false;
            state.events.push(InterruptEvent::Delivered { index, msg });
        }
        Ok(())
    }

    fn pending(&self, index: u32) -> bool {
        let Some(v) = self.vector(index) else {
            return false;
        };
        // Read and write back: this crate does not touch the host, so it cannot poll the
        // eventfd; a test double can afford the gap.
        let signalled = self
            .notifiers
            .get(index as usize)
            .is_some_and(|fd| fd.read().is_ok_and(|count| fd.write(count).is_ok()));
        v.pending || (v.masked && signalled)
    }
}

/// A [`LegacyIrq`] that counts raises.
#[derive(Debug)]
pub struct RecordingLegacyIrq {
    gsi: u32,
    raised: Mutex<u32>,
    notifier: EventFd,
    resample: EventFd,
}

impl RecordingLegacyIrq {
    /// A line wired to `gsi`, with non-blocking eventfds.
    pub fn new(gsi: u32) -> io::Result<Self> {
        Ok(Self {
            gsi,
            raised: Mutex::new(0),
            notifier: EventFd::new(EFD_NONBLOCK)?,
            resample: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// How many times [`LegacyIrq::trigger`] was called.
    pub fn raised(&self) -> u32 {
        *lock(&self.raised)
    }
}

impl LegacyIrq for RecordingLegacyIrq {
    fn gsi(&self) -> u32 {
        self.gsi
    }

    fn trigger(&self) -> Result<(), InterruptError> {
        *lock(&self.raised) += 1;
        Ok(())
    }

    fn notifier(&self) -> &EventFd {
        &self.notifier
    }

    fn resample_notifier(&self) -> &EventFd {
        &self.resample
    }
}

/// An [`InterruptManager`] handing out recording groups and lines, and keeping them for
/// inspection. Groups come without eventfds unless built with [`with_notifiers`](Self::with_notifiers).
#[derive(Debug, Default)]
pub struct RecordingInterruptManager {
    notifiers: bool,
    groups: Mutex<Vec<Arc<RecordingInterruptGroup>>>,
    irqs: Mutex<Vec<Arc<RecordingLegacyIrq>>>,
}

impl RecordingInterruptManager {
    /// A manager whose groups have no eventfds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A manager whose groups have one eventfd per vector.
    pub fn with_notifiers() -> Self {
        Self {
            notifiers: true,
            ..Self::default()
        }
    }

    /// The groups created so far, in order.
    pub fn groups(&self) -> Vec<Arc<RecordingInterruptGroup>> {
        lock(&self.groups).clone()
    }

    /// The legacy lines created so far, in order.
    pub fn legacy_irqs(&self) -> Vec<Arc<RecordingLegacyIrq>> {
        lock(&self.irqs).clone()
    }
}

impl InterruptManager for RecordingInterruptManager {
    fn create_msi_group(
        &self,
        count: u32,
    ) -> Result<Arc<dyn InterruptSourceGroup>, InterruptError> {
        let group = match self.notifiers {
            true => RecordingInterruptGroup::with_notifiers(count).map_err(|source| {
                InterruptError::Host {
                    op: "create eventfd for",
                    index: 0,
                    source,
                }
            })?,
            false => RecordingInterruptGroup::new(count),
        };
        let group = Arc::new(group);
        lock(&self.groups).push(group.clone());
        Ok(group)
    }

    fn create_legacy_irq(&self, gsi: u32) -> Result<Arc<dyn LegacyIrq>, InterruptError> {
        let irq =
            Arc::new(
                RecordingLegacyIrq::new(gsi).map_err(|source| InterruptError::Host {
                    op: "create eventfd for",
                    index: gsi,
                    source,
                })?,
            );
        lock(&self.irqs).push(irq.clone());
        Ok(irq)
    }
}

/// A [`BarRelocation`] that records the changes it is told about.
#[derive(Debug, Default)]
pub struct RecordingBarRelocation {
    changes: Mutex<Vec<(PciBdf, BarChange)>>,
}

impl RecordingBarRelocation {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The changes recorded so far, clearing the record.
    pub fn take(&self) -> Vec<(PciBdf, BarChange)> {
        std::mem::take(&mut lock(&self.changes))
    }
}

impl BarRelocation for RecordingBarRelocation {
    fn bar_changed(&self, bdf: PciBdf, change: &BarChange, _target: &SharedBusDevice) {
        lock(&self.changes).push((bdf, *change));
    }
}

/// An emulated PCI function: a [`PciConfiguration`] with the BARs given, each backed by plain
/// memory (reads return what was written, 0 before), for tests of buses and VMM plumbing.
#[derive(Debug)]
pub struct TestPciFunction {
    config: PciConfiguration,
    bar_memory: BTreeMap<(usize, u64), u8>,
}

impl TestPciFunction {
    /// A function with `id` and `bars`; panics on an invalid BAR (a test bug).
    pub fn new(id: &PciIdentity, bars: &[PciBar]) -> Self {
        let mut config = PciConfiguration::new(id);
        for bar in bars {
            config.add_bar(*bar).expect("test BAR layout is valid");
        }
        Self {
            config,
            bar_memory: BTreeMap::new(),
        }
    }

    /// The configuration space.
    pub fn config(&self) -> &PciConfiguration {
        &self.config
    }

    /// The configuration space, mutable (to add capabilities).
    pub fn config_mut(&mut self) -> &mut PciConfiguration {
        &mut self.config
    }
}

impl PciDevice for TestPciFunction {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) -> Vec<BarChange> {
        self.config.write(offset, data).bar_changes
    }

    fn bars(&self) -> Vec<PciBar> {
        self.config.bars()
    }

    fn set_bar_address(&mut self, index: usize, address: u64) -> Result<(), PciBarError> {
        self.config.set_bar_address(index, address)
    }

    fn read_bar(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = self.bar_memory.get(&(index, at)).copied().unwrap_or(0);
        }
    }

    fn write_bar(&mut self, index: usize, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.bar_memory.insert((index, offset + i as u64), *b);
        }
    }
}
