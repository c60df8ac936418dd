#include "journal/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "journal/chunk.h"

namespace aspfs {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/aspfs-store-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = Store::Open(dir_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  Volume* Create(const std::string& name) {
    auto v = store_->CreateVolume(name, {});
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : nullptr;
  }
  Status Commit(Volume* vol, Op op) {
    Txn txn;
    txn.time_ns = NowNs();
    txn.ops = {std::move(op)};
    return vol->Commit(&txn).status();
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

// A second daemon on the same store (or one started while a killed one is
// still exiting) waits for the store's lock, and if it stays held says by
// whom.
TEST_F(StoreTest, AStoreHeldByAnotherProcessIsWaitedForAndThenNamed) {
  store_.reset();
  int ready[2], release[2];
  ASSERT_EQ(0, pipe(ready));
  ASSERT_EQ(0, pipe(release));
  pid_t child = fork();
  ASSERT_LE(0, child);
  if (child == 0) {
    int fd = open((dir_ + "/LOCK").c_str(), O_RDWR);
    struct flock lock = {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    char c = fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0 ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    close(release[1]);
    while (read(release[0], &c, 1) > 0) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char c = 0;
  ASSERT_EQ(1, read(ready[0], &c, 1));
  ASSERT_EQ('y', c);
  auto held = Store::Open(dir_, std::chrono::milliseconds(200));
  ASSERT_FALSE(held.ok());
  EXPECT_EQ(Code::kBusy, held.status().code());
  EXPECT_NE(std::string::npos, held.status().message().find("in use by process " + std::to_string(child)))
      << held.status().ToString();
  close(release[1]);  // the child lets go and exits; Open waits for that
  auto freed = Store::Open(dir_);
  EXPECT_TRUE(freed.ok()) << freed.status().ToString();
  int status = 0;
  waitpid(child, &status, 0);
  close(ready[0]);
}

TEST_F(StoreTest, CommitsSurviveReopenAndReplayMatches) {
  Volume* vol = Create("ve101");
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "d", vol->AllocateInode(), kTypeDir | 0755, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::Rename{1, "f", 3, "g", 0}).ok());
  EXPECT_EQ(Code::kNotFound, Commit(vol, op::Unlink{1, "f", false}).code());
  Position before = vol->position();
  EXPECT_EQ(4u, before.txid);  // txids dense: the failed op took none
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  auto again = store_->FindVolume("ve101");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(before, (*again)->position());
  EXPECT_TRUE(store_->VerifyVolume(*again).ok());
  EXPECT_EQ(4u, (*again)->AllocateInode());
}

TEST_F(StoreTest, VerifyNoticesStateThatDiffersFromJournal) {
  Volume* vol = Create("v");
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(store_->VerifyVolume(vol).ok());
  // A state write that bypasses the journal must be caught.
  ASSERT_TRUE(store_->WriteStateForTest(key::Xattr(vol->id(), InodeId{2}, "user.sneaky"), "x").ok());
  EXPECT_EQ(Code::kCorrupt, store_->VerifyVolume(vol).status().code());
}

TEST_F(StoreTest, VerifyCountsTheStateAndReadsEveryChunk) {
  Volume* vol = Create("v");
  std::string data(65536, 'c');
  ChunkId id = HashChunk(data);
  ASSERT_TRUE(store_->PutChunk(id, data).ok());
  uint64_t ino = vol->AllocateInode();
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", ino, kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::SetBlocks{ino, 2 * kBlockSize, {{0, id, kBlockSize, {}}, {1, id, kBlockSize, {}}}}).ok());
  ASSERT_TRUE(Commit(vol, op::Link{ino, 1, "g"}).ok());
  auto check = store_->VerifyVolume(vol);
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_EQ(2u, check->inodes);
  EXPECT_EQ(2u, check->entries);
  EXPECT_EQ(2u, check->extents);
  EXPECT_EQ(1u, check->chunks.size());  // shared by both blocks, read once
  EXPECT_EQ(vol->position().txid, check->txid);
  // A chunk that no longer matches its hash fails the volume's verify.
  ASSERT_TRUE(store_->CorruptChunkForTest(id).ok());
  check = store_->VerifyVolume(vol);
  EXPECT_EQ(Code::kCorrupt, check.status().code());
  EXPECT_NE(std::string::npos, check.status().message().find("1 of 1 chunks unreadable")) << check.status().ToString();
}

TEST_F(StoreTest, VerifyReadsASnapshotWhileTheVolumeKeepsCommitting) {
  Volume* vol = Create("busy");
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(Commit(vol, op::Mknod{1, "f" + std::to_string(i), vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  }
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; !done; ++i) Commit(vol, op::SetXattr{2, "user.n", std::to_string(i), 0}).IgnoreError();
  });
  for (int round = 0; round < 5; ++round) {
    auto check = store_->VerifyVolume(vol);
    EXPECT_TRUE(check.ok()) << check.status().ToString();
  }
  done = true;
  writer.join();
  EXPECT_TRUE(store_->VerifyVolume(vol).ok());
}

TEST_F(StoreTest, VerifyGivesUpOnceToldToStop) {
  Volume* vol = Create("v");
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  std::atomic<bool> stop{false};
  EXPECT_TRUE(store_->VerifyVolume(vol, &stop).ok());
  stop = true;
  auto check = store_->VerifyVolume(vol, &stop);
  EXPECT_EQ(Code::kBusy, check.status().code()) << check.status().ToString();
}

// Two files promised the whole quota between them: each commit uses its own
// promise, and the first is not still counted as promised once its bytes
// are in the usage, which would refuse the second.
TEST_F(StoreTest, ACommitConsumesItsPromiseAtOnce) {
  auto created = store_->CreateVolume("q", {4 * kBlockSize, 0});
  ASSERT_TRUE(created.ok());
  Volume* vol = *created;
  const uint64_t a = vol->AllocateInode(), b = vol->AllocateInode();
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "a", a, kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "b", b, kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  uint64_t promised_a = 2 * kBlockSize, promised_b = 2 * kBlockSize;
  ASSERT_TRUE(vol->ReserveQuota(promised_a).ok());
  ASSERT_TRUE(vol->ReserveQuota(promised_b).ok());
  EXPECT_EQ(Code::kQuota, vol->ReserveQuota(1).code());
  auto two_blocks = [&](uint64_t ino) {
    Txn txn;
    txn.time_ns = NowNs();
    txn.ops = {op::SetBlocks{ino, 2 * kBlockSize, {{0, {ino, 1}, kBlockSize, {}}, {1, {ino, 2}, kBlockSize, {}}}}};
    return txn;
  };
  Txn txn_a = two_blocks(a);
  ASSERT_TRUE(vol->Commit(&txn_a, {}, &promised_a).ok());
  EXPECT_EQ(0u, promised_a);
  Txn txn_b = two_blocks(b);
  auto committed_b = vol->Commit(&txn_b, {}, &promised_b);
  ASSERT_TRUE(committed_b.ok()) << committed_b.status().ToString();
  EXPECT_EQ(0u, promised_b);
  // Nothing is left promised: what remains is exactly the quota's rest.
  EXPECT_EQ(Code::kQuota, vol->ReserveQuota(1).code());
  Txn unlink;
  unlink.time_ns = NowNs();
  unlink.ops = {op::Unlink{1, "a", false}, op::Purge{a}};
  ASSERT_TRUE(vol->Commit(&unlink).ok());
  EXPECT_TRUE(vol->ReserveQuota(2 * kBlockSize).ok());
}

TEST_F(StoreTest, AStoreOfAnotherFormatIsRefusedWithItsVersion) {
  Create("v");
  Reopen();  // ours: opens
  ASSERT_TRUE(store_->WriteStateForTest(key::Format(), key::EncodeBigEndian(kStoreFormat + 1)).ok());
  store_.reset();
  auto refused = Store::Open(dir_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string::npos, refused.status().message().find("format " + std::to_string(kStoreFormat + 1)))
      << refused.status().ToString();
}

TEST_F(StoreTest, AStoreWithVolumesButNoFormatRecordIsRefusedAsFormatOne) {
  Create("v");
  ASSERT_TRUE(store_->WriteStateForTest(key::Format(), std::nullopt).ok());
  store_.reset();
  auto refused = Store::Open(dir_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string::npos, refused.status().message().find("older aspfsd (format 1)"))
      << refused.status().ToString();
}

TEST_F(StoreTest, ANewStoreRecordsItsFormat) {
  auto format = store_->Get(key::Format());
  ASSERT_TRUE(format.ok() && format->has_value());
  EXPECT_EQ(kStoreFormat, key::DecodeBigEndian(**format));
}

TEST_F(StoreTest, NamesAreValidatedAndUnique) {
  EXPECT_EQ(Code::kInvalid, store_->CreateVolume("", {}).status().code());
  EXPECT_EQ(Code::kInvalid, store_->CreateVolume("a/b", {}).status().code());
  EXPECT_EQ(Code::kInvalid, store_->CreateVolume("-x", {}).status().code());
  Create("ok-1");
  EXPECT_EQ(Code::kExists, store_->CreateVolume("ok-1", {}).status().code());
  EXPECT_EQ(Code::kNotFound, store_->FindVolume("nope").status().code());
}

TEST_F(StoreTest, DeleteVolumeLeavesOthersIntact) {
  Volume* a = Create("a");
  Volume* b = Create("b");
  ASSERT_TRUE(Commit(a, op::Mknod{1, "fa", a->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(b, op::Mknod{1, "fb", b->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(store_->DeleteVolume("a").ok());
  Reopen();
  EXPECT_EQ(Code::kNotFound, store_->FindVolume("a").status().code());
  auto vb = store_->FindVolume("b");
  ASSERT_TRUE(vb.ok());
  EXPECT_TRUE(store_->VerifyVolume(*vb).ok());
  auto list = store_->ListVolumes();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(1u, list->size());
  EXPECT_EQ("b", (*list)[0].name);
  EXPECT_EQ(2u, (*list)[0].usage.inodes);
  // A new volume never reuses a deleted one's id.
  Volume* c = Create("c");
  EXPECT_EQ(3u, c->id().value);
}

uint64_t ChunkLogBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir + "/chunks")) total += f.file_size();
  return total;
}

TEST_F(StoreTest, ChunksDedupAndDetectCorruption) {
  std::string data(65536, 'q');
  ChunkId id = HashChunk(data);
  ASSERT_TRUE(store_->PutChunk(id, data).ok());
  uint64_t once = ChunkLogBytes(dir_);
  EXPECT_GT(once, 0u);
  ASSERT_TRUE(store_->PutChunk(id, data).ok());
  Reopen();
  ASSERT_TRUE(store_->PutChunk(id, data).ok());
  EXPECT_EQ(once, ChunkLogBytes(dir_));  // stored once, shared
  EXPECT_EQ(data, *store_->ReadChunk(id));
  ASSERT_TRUE(store_->CorruptChunkForTest(id).ok());
  EXPECT_EQ(Code::kCorrupt, store_->ReadChunk(id).status().code());
  EXPECT_EQ(Code::kCorrupt, store_->ReadChunk(HashChunk("absent")).status().code());
}

TEST_F(StoreTest, SmallChunksOfFsyncedCommitsLiveInTheIndexEntry) {
  std::string page(4096, 'p'), block(65536, '\0');
  page[7] = 'x';
  uint64_t x = 7;
  for (char& c : block) {  // incompressible: its body stays 64 KiB
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  ChunkId page_id = HashChunk(page), block_id = HashChunk(block);
  uint64_t log_before = ChunkLogBytes(dir_);
  ASSERT_TRUE(store_->PutChunk(page_id, page, /*in_wal=*/true).ok());
  EXPECT_EQ(log_before, ChunkLogBytes(dir_));  // nothing for the chunk log to sync
  ASSERT_TRUE(store_->PutChunk(block_id, block, /*in_wal=*/true).ok());
  EXPECT_GT(ChunkLogBytes(dir_), log_before);  // too big for the index
  Reopen();
  EXPECT_EQ(page, *store_->ReadChunk(page_id));
  EXPECT_EQ(block, *store_->ReadChunk(block_id));
  ASSERT_TRUE(store_->CorruptChunkForTest(page_id).ok());
  EXPECT_EQ(Code::kCorrupt, store_->ReadChunk(page_id).status().code());
}

// A read after a commit returns the committed value while other readers
// miss the state cache and fill it from RocksDB at the same time (the exact
// fill/commit interleaving is pinned by StateCacheTest.FillAfterAConcurrent-
// CommitIsRefused).
TEST_F(StoreTest, StateCacheNeverServesAReplacedValue) {
  Volume* vol = Create("c");
  std::vector<uint64_t> inodes;
  for (int i = 0; i < 4; ++i) {
    uint64_t ino = vol->AllocateInode();
    ASSERT_TRUE(Commit(vol, op::Mknod{1, "f" + std::to_string(i), ino, kTypeRegular | 0600, 0, 0, 0, ""}).ok());
    inodes.push_back(ino);
  }
  auto mode_of = [&](uint64_t ino) {
    auto raw = store_->Get(key::Inode(vol->id(), InodeId{ino}));
    return raw.ok() && *raw ? InodeRecord::Decode(**raw)->mode & 07777 : 0;
  };
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        for (uint64_t ino : inodes) mode_of(ino);
      }
    });
  }
  int stale = 0;
  for (int round = 0; round < 3000; ++round) {
    uint64_t ino = inodes[round % inodes.size()];
    uint32_t mode = 0600 | (round % 2 ? 0044 : 0004);
    // Empty the cache now and then, so that readers fill it again.
    if (round % 3 == 0) store_->ForgetCachedStateForTest();
    ASSERT_TRUE(Commit(vol, op::SetAttr{ino, op::kSetMode, mode, 0, 0, 0, 0, 0, 0}).ok());
    stale += mode_of(ino) != mode;
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(0, stale) << "reads after a commit returned the value it replaced";
  EXPECT_TRUE(store_->VerifyVolume(vol).ok());
}

TEST_F(StoreTest, JournalScanReturnsTxnsInOrder) {
  Volume* vol = Create("j");
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Commit(vol, op::Mknod{1, "f" + std::to_string(i), vol->AllocateInode(), kTypeRegular, 0, 0, 0, ""}).ok());
  }
  std::vector<uint64_t> txids;
  ASSERT_TRUE(store_->ScanJournal(vol->id(), 3, [&](const Txn& t) {
    txids.push_back(t.txid);
    return true;
  }).ok());
  EXPECT_EQ((std::vector<uint64_t>{3, 4, 5, 6}), txids);
}

TEST_F(StoreTest, CommitsAreReadBeforeTheWriterWritesThem) {
  Volume* vol = Create("wb");
  store_->HoldWritesForTest(true);
  uint64_t f = vol->AllocateInode(), d = vol->AllocateInode();
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", f, kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "d", d, kTypeDir | 0755, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(Commit(vol, op::Rename{1, "f", d, "g", 0}).ok());
  // apply() of a later commit read the earlier ones' pending state: this one
  // fails only if it sees "f" gone.
  EXPECT_EQ(Code::kNotFound, Commit(vol, op::Unlink{1, "f", false}).code());

  std::string moved = key::Dirent(vol->id(), InodeId{d}, "g");
  EXPECT_TRUE(store_->Get(moved)->has_value());
  EXPECT_FALSE(store_->GetWrittenForTest(moved)->has_value()) << "the writer was held, yet the commit is in RocksDB";
  std::vector<std::string> names;
  std::string root = key::DirentPrefix(vol->id(), InodeId{1});
  ASSERT_TRUE(store_->Scan(root, key::PrefixEnd(root), [&](std::string_view k, std::string_view) {
    uint64_t cookie;
    std::string_view name;
    EXPECT_TRUE(key::SplitDirent(k, root.size(), &cookie, &name));
    names.emplace_back(name);
    return true;
  }).ok());
  EXPECT_EQ(std::vector<std::string>{"d"}, names);

  store_->HoldWritesForTest(false);
  ASSERT_TRUE(store_->Drain().ok());
  store_->ForgetCachedStateForTest();
  EXPECT_TRUE(store_->GetWrittenForTest(moved)->has_value());
  Position before = vol->position();
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  Volume* again = *store_->FindVolume("wb");
  EXPECT_EQ(before, again->position());
  EXPECT_TRUE(store_->VerifyVolume(again).ok());
}

TEST_F(StoreTest, AGroupWritesTheLastValueOfEveryKey) {
  Volume* vol = Create("group");
  uint64_t f = vol->AllocateInode();
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "f", f, kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  ASSERT_TRUE(store_->Drain().ok());
  // One group: the same inode, dirent and xattr keys change many times.
  store_->HoldWritesForTest(true);
  for (uint32_t i = 0; i < 40; ++i) {
    op::SetAttr mode;
    mode.ino = f;
    mode.mask = op::kSetMode;
    mode.mode = 0600 + i % 8;
    ASSERT_TRUE(Commit(vol, mode).ok());
    ASSERT_TRUE(Commit(vol, op::Mknod{1, "tmp", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
    ASSERT_TRUE(Commit(vol, op::Unlink{1, "tmp", false}).ok());
    ASSERT_TRUE(Commit(vol, op::SetXattr{f, "user.n", std::to_string(i), 0}).ok());
  }
  ASSERT_TRUE(Commit(vol, op::Mknod{1, "last", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok());
  std::string inode_key = key::Inode(vol->id(), InodeId{f});
  std::optional<std::string> inode_pending = *store_->Get(inode_key);
  store_->HoldWritesForTest(false);
  ASSERT_TRUE(store_->Drain().ok());
  store_->ForgetCachedStateForTest();
  EXPECT_EQ(inode_pending, *store_->GetWrittenForTest(inode_key));
  EXPECT_EQ(std::optional<std::string>("39"), *store_->GetWrittenForTest(key::Xattr(vol->id(), InodeId{f}, "user.n")));
  EXPECT_FALSE(store_->GetWrittenForTest(key::Dirent(vol->id(), InodeId{1}, "tmp"))->has_value());
  EXPECT_TRUE(store_->GetWrittenForTest(key::Dirent(vol->id(), InodeId{1}, "last"))->has_value());
  // The journal holds every txn of the group, and replaying it gives the stored state.
  EXPECT_EQ(1u + 1 + 160 + 1, vol->position().txid);  // init, f, the group, last
  EXPECT_TRUE(store_->VerifyVolume(vol).ok());
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_TRUE(store_->VerifyVolume(*store_->FindVolume("group")).ok());
}

TEST_F(StoreTest, ChunksOfAPendingCommitAreReadAndDeduplicated) {
  Volume* vol = Create("chunks");
  std::string body(kBlockSize, 'c');
  ChunkId id = HashChunk(body);
  store_->HoldWritesForTest(true);
  ChunkWrites writes;
  ASSERT_TRUE(store_->StageChunks({{id, body}}, false, &writes).ok());
  ASSERT_EQ(1u, writes.index.size());
  uint64_t f = vol->AllocateInode();
  Txn txn;
  txn.time_ns = NowNs();
  txn.ops = {op::Mknod{1, "f", f, kTypeRegular | 0644, 0, 0, 0, ""}};
  ASSERT_TRUE(vol->Commit(&txn, writes).ok());
  auto read = store_->ReadChunk(id);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(body, *read);
  ChunkWrites again;
  ASSERT_TRUE(store_->StageChunks({{id, body}}, false, &again).ok());
  EXPECT_TRUE(again.index.empty()) << "a pending chunk was stored twice";
  store_->HoldWritesForTest(false);
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_EQ(body, *store_->ReadChunk(id));
}

TEST_F(StoreTest, EntriesStagedBeforeAnotherCommitOfTheSameChunkAreDropped) {
  Volume* vol = Create("ahead");
  std::string a(kBlockSize, 'a'), b(kBlockSize, 'b'), c(kBlockSize, 'c');
  ChunkWrites early;  // staged ahead, before the same chunks were committed
  ASSERT_TRUE(store_->StageChunks({{HashChunk(b), b}, {HashChunk(a), a}, {HashChunk(c), c}}, false, &early).ok());
  ASSERT_EQ(3u, early.index.size());
  ASSERT_TRUE(store_->PutChunk(HashChunk(a), a).ok());  // stored
  ChunkWrites queued;
  store_->HoldWritesForTest(true);  // c's commit stays queued
  ASSERT_TRUE(store_->StageChunks({{HashChunk(c), c}}, false, &queued).ok());
  Txn txn;
  txn.time_ns = NowNs();
  txn.ops = {op::Mknod{1, "f", vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}};
  ASSERT_TRUE(vol->Commit(&txn, queued).ok());
  ASSERT_TRUE(store_->DropKnownChunks(&early).ok());
  store_->HoldWritesForTest(false);
  ASSERT_EQ(1u, early.index.size()) << "a stored (a) or queued (c) chunk's entry was kept";
  EXPECT_EQ(HashChunk(b).Bytes(), early.index[0].first);
  EXPECT_FALSE(early.index[0].second.empty());
}

TEST_F(StoreTest, ConcurrentCommitsAndSyncsLeaveEveryVolumeAtItsLastCommit) {
  // Committers, fsyncs (which write groups themselves) and the writer thread
  // all write groups; any two written out of order or at once would leave a
  // volume's stored position or state off its journal.
  constexpr int kVolumes = 4, kFiles = 150;
  std::vector<Volume*> vols;
  for (int v = 0; v < kVolumes; ++v) vols.push_back(Create("c" + std::to_string(v)));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int v = 0; v < kVolumes; ++v) {
    threads.emplace_back([&, vol = vols[v]] {
      for (int i = 0; i < kFiles; ++i) {
        std::string name = "f" + std::to_string(i);
        bool ok = Commit(vol, op::Mknod{1, name, vol->AllocateInode(), kTypeRegular | 0644, 0, 0, 0, ""}).ok() &&
                  Commit(vol, op::Rename{1, name, 1, "r" + name, 0}).ok() &&
                  (i % 3 != 0 || Commit(vol, op::Unlink{1, "r" + name, false}).ok()) &&
                  (i % 25 != 0 || store_->Sync().ok());
        if (!ok) failed = true;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 50; ++i) {
      if (!store_->Drain().ok()) failed = true;
    }
  });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed);
  std::vector<Position> positions;
  for (Volume* vol : vols) positions.push_back(vol->position());
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  for (int v = 0; v < kVolumes; ++v) {
    Volume* again = *store_->FindVolume("c" + std::to_string(v));
    EXPECT_EQ(positions[v], again->position());
    EXPECT_TRUE(store_->VerifyVolume(again).ok());
  }
}

}  // namespace
}  // namespace aspfs
