#!/usr/bin/env bash
# End-to-end test of proxy mode: a real Bazel client (Debian's bazel-bootstrap
# 4.2) against a gorego that has another gorego as its upstream.
#
# usage: bazel_proxy_test.sh /path/to/gorego
#
# Starts an upstream gorego and a proxy gorego in front of it
# (--upstream grpc://..., write-through), then builds test/bazel/workspace
# four times, each from a fresh output base:
#   1. via the proxy, cold: every genrule runs locally and its result is
#      uploaded; the proxy acknowledges only after the upstream accepted it;
#   2. directly against the upstream: every genrule a remote cache hit, so the
#      upstream really has the results; outputs byte-identical to 1;
#   3. after the proxy was stopped, its data dir deleted and it was restarted
#      (empty local tier), via the proxy: every genrule a remote cache hit,
#      served by read-through from the upstream; outputs byte-identical to 1;
#   4. via the proxy with --remote_download_minimal: every genrule a hit.
# Any "Remote Cache" warning from Bazel fails the test, as does either gorego
# dying; on failure the logs of both are printed.
#
# Environment knobs: as for bazel_cache_test.sh (see bazel_lib.sh).
set -euo pipefail

E2E_NAME="bazel proxy e2e"
# shellcheck source-path=SCRIPTDIR source=bazel_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bazel_lib.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/gorego" >&2
    exit 2
fi
resolve_gorego "$1"

e2e_setup gorego-bazel-proxy-e2e

# --- upstream and proxy ------------------------------------------------------
{ read -r UP; read -r PX; } < <(free_ports 2)
PROXY_FLAGS=(--upstream "grpc://127.0.0.1:$UP")
start_gorego upstream "$UP" "$TMP/up"
start_gorego proxy "$PX" "$TMP/px" "${PROXY_FLAGS[@]}"
VIA_PROXY=("--remote_cache=grpc://127.0.0.1:$PX" "--disk_cache=")
VIA_UPSTREAM=("--remote_cache=grpc://127.0.0.1:$UP" "--disk_cache=")

# --- build 1: via the proxy, cold, uploads through to the upstream ----------
CACHE_FLAGS=("${VIA_PROXY[@]}")
run_build build1 "$TMP/ob1"
expect_cold_build build1
shutdown_build_server "$TMP/ob1"

# --- build 2: directly against the upstream, everything from it -------------
CACHE_FLAGS=("${VIA_UPSTREAM[@]}")
run_build build2 "$TMP/ob2"
expect_all_hits build2
expect_same_outputs build2 build1
shutdown_build_server "$TMP/ob2"

# --- restart the proxy with an empty local tier ------------------------------
stop_gorego proxy || fail "proxy did not stop on SIGTERM"
[[ $STOP_STATUS -eq 0 ]] || fail "proxy exited with status $STOP_STATUS on SIGTERM"
chmod -R u+w "$TMP/px"
rm -rf "$TMP/px"
echo "----- bazel proxy e2e: proxy restarted with an empty data dir -----" >>"$TMP/proxy.log"
start_gorego proxy "$PX" "$TMP/px" "${PROXY_FLAGS[@]}"

# --- build 3: via the fresh proxy, everything read through from upstream ----
CACHE_FLAGS=("${VIA_PROXY[@]}")
run_build build3 "$TMP/ob3"
expect_all_hits build3
expect_same_outputs build3 build1
shutdown_build_server "$TMP/ob3"

# --- build 4: via the proxy, --remote_download_minimal -----------------------
# (Bazel 4 rejects --remote_download_outputs=minimal; the alias works.)
run_build build4 "$TMP/ob4" --remote_download_minimal
expect_all_hits build4
shutdown_build_server "$TMP/ob4"

# The upstream goes away: the proxy keeps serving what it holds, and the build stays
# quiet (any cache warning fails it).
stop_gorego upstream || fail "upstream did not stop on SIGTERM"
run_build build5 "$TMP/ob5"
expect_all_hits build5
expect_same_outputs build5 build1
shutdown_build_server "$TMP/ob5"

check_servers_alive ""

echo "bazel proxy e2e: 5 builds, $EXPECTED_ACTIONS actions, all remote cache hits (the last with the upstream down)"
