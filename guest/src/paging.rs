//! Maps MMIO above 4 GiB. The VMM enters us with the first 4 GiB identity mapped; a 64-bit BAR
//! may sit in the 64-bit MMIO window (64 GiB up), so we add identity 2 MiB pages for it to the
//! VMM's tables, with page-table pages from a small pool of our own.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const LARGE_PAGE: u64 = 2 << 20;
/// Everything below is identity mapped by the VMM on entry.
const ENTRY_MAPPED_END: u64 = 4 << 30;
/// Page-table pages we can add: each maps another 1 GiB (a PD) or 512 GiB (a PDPT).
const POOL_PAGES: usize = 8;

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Pool(UnsafeCell<[Table; POOL_PAGES]>);
// SAFETY: one vCPU; each page is handed out once (by the atomic index) and then only reached
// through the page tables.
unsafe impl Sync for Pool {}
static POOL: Pool = Pool(UnsafeCell::new([const { Table([0; 512]) }; POOL_PAGES]));
static POOL_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Why a range could not be mapped.
#[derive(Debug, Clone, Copy)]
pub struct OutOfTables;

fn new_table() -> Result<u64, OutOfTables> {
    let index = POOL_NEXT.fetch_add(1, Ordering::Relaxed);
    if index >= POOL_PAGES {
        return Err(OutOfTables);
    }
    // The pool is in .bss, zeroed by the loader, and identity mapped (we run at 1 MiB).
    Ok(POOL.0.get() as u64 + (index as u64) * 4096)
}

/// The table that `entry` (in the table at `table`, index `index`) points to, created if
/// missing. `None` when the entry is already a large page, which maps the address already.
///
/// # Safety
/// `table` must be a live page-table page, identity mapped.
unsafe fn next_level(table: u64, index: u64) -> Result<Option<u64>, OutOfTables> {
    let entry = (table + index * 8) as *mut u64;
    // SAFETY: the caller guarantees `table` is a mapped page table; index < 512.
    let value = unsafe { entry.read_volatile() };
    if value & PRESENT != 0 {
        return Ok((value & HUGE == 0).then_some(value & ADDRESS_MASK));
    }
    let new = new_table()?;
    // SAFETY: as above; the new table is zeroed and ours.
    unsafe { entry.write_volatile(new | PRESENT | WRITABLE) };
    Ok(Some(new))
}

/// Identity maps `[addr, addr + len)` uncached, if it is above what the VMM mapped.
pub fn map_mmio(addr: u64, len: u64) -> Result<(), OutOfTables> {
    let end = addr + len;
    if end <= ENTRY_MAPPED_END {
        return Ok(());
    }
    let cr3: u64;
    // SAFETY: reading CR3 has no effects.
    unsafe { asm!("mov {0}, cr3", out(reg) cr3, options(nomem, nostack)) };
    let pml4 = cr3 & ADDRESS_MASK;
    let mut page = addr & !(LARGE_PAGE - 1);
    while page < end {
        // SAFETY: CR3 points at the live, identity-mapped PML4; each level returns a live
        // table (existing or from our pool).
        unsafe {
            let pd = match next_level(pml4, (page >> 39) & 511)? {
                Some(pdpt) => next_level(pdpt, (page >> 30) & 511)?,
                None => None,
            };
            if let Some(pd) = pd {
                let entry = (pd + ((page >> 21) & 511) * 8) as *mut u64;
                if entry.read_volatile() & PRESENT == 0 {
                    entry.write_volatile(
                        page | PRESENT | WRITABLE | WRITE_THROUGH | CACHE_DISABLE | HUGE,
                    );
                }
            }
        }
        page += LARGE_PAGE;
    }
    // SAFETY: reloading CR3 with its own value flushes the TLB; the tables stay valid.
    unsafe { asm!("mov cr3, {0}", in(reg) cr3, options(nostack)) };
    Ok(())
}
