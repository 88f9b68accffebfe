//! Request and reply types of the VFIO device seam: the kernel's `struct vfio_*` device
//! arguments, field for field where callers must be able to exercise the kernel's checks.

/// `VFIO_DEVICE_FLAGS_RESET`: the device supports `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
/// `VFIO_DEVICE_FLAGS_PCI`: a vfio-pci device.
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
/// `VFIO_DEVICE_FLAGS_CAPS`: the info has a capability chain.
pub const VFIO_DEVICE_FLAGS_CAPS: u32 = 1 << 7;

/// `VFIO_PCI_BAR0_REGION_INDEX`; BARs 0..5 are regions 0..5.
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
/// `VFIO_PCI_ROM_REGION_INDEX`.
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// `VFIO_PCI_VGA_REGION_INDEX`.
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
/// `VFIO_PCI_NUM_REGIONS`: device-specific regions start here.
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;

/// `VFIO_REGION_INFO_FLAG_READ`.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_REGION_INFO_FLAG_CAPS`.
pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;

/// `VFIO_REGION_TYPE_MIGRATION_DEPRECATED`: the v1 migration region's type.
pub const VFIO_REGION_TYPE_MIGRATION_DEPRECATED: u32 = 3;
/// `VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED`.
pub const VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED: u32 = 1;

/// `VFIO_PCI_INTX_IRQ_INDEX`.
pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
/// `VFIO_PCI_MSI_IRQ_INDEX`.
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
/// `VFIO_PCI_ERR_IRQ_INDEX`.
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
/// `VFIO_PCI_REQ_IRQ_INDEX`.
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
/// `VFIO_PCI_NUM_IRQS`.
pub const VFIO_PCI_NUM_IRQS: u32 = 5;

/// `VFIO_IRQ_INFO_EVENTFD`.
pub const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
/// `VFIO_IRQ_INFO_MASKABLE`.
pub const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
/// `VFIO_IRQ_INFO_AUTOMASKED`.
pub const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
/// `VFIO_IRQ_INFO_NORESIZE`.
pub const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

/// `VFIO_IRQ_SET_DATA_NONE`.
pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// `VFIO_IRQ_SET_DATA_BOOL`: one `u8` per vector.
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
/// `VFIO_IRQ_SET_DATA_EVENTFD`: one `i32` fd per vector (-1 de-assigns).
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_IRQ_SET_ACTION_MASK`.
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
/// `VFIO_IRQ_SET_ACTION_UNMASK`.
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// `VFIO_DEVICE_FEATURE_MIGRATION`.
pub const VFIO_DEVICE_FEATURE_MIGRATION: u32 = 1;
/// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
pub const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: u32 = 2;
/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`.
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_START: u32 = 6;
/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: u32 = 7;
/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: u32 = 8;
/// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`.
pub const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: u32 = 9;

/// `VFIO_MIGRATION_STOP_COPY`.
pub const VFIO_MIGRATION_STOP_COPY: u64 = 1 << 0;
/// `VFIO_MIGRATION_P2P`.
pub const VFIO_MIGRATION_P2P: u64 = 1 << 1;
/// `VFIO_MIGRATION_PRE_COPY`.
pub const VFIO_MIGRATION_PRE_COPY: u64 = 1 << 2;

/// `VFIO_DEVICE_GET_INFO`'s reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_IRQ_INFO`'s reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqInfo {
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// The IRQ index asked about.
    pub index: u32,
    /// Number of vectors.
    pub count: u32,
}

/// `VFIO_DEVICE_SET_IRQS`' header; the data array is passed as raw bytes next to it (`u8` per
/// vector with `DATA_BOOL`, native-endian `i32` fds with `DATA_EVENTFD`, nothing with
/// `DATA_NONE`) so callers can exercise the kernel's checks on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqSet {
    /// One `VFIO_IRQ_SET_DATA_*` and one `VFIO_IRQ_SET_ACTION_*`.
    pub flags: u32,
    /// IRQ index.
    pub index: u32,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
}

/// `struct vfio_device_feature_dma_logging_range`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaLoggingRange {
    /// First IOVA.
    pub iova: u64,
    /// Bytes.
    pub length: u64,
}

/// `struct vfio_device_feature_dma_logging_report`; the bitmap is passed as a `u64` slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaLoggingReport {
    /// First IOVA.
    pub iova: u64,
    /// Bytes.
    pub length: u64,
    /// Bytes per bit.
    pub page_size: u64,
}

/// `struct vfio_precopy_info`'s reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Bytes of initial state still to read.
    pub initial_bytes: u64,
    /// Bytes of state dirtied since it was read.
    pub dirty_bytes: u64,
}
