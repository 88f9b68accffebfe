//! Segment descriptors: the encoding written into the guest's GDT, and the matching
//! `kvm_segment` loaded into the vCPU (the hidden part of the segment registers), so both agree.

use kvm_bindings::kvm_segment;

/// Encodes a GDT descriptor. `flags` holds the access byte in bits 7:0 and the G/DB/L/AVL
/// nibble in bits 15:12, as in the descriptor's second dword shifted down by 8.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The segment register state that loading selector `index * 8` from a GDT holding `entry`
/// produces.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let g = bit(55);
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let present = bit(47);
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: if present == 1 { 0 } else { 1 },
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_64bit_code_segment_round_trips() {
        let e = gdt_entry(0xa09b, 0, 0xfffff);
        assert_eq!(e, 0x00af_9b00_0000_ffff);
        let s = segment_from_gdt(e, 1);
        assert_eq!((s.base, s.limit, s.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (s.type_, s.s, s.present, s.l, s.db, s.g),
            (0xb, 1, 1, 1, 0, 1)
        );
    }

    #[test]
    fn base_and_byte_granular_limit_are_decoded() {
        let e = gdt_entry(0x008b, 0x1234_5678, 0x67);
        let s = segment_from_gdt(e, 3);
        assert_eq!(
            (s.base, s.limit, s.selector, s.g),
            (0x1234_5678, 0x67, 24, 0)
        );
    }

    #[test]
    fn null_descriptor_is_unusable() {
        assert_eq!(segment_from_gdt(0, 0).unusable, 1);
    }
}
