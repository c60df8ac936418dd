// The node store: one RocksDB instance per node holding every volume's
// journal and state and the node's chunks (docs/store-format.md).
//
// Column families: "meta" (volume state and node records), "journal" (txns by
// volume and txid), "chunks" (chunk bodies by id, in blob files),
// "chunk_index" (chunk id -> length, for dedup checks without the body).
//
// Thread-safety: Store and Volume are safe to use from many threads. A
// Volume's commits are serialized by its own mutex; reads need no lock.
// Commits are written behind: Volume::Commit applies the txn and hands its
// writes to the store's writer thread, which writes queued commits in order,
// several in one WriteBatch (group commit). Until written, a commit's
// changes live in PendingState, which every read consults first.
// Lock order: Store::volumes_mu_ before Volume::mu_ before Store::queue_mu_;
// Store::sync_mu_ is taken alone.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "journal/check.h"
#include "journal/space_guard.h"
#include "journal/chunk_log.h"
#include "journal/format.h"
#include "journal/pending_state.h"
#include "journal/state.h"
#include "journal/state_cache.h"
#include "journal/status.h"
#include "journal/txn.h"

namespace asio {
class thread_pool;
}

namespace aspfs {

class Store;

// Reads a volume's committed state straight from RocksDB.
class StoreStateReader final : public StateReader {
 public:
  explicit StoreStateReader(const Store* store) : store_(store) {}
  Result<std::optional<std::string>> Get(std::string_view key) const override;
  Status Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const override;

 private:
  const Store* store_;
};

// Index entries (chunk id bytes -> ChunkLocation, body appended when the
// body lives in the index) of the chunks one commit references.
struct ChunkWrites {
  std::vector<std::pair<std::string, std::string>> index;
};

// One volume's commit path. Owned by the Store.
class Volume {
 public:
  Volume(Store* store, VolumeId id, std::string name, Position pos)
      : store_(store), id_(id), name_(std::move(name)), pos_(pos) {}

  VolumeId id() const { return id_; }
  const std::string& name() const { return name_; }
  Position position() const;

  // Applies txn and queues its journal entry, its state change, its chunks'
  // index entries and the new position for the writer, which writes them in
  // one WriteBatch (invariant 1). Fills txn's epoch, txid and checksum.
  // Reads see the txn on return; it is durable after Store::Sync().
  // promised: the byte quota reserved (ReserveQuota) for the data this txn
  // commits, which it may use. A successful commit consumes it in the same
  // critical section (*promised becomes 0): were it released only after,
  // another commit in between would count it twice, once in the usage and
  // once as promised, and be refused though its own data had been promised.
  // After a failure the caller still holds it (ReleaseQuota).
  Result<Position> Commit(Txn* txn, const ChunkWrites& chunks = {}, uint64_t* promised = nullptr);

  // Byte quota promised to file data buffered for a later commit, which may
  // come when nobody is left to hear of an error (the kernel's release of
  // the file). Other commits cannot take it: a commit that grows the usage
  // fails with kQuota unless usage + every other promise fits the quota.
  // kQuota if usage + promises + bytes would not fit now.
  Status ReserveQuota(uint64_t bytes);
  void ReleaseQuota(uint64_t bytes);

  // Inode numbers are chosen here, by the primary, and carried in txns.
  uint64_t AllocateInode() { return next_ino_.fetch_add(1); }

 private:
  friend class Store;
  Store* store_;
  VolumeId id_;
  std::string name_;
  // kQuota if the txn in delta grew the usage past the quota less the
  // promises it may not use. REQUIRES(mu_)
  Status CheckPromisesLocked(const StateDelta& delta, uint64_t others_promised) const;

  mutable std::mutex mu_;
  Position pos_;       // GUARDED_BY(mu_)
  uint64_t promised_bytes_ = 0;  // GUARDED_BY(mu_): ReserveQuota's, not yet released
  std::atomic<uint64_t> next_ino_{2};
};

struct VolumeSummary {
  VolumeId id;
  std::string name;
  int64_t created_ns = 0;
  Position position;
  UsageRecord usage;
  QuotaRecord quota;
};

struct VolumeCreateOptions {
  uint64_t quota_bytes = 0;
  uint64_t quota_inodes = 0;
  uint32_t root_mode = 0755;
  uint32_t root_uid = 0;
  uint32_t root_gid = 0;
};

class Store {
 public:
  ~Store();
  // A store held by another process (RocksDB's lock on dir/LOCK) is waited
  // for up to lock_wait: a daemon killed with -9 lets go only once the
  // kernel has aborted its mounts. Then kBusy, naming the holder.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir,
                                             std::chrono::milliseconds lock_wait = std::chrono::seconds(10));
  // The process holding the store at dir (RocksDB's lock), or 0.
  static pid_t LockHolder(const std::string& dir);
  const std::string& dir() const { return dir_; }

  Result<Volume*> CreateVolume(const std::string& name, const VolumeCreateOptions& options);
  Result<Volume*> FindVolume(const std::string& name);
  Status DeleteVolume(const std::string& name);
  Result<std::vector<VolumeSummary>> ListVolumes();
  Result<VolumeSummary> Summarize(Volume* vol);

  // Makes every commit before this call durable (waits for the writer, then
  // a WAL fsync). Concurrent callers share one sync.
  Status Sync();
  // Waits until every commit before this call is written to RocksDB (not
  // synced). Fails once a write has failed.
  Status Drain() const;

  // Chunks. A commit stages its chunks first: bodies go to the chunk log (or,
  // small ones with in_wal, into the index entry itself, so that an fsync
  // syncs the WAL alone) and index entries into `writes`, which
  // Volume::Commit writes in the txn's own WriteBatch: any recovered prefix
  // that holds the txn holds its chunks. Known ids are skipped (content
  // addressing); one index lookup and few log writes serve them all.
  struct ChunkData {
    ChunkId id;
    std::string_view data;
  };
  // space_promised: disk space promised to the data when it was buffered
  // (SpaceGuard::Promise); it is written whatever the room now, and the
  // promise is settled (set to 0).
  Status StageChunks(const std::vector<ChunkData>& chunks, bool in_wal, ChunkWrites* writes,
                     uint64_t* space_promised = nullptr);
  // Drops from writes the index entries of chunks the store has already
  // (stored, or in a queued commit): an entry staged earlier must not
  // replace a body that another commit made durable.
  Status DropKnownChunks(ChunkWrites* writes) const;
  // Runs job on the store's background threads, shared by every volume:
  // full blocks of a growing file are hashed, compressed and logged there
  // (StageChunks) while the writer goes on filling its buffer.
  void RunInBackground(std::function<void()> job);
  // One chunk staged and its index entry written at once (tests, tools).
  Status PutChunk(const ChunkId& id, std::string_view data, bool in_wal = false);
  Result<std::string> ReadChunk(const ChunkId& id) const;

  // State reads (meta column family).
  Result<std::optional<std::string>> Get(std::string_view key) const;
  Status Scan(std::string_view lo, std::string_view hi, const StateReader::ScanFn& fn) const;
  const StateReader& state() const { return state_reader_; }

  // Free space on the store's file system; writes stop short of filling it
  // (journal/space_guard.h).
  SpaceGuard& space_guard() const { return *space_guard_; }

  // Journal entries of vol with txid >= from, in order, until fn returns false.
  using JournalFn = std::function<bool(const Txn& txn)>;
  Status ScanJournal(VolumeId vol, uint64_t from, const JournalFn& fn) const;

  // Replays vol's whole journal into an empty state with apply() and compares
  // the result, key by key, with the stored state and position; then checks
  // the state's structure (journal/check.h) and reads every chunk it
  // references against its hash. kCorrupt names what is wrong. It reads a
  // snapshot: the volume keeps taking writes meanwhile, and the result
  // names the txid it checked. Once *stop is true it
  // gives up with kBusy (the daemon is shutting down).
  Result<StateCheck> VerifyVolume(Volume* vol, const std::atomic<bool>* stop = nullptr) const;

  // Test hooks: overwrite a stored chunk body; write a state key around the journal.
  Status CorruptChunkForTest(const ChunkId& id);
  Status WriteStateForTest(const std::string& key, const std::optional<std::string>& value);  // nullopt: delete
  void ForgetCachedStateForTest() { state_cache_.Clear(); }
  // While held, the writer writes nothing: commits stay in PendingState.
  // Drain and Sync wait until released.
  void HoldWritesForTest(bool hold);
  // Reads RocksDB (through the cache) only, as if PendingState were empty.
  Result<std::optional<std::string>> GetWrittenForTest(std::string_view key) const { return GetStored(key); }

 private:
  friend class Volume;
  static constexpr size_t kStateCacheBytes = 64 << 20;
  // Largest chunk body StageChunks(in_wal) keeps in the index (and the WAL).
  static constexpr size_t kMaxIndexedChunkBody = 16 << 10;
  // Queued commits, bytes, past which Volume::Commit waits for the writer.
  static constexpr size_t kMaxQueuedBytes = 64 << 20;
  // The writer gathers commits this long, or until this many bytes are
  // queued or someone waits for a write (fsync, Drain).
  static constexpr std::chrono::milliseconds kGroupCommitWindow{5};
  static constexpr size_t kWriteNowBytes = 4 << 20;
  Store();
  // Which of these chunk_index keys the store has, stored or queued.
  Result<std::vector<bool>> KnownChunks(const std::vector<std::string>& keys) const;
  Status LoadVolumes();

  // One commit's writes, queued for the writer.
  struct QueuedCommit {
    uint64_t seq = 0;
    // Shared with PendingState until written.
    std::shared_ptr<KeyChanges> state = std::make_shared<KeyChanges>();        // meta family
    std::shared_ptr<KeyChanges> chunk_index = std::make_shared<KeyChanges>();  // chunk_index family
    std::vector<std::pair<std::string, std::string>> journal;  // journal family
    size_t bytes = 0;
  };
  // Makes commit visible to reads (PendingState) and queues it; returns its
  // sequence number. Waits while the queue is over kMaxQueuedBytes.
  Result<uint64_t> Enqueue(QueuedCommit commit);
  // Waits until commit seq is written.
  Status WaitWritten(uint64_t seq) const;
  void WriterLoop();
  // Takes the whole queue and writes it as one group, unlocking meanwhile.
  // REQUIRES(queue_mu_ held by lock, !writing_)
  void WriteGroup(std::unique_lock<std::mutex>& lock);
  Status WriteQueued(std::vector<QueuedCommit>* commits);
  // VerifyVolume's first half: replay into *replayed and compare.
  Status CompareWithReplay(Volume* vol, MemState* replayed, uint64_t* txid, const std::atomic<bool>* stop) const;
  // Refuses a store of another layout; records ours in a new store.
  Status CheckFormat();
  Result<std::optional<std::string>> GetStored(std::string_view key) const;
  // RocksDB only (no pending commits), at a snapshot if given.
  Status ScanStored(std::string_view lo, std::string_view hi, const StateReader::ScanFn& fn,
                    const rocksdb::Snapshot* at = nullptr) const;
  Status ScanJournalAt(VolumeId vol, uint64_t from, const JournalFn& fn, const rocksdb::Snapshot* at) const;
  Result<std::string> ChunkIndexEntry(const ChunkId& id) const;

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* journal_ = nullptr;
  rocksdb::ColumnFamilyHandle* chunk_index_ = nullptr;  // chunk id -> ChunkLocation
  std::unique_ptr<ChunkLog> chunk_log_;
  std::unique_ptr<SpaceGuard> space_guard_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  StoreStateReader state_reader_;
  // Every state key Get() reads or a commit writes; see state_cache.h.
  mutable StateCache state_cache_{kStateCacheBytes};

  std::mutex volumes_mu_;
  std::map<std::string, std::unique_ptr<Volume>> volumes_;  // GUARDED_BY(volumes_mu_)
  uint64_t next_volume_id_ = 1;                               // GUARDED_BY(volumes_mu_)

  // Written-behind commits (see the top of this file).
  PendingState pending_state_;   // meta keys of queued commits
  PendingState pending_chunks_;  // chunk_index keys of queued commits
  mutable std::mutex queue_mu_;
  mutable std::condition_variable queue_cv_;    // the writer waits for work
  mutable std::condition_variable written_cv_;  // committers wait for room, Drain for writes
  std::deque<QueuedCommit> queue_;              // GUARDED_BY(queue_mu_)
  size_t queued_bytes_ = 0;                     // GUARDED_BY(queue_mu_)
  uint64_t last_seq_ = 0;                       // GUARDED_BY(queue_mu_): last queued
  uint64_t written_seq_ = 0;                    // GUARDED_BY(queue_mu_): last written
  Status write_error_;                          // GUARDED_BY(queue_mu_): sticky
  mutable int waiting_ = 0;                     // GUARDED_BY(queue_mu_): callers in WaitWritten
  bool writing_ = false;                        // GUARDED_BY(queue_mu_): a group is being written
  bool stopping_ = false;                       // GUARDED_BY(queue_mu_)
  bool held_ = false;                           // GUARDED_BY(queue_mu_): HoldWritesForTest
  std::thread writer_;
  std::unique_ptr<asio::thread_pool> background_;

  std::mutex sync_mu_;
  uint64_t synced_seq_ = 0;  // GUARDED_BY(sync_mu_)
  Status sync_error_;        // GUARDED_BY(sync_mu_)
};

int64_t NowNs();

}  // namespace aspfs
