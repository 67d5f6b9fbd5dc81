#!/usr/bin/env bash
# Installs the gorego build in $1 into a temporary prefix and builds and runs the consumer
# project in $2 against it with find_package(gorego).
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src_dir" -B "$work/build" "${generator[@]}" "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_STANDARD=20 > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
out=$("$work/build/consumer")
echo "consumer: $out"
[[ "$out" == "proxy<local<memory,lru>,none> 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824/5" ]]
