//! Request types of the iommufd seam: the kernel's `struct iommu_*` arguments, field for field.
//!
//! Each struct carries every field of its uAPI struct except `size` (the backend sets it) and the
//! user pointers, which become slices passed next to the struct. Fields the kernel writes back
//! (`out_*`, and in/out ones such as `iova` or `num_iovas`) are written back here too, on the
//! same conditions as the kernel copies its struct back. Reserved fields stay visible so callers
//! (and the conformance suite) can exercise the kernel's checks on them.
//!
//! Constants are re-exported from `iommufd-bindings` under their uAPI names.

use iommufd_bindings::iommufd as b;

/// `IOMMU_IOAS_MAP_FIXED_IOVA`: map at `iova` instead of choosing one.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = b::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
/// `IOMMU_IOAS_MAP_WRITEABLE`: the device may write.
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = b::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
/// `IOMMU_IOAS_MAP_READABLE`: the device may read.
pub const IOMMU_IOAS_MAP_READABLE: u32 = b::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;

/// `IOMMU_OPTION_RLIMIT_MODE`: per-user (0) or per-process (1) pinned-page accounting.
pub const IOMMU_OPTION_RLIMIT_MODE: u32 = b::iommufd_option_IOMMU_OPTION_RLIMIT_MODE;
/// `IOMMU_OPTION_HUGE_PAGES`: allow large IOPTEs in an IOAS.
pub const IOMMU_OPTION_HUGE_PAGES: u32 = b::iommufd_option_IOMMU_OPTION_HUGE_PAGES;
/// `IOMMU_OPTION_OP_SET`.
pub const IOMMU_OPTION_OP_SET: u16 = b::iommufd_option_ops_IOMMU_OPTION_OP_SET as u16;
/// `IOMMU_OPTION_OP_GET`.
pub const IOMMU_OPTION_OP_GET: u16 = b::iommufd_option_ops_IOMMU_OPTION_OP_GET as u16;

/// `IOMMU_VFIO_IOAS_GET`.
pub const IOMMU_VFIO_IOAS_GET: u16 = b::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_GET as u16;
/// `IOMMU_VFIO_IOAS_SET`.
pub const IOMMU_VFIO_IOAS_SET: u16 = b::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_SET as u16;
/// `IOMMU_VFIO_IOAS_CLEAR`.
pub const IOMMU_VFIO_IOAS_CLEAR: u16 = b::iommufd_vfio_ioas_op_IOMMU_VFIO_IOAS_CLEAR as u16;

/// `IOMMU_HWPT_ALLOC_NEST_PARENT`: the HWPT may be the stage 2 of nested HWPTs.
pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 =
    b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT;
/// `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`: the HWPT tracks dirty IOVAs.
pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 =
    b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
/// `IOMMU_HWPT_FAULT_ID_VALID`: `fault_id` names a fault queue for I/O page faults.
pub const IOMMU_HWPT_FAULT_ID_VALID: u32 = b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID;
/// `IOMMU_HWPT_ALLOC_PASID`: the HWPT may be attached to PASIDs.
pub const IOMMU_HWPT_ALLOC_PASID: u32 = b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_PASID;

/// `IOMMU_HWPT_DATA_NONE`: no driver data (a paging HWPT).
pub const IOMMU_HWPT_DATA_NONE: u32 = b::iommu_hwpt_data_type_IOMMU_HWPT_DATA_NONE;
/// `IOMMU_HWPT_DATA_VTD_S1`: an Intel VT-d first-stage table ([`HwptVtdS1`]).
pub const IOMMU_HWPT_DATA_VTD_S1: u32 = b::iommu_hwpt_data_type_IOMMU_HWPT_DATA_VTD_S1;

/// `IOMMU_VTD_S1_SRE`: supervisor requests allowed.
pub const IOMMU_VTD_S1_SRE: u64 = b::iommu_hwpt_vtd_s1_flags_IOMMU_VTD_S1_SRE as u64;
/// `IOMMU_VTD_S1_EAFE`: extended access flag enable.
pub const IOMMU_VTD_S1_EAFE: u64 = b::iommu_hwpt_vtd_s1_flags_IOMMU_VTD_S1_EAFE as u64;
/// `IOMMU_VTD_S1_WPE`: write protect enable.
pub const IOMMU_VTD_S1_WPE: u64 = b::iommu_hwpt_vtd_s1_flags_IOMMU_VTD_S1_WPE as u64;

/// `IOMMU_HW_INFO_TYPE_NONE`.
pub const IOMMU_HW_INFO_TYPE_NONE: u32 = b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_NONE;
/// `IOMMU_HW_INFO_TYPE_INTEL_VTD`: data is [`HwInfoVtd`].
pub const IOMMU_HW_INFO_TYPE_INTEL_VTD: u32 = b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_INTEL_VTD;
/// `IOMMU_HW_INFO_FLAG_INPUT_TYPE` (6.17): `in_data_type` selects the data type.
pub const IOMMU_HW_INFO_FLAG_INPUT_TYPE: u32 =
    b::iommufd_hw_info_flags_IOMMU_HW_INFO_FLAG_INPUT_TYPE;
/// `IOMMU_HW_CAP_DIRTY_TRACKING`.
pub const IOMMU_HW_CAP_DIRTY_TRACKING: u64 =
    b::iommufd_hw_capabilities_IOMMU_HW_CAP_DIRTY_TRACKING as u64;
/// `IOMMU_HW_CAP_PCI_PASID_EXEC`.
pub const IOMMU_HW_CAP_PCI_PASID_EXEC: u64 =
    b::iommufd_hw_capabilities_IOMMU_HW_CAP_PCI_PASID_EXEC as u64;
/// `IOMMU_HW_CAP_PCI_PASID_PRIV`.
pub const IOMMU_HW_CAP_PCI_PASID_PRIV: u64 =
    b::iommufd_hw_capabilities_IOMMU_HW_CAP_PCI_PASID_PRIV as u64;

/// `IOMMU_HWPT_DIRTY_TRACKING_ENABLE`.
pub const IOMMU_HWPT_DIRTY_TRACKING_ENABLE: u32 =
    b::iommufd_hwpt_set_dirty_tracking_flags_IOMMU_HWPT_DIRTY_TRACKING_ENABLE;
/// `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`: read without clearing the dirty bits.
pub const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: u32 =
    b::iommufd_hwpt_get_dirty_bitmap_flags_IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;

/// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`: entries are [`HwptVtdS1Invalidate`].
pub const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1: u32 =
    b::iommu_hwpt_invalidate_data_type_IOMMU_HWPT_INVALIDATE_DATA_VTD_S1;
/// `IOMMU_VTD_INV_FLAGS_LEAF`: only leaf entries changed.
pub const IOMMU_VTD_INV_FLAGS_LEAF: u32 =
    b::iommu_hwpt_vtd_s1_invalidate_flags_IOMMU_VTD_INV_FLAGS_LEAF;

/// `IOMMU_PGFAULT_FLAGS_PASID_VALID`.
pub const IOMMU_PGFAULT_FLAGS_PASID_VALID: u32 =
    b::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_PASID_VALID;
/// `IOMMU_PGFAULT_FLAGS_LAST_PAGE`: the last fault of a group.
pub const IOMMU_PGFAULT_FLAGS_LAST_PAGE: u32 =
    b::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_LAST_PAGE;
/// `IOMMU_PGFAULT_PERM_READ`.
pub const IOMMU_PGFAULT_PERM_READ: u32 = b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_READ;
/// `IOMMU_PGFAULT_PERM_WRITE`.
pub const IOMMU_PGFAULT_PERM_WRITE: u32 = b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_WRITE;
/// `IOMMUFD_PAGE_RESP_SUCCESS`.
pub const IOMMUFD_PAGE_RESP_SUCCESS: u32 = b::iommufd_page_response_code_IOMMUFD_PAGE_RESP_SUCCESS;
/// `IOMMUFD_PAGE_RESP_INVALID`.
pub const IOMMUFD_PAGE_RESP_INVALID: u32 = b::iommufd_page_response_code_IOMMUFD_PAGE_RESP_INVALID;

/// `struct iommu_iova_range`: an inclusive IOVA range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IovaRange {
    /// First IOVA of the range.
    pub start: u64,
    /// Last IOVA of the range (inclusive).
    pub last: u64,
}

/// `IOMMU_IOAS_ALLOC`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasAlloc {
    /// Must be 0.
    pub flags: u32,
    /// Out: the new IOAS id.
    pub out_ioas_id: u32,
}

/// `IOMMU_IOAS_ALLOW_IOVAS`; the ranges are passed as a slice (`num_iovas` is its length).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasAllowIovas {
    /// The IOAS.
    pub ioas_id: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `IOMMU_IOAS_IOVA_RANGES`. `num_iovas` is the capacity of the output slice on input (it must
/// not exceed the slice's length) and the total number of ranges on output, also when the call
/// fails with `EMSGSIZE` because the capacity was too small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasIovaRanges {
    /// The IOAS.
    pub ioas_id: u32,
    /// In: capacity; out: number of ranges.
    pub num_iovas: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Out: the required IOVA alignment.
    pub out_iova_alignment: u64,
}

/// `IOMMU_IOAS_MAP`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasMap {
    /// `IOMMU_IOAS_MAP_*`.
    pub flags: u32,
    /// The IOAS.
    pub ioas_id: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Process virtual address of the memory to map.
    pub user_va: u64,
    /// Bytes to map.
    pub length: u64,
    /// In with `FIXED_IOVA`: where to map; out: where it was mapped.
    pub iova: u64,
}

/// `IOMMU_IOAS_MAP_FILE` (6.13): map `length` bytes of a memfd from byte `start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasMapFile {
    /// `IOMMU_IOAS_MAP_*`.
    pub flags: u32,
    /// The IOAS.
    pub ioas_id: u32,
    /// The file descriptor; the backend takes its own reference.
    pub fd: i32,
    /// Byte offset in the file.
    pub start: u64,
    /// Bytes to map.
    pub length: u64,
    /// In with `FIXED_IOVA`: where to map; out: where it was mapped.
    pub iova: u64,
}

/// `IOMMU_IOAS_COPY`: map the pages behind a source IOVA range again, without re-pinning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasCopy {
    /// `IOMMU_IOAS_MAP_*`.
    pub flags: u32,
    /// Destination IOAS.
    pub dst_ioas_id: u32,
    /// Source IOAS (may equal the destination).
    pub src_ioas_id: u32,
    /// Bytes to copy.
    pub length: u64,
    /// In with `FIXED_IOVA`: destination IOVA; out: where it was mapped.
    pub dst_iova: u64,
    /// Source IOVA.
    pub src_iova: u64,
}

/// `IOMMU_IOAS_UNMAP`. `iova == 0 && length == u64::MAX` unmaps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoasUnmap {
    /// The IOAS.
    pub ioas_id: u32,
    /// First IOVA.
    pub iova: u64,
    /// In: bytes to unmap; out: bytes unmapped.
    pub length: u64,
}

/// `IOMMU_OPTION`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IommuOption {
    /// `IOMMU_OPTION_*`.
    pub option_id: u32,
    /// `IOMMU_OPTION_OP_*`.
    pub op: u16,
    /// Must be 0.
    pub reserved: u16,
    /// The object the option applies to (0 for global options).
    pub object_id: u32,
    /// In for SET, out for GET.
    pub val64: u64,
}

/// `IOMMU_VFIO_IOAS`: which IOAS the VFIO container compatibility path uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfioIoas {
    /// In for SET, out for GET.
    pub ioas_id: u32,
    /// `IOMMU_VFIO_IOAS_*`.
    pub op: u16,
    /// Must be 0.
    pub reserved: u16,
}

/// `IOMMU_HWPT_ALLOC`; driver data (`data_uptr`/`data_len`) is passed as a byte slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptAlloc {
    /// `IOMMU_HWPT_ALLOC_*` / `IOMMU_HWPT_FAULT_ID_VALID`.
    pub flags: u32,
    /// A device bound to this iommufd (picks the IOMMU driver).
    pub dev_id: u32,
    /// Parent: an IOAS (paging HWPT) or a `NEST_PARENT` HWPT (nested HWPT).
    pub pt_id: u32,
    /// Out: the new HWPT id.
    pub out_hwpt_id: u32,
    /// Must be 0.
    pub reserved: u32,
    /// `IOMMU_HWPT_DATA_*`.
    pub data_type: u32,
    /// A fault queue, with `IOMMU_HWPT_FAULT_ID_VALID`.
    pub fault_id: u32,
    /// Must be 0.
    pub reserved2: u32,
}

/// `struct iommu_hwpt_vtd_s1`: the guest's VT-d first-stage table for a nested HWPT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptVtdS1 {
    /// `IOMMU_VTD_S1_*`.
    pub flags: u64,
    /// Guest physical address of the first-stage root table.
    pub pgtbl_addr: u64,
    /// Input address width: 48 (4-level) or 57 (5-level).
    pub addr_width: u32,
    /// Must be 0.
    pub reserved: u32,
}

impl HwptVtdS1 {
    /// Size of the uAPI struct.
    pub const SIZE: usize = 24;

    /// The uAPI byte layout (little endian), as passed in `HWPT_ALLOC` data.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.pgtbl_addr.to_le_bytes());
        out[16..20].copy_from_slice(&self.addr_width.to_le_bytes());
        out[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        out
    }

    /// Parses the uAPI layout; `None` if `data` is shorter than the struct.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data: &[u8; Self::SIZE] = data.get(..Self::SIZE)?.try_into().ok()?;
        Some(Self {
            flags: u64::from_le_bytes(data[0..8].try_into().ok()?),
            pgtbl_addr: u64::from_le_bytes(data[8..16].try_into().ok()?),
            addr_width: u32::from_le_bytes(data[16..20].try_into().ok()?),
            reserved: u32::from_le_bytes(data[20..24].try_into().ok()?),
        })
    }
}

/// `IOMMU_GET_HW_INFO`; the driver data buffer is passed as a byte slice whose length is the
/// capacity (`data_len` on input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwInfo {
    /// 0, or `IOMMU_HW_INFO_FLAG_INPUT_TYPE` on kernels that know it.
    pub flags: u32,
    /// A device bound to this iommufd.
    pub dev_id: u32,
    /// Out: the length of the driver data the kernel has (it copies at most the capacity).
    pub data_len: u32,
    /// In (with `INPUT_TYPE`): wanted type; out: `IOMMU_HW_INFO_TYPE_*` of the data.
    pub data_type: u32,
    /// Out: PASID width, 0 if PASID is not supported.
    pub out_max_pasid_log2: u8,
    /// Must be 0.
    pub reserved: [u8; 3],
    /// Out: `IOMMU_HW_CAP_*`.
    pub out_capabilities: u64,
}

/// `struct iommu_hw_info_vtd`: VT-d capability registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwInfoVtd {
    /// `IOMMU_HW_INFO_VTD_*` errata flags.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
    /// The VT-d capability register.
    pub cap_reg: u64,
    /// The VT-d extended capability register.
    pub ecap_reg: u64,
}

impl HwInfoVtd {
    /// Size of the uAPI struct.
    pub const SIZE: usize = 24;

    /// The uAPI byte layout (little endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..4].copy_from_slice(&self.flags.to_le_bytes());
        out[4..8].copy_from_slice(&self.reserved.to_le_bytes());
        out[8..16].copy_from_slice(&self.cap_reg.to_le_bytes());
        out[16..24].copy_from_slice(&self.ecap_reg.to_le_bytes());
        out
    }

    /// Parses the uAPI layout; `None` if `data` is shorter than the struct.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data = data.get(..Self::SIZE)?;
        Some(Self {
            flags: u32::from_le_bytes(data[0..4].try_into().ok()?),
            reserved: u32::from_le_bytes(data[4..8].try_into().ok()?),
            cap_reg: u64::from_le_bytes(data[8..16].try_into().ok()?),
            ecap_reg: u64::from_le_bytes(data[16..24].try_into().ok()?),
        })
    }
}

/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptSetDirtyTracking {
    /// 0 or `IOMMU_HWPT_DIRTY_TRACKING_ENABLE`.
    pub flags: u32,
    /// A paging HWPT allocated with `DIRTY_TRACKING`.
    pub hwpt_id: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `IOMMU_HWPT_GET_DIRTY_BITMAP`; the bitmap is passed as a `u64` slice (bit n of the bitmap,
/// word n / 64 bit n % 64, covers `[iova + n * page_size, +page_size)`). The backends only set
/// bits; the slice must hold `length / page_size` bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptGetDirtyBitmap {
    /// A paging HWPT.
    pub hwpt_id: u32,
    /// 0 or `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
    /// First IOVA.
    pub iova: u64,
    /// Bytes covered.
    pub length: u64,
    /// Bytes per bit.
    pub page_size: u64,
}

/// `IOMMU_HWPT_INVALIDATE`; the entries are passed as bytes (`entry_num * entry_len`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptInvalidate {
    /// A nested HWPT (or a vIOMMU).
    pub hwpt_id: u32,
    /// `IOMMU_HWPT_INVALIDATE_DATA_*`.
    pub data_type: u32,
    /// Bytes per entry.
    pub entry_len: u32,
    /// In: entries; out (also on error): entries handled.
    pub entry_num: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `struct iommu_hwpt_vtd_s1_invalidate`: one VT-d first-stage invalidation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptVtdS1Invalidate {
    /// First address (4 KiB aligned); 0 with `npages == u64::MAX` means everything.
    pub addr: u64,
    /// Number of 4 KiB pages.
    pub npages: u64,
    /// `IOMMU_VTD_INV_FLAGS_*`.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
}

impl HwptVtdS1Invalidate {
    /// Size of the uAPI struct.
    pub const SIZE: usize = 24;

    /// The uAPI byte layout (little endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.npages.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.to_le_bytes());
        out[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        out
    }

    /// Parses the uAPI layout; `None` if `data` is shorter than the struct.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data = data.get(..Self::SIZE)?;
        Some(Self {
            addr: u64::from_le_bytes(data[0..8].try_into().ok()?),
            npages: u64::from_le_bytes(data[8..16].try_into().ok()?),
            flags: u32::from_le_bytes(data[16..20].try_into().ok()?),
            reserved: u32::from_le_bytes(data[20..24].try_into().ok()?),
        })
    }
}

/// `IOMMU_FAULT_QUEUE_ALLOC`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultQueueAlloc {
    /// Must be 0.
    pub flags: u32,
    /// Out: the fault object id (for `HwptAlloc::fault_id`).
    pub out_fault_id: u32,
}

/// `struct iommu_hwpt_pgfault`: one I/O page fault as read from a fault queue fd (40 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptPgfault {
    /// `IOMMU_PGFAULT_FLAGS_*`.
    pub flags: u32,
    /// The faulting device.
    pub dev_id: u32,
    /// PASID, when `PASID_VALID`.
    pub pasid: u32,
    /// Page request group index.
    pub grpid: u32,
    /// `IOMMU_PGFAULT_PERM_*`.
    pub perm: u32,
    /// Reserved.
    pub reserved: u32,
    /// Faulting address (page aligned).
    pub addr: u64,
    /// Bytes; the 6.12 kernel reports 0.
    pub length: u32,
    /// Cookie to answer with.
    pub cookie: u32,
}

impl HwptPgfault {
    /// Size of the uAPI record.
    pub const SIZE: usize = 40;

    /// The uAPI byte layout (little endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let words = [
            self.flags,
            self.dev_id,
            self.pasid,
            self.grpid,
            self.perm,
            self.reserved,
        ];
        for (i, w) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out[24..32].copy_from_slice(&self.addr.to_le_bytes());
        out[32..36].copy_from_slice(&self.length.to_le_bytes());
        out[36..40].copy_from_slice(&self.cookie.to_le_bytes());
        out
    }

    /// Parses the uAPI layout; `None` if `data` is shorter than a record.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data = data.get(..Self::SIZE)?;
        let w =
            |i: usize| -> Option<u32> { Some(u32::from_le_bytes(data[i..i + 4].try_into().ok()?)) };
        Some(Self {
            flags: w(0)?,
            dev_id: w(4)?,
            pasid: w(8)?,
            grpid: w(12)?,
            perm: w(16)?,
            reserved: w(20)?,
            addr: u64::from_le_bytes(data[24..32].try_into().ok()?),
            length: w(32)?,
            cookie: w(36)?,
        })
    }
}

/// `struct iommu_hwpt_page_response`: the answer written to a fault queue fd (8 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwptPageResponse {
    /// The cookie of the fault group answered.
    pub cookie: u32,
    /// `IOMMUFD_PAGE_RESP_*`.
    pub code: u32,
}

impl HwptPageResponse {
    /// Size of the uAPI record.
    pub const SIZE: usize = 8;

    /// The uAPI byte layout (little endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..4].copy_from_slice(&self.cookie.to_le_bytes());
        out[4..8].copy_from_slice(&self.code.to_le_bytes());
        out
    }

    /// Parses the uAPI layout; `None` if `data` is shorter than a record.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let data = data.get(..Self::SIZE)?;
        Some(Self {
            cookie: u32::from_le_bytes(data[0..4].try_into().ok()?),
            code: u32::from_le_bytes(data[4..8].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes_match_the_bindings() {
        assert_eq!(HwptVtdS1::SIZE, std::mem::size_of::<b::iommu_hwpt_vtd_s1>());
        assert_eq!(HwInfoVtd::SIZE, std::mem::size_of::<b::iommu_hw_info_vtd>());
        assert_eq!(
            HwptVtdS1Invalidate::SIZE,
            std::mem::size_of::<b::iommu_hwpt_vtd_s1_invalidate>()
        );
        assert_eq!(
            HwptPgfault::SIZE,
            std::mem::size_of::<b::iommu_hwpt_pgfault>()
        );
        assert_eq!(
            HwptPageResponse::SIZE,
            std::mem::size_of::<b::iommu_hwpt_page_response>()
        );
    }

    #[test]
    fn wire_structs_round_trip() {
        let s1 = HwptVtdS1 {
            flags: IOMMU_VTD_S1_WPE,
            pgtbl_addr: 0x1234_5000,
            addr_width: 48,
            reserved: 0,
        };
        assert_eq!(HwptVtdS1::from_bytes(&s1.to_bytes()), Some(s1));
        let f = HwptPgfault {
            flags: 3,
            dev_id: 2,
            pasid: 7,
            grpid: 1,
            perm: 2,
            reserved: 0,
            addr: 0x7000,
            length: 4096,
            cookie: 9,
        };
        assert_eq!(HwptPgfault::from_bytes(&f.to_bytes()), Some(f));
        assert_eq!(HwptPgfault::from_bytes(&[0u8; 39]), None);
    }
}
