//! The user side of the deprecated v1 migration region: the saving and resuming loops of
//! `kernel-uapi.md` 2.9 over a consumer-side [`V1RegionAccess`], which also tells which parts of
//! the region are mmap-able. A data buffer is moved extent by extent: the parts inside an
//! mmap-able extent through the mapping (never past the extent's end), the rest through the
//! trapped path. What the device reports (`data_offset`, `data_size`, `pending_bytes`, the
//! extents) is checked before it is used.
//!
//! A live migration: [`set_v1_state`] to pre-copy, [`v1_save_precopy`] passes, then
//! [`v1_save_stop_copy`] into the same sink; on the destination, [`v1_resume`].

mod access;
mod data;
mod error;
mod resume;
mod save;
mod state;

pub use access::{Piece, V1RegionAccess, split_by_extents};
pub use error::{V1Recovery, V1UserError};
pub use resume::{V1ResumeReport, v1_resume};
pub use save::{V1SaveReport, v1_save_precopy, v1_save_stop_copy};
pub use state::{recover_v1, set_v1_state, v1_state};

#[cfg(test)]
mod tests;
