//! The emulated machine's configuration: which kernel it behaves as, and the limits and
//! privileges of the process using it.

use std::fmt;

/// A Linux kernel version (`major.minor`), deciding which iommufd uAPI the emulated host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl KernelVersion {
    /// 6.2: the first iommufd (IOAS, map/copy/unmap, options, VFIO compat, selftest).
    pub const V6_2: Self = Self::new(6, 2);
    /// 6.6: `IOMMU_HWPT_ALLOC`, `IOMMU_GET_HW_INFO`.
    pub const V6_6: Self = Self::new(6, 6);
    /// 6.7: HWPT flags and driver data (nesting), dirty tracking, hw_info capabilities.
    pub const V6_7: Self = Self::new(6, 7);
    /// 6.8: `IOMMU_HWPT_INVALIDATE`.
    pub const V6_8: Self = Self::new(6, 8);
    /// 6.10: automatic IOVA alignment capped at the huge page size.
    pub const V6_10: Self = Self::new(6, 10);
    /// 6.11: fault queues (`IOMMU_FAULT_QUEUE_ALLOC`, `fault_id`).
    pub const V6_11: Self = Self::new(6, 11);
    /// 6.12: the lab kernel; `out_max_pasid_log2` in hw_info.
    pub const V6_12: Self = Self::new(6, 12);
    /// 6.13: `IOMMU_IOAS_MAP_FILE`.
    pub const V6_13: Self = Self::new(6, 13);
    /// 6.15: `IOMMU_HWPT_ALLOC_PASID`.
    pub const V6_15: Self = Self::new(6, 15);
    /// 6.17: `IOMMU_HW_INFO_FLAG_INPUT_TYPE`.
    pub const V6_17: Self = Self::new(6, 17);
    /// The newest uAPI the emulated host implements.
    pub const NEWEST: Self = Self::V6_17;

    /// `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        KernelVersion { major, minor }
    }

    /// Parses `"6.12"`, `"6.12.111"` or a `uname -r` string such as `"6.12.0-1-amd64"`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self::new(major, minor))
    }
}

impl Default for KernelVersion {
    fn default() -> Self {
        Self::NEWEST
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Configuration of an [`EmulatedHost`](super::EmulatedHost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The kernel the host behaves as: `ENOTTY` for ioctls it lacks, `E2BIG` for request fields
    /// it does not know when they are non-zero.
    pub kernel: KernelVersion,
    /// `RLIMIT_MEMLOCK` in bytes, the limit pinned pages are charged against.
    pub memlock_limit: u64,
    /// The process has `CAP_IPC_LOCK`: pinned pages are not charged.
    pub cap_ipc_lock: bool,
    /// The process has `CAP_SYS_RESOURCE`: it may change `IOMMU_OPTION_RLIMIT_MODE`.
    pub cap_sys_resource: bool,
    /// The kernel has transparent huge pages: automatic IOVAs align to up to 2 MiB instead of
    /// 4 KiB.
    pub transparent_hugepage: bool,
    /// The kernel has `CONFIG_IOMMUFD_TEST` (the selftest interface); without it every
    /// selftest call is `ENOTTY`.
    pub selftest: bool,
}

impl HostConfig {
    /// The newest kernel, with this process's memlock limit and capabilities and this host's
    /// transparent huge page support: what the real kernel would do for this process.
    pub fn from_process() -> Self {
        let caps = effective_capabilities();
        HostConfig {
            kernel: KernelVersion::NEWEST,
            memlock_limit: memlock_rlimit(),
            cap_ipc_lock: caps & (1 << CAP_IPC_LOCK) != 0,
            cap_sys_resource: caps & (1 << CAP_SYS_RESOURCE) != 0,
            transparent_hugepage: std::path::Path::new("/sys/kernel/mm/transparent_hugepage")
                .exists(),
            selftest: true,
        }
    }

    /// A deterministic configuration for tests: the newest kernel, an unprivileged process
    /// (pins charged, no `CAP_SYS_RESOURCE`) with a memlock limit of `memlock_limit` bytes,
    /// transparent huge pages, and the selftest interface.
    pub fn unprivileged(memlock_limit: u64) -> Self {
        HostConfig {
            kernel: KernelVersion::NEWEST,
            memlock_limit,
            cap_ipc_lock: false,
            cap_sys_resource: false,
            transparent_hugepage: true,
            selftest: true,
        }
    }

    /// The same configuration behaving as kernel `kernel`.
    pub fn with_kernel(mut self, kernel: KernelVersion) -> Self {
        self.kernel = kernel;
        self
    }

    /// The largest automatic IOVA alignment (`HPAGE_SIZE` with THP, else `PAGE_SIZE`; kernels
    /// before 6.10 had no cap, modelled as 2^63).
    pub fn max_auto_alignment(&self) -> u64 {
        if self.kernel < KernelVersion::V6_10 {
            1 << 63
        } else if self.transparent_hugepage {
            2 << 20
        } else {
            super::PAGE_SIZE
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self::from_process()
    }
}

const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_RESOURCE: u32 = 24;

/// The `CapEff` mask of this process (0 if it cannot be read).
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The soft `RLIMIT_MEMLOCK` of this process in bytes (`u64::MAX` when unlimited).
fn memlock_rlimit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit`, which `rl` is.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        rl.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(KernelVersion::parse("6.12.111"), Some(KernelVersion::V6_12));
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v669"),
            Some(KernelVersion::new(6, 18))
        );
        assert_eq!(KernelVersion::parse("6"), None);
        assert!(KernelVersion::V6_6 < KernelVersion::V6_12);
        assert_eq!(KernelVersion::V6_13.to_string(), "6.13");
    }

    #[test]
    fn the_auto_alignment_cap_follows_thp_and_version() {
        let c = HostConfig::unprivileged(0);
        assert_eq!(c.max_auto_alignment(), 2 << 20);
        let no_thp = HostConfig {
            transparent_hugepage: false,
            ..c.clone()
        };
        assert_eq!(no_thp.max_auto_alignment(), 4096);
        assert_eq!(
            c.with_kernel(KernelVersion::V6_8).max_auto_alignment(),
            1 << 63
        );
    }
}
