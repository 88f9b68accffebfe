//! Pinned-page accounting against `RLIMIT_MEMLOCK`, as `pages.c` does it.
//!
//! Each `iopt_pages` picks a mode when it is created: none if the mapping task has
//! `CAP_IPC_LOCK`, else per-user (`user_struct::locked_vm`, the iommufd default), upgraded to
//! per-process (`mm::locked_vm`, VFIO's way) when the context is in rlimit mode 1
//! (`IOMMU_OPTION_RLIMIT_MODE`). Pages are charged when pinned and uncharged when unpinned. The emulated host is one process
//! of one user, so both counters live in the host and are shared by all its contexts.

use crate::errno::Errno;

/// How an `iopt_pages` is charged (`IOPT_PAGES_ACCOUNT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountMode {
    /// Not charged (the task had `CAP_IPC_LOCK`).
    None,
    /// Charged to the user (`locked_vm` of the user).
    User,
    /// Charged to the process (`mm->locked_vm`).
    Mm,
}

/// The host's counters, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accounting {
    /// Memlock limit in pages (`RLIMIT_MEMLOCK >> PAGE_SHIFT`).
    pub(crate) limit_pages: u64,
    /// `user_struct::locked_vm`.
    pub(crate) user_locked_vm: u64,
    /// `mm->locked_vm`.
    pub(crate) mm_locked_vm: u64,
    /// `mm->pinned_vm`, bumped for every charged pin whatever the mode.
    pub(crate) pinned_vm: u64,
}

impl Accounting {
    /// Nothing charged, with the given limit in pages.
    pub(crate) const fn new(limit_pages: u64) -> Self {
        Accounting {
            limit_pages,
            user_locked_vm: 0,
            mm_locked_vm: 0,
            pinned_vm: 0,
        }
    }

    /// Charges `npages` (`do_update_pinned(inc)`): `ENOMEM` past the limit, nothing changes then.
    pub(crate) fn charge(&mut self, mode: AccountMode, npages: u64) -> Result<(), Errno> {
        let counter = match mode {
            AccountMode::None => {
                self.pinned_vm += npages;
                return Ok(());
            }
            AccountMode::User => &mut self.user_locked_vm,
            AccountMode::Mm => &mut self.mm_locked_vm,
        };
        let new = counter.checked_add(npages).ok_or(Errno::ENOMEM)?;
        if new > self.limit_pages {
            return Err(Errno::ENOMEM);
        }
        *counter = new;
        self.pinned_vm += npages;
        Ok(())
    }

    /// Uncharges what [`Accounting::charge`] charged.
    pub(crate) fn uncharge(&mut self, mode: AccountMode, npages: u64) {
        let counter = match mode {
            AccountMode::None => None,
            AccountMode::User => Some(&mut self.user_locked_vm),
            AccountMode::Mm => Some(&mut self.mm_locked_vm),
        };
        if let Some(counter) = counter {
            debug_assert!(*counter >= npages, "uncharging more pages than charged");
            *counter = counter.saturating_sub(npages);
        }
        debug_assert!(self.pinned_vm >= npages);
        self.pinned_vm = self.pinned_vm.saturating_sub(npages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_change_nothing_on_failure() {
        let mut a = Accounting::new(10);
        a.charge(AccountMode::User, 8).unwrap();
        assert_eq!(a.charge(AccountMode::User, 3), Err(Errno::ENOMEM));
        assert_eq!(a.user_locked_vm, 8);
        a.charge(AccountMode::Mm, 10).unwrap();
        a.charge(AccountMode::None, 1000).unwrap();
        assert_eq!(a.pinned_vm, 1018);
        a.uncharge(AccountMode::User, 8);
        a.uncharge(AccountMode::Mm, 10);
        a.uncharge(AccountMode::None, 1000);
        assert_eq!(a, Accounting::new(10));
    }
}
