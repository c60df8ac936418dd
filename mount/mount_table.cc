#include "mount/mount_table.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace aspfs {

MountTable::MountTable(Store* store, bool fuse_io_uring) : store_(store), fuse_io_uring_(fuse_io_uring) {
  flusher_ = std::make_unique<GroupCommitFlusher>(std::chrono::milliseconds(500), [this] { FlushOnTimer(); });
}

void MountTable::ReapEndedLocked() {
  // Unmounted outside the daemon (umount(8)): the kernel wrote its page
  // cache back first; the buffers are committed and the records go, so
  // that the volume can be mounted again.
  for (auto it = mounts_.begin(); it != mounts_.end();) {
    if (!it->second->WaitEnded(std::chrono::milliseconds(0))) {
      ++it;
      continue;
    }
    it->second->fs()->FlushAll().IgnoreError();
    it->second->Stop(false).IgnoreError();
    it = EraseLocked(it);
  }
}

MountTable::MountMap::iterator MountTable::EraseLocked(MountMap::iterator it) {
  for (auto v = volume_dirs_.begin(); v != volume_dirs_.end(); ++v) {
    if (v->second == it->first) {
      volume_dirs_.erase(v);
      break;
    }
  }
  return mounts_.erase(it);
}

void MountTable::FlushOnTimer() {
  std::lock_guard<std::mutex> lock(mu_);
  ReapEndedLocked();
  for (auto& [path, server] : mounts_) {
    // A failure is reported to the writer at its next fsync or close.
    server->fs()->FlushSettled().IgnoreError();
  }
}

void MountTable::FlushVolume(const std::string& volume) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = volume_dirs_.find(volume);
  if (it != volume_dirs_.end()) mounts_[it->second]->fs()->FlushAll().IgnoreError();
}

namespace {

// Whether dir is a FUSE mount whose daemon is gone. statfs always asks the
// daemon; a stat may be answered from cached attributes. For some
// milliseconds after the daemon's death, while the kernel tears down its
// io_uring queues, requests fail with ECANCELED or ECONNABORTED rather
// than ENOTCONN.
bool IsDeadMount(const std::string& dir) {
  struct statfs st;
  for (int dying = 0; dying < 1000; ++dying) {
    if (statfs(dir.c_str(), &st) == 0) return false;
    if (errno == ENOTCONN) return true;
    if (errno != ECANCELED && errno != ECONNABORTED) return false;
    usleep(1000);
  }
  return true;
}

}  // namespace

Status MountTable::Mount(const std::string& volume, const std::string& dir, bool read_only) {
  char resolved[PATH_MAX];
  // A dead FUSE mount left by a daemon that was killed: clear it away (each
  // of them, should kills and remounts have stacked several), or the new
  // mount would go on top and the dead one stay behind it.
  for (int dead = 0; dead < 16 && IsDeadMount(dir); ++dead) {
    if (umount2(dir.c_str(), MNT_DETACH) != 0) break;
  }
  if (!realpath(dir.c_str(), resolved)) return Error(Code::kNotFound, "mount point " + dir + ": " + strerror(errno));
  std::string path = resolved;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return Error(Code::kIo, "mount point " + dir + ": " + strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Error(Code::kNotDir, "mount point " + dir + " is not a directory");
  auto vol = store_->FindVolume(volume);
  if (!vol.ok()) return vol.status();
  std::lock_guard<std::mutex> lock(mu_);
  ReapEndedLocked();
  if (auto it = volume_dirs_.find(volume); it != volume_dirs_.end()) {
    // Unmounted outside the daemon a moment ago, its loop about to see it;
    // or lazily, with files still open: one writer per volume, so not yet.
    FuseServer* old = mounts_[it->second].get();
    struct stat now;
    const bool gone = stat(it->second.c_str(), &now) != 0 || now.st_dev != old->device();
    if (!gone) return Error(Code::kBusy, "volume " + volume + " is already mounted at " + it->second);
    if (!old->WaitEnded(std::chrono::seconds(1))) {
      return Error(Code::kBusy, "volume " + volume + " was unmounted from " + it->second +
                                    " but its files are still in use there; mount it once they are closed");
    }
    ReapEndedLocked();
  }
  if (mounts_.count(path)) return Error(Code::kBusy, path + " already holds a mount");
  auto fs = std::make_unique<VolumeFs>(store_, *vol);
  if (!read_only) ASPFS_RETURN_IF_ERROR(fs->PurgeOrphans().Context("mount " + volume));
  FuseOptions options;
  options.read_only = read_only;
  options.io_uring = fuse_io_uring_;
  auto server = FuseServer::Start(std::move(fs), path, options);
  if (!server.ok()) return server.status();
  mounts_[path] = std::move(*server);
  volume_dirs_[volume] = path;
  return Status::Ok();
}

Status MountTable::Unmount(const std::string& dir) {
  char resolved[PATH_MAX];
  // realpath of a mount point stats it: fine, our own threads answer.
  std::string path = realpath(dir.c_str(), resolved) ? resolved : dir;
  std::unique_ptr<FuseServer> server;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = mounts_.find(path);
    if (it == mounts_.end()) return Error(Code::kNotFound, dir + " is not an aspfs mount of this daemon");
    ASPFS_RETURN_IF_ERROR(it->second->Stop(false));
    it->second->fs()->FlushAll().IgnoreError();  // the kernel released every file; this is belt and braces
    server = std::move(it->second);
    EraseLocked(it);
  }
  return store_->Sync();
}

void MountTable::UnmountAll() {
  std::lock_guard<std::mutex> lock(mu_);
  // Every mount's data first: a mount slow to stop must not cost another
  // its buffers.
  for (auto& [path, server] : mounts_) {
    server->WriteBackPageCache();
    server->fs()->FlushAll().IgnoreError();
  }
  for (auto& [path, server] : mounts_) {
    if (server->Stop(false).ok()) {
      server->fs()->FlushAll().IgnoreError();
      continue;
    }
    // In use: what its users wrote since the flush is acknowledged, so it is
    // committed once no request is served any more. Then it is left mounted
    // without a server rather than detached, so that its users get errors
    // instead of writing into the directory under it. Its loop may still run
    // until the process exits, so the server (and its VolumeFs) must outlive
    // this table.
    if (!server->StopServing(std::chrono::seconds(10))) {
      fprintf(stderr, "aspfsd: %s: requests still being served after 10 s; stopping anyway\n", path.c_str());
    }
    server->fs()->FlushAll().IgnoreError();
    server->Abandon();
    fprintf(stderr,
            "aspfsd: %s is in use: its data is committed; it stays mounted without a server (its users get "
            "ENOTCONN) until `aspfs mount` or umount(8) clears it\n",
            path.c_str());
    server.release();
  }
  mounts_.clear();
  volume_dirs_.clear();
  store_->Sync().IgnoreError();
}

namespace {

MountInfo InfoOf(const std::string& dir, const FuseServer& server) {
  return MountInfo{server.fs()->volume()->name(), dir, server.options().read_only, server.serves_through_io_uring()};
}

}  // namespace

std::vector<MountInfo> MountTable::List() {
  std::lock_guard<std::mutex> lock(mu_);
  ReapEndedLocked();
  std::vector<MountInfo> out;
  for (auto& [path, server] : mounts_) {
    out.push_back(InfoOf(path, *server));
  }
  return out;
}

std::optional<MountInfo> MountTable::FindVolume(const std::string& volume) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapEndedLocked();
  auto it = volume_dirs_.find(volume);
  if (it == volume_dirs_.end()) return std::nullopt;
  return InfoOf(it->second, *mounts_[it->second]);
}

}  // namespace aspfs
