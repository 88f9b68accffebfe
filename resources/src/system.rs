//! The VMM's guest resource allocators in one place, built from the machine layout.

use crate::address_window::{AddressWindow, AddressWindowError, WindowKind};
use crate::id_pool::{IdKind, IdPool, IdPoolError};
use crate::range::AddrRange;

/// A window given by its base and size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLayout {
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// An id pool given by its first and last id, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLayout {
    /// First id.
    pub first: u32,
    /// Last id.
    pub last: u32,
}

/// Where the VMM's layout puts each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemLayout {
    /// 32-bit MMIO window for BARs.
    pub mmio32: WindowLayout,
    /// 64-bit MMIO window for 64-bit BARs.
    pub mmio64: WindowLayout,
    /// Port I/O window for I/O BARs.
    pub pio: WindowLayout,
    /// GSIs available for dynamic routes (MSI).
    pub gsi: IdLayout,
    /// PCI slots available to devices on the root bus.
    pub pci_slots: IdLayout,
}

/// Why the system allocators could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SystemAllocatorError {
    /// A window is invalid.
    #[error(transparent)]
    Window(#[from] AddressWindowError),
    /// An id pool is invalid.
    #[error(transparent)]
    Ids(#[from] IdPoolError),
    /// The two MMIO windows overlap.
    #[error("32-bit MMIO window {mmio32} overlaps 64-bit MMIO window {mmio64}")]
    MmioOverlap {
        /// The 32-bit window.
        mmio32: AddrRange,
        /// The 64-bit window.
        mmio64: AddrRange,
    },
}

/// Every guest resource allocator of a VM.
#[derive(Debug, Clone)]
pub struct SystemAllocator {
    /// 32-bit MMIO window.
    pub mmio32: AddressWindow,
    /// 64-bit MMIO window.
    pub mmio64: AddressWindow,
    /// Port I/O window.
    pub pio: AddressWindow,
    /// Dynamic GSIs.
    pub gsi: IdPool,
    /// Root-bus PCI slots.
    pub pci_slots: IdPool,
}

impl SystemAllocator {
    /// Builds the allocators for `layout`. The MMIO windows must not overlap (port I/O is a
    /// separate address space).
    pub fn new(layout: &SystemLayout) -> Result<Self, SystemAllocatorError> {
        let window = |kind, w: WindowLayout| AddressWindow::new(kind, w.base, w.size);
        let mmio32 = window(WindowKind::Mmio32, layout.mmio32)?;
        let mmio64 = window(WindowKind::Mmio64, layout.mmio64)?;
        if mmio32.window().overlaps(&mmio64.window()) {
            return Err(SystemAllocatorError::MmioOverlap {
                mmio32: mmio32.window(),
                mmio64: mmio64.window(),
            });
        }
        Ok(SystemAllocator {
            mmio32,
            mmio64,
            pio: window(WindowKind::Pio, layout.pio)?,
            gsi: IdPool::new(IdKind::Gsi, layout.gsi.first, layout.gsi.last)?,
            pci_slots: IdPool::new(
                IdKind::PciSlot,
                layout.pci_slots.first,
                layout.pci_slots.last,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q35_like() -> SystemLayout {
        SystemLayout {
            mmio32: WindowLayout {
                base: 0xc000_0000,
                size: 0x2000_0000,
            },
            mmio64: WindowLayout {
                base: 0x10_0000_0000,
                size: 0x10_0000_0000,
            },
            pio: WindowLayout {
                base: 0xc000,
                size: 0x4000,
            },
            gsi: IdLayout {
                first: 24,
                last: 1023,
            },
            pci_slots: IdLayout { first: 1, last: 31 },
        }
    }

    #[test]
    fn each_allocator_hands_out_from_its_own_window() {
        let mut sys = SystemAllocator::new(&q35_like()).unwrap();
        assert_eq!(
            sys.mmio32.alloc(0x1000, 0x1000).unwrap().start(),
            0xc000_0000
        );
        assert_eq!(
            sys.mmio64.alloc(0x4000_0000, 0x4000_0000).unwrap().start(),
            0x10_0000_0000
        );
        assert_eq!(sys.pio.alloc(0x100, 0x100).unwrap().start(), 0xc000);
        assert_eq!(sys.gsi.alloc(), Ok(24));
        assert_eq!(sys.pci_slots.alloc(), Ok(1));
    }

    #[test]
    fn overlapping_mmio_windows_are_rejected() {
        let mut layout = q35_like();
        layout.mmio64 = WindowLayout {
            base: 0xd000_0000,
            size: 0x1000_0000,
        };
        assert!(matches!(
            SystemAllocator::new(&layout),
            Err(SystemAllocatorError::MmioOverlap { .. })
        ));
    }

    #[test]
    fn invalid_parts_of_the_layout_are_named() {
        let mut layout = q35_like();
        layout.pio.size = 0;
        assert_eq!(
            SystemAllocator::new(&layout).unwrap_err(),
            SystemAllocatorError::Window(AddressWindowError::InvalidWindow {
                kind: WindowKind::Pio,
                base: 0xc000,
                size: 0,
            })
        );
        let mut layout = q35_like();
        layout.gsi = IdLayout {
            first: 30,
            last: 24,
        };
        assert_eq!(
            SystemAllocator::new(&layout).unwrap_err(),
            SystemAllocatorError::Ids(IdPoolError::InvalidRange {
                kind: IdKind::Gsi,
                first: 30,
                last: 24
            })
        );
    }
}
