//! The MSI capability: its registers and the interrupt routing they imply.
//!
//! The model owns the capability's registers (message control, address, data, and with
//! per-vector masking the mask and pending bits) and keeps an [`InterruptSourceGroup`] routed to
//! match: after every write, each vector whose message or masked state changed gets one
//! [`InterruptSourceGroup::update`]. A vector is masked while MSI is disabled, while it is beyond
//! the enabled count (multiple message enable), or while its mask bit is set.
//!
//! Offsets given to [`MsiCapability::read`] and [`MsiCapability::write`] are relative to the
//! capability's start, so a passthrough device can place the model wherever the host device has
//! its MSI capability.

use std::sync::Arc;

use crate::interrupt::{InterruptError, InterruptSourceGroup, MsiMessage};

/// MSI capability ID.
pub const MSI_CAP_ID: u8 = 0x05;

const CTRL_ENABLE: u16 = 0x0001;
const CTRL_MMC_SHIFT: u16 = 1;
const CTRL_MME_SHIFT: u16 = 4;
const CTRL_MME_MASK: u16 = 0x0070;
const CTRL_64BIT: u16 = 0x0080;
const CTRL_PER_VECTOR_MASK: u16 = 0x0100;
const MAX_LEN: usize = 24;

/// The fixed shape of an MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiCapabilityConfig {
    /// Vectors the function can use (multiple message capable): 1, 2, 4, 8, 16 or 32.
    pub max_vectors: u32,
    /// The capability has an upper address register.
    pub address_64bit: bool,
    /// The capability has mask and pending bits.
    pub per_vector_mask: bool,
}

impl MsiCapabilityConfig {
    /// The shape described by a message control word (e.g. read from a host device).
    pub fn from_message_control(control: u16) -> Self {
        let mmc = (control >> CTRL_MMC_SHIFT) & 0x7;
        Self {
            // Encodings 6 and 7 are reserved; treat them as the architectural maximum.
            max_vectors: 1 << mmc.min(5),
            address_64bit: control & CTRL_64BIT != 0,
            per_vector_mask: control & CTRL_PER_VECTOR_MASK != 0,
        }
    }

    /// The capability's length in bytes, header included.
    pub fn len(&self) -> usize {
        match (self.address_64bit, self.per_vector_mask) {
            (false, false) => 10,
            (true, false) => 14,
            (false, true) => 20,
            (true, true) => 24,
        }
    }

    /// Always false: a capability has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn data_offset(&self) -> usize {
        if self.address_64bit { 12 } else { 8 }
    }

    fn mask_offset(&self) -> usize {
        self.data_offset() + 4
    }

    fn vector_bits(&self) -> u32 {
        match self.max_vectors {
            32 => u32::MAX,
            n => (1 << n) - 1,
        }
    }
}

/// Whether MSI is on, and with how many vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiMode {
    /// MSI is disabled.
    Disabled,
    /// MSI is enabled with `vectors` vectors (1, 2, 4, ... 32).
    Enabled {
        /// The number of enabled vectors.
        vectors: u32,
    },
}

/// A change of [`MsiMode`] made by a guest write. A passthrough device mirrors it on the host
/// (VFIO: disable, then enable with the new count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiModeChange {
    /// The mode before the write.
    pub from: MsiMode,
    /// The mode after the write.
    pub to: MsiMode,
}

/// An error from building an MSI model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsiError {
    /// The vector count is not 1, 2, 4, 8, 16 or 32.
    #[error("MSI vector count {0} is not a power of two from 1 to 32")]
    InvalidVectorCount(u32),
    /// The interrupt group has fewer vectors than the capability can enable.
    #[error("MSI capability needs {needed} vectors but its interrupt group has {group}")]
    GroupTooSmall {
        /// Vectors the capability can enable.
        needed: u32,
        /// Vectors in the group.
        group: u32,
    },
}

/// An MSI capability and the routing of its vectors.
#[derive(Debug)]
pub struct MsiCapability {
    config: MsiCapabilityConfig,
    next: u8,
    /// The enable bit and multiple message enable field as written.
    control: u16,
    address: u64,
    data: u16,
    mask: u32,
    pending: u32,
    group: Arc<dyn InterruptSourceGroup>,
    /// What each vector of the group was last routed to.
    routed: Vec<(MsiMessage, bool)>,
}

impl MsiCapability {
    /// Creates a disabled capability whose vectors are routed through `group` (created all
    /// masked, as [`InterruptManager`](crate::interrupt::InterruptManager) does).
    pub fn new(
        config: MsiCapabilityConfig,
        group: Arc<dyn InterruptSourceGroup>,
    ) -> Result<Self, MsiError> {
        if !config.max_vectors.is_power_of_two() || config.max_vectors > 32 {
            return Err(MsiError::InvalidVectorCount(config.max_vectors));
        }
        if group.len() < config.max_vectors {
            return Err(MsiError::GroupTooSmall {
                needed: config.max_vectors,
                group: group.len(),
            });
        }
        Ok(Self {
            config,
            next: 0,
            control: 0,
            address: 0,
            data: 0,
            mask: 0,
            pending: 0,
            group,
            routed: vec![(MsiMessage::default(), true); config.max_vectors as usize],
        })
    }

    /// The capability's shape.
    pub fn config(&self) -> MsiCapabilityConfig {
        self.config
    }

    /// The capability's length in bytes.
    pub fn len(&self) -> usize {
        self.config.len()
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

    /// Whether MSI is enabled and with how many vectors.
    pub fn mode(&self) -> MsiMode {
        match self.control & CTRL_ENABLE != 0 {
            true => MsiMode::Enabled {
                vectors: self.enabled_vectors(),
            },
            false => MsiMode::Disabled,
        }
    }

    /// The message vector `index` sends when enabled (the data's low bits carry the index).
    pub fn message(&self, index: u32) -> Option<MsiMessage> {
        (index < self.config.max_vectors).then(|| self.vector_message(index))
    }

    /// True if vector `index` cannot deliver now (MSI disabled, vector not enabled, or masked).
    pub fn is_masked(&self, index: u32) -> bool {
        self.desired_route(index).1
    }

    /// The pending bits: vectors raised while masked, by [`trigger`](Self::trigger) or through
    /// their eventfd (see [`InterruptSourceGroup::pending`]). Always 0 without per-vector
    /// masking, as the capability then has no pending register.
    pub fn pending(&self) -> u32 {
        if !self.config.per_vector_mask {
            return 0;
        }
        (0..self.config.max_vectors)
            .filter(|&i| self.routed[i as usize].1 && self.group.pending(i))
            .fold(self.pending, |bits, i| bits | 1 << i)
    }

    /// The interrupt group the vectors are routed through.
    pub fn group(&self) -> &Arc<dyn InterruptSourceGroup> {
        &self.group
    }

    /// Reads capability bytes at `offset` (from the capability's start); bytes past its end read
    /// as 0.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        let bytes = self.to_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(usize::from(offset) + i).copied().unwrap_or(0);
        }
    }

    /// Applies a guest write at `offset` (from the capability's start) and re-routes the vectors
    /// it affects. Read-only fields and bytes past the end are ignored. Returns the mode change,
    /// if the write enabled or disabled MSI or changed the vector count.
    pub fn write(&mut self, offset: u16, data: &[u8]) -> Option<MsiModeChange> {
        let before = self.mode();
        let mut bytes = self.to_bytes();
        let mask = self.write_mask();
        for (i, d) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if at < self.len() {
                bytes[at] = (bytes[at] & !mask[at]) | (d & mask[at]);
            }
        }
        self.load_bytes(&bytes);
        self.sync_routes();
        let after = self.mode();
        (before != after).then_some(MsiModeChange {
            from: before,
            to: after,
        })
    }

    /// Raises vector `index` for an emulated device. A masked vector sets its pending bit and is
    /// delivered when unmasked; with MSI disabled or the vector not enabled, nothing is sent.
    pub fn trigger(&mut self, index: u32) -> Result<(), InterruptError> {
        if index >= self.config.max_vectors {
            return Err(InterruptError::InvalidVector {
                index,
                len: self.config.max_vectors,
            });
        }
        if self.control & CTRL_ENABLE == 0 || index >= self.enabled_vectors() {
            log::trace!("MSI vector {index} raised while not enabled; dropped");
            return Ok(());
        }
        if self.config.per_vector_mask && self.mask & (1 << index) != 0 {
            self.pending |= 1 << index;
            return Ok(());
        }
        self.group.trigger(index)
    }

    fn enabled_vectors(&self) -> u32 {
        let mme = (self.control & CTRL_MME_MASK) >> CTRL_MME_SHIFT;
        // A guest asking for more than the function offers gets what the function offers.
        (1u32 << mme.min(5)).min(self.config.max_vectors)
    }

    fn vector_message(&self, index: u32) -> MsiMessage {
        let n = self.enabled_vectors();
        MsiMessage {
            address: self.address,
            data: (u32::from(self.data) & !(n - 1)) | (index & (n - 1)),
        }
    }

    /// What vector `index` should be routed to now, as `(message, masked)`.
    fn desired_route(&self, index: u32) -> (MsiMessage, bool) {
        let enabled = self.control & CTRL_ENABLE != 0 && index < self.enabled_vectors();
        if !enabled {
            // The message of a vector that cannot fire does not matter; keep the last one so
            // disabling does not re-route needlessly.
            let last = self.routed.get(index as usize).map(|r| r.0);
            return (last.unwrap_or_default(), true);
        }
        let masked = self.config.per_vector_mask && self.mask & (1 << index) != 0;
        (self.vector_message(index), masked)
    }

    /// Brings the group's routing in line with the registers, then delivers vectors that were
    /// pending and are now unmasked.
    fn sync_routes(&mut self) {
        for index in 0..self.config.max_vectors {
            let desired = self.desired_route(index);
            if self.routed[index as usize] == desired {
                continue;
            }
            if let Err(e) = self.group.update(index, desired.0, desired.1) {
                log::warn!("MSI: failed to route vector {index}: {e}");
                continue;
            }
            self.routed[index as usize] = desired;
            if !desired.1 && self.pending & (1 << index) != 0 {
                self.pending &= !(1 << index);
                if let Err(e) = self.group.trigger(index) {
                    log::warn!("MSI: failed to deliver pending vector {index}: {e}");
                }
            }
        }
    }

    fn to_bytes(&self) -> [u8; MAX_LEN] {
        let mut b = [0u8; MAX_LEN];
        let c = &self.config;
        let control = self.control
            | ((c.max_vectors.trailing_zeros() as u16) << CTRL_MMC_SHIFT)
            | if c.address_64bit { CTRL_64BIT } else { 0 }
            | if c.per_vector_mask {
                CTRL_PER_VECTOR_MASK
            } else {
                0
            };
        b[0] = MSI_CAP_ID;
        b[1] = self.next;
        b[2..4].copy_from_slice(&control.to_le_bytes());
        b[4..8].copy_from_slice(&(self.address as u32).to_le_bytes());
        if c.address_64bit {
            b[8..12].copy_from_slice(&((self.address >> 32) as u32).to_le_bytes());
        }
        let d = c.data_offset();
        b[d..d + 2].copy_from_slice(&self.data.to_le_bytes());
        if c.per_vector_mask {
            let m = c.mask_offset();
            b[m..m + 4].copy_from_slice(&self.mask.to_le_bytes());
            b[m + 4..m + 8].copy_from_slice(&self.pending().to_le_bytes());
        }
        b
    }

    fn write_mask(&self) -> [u8; MAX_LEN] {
        let mut m = [0u8; MAX_LEN];
        let c = &self.config;
        m[2..4].copy_from_slice(&(CTRL_ENABLE | CTRL_MME_MASK).to_le_bytes());
        // The address is dword aligned: its two low bits are read-only 0.
        m[4..8].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        if c.address_64bit {
            m[8..12].fill(0xff);
        }
        let d = c.data_offset();
        m[d..d + 2].fill(0xff);
        if c.per_vector_mask {
            let o = c.mask_offset();
            m[o..o + 4].copy_from_slice(&c.vector_bits().to_le_bytes());
        }
        m
    }

    fn load_bytes(&mut self, b: &[u8; MAX_LEN]) {
        let c = self.config;
        let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        self.control = u16::from_le_bytes([b[2], b[3]]) & (CTRL_ENABLE | CTRL_MME_MASK);
        let high = if c.address_64bit {
            u64::from(word(8))
        } else {
            0
        };
        self.address = (high << 32) | u64::from(word(4));
        let d = c.data_offset();
        self.data = u16::from_le_bytes([b[d], b[d + 1]]);
        if c.per_vector_mask {
            self.mask = word(c.mask_offset());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{InterruptEvent, RecordingInterruptGroup};

    const CONTROL: u16 = 2;

    fn model(
        max_vectors: u32,
        address_64bit: bool,
        per_vector_mask: bool,
    ) -> (MsiCapability, Arc<RecordingInterruptGroup>) {
        let group = Arc::new(RecordingInterruptGroup::new(max_vectors));
        let cfg = MsiCapabilityConfig {
            max_vectors,
            address_64bit,
            per_vector_mask,
        };
        (MsiCapability::new(cfg, group.clone()).unwrap(), group)
    }

    fn read32(msi: &MsiCapability, offset: u16) -> u32 {
        let mut data = [0u8; 4];
        msi.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn msg(address: u64, data: u32) -> MsiMessage {
        MsiMessage { address, data }
    }

    /// Programs a 64-bit capability's address and data like Linux does, before enabling.
    fn program(msi: &mut MsiCapability, address: u64, data: u16) {
        assert_eq!(msi.write(4, &(address as u32).to_le_bytes()), None);
        assert_eq!(msi.write(8, &((address >> 32) as u32).to_le_bytes()), None);
        assert_eq!(msi.write(12, &data.to_le_bytes()), None);
    }

    #[test]
    fn layout_follows_the_message_control_bits() {
        let c = MsiCapabilityConfig::from_message_control(0x018a);
        assert_eq!(
            c,
            MsiCapabilityConfig {
                max_vectors: 32,
                address_64bit: true,
                per_vector_mask: true
            }
        );
        assert_eq!(c.len(), 24);
        assert_eq!(MsiCapabilityConfig::from_message_control(0x0000).len(), 10);
        assert_eq!(MsiCapabilityConfig::from_message_control(0x0080).len(), 14);
        assert_eq!(MsiCapabilityConfig::from_message_control(0x0106).len(), 20);
        assert_eq!(
            MsiCapabilityConfig::from_message_control(0x0106).max_vectors,
            8
        );
    }

    #[test]
    fn construction_checks_vector_count_and_group_size() {
        let cfg = |max_vectors| MsiCapabilityConfig {
            max_vectors,
            address_64bit: false,
            per_vector_mask: false,
        };
        let group = Arc::new(RecordingInterruptGroup::new(4));
        assert_eq!(
            MsiCapability::new(cfg(3), group.clone()).unwrap_err(),
            MsiError::InvalidVectorCount(3)
        );
        assert_eq!(
            MsiCapability::new(cfg(8), group).unwrap_err(),
            MsiError::GroupTooSmall {
                needed: 8,
                group: 4
            }
        );
    }

    #[test]
    fn enabling_one_vector_routes_it_unmasked() {
        let (mut msi, group) = model(1, true, false);
        program(&mut msi, 0x1_fee0_1000, 0x0041);
        // Programming while disabled routes nothing: the vector is masked either way.
        assert!(group.events().is_empty());
        let change = msi.write(CONTROL, &[0x01, 0x00]);
        assert_eq!(
            change,
            Some(MsiModeChange {
                from: MsiMode::Disabled,
                to: MsiMode::Enabled { vectors: 1 }
            })
        );
        assert_eq!(group.updates(), [(0, msg(0x1_fee0_1000, 0x41), false)]);
        msi.trigger(0).unwrap();
        assert_eq!(group.deliveries(), [(0, msg(0x1_fee0_1000, 0x41))]);
    }

    #[test]
    fn multiple_message_enable_routes_each_vector_with_its_data() {
        let (mut msi, group) = model(8, true, false);
        program(&mut msi, 0xfee0_0000, 0x4060);
        // MME = 2: four vectors; the data's low two bits carry the vector number.
        let change = msi.write(CONTROL, &[0x21]).unwrap();
        assert_eq!(change.to, MsiMode::Enabled { vectors: 4 });
        let updates = group.updates();
        assert_eq!(
            updates,
            (0..4)
                .map(|i| (i, msg(0xfee0_0000, 0x4060 | i), false))
                .collect::<Vec<_>>()
        );
        // Vectors beyond the enabled count cannot fire.
        assert!(msi.is_masked(4));
        msi.trigger(5).unwrap();
        assert!(group.deliveries().is_empty());
        // MMC reads back as 3 (8 vectors), MME as written.
        assert_eq!(read32(&msi, 0) >> 16 & 0xff, 0xa7);
    }

    #[test]
    fn asking_for_more_vectors_than_offered_gets_the_maximum() {
        let (mut msi, _group) = model(2, false, false);
        let change = msi.write(CONTROL, &[0x51]).unwrap();
        assert_eq!(change.to, MsiMode::Enabled { vectors: 2 });
    }

    #[test]
    fn changing_vector_count_while_enabled_is_reported() {
        let (mut msi, group) = model(4, true, false);
        program(&mut msi, 0xfee0_0000, 0x20);
        let _ = msi.write(CONTROL, &[0x21]);
        group.take_events();
        let change = msi.write(CONTROL, &[0x01]).unwrap();
        assert_eq!(
            (change.from, change.to),
            (
                MsiMode::Enabled { vectors: 4 },
                MsiMode::Enabled { vectors: 1 }
            )
        );
        // Vectors 1..3 are masked; vector 0's message is unchanged, so it is not re-routed.
        let updates = group.updates();
        assert_eq!(updates.len(), 3);
        assert!(updates.iter().all(|(i, _, masked)| *i > 0 && *masked));
    }

    #[test]
    fn disabling_masks_every_enabled_vector() {
        let (mut msi, group) = model(2, true, false);
        program(&mut msi, 0xfee0_0000, 0x30);
        let _ = msi.write(CONTROL, &[0x11]);
        group.take_events();
        let change = msi.write(CONTROL, &[0x10]).unwrap();
        assert_eq!(change.to, MsiMode::Disabled);
        assert_eq!(
            group.updates(),
            [
                (0, msg(0xfee0_0000, 0x30), true),
                (1, msg(0xfee0_0000, 0x31), true)
            ]
        );
        msi.trigger(0).unwrap();
        assert!(group.deliveries().is_empty());
        assert_eq!(msi.pending(), 0);
    }

    #[test]
    fn masked_vector_is_held_pending_and_delivered_on_unmask() {
        let (mut msi, group) = model(4, true, true);
        program(&mut msi, 0xfee0_0000, 0x50);
        let _ = msi.write(CONTROL, &[0x21]);
        group.take_events();
        // Mask vector 2.
        assert_eq!(msi.write(16, &0b0100u32.to_le_bytes()), None);
        assert_eq!(
            group.take_events(),
            [InterruptEvent::Update {
                index: 2,
                msg: msg(0xfee0_0000, 0x52),
                masked: true
            }]
        );
        msi.trigger(2).unwrap();
        msi.trigger(1).unwrap();
        assert_eq!(msi.pending(), 0b0100);
        assert_eq!(read32(&msi, 20), 0b0100);
        assert_eq!(group.deliveries(), [(1, msg(0xfee0_0000, 0x51))]);
        group.take_events();
        let _ = msi.write(16, &0u32.to_le_bytes());
        assert_eq!(
            group.take_events(),
            [
                InterruptEvent::Update {
                    index: 2,
                    msg: msg(0xfee0_0000, 0x52),
                    masked: false
                },
                InterruptEvent::Delivered {
                    index: 2,
                    msg: msg(0xfee0_0000, 0x52)
                }
            ]
        );
        assert_eq!(msi.pending(), 0);
    }

    #[test]
    fn vector_raised_through_its_eventfd_while_masked_reads_as_pending() {
        let group = Arc::new(RecordingInterruptGroup::with_notifiers(4).unwrap());
        let cfg = MsiCapabilityConfig {
            max_vectors: 4,
            address_64bit: true,
            per_vector_mask: true,
        };
        let mut msi = MsiCapability::new(cfg, group.clone()).unwrap();
        program(&mut msi, 0xfee0_0000, 0x50);
        let _ = msi.write(CONTROL, &[0x21]);
        let _ = msi.write(16, &0b1000u32.to_le_bytes());
        group.notifier(3).unwrap().write(1).unwrap();
        assert_eq!(read32(&msi, 20), 0b1000);
        let _ = msi.write(16, &0u32.to_le_bytes());
        assert_eq!(read32(&msi, 20), 0);
        assert_eq!(group.poll_notifiers(), 1);
        assert_eq!(group.deliveries(), [(3, msg(0xfee0_0000, 0x53))]);
    }

    #[test]
    fn mask_bits_of_unimplemented_vectors_and_pending_bits_are_read_only() {
        let (mut msi, _group) = model(2, false, true);
        let _ = msi.write(12, &u32::MAX.to_le_bytes());
        let _ = msi.write(16, &u32::MAX.to_le_bytes());
        assert_eq!(read32(&msi, 12), 0b11);
        assert_eq!(read32(&msi, 16), 0);
    }

    #[test]
    fn read_only_control_bits_and_address_low_bits_ignore_writes() {
        let (mut msi, _group) = model(1, false, false);
        let _ = msi.write(0, &u32::MAX.to_le_bytes());
        // ID, next and MMC/64-bit/mask-capable unchanged; enable and MME read back as written.
        assert_eq!(read32(&msi, 0), 0x0071_0005);
        let _ = msi.write(4, &0xfee0_0003u32.to_le_bytes());
        assert_eq!(read32(&msi, 4), 0xfee0_0000);
    }

    #[test]
    fn thirty_two_bit_capability_has_data_at_offset_8() {
        let (mut msi, group) = model(1, false, false);
        let _ = msi.write(4, &0xfee0_0000u32.to_le_bytes());
        let _ = msi.write(8, &0x1234u16.to_le_bytes());
        // The bytes past the 10-byte capability are not part of it.
        let _ = msi.write(10, &0xffffu16.to_le_bytes());
        assert_eq!(read32(&msi, 8), 0x1234);
        let _ = msi.write(CONTROL, &[1]);
        assert_eq!(group.updates(), [(0, msg(0xfee0_0000, 0x1234), false)]);
    }

    #[test]
    fn triggering_a_vector_outside_the_capability_is_an_error() {
        let (mut msi, _group) = model(4, false, false);
        assert!(matches!(
            msi.trigger(4),
            Err(InterruptError::InvalidVector { index: 4, len: 4 })
        ));
    }

    #[test]
    fn header_bytes_report_id_and_next() {
        let (mut msi, _group) = model(1, false, false);
        msi.set_next(0x60);
        assert_eq!(read32(&msi, 0) & 0xffff, 0x6005);
        let mut past = [0xaa; 4];
        msi.read(8, &mut past);
        assert_eq!(past, [0, 0, 0, 0]);
    }
}
