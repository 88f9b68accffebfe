//! Detects whether this host can run KVM guests, for the tests that boot one.
//!
//! The convention, shared by every crate whose tests need `/dev/kvm`: emit the `host_has_kvm` cfg
//! when `/dev/kvm` opens read-write, and mark such tests
//! `#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]`, so libtest lists them as ignored
//! with the reason instead of failing or silently passing.

use std::fs::OpenOptions;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(host_has_kvm)");
    println!("cargo::rerun-if-changed=build.rs");
    // Re-run when the device node appears, disappears or changes permissions.
    println!("cargo::rerun-if-changed=/dev/kvm");
    if OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        println!("cargo::rustc-cfg=host_has_kvm");
    }
}
