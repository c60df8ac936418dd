#include "journal/pending_state.h"

#include <gtest/gtest.h>

#include <map>

#include "journal/state.h"

namespace aspfs {
namespace {

using Found = std::optional<std::optional<std::string>>;

std::shared_ptr<const KeyChanges> Changes(KeyChanges changes) {
  return std::make_shared<const KeyChanges>(std::move(changes));
}

TEST(PendingStateTest, GetReturnsTheNewestPendingChange) {
  PendingState pending;
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(Found(), pending.Get("a"));
  pending.Add(1, Changes({{"a", "1"}, {"b", "x"}}));
  pending.Add(2, Changes({{"a", "2"}, {"b", std::nullopt}}));
  EXPECT_FALSE(pending.empty());
  EXPECT_EQ(Found(std::optional<std::string>("2")), pending.Get("a"));
  EXPECT_EQ(Found(std::optional<std::string>()), pending.Get("b"));  // a pending delete
  EXPECT_EQ(Found(), pending.Get("c"));
}

TEST(PendingStateTest, WrittenKeepsKeysThatALaterCommitChanged) {
  PendingState pending;
  pending.Add(1, Changes({{"a", "1"}, {"b", "1"}}));
  pending.Add(2, Changes({{"a", "2"}}));
  pending.Written(1);
  EXPECT_EQ(Found(std::optional<std::string>("2")), pending.Get("a"));
  EXPECT_EQ(Found(), pending.Get("b"));
  pending.Written(2);
  EXPECT_EQ(Found(), pending.Get("a"));
  EXPECT_TRUE(pending.empty());
}

TEST(PendingStateTest, WrittenForgetsEveryCommitUpToSeqAndRangeShowsTheNewest) {
  PendingState pending;
  pending.Add(1, Changes({{"k1", "1"}, {"k2", "1"}}));
  pending.Add(2, Changes({{"k2", "2"}, {"k3", "2"}}));
  pending.Add(3, Changes({{"k3", std::nullopt}, {"k4", "3"}}));
  std::vector<KeyChange> range = pending.Range("k", "l");
  EXPECT_EQ((std::vector<KeyChange>{{"k1", "1"}, {"k2", "2"}, {"k3", std::nullopt}, {"k4", "3"}}), range);
  pending.Written(2);  // a group of two commits
  EXPECT_EQ(Found(), pending.Get("k1"));
  EXPECT_EQ(Found(), pending.Get("k2"));
  EXPECT_EQ(Found(std::optional<std::string>()), pending.Get("k3"));
  EXPECT_EQ((std::vector<KeyChange>{{"k3", std::nullopt}, {"k4", "3"}}), pending.Range("k", "l"));
  pending.Written(3);
  EXPECT_TRUE(pending.empty());
  EXPECT_TRUE(pending.Range("", "z").empty());
}

TEST(PendingStateTest, RangeListsChangesInKeyOrderWithinBounds) {
  PendingState pending;
  pending.Add(1, Changes({{"k3", "c"}, {"k1", "a"}, {"j", "out"}, {"k2", std::nullopt}, {"l", "out"}}));
  std::vector<KeyChange> range = pending.Range("k", "l");
  ASSERT_EQ(3u, range.size());
  EXPECT_EQ("k1", range[0].first);
  EXPECT_EQ("k2", range[1].first);
  EXPECT_FALSE(range[1].second);
  EXPECT_EQ("k3", range[2].first);
}

using Entries = std::vector<std::pair<std::string, std::string>>;

// The base as a sorted map, scanned the way a StateReader scans.
Entries Merge(const std::map<std::string, std::string>& base,
                                                       const std::vector<KeyChange>& changes, size_t stop_after = 99) {
  Entries out;
  auto scan_base = [&](const StateReader::ScanFn& f) {
    for (const auto& [k, v] : base) {
      if (!f(k, v)) break;
    }
    return Status::Ok();
  };
  Status s = ScanWithChanges(scan_base, changes.begin(), changes.end(), [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return out.size() < stop_after;
  });
  EXPECT_TRUE(s.ok());
  return out;
}

TEST(ScanWithChangesTest, ChangesWinDeletesHideAndOrderHolds) {
  std::map<std::string, std::string> base = {{"b", "base"}, {"d", "base"}, {"f", "base"}};
  std::vector<KeyChange> changes = {{"a", "new"}, {"b", "changed"}, {"c", "new"}, {"d", std::nullopt},
                                    {"e", std::nullopt}, {"g", "new"}};
  Entries want = {
      {"a", "new"}, {"b", "changed"}, {"c", "new"}, {"f", "base"}, {"g", "new"}};
  EXPECT_EQ(want, Merge(base, changes));
  EXPECT_EQ(Entries(want.begin(), want.begin() + 2), Merge(base, changes, 2));
  EXPECT_EQ(Entries(want.begin(), want.begin() + 4), Merge(base, changes, 4));
  EXPECT_EQ((Entries{{"b", "base"}, {"d", "base"}, {"f", "base"}}), Merge(base, {}));
}

}  // namespace
}  // namespace aspfs
