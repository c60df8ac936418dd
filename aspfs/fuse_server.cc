#define FUSE_USE_VERSION 312
#include "aspfs/fuse_server.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "aspfs/errno.h"
#include "aspfs/fuse_wire.h"

namespace aspfs {
namespace {

FuseServer* Server(fuse_req_t req) { return static_cast<FuseServer*>(fuse_req_userdata(req)); }
VolumeFs* Fs(fuse_req_t req) { return Server(req)->fs(); }

void ReplyError(fuse_req_t req, const Status& status) { fuse_reply_err(req, ToErrno(status)); }

fuse_entry_param EntryFor(fuse_req_t req, const struct stat& st) {
  const FuseOptions& options = Server(req)->options();
  fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = st.st_ino;
  e.generation = 1;
  e.attr = st;
  e.attr_timeout = options.attr_timeout;
  e.entry_timeout = options.entry_timeout;
  return e;
}

// Replies with an entry; the lookup VolumeFs counted is undone if the kernel
// never gets the reply (an interrupted request).
void ReplyEntry(fuse_req_t req, const Result<struct stat>& st) {
  if (!st.ok()) return ReplyError(req, st.status());
  fuse_entry_param e = EntryFor(req, *st);
  if (fuse_reply_entry(req, &e) != 0) Fs(req)->Forget(st->st_ino, 1);
}

// FUSE_HANDLE_KILLPRIV_V2 through libfuse's custom I/O (libfuse 3.14 cannot
// negotiate it): the read hook notes the kernel's offer in INIT and the
// "clear setuid/setgid" flag of each request, the writev hook adds the flag
// to our INIT reply. With it the kernel no longer asks for
// security.capability before every write (it marks inodes S_NOSEC), and
// clearing setuid/setgid on write, truncate and chown is ours. libfuse hands
// a request to a handler on the thread that read it, so the flag is kept
// per thread.
thread_local bool t_kill_suidgid = false;
// The request this thread read was a FUSE_TMPFILE, now shaped as a create.
thread_local bool t_tmpfile = false;

// The request this thread serves holds its server's serving lock shared
// until the thread reads its next one or ends, so that StopServing can wait
// for every request already read. The lock is shared with the server: a
// worker libfuse lets go may end after its server.
struct ServingLock {
  std::shared_ptr<std::shared_timed_mutex> mu;
  ~ServingLock() { Release(); }
  void Release() {
    if (mu) mu->unlock_shared();
    mu.reset();
  }
};
thread_local ServingLock t_serving;

ssize_t ReadRequest(int fd, void* buf, size_t len, void* userdata) {
  auto* server = static_cast<FuseServer*>(userdata);
  ssize_t n;
  for (;;) {
    t_serving.Release();
    n = read(fd, buf, len);
    if (n <= 0) return n;
    // Only StopServing takes it exclusively, after setting detached_: a
    // failed try means the same, and no request waits behind it.
    if (!server->detached_ && server->serving_mu_->try_lock_shared()) {
      t_serving.mu = server->serving_mu_;
      if (!server->detached_) break;
      t_serving.Release();
    }
    // The daemon is going and no longer commits: the request fails at once
    // (a thread of ours that waits on the kernel, as lseek's writeback
    // does, must not wait for an answer that never comes). The thread
    // stays here until the connection closes.
    if (auto reply = fuse_wire::ErrorReplyTo(buf, static_cast<size_t>(n), EIO)) {
      // A reply the kernel refuses leaves the caller to ENOTCONN at exit.
      [[maybe_unused]] ssize_t sent = write(fd, reply->data(), reply->size());
    }
  }
  int saved = errno;
  fuse_wire::Request r = fuse_wire::Parse(buf, static_cast<size_t>(n));
  t_kill_suidgid = r.kill_suidgid;
  t_tmpfile = r.is_tmpfile;
  if (r.is_init) {
    server->kernel_minor_ = r.kernel_minor;
    server->init_offers_killpriv_v2_ = r.offers_killpriv_v2;
    server->init_offers_io_uring_ = r.offers_io_uring && server->options().io_uring;
    server->init_unique_ = r.unique;
  }
  errno = saved;
  return n;
}

ssize_t WriteReply(int fd, struct iovec* iov, int count, void* userdata) {
  auto* server = static_cast<FuseServer*>(userdata);
  if (FuseRing::Reply(iov, count)) {
    ssize_t size = 0;
    for (int i = 0; i < count; ++i) size += static_cast<ssize_t>(iov[i].iov_len);
    return size;
  }
  uint64_t init = server->init_unique_.load();
  if (init != 0) {
    fuse_wire::InitWants wants;
    wants.killpriv_v2 = server->init_offers_killpriv_v2_;
    wants.io_uring = server->init_offers_io_uring_;
    if (auto init_out = fuse_wire::PatchInitReply(iov, count, init, wants)) {
      std::vector<struct iovec> patched(iov, iov + count);
      patched[1] = {init_out->data(), init_out->size()};
      server->init_unique_ = 0;
      ssize_t n = writev(fd, patched.data(), count);
      if (n >= 0 && wants.killpriv_v2) server->killpriv_v2_ = true;
      // The kernel has set the connection up as it took the reply: ring
      // entries may now be registered.
      if (n >= 0 && wants.io_uring) server->StartRing(fd);
      return n;
    }
  }
  return writev(fd, iov, count);
}

// A request that came through io_uring, as its /dev/fuse message: served
// as ReadRequest and libfuse's loop serve one read from /dev/fuse.
void ServeRingRequest(FuseServer* server, fuse_session* se, char* message, size_t len) {
  if (server->detached_ || !server->serving_mu_->try_lock_shared()) {
    if (auto reply = fuse_wire::ErrorReplyTo(message, len, EIO)) {
      struct iovec iov = {reply->data(), reply->size()};
      FuseRing::Reply(&iov, 1);
    }
    return;
  }
  fuse_wire::Request r = fuse_wire::Parse(message, len);
  t_kill_suidgid = r.kill_suidgid;
  t_tmpfile = r.is_tmpfile;
  fuse_buf buf = {};
  buf.mem = message;
  buf.size = len;
  fuse_session_process_buf(se, &buf);
  server->serving_mu_->unlock_shared();
}

std::vector<uint32_t> GroupsOf(fuse_req_t req);

// Whether the kernel asked this request to clear setuid/setgid.
bool KillSuidSgid(fuse_req_t req) { return Server(req)->kills_privileges() && t_kill_suidgid; }

Caller CallerOf(fuse_req_t req);

// Clears setuid/setgid of ino for a caller without CAP_FSETID. The request's
// reply (a write's, an fallocate's) carries no attributes, and the kernel
// had just cached the old mode, so its cached attributes are dropped.
Status ClearSuidSgid(fuse_req_t req, fuse_ino_t ino, const Caller& caller) {
  auto killed = Fs(req)->KillSuidSgid(ino, caller);
  if (!killed.ok()) return killed.status();
  if (*killed) Server(req)->InvalidateAttributes(ino);
  return Status::Ok();
}

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  Caller caller;
  caller.uid = static_cast<uint32_t>(ctx->uid);
  caller.gid = static_cast<uint32_t>(ctx->gid);
  caller.umask = static_cast<uint32_t>(ctx->umask);  // sent with mknod, mkdir and create
  caller.load_groups = [req] { return GroupsOf(req); };
  return caller;
}

void OpInit(void*, fuse_conn_info* conn) {
  // No kernel writeback cache: writes reach us at once and we group-commit
  // them ourselves. With it, dirty pages the kernel has not sent yet are
  // invisible to FUSE_LSEEK (the kernel does not write back first), so
  // SEEK_HOLE could report a hole over fresh data and cp --sparse would skip
  // it; and mtimes would come from two clocks.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Not the old KILLPRIV: we ask for FUSE_HANDLE_KILLPRIV_V2 instead (see
  // ReadRequest), which libfuse cannot express; where the kernel does not
  // offer it, the kernel clears setuid/setgid itself and sends us the mode.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // One writer per volume: cached pages go stale only through this mount,
  // and the kernel updates them itself, so a read need not ask for fresh
  // attributes first (auto_inval_data costs a FUSE_GETATTR per read after
  // each write).
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // POSIX ACLs, as ext4: the kernel enforces access ACLs (read with getxattr
  // and cached) and parses every ACL it is given, but leaves to us what
  // ext4 does inside the file system: keeping the mode and the access ACL in
  // step on setfacl and chmod, and inheriting a parent's default ACL on
  // create. It then applies no umask either; with DONT_MASK it sends the
  // caller's umask for us to apply when there is no default ACL. Without
  // DONT_MASK the kernel would mask modes that a default ACL should decide.
  if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  }
  // File handles that outlive the kernel's inode cache (open_by_handle_at,
  // NFS): inode numbers are never reused, so the kernel may ask for an inode
  // by number (a lookup of "." or "..").
  if (conn->capable & FUSE_CAP_EXPORT_SUPPORT) conn->want |= FUSE_CAP_EXPORT_SUPPORT;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->time_gran = 1;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  // "." by inode number is the kernel decoding a file handle.
  if (strcmp(name, ".") == 0 && !Server(req)->decodes_file_handles_of_files()) {
    auto self = Fs(req)->GetAttr(parent);
    if (self.ok() && !S_ISDIR(self->st_mode)) return (void)fuse_reply_err(req, ESTALE);
  }
  auto st = Fs(req)->Lookup(parent, name);
  if (!st.ok() && st.status().code() == Code::kNotFound) {
    // Negative entry: the kernel may cache the absence (one writer per volume).
    fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.entry_timeout = Server(req)->options().entry_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  ReplyEntry(req, st);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto st = Fs(req)->GetAttr(ino);
  if (!st.ok()) return ReplyError(req, st.status());
  fuse_reply_attr(req, &*st, Server(req)->options().attr_timeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  // truncate(2) and ftruncate(2) mark mtime even when the size stays, as
  // ext4 does; the kernel does not always ask for it (never for truncate).
  if ((to_set & FUSE_SET_ATTR_SIZE) && !(to_set & FUSE_SET_ATTR_MTIME)) to_set |= FUSE_SET_ATTR_MTIME_NOW;
  // Ours to clear, with KILLPRIV_V2: on chown of a non-directory always (as
  // Linux does, root included), on truncate when the kernel says so. A
  // SETATTR with nothing to set is chown(-1, -1): the kernel drops the
  // ctime-only change it makes to an empty request.
  Caller caller = CallerOf(req);
  bool chown = Server(req)->kills_privileges() && (to_set == 0 || (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)));
  caller.fsetid = chown && caller.uid == 0;
  auto st = Fs(req)->SetAttr(ino, *attr, to_set, KillSuidSgid(req) || chown, caller);
  if (!st.ok()) return ReplyError(req, st.status());
  fuse_reply_attr(req, &*st, Server(req)->options().attr_timeout);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(ino);
  if (!target.ok()) return ReplyError(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntry(req, Fs(req)->Mknod(parent, name, mode, rdev, CallerOf(req)));
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, Fs(req)->Mknod(parent, name, S_IFDIR | (mode & 07777), 0, CallerOf(req)));
}

void OpSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req)->Mknod(parent, name, S_IFLNK | 0777, 0, CallerOf(req), target));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  ReplyEntry(req, Fs(req)->Link(ino, new_parent, new_name));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ToErrno(Fs(req)->Unlink(parent, name, false)));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ToErrno(Fs(req)->Unlink(parent, name, true)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent, const char* new_name,
              unsigned int flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) return (void)fuse_reply_err(req, EINVAL);
  uint32_t f = 0;
  if (flags & RENAME_NOREPLACE) f |= op::kRenameNoReplace;
  if (flags & RENAME_EXCHANGE) f |= op::kRenameExchange;
  // The kernel has checked CAP_MKNOD for RENAME_WHITEOUT.
  Caller whiteout_owner;
  if (flags & RENAME_WHITEOUT) whiteout_owner = CallerOf(req);
  fuse_reply_err(req, ToErrno(Fs(req)->Rename(parent, name, new_parent, new_name, f,
                                              (flags & RENAME_WHITEOUT) ? &whiteout_owner : nullptr)));
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->flags & O_TRUNC) {
    // The kernel leaves the truncate to us (atomic O_TRUNC).
    // Without KILLPRIV_V2 the kernel gives no sign: root stands in for CAP_FSETID.
    Caller caller = CallerOf(req);
    bool kill = Server(req)->kills_privileges() ? KillSuidSgid(req) : caller.uid != 0;
    auto killed = Fs(req)->TruncateOnOpen(ino, kill, caller);
    if (!killed.ok()) return ReplyError(req, killed.status());
    // An open's reply carries no attributes; the kernel would keep the old mode.
    if (*killed) Server(req)->InvalidateAttributes(ino);
  }
  fi->keep_cache = 1;  // one writer per volume: cached pages stay valid
  // A reader has nothing to flush: its close(2) need not wait for a round trip.
  if ((fi->flags & O_ACCMODE) == O_RDONLY) fi->noflush = 1;
  const bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (writer) Server(req)->CountWriter(ino, 1);
  if (fuse_reply_open(req, fi) != 0 && writer) Server(req)->CountWriter(ino, -1);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  // O_TMPFILE: a file with no name, at nlink 0, until linkat(2) gives it one.
  const bool tmpfile = t_tmpfile;
  auto st = Fs(req)->Mknod(parent, tmpfile ? "" : name, S_IFREG | (mode & 07777), 0, CallerOf(req));
  if (!st.ok()) return ReplyError(req, st.status());
  fuse_entry_param e = EntryFor(req, *st);
  fi->keep_cache = 1;
  const bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (writer) Server(req)->CountWriter(st->st_ino, 1);
  if (fuse_reply_create(req, &e, fi) != 0) {
    if (writer) Server(req)->CountWriter(st->st_ino, -1);
    Fs(req)->Forget(st->st_ino, 1);
  }
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  auto parts = Fs(req)->ReadParts(ino, off, size);
  if (!parts.ok()) return ReplyError(req, parts.status());
  std::vector<struct iovec> iov;
  iov.reserve(parts->size());
  for (std::string& part : *parts) iov.push_back({part.data(), part.size()});
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info*) {
  if (KillSuidSgid(req)) {
    Status cleared = ClearSuidSgid(req, ino, CallerOf(req));
    if (!cleared.ok()) return ReplyError(req, cleared);
  }
  auto written = Fs(req)->Write(ino, off, std::string_view(buf, size));
  if (!written.ok()) return ReplyError(req, written.status());
  fuse_reply_write(req, *written);
}

// Writers' close(2) commits their buffered writes and hears of a failure.
// Answering writers with noflush (commit at the release, as for readers)
// saved a round trip per close, but a run of two writers against a full
// quota lost acknowledged data at the release: see docs/decisions.md.
void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) { fuse_reply_err(req, ToErrno(Fs(req)->Flush(ino))); }

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // The kernel writes a file's dirty pages back before it releases it.
  if ((fi->flags & O_ACCMODE) != O_RDONLY) Server(req)->CountWriter(ino, -1);
  fuse_reply_err(req, ToErrno(Fs(req)->Release(ino)));
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  fuse_reply_err(req, ToErrno(Fs(req)->Fsync(ino)));
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  VolumeFs* fs = Fs(req);
  std::vector<uint64_t> counted;  // lookups to undo if the reply is lost
  // Adds entry to buf; false if it does not fit.
  auto add = [&](const DirEntry& entry) {
    size_t need;
    if (plus) {
      fuse_entry_param e;
      memset(&e, 0, sizeof e);
      bool dot = entry.name == "." || entry.name == "..";
      if (dot) {
        e.attr.st_ino = entry.ino;
        e.attr.st_mode = entry.type;
      } else {
        auto st = fs->GetAttr(entry.ino);
        if (!st.ok()) return true;  // removed meanwhile
        e = EntryFor(req, *st);
      }
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, entry.name.c_str(), &e,
                                    entry.next_offset);
      if (need > size - used) return false;
      if (!dot) {
        fs->AddLookup(entry.ino);
        counted.push_back(entry.ino);
      }
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = entry.ino;
      st.st_mode = entry.type;
      need = fuse_add_direntry(req, buf.data() + used, size - used, entry.name.c_str(), &st, entry.next_offset);
      if (need > size - used) return false;
    }
    used += need;
    return true;
  };
  Status status = fs->ReadDir(ino, off, [&](std::span<const DirEntry> group) {
    const size_t group_used = used, group_counted = counted.size();
    for (const DirEntry& entry : group) {
      if (add(entry)) continue;
      // All of the group or none: the kernel resumes after an offset.
      used = group_used;
      for (size_t i = group_counted; i < counted.size(); ++i) fs->Forget(counted[i], 1);
      counted.resize(group_counted);
      return false;
    }
    return true;
  });
  if (!status.ok() && used == 0) {
    for (uint64_t counted_ino : counted) fs->Forget(counted_ino, 1);
    return ReplyError(req, status);
  }
  if (fuse_reply_buf(req, buf.data(), used) != 0) {
    for (uint64_t counted_ino : counted) fs->Forget(counted_ino, 1);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  ReadDirCommon(req, ino, size, off, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  ReadDirCommon(req, ino, size, off, true);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, ToErrno(Fs(req)->Sync())); }

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  auto st = Fs(req)->StatFs();
  if (!st.ok()) return ReplyError(req, st.status());
  fuse_reply_statfs(req, &*st);
}

// The caller's supplementary groups (libfuse reads them from /proc); none
// when they cannot be read.
std::vector<uint32_t> GroupsOf(fuse_req_t req) {
  std::vector<gid_t> list(32);
  int n = fuse_req_getgroups(req, static_cast<int>(list.size()), list.data());
  if (n > static_cast<int>(list.size())) {
    list.resize(n);
    n = fuse_req_getgroups(req, static_cast<int>(list.size()), list.data());
  }
  if (n < 0) return {};
  list.resize(std::min<size_t>(n, list.size()));
  return std::vector<uint32_t>(list.begin(), list.end());
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Caller caller = CallerOf(req);
  // Whether setfacl keeps set-group-ID depends on group membership.
  if (caller.uid != 0 && strcmp(name, "system.posix_acl_access") == 0) caller.groups = GroupsOf(req);
  fuse_reply_err(req, ToErrno(Fs(req)->SetXattr(ino, name, std::string_view(value, size), flags, caller)));
}

void ReplyXattrBytes(fuse_req_t req, const Result<std::string>& bytes, size_t size) {
  if (!bytes.ok()) return ReplyError(req, bytes.status());
  if (size == 0) return (void)fuse_reply_xattr(req, bytes->size());
  if (bytes->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, bytes->data(), bytes->size());
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  ReplyXattrBytes(req, Fs(req)->GetXattr(ino, name), size);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  ReplyXattrBytes(req, Fs(req)->ListXattr(ino, CallerOf(req)), size);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  fuse_reply_err(req, ToErrno(Fs(req)->RemoveXattr(ino, name)));
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info*) {
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  Status allocated = Fs(req)->Fallocate(ino, mode, offset, length);
  if (!allocated.ok()) return ReplyError(req, allocated);
  // ext4 clears setuid/setgid on fallocate too (file_modified); the kernel
  // never asks us to, nor does it itself. Root stands in for CAP_FSETID.
  Caller caller = CallerOf(req);
  fuse_reply_err(req, caller.uid != 0 ? ToErrno(ClearSuidSgid(req, ino, caller)) : 0);
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t in, off_t in_offset, fuse_file_info*, fuse_ino_t out,
                     off_t out_offset, fuse_file_info*, size_t length, int flags) {
  if (flags != 0 || in_offset < 0 || out_offset < 0) return (void)fuse_reply_err(req, EINVAL);
  auto copied = Fs(req)->CopyFileRange(in, in_offset, out, out_offset, length);
  if (!copied.ok()) return ReplyError(req, copied.status());
  Caller caller = CallerOf(req);  // as a write: setuid/setgid go (see OpFallocate)
  if (caller.uid != 0) {
    Status cleared = ClearSuidSgid(req, out, caller);
    if (!cleared.ok()) return ReplyError(req, cleared);
  }
  fuse_reply_write(req, *copied);
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  // The kernel asks without writing back its dirty pages (fuse_lseek), and
  // data written through a shared mapping, or not yet written back, would
  // be answered as a hole.
  if (FuseRing::Serving() && Server(req)->HasWriters(ino)) {
    // Through io_uring the writeback's writes would queue on this CPU's
    // ring queue behind requests that wait for them, and a daemon killed
    // while it waits is stuck for good (docs/decisions.md). lseek(2)
    // allows the answer without holes: all data up to the end of file.
    auto st = Fs(req)->GetAttr(ino);
    if (!st.ok()) return ReplyError(req, st.status());
    if (off >= st->st_size) return (void)fuse_reply_err(req, ENXIO);
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
    return (void)fuse_reply_lseek(req, whence == SEEK_DATA ? off : st->st_size);
  }
  Server(req)->WriteBackDirtyPages(ino);
  auto pos = Fs(req)->Lseek(ino, off, whence);
  if (!pos.ok()) return ReplyError(req, pos.status());
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

const fuse_lowlevel_ops* Operations() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    memset(&o, 0, sizeof o);
    o.init = OpInit;
    o.lookup = OpLookup;
    o.forget = OpForget;
    o.forget_multi = OpForgetMulti;
    o.getattr = OpGetattr;
    o.setattr = OpSetattr;
    o.readlink = OpReadlink;
    o.mknod = OpMknod;
    o.mkdir = OpMkdir;
    o.symlink = OpSymlink;
    o.link = OpLink;
    o.unlink = OpUnlink;
    o.rmdir = OpRmdir;
    o.rename = OpRename;
    o.open = OpOpen;
    o.create = OpCreate;
    o.read = OpRead;
    o.write = OpWrite;
    o.flush = OpFlush;
    o.release = OpRelease;
    o.fsync = OpFsync;
    o.readdir = OpReaddir;
    o.readdirplus = OpReaddirplus;
    o.fsyncdir = OpFsyncdir;
    o.statfs = OpStatfs;
    o.setxattr = OpSetxattr;
    o.getxattr = OpGetxattr;
    o.listxattr = OpListxattr;
    o.removexattr = OpRemovexattr;
    o.fallocate = OpFallocate;
    o.lseek = OpLseek;
    o.copy_file_range = OpCopyFileRange;
    return o;
  }();
  return &ops;
}

}  // namespace

FuseServer::~FuseServer() {
  if (!stopped_) Stop(true).IgnoreError();
  if (session_) fuse_session_destroy(session_);
}

Result<std::unique_ptr<FuseServer>> FuseServer::Start(std::unique_ptr<VolumeFs> fs, const std::string& dir,
                                                      const FuseOptions& options) {
  std::unique_ptr<FuseServer> server(new FuseServer());
  server->fs_ = std::move(fs);
  server->dir_ = dir;
  server->options_ = options;
  // noatime says what the file system does: the kernel marks FUSE inodes
  // S_NOATIME, and reads served from its page cache never reach us.
  std::string mount_options = "allow_other,default_permissions,dev,suid,noatime,fsname=aspfs:" +
                              server->fs_->volume()->name() + ",subtype=aspfs";
  if (options.read_only) mount_options += ",ro";
  std::vector<std::string> argv_store = {"aspfsd", "-o", mount_options};
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  // Until the loop runs there is nothing to stop: a failure returns a
  // server whose destructor must not unmount whatever is at dir.
  server->stopped_ = true;
  server->session_ = fuse_session_new(&args, Operations(), sizeof(fuse_lowlevel_ops), server.get());
  if (!server->session_) return Error(Code::kIo, "cannot create FUSE session");
  if (fuse_session_mount(server->session_, dir.c_str()) != 0) {
    fuse_session_destroy(server->session_);
    server->session_ = nullptr;
    return Error(Code::kIo, "cannot mount FUSE at " + dir);
  }
  fuse_custom_io io = {};
  io.read = ReadRequest;
  io.writev = WriteReply;
  if (fuse_session_custom_io(server->session_, &io, fuse_session_fd(server->session_)) != 0) {
    fuse_session_unmount(server->session_);
    fuse_session_destroy(server->session_);
    server->session_ = nullptr;
    return Error(Code::kIo, "cannot set up FUSE I/O for " + dir);
  }
  fuse_session* se = server->session_;
  server->stopped_ = false;
  server->loop_ = std::thread([se, raw = server.get()] {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_idle_threads(config, 4);
    fuse_loop_cfg_set_max_threads(config, 16);
    fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
    std::lock_guard<std::mutex> lock(raw->ended_mu_);
    raw->ended_ = true;
    raw->ended_cv_.notify_all();
  });
  // Live means the kernel has finished FUSE_INIT: a stat of the root answers.
  struct stat root;
  if (stat(dir.c_str(), &root) != 0) {
    int error = errno;
    server->Stop(true).IgnoreError();
    server.release();  // its detached loop may still run: it must outlive it
    return Error(Code::kIo, "mount at " + dir + " does not answer: " + strerror(error));
  }
  server->device_ = root.st_dev;
  return server;
}

void FuseServer::StartRing(int fuse_fd) {
  fuse_session* se = session_;
  auto ring = FuseRing::Start(fuse_fd, [this, se](char* message, size_t len) {
    ServeRingRequest(this, se, message, len);
  });
  std::lock_guard<std::mutex> lock(ring_mu_);
  ring_ = std::move(ring);
}

bool FuseServer::serves_through_io_uring() const {
  std::lock_guard<std::mutex> lock(ring_mu_);
  return ring_ && ring_->live_queues() > 0;
}

void FuseServer::InvalidateAttributes(uint64_t ino) {
  // Attributes only (negative offset): no page cache, no inode lock taken.
  fuse_lowlevel_notify_inval_inode(session_, ino, -1, 0);
}

bool FuseServer::WaitEnded(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(ended_mu_);
  return ended_cv_.wait_for(lock, timeout, [&] { return ended_; });
}

Status FuseServer::Stop(bool lazy) {
  if (stopped_) return Status::Ok();
  if (WaitEnded(std::chrono::milliseconds(0))) {
    // Unmounted outside the daemon: whatever is mounted at dir_ now is not ours.
    stopped_ = true;
    Join();
    return Status::Ok();
  }
  // A file closed a moment ago can keep the mount busy a little longer (the
  // kernel may finish a close on a worker thread): half a second of retries
  // before busy is the answer.
  int rc;
  for (int attempt = 0; (rc = umount2(dir_.c_str(), lazy ? MNT_DETACH : 0)) != 0 && errno == EBUSY && attempt < 50;
       ++attempt) {
    usleep(10000);
  }
  if (rc != 0 && errno != EINVAL) {
    if (errno == EBUSY) return Error(Code::kBusy, dir_ + " is busy");
    return Error(Code::kIo, "unmount " + dir_ + ": " + strerror(errno));
  }
  // Not mounted there any more: umount -l outside the daemon, with files
  // still open on the detached mount (its loop runs until they close).
  // Waiting here would hold up whoever stops us (the control socket,
  // SIGTERM) for as long as they stay open.
  if (rc != 0 && !lazy && !WaitEnded(std::chrono::seconds(1))) {
    return Error(Code::kBusy, dir_ + " was unmounted outside aspfs but its files are still in use");
  }
  if (lazy) {
    // A detached mount may still be in use; its loop ends when the
    // connection closes: its last user gone, or the daemon's exit.
    Abandon();
    return Status::Ok();
  }
  stopped_ = true;
  Join();
  return Status::Ok();
}

void FuseServer::Abandon() {
  if (stopped_) return;
  stopped_ = true;
  detached_ = true;
  fuse_session_exit(session_);
  loop_.detach();
  session_ = nullptr;  // the detached loop still uses it
  std::lock_guard<std::mutex> lock(ring_mu_);
  if (ring_) ring_->Detach();
  ring_.release();  // its threads still use it
}

void FuseServer::CountWriter(uint64_t ino, int delta) {
  std::lock_guard<std::mutex> lock(writers_mu_);
  int& count = writers_[ino];
  count += delta;
  if (count <= 0) writers_.erase(ino);
}

bool FuseServer::HasWriters(uint64_t ino) {
  std::lock_guard<std::mutex> lock(writers_mu_);
  return writers_.count(ino) != 0;
}

void FuseServer::WriteBackDirtyPages(uint64_t ino) {
  if (!HasWriters(ino)) return;
  // Invalidating the page cache launders dirty pages first: the kernel sends
  // them as FUSE_WRITEs (served by the loop's other threads) and returns
  // once they are answered. Clean pages go too; a reader reads them again.
  fuse_lowlevel_notify_inval_inode(session_, ino, 0, 0);
}

void FuseServer::WriteBackPageCache() {
  int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    syncfs(fd);
    close(fd);
  }
  // syncfs starts the writeback of a FUSE mount's dirty pages but does not
  // wait for the daemon's answers; laundering each written file does.
  std::vector<uint64_t> written;
  {
    std::lock_guard<std::mutex> lock(writers_mu_);
    for (const auto& [ino, count] : writers_) written.push_back(ino);
  }
  for (uint64_t ino : written) WriteBackDirtyPages(ino);
}

bool FuseServer::StopServing(std::chrono::milliseconds timeout) {
  detached_ = true;
  if (!serving_mu_->try_lock_for(timeout)) return false;
  serving_mu_->unlock();
  return true;
}

void FuseServer::Join() {
  if (loop_.joinable()) loop_.join();
  {
    // Its queue threads end with the connection.
    std::lock_guard<std::mutex> lock(ring_mu_);
    ring_.reset();
  }
  if (session_) {
    fuse_session_unmount(session_);
  }
}

}  // namespace aspfs
