#!/bin/bash
# The test command: installs what it needs, builds, runs every test
# (unit, integration, crash, workload) with CTest. Run as root (FUSE mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
run() { ctest --output-on-failure -j2 --timeout 900 "$@"; }
# FUSE over io_uring (Linux 6.14+) is off in the fuse module unless its
# enable_uring parameter is on. Where the kernel has it, the parameter is
# turned on for the run (and put back after): every test runs with mounts
# served through io_uring, then the FUSE tests run again with aspfsd's
# --fuse-io-uring off, through /dev/fuse.
param=/sys/module/fuse/parameters/enable_uring
if [[ -w $param ]]; then
  was=$(cat "$param")
  trap 'echo "$was" >"$param"' EXIT
  echo Y >"$param"
  echo "== all tests, FUSE over io_uring" >&2
  run
  echo "== FUSE tests again, through /dev/fuse" >&2
  ASPFS_TEST_FUSE_IO_URING=off run -R '^(cli|posix|crash|bad_input|differential)_test$'
else
  echo "== all tests, through /dev/fuse (this kernel has no FUSE over io_uring)" >&2
  run
fi
