#include "aspfs/volume_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "aspfs/posix_acl.h"

namespace aspfs {
namespace {

// Root, with a umask.
Caller Root(uint32_t umask) {
  Caller caller;
  caller.umask = umask;
  return caller;
}

class VolumeFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/aspfs-volfs-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::move(*Store::Open(dir_));
    vol_ = *store_->CreateVolume("v", {});
    fs_ = std::make_unique<VolumeFs>(store_.get(), vol_);
  }
  void TearDown() override {
    fs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  uint64_t Create(const std::string& name) {
    auto st = fs_->Mknod(1, name, 0100644, 0, Caller{});
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st->st_ino;
  }
  int CountOps(const std::string& name) {
    int n = 0;
    store_->ScanJournal(vol_->id(), 1, [&](const Txn& txn) {
      for (const Op& op : txn.ops) n += std::string(OpName(op)) == name;
      return true;
    }).IgnoreError();
    return n;
  }
  // The ops of the volume's last txn, by name.
  std::vector<std::string> LastTxnOps() {
    std::vector<std::string> names;
    store_->ScanJournal(vol_->id(), 1, [&](const Txn& txn) {
      names.clear();
      for (const Op& op : txn.ops) names.push_back(OpName(op));
      return true;
    }).IgnoreError();
    return names;
  }
  // A second volume "q" with these quotas (0: none).
  Volume* CreateQuotaVolume(uint64_t bytes, uint64_t inodes) {
    auto q = store_->CreateVolume("q", {bytes, inodes});
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? *q : nullptr;
  }
  std::string dir_;
  std::unique_ptr<Store> store_;
  Volume* vol_ = nullptr;
  std::unique_ptr<VolumeFs> fs_;
};

TEST_F(VolumeFsTest, BlockWritesAreBufferedAndCommittedTogether) {
  uint64_t ino = Create("f");
  std::string expect(300000, '\0');
  for (int i = 0; i < 100; ++i) {
    uint64_t off = (i * 7919ull) % 290000;
    std::string chunk(4096, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(fs_->Write(ino, off, chunk).ok());
    expect.replace(off, chunk.size(), chunk);
    if (off + chunk.size() > expect.size()) expect.resize(off + chunk.size());
  }
  EXPECT_EQ(0, CountOps("set_blocks"));  // nothing committed yet
  EXPECT_GT(fs_->buffered_bytes(), 0u);
  // A read sees the buffered data where it waits, without committing it.
  auto data = fs_->Read(ino, 0, 1 << 20);
  ASSERT_TRUE(data.ok());
  expect.resize(data->size());
  EXPECT_TRUE(expect == *data);
  EXPECT_EQ(0, CountOps("set_blocks"));
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_EQ(1, CountOps("set_blocks"));
  EXPECT_EQ(0u, fs_->buffered_bytes());
  EXPECT_TRUE(expect == *fs_->Read(ino, 0, 1 << 20));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, ReadsLayBufferedPagesAndGrowthOverTheCommittedFile) {
  uint64_t ino = Create("f");
  std::string expect(3 * kBlockSize + 100, 'c');
  ASSERT_TRUE(fs_->Write(ino, 0, expect).ok());
  ASSERT_TRUE(fs_->Fsync(ino).ok());
  int commits = CountOps("set_blocks");
  // Whole pages into committed blocks (buffered as page patches) and an
  // append past the committed end.
  std::string page(kPageSize, 'p'), tail(5000, 't');
  for (uint64_t off : {uint64_t{kPageSize}, 2 * kBlockSize - kPageSize, 2 * kBlockSize + 3 * kPageSize}) {
    ASSERT_TRUE(fs_->Write(ino, off, page).ok());
    expect.replace(off, kPageSize, page);
  }
  ASSERT_TRUE(fs_->Write(ino, expect.size() + 1000, tail).ok());
  expect += std::string(1000, '\0') + tail;
  EXPECT_GT(fs_->buffered_bytes(), 0u);
  for (auto [off, len] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 1 << 20}, {kPageSize - 10, 20}, {2 * kBlockSize - 5000, 9000}, {3 * kBlockSize, 7000}}) {
    auto data = fs_->Read(ino, off, len);
    ASSERT_TRUE(data.ok());
    EXPECT_TRUE(expect.substr(off, len) == *data) << "read at " << off;
  }
  EXPECT_EQ(commits, CountOps("set_blocks"));  // nothing committed by the reads
  auto attr = fs_->GetAttr(ino);
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(static_cast<off_t>(expect.size()), attr->st_size);
  EXPECT_TRUE(expect == *fs_->Read(ino, 0, 1 << 20));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, SmallFilesStayInlineAndMoveToBlocksWhenTheyGrow) {
  uint64_t ino = Create("small");
  ASSERT_TRUE(fs_->Write(ino, 0, "hello").ok());
  EXPECT_EQ(1, CountOps("write_inline"));
  ASSERT_TRUE(fs_->Write(ino, 100000, "far").ok());
  ASSERT_TRUE(fs_->Fsync(ino).ok());
  auto data = fs_->Read(ino, 0, 200000);
  ASSERT_TRUE(data.ok());
  ASSERT_EQ(100003u, data->size());
  EXPECT_EQ("hello", data->substr(0, 5));
  EXPECT_EQ(std::string(100000 - 5, '\0'), data->substr(5, 100000 - 5));
  EXPECT_EQ("far", data->substr(100000));
  auto hole = fs_->Lseek(ino, 5, SEEK_HOLE);
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(5u, *hole);
}

TEST_F(VolumeFsTest, WholePageWritesBecomePagePatchesUntilTheBlockIsRewritten) {
  uint64_t ino = Create("big");
  std::string expect(4 * kBlockSize, '\0');
  for (size_t i = 0; i < expect.size(); ++i) expect[i] = static_cast<char>('a' + i % 23);
  ASSERT_TRUE(fs_->Write(ino, 0, expect).ok());
  ASSERT_TRUE(fs_->Flush(ino).ok());
  auto extent = [&](uint64_t block) {
    return *ExtentRecord::Decode(**store_->Get(key::Extent(vol_->id(), InodeId{ino}, block)));
  };
  auto write = [&](uint64_t offset, size_t length, char fill) {
    std::string data(length, fill);
    ASSERT_TRUE(fs_->Write(ino, offset, data).ok());
    expect.replace(offset, length, data);
  };
  // Pages 3 and 4 of block 1, and a page of block 2: patches, blocks unread.
  write(kBlockSize + 3 * kPageSize, 2 * kPageSize, 'X');
  write(2 * kBlockSize + 15 * kPageSize, kPageSize, 'Y');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_EQ(2u, extent(1).patches.size());
  EXPECT_FALSE(extent(1).chunk.IsZero());
  EXPECT_EQ(1u, extent(2).patches.size());
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  // A page-aligned read inside a patch and a read across patch and base.
  EXPECT_EQ(expect.substr(kBlockSize + 3 * kPageSize, kPageSize), *fs_->Read(ino, kBlockSize + 3 * kPageSize, kPageSize));
  EXPECT_EQ(expect.substr(kBlockSize + 4000, 9000), *fs_->Read(ino, kBlockSize + 4000, 9000));

  // A partial-page write reads the block and rewrites it whole, pages included.
  write(kBlockSize + 5 * kPageSize, kPageSize, 'Z');
  write(kBlockSize + 100, 10, 'p');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_TRUE(extent(1).patches.empty());
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));

  // Past kMaxPatches (8) a commit rewrites the block.
  for (uint32_t page = 0; page < 8; ++page) write(3 * kBlockSize + page * 2 * kPageSize % kBlockSize, kPageSize, 'q');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_EQ(8u, extent(3).patches.size());
  write(3 * kBlockSize + kPageSize, kPageSize, 'r');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_TRUE(extent(3).patches.empty());
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));

  // Truncate into a patch, regrow: the cut bytes read as zeros.
  write(0, kPageSize, 'T');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  ASSERT_TRUE(fs_->Truncate(ino, 100).ok());
  ASSERT_TRUE(fs_->Truncate(ino, 3 * kPageSize).ok());
  expect = expect.substr(0, 100) + std::string(3 * kPageSize - 100, '\0');
  EXPECT_TRUE(expect == *fs_->Read(ino, 0, 1 << 20));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}


TEST_F(VolumeFsTest, AWholeBlockWriteReplacesTheBlockAndThePagesBufferedForIt) {
  uint64_t ino = Create("f");
  std::string expect(3 * kBlockSize, '\0');
  for (size_t i = 0; i < expect.size(); ++i) expect[i] = static_cast<char>('a' + i % 23);
  ASSERT_TRUE(fs_->Write(ino, 0, expect).ok());
  ASSERT_TRUE(fs_->Flush(ino).ok());
  auto write = [&](uint64_t offset, size_t length, char fill) {
    std::string data(length, fill);
    ASSERT_TRUE(fs_->Write(ino, offset, data).ok());
    expect.replace(offset, length, data);
  };
  write(kBlockSize + 2 * kPageSize, kPageSize, 'P');  // buffered as a page
  write(kBlockSize, kBlockSize, 'W');                   // the whole block
  write(kBlockSize + 7 * kPageSize, kPageSize, 'Q');  // into the buffered block
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  ASSERT_TRUE(fs_->Flush(ino).ok());
  auto ext = *ExtentRecord::Decode(**store_->Get(key::Extent(vol_->id(), InodeId{ino}, 1)));
  EXPECT_TRUE(ext.patches.empty());
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  // Whole blocks past the end, and one straddling two blocks.
  write(3 * kBlockSize, 2 * kBlockSize, 'E');
  write(kBlockSize / 2, kBlockSize, 'S');
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size() + 1));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}
TEST_F(VolumeFsTest, FullBlocksOfAGrowingFileAreLoggedAheadAndWrittenAgainIfTheyChange) {
  auto log_bytes = [&] {
    uint64_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/chunks")) total += e.file_size();
    return total;
  };
  uint64_t ino = Create("f");
  const uint64_t before = log_bytes();
  std::string expect;
  std::mt19937_64 random(7);
  for (int b = 0; b < 8; ++b) {
    std::string block(kBlockSize, '\0');
    for (char& c : block) c = static_cast<char>(random());  // incompressible: logged raw
    ASSERT_TRUE(fs_->Write(ino, b * kBlockSize, block).ok());
    expect += block;
  }
  fs_->WaitStagedForTest(ino);
  EXPECT_GE(log_bytes(), before + 8 * kBlockSize) << "not logged ahead of the commit";
  EXPECT_EQ(0, CountOps("set_blocks"));
  // Staged blocks written again: the commit takes the new bytes.
  auto write = [&](uint64_t offset, size_t length, char fill) {
    std::string data(length, fill);
    ASSERT_TRUE(fs_->Write(ino, offset, data).ok());
    expect.replace(offset, length, data);
  };
  write(3 * kBlockSize, kBlockSize, 'R');
  write(5 * kBlockSize + 100, 10, 'P');
  write(6 * kBlockSize, kPageSize, 'Q');
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  ASSERT_TRUE(fs_->Flush(ino).ok());
  EXPECT_EQ(1, CountOps("set_blocks"));
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  store_->ForgetCachedStateForTest();
  EXPECT_EQ(expect, *fs_->Read(ino, 0, expect.size()));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, CopyFileRangeSharesWholeBlocksAndLeavesTheRestToTheKernel) {
  std::mt19937_64 random(11);
  auto bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(random());
    return s;
  };
  // Source: blocks 0-1, a page patch on block 1, holes at 2-3, block 4, and
  // 1000 bytes of block 5 at its end.
  uint64_t src = Create("src");
  std::string source = bytes(2 * kBlockSize) + std::string(2 * kBlockSize, '\0') + bytes(kBlockSize + 1000);
  ASSERT_TRUE(fs_->Write(src, 0, std::string_view(source).substr(0, 2 * kBlockSize)).ok());
  ASSERT_TRUE(fs_->Write(src, 4 * kBlockSize, std::string_view(source).substr(4 * kBlockSize)).ok());
  ASSERT_TRUE(fs_->Flush(src).ok());
  std::string patch = bytes(kPageSize);
  ASSERT_TRUE(fs_->Write(src, kBlockSize + 5 * kPageSize, patch).ok());
  source.replace(kBlockSize + 5 * kPageSize, kPageSize, patch);
  // Destination: 8 blocks of its own, some still buffered.
  uint64_t dst = Create("dst");
  std::string target = bytes(8 * kBlockSize);
  ASSERT_TRUE(fs_->Write(dst, 0, target).ok());

  // Into the middle of dst: whole blocks only, the source's tail would
  // cover dst's bytes past it.
  auto copied = fs_->CopyFileRange(src, 0, dst, kBlockSize, source.size());
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(5 * kBlockSize, *copied);
  target.replace(kBlockSize, *copied, source.substr(0, *copied));
  EXPECT_EQ(target, *fs_->Read(dst, 0, 1 << 20));
  // The tail goes where it ends both files: a new file gets all of src.
  uint64_t whole = Create("whole");
  copied = fs_->CopyFileRange(src, 0, whole, 0, 1 << 30);
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(source.size(), *copied);
  EXPECT_EQ(source, *fs_->Read(whole, 0, 1 << 20));
  EXPECT_EQ(source.size(), static_cast<uint64_t>(fs_->GetAttr(whole)->st_size));
  // Past the end of dst: a hole between.
  copied = fs_->CopyFileRange(src, 4 * kBlockSize, dst, 10 * kBlockSize, kBlockSize);
  ASSERT_TRUE(copied.ok());
  target += std::string(2 * kBlockSize, '\0') + source.substr(4 * kBlockSize, kBlockSize);
  EXPECT_EQ(target, *fs_->Read(dst, 0, 1 << 20));

  // What the kernel copies itself.
  EXPECT_EQ(Code::kNotSupported, fs_->CopyFileRange(src, 100, dst, 0, kBlockSize).status().code());
  EXPECT_EQ(Code::kNotSupported, fs_->CopyFileRange(src, 0, dst, kPageSize, kBlockSize).status().code());
  EXPECT_EQ(Code::kNotSupported, fs_->CopyFileRange(src, 0, dst, 0, 100).status().code());
  uint64_t small = Create("small");
  ASSERT_TRUE(fs_->Write(small, 0, "inline").ok());
  EXPECT_EQ(Code::kNotSupported, fs_->CopyFileRange(small, 0, dst, 0, kBlockSize).status().code());
  EXPECT_EQ(Code::kNotSupported, fs_->CopyFileRange(src, 0, small, 0, kBlockSize).status().code());
  EXPECT_EQ(0u, *fs_->CopyFileRange(src, 6 * kBlockSize, dst, 0, kBlockSize));  // past the source's end
  EXPECT_EQ(target, *fs_->Read(dst, 0, 1 << 20));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, CopyFileRangeIsChargedToTheQuota) {
  Volume* q = CreateQuotaVolume(12 * kBlockSize, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto src = fs.Mknod(1, "src", 0100644, 0, Caller{});
  auto dst = fs.Mknod(1, "dst", 0100644, 0, Caller{});
  ASSERT_TRUE(src.ok() && dst.ok());
  ASSERT_TRUE(fs.Write(src->st_ino, 0, std::string(5 * kBlockSize, 'x')).ok());
  ASSERT_TRUE(fs.Flush(src->st_ino).ok());
  auto copied = fs.CopyFileRange(src->st_ino, 0, dst->st_ino, 0, 5 * kBlockSize);
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  // 10 blocks used of 12: a third copy does not fit.
  EXPECT_EQ(Code::kQuota, fs.CopyFileRange(src->st_ino, 0, dst->st_ino, 5 * kBlockSize, 5 * kBlockSize).status().code());
  EXPECT_EQ(5 * kBlockSize, static_cast<uint64_t>(fs.GetAttr(dst->st_ino)->st_size));
}

TEST_F(VolumeFsTest, FlushAllCommitsEveryInode) {
  uint64_t a = Create("a"), b = Create("b");
  ASSERT_TRUE(fs_->Write(a, 0, std::string(70000, 'a')).ok());
  ASSERT_TRUE(fs_->Write(b, 0, std::string(70000, 'b')).ok());
  ASSERT_TRUE(fs_->FlushAll().ok());
  EXPECT_EQ(2, CountOps("set_blocks"));
  EXPECT_EQ(0u, fs_->buffered_bytes());
}

TEST_F(VolumeFsTest, UnlinkedInodeIsPurgedAtLastForget) {
  uint64_t ino = Create("gone");
  ASSERT_TRUE(fs_->Write(ino, 0, std::string(70000, 'g')).ok());
  ASSERT_TRUE(fs_->Unlink(1, "gone", false).ok());
  EXPECT_TRUE(fs_->GetAttr(ino).ok());  // still open/looked up
  fs_->Forget(ino, 1);
  EXPECT_EQ(0, CountOps("purge"));  // queued for the next group commit
  ASSERT_TRUE(fs_->FlushAll().ok());
  EXPECT_EQ(Code::kNotFound, fs_->GetAttr(ino).status().code());
  EXPECT_EQ(1, CountOps("purge"));
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

// What the kernel asks for a file handle's inode: "." by its number, ".."
// for a directory's parent; each answer counts a lookup.
TEST_F(VolumeFsTest, DotAndDotDotFindAnInodeByNumber) {
  auto dir = fs_->Mknod(1, "d", 040755, 0, Caller{});
  ASSERT_TRUE(dir.ok());
  auto file = fs_->Mknod(dir->st_ino, "f", 0100644, 0, Caller{});
  ASSERT_TRUE(file.ok());
  auto self = fs_->Lookup(file->st_ino, ".");
  ASSERT_TRUE(self.ok()) << self.status().ToString();
  EXPECT_EQ(file->st_ino, self->st_ino);
  auto parent = fs_->Lookup(dir->st_ino, "..");
  ASSERT_TRUE(parent.ok()) << parent.status().ToString();
  EXPECT_EQ(1u, parent->st_ino);
  auto root_parent = fs_->Lookup(1, "..");
  ASSERT_TRUE(root_parent.ok());
  EXPECT_EQ(1u, root_parent->st_ino);
  EXPECT_EQ(Code::kNotDir, fs_->Lookup(file->st_ino, "..").status().code());
  // Linkless but still known to the kernel: no handle may reach it.
  ASSERT_TRUE(fs_->Unlink(dir->st_ino, "f", false).ok());
  EXPECT_EQ(Code::kNotFound, fs_->Lookup(file->st_ino, ".").status().code());
  EXPECT_EQ(Code::kNotFound, fs_->Lookup(12345, ".").status().code());
}

// Write a new version, rename it over the old: the journal holds the data
// before the rename, so no crash point shows the new name with older data.
TEST_F(VolumeFsTest, RenameCommitsTheMovedFilesBufferedWritesFirst) {
  uint64_t old_version = Create("config");
  ASSERT_TRUE(fs_->Write(old_version, 0, std::string(70000, 'o')).ok());
  ASSERT_TRUE(fs_->FlushAll().ok());
  uint64_t new_version = Create("config.tmp");
  ASSERT_TRUE(fs_->Write(new_version, 0, std::string(70000, 'n')).ok());
  ASSERT_EQ(1, CountOps("set_blocks"));  // still buffered
  ASSERT_TRUE(fs_->Rename(1, "config.tmp", 1, "config", 0).ok());
  std::vector<std::string> order;
  store_->ScanJournal(vol_->id(), 1, [&](const Txn& txn) {
    for (const Op& op : txn.ops) {
      std::string name = OpName(op);
      if (name == "set_blocks" || name == "rename") order.push_back(name);
    }
    return true;
  }).IgnoreError();
  EXPECT_EQ((std::vector<std::string>{"set_blocks", "set_blocks", "rename"}), order);
  // RENAME_EXCHANGE moves both files: both go first.
  uint64_t other = Create("other");
  ASSERT_TRUE(fs_->Write(other, 0, std::string(70000, 'x')).ok());
  ASSERT_TRUE(fs_->Write(new_version, 0, std::string(70000, 'm')).ok());
  ASSERT_TRUE(fs_->Rename(1, "config", 1, "other", op::kRenameExchange).ok());
  EXPECT_EQ(4, CountOps("set_blocks"));
  EXPECT_EQ("rename", LastTxnOps().back());
}

// RENAME_WHITEOUT (overlayfs): the old name becomes a character device 0/0
// owned by the caller, in the rename's own txn; a rename that fails leaves
// nothing behind.
TEST_F(VolumeFsTest, RenameWhiteoutLeavesAWhiteoutInTheSameTxn) {
  auto dir = fs_->Mknod(1, "d", 042775, 0, Caller{});  // setgid: the whiteout takes its group
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(fs_->SetAttr(dir->st_ino, [] { struct stat a{}; a.st_gid = 77; return a; }(), VolumeFs::kSetGid).ok());
  auto moved = fs_->Mknod(dir->st_ino, "a", 0100644, 0, Caller{});
  ASSERT_TRUE(moved.ok());
  Caller owner;
  owner.uid = 1000;
  owner.gid = 1000;
  owner.umask = 022;
  ASSERT_TRUE(fs_->Rename(dir->st_ino, "a", 1, "b", op::kRenameNoReplace, &owner).ok());
  EXPECT_EQ((std::vector<std::string>{"rename", "mknod"}), LastTxnOps());
  auto whiteout = fs_->Lookup(dir->st_ino, "a");
  ASSERT_TRUE(whiteout.ok()) << whiteout.status().ToString();
  EXPECT_EQ(static_cast<mode_t>(S_IFCHR), whiteout->st_mode);
  EXPECT_EQ(0u, whiteout->st_rdev);
  EXPECT_EQ(1000u, whiteout->st_uid);
  EXPECT_EQ(77u, whiteout->st_gid);
  EXPECT_NE(moved->st_ino, whiteout->st_ino);
  auto b = fs_->Lookup(1, "b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(moved->st_ino, b->st_ino);

  // Failures: a missing source, a taken name with RENAME_NOREPLACE, with
  // RENAME_EXCHANGE. Each leaves the journal and the names as they were.
  ASSERT_TRUE(fs_->Mknod(1, "c", 0100644, 0, Caller{}).ok());
  const int txns = CountOps("mknod") + CountOps("rename");
  EXPECT_EQ(Code::kNotFound, fs_->Rename(1, "nothing", 1, "x", 0, &owner).code());
  EXPECT_EQ(Code::kExists, fs_->Rename(1, "c", 1, "b", op::kRenameNoReplace, &owner).code());
  EXPECT_EQ(Code::kInvalid, fs_->Rename(1, "c", 1, "b", op::kRenameExchange, &owner).code());
  // Two names of one inode: nothing to do, as for a plain rename.
  auto c = fs_->Lookup(1, "c");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(fs_->Link(c->st_ino, 1, "c2").ok());
  EXPECT_TRUE(fs_->Rename(1, "c", 1, "c2", 0, &owner).ok());
  EXPECT_EQ(static_cast<mode_t>(S_IFREG | 0644), fs_->Lookup(1, "c")->st_mode);
  EXPECT_EQ(txns, CountOps("mknod") + CountOps("rename"));
  EXPECT_EQ(Code::kNotFound, fs_->Lookup(1, "nothing").status().code());
  EXPECT_EQ(static_cast<mode_t>(S_IFREG | 0644), fs_->Lookup(1, "c")->st_mode);
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

// Under KILLPRIV_V2 every chown comes flagged "kill setuid/setgid", also
// the one overlayfs makes while copying a file up into an O_TMPFILE (where
// ext4 keeps the bits). A named file loses them, as chown(2) wants; a file
// without links keeps them.
TEST_F(VolumeFsTest, ChownKillsSetuidExceptOnAnInodeWithoutLinks) {
  auto named = fs_->Mknod(1, "named", 0104755, 0, Caller{});
  auto unnamed = fs_->Mknod(1, "", 0106755, 0, Caller{});  // O_TMPFILE
  ASSERT_TRUE(named.ok() && unnamed.ok());
  struct stat owner = {};
  owner.st_uid = 0;
  owner.st_gid = 42;
  const int chown = VolumeFs::kSetUid | VolumeFs::kSetGid;
  auto after_named = fs_->SetAttr(named->st_ino, owner, chown, /*kill_suidgid=*/true, Caller{});
  auto after_unnamed = fs_->SetAttr(unnamed->st_ino, owner, chown, /*kill_suidgid=*/true, Caller{});
  ASSERT_TRUE(after_named.ok() && after_unnamed.ok());
  EXPECT_EQ(0100755u, after_named->st_mode);
  EXPECT_EQ(0106755u, after_unnamed->st_mode);
  EXPECT_EQ(42u, after_unnamed->st_gid);
}

// The whiteout is an inode: with the volume's inodes used up the rename is
// refused whole.
TEST_F(VolumeFsTest, RenameWhiteoutNeedsAnInodeOfTheQuota) {
  Volume* q = CreateQuotaVolume(0, 2);  // the root and one file
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  ASSERT_TRUE(fs.Mknod(1, "a", 0100644, 0, Caller{}).ok());
  Caller owner;
  EXPECT_EQ(Code::kQuota, fs.Rename(1, "a", 1, "b", 0, &owner).code());
  EXPECT_TRUE(fs.Lookup(1, "a").ok());
  EXPECT_EQ(Code::kNotFound, fs.Lookup(1, "b").status().code());
  ASSERT_TRUE(fs.Rename(1, "a", 1, "b", 0).ok());  // a plain rename needs none
}

// The kernel sends an unaligned write(2) as its first page's piece, then
// the rest: the timer's flush must not commit between them, or a crash could
// keep half the write(2). It waits while the last piece ended on a page
// boundary just now, a bounded number of ticks.
TEST_F(VolumeFsTest, TheTimerDoesNotCommitBetweenPiecesOfOneWrite) {
  uint64_t ino = Create("log");
  ASSERT_TRUE(fs_->Write(ino, 0, std::string(70000, 'a')).ok());
  ASSERT_TRUE(fs_->FlushAll().ok());
  const int64_t forever = std::numeric_limits<int64_t>::max();
  ASSERT_TRUE(fs_->Write(ino, 70000, std::string(73728 - 70000, 'b')).ok());  // up to a page boundary
  ASSERT_TRUE(fs_->FlushSettled(forever).ok());
  EXPECT_EQ(1, CountOps("set_blocks"));  // waited
  ASSERT_TRUE(fs_->Write(ino, 73728, std::string(5000, 'b')).ok());  // the rest: not on a boundary
  ASSERT_TRUE(fs_->FlushSettled(forever).ok());
  EXPECT_EQ(2, CountOps("set_blocks"));
  // A writer that keeps ending on page boundaries is committed all the same.
  for (int tick = 0; tick <= VolumeFs::kMaxTimerSkips; ++tick) {
    ASSERT_TRUE(fs_->Write(ino, 4096 * (20 + tick), std::string(4096, 'c')).ok());
    ASSERT_TRUE(fs_->FlushSettled(forever).ok());
  }
  EXPECT_EQ(3, CountOps("set_blocks"));
  // Settled long enough ago: committed at once.
  ASSERT_TRUE(fs_->Write(ino, 4096 * 30, std::string(4096, 'd')).ok());
  ASSERT_TRUE(fs_->FlushSettled(0).ok());
  EXPECT_EQ(4, CountOps("set_blocks"));
}

TEST_F(VolumeFsTest, QueuedPurgesFreeQuotaWhenItRunsOut) {
  Volume* q = CreateQuotaVolume(0, 4);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  for (int round = 0; round < 5; ++round) {
    auto st = fs.Mknod(1, "f", 0100644, 0, Caller{});
    ASSERT_TRUE(st.ok()) << "round " << round << ": " << st.status().ToString();
    auto other = fs.Mknod(1, "g", 0100644, 0, Caller{});
    ASSERT_TRUE(other.ok()) << other.status().ToString();
    ASSERT_TRUE(fs.Unlink(1, "f", false).ok());
    ASSERT_TRUE(fs.Unlink(1, "g", false).ok());
    fs.Forget(st->st_ino, 1);
    fs.Forget(other->st_ino, 1);
  }
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

// Buffered writes are committed at the file's release, where no error
// reaches the writer: the quota they need is promised when they are written,
// so a write past the quota fails in write(2) and buffered data always fits.
TEST_F(VolumeFsTest, BufferedWritesPromiseTheirQuotaWhenWritten) {
  Volume* q = CreateQuotaVolume(1 << 20, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto a = fs.Mknod(1, "a", 0100644, 0, Caller{});
  auto b = fs.Mknod(1, "b", 0100644, 0, Caller{});
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string block(kBlockSize, 'x');
  // a buffers 10 blocks, b then takes what is left: 6 more.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(fs.Write(a->st_ino, i * kBlockSize, block).ok()) << i;
  EXPECT_GT(fs.buffered_bytes(), 0u);
  int b_blocks = 0;
  Status refused;
  for (; b_blocks < 16; ++b_blocks) {
    auto w = fs.Write(b->st_ino, b_blocks * kBlockSize, block);
    if (!w.ok()) {
      refused = w.status();
      break;
    }
  }
  EXPECT_EQ(Code::kQuota, refused.code()) << refused.ToString();
  EXPECT_EQ(6, b_blocks);
  // Nor can anything else take the promised quota.
  auto c = fs.Mknod(1, "c", 0100644, 0, Caller{});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Code::kQuota, fs.Write(c->st_ino, 0, std::string(4000, 'c')).status().code());
  // The buffered data of both fits when it is committed.
  EXPECT_TRUE(fs.Release(a->st_ino).ok());
  EXPECT_TRUE(fs.Release(b->st_ino).ok());
  EXPECT_EQ(0u, fs.buffered_bytes());
  EXPECT_EQ(10 * kBlockSize, fs.GetAttr(a->st_ino)->st_size);
  EXPECT_EQ(6 * kBlockSize, fs.GetAttr(b->st_ino)->st_size);
  auto summary = store_->Summarize(q);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(1u << 20, summary->usage.bytes);
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

TEST_F(VolumeFsTest, AMountGivenUpOnGivesBackWhatItsBuffersWerePromised) {
  Volume* q = CreateQuotaVolume(1 << 20, 0);
  ASSERT_NE(nullptr, q);
  const std::string block(kBlockSize, 'x');
  {
    VolumeFs lost(store_.get(), q);
    auto a = lost.Mknod(1, "a", 0100644, 0, Caller{});
    ASSERT_TRUE(a.ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(lost.Write(a->st_ino, i * kBlockSize, block).ok()) << i;
  }  // never flushed: a detached mount whose daemon gave up on it
  VolumeFs fs(store_.get(), q);
  auto b = fs.Mknod(1, "b", 0100644, 0, Caller{});
  ASSERT_TRUE(b.ok());
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(fs.Write(b->st_ino, i * kBlockSize, block).ok()) << i;
  EXPECT_TRUE(fs.Release(b->st_ino).ok());
}

// Near the quota a write is committed at once instead of buffered, so it is
// refused only if the data itself does not fit: here the last 4 KiB of the
// quota are written, and the next byte is refused.
TEST_F(VolumeFsTest, NearTheQuotaWritesAreCommittedAtOnce) {
  Volume* q = CreateQuotaVolume(256 << 10, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto f = fs.Mknod(1, "f", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok());
  const std::string page(kPageSize, 'p');
  uint64_t written = 0;
  Status refused;
  for (; written < (512 << 10); written += page.size()) {
    auto w = fs.Write(f->st_ino, written, page);
    if (!w.ok()) {
      refused = w.status();
      break;
    }
  }
  EXPECT_EQ(Code::kQuota, refused.code()) << refused.ToString();
  EXPECT_EQ(256u << 10, written);
  EXPECT_TRUE(fs.Fsync(f->st_ino).ok());
  EXPECT_EQ(256 << 10, fs.GetAttr(f->st_ino)->st_size);
  auto data = fs.Read(f->st_ino, 0, 1 << 20);
  ASSERT_TRUE(data.ok());
  EXPECT_TRUE(std::string(256 << 10, 'p') == *data);
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

// fallocate(2): "subsequent writes into the range will not fail because of
// lack of disk space" (here: quota), however full the volume gets meanwhile;
// the reserved range still reads as zeros and seeks as a hole.
TEST_F(VolumeFsTest, FallocateReservesQuotaForLaterWrites) {
  Volume* q = CreateQuotaVolume(1 << 20, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto f = fs.Mknod(1, "prealloc", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok());
  const uint64_t reserved = 300000;  // four whole blocks and a short fifth
  ASSERT_TRUE(fs.Fallocate(f->st_ino, 0, 0, reserved).ok());
  EXPECT_EQ(static_cast<off_t>(reserved), fs.GetAttr(f->st_ino)->st_size);
  EXPECT_GE(fs.GetAttr(f->st_ino)->st_blocks * 512, static_cast<blkcnt_t>(reserved));
  EXPECT_EQ(Code::kNoSuchOffset, fs.Lseek(f->st_ino, 0, SEEK_DATA).status().code());
  EXPECT_EQ(0u, *fs.Lseek(f->st_ino, 0, SEEK_HOLE));
  EXPECT_EQ(std::string(1000, '\0'), *fs.Read(f->st_ino, 70000, 1000));
  // Another file takes everything left.
  auto g = fs.Mknod(1, "greedy", 0100644, 0, Caller{});
  ASSERT_TRUE(g.ok());
  const std::string block(kBlockSize, 'g');
  Status refused;
  for (uint64_t off = 0; refused.ok() && off < (2u << 20); off += block.size()) {
    auto w = fs.Write(g->st_ino, off, block);
    if (w.ok()) w = fs.Fsync(g->st_ino).ok() ? w : Error(Code::kQuota, "fsync");
    if (!w.ok()) refused = w.status();
  }
  ASSERT_EQ(Code::kQuota, refused.code());
  // The reserved range takes its data, unaligned writes and whole pages alike.
  const std::string data(reserved - 1001, 'd');
  ASSERT_TRUE(fs.Write(f->st_ino, 1001, data).ok());
  ASSERT_TRUE(fs.Write(f->st_ino, 0, std::string(kPageSize, 'p')).ok());
  ASSERT_TRUE(fs.Fsync(f->st_ino).ok());
  auto back = fs.Read(f->st_ino, 0, reserved);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::string(kPageSize, 'p') + data.substr(kPageSize - 1001) == *back);
  EXPECT_EQ(0u, *fs.Lseek(f->st_ino, 0, SEEK_DATA));
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

// Found by an xfstests-style run: a range far past the end reserves just
// the range (the rest is a hole), and KEEP_SIZE past the end reserves
// nothing, so neither is refused for the distance from the end.
TEST_F(VolumeFsTest, FallocatePastTheEndChargesOnlyTheRange) {
  Volume* q = CreateQuotaVolume(1 << 20, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto f = fs.Mknod(1, "far", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok());
  const uint64_t far = 200 << 20;
  ASSERT_TRUE(fs.Fallocate(f->st_ino, 0, far, 4096).ok());
  EXPECT_EQ(static_cast<off_t>(far + 4096), fs.GetAttr(f->st_ino)->st_size);
  EXPECT_LE(fs.GetAttr(f->st_ino)->st_blocks * 512, static_cast<blkcnt_t>(kBlockSize));
  EXPECT_EQ(0u, *fs.Lseek(f->st_ino, 0, SEEK_HOLE));
  auto g = fs.Mknod(1, "kept", 0100644, 0, Caller{});
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(fs.Write(g->st_ino, 0, std::string(4096, 'k')).ok());
  ASSERT_TRUE(fs.Fsync(g->st_ino).ok());
  ASSERT_TRUE(fs.Fallocate(g->st_ino, FALLOC_FL_KEEP_SIZE, 101 << 20, kBlockSize).ok());
  EXPECT_EQ(4096, fs.GetAttr(g->st_ino)->st_size);
  // What can never fit is still refused at once, also past the end of a
  // file that holds more than the range.
  EXPECT_EQ(Code::kQuota, fs.Fallocate(g->st_ino, 0, 0, 2 << 20).code());
  EXPECT_EQ(4096, fs.GetAttr(g->st_ino)->st_size);
  auto h = fs.Mknod(1, "held", 0100644, 0, Caller{});
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(fs.Write(h->st_ino, 0, std::string(600000, 'h')).ok());
  ASSERT_TRUE(fs.Fsync(h->st_ino).ok());
  EXPECT_EQ(Code::kQuota, fs.Fallocate(h->st_ino, 0, 600000, 500000).code());
  EXPECT_EQ(600000, fs.GetAttr(h->st_ino)->st_size);
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

// The zero blocks fallocate reserves take no disk, but the writes they
// promise will: more than the store's disk has free is ENOSPC at once (it
// reserved blocks for minutes, growing df's size as it went).
TEST_F(VolumeFsTest, FallocateBeyondTheStoresFreeDiskIsRefusedAtOnce) {
  Volume* unlimited = CreateQuotaVolume(0, 0);
  ASSERT_NE(nullptr, unlimited);
  VolumeFs fs(store_.get(), unlimited);
  auto f = fs.Mknod(1, "huge", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok());
  const uint64_t room = store_->space_guard().report().data_room();
  EXPECT_EQ(Code::kNoSpace, fs.Fallocate(f->st_ino, 0, 0, room + (1ull << 30)).code());
  EXPECT_EQ(0, fs.GetAttr(f->st_ino)->st_size);
  EXPECT_EQ(0, fs.GetAttr(f->st_ino)->st_blocks);
  ASSERT_TRUE(fs.Fallocate(f->st_ino, 0, 0, 1 << 20).ok());
  EXPECT_EQ(1 << 20, fs.GetAttr(f->st_ino)->st_size);
}

// Found by a kill -9 harness: the kernel sent write(2) of 6000 bytes at
// offset 100 as two writes split at 4096. The first, inline, was committed
// at once and the second buffered, so a crash kept the file 4096 bytes long.
TEST_F(VolumeFsTest, AWriteEndingAtThePageEndWaitsForTheRestOfItsWrite) {
  auto f = fs_->Mknod(1, "split", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok());
  const uint64_t before = vol_->position().txid;
  ASSERT_TRUE(fs_->Write(f->st_ino, 100, std::string(3996, 'a')).ok());
  EXPECT_EQ(before, vol_->position().txid);
  ASSERT_TRUE(fs_->Write(f->st_ino, 4096, std::string(2004, 'a')).ok());
  ASSERT_TRUE(fs_->Flush(f->st_ino).ok());
  EXPECT_EQ(before + 1, vol_->position().txid);  // both halves in one txn
  EXPECT_EQ(std::string(100, '\0') + std::string(6000, 'a'), *fs_->Read(f->st_ino, 0, 8192));
  // A short write still goes inline at once.
  auto g = fs_->Mknod(1, "small", 0100644, 0, Caller{});
  ASSERT_TRUE(g.ok());
  const uint64_t small = vol_->position().txid;
  ASSERT_TRUE(fs_->Write(g->st_ino, 0, "tiny").ok());
  EXPECT_EQ(small + 1, vol_->position().txid);
}

// A page written into a sparse block charges more than the page it was
// promised; if that misses the quota at the release, the file's next fsync
// reports it (as a failed writeback), once.
TEST_F(VolumeFsTest, ACommitThatFailsAtReleaseIsReportedByTheNextFsync) {
  Volume* q = CreateQuotaVolume(256 << 10, 0);
  ASSERT_NE(nullptr, q);
  VolumeFs fs(store_.get(), q);
  auto f = fs.Mknod(1, "f", 0100644, 0, Caller{});
  auto g = fs.Mknod(1, "g", 0100644, 0, Caller{});
  ASSERT_TRUE(f.ok() && g.ok());
  ASSERT_TRUE(fs.Write(f->st_ino, 0, std::string(2 * kPageSize, 'f')).ok());
  ASSERT_TRUE(fs.Write(f->st_ino, kBlockSize, std::string(kPageSize, 'f')).ok());  // the file's size: 68 KiB
  ASSERT_TRUE(fs.Release(f->st_ino).ok());
  ASSERT_TRUE(fs.Write(g->st_ino, 0, std::string(224 << 10, 'g')).ok());
  ASSERT_TRUE(fs.Release(g->st_ino).ok());
  // 236 KiB used; block 0 of f holds 8 KiB, and its last page would charge it 64.
  ASSERT_TRUE(fs.Write(f->st_ino, kBlockSize - kPageSize, std::string(kPageSize, 'F')).ok());
  EXPECT_EQ(Code::kQuota, fs.Release(f->st_ino).code());
  EXPECT_EQ(Code::kQuota, fs.Fsync(f->st_ino).code());
  EXPECT_TRUE(fs.Fsync(f->st_ino).ok());
  EXPECT_TRUE(store_->VerifyVolume(q).ok());
}

// Found by an fsx-like run with 4 processes: while the group-commit timer
// committed a file's buffered writes, a stat or read of that file found no
// buffer and read the inode from before the commit (the old size, old
// bytes), which the kernel then cached. A buffer stays visible until its
// commit is done.
TEST_F(VolumeFsTest, AFileBeingCommittedIsNeverSeenAsItWasBefore) {
  uint64_t ino = Create("f");
  std::atomic<bool> done{false};
  std::thread flusher([&] {
    while (!done) fs_->FlushAll().IgnoreError();
  });
  std::string stale;
  for (int i = 0; i < 3000 && stale.empty(); ++i) {
    const uint64_t base = 100000 + (i % 7) * 5000, end = base + 8192 + i % 4096;
    ASSERT_TRUE(fs_->Truncate(ino, base).ok());
    ASSERT_TRUE(fs_->Write(ino, end - 100, std::string(100, 'w')).ok());
    auto st = fs_->GetAttr(ino);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto tail = fs_->Read(ino, end - 100, 100);
    ASSERT_TRUE(tail.ok()) << tail.status().ToString();
    if (static_cast<uint64_t>(st->st_size) != end || *tail != std::string(100, 'w')) {
      stale = "iteration " + std::to_string(i) + ": size " + std::to_string(st->st_size) + ", expected " +
              std::to_string(end) + "; tail read " + std::to_string(tail->size()) + " bytes";
    }
  }
  done = true;
  flusher.join();
  EXPECT_TRUE(stale.empty()) << stale;
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, UmaskAppliesWhenTheParentHasNoDefaultAcl) {
  auto st = fs_->Mknod(1, "f", 0100666, 0, Root(027));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(0100640u, st->st_mode);
  auto link = fs_->Mknod(1, "l", 0120777, 0, Root(027), "f");
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  EXPECT_EQ(0120777u, link->st_mode);  // symlinks take no umask
}

TEST_F(VolumeFsTest, DefaultAclIsInheritedInTheCreatingTxn) {
  // u::rwx u:1000:rwx g::r-x m::rwx o::---
  const std::string acl = PosixAcl({{kAclUserObj, 7}, {kAclUser, 7, 1000}, {kAclGroupObj, 5}, {kAclMask, 7},
                                    {kAclOther, 0}}).Encode();
  auto dir = fs_->Mknod(1, "d", 040777, 0, Caller{});
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  ASSERT_TRUE(fs_->SetXattr(dir->st_ino, kAclDefaultXattr, acl, 0, Caller{}).ok());
  auto sub = fs_->Mknod(dir->st_ino, "sub", 040777, 0, Root(077));
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(040770u, sub->st_mode);  // the ACL, not the umask, limits the mode
  EXPECT_EQ((std::vector<std::string>{"mknod", "set_xattr", "set_xattr"}), LastTxnOps());
  EXPECT_EQ(acl, *fs_->GetXattr(sub->st_ino, kAclAccessXattr));
  EXPECT_EQ(acl, *fs_->GetXattr(sub->st_ino, kAclDefaultXattr));
  auto file = fs_->Mknod(sub->st_ino, "f", 0100644, 0, Root(077));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(0100640u, file->st_mode);
  EXPECT_EQ((std::vector<std::string>{"mknod", "set_xattr"}), LastTxnOps());
  EXPECT_EQ(Code::kNoData, fs_->GetXattr(file->st_ino, kAclDefaultXattr).status().code());
  EXPECT_TRUE(store_->VerifyVolume(vol_).ok());
}

TEST_F(VolumeFsTest, AccessAclSetsTheModeAndChmodTheAcl) {
  uint64_t ino = Create("f");
  // u::rw- u:1000:rwx g::r-- m::r-x o::---
  const std::string acl = PosixAcl({{kAclUserObj, 6}, {kAclUser, 7, 1000}, {kAclGroupObj, 4}, {kAclMask, 5},
                                    {kAclOther, 0}}).Encode();
  ASSERT_TRUE(fs_->SetXattr(ino, kAclAccessXattr, acl, 0, Caller{}).ok());
  EXPECT_EQ(0100650u, fs_->GetAttr(ino)->st_mode);  // group bits = mask
  struct stat attr = {};
  attr.st_mode = 0604;
  ASSERT_TRUE(fs_->SetAttr(ino, attr, VolumeFs::kSetMode).ok());
  EXPECT_EQ((std::vector<std::string>{"set_attr", "set_xattr"}), LastTxnOps());
  auto after = PosixAcl::Decode(*fs_->GetXattr(ino, kAclAccessXattr));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(0604u, after->PermissionBits());
  // An ACL the mode says in full replaces the stored one by the mode alone.
  const std::string minimal = PosixAcl({{kAclUserObj, 7}, {kAclGroupObj, 5}, {kAclOther, 1}}).Encode();
  ASSERT_TRUE(fs_->SetXattr(ino, kAclAccessXattr, minimal, 0, Caller{}).ok());
  EXPECT_EQ(0100751u, fs_->GetAttr(ino)->st_mode);
  EXPECT_EQ(Code::kNoData, fs_->GetXattr(ino, kAclAccessXattr).status().code());
}

TEST_F(VolumeFsTest, MalformedAclsAreInvalidAndNotStored) {
  uint64_t ino = Create("f");
  for (const char* name : {kAclAccessXattr, kAclDefaultXattr}) {
    for (std::string bad : {std::string("junk"), std::string("\x02\0\0\0\x01\0\x06\0", 8)}) {
      EXPECT_EQ(Code::kInvalid, fs_->SetXattr(ino, name, bad, 0, Caller{}).code()) << name;
      EXPECT_EQ(Code::kNoData, fs_->GetXattr(ino, name).status().code()) << name;
    }
  }
  EXPECT_EQ(0100644u, fs_->GetAttr(ino)->st_mode);
}

// Names whose cookies collide share a readdir offset: ReadDir hands them
// over together, so that a reply never ends between them (the kernel would
// resume after their offset and lose the rest). Collisions of 62-bit hashes
// do not happen by chance: the entries are written under a chosen cookie.
TEST_F(VolumeFsTest, ReadDirNeverSplitsNamesThatShareACookie) {
  const std::string dir = key::DirentPrefix(vol_->id(), InodeId{1});
  auto put = [&](uint64_t cookie, const std::string& name) {
    std::string k = key::DirentFrom(vol_->id(), InodeId{1}, cookie) + name;
    ASSERT_TRUE(store_->WriteStateForTest(k, DirentRecord{1, kTypeDir}.Encode()).ok());
  };
  put(100, "a");
  put(200, "b1");
  put(200, "b2");
  put(300, "c");
  // A reader with room for two entries at a time.
  auto read = [&](uint64_t offset) {
    std::vector<std::string> got;
    uint64_t last = offset;
    EXPECT_TRUE(fs_->ReadDir(1, offset, [&](std::span<const DirEntry> group) {
      if (got.size() + group.size() > 2) return false;
      for (const DirEntry& e : group) {
        got.push_back(e.name);
        last = e.next_offset;
      }
      return true;
    }).ok());
    return std::make_pair(got, last);
  };
  auto [first, after_first] = read(2);  // past "." and ".."
  EXPECT_EQ((std::vector<std::string>{"a"}), first);  // b1 and b2 do not both fit
  auto [second, after_second] = read(after_first);
  EXPECT_EQ((std::vector<std::string>{"b1", "b2"}), second);
  auto [third, after_third] = read(after_second);
  EXPECT_EQ((std::vector<std::string>{"c"}), third);
  EXPECT_TRUE(read(after_third).first.empty());
}

}  // namespace
}  // namespace aspfs
