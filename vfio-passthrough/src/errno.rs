//! [`Errno`]: the error contract of every host seam (defined in the `migration` leaf crate, which
//! needs it for the VFIO migration protocols, and re-exported here).

pub use migration::errno::Errno;
