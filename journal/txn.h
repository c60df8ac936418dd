// A transaction: one atomic change of a volume's state. Every value apply()
// needs (inode numbers, timestamps, owners, chunk ids) is chosen by the
// primary and carried here, so that apply() is deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "journal/format.h"

namespace aspfs {
namespace op {

// Creates the root directory; the first txn of every volume.
struct InitVolume {
  uint32_t mode = 0;  // permission bits of the root
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t quota_bytes = 0;
  uint64_t quota_inodes = 0;
};

struct SetQuota {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
};

// Creates a file, directory, device, fifo, socket or symlink.
struct Mknod {
  uint64_t parent = 0;
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits, umask already applied
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t rdev = 0;
  std::string symlink_target;
};

struct Link {
  uint64_t ino = 0;
  uint64_t new_parent = 0;
  std::string new_name;
};

// unlink(2) or rmdir(2).
struct Unlink {
  uint64_t parent = 0;
  std::string name;
  bool directory = false;
};

inline constexpr uint32_t kRenameNoReplace = 1;
inline constexpr uint32_t kRenameExchange = 2;

struct Rename {
  uint64_t parent = 0;
  std::string name;
  uint64_t new_parent = 0;
  std::string new_name;
  uint32_t flags = 0;
};

inline constexpr uint32_t kSetMode = 1 << 0;
inline constexpr uint32_t kSetUid = 1 << 1;
inline constexpr uint32_t kSetGid = 1 << 2;
inline constexpr uint32_t kSetSize = 1 << 3;
inline constexpr uint32_t kSetAtime = 1 << 4;
inline constexpr uint32_t kSetMtime = 1 << 5;
inline constexpr uint32_t kSetCtime = 1 << 6;

struct SetAttr {
  uint64_t ino = 0;
  uint32_t mask = 0;
  uint32_t mode = 0;  // permission bits only
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
};

// Writes into a file whose data lives inline in its inode.
struct WriteInline {
  uint64_t ino = 0;
  uint64_t offset = 0;
  std::string data;
};

// Either replaces a whole block (chunk and length; the zero chunk makes it a
// hole) or, with pages set and no chunk, patches those pages of the block as
// it stands (ExtentRecord).
struct BlockRef {
  uint64_t index = 0;
  ChunkId chunk;
  uint32_t length = 0;
  std::vector<PagePatch> pages;
};

// Points blocks of a file at chunks (the chunk bodies are already stored);
// drops the file's inline data, which the primary has folded into block 0.
struct SetBlocks {
  uint64_t ino = 0;
  uint64_t size = 0;  // the file's size afterwards
  std::vector<BlockRef> blocks;
  bool touch_mtime = true;
};

inline constexpr uint32_t kXattrCreate = 1;
inline constexpr uint32_t kXattrReplace = 2;

struct SetXattr {
  uint64_t ino = 0;
  std::string name;
  std::string value;
  uint32_t flags = 0;
};

struct RemoveXattr {
  uint64_t ino = 0;
  std::string name;
};

// Deletes an inode whose link count is zero once nothing holds it open.
struct Purge {
  uint64_t ino = 0;
};

}  // namespace op

using Op = std::variant<op::InitVolume, op::SetQuota, op::Mknod, op::Link, op::Unlink, op::Rename, op::SetAttr,
                        op::WriteInline, op::SetBlocks, op::SetXattr, op::RemoveXattr, op::Purge>;

struct Txn {
  uint64_t epoch = 0;
  uint64_t txid = 0;
  int64_t time_ns = 0;     // the txn's clock: ctime/mtime of what it changes
  uint64_t checksum = 0;   // state checksum after apply (invariant 2)
  std::vector<Op> ops;
};

const char* OpName(const Op& op);
// One readable line per op, for `aspfs journal dump`.
std::string DescribeOp(const Op& op);

}  // namespace aspfs
