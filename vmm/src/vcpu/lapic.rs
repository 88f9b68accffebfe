//! Local APIC set-up: LINT0 as ExtINT (the PIC's output, for guests that boot with the legacy
//! PIC) and LINT1 as NMI, as firmware leaves them on a PC.

use kvm_bindings::kvm_lapic_state;

/// Register offsets in the local APIC page.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
/// LVT delivery mode field, bits 10:8.
const DELIVERY_MODE_MASK: u32 = 0x700;
const DELIVERY_MODE_NMI: u32 = 0x4 << 8;
const DELIVERY_MODE_EXTINT: u32 = 0x7 << 8;

fn read_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn write_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = src as _;
    }
}

fn set_delivery_mode(lapic: &mut kvm_lapic_state, offset: usize, mode: u32) {
    let value = (read_reg(lapic, offset) & !DELIVERY_MODE_MASK) | mode;
    write_reg(lapic, offset, value);
}

/// Sets LINT0 to ExtINT and LINT1 to NMI, keeping the other LVT bits (mask, trigger mode).
pub fn set_lint_modes(lapic: &mut kvm_lapic_state) {
    set_delivery_mode(lapic, APIC_LVT_LINT0, DELIVERY_MODE_EXTINT);
    set_delivery_mode(lapic, APIC_LVT_LINT1, DELIVERY_MODE_NMI);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi_with_other_bits_kept() {
        let mut lapic = kvm_lapic_state::default();
        // Masked (bit 16), fixed delivery.
        write_reg(&mut lapic, APIC_LVT_LINT0, 0x1_0000);
        write_reg(&mut lapic, APIC_LVT_LINT1, 0x1_0000 | 0x200);
        set_lint_modes(&mut lapic);
        assert_eq!(read_reg(&lapic, APIC_LVT_LINT0), 0x1_0700);
        assert_eq!(read_reg(&lapic, APIC_LVT_LINT1), 0x1_0400);
    }
}
