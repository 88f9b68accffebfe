//! [`EmulatedHost`]: the emulated machine shared by all its iommufd contexts.
//!
//! Like the real kernel it is one for the whole process: the memlock accounting of the user and
//! of the process and the pin count of every page are shared by all contexts opened from it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;

use super::accounting::{AccountMode, Accounting};
use super::config::HostConfig;
use super::context::EmulatedIommufd;
use super::features::Features;
use super::pin_registry::PinRegistry;
use super::vma::{PageIdentity, VmaQuery};
use super::{PAGE_SHIFT, PAGE_SIZE};

#[derive(Debug)]
struct HostState {
    pins: PinRegistry,
    accounting: Accounting,
}

/// The emulated kernel: configuration and the state all its contexts share.
///
/// Create one per process (or per test), wrap it in an `Arc`, and open contexts with
/// [`EmulatedHost::open_iommufd`], as a process opens `/dev/iommu`.
#[derive(Debug)]
pub struct EmulatedHost {
    config: HostConfig,
    vmas: VmaQuery,
    state: Mutex<HostState>,
}

/// Unpins runs one at a time, as a caller finds them, under one lock of the host taken at the
/// first run; uncharges them all when dropped. Lets `Pages::unload` unpin while it walks its
/// runs, without collecting them first.
pub(crate) struct Unpinner<'a> {
    host: &'a EmulatedHost,
    account: AccountMode,
    state: Option<MutexGuard<'a, HostState>>,
    npages: u64,
}

impl Unpinner<'_> {
    /// Unpins `npages` pages from the page holding `first`, pinned by one
    /// [`EmulatedHost::pin`] of the same account mode.
    pub(crate) fn unpin(&mut self, first: PageIdentity, npages: u64) {
        if npages == 0 {
            return;
        }
        let host = self.host;
        self.state
            .get_or_insert_with(|| host.state())
            .pins
            .unpin(first, npages);
        self.npages += npages;
    }
}

impl Drop for Unpinner<'_> {
    fn drop(&mut self) {
        if let Some(st) = &mut self.state {
            st.accounting.uncharge(self.account, self.npages);
        }
    }
}

impl fmt::Debug for Unpinner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unpinner")
            .field("account", &self.account)
            .field("npages", &self.npages)
            .finish_non_exhaustive()
    }
}

impl EmulatedHost {
    /// A host with configuration `config`.
    pub fn new(config: HostConfig) -> Arc<Self> {
        let limit_pages = config.memlock_limit >> PAGE_SHIFT;
        Arc::new(EmulatedHost {
            config,
            vmas: VmaQuery::new(),
            state: Mutex::new(HostState {
                pins: PinRegistry::default(),
                accounting: Accounting::new(limit_pages),
            }),
        })
    }

    /// Opens a new iommufd context (`open("/dev/iommu")`): user accounting mode, no objects.
    pub fn open_iommufd(self: &Arc<Self>) -> EmulatedIommufd {
        EmulatedIommufd::new(self.clone(), false)
    }

    /// Opens a context as `/dev/vfio/vfio` provided by iommufd does: it starts in process
    /// (mm) accounting mode, as VFIO type1 accounts.
    pub fn open_vfio_compat(self: &Arc<Self>) -> EmulatedIommufd {
        EmulatedIommufd::new(self.clone(), true)
    }

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub(crate) fn features(&self) -> Features {
        Features {
            version: self.config.kernel,
            selftest: self.config.selftest,
        }
    }

    pub(crate) fn vmas(&self) -> &VmaQuery {
        &self.vmas
    }

    fn state(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charges `npages` in mode `account` (`ENOMEM` past the limit) and pins `runs`
    /// (identity of a first page, page count), which add up to `npages`. Nothing changes on
    /// error.
    pub(crate) fn pin(
        &self,
        account: AccountMode,
        npages: u64,
        runs: impl IntoIterator<Item = (PageIdentity, u64)>,
    ) -> Result<(), Errno> {
        if npages == 0 {
            return Ok(());
        }
        let mut st = self.state();
        st.accounting.charge(account, npages)?;
        for (first, n) in runs {
            st.pins.pin(first, n);
        }
        Ok(())
    }

    /// Undoes [`EmulatedHost::pin`] run by run: see [`Unpinner`].
    pub(crate) fn unpinner(&self, account: AccountMode) -> Unpinner<'_> {
        Unpinner {
            host: self,
            account,
            state: None,
            npages: 0,
        }
    }

    /// The account mode of new pages: none with `CAP_IPC_LOCK`, else per user, or per process
    /// when the context is in mm mode.
    pub(crate) fn account_mode(&self, ctx_mm_mode: bool) -> AccountMode {
        if self.config.cap_ipc_lock {
            AccountMode::None
        } else if ctx_mm_mode {
            AccountMode::Mm
        } else {
            AccountMode::User
        }
    }

    /// How many times the page of process memory holding `addr` is pinned, as
    /// `IOMMU_TEST_OP_MD_CHECK_REFS` reads it. `EFAULT` if `addr` is not mapped.
    pub fn pin_count(&self, addr: u64) -> Result<u32, Errno> {
        let id = self.vmas.identity(addr)?;
        Ok(self.state().pins.count(id))
    }

    /// Pages charged to the user (`locked_vm` of the user), to the process (`mm->locked_vm`),
    /// and pinned in total (`mm->pinned_vm`).
    pub fn locked_pages(&self) -> (u64, u64, u64) {
        let a = self.state().accounting;
        (a.user_locked_vm, a.mm_locked_vm, a.pinned_vm)
    }

    /// The memlock limit in bytes, rounded down to pages.
    pub fn memlock_limit(&self) -> u64 {
        self.state().accounting.limit_pages * PAGE_SIZE
    }

    /// True if no page is pinned (every context released its pins).
    pub fn nothing_pinned(&self) -> bool {
        self.state().pins.is_empty()
    }
}
