#!/usr/bin/env bash
# The whole test suite from a clean checkout: installs dependencies (Debian packages),
# configures and builds everything with Ninja (and ccache when present), checks that every
# public header compiles on its own, and runs ctest. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
build_dir=build
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build_dir"
cmake --build "$build_dir" --target all_verify_interface_header_sets
ctest --test-dir "$build_dir" --output-on-failure --timeout 1500
