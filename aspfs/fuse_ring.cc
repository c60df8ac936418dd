#include "aspfs/fuse_ring.h"

#include <liburing.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "aspfs/fuse_wire.h"
#include "aspfs/log.h"

namespace aspfs {
namespace {

// The kernel's uapi for FUSE over io_uring (6.14), newer than Debian 12's
// headers: the commands and the 80-byte command area of a 128-byte SQE.
constexpr uint32_t kRegister = 1;
constexpr uint32_t kCommitAndFetch = 2;
struct CommandArea {  // struct fuse_uring_cmd_req
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

// Entries a queue starts with: one serves while others carry requests
// handed aside (fsync) or wait for the queue thread. A queue gets another
// entry whenever all but one are held by requests served aside (see
// Dispatch), up to the most a queue may have.
constexpr int kEntriesPerQueue = 4;
constexpr int kMostEntriesPerQueue = 64;
// The kernel's largest payload: max_write (1 MiB, see OpInit) or max_pages
// pages, whichever is more; a page more for safety.
constexpr size_t kPayloadCapacity = (size_t{1} << 20) + 4096;
constexpr size_t kPage = 4096;
// Marks the completion of the read of the queue's eventfd.
constexpr uint64_t kEventTag = 1;

// A CPU list file of /sys/devices/system/cpu ("0-3,8,10-11").
std::vector<int> ReadCpuList(const char* path) {
  std::vector<int> cpus;
  FILE* f = fopen(path, "re");
  if (!f) return cpus;
  char line[4096];
  if (fgets(line, sizeof line, f)) {
    for (char* range = strtok(line, ",\n"); range; range = strtok(nullptr, ",\n")) {
      int first = 0, last = 0;
      int n = sscanf(range, "%d-%d", &first, &last);
      if (n == 1) last = first;
      for (int cpu = first; n >= 1 && cpu <= last && cpu < 65536; ++cpu) cpus.push_back(cpu);
    }
  }
  fclose(f);
  return cpus;
}

}  // namespace

struct Entry {
  int qid = 0;               // the kernel's queue it belongs to
  char* headers = nullptr;   // the start of its mapping; the payload one page on
  char* payload = nullptr;
  struct iovec iov[2];
  uint64_t unique = 0;
  uint64_t commit_id = 0;
  enum class State { kInKernel, kServing, kDead } state = State::kInKernel;
  bool replied = false;
};

struct FuseRing::Queue {
  int qid = 0;
  int fuse_fd = -1;
  Serve serve;
  std::atomic<int>* live_queues = nullptr;
  io_uring ring;
  bool ring_ready = false;
  int event_fd = -1;
  uint64_t event_value = 0;
  std::mutex done_mu;
  std::vector<Entry*> done;  // GUARDED_BY(done_mu): served aside, to commit
  // Queue thread only: entries the kernel has not failed, and of those of
  // this CPU's queue, all and those being served aside.
  int live = 0;
  int own_live = 0;
  int own_aside = 0;
  int aside = 0;  // entries of any queue being served aside
  std::vector<std::unique_ptr<Entry>> entries;
  std::thread thread;

  ~Queue() {
    if (ring_ready) io_uring_queue_exit(&ring);
    if (event_fd >= 0) close(event_fd);
    for (auto& e : entries) {
      munmap(e->headers, kPage + kPayloadCapacity);
    }
  }
};

namespace {

thread_local Entry* t_entry = nullptr;  // the ring request this thread serves

// A new entry of the kernel's queue qid, served by q's thread.
Entry* NewEntry(FuseRing::Queue* q, int qid) {
  void* mapping = mmap(nullptr, kPage + kPayloadCapacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) return nullptr;
  auto e = std::make_unique<Entry>();
  e->qid = qid;
  e->headers = static_cast<char*>(mapping);
  e->payload = e->headers + kPage;  // with the room for a message's header and argument before it
  static_assert(fuse_wire::kUringHeaderAreaSize + fuse_wire::kUringMessageRoom <= kPage);
  e->iov[0] = {e->headers, fuse_wire::kUringHeaderAreaSize};
  e->iov[1] = {e->payload, kPayloadCapacity};
  q->entries.push_back(std::move(e));
  return q->entries.back().get();
}

void PrepareCommand(io_uring_sqe* sqe, FuseRing::Queue* q, Entry* e, uint32_t command) {
  // A 128-byte SQE (the command area runs 80 bytes from sqe->cmd), which
  // the compiler takes for a 64-byte struct.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
  memset(sqe, 0, 2 * sizeof(io_uring_sqe));
#pragma GCC diagnostic pop
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = q->fuse_fd;
  sqe->cmd_op = command;
  if (command == kRegister) {
    sqe->addr = reinterpret_cast<uint64_t>(e->iov);
    sqe->len = 2;
  }
  auto* area = reinterpret_cast<CommandArea*>(sqe->cmd);
  area->qid = static_cast<uint16_t>(e->qid);
  area->commit_id = e->commit_id;
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(e));
}

// Hands the entry back to the kernel with its reply, to fetch the next
// request. Only the queue thread submits: io_uring ties a command to the
// thread that submitted it and cancels it when that thread exits.
void Commit(FuseRing::Queue* q, Entry* e) {
  if (e->state != Entry::State::kServing) return;
  io_uring_sqe* sqe = io_uring_get_sqe(&q->ring);
  if (!sqe) {  // never: the ring has room for every entry and the eventfd
    e->state = Entry::State::kDead;
    return;
  }
  PrepareCommand(sqe, q, e, kCommitAndFetch);
  e->state = Entry::State::kInKernel;
  io_uring_submit(&q->ring);
}

// Gives a new entry to the kernel (the queue thread, before its loop or in
// it).
void Register(FuseRing::Queue* q, Entry* e) {
  io_uring_sqe* sqe = io_uring_get_sqe(&q->ring);
  if (!sqe) return;
  PrepareCommand(sqe, q, e, kRegister);
  ++q->live;
  if (e->qid == q->qid) ++q->own_live;
}

void ArmEvent(FuseRing::Queue* q) {
  io_uring_sqe* sqe = io_uring_get_sqe(&q->ring);
  if (!sqe) return;
  io_uring_prep_read(sqe, q->event_fd, &q->event_value, sizeof q->event_value, 0);
  io_uring_sqe_set_data64(sqe, kEventTag);
  io_uring_submit(&q->ring);
}

void ReplyWithError(Entry* e, const void* request, size_t len, int error) {
  auto reply = fuse_wire::ErrorReplyTo(request, len, error);
  if (!reply) return;
  struct iovec iov = {reply->data(), reply->size()};
  if (fuse_wire::ReplyToUring(&iov, 1, e->headers, e->payload, kPayloadCapacity)) e->replied = true;
}

void ServeEntry(FuseRing::Queue* q, Entry* e, const fuse_wire::Message& message) {
  e->replied = false;
  t_entry = e;
  q->serve(message.data, message.len);
  t_entry = nullptr;
  // Every request libfuse serves is answered; a reply that could not be
  // written into the entry (too big) is an error rather than a lost entry.
  if (!e->replied) ReplyWithError(e, message.data, message.len, EIO);
}

void Dispatch(FuseRing::Queue* q, Entry* e) {
  auto message = fuse_wire::UringRequestToMessage(e->headers, e->payload, kPayloadCapacity);
  if (!message) {
    // An opcode libfuse 3.14 does not serve (FUSE_STATX): as libfuse
    // answers it on /dev/fuse.
    char header[fuse_wire::kUringHeaderAreaSize];
    memcpy(header, e->headers, sizeof header);
    e->commit_id = fuse_wire::UringCommitId(header);
    ReplyWithError(e, header, sizeof header, ENOSYS);
    Commit(q, e);
    return;
  }
  e->unique = message->unique;
  e->commit_id = message->commit_id;
  if (fuse_wire::ServedAside(*message)) {
    ++q->aside;
    // The queue keeps an entry that no request served aside holds, for the
    // requests that do not wait (as /dev/fuse's loop starts threads).
    if (e->qid == q->qid && ++q->own_aside >= q->own_live && q->own_live < kMostEntriesPerQueue) {
      if (Entry* more = NewEntry(q, q->qid)) {
        Register(q, more);
        io_uring_submit(&q->ring);
      }
    }
    std::thread([q, e, m = *message] {
      // Free to run on any CPU (a thread starts with its creator's affinity).
      cpu_set_t any;
      CPU_ZERO(&any);
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &any);
      sched_setaffinity(0, sizeof any, &any);
      ServeEntry(q, e, m);
      {
        std::lock_guard<std::mutex> lock(q->done_mu);
        q->done.push_back(e);
      }
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(q->event_fd, &one, sizeof one);
    }).detach();
    return;
  }
  ServeEntry(q, e, *message);
  Commit(q, e);
}

void CommitServedAside(FuseRing::Queue* q) {
  std::vector<Entry*> done;
  {
    std::lock_guard<std::mutex> lock(q->done_mu);
    done.swap(q->done);
  }
  for (Entry* e : done) {
    --q->aside;
    if (e->qid == q->qid) --q->own_aside;
    Commit(q, e);
  }
}

// The queue thread: registers its entries, then serves what the kernel
// puts in them until the connection ends (every entry's command fails).
void RunQueue(FuseRing::Queue* q, std::promise<bool> set_up) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(q->qid, &cpus);
  sched_setaffinity(0, sizeof cpus, &cpus);  // an offline CPU: its queue is served from elsewhere
  // Task work (a request's delivery) runs only when this thread waits for
  // completions, never interrupting it while it serves.
  io_uring_params params = {};
  params.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  // Every entry's command may complete before the thread looks.
  params.flags |= IORING_SETUP_CQSIZE;
  params.cq_entries = 1024;
  unsigned depth = kEntriesPerQueue + 2;
  int rc = io_uring_queue_init_params(depth, &q->ring, &params);
  if (rc == -EINVAL) {
    params = {};
    params.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    params.cq_entries = 1024;
    rc = io_uring_queue_init_params(depth, &q->ring, &params);
  }
  q->event_fd = eventfd(0, EFD_CLOEXEC);
  if (rc < 0 || q->event_fd < 0) {
    if (rc < 0) Log("FUSE over io_uring: cannot set up a ring: %s", strerror(-rc));
    set_up.set_value(false);
    return;
  }
  q->ring_ready = true;
  for (auto& e : q->entries) {
    Register(q, e.get());
    io_uring_submit(&q->ring);  // the ring has room for a few at a time
  }
  ArmEvent(q);
  set_up.set_value(true);

  bool counted = false;
  int first_error = 0;
  while (q->live > 0 || q->aside > 0) {
    io_uring_cqe* cqe;
    rc = io_uring_wait_cqe(&q->ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) break;
    if (!counted) {  // the kernel took our entries: a request came
      counted = true;
      q->live_queues->fetch_add(1);
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&q->ring, head, cqe) {
      ++seen;
      if (io_uring_cqe_get_data64(cqe) == kEventTag) {
        CommitServedAside(q);
        ArmEvent(q);
        continue;
      }
      auto* e = reinterpret_cast<Entry*>(io_uring_cqe_get_data64(cqe));
      if (cqe->res < 0) {
        // The connection ended (ENOTCONN), or the kernel refused the entry.
        if (!first_error) first_error = -cqe->res;
        if (e->state != Entry::State::kDead) {
          e->state = Entry::State::kDead;
          --q->live;
          if (e->qid == q->qid) --q->own_live;
        }
        continue;
      }
      e->state = Entry::State::kServing;
      Dispatch(q, e);
    }
    io_uring_cq_advance(&q->ring, seen);
  }
  if (!counted && first_error && first_error != ENOTCONN) {
    Log("FUSE over io_uring: the kernel refused queue %d's entries: %s", q->qid, strerror(first_error));
  }
  if (counted) q->live_queues->fetch_sub(1);
}

}  // namespace

std::unique_ptr<FuseRing> FuseRing::Start(int fuse_fd, Serve serve) {
  std::unique_ptr<FuseRing> ring(new FuseRing());
  // The kernel keeps a queue for every possible CPU, and the ring serves
  // once each has an entry. A thread per online CPU serves its CPU's queue;
  // the first also holds one entry of each CPU that is not online.
  std::vector<int> possible = ReadCpuList("/sys/devices/system/cpu/possible");
  std::vector<int> online = ReadCpuList("/sys/devices/system/cpu/online");
  if (possible.empty()) {
    for (int cpu = 0; cpu < get_nprocs_conf(); ++cpu) possible.push_back(cpu);
  }
  if (online.empty()) online = possible;
  for (int cpu : online) {
    auto q = std::make_unique<Queue>();
    q->qid = cpu;
    q->fuse_fd = fuse_fd;
    q->serve = serve;
    q->live_queues = &ring->live_queues_;
    for (int i = 0; i < kEntriesPerQueue; ++i) {
      if (!NewEntry(q.get(), cpu)) return nullptr;
    }
    ring->queues_.push_back(std::move(q));
  }
  for (int cpu : possible) {
    if (std::find(online.begin(), online.end(), cpu) != online.end()) continue;
    if (!NewEntry(ring->queues_.front().get(), cpu)) return nullptr;
  }
  std::vector<std::future<bool>> set_up;
  for (auto& q : ring->queues_) {
    std::promise<bool> promise;
    set_up.push_back(promise.get_future());
    q->thread = std::thread(RunQueue, q.get(), std::move(promise));
  }
  bool ok = true;
  for (auto& f : set_up) ok = f.get() && ok;
  // A queue without a ring leaves the kernel's ring never ready: the other
  // queues' entries wait until the connection ends, and /dev/fuse serves.
  if (!ok) Log("FUSE over io_uring not set up; serving through /dev/fuse");
  return ring;
}

FuseRing::~FuseRing() {
  if (detached_) return;
  for (auto& q : queues_) {
    if (q->thread.joinable()) q->thread.join();
  }
}

void FuseRing::Detach() {
  detached_ = true;
  for (auto& q : queues_) {
    if (q->thread.joinable()) q->thread.detach();
    q.release();  // its thread still uses it
  }
}

bool FuseRing::Serving() { return t_entry != nullptr; }

bool FuseRing::Reply(const struct iovec* iov, int count) {
  Entry* e = t_entry;
  if (!e || fuse_wire::UniqueOfReply(iov, count) != e->unique) return false;
  if (fuse_wire::ReplyToUring(iov, count, e->headers, e->payload, kPayloadCapacity)) {
    e->replied = true;
  }
  return true;
}

}  // namespace aspfs
