# Step "qemu": QEMU 7.2 unpacked from Debian's .debs into the cache, not installed (installing it
# would remove the machine's qemu-utils 10.0). Sets LAB_QEMU (the binary), LAB_QEMU_ENV (its
# environment) and LAB_QEMU_FIRMWARE (its -L arguments).

prepare_qemu() {
    local version root marker
    version="$(apt_private_policy_candidate qemu-system-x86)"
    [ -n "$version" ] || die_no_candidate qemu-system-x86
    root="$LAB_CACHE_DIR/qemu/${version//[:~+]/_}"
    marker="$root/.unpacked"
    if [ ! -e "$marker" ]; then
        say "[qemu] unpacking qemu-system-x86 $version and its firmware into $root"
        # Other versions are stale (the candidate changed): drop them.
        rm -rf "$LAB_CACHE_DIR/qemu"
        apt_private_download "$root.debs" "${LAB_QEMU_DEBS[@]}"
        local deb
        for deb in "$root.debs"/*.deb; do
            run_logged "dpkg-deb -x $(basename "$deb")" dpkg-deb -x "$deb" "$root"
        done
        rm -rf "$root.debs"
        touch "$marker"
    fi
    LAB_QEMU="$root/usr/bin/qemu-system-x86_64"
    # TCG itself is a loadable module in Debian's build (accel-tcg-x86_64.so).
    LAB_QEMU_ENV=(QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu")
    LAB_QEMU_FIRMWARE=(-L "$root/usr/share/qemu" -L "$root/usr/share/seabios"
        -L "$root/usr/lib/ipxe/qemu")

    # A missing shared library would otherwise only show when the first boot fails.
    local unresolved
    unresolved="$(ldd "$LAB_QEMU" "$root/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so" |
        awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')"
    [ -z "$unresolved" ] || die "QEMU needs libraries that are not installed: $unresolved"
    local reported
    reported="$(env "${LAB_QEMU_ENV[@]}" "$LAB_QEMU" --version 2>&1 | head -n 1)" ||
        die "$LAB_QEMU --version failed: $reported"
    say "[qemu] $reported"
}
