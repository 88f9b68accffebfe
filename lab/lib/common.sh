# Shared helpers of the kernel lab scripts: paths, logging, step bookkeeping and failure reports.
# Sourced by lab/run; defines functions and variables only.

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$LAB_DIR/.." && pwd)"
# Everything the lab downloads or builds lives here; a later run reuses it.
LAB_CACHE_DIR="${LAB_CACHE_DIR:-$REPO_DIR/.cache/lab}"
LAB_LOG_DIR="$LAB_CACHE_DIR/logs"

# apt-get install needs root; every other step runs as the invoking user.
if [ "$(id -u)" = 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

# The step being run, named in every failure message.
LAB_STEP="start"
# Log of the step's noisy commands; its tail is shown when the step fails.
LAB_STEP_LOG=""

# Prints a progress line.
say() {
    echo "lab: $*"
}

# Stops the lab with one line naming the step and the reason, after the tail of the step's log.
die() {
    trap - ERR
    if [ -n "$LAB_STEP_LOG" ] && [ -s "$LAB_STEP_LOG" ]; then
        echo "lab: last lines of $LAB_STEP_LOG:" >&2
        tail -n 15 "$LAB_STEP_LOG" | sed 's/^/    /' >&2
    fi
    echo "lab: FAILED at step '$LAB_STEP': $*" >&2
    exit 1
}

# Names the cause of a failed command from what it printed: the usual reasons a fresh machine
# cannot do a step (no network, full disk, package unknown to apt).
explain_log() {
    local log="$1"
    if grep -qiE 'No space left on device' "$log"; then
        echo "no space left on the disk (df -h $LAB_CACHE_DIR)"
    elif grep -qiE 'Temporary failure resolving|Could not resolve|Network is unreachable|Connection timed out|Failed to fetch|Could not connect' "$log"; then
        echo "no network access to the Debian mirror"
    elif grep -qiE 'Unable to locate package|has no installation candidate|Package .* is not available' "$log"; then
        echo "a package is not in the apt sources: $(grep -oiE "(Unable to locate package|Package) [^ ]+" "$log" | head -n 1)"
    elif grep -qiE 'Could not get lock|Unable to acquire the dpkg frontend lock' "$log"; then
        echo "another apt or dpkg is running (its lock is held)"
    else
        echo "see $log"
    fi
}

# Runs a command with its output in the step's log; on failure stops with a line built from
# the given description and the explained log.
run_logged() {
    local what="$1"
    shift
    if ! "$@" >>"$LAB_STEP_LOG" 2>&1; then
        die "$what failed: $(explain_log "$LAB_STEP_LOG")"
    fi
}

# Runs one named step (a shell function), timing it. Unexpected command failures inside it are
# reported by the ERR trap with the failing command.
step() {
    local name="$1"
    shift
    LAB_STEP="$name"
    LAB_STEP_LOG="$LAB_LOG_DIR/${name// /-}.log"
    : >"$LAB_STEP_LOG"
    local start=$SECONDS
    "$@"
    say "[$name] done in $((SECONDS - start)) s"
    LAB_STEP_LOG=""
}

on_unexpected_error() {
    local rc=$? cmd="$BASH_COMMAND"
    die "command '$cmd' exited with status $rc"
}

# Fails unless the file system holding the given directory has this many GiB free.
require_free_gib() {
    local dir="$1" need_gib="$2" have_kib
    have_kib="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
    if [ "$have_kib" -lt $((need_gib * 1024 * 1024)) ]; then
        die "needs $need_gib GiB free under $dir, only $((have_kib / 1024 / 1024)) GiB left"
    fi
}
