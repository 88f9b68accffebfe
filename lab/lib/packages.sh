# Step "packages": the Debian packages the lab needs installed on the host.
#
# Kernel build tools, cpio, and the shared libraries QEMU 7.2 links against. QEMU itself, its
# firmware and busybox are not installed: they are unpacked into the cache (see qemu.sh,
# initramfs.sh), because installing qemu-system-x86 would remove the machine's qemu-utils 10.0
# and busybox-static conflicts with busybox.

# What the kernel build and the initramfs need.
LAB_BUILD_PACKAGES=(flex bison libelf-dev bc cpio gcc make xz-utils binutils libc6-dev)

# Packages QEMU's .debs come as; unpacked, never installed.
LAB_QEMU_DEBS=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu)

LAB_APT_UPDATED=0

# Installing and refreshing the system's lists need root: sudo when we are not root.
require_root_or_sudo() {
    if [ ${#SUDO[@]} -gt 0 ] && ! command -v sudo >/dev/null; then
        die "not root and no sudo: cannot install packages ($*)"
    fi
}

apt_update_once() {
    require_root_or_sudo "apt-get update"
    if [ "$LAB_APT_UPDATED" = 0 ]; then
        run_logged "apt-get update" "${SUDO[@]}" apt-get update -q
        LAB_APT_UPDATED=1
    fi
}

# Prints the candidate version apt would install for a package, or nothing.
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}

# Prints the library packages qemu-system-x86 depends on: its Depends field without the QEMU
# packages we unpack ourselves, alternatives reduced to the first.
qemu_runtime_packages() {
    apt-cache show --no-all-versions qemu-system-x86 |
        sed -n 's/^Depends: //p' | tr ',' '\n' |
        sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' |
        grep -vxE 'qemu-.*|seabios|ipxe-qemu|' || true
}

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_host_packages() {
    command -v apt-get >/dev/null || die "apt-get not found: the lab needs a Debian host"
    # A fresh machine may have no package lists yet.
    if [ -z "$(apt_candidate qemu-system-x86)" ]; then
        apt_update_once
        [ -n "$(apt_candidate qemu-system-x86)" ] ||
            die "qemu-system-x86 is not in the apt sources: $(explain_log "$LAB_STEP_LOG")"
    fi
    local wanted missing=() pkg
    mapfile -t wanted < <(printf '%s\n' "${LAB_BUILD_PACKAGES[@]}"; qemu_runtime_packages)
    for pkg in "${wanted[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} = 0 ]; then
        say "[packages] all ${#wanted[@]} host packages already installed"
        return
    fi
    say "[packages] installing ${missing[*]}"
    require_root_or_sudo "${missing[*]}"
    apt_update_once
    # --no-remove: never let a dependency change remove something (such as qemu-utils 10.0).
    run_logged "apt-get install" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends --no-remove "${missing[@]}"
}
