// Integration-test fixtures: a real aspfsd with its own store, socket and
// temp dir; the real `aspfs` CLI; mounts that are unmounted even when a test
// fails.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace aspfs::testing {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A fresh directory under /var/tmp (same disk as a real store), removed with
// everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `program args...`, capturing stdout and stderr.
CliResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

class Daemon {
 public:
  // Uses root/store and root/sock; does not start.
  explicit Daemon(const std::string& root);
  ~Daemon();

  // Starts aspfsd (with extra_args) and returns once its control socket
  // answers.
  void Start(const std::vector<std::string>& extra_args = {});
  // SIGTERM; returns aspfsd's exit status. Mounts it left in use stay
  // (without a server) if leave_dead_mounts.
  int Stop(bool leave_dead_mounts = false);
  // SIGKILL, then detaches the dead mounts it leaves behind (unless
  // leave_dead_mounts, to test that the next mount clears them itself).
  void Kill9(bool leave_dead_mounts = false);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  CliResult Cli(const std::vector<std::string>& args) const;
  // Creates volume name (extra create args allowed) and mounts it at a new
  // directory under root; returns the mount point. Fails the test on error.
  std::string CreateAndMount(const std::string& name, const std::vector<std::string>& create_args = {});
  std::string MountPoint(const std::string& name) const { return root_ + "/mnt-" + name; }

  const std::string& store() const { return store_; }
  const std::string& socket() const { return socket_; }

 private:
  void DetachMounts();

  std::string root_, store_, socket_, log_;
  pid_t pid_ = -1;
  std::vector<std::string> mounts_;
};

std::string BinDir();
// Reads a whole file; "" when absent.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data);
// WriteFile, then fsync of the file and of its directory: durable.
void WriteFileDurably(const std::string& path, const std::string& data);

}  // namespace aspfs::testing
