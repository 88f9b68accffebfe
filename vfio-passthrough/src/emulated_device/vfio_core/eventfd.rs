//! Eventfds handed to an emulated device through `VFIO_DEVICE_SET_IRQS`: taken by reference as
//! the kernel takes them (`eventfd_ctx_fdget`: a `dup` here, checked to be an eventfd), and the
//! INTx unmask eventfd, which the kernel watches with a `virqfd` and we watch with a thread.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread;

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::errno::Errno;

/// An eventfd the device signals (an interrupt trigger) or watches (an unmask eventfd).
pub struct IrqEventFd {
    fd: EventFd,
}

impl fmt::Debug for IrqEventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IrqEventFd({})", self.fd.as_raw_fd())
    }
}

impl IrqEventFd {
    /// Takes a reference to the caller's eventfd `fd`, as `eventfd_ctx_fdget` does: `EBADF` if
    /// `fd` is not open, `EINVAL` if it is not an eventfd. The caller may close its copy.
    pub fn from_user_fd(fd: RawFd) -> Result<Self, Errno> {
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; an invalid fd gives EBADF.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        if !is_eventfd(owned.as_raw_fd()) {
            return Err(Errno::EINVAL);
        }
        use std::os::fd::IntoRawFd;
        // SAFETY: ownership of the checked eventfd moves from `owned` into the EventFd.
        let fd = unsafe { EventFd::from_raw_fd(owned.into_raw_fd()) };
        Ok(IrqEventFd { fd })
    }

    /// Signals the eventfd (adds 1 to its counter), as `eventfd_signal` does.
    pub fn signal(&self) {
        if let Err(e) = self.fd.write(1) {
            // Only a counter at its maximum fails, and then the reader has a pending wakeup.
            log::debug!("signalling eventfd {}: {e}", self.fd.as_raw_fd());
        }
    }

    /// The descriptor (for polling).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether `fd` is an eventfd: its `/proc/self/fd` link names the eventfd anonymous inode.
fn is_eventfd(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|target| target.as_os_str() == "anon_inode:[eventfd]")
        .unwrap_or(false)
}

/// A thread that calls `on_signal` each time an eventfd is signalled (the kernel's `virqfd`),
/// until dropped.
pub struct EventFdWatcher {
    stop: Arc<EventFd>,
    watched: RawFd,
}

impl fmt::Debug for EventFdWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventFdWatcher({})", self.watched)
    }
}

impl EventFdWatcher {
    /// Watches `fd`; `on_signal` runs on the watcher thread after each signal is consumed.
    pub fn spawn(
        fd: IrqEventFd,
        name: &str,
        on_signal: impl Fn() + Send + 'static,
    ) -> Result<Self, Errno> {
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| Errno::from_io(&e))?);
        let watched = fd.as_raw_fd();
        let thread_stop = stop.clone();
        thread::Builder::new()
            .name(name.to_string())
            .spawn(move || watch(fd, &thread_stop, on_signal))
            .map_err(|e| Errno::from_io(&e))?;
        Ok(EventFdWatcher { stop, watched })
    }
}

impl Drop for EventFdWatcher {
    fn drop(&mut self) {
        // The thread exits at its next wakeup; it is not joined, so dropping a watcher while
        // holding a lock its callback takes cannot deadlock (callbacks check that they are
        // still current).
        if let Err(e) = self.stop.write(1) {
            log::warn!("stopping the watcher of eventfd {}: {e}", self.watched);
        }
    }
}

fn watch(fd: IrqEventFd, stop: &EventFd, on_signal: impl Fn()) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds that outlives the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            log::warn!("polling eventfd {}: {}", fd.as_raw_fd(), Errno::last());
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // Consume the counter so that the next signal wakes us again.
            if fd.fd.read().is_ok() {
                on_signal();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_user_eventfd_is_referenced_and_survives_the_users_close() {
        let user = EventFd::new(EFD_NONBLOCK).unwrap();
        let ours = IrqEventFd::from_user_fd(user.as_raw_fd()).unwrap();
        let peer = user.try_clone().unwrap();
        drop(user);
        ours.signal();
        assert_eq!(peer.read().unwrap(), 1);
    }

    #[test]
    fn non_eventfds_and_closed_fds_are_refused_like_eventfd_ctx_fdget() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(
            IrqEventFd::from_user_fd(file.as_raw_fd()).err(),
            Some(Errno::EINVAL)
        );
        assert_eq!(IrqEventFd::from_user_fd(-1).err(), Some(Errno::EBADF));
        assert_eq!(IrqEventFd::from_user_fd(1 << 29).err(), Some(Errno::EBADF));
    }

    #[test]
    fn the_watcher_runs_its_callback_per_signal_until_dropped() {
        let user = EventFd::new(EFD_NONBLOCK).unwrap();
        let (tx, rx) = mpsc::channel();
        let watcher = EventFdWatcher::spawn(
            IrqEventFd::from_user_fd(user.as_raw_fd()).unwrap(),
            "watch-test",
            move || {
                let _ = tx.send(());
            },
        )
        .unwrap();
        user.write(1).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        user.write(1).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(watcher);
        // The thread ends and drops its sender: the channel disconnects.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
