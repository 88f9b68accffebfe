//! [`Errno`]: a Linux errno value, the error contract of the host seams and of the VFIO
//! migration protocols.
//!
//! The host seams (in `vfio-passthrough`) mirror the kernel uAPI call for call, and the kernel
//! answers with an errno; the VFIO migration protocols are specified errno by errno too (`ENOMSG`
//! for "no data for now", `EINVAL` for a refused transition). Keeping that number, rather than a
//! richer enum, is what lets one conformance suite compare a kernel backend with the emulated one
//! result for result. Callers above wrap it in errors that say what failed and on what.
//!
//! It lives in this leaf crate because it is the lowest one that needs it; `vfio-passthrough`
//! re-exports it.

use std::fmt;
use std::io;

/// A Linux errno value, as returned by an ioctl or by the emulated host in its place.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(i32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Errno = Errno(libc::$name);
            )*

            /// The symbolic name (`"EINVAL"`), or `"E?"` for a value this table lacks.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $(libc::$name => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errnos!(
    EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, EBADF, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY,
    EEXIST, ENODEV, EINVAL, EFBIG, ENOSPC, ESPIPE, ERANGE, ENOTTY, EDQUOT, ENOMSG, EBADMSG,
    EMSGSIZE, EOPNOTSUPP, EADDRINUSE, EOVERFLOW, EBADFD, EBADE, ENOSYS, EPROTO,
);

impl Errno {
    /// Wraps a raw errno value (positive, as in `errno`).
    pub const fn from_raw(raw: i32) -> Self {
        Errno(raw)
    }

    /// The raw errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The calling thread's `errno`, after a failed libc call.
    pub fn last() -> Self {
        Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// The errno carried by an I/O error (`EIO` if it carries none).
    pub fn from_io(err: &io::Error) -> Self {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "E?" => write!(f, "Errno({})", self.0),
            name => f.write_str(name),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.0).to_string();
        // io::Error renders as "Invalid argument (os error 22)"; keep only the text.
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{:?} ({text})", self)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> Self {
        io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_errno_and_its_meaning() {
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (Invalid argument)");
        assert_eq!(format!("{:?}", Errno::EADDRINUSE), "EADDRINUSE");
    }

    #[test]
    fn unknown_values_round_trip() {
        let e = Errno::from_raw(4095);
        assert_eq!(e.raw(), 4095);
        assert_eq!(format!("{e:?}"), "Errno(4095)");
        assert_eq!(io::Error::from(e).raw_os_error(), Some(4095));
    }
}
