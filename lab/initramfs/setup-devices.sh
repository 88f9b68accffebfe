# Sourced by /init in the "devices" boot: binds QEMU's edu and nvme to vfio-pci and creates four
# mtty mdevs. A step that fails is reported here and left for the `environment` group's cases to
# fail on, so the runner still runs and reports everything else.

# shellcheck shell=sh disable=SC3043 # busybox ash has `local`
# Binds one PCI function to vfio-pci the way a VMM user does: override, unbind, reprobe.
bind_to_vfio_pci() {
    local bdf="$1" dev="/sys/bus/pci/devices/$1"
    echo vfio-pci >"$dev/driver_override" || return 1
    if [ -e "$dev/driver" ]; then
        echo "$bdf" >"$dev/driver/unbind" || return 1
    fi
    echo "$bdf" >/sys/bus/pci/drivers_probe || return 1
    echo "lab-init: $bdf ($2) bound to $(basename "$(readlink "$dev/driver")")"
}

for dev in /sys/bus/pci/devices/*; do
    bdf="$(basename "$dev")"
    id="$(cat "$dev/vendor"):$(cat "$dev/device")"
    class="$(cat "$dev/class")"
    if [ "$id" = 0x1234:0x11e8 ]; then
        bind_to_vfio_pci "$bdf" edu || echo "lab-init: binding edu $bdf to vfio-pci failed"
    elif [ "$class" = 0x010802 ]; then
        bind_to_vfio_pci "$bdf" nvme || echo "lab-init: binding nvme $bdf to vfio-pci failed"
    fi
done

# Four mtty mdevs (type mtty-2, two ports each): the migration cases save two of them and
# restore into the other two. Keep the count in step with MTTY_COUNT in tests/src/lab/sysfs.rs.
for _ in 1 2 3 4; do
    mtty_uuid="$(cat /proc/sys/kernel/random/uuid)"
    if echo "$mtty_uuid" >/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create; then
        echo "lab-init: mtty mdev $mtty_uuid created"
    else
        echo "lab-init: creating an mtty mdev failed"
    fi
done
