// The node store's key and record layout (docs/store-format.md). One header
// for every on-disk format: key builders, record encodings and their
// Validate()/Decode() checks. Integers in keys are big-endian so that
// RocksDB's byte order is numeric order; integers in values little-endian.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "journal/status.h"

namespace aspfs {

// Small value types for concepts that cross APIs.
struct VolumeId {
  uint64_t value = 0;
  auto operator<=>(const VolumeId&) const = default;
};
struct InodeId {
  uint64_t value = 0;
  auto operator<=>(const InodeId&) const = default;
};

// The position of a volume: txid is dense per volume; epoch grows with each
// change of primary; checksum is the state checksum after txid.
struct Position {
  uint64_t epoch = 0;
  uint64_t txid = 0;
  uint64_t checksum = 0;
  bool operator==(const Position&) const = default;
  std::string ToString() const;  // "e<epoch>:t<txid>:<checksum hex>"
};

inline constexpr InodeId kRootInode{1};
inline constexpr uint64_t kBlockSize = 64 * 1024;    // extent granularity
inline constexpr uint64_t kInlineMax = 4096;         // small-file data in the inode
inline constexpr uint64_t kPageSize = 4096;          // granularity of page patches
inline constexpr uint32_t kPagesPerBlock = kBlockSize / kPageSize;
inline constexpr size_t kNameMax = 255;
inline constexpr size_t kXattrNameMax = 255;
inline constexpr size_t kXattrValueMax = 64 * 1024;
inline constexpr uint32_t kLinkMax = 65000;
inline constexpr uint64_t kMaxFileSize = 1ull << 44;  // 16 TiB, as ext4

// Key tags. Within a volume (prefix: 8-byte volume id), every key but
// kTagPosition is volume state and enters the state checksum.
inline constexpr char kTagInode = 'I';      // ino -> InodeRecord
inline constexpr char kTagDirent = 'D';     // parent, cookie, name -> DirentRecord
inline constexpr char kTagExtent = 'E';     // ino, block -> ExtentRecord
inline constexpr char kTagXattr = 'X';      // ino, name -> value
inline constexpr char kTagOrphan = 'O';     // ino -> "" (nlink 0, not purged)
inline constexpr char kTagUsage = 'U';      // -> UsageRecord
inline constexpr char kTagQuota = 'Q';      // -> QuotaRecord
inline constexpr char kTagPosition = 'P';   // -> Position (not state)

// Node-level keys live under volume id 0.
inline constexpr VolumeId kNodeVolume{0};
inline constexpr char kTagVolumeName = 'N';  // name -> volume id
inline constexpr char kTagVolumeMeta = 'V';  // id -> VolumeMeta
inline constexpr char kTagNextVolume = 'S';  // -> next volume id
inline constexpr char kTagFormat = 'F';      // -> the store's format version

// Version of the store's layout (keys and records) and of what apply()
// makes of a txn (a journal replays to the same state only under the rules
// it was written with); a store of another version is refused at open.
// 3: xattrs are charged to the byte quota.
inline constexpr uint32_t kStoreFormat = 3;

// A directory entry's readdir cookie: from its name's hash, as on ext4, so
// that an entry keeps its place while the directory changes and needs no
// record of its own. 3 and up: 1 and 2 are "." and "..".
uint64_t DirentCookie(std::string_view name);

namespace key {
std::string VolumePrefix(VolumeId vol);
std::string VolumeEnd(VolumeId vol);  // first key after the volume
std::string Inode(VolumeId vol, InodeId ino);
// A directory's entries sort by cookie, then name (names with the same
// cookie, a hash collision, sit side by side).
std::string Dirent(VolumeId vol, InodeId parent, std::string_view name);
std::string DirentPrefix(VolumeId vol, InodeId parent);
// The first key of the entries whose cookie is cookie or more.
std::string DirentFrom(VolumeId vol, InodeId parent, uint64_t cookie);
// Splits a key under prefix (DirentPrefix) into cookie and name.
bool SplitDirent(std::string_view key, size_t prefix_size, uint64_t* cookie, std::string_view* name);
std::string Extent(VolumeId vol, InodeId ino, uint64_t block);
std::string ExtentPrefix(VolumeId vol, InodeId ino);
std::string Xattr(VolumeId vol, InodeId ino, std::string_view name);
std::string XattrPrefix(VolumeId vol, InodeId ino);
std::string Orphan(VolumeId vol, InodeId ino);
std::string OrphanPrefix(VolumeId vol);
std::string Usage(VolumeId vol);
std::string Quota(VolumeId vol);
std::string PositionKey(VolumeId vol);
std::string VolumeName(std::string_view name);
std::string VolumeMetaKey(VolumeId vol);
std::string NextVolume();
std::string Format();
std::string Journal(VolumeId vol, uint64_t txid);  // journal column family

// Prefix end for range scans: the smallest key greater than every key with
// the prefix.
std::string PrefixEnd(std::string prefix);
// True for keys that are part of a volume's checksummed state.
bool IsStateKey(std::string_view key);
std::string EncodeBigEndian(uint64_t v);
uint64_t DecodeBigEndian(std::string_view bytes);
}  // namespace key

// File type bits as in st_mode (S_IFMT), kept here so the core does not need
// <sys/stat.h> semantics spread around.
inline constexpr uint32_t kTypeMask = 0170000;
inline constexpr uint32_t kTypeDir = 0040000;
inline constexpr uint32_t kTypeRegular = 0100000;
inline constexpr uint32_t kTypeSymlink = 0120000;
inline constexpr uint32_t kTypeFifo = 0010000;
inline constexpr uint32_t kTypeChar = 0020000;
inline constexpr uint32_t kTypeBlock = 0060000;
inline constexpr uint32_t kTypeSocket = 0140000;
inline bool IsDir(uint32_t mode) { return (mode & kTypeMask) == kTypeDir; }
inline bool IsRegular(uint32_t mode) { return (mode & kTypeMask) == kTypeRegular; }
inline bool IsSymlink(uint32_t mode) { return (mode & kTypeMask) == kTypeSymlink; }

// InodeRecord::flags. Set when the first extent or xattr is written and
// never cleared, so "unset" proves there is none.
inline constexpr uint32_t kInodeMayHaveBlocks = 1;
inline constexpr uint32_t kInodeMayHaveXattrs = 2;

struct InodeRecord {
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t alloc_bytes = 0;   // bytes charged to quota (st_blocks * 512)
  uint64_t parent = 0;        // directories: the containing directory
  uint64_t entries = 0;       // directories: number of entries
  uint32_t flags = 0;         // kInodeMayHave*: lets readers skip scans that would find nothing
  std::string inline_data;    // small files and symlink targets

  std::string Encode() const;
  static Result<InodeRecord> Decode(std::string_view bytes);
};

struct DirentRecord {
  uint64_t ino = 0;
  uint32_t type = 0;  // S_IFMT bits of the target
  std::string Encode() const;
  static Result<DirentRecord> Decode(std::string_view bytes);
};

// A chunk id: xxh3-128 of the chunk's uncompressed bytes.
struct ChunkId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const ChunkId&) const = default;
  bool IsZero() const { return hi == 0 && lo == 0; }
  std::string Bytes() const;  // 16 bytes, big-endian hi then lo
  static ChunkId FromBytes(std::string_view bytes);
  std::string ToHex() const;
};

// One page of a block, rewritten without rewriting the block: a small write
// into a big file stores 4 KiB, not 64 KiB (docs/store-format.md).
struct PagePatch {
  uint32_t page = 0;    // page index within the block
  uint32_t length = 0;  // valid bytes from the chunk (1..kPageSize); the rest of the page reads as zeros
  ChunkId chunk;
  bool operator==(const PagePatch&) const = default;
  bool Valid() const { return page < kPagesPerBlock && length > 0 && length <= kPageSize && !chunk.IsZero(); }
};

// A block's content: the base chunk's first `length` bytes, zeros after, and
// each patch replacing its whole page. The zero chunk id means no base
// (length 0, patches only).
struct ExtentRecord {
  ChunkId chunk;
  uint32_t length = 0;              // valid bytes from the base chunk
  std::vector<PagePatch> patches;   // sorted by page, one per page at most
  // One past the last byte the base or a patch defines.
  uint32_t End() const;
  bool HasPatch(uint32_t page) const;
  std::string Encode() const;
  static Result<ExtentRecord> Decode(std::string_view bytes);
};

struct UsageRecord {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
  uint64_t next_ino = 2;
  std::string Encode() const;
  static Result<UsageRecord> Decode(std::string_view bytes);
};

// 0 means unlimited.
struct QuotaRecord {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
  std::string Encode() const;
  static Result<QuotaRecord> Decode(std::string_view bytes);
};

struct VolumeMeta {
  std::string name;
  int64_t created_ns = 0;
  std::string Encode() const;
  static Result<VolumeMeta> Decode(std::string_view bytes);
};

std::string EncodePosition(const Position& pos);
Result<Position> DecodePosition(std::string_view bytes);

// Charged size of an extent or inline data: whole 4 KiB blocks, as ext4.
inline uint64_t ChargedBytes(uint64_t length) { return (length + 4095) / 4096 * 4096; }

// What an xattr charges to the volume's byte quota: its name and value, so
// that xattrs cannot hold data past the quota. Charged to the volume's
// usage, not to the inode's st_blocks.
inline uint64_t XattrCharge(std::string_view name, std::string_view value) { return name.size() + value.size(); }

// Checks a file or xattr name: non-empty, no '/', no NUL, not "." or "..",
// at most kNameMax bytes.
Status ValidateName(std::string_view name);

}  // namespace aspfs
