#!/usr/bin/env bash
# Same-run comparison of one gorego binary in three listener set-ups: plaintext, TLS, and
# TLS with bearer-token authentication (every call checked for its right). Each workload
# runs against each set-up in turn, for several rounds; prints one tab-separated line per run
# and the medians, with each set-up's ratio to plaintext. No figure is asserted.
#
# usage: [SECURITY_AB_ONLY=WORKLOAD] benchmark/security_ab.sh GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 GOREGO GOREGO_LOAD [ROUNDS] [SECONDS]" >&2; exit 2; }
BIN=$1
LOAD=$2
ROUNDS=${3:-2}
SECONDS_PER_RUN=${4:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/bench_lib.sh"
bench_setup gorego-security-ab

bash "$HERE/../test/e2e/make_test_certs.sh" "$TMP/certs"
TOKEN=bench-token-5e1c7a92d04b
printf 'bench %s\n' "$TOKEN" >"$TMP/tokens"
TLS=(--tls-cert "$TMP/certs/server.pem" --tls-key "$TMP/certs/server.key")
printf 'auth:\n  tokens_file: %s\n  rights:\n    bench: read+write\n' "$TMP/tokens" >"$TMP/auth.yaml"

POP=(--blobs 20000 --size 1KiB --seed 3)
WORKLOADS=(
    "find-missing --per-request 100 ${POP[*]}"
    "bytestream-read --size 4MiB --distinct 8"
    "bytestream-write --size 4MiB"
)
# SECURITY_AB_ONLY=find-missing runs just the workloads whose line starts so.
if [[ -n ${SECURITY_AB_ONLY:-} ]]; then
    kept=()
    for w in "${WORKLOADS[@]}"; do [[ $w == "$SECURITY_AB_ONLY"* ]] && kept+=("$w"); done
    WORKLOADS=("${kept[@]}")
fi

printf 'round\tsetup\tworkload\trequests_per_second\tmegabytes_per_second\tserver_us_per_request\n' >"$TMP/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for setup in plaintext tls tls+auth; do
        PORT=$(free_port)
        args=(--listen "127.0.0.1:$PORT" --data-dir "$TMP/data-$round-$setup" --metrics-addr "" --fsync false)
        client=(--target "127.0.0.1:$PORT")
        if [[ $setup != plaintext ]]; then
            args+=("${TLS[@]}")
            client=(--target "grpcs://127.0.0.1:$PORT" --tls-ca "$TMP/certs/ca.pem")
        fi
        if [[ $setup == tls+auth ]]; then
            args+=(--config "$TMP/auth.yaml")
            client+=(--token "$TOKEN")
        fi
        "$BIN" "${args[@]}" >"$TMP/$round-$setup.log" 2>&1 &
        PID=$!
        PIDS+=("$PID")
        wait_listening "$PORT"
        "$LOAD" "${client[@]}" --workload populate "${POP[@]}" --concurrency 8 >/dev/null
        for w in "${WORKLOADS[@]}"; do
            # shellcheck disable=SC2086
            json=$("$LOAD" "${client[@]}" --server-pid "$PID" --duration "$SECONDS_PER_RUN" --concurrency 8 \
                --json --workload $w)
            bench_row "$round" "$setup" "$json"
            tail -1 "$TMP/runs.tsv"
        done
        kill -TERM "$PID"
        wait "$PID" 2>/dev/null || true
    done
done

python3 - "$TMP/runs.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nworkload\tsetup\treq/s\tMB/s\tserver us/req\treq/s vs plaintext\tMB/s vs plaintext")
for w in sorted({r["workload"] for r in rows}):
    def med(setup, field):
        return statistics.median(float(r[field]) for r in rows if (r["workload"], r["setup"]) == (w, setup))
    base_rps, base_mbs = med("plaintext", "requests_per_second"), med("plaintext", "megabytes_per_second")
    for setup in ("plaintext", "tls", "tls+auth"):
        rps, mbs, cpu = med(setup, "requests_per_second"), med(setup, "megabytes_per_second"), med(setup, "server_us_per_request")
        mb_ratio = f"{mbs / base_mbs:.2f}" if base_mbs else "-"
        print(f"{w}\t{setup}\t{rps:.0f}\t{mbs:.1f}\t{cpu:.0f}\t{rps / base_rps:.2f}\t{mb_ratio}")
PY
