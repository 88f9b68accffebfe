//! The process as the kernel sees it during a case: its `RLIMIT_MEMLOCK` and the two
//! capabilities iommufd checks (`CAP_IPC_LOCK`: pins are not charged; `CAP_SYS_RESOURCE`:
//! `IOMMU_OPTION_RLIMIT_MODE` may be set).
//!
//! [`apply`] puts the process in the state a case needs and returns a guard restoring it.
//! Capabilities are dropped from (or raised into) the calling thread's *effective* set only,
//! keeping the permitted set, so they can be restored; the kernel's `capable()` looks at the
//! effective set of the thread making the call, which is the thread running the case.

use super::backend::{Needs, Skip};

/// `CAP_IPC_LOCK`.
pub const CAP_IPC_LOCK: u32 = 14;
/// `CAP_SYS_RESOURCE`.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`, one per 32 capabilities.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets.
#[derive(Debug, Clone, Copy, Default)]
struct Caps([CapData; 2]);

impl Caps {
    fn get() -> Option<Caps> {
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let mut caps = Caps::default();
        // SAFETY: capget reads the header and writes two data structs (version 3), both ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                caps.0.as_mut_ptr(),
            )
        };
        (rc == 0).then_some(caps)
    }

    fn set(&self) -> bool {
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset reads the header and two data structs (version 3), both ours; it only
        // changes this thread's capability sets.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                self.0.as_ptr(),
            )
        };
        rc == 0
    }

    fn effective(&self, cap: u32) -> bool {
        self.0[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
    }

    fn permitted(&self, cap: u32) -> bool {
        self.0[(cap / 32) as usize].permitted & (1 << (cap % 32)) != 0
    }

    fn with_effective(mut self, cap: u32, on: bool) -> Caps {
        let word = &mut self.0[(cap / 32) as usize].effective;
        if on {
            *word |= 1 << (cap % 32);
        } else {
            *word &= !(1 << (cap % 32));
        }
        self
    }
}

/// Whether the calling thread has `cap` in its effective set (false if it cannot be read).
pub fn has_capability(cap: u32) -> bool {
    Caps::get().is_some_and(|c| c.effective(cap))
}

/// The soft `RLIMIT_MEMLOCK` of the process, in bytes.
pub fn memlock_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit`, ours.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return 0;
    }
    r.rlim_cur
}

/// Restores the memlock limit and the effective capabilities when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    memlock: Option<libc::rlimit>,
    caps: Option<Caps>,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(old) = self.memlock {
            // SAFETY: setrlimit reads one `struct rlimit`, ours.
            unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &old) };
        }
        if let Some(caps) = self.caps {
            // Raising back what was effective before stays inside the permitted set.
            caps.set();
        }
    }
}

/// A memlock limit of `bytes` with pins charged against it (`CAP_IPC_LOCK` dropped from the
/// effective set) until the guard is dropped: what a case with [`Needs::memlock`] gets.
pub fn limit_memlock(bytes: u64) -> Result<ProcessGuard, Skip> {
    apply(&Needs::UAPI.memlock(bytes))
}

/// Makes the process what `needs` asks for: the memlock limit (with `CAP_IPC_LOCK` dropped, so
/// pins are charged against it) and `CAP_SYS_RESOURCE` present or absent. A need the process
/// cannot meet (a capability it may not raise) is a [`Skip`] naming it.
pub fn apply(needs: &Needs) -> Result<ProcessGuard, Skip> {
    let mut guard = ProcessGuard {
        memlock: None,
        caps: None,
    };
    let mut wanted: Vec<(u32, bool)> = Vec::new();
    if needs.memlock.is_some() {
        wanted.push((CAP_IPC_LOCK, false));
    }
    if let Some(has) = needs.cap_sys_resource {
        wanted.push((CAP_SYS_RESOURCE, has));
    }
    if !wanted.is_empty() {
        let old = Caps::get().ok_or_else(|| Skip("capget failed".into()))?;
        let mut new = old;
        for &(cap, on) in &wanted {
            if on && !old.permitted(cap) {
                return Err(Skip(format!(
                    "case needs capability {cap}, which this process may not raise"
                )));
            }
            new = new.with_effective(cap, on);
        }
        if !new.set() {
            return Err(Skip("capset of the effective capabilities failed".into()));
        }
        guard.caps = Some(old);
    }
    if let Some(bytes) = needs.memlock {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `struct rlimit`, ours.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } != 0 {
            return Err(Skip("getrlimit(RLIMIT_MEMLOCK) failed".into()));
        }
        let new = libc::rlimit {
            rlim_cur: bytes.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        if new.rlim_cur != bytes {
            return Err(Skip(format!(
                "case needs a memlock limit of {bytes} bytes, above this process's hard limit"
            )));
        }
        // SAFETY: setrlimit reads one `struct rlimit`, ours.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
            return Err(Skip("cannot set RLIMIT_MEMLOCK".into()));
        }
        guard.memlock = Some(old);
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_needs_are_applied_and_restored() {
        let before = memlock_limit();
        let needs = Needs::UAPI.memlock(8 * 4096);
        match apply(&needs) {
            Ok(guard) => {
                assert_eq!(memlock_limit(), 8 * 4096);
                assert!(!has_capability(CAP_IPC_LOCK), "pins would not be charged");
                drop(guard);
                assert_eq!(memlock_limit(), before);
            }
            Err(Skip(why)) => println!("skipped: {why}"),
        }
    }

    #[test]
    fn a_capability_the_thread_lacks_cannot_be_asked_for_unless_permitted() {
        let had = has_capability(CAP_SYS_RESOURCE);
        let needs = Needs::UAPI.cap_sys_resource(false);
        let guard = apply(&needs).expect("dropping a capability always works");
        assert!(!has_capability(CAP_SYS_RESOURCE));
        drop(guard);
        assert_eq!(has_capability(CAP_SYS_RESOURCE), had);
        let permitted = Caps::get().unwrap().permitted(CAP_SYS_RESOURCE);
        let with = apply(&Needs::UAPI.cap_sys_resource(true));
        assert_eq!(with.is_ok(), permitted);
    }
}
