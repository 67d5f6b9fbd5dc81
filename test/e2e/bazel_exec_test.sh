#!/usr/bin/env bash
# End-to-end test of remote execution: a real Bazel client (Debian's bazel-bootstrap)
# with --remote_executor pointing at a gorego that serves execution, and two
# gorego-worker processes running every action.
#
# usage: bazel_exec_test.sh /path/to/gorego /path/to/gorego-worker
#
# Builds test/bazel/exec_workspace (genrules and a cc_binary), each from a fresh
# output base:
#   0. locally, without any remote: the reference outputs;
#   1. --remote_executor --spawn_strategy=remote --noremote_local_fallback: every
#      action runs on a worker (the workers' logs count them), outputs byte-identical
#      to build 0;
#   2. the same flags again: every action is a remote cache hit;
#   3. with --noremote_accept_cached: every action executes remotely again.
set -euo pipefail

E2E_NAME="bazel exec e2e"
# shellcheck source-path=SCRIPTDIR source=bazel_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bazel_lib.sh"

if [[ $# -ne 2 ]]; then
    echo "usage: $0 /path/to/gorego /path/to/gorego-worker" >&2
    exit 2
fi
resolve_gorego "$1"
WORKER=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[[ -x $WORKER ]] || fail "gorego-worker binary '$WORKER' is not executable"

E2E_WORKSPACE=exec_workspace e2e_setup gorego-bazel-exec-e2e
WORKER_PIDS=()
stop_workers() {
    local pid
    for pid in "${WORKER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${WORKER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    WORKER_PIDS=()
}
trap 'stop_workers; cleanup' EXIT

# Count of a category of Bazel's process summary ("remote", "remote cache hit").
category() { # $1 = category
    local n
    n=$(grep -oE "[0-9]+ $1(,|\.|$)" <<<"$P_LINE" | head -n 1 | grep -oE '^[0-9]+' || true)
    echo "${n:-0}"
}

actions_run_by_workers() {
    cat "$TMP"/worker-*.log 2>/dev/null | grep -c 'action done' || true
}

# Top-level outputs without the runfiles manifest (it holds the output base's absolute
# path, so it differs between any two output bases).
action_outputs() { outputs_sha256 | grep -v 'runfiles_manifest$'; }

# --- build 0: local reference -------------------------------------------------
run_build build0 "$TMP/ob0" --spawn_strategy=local
EXPECTED=$P_EXECUTED
[[ $EXPECTED -ge 8 ]] || fail "build0: expected at least 8 actions, got: $P_LINE"
action_outputs >"$TMP/build0.sha256"
grep -q 'hello_bin$' "$TMP/build0.sha256" || fail "build0: no hello_bin among the outputs"
[[ $(cat "$WS/bazel-bin/run_bin.txt") == "hello, gorego, from a remote action" ]] ||
    fail "build0: run_bin.txt says: $(cat "$WS/bazel-bin/run_bin.txt")"
shutdown_build_server "$TMP/ob0"

# --- gorego serving execution, two workers -----------------------------------
read -r PORT < <(free_ports 1)
start_gorego gorego "$PORT" "$TMP/data" --execution true
for w in one two; do
    "$WORKER" --scheduler "grpc://127.0.0.1:$PORT" --work-dir "$TMP/worker-$w" --slots 2 --id "$w" \
        >>"$TMP/worker-$w.log" 2>&1 &
    WORKER_PIDS+=($!)
done
for ((i = 0; i < 300; i++)); do
    [[ $(grep -c 'connected to the scheduler' "$TMP"/worker-*.log 2>/dev/null | awk -F: '{s += $2} END {print s}') -ge 2 ]] && break
    sleep 0.1
done
[[ $i -lt 300 ]] || fail "the workers did not connect within 30 s"
EXEC_FLAGS=("--remote_executor=grpc://127.0.0.1:$PORT" --spawn_strategy=remote --noremote_local_fallback
            --jobs=4 "--disk_cache=")

# --- build 1: every action on a worker -----------------------------------------
CACHE_FLAGS=("${EXEC_FLAGS[@]}")
run_build build1 "$TMP/ob1"
[[ $(category remote) -eq $EXPECTED && $P_HITS -eq 0 ]] ||
    fail "build1: expected $EXPECTED remote actions and no cache hits, got: $P_LINE"
RUN=$(actions_run_by_workers)
[[ $RUN -eq $EXPECTED ]] || fail "build1: the workers ran $RUN actions, not $EXPECTED"
action_outputs >"$TMP/build1.sha256"
if ! cmp -s "$TMP/build0.sha256" "$TMP/build1.sha256"; then
    diff "$TMP/build0.sha256" "$TMP/build1.sha256" >&2 || true
    fail "build1: remote outputs differ from the local build"
fi
shutdown_build_server "$TMP/ob1"

# --- build 2: fresh output base, all remote cache hits -------------------------
run_build build2 "$TMP/ob2"
[[ $P_HITS -eq $EXPECTED && $(category remote) -eq 0 ]] ||
    fail "build2: expected $EXPECTED remote cache hits, got: $P_LINE"
[[ $(actions_run_by_workers) -eq $RUN ]] || fail "build2: a worker ran an action on a full cache"
action_outputs >"$TMP/build2.sha256"
cmp -s "$TMP/build0.sha256" "$TMP/build2.sha256" || fail "build2: outputs differ from the local build"
shutdown_build_server "$TMP/ob2"

# --- build 3: --noremote_accept_cached executes again --------------------------
run_build build3 "$TMP/ob3" --noremote_accept_cached
[[ $(category remote) -eq $EXPECTED ]] || fail "build3: expected $EXPECTED remote actions, got: $P_LINE"
[[ $(actions_run_by_workers) -eq $((2 * EXPECTED)) ]] ||
    fail "build3: the workers ran $(($(actions_run_by_workers) - RUN)) actions, not $EXPECTED"
shutdown_build_server "$TMP/ob3"

check_servers_alive ""
for pid in "${WORKER_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "a worker died"
done
echo "bazel exec e2e: $EXPECTED actions run on gorego workers, outputs identical to a local build, then all cache hits"
