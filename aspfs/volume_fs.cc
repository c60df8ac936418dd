#include "aspfs/volume_fs.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <cstring>
#include <deque>
#include <map>

#include "aspfs/posix_acl.h"
#include "journal/chunk.h"

namespace aspfs {
namespace {

// Per inode, before a commit is forced.
constexpr size_t kMaxBufferedBytes = 32 << 20;
// Page patches a block may carry before a commit rewrites it whole: each is a
// chunk to fetch when the block is read.
constexpr size_t kMaxPatches = 8;
constexpr size_t kMaxQueuedPurges = 512;        // unlinked inodes waiting for one purge txn

// Writes whole 4 KiB pages (page index -> bytes) over a block's content,
// growing it as needed.
void OverlayPages(const std::map<uint32_t, std::string>& pages, std::string* content) {
  for (const auto& [page, bytes] : pages) {
    uint64_t start = page * kPageSize;
    if (content->size() < start + kPageSize) content->resize(start + kPageSize, '\0');
    memcpy(content->data() + start, bytes.data(), kPageSize);
  }
}

// What write, truncate and chown by a caller without CAP_FSETID leave of a
// non-directory's mode (setattr_should_drop_suidgid): no set-user-ID; no
// set-group-ID when group-executable, nor when the caller is outside the
// file's group (without group exec the bit marks mandatory locking).
uint32_t WithoutSuidSgid(const InodeRecord& rec, const Caller& caller) {
  uint32_t mode = rec.mode & 07777;
  // Writes and truncates reach only regular files; chown clears the bits
  // of every non-directory (a FIFO's too).
  if (IsDir(rec.mode)) return mode;
  uint32_t out = mode & ~uint32_t{S_ISUID};
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || (!caller.fsetid && !caller.InGroup(rec.gid)))) {
    out &= ~uint32_t{S_ISGID};
  }
  return out;
}

void SetTime(struct timespec* ts, int64_t ns) {
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
  if (ts->tv_nsec < 0) {
    ts->tv_nsec += 1000000000;
    ts->tv_sec -= 1;
  }
}

// Times are kept as int64 nanoseconds (1677-09-21 to 2262-04-11). A time
// outside is clamped to the range, as the kernel clamps to a file system's
// range (ext4's ends in 2446), rather than wrapped.
int64_t TimeNs(const struct timespec& ts) {
  constexpr int64_t kLimitSec = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
  if (ts.tv_sec > kLimitSec) return kLimitSec * 1000000000 + 999999999;
  if (ts.tv_sec < -kLimitSec) return -kLimitSec * 1000000000;
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool AllZero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

}  // namespace

bool Caller::InGroup(uint32_t g) const {
  if (gid == g) return true;
  if (groups.empty() && load_groups) {
    auto loaded = load_groups();
    return std::find(loaded.begin(), loaded.end(), g) != loaded.end();
  }
  return std::find(groups.begin(), groups.end(), g) != groups.end();
}

Result<InodeRecord> VolumeFs::LoadInode(uint64_t ino) const {
  auto raw = store_->Get(key::Inode(vol_->id(), InodeId{ino}));
  if (!raw.ok()) return raw.status();
  if (!*raw) return Error(Code::kNotFound, "no inode " + std::to_string(ino));
  return InodeRecord::Decode(**raw);
}

Result<Position> VolumeFs::Commit(std::vector<Op> ops, const ChunkWrites& chunks, uint64_t* promised) {
  Txn txn;
  txn.time_ns = NowNs();
  txn.ops = std::move(ops);
  auto committed = vol_->Commit(&txn, chunks, promised);
  if (!committed.ok() && committed.status().code() == Code::kQuota && PurgeQueued() > 0) {
    // Space and inodes of files already unlinked may be what is missing.
    committed = vol_->Commit(&txn, chunks, promised);
  }
  return committed;
}

Result<Position> VolumeFs::Commit(Op op, const ChunkWrites& chunks, uint64_t* promised) {
  std::vector<Op> ops;
  ops.push_back(std::move(op));
  return Commit(std::move(ops), chunks, promised);
}

size_t VolumeFs::PurgeQueued() {
  std::vector<uint64_t> doomed;
  {
    std::lock_guard<std::mutex> lock(purge_mu_);
    doomed.swap(purge_queue_);
  }
  if (doomed.empty()) return 0;
  Txn txn;
  txn.time_ns = NowNs();
  for (uint64_t ino : doomed) txn.ops.push_back(op::Purge{ino});
  if (!vol_->Commit(&txn).ok()) {
    // One bad op fails the batch: purge one by one. A failure leaves the
    // orphan for the next mount's PurgeOrphans.
    for (uint64_t ino : doomed) {
      Txn one;
      one.time_ns = NowNs();
      one.ops.push_back(op::Purge{ino});
      vol_->Commit(&one).status().IgnoreError();
    }
  }
  return doomed.size();
}

struct stat VolumeFs::ToStat(uint64_t ino, const InodeRecord& rec) const {
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_ino = ino;
  st.st_mode = rec.mode;
  st.st_nlink = rec.nlink;
  st.st_uid = rec.uid;
  st.st_gid = rec.gid;
  st.st_rdev = rec.rdev;
  // A directory looks like ext4's first one: a 4 KiB block (du counts it).
  constexpr uint64_t kDirBytes = 4096;
  st.st_size = IsDir(rec.mode) ? kDirBytes : rec.size;
  // The unit of allocation and of holes (SEEK_HOLE, SEEK_DATA), which is
  // what programs take st_blksize for (xfstests' seek_sanity_test, cp); it
  // is also stdio's buffer size, and every write(2) is a round trip.
  st.st_blksize = kBlockSize;
  st.st_blocks = (IsDir(rec.mode) ? kDirBytes : rec.alloc_bytes) / 512;
  SetTime(&st.st_atim, rec.atime_ns);
  SetTime(&st.st_mtim, rec.mtime_ns);
  SetTime(&st.st_ctim, rec.ctime_ns);
  return st;
}

Status VolumeFs::PurgeOrphans() {
  std::string prefix = key::OrphanPrefix(vol_->id());
  std::vector<uint64_t> orphans;
  ASPFS_RETURN_IF_ERROR(store_->Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view) {
    orphans.push_back(key::DecodeBigEndian(k.substr(prefix.size())));
    return true;
  }));
  for (uint64_t ino : orphans) {
    ASPFS_RETURN_IF_ERROR(Commit(op::Purge{ino}).status().Context("purge orphan " + std::to_string(ino)));
  }
  return Status::Ok();
}

void VolumeFs::AddLookup(uint64_t ino) {
  std::lock_guard<std::mutex> lock(lookups_mu_);
  lookups_[ino] += 1;
}

void VolumeFs::Forget(uint64_t ino, uint64_t n) {
  {
    std::lock_guard<std::mutex> lock(lookups_mu_);
    auto it = lookups_.find(ino);
    if (it == lookups_.end()) return;
    if (it->second > n) {
      it->second -= n;
      return;
    }
    lookups_.erase(it);
  }
  MaybePurge(ino);
}

void VolumeFs::MaybePurge(uint64_t ino) {
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  {
    std::lock_guard<std::mutex> lock(lookups_mu_);
    if (lookups_.count(ino)) return;
  }
  auto rec = LoadInode(ino);
  if (!rec.ok() || rec->nlink != 0) return;
  DropPending(ino);  // nobody can read it any more
  // Purges are group-committed: many unlinks share one txn.
  size_t queued;
  {
    std::lock_guard<std::mutex> lock(purge_mu_);
    purge_queue_.push_back(ino);
    queued = purge_queue_.size();
  }
  if (queued >= kMaxQueuedPurges) PurgeQueued();
}

Result<struct stat> VolumeFs::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > kNameMax) return Error(Code::kNameTooLong, "name longer than 255 bytes");
  auto dir = LoadInode(parent);
  if (!dir.ok()) return dir.status();
  // Only file handles ask for "." and ".." (open_by_handle_at, an NFS
  // export: FUSE_CAP_EXPORT_SUPPORT) once the kernel has forgotten the
  // inode; a path walk resolves both itself. An inode without links has no
  // handle to come back through, as on ext4 (ESTALE).
  if (name == "." || name == "..") {
    uint64_t ino = parent;
    if (name == "..") {
      if (!IsDir(dir->mode)) return Error(Code::kNotDir, "not a directory");
      ino = dir->parent;
    }
    ASPFS_RETURN_IF_ERROR(Flush(ino));
    auto rec = ino == parent ? std::move(dir) : LoadInode(ino);
    if (!rec.ok()) return rec.status();
    if (rec->nlink == 0) return Error(Code::kNotFound, "inode " + std::to_string(ino) + " has no links");
    AddLookup(ino);
    return ToStat(ino, *rec);
  }
  if (!IsDir(dir->mode)) return Error(Code::kNotDir, "not a directory");
  auto raw = store_->Get(key::Dirent(vol_->id(), InodeId{parent}, name));
  if (!raw.ok()) return raw.status();
  if (!*raw) return Error(Code::kNotFound, "no entry " + name);
  auto entry = DirentRecord::Decode(**raw);
  if (!entry.ok()) return entry.status();
  ASPFS_RETURN_IF_ERROR(Flush(entry->ino));
  auto rec = LoadInode(entry->ino);
  if (!rec.ok()) return rec.status();
  AddLookup(entry->ino);
  return ToStat(entry->ino, *rec);
}

Result<struct stat> VolumeFs::GetAttr(uint64_t ino) {
  ASPFS_RETURN_IF_ERROR(Flush(ino));
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  return ToStat(ino, *rec);
}

Result<struct stat> VolumeFs::SetAttr(uint64_t ino, const struct stat& attr, int to_set, bool kill_suidgid,
                                      const Caller& caller) {
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  ASPFS_RETURN_IF_ERROR(FlushLocked(ino));
  int64_t now = NowNs();
  op::SetAttr o;
  o.ino = ino;
  if (to_set & kSetMode) {
    o.mask |= op::kSetMode;
    o.mode = attr.st_mode & 07777;
  } else if (kill_suidgid) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec.status();
    if (rec->nlink == 0 && (to_set & (kSetUid | kSetGid))) {
      // overlayfs copies a file up into an O_TMPFILE: chmod, then chown,
      // then link. That chown is the kernel's own (no ATTR_KILL_*; ext4
      // keeps the bits), but under KILLPRIV_V2 every chown reaches us
      // flagged "kill". Only an inode without links is spared: a chown(2)
      // of one is rare and root's. The mode goes with the op, or apply()'s
      // chown rule would clear the bits.
      o.mask |= op::kSetMode;
      o.mode = rec->mode & 07777;
    } else {
      uint32_t kept = WithoutSuidSgid(*rec, caller);
      if (kept != (rec->mode & 07777)) {
        o.mask |= op::kSetMode;
        o.mode = kept;
        to_set |= kSetMode;  // and the access ACL follows, as for chmod
      }
    }
  }
  if (to_set & kSetUid) {
    o.mask |= op::kSetUid;
    o.uid = attr.st_uid;
  }
  if (to_set & kSetGid) {
    o.mask |= op::kSetGid;
    o.gid = attr.st_gid;
  }
  if (to_set & kSetSize) {
    if (attr.st_size < 0) return Error(Code::kInvalid, "negative size");
    o.mask |= op::kSetSize;
    o.size = attr.st_size;
  }
  if (to_set & (kSetAtime | kSetAtimeNow)) {
    o.mask |= op::kSetAtime;
    o.atime_ns = (to_set & kSetAtimeNow) ? now : TimeNs(attr.st_atim);
  }
  if (to_set & (kSetMtime | kSetMtimeNow)) {
    o.mask |= op::kSetMtime;
    o.mtime_ns = (to_set & kSetMtimeNow) ? now : TimeNs(attr.st_mtim);
  }
  if (to_set & kSetCtime) {
    o.mask |= op::kSetCtime;
    o.ctime_ns = TimeNs(attr.st_ctim);
  }
  Txn txn;
  txn.time_ns = now;
  txn.ops.push_back(o);
  if (to_set & kSetMode) {
    // chmod rewrites the access ACL (posix_acl_chmod); the kernel only
    // drops its cached copy.
    auto raw = store_->Get(key::Xattr(vol_->id(), InodeId{ino}, kAclAccessXattr));
    if (!raw.ok()) return raw.status();
    if (*raw) {
      auto acl = PosixAcl::Decode(**raw);
      if (!acl.ok()) {
        return Error(Code::kCorrupt, "chmod of inode " + std::to_string(ino) + ": stored " + kAclAccessXattr + ": " +
                                         acl.status().message());
      }
      acl->Chmod(o.mode);
      txn.ops.push_back(op::SetXattr{ino, kAclAccessXattr, acl->Encode(), op::kXattrReplace});
    }
  }
  auto committed = vol_->Commit(&txn);
  if (!committed.ok()) return committed.status();
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  return ToStat(ino, *rec);
}

Result<std::vector<Op>> VolumeFs::NewInodeOps(uint64_t parent, const std::string& name, uint64_t ino, uint32_t mode,
                                               uint64_t rdev, const Caller& caller,
                                               const std::string& symlink_target) {
  // The kernel applies no umask (FUSE_CAP_DONT_MASK, for POSIX ACLs):
  // a default ACL of the parent replaces it, as posix_acl_create() on ext4.
  // Symlinks take neither.
  InheritedAcl inherited;
  inherited.mode = mode;
  if (!IsSymlink(mode)) {
    auto parent_default = store_->Get(key::Xattr(vol_->id(), InodeId{parent}, kAclDefaultXattr));
    if (!parent_default.ok()) return parent_default.status();
    if (*parent_default) {
      auto from_acl = InheritAcl(**parent_default, mode);
      if (!from_acl.ok()) {
        return Error(Code::kCorrupt, "create " + name + " in inode " + std::to_string(parent) + ": stored " +
                                         kAclDefaultXattr + ": " + from_acl.status().message());
      }
      inherited = std::move(*from_acl);
    } else {
      inherited.mode &= ~(caller.umask & 0777);
    }
  }
  std::vector<Op> ops;
  ops.push_back(op::Mknod{parent, name, ino, inherited.mode, caller.uid, caller.gid, rdev, symlink_target});
  if (!inherited.access.empty()) ops.push_back(op::SetXattr{ino, kAclAccessXattr, inherited.access, op::kXattrCreate});
  if (!inherited.default_acl.empty()) {
    ops.push_back(op::SetXattr{ino, kAclDefaultXattr, inherited.default_acl, op::kXattrCreate});
  }
  return ops;
}

Result<struct stat> VolumeFs::Mknod(uint64_t parent, const std::string& name, uint32_t mode, uint64_t rdev,
                                   const Caller& caller, const std::string& symlink_target) {
  uint64_t ino = vol_->AllocateInode();
  auto ops = NewInodeOps(parent, name, ino, mode, rdev, caller, symlink_target);
  if (!ops.ok()) return ops.status();
  auto committed = Commit(std::move(*ops));
  if (!committed.ok()) return committed.status();
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  AddLookup(ino);
  return ToStat(ino, *rec);
}

Result<struct stat> VolumeFs::Link(uint64_t ino, uint64_t new_parent, const std::string& new_name) {
  auto committed = Commit(op::Link{ino, new_parent, new_name});
  if (!committed.ok()) return committed.status();
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  AddLookup(ino);
  return ToStat(ino, *rec);
}

Status VolumeFs::Unlink(uint64_t parent, const std::string& name, bool directory) {
  if (name.size() > kNameMax) return Error(Code::kNameTooLong, "name longer than 255 bytes");
  auto raw = store_->Get(key::Dirent(vol_->id(), InodeId{parent}, name));
  if (!raw.ok()) return raw.status();
  ASPFS_RETURN_IF_ERROR(Commit(op::Unlink{parent, name, directory}).status());
  if (*raw) {
    auto entry = DirentRecord::Decode(**raw);
    if (entry.ok()) MaybePurge(entry->ino);
  }
  return Status::Ok();
}

Status VolumeFs::Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
                        uint32_t flags, const Caller* whiteout_owner) {
  if (name.size() > kNameMax) return Error(Code::kNameTooLong, "name longer than 255 bytes");
  auto raw = store_->Get(key::Dirent(vol_->id(), InodeId{new_parent}, new_name));
  if (!raw.ok()) return raw.status();
  std::optional<uint64_t> target;
  if (*raw) {
    auto entry = DirentRecord::Decode(**raw);
    if (entry.ok()) target = entry->ino;
  }
  // Buffered writes of the files being moved are committed before the
  // rename, so that no crash can leave the new name with older data (the
  // "write a temporary file, rename it over the old one" idiom; ext4's
  // auto_da_alloc does the same). A replaced target's writes are moot.
  if (buffered_bytes_.load() != 0) {
    auto moved = store_->Get(key::Dirent(vol_->id(), InodeId{parent}, name));
    if (!moved.ok()) return moved.status();
    if (*moved) {
      auto entry = DirentRecord::Decode(**moved);
      if (entry.ok()) ASPFS_RETURN_IF_ERROR(Flush(entry->ino));
    }
    if (target && (flags & op::kRenameExchange)) ASPFS_RETURN_IF_ERROR(Flush(*target));
  }
  std::vector<Op> ops;
  ops.push_back(op::Rename{parent, name, new_parent, new_name, flags});
  if (whiteout_owner) {
    // RENAME_WHITEOUT (overlayfs's upper layer): the old name becomes a
    // character device 0/0 in the same txn, made as mknod(2) would make it
    // (ext4 gives it the caller's owner, the setgid group and the default
    // ACL too). A rename that fails leaves no whiteout behind.
    if (flags & op::kRenameExchange) return Error(Code::kInvalid, "RENAME_WHITEOUT with RENAME_EXCHANGE");
    if (target) {
      // Two links of one inode: rename(2) does nothing (the kernel does
      // not even ask), so no whiteout either.
      auto source = store_->Get(key::Dirent(vol_->id(), InodeId{parent}, name));
      if (!source.ok()) return source.status();
      if (*source) {
        auto entry = DirentRecord::Decode(**source);
        if (entry.ok() && entry->ino == *target) return Status::Ok();
      }
    }
    auto whiteout = NewInodeOps(parent, name, vol_->AllocateInode(), kTypeChar, 0, *whiteout_owner, "");
    if (!whiteout.ok()) return whiteout.status();
    for (Op& o : *whiteout) ops.push_back(std::move(o));
  }
  ASPFS_RETURN_IF_ERROR(Commit(std::move(ops)).status());
  if (target) MaybePurge(*target);
  return Status::Ok();
}

Result<std::string> VolumeFs::ReadLink(uint64_t ino) {
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (!IsSymlink(rec->mode)) return Error(Code::kInvalid, "not a symlink");
  return rec->inline_data;
}

Status VolumeFs::Truncate(uint64_t ino, uint64_t size) {
  struct stat attr;
  memset(&attr, 0, sizeof attr);
  attr.st_size = static_cast<off_t>(size);
  return SetAttr(ino, attr, kSetSize).status();
}

Result<bool> VolumeFs::TruncateOnOpen(uint64_t ino, bool kill_suidgid, const Caller& caller) {
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  DropPending(ino);  // about to be cut away
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  op::SetAttr o;
  o.ino = ino;
  o.mask = op::kSetSize | op::kSetMtime;
  o.size = 0;
  o.mtime_ns = NowNs();
  uint32_t kept = kill_suidgid ? WithoutSuidSgid(*rec, caller) : rec->mode & 07777;
  bool killed = kept != (rec->mode & 07777);
  if (killed) {
    o.mask |= op::kSetMode;
    o.mode = kept;
  }
  ASPFS_RETURN_IF_ERROR(Commit(o).status());
  return killed;
}

Result<bool> VolumeFs::KillSuidSgid(uint64_t ino, const Caller& caller) {
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  uint32_t kept = WithoutSuidSgid(*rec, caller);
  if (kept == (rec->mode & 07777)) return false;
  op::SetAttr o;
  o.ino = ino;
  o.mask = op::kSetMode | op::kSetCtime;
  o.mode = kept;
  o.ctime_ns = NowNs();
  ASPFS_RETURN_IF_ERROR(Commit(o).status());
  return true;
}

bool VolumeFs::HasBlocks(const InodeRecord& rec) {
  // No scan of the extents (an iterator per write costs more than the write):
  // a file that ever had blocks stays in block mode unless it holds inline
  // data, which a file with extents never does (apply() keeps them apart).
  // Block mode is right for any file; inline is only the small-file shortcut.
  return (rec.flags & kInodeMayHaveBlocks) && rec.inline_data.empty();
}

Result<std::optional<ExtentRecord>> VolumeFs::LoadExtent(uint64_t ino, uint64_t block) const {
  auto raw = store_->Get(key::Extent(vol_->id(), InodeId{ino}, block));
  if (!raw.ok()) return raw.status();
  if (!*raw) return std::optional<ExtentRecord>();
  auto ext = ExtentRecord::Decode(**raw);
  if (!ext.ok()) return ext.status();
  return std::optional<ExtentRecord>(std::move(*ext));
}

Result<std::string> VolumeFs::ReadBlock(uint64_t ino, uint64_t block) const {
  auto ext = LoadExtent(ino, block);
  if (!ext.ok()) return ext.status();
  if (!*ext) return std::string();
  return AssembleBlock(**ext, 0, kBlockSize);
}

Result<std::string> VolumeFs::AssembleBlock(const ExtentRecord& ext, uint64_t lo, uint64_t hi) const {
  if (ext.patches.empty()) {  // the common case: the base chunk, as read
    auto base = store_->ReadChunk(ext.chunk);
    if (!base.ok()) return base.status();
    base->resize(ext.length, '\0');
    return std::move(*base);
  }
  std::string out(ext.End(), '\0');
  hi = std::min<uint64_t>(hi, out.size());
  if (lo >= hi) return out;
  bool need_base = false;
  if (!ext.chunk.IsZero()) {
    for (uint64_t page = lo / kPageSize; page <= (hi - 1) / kPageSize && !need_base; ++page) {
      need_base = !ext.HasPatch(static_cast<uint32_t>(page));
    }
  }
  if (need_base) {
    auto base = store_->ReadChunk(ext.chunk);
    if (!base.ok()) return base.status();
    memcpy(out.data(), base->data(), std::min<size_t>({ext.length, base->size(), out.size()}));
  }
  for (const PagePatch& p : ext.patches) {
    uint64_t start = p.page * kPageSize;
    if (start >= hi || start + kPageSize <= lo) continue;
    uint64_t page_end = std::min<uint64_t>(start + kPageSize, out.size());
    memset(out.data() + start, 0, page_end - start);  // the patch replaces the whole page
    auto data = store_->ReadChunk(p.chunk);
    if (!data.ok()) return data.status();
    memcpy(out.data() + start, data->data(), std::min<size_t>({p.length, data->size(), page_end - start}));
  }
  return out;
}

Result<std::string> VolumeFs::Read(uint64_t ino, uint64_t offset, size_t size) {
  auto parts = ReadParts(ino, offset, size);
  if (!parts.ok()) return parts.status();
  std::string out;
  for (const std::string& part : *parts) out += part;
  return out;
}

Result<std::vector<std::string>> VolumeFs::ReadParts(uint64_t ino, uint64_t offset, size_t size) {
  // Buffered writes are read where they wait, not committed first: a loop of
  // small writes and reads would otherwise commit at every read.
  std::unique_lock<std::mutex> inode_lock;
  const PendingWrite* pending = nullptr;
  if (buffered_bytes_.load() != 0 && FindPending(ino)) {
    inode_lock = std::unique_lock<std::mutex>(InodeLock(ino));
    pending = FindPending(ino);  // a flush may have come first
  }
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (IsDir(rec->mode)) return Error(Code::kIsDir, "is a directory");
  std::vector<std::string> parts;
  const uint64_t file_size = pending ? pending->size : rec->size;
  if (offset >= file_size) return parts;
  size = static_cast<size_t>(std::min<uint64_t>(size, file_size - offset));
  if (!pending && !rec->inline_data.empty()) {  // a pending write holds inline data as block 0
    std::string out(size, '\0');
    if (offset < rec->inline_data.size()) {
      size_t n = std::min<size_t>(size, rec->inline_data.size() - offset);
      memcpy(out.data(), rec->inline_data.data() + offset, n);
    }
    parts.push_back(std::move(out));
    return parts;
  }
  const uint64_t end = offset + size;
  for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
    const uint64_t bstart = b * kBlockSize;
    const uint64_t lo = std::max(offset, bstart) - bstart, hi = std::min(end, bstart + kBlockSize) - bstart;
    // Bytes [lo, hi) of a block's content; past its end, zeros.
    auto slice = [&](std::string_view content) {
      std::string part(content.substr(std::min<size_t>(lo, content.size()), hi - lo));
      part.resize(hi - lo, '\0');
      parts.push_back(std::move(part));
    };
    const std::map<uint32_t, std::string>* pages = nullptr;
    if (pending) {
      if (auto it = pending->blocks.find(b); it != pending->blocks.end()) {
        slice(it->second);
        continue;
      }
      if (auto it = pending->pages.find(b); it != pending->pages.end()) pages = &it->second;
    }
    // Point lookups (bloom-filtered for holes) beat an iterator for the few
    // blocks one read spans.
    auto ext = LoadExtent(ino, b);
    if (!ext.ok()) return ext.status();
    std::string content;
    if (*ext) {
      // Buffered pages go over the whole block; otherwise only the range is fetched.
      auto data = pages ? AssembleBlock(**ext, 0, kBlockSize) : AssembleBlock(**ext, lo, hi);
      if (!data.ok()) return data.status().Context("read inode " + std::to_string(ino));
      content = std::move(*data);
    }
    if (pages) OverlayPages(*pages, &content);
    if (lo == 0 && content.size() == hi) {
      parts.push_back(std::move(content));  // the whole block: handed over, not copied
      continue;
    }
    slice(content);
  }
  return parts;
}

Result<size_t> VolumeFs::Write(uint64_t ino, uint64_t offset, std::string_view data) {
  if (data.empty()) return size_t{0};
  if (offset + data.size() > kMaxFileSize) return Error(Code::kTooBig, "file too large");
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  return WriteLocked(ino, offset, data, /*commit_now=*/false);
}

bool VolumeFs::KeptAsPages(const PendingWrite& pending, uint64_t lo, uint64_t hi) {
  // Whole pages of a block the file may have, short of the whole block: a
  // write of the whole block needs nothing of the old one, and as one
  // buffer it is not copied a second time at commit.
  return pending.has_blocks && lo % kPageSize == 0 && hi % kPageSize == 0 && !(lo == 0 && hi == kBlockSize);
}

uint64_t VolumeFs::PromiseFor(const PendingWrite& pending, uint64_t offset, uint64_t end) {
  // At most what the commit can charge: a whole block for each block the
  // buffer takes on, a page for each page written into a block the file has.
  uint64_t promise = 0;
  for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
    if (pending.blocks.count(b)) continue;
    const uint64_t bstart = b * kBlockSize;
    const uint64_t lo = std::max(offset, bstart) - bstart;
    const uint64_t hi = std::min(end, bstart + kBlockSize) - bstart;
    if (KeptAsPages(pending, lo, hi)) {
      auto pages = pending.pages.find(b);
      for (uint64_t at = lo; at < hi; at += kPageSize) {
        if (pages == pending.pages.end() || !pages->second.count(static_cast<uint32_t>(at / kPageSize))) {
          promise += kPageSize;
        }
      }
      continue;
    }
    promise += kBlockSize;
  }
  return promise;
}

Result<size_t> VolumeFs::WriteLocked(uint64_t ino, uint64_t offset, std::string_view data, bool commit_now) {
  PendingWrite* pending = FindPending(ino);
  const uint64_t end = offset + data.size();
  uint64_t promise = 0;
  if (!pending) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec.status();
    if (!IsRegular(rec->mode)) return Error(Code::kInvalid, "not a regular file");
    const bool has_blocks = HasBlocks(*rec);
    // Small files stay inline, one small txn per write. Not a write ending
    // at the page's end: the kernel may send one write(2) as two at a page
    // boundary, and the first one committed alone would outlive a crash
    // that lost the second. It is buffered, and waits for the rest.
    if (!has_blocks && end <= kInlineMax && end % kPageSize != 0) {
      ASPFS_RETURN_IF_ERROR(Commit(op::WriteInline{ino, offset, std::string(data)}).status());
      return data.size();
    }
    auto fresh = std::make_unique<PendingWrite>();
    fresh->size = rec->size;
    fresh->has_blocks = has_blocks;
    fresh->stage_from = (rec->size + kBlockSize - 1) / kBlockSize;
    if (!has_blocks && !rec->inline_data.empty()) {
      fresh->blocks[0] = rec->inline_data;  // leaving inline
      fresh->bytes = rec->inline_data.size();
      buffered_bytes_ += fresh->bytes;
      promise = kBlockSize;
    }
    pending = fresh.get();
    std::lock_guard<std::mutex> lock(dirty_mu_);
    dirty_[ino] = std::move(fresh);
  }
  // The buffer may be committed at the kernel's release of the file, where
  // no error reaches the writer: the quota it needs is promised now, and a
  // write that cannot have it is committed at once, where it can be refused.
  promise += PromiseFor(*pending, offset, end);
  // A block staged ahead and written again is logged again by the commit:
  // its first body took the block's share of the disk promise.
  uint64_t restaged = 0;
  if (!pending->handed.empty()) {
    for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
      if (pending->handed.count(b)) restaged += kBlockSize;
    }
  }
  if ((promise || restaged) && !commit_now) {
    // Likewise the store's disk: a full one refuses the write itself.
    ASPFS_RETURN_IF_ERROR(store_->space_guard().Promise(promise + restaged));
    Status promised = promise ? vol_->ReserveQuota(promise) : Status::Ok();
    if (!promised.ok()) store_->space_guard().Release(promise + restaged);
    if (promised.code() == Code::kQuota) {
      // What is buffered already was promised its quota: it goes first, so
      // that a refusal loses this write only.
      ASPFS_RETURN_IF_ERROR(FlushLocked(ino));
      return WriteLocked(ino, offset, data, /*commit_now=*/true);
    }
    ASPFS_RETURN_IF_ERROR(promised);
    pending->quota_promised += promise;
    pending->space_promised += promise + restaged;
  }
  for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
    const uint64_t bstart = b * kBlockSize;
    const uint64_t lo = std::max(offset, bstart) - bstart;
    const uint64_t hi = std::min(end, bstart + kBlockSize) - bstart;
    auto it = pending->blocks.find(b);
    if (it == pending->blocks.end() && KeptAsPages(*pending, lo, hi)) {
      auto& pages = pending->pages[b];
      for (uint64_t at = lo; at < hi; at += kPageSize) {
        auto [page, added] = pages.try_emplace(static_cast<uint32_t>(at / kPageSize));
        if (added) {
          pending->bytes += kPageSize;
          buffered_bytes_ += kPageSize;
        }
        page->second.assign(data.data() + (bstart + at - offset), kPageSize);
      }
      continue;
    }
    if (it == pending->blocks.end()) {
      std::string content;
      if (pending->has_blocks && !(lo == 0 && hi == kBlockSize)) {
        auto existing = ReadBlock(ino, b);
        if (!existing.ok()) return existing.status();
        content = std::move(*existing);
      }
      // Pages buffered for this block join its whole content.
      if (auto pages = pending->pages.find(b); pages != pending->pages.end()) {
        OverlayPages(pages->second, &content);
        pending->bytes -= pages->second.size() * kPageSize;
        buffered_bytes_ -= pages->second.size() * kPageSize;
        pending->pages.erase(pages);
      }
      pending->bytes += content.size();  // memory held, not just bytes written
      buffered_bytes_ += content.size();
      it = pending->blocks.emplace(b, std::move(content)).first;
    }
    std::string& content = it->second;
    if (pending->handed.count(b)) Unstage(pending, b);  // its job reads content
    const char* src = data.data() + (bstart + lo - offset);
    if (content.size() < hi) {
      pending->bytes += hi - content.size();
      buffered_bytes_ += hi - content.size();
      if (content.size() == lo) {  // appending: no zero-fill first
        if (content.capacity() < kBlockSize) content.reserve(kBlockSize);
        content.append(src, hi - lo);
      } else {
        content.resize(hi, '\0');
        memcpy(content.data() + lo, src, hi - lo);
      }
    } else {
      memcpy(content.data() + lo, src, hi - lo);
    }
    // Not when the commit comes with this write anyway.
    if (hi == kBlockSize && content.size() == kBlockSize && b >= pending->stage_from && !commit_now &&
        pending->bytes < kMaxBufferedBytes) {
      StageAhead(pending, b, content);
    }
  }
  pending->size = std::max(pending->size, end);
  pending->last_write_ns = NowNs();
  pending->ended_on_page = end % kPageSize == 0;
  if (commit_now || pending->bytes >= kMaxBufferedBytes) ASPFS_RETURN_IF_ERROR(FlushLocked(ino));
  return data.size();
}

void VolumeFs::StageAhead(PendingWrite* pending, uint64_t block, std::string_view content) {
  // The block's share of the disk space promised to the buffer goes with it.
  const uint64_t share = std::min<uint64_t>(kBlockSize, pending->space_promised);
  pending->space_promised -= share;
  pending->handed.insert(block);
  {
    std::lock_guard<std::mutex> lock(pending->staged_mu);
    ++pending->staging;
  }
  store_->RunInBackground([store = store_, pending, block, content, unsettled = share]() mutable {
    StagedBlock staged;
    staged.id = HashChunk(content);
    staged.size = static_cast<uint32_t>(content.size());
    staged.status = store->StageChunks({Store::ChunkData{staged.id, content}}, /*in_wal=*/false, &staged.writes, &unsettled);
    staged.unsettled = unsettled;  // StageChunks failed before it settled the promise
    std::lock_guard<std::mutex> lock(pending->staged_mu);
    pending->staged[block] = std::move(staged);
    --pending->staging;
    pending->staged_cv.notify_all();  // under the lock: the waiter may free pending once it has it
  });
}

void VolumeFs::WaitStaged(PendingWrite* pending) {
  std::unique_lock<std::mutex> lock(pending->staged_mu);
  pending->staged_cv.wait(lock, [&] { return pending->staging == 0; });
  // A failed job's share of the disk promise is the buffer's again: its
  // commit stages that block itself.
  for (auto& [block, staged] : pending->staged) {
    pending->space_promised += staged.unsettled;
    staged.unsettled = 0;
  }
}

void VolumeFs::WaitStagedForTest(uint64_t ino) {
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  if (PendingWrite* pending = FindPending(ino)) WaitStaged(pending);
}

void VolumeFs::Unstage(PendingWrite* pending, uint64_t block) {
  // A block written again after its staging is committed from the buffer;
  // what was logged for it is left unreferenced.
  WaitStaged(pending);
  pending->handed.erase(block);
  pending->staged.erase(block);
}

VolumeFs::~VolumeFs() {
  for (const auto& [ino, pending] : dirty_) {
    WaitStaged(pending.get());
    vol_->ReleaseQuota(pending->quota_promised);
    store_->space_guard().Release(pending->space_promised);
  }
}

VolumeFs::PendingWrite* VolumeFs::FindPending(uint64_t ino) {
  std::lock_guard<std::mutex> lock(dirty_mu_);
  auto it = dirty_.find(ino);
  return it == dirty_.end() ? nullptr : it->second.get();
}

void VolumeFs::DropPending(uint64_t ino) {
  // Only the inode lock's holder removes the entry: it stays while we wait.
  if (PendingWrite* pending = FindPending(ino)) WaitStaged(pending);
  std::lock_guard<std::mutex> lock(dirty_mu_);
  auto it = dirty_.find(ino);
  if (it == dirty_.end()) return;
  buffered_bytes_ -= it->second->bytes;
  vol_->ReleaseQuota(it->second->quota_promised);
  store_->space_guard().Release(it->second->space_promised);
  dirty_.erase(it);
}

Status VolumeFs::FlushLocked(uint64_t ino, bool for_fsync) {
  // The entry stays in dirty_ until its commit is done: a getattr or read
  // that finds it waits for the inode lock, where one that found none would
  // read the inode record before the commit (the old size and mtime).
  PendingWrite* pending = FindPending(ino);
  if (!pending) return Status::Ok();
  // A failed commit (store error, or a quota a sparse block outgrew its
  // promise) drops the buffered data: the error reaches the writer at close
  // or fsync, as a failed writeback would.
  WaitStaged(pending);  // no job starts while the inode lock is held
  Status committed = CommitBlocks(ino, pending->size, pending->blocks, pending->pages, for_fsync,
                                  &pending->quota_promised, &pending->space_promised, &pending->staged)
                         .Context("commit buffered writes of inode " + std::to_string(ino));
  DropPending(ino);
  return committed;
}

Status VolumeFs::Flush(uint64_t ino, bool for_fsync) {
  // Every pending entry holds bytes, so the counter answers most calls
  // without a lock.
  if (buffered_bytes_.load() == 0 || !FindPending(ino)) return Status::Ok();
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  return FlushLocked(ino, for_fsync);
}

Status VolumeFs::FlushAll() { return FlushBuffers(0); }

Status VolumeFs::FlushSettled(int64_t settle_ns) { return FlushBuffers(settle_ns); }

Status VolumeFs::FlushBuffers(int64_t settle_ns) {
  std::vector<uint64_t> inodes;
  {
    std::lock_guard<std::mutex> lock(dirty_mu_);
    for (auto& [ino, pending] : dirty_) inodes.push_back(ino);
  }
  const int64_t now = NowNs();
  Status first_error;
  for (uint64_t ino : inodes) {
    std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
    PendingWrite* pending = FindPending(ino);
    if (!pending) continue;
    if (pending->ended_on_page && now - pending->last_write_ns < settle_ns && pending->timer_skips < kMaxTimerSkips) {
      ++pending->timer_skips;  // the rest of a split write(2) may be on its way
      continue;
    }
    Status s = FlushLocked(ino);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  PurgeQueued();
  return first_error;
}

Status VolumeFs::Release(uint64_t ino) {
  Status s = Flush(ino);
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(dirty_mu_);
    release_errors_.emplace(ino, s);
  }
  return s;
}

Status VolumeFs::Fsync(uint64_t ino) {
  ASPFS_RETURN_IF_ERROR(Flush(ino, /*for_fsync=*/true));
  ASPFS_RETURN_IF_ERROR(store_->Sync());
  std::lock_guard<std::mutex> lock(dirty_mu_);
  auto failed = release_errors_.find(ino);
  if (failed == release_errors_.end()) return Status::Ok();
  Status s = std::move(failed->second);
  release_errors_.erase(failed);
  return s;
}

Status VolumeFs::ZeroRangeLocked(uint64_t ino, const InodeRecord& rec, uint64_t offset, uint64_t length,
                                 uint64_t new_size) {
  const bool has_blocks = HasBlocks(rec);
  const uint64_t end = offset + length;
  if (!has_blocks && end <= kInlineMax) {
    return Commit(op::WriteInline{ino, offset, std::string(length, '\0')}).status();
  }
  // Block mode. A file still inline moves its data to block 0 in this txn.
  std::map<uint64_t, std::string> blocks;
  if (!has_blocks && !rec.inline_data.empty()) blocks[0] = rec.inline_data;
  for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
    std::string content;
    if (auto it = blocks.find(b); it != blocks.end()) {
      content = std::move(it->second);
    } else if (has_blocks) {
      auto existing = ReadBlock(ino, b);
      if (!existing.ok()) return existing.status();
      content = std::move(*existing);
    }
    const uint64_t bstart = b * kBlockSize;
    const uint64_t lo = std::max(offset, bstart) - bstart;
    const uint64_t hi = std::min(end, bstart + kBlockSize) - bstart;
    if (content.size() > lo) {
      memset(content.data() + lo, 0, std::min<uint64_t>(hi, content.size()) - lo);
      if (AllZero(content)) content.clear();
    }
    blocks[b] = std::move(content);
  }
  return CommitBlocks(ino, new_size, blocks);
}

Status VolumeFs::CommitBlocks(uint64_t ino, uint64_t size, const std::map<uint64_t, std::string>& blocks,
                              const PageWrites& pages, bool for_fsync, uint64_t* quota_promised,
                              uint64_t* space_promised, const std::map<uint64_t, StagedBlock>* staged_ahead) {
  // Hashing and compression happen here, outside the volume's commit lock.
  op::SetBlocks o;
  o.ino = ino;
  o.size = size;
  // Chunks are staged together at the end: one index lookup, few log writes.
  std::vector<Store::ChunkData> staged;
  std::deque<std::string> rewritten;  // contents built here; a deque keeps them put
  ChunkWrites logged_ahead;
  auto add_block = [&](uint64_t b, std::string_view content) {
    if (content.empty()) {
      o.blocks.push_back(op::BlockRef{b, ChunkId{}, 0, {}});  // a hole
      return;
    }
    if (staged_ahead) {
      if (auto it = staged_ahead->find(b); it != staged_ahead->end() && it->second.status.ok()) {
        const StagedBlock& ahead = it->second;
        o.blocks.push_back(op::BlockRef{b, ahead.id, ahead.size, {}});
        logged_ahead.index.insert(logged_ahead.index.end(), ahead.writes.index.begin(), ahead.writes.index.end());
        return;
      }
    }
    ChunkId id = HashChunk(content);
    staged.push_back(Store::ChunkData{id, content});
    o.blocks.push_back(op::BlockRef{b, id, static_cast<uint32_t>(content.size()), {}});
  };
  for (const auto& [b, content] : blocks) add_block(b, content);
  for (const auto& [b, written] : pages) {
    auto loaded = LoadExtent(ino, b);
    if (!loaded.ok()) return loaded.status();
    ExtentRecord ext = loaded->value_or(ExtentRecord{});
    size_t patches = ext.patches.size();
    for (const auto& [page, bytes] : written) patches += !ext.HasPatch(page);
    if (written.size() == kPagesPerBlock || patches > kMaxPatches) {
      // Rewrite the block: reads of it stay one chunk (or a few).
      std::string& content = rewritten.emplace_back();
      if (written.size() < kPagesPerBlock && (!ext.chunk.IsZero() || !ext.patches.empty())) {
        auto assembled = AssembleBlock(ext, 0, kBlockSize);
        if (!assembled.ok()) return assembled.status();
        content = std::move(*assembled);
      }
      OverlayPages(written, &content);
      add_block(b, content);
      continue;
    }
    op::BlockRef ref{b, ChunkId{}, 0, {}};
    for (const auto& [page, bytes] : written) {
      ChunkId id = HashChunk(bytes);
      staged.push_back(Store::ChunkData{id, bytes});
      ref.pages.push_back(PagePatch{page, static_cast<uint32_t>(kPageSize), id});
    }
    o.blocks.push_back(std::move(ref));
  }
  ChunkWrites chunks;
  ASPFS_RETURN_IF_ERROR(store_->StageChunks(staged, for_fsync, &chunks, space_promised));
  // Another file may have committed the same content since the staging:
  // its index entry stays (an fsync may have made its body, not ours, durable).
  ASPFS_RETURN_IF_ERROR(store_->DropKnownChunks(&logged_ahead));
  for (auto& entry : logged_ahead.index) chunks.index.push_back(std::move(entry));
  return Commit(std::move(o), chunks, quota_promised).status();
}

Status VolumeFs::Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length) {
  if (length == 0) return Error(Code::kInvalid, "zero length");
  if (offset + length > kMaxFileSize) return Error(Code::kTooBig, "file too large");
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  ASPFS_RETURN_IF_ERROR(FlushLocked(ino));
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (IsDir(rec->mode)) return Error(Code::kIsDir, "is a directory");
  if (!IsRegular(rec->mode)) return Error(Code::kInvalid, "not a regular file");
  const bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
  const uint64_t end = offset + length;
  // Every successful fallocate marks mtime and ctime, as on ext4, even when
  // it changes no byte.
  op::SetAttr touch;
  touch.ino = ino;
  touch.mask = op::kSetMtime;
  touch.mtime_ns = NowNs();
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    if (!keep_size || (mode & ~(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))) {
      return Error(Code::kNotSupported, "punch hole needs exactly FALLOC_FL_KEEP_SIZE");
    }
    if (offset < rec->size) {
      uint64_t clipped = std::min(end, rec->size) - offset;
      ASPFS_RETURN_IF_ERROR(ZeroRangeLocked(ino, *rec, offset, clipped, rec->size));
    }
    return Commit(touch).status();
  }
  if (mode & FALLOC_FL_ZERO_RANGE) {
    if (mode & ~(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)) return Error(Code::kNotSupported, "bad mode");
    uint64_t new_size = keep_size ? rec->size : std::max(rec->size, end);
    uint64_t zero_end = std::min(end, std::max(rec->size, new_size));
    if (offset < zero_end) {
      ASPFS_RETURN_IF_ERROR(ZeroRangeLocked(ino, *rec, offset, zero_end - offset, new_size));
    }
    return Commit(touch).status();
  }
  if (mode & ~FALLOC_FL_KEEP_SIZE) return Error(Code::kNotSupported, "unsupported fallocate mode");
  const uint64_t new_size = keep_size ? rec->size : std::max(rec->size, end);
  // Reserved only up to the size: a block never lies past it (KEEP_SIZE
  // beyond the end reserves nothing).
  const uint64_t reserve_end = std::min(end, new_size);
  // Refuse at once what could never fit the quota or the store's disk, as
  // ext4 would: at least the range, less all the file holds already, is new.
  // Only the range: a range far past the end leaves a hole before it.
  if (offset < reserve_end) {
    const uint64_t range = reserve_end - offset;
    // Two floors: the range less all the file holds, and the range's part
    // past the file's last block, where no block lies.
    const uint64_t past_blocks_from = std::max(offset, (rec->size + kBlockSize - 1) / kBlockSize * kBlockSize);
    const uint64_t past_blocks = reserve_end > past_blocks_from ? reserve_end - past_blocks_from : 0;
    const uint64_t at_least_new = std::max(range - std::min(range, rec->alloc_bytes), past_blocks);
    auto summary = store_->Summarize(vol_);
    if (!summary.ok()) return summary.status();
    if (summary->quota.bytes && summary->usage.bytes + at_least_new > summary->quota.bytes) {
      return Error(Code::kQuota, "volume byte quota exceeded");
    }
    // The reserved blocks take no disk yet; the writes they promise will.
    if (at_least_new > store_->space_guard().report().data_room()) {
      return Error(Code::kNoSpace, "not enough free space on the store's disk");
    }
  }
  if (offset < reserve_end) ASPFS_RETURN_IF_ERROR(ReserveRangeLocked(ino, *rec, offset, reserve_end, new_size));
  if (new_size > rec->size) {
    touch.mask |= op::kSetSize;
    touch.size = new_size;
  }
  return Commit(touch).status();
}

Status VolumeFs::ReserveRangeLocked(uint64_t ino, const InodeRecord& rec, uint64_t offset, uint64_t end,
                                    uint64_t new_size) {
  const bool has_blocks = HasBlocks(rec);
  if (!has_blocks && end <= kInlineMax) return Status::Ok();  // an inline file's page is charged as written
  // Blocks partly covered or holding inline data: their content, padded.
  std::map<uint64_t, std::string> padded;
  std::vector<uint64_t> holes;  // whole blocks of nothing: the shared zero block
  if (!has_blocks && !rec.inline_data.empty()) padded[0] = rec.inline_data;  // leaving inline
  for (uint64_t b = offset / kBlockSize; b <= (end - 1) / kBlockSize; ++b) {
    const uint64_t hi = std::min(end, (b + 1) * kBlockSize) - b * kBlockSize;
    if (auto it = padded.find(b); it != padded.end()) {
      if (it->second.size() < hi) it->second.resize(hi, '\0');
      continue;
    }
    std::optional<ExtentRecord> ext;
    if (has_blocks) {
      auto loaded = LoadExtent(ino, b);
      if (!loaded.ok()) return loaded.status();
      ext = std::move(*loaded);
    }
    if (!ext && hi == kBlockSize) {
      holes.push_back(b);
      continue;
    }
    if (ext && ext->End() >= hi) continue;
    std::string content;
    if (ext) {
      auto assembled = AssembleBlock(*ext, 0, ext->End());
      if (!assembled.ok()) return assembled.status();
      content = std::move(*assembled);
    }
    content.resize(hi, '\0');
    padded[b] = std::move(content);
  }
  if (!padded.empty()) ASPFS_RETURN_IF_ERROR(CommitBlocks(ino, new_size, padded));
  // Holes in txns of bounded size: a large fallocate need not be one txn,
  // and one that runs out of quota keeps what it reserved, as Linux allows.
  constexpr size_t kHolesPerTxn = 4096;
  for (size_t first = 0; first < holes.size(); first += kHolesPerTxn) {
    const ChunkId zero = HashChunk(ZeroBlock());
    ChunkWrites chunks;
    ASPFS_RETURN_IF_ERROR(store_->StageChunks({Store::ChunkData{zero, ZeroBlock()}}, false, &chunks, nullptr));
    op::SetBlocks o;
    o.ino = ino;
    o.size = new_size;
    for (size_t i = first; i < std::min(holes.size(), first + kHolesPerTxn); ++i) {
      o.blocks.push_back(op::BlockRef{holes[i], zero, static_cast<uint32_t>(kBlockSize), {}});
    }
    ASPFS_RETURN_IF_ERROR(Commit(std::move(o), chunks).status());
  }
  return Status::Ok();
}

Result<uint64_t> VolumeFs::CopyFileRange(uint64_t in, uint64_t in_offset, uint64_t out, uint64_t out_offset,
                                         uint64_t length) {
  // Content addressing makes a block's chunks shareable: the copy points the
  // destination's extents at the source's chunks in one SetBlocks txn and
  // moves no data. Unaligned ranges are the kernel's, which on EOPNOTSUPP
  // copies through the page cache.
  if (in_offset % kBlockSize || out_offset % kBlockSize) return Error(Code::kNotSupported, "unaligned copy");
  if (out_offset + length > kMaxFileSize || out_offset + length < out_offset) {
    return Error(Code::kTooBig, "file too large");
  }
  std::unique_lock<std::mutex> in_lock(InodeLock(in), std::defer_lock), out_lock(InodeLock(out), std::defer_lock);
  if (&InodeLock(in) == &InodeLock(out)) {
    in_lock.lock();
  } else {
    std::lock(in_lock, out_lock);
  }
  ASPFS_RETURN_IF_ERROR(FlushLocked(in));
  if (out != in) ASPFS_RETURN_IF_ERROR(FlushLocked(out));
  auto src = LoadInode(in);
  if (!src.ok()) return src.status();
  auto dst = LoadInode(out);
  if (!dst.ok()) return dst.status();
  if (!IsRegular(src->mode) || !IsRegular(dst->mode)) return Error(Code::kInvalid, "not a regular file");
  if (in_offset >= src->size) return uint64_t{0};
  // Inline data is not in blocks (and a destination's would be dropped by
  // SetBlocks): small files go the kernel's way.
  if (!src->inline_data.empty() || !dst->inline_data.empty()) return Error(Code::kNotSupported, "inline file");
  uint64_t n = std::min({length, src->size - in_offset, kMaxCopyBlocks * kBlockSize});
  // A last partial block is shared only if it ends the source and nothing
  // of the destination's lies past it.
  if (n % kBlockSize && !(in_offset + n == src->size && out_offset + n >= dst->size)) n -= n % kBlockSize;
  if (n == 0) return Error(Code::kNotSupported, "less than a block");
  op::SetBlocks o;
  o.ino = out;
  o.size = std::max(dst->size, out_offset + n);
  for (uint64_t i = 0; i < (n + kBlockSize - 1) / kBlockSize; ++i) {
    const uint64_t to = out_offset / kBlockSize + i;
    auto ext = LoadExtent(in, in_offset / kBlockSize + i);
    if (!ext.ok()) return ext.status();
    if (!*ext || (*ext)->chunk.IsZero()) {
      o.blocks.push_back(op::BlockRef{to, ChunkId{}, 0, {}});  // a hole, or no base under the patches
    } else {
      o.blocks.push_back(op::BlockRef{to, (*ext)->chunk, (*ext)->length, {}});
    }
    if (*ext && !(*ext)->patches.empty()) o.blocks.push_back(op::BlockRef{to, ChunkId{}, 0, (*ext)->patches});
  }
  ASPFS_RETURN_IF_ERROR(Commit(std::move(o)).status());
  return n;
}

Result<uint64_t> VolumeFs::Lseek(uint64_t ino, uint64_t offset, int whence) {
  ASPFS_RETURN_IF_ERROR(Flush(ino));
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return Error(Code::kInvalid, "bad whence");
  if (offset >= rec->size) return Error(Code::kNoSuchOffset, "offset past end of file");
  if (!HasBlocks(*rec)) {
    uint64_t data_end = rec->inline_data.size();
    if (whence == SEEK_DATA) {
      if (offset < data_end) return offset;
      return Error(Code::kNoSuchOffset, "no data after offset");
    }
    return offset < data_end ? data_end : offset;
  }
  std::string prefix = key::ExtentPrefix(vol_->id(), InodeId{ino});
  uint64_t pos = offset;
  std::optional<uint64_t> data_at;
  Status bad;
  ASPFS_RETURN_IF_ERROR(store_->Scan(
      key::Extent(vol_->id(), InodeId{ino}, offset / kBlockSize), key::PrefixEnd(prefix),
      [&](std::string_view k, std::string_view v) {
        auto ext = ExtentRecord::Decode(v);
        if (!ext.ok()) {
          bad = ext.status();
          return false;
        }
        uint64_t start = key::DecodeBigEndian(k.substr(prefix.size())) * kBlockSize;
        uint64_t stop = start + ext->End();
        const bool hole = IsZeroFill(*ext);
        if (whence == SEEK_DATA) {
          if (hole) return true;
          if (stop > pos) {
            data_at = std::max(pos, start);
            return false;
          }
          return true;
        }
        // SEEK_HOLE: extend pos through contiguous data.
        if (start > pos || hole) return false;
        if (stop > pos) pos = stop;
        return ext->End() == kBlockSize;
      }));
  ASPFS_RETURN_IF_ERROR(bad);
  if (whence == SEEK_DATA) {
    if (!data_at || *data_at >= rec->size) return Error(Code::kNoSuchOffset, "no data after offset");
    return *data_at;
  }
  return std::min(pos, rec->size);
}

Status VolumeFs::ReadDir(uint64_t ino, uint64_t offset, const EmitFn& emit) {
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (!IsDir(rec->mode)) return Error(Code::kNotDir, "not a directory");
  const DirEntry dots[] = {{".", ino, kTypeDir, 1}, {"..", rec->parent, kTypeDir, 2}};
  for (const DirEntry& dot : dots) {
    if (offset < dot.next_offset && !emit({&dot, 1})) return Status::Ok();
  }
  std::string prefix = key::DirentPrefix(vol_->id(), InodeId{ino});
  uint64_t from = std::max<uint64_t>(offset, 2) + 1;
  if (from < offset) return Status::Ok();  // an offset past every cookie
  std::vector<DirEntry> group;
  bool stopped = false;
  Status bad;
  ASPFS_RETURN_IF_ERROR(store_->Scan(
      key::DirentFrom(vol_->id(), InodeId{ino}, from), key::PrefixEnd(prefix),
      [&](std::string_view k, std::string_view value) {
        uint64_t cookie;
        std::string_view name;
        auto entry = DirentRecord::Decode(value);
        if (!key::SplitDirent(k, prefix.size(), &cookie, &name) || !entry.ok()) {
          bad = Error(Code::kCorrupt, "directory " + std::to_string(ino) + ": bad entry");
          return false;
        }
        if (!group.empty() && group.back().next_offset != cookie) {
          if (!emit(group)) return !(stopped = true);
          group.clear();
        }
        group.push_back(DirEntry{std::string(name), entry->ino, entry->type, cookie});
        return true;
      }));
  if (!bad.ok()) return bad;
  if (!stopped && !group.empty()) emit(group);
  return Status::Ok();
}

Result<struct statvfs> VolumeFs::StatFs() {
  PurgeQueued();  // df right after rm -rf shows the space as free
  auto summary = store_->Summarize(vol_);
  if (!summary.ok()) return summary.status();
  // The store's free space short of the reserve it keeps back: df shows 0
  // when file data is refused.
  SpaceGuard::Report disk = store_->space_guard().report();
  uint64_t disk_free = disk.data_room();
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = st.f_frsize = 4096;
  uint64_t used = summary->usage.bytes;
  uint64_t total = summary->quota.bytes ? summary->quota.bytes : used + disk_free;
  uint64_t avail = total > used ? total - used : 0;
  if (summary->quota.bytes) avail = std::min(avail, disk_free);
  st.f_blocks = total / 4096;
  st.f_bfree = st.f_bavail = avail / 4096;
  uint64_t files = summary->quota.inodes ? summary->quota.inodes : (1ull << 32);
  st.f_files = files;
  st.f_ffree = st.f_favail = files > summary->usage.inodes ? files - summary->usage.inodes : 0;
  st.f_namemax = kNameMax;
  return st;
}

// As ext4: names live in the kernel's namespaces and have a name after the prefix.
static Status CheckXattrName(const std::string& name) {
  // system.* names are the file system's own, as on ext4: only the POSIX
  // ACLs exist. The kernel leaves their permission checks to us, so any
  // other would be a place anyone may write on anyone's file.
  if (name == kAclAccessXattr || name == kAclDefaultXattr) return Status::Ok();
  for (const char* prefix : {"user.", "trusted.", "security."}) {
    size_t n = strlen(prefix);
    if (name.compare(0, n, prefix) == 0) {
      if (name.size() == n) return Error(Code::kInvalid, "empty attribute name");
      return Status::Ok();
    }
  }
  return Error(Code::kNotSupported, "attribute namespace not supported");
}

Status VolumeFs::SetXattr(uint64_t ino, const std::string& name, std::string_view value, int flags,
                          const Caller& caller) {
  ASPFS_RETURN_IF_ERROR(CheckXattrName(name));
  uint32_t f = 0;
  if (flags & XATTR_CREATE) f |= op::kXattrCreate;
  if (flags & XATTR_REPLACE) f |= op::kXattrReplace;
  if (name == kAclAccessXattr) return SetAccessAcl(ino, value, f, caller);
  if (name == kAclDefaultXattr) {
    // Stored as given once valid; the kernel refuses one on a non-directory.
    auto acl = PosixAcl::Decode(value);
    if (!acl.ok()) return acl.status().Context("setxattr " + name + " of inode " + std::to_string(ino));
  }
  return Commit(op::SetXattr{ino, name, std::string(value), f}).status();
}

Status VolumeFs::SetAccessAcl(uint64_t ino, std::string_view value, uint32_t flags, const Caller& caller) {
  auto acl = PosixAcl::Decode(value);
  if (!acl.ok()) {
    return acl.status().Context(std::string("setxattr ") + kAclAccessXattr + " of inode " + std::to_string(ino));
  }
  std::lock_guard<std::mutex> inode_lock(InodeLock(ino));
  ASPFS_RETURN_IF_ERROR(FlushLocked(ino));
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  const std::string k = key::Xattr(vol_->id(), InodeId{ino}, kAclAccessXattr);
  auto existing = store_->Get(k);
  if (!existing.ok()) return existing.status();
  if ((flags & op::kXattrCreate) && *existing) return Error(Code::kExists, "attribute exists");
  if ((flags & op::kXattrReplace) && !*existing) return Error(Code::kNoData, "no such attribute");
  // posix_acl_update_mode(): the permission bits follow the ACL (group bits
  // = mask), and set-group-ID is cleared for a caller outside the file's
  // group without CAP_FSETID (approximated: not root). libfuse does not
  // pass the kernel's FUSE_SETXATTR_ACL_KILL_SGID, so we decide it here.
  op::SetAttr mode;
  mode.ino = ino;
  mode.mask = op::kSetMode;
  mode.mode = (rec->mode & 07000) | acl->PermissionBits();
  if (caller.uid != 0 && !caller.InGroup(rec->gid)) mode.mode &= ~uint32_t{S_ISGID};
  std::vector<Op> ops;
  ops.push_back(mode);
  if (!acl->EquivalentToMode()) {
    ops.push_back(op::SetXattr{ino, kAclAccessXattr, acl->Encode(), 0});
  } else if (*existing) {
    ops.push_back(op::RemoveXattr{ino, kAclAccessXattr});  // the mode says it all, as on ext4
  }
  return Commit(std::move(ops)).status();
}

Result<std::string> VolumeFs::GetXattr(uint64_t ino, const std::string& name) {
  ASPFS_RETURN_IF_ERROR(CheckXattrName(name));
  if (name.size() > kXattrNameMax) return Error(Code::kRange, "attribute name too long");
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  // The kernel asks every new file for security.capability before its first
  // write: answered without a read (and a cached miss) per file.
  if (!(rec->flags & kInodeMayHaveXattrs)) return Error(Code::kNoData, "no such attribute");
  auto raw = store_->Get(key::Xattr(vol_->id(), InodeId{ino}, name));
  if (!raw.ok()) return raw.status();
  if (!*raw) return Error(Code::kNoData, "no such attribute");
  return std::move(**raw);
}

Result<std::string> VolumeFs::ListXattr(uint64_t ino, const Caller& caller) {
  auto rec = LoadInode(ino);
  if (!rec.ok()) return rec.status();
  if (!(rec->flags & kInodeMayHaveXattrs)) return std::string();
  std::string prefix = key::XattrPrefix(vol_->id(), InodeId{ino});
  std::string names;
  // trusted.* names are listed only to CAP_SYS_ADMIN (approximated: root),
  // as ext4 does; the kernel lists whatever we return.
  const bool trusted_visible = caller.uid == 0;
  ASPFS_RETURN_IF_ERROR(store_->Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view) {
    std::string_view name = k.substr(prefix.size());
    if (!trusted_visible && name.starts_with("trusted.")) return true;
    names.append(name);
    names.push_back('\0');
    return true;
  }));
  return names;
}

Status VolumeFs::RemoveXattr(uint64_t ino, const std::string& name) {
  ASPFS_RETURN_IF_ERROR(CheckXattrName(name));
  return Commit(op::RemoveXattr{ino, name}).status();
}

}  // namespace aspfs
