#include "journal/chunk.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>

namespace aspfs {

ChunkId HashChunk(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  ChunkId id{h.high64, h.low64};
  // The zero id means "hole"; a real chunk never takes it.
  if (id.IsZero()) id.lo = 1;
  return id;
}

std::string EncodeChunk(std::string_view data) {
  std::string out(5 + ZSTD_compressBound(data.size()), '\0');
  uint32_t len = static_cast<uint32_t>(data.size());
  memcpy(&out[1], &len, 4);
  size_t n = ZSTD_compress(&out[5], out.size() - 5, data.data(), data.size(), 1);
  if (ZSTD_isError(n) || n >= data.size()) {
    out[0] = 0;
    out.resize(5);
    out.append(data);
  } else {
    out[0] = 1;
    out.resize(5 + n);
  }
  return out;
}

Result<std::string> DecodeChunk(const ChunkId& id, std::string_view body) {
  if (body.size() < 5) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " is truncated");
  uint32_t len;
  memcpy(&len, body.data() + 1, 4);
  if (len > kBlockSize) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " has a bad length");
  std::string data;
  if (body[0] == 0) {
    data.assign(body.substr(5));
  } else if (body[0] == 1) {
    data.resize(len);
    size_t n = ZSTD_decompress(data.data(), len, body.data() + 5, body.size() - 5);
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
