//! The emulated host takes any input without panicking and without leaking pins: random
//! sequences of every seam call, with ids, addresses, lengths and flags drawn from edge values
//! and noise, against a real buffer, a hole and unmapped addresses.

use proptest::prelude::*;
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig, IommuProfile, VtdIommu};
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{Iommufd, IommufdDevice, IommufdSelftest, MockDomain};

const P: u64 = 4096;

fn id() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..8u32, 1 => any::<u32>()]
}

fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0..64u64).prop_map(|p| p * 2048),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - P + 1),
        1 => Just(1u64 << 24),
        1 => Just(1u64 << 63),
        1 => any::<u64>(),
    ]
}

fn flags() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..8u32, 1 => any::<u32>()]
}

#[derive(Debug, Clone)]
enum Call {
    IoasAlloc,
    Destroy(u32),
    Map {
        ioas: u32,
        flags: u32,
        va: u64,
        len: u64,
        iova: u64,
    },
    Copy {
        dst: u32,
        src: u32,
        flags: u32,
        len: u64,
        dst_iova: u64,
        src_iova: u64,
    },
    Unmap {
        ioas: u32,
        iova: u64,
        len: u64,
    },
    Allow {
        ioas: u32,
        start: u64,
        last: u64,
    },
    Ranges {
        ioas: u32,
        cap: u32,
    },
    Option {
        id: u32,
        op: u16,
        obj: u32,
        val: u64,
    },
    Hwpt {
        flags: u32,
        dev: u32,
        pt: u32,
        data_type: u32,
        data: Vec<u8>,
        fault: u32,
    },
    HwInfo {
        dev: u32,
        flags: u32,
        cap: usize,
    },
    SetDirty {
        hwpt: u32,
        flags: u32,
    },
    GetDirty {
        hwpt: u32,
        flags: u32,
        iova: u64,
        len: u64,
        page: u64,
    },
    Invalidate {
        hwpt: u32,
        data_type: u32,
        entry_len: u32,
        entry_num: u32,
        data: Vec<u8>,
    },
    Fault(u32),
    Mock {
        pt: u32,
        dev_flags: u32,
    },
    Replace {
        stdev: u32,
        pt: u32,
    },
    Reserve {
        ioas: u32,
        start: u64,
        len: u64,
    },
    CheckMap {
        hwpt: u32,
        iova: u64,
        len: u64,
        va: u64,
    },
    CheckRefs {
        va: u64,
        len: u64,
        refs: u32,
    },
    Dirty {
        hwpt: u32,
        iova: u64,
        len: u64,
        page: u64,
    },
    Iopf {
        dev: u32,
        pasid: u32,
        addr: u64,
    },
    VtdAttach {
        pasid: Option<u32>,
        pt: u32,
    },
}

fn call() -> impl Strategy<Value = Call> {
    let data = prop::collection::vec(any::<u8>(), 0..32);
    prop_oneof![
        3 => Just(Call::IoasAlloc),
        1 => id().prop_map(Call::Destroy),
        4 => (id(), flags(), num(), num(), num()).prop_map(|(ioas, flags, va, len, iova)| Call::Map { ioas, flags, va, len, iova }),
        2 => (id(), id(), flags(), num(), num(), num()).prop_map(|(dst, src, flags, len, dst_iova, src_iova)| Call::Copy { dst, src, flags, len, dst_iova, src_iova }),
        3 => (id(), num(), num()).prop_map(|(ioas, iova, len)| Call::Unmap { ioas, iova, len }),
        1 => (id(), num(), num()).prop_map(|(ioas, start, last)| Call::Allow { ioas, start, last }),
        1 => (id(), 0..4u32).prop_map(|(ioas, cap)| Call::Ranges { ioas, cap }),
        1 => (0..3u32, 0..3u16, id(), 0..3u64).prop_map(|(id, op, obj, val)| Call::Option { id, op, obj, val }),
        2 => (flags(), id(), id(), prop_oneof![Just(0u32), Just(1), Just(0xdead), any::<u32>()], data.clone(), id())
            .prop_map(|(flags, dev, pt, data_type, data, fault)| Call::Hwpt { flags, dev, pt, data_type, data, fault }),
        1 => (id(), flags(), 0..40usize).prop_map(|(dev, flags, cap)| Call::HwInfo { dev, flags, cap }),
        1 => (id(), 0..3u32).prop_map(|(hwpt, flags)| Call::SetDirty { hwpt, flags }),
        1 => (id(), 0..3u32, num(), num(), prop_oneof![Just(2048u64), Just(4096), Just(0), any::<u64>()])
            .prop_map(|(hwpt, flags, iova, len, page)| Call::GetDirty { hwpt, flags, iova, len, page }),
        1 => (id(), prop_oneof![Just(0u32), Just(0xdeadbeef), any::<u32>()], 0..32u32, 0..4u32, data)
            .prop_map(|(hwpt, data_type, entry_len, entry_num, data)| Call::Invalidate { hwpt, data_type, entry_len, entry_num, data }),
        1 => (0..2u32).prop_map(Call::Fault),
        3 => (id(), 0..4u32).prop_map(|(pt, dev_flags)| Call::Mock { pt, dev_flags }),
        1 => (id(), id()).prop_map(|(stdev, pt)| Call::Replace { stdev, pt }),
        1 => (id(), num(), num()).prop_map(|(ioas, start, len)| Call::Reserve { ioas, start, len }),
        1 => (id(), num(), num(), num()).prop_map(|(hwpt, iova, len, va)| Call::CheckMap { hwpt, iova, len, va }),
        1 => (num(), num(), 0..3u32).prop_map(|(va, len, refs)| Call::CheckRefs { va, len, refs }),
        1 => (id(), num(), num(), prop_oneof![Just(2048u64), Just(4096), any::<u64>()]).prop_map(|(hwpt, iova, len, page)| Call::Dirty { hwpt, iova, len, page }),
        1 => (id(), 0..3u32, num()).prop_map(|(dev, pasid, addr)| Call::Iopf { dev, pasid, addr }),
        1 => (prop::option::of(0..4u32), id()).prop_map(|(pasid, pt)| Call::VtdAttach { pasid, pt }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics_or_leaks_pins(calls in prop::collection::vec(call(), 1..60), buf_first in any::<bool>()) {
        let len = 64 * P as usize;
        // SAFETY: a fresh mapping owned by this test; the emulated host never dereferences it.
        let buf = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0)
        } as u64;
        prop_assert_ne!(buf, libc::MAP_FAILED as u64);
        let host = EmulatedHost::new(HostConfig::unprivileged(16 * P));
        {
            let ctx = host.open_iommufd();
            let vtd = ctx.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
            let mut fault_fds = Vec::new();
            // Half the addresses point into the buffer, the rest are whatever was drawn.
            let va = |v: u64| if buf_first && v < 64 * P { buf + v } else { v };
            for c in calls {
                match c {
                    Call::IoasAlloc => { let _ = ctx.ioas_alloc(&mut IoasAlloc::default()); }
                    Call::Destroy(i) => { let _ = ctx.destroy(i); }
                    Call::Map { ioas, flags, va: v, len, iova } => {
                        let mut m = IoasMap { flags, ioas_id: ioas, reserved: 0, user_va: va(v), length: len, iova };
                        // SAFETY: the buffer outlives the context; nothing here touches it.
                        let _ = unsafe { ctx.ioas_map(&mut m) };
                    }
                    Call::Copy { dst, src, flags, len, dst_iova, src_iova } => {
                        let _ = ctx.ioas_copy(&mut IoasCopy { flags, dst_ioas_id: dst, src_ioas_id: src, length: len, dst_iova, src_iova });
                    }
                    Call::Unmap { ioas, iova, len } => { let _ = ctx.ioas_unmap(&mut IoasUnmap { ioas_id: ioas, iova, length: len }); }
                    Call::Allow { ioas, start, last } => {
                        let _ = ctx.ioas_allow_iovas(&IoasAllowIovas { ioas_id: ioas, reserved: 0 }, &[IovaRange { start, last }]);
                    }
                    Call::Ranges { ioas, cap } => {
                        let mut out = [IovaRange::default(); 2];
                        let _ = ctx.ioas_iova_ranges(&mut IoasIovaRanges { ioas_id: ioas, num_iovas: cap, ..Default::default() }, &mut out);
                    }
                    Call::Option { id, op, obj, val } => {
                        let _ = ctx.option(&mut IommuOption { option_id: id, op, reserved: 0, object_id: obj, val64: val });
                    }
                    Call::Hwpt { flags, dev, pt, data_type, data, fault } => {
                        let _ = ctx.hwpt_alloc(&mut HwptAlloc { flags, dev_id: dev, pt_id: pt, data_type, fault_id: fault, ..Default::default() }, &data);
                    }
                    Call::HwInfo { dev, flags, cap } => {
                        let mut data = vec![0u8; cap];
                        let _ = ctx.get_hw_info(&mut HwInfo { dev_id: dev, flags, ..Default::default() }, &mut data);
                    }
                    Call::SetDirty { hwpt, flags } => {
                        let _ = ctx.hwpt_set_dirty_tracking(&HwptSetDirtyTracking { flags, hwpt_id: hwpt, reserved: 0 });
                    }
                    Call::GetDirty { hwpt, flags, iova, len, page } => {
                        let mut bits = vec![0u64; 64];
                        let _ = ctx.hwpt_get_dirty_bitmap(&HwptGetDirtyBitmap { hwpt_id: hwpt, flags, reserved: 0, iova, length: len, page_size: page }, &mut bits);
                    }
                    Call::Invalidate { hwpt, data_type, entry_len, entry_num, data } => {
                        let _ = ctx.hwpt_invalidate(&mut HwptInvalidate { hwpt_id: hwpt, data_type, entry_len, entry_num, reserved: 0 }, &data);
                    }
                    Call::Fault(flags) => {
                        if let Ok(f) = ctx.fault_queue_alloc(&mut FaultQueueAlloc { flags, out_fault_id: 0 }) {
                            fault_fds.push(f);
                        }
                    }
                    Call::Mock { pt, dev_flags } => {
                        let _ = ctx.mock_domain(&mut MockDomain { pt_id: pt, dev_flags, ..Default::default() });
                    }
                    Call::Replace { stdev, pt } => { let _ = ctx.mock_domain_replace(stdev, pt); }
                    Call::Reserve { ioas, start, len } => { let _ = ctx.mock_add_reserved(ioas, start, len); }
                    Call::CheckMap { hwpt, iova, len, va: v } => { let _ = ctx.mock_check_map(hwpt, iova, len.min(1 << 20), va(v)); }
                    Call::CheckRefs { va: v, len, refs } => { let _ = ctx.mock_check_refs(va(v), len.min(1 << 20), refs); }
                    Call::Dirty { hwpt, iova, len, page } => {
                        let bits = vec![u64::MAX; 16];
                        let _ = ctx.mock_dirty(hwpt, iova, len, page, &bits);
                    }
                    Call::Iopf { dev, pasid, addr } => { let _ = ctx.mock_trigger_iopf(dev, pasid, 0, 1, addr); }
                    Call::VtdAttach { pasid, pt } => { let _ = vtd.attach(pasid, pt); }
                }
            }
        }
        prop_assert!(host.nothing_pinned(), "pins left after the context closed");
        prop_assert_eq!(host.locked_pages(), (0, 0, 0));
        // SAFETY: unmaps the buffer mapped above; the context is gone.
        unsafe { libc::munmap(buf as *mut libc::c_void, len) };
    }
}
