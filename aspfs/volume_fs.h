// VolumeFs: the POSIX semantics of one mounted volume, turned into txns.
// The FUSE adapter (fuse_server.cc) parses requests, calls this and replies;
// nothing here sees fuse_req_t.
//
// Thread-safety: every method may be called from many FUSE worker threads.
// Data writes to one inode are serialized by a striped inode lock (held
// across read-modify-write of blocks and the commit); the volume's commit
// mutex (inside Volume::Commit) is taken under it. Lock order: inode stripe,
// then dirty_mu_, lookups_mu_ or Volume::mu_. No lock is held across a reply.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "journal/store.h"

namespace aspfs {

struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // The caller's umask, for the kernel leaves it to us (POSIX ACLs): applied
  // to a new inode unless its parent directory has a default ACL.
  uint32_t umask = 0;
  // Supplementary groups: filled in only where a decision needs them
  // (setxattr of an access ACL by a caller other than root), or loaded on
  // first use through load_groups (set-group-ID clearing, rarely needed).
  std::vector<uint32_t> groups;
  std::function<std::vector<uint32_t>()> load_groups;
  // Holds CAP_FSETID: keeps a set-group-ID bit without group exec on chown
  // (the kernel says nothing there; root stands in for it).
  bool fsetid = false;

  bool InGroup(uint32_t g) const;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;
  uint64_t next_offset = 0;  // the offset that resumes after this entry
};

class VolumeFs {
 public:
  VolumeFs(Store* store, Volume* vol) : store_(store), vol_(vol) {}
  // Buffers never committed (a mount given up on) give back their promises.
  ~VolumeFs();

  Volume* volume() const { return vol_; }

  // Purges inodes left at zero links by a previous run (nothing can hold
  // them open after a restart).
  Status PurgeOrphans();

  // Lookup-count bookkeeping: every reply that hands the kernel an inode
  // counts one lookup; Forget drops them and purges an unlinked inode at zero.
  void AddLookup(uint64_t ino);
  void Forget(uint64_t ino, uint64_t n);

  Result<struct stat> Lookup(uint64_t parent, const std::string& name);
  Result<struct stat> GetAttr(uint64_t ino);
  // to_set: a mask of kSet* below. A mode change rewrites the access ACL's
  // USER_OBJ, MASK (or GROUP_OBJ) and OTHER in the same txn (posix_acl_chmod).
  // kill_suidgid (truncate by a caller without CAP_FSETID, chown): a
  // regular file also loses set-user-ID and set-group-ID (see
  // KillSuidSgid), in the same txn.
  Result<struct stat> SetAttr(uint64_t ino, const struct stat& attr, int to_set, bool kill_suidgid = false,
                              const Caller& caller = {});
  // mode: the requested type and permission bits, before the umask. A
  // parent's default ACL is inherited (posix_acl_create), else the caller's
  // umask applies; the inode, its ACLs and its entry commit as one txn. An
  // empty name makes an O_TMPFILE file: no entry, nlink 0, an orphan until
  // linked.
  Result<struct stat> Mknod(uint64_t parent, const std::string& name, uint32_t mode, uint64_t rdev,
                            const Caller& caller, const std::string& symlink_target = "");
  Result<struct stat> Link(uint64_t ino, uint64_t new_parent, const std::string& new_name);
  Status Unlink(uint64_t parent, const std::string& name, bool directory);
  // flags are the journal's (op::kRename*). whiteout_owner: RENAME_WHITEOUT,
  // leave a whiteout made by that caller at the old name.
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
                uint32_t flags, const Caller* whiteout_owner = nullptr);
  Result<std::string> ReadLink(uint64_t ino);

  Status Truncate(uint64_t ino, uint64_t size);
  // open(O_TRUNC): size 0 and mtime/ctime marked even when already empty;
  // kill_suidgid (a caller without CAP_FSETID) clears set-user-ID and
  // set-group-ID as truncate(2) does. True if the mode changed.
  Result<bool> TruncateOnOpen(uint64_t ino, bool kill_suidgid, const Caller& caller);
  // A write by a caller without CAP_FSETID: a regular file loses
  // set-user-ID, and set-group-ID when group-executable or when the caller
  // is not in the file's group (setattr_should_drop_sgid). True if the mode
  // changed.
  Result<bool> KillSuidSgid(uint64_t ino, const Caller& caller);
  Result<std::string> Read(uint64_t ino, uint64_t offset, size_t size);
  // Read's bytes as consecutive pieces (a whole block is handed over uncopied).
  Result<std::vector<std::string>> ReadParts(uint64_t ino, uint64_t offset, size_t size);
  Result<size_t> Write(uint64_t ino, uint64_t offset, std::string_view data);
  Status Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length);
  Result<uint64_t> Lseek(uint64_t ino, uint64_t offset, int whence);
  // copy_file_range(2) between block-aligned offsets: whole blocks (and a
  // last partial one that ends both files) are shared, not copied. Returns
  // the bytes copied, possibly fewer than asked (the caller goes on); 0 at
  // the source's end; kNotSupported for what the kernel must copy itself.
  Result<uint64_t> CopyFileRange(uint64_t in, uint64_t in_offset, uint64_t out, uint64_t out_offset,
                                 uint64_t length);
  static constexpr uint64_t kMaxCopyBlocks = 4096;  // per call: one txn of 256 MiB
  // Commits ino's buffered writes (close, flush, and before anything that
  // reads or changes the file). for_fsync: a WAL sync follows, so small
  // chunks go into the WAL and the chunk log needs no sync of its own.
  Status Flush(uint64_t ino, bool for_fsync = false);
  // Commits every buffered write and queued purge of the volume (unmount,
  // SIGTERM, tests).
  Status FlushAll();
  // Until no block of ino's buffer is being staged ahead (tests).
  void WaitStagedForTest(uint64_t ino);
  // The group-commit timer's FlushAll. The kernel sends one write(2) as
  // several FUSE writes (an unaligned start's first page alone, then up to
  // max_write each), each ending on a page boundary; a commit between them
  // would let a crash keep half of the write(2). So a buffer whose last
  // write ended on a page boundary less than settle_ns ago waits for the
  // next tick, at most kMaxTimerSkips ticks in a row.
  Status FlushSettled(int64_t settle_ns = kSplitWriteSettleNs);
  static constexpr int64_t kSplitWriteSettleNs = 5'000'000;
  static constexpr int kMaxTimerSkips = 4;
  // The kernel's release of a file after its last close: its buffered writes
  // are committed. Nobody waits for the answer, so an error is kept for the
  // file's next fsync.
  Status Release(uint64_t ino);
  // fsync/fdatasync: ino's buffered writes committed, then the WAL synced;
  // or the error of a commit that failed at the file's release.
  Status Fsync(uint64_t ino);
  // fsyncdir: every commit before it made durable.
  Status Sync() { return store_->Sync(); }
  size_t buffered_bytes() const { return buffered_bytes_.load(); }

  // Entries after offset (0 starts with "." and ".."), until emit returns
  // false. Entries come in groups that share an offset (names whose cookies
  // collide, in practice always one): emit takes a whole group or none of it,
  // since the kernel resumes after an offset.
  using EmitFn = std::function<bool(std::span<const DirEntry>)>;
  Status ReadDir(uint64_t ino, uint64_t offset, const EmitFn& emit);

  Result<struct statvfs> StatFs();

  // system.posix_acl_* values are validated (kInvalid when malformed). An
  // access ACL also sets the mode's permission bits (group = mask), and one
  // the mode says in full is not stored, as on ext4 (posix_acl_update_mode);
  // set-group-ID survives only for root or a member of the file's group.
  Status SetXattr(uint64_t ino, const std::string& name, std::string_view value, int flags, const Caller& caller);
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  Result<std::string> ListXattr(uint64_t ino, const Caller& caller);  // names, each NUL-terminated
  Status RemoveXattr(uint64_t ino, const std::string& name);

  static constexpr int kSetMode = 1 << 0, kSetUid = 1 << 1, kSetGid = 1 << 2, kSetSize = 1 << 3,
                       kSetAtime = 1 << 4, kSetMtime = 1 << 5, kSetAtimeNow = 1 << 7, kSetMtimeNow = 1 << 8,
                       kSetCtime = 1 << 10;

 private:
  Result<InodeRecord> LoadInode(uint64_t ino) const;
  // Commits ops as one txn, all or nothing, with the chunks they reference.
  // promised: quota reserved for what the txn commits (Volume::Commit).
  // promised: as Volume::Commit (consumed by a successful commit).
  // The ops that make inode ino at parent/name: the inode and entry, then the
  // ACLs it inherits.
  Result<std::vector<Op>> NewInodeOps(uint64_t parent, const std::string& name, uint64_t ino, uint32_t mode,
                                      uint64_t rdev, const Caller& caller, const std::string& symlink_target);
  Result<Position> Commit(std::vector<Op> ops, const ChunkWrites& chunks = {}, uint64_t* promised = nullptr);
  Result<Position> Commit(Op op, const ChunkWrites& chunks = {}, uint64_t* promised = nullptr);
  // setxattr of system.posix_acl_access (see SetXattr).
  Status SetAccessAcl(uint64_t ino, std::string_view value, uint32_t flags, const Caller& caller);
  struct stat ToStat(uint64_t ino, const InodeRecord& rec) const;
  std::mutex& InodeLock(uint64_t ino) { return inode_locks_[ino % inode_locks_.size()]; }
  // Whether a write must go to blocks (the file may have extents) rather
  // than inline data.
  static bool HasBlocks(const InodeRecord& rec);
  // Zeroes [offset, offset+length) (whole blocks become holes) and sets the
  // size to new_size. REQUIRES(InodeLock(ino)).
  Status ZeroRangeLocked(uint64_t ino, const InodeRecord& rec, uint64_t offset, uint64_t length, uint64_t new_size);
  // fallocate's promise that writes into [offset, end) will not run out of
  // quota: holes there become zero-filled blocks (IsZeroFill: still holes to
  // SEEK_DATA) and a short block is padded, so the range is charged now.
  // end is at most new_size, the file's size afterwards.
  Status ReserveRangeLocked(uint64_t ino, const InodeRecord& rec, uint64_t offset, uint64_t end, uint64_t new_size);
  Result<std::optional<ExtentRecord>> LoadExtent(uint64_t ino, uint64_t block) const;  // nullopt: a hole
  Result<std::string> ReadBlock(uint64_t ino, uint64_t block) const;  // "" for a hole
  // A block's bytes (ext.End() of them), of which only [lo, hi) are sure to
  // be filled: the base chunk is read only when patches do not cover that range.
  Result<std::string> AssembleBlock(const ExtentRecord& ext, uint64_t lo, uint64_t hi) const;
  // Blocks written in whole pages: block index -> page index -> 4 KiB.
  using PageWrites = std::map<uint64_t, std::map<uint32_t, std::string>>;
  // A full block staged ahead of its commit (StageAhead).
  struct StagedBlock {
    ChunkId id;
    uint32_t size = 0;
    ChunkWrites writes;  // its index entry, for the commit's batch (none if the chunk was known)
    Status status;       // a failed one is staged again by the commit
    uint64_t unsettled = 0;  // of the disk promise it took, what a failure left
  };
  // Stores each block's content as a chunk ("" = hole) and each page write
  // as a page patch (or, past kMaxPatches, a rewritten block) and commits
  // them, with the file's new size, as one SetBlocks txn. staged_ahead:
  // blocks of `blocks` whose chunks are logged already.
  Status CommitBlocks(uint64_t ino, uint64_t size, const std::map<uint64_t, std::string>& blocks,
                      const PageWrites& pages = {}, bool for_fsync = false, uint64_t* quota_promised = nullptr,
                      uint64_t* space_promised = nullptr,
                      const std::map<uint64_t, StagedBlock>* staged_ahead = nullptr);
  // Queues ino for purging once nothing holds it and it has no links.
  void MaybePurge(uint64_t ino);
  // Commits every queued purge as one txn; returns how many there were.
  size_t PurgeQueued();

  // Writes to a file in block mode are buffered here per inode and committed
  // as one SetBlocks txn (group commit). Each entry is only touched under
  // its InodeLock; the map's structure under dirty_mu_.
  struct PendingWrite {
    uint64_t size = 0;                       // the file's size with the buffered writes
    bool has_blocks = false;                 // the committed file has extents to merge with
    std::map<uint64_t, std::string> blocks;  // block index -> whole new content
    // Whole-page writes into blocks the file already has: committed as page
    // patches, without reading the block (random small writes).
    PageWrites pages;
    size_t bytes = 0;
    uint64_t quota_promised = 0;  // Volume::ReserveQuota's for the commit
    uint64_t space_promised = 0;  // SpaceGuard::Promise's, until StageChunks settles it
    int64_t last_write_ns = 0;    // FlushSettled's: when the last write came
    bool ended_on_page = false;   // and whether it ended on a page boundary
    int timer_skips = 0;          // ticks FlushSettled has let it wait
    // Full blocks past the file's committed end (a file being written out)
    // are staged ahead: hashed, compressed and logged on the store's
    // background threads while the buffer fills, so that the commit, which
    // holds the inode lock, has little left to do.
    uint64_t stage_from = 0;    // first block staged ahead when full
    std::set<uint64_t> handed;  // blocks handed to a job; their content must not change
    std::mutex staged_mu;
    std::condition_variable staged_cv;
    std::map<uint64_t, StagedBlock> staged;  // GUARDED_BY(staged_mu): finished jobs
    int staging = 0;                         // GUARDED_BY(staged_mu): running jobs
  };
  // Buffers a write (commit_now: and commits it at once). REQUIRES(InodeLock(ino))
  Result<size_t> WriteLocked(uint64_t ino, uint64_t offset, std::string_view data, bool commit_now);
  // The quota the commit of pending may need more once [offset, end) is written into it.
  static bool KeptAsPages(const PendingWrite& pending, uint64_t lo, uint64_t hi);
  static uint64_t PromiseFor(const PendingWrite& pending, uint64_t offset, uint64_t end);
  // Hands a full block of pending to a background job. REQUIRES(InodeLock)
  void StageAhead(PendingWrite* pending, uint64_t block, std::string_view content);
  static void WaitStaged(PendingWrite* pending);          // until no job of pending runs
  static void Unstage(PendingWrite* pending, uint64_t block);  // before block's content changes
  PendingWrite* FindPending(uint64_t ino);
  Status FlushLocked(uint64_t ino, bool for_fsync = false);  // REQUIRES(InodeLock(ino))
  void DropPending(uint64_t ino);    // REQUIRES(InodeLock(ino))
  // FlushAll and FlushSettled; settle_ns 0 flushes every buffer.
  Status FlushBuffers(int64_t settle_ns);

  Store* store_;
  Volume* vol_;
  std::array<std::mutex, 32> inode_locks_;
  std::mutex dirty_mu_;
  std::map<uint64_t, std::unique_ptr<PendingWrite>> dirty_;  // GUARDED_BY(dirty_mu_)
  std::atomic<size_t> buffered_bytes_{0};
  std::unordered_map<uint64_t, Status> release_errors_;  // GUARDED_BY(dirty_mu_): for the next fsync
  std::mutex purge_mu_;
  std::vector<uint64_t> purge_queue_;  // GUARDED_BY(purge_mu_)
  std::mutex lookups_mu_;
  std::unordered_map<uint64_t, uint64_t> lookups_;  // GUARDED_BY(lookups_mu_)
};

}  // namespace aspfs
