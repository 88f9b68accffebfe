//! The emulated type1 container takes any input without panicking and without leaking pins:
//! random sequences of every container and group call, with addresses, sizes, flags and
//! `argsz` drawn from edge values and noise, against a real buffer, a hole and unmapped
//! addresses. After every call `DMA_AVAIL` and the mappings still add up to the limit.

use std::sync::Arc;

use proptest::prelude::*;
use vfio_passthrough::host::emulated::type1::{EmulatedGroup, GroupIommu, Type1Config};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};
use vfio_passthrough::host::type1::info::Type1Info;
use vfio_passthrough::host::type1::*;

const P: u64 = 4096;
const LIMIT: u32 = 16;

fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0..64u64).prop_map(|p| p * P),
        1 => (0..64u64).prop_map(|p| p * 2048),
        1 => Just(0xfee0_0000u64),
        1 => Just((1u64 << 39) - P),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - P + 1),
        1 => any::<u64>(),
    ]
}

fn flags() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..8u32, 1 => any::<u32>()]
}

fn argsz() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(0u32), 1 => 0..64u32, 1 => any::<u32>()]
}

#[derive(Debug, Clone)]
enum Call {
    SetContainer(usize),
    Unset(usize),
    Reopen(usize),
    SetIommu(u32),
    Extension(u32),
    Info {
        argsz: u32,
        len: usize,
    },
    Map {
        argsz: u32,
        flags: u32,
        va: u64,
        iova: u64,
        size: u64,
    },
    Unmap {
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        pgsize: u64,
        words: usize,
    },
    Dirty {
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        pgsize: u64,
        words: usize,
    },
}

fn call() -> impl Strategy<Value = Call> {
    let pgsize = || prop_oneof![Just(P), Just(0u64), Just(2048u64), any::<u64>()];
    prop_oneof![
        2 => (0..2usize).prop_map(Call::SetContainer),
        1 => (0..2usize).prop_map(Call::Unset),
        1 => (0..2usize).prop_map(Call::Reopen),
        2 => prop_oneof![Just(VFIO_TYPE1V2_IOMMU), Just(VFIO_TYPE1_IOMMU), 0..12u32, any::<u32>()].prop_map(Call::SetIommu),
        1 => prop_oneof![0..12u32, any::<u32>()].prop_map(Call::Extension),
        1 => (prop_oneof![0..200u32, any::<u32>()], 0..200usize).prop_map(|(argsz, len)| Call::Info { argsz, len }),
        6 => (argsz(), flags(), num(), num(), num()).prop_map(|(argsz, flags, va, iova, size)| Call::Map { argsz, flags, va, iova, size }),
        4 => (argsz(), flags(), num(), num(), pgsize(), 0..4usize)
            .prop_map(|(argsz, flags, iova, size, pgsize, words)| Call::Unmap { argsz, flags, iova, size, pgsize, words }),
        2 => (argsz(), flags(), num(), num(), pgsize(), 0..4usize)
            .prop_map(|(argsz, flags, iova, size, pgsize, words)| Call::Dirty { argsz, flags, iova, size, pgsize, words }),
    ]
}

fn group(id: u32) -> Arc<EmulatedGroup> {
    let iommu = if id % 2 == 0 {
        GroupIommu::qemu_intel_iommu()
    } else {
        GroupIommu::default()
    };
    EmulatedGroup::new(id, iommu)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics_or_leaks_pins(calls in prop::collection::vec(call(), 1..60), hole in any::<bool>()) {
        let len = 64 * P as usize;
        // SAFETY: a fresh mapping owned by this test; the emulated host never dereferences it.
        let buf = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0)
        } as u64;
        prop_assert_ne!(buf, libc::MAP_FAILED as u64);
        if hole {
            // SAFETY: a page inside the mapping above, which only this test uses.
            unsafe { libc::munmap((buf + 8 * P) as *mut libc::c_void, P as usize) };
        }
        let host = EmulatedHost::new(HostConfig::unprivileged(32 * P));
        {
            let container = host.open_type1_with(Type1Config { dma_entry_limit: LIMIT });
            let mut groups = [group(0), group(1)];
            let mut next_id = 2;
            // Addresses inside the buffer's span are moved into it.
            let va = |v: u64| if v < 64 * P { buf + v } else { v };
            for c in calls {
                match c {
                    Call::SetContainer(g) => { let _ = groups[g].set_container(&container); }
                    Call::Unset(g) => { let _ = groups[g].unset_container(); }
                    Call::Reopen(g) => {
                        // Closing the group file and opening another group.
                        groups[g] = group(next_id);
                        next_id += 1;
                    }
                    Call::SetIommu(t) => { let _ = container.set_iommu(t); }
                    Call::Extension(x) => {
                        let v = container.check_extension(x);
                        prop_assert!(matches!(v, Ok(0) | Ok(1)), "extension {x}: {v:?}");
                    }
                    Call::Info { argsz, len } => {
                        let mut b = vec![0u8; len];
                        if len >= 4 {
                            b[..4].copy_from_slice(&argsz.to_le_bytes());
                        }
                        if container.iommu_get_info(&mut b).is_ok() {
                            prop_assert!(Type1Info::parse(&b).is_ok(), "unparsable reply");
                        }
                    }
                    Call::Map { argsz, flags, va: v, iova, size } => {
                        let req = Type1DmaMap { argsz: argsz.wrapping_add(DMA_MAP_ARGSZ), flags, vaddr: va(v), iova, size };
                        // SAFETY: the buffer outlives the container; nothing here touches it.
                        let _ = unsafe { container.map_dma(&req) };
                    }
                    Call::Unmap { argsz, flags, iova, size, pgsize, words } => {
                        let mut req = Type1DmaUnmap { argsz: argsz.wrapping_add(DMA_UNMAP_ARGSZ), flags, iova, size, bitmap_pgsize: pgsize };
                        let mut bits = vec![0u64; words];
                        let _ = container.unmap_dma(&mut req, &mut bits);
                    }
                    Call::Dirty { argsz, flags, iova, size, pgsize, words } => {
                        let req = Type1DirtyPages { argsz: argsz.wrapping_add(8), flags, iova, size, pgsize };
                        let mut bits = vec![u64::MAX; words];
                        let _ = container.dirty_pages(&req, &mut bits);
                    }
                }
                // DMA_AVAIL and the mappings add up, whatever happened.
                let mut b = vec![0u8; 512];
                b[..4].copy_from_slice(&512u32.to_le_bytes());
                if container.iommu_get_info(&mut b).is_ok() {
                    let info = Type1Info::parse(&b).unwrap();
                    let avail = info.caps.iter().find_map(|c| match c {
                        Type1InfoCap::DmaAvail(n) => Some(*n),
                        _ => None,
                    });
                    prop_assert_eq!(avail, Some(LIMIT - container.mapping_count() as u32));
                } else {
                    prop_assert_eq!(container.mapping_count(), 0, "mappings without an IOMMU");
                }
            }
        }
        prop_assert!(host.nothing_pinned(), "pins left after the container and groups closed");
        prop_assert_eq!(host.locked_pages(), (0, 0, 0));
        // SAFETY: unmaps the buffer mapped above; the container is gone.
        unsafe { libc::munmap(buf as *mut libc::c_void, len) };
    }
}
