//! PCI addresses: segment, bus, device, function.

use std::fmt;
use std::str::FromStr;

/// The highest device number on a bus.
pub const PCI_MAX_DEVICE: u8 = 31;
/// The highest function number in a device.
pub const PCI_MAX_FUNCTION: u8 = 7;

/// An error from building or parsing a [`PciBdf`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciBdfError {
    /// The device number is above 31.
    #[error("PCI device number {0:#x} is above 0x1f")]
    DeviceOutOfRange(u8),
    /// The function number is above 7.
    #[error("PCI function number {0} is above 7")]
    FunctionOutOfRange(u8),
    /// The text is not `[SSSS:]BB:DD.F` in hexadecimal.
    #[error(
        "invalid PCI address {text:?}: expected [segment:]bus:device.function in hex, e.g. 0000:00:03.0"
    )]
    Syntax {
        /// The text that failed to parse.
        text: String,
    },
}

/// A PCI function address. The segment defaults to 0 when it is not given.
///
/// Ordered by segment, bus, device, function, so a sorted list matches the order of a bus scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PciBdf {
    segment: u16,
    bus: u8,
    device: u8,
    function: u8,
}

impl PciBdf {
    /// Builds an address, checking that `device <= 31` and `function <= 7`.
    pub fn new(segment: u16, bus: u8, device: u8, function: u8) -> Result<Self, PciBdfError> {
        if device > PCI_MAX_DEVICE {
            return Err(PciBdfError::DeviceOutOfRange(device));
        }
        if function > PCI_MAX_FUNCTION {
            return Err(PciBdfError::FunctionOutOfRange(function));
        }
        Ok(Self {
            segment,
            bus,
            device,
            function,
        })
    }

    /// The address of segment 0, `bus`, and the 8-bit `devfn` (device << 3 | function).
    pub fn from_devfn(segment: u16, bus: u8, devfn: u8) -> Self {
        Self {
            segment,
            bus,
            device: devfn >> 3,
            function: devfn & 7,
        }
    }

    /// The PCI segment (domain).
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// The bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }

    /// The device number (0..=31).
    pub fn device(&self) -> u8 {
        self.device
    }

    /// The function number (0..=7).
    pub fn function(&self) -> u8 {
        self.function
    }

    /// `device << 3 | function`, as in the routing ID and in ACPI tables.
    pub fn devfn(&self) -> u8 {
        (self.device << 3) | self.function
    }

    /// The 16-bit requester ID (`bus << 8 | devfn`) a device puts on its DMA transactions.
    pub fn requester_id(&self) -> u16 {
        (u16::from(self.bus) << 8) | u16::from(self.devfn())
    }
}

impl fmt::Display for PciBdf {
    /// Formats as the kernel names devices in sysfs: `0000:00:03.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciBdf {
    type Err = PciBdfError;

    /// Parses `SSSS:BB:DD.F` or `BB:DD.F` (hexadecimal, either case).
    fn from_str(text: &str) -> Result<Self, PciBdfError> {
        let syntax = || PciBdfError::Syntax {
            text: text.to_string(),
        };
        let (head, function) = text.rsplit_once('.').ok_or_else(syntax)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (segment, bus, device) = match parts.as_slice() {
            [s, b, d] => (hex::<u16>(s, 4).ok_or_else(syntax)?, *b, *d),
            [b, d] => (0, *b, *d),
            _ => return Err(syntax()),
        };
        let bus = hex::<u8>(bus, 2).ok_or_else(syntax)?;
        let device = hex::<u8>(device, 2).ok_or_else(syntax)?;
        let function = hex::<u8>(function, 1).ok_or_else(syntax)?;
        Self::new(segment, bus, device, function)
    }
}

/// Parses 1 to `max_digits` hex digits; rejects signs and empty text that `from_str_radix` takes.
fn hex<T: TryFrom<u32>>(text: &str, max_digits: usize) -> Option<T> {
    if text.is_empty() || text.len() > max_digits || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_form_and_displays_it_back() {
        let bdf: PciBdf = "0001:af:1f.7".parse().unwrap();
        assert_eq!(
            (bdf.segment(), bdf.bus(), bdf.device(), bdf.function()),
            (1, 0xaf, 0x1f, 7)
        );
        assert_eq!(bdf.to_string(), "0001:af:1f.7");
    }

    #[test]
    fn parses_short_form_in_segment_zero() {
        let bdf: PciBdf = "00:03.0".parse().unwrap();
        assert_eq!(bdf, PciBdf::new(0, 0, 3, 0).unwrap());
        assert_eq!(bdf.to_string(), "0000:00:03.0");
        assert_eq!(
            "0A:1F.2".parse::<PciBdf>().unwrap().to_string(),
            "0000:0a:1f.2"
        );
    }

    #[test]
    fn rejects_out_of_range_device_and_function() {
        assert_eq!(
            "00:20.0".parse::<PciBdf>(),
            Err(PciBdfError::DeviceOutOfRange(0x20))
        );
        assert_eq!(
            "00:03.8".parse::<PciBdf>(),
            Err(PciBdfError::FunctionOutOfRange(8))
        );
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "00:03",
            "03.0",
            "0:0:0:0.0",
            "00000:00:03.0",
            "000:03.0",
            "00:+3.0",
            "00:03.00",
            "gg:03.0",
            "00:03.",
        ] {
            assert!(
                matches!(text.parse::<PciBdf>(), Err(PciBdfError::Syntax { .. })),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn devfn_and_requester_id_pack_fields() {
        let bdf = PciBdf::new(0, 2, 3, 1).unwrap();
        assert_eq!(bdf.devfn(), 0x19);
        assert_eq!(bdf.requester_id(), 0x0219);
        assert_eq!(PciBdf::from_devfn(0, 2, 0x19), bdf);
    }

    #[test]
    fn orders_like_a_bus_scan() {
        let mut v: Vec<PciBdf> = ["00:03.1", "01:00.0", "00:03.0", "00:02.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|b| b.to_string()).collect();
        assert_eq!(
            s,
            [
                "0000:00:02.0",
                "0000:00:03.0",
                "0000:00:03.1",
                "0000:01:00.0"
            ]
        );
    }
}
