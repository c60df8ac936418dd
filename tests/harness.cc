#include "tests/harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace aspfs::testing {

std::string BinDir() { return ASPFS_BIN_DIR; }

TempDir::TempDir() {
  std::string tmpl = "/var/tmp/aspfs-test-XXXXXX";
  char* made = mkdtemp(tmpl.data());
  if (!made) ADD_FAILURE() << "mkdtemp: " << strerror(errno);
  path_ = tmpl;
  chmod(path_.c_str(), 0755);  // tests run some steps as other users
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

bool SocketAnswers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

CliResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    for (const std::string& e : env) putenv(strdup(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CliResult result;
  // Read both pipes without deadlocking on a full one.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buf, n);
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

Daemon::Daemon(const std::string& root)
    : root_(root), store_(root + "/store"), socket_(root + "/aspfsd.sock"), log_(root + "/aspfsd.log") {}

Daemon::~Daemon() {
  if (pid_ > 0) Stop();
  DetachMounts();
}

void Daemon::Start(const std::vector<std::string>& extra_args) {
  ASSERT_LE(pid_, 0) << "daemon already running";
  std::string bin = BinDir() + "/aspfsd";
  std::vector<std::string> args = {bin, "--store", store_, "--socket", socket_, "--node", "test"};
  // scripts/test.sh runs the FUSE tests a second time through /dev/fuse.
  const char* transport = getenv("ASPFS_TEST_FUSE_IO_URING");
  if (transport && std::find(extra_args.begin(), extra_args.end(), "--fuse-io-uring") == extra_args.end()) {
    args.insert(args.end(), {"--fuse-io-uring", transport});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  // Poll the real condition (the socket answers), bounded so a daemon that
  // never comes up fails the test instead of hanging it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!SocketAnswers(socket_)) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "aspfsd exited at start: " << ReadFile(log_);
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "aspfsd did not answer: " << ReadFile(log_);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Daemon::Stop(bool leave_dead_mounts) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (!leave_dead_mounts) DetachMounts();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Daemon::Kill9(bool leave_dead_mounts) {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (!leave_dead_mounts) DetachMounts();
}

void Daemon::DetachMounts() {
  // A killed daemon leaves dead FUSE mounts ("transport endpoint is not
  // connected"); a clean stop leaves none and these calls fail harmlessly.
  for (const std::string& dir : mounts_) umount2(dir.c_str(), MNT_DETACH);
}

CliResult Daemon::Cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BinDir() + "/aspfs"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {"ASPFS_SOCKET=" + socket_});
}

std::string Daemon::CreateAndMount(const std::string& name, const std::vector<std::string>& create_args) {
  std::vector<std::string> create = {"volume", "create", name};
  create.insert(create.end(), create_args.begin(), create_args.end());
  CliResult created = Cli(create);
  EXPECT_EQ(0, created.exit_code) << created.err;
  std::string dir = MountPoint(name);
  mkdir(dir.c_str(), 0755);
  CliResult mounted = Cli({"mount", name, dir});
  EXPECT_EQ(0, mounted.exit_code) << mounted.err;
  mounts_.push_back(dir);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

void WriteFileDurably(const std::string& path, const std::string& data) {
  WriteFile(path, data);
  for (const std::string& p : {path, std::filesystem::path(path).parent_path().string()}) {
    int fd = open(p.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << p;
    EXPECT_EQ(0, fsync(fd)) << p;
    close(fd);
  }
}

}  // namespace aspfs::testing
