# Step "runner": the in-guest test runner (tests/src/bin/lab-runner.rs) and our VMM (vmm) as
# static binaries, built into their own target directory so their RUSTFLAGS do not invalidate
# the normal build, and the test guest the VMM boots in the lab (guest/, x86_64-unknown-none).
# Sets LAB_RUNNER, LAB_VMM and LAB_GUEST.

LAB_RUST_TARGET=x86_64-unknown-linux-gnu

build_runner() {
    command -v cargo >/dev/null || die "cargo not found: the lab needs the Rust toolchain"
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] ||
        die "glibc's static libc.a is missing (package libc6-dev)"
    local target_dir="$REPO_DIR/target/lab"
    say "[runner] cargo build --release -p tests --bin lab-runner -p vmm --bin vmm (static; log $LAB_STEP_LOG)"
    (cd "$REPO_DIR" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked -p tests --bin lab-runner -p vmm --bin vmm \
        --target "$LAB_RUST_TARGET" --target-dir "$target_dir") >>"$LAB_STEP_LOG" 2>&1 ||
        die "building lab-runner and vmm failed: $(grep -m1 -E '^error' "$LAB_STEP_LOG" || explain_log "$LAB_STEP_LOG")"
    LAB_RUNNER="$target_dir/$LAB_RUST_TARGET/release/lab-runner"
    LAB_VMM="$target_dir/$LAB_RUST_TARGET/release/vmm"
    # A dynamically linked binary would die in the guest, which has no libc.
    local binary
    for binary in "$LAB_RUNNER" "$LAB_VMM"; do
        if readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
            die "$binary is dynamically linked; +crt-static did not take effect"
        fi
    done
    build_test_guest
}

# The freestanding test guest our VMM boots inside the devices boot (as scripts/run-guest
# builds it, into the same target directory).
build_test_guest() {
    local guest_target=x86_64-unknown-none
    if ! rustup target list --installed 2>/dev/null | grep -qx "$guest_target"; then
        say "[runner] adding rust target $guest_target (for the test guest)"
        run_logged "rustup target add $guest_target" rustup target add "$guest_target"
    fi
    say "[runner] cargo build --release of the test guest ($guest_target)"
    (cd "$REPO_DIR" && cargo build --release --locked --manifest-path guest/Cargo.toml \
        --target "$guest_target" --target-dir target/guest) >>"$LAB_STEP_LOG" 2>&1 ||
        die "building the test guest failed: $(grep -m1 -E '^error' "$LAB_STEP_LOG" || explain_log "$LAB_STEP_LOG")"
    LAB_GUEST="$REPO_DIR/target/guest/$guest_target/release/test-guest"
}
