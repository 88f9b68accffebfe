//! Fixtures shared by the integration tests in `tests/tests/`, the kernel lab's in-guest test
//! framework ([`lab`]), and the iommufd conformance suite ([`conformance`]) that both the tests
//! and the lab's runner drive.

pub mod conformance;
pub mod lab;
