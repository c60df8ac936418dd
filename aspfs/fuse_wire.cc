#include "aspfs/fuse_wire.h"

#include <linux/fuse.h>

#include <cstring>

namespace aspfs::fuse_wire {
namespace {

// FUSE over io_uring's parts of the kernel's uapi (6.14), newer than
// Debian 12's <linux/fuse.h>.
constexpr uint32_t kOverIoUringFlags2 = 1u << (41 - 32);  // FUSE_OVER_IO_URING, in flags2
struct UringEntInOut {                                      // struct fuse_uring_ent_in_out
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
static_assert(sizeof(UringEntInOut) == 32);
constexpr uint32_t kReadServedAside = 128 << 10;
static_assert(kUringEntInOutOffset + sizeof(UringEntInOut) == kUringHeaderAreaSize);
static_assert(sizeof(fuse_in_header) + sizeof(fuse_setattr_in) <= kUringMessageRoom);

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
      if ((in.flags & FUSE_INIT_EXT) &&
          len >= sizeof(fuse_in_header) + offsetof(fuse_init_in, flags2) + sizeof(in.flags2)) {
        memcpy(&in.flags2, static_cast<const char*>(buf) + sizeof(fuse_in_header) + offsetof(fuse_init_in, flags2),
               sizeof(in.flags2));
        r.offers_io_uring = (in.flags2 & kOverIoUringFlags2) != 0;
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

std::optional<std::string> PatchInitReply(const struct iovec* iov, int count, uint64_t init_unique,
                                          const InitWants& wants) {
  if (count < 2 || iov[0].iov_len != sizeof(fuse_out_header)) return std::nullopt;
  fuse_out_header header;
  memcpy(&header, iov[0].iov_base, sizeof header);
  if (header.unique != init_unique || header.error != 0) return std::nullopt;
  if (iov[1].iov_len < offsetof(fuse_init_out, flags) + sizeof(uint32_t)) return std::nullopt;
  std::string out(static_cast<const char*>(iov[1].iov_base), iov[1].iov_len);
  uint32_t flags;
  memcpy(&flags, out.data() + offsetof(fuse_init_out, flags), sizeof flags);
  if (wants.killpriv_v2) flags |= FUSE_HANDLE_KILLPRIV_V2;
  if (wants.io_uring && out.size() >= offsetof(fuse_init_out, flags2) + sizeof(uint32_t)) {
    uint32_t flags2;
    memcpy(&flags2, out.data() + offsetof(fuse_init_out, flags2), sizeof flags2);
    flags2 |= kOverIoUringFlags2;
    memcpy(out.data() + offsetof(fuse_init_out, flags2), &flags2, sizeof flags2);
    flags |= FUSE_INIT_EXT;
  }
  memcpy(out.data() + offsetof(fuse_init_out, flags), &flags, sizeof flags);
  return out;
}

std::optional<size_t> UringArgumentSize(uint32_t opcode) {
  switch (opcode) {
    // Kernels with FUSE over io_uring send these with an empty first
    // argument: name, link target or nothing at all is payload.
    case FUSE_LOOKUP:
    case FUSE_READLINK:
    case FUSE_SYMLINK:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_STATFS:
    case FUSE_REMOVEXATTR:
    case FUSE_DESTROY:
      return 0;
    case FUSE_GETATTR: return sizeof(fuse_getattr_in);
    case FUSE_SETATTR: return sizeof(fuse_setattr_in);
    case FUSE_MKNOD: return sizeof(fuse_mknod_in);
    case FUSE_MKDIR: return sizeof(fuse_mkdir_in);
    case FUSE_RENAME: return sizeof(fuse_rename_in);
    case FUSE_RENAME2: return sizeof(fuse_rename2_in);
    case FUSE_LINK: return sizeof(fuse_link_in);
    case FUSE_OPEN:
    case FUSE_OPENDIR:
      return sizeof(fuse_open_in);
    case FUSE_READ:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS:
      return sizeof(fuse_read_in);
    case FUSE_WRITE: return sizeof(fuse_write_in);
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
      return sizeof(fuse_release_in);
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
      return sizeof(fuse_fsync_in);
    // libfuse 3.14 does not ask for FUSE_SETXATTR_EXT: the short struct.
    case FUSE_SETXATTR: return FUSE_COMPAT_SETXATTR_IN_SIZE;
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
      return sizeof(fuse_getxattr_in);
    case FUSE_FLUSH: return sizeof(fuse_flush_in);
    case FUSE_GETLK:
    case FUSE_SETLK:
    case FUSE_SETLKW:
      return sizeof(fuse_lk_in);
    case FUSE_ACCESS: return sizeof(fuse_access_in);
    case FUSE_CREATE:
    case FUSE_TMPFILE:
      return sizeof(fuse_create_in);
    case FUSE_BMAP: return sizeof(fuse_bmap_in);
    case FUSE_IOCTL: return sizeof(fuse_ioctl_in);
    case FUSE_POLL: return sizeof(fuse_poll_in);
    case FUSE_FALLOCATE: return sizeof(fuse_fallocate_in);
    case FUSE_LSEEK: return sizeof(fuse_lseek_in);
    case FUSE_COPY_FILE_RANGE: return sizeof(fuse_copy_file_range_in);
    case FUSE_SYNCFS: return sizeof(fuse_syncfs_in);
    default:
      return std::nullopt;
  }
}

std::optional<Message> UringRequestToMessage(const void* headers, char* payload, size_t capacity) {
  const char* area = static_cast<const char*>(headers);
  fuse_in_header in;
  memcpy(&in, area + kUringInOutOffset, sizeof in);
  UringEntInOut ent;
  memcpy(&ent, area + kUringEntInOutOffset, sizeof ent);
  auto argument_size = UringArgumentSize(in.opcode);
  if (!argument_size || ent.payload_sz > capacity) return std::nullopt;
  Message message;
  message.data = payload - sizeof in - *argument_size;
  message.len = sizeof in + *argument_size + ent.payload_sz;
  message.commit_id = ent.commit_id;
  message.opcode = in.opcode;
  message.unique = in.unique;
  in.len = static_cast<uint32_t>(message.len);
  memcpy(message.data, &in, sizeof in);
  memcpy(message.data + sizeof in, area + kUringOpInOffset, *argument_size);
  return message;
}

uint64_t UringCommitId(const void* headers) {
  UringEntInOut ent;
  memcpy(&ent, static_cast<const char*>(headers) + kUringEntInOutOffset, sizeof ent);
  return ent.commit_id;
}

bool ServedAside(const Message& message) {
  if (message.opcode == FUSE_FSYNC || message.opcode == FUSE_FSYNCDIR) return true;
  if (message.opcode != FUSE_READ) return false;
  fuse_read_in in;
  return ReadArg(message.data, message.len, &in) && in.size >= kReadServedAside;
}

bool ReplyToUring(const struct iovec* iov, int count, void* headers, char* payload, size_t capacity) {
  if (count < 1 || iov[0].iov_len != sizeof(fuse_out_header)) return false;
  size_t size = 0;
  for (int i = 1; i < count; ++i) size += iov[i].iov_len;
  if (size > capacity) return false;
  char* area = static_cast<char*>(headers);
  memcpy(area + kUringInOutOffset, iov[0].iov_base, sizeof(fuse_out_header));
  size_t at = 0;
  for (int i = 1; i < count; ++i) {
    if (iov[i].iov_len) memcpy(payload + at, iov[i].iov_base, iov[i].iov_len);
    at += iov[i].iov_len;
  }
  UringEntInOut ent;
  memcpy(&ent, area + kUringEntInOutOffset, sizeof ent);
  ent.payload_sz = static_cast<uint32_t>(size);
  memcpy(area + kUringEntInOutOffset, &ent, sizeof ent);
  return true;
}

uint64_t UniqueOfReply(const struct iovec* iov, int count) {
  if (count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return 0;
  fuse_out_header out;
  memcpy(&out, iov[0].iov_base, sizeof out);
  return out.unique;
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
