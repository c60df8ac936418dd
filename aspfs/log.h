// One-line timestamped log records on stderr.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace aspfs {

inline void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline void Log(const char* format, ...) {
  char stamp[32];
  time_t now = time(nullptr);
  struct tm tm;
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
  va_list args;
  va_start(args, format);
  char line[1024];
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  fprintf(stderr, "%s aspfsd: %s\n", stamp, line);
}

}  // namespace aspfs
