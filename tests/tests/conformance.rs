//! Runs the iommufd conformance suite: the emulated host (as the lab's 6.12 and as the newest
//! kernel) and the kernel through `KernelIommufd::open` (every case skipped, saying why, where
//! `/dev/iommu` does not exist). Prints the table; fails naming every failing case.

use tests::conformance::{self, Backend, EmulatedBackend, KernelBackend, cases};

#[test]
fn every_backend_behaves_as_the_kernel() {
    let lab = EmulatedBackend::LAB;
    let newest = EmulatedBackend::NEWEST;
    let kernel = KernelBackend::system();
    let backends: [&dyn Backend; 3] = [&lab, &newest, &kernel];
    let report = conformance::run(&backends, cases::ALL);
    println!("{}", report.render());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} conformance failure(s):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(case, backend, msg)| format!("  {case} [{backend}]: {msg}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
