//! Output on COM1 (a 16550 at 0x3f8): the report's only channel.

use core::fmt;

use crate::io::{inb, outb};

/// COM1's data register (the VMM's `layout::COM1_PORT`).
const COM1: u16 = 0x3f8;
/// Line status register.
const LSR: u16 = COM1 + 5;
/// LSR: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Polls of LSR before sending anyway: the VMM's UART is always ready, and a missing UART
/// must not hang the guest.
const MAX_POLLS: u32 = 1000;

fn write_byte(byte: u8) {
    for _ in 0..MAX_POLLS {
        if inb(LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
    }
    outb(COM1, byte);
}

/// A handle for `write!` on COM1.
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                write_byte(b'\r');
            }
            write_byte(byte);
        }
        Ok(())
    }
}

/// Prints one report line: `guest: ` then the arguments, then a newline.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut com1 = $crate::serial::Com1;
        let _ = com1.write_str("guest: ");
        let _ = com1.write_fmt(format_args!($($arg)*));
        let _ = com1.write_str("\n");
    }};
}
