#!/bin/bash
# Installs the Debian 12 packages ASPFS builds and tests with. Idempotent.
set -euo pipefail
packages=(
  g++ cmake make pkg-config git tar xz-utils procps stress-ng
  libfuse3-dev fuse3
  librocksdb-dev
  capnproto libcapnp-dev
  libasio-dev libxxhash-dev libzstd-dev libjemalloc-dev liburing-dev
  googletest libgtest-dev
  libcli11-dev nlohmann-json3-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
