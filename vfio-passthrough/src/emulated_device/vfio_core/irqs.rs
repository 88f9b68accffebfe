//! [`IrqRouter`]: the interrupt half of the vfio-pci personality. It holds what
//! `VFIO_DEVICE_SET_IRQS` configured (the active index, one trigger eventfd per vector, INTx
//! masking and its unmask eventfd, the error and request eventfds) and delivers the device
//! model's interrupts to those eventfds exactly as `vfio_pci_intrs.c` does.
//!
//! A device model holds the router and raises interrupts through it: [`IrqRouter::msix`],
//! [`IrqRouter::msi`] (which honours the physical MSI mask and pending bits) and
//! [`IrqRouter::set_intx`] (a level: automasked on delivery, re-delivered on unmask while still
//! asserted).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use devices::pci::PciConfiguration;

use super::eventfd::{EventFdWatcher, IrqEventFd};
use super::phys_irq::{PhysMsi, PhysMsix};

/// PCI Express capability ID.
const PCI_CAP_ID_EXP: u8 = 0x10;
use crate::errno::Errno;
use crate::vfio::{
    IrqInfo, IrqSet, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
};

/// `VFIO_IRQ_SET_DATA_TYPE_MASK`.
const DATA_TYPE_MASK: u32 =
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
/// `VFIO_IRQ_SET_ACTION_TYPE_MASK`.
const ACTION_TYPE_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/// The interrupt resources a device has, from its physical configuration space (what
/// `vfio_pci_get_irq_count` reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrqCounts {
    /// 1 if the function has an interrupt pin, else 0.
    pub intx: u32,
    /// Vectors of the MSI capability (0 without one).
    pub msi: u32,
    /// Vectors of the MSI-X table (0 without one).
    pub msix: u32,
    /// The function is PCI Express (it has the ERR index).
    pub pcie: bool,
}

impl IrqCounts {
    /// The counts of a device with physical configuration space `config`.
    pub fn from_config(config: &PciConfiguration) -> Self {
        IrqCounts {
            intx: u32::from(config.interrupt_pin() != 0),
            msi: PhysMsi::find(config).map_or(0, |m| m.max_vectors()),
            msix: PhysMsix::find(config).map_or(0, |m| m.table_size(config)),
            pcie: config.find_capability(PCI_CAP_ID_EXP).is_some(),
        }
    }

    /// Vectors of irq `index` (0 for unknown indexes).
    pub fn count(&self, index: u32) -> u32 {
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => self.intx,
            VFIO_PCI_MSI_IRQ_INDEX => self.msi,
            VFIO_PCI_MSIX_IRQ_INDEX => self.msix,
            VFIO_PCI_ERR_IRQ_INDEX => u32::from(self.pcie),
            VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }
}

/// What the host does to the physical device when MSI or MSI-X is enabled or disabled
/// (`pci_alloc_irq_vectors`, `pci_free_irq_vectors`): the device's own configuration space.
pub trait PhysicalIrqControl {
    /// MSI is enabled with `nvec` vectors (or disabled with `None`).
    fn set_msi(&mut self, nvec: Option<u32>);
    /// MSI-X is enabled (or disabled).
    fn set_msix(&mut self, enabled: bool);
}

/// The index whose interrupts are in use (`vdev->irq_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    None,
    Intx,
    Msi,
    Msix,
}

#[derive(Debug, Default)]
struct IntxState {
    trigger: Option<IrqEventFd>,
    /// `ctx->masked`: masked by the user or automasked after a delivery.
    masked: bool,
    /// The unmask eventfd's watcher and its generation.
    unmask: Option<(u64, EventFdWatcher)>,
}

#[derive(Debug)]
struct IrqState {
    counts: IrqCounts,
    active: Active,
    intx: IntxState,
    /// `vdev->virq_disabled`: the user's INTx-disable bit in the command register.
    virq_disabled: bool,
    /// The level of the device's INTx line.
    intx_level: bool,
    /// MSI or MSI-X vectors allocated, with their trigger eventfds.
    vectors: Vec<Option<IrqEventFd>>,
    /// `msi_qmax`: log2 of the MSI vectors enabled, as the virtual capability reports it.
    msi_qmax: u16,
    err: Option<IrqEventFd>,
    req: Option<IrqEventFd>,
    unmask_generation: u64,
}

/// The interrupt state of one emulated VFIO device.
#[derive(Debug)]
pub struct IrqRouter {
    state: Mutex<IrqState>,
    this: Weak<IrqRouter>,
    name: String,
}

impl IrqRouter {
    /// A router for a device with `counts`, with nothing configured (`irq_type` none).
    pub fn new(name: &str, counts: IrqCounts) -> Arc<Self> {
        Arc::new_cyclic(|this| IrqRouter {
            state: Mutex::new(IrqState {
                counts,
                active: Active::None,
                intx: IntxState::default(),
                virq_disabled: false,
                intx_level: false,
                vectors: Vec::new(),
                msi_qmax: 0,
                err: None,
                req: None,
                unmask_generation: 0,
            }),
            this: this.clone(),
            name: name.to_string(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the device's interrupt resources (once, when the device is assembled).
    pub(super) fn set_counts(&self, counts: IrqCounts) {
        self.lock().counts = counts;
    }

    /// The device's interrupt resources.
    pub fn counts(&self) -> IrqCounts {
        self.lock().counts
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` (`vfio_pci_ioctl_get_irq_info`).
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno> {
        let counts = self.lock().counts;
        match index {
            VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX => {}
            VFIO_PCI_REQ_IRQ_INDEX => {}
            VFIO_PCI_ERR_IRQ_INDEX if counts.pcie => {}
            _ => return Err(Errno::EINVAL),
        }
        let mut flags = VFIO_IRQ_INFO_EVENTFD;
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        } else {
            // No dynamic MSI-X allocation: every index but INTx is NORESIZE.
            flags |= VFIO_IRQ_INFO_NORESIZE;
        }
        Ok(IrqInfo {
            flags,
            index,
            count: counts.count(index),
        })
    }

    /// log2 of the MSI vectors enabled (the virtual MSI capability's QMASK while enabled).
    pub fn msi_qmax(&self) -> u16 {
        self.lock().msi_qmax
    }

    /// Whether MSI is the active index (only then may the user see MSI enabled).
    pub fn msi_active(&self) -> bool {
        self.lock().active == Active::Msi
    }

    /// `VFIO_DEVICE_SET_IRQS`: validation of `vfio_set_irqs_validate_and_prepare`, then
    /// `vfio_pci_set_irqs_ioctl`. `phys` is the device's configuration space.
    pub fn set_irqs(
        &self,
        req: &IrqSet,
        data: &[u8],
        phys: &mut dyn PhysicalIrqControl,
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let max = st.counts.count(req.index);
        validate(req, max, data)?;
        let action = req.flags & ACTION_TYPE_MASK;
        let (index, start, count, flags) = (req.index, req.start, req.count, req.flags);
        match (index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) => {
                self.intx_mask_ioctl(&mut st, start, count, flags, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                self.intx_unmask_ioctl(&mut st, start, count, flags, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.intx_trigger(&mut st, start, count, flags, data)
            }
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                msi_trigger(&mut st, index, start, count, flags, data, phys)
            }
            (VFIO_PCI_ERR_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) if st.counts.pcie => {
                set_single(&mut st.err, start, count, flags, data)
            }
            (VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                set_single(&mut st.req, start, count, flags, data)
            }
            // MSI/MSI-X masking is not exported by the kernel either ("XXX"), and an action
            // field with zero or several bits picks no handler.
            _ => Err(Errno::ENOTTY),
        }
    }

    /// The user's INTx-disable bit (`PCI_COMMAND_INTX_DISABLE` in the virtual command
    /// register) changed: it masks and unmasks INTx (`virq_disabled`).
    pub fn set_virq_disabled(&self, disabled: bool) {
        let mut st = self.lock();
        if disabled && !st.virq_disabled {
            st.virq_disabled = true;
            intx_mask(&mut st);
        } else if !disabled && st.virq_disabled {
            st.virq_disabled = false;
            intx_unmask(&mut st);
        }
    }

    /// The device drives its INTx line to `level`. A rising level while INTx is enabled and
    /// unmasked is delivered to the trigger eventfd and automasks INTx.
    pub fn set_intx(&self, level: bool) {
        let mut st = self.lock();
        st.intx_level = level;
        intx_handler(&mut st);
    }

    /// The device sends MSI-X vector `vector`: signalled if MSI-X is the active index and the
    /// vector has a trigger; lost otherwise (no handler is registered for it on the host).
    pub fn msix(&self, vector: u32) {
        let st = self.lock();
        if st.active != Active::Msix {
            log::debug!(
                "{}: MSI-X vector {vector} while MSI-X is not in use",
                self.name
            );
            return;
        }
        match st.vectors.get(vector as usize) {
            Some(Some(trigger)) => trigger.signal(),
            _ => log::debug!("{}: MSI-X vector {vector} has no eventfd", self.name),
        }
    }

    /// The device sends MSI vector `vector`, subject to the physical mask bits of `config`
    /// (`msi` is its MSI capability): a masked vector sets its pending bit instead.
    pub fn msi(&self, config: &mut PciConfiguration, msi: &PhysMsi, vector: u32) {
        if vector >= msi.enabled_vectors(config) {
            log::debug!("{}: MSI vector {vector} is not enabled", self.name);
            return;
        }
        if msi.masked(config, vector) {
            msi.set_pending(config, vector, true);
            return;
        }
        self.deliver_msi(vector);
    }

    /// After the physical MSI mask register changed: delivers the pending vectors it unmasked.
    pub fn msi_mask_changed(&self, config: &mut PciConfiguration, msi: &PhysMsi) {
        let pending = msi.pending(config);
        for v in 0..32 {
            if pending & (1 << v) != 0 && !msi.masked(config, v) {
                msi.set_pending(config, v, false);
                if v < msi.enabled_vectors(config) {
                    self.deliver_msi(v);
                }
            }
        }
    }

    fn deliver_msi(&self, vector: u32) {
        let st = self.lock();
        if st.active != Active::Msi {
            return;
        }
        if let Some(Some(trigger)) = st.vectors.get(vector as usize) {
            trigger.signal();
        }
    }

    /// Signals the error eventfd (an AER event), if one is set.
    pub fn signal_error(&self) {
        if let Some(err) = &self.lock().err {
            err.signal();
        }
    }

    /// Signals the request eventfd (the host wants the device back), if one is set.
    pub fn signal_request(&self) {
        if let Some(req) = &self.lock().req {
            req.signal();
        }
    }

    fn intx_mask_ioctl(
        &self,
        st: &mut IrqState,
        start: u32,
        count: u32,
        flags: u32,
        data: &[u8],
    ) -> Result<(), Errno> {
        if st.active != Active::Intx || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match flags & DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => intx_mask(st),
            VFIO_IRQ_SET_DATA_BOOL => {
                if data[0] != 0 {
                    intx_mask(st);
                }
            }
            // "XXX implement me" in the kernel.
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }

    fn intx_unmask_ioctl(
        &self,
        st: &mut IrqState,
        start: u32,
        count: u32,
        flags: u32,
        data: &[u8],
    ) -> Result<(), Errno> {
        if st.active != Active::Intx || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match flags & DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => intx_unmask(st),
            VFIO_IRQ_SET_DATA_BOOL => {
                if data[0] != 0 {
                    intx_unmask(st);
                }
            }
            _ => {
                let fd = fd_at(data, 0);
                // Replacing or removing the watcher either way, as vfio_virqfd_enable does.
                st.intx.unmask = None;
                if fd >= 0 {
                    let fd = IrqEventFd::from_user_fd(fd)?;
                    st.unmask_generation += 1;
                    let generation = st.unmask_generation;
                    let router = self.this.clone();
                    let watcher =
                        EventFdWatcher::spawn(fd, &format!("{}-unmask", self.name), move || {
                            if let Some(router) = router.upgrade() {
                                router.unmask_from_eventfd(generation);
                            }
                        })?;
                    st.intx.unmask = Some((generation, watcher));
                }
            }
        }
        Ok(())
    }

    fn unmask_from_eventfd(&self, generation: u64) {
        let mut st = self.lock();
        let current = st.intx.unmask.as_ref().map(|(g, _)| *g);
        if current == Some(generation) && st.active == Active::Intx {
            intx_unmask(&mut st);
        }
    }

    fn intx_trigger(
        &self,
        st: &mut IrqState,
        start: u32,
        count: u32,
        flags: u32,
        data: &[u8],
    ) -> Result<(), Errno> {
        let is_intx = st.active == Active::Intx;
        if is_intx && count == 0 && flags & VFIO_IRQ_SET_DATA_NONE != 0 {
            intx_disable(st);
            return Ok(());
        }
        if !(is_intx || st.active == Active::None) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
            let fd = fd_at(data, 0);
            let trigger = if fd >= 0 {
                Some(IrqEventFd::from_user_fd(fd)?)
            } else {
                None
            };
            if is_intx {
                st.intx.trigger = trigger;
            } else {
                // vfio_intx_enable: the initial mask follows the user's INTx-disable bit, and
                // a line already asserted is delivered at once, as request_irq would.
                st.active = Active::Intx;
                st.intx.trigger = trigger;
                st.intx.masked = st.virq_disabled;
                intx_handler(st);
            }
            return Ok(());
        }
        if !is_intx {
            return Err(Errno::EINVAL);
        }
        let fire = match flags & DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_BOOL => data[0] != 0,
            _ => true,
        };
        if fire {
            send_intx(st);
        }
        Ok(())
    }
}

/// `vfio_set_irqs_validate_and_prepare`, for a device whose irq `index` has `max` vectors.
fn validate(req: &IrqSet, max: u32, data: &[u8]) -> Result<(), Errno> {
    if req.index >= VFIO_PCI_NUM_IRQS
        || req.count >= u32::MAX - req.start
        || req.flags & !(DATA_TYPE_MASK | ACTION_TYPE_MASK) != 0
    {
        return Err(Errno::EINVAL);
    }
    if req.start >= max || req.start + req.count > max {
        return Err(Errno::EINVAL);
    }
    let size = match req.flags & DATA_TYPE_MASK {
        VFIO_IRQ_SET_DATA_NONE => 0,
        VFIO_IRQ_SET_DATA_BOOL => 1,
        VFIO_IRQ_SET_DATA_EVENTFD => 4,
        _ => return Err(Errno::EINVAL),
    };
    if (data.len() as u64) < u64::from(req.count) * size {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The `i`th native-endian `i32` of an eventfd array (validated long enough), `-1` past it.
fn fd_at(data: &[u8], i: usize) -> i32 {
    data.get(i * 4..i * 4 + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(-1, i32::from_ne_bytes)
}

fn send_intx(st: &IrqState) {
    if st.active == Active::Intx && !st.virq_disabled {
        if let Some(trigger) = &st.intx.trigger {
            trigger.signal();
        }
    }
}

/// The host's INTx handler: an asserted, unmasked line is masked and delivered.
fn intx_handler(st: &mut IrqState) {
    if st.active == Active::Intx && st.intx_level && !st.intx.masked {
        st.intx.masked = true;
        send_intx(st);
    }
}

fn intx_mask(st: &mut IrqState) {
    if st.active == Active::Intx {
        st.intx.masked = true;
    }
}

/// `vfio_pci_intx_unmask_handler`: a line still asserted stays masked and is sent again.
fn intx_unmask(st: &mut IrqState) {
    if st.active != Active::Intx || !st.intx.masked || st.virq_disabled {
        return;
    }
    if st.intx_level {
        send_intx(st);
    } else {
        st.intx.masked = false;
    }
}

fn intx_disable(st: &mut IrqState) {
    st.intx = IntxState::default();
    st.active = Active::None;
}

fn msi_disable(st: &mut IrqState, msix: bool, phys: &mut dyn PhysicalIrqControl) {
    st.vectors.clear();
    st.active = Active::None;
    if msix {
        phys.set_msix(false);
    } else {
        phys.set_msi(None);
    }
}

/// `vfio_msi_set_block`: sets vectors `start..start + count`; on a failure, de-assigns the
/// vectors of the block already set and returns the error.
fn msi_set_block(st: &mut IrqState, start: u32, count: u32, data: &[u8]) -> Result<(), Errno> {
    let fds = !data.is_empty();
    let mut result = Ok(());
    let mut done = start;
    for i in 0..count {
        let vector = (start + i) as usize;
        let fd = if fds { fd_at(data, i as usize) } else { -1 };
        let Some(slot) = st.vectors.get_mut(vector) else {
            // The vector was not allocated when the index was enabled (no dynamic MSI-X).
            result = Err(Errno::EINVAL);
            break;
        };
        *slot = None;
        if fd >= 0 {
            match IrqEventFd::from_user_fd(fd) {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        done = start + i + 1;
    }
    if result.is_err() {
        for v in start..done {
            if let Some(slot) = st.vectors.get_mut(v as usize) {
                *slot = None;
            }
        }
    }
    result
}

fn msi_trigger(
    st: &mut IrqState,
    index: u32,
    start: u32,
    count: u32,
    flags: u32,
    data: &[u8],
    phys: &mut dyn PhysicalIrqControl,
) -> Result<(), Errno> {
    let msix = index == VFIO_PCI_MSIX_IRQ_INDEX;
    let this = if msix { Active::Msix } else { Active::Msi };
    if st.active == this && count == 0 && flags & VFIO_IRQ_SET_DATA_NONE != 0 {
        msi_disable(st, msix, phys);
        return Ok(());
    }
    if !(st.active == this || st.active == Active::None) {
        return Err(Errno::EINVAL);
    }
    if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
        if st.active == this {
            return msi_set_block(st, start, count, data);
        }
        // vfio_msi_enable: pci_alloc_irq_vectors(pdev, 1, nvec) refuses nvec 0 with ERANGE.
        let nvec = start + count;
        if nvec == 0 {
            return Err(Errno::ERANGE);
        }
        st.vectors = (0..nvec).map(|_| None).collect();
        st.active = this;
        if msix {
            phys.set_msix(true);
        } else {
            st.msi_qmax = nvec.next_power_of_two().trailing_zeros() as u16;
            phys.set_msi(Some(nvec));
        }
        let result = msi_set_block(st, start, count, data);
        if result.is_err() {
            msi_disable(st, msix, phys);
        }
        return result;
    }
    if st.active != this {
        return Err(Errno::EINVAL);
    }
    for i in 0..count {
        let fire = match flags & DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_BOOL => data.get(i as usize).is_some_and(|b| *b != 0),
            _ => true,
        };
        if fire {
            if let Some(Some(trigger)) = st.vectors.get((start + i) as usize) {
                trigger.signal();
            }
        }
    }
    Ok(())
}

/// `vfio_pci_set_ctx_trigger_single` (the ERR and REQ indexes).
fn set_single(
    slot: &mut Option<IrqEventFd>,
    start: u32,
    count: u32,
    flags: u32,
    data: &[u8],
) -> Result<(), Errno> {
    if start != 0 || count > 1 {
        return Err(Errno::EINVAL);
    }
    match flags & DATA_TYPE_MASK {
        VFIO_IRQ_SET_DATA_NONE => {
            let Some(trigger) = slot.as_ref() else {
                return Err(Errno::EINVAL);
            };
            if count == 1 {
                trigger.signal();
            } else {
                *slot = None;
            }
            Ok(())
        }
        VFIO_IRQ_SET_DATA_BOOL => {
            if count == 0 {
                return Err(Errno::EINVAL);
            }
            if data[0] != 0 {
                if let Some(trigger) = slot.as_ref() {
                    trigger.signal();
                }
            }
            Ok(())
        }
        _ => {
            if count == 0 {
                return Err(Errno::EINVAL);
            }
            match fd_at(data, 0) {
                -1 => {
                    *slot = None;
                    Ok(())
                }
                fd if fd >= 0 => {
                    *slot = Some(IrqEventFd::from_user_fd(fd)?);
                    Ok(())
                }
                _ => Err(Errno::EINVAL),
            }
        }
    }
}
