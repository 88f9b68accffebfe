//! [`ObjectTable`]: the id space of one context and the objects in it.
//!
//! As the kernel's `xa_alloc(XA_FLAGS_ALLOC1, xa_limit_31b)`: the lowest free id in
//! `[1, 2^31)`, reused after destroy. An id is reserved first and the object published later
//! (`iommufd_object_alloc` then `_finalize`), so ids are handed out in the kernel's order even
//! when one call creates several objects, and a failed call gives its ids back. Each object
//! counts the references other objects hold on it (`users` minus the table's own); destroying
//! a referenced object is `EBUSY`, and looking an id up as the wrong type is `ENOENT`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::errno::Errno;

use super::device::Device;
use super::fault::FaultQueue;
use super::hwpt::{HwptNested, HwptPaging};
use super::ioas::Ioas;

/// Largest id + 1 (`xa_limit_31b`).
const ID_LIMIT: u32 = 1 << 31;

/// A selftest object (`IOMMUFD_OBJ_SELFTEST`): owns a mock device.
#[derive(Debug)]
pub(crate) struct SelftestObj {
    /// The DEVICE object of the mock device.
    pub(crate) dev_id: u32,
}

/// An object of the context.
#[derive(Debug)]
pub(crate) enum Object {
    Ioas(Ioas),
    HwptPaging(HwptPaging),
    HwptNested(HwptNested),
    Device(Device),
    Fault(Arc<FaultQueue>),
    Selftest(SelftestObj),
}

#[derive(Debug)]
struct Entry {
    /// `None` while reserved but not yet published.
    obj: Option<Object>,
    /// References held by other objects (and by device owners).
    users: u32,
}

/// The objects of one context, by id.
#[derive(Debug, Default)]
pub(crate) struct ObjectTable {
    entries: BTreeMap<u32, Entry>,
    /// Ids below `next` that are free.
    free: BTreeSet<u32>,
    /// Lowest id never handed out (ids start at 1).
    next: u32,
}

macro_rules! typed_get {
    ($get:ident, $variant:ident, $ty:ty) => {
        /// The object `id` if it has this type, else `ENOENT`.
        pub(crate) fn $get(&self, id: u32) -> Result<&$ty, Errno> {
            match self.get(id) {
                Some(Object::$variant(o)) => Ok(o),
                _ => Err(Errno::ENOENT),
            }
        }
    };
    ($get:ident, $get_mut:ident, $variant:ident, $ty:ty) => {
        typed_get!($get, $variant, $ty);

        /// The object `id` if it has this type, else `ENOENT`.
        pub(crate) fn $get_mut(&mut self, id: u32) -> Result<&mut $ty, Errno> {
            match self.get_mut(id) {
                Some(Object::$variant(o)) => Ok(o),
                _ => Err(Errno::ENOENT),
            }
        }
    };
}

impl ObjectTable {
    /// Reserves the lowest free id.
    pub(crate) fn reserve(&mut self) -> Result<u32, Errno> {
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                let id = self.next.max(1);
                if id >= ID_LIMIT {
                    return Err(Errno::ENOSPC);
                }
                self.next = id + 1;
                id
            }
        };
        self.entries.insert(
            id,
            Entry {
                obj: None,
                users: 0,
            },
        );
        Ok(id)
    }

    /// Publishes `obj` under the reserved `id`.
    pub(crate) fn finalize(&mut self, id: u32, obj: Object) {
        let entry = self.entries.get_mut(&id);
        debug_assert!(
            entry.as_ref().is_some_and(|e| e.obj.is_none()),
            "finalize of id {id} that is not reserved"
        );
        if let Some(e) = entry {
            e.obj = Some(obj);
        }
    }

    /// Gives back a reserved id, or removes a published object without destroying it; returns
    /// the object if there was one.
    pub(crate) fn release(&mut self, id: u32) -> Option<Object> {
        let entry = self.entries.remove(&id)?;
        self.free.insert(id);
        while self.next > 1 && self.free.remove(&(self.next - 1)) {
            self.next -= 1;
        }
        entry.obj
    }

    /// The published object `id`.
    pub(crate) fn get(&self, id: u32) -> Option<&Object> {
        self.entries.get(&id)?.obj.as_ref()
    }

    /// The published object `id`, mutably.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Object> {
        self.entries.get_mut(&id)?.obj.as_mut()
    }

    typed_get!(ioas, ioas_mut, Ioas, Ioas);
    typed_get!(hwpt_paging, hwpt_paging_mut, HwptPaging, HwptPaging);
    typed_get!(hwpt_nested, HwptNested, HwptNested);
    typed_get!(device, device_mut, Device, Device);
    typed_get!(fault, Fault, Arc<FaultQueue>);
    typed_get!(selftest, Selftest, SelftestObj);

    /// References other objects hold on `id`.
    pub(crate) fn users(&self, id: u32) -> u32 {
        self.entries.get(&id).map_or(0, |e| e.users)
    }

    /// Takes a reference on `id`.
    pub(crate) fn get_ref(&mut self, id: u32) {
        let e = self.entries.get_mut(&id);
        debug_assert!(e.is_some(), "reference on missing object {id}");
        if let Some(e) = e {
            e.users += 1;
        }
    }

    /// Drops a reference on `id`.
    pub(crate) fn put_ref(&mut self, id: u32) {
        let e = self.entries.get_mut(&id);
        debug_assert!(
            e.as_ref().is_some_and(|e| e.users > 0),
            "unbalanced put on {id}"
        );
        if let Some(e) = e {
            e.users = e.users.saturating_sub(1);
        }
    }

    /// Ids of the published objects, ascending.
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| e.obj.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// True if no id is in use (published or reserved).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selftest(dev_id: u32) -> Object {
        Object::Selftest(SelftestObj { dev_id })
    }

    #[test]
    fn ids_are_the_lowest_free_and_reused() {
        let mut t = ObjectTable::default();
        let a = t.reserve().unwrap();
        let b = t.reserve().unwrap();
        let c = t.reserve().unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        for id in [a, b, c] {
            t.finalize(id, selftest(0));
        }
        t.release(b);
        assert_eq!(t.reserve().unwrap(), 2);
        t.release(2);
        t.release(3);
        assert_eq!(t.reserve().unwrap(), 2);
        assert_eq!(t.reserve().unwrap(), 3);
    }

    #[test]
    fn reserved_ids_are_not_visible_and_typed_lookups_check_the_type() {
        let mut t = ObjectTable::default();
        let id = t.reserve().unwrap();
        assert!(t.get(id).is_none());
        assert_eq!(t.selftest(id).map(|s| s.dev_id), Err(Errno::ENOENT));
        t.finalize(id, selftest(7));
        assert_eq!(t.selftest(id).map(|s| s.dev_id), Ok(7));
        assert_eq!(t.ioas(id).map(|_| ()), Err(Errno::ENOENT));
        assert_eq!(t.ioas(0).map(|_| ()), Err(Errno::ENOENT));
    }

    #[test]
    fn references_are_counted() {
        let mut t = ObjectTable::default();
        let id = t.reserve().unwrap();
        t.finalize(id, selftest(0));
        t.get_ref(id);
        t.get_ref(id);
        t.put_ref(id);
        assert_eq!(t.users(id), 1);
        t.put_ref(id);
        assert_eq!(t.users(id), 0);
        assert!(!t.is_empty());
        t.release(id);
        assert!(t.is_empty());
    }
}
