#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of gorego from Debian packages.
# Idempotent: a second run installs nothing new and finishes in seconds.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # libraries
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  librange-v3-dev prometheus-cpp-dev libfmt-dev libssl-dev libzstd-dev
  libyaml-cpp-dev libcli11-dev libcivetweb-dev libgoogle-perftools-dev
  # Boost.Beast (HTTP cache listener); the official BLAKE3 C sources ship in librust-blake3-dev
  libboost-dev librust-blake3-dev
  # tests and benchmarks
  catch2 libbenchmark-dev curl python3 procps openssl b3sum
  # real peers used by the test suite
  bazel-bootstrap openjdk-17-jdk-headless buildstream python3-grpcio prometheus
  # Bazel's grpcs:// needs netty's OpenSSL bindings: Debian's JDK TLS path has no ALPN
  libnetty-tcnative-jni
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
