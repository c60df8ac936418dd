#include "journal/state_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace aspfs {
namespace {

using Value = std::optional<std::string>;

TEST(StateCacheTest, MissThenFillThenHit) {
  StateCache cache(1 << 20);
  EXPECT_FALSE(cache.Lookup("k").has_value());
  cache.Fill("k", cache.Snapshot("k"), Value("v"));
  auto hit = cache.Lookup("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(Value("v"), *hit);
}

TEST(StateCacheTest, RemembersAbsence) {
  StateCache cache(1 << 20);
  cache.Fill("k", cache.Snapshot("k"), std::nullopt);
  auto hit = cache.Lookup("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_FALSE(hit->has_value());
}

TEST(StateCacheTest, FillAfterAConcurrentCommitIsRefused) {
  StateCache cache(1 << 20);
  uint64_t snapshot = cache.Snapshot("k");  // a reader starts: RocksDB still says "old"
  cache.Update("k", Value("new"));          // a commit lands meanwhile
  cache.Fill("k", snapshot, Value("old"));  // the reader's stale answer arrives
  EXPECT_EQ(Value("new"), *cache.Lookup("k"));
}

TEST(StateCacheTest, UpdateAndDeleteReplaceTheCachedValue) {
  StateCache cache(1 << 20);
  cache.Fill("k", cache.Snapshot("k"), Value("a"));
  cache.Update("k", Value("b"));
  EXPECT_EQ(Value("b"), *cache.Lookup("k"));
  cache.Update("k", std::nullopt);
  EXPECT_EQ(Value(), *cache.Lookup("k"));
}

TEST(StateCacheTest, InvalidateAndClearForget) {
  StateCache cache(1 << 20);
  cache.Update("a", Value("1"));
  cache.Update("b", Value("2"));
  cache.Invalidate("a");
  EXPECT_FALSE(cache.Lookup("a").has_value());
  EXPECT_TRUE(cache.Lookup("b").has_value());
  cache.Clear();
  EXPECT_FALSE(cache.Lookup("b").has_value());
  EXPECT_EQ(0u, cache.bytes());
}

TEST(StateCacheTest, StaysWithinItsCapacityAndKeepsRecentKeys) {
  const size_t capacity = 256 << 10;
  StateCache cache(capacity);
  std::string value(200, 'x');
  for (int i = 0; i < 20000; ++i) {
    cache.Update("key" + std::to_string(i), value);
    ASSERT_LE(cache.bytes(), capacity);
  }
  EXPECT_TRUE(cache.Lookup("key19999").has_value());
  EXPECT_FALSE(cache.Lookup("key0").has_value());
}

TEST(StateCacheTest, KeysReadSinceTheLastSweepOutliveUnreadOnes) {
  // About 40 entries a shard (64 shards); each entry charges about 240 bytes.
  // Keys are spread over the shards by hash: some shards evict earlier.
  StateCache cache(64 * 40 * 240);
  std::string value(100, 'v');
  auto key = [](int i) { return "k" + std::to_string(100000 + i); };
  const int kOld = 64 * 30;  // fits
  for (int i = 0; i < kOld; ++i) cache.Update(key(i), value);
  for (int i = 0; i < kOld; i += 2) cache.Lookup(key(i));  // even keys are read
  // 20 new entries a shard: half the old ones must go.
  for (int i = kOld; i < kOld + 64 * 20; ++i) cache.Update(key(i), value);
  int even_kept = 0, odd_kept = 0;
  for (int i = 0; i < kOld; ++i) {
    if (cache.Lookup(key(i)).has_value()) (i % 2 == 0 ? even_kept : odd_kept) += 1;
  }
  // Without second chances both halves would go alike.
  EXPECT_GT(even_kept, 2 * odd_kept) << "even " << even_kept << " odd " << odd_kept;
  EXPECT_LT(even_kept + odd_kept, kOld);
}

}  // namespace
}  // namespace aspfs
