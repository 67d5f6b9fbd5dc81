#!/usr/bin/env bash
# Smoke test of the load tool: every gorego-load workload, briefly, against a real gorego.
# Fails if any run exits non-zero (gorego-load verifies every answer and every byte it
# reads), or if a run that must fail (reading a population never uploaded) succeeds.
# No timing is asserted.
#
# With a third argument, the same client also drives gorego-echo (the gRPC floor server
# of benchmark/) with the workloads it serves.
#
# With LOAD_SMOKE_WORKER set (the gorego-worker binary), the execute workload also runs, against
# a second gorego serving execution with one worker.
#
# usage: load_smoke.sh /path/to/gorego /path/to/gorego-load [/path/to/gorego-echo]
set -euo pipefail

log() { printf 'load smoke: %s\n' "$*" >&2; }
fail() { printf 'load smoke: FAIL: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 || $# -eq 3 ]] || { echo "usage: $0 /path/to/gorego /path/to/gorego-load [/path/to/gorego-echo]" >&2; exit 2; }
GOREGO=$1
LOAD=$2
ECHO=${3:-}
[[ -x $GOREGO ]] || fail "gorego binary '$GOREGO' is not executable"
[[ -x $LOAD ]] || fail "gorego-load binary '$LOAD' is not executable"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gorego-load-smoke.XXXXXX")
SERVER_PID=
ECHO_PID=
EXEC_PID=
WORKER_PID=
cleanup() {
    for pid in $SERVER_PID $ECHO_PID $WORKER_PID $EXEC_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_listening() { # pid port name log
    for ((i = 0; i < 300; i++)); do
        kill -0 "$1" 2>/dev/null || { cat "$4" >&2; fail "$3 exited during start-up"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "$3 did not listen on port $2 within 30 s"
}

PORT=$(free_port)
"$GOREGO" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --metrics-addr "" --fsync false >"$TMP/gorego.log" 2>&1 &
SERVER_PID=$!
wait_listening "$SERVER_PID" "$PORT" gorego "$TMP/gorego.log"
log "gorego pid $SERVER_PID on 127.0.0.1:$PORT"

# Small population shared by the reading workloads.
POP=(--blobs 2000 --size 512 --seed 7)
COMMON=(--target "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --concurrency 4)

load() { # workload and options; fails the test if gorego-load exits non-zero
    log "gorego-load $*"
    "$LOAD" "${COMMON[@]}" "$@" || fail "gorego-load $* exited with status $?"
}

load --workload populate "${POP[@]}"
load --workload populate --mixed --blobs 12 --seed 8 --chunk 256KiB  # 1 large blob by ByteStream, 1 medium
load --workload find-missing "${POP[@]}" --requests 50 --per-request 100 --missing-fraction 0.3
load --workload batch-read "${POP[@]}" --requests 50 --per-request 20
load --workload batch-read --mixed --blobs 12 --seed 8 --requests 20 --per-request 4
load --workload batch-update --requests 50 --per-request 10 --size 1KiB
load --workload bytestream-write --requests 20 --size 300KiB --chunk 64KiB
load --workload bytestream-read --requests 50 --size 300KiB --chunk 64KiB --distinct 4
load --workload ac-update "${POP[@]}" --requests 50
load --workload ac-get "${POP[@]}" --requests 50 --actions 20 --json >"$TMP/ac-get.json"
grep -q '"workload":"ac-get"' "$TMP/ac-get.json" || fail "--json output lacks the workload: $(cat "$TMP/ac-get.json")"
load --workload find-missing "${POP[@]}" --duration 0.5 --channels shared

# Verification must bite: a population that was never uploaded is refused.
if "$LOAD" "${COMMON[@]}" --workload batch-read --blobs 2000 --size 512 --seed 99 --requests 10 2>"$TMP/neg.log"; then
    fail "batch-read of a population never uploaded exited 0"
fi
grep -q "missing" "$TMP/neg.log" || fail "batch-read of a missing population did not say why: $(cat "$TMP/neg.log")"

# cold-start runs its own gorego on its own port, in a directory under $TMP.
TMPDIR=$TMP load --workload cold-start --blobs 2000 --size 256 --check-digests 200 \
    --server-cmd "$GOREGO --listen 127.0.0.1:{port} --data-dir {dir} --metrics-addr 127.0.0.1:0 --fsync false"

load --workload spawn-local --requests 20

if [[ -n ${LOAD_SMOKE_WORKER:-} ]]; then
    XPORT=$(free_port)
    "$GOREGO" --listen "127.0.0.1:$XPORT" --data-dir "$TMP/exec-data" --metrics-addr "" --fsync false \
        --execution true >"$TMP/exec.log" 2>&1 &
    EXEC_PID=$!
    wait_listening "$EXEC_PID" "$XPORT" "gorego (execution)" "$TMP/exec.log"
    "$LOAD_SMOKE_WORKER" --scheduler "grpc://127.0.0.1:$XPORT" --work-dir "$TMP/worker" --slots 2 >"$TMP/worker.log" 2>&1 &
    WORKER_PID=$!
    log "gorego-load --workload execute"
    "$LOAD" --target "127.0.0.1:$XPORT" --server-pid "$EXEC_PID" --concurrency 4 --workload execute --requests 40 ||
        { cat "$TMP/worker.log" >&2; fail "gorego-load --workload execute failed"; }
    kill -TERM "$WORKER_PID" "$EXEC_PID"
    wait "$WORKER_PID" || fail "gorego-worker exited with status $? after SIGTERM"
    wait "$EXEC_PID" || fail "gorego (execution) exited with status $? after SIGTERM"
    WORKER_PID=
    EXEC_PID=
fi

if [[ -n $ECHO ]]; then
    EPORT=$(free_port)
    "$ECHO" --listen "127.0.0.1:$EPORT" >"$TMP/echo.log" 2>&1 &
    ECHO_PID=$!
    wait_listening "$ECHO_PID" "$EPORT" gorego-echo "$TMP/echo.log"
    ECHO_COMMON=(--target "127.0.0.1:$EPORT" --server-pid "$ECHO_PID" --concurrency 4)
    for args in "--workload find-missing --missing-fraction 0" "--workload ac-update" "--workload ac-get --actions 20"; do
        log "gorego-load (echo) $args"
        # shellcheck disable=SC2086
        "$LOAD" "${ECHO_COMMON[@]}" "${POP[@]}" --requests 50 $args || fail "gorego-load $args against gorego-echo failed"
    done
    kill -TERM "$ECHO_PID"
    status=0
    wait "$ECHO_PID" || status=$?
    ECHO_PID=
    [[ $status -eq 0 ]] || fail "gorego-echo exited with status $status after SIGTERM"
fi

kill -0 "$SERVER_PID" 2>/dev/null || fail "gorego died during the runs"
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[[ $status -eq 0 ]] || fail "gorego exited with status $status after SIGTERM"
log "all workloads passed"
