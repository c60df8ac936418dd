// Sizes with K, M, G, T suffixes (powers of 1024), parsed and printed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace aspfs {

std::optional<uint64_t> ParseSize(const std::string& text);
std::string FormatSize(uint64_t bytes);

}  // namespace aspfs
