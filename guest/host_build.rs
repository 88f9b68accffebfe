//! How the host builds this test guest. Not part of the guest: `tests/build.rs` and
//! `vmm/tests/common/test_guest.rs` include it with `#[path]`, as a build script and a test
//! cannot share code through a crate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the guest is built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";

/// `cargo build` of the guest at `guest_dir` (release, locked, offline) into `target_dir`.
/// `target_dir` must not be the outer cargo's: the nested cargo would wait forever on the lock
/// the outer one holds on it.
pub fn build_command(cargo: &str, guest_dir: &Path, target_dir: &Path) -> Command {
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .args([
            "--target",
            GUEST_TARGET,
            "--release",
            "--locked",
            "--offline",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags and wrappers meant for the host crates must not reach the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    command
}

/// Where [`build_command`] leaves the guest's ELF.
pub fn elf_path(target_dir: &Path) -> PathBuf {
    target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("test-guest")
}
