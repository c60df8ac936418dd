#include "journal/apply.h"

#include <algorithm>

namespace aspfs {
namespace {

constexpr uint32_t kSetUidBit = 04000;
constexpr uint32_t kSetGidBit = 02000;
constexpr uint32_t kGroupExec = 00010;

class Applier {
 public:
  Applier(VolumeId vol, const Txn& txn, StateDelta* delta) : vol_(vol), now_(txn.time_ns), delta_(delta) {}

  Status Run(const Txn& txn) {
    auto usage = LoadUsage();
    if (!usage.ok()) return usage.status();
    usage_ = *usage;
    const UsageRecord before = usage_;
    for (const Op& op : txn.ops) {
      ASPFS_RETURN_IF_ERROR(std::visit([this](const auto& o) { return Do(o); }, op));
    }
    ASPFS_RETURN_IF_ERROR(CheckQuota(before));
    return delta_->Put(key::Usage(vol_), usage_.Encode());
  }

 private:
  // ---- ops ----

  Status Do(const op::InitVolume& o) {
    auto existing = delta_->Get(key::Inode(vol_, kRootInode));
    if (!existing.ok()) return existing.status();
    if (*existing) return Error(Code::kExists, "volume already initialized");
    InodeRecord root;
    root.mode = kTypeDir | (o.mode & 07777);
    root.uid = o.uid;
    root.gid = o.gid;
    root.nlink = 2;
    root.atime_ns = root.mtime_ns = root.ctime_ns = now_;
    root.parent = kRootInode.value;
    usage_.inodes += 1;
    usage_.next_ino = std::max<uint64_t>(usage_.next_ino, 2);
    ASPFS_RETURN_IF_ERROR(StoreInode(kRootInode.value, root));
    return delta_->Put(key::Quota(vol_), QuotaRecord{o.quota_bytes, o.quota_inodes}.Encode());
  }

  Status Do(const op::SetQuota& o) {
    return delta_->Put(key::Quota(vol_), QuotaRecord{o.bytes, o.inodes}.Encode());
  }

  Status Do(const op::Mknod& o) {
    // No name: an O_TMPFILE file, made in parent (for its setgid and ACLs)
    // but not entered there; it waits at nlink 0 as an orphan until linked.
    const bool unnamed = o.name.empty();
    if (!unnamed) ASPFS_RETURN_IF_ERROR(ValidateName(o.name));
    auto parent = LoadDir(o.parent);
    if (!parent.ok()) return parent.status();
    if (!unnamed) {
      auto existing = delta_->Get(key::Dirent(vol_, InodeId{o.parent}, o.name));
      if (!existing.ok()) return existing.status();
      if (*existing) return Error(Code::kExists, "entry exists");
    }
    uint32_t type = o.mode & kTypeMask;
    if (unnamed && type != kTypeRegular) return Error(Code::kInvalid, "only a regular file may be made without a name");
    if (type != kTypeDir && type != kTypeRegular && type != kTypeSymlink && type != kTypeFifo &&
        type != kTypeChar && type != kTypeBlock && type != kTypeSocket) {
      return Error(Code::kInvalid, "bad file type");
    }
    if (o.ino <= kRootInode.value) return Error(Code::kInvalid, "bad inode number");
    auto taken = delta_->Get(key::Inode(vol_, InodeId{o.ino}));
    if (!taken.ok()) return taken.status();
    if (*taken) return Error(Code::kExists, "inode number in use");

    InodeRecord rec;
    rec.mode = o.mode;
    rec.uid = o.uid;
    rec.gid = o.gid;
    // BSD group semantics of a setgid directory, as ext4.
    if (parent->mode & kSetGidBit) {
      rec.gid = parent->gid;
      if (type == kTypeDir) rec.mode |= kSetGidBit;
    }
    rec.nlink = type == kTypeDir ? 2 : 1;
    rec.rdev = (type == kTypeChar || type == kTypeBlock) ? o.rdev : 0;
    rec.atime_ns = rec.mtime_ns = rec.ctime_ns = now_;
    if (type == kTypeDir) rec.parent = o.parent;
    if (type == kTypeSymlink) {
      if (o.symlink_target.empty()) return Error(Code::kNotFound, "empty symlink target");
      if (o.symlink_target.size() >= 4096) return Error(Code::kNameTooLong, "symlink target too long");
      rec.inline_data = o.symlink_target;
      rec.size = o.symlink_target.size();
    }
    usage_.inodes += 1;
    usage_.next_ino = std::max(usage_.next_ino, o.ino + 1);
    if (unnamed) {
      rec.nlink = 0;
      ASPFS_RETURN_IF_ERROR(delta_->PutAbsent(key::Orphan(vol_, InodeId{o.ino}), ""));
      return StoreInode(o.ino, rec);
    }
    ASPFS_RETURN_IF_ERROR(StoreInode(o.ino, rec));
    return AddEntry(o.parent, &*parent, o.name, o.ino, type);
  }

  Status Do(const op::Link& o) {
    ASPFS_RETURN_IF_ERROR(ValidateName(o.new_name));
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    if (IsDir(rec->mode)) return Error(Code::kPermission, "hard link to a directory");
    if (rec->nlink >= kLinkMax) return Error(Code::kTooManyLinks, "too many links");
    auto parent = LoadDir(o.new_parent);
    if (!parent.ok()) return parent.status();
    auto existing = delta_->Get(key::Dirent(vol_, InodeId{o.new_parent}, o.new_name));
    if (!existing.ok()) return existing.status();
    if (*existing) return Error(Code::kExists, "entry exists");
    // An inode at nlink 0 comes back from the orphans: the kernel lets only
    // an O_TMPFILE file (opened without O_EXCL) be linked from there.
    if (rec->nlink == 0) ASPFS_RETURN_IF_ERROR(delta_->Delete(key::Orphan(vol_, InodeId{o.ino})));
    rec->nlink += 1;
    rec->ctime_ns = now_;
    ASPFS_RETURN_IF_ERROR(StoreInode(o.ino, *rec));
    return AddEntry(o.new_parent, &*parent, o.new_name, o.ino, rec->mode & kTypeMask);
  }

  Status Do(const op::Unlink& o) {
    auto parent = LoadDir(o.parent);
    if (!parent.ok()) return parent.status();
    auto entry = LoadEntry(o.parent, o.name);
    if (!entry.ok()) return entry.status();
    auto target = LoadInode(entry->ino);
    if (!target.ok()) return target.status();
    if (o.directory) {
      if (!IsDir(target->mode)) return Error(Code::kNotDir, "not a directory");
      if (target->entries != 0) return Error(Code::kNotEmpty, "directory not empty");
    } else if (IsDir(target->mode)) {
      return Error(Code::kIsDir, "is a directory");
    }
    ASPFS_RETURN_IF_ERROR(RemoveEntry(o.parent, &*parent, o.name, *entry));
    ASPFS_RETURN_IF_ERROR(StoreInode(o.parent, *parent));
    return DropLink(entry->ino, &*target);
  }

  Status Do(const op::Rename& o) {
    if (o.flags & ~(op::kRenameNoReplace | op::kRenameExchange)) return Error(Code::kInvalid, "bad rename flags");
    if ((o.flags & op::kRenameNoReplace) && (o.flags & op::kRenameExchange)) {
      return Error(Code::kInvalid, "RENAME_NOREPLACE with RENAME_EXCHANGE");
    }
    ASPFS_RETURN_IF_ERROR(ValidateName(o.new_name));
    {
      auto p = LoadDir(o.parent);
      if (!p.ok()) return p.status();
      auto np = LoadDir(o.new_parent);
      if (!np.ok()) return np.status();
    }
    auto src = LoadEntry(o.parent, o.name);
    if (!src.ok()) return src.status();
    auto dst_raw = delta_->Get(key::Dirent(vol_, InodeId{o.new_parent}, o.new_name));
    if (!dst_raw.ok()) return dst_raw.status();
    std::optional<DirentRecord> dst;
    if (*dst_raw) {
      auto d = DirentRecord::Decode(**dst_raw);
      if (!d.ok()) return d.status();
      dst = *d;
    }
    if ((o.flags & op::kRenameNoReplace) && dst) return Error(Code::kExists, "target exists");
    if ((o.flags & op::kRenameExchange) && !dst) return Error(Code::kNotFound, "target does not exist");
    if (dst && dst->ino == src->ino) return Status::Ok();  // POSIX: same file, nothing to do

    const bool src_dir = src->type == kTypeDir;
    const bool dst_dir = dst && dst->type == kTypeDir;
    if (src_dir && o.parent != o.new_parent) ASPFS_RETURN_IF_ERROR(CheckNotAncestor(src->ino, o.new_parent));
    if ((o.flags & op::kRenameExchange) && dst_dir && o.parent != o.new_parent) {
      ASPFS_RETURN_IF_ERROR(CheckNotAncestor(dst->ino, o.parent));
    }

    if (o.flags & op::kRenameExchange) {
      DirentRecord a = *src, b = *dst;
      std::swap(a.ino, b.ino);
      std::swap(a.type, b.type);
      ASPFS_RETURN_IF_ERROR(delta_->Put(key::Dirent(vol_, InodeId{o.parent}, o.name), a.Encode()));
      ASPFS_RETURN_IF_ERROR(delta_->Put(key::Dirent(vol_, InodeId{o.new_parent}, o.new_name), b.Encode()));
      if (o.parent != o.new_parent) {
        int src_moves = src_dir ? 1 : 0, dst_moves = dst_dir ? 1 : 0;
        ASPFS_RETURN_IF_ERROR(AdjustDir(o.parent, dst_moves - src_moves));
        ASPFS_RETURN_IF_ERROR(AdjustDir(o.new_parent, src_moves - dst_moves));
        if (src_dir) ASPFS_RETURN_IF_ERROR(SetParent(src->ino, o.new_parent));
        if (dst_dir) ASPFS_RETURN_IF_ERROR(SetParent(dst->ino, o.parent));
      } else {
        ASPFS_RETURN_IF_ERROR(AdjustDir(o.parent, 0));
      }
      ASPFS_RETURN_IF_ERROR(TouchCtime(src->ino));
      return TouchCtime(dst->ino);
    }

    if (dst) {
      auto victim = LoadInode(dst->ino);
      if (!victim.ok()) return victim.status();
      if (src_dir && !dst_dir) return Error(Code::kNotDir, "target is not a directory");
      if (!src_dir && dst_dir) return Error(Code::kIsDir, "target is a directory");
      if (dst_dir && victim->entries != 0) return Error(Code::kNotEmpty, "target directory not empty");
      auto np = LoadDir(o.new_parent);
      if (!np.ok()) return np.status();
      ASPFS_RETURN_IF_ERROR(RemoveEntry(o.new_parent, &*np, o.new_name, *dst));
      ASPFS_RETURN_IF_ERROR(StoreInode(o.new_parent, *np));
      ASPFS_RETURN_IF_ERROR(DropLink(dst->ino, &*victim));
    }
    {
      auto p = LoadDir(o.parent);
      if (!p.ok()) return p.status();
      ASPFS_RETURN_IF_ERROR(RemoveEntry(o.parent, &*p, o.name, *src));
      ASPFS_RETURN_IF_ERROR(StoreInode(o.parent, *p));
    }
    {
      auto np = LoadDir(o.new_parent);
      if (!np.ok()) return np.status();
      ASPFS_RETURN_IF_ERROR(AddEntry(o.new_parent, &*np, o.new_name, src->ino, src->type));
    }
    if (src_dir && o.parent != o.new_parent) ASPFS_RETURN_IF_ERROR(SetParent(src->ino, o.new_parent));
    return TouchCtime(src->ino);
  }

  Status Do(const op::SetAttr& o) {
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    if (o.mask & op::kSetSize) {
      if (IsDir(rec->mode)) return Error(Code::kIsDir, "is a directory");
      if (!IsRegular(rec->mode)) return Error(Code::kInvalid, "not a regular file");
      ASPFS_RETURN_IF_ERROR(Truncate(o.ino, &*rec, o.size));
    }
    if (o.mask & op::kSetMode) rec->mode = (rec->mode & kTypeMask) | (o.mode & 07777);
    if (o.mask & (op::kSetUid | op::kSetGid)) {
      if (o.mask & op::kSetUid) rec->uid = o.uid;
      if (o.mask & op::kSetGid) rec->gid = o.gid;
      // chown(2) clears set-user-ID, and set-group-ID when group-executable.
      if (!(o.mask & op::kSetMode) && !IsDir(rec->mode)) {
        rec->mode &= ~kSetUidBit;
        if (rec->mode & kGroupExec) rec->mode &= ~kSetGidBit;
      }
    }
    if (o.mask & op::kSetAtime) rec->atime_ns = o.atime_ns;
    if (o.mask & op::kSetMtime) rec->mtime_ns = o.mtime_ns;
    rec->ctime_ns = (o.mask & op::kSetCtime) ? o.ctime_ns : now_;
    return StoreInode(o.ino, *rec);
  }

  Status Do(const op::WriteInline& o) {
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    if (!IsRegular(rec->mode)) return Error(Code::kInvalid, "not a regular file");
    if (o.offset + o.data.size() > kInlineMax) return Error(Code::kInvalid, "inline write beyond inline limit");
    bool has_extents = false;
    if (rec->flags & kInodeMayHaveBlocks) {
      ASPFS_RETURN_IF_ERROR(ForEachExtent(o.ino, 0, [&](uint64_t, const ExtentRecord&) {
        has_extents = true;
        return false;
      }));
    }
    if (has_extents) return Error(Code::kInvalid, "inline write to a file with blocks");
    std::string& data = rec->inline_data;
    uint64_t old_charge = ChargedBytes(data.size());
    if (data.size() < o.offset + o.data.size()) data.resize(o.offset + o.data.size(), '\0');
    data.replace(o.offset, o.data.size(), o.data);
    Charge(&*rec, ChargedBytes(data.size()) - old_charge);
    rec->size = std::max<uint64_t>(rec->size, o.offset + o.data.size());
    rec->mtime_ns = rec->ctime_ns = now_;
    return StoreInode(o.ino, *rec);
  }

  Status Do(const op::SetBlocks& o) {
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    if (!IsRegular(rec->mode)) return Error(Code::kInvalid, "not a regular file");
    if (o.size > kMaxFileSize) return Error(Code::kTooBig, "file too large");
    // Shrinking is Truncate's, which also drops the blocks past the end.
    if (o.size < rec->size) return Error(Code::kInvalid, "blocks op below the file's size");
    if (!rec->inline_data.empty()) {
      Uncharge(&*rec, ChargedBytes(rec->inline_data.size()));
      rec->inline_data.clear();
    }
    for (const op::BlockRef& b : o.blocks) {
      if (b.index >= kMaxFileSize / kBlockSize) return Error(Code::kTooBig, "block beyond maximum file size");
      std::string k = key::Extent(vol_, InodeId{o.ino}, b.index);
      auto old = delta_->Get(k);
      if (!old.ok()) return old.status();
      ExtentRecord ext;
      if (*old) {
        auto decoded = ExtentRecord::Decode(**old);
        if (!decoded.ok()) return decoded.status();
        ext = std::move(*decoded);
        Uncharge(&*rec, ChargedBytes(ext.End()));
      }
      if (!b.pages.empty()) {
        if (!b.chunk.IsZero() || b.length != 0) return Error(Code::kInvalid, "page patch with a block chunk");
        ASPFS_RETURN_IF_ERROR(MergePatches(b.pages, &ext.patches));
      } else if (b.chunk.IsZero()) {
        ASPFS_RETURN_IF_ERROR(delta_->Delete(k));
        continue;
      } else {
        if (b.length == 0 || b.length > kBlockSize) return Error(Code::kInvalid, "bad block length");
        ext = ExtentRecord{b.chunk, b.length, {}};
      }
      if (b.index * kBlockSize + ext.End() > o.size) return Error(Code::kInvalid, "block past the file's size");
      ASPFS_RETURN_IF_ERROR(delta_->Put(k, ext.Encode()));
      rec->flags |= kInodeMayHaveBlocks;
      Charge(&*rec, ChargedBytes(ext.End()));
    }
    rec->size = o.size;
    if (o.touch_mtime) rec->mtime_ns = rec->ctime_ns = now_;
    return StoreInode(o.ino, *rec);
  }

  Status Do(const op::SetXattr& o) {
    if (o.name.empty()) return Error(Code::kInvalid, "empty attribute name");
    if (o.name.size() > kXattrNameMax) return Error(Code::kRange, "attribute name too long");
    if (o.value.size() > kXattrValueMax) return Error(Code::kValueTooBig, "attribute value too large");
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    std::string k = key::Xattr(vol_, InodeId{o.ino}, o.name);
    auto old = delta_->Get(k);
    if (!old.ok()) return old.status();
    if ((o.flags & op::kXattrCreate) && *old) return Error(Code::kExists, "attribute exists");
    if ((o.flags & op::kXattrReplace) && !*old) return Error(Code::kNoData, "no such attribute");
    if (*old && **old == o.value) return Status::Ok();  // as ext4: the same value changes nothing, not even ctime
    if (*old) UnchargeUsage(XattrCharge(o.name, **old));
    usage_.bytes += XattrCharge(o.name, o.value);
    ASPFS_RETURN_IF_ERROR(delta_->Put(k, o.value));
    rec->flags |= kInodeMayHaveXattrs;
    rec->ctime_ns = now_;
    return StoreInode(o.ino, *rec);
  }

  Status Do(const op::RemoveXattr& o) {
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    std::string k = key::Xattr(vol_, InodeId{o.ino}, o.name);
    auto old = delta_->Get(k);
    if (!old.ok()) return old.status();
    if (!*old) return Error(Code::kNoData, "no such attribute");
    UnchargeUsage(XattrCharge(o.name, **old));
    ASPFS_RETURN_IF_ERROR(delta_->Delete(k));
    rec->ctime_ns = now_;
    return StoreInode(o.ino, *rec);
  }

  Status Do(const op::Purge& o) {
    auto rec = LoadInode(o.ino);
    if (!rec.ok()) return rec.status();
    if (rec->nlink != 0) return Error(Code::kBusy, "purge of a linked inode");
    std::vector<std::string> doomed;
    auto collect = [&](std::string_view k, std::string_view) {
      doomed.emplace_back(k);
      return true;
    };
    if (rec->flags & kInodeMayHaveBlocks) {
      std::string prefix = key::ExtentPrefix(vol_, InodeId{o.ino});
      ASPFS_RETURN_IF_ERROR(delta_->Scan(prefix, key::PrefixEnd(prefix), collect));
    }
    if (rec->flags & kInodeMayHaveXattrs) {
      std::string prefix = key::XattrPrefix(vol_, InodeId{o.ino});
      ASPFS_RETURN_IF_ERROR(delta_->Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view v) {
        UnchargeUsage(XattrCharge(k.substr(prefix.size()), v));
        return collect(k, v);
      }));
    }
    for (const std::string& k : doomed) ASPFS_RETURN_IF_ERROR(delta_->Delete(k));
    UnchargeUsage(rec->alloc_bytes);
    usage_.inodes -= std::min<uint64_t>(usage_.inodes, 1);
    ASPFS_RETURN_IF_ERROR(delta_->Delete(key::Orphan(vol_, InodeId{o.ino})));
    return delta_->Delete(key::Inode(vol_, InodeId{o.ino}));
  }

  // ---- helpers ----

  Result<UsageRecord> LoadUsage() {
    auto raw = delta_->Get(key::Usage(vol_));
    if (!raw.ok()) return raw.status();
    if (!*raw) return UsageRecord{};
    return UsageRecord::Decode(**raw);
  }

  Status CheckQuota(const UsageRecord& before) {
    auto raw = delta_->Get(key::Quota(vol_));
    if (!raw.ok()) return raw.status();
    if (!*raw) return Status::Ok();
    auto quota = QuotaRecord::Decode(**raw);
    if (!quota.ok()) return quota.status();
    if (quota->bytes && usage_.bytes > before.bytes && usage_.bytes > quota->bytes) {
      return Error(Code::kQuota, "volume byte quota exceeded");
    }
    if (quota->inodes && usage_.inodes > before.inodes && usage_.inodes > quota->inodes) {
      return Error(Code::kQuota, "volume inode quota exceeded");
    }
    return Status::Ok();
  }

  Result<InodeRecord> LoadInode(uint64_t ino) {
    auto raw = delta_->Get(key::Inode(vol_, InodeId{ino}));
    if (!raw.ok()) return raw.status();
    if (!*raw) return Error(Code::kNotFound, "no inode " + std::to_string(ino));
    return InodeRecord::Decode(**raw);
  }

  Result<InodeRecord> LoadDir(uint64_t ino) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec;
    if (!IsDir(rec->mode)) return Error(Code::kNotDir, "not a directory");
    if (rec->nlink == 0) return Error(Code::kNotFound, "directory was removed");
    return rec;
  }

  Result<DirentRecord> LoadEntry(uint64_t parent, const std::string& name) {
    if (name.size() > kNameMax) return Error(Code::kNameTooLong, "name longer than 255 bytes");
    auto raw = delta_->Get(key::Dirent(vol_, InodeId{parent}, name));
    if (!raw.ok()) return raw.status();
    if (!*raw) return Error(Code::kNotFound, "no entry " + name);
    return DirentRecord::Decode(**raw);
  }

  Status StoreInode(uint64_t ino, const InodeRecord& rec) {
    return delta_->Put(key::Inode(vol_, InodeId{ino}), rec.Encode());
  }

  // Adds name -> ino to parent (whose record the caller holds) and stores parent.
  Status AddEntry(uint64_t parent_ino, InodeRecord* parent, const std::string& name, uint64_t ino, uint32_t type) {
    ASPFS_RETURN_IF_ERROR(delta_->Put(key::Dirent(vol_, InodeId{parent_ino}, name), DirentRecord{ino, type}.Encode()));
    parent->entries += 1;
    if (type == kTypeDir) parent->nlink += 1;
    parent->mtime_ns = parent->ctime_ns = now_;
    return StoreInode(parent_ino, *parent);
  }

  // Removes name from parent (a directory entry also drops the parent's link
  // count, as its ".." is gone); the caller stores parent.
  Status RemoveEntry(uint64_t parent_ino, InodeRecord* parent, const std::string& name, const DirentRecord& entry) {
    ASPFS_RETURN_IF_ERROR(delta_->Delete(key::Dirent(vol_, InodeId{parent_ino}, name)));
    parent->entries -= 1;
    if (entry.type == kTypeDir) parent->nlink -= 1;
    parent->mtime_ns = parent->ctime_ns = now_;
    return Status::Ok();
  }

  // One name of target is gone; at zero links it waits as an orphan until
  // nothing holds it open (op::Purge).
  Status DropLink(uint64_t ino, InodeRecord* target) {
    const bool was_linked = target->nlink > 0;
    if (IsDir(target->mode)) {
      target->nlink = 0;
    } else if (target->nlink > 0) {
      target->nlink -= 1;
    }
    target->ctime_ns = now_;
    if (target->nlink == 0) {
      // A linked inode has no orphan record (Link refuses nlink 0, Purge
      // deletes the record with the inode): skip the read of a certain miss.
      std::string orphan = key::Orphan(vol_, InodeId{ino});
      ASPFS_RETURN_IF_ERROR(was_linked ? delta_->PutAbsent(orphan, "") : delta_->Put(orphan, ""));
    }
    return StoreInode(ino, *target);
  }

  Status AdjustDir(uint64_t ino, int nlink_change) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec.status();
    rec->nlink += nlink_change;
    rec->mtime_ns = rec->ctime_ns = now_;
    return StoreInode(ino, *rec);
  }

  Status SetParent(uint64_t ino, uint64_t parent) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec.status();
    rec->parent = parent;
    return StoreInode(ino, *rec);
  }

  Status TouchCtime(uint64_t ino) {
    auto rec = LoadInode(ino);
    if (!rec.ok()) return rec.status();
    rec->ctime_ns = now_;
    return StoreInode(ino, *rec);
  }

  // A directory must not move below itself.
  Status CheckNotAncestor(uint64_t dir, uint64_t start) {
    uint64_t cur = start;
    for (int depth = 0; depth < 100000; ++depth) {
      if (cur == dir) return Error(Code::kInvalid, "cannot move a directory into itself");
      if (cur == kRootInode.value) return Status::Ok();
      auto rec = LoadInode(cur);
      if (!rec.ok()) return rec.status();
      cur = rec->parent;
    }
    return Error(Code::kCorrupt, "directory parent chain does not end");
  }

  // Puts each new patch into the block's sorted patch list, replacing the
  // patch of the same page.
  static Status MergePatches(const std::vector<PagePatch>& pages, std::vector<PagePatch>* patches) {
    for (const PagePatch& p : pages) {
      if (!p.Valid()) {
        return Error(Code::kInvalid, "bad page patch");
      }
      auto at = std::lower_bound(patches->begin(), patches->end(), p.page,
                                 [](const PagePatch& a, uint32_t page) { return a.page < page; });
      if (at != patches->end() && at->page == p.page) {
        *at = p;
      } else {
        patches->insert(at, p);
      }
    }
    return Status::Ok();
  }

  using ExtentFn = std::function<bool(uint64_t block, const ExtentRecord&)>;
  Status ForEachExtent(uint64_t ino, uint64_t first_block, const ExtentFn& fn) {
    std::string prefix = key::ExtentPrefix(vol_, InodeId{ino});
    Status inner;
    ASPFS_RETURN_IF_ERROR(delta_->Scan(key::Extent(vol_, InodeId{ino}, first_block), key::PrefixEnd(prefix),
                                       [&](std::string_view k, std::string_view v) {
                                         auto ext = ExtentRecord::Decode(v);
                                         if (!ext.ok()) {
                                           inner = ext.status();
                                           return false;
                                         }
                                         return fn(key::DecodeBigEndian(k.substr(prefix.size())), *ext);
                                       }));
    return inner;
  }

  Status Truncate(uint64_t ino, InodeRecord* rec, uint64_t size) {
    if (size > kMaxFileSize) return Error(Code::kTooBig, "file too large");
    if (size == rec->size) return Status::Ok();
    if (size < rec->inline_data.size()) {
      uint64_t old_charge = ChargedBytes(rec->inline_data.size());
      rec->inline_data.resize(size);
      Uncharge(rec, old_charge - ChargedBytes(size));
    }
    if (size < rec->size && (rec->flags & kInodeMayHaveBlocks)) {
      // Whole blocks past the end go; the block holding the end keeps only
      // its bytes below the end, so the tail reads as zeros if regrown.
      uint64_t first = size / kBlockSize;
      std::vector<std::pair<uint64_t, ExtentRecord>> affected;
      ASPFS_RETURN_IF_ERROR(ForEachExtent(ino, first, [&](uint64_t block, const ExtentRecord& ext) {
        affected.emplace_back(block, ext);
        return true;
      }));
      for (auto& [block, ext] : affected) {
        std::string k = key::Extent(vol_, InodeId{ino}, block);
        Uncharge(rec, ChargedBytes(ext.End()));
        uint64_t keep = block * kBlockSize < size ? size - block * kBlockSize : 0;
        if (keep == 0) {
          ASPFS_RETURN_IF_ERROR(delta_->Delete(k));
          continue;
        }
        ext.length = static_cast<uint32_t>(std::min<uint64_t>(ext.length, keep));
        std::vector<PagePatch> kept;
        for (PagePatch p : ext.patches) {
          uint64_t page_start = p.page * kPageSize;
          if (page_start >= keep) continue;
          p.length = static_cast<uint32_t>(std::min<uint64_t>(p.length, keep - page_start));
          kept.push_back(p);
        }
        ext.patches = std::move(kept);
        if (ext.chunk.IsZero() && ext.patches.empty()) {
          ASPFS_RETURN_IF_ERROR(delta_->Delete(k));
          continue;
        }
        Charge(rec, ChargedBytes(ext.End()));
        ASPFS_RETURN_IF_ERROR(delta_->Put(k, ext.Encode()));
      }
    }
    rec->size = size;
    rec->mtime_ns = rec->ctime_ns = now_;
    return Status::Ok();
  }

  void Charge(InodeRecord* rec, uint64_t bytes) {
    rec->alloc_bytes += bytes;
    usage_.bytes += bytes;
  }
  void Uncharge(InodeRecord* rec, uint64_t bytes) {
    bytes = std::min(bytes, rec->alloc_bytes);
    rec->alloc_bytes -= bytes;
    UnchargeUsage(bytes);
  }
  void UnchargeUsage(uint64_t bytes) { usage_.bytes -= std::min(bytes, usage_.bytes); }

  VolumeId vol_;
  int64_t now_;
  StateDelta* delta_;
  UsageRecord usage_;
};

}  // namespace

Status Apply(VolumeId vol, const Txn& txn, StateDelta* delta) {
  if (vol.value == 0) return Error(Code::kInvalid, "volume id 0 is reserved");
  if (txn.ops.empty()) return Error(Code::kInvalid, "empty transaction");
  return Applier(vol, txn, delta).Run(txn);
}

}  // namespace aspfs
