#include "journal/pending_state.h"

#include <algorithm>

namespace aspfs {

void PendingState::Add(uint64_t seq, std::shared_ptr<const KeyChanges> changes) {
  if (changes->empty()) return;  // most commits change no chunk index entry
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, value] : *changes) {
    auto [it, inserted] = newest_.try_emplace(key, Entry{&value, seq});
    if (!inserted) {
      // Re-key to this commit's string: the older one goes with its commit.
      auto node = newest_.extract(it);
      node.key() = key;
      node.mapped() = Entry{&value, seq};
      newest_.insert(std::move(node));
    }
  }
  commits_.push_back(Commit{seq, std::move(changes)});
  size_.store(newest_.size(), std::memory_order_release);
}

std::optional<std::optional<std::string>> PendingState::Get(std::string_view key) const {
  if (empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = newest_.find(key);
  if (it == newest_.end()) return std::nullopt;
  return *it->second.value;
}

KeyChanges PendingState::Range(std::string_view lo, std::string_view hi) const {
  KeyChanges out;
  if (empty()) return out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A linear pass: what is pending is a few milliseconds of commits.
    for (const auto& [key, entry] : newest_) {
      if (key >= lo && key < hi) out.emplace_back(key, *entry.value);
    }
  }
  std::sort(out.begin(), out.end(), [](const KeyChange& a, const KeyChange& b) { return a.first < b.first; });
  return out;
}

void PendingState::Written(uint64_t seq) {
  std::deque<Commit> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!commits_.empty() && commits_.front().seq <= seq) {
      const Commit& commit = commits_.front();
      for (const auto& change : *commit.changes) {
        auto it = newest_.find(change.first);
        if (it != newest_.end() && it->second.seq == commit.seq) newest_.erase(it);
      }
      done.push_back(std::move(commits_.front()));
      commits_.pop_front();
    }
    size_.store(newest_.size(), std::memory_order_release);
  }
  // done's changes are freed here, outside the lock, unless still queued.
}

}  // namespace aspfs
