#include "journal/state_cache.h"

#include <xxhash.h>

namespace aspfs {

StateCache::StateCache(size_t capacity_bytes) : shard_capacity_(capacity_bytes / kShards), shards_(kShards) {}

size_t StateCache::Charge(std::string_view key, const std::optional<std::string>& value) {
  // Key stored twice (entry + index view), list and hash nodes, string headers.
  constexpr size_t kOverhead = 128;
  return key.size() + (value ? value->size() : 0) + kOverhead;
}

size_t StateCache::Hash::operator()(std::string_view key) const { return XXH3_64bits(key.data(), key.size()); }

StateCache::HashedKey StateCache::Hashed(std::string_view key) { return HashedKey{key, Hash()(key)}; }

StateCache::Shard& StateCache::ShardOf(const HashedKey& key) {
  // The high bits: the index's buckets use the low ones.
  return shards_[(key.hash >> 58) % kShards];
}

std::optional<std::optional<std::string>> StateCache::Lookup(std::string_view key) {
  HashedKey k = Hashed(key);
  Shard& shard = ShardOf(k);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.index.find(k);
  if (it == shard.index.end()) return std::nullopt;
  it->second->referenced = true;
  return it->second->value;
}

uint64_t StateCache::Snapshot(std::string_view key) {
  Shard& shard = ShardOf(Hashed(key));
  std::lock_guard<std::mutex> lock(shard.mu);
  return shard.generation;
}

void StateCache::Fill(std::string_view key, uint64_t snapshot, const std::optional<std::string>& value) {
  HashedKey k = Hashed(key);
  Shard& shard = ShardOf(k);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.generation != snapshot) return;  // a commit may have overtaken this read
  PutLocked(shard, k, value);
}

void StateCache::Update(std::string_view key, const std::optional<std::string>& value) {
  HashedKey k = Hashed(key);
  Shard& shard = ShardOf(k);
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.generation;
  PutLocked(shard, k, value);
}

void StateCache::Invalidate(std::string_view key) {
  HashedKey k = Hashed(key);
  Shard& shard = ShardOf(k);
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.generation;
  auto it = shard.index.find(k);
  if (it != shard.index.end()) EraseLocked(shard, it);
}

void StateCache::Clear() {
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    ++shard.generation;
    shard.index.clear();
    shard.ring.clear();
    shard.hand = shard.ring.end();
    shard.bytes = 0;
  }
}

size_t StateCache::bytes() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    total += shard.bytes;
  }
  return total;
}

void StateCache::EraseLocked(Shard& shard, Index::iterator it) {
  Ring::iterator entry = it->second;
  shard.bytes -= Charge(entry->key, entry->value);
  shard.index.erase(it);
  if (shard.hand == entry) ++shard.hand;
  shard.ring.erase(entry);
}

void StateCache::PutLocked(Shard& shard, const HashedKey& key, const std::optional<std::string>& value) {
  auto it = shard.index.find(key);
  if (it != shard.index.end()) {
    Entry& entry = *it->second;
    shard.bytes -= Charge(entry.key, entry.value);
    entry.value = value;
    entry.referenced = true;
    shard.bytes += Charge(entry.key, entry.value);
  } else {
    // Behind the hand: the last the hand reaches.
    auto entry = shard.ring.insert(shard.hand, Entry{std::string(key.key), value});
    shard.index.emplace(entry->key, entry);
    shard.bytes += Charge(key.key, value);
  }
  while (shard.bytes > shard_capacity_ && shard.ring.size() > 1) {
    if (shard.hand == shard.ring.end()) shard.hand = shard.ring.begin();
    if (shard.hand->referenced) {
      shard.hand->referenced = false;
      ++shard.hand;
      continue;
    }
    EraseLocked(shard, shard.index.find(Hashed(shard.hand->key)));
  }
}

}  // namespace aspfs
