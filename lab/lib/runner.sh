# Step "runner": the in-guest test runner (tests/src/bin/lab-runner.rs) as a static binary,
# built into its own target directory so its RUSTFLAGS do not invalidate the normal build.
# Sets LAB_RUNNER.

LAB_RUST_TARGET=x86_64-unknown-linux-gnu

build_runner() {
    command -v cargo >/dev/null || die "cargo not found: the lab needs the Rust toolchain"
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] ||
        die "glibc's static libc.a is missing (package libc6-dev)"
    local target_dir="$REPO_DIR/target/lab"
    say "[runner] cargo build --release -p tests --bin lab-runner (static; log $LAB_STEP_LOG)"
    (cd "$REPO_DIR" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked -p tests --bin lab-runner \
        --target "$LAB_RUST_TARGET" --target-dir "$target_dir") >>"$LAB_STEP_LOG" 2>&1 ||
        die "building lab-runner failed: $(grep -m1 -E '^error' "$LAB_STEP_LOG" || explain_log "$LAB_STEP_LOG")"
    LAB_RUNNER="$target_dir/$LAB_RUST_TARGET/release/lab-runner"
    # A dynamically linked runner would die in the guest, which has no libc.
    if readelf -l "$LAB_RUNNER" | grep -q 'Requesting program interpreter'; then
        die "$LAB_RUNNER is dynamically linked; +crt-static did not take effect"
    fi
}
