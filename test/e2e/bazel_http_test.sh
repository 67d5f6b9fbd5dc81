#!/usr/bin/env bash
# End-to-end test of the HTTP cache protocol: a real Bazel client (Debian's bazel-bootstrap
# 4.2) with --remote_cache=http://127.0.0.1:PORT against gorego's HTTP listener.
#
# usage: bazel_http_test.sh /path/to/gorego
#
# Builds test/bazel/workspace twice, each from a fresh output base:
#   1. cold: every genrule runs locally and its result is uploaded over HTTP
#      (PUT /cas/HASH, PUT /ac/HASH);
#   2. every genrule must be a remote cache hit (GET /ac/HASH, GET /cas/HASH), outputs
#      byte-identical to 1.
# Then the blobs Bazel uploaded over HTTP must be served over gRPC by the same process:
# both protocols share one store. Any "Remote Cache" warning fails the test (Bazel would
# otherwise quietly build locally), as does gorego dying.
set -euo pipefail

E2E_NAME="bazel http e2e"
# shellcheck source-path=SCRIPTDIR source=bazel_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bazel_lib.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/gorego" >&2
    exit 2
fi
resolve_gorego "$1"
e2e_setup gorego-bazel-http-e2e

mapfile -t ports < <(free_ports 2)
PORT=${ports[0]}
HTTP_PORT=${ports[1]}
start_gorego gorego "$PORT" "$TMP/data" --http-addr "127.0.0.1:$HTTP_PORT"
CACHE_FLAGS=("--remote_cache=http://127.0.0.1:$HTTP_PORT" "--disk_cache=")

run_build build1 "$TMP/ob1"
expect_cold_build build1
shutdown_build_server "$TMP/ob1"

run_build build2 "$TMP/ob2"
expect_all_hits build2
expect_same_outputs build2 build1
shutdown_build_server "$TMP/ob2"

# Cross-protocol: every output Bazel uploaded over HTTP is a gRPC hit, byte for byte.
/usr/bin/python3 - "$PORT" "$WS/bazel-bin" <<'PY' || fail "blobs uploaded over HTTP are not served over gRPC"
import hashlib, os, sys
import grpc
from buildstream._protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re, remote_execution_pb2_grpc as re_grpc)
port, outdir = sys.argv[1], sys.argv[2]
files = {}
for name in sorted(os.listdir(outdir)):
    path = os.path.join(os.path.realpath(outdir), name)
    if os.path.isfile(path):
        with open(path, 'rb') as f:
            files[name] = f.read()
assert files, 'no outputs in ' + outdir
cas = re_grpc.ContentAddressableStorageStub(grpc.insecure_channel('127.0.0.1:' + port))
digests = [re.Digest(hash=hashlib.sha256(b).hexdigest(), size_bytes=len(b)) for b in files.values()]
missing = cas.FindMissingBlobs(re.FindMissingBlobsRequest(blob_digests=digests)).missing_blob_digests
assert not missing, 'missing over gRPC: %s' % [d.hash for d in missing]
small = [d for d in digests if d.size_bytes < (1 << 20)]
resp = cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=small))
for r in resp.responses:
    assert r.status.code == 0, r.status.message
    assert hashlib.sha256(r.data).hexdigest() == r.digest.hash
print('cross-protocol: %d outputs uploaded over HTTP found over gRPC, %d read back' % (len(digests), len(small)),
      file=sys.stderr)
PY
check_servers_alive ""
echo "bazel http e2e: 2 builds, $EXPECTED_ACTIONS actions, all remote cache hits over HTTP"
