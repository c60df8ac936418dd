// Views of a volume's state for apply(): a reader interface, an in-memory
// state (tests, journal replay) and StateDelta, the overlay apply() writes
// into. StateDelta maintains the state checksum (invariant 2): the XOR of
// EntryHash(key, value) over every state key.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "journal/status.h"

namespace aspfs {

uint64_t EntryHash(std::string_view key, std::string_view value);

// A key and its new value; nullopt: deleted.
using KeyChange = std::pair<std::string, std::optional<std::string>>;
using KeyChanges = std::vector<KeyChange>;

class StateReader {
 public:
  virtual ~StateReader() = default;
  virtual Result<std::optional<std::string>> Get(std::string_view key) const = 0;
  // Calls fn(key, value) for keys in [lo, hi) in key order until it returns false.
  using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;
  virtual Status Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const = 0;
};

// Calls fn over the keys scan_base yields with the sorted changes [over,
// over_end) laid over them: a change wins over the base's value and a
// nullopt change hides the key. scan_base(f) calls f(key, value) in key order
// until f returns false. Streams: nothing of the base is copied.
template <typename ScanBase, typename ChangeIt>
Status ScanWithChanges(const ScanBase& scan_base, ChangeIt over, ChangeIt over_end, const StateReader::ScanFn& fn) {
  bool stopped = false;
  Status scanned = scan_base([&](std::string_view key, std::string_view value) {
    for (; over != over_end && std::string_view(over->first) < key; ++over) {
      if (over->second && !fn(over->first, *over->second)) return !(stopped = true);
    }
    if (over != over_end && std::string_view(over->first) == key) {
      const auto& change = over->second;
      ++over;
      if (change && !fn(key, *change)) return !(stopped = true);
      return true;
    }
    if (!fn(key, value)) return !(stopped = true);
    return true;
  });
  if (!scanned.ok() || stopped) return scanned;
  for (; over != over_end; ++over) {
    if (over->second && !fn(over->first, *over->second)) break;
  }
  return Status::Ok();
}

// A whole state in memory. Not thread-safe.
class MemState final : public StateReader {
 public:
  Result<std::optional<std::string>> Get(std::string_view key) const override;
  Status Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const override;
  void Put(std::string key, std::string value) { kv_[std::move(key)] = std::move(value); }
  void Delete(const std::string& key) { kv_.erase(key); }
  const std::map<std::string, std::string, std::less<>>& entries() const { return kv_; }

 private:
  std::map<std::string, std::string, std::less<>> kv_;
};

// Puts and deletes over a base state, read-through. Not thread-safe; the base
// must not change while the delta lives.
class StateDelta final : public StateReader {
 public:
  StateDelta(const StateReader* base, uint64_t checksum) : base_(base), checksum_(checksum) {}

  Result<std::optional<std::string>> Get(std::string_view key) const override;
  Status Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const override;

  // Only state keys (key::IsStateKey) may be written through a delta.
  Status Put(const std::string& key, std::string value);
  // Put of a key the caller knows the base lacks (a readdir cookie from its
  // directory's counter, which only grows): the base is not read for the old
  // value, which for such keys is a certain miss down to RocksDB.
  Status PutAbsent(const std::string& key, std::string value);
  Status Delete(const std::string& key);

  uint64_t checksum() const { return checksum_; }
  // Moves the changes out (nullopt: delete), in no particular order; the
  // delta is empty after.
  std::vector<KeyChange> ReleaseChanges();
  void ApplyTo(MemState* state) const;

 private:
  // A key this delta knows: read from the base, or changed.
  struct Slot {
    std::optional<std::string> value;
    bool changed = false;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  // The key's slot, read from the base on first use; nullptr and *status on
  // a failed read.
  Slot* Load(std::string_view key, Status* status) const;
  std::vector<std::pair<std::string_view, const std::optional<std::string>*>> SortedChanges(std::string_view lo,
                                                                                            std::string_view hi) const;

  const StateReader* base_;
  uint64_t checksum_;
  // One map for reads and writes: apply() reads most keys it then writes, and
  // each write needs the old value for the checksum. A txn knows few keys,
  // and the few callers wanting order (scans, the commit) sort.
  mutable std::unordered_map<std::string, Slot, StringHash, std::equal_to<>> slots_;
};

}  // namespace aspfs
