#include "journal/space_guard.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace aspfs {
namespace {

std::string Mib(int64_t bytes) { return std::to_string(std::max<int64_t>(bytes, 0) >> 20) + " MiB"; }

}  // namespace

SpaceGuard::SpaceGuard(Probe probe, Clock clock) : probe_(std::move(probe)), clock_(std::move(clock)) {}

std::unique_ptr<SpaceGuard> SpaceGuard::ForDirectory(const std::string& dir) {
  auto probe = [dir]() -> Result<DiskSpace> {
    struct statvfs st;
    if (statvfs(dir.c_str(), &st) != 0) return Error(Code::kIo, "statvfs " + dir + ": " + strerror(errno));
    // f_bfree: aspfsd runs as root, which may use ext4's reserved blocks.
    return DiskSpace{static_cast<uint64_t>(st.f_blocks) * st.f_frsize, static_cast<uint64_t>(st.f_bfree) * st.f_frsize};
  };
  auto clock = [] {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  return std::make_unique<SpaceGuard>(probe, clock);
}

void SpaceGuard::ProbeLocked(int64_t now) {
  probed_ns_ = now;
  auto space = probe_();
  // A file system that cannot say how full it is is not stopped on a guess.
  if (!space.ok()) return;
  probed_ = true;
  space_ = *space;
  estimate_ = static_cast<int64_t>(space->free_bytes) - static_cast<int64_t>(promised_);
  reserve_ = std::min(kMaxReserve, space->total_bytes / 20);
}

void SpaceGuard::RefreshLocked() {
  int64_t now = clock_();
  if (!probed_ || now - probed_ns_ >= kProbeIntervalNs) ProbeLocked(now);
}

Status SpaceGuard::RoomLocked(Use use, uint64_t bytes) const {
  if (!probed_) return Status::Ok();
  // Data refused stays refused until there is room again (UpdateFullLocked).
  const uint64_t floor = use == Use::kMetadata ? reserve_ / 2 : full_ ? reserve_ + reserve_ / 4 : reserve_;
  if (estimate_ < static_cast<int64_t>(floor) || static_cast<uint64_t>(estimate_) - floor < bytes) {
    return Error(Code::kNoSpace, "store disk full (" + Mib(estimate_) + " free, " + Mib(reserve_) + " kept in reserve)");
  }
  return Status::Ok();
}

Status SpaceGuard::Reserve(Use use, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  RefreshLocked();
  UpdateFullLocked();
  ASPFS_RETURN_IF_ERROR(RoomLocked(use, bytes));
  estimate_ -= static_cast<int64_t>(bytes);
  UpdateFullLocked();
  return Status::Ok();
}

Status SpaceGuard::Promise(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  RefreshLocked();
  UpdateFullLocked();
  ASPFS_RETURN_IF_ERROR(RoomLocked(Use::kData, bytes));
  estimate_ -= static_cast<int64_t>(bytes);
  promised_ += bytes;
  UpdateFullLocked();
  return Status::Ok();
}

void SpaceGuard::Release(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  bytes = std::min(bytes, promised_);
  promised_ -= bytes;
  estimate_ += static_cast<int64_t>(bytes);
  UpdateFullLocked();
}

void SpaceGuard::Settle(uint64_t promised, uint64_t written) {
  std::lock_guard<std::mutex> lock(mu_);
  promised = std::min(promised, promised_);
  promised_ -= promised;
  estimate_ += static_cast<int64_t>(promised) - static_cast<int64_t>(written);
  UpdateFullLocked();
}

void SpaceGuard::UpdateFullLocked() {
  // Room again only a quarter of the reserve above it: a disk that hovers
  // at the edge does not flip (and log) at every probe.
  const bool full = probed_ && estimate_ < static_cast<int64_t>(full_ ? reserve_ + reserve_ / 4 : reserve_);
  if (full == full_) return;
  full_ = full;
  if (!on_change_) return;
  on_change_(full, full ? "store disk full: " + Mib(estimate_) + " free, " + Mib(reserve_) +
                              " kept in reserve; file data is refused until space is freed"
                        : "store disk has room again: " + Mib(estimate_) + " free");
}

void SpaceGuard::SetOnChange(OnChange on_change) {
  std::lock_guard<std::mutex> lock(mu_);
  on_change_ = std::move(on_change);
}

SpaceGuard::Report SpaceGuard::report() {
  std::lock_guard<std::mutex> lock(mu_);
  RefreshLocked();
  UpdateFullLocked();
  return Report{space_, reserve_, full_};
}

}  // namespace aspfs
