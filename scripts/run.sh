#!/usr/bin/env bash
# Installs the dependencies, builds the gorego server and starts it with its embedded
# defaults (gRPC on 127.0.0.1:50051, data under ./gorego-data, 10 GiB limit). Any
# arguments are passed to gorego (see `scripts/run.sh --help`). Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

bash "$root/scripts/setup.sh" >&2
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
cmake --build "$root/build" --target gorego >&2
exec "$root/build/gorego" "$@"
