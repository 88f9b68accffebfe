//! The user side of VFIO migration v2: saving and resuming devices through consumer-side
//! traits ([`MigrationDevice`], [`DataStream`]) that the passthrough device implements over its
//! VFIO seam, for kernel and emulated devices alike. No I/O of its own: saved bytes go to an
//! [`std::io::Write`] sink and come from an [`std::io::Read`] source.
//!
//! One device, live: [`transition`] to PRE_COPY (it returns the stream), [`save_precopy`] as
//! often as the migration driver likes, then [`save_stop_copy`] with that stream. On the
//! destination, [`resume`]. Several devices: [`save_all`] and [`restore_all`] (or their halves),
//! which keep the P2P ordering.

mod error;
mod multi;
mod resume;
mod save;
mod traits;
mod transition;

pub use error::{Recovery, V2UserError};
pub use multi::{
    MultiDeviceError, quiesce_all, restore_all, resume_all, save_all, start_all, stop_copy_all,
};
pub use resume::resume;
pub use save::{PrecopyPolicy, PrecopyReport, save_precopy, save_stop_copy};
pub use traits::{DataStream, MigrationDevice, ReadOutcome};
pub use transition::{recover, transition};

#[cfg(test)]
mod tests;
