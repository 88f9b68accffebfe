//! [`Errno`]: the errno-like cause carried by every protocol error in this crate.
//!
//! The VFIO migration protocols are specified errno by errno (`ENOMSG` for "no data for now",
//! `EINVAL` for a refused transition, ...). This crate is a leaf, so it cannot use the host seam's
//! errno type; it keeps its own, with the same raw values, so that a backend converts with
//! `Errno::from_raw(e.raw())` and a device model answers exactly what the kernel would.

use std::fmt;

/// A Linux errno value (positive, as in `errno`).
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
    EPERM, ENOENT, EIO, ENXIO, E2BIG, EBADF, EAGAIN, ENOMEM, EFAULT, EBUSY, ENODEV, EINVAL, EFBIG,
    ENOSPC, ESPIPE, ERANGE, ENOTTY, ENOMSG, EBADMSG, EMSGSIZE, EOPNOTSUPP, EOVERFLOW, EPROTO,
);

impl Errno {
    /// Wraps a raw errno value.
    pub const fn from_raw(raw: i32) -> Self {
        Errno(raw)
    }

    /// The raw errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_match_linux() {
        assert_eq!(Errno::ENOMSG.raw(), 42);
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::from_raw(42).name(), "ENOMSG");
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL (22)");
        assert_eq!(Errno::from_raw(4095).name(), "E?");
    }
}
