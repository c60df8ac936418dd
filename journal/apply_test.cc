#include "journal/apply.h"

#include <gtest/gtest.h>

#include "journal/codec.h"

namespace aspfs {
namespace {

constexpr VolumeId kVol{7};

// Applies txns to an in-memory state the way the store does and checks, after
// every txn, that the incremental checksum equals one computed from scratch.
class ApplyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Do(op::InitVolume{0755, 0, 0, 0, 0}).ok()); }

  Status Do(Op op) { return DoAll({std::move(op)}); }

  Status DoAll(std::vector<Op> ops) {
    Txn txn;
    txn.txid = ++txid_;
    txn.time_ns = ++clock_;
    txn.ops = std::move(ops);
    StateDelta delta(&state_, checksum_);
    Status s = Apply(kVol, txn, &delta);
    if (!s.ok()) {
      --txid_;
      return s;
    }
    delta.ApplyTo(&state_);
    checksum_ = delta.checksum();
    EXPECT_EQ(checksum_, FullChecksum());
    return s;
  }

  uint64_t FullChecksum() const {
    uint64_t sum = 0;
    for (const auto& [k, v] : state_.entries()) {
      if (key::IsStateKey(k)) sum ^= EntryHash(k, v);
    }
    return sum;
  }

  uint64_t Create(uint64_t parent, const std::string& name, uint32_t mode = kTypeRegular | 0644) {
    uint64_t ino = next_ino_++;
    Status s = Do(op::Mknod{parent, name, ino, mode, 1000, 1000, 0, ""});
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ino;
  }
  uint64_t Mkdir(uint64_t parent, const std::string& name) { return Create(parent, name, kTypeDir | 0755); }

  InodeRecord Inode(uint64_t ino) {
    auto raw = state_.Get(key::Inode(kVol, InodeId{ino}));
    EXPECT_TRUE(raw.ok() && *raw) << "no inode " << ino;
    if (!raw.ok() || !*raw) return {};
    return *InodeRecord::Decode(**raw);
  }
  bool HasInode(uint64_t ino) { return state_.Get(key::Inode(kVol, InodeId{ino}))->has_value(); }

  std::optional<uint64_t> Lookup(uint64_t parent, const std::string& name) {
    auto raw = state_.Get(key::Dirent(kVol, InodeId{parent}, name));
    if (!*raw) return std::nullopt;
    return DirentRecord::Decode(**raw)->ino;
  }

  UsageRecord Usage() { return *UsageRecord::Decode(**state_.Get(key::Usage(kVol))); }
  bool IsOrphan(uint64_t ino) { return state_.Get(key::Orphan(kVol, InodeId{ino}))->has_value(); }

  std::vector<uint64_t> Blocks(uint64_t ino) {
    std::vector<uint64_t> out;
    std::string prefix = key::ExtentPrefix(kVol, InodeId{ino});
    state_.Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view) {
      out.push_back(key::DecodeBigEndian(k.substr(prefix.size())));
      return true;
    }).IgnoreError();
    return out;
  }

  MemState state_;
  uint64_t checksum_ = 0;
  uint64_t txid_ = 0;
  int64_t clock_ = 1000;
  uint64_t next_ino_ = 2;
};

TEST_F(ApplyTest, InitCreatesRootOnce) {
  EXPECT_TRUE(IsDir(Inode(1).mode));
  EXPECT_EQ(2u, Inode(1).nlink);
  EXPECT_EQ(Code::kExists, Do(op::InitVolume{0755, 0, 0, 0, 0}).code());
}

TEST_F(ApplyTest, MknodCreatesEntryAndCountsLinks) {
  uint64_t dir = Mkdir(1, "d");
  uint64_t file = Create(dir, "f");
  EXPECT_EQ(file, Lookup(dir, "f"));
  EXPECT_EQ(3u, Inode(1).nlink);  // ".", "..", and d's ".."
  EXPECT_EQ(1u, Inode(1).entries);
  EXPECT_EQ(1u, Inode(file).nlink);
  EXPECT_EQ(clock_, Inode(dir).mtime_ns);
  EXPECT_EQ(3u, Usage().inodes);
}

TEST_F(ApplyTest, MknodRejectsBadNamesAndDuplicates) {
  Create(1, "f");
  EXPECT_EQ(Code::kExists, Do(op::Mknod{1, "f", 99, kTypeRegular | 0644, 0, 0, 0, ""}).code());
  EXPECT_EQ(Code::kNameTooLong, Do(op::Mknod{1, std::string(256, 'a'), 99, kTypeRegular, 0, 0, 0, ""}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::Mknod{1, "a/b", 99, kTypeRegular, 0, 0, 0, ""}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::Mknod{1, "..", 99, kTypeRegular, 0, 0, 0, ""}).code());
  uint64_t file = *Lookup(1, "f");
  EXPECT_EQ(Code::kNotDir, Do(op::Mknod{file, "x", 99, kTypeRegular, 0, 0, 0, ""}).code());
  EXPECT_TRUE(Do(op::Mknod{1, std::string(255, 'a'), 99, kTypeRegular, 0, 0, 0, ""}).ok());
}

TEST_F(ApplyTest, MknodDevicesFifosSymlinks) {
  uint64_t dev = Create(1, "null", kTypeChar | 0666);
  EXPECT_TRUE(Do(op::Mknod{1, "blk", 50, kTypeBlock | 0600, 0, 0, 0x0801, ""}).ok());
  EXPECT_EQ(0x0801u, Inode(50).rdev);
  EXPECT_EQ(kTypeChar, Inode(dev).mode & kTypeMask);
  EXPECT_TRUE(Do(op::Mknod{1, "link", 51, kTypeSymlink | 0777, 0, 0, 0, "target/path"}).ok());
  EXPECT_EQ("target/path", Inode(51).inline_data);
  EXPECT_EQ(11u, Inode(51).size);
}

TEST_F(ApplyTest, SetgidDirectoryPassesGroupDown) {
  uint64_t dir = Mkdir(1, "shared");
  ASSERT_TRUE(Do(op::SetAttr{dir, op::kSetMode | op::kSetGid, 02775, 0, 500}).ok());
  uint64_t sub = Mkdir(dir, "sub");
  uint64_t file = Create(dir, "f");
  EXPECT_EQ(500u, Inode(file).gid);
  EXPECT_EQ(500u, Inode(sub).gid);
  EXPECT_TRUE(Inode(sub).mode & 02000);
  EXPECT_FALSE(Inode(file).mode & 02000);
}

TEST_F(ApplyTest, LinkAndUnlinkKeepCounts) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::Link{f, 1, "g"}).ok());
  EXPECT_EQ(2u, Inode(f).nlink);
  EXPECT_EQ(Code::kExists, Do(op::Link{f, 1, "g"}).code());
  uint64_t d = Mkdir(1, "d");
  EXPECT_EQ(Code::kPermission, Do(op::Link{d, 1, "d2"}).code());
  ASSERT_TRUE(Do(op::Unlink{1, "f", false}).ok());
  EXPECT_EQ(1u, Inode(f).nlink);
  EXPECT_FALSE(IsOrphan(f));
  ASSERT_TRUE(Do(op::Unlink{1, "g", false}).ok());
  EXPECT_EQ(0u, Inode(f).nlink);
  EXPECT_TRUE(IsOrphan(f));
  EXPECT_EQ(Code::kNotFound, Do(op::Unlink{1, "g", false}).code());
  ASSERT_TRUE(Do(op::Purge{f}).ok());
  EXPECT_EQ(Code::kNotFound, Do(op::Link{f, 1, "again"}).code());
}

// O_TMPFILE: a file made without a name waits as an orphan at nlink 0, and
// leaves the orphans when a link names it (the kernel allows that only for
// such files).
TEST_F(ApplyTest, UnnamedFileIsAnOrphanUntilLinked) {
  uint64_t d = Mkdir(1, "d");
  const InodeRecord dir_before = Inode(d);
  const uint64_t inodes_before = Usage().inodes;
  ASSERT_TRUE(Do(op::Mknod{d, "", 50, kTypeRegular | 0600, 7, 7, 0, ""}).ok());
  EXPECT_EQ(0u, Inode(50).nlink);
  EXPECT_TRUE(IsOrphan(50));
  EXPECT_EQ(inodes_before + 1, Usage().inodes);
  EXPECT_EQ(dir_before.entries, Inode(d).entries);  // nothing entered in d, nothing changed
  EXPECT_EQ(dir_before.mtime_ns, Inode(d).mtime_ns);
  EXPECT_EQ(Code::kInvalid, Do(op::Mknod{d, "", 51, kTypeDir | 0700, 7, 7, 0, ""}).code());
  EXPECT_EQ(Code::kExists, Do(op::Mknod{d, "", 50, kTypeRegular | 0600, 7, 7, 0, ""}).code());

  ASSERT_TRUE(Do(op::Link{50, 1, "named"}).ok());
  EXPECT_EQ(1u, Inode(50).nlink);
  EXPECT_FALSE(IsOrphan(50));
  EXPECT_EQ(50u, Lookup(1, "named"));

  // Never linked: purged like any unlinked file.
  ASSERT_TRUE(Do(op::Mknod{d, "", 52, kTypeRegular | 0600, 7, 7, 0, ""}).ok());
  ASSERT_TRUE(Do(op::Purge{52}).ok());
  EXPECT_FALSE(HasInode(52));
  EXPECT_FALSE(IsOrphan(52));
  EXPECT_EQ(inodes_before + 1, Usage().inodes);
}

TEST_F(ApplyTest, UnlinkAndRmdirCheckTypes) {
  uint64_t d = Mkdir(1, "d");
  Create(d, "f");
  Create(1, "file");
  EXPECT_EQ(Code::kIsDir, Do(op::Unlink{1, "d", false}).code());
  EXPECT_EQ(Code::kNotDir, Do(op::Unlink{1, "file", true}).code());
  EXPECT_EQ(Code::kNotEmpty, Do(op::Unlink{1, "d", true}).code());
  ASSERT_TRUE(Do(op::Unlink{d, "f", false}).ok());
  ASSERT_TRUE(Do(op::Unlink{1, "d", true}).ok());
  EXPECT_EQ(2u, Inode(1).nlink);
  EXPECT_EQ(0u, Inode(d).nlink);
  EXPECT_EQ(Code::kNotFound, Do(op::Mknod{d, "x", 90, kTypeRegular, 0, 0, 0, ""}).code());
}

TEST_F(ApplyTest, PurgeRemovesOrphanAndReleasesQuota) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetBlocks{f, 100000, {{0, ChunkId{1, 2}, 65536, {}}, {1, ChunkId{3, 4}, 34464, {}}}}).ok());
  ASSERT_TRUE(Do(op::SetXattr{f, "user.a", "b", 0}).ok());
  EXPECT_EQ(Code::kBusy, Do(op::Purge{f}).code());
  ASSERT_TRUE(Do(op::Unlink{1, "f", false}).ok());
  uint64_t bytes_before = Usage().bytes;
  EXPECT_EQ(65536u + 36864u + 7u, bytes_before);  // blocks and "user.a" = "b"
  ASSERT_TRUE(Do(op::Purge{f}).ok());
  EXPECT_FALSE(HasInode(f));
  EXPECT_FALSE(IsOrphan(f));
  EXPECT_TRUE(Blocks(f).empty());
  EXPECT_EQ(0u, Usage().bytes);
  EXPECT_EQ(1u, Usage().inodes);
}

TEST_F(ApplyTest, RenameMovesAndReplaces) {
  uint64_t a = Mkdir(1, "a");
  uint64_t b = Mkdir(1, "b");
  uint64_t f = Create(a, "f");
  uint64_t g = Create(b, "g");
  ASSERT_TRUE(Do(op::Rename{a, "f", b, "g", 0}).ok());
  EXPECT_EQ(f, Lookup(b, "g"));
  EXPECT_FALSE(Lookup(a, "f"));
  EXPECT_EQ(0u, Inode(g).nlink);
  EXPECT_TRUE(IsOrphan(g));
  EXPECT_EQ(0u, Inode(a).entries);
  EXPECT_EQ(1u, Inode(b).entries);
}

TEST_F(ApplyTest, RenameDirectoryAcrossParentsFixesLinkCounts) {
  uint64_t a = Mkdir(1, "a");
  uint64_t b = Mkdir(1, "b");
  uint64_t sub = Mkdir(a, "sub");
  ASSERT_TRUE(Do(op::Rename{a, "sub", b, "sub", 0}).ok());
  EXPECT_EQ(2u, Inode(a).nlink);
  EXPECT_EQ(3u, Inode(b).nlink);
  EXPECT_EQ(b, Inode(sub).parent);
  EXPECT_EQ(Code::kInvalid, Do(op::Rename{1, "b", sub, "loop", 0}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::Rename{1, "b", b, "self", 0}).code());
}

TEST_F(ApplyTest, RenameOverDirectoryRules) {
  uint64_t a = Mkdir(1, "a");
  uint64_t full = Mkdir(1, "full");
  Create(full, "x");
  Create(1, "file");
  EXPECT_EQ(Code::kNotEmpty, Do(op::Rename{1, "a", 1, "full", 0}).code());
  EXPECT_EQ(Code::kNotDir, Do(op::Rename{1, "a", 1, "file", 0}).code());
  EXPECT_EQ(Code::kIsDir, Do(op::Rename{1, "file", 1, "a", 0}).code());
  uint64_t empty = Mkdir(1, "empty");
  ASSERT_TRUE(Do(op::Rename{1, "a", 1, "empty", 0}).ok());
  EXPECT_EQ(a, Lookup(1, "empty"));
  EXPECT_EQ(0u, Inode(empty).nlink);
  EXPECT_EQ(4u, Inode(1).nlink);  // full, empty(=a), and . ..
}

TEST_F(ApplyTest, RenameSameFileIsNoop) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::Link{f, 1, "g"}).ok());
  ASSERT_TRUE(Do(op::Rename{1, "f", 1, "g", 0}).ok());
  EXPECT_EQ(f, Lookup(1, "f"));
  EXPECT_EQ(f, Lookup(1, "g"));
  EXPECT_EQ(2u, Inode(f).nlink);
}

TEST_F(ApplyTest, RenameNoReplaceAndExchange) {
  uint64_t f = Create(1, "f");
  uint64_t d = Mkdir(1, "d");
  uint64_t other = Mkdir(1, "other");
  EXPECT_EQ(Code::kExists, Do(op::Rename{1, "f", 1, "d", op::kRenameNoReplace}).code());
  EXPECT_EQ(Code::kNotFound, Do(op::Rename{1, "f", 1, "none", op::kRenameExchange}).code());
  ASSERT_TRUE(Do(op::Rename{1, "f", other, "x", op::kRenameNoReplace}).ok());
  ASSERT_TRUE(Do(op::Rename{other, "x", 1, "d", op::kRenameExchange}).ok());
  EXPECT_EQ(f, Lookup(1, "d"));
  EXPECT_EQ(d, Lookup(other, "x"));
  EXPECT_EQ(other, Inode(d).parent);
  EXPECT_EQ(3u, Inode(other).nlink);
  EXPECT_EQ(3u, Inode(1).nlink);  // only "other" is a subdirectory now
}

TEST_F(ApplyTest, SetAttrModeOwnerTimes) {
  uint64_t f = Create(1, "f", kTypeRegular | 06755);
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetUid, 0, 42}).ok());
  EXPECT_EQ(42u, Inode(f).uid);
  EXPECT_EQ(kTypeRegular | 0755u, Inode(f).mode);  // chown cleared setuid and setgid
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetMode, 01644}).ok());
  EXPECT_EQ(kTypeRegular | 01644u, Inode(f).mode);
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetAtime | op::kSetMtime, 0, 0, 0, 0, 111, 222}).ok());
  EXPECT_EQ(111, Inode(f).atime_ns);
  EXPECT_EQ(222, Inode(f).mtime_ns);
  EXPECT_EQ(clock_, Inode(f).ctime_ns);
}

TEST_F(ApplyTest, TruncateClipsBlocksAndInline) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::WriteInline{f, 0, "hello world"}).ok());
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetSize, 0, 0, 0, 5}).ok());
  EXPECT_EQ("hello", Inode(f).inline_data);
  EXPECT_EQ(5u, Inode(f).size);
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetSize, 0, 0, 0, 1 << 20}).ok());
  EXPECT_EQ("hello", Inode(f).inline_data);
  EXPECT_EQ(1u << 20, Inode(f).size);

  uint64_t g = Create(1, "g");
  ASSERT_TRUE(Do(op::SetBlocks{g, 3 * kBlockSize, {{0, {1, 1}, 65536, {}}, {1, {1, 2}, 65536, {}}, {2, {1, 3}, 65536, {}}}}).ok());
  ASSERT_TRUE(Do(op::SetAttr{g, op::kSetSize, 0, 0, 0, kBlockSize + 100}).ok());
  EXPECT_EQ((std::vector<uint64_t>{0, 1}), Blocks(g));
  auto ext = ExtentRecord::Decode(**state_.Get(key::Extent(kVol, InodeId{g}, 1)));
  EXPECT_EQ(100u, ext->length);
  EXPECT_EQ(65536u + 4096u, Inode(g).alloc_bytes);
  EXPECT_EQ(Code::kIsDir, Do(op::SetAttr{1, op::kSetSize, 0, 0, 0, 0}).code());
  EXPECT_EQ(Code::kTooBig, Do(op::SetAttr{g, op::kSetSize, 0, 0, 0, kMaxFileSize + 1}).code());
}

TEST_F(ApplyTest, PagePatchesMergeIntoTheBlockAndTruncateTrimsThem) {
  auto extent = [&](uint64_t ino, uint64_t block) {
    auto raw = state_.Get(key::Extent(kVol, InodeId{ino}, block));
    EXPECT_TRUE(raw.ok() && *raw) << "no extent " << block;
    return *ExtentRecord::Decode(**raw);
  };
  auto patch = [](uint32_t page, uint64_t id) { return PagePatch{page, 4096, ChunkId{9, id}}; };
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetBlocks{f, kBlockSize, {{0, {1, 1}, 65536, {}}}}).ok());
  ASSERT_TRUE(Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {patch(5, 1), patch(2, 2)}}}}).ok());
  ExtentRecord ext = extent(f, 0);
  EXPECT_EQ((ChunkId{1, 1}), ext.chunk);  // the base stays
  EXPECT_EQ((std::vector<PagePatch>{patch(2, 2), patch(5, 1)}), ext.patches);  // sorted by page
  // A later patch of the same page replaces it.
  ASSERT_TRUE(Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {patch(5, 3), patch(15, 4)}}}}).ok());
  EXPECT_EQ((std::vector<PagePatch>{patch(2, 2), patch(5, 3), patch(15, 4)}), extent(f, 0).patches);
  EXPECT_EQ(65536u, Inode(f).alloc_bytes);

  // Truncating inside page 5 keeps its first 100 bytes, drops page 15 and
  // the base's tail: regrowing the file must not bring old bytes back.
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetSize, 0, 0, 0, 5 * 4096 + 100}).ok());
  ext = extent(f, 0);
  EXPECT_EQ(5u * 4096 + 100, ext.length);
  EXPECT_EQ((std::vector<PagePatch>{patch(2, 2), PagePatch{5, 100, ChunkId{9, 3}}}), ext.patches);
  EXPECT_EQ(5u * 4096 + 100, ext.End());
  ASSERT_TRUE(Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {patch(10, 5)}}}}).ok());
  ext = extent(f, 0);
  EXPECT_EQ(5u * 4096 + 100, ext.length);
  EXPECT_EQ(100u, ext.patches[1].length);
  EXPECT_EQ(11u * 4096, ext.End());

  // A block of patches alone (over zeros) goes when a truncate leaves none.
  ASSERT_TRUE(Do(op::SetBlocks{f, 2 * kBlockSize, {{1, {}, 0, {patch(3, 6)}}}}).ok());
  EXPECT_TRUE(extent(f, 1).chunk.IsZero());
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetSize, 0, 0, 0, kBlockSize + 3 * 4096}).ok());
  EXPECT_EQ((std::vector<uint64_t>{0}), Blocks(f));

  // A whole-block write drops the patches.
  ASSERT_TRUE(Do(op::SetBlocks{f, kBlockSize + 3 * 4096, {{0, {1, 7}, 65536, {}}}}).ok());
  EXPECT_TRUE(extent(f, 0).patches.empty());

  // Never below the file's size (that is a truncate), never past it.
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, kBlockSize, {{0, {1, 1}, 100, {}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, 2 * kBlockSize, {{2, {1, 1}, 100, {}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, kBlockSize, {{0, {1, 1}, 100, {patch(1, 1)}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {patch(16, 1)}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {PagePatch{1, 0, {9, 1}}}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, kBlockSize, {{0, {}, 0, {PagePatch{1, 4096, {}}}}}}).code());
}

TEST(ExtentRecordTest, RoundTripsAndRejectsMalformedRecords) {
  ExtentRecord plain{ChunkId{1, 2}, 65536, {}};
  EXPECT_EQ(20u, plain.Encode().size());  // as stored before page patches existed
  ExtentRecord patched{ChunkId{}, 0, {{0, 4096, {3, 4}}, {15, 10, {5, 6}}}};
  for (const ExtentRecord& rec : {plain, patched}) {
    auto back = ExtentRecord::Decode(rec.Encode());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(rec.chunk, back->chunk);
    EXPECT_EQ(rec.length, back->length);
    EXPECT_EQ(rec.patches, back->patches);
  }
  EXPECT_EQ(15u * 4096 + 10, patched.End());
  std::vector<ExtentRecord> bad = {
      {ChunkId{}, 0, {}},                                   // nothing at all
      {ChunkId{}, 5, {{0, 4096, {3, 4}}}},                  // a length without a base
      {ChunkId{1, 2}, 0, {}},                               // a base without a length
      {ChunkId{1, 2}, 65537, {}},                           // longer than a block
      {ChunkId{1, 2}, 10, {{3, 4096, {3, 4}}, {3, 4096, {5, 6}}}},  // one page twice
      {ChunkId{1, 2}, 10, {{4, 4096, {3, 4}}, {3, 4096, {5, 6}}}},  // out of order
      {ChunkId{1, 2}, 10, {{16, 4096, {3, 4}}}},            // beyond the block
      {ChunkId{1, 2}, 10, {{1, 4097, {3, 4}}}},             // longer than a page
      {ChunkId{1, 2}, 10, {{1, 4096, {}}}},                 // no chunk
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(Code::kCorrupt, ExtentRecord::Decode(bad[i].Encode()).status().code()) << i;
  }
  EXPECT_EQ(Code::kCorrupt, ExtentRecord::Decode(plain.Encode() + "x").status().code());
}

TEST_F(ApplyTest, WriteInlineOnlyForSmallUnblockedFiles) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::WriteInline{f, 10, "abc"}).ok());
  EXPECT_EQ(std::string(10, '\0') + "abc", Inode(f).inline_data);
  EXPECT_EQ(Code::kInvalid, Do(op::WriteInline{f, kInlineMax, "x"}).code());
  ASSERT_TRUE(Do(op::SetBlocks{f, 70000, {{1, {5, 5}, 4464, {}}}}).ok());
  EXPECT_EQ("", Inode(f).inline_data);
  EXPECT_EQ(Code::kInvalid, Do(op::WriteInline{f, 0, "x"}).code());
}

TEST_F(ApplyTest, SetBlocksHolesAndLimits) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetBlocks{f, 5ull << 32, {{(5ull << 32) / kBlockSize - 1, {7, 7}, 65536, {}}}}).ok());
  EXPECT_EQ(5ull << 32, Inode(f).size);
  EXPECT_EQ(65536u, Inode(f).alloc_bytes);
  ASSERT_TRUE(Do(op::SetBlocks{f, 5ull << 32, {{(5ull << 32) / kBlockSize - 1, ChunkId{}, 0, {}}}}).ok());
  EXPECT_TRUE(Blocks(f).empty());
  EXPECT_EQ(0u, Inode(f).alloc_bytes);
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{f, 10, {{0, {7, 7}, 0, {}}}}).code());
  EXPECT_EQ(Code::kInvalid, Do(op::SetBlocks{1, 10, {{0, {7, 7}, 10, {}}}}).code());
}

TEST_F(ApplyTest, XattrFlags) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetXattr{f, "user.x", "1", op::kXattrCreate}).ok());
  EXPECT_EQ(Code::kExists, Do(op::SetXattr{f, "user.x", "2", op::kXattrCreate}).code());
  EXPECT_EQ(Code::kNoData, Do(op::SetXattr{f, "user.y", "2", op::kXattrReplace}).code());
  ASSERT_TRUE(Do(op::SetXattr{f, "user.x", "3", op::kXattrReplace}).ok());
  EXPECT_EQ("3", **state_.Get(key::Xattr(kVol, InodeId{f}, "user.x")));
  EXPECT_EQ(Code::kRange, Do(op::SetXattr{f, std::string(256, 'n'), "", 0}).code());
  EXPECT_EQ(Code::kValueTooBig, Do(op::SetXattr{f, "user.big", std::string(kXattrValueMax + 1, 'v'), 0}).code());
  ASSERT_TRUE(Do(op::RemoveXattr{f, "user.x"}).ok());
  EXPECT_EQ(Code::kNoData, Do(op::RemoveXattr{f, "user.x"}).code());
}

// Xattrs hold data too: their names and values count against the byte
// quota, or a file's xattrs would be room past it.
TEST_F(ApplyTest, XattrsAreChargedToTheByteQuota) {
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetXattr{f, "user.v", std::string(1000, 'v'), 0}).ok());
  EXPECT_EQ(1006u, Usage().bytes);
  ASSERT_TRUE(Do(op::SetXattr{f, "user.v", std::string(10, 'w'), 0}).ok());
  EXPECT_EQ(16u, Usage().bytes);
  ASSERT_TRUE(Do(op::SetXattr{f, "user.w", "", 0}).ok());
  EXPECT_EQ(22u, Usage().bytes);
  ASSERT_TRUE(Do(op::RemoveXattr{f, "user.v"}).ok());
  EXPECT_EQ(6u, Usage().bytes);
  ASSERT_TRUE(Do(op::SetQuota{100000, 0}).ok());
  const std::string big(kXattrValueMax, 'b');
  ASSERT_TRUE(Do(op::SetXattr{f, "user.a", big, 0}).ok());
  EXPECT_EQ(Code::kQuota, Do(op::SetXattr{f, "user.b", big, 0}).code());
  EXPECT_EQ(6u + 6u + kXattrValueMax, Usage().bytes);
  ASSERT_TRUE(Do(op::SetXattr{f, "user.a", "small", 0}).ok());  // shrinking is never refused
  ASSERT_TRUE(Do(op::Unlink{1, "f", false}).ok());
  ASSERT_TRUE(Do(op::Purge{f}).ok());
  EXPECT_EQ(0u, Usage().bytes);
}

TEST_F(ApplyTest, QuotaRefusesGrowthButAllowsShrink) {
  ASSERT_TRUE(Do(op::SetQuota{128 * 1024, 4}).ok());
  uint64_t f = Create(1, "f");
  ASSERT_TRUE(Do(op::SetBlocks{f, 2 * kBlockSize, {{0, {1, 1}, 65536, {}}, {1, {1, 2}, 65536, {}}}}).ok());
  EXPECT_EQ(Code::kQuota, Do(op::SetBlocks{f, 3 * kBlockSize, {{2, {1, 3}, 65536, {}}}}).code());
  EXPECT_EQ(Code::kQuota, Do(op::WriteInline{Create(1, "g"), 0, "x"}).code());
  ASSERT_TRUE(Do(op::SetAttr{f, op::kSetSize, 0, 0, 0, 0}).ok());
  EXPECT_EQ(0u, Usage().bytes);
  Create(1, "h");
  EXPECT_EQ(4u, Usage().inodes);
  EXPECT_EQ(Code::kQuota, Do(op::Mknod{1, "i", 100, kTypeRegular, 0, 0, 0, ""}).code());
}

TEST_F(ApplyTest, FailedOpDiscardsWholeTxn) {
  uint64_t before = checksum_;
  EXPECT_FALSE(DoAll({op::Mknod{1, "a", 10, kTypeRegular, 0, 0, 0, ""}, op::Unlink{1, "missing", false}}).ok());
  EXPECT_EQ(before, checksum_);
  EXPECT_FALSE(Lookup(1, "a"));
}

TEST_F(ApplyTest, SameTxnsGiveSameStateAndChecksum) {
  // Invariant 2: replaying the encoded journal on a fresh state reproduces
  // every post-apply checksum.
  std::vector<Txn> log;
  MemState a;
  uint64_t sum = 0;
  auto run = [&](Op op) {
    Txn txn;
    txn.txid = log.size() + 1;
    txn.time_ns = 5000 + txn.txid;
    txn.ops = {std::move(op)};
    StateDelta delta(&a, sum);
    ASSERT_TRUE(Apply(kVol, txn, &delta).ok());
    delta.ApplyTo(&a);
    sum = txn.checksum = delta.checksum();
    log.push_back(txn);
  };
  run(op::InitVolume{0755, 0, 0, 0, 0});
  run(op::Mknod{1, "d", 2, kTypeDir | 0755, 0, 0, 0, ""});
  run(op::Mknod{2, "f", 3, kTypeRegular | 0644, 0, 0, 0, ""});
  run(op::WriteInline{3, 0, "data"});
  run(op::Rename{2, "f", 1, "g", 0});
  run(op::SetXattr{3, "user.k", "v", 0});
  MemState b;
  uint64_t replay_sum = 0;
  for (const Txn& original : log) {
    Txn txn = *DecodeTxn(EncodeTxn(original));
    StateDelta delta(&b, replay_sum);
    ASSERT_TRUE(Apply(kVol, txn, &delta).ok());
    delta.ApplyTo(&b);
    replay_sum = delta.checksum();
    EXPECT_EQ(txn.checksum, replay_sum);
  }
  EXPECT_EQ(a.entries(), b.entries());
}

}  // namespace
}  // namespace aspfs
