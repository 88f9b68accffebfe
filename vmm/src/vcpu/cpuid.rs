//! The CPUID a vCPU shows: KVM's supported leaves, with the topology and APIC-id leaves set for
//! this vCPU.
//!
//! Only leaves KVM reports are exposed (no host passthrough): on hosts where KVM emulates every
//! instruction, advertising more than KVM supports makes guests take paths that fail.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

/// CPUID.1:ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: more than one logical processor per package.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// CPUID.0xB / 0x1F:ECX[15:8] level types.
const LEVEL_TYPE_INVALID: u32 = 0;
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// The CPUID of vCPU `apic_id` in a machine of `count` vCPUs, all cores of one package with
/// one thread each.
pub fn vcpu_cpuid(supported: &CpuId, apic_id: u32, count: u32) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        patch_entry(entry, apic_id, count);
    }
    cpuid
}

fn patch_entry(entry: &mut kvm_cpuid_entry2, apic_id: u32, count: u32) {
    match entry.function {
        0x1 => {
            // EBX[31:24] initial APIC id, EBX[23:16] logical processors in the package.
            entry.ebx =
                (entry.ebx & 0x0000_ffff) | ((apic_id & 0xff) << 24) | (count.min(255) << 16);
            entry.ecx |= LEAF1_ECX_HYPERVISOR;
            if count > 1 {
                entry.edx |= LEAF1_EDX_HTT;
            } else {
                entry.edx &= !LEAF1_EDX_HTT;
            }
        }
        0x4 => {
            // EAX[31:26] cores per package - 1; EAX[25:14] threads sharing this cache - 1: one
            // thread per core, and the last-level (L3) cache shared by the package.
            let cores = (count.clamp(1, 64) - 1) << 26;
            let cache_level = (entry.eax >> 5) & 0x7;
            let sharing = if cache_level >= 3 {
                count.clamp(1, 4096) - 1
            } else {
                0
            };
            entry.eax = (entry.eax & 0x3fff) | (sharing << 14) | cores;
        }
        0xb | 0x1f => {
            let core_shift = u32::BITS - (count.max(1) - 1).leading_zeros();
            let (eax, ebx, level_type) = match entry.index {
                0 => (0, 1, LEVEL_TYPE_SMT),
                1 => (core_shift, count, LEVEL_TYPE_CORE),
                _ => (0, 0, LEVEL_TYPE_INVALID),
            };
            entry.eax = eax;
            entry.ebx = ebx;
            entry.ecx = (level_type << 8) | (entry.index & 0xff);
            entry.edx = apic_id;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

    use super::*;

    fn entry(function: u32, index: u32, eax: u32, ebx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            eax,
            ebx,
            ..Default::default()
        }
    }

    fn find(c: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    fn supported() -> CpuId {
        CpuId::from_entries(&[
            // CLFLUSH line size 8 in EBX[15:8] must survive.
            entry(0x1, 0, 0x806f8, 0x0000_0800),
            // An L1d (level 1) and an L3 (level 3) cache descriptor.
            entry(0x4, 0, (1 << 5) | 1, 0),
            entry(0x4, 3, (3 << 5) | 3, 0),
            entry(0xb, 0, 9, 9),
            entry(0xb, 1, 9, 9),
            entry(0xb, 2, 9, 9),
        ])
        .unwrap()
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let c = vcpu_cpuid(&supported(), 3, 4);
        let e = find(&c, 0x1, 0);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        assert_eq!(e.ebx & 0xffff, 0x0800);
        assert_ne!(e.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(e.edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_reports_one_thread_per_core_and_the_x2apic_id() {
        let c = vcpu_cpuid(&supported(), 5, 6);
        let smt = find(&c, 0xb, 0);
        let core = find(&c, 0xb, 1);
        let end = find(&c, 0xb, 2);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 5));
        // Six cores need three bits of APIC id.
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (3, 6, 0x201, 5));
        assert_eq!((end.ebx, (end.ecx >> 8) & 0xff), (0, 0));
    }

    #[test]
    fn cache_leaf_reports_cores_and_shares_only_the_l3() {
        let c = vcpu_cpuid(&supported(), 0, 2);
        let l1 = find(&c, 0x4, 0);
        let l3 = find(&c, 0x4, 3);
        assert_eq!(l1.eax >> 26, 1);
        assert_eq!((l1.eax >> 14) & 0xfff, 0);
        assert_eq!((l3.eax >> 14) & 0xfff, 1);
        assert_eq!(l3.eax & 0x3fff, (3 << 5) | 3);
    }

    #[test]
    fn single_vcpu_has_no_htt_and_zero_core_shift() {
        let c = vcpu_cpuid(&supported(), 0, 1);
        assert_eq!(find(&c, 0x1, 0).edx & LEAF1_EDX_HTT, 0);
        assert_eq!(find(&c, 0xb, 1).eax, 0);
    }
}
