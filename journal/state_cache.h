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
// Eviction is CLOCK (second chance): a hit only marks its entry, so the
// hot path moves no list nodes.
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
  struct Entry {
    std::string key;
    std::optional<std::string> value;
    bool referenced = false;  // used since the clock hand last passed
  };
  using Ring = std::list<Entry>;
  // A key with its hash, computed once for the shard and the index.
  struct HashedKey {
    std::string_view key;
    size_t hash;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const;
    size_t operator()(const HashedKey& k) const { return k.hash; }
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    bool operator()(const HashedKey& a, std::string_view b) const { return a.key == b; }
    bool operator()(std::string_view a, const HashedKey& b) const { return a == b.key; }
  };
  using Index = std::unordered_map<std::string_view, Ring::iterator, Hash, Equal>;
  struct Shard {
    mutable std::mutex mu;
    uint64_t generation = 0;  // GUARDED_BY(mu): bumped by every Update
    Ring ring;                // GUARDED_BY(mu)
    Ring::iterator hand;      // GUARDED_BY(mu): next eviction candidate; ring.end(): wraps
    Index index;              // GUARDED_BY(mu): keys view ring's
    size_t bytes = 0;         // GUARDED_BY(mu)
    Shard() : hand(ring.end()) {}
  };
  static constexpr size_t kShards = 64;
  static size_t Charge(std::string_view key, const std::optional<std::string>& value);
  static HashedKey Hashed(std::string_view key);
  Shard& ShardOf(const HashedKey& key);
  // REQUIRES(shard.mu)
  void PutLocked(Shard& shard, const HashedKey& key, const std::optional<std::string>& value);
  // REQUIRES(shard.mu)
  void EraseLocked(Shard& shard, Index::iterator it);

  size_t shard_capacity_;
  std::vector<Shard> shards_;
};

}  // namespace aspfs
