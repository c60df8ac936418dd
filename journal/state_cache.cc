#include "journal/state_cache.h"

#include <xxhash.h>

namespace aspfs {

StateCache::StateCache(size_t capacity_bytes) : shard_capacity_(capacity_bytes / kShards), shards_(kShards) {}

size_t StateCache::Charge(std::string_view key, const std::optional<std::string>& value) {
  // Key stored twice (entry + index view), list and hash nodes, string headers.
  constexpr size_t kOverhead = 128;
  return key.size() + (value ? value->size() : 0) + kOverhead;
}

StateCache::Shard& StateCache::ShardOf(std::string_view key) {
  return shards_[XXH3_64bits(key.data(), key.size()) % kShards];
}

std::optional<std::optional<std::string>> StateCache::Lookup(std::string_view key) {
  Shard& shard = ShardOf(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.index.find(key);
  if (it == shard.index.end()) return std::nullopt;
  shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
  return it->second->value;
}

uint64_t StateCache::Snapshot(std::string_view key) {
  Shard& shard = ShardOf(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  return shard.generation;
}

void StateCache::Fill(std::string_view key, uint64_t snapshot, const std::optional<std::string>& value) {
  Shard& shard = ShardOf(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.generation != snapshot) return;  // a commit may have overtaken this read
  PutLocked(shard, key, value);
}

void StateCache::Update(std::string_view key, const std::optional<std::string>& value) {
  Shard& shard = ShardOf(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.generation;
  PutLocked(shard, key, value);
}

void StateCache::Invalidate(std::string_view key) {
  Shard& shard = ShardOf(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  ++shard.generation;
  auto it = shard.index.find(key);
  if (it == shard.index.end()) return;
  shard.bytes -= Charge(it->second->key, it->second->value);
  Lru::iterator entry = it->second;
  shard.index.erase(it);
  shard.lru.erase(entry);
}

void StateCache::Clear() {
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    ++shard.generation;
    shard.index.clear();
    shard.lru.clear();
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

void StateCache::PutLocked(Shard& shard, std::string_view key, const std::optional<std::string>& value) {
  auto it = shard.index.find(key);
  if (it != shard.index.end()) {
    Entry& entry = *it->second;
    shard.bytes -= Charge(entry.key, entry.value);
    entry.value = value;
    shard.bytes += Charge(entry.key, entry.value);
    shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
  } else {
    shard.lru.push_front(Entry{std::string(key), value});
    shard.index.emplace(shard.lru.front().key, shard.lru.begin());
    shard.bytes += Charge(key, value);
  }
  while (shard.bytes > shard_capacity_ && shard.lru.size() > 1) {
    Entry& victim = shard.lru.back();
    shard.bytes -= Charge(victim.key, victim.value);
    shard.index.erase(victim.key);
    shard.lru.pop_back();
  }
}

}  // namespace aspfs
