// Keeps the store's file system from filling up under RocksDB. Below a
// reserve of free space, writes are refused with kNoSpace before they reach
// the disk, so RocksDB never meets ENOSPC in the middle of a WAL append:
// after that it refuses every write until restarted, and the commits it was
// given are lost. Refusing early keeps the node writable the moment space is
// freed. File data stops at the reserve; metadata commits (rm, rmdir,
// truncate, rename) may go on into its lower half, the way ext4 keeps
// blocks back so that a full disk can still be cleaned up.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "journal/status.h"

namespace aspfs {

struct DiskSpace {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
};

class SpaceGuard {
 public:
  using Probe = std::function<Result<DiskSpace>()>;
  using Clock = std::function<int64_t()>;  // nanoseconds, monotonic
  // Called when writes start or stop being refused, with a one-line reason.
  using OnChange = std::function<void(bool full, const std::string& why)>;

  // Space is probed at most every kProbeInterval; in between, what callers
  // reserve counts down the last probe's figure.
  static constexpr int64_t kProbeIntervalNs = 100'000'000;
  static constexpr uint64_t kMaxReserve = 128ull << 20;

  SpaceGuard(Probe probe, Clock clock);
  // statvfs of dir, on the monotonic clock.
  static std::unique_ptr<SpaceGuard> ForDirectory(const std::string& dir);

  enum class Use { kData, kMetadata };
  // Counts bytes about to be written; kNoSpace if they would cut into the
  // reserve (data) or its lower half (metadata).
  Status Reserve(Use use, uint64_t bytes);
  // File data accepted now and written later (a buffered write): refused as
  // Reserve(kData) would, and held back from every later probe's figure
  // until Release, so that a probe taken before the data reaches the disk
  // does not hand its space out again.
  Status Promise(uint64_t bytes);
  void Release(uint64_t bytes);
  // Promised data being written: the promise is released and what is
  // written counted, at once and whatever the room.
  void Settle(uint64_t promised, uint64_t written);

  void SetOnChange(OnChange on_change);
  // A fresh enough probe's figures and the reserve (min(kMaxReserve, 5% of the
  // file system)); whether data is being refused.
  struct Report {
    DiskSpace space;
    uint64_t reserve_bytes = 0;
    bool full = false;
    // What file data may still take: the free space above the reserve.
    uint64_t data_room() const {
      return space.free_bytes > reserve_bytes ? space.free_bytes - reserve_bytes : 0;
    }
  };
  Report report();

 private:
  void ProbeLocked(int64_t now);  // REQUIRES(mu_)
  // Probes when the last probe is too old. REQUIRES(mu_)
  void RefreshLocked();
  // kNoSpace unless bytes fit above the floor of use. REQUIRES(mu_)
  Status RoomLocked(Use use, uint64_t bytes) const;
  // Reports a change of full_ to on_change_.
  void UpdateFullLocked();  // REQUIRES(mu_)

  Probe probe_;
  Clock clock_;
  mutable std::mutex mu_;
  OnChange on_change_;          // GUARDED_BY(mu_)
  DiskSpace space_;             // GUARDED_BY(mu_): the last probe
  // GUARDED_BY(mu_): free bytes, less what was reserved since; signed, as
  // promised data may be counted as written before its promise is released.
  int64_t estimate_ = 0;
  uint64_t promised_ = 0;       // GUARDED_BY(mu_): Promise's, not yet released
  uint64_t reserve_ = 0;        // GUARDED_BY(mu_)
  int64_t probed_ns_ = 0;       // GUARDED_BY(mu_)
  bool probed_ = false;         // GUARDED_BY(mu_)
  bool full_ = false;           // GUARDED_BY(mu_)
};

}  // namespace aspfs
