//! Guest RAM: one memfd laid out per [`crate::layout`], mapped into the VMM.
//!
//! A single memfd backs all of RAM so the same pages can be shared with device processes, mapped
//! into an iommufd IOAS (`IOMMU_IOAS_MAP_FILE`) and sent to a migration destination. RAM sits below
//! the 32-bit hole and continues at 4 GiB; the memfd offset of a byte is its position in RAM
//! counted without the hole.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;

use vm_memory::mmap::FromRangesError;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout::{MAX_RAM_SIZE, MIN_RAM_SIZE, PAGE_SIZE, ram_regions};

/// An error from building guest RAM.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size is below the machine minimum.
    #[error(
        "guest memory size {} is too small: the machine needs at least {}",
        Bytes(*size),
        Bytes(*min)
    )]
    TooSmall {
        /// The size asked for.
        size: u64,
        /// The smallest size the layout accepts.
        min: u64,
    },
    /// The size does not fit the guest physical layout.
    #[error(
        "guest memory size {} is too large: the layout holds at most {} (RAM must end below \
         the 64-bit PCI window)",
        Bytes(*size),
        Bytes(*max)
    )]
    TooLarge {
        /// The size asked for.
        size: u64,
        /// The largest size the layout holds.
        max: u64,
    },
    /// The size is not a whole number of pages.
    #[error(
        "guest memory size {} is not a multiple of the {}-byte page size",
        Bytes(*size),
        page
    )]
    NotPageAligned {
        /// The size asked for.
        size: u64,
        /// The page size.
        page: u64,
    },
    /// The memfd could not be created, sized or sealed.
    #[error("failed to {op} the guest memory memfd of {}", Bytes(*size))]
    Memfd {
        /// What was being done.
        op: &'static str,
        /// The RAM size.
        size: u64,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// Mapping the memfd into the VMM failed.
    #[error("failed to map {} of guest memory into the VMM", Bytes(*size))]
    Map {
        /// The RAM size.
        size: u64,
        /// The mapping error.
        #[source]
        source: FromRangesError,
    },
}

/// A byte count as a user writes it: "512 MiB", "3 GiB", "4097 bytes".
struct Bytes(u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        for (shift, unit) in UNITS {
            let n = self.0 >> shift;
            if n > 0 && self.0 == n << shift {
                return write!(f, "{n} {unit}");
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// One contiguous range of guest RAM, as the passthrough code maps it into a device IOAS
/// (IOVA = guest address) and as KVM sees it as a memory slot.
#[derive(Debug, Clone)]
pub struct RamRegion {
    /// Guest physical address of the first byte.
    pub guest_addr: GuestAddress,
    /// Length in bytes (a multiple of [`PAGE_SIZE`]).
    pub size: u64,
    /// Address of the first byte in the VMM's address space. Valid as long as the [`GuestRam`]
    /// that returned it lives.
    pub host_addr: u64,
    /// The memfd backing all of guest RAM.
    pub memfd: Arc<File>,
    /// Offset of the region's first byte in `memfd`.
    pub file_offset: u64,
}

/// Guest RAM: a memfd and its mapping, split into regions around the 32-bit hole.
#[derive(Debug)]
pub struct GuestRam {
    memory: GuestMemoryMmap,
    memfd: Arc<File>,
    size: u64,
}

impl GuestRam {
    /// Creates `size` bytes of zeroed guest RAM, laid out per [`crate::layout`].
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        let ranges = Self::layout(size)?;
        let memfd = Arc::new(create_memfd(size)?);
        let with_files: Vec<_> = ranges
            .iter()
            .map(|&(addr, len, offset)| {
                let len = usize::try_from(len).expect("layout sizes fit in usize on x86-64");
                (addr, len, Some(FileOffset::from_arc(memfd.clone(), offset)))
            })
            .collect();
        let memory = GuestMemoryMmap::from_ranges_with_files(&with_files)
            .map_err(|source| MemoryError::Map { size, source })?;
        Ok(Self {
            memory,
            memfd,
            size,
        })
    }

    /// The RAM ranges for `size` bytes: `(guest address, length, memfd offset)`, after checking
    /// that `size` fits the layout.
    pub fn layout(size: u64) -> Result<Vec<(GuestAddress, u64, u64)>, MemoryError> {
        if size < MIN_RAM_SIZE {
            return Err(MemoryError::TooSmall {
                size,
                min: MIN_RAM_SIZE,
            });
        }
        if size > MAX_RAM_SIZE {
            return Err(MemoryError::TooLarge {
                size,
                max: MAX_RAM_SIZE,
            });
        }
        if size % PAGE_SIZE != 0 {
            return Err(MemoryError::NotPageAligned {
                size,
                page: PAGE_SIZE,
            });
        }
        // The memfd holds RAM without the hole: each region starts where the previous ended.
        let mut offset = 0;
        let ranges = ram_regions(size)
            .into_iter()
            .map(|(start, len)| {
                let range = (GuestAddress(start), len, offset);
                offset += len;
                range
            })
            .collect();
        Ok(ranges)
    }

    /// The mapped guest memory, for reading and writing guest physical addresses.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// The memfd backing all of guest RAM.
    pub fn memfd(&self) -> &Arc<File> {
        &self.memfd
    }

    /// Total RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RAM regions in guest address order.
    pub fn regions(&self) -> Vec<RamRegion> {
        self.memory
            .iter()
            .map(|region| RamRegion {
                guest_addr: region.start_addr(),
                size: region.len(),
                host_addr: region.as_ptr() as u64,
                memfd: self.memfd.clone(),
                file_offset: region
                    .file_offset()
                    .map(FileOffset::start)
                    .expect("every guest RAM region is backed by the memfd"),
            })
            .collect()
    }
}

fn create_memfd(size: u64) -> Result<File, MemoryError> {
    let fail = |op| move |source| MemoryError::Memfd { op, size, source };
    const NAME: &CStr = c"guest-ram";
    // SAFETY: FFI call with a valid NUL-terminated name; the result is checked below.
    let fd =
        unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(fail("create")(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).map_err(fail("size"))?;
    // The VMM and every process it shares RAM with map the whole file; shrinking it would turn
    // their accesses into SIGBUS, so forbid resizing for good.
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own, with an integer argument; the result is checked.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(fail("seal")(io::Error::last_os_error()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use vm_memory::Bytes;

    use super::*;
    use crate::layout::{MEM_32BIT_GAP_START, RAM_64BIT_START};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn small_ram_is_one_region_at_zero() {
        let ram = GuestRam::new(64 * MIB).unwrap();
        let regions = ram.regions();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].guest_addr, GuestAddress(0));
        assert_eq!(regions[0].size, 64 * MIB);
        assert_eq!(regions[0].file_offset, 0);
        assert_eq!(ram.memfd().metadata().unwrap().len(), 64 * MIB);
    }

    #[test]
    fn ram_larger_than_the_low_window_continues_at_4g() {
        let ranges = GuestRam::layout(4 * GIB).unwrap();
        assert_eq!(
            ranges,
            vec![
                (GuestAddress(0), 3 * GIB, 0),
                (GuestAddress(4 * GIB), GIB, 3 * GIB)
            ]
        );
    }

    #[test]
    fn ram_that_exactly_fills_the_low_window_has_no_high_region() {
        let ranges = GuestRam::layout(MEM_32BIT_GAP_START).unwrap();
        assert_eq!(ranges, vec![(GuestAddress(0), MEM_32BIT_GAP_START, 0)]);
    }

    #[test]
    fn guest_writes_land_in_the_memfd_at_the_region_offset() {
        // Spans the hole so the high region's memfd offset is exercised; the memfd is sparse, so
        // this costs only the pages touched.
        let ram = GuestRam::new(3 * GIB + 2 * MIB).unwrap();
        let high = GuestAddress(RAM_64BIT_START + 0x1234);
        ram.memory().write_obj(0xfeed_f00d_u32, high).unwrap();
        let mut buf = [0u8; 4];
        ram.memfd().read_at(&mut buf, 3 * GIB + 0x1234).unwrap();
        assert_eq!(u32::from_le_bytes(buf), 0xfeed_f00d);
        let regions = ram.regions();
        assert_eq!(regions[1].file_offset, 3 * GIB);
        assert_eq!(regions[1].size, 2 * MIB);
    }

    #[test]
    fn host_address_of_a_region_reads_the_guest_bytes() {
        let ram = GuestRam::new(4 * MIB).unwrap();
        ram.memory()
            .write_obj(0xabu8, GuestAddress(0x3000))
            .unwrap();
        let region = &ram.regions()[0];
        // SAFETY: the region is mapped for the lifetime of `ram`, and 0x3000 is inside it.
        let byte = unsafe { std::ptr::read_volatile((region.host_addr + 0x3000) as *const u8) };
        assert_eq!(byte, 0xab);
    }

    #[test]
    fn memfd_cannot_be_shrunk_under_the_mappings() {
        let ram = GuestRam::new(4 * MIB).unwrap();
        ram.memfd().set_len(MIB).unwrap_err();
    }

    #[test]
    fn sizes_outside_the_layout_are_rejected_with_the_limit() {
        assert!(matches!(
            GuestRam::new(0),
            Err(MemoryError::TooSmall { size: 0, .. })
        ));
        assert!(matches!(
            GuestRam::layout(MAX_RAM_SIZE + PAGE_SIZE),
            Err(MemoryError::TooLarge {
                max: MAX_RAM_SIZE,
                ..
            })
        ));
        assert!(matches!(
            GuestRam::layout(16 * MIB + 1),
            Err(MemoryError::NotPageAligned { .. })
        ));
        GuestRam::layout(MAX_RAM_SIZE).unwrap();
    }

    #[test]
    fn sizes_read_in_the_largest_exact_unit() {
        assert_eq!(Bytes(512 * MIB).to_string(), "512 MiB");
        assert_eq!(Bytes(3 * GIB).to_string(), "3 GiB");
        assert_eq!(Bytes(GIB + 4096).to_string(), "1048580 KiB");
        assert_eq!(Bytes(4097).to_string(), "4097 bytes");
        assert_eq!(Bytes(0).to_string(), "0 bytes");
    }

    #[test]
    fn error_messages_name_the_size_and_limit() {
        let err = GuestRam::layout(MAX_RAM_SIZE + GIB).unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest memory size 64 GiB is too large: the layout holds at most 63 GiB (RAM must \
             end below the 64-bit PCI window)"
        );
    }
}
