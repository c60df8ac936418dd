#include "daemon/control_server.h"

#include <unistd.h>

#include <fstream>

#include "aspfs/log.h"
#include "journal/txn.h"

namespace aspfs {
namespace {

uint64_t RssBytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

ControlImpl::~ControlImpl() {
  stopping_ = true;
  for (VerifyJob& job : verifies_) job.thread.join();
}

void ControlImpl::ReapVerifies() {
  verifies_.remove_if([](VerifyJob& job) {
    if (!job.done) return false;
    job.thread.join();
    return true;
  });
}

bool ControlImpl::Verifying(const std::string& volume) {
  ReapVerifies();
  for (const VerifyJob& job : verifies_) {
    if (job.volume == volume) return true;
  }
  return false;
}

Status ControlImpl::FillInfo(Volume* vol, rpc::VolumeInfo::Builder out) {
  mounts_->FlushVolume(vol->name());  // usage includes buffered writes and pending purges
  auto summary = store_->Summarize(vol);
  if (!summary.ok()) return summary.status();
  out.setName(summary->name);
  out.setId(summary->id.value);
  out.setEpoch(summary->position.epoch);
  out.setTxid(summary->position.txid);
  out.setChecksum(summary->position.checksum);
  out.setUsedBytes(summary->usage.bytes);
  out.setUsedInodes(summary->usage.inodes);
  out.setQuotaBytes(summary->quota.bytes);
  out.setQuotaInodes(summary->quota.inodes);
  out.setCreatedNs(summary->created_ns);
  if (auto mount = mounts_->FindVolume(summary->name)) {
    out.setMountpoint(mount->dir);
    out.setReadOnly(mount->read_only);
    out.setFuseTransport(mount->io_uring ? "io_uring" : "/dev/fuse");
  }
  return Status::Ok();
}

kj::Promise<void> ControlImpl::createVolume(CreateVolumeContext context) {
  auto params = context.getParams();
  VolumeCreateOptions options;
  options.quota_bytes = params.getQuotaBytes();
  options.quota_inodes = params.getQuotaInodes();
  auto results = context.getResults();
  auto vol = store_->CreateVolume(params.getName(), options);
  if (!vol.ok()) {
    results.setError(vol.status().ToString());
    return kj::READY_NOW;
  }
  Status s = FillInfo(*vol, results.initInfo());
  if (!s.ok()) results.setError(s.ToString());
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::listVolumes(ListVolumesContext context) {
  auto results = context.getResults();
  auto list = store_->ListVolumes();
  if (!list.ok()) {
    results.setError(list.status().ToString());
    return kj::READY_NOW;
  }
  auto out = results.initVolumes(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    auto vol = store_->FindVolume((*list)[i].name);
    if (vol.ok()) FillInfo(*vol, out[i]).IgnoreError();
  }
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::volumeInfo(VolumeInfoContext context) {
  auto results = context.getResults();
  auto vol = store_->FindVolume(context.getParams().getName());
  Status s = vol.ok() ? FillInfo(*vol, results.initInfo()) : vol.status();
  if (!s.ok()) results.setError(s.ToString());
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::deleteVolume(DeleteVolumeContext context) {
  std::string name = context.getParams().getName();
  auto results = context.getResults();
  if (auto mount = mounts_->FindVolume(name)) {
    results.setError("volume " + name + " is mounted at " + mount->dir + "; unmount it first");
    return kj::READY_NOW;
  }
  if (Verifying(name)) {
    results.setError("volume " + name + " is being verified; delete it when the verify has finished");
    return kj::READY_NOW;
  }
  Status s = store_->DeleteVolume(name);
  if (!s.ok()) results.setError(s.ToString());
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::mount(MountContext context) {
  auto params = context.getParams();
  auto results = context.getResults();
  std::string name = params.getName();
  Status s = mounts_->Mount(name, params.getDir(), params.getReadOnly());
  if (s.ok()) {
    auto vol = store_->FindVolume(name);
    s = vol.ok() ? FillInfo(*vol, results.initInfo()) : vol.status();
  }
  if (!s.ok()) results.setError(s.ToString());
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::umount(UmountContext context) {
  Status s = mounts_->Unmount(context.getParams().getDir());
  if (!s.ok()) context.getResults().setError(s.ToString());
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::journalDump(JournalDumpContext context) {
  auto params = context.getParams();
  auto results = context.getResults();
  auto vol = store_->FindVolume(params.getName());
  if (!vol.ok()) {
    results.setError(vol.status().ToString());
    return kj::READY_NOW;
  }
  uint64_t limit = params.getLimit() ? params.getLimit() : 1000;
  std::vector<Txn> txns;
  Status s = store_->ScanJournal((*vol)->id(), params.getFrom(), [&](const Txn& txn) {
    txns.push_back(txn);
    return txns.size() < limit;
  });
  if (!s.ok()) {
    results.setError(s.ToString());
    return kj::READY_NOW;
  }
  auto out = results.initEntries(txns.size());
  for (size_t i = 0; i < txns.size(); ++i) {
    out[i].setTxid(txns[i].txid);
    out[i].setEpoch(txns[i].epoch);
    out[i].setTimeNs(txns[i].time_ns);
    out[i].setChecksum(txns[i].checksum);
    auto ops = out[i].initOps(txns[i].ops.size());
    for (size_t j = 0; j < txns[i].ops.size(); ++j) ops.set(j, DescribeOp(txns[i].ops[j]));
  }
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::status(StatusContext context) {
  auto results = context.getResults();
  auto out = results.initStatus();
  out.setNode(identity_.node);
  out.setStore(identity_.store_dir);
  out.setPid(getpid());
  out.setUptimeSeconds(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                         identity_.started)
                           .count());
  out.setRssBytes(RssBytes());
  out.setVersion(ASPFS_VERSION);
  SpaceGuard::Report disk = store_->space_guard().report();
  out.setDiskTotalBytes(disk.space.total_bytes);
  out.setDiskFreeBytes(disk.space.free_bytes);
  out.setDiskReserveBytes(disk.reserve_bytes);
  out.setDiskFull(disk.full);
  auto list = store_->ListVolumes();
  if (!list.ok()) {
    results.setError(list.status().ToString());
    return kj::READY_NOW;
  }
  auto vols = out.initVolumes(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    auto vol = store_->FindVolume((*list)[i].name);
    if (vol.ok()) FillInfo(*vol, vols[i]).IgnoreError();
  }
  return kj::READY_NOW;
}

kj::Promise<void> ControlImpl::verifyVolume(VerifyVolumeContext context) {
  std::string name = context.getParams().getName();
  auto vol = store_->FindVolume(name);
  if (!vol.ok()) {
    context.getResults().setError(vol.status().ToString());
    return kj::READY_NOW;
  }
  ReapVerifies();
  auto verified = kj::newPromiseAndCrossThreadFulfiller<kj::Own<Result<StateCheck>>>();
  VerifyJob& job = verifies_.emplace_back();
  job.volume = name;
  job.fulfiller = kj::mv(verified.fulfiller);
  // A client that hangs up drops the promise, not the job; deleteVolume
  // waits for done, so *vol stays valid until then.
  Log("verify of volume %s started", name.c_str());
  job.thread = std::thread([this, &job, volume = *vol]() {
    auto started = std::chrono::steady_clock::now();
    auto check = kj::heap<Result<StateCheck>>(store_->VerifyVolume(volume, &stopping_));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    Log("verify of volume %s: %s (%.1f s)", job.volume.c_str(),
        check->ok() ? "consistent" : check->status().ToString().c_str(), seconds);
    job.fulfiller->fulfill(kj::mv(check));
    job.done = true;
  });
  return verified.promise.then([this, context, name](kj::Own<Result<StateCheck>> verdict) mutable {
    const Result<StateCheck>& check = *verdict;
    auto results = context.getResults();
    Status s = check.status();
    if (s.ok()) {
      auto vol = store_->FindVolume(name);
      s = vol.ok() ? FillInfo(*vol, results.initInfo()) : vol.status();
    }
    if (s.ok()) {
      auto counts = results.initCheck();
      counts.setInodes(check->inodes);
      counts.setEntries(check->entries);
      counts.setExtents(check->extents);
      counts.setXattrs(check->xattrs);
      counts.setOrphans(check->orphans);
      counts.setChunks(check->chunks.size());
      counts.setTxid(check->txid);
    }
    if (!s.ok()) results.setError(s.ToString());
  });
}

}  // namespace aspfs
