//! ACPI PM1a event and control blocks (fixed-hardware power management, as the FADT advertises
//! them at [`ACPI_PM1A_EVT_PORT`] and [`ACPI_PM1A_CNT_PORT`]).
//!
//! The guest powers off by writing SLP_TYP = [`ACPI_S5_SLP_TYP`] with SLP_EN set to PM1_CNT.
//! Other sleep states are not supported and such writes are ignored (the DSDT only declares
//! `\_S5`).

use std::sync::Arc;

use devices::bus::BusDevice;

use crate::layout::{ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_S5_SLP_TYP};
use crate::power::{ExitReason, PowerControl};

/// PM1_CNT: SCI_EN (bit 0), SLP_TYP (bits 12:10), SLP_EN (bit 13, write-only).
const SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
const SLP_EN: u16 = 1 << 13;

/// The PM1a register blocks.
#[derive(Debug)]
pub struct AcpiPm {
    /// PM1_STS then PM1_EN, little endian.
    evt: [u8; 4],
    /// PM1_CNT, little endian.
    cnt: [u8; 2],
    power: Arc<PowerControl>,
}

impl AcpiPm {
    /// PM registers in ACPI mode (SCI_EN set: there is no legacy mode to switch from, so the
    /// FADT has no SMI command port).
    pub fn new(power: Arc<PowerControl>) -> Self {
        Self {
            evt: [0; 4],
            cnt: SCI_EN.to_le_bytes(),
            power,
        }
    }

    fn block(&mut self, base: u64) -> Option<&mut [u8]> {
        match base {
            b if b == u64::from(ACPI_PM1A_EVT_PORT) => Some(&mut self.evt),
            b if b == u64::from(ACPI_PM1A_CNT_PORT) => Some(&mut self.cnt),
            _ => None,
        }
    }

    fn write_evt(&mut self, offset: usize, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            match offset + i {
                // PM1_STS: write 1 to clear.
                o @ 0..2 => self.evt[o] &= !byte,
                o @ 2..4 => self.evt[o] = byte,
                _ => {}
            }
        }
    }

    fn write_cnt(&mut self, offset: usize, data: &[u8]) {
        let mut value = self.cnt;
        for (i, &byte) in data.iter().enumerate() {
            if let Some(dst) = value.get_mut(offset + i) {
                *dst = byte;
            }
        }
        let value = u16::from_le_bytes(value);
        if value & SLP_EN != 0 {
            let slp_typ = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
            if slp_typ == ACPI_S5_SLP_TYP {
                self.power.request_exit(ExitReason::PowerOff);
            } else {
                log::warn!("guest asked for unsupported sleep type {slp_typ}; ignored");
            }
        }
        // SLP_EN reads as zero.
        self.cnt = (value & !SLP_EN).to_le_bytes();
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let block = self.block(base).map(|b| &*b).unwrap_or(&[]);
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = block.get(offset as usize + i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        match base {
            b if b == u64::from(ACPI_PM1A_EVT_PORT) => self.write_evt(offset as usize, data),
            b if b == u64::from(ACPI_PM1A_CNT_PORT) => self.write_cnt(offset as usize, data),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CNT: u64 = ACPI_PM1A_CNT_PORT as u64;
    const EVT: u64 = ACPI_PM1A_EVT_PORT as u64;

    fn pm() -> (AcpiPm, Arc<PowerControl>) {
        let power = Arc::new(PowerControl::new());
        (AcpiPm::new(power.clone()), power)
    }

    #[test]
    fn slp_en_with_s5_powers_off() {
        let (mut pm, power) = pm();
        let value = SLP_EN | (ACPI_S5_SLP_TYP << SLP_TYP_SHIFT);
        pm.write(CNT, 0, &value.to_le_bytes());
        assert_eq!(power.exit_reason(), Some(ExitReason::PowerOff));
    }

    #[test]
    fn byte_write_of_the_high_half_powers_off_too() {
        let (mut pm, power) = pm();
        let value = SLP_EN | (ACPI_S5_SLP_TYP << SLP_TYP_SHIFT);
        pm.write(CNT, 1, &[(value >> 8) as u8]);
        assert_eq!(power.exit_reason(), Some(ExitReason::PowerOff));
    }

    #[test]
    fn other_sleep_types_or_no_slp_en_leave_the_machine_running() {
        let (mut pm, power) = pm();
        pm.write(CNT, 0, &(SLP_EN | (3 << SLP_TYP_SHIFT)).to_le_bytes());
        pm.write(CNT, 0, &(ACPI_S5_SLP_TYP << SLP_TYP_SHIFT).to_le_bytes());
        assert_eq!(power.exit_reason(), None);
    }

    #[test]
    fn control_reads_back_sci_en_and_slp_typ_but_not_slp_en() {
        let (mut pm, _) = pm();
        let mut v = [0u8; 2];
        pm.read(CNT, 0, &mut v);
        assert_eq!(u16::from_le_bytes(v), SCI_EN);
        pm.write(CNT, 0, &(SCI_EN | (3 << SLP_TYP_SHIFT)).to_le_bytes());
        pm.read(CNT, 0, &mut v);
        assert_eq!(u16::from_le_bytes(v), SCI_EN | (3 << SLP_TYP_SHIFT));
    }

    #[test]
    fn status_is_write_one_to_clear_and_enable_is_plain() {
        let (mut pm, _) = pm();
        pm.evt = [0x01, 0x81, 0, 0];
        pm.write(EVT, 0, &[0x01, 0x80, 0x20, 0x01]);
        let mut v = [0u8; 4];
        pm.read(EVT, 0, &mut v);
        assert_eq!(v, [0x00, 0x01, 0x20, 0x01]);
    }
}
