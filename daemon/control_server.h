// ControlImpl: the local control socket's server (daemon/control.capnp).
// Runs on the daemon's kj event-loop thread; each call runs to completion
// there, calling the store and the mount table directly, except verify,
// which replays a whole journal and runs on a thread of its own so that the
// other calls go on meanwhile.
#pragma once

#include <atomic>
#include <chrono>
#include <list>
#include <string>
#include <thread>

#include "daemon/control.capnp.h"
#include "journal/store.h"
#include "mount/mount_table.h"

namespace aspfs {

struct NodeIdentity {
  std::string node;
  std::string store_dir;
  std::chrono::steady_clock::time_point started;
};

class ControlImpl final : public rpc::Control::Server {
 public:
  ControlImpl(Store* store, MountTable* mounts, NodeIdentity identity)
      : store_(store), mounts_(mounts), identity_(std::move(identity)) {}
  // Stops running verifies and waits for their threads.
  ~ControlImpl();

  kj::Promise<void> createVolume(CreateVolumeContext context) override;
  kj::Promise<void> listVolumes(ListVolumesContext context) override;
  kj::Promise<void> volumeInfo(VolumeInfoContext context) override;
  kj::Promise<void> deleteVolume(DeleteVolumeContext context) override;
  kj::Promise<void> mount(MountContext context) override;
  kj::Promise<void> umount(UmountContext context) override;
  kj::Promise<void> journalDump(JournalDumpContext context) override;
  kj::Promise<void> status(StatusContext context) override;
  kj::Promise<void> verifyVolume(VerifyVolumeContext context) override;

 private:
  struct VerifyJob {
    std::string volume;
    kj::Own<kj::CrossThreadPromiseFulfiller<kj::Own<Result<StateCheck>>>> fulfiller;
    std::thread thread;
    std::atomic<bool> done{false};  // the thread no longer touches the job or the volume
  };

  Status FillInfo(Volume* vol, rpc::VolumeInfo::Builder out);
  // Joins the threads of finished verifies.
  void ReapVerifies();
  bool Verifying(const std::string& volume);

  Store* store_;
  MountTable* mounts_;
  NodeIdentity identity_;
  // Touched on the event-loop thread only; each job's thread sets its done.
  std::list<VerifyJob> verifies_;
  std::atomic<bool> stopping_{false};
};

}  // namespace aspfs
