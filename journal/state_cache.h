// StateCache: the node's committed volume state, held in memory in front of
// RocksDB (a read-through, write-through cache of state keys, negative
// answers included). Each RocksDB point read costs microseconds; apply() and
// every lookup read the same few inode and directory records over and over.
//
// Coherence: every change reaches the cache through Update() after its
// WriteBatch is written, so a hit is the committed value. A miss is filled
// with Fill(), which is refused if the key's shard was updated since the
// reader's Snapshot(): a value read from RocksDB before a concurrent commit
// never overwrites that commit's value.
//
// Thread-safety: every method may be called from many threads; each shard has
// its own mutex (taken alone).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aspfs {

class StateCache {
 public:
  // capacity_bytes bounds keys + values + per-entry overhead, over all shards.
  explicit StateCache(size_t capacity_bytes);

  // A hit: the committed value (nullopt inside: known to be absent).
  std::optional<std::optional<std::string>> Lookup(std::string_view key);

  // Fill protocol for a miss: take a Snapshot, read RocksDB, then Fill.
  uint64_t Snapshot(std::string_view key);
  void Fill(std::string_view key, uint64_t snapshot, const std::optional<std::string>& value);

  // A committed change (nullopt: deleted).
  void Update(std::string_view key, const std::optional<std::string>& value);
  // Forgets key (a write that bypassed Update, such as a test hook).
  void Invalidate(std::string_view key);
  void Clear();

  size_t bytes() const;

 private:
  struct Entry;
  using Lru = std::list<Entry>;
  struct Entry {
    std::string key;
    std::optional<std::string> value;
  };
  struct Shard {
    mutable std::mutex mu;
    uint64_t generation = 0;  // GUARDED_BY(mu): bumped by every Update
    Lru lru;                  // GUARDED_BY(mu): most recently used first
    std::unordered_map<std::string_view, Lru::iterator> index;  // GUARDED_BY(mu): keys view lru's
    size_t bytes = 0;         // GUARDED_BY(mu)
  };
  static constexpr size_t kShards = 64;
  static size_t Charge(std::string_view key, const std::optional<std::string>& value);
  Shard& ShardOf(std::string_view key);
  // REQUIRES(shard.mu)
  void PutLocked(Shard& shard, std::string_view key, const std::optional<std::string>& value);

  size_t shard_capacity_;
  std::vector<Shard> shards_;
};

}  // namespace aspfs
