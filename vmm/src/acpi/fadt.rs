//! The FADT ("FACP"): a full (not hardware-reduced) ACPI platform whose fixed hardware is the
//! PM1a event and control blocks of the VMM's power-off device, with the SCI on IRQ 9.

use acpi_tables::fadt::{FADT, FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use vm_memory::GuestAddress;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{
    ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_SCI_IRQ,
};

/// IA-PC boot architecture flags (FADT offset 109).
mod boot_arch {
    /// Legacy (ISA) devices exist: COM1.
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// No VGA: the guest must not probe for it.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    /// No CMOS RTC: the machine has none, so the guest must not touch ports 0x70/0x71.
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
}

/// The FADT pointing at the DSDT and FACS.
pub(super) fn fadt(dsdt: GuestAddress, facs: GuestAddress) -> FADT {
    let mut builder = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt.0)
        .firmware_ctrl_64(facs.0)
        .preferred_pm_profile(PmProfile::EnterpriseServer)
        .flag(Flags::Wbinvd)
        // Power and sleep buttons, if any, are control-method devices, not fixed hardware.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    // The builder has no setters for the fixed-hardware blocks; its fields are public.
    // SMI_CMD stays 0: the platform is always in ACPI mode, nothing to switch.
    builder.sci_int = (ACPI_SCI_IRQ as u16).into();
    builder.pm1a_evt_blk = u32::from(ACPI_PM1A_EVT_PORT).into();
    builder.pm1a_cnt_blk = u32::from(ACPI_PM1A_CNT_PORT).into();
    builder.pm1_evt_len = ACPI_PM1_EVT_LEN;
    builder.pm1_cnt_len = ACPI_PM1_CNT_LEN;
    builder.x_pm1a_evt_blk = io_register(ACPI_PM1A_EVT_PORT, ACPI_PM1_EVT_LEN);
    builder.x_pm1a_cnt_blk = io_register(ACPI_PM1A_CNT_PORT, ACPI_PM1_CNT_LEN);
    builder.iapc_boot_arch =
        (boot_arch::LEGACY_DEVICES | boot_arch::VGA_NOT_PRESENT | boot_arch::CMOS_RTC_NOT_PRESENT)
            .into();
    builder.finalize()
}

/// A generic address of `len` bytes of port I/O, accessed in 16-bit words as PM1 registers are.
fn io_register(port: u16, len: u8) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        len * 8,
        0,
        AccessSize::WordAccess,
        u64::from(port),
    )
}
