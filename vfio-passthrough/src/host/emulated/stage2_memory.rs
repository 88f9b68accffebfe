//! Stage 2 as the software IOMMU uses it: one access through a paging [`Domain`], and the
//! guest's first-stage tables read and updated through the domain that maps them
//! ([`Stage2Tables`], a [`TableMemory`]).
//!
//! An access holds the domain's table lock from lookup to the end of the copy, so an unmap
//! (which takes it for writing) waits for accesses in flight and no access can use a mapping
//! after its unmap returned: nothing of stage 2 is cached anywhere. A write while dirty
//! tracking is on takes the lock for writing and sets the dirty bits of the granules it
//! touches before the data moves, as the IOMMU sets an IOPTE's dirty bit when it translates
//! the write.

use viommu::vtd::{Stage2Fault, TableMemory};

use crate::errno::Errno;

use super::domain::Domain;
use super::page_table::{Mapping, PageTable};
use super::pages::Pages;

/// Why stage 2 refused an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage2Error {
    /// Nothing maps the address.
    NotMapped,
    /// The mapping forbids the access (a write to a read-only mapping, ...).
    Denied,
    /// The memory behind the mapping could not be accessed.
    Backing,
}

/// The mapping holding `addr` and how many of `len` bytes from `addr` it covers.
fn lookup(
    table: &PageTable,
    addr: u64,
    len: u64,
    write: bool,
) -> Result<(&Mapping, u64, u64), Stage2Error> {
    let (start, m) = table.lookup(addr).ok_or(Stage2Error::NotMapped)?;
    let allowed = if write { m.prot.write } else { m.prot.read };
    if !allowed {
        return Err(Stage2Error::Denied);
    }
    let room = (m.last - addr).saturating_add(1);
    Ok((m, m.offset + (addr - start), len.min(room)))
}

/// Runs `op(pages, offset, n)` on the memory behind `[addr, addr + n)`, the first `n` (at
/// most `len`, at least 1) bytes of `[addr, addr + len)` that one mapping of `domain` covers;
/// returns `op`'s result and `n`. `len` should not be 0 (then `n` is 0).
pub(crate) fn access<R>(
    domain: &Domain,
    addr: u64,
    len: u64,
    write: bool,
    op: impl FnOnce(&Pages, u64, u64) -> Result<R, Errno>,
) -> Result<(R, u64), Stage2Error> {
    debug_assert!(len > 0);
    if write && domain.dirty_tracking() {
        let mut table = domain.write_table();
        let (pages, offset, n) = {
            let (m, offset, n) = lookup(&table, addr, len, write)?;
            (m.pages.clone(), offset, n)
        };
        table.set_dirty_range(addr, addr + n.saturating_sub(1));
        let r = op(&pages, offset, n).map_err(|_| Stage2Error::Backing)?;
        return Ok((r, n));
    }
    let table = domain.read_table();
    let (m, offset, n) = lookup(&table, addr, len, write)?;
    let r = op(&m.pages, offset, n).map_err(|_| Stage2Error::Backing)?;
    Ok((r, n))
}

/// A guest's first-stage tables, reached through the stage-2 domain that maps the guest
/// physical addresses they live at: every entry read and every flag update is a stage-2
/// access, and a flag update is a write (it dirties the table's page while tracking).
#[derive(Debug)]
pub(crate) struct Stage2Tables<'a> {
    domain: &'a Domain,
}

impl<'a> Stage2Tables<'a> {
    /// The tables behind `domain`.
    pub(crate) fn new(domain: &'a Domain) -> Self {
        Stage2Tables { domain }
    }

    /// `BeyondAddressWidth` when `gpa` is past what the domain can translate.
    fn check_width(&self, gpa: u64) -> Result<(), Stage2Fault> {
        let last = self.domain.geometry().aperture_last;
        if gpa > last {
            let width = (64 - last.leading_zeros()) as u8;
            return Err(Stage2Fault::BeyondAddressWidth { gpa, width });
        }
        Ok(())
    }
}

/// The stage-2 fault for a table access at `gpa`.
fn table_fault(e: Stage2Error, gpa: u64, write: bool) -> Stage2Fault {
    match e {
        Stage2Error::NotMapped => Stage2Fault::NotMapped { gpa },
        Stage2Error::Denied if write => Stage2Fault::WriteDenied { gpa },
        Stage2Error::Denied => Stage2Fault::ReadDenied { gpa },
        Stage2Error::Backing => Stage2Fault::MemoryError { gpa },
    }
}

impl TableMemory for Stage2Tables<'_> {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        self.check_width(gpa)?;
        let (entry, _) = access(self.domain, gpa, 8, false, |pages, offset, n| {
            let mut bytes = [0u8; 8];
            if n < 8 {
                return Err(Errno::EFAULT);
            }
            pages.read(offset, &mut bytes)?;
            Ok(u64::from_le_bytes(bytes))
        })
        .map_err(|e| table_fault(e, gpa, false))?;
        Ok(entry)
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        self.check_width(gpa)?;
        let (old, _) = access(self.domain, gpa, 8, true, |pages, offset, n| {
            if n < 8 {
                return Err(Errno::EFAULT);
            }
            pages.compare_exchange_u64(offset, current, new)
        })
        .map_err(|e| table_fault(e, gpa, true))?;
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::host::emulated::PAGE_SIZE;
    use crate::host::emulated::accounting::AccountMode;
    use crate::host::emulated::config::HostConfig;
    use crate::host::emulated::host::EmulatedHost;
    use crate::host::emulated::page_table::Prot;
    use crate::host::emulated::profile::{Driver, IommuProfile};
    use crate::host::emulated::test_memory::Mapping as TestMapping;
    use crate::host::emulated::vtd::VtdIommu;

    const RW: Prot = Prot {
        read: true,
        write: true,
    };
    const RO: Prot = Prot {
        read: true,
        write: false,
    };

    /// A VT-d domain with dirty ops mapping `[0x10_0000, +4 pages)` to `mem`, read-write, and
    /// `[0x20_0000, +1 page)` to its first page read-only.
    fn setup(mem: &TestMapping) -> (Arc<Domain>, Arc<Pages>) {
        let host = EmulatedHost::new(HostConfig::unprivileged(0));
        let pages = Pages::user(&host, mem.addr(), 4 * PAGE_SIZE, true, AccountMode::None).unwrap();
        let profile = IommuProfile::Vtd(VtdIommu::default());
        let d = Domain::new(Driver::Vtd, profile.geometry(), true, true);
        d.write_table()
            .map(0x10_0000, 4 * PAGE_SIZE, pages.clone(), 0, RW);
        d.write_table()
            .map(0x20_0000, PAGE_SIZE, pages.clone(), 0, RO);
        (d, pages)
    }

    fn teardown(d: &Domain) {
        d.write_table().unmap(0x10_0000, 4 * PAGE_SIZE);
        d.write_table().unmap(0x20_0000, PAGE_SIZE);
    }

    #[test]
    fn an_access_stops_at_the_end_of_its_mapping() {
        let mem = TestMapping::anon(4 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let (d, _pages) = setup(&mem);
        let ((offset, seen), n) =
            access(&d, 0x10_3ff0, 0x100, false, |_, off, n| Ok((off, n))).unwrap();
        assert_eq!((offset, seen, n), (0x3ff0, 0x10, 0x10));
        assert_eq!(
            access(&d, 0x10_4000, 1, false, |_, _, _| Ok(())),
            Err(Stage2Error::NotMapped)
        );
        assert_eq!(
            access(&d, 0x20_0000, 8, true, |_, _, _| Ok(())),
            Err(Stage2Error::Denied)
        );
        teardown(&d);
    }

    #[test]
    fn writes_dirty_their_granules_only_while_tracking() {
        let mem = TestMapping::anon(4 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let (d, _pages) = setup(&mem);
        access(&d, 0x10_1000, 8, true, |p, off, _| p.write(off, &[1; 8])).unwrap();
        assert!(!d.read_table().is_dirty(0x10_1000));
        d.set_tracking(true);
        access(&d, 0x10_1ffc, 8, true, |p, off, n| {
            p.write(off, &[1; 8][..n as usize])
        })
        .unwrap();
        assert!(d.read_table().is_dirty(0x10_1000));
        assert!(
            d.read_table().is_dirty(0x10_2000),
            "both granules the write touched"
        );
        access(&d, 0x10_3000, 8, false, |p, off, _| {
            p.read(off, &mut [0; 8])
        })
        .unwrap();
        assert!(!d.read_table().is_dirty(0x10_3000), "reads do not dirty");
        teardown(&d);
    }

    #[test]
    fn table_entries_are_read_and_exchanged_through_stage_2() {
        let mem = TestMapping::anon(4 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let (d, _pages) = setup(&mem);
        d.set_tracking(true);
        let mut tables = Stage2Tables::new(&d);
        assert_eq!(tables.read_entry(0x10_2008), Ok(0));
        assert_eq!(tables.compare_exchange_entry(0x10_2008, 0, 0x23), Ok(0));
        assert_eq!(tables.compare_exchange_entry(0x10_2008, 0, 0x63), Ok(0x23));
        assert_eq!(tables.read_entry(0x10_2008), Ok(0x23));
        assert!(
            d.read_table().is_dirty(0x10_2000),
            "a flag update writes the table page"
        );
        assert_eq!(
            tables.read_entry(0x30_0000),
            Err(Stage2Fault::NotMapped { gpa: 0x30_0000 })
        );
        crate::host::emulated::user_memory::write(mem.addr() + 0x10, &0x77u64.to_le_bytes())
            .unwrap();
        assert_eq!(
            tables.read_entry(0x20_0010),
            Ok(0x77),
            "read-only stage 2 still reads"
        );
        assert_eq!(
            tables.compare_exchange_entry(0x20_0010, 0, 1),
            Err(Stage2Fault::WriteDenied { gpa: 0x20_0010 })
        );
        assert_eq!(
            tables.read_entry(1 << 48),
            Err(Stage2Fault::BeyondAddressWidth {
                gpa: 1 << 48,
                width: 48
            })
        );
        teardown(&d);
    }
}
