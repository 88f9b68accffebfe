//! Base address registers: layout, the sizing protocol, and where each BAR decodes.
//!
//! # Sizing
//!
//! A BAR's address bits are writable down to its size, its type bits are read-only, so writing
//! all-ones reads back the size mask with the type bits in place. The expansion ROM BAR (index
//! [`PCI_ROM_BAR_INDEX`], offset 0x30) also keeps its enable bit (bit 0) writable.
//!
//! # Decoding and relocation
//!
//! A BAR *decodes* (the guest's accesses to `[base, base + len)` reach the device) when the
//! command register enables its space (I/O or memory; for the ROM also its enable bit) and its
//! address is not the all-ones pattern sizing leaves behind. The configuration space remembers
//! where it last told its owner each BAR decodes, and after every write reports the difference
//! as [`BarChange`]s: [`BarChange::Mapped`] when a BAR starts decoding, [`BarChange::Unmapped`]
//! when it stops, [`BarChange::Moved`] when the guest moves a decoding BAR. Applying them in order
//! keeps the MMIO/PIO buses exactly in step with what the guest programmed; the owner never adds
//! BAR ranges to a bus on its own.
//!
//! A 64-bit BAR is rewritten as two dwords, lower then upper. Writing the lower half defers the
//! BAR's report until the upper half is written (or the command register is), so the owner never
//! sees the half-written address in between.

use super::configuration::{PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PciConfiguration};

/// Number of standard BARs in a type 0 header.
pub const PCI_NUM_BARS: usize = 6;
/// The BAR index used for the expansion ROM (as VFIO numbers its regions).
pub const PCI_ROM_BAR_INDEX: usize = 6;
/// Offset of BAR 0.
pub const PCI_BASE_ADDRESS_0: u16 = 0x10;
/// Offset of the expansion ROM BAR.
pub const PCI_ROM_ADDRESS: u16 = 0x30;
/// ROM BAR bit 0: the ROM decodes (when memory decoding is on too).
pub const PCI_ROM_ADDRESS_ENABLE: u32 = 0x1;
pub(super) const NUM_BAR_SLOTS: usize = PCI_NUM_BARS + 1;

const BAR_IO_SPACE: u32 = 0x1;
const BAR_MEM_TYPE_64: u32 = 0x4;
const BAR_MEM_PREFETCH: u32 = 0x8;
const BAR_IO_ADDR_MASK: u32 = !0x3;
const BAR_MEM_ADDR_MASK: u32 = !0xf;
const ROM_ADDR_MASK: u32 = !0x7ff;
const ROM_REG_IDX: usize = (PCI_ROM_ADDRESS / 4) as usize;
const BAR0_REG_IDX: usize = (PCI_BASE_ADDRESS_0 / 4) as usize;

/// What kind of address space a BAR claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// I/O space (port I/O bus), 4 to 256 bytes.
    Io,
    /// Memory space below 4 GiB, one register.
    Memory32,
    /// Memory space anywhere in 64 bits, two registers (this index and the next).
    Memory64,
    /// The expansion ROM: memory space below 4 GiB, at [`PCI_ROM_BAR_INDEX`].
    Rom,
}

impl BarKind {
    /// True if the BAR lives on the port I/O bus rather than the MMIO bus.
    pub fn is_io(self) -> bool {
        self == BarKind::Io
    }

    /// True if the BAR takes two registers.
    pub fn is_64bit(self) -> bool {
        self == BarKind::Memory64
    }
}

/// One BAR a function implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciBar {
    /// BAR index: 0..=5, or [`PCI_ROM_BAR_INDEX`] for the ROM. A 64-bit BAR also takes `index + 1`.
    pub index: usize,
    /// Size in bytes, a power of two.
    pub size: u64,
    /// Address space and width.
    pub kind: BarKind,
    /// Prefetchable memory (memory BARs only).
    pub prefetchable: bool,
}

impl PciBar {
    /// The address bits of the BAR: the value its address reads back after sizing.
    fn address_mask(&self) -> u64 {
        let mask = !(self.size - 1);
        match self.kind {
            BarKind::Io => mask & u64::from(BAR_IO_ADDR_MASK),
            BarKind::Memory32 => mask & u64::from(BAR_MEM_ADDR_MASK),
            BarKind::Memory64 => mask & !0xf,
            BarKind::Rom => mask & u64::from(ROM_ADDR_MASK),
        }
    }

    /// The read-only low bits of the (lower) register that describe the BAR's type.
    fn type_bits(&self) -> u32 {
        match self.kind {
            BarKind::Io => BAR_IO_SPACE,
            BarKind::Memory32 => self.prefetch_bit(),
            BarKind::Memory64 => BAR_MEM_TYPE_64 | self.prefetch_bit(),
            BarKind::Rom => 0,
        }
    }

    fn prefetch_bit(&self) -> u32 {
        if self.prefetchable {
            BAR_MEM_PREFETCH
        } else {
            0
        }
    }

    fn reg_idx(&self) -> usize {
        match self.kind {
            BarKind::Rom => ROM_REG_IDX,
            _ => BAR0_REG_IDX + self.index,
        }
    }

    /// The highest address (exclusive) the BAR's registers can express.
    fn address_limit(&self) -> u128 {
        match self.kind {
            BarKind::Memory64 => 1 << 64,
            _ => 1 << 32,
        }
    }
}

/// Where a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BarRegion {
    /// BAR index (see [`PciBar::index`]).
    pub index: usize,
    /// Guest address (MMIO) or port (I/O) of the first byte.
    pub base: u64,
    /// Size in bytes.
    pub len: u64,
    /// Which bus the range belongs on.
    pub kind: BarKind,
}

/// A decoding BAR the guest moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BarReprogram {
    /// BAR index (see [`PciBar::index`]).
    pub index: usize,
    /// Where the BAR decoded until now.
    pub old_base: u64,
    /// Where it decodes from now on.
    pub new_base: u64,
    /// Size in bytes.
    pub len: u64,
    /// Which bus the range belongs on.
    pub kind: BarKind,
}

/// A change in where a BAR decodes, for the owner of the MMIO/PIO buses to apply in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BarChange {
    /// The BAR started decoding: put its range on the bus.
    Mapped(BarRegion),
    /// The BAR stopped decoding: take its range off the bus.
    Unmapped(BarRegion),
    /// The guest moved a decoding BAR: move its range on the bus.
    Moved(BarReprogram),
}

impl BarChange {
    /// The BAR index the change is about.
    pub fn index(&self) -> usize {
        match self {
            BarChange::Mapped(r) | BarChange::Unmapped(r) => r.index,
            BarChange::Moved(m) => m.index,
        }
    }

    /// The kind of the BAR the change is about.
    pub fn kind(&self) -> BarKind {
        match self {
            BarChange::Mapped(r) | BarChange::Unmapped(r) => r.kind,
            BarChange::Moved(m) => m.kind,
        }
    }
}

/// An error from declaring or placing a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciBarError {
    /// The index is not 0..=5 or the ROM index, or does not fit the kind (ROM only at index 6, a
    /// 64-bit BAR not at 5).
    #[error("BAR index {index} cannot hold a {kind:?} BAR")]
    InvalidIndex {
        /// The index asked for.
        index: usize,
        /// The kind asked for.
        kind: BarKind,
    },
    /// The index (or the upper half a 64-bit BAR needs) is already in use.
    #[error("BAR index {index} is already in use")]
    IndexInUse {
        /// The index asked for.
        index: usize,
    },
    /// The size is not a power of two in the range the kind allows.
    #[error("BAR {index}: size {size:#x} is not valid for a {kind:?} BAR")]
    InvalidSize {
        /// The BAR index.
        index: usize,
        /// The size asked for.
        size: u64,
        /// The kind asked for.
        kind: BarKind,
    },
    /// Only memory BARs can be prefetchable.
    #[error("BAR {index}: a {kind:?} BAR cannot be prefetchable")]
    NotPrefetchable {
        /// The BAR index.
        index: usize,
        /// The kind asked for.
        kind: BarKind,
    },
    /// No BAR is declared at this index.
    #[error("BAR {index} is not implemented")]
    NotPresent {
        /// The index asked for.
        index: usize,
    },
    /// The address is not aligned to the BAR size or the BAR would not fit its address width.
    #[error("BAR {index}: address {address:#x} does not fit a BAR of size {size:#x}")]
    BadAddress {
        /// The BAR index.
        index: usize,
        /// The address asked for.
        address: u64,
        /// The BAR size.
        size: u64,
    },
    /// The BAR's space is decoding, so moving it behind the guest's back would desynchronize
    /// the buses.
    #[error("BAR {index} is decoding; it can only be placed while its space is disabled")]
    Decoding {
        /// The BAR index.
        index: usize,
    },
}

/// True if `offset` falls in one of the six BAR registers or the ROM BAR register, the fields a
/// passthrough device always virtualizes.
pub fn is_bar_register(offset: u16) -> bool {
    (PCI_BASE_ADDRESS_0..PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS as u16).contains(&offset)
        || (PCI_ROM_ADDRESS..PCI_ROM_ADDRESS + 4).contains(&offset)
}

impl PciConfiguration {
    /// Declares a BAR: its type bits become read-only, its address bits writable down to its
    /// size, and its address starts at 0 (not decoding until placed and enabled).
    pub fn add_bar(&mut self, bar: PciBar) -> Result<(), PciBarError> {
        let PciBar {
            index, size, kind, ..
        } = bar;
        let index_fits = match kind {
            BarKind::Rom => index == PCI_ROM_BAR_INDEX,
            BarKind::Memory64 => index + 1 < PCI_NUM_BARS,
            BarKind::Io | BarKind::Memory32 => index < PCI_NUM_BARS,
        };
        if !index_fits {
            return Err(PciBarError::InvalidIndex { index, kind });
        }
        if bar.prefetchable && matches!(kind, BarKind::Io | BarKind::Rom) {
            return Err(PciBarError::NotPrefetchable { index, kind });
        }
        let (min, max) = match kind {
            BarKind::Io => (4, 256),
            BarKind::Memory32 => (16, 1 << 31),
            BarKind::Memory64 => (16, 1 << 63),
            BarKind::Rom => (2048, 1 << 31),
        };
        if !size.is_power_of_two() || size < min || size > max {
            return Err(PciBarError::InvalidSize { index, size, kind });
        }
        let taken = |i: usize| self.bars[i].is_some() || self.upper_half_of(i).is_some();
        if taken(index) || (kind.is_64bit() && taken(index + 1)) {
            return Err(PciBarError::IndexInUse { index });
        }

        let reg_idx = bar.reg_idx();
        let mask = bar.address_mask();
        let low_writable = mask as u32
            | if kind == BarKind::Rom {
                PCI_ROM_ADDRESS_ENABLE
            } else {
                0
            };
        self.set_register(reg_idx, bar.type_bits());
        self.set_masks(reg_idx, low_writable, 0);
        if kind.is_64bit() {
            self.set_register(reg_idx + 1, 0);
            self.set_masks(reg_idx + 1, (mask >> 32) as u32, 0);
        }
        self.bars[index] = Some(bar);
        Ok(())
    }

    /// The BAR declared at `index`, if any (not the upper half of a 64-bit BAR).
    pub fn bar(&self, index: usize) -> Option<PciBar> {
        self.bars.get(index).copied().flatten()
    }

    /// Every declared BAR, by index.
    pub fn bars(&self) -> Vec<PciBar> {
        self.bars.iter().flatten().copied().collect()
    }

    /// The address currently programmed in BAR `index` (address bits only; for the ROM without
    /// the enable bit).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let reg_idx = bar.reg_idx();
        let low = u64::from(self.raw_reg(reg_idx));
        let value = match bar.kind {
            BarKind::Memory64 => (u64::from(self.raw_reg(reg_idx + 1)) << 32) | low,
            _ => low,
        };
        Some(value & Self::addr_bits(bar))
    }

    /// Places BAR `index` at `address` (the VMM's allocation), while its space is not decoding.
    pub fn set_bar_address(&mut self, index: usize, address: u64) -> Result<(), PciBarError> {
        let bar = self.bar(index).ok_or(PciBarError::NotPresent { index })?;
        let bad = PciBarError::BadAddress {
            index,
            address,
            size: bar.size,
        };
        if address % bar.size != 0
            || u128::from(address) + u128::from(bar.size) > bar.address_limit()
        {
            return Err(bad);
        }
        if self.space_enabled(bar.kind) {
            return Err(PciBarError::Decoding { index });
        }
        let reg_idx = bar.reg_idx();
        let keep = self.raw_reg(reg_idx) & !Self::addr_bits(bar) as u32;
        self.set_register(reg_idx, keep | address as u32);
        if bar.kind.is_64bit() {
            self.set_register(reg_idx + 1, (address >> 32) as u32);
        }
        self.upper_half_pending[index] = false;
        Ok(())
    }

    /// Every BAR that decodes now, with the range the owner's buses should hold for it.
    pub fn decoded_bars(&self) -> Vec<BarRegion> {
        self.bars
            .iter()
            .flatten()
            .filter_map(|bar| {
                Some(BarRegion {
                    index: bar.index,
                    base: self.decoded[bar.index]?,
                    len: bar.size,
                    kind: bar.kind,
                })
            })
            .collect()
    }

    /// Called after a guest write to dword `reg_idx` (bytes `covered`): tracks 64-bit BAR halves
    /// and reports how BAR decoding changed.
    pub(super) fn bar_register_written(&mut self, reg_idx: usize, covered: u32) -> Vec<BarChange> {
        if reg_idx == 1 {
            if covered & 0xffff == 0 {
                // Only the status half was written.
                return Vec::new();
            }
            // A command write settles any half-written 64-bit BAR.
            self.upper_half_pending = [false; NUM_BAR_SLOTS];
        } else if (BAR0_REG_IDX..BAR0_REG_IDX + PCI_NUM_BARS).contains(&reg_idx) {
            let index = reg_idx - BAR0_REG_IDX;
            match (self.bars[index], self.upper_half_of(index)) {
                (Some(bar), _) if bar.kind.is_64bit() => self.upper_half_pending[index] = true,
                (_, Some(lower)) => self.upper_half_pending[lower] = false,
                _ => {}
            }
        } else if reg_idx != ROM_REG_IDX {
            return Vec::new();
        }
        self.update_bar_decoding()
    }

    /// Recomputes where each BAR decodes and reports what changed since the last report.
    fn update_bar_decoding(&mut self) -> Vec<BarChange> {
        let mut changes = Vec::new();
        for slot in 0..NUM_BAR_SLOTS {
            let Some(bar) = self.bars[slot] else {
                continue;
            };
            let old = self.decoded[bar.index];
            let new = self.decode_address(bar);
            let region = |base| BarRegion {
                index: bar.index,
                base,
                len: bar.size,
                kind: bar.kind,
            };
            let change = match (old, new) {
                (None, Some(base)) => BarChange::Mapped(region(base)),
                (Some(base), None) => BarChange::Unmapped(region(base)),
                (Some(old_base), Some(new_base)) if old_base != new_base => {
                    BarChange::Moved(BarReprogram {
                        index: bar.index,
                        old_base,
                        new_base,
                        len: bar.size,
                        kind: bar.kind,
                    })
                }
                _ => continue,
            };
            self.decoded[bar.index] = new;
            changes.push(change);
        }
        changes
    }

    /// Where `bar` should decode given the registers now.
    fn decode_address(&self, bar: PciBar) -> Option<u64> {
        if !self.space_enabled(bar.kind) {
            return None;
        }
        if bar.kind == BarKind::Rom && self.raw_reg(ROM_REG_IDX) & PCI_ROM_ADDRESS_ENABLE == 0 {
            return None;
        }
        if self.upper_half_pending[bar.index] {
            return self.decoded[bar.index];
        }
        let address = self.bar_address(bar.index)?;
        // All address bits set is what sizing leaves behind, never a placement: decoding there
        // would claim the top of the address space.
        (address != bar.address_mask()).then_some(address)
    }

    fn space_enabled(&self, kind: BarKind) -> bool {
        let bit = match kind {
            BarKind::Io => PCI_COMMAND_IO,
            _ => PCI_COMMAND_MEMORY,
        };
        self.command() & bit != 0
    }

    /// The index of the 64-bit BAR whose upper half is register `index`, if any.
    fn upper_half_of(&self, index: usize) -> Option<usize> {
        let lower = index.checked_sub(1)?;
        self.bars[lower]
            .filter(|b| b.kind.is_64bit() && index < PCI_NUM_BARS)
            .map(|_| lower)
    }

    fn addr_bits(bar: PciBar) -> u64 {
        match bar.kind {
            BarKind::Io => u64::from(BAR_IO_ADDR_MASK),
            BarKind::Memory32 => u64::from(BAR_MEM_ADDR_MASK),
            BarKind::Memory64 => !0xf,
            BarKind::Rom => u64::from(ROM_ADDR_MASK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::configuration::{PCI_COMMAND, PciIdentity};

    fn config_with(bars: &[PciBar]) -> PciConfiguration {
        let mut config = PciConfiguration::new(&PciIdentity::default());
        for bar in bars {
            config.add_bar(*bar).unwrap();
        }
        config
    }

    fn bar(index: usize, size: u64, kind: BarKind, prefetchable: bool) -> PciBar {
        PciBar {
            index,
            size,
            kind,
            prefetchable,
        }
    }

    fn reg(config: &PciConfiguration, offset: u16) -> u32 {
        let mut data = [0u8; 4];
        config.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write32(config: &mut PciConfiguration, offset: u16, value: u32) -> Vec<BarChange> {
        config.write(offset, &value.to_le_bytes()).bar_changes
    }

    fn command(config: &mut PciConfiguration, value: u16) -> Vec<BarChange> {
        config.write(PCI_COMMAND, &value.to_le_bytes()).bar_changes
    }

    fn bar_offset(index: usize) -> u16 {
        PCI_BASE_ADDRESS_0 + 4 * index as u16
    }

    #[test]
    fn sizing_32bit_memory_bars_reads_size_mask_with_type_bits() {
        let mut config = config_with(&[
            bar(0, 0x1000, BarKind::Memory32, false),
            bar(1, 0x10_0000, BarKind::Memory32, true),
        ]);
        write32(&mut config, bar_offset(0), u32::MAX);
        write32(&mut config, bar_offset(1), u32::MAX);
        assert_eq!(reg(&config, bar_offset(0)), 0xffff_f000);
        assert_eq!(reg(&config, bar_offset(1)), 0xfff0_0008);
    }

    #[test]
    fn sizing_64bit_bar_spans_both_registers() {
        let mut config = config_with(&[
            bar(0, 0x4000, BarKind::Memory64, false),
            bar(2, 0x2_0000_0000, BarKind::Memory64, true),
        ]);
        for i in 0..4 {
            write32(&mut config, bar_offset(i), u32::MAX);
        }
        assert_eq!(reg(&config, bar_offset(0)), 0xffff_c004);
        assert_eq!(reg(&config, bar_offset(1)), 0xffff_ffff);
        // 8 GiB: no address bits in the lower dword at all.
        assert_eq!(reg(&config, bar_offset(2)), 0x0000_000c);
        assert_eq!(reg(&config, bar_offset(3)), 0xffff_fffe);
    }

    #[test]
    fn sizing_io_bar_keeps_io_space_bit() {
        let mut config = config_with(&[bar(4, 0x20, BarKind::Io, false)]);
        write32(&mut config, bar_offset(4), u32::MAX);
        assert_eq!(reg(&config, bar_offset(4)), 0xffff_ffe1);
    }

    #[test]
    fn sizing_rom_bar_keeps_enable_bit_writable() {
        let mut config = config_with(&[bar(PCI_ROM_BAR_INDEX, 0x1_0000, BarKind::Rom, false)]);
        write32(&mut config, PCI_ROM_ADDRESS, !PCI_ROM_ADDRESS_ENABLE);
        assert_eq!(reg(&config, PCI_ROM_ADDRESS), 0xffff_0000);
        write32(&mut config, PCI_ROM_ADDRESS, u32::MAX);
        assert_eq!(reg(&config, PCI_ROM_ADDRESS), 0xffff_0001);
    }

    #[test]
    fn unimplemented_bars_read_zero_after_sizing() {
        let mut config = config_with(&[bar(0, 0x1000, BarKind::Memory32, false)]);
        write32(&mut config, bar_offset(5), u32::MAX);
        write32(&mut config, PCI_ROM_ADDRESS, u32::MAX);
        assert_eq!(reg(&config, bar_offset(5)), 0);
        assert_eq!(reg(&config, PCI_ROM_ADDRESS), 0);
    }

    #[test]
    fn placed_bar_reads_back_address_and_type() {
        let mut config = config_with(&[
            bar(0, 0x4000, BarKind::Memory64, true),
            bar(2, 0x100, BarKind::Io, false),
        ]);
        config.set_bar_address(0, 0x8_0000_c000).unwrap();
        config.set_bar_address(2, 0xc100).unwrap();
        assert_eq!(reg(&config, bar_offset(0)), 0x0000_c00c);
        assert_eq!(reg(&config, bar_offset(1)), 0x8);
        assert_eq!(reg(&config, bar_offset(2)), 0xc101);
        assert_eq!(config.bar_address(0), Some(0x8_0000_c000));
        assert_eq!(config.bar_address(2), Some(0xc100));
        assert_eq!(config.bar_address(1), None);
    }

    #[test]
    fn add_bar_rejects_bad_layouts() {
        let mut config = config_with(&[bar(1, 0x1000, BarKind::Memory64, false)]);
        let cases = [
            (
                bar(2, 0x1000, BarKind::Memory32, false),
                PciBarError::IndexInUse { index: 2 },
            ),
            (
                bar(0, 0x1000, BarKind::Memory64, false),
                PciBarError::IndexInUse { index: 0 },
            ),
            (
                bar(5, 0x1000, BarKind::Memory64, false),
                PciBarError::InvalidIndex {
                    index: 5,
                    kind: BarKind::Memory64,
                },
            ),
            (
                bar(0, 0x800, BarKind::Rom, false),
                PciBarError::InvalidIndex {
                    index: 0,
                    kind: BarKind::Rom,
                },
            ),
            (
                bar(6, 0x1000, BarKind::Memory32, false),
                PciBarError::InvalidIndex {
                    index: 6,
                    kind: BarKind::Memory32,
                },
            ),
            (
                bar(3, 0x3000, BarKind::Memory32, false),
                PciBarError::InvalidSize {
                    index: 3,
                    size: 0x3000,
                    kind: BarKind::Memory32,
                },
            ),
            (
                bar(3, 0x200, BarKind::Io, false),
                PciBarError::InvalidSize {
                    index: 3,
                    size: 0x200,
                    kind: BarKind::Io,
                },
            ),
            (
                bar(3, 8, BarKind::Memory32, false),
                PciBarError::InvalidSize {
                    index: 3,
                    size: 8,
                    kind: BarKind::Memory32,
                },
            ),
            (
                bar(3, 0x10, BarKind::Io, true),
                PciBarError::NotPrefetchable {
                    index: 3,
                    kind: BarKind::Io,
                },
            ),
        ];
        for (bad, err) in cases {
            assert_eq!(config.add_bar(bad), Err(err), "{bad:?}");
        }
        assert_eq!(config.bars(), [bar(1, 0x1000, BarKind::Memory64, false)]);
        assert_eq!(reg(&config, bar_offset(3)), 0);
    }

    #[test]
    fn set_bar_address_rejects_misplacement_and_decoding_bars() {
        let mut config = config_with(&[
            bar(0, 0x1000, BarKind::Memory32, false),
            bar(1, 0x10, BarKind::Io, false),
        ]);
        let bad = |address| PciBarError::BadAddress {
            index: 0,
            address,
            size: 0x1000,
        };
        assert_eq!(config.set_bar_address(0, 0x1800), Err(bad(0x1800)));
        assert_eq!(
            config.set_bar_address(0, 0x1_0000_0000),
            Err(bad(0x1_0000_0000))
        );
        assert_eq!(
            config.set_bar_address(2, 0),
            Err(PciBarError::NotPresent { index: 2 })
        );
        config.set_bar_address(0, 0x2000).unwrap();
        assert_eq!(command(&mut config, PCI_COMMAND_MEMORY).len(), 1);
        assert_eq!(
            config.set_bar_address(0, 0x3000),
            Err(PciBarError::Decoding { index: 0 })
        );
        // The I/O BAR's space is still off, so it can be placed.
        config.set_bar_address(1, 0x1000).unwrap();
        assert_eq!(config.bar_address(0), Some(0x2000));
        assert_eq!(config.bar_address(1), Some(0x1000));
    }

    #[test]
    fn enabling_decode_maps_bars_of_that_space_only() {
        let mut config = config_with(&[
            bar(0, 0x1000, BarKind::Memory32, false),
            bar(1, 0x20, BarKind::Io, false),
        ]);
        config.set_bar_address(0, 0xc000_0000).unwrap();
        config.set_bar_address(1, 0x6000).unwrap();
        let mem = BarRegion {
            index: 0,
            base: 0xc000_0000,
            len: 0x1000,
            kind: BarKind::Memory32,
        };
        let io = BarRegion {
            index: 1,
            base: 0x6000,
            len: 0x20,
            kind: BarKind::Io,
        };
        assert_eq!(
            command(&mut config, PCI_COMMAND_MEMORY),
            [BarChange::Mapped(mem)]
        );
        assert_eq!(
            command(&mut config, PCI_COMMAND_MEMORY | PCI_COMMAND_IO),
            [BarChange::Mapped(io)]
        );
        assert_eq!(config.decoded_bars(), [mem, io]);
        assert_eq!(
            command(&mut config, PCI_COMMAND_IO),
            [BarChange::Unmapped(mem)]
        );
        assert_eq!(config.decoded_bars(), [io]);
    }

    #[test]
    fn moving_a_decoding_bar_reports_old_and_new_base() {
        let mut config = config_with(&[bar(0, 0x1000, BarKind::Memory32, false)]);
        config.set_bar_address(0, 0xc000_0000).unwrap();
        let _ = command(&mut config, PCI_COMMAND_MEMORY);
        assert_eq!(
            write32(&mut config, bar_offset(0), 0xd000_0000),
            [BarChange::Moved(BarReprogram {
                index: 0,
                old_base: 0xc000_0000,
                new_base: 0xd000_0000,
                len: 0x1000,
                kind: BarKind::Memory32,
            })]
        );
        // Rewriting the same address is not a move.
        assert!(write32(&mut config, bar_offset(0), 0xd000_0000).is_empty());
    }

    #[test]
    fn moving_a_bar_while_decode_is_off_reports_only_the_final_mapping() {
        let mut config = config_with(&[bar(0, 0x1000, BarKind::Memory32, false)]);
        config.set_bar_address(0, 0xc000_0000).unwrap();
        let _ = command(&mut config, PCI_COMMAND_MEMORY);
        let unmapped = command(&mut config, 0);
        assert_eq!(unmapped.len(), 1);
        assert!(write32(&mut config, bar_offset(0), u32::MAX).is_empty());
        assert!(write32(&mut config, bar_offset(0), 0xe000_0000).is_empty());
        assert_eq!(
            command(&mut config, PCI_COMMAND_MEMORY),
            [BarChange::Mapped(BarRegion {
                index: 0,
                base: 0xe000_0000,
                len: 0x1000,
                kind: BarKind::Memory32,
            })]
        );
    }

    #[test]
    fn sixty_four_bit_bar_moves_once_both_halves_are_written() {
        let mut config = config_with(&[bar(2, 0x10_0000, BarKind::Memory64, true)]);
        config.set_bar_address(2, 0x10_0000_0000).unwrap();
        let _ = command(&mut config, PCI_COMMAND_MEMORY);
        assert!(write32(&mut config, bar_offset(2), 0x8020_0000).is_empty());
        assert_eq!(config.decoded_bars()[0].base, 0x10_0000_0000);
        assert_eq!(
            write32(&mut config, bar_offset(3), 0x20),
            [BarChange::Moved(BarReprogram {
                index: 2,
                old_base: 0x10_0000_0000,
                new_base: 0x20_8020_0000,
                len: 0x10_0000,
                kind: BarKind::Memory64,
            })]
        );
    }

    #[test]
    fn sizing_a_decoding_bar_unmaps_it_until_restored() {
        let mut config = config_with(&[bar(0, 0x1000, BarKind::Memory64, false)]);
        config.set_bar_address(0, 0xc000_0000).unwrap();
        let _ = command(&mut config, PCI_COMMAND_MEMORY);
        let region = config.decoded_bars()[0];
        assert!(write32(&mut config, bar_offset(0), u32::MAX).is_empty());
        assert_eq!(
            write32(&mut config, bar_offset(1), u32::MAX),
            [BarChange::Unmapped(region)]
        );
        assert!(write32(&mut config, bar_offset(0), 0xc000_0000).is_empty());
        assert_eq!(
            write32(&mut config, bar_offset(1), 0),
            [BarChange::Mapped(region)]
        );
    }

    #[test]
    fn rom_decodes_only_with_memory_space_and_its_enable_bit() {
        let mut config = config_with(&[bar(PCI_ROM_BAR_INDEX, 0x8000, BarKind::Rom, false)]);
        config
            .set_bar_address(PCI_ROM_BAR_INDEX, 0xfeb0_0000)
            .unwrap();
        assert!(command(&mut config, PCI_COMMAND_MEMORY).is_empty());
        let region = BarRegion {
            index: PCI_ROM_BAR_INDEX,
            base: 0xfeb0_0000,
            len: 0x8000,
            kind: BarKind::Rom,
        };
        assert_eq!(
            write32(&mut config, PCI_ROM_ADDRESS, 0xfeb0_0001),
            [BarChange::Mapped(region)]
        );
        assert_eq!(reg(&config, PCI_ROM_ADDRESS), 0xfeb0_0001);
        assert_eq!(
            write32(&mut config, PCI_ROM_ADDRESS, 0xfeb0_0000),
            [BarChange::Unmapped(region)]
        );
    }

    #[test]
    fn status_only_writes_do_not_touch_decoding() {
        let mut config = config_with(&[bar(0, 0x1000, BarKind::Memory64, false)]);
        config.set_bar_address(0, 0xc000_0000).unwrap();
        let _ = command(&mut config, PCI_COMMAND_MEMORY);
        assert!(write32(&mut config, bar_offset(0), 0xd000_0000).is_empty());
        // A write to the status half leaves the half-written BAR pending.
        assert!(config.write(0x06, &[0xff, 0xff]).bar_changes.is_empty());
        assert_eq!(config.decoded_bars()[0].base, 0xc000_0000);
    }

    #[test]
    fn bar_register_offsets_are_recognized() {
        assert!(is_bar_register(0x10));
        assert!(is_bar_register(0x27));
        assert!(is_bar_register(0x30));
        assert!(!is_bar_register(0x28));
        assert!(!is_bar_register(0x0f));
        assert!(!is_bar_register(0x34));
    }
}
