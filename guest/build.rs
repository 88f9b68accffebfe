//! Link flags for the test guest: our linker script (loaded at 1 MiB, no notes) and a
//! position-dependent executable, so the VMM's ELF loader can copy it as is (no relocations to
//! apply, `ET_EXEC`). Set here rather than in `.cargo/config.toml`, which cargo reads only
//! when it runs inside `guest/`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        println!("cargo:rustc-link-arg=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg=--no-pie");
    }
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
