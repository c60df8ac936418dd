// Real workloads on an ASPFS mount, run with the real tools: unpack a tar of
// an OS tree and compare it with its source, byte for byte and attribute for
// attribute (warm and after a daemon restart), then du, find, tar it up again and
// rm -rf; a git repository's life (init, commit, gc, fsck, clone); a small C
// build with make and cc, and the binary run from the mount; stress-ng's file
// system stressors, which check what they read back (--verify).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness.h"

namespace aspfs::testing {
namespace {

// Finds program on $PATH ("" when absent): RunCommand wants a path.
std::string Which(const std::string& program) {
  const char* path = getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = dir + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

CliResult Sh(const std::string& script, const std::vector<std::string>& env = {}) {
  return RunCommand({"/bin/sh", "-c", script}, env);
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string Describe(const CliResult& r) {
  std::string out = r.out.size() > 4000 ? r.out.substr(0, 4000) + "..." : r.out;
  std::string err = r.err.size() > 4000 ? r.err.substr(0, 4000) + "..." : r.err;
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + out + "\nstderr:\n" + err;
}

// One line of attributes per path (relative to the root), plus the groups of
// hard links, for comparing two trees: everything but inode numbers, atime,
// ctime and directory sizes.
std::map<std::string, std::string> Attributes(const std::string& root, std::string* problems) {
  std::map<std::string, std::string> out;
  std::map<ino_t, std::vector<std::string>> links;
  std::vector<std::string> todo = {""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    std::string path = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      *problems += "lstat " + path + ": " + strerror(errno) + "\n";
      continue;
    }
    std::ostringstream line;
    line << std::oct << "mode=0" << st.st_mode << std::dec << " owner=" << st.st_uid << ":" << st.st_gid
         << " nlink=" << st.st_nlink;
    if (!S_ISDIR(st.st_mode)) line << " size=" << st.st_size;
    line << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(path.c_str(), buf, sizeof buf);
      line << " -> " << std::string(buf, n > 0 ? n : 0);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) line << " rdev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    char names[4096];
    ssize_t len = llistxattr(path.c_str(), names, sizeof names);
    for (ssize_t at = 0; at < len; at += strlen(names + at) + 1) {
      std::string name = names + at;
      if (name.rfind("user.", 0) != 0) continue;
      char value[4096];
      ssize_t vlen = lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
      line << " " << name << "=" << std::string(value, vlen > 0 ? vlen : 0);
    }
    out[rel] = line.str();
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) links[st.st_ino].push_back(rel);
    if (S_ISDIR(st.st_mode)) {
      DIR* dir = opendir(path.c_str());
      if (!dir) {
        *problems += "opendir " + path + ": " + strerror(errno) + "\n";
        continue;
      }
      while (dirent* e = readdir(dir)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") todo.push_back(rel.empty() ? name : rel + "/" + name);
      }
      closedir(dir);
    }
  }
  // Hard links: every member names the whole (sorted) group.
  for (auto& [ino, group] : links) {
    std::sort(group.begin(), group.end());
    std::string all;
    for (const std::string& p : group) all += " " + p;
    for (const std::string& p : group) out[p] += " links:" + all;
  }
  return out;
}

std::string DiffAttributes(const std::map<std::string, std::string>& want,
                           const std::map<std::string, std::string>& got) {
  std::ostringstream out;
  int shown = 0;
  for (const auto& [path, line] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      if (shown++ < 30) out << "/" << path << ": missing\n";
    } else if (it->second != line) {
      if (shown++ < 30) out << "/" << path << ":\n  want " << line << "\n  got  " << it->second << "\n";
    }
  }
  for (const auto& [path, line] : got) {
    if (!want.count(path) && shown++ < 30) out << "/" << path << ": unexpected\n";
  }
  if (shown > 30) out << "... " << shown - 30 << " more\n";
  return out.str();
}

class WorkloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    umask(022);
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_NO_FATAL_FAILURE(daemon_->Start());
    mnt_ = daemon_->CreateAndMount("w");
  }

  void Remount() {
    CliResult u = daemon_->Cli({"umount", mnt_});
    ASSERT_EQ(0, u.exit_code) << Describe(u);
    CliResult m = daemon_->Cli({"mount", "w", mnt_});
    ASSERT_EQ(0, m.exit_code) << Describe(m);
  }

  // SIGTERM the daemon, start it again and mount the volume again.
  void RestartDaemon() {
    EXPECT_EQ(0, daemon_->Stop()) << Log();
    ASSERT_NO_FATAL_FAILURE(daemon_->Start());
    CliResult m = daemon_->Cli({"mount", "w", mnt_});
    ASSERT_EQ(0, m.exit_code) << Describe(m);
  }

  std::string Log() const {
    std::string log = ReadFile(tmp_.path() + "/aspfsd.log");
    return "aspfsd.log:\n" + (log.size() > 3000 ? "..." + log.substr(log.size() - 3000) : log);
  }

  // Prints how long the phase since the last call took.
  void Phase(const std::string& name) {
    auto now = std::chrono::steady_clock::now();
    fprintf(stderr, "  %-28s %6.1f s\n", name.c_str(), std::chrono::duration<double>(now - phase_start_).count());
    phase_start_ = now;
  }

  // Runs a shell script; fails the test (with its output) unless it exits 0.
  std::string MustSh(const std::string& script, const std::vector<std::string>& env = {}) {
    CliResult r = Sh(script, env);
    EXPECT_EQ(0, r.exit_code) << script << "\n" << Describe(r) << "\n" << Log();
    return r.out;
  }

  TempDir tmp_, work_;
  std::unique_ptr<Daemon> daemon_;
  std::string mnt_;
  std::chrono::steady_clock::time_point phase_start_ = std::chrono::steady_clock::now();
};

// Adds what the OS trees lack: hard links across directories, sizes around
// ASPFS's inline limit and extent size, a sparse file, special modes and
// owners, a fifo, symlinks to directories and nowhere, xattrs, long names.
void AddExtras(const std::string& dir) {
  ASSERT_EQ(0, mkdir(dir.c_str(), 0755));
  ASSERT_EQ(0, mkdir((dir + "/sub").c_str(), 0755));
  std::mt19937_64 rng(42);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  // The largest is beyond the daemon's 32 MiB per-file write buffer.
  for (size_t size : {0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131072, 200001, 1048577, 8388611, 41943043}) {
    WriteFile(dir + "/size-" + std::to_string(size), random_bytes(size));
  }
  WriteFile(dir + "/linked", random_bytes(70000));
  ASSERT_EQ(0, link((dir + "/linked").c_str(), (dir + "/sub/linked-2").c_str()));
  ASSERT_EQ(0, link((dir + "/linked").c_str(), (dir + "/linked-3").c_str()));
  WriteFile(dir + "/small-linked", "tiny\n");
  ASSERT_EQ(0, link((dir + "/small-linked").c_str(), (dir + "/sub/small-linked-2").c_str()));
  {
    int fd = open((dir + "/sparse").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    std::string data = random_bytes(5000);
    ASSERT_EQ(5000, pwrite(fd, data.data(), data.size(), 300000));
    ASSERT_EQ(0, ftruncate(fd, 3 * 1024 * 1024));
    close(fd);
  }
  WriteFile(dir + "/setuid", "#!/bin/sh\n");
  ASSERT_EQ(0, chmod((dir + "/setuid").c_str(), 04755));
  WriteFile(dir + "/setgid", "x");
  ASSERT_EQ(0, chmod((dir + "/setgid").c_str(), 02750));
  ASSERT_EQ(0, mkdir((dir + "/sticky").c_str(), 0755));
  ASSERT_EQ(0, chmod((dir + "/sticky").c_str(), 01777));
  WriteFile(dir + "/sticky/owned", "someone else's\n");
  ASSERT_EQ(0, chown((dir + "/sticky/owned").c_str(), 1234, 5678));
  ASSERT_EQ(0, chown((dir + "/sticky").c_str(), 4321, 8765));
  ASSERT_EQ(0, mkdir((dir + "/readonly-dir").c_str(), 0755));
  WriteFile(dir + "/readonly-dir/inside", "kept\n");
  ASSERT_EQ(0, chmod((dir + "/readonly-dir").c_str(), 0555));
  ASSERT_EQ(0, mkfifo((dir + "/a-fifo").c_str(), 0640));
  ASSERT_EQ(0, symlink("sub", (dir + "/to-dir").c_str()));
  ASSERT_EQ(0, symlink("../nowhere/at/all", (dir + "/sub/dangling").c_str()));
  ASSERT_EQ(0, symlink(std::string(3000, 'L').c_str(), (dir + "/long-target").c_str()));
  WriteFile(dir + "/" + std::string(255, 'n'), "longest name\n");
  WriteFile(dir + "/with space and ümlaut", "odd name\n");
  WriteFile(dir + "/xattrs", "has xattrs\n");
  ASSERT_EQ(0, setxattr((dir + "/xattrs").c_str(), "user.mime", "text/plain", 10, 0));
  ASSERT_EQ(0, setxattr((dir + "/sub").c_str(), "user.dir", "yes", 3, 0));
  struct timespec old[2] = {{1000000000, 0}, {946684800, 123456789}};  // 2000-01-01
  ASSERT_EQ(0, utimensat(AT_FDCWD, (dir + "/size-1").c_str(), old, 0));
}

TEST_F(WorkloadTest, TarOfOsTreeRoundTrips) {
  auto start = std::chrono::steady_clock::now();
  // Trees of a minimal Debian with the build deps: kernel and libc headers,
  // perl's base library, time zones (many symlinks); whichever exist. About
  // 3300 entries, 20 MB.
  std::string trees;
  for (const char* t : {"usr/include/linux", "usr/include/x86_64-linux-gnu", "usr/include/asm-generic",
                        "usr/lib/x86_64-linux-gnu/perl-base", "usr/share/zoneinfo"}) {
    if (access((std::string("/") + t).c_str(), F_OK) == 0) trees += std::string(" ") + t;
  }
  if (trees.empty()) GTEST_SKIP() << "no OS tree to copy";
  const std::string src = work_.path() + "/src", tarball = work_.path() + "/tree.tar", dst = mnt_ + "/tree";
  ASSERT_EQ(0, mkdir(src.c_str(), 0755));
  MustSh("tar -C / -cf - " + trees + " | tar -C " + Quote(src) + " -xpf -");
  ASSERT_NO_FATAL_FAILURE(AddExtras(src + "/extras"));
  // --xattrs makes a POSIX (pax) archive: nanosecond mtimes, user.* xattrs.
  const std::string tar_opts = "--xattrs --xattrs-include='user.*' --sort=name --numeric-owner";
  MustSh("tar -C " + Quote(src) + " " + tar_opts + " -cf " + Quote(tarball) + " .");
  std::string problems;
  auto want = Attributes(src, &problems);
  ASSERT_EQ("", problems);
  Phase("prepare source and tarball");
  ASSERT_GT(want.size(), 2000u) << "the OS trees are too small to be a workload";

  // Unpack on the mount.
  ASSERT_EQ(0, mkdir(dst.c_str(), 0755));
  auto t0 = std::chrono::steady_clock::now();
  MustSh("tar -C " + Quote(dst) + " " + tar_opts + " -xpf " + Quote(tarball));
  double untar_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Phase("untar on the mount");

  // Warm (kernel caches), then cold (after a daemon restart: from the store).
  for (const char* when : {"warm", "after a daemon restart"}) {
    SCOPED_TRACE(when);
    if (std::string(when) != "warm") {
      ASSERT_NO_FATAL_FAILURE(RestartDaemon());
    }
    MustSh("diff -r --no-dereference -x a-fifo " + Quote(src) + " " + Quote(dst));
    auto got = Attributes(dst, &problems);
    ASSERT_EQ("", problems);
    std::string diff = DiffAttributes(want, got);
    // The root of the unpacked tree is tar's "." entry: compare it too.
    EXPECT_EQ("", diff) << Log();
  }

  Phase("diff, restart, diff");

  // Read tools over the whole tree.
  std::string n_src = MustSh("find " + Quote(src) + " | wc -l");
  std::string n_dst = MustSh("find " + Quote(dst) + " | wc -l");
  EXPECT_EQ(n_src, n_dst);
  EXPECT_EQ(MustSh("cd " + Quote(src) + " && find . -type l | sort"),
            MustSh("cd " + Quote(dst) + " && find . -type l | sort"));
  EXPECT_EQ(MustSh("cd " + Quote(src) + " && find . -links +1 -type f | sort"),
            MustSh("cd " + Quote(dst) + " && find . -links +1 -type f | sort"));
  // du counts hard links once and reads st_blocks: its apparent size must
  // match the source's for files; its disk usage must be plausible.
  EXPECT_EQ(MustSh("cd " + Quote(src) + " && find . ! -type d -printf '%s\\n' | sort -n | md5sum"),
            MustSh("cd " + Quote(dst) + " && find . ! -type d -printf '%s\\n' | sort -n | md5sum"));
  long du_src = atol(MustSh("du -sk " + Quote(src)).c_str());
  long du_dst = atol(MustSh("du -sk " + Quote(dst)).c_str());
  long apparent = atol(MustSh("du -sk --apparent-size " + Quote(src)).c_str());
  EXPECT_GT(du_dst, apparent / 4) << "du on the mount: " << du_dst << " KiB, source " << du_src << " KiB";
  EXPECT_LT(du_dst, du_src * 4) << "du on the mount: " << du_dst << " KiB, source " << du_src << " KiB";
  Phase("find, du");

  // tar it up again from the mount: the archive lists the same.
  const std::string again = work_.path() + "/again.tar";
  MustSh("tar -C " + Quote(dst) + " " + tar_opts + " -cf " + Quote(again) + " .");
  EXPECT_EQ(MustSh("tar --numeric-owner -tvf " + Quote(tarball)), MustSh("tar --numeric-owner -tvf " + Quote(again)));

  Phase("tar again + list");

  // rm -rf: everything goes, and so do the inodes.
  struct statvfs before, after;
  ASSERT_EQ(0, statvfs(mnt_.c_str(), &before));
  MustSh("rm -rf " + Quote(dst));
  EXPECT_NE(0, access(dst.c_str(), F_OK));
  EXPECT_EQ("", MustSh("ls -A " + Quote(mnt_)));
  ASSERT_EQ(0, statvfs(mnt_.c_str(), &after));
  uint64_t used_before = before.f_files - before.f_ffree, used_after = after.f_files - after.f_ffree;
  EXPECT_GT(used_before, want.size() / 2) << "statfs does not count the unpacked inodes";
  EXPECT_LE(used_after, 2u) << "inodes left after rm -rf: " << used_after;
  EXPECT_EQ(0u, (after.f_blocks - after.f_bfree) * after.f_frsize) << "bytes still charged after rm -rf";
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ("", MustSh("ls -A " + Quote(mnt_)));
  CliResult verify = daemon_->Cli({"volume", "verify", "w"});
  EXPECT_EQ(0, verify.exit_code) << Describe(verify);
  Phase("rm -rf, remount, verify");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fprintf(stderr, "tar workload: %zu entries, untar %.1f s, whole test %.1f s; du %ld KiB (source %ld KiB)\n",
          want.size(), untar_secs, secs, du_dst, du_src);
}

TEST_F(WorkloadTest, GitRepository) {
  const std::string git = Which("git");
  if (git.empty()) GTEST_SKIP() << "git is not installed";
  const std::string home = work_.path() + "/home";
  ASSERT_EQ(0, mkdir(home.c_str(), 0755));
  const std::vector<std::string> env = {"HOME=" + home,
                                        "GIT_CONFIG_NOSYSTEM=1",
                                        "GIT_AUTHOR_NAME=Test",
                                        "GIT_AUTHOR_EMAIL=test@example.com",
                                        "GIT_COMMITTER_NAME=Test",
                                        "GIT_COMMITTER_EMAIL=test@example.com"};
  const std::string repo = mnt_ + "/repo", clone = mnt_ + "/clone";
  auto g = [&](const std::string& dir, const std::string& args) {
    return MustSh(Quote(git) + " -C " + Quote(dir) + " " + args, env);
  };
  MustSh(Quote(git) + " init -q -b main " + Quote(repo), env);
  ASSERT_EQ(0, mkdir((repo + "/src").c_str(), 0755));
  WriteFile(repo + "/README", "hello\n");
  WriteFile(repo + "/src/main.c", "int main(void) { return 0; }\n");
  std::mt19937_64 rng(7);
  std::string blob(300000, '\0');
  for (char& c : blob) c = static_cast<char>(rng());
  WriteFile(repo + "/big.bin", blob);
  ASSERT_EQ(0, symlink("src/main.c", (repo + "/link").c_str()));
  ASSERT_EQ(0, chmod((repo + "/README").c_str(), 0755));
  g(repo, "add -A");
  g(repo, "commit -q -m first");
  WriteFile(repo + "/README", "hello again\n");
  blob.replace(100000, 5, "HELLO");
  WriteFile(repo + "/big.bin", blob);
  g(repo, "mv src/main.c src/prog.c");
  g(repo, "rm -q link");
  for (int i = 0; i < 20; ++i) WriteFile(repo + "/src/f" + std::to_string(i) + ".txt", std::string(i * 500, 'a' + i));
  g(repo, "add -A");
  g(repo, "commit -q -m second");
  EXPECT_EQ("", g(repo, "status --porcelain"));
  // gc packs loose objects: writes, fsyncs, renames and mmaps pack files.
  g(repo, "gc -q");
  g(repo, "fsck --full --strict --no-progress");
  EXPECT_EQ("second\nfirst\n", g(repo, "log --format=%s"));
  EXPECT_EQ("", g(repo, "status --porcelain"));
  // A local clone hard-links the objects.
  MustSh(Quote(git) + " clone -q " + Quote(repo) + " " + Quote(clone), env);
  g(clone, "fsck --full --strict --no-progress");
  MustSh("diff -r -x .git " + Quote(repo) + " " + Quote(clone));
  EXPECT_EQ(blob, ReadFile(clone + "/big.bin"));
  // Everything again from the daemon, not the kernel's caches.
  ASSERT_NO_FATAL_FAILURE(Remount());
  g(repo, "fsck --full --strict --no-progress");
  g(clone, "fsck --full --strict --no-progress");
  EXPECT_EQ("", g(clone, "status --porcelain"));
  EXPECT_EQ(g(repo, "rev-parse HEAD"), g(clone, "rev-parse HEAD"));
  CliResult verify = daemon_->Cli({"volume", "verify", "w"});
  EXPECT_EQ(0, verify.exit_code) << Describe(verify);
}

TEST_F(WorkloadTest, MakeAndCc) {
  const std::string make = Which("make"), cc = Which("cc");
  if (make.empty() || cc.empty()) GTEST_SKIP() << "make or cc is not installed";
  const std::string dir = mnt_ + "/proj";
  ASSERT_EQ(0, mkdir(dir.c_str(), 0755));
  WriteFile(dir + "/util.h", "int answer(void);\nconst char* word(void);\n");
  WriteFile(dir + "/util.c", "#include \"util.h\"\nint answer(void) { return 42; }\n");
  WriteFile(dir + "/word.c", "#include \"util.h\"\nconst char* word(void) { return \"hello\"; }\n");
  WriteFile(dir + "/main.c",
            "#include <stdio.h>\n#include \"util.h\"\n"
            "int main(void) { printf(\"%s %d\\n\", word(), answer()); return 0; }\n");
  WriteFile(dir + "/Makefile",
            "CFLAGS = -O2 -Wall -g\n"
            "OBJS = main.o util.o word.o\n"
            "hello: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
            "%.o: %.c util.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
            "clean:\n\trm -f hello $(OBJS)\n");
  MustSh(Quote(make) + " -s -j4 -C " + Quote(dir));
  CliResult run = RunCommand({dir + "/hello"});
  EXPECT_EQ(0, run.exit_code) << Describe(run);
  EXPECT_EQ("hello 42\n", run.out);
  // Nothing to do: make trusts the mtimes it reads back.
  EXPECT_EQ(0, Sh(Quote(make) + " -q -C " + Quote(dir)).exit_code) << "make thinks the build is stale";
  // A changed source rebuilds just what depends on it.
  WriteFile(dir + "/util.c", "#include \"util.h\"\nint answer(void) { return 43; }\n");
  std::string rebuilt = MustSh(Quote(make) + " -C " + Quote(dir) + " --no-print-directory");
  EXPECT_NE(std::string::npos, rebuilt.find("-o util.o")) << rebuilt;
  EXPECT_EQ(std::string::npos, rebuilt.find("-o word.o")) << rebuilt;
  run = RunCommand({dir + "/hello"});
  EXPECT_EQ("hello 43\n", run.out) << Describe(run);
  // After a remount: same binary, still up to date.
  ASSERT_NO_FATAL_FAILURE(Remount());
  run = RunCommand({dir + "/hello"});
  EXPECT_EQ("hello 43\n", run.out) << Describe(run);
  EXPECT_EQ(0, Sh(Quote(make) + " -q -C " + Quote(dir)).exit_code) << "make thinks the build is stale after a remount";
  MustSh(Quote(make) + " -s -C " + Quote(dir) + " clean");
  EXPECT_EQ("Makefile\nmain.c\nutil.c\nutil.h\nword.c\n", MustSh("ls " + Quote(dir)));
}

// stress-ng's file system stressors, each on its own for a short while, with
// --verify: they check data, names, links, locks and attributes they read
// back, and any mismatch or unexpected errno fails the run.
TEST_F(WorkloadTest, StressNgFileSystemStressorsVerify) {
  const std::string stress = Which("stress-ng");
  if (stress.empty()) GTEST_SKIP() << "stress-ng is not installed";
  const std::vector<std::string> stressors = {
      "access", "chmod",    "chown", "copy-file", "dentry", "dir",   "dirdeep", "dirmany", "dup",
      "fallocate", "fcntl", "filename", "flock", "fpunch",  "fsize", "fstat",   "getdent", "hdd",
      "io",     "iomix",    "link",  "lockf",     "lockofd", "mknod", "mmap",   "open",    "rename",
      "symlink", "sync-file", "touch", "utime",   "xattr"};
  for (const std::string& name : stressors) {
    CliResult r = RunCommand({stress, "--temp-path", mnt_, "--verify", "--timeout", "2s", "--" + name, "1"});
    EXPECT_EQ(0, r.exit_code) << "stress-ng --" << name << ": " << Describe(r);
    EXPECT_NE(std::string::npos, r.err.find("successful run")) << "stress-ng --" << name << ": " << Describe(r);
  }
  // Each stressor removes what it made.
  EXPECT_EQ("", MustSh("ls -A " + Quote(mnt_)));
}

}  // namespace
}  // namespace aspfs::testing
