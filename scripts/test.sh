#!/bin/bash
# The test command: installs what it needs, builds, runs every test
# (unit, integration, crash, workload) with CTest. Run as root (FUSE mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j2 --timeout 900
