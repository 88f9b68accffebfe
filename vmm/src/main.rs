//! `vmm`: boot a guest with VFIO passthrough devices.

fn main() {
    eprintln!("vmm: the VMM binary is not built yet (see issue 4)");
    std::process::exit(1);
}
