// ControlImpl: the local control socket's server (daemon/control.capnp).
// Runs on the daemon's kj event-loop thread; each call runs to completion
// there, calling the store and the mount table directly.
#pragma once

#include <chrono>
#include <string>

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
  Status FillInfo(Volume* vol, rpc::VolumeInfo::Builder out);

  Store* store_;
  MountTable* mounts_;
  NodeIdentity identity_;
};

}  // namespace aspfs
