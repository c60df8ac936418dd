#include "journal/state.h"

#include <xxhash.h>

#include "journal/format.h"

namespace aspfs {

uint64_t EntryHash(std::string_view key, std::string_view value) {
  return XXH3_64bits_withSeed(value.data(), value.size(), XXH3_64bits(key.data(), key.size()));
}

Result<std::optional<std::string>> MemState::Get(std::string_view key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status MemState::Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const {
  for (auto it = kv_.lower_bound(lo); it != kv_.end() && it->first < hi; ++it) {
    if (!fn(it->first, it->second)) break;
  }
  return Status::Ok();
}

Result<std::optional<std::string>> StateDelta::Get(std::string_view key) const {
  auto it = changes_.find(key);
  if (it != changes_.end()) return it->second;
  auto cached = base_reads_.find(key);
  if (cached != base_reads_.end()) return cached->second;
  auto value = base_->Get(key);
  if (value.ok()) base_reads_.emplace(std::string(key), *value);
  return value;
}

Status StateDelta::Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const {
  return ScanWithChanges([&](const ScanFn& f) { return base_->Scan(lo, hi, f); }, changes_.lower_bound(lo),
                         changes_.lower_bound(hi), fn);
}

Status StateDelta::Put(const std::string& key, std::string value) {
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  auto old = Get(key);
  if (!old.ok()) return old.status();
  if (*old) checksum_ ^= EntryHash(key, **old);
  checksum_ ^= EntryHash(key, value);
  changes_[key] = std::move(value);
  return Status::Ok();
}

Status StateDelta::PutAbsent(const std::string& key, std::string value) {
  if (changes_.count(key)) return Put(key, std::move(value));  // this delta has a value to replace
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  checksum_ ^= EntryHash(key, value);
  changes_[key] = std::move(value);
  return Status::Ok();
}

Status StateDelta::Delete(const std::string& key) {
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  auto old = Get(key);
  if (!old.ok()) return old.status();
  if (!*old) return Status::Ok();
  checksum_ ^= EntryHash(key, **old);
  changes_[key] = std::nullopt;
  return Status::Ok();
}

std::vector<std::pair<std::string, std::optional<std::string>>> StateDelta::ReleaseChanges() {
  std::vector<std::pair<std::string, std::optional<std::string>>> out;
  out.reserve(changes_.size());
  while (!changes_.empty()) {
    auto node = changes_.extract(changes_.begin());
    out.emplace_back(std::move(node.key()), std::move(node.mapped()));
  }
  return out;
}

void StateDelta::ApplyTo(MemState* state) const {
  for (const auto& [k, v] : changes_) {
    if (v) {
      state->Put(k, *v);
    } else {
      state->Delete(k);
    }
  }
}

}  // namespace aspfs
