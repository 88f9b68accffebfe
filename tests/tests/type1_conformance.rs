//! Runs the type1 conformance suite: the emulated container (as the lab's QEMU VT-d and as the
//! emulated host's own VT-d profile) and, where `/dev/vfio` has groups of PCI devices, the
//! kernel. Prints the table; fails naming every failing case.

use tests::conformance::type1::{
    self, EmulatedType1Backend, KernelType1Backend, Type1Backend, cases,
};

#[test]
fn every_type1_backend_behaves_as_the_kernel() {
    let qemu = EmulatedType1Backend::qemu_vtd();
    let vtd48 = EmulatedType1Backend::vtd48();
    let kernel = KernelType1Backend::from_host();
    let backends: [&dyn Type1Backend; 3] = [&qemu, &vtd48, &kernel];
    let report = type1::run(&backends, cases::ALL);
    println!("{}", report.render());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} type1 conformance failure(s):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(case, backend, msg)| format!("  {case} [{backend}]: {msg}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The emulated columns run every case: nothing they need is missing.
    for column in 0..2 {
        let (passed, _, skipped) = report.counts(column);
        assert_eq!(skipped, 0, "{} skipped cases", report.backends[column]);
        assert_eq!(passed, cases::ALL.len());
    }
}
