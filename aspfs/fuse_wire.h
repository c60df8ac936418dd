// What the FUSE server reads of raw /dev/fuse messages that libfuse 3.14
// does not pass on: the kernel's offer of FUSE_HANDLE_KILLPRIV_V2 in INIT,
// and the "clear setuid/setgid" flags it then sets on requests. Pure
// functions over bytes (the kernel's structs stay inside fuse_wire.cc, away
// from libfuse's headers).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace aspfs::fuse_wire {

struct Request {
  uint64_t unique = 0;
  bool is_init = false;
  bool offers_killpriv_v2 = false;  // INIT: the kernel can leave setuid/setgid clearing to us
  // WRITE, SETATTR (truncate), OPEN and CREATE (O_TRUNC): the caller lacks
  // CAP_FSETID, so setuid and setgid (with group exec) must go.
  bool kill_suidgid = false;
};

// Parses a request as read from /dev/fuse (len bytes). Anything short or
// unknown parses as a plain request.
Request Parse(const void* buf, size_t len);

// If iov (as libfuse writes it) is the successful reply to the INIT request
// init_unique, returns a copy of its fuse_init_out with
// FUSE_HANDLE_KILLPRIV_V2 added, to be written in place of iov[1].
std::optional<std::string> InitReplyWithKillPrivV2(const struct iovec* iov, int count, uint64_t init_unique);

}  // namespace aspfs::fuse_wire
