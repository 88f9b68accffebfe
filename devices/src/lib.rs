//! Guest-visible device plumbing: buses, PCI configuration space, MSI and MSI-X, interrupt
//! routing. No host access.
#![forbid(unsafe_code)]

pub mod bus;
pub mod interrupt;
pub mod pci;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
