#!/usr/bin/env bash
# Same-run cost of the durable write-back journal: a gorego proxy in mode back (fsync on, the
# default) in front of a local upstream gorego, with `remote.journal` off and on, on small
# batch uploads and 4 MiB ByteStream uploads. Each set-up runs each workload in turn, for
# several rounds; prints one tab-separated line per run and the medians, with the journal's
# ratio to no journal. No figure is asserted.
#
# usage: benchmark/journal_ab.sh GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]" >&2; exit 2; }
BIN=$1
LOAD=$2
ROUNDS=${3:-3}
SECONDS_PER_RUN=${4:-5}
# shellcheck source=bench_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/bench_lib.sh"
bench_setup gorego-journal-ab

UP_PORT=$(free_port)
"$BIN" --listen "127.0.0.1:$UP_PORT" --data-dir "$TMP/up" --metrics-addr "" --fsync false >"$TMP/up.log" 2>&1 &
PIDS+=($!)
wait_listening "$UP_PORT"

WORKLOADS=(
    "batch-update --size 4KiB --per-request 10"
    "bytestream-write --size 4MiB"
)

printf 'round\tsetup\tworkload\trequests_per_second\tmegabytes_per_second\tserver_us_per_request\n' >"$TMP/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for setup in no-journal journal; do
        PORT=$(free_port)
        journal=false
        [[ $setup == journal ]] && journal=true
        # A queue large enough that no run drops an upload: every one pays the journal.
        GOREGO_REMOTE_QUEUE_SIZE=1000000 GOREGO_REMOTE_JOURNAL=$journal "$BIN" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data-$round-$setup" \
            --metrics-addr "" --upstream "grpc://127.0.0.1:$UP_PORT" --upstream-mode back \
            >"$TMP/$round-$setup.log" 2>&1 &
        PID=$!
        PIDS+=("$PID")
        wait_listening "$PORT"
        for w in "${WORKLOADS[@]}"; do
            # shellcheck disable=SC2086
            json=$("$LOAD" --target "127.0.0.1:$PORT" --server-pid "$PID" --duration "$SECONDS_PER_RUN" \
                --concurrency 8 --seed "$round$RANDOM" --json --workload $w)
            bench_row "$round" "$setup" "$json"
            tail -1 "$TMP/runs.tsv"
        done
        if [[ $setup == journal ]] && ! grep -q . "$TMP/data-$round-$setup/write-back.journal"; then
            echo "the journal set-up wrote no journal" >&2
            exit 1
        fi
        kill -TERM "$PID"
        wait "$PID" 2>/dev/null || true
    done
done

python3 - "$TMP/runs.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nworkload\tsetup\treq/s\tMB/s\tserver us/req\treq/s vs no-journal")
for w in sorted({r["workload"] for r in rows}):
    base = None
    for setup in ("no-journal", "journal"):
        rs = [r for r in rows if r["workload"] == w and r["setup"] == setup]
        rps = statistics.median(float(r["requests_per_second"]) for r in rs)
        mbs = statistics.median(float(r["megabytes_per_second"]) for r in rs)
        us = statistics.median(float(r["server_us_per_request"]) for r in rs)
        base = base or rps
        print(f"{w}\t{setup}\t{rps:.0f}\t{mbs:.1f}\t{us:.1f}\t{rps / base:.2f}")
PY
