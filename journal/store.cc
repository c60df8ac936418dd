#include "journal/store.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>
#include <unordered_set>

#include "journal/apply.h"
#include "journal/chunk.h"
#include "journal/chunk_log.h"
#include "journal/codec.h"

namespace aspfs {
namespace {

// RocksDB counts perf-context statistics by default (thread-local counters
// touched many times per call, through the shared library's dynamic TLS):
// 30-40% of a small write or read. Off for every thread that calls in.
void DisableRocksPerfCounters() {
  thread_local bool disabled = false;
  if (disabled) return;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  disabled = true;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return Error(Code::kNoSpace, what + ": " + s.ToString());
  if (s.IsCorruption()) return Error(Code::kCorrupt, what + ": " + s.ToString());
  return Error(Code::kIo, what + ": " + s.ToString());
}

rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

int64_t NowNs() {
  // Every "now" a volume records comes from here (the kernel writeback cache,
  // which would stamp times from its own coarse clock, is off), so times
  // never run backwards against each other.
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

Result<std::optional<std::string>> StoreStateReader::Get(std::string_view key) const { return store_->Get(key); }

Status StoreStateReader::Scan(std::string_view lo, std::string_view hi, const ScanFn& fn) const {
  return store_->Scan(lo, hi, fn);
}

Position Volume::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pos_;
}

namespace {

Result<UsageRecord> ReadUsage(const StateReader& state, VolumeId vol) {
  auto raw = state.Get(key::Usage(vol));
  if (!raw.ok()) return raw.status();
  if (!*raw) return UsageRecord{};
  return UsageRecord::Decode(**raw);
}

Result<QuotaRecord> ReadQuota(const StateReader& state, VolumeId vol) {
  auto raw = state.Get(key::Quota(vol));
  if (!raw.ok()) return raw.status();
  if (!*raw) return QuotaRecord{};
  return QuotaRecord::Decode(**raw);
}

Status QuotaPromised() { return Error(Code::kQuota, "volume byte quota exceeded (counting buffered writes)"); }

}  // namespace

Status Volume::ReserveQuota(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto quota = ReadQuota(store_->state(), id_);
  if (!quota.ok()) return quota.status();
  if (quota->bytes) {
    auto usage = ReadUsage(store_->state(), id_);
    if (!usage.ok()) return usage.status();
    if (usage->bytes + promised_bytes_ + bytes > quota->bytes) return QuotaPromised();
  }
  promised_bytes_ += bytes;
  return Status::Ok();
}

void Volume::ReleaseQuota(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  promised_bytes_ -= std::min(bytes, promised_bytes_);
}

Status Volume::CheckPromisesLocked(const StateDelta& delta, uint64_t others_promised) const {
  auto before = ReadUsage(store_->state(), id_);
  if (!before.ok()) return before.status();
  auto after = ReadUsage(delta, id_);
  if (!after.ok()) return after.status();
  if (after->bytes <= before->bytes) return Status::Ok();
  auto quota = ReadQuota(delta, id_);
  if (!quota.ok()) return quota.status();
  if (quota->bytes && after->bytes + others_promised > quota->bytes) return QuotaPromised();
  return Status::Ok();
}

Result<Position> Volume::Commit(Txn* txn, const ChunkWrites& chunks, uint64_t* promised_io) {
  const uint64_t promised = promised_io ? *promised_io : 0;
  DisableRocksPerfCounters();
  std::lock_guard<std::mutex> lock(mu_);
  StateDelta delta(&store_->state(), pos_.checksum);
  txn->epoch = pos_.epoch;
  txn->txid = pos_.txid + 1;
  Status applied = Apply(id_, *txn, &delta);
  if (!applied.ok()) return applied;
  if (promised_bytes_ > promised) ASPFS_RETURN_IF_ERROR(CheckPromisesLocked(delta, promised_bytes_ - promised));
  txn->checksum = delta.checksum();
  Position next{pos_.epoch, txn->txid, txn->checksum};

  Store::QueuedCommit commit;
  *commit.state = delta.ReleaseChanges();
  commit.state->emplace_back(key::PositionKey(id_), EncodePosition(next));
  commit.chunk_index->reserve(chunks.index.size());
  for (const auto& [k, v] : chunks.index) commit.chunk_index->emplace_back(k, v);
  commit.journal.emplace_back(key::Journal(id_, txn->txid), EncodeTxn(*txn));
  auto queued = store_->Enqueue(std::move(commit));
  if (!queued.ok()) return queued.status().Context("journal: commit txn " + std::to_string(txn->txid) + " of " + name_);
  for (const Op& op : txn->ops) {
    if (const auto* m = std::get_if<op::Mknod>(&op)) {
      uint64_t want = m->ino + 1, cur = next_ino_.load();
      while (cur < want && !next_ino_.compare_exchange_weak(cur, want)) {
      }
    }
  }
  pos_ = next;
  promised_bytes_ -= std::min(promised, promised_bytes_);
  if (promised_io) *promised_io = 0;
  return pos_;
}

Result<uint64_t> Store::Enqueue(QueuedCommit commit) {
  size_t bytes = 0;
  for (const auto& [k, v] : *commit.state) bytes += k.size() + (v ? v->size() : 0);
  for (const auto& [k, v] : *commit.chunk_index) bytes += k.size() + (v ? v->size() : 0);
  for (const auto& [k, v] : commit.journal) bytes += k.size() + v.size();
  commit.bytes = bytes;
  ASPFS_RETURN_IF_ERROR(space_guard_->Reserve(SpaceGuard::Use::kMetadata, bytes));
  std::unique_lock<std::mutex> lock(queue_mu_);
  written_cv_.wait(lock, [&] { return queued_bytes_ < kMaxQueuedBytes || !write_error_.ok(); });
  if (!write_error_.ok()) return write_error_;
  commit.seq = ++last_seq_;
  // Visible to reads before the caller can acknowledge it.
  pending_state_.Add(commit.seq, commit.state);
  pending_chunks_.Add(commit.seq, commit.chunk_index);
  queued_bytes_ += commit.bytes;
  queue_.push_back(std::move(commit));
  // The writer starts a group when the queue fills; later commits join it.
  if (queue_.size() == 1 || queued_bytes_ >= kWriteNowBytes) queue_cv_.notify_one();
  return last_seq_;
}

Status Store::WaitWritten(uint64_t seq) const {
  std::unique_lock<std::mutex> lock(queue_mu_);
  if (written_seq_ >= seq) return Status::Ok();
  ++waiting_;  // the writer stops gathering
  queue_cv_.notify_one();
  written_cv_.wait(lock, [&] { return written_seq_ >= seq || !write_error_.ok(); });
  --waiting_;
  return written_seq_ >= seq ? Status::Ok() : write_error_;
}

Status Store::Drain() const {
  uint64_t last;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    last = last_seq_;
  }
  return WaitWritten(last);
}

void Store::WriterLoop() {
  pthread_setname_np(pthread_self(), "aspfs-writer");
  DisableRocksPerfCounters();
  std::unique_lock<std::mutex> lock(queue_mu_);
  for (;;) {
    queue_cv_.wait(lock, [&] { return stopping_ || (!queue_.empty() && !held_); });
    if (queue_.empty() && !writing_) return;  // stopping, and everything is written
    // Group commit: one write (one WAL append, one wakeup) for the commits of
    // a short window, unless someone waits for them or they are many.
    queue_cv_.wait_for(lock, kGroupCommitWindow,
                       [&] { return stopping_ || waiting_ > 0 || queued_bytes_ >= kWriteNowBytes; });
    // A Sync may be writing a group itself; the next group waits for it.
    written_cv_.wait(lock, [&] { return !writing_; });
    if (!queue_.empty()) WriteGroup(lock);
  }
}

void Store::WriteGroup(std::unique_lock<std::mutex>& lock) {
  writing_ = true;
  std::vector<QueuedCommit> commits(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  bool failed_before = !write_error_.ok();
  lock.unlock();
  // After a failed write nothing later may be written: the store must stay
  // at a prefix of its commits.
  Status written = failed_before ? Status::Ok() : WriteQueued(&commits);
  lock.lock();
  for (const QueuedCommit& c : commits) queued_bytes_ -= c.bytes;
  if (!written.ok()) write_error_ = written;
  if (write_error_.ok()) written_seq_ = commits.back().seq;
  writing_ = false;
  written_cv_.notify_all();
}

void Store::HoldWritesForTest(bool hold) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  held_ = hold;
  queue_cv_.notify_one();
}

Status Store::WriteQueued(std::vector<QueuedCommit>* commits) {
  // The group is one WriteBatch, so a key that several of its commits change
  // is written once, with its last value (the position, usage and parent
  // directory records change with nearly every commit). Keys go in sorted,
  // which makes the memtable inserts cheaper.
  std::vector<std::pair<std::string_view, const std::optional<std::string>*>> state;
  size_t bytes = 0;
  for (const QueuedCommit& c : *commits) {
    for (const auto& [k, v] : *c.state) state.emplace_back(k, &v);
    bytes += c.bytes;
  }
  // Stable: among equal keys the last is the newest.
  std::stable_sort(state.begin(), state.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  auto newest = [&](size_t i) { return i + 1 == state.size() || state[i + 1].first != state[i].first; };
  constexpr size_t kRecordOverhead = 16;  // WriteBatch's tag, family and lengths
  rocksdb::WriteBatch batch(bytes + kRecordOverhead * state.size() + 64);
  for (size_t i = 0; i < state.size(); ++i) {
    if (!newest(i)) continue;
    const auto& [k, v] = state[i];
    if (*v) {
      batch.Put(meta_, AsSlice(k), **v);
    } else {
      batch.Delete(meta_, AsSlice(k));
    }
  }
  for (const QueuedCommit& c : *commits) {
    for (const auto& [k, v] : *c.chunk_index) batch.Put(chunk_index_, k, *v);
    for (const auto& [k, v] : c.journal) batch.Put(journal_, k, v);
  }
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) {
    return FromRocks(s, "store: write commits " + std::to_string(commits->front().seq) + " to " +
                            std::to_string(commits->back().seq));
  }
  // The cache before PendingState lets go: a read finds the value in one of them.
  for (size_t i = 0; i < state.size(); ++i) {
    if (newest(i)) state_cache_.Update(state[i].first, *state[i].second);
  }
  pending_state_.Written(commits->back().seq);
  pending_chunks_.Written(commits->back().seq);
  return Status::Ok();
}

Store::Store() : state_reader_(this) {}

Store::~Store() {
  if (background_) background_->join();  // its jobs stage chunks and commit nothing
  if (writer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    writer_.join();
  }
  if (db_) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

pid_t Store::LockHolder(const std::string& dir) {
  int fd = open((dir + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  pid_t holder = 0;
  if (fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) holder = probe.l_pid;
  close(fd);
  return holder;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, std::chrono::milliseconds lock_wait) {
  const auto deadline = std::chrono::steady_clock::now() + lock_wait;
  for (pid_t holder; (holder = LockHolder(dir)) != 0;) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error(Code::kBusy, "store " + dir + " is in use by process " + std::to_string(holder) +
                                    " (another aspfsd?)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::unique_ptr<Store> store(new Store());
  store->dir_ = dir;
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  options.max_background_jobs = 2;
  options.max_open_files = 512;
  // RocksDB's own info log in the store directory: bounded, for a daemon
  // that runs for months.
  options.max_log_file_size = 16 << 20;
  options.keep_log_file_num = 4;
  options.IncreaseParallelism(2);

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(64 << 20);
  table.cache_index_and_filter_blocks = true;
  // Most lookups that miss (names on create, holes, new chunk ids) stop here.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));

  rocksdb::ColumnFamilyOptions meta_options;
  meta_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  meta_options.write_buffer_size = 32 << 20;
  meta_options.compression = rocksdb::kNoCompression;
  // Point lookups that miss the memtable skip its skiplist walk.
  meta_options.memtable_whole_key_filtering = true;
  meta_options.memtable_prefix_bloom_size_ratio = 0.05;
  rocksdb::ColumnFamilyOptions journal_options = meta_options;

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, meta_options},
      {"meta", meta_options},
      {"journal", journal_options},
      {"chunk_index", meta_options},
  };
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, families, &store->handles_, &db);
  if (!s.ok()) return FromRocks(s, "store: open " + dir);
  store->db_.reset(db);
  store->meta_ = store->handles_[1];
  store->journal_ = store->handles_[2];
  store->chunk_index_ = store->handles_[3];
  auto chunk_log = ChunkLog::Open(dir + "/chunks");
  if (!chunk_log.ok()) return chunk_log.status();
  store->chunk_log_ = std::move(*chunk_log);
  store->space_guard_ = SpaceGuard::ForDirectory(dir);
  store->writer_ = std::thread([raw = store.get()] { raw->WriterLoop(); });
  // Half the CPUs: the other half fills the buffers these threads drain.
  store->background_ = std::make_unique<asio::thread_pool>(std::max(1u, std::thread::hardware_concurrency() / 2));
  ASPFS_RETURN_IF_ERROR(store->CheckFormat());
  ASPFS_RETURN_IF_ERROR(store->LoadVolumes());
  return store;
}

Status Store::CheckFormat() {
  auto format = Get(key::Format());
  if (!format.ok()) return format.status();
  if (*format) {
    uint64_t version = key::DecodeBigEndian(**format);
    if (version == kStoreFormat) return Status::Ok();
    return Error(Code::kInvalid, "store " + dir_ + " has format " + std::to_string(version) +
                                     "; this aspfsd reads format " + std::to_string(kStoreFormat));
  }
  auto next = Get(key::NextVolume());
  if (!next.ok()) return next.status();
  if (*next) {
    // Volumes but no format record: made before formats were recorded.
    return Error(Code::kInvalid, "store " + dir_ + " was made by an older aspfsd (format 1); this aspfsd reads format " +
                                     std::to_string(kStoreFormat));
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  state_cache_.Invalidate(key::Format());  // its absence was cached just above
  return FromRocks(db_->Put(sync, meta_, key::Format(), key::EncodeBigEndian(kStoreFormat)),
                   "store: record format of " + dir_);
}

Status Store::LoadVolumes() {
  auto next = Get(key::NextVolume());
  if (!next.ok()) return next.status();
  if (*next) next_volume_id_ = key::DecodeBigEndian(**next);
  std::string prefix = key::VolumeMetaKey(VolumeId{0}).substr(0, 9);
  std::vector<std::pair<uint64_t, std::string>> found;
  ASPFS_RETURN_IF_ERROR(Scan(prefix, key::PrefixEnd(prefix), [&](std::string_view k, std::string_view v) {
    found.emplace_back(key::DecodeBigEndian(k.substr(9)), std::string(v));
    return true;
  }));
  for (auto& [id, raw] : found) {
    auto meta = VolumeMeta::Decode(raw);
    if (!meta.ok()) return meta.status().Context("store: volume " + std::to_string(id));
    auto pos_raw = Get(key::PositionKey(VolumeId{id}));
    if (!pos_raw.ok()) return pos_raw.status();
    Position pos;
    if (*pos_raw) {
      auto p = DecodePosition(**pos_raw);
      if (!p.ok()) return p.status();
      pos = *p;
    }
    auto vol = std::make_unique<Volume>(this, VolumeId{id}, meta->name, pos);
    auto usage_raw = Get(key::Usage(VolumeId{id}));
    if (!usage_raw.ok()) return usage_raw.status();
    if (*usage_raw) {
      auto usage = UsageRecord::Decode(**usage_raw);
      if (!usage.ok()) return usage.status();
      vol->next_ino_ = usage->next_ino;
    }
    volumes_[meta->name] = std::move(vol);
  }
  return Status::Ok();
}

Result<Volume*> Store::CreateVolume(const std::string& name, const VolumeCreateOptions& options) {
  if (name.empty() || name.size() > 64) return Error(Code::kInvalid, "volume name must be 1 to 64 characters");
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return Error(Code::kInvalid, "volume name may hold only letters, digits, '-', '_' and '.'");
    }
  }
  if (name[0] == '.' || name[0] == '-') return Error(Code::kInvalid, "volume name must not start with '.' or '-'");
  std::lock_guard<std::mutex> lock(volumes_mu_);
  if (volumes_.count(name)) return Error(Code::kExists, "volume " + name + " already exists");
  VolumeId id{next_volume_id_};
  auto vol = std::make_unique<Volume>(this, id, name, Position{});

  // The volume's records and its first txn land in one batch: a crash leaves
  // either no volume or an initialized one.
  std::lock_guard<std::mutex> vol_lock(vol->mu_);
  Txn txn;
  txn.time_ns = NowNs();
  txn.txid = 1;
  txn.ops.push_back(op::InitVolume{options.root_mode, options.root_uid, options.root_gid, options.quota_bytes,
                                   options.quota_inodes});
  StateDelta delta(&state_reader_, 0);
  ASPFS_RETURN_IF_ERROR(Apply(id, txn, &delta));
  txn.checksum = delta.checksum();
  rocksdb::WriteBatch batch;
  const KeyChanges changes = delta.ReleaseChanges();
  for (const auto& [k, v] : changes) batch.Put(meta_, k, *v);
  Position pos{0, 1, txn.checksum};
  batch.Put(journal_, key::Journal(id, 1), EncodeTxn(txn));
  batch.Put(meta_, key::PositionKey(id), EncodePosition(pos));
  batch.Put(meta_, key::VolumeMetaKey(id), VolumeMeta{name, txn.time_ns}.Encode());
  batch.Put(meta_, key::VolumeName(name), key::VolumePrefix(id));
  batch.Put(meta_, key::NextVolume(), key::VolumePrefix(VolumeId{id.value + 1}));
  ASPFS_RETURN_IF_ERROR(space_guard_->Reserve(SpaceGuard::Use::kData, batch.GetDataSize()));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  ASPFS_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "store: create volume " + name));
  for (const auto& [k, v] : changes) state_cache_.Update(k, v);
  next_volume_id_ = id.value + 1;
  vol->pos_ = pos;
  Volume* raw = vol.get();
  volumes_[name] = std::move(vol);
  return raw;
}

Result<Volume*> Store::FindVolume(const std::string& name) {
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return Error(Code::kNotFound, "no volume named " + name);
  return it->second.get();
}

Status Store::DeleteVolume(const std::string& name) {
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return Error(Code::kNotFound, "no volume named " + name);
  VolumeId id = it->second->id();
  ASPFS_RETURN_IF_ERROR(Drain());
  rocksdb::WriteBatch batch;
  batch.DeleteRange(meta_, key::VolumePrefix(id), key::VolumeEnd(id));
  batch.DeleteRange(journal_, key::VolumePrefix(id), key::VolumeEnd(id));
  batch.Delete(meta_, key::VolumeMetaKey(id));
  batch.Delete(meta_, key::VolumeName(name));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  ASPFS_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), "store: delete volume " + name));
  state_cache_.Clear();
  volumes_.erase(it);
  return Status::Ok();
}

Result<VolumeSummary> Store::Summarize(Volume* vol) {
  VolumeSummary out;
  out.id = vol->id();
  out.name = vol->name();
  out.position = vol->position();
  auto meta = Get(key::VolumeMetaKey(vol->id()));
  if (!meta.ok()) return meta.status();
  if (*meta) {
    auto m = VolumeMeta::Decode(**meta);
    if (m.ok()) out.created_ns = m->created_ns;
  }
  auto usage = ReadUsage(state(), vol->id());
  if (!usage.ok()) return usage.status();
  out.usage = *usage;
  auto quota = ReadQuota(state(), vol->id());
  if (!quota.ok()) return quota.status();
  out.quota = *quota;
  return out;
}

Result<std::vector<VolumeSummary>> Store::ListVolumes() {
  std::vector<Volume*> vols;
  {
    std::lock_guard<std::mutex> lock(volumes_mu_);
    for (auto& [name, vol] : volumes_) vols.push_back(vol.get());
  }
  std::vector<VolumeSummary> out;
  for (Volume* vol : vols) {
    auto s = Summarize(vol);
    if (!s.ok()) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

Status Store::Sync() {
  uint64_t needed;
  {
    std::unique_lock<std::mutex> lock(queue_mu_);
    needed = last_seq_;
    // The caller waits anyway: it writes the queue itself rather than wake
    // the writer and wait for it (two thread switches per fsync).
    if (!writing_ && !held_ && !queue_.empty()) WriteGroup(lock);
  }
  ASPFS_RETURN_IF_ERROR(WaitWritten(needed));
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (!sync_error_.ok()) return sync_error_;
  if (synced_seq_ >= needed) return Status::Ok();  // a sync that began after our commits were written covered them
  uint64_t covered;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    covered = written_seq_;
  }
  // Chunk bodies before the WAL that references them.
  Status chunks = chunk_log_->Sync();
  if (!chunks.ok()) {
    sync_error_ = chunks.Context("store: sync chunk log");
    return sync_error_;
  }
  rocksdb::Status s = db_->SyncWAL();
  if (!s.ok()) {
    sync_error_ = FromRocks(s, "store: sync WAL");
    return sync_error_;
  }
  synced_seq_ = covered;
  return Status::Ok();
}

Status Store::StageChunks(const std::vector<ChunkData>& chunks, bool in_wal, ChunkWrites* writes,
                          uint64_t* space_promised) {
  DisableRocksPerfCounters();
  std::vector<std::string> keys;
  keys.reserve(chunks.size());
  for (const ChunkData& c : chunks) keys.push_back(c.id.Bytes());
  // Content addressing: an id already stored (or staged here) holds the same bytes.
  auto known = KnownChunks(keys);
  if (!known.ok()) return known.status();
  std::unordered_set<std::string_view> staged;
  std::deque<EncodedChunk> bodies;  // a deque: the bodies' views stay put
  std::vector<ChunkLog::Piece> to_log;
  std::vector<size_t> to_log_keys;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if ((*known)[i]) continue;
    if (!staged.insert(keys[i]).second) continue;
    const EncodedChunk& body = bodies.emplace_back(chunks[i].data);
    if (in_wal && body.size() <= kMaxIndexedChunkBody) {
      ChunkLocation in_index{ChunkLocation::kInIndex, 0, static_cast<uint32_t>(body.size())};
      std::string entry = in_index.Encode();
      entry.append(body.header());
      entry.append(body.payload());
      writes->index.emplace_back(keys[i], std::move(entry));
      continue;
    }
    to_log.push_back(ChunkLog::Piece{chunks[i].id, body.header(), body.payload()});
    to_log_keys.push_back(i);
  }
  uint64_t body_bytes = 0;
  for (const EncodedChunk& body : bodies) body_bytes += body.size();
  if (space_promised && *space_promised) {
    space_guard_->Settle(*space_promised, body_bytes);
    *space_promised = 0;
  } else if (body_bytes) {
    ASPFS_RETURN_IF_ERROR(space_guard_->Reserve(SpaceGuard::Use::kData, body_bytes));
  }
  // Bodies reach the log before their index entries reach the WAL.
  auto locs = chunk_log_->AppendAll(to_log);
  if (!locs.ok()) return locs.status();
  for (size_t j = 0; j < to_log.size(); ++j) writes->index.emplace_back(keys[to_log_keys[j]], (*locs)[j].Encode());
  return Status::Ok();
}

Result<std::vector<bool>> Store::KnownChunks(const std::vector<std::string>& keys) const {
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<std::string> found;
  std::vector<rocksdb::Status> stored = db_->MultiGet(
      rocksdb::ReadOptions(), std::vector<rocksdb::ColumnFamilyHandle*>(keys.size(), chunk_index_), slices, &found);
  std::vector<bool> known(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!stored[i].ok() && !stored[i].IsNotFound()) return FromRocks(stored[i], "store: look up chunk");
    known[i] = stored[i].ok() || pending_chunks_.Get(keys[i]);
  }
  return known;
}

Status Store::DropKnownChunks(ChunkWrites* writes) const {
  if (writes->index.empty()) return Status::Ok();
  DisableRocksPerfCounters();
  std::vector<std::string> keys;
  keys.reserve(writes->index.size());
  for (const auto& [k, v] : writes->index) keys.push_back(k);
  auto known = KnownChunks(keys);
  if (!known.ok()) return known.status();
  size_t kept = 0;
  for (size_t i = 0; i < writes->index.size(); ++i) {
    if ((*known)[i]) continue;
    if (kept != i) writes->index[kept] = std::move(writes->index[i]);  // a self-move would empty it
    ++kept;
  }
  writes->index.resize(kept);
  return Status::Ok();
}

void Store::RunInBackground(std::function<void()> job) { asio::post(*background_, std::move(job)); }

Status Store::PutChunk(const ChunkId& id, std::string_view data, bool in_wal) {
  ChunkWrites writes;
  ASPFS_RETURN_IF_ERROR(StageChunks({ChunkData{id, data}}, in_wal, &writes));
  QueuedCommit commit;
  for (const auto& [k, v] : writes.index) commit.chunk_index->emplace_back(k, v);
  auto seq = Enqueue(std::move(commit));
  if (!seq.ok()) return seq.status();
  return WaitWritten(*seq);
}

Result<std::string> Store::ChunkIndexEntry(const ChunkId& id) const {
  std::string key = id.Bytes();
  if (auto pending = pending_chunks_.Get(key); pending && *pending) return std::move(**pending);
  std::string raw;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), chunk_index_, key, &raw);
  if (s.IsNotFound()) return Error(Code::kCorrupt, "chunk " + id.ToHex() + " is missing");
  if (!s.ok()) return FromRocks(s, "store: read chunk " + id.ToHex());
  return raw;
}

Result<std::string> Store::ReadChunk(const ChunkId& id) const {
  auto entry = ChunkIndexEntry(id);
  if (!entry.ok()) return entry.status();
  const std::string& raw = *entry;
  auto loc = ChunkLocation::Decode(std::string_view(raw).substr(0, ChunkLocation::kEncodedSize));
  if (!loc.ok()) return loc.status();
  if (loc->file == ChunkLocation::kInIndex) {
    if (raw.size() != ChunkLocation::kEncodedSize + loc->length) {
      return Error(Code::kCorrupt, "chunk " + id.ToHex() + " has a bad index entry");
    }
    return DecodeChunk(id, std::string_view(raw).substr(ChunkLocation::kEncodedSize));
  }
  if (raw.size() != ChunkLocation::kEncodedSize) return Error(Code::kCorrupt, "corrupt chunk index record");
  std::string header;
  auto payload = chunk_log_->Read(*loc, kChunkHeaderSize, &header);
  if (!payload.ok()) return payload.status().Context("chunk " + id.ToHex());
  return DecodeChunk(id, header, std::move(*payload));
}

Status Store::CorruptChunkForTest(const ChunkId& id) {
  ASPFS_RETURN_IF_ERROR(Drain());
  std::string raw;
  ASPFS_RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), chunk_index_, id.Bytes(), &raw), "read chunk"));
  auto loc = ChunkLocation::Decode(std::string_view(raw).substr(0, ChunkLocation::kEncodedSize));
  if (!loc.ok()) return loc.status();
  if (loc->file != ChunkLocation::kInIndex) return chunk_log_->CorruptForTest(*loc);
  raw.back() ^= 0x5a;
  return FromRocks(db_->Put(rocksdb::WriteOptions(), chunk_index_, id.Bytes(), raw), "corrupt chunk");
}

Status Store::WriteStateForTest(const std::string& k, const std::optional<std::string>& value) {
  ASPFS_RETURN_IF_ERROR(Drain());
  Status s = FromRocks(value ? db_->Put(rocksdb::WriteOptions(), meta_, k, *value)
                             : db_->Delete(rocksdb::WriteOptions(), meta_, k),
                       "tamper state");
  state_cache_.Invalidate(k);
  return s;
}

Result<std::optional<std::string>> Store::Get(std::string_view k) const {
  if (auto pending = pending_state_.Get(k)) return std::move(*pending);
  return GetStored(k);
}

Result<std::optional<std::string>> Store::GetStored(std::string_view k) const {
  if (auto hit = state_cache_.Lookup(k)) return std::move(*hit);
  DisableRocksPerfCounters();
  uint64_t snapshot = state_cache_.Snapshot(k);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, AsSlice(k), &value);
  if (s.IsNotFound()) {
    state_cache_.Fill(k, snapshot, std::nullopt);
    return std::optional<std::string>();
  }
  if (!s.ok()) return FromRocks(s, "store: read");
  std::optional<std::string> found(std::move(value));
  state_cache_.Fill(k, snapshot, found);
  return found;
}

Status Store::Scan(std::string_view lo, std::string_view hi, const StateReader::ScanFn& fn) const {
  // Pending changes are taken before the RocksDB iterator: a commit the
  // writer lets go of in between is then in the iterator.
  std::vector<KeyChange> pending = pending_state_.Range(lo, hi);
  if (pending.empty()) return ScanStored(lo, hi, fn);
  return ScanWithChanges([&](const StateReader::ScanFn& f) { return ScanStored(lo, hi, f); }, pending.begin(),
                         pending.end(), fn);
}

Status Store::ScanStored(std::string_view lo, std::string_view hi, const StateReader::ScanFn& fn,
                         const rocksdb::Snapshot* at) const {
  DisableRocksPerfCounters();
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  rocksdb::Slice upper = AsSlice(hi);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_));
  for (it->Seek(AsSlice(lo)); it->Valid(); it->Next()) {
    if (!fn(std::string_view(it->key().data(), it->key().size()),
            std::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "store: scan");
}

Status Store::ScanJournal(VolumeId vol, uint64_t from, const JournalFn& fn) const {
  ASPFS_RETURN_IF_ERROR(Drain());
  return ScanJournalAt(vol, from, fn, nullptr);
}

Status Store::ScanJournalAt(VolumeId vol, uint64_t from, const JournalFn& fn, const rocksdb::Snapshot* at) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  std::string end = key::VolumeEnd(vol);
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, journal_));
  for (it->Seek(key::Journal(vol, from)); it->Valid(); it->Next()) {
    auto txn = DecodeTxn(std::string_view(it->value().data(), it->value().size()));
    if (!txn.ok()) return txn.status().Context("journal: entry " + std::to_string(key::DecodeBigEndian(it->key().ToStringView().substr(8))));
    if (!fn(*txn)) break;
  }
  return FromRocks(it->status(), "journal: scan");
}

namespace {

bool Stopping(const std::atomic<bool>* stop) { return stop && stop->load(std::memory_order_relaxed); }

Status VerifyStopped() { return Error(Code::kBusy, "verify stopped: the daemon is shutting down"); }

}  // namespace

Result<StateCheck> Store::VerifyVolume(Volume* vol, const std::atomic<bool>* stop) const {
  MemState replayed;
  uint64_t txid = 0;
  ASPFS_RETURN_IF_ERROR(CompareWithReplay(vol, &replayed, &txid, stop));
  // The replay equals the stored state at a moment; the rest works on the
  // replay, with the volume free to move on. Chunks are immutable.
  auto check = CheckVolumeState(vol->id(), replayed);
  if (!check.ok()) return check.status();
  check->txid = txid;
  uint64_t unreadable = 0;
  std::string first;
  for (const ChunkId& id : check->chunks) {
    if (Stopping(stop)) return VerifyStopped();
    auto chunk = ReadChunk(id);
    if (chunk.ok()) continue;
    if (unreadable++ == 0) first = chunk.status().message();
  }
  if (unreadable) {
    return Error(Code::kCorrupt, std::to_string(unreadable) + " of " + std::to_string(check->chunks.size()) +
                                     " chunks unreadable: " + first + (unreadable > 1 ? " (and others)" : ""));
  }
  if (!check->ok()) return Error(Code::kCorrupt, "state structure: " + check->Summary());
  return check;
}

Status Store::CompareWithReplay(Volume* vol, MemState* replayed_out, uint64_t* txid,
                                const std::atomic<bool>* stop) const {
  // The comparison reads a RocksDB snapshot taken with every commit of the
  // volume written, under its commit lock only that long: the volume goes on
  // taking writes while a long journal replays.
  std::unique_ptr<rocksdb::ManagedSnapshot> snapshot;
  Position pos;
  {
    std::lock_guard<std::mutex> lock(vol->mu_);
    ASPFS_RETURN_IF_ERROR(Drain());
    snapshot = std::make_unique<rocksdb::ManagedSnapshot>(db_.get());
    pos = vol->pos_;
  }
  *txid = pos.txid;
  const rocksdb::Snapshot* at = snapshot->snapshot();
  MemState& replayed = *replayed_out;
  uint64_t checksum = 0, expect_txid = 1;
  Status failure;
  ASPFS_RETURN_IF_ERROR(ScanJournalAt(vol->id(), 1, [&](const Txn& txn) {
    if (Stopping(stop)) {
      failure = VerifyStopped();
      return false;
    }
    if (txn.txid != expect_txid) {
      failure = Error(Code::kCorrupt, "journal gap: expected txn " + std::to_string(expect_txid) + ", found " +
                                          std::to_string(txn.txid));
      return false;
    }
    StateDelta delta(&replayed, checksum);
    Status s = Apply(vol->id(), txn, &delta);
    if (!s.ok()) {
      failure = s.Context("replay txn " + std::to_string(txn.txid));
      return false;
    }
    if (delta.checksum() != txn.checksum) {
      failure = Error(Code::kCorrupt, "replay txn " + std::to_string(txn.txid) + ": checksum mismatch");
      return false;
    }
    delta.ApplyTo(&replayed);
    checksum = delta.checksum();
    ++expect_txid;
    return true;
  }, at));
  ASPFS_RETURN_IF_ERROR(failure);
  if (expect_txid - 1 != pos.txid) {
    return Error(Code::kCorrupt, "journal ends at txn " + std::to_string(expect_txid - 1) + " but position is " +
                                     pos.ToString());
  }
  if (checksum != pos.checksum) return Error(Code::kCorrupt, "replayed checksum differs from position");
  // Key-by-key comparison of the stored state with the replayed one.
  auto expected = replayed.entries().begin();
  std::string lo = key::VolumePrefix(vol->id()), hi = key::VolumeEnd(vol->id());
  Status mismatch;
  uint64_t stored_checksum = 0;
  ASPFS_RETURN_IF_ERROR(ScanStored(lo, hi, [&](std::string_view k, std::string_view v) {
    if (!key::IsStateKey(k)) return true;
    stored_checksum ^= EntryHash(k, v);
    if (expected == replayed.entries().end() || expected->first != k || expected->second != v) {
      mismatch = Error(Code::kCorrupt, "stored state differs from journal replay");
      return false;
    }
    ++expected;
    return true;
  }, at));
  ASPFS_RETURN_IF_ERROR(mismatch);
  if (expected != replayed.entries().end()) return Error(Code::kCorrupt, "stored state lacks keys of the replay");
  if (stored_checksum != checksum) return Error(Code::kCorrupt, "stored state checksum differs");
  return Status::Ok();
}

}  // namespace aspfs
