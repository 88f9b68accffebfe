//! `emulated:mailbox` (`docs/dma-engine.md`, "The simple device"): 4 KiB of registers in BAR 0
//! (ID, SCRATCH, DOORBELL, INT_STATUS) and INTx. No capabilities, no migration, no DMA: the
//! device on which every optional VFIO feature is absent.

use std::sync::Arc;

use devices::pci::{BarKind, PciBar, PciClassCode, PciConfiguration, PciIdentity, PciInterruptPin};

use super::regs::{read_dwords, split_write};
use crate::emulated_device::vfio_core::{BarAccess, DeviceModel, IrqRouter};
use crate::host::dma::DmaPort;

/// Vendor id.
pub const MAILBOX_VENDOR_ID: u16 = 0x1234;
/// Device id.
pub const MAILBOX_DEVICE_ID: u16 = 0x7d11;
/// `ID` register value, "MOX1".
pub const MAILBOX_ID: u32 = 0x3158_4f4d;
/// Offset of `ID`.
pub const REG_ID: u64 = 0x00;
/// Offset of `SCRATCH`.
pub const REG_SCRATCH: u64 = 0x04;
/// Offset of `DOORBELL`.
pub const REG_DOORBELL: u64 = 0x08;
/// Offset of `INT_STATUS`.
pub const REG_INT_STATUS: u64 = 0x0c;
/// Size of BAR 0.
pub const BAR0_SIZE: u64 = 0x1000;
/// `PCI_STATUS_INTERRUPT`.
const STATUS_INTERRUPT: u16 = 0x0008;

/// The mailbox device.
#[derive(Debug)]
pub struct Mailbox {
    config: PciConfiguration,
    irq: Arc<IrqRouter>,
    scratch: u32,
    int_status: u32,
}

impl Mailbox {
    /// A mailbox in its power-on state, raising INTx through `irq`.
    pub fn new(irq: Arc<IrqRouter>) -> Self {
        let mut config = PciConfiguration::new(&PciIdentity {
            vendor_id: MAILBOX_VENDOR_ID,
            device_id: MAILBOX_DEVICE_ID,
            subsystem_vendor_id: MAILBOX_VENDOR_ID,
            subsystem_id: 0,
            revision_id: 1,
            class_code: PciClassCode {
                class: 0x08,
                subclass: 0x80,
                prog_if: 0,
            },
        });
        config.set_interrupt_pin(PciInterruptPin::IntA);
        if let Err(e) = config.add_bar(PciBar {
            index: 0,
            size: BAR0_SIZE,
            kind: BarKind::Memory32,
            prefetchable: false,
        }) {
            // A constant layout: only a bug in this file gets here.
            log::error!("mailbox: BAR 0: {e}");
        }
        Mailbox {
            config,
            irq,
            scratch: 0,
            int_status: 0,
        }
    }

    fn update_intx(&mut self) {
        let level = self.int_status != 0;
        self.config.set_status_bits(STATUS_INTERRUPT, level);
        self.irq.set_intx(level);
    }

    fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            REG_ID => MAILBOX_ID,
            REG_SCRATCH => self.scratch,
            REG_INT_STATUS => self.int_status,
            _ => 0,
        }
    }
}

impl DeviceModel for Mailbox {
    fn kind(&self) -> &str {
        "emulated:mailbox"
    }

    fn config(&self) -> &PciConfiguration {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfiguration {
        &mut self.config
    }

    fn bar_access(&self) -> Vec<BarAccess> {
        Vec::new()
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if index != 0 {
            data.fill(0xff);
            return;
        }
        read_dwords(offset, data, |reg| self.read_reg(reg));
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index != 0 {
            return;
        }
        for w in split_write(offset, data) {
            match w.offset {
                REG_SCRATCH => self.scratch = w.merge(self.scratch),
                REG_DOORBELL => {
                    self.int_status |= 1;
                    self.update_intx();
                }
                REG_INT_STATUS => {
                    self.int_status &= !(w.value & w.mask);
                    self.update_intx();
                }
                _ => {}
            }
        }
    }

    fn set_dma_port(&mut self, _port: Arc<dyn DmaPort>) {
        // The mailbox never masters the bus.
    }

    fn reset(&mut self) {
        self.scratch = 0;
        self.int_status = 0;
        self.update_intx();
    }
}
