//! The i8042 keyboard controller, reduced to what a PC guest uses it for here: the reset command
//! (0xfe to the command port), which stops the machine with [`ExitReason::Reset`].

use std::sync::Arc;

use devices::bus::BusDevice;
use vm_superio::{I8042Device, Trigger};

use crate::layout::I8042_DATA_PORT;
use crate::power::{ExitReason, PowerControl};

/// Requests the machine's reset.
#[derive(Debug)]
struct ResetTrigger(Arc<PowerControl>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request_exit(ExitReason::Reset);
        Ok(())
    }
}

/// The controller on the data and command ports. vm-superio's device takes offsets from the
/// data port (command = 4), so each access is translated from the port it hit.
#[derive(Debug)]
pub struct I8042 {
    device: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// A controller whose reset command stops the machine through `power`.
    pub fn new(power: Arc<PowerControl>) -> Self {
        Self {
            device: I8042Device::new(ResetTrigger(power)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let reg = (base + offset).wrapping_sub(u64::from(I8042_DATA_PORT)) as u8;
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = self.device.read(reg);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let reg = (base + offset).wrapping_sub(u64::from(I8042_DATA_PORT)) as u8;
        if let Some(&value) = data.first() {
            let Ok(()) = self.device.write(reg, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::I8042_COMMAND_PORT;

    #[test]
    fn reset_command_on_the_command_port_resets() {
        let power = Arc::new(PowerControl::new());
        let mut dev = I8042::new(power.clone());
        dev.write(u64::from(I8042_COMMAND_PORT), 0, &[0xfe]);
        assert_eq!(power.exit_reason(), Some(ExitReason::Reset));
    }

    #[test]
    fn other_commands_and_the_data_port_do_nothing() {
        let power = Arc::new(PowerControl::new());
        let mut dev = I8042::new(power.clone());
        dev.write(u64::from(I8042_COMMAND_PORT), 0, &[0xad]);
        dev.write(u64::from(I8042_DATA_PORT), 0, &[0xfe]);
        assert_eq!(power.exit_reason(), None);
    }
}
