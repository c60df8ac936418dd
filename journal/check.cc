#include "journal/check.h"

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace aspfs {
namespace {

// Key layout within a volume (format.h): 8-byte volume id, tag, 8-byte inode.
constexpr size_t kTagAt = 8;
constexpr size_t kIdAt = 9;
constexpr size_t kIdEnd = 17;

// What the records say of one inode: its own record, and what the records
// that refer to it add up to.
struct InodeFacts {
  bool exists = false;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t flags = 0;
  uint64_t size = 0;
  uint64_t alloc_bytes = 0;
  uint64_t parent = 0;
  uint64_t entries = 0;
  uint64_t inline_size = 0;

  uint32_t names = 0;         // entries naming it
  uint64_t named_in = 0;      // the directory holding the last entry of type directory naming it
  uint32_t entry_type = 0;    // S_IFMT bits its entries give
  bool entry_types_differ = false;
  uint64_t listed = 0;        // entries it holds (directories)
  uint64_t listed_dirs = 0;   // of those, directories
  uint64_t extent_charge = 0;
  uint64_t extent_end = 0;    // one past the last byte an extent defines
  bool has_extents = false;
  bool has_xattrs = false;
  bool orphan = false;
};

class Checker {
 public:
  explicit Checker(StateCheck* out) : out_(out) {}

  bool Record(std::string_view k, std::string_view v) {
    if (k.size() < kIdAt) {
      Problem("key of " + std::to_string(k.size()) + " bytes");
      return true;
    }
    switch (k[kTagAt]) {
      case kTagInode: return InodeKey(k, v);
      case kTagDirent: return DirentKey(k, v);
      case kTagExtent: return ExtentKey(k, v);
      case kTagXattr: return XattrKey(k, v);
      case kTagOrphan: return OrphanKey(k, v);
      case kTagUsage: return UsageKey(v);
      case kTagQuota: return QuotaKey(v);
      case kTagPosition: return true;  // not state
      default:
        Problem("key with unknown tag " + std::to_string(static_cast<unsigned char>(k[kTagAt])));
        return true;
    }
  }

  void Finish() {
    uint64_t charged = xattr_charge_, max_ino = 0;
    for (const auto& [ino, f] : facts_) {
      if (!f.exists) {
        Missing(ino, f);
        continue;
      }
      max_ino = std::max(max_ino, ino);
      charged += f.alloc_bytes;
      CheckInode(ino, f);
    }
    auto root = facts_.find(kRootInode.value);
    if (root == facts_.end() || !root->second.exists || !IsDir(root->second.mode)) {
      Problem("no root directory");
    } else {
      CheckDirectoryChains();
    }
    if (!usage_) {
      Problem("no usage record");
    } else {
      if (usage_->inodes != out_->inodes) {
        Problem("usage counts " + std::to_string(usage_->inodes) + " inodes, the volume has " +
                std::to_string(out_->inodes));
      }
      if (usage_->bytes != charged) {
        Problem("usage counts " + std::to_string(usage_->bytes) + " bytes, its inodes and xattrs charge " +
                std::to_string(charged));
      }
      if (usage_->next_ino <= max_ino) {
        Problem("next inode number " + std::to_string(usage_->next_ino) + " is in use");
      }
    }
    auto by_value = [](const ChunkId& a, const ChunkId& b) { return std::tie(a.hi, a.lo) < std::tie(b.hi, b.lo); };
    std::sort(out_->chunks.begin(), out_->chunks.end(), by_value);
    out_->chunks.erase(std::unique(out_->chunks.begin(), out_->chunks.end()), out_->chunks.end());
  }

 private:
  void Problem(std::string what) {
    ++out_->problem_count;
    if (out_->problems.size() < StateCheck::kMaxListed) out_->problems.push_back(std::move(what));
  }
  static std::string Who(uint64_t ino) { return "inode " + std::to_string(ino); }
  static uint64_t Id(std::string_view k) { return key::DecodeBigEndian(k.substr(kIdAt, 8)); }

  bool InodeKey(std::string_view k, std::string_view v) {
    if (k.size() != kIdEnd) {
      Problem("malformed inode key");
      return true;
    }
    uint64_t ino = Id(k);
    auto rec = InodeRecord::Decode(v);
    if (!rec.ok()) {
      Problem(Who(ino) + ": " + rec.status().message());
      return true;
    }
    ++out_->inodes;
    InodeFacts& f = facts_[ino];
    f.exists = true;
    f.mode = rec->mode;
    f.nlink = rec->nlink;
    f.flags = rec->flags;
    f.size = rec->size;
    f.alloc_bytes = rec->alloc_bytes;
    f.parent = rec->parent;
    f.entries = rec->entries;
    f.inline_size = rec->inline_data.size();
    return true;
  }

  bool DirentKey(std::string_view k, std::string_view v) {
    uint64_t cookie = 0;
    std::string_view name;
    if (k.size() < kIdEnd || !key::SplitDirent(k, kIdEnd, &cookie, &name)) {
      Problem("malformed entry key");
      return true;
    }
    uint64_t parent = Id(k);
    std::string where = "entry '" + std::string(name) + "' of " + Who(parent);
    if (!ValidateName(name).ok()) Problem(where + ": invalid name");
    if (cookie != DirentCookie(name)) Problem(where + ": cookie " + std::to_string(cookie) + " is not its name's");
    auto entry = DirentRecord::Decode(v);
    if (!entry.ok()) {
      Problem(where + ": " + entry.status().message());
      return true;
    }
    ++out_->entries;
    InodeFacts& dir = facts_[parent];
    dir.listed += 1;
    if (entry->type == kTypeDir) dir.listed_dirs += 1;
    InodeFacts& target = facts_[entry->ino];
    if (target.names > 0 && target.entry_type != entry->type) target.entry_types_differ = true;
    target.entry_type = entry->type;
    target.names += 1;
    if (entry->type == kTypeDir) target.named_in = parent;
    return true;
  }

  bool ExtentKey(std::string_view k, std::string_view v) {
    if (k.size() != kIdEnd + 8) {
      Problem("malformed extent key");
      return true;
    }
    uint64_t ino = Id(k), block = key::DecodeBigEndian(k.substr(kIdEnd));
    std::string where = "block " + std::to_string(block) + " of " + Who(ino);
    auto ext = ExtentRecord::Decode(v);
    if (!ext.ok()) {
      Problem(where + ": " + ext.status().message());
      return true;
    }
    ++out_->extents;
    if (ext->chunk.IsZero() ? (ext->length != 0 || ext->patches.empty()) : (ext->length == 0 || ext->length > kBlockSize)) {
      Problem(where + ": base chunk and length " + std::to_string(ext->length) + " disagree");
    }
    if (!ext->chunk.IsZero()) out_->chunks.push_back(ext->chunk);
    for (size_t i = 0; i < ext->patches.size(); ++i) {
      const PagePatch& p = ext->patches[i];
      if (!p.Valid() || (i > 0 && ext->patches[i - 1].page >= p.page)) {
        Problem(where + ": bad or unsorted page patch");
        break;
      }
      out_->chunks.push_back(p.chunk);
    }
    InodeFacts& f = facts_[ino];
    f.has_extents = true;
    f.extent_charge += ChargedBytes(ext->End());
    f.extent_end = std::max(f.extent_end, block * kBlockSize + ext->End());
    return true;
  }

  bool XattrKey(std::string_view k, std::string_view v) {
    if (k.size() <= kIdEnd || k.size() > kIdEnd + kXattrNameMax || v.size() > kXattrValueMax) {
      Problem("malformed xattr of " + Who(k.size() >= kIdEnd ? Id(k) : 0));
      return true;
    }
    ++out_->xattrs;
    facts_[Id(k)].has_xattrs = true;
    xattr_charge_ += XattrCharge(k.substr(kIdEnd), v);
    return true;
  }

  bool OrphanKey(std::string_view k, std::string_view v) {
    if (k.size() != kIdEnd || !v.empty()) {
      Problem("malformed orphan record");
      return true;
    }
    ++out_->orphans;
    facts_[Id(k)].orphan = true;
    return true;
  }

  bool UsageKey(std::string_view v) {
    auto usage = UsageRecord::Decode(v);
    if (!usage.ok()) {
      Problem("usage record: " + usage.status().message());
      return true;
    }
    usage_ = *usage;
    return true;
  }

  bool QuotaKey(std::string_view v) {
    if (auto quota = QuotaRecord::Decode(v); !quota.ok()) Problem("quota record: " + quota.status().message());
    return true;
  }

  // Records refer to an inode that has none of its own.
  void Missing(uint64_t ino, const InodeFacts& f) {
    if (f.names) Problem(Who(ino) + " is missing, but " + std::to_string(f.names) + " entries name it");
    if (f.listed) Problem(Who(ino) + " is missing, but holds entries");
    if (f.has_extents) Problem(Who(ino) + " is missing, but has blocks");
    if (f.has_xattrs) Problem(Who(ino) + " is missing, but has xattrs");
    if (f.orphan) Problem(Who(ino) + " is missing, but has an orphan record");
  }

  void CheckInode(uint64_t ino, const InodeFacts& f) {
    const std::string who = Who(ino);
    const uint32_t type = f.mode & kTypeMask;
    if (f.names && (f.entry_types_differ || f.entry_type != type)) Problem(who + ": its entries give another file type");
    if (f.listed && type != kTypeDir) Problem(who + ": not a directory, but holds entries");
    if (f.has_extents && type != kTypeRegular) Problem(who + ": not a regular file, but has blocks");
    if (f.has_extents && !(f.flags & kInodeMayHaveBlocks)) Problem(who + ": has blocks its flags deny");
    if (f.has_xattrs && !(f.flags & kInodeMayHaveXattrs)) Problem(who + ": has xattrs its flags deny");
    if (ino != kRootInode.value && f.orphan != (f.nlink == 0)) {
      Problem(who + (f.orphan ? ": orphan record at nlink " + std::to_string(f.nlink) : ": nlink 0 without an orphan record"));
    }
    if (type != kTypeRegular && f.alloc_bytes != 0) Problem(who + ": charges bytes, but is not a regular file");
    if (type == kTypeDir) {
      CheckDirectory(ino, f);
      return;
    }
    if (f.nlink != f.names) {
      Problem(who + ": nlink " + std::to_string(f.nlink) + ", but " + std::to_string(f.names) + " entries name it");
    }
    if (type == kTypeRegular) {
      if (f.inline_size > f.size) Problem(who + ": inline data past its size");
      if (f.inline_size && f.has_extents) Problem(who + ": both inline data and blocks");
      if (f.extent_end > f.size) {
        Problem(who + ": blocks reach byte " + std::to_string(f.extent_end) + ", past its size " + std::to_string(f.size));
      }
      uint64_t data_charge = ChargedBytes(f.inline_size) + f.extent_charge;
      if (f.alloc_bytes != data_charge) {
        Problem(who + ": charges " + std::to_string(f.alloc_bytes) + " bytes, its data " + std::to_string(data_charge));
      }
    } else if (type == kTypeSymlink && (f.size == 0 || f.inline_size != f.size)) {
      Problem(who + ": symlink of size " + std::to_string(f.size) + " with a target of " +
              std::to_string(f.inline_size) + " bytes");
    }
  }

  void CheckDirectory(uint64_t ino, const InodeFacts& f) {
    const std::string who = ino == kRootInode.value ? "root" : Who(ino);
    if (f.entries != f.listed) {
      Problem(who + ": counts " + std::to_string(f.entries) + " entries, holds " + std::to_string(f.listed));
    }
    if (f.inline_size) Problem(who + ": directory with inline data");
    if (ino == kRootInode.value) {
      if (f.names) Problem("root: named by an entry");
      if (f.parent != ino) Problem("root: parent " + std::to_string(f.parent));
    } else if (f.nlink == 0) {
      if (f.names) Problem(who + ": removed directory still named");
      return;
    } else if (f.names != 1) {
      Problem(who + ": directory with " + std::to_string(f.names) + " names");
    } else if (f.named_in != f.parent) {
      Problem(who + ": parent " + std::to_string(f.parent) + ", but named in " + std::to_string(f.named_in));
    }
    if (f.nlink != 2 + f.listed_dirs) {
      Problem(who + ": nlink " + std::to_string(f.nlink) + ", but 2 + " + std::to_string(f.listed_dirs) +
              " subdirectories");
    }
  }

  // Every linked directory's parent chain ends at the root: no detached
  // loop of directories naming each other.
  void CheckDirectoryChains() {
    std::unordered_map<uint64_t, bool> reaches_root = {{kRootInode.value, true}};
    std::vector<uint64_t> path;
    std::unordered_set<uint64_t> on_path;
    for (const auto& [ino, f] : facts_) {
      if (!f.exists || !IsDir(f.mode) || f.nlink == 0 || reaches_root.count(ino)) continue;
      path.clear();
      on_path.clear();
      bool reaches = false;
      for (uint64_t cur = ino;;) {
        if (auto known = reaches_root.find(cur); known != reaches_root.end()) {
          reaches = known->second;
          break;
        }
        auto it = facts_.find(cur);
        if (it == facts_.end() || !it->second.exists || !IsDir(it->second.mode) || it->second.nlink == 0) break;
        if (!on_path.insert(cur).second) break;  // a loop
        path.push_back(cur);
        cur = it->second.parent;
      }
      for (uint64_t dir : path) {
        reaches_root[dir] = reaches;
        if (!reaches) Problem(Who(dir) + ": directory not reachable from the root");
      }
    }
  }

  StateCheck* out_;
  std::map<uint64_t, InodeFacts> facts_;  // in inode order: a report reads the same each time
  std::optional<UsageRecord> usage_;
  uint64_t xattr_charge_ = 0;  // every xattr's XattrCharge
};

}  // namespace

std::string StateCheck::Summary() const {
  if (ok()) return "consistent";
  std::string s = std::to_string(problem_count) + (problem_count == 1 ? " problem: " : " problems: ");
  for (size_t i = 0; i < problems.size(); ++i) s += (i ? "; " : "") + problems[i];
  if (problem_count > problems.size()) s += " (and " + std::to_string(problem_count - problems.size()) + " more)";
  return s;
}

Result<StateCheck> CheckVolumeState(VolumeId vol, const StateReader& state) {
  StateCheck out;
  Checker checker(&out);
  ASPFS_RETURN_IF_ERROR(state.Scan(key::VolumePrefix(vol), key::VolumeEnd(vol),
                                   [&](std::string_view k, std::string_view v) { return checker.Record(k, v); }));
  checker.Finish();
  return out;
}

}  // namespace aspfs
