#include "journal/space_guard.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace aspfs {
namespace {

std::string Mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

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
  estimate_ = space->free_bytes;
  reserve_ = std::min(kMaxReserve, space->total_bytes / 20);
}

Status SpaceGuard::Reserve(Use use, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = clock_();
  if (!probed_ || now - probed_ns_ >= kProbeIntervalNs) ProbeLocked(now);
  if (!probed_) return Status::Ok();
  UpdateFullLocked();
  const uint64_t floor = use == Use::kData ? reserve_ : reserve_ / 2;
  if (estimate_ < floor || estimate_ - floor < bytes) {
    return Error(Code::kNoSpace, "store disk full (" + Mib(estimate_) + " free, " + Mib(reserve_) + " kept in reserve)");
  }
  estimate_ -= bytes;
  UpdateFullLocked();
  return Status::Ok();
}

void SpaceGuard::UpdateFullLocked() {
  // Room again only a quarter of the reserve above it: a disk that hovers
  // at the edge does not flip (and log) at every probe.
  const bool full = probed_ && estimate_ < (full_ ? reserve_ + reserve_ / 4 : reserve_);
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
  int64_t now = clock_();
  if (!probed_ || now - probed_ns_ >= kProbeIntervalNs) ProbeLocked(now);
  UpdateFullLocked();
  return Report{space_, reserve_, full_};
}

}  // namespace aspfs
