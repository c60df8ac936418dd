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

}  // namespace
}  // namespace aspfs
