//! What a DMA request asks for ([`Access`]) and what a translation grants ([`Permissions`]).

use super::config::FirstStageFlags;
use super::pte::{USER, WRITABLE};

/// The kind of request being translated.
///
/// Devices behind the model issue user-level requests unless their request is marked
/// `privileged` (a request-with-PASID with PR set). An AtomicOp sets both `read` and `write`.
/// Execute requests are not modelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// The request reads memory.
    pub read: bool,
    /// The request writes memory; the leaf's dirty flag is set.
    pub write: bool,
    /// The request has supervisor privilege (PR=1).
    pub privileged: bool,
}

impl Access {
    /// A user-level read.
    pub const READ: Access = Access {
        read: true,
        write: false,
        privileged: false,
    };
    /// A user-level write.
    pub const WRITE: Access = Access {
        read: false,
        write: true,
        privileged: false,
    };

    /// The same request with supervisor privilege.
    pub const fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }
}

/// Rights accumulated over every entry of a walk: U/S and R/W are each the AND of that bit at all
/// levels, as in x86-64 paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Every entry has U/S set: user-level requests may use the translation.
    pub user: bool,
    /// Every entry has R/W set: user writes (and privileged writes under WPE) may use it.
    pub writable: bool,
}

/// Why [`Permissions`] refuse an [`Access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    /// A user-level request met an entry with U/S clear.
    UserPrivilege,
    /// A write met an entry with R/W clear (user request, or privileged request under WPE).
    ReadOnly,
}

impl Permissions {
    /// What an empty walk grants before any entry is read.
    pub const ALL: Permissions = Permissions {
        user: true,
        writable: true,
    };

    /// The rights left after also passing through `entry`.
    pub(crate) const fn through(self, entry: u64) -> Permissions {
        Permissions {
            user: self.user && entry & USER != 0,
            writable: self.writable && entry & WRITABLE != 0,
        }
    }

    /// Whether `access` may use a translation with these rights under `flags`.
    ///
    /// Supervisor requests while SRE is clear are refused before this is asked (see
    /// `FirstStageConfig`); VT-d has no SMAP-like rule, so privileged requests may use user
    /// pages.
    pub(crate) const fn check(self, access: Access, flags: FirstStageFlags) -> Result<(), Denial> {
        if access.privileged {
            if access.write && flags.wpe && !self.writable {
                return Err(Denial::ReadOnly);
            }
            return Ok(());
        }
        if !self.user {
            return Err(Denial::UserPrivilege);
        }
        if access.write && !self.writable {
            return Err(Denial::ReadOnly);
        }
        Ok(())
    }

    /// Whether `access` may use a translation with these rights under `flags` (and, for a
    /// privileged request, SRE is set).
    pub const fn allow(self, access: Access, flags: FirstStageFlags) -> bool {
        (!access.privileged || flags.sre) && self.check(access, flags).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRE: FirstStageFlags = FirstStageFlags {
        sre: true,
        eafe: false,
        wpe: false,
    };
    const SRE_WPE: FirstStageFlags = FirstStageFlags {
        sre: true,
        eafe: false,
        wpe: true,
    };

    #[test]
    fn rights_are_the_and_over_all_entries() {
        let p = Permissions::ALL.through(USER | WRITABLE).through(USER);
        assert_eq!(
            p,
            Permissions {
                user: true,
                writable: false
            }
        );
    }

    #[test]
    fn user_requests_need_user_pages_and_writable_for_writes() {
        let supervisor_page = Permissions {
            user: false,
            writable: true,
        };
        let read_only = Permissions {
            user: true,
            writable: false,
        };
        assert_eq!(
            supervisor_page.check(Access::READ, SRE),
            Err(Denial::UserPrivilege)
        );
        assert_eq!(read_only.check(Access::READ, SRE), Ok(()));
        assert_eq!(read_only.check(Access::WRITE, SRE), Err(Denial::ReadOnly));
    }

    #[test]
    fn privileged_writes_ignore_read_only_unless_wpe() {
        let read_only_supervisor = Permissions {
            user: false,
            writable: false,
        };
        let write = Access::WRITE.privileged();
        assert!(read_only_supervisor.allow(write, SRE));
        assert!(!read_only_supervisor.allow(write, SRE_WPE));
        assert!(!Permissions::ALL.allow(write, FirstStageFlags::default()));
    }
}
