//! PCI as the guest sees it: addresses, configuration space, BARs, capabilities, MSI and MSI-X.

pub mod bar;
pub mod bdf;
pub mod capability;
pub mod configuration;
pub mod msi;
pub mod msix;

pub use bar::{
    BarChange, BarKind, BarRegion, BarReprogram, PCI_NUM_BARS, PCI_ROM_BAR_INDEX, PciBar,
    PciBarError, is_bar_register,
};
pub use bdf::{PciBdf, PciBdfError};
pub use capability::{
    CapabilityEntry, PciCapabilityError, walk_capabilities, walk_extended_capabilities,
};
pub use configuration::{
    ConfigWriteEffects, PciClassCode, PciConfiguration, PciIdentity, PciInterruptPin,
};
pub use msi::{MsiCapability, MsiCapabilityConfig, MsiError, MsiMode, MsiModeChange};
pub use msix::{MsixConfig, MsixControl, MsixControlChange, MsixError, MsixLayout, MsixTableEntry};
