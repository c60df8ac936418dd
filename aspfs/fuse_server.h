// The FUSE low-level adapter: one session per mounted volume, served by
// libfuse's multithreaded loop on its own thread. Parses requests, calls
// VolumeFs, sends exactly one reply per request.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "aspfs/fuse_ring.h"
#include "aspfs/volume_fs.h"

struct fuse_session;

namespace aspfs {

struct FuseOptions {
  bool read_only = false;
  double entry_timeout = 10.0;
  double attr_timeout = 10.0;
  // Serve through io_uring where the kernel offers it (aspfs/fuse_ring.h).
  bool io_uring = true;
};

class FuseServer {
 public:
  ~FuseServer();
  // Mounts fs at dir and starts serving; returns once the mount is live.
  static Result<std::unique_ptr<FuseServer>> Start(std::unique_ptr<VolumeFs> fs, const std::string& dir,
                                                   const FuseOptions& options);
  // Unmounts (fails with kBusy while the mount is in use) and waits for the
  // loop to finish.
  Status Stop(bool lazy);
  // Stops for good without unmounting: the kernel's mount stays, and once
  // the daemon exits its users get ENOTCONN, as after kill -9, until
  // `aspfs mount` or umount(8) clears it. For a mount still in use at
  // SIGTERM: detached, its users' paths would reach the directory under it.
  void Abandon();
  // Whether the session loop has ended, waiting up to timeout for it: it
  // ends when the kernel's mount goes (Stop, or umount(8) outside the
  // daemon; a lazy one once its last user is gone).
  bool WaitEnded(std::chrono::milliseconds timeout);
  // Makes the kernel send what its page cache holds of the mount's files
  // and returns once they are answered: a mount still in use is detached
  // with its files open.
  void WriteBackPageCache();
  // From now on every request fails with EIO; returns once the requests
  // read before are answered, so that what they wrote can be committed
  // (false if some were not within timeout).
  bool StopServing(std::chrono::milliseconds timeout);
  const std::string& dir() const { return dir_; }
  dev_t device() const { return device_; }  // st_dev of the mount's root
  VolumeFs* fs() const { return fs_.get(); }
  const FuseOptions& options() const { return options_; }
  // Makes the kernel drop its cached attributes of ino (a change it did not
  // ask for, so no reply carries it).
  void InvalidateAttributes(uint64_t ino);
  // Open file handles that may write, per inode: while there are any, the
  // kernel's page cache may hold dirty pages of the file we have not seen.
  void CountWriter(uint64_t ino, int delta);
  // Whether a descriptor that may write has ino open (its pages may be
  // dirty in the kernel's page cache).
  bool HasWriters(uint64_t ino);
  // Makes the kernel write back ino's dirty pages, if a writer has it open.
  void WriteBackDirtyPages(uint64_t ino);
  // The kernel left setuid/setgid clearing to us (FUSE_HANDLE_KILLPRIV_V2).
  bool kills_privileges() const { return killpriv_v2_.load(); }
  // Kernels from FUSE 7.44 (6.16) judge a dentry made for a file handle
  // stale by itself the first time it is revalidated: overlayfs, which
  // revalidates the lower file it finds through a copied-up file's origin
  // handle, then fails with ESTALE (docs/decisions.md). Handles of
  // non-directories are refused there, so that overlayfs takes the origin
  // as unknown.
  bool decodes_file_handles_of_files() const { return kernel_minor_.load() < 44; }
  // Whether requests come through io_uring (the kernel offered it, and
  // every CPU's queue has served).
  bool serves_through_io_uring() const;
  std::atomic<uint32_t> kernel_minor_{0};  // from the kernel's INIT
  // libfuse's custom I/O hooks (see fuse_server.cc).
  std::atomic<uint64_t> init_unique_{0};  // the INIT request, while its reply is due
  std::atomic<bool> init_offers_killpriv_v2_{false};
  std::atomic<bool> init_offers_io_uring_{false};
  std::atomic<bool> killpriv_v2_{false};
  // Called once the kernel has taken an INIT reply asking for io_uring.
  void StartRing(int fuse_fd);
  // A detached mount's loop may outlive the daemon's store: it stops
  // serving (requests fail with EIO, and with ENOTCONN once the daemon
  // exits).
  std::atomic<bool> detached_{false};
  // Held shared by each request being served (see ReadRequest).
  std::shared_ptr<std::shared_timed_mutex> serving_mu_ = std::make_shared<std::shared_timed_mutex>();

 private:
  FuseServer() = default;
  void Join();

  std::unique_ptr<VolumeFs> fs_;
  std::string dir_;
  FuseOptions options_;
  struct fuse_session* session_ = nullptr;
  std::thread loop_;
  bool stopped_ = false;
  dev_t device_ = 0;
  std::mutex ended_mu_;
  std::condition_variable ended_cv_;
  bool ended_ = false;  // GUARDED_BY(ended_mu_)
  mutable std::mutex ring_mu_;
  std::unique_ptr<FuseRing> ring_;  // GUARDED_BY(ring_mu_)
  std::mutex writers_mu_;
  std::unordered_map<uint64_t, int> writers_;  // GUARDED_BY(writers_mu_)
};

}  // namespace aspfs
