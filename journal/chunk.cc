#include "journal/chunk.h"

#include <xxhash.h>
#include <zstd.h>

#include <array>
#include <cmath>
#include <cstring>
#include <memory>

namespace aspfs {

ChunkId HashChunk(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  ChunkId id{h.high64, h.low64};
  // The zero id means "hole"; a real chunk never takes it.
  if (id.IsZero()) id.lo = 1;
  return id;
}

std::string_view ZeroBlock() {
  static const std::string zeros(kBlockSize, '\0');
  return zeros;
}

bool IsZeroFill(const ExtentRecord& ext) {
  if (!ext.patches.empty() || ext.length == 0) return false;
  static const ChunkId whole = HashChunk(ZeroBlock());
  if (ext.chunk == whole) return true;  // clipped by a truncate or not
  return ext.length < kBlockSize && ext.chunk == HashChunk(ZeroBlock().substr(0, ext.length));
}

bool LooksIncompressible(std::string_view data) {
  // Shannon entropy of the byte histogram of an evenly spread sample, as
  // btrfs's heuristic: media, archives and random data sit near 8 bits per
  // byte; text and binaries well below.
  constexpr size_t kSamples = 4096;
  constexpr double kMaxBitsPerByte = 7.5;
  if (data.size() < kSamples) return false;
  std::array<uint32_t, 256> histogram{};
  // An odd stride: an even one samples the same byte of every machine word.
  size_t stride = (data.size() / kSamples - 1) | 1;
  for (size_t i = 0; i < kSamples; ++i) ++histogram[static_cast<unsigned char>(data[i * stride])];
  double bits = 0;
  for (uint32_t count : histogram) {
    if (count == 0) continue;
    double p = static_cast<double>(count) / kSamples;
    bits -= p * std::log2(p);
  }
  return bits > kMaxBitsPerByte;
}

EncodedChunk::EncodedChunk(std::string_view data) : data_(data) {
  uint32_t len = static_cast<uint32_t>(data.size());
  if (!LooksIncompressible(data)) {
    // A compression context per thread: ZSTD_compress() would build and tear
    // down one (and its tables) for every chunk.
    thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    compressed_.resize(ZSTD_compressBound(data.size()));
    size_t n = ZSTD_compressCCtx(cctx.get(), compressed_.data(), compressed_.size(), data.data(), data.size(), 1);
    raw_ = ZSTD_isError(n) || n >= data.size();
    compressed_.resize(raw_ ? 0 : n);
  }
  header_.push_back(raw_ ? 0 : 1);
  header_.append(reinterpret_cast<const char*>(&len), 4);
}

std::string EncodeChunk(std::string_view data) {
  EncodedChunk chunk(data);
  std::string out(chunk.header());
  out.append(chunk.payload());
  return out;
}

Result<std::string> DecodeChunk(const ChunkId& id, std::string_view body) {
  if (body.size() < kChunkHeaderSize) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " is truncated");
  return DecodeChunk(id, body.substr(0, kChunkHeaderSize), std::string(body.substr(kChunkHeaderSize)));
}

Result<std::string> DecodeChunk(const ChunkId& id, std::string_view header, std::string payload) {
  if (header.size() != kChunkHeaderSize) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " is truncated");
  uint32_t len;
  memcpy(&len, header.data() + 1, 4);
  if (len > kBlockSize) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " has a bad length");
  std::string data;
  if (header[0] == 0) {
    data = std::move(payload);
  } else if (header[0] == 1) {
    data.resize(len);
    thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    size_t n = ZSTD_decompressDCtx(dctx.get(), data.data(), len, payload.data(), payload.size());
    if (ZSTD_isError(n)) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " does not decompress");
    data.resize(n);
  } else {
    return Error(Code::kCorrupt, "chunk " + id.ToHex() + " has an unknown format");
  }
  if (data.size() != len || !(HashChunk(data) == id)) {
    return Error(Code::kCorrupt, "chunk " + id.ToHex() + " fails its hash check");
  }
  return data;
}

}  // namespace aspfs
