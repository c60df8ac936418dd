#include "journal/chunk_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace aspfs {
namespace {

std::string FileName(const std::string& dir, uint32_t seq) {
  char name[32];
  snprintf(name, sizeof name, "/%08u.log", seq);
  return dir + name;
}

Status Errno(const std::string& what) { return Error(errno == ENOSPC ? Code::kNoSpace : Code::kIo, what + ": " + strerror(errno)); }

}  // namespace

std::string ChunkLocation::Encode() const {
  std::string out(16, '\0');
  memcpy(&out[0], &file, 4);
  memcpy(&out[4], &offset, 8);
  memcpy(&out[12], &length, 4);
  return out;
}

Result<ChunkLocation> ChunkLocation::Decode(std::string_view bytes) {
  if (bytes.size() != 16) return Error(Code::kCorrupt, "corrupt chunk index record");
  ChunkLocation loc;
  memcpy(&loc.file, bytes.data(), 4);
  memcpy(&loc.offset, bytes.data() + 4, 8);
  memcpy(&loc.length, bytes.data() + 12, 4);
  if (loc.length == 0 || loc.length > 2 * kBlockSize) return Error(Code::kCorrupt, "corrupt chunk index record");
  return loc;
}

ChunkLog::~ChunkLog() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

Result<std::unique_ptr<ChunkLog>> ChunkLog::Open(const std::string& dir) {
  std::unique_ptr<ChunkLog> log(new ChunkLog());
  log->dir_ = dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(Code::kIo, "chunk log: create " + dir + ": " + ec.message());
  uint32_t highest = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    unsigned seq;
    if (sscanf(entry.path().filename().c_str(), "%u.log", &seq) == 1) highest = std::max<uint32_t>(highest, seq);
  }
  std::lock_guard<std::mutex> lock(log->mu_);
  for (uint32_t seq = 1; seq <= std::max<uint32_t>(highest, 1); ++seq) {
    ASPFS_RETURN_IF_ERROR(log->OpenFileLocked(seq));
  }
  log->current_ = std::max<uint32_t>(highest, 1);
  struct stat st;
  if (fstat(log->FdLocked(log->current_), &st) != 0) return Errno("chunk log: stat");
  log->end_ = st.st_size;
  return log;
}

Status ChunkLog::OpenFileLocked(uint32_t seq) {
  int fd = open(FileName(dir_, seq).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("chunk log: open " + FileName(dir_, seq));
  if (fds_.size() <= seq) fds_.resize(seq + 1, -1);
  fds_[seq] = fd;
  return Status::Ok();
}

int ChunkLog::FdLocked(uint32_t seq) const { return seq < fds_.size() ? fds_[seq] : -1; }

Result<ChunkLocation> ChunkLog::Append(const ChunkId& id, std::string_view body) {
  auto locs = AppendAll({Piece{id, body, {}}});
  if (!locs.ok()) return locs.status();
  return locs->front();
}

Result<std::vector<ChunkLocation>> ChunkLog::AppendAll(const std::vector<Piece>& records) {
  constexpr size_t kRecordHeader = 20;  // chunk id, body length
  std::vector<std::string> headers;
  headers.reserve(records.size());
  size_t total = 0;
  for (const Piece& r : records) {
    std::string h = r.id.Bytes();
    uint32_t length = static_cast<uint32_t>(r.head.size() + r.tail.size());
    h.append(reinterpret_cast<const char*>(&length), 4);
    headers.push_back(std::move(h));
    total += kRecordHeader + length;
  }
  std::vector<ChunkLocation> locs;
  if (records.empty()) return locs;
  int fd;
  uint32_t file;
  uint64_t start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (end_ + total > kFileLimit && end_ > 0) {
      ASPFS_RETURN_IF_ERROR(OpenFileLocked(current_ + 1));
      ++current_;
      end_ = 0;
    }
    start = end_;
    end_ += total;
    file = current_;
    fd = FdLocked(current_);
    uint64_t at = start;
    for (const Piece& r : records) {
      uint32_t length = static_cast<uint32_t>(r.head.size() + r.tail.size());
      locs.push_back(ChunkLocation{current_, at + kRecordHeader, length});
      at += kRecordHeader + length;
    }
  }
  // Appends reserve disjoint ranges, so they write in parallel. The pieces
  // go as they are: a payload is never copied into a record.
  std::vector<struct iovec> iov;
  iov.reserve(records.size() * 3);
  for (size_t i = 0; i < records.size(); ++i) {
    for (std::string_view piece : {std::string_view(headers[i]), records[i].head, records[i].tail}) {
      if (!piece.empty()) iov.push_back({const_cast<char*>(piece.data()), piece.size()});
    }
  }
  size_t first = 0;  // first iovec not fully written
  uint64_t offset = start;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = pwritev(fd, &iov[first], count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("chunk log: write");
    offset += n;
    for (size_t left = n; left > 0;) {  // skip what was written, trim a partial iovec
      if (left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      } else {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
        left = 0;
      }
    }
  }
  // Marked for Sync once written, not when its range was taken: a Sync
  // in between would fdatasync the file before these bytes were in it, and
  // the next would skip it.
  std::lock_guard<std::mutex> lock(mu_);
  unsynced_.insert(file);
  return locs;
}

Result<std::string> ChunkLog::Read(const ChunkLocation& loc) const {
  std::string head;
  auto rest = Read(loc, 0, &head);
  if (!rest.ok()) return rest;
  return head + *rest;
}

Result<std::string> ChunkLog::Read(const ChunkLocation& loc, size_t head_size, std::string* head) const {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd = FdLocked(loc.file);
  }
  if (fd < 0) return Error(Code::kCorrupt, "chunk log file " + std::to_string(loc.file) + " is missing");
  if (head_size > loc.length) return Error(Code::kCorrupt, "chunk log record shorter than its header");
  head->assign(head_size, '\0');
  std::string rest(loc.length - head_size, '\0');
  size_t done = 0;
  while (done < loc.length) {
    // One preadv puts the header and the payload in their own buffers.
    struct iovec iov[2];
    int n_iov = 0;
    if (done < head_size) iov[n_iov++] = {head->data() + done, head_size - done};
    size_t rest_done = done > head_size ? done - head_size : 0;
    if (rest_done < rest.size()) iov[n_iov++] = {rest.data() + rest_done, rest.size() - rest_done};
    ssize_t n = preadv(fd, iov, n_iov, static_cast<off_t>(loc.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("chunk log: read");
    if (n == 0) return Error(Code::kCorrupt, "chunk log file " + std::to_string(loc.file) + " is truncated");
    done += n;
  }
  return rest;
}

Status ChunkLog::Sync() {
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t seq : unsynced_) fds.push_back(FdLocked(seq));
    unsynced_.clear();
  }
  for (int fd : fds) {
    if (fdatasync(fd) != 0) return Errno("chunk log: fdatasync");
  }
  return Status::Ok();
}

Status ChunkLog::CorruptForTest(const ChunkLocation& loc) {
  auto body = Read(loc);
  if (!body.ok()) return body.status();
  std::string bad = *body;
  bad.back() ^= 0x5a;
  std::lock_guard<std::mutex> lock(mu_);
  if (pwrite(FdLocked(loc.file), bad.data(), bad.size(), loc.offset) != static_cast<ssize_t>(bad.size())) {
    return Errno("chunk log: corrupt");
  }
  return Status::Ok();
}

}  // namespace aspfs
