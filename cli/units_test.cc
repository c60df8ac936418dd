#include "cli/units.h"

#include <gtest/gtest.h>

namespace aspfs {
namespace {

TEST(UnitsTest, ParsesSuffixes) {
  EXPECT_EQ(512u, ParseSize("512"));
  EXPECT_EQ(10ull << 10, ParseSize("10K"));
  EXPECT_EQ(3ull << 20, ParseSize("3M"));
  EXPECT_EQ(2ull << 30, ParseSize("2G"));
  EXPECT_EQ(2ull << 30, ParseSize("2GiB"));
  EXPECT_EQ(1ull << 40, ParseSize("1t"));
  EXPECT_FALSE(ParseSize(""));
  EXPECT_FALSE(ParseSize("G"));
  EXPECT_FALSE(ParseSize("12Q"));
  EXPECT_FALSE(ParseSize("-5"));
  EXPECT_FALSE(ParseSize("99999999999999999999"));
  EXPECT_FALSE(ParseSize("20000000T"));
}

TEST(UnitsTest, FormatsHumanSizes) {
  EXPECT_EQ("0", FormatSize(0));
  EXPECT_EQ("1023", FormatSize(1023));
  EXPECT_EQ("1.0K", FormatSize(1024));
  EXPECT_EQ("1.5M", FormatSize(3 << 19));
  EXPECT_EQ("10G", FormatSize(10ull << 30));
}

}  // namespace
}  // namespace aspfs
