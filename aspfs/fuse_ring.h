// FUSE over io_uring (kernel 6.14+, with the fuse module's enable_uring
// parameter on): the kernel hands each request to a ring entry of the
// queue of the CPU its caller runs on, and our thread for that CPU, pinned
// to it, answers there. Caller and server then take turns on one CPU
// instead of waking each other across CPUs, which on a VM whose idle CPUs
// halt is most of a metadata request's latency (docs/performance.md).
// INIT, FORGET and INTERRUPT still come through /dev/fuse.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace aspfs {

class FuseRing {
 public:
  // Serves one request, given as the /dev/fuse message it would have been;
  // its reply must come back through Reply() on the same thread.
  using Serve = std::function<void(char* message, size_t len)>;

  // Registers entries for every CPU's queue on the FUSE connection fuse_fd
  // (whose INIT reply asked for io_uring) and starts a thread per queue.
  // Returns null, with nothing started, if this kernel or process cannot
  // set up a ring; requests then keep coming through /dev/fuse.
  static std::unique_ptr<FuseRing> Start(int fuse_fd, Serve serve);
  ~FuseRing();  // waits for the queue threads (they end with the connection)

  // If this thread is serving a ring request and iov is its reply, puts the
  // reply in the request's ring entry and returns true.
  static bool Reply(const struct iovec* iov, int count);
  // Whether this thread is serving a request that came through a ring.
  static bool Serving();

  // The queue threads stop with the connection; a server that leaves its
  // mount to die with the process lets them run on.
  void Detach();
  // Queues whose entries the kernel accepted (the ring serves once every
  // CPU's queue has them).
  int live_queues() const { return live_queues_.load(); }

  struct Queue;

 private:
  FuseRing() = default;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::atomic<int> live_queues_{0};
  bool detached_ = false;
};

}  // namespace aspfs
