#!/usr/bin/env bash
# Same-run A/B of two gorego binaries with gorego-load: each workload runs against binary A,
# then B, alternating for several rounds, locally and through a proxy (the proxy in front of
# an upstream gorego of the same binary, both on fresh data directories). Prints one
# tab-separated line per run and, at the end, the median of each (workload, mode, binary)
# with B/A as a ratio. No figure is asserted: the machine is shared; compare the ratios.
#
# usage: benchmark/ab.sh OLD_GOREGO NEW_GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 OLD_GOREGO NEW_GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]" >&2; exit 2; }
A=$1
B=$2
LOAD=$3
ROUNDS=${4:-2}
SECONDS_PER_RUN=${5:-5}
# shellcheck source=bench_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/bench_lib.sh"
bench_setup gorego-ab
start() { # binary name extra-args...; sets PORT and PID
    local bin=$1 name=$2
    shift 2
    PORT=$(free_port)
    "$bin" --listen "127.0.0.1:$PORT" --data-dir "$TMP/$name" --metrics-addr "" --fsync false "$@" >"$TMP/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_listening "$PORT"
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

POP=(--blobs 20000 --size 1KiB --seed 3)
# The first three use the 1 KiB population; the ByteStream ones use 4 MiB blobs of their own.
WORKLOADS=(
    "find-missing --per-request 100 ${POP[*]}"
    "batch-read --per-request 50 ${POP[*]}"
    "ac-get ${POP[*]}"
    "bytestream-read --size 4MiB --distinct 8"
    "bytestream-write --size 4MiB"
)

printf 'round\tmode\tbinary\tworkload\trequests_per_second\tmegabytes_per_second\tserver_us_per_request\tp99_ms\n' >"$TMP/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for mode in local proxy; do
        for which in A B; do
            bin=$A
            [[ $which == B ]] && bin=$B
            tag="$round-$mode-$which"
            if [[ $mode == proxy ]]; then
                start "$bin" "up-$tag"
                up_port=$PORT up_pid=$PID
                start "$bin" "proxy-$tag" --upstream "grpc://127.0.0.1:$up_port"
            else
                start "$bin" "local-$tag"
                up_pid=
            fi
            target=127.0.0.1:$PORT
            "$LOAD" --target "$target" --workload populate "${POP[@]}" --concurrency 8 >/dev/null
            for w in "${WORKLOADS[@]}"; do
                # shellcheck disable=SC2086
                json=$("$LOAD" --target "$target" --server-pid "$PID" --duration "$SECONDS_PER_RUN" --concurrency 8 \
                    --json --workload $w)
                python3 - "$round" "$mode" "$which" "$json" >>"$TMP/runs.tsv" <<'EOF'
import json, sys
r = json.loads(sys.argv[4])
cpu = r["server_cpu"] or {}
print("\t".join([sys.argv[1], sys.argv[2], sys.argv[3], r["workload"],
                 f'{r["requests_per_second"]:.1f}', f'{r["megabytes_per_second"] or 0:.1f}',
                 f'{cpu.get("us_per_request", float("nan")):.1f}', f'{r["latency_ms"]["p99"]:.2f}']))
EOF
                tail -1 "$TMP/runs.tsv"
            done
            stop "$PID"
            [[ -n $up_pid ]] && stop "$up_pid"
        done
    done
done

python3 - "$TMP/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
keys = sorted({(r["mode"], r["workload"]) for r in rows})
print("\nmode\tworkload\tA req/s\tB req/s\tB/A\tA server us/req\tB server us/req\tB/A")
for mode, w in keys:
    def med(which, field):
        return statistics.median(float(r[field]) for r in rows if (r["mode"], r["workload"], r["binary"]) == (mode, w, which))
    a, b = med("A", "requests_per_second"), med("B", "requests_per_second")
    ca, cb = med("A", "server_us_per_request"), med("B", "server_us_per_request")
    print(f"{mode}\t{w}\t{a:.0f}\t{b:.0f}\t{b / a:.2f}\t{ca:.0f}\t{cb:.0f}\t{cb / ca:.2f}")
EOF
