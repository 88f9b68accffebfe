# Steps "boot mock" and "boot devices": one boot of the lab kernel under QEMU TCG. The console
# (ttyS0) goes to logs/boot-<boot>.console.log, the runner's report lines (ttyS1) to
# logs/boot-<boot>.results. A boot that does not reach the runner's LAB-DONE line fails the step.

LAB_BOOT_TIMEOUT="${LAB_BOOT_TIMEOUT:-300}"

# Prints the QEMU arguments particular to a boot, one per line.
boot_machine_args() {
    case "$1" in
        mock)
            # No vIOMMU: the selftest mock domain refuses to attach while intel-iommu is active.
            printf '%s\n' -machine q35
            ;;
        devices)
            # Legacy (not scalable) mode: QEMU 7.2's scalable mode makes device DMA read zeros.
            printf '%s\n' -machine q35,kernel-irqchip=split \
                -device intel-iommu,intremap=on,caching-mode=on \
                -device edu \
                -drive "file=$LAB_CACHE_DIR/nvme.img,if=none,id=labnvme,format=raw" \
                -device nvme,serial=labnvme,drive=labnvme
            ;;
    esac
}

boot_lab() {
    local boot="$1" filter="$2"
    local console="$LAB_LOG_DIR/boot-$boot.console.log"
    local results="$LAB_LOG_DIR/boot-$boot.results"
    rm -f "$console" "$results"
    [ -e "$LAB_CACHE_DIR/nvme.img" ] || truncate -s 16M "$LAB_CACHE_DIR/nvme.img"

    local cmdline="console=ttyS0 panic=-1 lab.boot=$boot"
    [ "$boot" = devices ] && cmdline+=" intel_iommu=on"
    [ -n "$filter" ] && cmdline+=" lab.filter=$filter"
    local machine_args
    mapfile -t machine_args < <(boot_machine_args "$boot")

    say "[boot $boot] qemu TCG, timeout ${LAB_BOOT_TIMEOUT} s (console log $console)"
    local rc=0
    # -cpu max: nested SVM, so our VMM can later run KVM guests inside the lab.
    timeout --kill-after=10 "$LAB_BOOT_TIMEOUT" env "${LAB_QEMU_ENV[@]}" "$LAB_QEMU" \
        "${LAB_QEMU_FIRMWARE[@]}" -accel tcg "${machine_args[@]}" -cpu max -smp 1 -m 1G \
        -nographic -no-reboot -monitor none -nic none \
        -serial "file:$console" -serial "file:$results" \
        -kernel "$LAB_KERNEL" -initrd "$LAB_INITRAMFS" -append "$cmdline" \
        </dev/null >>"$LAB_STEP_LOG" 2>&1 || rc=$?

    if [ -e "$results" ] && grep -q '^LAB-DONE' "$results"; then
        return
    fi
    local why
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        why="timed out after $LAB_BOOT_TIMEOUT s"
    elif [ "$rc" != 0 ]; then
        why="qemu exited with status $rc: $(tail -n 1 "$LAB_STEP_LOG")"
    elif grep -q 'lab-init: lab-runner exited' "$console" 2>/dev/null; then
        why="$(grep -m1 -o 'lab-runner exited with status [0-9]*' "$console") before finishing"
    elif grep -q 'Kernel panic' "$console" 2>/dev/null; then
        why="kernel panic: $(grep -m1 'Kernel panic' "$console" | tr -d '\r')"
    else
        why="the guest stopped before the runner finished"
    fi
    # Show the guest's last words rather than QEMU's (usually empty) output.
    [ -s "$console" ] && LAB_STEP_LOG="$console"
    die "$why (no LAB-DONE line in $results)"
}
