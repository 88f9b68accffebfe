//! The first-stage page walker: x86-64 4- or 5-level paging as VT-d applies it to DMA.
//!
//! One walk reads one entry per level through [`TableMemory`], checks P, the reserved bits and
//! the accumulated U/S and R/W rights at each level, and sets A (and EA under EAFE) on every entry
//! it uses and D on the leaf of a write, each with a compare-and-set. A failed compare-and-set
//! means someone changed the entry meanwhile: the walker re-checks the new value as if it had read
//! it first, so no concurrent update is lost and none is overridden.
//!
//! The walk returns a guest physical address. In nested translation the caller translates that
//! output through stage 2 itself; only the table reads go through [`TableMemory`].

use super::access::{Access, Denial, Permissions};
use super::config::FirstStageConfig;
use super::fault::FirstStageFault;
use super::memory::TableMemory;
use super::pte::{
    ACCESSED, DIRTY, EXTENDED_ACCESSED, PRESENT, PageSize, is_leaf, output_address, reserved_bits,
    table_index,
};

/// How many times the walker retries setting flags in one entry whose value keeps changing
/// before reporting [`FirstStageFault::EntryUpdateContended`]. A retry needs a racing writer
/// between one compare-and-set and the next (a few checks apart), so reaching this takes a guest
/// rewriting the entry in a tight loop; the bound keeps such a guest from holding a DMA thread.
pub const MAX_FLAG_UPDATE_RETRIES: u32 = 1024;

/// A successful first-stage translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Guest physical address the input address translates to.
    pub output: u64,
    /// Size of the page the leaf maps.
    pub page_size: PageSize,
    /// Rights accumulated over the walk.
    pub permissions: Permissions,
    /// The leaf's D flag is set (always after a write was translated).
    pub dirty: bool,
}

impl Translation {
    /// Guest physical address where the mapped page starts.
    pub const fn output_page(&self) -> u64 {
        self.page_size.align_down(self.output)
    }

    /// Bytes from the output address to the end of the page: how far a DMA may run before it
    /// needs another translation.
    pub const fn bytes_to_page_end(&self) -> u64 {
        self.page_size.bytes() - self.page_size.offset(self.output)
    }
}

/// Where a walk begins: at the root, or below a cached non-leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalkStart {
    /// Level of the table the walk reads first.
    pub level: u8,
    /// Guest physical address of that table.
    pub table: u64,
    /// Rights accumulated by the entries above it.
    pub permissions: Permissions,
}

impl WalkStart {
    /// The start of a full walk.
    pub(crate) const fn root(config: &FirstStageConfig) -> Self {
        WalkStart {
            level: config.mode().levels(),
            table: config.root(),
            permissions: Permissions::ALL,
        }
    }
}

/// A non-leaf entry a walk used, in the form a paging-structure cache keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UsedTable {
    /// Level of the entry (2..=5).
    pub level: u8,
    /// Guest physical address of the table it points to (level `level - 1`).
    pub next_table: u64,
    /// Rights accumulated down to and including this entry.
    pub permissions: Permissions,
}

/// Checks a request before any table is read: SRE for privileged requests, then canonicality.
pub(crate) const fn check_request(
    config: &FirstStageConfig,
    iova: u64,
    access: Access,
) -> Result<(), FirstStageFault> {
    if access.privileged && !config.flags().sre {
        return Err(FirstStageFault::SupervisorRequestsDisabled { iova });
    }
    if !config.mode().is_canonical(iova) {
        return Err(FirstStageFault::NonCanonical {
            iova,
            width: config.mode().input_width(),
        });
    }
    Ok(())
}

/// Translates `iova` for `access` by walking the first-stage table `config` describes, setting
/// the accessed and dirty flags on the way.
///
/// ```
/// use viommu::vtd::{
///     walk, Access, FirstStageConfig, FirstStageTableBuilder, PageSize, PagingMode,
///     SparseTableMemory, pte,
/// };
///
/// let mut mem = SparseTableMemory::new();
/// let mut tables =
///     FirstStageTableBuilder::new(&mut mem, PagingMode::FourLevel, 0x10_0000..0x20_0000).unwrap();
/// tables
///     .map(&mut mem, 0x4000_0000, 0x8000_0000, PageSize::Size2MiB, pte::USER | pte::WRITABLE)
///     .unwrap();
/// let config = FirstStageConfig::new(tables.root(), PagingMode::FourLevel, 48).unwrap();
///
/// let t = walk(&config, 0x4000_1234, Access::WRITE, &mut mem).unwrap();
/// assert_eq!(t.output, 0x8000_1234);
/// assert_eq!(t.page_size, PageSize::Size2MiB);
/// assert!(t.dirty);
/// ```
pub fn walk<M: TableMemory + ?Sized>(
    config: &FirstStageConfig,
    iova: u64,
    access: Access,
    mem: &mut M,
) -> Result<Translation, FirstStageFault> {
    check_request(config, iova, access)?;
    walk_from(config, iova, access, mem, WalkStart::root(config), |_| {})
}

/// Walks from `start` (the request already passed [`check_request`]), telling `used_table` about
/// every non-leaf entry it used.
pub(crate) fn walk_from<M: TableMemory + ?Sized>(
    config: &FirstStageConfig,
    iova: u64,
    access: Access,
    mem: &mut M,
    start: WalkStart,
    mut used_table: impl FnMut(UsedTable),
) -> Result<Translation, FirstStageFault> {
    let root_level = config.mode().levels();
    let flags = config.flags();
    let used_flags = ACCESSED | if flags.eafe { EXTENDED_ACCESSED } else { 0 };
    let mut level = start.level;
    let mut table = start.table;
    let mut permissions = start.permissions;
    loop {
        let entry_gpa = table + table_index(iova, level) * 8;
        let root = level == root_level;
        let stage2 = |fault| FirstStageFault::Stage2 {
            iova,
            level,
            root,
            fault,
        };
        let mut value = mem.read_entry(entry_gpa).map_err(stage2)?;
        let mut retries = 0;
        let (value, leaf, rights) = loop {
            if value & PRESENT == 0 {
                return Err(FirstStageFault::NotPresent {
                    iova,
                    level,
                    entry_gpa,
                });
            }
            let bits = reserved_bits(
                value,
                level,
                config.host_address_width(),
                config.one_gib_pages(),
            );
            if bits != 0 {
                return Err(FirstStageFault::ReservedBits {
                    iova,
                    level,
                    entry_gpa,
                    value,
                    bits,
                });
            }
            let rights = permissions.through(value);
            match rights.check(access, flags) {
                Ok(()) => {}
                Err(Denial::UserPrivilege) => {
                    return Err(FirstStageFault::UserPrivilege {
                        iova,
                        level,
                        entry_gpa,
                    });
                }
                Err(Denial::ReadOnly) => {
                    return Err(FirstStageFault::WriteDenied {
                        iova,
                        level,
                        entry_gpa,
                    });
                }
            }
            let leaf = is_leaf(value, level);
            let wanted = value | used_flags | if leaf && access.write { DIRTY } else { 0 };
            if wanted == value {
                break (value, leaf, rights);
            }
            let seen = mem
                .compare_exchange_entry(entry_gpa, value, wanted)
                .map_err(stage2)?;
            if seen == value {
                break (wanted, leaf, rights);
            }
            retries += 1;
            if retries > MAX_FLAG_UPDATE_RETRIES {
                return Err(FirstStageFault::EntryUpdateContended {
                    iova,
                    level,
                    entry_gpa,
                });
            }
            value = seen;
        };
        let next = output_address(value, level);
        if leaf {
            // A leaf only exists at levels 1..=3, which all have a page size.
            let page_size = PageSize::for_leaf_level(level).unwrap_or(PageSize::Size4KiB);
            return Ok(Translation {
                output: next | page_size.offset(iova),
                page_size,
                permissions: rights,
                dirty: value & DIRTY != 0,
            });
        }
        used_table(UsedTable {
            level,
            next_table: next,
            permissions: rights,
        });
        permissions = rights;
        table = next;
        level -= 1;
    }
}
