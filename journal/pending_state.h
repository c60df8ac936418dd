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
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aspfs {

// A key and its new value; nullopt: deleted.
using KeyChange = std::pair<std::string, std::optional<std::string>>;

class PendingState {
 public:
  // Records the changes of the commit with sequence number seq. Sequence
  // numbers grow with every call.
  void Add(uint64_t seq, const std::vector<KeyChange>& changes);

  // The newest pending value of key (nullopt inside: pending delete), or
  // nullopt when key has no pending change.
  std::optional<std::optional<std::string>> Get(std::string_view key) const;

  // Pending changes of keys in [lo, hi), in key order.
  std::vector<KeyChange> Range(std::string_view lo, std::string_view hi) const;

  // The commit seq and every commit before it are in RocksDB: forgets the
  // keys of `changes` (seq's own) unless a later commit changed them again.
  void Written(uint64_t seq, const std::vector<KeyChange>& changes);

  bool empty() const { return size_.load(std::memory_order_acquire) == 0; }

 private:
  struct Entry {
    std::optional<std::string> value;
    uint64_t seq = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;  // GUARDED_BY(mu_)
  std::atomic<size_t> size_{0};                        // entries_.size(), read without mu_
};

}  // namespace aspfs
