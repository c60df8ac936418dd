// Invariant 1 under kill -9: a daemon killed mid-workload comes back with
// every volume's state equal to its journal replayed to the last txid, every
// file fsynced before the kill intact, and no operation half-applied.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/harness.h"

namespace aspfs::testing {
namespace {

std::string Content(int n) {
  // Sizes straddle the inline limit and block boundaries.
  size_t size = (static_cast<uint64_t>(n) * 7919) % 300000;
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 31 + n) % 26);
  return s;
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    // Several writes per file, so a kill can fall between them.
    size_t n = std::min<size_t>(data.size() - done, 50000);
    ssize_t w = write(fd, data.data() + done, n);
    if (w <= 0) return false;
    done += w;
  }
  return true;
}

// The workload: durable files (written to a temp name, fsynced, renamed into
// place, directory fsynced, then logged) mixed with unsynced churn. Exits
// when the mount dies.
[[noreturn]] void Workload(const std::string& mnt, const std::string& log_path, int first, unsigned seed) {
  std::mt19937 rng(seed);
  std::ofstream log(log_path, std::ios::app);
  mkdir((mnt + "/durable").c_str(), 0755);
  mkdir((mnt + "/churn").c_str(), 0755);
  for (int n = first;; ++n) {
    std::string tmp = mnt + "/durable/.tmp" + std::to_string(n);
    std::string final_path = mnt + "/durable/f" + std::to_string(n);
    // A draft with pages 1 and 3 blanked, fsynced, then those pages written
    // and fsynced again: the durable bytes include page patches whose small
    // chunks ride in the WAL.
    const std::string content = Content(n);
    std::string draft = content;
    for (size_t page : {1, 3}) {
      if ((page + 1) * 4096 <= draft.size()) draft.replace(page * 4096, 4096, 4096, 'X');
    }
    int fd = open(tmp.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || !WriteAll(fd, draft) || fsync(fd) != 0) _exit(0);
    for (size_t page : {1, 3}) {
      if ((page + 1) * 4096 > content.size()) continue;
      if (pwrite(fd, content.data() + page * 4096, 4096, page * 4096) != 4096) _exit(0);
    }
    if (fsync(fd) != 0) _exit(0);
    close(fd);
    if (rename(tmp.c_str(), final_path.c_str()) != 0) _exit(0);
    int dfd = open((mnt + "/durable").c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) _exit(0);
    close(dfd);
    log << n << std::endl;
    // Unsynced churn that the crash may cut anywhere, of every kind of
    // change; some files stay open after their last name goes, so a kill
    // finds orphans too.
    for (int k = 0; k < 8; ++k) {
      auto churn = [&] { return mnt + "/churn/c" + std::to_string(rng() % 20); };
      std::string p = churn();
      switch (rng() % 10) {
        case 0: {
          int c = open(p.c_str(), O_CREAT | O_WRONLY, 0644);
          if (c >= 0) {
            std::string d(rng() % 100000, 'c');
            if (pwrite(c, d.data(), d.size(), rng() % 70000) < 0) _exit(0);
            close(c);
          }
          break;
        }
        case 1: unlink(p.c_str()); break;
        case 2: rename(p.c_str(), churn().c_str()); break;
        case 3: mkdir((p + "d").c_str(), 0755), rmdir((p + "d").c_str()); break;
        case 4: link(p.c_str(), churn().c_str()); break;
        case 5: truncate(p.c_str(), rng() % 200000); break;
        case 6: setxattr(p.c_str(), "user.k", "value", 1 + rng() % 5, 0); break;
        case 7: symlink("target", p.c_str()); break;
        case 8: renameat2(AT_FDCWD, p.c_str(), AT_FDCWD, churn().c_str(), RENAME_EXCHANGE); break;
        case 9:
          // Held open past its unlink until the process dies.
          if (open(p.c_str(), O_RDWR) >= 0) unlink(p.c_str());
          break;
      }
    }
  }
}

int LoggedCount(const std::string& log_path) {
  std::ifstream in(log_path);
  int count = 0;
  std::string line;
  while (std::getline(in, line)) ++count;
  return count;
}

// Reads every file under dir; returns the number of entries, fails on any
// error (a half-applied op would show as a dangling entry or an EIO).
int WalkAndRead(const std::string& dir) {
  int entries = 0;
  DIR* d = opendir(dir.c_str());
  EXPECT_NE(nullptr, d) << dir << ": " << strerror(errno);
  if (!d) return 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    ++entries;
    std::string path = dir + "/" + name;
    struct stat st;
    EXPECT_EQ(0, lstat(path.c_str(), &st)) << path << ": " << strerror(errno);
    if (S_ISDIR(st.st_mode)) {
      entries += WalkAndRead(path);
    } else if (S_ISREG(st.st_mode)) {
      int fd = open(path.c_str(), O_RDONLY);
      EXPECT_GE(fd, 0) << path;
      char buf[65536];
      ssize_t n, total = 0;
      while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
      EXPECT_EQ(0, n) << path << ": " << strerror(errno);
      EXPECT_EQ(st.st_size, total) << path;
      close(fd);
    }
  }
  closedir(d);
  return entries;
}

TEST(CrashTest, KillNineMidWorkloadAtManyPoints) {
  const char* seed_env = getenv("ASPFS_SEED");
  unsigned seed = seed_env ? strtoul(seed_env, nullptr, 10) : std::random_device{}();
  SCOPED_TRACE("ASPFS_SEED=" + std::to_string(seed));
  std::mt19937 rng(seed);
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("crash");
  // A second volume that the crashes must not disturb.
  std::string other = daemon.CreateAndMount("bystander");
  WriteFile(other + "/keep", Content(4242));
  int fd = open((other + "/keep").c_str(), O_RDONLY);
  ASSERT_EQ(0, fsync(fd));
  close(fd);

  const std::string log_path = tmp.path() + "/durable.log";
  const int kRounds = 24;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int before = LoggedCount(log_path);
    // Two workloads at once, on the same churn names: the kill also cuts
    // into racing operations.
    std::vector<pid_t> children;
    for (int w = 0; w < 2; ++w) {
      pid_t child = fork();
      if (child == 0) Workload(mnt, log_path, 100000 * (round + 1) + 50000 * w, seed + 2 * round + w);
      children.push_back(child);
    }
    // Kill point: after a random amount of durable progress, while the
    // workloads keep writing.
    int target = before + 1 + static_cast<int>(rng() % 12);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (LoggedCount(log_path) < target) {
      for (pid_t child : children) {
        int status;
        ASSERT_NE(child, waitpid(child, &status, WNOHANG)) << "workload stopped early";
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "workload made no progress";
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // Let them get into their next files at a random depth.
    for (unsigned spin = rng() % 2000; spin > 0; --spin) sched_yield();
    daemon.Kill9();
    for (pid_t child : children) {
      int status;
      waitpid(child, &status, 0);
    }

    daemon.Start();
    for (const char* vol : {"crash", "bystander"}) {
      auto verify = daemon.Cli({"volume", "verify", vol});
      ASSERT_EQ(0, verify.exit_code) << vol << ": " << verify.err;
    }
    ASSERT_EQ(0, daemon.Cli({"mount", "crash", mnt}).exit_code);
    ASSERT_EQ(0, daemon.Cli({"mount", "bystander", other}).exit_code);
    std::ifstream log(log_path);
    int n, checked = 0;
    while (log >> n) {
      ASSERT_EQ(Content(n), ReadFile(mnt + "/durable/f" + std::to_string(n))) << "fsynced file f" << n << " lost";
      ++checked;
    }
    EXPECT_GE(checked, target);
    WalkAndRead(mnt);
    EXPECT_EQ(Content(4242), ReadFile(other + "/keep"));
  }
  EXPECT_EQ(0, daemon.Stop());
}

}  // namespace
}  // namespace aspfs::testing
