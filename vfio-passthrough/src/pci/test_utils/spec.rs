//! The shape of a [`TestVfioDevice`](super::TestVfioDevice): identity, BARs, capabilities, IRQs,
//! and the config space built from them with [`PciConfiguration`].

use devices::pci::{
    BarKind, MsiCapabilityConfig, MsixLayout, PCI_ROM_BAR_INDEX, PciBar, PciClassCode,
    PciConfiguration, PciIdentity, PciInterruptPin,
};

/// Power management capability ID.
pub const CAP_PM: u8 = 0x01;
/// VPD capability ID (hidden from guests).
pub const CAP_VPD: u8 = 0x03;
/// MSI capability ID.
pub const CAP_MSI: u8 = 0x05;
/// PCI-X capability ID (hidden from guests).
pub const CAP_PCIX: u8 = 0x07;
/// Vendor-specific capability ID.
pub const CAP_VNDR: u8 = 0x09;
/// PCI Express capability ID.
pub const CAP_EXP: u8 = 0x10;
/// MSI-X capability ID.
pub const CAP_MSIX: u8 = 0x11;
/// Advanced features capability ID (hidden from guests).
pub const CAP_AF: u8 = 0x13;
/// AER extended capability ID (hidden from guests).
pub const EXT_CAP_AER: u16 = 0x0001;
/// ATS extended capability ID (hidden from guests).
pub const EXT_CAP_ATS: u16 = 0x000f;
/// PASID extended capability ID.
pub const EXT_CAP_PASID: u16 = 0x001b;

/// PCIe device capabilities: function level reset supported.
pub const EXP_DEVCAP_FLR: u32 = 1 << 28;
/// The PCIe capability's length (version 2 endpoint).
pub const EXP_LEN: usize = 0x34;

/// How a BAR's region may be mmapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestMmap {
    /// Trapped only (no `MMAP` flag).
    None,
    /// `MMAP` without a sparse capability: the whole region.
    Whole,
    /// `MMAP` with these sparse `(offset, size)` areas.
    Sparse(Vec<(u64, u64)>),
}

/// One BAR of the test device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBar {
    /// The BAR as the device implements it.
    pub bar: PciBar,
    /// Where its BAR register points on the host (type bits are added).
    pub host_address: u64,
    /// How its region may be mmapped.
    pub mmap: TestMmap,
    /// The region carries `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
    pub msix_mappable: bool,
}

/// The shape of a test device. [`Default`] is a device like the emulated DMA engine
/// (`docs/dma-engine.md`), plus an I/O BAR, a ROM, and capabilities a guest must not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDeviceSpec {
    /// Identification.
    pub identity: PciIdentity,
    /// BARs 0..=5 and the ROM (index 6).
    pub bars: Vec<TestBar>,
    /// The device has INTx (pin A).
    pub intx: bool,
    /// MSI capability, if any.
    pub msi: Option<MsiCapabilityConfig>,
    /// MSI-X capability, if any.
    pub msix: Option<MsixLayout>,
    /// Standard capabilities a guest must not see (VPD first, AF in the middle, PCI-X last).
    pub hidden_caps: bool,
    /// PCI Express, power management and vendor-specific capabilities.
    pub pcie: bool,
    /// Extended capabilities: AER (hidden) at 0x100, PASID, ATS (hidden).
    pub extended: bool,
    /// Device-specific regions (index 9 and up): `(type, subtype, size)`.
    pub device_regions: Vec<(u32, u32, u64)>,
}

impl Default for TestDeviceSpec {
    fn default() -> Self {
        let bar = |index, size, kind, prefetchable, host_address, mmap| TestBar {
            bar: PciBar {
                index,
                size,
                kind,
                prefetchable,
            },
            host_address,
            mmap,
            msix_mappable: false,
        };
        Self {
            identity: PciIdentity {
                vendor_id: 0x1234,
                device_id: 0x7d10,
                subsystem_vendor_id: 0x1af4,
                subsystem_id: 0x1100,
                revision_id: 1,
                class_code: PciClassCode {
                    class: 0x08,
                    subclass: 0x80,
                    prog_if: 0x00,
                },
            },
            bars: vec![
                bar(
                    0,
                    0x1000,
                    BarKind::Memory32,
                    false,
                    0xfe00_0000,
                    TestMmap::None,
                ),
                bar(
                    2,
                    0x20_0000,
                    BarKind::Memory64,
                    true,
                    0x38_0000_0000,
                    TestMmap::Sparse(vec![(0, 0x10_0000), (0x10_2000, 0xf_e000)]),
                ),
                bar(4, 0x100, BarKind::Io, false, 0x3000, TestMmap::None),
                bar(
                    PCI_ROM_BAR_INDEX,
                    0x1_0000,
                    BarKind::Rom,
                    false,
                    0xfe10_0000,
                    TestMmap::None,
                ),
            ],
            intx: true,
            msi: Some(MsiCapabilityConfig {
                max_vectors: 2,
                address_64bit: true,
                per_vector_mask: true,
            }),
            msix: Some(MsixLayout {
                table_size: 2,
                table_bir: 2,
                table_offset: 0x10_0000,
                pba_bir: 2,
                pba_offset: 0x10_1000,
            }),
            hidden_caps: true,
            pcie: true,
            extended: true,
            device_regions: vec![(3, 1, 0x1000)],
        }
    }
}

impl TestDeviceSpec {
    /// The BAR at `index`.
    pub fn bar(&self, index: usize) -> Option<&TestBar> {
        self.bars.iter().find(|b| b.bar.index == index)
    }

    /// Builds the device's config space. Capabilities are laid out in a fixed order from 0x40:
    /// VPD*, PM, MSI, PCIe, AF*, MSI-X, vendor, PCI-X* (starred ones with `hidden_caps`);
    /// extended from 0x100: AER, PASID, ATS.
    pub fn build_config(&self) -> PciConfiguration {
        let mut c = PciConfiguration::new(&self.identity);
        for b in &self.bars {
            c.add_bar(b.bar).expect("test BAR layout is valid");
            c.set_bar_address(b.bar.index, b.host_address)
                .expect("test BAR address fits");
        }
        if self.intx {
            c.set_interrupt_pin(PciInterruptPin::IntA);
        }
        if self.hidden_caps {
            c.add_capability(CAP_VPD, &[0; 6]).expect("room for VPD");
        }
        if self.pcie {
            // PMC: version 3, PME from D0 and D3hot; PMCSR: D0.
            let pm = c
                .add_capability(CAP_PM, &[0x03, 0x48, 0x08, 0x00, 0, 0])
                .expect("room for PM");
            let reg = usize::from(pm / 4) + 1;
            c.set_masks(reg, 0x0000_8103, 0x0000_8000);
        }
        if let Some(msi) = self.msi {
            let control = ((msi.max_vectors.trailing_zeros() as u16) << 1)
                | if msi.address_64bit { 0x80 } else { 0 }
                | if msi.per_vector_mask { 0x100 } else { 0 };
            let mut body = vec![0u8; msi.len() - 2];
            body[..2].copy_from_slice(&control.to_le_bytes());
            c.add_capability(CAP_MSI, &body).expect("room for MSI");
        }
        if self.pcie {
            let mut body = vec![0u8; EXP_LEN - 2];
            body[0..2].copy_from_slice(&0x0002u16.to_le_bytes()); // v2 endpoint
            body[2..6].copy_from_slice(&(EXP_DEVCAP_FLR | 0x8000).to_le_bytes());
            body[6..8].copy_from_slice(&0x2810u16.to_le_bytes()); // RO, MRRS 512
            let at = c.add_capability(CAP_EXP, &body).expect("room for PCIe");
            c.set_masks(usize::from(at + 8) / 4, 0x0000_ffff, 0x000f_0000);
            c.set_masks(usize::from(at + 0x28) / 4, 0x0000_ffff, 0);
        }
        if self.hidden_caps {
            c.add_capability(CAP_AF, &[0x03, 0, 0, 0])
                .expect("room for AF");
        }
        if let Some(m) = self.msix {
            let mut body = [0u8; 10];
            body[0..2].copy_from_slice(&(m.table_size - 1).to_le_bytes());
            body[2..6].copy_from_slice(&(m.table_offset | u32::from(m.table_bir)).to_le_bytes());
            body[6..10].copy_from_slice(&(m.pba_offset | u32::from(m.pba_bir)).to_le_bytes());
            c.add_capability(CAP_MSIX, &body).expect("room for MSI-X");
        }
        if self.pcie {
            let at = c
                .add_capability(CAP_VNDR, &[8, 0x5a, 0, 0, 0, 0])
                .expect("room for the vendor capability");
            c.set_masks(usize::from(at + 4) / 4, 0xffff_ffff, 0);
        }
        if self.hidden_caps {
            c.add_capability(CAP_PCIX, &[0; 6]).expect("room for PCI-X");
        }
        if self.extended {
            c.add_extended_capability(EXT_CAP_AER, 2, &[0; 0x44])
                .expect("room for AER");
            let pasid = c
                .add_extended_capability(EXT_CAP_PASID, 1, &[0x06, 0x14, 0, 0])
                .expect("room for PASID");
            c.set_masks(usize::from(pasid + 4) / 4, 0x0007_0000, 0);
            c.add_extended_capability(EXT_CAP_ATS, 1, &[0x20, 0, 0, 0])
                .expect("room for ATS");
        }
        c
    }
}
