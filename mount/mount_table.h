// MountTable: the node's live FUSE mounts, at most one per volume. Mounting
// purges the volume's orphans first (inodes unlinked while open when the
// daemon last stopped).
//
// Thread-safety: all methods lock mu_; Unmount and UnmountAll release it
// while the kernel flushes (that flush is served by the mount's own FUSE
// threads, which never take mu_).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aspfs/fuse_server.h"
#include "mount/flusher.h"
#include "journal/store.h"

namespace aspfs {

struct MountInfo {
  std::string volume;
  std::string dir;
  bool read_only = false;
  bool io_uring = false;  // requests come through FUSE over io_uring
};

class MountTable {
 public:
  // fuse_io_uring: serve mounts through io_uring where the kernel offers it.
  explicit MountTable(Store* store, bool fuse_io_uring = true);
  ~MountTable() { UnmountAll(); }

  Status Mount(const std::string& volume, const std::string& dir, bool read_only);
  Status Unmount(const std::string& dir);
  // SIGTERM: unmount everything; mounts in use are detached.
  void UnmountAll();
  std::vector<MountInfo> List();
  std::optional<MountInfo> FindVolume(const std::string& volume);
  // The group-commit timer: commits every mount's buffered writes and
  // purges, a write(2) the kernel split waiting whole (VolumeFs::FlushSettled).
  void FlushOnTimer();
  // The same for one volume, if mounted (before reporting its usage).
  void FlushVolume(const std::string& volume);

 private:
  using MountMap = std::map<std::string, std::unique_ptr<FuseServer>>;
  void ReapEndedLocked();  // REQUIRES(mu_)
  // Drops the mount's record and its volume's; returns the next. REQUIRES(mu_)
  MountMap::iterator EraseLocked(MountMap::iterator it);
  Store* store_;
  bool fuse_io_uring_;
  std::mutex mu_;
  MountMap mounts_;  // by dir; GUARDED_BY(mu_)
  std::map<std::string, std::string> volume_dirs_;              // volume -> dir; GUARDED_BY(mu_)
  std::unique_ptr<GroupCommitFlusher> flusher_;  // last: stops before the mounts go
};

}  // namespace aspfs
