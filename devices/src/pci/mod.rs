//! PCI as the guest sees it.

pub mod bdf;

pub use bdf::{PciBdf, PciBdfError};
