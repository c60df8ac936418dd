// ChunkLog: the node's chunk bodies in append-only files
// (STORE/chunks/NNNNNNNN.log), written once, outside the RocksDB WAL, so file
// data is written to disk once rather than twice (WAL, then blob file). The
// chunk_index column family maps a chunk id to its Location.
//
// Record: 16-byte chunk id, 4-byte little-endian body length, body
// (journal/chunk.h). A torn record at a file's tail after a crash is never
// referenced: the index entry is written after the body.
//
// Thread-safety: Append, Read and Sync may run concurrently; mu_ guards the
// files and the append position.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "journal/format.h"
#include "journal/status.h"

namespace aspfs {

struct ChunkLocation {
  // A body kept in the chunk index entry itself, after the location (small
  // chunks of fsynced commits); log files are numbered from 1.
  static constexpr uint32_t kInIndex = 0;
  static constexpr size_t kEncodedSize = 16;
  uint32_t file = 0;
  uint64_t offset = 0;  // of the body
  uint32_t length = 0;  // of the body
  std::string Encode() const;
  static Result<ChunkLocation> Decode(std::string_view bytes);
};

class ChunkLog {
 public:
  ~ChunkLog();
  static Result<std::unique_ptr<ChunkLog>> Open(const std::string& dir);

  Result<ChunkLocation> Append(const ChunkId& id, std::string_view body);
  // A record's body given as two pieces (head + tail), written without
  // joining them.
  struct Piece {
    ChunkId id;
    std::string_view head, tail;
  };
  // Several records in one contiguous range, with few pwritev calls (a
  // commit's many small chunks); locations in the order given.
  Result<std::vector<ChunkLocation>> AppendAll(const std::vector<Piece>& records);
  Result<std::string> Read(const ChunkLocation& loc) const;
  // The body's first head_size bytes into *head, the rest returned: a raw
  // payload needs no copy to drop its header.
  Result<std::string> Read(const ChunkLocation& loc, size_t head_size, std::string* head) const;
  // Makes every Append before it durable (fdatasync of the files written).
  Status Sync();
  Status CorruptForTest(const ChunkLocation& loc);

 private:
  ChunkLog() = default;
  Status OpenFileLocked(uint32_t seq);  // REQUIRES(mu_)
  int FdLocked(uint32_t seq) const;     // REQUIRES(mu_)

  static constexpr uint64_t kFileLimit = 1ull << 30;
  std::string dir_;
  mutable std::mutex mu_;
  std::vector<int> fds_;        // by file seq (index); GUARDED_BY(mu_)
  uint32_t current_ = 0;        // GUARDED_BY(mu_)
  uint64_t end_ = 0;            // append position in current_; GUARDED_BY(mu_)
  std::set<uint32_t> unsynced_; // GUARDED_BY(mu_)
};

}  // namespace aspfs
