# Step "results": reads the report lines of every boot back and prints each case, the skips with
# their reasons, failures, disagreements and the closing line
# `lab: N cases, emulated P pass, kernel Q pass, S skipped, D disagree`
# (the parsing and counting live in tests/src/lab/, shared with the runner). Sets LAB_PASSED.

summarize_results() {
    local args=() boot rc=0
    for boot in "$@"; do
        args+=("$boot=$LAB_LOG_DIR/boot-$boot.results")
    done
    "$LAB_RUNNER" summarize "${args[@]}" 2>>"$LAB_STEP_LOG" || rc=$?
    case "$rc" in
        0) LAB_PASSED=1 ;;
        1) LAB_PASSED=0 ;;
        *) die "the report lines could not be read: $(tail -n 1 "$LAB_STEP_LOG")" ;;
    esac
}
