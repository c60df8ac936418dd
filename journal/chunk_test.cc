#include "journal/chunk.h"

#include <gtest/gtest.h>

namespace aspfs {
namespace {

TEST(ChunkTest, SameBytesSameIdDifferentBytesDifferentId) {
  std::string a(65536, 'a'), b = a;
  b[100] = 'b';
  EXPECT_EQ(HashChunk(a), HashChunk(std::string(65536, 'a')));
  EXPECT_FALSE(HashChunk(a) == HashChunk(b));
  EXPECT_FALSE(HashChunk("").IsZero());
}

TEST(ChunkTest, CompressesAndRoundTrips) {
  std::string repetitive(65536, 'z');
  std::string body = EncodeChunk(repetitive);
  EXPECT_LT(body.size(), 1000u);
  EXPECT_EQ(repetitive, *DecodeChunk(HashChunk(repetitive), body));

  std::string random(4096, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : random) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  body = EncodeChunk(random);
  EXPECT_EQ(0, body[0]);  // incompressible: stored raw
  EXPECT_EQ(random, *DecodeChunk(HashChunk(random), body));
}

TEST(ChunkTest, EntropySampleSkipsCompressionOfRandomDataOnly) {
  std::string random(kBlockSize, '\0');
  uint64_t x = 42;
  for (char& c : random) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  EXPECT_TRUE(LooksIncompressible(random));
  // Random data with one fixed byte in every 16 (a record layout): the sample
  // must not keep landing on that byte.
  std::string records = random;
  for (size_t i = 0; i < records.size(); i += 16) records[i] = 'R';
  EXPECT_TRUE(LooksIncompressible(records));
  std::string text;
  while (text.size() < kBlockSize) text += "line " + std::to_string(text.size() * 7919 % 100003) + " of a log file\n";
  text.resize(kBlockSize);
  EXPECT_FALSE(LooksIncompressible(text));
  EXPECT_FALSE(LooksIncompressible(std::string(kBlockSize, '\0')));
  std::string body = EncodeChunk(text);
  EXPECT_EQ(1, body[0]);
  EXPECT_LT(body.size(), text.size() / 2);
  auto decoded = DecodeChunk(HashChunk(text), body);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(text, *decoded);
}

TEST(ChunkTest, DetectsCorruption) {
  std::string data = "some file data, repeated, repeated, repeated, repeated";
  ChunkId id = HashChunk(data);
  std::string body = EncodeChunk(data);
  for (size_t i = 0; i < body.size(); ++i) {
    std::string bad = body;
    bad[i] ^= 0x01;
    // A flip either fails the check or (in bits zstd ignores) changes nothing:
    // wrong bytes are never served.
    auto r = DecodeChunk(id, bad);
    if (r.ok()) {
      EXPECT_EQ(data, *r) << "flip at " << i << " served wrong data";
    } else {
      EXPECT_EQ(Code::kCorrupt, r.status().code());
    }
  }
  EXPECT_EQ(Code::kCorrupt, DecodeChunk(id, "").status().code());
  EXPECT_EQ(Code::kCorrupt, DecodeChunk(HashChunk("other"), body).status().code());
}

}  // namespace
}  // namespace aspfs
