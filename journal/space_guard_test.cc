#include "journal/space_guard.h"

#include <gtest/gtest.h>

#include <vector>

namespace aspfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A file system of 1 GiB whose free space the test sets, on a clock the
// test moves.
class SpaceGuardTest : public ::testing::Test {
 protected:
  SpaceGuardTest()
      : guard_([this]() -> Result<DiskSpace> {
                 ++probes_;
                 if (broken_) return Error(Code::kIo, "statvfs: broken");
                 return DiskSpace{1024 * kMiB, free_};
               },
               [this] { return now_; }) {
    guard_.SetOnChange([this](bool full, const std::string& why) { changes_.push_back((full ? "full: " : "room: ") + why); });
  }
  void Later() { now_ += SpaceGuard::kProbeIntervalNs; }

  uint64_t free_ = 500 * kMiB;
  int64_t now_ = 1;
  int probes_ = 0;
  bool broken_ = false;
  std::vector<std::string> changes_;
  SpaceGuard guard_;
};

TEST_F(SpaceGuardTest, DataStopsAtTheReserveMetadataAtItsHalf) {
  // Reserve: 5% of 1 GiB = 51 MiB.
  free_ = 60 * kMiB;
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, 8 * kMiB).ok());
  EXPECT_EQ(1024 * kMiB / 20, guard_.report().reserve_bytes);
  Status refused = guard_.Reserve(SpaceGuard::Use::kData, 2 * kMiB);
  EXPECT_EQ(Code::kNoSpace, refused.code());
  EXPECT_NE(std::string::npos, refused.message().find("store disk full (52 MiB free, 51 MiB kept in reserve)"))
      << refused.ToString();
  // rm and friends go on into the lower half of the reserve...
  for (int i = 0; i < 26; ++i) EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kMetadata, kMiB).ok()) << i;
  EXPECT_TRUE(guard_.report().full);
  // ...and stop there.
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kMetadata, kMiB).code());
  EXPECT_EQ(1, probes_);  // all within one probe interval
}

TEST_F(SpaceGuardTest, FreedSpaceIsSeenAtTheNextProbeAndBothFlipsAreReported) {
  free_ = 40 * kMiB;
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, 4096).code());
  free_ = 300 * kMiB;  // the operator cleans up
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, 4096).code());  // not probed yet
  Later();
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, 4096).ok());
  EXPECT_FALSE(guard_.report().full);
  ASSERT_EQ(2u, changes_.size());
  EXPECT_EQ(0u, changes_[0].find("full: store disk full: 40 MiB free, 51 MiB kept in reserve")) << changes_[0];
  EXPECT_EQ(0u, changes_[1].find("room: store disk has room again: 300 MiB free")) << changes_[1];
}

TEST_F(SpaceGuardTest, ADiskAtTheEdgeDoesNotFlipAtEveryProbe) {
  free_ = 52 * kMiB;  // just above the 51.2 MiB reserve
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kMetadata, 2 * kMiB).ok());
  EXPECT_TRUE(guard_.report().full);
  for (int i = 0; i < 5; ++i) {
    Later();
    EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kMetadata, 2 * kMiB).ok()) << i;  // each probe: 52 MiB again
  }
  EXPECT_EQ(1u, changes_.size());
  Later();
  free_ = 70 * kMiB;  // past reserve + a quarter (64 MiB)
  EXPECT_FALSE(guard_.report().full);
  EXPECT_EQ(2u, changes_.size());
}

TEST_F(SpaceGuardTest, WritesCountDownBetweenProbes) {
  free_ = 100 * kMiB;
  for (int i = 0; i < 48; ++i) ASSERT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, kMiB).ok()) << i;
  // 52 MiB left by the count, though the file system was not asked again.
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, 2 * kMiB).code());
  EXPECT_EQ(1, probes_);
}

TEST_F(SpaceGuardTest, RefusedDataStaysRefusedUntilThereIsRoomAgain) {
  free_ = 50 * kMiB;  // below the 51.2 MiB reserve
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, kMiB).code());
  EXPECT_TRUE(guard_.report().full);
  Later();
  free_ = 56 * kMiB;  // above the reserve, below reserve + a quarter: what report() calls full is refused
  EXPECT_TRUE(guard_.report().full);
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, kMiB).code());
  Later();
  free_ = 70 * kMiB;
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, kMiB).ok());
}

// Buffered file data is promised its space when written and written later:
// a probe in between must not hand that space out again.
TEST_F(SpaceGuardTest, PromisedSpaceOutlivesProbesUntilSettledOrReleased) {
  free_ = 100 * kMiB;
  ASSERT_TRUE(guard_.Promise(40 * kMiB).ok());
  Later();  // the disk still shows 100 MiB free: nothing was written yet
  EXPECT_EQ(Code::kNoSpace, guard_.Reserve(SpaceGuard::Use::kData, 10 * kMiB).code());
  EXPECT_EQ(Code::kNoSpace, guard_.Promise(10 * kMiB).code());
  // Written: 30 MiB of the 40 (compressed, deduplicated); the rest is free again.
  guard_.Settle(40 * kMiB, 30 * kMiB);
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, 10 * kMiB).ok());
  ASSERT_TRUE(guard_.Promise(5 * kMiB).ok());
  guard_.Release(5 * kMiB);  // dropped (truncated away) before it was written
  free_ = 60 * kMiB;
  Later();
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, 8 * kMiB).ok());
}

TEST_F(SpaceGuardTest, AFileSystemThatCannotSayIsNotStopped) {
  broken_ = true;
  free_ = 0;
  EXPECT_TRUE(guard_.Reserve(SpaceGuard::Use::kData, kMiB).ok());
  EXPECT_TRUE(changes_.empty());
}

}  // namespace
}  // namespace aspfs
