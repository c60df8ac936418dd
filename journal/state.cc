#include "journal/state.h"

#include <xxhash.h>

#include <algorithm>

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

StateDelta::Slot* StateDelta::Load(std::string_view key, Status* status) const {
  auto it = slots_.find(key);
  if (it != slots_.end()) return &it->second;
  auto value = base_->Get(key);
  if (!value.ok()) {
    *status = value.status();
    return nullptr;
  }
  return &slots_.try_emplace(std::string(key), Slot{std::move(*value), false}).first->second;
}

Result<std::optional<std::string>> StateDelta::Get(std::string_view key) const {
  Status status;
  const Slot* slot = Load(key, &status);
  if (!slot) return status;
  return slot->value;
}

std::vector<std::pair<std::string_view, const std::optional<std::string>*>> StateDelta::SortedChanges(
    std::string_view lo, std::string_view hi) const {
  std::vector<std::pair<std::string_view, const std::optional<std::string>*>> out;
  for (const auto& [key, slot] : slots_) {
    if (slot.changed && key >= lo && key < hi) out.emplace_back(key, &slot.value);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

Status StateDelta::Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const {
  std::vector<std::pair<std::string_view, std::optional<std::string_view>>> changes;
  for (const auto& [key, value] : SortedChanges(lo, hi)) {
    changes.emplace_back(key, *value ? std::optional<std::string_view>(**value) : std::nullopt);
  }
  return ScanWithChanges([&](const ScanFn& f) { return base_->Scan(lo, hi, f); }, changes.begin(), changes.end(),
                         fn);
}

Status StateDelta::Put(const std::string& key, std::string value) {
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  Status status;
  Slot* slot = Load(key, &status);
  if (!slot) return status;
  if (slot->value) checksum_ ^= EntryHash(key, *slot->value);
  checksum_ ^= EntryHash(key, value);
  slot->value = std::move(value);
  slot->changed = true;
  return Status::Ok();
}

Status StateDelta::PutAbsent(const std::string& key, std::string value) {
  if (slots_.count(key)) return Put(key, std::move(value));  // known here: replace what this delta has
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  checksum_ ^= EntryHash(key, value);
  slots_.try_emplace(key, Slot{std::move(value), true});
  return Status::Ok();
}

Status StateDelta::Delete(const std::string& key) {
  if (!key::IsStateKey(key)) return Error(Code::kInvalid, "write outside volume state");
  Status status;
  Slot* slot = Load(key, &status);
  if (!slot) return status;
  if (!slot->value) return Status::Ok();
  checksum_ ^= EntryHash(key, *slot->value);
  slot->value = std::nullopt;
  slot->changed = true;
  return Status::Ok();
}

std::vector<KeyChange> StateDelta::ReleaseChanges() {
  std::vector<KeyChange> out;
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (it->second.changed) {
      auto node = slots_.extract(it++);
      out.emplace_back(std::move(node.key()), std::move(node.mapped().value));
    } else {
      ++it;
    }
  }
  slots_.clear();
  return out;
}

void StateDelta::ApplyTo(MemState* state) const {
  for (const auto& [key, slot] : slots_) {
    if (!slot.changed) continue;
    if (slot.value) {
      state->Put(key, *slot.value);
    } else {
      state->Delete(key);
    }
  }
}

}  // namespace aspfs
