// PendingState: keys that commits have changed but the store's writer has not
// yet written to RocksDB. A commit is acknowledged once apply() has run and
// its changes are here; the writer writes commits in order and then drops
// their keys (Written). Reads look here before the state cache and RocksDB,
// so they see every acknowledged commit.
//
// Thread-safe. Pure: no RocksDB, no threads of its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "journal/state.h"

namespace aspfs {

class PendingState {
 public:
  // Records the changes of the commit with sequence number seq, which must
  // grow with every call. The changes are shared, not copied: nobody may
  // modify them until Written(seq).
  void Add(uint64_t seq, std::shared_ptr<const KeyChanges> changes);

  // The newest pending value of key (nullopt inside: pending delete), or
  // nullopt when key has no pending change.
  std::optional<std::optional<std::string>> Get(std::string_view key) const;

  // Pending changes of keys in [lo, hi), in key order.
  KeyChanges Range(std::string_view lo, std::string_view hi) const;

  // The commit seq and every commit before it are in RocksDB: forgets their
  // changes, except keys that a later commit changed again.
  void Written(uint64_t seq);

  bool empty() const { return size_.load(std::memory_order_acquire) == 0; }

 private:
  struct Commit {
    uint64_t seq;
    std::shared_ptr<const KeyChanges> changes;
  };
  // A key's newest change; the key views the string of that change.
  struct Entry {
    const std::optional<std::string>* value;
    uint64_t seq;
  };
  mutable std::mutex mu_;
  std::deque<Commit> commits_;                           // GUARDED_BY(mu_): oldest first
  std::unordered_map<std::string_view, Entry> newest_;  // GUARDED_BY(mu_)
  std::atomic<size_t> size_{0};                          // newest_.size(), read without mu_
};

}  // namespace aspfs
