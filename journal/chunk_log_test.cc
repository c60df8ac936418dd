#include "journal/chunk_log.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "journal/chunk.h"

namespace aspfs {
namespace {

class ChunkLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/aspfs-chunklog-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(ChunkLogTest, AppendReadAcrossReopen) {
  std::vector<std::pair<ChunkLocation, std::string>> written;
  {
    auto log = ChunkLog::Open(dir_);
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 50; ++i) {
      std::string body = EncodeChunk(std::string(1000 + i * 37, static_cast<char>('a' + i % 26)));
      auto loc = (*log)->Append(HashChunk(body), body);
      ASSERT_TRUE(loc.ok());
      written.emplace_back(*loc, body);
    }
    ASSERT_TRUE((*log)->Sync().ok());
  }
  auto log = ChunkLog::Open(dir_);
  ASSERT_TRUE(log.ok());
  for (auto& [loc, body] : written) {
    auto back = (*log)->Read(*ChunkLocation::Decode(loc.Encode()));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(body, *back);
  }
  // New appends go after the old ones, never over them.
  auto more = (*log)->Append(ChunkId{1, 1}, "xyz");
  ASSERT_TRUE(more.ok());
  EXPECT_GT(more->offset, written.back().first.offset);
  EXPECT_EQ(written[0].second, *(*log)->Read(written[0].first));
}

TEST_F(ChunkLogTest, AppendAllWritesManyRecordsInFewCalls) {
  auto log = ChunkLog::Open(dir_);
  ASSERT_TRUE(log.ok());
  // More pieces than one pwritev takes (IOV_MAX), and an empty tail.
  std::vector<std::string> heads, tails;
  for (int i = 0; i < 700; ++i) {
    heads.push_back("h" + std::to_string(i));
    tails.push_back(i % 7 == 0 ? "" : std::string(100 + i, static_cast<char>('a' + i % 26)));
  }
  std::vector<ChunkLog::Piece> pieces;
  for (int i = 0; i < 700; ++i) pieces.push_back({ChunkId{1, static_cast<uint64_t>(i + 1)}, heads[i], tails[i]});
  auto locs = (*log)->AppendAll(pieces);
  ASSERT_TRUE(locs.ok()) << locs.status().ToString();
  ASSERT_EQ(700u, locs->size());
  for (int i = 0; i < 700; ++i) {
    auto back = (*log)->Read((*locs)[i]);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(heads[i] + tails[i], *back) << i;
  }
  EXPECT_TRUE((*log)->AppendAll({}).ok());
}

TEST_F(ChunkLogTest, BadLocationsAreErrorsNotCrashes) {
  auto log = ChunkLog::Open(dir_);
  ASSERT_TRUE(log.ok());
  EXPECT_FALSE((*log)->Read(ChunkLocation{99, 0, 10}).ok());
  EXPECT_EQ(Code::kCorrupt, (*log)->Read(ChunkLocation{1, 1 << 20, 10}).status().code());
  EXPECT_FALSE(ChunkLocation::Decode("short").ok());
  EXPECT_FALSE(ChunkLocation::Decode(std::string(16, '\0')).ok());
}

}  // namespace
}  // namespace aspfs
