// Content-addressed chunks (invariant 5): a chunk's id is the xxh3-128 of its
// uncompressed bytes; its stored body is zstd-compressed (or raw when that
// does not shrink it). Pure functions; the store keeps the bodies.
#pragma once

#include <string>
#include <string_view>

#include "journal/format.h"
#include "journal/status.h"

namespace aspfs {

ChunkId HashChunk(std::string_view data);
// A block of length zeros, and whether ext is one: how fallocate reserves
// room (one shared chunk), and what SEEK_DATA and SEEK_HOLE count as a hole,
// as ext4 counts unwritten extents.
std::string_view ZeroBlock();  // kBlockSize zeros
bool IsZeroFill(const ExtentRecord& ext);
// Stored body: 1 format byte (0 raw, 1 zstd), 4-byte little-endian length, payload.
// Data that looks incompressible (LooksIncompressible) is stored raw without trying.
std::string EncodeChunk(std::string_view data);

// The same body as its header and its payload, so that a raw payload is the
// caller's data, never copied; valid while that data lives.
class EncodedChunk {
 public:
  explicit EncodedChunk(std::string_view data);
  std::string_view header() const { return header_; }
  std::string_view payload() const { return raw_ ? data_ : std::string_view(compressed_); }
  size_t size() const { return header_.size() + payload().size(); }

 private:
  std::string_view data_;
  bool raw_ = true;
  std::string header_;
  std::string compressed_;
};
bool LooksIncompressible(std::string_view data);
// Decodes a stored body and checks it against its id: a mismatch is kCorrupt.
Result<std::string> DecodeChunk(const ChunkId& id, std::string_view body);
inline constexpr size_t kChunkHeaderSize = 5;
// The same, for a body read as its header and its payload apart.
Result<std::string> DecodeChunk(const ChunkId& id, std::string_view header, std::string payload);

}  // namespace aspfs
