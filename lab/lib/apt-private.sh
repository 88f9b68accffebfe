# A private apt view for downloading .debs: the machine's own sources plus bookworm-backports
# (where linux-source-6.12 is published when the default sources lack it), with package lists
# and caches kept under the lab cache. The system's sources and lists are never modified.
#
# apt's usual priorities still apply: a package in the default sources wins over backports
# (priority 100), so backports only supplies what the default sources do not have.

LAB_APT_DIR="$LAB_CACHE_DIR/apt"
LAB_BACKPORTS_LINE="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main"

apt_private() {
    local sandbox=()
    # Downloads land in a directory of ours that the _apt user may not be able to write.
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    apt-get -q \
        -o Dir::Etc::sourceparts="$LAB_APT_DIR/sources.list.d" \
        -o Dir::State::Lists="$LAB_APT_DIR/lists" \
        -o Dir::Cache="$LAB_APT_DIR/cache" \
        "${sandbox[@]}" "$@"
}

apt_private_policy_candidate() {
    apt-cache \
        -o Dir::Etc::sourceparts="$LAB_APT_DIR/sources.list.d" \
        -o Dir::State::Lists="$LAB_APT_DIR/lists" \
        -o Dir::Cache="$LAB_APT_DIR/cache" \
        policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}

# Refreshes the private package lists (a second or two once they exist).
apt_private_update() {
    local parts="$LAB_APT_DIR/sources.list.d" f
    rm -rf "$parts"
    mkdir -p "$parts" "$LAB_APT_DIR/lists/partial" "$LAB_APT_DIR/cache/archives/partial"
    # The machine's own source files, by link, so a mirror set up for this host is honoured.
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] && ln -s "$f" "$parts/"
    done
    echo "$LAB_BACKPORTS_LINE" >"$parts/lab-bookworm-backports.list"
    run_logged "apt-get update (private lists with bookworm-backports)" apt_private update
    # apt-get update succeeds when an index cannot be fetched, keeping any older copy. That lets
    # a cached lab run offline; when a package is then missing, its step names this cause.
    LAB_SOURCES_PROBLEM=""
    if grep -qE '^(W|E): Failed to fetch' "$LAB_STEP_LOG"; then
        LAB_SOURCES_PROBLEM="package lists could not be refreshed: $(explain_log "$LAB_STEP_LOG")"
        say "[sources] warning: $LAB_SOURCES_PROBLEM; using copies from an earlier run if any"
    fi
}

# Stops because a package has no candidate in the private view, naming the likely cause.
die_no_candidate() {
    die "$1 is in neither the default sources nor bookworm-backports${LAB_SOURCES_PROBLEM:+ ($LAB_SOURCES_PROBLEM)}"
}

# Downloads the candidate .deb of each package into a directory; prints nothing.
apt_private_download() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    (cd "$dir" && apt_private download "$@") >>"$LAB_STEP_LOG" 2>&1 ||
        die "downloading $* failed: $(explain_log "$LAB_STEP_LOG")"
}
