//! Fixtures shared by the integration tests in `tests/tests/`, and the iommufd conformance
//! suite ([`conformance`]) that the kernel lab's runner also drives.

pub mod conformance;
