//! MSI-X: the capability, the vector table and the pending bit array, and the routing they imply.
//!
//! The capability (12 bytes) holds the table size, where the table and PBA live (BAR index and
//! offset), and the enable and function-mask bits. The table lives in a BAR: 16 bytes per vector
//! (address low, address high, data, vector control whose bit 0 masks the vector). The PBA, also
//! in a BAR, has one read-only bit per vector.
//!
//! A vector is masked while MSI-X is disabled, the function is masked, or its own mask bit is
//! set; after every write the model calls [`InterruptSourceGroup::update`] for each vector whose
//! message or masked state changed. An emulated device raises vectors through
//! [`MsixConfig::trigger`]: a masked vector sets its pending bit instead, and unmasking it later
//! delivers it and clears the bit.
//!
//! # Access rules
//!
//! Table and PBA accesses are aligned dwords or qwords (the PCI spec leaves anything else
//! undefined). Here other reads return all-ones and other writes are dropped. A qword covers two
//! adjacent fields of one entry. The PBA is read-only: there is no write path, callers drop guest
//! writes to it.

use std::sync::Arc;

use crate::interrupt::{InterruptError, InterruptSourceGroup, MsiMessage};

/// MSI-X capability ID.
pub const MSIX_CAP_ID: u8 = 0x11;
/// Size of one MSI-X table entry.
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// Length of the MSI-X capability.
pub const MSIX_CAPABILITY_LEN: usize = 12;
/// Most vectors an MSI-X table can have.
pub const MSIX_MAX_VECTORS: u16 = 2048;

const CTRL_TABLE_SIZE_MASK: u16 = 0x07ff;
const CTRL_FUNCTION_MASK: u16 = 0x4000;
const CTRL_ENABLE: u16 = 0x8000;
const BIR_MASK: u32 = 0x7;
const ENTRY_CTRL_MASKED: u32 = 0x1;

/// Where an MSI-X table and PBA are and how many vectors the table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    /// Number of vectors, 1 to 2048.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bir: u8,
    /// Offset of the table in its BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the PBA.
    pub pba_bir: u8,
    /// Offset of the PBA in its BAR (8-byte aligned).
    pub pba_offset: u32,
}

impl MsixLayout {
    /// The layout described by a capability's message control, table and PBA registers (e.g.
    /// read from a host device).
    pub fn from_capability(control: u16, table: u32, pba: u32) -> Self {
        Self {
            table_size: (control & CTRL_TABLE_SIZE_MASK) + 1,
            table_bir: (table & BIR_MASK) as u8,
            table_offset: table & !BIR_MASK,
            pba_bir: (pba & BIR_MASK) as u8,
            pba_offset: pba & !BIR_MASK,
        }
    }

    /// Length of the table in bytes.
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * MSIX_TABLE_ENTRY_SIZE
    }

    /// Length of the PBA in bytes (whole qwords).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }
}

/// The function-level MSI-X control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsixControl {
    /// MSI-X is enabled.
    pub enabled: bool,
    /// All vectors are masked.
    pub function_masked: bool,
}

/// A change of [`MsixControl`] made by a guest write. A passthrough device mirrors the enable
/// bit on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixControlChange {
    /// The control bits before the write.
    pub from: MsixControl,
    /// The control bits after the write.
    pub to: MsixControl,
}

/// One MSI-X table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixTableEntry {
    /// Message address, low dword.
    pub address_lo: u32,
    /// Message address, high dword.
    pub address_hi: u32,
    /// Message data.
    pub data: u32,
    /// Vector control (bit 0: masked).
    pub vector_control: u32,
}

impl Default for MsixTableEntry {
    /// Entries come out of reset masked.
    fn default() -> Self {
        Self {
            address_lo: 0,
            address_hi: 0,
            data: 0,
            vector_control: ENTRY_CTRL_MASKED,
        }
    }
}

impl MsixTableEntry {
    /// True if the entry's own mask bit is set.
    pub fn masked(&self) -> bool {
        self.vector_control & ENTRY_CTRL_MASKED != 0
    }

    /// The message the entry sends.
    pub fn message(&self) -> MsiMessage {
        MsiMessage {
            address: (u64::from(self.address_hi) << 32) | u64::from(self.address_lo),
            data: self.data,
        }
    }

    fn dword(&self, i: usize) -> u32 {
        [
            self.address_lo,
            self.address_hi,
            self.data,
            self.vector_control,
        ][i]
    }

    fn set_dword(&mut self, i: usize, value: u32) {
        match i {
            0 => self.address_lo = value,
            1 => self.address_hi = value,
            2 => self.data = value,
            // Only the mask bit of vector control is defined; the rest reads as 0.
            _ => self.vector_control = value & ENTRY_CTRL_MASKED,
        }
    }
}

/// An error from building an MSI-X model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsixError {
    /// The table size is 0 or above 2048.
    #[error("MSI-X table size {0} is not between 1 and 2048")]
    InvalidTableSize(u16),
    /// A BAR indicator is not 0..=5.
    #[error("MSI-X {what} BAR indicator {bir} is not a BAR index")]
    InvalidBir {
        /// "table" or "PBA".
        what: &'static str,
        /// The indicator.
        bir: u8,
    },
    /// An offset is not 8-byte aligned.
    #[error("MSI-X {what} offset {offset:#x} is not 8-byte aligned")]
    MisalignedOffset {
        /// "table" or "PBA".
        what: &'static str,
        /// The offset.
        offset: u32,
    },
    /// The table and PBA overlap in the same BAR.
    #[error("MSI-X table and PBA overlap in BAR {bir}")]
    Overlap {
        /// The BAR holding both.
        bir: u8,
    },
    /// The interrupt group has fewer vectors than the table.
    #[error("MSI-X table has {needed} vectors but its interrupt group has {group}")]
    GroupTooSmall {
        /// Vectors in the table.
        needed: u32,
        /// Vectors in the group.
        group: u32,
    },
}

/// An MSI-X capability with its table and PBA.
#[derive(Debug)]
pub struct MsixConfig {
    layout: MsixLayout,
    next: u8,
    control: MsixControl,
    table: Vec<MsixTableEntry>,
    pba: Vec<u64>,
    group: Arc<dyn InterruptSourceGroup>,
    /// What each vector of the group was last routed to.
    routed: Vec<(MsiMessage, bool)>,
}

impl MsixConfig {
    /// Creates a disabled MSI-X function with every entry masked, routed through `group`
    /// (created all masked, as [`InterruptManager`](crate::interrupt::InterruptManager) does).
    pub fn new(
        layout: MsixLayout,
        group: Arc<dyn InterruptSourceGroup>,
    ) -> Result<Self, MsixError> {
        if layout.table_size == 0 || layout.table_size > MSIX_MAX_VECTORS {
            return Err(MsixError::InvalidTableSize(layout.table_size));
        }
        for (what, bir, offset) in [
            ("table", layout.table_bir, layout.table_offset),
            ("PBA", layout.pba_bir, layout.pba_offset),
        ] {
            if bir > 5 {
                return Err(MsixError::InvalidBir { what, bir });
            }
            if offset % 8 != 0 {
                return Err(MsixError::MisalignedOffset { what, offset });
            }
        }
        let (t, p) = (u64::from(layout.table_offset), u64::from(layout.pba_offset));
        if layout.table_bir == layout.pba_bir
            && t < p + layout.pba_len()
            && p < t + layout.table_len()
        {
            return Err(MsixError::Overlap {
                bir: layout.table_bir,
            });
        }
        let n = u32::from(layout.table_size);
        if group.len() < n {
            return Err(MsixError::GroupTooSmall {
                needed: n,
                group: group.len(),
            });
        }
        Ok(Self {
            layout,
            next: 0,
            control: MsixControl::default(),
            table: vec![MsixTableEntry::default(); n as usize],
            pba: vec![0; layout.pba_len() as usize / 8],
            group,
            routed: vec![(MsiMessage::default(), true); n as usize],
        })
    }

    /// The table and PBA layout.
    pub fn layout(&self) -> MsixLayout {
        self.layout
    }

    /// The capability's length in bytes.
    pub fn len(&self) -> usize {
        MSIX_CAPABILITY_LEN
    }

    /// Always false: a capability has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Sets the next-capability pointer the model reports at offset 1 (when it serves the header
    /// bytes itself).
    pub fn set_next(&mut self, next: u8) {
        self.next = next;
    }

    /// The enable and function-mask bits.
    pub fn control(&self) -> MsixControl {
        self.control
    }

    /// Table entry `index`.
    pub fn entry(&self, index: u16) -> Option<MsixTableEntry> {
        self.table.get(usize::from(index)).copied()
    }

    /// True if vector `index` cannot deliver now (MSI-X disabled, function masked, or the
    /// vector masked).
    pub fn is_masked(&self, index: u16) -> bool {
        self.desired_route(usize::from(index)).1
    }

    /// True if vector `index` is pending: raised while masked, by [`trigger`](Self::trigger) or
    /// through the vector's eventfd (see [`InterruptSourceGroup::pending`]).
    pub fn is_pending(&self, index: u16) -> bool {
        let i = usize::from(index);
        i < self.table.len() && self.pending_word(i / 64) & (1 << (i % 64)) != 0
    }

    /// PBA qword `word`: the bits [`trigger`](Self::trigger) set, and those of masked vectors
    /// whose eventfd was written (a passthrough device's raises never pass through the model).
    fn pending_word(&self, word: usize) -> u64 {
        let mut bits = self.pba.get(word).copied().unwrap_or(0);
        let first = word * 64;
        for i in first..self.table.len().min(first + 64) {
            if self.routed[i].1 && self.group.pending(i as u32) {
                bits |= 1 << (i - first);
            }
        }
        bits
    }

    /// The interrupt group the vectors are routed through.
    pub fn group(&self) -> &Arc<dyn InterruptSourceGroup> {
        &self.group
    }

    /// Reads capability bytes at `offset` (from the capability's start); bytes past its end read
    /// as 0.
    pub fn read_capability(&self, offset: u16, data: &mut [u8]) {
        let bytes = self.capability_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(usize::from(offset) + i).copied().unwrap_or(0);
        }
    }

    /// Applies a guest write to the capability at `offset` (from its start). Only the enable
    /// and function-mask bits are writable. Returns the change, if either bit changed.
    pub fn write_capability(&mut self, offset: u16, data: &[u8]) -> Option<MsixControlChange> {
        // Only byte 3 (the high byte of message control) holds writable bits.
        let i = 3usize.checked_sub(usize::from(offset))?;
        let byte = *data.get(i)?;
        let before = self.control;
        let high = u16::from(byte) << 8;
        self.control = MsixControl {
            enabled: high & CTRL_ENABLE != 0,
            function_masked: high & CTRL_FUNCTION_MASK != 0,
        };
        self.sync_routes(0..self.table.len());
        (before != self.control).then_some(MsixControlChange {
            from: before,
            to: self.control,
        })
    }

    /// Reads the table at `offset` (from the table's start).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        match self.table_slot(offset, data.len()) {
            Some((entry, dword)) => {
                let e = &self.table[entry];
                let value = u64::from(e.dword(dword))
                    | u64::from(if data.len() == 8 {
                        e.dword(dword + 1)
                    } else {
                        0
                    }) << 32;
                data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
            }
            None => {
                log::debug!(
                    "MSI-X table read of {} bytes at {offset:#x} ignored",
                    data.len()
                );
                data.fill(0xff);
            }
        }
    }

    /// Applies a guest write to the table at `offset` (from the table's start) and re-routes
    /// the vector.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let Some((entry, dword)) = self.table_slot(offset, data.len()) else {
            log::debug!(
                "MSI-X table write of {} bytes at {offset:#x} dropped",
                data.len()
            );
            return;
        };
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        self.table[entry].set_dword(dword, value as u32);
        if data.len() == 8 {
            self.table[entry].set_dword(dword + 1, (value >> 32) as u32);
        }
        self.sync_routes(entry..entry + 1);
    }

    /// Reads the PBA at `offset` (from the PBA's start).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let ok = matches!(data.len(), 4 | 8)
            && offset % data.len() as u64 == 0
            && offset + data.len() as u64 <= self.layout.pba_len();
        if !ok {
            log::debug!(
                "MSI-X PBA read of {} bytes at {offset:#x} ignored",
                data.len()
            );
            data.fill(0xff);
            return;
        }
        let qword = self.pending_word((offset / 8) as usize).to_le_bytes();
        let start = (offset % 8) as usize;
        data.copy_from_slice(&qword[start..start + data.len()]);
    }

    /// Raises vector `index` for an emulated device. A masked vector sets its pending bit and is
    /// delivered when unmasked; with MSI-X disabled nothing is sent.
    pub fn trigger(&mut self, index: u16) -> Result<(), InterruptError> {
        let i = usize::from(index);
        if i >= self.table.len() {
            return Err(InterruptError::InvalidVector {
                index: u32::from(index),
                len: self.table.len() as u32,
            });
        }
        if !self.control.enabled {
            log::trace!("MSI-X vector {index} raised while MSI-X is disabled; dropped");
            return Ok(());
        }
        if self.control.function_masked || self.table[i].masked() {
            self.pba[i / 64] |= 1 << (i % 64);
            return Ok(());
        }
        self.group.trigger(u32::from(index))
    }

    /// The entry and dword an aligned 4 or 8-byte table access hits.
    fn table_slot(&self, offset: u64, len: usize) -> Option<(usize, usize)> {
        let ok = matches!(len, 4 | 8)
            && offset % len as u64 == 0
            && offset + len as u64 <= self.layout.table_len();
        ok.then_some((
            (offset / MSIX_TABLE_ENTRY_SIZE) as usize,
            (offset % MSIX_TABLE_ENTRY_SIZE / 4) as usize,
        ))
    }

    fn capability_bytes(&self) -> [u8; MSIX_CAPABILITY_LEN] {
        let mut control = self.layout.table_size - 1;
        if self.control.enabled {
            control |= CTRL_ENABLE;
        }
        if self.control.function_masked {
            control |= CTRL_FUNCTION_MASK;
        }
        let l = &self.layout;
        let mut b = [0u8; MSIX_CAPABILITY_LEN];
        b[0] = MSIX_CAP_ID;
        b[1] = self.next;
        b[2..4].copy_from_slice(&control.to_le_bytes());
        b[4..8].copy_from_slice(&(l.table_offset | u32::from(l.table_bir)).to_le_bytes());
        b[8..12].copy_from_slice(&(l.pba_offset | u32::from(l.pba_bir)).to_le_bytes());
        b
    }

    fn desired_route(&self, index: usize) -> (MsiMessage, bool) {
        let Some(entry) = self.table.get(index) else {
            return (MsiMessage::default(), true);
        };
        let masked = !self.control.enabled || self.control.function_masked || entry.masked();
        (entry.message(), masked)
    }

    /// Brings the group's routing of `vectors` in line with the table and control bits, then
    /// delivers those that were pending and are now unmasked.
    fn sync_routes(&mut self, vectors: std::ops::Range<usize>) {
        for i in vectors {
            let desired = self.desired_route(i);
            if self.routed[i] == desired {
                continue;
            }
            if let Err(e) = self.group.update(i as u32, desired.0, desired.1) {
                log::warn!("MSI-X: failed to route vector {i}: {e}");
                continue;
            }
            self.routed[i] = desired;
            let bit = 1u64 << (i % 64);
            if !desired.1 && self.pba[i / 64] & bit != 0 {
                self.pba[i / 64] &= !bit;
                if let Err(e) = self.group.trigger(i as u32) {
                    log::warn!("MSI-X: failed to deliver pending vector {i}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{InterruptEvent, RecordingInterruptGroup};

    fn layout(table_size: u16) -> MsixLayout {
        MsixLayout {
            table_size,
            table_bir: 0,
            table_offset: 0,
            pba_bir: 0,
            pba_offset: 0x800,
        }
    }

    fn model(table_size: u16) -> (MsixConfig, Arc<RecordingInterruptGroup>) {
        let group = Arc::new(RecordingInterruptGroup::new(u32::from(table_size)));
        (
            MsixConfig::new(layout(table_size), group.clone()).unwrap(),
            group,
        )
    }

    fn msg(address: u64, data: u32) -> MsiMessage {
        MsiMessage { address, data }
    }

    /// Programs entry `i` with dword writes, leaving its mask bit as it is.
    fn program(msix: &mut MsixConfig, i: u64, address: u64, data: u32) {
        msix.write_table(i * 16, &(address as u32).to_le_bytes());
        msix.write_table(i * 16 + 4, &((address >> 32) as u32).to_le_bytes());
        msix.write_table(i * 16 + 8, &data.to_le_bytes());
    }

    fn set_entry_mask(msix: &mut MsixConfig, i: u64, masked: bool) {
        msix.write_table(i * 16 + 12, &u32::from(masked).to_le_bytes());
    }

    fn set_control(
        msix: &mut MsixConfig,
        enabled: bool,
        function_masked: bool,
    ) -> Option<MsixControlChange> {
        let byte = if enabled { 0x80 } else { 0 } | if function_masked { 0x40 } else { 0 };
        msix.write_capability(3, &[byte])
    }

    fn pba(msix: &MsixConfig) -> u64 {
        let mut data = [0u8; 8];
        msix.read_pba(0, &mut data);
        u64::from_le_bytes(data)
    }

    #[test]
    fn layout_is_parsed_from_capability_registers() {
        let l = MsixLayout::from_capability(0x003f, 0x0000_2004, 0x0000_3004);
        assert_eq!(
            l,
            MsixLayout {
                table_size: 64,
                table_bir: 4,
                table_offset: 0x2000,
                pba_bir: 4,
                pba_offset: 0x3000
            }
        );
        assert_eq!(l.table_len(), 0x400);
        assert_eq!(l.pba_len(), 8);
        assert_eq!(
            MsixLayout {
                table_size: 65,
                ..l
            }
            .pba_len(),
            16
        );
    }

    #[test]
    fn construction_rejects_bad_layouts() {
        let group = Arc::new(RecordingInterruptGroup::new(8));
        let cases = [
            (layout(0), MsixError::InvalidTableSize(0)),
            (layout(2049), MsixError::InvalidTableSize(2049)),
            (
                MsixLayout {
                    table_bir: 6,
                    ..layout(8)
                },
                MsixError::InvalidBir {
                    what: "table",
                    bir: 6,
                },
            ),
            (
                MsixLayout {
                    pba_offset: 0x804,
                    ..layout(8)
                },
                MsixError::MisalignedOffset {
                    what: "PBA",
                    offset: 0x804,
                },
            ),
            (
                MsixLayout {
                    pba_offset: 0x40,
                    ..layout(8)
                },
                MsixError::Overlap { bir: 0 },
            ),
            (
                layout(16),
                MsixError::GroupTooSmall {
                    needed: 16,
                    group: 8,
                },
            ),
        ];
        for (l, err) in cases {
            assert_eq!(MsixConfig::new(l, group.clone()).unwrap_err(), err, "{l:?}");
        }
    }

    #[test]
    fn capability_reads_back_size_locations_and_control() {
        let (mut msix, _group) = model(8);
        msix.set_next(0x70);
        let mut cap = [0u8; 12];
        msix.read_capability(0, &mut cap);
        assert_eq!(cap, [0x11, 0x70, 7, 0, 0, 0, 0, 0, 0, 8, 0, 0]);
        // Writing all-ones only sets enable and function mask.
        let change = msix.write_capability(0, &[0xff; 4]).unwrap();
        assert_eq!(
            change.to,
            MsixControl {
                enabled: true,
                function_masked: true
            }
        );
        msix.read_capability(0, &mut cap);
        assert_eq!(cap[..4], [0x11, 0x70, 7, 0xc0]);
        // Writes that do not reach the control's high byte change nothing.
        assert_eq!(msix.write_capability(2, &[0]), None);
        assert_eq!(msix.write_capability(4, &[0; 4]), None);
    }

    #[test]
    fn entries_start_masked_and_read_back_at_dword_and_qword_width() {
        let (mut msix, group) = model(4);
        assert!(msix.entry(3).unwrap().masked());
        msix.write_table(0x30, &0x1_fee0_0000u64.to_le_bytes());
        msix.write_table(0x38, &0x0000_0001_0000_0042u64.to_le_bytes());
        let mut q = [0u8; 8];
        msix.read_table(0x30, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1_fee0_0000);
        let mut d = [0u8; 4];
        msix.read_table(0x38, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x42);
        msix.read_table(0x3c, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1);
        // MSI-X is disabled: the new message is routed, still masked.
        assert_eq!(
            group.updates(),
            [
                (3, msg(0x1_fee0_0000, 0), true),
                (3, msg(0x1_fee0_0000, 0x42), true)
            ]
        );
    }

    #[test]
    fn reserved_vector_control_bits_read_zero() {
        let (mut msix, _group) = model(1);
        msix.write_table(12, &0xffff_fffeu32.to_le_bytes());
        assert_eq!(msix.entry(0).unwrap().vector_control, 0);
    }

    #[test]
    fn misaligned_or_narrow_table_accesses_are_ignored() {
        let (mut msix, group) = model(2);
        msix.write_table(8, &[0x42, 0]);
        msix.write_table(4, &0u64.to_le_bytes());
        msix.write_table(2, &0xffffu32.to_le_bytes());
        msix.write_table(0x20, &0u32.to_le_bytes()); // past the 2-entry table
        assert_eq!(msix.entry(0), Some(MsixTableEntry::default()));
        assert!(group.events().is_empty());
        let mut w = [0u8; 2];
        msix.read_table(0, &mut w);
        assert_eq!(w, [0xff; 2]);
        let mut d = [0u8; 4];
        msix.read_table(0x20, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn enabling_routes_unmasked_entries() {
        let (mut msix, group) = model(2);
        program(&mut msix, 0, 0xfee0_0000, 0x30);
        program(&mut msix, 1, 0xfee0_1000, 0x31);
        set_entry_mask(&mut msix, 0, false);
        group.take_events();
        let change = set_control(&mut msix, true, false).unwrap();
        assert_eq!(change.from, MsixControl::default());
        // Only vector 0 is unmasked; vector 1 keeps its own mask.
        assert_eq!(group.updates(), [(0, msg(0xfee0_0000, 0x30), false)]);
        msix.trigger(0).unwrap();
        assert_eq!(group.deliveries(), [(0, msg(0xfee0_0000, 0x30))]);
    }

    #[test]
    fn masked_vector_sets_pending_bit_and_unmask_delivers_it() {
        let (mut msix, group) = model(2);
        program(&mut msix, 1, 0xfee0_0000, 0x51);
        let _ = set_control(&mut msix, true, false);
        msix.trigger(1).unwrap();
        assert!(msix.is_pending(1));
        assert_eq!(pba(&msix), 0b10);
        assert!(group.deliveries().is_empty());
        group.take_events();
        set_entry_mask(&mut msix, 1, false);
        assert_eq!(
            group.take_events(),
            [
                InterruptEvent::Update {
                    index: 1,
                    msg: msg(0xfee0_0000, 0x51),
                    masked: false
                },
                InterruptEvent::Delivered {
                    index: 1,
                    msg: msg(0xfee0_0000, 0x51)
                },
            ]
        );
        assert_eq!(pba(&msix), 0);
    }

    #[test]
    fn vector_raised_through_its_eventfd_while_masked_shows_in_the_pba_until_unmasked() {
        // A passthrough device raises vectors by writing their eventfds, never through the
        // model: the PBA must still show them while they are masked.
        let group = Arc::new(RecordingInterruptGroup::with_notifiers(3).unwrap());
        let mut msix = MsixConfig::new(layout(3), group.clone()).unwrap();
        program(&mut msix, 2, 0xfee0_0000, 0x62);
        let _ = set_control(&mut msix, true, false);
        group.notifier(2).unwrap().write(1).unwrap();
        assert_eq!(pba(&msix), 0b100);
        assert!(msix.is_pending(2) && !msix.is_pending(1));
        // Looking did not consume the raise: it is delivered once the vector is unmasked.
        set_entry_mask(&mut msix, 2, false);
        assert_eq!(group.poll_notifiers(), 1);
        assert_eq!(group.deliveries(), [(2, msg(0xfee0_0000, 0x62))]);
        assert_eq!(pba(&msix), 0);
        // An unmasked vector's eventfd is its consumer's business (KVM reads it at once).
        group.notifier(2).unwrap().write(1).unwrap();
        assert_eq!(pba(&msix), 0);
    }

    #[test]
    fn function_mask_holds_every_vector_and_release_delivers_pending_ones() {
        let (mut msix, group) = model(3);
        for i in 0..3 {
            program(&mut msix, i, 0xfee0_0000, 0x60 + i as u32);
            set_entry_mask(&mut msix, i, false);
        }
        // Linux enables with the function masked, then unmasks it.
        let _ = set_control(&mut msix, true, true);
        assert!(
            group
                .events()
                .iter()
                .all(|e| matches!(e, InterruptEvent::Update { masked: true, .. }))
        );
        msix.trigger(2).unwrap();
        msix.trigger(0).unwrap();
        assert_eq!(pba(&msix), 0b101);
        group.take_events();
        let change = set_control(&mut msix, true, false).unwrap();
        assert!(change.from.function_masked && !change.to.function_masked);
        assert_eq!(
            group.deliveries(),
            [(0, msg(0xfee0_0000, 0x60)), (2, msg(0xfee0_0000, 0x62))]
        );
        assert_eq!(group.updates().len(), 3);
        assert_eq!(pba(&msix), 0);
    }

    #[test]
    fn pending_survives_function_unmask_while_entry_still_masked() {
        let (mut msix, group) = model(1);
        let _ = set_control(&mut msix, true, true);
        msix.trigger(0).unwrap();
        let _ = set_control(&mut msix, true, false);
        assert!(msix.is_pending(0));
        assert!(group.deliveries().is_empty());
    }

    #[test]
    fn disabled_msix_drops_triggers_and_out_of_range_is_an_error() {
        let (mut msix, group) = model(2);
        set_entry_mask(&mut msix, 0, false);
        msix.trigger(0).unwrap();
        assert!(!msix.is_pending(0));
        assert!(group.deliveries().is_empty());
        assert!(matches!(
            msix.trigger(2),
            Err(InterruptError::InvalidVector { index: 2, len: 2 })
        ));
    }

    #[test]
    fn pba_reads_at_dword_width_and_rejects_others() {
        let (mut msix, _group) = model(40);
        let _ = set_control(&mut msix, true, true);
        msix.trigger(33).unwrap();
        let mut d = [0u8; 4];
        msix.read_pba(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0b10);
        msix.read_pba(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0);
        msix.read_pba(8, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut b = [0u8; 1];
        msix.read_pba(4, &mut b);
        assert_eq!(b, [0xff]);
    }

    #[test]
    fn disabling_masks_routed_vectors() {
        let (mut msix, group) = model(1);
        program(&mut msix, 0, 0xfee0_0000, 0x70);
        set_entry_mask(&mut msix, 0, false);
        let _ = set_control(&mut msix, true, false);
        group.take_events();
        let change = set_control(&mut msix, false, false).unwrap();
        assert!(!change.to.enabled);
        assert_eq!(group.updates(), [(0, msg(0xfee0_0000, 0x70), true)]);
        assert!(msix.is_masked(0));
    }
}
