# Step "kernel": the lab kernel, built from Debian's linux-source-6.12 with `allnoconfig` plus
# lab/kernel.config, cached under $LAB_CACHE_DIR/kernel/<key>/ where the key hashes the fragment,
# the exact source package version and this recipe's revision. Sets LAB_KERNEL (the bzImage).

LAB_KERNEL_PACKAGE=linux-source-6.12
# Bump when the build recipe below changes in a way that changes the kernel.
LAB_KERNEL_RECIPE=1
LAB_KERNEL_FRAGMENT="$LAB_DIR/kernel.config"

# Options the other lab groups rely on, named in the failure when one did not end up built in.
# Every `=y` line of the fragment is checked; these are the ones worth naming first.
LAB_KERNEL_KEY_OPTIONS=(IOMMUFD IOMMUFD_TEST VFIO_DEVICE_CDEV VFIO_PCI VFIO_MDEV
    SAMPLE_VFIO_MDEV_MTTY INTEL_IOMMU IRQ_REMAP KVM KVM_AMD BLK_DEV_NVME)

ensure_kernel() {
    local version key dir
    version="$(apt_private_policy_candidate "$LAB_KERNEL_PACKAGE")"
    [ -n "$version" ] || die_no_candidate "$LAB_KERNEL_PACKAGE"
    key="$( (echo "$version recipe=$LAB_KERNEL_RECIPE"; cat "$LAB_KERNEL_FRAGMENT") |
        sha256sum | cut -c1-16)"
    dir="$LAB_CACHE_DIR/kernel/$key"
    LAB_KERNEL="$dir/bzImage"
    if [ -s "$LAB_KERNEL" ]; then
        say "[kernel] cached: $LAB_KERNEL_PACKAGE $version ($dir)"
        return
    fi
    build_kernel "$version" "$dir"
}

build_kernel() {
    local version="$1" dir="$2"
    local work="$LAB_CACHE_DIR/build"
    local src="$work/$LAB_KERNEL_PACKAGE"
    mkdir -p "$LAB_CACHE_DIR"
    require_free_gib "$LAB_CACHE_DIR" 4
    rm -rf "$work"
    mkdir -p "$work"

    say "[kernel] downloading $LAB_KERNEL_PACKAGE $version (about 150 MB)"
    apt_private_download "$work" "$LAB_KERNEL_PACKAGE=$version"

    say "[kernel] unpacking the source tree"
    local deb
    deb="$(ls "$work"/"$LAB_KERNEL_PACKAGE"_*.deb)"
    # The .deb holds one tarball of the tree; stream it out instead of storing it.
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xO --wildcards "./usr/src/$LAB_KERNEL_PACKAGE.tar.*" |
        tar -xJ -C "$work" 2>>"$LAB_STEP_LOG" ||
        die "unpacking $deb failed: $(explain_log "$LAB_STEP_LOG")"
    rm -f "$deb"
    [ -f "$src/Makefile" ] || die "$deb did not contain the tree $LAB_KERNEL_PACKAGE/"

    say "[kernel] configuring: allnoconfig + $LAB_KERNEL_FRAGMENT"
    run_logged "make allnoconfig" \
        make -C "$src" KCONFIG_ALLCONFIG="$LAB_KERNEL_FRAGMENT" allnoconfig
    verify_kernel_config "$src/.config"

    say "[kernel] building bzImage with $(nproc) jobs (about 4 min on 2 cores; log $LAB_STEP_LOG)"
    run_logged "make bzImage" make -C "$src" -j"$(nproc)" bzImage

    mkdir -p "$dir"
    cp "$src/.config" "$dir/config"
    echo "$LAB_KERNEL_PACKAGE $version" >"$dir/source-version"
    # Written last and atomically: a bzImage in the cache means the build completed.
    cp "$src/arch/x86/boot/bzImage" "$dir/bzImage.tmp"
    mv "$dir/bzImage.tmp" "$dir/bzImage"
    rm -rf "$work"
    say "[kernel] built $(du -h "$dir/bzImage" | cut -f1) bzImage; build tree removed"
}

# Fails unless every option the fragment sets to y is built in and every one it sets to n is off.
verify_kernel_config() {
    local config="$1" line name value missing=() key
    while IFS= read -r line; do
        [[ "$line" =~ ^CONFIG_([A-Za-z0-9_]+)=([yn])$ ]] || continue
        name="${BASH_REMATCH[1]}"
        value="${BASH_REMATCH[2]}"
        if [ "$value" = y ]; then
            grep -qx "CONFIG_$name=y" "$config" || missing+=("$name")
        elif grep -qE "^CONFIG_$name=[ym]$" "$config"; then
            missing+=("$name (should be off)")
        fi
    done <"$LAB_KERNEL_FRAGMENT"
    for key in "${LAB_KERNEL_KEY_OPTIONS[@]}"; do
        grep -qx "CONFIG_$key=y" "$config" || missing+=("$key")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        die "kernel options not set as lab/kernel.config asks (a dependency is missing): $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    fi
}
