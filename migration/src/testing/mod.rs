//! Test doubles shared by the crate's tests: a fake device model implementing the device-side
//! hooks, and adapters exposing engines through the user-side traits.

pub(crate) mod fake_device;
pub(crate) mod local;
pub(crate) mod v1_harness;
