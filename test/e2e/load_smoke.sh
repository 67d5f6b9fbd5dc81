#!/usr/bin/env bash
# Smoke test of the load tool: every gorego-load workload, briefly, against a real gorego.
# Fails if any run exits non-zero (gorego-load verifies every answer and every byte it
# reads), or if a run that must fail (reading a population never uploaded) succeeds.
# No timing is asserted.
#
# usage: load_smoke.sh /path/to/gorego /path/to/gorego-load
set -euo pipefail

log() { printf 'load smoke: %s\n' "$*" >&2; }
fail() { printf 'load smoke: FAIL: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 /path/to/gorego /path/to/gorego-load" >&2; exit 2; }
GOREGO=$1
LOAD=$2
[[ -x $GOREGO ]] || fail "gorego binary '$GOREGO' is not executable"
[[ -x $LOAD ]] || fail "gorego-load binary '$LOAD' is not executable"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gorego-load-smoke.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$GOREGO" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --metrics-addr "" --fsync false >"$TMP/gorego.log" 2>&1 &
SERVER_PID=$!
for ((i = 0; i < 300; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/gorego.log" >&2; fail "gorego exited during start-up"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || fail "gorego did not listen on port $PORT within 30 s"
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

kill -0 "$SERVER_PID" 2>/dev/null || fail "gorego died during the runs"
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[[ $status -eq 0 ]] || fail "gorego exited with status $status after SIGTERM"
log "all workloads passed"
