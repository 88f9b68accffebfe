//! Register-file access: BAR accesses of 1, 2, 4 or 8 bytes cut into the 32-bit registers they
//! touch, each with the mask of the bytes written, so that a model only handles whole
//! registers.

/// One 32-bit register touched by a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwordWrite {
    /// Offset of the register (a multiple of 4).
    pub offset: u64,
    /// The written bytes, in place.
    pub value: u32,
    /// Which bits were written.
    pub mask: u32,
}

impl DwordWrite {
    /// `old` with the written bits replaced.
    pub fn merge(&self, old: u32) -> u32 {
        (old & !self.mask) | (self.value & self.mask)
    }
}

/// The registers a write of `data` at `offset` touches, in address order.
pub fn split_write(offset: u64, data: &[u8]) -> Vec<DwordWrite> {
    let mut out: Vec<DwordWrite> = Vec::new();
    for (i, b) in data.iter().enumerate() {
        let at = offset + i as u64;
        let reg = at & !3;
        let shift = (at % 4) * 8;
        match out.last_mut() {
            Some(w) if w.offset == reg => {
                w.value |= u32::from(*b) << shift;
                w.mask |= 0xff << shift;
            }
            _ => out.push(DwordWrite {
                offset: reg,
                value: u32::from(*b) << shift,
                mask: 0xff << shift,
            }),
        }
    }
    out
}

/// Fills `data` (a read at `offset`) from the 32-bit registers `read_reg` returns.
pub fn read_dwords(offset: u64, data: &mut [u8], mut read_reg: impl FnMut(u64) -> u32) {
    let mut cached: Option<(u64, u32)> = None;
    for (i, b) in data.iter_mut().enumerate() {
        let at = offset + i as u64;
        let reg = at & !3;
        let value = match cached {
            Some((r, v)) if r == reg => v,
            _ => {
                let v = read_reg(reg);
                cached = Some((reg, v));
                v
            }
        };
        *b = (value >> ((at % 4) * 8)) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qword_write_touches_two_registers_and_a_byte_one() {
        let w = split_write(0x10, &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(
            w,
            vec![
                DwordWrite {
                    offset: 0x10,
                    value: 0x5566_7788,
                    mask: u32::MAX
                },
                DwordWrite {
                    offset: 0x14,
                    value: 0x1122_3344,
                    mask: u32::MAX
                },
            ]
        );
        let b = split_write(0x0a, &[0xab]);
        assert_eq!(b[0].merge(0x1234_5678), 0x12ab_5678);
    }

    #[test]
    fn reads_assemble_bytes_of_the_registers() {
        let mut data = [0u8; 8];
        read_dwords(0x08, &mut data, |r| r as u32 * 0x0101_0101);
        assert_eq!(u64::from_le_bytes(data), 0x0c0c_0c0c_0808_0808);
        let mut half = [0u8; 2];
        read_dwords(0x06, &mut half, |_| 0xaabb_ccdd);
        assert_eq!(u16::from_le_bytes(half), 0xaabb);
    }
}
