//! [`Ioas`]: an I/O address space (the kernel's `struct io_pagetable`).
//!
//! Areas, reserved and allowed ranges live in a [`resources::IovaSpace`], which also does the
//! kernel's automatic placement. This module adds what touches memory and domains, in the
//! order of `io_pagetable.c`: the alignment that follows the attached domains, loading areas
//! into domains (pinning through [`Pages`]) when they are created or a domain arrives, and
//! unmapping whole areas only, non-atomically.

use std::sync::Arc;

use resources::{AddrRange, IovaError, IovaSpace, auto_alignment};

use crate::errno::Errno;

use super::PAGE_SIZE;
use super::domain::Domain;
use super::page_table::{BitmapOut, Prot};
use super::pages::Pages;

/// One mapped area: a slice of a [`Pages`].
#[derive(Debug)]
pub(crate) struct Area {
    /// The memory.
    pub(crate) pages: Arc<Pages>,
    /// Byte offset in `pages` of the area's first IOVA (`iopt_area_start_byte`).
    pub(crate) start_byte: u64,
    /// Access rights.
    pub(crate) prot: Prot,
}

/// Page indexes `[first, last]` of its pages that `length` bytes from `start_byte` cover.
fn index_range(start_byte: u64, length: u64) -> (u64, u64) {
    (
        start_byte / PAGE_SIZE,
        (start_byte + (length - 1)) / PAGE_SIZE,
    )
}

impl Area {
    /// Page indexes `[first, last]` of `pages` the area covers, for its `length`.
    fn index_range(&self, length: u64) -> (u64, u64) {
        index_range(self.start_byte, length)
    }

    /// Offset of the area's first byte inside its first page (`area->page_offset`).
    fn page_offset(&self) -> u64 {
        self.start_byte % PAGE_SIZE
    }
}

/// A piece of pages to become one area (`struct iopt_pages_list`).
#[derive(Debug, Clone)]
pub(crate) struct PagesPiece {
    pub(crate) pages: Arc<Pages>,
    pub(crate) start_byte: u64,
    pub(crate) length: u64,
}

/// A domain linked to the IOAS, with the paging HWPT that owns it.
#[derive(Debug, Clone)]
pub(crate) struct DomainLink {
    pub(crate) hwpt_id: u32,
    pub(crate) domain: Arc<Domain>,
}

/// Who owns a reserved range (the `owner` pointer of `iopt_reserve_iova`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// `IOMMU_TEST_OP_ADD_RESERVED` (owner NULL): stays until the IOAS is destroyed.
    Test,
    /// A domain's aperture.
    Domain(u32),
    /// A device's reserved regions.
    Device(u32),
}

impl Owner {
    fn key(self) -> u64 {
        match self {
            Owner::Test => 0,
            Owner::Domain(id) => 1 << 32 | u64::from(id),
            Owner::Device(id) => 2 << 32 | u64::from(id),
        }
    }
}

/// The errno iommufd returns for each way the IOVA space refuses.
pub(crate) fn iova_errno(e: IovaError) -> Errno {
    match e {
        IovaError::Reserved { .. } => Errno::EINVAL,
        IovaError::Exists { .. } => Errno::EEXIST,
        IovaError::InUse { .. } => Errno::EADDRINUSE,
        IovaError::NoSpace { .. } => Errno::ENOSPC,
        IovaError::Overflow { .. } => Errno::EOVERFLOW,
        IovaError::AllowedTooSmall { .. }
        | IovaError::AllowedOverlap { .. }
        | IovaError::BadParameter { .. } => Errno::EINVAL,
    }
}

/// An IOAS.
#[derive(Debug)]
pub(crate) struct Ioas {
    space: IovaSpace<Area>,
    iova_alignment: u64,
    disable_large_pages: bool,
    /// Attached domains, in the kernel's xarray order.
    domains: Vec<DomainLink>,
    /// Paging HWPTs linked to the IOAS, oldest first (`ioas->hwpt_list`).
    pub(crate) hwpt_list: Vec<u32>,
}

impl Default for Ioas {
    fn default() -> Self {
        Ioas {
            space: IovaSpace::new(),
            iova_alignment: 1,
            disable_large_pages: false,
            domains: Vec::new(),
            hwpt_list: Vec::new(),
        }
    }
}

impl Ioas {
    /// `iopt->iova_alignment`.
    pub(crate) fn iova_alignment(&self) -> u64 {
        self.iova_alignment
    }

    /// `!iopt->disable_large_pages`.
    pub(crate) fn large_pages(&self) -> bool {
        !self.disable_large_pages
    }

    /// The areas: (range, area), ascending.
    pub(crate) fn areas(&self) -> impl Iterator<Item = (AddrRange, &Area)> {
        self.space.areas().iter()
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: the holes of the reserved ranges.
    pub(crate) fn iova_ranges(&self) -> Vec<AddrRange> {
        self.space.reserved_holes()
    }

    /// `iopt_set_allow_iova` after `iommufd_ioas_load_iovas`: `EINVAL` for a range with
    /// `start >= last` or overlapping another, `EADDRINUSE` for one meeting a reserved range.
    pub(crate) fn set_allowed(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        let mut list = Vec::with_capacity(ranges.len());
        for &(start, last) in ranges {
            list.push(AddrRange::new(start, last).map_err(|_| Errno::EINVAL)?);
        }
        self.space.set_allowed(&list).map_err(iova_errno)
    }

    /// `iopt_reserve_iova`: `EADDRINUSE` if the range meets an area or an allowed range.
    pub(crate) fn reserve(&mut self, start: u64, last: u64, owner: Owner) -> Result<(), Errno> {
        let range = AddrRange::new(start, last).map_err(|_| Errno::EINVAL)?;
        self.space.reserve(range, owner.key()).map_err(iova_errno)
    }

    /// `iopt_remove_reserved_iova`.
    pub(crate) fn remove_reserved(&mut self, owner: Owner) {
        self.space.unreserve_owner(owner.key());
    }

    /// `iopt_table_enforce_dev_resv_regions`: reserves each region for `owner`; on failure
    /// removes what it reserved for `owner` (`EADDRINUSE`).
    pub(crate) fn enforce_reserved(
        &mut self,
        regions: &[(u64, u64)],
        owner: Owner,
    ) -> Result<(), Errno> {
        for &(start, last) in regions {
            if let Err(e) = self.reserve(start, last, owner) {
                self.remove_reserved(owner);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `iopt_check_iova_alignment`: every area's IOVA, length and page offset must respect
    /// `align`, else `EADDRINUSE`.
    fn check_alignment(&self, align: u64) -> Result<(), Errno> {
        let mask = align - 1;
        for (range, area) in self.space.areas().iter() {
            if range.start() & mask != 0
                || (range.size() as u64) & mask != 0
                || area.page_offset() & mask != 0
            {
                return Err(Errno::EADDRINUSE);
            }
        }
        Ok(())
    }

    /// `iopt_calculate_iova_alignment`.
    fn recalculate_alignment(&mut self) -> Result<(), Errno> {
        let mut align = if self.disable_large_pages {
            PAGE_SIZE
        } else {
            1
        };
        for link in &self.domains {
            align = align.max(link.domain.geometry().granule());
        }
        if align > self.iova_alignment {
            self.check_alignment(align)?;
        }
        self.iova_alignment = align;
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` set to 0: `EINVAL` if a domain is attached and areas exist,
    /// `EADDRINUSE` if existing areas do not respect `PAGE_SIZE`.
    pub(crate) fn disable_large_pages(&mut self) -> Result<(), Errno> {
        if self.disable_large_pages {
            return Ok(());
        }
        if !self.domains.is_empty() && !self.space.areas().is_empty() {
            return Err(Errno::EINVAL);
        }
        self.disable_large_pages = true;
        if let Err(e) = self.recalculate_alignment() {
            self.disable_large_pages = false;
            return Err(e);
        }
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` set to 1.
    pub(crate) fn enable_large_pages(&mut self) {
        self.disable_large_pages = false;
        let r = self.recalculate_alignment();
        debug_assert!(r.is_ok(), "lowering the alignment cannot fail");
    }

    /// `iopt_table_add_domain`: raises the alignment to the domain's granule (`EINVAL` above
    /// `PAGE_SIZE`, `EADDRINUSE` if areas break it), reserves what lies outside its aperture
    /// (`EADDRINUSE`), and fills it with every area (pinning when it is the first domain:
    /// `EFAULT`, `ENOMEM`). On error nothing changes.
    pub(crate) fn add_domain(&mut self, hwpt_id: u32, domain: Arc<Domain>) -> Result<(), Errno> {
        debug_assert!(!self.domains.iter().any(|l| l.hwpt_id == hwpt_id));
        let geometry = domain.geometry();
        let new_alignment = geometry.granule().max(self.iova_alignment);
        if new_alignment > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        if new_alignment != self.iova_alignment {
            self.check_alignment(new_alignment)?;
        }
        let owner = Owner::Domain(hwpt_id);
        let mut aperture = Vec::new();
        if geometry.aperture_start != 0 {
            aperture.push((0, geometry.aperture_start - 1));
        }
        if geometry.aperture_last != u64::MAX {
            aperture.push((geometry.aperture_last + 1, u64::MAX));
        }
        self.enforce_reserved(&aperture, owner)?;
        if let Err(e) = self.fill_domain(&domain) {
            self.remove_reserved(owner);
            return Err(e);
        }
        self.iova_alignment = new_alignment;
        self.domains.push(DomainLink { hwpt_id, domain });
        Ok(())
    }

    /// `iopt_fill_domain`: maps every area into `domain`, loading the pages when no other
    /// domain holds them. On error the domain is left empty.
    fn fill_domain(&self, domain: &Domain) -> Result<(), Errno> {
        let first = self.domains.is_empty();
        let mut done: Vec<(AddrRange, &Area)> = Vec::new();
        let mut table = domain.write_table();
        for (range, area) in self.space.areas().iter() {
            let length = range.size() as u64;
            if first {
                let (lo, hi) = area.index_range(length);
                if let Err(e) = area.pages.load(lo, hi) {
                    for (r, a) in done {
                        let len = r.size() as u64;
                        table.unmap(r.start(), len);
                        let (lo, hi) = a.index_range(len);
                        a.pages.unload(lo, hi);
                    }
                    return Err(e);
                }
            }
            table.map(
                range.start(),
                length,
                area.pages.clone(),
                area.start_byte,
                area.prot,
            );
            done.push((range, area));
        }
        Ok(())
    }

    /// `iopt_table_remove_domain`: unmaps every area from the domain (unpinning when it was the
    /// last), drops its reservations and lowers the alignment. Returns the domain.
    pub(crate) fn remove_domain(&mut self, hwpt_id: u32) -> Option<Arc<Domain>> {
        let index = self.domains.iter().position(|l| l.hwpt_id == hwpt_id)?;
        let link = self.domains.swap_remove(index);
        let last = self.domains.is_empty();
        {
            let mut table = link.domain.write_table();
            for (range, area) in self.space.areas().iter() {
                let length = range.size() as u64;
                table.unmap(range.start(), length);
                if last {
                    let (lo, hi) = area.index_range(length);
                    area.pages.unload(lo, hi);
                }
            }
            debug_assert_eq!(table.len(), 0, "domain not empty after unfill");
        }
        self.remove_reserved(Owner::Domain(hwpt_id));
        let r = self.recalculate_alignment();
        debug_assert!(r.is_ok(), "lowering the alignment cannot fail");
        Some(link.domain)
    }

    /// `iopt_alloc_iova` with its alignment derivation: `EOVERFLOW` for a length of 0 or
    /// at least 2^63, `EINVAL` if the derived alignment is below the IOAS's, `ENOSPC`.
    fn alloc_iova(&mut self, hint: u64, length: u64, max_alignment: u64) -> Result<u64, Errno> {
        let a = auto_alignment(length, hint, PAGE_SIZE, max_alignment).map_err(iova_errno)?;
        if a.alignment < self.iova_alignment {
            return Err(Errno::EINVAL);
        }
        self.space
            .alloc(length, a.alignment, a.page_offset, PAGE_SIZE)
            .map_err(iova_errno)
    }

    /// `iopt_check_iova`: `EINVAL` unaligned, `EOVERFLOW`, `EINVAL` on a reserved range,
    /// `EEXIST` over an area.
    fn check_iova(&self, iova: u64, length: u64) -> Result<AddrRange, Errno> {
        let range = self.check_iova_bounds(iova, length)?;
        self.space.check_fixed(range).map_err(iova_errno)?;
        Ok(range)
    }

    /// The checks of `iopt_check_iova` that need no tree: `EINVAL` unaligned, `EOVERFLOW`.
    fn check_iova_bounds(&self, iova: u64, length: u64) -> Result<AddrRange, Errno> {
        if iova & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        AddrRange::from_start_len(iova, length).map_err(|_| Errno::EOVERFLOW)
    }

    /// `iopt_map_pages`: places (at `*iova`, or automatically when `auto` using `max_alignment`)
    /// one area per piece, back to back, and loads them into every domain. On error nothing
    /// changes.
    pub(crate) fn map_pages(
        &mut self,
        pieces: &[PagesPiece],
        length: u64,
        iova: &mut u64,
        prot: Prot,
        auto: bool,
        max_alignment: u64,
    ) -> Result<(), Errno> {
        if length & (self.iova_alignment - 1) != 0 || length == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(first) = pieces.first() else {
            return Err(Errno::EINVAL);
        };
        // The areas lie back to back from `*iova`: the first `inserted` pieces are in.
        let mut inserted = 0;
        let mut failure = None;
        if let (false, [piece]) = (auto, pieces) {
            // One piece at a fixed IOVA (MAP, MAP_FILE): its insertion finds in the same
            // descent what `iopt_check_iova` looks for in the tree (and reports it the same
            // way); the piece's own checks follow and undo the insertion if they fail, which
            // gives the kernel's errors in the kernel's order.
            let range = self.check_iova_bounds(*iova, length)?;
            let area = Area {
                pages: piece.pages.clone(),
                start_byte: piece.start_byte,
                prot,
            };
            self.space.insert_area(range, area).map_err(iova_errno)?;
            inserted = 1;
            failure = self.check_area(*iova, piece, prot).err();
        } else {
            if auto {
                let hint = first.pages.base() + first.start_byte;
                *iova = self.alloc_iova(hint, length, max_alignment)?;
                debug_assert!(self.check_iova(*iova, length).is_ok());
            } else {
                self.check_iova(*iova, length)?;
            }
            let mut cursor = *iova;
            for piece in pieces {
                if let Err(e) = self.insert_area(cursor, piece, prot) {
                    failure = Some(e);
                    break;
                }
                inserted += 1;
                cursor = cursor.wrapping_add(piece.length);
            }
        }
        if failure.is_none() {
            failure = self.fill_domains(*iova, pieces, prot).err();
        }
        if let Some(e) = failure {
            let mut cursor = *iova;
            for piece in &pieces[..inserted] {
                self.space.remove_area(cursor);
                cursor = cursor.wrapping_add(piece.length);
            }
            return Err(e);
        }
        Ok(())
    }

    /// `iopt_insert_area`: [`Ioas::check_area`], then the insertion.
    fn insert_area(&mut self, iova: u64, piece: &PagesPiece, prot: Prot) -> Result<(), Errno> {
        let range = self.check_area(iova, piece, prot)?;
        let area = Area {
            pages: piece.pages.clone(),
            start_byte: piece.start_byte,
            prot,
        };
        self.space.insert_area(range, area).map_err(iova_errno)
    }

    /// The checks of `iopt_insert_area`: `EPERM` for a writable mapping of read-only pages,
    /// `EINVAL` for a page offset breaking the alignment, `EOVERFLOW`. Returns the area's range.
    fn check_area(&self, iova: u64, piece: &PagesPiece, prot: Prot) -> Result<AddrRange, Errno> {
        if prot.write && !piece.pages.writable() {
            return Err(Errno::EPERM);
        }
        if (piece.start_byte % PAGE_SIZE) & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let range = AddrRange::from_start_len(iova, piece.length).map_err(|_| Errno::EOVERFLOW)?;
        piece
            .start_byte
            .checked_add(piece.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        Ok(range)
    }

    /// `iopt_fill_domains_pages`: loads the areas just inserted for `pieces` (back to back
    /// from `iova`, with `prot`) into every domain; undoes on error.
    fn fill_domains(&self, iova: u64, pieces: &[PagesPiece], prot: Prot) -> Result<(), Errno> {
        if self.domains.is_empty() {
            return Ok(());
        }
        let mut cursor = iova;
        for (i, piece) in pieces.iter().enumerate() {
            if let Err(e) = self.fill_area(cursor, piece, prot) {
                let mut cursor = iova;
                for done in &pieces[..i] {
                    self.unfill_area(cursor, done.length, &done.pages, done.start_byte);
                    cursor = cursor.wrapping_add(done.length);
                }
                return Err(e);
            }
            cursor = cursor.wrapping_add(piece.length);
        }
        Ok(())
    }

    /// `iopt_area_fill_domains`: pins the pages of the area at `iova` made from `piece` and
    /// maps them into each domain.
    fn fill_area(&self, iova: u64, piece: &PagesPiece, prot: Prot) -> Result<(), Errno> {
        let (lo, hi) = index_range(piece.start_byte, piece.length);
        piece.pages.load(lo, hi)?;
        for link in &self.domains {
            link.domain.write_table().map(
                iova,
                piece.length,
                piece.pages.clone(),
                piece.start_byte,
                prot,
            );
        }
        Ok(())
    }

    /// `iopt_area_unfill_domains`: unmaps the area of `length` bytes at `iova` from each
    /// domain, then unpins its pages (from byte `start_byte` of `pages`).
    fn unfill_area(&self, iova: u64, length: u64, pages: &Pages, start_byte: u64) {
        if self.domains.is_empty() {
            return;
        }
        for link in &self.domains {
            link.domain.write_table().unmap(iova, length);
        }
        let (lo, hi) = index_range(start_byte, length);
        pages.unload(lo, hi);
    }

    /// `iopt_get_pages`: the pieces of pages behind `[iova, iova + length)`, which contiguous
    /// areas must cover entirely: `EINVAL` for length 0, `EOVERFLOW`, `ENOENT` on a gap.
    pub(crate) fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<PagesPiece>, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        let mut pieces = Vec::new();
        let mut cursor = iova;
        loop {
            let (range, area) = self.space.area_at(cursor).ok_or(Errno::ENOENT)?;
            let piece_last = last.min(range.last());
            pieces.push(PagesPiece {
                pages: area.pages.clone(),
                start_byte: area.start_byte + (cursor - range.start()),
                length: piece_last - cursor + 1,
            });
            if piece_last == last {
                return Ok(pieces);
            }
            cursor = piece_last + 1;
        }
    }

    /// `iopt_unmap_iova_range` over `[start, last]`: removes areas lying entirely inside,
    /// lowest first; stops with `ENOENT` at the first one sticking out (areas already removed
    /// stay removed). Returns the bytes unmapped.
    pub(crate) fn unmap_range(&mut self, mut start: u64, last: u64) -> Result<u64, (Errno, u64)> {
        let mut unmapped = 0u64;
        loop {
            let Ok(window) = AddrRange::new(start, last) else {
                return Ok(unmapped);
            };
            // Only the domains (not the area list) are seen outside the context lock, so the
            // area may leave the list before it leaves them; it is dropped after.
            let (range, area) = match self.space.take_first_area_within(window) {
                Ok(Some(taken)) => taken,
                Ok(None) => return Ok(unmapped),
                Err(_) => return Err((Errno::ENOENT, unmapped)),
            };
            let length = range.size() as u64;
            self.unfill_area(range.start(), length, &area.pages, area.start_byte);
            drop(area);
            unmapped = unmapped.wrapping_add(length);
            if range.last() >= last {
                return Ok(unmapped);
            }
            start = range.last() + 1;
        }
    }

    /// `iopt_unmap_iova`: `EINVAL` for length 0, `EOVERFLOW`, then [`Ioas::unmap_range`].
    pub(crate) fn unmap(&mut self, iova: u64, length: u64) -> Result<u64, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.unmap_range(iova, last).map_err(|(e, _)| e)
    }

    /// `iopt_unmap_all`: always succeeds; returns the bytes unmapped.
    pub(crate) fn unmap_all(&mut self) -> u64 {
        match self.unmap_range(0, u64::MAX) {
            Ok(n) => n,
            Err((_, n)) => {
                debug_assert!(false, "unmap of everything found an area sticking out");
                n
            }
        }
    }

    /// `iommu_read_and_clear_dirty` after its checks: walks the areas contiguous from `iova`
    /// (stopping at the first gap, whose `EINVAL` the 6.12 core ignores) and harvests each
    /// piece from the domain.
    pub(crate) fn read_dirty(
        &self,
        domain: &Domain,
        iova: u64,
        last: u64,
        out: &mut BitmapOut<'_>,
        no_clear: bool,
    ) {
        let mut cursor = iova;
        while let Some((range, _)) = self.space.area_at(cursor) {
            let piece_last = last.min(range.last());
            domain.read_and_clear_dirty(cursor, piece_last, out, no_clear);
            if piece_last == last {
                return;
            }
            cursor = piece_last + 1;
        }
    }
}

impl Drop for Ioas {
    fn drop(&mut self) {
        debug_assert!(self.domains.is_empty(), "IOAS dropped with domains linked");
        self.unmap_all();
    }
}

#[cfg(test)]
mod tests;
