#include "cli/units.h"

#include <cctype>
#include <cstdio>

namespace aspfs {

std::optional<uint64_t> ParseSize(const std::string& text) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t next = value * 10 + (text[i] - '0');
    if (next / 10 != value) return std::nullopt;
    value = next;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string suffix = text.substr(i);
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b') && suffix.size() > 1) suffix.pop_back();
  if (suffix.size() == 2 && (suffix[1] == 'i' || suffix[1] == 'I')) suffix.pop_back();
  int shift = 0;
  if (suffix.empty() || suffix == "B" || suffix == "b") {
    shift = 0;
  } else if (suffix.size() == 1) {
    switch (toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (shift && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::string FormatSize(uint64_t bytes) {
  const char* units[] = {"B", "K", "M", "G", "T", "P"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(bytes));
  } else {
    snprintf(buf, sizeof buf, v < 10 ? "%.1f%s" : "%.0f%s", v, units[u]);
  }
  return buf;
}

}  // namespace aspfs
