// What the FUSE server reads of raw /dev/fuse messages that libfuse 3.14
// does not pass on: the kernel's offer of FUSE_HANDLE_KILLPRIV_V2 in INIT,
// the "clear setuid/setgid" flags it then sets on requests, and FUSE_TMPFILE
// (open(2) with O_TMPFILE), an opcode libfuse 3.14 does not know. Pure
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
  uint32_t kernel_minor = 0;        // INIT: the kernel's FUSE protocol minor version
  // WRITE, SETATTR (truncate), OPEN and CREATE (O_TRUNC): the caller lacks
  // CAP_FSETID, so setuid and setgid (with group exec) must go.
  bool kill_suidgid = false;
  // FUSE_TMPFILE, rewritten in place as the FUSE_CREATE it is shaped like
  // (same argument, same reply), so that libfuse hands it to the create
  // handler; the name the kernel sends with it is "/".
  bool is_tmpfile = false;
};

// Parses a request as read from /dev/fuse (len bytes), rewriting a
// FUSE_TMPFILE as FUSE_CREATE. Anything short or unknown parses as a plain
// request.
Request Parse(void* buf, size_t len);

// If iov (as libfuse writes it) is the successful reply to the INIT request
// init_unique, returns a copy of its fuse_init_out with
// FUSE_HANDLE_KILLPRIV_V2 added, to be written in place of iov[1].
std::optional<std::string> InitReplyWithKillPrivV2(const struct iovec* iov, int count, uint64_t init_unique);

// The reply failing the request (len bytes as read) with errno error, or
// nothing for a request that takes no reply (FORGET, BATCH_FORGET,
// INTERRUPT) or is too short to name itself.
std::optional<std::string> ErrorReplyTo(const void* request, size_t len, int error);

}  // namespace aspfs::fuse_wire
