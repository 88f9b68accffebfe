//! [`FaultQueue`]: an iommufd fault object (`IOMMU_FAULT_QUEUE_ALLOC`) with a real fd.
//!
//! The kernel gives userspace an anonymous file that `read()`s `struct iommu_hwpt_pgfault`
//! records (one group of page requests at a time) and `write()`s `struct
//! iommu_hwpt_page_response`s back. The emulated queue is a `SOCK_STREAM` socket pair: the user
//! gets one end as a `File`, the emulated kernel keeps the other, writes each fault group to it
//! and reads responses from it. A stream (rather than `SOCK_SEQPACKET`) keeps the kernel's read
//! semantics: one `read()` returns every complete record that fits, across groups.
//!
//! Differences from the kernel, none visible to a well-behaved user: cookies are assigned when
//! a group is delivered rather than when it is read (the same numbers for a user that reads in
//! order), and a malformed response (unknown cookie or code, size not a multiple of 8 bytes) is
//! dropped instead of failing the `write()` with `EINVAL`; a `read()` too short for the first
//! waiting group returns the bytes that fit instead of failing with `EINVAL` (6.12 stable) or
//! returning 0 (the first 6.12), as a stream socket cannot refuse a read. While the user's end
//! is open the object is busy (`EBUSY` on destroy), as the kernel's file holds a reference on
//! it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use crate::errno::Errno;
use crate::host::iommufd::uapi::{
    HwptPageResponse, HwptPgfault, IOMMU_PGFAULT_FLAGS_LAST_PAGE, IOMMU_PGFAULT_FLAGS_PASID_VALID,
    IOMMUFD_PAGE_RESP_INVALID, IOMMUFD_PAGE_RESP_SUCCESS,
};

/// One page request as hardware reports it (`struct iommu_fault_page_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// The DEVICE object id of the requester.
    pub dev_id: u32,
    /// PASID, or `None` for requests without one.
    pub pasid: Option<u32>,
    /// Page request group index.
    pub grpid: u32,
    /// `IOMMU_PGFAULT_PERM_*`.
    pub perm: u32,
    /// Faulting address.
    pub addr: u64,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Delivered groups awaiting a response: cookie -> requesting device.
    awaiting: BTreeMap<u32, u32>,
    /// Bytes not yet accepted by the socket (the user is not reading).
    backlog: VecDeque<u8>,
    /// Partial response bytes read so far.
    partial: Vec<u8>,
    /// Responses received, oldest first (for the device model that raised the faults).
    responses: VecDeque<HwptPageResponse>,
}

/// A fault queue.
#[derive(Debug)]
pub struct FaultQueue {
    ours: File,
    state: Mutex<FaultState>,
}

impl FaultQueue {
    /// A queue and the user's end of it.
    pub(crate) fn new() -> Result<(Self, File), Errno> {
        let mut fds = [0i32; 2];
        // SAFETY: socketpair writes two new descriptors into `fds`, which we then own.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(Errno::last());
        }
        // SAFETY: both descriptors were just created by socketpair and are owned by nobody else.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: sets O_NONBLOCK on our own descriptor.
        let rc = unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(Errno::last());
        }
        Ok((
            FaultQueue {
                ours: File::from(ours),
                state: Mutex::new(FaultState::default()),
            },
            File::from(theirs),
        ))
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the user's end is open.
    pub fn user_open(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.ours.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: polls one valid descriptor without waiting.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        !(n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0)
    }

    /// Delivers one group of page requests (the last one carries `LAST_PAGE`) as records the
    /// user reads; returns the group's cookie.
    pub fn report(&self, group: &[PageRequest]) -> u32 {
        self.collect_responses();
        let mut st = self.state();
        let cookie = (1..=u32::MAX)
            .find(|c| !st.awaiting.contains_key(c))
            .unwrap_or(u32::MAX);
        if let Some(last) = group.last() {
            st.awaiting.insert(cookie, last.dev_id);
        }
        for (i, req) in group.iter().enumerate() {
            let mut flags = 0;
            if req.pasid.is_some() {
                flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
            }
            if i + 1 == group.len() {
                flags |= IOMMU_PGFAULT_FLAGS_LAST_PAGE;
            }
            let rec = HwptPgfault {
                flags,
                dev_id: req.dev_id,
                pasid: req.pasid.unwrap_or(0),
                grpid: req.grpid,
                perm: req.perm,
                reserved: 0,
                addr: req.addr,
                length: 0,
                cookie,
            };
            st.backlog.extend(rec.to_bytes());
        }
        self.flush(&mut st);
        cookie
    }

    /// Responses received from the user, oldest first, removing them.
    pub fn take_responses(&self) -> Vec<HwptPageResponse> {
        self.collect_responses();
        self.state().responses.drain(..).collect()
    }

    /// Cookies of delivered groups still awaiting a response.
    pub fn awaiting(&self) -> Vec<u32> {
        self.collect_responses();
        self.state().awaiting.keys().copied().collect()
    }

    /// `iommufd_auto_response_faults`: forgets the groups of `dev_id` (answered `INVALID` on
    /// the device's behalf) when it detaches.
    pub(crate) fn auto_respond(&self, dev_id: u32) {
        self.collect_responses();
        self.state().awaiting.retain(|_, d| *d != dev_id);
    }

    fn flush(&self, st: &mut FaultState) {
        while !st.backlog.is_empty() {
            let (a, _) = st.backlog.as_slices();
            match (&self.ours).write(a) {
                Ok(n) if n > 0 => {
                    st.backlog.drain(..n);
                }
                _ => return,
            }
        }
    }

    fn collect_responses(&self) {
        let mut st = self.state();
        self.flush(&mut st);
        let mut buf = [0u8; 512];
        loop {
            match (&self.ours).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => st.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let whole = st.partial.len() / HwptPageResponse::SIZE * HwptPageResponse::SIZE;
        let bytes: Vec<u8> = st.partial.drain(..whole).collect();
        for chunk in bytes.chunks_exact(HwptPageResponse::SIZE) {
            let Some(resp) = HwptPageResponse::from_bytes(chunk) else {
                continue;
            };
            let code_ok =
                resp.code == IOMMUFD_PAGE_RESP_SUCCESS || resp.code == IOMMUFD_PAGE_RESP_INVALID;
            if code_ok && st.awaiting.remove(&resp.cookie).is_some() {
                st.responses.push_back(resp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_read_as_records_and_answered_by_cookie() {
        let (q, mut user) = FaultQueue::new().unwrap();
        let req = PageRequest {
            dev_id: 3,
            pasid: Some(5),
            grpid: 0x10,
            perm: 1,
            addr: 0x1000,
        };
        let c1 = q.report(&[req]);
        let c2 = q.report(&[req, req]);
        assert_eq!((c1, c2), (1, 2));
        let mut buf = [0u8; 3 * HwptPgfault::SIZE];
        user.read_exact(&mut buf).unwrap();
        let first = HwptPgfault::from_bytes(&buf).unwrap();
        assert_eq!(
            first.flags,
            IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID
        );
        assert_eq!((first.dev_id, first.pasid, first.addr), (3, 5, 0x1000));
        let second = HwptPgfault::from_bytes(&buf[HwptPgfault::SIZE..]).unwrap();
        assert_eq!(second.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE, 0);
        assert_eq!(second.cookie, 2);

        let resp = HwptPageResponse {
            cookie: 1,
            code: IOMMUFD_PAGE_RESP_SUCCESS,
        };
        user.write_all(&resp.to_bytes()).unwrap();
        assert_eq!(q.take_responses(), vec![resp]);
        assert_eq!(q.awaiting(), vec![2]);
        assert_eq!(q.report(&[req]), 1, "cookie 1 is free again");
        assert!(q.user_open());
        drop(user);
        assert!(!q.user_open());
    }
}
