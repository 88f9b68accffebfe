//! `VFIO_DEVICE_SET_IRQS` as vfio-pci answers it (`vfio_set_irqs_validate_and_prepare` and
//! `vfio_pci_intrs.c`), with the eventfds the test device was given.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, RawFd};

use vmm_sys_util::eventfd::EventFd;

use crate::errno::Errno;
use crate::vfio::{
    IrqSet, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
};

const DATA_MASK: u32 = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
const ACTION_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/// The interrupt state of the test device.
#[derive(Debug, Default)]
pub(super) struct IrqState {
    /// The enabled index among INTx, MSI and MSI-X.
    pub enabled: Option<u32>,
    /// Vectors allocated for the enabled MSI / MSI-X index.
    pub vectors: u32,
    /// Trigger eventfds by `(index, vector)` (our own duplicates, as the kernel takes its own
    /// references).
    pub triggers: BTreeMap<(u32, u32), EventFd>,
    /// The INTx unmask (resample) eventfd.
    pub intx_unmask: Option<EventFd>,
    /// INTx is masked (automasked after firing, or masked by the user).
    pub intx_masked: bool,
    /// Times INTx was unmasked by `ACTION_UNMASK`.
    pub intx_unmasks: u32,
}

/// Duplicates `fd` if it is an eventfd: `EBADF` if it is not open, `EINVAL` if it is something
/// else (as `eventfd_ctx_fdget`).
fn dup_eventfd(fd: RawFd) -> Result<EventFd, Errno> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| Errno::EBADF)?;
    if link.to_string_lossy() != "anon_inode:[eventfd]" {
        return Err(Errno::EINVAL);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an integer only creates a new descriptor or fails; it
    // touches no memory of ours.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns.
    Ok(unsafe { EventFd::from_raw_fd(dup) })
}

fn fd_at(data: &[u8], i: usize) -> RawFd {
    let b = &data[4 * i..4 * i + 4];
    i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl IrqState {
    /// Handles one `SET_IRQS`, `counts` being each index's vector count from IRQ info.
    pub fn set_irqs(
        &mut self,
        req: &IrqSet,
        data: &[u8],
        counts: [u32; VFIO_PCI_NUM_IRQS as usize],
    ) -> Result<(), Errno> {
        let IrqSet {
            flags,
            index,
            start,
            count,
        } = *req;
        if index >= VFIO_PCI_NUM_IRQS
            || count >= u32::MAX - start
            || flags & !(DATA_MASK | ACTION_MASK) != 0
        {
            return Err(Errno::EINVAL);
        }
        let max = counts[index as usize];
        if start >= max || start + count > max {
            return Err(Errno::EINVAL);
        }
        let size = match flags & DATA_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return Err(Errno::EINVAL),
        };
        if data.len() < size * count as usize {
            return Err(Errno::EINVAL);
        }
        let data_type = flags & DATA_MASK;
        match (index, flags & ACTION_MASK) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) => {
                self.intx_mask(start, count, data_type, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                self.intx_unmask(start, count, data_type, data)
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.intx_trigger(start, count, data_type, data)
            }
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.msi_trigger(index, start, count, data_type, data)
            }
            (VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                self.single_trigger(index, start, count, data_type, data)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn is(&self, index: u32) -> bool {
        self.enabled == Some(index)
    }

    fn intx_mask(&mut self, start: u32, count: u32, ty: u32, data: &[u8]) -> Result<(), Errno> {
        if !self.is(VFIO_PCI_INTX_IRQ_INDEX) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match ty {
            VFIO_IRQ_SET_DATA_NONE => self.intx_masked = true,
            VFIO_IRQ_SET_DATA_BOOL if data[0] != 0 => self.intx_masked = true,
            VFIO_IRQ_SET_DATA_BOOL => {}
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }

    fn intx_unmask(&mut self, start: u32, count: u32, ty: u32, data: &[u8]) -> Result<(), Errno> {
        if !self.is(VFIO_PCI_INTX_IRQ_INDEX) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match ty {
            VFIO_IRQ_SET_DATA_NONE => self.unmask_intx(),
            VFIO_IRQ_SET_DATA_BOOL if data[0] != 0 => self.unmask_intx(),
            VFIO_IRQ_SET_DATA_BOOL => {}
            _ => match fd_at(data, 0) {
                fd if fd >= 0 => self.intx_unmask = Some(dup_eventfd(fd)?),
                _ => self.intx_unmask = None,
            },
        }
        Ok(())
    }

    pub fn unmask_intx(&mut self) {
        self.intx_masked = false;
        self.intx_unmasks += 1;
    }

    fn intx_trigger(&mut self, start: u32, count: u32, ty: u32, data: &[u8]) -> Result<(), Errno> {
        let key = (VFIO_PCI_INTX_IRQ_INDEX, 0);
        if self.is(VFIO_PCI_INTX_IRQ_INDEX) && count == 0 && ty == VFIO_IRQ_SET_DATA_NONE {
            self.enabled = None;
            self.triggers.remove(&key);
            self.intx_unmask = None;
            self.intx_masked = false;
            return Ok(());
        }
        if !(self.is(VFIO_PCI_INTX_IRQ_INDEX) || self.enabled.is_none()) || start != 0 || count != 1
        {
            return Err(Errno::EINVAL);
        }
        if ty == VFIO_IRQ_SET_DATA_EVENTFD {
            let fd = fd_at(data, 0);
            let trigger = if fd >= 0 {
                Some(dup_eventfd(fd)?)
            } else {
                None
            };
            match trigger {
                Some(t) => self.triggers.insert(key, t),
                None => self.triggers.remove(&key),
            };
            if self.enabled.is_none() {
                self.enabled = Some(VFIO_PCI_INTX_IRQ_INDEX);
                self.intx_masked = false;
            }
            return Ok(());
        }
        if !self.is(VFIO_PCI_INTX_IRQ_INDEX) {
            return Err(Errno::EINVAL);
        }
        if ty == VFIO_IRQ_SET_DATA_NONE || data[0] != 0 {
            self.signal(key);
        }
        Ok(())
    }

    fn msi_trigger(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        ty: u32,
        data: &[u8],
    ) -> Result<(), Errno> {
        if self.is(index) && count == 0 && ty == VFIO_IRQ_SET_DATA_NONE {
            self.enabled = None;
            self.vectors = 0;
            self.triggers.retain(|(i, _), _| *i != index);
            return Ok(());
        }
        if !(self.is(index) || self.enabled.is_none()) {
            return Err(Errno::EINVAL);
        }
        if ty == VFIO_IRQ_SET_DATA_EVENTFD {
            if !self.is(index) {
                // pci_alloc_irq_vectors(1, 0) for an empty enable.
                if start + count == 0 {
                    return Err(Errno::ERANGE);
                }
                self.enabled = Some(index);
                self.vectors = start + count;
            } else if start + count > self.vectors {
                return Err(Errno::EINVAL);
            }
            for i in 0..count {
                let fd = fd_at(data, i as usize);
                let vector = start + i;
                if fd < 0 {
                    self.triggers.remove(&(index, vector));
                    continue;
                }
                match dup_eventfd(fd) {
                    Ok(t) => {
                        self.triggers.insert((index, vector), t);
                    }
                    Err(e) => {
                        // vfio_msi_set_block unwinds the vectors it set.
                        for v in start..vector {
                            self.triggers.remove(&(index, v));
                        }
                        return Err(e);
                    }
                }
            }
            return Ok(());
        }
        if !self.is(index) {
            return Err(Errno::EINVAL);
        }
        for i in 0..count {
            if ty == VFIO_IRQ_SET_DATA_NONE || data[i as usize] != 0 {
                self.signal((index, start + i));
            }
        }
        Ok(())
    }

    fn single_trigger(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        ty: u32,
        data: &[u8],
    ) -> Result<(), Errno> {
        if start != 0 || count > 1 {
            return Err(Errno::EINVAL);
        }
        let key = (index, 0);
        match ty {
            VFIO_IRQ_SET_DATA_NONE => {
                if !self.triggers.contains_key(&key) {
                    return Err(Errno::EINVAL);
                }
                if count == 1 {
                    self.signal(key);
                } else {
                    self.triggers.remove(&key);
                }
            }
            VFIO_IRQ_SET_DATA_BOOL => {
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                if data[0] != 0 {
                    self.signal(key);
                }
            }
            _ => {
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                match fd_at(data, 0) {
                    -1 => {
                        self.triggers.remove(&key);
                    }
                    fd if fd >= 0 => {
                        let t = dup_eventfd(fd)?;
                        self.triggers.insert(key, t);
                    }
                    _ => return Err(Errno::EINVAL),
                }
            }
        }
        Ok(())
    }

    /// Signals the trigger eventfd of `(index, vector)`, if one is set.
    pub fn signal(&self, key: (u32, u32)) -> bool {
        match self.triggers.get(&key) {
            Some(fd) => fd.write(1).is_ok(),
            None => false,
        }
    }
}
