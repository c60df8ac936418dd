// The FUSE low-level adapter: one session per mounted volume, served by
// libfuse's multithreaded loop on its own thread. Parses requests, calls
// VolumeFs, sends exactly one reply per request.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "aspfs/volume_fs.h"

struct fuse_session;

namespace aspfs {

struct FuseOptions {
  bool read_only = false;
  double entry_timeout = 10.0;
  double attr_timeout = 10.0;
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
  // Makes the kernel send what its page cache holds of the mount's files
  // (syncfs): a mount still in use is detached with its files open.
  void WriteBackPageCache();
  const std::string& dir() const { return dir_; }
  VolumeFs* fs() const { return fs_.get(); }
  const FuseOptions& options() const { return options_; }
  // Makes the kernel drop its cached attributes of ino (a change it did not
  // ask for, so no reply carries it).
  void InvalidateAttributes(uint64_t ino);
  // The kernel left setuid/setgid clearing to us (FUSE_HANDLE_KILLPRIV_V2).
  bool kills_privileges() const { return killpriv_v2_.load(); }
  // libfuse's custom I/O hooks (see fuse_server.cc).
  std::atomic<uint64_t> init_unique_{0};  // the INIT request, while its reply is due
  std::atomic<bool> killpriv_v2_{false};
  // A detached mount's loop may outlive the daemon's store: it stops
  // serving (requests then fail with ENOTCONN when the daemon exits).
  std::atomic<bool> detached_{false};

 private:
  FuseServer() = default;
  void Join();

  std::unique_ptr<VolumeFs> fs_;
  std::string dir_;
  FuseOptions options_;
  struct fuse_session* session_ = nullptr;
  std::thread loop_;
  bool stopped_ = false;
};

}  // namespace aspfs
