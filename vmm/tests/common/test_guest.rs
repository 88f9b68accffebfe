//! The project's test guest (`guest/`), built on first use for the tests that run the `vmm`
//! binary on it (the `tests` crate builds its own copy in its build script).
//!
//! The guest is its own cargo project for `x86_64-unknown-none`; it is built into this
//! package's test scratch directory, which no outer cargo holds a lock on.

#[path = "../../../guest/host_build.rs"]
mod host_build;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use host_build::{GUEST_TARGET, build_command, elf_path};

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
    let output = build_command(&cargo, &guest_dir, &target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the test guest: {e}"));
    assert!(
        output.status.success(),
        "building the test guest failed (is the {GUEST_TARGET} target installed? run \
         scripts/setup): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let elf = elf_path(&target_dir);
    assert!(
        elf.is_file(),
        "the guest build produced no {}",
        elf.display()
    );
    elf
}
