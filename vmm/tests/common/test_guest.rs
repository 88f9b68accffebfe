//! The project's test guest (`guest/`), built on first use for the tests that run the `vmm`
//! binary on it (the `tests` crate builds its own copy in its build script).
//!
//! The guest is its own cargo project for `x86_64-unknown-none`; it is built into this
//! package's test scratch directory, which no outer cargo holds a lock on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const GUEST_TARGET: &str = "x86_64-unknown-none";

/// The path of the test guest's ELF, building it the first time. Panics with what to do if it
/// cannot be built (the target is missing: `scripts/setup` adds it).
pub fn test_guest_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(build)
}

fn build() -> PathBuf {
    let guest_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
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
        .arg(&target_dir)
        // Flags meant for the host crates must not reach the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the test guest: {e}"));
    assert!(
        output.status.success(),
        "building the test guest failed (is the {GUEST_TARGET} target installed? run \
         scripts/setup): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let elf = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("test-guest");
    assert!(
        elf.is_file(),
        "the guest build produced no {}",
        elf.display()
    );
    elf
}
