//! The capability lists: building them in a [`PciConfiguration`] and walking any config space.
//!
//! Standard capabilities live in 0x40..0x100, each starting on a dword with an 8-bit ID and an
//! 8-bit next pointer; the list starts at the capabilities pointer (0x34) and the status register's
//! capabilities-list bit says it exists. Extended capabilities live in 0x100..0x1000 and start with
//! a dword header: 16-bit ID, 4-bit version, 12-bit next offset; the first is always at 0x100.
//! Capabilities are appended in the order they are added.
//!
//! MSI and MSI-X capabilities added with [`PciConfiguration::add_msi`] and
//! [`PciConfiguration::add_msix`] are backed by their models: guest accesses to their bodies go
//! to the model, which keeps the interrupt routing in step. The register file keeps serving their
//! ID and next bytes, so the list stays one structure whatever backs each entry.

use std::collections::HashSet;

use super::bar::BarKind;
use super::configuration::{
    PCI_CAPABILITY_LIST, PCI_CONFIG_SPACE_SIZE, PCI_CONVENTIONAL_CONFIG_SIZE, PCI_STATUS_CAP_LIST,
    PciConfiguration,
};
use super::msi::{MSI_CAP_ID, MsiCapability, MsiModeChange};
use super::msix::{MSIX_CAP_ID, MsixConfig, MsixControlChange};

/// Power management capability ID.
pub const PCI_CAP_ID_PM: u8 = 0x01;
/// Vendor-specific capability ID.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// PCI Express capability ID.
pub const PCI_CAP_ID_EXP: u8 = 0x10;
/// Advanced error reporting extended capability ID.
pub const PCI_EXT_CAP_ID_ERR: u16 = 0x0001;
/// Address translation services extended capability ID.
pub const PCI_EXT_CAP_ID_ATS: u16 = 0x000f;
/// Page request interface extended capability ID.
pub const PCI_EXT_CAP_ID_PRI: u16 = 0x0013;
/// PASID extended capability ID.
pub const PCI_EXT_CAP_ID_PASID: u16 = 0x001b;

/// Where standard capabilities start (right after the type 0 header).
const CAP_START: u16 = 0x40;
/// Where extended capabilities start.
const EXT_CAP_START: u16 = PCI_CONVENTIONAL_CONFIG_SIZE as u16;

/// An error from adding a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciCapabilityError {
    /// The capability does not fit in the space left.
    #[error("no room for capability {id:#x} of {len} bytes at offset {offset:#x}")]
    NoSpace {
        /// The capability ID.
        id: u16,
        /// Its length including the header.
        len: usize,
        /// The first free offset.
        offset: u16,
    },
    /// The function already has this capability and only one is allowed (MSI, MSI-X).
    #[error("capability {id:#x} is already present")]
    Duplicate {
        /// The capability ID.
        id: u8,
    },
    /// The MSI-X table or PBA lies outside a memory BAR of the function.
    #[error("MSI-X {what} at BAR {bir} offset {offset:#x} (+{len:#x}) is not inside a memory BAR")]
    MsixOutsideBar {
        /// "table" or "PBA".
        what: &'static str,
        /// The BAR index named by the capability.
        bir: u8,
        /// Offset in the BAR.
        offset: u32,
        /// Length in bytes.
        len: u64,
    },
}

/// A capability found by walking a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityEntry {
    /// Capability ID (8 bits for standard, 16 for extended capabilities).
    pub id: u16,
    /// Offset of the capability header.
    pub offset: u16,
    /// Version (extended capabilities only; 0 for standard ones).
    pub version: u8,
}

/// Allocation state of the two lists.
#[derive(Debug, Clone)]
pub(super) struct CapabilityLayout {
    next_free: u16,
    last: Option<u16>,
    ext_next_free: u16,
    ext_last: Option<u16>,
}

impl Default for CapabilityLayout {
    fn default() -> Self {
        Self {
            next_free: CAP_START,
            last: None,
            ext_next_free: EXT_CAP_START,
            ext_last: None,
        }
    }
}

/// Walks the standard capability list of a config space read through `read_u8`. Stops at a
/// pointer outside 0x40..0x100 or at a loop, so a hostile or broken list (from a real device)
/// terminates.
pub fn walk_capabilities(mut read_u8: impl FnMut(u16) -> u8) -> Vec<CapabilityEntry> {
    let mut found = Vec::new();
    let status = u16::from_le_bytes([read_u8(0x06), read_u8(0x07)]);
    if status & PCI_STATUS_CAP_LIST == 0 {
        return found;
    }
    let mut seen = HashSet::new();
    let mut offset = u16::from(read_u8(PCI_CAPABILITY_LIST) & !3);
    while (CAP_START..EXT_CAP_START).contains(&offset) && seen.insert(offset) {
        found.push(CapabilityEntry {
            id: u16::from(read_u8(offset)),
            offset,
            version: 0,
        });
        offset = u16::from(read_u8(offset + 1) & !3);
    }
    found
}

/// Walks the extended capability list of a config space read through `read_u32` (dword at a
/// byte offset). An all-zero or all-ones header at 0x100 means there is none. Stops at a pointer
/// outside 0x100..0x1000 or at a loop.
pub fn walk_extended_capabilities(mut read_u32: impl FnMut(u16) -> u32) -> Vec<CapabilityEntry> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut offset = EXT_CAP_START;
    while (EXT_CAP_START..PCI_CONFIG_SPACE_SIZE as u16).contains(&offset) && seen.insert(offset) {
        let header = read_u32(offset);
        if header == 0 || header == u32::MAX {
            break;
        }
        found.push(CapabilityEntry {
            id: header as u16,
            offset,
            version: ((header >> 16) & 0xf) as u8,
        });
        offset = ((header >> 20) & !3) as u16;
    }
    found
}

impl PciConfiguration {
    /// Appends a standard capability: `id`, a next pointer, then `body` (read-only to the guest;
    /// make fields writable with [`set_masks`](Self::set_masks)). Returns its offset.
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> Result<u16, PciCapabilityError> {
        let len = 2 + body.len();
        let offset = self.caps.next_free;
        let end = usize::from(offset) + len.next_multiple_of(4);
        if end > usize::from(EXT_CAP_START) {
            return Err(PciCapabilityError::NoSpace {
                id: u16::from(id),
                len,
                offset,
            });
        }
        self.set_byte(offset, id);
        self.set_byte(offset + 1, 0);
        for (i, b) in body.iter().enumerate() {
            self.set_byte(offset + 2 + i as u16, *b);
        }
        match self.caps.last {
            Some(prev) => self.set_byte(prev + 1, offset as u8),
            None => {
                self.set_byte(PCI_CAPABILITY_LIST, offset as u8);
                self.set_status_bits(PCI_STATUS_CAP_LIST, true);
            }
        }
        self.caps.last = Some(offset);
        self.caps.next_free = end as u16;
        Ok(offset)
    }

    /// Appends an extended capability: a header with `id`, `version` (4 bits) and a next
    /// pointer, then `body` (read-only to the guest). Returns its offset.
    pub fn add_extended_capability(
        &mut self,
        id: u16,
        version: u8,
        body: &[u8],
    ) -> Result<u16, PciCapabilityError> {
        let len = 4 + body.len();
        let offset = self.caps.ext_next_free;
        let end = usize::from(offset) + len.next_multiple_of(4);
        if end > PCI_CONFIG_SPACE_SIZE {
            return Err(PciCapabilityError::NoSpace { id, len, offset });
        }
        let header = u32::from(id) | (u32::from(version & 0xf) << 16);
        self.set_register(usize::from(offset / 4), header);
        for (i, b) in body.iter().enumerate() {
            self.set_byte(offset + 4 + i as u16, *b);
        }
        if let Some(prev) = self.caps.ext_last {
            let idx = usize::from(prev / 4);
            let header = self.raw_reg(idx) & 0x000f_ffff;
            self.set_register(idx, header | (u32::from(offset) << 20));
        }
        self.caps.ext_last = Some(offset);
        self.caps.ext_next_free = end as u16;
        Ok(offset)
    }

    /// The standard capabilities, in list order.
    pub fn capabilities(&self) -> Vec<CapabilityEntry> {
        walk_capabilities(|off| self.byte(off))
    }

    /// The extended capabilities, in list order.
    pub fn extended_capabilities(&self) -> Vec<CapabilityEntry> {
        walk_extended_capabilities(|off| self.raw_reg(usize::from(off / 4)))
    }

    /// The offset of the first standard capability with `id`.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        self.capabilities()
            .into_iter()
            .find(|c| c.id == u16::from(id))
            .map(|c| c.offset)
    }

    /// The offset of the first extended capability with `id`.
    pub fn find_extended_capability(&self, id: u16) -> Option<u16> {
        self.extended_capabilities()
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.offset)
    }

    /// Adds an MSI capability backed by `msi`; guest accesses to it update the model and its
    /// interrupt routing. Returns its offset.
    pub fn add_msi(&mut self, msi: MsiCapability) -> Result<u16, PciCapabilityError> {
        if self.msi.is_some() {
            return Err(PciCapabilityError::Duplicate { id: MSI_CAP_ID });
        }
        let mut body = vec![0u8; msi.len() - 2];
        msi.read(2, &mut body);
        let offset = self.add_capability(MSI_CAP_ID, &body)?;
        self.msi = Some((offset, msi));
        Ok(offset)
    }

    /// Adds an MSI-X capability backed by `msix`. Its table and PBA must lie inside memory BARs
    /// already added. Returns its offset.
    pub fn add_msix(&mut self, msix: MsixConfig) -> Result<u16, PciCapabilityError> {
        if self.msix.is_some() {
            return Err(PciCapabilityError::Duplicate { id: MSIX_CAP_ID });
        }
        let layout = msix.layout();
        let regions = [
            (
                "table",
                layout.table_bir,
                layout.table_offset,
                layout.table_len(),
            ),
            ("PBA", layout.pba_bir, layout.pba_offset, layout.pba_len()),
        ];
        for (what, bir, offset, len) in regions {
            let inside = self.bar(usize::from(bir)).is_some_and(|bar| {
                matches!(bar.kind, BarKind::Memory32 | BarKind::Memory64)
                    && u64::from(offset) + len <= bar.size
            });
            if !inside {
                return Err(PciCapabilityError::MsixOutsideBar {
                    what,
                    bir,
                    offset,
                    len,
                });
            }
        }
        let mut body = vec![0u8; msix.len() - 2];
        msix.read_capability(2, &mut body);
        let offset = self.add_capability(MSIX_CAP_ID, &body)?;
        self.msix = Some((offset, msix));
        Ok(offset)
    }

    /// The MSI model and its offset, if the function has one.
    pub fn msi(&self) -> Option<(u16, &MsiCapability)> {
        self.msi.as_ref().map(|(o, m)| (*o, m))
    }

    /// The MSI model, mutable (to trigger vectors).
    pub fn msi_mut(&mut self) -> Option<&mut MsiCapability> {
        self.msi.as_mut().map(|(_, m)| m)
    }

    /// The MSI-X model and its offset, if the function has one.
    pub fn msix(&self) -> Option<(u16, &MsixConfig)> {
        self.msix.as_ref().map(|(o, m)| (*o, m))
    }

    /// The MSI-X model, mutable (for table and PBA accesses and to trigger vectors).
    pub fn msix_mut(&mut self) -> Option<&mut MsixConfig> {
        self.msix.as_mut().map(|(_, m)| m)
    }

    /// Overlays the bodies of model-backed capabilities on a read at `offset`.
    pub(super) fn read_capability_models(&self, offset: u16, data: &mut [u8]) {
        if let Some((cap, msi)) = &self.msi {
            if let Some((range, at)) = overlap(offset, data.len(), *cap, msi.len()) {
                msi.read(at, &mut data[range]);
            }
        }
        if let Some((cap, msix)) = &self.msix {
            if let Some((range, at)) = overlap(offset, data.len(), *cap, msix.len()) {
                msix.read_capability(at, &mut data[range]);
            }
        }
    }

    /// Forwards the part of a write that hits a model-backed capability body to its model.
    pub(super) fn write_capability_models(
        &mut self,
        offset: u16,
        data: &[u8],
    ) -> (Option<MsiModeChange>, Option<MsixControlChange>) {
        let mut msi_change = None;
        let mut msix_change = None;
        if let Some((cap, msi)) = &mut self.msi {
            if let Some((range, at)) = overlap(offset, data.len(), *cap, msi.len()) {
                msi_change = msi.write(at, &data[range]);
            }
        }
        if let Some((cap, msix)) = &mut self.msix {
            if let Some((range, at)) = overlap(offset, data.len(), *cap, msix.len()) {
                msix_change = msix.write_capability(at, &data[range]);
            }
        }
        (msi_change, msix_change)
    }
}

/// The part of an access `[offset, offset + len)` that hits the body (past the ID and next bytes)
/// of a capability at `cap` of `cap_len` bytes: the range within the access's data, and the
/// offset within the capability it starts at.
fn overlap(
    offset: u16,
    len: usize,
    cap: u16,
    cap_len: usize,
) -> Option<(std::ops::Range<usize>, u16)> {
    let start = usize::from(offset).max(usize::from(cap) + 2);
    let end = (usize::from(offset) + len).min(usize::from(cap) + cap_len);
    (start < end).then(|| {
        (
            start - usize::from(offset)..end - usize::from(offset),
            (start - usize::from(cap)) as u16,
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pci::bar::{BarKind, PciBar};
    use crate::pci::configuration::{PCI_STATUS, PciIdentity};
    use crate::pci::msi::{MsiCapabilityConfig, MsiMode};
    use crate::pci::msix::MsixLayout;
    use crate::test_utils::RecordingInterruptGroup;

    fn config() -> PciConfiguration {
        PciConfiguration::new(&PciIdentity::default())
    }

    fn msi(vectors: u32) -> MsiCapability {
        let cfg = MsiCapabilityConfig {
            max_vectors: vectors,
            address_64bit: true,
            per_vector_mask: true,
        };
        MsiCapability::new(cfg, Arc::new(RecordingInterruptGroup::new(vectors))).unwrap()
    }

    fn msix(table_bir: u8, table_offset: u32, pba_offset: u32) -> MsixConfig {
        let layout = MsixLayout {
            table_size: 16,
            table_bir,
            table_offset,
            pba_bir: table_bir,
            pba_offset,
        };
        MsixConfig::new(layout, Arc::new(RecordingInterruptGroup::new(16))).unwrap()
    }

    fn read32(config: &PciConfiguration, offset: u16) -> u32 {
        let mut data = [0u8; 4];
        config.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn a_function_without_capabilities_has_no_list() {
        let config = config();
        assert_eq!(config.status() & PCI_STATUS_CAP_LIST, 0);
        assert!(config.capabilities().is_empty());
        assert!(config.extended_capabilities().is_empty());
        assert_eq!(read32(&config, 0x100), 0);
    }

    #[test]
    fn standard_capabilities_form_a_well_linked_chain() {
        let mut config = config();
        config
            .add_bar(PciBar {
                index: 0,
                size: 0x4000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        let pm = config
            .add_capability(PCI_CAP_ID_PM, &[0x03, 0x00, 0, 0, 0, 0])
            .unwrap();
        let vndr = config
            .add_capability(PCI_CAP_ID_VNDR, &[5, 0xaa, 0xbb])
            .unwrap();
        let msi_at = config.add_msi(msi(4)).unwrap();
        let msix_at = config.add_msix(msix(0, 0x2000, 0x3000)).unwrap();

        assert_eq!(config.status() & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
        assert_eq!(read32(&config, PCI_CAPABILITY_LIST) & 0xff, u32::from(pm));
        let walked: Vec<(u16, u16)> = config
            .capabilities()
            .iter()
            .map(|c| (c.id, c.offset))
            .collect();
        assert_eq!(
            walked,
            [
                (u16::from(PCI_CAP_ID_PM), 0x40),
                (u16::from(PCI_CAP_ID_VNDR), 0x48),
                (u16::from(MSI_CAP_ID), 0x50),
                (u16::from(MSIX_CAP_ID), 0x68),
            ]
        );
        assert_eq!((pm, vndr, msi_at, msix_at), (0x40, 0x48, 0x50, 0x68));
        // The last capability ends the list.
        assert_eq!(read32(&config, msix_at) & 0xff00, 0);
        // Bodies read back as given, after the ID and the link to the next capability.
        assert_eq!(read32(&config, vndr), 0xaa05_5009);
        assert_eq!(config.find_capability(MSIX_CAP_ID), Some(0x68));
        assert_eq!(config.find_capability(PCI_CAP_ID_EXP), None);
    }

    #[test]
    fn capability_bytes_are_read_only_to_the_guest() {
        let mut config = config();
        let at = config.add_capability(PCI_CAP_ID_VNDR, &[4, 0x12]).unwrap();
        let _ = config.write(at, &0xffff_ffffu32.to_le_bytes());
        let _ = config.write(PCI_CAPABILITY_LIST, &[0x80]);
        let _ = config.write(PCI_STATUS, &0u16.to_le_bytes());
        assert_eq!(read32(&config, at), 0x1204_0009);
        assert_eq!(config.capabilities().len(), 1);
    }

    #[test]
    fn running_out_of_standard_space_fails_and_keeps_the_chain() {
        let mut config = config();
        let body = [0u8; 62]; // 64 bytes with the header: three fill 0x40..0x100.
        for _ in 0..3 {
            config.add_capability(PCI_CAP_ID_VNDR, &body).unwrap();
        }
        assert_eq!(
            config.add_capability(PCI_CAP_ID_PM, &[0; 6]),
            Err(PciCapabilityError::NoSpace {
                id: 1,
                len: 8,
                offset: 0x100
            })
        );
        assert_eq!(config.capabilities().len(), 3);
        assert_eq!(config.find_capability(PCI_CAP_ID_PM), None);
    }

    #[test]
    fn extended_capabilities_chain_from_0x100_with_12_bit_pointers() {
        let mut config = config();
        let ats = config
            .add_extended_capability(PCI_EXT_CAP_ID_ATS, 1, &[0x20, 0, 0, 0])
            .unwrap();
        let pasid = config
            .add_extended_capability(PCI_EXT_CAP_ID_PASID, 1, &[0x06, 0x14, 0, 0])
            .unwrap();
        assert_eq!((ats, pasid), (0x100, 0x108));
        assert_eq!(read32(&config, 0x100), 0x1081_000f);
        assert_eq!(read32(&config, 0x108), 0x0001_001b);
        let walked: Vec<(u16, u16, u8)> = config
            .extended_capabilities()
            .iter()
            .map(|c| (c.id, c.offset, c.version))
            .collect();
        assert_eq!(walked, [(0x000f, 0x100, 1), (0x001b, 0x108, 1)]);
        assert_eq!(
            config.find_extended_capability(PCI_EXT_CAP_ID_PASID),
            Some(0x108)
        );
        assert_eq!(config.find_extended_capability(PCI_EXT_CAP_ID_PRI), None);
    }

    #[test]
    fn extended_space_full_is_reported() {
        let mut config = config();
        let body = vec![0u8; 0xf00 - 4];
        config
            .add_extended_capability(PCI_EXT_CAP_ID_ERR, 2, &body)
            .unwrap();
        assert_eq!(
            config.add_extended_capability(PCI_EXT_CAP_ID_ATS, 1, &[]),
            Err(PciCapabilityError::NoSpace {
                id: PCI_EXT_CAP_ID_ATS,
                len: 4,
                offset: 0x1000
            })
        );
    }

    #[test]
    fn walking_a_looping_list_terminates() {
        let mut space = [0u8; 256];
        space[0x06] = PCI_STATUS_CAP_LIST as u8;
        space[0x34] = 0x40;
        space[0x40] = PCI_CAP_ID_PM;
        space[0x41] = 0x50;
        space[0x50] = PCI_CAP_ID_VNDR;
        space[0x51] = 0x40; // back to the first
        let walked = walk_capabilities(|o| space[usize::from(o)]);
        assert_eq!(walked.len(), 2);
        space[0x51] = 0x20; // into the header: not a capability
        assert_eq!(walk_capabilities(|o| space[usize::from(o)]).len(), 2);
    }

    #[test]
    fn walking_a_looping_extended_list_terminates() {
        // A capability at 0x100 that names itself as next.
        let walked = walk_extended_capabilities(|o| match o {
            0x100 => 0x1001_0001,
            _ => 0,
        });
        assert_eq!(walked.len(), 1);
        // A real device with no extended space reads all-ones there.
        assert!(walk_extended_capabilities(|_| u32::MAX).is_empty());
    }

    #[test]
    fn msi_and_msix_cannot_be_added_twice() {
        let mut config = config();
        config
            .add_bar(PciBar {
                index: 0,
                size: 0x4000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        config.add_msi(msi(1)).unwrap();
        config.add_msix(msix(0, 0, 0x1000)).unwrap();
        assert_eq!(
            config.add_msi(msi(1)),
            Err(PciCapabilityError::Duplicate { id: MSI_CAP_ID })
        );
        assert_eq!(
            config.add_msix(msix(0, 0, 0x1000)),
            Err(PciCapabilityError::Duplicate { id: MSIX_CAP_ID })
        );
    }

    #[test]
    fn msix_table_must_lie_inside_a_memory_bar() {
        let mut config = config();
        config
            .add_bar(PciBar {
                index: 0,
                size: 0x1000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        config
            .add_bar(PciBar {
                index: 1,
                size: 0x100,
                kind: BarKind::Io,
                prefetchable: false,
            })
            .unwrap();
        // 16 entries take 0x100 bytes: at 0xf80 they overflow the 4 KiB BAR.
        assert_eq!(
            config.add_msix(msix(0, 0xf80, 0)),
            Err(PciCapabilityError::MsixOutsideBar {
                what: "table",
                bir: 0,
                offset: 0xf80,
                len: 0x100
            })
        );
        assert!(matches!(
            config.add_msix(msix(1, 0, 0x100)),
            Err(PciCapabilityError::MsixOutsideBar { bir: 1, .. })
        ));
        assert!(matches!(
            config.add_msix(msix(2, 0, 0x800)),
            Err(PciCapabilityError::MsixOutsideBar { bir: 2, .. })
        ));
        assert!(config.capabilities().is_empty());
    }

    #[test]
    fn guest_writes_to_msi_through_config_space_reach_the_model() {
        let mut config = config();
        let at = config.add_msi(msi(4)).unwrap();
        // Address and data first, then enable with 4 vectors (MME = 2).
        let _ = config.write(at + 4, &0xfee0_0000u32.to_le_bytes());
        let _ = config.write(at + 12, &0x4040u16.to_le_bytes());
        let effects = config.write(at + 2, &0x0025u16.to_le_bytes());
        assert_eq!(
            effects.msi.map(|c| c.to),
            Some(MsiMode::Enabled { vectors: 4 })
        );
        // Control reads back enable, MME=2, MMC=2 (4 vectors), 64-bit, per-vector masking.
        assert_eq!(read32(&config, at) & 0xffff_00ff, 0x01a5_0005);
        assert_eq!(read32(&config, at + 4), 0xfee0_0000);
        assert_eq!(config.msi().unwrap().1.message(3).unwrap().data, 0x4043);
        // The ID byte stays read-only.
        let _ = config.write(at, &[0x11]);
        assert_eq!(config.find_capability(MSI_CAP_ID), Some(at));
    }

    #[test]
    fn guest_writes_to_msix_control_report_the_change() {
        let mut config = config();
        config
            .add_bar(PciBar {
                index: 2,
                size: 0x2000,
                kind: BarKind::Memory64,
                prefetchable: false,
            })
            .unwrap();
        let at = config.add_msix(msix(2, 0, 0x1000)).unwrap();
        assert_eq!(read32(&config, at) >> 16, 15);
        assert_eq!(read32(&config, at + 4), 2);
        assert_eq!(read32(&config, at + 8), 0x1002);
        let effects = config.write(at + 3, &[0xc0]);
        let change = effects.msix.unwrap();
        assert!(change.to.enabled && change.to.function_masked);
        assert!(!change.from.enabled);
        assert_eq!(read32(&config, at) >> 16, 0xc00f);
        // A word write that covers the control bits works too; the table size stays read-only.
        let effects = config.write(at + 2, &0x8000u16.to_le_bytes());
        assert!(!effects.msix.unwrap().to.function_masked);
        assert_eq!(read32(&config, at) >> 16, 0x800f);
    }
}
