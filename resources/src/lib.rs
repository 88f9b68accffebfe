//! Pure allocators shared by the VMM: IOVA interval sets with iommufd's automatic placement rule,
//! the PASID space, MMIO/PIO windows, GSIs and PCI slots. No host access.
#![forbid(unsafe_code)]
