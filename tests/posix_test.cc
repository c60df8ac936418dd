// POSIX behaviour of a mounted volume, checked with real syscalls against
// what Linux documents (ext4 as the reference).
#include <dirent.h>
#include <sched.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/harness.h"

namespace aspfs::testing {
namespace {

class PosixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    daemon_ = new Daemon(tmp_->path());
    daemon_->Start();
    mnt_ = new std::string(daemon_->CreateAndMount("posix"));
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(0, daemon_->Stop());
    delete daemon_;
    delete tmp_;
    delete mnt_;
  }
  void SetUp() override {
    dir_ = *mnt_ + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_EQ(0, mkdir(dir_.c_str(), 0777)) << strerror(errno);
  }
  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  static int Errno(int rc) { return rc < 0 ? errno : 0; }

  static TempDir* tmp_;
  static Daemon* daemon_;
  static std::string* mnt_;
  std::string dir_;
};
TempDir* PosixTest::tmp_;
Daemon* PosixTest::daemon_;
std::string* PosixTest::mnt_;

struct stat Stat(const std::string& path) {
  struct stat st;
  memset(&st, 0, sizeof st);
  EXPECT_EQ(0, lstat(path.c_str(), &st)) << path << ": " << strerror(errno);
  return st;
}

TEST_F(PosixTest, CreateWriteReadList) {
  WriteFile(P("a"), "hello");
  EXPECT_EQ("hello", ReadFile(P("a")));
  ASSERT_EQ(0, mkdir(P("sub").c_str(), 0755));
  std::set<std::string> names;
  DIR* d = opendir(dir_.c_str());
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  EXPECT_EQ((std::set<std::string>{".", "..", "a", "sub"}), names);
  // A directory has a size and a block, as on ext4: du counts it.
  struct stat st;
  ASSERT_EQ(0, stat(P("sub").c_str(), &st));
  EXPECT_EQ(4096, st.st_size);
  EXPECT_EQ(8, st.st_blocks);
}

TEST_F(PosixTest, LargeFileAcrossBlocksRoundTrips) {
  std::string data(1 << 20 | 12345, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  WriteFile(P("big"), data);
  EXPECT_EQ(data, ReadFile(P("big")));
  EXPECT_EQ(static_cast<off_t>(data.size()), Stat(P("big")).st_size);
}

TEST_F(PosixTest, HardLinksCountAndSurviveUnlink) {
  WriteFile(P("f"), "data");
  ASSERT_EQ(0, link(P("f").c_str(), P("g").c_str()));
  EXPECT_EQ(2u, Stat(P("f")).st_nlink);
  EXPECT_EQ(Stat(P("f")).st_ino, Stat(P("g")).st_ino);
  EXPECT_EQ(EEXIST, Errno(link(P("f").c_str(), P("g").c_str())));
  ASSERT_EQ(0, unlink(P("f").c_str()));
  EXPECT_EQ(1u, Stat(P("g")).st_nlink);
  EXPECT_EQ("data", ReadFile(P("g")));
  ASSERT_EQ(0, mkdir(P("d").c_str(), 0755));
  EXPECT_EQ(EPERM, Errno(link(P("d").c_str(), P("d2").c_str())));
  ASSERT_EQ(0, mkdir(P("d/e").c_str(), 0755));
  EXPECT_EQ(3u, Stat(P("d")).st_nlink);
}

TEST_F(PosixTest, RenameReplaceNoReplaceExchange) {
  WriteFile(P("a"), "A");
  WriteFile(P("b"), "B");
  ASSERT_EQ(0, mkdir(P("d").c_str(), 0755));
  EXPECT_EQ(EEXIST, Errno(renameat2(AT_FDCWD, P("a").c_str(), AT_FDCWD, P("b").c_str(), RENAME_NOREPLACE)));
  ASSERT_EQ(0, renameat2(AT_FDCWD, P("a").c_str(), AT_FDCWD, P("b").c_str(), RENAME_EXCHANGE));
  EXPECT_EQ("B", ReadFile(P("a")));
  EXPECT_EQ("A", ReadFile(P("b")));
  EXPECT_EQ(ENOENT, Errno(renameat2(AT_FDCWD, P("a").c_str(), AT_FDCWD, P("zz").c_str(), RENAME_EXCHANGE)));
  ASSERT_EQ(0, rename(P("a").c_str(), P("d/a").c_str()));
  ASSERT_EQ(0, rename(P("b").c_str(), P("d/a").c_str()));
  EXPECT_EQ("A", ReadFile(P("d/a")));
  EXPECT_EQ(ENOENT, Errno(access(P("b").c_str(), F_OK)));
  ASSERT_EQ(0, mkdir(P("d/sub").c_str(), 0755));
  EXPECT_EQ(EINVAL, Errno(rename(P("d").c_str(), P("d/sub/x").c_str())));
  ASSERT_EQ(0, mkdir(P("e").c_str(), 0755));
  WriteFile(P("e/f"), "x");
  EXPECT_EQ(ENOTEMPTY, Errno(rename(P("d/sub").c_str(), P("e").c_str())));
  EXPECT_EQ(EISDIR, Errno(rename(P("d/a").c_str(), P("e").c_str())));
  EXPECT_EQ(ENOTDIR, Errno(rename(P("e").c_str(), P("d/a").c_str())));
}

TEST_F(PosixTest, OpenButUnlinkedFileStaysUsableThenGoes) {
  int fd = open(P("tmp").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, unlink(P("tmp").c_str()));
  std::string data(200000, 'u');
  ASSERT_EQ(static_cast<ssize_t>(data.size()), pwrite(fd, data.data(), data.size(), 0));
  struct stat st;
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_EQ(0u, st.st_nlink);
  std::string back(data.size(), '\0');
  ASSERT_EQ(static_cast<ssize_t>(data.size()), pread(fd, back.data(), back.size(), 0));
  EXPECT_EQ(data, back);
  EXPECT_EQ(ENOENT, Errno(access(P("tmp").c_str(), F_OK)));
  close(fd);
}

// O_TMPFILE: a file with no name (nlink 0) that linkat(2) can name later,
// unless opened with O_EXCL; one never named is gone once closed.
TEST_F(PosixTest, TmpfileIsNamelessUntilLinked) {
  int fd = open(dir_.c_str(), O_TMPFILE | O_RDWR, 0640);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(5, write(fd, "hello", 5));
  struct stat st;
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_EQ(0u, st.st_nlink);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  DIR* d = opendir(dir_.c_str());
  int names = 0;
  while (readdir(d)) ++names;
  closedir(d);
  EXPECT_EQ(2, names);  // "." and ".."
  // The way unprivileged programs name it: through /proc, following the link.
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ASSERT_EQ(0, linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, P("named").c_str(), AT_SYMLINK_FOLLOW)) << strerror(errno);
  EXPECT_EQ(1u, Stat(P("named")).st_nlink);
  EXPECT_EQ(st.st_ino, Stat(P("named")).st_ino);
  EXPECT_EQ("hello", ReadFile(P("named")));
  close(fd);
  EXPECT_EQ("hello", ReadFile(P("named")));

  fd = open(dir_.c_str(), O_TMPFILE | O_EXCL | O_WRONLY, 0600);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(3, write(fd, "tmp", 3));
  proc = "/proc/self/fd/" + std::to_string(fd);
  // No fstat first: the kernel decides from the nlink of the create's reply.
  EXPECT_EQ(ENOENT, Errno(linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, P("never").c_str(), AT_SYMLINK_FOLLOW)));
  close(fd);
  // Closed unnamed, it leaves the orphans (the kernel's FORGET comes after
  // close returns).
  auto orphans = [] {
    CliResult verify = daemon_->Cli({"volume", "verify", "posix", "--json"});
    EXPECT_EQ(0, verify.exit_code) << verify.err;
    return verify.exit_code == 0 ? nlohmann::json::parse(verify.out)["orphans"].get<int>() : -1;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (orphans() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(0, orphans());
  // Not on a directory that is not there or not a directory.
  EXPECT_EQ(ENOENT, Errno(open(P("nodir").c_str(), O_TMPFILE | O_RDWR, 0600)));
  EXPECT_EQ(ENOTDIR, Errno(open(P("named").c_str(), O_TMPFILE | O_RDWR, 0600)));
}

TEST_F(PosixTest, SparseFilesAndSeekDataHole) {
  int fd = open(P("sparse").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const off_t far = 10 << 20;
  ASSERT_EQ(4, pwrite(fd, "tail", 4, far));
  ASSERT_EQ(0, fsync(fd));
  EXPECT_EQ(far + 4, lseek(fd, 0, SEEK_END));
  // While a descriptor that may write is open, a mount served through
  // io_uring answers without holes (all data up to the end, as lseek(2)
  // allows); through /dev/fuse, exactly. Either way, never a hole over data.
  off_t writer_data = lseek(fd, 0, SEEK_DATA);
  EXPECT_TRUE(writer_data == 0 || (writer_data > 1 << 20 && writer_data <= far)) << writer_data;
  off_t writer_hole = lseek(fd, far, SEEK_HOLE);
  EXPECT_EQ(far + 4, writer_hole);
  close(fd);
  fd = open(P("sparse").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  ASSERT_EQ(8, pread(fd, buf, 8, 4096));
  EXPECT_EQ(std::string(8, '\0'), std::string(buf, 8));
  off_t data_at = lseek(fd, 0, SEEK_DATA);
  EXPECT_LE(data_at, far);
  EXPECT_GT(data_at, 1 << 20);  // the leading megabytes are a hole
  EXPECT_EQ(0, lseek(fd, 0, SEEK_HOLE));
  EXPECT_EQ(far + 4, lseek(fd, far, SEEK_HOLE));
  EXPECT_EQ(-1, lseek(fd, far + 4, SEEK_DATA));
  EXPECT_EQ(ENXIO, errno);
  struct stat st;
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_LT(st.st_blocks * 512, 1 << 20);  // holes take no space
  close(fd);

  // st_blksize is the hole granularity: one byte in the third unit leaves
  // the two before it a hole, as programs that size holes by it expect.
  fd = open(P("units").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, fstat(fd, &st));
  const off_t unit = st.st_blksize;
  ASSERT_EQ(1, pwrite(fd, "u", 1, 2 * unit + 10));
  close(fd);
  fd = open(P("units").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(2 * unit, lseek(fd, 0, SEEK_DATA));
  EXPECT_EQ(0, lseek(fd, 0, SEEK_HOLE));
  EXPECT_EQ(2 * unit + 11, lseek(fd, 2 * unit, SEEK_HOLE));
  close(fd);
}

TEST_F(PosixTest, SeekDataSeesWhatTheKernelHasNotWrittenBackYet) {
  // FUSE_LSEEK comes without a writeback of the file's dirty pages: data
  // written through a shared mapping (no msync) or still in the page cache
  // must not be answered as a hole. Found by a helper's exerciser.
  int fd = open(P("m").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, ftruncate(fd, 4 * 65536));
  char* map = static_cast<char*>(mmap(nullptr, 4 * 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(MAP_FAILED, map);
  memset(map + 2 * 65536 + 20480, 'x', 4096);
  off_t data = lseek(fd, 0, SEEK_DATA);
  EXPECT_LE(data, 2 * 65536 + 20480) << strerror(errno);  // ext4: the page; ASPFS: its 64 KiB block
  EXPECT_GE(data, 0);
  EXPECT_GT(lseek(fd, data, SEEK_HOLE), 2 * 65536 + 20480);
  EXPECT_EQ('x', map[2 * 65536 + 20480]);  // the mapping still works
  munmap(map, 4 * 65536);
  // Through write(2), then at once from another descriptor.
  ASSERT_EQ(4096, pwrite(fd, std::string(4096, 'y').data(), 4096, 3 * 65536 + 8192));
  int other = open(P("m").c_str(), O_RDONLY);
  ASSERT_GE(other, 0);
  EXPECT_LE(lseek(other, 2 * 65536 + 65536, SEEK_DATA), 3 * 65536 + 8192);
  EXPECT_GE(lseek(other, 3 * 65536, SEEK_DATA), 3 * 65536);
  close(other);
  close(fd);
}

TEST_F(PosixTest, FilesBeyondFourGiB) {
  int fd = open(P("huge").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const off_t at = (5ll << 30) + 123;
  ASSERT_EQ(6, pwrite(fd, "beyond", 6, at));
  close(fd);
  EXPECT_EQ(at + 6, Stat(P("huge")).st_size);
  fd = open(P("huge").c_str(), O_RDONLY);
  char buf[6];
  ASSERT_EQ(6, pread(fd, buf, 6, at));
  EXPECT_EQ("beyond", std::string(buf, 6));
  close(fd);
  ASSERT_EQ(0, truncate(P("huge").c_str(), 1ll << 32));
  EXPECT_EQ(1ll << 32, Stat(P("huge")).st_size);
}

TEST_F(PosixTest, TruncateZeroesTheCutTail) {
  WriteFile(P("t"), std::string(100000, 'x'));
  ASSERT_EQ(0, truncate(P("t").c_str(), 70000));
  ASSERT_EQ(0, truncate(P("t").c_str(), 90000));
  std::string data = ReadFile(P("t"));
  ASSERT_EQ(90000u, data.size());
  EXPECT_EQ(std::string(70000, 'x'), data.substr(0, 70000));
  EXPECT_EQ(std::string(20000, '\0'), data.substr(70000));
  WriteFile(P("small"), "0123456789");
  ASSERT_EQ(0, truncate(P("small").c_str(), 3));
  ASSERT_EQ(0, truncate(P("small").c_str(), 6));
  EXPECT_EQ(std::string("012\0\0\0", 6), ReadFile(P("small")));
}

TEST_F(PosixTest, OpenFlagsAppendTruncExcl) {
  WriteFile(P("f"), "start");
  int fd = open(P("f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(4, write(fd, "-end", 4));
  close(fd);
  EXPECT_EQ("start-end", ReadFile(P("f")));
  EXPECT_EQ(EEXIST, Errno(open(P("f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644)));
  fd = open(P("f").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(0, Stat(P("f")).st_size);
}

TEST_F(PosixTest, FallocateModes) {
  int fd = open(P("fa").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, fallocate(fd, 0, 0, 300000));
  EXPECT_EQ(300000, Stat(P("fa")).st_size);
  ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 500000));
  EXPECT_EQ(300000, Stat(P("fa")).st_size);
  std::string ones(300000, '1');
  ASSERT_EQ(300000, pwrite(fd, ones.data(), ones.size(), 0));
  ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 200000));
  std::string back(300000, '\0');
  ASSERT_EQ(300000, pread(fd, back.data(), back.size(), 0));
  EXPECT_EQ(std::string(1000, '1'), back.substr(0, 1000));
  EXPECT_EQ(std::string(200000, '\0'), back.substr(1000, 200000));
  EXPECT_EQ(std::string(99000, '1'), back.substr(201000));
  ASSERT_EQ(0, fallocate(fd, FALLOC_FL_ZERO_RANGE, 299000, 2000));
  EXPECT_EQ(301000, Stat(P("fa")).st_size);
  close(fd);
}

TEST_F(PosixTest, CopyFileRangeAlignedAndNot) {
  // Block-aligned copies share the source's chunks; the rest the kernel
  // copies itself once ASPFS says EOPNOTSUPP. Both read back the same.
  std::string data(3 * 65536 + 5000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 13);
  WriteFile(P("src"), data);
  WriteFile(P("dst"), std::string(100, 'd'));
  int in = open(P("src").c_str(), O_RDONLY), out = open(P("dst").c_str(), O_RDWR);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  auto copy = [&](loff_t from, loff_t to, size_t len) {
    size_t done = 0;
    while (done < len) {
      ssize_t n = copy_file_range(in, &from, out, &to, len - done, 0);
      if (n <= 0) return n < 0 ? -errno : static_cast<ssize_t>(done);
      done += n;
    }
    return static_cast<ssize_t>(done);
  };
  EXPECT_EQ(static_cast<ssize_t>(data.size()), copy(0, 0, data.size()));  // over a small file: the kernel's
  EXPECT_EQ(data, ReadFile(P("dst")));
  EXPECT_EQ(static_cast<ssize_t>(data.size()), copy(0, 4 * 65536, data.size()));  // aligned, past the end
  EXPECT_EQ(static_cast<ssize_t>(data.size() - 7), copy(7, 65536 + 3, data.size()));  // unaligned, over itself
  std::string expect = data;
  expect.resize(4 * 65536, '\0');
  expect += data;
  expect.replace(65536 + 3, data.size() - 7, data.substr(7));
  EXPECT_EQ(expect, ReadFile(P("dst")));
  close(in);
  close(out);
  // cp uses copy_file_range.
  ASSERT_EQ(0, system(("cp " + P("dst") + " " + P("copy")).c_str()));
  EXPECT_EQ(expect, ReadFile(P("copy")));
}

TEST_F(PosixTest, Xattrs) {
  WriteFile(P("x"), "");
  const char* path = P("x").c_str();
  std::string p = P("x");
  ASSERT_EQ(0, setxattr(p.c_str(), "user.color", "blue", 4, 0));
  ASSERT_EQ(0, setxattr(p.c_str(), "trusted.t", "T", 1, 0));
  ASSERT_EQ(0, setxattr(p.c_str(), "security.s", "S", 1, 0));
  EXPECT_EQ(EEXIST, Errno(setxattr(p.c_str(), "user.color", "red", 3, XATTR_CREATE)));
  EXPECT_EQ(ENODATA, Errno(setxattr(p.c_str(), "user.none", "x", 1, XATTR_REPLACE)));
  char buf[64];
  ASSERT_EQ(4, getxattr(p.c_str(), "user.color", buf, sizeof buf));
  EXPECT_EQ("blue", std::string(buf, 4));
  EXPECT_EQ(4, getxattr(p.c_str(), "user.color", nullptr, 0));
  EXPECT_EQ(ERANGE, Errno(getxattr(p.c_str(), "user.color", buf, 2)));
  EXPECT_EQ(ENODATA, Errno(getxattr(p.c_str(), "user.none", buf, sizeof buf)));
  char names[256];
  ssize_t n = listxattr(p.c_str(), names, sizeof names);
  ASSERT_GT(n, 0);
  std::set<std::string> got;
  for (ssize_t i = 0; i < n; i += strlen(names + i) + 1) got.insert(names + i);
  EXPECT_TRUE(got.count("user.color") && got.count("trusted.t") && got.count("security.s"));
  ASSERT_EQ(0, removexattr(p.c_str(), "user.color"));
  EXPECT_EQ(ENODATA, Errno(removexattr(p.c_str(), "user.color")));
  // system.* holds only what the file system defines (POSIX ACLs), even for
  // root, as on ext4.
  EXPECT_EQ(EOPNOTSUPP, Errno(setxattr(p.c_str(), "system.evil", "x", 1, 0)));
  EXPECT_EQ(EOPNOTSUPP, Errno(getxattr(p.c_str(), "system.evil", buf, sizeof buf)));
  EXPECT_EQ(EOPNOTSUPP, Errno(removexattr(p.c_str(), "system.evil")));
  (void)path;
}

// trusted.* is for CAP_SYS_ADMIN only: others neither read nor list it.
TEST_F(PosixTest, TrustedXattrsAreHiddenFromOtherUsers) {
  std::string p = P("t");
  WriteFile(p, "");
  ASSERT_EQ(0, chmod(p.c_str(), 0666));
  ASSERT_EQ(0, chmod(dir_.c_str(), 0755));
  ASSERT_EQ(0, setxattr(p.c_str(), "trusted.t", "T", 1, 0));
  ASSERT_EQ(0, setxattr(p.c_str(), "user.u", "U", 1, 0));
  pid_t pid = fork();
  if (pid == 0) {
    // Into the directory first: the test's parent directories need not be
    // searchable by that user.
    if (chdir(dir_.c_str()) != 0 || setgid(4321) != 0 || setuid(4321) != 0) _exit(2);
    char names[256];
    ssize_t n = listxattr("t", names, sizeof names);
    if (n < 0) _exit(3);
    if (std::string(names, n) != std::string("user.u\0", 7)) _exit(4);
    char value[8];
    if (getxattr("t", "trusted.t", value, sizeof value) >= 0 || errno != ENODATA) _exit(5);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_F(PosixTest, BadNamesAndPaths) {
  std::string long_name(256, 'n');
  EXPECT_EQ(ENAMETOOLONG, Errno(open(P(long_name).c_str(), O_CREAT | O_WRONLY, 0644)));
  EXPECT_EQ(ENAMETOOLONG, Errno(mkdir(P(long_name).c_str(), 0755)));
  std::string max_name(255, 'm');
  int fd = open(P(max_name).c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_GE(fd, 0);
  close(fd);
  WriteFile(P("file"), "x");
  EXPECT_EQ(ENOTDIR, Errno(open(P("file/child").c_str(), O_CREAT | O_WRONLY, 0644)));
  EXPECT_EQ(ENOTDIR, Errno(mkdir(P("file/d").c_str(), 0755)));
  EXPECT_EQ(ENOENT, Errno(open(P("missing/child").c_str(), O_RDONLY)));
  EXPECT_EQ(EISDIR, Errno(open(dir_.c_str(), O_WRONLY)));
  EXPECT_EQ(ENOTEMPTY, Errno(rmdir(dir_.c_str())));
  EXPECT_EQ(ENOTDIR, Errno(rmdir(P("file").c_str())));
  EXPECT_EQ(EISDIR, Errno(unlink(*mnt_ == "" ? "" : dir_.c_str())));
}

TEST_F(PosixTest, SpecialFiles) {
  ASSERT_EQ(0, mkfifo(P("fifo").c_str(), 0600));
  EXPECT_TRUE(S_ISFIFO(Stat(P("fifo")).st_mode));
  ASSERT_EQ(0, mknod(P("null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  struct stat st = Stat(P("null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(makedev(1, 3), st.st_rdev);
  // The mount allows device nodes (dev): writing to this /dev/null works.
  int fd = open(P("null").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_EQ(3, write(fd, "abc", 3));
  close(fd);
  ASSERT_EQ(0, mknod(P("blk").c_str(), S_IFBLK | 0600, makedev(7, 0)));
  EXPECT_TRUE(S_ISBLK(Stat(P("blk")).st_mode));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::string sock_path = P("sock");
  if (sock_path.size() < sizeof addr.sun_path) {
    strcpy(addr.sun_path, sock_path.c_str());
    ASSERT_EQ(0, bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr)) << strerror(errno);
    EXPECT_TRUE(S_ISSOCK(Stat(sock_path).st_mode));
  }
  close(s);
  ASSERT_EQ(0, symlink("../some/target", P("link").c_str()));
  char target[64];
  ssize_t n = readlink(P("link").c_str(), target, sizeof target);
  ASSERT_EQ(14, n);
  EXPECT_EQ("../some/target", std::string(target, n));
  EXPECT_TRUE(S_ISLNK(Stat(P("link")).st_mode));
}

TEST_F(PosixTest, SetattrModeOwnerTimes) {
  WriteFile(P("f"), "x");
  ASSERT_EQ(0, chmod(P("f").c_str(), 04751));
  EXPECT_EQ(04751u, Stat(P("f")).st_mode & 07777);
  ASSERT_EQ(0, chown(P("f").c_str(), 1234, 5678));
  struct stat st = Stat(P("f"));
  EXPECT_EQ(1234u, st.st_uid);
  EXPECT_EQ(5678u, st.st_gid);
  EXPECT_EQ(0751u, st.st_mode & 07777);  // chown clears set-user-ID
  struct timespec times[2] = {{1000, 5}, {2000, 7}};
  ASSERT_EQ(0, utimensat(AT_FDCWD, P("f").c_str(), times, 0));
  st = Stat(P("f"));
  EXPECT_EQ(1000, st.st_atim.tv_sec);
  EXPECT_EQ(5, st.st_atim.tv_nsec);
  EXPECT_EQ(2000, st.st_mtim.tv_sec);
  struct timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(0, utimensat(AT_FDCWD, P("f").c_str(), omit_now, 0));
  st = Stat(P("f"));
  EXPECT_EQ(1000, st.st_atim.tv_sec);
  EXPECT_GT(st.st_mtim.tv_sec, 1700000000);
  // Before 1970, to the nanosecond; past the range of the stored
  // nanoseconds (2262), clamped to its end as the kernel clamps to a file
  // system's range, never wrapped into the past.
  struct timespec far[2] = {{-315619200, 123456789}, {16725225600, 0}};  // 1960-01-01, 2500-01-01
  ASSERT_EQ(0, utimensat(AT_FDCWD, P("f").c_str(), far, 0));
  st = Stat(P("f"));
  EXPECT_EQ(-315619200, st.st_atim.tv_sec);
  EXPECT_EQ(123456789, st.st_atim.tv_nsec);
  EXPECT_EQ(9223372035, st.st_mtim.tv_sec);  // 2262-04-11
  struct timespec ancient[2] = {{-16725225600, 0}, {0, UTIME_OMIT}};  // 1440
  ASSERT_EQ(0, utimensat(AT_FDCWD, P("f").c_str(), ancient, 0));
  EXPECT_EQ(-9223372035, Stat(P("f")).st_atim.tv_sec);  // 1677-09-21
}

TEST_F(PosixTest, WriteByOtherUserClearsSetuid) {
  WriteFile(P("suid"), "x");
  ASSERT_EQ(0, chmod(P("suid").c_str(), 04777));
  ASSERT_EQ(0, chmod(dir_.c_str(), 0777));
  pid_t pid = fork();
  if (pid == 0) {
    // Relative paths: the directories above the mount are none of our business.
    if (chdir(dir_.c_str()) != 0 || setgid(4321) != 0 || setuid(4321) != 0) _exit(2);
    int fd = open("suid", O_WRONLY | O_APPEND);
    if (fd < 0) _exit(3);
    if (write(fd, "y", 1) != 1) _exit(4);
    close(fd);
    _exit(0);
  }
  int status;
  waitpid(pid, &status, 0);
  ASSERT_EQ(0, WEXITSTATUS(status));
  EXPECT_EQ(0777u, Stat(P("suid")).st_mode & 07777);
  EXPECT_EQ("xy", ReadFile(P("suid")));
}

TEST_F(PosixTest, PermissionsAreEnforcedForOtherUsers) {
  WriteFile(P("private"), "secret");
  ASSERT_EQ(0, chmod(P("private").c_str(), 0600));
  WriteFile(P("public"), "open");
  ASSERT_EQ(0, chmod(P("public").c_str(), 0644));
  ASSERT_EQ(0, chmod(dir_.c_str(), 0755));
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir_.c_str()) != 0 || setgid(4321) != 0 || setuid(4321) != 0) _exit(2);
    int fd = open("public", O_RDONLY);
    if (fd < 0) _exit(3);  // readable files stay readable
    close(fd);
    fd = open("private", O_RDONLY);
    _exit(fd < 0 && errno == EACCES ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_F(PosixTest, SetgidDirectoryInheritance) {
  ASSERT_EQ(0, mkdir(P("g").c_str(), 0775));
  ASSERT_EQ(0, chown(P("g").c_str(), 0, 777));
  ASSERT_EQ(0, chmod(P("g").c_str(), 02775));
  WriteFile(P("g/f"), "x");
  ASSERT_EQ(0, mkdir(P("g/d").c_str(), 0755));
  EXPECT_EQ(777u, Stat(P("g/f")).st_gid);
  EXPECT_EQ(777u, Stat(P("g/d")).st_gid);
  EXPECT_TRUE(Stat(P("g/d")).st_mode & S_ISGID);
}

TEST_F(PosixTest, ReaddirOffsetsStayStableWhileDirectoryChanges) {
  for (int i = 0; i < 300; ++i) WriteFile(P("f" + std::to_string(i)), "");
  DIR* d = opendir(dir_.c_str());
  ASSERT_NE(nullptr, d);
  std::multiset<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    dirent* e = readdir(d);
    ASSERT_NE(nullptr, e);
    seen.insert(e->d_name);
  }
  long pos = telldir(d);
  // Remove and add names while the stream is open; POSIX leaves the new
  // and removed names unspecified, but every untouched name must appear
  // exactly once.
  std::set<std::string> removed;
  for (int i = 0; i < 300; i += 7) {
    std::string name = "f" + std::to_string(i);
    if (!seen.count(name)) {
      unlink(P(name).c_str());
      removed.insert(name);
    }
  }
  for (int i = 0; i < 50; ++i) WriteFile(P("new" + std::to_string(i)), "");
  seekdir(d, pos);
  while (dirent* e = readdir(d)) seen.insert(e->d_name);
  closedir(d);
  for (int i = 0; i < 300; ++i) {
    std::string name = "f" + std::to_string(i);
    if (removed.count(name)) continue;
    EXPECT_EQ(1u, seen.count(name)) << name;
  }
}

TEST_F(PosixTest, FsyncVariantsSucceed) {
  int fd = open(P("s").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_EQ(5, write(fd, "12345", 5));
  EXPECT_EQ(0, fsync(fd));
  EXPECT_EQ(0, fdatasync(fd));
  close(fd);
  int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(0, fsync(dfd));
  close(dfd);
  EXPECT_EQ(0, syncfs(dfd) == 0 || errno == EBADF ? 0 : 1);
}

TEST_F(PosixTest, StatfsReportsUnlimitedVolumeSanely) {
  struct statvfs st;
  ASSERT_EQ(0, statvfs(dir_.c_str(), &st));
  EXPECT_EQ(255u, st.f_namemax);
  EXPECT_GT(st.f_blocks, 0u);
  EXPECT_GE(st.f_blocks, st.f_bfree);
}

// Quota tests use a volume of their own.
TEST(QuotaTest, BytesAndInodesAreEnforcedAndReported) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("q", {"--quota-bytes", "1M", "--quota-inodes", "20"});
  struct statvfs st;
  ASSERT_EQ(0, statvfs(mnt.c_str(), &st));
  EXPECT_EQ(256u, st.f_blocks);  // 1 MiB in 4 KiB blocks
  EXPECT_EQ(20u, st.f_files);

  int fd = open((mnt + "/fill").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string chunk(64 * 1024, 'q');
  int err = 0;
  for (int i = 0; i < 40 && !err; ++i) {
    if (write(fd, chunk.data(), chunk.size()) < 0) err = errno;
    if (!err && fsync(fd) < 0) err = errno;
  }
  close(fd);
  EXPECT_EQ(EDQUOT, err);
  ASSERT_EQ(0, statvfs(mnt.c_str(), &st));
  EXPECT_LT(st.f_bavail, 32u);

  auto info = daemon.Cli({"volume", "info", "q", "--json"});
  ASSERT_EQ(0, info.exit_code) << info.err;
  auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(1u << 20, j["quota_bytes"].get<uint64_t>());
  EXPECT_GT(j["used_bytes"].get<uint64_t>(), 900u * 1024);
  EXPECT_LE(j["used_bytes"].get<uint64_t>(), 1u << 20);

  // Freeing space makes room again.
  ASSERT_EQ(0, unlink((mnt + "/fill").c_str()));
  WriteFile(mnt + "/after", std::string(100000, 'a'));
  EXPECT_EQ(100000u, ReadFile(mnt + "/after").size());

  // Xattrs are no way around the quota: 64 KiB values run into it as data does.
  const std::string value(64 * 1024, 'x');
  int xattr_err = 0, stored = 0;
  for (; stored < 40 && !xattr_err; ++stored) {
    std::string name = "user.x" + std::to_string(stored);
    if (setxattr((mnt + "/after").c_str(), name.c_str(), value.data(), value.size(), 0) < 0) xattr_err = errno;
  }
  EXPECT_EQ(EDQUOT, xattr_err);
  EXPECT_GE(stored, 10);  // about 900 KiB were free
  ASSERT_EQ(0, statvfs(mnt.c_str(), &st));
  EXPECT_LT(st.f_bavail, 32u);
  ASSERT_EQ(0, unlink((mnt + "/after").c_str()));

  int inode_err = 0;
  for (int i = 0; i < 30 && !inode_err; ++i) {
    int f = open((mnt + "/i" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
    if (f < 0) inode_err = errno;
    else close(f);
  }
  EXPECT_EQ(EDQUOT, inode_err);
  EXPECT_EQ(0, daemon.Stop());
}

TEST(MountTest, DataSurvivesUmountAndRemount) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("r");
  std::string data(333333, 'r');
  WriteFile(mnt + "/f", data);
  ASSERT_EQ(0, mkdir((mnt + "/d").c_str(), 0700));
  ASSERT_EQ(0, daemon.Cli({"umount", mnt}).exit_code);
  EXPECT_NE(0, access((mnt + "/f").c_str(), F_OK));
  ASSERT_EQ(0, daemon.Cli({"mount", "r", mnt}).exit_code);
  EXPECT_EQ(data, ReadFile(mnt + "/f"));
  EXPECT_EQ(0700u, Stat(mnt + "/d").st_mode & 07777);
  // A read-only mount serves the same tree and refuses writes.
  ASSERT_EQ(0, daemon.Cli({"umount", mnt}).exit_code);
  ASSERT_EQ(0, daemon.Cli({"mount", "r", mnt, "--ro"}).exit_code);
  EXPECT_EQ(data, ReadFile(mnt + "/f"));
  EXPECT_EQ(-1, open((mnt + "/new").c_str(), O_CREAT | O_WRONLY, 0644));
  EXPECT_EQ(EROFS, errno);
  auto verify = daemon.Cli({"volume", "verify", "r"});
  EXPECT_EQ(0, verify.exit_code) << verify.err;
  EXPECT_EQ(0, daemon.Stop());
}

struct FileHandle {
  struct file_handle head;
  unsigned char bytes[MAX_HANDLE_SZ];
};

FileHandle HandleOf(const std::string& path) {
  FileHandle h;
  h.head.handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  EXPECT_EQ(0, name_to_handle_at(AT_FDCWD, path.c_str(), &h.head, &mount_id, 0)) << path << ": " << strerror(errno);
  return h;
}

// File handles outlive the kernel's cache of the inode, as on ext4: after a
// remount the kernel knows none of the inodes and must ask for each by number
// (and for a directory, walk up through "..").
// The running kernel's version is at least major.minor.
bool KernelAtLeast(int major, int minor) {
  struct utsname u;
  int have_major = 0, have_minor = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &have_major, &have_minor) != 2) return false;
  return have_major > major || (have_major == major && have_minor >= minor);
}

TEST(MountTest, FileHandlesOpenAfterRemount) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("h");
  ASSERT_EQ(0, mkdir((mnt + "/a").c_str(), 0755));
  ASSERT_EQ(0, mkdir((mnt + "/a/b").c_str(), 0755));
  WriteFile(mnt + "/a/b/f", "handled");
  WriteFile(mnt + "/gone", "x");
  FileHandle file = HandleOf(mnt + "/a/b/f");
  FileHandle dir = HandleOf(mnt + "/a/b");
  FileHandle gone = HandleOf(mnt + "/gone");
  struct stat dir_st = Stat(mnt + "/a/b");
  ASSERT_EQ(0, unlink((mnt + "/gone").c_str()));
  ASSERT_EQ(0, daemon.Cli({"umount", mnt}).exit_code);
  ASSERT_EQ(0, daemon.Cli({"mount", "h", mnt}).exit_code);

  int root = open(mnt.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_LE(0, root) << strerror(errno);
  int fd = open_by_handle_at(root, &file.head, O_RDONLY);
  if (KernelAtLeast(6, 16)) {
    // There the kernel itself makes what a file's handle decodes to go
    // stale, which breaks overlayfs: the daemon refuses files' handles
    // once the kernel has forgotten the file (docs/decisions.md).
    EXPECT_EQ(-1, fd);
    EXPECT_EQ(ESTALE, errno);
  } else {
    ASSERT_LE(0, fd) << strerror(errno);
    char buf[16] = {};
    EXPECT_EQ(7, read(fd, buf, sizeof buf));
    EXPECT_STREQ("handled", buf);
    close(fd);
  }
  fd = open_by_handle_at(root, &dir.head, O_RDONLY | O_DIRECTORY);
  ASSERT_LE(0, fd) << strerror(errno);
  struct stat st;
  ASSERT_EQ(0, fstat(fd, &st));
  EXPECT_EQ(dir_st.st_ino, st.st_ino);
  EXPECT_EQ(0, faccessat(fd, "f", R_OK, 0)) << strerror(errno);
  close(fd);
  EXPECT_EQ(-1, open_by_handle_at(root, &gone.head, O_RDONLY));
  EXPECT_EQ(ESTALE, errno);
  close(root);
  EXPECT_EQ(0, daemon.Stop());
}

// Entries for dir in the mount table (stacked mounts count each).
int CountMounts(const std::string& dir) {
  std::string table = ReadFile("/proc/self/mounts");
  int n = 0;
  for (size_t at = table.find(" " + dir + " "); at != std::string::npos; at = table.find(" " + dir + " ", at + 1)) ++n;
  return n;
}

bool IsMounted(const std::string& dir) { return CountMounts(dir) > 0; }

// Found by helpers with FUSE over io_uring: an lseek of a file with dirty
// pages of a shared mapping made the daemon have the kernel write them back
// while the lseek was served (OpLseek), and those writes went to the ring
// queue of the CPU the writeback ran on. lseeks held every entry of their
// CPU's queue, the writes found none, and every process on the file hung,
// the daemon too, past kill -9. A mapped writer and many more lseeks than a
// queue starts with entries, all on one CPU, in a child process whose exit
// is waited for (bounded).
TEST(DaemonTest, ManyLseeksOfAMappedFileOnOneCpuFinish) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string file = daemon.CreateAndMount("seek") + "/mapped";
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);  // threads started after inherit it
    const size_t size = 4 << 20;
    int fd = open(file.c_str(), O_CREAT | O_RDWR, 0644);
    if (fd < 0 || ftruncate(fd, size) != 0) _exit(2);
    char* map = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (map == MAP_FAILED) _exit(3);
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (uint64_t x = 1; !done; x = x * 6364136223846793005u + 1442695040888963407u) map[(x >> 33) % size] = 'w';
    });
    std::atomic<int> failures{0};
    std::vector<std::thread> seekers;
    for (int i = 0; i < 12; ++i) {
      seekers.emplace_back([&, i] {
        int own = open(file.c_str(), O_RDONLY);
        for (int n = 0; own >= 0 && n < 40; ++n) {
          off_t at = (static_cast<off_t>(n) * 7919 * 4096 + i * 4096) % static_cast<off_t>(size);
          if (lseek(own, at, n % 2 ? SEEK_HOLE : SEEK_DATA) < 0 && errno != ENXIO) ++failures;
        }
        if (own < 0) ++failures;
        close(own);
      });
    }
    for (auto& t : seekers) t.join();
    done = true;
    writer.join();
    munmap(map, size);
    close(fd);
    _exit(failures == 0 ? 0 : 1);
  }
  int status = 0;
  bool exited = false;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
       !exited && std::chrono::steady_clock::now() < deadline;) {
    exited = waitpid(child, &status, WNOHANG) == child;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) {
    daemon.Kill9();  // the requests still waiting fail, and the child ends
    waitpid(child, &status, 0);
    FAIL() << "lseeks of a mapped file on one CPU did not finish in 2 minutes";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(0, daemon.Stop());
}

// The errno of a request to a mount whose daemon has exited: ENOTCONN, or
// in the milliseconds the kernel takes to tear down the daemon's io_uring
// queues, ECANCELED or ECONNABORTED.
bool DaemonGone(int error) { return error == ENOTCONN || error == ECANCELED || error == ECONNABORTED; }

TEST(DaemonTest, SigtermUnmountsAndCommits) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("s");
  std::string data(500000, 's');
  WriteFile(mnt + "/unsynced", data);  // no fsync: SIGTERM must still commit it
  ASSERT_TRUE(IsMounted(mnt));
  EXPECT_EQ(0, daemon.Stop());
  EXPECT_FALSE(IsMounted(mnt));
  daemon.Start();
  ASSERT_EQ(0, daemon.Cli({"mount", "s", mnt}).exit_code);
  EXPECT_EQ(data, ReadFile(mnt + "/unsynced"));
  EXPECT_EQ(0, daemon.Stop());
}

TEST(DaemonTest, SigtermCommitsWhatAFileStillOpenHasWritten) {
  // The mount is busy, so SIGTERM cannot unmount it; what the open file
  // wrote sits in the daemon's buffer, not yet committed.
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("busy");
  std::string data(20000, 'b');
  int fd = open((mnt + "/open").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(data.size()), write(fd, data.data(), data.size()));
  EXPECT_EQ(0, daemon.Stop(/*leave_dead_mounts=*/true));
  EXPECT_EQ(-1, fsync(fd));  // the daemon is gone: an error, not a hang
  // Still mounted, without a server: a user's path does not reach the
  // directory under it (where a detached mount would let it write).
  EXPECT_TRUE(IsMounted(mnt));
  EXPECT_EQ(-1, mkdir((mnt + "/after-stop").c_str(), 0755));
  EXPECT_TRUE(DaemonGone(errno)) << strerror(errno);
  close(fd);
  daemon.Start();
  ASSERT_EQ(0, daemon.Cli({"mount", "busy", mnt}).exit_code);
  EXPECT_EQ(data, ReadFile(mnt + "/open"));
  EXPECT_EQ(0, daemon.Stop());
}

TEST(DaemonTest, SigtermCommitsWhatASharedMappingHasWritten) {
  // Dirty pages of a mapping still in use reach the daemon only as the
  // kernel writes them back, which syncfs(2) does not wait for on FUSE.
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("mapped");
  constexpr size_t kSize = 8 << 20;
  std::string expected(kSize, '\0');
  int fd = open((mnt + "/mapped").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, ftruncate(fd, kSize));
  auto* map = static_cast<char*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(MAP_FAILED, map);
  for (size_t at = 0; at + 5000 <= kSize; at += 100003) {
    memset(map + at, 'm', 5000);
    memset(&expected[at], 'm', 5000);
  }
  EXPECT_EQ(0, daemon.Stop());
  munmap(map, kSize);
  close(fd);
  daemon.Start();
  ASSERT_EQ(0, daemon.Cli({"mount", "mapped", mnt}).exit_code);
  std::string got = ReadFile(mnt + "/mapped");
  EXPECT_EQ(std::count(expected.begin(), expected.end(), 'm'), std::count(got.begin(), got.end(), 'm'));
  EXPECT_TRUE(got == expected);
  EXPECT_EQ(0, daemon.Stop());
}

TEST(DaemonTest, AVolumeUnmountedOutsideTheDaemonCanBeMountedAgain) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("outside");
  std::string data(200000, 'o');
  WriteFile(mnt + "/unsynced", data);
  ASSERT_EQ(0, umount2(mnt.c_str(), 0));  // umount(8), not aspfs umount
  auto again = daemon.Cli({"mount", "outside", mnt});
  ASSERT_EQ(0, again.exit_code) << again.err;
  EXPECT_EQ(data, ReadFile(mnt + "/unsynced"));
  EXPECT_EQ(1, CountMounts(mnt));

  // Lazily, with a file still open: not while it is in use.
  int fd = open((mnt + "/unsynced").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, umount2(mnt.c_str(), MNT_DETACH));
  auto busy = daemon.Cli({"mount", "outside", mnt});
  EXPECT_NE(0, busy.exit_code);
  EXPECT_NE(std::string::npos, busy.err.find("still in use")) << busy.err;
  char c;
  EXPECT_EQ(1, pread(fd, &c, 1, 0));  // the detached mount still serves its user
  // Nor does `aspfs umount` wait for its files (a helper saw it, the
  // control socket and SIGTERM wait until its writer was killed): it says
  // so, and the daemon answers on.
  auto umount = daemon.Cli({"umount", mnt});
  EXPECT_NE(0, umount.exit_code);
  EXPECT_NE(std::string::npos, umount.err.find("still in use")) << umount.err;
  EXPECT_EQ(0, daemon.Cli({"status"}).exit_code);
  EXPECT_EQ(1, pread(fd, &c, 1, 0));
  close(fd);
  again = daemon.Cli({"mount", "outside", mnt});
  ASSERT_EQ(0, again.exit_code) << again.err;
  EXPECT_EQ(data, ReadFile(mnt + "/unsynced"));

  // SIGTERM with a lazily detached mount in use stops the daemon; the
  // mount's user then gets errors.
  fd = open((mnt + "/unsynced").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, umount2(mnt.c_str(), MNT_DETACH));
  EXPECT_EQ(0, daemon.Stop());
  EXPECT_EQ(-1, fsync(fd));  // reads may come from the page cache; an fsync needs the daemon
  close(fd);
}

// Whether this kernel offers FUSE over io_uring (Linux 6.14+ with the fuse
// module's enable_uring parameter on) and the daemons of this test run may
// take it (scripts/test.sh runs the FUSE tests a second time with
// ASPFS_TEST_FUSE_IO_URING=off).
bool FuseIoUringOffered() {
  const char* transport = getenv("ASPFS_TEST_FUSE_IO_URING");
  if (transport && std::string(transport) == "off") return false;
  std::ifstream param("/sys/module/fuse/parameters/enable_uring");
  char value = 'N';
  return param >> value && value == 'Y';
}

std::string FuseTransport(const Daemon& daemon, const std::string& volume) {
  auto info = daemon.Cli({"volume", "info", volume, "--json"});
  if (info.exit_code != 0) return "error: " + info.err;
  return nlohmann::json::parse(info.out).value("fuse_transport", "");
}

TEST(DaemonTest, MountsServeThroughIoUringWhereTheKernelOffersIt) {
  for (bool off : {false, true}) {
    SCOPED_TRACE(off ? "--fuse-io-uring off" : "--fuse-io-uring auto");
    TempDir tmp;
    Daemon daemon(tmp.path());
    daemon.Start(off ? std::vector<std::string>{"--fuse-io-uring", "off"} : std::vector<std::string>{});
    std::string mnt = daemon.CreateAndMount("r");
    // The daemon registers its ring entries once the kernel has taken the
    // INIT reply; until every CPU's queue has them, requests come through
    // /dev/fuse. Requests go on until the ring serves (bounded).
    const bool expect_ring = !off && FuseIoUringOffered();
    std::string transport;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
      std::string path = mnt + "/f" + std::to_string(i);
      WriteFile(path, "data " + std::to_string(i));
      ASSERT_EQ("data " + std::to_string(i), ReadFile(path));
      ASSERT_EQ(0, rename(path.c_str(), (path + ".renamed").c_str()));
      ASSERT_EQ(0, unlink((path + ".renamed").c_str()));
      transport = FuseTransport(daemon, "r");
      if (transport == "io_uring" || (!expect_ring && i == 20)) break;
    }
    EXPECT_EQ(expect_ring ? "io_uring" : "/dev/fuse", transport);
    EXPECT_EQ(0, daemon.Stop());
    EXPECT_FALSE(IsMounted(mnt));
  }
}

TEST(DaemonTest, MountClearsADeadMountLeftByAKilledDaemon) {
  TempDir tmp;
  Daemon daemon(tmp.path());
  daemon.Start();
  std::string mnt = daemon.CreateAndMount("k");
  WriteFileDurably(mnt + "/f", "x");  // only fsynced data is promised to outlive a kill
  // Twice, the second time without touching the dead mount first: a stat of
  // it is answered from cached attributes, as if it were alive.
  for (int round = 0; round < 2; ++round) {
    daemon.Kill9(/*leave_dead_mounts=*/true);
    if (round == 0) {
      EXPECT_EQ(-1, open(mnt.c_str(), O_RDONLY | O_DIRECTORY));  // needs the daemon
      EXPECT_TRUE(DaemonGone(errno)) << strerror(errno);
    }
    daemon.Start();
    auto mounted = daemon.Cli({"mount", "k", mnt});
    ASSERT_EQ(0, mounted.exit_code) << mounted.err;
    EXPECT_EQ(1, CountMounts(mnt)) << "a dead mount stays under the new one";
    EXPECT_EQ("x", ReadFile(mnt + "/f"));
  }
  EXPECT_EQ(0, daemon.Stop());
  EXPECT_EQ(0, CountMounts(mnt));
}

}  // namespace
}  // namespace aspfs::testing
