#include "aspfs/fuse_wire.h"

#include <linux/fuse.h>

#include <cstring>

namespace aspfs::fuse_wire {
namespace {

// The request's argument struct, if the message holds all of it.
template <typename T>
bool ReadArg(const void* buf, size_t len, T* out) {
  if (len < sizeof(fuse_in_header) + sizeof(T)) return false;
  memcpy(out, static_cast<const char*>(buf) + sizeof(fuse_in_header), sizeof(T));
  return true;
}

}  // namespace

Request Parse(void* buf, size_t len) {
  Request r;
  fuse_in_header header;
  if (len < sizeof header) return r;
  memcpy(&header, buf, sizeof header);
  r.unique = header.unique;
  switch (header.opcode) {
    case FUSE_INIT: {
      r.is_init = true;
      fuse_init_in in;
      if (len >= sizeof(fuse_in_header) + offsetof(fuse_init_in, minor) + sizeof(in.minor)) {
        memcpy(&in.minor, static_cast<const char*>(buf) + sizeof(fuse_in_header) + offsetof(fuse_init_in, minor),
               sizeof(in.minor));
        r.kernel_minor = in.minor;
      }
      // Older kernels send a shorter fuse_init_in; flags is in every version.
      if (len >= sizeof(fuse_in_header) + offsetof(fuse_init_in, flags) + sizeof(in.flags)) {
        memcpy(&in.flags, static_cast<const char*>(buf) + sizeof(fuse_in_header) + offsetof(fuse_init_in, flags),
               sizeof(in.flags));
        r.offers_killpriv_v2 = (in.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      }
      break;
    }
    case FUSE_WRITE: {
      fuse_write_in in;
      if (ReadArg(buf, len, &in)) r.kill_suidgid = (in.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_SETATTR: {
      fuse_setattr_in in;
      if (ReadArg(buf, len, &in)) r.kill_suidgid = (in.valid & FATTR_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_OPEN: {
      fuse_open_in in;
      if (ReadArg(buf, len, &in)) r.kill_suidgid = (in.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_TMPFILE: {
      r.is_tmpfile = true;
      header.opcode = FUSE_CREATE;
      memcpy(buf, &header, sizeof header);
      [[fallthrough]];
    }
    case FUSE_CREATE: {
      fuse_create_in in;
      if (ReadArg(buf, len, &in)) r.kill_suidgid = (in.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
      break;
    }
    default:
      break;
  }
  return r;
}

std::optional<std::string> InitReplyWithKillPrivV2(const struct iovec* iov, int count, uint64_t init_unique) {
  if (count < 2 || iov[0].iov_len != sizeof(fuse_out_header)) return std::nullopt;
  fuse_out_header header;
  memcpy(&header, iov[0].iov_base, sizeof header);
  if (header.unique != init_unique || header.error != 0) return std::nullopt;
  if (iov[1].iov_len < offsetof(fuse_init_out, flags) + sizeof(uint32_t)) return std::nullopt;
  std::string out(static_cast<const char*>(iov[1].iov_base), iov[1].iov_len);
  uint32_t flags;
  memcpy(&flags, out.data() + offsetof(fuse_init_out, flags), sizeof flags);
  flags |= FUSE_HANDLE_KILLPRIV_V2;
  memcpy(out.data() + offsetof(fuse_init_out, flags), &flags, sizeof flags);
  return out;
}

std::optional<std::string> ErrorReplyTo(const void* request, size_t len, int error) {
  fuse_in_header in;
  if (len < sizeof in) return std::nullopt;
  memcpy(&in, request, sizeof in);
  if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET || in.opcode == FUSE_INTERRUPT) return std::nullopt;
  fuse_out_header out = {};
  out.len = sizeof out;
  out.error = -error;
  out.unique = in.unique;
  return std::string(reinterpret_cast<const char*>(&out), sizeof out);
}

}  // namespace aspfs::fuse_wire
