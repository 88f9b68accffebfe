//! Fixtures shared by the integration tests in `tests/tests/`, and the kernel lab's in-guest test
//! framework ([`lab`]).

pub mod lab;
