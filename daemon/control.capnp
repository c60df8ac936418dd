# The local control socket between the `aspfs` CLI and `aspfsd`
# (docs/control-protocol.md). Every result carries `error`: empty on success,
# else one line saying what went wrong.
@0xaaf59ebfeb773ef3;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("aspfs::rpc");

struct VolumeInfo {
  name @0 :Text;
  id @1 :UInt64;
  epoch @2 :UInt64;
  txid @3 :UInt64;
  checksum @4 :UInt64;
  usedBytes @5 :UInt64;
  usedInodes @6 :UInt64;
  quotaBytes @7 :UInt64;
  quotaInodes @8 :UInt64;
  createdNs @9 :Int64;
  mountpoint @10 :Text;   # empty when not mounted
  readOnly @11 :Bool;
  fuseTransport @12 :Text;  # how the kernel's requests reach the mount: "io_uring" or "/dev/fuse"
}

# What `volume verify` found in a consistent volume (journal/check.h).
struct StateCounts {
  inodes @0 :UInt64;
  entries @1 :UInt64;
  extents @2 :UInt64;
  xattrs @3 :UInt64;
  orphans @4 :UInt64;
  chunks @5 :UInt64;    # distinct chunks referenced, each read and checked against its hash
  txid @6 :UInt64;      # the journal position checked (the volume may have moved on since)
}

struct JournalEntry {
  txid @0 :UInt64;
  epoch @1 :UInt64;
  timeNs @2 :Int64;
  checksum @3 :UInt64;
  ops @4 :List(Text);
}

struct NodeStatus {
  node @0 :Text;
  store @1 :Text;
  pid @2 :UInt32;
  uptimeSeconds @3 :UInt64;
  rssBytes @4 :UInt64;
  version @5 :Text;
  volumes @6 :List(VolumeInfo);
  # The store's file system; file data is refused below the reserve (diskFull).
  diskTotalBytes @7 :UInt64;
  diskFreeBytes @8 :UInt64;
  diskReserveBytes @9 :UInt64;
  diskFull @10 :Bool;
}

interface Control {
  createVolume @0 (name :Text, quotaBytes :UInt64, quotaInodes :UInt64) -> (error :Text, info :VolumeInfo);
  listVolumes @1 () -> (error :Text, volumes :List(VolumeInfo));
  volumeInfo @2 (name :Text) -> (error :Text, info :VolumeInfo);
  deleteVolume @3 (name :Text) -> (error :Text);
  mount @4 (name :Text, dir :Text, readOnly :Bool) -> (error :Text, info :VolumeInfo);
  umount @5 (dir :Text) -> (error :Text);
  journalDump @6 (name :Text, from :UInt64, limit :UInt64) -> (error :Text, entries :List(JournalEntry));
  status @7 () -> (error :Text, status :NodeStatus);
  verifyVolume @8 (name :Text) -> (error :Text, info :VolumeInfo, check :StateCounts);
}
