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
#
# The shared code (server handling, build runner, checks) is in bazel_lib.sh,
# also used by bazel_proxy_test.sh.
set -euo pipefail

E2E_NAME="bazel e2e"
# shellcheck source-path=SCRIPTDIR source=bazel_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bazel_lib.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/gorego | --disk-cache-selftest" >&2
    exit 2
fi

SELFTEST=0
if [[ $1 == --disk-cache-selftest ]]; then
    SELFTEST=1
else
    resolve_gorego "$1"
fi

e2e_setup gorego-bazel-e2e

# --- gorego ----------------------------------------------------------------
if [[ $SELFTEST -eq 1 ]]; then
    CACHE_FLAGS=("--disk_cache=$TMP/disk-cache")
    log "disk-cache selftest (no gorego)"
else
    PORT=$(free_ports 1)
    start_gorego gorego "$PORT" "$TMP/data"
    CACHE_FLAGS=("--remote_cache=grpc://127.0.0.1:$PORT" "--disk_cache=")
fi

# --- build 1: cold, uploads -----------------------------------------------
run_build build1 "$TMP/ob1"
expect_cold_build build1
shutdown_build_server "$TMP/ob1"

# --- build 2: fresh output base, everything from the cache ----------------
run_build build2 "$TMP/ob2"
expect_all_hits build2
expect_same_outputs build2 build1
shutdown_build_server "$TMP/ob2"

# --- build 3: fresh output base, --remote_download_minimal ----------------
# (Bazel 4 rejects --remote_download_outputs=minimal; the alias works.)
run_build build3 "$TMP/ob3" --remote_download_minimal
expect_all_hits build3
shutdown_build_server "$TMP/ob3"

check_servers_alive ""

if [[ $SELFTEST -eq 1 ]]; then
    echo "bazel e2e (disk-cache selftest): 3 builds, $EXPECTED_ACTIONS actions, all remote cache hits"
else
    echo "bazel e2e: 3 builds, $EXPECTED_ACTIONS actions, all remote cache hits"
fi
