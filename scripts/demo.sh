#!/bin/bash
# The main job on a single node: start aspfsd on a local store, create a
# volume, mount it, write to it, and show `aspfs status`. The daemon keeps
# running afterwards; `scripts/demo.sh stop` unmounts and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ASPFS_DEMO_DIR:-/var/lib/aspfs-demo}
export ASPFS_SOCKET=$root/aspfsd.sock
aspfs=$PWD/build/aspfs

if [[ ${1:-} == stop ]]; then
  if [[ -f $root/aspfsd.pid ]]; then
    kill -TERM "$(cat "$root/aspfsd.pid")" 2>/dev/null || true
    while kill -0 "$(cat "$root/aspfsd.pid")" 2>/dev/null; do sleep 0.1; done
    rm -f "$root/aspfsd.pid"
    echo "aspfsd stopped"
  fi
  exit 0
fi

scripts/install-deps.sh
scripts/build.sh
# A node setting (README): FUSE over io_uring where the kernel has it.
uring=/sys/module/fuse/parameters/enable_uring
[[ ! -w $uring ]] || echo Y >"$uring"
mkdir -p "$root/mnt"
if ! "$aspfs" status >/dev/null 2>&1; then
  nohup build/aspfsd --store "$root/store" --socket "$ASPFS_SOCKET" >"$root/aspfsd.log" 2>&1 &
  echo $! >"$root/aspfsd.pid"
  for _ in $(seq 100); do "$aspfs" status >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$aspfs" volume info ve101 >/dev/null 2>&1 || "$aspfs" volume create ve101 --quota-bytes 1G --quota-inodes 100000
mountpoint -q "$root/mnt" || "$aspfs" mount ve101 "$root/mnt"
mkdir -p "$root/mnt/etc"
echo "hello from ASPFS, $(date -u)" >"$root/mnt/etc/motd"
cp -a /etc/os-release "$root/mnt/etc/"
sync "$root/mnt/etc/motd"
cat "$root/mnt/etc/motd"
ls -l "$root/mnt/etc"
df -h "$root/mnt"
"$aspfs" status
"$aspfs" volume info ve101
"$aspfs" journal dump ve101 --limit 4
echo
echo "volume ve101 is mounted at $root/mnt (daemon log: $root/aspfsd.log); stop with: scripts/demo.sh stop"
