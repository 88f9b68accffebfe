//! The migration stream, VFIO device-state protocols (v2 state machine, v1 region), dirty-page
//! sources and the live-migration driver. A leaf crate: devices plug in through traits.
#![forbid(unsafe_code)]

pub mod device_stream;
pub mod engine;
pub mod errno;
pub mod user_v1;
pub mod user_v2;
pub mod v1_region;
pub mod vfio_v1;
pub mod vfio_v2;

pub use errno::Errno;

#[cfg(test)]
mod testing;
