//! Pure allocators shared by the VMM: IOVA interval sets with iommufd's automatic placement rule,
//! the PASID space, MMIO/PIO windows, GSIs and PCI slots. No host access.
//!
//! - [`range`]: [`AddrRange`], an inclusive address range with checked arithmetic.
//! - [`range_map`]: [`RangeMap`], disjoint ranges with values, O(log n) lookups.
//! - [`reserved`]: [`ReservedRanges`], overlapping reservations tagged by owner.
//! - [`iova`]: [`IovaSpace`], the areas / reserved / allowed trees of an iommufd IOAS.
//! - [`pasid`]: [`PasidSpace`], the system-wide PASID space with per-VM owners.
//! - [`address_window`], [`id_pool`], [`system`]: MMIO/PIO windows, GSIs and PCI slots.
#![forbid(unsafe_code)]

pub mod address_window;
mod gap_tree;
pub mod id_pool;
pub mod iova;
pub mod pasid;
pub mod range;
pub mod range_map;
pub mod reserved;
mod run_set;
pub mod system;

pub use address_window::{AddressWindow, AddressWindowError, WindowKind};
pub use id_pool::{IdKind, IdPool, IdPoolError};
pub use iova::{AutoAlignment, IovaError, IovaSpace, Occupant, auto_alignment};
pub use pasid::{PasidError, PasidOwner, PasidSpace};
pub use range::{AddrRange, RangeError};
pub use range_map::{RangeMap, RangeMapError};
pub use reserved::ReservedRanges;
pub use system::{IdLayout, SystemAllocator, SystemAllocatorError, SystemLayout, WindowLayout};
