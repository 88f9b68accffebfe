//! The MSRs a vCPU starts with: the architectural boot values, restricted to the MSRs KVM
//! reports (`KVM_GET_MSR_INDEX_LIST`). Setting any other MSR can fail ("failed to set MSR 0x10a"
//! on hosts whose KVM emulates the CPU), so none is set blindly.

use kvm_bindings::kvm_msr_entry;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// IA32_MISC_ENABLE bit 0: fast string operations.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRdefType: MTRRs enabled (bit 11), default type write-back (6).
const MTRR_ENABLE_WRITE_BACK: u64 = (1 << 11) | 6;

const BOOT_MSRS: [(u32, u64); 11] = [
    (MSR_IA32_SYSENTER_CS, 0),
    (MSR_IA32_SYSENTER_ESP, 0),
    (MSR_IA32_SYSENTER_EIP, 0),
    (MSR_STAR, 0),
    (MSR_CSTAR, 0),
    (MSR_KERNEL_GS_BASE, 0),
    (MSR_SYSCALL_MASK, 0),
    (MSR_LSTAR, 0),
    (MSR_IA32_TSC, 0),
    (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITE_BACK),
];

/// The boot MSR values for the MSRs in `supported`.
pub fn boot_msrs(supported: &[u32]) -> Vec<kvm_msr_entry> {
    BOOT_MSRS
        .iter()
        .filter(|(index, _)| supported.contains(index))
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_msrs_kvm_reports_are_set() {
        // 0x10a (IA32_ARCH_CAPABILITIES) is reported but has no boot value; LSTAR is not
        // reported and must be left alone.
        let entries = boot_msrs(&[0x10a, MSR_IA32_MISC_ENABLE, MSR_MTRR_DEF_TYPE, MSR_STAR]);
        let got: Vec<(u32, u64)> = entries.iter().map(|e| (e.index, e.data)).collect();
        assert_eq!(
            got,
            vec![
                (MSR_STAR, 0),
                (MSR_IA32_MISC_ENABLE, 1),
                (MSR_MTRR_DEF_TYPE, 0x806)
            ]
        );
    }

    #[test]
    fn empty_list_sets_nothing() {
        assert!(boot_msrs(&[]).is_empty());
    }
}
