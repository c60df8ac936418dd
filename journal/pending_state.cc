#include "journal/pending_state.h"

namespace aspfs {

void PendingState::Add(uint64_t seq, const std::vector<KeyChange>& changes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, value] : changes) {
    auto it = entries_.find(key);
    if (it == entries_.end()) it = entries_.emplace(key, Entry{}).first;
    it->second.value = value;
    it->second.seq = seq;
  }
  size_.store(entries_.size(), std::memory_order_release);
}

std::optional<std::optional<std::string>> PendingState::Get(std::string_view key) const {
  if (empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second.value;
}

std::vector<KeyChange> PendingState::Range(std::string_view lo, std::string_view hi) const {
  std::vector<KeyChange> out;
  if (empty()) return out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.lower_bound(lo); it != entries_.end() && it->first < hi; ++it) {
    out.emplace_back(it->first, it->second.value);
  }
  return out;
}

void PendingState::Written(uint64_t seq, const std::vector<KeyChange>& changes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& change : changes) {
    auto it = entries_.find(change.first);
    if (it != entries_.end() && it->second.seq <= seq) entries_.erase(it);
  }
  size_.store(entries_.size(), std::memory_order_release);
}

}  // namespace aspfs
