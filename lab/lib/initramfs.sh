# Step "initramfs": busybox (from busybox-static's .deb, unpacked, not installed: it conflicts
# with the busybox package), lab/initramfs/*, the runner, our VMM (/bin/vmm) and the test guest
# it boots (/lab/test-guest), packed as a gzipped newc cpio.
# Sets LAB_INITRAMFS.

pack_initramfs() {
    local version bb_dir
    version="$(apt_private_policy_candidate busybox-static)"
    [ -n "$version" ] || die_no_candidate busybox-static
    bb_dir="$LAB_CACHE_DIR/busybox/${version//[:~+]/_}"
    if [ ! -x "$bb_dir/bin/busybox" ]; then
        rm -rf "$LAB_CACHE_DIR/busybox"
        apt_private_download "$bb_dir.deb" busybox-static
        run_logged "dpkg-deb -x busybox-static" dpkg-deb -x "$bb_dir.deb"/busybox-static_*.deb "$bb_dir"
        rm -rf "$bb_dir.deb"
    fi

    local stage="$LAB_CACHE_DIR/initramfs/root"
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lab}
    cp "$bb_dir/bin/busybox" "$stage/bin/busybox"
    cp "$LAB_RUNNER" "$stage/bin/lab-runner"
    cp "$LAB_VMM" "$stage/bin/vmm"
    cp "$LAB_GUEST" "$stage/lab/test-guest"
    install -m 0755 "$LAB_DIR/initramfs/init" "$stage/init"
    install -m 0644 "$LAB_DIR/initramfs/setup-devices.sh" "$stage/lab/setup-devices.sh"

    LAB_INITRAMFS="$LAB_CACHE_DIR/initramfs/lab.cpio.gz"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet | gzip -1 >"$LAB_INITRAMFS.tmp") ||
        die "packing the initramfs failed"
    mv "$LAB_INITRAMFS.tmp" "$LAB_INITRAMFS"
    say "[initramfs] $(du -h "$LAB_INITRAMFS" | cut -f1) $LAB_INITRAMFS"
}
