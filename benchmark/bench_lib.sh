# shellcheck shell=bash
# Shared code of the benchmark scripts (ab.sh, security_ab.sh, journal_ab.sh, idle_exit.sh); source it, do not run it.
# bench_setup NAME makes $TMP and the EXIT trap that kills every PID in PIDS and removes $TMP.

bench_setup() { # $1 = prefix of the temporary directory
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_listening() { # port
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

bench_row() { # round, set-up, gorego-load --json output: appends one line to $TMP/runs.tsv
    python3 - "$@" >>"$TMP/runs.tsv" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
cpu = r["server_cpu"] or {}
print("\t".join([sys.argv[1], sys.argv[2], r["workload"], f'{r["requests_per_second"]:.1f}',
                 f'{r["megabytes_per_second"] or 0:.1f}', f'{cpu.get("us_per_request", float("nan")):.1f}']))
PY
}
