#include "journal/state.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "journal/format.h"

namespace aspfs {
namespace {

constexpr VolumeId kVol{7};

std::string Key(uint64_t ino) { return key::Inode(kVol, InodeId{ino}); }

uint64_t FullChecksum(const MemState& state) {
  uint64_t sum = 0;
  for (const auto& [k, v] : state.entries()) sum ^= EntryHash(k, v);
  return sum;
}

std::vector<std::pair<std::string, std::string>> ScanAll(const StateReader& reader) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string prefix = key::VolumePrefix(kVol);
  Status s = reader.Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(StateDeltaTest, ReadsItsOwnWritesScansMergedAndKeepsTheChecksum) {
  MemState base;
  for (uint64_t ino : {2, 4, 6, 8}) base.Put(Key(ino), "base" + std::to_string(ino));
  StateDelta delta(&base, FullChecksum(base));
  ASSERT_EQ("base4", **delta.Get(Key(4)));  // read before the write below
  ASSERT_TRUE(delta.Put(Key(4), "new4").ok());
  ASSERT_TRUE(delta.Put(Key(5), "new5").ok());
  ASSERT_TRUE(delta.PutAbsent(Key(9), "new9").ok());
  ASSERT_TRUE(delta.Delete(Key(6)).ok());
  ASSERT_TRUE(delta.Delete(Key(7)).ok());  // absent: nothing to do
  ASSERT_TRUE(delta.Put(Key(5), "newer5").ok());
  EXPECT_EQ("new4", **delta.Get(Key(4)));
  EXPECT_EQ("newer5", **delta.Get(Key(5)));
  EXPECT_FALSE(delta.Get(Key(6))->has_value());
  EXPECT_EQ("base8", **delta.Get(Key(8)));
  EXPECT_FALSE(delta.Put("outside", "x").ok());

  MemState want = base;
  want.Put(Key(4), "new4");
  want.Put(Key(5), "newer5");
  want.Put(Key(9), "new9");
  want.Delete(Key(6));
  EXPECT_EQ(ScanAll(want), ScanAll(delta));
  EXPECT_EQ(FullChecksum(want), delta.checksum());

  MemState applied = base;
  delta.ApplyTo(&applied);
  EXPECT_EQ(want.entries(), applied.entries());

  // Each changed key once; reads are not changes.
  std::vector<KeyChange> changes = delta.ReleaseChanges();
  std::sort(changes.begin(), changes.end());
  ASSERT_EQ(4u, changes.size());
  EXPECT_EQ(Key(4), changes[0].first);
  EXPECT_EQ(Key(5), changes[1].first);
  EXPECT_EQ(Key(6), changes[2].first);
  EXPECT_FALSE(changes[2].second.has_value());
  EXPECT_EQ(Key(9), changes[3].first);
}

TEST(DirentKeyTest, EntriesSortByCookieAndSplitBackIntoCookieAndName) {
  const std::string prefix = key::DirentPrefix(kVol, InodeId{5});
  std::vector<std::pair<std::string, std::string>> keys;  // key, name
  const std::vector<std::string> names = {"a", "b", "file.txt", "x", std::string(255, 'n')};
  for (const std::string& name : names) {
    keys.emplace_back(key::Dirent(kVol, InodeId{5}, name), name);
  }
  std::sort(keys.begin(), keys.end());
  uint64_t last = 0;
  for (const auto& [k, name] : keys) {
    ASSERT_EQ(0u, k.compare(0, prefix.size(), prefix));
    uint64_t cookie;
    std::string_view split;
    ASSERT_TRUE(key::SplitDirent(k, prefix.size(), &cookie, &split));
    EXPECT_EQ(name, split);
    EXPECT_EQ(DirentCookie(name), cookie);
    EXPECT_GE(cookie, 3u);  // 1 and 2 are "." and ".."
    EXPECT_LT(cookie, uint64_t{1} << 63);  // a positive off_t
    EXPECT_GT(cookie, last);
    last = cookie;
    // A scan from an entry's cookie starts at that entry.
    EXPECT_LE(key::DirentFrom(kVol, InodeId{5}, cookie), k);
    EXPECT_GT(key::DirentFrom(kVol, InodeId{5}, cookie + 1), k);
  }
  uint64_t cookie;
  std::string_view name;
  EXPECT_FALSE(key::SplitDirent(prefix + "short", prefix.size(), &cookie, &name));
}

}  // namespace
}  // namespace aspfs
