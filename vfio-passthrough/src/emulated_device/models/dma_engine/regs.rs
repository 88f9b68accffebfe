//! The DMA engine's BAR 0 registers (`docs/dma-engine.md`, "Registers") and their saved form.

/// `ID` value, "DMA1".
pub const DMA_ENGINE_ID: u32 = 0x3141_4d44;
/// Largest queue.
pub const MAX_QUEUE_SIZE: u32 = 4096;

/// `ID` (RO).
pub const REG_ID: u64 = 0x00;
/// `CAPS` (RO).
pub const REG_CAPS: u64 = 0x04;
/// `CTRL` (RW).
pub const REG_CTRL: u64 = 0x08;
/// `STATUS` (RO, W1C).
pub const REG_STATUS: u64 = 0x0c;
/// `QUEUE_BASE` (RW, 64-bit).
pub const REG_QUEUE_BASE: u64 = 0x10;
/// `QUEUE_SIZE` (RW).
pub const REG_QUEUE_SIZE: u64 = 0x18;
/// `QUEUE_HEAD` (RO).
pub const REG_QUEUE_HEAD: u64 = 0x1c;
/// `QUEUE_TAIL` (RW doorbell).
pub const REG_QUEUE_TAIL: u64 = 0x20;
/// `COMPLETED` (RO).
pub const REG_COMPLETED: u64 = 0x24;
/// `ERROR_CODE` (RO).
pub const REG_ERROR_CODE: u64 = 0x28;
/// `ERROR_DESC` (RO).
pub const REG_ERROR_DESC: u64 = 0x2c;
/// `FAULT_ADDR` (RO, 64-bit).
pub const REG_FAULT_ADDR: u64 = 0x30;
/// `INT_STATUS` (RO, W1C).
pub const REG_INT_STATUS: u64 = 0x38;

/// `CAPS` bit 0: PASID.
pub const CAPS_PASID: u32 = 1 << 0;
/// `CAPS` bit 1: the COMPARE operation.
pub const CAPS_COMPARE: u32 = 1 << 1;
/// `CTRL.ENABLE`.
pub const CTRL_ENABLE: u32 = 1 << 0;
/// `CTRL.RESET`.
pub const CTRL_RESET: u32 = 1 << 1;
/// `CTRL.INT_ENABLE`.
pub const CTRL_INT_ENABLE: u32 = 1 << 2;
/// `STATUS.HALTED`.
pub const STATUS_HALTED: u32 = 1 << 0;
/// `STATUS.ERROR`.
pub const STATUS_ERROR: u32 = 1 << 1;
/// `INT_STATUS` bit 0: completion.
pub const INT_COMPLETION: u32 = 1 << 0;
/// `INT_STATUS` bit 1: error.
pub const INT_ERROR: u32 = 1 << 1;
/// `QUEUE_BASE` bits that are read-only 0 (the ring is 64-byte aligned).
pub const QUEUE_BASE_ALIGN_MASK: u64 = 63;

/// The register state (everything `CTRL.RESET` and function reset act on, and what migrates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registers {
    /// `CTRL` (ENABLE and INT_ENABLE; RESET reads 0).
    pub ctrl: u32,
    /// `STATUS`.
    pub status: u32,
    /// `QUEUE_BASE`.
    pub queue_base: u64,
    /// `QUEUE_SIZE`.
    pub queue_size: u32,
    /// `QUEUE_HEAD`.
    pub head: u32,
    /// `QUEUE_TAIL`.
    pub tail: u32,
    /// `COMPLETED`.
    pub completed: u32,
    /// `ERROR_CODE`.
    pub error_code: u32,
    /// `ERROR_DESC`.
    pub error_desc: u32,
    /// `FAULT_ADDR`.
    pub fault_addr: u64,
    /// `INT_STATUS`.
    pub int_status: u32,
}

impl Default for Registers {
    /// Power-on values: disabled, a one-entry queue at IOVA 0, no error.
    fn default() -> Self {
        Registers {
            ctrl: 0,
            status: 0,
            queue_base: 0,
            queue_size: 1,
            head: 0,
            tail: 0,
            completed: 0,
            error_code: 0,
            error_desc: 0,
            fault_addr: 0,
            int_status: 0,
        }
    }
}

/// Bytes of the saved register section (version 1).
pub const SAVED_LEN: usize = 56;

/// Why a saved register section cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterImageError {
    /// The section is not the length of version 1.
    #[error("register section is {len} bytes, expected {SAVED_LEN}")]
    Length {
        /// Its length.
        len: usize,
    },
    /// A field holds a value the device can never have.
    #[error("register section: {field} = {value:#x} is impossible")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

impl Registers {
    /// The queue reset by `CTRL.RESET`: queue position and error state cleared, the queue's
    /// configuration and `CTRL` kept.
    pub fn reset_queue(&mut self) {
        self.status = 0;
        self.head = 0;
        self.tail = 0;
        self.completed = 0;
        self.error_code = 0;
        self.error_desc = 0;
        self.fault_addr = 0;
        self.int_status = 0;
    }

    /// The saved form, little endian.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SAVED_LEN);
        for v in [self.ctrl, self.status] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.queue_base.to_le_bytes());
        for v in [
            self.queue_size,
            self.head,
            self.tail,
            self.completed,
            self.error_code,
            self.error_desc,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.fault_addr.to_le_bytes());
        out.extend_from_slice(&self.int_status.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    /// Parses and checks a saved register section.
    pub fn load(b: &[u8]) -> Result<Self, RegisterImageError> {
        if b.len() != SAVED_LEN {
            return Err(RegisterImageError::Length { len: b.len() });
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        let r = Registers {
            ctrl: u32_at(0),
            status: u32_at(4),
            queue_base: u64_at(8),
            queue_size: u32_at(16),
            head: u32_at(20),
            tail: u32_at(24),
            completed: u32_at(28),
            error_code: u32_at(32),
            error_desc: u32_at(36),
            fault_addr: u64_at(40),
            int_status: u32_at(48),
        };
        let bad = |field, value: u64| Err(RegisterImageError::Field { field, value });
        if r.ctrl & !(CTRL_ENABLE | CTRL_INT_ENABLE) != 0 {
            return bad("CTRL", r.ctrl.into());
        }
        if r.status & !(STATUS_ERROR | STATUS_HALTED) != 0 {
            return bad("STATUS", r.status.into());
        }
        if r.queue_base & QUEUE_BASE_ALIGN_MASK != 0 {
            return bad("QUEUE_BASE", r.queue_base);
        }
        if !r.queue_size.is_power_of_two() || r.queue_size > MAX_QUEUE_SIZE {
            return bad("QUEUE_SIZE", r.queue_size.into());
        }
        if r.head >= r.queue_size {
            return bad("QUEUE_HEAD", r.head.into());
        }
        if r.tail >= r.queue_size {
            return bad("QUEUE_TAIL", r.tail.into());
        }
        if r.int_status & !(INT_COMPLETION | INT_ERROR) != 0 {
            return bad("INT_STATUS", r.int_status.into());
        }
        if u32_at(52) != 0 {
            return bad("reserved", u32_at(52).into());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_registers_round_trip_and_impossible_values_are_refused() {
        let r = Registers {
            ctrl: CTRL_ENABLE,
            queue_base: 0x1000,
            queue_size: 8,
            head: 3,
            tail: 7,
            completed: 11,
            fault_addr: 0xdead_0000,
            ..Registers::default()
        };
        let saved = r.save();
        assert_eq!(saved.len(), SAVED_LEN);
        assert_eq!(Registers::load(&saved), Ok(r));
        let mut bad = saved.clone();
        bad[16] = 3; // QUEUE_SIZE 3
        assert!(matches!(
            Registers::load(&bad),
            Err(RegisterImageError::Field {
                field: "QUEUE_SIZE",
                ..
            })
        ));
        assert_eq!(
            Registers::load(&saved[..10]),
            Err(RegisterImageError::Length { len: 10 })
        );
    }
}
