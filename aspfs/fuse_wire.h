// What the FUSE server reads of raw /dev/fuse messages that libfuse 3.14
// does not pass on: the kernel's offers of FUSE_HANDLE_KILLPRIV_V2 and of
// FUSE over io_uring in INIT, the "clear setuid/setgid" flags it then sets
// on requests, and FUSE_TMPFILE (open(2) with O_TMPFILE), an opcode libfuse
// 3.14 does not know; and the translation between a request or reply as an
// io_uring ring entry holds it and the /dev/fuse message libfuse parses.
// Pure functions over bytes (the kernel's structs stay inside fuse_wire.cc,
// away from libfuse's headers).
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
  bool offers_io_uring = false;     // INIT: FUSE_OVER_IO_URING (kernel 6.14+, fuse.enable_uring=Y)
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

// What our INIT reply asks for beyond what libfuse 3.14 can.
struct InitWants {
  bool killpriv_v2 = false;
  bool io_uring = false;
};

// If iov (as libfuse writes it) is the successful reply to the INIT request
// init_unique, returns a copy of its fuse_init_out with the flags of wants
// added, to be written in place of iov[1].
std::optional<std::string> PatchInitReply(const struct iovec* iov, int count, uint64_t init_unique,
                                          const InitWants& wants);

// FUSE over io_uring (kernel 6.14+). Each ring entry is a header area
// (in_out: the fuse_in_header, then the fuse_out_header; op_in: the
// request's fixed argument struct; the entry's commit id and payload
// size) and a payload buffer (names, data: the rest of the request, and
// all of the reply).
inline constexpr size_t kUringHeaderAreaSize = 128 + 128 + 32;  // struct fuse_uring_req_header
inline constexpr size_t kUringInOutOffset = 0;
inline constexpr size_t kUringOpInOffset = 128;
inline constexpr size_t kUringEntInOutOffset = 256;
// Room a ring entry keeps before its payload, so that the request can be
// made a /dev/fuse message in place: fuse_in_header and the largest
// argument struct.
inline constexpr size_t kUringMessageRoom = 40 + 128;

// The size of opcode's fixed argument struct (the kernel's in_args[0],
// which a ring entry carries in op_in), or nothing for an opcode libfuse
// 3.14 does not serve.
std::optional<size_t> UringArgumentSize(uint32_t opcode);

// Makes the request in a ring entry a /dev/fuse message ending where the
// payload ends: header and argument struct are written just before the
// payload (which must have kUringMessageRoom bytes before it), the header's
// len set. Returns the message's start and length, or nothing for an
// opcode UringArgumentSize does not know or a payload size over capacity.
struct Message {
  char* data = nullptr;
  size_t len = 0;
  uint32_t opcode = 0;
  uint64_t unique = 0;
  uint64_t commit_id = 0;
};
std::optional<Message> UringRequestToMessage(const void* headers, char* payload, size_t capacity);

// The commit id of the request in a ring entry's header area.
uint64_t UringCommitId(const void* headers);

// Whether a ring's queue thread hands the request (a message made by
// UringRequestToMessage) to a thread of its own: requests that wait on the
// disk (fsync), which would hold up every other request of the CPU's
// queue, and large reads, whose decompression may then run on another CPU
// while the reader's CPU goes on (a cold sequential read's readahead all
// comes to the reader's CPU's queue).
bool ServedAside(const Message& message);

// Writes the reply iov (as libfuse writes it: fuse_out_header, then the
// reply's arguments) into a ring entry: header into in_out, arguments into
// the payload, their size into the entry. False if the reply does not fit.
bool ReplyToUring(const struct iovec* iov, int count, void* headers, char* payload, size_t capacity);

// The unique of a request's message, or of a reply's iov (0 for a
// notification).
uint64_t UniqueOfReply(const struct iovec* iov, int count);

// The reply failing the request (len bytes as read) with errno error, or
// nothing for a request that takes no reply (FORGET, BATCH_FORGET,
// INTERRUPT) or is too short to name itself.
std::optional<std::string> ErrorReplyTo(const void* request, size_t len, int error);

}  // namespace aspfs::fuse_wire
