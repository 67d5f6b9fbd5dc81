#!/usr/bin/env bash
# How long an idle gorego takes from SIGTERM to exit, N runs each with the admin server and
# the HTTP listener off, with the admin server on (the default) and with both on. Prints
# the median and the maximum in milliseconds per set-up.
#   benchmark/idle_exit.sh build/gorego [runs=20]
set -euo pipefail
binary=$1
runs=${2:-20}
source "$(dirname "$0")/bench_lib.sh"
bench_setup gorego-idle-exit

measure() { # label, extra flags...
    local label=$1
    shift
    local times=()
    for ((r = 0; r < runs; r++)); do
        local port
        port=$(free_port)
        rm -rf "$TMP/data"
        local extra=()
        for a in "$@"; do extra+=("${a//PORT/$(free_port)}"); done
        "$binary" --listen "127.0.0.1:$port" --data-dir "$TMP/data" "${extra[@]}" >"$TMP/log" 2>&1 &
        local pid=$!
        PIDS+=("$pid")
        wait_listening "$port"
        sleep 0.3 # the index load and the first snapshot are done: idle
        local t0 t1
        t0=$(date +%s%N)
        kill -TERM "$pid"
        wait "$pid"
        t1=$(date +%s%N)
        times+=($(((t1 - t0) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
        { v[NR] = $1 } END { printf "%-22s median %6.1f ms   max %6.1f ms   (%d runs)\n", label, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000, NR }'
}

measure "no admin, no http" --metrics-addr ""
measure "admin (default)" --metrics-addr 127.0.0.1:PORT
measure "admin and http" --metrics-addr 127.0.0.1:PORT --http-addr 127.0.0.1:PORT
