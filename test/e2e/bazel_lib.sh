# shellcheck shell=bash
# Shared code of the Bazel end-to-end scripts bazel_cache_test.sh and
# bazel_proxy_test.sh. Not a script of its own: source it after
# `set -euo pipefail`, with E2E_NAME set to the prefix of log lines
# (e.g. "bazel e2e"). Sourcing only defines functions; e2e_setup does the work.
#
# Environment knobs (all optional), read by e2e_setup:
#   BAZEL                 bazel binary (default: bazel)
#   BAZEL_E2E_JAVABASE    --server_javabase (default: Debian's JDK 17 if present)
#   BAZEL_E2E_EXTRA_FLAGS extra build flags, word-split (e.g. --spawn_strategy=local)
#   BAZEL_E2E_KEEP_TMP=1  keep the temp dir for inspection
#   E2E_WORKSPACE         directory under test/bazel to build (default: workspace)
#
# Variables for the caller after e2e_setup:
#   TMP, WS, EXPECTED_ACTIONS, STDERR_MARKER
#   CACHE_FLAGS    cache flags of the next run_build (the caller sets them)
#   BUILD_LOG      log of the last run_build
#   P_TOTAL, P_HITS, P_INTERNAL, P_EXECUTED, P_LINE   its process summary

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '%s: %s\n' "$E2E_NAME" "$*" >&2; }
fail() { printf '%s: FAIL: %s\n' "$E2E_NAME" "$*" >&2; exit 1; }

resolve_gorego() { # $1 = path of the gorego binary; sets GOREGO (absolute)
    GOREGO=$1
    [[ -x $GOREGO ]] || fail "gorego binary '$GOREGO' is not executable"
    GOREGO=$(cd "$(dirname "$GOREGO")" && pwd)/$(basename "$GOREGO")
}

# Checks the tools, creates $TMP (removed by the EXIT trap), copies the
# workspace to $WS and sets the build flags shared by every build.
e2e_setup() { # $1 = name prefix of the temp dir
    WS_SRC=$E2E_LIB_DIR/../bazel/${E2E_WORKSPACE:-workspace}
    BAZEL=${BAZEL:-bazel}
    JAVABASE=${BAZEL_E2E_JAVABASE:-/usr/lib/jvm/java-17-openjdk-amd64}
    [[ -f $WS_SRC/WORKSPACE && -f $WS_SRC/BUILD ]] || fail "workspace not found at $WS_SRC"
    command -v "$BAZEL" >/dev/null || fail "bazel not found (BAZEL=$BAZEL)"

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    WS=$TMP/ws
    OUTPUT_BASES=()
    SERVER_NAMES=()         # gorego instances, in start order
    declare -gA SERVER_PID=() # name -> pid; "" once stopped
    CACHE_FLAGS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    mkdir -p "$WS"
    tar -C "$WS_SRC" --exclude='./bazel-*' -cf - . | tar -C "$WS" -xf -
    EXPECTED_ACTIONS=$(grep -c '^genrule(' "$WS/BUILD")
    [[ $EXPECTED_ACTIONS -gt 0 ]] || fail "no genrules in $WS/BUILD"
    STDERR_MARKER=gorego-e2e-stderr-marker

    local extra
    # shellcheck disable=SC2206 # word splitting is intended
    extra=(${BAZEL_E2E_EXTRA_FLAGS:-})
    COMMON_BUILD_FLAGS=(
        --remote_retries=0
        --remote_timeout=60
        --incompatible_strict_action_env
        --experimental_repository_disable_download
        --nosandbox_debug # /etc/bazel/bazelrc turns it on; it only adds noise
        --color=no
        --curses=no
        "${extra[@]}"
    )
}

bazel_startup_opts() { # $1 = output base
    local opts=(--nohome_rc "--output_user_root=$TMP/bazel-root" "--output_base=$1"
                --max_idle_secs=60)
    if [[ -d $JAVABASE ]]; then
        opts+=("--server_javabase=$JAVABASE")
    fi
    printf '%s\n' "${opts[@]}"
}

bazel_shutdown() { # $1 = output base; must use the same startup options
    local ob=$1 opts
    [[ -d $ob ]] || return 0
    mapfile -t opts < <(bazel_startup_opts "$ob")
    (cd "$WS" && timeout 120 "$BAZEL" "${opts[@]}" shutdown) >/dev/null 2>&1 || true
}

# --- gorego instances --------------------------------------------------------
# Each has a name; its output goes to $TMP/NAME.log (appended across restarts).

free_ports() { # $1 = count; prints that many distinct free loopback ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

gorego_alive() { # $1 = name
    local pid=${SERVER_PID[$1]:-}
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # kill -0 also succeeds for an unreaped zombie: look at the process state.
    local st
    st=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "/proc/$pid/stat" 2>/dev/null || true)
    [[ $st != Z && $st != X ]]
}

# Starts gorego in the background and waits until it accepts connections.
start_gorego() { # $1 = name, $2 = port, $3 = data dir, rest = more gorego flags
    local name=$1 port=$2 data=$3
    shift 3
    mkdir -p "$data"
    "$GOREGO" --listen "127.0.0.1:$port" --data-dir "$data" --metrics-addr "" --log-level info "$@" \
        >>"$TMP/$name.log" 2>&1 &
    SERVER_PID[$name]=$!
    local n known=0
    for n in "${SERVER_NAMES[@]}"; do
        [[ $n != "$name" ]] || known=1
    done
    [[ $known -eq 1 ]] || SERVER_NAMES+=("$name")
    log "started $name pid ${SERVER_PID[$name]} on 127.0.0.1:$port"
    local i ready=0
    for ((i = 0; i < 300; i++)); do
        gorego_alive "$name" || fail "$name exited during startup"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [[ $ready -eq 1 ]] || fail "$name did not accept connections on 127.0.0.1:$port within 30 s"
}

# What each thread of a process that will not exit is doing: state, wait channel and,
# for threads in uninterruptible sleep, the kernel stack (readable as root).
describe_threads() { # $1 = pid
    local t st
    for t in /proc/"$1"/task/*; do
        st=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "$t/stat" 2>/dev/null || true)
        log "  thread ${t##*/} ($(cat "$t/comm" 2>/dev/null)): state $st, wchan $(cat "$t/wchan" 2>/dev/null)"
        if [[ $st == D ]]; then
            sed 's/^/      /' "$t/stack" >&2 2>/dev/null || true
        fi
    done
}

# SIGTERM, then up to 20 s for it to exit (beyond gorego's default 10 s grace period),
# then SIGKILL. Sets STOP_STATUS to its exit status; returns 1 if SIGKILL was needed.
# No-op if not running. The exit is seen by `wait`, not by polling /proc: polling once
# judged a gorego that had exited 0 to be running for 20 s (its /proc entry unreadable
# while kill -0 still succeeded). A watchdog sends the SIGKILL.
stop_gorego() { # $1 = name
    local name=$1 pid=${SERVER_PID[$1]:-}
    STOP_STATUS=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    (
        sleep 10 >/dev/null 2>&1  # not holding the test's output open once killed
        log "$name (pid $pid) still running 10 s after SIGTERM:"
        describe_threads "$pid"
        sleep 10 >/dev/null 2>&1  # not holding the test's output open once killed
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        describe_threads "$pid"
        kill -KILL "$pid" 2>/dev/null
    ) &
    local watchdog=$!
    wait "$pid" 2>/dev/null || STOP_STATUS=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    [[ $STOP_STATUS -eq 0 ]] || log "$name exit status: $STOP_STATUS"
    SERVER_PID[$name]=""
    [[ $STOP_STATUS -ne 137 ]]  # 128 + SIGKILL
}

check_servers_alive() { # $1 = message prefix (e.g. "build1: ") or ""
    local name
    for name in "${SERVER_NAMES[@]}"; do
        [[ -n ${SERVER_PID[$name]} ]] || continue # stopped on purpose
        gorego_alive "$name" || fail "$1$name died"
    done
}

cleanup() {
    local rc=$?
    set +e
    local ob i name
    for ob in "${OUTPUT_BASES[@]}"; do
        bazel_shutdown "$ob"
    done
    for ((i = ${#SERVER_NAMES[@]} - 1; i >= 0; i--)); do
        if ! stop_gorego "${SERVER_NAMES[i]}"; then
            [[ $rc -ne 0 ]] || rc=1
        fi
    done
    if [[ $rc -ne 0 ]]; then
        for name in "${SERVER_NAMES[@]}"; do
            [[ -f $TMP/$name.log ]] || continue
            echo "----- $name.log (last 200 lines) -----" >&2
            tail -n 200 "$TMP/$name.log" >&2
            echo "----- end $name.log -----" >&2
        done
    fi
    if [[ ${BAZEL_E2E_KEEP_TMP:-0} == 1 ]]; then
        log "keeping $TMP"
    else
        chmod -R u+w "$TMP" 2>/dev/null
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# --- builds ------------------------------------------------------------------

# Parse Bazel 4's summary line, e.g.
#   INFO: 12 processes: 2 internal, 10 linux-sandbox.
#   INFO: 11 processes: 10 remote cache hit, 1 internal.
#   INFO: 1 process: 1 internal.
# Sets P_TOTAL, P_HITS, P_INTERNAL, P_EXECUTED (every other category: local,
# linux-sandbox, processwrapper-sandbox, worker, ...) and P_LINE.
parse_processes() { # $1 = log file
    P_LINE=$(grep -E '^INFO: [0-9]+ process(es)?[:.]' "$1" | tail -n 1 || true)
    [[ -n $P_LINE ]] || fail "no 'INFO: N processes:' line in $1"
    local rest=${P_LINE#INFO: }
    P_TOTAL=${rest%% *}
    P_HITS=0 P_INTERNAL=0 P_EXECUTED=0
    [[ $rest == *:* ]] || return 0
    rest=${rest#*: }
    rest=${rest%.}
    local item n cat
    IFS=',' read -ra items <<<"$rest"
    for item in "${items[@]}"; do
        item=${item# }
        n=${item%% *}
        cat=${item#* }
        [[ $n =~ ^[0-9]+$ ]] || fail "cannot parse '$item' in: $P_LINE"
        case $cat in
            "remote cache hit") P_HITS=$((P_HITS + n)) ;;
            internal) P_INTERNAL=$((P_INTERNAL + n)) ;;
            *) P_EXECUTED=$((P_EXECUTED + n)) ;;
        esac
    done
    [[ $((P_HITS + P_INTERNAL + P_EXECUTED)) -eq $P_TOTAL ]] ||
        fail "categories do not add up to the total in: $P_LINE"
}

# Bazel reports cache errors only as warnings and then quietly builds locally.
check_no_cache_warnings() { # $1 = log file, $2 = build name
    local bad
    bad=$(grep -E 'WARNING: (Reading from Remote Cache|Writing to Remote Cache|Remote Cache)|^WARNING: .*[Rr]emote [Cc]ache' "$1" || true)
    if [[ -n $bad ]]; then
        printf '%s\n' "$bad" | head -n 20 >&2
        fail "$2: Bazel reported remote cache errors (it silently fell back to local execution)"
    fi
}

outputs_sha256() { # writes "sha256  ./name" lines of the top-level outputs
    (cd -P "$WS/bazel-bin" && find . -maxdepth 1 -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# Builds //:all with "${CACHE_FLAGS[@]}"; fails on a build error, a cache
# warning or a dead gorego, then parses the process summary.
run_build() { # $1 = name, $2 = output base, rest = extra build flags
    local name=$1 ob=$2
    shift 2
    local opts rc=0
    mapfile -t opts < <(bazel_startup_opts "$ob")
    OUTPUT_BASES+=("$ob")
    BUILD_LOG=$TMP/$name.log
    log "$name: bazel build //:all $*"
    (cd "$WS" && timeout 900 "$BAZEL" "${opts[@]}" build \
        "${CACHE_FLAGS[@]}" "${COMMON_BUILD_FLAGS[@]}" "$@" //:all) \
        >"$BUILD_LOG" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 60 "$BUILD_LOG" >&2
        fail "$name: bazel build exited with $rc"
    fi
    check_servers_alive "$name: "
    check_no_cache_warnings "$BUILD_LOG" "$name"
    parse_processes "$BUILD_LOG"
    log "$name: $P_LINE"
}

shutdown_build_server() { # free the JVM's memory early; 2-core CI box
    bazel_shutdown "$1"
}

# Checks of the last run_build.

expect_cold_build() { # $1 = name: nothing from the cache, every action ran
    local name=$1
    [[ $P_HITS -eq 0 ]] || fail "$name: expected no cache hits on an empty cache, got: $P_LINE"
    [[ $P_EXECUTED -eq $EXPECTED_ACTIONS ]] ||
        fail "$name: expected $EXPECTED_ACTIONS locally executed actions, got: $P_LINE"
    outputs_sha256 >"$TMP/$name.sha256"
    local n_outputs
    n_outputs=$(wc -l <"$TMP/$name.sha256")
    [[ $n_outputs -ge $EXPECTED_ACTIONS ]] || fail "$name: only $n_outputs outputs in bazel-bin"
    [[ -f $WS/bazel-bin/empty.txt && ! -s $WS/bazel-bin/empty.txt ]] || fail "$name: empty.txt missing or not empty"
    [[ $(stat -c %s "$WS/bazel-bin/twenty_mib.bin") -eq 20971520 ]] || fail "$name: twenty_mib.bin has the wrong size"
    grep -q "$STDERR_MARKER" "$BUILD_LOG" || fail "$name: stderr marker of //:noisy not printed"
}

expect_all_hits() { # $1 = name: every action a remote cache hit
    [[ $P_HITS -eq $EXPECTED_ACTIONS && $P_EXECUTED -eq 0 ]] ||
        fail "$1: expected $EXPECTED_ACTIONS remote cache hits and nothing executed, got: $P_LINE"
}

# Outputs byte-identical to those of an expect_cold_build build, and the
# stderr of //:noisy replayed from the cache. Not for --remote_download_minimal.
expect_same_outputs() { # $1 = name, $2 = name of the cold build
    local name=$1 ref=$2
    outputs_sha256 >"$TMP/$name.sha256"
    if ! cmp -s "$TMP/$ref.sha256" "$TMP/$name.sha256"; then
        diff "$TMP/$ref.sha256" "$TMP/$name.sha256" >&2 || true
        fail "$name: outputs differ from $ref"
    fi
    grep -q "$STDERR_MARKER" "$BUILD_LOG" ||
        fail "$name: stderr of //:noisy was not replayed from the cache"
}
