#include "journal/check.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "journal/apply.h"

namespace aspfs {
namespace {

constexpr VolumeId kVol{3};

ChunkId Chunk(uint64_t n) { return ChunkId{0xc0ffee, n}; }

// States made by apply() itself, then checked; and the same states broken
// one relation at a time, which the check must name.
class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Do(op::InitVolume{0755, 0, 0, 0, 0}).ok()); }

  Status Do(Op op) {
    Txn txn;
    txn.txid = ++txid_;
    txn.time_ns = 1000 + txid_;
    txn.ops = {std::move(op)};
    StateDelta delta(&state_, 0);
    Status s = Apply(kVol, txn, &delta);
    if (s.ok()) delta.ApplyTo(&state_);
    return s;
  }
  void Must(Op op) {
    Status s = Do(std::move(op));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  StateCheck Check() {
    auto check = CheckVolumeState(kVol, state_);
    EXPECT_TRUE(check.ok()) << check.status().ToString();
    return check.ok() ? *check : StateCheck{};
  }

  void EditInode(uint64_t ino, const std::function<void(InodeRecord*)>& edit) {
    std::string k = key::Inode(kVol, InodeId{ino});
    auto rec = InodeRecord::Decode(**state_.Get(k));
    ASSERT_TRUE(rec.ok());
    edit(&*rec);
    state_.Put(k, rec->Encode());
  }
  void EditUsage(const std::function<void(UsageRecord*)>& edit) {
    auto usage = UsageRecord::Decode(**state_.Get(key::Usage(kVol)));
    ASSERT_TRUE(usage.ok());
    edit(&*usage);
    state_.Put(key::Usage(kVol), usage->Encode());
  }

  // root/d (2), root/d/f (3, also root/hard), root/e (4), root/big (5, blocks),
  // root/gone (6: unlinked, still open), root/s (7, symlink), root/d/sub (8).
  void MakeTree() {
    Must(op::Mknod{1, "d", 2, kTypeDir | 0755, 0, 0, 0, ""});
    Must(op::Mknod{2, "f", 3, kTypeRegular | 0644, 0, 0, 0, ""});
    Must(op::WriteInline{3, 0, "hello"});
    Must(op::Link{3, 1, "hard"});
    Must(op::Mknod{1, "e", 4, kTypeRegular | 0644, 0, 0, 0, ""});
    Must(op::SetXattr{4, "user.k", "v", 0});
    Must(op::Mknod{1, "big", 5, kTypeRegular | 0644, 0, 0, 0, ""});
    Must(op::SetBlocks{5, 3 * kBlockSize, {{0, Chunk(1), kBlockSize, {}}, {2, Chunk(2), kBlockSize, {}}}, true});
    Must(op::SetBlocks{5, 3 * kBlockSize, {{0, ChunkId{}, 0, {PagePatch{3, kPageSize, Chunk(3)}}}}, true});
    Must(op::Mknod{1, "gone", 6, kTypeRegular | 0644, 0, 0, 0, ""});
    Must(op::Unlink{1, "gone", false});
    Must(op::Mknod{1, "s", 7, kTypeSymlink | 0777, 0, 0, 0, "d/f"});
    Must(op::Mknod{2, "sub", 8, kTypeDir | 0700, 0, 0, 0, ""});
  }

  // The check's first problem, or "" when it finds none.
  std::string FirstProblem() {
    StateCheck check = Check();
    return check.ok() ? "" : check.problems.front();
  }

  MemState state_;
  uint64_t txid_ = 0;
};

TEST_F(CheckTest, StateMadeByApplyIsConsistentAndCounted) {
  MakeTree();
  StateCheck check = Check();
  EXPECT_TRUE(check.ok()) << check.Summary();
  EXPECT_EQ(8u, check.inodes);
  EXPECT_EQ(7u, check.entries);  // d, f, hard, e, big, s, sub
  EXPECT_EQ(2u, check.extents);
  EXPECT_EQ(1u, check.xattrs);
  EXPECT_EQ(1u, check.orphans);
  EXPECT_EQ((std::vector<ChunkId>{Chunk(1), Chunk(2), Chunk(3)}), check.chunks);
  EXPECT_EQ("consistent", check.Summary());
}

// Each case breaks one relation the way a bug in apply could; the check
// must name it.
TEST_F(CheckTest, EachBrokenRelationIsNamed) {
  struct Case {
    std::string name;
    std::function<void()> brk;
    std::string expect;  // a substring of the problems found
  };
  const std::vector<Case> cases = {
      {"entry gone, link count kept", [&] { state_.Delete(key::Dirent(kVol, InodeId{1}, "e")); },
       "counts 5 entries, holds 4"},
      {"link count one high", [&] { EditInode(3, [](InodeRecord* r) { r->nlink = 3; }); },
       "inode 3: nlink 3, but 2 entries name it"},
      {"unlinked file without orphan record", [&] { state_.Delete(key::Orphan(kVol, InodeId{6})); },
       "inode 6: nlink 0 without an orphan record"},
      {"orphan record of a linked file", [&] { state_.Put(key::Orphan(kVol, InodeId{4}), ""); },
       "inode 4: orphan record at nlink 1"},
      {"entry of the wrong type",
       [&] { state_.Put(key::Dirent(kVol, InodeId{1}, "e"), DirentRecord{4, kTypeFifo}.Encode()); },
       "inode 4: its entries give another file type"},
      {"entry naming no inode",
       [&] {
         state_.Put(key::Dirent(kVol, InodeId{1}, "e"), DirentRecord{99, kTypeRegular}.Encode());
         EditInode(4, [](InodeRecord* r) { r->nlink = 0; });
         state_.Put(key::Orphan(kVol, InodeId{4}), "");
       },
       "inode 99 is missing, but 1 entries name it"},
      {"directory's parent record disagrees", [&] { EditInode(8, [](InodeRecord* r) { r->parent = 1; }); },
       "inode 8: parent 1, but named in 2"},
      {"directory link count ignores a subdirectory", [&] { EditInode(2, [](InodeRecord* r) { r->nlink = 2; }); },
       "inode 2: nlink 2, but 2 + 1 subdirectories"},
      {"blocks past the size", [&] { EditInode(5, [](InodeRecord* r) { r->size = kBlockSize; }); },
       "inode 5: blocks reach byte 196608, past its size 65536"},
      {"charge differs from the data", [&] { EditInode(5, [](InodeRecord* r) { r->alloc_bytes -= 4096; }); },
       "inode 5: charges"},
      {"usage bytes differ from the charges", [&] { EditUsage([](UsageRecord* u) { u->bytes += 4096; }); },
       "usage counts"},
      {"usage inodes differ", [&] { EditUsage([](UsageRecord* u) { u->inodes -= 1; }); },
       "usage counts 7 inodes, the volume has 8"},
      {"next inode number in use", [&] { EditUsage([](UsageRecord* u) { u->next_ino = 8; }); },
       "next inode number 8 is in use"},
      {"entry filed under another name's cookie",
       [&] {
         std::string k = key::DirentFrom(kVol, InodeId{1}, DirentCookie("e") + 1) + "e";
         state_.Put(k, *state_.Get(key::Dirent(kVol, InodeId{1}, "e")).value());
         state_.Delete(key::Dirent(kVol, InodeId{1}, "e"));
       },
       "is not its name's"},
      {"xattr of a missing inode", [&] { state_.Put(key::Xattr(kVol, InodeId{77}, "user.x"), "1"); },
       "inode 77 is missing, but has xattrs"},
      {"blocks without the inode's blocks flag", [&] { EditInode(5, [](InodeRecord* r) { r->flags = 0; }); },
       "inode 5: has blocks its flags deny"},
      {"symlink target and size disagree", [&] { EditInode(7, [](InodeRecord* r) { r->size = 9; }); },
       "inode 7: symlink of size 9"},
      {"unknown key", [&] { state_.Put(key::VolumePrefix(kVol) + "Z", ""); }, "unknown tag 90"},
      {"two directories naming each other, away from the root",
       [&] {
         // root/d/sub becomes sub/d: d moves under sub, and the root lets go of d.
         state_.Delete(key::Dirent(kVol, InodeId{1}, "d"));
         state_.Put(key::Dirent(kVol, InodeId{8}, "d"), DirentRecord{2, kTypeDir}.Encode());
         EditInode(1, [](InodeRecord* r) {
           r->entries -= 1;
           r->nlink -= 1;
         });
         EditInode(8, [](InodeRecord* r) {
           r->entries = 1;
           r->nlink = 3;
         });
         EditInode(2, [](InodeRecord* r) { r->parent = 8; });
       },
       "directory not reachable from the root"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    state_ = MemState();
    txid_ = 0;
    ASSERT_TRUE(Do(op::InitVolume{0755, 0, 0, 0, 0}).ok());
    MakeTree();
    ASSERT_EQ("", FirstProblem());
    c.brk();
    StateCheck check = Check();
    ASSERT_FALSE(check.ok());
    EXPECT_NE(std::string::npos, check.Summary().find(c.expect)) << check.Summary();
  }
}

TEST_F(CheckTest, SummaryListsTheFirstProblemsAndCountsTheRest) {
  for (uint64_t ino = 100; ino < 130; ++ino) state_.Put(key::Orphan(kVol, InodeId{ino}), "");
  StateCheck check = Check();
  EXPECT_EQ(30u, check.problem_count);
  EXPECT_EQ(StateCheck::kMaxListed, check.problems.size());
  std::string summary = check.Summary();
  EXPECT_EQ(0u, summary.find("30 problems: inode 1")) << summary;
  EXPECT_NE(std::string::npos, summary.find("(and 10 more)")) << summary;
  EXPECT_EQ(std::string::npos, summary.find('\n'));
}

// Random ops through apply() (refusals included) never leave a state the
// check faults: apply keeps every relation, whatever the order of ops.
TEST_F(CheckTest, RandomOpsKeepEveryRelation) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  const std::vector<std::string> names = {"a", "b", "c", "d"};
  uint64_t next_ino = 2;
  // Every directory and inode made; ops on removed ones fail, as they may.
  std::vector<uint64_t> dirs = {1}, inodes = {1};
  auto any_dir = [&] { return dirs[pick(dirs.size())]; };
  auto any_ino = [&] { return inodes[pick(inodes.size())]; };
  auto any_name = [&] { return names[pick(names.size())]; };
  int applied = 0;
  const int kSteps = 4000;
  for (int step = 0; step < kSteps; ++step) {
    Op op;
    switch (pick(11)) {
      case 0:
      case 1: {
        const uint32_t types[] = {kTypeRegular, kTypeDir, kTypeSymlink, kTypeFifo};
        uint32_t type = types[pick(4)];
        // Now and then no name: an O_TMPFILE file.
        std::string name = type == kTypeRegular && pick(6) == 0 ? "" : any_name();
        op = op::Mknod{any_dir(), name, next_ino, type | 0644, 0, 0, 0, type == kTypeSymlink ? "t" : ""};
        break;
      }
      case 2: op = op::Link{any_ino(), any_dir(), any_name()}; break;
      case 3: op = op::Unlink{any_dir(), any_name(), pick(2) == 0}; break;
      case 4:
      case 5: op = op::Rename{any_dir(), any_name(), any_dir(), any_name(), static_cast<uint32_t>(pick(3))}; break;
      case 6: op = op::WriteInline{any_ino(), pick(100), std::string(1 + pick(3000), 'x')}; break;
      case 7: {
        op::SetBlocks b{any_ino(), 0, {}, true};
        uint64_t block = pick(4);
        if (pick(3) == 0) {
          b.blocks.push_back({block, ChunkId{}, 0, {PagePatch{static_cast<uint32_t>(pick(16)), 1 + static_cast<uint32_t>(pick(4096)), Chunk(pick(50) + 1)}}});
        } else {
          b.blocks.push_back({block, pick(5) == 0 ? ChunkId{} : Chunk(pick(50) + 1), 1 + static_cast<uint32_t>(pick(kBlockSize)), {}});
        }
        b.size = (block + 1 + pick(4)) * kBlockSize;
        op = std::move(b);
        break;
      }
      case 8: op = op::SetAttr{any_ino(), op::kSetSize, 0, 0, 0, pick(5 * kBlockSize), 0, 0, 0}; break;
      case 9: op = pick(2) ? Op(op::SetXattr{any_ino(), "user." + any_name(), "v", 0}) : Op(op::RemoveXattr{any_ino(), "user." + any_name()}); break;
      case 10: op = op::Purge{any_ino()}; break;
    }
    if (Do(op).ok()) {
      ++applied;
      if (const auto* m = std::get_if<op::Mknod>(&op)) {
        inodes.push_back(next_ino);
        if ((m->mode & kTypeMask) == kTypeDir) dirs.push_back(next_ino);
        ++next_ino;
      }
    }
    if (step % 25 == 0 || step == kSteps - 1) {
      StateCheck check = Check();
      ASSERT_TRUE(check.ok()) << "after step " << step << ": " << check.Summary();
    }
  }
  EXPECT_GT(applied, kSteps / 10);  // the walk did change the state (typically a quarter applies)
}

}  // namespace
}  // namespace aspfs
