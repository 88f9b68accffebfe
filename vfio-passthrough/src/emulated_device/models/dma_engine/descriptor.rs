//! Descriptors and completion records (`docs/dma-engine.md`, "Descriptor").

/// Bytes of a descriptor.
pub const DESCRIPTOR_SIZE: u64 = 64;
/// Bytes of a completion record.
pub const COMPLETION_SIZE: usize = 16;
/// Longest operation.
pub const MAX_LEN: u64 = 16 << 20;

/// Opcode `COPY`.
pub const OP_COPY: u32 = 1;
/// Opcode `FILL`.
pub const OP_FILL: u32 = 2;
/// Opcode `COMPARE`.
pub const OP_COMPARE: u32 = 3;
/// `op` bit 8: raise the completion interrupt.
pub const OP_INTERRUPT: u32 = 1 << 8;
/// `op` bit 9: `src` is a device-memory offset.
pub const OP_SRC_DEVMEM: u32 = 1 << 9;
/// `op` bit 10: `dst` is a device-memory offset.
pub const OP_DST_DEVMEM: u32 = 1 << 10;
/// `pasid` bit 31: the PASID is valid.
pub const PASID_VALID: u32 = 1 << 31;
/// `pasid` bits 0..19.
pub const PASID_MASK: u32 = (1 << 20) - 1;

/// A completion status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Done.
    Success = 1,
    /// Unknown opcode or non-zero reserved bits.
    BadOpcode = 0x8000_0001,
    /// `len` is 0 or over 16 MiB.
    BadLength = 0x8000_0002,
    /// A source access did not translate.
    SrcFault = 0x8000_0003,
    /// A destination access did not translate.
    DstFault = 0x8000_0004,
    /// A device-memory operand falls outside device memory.
    DevmemRange = 0x8000_0005,
    /// The descriptor could not be fetched.
    DescFault = 0x8000_0006,
}

/// The operation of a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `len` bytes from `src` to `dst`.
    Copy,
    /// `dst` filled with the 8-byte pattern in `src`.
    Fill,
    /// `src` and `dst` compared.
    Compare,
}

/// An operand: an IOVA or a device-memory offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// An IOVA, reached through the DMA port.
    Iova(u64),
    /// An offset in device memory.
    Devmem(u64),
}

/// A fetched descriptor, as raw fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// `op`.
    pub op: u32,
    /// `pasid`.
    pub pasid: u32,
    /// `src`.
    pub src: u64,
    /// `dst`.
    pub dst: u64,
    /// `len`.
    pub len: u64,
    /// `completion`.
    pub completion: u64,
    /// The reserved tail is all zero.
    pub reserved_zero: bool,
}

/// A checked descriptor, ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// What to do.
    pub opcode: Opcode,
    /// Source operand (for FILL: unused; see `pattern`).
    pub src: Operand,
    /// Destination operand.
    pub dst: Operand,
    /// The FILL pattern.
    pub pattern: [u8; 8],
    /// Bytes.
    pub len: u64,
    /// Raise the completion interrupt.
    pub interrupt: bool,
}

impl Descriptor {
    /// Parses the 64 bytes of a descriptor.
    pub fn parse(b: &[u8; DESCRIPTOR_SIZE as usize]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        Descriptor {
            op: u32_at(0),
            pasid: u32_at(4),
            src: u64_at(8),
            dst: u64_at(16),
            len: u64_at(24),
            completion: u64_at(32),
            reserved_zero: b[40..].iter().all(|x| *x == 0),
        }
    }

    /// The PASID the descriptor asks for (bit 31 set), whether or not the device uses it.
    pub fn requested_pasid(&self) -> Option<u32> {
        (self.pasid & PASID_VALID != 0).then_some(self.pasid & PASID_MASK)
    }

    /// Checks the descriptor: opcode and reserved bits (`BAD_OPCODE`), then length
    /// (`BAD_LENGTH`), then device-memory operands against `devmem_size` (`DEVMEM_RANGE`).
    pub fn check(&self, devmem_size: u64) -> Result<Operation, Status> {
        let known_bits = 0xff | OP_INTERRUPT | OP_SRC_DEVMEM | OP_DST_DEVMEM;
        let pasid_reserved = self.pasid & !(PASID_VALID | PASID_MASK);
        if self.op & !known_bits != 0 || pasid_reserved != 0 || !self.reserved_zero {
            return Err(Status::BadOpcode);
        }
        let opcode = match self.op & 0xff {
            OP_COPY => Opcode::Copy,
            OP_FILL => Opcode::Fill,
            OP_COMPARE => Opcode::Compare,
            _ => return Err(Status::BadOpcode),
        };
        if self.len == 0 || self.len > MAX_LEN {
            return Err(Status::BadLength);
        }
        let operand = |addr: u64, devmem: bool| -> Result<Operand, Status> {
            if !devmem {
                return Ok(Operand::Iova(addr));
            }
            match addr.checked_add(self.len) {
                Some(end) if end <= devmem_size => Ok(Operand::Devmem(addr)),
                _ => Err(Status::DevmemRange),
            }
        };
        // FILL's source is the pattern itself: SRC_DEVMEM means nothing to it.
        let src = match opcode {
            Opcode::Fill => Operand::Iova(0),
            _ => operand(self.src, self.op & OP_SRC_DEVMEM != 0)?,
        };
        let dst = operand(self.dst, self.op & OP_DST_DEVMEM != 0)?;
        Ok(Operation {
            opcode,
            src,
            dst,
            pattern: self.src.to_le_bytes(),
            len: self.len,
            interrupt: self.op & OP_INTERRUPT != 0,
        })
    }
}

/// A completion record's bytes.
pub fn completion_record(status: Status, result: u32, bytes_done: u64) -> [u8; COMPLETION_SIZE] {
    let mut out = [0u8; COMPLETION_SIZE];
    out[0..4].copy_from_slice(&(status as u32).to_le_bytes());
    out[4..8].copy_from_slice(&result.to_le_bytes());
    out[8..16].copy_from_slice(&bytes_done.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(op: u32, src: u64, dst: u64, len: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&op.to_le_bytes());
        b[8..16].copy_from_slice(&src.to_le_bytes());
        b[16..24].copy_from_slice(&dst.to_le_bytes());
        b[24..32].copy_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn checks_follow_the_documented_order() {
        let mem = 1 << 20;
        assert_eq!(
            Descriptor::parse(&raw(7, 0, 0, 8)).check(mem),
            Err(Status::BadOpcode)
        );
        assert_eq!(
            Descriptor::parse(&raw(OP_COPY | 1 << 11, 0, 0, 8)).check(mem),
            Err(Status::BadOpcode)
        );
        let mut reserved = raw(OP_COPY, 0, 0, 8);
        reserved[63] = 1;
        assert_eq!(
            Descriptor::parse(&reserved).check(mem),
            Err(Status::BadOpcode)
        );
        assert_eq!(
            Descriptor::parse(&raw(OP_COPY, 0, 0, 0)).check(mem),
            Err(Status::BadLength)
        );
        assert_eq!(
            Descriptor::parse(&raw(OP_COPY, 0, 0, MAX_LEN + 1)).check(mem),
            Err(Status::BadLength)
        );
        assert_eq!(
            Descriptor::parse(&raw(OP_COPY | OP_DST_DEVMEM, 0, mem - 4, 8)).check(mem),
            Err(Status::DevmemRange)
        );
        assert_eq!(
            Descriptor::parse(&raw(OP_COPY | OP_SRC_DEVMEM, u64::MAX, 0, 8)).check(mem),
            Err(Status::DevmemRange)
        );
        let fill = Descriptor::parse(&raw(OP_FILL | OP_INTERRUPT, 0x0807_0605_0403_0201, 0x10, 3))
            .check(mem)
            .unwrap();
        assert_eq!(fill.pattern, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(fill.interrupt);
        assert_eq!(fill.dst, Operand::Iova(0x10));
    }

    #[test]
    fn pasid_bits_20_to_30_are_reserved() {
        let mut b = raw(OP_COPY, 0, 0, 8);
        b[4..8].copy_from_slice(&(PASID_VALID | 1 << 20).to_le_bytes());
        assert_eq!(Descriptor::parse(&b).check(1 << 20), Err(Status::BadOpcode));
        b[4..8].copy_from_slice(&(PASID_VALID | 5).to_le_bytes());
        assert_eq!(Descriptor::parse(&b).requested_pasid(), Some(5));
    }
}
