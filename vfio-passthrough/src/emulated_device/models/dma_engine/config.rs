//! The DMA engine's physical configuration space (`docs/dma-engine.md`, "PCI identity" and
//! "BARs"): identity, BAR 0 (registers) and BAR 2 (device memory, MSI-X table and PBA), and the
//! capabilities MSI (2 vectors, 64-bit, per-vector mask), MSI-X (2 vectors), PCI Express
//! endpoint (FLR capable) and, optionally, PASID (20-bit).

use devices::pci::{
    BarKind, PciBar, PciCapabilityError, PciClassCode, PciConfiguration, PciIdentity,
    PciInterruptPin,
};

use super::devmem::{BAR2_SIZE, DEVMEM_SIZE};

/// Vendor id (QEMU's id for its own emulated devices).
pub const DMA_ENGINE_VENDOR_ID: u16 = 0x1234;
/// Device id.
pub const DMA_ENGINE_DEVICE_ID: u16 = 0x7d10;
/// Size of BAR 0.
pub const BAR0_SIZE: u64 = 0x1000;
/// Offset of the MSI-X table in BAR 2.
pub const MSIX_TABLE_OFFSET: u32 = DEVMEM_SIZE as u32;
/// Offset of the MSI-X PBA in BAR 2.
pub const MSIX_PBA_OFFSET: u32 = MSIX_TABLE_OFFSET + 0x1000;
/// First byte after the MSI-X pages: BAR 2 is mmap-able again from here.
pub const BAR2_TAIL_OFFSET: u64 = MSIX_PBA_OFFSET as u64 + 0x1000;
/// MSI and MSI-X vectors.
pub const VECTORS: u16 = 2;
/// PASID width.
pub const PASID_WIDTH: u16 = 20;

const CAP_ID_MSI: u8 = 0x05;
const CAP_ID_EXP: u8 = 0x10;
const CAP_ID_MSIX: u8 = 0x11;
const EXT_CAP_ID_PASID: u16 = 0x1b;

/// Builds the configuration space; `pasid` adds the PASID extended capability.
pub fn build(pasid: bool) -> Result<PciConfiguration, ConfigBuildError> {
    let mut c = PciConfiguration::new(&PciIdentity {
        vendor_id: DMA_ENGINE_VENDOR_ID,
        device_id: DMA_ENGINE_DEVICE_ID,
        subsystem_vendor_id: DMA_ENGINE_VENDOR_ID,
        subsystem_id: 0,
        revision_id: 1,
        class_code: PciClassCode {
            class: 0x08,
            subclass: 0x80,
            prog_if: 0,
        },
    });
    c.set_interrupt_pin(PciInterruptPin::IntA);
    c.add_bar(PciBar {
        index: 0,
        size: BAR0_SIZE,
        kind: BarKind::Memory32,
        prefetchable: false,
    })
    .map_err(|e| ConfigBuildError::Bar(e.to_string()))?;
    c.add_bar(PciBar {
        index: 2,
        size: BAR2_SIZE,
        kind: BarKind::Memory64,
        prefetchable: true,
    })
    .map_err(|e| ConfigBuildError::Bar(e.to_string()))?;

    // MSI: message control (2 vectors capable: QMASK 1; 64-bit; per-vector mask), address,
    // upper address, data + extended data, mask bits, pending bits.
    let msi_control: u16 = (1 << 1) | 0x0080 | 0x0100;
    let mut msi = vec![0u8; 22];
    msi[0..2].copy_from_slice(&msi_control.to_le_bytes());
    let msi_at = c.add_capability(CAP_ID_MSI, &msi)?;
    // Enable and QSIZE in control; address (dword aligned), upper address, data; mask bits of
    // the two vectors. Pending bits are read-only.
    let (r0, _) = c.masks(usize::from(msi_at / 4));
    c.set_masks(usize::from(msi_at / 4), r0 | (0x0071 << 16), 0);
    c.set_masks(usize::from((msi_at + 4) / 4), 0xffff_fffc, 0);
    c.set_masks(usize::from((msi_at + 8) / 4), 0xffff_ffff, 0);
    c.set_masks(usize::from((msi_at + 0x0c) / 4), 0x0000_ffff, 0);
    c.set_masks(usize::from((msi_at + 0x10) / 4), 0x0000_0003, 0);

    // MSI-X: table size - 1, table and PBA in BAR 2.
    let mut msix = vec![0u8; 10];
    msix[0..2].copy_from_slice(&(VECTORS - 1).to_le_bytes());
    msix[2..6].copy_from_slice(&(MSIX_TABLE_OFFSET | 2).to_le_bytes());
    msix[6..10].copy_from_slice(&(MSIX_PBA_OFFSET | 2).to_le_bytes());
    let msix_at = c.add_capability(CAP_ID_MSIX, &msix)?;
    let (r0, _) = c.masks(usize::from(msix_at / 4));
    c.set_masks(usize::from(msix_at / 4), r0 | (0xc000 << 16), 0);

    // PCI Express v2 endpoint: FLR capable, 128-byte payload, a 2.5 GT/s x1 link.
    let mut exp = vec![0u8; 0x32];
    exp[0..2].copy_from_slice(&0x0002u16.to_le_bytes());
    exp[2..6].copy_from_slice(&0x1000_0000u32.to_le_bytes());
    exp[10..14].copy_from_slice(&0x0000_0011u32.to_le_bytes());
    exp[16..18].copy_from_slice(&0x0011u16.to_le_bytes());
    let exp_at = c.add_capability(CAP_ID_EXP, &exp)?;
    // Device control (all but phantom functions and the FLR trigger).
    c.set_masks(usize::from((exp_at + 8) / 4), 0x0000_7dff, 0);

    if pasid {
        // PASID capability: max width in bits 8..12; control: enable.
        let mut body = [0u8; 4];
        body[0..2].copy_from_slice(&(PASID_WIDTH << 8).to_le_bytes());
        let at = c.add_extended_capability(EXT_CAP_ID_PASID, 1, &body)?;
        c.set_masks(usize::from((at + 4) / 4), 0x0001 << 16, 0);
    }
    Ok(c)
}

/// The configuration space could not be built (a bug in the constants above).
#[derive(Debug, thiserror::Error)]
pub enum ConfigBuildError {
    /// A BAR.
    #[error("DMA engine BAR: {0}")]
    Bar(String),
    /// A capability.
    #[error("DMA engine capability: {0}")]
    Capability(#[from] PciCapabilityError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_laid_out_as_documented() {
        let c = build(true).unwrap();
        let ids: Vec<u16> = c.capabilities().iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![0x05, 0x11, 0x10]);
        let ext: Vec<u16> = c.extended_capabilities().iter().map(|e| e.id).collect();
        assert_eq!(ext, vec![0x1b]);
        assert!(build(false).unwrap().extended_capabilities().is_empty());
        assert_eq!(c.bar(2).unwrap().size, 2 << 20);
    }
}
