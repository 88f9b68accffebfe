//! COM1: a 16550 UART (vm-superio's `Serial`) on the port bus, its interrupt on an edge line, its
//! output to a sink chosen on the command line (or captured for tests).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use devices::bus::{BusDevice, lock};
use devices::interrupt::InterruptError;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

use crate::interrupts::EdgeIrq;

/// Where guest serial output goes.
#[derive(Debug, Clone)]
pub enum SerialSink {
    /// The VMM's standard output.
    Stdout,
    /// Discarded.
    Null,
    /// A file, created or truncated.
    File(PathBuf),
    /// Kept in memory (tests read it back).
    Capture(SerialCapture),
}

/// Serial output kept in memory; clones share the buffer.
#[derive(Debug, Clone, Default)]
pub struct SerialCapture(Arc<Mutex<Vec<u8>>>);

impl SerialCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.0).clone()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

impl Write for SerialCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SerialSink {
    /// Opens the sink for writing.
    pub fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Self::Stdout => Box::new(io::stdout()),
            Self::Null => Box::new(io::sink()),
            Self::File(path) => Box::new(File::create(path)?),
            Self::Capture(capture) => Box::new(capture.clone()),
        })
    }
}

/// Raises the UART's interrupt line.
#[derive(Debug)]
struct LineTrigger(Arc<dyn EdgeIrq>);

impl Trigger for LineTrigger {
    type E = InterruptError;

    fn trigger(&self) -> Result<(), InterruptError> {
        self.0.trigger()
    }
}

/// The UART as a port-bus device.
pub struct SerialDevice {
    uart: Serial<LineTrigger, NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl SerialDevice {
    /// A UART writing to `out` and raising `irq`.
    pub fn new(irq: Arc<dyn EdgeIrq>, out: Box<dyn Write + Send>) -> Self {
        Self {
            uart: Serial::new(LineTrigger(irq), out),
        }
    }

    /// Queues bytes for the guest to read (console input). Returns how many fitted in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial input: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    // Registers are bytes; a wider access touches consecutive registers, as on hardware.
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.uart.read((offset + i as u64) as u8);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            if let Err(e) = self.uart.write((offset + i as u64) as u8, byte) {
                log::warn!("serial output: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupts::{RecordedInterrupt, RecordingInterruptManager};

    /// UART registers (offsets from the base port).
    const THR: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;
    const IER_THR_EMPTY: u8 = 0x2;
    const LSR_THR_EMPTY: u8 = 0x20;

    fn device() -> (SerialDevice, SerialCapture, RecordingInterruptManager) {
        let irqs = RecordingInterruptManager::new();
        let capture = SerialCapture::new();
        let dev = SerialDevice::new(irqs.create_edge_irq(4).unwrap(), Box::new(capture.clone()));
        (dev, capture, irqs)
    }

    #[test]
    fn bytes_written_to_thr_reach_the_sink() {
        let (mut dev, capture, _) = device();
        for b in b"hi\n" {
            dev.write(0x3f8, THR, &[*b]);
        }
        assert_eq!(capture.text(), "hi\n");
        let mut lsr = [0u8];
        dev.read(0x3f8, LSR, &mut lsr);
        assert_ne!(lsr[0] & LSR_THR_EMPTY, 0);
    }

    #[test]
    fn thr_empty_interrupt_raises_the_line_when_enabled() {
        let (mut dev, _, irqs) = device();
        dev.write(0x3f8, IER, &[IER_THR_EMPTY]);
        dev.write(0x3f8, THR, b"x");
        assert!(irqs.interrupts().contains(&RecordedInterrupt::Line(4)));
    }

    #[test]
    fn input_is_readable_from_the_receive_buffer() {
        let (mut dev, _, _) = device();
        assert_eq!(dev.enqueue_input(b"k"), 1);
        let mut rbr = [0u8];
        dev.read(0x3f8, 0, &mut rbr);
        assert_eq!(rbr, *b"k");
    }
}
