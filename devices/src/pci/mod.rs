//! PCI as the guest sees it: addresses, configuration space, BARs, capabilities, MSI and MSI-X,
//! the device trait, bus 0 and the two ways to reach configuration space.
//!
//! The VMM builds a [`PciBus`] (with its [`BarRelocation`] sink), puts a [`PciConfigIo`] at
//! 0xCF8 on its PIO bus and a [`PciConfigMmio`] at the ECAM base on its MMIO bus, adds
//! [`PciDevice`]s, allocates their [`PciDevice::bars`] and places them with
//! [`PciDevice::set_bar_address`]. From then on the guest decides where BARs decode, and the sink
//! hears about every change.

pub mod bar;
pub mod bdf;
pub mod bus;
pub mod capability;
pub mod config_io;
pub mod config_mmio;
pub mod configuration;
pub mod device;
pub mod host_bridge;
pub mod msi;
pub mod msix;

pub use bar::{
    BarChange, BarKind, BarRegion, BarReprogram, PCI_NUM_BARS, PCI_ROM_BAR_INDEX, PciBar,
    PciBarError, is_bar_register,
};
pub use bdf::{PciBdf, PciBdfError};
pub use bus::{BarRelocation, PciBus, PciBusError};
pub use capability::{
    CapabilityEntry, PciCapabilityError, walk_capabilities, walk_extended_capabilities,
};
pub use config_io::PciConfigIo;
pub use config_mmio::PciConfigMmio;
pub use configuration::{
    ConfigWriteEffects, PciClassCode, PciConfiguration, PciIdentity, PciInterruptPin,
};
pub use device::{PciBarBusDevice, PciDevice, SharedPciDevice};
pub use host_bridge::PciHostBridge;
pub use msi::{MsiCapability, MsiCapabilityConfig, MsiError, MsiMode, MsiModeChange};
pub use msix::{MsixConfig, MsixControl, MsixControlChange, MsixError, MsixLayout, MsixTableEntry};
