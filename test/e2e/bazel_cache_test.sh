#!/usr/bin/env bash
# End-to-end test: a real Bazel client (Debian's bazel-bootstrap 4.2) against a
# running gorego remote cache.
#
# usage: bazel_cache_test.sh /path/to/gorego
#        bazel_cache_test.sh --disk-cache-selftest   (no gorego: Bazel's local
#            --disk_cache plays the cache, to check the Bazel half of this
#            script; Bazel counts disk cache hits as "remote cache hit" too)
#
# Builds test/bazel/workspace three times, each from a fresh output base:
#   1. cold: every genrule runs locally and its result is uploaded;
#   2. every genrule must be a remote cache hit, outputs byte-identical to 1,
#      and an action's stderr must be replayed from the cache;
#   3. the same with --remote_download_minimal.
# Bazel reports cache errors only as warnings and then quietly builds locally,
# so any "Remote Cache" warning fails the test, as does gorego dying.
#
# Environment knobs (all optional):
#   BAZEL                 bazel binary (default: bazel)
#   BAZEL_E2E_JAVABASE    --server_javabase (default: Debian's JDK 17 if present)
#   BAZEL_E2E_EXTRA_FLAGS extra build flags, word-split (e.g. --spawn_strategy=local)
#   BAZEL_E2E_KEEP_TMP=1  keep the temp dir for inspection
set -euo pipefail

log() { printf 'bazel e2e: %s\n' "$*" >&2; }
fail() { printf 'bazel e2e: FAIL: %s\n' "$*" >&2; exit 1; }

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/gorego | --disk-cache-selftest" >&2
    exit 2
fi

SELFTEST=0
GOREGO=""
if [[ $1 == --disk-cache-selftest ]]; then
    SELFTEST=1
else
    GOREGO=$1
    [[ -x $GOREGO ]] || fail "gorego binary '$GOREGO' is not executable"
    GOREGO=$(cd "$(dirname "$GOREGO")" && pwd)/$(basename "$GOREGO")
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WS_SRC=$SCRIPT_DIR/../bazel/workspace
BAZEL=${BAZEL:-bazel}
JAVABASE=${BAZEL_E2E_JAVABASE:-/usr/lib/jvm/java-17-openjdk-amd64}
[[ -f $WS_SRC/WORKSPACE && -f $WS_SRC/BUILD ]] || fail "workspace not found at $WS_SRC"
command -v "$BAZEL" >/dev/null || fail "bazel not found (BAZEL=$BAZEL)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gorego-bazel-e2e.XXXXXX")
WS=$TMP/ws
GOREGO_PID=""
OUTPUT_BASES=()

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

gorego_alive() {
    [[ -n $GOREGO_PID ]] || return 1
    kill -0 "$GOREGO_PID" 2>/dev/null || return 1
    # kill -0 also succeeds for an unreaped zombie: look at the process state.
    local st
    st=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "/proc/$GOREGO_PID/stat" 2>/dev/null || true)
    [[ $st != Z && $st != X ]]
}

cleanup() {
    local rc=$?
    set +e
    local ob
    for ob in "${OUTPUT_BASES[@]}"; do
        bazel_shutdown "$ob"
    done
    if [[ -n $GOREGO_PID ]]; then
        if kill -0 "$GOREGO_PID" 2>/dev/null; then
            kill -TERM "$GOREGO_PID" 2>/dev/null
            local i
            for ((i = 0; i < 100; i++)); do
                gorego_alive || break
                sleep 0.1
            done
            if gorego_alive; then
                log "gorego (pid $GOREGO_PID) ignored SIGTERM for 10 s; sending SIGKILL"
                kill -KILL "$GOREGO_PID" 2>/dev/null
                [[ $rc -ne 0 ]] || rc=1
            fi
        fi
        wait "$GOREGO_PID" 2>/dev/null
        local st=$?
        [[ $st -eq 0 ]] || log "gorego exit status: $st"
    fi
    if [[ $rc -ne 0 && -f $TMP/gorego.log ]]; then
        echo "----- gorego.log (last 200 lines) -----" >&2
        tail -n 200 "$TMP/gorego.log" >&2
        echo "----- end gorego.log -----" >&2
    fi
    if [[ ${BAZEL_E2E_KEEP_TMP:-0} == 1 ]]; then
        log "keeping $TMP"
    else
        chmod -R u+w "$TMP" 2>/dev/null
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- workspace -------------------------------------------------------------
mkdir -p "$WS"
tar -C "$WS_SRC" --exclude='./bazel-*' -cf - . | tar -C "$WS" -xf -
EXPECTED_ACTIONS=$(grep -c '^genrule(' "$WS/BUILD")
[[ $EXPECTED_ACTIONS -gt 0 ]] || fail "no genrules in $WS/BUILD"
STDERR_MARKER=gorego-e2e-stderr-marker

# --- gorego ----------------------------------------------------------------
if [[ $SELFTEST -eq 1 ]]; then
    CACHE_FLAGS=("--disk_cache=$TMP/disk-cache")
    log "disk-cache selftest (no gorego)"
else
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$TMP/data"
    "$GOREGO" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --log-level info \
        >"$TMP/gorego.log" 2>&1 &
    GOREGO_PID=$!
    log "started gorego pid $GOREGO_PID on 127.0.0.1:$PORT"
    ready=0
    for ((i = 0; i < 300; i++)); do
        gorego_alive || fail "gorego exited during startup"
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [[ $ready -eq 1 ]] || fail "gorego did not accept connections on 127.0.0.1:$PORT within 30 s"
    CACHE_FLAGS=("--remote_cache=grpc://127.0.0.1:$PORT" "--disk_cache=")
fi

# shellcheck disable=SC2206 # word splitting is intended
EXTRA_FLAGS=(${BAZEL_E2E_EXTRA_FLAGS:-})
BUILD_FLAGS=(
    "${CACHE_FLAGS[@]}"
    --remote_retries=0
    --remote_timeout=60
    --incompatible_strict_action_env
    --experimental_repository_disable_download
    --nosandbox_debug # /etc/bazel/bazelrc turns it on; it only adds noise
    --color=no
    --curses=no
    "${EXTRA_FLAGS[@]}"
)

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

run_build() { # $1 = name, $2 = output base, rest = extra build flags
    local name=$1 ob=$2
    shift 2
    local opts rc=0
    mapfile -t opts < <(bazel_startup_opts "$ob")
    OUTPUT_BASES+=("$ob")
    BUILD_LOG=$TMP/$name.log
    log "$name: bazel build //:all $*"
    (cd "$WS" && timeout 900 "$BAZEL" "${opts[@]}" build "${BUILD_FLAGS[@]}" "$@" //:all) \
        >"$BUILD_LOG" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 60 "$BUILD_LOG" >&2
        fail "$name: bazel build exited with $rc"
    fi
    if [[ $SELFTEST -eq 0 ]] && ! gorego_alive; then
        fail "$name: gorego died"
    fi
    check_no_cache_warnings "$BUILD_LOG" "$name"
    parse_processes "$BUILD_LOG"
    log "$name: $P_LINE"
}

shutdown_build_server() { # free the JVM's memory early; 2-core CI box
    bazel_shutdown "$1"
}

# --- build 1: cold, uploads -----------------------------------------------
run_build build1 "$TMP/ob1"
[[ $P_HITS -eq 0 ]] || fail "build1: expected no cache hits on an empty cache, got: $P_LINE"
[[ $P_EXECUTED -eq $EXPECTED_ACTIONS ]] ||
    fail "build1: expected $EXPECTED_ACTIONS locally executed actions, got: $P_LINE"
outputs_sha256 >"$TMP/build1.sha256"
N_OUTPUTS=$(wc -l <"$TMP/build1.sha256")
[[ $N_OUTPUTS -ge $EXPECTED_ACTIONS ]] || fail "build1: only $N_OUTPUTS outputs in bazel-bin"
[[ -f $WS/bazel-bin/empty.txt && ! -s $WS/bazel-bin/empty.txt ]] || fail "build1: empty.txt missing or not empty"
[[ $(stat -c %s "$WS/bazel-bin/twenty_mib.bin") -eq 20971520 ]] || fail "build1: twenty_mib.bin has the wrong size"
grep -q "$STDERR_MARKER" "$BUILD_LOG" || fail "build1: stderr marker of //:noisy not printed"
shutdown_build_server "$TMP/ob1"

# --- build 2: fresh output base, everything from the cache ----------------
run_build build2 "$TMP/ob2"
[[ $P_HITS -eq $EXPECTED_ACTIONS && $P_EXECUTED -eq 0 ]] ||
    fail "build2: expected $EXPECTED_ACTIONS remote cache hits and nothing executed, got: $P_LINE"
outputs_sha256 >"$TMP/build2.sha256"
if ! cmp -s "$TMP/build1.sha256" "$TMP/build2.sha256"; then
    diff "$TMP/build1.sha256" "$TMP/build2.sha256" >&2 || true
    fail "build2: outputs differ from build1"
fi
grep -q "$STDERR_MARKER" "$BUILD_LOG" ||
    fail "build2: stderr of //:noisy was not replayed from the cache"
shutdown_build_server "$TMP/ob2"

# --- build 3: fresh output base, --remote_download_minimal ----------------
# (Bazel 4 rejects --remote_download_outputs=minimal; the alias works.)
run_build build3 "$TMP/ob3" --remote_download_minimal
[[ $P_HITS -eq $EXPECTED_ACTIONS && $P_EXECUTED -eq 0 ]] ||
    fail "build3: expected $EXPECTED_ACTIONS remote cache hits and nothing executed, got: $P_LINE"
shutdown_build_server "$TMP/ob3"

if [[ $SELFTEST -eq 0 ]] && ! gorego_alive; then
    fail "gorego died"
fi

if [[ $SELFTEST -eq 1 ]]; then
    echo "bazel e2e (disk-cache selftest): 3 builds, $EXPECTED_ACTIONS actions, all remote cache hits"
else
    echo "bazel e2e: 3 builds, $EXPECTED_ACTIONS actions, all remote cache hits"
fi
