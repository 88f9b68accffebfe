//! Property test: random map / unmap / copy / unmap-all / attach / detach sequences on the
//! emulated host's IOAS, against a naive model of the kernel's rules written independently of
//! it. After every step the results and errnos must agree, the IOAS must hold exactly the
//! model's areas (introspection), and each page of memory must be pinned as many times as the
//! model says.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::{AreaInfo, EmulatedHost, EmulatedIommufd, HostConfig};
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{
    Iommufd, IommufdSelftest, MOCK_APERTURE_LAST, MOCK_APERTURE_START, MockDomain,
};

const P: u64 = 4096;
/// Pages of memory the sequences map from.
const BUF_PAGES: u64 = 16;
/// Where the two IOVA zones start: inside the mock aperture, and the top of the space.
const ZONES: [u64; 2] = [MOCK_APERTURE_START, u64::MAX - 32 * P + 1];
/// The emulated kernel's cap on automatic alignment (newest, with THP).
const CAP: u64 = 2 << 20;

#[derive(Debug, Clone)]
enum Op {
    Map {
        zone: usize,
        page: u64,
        pages: u64,
        va_page: u64,
        fixed: bool,
        write: bool,
    },
    Unmap {
        zone: usize,
        page: u64,
        pages: u64,
    },
    /// Unmap around existing areas: from area `nth` (moved by `shift` pages) to the end of
    /// area `nth + extra` (plus `tail` pages).
    UnmapAreas {
        nth: usize,
        shift: i64,
        extra: usize,
        tail: u64,
    },
    /// Copy `pages` pages from `offset` pages into area `nth`.
    CopyArea {
        nth: usize,
        offset: u64,
        pages: u64,
        dst_zone: usize,
        dst_page: u64,
        fixed: bool,
    },
    UnmapAll,
    Copy {
        zone: usize,
        src_page: u64,
        pages: u64,
        dst_zone: usize,
        dst_page: u64,
        fixed: bool,
    },
    Attach,
    Detach,
}

fn zone() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => Just(1usize)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (zone(), 0..16u64, 1..6u64, 0..BUF_PAGES - 6, prop::bool::weighted(0.8), prop::bool::weighted(0.8)).prop_map(
            |(zone, page, pages, va_page, fixed, write)| Op::Map { zone, page, pages, va_page, fixed, write }
        ),
        4 => (0..8usize, -1..=1i64, 0..3usize, 0..3u64).prop_map(|(nth, shift, extra, tail)| Op::UnmapAreas { nth, shift, extra, tail }),
        3 => (0..8usize, 0..3u64, 1..6u64, zone(), 0..24u64, prop::bool::weighted(0.7)).prop_map(
            |(nth, offset, pages, dst_zone, dst_page, fixed)| Op::CopyArea { nth, offset, pages, dst_zone, dst_page, fixed }
        ),
        1 => (zone(), 0..16u64, 1..12u64).prop_map(|(zone, page, pages)| Op::Unmap { zone, page, pages }),
        1 => Just(Op::UnmapAll),
        1 => (zone(), 0..16u64, 1..6u64, zone(), 0..24u64, any::<bool>()).prop_map(
            |(zone, src_page, pages, dst_zone, dst_page, fixed)| Op::Copy { zone, src_page, pages, dst_zone, dst_page, fixed }
        ),
        1 => Just(Op::Attach),
        1 => Just(Op::Detach),
    ]
}

/// One area of the model: `pages` is the id of the memory object (one per MAP), `va` the
/// user address of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MArea {
    len: u64,
    pages: u32,
    va: u64,
    write: bool,
    /// The memory object may be written (mapped writeable when created).
    pages_writable: bool,
}

#[derive(Debug, Default)]
struct Model {
    areas: BTreeMap<u64, MArea>,
    domain: bool,
    next_pages: u32,
}

impl Model {
    fn last(iova: u64, len: u64) -> Option<u64> {
        iova.checked_add(len - 1)
    }

    fn overlaps(&self, iova: u64, last: u64) -> bool {
        self.areas
            .iter()
            .any(|(&s, a)| s <= last && iova <= s + (a.len - 1))
    }

    fn reserved(&self, iova: u64, last: u64) -> bool {
        self.domain && (iova < MOCK_APERTURE_START || last > MOCK_APERTURE_LAST)
    }

    /// The lowest free IOVA for `len` bytes aligned to `align`, from page 1, inside the
    /// window (the aperture with a domain).
    fn auto(&self, len: u64, align: u64) -> Result<u64, Errno> {
        let (lo, hi) = if self.domain {
            (MOCK_APERTURE_START, MOCK_APERTURE_LAST)
        } else {
            (P, u64::MAX - P)
        };
        let mut cand = lo.next_multiple_of(align);
        loop {
            let Some(last) = Self::last(cand, len) else {
                return Err(Errno::ENOSPC);
            };
            if last > hi {
                return Err(Errno::ENOSPC);
            }
            match self
                .areas
                .iter()
                .find(|&(&s, a)| s <= last && cand <= s + (a.len - 1))
            {
                None => return Ok(cand),
                Some((&s, a)) => match (s + (a.len - 1)).checked_add(1) {
                    Some(next) => cand = next.next_multiple_of(align),
                    None => return Err(Errno::ENOSPC),
                },
            }
        }
    }

    fn place(&self, fixed: bool, iova: u64, len: u64, hint: u64) -> Result<u64, Errno> {
        if fixed {
            let last = Self::last(iova, len).ok_or(Errno::EOVERFLOW)?;
            if self.reserved(iova, last) {
                return Err(Errno::EINVAL);
            }
            if self.overlaps(iova, last) {
                return Err(Errno::EEXIST);
            }
            Ok(iova)
        } else {
            let align = len
                .next_power_of_two()
                .min(1 << hint.trailing_zeros())
                .min(CAP);
            self.auto(len, align)
        }
    }

    fn map(
        &mut self,
        fixed: bool,
        iova: u64,
        len: u64,
        va: u64,
        write: bool,
    ) -> Result<u64, Errno> {
        let at = self.place(fixed, iova, len, va)?;
        self.next_pages += 1;
        self.areas.insert(
            at,
            MArea {
                len,
                pages: self.next_pages,
                va,
                write,
                pages_writable: write,
            },
        );
        Ok(at)
    }

    fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        let last = Self::last(iova, len).ok_or(Errno::EOVERFLOW)?;
        let mut done = 0;
        loop {
            let hit = self
                .areas
                .iter()
                .find(|&(&s, a)| s <= last && iova <= s + (a.len - 1))
                .map(|(&s, a)| (s, *a));
            let Some((s, a)) = hit else { break };
            if s < iova || s + (a.len - 1) > last {
                return Err(Errno::ENOENT);
            }
            self.areas.remove(&s);
            done += a.len;
        }
        if done == 0 {
            Err(Errno::ENOENT)
        } else {
            Ok(done)
        }
    }

    fn copy(&mut self, src: u64, len: u64, fixed: bool, dst: u64) -> Result<u64, Errno> {
        let last = Self::last(src, len).ok_or(Errno::EOVERFLOW)?;
        let mut pieces = Vec::new();
        let mut cur = src;
        loop {
            let (s, a) = self
                .areas
                .iter()
                .find(|&(&s, a)| s <= cur && cur <= s + (a.len - 1))
                .map(|(&s, a)| (s, *a))
                .ok_or(Errno::ENOENT)?;
            let piece_last = last.min(s + (a.len - 1));
            pieces.push(MArea {
                len: piece_last - cur + 1,
                va: a.va + (cur - s),
                write: true,
                ..a
            });
            if piece_last == last {
                break;
            }
            cur = piece_last + 1;
        }
        let at = self.place(fixed, dst, len, pieces[0].va)?;
        if pieces.iter().any(|p| !p.pages_writable) {
            return Err(Errno::EPERM);
        }
        let mut iova = at;
        for p in pieces {
            self.areas.insert(iova, p);
            iova += p.len;
        }
        Ok(at)
    }

    fn attach(&mut self) -> Result<(), Errno> {
        let outside = self
            .areas
            .iter()
            .any(|(&s, a)| s < MOCK_APERTURE_START || s + (a.len - 1) > MOCK_APERTURE_LAST);
        if outside {
            return Err(Errno::EADDRINUSE);
        }
        self.domain = true;
        Ok(())
    }

    /// Pins of user page `va`: one per memory object with an area covering it, while a
    /// domain is attached.
    fn pins(&self, va: u64) -> u32 {
        if !self.domain {
            return 0;
        }
        let mut objs: Vec<u32> = self
            .areas
            .values()
            .filter(|a| {
                let first = a.va & !(P - 1);
                let last = (a.va + a.len - 1) & !(P - 1);
                first <= va && va <= last
            })
            .map(|a| a.pages)
            .collect();
        objs.sort_unstable();
        objs.dedup();
        objs.len() as u32
    }
}

/// Turns area-relative ops into absolute ones against the model's current areas (equal to the
/// emulated ones as long as the test has not failed).
fn resolve(op: &Op, model: &Model) -> Op {
    let areas: Vec<(u64, MArea)> = model.areas.iter().map(|(&s, a)| (s, *a)).collect();
    let zone_of = |iova: u64| usize::from(iova >= ZONES[1]);
    match *op {
        Op::UnmapAreas {
            nth,
            shift,
            extra,
            tail,
        } if !areas.is_empty() => {
            let (s, _) = areas[nth % areas.len()];
            let (ls, la) = areas[(nth % areas.len() + extra).min(areas.len() - 1)];
            let start = s.wrapping_add_signed(shift * P as i64);
            let end = (ls + (la.len - 1)).saturating_add(tail * P);
            let zone = zone_of(start);
            Op::Unmap {
                zone,
                page: start.wrapping_sub(ZONES[zone]) / P,
                pages: (end.saturating_sub(start) / P + 1).max(1),
            }
        }
        Op::CopyArea {
            nth,
            offset,
            pages,
            dst_zone,
            dst_page,
            fixed,
        } if !areas.is_empty() => {
            let (s, _) = areas[nth % areas.len()];
            let src = s + offset * P;
            let zone = zone_of(src);
            Op::Copy {
                zone,
                src_page: src.wrapping_sub(ZONES[zone]) / P,
                pages,
                dst_zone,
                dst_page,
                fixed,
            }
        }
        // Nothing to refer to yet: map something instead.
        Op::UnmapAreas { nth, extra, .. } => Op::Map {
            zone: 0,
            page: nth as u64,
            pages: 1 + extra as u64,
            va_page: 0,
            fixed: true,
            write: true,
        },
        Op::CopyArea { nth, pages, .. } => Op::Map {
            zone: 0,
            page: nth as u64,
            pages,
            va_page: 1,
            fixed: true,
            write: true,
        },
        ref other => other.clone(),
    }
}

struct Buffer(u64);

impl Buffer {
    fn new() -> Self {
        let len = (BUF_PAGES * P + CAP) as usize;
        // SAFETY: reserves fresh memory chosen by the kernel; only this test uses it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Buffer(p as u64)
    }

    /// The 2 MiB-aligned start used by the test.
    fn addr(&self) -> u64 {
        self.0.next_multiple_of(CAP)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmaps the region `new` mapped.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, (BUF_PAGES * P + CAP) as usize) };
    }
}

fn run(ops: &[Op], buf: &Buffer) -> Result<(), TestCaseError> {
    let host = EmulatedHost::new(HostConfig::unprivileged(1 << 30));
    let ctx: EmulatedIommufd = host.open_iommufd();
    let mut a = IoasAlloc::default();
    ctx.ioas_alloc(&mut a).unwrap();
    let ioas = a.out_ioas_id;
    let mut model = Model::default();
    let mut stdev: Option<MockDomain> = None;
    for (step, op) in ops.iter().enumerate() {
        let op = &resolve(op, &model);
        let (got, want): (Result<u64, Errno>, Result<u64, Errno>) = match *op {
            Op::Map {
                zone,
                page,
                pages,
                va_page,
                fixed,
                write,
            } => {
                let (iova, len, va) = (
                    ZONES[zone].wrapping_add(page * P),
                    pages * P,
                    buf.addr() + va_page * P,
                );
                let mut flags =
                    IOMMU_IOAS_MAP_READABLE | if write { IOMMU_IOAS_MAP_WRITEABLE } else { 0 };
                if fixed {
                    flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
                }
                let mut m = IoasMap {
                    flags,
                    ioas_id: ioas,
                    reserved: 0,
                    user_va: va,
                    length: len,
                    iova,
                };
                // SAFETY: the buffer outlives the context and is not accessed while mapped.
                let got = unsafe { ctx.ioas_map(&mut m) }.map(|()| m.iova);
                (got, model.map(fixed, iova, len, va, write))
            }
            Op::Unmap { zone, page, pages } => {
                let (iova, len) = (ZONES[zone].wrapping_add(page * P), pages * P);
                let mut u = IoasUnmap {
                    ioas_id: ioas,
                    iova,
                    length: len,
                };
                (
                    ctx.ioas_unmap(&mut u).map(|()| u.length),
                    model.unmap(iova, len),
                )
            }
            Op::UnmapAll => {
                let mut u = IoasUnmap {
                    ioas_id: ioas,
                    iova: 0,
                    length: u64::MAX,
                };
                let total = model.areas.values().map(|a| a.len).sum();
                model.areas.clear();
                (ctx.ioas_unmap(&mut u).map(|()| u.length), Ok(total))
            }
            Op::Copy {
                zone,
                src_page,
                pages,
                dst_zone,
                dst_page,
                fixed,
            } => {
                let (src, len) = (ZONES[zone].wrapping_add(src_page * P), pages * P);
                let dst = ZONES[dst_zone].wrapping_add(dst_page * P);
                let mut flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
                if fixed {
                    flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
                }
                let mut c = IoasCopy {
                    flags,
                    dst_ioas_id: ioas,
                    src_ioas_id: ioas,
                    length: len,
                    dst_iova: dst,
                    src_iova: src,
                };
                (
                    ctx.ioas_copy(&mut c).map(|()| c.dst_iova),
                    model.copy(src, len, fixed, dst),
                )
            }
            Op::UnmapAreas { .. } | Op::CopyArea { .. } => unreachable!("resolved above"),
            Op::Attach => {
                if stdev.is_some() {
                    continue;
                }
                let mut d = MockDomain {
                    pt_id: ioas,
                    ..Default::default()
                };
                let got = ctx.mock_domain(&mut d).map(|()| 0);
                if got.is_ok() {
                    stdev = Some(d);
                }
                (got, model.attach().map(|()| 0))
            }
            Op::Detach => {
                let Some(d) = stdev.take() else { continue };
                model.domain = false;
                (ctx.destroy(d.out_stdev_id).map(|()| 0), Ok(0))
            }
        };
        prop_assert_eq!(got, want, "step {}: {:?}", step, op);
        let areas: Vec<AreaInfo> = ctx.areas(ioas).unwrap();
        let expected: Vec<(u64, u64, u64, bool)> = model
            .areas
            .iter()
            .map(|(&s, a)| (s, a.len, a.va, a.write))
            .collect();
        let actual: Vec<(u64, u64, u64, bool)> = areas
            .iter()
            .map(|a| (a.iova, a.length, a.address, a.write))
            .collect();
        prop_assert_eq!(actual, expected, "areas after step {}: {:?}", step, op);
        for i in 0..BUF_PAGES {
            let va = buf.addr() + i * P;
            prop_assert_eq!(
                host.pin_count(va),
                Ok(model.pins(va)),
                "pins of page {} after step {}",
                i,
                step
            );
        }
        if let Some(d) = stdev {
            let domain = ctx.domain(d.out_hwpt_id).unwrap();
            prop_assert_eq!(domain.mapping_count(), model.areas.len());
            for (&iova, a) in &model.areas {
                prop_assert_eq!(ctx.mock_check_map(d.out_hwpt_id, iova, a.len, a.va), Ok(()));
            }
        }
    }
    drop(ctx);
    prop_assert!(host.nothing_pinned(), "pins left after the context closed");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_emulated_ioas_follows_the_kernel_rules(ops in prop::collection::vec(op(), 1..40)) {
        let buf = Buffer::new();
        run(&ops, &buf)?;
    }
}
