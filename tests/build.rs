//! Builds the test guest (`guest/`, its own cargo project for `x86_64-unknown-none`) into
//! `OUT_DIR` and exports its ELF path as `TEST_GUEST_ELF` for the integration tests.
//!
//! The nested cargo gets its own target directory: sharing ours would wait forever on the
//! build directory lock the outer cargo holds.

#[path = "../guest/host_build.rs"]
mod host_build;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

use host_build::{GUEST_TARGET, build_command, elf_path};

fn fail(message: &str) -> ! {
    eprintln!("tests/build.rs: {message}");
    exit(1);
}

/// Whether the standard library for `GUEST_TARGET` is installed in rustc's sysroot.
fn guest_target_installed(rustc: &str) -> bool {
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(GUEST_TARGET)
        .join("lib")
        .is_dir()
}

/// The `/dev/kvm` convention of `docs/kvm-tests.md`: tests that boot a guest are marked
/// `#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]`.
fn detect_kvm() {
    println!("cargo::rustc-check-cfg=cfg(host_has_kvm)");
    println!("cargo::rerun-if-changed=/dev/kvm");
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if kvm.is_ok() {
        println!("cargo::rustc-cfg=host_has_kvm");
    }
}

fn main() {
    detect_kvm();
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let guest_dir = manifest_dir.join("../guest");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());

    for path in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "linker.ld",
        "host_build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(path).display());
    }

    if !guest_target_installed(&rustc) {
        fail(&format!(
            "the rust target {GUEST_TARGET} (for the test guest) is not installed: run scripts/setup"
        ));
    }

    let target_dir = out_dir.join("guest-target");
    let status = build_command(&cargo, &guest_dir, &target_dir)
        .status()
        .unwrap_or_else(|err| {
            fail(&format!(
                "cannot run {cargo} to build the test guest: {err}"
            ))
        });
    if !status.success() {
        fail(&format!(
            "building the test guest in {} failed ({status})",
            guest_dir.display()
        ));
    }

    let elf = elf_path(&target_dir);
    if !elf.is_file() {
        fail(&format!(
            "the test guest build did not produce {}",
            elf.display()
        ));
    }
    println!("cargo:rustc-env=TEST_GUEST_ELF={}", elf.display());
}
